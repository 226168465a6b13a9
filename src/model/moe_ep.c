/* moe_ep.c: expert parallelism for the MoE layers: each rank of the ep group owns some
 * experts and runs them on the rows every rank routed to them (all-to-all dispatch), then
 * sends the outputs back (combine); backward moves the output gradients the same way.
 * Routing, capacity and the combine stay on the token's rank, so the result is one
 * process's up to fp32 summation order. The model-level switch and placement too. */
#include <string.h>

#include "frugal/dist.h"
#include "frugal/moe.h"
#include "model_impl.h"
#include "moe_impl.h"

typedef struct fg_moe_ep fg_moe_ep;

struct fg_moe_ep_layer {
    struct fg_moe_ep *ep;
    int32_t *owner; /* [E] rank of each expert (placement; the same on every rank) */
    int32_t *owned; /* [n_owned] this rank's experts, ascending */
    int n_owned;
    double *load;  /* [E] rows routed to each expert (all ranks) since the last placement */
    int32_t *dest; /* [P*E] rank computing the rows source s sent for expert e (last forward) */
    /* per micro-batch max and mean of the rows each rank computes, summed since the last
     * placement: [0] contiguous blocks, [1] the placement alone, [2] with the spill */
    double mb_max[3], mb_mean[3];
    int32_t *cnt_from; /* [P*E] rows each source sent for each expert (last forward) */
    int32_t *eoff;     /* [E+1] expert-major offsets of the received rows (0 rows: not owned) */
    int n_recv;
    float *xr, *hr, *ar; /* [cap, C], [cap, 2H], [cap, H]: kept for backward */
    size_t cap;
};

struct fg_moe_ep {
    fg_comm *comm; /* borrowed */
    int P, me, E, C, H, n_layer;
    int32_t *cnt_send; /* [P*E] the count vector, once per peer */
    int32_t *cur;      /* [E] work */
    size_t *scount, *rcount;
    float *sbuf, *rbuf;
    size_t sbuf_cap, rbuf_cap;                  /* floats */
    float *eor, *d_eor, *d_actr, *d_hr, *d_xgr; /* owner-side scratch, scr rows */
    size_t scr;
    struct fg_moe_ep_layer *layers; /* [n_layer] */
    fg_status err;                  /* sticky: the first failure, returned by the model's forward/backward */
    double bytes;                   /* sent to other ranks, counts included */
    long exchanges;
    long load_steps; /* optimiser steps in the layers' load since the last placement */
    int spill;       /* move rows of overloaded ranks' experts to the least loaded (weights are everywhere) */
    double *rl;      /* [P] work: rows per rank */
};

static fg_status grow(float **p, size_t *cap, size_t need, const char *what)
{
    if (need <= *cap)
        return FG_OK;
    size_t n = need + need / 2 + 64;
    float *q = fg_realloc(*p, n * sizeof(float));
    if (!q)
        return fg_error(FG_ERR_NOMEM, "moe ep: cannot grow %s to %zu floats", what, n);
    *p = q;
    *cap = n;
    return FG_OK;
}

static fg_status grow_rows(float **p, size_t rows, size_t width, const char *what)
{
    float *q = fg_realloc(*p, rows * width * sizeof(float) + 64);
    if (!q)
        return fg_error(FG_ERR_NOMEM, "moe ep: cannot grow %s to %zu rows", what, rows);
    *p = q;
    return FG_OK;
}

static void set_owned(struct fg_moe_ep_layer *el)
{
    el->n_owned = 0;
    for (int e = 0; e < el->ep->E; e++)
        if (el->owner[e] == el->ep->me)
            el->owned[el->n_owned++] = e;
}

static fg_status exchange(fg_moe_ep *ep, const float *send, const size_t *sc, float *recv, const size_t *rc)
{
    fg_status st = fg_comm_alltoallv(ep->comm, send, sc, recv, rc, FG_DT_F32);
    for (int r = 0; r < ep->P; r++)
        if (r != ep->me)
            ep->bytes += (double)sc[r] * sizeof(float);
    ep->exchanges++;
    return st;
}

/* rows of the local expert-sorted layout (offs) -> send buffer, grouped by the rank that
 * computes them (dest of this rank's blocks) */
