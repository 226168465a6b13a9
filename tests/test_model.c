/* test_model.c: the dense model against its PyTorch twin (tools/gen_model_fixtures.py:
 * logits, loss, every parameter's gradient, a 10-step AdamW trajectory, for llama and
 * gpt2), central finite differences, overfitting one batch, KV-cache decoding against
 * the full forward, the sampler, llm.c checkpoint round trip and corrupt files, and
 * config validation messages. Runs with auto-dispatched and reference kernels (ctest).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "harness.h"
#include "model_util.h"

/* ---- weights shared with the twin: a splitmix64 hash of the flat index ---- */

static fg_model *tiny_model(fg_layout layout, int V, int maxT, int L, int NH, int C, int B, int T)
{
    fg_model_config cfg;
    fg_model_config_default(&cfg, layout);
    cfg.vocab_size = V;
    cfg.max_seq_len = maxT;
    cfg.n_layer = L;
    cfg.n_head = NH;
    cfg.d_model = C;
    fg_model *m = fg_model_new(&cfg, B, T);
    FG_CHECK(m != NULL, "fg_model_new: %s", fg_last_error());
    return m;
}

static void random_tokens(int32_t *x, int n, int V, fg_rng *r)
{
    for (int i = 0; i < n; i++)
        x[i] = (int32_t)fg_rng_below(r, (uint32_t)V);
}

/* ---- against PyTorch ---- */

