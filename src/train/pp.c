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
#include "pp.h"

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
    /* interleaved 1F1B (V > 1 chunks): chunk c of this rank is virtual stage c * size + rank,
     * layers [vb[c * size + rank], vb[c * size + rank + 1]); one buffer set per chunk and
     * micro-batch of the step (grown with the step's micro-batch count) */
    int V;
    int *vb;          /* [V * size + 1] */
    int il_cap;       /* micro-batches the buffers hold */
    int il_slots_for; /* the micro-batch count the activation sets were sized for (0: none yet) */
    float *il_mem;    /* 4 x V x il_cap slots + the recompute scratch */
    fg_req *il_req;   /* 4 x V x il_cap: rx, ys, rdy, dxs */
    pp_stats st;
};

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
    for (int s = 0; s <= P; s++) /* even split; the first L % P stages one layer more */
        p->bounds[s] = (int)fg_dist_part_offset((size_t)p->L, P, s);
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
        for (int s = 0; s <= VP; s++) /* even split over the virtual stages */
            p->vb[s] = (int)fg_dist_part_offset((size_t)p->L, VP, s);
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
    fg_free(p->bounds);
    fg_free(p->xin);
    fg_free(p->rx);
    fg_free(p->counts);
    fg_free(p->displs);
    fg_free(p->gath);
    fg_free(p->vb);
    fg_free(p->il_mem);
    fg_free(p->il_req);
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
    return FG_OK;
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

static int owns(const pp *p, int l)
{
    if (p->V == 1)
        return l >= p->bounds[p->rank] && l < p->bounds[p->rank + 1];
    for (int c = 0; c < p->V; c++) {
        int v = c * p->size + p->rank;
        if (l >= p->vb[v] && l < p->vb[v + 1])
            return 1;
    }
    return 0;
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
                  .NC = (size_t)B * (size_t)T * (size_t)fg_model_get_config(m)->d_model,
                  .BT = (size_t)B * (size_t)T,
                  .scale = grad_scale * (1.0f / (float)A), /* one process's scale for A micro-batches */
                  .held = -1};
    if (x.NC > p->cap)
        return fg_error(FG_ERR_INVALID, "pipeline parallel: B = %d, T = %d exceed the stage buffers", B, T);
    p->st.bytes_step = 0;
    p->st.micro = Al;
    fg_model_zero_grad(m);
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
    float *g = p->zero ? NULL : fg_model_grads(m);
    size_t n = fg_model_num_params(m);
    if (st == FG_OK)
        st = reduce(p, p->comm, g, n, &sum);
    if (st == FG_OK && g) /* the shards' grads (replicated tensors: rank 0's only); the loss is every tp rank's */
        st = reduce(p, p->tp, g, n, NULL);
    if (st == FG_OK)
        st = reduce(p, p->dp, g, n, &sum);
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
    for (int s = 0; s < P; s++)
        p->bounds[s + 1] = p->bounds[s] + nn[s];
    setup_slots(p);
    *moved = 1;
    p->st.n_moved++;
    return FG_OK;
}
