/* test_model_levers.c: the architecture levers of issue 15 against their PyTorch twins
 * (tools/gen_lever_fixtures.py): cross-layer FFN sharing (seed form and plain, gpt2 and
 * llama, dense and MoE) with finite differences, parameter counts, decoding and config errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "harness.h"

/* float64 twin vs fp32 through 3-4 layers and a materialised weight chain */
#define TOL_TORCH 1e-4

/* A fixture's model with the fixture's weights, checked to cover the twin's table in its
 * order. NULL (after a failed check) when it cannot be built. */
static fg_model *fixture_model(const fg_fixture *fx, const char *name, int *B, int *T)
{
    const int32_t *ci = fg_fixture_get(fx, "config")->data;
    const float *cf = FG_FIX_F32(fx, "config_f");
    fg_model_config cfg;
    fg_model_config_default(&cfg, (fg_layout)ci[0]);
    cfg.vocab_size = ci[1], cfg.padded_vocab = ci[2], cfg.max_seq_len = ci[3], cfg.n_layer = ci[4];
    cfg.n_head = ci[5], cfg.d_model = ci[6], cfg.d_ff = ci[7], cfg.tie_embeddings = ci[8];
    *B = ci[9], *T = ci[10];
    if (ci[12] > 0) {
        cfg.moe.n_dense_layers = ci[11], cfg.moe.n_expert = ci[12], cfg.moe.n_expert_active = ci[13];
        cfg.moe.n_shared_expert = ci[14], cfg.moe.d_expert = ci[15], cfg.moe.balance_window = ci[16];
        cfg.moe.balance = (fg_balance)ci[17];
        cfg.moe.route_scale = cf[0], cfg.moe.balance_alpha = cf[1], cfg.moe.balance_gamma = cf[2];
    }
    cfg.ffn_share = (fg_ffn_share)ci[18], cfg.ffn_share_group = ci[19], cfg.ffn_share_learn_alpha = ci[20];
    cfg.ffn_share_rank = ci[21], cfg.ffn_share_alpha = cf[3];
    if (fg_fixture_get(fx, "config")->numel > 22)
        cfg.mtp_depth = ci[22], cfg.mtp_lambda = cf[4];
    fg_model *m = fg_model_new(&cfg, *B, *T);
    if (!m) {
        FG_CHECK(0, "%s: fg_model_new: %s", name, fg_last_error());
        return NULL;
    }
    float *params = fg_model_params(m);
    int nt = fg_model_num_tensors(m), fi = 0, bad_order = 0;
    size_t numel_sum = 0;
    for (int i = 0; i < nt; i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        char key[160];
        snprintf(key, sizeof key, "param.%s", t->name);
        while (fi < fx->n && strncmp(fx->t[fi].name, "param.", 6) != 0)
            fi++;
        bad_order += fi >= fx->n || strcmp(fx->t[fi].name, key) != 0;
        fi++;
        const fg_fixture_tensor *ft = fg_fixture_get(fx, key);
        FG_CHECK(ft && ft->numel == t->numel, "%s: %s missing or of another size in the twin", name, t->name);
        if (ft && ft->numel == t->numel)
            memcpy(params + t->offset, ft->data, t->numel * sizeof(float));
        numel_sum += t->numel;
    }
    int n_fix = 0;
    for (int i = 0; i < fx->n; i++)
        n_fix += strncmp(fx->t[i].name, "param.", 6) == 0;
    FG_CHECK(bad_order == 0 && n_fix == nt, "%s: %d tensors out of the twin's order; %d tensors, twin %d", name,
             bad_order, nt, n_fix);
    FG_CHECK(numel_sum == fg_model_num_params(m), "%s: tensors cover %zu of %zu params", name, numel_sum,
             fg_model_num_params(m));
    return m;
}

