/* dp.c: data-parallel training steps over a dp communicator: the rank's share of the
 * global batch, gradient buckets (contiguous stretches of the flat grad buffer, cut at
 * tensor boundaries) started as non-blocking all-reduces (ZeRO-1: reduce-scatters) from
 * the model's per-layer backward hook and progressed at every later layer, ZeRO-1's
 * sharded AdamW with the in-place all-gather of params, and the byte / time counters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dp.h"
#include "frugal/kernels.h"
#include "frugal/precision.h"

typedef struct bucket {
    size_t off, len; /* floats of the flat buffer */
    size_t coff;     /* its start in the compact index of the kept spans (= off without spans) */
    int level;       /* ready after the hook of this layer (n_layer: ln_f / head; -1: end of backward) */
    int launched, done;
    fg_req req;
    int *counts; /* zero: elements of this bucket in each rank's shard */
    size_t k;    /* compression: pairs sent */
} bucket;

struct dp {
    fg_comm *comm; /* the batch group: micro-batches, loss, loads, agreement */
    int rank, size, zero;
    /* ZeRO-1's group: the shard partition, reduce-scatter, norm, all-gather, shard files;
     * the batch group, or (tp / pp) every rank of the grid */
    fg_comm *zc;
    int zr, zs;
    fg_model *m;
    size_t n;
    /* the flat spans whose grads this rank reduces and whose m, v the ZeRO group shards
     * (a pipeline stage's own tensors; else one span [0, n)), their starts in the compact
     * index (the spans laid end to end, nc floats), and this rank's shard as flat pieces */
    dp_span *sp;
    size_t *sp_c, nc;
    int nsp;
    dp_piece *pc;
    int npc;
    float *pstage;       /* spans: the shard's params, compact (AdamW runs on it) */
    fg_comm *oc;         /* spans: the stages, over which the norm and the inf check are summed */
    size_t ex_lo, ex_hi; /* compact interval the norm leaves out (the tied wte's second copy) */
    int *agc, *agd;      /* [zs] one bucket's all-gather counts / displacements */
    int fr, fs;          /* this rank's shard file zero.rank<fr> of fs (the ZeRO group's; the world's with spans) */
    bucket *b;
    int nb;
    int *counts_all; /* [nb * size] */
    /* ZeRO-1 */
    size_t s_off, s_len;
    float *gshard;     /* [s_len] the reduce-scatter's output (fg_comm_alloc, made once) */
    int *part, *displ; /* [size] the shard partition as MPI counts / displacements */
    /* compression: residual (error feedback), velocity (momentum correction), one message
     * slot per rank in recv (each rank encodes straight into its own slot) */
    dp_compress cz;
    float *resid, *vel, *scratch;
    uint8_t *recv;
    size_t slot;
    int32_t *sizes, *ones, *seq;
    int *bcounts, *bdispl;
    /* the backward in flight */
    int armed;
    long step; /* the step being computed (the compression's warm-up) */
    fg_status err;
    int gns;          /* adaptive batch (gns): measure rank 0's first micro-batch gradient */
    double gns_small; /* its squared norm, the same on every rank after dp_grads */
    double t_first;
    fg_ckpt_writer *rw; /* compression: this rank's residual checkpoints */
    fg_ckpt_writer *sw; /* ZeRO-1: this rank's shard of m, v in checkpoints */
    dp_stats st;
};

/* The layer after whose backward the tensor's grads are final (see fg_model_set_grad_hook). */
static int tensor_level(const fg_tensor_info *t, int L)
{
    int l = 0;
    if (sscanf(t->name, "h.%d.", &l) == 1)
        return l;
    if (!strncmp(t->name, "ln_f", 4) || !strncmp(t->name, "lm_head", 7))
        return L;
    return -1; /* wte, wpe: the embedding backward runs after the last hook */
}

/* The group of the bucket collectives: the reduce-scatter's (ZeRO-1) or the all-reduce's. */
static fg_comm *bucket_comm(const dp *d)
{
    return d->zero ? d->zc : d->comm;
}

static void launch(dp *d, bucket *k)
{
    if (d->err != FG_OK)
        return;
    float *g = fg_model_grads(d->m);
    if (!d->t_first)
        d->t_first = fg_time_sec();
    double p = d->size, bytes = (double)k->len * sizeof(float);
    if (d->zero) {
        size_t lo = k->coff > d->s_off ? k->coff : d->s_off;
        float *recv = d->gshard + (k->counts[d->zr] ? lo - d->s_off : 0);
        d->err = fg_comm_ireduce_scatter(d->zc, g + k->off, recv, k->counts, FG_DT_F32, FG_OP_SUM, &k->req);
        d->st.bytes_step += ((double)d->zs - 1) / (double)d->zs * bytes;
    } else {
        /* in place on the flat grad buffer: no staging copy */
        d->err = fg_comm_iallreduce(d->comm, g + k->off, k->len, FG_DT_F32, FG_OP_SUM, &k->req);
        d->st.bytes_step += 2 * (p - 1) / p * bytes;
    }
    k->launched = 1;
}

/* MPI progresses non-blocking collectives inside MPI calls: a test per bucket in flight
 * at every layer boundary moves them on while the next layer's backward computes. */
static void progress(dp *d)
{
    for (int i = 0; i < d->nb && d->err == FG_OK; i++) {
        bucket *k = &d->b[i];
        if (k->launched && !k->done)
            d->err = fg_comm_test(bucket_comm(d), &k->req, &k->done);
    }
}

static void hook(void *ctx, int layer)
{
    dp *d = ctx;
    if (!d->armed)
        return;
    /* the same buckets in the same order on every rank: collectives match by order */
    for (int i = 0; i < d->nb; i++)
        if (!d->b[i].launched && d->b[i].level >= layer)
            launch(d, &d->b[i]);
    progress(d);
}