static void pack_local(fg_moe_ep *ep, const struct fg_moe_ep_layer *el, const int32_t *offs, const float *src, size_t W)
{
    size_t o = 0;
    for (int d = 0; d < ep->P; d++) {
        size_t start = o;
        for (int e = 0; e < ep->E; e++) {
            if (el->dest[(size_t)ep->me * ep->E + e] != d)
                continue;
            size_t n = (size_t)(offs[e + 1] - offs[e]);
            memcpy(ep->sbuf + o * W, src + (size_t)offs[e] * W, n * W * sizeof(float));
            o += n;
        }
        ep->scount[d] = (o - start) * W;
    }
}

static void unpack_local(fg_moe_ep *ep, const struct fg_moe_ep_layer *el, const int32_t *offs, float *dst, size_t W)
{
    size_t o = 0;
    for (int d = 0; d < ep->P; d++)
        for (int e = 0; e < ep->E; e++) {
            if (el->dest[(size_t)ep->me * ep->E + e] != d)
                continue;
            size_t n = (size_t)(offs[e + 1] - offs[e]);
            memcpy(dst + (size_t)offs[e] * W, ep->sbuf + o * W, n * W * sizeof(float));
            o += n;
        }
}

/* owner side: the receive buffer (by source, then owned expert) <-> expert-major rows
 * (by owned expert, then source), so each expert's rows are one GEMM operand */
static void to_expert_major(fg_moe_ep *ep, const struct fg_moe_ep_layer *el, float *em, float *sm, size_t W,
                            int reverse)
{
    for (int i = 0; i < el->n_owned; i++)
        ep->cur[el->owned[i]] = el->eoff[el->owned[i]];
    size_t o = 0;
    for (int s = 0; s < ep->P; s++)
        for (int i = 0; i < el->n_owned; i++) {
            int e = el->owned[i];
            if (el->dest[(size_t)s * ep->E + e] != ep->me)
                continue;
            size_t n = (size_t)el->cnt_from[(size_t)s * ep->E + e];
            float *a = em + (size_t)ep->cur[e] * W, *b = sm + o * W;
            if (reverse)
                memcpy(b, a, n * W * sizeof(float));
            else
                memcpy(a, b, n * W * sizeof(float));
            ep->cur[e] += (int32_t)n;
            o += n;
        }
}

static void set_rcount(fg_moe_ep *ep, const struct fg_moe_ep_layer *el, size_t W)
{
    for (int s = 0; s < ep->P; s++) {
        size_t n = 0;
        for (int e = 0; e < ep->E; e++)
            if (el->dest[(size_t)s * ep->E + e] == ep->me)
                n += (size_t)el->cnt_from[(size_t)s * ep->E + e];
        ep->rcount[s] = n * W;
    }
}

/* rows per rank of a micro-batch's count matrix under a destination rule, into the
 * layer's statistics slot k (by_expert: dest_of_block is per expert, else per block) */
static void note_balance(fg_moe_ep *ep, struct fg_moe_ep_layer *el, int k, const int32_t *dest_of_block, int by_expert)
{
    int P = ep->P, E = ep->E;
    double sum = 0, mx = 0;
    for (int r = 0; r < P; r++)
        ep->rl[r] = 0;
    for (int s = 0; s < P; s++)
        for (int e = 0; e < E; e++) {
            double c = el->cnt_from[(size_t)s * E + e];
            ep->rl[by_expert ? dest_of_block[e] : dest_of_block[(size_t)s * E + e]] += c;
            sum += c;
        }
    for (int r = 0; r < P; r++)
        mx = ep->rl[r] > mx ? ep->rl[r] : mx;
    el->mb_max[k] += mx;
    el->mb_mean[k] += sum / P;
}

/* The rank that computes each (source, expert) block of rows: the expert's owner; with
 * the spill, while some rank has more than its share (+1%) one of its blocks moves to the
 * least loaded rank - a block that rank sent itself first (it then never leaves it), else
 * the largest - as long as the move lowers the maximum. Possible because every rank holds
 * every expert's weights; the expert's gradient is then summed from several ranks by the
 * dp all-reduce. Deterministic: every rank computes the same table from the same counts. */
