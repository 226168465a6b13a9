/* test_model_mla.c: multi-head latent attention (src/model/mla.c) in whole tiny models
 * against the PyTorch twin (tools/gen_mla_fixtures.py: logits, loss, every gradient; llama
 * and gpt2, dense and MoE, with and without the latent norms), central finite differences
 * (also with FFN sharing and MTP on), decoding from the compressed cache (absorbed form)
 * against the full forward, the init of both forms, KV-cache bytes and config errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "harness.h"
#include "model_util.h"

static void random_tokens(int32_t *x, int n, int V, fg_rng *r)
{
    for (int i = 0; i < n; i++)
        x[i] = (int32_t)fg_rng_below(r, (uint32_t)V);
}

/* Hashed weights as the twin's, the frozen MoE router state zero on both sides. */
static void twin_weights(fg_model *m, uint64_t seed)
{
    fg_test_hash_weights(m, seed);
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        if (t->frozen)
            memset(fg_model_params(m) + t->offset, 0, t->numel * sizeof(float));
    }
}

/* ---- against PyTorch ---- */

static void check_fixture(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/fixtures/mla_%s.bin", name);
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path(rel)) != FG_OK) {
        FG_CHECK(0, "load fixture %s: %s", rel, fg_last_error());
        return;
    }
    /* config: layout V Vp maxT L NH C F tie B T seed r rq R D E K S H [latent_norm]: the
     * fixtures written before mla_latent_norm have 20 values, all with the norms */
    const fg_fixture_tensor *cfx = fg_fixture_get(&fx, "config");
    const int32_t *ci = cfx->data;
    fg_model_config cfg;
    fg_model_config_default(&cfg, (fg_layout)ci[0]);
    cfg.vocab_size = ci[1], cfg.padded_vocab = ci[2], cfg.max_seq_len = ci[3], cfg.n_layer = ci[4];
    cfg.n_head = ci[5], cfg.d_model = ci[6], cfg.d_ff = ci[7], cfg.tie_embeddings = ci[8];
    int B = ci[9], T = ci[10];
    cfg.mla_kv_rank = ci[12], cfg.mla_q_rank = ci[13], cfg.mla_rope_dim = ci[14];
    cfg.mla_latent_norm = cfx->numel > 20 ? ci[20] : 1;
    cfg.moe.n_dense_layers = ci[15], cfg.moe.n_expert = ci[16], cfg.moe.n_expert_active = ci[17];
    cfg.moe.n_shared_expert = ci[18], cfg.moe.d_expert = ci[19];
    cfg.moe.route_scale = FG_FIX_F32(&fx, "config_f")[0];
    fg_model *m = fg_model_new(&cfg, B, T);
    FG_CHECK(m != NULL, "%s: fg_model_new: %s", name, fg_last_error());
    if (!m) {
        fg_fixture_free(&fx);
        return;
    }
    FG_CHECK(fg_model_num_tensors(m) == ((const int32_t *)fg_fixture_get(&fx, "names")->data)[0],
             "%s: %d tensors, twin %d", name, fg_model_num_tensors(m),
             ((const int32_t *)fg_fixture_get(&fx, "names")->data)[0]);
    twin_weights(m, (uint64_t)ci[11]);
    float loss = 0;
    fg_model_zero_grad(m);
    FG_CHECK(fg_model_forward(m, fg_fixture_get(&fx, "inputs")->data, fg_fixture_get(&fx, "targets")->data, B, T,
                              &loss) == FG_OK,
             "%s: forward: %s", name, fg_last_error());
    /* 1e-4 relative, as test_model.c: float64 twin vs fp32, observed ~1e-6 */
    float want = FG_FIX_F32(&fx, "loss")[0];
    FG_CHECK(fabsf(loss - want) <= 1e-4f * fabsf(want), "%s: loss %.7f, PyTorch %.7f", name, loss, want);
    char what[200];
    snprintf(what, sizeof what, "%s logits", name);
    const fg_fixture_tensor *lg = fg_fixture_get(&fx, "logits");
    fg_test_check_tensor(what, fg_model_logits(m), lg->data, lg->numel, 1e-4);
    FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK, "%s: backward: %s", name, fg_last_error());
    const float *g = fg_model_grads(m);
    size_t covered = 0, frozen = 0;
    int n_mla = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        if (t->frozen) {
            frozen += t->numel;
            continue;
        }
        char key[160];
        snprintf(key, sizeof key, "grad.%s", t->name);
        const fg_fixture_tensor *ref = fg_fixture_get(&fx, key);
        FG_CHECK(ref != NULL, "%s: the twin has no %s (a tensor name or the flat order differs)", name, t->name);
        if (!ref)
            continue;
        if (ref->numel != t->numel) {
            FG_CHECK(0, "%s: %s has %zu values, twin %zu", name, t->name, t->numel, ref->numel);
            continue;
        }
        snprintf(what, sizeof what, "%s d%s", name, t->name);
        fg_test_check_tensor(what, g + t->offset, ref->data, t->numel, 1e-4);
        covered += t->numel;
        n_mla += strstr(t->name, ".attn.") != NULL && strstr(t->name, ".attn.proj.") == NULL;
    }
    FG_CHECK(covered + frozen == fg_model_num_params(m), "%s: gradients compared for %zu of %zu params", name, covered,
             fg_model_num_params(m) - frozen);
    FG_CHECK(n_mla >= 4 * cfg.n_layer, "%s: only %d MLA tensors compared", name, n_mla);
    FG_CHECK(fg_model_find_tensor(m, "h.0.attn.qkv.weight") == NULL, "%s: an MLA model has no qkv", name);
    fg_model_delete(m);
    fg_fixture_free(&fx);
}

