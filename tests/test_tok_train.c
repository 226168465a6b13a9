/* test_tok_train.c: BPE training against Hugging Face's BpeTrainer (merges identical,
 * held-out ids identical: fixture from tools/gen_tok_fixtures.py), thread-count
 * independence, tokenizer.json save -> load round trips (trained and GPT-2),
 * multi-threaded document encoding == single-call encoding, and every allocation
 * failure in train/save/load/encode handled without crash or leak. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/tok.h"
#include "harness.h"

static char *read_text(const char *path, size_t *len)
{
    char *p;
    return fg_read_file(path, 0, &p, len) == FG_OK ? p : NULL;
}

static uint64_t fnv64(const uint32_t *ids, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) {
            h ^= (ids[i] >> (8 * k)) & 0xFF;
            h *= 0x100000001B3ull;
        }
    return h;
}

static bool same_ids(const fg_tokenizer *a, const fg_tokenizer *b, const char *t, size_t len)
{
    uint32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool ok = fg_tok_encode(a, t, len, &x, &nx) == FG_OK && fg_tok_encode(b, t, len, &y, &ny) == FG_OK && nx == ny &&
              !memcmp(x, y, nx * sizeof(uint32_t));
    fg_free(x);
    fg_free(y);
    return ok;
}

/* Frugal's merges == HF's on the same corpus, and HF's held-out ids, for both patterns. */
static void test_vs_hf(const char *text, size_t len)
{
    json_error_t err;
    json_t *fx = json_load_file(fg_test_source_path("tests/fixtures/tok/hf_train.json"), 0, &err);
    FG_CHECK(fx != NULL, "fixture hf_train.json: %s", err.text);
    if (!fx)
        return;
    size_t cut = (size_t)((double)len * 0.9);
    while (cut < len && text[cut] != '\n')
        cut++;
    cut++;
    FG_CHECK(cut == (size_t)json_integer_value(json_object_get(fx, "train_bytes")), "same training cut %zu", cut);
    json_t *runs = json_object_get(fx, "runs");
    for (size_t r = 0; r < json_array_size(runs); r++) {
        json_t *run = json_array_get(runs, r);
        const char *pname = json_string_value(json_object_get(run, "pattern"));
        fg_tok_train_opts o;
        fg_tok_train_opts_default(&o);
        o.vocab_size = (int)json_integer_value(json_object_get(fx, "vocab_size"));
        o.min_frequency = (int)json_integer_value(json_object_get(fx, "min_frequency"));
        o.pattern = !strcmp(pname, "cl100k") ? FG_TOK_PATTERN_CL100K : FG_TOK_PATTERN_GPT2;
        o.threads = 2;
        const char *docs[1] = {text};
        size_t lens[1] = {cut};
        fg_tokenizer *tok = NULL, *tok1 = NULL, *back = NULL;
        FG_CHECK(fg_tok_train(&o, docs, lens, 1, &tok) == FG_OK, "[%s] train: %s", pname, fg_last_error());
        o.threads = 1;
        FG_CHECK(fg_tok_train(&o, docs, lens, 1, &tok1) == FG_OK, "[%s] train 1 thread", pname);
        if (!tok || !tok1)
            goto next;
        FG_CHECK(fg_tok_vocab_size(tok) == o.vocab_size && fg_tok_eot(tok) == o.vocab_size - 1, "[%s] vocab %d, eot %d",
                 pname, fg_tok_vocab_size(tok), fg_tok_eot(tok));
        char path[512];
        snprintf(path, sizeof path, "%s/%s.json", fg_test_tmpdir(), pname);
        FG_CHECK(fg_tok_save(tok, path) == FG_OK, "[%s] save: %s", pname, fg_last_error());
        json_t *saved = json_load_file(path, 0, &err);
        json_t *mine = json_object_get(json_object_get(saved, "model"), "merges");
        json_t *want = json_object_get(run, "merges");
        size_t same = 0;
        while (same < json_array_size(mine) && same < json_array_size(want) &&
               !strcmp(json_string_value(json_array_get(mine, same)), json_string_value(json_array_get(want, same))))
            same++;
        FG_CHECK(json_array_size(mine) == json_array_size(want) && same == json_array_size(want),
                 "[%s] merges identical to HF BpeTrainer: %zu of %zu agree (first difference at %zu)", pname, same,
                 json_array_size(want), same);
        json_decref(saved);
        uint32_t *ids = NULL;
        size_t n = 0;
        FG_CHECK(fg_tok_encode(tok, text + cut, len - cut, &ids, &n) == FG_OK &&
                     n == (size_t)json_integer_value(json_object_get(run, "heldout_tokens")),
                 "[%s] held-out tokens %zu, HF %lld", pname, n,
                 (long long)json_integer_value(json_object_get(run, "heldout_tokens")));
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv64(ids, n));
        FG_CHECK(!strcmp(hex, json_string_value(json_object_get(run, "heldout_fnv64"))), "[%s] held-out ids hash",
                 pname);
        fg_free(ids);
        FG_CHECK(same_ids(tok, tok1, text, len), "[%s] 1 and 2 counting threads train the same vocabulary", pname);
        back = fg_tok_load(path);
        FG_CHECK(back != NULL, "[%s] reload: %s", pname, fg_last_error());
        FG_CHECK(back && fg_tok_get_pattern(back) == o.pattern && fg_tok_vocab_size(back) == fg_tok_vocab_size(tok) &&
                     fg_tok_eot(back) == fg_tok_eot(tok) && same_ids(tok, back, text, len),
                 "[%s] save -> load gives the same tokenizer", pname);
    next:
        fg_tok_delete(tok);
        fg_tok_delete(tok1);
        fg_tok_delete(back);
    }
    json_decref(fx);
}

