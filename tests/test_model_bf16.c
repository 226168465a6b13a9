/* test_model_bf16.c: bf16 precision (GEMMs on bf16 operands, fp32 accumulation and
 * master weights, activations saved in bf16) against the fp32 model: loss and gradients
 * of one batch, and a short SGD run, for llama, gpt2 and a MoE model; a batch below the
 * capacity (bf16 and fp8); the activation-memory reduction; config validation; the bf16
 * MoE layer's fused route bit for bit against its two-pass route.
 *
 * Tolerances (docs/PRECISION.md "bf16 and fp8 training"): rounding an operand to bf16 (8 bits of
 * significand, round to nearest even) has relative error <= 2^-9; each product of a
 * GEMM then carries <= 2^-8, and the fp32 sum of K such terms with independent signs a
 * relative error of about 2^-8 of the output's scale. Through L layers of GEMMs, norms
 * and a softmax the loss (a mean over tokens of smooth functions) moves by a few 2^-8
 * relative at most: we allow 1e-2 (2.6 x 2^-8). A gradient tensor's relative error is of
 * the same order, e = a few 2^-8 ~ 1-2%, so its cosine with the fp32 one is about
 * 1 - e^2/2 > 0.999; the whole gradient vector must reach 0.999 and every tensor 0.995
 * (small tensors such as biases see fewer terms and a larger relative error). The bf16
 * result must also differ from the fp32 one, or the bf16 path did not run.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "frugal/moe.h"
#include "harness.h"

enum { V = 96, L = 2, NH = 4, C = 64, B = 2, T = 16 };

static void config(fg_model_config *cfg, fg_layout layout, int moe, fg_precision p)
{
    fg_model_config_default(cfg, layout);
    cfg->vocab_size = V;
    cfg->max_seq_len = T;
    cfg->n_layer = L;
    cfg->n_head = NH;
    cfg->d_model = C;
    cfg->precision = p;
    if (moe) {
        cfg->moe.n_expert = 4;
        cfg->moe.n_expert_active = 2;
        cfg->moe.n_shared_expert = 1;
        cfg->moe.d_expert = 32;
        cfg->moe.n_dense_layers = 1;
    }
}

static void compare(const char *name, fg_layout layout, int moe)
{
    fg_model_config c32, c16;
    config(&c32, layout, moe, FG_PRECISION_FP32);
    config(&c16, layout, moe, FG_PRECISION_BF16);
    fg_model *m32 = fg_model_new(&c32, B, T), *m16 = fg_model_new(&c16, B, T);
    FG_CHECK(m32 && m16, "%s: fg_model_new: %s", name, fg_last_error());
    if (!m32 || !m16) {
        fg_model_delete(m32);
        fg_model_delete(m16);
        return;
    }
    fg_model_init_weights(m32, 7);
    fg_model_init_weights(m16, 7);
    size_t P = fg_model_num_params(m32);
    FG_CHECK(memcmp(fg_model_params(m32), fg_model_params(m16), P * sizeof(float)) == 0,
             "%s: same init in both precisions", name);
    int32_t x[B * T], y[B * T];
    fg_rng r;
    fg_rng_seed(&r, 11);
    for (int i = 0; i < B * T; i++) {
        x[i] = (int32_t)fg_rng_below(&r, V);
        y[i] = (int32_t)fg_rng_below(&r, V);
    }

    /* one batch: loss and gradients */
    float l32 = 0, l16 = 0;
    fg_model_zero_grad(m32);
    fg_model_zero_grad(m16);
    FG_CHECK(fg_model_forward(m32, x, y, B, T, &l32) == FG_OK, "%s: forward fp32: %s", name, fg_last_error());
    FG_CHECK(fg_model_forward(m16, x, y, B, T, &l16) == FG_OK, "%s: forward bf16: %s", name, fg_last_error());
    FG_CHECK(fg_model_backward(m32, 1.0f) == FG_OK, "%s: backward fp32", name);
    FG_CHECK(fg_model_backward(m16, 1.0f) == FG_OK, "%s: backward bf16", name);
    FG_CHECK(fabsf(l16 - l32) <= 1e-2f * fabsf(l32), "%s: loss bf16 %.6f vs fp32 %.6f (1e-2 relative)", name,
             (double)l16, (double)l32);
    const float *g32 = fg_model_grads(m32), *g16 = fg_model_grads(m16);
    FG_CHECK(memcmp(g32, g16, P * sizeof(float)) != 0 && l16 != l32, "%s: bf16 results differ from fp32 (path ran)",
             name);
    double nrm, all = fg_test_cosine(g16, g32, P, &nrm), worst = 1.0;
    const char *worst_name = "";
    for (int i = 0; i < fg_model_num_tensors(m32); i++) {
        const fg_tensor_info *t = fg_model_tensor(m32, i);
        double tn, cs = fg_test_cosine(g16 + t->offset, g32 + t->offset, t->numel, &tn);
        if (tn == 0.0) /* frozen state or tokens never seen */
            continue;
        if (cs < worst) {
            worst = cs;
            worst_name = t->name;
        }
    }
    FG_CHECK(all > 0.999, "%s: gradient cosine bf16 vs fp32 = %.6f (> 0.999)", name, all);
    FG_CHECK(worst > 0.995, "%s: worst tensor gradient cosine = %.6f at %s (> 0.995)", name, worst, worst_name);
    printf("  %s: loss fp32 %.6f bf16 %.6f (rel %.2e), grad cosine %.6f, worst tensor %.6f (%s)\n", name, (double)l32,
           (double)l16, fabs((double)l16 - l32) / l32, all, worst, worst_name);

    /* a short SGD run on one repeated batch: the bf16 loss tracks the fp32 one */
    const float lr = 0.05f;
    float first = l32, last32 = l32, last16 = l16, maxrel = 0;
    for (int step = 0; step < 30; step++) {
        fg_model *ms[2] = {m32, m16};
        float ls[2];
        for (int k = 0; k < 2; k++) {
            fg_model *m = ms[k];
            fg_model_zero_grad(m);
            if (fg_model_forward(m, x, y, B, T, &ls[k]) != FG_OK || fg_model_backward(m, 1.0f) != FG_OK) {
                FG_CHECK(0, "%s: step %d: %s", name, step, fg_last_error());
                goto done;
            }
            float *p = fg_model_params(m);
            const float *g = fg_model_grads(m);
            for (int i = 0; i < fg_model_num_tensors(m); i++) {
                const fg_tensor_info *t = fg_model_tensor(m, i);
                if (t->frozen)
                    continue;
                for (size_t j = 0; j < t->numel; j++)
                    p[t->offset + j] -= lr * g[t->offset + j];
            }
            fg_model_post_step(m);
        }
        float rel = fabsf(ls[1] - ls[0]) / first;
        if (rel > maxrel)
            maxrel = rel;
        last32 = ls[0];
        last16 = ls[1];
    }
    /* After a few steps the weights differ by the accumulated rounding, and a run that
     * memorises one batch passes fast transients where a small weight difference shifts
     * the loss by more than at the start; the gap is measured on the scale of the
     * starting loss (the loss falls towards 0, where a relative gap means nothing).
     * Measured with lr 0.05, all four dispatch modes: <= 1.7e-2 (llama, without
     * AVX-512), final losses within 7e-3; we allow 3e-2. lr 0.1 and above make the gpt2
     * runs chaotic (fp32 itself then depends on the summation order), so no tolerance
     * there would mean anything. */
    FG_CHECK(maxrel <= 3e-2f, "%s: SGD: max loss gap bf16 vs fp32 / first loss = %.4f (<= 3e-2)", name, (double)maxrel);
    FG_CHECK(fabsf(last16 - last32) <= 1e-2f * first, "%s: SGD: final loss bf16 %.4f vs fp32 %.4f", name,
             (double)last16, (double)last32);
    FG_CHECK(last16 < 0.8f * first && last32 < 0.8f * first, "%s: SGD: loss %.4f -> fp32 %.4f, bf16 %.4f", name,
             (double)first, (double)last32, (double)last16);
    printf("  %s: SGD 30 steps loss %.4f -> fp32 %.4f bf16 %.4f, max rel gap %.2e\n", name, (double)first,
           (double)last32, (double)last16, (double)maxrel);
