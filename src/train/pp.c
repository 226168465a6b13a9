/* pp.c: pipeline-parallel training steps: the model's layers cut into contiguous stages
 * (one per rank of the pp group), micro-batches run in the 1F1B order with the residual
 * stream and its gradient moved by non-blocking sends, one activation set per micro-batch
 * in flight (MoE stages: the stage inputs kept for a forward recomputation instead), the
 * gradient sum over stages, tp shards and replicas, the bubble measured per step and the
 * balancer that moves layers off slow stages; with V > 1 chunks per rank, the interleaved
 * 1F1B schedule over V x size virtual stages. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dp.h"
#include "frugal/core.h"
#include "frugal/kernels.h"
#include "frugal/precision.h"
#include "pp.h"

/* floats of the tied embedding's gradient exchanged at a time (a bounded buffer) */
#define PP_XCHUNK ((size_t)1 << 18)

typedef dp_span pp_span;

struct pp {
    fg_comm *comm, *dp, *tp;
    int rank, size, L;
    fg_model *m;
    int *bounds; /* [size + 1] */
    size_t cap;  /* floats of one slot: B*T*C at creation */
    /* slot q (micro-batch j uses q = j % size: 1F1B keeps at most size - rank in flight) */
    float *mem;
    float **xin, **yout, **dyin, **dxout; /* received input, sent output, received / sent gradients */
    float *yscratch;                      /* a recomputed forward's output (the slot may still be in flight) */
    fg_req *rx, *ys, *rdy, *dxs;
    int *counts, *displs; /* [size]: the per-step stage-time all-gather */
    double *gath;         /* [2 * size] */
    int slots;            /* activation sets in use (fg_model_stage_slots), 0: recompute instead */
    int slow;
    float slow_ms;
    double acc_compute; /* this rank's compute seconds since the last balance */
    dp *zero;           /* ZeRO-1 over the grid: the grads reduce-scattered by it (NULL: all-reduced here) */
    fg_optim *zopt;     /* ZeRO-1 over a stage's spans: the optimiser of the shard (the balancer re-cuts it) */
    float *tm, *tv;     /* the balancer's transient of the stage's m, v under ZeRO-1 (pp_take_moments) */
    /* interleaved 1F1B (V > 1 chunks): chunk c of this rank is virtual stage c * size + rank,
     * layers [vb[c * size + rank], vb[c * size + rank + 1]); one buffer set per chunk and
     * micro-batch of the step (grown with the step's micro-batch count) */
    int V;
    int *vb;          /* [V * size + 1] */
    int il_cap;       /* micro-batches the buffers hold */
    int il_slots_for; /* the micro-batch count the activation sets were sized for (0: none yet) */
    float *il_mem;    /* 4 x V x il_cap slots + the recompute scratch */
    fg_req *il_req;   /* 4 x V x il_cap: rx, ys, rdy, dxs */
    /* stage-owned memory (pp_own_enable): this rank touches only its own tensors' spans of
     * params, grads, m, v; the rest are untouched pages of the model's lazy buffers */
    int own_on;         /* stage-owned memory on */
    fg_optim *opt;      /* the optimiser whose m, v follow the ownership (NULL: off, or ZeRO-1's shard) */
    pp_span *own;       /* [n_own] merged spans of the tensors this stage owns */
    int n_own;          /* ... (tied wte on both end stages) */
    fg_optim_range *vr; /* the optimiser's ranges clipped to own (the step's view) */
    fg_optim_range *vs; /* its non-frozen spans clipped to own, less the last stage's tied wte */
    int n_vr, n_vs;
    float *xbuf; /* the tied embedding's exchange chunk */
    /* the checkpoint stream (pp_stream_*): every stage's first-owner spans, one piece's
     * buffer, and where rank 0's writer is (tensor s_k of s_nt, float s_at) */
    pp_span **sspans;
    int *nsspans;
    float *sbuf;
    int s_nt, s_k;
    size_t s_at;
    pp_stats st;
};

static fg_status own_build(pp *p);
static fg_status own_move(pp *p, const int *ob);
static void stream_spans_free(pp *p);

/* One activation set per micro-batch in flight (size - rank), so backward needs no
 * recomputation; a stage holding a MoE layer (whose caches are not duplicated) or one
 * in flight at a time recomputes / needs none. Called again when the balancer moves. */
static void setup_slots(pp *p)
{
    if (p->V > 1) { /* sized per step (il_setup_slots): they depend on the micro-batch count */
        fg_model_stage_slots(p->m, 0, 1, 1);
        p->slots = 0;
        p->st.slots = 0;
        p->il_slots_for = 0;
        return;
    }
    int k = p->size - p->rank, l0 = p->bounds[p->rank], l1 = p->bounds[p->rank + 1];
    p->slots = k > 1 && fg_model_stage_slots(p->m, l0, l1, k) == FG_OK ? k : 0;
    p->st.slots = p->slots;
}

/* A slower machine's extra compute: the core stays busy (a sleep would hand it to the
 * other ranks and wake late: on a small delay the wake-up latency is the delay). */
static void sleep_ms(double ms)
{
    double end = fg_time_sec() + ms / 1000.0;
    while (ms > 0 && fg_time_sec() < end) {
    }
}

/* pp_new's split: layers even over the P stages, the first L % P one more; with chunks > 1
 * also over the P x chunks virtual stages into vb (pp_init_weights draws the same split). */
static void even_split(int L, int P, int chunks, int *bounds, int *vb)
{
    for (int s = 0; s <= P; s++)
        bounds[s] = (int)fg_dist_part_offset((size_t)L, P, s);
    if (vb && chunks > 1)
        for (int s = 0; s <= P * chunks; s++)
            vb[s] = (int)fg_dist_part_offset((size_t)L, P * chunks, s);
}

pp *pp_new(fg_comm *comm, fg_comm *dp_comm, fg_comm *tp_comm, fg_model *m, int B, int T, int slow_rank, float slow_ms,
           int chunks)
{
    const fg_model_config *c = fg_model_get_config(m);
    int P = fg_comm_size(comm);
    if (c->precision != FG_PRECISION_FP32) {
        fg_error(FG_ERR_INVALID, "pipeline parallel: fp32 models only (precision is not fp32)");
        return NULL;
    }
    if (chunks < 1 || chunks > 16 || P * chunks > c->n_layer || P > 64) {
        if (chunks != 1)
            fg_error(FG_ERR_INVALID,
                     "pipeline parallel: %d stages x %d chunks for %d layers (a chunk holds a layer; 1 to 16 chunks)",
                     P, chunks, c->n_layer);
        else
            fg_error(FG_ERR_INVALID,
                     "pipeline parallel: %d stages for %d layers (at most one stage per layer, 64 stages)", P,
                     c->n_layer);
        return NULL;
    }
    pp *p = fg_calloc(1, sizeof *p);
    if (!p) {
        fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory");
        return NULL;
    }
    p->comm = comm;
    p->dp = dp_comm && fg_comm_size(dp_comm) > 1 ? dp_comm : NULL;
    p->tp = tp_comm && fg_comm_size(tp_comm) > 1 ? tp_comm : NULL;
    p->rank = fg_comm_rank(comm);
    p->size = P;
    p->L = c->n_layer;
    p->V = chunks;
    p->m = m;
    p->slow = slow_rank;
    p->slow_ms = slow_ms;
    p->cap = (size_t)B * (size_t)T * (size_t)c->d_model;
    size_t P2 = (size_t)P;
    p->bounds = fg_calloc(P2 + 1, sizeof(int));
    p->xin = fg_calloc(4 * P2, sizeof(float *));
    p->rx = fg_calloc(4 * P2, sizeof(fg_req));
    p->counts = fg_calloc(P2, sizeof(int));
    p->displs = fg_calloc(P2, sizeof(int));
    p->gath = fg_calloc(2 * P2, sizeof(double));
    /* 4 slot arrays x size slots + the recompute scratch; fg_comm_alloc: registered once */
    p->mem = fg_comm_alloc(comm, (4 * P2 + 1) * p->cap * sizeof(float));
    if (!p->bounds || !p->xin || !p->rx || !p->counts || !p->displs || !p->gath || !p->mem) {
        pp_delete(p);
        fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory");
        return NULL;
    }
    p->yout = p->xin + P2;
    p->dyin = p->xin + 2 * P2;
    p->dxout = p->xin + 3 * P2;
    p->ys = p->rx + P2;
    p->rdy = p->rx + 2 * P2;
    p->dxs = p->rx + 3 * P2;
    for (size_t i = 0; i < 4 * P2; i++)
        p->xin[i] = p->mem + i * p->cap;
    p->yscratch = p->mem + 4 * P2 * p->cap;
    even_split(p->L, P, 1, p->bounds, NULL);
    for (int s = 0; s < P; s++) {
        p->counts[s] = 2;
        p->displs[s] = 2 * s;
    }
    p->st.stages = P;
    p->st.chunks = chunks;
    if (chunks > 1) {
        int VP = chunks * P;
        if (!(p->vb = fg_calloc((size_t)VP + 1, sizeof(int)))) {
            pp_delete(p);
            fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory");
            return NULL;
        }
        even_split(p->L, P, chunks, p->bounds, p->vb);
    }
    setup_slots(p);
    return p;
}