static void test_fixture(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/fixtures/model/%s.bin", name);
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path(rel)) != FG_OK) {
        FG_CHECK(0, "load fixture %s: %s", rel, fg_last_error());
        return;
    }
    const int32_t *cf = fg_fixture_get(&fx, "config")->data;
    /* config: layout V Vp maxT L NH C F tie B T seed */
    fg_model_config cfg;
    fg_model_config_default(&cfg, (fg_layout)cf[0]);
    cfg.vocab_size = cf[1];
    cfg.padded_vocab = 0; /* the default rounding must give the twin's Vp */
    cfg.max_seq_len = cf[3];
    cfg.n_layer = cf[4];
    cfg.n_head = cf[5];
    cfg.d_model = cf[6];
    cfg.d_ff = cf[7];
    cfg.tie_embeddings = cf[8];
    int B = cf[9], T = cf[10];
    /* capacity larger than the batch: smaller B, T than at creation must work */
    fg_model *m = fg_model_new(&cfg, B + 1, cfg.max_seq_len);
    FG_CHECK(m != NULL, "%s: fg_model_new: %s", name, fg_last_error());
    if (!m)
        goto out;
    FG_CHECK(fg_model_get_config(m)->padded_vocab == cf[2], "%s: Vp %d, twin %d", name,
             fg_model_get_config(m)->padded_vocab, cf[2]);
    fg_test_hash_weights(m, (uint64_t)cf[11]);
    size_t np = fg_model_num_params(m);

    const fg_fixture_tensor *lg = fg_fixture_get(&fx, "logits");
    float loss = 0;
    fg_status st =
        fg_model_forward(m, fg_fixture_get(&fx, "inputs")->data, fg_fixture_get(&fx, "targets")->data, B, T, &loss);
    FG_CHECK(st == FG_OK, "%s: forward: %s", name, fg_last_error());
    /* 1e-4 relative: the twin runs in float64, we in fp32 with different summation
     * orders; observed errors are ~1e-6, the bound is 1e-4. */
    FG_CHECK(fabs(loss - FG_FIX_F32(&fx, "loss")[0]) <= 1e-4 * fabs(FG_FIX_F32(&fx, "loss")[0]),
             "%s: loss %.7f, PyTorch %.7f", name, loss, FG_FIX_F32(&fx, "loss")[0]);
    char what[160];
    snprintf(what, sizeof what, "%s logits", name);
    fg_test_check_tensor(what, fg_model_logits(m), lg->data, lg->numel, 1e-4);

    fg_model_zero_grad(m);
    FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK, "%s: backward: %s", name, fg_last_error());
    const float *g = fg_model_grads(m);
    size_t covered = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        char key[160];
        snprintf(key, sizeof key, "grad.%s", t->name);
        const fg_fixture_tensor *ref = fg_fixture_get(&fx, key);
        if (!ref)
            continue;
        FG_CHECK(ref->numel == t->numel, "%s: %s has %zu elements, twin %zu", name, t->name, t->numel, ref->numel);
        if (ref->numel != t->numel)
            continue;
        snprintf(what, sizeof what, "%s d%s", name, t->name);
        fg_test_check_tensor(what, g + t->offset, ref->data, t->numel, 1e-4);
        covered += t->numel;
    }
    FG_CHECK(covered == np, "%s: gradients compared for %zu of %zu params", name, covered, np);

    /* loss_scale multiplies every gradient (exactly: it scales dlogits once) */
    float *g1 = malloc(np * sizeof(float));
    memcpy(g1, g, np * sizeof(float));
    fg_model_zero_grad(m);
    fg_model_backward(m, 4.0f);
    double e = 0;
    for (size_t i = 0; i < np; i++)
        e = fmax(e, fabs(g[i] - 4.0f * g1[i]));
    double gmax = 0; /* rescaling dlogits rounds once per element: 1e-6 of the scale is ample */
    for (size_t i = 0; i < np; i++)
        gmax = fmax(gmax, fabs(g1[i]));
    FG_CHECK(e <= 1e-6 * 4.0 * gmax, "%s: loss_scale 4 off by %g", name, e);
    /* backward again after the same forward (scale 4 then 1) accumulates: 5x; the
     * logits of the forward are still there */
    fg_model_backward(m, 1.0f);
    e = 0;
    for (size_t i = 0; i < np; i++)
        e = fmax(e, fabs(g[i] - 5.0f * g1[i]));
    FG_CHECK(e <= 1e-6 * 5.0 * gmax, "%s: second backward off by %g", name, e);
    snprintf(what, sizeof what, "%s logits after backward", name);
    fg_test_check_tensor(what, fg_model_logits(m), lg->data, lg->numel, 1e-4);
    free(g1);

    /* 10 AdamW steps (lr 1e-3, betas 0.9/0.95, wd 0.1 on everything) against
     * torch.optim.AdamW. Tolerance 1e-4 relative: float32 vs float64 gradients move
     * Adam's normalised steps only where a gradient is ~0, and those barely move the loss. */
    const fg_fixture_tensor *traj = fg_fixture_get(&fx, "adamw_losses");
    float *am = calloc(np, sizeof(float)), *av = calloc(np, sizeof(float));
    fg_test_hash_weights(m, (uint64_t)cf[11]);
    for (int step = 0; traj && step < (int)traj->numel; step++) {
        fg_model_zero_grad(m);
        fg_model_forward(m, fg_fixture_get(&fx, "inputs")->data, fg_fixture_get(&fx, "targets")->data, B, T, &loss);
        FG_CHECK(fabs(loss - ((float *)traj->data)[step]) <= 1e-4 * fabs(((float *)traj->data)[step]),
                 "%s: AdamW step %d loss %.7f, PyTorch %.7f", name, step, loss, ((float *)traj->data)[step]);
        fg_model_backward(m, 1.0f);
        fg_adamw_update(fg_model_params(m), fg_model_grads(m), am, av, np, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step + 1);
    }
    free(am);
    free(av);
out:
    fg_model_delete(m);
    fg_fixture_free(&fx);
}

/* ---- finite differences ---- */

/* Central differences of the fp32 loss at a few parameters of every tensor, the one
 * with the largest gradient plus two random ones. h = 1e-2 on weights ~0.1: the
 * truncation error h^2 f'''/6 and the rounding error ulp(loss)/h ~ 3e-5 are both far
 * below the tolerance 2e-2 |g| + 1e-4 (absolute part for near-zero gradients). */
