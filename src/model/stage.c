/* stage.c: a pipeline stage's view of the model: forward and backward over a contiguous
 * range of layers, taking and returning the residual stream (and its gradient), built
 * from model.c's per-layer pieces so a stage computes exactly what the whole model does.
 */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "model_impl.h"

static fg_status check_range(const fg_model *m, const char *fn, int l0, int l1)
{
    if (l0 < 0 || l1 > m->cfg.n_layer || l0 >= l1)
        return fg_error(FG_ERR_INVALID, "%s: layers [%d, %d) are not a non-empty range of the model's %d", fn, l0, l1,
                        m->cfg.n_layer);
    /* the bf16 / fp8 forward (lowp.c) keeps no per-layer residual stream to hand over */
    if (m->lp)
        return fg_error(FG_ERR_INVALID, "%s: pipeline stages run fp32 models only (this one is %s)", fn,
                        m->cfg.precision == FG_PRECISION_BF16 ? "bf16" : "fp8");
    /* the MTP modules (mtp.c) read the embedding and the last layer's output together */
    if (m->cfg.mtp_depth > 0)
        return fg_error(FG_ERR_INVALID, "%s: multi-token prediction (mtp_depth %d) is not built for stages", fn,
                        m->cfg.mtp_depth);
    return FG_OK;
}

fg_status fg_model_forward_range(fg_model *m, int l0, int l1, const int32_t *inputs, const int32_t *targets,
                                 const float *x, int B, int T, float *y, float *loss)
{
    const char *fn = "fg_model_forward_range";
    fg_status st = check_range(m, fn, l0, l1);
    if (st != FG_OK)
        return st;
    const fg_model_config *c = &m->cfg;
    const int first = l0 == 0, last = l1 == c->n_layer;
    if (B < 1 || T < 1 || B > m->B || T > m->T || (size_t)B * (size_t)T > (size_t)m->B * (size_t)m->T)
        return fg_error(FG_ERR_INVALID, "%s: B = %d, T = %d exceed the capacity B = %d, T = %d", fn, B, T, m->B, m->T);
    if ((first && !inputs) || (!first && !x) || (last && !targets) || (!last && !y))
        return fg_error(FG_ERR_INVALID, "%s: layers [%d, %d) need %s", fn, l0, l1,
                        first && !inputs   ? "inputs (the first stage embeds them)"
                        : !first && !x     ? "x (the previous stage's output)"
                        : last && !targets ? "targets (the last stage computes the loss)"
                                           : "y (where the stage's output goes)");
    int N = B * T, C = c->d_model, V = c->vocab_size, S = fg_model_tp_seq_split(m);
    if (N % S != 0)
        return fg_error(FG_ERR_INVALID, "%s: sequence parallel over %d ranks: B*T = %d tokens do not split evenly", fn,
                        S, N);
    for (int i = 0; i < N; i++) {
        if (first && (inputs[i] < 0 || inputs[i] >= V))
            return fg_error(FG_ERR_INVALID, "%s: inputs[%d] = %d is outside the vocabulary [0, %d)", fn, i, inputs[i],
                            V);
        if (last && targets[i] >= V)
            return fg_error(FG_ERR_INVALID, "%s: targets[%d] = %d is outside the vocabulary [0, %d)", fn, i, targets[i],
                            V);
    }
    m->fwd_done = 0;
    m->cur_B = B;
    m->cur_T = T;
    m->has_targets = 1; /* a stage always trains: the backward's check is the caller's order */
    if (first)
        memcpy(m->inputs, inputs, (size_t)N * sizeof(int32_t));
    if (last) {
        /* the head's state changes only with the last range's forward: an interleaved
         * pipeline runs other chunks' forwards between it and its backward */
        m->n_counted = 0;
        memcpy(m->targets, targets, (size_t)N * sizeof(int32_t));
        for (int i = 0; i < N; i++)
            m->n_counted += targets[i] >= 0;
    }
    m->prof_dir = 0;
    m->prof_calls[0] += m->prof_on;
    model_share_refresh(m); /* FFN sharing: derived weights from the current params (all of them: cheap) */
    const float *res = x;
    if (first) {
        if (m->tp)
            model_tp_embed_forward(m, N, T);
        else
            MODEL_PROF(m, OP_EMBED,
                       fg_embedding_forward(m->encoded, m->inputs, m->params + m->wte, model_p(m, m->wpe), N, T, C));
        res = m->encoded;
    }
    for (int l = l0; l < l1; l++) {
        if (m->tp)
            model_tp_layer_forward(m, l, res, B, T);
        else
            model_layer_forward(m, l, res, B, T);
        res = m->la[l].res3;
    }
    float l = 0.0f;
    if (last) {
        st = m->tp ? model_tp_head_forward(m, res, targets, N, &l) : model_head_forward(m, res, targets, N, &l);
        if (st != FG_OK)
            return st;
    } else {
        memcpy(y, res, (size_t)(N / S) * (size_t)C * sizeof(float)); /* sequence parallel: this rank's rows */
    }
    if (loss) {
        /* MoE balance losses of this stage's layers only (the head's forward added all the
         * model's, but only the layers of [l0, l1) ran here): the stages' sum is the loss */
        float aux = 0.0f;
        for (int k = l0; k < l1 && m->moe; k++)
            if (model_is_moe_layer(m, k))
                aux += m->moe[k].stats.aux_loss;
        *loss = last ? l - model_moe_aux_loss(m) + aux : aux;
    }
    if (m->tp && (st = model_tp_status(m)) != FG_OK)
        return st;
    if ((st = model_moe_ep_status(m)) != FG_OK) /* an expert exchange that failed */
        return st;
    m->fwd_done = 1;
    return FG_OK;
}

