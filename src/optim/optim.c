/* optim.c: AdamW over the flat buffers range by range (the fp32-moment update is the
 * kernels' fg_adamw_update, the bf16-moment one adamw_bf16.c / adamw_avx512.c), the
 * fused sweep (clipping factor + update + bf16 weight copy), global-norm clipping and
 * the warmup + cosine schedule. Leaves out ZeRO sharding and the adaptive batch-size
 * controller. */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/optim.h"
#include "optim_impl.h"

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
    if (cfg->moments != FG_ADAM_MOMENTS_FP32 && cfg->moments != FG_ADAM_MOMENTS_BF16)
        return fg_error(FG_ERR_INVALID, "optim: adam moments %d: expected 0 (fp32) or 1 (bf16)", cfg->moments);
    size_t np = n_params ? n_params : 1;
    if (cfg->moments == FG_ADAM_MOMENTS_BF16) { /* bf16 0x0000 is +0.0f */
        o->m16 = fg_calloc_lazy(np, sizeof(uint16_t));
        o->v16 = fg_calloc_lazy(np, sizeof(uint16_t));
    } else { /* lazy: a pipeline stage touches only its own spans (docs/DIST.md "Memory per rank") */
        o->m = fg_calloc_lazy(np, sizeof(float));
        o->v = fg_calloc_lazy(np, sizeof(float));
    }
    o->ranges = fg_malloc((n_ranges ? (size_t)n_ranges : 1) * sizeof *ranges);
    o->spans = fg_malloc((n_ranges ? (size_t)n_ranges : 1) * sizeof *ranges);
    if (!(o->m || o->m16) || !(o->v || o->v16) || !o->ranges || !o->spans) {
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
    fg_free_lazy(o->m);
    fg_free_lazy(o->v);
    fg_free_lazy(o->m16);
    fg_free_lazy(o->v16);
    fg_free(o->ranges);
    fg_free(o->spans);
    memset(o, 0, sizeof *o);
}

void fg_optim_step(fg_optim *o, float *params, const float *grads, float lr)
{
    fg_optim_step_fused(o, params, grads, lr, 1.0f, NULL);
}

/* fp32 moments, with a clipping factor or a bf16 copy to write, where the AdamW
 * kernel is not the avx512 one (whose operation order optim_adamw_f32m_avx512
 * repeats): the kernels' update chunk by chunk, each chunk's gradients scaled into a
 * stack buffer first and its params converted right after, while both are in cache.
 * Elementwise kernels and chunks of a multiple of 16 make this the same bits as the
 * separate passes; the per-chunk calls cost fork/join overhead this path can afford. */
static void step_f32_chunked(float *p, const float *g, float *m, float *v, uint16_t *pbf, size_t n, float lr,
                             const fg_adamw_config *c, float wd, int t, float coef)
{
    enum { CH = 8192 }; /* 32 KiB of scaled gradients on each thread's stack */
    size_t nchunk = (n + CH - 1) / CH;
#pragma omp parallel for schedule(static) if (nchunk > 4)
    for (size_t ch = 0; ch < nchunk; ch++) {
        size_t lo = ch * CH, len = lo + CH < n ? CH : n - lo;
        float gs[CH];
        const float *gc = g + lo;
        if (coef != 1.0f) {
            for (size_t i = 0; i < len; i++)
                gs[i] = gc[i] * coef; /* fg_scale's one rounding */
            gc = gs;
        }
        fg_adamw_update(p + lo, gc, m + lo, v + lo, len, lr, c->beta1, c->beta2, c->eps, wd, t);
        if (pbf)
            fg_cvt_f32_bf16(pbf + lo, p + lo, len);
    }
}

