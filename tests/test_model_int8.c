/* test_model_int8.c: the int8 prompt path (generate.c's prefill on int8.c's fused layers:
 * RMSNorm + codes, dequantization + residual add in the packed GEMM's store, SwiGLU +
 * codes) against the int8 forward of the same tokens, per layout: the logits after the
 * prompt agree to fp32 rounding of the attention, and a greedy continuation through the
 * prefill equals one fed token by token (decode steps: the one-row kernel). MoE: the
 * int8 forward (experts' rows on the packed per-expert matrices) against decode steps
 * (one row at a time), every position. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/model.h"
#include "harness.h"
#include "model_util.h"

enum { V = 61, T = 48, NP = 37 };

static fg_model *make_moe(fg_layout layout, int moe)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.vocab_size = V;
    cfg.max_seq_len = T;
    cfg.n_layer = 2;
    cfg.n_head = 4;
    cfg.d_model = 64;
    cfg.d_ff = 80; /* not a multiple of the 48-column strips */
    if (moe) {     /* layer 1: 4 experts of 40 (2 active) and a shared one */
        cfg.moe.n_expert = 4, cfg.moe.n_expert_active = 2, cfg.moe.n_shared_expert = 1;
        cfg.moe.d_expert = 40, cfg.moe.n_dense_layers = 1, cfg.moe.capacity_factor = 0;
    }
    fg_model *m = fg_model_new(&cfg, 1, T);
    FG_CHECK(m != NULL, "fg_model_new: %s", fg_last_error());
    if (m)
        fg_test_hash_weights(m, 14);
    return m;
}

static fg_model *make(fg_layout layout)
{
    return make_moe(layout, 0);
}

static void test_layout(fg_layout layout, const char *name)
{
    fg_model *m = make(layout);
    if (!m)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/int8_prefill_%s.int8", fg_test_tmpdir(), name);
    FG_CHECK(fg_model_int8_save(m, "all", path) == FG_OK, "%s save: %s", name, fg_last_error());
    FG_CHECK(fg_model_int8_load(m, path) == FG_OK, "%s load: %s", name, fg_last_error());
    int32_t in[NP + 1], out[T];
    for (int i = 0; i <= NP; i++)
        in[i] = (int32_t)((i * 17 + 5) % V);
    /* the prefill (NP rows through the fused layers), then one decode step reading its
     * cache: the logits at position NP */
    fg_sampler s = {.temperature = 0.0f, .top_p = 1.0f};
    FG_CHECK(fg_model_generate(m, in, NP, 0, -1, &s, out) == NP, "%s prefill: %s", name, fg_last_error());
    const float *dec = NULL;
    FG_CHECK(fg_model_decode_step(m, in[NP], NP, &dec) == FG_OK, "%s decode: %s", name, fg_last_error());
    int Vp = fg_model_get_config(m)->padded_vocab;
    float got[256];
    FG_ASSERT(Vp <= 256);
    memcpy(got, dec, sizeof(float) * (size_t)Vp);
    /* the int8 forward over the NP + 1 tokens: the same codes and exact sums, only the
     * attention's fp32 summation order differs */
    FG_CHECK(fg_model_forward(m, in, NULL, 1, NP + 1, NULL) == FG_OK, "%s forward: %s", name, fg_last_error());
    const float *want = fg_model_logits(m) + (size_t)NP * Vp;
    double err = fg_test_max_rel_err(got, want, (size_t)V);
    /* measured ~1e-6 (FG_TEST_VERBOSE=1); a code moved by one step moves logits ~1e-2 */
    FG_CHECK(err < 1e-4, "%s: prefill + decode vs forward logits err %.3g", name, err);
    if (getenv("FG_TEST_VERBOSE"))
        printf("%s: prefill + decode vs forward: %.3g\n", name, err);
    /* greedy continuations: prompt through the prefill vs token by token (a one-token
     * prompt starts the decode-step route, the rest is fed as its forced tokens) */
    int32_t a[T], b[T];
    int na = fg_model_generate(m, in, NP, 8, -1, &s, a);
    const float *lg = NULL;
    for (int i = 0; i < NP; i++)
        FG_ASSERT(fg_model_decode_step(m, in[i], i, &lg) == FG_OK);
    memcpy(b, in, sizeof(int32_t) * NP);
    int nb = NP;
    for (int k = 0; k < 8; k++) {
        int best = 0;
        for (int j = 1; j < V; j++)
            best = lg[j] > lg[best] ? j : best;
        b[nb++] = best;
        if (k < 7)
            FG_ASSERT(fg_model_decode_step(m, best, nb - 1, &lg) == FG_OK);
    }
    FG_CHECK(na == NP + 8 && !memcmp(a, b, sizeof(int32_t) * (size_t)nb), "%s: greedy prefill vs decode steps (%d)",
             name, na);
    fg_model_delete(m);
}

/* MoE prompts go token by token (generate.c), so the packed experts run in the forward:
 * each expert's tokens (more than 4 of 37 x 2 routes for some) on its packed matrix. */
static void test_moe(void)
{
    fg_model *m = make_moe(FG_LAYOUT_LLAMA, 1);
    if (!m)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/int8_prefill_moe.int8", fg_test_tmpdir());
    FG_CHECK(fg_model_int8_save(m, "all", path) == FG_OK, "moe save: %s", fg_last_error());
    FG_CHECK(fg_model_int8_load(m, path) == FG_OK, "moe load: %s", fg_last_error());
    int32_t in[NP];
    for (int i = 0; i < NP; i++)
        in[i] = (int32_t)((i * 17 + 5) % V);
    int Vp = fg_model_get_config(m)->padded_vocab;
    static float fwd[NP * 256];
    FG_ASSERT(Vp <= 256);
    FG_CHECK(fg_model_forward(m, in, NULL, 1, NP, NULL) == FG_OK, "moe forward: %s", fg_last_error());
    memcpy(fwd, fg_model_logits(m), sizeof(float) * (size_t)NP * Vp);
    double worst = 0.0;
    for (int i = 0; i < NP; i++) {
        const float *lg = NULL;
        FG_ASSERT(fg_model_decode_step(m, in[i], i, &lg) == FG_OK);
        double e = fg_test_max_rel_err(lg, fwd + (size_t)i * Vp, (size_t)V);
        worst = e > worst ? e : worst;
    }
    FG_CHECK(worst < 1e-4, "moe: decode steps vs int8 forward logits err %.3g", worst);
    if (getenv("FG_TEST_VERBOSE"))
        printf("moe: decode steps vs forward: %.3g\n", worst);
    fg_model_delete(m);
}

int main(void)
{
    FG_TEST_BEGIN("model_int8");
    test_layout(FG_LAYOUT_LLAMA, "llama");
    test_layout(FG_LAYOUT_GPT2, "gpt2");
    test_moe();
    return fg_test_end();
}
