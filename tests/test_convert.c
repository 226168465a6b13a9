/* test_convert.c: the outside formats without Python: fp16 codec, safetensors write/read
 * (one file and shards), Hugging Face export then import gives identical tensors (gpt2,
 * llama, tied and untied), GGUF round trips (f32 exact, f16 and Q8_0 within their
 * rounding), bad inputs refused naming the file and the problem with nothing written, and
 * the committed transformers fixtures imported, fine-tuned 10 steps and exported back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frugal/convert.h"
#include "frugal/train.h"
#include "harness.h"

static const char *tmp(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 1024, "%s/%s", fg_test_tmpdir(), name);
    return p;
}

static int exists(const char *p)
{
    return access(p, F_OK) == 0;
}

/* The frugal binary ctest points at, or NULL (then the command-line checks skip). */
static const char *frugal_bin(void)
{
    const char *b = fg_test_frugal_bin();
    return b && access(b, X_OK) == 0 ? b : NULL;
}

/* Every parameter set to a hashed value (norms and biases too, so a misplaced bias
 * shows); vocabulary padding rows stay 0, as the importer leaves them, and so does the
 * MoE load history (training state that transformers has no place for). n_expert > 0:
 * a MoE model (first layer dense, one shared expert). */
static fg_model *random_model_moe(fg_layout layout, int tie, int V, int n_expert)
{
    fg_model_config c;
    fg_model_config_default(&c, layout);
    if (n_expert) {
        c.moe.n_expert = n_expert, c.moe.n_expert_active = 2, c.moe.d_expert = 32, c.moe.n_shared_expert = 1;
        c.moe.n_dense_layers = 1, c.moe.route_scale = 2.5f;
    }
    c.vocab_size = V;
    c.n_layer = 2;
    c.d_model = 64;
    c.n_head = 4;
    c.max_seq_len = 32;
    c.tie_embeddings = tie;
    fg_model *m = fg_model_new(&c, 1, 8);
    FG_ASSERT(m);
    float *p = fg_model_params(m);
    fg_rng r;
    fg_rng_seed(&r, 7);
    for (size_t i = 0; i < fg_model_num_params(m); i++)
        p[i] = fg_rng_normal(&r) * 0.1f;
    const fg_model_config *rc = fg_model_get_config(m);
    const char *heads[] = {"wte", "lm_head.weight"};
    for (int h = 0; h < 2; h++) {
        const fg_tensor_info *t = fg_model_find_tensor(m, heads[h]);
        if (t)
            memset(p + t->offset + (size_t)V * rc->d_model, 0,
                   (size_t)(rc->padded_vocab - V) * rc->d_model * sizeof(float));
    }
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        if (strstr(t->name, "moe.load_"))
            memset(p + t->offset, 0, t->numel * sizeof(float));
    }
    return m;
}

static fg_model *random_model(fg_layout layout, int tie, int V)
{
    return random_model_moe(layout, tie, V, 0);
}

static void test_f16(void)
{
    FG_CHECK(fg_f32_to_f16(1.0f) == 0x3c00 && fg_f32_to_f16(-2.0f) == 0xc000, "f16 of 1, -2");
    FG_CHECK(fg_f32_to_f16(65504.0f) == 0x7bff && fg_f32_to_f16(65520.0f) == 0x7c00, "f16 max and overflow");
    FG_CHECK(fg_f32_to_f16(5.9604645e-8f) == 0x0001 && fg_f32_to_f16(2.0e-8f) == 0, "f16 subnormal and underflow");
    FG_CHECK(fg_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00 && fg_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02,
             "f16 ties to even: %04x %04x", fg_f32_to_f16(1.0f + 1.0f / 2048), fg_f32_to_f16(1.0f + 3.0f / 2048));
    int bad = 0;
    for (uint32_t h = 0; h < 0x7c00; h++)
        bad += fg_f32_to_f16(fg_f16_to_f32((uint16_t)h)) != h ||
               fg_f32_to_f16(-fg_f16_to_f32((uint16_t)h)) != (h | 0x8000);
    FG_CHECK(bad == 0, "every finite f16 survives f16 -> f32 -> f16 (%d differ)", bad);
}

