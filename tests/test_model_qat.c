/* test_model_qat.c: int8 quantization-aware training in the model: loss, logits and every
 * gradient against the PyTorch QAT twin (tools/gen_quant_fixtures.py: the dense twin with
 * torch's fake_quantize ops in the four inner linear layers; llama per-token, gpt2
 * per-tensor ranges), finite differences where the loss is smooth (the final norm and the
 * fp32 head, downstream of every quantizer), qat_layers parsing, and that QAT changes the
 * forward only in the layers it names. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/model.h"
#include "harness.h"
#include "model_util.h"

/* config: layout V Vp maxT L NH C F tie B T seed per_tensor */
static fg_model *fixture_model_q(const int32_t *cf, const char *layers, int lsq)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, (fg_layout)cf[0]);
    cfg.vocab_size = cf[1];
    cfg.max_seq_len = cf[3];
    cfg.n_layer = cf[4];
    cfg.n_head = cf[5];
    cfg.d_model = cf[6];
    cfg.d_ff = cf[7];
    cfg.tie_embeddings = cf[8];
    snprintf(cfg.qat_layers, sizeof cfg.qat_layers, "%s", layers);
    cfg.qat_act = cf[12];
    cfg.qat_lsq = lsq;
    fg_model *m = fg_model_new(&cfg, cf[9], cf[10]);
    FG_CHECK(m != NULL, "fg_model_new: %s", fg_last_error());
    if (!m)
        return NULL;
    fg_test_hash_weights(m, (uint64_t)cf[11]);
    /* LSQ step factors as the twin's lsq_start: exact in binary, some channels clip */
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        if (strstr(t->name, ".lsq_step"))
            for (size_t r = 0; r < t->numel; r++)
                fg_model_params(m)[t->offset + r] = (float)((int)((7 * r) % 11) - 5) / 16.0f;
    }
    return m;
}

static fg_model *fixture_model(const int32_t *cf, const char *layers)
{
    return fixture_model_q(cf, layers, 0);
}

static void test_twin_q(const char *name, int lsq)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/fixtures/quant/%s.bin", name);
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path(rel)) != FG_OK) {
        FG_CHECK(0, "load fixture %s: %s", rel, fg_last_error());
        return;
    }
    const int32_t *cf = fg_fixture_get(&fx, "config")->data;
    int B = cf[9], T = cf[10];
    fg_model *m = fixture_model_q(cf, "qkv,attproj, fc,fcproj", lsq);
    fg_model *plain = fixture_model(cf, "");
    if (!m || !plain)
        goto out;
    const int32_t *in = fg_fixture_get(&fx, "inputs")->data, *tg = fg_fixture_get(&fx, "targets")->data;
    float loss = 0, loss_fp = 0, want = FG_FIX_F32(&fx, "loss")[0];
    FG_CHECK(fg_model_forward(m, in, tg, B, T, &loss) == FG_OK, "%s: forward: %s", name, fg_last_error());
    fg_model_forward(plain, in, tg, B, T, &loss_fp);
    /* 1e-4 as test_model (fp32 vs the float64 twin). Quantization moves this loss by
     * 1.3e-4 (llama) and 1.3e-3 (gpt2): the twin must agree far better than that, or the
     * check could pass with the quantizers off */
    FG_CHECK(fabs(loss - want) <= 1e-4 * fabs(want), "%s: loss %.7f, twin %.7f (fp32 model %.7f)", name, loss, want,
             loss_fp);
    FG_CHECK(fabs(loss - loss_fp) > 20 * fabs(loss - want), "%s: QAT loss %.7f vs fp32 %.7f: not told apart from %.7f",
             name, loss, loss_fp, want);
    const fg_fixture_tensor *lg = fg_fixture_get(&fx, "logits");
    char what[160];
    snprintf(what, sizeof what, "%s logits", name);
    /* 1e-5: measured 2.6e-7 (logits) and <= 5.7e-7 (gradients, FG_TEST_VERBOSE=1); a code
     * flipped at a rounding tie between fp32 and the float64 twin would cost ~1e-3 */
    fg_test_check_tensor(what, fg_model_logits(m), lg->data, lg->numel, 1e-5);
    fg_model_zero_grad(m);
    FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK, "%s: backward: %s", name, fg_last_error());
    const float *g = fg_model_grads(m);
    size_t covered = 0;
    double worst = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        char key[160];
        snprintf(key, sizeof key, "grad.%s", t->name);
        const fg_fixture_tensor *ref = fg_fixture_get(&fx, key);
        if (!ref || ref->numel != t->numel)
            continue;
        snprintf(what, sizeof what, "%s d%s", name, t->name);
        fg_test_check_tensor(what, g + t->offset, ref->data, t->numel, 1e-5);
        worst = fmax(worst, fg_test_max_rel_err(g + t->offset, ref->data, t->numel));
        covered += t->numel;
    }
    FG_CHECK(covered == fg_model_num_params(m), "%s: gradients compared for %zu of %zu params", name, covered,
             fg_model_num_params(m));
    if (getenv("FG_TEST_VERBOSE"))
        printf("%s: loss %.7f twin %.7f fp32 %.7f; logits err %.3g; worst gradient err %.3g\n", name, loss, want,
               loss_fp, fg_test_max_rel_err(fg_model_logits(m), lg->data, lg->numel), worst);