void pp_delete(pp *p)
{
    if (!p)
        return;
    if (p->m)
        fg_model_stage_slots(p->m, 0, 1, 1); /* frees the sets */
    fg_comm_free_mem(p->comm, p->mem);
    if (p->tm)
        fg_free_lazy(p->tm);
    if (p->tv)
        fg_free_lazy(p->tv);
    fg_free(p->bounds);
    fg_free(p->xin);
    fg_free(p->rx);
    fg_free(p->counts);
    fg_free(p->displs);
    fg_free(p->gath);
    fg_free(p->vb);
    stream_spans_free(p);
    fg_free(p->il_mem);
    fg_free(p->il_req);
    fg_free(p->own);
    fg_free(p->vr);
    fg_free(p->vs);
    fg_free(p->xbuf);
    fg_free(p);
}

int pp_rank(const pp *p)
{
    return p->rank;
}

int pp_size(const pp *p)
{
    return p->size;
}

const int *pp_bounds(const pp *p)
{
    return p->V > 1 ? p->vb : p->bounds;
}

fg_status pp_set_bounds(pp *p, const int *bounds, int n)
{
    if (p->V > 1)
        return fg_error(FG_ERR_INVALID,
                        "pipeline split: not taken with %d chunks per stage (the split of "
                        "interleaved virtual stages stays even)",
                        p->V);
    if (n != p->size + 1 || bounds[0] != 0 || bounds[p->size] != p->L)
        return fg_error(FG_ERR_INVALID,
                        "pipeline split: %d bounds from %d to %d, this pipeline needs %d from 0 to its %d layers", n,
                        n > 0 ? bounds[0] : 0, n > 0 ? bounds[n - 1] : 0, p->size + 1, p->L);
    for (int s = 0; s < p->size; s++)
        if (bounds[s + 1] <= bounds[s])
            return fg_error(FG_ERR_INVALID, "pipeline split: stage %d would hold layers [%d, %d)", s, bounds[s],
                            bounds[s + 1]);
    memcpy(p->bounds, bounds, (size_t)n * sizeof *bounds);
    setup_slots(p);
    return own_build(p); /* a resume: the caller releases what the new split does not own */
}

const pp_stats *pp_get_stats(const pp *p)
{
    return &p->st;
}

void pp_set_zero(pp *p, dp *d)
{
    p->zero = d;
}

/* MPI moves a large message only inside MPI calls of both sides: a test of every send
 * in flight before each compute lets the transfers run while this stage computes. */
static fg_status progress(pp *p)
{
    fg_status st = FG_OK;
    for (int q = 0; q < p->size && st == FG_OK; q++) {
        int done = 0;
        if (p->ys[q].active)
            st = fg_comm_test(p->comm, &p->ys[q], &done);
        if (st == FG_OK && p->dxs[q].active)
            st = fg_comm_test(p->comm, &p->dxs[q], &done);
    }
    return st;
}

typedef struct step_ctx {
    fg_model *m;
    const int32_t *inp, *tgt;
    int B, T, Al, l0, l1, first, last;
    size_t NC, BT;
    float scale;
    double compute, sum;
    int held; /* the micro-batch whose activations the model holds (-1: none) */
} step_ctx;

static double delay_ms(const pp *p, const step_ctx *x)
{
    return p->rank == p->slow ? (double)p->slow_ms * (x->l1 - x->l0) : 0.0;
}

static fg_status post_recvs(pp *p, const step_ctx *x, int j)
{
    int q = j % p->size;
    fg_status st = FG_OK;
    if (!x->first)
        st = fg_comm_irecv(p->comm, p->xin[q], x->NC, FG_DT_F32, p->rank - 1, 2 * j, &p->rx[q]);
    if (st == FG_OK && !x->last)
        st = fg_comm_irecv(p->comm, p->dyin[q], x->NC, FG_DT_F32, p->rank + 1, 2 * j + 1, &p->rdy[q]);
    return st;
}

static fg_status fwd(pp *p, step_ctx *x, int j)
{
    int q = j % p->size;
    fg_status st = progress(p);
    if (st == FG_OK && !x->first)
        st = fg_comm_wait(p->comm, &p->rx[q]);
    if (st == FG_OK && !x->last)
        st = fg_comm_wait(p->comm, &p->ys[q]); /* the send of micro-batch j - size left the slot */
    if (st != FG_OK)
        return st;
    if (p->slots)
        fg_model_stage_slot(x->m, j % p->slots); /* in flight: a window of at most slots micro-batches */
    double t0 = fg_time_sec();
    float l = 0;
    st = fg_model_forward_range(x->m, x->l0, x->l1, x->first ? x->inp + (size_t)j * x->BT : NULL,
                                x->last ? x->tgt + (size_t)j * x->BT : NULL, x->first ? NULL : p->xin[q], x->B, x->T,
                                x->last ? NULL : p->yout[q], &l);
    sleep_ms(delay_ms(p, x));
    x->compute += fg_time_sec() - t0;
    if (st != FG_OK)
        return st;
    x->sum += l; /* in micro-batch order, as one process sums */
    x->held = j;
    if (!x->last) {
        st = fg_comm_isend(p->comm, p->yout[q], x->NC, FG_DT_F32, p->rank + 1, 2 * j, &p->ys[q]);
        p->st.bytes_step += (double)x->NC * sizeof(float);
    }
    return st;
}

static fg_status bwd(pp *p, step_ctx *x, int i)
{
    int q = i % p->size;
    fg_status st = progress(p);
    if (st == FG_OK && !x->last)
        st = fg_comm_wait(p->comm, &p->rdy[q]);
    if (st == FG_OK && !x->first)
        st = fg_comm_wait(p->comm, &p->dxs[q]);
    if (st != FG_OK)
        return st;
    double t0 = fg_time_sec();
    if (p->slots) {
        fg_model_stage_slot(x->m, i % p->slots);
    } else if (x->held != i) {
        /* the model's activations are a later micro-batch's: run this one's forward again
         * from the kept stage input (deterministic, so the same activations) */
        st = fg_model_forward_range(x->m, x->l0, x->l1, x->first ? x->inp + (size_t)i * x->BT : NULL,
                                    x->last ? x->tgt + (size_t)i * x->BT : NULL, x->first ? NULL : p->xin[q], x->B,
                                    x->T, x->last ? NULL : p->yscratch, NULL);
        sleep_ms(delay_ms(p, x));
        p->st.recompute_s += fg_time_sec() - t0;
        x->held = i;
    }
    if (st == FG_OK)
        st = fg_model_backward_range(x->m, x->l0, x->l1, x->first ? NULL : p->xin[q], x->last ? NULL : p->dyin[q],
                                     x->first ? NULL : p->dxout[q], x->scale);
    sleep_ms(delay_ms(p, x));
    x->compute += fg_time_sec() - t0;
    if (st != FG_OK)
        return st;
    if (!x->first) {
        st = fg_comm_isend(p->comm, p->dxout[q], x->NC, FG_DT_F32, p->rank - 1, 2 * i + 1, &p->dxs[q]);
        p->st.bytes_step += (double)x->NC * sizeof(float);
    }
    if (st == FG_OK && i + p->size < x->Al) /* slot q is free: micro-batch i is done here */
        st = post_recvs(p, x, i + p->size);
    return st;
}

