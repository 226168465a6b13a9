/* moe_model.c: the MoE FFN inside the model: its tensors in the flat buffer (frozen
 * router bias and load history included), per-layer caches, the FFN hooks model.c
 * calls for layers l >= n_dense_layers, the bias update after each optimizer step,
 * router statistics and the active-parameter count. The block itself is moe.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frugal/moe.h"
#include "model_impl.h"

bool model_is_moe_layer(const fg_model *m, int l)
{
    return m->cfg.moe.n_expert > 0 && l >= m->cfg.moe.n_dense_layers;
}

static int n_moe_layers(const fg_model *m)
{
    int n = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        n += model_is_moe_layer(m, l);
    return n;
}

static const char *const role_names[FG_MOE_N_ROLES] = {
    "moe.router.weight",    "moe.router.bias",        "moe.experts.fc.weight", "moe.experts.proj.weight",
    "moe.shared.fc.weight", "moe.shared.proj.weight", "moe.load_hist",         "moe.load_steps",
};

int model_moe_num_tensors(const fg_model *m)
{
    if (m->cfg.moe.n_expert <= 0)
        return 0;
    const fg_moe_config *mc = &m->cfg.moe;
    int n = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int r = 0; r < FG_MOE_N_ROLES && model_is_moe_layer(m, l); r++) {
            int nd, sh[4];
            fg_moe_role_shape(mc, (fg_moe_role)r, &nd, sh);
            n += nd > 0 && !(model_share_derived(m, l) && model_share_moe_role(r)); /* share.c derives it */
        }
    return n;
}

size_t model_moe_add_tensors(fg_model *m, int *ti, size_t off)
{
    if (m->cfg.moe.n_expert <= 0)
        return off;
    const fg_moe_config *mc = &m->cfg.moe;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_is_moe_layer(m, l))
            continue;
        for (int r = 0; r < FG_MOE_N_ROLES; r++) {
            int nd, sh[4] = {0, 0, 0, 0};
            fg_moe_role_shape(mc, (fg_moe_role)r, &nd, sh);
            if (nd == 0 || (model_share_derived(m, l) && model_share_moe_role(r)))
                continue; /* absent, or derived from layer l-1 (share.c) */
            fg_tensor_info *t = &m->tensors[(*ti)++];
            snprintf(t->name, sizeof t->name, "h.%d.%s", l, role_names[r]);
            t->offset = off;
            t->ndim = nd;
            t->numel = 1;
            for (int i = 0; i < nd; i++)
                t->shape[i] = sh[i], t->numel *= (size_t)sh[i];
            /* the bias and the load history are state moved by the balance rule */
            t->frozen = r == FG_MOE_ROUTER_BIAS || r == FG_MOE_LOAD_HIST || r == FG_MOE_LOAD_STEPS;
            t->no_decay = t->frozen;
            t->lr_scale = r == FG_MOE_ROUTER_W ? m->cfg.moe.router_lr_scale : 1.0f;
            m->layer[l].moe[r] = off;
            off += t->numel;
        }
    }
    return off;
}

fg_status model_moe_init(fg_model *m)
{
    if (m->cfg.moe.n_expert <= 0)
        return FG_OK;
    const fg_moe_config *mc = &m->cfg.moe;
    int L = m->cfg.n_layer, N = m->B * m->T;
    m->moe = fg_calloc((size_t)L, sizeof *m->moe);
    m->moe_scratch = fg_calloc(1, sizeof *m->moe_scratch);
    if (!m->moe || !m->moe_scratch)
        return fg_error(FG_ERR_NOMEM, "model: cannot allocate MoE layer table");
    for (int l = 0; l < L; l++) {
        if (!model_is_moe_layer(m, l))
            continue;
        for (int r = 0; r < FG_MOE_N_ROLES; r++) {
            size_t o = m->layer[l].moe[r];
            if (o == FG_NO_TENSOR)
                continue;
            for (int i = 0; i < m->n_tensors; i++) /* each tensor checked against the config */
                if (m->tensors[i].offset == o && m->tensors[i].numel > 0) {
                    fg_status st = fg_moe_check_tensor(mc, (fg_moe_role)r, &m->tensors[i]);
                    if (st != FG_OK)
                        return st;
                    break;
                }
        }
        fg_status st = fg_moe_layer_init(&m->moe[l], mc, N);
        if (st != FG_OK)
            return st;
    }
    return fg_moe_scratch_init(m->moe_scratch, mc, N);
}

