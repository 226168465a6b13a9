/* stage_tp.c: tensor parallelism (Megatron-LM style) inside a pipeline stage: rank r of a
 * tp group computes heads [r NH/tp, (r+1) NH/tp) of attention and columns [r F/tp, ...)
 * of the FFN (first GEMM split by columns, second by rows, one sum over the group after
 * each in forward and one for each block's input gradient in backward), the vocabulary
 * rows [r Vp/tp, ...) of the embedding and the head, and the cross-entropy over the
 * split vocabulary. The sums go through the caller's reduce callback (dist is not a
 * dependency of the model). fg_model_forward_range / _backward_range call it when set.
 * Sequence parallelism (fg_model_set_tp_seq): the norms, residuals and biases run on this
 * rank's rows of the tokens only; each sum becomes a reduce-scatter to those rows and each
 * split GEMM's input an all-gather of them (the mirror in backward).
 */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "frugal/moe.h"
#include "model_impl.h"

struct model_tp {
    int rank, size;
    fg_model_tp_reduce fn;
    void *ctx;
    int NHl, Cl, Fl, Finl, c0, f0, v0, Vl;
    float *mem;
    float *wq, *bq, *wa, *wf, *wp;      /* this rank's weights, gathered from the flat buffer */
    float *dwq, *dbq, *dwa, *dwf, *dwp; /* their gradients before the scatter into m->grads */
    float *trash;                       /* [2C]: replicated grads of ranks > 0 (rank 0 keeps them) */
    float *rowmax, *rowstat;            /* [N], [2N] */
    /* MoE layers (expert tensor parallelism): hidden units [h0, h0 + Hl) of every routed
     * expert and [sh0, sh0 + SHl) of the shared experts, gathered per layer */
    int Hl, h0, SHl, sh0;
    float *efc, *eproj, *sfc, *sproj;     /* [E, 2Hl, C], [E, C, Hl], [2SHl, C], [C, SHl] */
    float *defc, *deproj, *dsfc, *dsproj; /* their gradients */
    fg_status err;                        /* the first failed reduce */
    /* sequence parallelism: NULL off; full [N, C] (a split GEMM's partial output before
     * its reduce-scatter, a gathered gradient), sl [N/size, C] (a reduce-scatter's rows) */
    fg_model_tp_seq_fn seq;
    float *seqmem, *full, *sl;
    int regather; /* the norm outputs kept as rows, gathered into gath ([N, C]) twice */
    float *gath;
    size_t act_resident; /* the largest resident size of m->acts seen after a backward */
};

void model_tp_free(fg_model *m)
{
    if (!m->tp)
        return;
    fg_free(m->tp->seqmem);
    fg_free(m->tp->mem);
    fg_free(m->tp);
    m->tp = NULL;
}