double dp_density_at(const dp_compress *cz, long step)
{
    double t = cz->density;
    if (cz->warmup <= 0 || step >= cz->warmup)
        return t;
    int stages = 0; /* warm-up densities above the target: 0.25, 0.0625, ... */
    for (double x = 0.25; x > t; x *= 0.25)
        stages++;
    if (!stages)
        return t;
    int j = (int)((double)step * stages / (double)cz->warmup);
    double x = pow(0.25, j + 1);
    return x > t ? x : t;
}

static fg_status compress_init(dp *d)
{
    size_t maxlen = 1;
    d->slot = 0;
    /* messages sized for the densest step: the warm-up's first stage */
    double dmax = dp_density_at(&d->cz, 0);
    for (int i = 0; i < d->nb; i++) {
        bucket *k = &d->b[i];
        k->k = fg_topk_count(k->len, dmax);
        d->slot += fg_topk_max_bytes(k->k, d->cz.fmt);
        if (k->len > maxlen)
            maxlen = k->len;
    }
    d->slot = (d->slot + 63) / 64 * 64;
    if ((double)d->slot * d->size > 2147483647.0)
        return fg_error(FG_ERR_INVALID, "compression: %zu-byte messages x %d ranks exceed MPI's int displacements",
                        d->slot, d->size);
    d->resid = fg_calloc(d->n ? d->n : 1, sizeof(float));
    d->vel = d->cz.momentum > 0 ? fg_calloc(d->n ? d->n : 1, sizeof(float)) : NULL;
    d->scratch = fg_malloc(maxlen * sizeof(float));
    d->recv = fg_comm_alloc(d->comm, d->slot * (size_t)d->size);
    d->sizes = fg_calloc((size_t)d->size, sizeof(int32_t));
    d->seq = fg_calloc((size_t)d->size, sizeof(int32_t));
    d->ones = fg_calloc((size_t)d->size, sizeof(int32_t));
    d->bcounts = fg_calloc((size_t)d->size, sizeof(int));
    d->bdispl = fg_calloc((size_t)d->size, sizeof(int));
    if (!d->resid || (d->cz.momentum > 0 && !d->vel) || !d->scratch || !d->recv || !d->sizes || !d->seq || !d->ones ||
        !d->bcounts || !d->bdispl)
        return fg_error(FG_ERR_NOMEM, "compression buffers: out of memory");
    for (int q = 0; q < d->size; q++) {
        d->ones[q] = 1;
        d->seq[q] = q;
        d->bdispl[q] = (int)(d->slot * (size_t)q);
    }
    return FG_OK;
}

/* DGC after the backward: local clipping, momentum correction and accumulation into the
 * residual, top-k per bucket straight into this rank's slot, an all-gather of the message
 * sizes then of the messages (in place), and every rank's pairs added into the zeroed
 * grads in rank order (so all ranks hold the same sum). */
static fg_status compress_exchange(dp *d)
{
    float *g = fg_model_grads(d->m);
    size_t n = d->n;
    if (d->cz.local_clip > 0) {
        double norm = sqrt(fg_sumsq(g, n));
        if (isfinite(norm) && norm > d->cz.local_clip)
            fg_scale(g, (float)(d->cz.local_clip / (norm + 1e-6)), n);
    }
    if (d->vel) {
        float mom = d->cz.momentum;
        for (size_t i = 0; i < n; i++) {
            d->vel[i] = mom * d->vel[i] + g[i];
            d->resid[i] += d->vel[i];
        }
    } else {
        for (size_t i = 0; i < n; i++)
            d->resid[i] += g[i];
    }
    uint8_t *mine = d->recv + d->slot * (size_t)d->rank;
    size_t bytes = 0;
    double dens = dp_density_at(&d->cz, d->step); /* the same on every rank: the decoder's k */
    for (int i = 0; i < d->nb; i++) {
        bucket *k = &d->b[i];
        k->k = fg_topk_count(k->len, dens);
        bytes += fg_topk_encode(d->resid + k->off, d->vel ? d->vel + k->off : NULL, k->len, k->k, d->cz.fmt,
                                mine + bytes, d->scratch);
    }
    d->sizes[d->rank] = (int32_t)bytes;
    fg_status st = fg_comm_allgather(d->comm, d->sizes, d->ones, d->seq, FG_DT_I32);
    if (st != FG_OK)
        return st;
    double total = 0;
    for (int q = 0; q < d->size; q++) {
        d->bcounts[q] = d->sizes[q];
        total += d->sizes[q];
    }
    st = fg_comm_allgather(d->comm, d->recv, d->bcounts, d->bdispl, FG_DT_U8);
    if (st != FG_OK)
        return st;
    memset(g, 0, n * sizeof(float));
    for (int q = 0; q < d->size; q++) {
        const uint8_t *msg = d->recv + d->slot * (size_t)q;
        size_t pos = 0, avail = (size_t)d->sizes[q];
        for (int i = 0; i < d->nb; i++) {
            bucket *k = &d->b[i];
            size_t used = fg_topk_decode_add(msg + pos, avail - pos, k->len, k->k, d->cz.fmt, g + k->off);
            if (!used)
                return fg_error(FG_ERR_FORMAT, "compression: rank %d's message is malformed at bucket %d (byte %zu)", q,
                                i, pos);
            pos += used;
        }
    }
    double p = d->size;
    d->st.payload_step = (double)bytes + sizeof(int32_t);
    d->st.dense_step = (double)n * sizeof(float);
    d->st.density_step = dens;
    if (dens == d->cz.density) { /* the summary's ratio: steps at the target density */
        d->st.payload += d->st.payload_step;
        d->st.dense += d->st.dense_step;
        d->st.payload_steps++;
    }
    /* ring all-gather: each rank forwards (p-1)/p of all messages; the sizes likewise */
    d->st.bytes_step += (p - 1) / p * (total + p * sizeof(int32_t));
    return FG_OK;
}