void model_moe_free(fg_model *m)
{
    model_moe_ep_free(m);
    if (m->moe)
        for (int l = 0; l < m->cfg.n_layer; l++)
            fg_moe_layer_free(&m->moe[l]);
    fg_moe_scratch_free(m->moe_scratch);
    fg_free(m->moe_scratch);
    fg_free(m->moe);
    m->moe = NULL;
    m->moe_scratch = NULL;
}

static fg_moe_weights views(float *base, const model_layer_off *o)
{
    fg_moe_weights w = {0};
#define V(r) (o->moe[r] == FG_NO_TENSOR ? NULL : base + o->moe[r])
    w.router_w = V(FG_MOE_ROUTER_W);
    w.router_bias = V(FG_MOE_ROUTER_BIAS);
    w.expert_fc = V(FG_MOE_EXPERT_FC);
    w.expert_proj = V(FG_MOE_EXPERT_PROJ);
    w.shared_fc = V(FG_MOE_SHARED_FC);
    w.shared_proj = V(FG_MOE_SHARED_PROJ);
#undef V
    return w;
}

/* bf16 precision inside forward/backward: the routed experts' bf16 weight copies
 * (views into m->wbf) and the model's bf16 scratch, sized for them at creation. */
static void bf16_views(const fg_model *m, const model_layer_off *o, fg_moe_weights *w)
{
    if (!m->bf_live)
        return;
    w->expert_fc_bf16 = m->wbf + o->moe[FG_MOE_EXPERT_FC];
    w->expert_proj_bf16 = m->wbf + o->moe[FG_MOE_EXPERT_PROJ];
    if (o->moe[FG_MOE_SHARED_FC] != FG_NO_TENSOR) {
        w->shared_fc_bf16 = m->wbf + o->moe[FG_MOE_SHARED_FC];
        w->shared_proj_bf16 = m->wbf + o->moe[FG_MOE_SHARED_PROJ];
    }
    w->bf16_x = m->xbf;
    w->bf16_d = m->dbf;
}

void model_moe_ffn_forward(const fg_model *m, int l, float *out, const float *inp, int N)
{
    fg_moe_weights w = views(m->params, &m->layer[l]);
    bf16_views(m, &m->layer[l], &w);
    model_moe_lin_hooks(m, &w);
    /* training/eval forwards pass the batch's B x T (SEQAUX needs the sequences);
     * one-token generation steps are one sequence of N rows */
    int T = N == m->cur_B * m->cur_T ? m->cur_T : N, B = N / T;
    /* expert parallel only in training forwards (with targets, all ranks in step);
     * evaluation and generation run every expert here (the weights are on every rank) */
    m->moe[l].ep = m->has_targets ? model_moe_ep_layer(m, l) : NULL;
    fg_status st = fg_moe_forward(&m->moe[l], out, inp, &w, B, T);
    /* N <= B*T capacity was checked by fg_model_forward; an exchange failure is kept by
     * moe_ep.c and returned by fg_model_forward */
    FG_ASSERT(st == FG_OK || m->moe[l].ep);
}

void model_moe_ffn_backward(fg_model *m, int l, float *dinp, const float *dout, const float *inp, int N)
{
    (void)N;
    fg_moe_weights w = views(m->params, &m->layer[l]), g = views(m->grads, &m->layer[l]);
    bf16_views(m, &m->layer[l], &w);
    model_moe_lin_hooks(m, &w);
    fg_status st = fg_moe_backward(&m->moe[l], m->moe_scratch, dinp, &g, dout, inp, &w, m->moe_loss_scale);
    FG_ASSERT(st == FG_OK || m->moe[l].ep);
}

