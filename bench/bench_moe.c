/* bench_moe.c: MoE FFN block forward+backward time against a dense SwiGLU FFN with the
 * same active hidden size ((S+K)*H), and the two ways of running experts (side by side
 * on threads, or one after another with threaded GEMMs), all in one run, as ratios.
 * Usage: bench_moe [C] [E] [K] [S] [H] [tokens] [iters]   (defaults 128 64 2 1 64 2048 10)
 * Leaves out attention and the rest of the model: see bench/bench_moe.sh for training. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frugal/kernels.h"
#include "frugal/moe.h"

/* Process CPU seconds: on a shared machine the stable figure with one thread (wall
 * time counts other people's jobs; with 2 threads CPU time also counts spinning). */
static double cpu_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Times one call of fn as min over iterations of wall and of CPU time. */
typedef struct timing {
    double wall, cpu;
} timing;
static void timing_add(timing *best, double w0, double c0)
{
    double w = fg_time_sec() - w0, c = cpu_sec() - c0;
    if (w < best->wall)
        best->wall = w;
    if (c < best->cpu)
        best->cpu = c;
}

static float *randbuf(fg_rng *r, size_t n, float std)
{
    float *p = fg_malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = std * fg_rng_normal(r);
    return p;
}

/* Dense SwiGLU FFN: out = (silu(x Wg^T) * x Wu^T) Wd^T with [gate|up] fused, fwd + bwd. */
static timing time_dense(const float *x, const float *dout, int n, int C, int F, int iters, fg_rng *r)
{
    float *fc = randbuf(r, (size_t)2 * F * C, 0.02f), *proj = randbuf(r, (size_t)C * F, 0.02f);
    float *dfc = fg_calloc((size_t)2 * F * C, 4), *dproj = fg_calloc((size_t)C * F, 4);
    float *h = fg_malloc((size_t)n * 2 * F * 4), *a = fg_malloc((size_t)n * F * 4), *out = fg_malloc((size_t)n * C * 4);
    float *dh = fg_malloc((size_t)n * 2 * F * 4), *da = fg_malloc((size_t)n * F * 4),
          *dx = fg_malloc((size_t)n * C * 4);
    timing best = {1e30, 1e30};
    for (int it = 0; it < iters + 1; it++) {
        double t0 = fg_time_sec(), c0 = cpu_sec();
        fg_matmul_forward(h, x, fc, NULL, n, C, 2 * F);
        fg_swiglu_forward(a, h, n, F);
        fg_matmul_forward(out, a, proj, NULL, n, F, C);
        memset(da, 0, (size_t)n * F * 4);
        memset(dh, 0, (size_t)n * 2 * F * 4);
        memset(dx, 0, (size_t)n * C * 4);
        fg_matmul_backward(da, dproj, NULL, dout, a, proj, n, F, C);
        fg_swiglu_backward(dh, da, h, n, F);
        fg_matmul_backward(dx, dfc, NULL, dh, x, fc, n, C, 2 * F);
        if (it > 0) /* the first iteration warms caches and threads */
            timing_add(&best, t0, c0);
    }
    fg_free(fc), fg_free(proj), fg_free(dfc), fg_free(dproj), fg_free(h), fg_free(a), fg_free(out);
    fg_free(dh), fg_free(da), fg_free(dx);
    return best;
}

