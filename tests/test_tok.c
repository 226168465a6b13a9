/* test_tok.c: the built-in byte tokenizer (ids = bytes, 256 = <|endoftext|>);
 * GPT-2 ids against the published test vectors; the hand-written pre-tokenizer
 * against PCRE2 on real and random text; decode(encode(x)) == x on random bytes. */
#define _GNU_SOURCE /* getline */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

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
    /* a longer special sharing the prefix, the match at the very end of a heap buffer */
    int long_id = -1;
    FG_CHECK(fg_tok_add_special(tok, "<|endoftext|>and-more-text", &long_id) == FG_OK && long_id == 257, "add special");
    char *heap = fg_malloc(15);
    memcpy(heap, "a<|endoftext|>", 14);
    FG_CHECK(fg_tok_encode_special(tok, heap, 14, &ids, &n) == FG_OK && n == 2 && ids[1] == 256,
             "shorter special at the end of the text");
    fg_free(ids);
    fg_free(heap);
    const char *both = "<|endoftext|>and-more-text<|endoftext|>";
    FG_CHECK(fg_tok_encode_special(tok, both, strlen(both), &ids, &n) == FG_OK && n == 2 && ids[0] == 257 &&
                 ids[1] == 256,
             "longest special wins at the same position");
    fg_free(ids);
    uint32_t bad[2] = {5, 258};
    FG_CHECK(fg_tok_decode(tok, bad, 2, &back, &blen) == FG_ERR_INVALID && back == NULL, "out of range id");
    FG_CHECK(strstr(fg_last_error(), "258") != NULL, "message names the id: %s", fg_last_error());
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

/* FNV-1a 64 over the ids as u32 little-endian, as tools/gen_tok_fixtures.py does. */
static uint64_t fnv64(uint64_t h, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) {
            h ^= (ids[i] >> (8 * k)) & 0xFF;
            h *= 0x100000001B3ull;
        }
    return h;
}

/* Whole file, gunzipped when it ends in .gz. */
static char *slurp(const char *path, size_t *len)
{
    gzFile g = gzopen(path, "rb");
    if (!g)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    int r;
    while (buf && (r = gzread(g, buf + n, (unsigned)(cap - n - 1))) > 0) {
        n += (size_t)r;
        if (cap - n < 65536) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    gzclose(g);
    if (buf)
        buf[n] = 0;
    *len = n;
    return buf;
}

/* Scanner vs PCRE2 on one text; returns true when the piece boundaries agree. */
static bool same_split(const fg_tokenizer *tok, const char *t, size_t len)
{
    size_t *a = NULL, *b = NULL, na = 0, nb = 0;
    bool ok = fg_tok_split(tok, false, t, len, &a, &na) == FG_OK && fg_tok_split(tok, true, t, len, &b, &nb) == FG_OK &&
              na == nb && (na == 0 || !memcmp(a, b, na * sizeof(size_t)));
    if (!ok) {
        size_t i = 0;
        while (i < na && i < nb && a[i] == b[i])
            i++;
        size_t from = i ? a[i - 1] : 0;
        fprintf(stderr, "  split differs after byte %zu: scanner ends %zu, pcre2 ends %zu; text there:", from,
                i < na ? a[i] : 0, i < nb ? b[i] : 0);
        for (size_t k = from; k < len && k < from + 16; k++)
            fprintf(stderr, " %02x", (unsigned char)t[k]);
        fprintf(stderr, "\n");
    }
    fg_free(a);
    fg_free(b);
    return ok;
}

/* Count + hash of tiktoken's gpt2 ids on shakespeare and the web samples
 * (tests/fixtures/tok/tiktoken_gpt2.json), and scanner == PCRE2 on each text. */
static void test_tiktoken_fixtures(const fg_tokenizer *tok)
{
    json_error_t err;
    json_t *fx = json_load_file(fg_test_source_path("tests/fixtures/tok/tiktoken_gpt2.json"), 0, &err);
    FG_CHECK(fx != NULL, "fixture tiktoken_gpt2.json: %s", err.text);
    if (!fx || !tok) {
        json_decref(fx);
        return;
    }
    json_t *entries = json_object_get(fx, "entries");
    int n_ok = 0, n_run = 0, n_split_ok = 0;
    size_t total_tokens = 0;
    for (size_t e = 0; e < json_array_size(entries); e++) {
        json_t *ent = json_array_get(entries, e);
        const char *rel = json_string_value(json_object_get(ent, "path"));
        const char *kind = json_string_value(json_object_get(ent, "kind"));
        const char *path = !strcmp(kind, "source") ? fg_test_source_path(rel) : fg_test_shared_path(rel);
        if (!path) {
            fg_test_skip(rel, "absent from ../shared/data");
            continue;
        }
        size_t len;
        char *buf = slurp(path, &len);
        FG_CHECK(buf != NULL, "read %s", path);
        if (!buf)
            continue;
        uint64_t h = 0xCBF29CE484222325ull;
        size_t count = 0;
        bool split_ok = true;
        if (!strcmp(kind, "jsonl.gz")) {
            for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                    *next++ = 0;
                json_t *doc = json_loads(line, JSON_ALLOW_NUL, &err);
                if (!doc)
                    continue;
                const char *t = json_string_value(json_object_get(doc, "text"));
                size_t tl = json_string_length(json_object_get(doc, "text"));
                uint32_t *ids;
                size_t n;
                if (fg_tok_encode(tok, t, tl, &ids, &n) == FG_OK) {
                    h = fnv64(h, ids, n);
                    count += n;
                    fg_free(ids);
                }
                split_ok &= same_split(tok, t, tl);
                json_decref(doc);
            }
        } else {
            uint32_t *ids;
            size_t n;
            if (fg_tok_encode(tok, buf, len, &ids, &n) == FG_OK) {
                h = fnv64(h, ids, n);
                count = n;
                fg_free(ids);
            }
            split_ok = same_split(tok, buf, len);
        }
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        bool ok = count == (size_t)json_integer_value(json_object_get(ent, "n_tokens")) &&
                  !strcmp(hex, json_string_value(json_object_get(ent, "fnv64")));
        if (!ok)
            fprintf(stderr, "  %s: %zu tokens hash %s, tiktoken %lld hash %s\n", rel, count, hex,
                    (long long)json_integer_value(json_object_get(ent, "n_tokens")),
                    json_string_value(json_object_get(ent, "fnv64")));
        n_ok += ok;
        n_split_ok += split_ok;
        n_run++;
        total_tokens += count;
        free(buf);
    }
    FG_CHECK(n_run > 0 && n_ok == n_run, "tiktoken gpt2 ids: %d of %d texts identical (%zu tokens)", n_ok, n_run,
             total_tokens);
    FG_CHECK(n_split_ok == n_run, "scanner == PCRE2 on %d of %d texts", n_split_ok, n_run);
    json_decref(fx);
}

