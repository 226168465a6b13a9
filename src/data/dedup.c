/* dedup.c: streaming deduplication: exact (64-bit hash of normalized text) and near
 * duplicates (MinHash over word shingles, LSH bands; a band collision counts as a
 * duplicate, as in datatrove). Tables grow up to a byte budget, then stop inserting.
 * Left out: verifying candidate pairs by full signature comparison, on-disk tables. */
#include <math.h>
#include <string.h>

#include "data_impl.h"

typedef struct u64set {
    uint64_t *k;   /* 0 = empty */
    size_t cap, n; /* slots (power of two), used */
} u64set;

struct fg_data_dedup {
    fg_data_dedup_config c;
    int bands, rows;
    uint64_t *a, *b; /* [n_perm] multiply-shift permutation parameters */
    u64set exact;
    u64set *band;     /* [bands] */
    size_t max_slots; /* per table, from max_bytes */
    uint64_t not_indexed;
};

void fg_data_dedup_config_init(fg_data_dedup_config *c)
{
    memset(c, 0, sizeof *c);
    c->exact = true;
    c->near = true;
    c->jaccard = 0.8;
    c->n_perm = 128;
    c->shingle = 5;
    c->max_bytes = (size_t)256 << 20;
    c->seed = 42;
}

/* Probability that two documents of Jaccard s share at least one of b bands of r rows. */
static double collide(double s, int b, int r)
{
    return 1.0 - pow(1.0 - pow(s, r), b);
}

/* bands x rows <= n_perm minimising false positives below t plus false negatives above
 * (integrated numerically; the same criterion as datasketch's _optimal_param). */
static void choose_bands(double t, int n_perm, int *bands, int *rows)
{
    double best = 1e30;
    for (int b = 1; b <= n_perm; b++) {
        for (int r = 1; b * r <= n_perm; r++) {
            double fp = 0, fn = 0;
            const int steps = 100;
            for (int i = 0; i < steps; i++) {
                double s = t * (i + 0.5) / steps;
                fp += collide(s, b, r) * t / steps;
                double s2 = t + (1 - t) * (i + 0.5) / steps;
                fn += (1 - collide(s2, b, r)) * (1 - t) / steps;
            }
            if (fp + fn < best) {
                best = fp + fn;
                *bands = b;
                *rows = r;
            }
        }
    }
}

fg_data_dedup *fg_data_dedup_new(const fg_data_dedup_config *c)
{
    if (c->n_perm < 1 || c->n_perm > 1024 || c->shingle < 1 || c->shingle > 16 || c->jaccard <= 0 || c->jaccard >= 1) {
        fg_error(FG_ERR_INVALID, "dedup: bad config (n_perm %d in 1..1024, shingle %d in 1..16, jaccard %g in (0,1))",
                 c->n_perm, c->shingle, c->jaccard);
        return NULL;
    }
    fg_data_dedup *d = fg_calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->c = *c;
    choose_bands(c->jaccard, c->n_perm, &d->bands, &d->rows);
    d->a = fg_malloc((size_t)c->n_perm * sizeof *d->a);
    d->b = fg_malloc((size_t)c->n_perm * sizeof *d->b);
    d->band = fg_calloc((size_t)d->bands, sizeof *d->band);
    if (!d->a || !d->b || !d->band) {
        fg_data_dedup_delete(d);
        return NULL;
    }
    fg_rng rng;
    fg_rng_seed(&rng, c->seed);
    for (int i = 0; i < c->n_perm; i++) {
        d->a[i] = fg_rng_next(&rng) | 1; /* odd: multiplication is a bijection mod 2^64 */
        d->b[i] = fg_rng_next(&rng);
    }
    size_t slots = c->max_bytes / sizeof(uint64_t) / (size_t)(d->bands + 1);
    d->max_slots = 1024;
    while (d->max_slots * 2 <= slots)
        d->max_slots *= 2;
    return d;
}

void fg_data_dedup_delete(fg_data_dedup *d)
{
    if (!d)
        return;
    fg_free(d->exact.k);
    if (d->band)
        for (int i = 0; i < d->bands; i++)
            fg_free(d->band[i].k);
    fg_free(d->band);
    fg_free(d->a);
    fg_free(d->b);
    fg_free(d);
}

int fg_data_dedup_n_perm(const fg_data_dedup *d)
{
    return d->c.n_perm;
}
void fg_data_dedup_bands(const fg_data_dedup *d, int *bands, int *rows)
{
    *bands = d->bands;
    *rows = d->rows;
}
uint64_t fg_data_dedup_not_indexed(const fg_data_dedup *d)
{
    return d->not_indexed;
}

size_t fg_data_dedup_bytes(const fg_data_dedup *d)
{
    size_t b = d->exact.cap * sizeof(uint64_t);
    for (int i = 0; i < d->bands; i++)
        b += d->band[i].cap * sizeof(uint64_t);
    return b;
}

static bool set_has(const u64set *s, uint64_t k)
{
    if (!s->cap)
        return false;
    k |= 1;
    size_t m = s->cap - 1, i = (size_t)(k >> 11) & m;
    while (s->k[i]) {
        if (s->k[i] == k)
            return true;
        i = (i + 1) & m;
    }
    return false;
}

