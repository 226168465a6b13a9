/* classify.c: the quality classifier: logistic regression over hashed features (word
 * unigrams and bigrams, byte n-grams of "<word>"), fastText-style feature averaging
 * (features scaled by 1/sqrt(count)), SGD training, a small checksummed file format.
 * Left out: embeddings / hidden layer, multi-class labels (keep vs drop only). */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <zlib.h>

#include "data_impl.h"

struct fg_data_classifier {
    int log2_buckets, word_ngrams, char_min, char_max;
    float bias;
    float *w; /* [2^log2_buckets] */
};

void fg_data_classifier_config_init(fg_data_classifier_config *c)
{
    memset(c, 0, sizeof *c);
    c->log2_buckets = 20;
    c->word_ngrams = 2;
    c->char_min = 3;
    c->char_max = 5;
    c->epochs = 8;
    c->lr = 0.5f;
    c->seed = 1234;
}

/* Walks every feature of text. With upd == NULL returns sum of weights in *sum;
 * otherwise adds g to each feature's weight. Returns the feature count. */
static size_t walk(const fg_data_classifier *m, float *upd, float g, const char *text, size_t len, double *sum)
{
    const unsigned char *t = (const unsigned char *)text;
    const uint64_t mask = ((uint64_t)1 << m->log2_buckets) - 1;
    const float *w = m->w;
    double acc = 0;
    size_t nf = 0, i = 0;
    uint64_t prev = 0;
    unsigned char buf[66];
#define FEAT(h)                                                                                                        \
    do {                                                                                                               \
        uint64_t hh_ = (h);                                                                                            \
        size_t ix_ = (size_t)((hh_ ^ (hh_ >> 29)) & mask);                                                             \
        if (upd)                                                                                                       \
            upd[ix_] += g;                                                                                             \
        else                                                                                                           \
            acc += w[ix_];                                                                                             \
        nf++;                                                                                                          \
    } while (0)
    size_t b;
    while (fg_next_word(t, len, &i, &b)) {
        size_t n = i - b;
        /* lower-cased copy with boundary markers, for hashing */
        size_t L = n < 64 ? n : 64;
        buf[0] = '<';
        for (size_t k = 0; k < L; k++) {
            unsigned char c = t[b + k];
            buf[k + 1] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
        }
        buf[L + 1] = '>';
        uint64_t h1 = fg_hash_bytes(buf + 1, L, 0xC1A55);
        FEAT(h1);
        if (m->word_ngrams >= 2 && prev)
            FEAT(fg_mix64(prev * 0x9e3779b97f4a7c15ULL ^ h1));
        prev = h1;
        if (m->char_min > 0 && n < 64) {
            size_t B = L + 2;
            for (size_t s = 0; s + (size_t)m->char_min <= B; s++) {
                uint64_t h = 0xcbf29ce484222325ULL;
                for (size_t k = 0; k < (size_t)m->char_max && s + k < B; k++) {
                    h = (h ^ buf[s + k]) * 0x100000001b3ULL;
                    if (k + 1 >= (size_t)m->char_min)
                        FEAT(h * 0x9e3779b97f4a7c15ULL + k);
                }
            }
        }
    }
#undef FEAT
    if (sum)
        *sum = acc;
    return nf;
}

static float sigmoidf(double z)
{
    return (float)(1.0 / (1.0 + exp(-z)));
}

float fg_data_classifier_predict(const fg_data_classifier *m, const char *text, size_t len)
{
    double s = 0;
    size_t nf = walk(m, NULL, 0, text, len, &s);
    double z = m->bias + (nf ? s / sqrt((double)nf) : 0.0);
    return sigmoidf(z);
}

static fg_data_classifier *model_new(int log2_buckets, int word_ngrams, int char_min, int char_max)
{
    if (log2_buckets < 8 || log2_buckets > 28 || word_ngrams < 1 || word_ngrams > 2 || char_min < 0 ||
        char_max < char_min || char_max > 16) {
        fg_error(FG_ERR_INVALID,
                 "classifier: bad config (log2_buckets %d in 8..28, word_ngrams %d in 1..2, char n-grams %d..%d)",
                 log2_buckets, word_ngrams, char_min, char_max);
        return NULL;
    }
    fg_data_classifier *m = fg_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->log2_buckets = log2_buckets;
    m->word_ngrams = word_ngrams;
    m->char_min = char_min;
    m->char_max = char_max;
    m->w = fg_calloc((size_t)1 << log2_buckets, sizeof *m->w);
    if (!m->w) {
        fg_free(m);
        return NULL;
    }
    return m;
}

void fg_data_classifier_delete(fg_data_classifier *m)
{
    if (!m)
        return;
    fg_free(m->w);
    fg_free(m);
}