void dp_set_step(dp *d, long step)
{
    d->step = step;
}

int dp_compressed(const dp *d)
{
    return d->cz.density > 0;
}

/* the compact index of flat offset f, which lies in a kept span */
static size_t compact_of(const dp *d, size_t f)
{
    for (int i = 0; i < d->nsp; i++)
        if (f >= d->sp[i].off && f < d->sp[i].off + d->sp[i].len)
            return d->sp_c[i] + (f - d->sp[i].off);
    return (size_t)-1;
}

dp *dp_new(fg_comm *comm, fg_comm *zcomm, fg_model *m, int zero, float bucket_mb, const dp_compress *cz,
           const dp_span *spans, int n_spans)
{
    dp *d = fg_calloc(1, sizeof *d);
    if (!d) {
        fg_error(FG_ERR_NOMEM, "data parallel: out of memory");
        return NULL;
    }
    d->comm = comm;
    d->rank = fg_comm_rank(comm);
    d->size = fg_comm_size(comm);
    d->zc = zero && zcomm ? zcomm : comm;
    d->zr = fg_comm_rank(d->zc);
    d->zs = fg_comm_size(d->zc);
    d->fr = d->zr;
    d->fs = d->zs;
    d->zero = zero;
    d->m = m;
    d->n = fg_model_num_params(m);
    dp_span whole = {0, d->n};
    if (!spans) {
        spans = &whole;
        n_spans = 1;
    }
    d->nsp = n_spans;
    d->sp = fg_calloc((size_t)n_spans + 1, sizeof *d->sp);
    d->sp_c = fg_calloc((size_t)n_spans + 1, sizeof *d->sp_c);
    if (!d->sp || !d->sp_c)
        goto nomem;
    for (int i = 0; i < n_spans; i++) {
        d->sp[i] = spans[i];
        d->sp_c[i] = d->nc;
        d->nc += spans[i].len;
    }
    int nt = fg_model_num_tensors(m), L = fg_model_get_config(m)->n_layer;
    size_t cap = (size_t)((double)bucket_mb * 1048576.0 / sizeof(float));
    if (cap < 1)
        cap = 1;
    d->b = fg_calloc((size_t)nt, sizeof *d->b);
    d->part = fg_calloc((size_t)d->zs, sizeof(int));
    d->displ = fg_calloc((size_t)d->zs, sizeof(int));
    if (!d->b || !d->part || !d->displ)
        goto nomem;
    for (int i = 0; i < nt; i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        size_t c = t->numel ? compact_of(d, t->offset) : (size_t)-1;
        if (c == (size_t)-1) /* not kept (another stage's), or empty */
            continue;
        int lv = tensor_level(t, L);
        bucket *k = d->nb ? &d->b[d->nb - 1] : NULL;
        if (k && k->off + k->len == t->offset && k->coff + k->len == c && k->len < cap) {
            k->len += t->numel;
            if (lv < k->level)
                k->level = lv;
        } else {
            d->b[d->nb++] = (bucket){.off = t->offset, .len = t->numel, .coff = c, .level = lv};
        }
    }
    d->st.n_buckets = d->nb;
    for (int q = 0; q < d->zs; q++) {
        size_t a = fg_dist_part_offset(d->nc, d->zs, q), e = fg_dist_part_offset(d->nc, d->zs, q + 1);
        if (e - a > (size_t)0x7fffffff) {
            fg_error(FG_ERR_INVALID, "data parallel: shard of %zu floats exceeds MPI's int count", e - a);
            dp_delete(d);
            return NULL;
        }
        d->displ[q] = (int)a;
        d->part[q] = (int)(e - a);
    }
    if (cz && cz->density > 0) {
        d->cz = *cz;
        fg_status cst = compress_init(d);
        if (cst != FG_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", fg_last_error());
            dp_delete(d);
            fg_error(cst, "%s", msg);
            return NULL;
        }
    }
    d->s_off = (size_t)d->displ[d->zr];
    d->s_len = (size_t)d->part[d->zr];
    /* the shard [s_off, s_off + s_len) of the compact index as flat pieces */
    d->pc = fg_calloc((size_t)d->nsp + 1, sizeof *d->pc);
    d->agc = fg_calloc((size_t)d->zs, sizeof(int));
    d->agd = fg_calloc((size_t)d->zs, sizeof(int));
    if (!d->pc || !d->agc || !d->agd)
        goto nomem;
    for (int i = 0; i < d->nsp; i++) {
        size_t a = d->sp_c[i], e = a + d->sp[i].len;
        size_t lo = a > d->s_off ? a : d->s_off, hi = e < d->s_off + d->s_len ? e : d->s_off + d->s_len;
        if (hi > lo)
            d->pc[d->npc++] = (dp_piece){d->sp[i].off + (lo - a), hi - lo, lo - d->s_off};
    }
    if (zero && (d->sp[0].off != 0 || d->sp[0].len != d->n || d->nsp > 1) &&
        !(d->pstage = fg_malloc((d->s_len ? d->s_len : 1) * sizeof(float))))
        goto nomem;
    if (zero) {
        /* compressed: no reduce-scatter, the shard is read in place from the decoded sum */
        d->gshard = d->cz.density > 0 ? NULL : fg_comm_alloc(d->zc, (d->s_len ? d->s_len : 1) * sizeof(float));
        d->counts_all = fg_calloc((size_t)d->nb * (size_t)d->zs, sizeof(int));
        if ((!d->gshard && d->cz.density <= 0) || !d->counts_all)
            goto nomem;
        for (int i = 0; i < d->nb; i++) {
            bucket *k = &d->b[i];
            k->counts = d->counts_all + (size_t)i * (size_t)d->zs;
            for (int q = 0; q < d->zs; q++) {
                size_t a = (size_t)d->displ[q], e = a + (size_t)d->part[q];
                size_t lo = k->coff > a ? k->coff : a, hi = k->coff + k->len < e ? k->coff + k->len : e;
                k->counts[q] = hi > lo ? (int)(hi - lo) : 0;
            }
        }
    }
    return d;
nomem:
    dp_delete(d);
    fg_error(FG_ERR_NOMEM, "data parallel: out of memory");
    return NULL;
}