/* The contiguous schedule (V = 1): each stage's warm-up forwards, then one forward and
 * one backward, then the backwards left; slot q = j % size per micro-batch in flight. */
static fg_status run_1f1b(pp *p, step_ctx *x, double *t_start)
{
    const int P = p->size, s = p->rank, Al = x->Al;
    memset(p->rx, 0, 4 * (size_t)P * sizeof(fg_req));
    fg_status st = FG_OK;
    for (int j = 0; j < Al && j < P && st == FG_OK; j++)
        st = post_recvs(p, x, j);
    int warm = P - s - 1 < Al ? P - s - 1 : Al, nf = 0, nb = 0;
    *t_start = fg_time_sec();
    while (st == FG_OK && nf < warm) /* warm-up: forwards fill the pipeline */
        st = fwd(p, x, nf++);
    while (st == FG_OK && nf < Al) { /* steady state: one forward, one backward */
        st = fwd(p, x, nf++);
        if (st == FG_OK)
            st = bwd(p, x, nb++);
    }
    while (st == FG_OK && nb < Al) /* cool-down: the backwards left */
        st = bwd(p, x, nb++);
    if (st == FG_OK)
        st = fg_comm_waitall(p->comm, p->ys, P);
    if (st == FG_OK)
        st = fg_comm_waitall(p->comm, p->dxs, P);
    return st;
}

/* ---- interleaved 1F1B (Narayanan et al. 2021, section 2.2.2; Megatron-LM's
 * forward_backward_pipelining_with_interleaving): chunk c of rank r is virtual stage
 * v = c * P + r, so the residual stream goes round the ring of ranks V times. Every
 * (chunk, micro-batch) has its own buffers and its receives are posted when the step
 * starts, so the order below is a pure data flow: each rank runs its list and waits only
 * for the inputs of the next item. ---- */

static int owns_at(const pp *p, const int *bounds, int r, int l)
{
    if (p->V == 1)
        return l >= bounds[r] && l < bounds[r + 1];
    for (int c = 0; c < p->V; c++) {
        int v = c * p->size + r;
        if (l >= p->vb[v] && l < p->vb[v + 1])
            return 1;
    }
    return 0;
}

static int owns(const pp *p, int l)
{
    return owns_at(p, p->bounds, p->rank, l);
}

/* the step context's layers and ends for chunk c */
static int il_chunk(pp *p, step_ctx *x, int c)
{
    int v = c * p->size + p->rank;
    x->l0 = p->vb[v];
    x->l1 = p->vb[v + 1];
    x->first = v == 0;
    x->last = v == p->V * p->size - 1;
    return v;
}

/* buffer k (0 received input, 1 sent output, 2 received gradient, 3 sent gradient) of
 * chunk c, micro-batch j; and its request */
static float *il_buf(pp *p, int k, int c, int j)
{
    return p->il_mem +
           ((size_t)k * (size_t)p->V * (size_t)p->il_cap + (size_t)c * (size_t)p->il_cap + (size_t)j) * p->cap;
}

static fg_req *il_req(pp *p, int k, int c, int j)
{
    return p->il_req + (size_t)k * (size_t)p->V * (size_t)p->il_cap + (size_t)c * (size_t)p->il_cap + (size_t)j;
}

/* tags name the receiving virtual stage and the micro-batch: with 2 ranks the previous
 * and the next rank are the same one */
static int il_tag(const pp *p, int v, int j, int grad)
{
    return 2 * (j * p->V * p->size + v) + grad;
}

static fg_status il_progress(pp *p, int Al)
{
    fg_status st = FG_OK;
    for (int c = 0; c < p->V; c++)
        for (int j = 0; j < Al && st == FG_OK; j++) {
            int done = 0;
            fg_req *r = il_req(p, 1, c, j), *d = il_req(p, 3, c, j);
            if (r->active)
                st = fg_comm_test(p->comm, r, &done);
            if (st == FG_OK && d->active)
                st = fg_comm_test(p->comm, d, &done);
        }
    return st;
}

/* Activation sets at V > 1: one range from this rank's first chunk to its last (the other
 * ranks' layers in between come along unused: the model's sets are per contiguous range),
 * k = min(m, warm-up + 1) sets: a chunk runs its forwards and its backwards in micro-batch
 * order and has at most warm-up + 1 in flight, so micro-batch j's set j mod k is not
 * reused before its backward. A MoE layer in the range (caches not duplicated) or k = 1:
 * none, the chunks recompute. */
static void il_setup_slots(pp *p, int Al, int warm)
{
    if (p->il_slots_for == Al)
        return;
    int k = warm + 1 < Al ? warm + 1 : Al;
    int lo = p->vb[p->rank], hi = p->vb[(p->V - 1) * p->size + p->rank + 1];
    p->slots = k > 1 && fg_model_stage_slots(p->m, lo, hi, k) == FG_OK ? k : 0;
    p->st.slots = p->slots;
    p->il_slots_for = Al;
}

static fg_status il_fwd(pp *p, step_ctx *x, int *held, int c, int j)
{
    int v = il_chunk(p, x, c), next = (p->rank + 1) % p->size;
    fg_status st = il_progress(p, x->Al);
    if (st == FG_OK && !x->first)
        st = fg_comm_wait(p->comm, il_req(p, 0, c, j));
    if (st != FG_OK)
        return st;
    if (p->slots)
        fg_model_stage_slot(x->m, j % p->slots);
    double t0 = fg_time_sec();
    float l = 0;
    st = fg_model_forward_range(x->m, x->l0, x->l1, x->first ? x->inp + (size_t)j * x->BT : NULL,
                                x->last ? x->tgt + (size_t)j * x->BT : NULL, x->first ? NULL : il_buf(p, 0, c, j), x->B,
                                x->T, x->last ? NULL : il_buf(p, 1, c, j), &l);
    sleep_ms(delay_ms(p, x));
    x->compute += fg_time_sec() - t0;
    if (st != FG_OK)
        return st;
    x->sum += l;
    held[c] = j;
    if (!x->last) {
        st = fg_comm_isend(p->comm, il_buf(p, 1, c, j), x->NC, FG_DT_F32, next, il_tag(p, v + 1, j, 0),
                           il_req(p, 1, c, j));
        p->st.bytes_step += (double)x->NC * sizeof(float);
    }
    return st;
}

static fg_status il_bwd(pp *p, step_ctx *x, int *held, int c, int i)
{
    int v = il_chunk(p, x, c), prev = (p->rank + p->size - 1) % p->size;
    fg_status st = il_progress(p, x->Al);
    if (st == FG_OK && !x->last)
        st = fg_comm_wait(p->comm, il_req(p, 2, c, i));
    if (st != FG_OK)
        return st;
    double t0 = fg_time_sec();
    if (p->slots)
        fg_model_stage_slot(x->m, i % p->slots);
    /* the head's caches have no sets: the last chunk (which runs each backward right after
     * its forward except when m = P) recomputes like the others without sets */
    if (held[c] != i && (!p->slots || x->last)) {
        /* the chunk's layers hold a later micro-batch's activations: run this one's forward
         * again from the kept input (deterministic, so the same activations); the other
         * chunks' forwards touch none of this chunk's state */
        float *scratch = p->il_mem + 4 * (size_t)p->V * (size_t)p->il_cap * p->cap;
        st = fg_model_forward_range(x->m, x->l0, x->l1, x->first ? x->inp + (size_t)i * x->BT : NULL,
                                    x->last ? x->tgt + (size_t)i * x->BT : NULL, x->first ? NULL : il_buf(p, 0, c, i),
                                    x->B, x->T, x->last ? NULL : scratch, NULL);
        sleep_ms(delay_ms(p, x));
        p->st.recompute_s += fg_time_sec() - t0;
        held[c] = i;
    }
    if (st == FG_OK)
        st = fg_model_backward_range(x->m, x->l0, x->l1, x->first ? NULL : il_buf(p, 0, c, i),
                                     x->last ? NULL : il_buf(p, 2, c, i), x->first ? NULL : il_buf(p, 3, c, i),
                                     x->scale);
    sleep_ms(delay_ms(p, x));
    x->compute += fg_time_sec() - t0;
    if (st != FG_OK || x->first)
        return st;
    st = fg_comm_isend(p->comm, il_buf(p, 3, c, i), x->NC, FG_DT_F32, prev, il_tag(p, v - 1, i, 1), il_req(p, 3, c, i));
    p->st.bytes_step += (double)x->NC * sizeof(float);
    return st;
}