static timing time_moe(const fg_moe_config *mc, const float *x, const float *dout, int n, int iters, fg_rng *r,
                       float *lmm)
{
    int E = mc->n_expert, C = mc->d_model, H = mc->d_expert, SH = mc->n_shared_expert * H;
    fg_moe_weights w = {0}, dw = {0};
    w.router_w = randbuf(r, (size_t)E * C, 0.02f);
    w.router_bias = fg_calloc((size_t)E, 4);
    w.expert_fc = randbuf(r, (size_t)E * 2 * H * C, 0.02f);
    w.expert_proj = randbuf(r, (size_t)E * C * H, 0.02f);
    dw.router_w = fg_calloc((size_t)E * C, 4);
    dw.expert_fc = fg_calloc((size_t)E * 2 * H * C, 4);
    dw.expert_proj = fg_calloc((size_t)E * C * H, 4);
    if (SH) {
        w.shared_fc = randbuf(r, (size_t)2 * SH * C, 0.02f);
        w.shared_proj = randbuf(r, (size_t)C * SH, 0.02f);
        dw.shared_fc = fg_calloc((size_t)2 * SH * C, 4);
        dw.shared_proj = fg_calloc((size_t)C * SH, 4);
    }
    fg_moe_layer L;
    fg_moe_scratch S;
    if (fg_moe_layer_init(&L, mc, n) != FG_OK || fg_moe_scratch_init(&S, mc, n) != FG_OK) {
        fprintf(stderr, "%s\n", fg_last_error());
        exit(1);
    }
    float *out = fg_malloc((size_t)n * C * 4), *dx = fg_malloc((size_t)n * C * 4);
    timing best = {1e30, 1e30};
    for (int it = 0; it < iters + 1; it++) {
        double t0 = fg_time_sec(), c0 = cpu_sec();
        fg_moe_forward(&L, out, x, &w, 1, n);
        memset(dx, 0, (size_t)n * C * 4);
        fg_moe_backward(&L, &S, dx, &dw, dout, x, &w, 1.0f);
        if (it > 0)
            timing_add(&best, t0, c0);
    }
    *lmm = L.stats.load_max_over_mean;
    fg_moe_layer_free(&L);
    fg_moe_scratch_free(&S);
    fg_free(out), fg_free(dx);
    fg_free(w.router_w), fg_free(w.router_bias), fg_free(w.expert_fc), fg_free(w.expert_proj);
    fg_free(w.shared_fc), fg_free(w.shared_proj);
    fg_free(dw.router_w), fg_free(dw.expert_fc), fg_free(dw.expert_proj), fg_free(dw.shared_fc),
        fg_free(dw.shared_proj);
    return best;
}

int main(int argc, char **argv)
{
    int C = argc > 1 ? atoi(argv[1]) : 128, E = argc > 2 ? atoi(argv[2]) : 64, K = argc > 3 ? atoi(argv[3]) : 2;
    int S = argc > 4 ? atoi(argv[4]) : 1, H = argc > 5 ? atoi(argv[5]) : 64, n = argc > 6 ? atoi(argv[6]) : 2048;
    int iters = argc > 7 ? atoi(argv[7]) : 10;
    if (fg_kernels_init(NULL) != FG_OK) {
        fprintf(stderr, "%s\n", fg_last_error());
        return 1;
    }
    fg_moe_config mc = {.d_model = C,
                        .n_expert = E,
                        .n_expert_active = K,
                        .n_shared_expert = S,
                        .d_expert = H,
                        .route_scale = 1.0f,
                        .router_logit_scale = 1.0f,
                        .balance = FG_BALANCE_BIAS,
                        .balance_window = 1};
    if (fg_moe_config_validate(&mc) != FG_OK) {
        fprintf(stderr, "%s\n", fg_last_error());
        return 1;
    }
    fg_rng r;
    fg_rng_seed(&r, 1);
    float *x = randbuf(&r, (size_t)n * C, 1.0f), *dout = randbuf(&r, (size_t)n * C, 1.0f);
    int F = (S + K) * H;
    /* training FLOPs of the active FFN: 6 per multiply-add of the three weight matrices */
    double flops = 6.0 * n * 3.0 * C * F;
    printf("bench_moe: C=%d E=%d K=%d S=%d H=%d tokens=%d threads=%d matmul=%s\n", C, E, K, S, H, n, fg_threads_get(),
           fg_kernels_variant("matmul"));
    timing td = time_dense(x, dout, n, C, F, iters, &r);
    printf("  dense SwiGLU d_ff=%-4d     fwd+bwd wall %8.3f ms cpu %8.3f ms  %6.1f GFLOP/s (wall)\n", F, td.wall * 1e3,
           td.cpu * 1e3, flops / td.wall * 1e-9);
    const fg_moe_par modes[] = {FG_MOE_PAR_EXPERTS, FG_MOE_PAR_GEMM, FG_MOE_PAR_AUTO};
    const char *labels[] = {"MoE, experts on threads ", "MoE, threaded GEMMs     ", "MoE, auto choice        "};
    for (int m = 0; m < 3; m++) {
        mc.parallel = modes[m];
        float lmm = 0;
        timing tm = time_moe(&mc, x, dout, n, iters, &r, &lmm);
        printf("  %s fwd+bwd wall %8.3f ms cpu %8.3f ms  %6.1f GFLOP/s  MoE/dense wall %.2fx cpu %.2fx (load "
               "max/mean %.2f)\n",
               labels[m], tm.wall * 1e3, tm.cpu * 1e3, flops / tm.wall * 1e-9, tm.wall / td.wall, tm.cpu / td.cpu,
               (double)lmm);
    }
    fg_free(x), fg_free(dout);
    return 0;
}
