/* bench_optim.c: the optimizer step of bf16 training, pass by pass against the fused
 * sweep, on n synthetic parameters (one decay range, clipping active): separate = norm +
 * clip + AdamW + bf16 conversion (the step before the fusion), fused fp32 = norm +
 * fg_optim_step_fused(coef, bf16 copy), fused bf16 = the same with bf16 Adam moments;
 * and fp32 training's clip + step against norm + fused(coef, no copy). Prints the median
 * wall ms of each and GB/s over the bytes docs/PRECISION.md counts per parameter (RFO
 * included). Run it on a quiet machine: the memory bus is the resource measured.
 * Usage: bench_optim [n_params (default 124475904: GPT-2 124M)] [--cputime] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "frugal/kernels.h"
#include "frugal/optim.h"

typedef struct ctx {
    size_t n;
    float *p, *g, *gc;
    uint16_t *bf;
    fg_optim o32, o16;
} ctx;

static void separate(void *arg)
{
    ctx *c = arg;
    memcpy(c->gc, c->g, c->n * sizeof(float));
    fg_optim_clip(&c->o32, c->gc, 1.0f);
    fg_optim_step(&c->o32, c->p, c->gc, 1e-6f);
    fg_cvt_f32_bf16(c->bf, c->p, c->n);
}

static void copy_only(void *arg)
{
    ctx *c = arg;
    memcpy(c->gc, c->g, c->n * sizeof(float));
}

static void fused32(void *arg)
{
    ctx *c = arg;
    memcpy(c->gc, c->g, c->n * sizeof(float));
    double norm = fg_optim_grad_norm(&c->o32, c->gc);
    fg_optim_step_fused(&c->o32, c->p, c->gc, 1e-6f, fg_optim_clip_coef(norm, 1.0f), c->bf);
}

static void fused16(void *arg)
{
    ctx *c = arg;
    memcpy(c->gc, c->g, c->n * sizeof(float));
    double norm = fg_optim_grad_norm(&c->o16, c->gc);
    fg_optim_step_fused(&c->o16, c->p, c->gc, 1e-6f, fg_optim_clip_coef(norm, 1.0f), c->bf);
}

static void fp32_old(void *arg)
{
    ctx *c = arg;
    memcpy(c->gc, c->g, c->n * sizeof(float));
    fg_optim_clip(&c->o32, c->gc, 1.0f);
    fg_optim_step(&c->o32, c->p, c->gc, 1e-6f);
}

static void fp32_fused(void *arg)
{
    ctx *c = arg;
    memcpy(c->gc, c->g, c->n * sizeof(float));
    double norm = fg_optim_grad_norm(&c->o32, c->gc);
    fg_optim_step_fused(&c->o32, c->p, c->gc, 1e-6f, fg_optim_clip_coef(norm, 1.0f), NULL);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 && argv[1][0] != '-' ? strtoull(argv[1], NULL, 10) : 124475904;
    int cputime = argc > 1 && !strcmp(argv[argc - 1], "--cputime");
    if (fg_kernels_init(NULL) != FG_OK) {
        fprintf(stderr, "bench_optim: %s\n", fg_last_error());
        return 1;
    }
    ctx c = {.n = n};
    c.p = fg_malloc(n * sizeof(float));
    c.g = fg_malloc(n * sizeof(float));
    c.gc = fg_malloc(n * sizeof(float));
    c.bf = fg_malloc(n * sizeof(uint16_t));
    fg_optim_range r = {0, n, 1, 0, 1};
    fg_adamw_config a = fg_adamw_config_default(), b = a;
    b.moments = FG_ADAM_MOMENTS_BF16;
    if (!c.p || !c.g || !c.gc || !c.bf || fg_optim_init(&c.o32, n, &r, 1, &a) != FG_OK ||
        fg_optim_init(&c.o16, n, &r, 1, &b) != FG_OK) {
        fprintf(stderr, "bench_optim: no memory for %zu parameters\n", n);
        return 1;
    }
    fg_rng rng;
    fg_rng_seed(&rng, 1);
    for (size_t i = 0; i < n; i++) /* norm ~ sqrt(n) * 0.01 >> 1: the clip is active */
        c.p[i] = 0.02f * fg_rng_normal(&rng), c.g[i] = 0.01f * fg_rng_normal(&rng);
    double tc = bench_median_time(copy_only, &c, 3.0, 7, cputime);
    struct {
        const char *name;
        void (*fn)(void *);
        double bytes; /* per parameter, docs/PRECISION.md "One sweep" */
    } rows[] = {{"bf16 step, separate passes (norm, clip, AdamW, convert)", separate, 48},
                {"bf16 step, fused, fp32 moments", fused32, 36},
                {"bf16 step, fused, bf16 moments", fused16, 28},
                {"fp32 step, separate (norm, clip, AdamW)", fp32_old, 40},
                {"fp32 step, fused (norm, AdamW with the clip factor)", fp32_fused, 32}};
    printf("bench_optim: %zu parameters, %d threads, adamw_update=%s cvt_f32_bf16=%s, %s time\n", n, fg_threads_get(),
           fg_kernels_variant("adamw_update"), fg_kernels_variant("cvt_f32_bf16"), cputime ? "CPU" : "wall");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        /* every variant starts by copying fresh gradients (the backward's writes); the
         * copy's own time, measured alone, is taken off */
        double t = bench_median_time(rows[i].fn, &c, 5.0, 7, cputime) - tc;
        printf("  %-55s %8.1f ms  %5.0f B/param  %6.1f GB/s\n", rows[i].name, 1e3 * t, rows[i].bytes,
               rows[i].bytes * (double)n / t / 1e9);
    }
    fg_optim_free(&c.o32);
    fg_optim_free(&c.o16);
    fg_free(c.p);
    fg_free(c.g);
    fg_free(c.gc);
    fg_free(c.bf);
    return 0;
}