out:
    fg_model_delete(m);
    fg_model_delete(plain);
    fg_fixture_free(&fx);
}

static void test_twin(const char *name)
{
    test_twin_q(name, 0);
}

/* qat_quant = lsq: the learned step factors are parameters (h.L.qat.KIND.lsq_step, their
 * gradients compared with the rest; a wrong step gradient or a step not applied fails
 * here). No finite differences for them: LSQ's step gradient, (round(v) - v) inside the
 * range, is by design not the derivative of the quantized loss (round(v) there). */
/* Six decode steps of the int8 model m against the QAT model q (the same tokens, from
 * tok_mul * pos + tok_add mod V): *worst = the largest relative logit error of m against
 * q; *moved = that of other (a model quantized differently) against q, the size of the
 * effect each test must be far above. */
static void decode_compare(fg_model *m, fg_model *q, fg_model *other, int tok_mul, int tok_add, int V, double *worst,
                           double *moved)
{
    int Vp = fg_model_get_config(m)->padded_vocab;
    *worst = 0, *moved = 0;
    for (int pos = 0; pos < 6; pos++) {
        const float *a, *b, *c;
        int32_t tok = (int32_t)((pos * tok_mul + tok_add) % V);
        FG_CHECK(fg_model_decode_step(m, tok, pos, &a) == FG_OK, "int8 decode: %s", fg_last_error());
        fg_model_decode_step(q, tok, pos, &b);
        fg_model_decode_step(other, tok, pos, &c);
        *worst = fmax(*worst, fg_test_max_rel_err(a, b, (size_t)Vp));
        *moved = fmax(*moved, fg_test_max_rel_err(c, b, (size_t)Vp));
    }
}

static void test_lsq(void)
{
    test_twin_q("qat_lsq_llama_token", 1);
    const int32_t cf[13] = {0, 23, 64, 16, 2, 2, 32, 0, 0, 1, 16, 5, 0};
    fg_model *m = fixture_model_q(cf, "all", 1), *q = fixture_model_q(cf, "all", 1), *ste = fixture_model(cf, "all");
    if (!m || !q || !ste)
        goto out;
    FG_CHECK(fg_model_num_params(m) == fg_model_num_params(ste) + 2 * (3 * 32 + 32 + 2 * 128 + 32),
             "LSQ adds one factor per output row: %zu vs %zu params", fg_model_num_params(m), fg_model_num_params(ste));
    /* the int8 file holds the learned steps: decoding it is the LSQ model's forward */
    char path[512];
    snprintf(path, sizeof path, "%s/qat_lsq.int8", fg_test_tmpdir());
    FG_CHECK(fg_model_int8_save(m, "all", path) == FG_OK, "LSQ save: %s", fg_last_error());
    FG_CHECK(fg_model_int8_load(m, path) == FG_OK, "LSQ load: %s", fg_last_error());
    double worst, moved;
    decode_compare(m, q, ste, 5, 1, 23, &worst, &moved);
    FG_CHECK(worst < 1e-4 && moved > 100 * worst, "LSQ int8 vs LSQ QAT logits %.3g (LSQ vs STE steps %.3g)", worst,
             moved);
    if (getenv("FG_TEST_VERBOSE"))
        printf("LSQ int8 decode vs LSQ QAT: %.3g; LSQ vs STE: %.3g\n", worst, moved);
out:
    fg_model_delete(m);
    fg_model_delete(q);
    fg_model_delete(ste);
}