void dp_delete(dp *d)
{
    if (!d)
        return;
    fg_model_set_grad_hook(d->m, NULL, NULL);
    if (fg_ckpt_writer_delete(d->rw) != FG_OK)
        FG_WARN("also: %s", fg_last_error());
    if (fg_ckpt_writer_delete(d->sw) != FG_OK)
        FG_WARN("also: %s", fg_last_error());
    fg_comm_free_mem(d->zc, d->gshard);
    fg_free(d->sp);
    fg_free(d->sp_c);
    fg_free(d->pc);
    fg_free(d->pstage);
    fg_free(d->agc);
    fg_free(d->agd);
    fg_free(d->counts_all);
    fg_free(d->b);
    fg_free(d->part);
    fg_free(d->displ);
    fg_free(d->resid);
    fg_free(d->vel);
    fg_free(d->scratch);
    fg_comm_free_mem(d->comm, d->recv);
    fg_free(d->sizes);
    fg_free(d->seq);
    fg_free(d->ones);
    fg_free(d->bcounts);
    fg_free(d->bdispl);
    fg_free(d);
}

int dp_rank(const dp *d)
{
    return d->rank;
}

int dp_size(const dp *d)
{
    return d->size;
}

int dp_zero(const dp *d)
{
    return d->zero;
}

int dp_shards(const dp *d)
{
    return d->zero ? d->fs : 0;
}

void dp_shard(const dp *d, size_t *off, size_t *len)
{
    *off = d->s_off;
    *len = d->s_len;
}

const dp_piece *dp_shard_pieces(const dp *d, int *n)
{
    *n = d->npc;
    return d->pc;
}

void dp_set_outer(dp *d, fg_comm *oc, size_t ex_off, size_t ex_len, int file_rank, int file_ranks)
{
    d->oc = oc;
    d->fr = file_rank;
    d->fs = file_ranks;
    d->ex_lo = d->ex_hi = 0;
    size_t c = ex_len ? compact_of(d, ex_off) : (size_t)-1;
    if (c != (size_t)-1) {
        d->ex_lo = c;
        d->ex_hi = c + ex_len;
    }
}

/* ZeRO-1's shard of the reduced gradient: the reduce-scatter's buffer, or with compression
 * (every rank decodes the whole sparse sum) this rank's span of the flat grads in place */
static float *shard_grads(dp *d)
{
    return d->cz.density > 0 ? fg_model_grads(d->m) + d->s_off : d->gshard;
}

float *dp_shard_grads(dp *d)
{
    return shard_grads(d);
}

const dp_stats *dp_get_stats(const dp *d)
{
    return &d->st;
}

fg_status dp_optim_init(const dp *d, fg_optim *o, const fg_optim_range *ranges, int n, const fg_adamw_config *ac)
{
    int cap = n + d->npc + 1;
    fg_optim_range *sr = fg_malloc((size_t)cap * sizeof *sr);
    if (!sr)
        return FG_ERR_NOMEM;
    int k = 0;
    /* each range's part in each flat piece of the shard, at its place in the shard */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d->npc; j++) {
            const dp_piece *pc = &d->pc[j];
            size_t lo = ranges[i].offset > pc->off ? ranges[i].offset : pc->off;
            size_t e = pc->off + pc->len;
            size_t hi = ranges[i].offset + ranges[i].numel < e ? ranges[i].offset + ranges[i].numel : e;
            if (hi <= lo)
                continue;
            if (k == cap) {
                fg_optim_range *q = fg_realloc(sr, 2 * (size_t)cap * sizeof *sr);
                if (!q) {
                    fg_free(sr);
                    return FG_ERR_NOMEM;
                }
                sr = q;
                cap *= 2;
            }
            sr[k] = ranges[i];
            sr[k].offset = pc->dst + (lo - pc->off); /* rebased: the shard's m, v, grads start at the shard */
            sr[k].numel = hi - lo;
            k++;
        }
    fg_status st = fg_optim_init(o, d->s_len, sr, k, ac);
    fg_free(sr);
    return st;
}

void dp_load(dp *d, fg_loader *l, int32_t *inp, int32_t *tgt, int A, int B, int T)
{
    int al = A / d->size;
    fg_loader_skip(l, (uint64_t)d->rank * (uint64_t)al * (uint64_t)B);
    for (int k = 0; k < al; k++)
        fg_loader_next(l, inp + (size_t)k * B * T, tgt + (size_t)k * B * T);
    fg_loader_skip(l, (uint64_t)(d->size - 1 - d->rank) * (uint64_t)al * (uint64_t)B);
}

