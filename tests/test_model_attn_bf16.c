/* test_model_attn_bf16.c: a whole bf16 (and fp8) training step with attention on the bf16
 * kernel (qkv read in place, products on bf16 operands) against the same step on the
 * route it replaces (qkv widened, the fp32 attention): loss and gradients of one batch,
 * gpt2 and llama, heads of 64 over T = 80 (two key blocks, a partial query block).
 *
 * Bound (docs/KERNELS.md "bf16 attention"): the kernel's output differs from the fp32
 * attention's by <= 2^-8 of sum_j p_j |v_j| (one rounding of each softmax weight), its
 * gradients by <= 2 x 2^-8 of their magnitudes, on top of a step whose GEMMs already
 * round every operand to bf16 (test_model_bf16's 1e-2 loss and 0.999 cosine against
 * fp32). One more such rounding in one op of the layer moves the loss by a small part
 * of that: we allow 2e-3 relative, and a gradient cosine above 0.9995 (the whole
 * vector) and 0.995 (each tensor), and the step must differ (the kernel ran).
 * Measured: loss within 1.5e-5, cosines >= 0.99998. fp8 re-quantises the attention's
 * gradient dqkv to e4m3 (3 significand bits, in 1x128 tiles) before the qkv GEMM: the
 * kernel's 2^-8 differences move some of those values across an e4m3 rounding
 * boundary, each such code by 2^-4 relative, so there the whole-vector cosine may fall
 * to 0.998 (measured 0.9990; worst tensor 0.9984, the qkv weight's, above 0.995). */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "harness.h"

enum { V = 96, L = 2, NH = 2, C = 128, B = 2, T = 80 };

static fg_model *make(fg_layout layout, fg_precision p)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.vocab_size = V;
    cfg.max_seq_len = T;
    cfg.n_layer = L;
    cfg.n_head = NH;
    cfg.d_model = C;
    cfg.precision = p;
    fg_model *m = fg_model_new(&cfg, B, T);
    FG_CHECK(m != NULL, "fg_model_new: %s", fg_last_error());
    if (m)
        fg_model_init_weights(m, 7);
    return m;
}

/* One step's loss and gradients with attention_bf16 on variant `v` ("ref": the widened route). */
static float step(fg_model *m, const int32_t *x, const int32_t *y, const char *v)
{
    float loss = 0.0f;
    FG_CHECK(fg_kernels_set("attention_bf16_forward", v) == FG_OK &&
                 fg_kernels_set("attention_bf16_backward", v) == FG_OK,
             "set %s: %s", v, fg_last_error());
    fg_model_zero_grad(m);
    FG_CHECK(fg_model_forward(m, x, y, B, T, &loss) == FG_OK, "forward: %s", fg_last_error());
    FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK, "backward: %s", fg_last_error());
    return loss;
}

static void compare(const char *name, fg_layout layout, fg_precision p, const char *fast, double min_cos)
{
    fg_model *m = make(layout, p);
    if (!m)
        return;
    size_t P = fg_model_num_params(m);
    float *g = fg_malloc(P * sizeof(float));
    FG_ASSERT(g);
    int32_t x[B * T], y[B * T];
    fg_rng r;
    fg_rng_seed(&r, 11);
    for (int i = 0; i < B * T; i++) {
        x[i] = (int32_t)fg_rng_below(&r, V);
        y[i] = (int32_t)fg_rng_below(&r, V);
    }
    float lw = step(m, x, y, "ref");
    memcpy(g, fg_model_grads(m), P * sizeof(float));
    float lb = step(m, x, y, fast);
    const float *gb = fg_model_grads(m);
    FG_CHECK(fabsf(lb - lw) <= 2e-3f * fabsf(lw), "%s: loss bf16 attention %.6f vs widened %.6f (2e-3 relative)", name,
             (double)lb, (double)lw);
    FG_CHECK(memcmp(g, gb, P * sizeof(float)) != 0, "%s: the bf16 attention changed the gradients (it ran)", name);
    double nrm, all = fg_test_cosine(gb, g, P, &nrm), worst = 1.0;
    const char *worst_name = "";
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        double tn, cs = fg_test_cosine(gb + t->offset, g + t->offset, t->numel, &tn);
        if (tn == 0.0)
            continue;
        if (cs < worst) {
            worst = cs;
            worst_name = t->name;
        }
    }
    FG_CHECK(all > min_cos, "%s: gradient cosine %.7f (> %g)", name, all, min_cos);
    FG_CHECK(worst > 0.995, "%s: worst tensor cosine %.7f at %s (> 0.995)", name, worst, worst_name);
    printf("  %s: loss widened %.6f bf16 attention %.6f (rel %.2e), grad cosine %.7f, worst %.7f (%s)\n", name,
           (double)lw, (double)lb, fabs((double)lb - lw) / lw, all, worst, worst_name);
    fg_free(g);
    fg_model_delete(m);
}

int main(void)
{
    FG_TEST_BEGIN("model_attn_bf16");
    const char *vs[8];
    int n = fg_kernels_variants("attention_bf16_forward", vs, 8);
    if (n < 2) {
        fg_test_skip("bf16 attention kernel", "this CPU (or FG_HW_DISABLE) has no AVX512-BF16: the widened route only");
        return fg_test_end();
    }
    compare("gpt2 bf16", FG_LAYOUT_GPT2, FG_PRECISION_BF16, vs[n - 1], 0.9995);
    compare("llama bf16", FG_LAYOUT_LLAMA, FG_PRECISION_BF16, vs[n - 1], 0.9995);
    compare("gpt2 fp8", FG_LAYOUT_GPT2, FG_PRECISION_FP8, vs[n - 1], 0.998);
    return fg_test_end();
}