/* The loss is piecewise constant in every parameter upstream of a quantizer (the STE is
 * not its derivative), so finite differences can only check the parameters downstream of
 * all of them: the final norm and the head, which stays fp32. */
static void test_finite_diff(void)
{
    /* llama, V 23, maxT 8, L 2, NH 2, C 16, F 0 (default), untied, B 2, T 5, seed 7, per token */
    const int32_t cf[13] = {0, 23, 64, 8, 2, 2, 16, 0, 0, 2, 5, 7, 0};
    fg_model *m = fixture_model(cf, "all");
    if (!m)
        return;
    fg_rng r;
    fg_rng_seed(&r, 11);
    int32_t in[10], tg[10];
    for (int i = 0; i < 10; i++) {
        in[i] = (int32_t)fg_rng_below(&r, 23);
        tg[i] = (int32_t)fg_rng_below(&r, 23);
    }
    float loss, lp, lm;
    fg_model_zero_grad(m);
    fg_model_forward(m, in, tg, 2, 5, &loss);
    fg_model_backward(m, 1.0f);
    float *p = fg_model_params(m);
    const float *g = fg_model_grads(m);
    int bad = 0, checked = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        if (strcmp(t->name, "ln_f.weight") && strcmp(t->name, "lm_head.weight"))
            continue;
        for (int k = 0; k < 6; k++) {
            size_t at = t->offset + fg_rng_below(&r, (uint32_t)t->numel);
            float save = p[at], h = 1e-2f;
            p[at] = save + h;
            fg_model_forward(m, in, tg, 2, 5, &lp);
            p[at] = save - h;
            fg_model_forward(m, in, tg, 2, 5, &lm);
            p[at] = save;
            double fd = ((double)lp - (double)lm) / (2.0 * h);
            checked++;
            /* test_model's tolerance for the same differences */
            if (fabs(fd - g[at]) > 2e-2 * fabs(g[at]) + 1e-4 && bad++ < 3)
                FG_CHECK(0, "finite difference of %s: %.6g, backward %.6g", t->name, fd, g[at]);
        }
    }
    FG_CHECK(bad == 0 && checked == 12, "%d of %d finite differences off", bad, checked);
    fg_model_delete(m);
}

static void test_config(void)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, FG_LAYOUT_LLAMA);
    cfg.vocab_size = 30;
    cfg.max_seq_len = 8;
    cfg.n_layer = 1;
    cfg.n_head = 2;
    cfg.d_model = 16;
    snprintf(cfg.qat_layers, sizeof cfg.qat_layers, "qkv,router");
    fg_model *m = fg_model_new(&cfg, 1, 8);
    FG_CHECK(m == NULL && strstr(fg_last_error(), "unknown layer 'router' at byte 4"), "bad layer: %s",
             fg_last_error());
    fg_model_delete(m);
    /* QAT hooks the fp32 layers only: with bf16 it would silently do nothing (a merge
     * found this), so the config is refused */
    snprintf(cfg.qat_layers, sizeof cfg.qat_layers, "qkv");
    cfg.precision = FG_PRECISION_BF16;
    m = fg_model_new(&cfg, 1, 8);
    FG_CHECK(m == NULL && strstr(fg_last_error(), "qat_layers = \"qkv\" needs precision = fp32"), "qat + bf16: %s",
             fg_last_error());
    fg_model_delete(m);
    cfg.precision = FG_PRECISION_FP32;
    /* the head is quantized only when named */
    snprintf(cfg.qat_layers, sizeof cfg.qat_layers, "head");
    m = fg_model_new(&cfg, 1, 8);
    cfg.qat_layers[0] = 0;
    fg_model *plain = fg_model_new(&cfg, 1, 8);
    FG_CHECK(m && plain, "models: %s", fg_last_error());
    if (m && plain) {
        fg_test_hash_weights(m, 3);
        fg_test_hash_weights(plain, 3);
        int32_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tg[8] = {2, 3, 4, 5, 6, 7, 8, 9};
        float a, b;
        fg_model_forward(m, in, tg, 1, 8, &a);
        fg_model_forward(plain, in, tg, 1, 8, &b);
        FG_CHECK(a != b, "head QAT changed nothing (%g)", a);
    }
    fg_model_delete(m);
    fg_model_delete(plain);
}

