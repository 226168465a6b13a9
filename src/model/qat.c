/* qat.c: int8 quantization-aware training in the linear layers named by cfg.qat_layers:
 * fake-quantized weights (per output channel) and inputs (per token or per tensor, ranges
 * from each batch), straight-through gradients, and a running input range per layer. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/precision.h"
#include "model_impl.h"

static const char *const kind_names[QK_N] = {"qkv",       "attproj",     "fc",        "fcproj",     "head",
                                             "expert_fc", "expert_proj", "shared_fc", "shared_proj"};
/* "all": every linear layer but the head (and the router, which is never quantized) */
#define QK_ALL ((1u << QK_N) - 1 - (1u << QK_HEAD))
#define QK_EXPERTS ((1u << QK_EFC) | (1u << QK_EPROJ) | (1u << QK_SFC) | (1u << QK_SPROJ))

/* Rows of activations processed at once: the scratch is sized for this many, so any N
 * (training batches, generation prompts) runs in chunks without allocating. */
enum { QAT_ROWS = 256 };
_Static_assert(QK_N == sizeof(((model_layer_off *)0)->qat_step) / sizeof(size_t), "qat_step holds one per kind");

struct model_qat {
    unsigned kinds; /* bit per QK_* */
    int per_tensor; /* activation ranges per tensor (1) or per token (0) */
    size_t max_w;   /* largest OC x C of a covered layer */
    int max_c;      /* widest input of a covered layer */
    float *wq, *tw; /* [max_w]: fake-quantized weight, its gradient before the STE */
    float *xq, *tx; /* [QAT_ROWS x max_c]: fake-quantized inputs, their gradient */
    float *ws, *xs; /* [max OC], [QAT_ROWS]: scales */
    float *ds;      /* [max OC]: LSQ step gradients of one layer */
    int max_oc;
    fg_int8_observer *obs; /* [L * QK_N]: running max|input| of each covered layer */
};

fg_status model_qat_parse_layers(const char *list, unsigned *kinds)
{
    *kinds = 0;
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t len = strcspn(p, ", ");
        if (!len)
            break;
        int k = 0;
        if (len == 3 && !strncmp(p, "all", 3))
            *kinds |= QK_ALL;
        else if (len == 7 && !strncmp(p, "experts", 7))
            *kinds |= QK_EXPERTS;
        else {
            while (k < QK_N && (strlen(kind_names[k]) != len || strncmp(p, kind_names[k], len)))
                k++;
            if (k == QK_N)
                return fg_error(
                    FG_ERR_INVALID,
                    "qat_layers '%s': unknown layer '%.*s' at byte %zu (expected a comma list of qkv, "
                    "attproj, fc, fcproj, head, expert_fc, expert_proj, shared_fc, shared_proj, experts or all)",
                    list, (int)len, p, (size_t)(p - list));
            *kinds |= 1u << k;
        }
        p += len;
    }
    return FG_OK;
}

/* off is the start of one of n blocks of `block` values from `base` (n = 1: off == base). */
static int at_block(size_t off, size_t base, size_t block, size_t n)
{
    return base != FG_NO_TENSOR && off >= base && off < base + n * block && (off - base) % block == 0;
}

/* model_linear_kind by offset (the table is built before params are allocated). */
static int kind_of_off(const fg_model *m, size_t off, int *layer)
{
    *layer = m->cfg.n_layer;
    if (off == m->head)
        return QK_HEAD;
    const fg_moe_config *mc = &m->cfg.moe;
    size_t C = (size_t)m->cfg.d_model, H = (size_t)mc->d_expert, E = (size_t)mc->n_expert;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const model_layer_off *o = &m->layer[l];
        *layer = l;
        if (model_is_moe_layer(m, l)) {
            if (at_block(off, o->moe[FG_MOE_EXPERT_FC], 2 * H * C, E))
                return QK_EFC;
            if (at_block(off, o->moe[FG_MOE_EXPERT_PROJ], C * H, E))
                return QK_EPROJ;
            if (at_block(off, o->moe[FG_MOE_SHARED_FC], 1, 1))
                return QK_SFC;
            if (at_block(off, o->moe[FG_MOE_SHARED_PROJ], 1, 1))
                return QK_SPROJ;
        }
        if (off == o->qkvw)
            return QK_QKV;
        if (off == o->attprojw)
            return QK_ATTPROJ;
        if (off == o->fcw)
            return QK_FC;
        if (off == o->fcprojw)
            return QK_FCPROJ;
    }
    return -1;
}

