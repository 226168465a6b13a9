/* adaptive.c: adaptive batch size: decides when gradient accumulation doubles (the loss
 * variance rule or McCandlish et al.'s gradient noise scale), the LR multiplier that goes
 * with it, and the state a checkpoint keeps. Leaves out the training loop (train.c). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/train.h"

void fg_adapt_init(fg_adapt *a, const fg_train_config *c)
{
    memset(a, 0, sizeof *a);
    a->rule = c->batch_rule;
    a->lr_scaling = c->batch_lr_scaling;
    a->rows = c->batch_size;
    a->accum0 = a->accum = c->grad_accum;
    /* fixed: no room beyond grad_accum (the trainer sizes its token buffers by this) */
    a->accum_max =
        c->batch_rule != FG_BATCH_FIXED && c->batch_accum_max > c->grad_accum ? c->batch_accum_max : c->grad_accum;
    a->check_every = c->batch_check_every < 1                     ? 1
                     : c->batch_check_every > FG_ADAPT_WINDOW_MAX ? FG_ADAPT_WINDOW_MAX
                                                                  : c->batch_check_every;
    a->ratio = c->batch_ratio;
    a->ema = c->batch_ema;
    a->b_noise = NAN;
    a->noise = NAN;
}

double fg_adapt_sq_norm(const float *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return s;
}

/* Residual standard deviation of the window around its least-squares line, against the
 * drop the line predicts over the window: above 1 the window's progress is buried in
 * step-to-step noise, which a larger batch shrinks by sqrt(batch ratio). A window whose
 * line does not go down at all is all noise (+inf). */
static double loss_var_measure(const fg_adapt *a)
{
    int n = a->n_loss;
    double mx = (n - 1) / 2.0, my = 0;
    for (int i = 0; i < n; i++)
        my += a->loss[i];
    my /= n;
    double sxy = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        sxy += (i - mx) * (a->loss[i] - my);
        sxx += (i - mx) * (i - mx);
    }
    double slope = sxx > 0 ? sxy / sxx : 0;
    double rss = 0;
    for (int i = 0; i < n; i++) {
        double e = a->loss[i] - (my + slope * (i - mx));
        rss += e * e;
    }
    double sd = sqrt(rss / (n > 2 ? n - 2 : 1));
    double drop = -slope * n;
    return drop > 0 ? sd / drop : INFINITY;
}

/* McCandlish et al. 2018, appendix A.1: with |G_s|^2 of a batch of B_s rows and |G_b|^2
 * of B_b rows (both unbiased in expectation up to the noise term tr(Sigma)/B),
 *   |G|^2 ~ (B_b |G_b|^2 - B_s |G_s|^2) / (B_b - B_s),
 *   tr(Sigma) ~ (|G_s|^2 - |G_b|^2) / (1/B_s - 1/B_b);
 * each is noisy alone (either may come out negative), so their EMAs make the ratio. */
static void gns_update(fg_adapt *a, double small_sq, double big_sq)
{
    double bs = a->rows, bb = (double)a->rows * a->accum;
    if (!(bb > bs) || !isfinite(small_sq) || !isfinite(big_sq))
        return;
    double g2 = (bb * big_sq - bs * small_sq) / (bb - bs);
    double s = (small_sq - big_sq) / (1.0 / bs - 1.0 / bb);
    a->ema_g2 = a->ema_n ? a->ema * a->ema_g2 + (1 - a->ema) * g2 : g2;
    a->ema_s = a->ema_n ? a->ema * a->ema_s + (1 - a->ema) * s : s;
    a->ema_n++;
    a->b_noise = a->ema_g2 > 0 ? a->ema_s / a->ema_g2 : INFINITY;
}

