/* tok.c: the tokenizer object (token table, merge ranks, specials), the built-in byte
 * tokenizer, BPE encoding of words, decoding, special tokens and multi-threaded
 * encoding of documents. Pre-tokenization is in pretok.c, file formats in load.c and
 * save.c, training in train.c. */
#define _GNU_SOURCE /* memmem */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_impl.h"

#define EOT_TEXT "<|endoftext|>"

uint64_t tok_hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return h;
}

uint32_t tok_byte_to_cp(uint8_t b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    /* the others, in byte order, get 256, 257, ... */
    uint32_t k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
            k++;
    return 256 + k;
}

int tok_cp_to_byte(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68)
        return -1;
    uint32_t k = 256;
    for (int x = 0; x < 256; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) {
            if (k == cp)
                return x;
            k++;
        }
    return -1;
}

fg_tokenizer *tok_new_empty(int kind, fg_tok_pattern pat)
{
    fg_tokenizer *tok = fg_calloc(1, sizeof *tok);
    if (!tok)
        return NULL;
    tok->kind = kind;
    tok->pattern = pat;
    tok->eot = -1;
    tok->pair_mask = 1023;
    tok->pair_key = fg_malloc((tok->pair_mask + 1) * sizeof(uint64_t));
    tok->pair_rank = fg_malloc((tok->pair_mask + 1) * sizeof(uint32_t));
    tok->str_mask = 1023;
    tok->str_slot = fg_calloc(tok->str_mask + 1, sizeof(uint32_t));
    if (!tok->pair_key || !tok->pair_rank || !tok->str_slot || tok_class_table_init(tok) != FG_OK ||
        tok_regex_init(tok) != FG_OK) {
        fg_tok_delete(tok);
        return NULL;
    }
    memset(tok->pair_key, 0xFF, (tok->pair_mask + 1) * sizeof(uint64_t));
    for (int b = 0; b < 256; b++)
        tok->byte_id[b] = UINT32_MAX;
    return tok;
}

void fg_tok_delete(fg_tokenizer *tok)
{
    if (!tok)
        return;
    tok_regex_free(tok);
    fg_free(tok->blob);
    fg_free(tok->off);
    fg_free(tok->len);
    fg_free(tok->is_special);
    fg_free(tok->merge_a);
    fg_free(tok->merge_b);
    fg_free(tok->merge_c);
    fg_free(tok->pair_key);
    fg_free(tok->pair_rank);
    fg_free(tok->str_slot);
    fg_free(tok->special_ids);
    fg_free(tok->cls);
    fg_free(tok);
}

static bool tok_equal(const fg_tokenizer *tok, uint32_t id, const uint8_t *bytes, size_t len)
{
    return tok->len[id] == len && memcmp(tok->blob + tok->off[id], bytes, len) == 0;
}

int tok_find(const fg_tokenizer *tok, const uint8_t *bytes, size_t len)
{
    size_t i = (size_t)tok_hash_bytes(bytes, len) & tok->str_mask;
    for (;;) {
        uint32_t s = tok->str_slot[i];
        if (s == 0)
            return -1;
        if (tok_equal(tok, s - 1, bytes, len))
            return (int)(s - 1);
        i = (i + 1) & tok->str_mask;
    }
}

static void str_insert(fg_tokenizer *tok, uint32_t id)
{
    size_t i = (size_t)tok_hash_bytes(tok->blob + tok->off[id], tok->len[id]) & tok->str_mask;
    while (tok->str_slot[i] != 0)
        i = (i + 1) & tok->str_mask;
    tok->str_slot[i] = id + 1;
}

