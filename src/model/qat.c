/* qat.c: int8 quantization-aware training in the linear layers named by cfg.qat_layers:
 * fake-quantized weights (per output channel) and inputs (per token or per tensor, ranges
 * from each batch), straight-through gradients, and a running input range per layer. */
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

struct model_qat {
    unsigned kinds; /* bit per QK_* */
    int per_tensor; /* activation ranges per tensor (1) or per token (0) */
    size_t max_w;   /* largest OC x C of a covered layer */
    int max_c;      /* widest input of a covered layer */
    float *wq, *tw; /* [max_w]: fake-quantized weight, its gradient before the STE */
    float *xq, *tx; /* [QAT_ROWS x max_c]: fake-quantized inputs, their gradient */
    float *ws, *xs; /* [max OC], [QAT_ROWS]: scales */
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

int model_linear_kind(const fg_model *m, const float *weight, int *layer)
{
    size_t off = (size_t)(weight - m->params);
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
    q->ws = fg_malloc(((size_t)q->max_oc + QAT_ROWS) * sizeof(float));
    q->obs = fg_calloc((size_t)(m->cfg.n_layer + 1) * QK_N, sizeof *q->obs);
    m->qat = q;
    if (!q->wq || !q->xq || !q->ws || !q->obs)
        return FG_ERR_NOMEM; /* fg_model_new frees through model_qat_free */
    q->tw = q->wq + q->max_w;
    q->tx = q->xq + xs;
    q->xs = q->ws + q->max_oc;
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
    if (!m->qat && !m->i8)
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

/* wq = fake-quantized weight with per-output-channel scales ws (recomputed in the
 * backward: the weights have not moved in between, so it is the forward's). */
static void quant_weight(struct model_qat *q, const float *weight, int OC, int C)
{
    fg_int8_scales_rows(q->ws, weight, OC, C);
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
    quant_weight(q, weight, OC, C);
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
    quant_weight(q, weight, OC, C);
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
    if (dweight) {
        fg_fake_quant_rows_backward(q->tw, q->tw, weight, q->ws, 1, OC, C);
        fg_add(dweight, dweight, q->tw, nw);
    }
    return 1;
}