static void set_put_nogrow(u64set *s, uint64_t k)
{
    size_t m = s->cap - 1, i = (size_t)(k >> 11) & m;
    while (s->k[i] && s->k[i] != k)
        i = (i + 1) & m;
    if (!s->k[i]) {
        s->k[i] = k;
        s->n++;
    }
}

/* Room for one more key (growing up to max slots at load 1/2, then to 0.7 load)? */
static bool set_room(u64set *s, size_t max_slots)
{
    if (s->cap && (s->n + 1) * 2 <= s->cap)
        return true;
    if (s->cap >= max_slots)
        return (s->n + 1) * 10 <= s->cap * 7;
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *k = fg_calloc(cap, sizeof *k);
    if (!k)
        return s->cap && (s->n + 1) * 10 <= s->cap * 7;
    u64set ns = {k, cap, 0};
    for (size_t i = 0; i < s->cap; i++)
        if (s->k[i])
            set_put_nogrow(&ns, s->k[i]);
    fg_free(s->k);
    *s = ns;
    return true;
}

uint64_t fg_data_dedup_exact_hash(const char *text, size_t len)
{
    /* The text normalized (ASCII letters lower-cased, ASCII punctuation and whitespace
     * runs folded into one separator) is staged 256 bytes at a time and hashed 8 bytes
     * per step, instead of a byte-serial FNV chain. */
    unsigned char buf[256];
    size_t n = 0;
    uint64_t h = 0x6a09e667f3bcc909ULL;
    bool sep = true; /* at start: leading separators are dropped */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        bool keep = c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!keep) {
            sep = true;
            continue;
        }
        if (n + 2 > sizeof buf) {
            h = fg_hash_bytes(buf, n, h);
            n = 0;
        }
        if (sep) {
            buf[n++] = ' ';
            sep = false;
        }
        buf[n++] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
    }
    return fg_hash_bytes(buf, n, h);
}

/* sig[p] = min(sig[p], high 32 bits of a[p] * sh + b[p]) over chunks of 16 permutations.
 * The compiler makes an AVX-512F, an AVX2 and a baseline clone and the loader
 * picks one from cpuid (ifunc): no -march=native build, no hand dispatch needed. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
sig_update16(const uint64_t *restrict a, const uint64_t *restrict b, int n16, uint64_t sh, uint32_t *restrict sig)
{
    for (int p = 0; p < 16 * n16; p += 16) {
        for (int k = 0; k < 16; k++) {
            uint32_t v = (uint32_t)((a[p + k] * sh + b[p + k]) >> 32);
            sig[p + k] = v < sig[p + k] ? v : sig[p + k];
        }
    }
}

static void sig_update(const fg_data_dedup *d, uint64_t sh, uint32_t *sig)
{
    const int np = d->c.n_perm, n16 = np / 16;
    sig_update16(d->a, d->b, n16, sh, sig);
    for (int p = 16 * n16; p < np; p++) {
        uint32_t v = (uint32_t)((d->a[p] * sh + d->b[p]) >> 32);
        sig[p] = v < sig[p] ? v : sig[p];
    }
}

void fg_data_dedup_minhash(const fg_data_dedup *d, const char *text, size_t len, uint32_t *sig)
{
    const unsigned char *t = (const unsigned char *)text;
    const int K = d->c.shingle;
    uint64_t ring[16];
    size_t nw = 0, i = 0;
    for (int p = 0; p < d->c.n_perm; p++)
        sig[p] = UINT32_MAX;
    size_t b;
    while (fg_next_word(t, len, &i, &b)) {
        /* word normalized as for exact dedup */
        uint64_t h = fg_data_dedup_exact_hash(text + b, i - b);
        ring[nw % (size_t)K] = h;
        nw++;
        if (nw >= (size_t)K) {
            uint64_t sh = 0x9e3779b97f4a7c15ULL;
            for (int k = 0; k < K; k++)
                sh = fg_mix64(sh ^ ring[(nw - (size_t)K + (size_t)k) % (size_t)K]);
            sig_update(d, sh, sig);
        }
    }
    if (nw > 0 && nw < (size_t)K) { /* shorter than one shingle: the whole text is the shingle */
        uint64_t sh = 0x9e3779b97f4a7c15ULL;
        for (size_t k = 0; k < nw; k++)
            sh = fg_mix64(sh ^ ring[k]);
        sig_update(d, sh, sig);
    }
}

int fg_data_dedup_check(fg_data_dedup *d, uint64_t exact_hash, const uint32_t *sig)
{
    if (d->c.exact && set_has(&d->exact, exact_hash))
        return 1;
    uint64_t keys[1024];
    if (d->c.near && sig) {
        for (int j = 0; j < d->bands; j++) {
            keys[j] =
                fg_hash_bytes(sig + (size_t)j * (size_t)d->rows, (size_t)d->rows * sizeof *sig, 0xBA4D + (uint64_t)j);
            if (set_has(&d->band[j], keys[j]))
                return 2;
        }
    }
    bool indexed = true;
    if (d->c.exact) {
        if (set_room(&d->exact, d->max_slots))
            set_put_nogrow(&d->exact, exact_hash | 1);
        else
            indexed = false;
    }
    if (d->c.near && sig) {
        for (int j = 0; j < d->bands; j++) {
            if (set_room(&d->band[j], d->max_slots))
                set_put_nogrow(&d->band[j], keys[j] | 1);
            else
                indexed = false;
        }
    }
    if (!indexed)
        d->not_indexed++;
    return 0;
}