/* Specials and vocabulary limits. */
static void test_train_options(const char *text, size_t len)
{
    const char *specials[2] = {"<|endoftext|>", "<|pad|>"};
    fg_tok_train_opts o;
    fg_tok_train_opts_default(&o);
    o.vocab_size = 300;
    o.specials = specials;
    o.n_specials = 2;
    const char *docs[1] = {text};
    size_t lens[1] = {len < 200000 ? len : 200000};
    fg_tokenizer *tok = NULL;
    FG_CHECK(fg_tok_train(&o, docs, lens, 1, &tok) == FG_OK && tok, "train 300");
    if (tok) {
        FG_CHECK(fg_tok_vocab_size(tok) == 300 && fg_tok_n_merges(tok) == 42 &&
                     fg_tok_special_id(tok, "<|pad|>") == 299,
                 "vocab %d merges %d pad %d", fg_tok_vocab_size(tok), fg_tok_n_merges(tok),
                 fg_tok_special_id(tok, "<|pad|>"));
        const char *s = "hi<|pad|>there<|endoftext|>";
        uint32_t *ids = NULL;
        size_t n = 0;
        FG_CHECK(fg_tok_encode_special(tok, s, strlen(s), &ids, &n) == FG_OK && n >= 3, "encode specials");
        int seen = 0;
        for (size_t i = 0; i < n; i++)
            seen += ids[i] == 299 || ids[i] == 298;
        FG_CHECK(seen == 2, "both specials became single ids");
        fg_free(ids);
    }
    fg_tok_delete(tok);
    o.vocab_size = 100;
    FG_CHECK(fg_tok_train(&o, docs, lens, 1, &tok) == FG_ERR_INVALID, "vocab below 256 + specials refused");
    /* min_frequency stops early: a tiny corpus cannot fill a large vocabulary */
    o.vocab_size = 5000;
    o.min_frequency = 2;
    const char *tiny[1] = {"abab cdcd abab"};
    size_t tl[1] = {strlen(tiny[0])};
    FG_CHECK(fg_tok_train(&o, tiny, tl, 1, &tok) == FG_OK && fg_tok_n_merges(tok) < 10, "min frequency stops: %d",
             tok ? fg_tok_n_merges(tok) : -1);
    fg_tok_delete(tok);
}

