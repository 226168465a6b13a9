/* quality.c: Gopher / C4 / RefinedWeb style document heuristics (word count, mean word
 * length, symbol, bullet, ellipsis, alphabetic ratios, duplicate lines, top and duplicate
 * word n-grams, stop words) and their combination into one score in [0,1].
 * Left out: paragraph-level repetition (lines stand in for paragraphs), language ID. */
#include <string.h>

#include "data_impl.h"

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Code point of the 3-byte sequence at s (caller checked the lead byte). */
static uint32_t cp3(const unsigned char *s)
{
    return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (uint32_t)(s[2] & 0x3F);
}

static bool is_cjk(uint32_t cp)
{
    return (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF);
}

static bool is_cjk_sep(uint32_t cp)
{
    return (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF1F);
}

fg_status fg_data_scratch_grow_words(fg_data_scratch *s, size_t need)
{
    if (need <= s->w_cap)
        return FG_OK;
    size_t cap = need * 2 + 1024;
    uint32_t *a = fg_realloc(s->w_off, cap * sizeof *a);
    if (!a)
        return FG_ERR_NOMEM;
    s->w_off = a;
    uint32_t *b = fg_realloc(s->w_len, cap * sizeof *b);
    if (!b)
        return FG_ERR_NOMEM;
    s->w_len = b;
    uint64_t *c = fg_realloc(s->w_hash, cap * sizeof *c);
    if (!c)
        return FG_ERR_NOMEM;
    s->w_hash = c;
    uint64_t *d = fg_realloc(s->w_pre, (cap + 1) * sizeof *d);
    if (!d)
        return FG_ERR_NOMEM;
    s->w_pre = d;
    s->w_cap = cap;
    return FG_OK;
}

size_t fg_data_split_words(fg_data_scratch *s, const char *text, size_t len)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t nw = 0, i = 0;
    if (fg_data_scratch_grow_words(s, 1024) != FG_OK)
        return (size_t)-1;
    while (i < len) {
        while (i < len && is_space(t[i]))
            i++;
        if (i >= len)
            break;
        if (nw + 4 > s->w_cap && fg_data_scratch_grow_words(s, nw + 4) != FG_OK) /* doubles */
            return (size_t)-1;
        size_t st = i;
        while (i < len && !is_space(t[i])) {
            if (t[i] >= 0xE3 && t[i] <= 0xEF && i + 2 < len) {
                uint32_t cp = cp3(t + i);
                if (is_cjk(cp) || is_cjk_sep(cp)) {
                    if (nw + 4 > s->w_cap && fg_data_scratch_grow_words(s, nw + 4) != FG_OK)
                        return (size_t)-1;
                    if (i > st) { /* close the word before it */
                        s->w_off[nw] = (uint32_t)st;
                        s->w_len[nw++] = (uint32_t)(i - st);
                    }
                    if (is_cjk(cp)) {
                        s->w_off[nw] = (uint32_t)i;
                        s->w_len[nw++] = 3;
                    }
                    i += 3;
                    st = i;
                    continue;
                }
            }
            i++;
        }
        if (i > st) {
            s->w_off[nw] = (uint32_t)st;
            s->w_len[nw++] = (uint32_t)(i - st);
        }
    }
    return nw;
}

static bool is_punct(unsigned char c)
{
    return c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
}

