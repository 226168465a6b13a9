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
    int N = B * T, C = c->d_model, V = c->vocab_size;
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
    m->n_counted = 0;
    if (first)
        memcpy(m->inputs, inputs, (size_t)N * sizeof(int32_t));
    if (last) {
        memcpy(m->targets, targets, (size_t)N * sizeof(int32_t));
        for (int i = 0; i < N; i++)
            m->n_counted += targets[i] >= 0;
    }
    m->prof_dir = 0;
    m->prof_calls[0] += m->prof_on;
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
        memcpy(y, res, (size_t)N * (size_t)C * sizeof(float));
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
    size_t NC = (size_t)N * C;
    m->moe_loss_scale = loss_scale;
    m->prof_dir = 1;
    m->prof_calls[1] += m->prof_on;
    if (last) {
        if (m->n_counted > 0 && m->tp)
            model_tp_head_backward(m, m->la[l1 - 1].res3, loss_scale);
        else if (m->n_counted > 0)
            model_head_backward(m, m->la[l1 - 1].res3, loss_scale);
        else /* every target ignored: the mean loss is the constant 0 */
            memset(m->dres, 0, NC * sizeof(float));
    } else {
        memcpy(m->dres, dy, NC * sizeof(float));
    }
    for (int l = l1 - 1; l >= l0; l--) {
        const float *res = l > l0 ? m->la[l - 1].res3 : first ? m->encoded : x;
        if (m->tp)
            model_tp_layer_backward(m, l, res, B, T);
        else
            model_layer_backward(m, l, res, B, T);
        if (m->grad_hook)
            m->grad_hook(m->grad_hook_ctx, l);
    }
    if (first && m->tp)
        model_tp_embed_backward(m, N, T);
    else if (first)
        MODEL_PROF(m, OP_EMBED,
                   fg_embedding_backward(m->grads + m->wte, model_g(m, m->wpe), m->dres, m->inputs, N, T, C));
    else
        memcpy(dx, m->dres, NC * sizeof(float));
    return m->tp ? model_tp_status(m) : FG_OK;
}