fg_status fg_model_set_tp(fg_model *m, int rank, int size, fg_model_tp_reduce fn, void *ctx)
{
    model_tp_free(m);
    if (size <= 1 || !fn)
        return FG_OK;
    const fg_model_config *c = &m->cfg;
    int C = c->d_model;
    if (rank < 0 || rank >= size)
        return fg_error(FG_ERR_INVALID, "fg_model_set_tp: rank %d of %d", rank, size);
    const int moe = c->moe.n_expert > 0;
    if (c->n_head % size || m->F % size || c->padded_vocab % size || (moe && c->moe.d_expert % size))
        return fg_error(FG_ERR_INVALID,
                        "tensor parallel %d: n_head %d, the FFN width %d, padded_vocab %d (and MoE d_expert %d) must "
                        "all be multiples of it",
                        size, c->n_head, m->F, c->padded_vocab, moe ? c->moe.d_expert : 0);
    if (m->lp || m->qat || c->ffn_share != FG_SHARE_NONE || c->mtp_depth > 0 || m->mla)
        return fg_error(FG_ERR_INVALID,
                        "tensor parallel %d: fp32 models without QAT, FFN sharing, MTP or MLA only (this one has %s)",
                        size,
                        m->lp              ? "bf16/fp8 precision"
                        : m->qat           ? "QAT"
                        : c->mtp_depth > 0 ? "MTP"
                        : m->mla           ? "MLA"
                                           : "FFN sharing");
    model_tp *tp = fg_calloc(1, sizeof *tp);
    if (!tp)
        return fg_error(FG_ERR_NOMEM, "tensor parallel: out of memory");
    tp->rank = rank;
    tp->size = size;
    tp->fn = fn;
    tp->ctx = ctx;
    tp->NHl = c->n_head / size;
    tp->Cl = C / size;
    tp->c0 = rank * tp->Cl;
    tp->Fl = m->F / size;
    tp->Finl = m->Fin / size;
    tp->f0 = rank * tp->Fl;
    tp->Vl = c->padded_vocab / size;
    tp->v0 = rank * tp->Vl;
    size_t Cs = (size_t)C, nq = 3 * (size_t)tp->Cl * Cs, na = Cs * (size_t)tp->Cl, nf = (size_t)tp->Finl * Cs,
           np = Cs * (size_t)tp->Fl, N = (size_t)m->B * (size_t)m->T;
    tp->Hl = moe ? c->moe.d_expert / size : 0;
    tp->h0 = rank * tp->Hl;
    tp->SHl = moe ? c->moe.n_shared_expert * tp->Hl : 0;
    tp->sh0 = rank * tp->SHl;
    size_t ne = moe ? (size_t)c->moe.n_expert * 2 * (size_t)tp->Hl * Cs : 0,
           npe = moe ? (size_t)c->moe.n_expert * Cs * (size_t)tp->Hl : 0, nsf = 2 * (size_t)tp->SHl * Cs,
           nsp = Cs * (size_t)tp->SHl;
    size_t total = 2 * (nq + 3 * (size_t)tp->Cl + na + nf + np) + 2 * Cs + 3 * N + 2 * (ne + npe + nsf + nsp);
    tp->mem = fg_calloc(total, sizeof(float));
    if (!tp->mem) {
        fg_free(tp);
        return fg_error(FG_ERR_NOMEM, "tensor parallel: out of memory for %zu floats", total);
    }
    float *p = tp->mem;
    tp->wq = p, p += nq;
    tp->bq = p, p += 3 * (size_t)tp->Cl;
    tp->wa = p, p += na;
    tp->wf = p, p += nf;
    tp->wp = p, p += np;
    tp->dwq = p, p += nq;
    tp->dbq = p, p += 3 * (size_t)tp->Cl;
    tp->dwa = p, p += na;
    tp->dwf = p, p += nf;
    tp->dwp = p, p += np;
    tp->trash = p, p += 2 * Cs;
    tp->rowmax = p, p += N;
    tp->rowstat = p, p += 2 * N;
    tp->efc = p, p += ne;
    tp->eproj = p, p += npe;
    tp->sfc = p, p += nsf;
    tp->sproj = p, p += nsp;
    tp->defc = p, p += ne;
    tp->deproj = p, p += npe;
    tp->dsfc = p, p += nsf;
    tp->dsproj = p;
    m->tp = tp;
    return FG_OK;
}

static void tp_reduce(model_tp *tp, float *buf, size_t n, int max)
{
    if (tp->err == FG_OK)
        tp->err = tp->fn(tp->ctx, buf, n, max);
}

fg_status fg_model_set_tp_seq(fg_model *m, fg_model_tp_seq_fn fn, int regather)
{
    model_tp *tp = m->tp;
    if (!tp)
        return fn ? fg_error(FG_ERR_INVALID, "sequence parallelism: tensor parallelism is not set") : FG_OK;
    fg_free(tp->seqmem);
    tp->seqmem = tp->full = tp->sl = tp->gath = NULL;
    tp->seq = NULL;
    tp->regather = 0;
    if (!fn)
        return FG_OK;
    size_t NC = (size_t)m->B * (size_t)m->T * (size_t)m->cfg.d_model, S = (size_t)tp->size;
    size_t n = NC + (NC + S - 1) / S + (regather ? NC : 0);
    tp->seqmem = fg_calloc(n, sizeof(float));
    if (!tp->seqmem)
        return fg_error(FG_ERR_NOMEM, "sequence parallelism: out of memory for %zu floats", n);
    tp->full = tp->seqmem;
    tp->sl = tp->seqmem + NC;
    tp->gath = regather ? tp->sl + (NC + S - 1) / S : NULL;
    tp->regather = regather != 0;
    tp->seq = fn;
    return FG_OK;
}

int fg_model_tp_seq_split(const fg_model *m)
{
    return m->tp && m->tp->seq ? m->tp->size : 1;
}

double fg_model_tp_seq_saved(const fg_model *m)
{
    if (!m->tp || !m->tp->seq)
        return 0.0;
    const fg_model_config *c = &m->cfg;
    double N = (double)m->B * (double)m->T, C = c->d_model, stats = c->layout == FG_LAYOUT_GPT2 ? 2.0 : 1.0;
    /* per layer res2, res3 and the two norms' statistics; the embedding output; the
     * final norm's statistics; with regather the three norm outputs as well (else they
     * are kept gathered: the GEMMs' inputs) */
    double floats = c->n_layer * (2.0 * N * C + 2.0 * stats * N) + N * C + stats * N;
    if (m->tp->regather)
        floats += (2.0 * c->n_layer + 1.0) * N * C;
    return floats * (1.0 - 1.0 / m->tp->size) * sizeof(float);
}