static void route_blocks(fg_moe_ep *ep, struct fg_moe_ep_layer *el)
{
    int P = ep->P, E = ep->E;
    double *rl = ep->rl, sum = 0;
    for (int r = 0; r < P; r++)
        rl[r] = 0;
    for (int s = 0; s < P; s++)
        for (int e = 0; e < E; e++) {
            int32_t c = el->cnt_from[(size_t)s * E + e];
            el->dest[(size_t)s * E + e] = el->owner[e];
            rl[el->owner[e]] += c;
            sum += c;
        }
    double cap = sum / P * 1.01;
    for (int guard = 0; ep->spill && guard < P * E; guard++) {
        int hi = 0, lo = 0;
        for (int r = 1; r < P; r++) {
            if (rl[r] > rl[hi])
                hi = r;
            if (rl[r] < rl[lo])
                lo = r;
        }
        if (rl[hi] <= cap)
            break;
        int bs = -1, be = -1;
        double bc = 0;
        for (int s = 0; s < P; s++)
            for (int e = 0; e < E; e++) {
                double c = el->cnt_from[(size_t)s * E + e];
                if (el->dest[(size_t)s * E + e] != hi || c <= 0 || rl[lo] + c >= rl[hi])
                    continue;
                bool better = bs < 0 || (s == lo && bs != lo) || ((s == lo) == (bs == lo) && c > bc);
                if (better)
                    bs = s, be = e, bc = c;
            }
        if (bs < 0)
            break;
        el->dest[(size_t)bs * E + be] = lo;
        rl[hi] -= bc;
        rl[lo] += bc;
    }
    for (int e = 0; e < E; e++) /* the report's comparison: contiguous blocks, placement, actual */
        ep->cur[e] = (int32_t)((long)e * P / E);
    note_balance(ep, el, 0, ep->cur, 1);
    note_balance(ep, el, 1, el->owner, 1);
    note_balance(ep, el, 2, el->dest, 0);
}

fg_status moe_ep_forward(fg_moe_layer *L, const fg_moe_weights *w)
{
    struct fg_moe_ep_layer *el = L->ep;
    fg_moe_ep *ep = el->ep;
    if (ep->err != FG_OK)
        return ep->err;
    int E = ep->E, P = ep->P;
    size_t C = (size_t)ep->C, H = (size_t)ep->H;
    for (int e = 0; e < E; e++)
        for (int d = 0; d < P; d++)
            ep->cnt_send[(size_t)d * E + e] = L->offs[e + 1] - L->offs[e];
    fg_status st = fg_comm_alltoall(ep->comm, ep->cnt_send, el->cnt_from, (size_t)E, FG_DT_I32);
    ep->bytes += (double)(P - 1) * E * sizeof(int32_t);
    if (st != FG_OK)
        return ep->err = st;
    route_blocks(ep, el); /* every rank computes the same table from the same counts */
    /* expert-major offsets of what arrives; the experts this rank computes now */
    el->eoff[0] = 0;
    el->n_owned = 0;
    for (int e = 0; e < E; e++) {
        int32_t n = 0;
        for (int s = 0; s < P; s++)
            if (el->dest[(size_t)s * E + e] == ep->me)
                n += el->cnt_from[(size_t)s * E + e];
        el->eoff[e + 1] = el->eoff[e] + n;
        if (n > 0)
            el->owned[el->n_owned++] = e;
    }
    size_t nr = (size_t)el->eoff[E], nl = (size_t)L->n_rows;
    el->n_recv = (int)nr;
    if (st == FG_OK && nr > el->cap) {
        size_t cap = nr + nr / 2 + 16;
        if ((st = grow_rows(&el->xr, cap, C, "received rows")) == FG_OK &&
            (st = grow_rows(&el->hr, cap, 2 * H, "expert pre-activations")) == FG_OK &&
            (st = grow_rows(&el->ar, cap, H, "expert activations")) == FG_OK)
            el->cap = cap;
    }
    if (st == FG_OK && nr > ep->scr) {
        size_t cap = nr + nr / 2 + 16;
        if ((st = grow_rows(&ep->eor, cap, C, "expert outputs")) == FG_OK &&
            (st = grow_rows(&ep->d_eor, cap, C, "output gradients")) == FG_OK &&
            (st = grow_rows(&ep->d_actr, cap, H, "activation gradients")) == FG_OK &&
            (st = grow_rows(&ep->d_hr, cap, 2 * H, "pre-activation gradients")) == FG_OK &&
            (st = grow_rows(&ep->d_xgr, cap, C, "input gradients")) == FG_OK)
            ep->scr = cap;
    }
    if (st == FG_OK)
        st = grow(&ep->sbuf, &ep->sbuf_cap, nl * C, "send buffer");
    if (st == FG_OK)
        st = grow(&ep->rbuf, &ep->rbuf_cap, nr * C, "receive buffer");
    if (st != FG_OK)
        return ep->err = st;

    /* dispatch: the kept rows to the experts' ranks */
    pack_local(ep, el, L->offs, L->xg, C);
    set_rcount(ep, el, C);
    if ((st = exchange(ep, ep->sbuf, ep->scount, ep->rbuf, ep->rcount)) != FG_OK)
        return ep->err = st;
    to_expert_major(ep, el, el->xr, ep->rbuf, C, 0);

    const fg_moe_config *mc = &L->cfg;
    int no = el->n_owned;
#pragma omp parallel for schedule(dynamic, 1) if (no > 1 && moe_parallel_over_experts(mc, w))
    for (int i = 0; i < no; i++) {
        int e = el->owned[i], r0 = el->eoff[e], ne = el->eoff[e + 1] - r0;
        if (ne > 0)
            moe_expert_rows_forward(mc, w, e, el->xr + (size_t)r0 * C, el->hr + (size_t)r0 * 2 * H,
                                    el->ar + (size_t)r0 * H, ep->eor + (size_t)r0 * C, ne);
    }

    /* combine: the outputs back to the tokens' ranks, into L->eo at the rows' places */
    to_expert_major(ep, el, ep->eor, ep->rbuf, C, 1);
    if ((st = exchange(ep, ep->rbuf, ep->rcount, ep->sbuf, ep->scount)) != FG_OK)
        return ep->err = st;
    unpack_local(ep, el, L->offs, L->eo, C);
    return FG_OK;
}