/* Megatron's order: forward k runs micro-batch (k / (P V)) P + k % P on chunk
 * (k % (P V)) / P, backward k the same micro-batch on chunk V - 1 - (k % (P V)) / P; rank r
 * warms up with 2 (P - r - 1) + (V - 1) P forwards (all of them when m = P), then
 * alternates one forward and one backward, then cools down. Needs m a multiple of P. */
static fg_status run_interleaved(pp *p, step_ctx *x, double *t_start)
{
    const int P = p->size, V = p->V, Al = x->Al, VP = V * P, total = V * Al;
    if (Al % P != 0)
        return fg_error(FG_ERR_INVALID,
                        "pipeline parallel: the interleaved schedule runs micro-batches in groups of the %d stages; "
                        "%d micro-batches per replica is not a multiple",
                        P, Al);
    if (Al > p->il_cap) {
        fg_free(p->il_mem);
        fg_free(p->il_req);
        size_t sets = 4 * (size_t)V * (size_t)Al;
        p->il_mem = fg_calloc((sets + 1) * p->cap, sizeof(float));
        p->il_req = fg_calloc(sets, sizeof(fg_req));
        p->il_cap = p->il_mem && p->il_req ? Al : 0;
        if (!p->il_cap)
            return fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory for %zu buffers of %zu floats", sets + 1,
                            p->cap);
    }
    memset(p->il_req, 0, 4 * (size_t)V * (size_t)p->il_cap * sizeof(fg_req));
    fg_status st = FG_OK;
    int prev = (p->rank + P - 1) % P, next = (p->rank + 1) % P, held[16];
    for (int c = 0; c < V; c++) {
        held[c] = -1;
        int v = c * P + p->rank;
        for (int j = 0; j < Al && st == FG_OK; j++) {
            if (v > 0)
                st = fg_comm_irecv(p->comm, il_buf(p, 0, c, j), x->NC, FG_DT_F32, prev, il_tag(p, v, j, 0),
                                   il_req(p, 0, c, j));
            if (st == FG_OK && v < VP - 1)
                st = fg_comm_irecv(p->comm, il_buf(p, 2, c, j), x->NC, FG_DT_F32, next, il_tag(p, v, j, 1),
                                   il_req(p, 2, c, j));
        }
    }
    int warm = Al == P ? total : 2 * (P - p->rank - 1) + (V - 1) * P;
    if (warm > total)
        warm = total;
    il_setup_slots(p, Al, warm);
    int nf = 0, nb = 0;
#define IL_MB(k) (((k) / VP) * P + (k) % P)
#define IL_FC(k) (((k) % VP) / P)
    *t_start = fg_time_sec();
    while (st == FG_OK && nf < warm) {
        st = il_fwd(p, x, held, IL_FC(nf), IL_MB(nf));
        nf++;
    }
    while (st == FG_OK && nf < total) {
        st = il_fwd(p, x, held, IL_FC(nf), IL_MB(nf));
        nf++;
        if (st == FG_OK)
            st = il_bwd(p, x, held, V - 1 - IL_FC(nb), IL_MB(nb));
        nb++;
    }
    while (st == FG_OK && nb < total) {
        st = il_bwd(p, x, held, V - 1 - IL_FC(nb), IL_MB(nb));
        nb++;
    }
#undef IL_MB
#undef IL_FC
    if (st == FG_OK)
        st = fg_comm_waitall(p->comm, il_req(p, 1, 0, 0), V * p->il_cap);
    if (st == FG_OK)
        st = fg_comm_waitall(p->comm, il_req(p, 3, 0, 0), V * p->il_cap);
    return st;
}

/* ---- stage-owned memory (docs/DIST.md "Memory per rank") ----
 * Stage r owns its layers' tensors ("h.<l>.*"), stage 0 the embedding (wte, wpe), the last
 * stage the final norm and the head (and wte when tied: both end stages keep it, its two
 * gradient halves exchanged). The model's flat buffers keep their global addressing; a
 * rank touches only its spans, so the other pages of the lazy buffers never exist. */

/* Does stage r (under bounds) own tensor t? */
static int tensor_owned(const pp *p, const int *bounds, const fg_tensor_info *t, int r)
{
    int l = 0, P = p->size;
    if (sscanf(t->name, "h.%d.", &l) == 1)
        return owns_at(p, bounds, r, l);
    if (!strcmp(t->name, "wte"))
        return r == 0 || (r == P - 1 && fg_model_get_config(p->m)->tie_embeddings);
    if (!strcmp(t->name, "wpe"))
        return r == 0;
    if (!strncmp(t->name, "ln_f", 4) || !strncmp(t->name, "lm_head", 7))
        return r == P - 1;
    return 1; /* anything else (none with pipelines today): every stage keeps it */
}

/* The first stage owning t: the one whose copy rank 0 gathers */
static int tensor_primary(const pp *p, const int *bounds, const fg_tensor_info *t)
{
    for (int r = 0; r < p->size; r++)
        if (tensor_owned(p, bounds, t, r))
            return r;
    return 0;
}

/* Merged spans of the tensors for which keep(p, bounds, t, r) holds, into out (NULL:
 * count only). Tensors come in offset order (the table's). */
static int spans_of(const pp *p, const int *bounds, int r, int primary, pp_span *out)
{
    int n = 0, nt = fg_model_num_tensors(p->m);
    size_t end = 0;
    for (int i = 0; i < nt; i++) {
        const fg_tensor_info *t = fg_model_tensor(p->m, i);
        int keep = primary ? tensor_primary(p, bounds, t) == r : tensor_owned(p, bounds, t, r);
        if (!keep || !t->numel)
            continue;
        if (n && end == t->offset) {
            if (out)
                out[n - 1].len += t->numel;
        } else {
            if (out)
                out[n] = (pp_span){t->offset, t->numel};
            n++;
        }
        end = t->offset + t->numel;
    }
    return n;
}

/* [a, b) clipped to the spans, appended to out as ranges like r */
static int clip_range(const fg_optim_range *r, const pp_span *sp, int n, fg_optim_range *out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        size_t lo = r->offset > sp[i].off ? r->offset : sp[i].off;
        size_t hi = r->offset + r->numel < sp[i].off + sp[i].len ? r->offset + r->numel : sp[i].off + sp[i].len;
        if (hi > lo) {
            out[k] = *r;
            out[k].offset = lo;
            out[k].numel = hi - lo;
            k++;
        }
    }
    return k;
}

/* this rank's spans and the optimiser's view of them, after the bounds changed */
static fg_status own_build(pp *p)
{
    stream_spans_free(p); /* the stream's spans follow the bounds */
    if (!p->own_on)
        return FG_OK;
    fg_free(p->own);
    fg_free(p->vr);
    fg_free(p->vs);
    p->vr = p->vs = NULL;
    p->n_own = spans_of(p, p->bounds, p->rank, 0, NULL);
    p->own = fg_calloc((size_t)p->n_own + 1, sizeof *p->own);
    if (!p->own)
        return fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory for the stage's spans");
    spans_of(p, p->bounds, p->rank, 0, p->own);
    if (!p->opt)
        return FG_OK; /* ZeRO-1 over the stage: dp.c steps the shard */
    /* the norm counts the tied embedding once: stage 0's copy */
    pp_span *ns = fg_calloc((size_t)p->n_own + 1, sizeof *ns);
    int nn = 0;
    const fg_tensor_info *wte = fg_model_find_tensor(p->m, "wte");
    int drop = p->rank > 0 && wte && tensor_owned(p, p->bounds, wte, p->rank);
    for (int i = 0; ns && i < p->n_own; i++) {
        pp_span a = p->own[i];
        if (drop && a.off == wte->offset) { /* wte is a tensor of its own span's start */
            a.off += wte->numel;
            a.len -= wte->numel;
        }
        if (a.len)
            ns[nn++] = a;
    }
    const fg_optim *o = p->opt;
    size_t cap = ((size_t)o->n_ranges + (size_t)o->n_spans + 1) * ((size_t)p->n_own + 1);
    p->vr = fg_calloc(cap, sizeof *p->vr);
    p->vs = fg_calloc(cap, sizeof *p->vs);
    if (!ns || !p->vr || !p->vs) {
        fg_free(ns);
        return fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory for the stage's spans");
    }
    p->n_vr = p->n_vs = 0;
    for (int i = 0; i < o->n_ranges; i++)
        p->n_vr += clip_range(&o->ranges[i], p->own, p->n_own, p->vr + p->n_vr);
    for (int i = 0; i < o->n_spans; i++)
        p->n_vs += clip_range(&o->spans[i], ns, nn, p->vs + p->n_vs);
    fg_free(ns);
    return FG_OK;
}

