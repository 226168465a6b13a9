/* train.c: training a byte-level BPE vocabulary: multi-threaded word counting with the
 * pre-tokenizer, then Hugging Face BpeTrainer's merge loop: pair counts updated
 * incrementally from the words each merge touches, a max-heap of (count, pair) with
 * lazy correction of stale counts, tie-break on the smallest (left id, right id).
 * Leaves out: max token length, limit_alphabet, continuing-subword prefixes. */
#include <omp.h>
#include <string.h>

#include "tok_impl.h"

/* ---- word counts: open addressing over words stored in one byte pool ---- */
typedef struct wmap {
    uint32_t *slot; /* entry index + 1, 0 empty */
    size_t mask;
    uint64_t *hash; /* [n] */
    uint64_t *off;  /* [n] offset in bytes */
    uint32_t *len;  /* [n] */
    int64_t *count; /* [n] */
    size_t n, cap;
    uint8_t *bytes;
    size_t nbytes, capbytes;
} wmap;

static void wmap_free(wmap *m)
{
    fg_free(m->slot);
    fg_free(m->hash);
    fg_free(m->off);
    fg_free(m->len);
    fg_free(m->count);
    fg_free(m->bytes);
    memset(m, 0, sizeof *m);
}

static fg_status wmap_grow_slots(wmap *m)
{
    size_t nm = m->mask ? (m->mask + 1) * 2 - 1 : 4095;
    uint32_t *ns = fg_calloc(nm + 1, sizeof(uint32_t));
    if (!ns)
        return FG_ERR_NOMEM;
    for (size_t e = 0; e < m->n; e++) {
        size_t i = (size_t)m->hash[e] & nm;
        while (ns[i])
            i = (i + 1) & nm;
        ns[i] = (uint32_t)e + 1;
    }
    fg_free(m->slot);
    m->slot = ns;
    m->mask = nm;
    return FG_OK;
}

static fg_status wmap_add(wmap *m, const uint8_t *w, size_t len, uint64_t h, int64_t count)
{
    if (!m->slot || (m->n + 1) * 2 > m->mask + 1) {
        if (wmap_grow_slots(m) != FG_OK)
            return FG_ERR_NOMEM;
    }
    size_t i = (size_t)h & m->mask;
    for (uint32_t s; (s = m->slot[i]) != 0; i = (i + 1) & m->mask) {
        size_t e = s - 1;
        if (m->hash[e] == h && m->len[e] == len && !memcmp(m->bytes + m->off[e], w, len)) {
            m->count[e] += count;
            return FG_OK;
        }
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4096;
        uint64_t *hh = fg_realloc(m->hash, cap * sizeof(uint64_t));
        if (!hh)
            return FG_ERR_NOMEM;
        m->hash = hh;
        uint64_t *oo = fg_realloc(m->off, cap * sizeof(uint64_t));
        if (!oo)
            return FG_ERR_NOMEM;
        m->off = oo;
        uint32_t *ll = fg_realloc(m->len, cap * sizeof(uint32_t));
        if (!ll)
            return FG_ERR_NOMEM;
        m->len = ll;
        int64_t *cc = fg_realloc(m->count, cap * sizeof(int64_t));
        if (!cc)
            return FG_ERR_NOMEM;
        m->count = cc;
        m->cap = cap;
    }
    if (m->nbytes + len > m->capbytes) {
        size_t cap = m->capbytes ? m->capbytes * 2 : 65536;
        while (cap < m->nbytes + len)
            cap *= 2;
        uint8_t *b = fg_realloc(m->bytes, cap);
        if (!b)
            return FG_ERR_NOMEM;
        m->bytes = b;
        m->capbytes = cap;
    }
    size_t e = m->n++;
    memcpy(m->bytes + m->nbytes, w, len);
    m->hash[e] = h;
    m->off[e] = m->nbytes;
    m->len[e] = (uint32_t)len;
    m->count[e] = count;
    m->nbytes += len;
    m->slot[i] = (uint32_t)e + 1;
    return FG_OK;
}