fg_status moe_ep_backward(fg_moe_layer *L, fg_moe_scratch *S, const fg_moe_weights *dw, const fg_moe_weights *w)
{
    struct fg_moe_ep_layer *el = L->ep;
    fg_moe_ep *ep = el->ep;
    if (ep->err != FG_OK)
        return ep->err;
    size_t C = (size_t)ep->C, H = (size_t)ep->H;
    pack_local(ep, el, L->offs, S->d_eo, C);
    set_rcount(ep, el, C);
    fg_status st = exchange(ep, ep->sbuf, ep->scount, ep->rbuf, ep->rcount);
    if (st != FG_OK)
        return ep->err = st;
    to_expert_major(ep, el, ep->d_eor, ep->rbuf, C, 0);

    const fg_moe_config *mc = &L->cfg;
    int no = el->n_owned;
#pragma omp parallel for schedule(dynamic, 1) if (no > 1 && moe_parallel_over_experts(mc, w))
    for (int i = 0; i < no; i++) {
        int e = el->owned[i], r0 = el->eoff[e], ne = el->eoff[e + 1] - r0;
        size_t r = (size_t)r0;
        if (ne > 0)
            moe_expert_rows_backward(mc, dw, w, e, ep->d_eor + r * C, ep->d_actr + r * H, ep->d_hr + r * 2 * H,
                                     ep->d_xgr + r * C, el->xr + r * C, el->hr + r * 2 * H, el->ar + r * H, ne);
    }

    to_expert_major(ep, el, ep->d_xgr, ep->rbuf, C, 1);
    if ((st = exchange(ep, ep->rbuf, ep->rcount, ep->sbuf, ep->scount)) != FG_OK)
        return ep->err = st;
    unpack_local(ep, el, L->offs, S->d_xg, C);
    return FG_OK;
}

/* ---- the model's switch ---- */

static void ep_free(fg_moe_ep *ep)
{
    if (!ep)
        return;
    for (int l = 0; ep->layers && l < ep->n_layer; l++) {
        struct fg_moe_ep_layer *el = &ep->layers[l];
        fg_free(el->owner);
        fg_free(el->owned);
        fg_free(el->load);
        fg_free(el->cnt_from);
        fg_free(el->dest);
        fg_free(el->eoff);
        fg_free(el->xr);
        fg_free(el->hr);
        fg_free(el->ar);
    }
    fg_free(ep->layers);
    fg_free(ep->rl);
    fg_free(ep->cnt_send);
    fg_free(ep->cur);
    fg_free(ep->scount);
    fg_free(ep->rcount);
    fg_free(ep->sbuf);
    fg_free(ep->rbuf);
    fg_free(ep->eor);
    fg_free(ep->d_eor);
    fg_free(ep->d_actr);
    fg_free(ep->d_hr);
    fg_free(ep->d_xgr);
    fg_free(ep);
}