void model_tp_note_resident(fg_model *m)
{
    if (!m->acts)
        return;
    fg_model_act_bytes b;
    fg_model_activation_bytes(m, &b);
    size_t r = fg_mem_resident(m->acts, b.saved + b.scratch);
    if (r > m->tp->act_resident)
        m->tp->act_resident = r;
}

size_t fg_model_tp_act_resident(const fg_model *m)
{
    return m->tp ? m->tp->act_resident : 0;
}

/* The sum over the group of the [N, C] partial output part: without sequence
 * parallelism in place (returns part), with it reduce-scattered to this rank's rows in
 * out (returns out). */
static float *tp_sum_rows(model_tp *tp, float *part, float *out, size_t NC)
{
    if (!tp->seq) {
        tp_reduce(tp, part, NC, 0);
        return part;
    }
    if (tp->err == FG_OK)
        tp->err = tp->seq(tp->ctx, part, out, NC / (size_t)tp->size, 0);
    return out;
}

/* Sequence parallelism: this rank's rows rows[NsC] into their place in full [N, C], then
 * every rank's (all-gather); returns full. Without it, rows (already whole). */
static const float *tp_gather_rows(model_tp *tp, float *full, const float *rows, size_t NsC)
{
    if (!tp->seq)
        return rows;
    if (rows != full + (size_t)tp->rank * NsC)
        memcpy(full + (size_t)tp->rank * NsC, rows, NsC * sizeof(float));
    if (tp->err == FG_OK)
        tp->err = tp->seq(tp->ctx, full, NULL, NsC, 1);
    return full;
}

/* A norm output kept in the [N, C] buffer `kept`: where the norm writes this rank's rows
 * (sequence parallel: at their place, to be gathered there and kept whole; with regather
 * at the start, kept as rows only) */
static float *sp_rows_at(const model_tp *tp, float *kept, size_t NsC)
{
    return tp->seq && !tp->regather ? kept + (size_t)tp->rank * NsC : kept;
}
/* ... the whole output the column-parallel GEMM reads in forward ... */
static const float *sp_gathered(model_tp *tp, float *kept, size_t NsC)
{
    if (!tp->seq)
        return kept;
    return tp_gather_rows(tp, tp->regather ? tp->gath : kept, sp_rows_at(tp, kept, NsC), NsC);
}
/* ... and in backward (its weight gradient): with regather all-gathered again */
static const float *sp_regathered(model_tp *tp, float *kept, size_t NsC)
{
    return tp->seq && tp->regather ? tp_gather_rows(tp, tp->gath, kept, NsC) : kept;
}

fg_status model_tp_status(fg_model *m)
{
    fg_status st = m->tp->err;
    m->tp->err = FG_OK;
    return st;
}

/* rows [r0, r0 + n) of a [*, C] matrix, contiguous */
static void copy_rows(float *dst, const float *src, int r0, int n, int C)
{
    memcpy(dst, src + (size_t)r0 * C, (size_t)n * C * sizeof(float));
}
static void add_rows(float *dst, const float *src, int r0, int n, int C)
{
    float *d = dst + (size_t)r0 * C;
    for (size_t i = 0; i < (size_t)n * C; i++)
        d[i] += src[i];
}
/* columns [c0, c0 + n) of a [R, C] matrix into [R, n] */
static void copy_cols(float *dst, const float *src, int R, int C, int c0, int n)
{
    for (int r = 0; r < R; r++)
        memcpy(dst + (size_t)r * n, src + (size_t)r * C + c0, (size_t)n * sizeof(float));
}
static void add_cols(float *dst, const float *src, int R, int C, int c0, int n)
{
    for (int r = 0; r < R; r++) {
        float *d = dst + (size_t)r * C + c0;
        const float *s = src + (size_t)r * n;
        for (int j = 0; j < n; j++)
            d[j] += s[j];
    }
}
static void add_bias(float *out, const float *b, int N, int C)
{
    if (!b)
        return;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++)
            out[(size_t)n * C + j] += b[j];
}

/* q, k, v rows of this rank's heads: [3 Cl, C] (and their biases) */
static void gather_qkv(fg_model *m, model_tp *tp, const model_layer_off *o)
{
    int C = m->cfg.d_model, Cl = tp->Cl;
    for (int k = 0; k < 3; k++) {
        copy_rows(tp->wq + (size_t)k * Cl * C, m->params + o->qkvw, k * C + tp->c0, Cl, C);
        if (o->qkvb != FG_NO_TENSOR)
            memcpy(tp->bq + (size_t)k * Cl, m->params + o->qkvb + (size_t)k * C + tp->c0, (size_t)Cl * sizeof(float));
    }
}