/* The pages of a buffer of n elements of `es` bytes outside the spans go back to the system */
static void release_outside(void *buf, size_t es, size_t n, const pp_span *sp, int ns)
{
    if (!buf)
        return;
    char *b = buf;
    size_t at = 0;
    for (int i = 0; i <= ns; i++) {
        size_t end = i < ns ? sp[i].off : n;
        if (end > at)
            fg_mem_release(b + at * es, (end - at) * es);
        if (i < ns)
            at = sp[i].off + sp[i].len;
    }
}

void pp_release(pp *p)
{
    if (!p->own_on)
        return;
    size_t n = fg_model_num_params(p->m);
    release_outside(fg_model_params(p->m), sizeof(float), n, p->own, p->n_own);
    release_outside(fg_model_grads(p->m), sizeof(float), n, p->own, p->n_own);
    const fg_optim *o = p->opt;
    if (!o)
        return; /* ZeRO-1's m, v are the shard's */
    release_outside(o->m ? (void *)o->m : (void *)o->m16, o->m ? sizeof(float) : sizeof(uint16_t), o->n_params, p->own,
                    p->n_own);
    release_outside(o->v ? (void *)o->v : (void *)o->v16, o->v ? sizeof(float) : sizeof(uint16_t), o->n_params, p->own,
                    p->n_own);
}

static int own_possible(const pp *p)
{
    const fg_model_config *c = fg_model_get_config(p->m);
    /* weights tied across layers (stages): every stage keeps every tensor */
    return p->size > 1 && !c->ffn_share && c->mtp_depth <= 0;
}

fg_status pp_own_begin(pp *p)
{
    if (!own_possible(p))
        return FG_OK;
    p->own_on = 1;
    fg_status st = own_build(p);
    if (st == FG_OK && !(p->xbuf = fg_malloc(PP_XCHUNK * sizeof(float))))
        st = fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory");
    if (st != FG_OK)
        p->own_on = 0;
    return st;
}

fg_status pp_own_enable(pp *p, fg_optim *o)
{
    if (!p->own_on)
        return FG_OK;
    p->opt = p->zero ? NULL : o;
    p->zopt = p->zero ? o : NULL;
    fg_status st = own_build(p);
    if (st == FG_OK)
        pp_release(p);
    return st;
}

const dp_span *pp_own_spans(const pp *p, int *n)
{
    *n = p->own_on ? p->n_own : 0;
    return p->own_on ? p->own : NULL;
}

void pp_norm_skip(const pp *p, size_t *off, size_t *len)
{
    const fg_tensor_info *wte = fg_model_find_tensor(p->m, "wte");
    *off = *len = 0;
    if (p->own_on && p->rank > 0 && wte && tensor_owned(p, p->bounds, wte, p->rank)) {
        *off = wte->offset;
        *len = wte->numel;
    }
}

int pp_own(const pp *p)
{
    return p->own_on;
}

size_t pp_kept(const pp *p)
{
    size_t k = 0;
    for (int i = 0; i < p->n_own; i++)
        k += p->own[i].len;
    return p->own_on ? k : fg_model_num_params(p->m);
}

/* n elements of type t at buf, sent to / received from peer in pieces MPI's int counts hold */
static fg_status xfer(pp *p, void *buf, size_t es, fg_dtype t, size_t n, int peer, int send)
{
    fg_status st = FG_OK;
    for (size_t at = 0; at < n && st == FG_OK; at += (size_t)1 << 28) {
        size_t k = n - at < (size_t)1 << 28 ? n - at : (size_t)1 << 28;
        char *b = (char *)buf + at * es;
        st = send ? fg_comm_send(p->comm, b, k, t, peer, 7) : fg_comm_recv(p->comm, b, k, t, peer, 7);
    }
    return st;
}

/* the spans' params (and m, v when moments: the optimiser's, or under ZeRO-1 the
 * transient p->tm, p->tv) of stage `from` go to stage `to` */
static fg_status move_spans(pp *p, const pp_span *sp, int ns, int from, int to, int moments)
{
    if (p->rank != from && p->rank != to)
        return FG_OK;
    int send = p->rank == from, peer = send ? to : from;
    const fg_optim *o = p->opt;
    float *par = fg_model_params(p->m);
    fg_status st = FG_OK;
    for (int i = 0; i < ns && st == FG_OK; i++) {
        size_t off = sp[i].off, len = sp[i].len;
        st = xfer(p, par + off, sizeof(float), FG_DT_F32, len, peer, send);
        if (!moments || st != FG_OK)
            continue;
        if (!o && p->tm) { /* ZeRO-1: the stage's gathered m, v */
            st = xfer(p, p->tm + off, sizeof(float), FG_DT_F32, len, peer, send);
            if (st == FG_OK)
                st = xfer(p, p->tv + off, sizeof(float), FG_DT_F32, len, peer, send);
        } else if (!o) {
            continue;
        } else if (o->m) { /* fp32 moments, else bf16 (--adam-moments bf16) */
            st = xfer(p, o->m + off, sizeof(float), FG_DT_F32, len, peer, send);
            if (st == FG_OK)
                st = xfer(p, o->v + off, sizeof(float), FG_DT_F32, len, peer, send);
        } else if (o->m16) {
            st = xfer(p, o->m16 + off, sizeof(uint16_t), FG_DT_U16, len, peer, send);
            if (st == FG_OK)
                st = xfer(p, o->v16 + off, sizeof(uint16_t), FG_DT_U16, len, peer, send);
        }
    }
    return st;
}

/* Loss scaling's inf/nan check over the stage's spans, agreed by the stages (the tp ranks
 * and replicas hold the same sums). */
fg_status pp_unscale(pp *p, float inv_scale, bool *found_inf)
{
    float *g = fg_model_grads(p->m);
    int32_t any = 0;
    for (int i = 0; i < p->n_own; i++) {
        bool f = false;
        fg_grad_unscale(g + p->own[i].off, p->own[i].len, inv_scale, &f);
        any |= f;
    }
    fg_status st = fg_comm_allreduce(p->comm, &any, 1, FG_DT_I32, FG_OP_MAX);
    *found_inf = any != 0;
    return st;
}

/* the optimiser restricted to this stage's spans (same storage, same step count) */
static fg_optim view_of(const pp *p)
{
    fg_optim v = *p->opt;
    v.ranges = p->vr;
    v.n_ranges = p->n_vr;
    v.spans = p->vs;
    v.n_spans = p->n_vs;
    return v;
}

fg_status pp_norm(pp *p, double *norm)
{
    fg_optim v = view_of(p);
    double n = fg_optim_grad_norm(&v, fg_model_grads(p->m)), ss = n * n;
    fg_status st = fg_comm_allreduce(p->comm, &ss, 1, FG_DT_F64, FG_OP_SUM);
    *norm = sqrt(ss);
    return st;
}

void pp_step(pp *p, float lr, float grad_coef)
{
    fg_optim v = view_of(p);
    fg_optim_step_fused(&v, fg_model_params(p->m), fg_model_grads(p->m), lr, grad_coef, NULL);
    p->opt->t = v.t;
}