/* ---- MoE: routed experts per expert and output channel, shared expert, dense layer ---- */

/* The MoE QAT twin's model (gen_quant_fixtures.py make_qat_moe) with its weights. */
static fg_model *moe_fixture_model(const fg_fixture *fx, const char *layers)
{
    const int32_t *ci = fg_fixture_get(fx, "config")->data;
    const float *cf = FG_FIX_F32(fx, "config_f");
    fg_model_config cfg;
    fg_model_config_default(&cfg, (fg_layout)ci[0]);
    cfg.vocab_size = ci[1], cfg.padded_vocab = ci[2], cfg.max_seq_len = ci[3], cfg.n_layer = ci[4];
    cfg.n_head = ci[5], cfg.d_model = ci[6], cfg.d_ff = ci[7], cfg.tie_embeddings = ci[8];
    cfg.moe.n_dense_layers = ci[11], cfg.moe.n_expert = ci[12], cfg.moe.n_expert_active = ci[13];
    cfg.moe.n_shared_expert = ci[14], cfg.moe.d_expert = ci[15], cfg.moe.balance_window = ci[16];
    cfg.moe.balance = (fg_balance)ci[17];
    cfg.moe.route_scale = cf[0], cfg.moe.balance_alpha = cf[1], cfg.moe.balance_gamma = cf[2];
    cfg.moe.capacity_factor = 0;
    snprintf(cfg.qat_layers, sizeof cfg.qat_layers, "%s", layers);
    fg_model *m = fg_model_new(&cfg, ci[9], ci[10]);
    FG_CHECK(m != NULL, "fg_model_new (MoE): %s", fg_last_error());
    if (!m)
        return NULL;
    size_t set = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        char key[160];
        snprintf(key, sizeof key, "param.%s", t->name);
        const fg_fixture_tensor *ft = fg_fixture_get(fx, key);
        if (ft && ft->numel == t->numel) {
            memcpy(fg_model_params(m) + t->offset, ft->data, t->numel * sizeof(float));
            set += t->numel;
        }
    }
    FG_CHECK(set == fg_model_num_params(m), "MoE twin weights cover %zu of %zu params", set, fg_model_num_params(m));
    return m;
}

/* Loss, logits and every gradient against the twin with the experts quantized; then
 * finite differences on what lies downstream of every quantizer (the last layer's router,
 * whose gates scale the quantized experts' outputs, the final norm and the head). */