int model_linear_kind(const fg_model *m, const float *weight, int *layer)
{
    return kind_of_off(m, (size_t)(weight - m->params), layer);
}

/* ---- LSQ step tensors ---- */

/* Output rows of kind k's weight in layer l (routed experts: all E of them), 0 when layer l
 * has no such weight. The head is left out: it keeps the max rule (docs/PRECISION.md). */
static int kind_rows(const fg_model *m, int l, int k)
{
    const fg_model_config *c = &m->cfg;
    int C = c->d_model, H = c->moe.d_expert, E = c->moe.n_expert, SH = c->moe.n_shared_expert * H;
    int moe = model_is_moe_layer(m, l);
    switch (k) {
    case QK_QKV: return 3 * C;
    case QK_ATTPROJ: return C;
    case QK_FC: return moe ? 0 : m->Fin;
    case QK_FCPROJ: return moe ? 0 : C;
    case QK_EFC: return moe ? E * 2 * H : 0;
    case QK_EPROJ: return moe ? E * C : 0;
    case QK_SFC: return moe ? 2 * SH : 0;
    case QK_SPROJ: return moe && SH ? C : 0;
    default: return 0;
    }
}

/* Visits every LSQ step tensor: counts them, or (t != NULL) adds them to the table. */
static size_t lsq_tensors(fg_model *m, int *ti, size_t off, int *count)
{
    unsigned kinds;
    *count = 0;
    if (!m->cfg.qat_lsq || model_qat_parse_layers(m->cfg.qat_layers, &kinds) != FG_OK)
        return off;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int k = 0; k < QK_N; k++) {
            int rows = k == QK_HEAD || !(kinds & (1u << k)) ? 0 : kind_rows(m, l, k);
            if (!rows)
                continue;
            ++*count;
            if (!ti)
                continue;
            fg_tensor_info *t = &m->tensors[(*ti)++];
            snprintf(t->name, sizeof t->name, "h.%d.qat.%s.lsq_step", l, kind_names[k]);
            t->offset = off;
            t->ndim = 1;
            t->shape[0] = rows;
            t->numel = (size_t)rows;
            t->no_decay = 1; /* a log factor: decay would pull every step to the max rule */
            t->frozen = 0;
            t->lr_scale = 1.0f;
            m->layer[l].qat_step[k] = off;
            off += (size_t)rows;
        }
    return off;
}

int model_qat_num_tensors(const fg_model *m)
{
    int n;
    lsq_tensors((fg_model *)m, NULL, 0, &n);
    return n;
}

size_t model_qat_add_tensors(fg_model *m, int *ti, size_t off)
{
    int n;
    return lsq_tensors(m, ti, off, &n);
}

void model_qat_init_weights(fg_model *m)
{
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int k = 0; k < QK_N; k++)
            if (m->layer[l].qat_step[k] != FG_NO_TENSOR)
                memset(m->params + m->layer[l].qat_step[k], 0, (size_t)kind_rows(m, l, k) * sizeof(float));
}

/* Offset of the step factors of the weight at `off` (kind k, layer l), or FG_NO_TENSOR. A
 * routed expert's block starts (off - base) / cols rows into its tensor's factors. */
static size_t step_off(const fg_model *m, size_t off, int k, int l, int cols)
{
    if (l >= m->cfg.n_layer || m->layer[l].qat_step[k] == FG_NO_TENSOR)
        return FG_NO_TENSOR;
    size_t base = k == QK_EFC     ? m->layer[l].moe[FG_MOE_EXPERT_FC]
                  : k == QK_EPROJ ? m->layer[l].moe[FG_MOE_EXPERT_PROJ]
                                  : off;
    return m->layer[l].qat_step[k] + (off - base) / (size_t)cols;
}

/* scale[r] *= exp(p[r]): the learned step of row r */
static void apply_steps(const fg_model *m, size_t so, float *scale, int rows)
{
    if (so == FG_NO_TENSOR)
        return;
    const float *p = m->params + so;
    for (int r = 0; r < rows; r++)
        scale[r] *= expf(p[r]);
}