/* Appends a random piece chosen to hit every branch of both patterns. */
static size_t random_piece(fg_rng *r, char *out)
{
    static const char *const pieces[] = {"a",
                                         "Z",
                                         "hello",
                                         " world",
                                         "0",
                                         "42",
                                         "12345",
                                         " ",
                                         "  ",
                                         "   ",
                                         "\n",
                                         "\r\n",
                                         "\n\n",
                                         "\t",
                                         " \n ",
                                         "'s",
                                         "'t",
                                         "'re",
                                         "'ve",
                                         "'m",
                                         "'ll",
                                         "'d",
                                         "'S",
                                         "'RE",
                                         "'Ll",
                                         "'x",
                                         "'",
                                         "\"",
                                         "!",
                                         "?!",
                                         "...",
                                         "-",
                                         "\xc3\xa9",
                                         "\xe6\x97\xa5\xe6\x9c\xac",
                                         "\xd0\x9f\xd1\x80",
                                         "\xc2\xb2",
                                         "\xd9\xa3",
                                         "\xc2\xa0",
                                         "\xe3\x80\x80",
                                         "\xc2\x85",
                                         "\xe2\x80\xa8",
                                         "\xe2\x80\x83",
                                         "\xf0\x9f\x98\x80",
                                         "\xc5\xbf",
                                         "\xe2\x82\xac",
                                         "\xcc\x81",
                                         "\xff",
                                         "\xc3",
                                         "\xe2\x82",
                                         "\xed\xa0\x80",
                                         "\xc0\xaf",
                                         "\xf4\x90\x80\x80",
                                         "\x80",
                                         "\xf0\x9f\x98",
                                         "\x00",
                                         "\x0b",
                                         "\x0c",
                                         "\x1f",
                                         "\xe1\x9a\x80",
                                         "\xf0\xa0\x80\x80",
                                         "\xf0\x9d\x9f\x8e"};
    if (fg_rng_below(r, 8) == 0) { /* a raw random byte */
        out[0] = (char)fg_rng_below(r, 256);
        return 1;
    }
    const char *p = pieces[fg_rng_below(r, sizeof pieces / sizeof pieces[0])];
    size_t n = strlen(p);
    if (n == 0) {
        out[0] = 0;
        return 1;
    }
    memcpy(out, p, n);
    return n;
}

