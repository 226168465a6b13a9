/* bench.c: times whole training steps (forward, backward, clip, AdamW) of a config's
 * model on random tokens and, in the same process, fg_sgemm (and for a bf16 model the
 * dispatched fg_bgemm) at the model's own shapes, so "achieved / GEMM" is a ratio of
 * two numbers taken side by side. Leaves out data loading (microseconds per step). */
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/optim.h"
#include "frugal/train.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One C[M,N] = A[M,K] @ B[N,K]^T (the linear-layer forward layout) in fp32 (sgemm) or
 * on the bf16 copies ah, bh (the dispatched fg_bgemm, as the bf16 model calls it). */
typedef struct gemm_shape {
    int M, N, K;
    const float *a, *b;
    const uint16_t *ah, *bh; /* NULL: time fg_sgemm */
    float *c;
} gemm_shape;

static void gemm_once(const gemm_shape *g)
{
    if (g->ah)
        fg_bgemm(0, 1, g->M, g->N, g->K, 1.0f, g->ah, g->K, g->bh, g->K, 0.0f, g->c, g->N);
    else
        fg_sgemm(0, 1, g->M, g->N, g->K, 1.0f, g->a, g->K, g->b, g->K, 0.0f, g->c, g->N);
}

/* GFLOP/s of one shape, repeated for at least ~0.1 s after one warm-up call; best of 3
 * timings. */
static double gemm_gflops(const gemm_shape *g)
{
    gemm_once(g);
    double flop = 2.0 * g->M * g->N * g->K, best = 0;
    int reps = 1;
    double t = fg_time_sec();
    gemm_once(g);
    double one = fg_time_sec() - t;
    if (one > 0)
        reps = (int)(0.1 / one) + 1;
    for (int trial = 0; trial < 3; trial++) {
        t = fg_time_sec();
        for (int i = 0; i < reps; i++)
            gemm_once(g);
        double dt = fg_time_sec() - t;
        double gf = flop * reps / dt / 1e9;
        if (gf > best)
            best = gf;
    }
    return best;
}