fg_status dp_grads(dp *d, fg_model *m, const int32_t *inp, const int32_t *tgt, int B, int T, int A, float grad_scale,
                   float *loss)
{
    int al = A / d->size;
    for (int i = 0; i < d->nb; i++) {
        d->b[i].launched = d->b[i].done = 0;
        memset(&d->b[i].req, 0, sizeof d->b[i].req);
    }
    d->err = FG_OK;
    d->t_first = 0;
    d->st.bytes_step = 0;
    fg_model_zero_grad(m);
    fg_model_set_grad_hook(m, hook, d);
    double sum = 0;
    fg_status st = FG_OK;
    for (int k = 0; k < al && st == FG_OK; k++) {
        size_t off = (size_t)k * B * T;
        float l = 0;
        st = fg_model_forward(m, inp + off, tgt + off, B, T, &l);
        /* the scale one process with A micro-batches uses, so the sums match it */
        d->armed = k == al - 1 && d->cz.density <= 0; /* compression waits for the whole backward */
        if (d->gns && k == 0)
            d->armed = 0; /* the local gradient is read whole first; the loop below reduces it */
        if (st == FG_OK)
            st = fg_model_backward(m, grad_scale * (1.0f / (float)A));
        if (st == FG_OK && d->gns && k == 0)
            d->gns_small = fg_adapt_sq_norm(fg_model_grads(m), fg_model_num_params(m));
        sum += l;
    }
    d->armed = 0;
    fg_model_set_grad_hook(m, NULL, NULL);
    if (st != FG_OK)
        return st; /* the CLI aborts the job: the other ranks are left in a collective */
    double t_bwd = fg_time_sec();
    if (d->cz.density > 0) {
        d->t_first = t_bwd;
        st = compress_exchange(d);
        if (st != FG_OK)
            return st;
    }
    for (int i = 0; i < d->nb && d->cz.density <= 0; i++)
        if (!d->b[i].launched)
            launch(d, &d->b[i]);
    if (d->err != FG_OK)
        return d->err;
    for (int i = 0; i < d->nb && st == FG_OK; i++)
        st = fg_comm_wait(bucket_comm(d), &d->b[i].req);
    if (st != FG_OK)
        return st;
    double t_done = fg_time_sec();
    d->st.step_span_s = t_done - d->t_first;
    d->st.step_exposed_s = t_done - t_bwd;
    d->st.step_overlap_s = t_bwd - d->t_first;
    d->st.span_s += d->st.step_span_s;
    d->st.exposed_s += d->st.step_exposed_s;
    d->st.overlap_s += d->st.step_overlap_s;
    /* gns: rank 0's first micro-batch is the one a single process measures (the global
     * batch's micro-batch 0), so its norm rides with the loss sum to every rank */
    double v[2] = {sum, d->gns && d->rank == 0 ? d->gns_small : 0};
    st = fg_comm_allreduce(d->comm, v, d->gns ? 2 : 1, FG_DT_F64, FG_OP_SUM);
    sum = v[0];
    d->gns_small = v[1];
    d->st.bytes_step += 2.0 * (d->size - 1) / d->size * sizeof(double) * (d->gns ? 2 : 1);
    d->st.bytes += d->st.bytes_step;
    *loss = (float)(sum / A);
    return st;
}

fg_status dp_scatter(dp *d)
{
    if (!d->zero || d->cz.density > 0)
        return fg_error(FG_ERR_INVALID, "data parallel: a reduce-scatter without ZeRO-1 (or with compression)");
    for (int i = 0; i < d->nb; i++) {
        d->b[i].launched = d->b[i].done = 0;
        memset(&d->b[i].req, 0, sizeof d->b[i].req);
    }
    d->err = FG_OK;
    d->t_first = 0;
    d->st.bytes_step = 0;
    double t0 = fg_time_sec();
    for (int i = 0; i < d->nb; i++) /* the same buckets in the same order on every rank */
        launch(d, &d->b[i]);
    if (d->err != FG_OK)
        return d->err;
    fg_status st = FG_OK;
    for (int i = 0; i < d->nb && st == FG_OK; i++)
        st = fg_comm_wait(d->zc, &d->b[i].req);
    double t = fg_time_sec() - t0; /* after the whole pipeline: nothing overlapped */
    d->st.step_span_s = d->st.step_exposed_s = t;
    d->st.step_overlap_s = 0;
    d->st.span_s += t;
    d->st.exposed_s += t;
    d->st.bytes += d->st.bytes_step;
    return st;
}

fg_status dp_unscale(dp *d, float *grads, size_t n, float inv_scale, bool *found_inf)
{
    *found_inf = false;
    if (d->zero) {
        grads = shard_grads(d);
        n = d->s_len;
    }
    fg_grad_unscale(grads, n, inv_scale, found_inf);
    if (!d->zero)
        return FG_OK; /* the same reduced grads on every rank: the same verdict */
    int32_t any = *found_inf;
    fg_status st = fg_comm_allreduce(d->zc, &any, 1, FG_DT_I32, FG_OP_MAX);
    if (st == FG_OK && d->oc) /* and over the stages */
        st = fg_comm_allreduce(d->oc, &any, 1, FG_DT_I32, FG_OP_MAX);
    *found_inf = any != 0;
    return st;
}

fg_status dp_zero_norm(dp *d, const fg_optim *o, double *norm)
{
    double ss = 0;
    if (d->ex_hi > d->ex_lo) { /* the spans less the excluded interval (rebased to the shard) */
        const float *g = shard_grads(d);
        size_t xl = d->ex_lo > d->s_off ? d->ex_lo - d->s_off : 0, xh = d->ex_hi > d->s_off ? d->ex_hi - d->s_off : 0;
        for (int i = 0; i < o->n_spans; i++) {
            size_t a = o->spans[i].offset, e = a + o->spans[i].numel;
            if (xl > a)
                ss += fg_sumsq(g + a, (xl < e ? xl : e) - a);
            if (xh < e)
                ss += fg_sumsq(g + (xh > a ? xh : a), e - (xh > a ? xh : a));
        }
    } else {
        double n = fg_optim_grad_norm(o, shard_grads(d));
        ss = n * n;
    }
    fg_status st = fg_comm_allreduce(d->zc, &ss, 1, FG_DT_F64, FG_OP_SUM);
    if (st == FG_OK && d->oc) /* each stage's own tensors: summed over the stages */
        st = fg_comm_allreduce(d->oc, &ss, 1, FG_DT_F64, FG_OP_SUM);
    *norm = sqrt(ss);
    return st;
}