done:
    fg_model_delete(m32);
    fg_model_delete(m16);
}

/* Regression: generation runs in fp32 on the master weights, so a bf16 model decodes
 * exactly as the fp32 one, before any forward (its bf16 copy is still all zeros) and
 * after an optimiser-like update (the copy is stale until the next forward). */
static void test_generation_fp32(fg_layout layout)
{
    fg_model_config c32, c16;
    config(&c32, layout, 0, FG_PRECISION_FP32);
    config(&c16, layout, 0, FG_PRECISION_BF16);
    fg_model *m32 = fg_model_new(&c32, B, T), *m16 = fg_model_new(&c16, B, T);
    FG_CHECK(m32 && m16, "fg_model_new: %s", fg_last_error());
    if (!m32 || !m16)
        goto done;
    fg_model_init_weights(m32, 3);
    fg_model_init_weights(m16, 3);
    size_t Vp = (size_t)fg_model_get_config(m32)->padded_vocab;
    for (int round = 0; round < 2; round++) {
        for (int pos = 0; pos < 3; pos++) {
            const float *a = NULL, *b = NULL;
            FG_CHECK(fg_model_decode_step(m32, 5 + pos, pos, &a) == FG_OK, "decode fp32");
            FG_CHECK(fg_model_decode_step(m16, 5 + pos, pos, &b) == FG_OK, "decode bf16");
            FG_CHECK(a && b && memcmp(a, b, Vp * sizeof(float)) == 0,
                     "layout %d round %d pos %d: bf16 model decodes as fp32 bit for bit", (int)layout, round, pos);
        }
        /* a forward (refreshes the bf16 copy), then a weight change as an optimiser makes */
        int32_t x[B * T];
        for (int i = 0; i < B * T; i++)
            x[i] = i % V;
        float l;
        FG_CHECK(fg_model_forward(m16, x, x, B, T, &l) == FG_OK, "forward bf16");
        float *p32 = fg_model_params(m32), *p16 = fg_model_params(m16);
        for (size_t i = 0; i < fg_model_num_params(m32); i++) {
            p32[i] *= 1.5f;
            p16[i] *= 1.5f;
        }
    }
done:
    fg_model_delete(m32);
    fg_model_delete(m16);
}