/* Twin check: loss, logits and every stored tensor's gradient. */
static void check_fixture(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/fixtures/levers_%s.bin", name);
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path(rel)) != FG_OK) {
        FG_CHECK(0, "cannot load %s: %s", rel, fg_last_error());
        return;
    }
    int B, T;
    fg_model *m = fixture_model(&fx, name, &B, &T);
    if (!m) {
        fg_fixture_free(&fx);
        return;
    }
    const fg_model_config *cfg = fg_model_get_config(m);
    const int32_t *in = fg_fixture_get(&fx, "inputs")->data, *tg = fg_fixture_get(&fx, "targets")->data;
    float loss = 0;
    fg_model_zero_grad(m);
    FG_CHECK(fg_model_forward(m, in, tg, B, T, &loss) == FG_OK, "%s: forward: %s", name, fg_last_error());
    FG_CHECK_CLOSE(loss, FG_FIX_F32(&fx, "loss")[0], 1e-5);
    FG_CHECK_CLOSE(fg_model_mtp_loss(m), FG_FIX_F32(&fx, "mtp_loss")[0], 1e-5);
    char what[200];
    snprintf(what, sizeof what, "%s.logits", name);
    fg_test_check_tensor(what, fg_model_logits(m), FG_FIX_F32(&fx, "logits"), (size_t)B * T * cfg->padded_vocab,
                         TOL_TORCH);
    FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK, "%s: backward: %s", name, fg_last_error());
    const float *grads = fg_model_grads(m);
    int n_grad = 0, n_share = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        char key[160];
        snprintf(key, sizeof key, "grad.%s", t->name);
        if (t->frozen)
            continue;
        const fg_fixture_tensor *ft = fg_fixture_get(&fx, key);
        if (!ft || ft->numel != t->numel)
            continue;
        snprintf(what, sizeof what, "%s.grad.%s", name, t->name);
        fg_test_check_tensor(what, grads + t->offset, ft->data, t->numel, TOL_TORCH);
        n_grad++;
        n_share += strstr(t->name, ".share_") != NULL;
    }
    FG_CHECK(n_grad > 20, "%s: only %d gradients compared", name, n_grad);
    FG_CHECK(cfg->ffn_share != FG_SHARE_SEED || n_share >= 4, "%s: only %d sharing tensors compared", name, n_share);

    /* gradients accumulate: a second backward of the same forward doubles every one
     * (the derived weights' gradient buffer is reset by each backward, not summed twice) */
    size_t np = fg_model_num_params(m);
    float *g1 = fg_malloc(np * sizeof(float));
    memcpy(g1, grads, np * sizeof(float));
    FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK, "%s: second backward", name);
    double worst = 0;
    for (size_t i = 0; i < np; i++)
        worst = fmax(worst, fabs(grads[i] - 2.0 * g1[i]) / (fabs(2.0 * g1[i]) + 1e-6));
    FG_CHECK(worst < 1e-4, "%s: two backwards give %.3g relative off 2x", name, worst);
    fg_free(g1);

    /* decoding with the KV cache (no forward before it on a fresh model: the derived
     * weights are materialised by the decode itself) equals the full forward */
    if (cfg->moe.n_expert == 0) {
        float *p0 = fg_malloc(np * sizeof(float));
        memcpy(p0, fg_model_params(m), np * sizeof(float));
        fg_model *d = fg_model_new(cfg, B, T);
        FG_ASSERT(d);
        memcpy(fg_model_params(d), p0, np * sizeof(float));
        int Vp = cfg->padded_vocab, V = cfg->vocab_size;
        double err = 0;
        const float *want = FG_FIX_F32(&fx, "logits");
        for (int t = 0; t < T; t++) {
            const float *lg = NULL;
            FG_CHECK(fg_model_decode_step(d, in[t], t, &lg) == FG_OK, "%s: decode: %s", name, fg_last_error());
            for (int v = 0; lg && v < V; v++)
                err = fmax(err, fabs(lg[v] - want[(size_t)t * Vp + v]));
        }
        FG_CHECK(err < 1e-4, "%s: decode logits off the twin's forward by %g", name, err);
        fg_model_delete(d);
        fg_free(p0);
    }
    fg_model_delete(m);
    fg_fixture_free(&fx);
}

/* Directional finite differences of the loss along a random +-1 direction over a whole
 * tensor (sharing tensors and the group's first matrix), against the analytic gradient. */