/* the FFN's first GEMM rows: gpt2 [Fl, C]; llama [gate rows | up rows] = [2 Fl, C] */
static void gather_fc(fg_model *m, model_tp *tp, const model_layer_off *o)
{
    int C = m->cfg.d_model, Fl = tp->Fl;
    copy_rows(tp->wf, m->params + o->fcw, tp->f0, Fl, C);
    if (m->cfg.layout == FG_LAYOUT_LLAMA)
        copy_rows(tp->wf + (size_t)Fl * C, m->params + o->fcw, m->F + tp->f0, Fl, C);
}

static float *rep_grad(fg_model *m, model_tp *tp, size_t off, int which)
{
    if (off == FG_NO_TENSOR)
        return NULL;
    /* sequence parallel: each rank's rows give a partial sum, kept on every rank */
    return tp->rank == 0 || tp->seq ? m->grads + off : tp->trash + (size_t)which * m->cfg.d_model;
}

/* ---- MoE layers: expert tensor parallelism (Megatron-Core's ETP = TP) ----
 * The router runs whole on every rank (its input, ln2, is replicated, so every rank draws
 * the same top-K, gates, capacity drops and load counts); each routed and shared expert
 * runs hidden units [h0, h0 + Hl) only: the gate and up rows of fc (column-parallel) and
 * the matching columns of proj (row-parallel), so the block's output is a partial sum
 * over the group, summed by the layer's one all-reduce as the dense FFN's is. moe.c runs
 * unchanged on the gathered slices with d_expert = Hl. */
static fg_moe_weights tp_moe_views(fg_model *m, model_tp *tp, const model_layer_off *o, int grads)
{
    fg_moe_weights w = {0};
    float *base = grads ? m->grads : m->params;
    w.router_w = base + o->moe[FG_MOE_ROUTER_W];
    w.router_bias = m->params + o->moe[FG_MOE_ROUTER_BIAS];
    w.expert_fc = grads ? tp->defc : tp->efc;
    w.expert_proj = grads ? tp->deproj : tp->eproj;
    if (tp->SHl > 0) {
        w.shared_fc = grads ? tp->dsfc : tp->sfc;
        w.shared_proj = grads ? tp->dsproj : tp->sproj;
    }
    return w;
}

/* add 0: the slices copied out of the flat params; add 1: the slice gradients added into
 * the flat grads */
static void tp_moe_slices(fg_model *m, model_tp *tp, const model_layer_off *o, int add)
{
    const fg_moe_config *mc = &m->cfg.moe;
    int C = m->cfg.d_model, H = mc->d_expert, Hl = tp->Hl, SH = mc->n_shared_expert * H, SHl = tp->SHl;
    float *fc = add ? tp->defc : tp->efc, *pj = add ? tp->deproj : tp->eproj;
    float *base = add ? m->grads : m->params;
    for (int e = 0; e < mc->n_expert; e++) {
        float *F = base + o->moe[FG_MOE_EXPERT_FC] + (size_t)e * 2 * H * C;
        float *P = base + o->moe[FG_MOE_EXPERT_PROJ] + (size_t)e * C * H;
        float *f = fc + (size_t)e * 2 * Hl * C, *pp = pj + (size_t)e * C * Hl;
        if (add) {
            add_rows(F, f, tp->h0, Hl, C);                      /* gate rows */
            add_rows(F, f + (size_t)Hl * C, H + tp->h0, Hl, C); /* up rows */
            add_cols(P, pp, C, H, tp->h0, Hl);
        } else {
            copy_rows(f, F, tp->h0, Hl, C);
            copy_rows(f + (size_t)Hl * C, F, H + tp->h0, Hl, C);
            copy_cols(pp, P, C, H, tp->h0, Hl);
        }
    }
    if (SHl == 0)
        return;
    float *SF = base + o->moe[FG_MOE_SHARED_FC], *SP = base + o->moe[FG_MOE_SHARED_PROJ];
    float *sf = add ? tp->dsfc : tp->sfc, *sp = add ? tp->dsproj : tp->sproj;
    if (add) {
        add_rows(SF, sf, tp->sh0, SHl, C);
        add_rows(SF, sf + (size_t)SHl * C, SH + tp->sh0, SHl, C);
        add_cols(SP, sp, C, SH, tp->sh0, SHl);
    } else {
        copy_rows(sf, SF, tp->sh0, SHl, C);
        copy_rows(sf + (size_t)SHl * C, SF, SH + tp->sh0, SHl, C);
        copy_cols(sp, SP, C, SH, tp->sh0, SHl);
    }
}