void model_qat_weight_scales(const fg_model *m, size_t off, float *scale, int rows)
{
    int l, k = kind_of_off(m, off, &l);
    const fg_tensor_info *t = NULL;
    for (int i = 0; i < m->n_tensors && !t; i++)
        if (m->tensors[i].offset == off)
            t = &m->tensors[i];
    int cols = t ? t->shape[t->ndim - 1] : 1;
    fg_int8_scales_rows(scale, m->params + off, rows, cols);
    if (k >= 0)
        apply_steps(m, step_off(m, off, k, l, cols), scale, rows);
}

fg_status model_qat_init(fg_model *m)
{
    unsigned kinds;
    fg_status st = model_qat_parse_layers(m->cfg.qat_layers, &kinds);
    if (st != FG_OK || !kinds)
        return st;
    if (m->cfg.qat_act != 0 && m->cfg.qat_act != 1)
        return fg_error(FG_ERR_INVALID, "qat_act %d: expected 0 (per token) or 1 (per tensor)", m->cfg.qat_act);
    size_t C = (size_t)m->cfg.d_model, H = (size_t)m->cfg.moe.d_expert, SH = (size_t)m->cfg.moe.n_shared_expert * H,
           shapes[QK_N][2] = {{3 * C, C},
                              {C, C},
                              {(size_t)m->Fin, C},
                              {C, (size_t)m->F},
                              {(size_t)m->cfg.padded_vocab, C},
                              {2 * H, C},
                              {C, H},
                              {2 * SH, C},
                              {C, SH}};
    struct model_qat *q = fg_calloc(1, sizeof *q);
    if (!q)
        return FG_ERR_NOMEM;
    q->kinds = kinds;
    q->per_tensor = m->cfg.qat_act;
    for (int k = 0; k < QK_N; k++)
        if (kinds & (1u << k)) {
            size_t w = shapes[k][0] * shapes[k][1];
            q->max_w = w > q->max_w ? w : q->max_w;
            q->max_c = (int)shapes[k][1] > q->max_c ? (int)shapes[k][1] : q->max_c;
            q->max_oc = (int)shapes[k][0] > q->max_oc ? (int)shapes[k][0] : q->max_oc;
        }
    size_t xs = (size_t)QAT_ROWS * (size_t)q->max_c;
    q->wq = fg_malloc(2 * q->max_w * sizeof(float));
    q->xq = fg_malloc(2 * xs * sizeof(float));
    q->ws = fg_malloc((2 * (size_t)q->max_oc + QAT_ROWS) * sizeof(float));
    q->obs = fg_calloc((size_t)(m->cfg.n_layer + 1) * QK_N, sizeof *q->obs);
    m->qat = q;
    if (!q->wq || !q->xq || !q->ws || !q->obs)
        return FG_ERR_NOMEM; /* fg_model_new frees through model_qat_free */
    q->tw = q->wq + q->max_w;
    q->tx = q->xq + xs;
    q->xs = q->ws + q->max_oc;
    q->ds = q->xs + QAT_ROWS;
    for (int i = 0; i < (m->cfg.n_layer + 1) * QK_N; i++)
        q->obs[i].momentum = 0.01f;
    return FG_OK;
}

static void moe_lin_fwd(const void *ctx, float *out, const float *inp, const float *weight, int N, int C, int OC)
{
    model_linear_forward(ctx, out, inp, weight, NULL, N, C, OC);
}

static void moe_lin_bwd(const void *ctx, float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, int N, int C, int OC)
{
    model_linear_backward(ctx, dinp, dweight, NULL, dout, inp, weight, N, C, OC);
}

void model_moe_lin_hooks(const fg_model *m, fg_moe_weights *w)
{
    /* only when an expert is covered: the hooks make the experts run one after another */
    if (!(m->qat && (m->qat->kinds & QK_EXPERTS)) && !model_int8_covers_experts(m))
        return;
    w->lin_fwd = moe_lin_fwd;
    w->lin_bwd = moe_lin_bwd;
    w->lin_ctx = m;
}

void model_qat_free(fg_model *m)
{
    struct model_qat *q = m->qat;
    if (!q)
        return;
    fg_free(q->wq);
    fg_free(q->xq);
    fg_free(q->ws);
    fg_free(q->obs);
    fg_free(q);
    m->qat = NULL;
}

/* wq = fake-quantized weight with per-output-channel scales ws: max|w|/127, times the
 * learned exp(p) under LSQ (so is the step so). Recomputed in the backward: the weights
 * have not moved in between, so it is the forward's. */