int tok_add_token(fg_tokenizer *tok, const uint8_t *bytes, size_t len, bool special)
{
    if (tok->vocab_size >= tok->cap_tokens) {
        int cap = tok->cap_tokens ? tok->cap_tokens * 2 : 1024;
        uint32_t *off = fg_realloc(tok->off, (size_t)cap * sizeof(uint32_t));
        if (!off)
            return -1;
        tok->off = off;
        uint32_t *ln = fg_realloc(tok->len, (size_t)cap * sizeof(uint32_t));
        if (!ln)
            return -1;
        tok->len = ln;
        uint8_t *sp = fg_realloc(tok->is_special, (size_t)cap);
        if (!sp)
            return -1;
        tok->is_special = sp;
        tok->cap_tokens = cap;
    }
    if (tok->blob_len + len + 1 > tok->blob_cap) {
        size_t cap = tok->blob_cap ? tok->blob_cap * 2 : 65536;
        while (cap < tok->blob_len + len + 1)
            cap *= 2;
        uint8_t *b = fg_realloc(tok->blob, cap);
        if (!b)
            return -1;
        tok->blob = b;
        tok->blob_cap = cap;
    }
    if ((size_t)(tok->str_count + 1) * 2 > tok->str_mask + 1) {
        size_t nm = (tok->str_mask + 1) * 2 - 1;
        uint32_t *ns = fg_calloc(nm + 1, sizeof(uint32_t));
        if (!ns)
            return -1;
        fg_free(tok->str_slot);
        tok->str_slot = ns;
        tok->str_mask = nm;
        for (int i = 0; i < tok->vocab_size; i++)
            str_insert(tok, (uint32_t)i);
    }
    int id = tok->vocab_size++;
    memcpy(tok->blob + tok->blob_len, bytes, len);
    tok->off[id] = (uint32_t)tok->blob_len;
    tok->len[id] = (uint32_t)len;
    tok->is_special[id] = special;
    tok->blob_len += len;
    str_insert(tok, (uint32_t)id);
    tok->str_count++;
    if (len == 1 && !special && tok->byte_id[bytes[0]] == UINT32_MAX)
        tok->byte_id[bytes[0]] = (uint32_t)id;
    return id;
}

static void pair_insert(fg_tokenizer *tok, uint64_t key, uint32_t rank)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & tok->pair_mask;
    while (tok->pair_key[i] != UINT64_MAX) {
        if (tok->pair_key[i] == key)
            return; /* a repeated merge keeps its first (best) rank */
        i = (i + 1) & tok->pair_mask;
    }
    tok->pair_key[i] = key;
    tok->pair_rank[i] = rank;
}

fg_status tok_add_merge(fg_tokenizer *tok, uint32_t a, uint32_t b, uint32_t c)
{
    if (tok->n_merges >= tok->cap_merges) {
        int cap = tok->cap_merges ? tok->cap_merges * 2 : 1024;
        uint32_t *ma = fg_realloc(tok->merge_a, (size_t)cap * sizeof(uint32_t));
        if (!ma)
            return FG_ERR_NOMEM;
        tok->merge_a = ma;
        uint32_t *mb = fg_realloc(tok->merge_b, (size_t)cap * sizeof(uint32_t));
        if (!mb)
            return FG_ERR_NOMEM;
        tok->merge_b = mb;
        uint32_t *mc = fg_realloc(tok->merge_c, (size_t)cap * sizeof(uint32_t));
        if (!mc)
            return FG_ERR_NOMEM;
        tok->merge_c = mc;
        tok->cap_merges = cap;
    }
    if ((size_t)(tok->n_merges + 1) * 2 > tok->pair_mask + 1) {
        size_t nm = (tok->pair_mask + 1) * 2 - 1;
        uint64_t *nk = fg_malloc((nm + 1) * sizeof(uint64_t));
        uint32_t *nr = fg_malloc((nm + 1) * sizeof(uint32_t));
        if (!nk || !nr) {
            fg_free(nk);
            fg_free(nr);
            return FG_ERR_NOMEM;
        }
        memset(nk, 0xFF, (nm + 1) * sizeof(uint64_t));
        fg_free(tok->pair_key);
        fg_free(tok->pair_rank);
        tok->pair_key = nk;
        tok->pair_rank = nr;
        tok->pair_mask = nm;
        for (int r = 0; r < tok->n_merges; r++)
            pair_insert(tok, ((uint64_t)tok->merge_a[r] << 32) | tok->merge_b[r], (uint32_t)r);
    }
    int r = tok->n_merges++;
    tok->merge_a[r] = a;
    tok->merge_b[r] = b;
    tok->merge_c[r] = c;
    pair_insert(tok, ((uint64_t)a << 32) | b, (uint32_t)r);
    return FG_OK;
}