fg_status fg_model_backward_range(fg_model *m, int l0, int l1, const float *x, const float *dy, float *dx,
                                  float loss_scale)
{
    const char *fn = "fg_model_backward_range";
    fg_status st = check_range(m, fn, l0, l1);
    if (st != FG_OK)
        return st;
    const fg_model_config *c = &m->cfg;
    const int first = l0 == 0, last = l1 == c->n_layer;
    if (!m->fwd_done)
        return fg_error(FG_ERR_INVALID, "%s: no successful forward to backpropagate", fn);
    if ((!first && (!x || !dx)) || (!last && !dy))
        return fg_error(FG_ERR_INVALID, "%s: layers [%d, %d) need %s", fn, l0, l1,
                        !first && !x ? "x (the forward's input)"
                        : !first     ? "dx (where the input's gradient goes)"
                                     : "dy (the next stage's gradient)");
    int B = m->cur_B, T = m->cur_T, N = B * T, C = c->d_model;
    size_t NC = (size_t)N * C, NsC = NC / (size_t)fg_model_tp_seq_split(m); /* the stream's rows here */
    m->moe_loss_scale = loss_scale;
    m->prof_dir = 1;
    m->prof_calls[1] += m->prof_on;
    model_share_zero_grads(m);
    if (last) {
        if (m->n_counted > 0 && m->tp)
            model_tp_head_backward(m, m->la[l1 - 1].res3, loss_scale);
        else if (m->n_counted > 0)
            model_head_backward(m, m->la[l1 - 1].res3, loss_scale);
        else /* every target ignored: the mean loss is the constant 0 */
            memset(m->dres, 0, NC * sizeof(float));
    } else {
        memcpy(m->dres, dy, NsC * sizeof(float));
    }
    for (int l = l1 - 1; l >= l0; l--) {
        const float *res = l > l0 ? m->la[l - 1].res3 : first ? m->encoded : x;
        if (m->tp)
            model_tp_layer_backward(m, l, res, B, T);
        else
            model_layer_backward(m, l, res, B, T);
        model_share_fold(m, l); /* FFN sharing: this layer's FFN grads to U, V, a and its source */
        if (m->grad_hook)
            m->grad_hook(m->grad_hook_ctx, l);
    }
    if (first && m->tp)
        model_tp_embed_backward(m, N, T);
    else if (first)
        MODEL_PROF(m, OP_EMBED,
                   fg_embedding_backward(m->grads + m->wte, model_g(m, m->wpe), m->dres, m->inputs, N, T, C));
    else
        memcpy(dx, m->dres, NsC * sizeof(float));
    if (m->tp)
        model_tp_note_resident(m);
    st = m->tp ? model_tp_status(m) : FG_OK;
    return st == FG_OK ? model_moe_ep_status(m) : st;
}

/* ---- activation slots: one set of the stage's saved activations per micro-batch in
 * flight, so 1F1B needs no forward recomputation (dense layers; a MoE layer's caches
 * live in its fg_moe_layer, with its load counters, and are not duplicated) ---- */