/* The MoE block alone: its routed and shared experts with bf16 views against the same block in
 * fp32 (same weights, same input), so the experts' bf16 path is seen apart from the
 * rest of the model. Same tolerances as the model (header); the outputs must differ. */
/* The bf16 MoE layer's fused route (swiglu_*_bf16, bf16 operands kept across the step;
 * moe.c bf16_fused) against its two-pass route, which runs when swiglu_forward_bf16's
 * variant is not swiglu_forward's: out, dx and the weight gradients bit for bit, and the
 * fused route on 1 thread as on all. Given the default route's results (out0, dx0 and
 * dw0's gradients, from one forward and backward on zeroed gradients, by the route the
 * dispatch picks). */
static void moe_fused_same(fg_moe_layer *ML, fg_moe_scratch *S, const fg_moe_weights *wb, fg_moe_weights dw0,
                           const float *x, const float *dout, const float *out0, const float *dx0, size_t nfc,
                           size_t npr, int nx)
{
    const char *fwd = fg_kernels_variant("swiglu_forward");
    if (strcmp(fwd, fg_kernels_variant("swiglu_forward_bf16")) || strcmp(fwd, "avx512")) {
        printf("  moe fused route: swiglu_forward is %s here, no fused twin: skipped\n", fwd);
        return;
    }
    size_t nr = (size_t)dw0.router_bias - (size_t)dw0.router_w; /* bytes */
    float *buf = fg_calloc(2 * (size_t)nx + nfc + npr + nr / sizeof(float), sizeof(float));
    FG_ASSERT(buf);
    float *out = buf, *dx = buf + nx, *dfc = dx + nx, *dpr = dfc + nfc, *drw = dpr + npr;
    fg_moe_weights dw = {0};
    dw.router_w = drw, dw.expert_fc = dfc, dw.shared_fc = dfc + (dw0.shared_fc - dw0.expert_fc);
    dw.expert_proj = dpr, dw.shared_proj = dpr + (dw0.shared_proj - dw0.expert_proj);
    int nth = fg_threads_get();
    for (int run = 0; run < 3; run++) { /* two-pass (forced), fused, fused on 1 thread */
        if (run == 0)
            FG_CHECK(fg_kernels_set("swiglu_forward_bf16", "ref") == FG_OK, "set: %s", fg_last_error());
        fg_threads_set(run == 2 ? 1 : nth);
        memset(buf, 0, (2 * (size_t)nx + nfc + npr) * sizeof(float) + nr);
        FG_CHECK(fg_moe_forward(ML, out, x, wb, 1, ML->max_tokens) == FG_OK, "moe fused forward %d", run);
        FG_CHECK(fg_moe_backward(ML, S, dx, &dw, dout, x, wb, 1.0f) == FG_OK, "moe fused backward %d", run);
        FG_CHECK(!memcmp(out, out0, (size_t)nx * sizeof(float)) && !memcmp(dx, dx0, (size_t)nx * sizeof(float)),
                 "moe fused route run %d: out or dx differs from the two-pass route", run);
        FG_CHECK(!memcmp(dfc, dw0.expert_fc, nfc * sizeof(float)) &&
                     !memcmp(dpr, dw0.expert_proj, npr * sizeof(float)) && !memcmp(drw, dw0.router_w, nr),
                 "moe fused route run %d: weight gradients differ from the two-pass route", run);
        if (run == 0)
            FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    }
    fg_threads_set(nth);
    fg_free(buf);
}