static void check_finite_differences(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/fixtures/levers_%s.bin", name);
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path(rel)) != FG_OK) {
        FG_CHECK(0, "cannot load %s: %s", rel, fg_last_error());
        return;
    }
    int B, T;
    fg_model *m = fixture_model(&fx, name, &B, &T);
    if (!m) {
        fg_fixture_free(&fx);
        return;
    }
    const int32_t *in = fg_fixture_get(&fx, "inputs")->data, *tg = fg_fixture_get(&fx, "targets")->data;
    float loss = 0;
    fg_model_zero_grad(m);
    FG_ASSERT(fg_model_forward(m, in, tg, B, T, &loss) == FG_OK && fg_model_backward(m, 1.0f) == FG_OK);
    float *p = fg_model_params(m);
    const float *g = fg_model_grads(m);
    fg_rng rng;
    fg_rng_seed(&rng, 5);
    float lam = fg_model_get_config(m)->mtp_lambda * (fg_model_get_config(m)->mtp_depth > 0);
    int n_checked = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        const char *fd_names[] = {
            "h.0.mlp.fc.weight",     "h.0.mlp.proj.weight", "mtp.0.eh.weight",       "mtp.0.ln_h.weight",
            "mtp.1.attn.qkv.weight", "mtp.1.ln_e.weight",   "mtp.1.mlp.proj.weight", "wte"};
        int hit = strstr(t->name, ".share_") != NULL;
        for (size_t q = 0; q < sizeof fd_names / sizeof fd_names[0]; q++)
            hit |= strcmp(t->name, fd_names[q]) == 0;
        if (!hit || (strcmp(t->name, "wte") == 0 && fg_model_get_config(m)->mtp_depth == 0))
            continue;
        double h = strstr(t->name, "share_alpha") ? 1e-2 : 2e-3, dot = 0;
        float *dir = fg_malloc(t->numel * sizeof(float));
        for (size_t j = 0; j < t->numel; j++) {
            dir[j] = fg_rng_uniform(&rng) < 0.5f ? -1.0f : 1.0f;
            dot += (double)dir[j] * g[t->offset + j];
        }
        float lp = 0, lm = 0;
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] += (float)h * dir[j];
        FG_ASSERT(fg_model_forward(m, in, tg, B, T, &lp) == FG_OK);
        lp += lam * fg_model_mtp_loss(m); /* backward differentiates loss + lambda * the MTP loss */
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] -= 2.0f * (float)h * dir[j];
        FG_ASSERT(fg_model_forward(m, in, tg, B, T, &lm) == FG_OK);
        lm += lam * fg_model_mtp_loss(m);
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] += (float)h * dir[j];
        double fd = ((double)lp - (double)lm) / (2.0 * h);
        /* fp32 losses of ~4 differ by ~1e-6 per evaluation: 1e-6 / h ~ 5e-4 absolute noise */
        FG_CHECK(fabs(fd - dot) <= 2e-2 * fabs(dot) + 2e-3, "%s: %s: finite difference %.6g, analytic %.6g", name,
                 t->name, fd, dot);
        n_checked++;
        fg_free(dir);
    }
    FG_CHECK(n_checked >= 2, "%s: only %d tensors checked by finite differences", name, n_checked);
    fg_model_delete(m);
    fg_fixture_free(&fx);
}