static void test_finite_diff(fg_layout layout)
{
    const char *nm = layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama";
    int B = 2, T = 5, V = 23;
    fg_model *m = tiny_model(layout, V, 8, 2, 2, 16, B, T);
    if (!m)
        return;
    fg_test_hash_weights(m, 7);
    fg_rng r;
    fg_rng_seed(&r, 11);
    int32_t in[10], tg[10];
    random_tokens(in, B * T, V, &r);
    random_tokens(tg, B * T, V, &r);
    tg[2] = -1;
    int bad = 0, checked = fg_test_fd_tensors(m, in, tg, B, T, NULL, &r, nm, &bad);
    FG_CHECK(bad == 0 && checked > 0, "%s: %d of %d finite differences off", nm, bad, checked);
    fg_model_delete(m);
}

/* ---- overfitting one batch ---- */

static void test_overfit(fg_layout layout)
{
    const char *nm = layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama";
    int B = 2, T = 16, V = 64;
    fg_model *m = tiny_model(layout, V, 16, 2, 4, 32, B, T);
    if (!m)
        return;
    fg_model_init_weights(m, 3);
    fg_rng r;
    fg_rng_seed(&r, 5);
    int32_t in[32], tg[32];
    random_tokens(in, B * T, V, &r);
    random_tokens(tg, B * T, V, &r);
    size_t np = fg_model_num_params(m);
    float *am = calloc(np, sizeof(float)), *av = calloc(np, sizeof(float));
    float loss = 0, first = 0;
    int step;
    for (step = 1; step <= 300; step++) {
        fg_model_zero_grad(m);
        fg_model_forward(m, in, tg, B, T, &loss);
        if (step == 1)
            first = loss;
        if (loss < 0.1f)
            break;
        fg_model_backward(m, 1.0f);
        fg_adamw_update(fg_model_params(m), fg_model_grads(m), am, av, np, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, step);
    }
    /* random targets: the only way below 0.1 is memorising the batch */
    FG_CHECK(loss < 0.1f, "%s: overfit loss %.4f after %d steps (start %.4f)", nm, loss, step, first);
    if (getenv("FG_TEST_VERBOSE"))
        printf("%s: overfit to %.4f in %d steps\n", nm, loss, step);
    FG_CHECK(fabsf(first - logf((float)V)) < 0.1f, "%s: initial loss %.4f, expected about ln V = %.4f", nm, first,
             logf((float)V));
    free(am);
    free(av);
    fg_model_delete(m);
}