/* ---- pairs: hash (a, b) -> index; per pair a count and a chunked list of words ---- */
#define POS_PER_CHUNK 14
typedef struct pos_chunk {
    uint32_t next; /* chunk index + 1, 0 = end */
    uint32_t n;
    uint32_t w[POS_PER_CHUNK];
} pos_chunk;

typedef struct pairs {
    uint64_t *key; /* slot -> key, UINT64_MAX empty */
    uint32_t *idx; /* slot -> pair index */
    size_t mask;
    /* per pair */
    uint32_t *a, *b;
    int64_t *count;
    uint32_t *head, *tail; /* chunk index + 1 */
    uint32_t *last_w;      /* last word appended (dedup), UINT32_MAX none */
    uint32_t *touched;     /* merge iteration that last added words to it */
    size_t n, cap;
    pos_chunk *chunks;
    size_t n_chunks, cap_chunks;
} pairs;

static void pairs_free(pairs *p)
{
    fg_free(p->key);
    fg_free(p->idx);
    fg_free(p->a);
    fg_free(p->b);
    fg_free(p->count);
    fg_free(p->head);
    fg_free(p->tail);
    fg_free(p->last_w);
    fg_free(p->touched);
    fg_free(p->chunks);
    memset(p, 0, sizeof *p);
}

static inline size_t pair_slot(uint64_t key, size_t mask)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static fg_status pairs_rehash(pairs *p)
{
    size_t nm = p->mask ? (p->mask + 1) * 2 - 1 : 65535;
    uint64_t *nk = fg_malloc((nm + 1) * sizeof(uint64_t));
    uint32_t *ni = fg_malloc((nm + 1) * sizeof(uint32_t));
    if (!nk || !ni) {
        fg_free(nk);
        fg_free(ni);
        return FG_ERR_NOMEM;
    }
    memset(nk, 0xFF, (nm + 1) * sizeof(uint64_t));
    for (size_t e = 0; e < p->n; e++) {
        uint64_t key = ((uint64_t)p->a[e] << 32) | p->b[e];
        size_t i = pair_slot(key, nm);
        while (nk[i] != UINT64_MAX)
            i = (i + 1) & nm;
        nk[i] = key;
        ni[i] = (uint32_t)e;
    }
    fg_free(p->key);
    fg_free(p->idx);
    p->key = nk;
    p->idx = ni;
    p->mask = nm;
    return FG_OK;
}

#define GROW(arr, type, cap)                                                                                           \
    do {                                                                                                               \
        type *t_ = fg_realloc((arr), (cap) * sizeof(type));                                                            \
        if (!t_)                                                                                                       \
            return FG_ERR_NOMEM;                                                                                       \
        (arr) = t_;                                                                                                    \
    } while (0)

/* Index of pair (a, b), created with count 0 when new; -1 on allocation failure. */
static long pairs_get(pairs *p, uint32_t a, uint32_t b)
{
    uint64_t key = ((uint64_t)a << 32) | b;
    if (!p->key || (p->n + 1) * 2 > p->mask + 1) {
        if (pairs_rehash(p) != FG_OK)
            return -1;
    }
    size_t i = pair_slot(key, p->mask);
    for (; p->key[i] != UINT64_MAX; i = (i + 1) & p->mask)
        if (p->key[i] == key)
            return p->idx[i];
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 65536;
        uint32_t *a2 = fg_realloc(p->a, cap * sizeof(uint32_t));
        if (!a2)
            return -1;
        p->a = a2;
        uint32_t *b2 = fg_realloc(p->b, cap * sizeof(uint32_t));
        if (!b2)
            return -1;
        p->b = b2;
        int64_t *c2 = fg_realloc(p->count, cap * sizeof(int64_t));
        if (!c2)
            return -1;
        p->count = c2;
        uint32_t *h2 = fg_realloc(p->head, cap * sizeof(uint32_t));
        if (!h2)
            return -1;
        p->head = h2;
        uint32_t *t2 = fg_realloc(p->tail, cap * sizeof(uint32_t));
        if (!t2)
            return -1;
        p->tail = t2;
        uint32_t *l2 = fg_realloc(p->last_w, cap * sizeof(uint32_t));
        if (!l2)
            return -1;
        p->last_w = l2;
        uint32_t *u2 = fg_realloc(p->touched, cap * sizeof(uint32_t));
        if (!u2)
            return -1;
        p->touched = u2;
        p->cap = cap;
    }
    size_t e = p->n++;
    p->a[e] = a;
    p->b[e] = b;
    p->count[e] = 0;
    p->head[e] = p->tail[e] = 0;
    p->last_w[e] = UINT32_MAX;
    p->touched[e] = UINT32_MAX;
    p->key[i] = key;
    p->idx[i] = (uint32_t)e;
    return (long)e;
}

