/* optim.c: AdamW over the flat buffers range by range (the update itself is the
 * kernels' fg_adamw_update), global-norm clipping and the warmup + cosine schedule.
 * Leaves out ZeRO sharding and the adaptive batch-size controller. */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/optim.h"

fg_adamw_config fg_adamw_config_default(void)
{
    fg_adamw_config c = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    return c;
}

fg_status fg_optim_init(fg_optim *o, size_t n_params, const fg_optim_range *ranges, int n_ranges,
                        const fg_adamw_config *cfg)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < n_ranges; i++) {
        const fg_optim_range *r = &ranges[i];
        if (r->offset > n_params || r->numel > n_params - r->offset)
            return fg_error(FG_ERR_INVALID, "optim: range %d [%zu, +%zu) outside the %zu parameters", i, r->offset,
                            r->numel, n_params);
        for (int j = 0; j < i; j++) {
            const fg_optim_range *q = &ranges[j];
            if (r->offset < q->offset + q->numel && q->offset < r->offset + r->numel)
                return fg_error(FG_ERR_INVALID, "optim: range %d [%zu, +%zu) overlaps range %d [%zu, +%zu)", i,
                                r->offset, r->numel, j, q->offset, q->numel);
        }
    }
    for (int i = 0; i < n_ranges; i++)
        if (!(ranges[i].lr_scale >= 0.0f) || !isfinite(ranges[i].lr_scale))
            return fg_error(FG_ERR_INVALID, "optim: range %d has lr_scale %g: must be >= 0 (0 = 1)", i,
                            (double)ranges[i].lr_scale);
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1 && cfg->eps > 0 &&
          cfg->weight_decay >= 0))
        return fg_error(FG_ERR_INVALID, "optim: bad AdamW settings beta1=%g beta2=%g eps=%g weight_decay=%g",
                        cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay);
    o->m = fg_calloc(n_params ? n_params : 1, sizeof(float));
    o->v = fg_calloc(n_params ? n_params : 1, sizeof(float));
    o->ranges = fg_malloc((n_ranges ? (size_t)n_ranges : 1) * sizeof *ranges);
    o->spans = fg_malloc((n_ranges ? (size_t)n_ranges : 1) * sizeof *ranges);
    if (!o->m || !o->v || !o->ranges || !o->spans) {
        fg_optim_free(o);
        return FG_ERR_NOMEM;
    }
    /* merge neighbours (in offset order) that are contiguous and alike */
    fg_optim_range *sorted = o->spans; /* scratch until the spans are built */
    if (n_ranges)
        memcpy(sorted, ranges, (size_t)n_ranges * sizeof *ranges);
    for (int i = 0; i < n_ranges; i++)
        if (sorted[i].lr_scale == 0.0f)
            sorted[i].lr_scale = 1.0f;
    for (int i = 1; i < n_ranges; i++) /* insertion sort: tensors usually come in order */
        for (int j = i; j > 0 && sorted[j - 1].offset > sorted[j].offset; j--) {
            fg_optim_range t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    for (int i = 0; i < n_ranges; i++) {
        fg_optim_range *last = o->n_ranges ? &o->ranges[o->n_ranges - 1] : NULL;
        if (last && last->offset + last->numel == sorted[i].offset && last->decay == sorted[i].decay &&
            last->frozen == sorted[i].frozen && last->lr_scale == sorted[i].lr_scale)
            last->numel += sorted[i].numel;
        else
            o->ranges[o->n_ranges++] = sorted[i];
    }
    for (int i = 0; i < o->n_ranges; i++) { /* ranges are sorted now; spans overwrite the scratch */
        const fg_optim_range *r = &o->ranges[i];
        if (r->frozen)
            continue;
        fg_optim_range *last = o->n_spans ? &o->spans[o->n_spans - 1] : NULL;
        if (last && last->offset + last->numel == r->offset)
            last->numel += r->numel;
        else
            o->spans[o->n_spans++] = (fg_optim_range){r->offset, r->numel, 0, 0, 0};
    }
    o->n_params = n_params;
    o->cfg = *cfg;
    return FG_OK;
}

void fg_optim_free(fg_optim *o)
{
    fg_free(o->m);
    fg_free(o->v);
    fg_free(o->ranges);
    fg_free(o->spans);
    memset(o, 0, sizeof *o);
}

void fg_optim_step(fg_optim *o, float *params, const float *grads, float lr)
{
    /* PyTorch's step counter starts at 1 for the first update's bias correction. */
    int t = (int)(o->t + 1);
    for (int i = 0; i < o->n_ranges; i++) {
        const fg_optim_range *r = &o->ranges[i];
        if (r->frozen || r->numel == 0)
            continue;
        size_t off = r->offset;
        float rlr = r->lr_scale == 1.0f ? lr : lr * r->lr_scale; /* init made 0 into 1 */
        fg_adamw_update(params + off, grads + off, o->m + off, o->v + off, r->numel, rlr, o->cfg.beta1, o->cfg.beta2,
                        o->cfg.eps, r->decay ? o->cfg.weight_decay : 0.0f, t);
    }
    o->t++;
}

double fg_optim_grad_norm(const fg_optim *o, const float *grads)
{
    double ss = 0;
    for (int i = 0; i < o->n_spans; i++)
        ss += fg_sumsq(grads + o->spans[i].offset, o->spans[i].numel);
    return sqrt(ss);
}

double fg_optim_clip(const fg_optim *o, float *grads, float max_norm)
{
    double norm = fg_optim_grad_norm(o, grads);
    if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
        /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6) */
        float coef = (float)(max_norm / (norm + 1e-6));
        for (int i = 0; i < o->n_spans; i++)
            fg_scale(grads + o->spans[i].offset, coef, o->spans[i].numel);
    }
    return norm;
}

float fg_lr_at(const fg_lr_schedule *s, long step)
{
    if (s->warmup > 0 && step < s->warmup)
        return s->lr * (float)(step + 1) / (float)s->warmup;
    long decay_steps = s->total - 1 - s->warmup;
    if (decay_steps <= 0)
        return s->lr; /* no room to decay: constant after warmup */
    if (step >= s->total - 1)
        return s->min_lr;
    const double pi = 3.14159265358979323846;
    double frac = (double)(step - s->warmup) / (double)decay_steps; /* 0 .. 1 */
    double coef = 0.5 * (1.0 + cos(pi * frac));
    return (float)(s->min_lr + coef * (s->lr - s->min_lr));
}