static fg_tokenizer *load_byte(void)
{
    fg_tokenizer *tok = tok_new_empty(TOK_KIND_BYTE, FG_TOK_PATTERN_GPT2);
    if (!tok)
        return NULL;
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (tok_add_token(tok, &c, 1, false) < 0)
            goto fail;
    }
    if (fg_tok_add_special(tok, EOT_TEXT, NULL) != FG_OK)
        goto fail;
    return tok;
fail:
    fg_tok_delete(tok);
    return NULL;
}

fg_tokenizer *fg_tok_load(const char *path)
{
    if (!path) {
        fg_error(FG_ERR_INVALID, "fg_tok_load: path is NULL");
        return NULL;
    }
    if (!strcmp(path, "byte"))
        return load_byte();
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) {
        if (n >= 12 && !strcmp(path + n - 12, "encoder.json")) {
            char *bpe = fg_malloc(n + 1);
            if (!bpe)
                return NULL;
            memcpy(bpe, path, n - 12);
            strcpy(bpe + n - 12, "vocab.bpe");
            fg_tokenizer *tok = tok_load_gpt2(path, bpe);
            fg_free(bpe);
            return tok;
        }
        return tok_load_hf_json(path);
    }
    /* a directory: tokenizer.json if present, else GPT-2's two files */
    char *a = fg_malloc(n + 32), *b = fg_malloc(n + 32);
    fg_tokenizer *tok = NULL;
    if (!a || !b)
        goto done;
    snprintf(a, n + 32, "%s/tokenizer.json", path);
    FILE *f = fopen(a, "rb");
    if (f) {
        fclose(f);
        tok = tok_load_hf_json(a);
        goto done;
    }
    snprintf(a, n + 32, "%s/encoder.json", path);
    snprintf(b, n + 32, "%s/vocab.bpe", path);
    tok = tok_load_gpt2(a, b);
done:
    fg_free(a);
    fg_free(b);
    return tok;
}

int fg_tok_vocab_size(const fg_tokenizer *tok)
{
    return tok->vocab_size;
}
int fg_tok_eot(const fg_tokenizer *tok)
{
    return tok->eot;
}
fg_tok_pattern fg_tok_get_pattern(const fg_tokenizer *tok)
{
    return tok->pattern;
}
int fg_tok_n_merges(const fg_tokenizer *tok)
{
    return tok->n_merges;
}
int fg_tok_n_special(const fg_tokenizer *tok)
{
    return tok->n_special;
}

const uint8_t *fg_tok_token_bytes(const fg_tokenizer *tok, uint32_t id, size_t *len)
{
    if (id >= (uint32_t)tok->vocab_size)
        return NULL;
    *len = tok->len[id];
    return tok->blob + tok->off[id];
}

fg_status tok_mark_special(fg_tokenizer *tok, uint32_t id)
{
    if (tok->is_special[id])
        return FG_OK;
    uint32_t *s = fg_realloc(tok->special_ids, (size_t)(tok->n_special + 1) * sizeof(uint32_t));
    if (!s)
        return FG_ERR_NOMEM;
    tok->special_ids = s;
    s[tok->n_special++] = id;
    tok->is_special[id] = 1;
    if (tok->len[id] == sizeof EOT_TEXT - 1 && !memcmp(tok->blob + tok->off[id], EOT_TEXT, tok->len[id]))
        tok->eot = (int)id;
    return FG_OK;
}

fg_status fg_tok_add_special(fg_tokenizer *tok, const char *text, int *id)
{
    size_t n = text ? strlen(text) : 0;
    if (n == 0)
        return fg_error(FG_ERR_INVALID, "special token: empty string");
    int t = tok_find(tok, (const uint8_t *)text, n);
    if (t < 0 && (t = tok_add_token(tok, (const uint8_t *)text, n, false)) < 0)
        return FG_ERR_NOMEM;
    fg_status st = tok_mark_special(tok, (uint32_t)t);
    if (st == FG_OK && id)
        *id = t;
    return st;
}