fg_data_classifier *fg_data_classifier_train(const fg_data_classifier_config *c, const char *const *texts,
                                             const size_t *lens, const int *y, size_t n)
{
    if (n == 0) {
        fg_error(FG_ERR_INVALID, "classifier: no training examples");
        return NULL;
    }
    fg_data_classifier *m = model_new(c->log2_buckets, c->word_ngrams, c->char_min, c->char_max);
    if (!m)
        return NULL;
    size_t *order = fg_malloc(n * sizeof *order);
    if (!order) {
        fg_data_classifier_delete(m);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    fg_rng rng;
    fg_rng_seed(&rng, c->seed);
    /* Start the bias at the log-odds of the label prior. */
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += y[i] != 0;
    double prior = ((double)pos + 0.5) / ((double)n + 1.0);
    m->bias = (float)log(prior / (1 - prior));
    size_t total = (size_t)(c->epochs > 0 ? c->epochs : 1) * n, step = 0;
    for (int ep = 0; ep < (c->epochs > 0 ? c->epochs : 1); ep++) {
        for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = fg_rng_below(&rng, (uint32_t)(i + 1));
            size_t tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (size_t k = 0; k < n; k++, step++) {
            size_t i = order[k];
            double s = 0;
            size_t nf = walk(m, NULL, 0, texts[i], lens[i], &s);
            double scale = nf ? 1.0 / sqrt((double)nf) : 0.0;
            float p = sigmoidf(m->bias + s * scale);
            float lr = c->lr * (1.0f - (float)step / (float)total);
            /* gradient of the log-likelihood: (y - p) * x, with x_f = scale for each feature */
            float g = lr * ((float)(y[i] != 0) - p);
            m->bias += g * 0.1f; /* the bias sees every example: a smaller step keeps it stable */
            if (nf)
                walk(m, m->w, g * (float)scale, texts[i], lens[i], NULL);
        }
    }
    fg_free(order);
    return m;
}

#define CLS_MAGIC "FGCLS001"

fg_status fg_data_classifier_save(const fg_data_classifier *m, const char *path)
{
    uint32_t hdr[5] = {1, (uint32_t)m->log2_buckets, (uint32_t)m->word_ngrams, (uint32_t)m->char_min,
                       (uint32_t)m->char_max};
    size_t nw = (size_t)1 << m->log2_buckets;
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)CLS_MAGIC, 8);
    crc = crc32(crc, (const Bytef *)hdr, sizeof hdr);
    crc = crc32(crc, (const Bytef *)&m->bias, sizeof m->bias);
    crc = crc32_z(crc, (const Bytef *)m->w, nw * sizeof *m->w);
    uint32_t c32 = (uint32_t)crc;
    fg_file_tx tx;
    fg_status st = fg_file_tx_open(&tx, path, 0);
    if (st != FG_OK)
        return st;
    /* a failed write is kept by tx and reported by commit, which then leaves path alone */
    fg_file_tx_write(&tx, CLS_MAGIC, 8);
    fg_file_tx_write(&tx, hdr, sizeof hdr);
    fg_file_tx_write(&tx, &m->bias, sizeof m->bias);
    fg_file_tx_write(&tx, m->w, nw * sizeof *m->w);
    fg_file_tx_write(&tx, &c32, 4);
    return fg_file_tx_commit(&tx);
}

fg_data_classifier *fg_data_classifier_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fg_error(FG_ERR_IO, "%s: cannot open classifier: %s", path, strerror(errno));
        return NULL;
    }
    char magic[8];
    uint32_t hdr[5];
    float bias;
    fg_data_classifier *m = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CLS_MAGIC, 8) != 0) {
        fg_error(FG_ERR_FORMAT, "%s:0: not a frugal classifier (magic is not %s)", path, CLS_MAGIC);
        goto fail;
    }
    if (fread(hdr, sizeof hdr, 1, f) != 1 || fread(&bias, sizeof bias, 1, f) != 1) {
        fg_error(FG_ERR_CORRUPT, "%s:8: truncated header", path);
        goto fail;
    }
    if (hdr[0] != 1) {
        fg_error(FG_ERR_UNSUPPORTED, "%s:8: classifier version %u (this build reads 1)", path, hdr[0]);
        goto fail;
    }
    m = model_new((int)hdr[1], (int)hdr[2], (int)hdr[3], (int)hdr[4]);
    if (!m)
        goto fail;
    m->bias = bias;
    size_t nw = (size_t)1 << m->log2_buckets;
    uint32_t c32;
    if (fread(m->w, sizeof *m->w, nw, f) != nw || fread(&c32, 4, 1, f) != 1) {
        fg_error(FG_ERR_CORRUPT, "%s:28: truncated weights (%zu expected)", path, nw);
        goto fail;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)CLS_MAGIC, 8);
    crc = crc32(crc, (const Bytef *)hdr, sizeof hdr);
    crc = crc32(crc, (const Bytef *)&bias, sizeof bias);
    crc = crc32_z(crc, (const Bytef *)m->w, nw * sizeof *m->w);
    if ((uint32_t)crc != c32) {
        fg_error(FG_ERR_CORRUPT, "%s: checksum mismatch (file %08x, computed %08x)", path, c32, (uint32_t)crc);
        goto fail;
    }
    fclose(f);
    return m;
fail:
    fg_data_classifier_delete(m);
    fclose(f);
    return NULL;
}