/* out[N, C] = this rank's part of the MoE block's output (summed by the caller) */
static void tp_moe_forward(fg_model *m, model_tp *tp, int l, float *out, const float *inp, int B, int T)
{
    fg_moe_layer *L = &m->moe[l];
    const model_layer_off *o = &m->layer[l];
    tp_moe_slices(m, tp, o, 0);
    fg_moe_weights w = tp_moe_views(m, tp, o, 0);
    /* with expert parallelism too: tp rank r's rows go to tp rank r of the experts' ep
     * ranks (the ep group joins ranks of equal tp rank), which run slice r of the expert;
     * every tp rank has the same tokens and routing, so the same exchanges (moe_ep.c's
     * buffers are sized for the whole d_expert, its strides fit the slice) */
    L->ep = model_moe_ep_layer(m, l);
    int H = L->cfg.d_expert;
    L->cfg.d_expert = tp->Hl;
    fg_status st = fg_moe_forward(L, out, inp, &w, B, T);
    L->cfg.d_expert = H;
    /* B*T within the capacity was checked by the range forward; an exchange failure is
     * kept by moe_ep.c and returned by the range functions */
    FG_ASSERT(st == FG_OK || L->ep);
}

/* dinp[N, C] += this rank's part of the block's input gradient. The router's backward is
 * linear in the gate gradients <dout, eo> (eo partial here), so each rank's router
 * gradient and input gradient are partial sums too; the aux-loss terms, which do not
 * depend on eo, are added on rank 0 only (aux_scale 0 elsewhere). */
static void tp_moe_backward(fg_model *m, model_tp *tp, int l, float *dinp, const float *dout, const float *inp)
{
    fg_moe_layer *L = &m->moe[l];
    const model_layer_off *o = &m->layer[l];
    const fg_moe_config *mc = &m->cfg.moe;
    tp_moe_slices(m, tp, o, 0);
    size_t C = (size_t)m->cfg.d_model, E = (size_t)mc->n_expert, Hl = (size_t)tp->Hl, SHl = (size_t)tp->SHl;
    memset(tp->defc, 0, E * 2 * Hl * C * sizeof(float));
    memset(tp->deproj, 0, E * C * Hl * sizeof(float));
    memset(tp->dsfc, 0, 2 * SHl * C * sizeof(float));
    memset(tp->dsproj, 0, C * SHl * sizeof(float));
    fg_moe_weights w = tp_moe_views(m, tp, o, 0), g = tp_moe_views(m, tp, o, 1);
    int H = L->cfg.d_expert;
    L->cfg.d_expert = tp->Hl;
    fg_status st =
        fg_moe_backward(L, m->moe_scratch, dinp, &g, dout, inp, &w, tp->rank == 0 ? m->moe_loss_scale : 0.0f);
    L->cfg.d_expert = H;
    FG_ASSERT(st == FG_OK || L->ep);
    tp_moe_slices(m, tp, o, 1);
}

void model_tp_layer_forward(fg_model *m, int l, const float *res, int B, int T)
{
    model_tp *tp = m->tp;
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, Cl = tp->Cl, NHl = tp->NHl, Fl = tp->Fl;
    /* sequence parallel: res, res2, res3 and the norms' statistics are this rank's Ns rows
     * (at their start); the norm outputs, the split GEMMs' inputs, are gathered whole */
    int Ns = tp->seq ? N / tp->size : N;
    size_t NC = (size_t)N * C, NsC = (size_t)Ns * C;
    const model_layer_off *o = &m->layer[l];
    model_layer_acts *a = &m->la[l];
    model_norm_forward(m, sp_rows_at(tp, a->ln1, NsC), a->ln1_mean, a->ln1_rstd, res, model_p(m, o->ln1w),
                       model_p(m, o->ln1b), Ns);
    const float *ln1 = sp_gathered(tp, a->ln1, NsC);
    gather_qkv(m, tp, o);
    model_linear_forward(m, a->qkv, ln1, tp->wq, o->qkvb != FG_NO_TENSOR ? tp->bq : NULL, N, C, 3 * Cl);
    if (c->layout == FG_LAYOUT_LLAMA) {
        fg_rope_forward(a->qkv, B, T, NHl, m->HS, 3 * Cl, 0, c->rope_theta);
        fg_rope_forward(a->qkv + Cl, B, T, NHl, m->HS, 3 * Cl, 0, c->rope_theta);
    }
    fg_attention_forward(a->atty, a->lse, a->qkv, B, T, Cl, NHl);
    /* row-parallel projection: this rank's heads' share of every output, summed */
    copy_cols(tp->wa, m->params + o->attprojw, C, C, tp->c0, Cl);
    float *part = tp->seq ? tp->full : a->res2;
    model_linear_forward(m, part, a->atty, tp->wa, NULL, N, Cl, C);
    tp_sum_rows(tp, part, a->res2, NC);
    add_bias(a->res2, model_p(m, o->attprojb), Ns, C);
    fg_add(a->res2, a->res2, res, NsC);
    model_norm_forward(m, sp_rows_at(tp, a->ln2, NsC), a->ln2_mean, a->ln2_rstd, a->res2, model_p(m, o->ln2w),
                       model_p(m, o->ln2b), Ns);
    const float *ln2 = sp_gathered(tp, a->ln2, NsC);
    part = tp->seq ? tp->full : a->res3;
    if (model_is_moe_layer(m, l)) {
        tp_moe_forward(m, tp, l, part, ln2, B, T);
    } else {
        gather_fc(m, tp, o);
        model_linear_forward(m, a->ffn.fch, ln2, tp->wf, o->fcb != FG_NO_TENSOR ? m->params + o->fcb + tp->f0 : NULL, N,
                             C, tp->Finl);
        if (c->layout == FG_LAYOUT_GPT2)
            fg_gelu_forward(a->ffn.fch_act, a->ffn.fch, (size_t)N * (size_t)Fl);
        else
            fg_swiglu_forward(a->ffn.fch_act, a->ffn.fch, N, Fl);
        copy_cols(tp->wp, m->params + o->fcprojw, C, m->F, tp->f0, Fl);
        model_linear_forward(m, part, a->ffn.fch_act, tp->wp, NULL, N, Fl, C);
    }
    tp_sum_rows(tp, part, a->res3, NC);
    add_bias(a->res3, model_p(m, o->fcprojb), Ns, C);
    fg_add(a->res3, a->res3, a->res2, NsC);
}