int fg_tok_special_id(const fg_tokenizer *tok, const char *text)
{
    int t = tok_find(tok, (const uint8_t *)text, strlen(text));
    return t >= 0 && tok->is_special[t] ? t : -1;
}

/* ---- encoding ---- */

typedef struct idvec {
    uint32_t *v;
    size_t n, cap;
} idvec;

static fg_status idvec_reserve(idvec *v, size_t extra)
{
    if (v->n + extra <= v->cap)
        return FG_OK;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->n + extra)
        cap *= 2;
    uint32_t *p = fg_realloc(v->v, cap * sizeof(uint32_t));
    if (!p)
        return FG_ERR_NOMEM;
    v->v = p;
    v->cap = cap;
    return FG_OK;
}

/* BPE of a long word with a min-heap of (rank, position) and a linked list of
 * symbols: O(n log n) where the linear scan would be O(n^2). Same result: both merge
 * the leftmost occurrence of the lowest-ranked pair first. */
static fg_status bpe_word_heap(const fg_tokenizer *tok, const uint8_t *w, size_t n, idvec *out)
{
    fg_status st = FG_ERR_NOMEM;
    uint32_t *sym = fg_malloc(n * sizeof(uint32_t));
    int32_t *prev = fg_malloc(n * sizeof(int32_t)), *next = fg_malloc(n * sizeof(int32_t));
    uint64_t *heap = fg_malloc(2 * n * sizeof(uint64_t)); /* at most n initial + 2 per merge */
    size_t hn = 0;
    if (!sym || !prev || !next || !heap)
        goto done;
    for (size_t i = 0; i < n; i++) {
        sym[i] = tok->byte_id[w[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
#define HEAP_PUSH(key)                                                                                                 \
    do {                                                                                                               \
        size_t j_ = hn++;                                                                                              \
        uint64_t k_ = (key);                                                                                           \
        while (j_ > 0 && heap[(j_ - 1) / 2] > k_) {                                                                    \
            heap[j_] = heap[(j_ - 1) / 2];                                                                             \
            j_ = (j_ - 1) / 2;                                                                                         \
        }                                                                                                              \
        heap[j_] = k_;                                                                                                 \
    } while (0)
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r = tok_pair_rank(tok, sym[i], sym[i + 1]);
        if (r != TOK_NO_RANK)
            HEAP_PUSH(((uint64_t)r << 32) | i);
    }
    size_t hcap = 2 * n;
    while (hn > 0) {
        uint64_t top = heap[0];
        uint64_t last = heap[--hn];
        size_t j = 0;
        for (;;) { /* sift `last` down from the root */
            size_t c = 2 * j + 1;
            if (c >= hn)
                break;
            if (c + 1 < hn && heap[c + 1] < heap[c])
                c++;
            if (heap[c] >= last)
                break;
            heap[j] = heap[c];
            j = c;
        }
        if (hn > 0)
            heap[j] = last;
        uint32_t r = (uint32_t)(top >> 32);
        int32_t i = (int32_t)(top & 0xFFFFFFFFu);
        int32_t k = next[i];
        if (sym[i] == UINT32_MAX || k < 0 || tok_pair_rank(tok, sym[i], sym[k]) != r)
            continue; /* stale: one side was merged away since the push */
        sym[i] = tok->merge_c[r];
        sym[k] = UINT32_MAX;
        next[i] = next[k];
        if (next[k] >= 0)
            prev[next[k]] = i;
        if (hn + 2 > hcap) {
            uint64_t *h2 = fg_realloc(heap, 2 * hcap * sizeof(uint64_t));
            if (!h2)
                goto done;
            heap = h2;
            hcap *= 2;
        }
        if (prev[i] >= 0) {
            uint32_t rp = tok_pair_rank(tok, sym[prev[i]], sym[i]);
            if (rp != TOK_NO_RANK)
                HEAP_PUSH(((uint64_t)rp << 32) | (uint32_t)prev[i]);
        }
        if (next[i] >= 0) {
            uint32_t rn = tok_pair_rank(tok, sym[i], sym[next[i]]);
            if (rn != TOK_NO_RANK)
                HEAP_PUSH(((uint64_t)rn << 32) | (uint32_t)i);
        }
    }
#undef HEAP_PUSH
    if ((st = idvec_reserve(out, n)) != FG_OK)
        goto done;
    for (int32_t i = 0; i >= 0; i = next[i])
        out->v[out->n++] = sym[i];
    st = FG_OK;
done:
    fg_free(sym);
    fg_free(prev);
    fg_free(next);
    fg_free(heap);
    return st;
}

#define BPE_LINEAR_MAX 128

/* Appends the BPE ids of one pre-token w[0..n). Short words: repeated linear scan
 * for the lowest-ranked adjacent pair (leftmost on ties), as tiktoken does. */
static fg_status bpe_word(const fg_tokenizer *tok, const uint8_t *w, size_t n, idvec *out)
{
    if (n > BPE_LINEAR_MAX)
        return bpe_word_heap(tok, w, n, out);
    if (tok->ignore_merges && n > 1) {
        int t = tok_find(tok, w, n);
        if (t >= 0 && !tok->is_special[t]) {
            if (idvec_reserve(out, 1) != FG_OK)
                return FG_ERR_NOMEM;
            out->v[out->n++] = (uint32_t)t;
            return FG_OK;
        }
    }
    uint32_t sym[BPE_LINEAR_MAX], rank[BPE_LINEAR_MAX];
    size_t m = n;
    for (size_t i = 0; i < n; i++)
        sym[i] = tok->byte_id[w[i]];
    for (size_t i = 0; i + 1 < m; i++)
        rank[i] = tok_pair_rank(tok, sym[i], sym[i + 1]);
    while (m > 1) {
        uint32_t best = TOK_NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) {
                best = rank[i];
                bi = i;
            }
        if (best == TOK_NO_RANK)
            break;
        sym[bi] = tok->merge_c[best];
        memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof(uint32_t));
        memmove(rank + bi + 1, rank + bi + 2, (m > bi + 3 ? m - bi - 3 : 0) * sizeof(uint32_t));
        m--;
        if (bi > 0)
            rank[bi - 1] = tok_pair_rank(tok, sym[bi - 1], sym[bi]);
        if (bi + 1 < m)
            rank[bi] = tok_pair_rank(tok, sym[bi], sym[bi + 1]);
    }
    if (idvec_reserve(out, m) != FG_OK)
        return FG_ERR_NOMEM;
    memcpy(out->v + out->n, sym, m * sizeof(uint32_t));
    out->n += m;
    return FG_OK;
}