static void test_moe_twin(void)
{
    const char *rel = "tests/fixtures/quant/qat_moe_llama_token.bin";
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path(rel)) != FG_OK) {
        FG_CHECK(0, "load fixture %s: %s", rel, fg_last_error());
        return;
    }
    const int32_t *ci = fg_fixture_get(&fx, "config")->data;
    int B = ci[9], T = ci[10], L = ci[4];
    fg_model *m = moe_fixture_model(&fx, "all"), *dense_only = moe_fixture_model(&fx, "qkv,attproj,fc,fcproj");
    if (!m || !dense_only)
        goto out;
    const int32_t *in = fg_fixture_get(&fx, "inputs")->data, *tg = fg_fixture_get(&fx, "targets")->data;
    float loss = 0, loss_d = 0, want = FG_FIX_F32(&fx, "loss")[0];
    fg_model_zero_grad(m);
    FG_CHECK(fg_model_forward(m, in, tg, B, T, &loss) == FG_OK, "MoE QAT forward: %s", fg_last_error());
    fg_model_forward(dense_only, in, tg, B, T, &loss_d);
    /* the experts' quantizers move this loss by ~8e-3 (the fixture's fp32 twin: 4.3048 vs
     * 4.3401): a model that skipped them could not agree to 1e-4 */
    FG_CHECK(fabs(loss - want) <= 1e-4 * fabs(want), "MoE QAT loss %.7f, twin %.7f (experts unquantized %.7f)", loss,
             want, loss_d);
    FG_CHECK(fabs(loss - loss_d) > 20 * fabs(loss - want), "MoE: experts' QAT not told apart (%.7f vs %.7f)", loss,
             loss_d);
    const fg_fixture_tensor *lg = fg_fixture_get(&fx, "logits");
    fg_test_check_tensor("MoE QAT logits", fg_model_logits(m), lg->data, lg->numel, 1e-5);
    FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK, "MoE backward: %s", fg_last_error());
    const float *g = fg_model_grads(m);
    int n_grad = 0, n_expert = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        char key[160], what[200];
        if (t->frozen)
            continue; /* the router bias and load history: state, no gradient in the twin */
        snprintf(key, sizeof key, "grad.%s", t->name);
        const fg_fixture_tensor *ref = fg_fixture_get(&fx, key);
        if (!ref || ref->numel != t->numel)
            continue;
        snprintf(what, sizeof what, "MoE QAT d%s", t->name);
        fg_test_check_tensor(what, g + t->offset, ref->data, t->numel, 1e-5);
        n_grad++;
        n_expert += strstr(t->name, ".moe.experts.") || strstr(t->name, ".moe.shared.");
    }
    FG_CHECK(n_grad > 20 && n_expert == 4 * (L - 1), "MoE: %d gradients compared, %d of the experts'", n_grad,
             n_expert);

    /* finite differences (the loss is smooth in these: no quantizer downstream) */
    char router[64];
    snprintf(router, sizeof router, "h.%d.moe.router.weight", L - 1);
    float *p = fg_model_params(m);
    fg_rng r;
    fg_rng_seed(&r, 5);
    int bad = 0, checked = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        if (strcmp(t->name, router) && strcmp(t->name, "ln_f.weight") && strcmp(t->name, "lm_head.weight"))
            continue;
        for (int k = 0; k < 4; k++) {
            size_t at = t->offset + fg_rng_below(&r, (uint32_t)t->numel);
            float save = p[at], h = 1e-2f, lp, lm;
            p[at] = save + h;
            fg_model_forward(m, in, tg, B, T, &lp);
            p[at] = save - h;
            fg_model_forward(m, in, tg, B, T, &lm);
            p[at] = save;
            double fd = ((double)lp - (double)lm) / (2.0 * h);
            checked++;
            if (fabs(fd - g[at]) > 2e-2 * fabs(g[at]) + 1e-4 && bad++ < 3)
                FG_CHECK(0, "MoE finite difference of %s: %.6g, backward %.6g", t->name, fd, g[at]);
        }
    }
    FG_CHECK(bad == 0 && checked == 12, "MoE: %d of %d finite differences off", bad, checked);
out:
    fg_model_delete(m);
    fg_model_delete(dense_only);
    fg_fixture_free(&fx);
}

/* ---- int8 inference ---- */

static size_t file_bytes(const char *path, unsigned char **out)
{
    char *d = NULL;
    size_t n = 0;
    FG_ASSERT(fg_read_file(path, (size_t)1 << 30, &d, &n) == FG_OK);
    *out = (unsigned char *)d;
    return n;
}