static void test_safetensors(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {-1, 0.5f, 7}, c[8];
    for (int i = 0; i < 8; i++)
        c[i] = (float)i * 0.25f;
    fg_st_out t[3] = {{"a", 2, {2, 3}, a}, {"b.bias", 1, {3}, b}, {"c", 3, {2, 2, 2}, c}};
    const char *md[] = {"format", "pt", NULL};
    mkdir(tmp("st1"), 0777);
    FG_CHECK(fg_st_write_dir(tmp("st1"), t, 3, 0, md) == FG_OK, "write: %s", fg_last_error());
    /* 40 bytes of limit: a (24) | b (12) | c (32) -> three shards */
    mkdir(tmp("st3"), 0777);
    FG_CHECK(fg_st_write_dir(tmp("st3"), t, 3, 40, md) == FG_OK, "sharded write: %s", fg_last_error());
    FG_CHECK(exists(tmp("st3/model-00002-of-00002.safetensors")) && exists(tmp("st3/model.safetensors.index.json")),
             "two shards and an index");
    const char *dirs[] = {"st1", "st3"};
    for (int d = 0; d < 2; d++) {
        fg_st_set s;
        fg_status st = fg_st_open(&s, tmp(dirs[d]));
        FG_CHECK(st == FG_OK && s.n == 3, "%s: open: %s", dirs[d], fg_last_error());
        if (st != FG_OK)
            continue;
        for (int i = 0; i < 3; i++) {
            const fg_st_tensor *x = fg_st_find(&s, t[i].name);
            float got[8];
            FG_CHECK(x && x->ndim == t[i].ndim && x->shape[0] == t[i].shape[0] && x->dtype == FG_ST_F32,
                     "%s: tensor %s", dirs[d], t[i].name);
            if (x) {
                fg_st_read_f32(&s, x, got);
                FG_CHECK(!memcmp(got, t[i].data, fg_st_numel(x) * 4), "%s: %s data", dirs[d], t[i].name);
            }
        }
        FG_CHECK(d == 1 ? s.n_files == 2 : s.n_files == 1, "%s: %d files", dirs[d], s.n_files);
        FG_CHECK(s.metadata_json && strstr(s.metadata_json, "\"format\""), "__metadata__ kept");
        fg_st_close(&s);
    }
}

/* A hand-made safetensors file: header JSON then n data bytes. */
static const char *st_file(const char *name, const char *hdr, size_t n)
{
    const char *p = tmp(name);
    FILE *f = fopen(p, "wb");
    FG_ASSERT(f);
    uint64_t hl = strlen(hdr);
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    for (size_t i = 0; i < n; i++)
        fputc((int)i, f);
    fclose(f);
    return p;
}

static void expect_st_fail(const char *name, const char *hdr, size_t n, const char *want)
{
    const char *p = st_file(name, hdr, n);
    fg_st_set s;
    fg_status st = fg_st_open(&s, p);
    FG_CHECK(st != FG_OK && strstr(fg_last_error(), p) && strstr(fg_last_error(), want), "%s: want '%s', got '%s'",
             name, want, fg_last_error());
}