/* A direct-mapped cache of word -> ids for one encode call over a long text: most
 * words repeat, and a hit skips the merge loop (which is ~2/3 of encode time). Words
 * up to 24 bytes with up to 7 ids are cached; one 64-byte entry per slot. */
typedef struct wcache_ent {
    uint64_t h;
    uint16_t wlen, n;
    uint32_t ids[7];
    uint8_t w[24];
} wcache_ent;
#define WCACHE_SLOTS 4096
#define WCACHE_MIN_TEXT 16384 /* bytes: below this the cache costs more than it saves */

/* Encodes ordinary text (no specials) and appends to out. */
static fg_status encode_plain_cached(const fg_tokenizer *tok, const uint8_t *t, size_t len, wcache_ent *cache,
                                     idvec *out)
{
    if (tok->kind == TOK_KIND_BYTE) {
        if (idvec_reserve(out, len) != FG_OK)
            return FG_ERR_NOMEM;
        for (size_t i = 0; i < len; i++)
            out->v[out->n++] = t[i];
        return FG_OK;
    }
    fg_status st = FG_OK;
    size_t pos = 0;
    while (pos < len) {
        size_t end = tok_scan_piece(tok, t, len, pos), wl = end - pos;
        const uint8_t *w = t + pos;
        pos = end;
        if (wl == 1) {
            if ((st = idvec_reserve(out, 1)) != FG_OK)
                break;
            out->v[out->n++] = tok->byte_id[w[0]];
            continue;
        }
        if (!cache || wl > sizeof cache->w) {
            if ((st = bpe_word(tok, w, wl, out)) != FG_OK)
                break;
            continue;
        }
        uint64_t h = tok_hash_bytes(w, wl);
        wcache_ent *e = &cache[(h >> 20) & (WCACHE_SLOTS - 1)];
        if (e->h == h && e->wlen == wl && !memcmp(e->w, w, wl)) {
            if ((st = idvec_reserve(out, e->n)) != FG_OK)
                break;
            memcpy(out->v + out->n, e->ids, e->n * sizeof(uint32_t));
            out->n += e->n;
            continue;
        }
        size_t before = out->n;
        if ((st = bpe_word(tok, w, wl, out)) != FG_OK)
            break;
        size_t got = out->n - before;
        if (got <= 7) {
            e->h = h;
            e->wlen = (uint16_t)wl;
            e->n = (uint16_t)got;
            memcpy(e->ids, out->v + before, got * sizeof(uint32_t));
            memcpy(e->w, w, wl);
        }
    }
    return st;
}