static long pairs_find(const pairs *p, uint32_t a, uint32_t b)
{
    uint64_t key = ((uint64_t)a << 32) | b;
    for (size_t i = pair_slot(key, p->mask); p->key[i] != UINT64_MAX; i = (i + 1) & p->mask)
        if (p->key[i] == key)
            return p->idx[i];
    return -1;
}

/* Appends word w to pair e's list (once per consecutive run of the same word). */
static fg_status pairs_add_word(pairs *p, size_t e, uint32_t w)
{
    if (p->last_w[e] == w)
        return FG_OK;
    p->last_w[e] = w;
    uint32_t t = p->tail[e];
    if (t == 0 || p->chunks[t - 1].n == POS_PER_CHUNK) {
        if (p->n_chunks == p->cap_chunks) {
            size_t cap = p->cap_chunks ? p->cap_chunks * 2 : 65536;
            GROW(p->chunks, pos_chunk, cap);
            p->cap_chunks = cap;
        }
        uint32_t c = (uint32_t)++p->n_chunks;
        p->chunks[c - 1].next = 0;
        p->chunks[c - 1].n = 0;
        if (t)
            p->chunks[t - 1].next = c;
        else
            p->head[e] = c;
        p->tail[e] = c;
        t = c;
    }
    pos_chunk *ch = &p->chunks[t - 1];
    ch->w[ch->n++] = w;
    return FG_OK;
}

/* ---- max-heap of (count, a, b): higher count first, then smaller (a, b) ---- */
typedef struct hent {
    int64_t count;
    uint32_t a, b;
} hent;

static inline bool hent_before(const hent *x, const hent *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    if (x->a != y->a)
        return x->a < y->a;
    return x->b < y->b;
}

typedef struct heap {
    hent *v;
    size_t n, cap;
} heap;

static fg_status heap_push(heap *h, hent e)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 65536;
        GROW(h->v, hent, cap);
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && hent_before(&e, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
    return FG_OK;
}

static hent heap_pop(heap *h)
{
    hent top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && hent_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!hent_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0)
        h->v[i] = last;
    return top;
}

void fg_tok_train_opts_default(fg_tok_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->vocab_size = 32768;
    o->min_frequency = 2;
    o->pattern = FG_TOK_PATTERN_GPT2;
}

/* ---- the trainer state ---- */
typedef struct trainer {
    const fg_tokenizer *tok; /* growing vocabulary: token bytes + lookup */
    uint32_t *sym;           /* all words' symbols, word w at sym[woff[w] .. + wlen[w]) */
    uint64_t *woff;
    uint32_t *wlen;
    int64_t *wcount;
    size_t n_words;
    pairs p;
    heap h;
    uint32_t iter;
} trainer;

