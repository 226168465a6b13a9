/* classify.c: the quality classifier, fastText-style: hashed word unigrams/bigrams and byte
 * n-grams of "<word>" each own a learned embedding of dimension dim; the document vector is
 * their average, then a linear layer and a sigmoid give P(keep). SGD on the logistic loss
 * trains embeddings and output together; a small versioned, checksummed file format.
 * Left out: multi-class labels (keep vs drop only), hierarchical softmax, quantization. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <zlib.h>

#include "data_impl.h"

#define CLS_MAX_DIM 256

struct fg_data_classifier {
    int log2_buckets, word_ngrams, char_min, char_max, dim;
    float bias;
    float *emb; /* [2^log2_buckets][dim] input embeddings */
    float *out; /* [dim] output layer */
};

void fg_data_classifier_config_init(fg_data_classifier_config *c)
{
    memset(c, 0, sizeof *c);
    c->log2_buckets = 18;
    c->word_ngrams = 2;
    c->char_min = 3;
    c->char_max = 5;
    c->dim = FG_DATA_CLASSIFIER_DEFAULT_DIM;
    c->epochs = 25;
    c->lr = 2.0f;
    c->seed = 1234;
}

static bool ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Walks every feature of text. With upd == NULL adds each feature's embedding row into
 * vec[dim]; otherwise adds vec[dim] to each feature's row of upd (the embedding table).
 * Returns the feature count. */
