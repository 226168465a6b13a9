/* share.c: cross-layer FFN sharing (cfg.ffn_share, docs/MODEL.md "FFN sharing"): which layers
 * derive their FFN matrices from the layer before, their stored low-rank tensors, and the
 * derived weights: materialised from params before a forward, their gradients folded back.
 *
 * Groups are ffn_share_group consecutive layers of one kind (dense layers, then MoE layers
 * counted from n_dense_layers); every layer but a group's first is derived. Plain (ALBERT):
 * a derived layer's FFN offsets point at the group's first FFN, so forward and backward
 * need nothing more (the gradients of all the group's layers land in one tensor). Seed:
 * W_l = a W_{l-1} + (1 - a) U_l V_l^T for each FFN matrix (each expert of a MoE layer, and
 * its shared expert), U [rows, r], V [cols, r], a fixed or one parameter per derived layer.
 * The derived W_l live after the stored parameters in params / grads (m->n_alloc), so the
 * layers' code, the optimiser (n_params) and checkpoints need no change; a derived layer's
 * dW is folded into dU, dV, da and a * dW into its source right after the layer's backward,
 * before the data-parallel grad hook reads the layer's tensors.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frugal/kernels.h"
#include "model_impl.h"

/* One FFN matrix role of a layer: n matrices (experts) of rows x cols. */
typedef struct share_mat {
    size_t *eff; /* the layer's offset field of this matrix (o->fcw, o->moe[role], ...) */
    int n, rows, cols;
    int resid;        /* an output projection (init std of the residual branch) */
    const char *name; /* tensor stem after "h.<l>." */
} share_mat;

/* The FFN matrices of layer l (at most 4). */
static int layer_mats(const fg_model *m, int l, share_mat *out)
{
    model_layer_off *o = &m->layer[l];
    const fg_model_config *c = &m->cfg;
    int C = c->d_model, k = 0;
    if (!model_is_moe_layer(m, l)) {
        out[k++] = (share_mat){&o->fcw, 1, m->Fin, C, 0, "mlp.fc"};
        out[k++] = (share_mat){&o->fcprojw, 1, C, m->F, 1, "mlp.proj"};
        return k;
    }
    int E = c->moe.n_expert, H = c->moe.d_expert, SH = c->moe.n_shared_expert * H;
    out[k++] = (share_mat){&o->moe[FG_MOE_EXPERT_FC], E, 2 * H, C, 0, "moe.experts.fc"};
    out[k++] = (share_mat){&o->moe[FG_MOE_EXPERT_PROJ], E, C, H, 1, "moe.experts.proj"};
    if (SH > 0) {
        out[k++] = (share_mat){&o->moe[FG_MOE_SHARED_FC], 1, 2 * SH, C, 0, "moe.shared.fc"};
        out[k++] = (share_mat){&o->moe[FG_MOE_SHARED_PROJ], 1, C, SH, 1, "moe.shared.proj"};
    }
    return k;
}

fg_status model_share_validate(const fg_model_config *cfg)
{
    if (cfg->ffn_share != FG_SHARE_NONE && cfg->ffn_share != FG_SHARE_PLAIN && cfg->ffn_share != FG_SHARE_SEED)
        return fg_error(FG_ERR_INVALID, "model config: ffn_share = %d is none of none (0), plain (1), seed (2)",
                        (int)cfg->ffn_share);
    if (cfg->ffn_share == FG_SHARE_NONE)
        return FG_OK;
    if (cfg->ffn_share_group < 1 || cfg->ffn_share_group > 4096)
        return fg_error(FG_ERR_INVALID, "model config: ffn_share_group = %d must be in [1, 4096]",
                        cfg->ffn_share_group);
    if (cfg->ffn_share == FG_SHARE_SEED) {
        if (!(cfg->ffn_share_alpha >= 0.0f && cfg->ffn_share_alpha <= 1.0f))
            return fg_error(FG_ERR_INVALID, "model config: ffn_share_alpha = %g must be in [0, 1]",
                            (double)cfg->ffn_share_alpha);
        if (cfg->ffn_share_rank < 1 || cfg->ffn_share_rank > 4096)
            return fg_error(FG_ERR_INVALID, "model config: ffn_share_rank = %d must be in [1, 4096]",
                            cfg->ffn_share_rank);
        if (cfg->ffn_share_learn_alpha != 0 && cfg->ffn_share_learn_alpha != 1)
            return fg_error(FG_ERR_INVALID, "model config: ffn_share_learn_alpha = %d must be 0 or 1",
                            cfg->ffn_share_learn_alpha);
    }
    /* the derived weights are materialised in fp32 only: lowp.c's bf16 / fp8 copies and
     * the QAT hooks cover the stored tensors (docs/MODEL.md says why this is left out) */
    if (cfg->precision != FG_PRECISION_FP32)
        return fg_error(FG_ERR_INVALID, "model config: ffn_share = %s needs precision = fp32",
                        cfg->ffn_share == FG_SHARE_PLAIN ? "plain" : "seed");
    if (cfg->qat_layers[0] != '\0')
        return fg_error(FG_ERR_INVALID, "model config: ffn_share = %s cannot be combined with qat_layers = \"%s\"",
                        cfg->ffn_share == FG_SHARE_PLAIN ? "plain" : "seed", cfg->qat_layers);
    return FG_OK;
}