fg_status dp_zero_step(dp *d, fg_optim *o, float lr, float grad_coef)
{
    float *params = fg_model_params(d->m);
    if (d->pstage) { /* kept spans: the shard's params are flat pieces, stepped compact */
        for (int j = 0; j < d->npc; j++)
            memcpy(d->pstage + d->pc[j].dst, params + d->pc[j].off, d->pc[j].len * sizeof(float));
        fg_optim_step_fused(o, d->pstage, shard_grads(d), lr, grad_coef, NULL);
        for (int j = 0; j < d->npc; j++)
            memcpy(params + d->pc[j].off, d->pstage + d->pc[j].dst, d->pc[j].len * sizeof(float));
        /* each bucket's params gathered in place over the group: rank q's part of it sits at
         * its place in the bucket */
        fg_status st = FG_OK;
        for (int i = 0; i < d->nb && st == FG_OK; i++) {
            bucket *k = &d->b[i];
            for (int q = 0; q < d->zs; q++) {
                size_t a = (size_t)d->displ[q];
                d->agc[q] = k->counts[q];
                d->agd[q] = k->counts[q] ? (int)((a > k->coff ? a : k->coff) - k->coff) : 0;
            }
            st = fg_comm_allgather(d->zc, params + k->off, d->agc, d->agd, FG_DT_F32);
        }
        double p = d->zs;
        d->st.bytes += (p - 1) / p * (double)d->nc * sizeof(float);
        d->st.bytes_step += (p - 1) / p * (double)d->nc * sizeof(float);
        return st;
    }
    /* no bf16 copy from the shard's sweep: the other shards arrive by the all-gather, so
     * the model refreshes its copy at the next forward */
    fg_optim_step_fused(o, params + d->s_off, shard_grads(d), lr, grad_coef, NULL);
    /* in place: each rank's updated shard sits at its offset of the params buffer */
    fg_status st = fg_comm_allgather(d->zc, params, d->part, d->displ, FG_DT_F32);
    double p = d->zs;
    d->st.bytes += (p - 1) / p * (double)d->n * sizeof(float);
    d->st.bytes_step += (p - 1) / p * (double)d->n * sizeof(float);
    return st;
}

fg_status dp_moe_loads(dp *d, fg_model *m)
{
    int L = fg_model_get_config(m)->n_layer;
    for (int l = 0; l < L; l++) {
        int n = 0;
        float *load = fg_model_moe_step_load(m, l, &n);
        if (!load)
            continue;
        /* integer counts below 2^24: the float sum is exact in any order */
        fg_status st = fg_comm_allreduce(d->comm, load, (size_t)n, FG_DT_F32, FG_OP_SUM);
        if (st != FG_OK)
            return st;
    }
    return FG_OK;
}

fg_status dp_agree(dp *d, long *total, bool *last)
{
    int64_t v[2] = {*total, *last ? 1 : 0};
    fg_status st = fg_comm_bcast(d->comm, v, 2, FG_DT_I64, 0);
    *total = (long)v[0];
    *last = v[1] != 0;
    return st;
}

fg_status dp_barrier(dp *d)
{
    return fg_comm_barrier(d->comm);
}

void dp_set_gns(dp *d, int on)
{
    d->gns = on;
}

double dp_gns_small(const dp *d)
{
    return d->gns_small;
}

/* ---- per-rank state in checkpoints: <ckpt_dir>/<kind>.rank<R>/ ---- */
static void rank_dir(char *buf, size_t cap, const char *ckpt_dir, const char *kind, int rank)
{
    snprintf(buf, cap, "%s/%s.rank%d", ckpt_dir, kind, rank);
}

static fg_ckpt_writer *rank_writer(fg_ckpt_writer **w, const char *ckpt_dir, const char *kind, int rank,
                                   const fg_ckpt_opts *o)
{
    if (!*w) {
        char dir[4200];
        rank_dir(dir, sizeof dir, ckpt_dir, kind, rank);
        *w = fg_ckpt_writer_new(dir, o);
    }
    return *w;
}

fg_status dp_save_resid(dp *d, const char *ckpt_dir, long step, const fg_ckpt_opts *o)
{
    if (d->cz.density <= 0)
        return FG_OK;
    if (!rank_writer(&d->rw, ckpt_dir, "dgc", d->rank, o))
        return fg_last_status();
    char meta[128];
    snprintf(meta, sizeof meta, "{\"rank\": %d, \"ranks\": %d, \"vel\": %d}", d->rank, d->size, d->vel != NULL);
    size_t bytes = d->n * sizeof(float);
    fg_ckpt_tensor t[2] = {{"dgc.resid", d->resid, bytes}, {"dgc.vel", d->vel, bytes}};
    return fg_ckpt_writer_save(d->rw, step, meta, t, d->vel ? 2 : 1);
}

/* The file of `step` in rank q's directory of `kind`, if any (full or delta). */
static int rank_file(const char *ckpt_dir, const char *kind, int q, long step, char *path, size_t cap)
{
    char dir[4200], want[64];
    rank_dir(dir, sizeof dir, ckpt_dir, kind, q);
    snprintf(want, sizeof want, "ckpt-%010ld-", step);
    char **paths = NULL;
    int n = 0, found = 0;
    if (fg_ckpt_list(dir, &paths, &n) != FG_OK) {
        fg_clear_error();
        return 0;
    }
    for (int i = 0; i < n && !found; i++) {
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        if (!strncmp(base, want, strlen(want))) {
            snprintf(path, cap, "%s", paths[i]);
            found = 1;
        }
    }
    fg_ckpt_list_free(paths, n);
    return found;
}