void model_moe_ep_free(fg_model *m)
{
    if (m->moe)
        for (int l = 0; l < m->cfg.n_layer; l++)
            m->moe[l].ep = NULL;
    ep_free(m->moe_ep);
    m->moe_ep = NULL;
    m->moe_ep_on = 0;
}

fg_status fg_model_moe_set_ep(fg_model *m, fg_comm *comm)
{
    model_moe_ep_free(m);
    if (!comm)
        return FG_OK;
    const fg_model_config *c = &m->cfg;
    int P = fg_comm_size(comm), E = c->moe.n_expert;
    if (E <= 0 || !m->moe)
        return fg_error(FG_ERR_INVALID, "expert parallelism (ep %d): the model has no MoE layers (n_expert = 0)", P);
    if (E < P)
        return fg_error(FG_ERR_INVALID, "expert parallelism: ep %d ranks but n_expert = %d: each rank needs an expert",
                        P, E);
    if (c->precision != FG_PRECISION_FP32)
        return fg_error(FG_ERR_INVALID,
                        "expert parallelism (ep %d): only fp32 precision is built (bf16/fp8 expert "
                        "GEMMs run on the local path only)",
                        P);
    fg_moe_ep *ep = fg_calloc(1, sizeof *ep);
    if (!ep)
        return fg_error(FG_ERR_NOMEM, "moe ep: cannot allocate");
    ep->comm = comm;
    ep->P = P, ep->me = fg_comm_rank(comm), ep->E = E, ep->C = c->d_model, ep->H = c->moe.d_expert;
    ep->n_layer = c->n_layer;
    ep->cnt_send = fg_calloc((size_t)P * E, sizeof *ep->cnt_send);
    ep->cur = fg_calloc((size_t)E, sizeof *ep->cur);
    ep->scount = fg_calloc((size_t)P, sizeof *ep->scount);
    ep->rcount = fg_calloc((size_t)P, sizeof *ep->rcount);
    ep->layers = fg_calloc((size_t)c->n_layer, sizeof *ep->layers);
    ep->rl = fg_calloc((size_t)P, sizeof *ep->rl);
    ep->spill = 1;
    bool ok = ep->rl && ep->cnt_send && ep->cur && ep->scount && ep->rcount && ep->layers;
    for (int l = 0; ok && l < c->n_layer; l++) {
        struct fg_moe_ep_layer *el = &ep->layers[l];
        el->ep = ep;
        if (!model_is_moe_layer(m, l))
            continue;
        el->owner = fg_calloc((size_t)E, sizeof *el->owner);
        el->owned = fg_calloc((size_t)E, sizeof *el->owned);
        el->load = fg_calloc((size_t)E, sizeof *el->load);
        el->cnt_from = fg_calloc((size_t)P * E, sizeof *el->cnt_from);
        el->dest = fg_calloc((size_t)P * E, sizeof *el->dest);
        el->eoff = fg_calloc((size_t)E + 1, sizeof *el->eoff);
        ok = el->owner && el->owned && el->load && el->cnt_from && el->dest && el->eoff;
        /* contiguous blocks to start with: rank r owns experts [r E / P, (r+1) E / P) */
        for (int e = 0; ok && e < E; e++)
            el->owner[e] = (int32_t)((long)e * P / E);
        if (ok)
            set_owned(el);
    }
    if (!ok) {
        ep_free(ep);
        return fg_error(FG_ERR_NOMEM, "moe ep: cannot allocate the exchange tables");
    }
    m->moe_ep = ep;
    m->moe_ep_on = 1;
    return FG_OK;
}

void fg_model_moe_ep_enable(fg_model *m, int on)
{
    m->moe_ep_on = on && m->moe_ep;
}

struct fg_moe_ep_layer *model_moe_ep_layer(const fg_model *m, int l)
{
    return m->moe_ep && m->moe_ep_on ? &m->moe_ep->layers[l] : NULL;
}

fg_status model_moe_ep_status(fg_model *m)
{
    return m->moe_ep ? m->moe_ep->err : FG_OK;
}