/* ---- KV cache and sampling ---- */

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static void test_generate(fg_layout layout)
{
    const char *nm = layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama";
    int T = 12, V = 70;
    fg_model *m = tiny_model(layout, V, T, 2, 4, 32, 2, T);
    if (!m)
        return;
    fg_test_hash_weights(m, 9);
    int Vp = fg_model_get_config(m)->padded_vocab;
    fg_rng r;
    fg_rng_seed(&r, 13);
    int32_t seq[12];
    random_tokens(seq, T, V, &r);
    FG_CHECK(fg_model_forward(m, seq, NULL, 1, T, NULL) == FG_OK, "%s: forward without targets", nm);
    float *full = malloc((size_t)T * Vp * sizeof(float));
    memcpy(full, fg_model_logits(m), (size_t)T * Vp * sizeof(float));
    FG_CHECK(fg_model_backward(m, 1.0f) != FG_OK, "%s: backward after a logits-only forward is refused", nm);
    /* one token at a time through the cache = the causal full forward at every
     * position; 1e-4: different summation orders only (observed ~1e-6) */
    for (int t = 0; t < T; t++) {
        const float *lg = NULL;
        FG_CHECK(fg_model_decode_step(m, seq[t], t, &lg) == FG_OK, "%s: decode step %d: %s", nm, t, fg_last_error());
        char what[64];
        snprintf(what, sizeof what, "%s kv-cache logits at t=%d", nm, t);
        if (lg)
            fg_test_check_tensor(what, lg, full + (size_t)t * Vp, (size_t)Vp, 1e-4);
    }
    FG_CHECK(memcmp(full, fg_model_logits(m), (size_t)T * Vp * sizeof(float)) == 0,
             "%s: decoding left the training activations alone", nm);
    /* generate's batched prompt prefill fills the cache as decode steps do: the step
     * after a 6-token prompt gives the full forward's logits at position 6, and the
     * prefill's own logits (position 5) pick the full forward's argmax */
    {
        int32_t tmp[12];
        fg_sampler g0 = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
        int np = fg_model_generate(m, seq, 6, 1, -1, &g0, tmp);
        FG_CHECK(np == 7 && tmp[6] == argmax(full + 5 * (size_t)Vp, V), "%s: prefill logits pick the argmax", nm);
        const float *lg = NULL;
        FG_CHECK(fg_model_decode_step(m, seq[6], 6, &lg) == FG_OK, "%s: step after prefill", nm);
        if (lg)
            fg_test_check_tensor("kv-cache logits after a 6-token prefill", lg, full + 6 * (size_t)Vp, (size_t)Vp,
                                 1e-4);
    }

    /* greedy: each new token is the argmax of the full forward at the previous position */
    fg_sampler s = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    int32_t out[12], out2[12];
    int n = fg_model_generate(m, seq, 3, 100, -1, &s, out);
    FG_CHECK(n == T, "%s: generation stops at maxT: %d tokens", nm, n);
    FG_CHECK(memcmp(out, seq, 3 * sizeof(int32_t)) == 0, "%s: prompt copied", nm);
    fg_model_forward(m, out, NULL, 1, n, NULL);
    int agree = 0;
    for (int t = 3; t < n; t++)
        agree += out[t] == argmax(fg_model_logits(m) + (size_t)(t - 1) * Vp, V);
    FG_CHECK(agree == n - 3, "%s: greedy tokens match the full forward's argmax at %d of %d positions", nm, agree,
             n - 3);
    int n2 = fg_model_generate(m, seq, 3, 4, out[3], &s, out2);
    FG_CHECK(n2 == 4 && out2[3] == out[3], "%s: stops right after the stop token (%d tokens)", nm, n2);
    n2 = fg_model_generate(m, seq, 3, 2, -1, &s, out2);
    FG_CHECK(n2 == 5, "%s: n_new = 2 gives 5 tokens, got %d", nm, n2);

    /* top-k = 3 at temperature 1: every sampled token is among the 3 best of the full
     * forward; the same rng seed gives the same tokens */
    fg_sampler k3 = {.temperature = 1.0f, .top_k = 3, .top_p = 1.0f};
    fg_rng_seed(&k3.rng, 77);
    n = fg_model_generate(m, seq, 2, 10, -1, &k3, out);
    fg_model_forward(m, out, NULL, 1, n, NULL);
    int in_top = 0;
    for (int t = 2; t < n; t++) {
        const float *lg = fg_model_logits(m) + (size_t)(t - 1) * Vp;
        int rank = 0;
        for (int v = 0; v < V; v++)
            rank += lg[v] > lg[out[t]];
        in_top += rank < 3;
    }
    FG_CHECK(in_top == n - 2, "%s: top-k 3 samples in the top 3 at %d of %d positions", nm, in_top, n - 2);
    fg_rng_seed(&k3.rng, 77);
    n2 = fg_model_generate(m, seq, 2, 10, -1, &k3, out2);
    FG_CHECK(n2 == n && memcmp(out, out2, (size_t)n * sizeof(int32_t)) == 0, "%s: same seed, same sample", nm);
    /* top-p tiny keeps only the most likely token: equals greedy */
    fg_sampler p0 = {.temperature = 0.7f, .top_k = 0, .top_p = 1e-6f};
    fg_rng_seed(&p0.rng, 1);
    n = fg_model_generate(m, seq, 3, 9, -1, &p0, out);
    n2 = fg_model_generate(m, seq, 3, 9, -1, &s, out2);
    FG_CHECK(n == n2 && memcmp(out, out2, (size_t)n * sizeof(int32_t)) == 0, "%s: top-p 1e-6 equals greedy", nm);
    /* temperature 0.5 over the whole vocabulary: the empirical distribution of the
     * token after a 1-token prompt follows softmax(logits / 0.5). Threshold: twice the
     * expected total variation of n draws, 0.5 sum_v sqrt(2 p_v (1 - p_v) / (pi n)). */
    fg_model_forward(m, seq, NULL, 1, 1, NULL);
    const float *lg = fg_model_logits(m);
    double pr[70], cnt[70] = {0}, mx = lg[argmax(lg, V)], sum = 0, etv = 0;
    for (int v = 0; v < V; v++)
        sum += pr[v] = exp((lg[v] - mx) / 0.5);
    int draws = 8000;
    for (int v = 0; v < V; v++)
        etv += 0.5 * sqrt(2.0 * (pr[v] / sum) * (1.0 - pr[v] / sum) / (3.14159265 * draws));
    fg_sampler t1 = {.temperature = 0.5f, .top_k = 0, .top_p = 1.0f};
    fg_rng_seed(&t1.rng, 3);
    for (int i = 0; i < draws; i++) {
        fg_model_generate(m, seq, 1, 1, -1, &t1, out);
        cnt[out[1]] += 1;
    }
    double tv = 0;
    for (int v = 0; v < V; v++)
        tv += 0.5 * fabs(cnt[v] / draws - pr[v] / sum);
    FG_CHECK(tv < 2.0 * etv, "%s: sampled distribution off by total variation %.4f (expected ~%.4f)", nm, tv, etv);
    FG_CHECK(fg_model_generate(m, seq, 0, 3, -1, &s, out) < 0, "%s: empty prompt refused", nm);
    free(full);
    fg_model_delete(m);
}