static size_t walk(const fg_data_classifier *m, float *upd, float *vec, const char *text, size_t len)
{
    const unsigned char *t = (const unsigned char *)text;
    const uint64_t mask = ((uint64_t)1 << m->log2_buckets) - 1;
    const float *emb = m->emb;
    const size_t dim = (size_t)m->dim;
    size_t nf = 0, i = 0;
    uint64_t prev = 0;
    unsigned char buf[66];
#define FEAT(h)                                                                                                        \
    do {                                                                                                               \
        uint64_t hh_ = (h);                                                                                            \
        size_t ix_ = (size_t)((hh_ ^ (hh_ >> 29)) & mask) * dim;                                                       \
        if (upd) {                                                                                                     \
            float *row_ = upd + ix_;                                                                                   \
            for (size_t d_ = 0; d_ < dim; d_++)                                                                        \
                row_[d_] += vec[d_];                                                                                   \
        } else {                                                                                                       \
            const float *row_ = emb + ix_;                                                                             \
            for (size_t d_ = 0; d_ < dim; d_++)                                                                        \
                vec[d_] += row_[d_];                                                                                   \
        }                                                                                                              \
        nf++;                                                                                                          \
    } while (0)
    while (i < len) {
        while (i < len && ws(t[i]))
            i++;
        if (i >= len)
            break;
        size_t b = i;
        while (i < len && !ws(t[i]))
            i++;
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
    return nf;
}

static float sigmoidf(double z)
{
    return (float)(1.0 / (1.0 + exp(-z)));
}

/* Document vector h[dim] (the average of the feature embeddings) and P(keep). */
static float forward(const fg_data_classifier *m, const char *text, size_t len, float *h, size_t *nf_out)
{
    memset(h, 0, (size_t)m->dim * sizeof *h);
    size_t nf = walk(m, NULL, h, text, len);
    *nf_out = nf;
    double z = m->bias;
    if (nf) {
        float inv = 1.0f / (float)nf;
        for (int d = 0; d < m->dim; d++) {
            h[d] *= inv;
            z += (double)m->out[d] * h[d];
        }
    }
    return sigmoidf(z);
}

float fg_data_classifier_predict(const fg_data_classifier *m, const char *text, size_t len)
{
    float h[CLS_MAX_DIM];
    size_t nf;
    return forward(m, text, len, h, &nf);
}

int fg_data_classifier_dim(const fg_data_classifier *m)
{
    return m->dim;
}

static fg_data_classifier *model_new(int log2_buckets, int word_ngrams, int char_min, int char_max, int dim)
{
    if (log2_buckets < 8 || log2_buckets > 24 || word_ngrams < 1 || word_ngrams > 2 || char_min < 0 ||
        char_max < char_min || char_max > 16 || dim < 1 || dim > CLS_MAX_DIM) {
        fg_error(FG_ERR_INVALID,
                 "classifier: bad config (log2_buckets %d in 8..24, word_ngrams %d in 1..2, char n-grams %d..%d, "
                 "dim %d in 1..%d)",
                 log2_buckets, word_ngrams, char_min, char_max, dim, CLS_MAX_DIM);
        return NULL;
    }
    fg_data_classifier *m = fg_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->log2_buckets = log2_buckets;
    m->word_ngrams = word_ngrams;
    m->char_min = char_min;
    m->char_max = char_max;
    m->dim = dim;
    m->emb = fg_calloc(((size_t)1 << log2_buckets) * (size_t)dim, sizeof *m->emb);
    m->out = fg_calloc((size_t)dim, sizeof *m->out);
    if (!m->emb || !m->out) {
        fg_free(m->emb);
        fg_free(m->out);
        fg_free(m);
        return NULL;
    }
    return m;
}

void fg_data_classifier_delete(fg_data_classifier *m)
{
    if (!m)
        return;
    fg_free(m->emb);
    fg_free(m->out);
    fg_free(m);
}

fg_data_classifier *fg_data_classifier_train(const fg_data_classifier_config *c, const char *const *texts,
                                             const size_t *lens, const int *y, size_t n)
{
    if (n == 0) {
        fg_error(FG_ERR_INVALID, "classifier: no training examples");
        return NULL;
    }
    fg_data_classifier *m = model_new(c->log2_buckets, c->word_ngrams, c->char_min, c->char_max, c->dim);
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
    /* fastText's initialisation: embeddings uniform in +-1/dim, output layer zero. */
    size_t ne = ((size_t)1 << m->log2_buckets) * (size_t)m->dim;
    float a = 1.0f / (float)m->dim;
    for (size_t k = 0; k < ne; k++)
        m->emb[k] = a * (2.0f * ((float)fg_rng_below(&rng, 1u << 24) / (float)(1u << 24)) - 1.0f);
    /* Start the bias at the log-odds of the label prior. */
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += y[i] != 0;
    double prior = ((double)pos + 0.5) / ((double)n + 1.0);
    m->bias = (float)log(prior / (1 - prior));
    int epochs = c->epochs > 0 ? c->epochs : 1;
    size_t total = (size_t)epochs * n, step = 0;
    float h[CLS_MAX_DIM], gh[CLS_MAX_DIM];
    for (int ep = 0; ep < epochs; ep++) {
        for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = fg_rng_below(&rng, (uint32_t)(i + 1));
            size_t tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (size_t k = 0; k < n; k++, step++) {
            size_t i = order[k];
            size_t nf;
            float p = forward(m, texts[i], lens[i], h, &nf);
            float lr = c->lr * (1.0f - (float)step / (float)total);
            /* gradient of the log-likelihood w.r.t. z is (y - p); as in fastText, the gradient
             * for h uses the output weights before their update, and each of the nf embedding
             * rows that were averaged into h receives 1/nf of it. */
            float g = lr * ((float)(y[i] != 0) - p);
            m->bias += g * 0.1f; /* the bias sees every example: a smaller step keeps it stable */
            if (!nf)
                continue;
            float inv = 1.0f / (float)nf;
            for (int d = 0; d < m->dim; d++) {
                gh[d] = g * m->out[d] * inv;
                m->out[d] += g * h[d];
            }
            walk(m, m->emb, gh, texts[i], lens[i]);
        }
    }
    fg_free(order);
    return m;
}

#define CLS_MAGIC "FGCLS001"
#define CLS_VERSION 2u /* 1: linear model, one weight per bucket (refused); 2: embeddings + output layer */

/* CRC-32 of everything the file holds before the checksum. */
static uint32_t model_crc(const fg_data_classifier *m, const uint32_t *hdr, size_t hdr_bytes)
{
    size_t ne = ((size_t)1 << m->log2_buckets) * (size_t)m->dim;
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)CLS_MAGIC, 8);
    crc = crc32(crc, (const Bytef *)hdr, (uInt)hdr_bytes);
    crc = crc32(crc, (const Bytef *)&m->bias, sizeof m->bias);
    crc = crc32_z(crc, (const Bytef *)m->out, (size_t)m->dim * sizeof *m->out);
    crc = crc32_z(crc, (const Bytef *)m->emb, ne * sizeof *m->emb);
    return (uint32_t)crc;
}