bool model_share_derived(const fg_model *m, int l)
{
    const fg_model_config *c = &m->cfg;
    if (c->ffn_share == FG_SHARE_NONE || c->ffn_share_group < 2 || l < 1 || l >= c->n_layer)
        return false;
    bool moe = model_is_moe_layer(m, l);
    if (moe != model_is_moe_layer(m, l - 1))
        return false; /* a dense and a MoE layer never share */
    int pos = moe ? l - c->moe.n_dense_layers : l;
    return pos % c->ffn_share_group != 0;
}

bool model_share_moe_role(int role)
{
    return role == FG_MOE_EXPERT_FC || role == FG_MOE_EXPERT_PROJ || role == FG_MOE_SHARED_FC ||
           role == FG_MOE_SHARED_PROJ;
}

int model_share_num_tensors(const fg_model *m)
{
    if (m->cfg.ffn_share != FG_SHARE_SEED)
        return 0;
    int n = 0;
    share_mat mt[4];
    for (int l = 0; l < m->cfg.n_layer; l++)
        if (model_share_derived(m, l))
            n += 2 * layer_mats(m, l, mt) + m->cfg.ffn_share_learn_alpha;
    return n;
}

static void add_tensor(fg_tensor_info *t, const char *name, size_t off, int n, int rows, int cols, int no_decay)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = off;
    t->ndim = n > 1 ? 3 : cols ? 2 : 1;
    int sh[3] = {n, rows, cols};
    for (int i = 0; i < t->ndim; i++)
        t->shape[i] = n > 1 ? sh[i] : sh[i + 1];
    t->numel = (size_t)n * (size_t)rows * (size_t)(cols ? cols : 1);
    t->no_decay = no_decay;
    t->frozen = 0;
    t->lr_scale = 1.0f;
}

size_t model_share_add_tensors(fg_model *m, int *ti, size_t off)
{
    if (m->cfg.ffn_share != FG_SHARE_SEED)
        return off;
    int r = m->cfg.ffn_share_rank;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_share_derived(m, l))
            continue;
        share_mat mt[4];
        int k = layer_mats(m, l, mt);
        char name[64];
        for (int j = 0; j < k; j++) {
            fg_tensor_info *t = &m->tensors[(*ti)++];
            snprintf(name, sizeof name, "h.%d.%s.share_u", l, mt[j].name);
            add_tensor(t, name, off, mt[j].n, mt[j].rows, r, 0);
            m->layer[l].share_u[j] = off;
            off += t->numel;
            t = &m->tensors[(*ti)++];
            snprintf(name, sizeof name, "h.%d.%s.share_v", l, mt[j].name);
            add_tensor(t, name, off, mt[j].n, mt[j].cols, r, 0);
            m->layer[l].share_v[j] = off;
            off += t->numel;
        }
        if (m->cfg.ffn_share_learn_alpha) {
            snprintf(name, sizeof name, "h.%d.ffn.share_alpha", l);
            add_tensor(&m->tensors[(*ti)++], name, off, 1, 1, 0, 1);
            m->layer[l].share_alpha = off;
            off += 1;
        }
    }
    return off;
}