/* Adds delta * count(w) to pair (a, b); records w for the pair when delta > 0. */
static fg_status change(trainer *t, uint32_t a, uint32_t b, int delta, uint32_t w, uint32_t **touched, size_t *nt,
                        size_t *ct)
{
    long e = pairs_get(&t->p, a, b);
    if (e < 0)
        return FG_ERR_NOMEM;
    t->p.count[e] += delta * t->wcount[w];
    if (delta > 0) {
        if (pairs_add_word(&t->p, (size_t)e, w) != FG_OK)
            return FG_ERR_NOMEM;
        if (t->p.touched[e] != t->iter) {
            t->p.touched[e] = t->iter;
            if (*nt == *ct) {
                size_t cap = *ct ? *ct * 2 : 1024;
                GROW(*touched, uint32_t, cap);
                *ct = cap;
            }
            (*touched)[(*nt)++] = (uint32_t)e;
        }
    }
    return FG_OK;
}

/* Merges every non-overlapping (c1, c2) of word w left to right into `rep`, reporting
 * the pair-count changes exactly as Hugging Face's Word::merge does. */
static fg_status merge_word(trainer *t, uint32_t w, uint32_t c1, uint32_t c2, uint32_t rep, uint32_t **touched,
                            size_t *nt, size_t *ct)
{
    uint32_t *s = t->sym + t->woff[w];
    size_t n = t->wlen[w];
    fg_status st = FG_OK;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != c1 || i + 1 >= n || s[i + 1] != c2)
            continue;
        if (i > 0) {
            if ((st = change(t, s[i - 1], c1, -1, w, touched, nt, ct)) != FG_OK ||
                (st = change(t, s[i - 1], rep, 1, w, touched, nt, ct)) != FG_OK)
                return st;
        }
        s[i] = rep;
        memmove(s + i + 1, s + i + 2, (n - i - 2) * sizeof(uint32_t));
        n--;
        if (i + 1 < n) {
            if ((st = change(t, c2, s[i + 1], -1, w, touched, nt, ct)) != FG_OK ||
                (st = change(t, rep, s[i + 1], 1, w, touched, nt, ct)) != FG_OK)
                return st;
        }
    }
    t->wlen[w] = (uint32_t)n;
    return FG_OK;
}

typedef struct chunk_ref {
    size_t doc, begin, end;
} chunk_ref;

/* Pre-tokenizes every document and counts words, one map per thread, merged after. */
static fg_status count_words(const fg_tokenizer *tok, const fg_tok_train_opts *o, const char *const *docs,
                             const size_t *lens, size_t n_docs, wmap *out)
{
    fg_status st = FG_OK;
    int nt = o->threads > 0 ? o->threads : fg_threads_get();
    chunk_ref *ch = NULL;
    size_t n_ch = 0, cap_ch = 0;
    double total = 0;
    wmap *maps = fg_calloc((size_t)nt, sizeof(wmap));
    if (!maps)
        return FG_ERR_NOMEM;
    for (size_t d = 0; d < n_docs; d++) {
        total += (double)lens[d];
        for (size_t pos = 0; pos < lens[d];) {
            size_t end = lens[d] - pos > (1u << 20) ? tok_safe_cut((const uint8_t *)docs[d], lens[d], pos + (1u << 20))
                                                    : lens[d];
            if (n_ch == cap_ch) {
                cap_ch = cap_ch ? cap_ch * 2 : 256;
                chunk_ref *c2 = fg_realloc(ch, cap_ch * sizeof(chunk_ref));
                if (!c2) {
                    st = FG_ERR_NOMEM;
                    goto done;
                }
                ch = c2;
            }
            ch[n_ch++] = (chunk_ref){d, pos, end};
            pos = end;
        }
    }
    fg_progress prog;
    fg_progress_begin(&prog, "count words", o->progress ? total : 0, "B");
    prog.enabled = prog.enabled && o->progress;
    double done_b = 0;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (size_t c = 0; c < n_ch; c++) {
        wmap *m = &maps[omp_get_thread_num()];
        const uint8_t *t = (const uint8_t *)docs[ch[c].doc];
        for (size_t pos = ch[c].begin; pos < ch[c].end && !failed;) {
            size_t end = tok_scan_piece(tok, t, ch[c].end, pos);
            if (wmap_add(m, t + pos, end - pos, tok_hash_bytes(t + pos, end - pos), 1) != FG_OK) {
#pragma omp atomic write
                failed = 1;
            }
            pos = end;
        }
        if (prog.enabled) {
#pragma omp critical(fg_tok_train_progress)
            {
                done_b += (double)(ch[c].end - ch[c].begin);
                fg_progress_update(&prog, done_b);
            }
        }
    }
    fg_progress_end(&prog);
    if (failed) {
        st = fg_error(FG_ERR_NOMEM, "fg_tok_train: out of memory counting words");
        goto done;
    }
    for (int k = 0; k < nt && st == FG_OK; k++) {
        if (k == 0) {
            *out = maps[0];
            memset(&maps[0], 0, sizeof(wmap));
            continue;
        }
        for (size_t e = 0; e < maps[k].n && st == FG_OK; e++)
            st = wmap_add(out, maps[k].bytes + maps[k].off[e], maps[k].len[e], maps[k].hash[e], maps[k].count[e]);
    }
done:
    for (int k = 0; k < nt; k++)
        wmap_free(&maps[k]);
    fg_free(maps);
    fg_free(ch);
    return st;
}