/* ---- llm.c checkpoint ---- */

static int write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* The file plus 64 zero bytes of slack: the corrupt-file cases write a few bytes past it. */
static void *read_bytes(const char *path, size_t *n)
{
    char *p, *q;
    if (fg_read_file(path, 0, &p, n) != FG_OK)
        return NULL;
    if (!(q = fg_realloc(p, *n + 64))) {
        fg_free(p);
        return NULL;
    }
    memset(q + *n, 0, 64);
    return q;
}

static void expect_load_error(const char *path, const char *what, const char *needle)
{
    fg_model *m = fg_model_load_llmc(path, 1, 8);
    const char *e = fg_last_error();
    FG_CHECK(m == NULL, "%s: load refused", what);
    FG_CHECK(strstr(e, path) != NULL && strstr(e, needle) != NULL, "%s: message '%s' names the file and '%s'", what, e,
             needle);
    fg_model_delete(m);
}

static void test_llmc(void)
{
    int B = 2, T = 8, V = 70;
    fg_model *m = tiny_model(FG_LAYOUT_GPT2, V, 16, 2, 4, 32, B, T);
    if (!m)
        return;
    fg_model_init_weights(m, 21);
    fg_rng r;
    fg_rng_seed(&r, 2);
    int32_t in[16], tg[16];
    random_tokens(in, B * T, V, &r);
    random_tokens(tg, B * T, V, &r);
    float l1 = 0, l2 = -1;
    fg_model_forward(m, in, tg, B, T, &l1);
    char path[512];
    snprintf(path, sizeof path, "%s/tiny.bin", fg_test_tmpdir());
    FG_CHECK(fg_model_save_llmc(m, path) == FG_OK, "save_llmc: %s", fg_last_error());
    fg_model *m2 = fg_model_load_llmc(path, B, T);
    FG_CHECK(m2 != NULL, "load_llmc: %s", fg_last_error());
    if (m2) {
        FG_CHECK(fg_model_num_params(m2) == fg_model_num_params(m) &&
                     memcmp(fg_model_params(m2), fg_model_params(m), fg_model_num_params(m) * sizeof(float)) == 0,
                 "round trip keeps every parameter bit for bit");
        fg_model_forward(m2, in, tg, B, T, &l2);
        FG_CHECK(l1 == l2, "round trip keeps the loss: %.9g vs %.9g", l1, l2);
        const fg_model_config *c2 = fg_model_get_config(m2);
        FG_CHECK(c2->vocab_size == V && c2->padded_vocab == 128 && c2->max_seq_len == 16 && c2->n_layer == 2 &&
                     c2->n_head == 4 && c2->d_model == 32,
                 "header read back");
    }
    fg_model_delete(m2);

    size_t n = 0;
    uint8_t *bytes = read_bytes(path, &n);
    FG_CHECK(bytes && n == 1024 + 4 * fg_model_num_params(m), "file is header + fp32 params (%zu bytes)", n);
    if (bytes) {
        int32_t *h = (int32_t *)bytes;
        FG_CHECK(h[0] == 20240326 && h[1] == 3 && h[7] == 128, "llm.c v3 header");
        /* wte first: llm.c order */
        FG_CHECK(memcmp(bytes + 1024, fg_model_params(m), 4 * 16) == 0, "wte comes first");
        char bad[600];
        snprintf(bad, sizeof bad, "%s/bad_magic.bin", fg_test_tmpdir());
        h[0] = 12345;
        write_bytes(bad, bytes, n);
        expect_load_error(bad, "wrong magic", "magic");
        h[0] = 20240326;
        h[1] = 5;
        snprintf(bad, sizeof bad, "%s/bad_version.bin", fg_test_tmpdir());
        write_bytes(bad, bytes, n);
        expect_load_error(bad, "bf16 version", "version 5");
        h[1] = 3;
        snprintf(bad, sizeof bad, "%s/truncated.bin", fg_test_tmpdir());
        write_bytes(bad, bytes, n - 100);
        expect_load_error(bad, "truncated", "truncated");
        snprintf(bad, sizeof bad, "%s/short_header.bin", fg_test_tmpdir());
        write_bytes(bad, bytes, 100);
        expect_load_error(bad, "short header", "truncated");
        snprintf(bad, sizeof bad, "%s/long.bin", fg_test_tmpdir());
        write_bytes(bad, bytes, n + 4);
        expect_load_error(bad, "trailing bytes", "wrong size");
        h[5] = 5; /* NH 5 does not divide C 32 */
        snprintf(bad, sizeof bad, "%s/bad_header.bin", fg_test_tmpdir());
        write_bytes(bad, bytes, n);
        expect_load_error(bad, "inconsistent header", "n_head = 5");
        h[5] = 4;
        h[6] = 64; /* C 64: the file is now too short for its header */
        snprintf(bad, sizeof bad, "%s/wrong_size.bin", fg_test_tmpdir());
        write_bytes(bad, bytes, n);
        expect_load_error(bad, "header/size mismatch", "truncated");
        h[4] = 4000; /* L 4000 C 64: 800 MB implied; refused from the size, nothing allocated */
        snprintf(bad, sizeof bad, "%s/huge_header.bin", fg_test_tmpdir());
        write_bytes(bad, bytes, n);
        fg_mem_fail_after(1); /* any allocation before the size check would fail instead */
        expect_load_error(bad, "huge header, refused before allocating", "truncated");
        fg_mem_fail_after(0);
        h[4] = 2;
        snprintf(bad, sizeof bad, "%s/absent.bin", fg_test_tmpdir());
        expect_load_error(bad, "missing file", "cannot open");
    }
    fg_free(bytes);
    fg_model_delete(m);

    fg_model *ll = tiny_model(FG_LAYOUT_LLAMA, V, 16, 1, 4, 32, 1, 8);
    if (ll) {
        FG_CHECK(fg_model_save_llmc(ll, path) == FG_ERR_UNSUPPORTED, "llama cannot be saved as llm.c");
        fg_model_delete(ll);
    }
}