fg_status fg_train_bench(const fg_train_config *cfg, int iters, int warmup, FILE *out, fg_train_bench_result *res)
{
    fg_train_config c = *cfg;
    memset(res, 0, sizeof *res);
    fg_threads_set(c.threads); /* 0 = all cores, before the kernels fill their table */
    fg_status st =
        fg_kernels_configure(c.kernels[0] ? c.kernels : NULL, fg_train_blas_threading_name(&c), fg_threads_get());
    if (st != FG_OK)
        return st;
    if (c.model.vocab_size == 0)
        c.model.vocab_size = 50257;
    if (c.model.max_seq_len == 0)
        c.model.max_seq_len = c.seq_len;
    int B = c.batch_size, T = c.seq_len, A = c.grad_accum;
    fg_model *m = fg_model_new(&c.model, B, T);
    if (!m)
        return fg_last_status();
    fg_optim opt;
    memset(&opt, 0, sizeof opt);
    int32_t *inp = NULL, *tgt = NULL;
    double *times = NULL;
    float *ga = NULL, *gb = NULL, *gc = NULL;
    uint16_t *ha = NULL, *hb = NULL;
    fg_model_init_weights(m, c.seed);
    int nt = fg_model_num_tensors(m);
    fg_optim_range *ranges = fg_malloc((size_t)nt * sizeof *ranges);
    if (!ranges) {
        st = FG_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < nt; i++) {
        const fg_tensor_info *ti = fg_model_tensor(m, i);
        ranges[i] = (fg_optim_range){ti->offset, ti->numel, (c.decay_all || !ti->no_decay), ti->frozen, ti->lr_scale};
    }
    fg_adamw_config ac = {c.beta1, c.beta2, c.eps, c.weight_decay, c.adam_moments};
    st = fg_optim_init(&opt, fg_model_num_params(m), ranges, nt, &ac);
    fg_free(ranges);
    if (st != FG_OK)
        goto out;
    size_t n = (size_t)A * B * T;
    inp = fg_malloc(n * sizeof *inp);
    tgt = fg_malloc(n * sizeof *tgt);
    times = fg_malloc((size_t)(iters > 0 ? iters : 1) * sizeof *times);
    if (!inp || !tgt || !times) {
        st = FG_ERR_NOMEM;
        goto out;
    }
    fg_rng rng;
    fg_rng_seed(&rng, c.seed);
    for (size_t i = 0; i < n; i++) {
        inp[i] = (int32_t)fg_rng_below(&rng, (uint32_t)c.model.vocab_size);
        tgt[i] = (int32_t)fg_rng_below(&rng, (uint32_t)c.model.vocab_size);
    }
    res->n_params = fg_model_num_params(m);
    res->n_active_params = fg_model_num_active_params(m);
    res->flops_per_token = fg_model_flops_per_token(m, T);
    double t_grads = 0, t_clip = 0, t_adam = 0; /* summed over the timed steps */
    for (int it = -warmup; it < iters; it++) {
        double t0 = fg_time_sec();
        float loss;
        st = fg_train_grads(m, inp, tgt, B, T, A, &loss);
        if (st != FG_OK)
            goto out;
        double t1 = fg_time_sec();
        double norm = fg_optim_grad_norm(&opt, fg_model_grads(m)); /* the trainer's step */
        double t2 = fg_time_sec();
        fg_model_post_step(m);
        fg_optim_step_fused(&opt, fg_model_params(m), fg_model_grads(m), 1e-4f, fg_optim_clip_coef(norm, c.grad_clip),
                            fg_model_bf16_weights(m));
        double t3 = fg_time_sec();
        if (it >= 0) {
            times[it] = t3 - t0;
            t_grads += t1 - t0;
            t_clip += t2 - t1;
            t_adam += t3 - t2;
        }
    }
    qsort(times, (size_t)iters, sizeof *times, cmp_double);
    double med = times[iters / 2];
    res->ms_per_step = med * 1e3;
    res->tokens_per_s = (double)n / med;
    res->train_gflops = res->tokens_per_s * res->flops_per_token / 1e9;
    if (out) {
        const fg_model_config *mc = fg_model_get_config(m);
        /* total and active parameters and FLOPs per token on every row, so that a MoE
         * row can be matched with the dense row of the same active size */
        char moe[64] = "dense";
        if (mc->moe.n_expert > 0)
            snprintf(moe, sizeof moe, "%d_routed_top%d+%d_shared", mc->moe.n_expert, mc->moe.n_expert_active,
                     mc->moe.n_shared_expert);
        fprintf(out,
                "bench.train layout=%s L=%d C=%d NH=%d Vp=%d B=%d T=%d accum=%d params=%zu active_params=%zu "
                "experts=%s flops_per_token=%.4g threads=%d matmul=%s precision=%s%s%s\n",
                mc->layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama", mc->n_layer, mc->d_model, mc->n_head, mc->padded_vocab,
                B, T, A, res->n_params, res->n_active_params, moe, res->flops_per_token, fg_threads_get(),
                fg_kernels_variant("matmul"),
                mc->precision == FG_PRECISION_FP8    ? "fp8"
                : mc->precision == FG_PRECISION_BF16 ? "bf16"
                                                     : "fp32",
                mc->precision != FG_PRECISION_FP32 ? " bgemm=" : "",
                mc->precision != FG_PRECISION_FP32 ? fg_kernels_variant("bgemm") : "");
        fprintf(out, "bench.train ms_per_step=%.1f tokens_per_s=%.1f flops_per_token=%.4g gflops=%.2f\n",
                res->ms_per_step, res->tokens_per_s, res->flops_per_token, res->train_gflops);
        /* norm: the gradient norm; step: the fused sweep (clip factor, AdamW, bf16 weight copy) */
        fprintf(out, "bench.split forward_backward_ms=%.1f norm_ms=%.1f step_ms=%.1f adam_moments=%s (means)\n",
                1e3 * t_grads / iters, 1e3 * t_clip / iters, 1e3 * t_adam / iters,
                c.adam_moments == FG_ADAM_MOMENTS_BF16 ? "bf16" : "fp32");
        fflush(out);
    }

    /* GEMM shapes: the head (B*T x Vp x C), the FFN up-projection, and 1024^3 */
    const fg_model_config *mc = fg_model_get_config(m);
    int C = mc->d_model, BT = B * T;
    int shapes[3][3] = {{BT, mc->padded_vocab, C}, {BT, 4 * C, C}, {1024, 1024, 1024}};
    /* the bf16 GEMM rate too when the model's GEMMs run in bf16: the ceiling of its step
     * (not in an fp32 run, where --kernels=ref would spend minutes on scalar bf16 GEMMs) */
    int lowp = mc->precision != FG_PRECISION_FP32;
    size_t need_a = 0, need_b = 0, need_c = 0;
    for (int s = 0; s < 3; s++) {
        size_t a = (size_t)shapes[s][0] * shapes[s][2], b = (size_t)shapes[s][1] * shapes[s][2],
               cc = (size_t)shapes[s][0] * shapes[s][1];
        need_a = a > need_a ? a : need_a;
        need_b = b > need_b ? b : need_b;
        need_c = cc > need_c ? cc : need_c;
    }
    ga = fg_malloc(need_a * sizeof(float));
    gb = fg_malloc(need_b * sizeof(float));
    gc = fg_malloc(need_c * sizeof(float));
    if (lowp) {
        ha = fg_malloc(need_a * sizeof(uint16_t));
        hb = fg_malloc(need_b * sizeof(uint16_t));
    }
    if (!ga || !gb || !gc || (lowp && (!ha || !hb))) {
        st = FG_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < need_a; i++)
        ga[i] = fg_rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < need_b; i++)
        gb[i] = fg_rng_uniform(&rng) - 0.5f;
    if (lowp) {
        fg_cvt_f32_bf16(ha, ga, need_a);
        fg_cvt_f32_bf16(hb, gb, need_b);
    }
    double sg[3];
    for (int s = 0; s < 3; s++) {
        gemm_shape g = {shapes[s][0], shapes[s][1], shapes[s][2], ga, gb, NULL, NULL, gc};
        double gf = sg[s] = gemm_gflops(&g);
        if (gf > res->sgemm_gflops)
            res->sgemm_gflops = gf;
        if (out)
            fprintf(out, "bench.sgemm M=%d N=%d K=%d gflops=%.2f\n", g.M, g.N, g.K, gf);
    }
    for (int s = 0; lowp && s < 3; s++) {
        gemm_shape g = {shapes[s][0], shapes[s][1], shapes[s][2], ga, gb, ha, hb, gc};
        double gf = gemm_gflops(&g);
        if (gf > res->bgemm_gflops)
            res->bgemm_gflops = gf;
        if (out)
            fprintf(out, "bench.bgemm M=%d N=%d K=%d bgemm=%s gflops=%.2f over_sgemm=%.2f\n", g.M, g.N, g.K,
                    fg_kernels_variant("bgemm"), gf, sg[s] > 0 ? gf / sg[s] : 0.0);
    }
    if (out) {
        fprintf(out, "bench.ratio achieved_over_best_sgemm=%.3f\n",
                res->sgemm_gflops > 0 ? res->train_gflops / res->sgemm_gflops : 0.0);
        if (lowp)
            fprintf(out, "bench.ratio achieved_over_best_bgemm=%.3f bgemm_over_sgemm=%.3f\n",
                    res->bgemm_gflops > 0 ? res->train_gflops / res->bgemm_gflops : 0.0,
                    res->sgemm_gflops > 0 ? res->bgemm_gflops / res->sgemm_gflops : 0.0);
    }
out:
    fg_free(ha);
    fg_free(hb);
    fg_free(ga);
    fg_free(gb);
    fg_free(gc);
    fg_free(times);
    fg_free(inp);
    fg_free(tgt);
    fg_optim_free(&opt);
    fg_model_delete(m);
    return st;
}