void pp_memory(const pp *p, size_t *owned, size_t *resident, size_t *whole)
{
    size_t n = fg_model_num_params(p->m), k = pp_kept(p);
    const fg_optim *o = p->opt;
    size_t es = o && o->m16 ? sizeof(uint16_t) : sizeof(float);
    /* params and grads; m, v when this rank's follow the stage (not ZeRO-1's shard: the caller's) */
    *owned = k * 2 * sizeof(float) + (o ? k * 2 * es : 0);
    *whole = n * 2 * sizeof(float) + (o ? n * 2 * es : 0);
    *resident = 0;
    if (!p->own_on)
        return;
    *resident = fg_mem_resident(fg_model_params(p->m), n * sizeof(float)) +
                fg_mem_resident(fg_model_grads(p->m), n * sizeof(float));
    if (o)
        *resident += fg_mem_resident(o->m ? (void *)o->m : (void *)o->m16, n * es) +
                     fg_mem_resident(o->v ? (void *)o->v : (void *)o->v16, n * es);
}

/* The stage-owned gradient sum: the tied embedding's two halves exchanged between the end
 * stages (a + b on both: the same bits), then each owned span summed over the tp group
 * and the replicas; no stage sends another's layers (nor their zeros). */
static fg_status own_tied(pp *p)
{
    float *g = fg_model_grads(p->m);
    fg_status st = FG_OK;
    const fg_tensor_info *wte = fg_model_find_tensor(p->m, "wte");
    int P = p->size;
    if (wte && fg_model_get_config(p->m)->tie_embeddings && (p->rank == 0 || p->rank == P - 1)) {
        int peer = p->rank == 0 ? P - 1 : 0;
        for (size_t at = 0; at < wte->numel && st == FG_OK; at += PP_XCHUNK) {
            size_t k = wte->numel - at < PP_XCHUNK ? wte->numel - at : PP_XCHUNK;
            float *a = g + wte->offset + at;
            fg_req rq[2];
            memset(rq, 0, sizeof rq);
            st = fg_comm_irecv(p->comm, p->xbuf, k, FG_DT_F32, peer, 5, &rq[0]);
            if (st == FG_OK)
                st = fg_comm_isend(p->comm, a, k, FG_DT_F32, peer, 5, &rq[1]);
            if (st == FG_OK)
                st = fg_comm_waitall(p->comm, rq, 2);
            for (size_t i = 0; i < k && st == FG_OK; i++)
                a[i] += p->xbuf[i];
            p->st.bytes_step += (double)k * sizeof(float);
        }
    }
    return st;
}

static fg_status own_reduce(pp *p)
{
    float *g = fg_model_grads(p->m);
    fg_status st = own_tied(p);
    fg_comm *groups[2] = {p->tp, p->dp};
    for (int gi = 0; gi < 2 && st == FG_OK; gi++) {
        fg_comm *c = groups[gi];
        if (!c || fg_comm_size(c) < 2)
            continue;
        double q = fg_comm_size(c);
        for (int i = 0; i < p->n_own && st == FG_OK; i++) {
            st = fg_comm_allreduce(c, g + p->own[i].off, p->own[i].len, FG_DT_F32, FG_OP_SUM);
            p->st.bytes_step += 2 * (q - 1) / q * (double)p->own[i].len * sizeof(float);
        }
    }
    return st;
}

/* The layers whose owner changed between the bounds ob and the current ones: params and
 * m, v sent from the old owner to the new (in layer order on every rank: pairwise
 * exchanges that cannot wait on each other in a cycle), then the spans rebuilt and the
 * pages this stage no longer owns released. */
static fg_status own_move(pp *p, const int *ob)
{
    if (!p->own_on)
        return FG_OK;
    int nt = fg_model_num_tensors(p->m);
    pp_span *sp = fg_calloc((size_t)nt + 1, sizeof *sp);
    if (!sp)
        return fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory");
    fg_status st = FG_OK;
    if (p->zero && p->zopt) {
        /* ZeRO-1 over the stage: its m, v gathered whole on each of its ranks from the
         * shards (a transient of the stage's m, v; lazy, only its spans' pages exist),
         * sent with the moved layers, then re-cut by the caller (pp_take_moments) */
        size_t n = fg_model_num_params(p->m);
        p->tm = fg_calloc_lazy(n + 1, sizeof(float));
        p->tv = fg_calloc_lazy(n + 1, sizeof(float));
        st = p->tm && p->tv ? dp_gather_moments(p->zero, p->zopt, p->tm, p->tv)
                            : fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory for the stage's m, v");
    }
    for (int l = 0; l < p->L && st == FG_OK; l++) {
        int from = -1, to = -1;
        for (int r = 0; r < p->size; r++) {
            if (owns_at(p, ob, r, l))
                from = r;
            if (owns_at(p, p->bounds, r, l))
                to = r;
        }
        if (from == to || from < 0 || to < 0)
            continue;
        char pre[32];
        int k = snprintf(pre, sizeof pre, "h.%d.", l), ns = 0;
        for (int i = 0; i < nt; i++) {
            const fg_tensor_info *t = fg_model_tensor(p->m, i);
            if (!strncmp(t->name, pre, (size_t)k) && t->numel)
                sp[ns++] = (pp_span){t->offset, t->numel};
        }
        st = move_spans(p, sp, ns, from, to, 1);
    }
    fg_free(sp);
    if (st == FG_OK)
        st = own_build(p);
    if (st == FG_OK)
        pp_release(p);
    return st;
}

static int init_keep(void *ctx, const fg_tensor_info *t)
{
    const pp *p = ctx;
    return tensor_owned(p, p->bounds, t, p->rank);
}

void pp_init_weights(fg_comm *pp_comm, int chunks, int owned, fg_model *m, uint64_t seed)
{
    int P = pp_comm ? fg_comm_size(pp_comm) : 1, L = fg_model_get_config(m)->n_layer;
    const fg_model_config *c = fg_model_get_config(m);
    if (!owned || P < 2 || P > 64 || chunks < 1 || chunks > 16 || P * chunks > L || c->ffn_share || c->mtp_depth > 0) {
        fg_model_init_weights(m, seed); /* pp_new refuses the bad shapes; no stage-owned memory */
        return;
    }
    /* pp_new's split: even over the stages (or the virtual stages) */
    int bounds[65], vb[64 * 16 + 1];
    pp tmp = {.rank = fg_comm_rank(pp_comm), .size = P, .L = L, .V = chunks, .m = m, .bounds = bounds, .vb = vb};
    even_split(L, P, chunks, bounds, vb);
    fg_model_init_weights_keep(m, seed, init_keep, &tmp);
}

/* The sum over the stages (each holds its own layers' grads, zeros elsewhere; a tied
 * embedding gets both ends' parts), then over the replicas. g NULL: the loss only (ZeRO-1
 * reduce-scatters the grads over the whole grid instead). */
static fg_status reduce(pp *p, fg_comm *c, float *g, size_t n, double *loss_sum)
{
    if (!c || fg_comm_size(c) < 2)
        return FG_OK;
    fg_status st = g ? fg_comm_allreduce(c, g, n, FG_DT_F32, FG_OP_SUM) : FG_OK;
    if (st == FG_OK && loss_sum)
        st = fg_comm_allreduce(c, loss_sum, 1, FG_DT_F64, FG_OP_SUM);
    double q = fg_comm_size(c);
    p->st.bytes_step += 2 * (q - 1) / q * ((g ? (double)n * sizeof(float) : 0.0) + (loss_sum ? sizeof(double) : 0.0));
    return st;
}

