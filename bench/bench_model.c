/* bench_model.c: one training step (forward + backward) of a dense model, default GPT-2
 * 124M (L12 C768 NH12 Vp50304) at B=4 T=64: ms per forward / backward, the per-op
 * breakdown (fg_model_profile), achieved GFLOP/s with llm.c's 6N + 6LCT count, and the
 * ratio to the sgemm GFLOP/s of the model's own largest matmul shapes measured in the
 * same run. Optimiser not included (that is src/optim's).
 *
 *   build/bench_model [--layout gpt2|llama] [--B 4] [--T 64] [--L 12] [--C 768] [--NH 12]
 *                     [--V 50257] [--steps 5] [--kernels auto|ref]
 * Threads: OMP_NUM_THREADS (default all cores). Medians over the timed steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof x[0], cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Median GFLOP/s of C[M,N] = A[M,K] @ B[N,K]^T (the forward of a linear layer). */
static double sgemm_gflops(int M, int N, int K)
{
    float *A = fg_calloc((size_t)M * K, 4), *B = fg_calloc((size_t)N * K, 4), *C = fg_calloc((size_t)M * N, 4);
    if (!A || !B || !C) {
        fg_free(A);
        fg_free(B);
        fg_free(C);
        return 0.0;
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        A[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        B[i] = (float)(i % 5) * 0.01f;
    double t[7];
    fg_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    for (int r = 0; r < 7; r++) {
        double a = fg_time_sec();
        fg_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        t[r] = fg_time_sec() - a;
    }
    fg_free(A);
    fg_free(B);
    fg_free(C);
    return 2.0 * M * N * (double)K / median(t, 7) * 1e-9;
}

int main(int argc, char **argv)
{
    fg_model_config cfg;
    fg_layout layout = FG_LAYOUT_GPT2;
    int B = 4, T = 64, L = 12, C = 768, NH = 12, V = 50257, steps = 5;
    const char *kern = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--layout"))
            layout = !strcmp(v, "llama") ? FG_LAYOUT_LLAMA : FG_LAYOUT_GPT2;
        else if (!strcmp(k, "--B"))
            B = atoi(v);
        else if (!strcmp(k, "--T"))
            T = atoi(v);
        else if (!strcmp(k, "--L"))
            L = atoi(v);
        else if (!strcmp(k, "--C"))
            C = atoi(v);
        else if (!strcmp(k, "--NH"))
            NH = atoi(v);
        else if (!strcmp(k, "--V"))
            V = atoi(v);
        else if (!strcmp(k, "--steps"))
            steps = atoi(v);
        else if (!strcmp(k, "--kernels"))
            kern = v;
        else {
            fprintf(stderr, "unknown option %s\n", k);
            return 2;
        }
    }
    if (steps < 1 || steps > 100)
        steps = 5;
    if (fg_kernels_init(kern) != FG_OK) {
        fprintf(stderr, "%s\n", fg_last_error());
        return 1;
    }
    fg_model_config_default(&cfg, layout);
    cfg.vocab_size = V;
    cfg.max_seq_len = T > 1024 ? T : 1024;
    cfg.n_layer = L;
    cfg.n_head = NH;
    cfg.d_model = C;
    fg_model *m = fg_model_new(&cfg, B, T);
    if (!m) {
        fprintf(stderr, "%s\n", fg_last_error());
        return 1;
    }
    fg_model_init_weights(m, 1);
    const fg_model_config *rc = fg_model_get_config(m);
    int32_t *in = malloc(sizeof(int32_t) * (size_t)B * T), *tg = malloc(sizeof(int32_t) * (size_t)B * T);
    fg_rng r;
    fg_rng_seed(&r, 7);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)fg_rng_below(&r, (uint32_t)V);
        tg[i] = (int32_t)fg_rng_below(&r, (uint32_t)V);
    }
    printf("model: %s L%d C%d NH%d V%d Vp%d d_ff %d, %.1fM params, B=%d T=%d, %d threads, matmul kernel %s\n",
           layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama", L, C, NH, V, rc->padded_vocab, rc->d_ff,
           fg_model_num_params(m) / 1e6, B, T, fg_threads_get(), fg_kernels_variant("matmul_forward"));

    float loss = 0;
    double tf[100] = {0}, tb[100] = {0};
    fg_model_zero_grad(m); /* warm-up step: page faults of the activations and grads */
    fg_model_forward(m, in, tg, B, T, &loss);
    fg_model_backward(m, 1.0f);
    fg_model_profile(m, 1);
    for (int s = 0; s < steps; s++) {
        fg_model_zero_grad(m);
        double a = fg_time_sec();
        fg_model_forward(m, in, tg, B, T, &loss);
        double b = fg_time_sec();
        fg_model_backward(m, 1.0f);
        double c = fg_time_sec();
        tf[s] = b - a;
        tb[s] = c - b;
    }
    double step[100] = {0};
    for (int s = 0; s < steps; s++)
        step[s] = tf[s] + tb[s];
    double mf = median(tf, steps), mb = median(tb, steps), ms = median(step, steps);
    double flops = fg_model_flops_per_token(m, T) * B * T;
    double gf = flops / ms * 1e-9;
    printf("loss %.4f; median of %d steps: forward %.1f ms, backward %.1f ms, step %.1f ms, %.0f tokens/s\n", loss,
           steps, 1e3 * mf, 1e3 * mb, 1e3 * ms, B * T / ms);
    printf("achieved %.1f GFLOP/s (6N + 6LCT = %.3g FLOP per step)\n", gf, flops);
    fg_model_profile_print(m, stdout);
    fg_model_profile(m, 0);

    /* the model's GEMM shapes, forward orientation: qkv, fc, head */
    int N = B * T;
    double g_qkv = sgemm_gflops(N, 3 * C, C), g_fc = sgemm_gflops(N, rc->d_ff, C),
           g_head = sgemm_gflops(N, rc->padded_vocab, C);
    double g_ref = g_fc > g_qkv ? g_fc : g_qkv;
    printf("sgemm GFLOP/s at the model's shapes: qkv [%d x %d x %d] %.1f, fc [%d x %d x %d] %.1f, head [%d x %d x %d] "
           "%.1f\n",
           N, 3 * C, C, g_qkv, N, rc->d_ff, C, g_fc, N, rc->padded_vocab, C, g_head);
    printf("ratio: model step GFLOP/s / best sgemm GFLOP/s = %.2f\n", gf / g_ref);
    free(in);
    free(tg);
    fg_model_delete(m);
    return 0;
}