void model_tp_layer_backward(fg_model *m, int l, const float *res, int B, int T)
{
    model_tp *tp = m->tp;
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, Cl = tp->Cl, NHl = tp->NHl, Fl = tp->Fl, Finl = tp->Finl;
    /* sequence parallel: m->dres holds this rank's Ns rows; each block's output gradient
     * is gathered whole (the mirror of the forward's reduce-scatter) and its input
     * gradient reduce-scattered back to the rows (the mirror of the all-gather) */
    int Ns = tp->seq ? N / tp->size : N;
    size_t NC = (size_t)N * C, NsC = (size_t)Ns * C;
    const model_layer_off *o = &m->layer[l];
    model_layer_acts *a = &m->la[l];
    const float *dout = tp_gather_rows(tp, tp->full, m->dres, NsC);
    const float *ln2 = sp_regathered(tp, a->ln2, NsC);
    /* res3 = res2 + fcproj(act(fc(ln2))): the projection's input gradient is this rank's
     * columns; the fc's input gradient is a partial sum over the ranks (MoE: the same
     * per expert, and the router's input gradient a partial sum too) */
    if (model_is_moe_layer(m, l)) {
        memset(m->dln, 0, NC * sizeof(float));
        tp_moe_backward(m, tp, l, m->dln, dout, ln2);
    } else {
        gather_fc(m, tp, o);
        copy_cols(tp->wp, m->params + o->fcprojw, C, m->F, tp->f0, Fl);
        memset(m->dfch_act, 0, (size_t)N * Fl * sizeof(float));
        memset(tp->dwp, 0, (size_t)C * Fl * sizeof(float));
        model_linear_backward(m, m->dfch_act, tp->dwp, tp->rank == 0 ? model_g(m, o->fcprojb) : NULL, dout,
                              a->ffn.fch_act, tp->wp, N, Fl, C);
        add_cols(m->grads + o->fcprojw, tp->dwp, C, m->F, tp->f0, Fl);
        memset(m->dfch, 0, (size_t)N * Finl * sizeof(float));
        if (c->layout == FG_LAYOUT_GPT2)
            fg_gelu_backward(m->dfch, m->dfch_act, a->ffn.fch, (size_t)N * (size_t)Fl);
        else
            fg_swiglu_backward(m->dfch, m->dfch_act, a->ffn.fch, N, Fl);
        memset(m->dln, 0, NC * sizeof(float));
        memset(tp->dwf, 0, (size_t)Finl * C * sizeof(float));
        model_linear_backward(m, m->dln, tp->dwf, o->fcb != FG_NO_TENSOR ? m->grads + o->fcb + tp->f0 : NULL, m->dfch,
                              ln2, tp->wf, N, C, Finl);
        add_rows(m->grads + o->fcw, tp->dwf, tp->f0, Fl, C);
        if (c->layout == FG_LAYOUT_LLAMA)
            add_rows(m->grads + o->fcw, tp->dwf + (size_t)Fl * C, m->F + tp->f0, Fl, C);
    }
    const float *dln = tp_sum_rows(tp, m->dln, tp->sl, NC);
    model_norm_backward(m, m->dres, rep_grad(m, tp, o->ln2w, 0), rep_grad(m, tp, o->ln2b, 1), dln, a->res2,
                        model_p(m, o->ln2w), a->ln2_mean, a->ln2_rstd, Ns);
    dout = tp_gather_rows(tp, tp->full, m->dres, NsC);
    /* res2 = res + attproj(attention(qkv(ln1))) */
    copy_cols(tp->wa, m->params + o->attprojw, C, C, tp->c0, Cl);
    memset(m->datty, 0, (size_t)N * Cl * sizeof(float));
    memset(tp->dwa, 0, (size_t)C * Cl * sizeof(float));
    model_linear_backward(m, m->datty, tp->dwa, tp->rank == 0 ? model_g(m, o->attprojb) : NULL, dout, a->atty, tp->wa,
                          N, Cl, C);
    add_cols(m->grads + o->attprojw, tp->dwa, C, C, tp->c0, Cl);
    memset(m->dqkv, 0, (size_t)N * 3 * Cl * sizeof(float));
    fg_attention_backward(m->dqkv, m->datty, a->qkv, a->atty, a->lse, B, T, Cl, NHl);
    if (c->layout == FG_LAYOUT_LLAMA) {
        fg_rope_backward(m->dqkv, B, T, NHl, m->HS, 3 * Cl, 0, c->rope_theta);
        fg_rope_backward(m->dqkv + Cl, B, T, NHl, m->HS, 3 * Cl, 0, c->rope_theta);
    }
    gather_qkv(m, tp, o);
    const float *ln1 = sp_regathered(tp, a->ln1, NsC);
    memset(m->dln, 0, NC * sizeof(float));
    memset(tp->dwq, 0, (size_t)3 * Cl * C * sizeof(float));
    memset(tp->dbq, 0, (size_t)3 * Cl * sizeof(float));
    model_linear_backward(m, m->dln, tp->dwq, o->qkvb != FG_NO_TENSOR ? tp->dbq : NULL, m->dqkv, ln1, tp->wq, N, C,
                          3 * Cl);
    for (int k = 0; k < 3; k++) {
        add_rows(m->grads + o->qkvw, tp->dwq + (size_t)k * Cl * C, k * C + tp->c0, Cl, C);
        if (o->qkvb != FG_NO_TENSOR)
            add_rows(m->grads + o->qkvb, tp->dbq + (size_t)k * Cl, k * C + tp->c0, Cl, 1);
    }
    dln = tp_sum_rows(tp, m->dln, tp->sl, NC);
    model_norm_backward(m, m->dres, rep_grad(m, tp, o->ln1w, 0), rep_grad(m, tp, o->ln1b, 1), dln, res,
                        model_p(m, o->ln1w), a->ln1_mean, a->ln1_rstd, Ns);
}