static void test_safetensors_bad(void)
{
    expect_st_fail("lie_offsets.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,20]}}", 20,
                   "data_offsets [0, 20] hold 20 bytes, but dtype F32 and shape [2, 2] need 16");
    expect_st_fail("lie_gap.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                   20, "tensor 'b' starts at data offset 12, expected 8");
    expect_st_fail("lie_overlap.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, "starts at data offset 4, expected 8");
    expect_st_fail("lie_shape.safetensors", "{\"a\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,8]}}", 8,
                   "need 12");
    expect_st_fail("truncated.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 10,
                   "truncated");
    expect_st_fail("trailing.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 9,
                   "trailing bytes");
    expect_st_fail("unknown_dtype.safetensors", "{\"a\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                   "unknown dtype 'F99'");
    expect_st_fail("int_dtype.safetensors", "{\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                   "dtype I32");
    expect_st_fail("dup.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, "duplicate");
    /* header length past the end of the file */
    const char *p = tmp("short_header.safetensors");
    FILE *f = fopen(p, "wb");
    uint64_t hl = 1000;
    fwrite(&hl, 8, 1, f);
    fputs("{}", f);
    fclose(f);
    fg_st_set s;
    FG_CHECK(fg_st_open(&s, p) == FG_ERR_CORRUPT && strstr(fg_last_error(), "truncated: header length 1000"), "%s",
             fg_last_error());
}

/* Every tensor but the MoE load history (training state no outside format holds). */
static void same_weights(const fg_model *a, const fg_model *b, const char *what)
{
    int same = fg_model_num_tensors(a) == fg_model_num_tensors(b);
    for (int i = 0; same && i < fg_model_num_tensors(a); i++) {
        const fg_tensor_info *t = fg_model_tensor(a, i);
        same = strstr(t->name, "moe.load_") ||
               !memcmp(fg_model_params((fg_model *)a) + t->offset, fg_model_params((fg_model *)b) + t->offset,
                       t->numel * sizeof(float));
    }
    FG_CHECK(same, "%s: identical weights after the round trip", what);
}

static bool same_params(const fg_model *a, const fg_model *b, const char *what)
{
    size_t n = fg_model_num_params(a);
    bool ok = n == fg_model_num_params(b) &&
              !memcmp(fg_model_params((fg_model *)a), fg_model_params((fg_model *)b), n * sizeof(float));
    FG_CHECK(ok, "%s: identical parameters after the round trip", what);
    return ok;
}

static void test_hf_round_trip(void)
{
    struct {
        fg_layout layout;
        int tie;
        const char *dir;
        int moe;
    } cases[] = {{FG_LAYOUT_LLAMA, 0, "hf_llama", 0},    {FG_LAYOUT_LLAMA, 1, "hf_llama_tied", 0},
                 {FG_LAYOUT_GPT2, 1, "hf_gpt2", 0},      {FG_LAYOUT_GPT2, 0, "hf_gpt2_untied", 0},
                 {FG_LAYOUT_LLAMA, 0, "hf_glm4_moe", 4}, {FG_LAYOUT_LLAMA, 1, "hf_glm4_moe_tied", 3}};
    fg_tokenizer *byte = fg_tok_load("byte");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fg_model *m = random_model_moe(cases[i].layout, cases[i].tie, 257, cases[i].moe);
        fg_status st = fg_hf_export(m, byte, tmp(cases[i].dir), 0);
        FG_CHECK(st == FG_OK, "%s: export: %s", cases[i].dir, fg_last_error());
        fg_model *b = fg_hf_import(tmp(cases[i].dir), 1, 8);
        FG_CHECK(b != NULL, "%s: import: %s", cases[i].dir, fg_last_error());
        if (b) {
            const fg_model_config *x = fg_model_get_config(m), *y = fg_model_get_config(b);
            FG_CHECK(x->layout == y->layout && x->tie_embeddings == y->tie_embeddings && x->d_ff == y->d_ff &&
                         x->norm_eps == y->norm_eps && x->rope_theta == y->rope_theta &&
                         x->max_seq_len == y->max_seq_len && x->vocab_size == y->vocab_size &&
                         x->moe.n_expert == y->moe.n_expert && x->moe.n_expert_active == y->moe.n_expert_active &&
                         x->moe.n_shared_expert == y->moe.n_shared_expert && x->moe.d_expert == y->moe.d_expert &&
                         x->moe.n_dense_layers == y->moe.n_dense_layers && x->moe.route_scale == y->moe.route_scale,
                     "%s: same config", cases[i].dir);
            same_params(m, b, cases[i].dir);
        }
        fg_model_delete(b);
        fg_model_delete(m);
    }
    /* the byte tokenizer written as tokenizer.json reads back with the same ids */
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp("hf_llama"));
    fg_tokenizer *t = fg_tok_load(path);
    FG_CHECK(t && fg_tok_vocab_size(t) == 257 && fg_tok_eot(t) == 256, "byte tokenizer.json loads: %s",
             t ? "" : fg_last_error());
    if (t) {
        const char *text = "Hello, wörld!\n  x";
        uint32_t *i1 = NULL, *i2 = NULL;
        size_t n1 = 0, n2 = 0;
        fg_tok_encode(byte, text, strlen(text), &i1, &n1);
        fg_tok_encode(t, text, strlen(text), &i2, &n2);
        FG_CHECK(n1 == n2 && n1 && !memcmp(i1, i2, n1 * 4), "same ids from the written byte tokenizer");
        fg_free(i1);
        fg_free(i2);
    }
    fg_tok_delete(t);
    fg_tok_delete(byte);
    /* MoE that Glm4MoeForCausalLM cannot hold: refused, naming why, nothing written */
    fg_model_config c;
    fg_model_config_default(&c, FG_LAYOUT_LLAMA);
    c.moe.n_expert = 4, c.moe.n_expert_active = 2, c.moe.d_expert = 32;
    fg_model *moe = fg_model_new(&c, 1, 8);
    FG_CHECK(moe && fg_hf_export(moe, NULL, tmp("hf_moe"), 0) == FG_ERR_UNSUPPORTED &&
                 strstr(fg_last_error(), "shared expert") && !exists(tmp("hf_moe")),
             "MoE export without a shared expert refused: %s", fg_last_error());
    fg_model_delete(moe);
    fg_model_config_default(&c, FG_LAYOUT_GPT2);
    c.moe.n_expert = 4, c.moe.n_expert_active = 2, c.moe.d_expert = 32, c.moe.n_shared_expert = 1;
    moe = fg_model_new(&c, 1, 8);
    FG_CHECK(moe && fg_hf_export(moe, NULL, tmp("hf_moe_gpt2"), 0) == FG_ERR_UNSUPPORTED &&
                 strstr(fg_last_error(), "gpt2 layout") && !exists(tmp("hf_moe_gpt2")),
             "gpt2 MoE export refused: %s", fg_last_error());
    fg_model_delete(moe);
    /* the architecture levers no exported class expresses: refused by HF and GGUF export */
    for (int lever = 0; lever < 3; lever++) {
        fg_model_config_default(&c, FG_LAYOUT_LLAMA);
        if (lever == 0)
            c.ffn_share = FG_SHARE_PLAIN, c.ffn_share_group = 2;
        else if (lever == 1)
            c.mla_kv_rank = 16;
        else
            c.mtp_depth = 1;
        fg_model *lm = fg_model_new(&c, 1, 8);
        const char *want[] = {"ffn_share", "mla_kv_rank", "mtp_depth"};
        FG_CHECK(lm && fg_hf_export(lm, NULL, tmp("hf_lever"), 0) == FG_ERR_UNSUPPORTED &&
                     strstr(fg_last_error(), want[lever]) && !exists(tmp("hf_lever")),
                 "HF export of a model with %s refused: %s", want[lever], fg_last_error());
        FG_CHECK(lm && fg_gguf_export(lm, NULL, tmp("lever.gguf"), FG_GGUF_F32) == FG_ERR_UNSUPPORTED &&
                     strstr(fg_last_error(), want[lever]) && !exists(tmp("lever.gguf")),
                 "GGUF export of a model with %s refused: %s", want[lever], fg_last_error());
        fg_model_delete(lm);
    }
    /* the router logit scale goes into the exported router weights */
    fg_model *m = random_model_moe(FG_LAYOUT_LLAMA, 0, 257, 4);
    fg_model_config sc = *fg_model_get_config(m);
    sc.moe.router_logit_scale = 0.5f;
    fg_model *ms = fg_model_new(&sc, 1, 8);
    FG_ASSERT(ms);
    memcpy(fg_model_params(ms), fg_model_params(m), fg_model_num_params(m) * sizeof(float));
    FG_CHECK(fg_hf_export(ms, NULL, tmp("hf_glm4_scaled"), 0) == FG_OK, "scaled export: %s", fg_last_error());
    fg_model *b = fg_hf_import(tmp("hf_glm4_scaled"), 1, 8);
    const fg_tensor_info *rw = fg_model_find_tensor(m, "h.1.moe.router.weight");
    int scaled_ok = b && rw && fg_model_get_config(b)->moe.router_logit_scale == 1.0f;
    for (size_t i = 0; scaled_ok && i < rw->numel; i++)
        scaled_ok = fg_model_params(b)[rw->offset + i] == 0.5f * fg_model_params(m)[rw->offset + i];
    FG_CHECK(scaled_ok, "router_logit_scale 0.5 exported as router weights x 0.5");
    fg_model_delete(b);
    fg_model_delete(ms);
    fg_model_delete(m);
}

static void copy_file(const char *from, const char *to)
{
    char *d = NULL;
    size_t n = 0;
    FG_ASSERT(fg_read_file(from, 0, &d, &n) == FG_OK);
    fg_test_write_file(to, d, n);
    fg_free(d);
}

/* A copy of the exported hf_llama directory with one file replaced. */
static const char *bad_dir(const char *name, const char *file, const void *data, size_t n)
{
    const char *d = tmp(name);
    mkdir(d, 0777);
    const char *files[] = {"config.json", "model.safetensors"};
    char a[1200], b[1200];
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", tmp("hf_llama"), files[i]);
        snprintf(b, sizeof b, "%s/%s", d, files[i]);
        copy_file(a, b);
    }
    snprintf(b, sizeof b, "%s/%s", d, file);
    fg_test_write_file(b, data, n);
    return d;
}

static void expect_import_fail(const char *d, const char *file, const char *want)
{
    fg_model *m = fg_hf_import(d, 1, 8);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", d, file);
    FG_CHECK(!m && strstr(fg_last_error(), path) && strstr(fg_last_error(), want), "%s: want '%s' naming %s, got '%s'",
             d, want, path, fg_last_error());
    fg_model_delete(m);
    /* and through the command: an error naming the file, no run directory */
    const char *bin = frugal_bin();
    if (!bin)
        return;
    char cmd[4096], out[8192], run[1100];
    snprintf(run, sizeof run, "%s.run", d);
    snprintf(cmd, sizeof cmd, "%s convert --from-hf %s --out %s", bin, d, run);
    int rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc != 0 && strstr(out, path) && strstr(out, want) && !exists(run), "frugal convert --from-hf %s: %s", d,
             out);
}

static void test_hf_bad(void)
{
    char src[1200], *cfg = NULL, *st = NULL;
    size_t ncfg = 0, nst = 0;
    snprintf(src, sizeof src, "%s/config.json", tmp("hf_llama"));
    FG_ASSERT(fg_read_file(src, 0, &cfg, &ncfg) == FG_OK);
    snprintf(src, sizeof src, "%s/model.safetensors", tmp("hf_llama"));
    FG_ASSERT(fg_read_file(src, 0, &st, &nst) == FG_OK);

    /* config.json without hidden_size */
    char *k = strstr(cfg, "\"hidden_size\"");
    FG_ASSERT(k);
    char *nocfg = fg_strdup(cfg);
    memcpy(nocfg + (k - cfg), "\"hidden_sizX\"", 13);
    expect_import_fail(bad_dir("bad_missing_key", "config.json", nocfg, ncfg), "config.json",
                       "missing key 'hidden_size'");
    fg_free(nocfg);
    /* truncated weights */
    expect_import_fail(bad_dir("bad_truncated", "model.safetensors", st, nst - 100), "model.safetensors", "truncated");
    /* a header whose shape lies (q_proj says [32, 64]: then its offsets hold the wrong size) */
    char *lie = fg_malloc(nst);
    memcpy(lie, st, nst);
    char *q = strstr(lie + 8, "q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[64,64]");
    FG_ASSERT(q);
    memcpy(strstr(q, "[64,64]"), "[32,64]", 7);
    expect_import_fail(bad_dir("bad_shape", "model.safetensors", lie, nst), "model.safetensors",
                       "hold 16384 bytes, but dtype F32 and shape [32, 64] need 8192");
    /* an unknown dtype */
    memcpy(lie, st, nst);
    char *dt = strstr(lie + 8, "\"dtype\":\"F32\"");
    memcpy(dt, "\"dtype\":\"F99\"", 13);
    expect_import_fail(bad_dir("bad_dtype", "model.safetensors", lie, nst), "model.safetensors", "unknown dtype 'F99'");
    memcpy(lie, st, nst);
    char *off = strstr(lie + 8, "\"data_offsets\":[0,");
    FG_ASSERT(off);
    off[strlen("\"data_offsets\":[")] = '4'; /* a header that lies about offsets: [4, x] */
    expect_import_fail(bad_dir("bad_offsets", "model.safetensors", lie, nst), "model.safetensors", "data_offsets [4, ");
    fg_free(lie);
    fg_free(cfg);
    fg_free(st);
}

static void test_gguf(void)
{
    fg_tokenizer *byte = fg_tok_load("byte");
    for (int tie = 0; tie < 2; tie++) {
        fg_model *m = random_model(FG_LAYOUT_LLAMA, tie, 300);
        const struct {
            fg_gguf_type t;
            const char *name;
            double tol;
        } types[] = {{FG_GGUF_F32, "f32", 0}, {FG_GGUF_F16, "f16", 5e-4}, {FG_GGUF_Q8_0, "q8_0", 4.5e-3}};
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "m%d_%s.gguf", tie, types[k].name);
            fg_status st = fg_gguf_export(m, byte, tmp(name), types[k].t);
            FG_CHECK(st == FG_OK, "%s: export: %s", name, fg_last_error());
            fg_model *b = fg_gguf_import(tmp(name), 1, 8);
            FG_CHECK(b != NULL, "%s: import: %s", name, fg_last_error());
            if (!b)
                continue;
            if (types[k].t == FG_GGUF_F32) {
                same_params(m, b, name);
            } else {
                double worst = 0;
                for (int i = 0; i < fg_model_num_tensors(m); i++) {
                    const fg_tensor_info *t = fg_model_tensor(m, i);
                    double e =
                        fg_test_max_rel_err(fg_model_params(b) + t->offset, fg_model_params(m) + t->offset, t->numel);
                    worst = e > worst ? e : worst;
                }
                FG_CHECK(worst <= types[k].tol, "%s: max relative error per tensor %.2e <= %.1e", name, worst,
                         types[k].tol);
            }
            fg_model_delete(b);
        }
        fg_model_delete(m);
    }
    /* a truncated file and a gpt2 model */
    char *d = NULL;
    size_t n = 0;
    FG_ASSERT(fg_read_file(tmp("m0_q8_0.gguf"), 0, &d, &n) == FG_OK);
    fg_test_write_file(tmp("cut.gguf"), d, n - 64);
    fg_free(d);
    fg_model *b = fg_gguf_import(tmp("cut.gguf"), 1, 8);
    FG_CHECK(!b && strstr(fg_last_error(), "cut.gguf") && strstr(fg_last_error(), "outside the file"),
             "truncated gguf: %s", fg_last_error());
    fg_model *g = random_model(FG_LAYOUT_GPT2, 1, 257);
    FG_CHECK(fg_gguf_export(g, byte, tmp("g.gguf"), FG_GGUF_F32) == FG_ERR_UNSUPPORTED && !exists(tmp("g.gguf")),
             "gpt2 gguf refused: %s", fg_last_error());
    fg_model_delete(g);
    fg_tok_delete(byte);
}