static void test_moe_block(void)
{
    enum { E = 4, K = 2, H = 32, MC = 64, NT = 24 };
    fg_moe_config mc;
    memset(&mc, 0, sizeof mc);
    mc.n_expert = E;
    mc.n_expert_active = K;
    mc.d_expert = H;
    mc.n_shared_expert = 1;
    mc.route_scale = 1.0f;
    mc.balance = FG_BALANCE_NONE;
    mc.router_logit_scale = 1.0f;
    mc.router_lr_scale = 1.0f;
    mc.balance_window = 1;
    mc.d_model = MC;
    size_t nfc = (size_t)E * 2 * H * MC + 2 * H * MC, npr = (size_t)E * MC * H + MC * H,
           W = (size_t)NT * K * (MC > 2 * H ? MC : 2 * H);
    float *buf = fg_calloc(3 * (E * MC + E + nfc + npr) + 6 * NT * MC, sizeof(float));
    uint16_t *bfw = fg_calloc(nfc + npr + 2 * W, sizeof(uint16_t));
    fg_moe_layer ML;
    fg_moe_scratch S;
    FG_CHECK(buf && bfw && fg_moe_layer_init(&ML, &mc, NT) == FG_OK && fg_moe_scratch_init(&S, &mc, NT) == FG_OK,
             "moe block init: %s", fg_last_error());
    fg_moe_weights w = {0}, dw[2] = {{0}, {0}};
    float *p = buf;
    w.router_w = p, p += E * MC;
    w.router_bias = p, p += E;
    w.expert_fc = p, w.shared_fc = p + (size_t)E * 2 * H * MC, p += nfc;
    w.expert_proj = p, w.shared_proj = p + (size_t)E * MC * H, p += npr;
    for (int k = 0; k < 2; k++) {
        dw[k].router_w = p, p += E * MC;
        dw[k].router_bias = p, p += E;
        dw[k].expert_fc = p, dw[k].shared_fc = p + (size_t)E * 2 * H * MC, p += nfc;
        dw[k].expert_proj = p, dw[k].shared_proj = p + (size_t)E * MC * H, p += npr;
    }
    float *x = p, *dout = p + NT * MC, *out[2] = {p + 2 * NT * MC, p + 3 * NT * MC};
    float *dx[2] = {p + 4 * NT * MC, p + 5 * NT * MC};
    fg_rng r;
    fg_rng_seed(&r, 5);
    for (float *q = buf; q < dw[0].router_w; q++)
        *q = 0.1f * (2.0f * fg_rng_uniform(&r) - 1.0f);
    for (int i = 0; i < NT * MC; i++) {
        x[i] = 2.0f * fg_rng_uniform(&r) - 1.0f;
        dout[i] = 2.0f * fg_rng_uniform(&r) - 1.0f;
    }
    fg_moe_weights wb = w;
    fg_cvt_f32_bf16(bfw, w.expert_fc, nfc);
    fg_cvt_f32_bf16(bfw + nfc, w.expert_proj, npr);
    wb.expert_fc_bf16 = bfw;
    wb.expert_proj_bf16 = bfw + nfc;
    wb.shared_fc_bf16 = bfw + (size_t)E * 2 * H * MC;
    wb.shared_proj_bf16 = bfw + nfc + (size_t)E * MC * H;
    wb.bf16_x = bfw + nfc + npr;
    wb.bf16_d = bfw + nfc + npr + W;
    const fg_moe_weights *ws[2] = {&w, &wb};
    for (int k = 0; k < 2; k++) {
        FG_CHECK(fg_moe_forward(&ML, out[k], x, ws[k], 1, NT) == FG_OK, "moe forward %d", k);
        FG_CHECK(fg_moe_backward(&ML, &S, dx[k], &dw[k], dout, x, ws[k], 1.0f) == FG_OK, "moe backward %d", k);
    }
    moe_fused_same(&ML, &S, &wb, dw[1], x, dout, out[1], dx[1], nfc, npr, NT * MC);
    double n, co = fg_test_cosine(out[1], out[0], NT * MC, &n), cx = fg_test_cosine(dx[1], dx[0], NT * MC, &n);
    double cf = fg_test_cosine(dw[1].expert_fc, dw[0].expert_fc, nfc, &n),
           cp = fg_test_cosine(dw[1].expert_proj, dw[0].expert_proj, npr, &n);
    FG_CHECK(fg_test_max_rel_err(out[1], out[0], NT * MC) <= 1e-2, "moe block: out max rel err %.2e (<= 1e-2)",
             fg_test_max_rel_err(out[1], out[0], NT * MC));
    FG_CHECK(memcmp(out[0], out[1], NT * MC * sizeof(float)) != 0, "moe block: the bf16 experts ran (out differs)");
    FG_CHECK(co > 0.999 && cx > 0.999 && cf > 0.999 && cp > 0.999,
             "moe block: cosines out %.6f dx %.6f dfc %.6f dproj %.6f (> 0.999)", co, cx, cf, cp);
    printf("  moe block: out rel err %.2e, cosines out %.6f dx %.6f dfc %.6f dproj %.6f\n",
           fg_test_max_rel_err(out[1], out[0], NT * MC), co, cx, cf, cp);
    fg_moe_layer_free(&ML);
    fg_moe_scratch_free(&S);
    fg_free(buf);
    fg_free(bfw);
}

