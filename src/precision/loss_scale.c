/* loss_scale.c: the dynamic loss scaler (PyTorch GradScaler's update rule with
 * Megatron-LM's hysteresis and min_scale), the inf/nan check and the unscale that feed
 * it. Leaves out the per-optimizer state machine of GradScaler (one optimizer here). */
#include <math.h>
#include <string.h>

#include "frugal/precision.h"

fg_loss_scaler_config fg_loss_scaler_config_default(void)
{
    fg_loss_scaler_config c = {.init_scale = 65536.0f,
                               .growth_factor = 2.0,
                               .backoff_factor = 0.5,
                               .growth_interval = 2000,
                               .hysteresis = 1,
                               .min_scale = 0.0f};
    return c;
}

fg_status fg_loss_scaler_config_validate(const fg_loss_scaler_config *c)
{
    if (!(c->init_scale > 0.0f) || !isfinite(c->init_scale))
        return fg_error(FG_ERR_INVALID, "loss scaler: init_scale %g: must be finite and > 0", (double)c->init_scale);
    if (!(c->growth_factor > 1.0) || !isfinite(c->growth_factor))
        return fg_error(FG_ERR_INVALID, "loss scaler: growth_factor %g: must be finite and > 1", c->growth_factor);
    if (!(c->backoff_factor > 0.0 && c->backoff_factor < 1.0))
        return fg_error(FG_ERR_INVALID, "loss scaler: backoff_factor %g: must be in (0, 1)", c->backoff_factor);
    if (c->growth_interval < 1)
        return fg_error(FG_ERR_INVALID, "loss scaler: growth_interval %d: must be >= 1", c->growth_interval);
    if (c->hysteresis < 1)
        return fg_error(FG_ERR_INVALID, "loss scaler: hysteresis %d: must be >= 1", c->hysteresis);
    if (!(c->min_scale >= 0.0f && c->min_scale <= c->init_scale))
        return fg_error(FG_ERR_INVALID, "loss scaler: min_scale %g: must be in [0, init_scale %g]",
                        (double)c->min_scale, (double)c->init_scale);
    return FG_OK;
}

fg_status fg_loss_scaler_init(fg_loss_scaler *s, const fg_loss_scaler_config *cfg)
{
    fg_loss_scaler_config c = cfg ? *cfg : fg_loss_scaler_config_default();
    fg_status st = fg_loss_scaler_config_validate(&c);
    if (st != FG_OK)
        return st;
    memset(s, 0, sizeof *s);
    s->cfg = c;
    s->scale = c.init_scale;
    s->hysteresis_tracker = c.hysteresis;
    return FG_OK;
}

bool fg_loss_scaler_update(fg_loss_scaler *s, bool found_inf)
{
    s->steps++;
    if (found_inf) {
        s->skipped_steps++;
        s->growth_tracker = 0;
        if (--s->hysteresis_tracker <= 0) {
            /* PyTorch multiplies the fp32 scale by the double factor and stores fp32. */
            float backed = (float)((double)s->scale * s->cfg.backoff_factor);
            s->scale = backed > s->cfg.min_scale ? backed : s->cfg.min_scale;
            s->backoffs++;
        }
        return true;
    }
    if (++s->growth_tracker == s->cfg.growth_interval) {
        s->growth_tracker = 0;
        s->hysteresis_tracker = s->cfg.hysteresis;
        float grown = (float)((double)s->scale * s->cfg.growth_factor);
        if (isfinite(grown)) { /* torch._amp_update_scale_ keeps the scale rather than reach inf */
            s->scale = grown;
            s->growths++;
        }
    }
    return false;
}

float fg_loss_scaler_inv_scale(const fg_loss_scaler *s)
{
    return (float)(1.0 / (double)s->scale);
}

/* Exponent all ones: inf or NaN, read from the bits so -ffast-math cannot fold it away. */
static int bad(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

enum { PARALLEL_MIN = 1 << 16 };

bool fg_nonfinite(const float *x, size_t n)
{
    int any = 0;
#pragma omp parallel for reduction(| : any) schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++)
        any |= bad(x[i]);
    return any != 0;
}

void fg_grad_unscale(float *x, size_t n, float inv_scale, bool *found_inf)
{
    int any = 0;
    if (inv_scale == 1.0f) {
        any = fg_nonfinite(x, n);
    } else {
#pragma omp parallel for reduction(| : any) schedule(static) if (n >= PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) {
            any |= bad(x[i]);
            x[i] *= inv_scale;
        }
    }
    if (any)
        *found_inf = true;
}