float model_moe_aux_loss(const fg_model *m)
{
    float aux = 0;
    for (int l = 0; m->moe && l < m->cfg.n_layer; l++)
        if (model_is_moe_layer(m, l))
            aux += m->moe[l].stats.aux_loss;
    return aux;
}

/* ---- public model functions that only MoE gives content to ---- */

size_t fg_model_num_active_params(const fg_model *m)
{
    const fg_model_config *c = &m->cfg;
    /* FFN sharing: a token multiplies by the derived weights, not by the stored U, V, a */
    size_t n = m->n_params + model_share_extra_weights(m);
    if (c->moe.n_expert <= 0)
        return n; /* dense: every parameter is used for every token */
    /* per MoE layer, E - K routed experts sit idle for a token; the frozen bias and
     * load history are state, not parameters a token uses */
    size_t expert = 3 * (size_t)c->d_model * (size_t)c->moe.d_expert;
    size_t state = (size_t)c->moe.n_expert * (size_t)(c->moe.balance_window + 1) + 1;
    size_t idle = (size_t)(c->moe.n_expert - c->moe.n_expert_active) * expert + state;
    return n - (size_t)n_moe_layers(m) * idle;
}

void fg_model_post_step(fg_model *m)
{
    const fg_model_config *c = &m->cfg;
    for (int l = 0; m->moe && l < c->n_layer; l++) {
        if (!model_is_moe_layer(m, l))
            continue;
        fg_moe_layer *L = &m->moe[l];
        const model_layer_off *o = &m->layer[l];
        /* the load history is kept in every mode (statistics); only BIAS moves the bias */
        fg_moe_balance_update(m->params + o->moe[FG_MOE_ROUTER_BIAS], m->params + o->moe[FG_MOE_LOAD_HIST],
                              m->params + o->moe[FG_MOE_LOAD_STEPS], L->step_load, c->moe.n_expert,
                              c->moe.balance_window, c->moe.balance == FG_BALANCE_BIAS ? c->moe.balance_gamma : 0.0f,
                              c->moe.balance == FG_BALANCE_BIAS ? c->moe.balance_gain : 0.0f);
        model_moe_ep_note_load(m, l, L->step_load); /* expert placement's history */
        memset(L->step_load, 0, (size_t)c->moe.n_expert * sizeof *L->step_load);
    }
}

float *fg_model_moe_step_load(fg_model *m, int l, int *n)
{
    *n = 0;
    if (!m->moe || l < 0 || l >= m->cfg.n_layer || !model_is_moe_layer(m, l))
        return NULL;
    *n = m->cfg.moe.n_expert;
    return m->moe[l].step_load;
}

const int32_t *fg_model_moe_routes(const fg_model *m, int l, int *n_tok, int *k)
{
    *n_tok = 0, *k = 0;
    if (!m->moe || l < 0 || l >= m->cfg.n_layer || !model_is_moe_layer(m, l) || m->moe[l].n_tok == 0)
        return NULL;
    *n_tok = m->moe[l].n_tok, *k = m->cfg.moe.n_expert_active;
    return m->moe[l].topk;
}

void fg_model_moe_stats(const fg_model *m, fg_moe_stats *s)
{
    memset(s, 0, sizeof *s);
    int n = 0;
    for (int l = 0; m->moe && l < m->cfg.n_layer; l++) {
        if (!model_is_moe_layer(m, l) || m->moe[l].n_tok == 0)
            continue;
        const fg_moe_layer_stats *ls = &m->moe[l].stats;
        s->load_max_over_mean = fmaxf(s->load_max_over_mean, ls->load_max_over_mean);
        s->load_cv += ls->load_cv;
        s->active_frac += ls->active_frac;
        s->dropped_tokens += ls->dropped;
        s->aux_loss += ls->aux_loss;
        n++;
    }
    if (n) {
        s->load_cv /= (float)n;
        s->active_frac /= (float)n;
    }
}