/* encode_plain_cached with a cache of its own when the text is long enough to pay. */
static fg_status encode_plain(const fg_tokenizer *tok, const uint8_t *t, size_t len, idvec *out)
{
    wcache_ent *cache = len >= WCACHE_MIN_TEXT ? fg_calloc(WCACHE_SLOTS, sizeof(wcache_ent)) : NULL;
    fg_status st = encode_plain_cached(tok, t, len, cache, out);
    fg_free(cache);
    return st;
}

/* Leftmost occurrence of any special token in t[0..len) (longest on ties). */
static const uint8_t *find_special(const fg_tokenizer *tok, const uint8_t *t, size_t len, uint32_t *id)
{
    const uint8_t *best = NULL;
    size_t best_len = 0;
    for (int s = 0; s < tok->n_special; s++) {
        uint32_t sid = tok->special_ids[s];
        size_t lim = best ? (size_t)(best - t) + tok->len[sid] : len; /* matches starting at or before best */
        const uint8_t *p = memmem(t, lim < len ? lim : len, tok->blob + tok->off[sid], tok->len[sid]);
        if (p && (!best || p < best || (p == best && tok->len[sid] > best_len))) {
            best = p;
            best_len = tok->len[sid];
            *id = sid;
        }
    }
    return best;
}

static fg_status encode_any(const fg_tokenizer *tok, const uint8_t *t, size_t len, bool special, idvec *out)
{
    while (special && len > 0) {
        uint32_t sid = 0;
        const uint8_t *p = find_special(tok, t, len, &sid);
        if (!p)
            break;
        fg_status st = encode_plain(tok, t, (size_t)(p - t), out);
        if (st != FG_OK || (st = idvec_reserve(out, 1)) != FG_OK)
            return st;
        out->v[out->n++] = sid;
        len -= (size_t)(p - t) + tok->len[sid];
        t = p + tok->len[sid];
    }
    return encode_plain(tok, t, len, out);
}

static fg_status encode_entry(const fg_tokenizer *tok, const char *text, size_t len, bool special, uint32_t **ids,
                              size_t *n)
{
    idvec v = {0};
    *ids = NULL;
    *n = 0;
    if (!tok || (!text && len > 0))
        return fg_error(FG_ERR_INVALID, "fg_tok_encode: NULL tokenizer or text");
    fg_status st = idvec_reserve(&v, len / 3 + 16);
    if (st == FG_OK)
        st = encode_any(tok, (const uint8_t *)text, len, special, &v);
    if (st != FG_OK) {
        fg_free(v.v);
        return st == FG_ERR_NOMEM ? fg_error(st, "fg_tok_encode: out of memory (%zu bytes of text)", len) : st;
    }
    *ids = v.v;
    *n = v.n;
    return FG_OK;
}