size_t model_share_place(fg_model *m, size_t off)
{
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_share_derived(m, l))
            continue;
        share_mat mt[4], src[4];
        int k = layer_mats(m, l, mt);
        layer_mats(m, l - 1, src);
        for (int j = 0; j < k; j++) {
            if (m->cfg.ffn_share == FG_SHARE_PLAIN) {
                *mt[j].eff = *src[j].eff; /* already resolved: layers go up */
            } else {
                *mt[j].eff = off;
                off += (size_t)mt[j].n * (size_t)mt[j].rows * (size_t)mt[j].cols;
            }
        }
    }
    return off;
}

fg_status model_share_init(fg_model *m)
{
    if (m->cfg.ffn_share != FG_SHARE_SEED)
        return FG_OK;
    size_t big = 0;
    share_mat mt[4];
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_share_derived(m, l))
            continue;
        int k = layer_mats(m, l, mt);
        for (int j = 0; j < k; j++)
            if ((size_t)mt[j].rows * (size_t)mt[j].cols > big)
                big = (size_t)mt[j].rows * (size_t)mt[j].cols;
    }
    if (big == 0)
        return FG_OK;
    m->share_scratch = fg_calloc(big, sizeof(float));
    return m->share_scratch ? FG_OK : fg_error(FG_ERR_NOMEM, "model: cannot allocate the FFN sharing scratch");
}

void model_share_free(fg_model *m)
{
    fg_free(m->share_scratch);
    m->share_scratch = NULL;
}

static float layer_alpha(const fg_model *m, int l)
{
    size_t o = m->layer[l].share_alpha;
    return o == FG_NO_TENSOR ? m->cfg.ffn_share_alpha : m->params[o];
}

void model_share_init_weights(fg_model *m)
{
    if (m->cfg.ffn_share != FG_SHARE_SEED)
        return;
    /* the generic init drew U, V from N(0, 0.02): scale both so that U V^T has the std a
     * stored matrix of that role gets (0.02, or 0.02 / sqrt(2L) for output projections) */
    float r = (float)m->cfg.ffn_share_rank;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_share_derived(m, l))
            continue;
        share_mat mt[4];
        int k = layer_mats(m, l, mt);
        for (int j = 0; j < k; j++) {
            float want = mt[j].resid ? 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer) : 0.02f;
            float f = sqrtf(want / (0.02f * 0.02f * sqrtf(r)));
            size_t nu = (size_t)mt[j].n * (size_t)mt[j].rows * (size_t)r;
            size_t nv = (size_t)mt[j].n * (size_t)mt[j].cols * (size_t)r;
            fg_scale(m->params + m->layer[l].share_u[j], f, nu);
            fg_scale(m->params + m->layer[l].share_v[j], f, nv);
        }
        if (m->layer[l].share_alpha != FG_NO_TENSOR)
            m->params[m->layer[l].share_alpha] = m->cfg.ffn_share_alpha;
    }
}

void model_share_refresh(fg_model *m)
{
    if (m->cfg.ffn_share != FG_SHARE_SEED)
        return;
    int r = m->cfg.ffn_share_rank;
    for (int l = 0; l < m->cfg.n_layer; l++) { /* upwards: a source is current before its users */
        if (!model_share_derived(m, l))
            continue;
        share_mat mt[4], src[4];
        int k = layer_mats(m, l, mt);
        layer_mats(m, l - 1, src);
        float a = layer_alpha(m, l);
        for (int j = 0; j < k; j++) {
            size_t rc = (size_t)mt[j].rows * (size_t)mt[j].cols;
            for (int e = 0; e < mt[j].n; e++) {
                float *w = m->params + *mt[j].eff + (size_t)e * rc;
                const float *ws = m->params + *src[j].eff + (size_t)e * rc;
                const float *u = m->params + m->layer[l].share_u[j] + (size_t)e * mt[j].rows * r;
                const float *v = m->params + m->layer[l].share_v[j] + (size_t)e * mt[j].cols * r;
                fg_matmul_forward(w, u, v, NULL, mt[j].rows, r, mt[j].cols); /* U V^T */
                for (size_t i = 0; i < rc; i++)
                    w[i] = a * ws[i] + (1.0f - a) * w[i];
            }
        }
    }
}