void fg_model_moe_print_loads(const fg_model *m, FILE *f)
{
    const fg_model_config *c = &m->cfg;
    if (c->moe.n_expert <= 0 || !m->moe) {
        fprintf(f, "dense model: no MoE layers\n");
        return;
    }
    int E = c->moe.n_expert;
    fprintf(f, "expert loads since start (training tokens routed, as multiples of the mean; E=%d, K=%d)\n", E,
            c->moe.n_expert_active);
    fprintf(f, "%-6s %10s %8s %8s %8s  %s\n", "layer", "pairs", "max/mean", "min/mean", "cv", "per expert");
    for (int l = 0; l < c->n_layer; l++) {
        if (!model_is_moe_layer(m, l))
            continue;
        const double *tl = m->moe[l].total_load;
        double sum = 0, mx = 0, mn = INFINITY, var = 0;
        for (int e = 0; e < E; e++)
            sum += tl[e], mx = fmax(mx, tl[e]), mn = fmin(mn, tl[e]);
        double mean = sum / E;
        for (int e = 0; e < E; e++)
            var += (tl[e] - mean) * (tl[e] - mean);
        if (mean <= 0) {
            fprintf(f, "%-6d %10.0f  (no training steps yet)\n", l, sum);
            continue;
        }
        fprintf(f, "%-6d %10.0f %8.3f %8.3f %8.3f ", l, sum, mx / mean, mn / mean, sqrt(var / E) / mean);
        for (int e = 0; e < E; e++)
            fprintf(f, "%s%.2f", e ? " " : " ", tl[e] / mean);
        fprintf(f, "\n");
    }
}

/* The generic init draws every matrix at GPT-2's std 0.02, chosen for GPT-2 small's
 * width 768, where a matrix's pre-activations after the norm have std 0.02 sqrt(768) =
 * 0.55. A SwiGLU expert's output is silu(W_g x) * (W_u x): quadratic in them. At C = 64,
 * 0.02 gives 0.16: the experts start near zero and learn slowly in function space (Adam
 * steps each weight ~lr whatever the gradient), so a small MoE stayed on the unigram
 * plateau, where every token's hidden state is alike and any router sends them all to
 * one expert (docs/MOE.md "Initialisation"). So below C = 768 the experts' input
 * matrices and the router keep GPT-2 small's pre-activation scale: std 0.02 sqrt(768/C).
 * The router's logits then spread ~0.55 across tokens (0.16 before), more than the bias
 * moves in a step. The fan-in std 1/sqrt(C) (pre-activations 1) fixed the small MoE too
 * but made the MoE demo (C = 128) end 0.085 higher. The normal draws are rescaled, so the
 * RNG stream and every other tensor are unchanged; output matrices keep the residual std. */
void model_moe_init_weights(fg_model *m)
{
    const fg_moe_config *mc = &m->cfg.moe;
    float f = moe_expert_init_std(m->cfg.d_model) / 0.02f;
    if (mc->n_expert <= 0 || f <= 1.0f)
        return;
    const fg_moe_role roles[3] = {FG_MOE_EXPERT_FC, FG_MOE_SHARED_FC, FG_MOE_ROUTER_W};
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (!model_is_moe_layer(m, l))
            continue;
        for (int i = 0; i < 3; i++) {
            size_t off = m->layer[l].moe[roles[i]];
            int nd, sh[4] = {0, 0, 0, 0};
            fg_moe_role_shape(mc, roles[i], &nd, sh);
            if (off == FG_NO_TENSOR || nd == 0) /* absent, or derived by share.c */
                continue;
            size_t numel = 1;
            for (int d = 0; d < nd; d++)
                numel *= (size_t)sh[d];
            for (size_t j = 0; j < numel; j++)
                m->params[off + j] *= f;
        }
    }
}

float moe_expert_init_std(int d_model)
{
    return d_model < 768 ? 0.02f * sqrtf(768.0f / (float)d_model) : 0.02f;
}