fg_status fg_tok_encode(const fg_tokenizer *tok, const char *text, size_t len, uint32_t **ids, size_t *n)
{
    return encode_entry(tok, text, len, false, ids, n);
}

fg_status fg_tok_encode_special(const fg_tokenizer *tok, const char *text, size_t len, uint32_t **ids, size_t *n)
{
    return encode_entry(tok, text, len, true, ids, n);
}

fg_status fg_tok_decode(const fg_tokenizer *tok, const uint32_t *ids, size_t n, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= (uint32_t)tok->vocab_size)
            return fg_error(FG_ERR_INVALID, "fg_tok_decode: id %u at position %zu is out of range (vocab size %d)",
                            ids[i], i, tok->vocab_size);
        total += tok->len[ids[i]];
    }
    char *out = fg_malloc(total + 1);
    if (!out)
        return FG_ERR_NOMEM;
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + p, tok->blob + tok->off[ids[i]], tok->len[ids[i]]);
        p += tok->len[ids[i]];
    }
    out[p] = 0;
    *text = out;
    *len = p;
    return FG_OK;
}

/* ---- many documents, many threads ---- */

/* A cut point no pre-token of either pattern crosses: just after a '\n' that follows
 * a visible ASCII character and precedes an ASCII letter or digit. The '\n' is then a
 * whitespace run of one, which both patterns end right there (GPT-2 as "\n" alone,
 * cl100k as "\n" or glued to the punctuation before it), and a letter/number run
 * never starts with '\n'. A longer run would differ: before a letter the regex keeps
 * its last character for the next word, at the end of a chunk it would not. */
size_t tok_safe_cut(const uint8_t *t, size_t len, size_t from)
{
    for (size_t i = from > 0 ? from : 1; i + 1 < len; i++) {
        if (t[i] != '\n' || t[i - 1] < 0x21 || t[i - 1] > 0x7E)
            continue;
        uint8_t c = t[i + 1];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            return i + 1;
    }
    return len;
}

typedef struct chunk {
    size_t doc;
    size_t begin, end; /* bytes of the document */
    bool last;         /* last chunk of its document: gets the eot */
    size_t n_ids;      /* ids it encoded to (eot included), for the document ends */
} chunk;

/* Encodes chunks ch[0..n) in order into out (one job: one thread, one word cache). */
static fg_status encode_job(const fg_tokenizer *tok, const char *const *docs, chunk *ch, size_t n, bool eot, idvec *out)
{
    size_t bytes = 0;
    for (size_t c = 0; c < n; c++)
        bytes += ch[c].end - ch[c].begin;
    fg_status st = idvec_reserve(out, bytes / 3 + 16);
    wcache_ent *cache = bytes >= WCACHE_MIN_TEXT ? fg_calloc(WCACHE_SLOTS, sizeof(wcache_ent)) : NULL;
    for (size_t c = 0; c < n && st == FG_OK; c++) {
        size_t before = out->n;
        st = encode_plain_cached(tok, (const uint8_t *)docs[ch[c].doc] + ch[c].begin, ch[c].end - ch[c].begin, cache,
                                 out);
        if (st == FG_OK && eot && ch[c].last && (st = idvec_reserve(out, 1)) == FG_OK)
            out->v[out->n++] = (uint32_t)tok->eot;
        ch[c].n_ids = out->n - before;
    }
    fg_free(cache);
    return st;
}

#define CHUNK_BYTES (256u << 10)

fg_status fg_tok_encode_docs(const fg_tokenizer *tok, const char *const *docs, const size_t *lens, size_t n_docs,
                             bool eot_after_each, int threads, fg_progress *progress, uint32_t **ids, size_t *n)
{
    return fg_tok_encode_docs_ends(tok, docs, lens, n_docs, eot_after_each, threads, progress, ids, n, NULL);
}

