/* data_impl.h: helpers shared inside src/data: a growable byte buffer, fast 64-bit
 * hashing, and the internals of the rules and scratch structs used across files.
 * Not part of the public API. */
#ifndef FRUGAL_DATA_IMPL_H
#define FRUGAL_DATA_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "frugal/data.h"

/* ---- growable buffer (fg_malloc'd) ---- */
typedef struct sbuf {
    char *p;
    size_t n, cap; /* bytes used, bytes allocated (p[n] is kept NUL when cap > n) */
} sbuf;

/* Ensures room for `extra` more bytes plus a NUL. FG_ERR_NOMEM on failure. */
fg_status sbuf_reserve(sbuf *b, size_t extra);
fg_status sbuf_put(sbuf *b, const void *s, size_t n);
fg_status sbuf_putc(sbuf *b, char c);
/* Appends s[0..n) JSON-escaped (no quotes). */
fg_status sbuf_json_escape(sbuf *b, const char *s, size_t n);
void sbuf_free(sbuf *b);

/* ---- hashing: multiply-xor over 8-byte words, murmur3 finaliser ---- */
static inline uint64_t fg_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t fg_hash_bytes(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *)data;
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ fg_mix64(w)) * 0x9e3779b97f4a7c15ULL;
        h = (h << 31) | (h >> 33);
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    h ^= w;
    return fg_mix64(h);
}

/* ---- ASCII-whitespace words (the classifier's features, the MinHash shingles) ---- */
static inline bool fg_ascii_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The next word of t[*i..len): sets [*b, *i) to it and returns true, or false at the end. */
static inline bool fg_next_word(const unsigned char *t, size_t len, size_t *i, size_t *b)
{
    while (*i < len && fg_ascii_ws(t[*i]))
        (*i)++;
    if (*i >= len)
        return false;
    *b = *i;
    while (*i < len && !fg_ascii_ws(t[*i]))
        (*i)++;
    return true;
}

/* ---- rules internals ---- */
typedef enum rule_kind {
    RULE_SUB,       /* regex substitution over the whole text */
    RULE_DROP_LINE, /* drop lines matching (optionally only lines of <= max_words words) */
    RULE_REJECT,    /* reject the document when the regex matches */
    RULE_ENTITIES,  /* decode HTML character references */
} rule_kind;

typedef struct rule {
    rule_kind kind;
    char name[64];
    pcre2_code *re;
    char *repl; /* substitution (fg_malloc'd), may be "" */
    size_t repl_len;
    int max_words; /* drop_line: only lines with at most this many words; 0 = any */
    int line;      /* line in the rules file */
    int req[2];    /* ASCII bytes one of which every match contains (PCRE2's required code
                      unit, both cases), -1 when unknown: a document without it is skipped */
} rule;

typedef struct qlimit {
    double soft, hard, weight;
    bool on;
} qlimit;

#define FG_MAX_STOPLISTS 16
#define FG_MAX_STOPWORDS 64
#define FG_STOP_SLOTS 2048 /* > 2 x 16 x 64: load stays under one half */

struct fg_data_rules {
    rule *rules;
    int n_rules;
    int normalize; /* 0 none, 1 NFC, 2 NFKC */
    bool utf8_reject;
    bool compat_datatrove; /* `compat datatrove`: quality on the input text, datatrove's counting */
    double accept, reject;
    qlimit q[FG_Q_COUNT];
    int n_stoplists;
    int n_stop[FG_MAX_STOPLISTS];
    uint64_t stop_hash[FG_MAX_STOPLISTS][FG_MAX_STOPWORDS];
    char stop_lang[FG_MAX_STOPLISTS][16];
    /* open-addressing table: word hash -> bit mask of the lists holding it */
    uint64_t stop_key[FG_STOP_SLOTS];
    uint16_t stop_mask[FG_STOP_SLOTS];
    size_t max_match_words; /* unused reserve */
};

struct fg_data_scratch {
    pcre2_match_data *md;
    sbuf a, b;    /* ping-pong text buffers for rules */
    int32_t *u32; /* normalization buffer (code points) */
    size_t u32_cap;
    /* heuristics: word spans, hashes, a hash set */
    uint32_t *w_off, *w_len;
    uint64_t *w_hash;
    uint64_t *w_pre; /* [w_cap + 1] prefix polynomial hashes of w_hash, for n-gram hashes */
    size_t w_cap;
    uint64_t *set_key; /* packed fingerprint + count slots (quality.c) */
    size_t set_cap;    /* power of two */
};

/* Grows the word arrays (w_off, w_len, w_hash, w_pre) to at least need entries. */
fg_status fg_data_scratch_grow_words(fg_data_scratch *s, size_t need);

/* Splits text into words (whitespace separated; each CJK ideograph/kana is a word).
 * Fills s->w_off/w_len (bytes); returns the count or (size_t)-1 when out of memory. */
size_t fg_data_split_words(fg_data_scratch *s, const char *text, size_t len);

/* Code points of the HTML5 named reference name[0..n) (no '&' or ';'); cp2 is 0 or a
 * second code point. false when there is no such name (rules.c, table html_entities.h). */
bool fg_data_html_entity(const char *name, size_t n, uint32_t *cp, uint32_t *cp2);

#endif