int fg_adapt_observe(fg_adapt *a, double loss, double small_sq, double big_sq)
{
    if (a->rule == FG_BATCH_FIXED)
        return 0;
    a->observed++;
    if (a->rule == FG_BATCH_GNS)
        gns_update(a, small_sq, big_sq);
    else if (a->n_loss < FG_ADAPT_WINDOW_MAX)
        a->loss[a->n_loss++] = loss;
    if (a->observed % a->check_every != 0)
        return 0;
    if (a->rule == FG_BATCH_LOSS_VAR) {
        if (a->n_loss < a->check_every || a->n_loss < 3)
            return 0;
        a->noise = loss_var_measure(a);
        a->n_loss = 0; /* the next window starts fresh (at the new batch, if it grows) */
    } else {
        if (a->ema_n == 0)
            return 0;
        /* B_simple in rows against the rows of a step now */
        a->noise = a->b_noise / ((double)a->rows * a->accum);
    }
    if (!(a->noise > a->ratio) || a->accum * 2 > a->accum_max)
        return 0;
    a->accum *= 2;
    a->grows++;
    return 1;
}

float fg_adapt_lr_mult(const fg_adapt *a)
{
    double q = (double)a->accum / a->accum0;
    switch (a->lr_scaling) {
    case FG_BATCH_LR_SQRT: return (float)sqrt(q);
    case FG_BATCH_LR_LINEAR: return (float)q;
    default: return 1.0f;
    }
}

/* Doubles go out as JSON reals (17 significant digits: they read back exactly); an
 * infinity or NaN, which JSON lacks, as null. */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static double unnum(json_t *v, double none)
{
    return json_is_number(v) ? json_number_value(v) : none;
}

char *fg_adapt_save(const fg_adapt *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "accum", json_integer(a->accum));
    json_object_set_new(o, "observed", json_integer(a->observed));
    json_object_set_new(o, "grows", json_integer(a->grows));
    json_object_set_new(o, "ema_g2", num(a->ema_g2));
    json_object_set_new(o, "ema_s", num(a->ema_s));
    json_object_set_new(o, "ema_n", json_integer(a->ema_n));
    json_object_set_new(o, "b_noise", num(a->b_noise));
    json_object_set_new(o, "noise", num(a->noise));
    json_t *w = json_array();
    for (int i = 0; i < a->n_loss; i++)
        json_array_append_new(w, json_real(a->loss[i]));
    json_object_set_new(o, "loss_window", w);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *out = s ? fg_strdup(s) : NULL;
    free(s);
    return out;
}

fg_status fg_adapt_restore(fg_adapt *a, const char *json_text, const char *where)
{
    json_error_t err;
    json_t *o = json_loads(json_text, 0, &err);
    fg_status st = FG_OK;
    json_t *w = o ? json_object_get(o, "loss_window") : NULL;
    json_t *acc = o ? json_object_get(o, "accum") : NULL;
    if (!o || !json_is_integer(acc) || !json_is_array(w) || json_array_size(w) > FG_ADAPT_WINDOW_MAX) {
        st = fg_error(FG_ERR_FORMAT, "%s: adaptive batch state: missing or malformed (accum, loss_window)", where);
        goto out;
    }
    long accum = (long)json_integer_value(acc);
    if (accum < a->accum0 || accum > a->accum_max) {
        st = fg_error(FG_ERR_FORMAT, "%s: adaptive batch state: accum %ld outside [grad_accum %d, batch_accum_max %d]",
                      where, accum, a->accum0, a->accum_max);
        goto out;
    }
    a->accum = (int)accum;
    a->observed = (long)json_integer_value(json_object_get(o, "observed"));
    a->grows = (long)json_integer_value(json_object_get(o, "grows"));
    a->ema_g2 = unnum(json_object_get(o, "ema_g2"), 0);
    a->ema_s = unnum(json_object_get(o, "ema_s"), 0);
    a->ema_n = (long)json_integer_value(json_object_get(o, "ema_n"));
    a->b_noise = unnum(json_object_get(o, "b_noise"), a->ema_n ? INFINITY : NAN);
    a->noise = unnum(json_object_get(o, "noise"), NAN);
    a->n_loss = (int)json_array_size(w);
    for (int i = 0; i < a->n_loss; i++)
        a->loss[i] = json_number_value(json_array_get(w, (size_t)i));
out:
    json_decref(o);
    return st;
}