/* Parameters, active parameters and FLOPs of shared vs unshared models. */
static void test_counts(void)
{
    const fg_layout layouts[2] = {FG_LAYOUT_LLAMA, FG_LAYOUT_GPT2};
    for (int li = 0; li < 2; li++) {
        for (int moe = 0; moe < 2; moe++) {
            fg_model_config cfg;
            fg_model_config_default(&cfg, layouts[li]);
            cfg.n_layer = 6;
            if (moe) {
                cfg.moe.n_expert = 4, cfg.moe.n_expert_active = 2, cfg.moe.n_shared_expert = 1;
                cfg.moe.d_expert = 64, cfg.moe.n_dense_layers = 1;
            }
            fg_model *base = fg_model_new(&cfg, 1, 16);
            cfg.ffn_share = FG_SHARE_PLAIN, cfg.ffn_share_group = 3;
            fg_model *plain = fg_model_new(&cfg, 1, 16);
            cfg.ffn_share = FG_SHARE_SEED, cfg.ffn_share_rank = 4, cfg.ffn_share_learn_alpha = 1;
            fg_model *seed = fg_model_new(&cfg, 1, 16);
            FG_ASSERT(base && plain && seed);
            const fg_model_config *rc = fg_model_get_config(base);
            size_t C = (size_t)rc->d_model, F = (size_t)rc->d_ff, Fin = layouts[li] == FG_LAYOUT_LLAMA ? 2 * F : F;
            /* derived layers (G = 3): dense 1, 2, 4, 5 or, MoE from layer 1 on: 2, 3, 5 */
            size_t per, lowrank, nd = moe ? 3 : 4;
            if (!moe) {
                per = Fin * C + C * F, lowrank = 4 * (Fin + C + C + F);
            } else {
                size_t H = 64, E = 4;
                per = E * 3 * H * C + 3 * H * C;
                lowrank = 4 * (E * (2 * H + C + C + H) + (2 * H + C + C + H));
            }
            size_t nb = fg_model_num_params(base);
            FG_CHECK(fg_model_num_params(plain) == nb - nd * per, "plain: %zu params, base %zu, per layer %zu",
                     fg_model_num_params(plain), nb, per);
            FG_CHECK(fg_model_num_params(seed) == nb - nd * (per - lowrank - 1), "seed: %zu params, base %zu",
                     fg_model_num_params(seed), nb);
            /* a token multiplies by as many weights as without sharing */
            FG_CHECK(fg_model_num_active_params(plain) == fg_model_num_active_params(base) &&
                         fg_model_num_active_params(seed) == fg_model_num_active_params(base),
                     "active params %zu / %zu / %zu", fg_model_num_active_params(base),
                     fg_model_num_active_params(plain), fg_model_num_active_params(seed));
            double fb = fg_model_flops_per_token(base, 16), fs = fg_model_flops_per_token(seed, 16);
            FG_CHECK(fg_model_flops_per_token(plain, 16) == fb && fs > fb, "flops base %g plain %g seed %g", fb,
                     fg_model_flops_per_token(plain, 16), fs);
            /* init: a learned alpha starts at ffn_share_alpha; U V^T of the stored matrices' scale */
            fg_model_init_weights(seed, 3);
            const fg_tensor_info *ta = fg_model_find_tensor(seed, moe ? "h.3.ffn.share_alpha" : "h.1.ffn.share_alpha");
            FG_CHECK(ta && fg_model_params(seed)[ta->offset] == cfg.ffn_share_alpha, "share_alpha init");
            FG_CHECK(fg_model_find_tensor(seed, "h.1.mlp.fc.weight") == NULL || moe, "derived fc weight stored");
            fg_model_delete(base);
            fg_model_delete(plain);
            fg_model_delete(seed);
        }
    }
}

/* MTP: D modules of 2C^2 + a block (+ norms) more parameters; FLOPs add the modules'
 * 6 N, D more heads and D more attentions. */
static void test_mtp_counts(void)
{
    for (int gpt2 = 0; gpt2 < 2; gpt2++) {
        fg_model_config cfg;
        fg_model_config_default(&cfg, gpt2 ? FG_LAYOUT_GPT2 : FG_LAYOUT_LLAMA);
        fg_model *base = fg_model_new(&cfg, 2, 16);
        cfg.mtp_depth = 2;
        fg_model *mtp = fg_model_new(&cfg, 2, 16);
        FG_ASSERT(base && mtp);
        const fg_model_config *rc = fg_model_get_config(base);
        size_t C = (size_t)rc->d_model, F = (size_t)rc->d_ff, Fin = gpt2 ? F : 2 * F, Vp = (size_t)rc->padded_vocab;
        size_t block = 3 * C * C + C * C + Fin * C + C * F + 2 * C + (gpt2 ? 3 * C + C + Fin + C + 2 * C : 0);
        size_t module = 2 * C * C + block + 3 * C + (gpt2 ? 3 * C : 0);
        FG_CHECK(fg_model_num_params(mtp) == fg_model_num_params(base) + 2 * module,
                 "mtp: %zu params, base %zu + 2 x %zu", fg_model_num_params(mtp), fg_model_num_params(base), module);
        double want = fg_model_flops_per_token(base, 16) + 6.0 * 2 * module + 6.0 * 2 * C * Vp + 6.0 * 2 * 16 * C;
        FG_CHECK_CLOSE(fg_model_flops_per_token(mtp, 16), want, 1e-12);
        fg_model_act_bytes ab, am;
        fg_model_activation_bytes(base, &ab);
        fg_model_activation_bytes(mtp, &am);
        FG_CHECK(am.saved > ab.saved + 2 * 32 * Vp * sizeof(float), "mtp activations %zu vs %zu", am.saved, ab.saved);
        /* no targets: logits only, no MTP loss */
        int32_t in[16] = {0};
        FG_CHECK(fg_model_forward(mtp, in, NULL, 1, 16, NULL) == FG_OK && fg_model_mtp_loss(mtp) == 0.0f,
                 "forward without targets");
        fg_model_delete(base);
        fg_model_delete(mtp);
    }
}