fg_status pp_grads(pp *p, fg_model *m, const int32_t *inp, const int32_t *tgt, int B, int T, int Al, int A,
                   float grad_scale, float *loss)
{
    const int P = p->size, s = p->rank;
    step_ctx x = {.m = m,
                  .inp = inp,
                  .tgt = tgt,
                  .B = B,
                  .T = T,
                  .Al = Al,
                  .l0 = p->bounds[s],
                  .l1 = p->bounds[s + 1],
                  .first = s == 0,
                  .last = s == P - 1,
                  /* sequence parallel (tp): a stage's stream is this tp rank's rows only */
                  .NC = (size_t)B * (size_t)T * (size_t)fg_model_get_config(m)->d_model /
                        (size_t)fg_model_tp_seq_split(m),
                  .BT = (size_t)B * (size_t)T,
                  .scale = grad_scale * (1.0f / (float)A), /* one process's scale for A micro-batches */
                  .held = -1};
    if (x.NC > p->cap)
        return fg_error(FG_ERR_INVALID, "pipeline parallel: B = %d, T = %d exceed the stage buffers", B, T);
    p->st.bytes_step = 0;
    p->st.micro = Al;
    if (p->own_on) { /* only the stage's spans: the other pages are never touched */
        float *g = fg_model_grads(m);
        for (int i = 0; i < p->n_own; i++)
            memset(g + p->own[i].off, 0, p->own[i].len * sizeof(float));
    } else {
        fg_model_zero_grad(m);
    }
    double t_start = 0;
    fg_status st = p->V > 1 ? run_interleaved(p, &x, &t_start) : run_1f1b(p, &x, &t_start);
    if (st != FG_OK)
        return st; /* the CLI aborts the job: the other stages are left waiting */
    double wall = fg_time_sec() - t_start;
    if (p->st.steps > 0) /* the first step pays the warm-up (first touches, thread pools): not a speed */
        p->acc_compute += x.compute;

    /* each stage's compute and wall time, for the bubble and the balancer */
    p->gath[2 * s] = x.compute;
    p->gath[2 * s + 1] = wall;
    st = fg_comm_allgather(p->comm, p->gath, p->counts, p->displs, FG_DT_F64);
    if (st != FG_OK)
        return st;
    double idle = 0;
    for (int k = 0; k < P; k++) {
        p->st.step_compute[k] = p->gath[2 * k];
        idle += p->gath[2 * k + 1] > 0 ? 1.0 - p->gath[2 * k] / p->gath[2 * k + 1] : 0.0;
    }
    p->st.bubble = idle / P;
    p->st.bubble_theory = (double)(P - 1) / (double)(p->V * Al + P - 1); /* V = 1: (p-1)/(m+p-1) */
    p->st.bubble_sum += p->st.bubble;
    p->st.steps++;

    /* MoE loads: counted by the stage that owns the layer; the others drop theirs (stale
     * copies of an earlier sum) so the sum is the owner's count */
    const fg_model_config *c = fg_model_get_config(m);
    for (int l = 0; l < c->n_layer && st == FG_OK; l++) {
        int n = 0;
        float *ld = fg_model_moe_step_load(m, l, &n);
        if (!ld)
            continue;
        if (!owns(p, l))
            memset(ld, 0, (size_t)n * sizeof(float));
        st = fg_comm_allreduce(p->comm, ld, (size_t)n, FG_DT_F32, FG_OP_SUM);
    }
    double sum = x.sum;
    float *g = p->zero || p->own_on ? NULL : fg_model_grads(m);
    size_t n = fg_model_num_params(m);
    if (st == FG_OK)
        st = reduce(p, p->comm, g, n, &sum);
    if (st == FG_OK && g) /* the shards' grads (replicated tensors: rank 0's only); the loss is every tp rank's */
        st = reduce(p, p->tp, g, n, NULL);
    if (st == FG_OK)
        st = reduce(p, p->dp, g, n, &sum);
    if (st == FG_OK && p->own_on && !p->zero)
        st = own_reduce(p);
    if (st == FG_OK && p->own_on && p->zero) /* then the stage's reduce-scatter sums the rest */
        st = own_tied(p);
    /* ZeRO-1: one reduce-scatter over every rank of the grid forms the same sum (stages,
     * tp shards and replicas alike hold zeros where they computed nothing), each rank
     * receiving only the span of the optimiser state it keeps */
    if (st == FG_OK && p->zero)
        st = dp_scatter(p->zero);
    p->st.bytes += p->st.bytes_step;
    *loss = (float)(sum / A);
    return st;
}

fg_status pp_agree(pp *p, long *total, bool *last)
{
    int64_t v[2] = {*total, *last ? 1 : 0};
    fg_status st = fg_comm_bcast(p->comm, v, 2, FG_DT_I64, 0);
    *total = (long)v[0];
    *last = v[1] != 0;
    return st;
}

fg_status pp_barrier(pp *p)
{
    return fg_comm_barrier(p->comm);
}

fg_status pp_balance(pp *p, int *moved, char *msg, size_t msg_len)
{
    const int P = p->size;
    *moved = 0;
    if (msg && msg_len)
        msg[0] = '\0';
    /* every rank gets the same times, so every rank draws the same bounds */
    p->gath[2 * p->rank] = p->acc_compute;
    p->gath[2 * p->rank + 1] = 0;
    fg_status st = fg_comm_allgather(p->comm, p->gath, p->counts, p->displs, FG_DT_F64);
    /* ... and every replica the same split: each stage's slowest replica (the step waits
     * for it at the gradient sum), and with expert parallelism the ep group spans the
     * replicas, so a stage must hold the same layers in all of them */
    if (st == FG_OK && p->dp)
        st = fg_comm_allreduce(p->dp, p->gath, 2 * (size_t)P, FG_DT_F64, FG_OP_MAX);
    p->acc_compute = 0;
    if (st != FG_OK)
        return st;
    p->st.n_balance++;
    /* a stage's time per layer: its machine's speed times the layers' cost (the
     * embedding and the head ride on the end stages' figures) */
    double u[64], cur = 0;
    int n[64], nn[64];
    for (int s = 0; s < P; s++) {
        n[s] = p->bounds[s + 1] - p->bounds[s];
        u[s] = p->gath[2 * s] / n[s];
        if (!(u[s] > 0))
            return FG_OK; /* nothing measured yet */
        cur = fmax(cur, p->gath[2 * s]);
    }
    /* water-filling: one layer each, then every further layer to the stage whose time
     * grows least; optimal for max_s n_s u_s with contiguous stages of equal layers */
    for (int s = 0; s < P; s++)
        nn[s] = 1;
    for (int k = P; k < p->L; k++) {
        int best = 0;
        for (int s = 1; s < P; s++)
            if ((nn[s] + 1) * u[s] < (nn[best] + 1) * u[best])
                best = s;
        nn[best]++;
    }
    double nxt = 0;
    for (int s = 0; s < P; s++)
        nxt = fmax(nxt, nn[s] * u[s]);
    int change = nxt < 0.95 * cur; /* measured noise must not shuffle layers back and forth */
    if (msg) {
        size_t off = (size_t)snprintf(msg, msg_len, "pipeline balance: stage compute s");
        for (int s = 0; s < P && off < msg_len; s++)
            off += (size_t)snprintf(msg + off, msg_len - off, " %.3f", p->gath[2 * s]);
        for (int s = 0; s < P && off < msg_len; s++)
            off += (size_t)snprintf(msg + off, msg_len - off, "%s%d", s ? "|" : ", layers ", n[s]);
        for (int s = 0; s < P && off < msg_len; s++)
            off += (size_t)snprintf(msg + off, msg_len - off, "%s%d",
                                    s        ? "|"
                                    : change ? " -> "
                                             : ", kept (best ",
                                    nn[s]);
        if (off < msg_len)
            snprintf(msg + off, msg_len - off,
                     change ? " (slowest stage %.3f -> %.3f s predicted)" : " saves under 5%%: %.3f -> %.3f s)", cur,
                     nxt);
    }
    if (!change)
        return FG_OK;
    int ob[65];
    memcpy(ob, p->bounds, ((size_t)P + 1) * sizeof *ob);
    for (int s = 0; s < P; s++)
        p->bounds[s + 1] = p->bounds[s] + nn[s];
    setup_slots(p);
    if ((st = own_move(p, ob)) != FG_OK) /* stage-owned memory: the moved layers' params and m, v */
        return st;
    *moved = 1;
    p->st.n_moved++;
    return FG_OK;
}

void pp_take_moments(pp *p, float **m, float **v)
{
    *m = p->tm;
    *v = p->tv;
    p->tm = p->tv = NULL;
}

/* ---- checkpoints and validation without the whole model on rank 0 (docs/DIST.md
 * "Memory per rank") ---- */