/* Vocabulary-parallel embedding: each rank adds the rows it owns, the sum is wte[token];
 * positions are added after the sum (so once). Sequence parallel: the sum is a
 * reduce-scatter, each rank keeping its rows of the stream (the layers start from them),
 * and the backward gathers the rows' gradients (each rank's vocabulary needs all tokens'). */
void model_tp_embed_forward(fg_model *m, int N, int T)
{
    model_tp *tp = m->tp;
    int C = m->cfg.d_model, Ns = tp->seq ? N / tp->size : N, n0 = tp->seq ? tp->rank * Ns : 0;
    float *part = tp->seq ? tp->full : m->encoded;
    for (int n = 0; n < N; n++) {
        int t = m->inputs[n] - tp->v0;
        float *d = part + (size_t)n * C;
        if (t >= 0 && t < tp->Vl)
            memcpy(d, m->params + m->wte + (size_t)m->inputs[n] * C, (size_t)C * sizeof(float));
        else
            memset(d, 0, (size_t)C * sizeof(float));
    }
    tp_sum_rows(tp, part, m->encoded, (size_t)N * C);
    if (m->wpe != FG_NO_TENSOR)
        for (int n = 0; n < Ns; n++) {
            const float *p = m->params + m->wpe + (size_t)((n0 + n) % T) * C;
            float *d = m->encoded + (size_t)n * C;
            for (int j = 0; j < C; j++)
                d[j] += p[j];
        }
}

void model_tp_embed_backward(fg_model *m, int N, int T)
{
    model_tp *tp = m->tp;
    int C = m->cfg.d_model;
    const float *dres = tp_gather_rows(tp, tp->full, m->dres, (size_t)(tp->seq ? N / tp->size : N) * C);
    for (int n = 0; n < N; n++) {
        const float *g = dres + (size_t)n * C;
        int t = m->inputs[n] - tp->v0;
        if (t >= 0 && t < tp->Vl) {
            float *d = m->grads + m->wte + (size_t)m->inputs[n] * C;
            for (int j = 0; j < C; j++)
                d[j] += g[j];
        }
        if (m->wpe != FG_NO_TENSOR && tp->rank == 0) {
            float *d = m->grads + m->wpe + (size_t)(n % T) * C;
            for (int j = 0; j < C; j++)
                d[j] += g[j];
        }
    }
}

/* Final norm, this rank's vocabulary columns of the logits, and the cross-entropy over
 * all of them: row max (MAX over ranks), then sum of exp and the target's logit (SUM). */