fg_status fg_tok_train(const fg_tok_train_opts *o, const char *const *docs, const size_t *lens, size_t n_docs,
                       fg_tokenizer **out)
{
    static const char *const default_specials[] = {"<|endoftext|>"};
    const char *const *specials = o->specials ? o->specials : default_specials;
    int n_specials = o->specials ? o->n_specials : 1;
    *out = NULL;
    if (o->vocab_size < 256 + n_specials)
        return fg_error(FG_ERR_INVALID, "fg_tok_train: vocab_size %d is below 256 bytes + %d special tokens",
                        o->vocab_size, n_specials);
    fg_status st = FG_OK;
    trainer t = {0};
    wmap words = {0};
    uint32_t *touched = NULL;
    size_t nt = 0, ct = 0;
    uint8_t *cat = NULL;
    fg_progress prog = {0};
    fg_tokenizer *tok = tok_new_empty(TOK_KIND_BPE, o->pattern);
    if (!tok)
        return FG_ERR_NOMEM;
    t.tok = tok;
    /* ids 0..255: the bytes ordered by their byte-level code point, as GPT-2 and
     * Hugging Face's trainer (sorted alphabet) order them */
    uint8_t order[256];
    for (int i = 0, k = 0; i < 324; i++) {
        int b = tok_cp_to_byte((uint32_t)i);
        if (b >= 0)
            order[k++] = (uint8_t)b;
    }
    for (int i = 0; i < 256; i++)
        if (tok_add_token(tok, &order[i], 1, false) < 0) {
            st = FG_ERR_NOMEM;
            goto done;
        }
    if ((st = count_words(tok, o, docs, lens, n_docs, &words)) != FG_OK)
        goto done;
    /* words -> symbol arrays */
    t.n_words = words.n;
    t.sym = fg_malloc((words.nbytes ? words.nbytes : 1) * sizeof(uint32_t));
    t.woff = fg_malloc((words.n ? words.n : 1) * sizeof(uint64_t));
    t.wlen = fg_malloc((words.n ? words.n : 1) * sizeof(uint32_t));
    t.wcount = fg_malloc((words.n ? words.n : 1) * sizeof(int64_t));
    if (!t.sym || !t.woff || !t.wlen || !t.wcount) {
        st = FG_ERR_NOMEM;
        goto done;
    }
    uint64_t so = 0;
    for (size_t w = 0; w < words.n; w++) {
        t.woff[w] = so;
        t.wlen[w] = words.len[w];
        t.wcount[w] = words.count[w];
        for (uint32_t k = 0; k < words.len[w]; k++)
            t.sym[so + k] = tok->byte_id[words.bytes[words.off[w] + k]];
        so += words.len[w];
    }
    wmap_free(&words);
    /* initial pair counts and where each pair occurs */
    for (size_t w = 0; w < t.n_words; w++) {
        const uint32_t *s = t.sym + t.woff[w];
        for (uint32_t k = 0; k + 1 < t.wlen[w]; k++) {
            long e = pairs_get(&t.p, s[k], s[k + 1]);
            if (e < 0 || pairs_add_word(&t.p, (size_t)e, (uint32_t)w) != FG_OK) {
                st = FG_ERR_NOMEM;
                goto done;
            }
            t.p.count[e] += t.wcount[w];
        }
    }
    for (size_t e = 0; e < t.p.n; e++)
        if (t.p.count[e] > 0 && (st = heap_push(&t.h, (hent){t.p.count[e], t.p.a[e], t.p.b[e]})) != FG_OK)
            goto done;
    int target = o->vocab_size - n_specials;
    int64_t min_freq = o->min_frequency > 1 ? o->min_frequency : 1;
    fg_progress_begin(&prog, "merges", o->progress ? (double)(target - 256) : 0, "merges");
    prog.enabled = prog.enabled && o->progress;
    while (tok->vocab_size < target && t.h.n > 0) {
        hent top = heap_pop(&t.h);
        long e = pairs_find(&t.p, top.a, top.b);
        if (top.count != t.p.count[e]) { /* stale: re-queue with the current count */
            top.count = t.p.count[e];
            if ((st = heap_push(&t.h, top)) != FG_OK)
                goto done;
            continue;
        }
        if (top.count < min_freq)
            break;
        size_t la = tok->len[top.a], lb = tok->len[top.b];
        fg_free(cat);
        if (!(cat = fg_malloc(la + lb))) {
            st = FG_ERR_NOMEM;
            goto done;
        }
        memcpy(cat, tok->blob + tok->off[top.a], la);
        memcpy(cat + la, tok->blob + tok->off[top.b], lb);
        int id = tok_find(tok, cat, la + lb);
        if (id < 0 && (id = tok_add_token(tok, cat, la + lb, false)) < 0) {
            st = FG_ERR_NOMEM;
            goto done;
        }
        if ((st = tok_add_merge(tok, top.a, top.b, (uint32_t)id)) != FG_OK)
            goto done;
        t.iter++;
        nt = 0;
        /* walk the word list by index: merging appends to other pairs' lists */
        for (uint32_t c = t.p.head[e]; c != 0; c = t.p.chunks[c - 1].next) {
            for (uint32_t k = 0; k < t.p.chunks[c - 1].n; k++) {
                uint32_t w = t.p.chunks[c - 1].w[k];
                if ((st = merge_word(&t, w, top.a, top.b, (uint32_t)id, &touched, &nt, &ct)) != FG_OK)
                    goto done;
            }
        }
        for (size_t k = 0; k < nt; k++) {
            uint32_t q = touched[k];
            if (t.p.count[q] > 0 && (st = heap_push(&t.h, (hent){t.p.count[q], t.p.a[q], t.p.b[q]})) != FG_OK)
                goto done;
        }
        if (prog.enabled)
            fg_progress_update(&prog, (double)(tok->vocab_size - 256));
    }
    fg_progress_end(&prog);
    for (int k = 0; k < n_specials; k++)
        if ((st = fg_tok_add_special(tok, specials[k], NULL)) != FG_OK)
            goto done;
done:
    if (st == FG_ERR_NOMEM && !strstr(fg_last_error(), "memory"))
        st = fg_error(FG_ERR_NOMEM, "fg_tok_train: out of memory");
    wmap_free(&words);
    pairs_free(&t.p);
    fg_free(t.h.v);
    fg_free(t.sym);
    fg_free(t.woff);
    fg_free(t.wlen);
    fg_free(t.wcount);
    fg_free(touched);
    fg_free(cat);
    if (st != FG_OK) {
        fg_tok_delete(tok);
        return st;
    }
    *out = tok;
    return FG_OK;
}