/* GPT-2 -> tokenizer.json -> load: same ids; multi-threaded encode_docs == encode. */
static void test_gpt2_json_and_docs(const char *text, size_t len)
{
    const char *enc = fg_test_shared_path("gpt2/encoder.json");
    if (!enc) {
        fg_test_skip("gpt2 save/load", "../shared/data/gpt2 is absent");
        return;
    }
    fg_tokenizer *g = fg_tok_load(enc);
    char path[512];
    snprintf(path, sizeof path, "%s/gpt2.json", fg_test_tmpdir());
    FG_CHECK(g && fg_tok_save(g, path) == FG_OK, "save gpt2: %s", fg_last_error());
    fg_tokenizer *h = fg_tok_load(path);
    FG_CHECK(h && fg_tok_vocab_size(h) == 50257 && fg_tok_eot(h) == 50256 && same_ids(g, h, text, len),
             "gpt2 through tokenizer.json: same ids on tinyshakespeare");
    /* documents: shakespeare (cut into chunks inside) + two small ones */
    const char *docs[3] = {text, "hello world", ""};
    size_t lens[3] = {len, 11, 0};
    uint32_t *a = NULL, *b = NULL, *one = NULL;
    size_t na = 0, nb = 0, n1 = 0;
    FG_CHECK(fg_tok_encode_docs(g, docs, lens, 3, true, 1, NULL, &a, &na) == FG_OK, "encode_docs 1 thread");
    FG_CHECK(fg_tok_encode_docs(g, docs, lens, 3, true, 2, NULL, &b, &nb) == FG_OK, "encode_docs 2 threads");
    FG_CHECK(fg_tok_encode(g, text, len, &one, &n1) == FG_OK, "encode");
    FG_CHECK(na == nb && !memcmp(a, b, na * sizeof(uint32_t)), "1 and 2 threads agree");
    FG_CHECK(na == n1 + 1 + 2 + 1 + 1 && !memcmp(a, one, n1 * sizeof(uint32_t)) && a[n1] == 50256 &&
                 a[na - 1] == 50256 && a[na - 2] == 50256,
             "docs = encode(doc) + eot each (%zu vs %zu)", na, n1);
    fg_free(a);
    fg_free(b);
    fg_free(one);
    fg_tok_delete(g);
    fg_tok_delete(h);
}

/* Every allocation of train / save / load / encode_docs failing in turn: each call
 * returns an error (never crashes) and frees everything it allocated. */
static void test_alloc_failures(void)
{
    static const char text[] = "the cat sat on the mat; the cat's hat. 123 456\n\nthe end \xc3\xa9\xff";
    const char *docs[2] = {text, text};
    size_t lens[2] = {sizeof text - 1, sizeof text - 1};
    char path[512];
    snprintf(path, sizeof path, "%s/alloc.json", fg_test_tmpdir());
    fg_tok_train_opts o;
    fg_tok_train_opts_default(&o);
    o.vocab_size = 280;
    o.min_frequency = 1;
    o.threads = 1;
    int bad = 0, ok_at = -1, steps = 0;
    for (int k = 1; k < 2000 && ok_at < 0; k++, steps++) {
        size_t before = fg_mem_current();
        fg_clear_error();
        fg_mem_fail_after(k);
        fg_tokenizer *tok = NULL, *back = NULL;
        uint32_t *ids = NULL;
        size_t n = 0;
        fg_status st = fg_tok_train(&o, docs, lens, 2, &tok);
        if (st == FG_OK)
            st = fg_tok_save(tok, path);
        if (st == FG_OK)
            st = (back = fg_tok_load(path)) ? FG_OK : FG_ERR_NOMEM;
        if (st == FG_OK)
            st = fg_tok_encode_docs(back, docs, lens, 2, true, 1, NULL, &ids, &n);
        fg_mem_fail_after(0);
        if (st == FG_OK)
            ok_at = k;
        else if (fg_last_error()[0] == 0)
            bad++; /* failed without a message */
        fg_free(ids);
        fg_tok_delete(tok);
        fg_tok_delete(back);
        if (fg_mem_current() != before) {
            if (bad < 5)
                fprintf(stderr, "  leak with allocation %d failing: %zu bytes\n", k, fg_mem_current() - before);
            bad++;
        }
    }
    FG_CHECK(ok_at > 0 && bad == 0, "allocation failures 1..%d: all clean (%d problems), success from %d", steps, bad,
             ok_at);
}

int main(void)
{
    FG_TEST_BEGIN("tok_train");
    test_alloc_failures();
    const char *p = fg_test_shared_path("tinyshakespeare.txt");
    size_t len = 0;
    char *text = p ? read_text(p, &len) : NULL;
    if (!text) {
        fg_test_skip("training", "../shared/data/tinyshakespeare.txt is absent");
        return fg_test_end();
    }
    test_vs_hf(text, len);
    test_train_options(text, len);
    test_gpt2_json_and_docs(text, len);
    fg_free(text);
    return fg_test_end();
}