static void test_config_errors(void)
{
    struct {
        int share, group, rank, learn;
        float alpha;
        fg_precision prec;
        const char *qat, *msg;
    } bad[] = {
        {7, 2, 8, 0, 0.5f, FG_PRECISION_FP32, "", "ffn_share = 7"},
        {FG_SHARE_SEED, 0, 8, 0, 0.5f, FG_PRECISION_FP32, "", "ffn_share_group = 0"},
        {FG_SHARE_SEED, 2, 0, 0, 0.5f, FG_PRECISION_FP32, "", "ffn_share_rank = 0"},
        {FG_SHARE_SEED, 2, 8, 0, 1.5f, FG_PRECISION_FP32, "", "ffn_share_alpha = 1.5"},
        {FG_SHARE_SEED, 2, 8, 0, NAN, FG_PRECISION_FP32, "", "ffn_share_alpha = nan"},
        {FG_SHARE_SEED, 2, 8, 2, 0.5f, FG_PRECISION_FP32, "", "ffn_share_learn_alpha = 2"},
        {FG_SHARE_PLAIN, 2, 8, 0, 0.5f, FG_PRECISION_BF16, "", "needs precision = fp32"},
        {FG_SHARE_SEED, 2, 8, 0, 0.5f, FG_PRECISION_FP32, "fc", "qat_layers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fg_model_config cfg;
        fg_model_config_default(&cfg, FG_LAYOUT_LLAMA);
        cfg.ffn_share = (fg_ffn_share)bad[i].share, cfg.ffn_share_group = bad[i].group;
        cfg.ffn_share_rank = bad[i].rank, cfg.ffn_share_learn_alpha = bad[i].learn;
        cfg.ffn_share_alpha = bad[i].alpha, cfg.precision = bad[i].prec;
        snprintf(cfg.qat_layers, sizeof cfg.qat_layers, "%s", bad[i].qat);
        fg_status st = fg_model_config_validate(&cfg);
        FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), bad[i].msg), "case %zu: status %d, message '%s'", i,
                 (int)st, fg_last_error());
    }
    const struct {
        int depth;
        float lambda;
        fg_precision prec;
        const char *msg;
    } mbad[] = {{17, 0.3f, FG_PRECISION_FP32, "mtp_depth = 17"},
                {-1, 0.3f, FG_PRECISION_FP32, "mtp_depth = -1"},
                {1, -0.5f, FG_PRECISION_FP32, "mtp_lambda = -0.5"},
                {1, INFINITY, FG_PRECISION_FP32, "mtp_lambda = inf"},
                {1, 0.3f, FG_PRECISION_FP8, "needs precision = fp32"}};
    for (size_t i = 0; i < sizeof mbad / sizeof mbad[0]; i++) {
        fg_model_config cfg;
        fg_model_config_default(&cfg, FG_LAYOUT_LLAMA);
        cfg.mtp_depth = mbad[i].depth, cfg.mtp_lambda = mbad[i].lambda, cfg.precision = mbad[i].prec;
        fg_status st = fg_model_config_validate(&cfg);
        FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), mbad[i].msg), "mtp case %zu: status %d, message '%s'",
                 i, (int)st, fg_last_error());
    }
    /* off: the sharing fields are not looked at */
    fg_model_config cfg;
    fg_model_config_default(&cfg, FG_LAYOUT_GPT2);
    cfg.ffn_share_rank = 0;
    FG_CHECK(fg_model_config_validate(&cfg) == FG_OK, "ffn_share none with rank 0: %s", fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("model_levers");
    fg_kernels_init(NULL);
    const char *cases[] = {"share_llama_seed",     "share_gpt2_seed",      "share_gpt2_plain",
                           "share_llama_moe_seed", "share_gpt2_moe_plain", "mtp_llama_d2",
                           "mtp_gpt2_d1",          "mtp_llama_moe_d1",     "all_gpt2_moe"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_fixture(cases[i]);
    check_finite_differences("share_llama_seed");
    check_finite_differences("share_gpt2_seed");
    check_finite_differences("share_gpt2_plain");
    check_finite_differences("mtp_llama_d2");
    check_finite_differences("mtp_gpt2_d1");
    test_counts();
    test_mtp_counts();
    test_config_errors();
    return fg_test_end();
}