/* Random texts: scanner == PCRE2 for the tokenizer's pattern, and decode(encode(x)) == x. */
static void test_random(const fg_tokenizer *tok, const char *name, int cases)
{
    fg_rng r;
    fg_rng_seed(&r, 1234);
    char buf[4096];
    int split_ok = 0, rt_ok = 0;
    for (int c = 0; c < cases; c++) {
        size_t len = 0;
        int pieces = (int)fg_rng_below(&r, 60);
        while (pieces-- > 0 && len < sizeof buf - 16)
            len += random_piece(&r, buf + len);
        split_ok += same_split(tok, buf, len);
        size_t n, bl = 0;
        char *back = NULL;
        uint32_t *ids = NULL;
        bool ok = fg_tok_encode(tok, buf, len, &ids, &n) == FG_OK;
        ok = ok && fg_tok_decode(tok, ids, n, &back, &bl) == FG_OK && bl == len && !memcmp(back, buf, len);
        fg_free(ids);
        fg_free(back);
        rt_ok += ok;
    }
    FG_CHECK(split_ok == cases, "%s: scanner == PCRE2 on %d of %d random texts", name, split_ok, cases);
    FG_CHECK(rt_ok == cases, "%s: decode(encode(x)) == x on %d of %d random texts", name, rt_ok, cases);
}

/* A long random text cut into chunks by encode_docs (2 threads) gives exactly the ids
 * of one encode call: the cut points split no pre-token. */
static void test_chunking(const fg_tokenizer *tok, const char *name)
{
    fg_rng r;
    fg_rng_seed(&r, 99);
    size_t cap = 1200000, len = 0;
    char *buf = malloc(cap + 64);
    while (buf && len < cap) {
        if (fg_rng_below(&r, 6) == 0) { /* newline runs before letters: the cut candidates */
            static const char *const nl[] = {"x\nA", "\n\nB", "  \nc", ".\n9", "\r\nD", "?\n\n\nE", "\n 'd"};
            const char *p = nl[fg_rng_below(&r, 7)];
            memcpy(buf + len, p, strlen(p));
            len += strlen(p);
        } else {
            len += random_piece(&r, buf + len);
        }
    }
    if (!buf)
        return;
    const char *docs[1] = {buf};
    size_t lens[1] = {len};
    uint32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    bool ok = fg_tok_encode(tok, buf, len, &a, &na) == FG_OK &&
              fg_tok_encode_docs(tok, docs, lens, 1, false, 2, NULL, &b, &nb) == FG_OK && na == nb &&
              !memcmp(a, b, na * sizeof(uint32_t));
    FG_CHECK(ok, "%s: encode_docs over %zu random bytes (several chunks) == encode (%zu vs %zu ids)", name, len, nb,
             na);
    fg_free(a);
    fg_free(b);
    free(buf);
}

/* A small vocabulary trained on a built-in text (no shared data needed). */
static fg_tokenizer *train_small(fg_tok_pattern pat)
{
    static const char text[] =
        "We'll see; they're here, it's 12345 o'clock! THEY'RE HERE.\r\n\n  Indented\tline \xc3\xa9t\xc3\xa9 "
        "\xe6\x97\xa5\xe6\x9c\xac \xd0\x9f\xd1\x80\xd0\xb8 ...!!! 3.14 hello hello world";
    fg_tok_train_opts o;
    fg_tok_train_opts_default(&o);
    o.vocab_size = 320;
    o.min_frequency = 1;
    o.pattern = pat;
    const char *docs[1] = {text};
    size_t lens[1] = {sizeof text - 1};
    fg_tokenizer *tok = NULL;
    FG_CHECK(fg_tok_train(&o, docs, lens, 1, &tok) == FG_OK, "train small: %s", fg_last_error());
    return tok;
}

int main(void)
{
    FG_TEST_BEGIN("tok");
    test_byte();
    fg_tokenizer *cl = train_small(FG_TOK_PATTERN_CL100K), *g2 = train_small(FG_TOK_PATTERN_GPT2);
    if (cl && g2) {
        test_random(cl, "cl100k", 3000);
        test_chunking(cl, "cl100k");
        test_random(g2, "gpt2-small", 1000);
    }
    fg_tok_delete(cl);
    fg_tok_delete(g2);
    fg_tokenizer *gpt2 = load_gpt2();
    test_gpt2_vectors(gpt2);
    if (gpt2) {
        test_random(gpt2, "gpt2", 3000);
        test_chunking(gpt2, "gpt2");
        test_tiktoken_fixtures(gpt2);
    }
    fg_tok_delete(gpt2);
    return fg_test_end();
}