/* ---- config, tables, bad calls ---- */

static void expect_invalid(fg_model_config *c, fg_status want, const char *needle)
{
    fg_status st = fg_model_config_validate(c);
    FG_CHECK(st == want && strstr(fg_last_error(), needle) != NULL, "validate: status %d, message '%s' lacks '%s'",
             (int)st, fg_last_error(), needle);
    FG_CHECK(fg_model_new(c, 1, 1) == NULL, "fg_model_new refuses an invalid config (%s)", needle);
}

static void test_config(void)
{
    fg_model_config c;
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    FG_CHECK(fg_model_config_validate(&c) == FG_OK, "llama default valid: %s", fg_last_error());
    FG_CHECK(c.tie_embeddings == 0 && c.n_layer == 4 && c.d_model == 128 && c.vocab_size == 256, "llama defaults");
    c.n_head = 5;
    expect_invalid(&c, FG_ERR_INVALID, "n_head = 5");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.vocab_size = 0;
    expect_invalid(&c, FG_ERR_INVALID, "vocab_size = 0");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.padded_vocab = 100;
    c.vocab_size = 200;
    expect_invalid(&c, FG_ERR_INVALID, "padded_vocab = 100");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.d_model = 12;
    c.n_head = 4; /* head size 3: RoPE needs pairs */
    expect_invalid(&c, FG_ERR_INVALID, "must be even");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.norm_eps = 0.0f;
    expect_invalid(&c, FG_ERR_INVALID, "norm_eps");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.n_layer = 0;
    expect_invalid(&c, FG_ERR_INVALID, "n_layer = 0");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.layout = (fg_layout)7;
    expect_invalid(&c, FG_ERR_INVALID, "layout = 7");
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.moe.n_expert = -1; /* MoE fields are validated by moe.c; this only checks the hand-off */
    expect_invalid(&c, FG_ERR_INVALID, "n_expert = -1");

    fg_model_config_default(&c, FG_LAYOUT_GPT2);
    FG_CHECK(fg_model_new(&c, 1, c.max_seq_len + 1) == NULL && strstr(fg_last_error(), "max_seq_len"),
             "T > maxT refused: %s", fg_last_error());
    /* GPT-2 124M: llm.c's parameter count with Vp 50304 */
    c.vocab_size = 50257;
    c.max_seq_len = 1024;
    c.n_layer = 12;
    c.n_head = 12;
    c.d_model = 768;
    fg_model *m = fg_model_new(&c, 1, 4);
    FG_CHECK(m != NULL, "124M model: %s", fg_last_error());
    if (m) {
        FG_CHECK(fg_model_num_params(m) == 124475904, "GPT-2 124M has %zu params, llm.c says 124475904",
                 fg_model_num_params(m));
        FG_CHECK(fg_model_get_config(m)->padded_vocab == 50304 && fg_model_get_config(m)->d_ff == 3072, "Vp, d_ff");
        double f = fg_model_flops_per_token(m, 64);
        FG_CHECK(f == 6.0 * 124475904 + 6.0 * 12 * 64 * 768, "flops per token %.0f", f);
        /* llm.c order and names */
        const char *order[] = {"wte", "wpe", "h.0.ln_1.weight", "h.1.ln_1.weight"};
        for (int i = 0; i < 4; i++)
            FG_CHECK(strcmp(fg_model_tensor(m, i)->name, order[i]) == 0, "tensor %d is %s", i,
                     fg_model_tensor(m, i)->name);
        const fg_tensor_info *q = fg_model_find_tensor(m, "h.3.attn.qkv.weight");
        FG_CHECK(q && q->ndim == 2 && q->shape[0] == 2304 && q->shape[1] == 768 && !q->no_decay, "qkv view");
        const fg_tensor_info *lb = fg_model_find_tensor(m, "ln_f.bias");
        FG_CHECK(lb && lb->no_decay && lb->offset + lb->numel == fg_model_num_params(m), "ln_f.bias is last");
        FG_CHECK(fg_model_find_tensor(m, "lm_head.weight") == NULL, "gpt2 head is tied");
        size_t off = 0;
        int contiguous = 1;
        for (int i = 0; i < fg_model_num_tensors(m); i++) {
            contiguous &= fg_model_tensor(m, i)->offset == off;
            off += fg_model_tensor(m, i)->numel;
        }
        FG_CHECK(contiguous && off == fg_model_num_params(m), "views tile the flat buffer");
        fg_model_delete(m);
    }
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    m = fg_model_new(&c, 2, 8);
    if (m) {
        FG_CHECK(fg_model_get_config(m)->d_ff == 384, "llama d_ff: 8C/3 rounded up to 64: %d",
                 fg_model_get_config(m)->d_ff);
        FG_CHECK(fg_model_find_tensor(m, "lm_head.weight") != NULL && fg_model_find_tensor(m, "wpe") == NULL,
                 "llama: untied head, no wpe");
        FG_CHECK(fg_model_backward(m, 1.0f) != FG_OK, "backward before forward refused");
        int32_t in[16] = {0}, tg[16] = {0};
        in[5] = 256;
        float loss;
        FG_CHECK(fg_model_forward(m, in, tg, 2, 8, &loss) == FG_ERR_INVALID && strstr(fg_last_error(), "inputs[5]"),
                 "token outside the vocabulary refused: %s", fg_last_error());
        FG_CHECK(fg_model_forward(m, in, tg, 3, 8, &loss) == FG_ERR_INVALID, "B above capacity refused");
        in[5] = 1;
        for (int i = 0; i < 16; i++)
            tg[i] = -1;
        fg_model_init_weights(m, 1);
        fg_model_zero_grad(m);
        FG_CHECK(fg_model_forward(m, in, tg, 2, 8, &loss) == FG_OK && loss == 0.0f, "all targets ignored: loss 0");
        FG_CHECK(fg_model_backward(m, 1.0f) == FG_OK && fg_sumsq(fg_model_grads(m), fg_model_num_params(m)) == 0.0,
                 "all targets ignored: zero gradient");
        fg_model_delete(m);
    }
}