void model_share_zero_grads(fg_model *m)
{
    if (m->n_alloc > m->n_params)
        memset(m->grads + m->n_params, 0, (m->n_alloc - m->n_params) * sizeof(float));
}

void model_share_fold(fg_model *m, int l)
{
    if (m->cfg.ffn_share != FG_SHARE_SEED || !model_share_derived(m, l))
        return;
    int r = m->cfg.ffn_share_rank;
    share_mat mt[4], src[4];
    int k = layer_mats(m, l, mt);
    layer_mats(m, l - 1, src);
    float a = layer_alpha(m, l);
    int learn = m->layer[l].share_alpha != FG_NO_TENSOR;
    double da = 0.0;
    float *s = m->share_scratch;
    for (int j = 0; j < k; j++) {
        size_t rc = (size_t)mt[j].rows * (size_t)mt[j].cols;
        for (int e = 0; e < mt[j].n; e++) {
            const float *dw = m->grads + *mt[j].eff + (size_t)e * rc;
            float *dws = m->grads + *src[j].eff + (size_t)e * rc;
            const float *ws = m->params + *src[j].eff + (size_t)e * rc;
            size_t ou = m->layer[l].share_u[j] + (size_t)e * mt[j].rows * r;
            size_t ov = m->layer[l].share_v[j] + (size_t)e * mt[j].cols * r;
            if (learn) { /* d/da of a W_src + (1 - a) U V^T = W_src - U V^T */
                fg_matmul_forward(s, m->params + ou, m->params + ov, NULL, mt[j].rows, r, mt[j].cols);
                for (size_t i = 0; i < rc; i++)
                    da += (double)dw[i] * ((double)ws[i] - (double)s[i]);
            }
            for (size_t i = 0; i < rc; i++)
                s[i] = (1.0f - a) * dw[i];
            /* U V^T as a linear layer: inp U [rows, r], weight V [cols, r] */
            fg_matmul_backward(m->grads + ou, m->grads + ov, NULL, s, m->params + ou, m->params + ov, mt[j].rows, r,
                               mt[j].cols);
            for (size_t i = 0; i < rc; i++)
                dws[i] += a * dw[i];
        }
    }
    if (learn)
        m->grads[m->layer[l].share_alpha] += (float)da;
}

size_t model_share_extra_weights(const fg_model *m)
{
    if (m->cfg.ffn_share == FG_SHARE_NONE)
        return 0;
    size_t used = 0, stored = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_share_derived(m, l))
            continue;
        share_mat mt[4];
        int k = layer_mats(m, l, mt);
        for (int j = 0; j < k; j++) {
            used += (size_t)mt[j].n * (size_t)mt[j].rows * (size_t)mt[j].cols;
            if (m->cfg.ffn_share == FG_SHARE_SEED)
                stored += (size_t)mt[j].n * (size_t)(mt[j].rows + mt[j].cols) * (size_t)m->cfg.ffn_share_rank;
        }
        stored += m->layer[l].share_alpha != FG_NO_TENSOR;
    }
    return used - stored;
}

double model_share_step_flops(const fg_model *m)
{
    if (m->cfg.ffn_share != FG_SHARE_SEED)
        return 0.0;
    double f = 0.0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_share_derived(m, l))
            continue;
        share_mat mt[4];
        int k = layer_mats(m, l, mt);
        for (int j = 0; j < k; j++) {
            double rc = (double)mt[j].n * mt[j].rows * mt[j].cols;
            /* U V^T forward (2 r), its backward (4 r), the blend and the fold (~6), and the
             * recomputed U V^T of a learned a (2 r + 3) */
            f += rc * (6.0 * m->cfg.ffn_share_rank + 6.0);
            if (m->layer[l].share_alpha != FG_NO_TENSOR)
                f += rc * (2.0 * m->cfg.ffn_share_rank + 3.0);
        }
    }
    return f;
}