static void quant_weight(struct model_qat *q, const fg_model *m, const float *weight, size_t so, int OC, int C)
{
    fg_int8_scales_rows(q->ws, weight, OC, C);
    apply_steps(m, so, q->ws, OC);
    fg_fake_quant_rows(q->wq, weight, q->ws, 1, OC, C);
}

/* Scales of rows r0..r0+n of inp into q->xs (per token), or the one tensor scale. */
static void act_scales(struct model_qat *q, const float *rows, int n, int C, float tensor_scale)
{
    if (q->per_tensor)
        q->xs[0] = tensor_scale;
    else
        fg_int8_scales_rows(q->xs, rows, n, C);
}

int model_qat_linear_forward(const fg_model *m, float *out, const float *inp, const float *weight, const float *bias,
                             int N, int C, int OC)
{
    struct model_qat *q = m->qat;
    int l, k = model_linear_kind(m, weight, &l);
    if (k < 0 || !(q->kinds & (1u << k)))
        return 0;
    quant_weight(q, m, weight, step_off(m, (size_t)(weight - m->params), k, l, C), OC, C);
    float ts = fg_int8_scale_tensor(inp, (size_t)N * (size_t)C);
    fg_int8_observer_update(&q->obs[l * QK_N + k], ts * FG_INT8_QMAX);
    for (int r0 = 0; r0 < N; r0 += QAT_ROWS) {
        int n = N - r0 < QAT_ROWS ? N - r0 : QAT_ROWS;
        const float *x = inp + (size_t)r0 * C;
        act_scales(q, x, n, C, ts);
        fg_fake_quant_rows(q->xq, x, q->xs, !q->per_tensor, n, C);
        fg_matmul_forward(out + (size_t)r0 * OC, q->xq, q->wq, bias, n, C, OC);
    }
    return 1;
}

int model_qat_linear_backward(const fg_model *m, float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, int N, int C, int OC)
{
    struct model_qat *q = m->qat;
    int l, k = model_linear_kind(m, weight, &l);
    if (k < 0 || !(q->kinds & (1u << k)))
        return 0;
    size_t so = step_off(m, (size_t)(weight - m->params), k, l, C);
    quant_weight(q, m, weight, so, OC, C);
    float ts = q->per_tensor ? fg_int8_scale_tensor(inp, (size_t)N * (size_t)C) : 0.0f;
    size_t nw = (size_t)OC * (size_t)C;
    if (dweight)
        memset(q->tw, 0, nw * sizeof(float));
    for (int r0 = 0; r0 < N; r0 += QAT_ROWS) {
        int n = N - r0 < QAT_ROWS ? N - r0 : QAT_ROWS;
        const float *x = inp + (size_t)r0 * C, *dy = dout + (size_t)r0 * OC;
        act_scales(q, x, n, C, ts);
        fg_fake_quant_rows(q->xq, x, q->xs, !q->per_tensor, n, C);
        if (dinp)
            memset(q->tx, 0, (size_t)n * C * sizeof(float));
        /* d(xq) and d(wq) through the plain layer, then the STE of each quantizer */
        fg_matmul_backward(dinp ? q->tx : NULL, dweight ? q->tw : NULL, dbias, dy, q->xq, q->wq, n, C, OC);
        if (dinp) {
            float *dx = dinp + (size_t)r0 * C;
            fg_fake_quant_rows_backward(q->tx, q->tx, x, q->xs, !q->per_tensor, n, C);
            fg_add(dx, dx, q->tx, (size_t)n * C);
        }
    }
    if (dweight && so != FG_NO_TENSOR) {
        /* LSQ: the weight's gradient inside the clip range, and the step's (Esser et al.,
         * scaled by 1/sqrt(C * 127)); through s = s_max exp(p): dp = s ds */
        memset(q->ds, 0, (size_t)OC * sizeof(float));
        fg_lsq_backward(q->tw, q->ds, q->tw, weight, q->ws, 1, OC, C, fg_lsq_grad_scale((size_t)C));
        float *dp = m->grads + so;
        for (int r = 0; r < OC; r++)
            dp[r] += q->ds[r] * q->ws[r];
        fg_add(dweight, dweight, q->tw, nw);
    } else if (dweight) {
        fg_fake_quant_rows_backward(q->tw, q->tw, weight, q->ws, 1, OC, C);
        fg_add(dweight, dweight, q->tw, nw);
    }
    return 1;
}