/* A forward below the capacity (B = 1, T = 9 in a model made for 2 x 16: row chunks,
 * attention rows and the saved tensors' rows all at the smaller shape), backward twice
 * after one forward (gradients add up), for bf16 and fp8 against fp32. Bounds as
 * compare (bf16) and test_model_fp8 (fp8: loss 2^-4, cosine 0.995). */
static void test_smaller_batch(void)
{
    enum { b = 1, t = 9 };
    int32_t x[b * t], y[b * t];
    for (int i = 0; i < b * t; i++)
        x[i] = (i * 31 + 5) % V, y[i] = (i * 17 + 3) % V;
    fg_model *ms[3];
    float ls[3];
    for (int k = 0; k < 3; k++) {
        fg_model_config c;
        config(&c, FG_LAYOUT_GPT2, 0, (fg_precision)k);
        ms[k] = fg_model_new(&c, B, T);
        FG_CHECK(ms[k] != NULL, "fg_model_new: %s", fg_last_error());
        if (!ms[k])
            return;
        fg_model_init_weights(ms[k], 9);
        fg_model_zero_grad(ms[k]);
        FG_CHECK(fg_model_forward(ms[k], x, y, b, t, &ls[k]) == FG_OK && fg_model_backward(ms[k], 1.0f) == FG_OK &&
                     fg_model_backward(ms[k], 1.0f) == FG_OK,
                 "precision %d: forward, backward x2 at B=1 T=9: %s", k, fg_last_error());
    }
    size_t P = fg_model_num_params(ms[0]);
    double n, c16 = fg_test_cosine(fg_model_grads(ms[1]), fg_model_grads(ms[0]), P, &n),
              c8 = fg_test_cosine(fg_model_grads(ms[2]), fg_model_grads(ms[0]), P, &n);
    FG_CHECK(fabsf(ls[1] - ls[0]) <= 1e-2f * ls[0] && c16 > 0.999, "B=1 T=9 bf16: loss %.6f vs %.6f, cosine %.6f",
             (double)ls[1], (double)ls[0], c16);
    FG_CHECK(fabsf(ls[2] - ls[0]) <= 0.0625f * ls[0] && c8 > 0.995, "B=1 T=9 fp8: loss %.6f vs %.6f, cosine %.6f",
             (double)ls[2], (double)ls[0], c8);
    printf("  B=1 T=9: loss fp32 %.6f bf16 %.6f fp8 %.6f, grad cosine bf16 %.6f fp8 %.6f\n", (double)ls[0],
           (double)ls[1], (double)ls[2], c16, c8);
    for (int k = 0; k < 3; k++)
        fg_model_delete(ms[k]);
}