struct model_slots {
    int l0, l1, n;
    float *mem;
    int32_t *imem;          /* the extra sets' tokens */
    model_layer_acts *sets; /* [n][l1 - l0]; set 0 is the model's own */
    float **enc;            /* [n] embedding outputs (stage 0) */
    int32_t **inp;          /* [n] the tokens the embedding backward reads */
};

static void slots_free(fg_model *m)
{
    struct model_slots *s = m->slots;
    if (!s)
        return;
    if (s->sets) { /* the model's own buffers back in place */
        for (int l = s->l0; l < s->l1; l++)
            m->la[l] = s->sets[l - s->l0];
        m->encoded = s->enc[0];
        m->inputs = s->inp[0];
    }
    fg_free(s->mem);
    fg_free(s->imem);
    fg_free(s->sets);
    fg_free(s->enc);
    fg_free(s->inp);
    fg_free(s);
    m->slots = NULL;
}

void model_stage_free(fg_model *m)
{
    slots_free(m);
    model_tp_free(m);
}

fg_status fg_model_stage_slots(fg_model *m, int l0, int l1, int n)
{
    slots_free(m);
    fg_status st = check_range(m, "fg_model_stage_slots", l0, l1);
    if (st != FG_OK || n <= 1)
        return st;
    for (int l = l0; l < l1; l++)
        if (model_is_moe_layer(m, l))
            return fg_error(FG_ERR_INVALID, "fg_model_stage_slots: layer %d is MoE (its caches are not duplicated)", l);
    const fg_model_config *c = &m->cfg;
    size_t N = (size_t)m->B * (size_t)m->T, C = (size_t)c->d_model, NH = (size_t)c->n_head;
    size_t Fin = (size_t)m->Fin, F = (size_t)m->F, nl = (size_t)(l1 - l0), ns = (size_t)n;
    const size_t sizes[13] = {N * C, N, N, N * 3 * C, N * C, N * NH, N * C, N * C, N, N, N * Fin, N * F, N * C};
    size_t per_layer = 0;
    for (int i = 0; i < 13; i++)
        per_layer += (sizes[i] + 15) / 16 * 16;
    size_t per_set = nl * per_layer + (N * C + 15) / 16 * 16; /* + the embedding output */
    struct model_slots *s = fg_calloc(1, sizeof *s);
    if (!s)
        return fg_error(FG_ERR_NOMEM, "fg_model_stage_slots: out of memory");
    m->slots = s;
    s->l0 = l0, s->l1 = l1, s->n = n;
    s->mem = fg_calloc((ns - 1) * per_set, sizeof(float));
    s->imem = fg_calloc((ns - 1) * N, sizeof(int32_t));
    model_layer_acts *sets = fg_calloc(ns * nl, sizeof *sets);
    s->enc = fg_calloc(ns, sizeof *s->enc);
    s->inp = fg_calloc(ns, sizeof *s->inp);
    if (!s->mem || !s->imem || !sets || !s->enc || !s->inp) {
        fg_free(sets);
        slots_free(m);
        return fg_error(FG_ERR_NOMEM, "fg_model_stage_slots: out of memory for %d sets of %zu floats", n - 1, per_set);
    }
    for (size_t i = 0; i < nl; i++)
        sets[i] = m->la[l0 + (int)i];
    s->enc[0] = m->encoded;
    s->inp[0] = m->inputs;
    float *p = s->mem;
    for (size_t k = 1; k < ns; k++) {
        for (size_t i = 0; i < nl; i++) {
            model_layer_acts *a = &sets[k * nl + i];
            float **f[13] = {&a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv,     &a->atty,        &a->lse, &a->res2,
                             &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->ffn.fch, &a->ffn.fch_act, &a->res3};
            for (int j = 0; j < 13; j++) {
                *f[j] = p;
                p += (sizes[j] + 15) / 16 * 16;
            }
        }
        s->enc[k] = p;
        p += (N * C + 15) / 16 * 16;
        s->inp[k] = s->imem + (k - 1) * N;
    }
    s->sets = sets;
    return FG_OK;
}

void fg_model_stage_slot(fg_model *m, int k)
{
    struct model_slots *s = m->slots;
    if (!s || k < 0 || k >= s->n)
        return;
    int nl = s->l1 - s->l0;
    for (int i = 0; i < nl; i++)
        m->la[s->l0 + i] = s->sets[(size_t)k * nl + i];
    m->encoded = s->enc[k];
    m->inputs = s->inp[k];
}