/* Hash of a word lower-cased (ASCII) with ASCII punctuation trimmed from both ends. */
static uint64_t word_hash(const char *w, size_t n)
{
    size_t b = 0, e = n;
    while (b < e && is_punct((unsigned char)w[b]))
        b++;
    while (e > b && is_punct((unsigned char)w[e - 1]))
        e--;
    char tmp[64];
    if (e - b > sizeof tmp)
        return fg_hash_bytes(w + b, e - b, 0x5707);
    for (size_t i = b; i < e; i++) {
        char c = w[i];
        tmp[i - b] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return fg_hash_bytes(tmp, e - b, 0x5707);
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* ---- an open-addressing multiset of 64-bit keys in the scratch ----
 * Each slot packs a 44-bit fingerprint of the key (bit 20 forced on, so a used slot is
 * never 0) with a 20-bit count: one memory access per insert. Two different keys share a
 * fingerprint with probability ~n^2 / 2^45, negligible at document sizes. */
#define CNT_BITS 20
#define CNT_MASK ((1ULL << CNT_BITS) - 1)

static fg_status set_init(fg_data_scratch *s, size_t n)
{
    size_t cap = 64;
    while (cap < 2 * n + 2)
        cap *= 2;
    if (cap > s->set_cap) {
        uint64_t *k = fg_realloc(s->set_key, cap * sizeof *k);
        if (!k)
            return FG_ERR_NOMEM;
        s->set_key = k;
        s->set_cap = cap;
    }
    /* Only the first `cap` slots of the (possibly larger) array are used. */
    memset(s->set_key, 0, cap * sizeof *s->set_key);
    return FG_OK;
}

static size_t set_mask(size_t n)
{
    size_t cap = 64;
    while (cap < 2 * n + 2)
        cap *= 2;
    return cap - 1;
}

/* Adds key; returns its count after adding (saturating at 2^20 - 1). */
static inline uint32_t set_add(fg_data_scratch *s, size_t mask, uint64_t key)
{
    uint64_t fp = (key | (1ULL << CNT_BITS)) & ~CNT_MASK;
    size_t i = (size_t)(key >> 7) & mask;
    uint64_t *t = s->set_key;
    while (t[i] && (t[i] & ~CNT_MASK) != fp)
        i = (i + 1) & mask;
    if (!t[i])
        t[i] = fp;
    if ((t[i] & CNT_MASK) != CNT_MASK)
        t[i]++;
    return (uint32_t)(t[i] & CNT_MASK);
}

/* Hash of words [i, i+n): a polynomial over the word hashes read off prefix sums
 * (pre[j] = sum_{k<j} h[k] * B^(j-1-k) mod 2^64), so every n costs O(1) per position. */
#define NGRAM_B 0x100000001b3ULL
static inline uint64_t ngram_hash(const uint64_t *pre, const uint64_t *powB, size_t i, int n)
{
    return fg_mix64(pre[i + (size_t)n] - pre[i] * powB[n] + (uint64_t)n);
}

/* Sizes the hash set for the m = nw - n + 1 word n-grams of a document. Returns m, or
 * 0 when there are none (nw < n) or the set cannot grow. */
static size_t ngram_set_begin(fg_data_scratch *s, size_t nw, int n, size_t *mask)
{
    if (nw < (size_t)n)
        return 0;
    size_t m = nw - (size_t)n + 1;
    if (set_init(s, m) != FG_OK)
        return 0;
    *mask = set_mask(m);
    return m;
}

void fg_data_quality_measure(const fg_data_rules *r, fg_data_scratch *s, const char *text, size_t len,
                             fg_quality_stats *st)
{
    memset(st, 0, sizeof *st);
    const unsigned char *t = (const unsigned char *)text;
    /* ---- lines ---- */
    size_t n_lines = 0, bullets = 0, ellipsis = 0, dup_lines = 0, dup_line_chars = 0, line_chars = 0;
    size_t nonempty = 0;
    {
        size_t est = 1;
        for (const char *q = text; (q = memchr(q, '\n', (size_t)(text + len - q))) != NULL; q++)
            est++;
        if (set_init(s, est) != FG_OK)
            return;
        size_t mask = set_mask(est);
        size_t i = 0;
        while (i <= len) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len;
            size_t b = i;
            while (b < e && (t[b] == ' ' || t[b] == '\t' || t[b] == '\r'))
                b++;
            size_t ee = e;
            while (ee > b && (t[ee - 1] == ' ' || t[ee - 1] == '\t' || t[ee - 1] == '\r'))
                ee--;
            n_lines++;
            if (ee > b) {
                nonempty++;
                size_t chars = utf8_chars(text + b, ee - b);
                line_chars += chars;
                unsigned char c0 = t[b];
                if (c0 == '-' || c0 == '*' || c0 == '>' ||
                    (ee - b >= 3 && (!memcmp(t + b, "\xE2\x80\xA2", 3) || !memcmp(t + b, "\xE2\x97\x8F", 3) ||
                                     !memcmp(t + b, "\xE2\x96\xAA", 3) || !memcmp(t + b, "\xE2\x80\xA3", 3) ||
                                     !memcmp(t + b, "\xE2\x96\xA0", 3))) ||
                    (ee - b >= 2 && !memcmp(t + b, "\xC2\xB7", 2)))
                    bullets++;
                if ((ee - b >= 3 && !memcmp(t + ee - 3, "...", 3)) ||
                    (ee - b >= 3 && !memcmp(t + ee - 3, "\xE2\x80\xA6", 3)))
                    ellipsis++;
                if (set_add(s, mask, fg_hash_bytes(text + b, ee - b, 0x11E5)) > 1) {
                    dup_lines++;
                    dup_line_chars += chars;
                }
            }
            if (!nl)
                break;
            i = e + 1;
        }
    }
    /* ---- paragraphs (Gopher, as datatrove counts them): the text, stripped, split on runs
     * of two or more newlines; a paragraph equal to an earlier one is a duplicate; the
     * character fraction is over the whole text ---- */
    {
        size_t b0 = 0, e0 = len;
        while (b0 < e0 && (t[b0] == ' ' || t[b0] == '\n' || t[b0] == '\t' || t[b0] == '\r'))
            b0++;
        while (e0 > b0 && (t[e0 - 1] == ' ' || t[e0 - 1] == '\n' || t[e0 - 1] == '\t' || t[e0 - 1] == '\r'))
            e0--;
        size_t est = 1;
        for (size_t i = b0; i + 1 < e0; i++)
            est += t[i] == '\n' && t[i + 1] == '\n';
        if (set_init(s, est) != FG_OK)
            return;
        size_t mask = set_mask(est), n_para = 0, dup_para = 0, dup_para_chars = 0;
        size_t i = b0;
        while (i <= e0 && e0 > b0) {
            size_t e = i;
            while (e < e0 && !(t[e] == '\n' && e + 1 < e0 && t[e + 1] == '\n'))
                e++;
            n_para++;
            if (set_add(s, mask, fg_hash_bytes(text + i, e - i, 0x9A7A)) > 1) {
                dup_para++;
                dup_para_chars += utf8_chars(text + i, e - i);
            }
            if (e >= e0)
                break;
            while (e < e0 && t[e] == '\n')
                e++;
            i = e;
        }
        size_t all = utf8_chars(text, len);
        st->v[FG_Q_MAX_DUP_PARAS] = n_para ? (double)dup_para / (double)n_para : 0;
        st->v[FG_Q_MAX_DUP_PARA_CHARS] = all ? (double)dup_para_chars / (double)all : 0;
    }
    st->n_lines = nonempty;
    double nl_d = nonempty ? (double)nonempty : 1.0;
    st->v[FG_Q_MAX_BULLET_LINES] = (double)bullets / nl_d;
    st->v[FG_Q_MAX_ELLIPSIS_LINES] = (double)ellipsis / nl_d;
    st->v[FG_Q_MAX_DUP_LINES] = (double)dup_lines / nl_d;
    st->v[FG_Q_MAX_DUP_LINE_CHARS] = line_chars ? (double)dup_line_chars / (double)line_chars : 0;
    /* ---- words ---- */
    size_t nw = fg_data_split_words(s, text, len);
    if (nw == (size_t)-1)
        return;
    st->n_words = nw;
    st->v[FG_Q_MIN_WORDS] = st->v[FG_Q_MAX_WORDS] = (double)nw;
    size_t symbols = 0, alpha = 0, latin_words = 0, latin_chars = 0, total_chars = 0, total_bytes = 0;
    size_t best_stop = 0, punct_tokens = 0, seen[256], n_seen = 0;
    size_t stop_count[FG_MAX_STOPLISTS] = {0};
    for (size_t w = 0; w < nw; w++) {
        const char *p = text + s->w_off[w];
        size_t n = s->w_len[w];
        /* one pass over the word: characters, has-a-letter, lower-cased copy for the hash
         * (ASCII punctuation trimmed from both ends) */
        char low[64];
        size_t chars = 0, b = n, e = 0;
        bool has_alpha = false;
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)p[k];
            chars += (c & 0xC0) != 0x80;
            bool letter = (c | 32) >= 'a' && (c | 32) <= 'z';
            has_alpha |= letter || c >= 0x80; /* non-ASCII letters (accents, Cyrillic, CJK) count */
            if (!is_punct(c)) {
                if (b == n)
                    b = k;
                e = k + 1;
            }
            if (k < sizeof low)
                low[k] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        if (b == n)
            b = e = 0;
        s->w_hash[w] = n <= sizeof low ? fg_hash_bytes(low + b, e - b, 0x5707) : word_hash(p, n);
        total_chars += chars;
        total_bytes += n;
        bool cjk = n == 3 && (unsigned char)p[0] >= 0xE3 && is_cjk(cp3((const unsigned char *)p));
        if (!cjk) {
            latin_words++;
            latin_chars += chars;
        }
        if ((n == 1 && p[0] == '#') || (n >= 3 && !memcmp(p + n - 3, "...", 3)) ||
            (n >= 3 && !memcmp(p + n - 3, "\xE2\x80\xA6", 3)))
            symbols++;
        alpha += has_alpha;
        if (r->compat_datatrove && e > b) /* "end." is "end" and "." to datatrove */
            punct_tokens += (b > 0) + (e < n);
        if (r->n_stoplists) {
            uint64_t h = s->w_hash[w] | 1;
            size_t j = (size_t)(h >> 20) & (FG_STOP_SLOTS - 1);
            while (r->stop_key[j] && r->stop_key[j] != h)
                j = (j + 1) & (FG_STOP_SLOTS - 1);
            bool count = r->stop_key[j] != 0;
            if (count && r->compat_datatrove) { /* distinct stop words only */
                for (size_t k = 0; k < n_seen && count; k++)
                    count = seen[k] != j;
                if (count && n_seen < sizeof seen / sizeof seen[0])
                    seen[n_seen++] = j;
            }
            if (count)
                for (uint32_t m = r->stop_mask[j]; m; m &= m - 1)
                    stop_count[__builtin_ctz(m)]++;
        }
    }
    for (int L = 0; L < r->n_stoplists; L++)
        if (stop_count[L] > best_stop)
            best_stop = stop_count[L];
    double nw_d = nw ? (double)nw : 1.0;
    /* Text written mostly in CJK characters has no meaningful word length: a neutral 5.
     * Its few space-separated tokens (numbers, dates, Latin names) would otherwise judge
     * it: a Chinese news page was rejected as min_mean_word_len (issue 16). */
    size_t cjk_words = nw - latin_words;
    st->v[FG_Q_MIN_MEAN_WORD_LEN] = st->v[FG_Q_MAX_MEAN_WORD_LEN] =
        (latin_words && cjk_words < latin_words) ? (double)latin_chars / (double)latin_words : (nw ? 5.0 : 0.0);
    st->v[FG_Q_MAX_SYMBOL_RATIO] = (double)symbols / nw_d;
    st->v[FG_Q_MIN_ALPHA_WORDS] = nw ? (double)alpha / (nw_d + (double)punct_tokens) : 0.0;
    st->v[FG_Q_MIN_STOPWORDS] = (double)best_stop;
    /* ---- word n-grams ---- */
    uint64_t powB[11];
    powB[0] = 1;
    for (int k = 1; k <= 10; k++)
        powB[k] = powB[k - 1] * NGRAM_B;
    s->w_pre[0] = 0;
    for (size_t w = 0; w < nw; w++)
        s->w_pre[w + 1] = s->w_pre[w] * NGRAM_B + s->w_hash[w];
    double tc = total_chars ? (double)total_chars : 1.0;
    bool repeats = true; /* no repeated n-gram means no repeated (n+1)-gram: skip the rest */
    for (int n = 2; n <= 4 && repeats; n++) {
        size_t mask, m = ngram_set_begin(s, nw, n, &mask);
        if (!m)
            return; /* fewer than n words (so fewer than n + 1), or no memory */
        uint32_t best = 0;
        size_t best_i = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t c = set_add(s, mask, ngram_hash(s->w_pre, powB, i, n));
            if (c > best) {
                best = c;
                best_i = i;
            }
        }
        repeats = best > 1;
        if (best > 1) {
            size_t chars = 0;
            for (int k = 0; k < n; k++)
                chars += utf8_chars(text + s->w_off[best_i + (size_t)k], s->w_len[best_i + (size_t)k]);
            st->v[FG_Q_MAX_TOP_2GRAM + (n - 2)] = (double)best * (double)chars / tc;
        }
    }
    /* Duplicate n-grams as in Gopher: scanning left to right, an n-gram seen before adds
     * its characters and the scan jumps past it (so overlapping repeats count once). */
    for (int n = 5; n <= 10 && repeats; n++) {
        size_t mask, m = ngram_set_begin(s, nw, n, &mask);
        if (!m)
            return; /* fewer than n words (so fewer than n + 1), or no memory */
        size_t dup_chars = 0, i = 0;
        while (i < m) {
            if (set_add(s, mask, ngram_hash(s->w_pre, powB, i, n)) > 1) {
                for (int k = 0; k < n; k++)
                    dup_chars += s->w_len[i + (size_t)k]; /* bytes: close enough to chars, and cheap */
                i += (size_t)n;
            } else {
                i++;
            }
        }
        repeats = dup_chars > 0;
        double v = (double)dup_chars / (double)(total_bytes ? total_bytes : 1);
        st->v[FG_Q_MAX_DUP_5GRAM + (n - 5)] = v > 1 ? 1 : v;
    }
}

double fg_data_quality_score(const fg_data_rules *r, const fg_quality_stats *st, int *worst)
{
    double score = 1.0, worst_pen = 0.0;
    int w = -1;
    for (int q = 0; q < FG_Q_COUNT; q++) {
        const qlimit *l = &r->q[q];
        if (!l->on)
            continue;
        if (q == FG_Q_MIN_STOPWORDS && r->n_stoplists == 0)
            continue;
        double v = st->v[q], p;
        bool is_min = !strncmp(fg_data_quality_name((fg_quality_id)q), "min_", 4);
        if (is_min)
            p = v >= l->soft ? 0.0 : v <= l->hard ? 1.0 : (l->soft - v) / (l->soft - l->hard);
        else
            p = v <= l->soft ? 0.0 : v >= l->hard ? 1.0 : (v - l->soft) / (l->hard - l->soft);
        double wp = l->weight * p;
        score -= wp;
        if (wp > worst_pen) {
            worst_pen = wp;
            w = q;
        }
    }
    if (worst)
        *worst = w;
    return score < 0 ? 0 : score;
}