/* ---- finite differences ---- */

/* levers: MLA together with the other two (seed-form FFN sharing, one MTP module) */
static void all_levers(fg_model_config *cfg)
{
    cfg->ffn_share = FG_SHARE_SEED, cfg->ffn_share_group = 2, cfg->ffn_share_rank = 4;
    cfg->mtp_depth = 1, cfg->mtp_lambda = 0.3f;
}

static fg_model *mla_model(fg_layout layout, int V, int maxT, int L, int NH, int C, int r, int rq, int R, int B, int T,
                           int levers, int norm)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.vocab_size = V, cfg.max_seq_len = maxT, cfg.n_layer = L, cfg.n_head = NH, cfg.d_model = C;
    cfg.mla_kv_rank = r, cfg.mla_q_rank = rq, cfg.mla_rope_dim = R, cfg.mla_latent_norm = norm;
    if (levers)
        all_levers(&cfg);
    fg_model *m = fg_model_new(&cfg, B, T);
    FG_CHECK(m != NULL, "fg_model_new: %s", fg_last_error());
    return m;
}

/* Central differences of the fp32 loss at three entries of every MLA tensor (the
 * largest gradient and two random ones): h = 1e-2 on weights ~0.1 and the tolerance
 * 2e-2 |g| + 1e-4 of test_model.c (truncation and rounding both far below it). */
static void test_finite_diff(fg_layout layout, int rq, int levers, int norm)
{
    const char *nm = layout == FG_LAYOUT_GPT2 ? (levers ? "gpt2+levers" : "gpt2") : (levers ? "llama+levers" : "llama");
    int B = 2, T = 5, V = 23;
    fg_model *m = mla_model(layout, V, 8, 2, 2, 16, 6, rq, layout == FG_LAYOUT_LLAMA ? 4 : 0, B, T, levers, norm);
    if (!m)
        return;
    fg_test_hash_weights(m, 7);
    fg_rng r;
    fg_rng_seed(&r, 11);
    int32_t in[10], tg[10];
    random_tokens(in, B * T, V, &r);
    random_tokens(tg, B * T, V, &r);
    tg[2] = -1;
    char what[64];
    snprintf(what, sizeof what, "%s rq=%d norm=%d", nm, rq, norm);
    int bad = 0, checked = fg_test_fd_tensors(m, in, tg, B, T, ".attn.", &r, what, &bad);
    FG_CHECK(bad == 0 && checked >= 12, "%s: %d of %d finite differences off", what, bad, checked);
    fg_model_delete(m);
}

