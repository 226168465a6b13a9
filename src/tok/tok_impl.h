/* tok_impl.h: the tokenizer's internal layout shared by the src/tok files: token table,
 * pair-rank hash, string hash, Unicode class table, and the pre-tokenizer entry points.
 * Not installed; only src/tok includes it. */
#ifndef FRUGAL_TOK_IMPL_H
#define FRUGAL_TOK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frugal/tok.h"

enum { TOK_KIND_BYTE = 0, TOK_KIND_BPE = 1 };

/* Character classes of the pre-tokenizer patterns. */
enum { CC_OTHER = 0, CC_LETTER = 1, CC_NUMBER = 2, CC_SPACE = 3, CC_INVALID = 4 };
#define TOK_CLASS_TABLE_CPS 0x20000 /* code points below this come from the table */

#define TOK_NO_RANK UINT32_MAX

struct fg_tokenizer {
    int kind;
    fg_tok_pattern pattern;
    int vocab_size;
    int eot;            /* -1 when none */
    bool ignore_merges; /* HF option: a word that is a whole token maps to it directly */
    /* token strings: bytes of token i are blob[off[i] .. off[i] + len[i]) */
    uint8_t *blob;
    size_t blob_len, blob_cap;
    uint32_t *off, *len; /* [cap_tokens] */
    uint8_t *is_special; /* [cap_tokens] */
    int cap_tokens;
    uint32_t byte_id[256]; /* id of each one-byte token */
    /* merges in rank order: (a, b) -> c */
    uint32_t *merge_a, *merge_b, *merge_c;
    int n_merges, cap_merges;
    /* pair hash, open addressing: key (a << 32 | b), value rank; empty key = UINT64_MAX */
    uint64_t *pair_key;
    uint32_t *pair_rank;
    size_t pair_mask;
    /* string hash: slot = id + 1 (0 empty); lookups compare bytes */
    uint32_t *str_slot;
    size_t str_mask;
    int str_count;
    /* special tokens */
    uint32_t *special_ids;
    int n_special;
    uint8_t *cls;  /* [TOK_CLASS_TABLE_CPS] CC_* per code point */
    void *re_code; /* pcre2_code * of the pattern (the reference pre-tokenizer), JIT compiled */
};

/* ---- tok.c ---- */
fg_tokenizer *tok_new_empty(int kind, fg_tok_pattern pat);
/* Appends a token with the given bytes; returns its id or -1 (error set). */
int tok_add_token(fg_tokenizer *tok, const uint8_t *bytes, size_t len, bool special);
int tok_find(const fg_tokenizer *tok, const uint8_t *bytes, size_t len); /* id or -1 */
/* Makes token id special (listed in special_ids; <|endoftext|> sets eot). */
fg_status tok_mark_special(fg_tokenizer *tok, uint32_t id);
fg_status tok_add_merge(fg_tokenizer *tok, uint32_t a, uint32_t b, uint32_t c);
uint64_t tok_hash_bytes(const uint8_t *p, size_t n);
static inline uint32_t tok_pair_rank(const fg_tokenizer *tok, uint32_t a, uint32_t b)
{
    uint64_t key = ((uint64_t)a << 32) | b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & tok->pair_mask;
    for (;;) {
        uint64_t k = tok->pair_key[i];
        if (k == key)
            return tok->pair_rank[i];
        if (k == UINT64_MAX)
            return TOK_NO_RANK;
        i = (i + 1) & tok->pair_mask;
    }
}
/* GPT-2's bytes_to_unicode: the code point standing for byte b in vocab files. */
uint32_t tok_byte_to_cp(uint8_t b);
/* Inverse: the byte a code point stands for, or -1. */
int tok_cp_to_byte(uint32_t cp);

/* First cut point at or after `from` that no pre-token of either pattern crosses
 * (just after a '\n' between a visible ASCII character and an ASCII letter or digit), or len. */
size_t tok_safe_cut(const uint8_t *t, size_t len, size_t from);

/* ---- pretok.c ---- */
fg_status tok_class_table_init(fg_tokenizer *tok);
/* End (exclusive) of the pre-token starting at text[pos], pos < len. */
size_t tok_scan_piece(const fg_tokenizer *tok, const uint8_t *text, size_t len, size_t pos);
fg_status tok_regex_init(fg_tokenizer *tok); /* compiles tok->pattern into tok->re_code */
void tok_regex_free(fg_tokenizer *tok);

/* ---- load.c ---- */
fg_tokenizer *tok_load_gpt2(const char *encoder_path, const char *bpe_path);
fg_tokenizer *tok_load_hf_json(const char *path);

#endif