/* FNV-1a 64 of the first n - 8 bytes into the last 8: a file a buggy writer could make. */
static void reseal(unsigned char *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i + 8 < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    memcpy(b + n - 8, &h, 8);
}

static void expect_refused(fg_model *m, const char *path, const unsigned char *b, size_t n, const char *what,
                           const char *needle)
{
    fg_test_write_file(path, b, n);
    fg_status st = fg_model_int8_load(m, path);
    FG_CHECK(st != FG_OK && strstr(fg_last_error(), path) && strstr(fg_last_error(), needle),
             "%s: refused naming the file and '%s': %s", what, needle, st == FG_OK ? "(loaded)" : fg_last_error());
}

/* Decoding with the int8 weights file against the QAT model of the same weights (per
 * token, all four inner layers): the same codes and scales, only the GEMM differs (exact
 * integers, one rounding, vs fp32 products), so the logits agree closely; the file is
 * refused, naming it and the tensor, when corrupted or made for another model. */
static void test_int8(void)
{
    const int32_t cf[13] = {0, 23, 64, 16, 2, 2, 32, 0, 0, 1, 16, 5, 0};
    fg_model *m = fixture_model(cf, ""), *q = fixture_model(cf, "all"), *plain = fixture_model(cf, "");
    if (!m || !q || !plain)
        goto out;
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/qat_test.int8", fg_test_tmpdir());
    snprintf(bad, sizeof bad, "%s/qat_bad.int8", fg_test_tmpdir());
    FG_CHECK(fg_model_int8_save(m, "all", path) == FG_OK, "save: %s", fg_last_error());
    FG_CHECK(fg_model_int8_load(m, path) == FG_OK, "load: %s", fg_last_error());
    int V = 23, Vp = fg_model_get_config(m)->padded_vocab;
    double worst, moved;
    decode_compare(m, q, plain, 7, 3, V, &worst, &moved);
    /* measured ~1e-6 (FG_TEST_VERBOSE=1); quantization itself moves the logits ~1e-2 */
    FG_CHECK(worst < 1e-4 && moved > 100 * worst, "int8 vs QAT logits err %.3g (quantization moves them %.3g)", worst,
             moved);
    if (getenv("FG_TEST_VERBOSE"))
        printf("int8 decode vs QAT: %.3g; QAT vs fp32: %.3g\n", worst, moved);
    /* a prompt (the batched prefill) gives the same greedy continuation as the QAT model */
    int32_t prompt[5] = {1, 5, 9, 2, 7}, o1[16], o2[16];
    fg_sampler s = {.temperature = 0.0f};
    int n1 = fg_model_generate(m, prompt, 5, 8, -1, &s, o1), n2 = fg_model_generate(q, prompt, 5, 8, -1, &s, o2);
    FG_CHECK(n1 == 13 && n2 == 13 && !memcmp(o1, o2, sizeof(int32_t) * 13), "greedy int8 vs QAT: %d %d", n1, n2);

    unsigned char *b;
    size_t n = file_bytes(path, &b);
    /* header 24 bytes, then name[64] rows cols scales codes ... */
    b[n / 2] ^= 0x10;
    expect_refused(m, bad, b, n, "a flipped byte", "checksum mismatch");
    b[n / 2] ^= 0x10;
    expect_refused(m, bad, b, n - 5, "a truncated file", "checksum");
    float neg = -0.5f, save;
    memcpy(&save, b + 24 + 64 + 8 + 4 * 3, 4);
    memcpy(b + 24 + 64 + 8 + 4 * 3, &neg, 4);
    reseal(b, n);
    expect_refused(m, bad, b, n, "a negative scale", "tensor 'h.0.attn.qkv.weight': scale[3] = -0.5");
    memcpy(b + 24 + 64 + 8 + 4 * 3, &save, 4);
    char name[64] = "h.0.attn.proj.weight";
    memcpy(b + 24, name, sizeof name);
    reseal(b, n);
    expect_refused(m, bad, b, n, "a tensor of another shape", "tensor 'h.0.attn.proj.weight' is 96x32");
    memcpy(b + 24, "h.0.ln_1.weight", 16);
    reseal(b, n);
    expect_refused(m, bad, b, n, "a tensor that is no linear layer", "'h.0.ln_1.weight' (byte 24) is not a linear");
    fg_free(b);
    /* another model (wider FFN) */
    fg_model_config cfg = *fg_model_get_config(m);
    cfg.d_ff = 96;
    cfg.qat_layers[0] = 0;
    fg_model *other = fg_model_new(&cfg, 1, 16);
    FG_ASSERT(other);
    fg_status st = fg_model_int8_load(other, path);
    FG_CHECK(st != FG_OK && strstr(fg_last_error(), path) && strstr(fg_last_error(), "parameters"), "another model: %s",
             fg_last_error());
    fg_model_delete(other);
    /* refusals left m's int8 weights in place */
    const float *a, *c;
    fg_model_decode_step(m, 4, 0, &a);
    fg_model_decode_step(q, 4, 0, &c);
    FG_CHECK(fg_test_max_rel_err(a, c, (size_t)Vp) < 1e-4, "after the refusals m still decodes int8");
out:
    fg_model_delete(m);
    fg_model_delete(q);
    fg_model_delete(plain);
}