/* ---- decoding from the compressed cache = the full forward ---- */

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static void test_decode(fg_layout layout, int rq, int n_expert, int levers, int norm)
{
    const char *nm = layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama";
    int T = 12, V = 70;
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.vocab_size = V, cfg.max_seq_len = T, cfg.n_layer = 2, cfg.n_head = 4, cfg.d_model = 32;
    cfg.mla_kv_rank = 10, cfg.mla_q_rank = rq; /* rope dim: the default HS/2 (llama) */
    cfg.mla_latent_norm = norm;
    if (n_expert) {
        cfg.moe.n_expert = n_expert, cfg.moe.n_expert_active = 2, cfg.moe.d_expert = 16;
        cfg.moe.n_shared_expert = 1, cfg.moe.n_dense_layers = 1;
    }
    if (levers) /* MTP is training only and sharing changes only the FFN weights: same cache */
        all_levers(&cfg);
    fg_model *m = fg_model_new(&cfg, 2, T);
    FG_CHECK(m != NULL, "decode %s: fg_model_new: %s", nm, fg_last_error());
    if (!m)
        return;
    FG_CHECK(fg_model_get_config(m)->mla_rope_dim == (layout == FG_LAYOUT_LLAMA ? 4 : 0),
             "%s: resolved mla_rope_dim %d", nm, fg_model_get_config(m)->mla_rope_dim);
    twin_weights(m, 9);
    int Vp = fg_model_get_config(m)->padded_vocab;
    fg_rng r;
    fg_rng_seed(&r, 13);
    int32_t seq[12];
    random_tokens(seq, T, V, &r);
    FG_CHECK(fg_model_forward(m, seq, NULL, 1, T, NULL) == FG_OK, "%s: forward: %s", nm, fg_last_error());
    float *full = malloc((size_t)T * Vp * sizeof(float));
    memcpy(full, fg_model_logits(m), (size_t)T * Vp * sizeof(float));
    /* one token at a time through the latent cache, keys and values never rebuilt:
     * 1e-4 as test_model.c's cache test (different summation orders only) */
    for (int t = 0; t < T; t++) {
        const float *lg = NULL;
        FG_CHECK(fg_model_decode_step(m, seq[t], t, &lg) == FG_OK, "%s: decode step %d: %s", nm, t, fg_last_error());
        char what[96];
        snprintf(what, sizeof what, "%s rq=%d E=%d norm=%d latent-cache logits at t=%d", nm, rq, n_expert, norm, t);
        if (lg)
            fg_test_check_tensor(what, lg, full + (size_t)t * Vp, (size_t)Vp, 1e-4);
    }
    /* generate feeds an MLA prompt step by step: greedy picks the full forward's argmax */
    fg_sampler s = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    int32_t out[12];
    int n = fg_model_generate(m, seq, 6, 1, -1, &s, out);
    FG_CHECK(n == 7 && out[6] == argmax(full + 5 * (size_t)Vp, V), "%s: generate after a 6-token prompt", nm);
    free(full);
    fg_model_delete(m);
}

/* ---- cache bytes, FLOPs, config ---- */

static void test_kv_bytes(void)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, FG_LAYOUT_LLAMA); /* L 4, C 128, NH 4: HS 32 */
    fg_model *base = fg_model_new(&cfg, 1, 8);
    cfg.mla_kv_rank = 48; /* + the default rope dim 16: 64 = 1/4 of 2C */
    fg_model *mla = fg_model_new(&cfg, 1, 8);
    FG_CHECK(base && mla, "kv bytes models: %s", fg_last_error());
    if (base && mla) {
        FG_CHECK(fg_model_kv_bytes_per_token(base) == 4 * 2 * 128 * 4, "baseline kv bytes %zu",
                 fg_model_kv_bytes_per_token(base));
        FG_CHECK(fg_model_kv_bytes_per_token(mla) == 4 * (48 + 16) * 4, "MLA kv bytes %zu",
                 fg_model_kv_bytes_per_token(mla));
        FG_CHECK(4 * fg_model_kv_bytes_per_token(mla) <= fg_model_kv_bytes_per_token(base), "MLA cache <= 1/4");
        /* attention FLOPs: 3 L T (NH (HS + R) + C) instead of 6 L T C; the rest is 6 N */
        double fb = fg_model_flops_per_token(base, 8), fm = fg_model_flops_per_token(mla, 8);
        FG_CHECK_CLOSE(fb - 6.0 * (double)fg_model_num_active_params(base), 6.0 * 4 * 8 * 128, 1e-9);
        FG_CHECK_CLOSE(fm - 6.0 * (double)fg_model_num_active_params(mla), 3.0 * 4 * 8 * (4 * (32 + 16) + 128), 1e-9);
        fg_model_act_bytes ab;
        FG_CHECK(fg_model_activation_bytes(mla, &ab) > 0 && ab.saved > 0 && ab.scratch > 0, "MLA activation bytes");
    }
    fg_model_delete(base);
    fg_model_delete(mla);
}