void fg_optim_step_fused(fg_optim *o, float *params, const float *grads, float lr, float grad_coef,
                         uint16_t *params_bf16)
{
    /* PyTorch's step counter starts at 1 for the first update's bias correction. */
    int t = (int)(o->t + 1);
    const fg_adamw_config *c = &o->cfg;
    /* the fused sweeps follow the kernels' choice of AdamW (whose avx512 arithmetic the
     * fp32 one repeats), so --kernels ref and FG_HW_DISABLE=avx512 reach the portable paths */
    int vec = !strcmp(fg_kernels_variant("adamw_update"), "avx512");
    for (int i = 0; i < o->n_ranges; i++) {
        const fg_optim_range *r = &o->ranges[i];
        if (r->frozen || r->numel == 0)
            continue;
        size_t off = r->offset;
        float rlr = r->lr_scale == 1.0f ? lr : lr * r->lr_scale; /* init made 0 into 1 */
        float wd = r->decay ? c->weight_decay : 0.0f;
        uint16_t *pbf = params_bf16 ? params_bf16 + off : NULL;
        optim_adamw_args a = {.lr = rlr,
                              .beta1 = c->beta1,
                              .beta2 = c->beta2,
                              .eps = c->eps,
                              .weight_decay = wd,
                              .ibc1 = (float)(1.0 / (1.0 - pow(c->beta1, t))),
                              .ibc2 = (float)(1.0 / (1.0 - pow(c->beta2, t))),
                              .grad_coef = grad_coef};
        if (o->m16)
            (vec ? optim_adamw_bf16m_avx512 : optim_adamw_bf16m_scalar)(params + off, grads + off, o->m16 + off,
                                                                        o->v16 + off, pbf, r->numel, &a);
        else if (grad_coef == 1.0f && !pbf) /* today's plain step: one kernel call */
            fg_adamw_update(params + off, grads + off, o->m + off, o->v + off, r->numel, rlr, c->beta1, c->beta2,
                            c->eps, wd, t);
        else if (vec)
            optim_adamw_f32m_avx512(params + off, grads + off, o->m + off, o->v + off, pbf, r->numel, &a);
        else
            step_f32_chunked(params + off, grads + off, o->m + off, o->v + off, pbf, r->numel, rlr, c, wd, t,
                             grad_coef);
    }
    if (params_bf16) { /* what no range updated: frozen tensors and gaps, converted as they are */
        size_t at = 0;
        for (int i = 0; i <= o->n_spans; i++) {
            size_t end = i < o->n_spans ? o->spans[i].offset : o->n_params;
            if (end > at)
                fg_cvt_f32_bf16(params_bf16 + at, params + at, end - at);
            if (i < o->n_spans)
                at = o->spans[i].offset + o->spans[i].numel;
        }
    }
    o->t++;
}

size_t fg_adam_moment_bytes(int moments)
{
    return moments == FG_ADAM_MOMENTS_BF16 ? 2 * sizeof(uint16_t) : 2 * sizeof(float);
}

fg_status fg_optim_moments_f32(fg_optim *o, float **m, float **v, float **scratch)
{
    *scratch = NULL;
    if (!o->m16) {
        *m = o->m;
        *v = o->v;
        return FG_OK;
    }
    size_t n = o->n_params ? o->n_params : 1;
    float *s = fg_malloc(2 * n * sizeof(float));
    if (!s)
        return fg_error(FG_ERR_NOMEM, "optim: no memory for the fp32 view of the bf16 moments (%zu bytes)",
                        2 * n * sizeof(float));
    fg_cvt_bf16_f32(s, o->m16, o->n_params);
    fg_cvt_bf16_f32(s + n, o->v16, o->n_params);
    *scratch = s;
    *m = s;
    *v = s + n;
    return FG_OK;
}

void fg_optim_moments_commit(fg_optim *o, const float *m, const float *v)
{
    if (!o->m16)
        return;
    fg_cvt_f32_bf16(o->m16, m, o->n_params);
    fg_cvt_f32_bf16(o->v16, v, o->n_params);
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
    float coef = fg_optim_clip_coef(norm, max_norm);
    if (coef != 1.0f) {
        for (int i = 0; i < o->n_spans; i++)
            fg_scale(grads + o->spans[i].offset, coef, o->spans[i].numel);
    }
    return norm;
}

float fg_optim_clip_coef(double norm, float max_norm)
{
    /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6) */
    if (max_norm > 0 && isfinite(norm) && norm > max_norm)
        return (float)(max_norm / (norm + 1e-6));
    return 1.0f;
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