/* Loads rank q's residual (and velocity, when it was saved and wanted) of `step`. */
static fg_status resid_read(const char *path, size_t n, float *resid, float *vel)
{
    char *meta = NULL;
    long st_step = 0;
    size_t bytes = n * sizeof(float);
    fg_status st = fg_ckpt_load_file(path, &st_step, &meta, NULL, 0);
    int has_vel = st == FG_OK && meta && strstr(meta, "\"vel\": 1");
    fg_free(meta);
    if (st != FG_OK)
        return st;
    fg_ckpt_tensor t[2] = {{"dgc.resid", resid, bytes}, {"dgc.vel", vel, bytes}};
    if (!has_vel && vel)
        memset(vel, 0, bytes); /* saved without momentum correction: the velocity starts at zero */
    return fg_ckpt_load_file(path, &st_step, NULL, t, has_vel && vel ? 2 : 1);
}

fg_status dp_load_resid(dp *d, const char *ckpt_dir, long step, char *note, size_t cap)
{
    note[0] = '\0';
    if (d->cz.density <= 0)
        return FG_OK;
    char path[4400];
    int P = 0; /* the rank count that wrote them: ranks 0..P-1 hold the step */
    while (P < (1 << 16) && rank_file(ckpt_dir, "dgc", P, step, path, sizeof path))
        P++;
    size_t bytes = d->n * sizeof(float);
    memset(d->resid, 0, bytes);
    if (d->vel)
        memset(d->vel, 0, bytes);
    if (P == 0) {
        snprintf(note, cap, "compression: no residuals saved at step %ld: they start at zero", step);
        return FG_OK;
    }
    if (P == d->size) { /* the same rank count: each rank its own, bit-exact */
        rank_file(ckpt_dir, "dgc", d->rank, step, path, sizeof path);
        return resid_read(path, d->n, d->resid, d->vel);
    }
    /* another rank count: the sum over the old ranks, shared evenly by the new ones */
    float *r1 = fg_malloc(bytes ? bytes : 1), *v1 = d->vel ? fg_malloc(bytes ? bytes : 1) : NULL;
    fg_status st = r1 && (!d->vel || v1) ? FG_OK : FG_ERR_NOMEM;
    for (int q = 0; q < P && st == FG_OK; q++) {
        rank_file(ckpt_dir, "dgc", q, step, path, sizeof path);
        st = resid_read(path, d->n, r1, v1);
        for (size_t i = 0; i < d->n && st == FG_OK; i++) {
            d->resid[i] += r1[i];
            if (v1)
                d->vel[i] += v1[i];
        }
    }
    fg_free(r1);
    fg_free(v1);
    if (st != FG_OK)
        return st;
    float inv = 1.0f / (float)d->size;
    fg_scale(d->resid, inv, d->n);
    if (d->vel)
        fg_scale(d->vel, inv, d->n);
    snprintf(note, cap, "compression: residuals of %d ranks at step %ld summed and shared evenly by %d", P, step,
             d->size);
    return FG_OK;
}

fg_status dp_remove_rank_ckpts(const char *ckpt_dir)
{
    static const char *const kinds[] = {"dgc", "zero"};
    char dir[4200];
    for (int k = 0; k < 2; k++)
        for (int q = 0; q < (1 << 16); q++) {
            rank_dir(dir, sizeof dir, ckpt_dir, kinds[k], q);
            struct stat sb;
            if (stat(dir, &sb) != 0)
                break;
            fg_status st = fg_ckpt_remove_all(dir);
            if (st != FG_OK)
                return st;
        }
    return FG_OK;
}

/* ---- ZeRO-1 re-cut when the kept spans change (docs/DIST.md "Stage balancer") ---- */
fg_status dp_gather_moments(const dp *d, fg_optim *o, float *m, float *v)
{
    float *sm, *sv, *scratch = NULL;
    fg_status st = fg_optim_moments_f32(o, &sm, &sv, &scratch);
    for (int j = 0; j < d->npc && st == FG_OK; j++) {
        memcpy(m + d->pc[j].off, sm + d->pc[j].dst, d->pc[j].len * sizeof(float));
        memcpy(v + d->pc[j].off, sv + d->pc[j].dst, d->pc[j].len * sizeof(float));
    }
    fg_free(scratch);
    /* the shards are disjoint and the rest of each span zero: a sum is the gather */
    for (int i = 0; i < d->nsp && st == FG_OK && d->zs > 1; i++) {
        st = fg_comm_allreduce(d->zc, m + d->sp[i].off, d->sp[i].len, FG_DT_F32, FG_OP_SUM);
        if (st == FG_OK)
            st = fg_comm_allreduce(d->zc, v + d->sp[i].off, d->sp[i].len, FG_DT_F32, FG_OP_SUM);
    }
    return st;
}

dp *dp_respan(dp *d, float bucket_mb, const dp_span *spans, int n_spans, size_t ex_off, size_t ex_len)
{
    dp *nd = dp_new(d->comm, d->zc, d->m, d->zero, bucket_mb, d->cz.density > 0 ? &d->cz : NULL, spans, n_spans);
    if (!nd)
        return NULL;
    int nb = nd->st.n_buckets;
    nd->st = d->st; /* the run's counters go on */
    nd->st.n_buckets = nb;
    nd->step = d->step;
    nd->gns = d->gns;
    dp_set_outer(nd, d->oc, ex_off, ex_len, d->fr, d->fs);
    nd->sw = d->sw; /* the writers know the files they wrote (pruning) */
    nd->rw = d->rw;
    d->sw = d->rw = NULL;
    dp_delete(d);
    return nd;
}