/* Sample standard deviation of n values (mean taken out). */
static double sample_std(const float *x, size_t n)
{
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < n; i++)
        s += x[i], s2 += (double)x[i] * x[i];
    double mean = s / (double)n;
    return sqrt(s2 / (double)n - mean * mean);
}

/* With mla_latent_norm, fg_model_init_weights gives the latent norms the gains sqrt(C/r)
 * and sqrt(C/rq) (DeepSeek's scaling factors at the width bottlenecks; before, they started
 * at 1, so an r-wide latent reached the up-projections at sqrt(r/C) of a normed input's
 * length), biases 0; the other norms keep 1; the down-projections start at 1/sqrt(C). */
static void test_init_gain(fg_layout layout)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.n_layer = 2, cfg.d_model = 64, cfg.n_head = 4, cfg.vocab_size = 64, cfg.max_seq_len = 8;
    cfg.mla_kv_rank = 16, cfg.mla_q_rank = 32, cfg.mla_latent_norm = 1;
    fg_model *m = fg_model_new(&cfg, 1, 8);
    FG_CHECK(m != NULL, "init gain model: %s", fg_last_error());
    if (!m)
        return;
    fg_model_init_weights(m, 7);
    const float *p = fg_model_params(m);
    int seen_kv = 0, seen_q = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        float want = -1.0f;
        if (fg_test_ends_with(t->name, "attn.ln_kv.weight"))
            want = 2.0f, seen_kv++; /* sqrt(64 / 16) */
        else if (fg_test_ends_with(t->name, "attn.ln_q.weight"))
            want = sqrtf(2.0f), seen_q++; /* sqrt(64 / 32) */
        else if (fg_test_ends_with(t->name, "ln_1.weight") || fg_test_ends_with(t->name, "attn.ln_kv.bias"))
            want = fg_test_ends_with(t->name, "bias") ? 0.0f : 1.0f;
        else if (fg_test_ends_with(t->name, "attn.kv_a.weight") || fg_test_ends_with(t->name, "attn.q_a.weight") ||
                 fg_test_ends_with(t->name, "attn.kv_b.weight")) {
            /* down-projections at 1/sqrt(C) in this form too (a 0.02 one under the norm
             * turned 4.4x faster); the up-projections keep 0.02: 1,024-4,096 draws, 10% */
            double sd = sample_std(p + t->offset, t->numel);
            double wsd = fg_test_ends_with(t->name, "kv_b.weight") ? 0.02 : 1.0 / sqrt(64.0);
            FG_CHECK(fabs(sd - wsd) <= 0.1 * wsd, "%s: init std %g, want %g", t->name, sd, wsd);
            continue;
        }
        if (want < 0.0f)
            continue;
        for (size_t j = 0; j < t->numel; j++)
            if (p[t->offset + j] != want) {
                FG_CHECK(0, "%s[%zu] = %g after init, want %g", t->name, j, (double)p[t->offset + j], (double)want);
                break;
            }
    }
    FG_CHECK(seen_kv == 2 && seen_q == 2, "init gain: %d ln_kv, %d ln_q tensors", seen_kv, seen_q);
    fg_model_delete(m);
}

/* Without latent norms (the default) there are no ln_kv / ln_q tensors, and the init puts
 * W_DKV, W_DQ at N(0, 1/C) and W_UKV, W_UQ at N(0, 0.02^2 C/r) (C/rq): the 0.02 init of
 * both factors, which this replaced, trained 2-5% worse (docs/perf/mla.md, section 2). */
static void test_init_no_norm(fg_layout layout)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.n_layer = 2, cfg.d_model = 128, cfg.n_head = 4, cfg.vocab_size = 64, cfg.max_seq_len = 8;
    cfg.mla_kv_rank = 32, cfg.mla_q_rank = 64;
    fg_model *m = fg_model_new(&cfg, 1, 8);
    FG_CHECK(m != NULL, "init no-norm model: %s", fg_last_error());
    if (!m)
        return;
    fg_model_init_weights(m, 7);
    const float *p = fg_model_params(m);
    int seen = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        FG_CHECK(strstr(t->name, "attn.ln_") == NULL, "no latent norms, yet %s exists", t->name);
        double want = -1.0;
        if (fg_test_ends_with(t->name, "attn.kv_a.weight") || fg_test_ends_with(t->name, "attn.q_a.weight"))
            want = 1.0 / sqrt(128.0);
        else if (fg_test_ends_with(t->name, "attn.kv_b.weight"))
            want = 0.02 * sqrt(128.0 / 32.0);
        else if (fg_test_ends_with(t->name, "attn.q_b.weight"))
            want = 0.02 * sqrt(128.0 / 64.0);
        else if (fg_test_ends_with(t->name, "attn.proj.weight") || fg_test_ends_with(t->name, "ln_1.weight"))
            continue;
        if (want < 0.0)
            continue;
        seen++;
        /* 4,096-65,536 draws: the sample std within 5% of the target (about 3-10 sigma) */
        double sd = sample_std(p + t->offset, t->numel);
        FG_CHECK(fabs(sd - want) <= 0.05 * want, "%s: init std %g, want %g", t->name, sd, want);
    }
    FG_CHECK(seen == 8, "init no-norm: %d MLA projections checked", seen);
    fg_model_delete(m);
}