fg_status model_tp_head_forward(fg_model *m, const float *res, const int32_t *targets, int N, float *loss)
{
    model_tp *tp = m->tp;
    const fg_model_config *c = &m->cfg;
    int C = c->d_model, V = c->vocab_size, Vl = tp->Vl;
    int real = V - tp->v0 < 0 ? 0 : V - tp->v0 < Vl ? V - tp->v0 : Vl; /* real columns of this rank */
    /* sequence parallel: the norm on this rank's rows, its output gathered for the head */
    int Ns = tp->seq ? N / tp->size : N;
    size_t NsC = (size_t)Ns * C;
    model_norm_forward(m, sp_rows_at(tp, m->lnf, NsC), m->lnf_mean, m->lnf_rstd, res, model_p(m, m->lnfw),
                       model_p(m, m->lnfb), Ns);
    const float *lnf = sp_gathered(tp, m->lnf, NsC);
    const float *hw = m->params + m->head + (size_t)tp->v0 * C;
    model_linear_forward(m, m->logits, lnf, hw, NULL, N, C, Vl);
    if (!targets) {
        if (loss)
            *loss = 0.0f;
        return model_tp_status(m);
    }
    for (int n = 0; n < N; n++) {
        const float *x = m->logits + (size_t)n * Vl;
        float mx = -INFINITY;
        for (int j = 0; j < real; j++)
            mx = x[j] > mx ? x[j] : mx;
        tp->rowmax[n] = mx;
    }
    tp_reduce(tp, tp->rowmax, (size_t)N, 1);
    for (int n = 0; n < N; n++) {
        const float *x = m->logits + (size_t)n * Vl;
        double se = 0;
        for (int j = 0; j < real; j++)
            se += exp((double)x[j] - tp->rowmax[n]);
        int t = m->targets[n] - tp->v0;
        tp->rowstat[2 * n] = (float)se;
        tp->rowstat[2 * n + 1] = m->targets[n] >= 0 && t >= 0 && t < Vl ? x[t] : 0.0f;
    }
    tp_reduce(tp, tp->rowstat, 2 * (size_t)N, 0);
    m->dlogits_scale = m->n_counted > 0 ? 1.0f / (float)m->n_counted : 0.0f;
    double sum = 0;
    for (int n = 0; n < N; n++) {
        const float *x = m->logits + (size_t)n * Vl;
        float *d = m->dlogits + (size_t)n * Vl;
        if (m->targets[n] < 0) {
            m->losses[n] = 0.0f;
            memset(d, 0, (size_t)Vl * sizeof(float));
            continue;
        }
        double lse = log((double)tp->rowstat[2 * n]) + tp->rowmax[n];
        double ln = lse - tp->rowstat[2 * n + 1];
        m->losses[n] = (float)ln;
        sum += ln;
        int t = m->targets[n] - tp->v0;
        for (int j = 0; j < Vl; j++)
            d[j] = j < real ? m->dlogits_scale * (float)(exp((double)x[j] - lse) - (j == t)) : 0.0f;
    }
    float l = m->n_counted > 0 ? (float)(sum / m->n_counted) : 0.0f;
    l += model_moe_aux_loss(m); /* as model_head_forward: the range forward keeps its own layers' */
    if (!isfinite(l))
        return fg_error(FG_ERR_NUMERIC, "fg_model_forward_range: loss is %g", (double)l);
    if (loss)
        *loss = l;
    return model_tp_status(m);
}

void model_tp_head_backward(fg_model *m, const float *res_last, float loss_scale)
{
    model_tp *tp = m->tp;
    int N = m->cur_B * m->cur_T, C = m->cfg.d_model, Vl = tp->Vl;
    size_t NC = (size_t)N * C;
    float want = loss_scale / (float)m->n_counted;
    if (want != m->dlogits_scale && m->dlogits_scale != 0.0f) {
        fg_scale(m->dlogits, want / m->dlogits_scale, (size_t)N * Vl);
        m->dlogits_scale = want;
    }
    const float *lnf = sp_regathered(tp, m->lnf, NC / (size_t)(tp->seq ? tp->size : 1));
    memset(m->dln, 0, NC * sizeof(float));
    model_linear_backward(m, m->dln, m->grads + m->head + (size_t)tp->v0 * C, NULL, m->dlogits, lnf,
                          m->params + m->head + (size_t)tp->v0 * C, N, C, Vl);
    const float *dln = tp_sum_rows(tp, m->dln, tp->sl, NC);
    memset(m->dres, 0, NC * sizeof(float));
    model_norm_backward(m, m->dres, rep_grad(m, tp, m->lnfw, 0), rep_grad(m, tp, m->lnfb, 1), dln, res_last,
                        model_p(m, m->lnfw), m->lnf_mean, m->lnf_rstd, tp->seq ? N / tp->size : N);
}