/* transformers' own checkpoints (tools/make_hf_fixtures.py): import, 10 steps of
 * fine-tuning from them, export back, and the export reads back as the fine-tuned run */
static void test_fixtures(void)
{
    const char *bin = frugal_bin();
    if (!bin) {
        fg_test_skip("fixture fine-tuning", "FG_FRUGAL_BIN not built");
        return;
    }
    const char *corpus = fg_test_grammar_corpus("corpus.txt");
    const char *names[] = {"hf_gpt2", "hf_llama", "hf_glm4_moe"};
    for (int i = 0; i < 3; i++) {
        char fx[1024], imp[1024], ft[1100], ft0[1100], back[1100], cmd[8192], out[16384];
        snprintf(fx, sizeof fx, "tests/fixtures/%s", names[i]);
        snprintf(fx, sizeof fx, "%s", fg_test_source_path(fx));
        snprintf(imp, sizeof imp, "%s", tmp(names[i]));
        strcat(imp, ".import");
        snprintf(ft, sizeof ft, "%s.ft", imp);
        snprintf(ft0, sizeof ft0, "%s.scratch", imp);
        snprintf(back, sizeof back, "%s.back", imp);
        snprintf(cmd, sizeof cmd, "%s convert --from-hf %s --out %s", bin, fx, imp);
        int rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc == 0, "%s: import: %s", names[i], out);
        fg_model *want = fg_hf_import(fx, 1, 8), *got = NULL;
        fg_train_config c;
        if (fg_train_load_run(imp, "", 1, 8, &c, &got) == FG_OK && want)
            same_params(want, got, names[i]);
        FG_CHECK(strstr(c.tokenizer, "tokenizer.json") != NULL, "%s: the import records its tokenizer (%s)", names[i],
                 c.tokenizer);
        fg_model_delete(got);
        const char *common = "--max-steps 10 --seq-len 32 --batch-size 4 --val-batches 1 --val-every 0 --lr 1e-3 "
                             "--warmup-steps 2 --threads 2";
        snprintf(cmd, sizeof cmd, "%s train --config %s/config.json --init-from %s/final --data %s --out %s %s", bin,
                 imp, imp, corpus, ft, common);
        rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc == 0 && strstr(out, "init_from"), "%s: fine-tune: %s", names[i], out);
        snprintf(cmd, sizeof cmd, "%s train --config %s/config.json --data %s --out %s %s", bin, imp, corpus, ft0,
                 common);
        char out0[16384];
        rc = fg_test_run(cmd, out0, sizeof out0);
        const char *l1 = strstr(out, "step      1 | loss"), *l0 = strstr(out0, "step      1 | loss");
        FG_CHECK(rc == 0 && l1 && l0 && strncmp(l1, l0, 30) != 0,
                 "%s: the fine-tune starts from the import, not a random init", names[i]);
        snprintf(cmd, sizeof cmd, "%s convert --to-hf %s --run %s", bin, back, ft);
        rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc == 0, "%s: export back: %s", names[i], out);
        fg_model *b = fg_hf_import(back, 1, 8);
        got = NULL;
        if (b && fg_train_load_run(ft, "", 1, 8, &c, &got) == FG_OK) {
            same_weights(got, b, "fine-tuned export");
            double moved = fg_test_max_rel_err(fg_model_params(b), fg_model_params(want), fg_model_num_params(b));
            FG_CHECK(moved > 0 && moved < 0.5, "%s: 10 steps moved the weights a little (%.3g)", names[i], moved);
        } else
            FG_CHECK(0, "%s: reading back: %s", names[i], fg_last_error());
        fg_model_delete(got);
        fg_model_delete(b);
        fg_model_delete(want);
    }
}

int main(void)
{
    FG_TEST_BEGIN("convert");
    test_f16();
    test_safetensors();
    test_safetensors_bad();
    test_hf_round_trip();
    test_hf_bad();
    test_gguf();
    test_fixtures();
    return fg_test_end();
}