void model_moe_ep_note_load(fg_model *m, int l, const float *step_load)
{
    if (!m->moe_ep || !m->moe_ep->layers[l].load)
        return;
    for (int e = 0; e < m->moe_ep->E; e++)
        m->moe_ep->layers[l].load[e] += step_load[e];
    if (l == m->cfg.n_layer - 1)
        m->moe_ep->load_steps++;
}

fg_status fg_model_moe_ep_place(fg_model *m, int l, const int32_t *owner)
{
    fg_moe_ep *ep = m->moe_ep;
    if (!ep || l < 0 || l >= ep->n_layer || !ep->layers[l].owner)
        return fg_error(FG_ERR_INVALID, "moe ep: placement of layer %d: no expert-parallel MoE layer there", l);
    int *per = fg_calloc((size_t)ep->P, sizeof *per);
    if (!per)
        return fg_error(FG_ERR_NOMEM, "moe ep: placement table");
    fg_status st = FG_OK;
    for (int e = 0; e < ep->E && st == FG_OK; e++)
        if (owner[e] < 0 || owner[e] >= ep->P)
            st = fg_error(FG_ERR_INVALID, "moe ep: layer %d: expert %d placed on rank %d, the ep group has %d", l, e,
                          owner[e], ep->P);
        else
            per[owner[e]]++;
    for (int r = 0; r < ep->P && st == FG_OK; r++)
        if (per[r] == 0)
            st = fg_error(FG_ERR_INVALID, "moe ep: layer %d: rank %d of the ep group owns no expert", l, r);
    fg_free(per);
    if (st != FG_OK)
        return st;
    memcpy(ep->layers[l].owner, owner, (size_t)ep->E * sizeof *owner);
    set_owned(&ep->layers[l]);
    return FG_OK;
}

const int32_t *fg_model_moe_ep_owner(const fg_model *m, int l, int *ep_size)
{
    *ep_size = m->moe_ep ? m->moe_ep->P : 1;
    if (!m->moe_ep || l < 0 || l >= m->moe_ep->n_layer)
        return NULL;
    return m->moe_ep->layers[l].owner;
}

void fg_model_moe_ep_spill(fg_model *m, int on)
{
    if (m->moe_ep)
        m->moe_ep->spill = on != 0;
}

int fg_model_moe_ep_size(const fg_model *m)
{
    return m->moe_ep ? m->moe_ep->P : 0;
}

double fg_model_moe_ep_bytes(const fg_model *m)
{
    return m->moe_ep ? m->moe_ep->bytes : 0.0;
}

/* ---- placement from the load history ---- */

/* Smallest drop of max/mean rank load (on the history) worth a re-placement. */
#define PLACE_MIN_GAIN 0.02

/* max over ranks / mean over ranks of the rows each rank's experts took */
double fg_moe_rank_imbalance(const double *load, const int32_t *owner, int E, int P, double *rank_load)
{
    double sum = 0, mx = 0;
    for (int r = 0; r < P; r++)
        rank_load[r] = 0;
    for (int e = 0; e < E; e++)
        rank_load[owner[e]] += load[e], sum += load[e];
    for (int r = 0; r < P; r++)
        mx = rank_load[r] > mx ? rank_load[r] : mx;
    return sum > 0 ? mx / (sum / P) : 1.0;
}

/* Longest-processing-time first under equal expert counts (ceil(E/P) at most, so the
 * experts' memory stays even once they are sharded), ties to the rank with fewer experts
 * (every rank gets one), then pairwise swaps between the most loaded rank and any other
 * while they lower its load. Deterministic: every rank computes the same placement. */