int pp_lead_pipe(const pp *p)
{
    return p->own_on && (!p->dp || fg_comm_rank(p->dp) == 0) && (!p->tp || fg_comm_rank(p->tp) == 0);
}

int pp_val_member(const pp *p)
{
    return p->own_on && (!p->dp || fg_comm_rank(p->dp) == 0);
}

int pp_stream_tensors(const pp *p)
{
    return p->opt ? 3 : 1; /* ZeRO-1's m, v are in the shard files */
}

/* Stage s's floats of [a, a + k) under its first-owner spans: packed into buf (fp32; the
 * tensor k of the checkpoint: 0 params, 1 m, 2 v) when buf, else counted, or (unpack)
 * scattered from buf into the chunk out at their place. */
static size_t stream_pieces(const pp *p, const pp_span *sp, int ns, int k, size_t a, size_t n, float *buf,
                            float *unpack_to)
{
    const fg_optim *o = p->opt;
    size_t c = 0;
    for (int i = 0; i < ns; i++) {
        size_t lo = sp[i].off > a ? sp[i].off : a, hi = sp[i].off + sp[i].len < a + n ? sp[i].off + sp[i].len : a + n;
        if (hi <= lo)
            continue;
        if (unpack_to) {
            memcpy(unpack_to + (lo - a), buf + c, (hi - lo) * sizeof(float));
        } else if (buf) {
            if (k == 0)
                memcpy(buf + c, fg_model_params(p->m) + lo, (hi - lo) * sizeof(float));
            else if (o->m)
                memcpy(buf + c, (k == 1 ? o->m : o->v) + lo, (hi - lo) * sizeof(float));
            else
                fg_cvt_bf16_f32(buf + c, (k == 1 ? o->m16 : o->v16) + lo, hi - lo);
        }
        c += hi - lo;
    }
    return c;
}

static fg_status stream_spans(pp *p)
{
    if (p->sspans)
        return FG_OK;
    p->sspans = fg_calloc((size_t)p->size, sizeof *p->sspans);
    p->nsspans = fg_calloc((size_t)p->size, sizeof *p->nsspans);
    p->sbuf = fg_malloc(PP_SCHUNK);
    if (!p->sspans || !p->nsspans || !p->sbuf)
        return fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory for the checkpoint stream");
    for (int s = 0; s < p->size; s++) {
        int ns = spans_of(p, p->bounds, s, 1, NULL);
        if (!(p->sspans[s] = fg_calloc((size_t)ns + 1, sizeof(pp_span))))
            return fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory for the checkpoint stream");
        p->nsspans[s] = spans_of(p, p->bounds, s, 1, p->sspans[s]);
    }
    return FG_OK;
}

static void stream_spans_free(pp *p)
{
    for (int s = 0; p->sspans && s < p->size; s++)
        fg_free(p->sspans[s]);
    fg_free(p->sspans);
    fg_free(p->nsspans);
    fg_free(p->sbuf);
    p->sspans = NULL;
    p->nsspans = NULL;
    p->sbuf = NULL;
}

/* The sender's side of one piece: stage s packs its floats of the piece and sends them */
static fg_status stream_send_piece(pp *p, int k, size_t a, size_t n)
{
    size_t c = stream_pieces(p, p->sspans[p->rank], p->nsspans[p->rank], k, a, n, p->sbuf, NULL);
    return c ? fg_comm_send(p->comm, p->sbuf, c, FG_DT_F32, 0, 9) : FG_OK;
}

fg_status pp_stream_begin(pp *p, int nt)
{
    p->s_nt = nt;
    p->s_k = 0;
    p->s_at = 0;
    return stream_spans(p);
}

fg_status pp_stream_fill(void *ctx, int k, size_t off, void *buf, size_t bytes)
{
    pp *p = ctx;
    size_t a = off / sizeof(float), n = bytes / sizeof(float);
    if (k != p->s_k || a != p->s_at || off % sizeof(float) || bytes % sizeof(float) || bytes > PP_SCHUNK)
        return fg_error(FG_ERR_INTERNAL, "pipeline checkpoint stream: piece %d at %zu out of order", k, off);
    float *out = buf;
    memset(out, 0, bytes); /* no tensor's floats (none today): zeros, as one process */
    stream_pieces(p, p->sspans[0], p->nsspans[0], k, a, n, p->sbuf, NULL); /* rank 0's own */
    stream_pieces(p, p->sspans[0], p->nsspans[0], k, a, n, p->sbuf, out);
    fg_status st = FG_OK;
    for (int s = 1; s < p->size && st == FG_OK; s++) {
        size_t c = stream_pieces(p, p->sspans[s], p->nsspans[s], k, a, n, NULL, NULL);
        if (!c)
            continue;
        st = fg_comm_recv(p->comm, p->sbuf, c, FG_DT_F32, s, 9);
        if (st == FG_OK)
            stream_pieces(p, p->sspans[s], p->nsspans[s], k, a, n, p->sbuf, out);
    }
    p->s_at += n;
    if (p->s_at >= fg_model_num_params(p->m)) {
        p->s_k++;
        p->s_at = 0;
    }
    return st;
}

fg_status pp_stream_end(pp *p)
{
    fg_status st = FG_OK;
    size_t N = fg_model_num_params(p->m), ch = PP_SCHUNK / sizeof(float);
    if (p->rank == 0) { /* the writer stopped early (a failed open): drain the senders */
        float *tmp = fg_malloc(PP_SCHUNK);
        if (!tmp)
            st = fg_error(FG_ERR_NOMEM, "pipeline parallel: out of memory");
        while (st == FG_OK && p->s_k < p->s_nt) {
            size_t n = N - p->s_at < ch ? N - p->s_at : ch;
            st = pp_stream_fill(p, p->s_k, p->s_at * sizeof(float), tmp, n * sizeof(float));
        }
        fg_free(tmp);
        return st;
    }
    for (int k = 0; k < p->s_nt && st == FG_OK; k++)
        for (size_t a = 0; a < N && st == FG_OK; a += ch)
            st = stream_send_piece(p, k, a, N - a < ch ? N - a : ch);
    return st;
}

fg_status pp_eval(pp *p, fg_model *m, const int32_t *inp, const int32_t *tgt, int B, int T, float *loss)
{
    int VS = p->V * p->size;
    const int *vb = p->V > 1 ? p->vb : p->bounds;
    /* sequence parallel (tp): as in training, a stage's stream is this tp rank's rows */
    size_t NC = (size_t)B * (size_t)T * (size_t)fg_model_get_config(m)->d_model / (size_t)fg_model_tp_seq_split(m);
    float *x = p->xin[0], *y = p->yout[0], l = 0;
    fg_status st = NC <= p->cap ? FG_OK : fg_error(FG_ERR_INVALID, "pipeline validation: batch above the slots");
    for (int v = 0; v < VS && st == FG_OK; v++) {
        int first = v == 0, last = v == VS - 1;
        if (v % p->size != p->rank)
            continue;
        if (!first)
            st = fg_comm_recv(p->comm, x, NC, FG_DT_F32, (v - 1) % p->size, 11);
        if (st == FG_OK)
            st = fg_model_forward_range(m, vb[v], vb[v + 1], first ? inp : NULL, last ? tgt : NULL, first ? NULL : x, B,
                                        T, last ? NULL : y, &l);
        if (st == FG_OK && !last)
            st = fg_comm_send(p->comm, y, NC, FG_DT_F32, (v + 1) % p->size, 11);
    }
    /* the loss is the last virtual stage's (rank size - 1): to stage 0 */
    if (st == FG_OK && p->rank == p->size - 1)
        st = fg_comm_send(p->comm, &l, 1, FG_DT_F32, 0, 12);
    else if (st == FG_OK && p->rank == 0)
        st = fg_comm_recv(p->comm, &l, 1, FG_DT_F32, p->size - 1, 12);
    *loss = l;
    return st;
}

fg_status pp_bcast_flag(pp *p, int *flag)
{
    int32_t v = *flag;
    fg_status st = fg_comm_bcast(p->comm, &v, 1, FG_DT_I32, 0);
    *flag = v;
    return st;
}