fg_status fg_tok_encode_docs_ends(const fg_tokenizer *tok, const char *const *docs, const size_t *lens, size_t n_docs,
                                  bool eot_after_each, int threads, fg_progress *progress, uint32_t **ids, size_t *n,
                                  size_t *ends)
{
    *ids = NULL;
    *n = 0;
    if (eot_after_each && tok->eot < 0)
        return fg_error(FG_ERR_INVALID, "fg_tok_encode_docs: the tokenizer has no <|endoftext|> token");
    fg_status st = FG_OK;
    chunk *ch = NULL;
    idvec *outs = NULL;
    size_t *js = NULL;
    size_t n_ch = 0, cap_ch = 0, n_jobs = 0;
    for (size_t d = 0; d < n_docs; d++) {
        size_t pos = 0;
        do {
            size_t end = lens[d] - pos > CHUNK_BYTES
                             ? tok_safe_cut((const uint8_t *)docs[d], lens[d], pos + CHUNK_BYTES)
                             : lens[d];
            if (n_ch == cap_ch) {
                cap_ch = cap_ch ? cap_ch * 2 : 64;
                chunk *c2 = fg_realloc(ch, cap_ch * sizeof(chunk));
                if (!c2) {
                    st = FG_ERR_NOMEM;
                    goto done;
                }
                ch = c2;
            }
            ch[n_ch++] = (chunk){d, pos, end, end == lens[d], 0};
            pos = end;
        } while (pos < lens[d]);
    }
    /* jobs: runs of consecutive chunks of about CHUNK_BYTES (many small documents share
     * one job and its word cache); job j is chunks [js[j], js[j + 1]) */
    js = fg_malloc((n_ch + 1) * sizeof(size_t));
    if (!js) {
        st = FG_ERR_NOMEM;
        goto done;
    }
    size_t acc = 0;
    for (size_t c = 0; c < n_ch; c++) {
        if (acc == 0)
            js[n_jobs++] = c;
        acc += ch[c].end - ch[c].begin;
        if (acc >= CHUNK_BYTES)
            acc = 0;
    }
    js[n_jobs] = n_ch;
    outs = fg_calloc(n_jobs ? n_jobs : 1, sizeof(idvec));
    if (!outs) {
        st = FG_ERR_NOMEM;
        goto done;
    }
    int nt = threads > 0 ? threads : fg_threads_get();
    double done_bytes = progress ? progress->done : 0; /* continues the caller's count */
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (size_t j = 0; j < n_jobs; j++) {
        int f;
#pragma omp atomic read
        f = failed;
        if (f)
            continue;
        if (encode_job(tok, docs, ch + js[j], js[j + 1] - js[j], eot_after_each, &outs[j]) != FG_OK) {
#pragma omp atomic write
            failed = 1;
        }
        if (progress) {
            size_t bytes = 0;
            for (size_t c = js[j]; c < js[j + 1]; c++)
                bytes += ch[c].end - ch[c].begin;
#pragma omp critical(fg_tok_progress)
            {
                done_bytes += (double)bytes;
                fg_progress_update(progress, done_bytes);
            }
        }
    }
    if (failed) {
        st = fg_error(FG_ERR_NOMEM, "fg_tok_encode_docs: out of memory");
        goto done;
    }
    size_t total = 0;
    for (size_t j = 0; j < n_jobs; j++)
        total += outs[j].n;
    uint32_t *all = fg_malloc((total ? total : 1) * sizeof(uint32_t));
    if (!all) {
        st = FG_ERR_NOMEM;
        goto done;
    }
    size_t p = 0;
    for (size_t j = 0; j < n_jobs; j++) {
        if (outs[j].n)
            memcpy(all + p, outs[j].v, outs[j].n * sizeof(uint32_t));
        p += outs[j].n;
    }
    if (ends) { /* chunks are in document order; a document without chunks cannot occur */
        size_t at = 0;
        for (size_t c = 0; c < n_ch; c++) {
            at += ch[c].n_ids;
            if (ch[c].last)
                ends[ch[c].doc] = at;
        }
    }
    *ids = all;
    *n = total;
done:
    if (outs)
        for (size_t j = 0; j < n_jobs; j++)
            fg_free(outs[j].v);
    fg_free(outs);
    fg_free(js);
    fg_free(ch);
    return st;
}