fg_status fg_data_classifier_save(const fg_data_classifier *m, const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    uint32_t hdr[6] = {CLS_VERSION,           (uint32_t)m->log2_buckets, (uint32_t)m->word_ngrams,
                       (uint32_t)m->char_min, (uint32_t)m->char_max,     (uint32_t)m->dim};
    size_t ne = ((size_t)1 << m->log2_buckets) * (size_t)m->dim, nd = (size_t)m->dim;
    uint32_t c32 = model_crc(m, hdr, sizeof hdr);
    bool ok = fwrite(CLS_MAGIC, 1, 8, f) == 8 && fwrite(hdr, sizeof hdr, 1, f) == 1 &&
              fwrite(&m->bias, sizeof m->bias, 1, f) == 1 && fwrite(m->out, sizeof *m->out, nd, f) == nd &&
              fwrite(m->emb, sizeof *m->emb, ne, f) == ne && fwrite(&c32, 4, 1, f) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return fg_error(FG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return FG_OK;
}

fg_data_classifier *fg_data_classifier_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fg_error(FG_ERR_IO, "%s: cannot open classifier: %s", path, strerror(errno));
        return NULL;
    }
    char magic[8];
    uint32_t hdr[6];
    float bias;
    fg_data_classifier *m = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CLS_MAGIC, 8) != 0) {
        fg_error(FG_ERR_FORMAT, "%s:0: not a frugal classifier (magic is not %s)", path, CLS_MAGIC);
        goto fail;
    }
    if (fread(hdr, 4, 1, f) != 1) {
        fg_error(FG_ERR_CORRUPT, "%s:8: truncated header", path);
        goto fail;
    }
    if (hdr[0] == 1) {
        fg_error(FG_ERR_UNSUPPORTED,
                 "%s:8: classifier version 1 (the linear model of earlier builds); this build reads version %u "
                 "(fastText-style embeddings): retrain it with `frugal clean train-classifier`",
                 path, CLS_VERSION);
        goto fail;
    }
    if (hdr[0] != CLS_VERSION) {
        fg_error(FG_ERR_UNSUPPORTED, "%s:8: classifier version %u (this build reads %u)", path, hdr[0], CLS_VERSION);
        goto fail;
    }
    if (fread(hdr + 1, 4, 5, f) != 5 || fread(&bias, sizeof bias, 1, f) != 1) {
        fg_error(FG_ERR_CORRUPT, "%s:12: truncated header", path);
        goto fail;
    }
    m = model_new((int)hdr[1], (int)hdr[2], (int)hdr[3], (int)hdr[4], (int)hdr[5]);
    if (!m)
        goto fail;
    m->bias = bias;
    size_t ne = ((size_t)1 << m->log2_buckets) * (size_t)m->dim, nd = (size_t)m->dim;
    uint32_t c32;
    if (fread(m->out, sizeof *m->out, nd, f) != nd || fread(m->emb, sizeof *m->emb, ne, f) != ne ||
        fread(&c32, 4, 1, f) != 1) {
        fg_error(FG_ERR_CORRUPT, "%s:36: truncated weights (%zu + %zu floats expected)", path, nd, ne);
        goto fail;
    }
    uint32_t crc = model_crc(m, hdr, sizeof hdr);
    if (crc != c32) {
        fg_error(FG_ERR_CORRUPT, "%s: checksum mismatch (file %08x, computed %08x)", path, c32, crc);
        goto fail;
    }
    fclose(f);
    return m;
fail:
    fg_data_classifier_delete(m);
    fclose(f);
    return NULL;
}