/* A capacity whose head runs in several row chunks (N = 256 rows against R = 64: the
 * head weight packed once per forward, kernels bgemm_pack_b / bgemm_packed), against
 * fp32 with compare's bounds; then every parameter scaled by 8 and a second forward:
 * the packed weight is the new one, not the first forward's. */
static void test_head_chunks(void)
{
    enum { hb = 4, ht = 64, hv = 4096 };
    static int32_t x[hb * ht], y[hb * ht];
    for (int i = 0; i < hb * ht; i++)
        x[i] = (i * 131 + 7) % hv, y[i] = (i * 977 + 1) % hv;
    fg_model *ms[2];
    float ls[2][2];
    for (int k = 0; k < 2; k++) {
        fg_model_config c;
        config(&c, FG_LAYOUT_GPT2, 0, k ? FG_PRECISION_BF16 : FG_PRECISION_FP32);
        c.n_layer = 1, c.vocab_size = hv, c.max_seq_len = ht;
        ms[k] = fg_model_new(&c, hb, ht);
        FG_CHECK(ms[k] != NULL, "fg_model_new: %s", fg_last_error());
        if (!ms[k])
            return;
        fg_model_init_weights(ms[k], 5);
        fg_model_zero_grad(ms[k]);
        FG_CHECK(fg_model_forward(ms[k], x, y, hb, ht, &ls[k][0]) == FG_OK && fg_model_backward(ms[k], 1.0f) == FG_OK,
                 "head chunks, precision %d: %s", k, fg_last_error());
        float *p = fg_model_params(ms[k]);
        for (size_t i = 0; i < fg_model_num_params(ms[k]); i++)
            p[i] *= 8.0f;
        FG_CHECK(fg_model_forward(ms[k], x, y, hb, ht, &ls[k][1]) == FG_OK, "head chunks, second forward: %s",
                 fg_last_error());
    }
    double n, cs = fg_test_cosine(fg_model_grads(ms[1]), fg_model_grads(ms[0]), fg_model_num_params(ms[0]), &n);
    for (int f = 0; f < 2; f++)
        FG_CHECK(fabsf(ls[1][f] - ls[0][f]) <= 1e-2f * ls[0][f], "head chunks, forward %d: loss bf16 %.6f vs fp32 %.6f",
                 f + 1, (double)ls[1][f], (double)ls[0][f]);
    FG_CHECK(cs > 0.999 && fabsf(ls[0][1] - ls[0][0]) > 0.05f * ls[0][0],
             "head chunks: gradient cosine %.6f (> 0.999); the scaled weights move the loss (%.4f -> %.4f)", cs,
             (double)ls[0][0], (double)ls[0][1]);
    printf("  head in row chunks (N = %d): loss fp32 %.6f / %.6f, bf16 %.6f / %.6f, grad cosine %.6f\n", hb * ht,
           (double)ls[0][0], (double)ls[0][1], (double)ls[1][0], (double)ls[1][1], cs);
    for (int k = 0; k < 2; k++)
        fg_model_delete(ms[k]);
}

