/* fuzz_tok.c: libFuzzer target for the tokenizer: decode(encode(x)) == x for any bytes
 * (invalid UTF-8 included), the hand-written pre-tokenizer splits exactly as the PCRE2
 * reference does, and encode_special/encode_docs never fail, for the byte tokenizer and
 * BPE vocabularies of both patterns (trained at start-up on a built-in text, plus
 * GPT-2's when FG_SHARED_DIR points at ../shared). The first input byte picks the
 * tokenizer. Any disagreement aborts (a real bug), except the scanner-vs-PCRE2 check
 * on texts holding a code point that the two libraries' Unicode tables disagree on
 * (Debian's utf8proc knows Unicode 15.0, its PCRE2 10.42 an older version: e.g.
 * U+1D2D0, a Kaktovik numeral, is \p{N} for one and unassigned for the other). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "frugal/tok.h"

static fg_tokenizer *toks[4];
static int n_toks;

static const char train_text[] =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    "We'll go, they're done; I've seen it, you'd know. It's 1234567 o'clock!!\n"
    "\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
    "\xf0\x9f\x98\x80\xf0\x9f\x98\x80   \t\r\n  spaces  and\n\n\nnewlines 3.14159 2,718\n";

static void die(const char *what)
{
    fprintf(stderr, "fuzz_tok: %s: %s\n", what, fg_last_error());
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fg_log_level = FG_LOG_ERROR;
    toks[n_toks++] = fg_tok_load("byte");
    for (int p = 0; p < 2; p++) {
        fg_tok_train_opts o;
        fg_tok_train_opts_default(&o);
        o.vocab_size = 400;
        o.min_frequency = 1;
        o.threads = 1;
        o.pattern = p ? FG_TOK_PATTERN_CL100K : FG_TOK_PATTERN_GPT2;
        /* overlapping specials exercise the leftmost-longest special search */
        static const char *const specials[] = {"<|endoftext|>", "<|endoftext|>+", "<|im_start|>", "<|"};
        o.specials = specials;
        o.n_specials = 4;
        const char *docs[1] = {train_text};
        size_t lens[1] = {sizeof train_text - 1};
        if (fg_tok_train(&o, docs, lens, 1, &toks[n_toks]) != FG_OK)
            die("train");
        n_toks++;
    }
    const char *shared = getenv("FG_SHARED_DIR");
    if (shared) {
        char path[4096];
        snprintf(path, sizeof path, "%s/data/gpt2/encoder.json", shared);
        fg_tokenizer *g = fg_tok_load(path);
        if (g)
            toks[n_toks++] = g;
    }
    for (int i = 0; i < n_toks; i++)
        if (!toks[i])
            die("load");
    return 0;
}

/* True when text holds a code point utf8proc assigns but PCRE2 calls unassigned (Cn). */
static int unicode_tables_disagree(const char *text, size_t len)
{
    static pcre2_code *cn;
    static pcre2_match_data *md;
    if (!cn) {
        int err;
        PCRE2_SIZE off;
        cn = pcre2_compile((PCRE2_SPTR) "^\\p{Cn}", PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
        md = cn ? pcre2_match_data_create_from_pattern(cn, NULL) : NULL;
        if (!cn || !md)
            die("pcre2 \\p{Cn}");
    }
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) {
            i++;
            continue;
        }
        if (utf8proc_category(cp) != UTF8PROC_CATEGORY_CN &&
            pcre2_match(cn, (PCRE2_SPTR)text + i, (PCRE2_SIZE)k, 0, 0, md, NULL) >= 0)
            return 1;
        i += (size_t)k;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const fg_tokenizer *tok = toks[data[0] % n_toks];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    uint32_t *ids = NULL;
    size_t n = 0, back_len = 0;
    char *back = NULL;
    if (fg_tok_encode(tok, text, len, &ids, &n) != FG_OK)
        die("encode");
    if (fg_tok_decode(tok, ids, n, &back, &back_len) != FG_OK)
        die("decode");
    if (back_len != len || memcmp(back, text, len) != 0)
        die("decode(encode(x)) != x");
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= (uint32_t)fg_tok_vocab_size(tok))
            die("id out of range");
    fg_free(ids);
    fg_free(back);
    if (fg_tok_encode_special(tok, text, len, &ids, &n) != FG_OK ||
        fg_tok_decode(tok, ids, n, &back, &back_len) != FG_OK || back_len != len || memcmp(back, text, len) != 0)
        die("special round trip");
    fg_free(ids);
    fg_free(back);
    size_t *a = NULL, *b = NULL, na = 0, nb = 0;
    if (fg_tok_split(tok, false, text, len, &a, &na) != FG_OK || fg_tok_split(tok, true, text, len, &b, &nb) != FG_OK)
        die("split");
    if ((na != nb || (na && memcmp(a, b, na * sizeof(size_t)) != 0)) && !unicode_tables_disagree(text, len))
        die("scanner and PCRE2 split differently");
    fg_free(a);
    fg_free(b);
    return 0;
}
