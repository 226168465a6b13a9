/* bench_model.c: one training step (forward + backward) of a dense model, default GPT-2
 * 124M (L12 C768 NH12 Vp50304) at B=4 T=64: ms per forward / backward, the per-op
 * breakdown (fg_model_profile), achieved GFLOP/s with llm.c's 6N + 6LCT count, and the
 * ratio to bare sgemm GFLOP/s over the model's own forward GEMM shapes, measured right
 * after each step. Optimiser not included (that is src/optim's).
 *
 *   build/bench_model [--layout gpt2|llama] [--B 4] [--T 64] [--L 12] [--C 768] [--NH 12]
 *                     [--V 50257] [--steps 5] [--kernels auto|ref] [--precision fp32|bf16|fp8]
 * Threads: OMP_NUM_THREADS (default all cores). Medians over the timed steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "frugal/kernels.h"
#include "frugal/model.h"

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof x[0], bench_cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* The model's forward GEMMs (per layer qkv, attn proj, fc, fc proj; then the head) run
 * bare through fg_sgemm on scratch buffers: the reference "sgemm speed at the model's
 * shapes". Returns GFLOP/s over the whole set. */
typedef struct gemm_ref {
    int N, C, F, Fin, Vp, L;
    float *A, *W, *out;
} gemm_ref;

static int gemm_ref_init(gemm_ref *g, int N, int C, int F, int Fin, int Vp, int L)
{
    size_t wmax = (size_t)Vp * C, amax = (size_t)N * (F > C ? F : C), omax = (size_t)N * (Vp > Fin ? Vp : Fin);
    if (omax < (size_t)N * 3 * C)
        omax = (size_t)N * 3 * C;
    *g = (gemm_ref){N, C, F, Fin, Vp, L, fg_calloc(amax, 4), fg_calloc(wmax, 4), fg_calloc(omax, 4)};
    if (!g->A || !g->W || !g->out)
        return -1;
    for (size_t i = 0; i < amax; i++)
        g->A[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < wmax; i++)
        g->W[i] = (float)(i % 5) * 0.01f;
    return 0;
}

static void gemm_ref_free(gemm_ref *g)
{
    fg_free(g->A);
    fg_free(g->W);
    fg_free(g->out);
}

/* out[M,OC] = A[M,K] @ W[OC,K]^T; returns FLOPs */
static double lin(gemm_ref *g, int M, int K, int OC)
{
    fg_sgemm(0, 1, M, OC, K, 1.0f, g->A, K, g->W, K, 0.0f, g->out, OC);
    return 2.0 * M * (double)K * OC;
}

static double gemm_ref_gflops(gemm_ref *g)
{
    double fl = 0, t0 = fg_time_sec();
    for (int l = 0; l < g->L; l++) {
        fl += lin(g, g->N, g->C, 3 * g->C);
        fl += lin(g, g->N, g->C, g->C);
        fl += lin(g, g->N, g->C, g->Fin);
        fl += lin(g, g->N, g->F, g->C);
    }
    fl += lin(g, g->N, g->C, g->Vp);
    return fl / (fg_time_sec() - t0) * 1e-9;
}

int main(int argc, char **argv)
{
    fg_model_config cfg;
    fg_layout layout = FG_LAYOUT_GPT2;
    int B = 4, T = 64, L = 12, C = 768, NH = 12, V = 50257, steps = 5;
    const char *kern = NULL;
    fg_precision prec = FG_PRECISION_FP32;
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
        else if (!strcmp(k, "--precision"))
            prec = !strcmp(v, "bf16") ? FG_PRECISION_BF16 : !strcmp(v, "fp8") ? FG_PRECISION_FP8 : FG_PRECISION_FP32;
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
    cfg.precision = prec;
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
    double tf[100] = {0}, tb[100] = {0}, step[100] = {0}, ratio[100] = {0}, ref[100] = {0};
    gemm_ref g;
    if (gemm_ref_init(&g, B * T, C, rc->d_ff, layout == FG_LAYOUT_LLAMA ? 2 * rc->d_ff : rc->d_ff, rc->padded_vocab,
                      L) != 0) {
        fprintf(stderr, "out of memory for the sgemm reference\n");
        return 1;
    }
    double flops = fg_model_flops_per_token(m, T) * B * T;
    fg_model_zero_grad(m); /* warm-up step: page faults of the activations and grads */
    fg_model_forward(m, in, tg, B, T, &loss);
    fg_model_backward(m, 1.0f);
    gemm_ref_gflops(&g);
    fg_model_profile(m, 1);
    /* each model step is followed by the bare-sgemm reference, so the ratio compares
     * the two under the same machine conditions (shared, noisy cores) */
    for (int s = 0; s < steps; s++) {
        fg_model_zero_grad(m);
        double a = fg_time_sec();
        fg_model_forward(m, in, tg, B, T, &loss);
        double b = fg_time_sec();
        fg_model_backward(m, 1.0f);
        double c = fg_time_sec();
        tf[s] = b - a;
        tb[s] = c - b;
        step[s] = c - a;
        ref[s] = gemm_ref_gflops(&g);
        ratio[s] = flops / step[s] * 1e-9 / ref[s];
    }
    fg_model_profile(m, 0);
    double mf = median(tf, steps), mb = median(tb, steps), ms = median(step, steps);
    double gf = flops / ms * 1e-9;
    printf("loss %.4f; median of %d steps: forward %.1f ms, backward %.1f ms, step %.1f ms, %.0f tokens/s\n", loss,
           steps, 1e3 * mf, 1e3 * mb, 1e3 * ms, B * T / ms);
    printf("achieved %.1f GFLOP/s (6N + 6LCT = %.3g FLOP per step)\n", gf, flops);
    fg_model_profile_print(m, stdout);
    printf("bare sgemm over the model's forward GEMM shapes (N=%d): median %.1f GFLOP/s\n", B * T, median(ref, steps));
    printf("ratio: model step GFLOP/s / bare sgemm GFLOP/s, per step, median = %.2f\n", median(ratio, steps));
    gemm_ref_free(&g);

    /* KV-cache decoding: a T/2-token prompt fed one token at a time, then greedy tokens */
    int n_prompt = T / 2 > 0 ? T / 2 : 1, n_new = T - n_prompt;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)rc->max_seq_len);
    fg_sampler sm = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    double a = fg_time_sec();
    fg_model_generate(m, in, n_prompt, 0, -1, &sm, out); /* prompt prefill only */
    double tp = fg_time_sec() - a;
    a = fg_time_sec();
    int got = fg_model_generate(m, in, n_prompt, n_new, -1, &sm, out);
    double dt = fg_time_sec() - a;
    if (got > n_prompt)
        printf("generate: prefill of %d prompt tokens %.1f ms; %d new tokens %.1f ms per token (KV cache, greedy)\n",
               n_prompt, 1e3 * tp, got - n_prompt, 1e3 * (dt - tp) / (got - n_prompt));
    free(out);
    free(in);
    free(tg);
    fg_model_delete(m);
    return 0;
}