static void test_validate(void)
{
    fg_model_config c;
    config(&c, FG_LAYOUT_LLAMA, 0, FG_PRECISION_FP32);
    c.precision = (fg_precision)3;
    FG_CHECK(fg_model_config_validate(&c) == FG_ERR_INVALID && strstr(fg_last_error(), "precision = 3"),
             "precision 3 refused: %s", fg_last_error());
    c.precision = FG_PRECISION_BF16;
    FG_CHECK(fg_model_config_validate(&c) == FG_OK, "bf16 accepted");
}

/* Activation memory (fg_model_activation_bytes) of bf16 against fp32 on a model with the
 * proportions of the benchmark configs (vocabulary large against C, as GPT-2's): the issue's
 * target is -45%. Derivation, per token and layer (gpt2, Fin = F = 4C): fp32 saves ln1, qkv,
 * atty, res2, ln2, fch, fch_act, res3 = 16C floats = 64C bytes; bf16 saves x-hat1, qkv, atty,
 * x-hat2, fch = 10C bf16 = 20C bytes (-69%); the logits + their gradient (8 Vp bytes) become
 * one bf16 gradient (2 Vp). Scratch (fp32 buffers shared by the layers, bf16 operands)
 * takes some of that back; the ratio must stay under 0.55. A bf16 model keeps no logits. */
static void test_activation_bytes(void)
{
    fg_model_config c;
    config(&c, FG_LAYOUT_GPT2, 0, FG_PRECISION_FP32);
    c.n_layer = 4, c.d_model = 128, c.vocab_size = 4096, c.max_seq_len = 64;
    fg_model *m32 = fg_model_new(&c, 4, 64);
    c.precision = FG_PRECISION_BF16;
    fg_model *m16 = fg_model_new(&c, 4, 64);
    FG_CHECK(m32 && m16, "fg_model_new: %s", fg_last_error());
    if (m32 && m16) {
        fg_model_act_bytes p32, p16;
        size_t b32 = fg_model_activation_bytes(m32, &p32), b16 = fg_model_activation_bytes(m16, &p16);
        FG_CHECK(b32 == p32.saved + p32.scratch && b16 == p16.saved + p16.scratch, "bytes = saved + scratch");
        FG_CHECK((double)b16 <= 0.55 * (double)b32, "bf16 activation bytes %zu vs fp32 %zu: ratio %.3f (<= 0.55)", b16,
                 b32, (double)b16 / (double)b32);
        /* saved alone: 20C + 2Vp bytes per token and layer against 64C + 8Vp, so under 0.35 */
        FG_CHECK((double)p16.saved <= 0.35 * (double)p32.saved, "bf16 saved bytes %zu vs fp32 %zu (<= 0.35)", p16.saved,
                 p32.saved);
        FG_CHECK(fg_model_logits(m16) == NULL && fg_model_logits(m32) != NULL, "a bf16 model keeps no logits");
        printf("  activation bytes: fp32 %zu (saved %zu), bf16 %zu (saved %zu): %.1f%%\n", b32, p32.saved, b16,
               p16.saved, 100.0 * ((double)b16 / (double)b32 - 1.0));
    }
    fg_model_delete(m32);
    fg_model_delete(m16);
}

int main(void)
{
    FG_TEST_BEGIN("model_bf16");
    test_validate();
    test_activation_bytes();
    test_smaller_batch();
    test_head_chunks();
    test_moe_block();
    test_generation_fp32(FG_LAYOUT_LLAMA);
    test_generation_fp32(FG_LAYOUT_GPT2);
    compare("llama", FG_LAYOUT_LLAMA, 0);
    compare("gpt2", FG_LAYOUT_GPT2, 0);
    compare("llama-moe", FG_LAYOUT_LLAMA, 1);
    compare("gpt2-moe", FG_LAYOUT_GPT2, 1);
    return fg_test_end();
}