/* Every allocation failure inside fg_model_new / the first decode leaves nothing
 * allocated and reports an error (ASan's leak checker backs up the byte count). */
static void test_alloc_failures(void)
{
    fg_model_config c;
    fg_model_config_default(&c, FG_LAYOUT_GPT2);
    size_t before = fg_mem_current();
    int failed_cleanly = 0, n;
    for (n = 1; n <= 20; n++) {
        fg_mem_fail_after(n);
        fg_model *m = fg_model_new(&c, 2, 8);
        fg_mem_fail_after(0);
        if (m) {
            fg_model_delete(m);
            break;
        }
        failed_cleanly += fg_mem_current() == before;
    }
    FG_CHECK(n > 1 && n <= 20 && failed_cleanly == n - 1, "fg_model_new: %d of %d injected failures clean",
             failed_cleanly, n - 1);
    fg_model *m = fg_model_new(&c, 1, 8);
    if (m) {
        fg_model_init_weights(m, 1);
        int32_t prompt[2] = {1, 2}, out[8];
        fg_sampler s = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
        fg_mem_fail_after(1);
        int r = fg_model_generate(m, prompt, 2, 3, -1, &s, out);
        fg_mem_fail_after(0);
        FG_CHECK(r == FG_ERR_NOMEM, "generate reports the failed KV-cache allocation: %d", r);
        FG_CHECK(fg_model_generate(m, prompt, 2, 3, -1, &s, out) == 5, "and works once memory is back");
        fg_model_delete(m);
    }
    FG_CHECK(fg_mem_current() == before, "no bytes left: %zu", fg_mem_current() - before);
}

int main(void)
{
    FG_TEST_BEGIN("model");
    if (fg_kernels_init(NULL) != FG_OK) {
        FG_CHECK(0, "kernels init: %s", fg_last_error());
        return fg_test_end();
    }
    test_config();
    test_fixture("gpt2");
    test_fixture("llama");
    test_finite_diff(FG_LAYOUT_GPT2);
    test_finite_diff(FG_LAYOUT_LLAMA);
    /* Thousands of tiny steps below: on one thread, since OpenMP fork/join (and, on a
     * busy 2-core machine, waiting for a descheduled thread) would dominate them. The
     * multi-threaded kernels are covered above on the same model code. */
    int threads = fg_threads_get();
    fg_threads_set(1);
    test_overfit(FG_LAYOUT_GPT2);
    test_overfit(FG_LAYOUT_LLAMA);
    test_generate(FG_LAYOUT_GPT2);
    test_generate(FG_LAYOUT_LLAMA);
    fg_threads_set(threads);
    test_llmc();
    test_alloc_failures();
    return fg_test_end();
}