/* ---- ZeRO-1 shards of m, v in checkpoints ---- */
fg_status dp_save_shards(dp *d, fg_optim *o, const char *ckpt_dir, long step, const fg_ckpt_opts *co)
{
    if (!rank_writer(&d->sw, ckpt_dir, "zero", d->fr, co))
        return fg_last_status();
    /* fp32 whatever the storage: bf16 moments are widened exactly */
    float *sm, *sv, *scratch = NULL;
    fg_status st = fg_optim_moments_f32(o, &sm, &sv, &scratch);
    if (st != FG_OK)
        return st;
    /* the flat pieces the shard holds, in its order: any layout's resume finds them */
    size_t mcap = 192 + 48 * (size_t)d->npc;
    char *meta = fg_malloc(mcap);
    if (!meta) {
        fg_free(scratch);
        return FG_ERR_NOMEM;
    }
    size_t at = (size_t)snprintf(meta, mcap,
                                 "{\"rank\": %d, \"ranks\": %d, \"n\": %zu, \"off\": %zu, \"len\": %zu, \"spans\": [",
                                 d->fr, d->fs, d->n, d->s_off, d->s_len);
    for (int j = 0; j < d->npc && at < mcap; j++)
        at += (size_t)snprintf(meta + at, mcap - at, "%s%zu, %zu", j ? ", " : "", d->pc[j].off, d->pc[j].len);
    if (at < mcap)
        snprintf(meta + at, mcap - at, "]}");
    size_t bytes = d->s_len * sizeof(float);
    fg_ckpt_tensor t[2] = {{"adam.m", sm, bytes}, {"adam.v", sv, bytes}};
    st = fg_ckpt_writer_save(d->sw, step, meta, t, 2); /* copies before it returns */
    fg_free(scratch);
    fg_free(meta);
    return st;
}

/* The flat pieces a shard file holds, from its meta "spans" (flat offset, length pairs in
 * the file's order); a file written before them holds [off(q), off(q+1)) of P. */
static int file_pieces(const char *meta, size_t n, int P, int q, dp_piece **out)
{
    const char *p = meta ? strstr(meta, "\"spans\": [") : NULL;
    int cap = 8, k = 0;
    dp_piece *pc = fg_malloc((size_t)cap * sizeof *pc);
    if (!pc)
        return -1;
    if (!p) {
        size_t a = fg_dist_part_offset(n, P, q), e = fg_dist_part_offset(n, P, q + 1);
        pc[k++] = (dp_piece){a, e - a, 0};
    } else {
        p += strlen("\"spans\": [");
        size_t dst = 0;
        for (;;) {
            char *e1, *e2;
            unsigned long long off = strtoull(p, &e1, 10);
            if (e1 == p)
                break;
            while (*e1 == ',' || *e1 == ' ')
                e1++;
            unsigned long long len = strtoull(e1, &e2, 10);
            if (e2 == e1)
                break;
            if (k == cap) {
                dp_piece *q2 = fg_realloc(pc, 2 * (size_t)cap * sizeof *pc);
                if (!q2) {
                    fg_free(pc);
                    return -1;
                }
                pc = q2;
                cap *= 2;
            }
            pc[k++] = (dp_piece){(size_t)off, (size_t)len, dst};
            dst += (size_t)len;
            p = e2;
            while (*p == ',' || *p == ' ')
                p++;
        }
    }
    *out = pc;
    return k;
}

fg_status dp_load_shards(const char *ckpt_dir, long step, int P, size_t n, const dp_piece *want, int nwant, float *m,
                         float *v)
{
    char path[4400];
    /* all P present, whatever this rank reads: every rank then picks the same step */
    for (int q = 0; q < P; q++)
        if (!rank_file(ckpt_dir, "zero", q, step, path, sizeof path))
            return fg_error(FG_ERR_IO, "%s/zero.rank%d: no ZeRO-1 shard of step %ld (%d ranks wrote m, v)", ckpt_dir, q,
                            step, P);
    fg_status st = FG_OK;
    for (int q = 0; q < P && st == FG_OK; q++) {
        rank_file(ckpt_dir, "zero", q, step, path, sizeof path);
        char *meta = NULL;
        long s = 0;
        st = fg_ckpt_load_file(path, &s, &meta, NULL, 0);
        dp_piece *fp = NULL;
        int nf = st == FG_OK ? file_pieces(meta, n, P, q, &fp) : 0;
        fg_free(meta);
        if (st != FG_OK)
            break;
        if (nf < 0) {
            st = FG_ERR_NOMEM;
            break;
        }
        size_t flen = 0;
        int any = 0;
        for (int i = 0; i < nf; i++) {
            flen += fp[i].len;
            for (int j = 0; j < nwant; j++)
                any |= fp[i].off < want[j].off + want[j].len && want[j].off < fp[i].off + fp[i].len;
        }
        float *bm = any ? fg_malloc((flen ? flen : 1) * sizeof(float)) : NULL;
        float *bv = any ? fg_malloc((flen ? flen : 1) * sizeof(float)) : NULL;
        if (any && (!bm || !bv))
            st = FG_ERR_NOMEM;
        if (any && st == FG_OK) {
            fg_ckpt_tensor t[2] = {{"adam.m", bm, flen * sizeof(float)}, {"adam.v", bv, flen * sizeof(float)}};
            st = fg_ckpt_load_file(path, &s, NULL, t, 2);
        }
        for (int i = 0; any && st == FG_OK && i < nf; i++)
            for (int j = 0; j < nwant; j++) {
                size_t lo = fp[i].off > want[j].off ? fp[i].off : want[j].off;
                size_t e1 = fp[i].off + fp[i].len, e2 = want[j].off + want[j].len, hi = e1 < e2 ? e1 : e2;
                if (hi <= lo)
                    continue;
                memcpy(m + want[j].dst + (lo - want[j].off), bm + fp[i].dst + (lo - fp[i].off),
                       (hi - lo) * sizeof(float));
                memcpy(v + want[j].dst + (lo - want[j].off), bv + fp[i].dst + (lo - fp[i].off),
                       (hi - lo) * sizeof(float));
            }
        fg_free(bm);
        fg_free(bv);
        fg_free(fp);
    }
    return st;
}