static void expect_invalid(fg_model_config *c, const char *needle)
{
    fg_status st = fg_model_config_validate(c);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), needle) != NULL,
             "validate: status %d, message '%s' lacks '%s'", (int)st, fg_last_error(), needle);
    FG_CHECK(fg_model_new(c, 1, 1) == NULL, "fg_model_new refuses an invalid config (%s)", needle);
}

static void test_config(void)
{
    fg_model_config c;
    fg_model_config_default(&c, FG_LAYOUT_GPT2);
    c.mla_kv_rank = 16, c.mla_rope_dim = 8;
    expect_invalid(&c, "mla_rope_dim = 8 with layout gpt2");
    fg_model_config_default(&c, FG_LAYOUT_GPT2);
    c.mla_latent_norm = 1;
    expect_invalid(&c, "mla_latent_norm = 1 need mla_kv_rank > 0");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.mla_q_rank = 16;
    expect_invalid(&c, "need mla_kv_rank > 0");
    c.mla_q_rank = 0, c.mla_kv_rank = -1;
    expect_invalid(&c, "mla_kv_rank = -1");
    c.mla_kv_rank = 16, c.mla_rope_dim = 5;
    expect_invalid(&c, "mla_rope_dim = 5 must be even");
    c.mla_rope_dim = 0, c.mla_q_rank = -2;
    expect_invalid(&c, "mla_q_rank = -2");
    c.mla_q_rank = 0, c.precision = FG_PRECISION_BF16;
    expect_invalid(&c, "needs precision = fp32");
    c.precision = FG_PRECISION_FP32;
    snprintf(c.qat_layers, sizeof c.qat_layers, "all");
    expect_invalid(&c, "qat_layers");
    c.qat_layers[0] = '\0';
    FG_CHECK(fg_model_config_validate(&c) == FG_OK, "llama MLA config valid: %s", fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("model_mla");
    fg_kernels_init(NULL);
    check_fixture("llama");
    check_fixture("gpt2");
    check_fixture("llama_moe");
    check_fixture("gpt2_moe");
    check_fixture("llama_nonorm");
    check_fixture("gpt2_nonorm");
    for (int norm = 0; norm <= 1; norm++) {
        test_finite_diff(FG_LAYOUT_LLAMA, 8, 0, norm);
        test_finite_diff(FG_LAYOUT_LLAMA, 0, 0, norm);
        test_finite_diff(FG_LAYOUT_GPT2, 8, 0, norm);
        test_finite_diff(FG_LAYOUT_GPT2, 0, 0, norm);
        test_finite_diff(FG_LAYOUT_LLAMA, 8, 1, norm);
        test_finite_diff(FG_LAYOUT_GPT2, 0, 1, norm);
        test_decode(FG_LAYOUT_LLAMA, 12, 0, 0, norm);
        test_decode(FG_LAYOUT_LLAMA, 0, 0, 0, norm);
        test_decode(FG_LAYOUT_GPT2, 0, 0, 0, norm);
        test_decode(FG_LAYOUT_GPT2, 12, 0, 0, norm);
        test_decode(FG_LAYOUT_LLAMA, 12, 4, 0, norm);
        test_decode(FG_LAYOUT_LLAMA, 12, 4, 1, norm);
    }
    test_kv_bytes();
    test_init_gain(FG_LAYOUT_LLAMA);
    test_init_gain(FG_LAYOUT_GPT2);
    test_init_no_norm(FG_LAYOUT_LLAMA);
    test_init_no_norm(FG_LAYOUT_GPT2);
    test_config();
    return fg_test_end();
}