/* MoE int8: the routed experts' [E, 2H, C] / [E, C, H] tensors go into the file as E*2H
 * and E*C rows with a scale each; decoding runs each expert's block on the int8 GEMM and
 * agrees with the QAT model of the same weights (same codes), and the file names them. */
static void test_moe_int8(void)
{
    const char *rel = "tests/fixtures/quant/qat_moe_llama_token.bin";
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path(rel)) != FG_OK) {
        FG_CHECK(0, "load fixture %s: %s", rel, fg_last_error());
        return;
    }
    fg_model *m = moe_fixture_model(&fx, ""), *q = moe_fixture_model(&fx, "all"),
             *qd = moe_fixture_model(&fx, "qkv,attproj,fc,fcproj");
    if (!m || !q || !qd)
        goto out;
    char path[512];
    snprintf(path, sizeof path, "%s/qat_moe.int8", fg_test_tmpdir());
    FG_CHECK(fg_model_int8_save(m, "all", path) == FG_OK, "MoE save: %s", fg_last_error());
    FG_CHECK(fg_model_int8_load(m, path) == FG_OK, "MoE load: %s", fg_last_error());
    unsigned char *b;
    size_t n = file_bytes(path, &b);
    uint32_t nt;
    memcpy(&nt, b + 12, 4);
    int has_expert = 0;
    for (size_t i = 0; i + 26 < n; i++)
        has_expert += !memcmp(b + i, "h.1.moe.experts.fc.weight", 26);
    /* layer 0 dense: 4; layers 1, 2: qkv, attproj, experts fc and proj, shared fc and proj */
    FG_CHECK(nt == 4 + 2 * (2 + 4) && has_expert == 1, "MoE int8 file: %u tensors, experts.fc %d", nt, has_expert);
    fg_free(b);
    double worst, moved;
    decode_compare(m, q, qd, 11, 2, 70, &worst, &moved);
    /* the experts' quantization moves these logits far more than int8 vs fake quant */
    FG_CHECK(worst < 1e-4 && moved > 100 * worst, "MoE int8 vs QAT logits err %.3g (experts' quantization %.3g)", worst,
             moved);
    if (getenv("FG_TEST_VERBOSE"))
        printf("MoE int8 decode vs QAT: %.3g; experts quantized vs not: %.3g\n", worst, moved);
out:
    fg_model_delete(m);
    fg_model_delete(q);
    fg_model_delete(qd);
    fg_fixture_free(&fx);
}

int main(void)
{
    FG_TEST_BEGIN("model_qat");
    test_twin("qat_llama_token");
    test_twin("qat_gpt2_tensor");
    test_finite_diff();
    test_config();
    test_int8();
    test_lsq();
    test_moe_twin();
    test_moe_int8();
    return fg_test_end();
}