fg_status fg_moe_place(const double *load, int E, int P, int32_t *owner)
{
    double *rl = fg_malloc((size_t)P * sizeof *rl);
    int *cnt = fg_malloc((size_t)P * sizeof *cnt), *order = fg_malloc((size_t)E * sizeof *order);
    if (!rl || !cnt || !order) {
        fg_free(rl);
        fg_free(cnt);
        fg_free(order);
        return fg_error(FG_ERR_NOMEM, "moe ep: placement of %d experts on %d ranks: no memory", E, P);
    }
    int cap = (E + P - 1) / P;
    for (int e = 0; e < E; e++)
        order[e] = e;
    for (int i = 1; i < E; i++) { /* insertion sort, descending load, stable on index */
        int v = order[i], j = i;
        while (j > 0 && load[order[j - 1]] < load[v])
            order[j] = order[j - 1], j--;
        order[j] = v;
    }
    for (int r = 0; r < P; r++)
        rl[r] = 0, cnt[r] = 0;
    for (int i = 0; i < E; i++) {
        int e = order[i], best = -1;
        for (int r = 0; r < P; r++)
            if (cnt[r] < cap && (best < 0 || rl[r] < rl[best] || (rl[r] == rl[best] && cnt[r] < cnt[best])))
                best = r;
        owner[e] = best;
        rl[best] += load[e];
        cnt[best]++;
    }
    for (int it = 0; it < E * P; it++) {
        int hi = 0;
        for (int r = 1; r < P; r++)
            if (rl[r] > rl[hi])
                hi = r;
        double best_max = rl[hi];
        int ba = -1, bb = -1;
        for (int a = 0; a < E; a++) {
            if (owner[a] != hi)
                continue;
            for (int b = 0; b < E; b++) {
                int lo = owner[b];
                if (lo == hi || load[b] >= load[a])
                    continue;
                double nh = rl[hi] - load[a] + load[b], nl = rl[lo] - load[b] + load[a];
                double mx = nh > nl ? nh : nl;
                if (mx < best_max - 1e-9 * rl[hi])
                    best_max = mx, ba = a, bb = b;
            }
        }
        if (ba < 0)
            break;
        int lo = owner[bb];
        rl[hi] += load[bb] - load[ba];
        rl[lo] += load[ba] - load[bb];
        owner[ba] = lo, owner[bb] = hi;
    }
    fg_free(rl);
    fg_free(cnt);
    fg_free(order);
    return FG_OK;
}

fg_status fg_model_moe_ep_replace(fg_model *m, fg_moe_placement_report *rep)
{
    memset(rep, 0, sizeof *rep);
    fg_moe_ep *ep = m->moe_ep;
    if (!ep)
        return FG_OK;
    int E = ep->E, P = ep->P;
    double *rl = fg_malloc((size_t)P * sizeof *rl);
    int32_t *owner = fg_malloc((size_t)E * sizeof *owner);
    if (!rl || !owner) {
        fg_free(rl);
        fg_free(owner);
        return fg_error(FG_ERR_NOMEM, "moe ep: placement work space");
    }
    rep->steps = ep->load_steps;
    rep->before = rep->after = rep->contiguous = 1.0;
    rep->per_micro[0] = rep->per_micro[1] = rep->per_micro[2] = 1.0;
    for (int l = 0; l < ep->n_layer; l++) {
        struct fg_moe_ep_layer *el = &ep->layers[l];
        if (!el->owner)
            continue;
        for (int e = 0; e < E; e++) /* the first placement, for comparison */
            owner[e] = (int32_t)((long)e * P / E);
        double contig = fg_moe_rank_imbalance(el->load, owner, E, P, rl);
        rep->contiguous = contig > rep->contiguous ? contig : rep->contiguous;
        double before = fg_moe_rank_imbalance(el->load, el->owner, E, P, rl);
        fg_status st = fg_moe_place(el->load, E, P, owner);
        if (st != FG_OK) {
            fg_free(rl);
            fg_free(owner);
            return st;
        }
        double after = fg_moe_rank_imbalance(el->load, owner, E, P, rl);
        /* keep what is there unless the new placement is clearly better on the loads it
         * was made from (a real system moves the weights and optimiser state then) */
        if (after > before - PLACE_MIN_GAIN) {
            memcpy(owner, el->owner, (size_t)E * sizeof *owner);
            after = before;
        }
        for (int e = 0; e < E; e++)
            rep->moved += owner[e] != el->owner[e];
        memcpy(el->owner, owner, (size_t)E * sizeof *owner);
        set_owned(el);
        memset(el->load, 0, (size_t)E * sizeof *el->load);
        for (int k = 0; k < 3; k++) {
            double r = el->mb_mean[k] > 0 ? el->mb_max[k] / el->mb_mean[k] : 1.0;
            rep->per_micro[k] = r > rep->per_micro[k] ? r : rep->per_micro[k];
            el->mb_max[k] = el->mb_mean[k] = 0;
        }
        rep->before = before > rep->before ? before : rep->before;
        rep->after = after > rep->after ? after : rep->after;
    }
    ep->load_steps = 0;
    fg_free(rl);
    fg_free(owner);
    return FG_OK;
}
