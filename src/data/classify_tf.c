/* classify_tf.c: the transformer quality classifier for the ambiguous band: Frugal's own
 * decoder (src/model) over the bytes of the text, read at a separator token through two
 * label rows of the LM head; AdamW training (optional next-byte pretraining first), a
 * checksummed file, and per-thread instances for the pipeline.
 * Left out: BPE input (bytes need no tokenizer file; see docs/DATA.md), multi-class. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "data_impl.h"
#include "frugal/model.h"
#include "frugal/optim.h"

/* Byte vocabulary: 0..255 the bytes, then the separator and the two labels. */
enum { TOK_SEP = 256, TOK_KEEP = 257, TOK_DROP = 258, TF_VOCAB = 259 };

struct fg_data_tfcls {
    fg_model_config mc;
    int max_len;
    float *params;
    size_t n_params;
};

struct fg_data_tfcls_ctx {
    fg_model *m;
    int max_len;
    int32_t *in; /* [max_len + 1] */
};

void fg_data_tfcls_config_init(fg_data_tfcls_config *c)
{
    memset(c, 0, sizeof *c);
    c->layout = FG_LAYOUT_LLAMA;
    c->n_layer = 2;
    c->n_head = 4;
    c->d_model = 64;
    c->max_len = 256;
    c->epochs = 12;
    c->lm_epochs = 3;
    c->batch = 16;
    c->lr = 2e-3f;
    c->seed = 1234;
}

/* The model shape of a classifier; FG_ERR_INVALID naming the field when out of range. */
static fg_status make_model_config(int layout, int n_layer, int n_head, int d_model, int d_ff, int max_len,
                                   fg_model_config *mc)
{
    if (layout != FG_LAYOUT_LLAMA && layout != FG_LAYOUT_GPT2)
        return fg_error(FG_ERR_INVALID, "transformer classifier: layout %d is neither llama (0) nor gpt2 (1)", layout);
    if (n_layer < 1 || n_layer > 32 || n_head < 1 || d_model < 8 || d_model > 4096 || d_model % n_head != 0 ||
        max_len < 1 || max_len > 65536 || d_ff < 0 || d_ff > (1 << 20))
        return fg_error(FG_ERR_INVALID,
                        "transformer classifier: bad shape (n_layer %d in 1..32, d_model %d in 8..4096 and a multiple "
                        "of n_head %d, max_len %d in 1..65536, d_ff %d)",
                        n_layer, d_model, n_head, max_len, d_ff);
    fg_model_config_default(mc, (fg_layout)layout);
    mc->vocab_size = TF_VOCAB;
    mc->max_seq_len = max_len + 1;
    mc->n_layer = n_layer;
    mc->n_head = n_head;
    mc->d_model = d_model;
    mc->d_ff = d_ff;
    return fg_model_config_validate(mc);
}

/* Row r of a batch: the first max_len bytes of the text, then (label mode) the separator
 * with the label as its only target, or (next-byte mode) each byte's successor as
 * target. Positions past the row's end are padding (input 0, target ignored): the causal
 * mask keeps them from the positions that count. Returns the row's used length. */
static int fill_row(const char *t, size_t len, int max_len, int label, int32_t *in, int32_t *tg, int T)
{
    int k = len < (size_t)max_len ? (int)len : max_len;
    const unsigned char *u = (const unsigned char *)t;
    for (int i = 0; i < T; i++) {
        in[i] = i < k ? u[i] : 0;
        tg[i] = -1;
    }
    if (label >= 0) {
        in[k] = TOK_SEP;
        tg[k] = label ? TOK_KEEP : TOK_DROP;
        return k + 1;
    }
    for (int i = 0; i + 1 < k; i++)
        tg[i] = u[i + 1];
    return k;
}

fg_data_tfcls *fg_data_tfcls_train(const fg_data_tfcls_config *c, const char *const *texts, const size_t *lens,
                                   const int *y, size_t n)
{
    if (n == 0) {
        fg_error(FG_ERR_INVALID, "transformer classifier: no training examples");
        return NULL;
    }
    if (c->epochs < 0 || c->lm_epochs < 0 || c->epochs + c->lm_epochs == 0 || c->batch < 1 || c->batch > 4096 ||
        !(c->lr > 0)) {
        fg_error(FG_ERR_INVALID,
                 "transformer classifier: bad training settings (epochs %d, lm_epochs %d: >= 0, not both 0; batch %d "
                 "in 1..4096; lr %g > 0)",
                 c->epochs, c->lm_epochs, c->batch, (double)c->lr);
        return NULL;
    }
    fg_data_tfcls *out = fg_calloc(1, sizeof *out);
    if (!out)
        return NULL;
    if (make_model_config(c->layout, c->n_layer, c->n_head, c->d_model, 0, c->max_len, &out->mc) != FG_OK) {
        fg_free(out);
        return NULL;
    }
    out->max_len = c->max_len;
    const int B = c->batch, T = c->max_len + 1;
    fg_model *m = fg_model_new(&out->mc, B, T);
    int32_t *in = fg_malloc((size_t)B * (size_t)T * sizeof *in), *tg = fg_malloc((size_t)B * (size_t)T * sizeof *tg);
    size_t *order = fg_malloc(n * sizeof *order);
    int nt = m ? fg_model_num_tensors(m) : 0;
    fg_optim_range *ranges = fg_malloc((size_t)(nt > 0 ? nt : 1) * sizeof *ranges);
    fg_optim opt = {0};
    fg_status st = (m && in && tg && order && ranges) ? FG_OK : fg_last_status();
    if (st == FG_OK) {
        fg_model_init_weights(m, c->seed);
        for (int i = 0; i < nt; i++) {
            const fg_tensor_info *ti = fg_model_tensor(m, i);
            ranges[i] = (fg_optim_range){ti->offset, ti->numel, !ti->no_decay, ti->frozen, ti->lr_scale};
        }
        fg_adamw_config ac = fg_adamw_config_default();
        ac.weight_decay = 0.01f; /* a few hundred examples: the default 0.1 shrinks what little is learned */
        st = fg_optim_init(&opt, fg_model_num_params(m), ranges, nt, &ac);
    }
    fg_rng rng;
    fg_rng_seed(&rng, c->seed ^ 0x7fc15ULL);
    for (size_t i = 0; i < n; i++)
        if (order)
            order[i] = i;
    const long steps_per_epoch = (long)((n + (size_t)B - 1) / (size_t)B);
    /* two phases, each with its own warmup + cosine: next bytes, then labels */
    for (int phase = 0; phase < 2 && st == FG_OK; phase++) {
        int epochs = phase == 0 ? c->lm_epochs : c->epochs;
        fg_lr_schedule sched = {c->lr, c->lr * 0.1f, 0, (long)epochs * steps_per_epoch};
        sched.warmup = sched.total / 20;
        long step = 0;
        for (int ep = 0; ep < epochs && st == FG_OK; ep++) {
            for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
                size_t j = fg_rng_below(&rng, (uint32_t)(i + 1));
                size_t tmp = order[i];
                order[i] = order[j];
                order[j] = tmp;
            }
            double sum = 0;
            for (size_t b0 = 0; b0 < n && st == FG_OK; b0 += (size_t)B, step++) {
                int b = n - b0 < (size_t)B ? (int)(n - b0) : B;
                /* the batch is only as long as its longest row: short segments are cheap */
                int Tb = 1;
                for (int r = 0; r < b; r++) {
                    size_t L = lens[order[b0 + (size_t)r]];
                    int k = (L < (size_t)c->max_len ? (int)L : c->max_len) + (phase == 1);
                    Tb = k > Tb ? k : Tb;
                }
                for (int r = 0; r < b; r++) {
                    size_t e = order[b0 + (size_t)r];
                    fill_row(texts[e], lens[e], c->max_len, phase == 1 ? (y[e] != 0) : -1, in + (size_t)r * Tb,
                             tg + (size_t)r * Tb, Tb);
                }
                float loss = 0;
                fg_model_zero_grad(m);
                if ((st = fg_model_forward(m, in, tg, b, Tb, &loss)) != FG_OK ||
                    (st = fg_model_backward(m, 1.0f)) != FG_OK)
                    break;
                fg_optim_clip(&opt, fg_model_grads(m), 1.0f);
                fg_optim_step(&opt, fg_model_params(m), fg_model_grads(m), fg_lr_at(&sched, step));
                sum += loss;
            }
            FG_INFO("transformer classifier: %s epoch %d/%d, mean loss %.4f", phase == 0 ? "next-byte" : "label",
                    ep + 1, epochs, sum / (double)steps_per_epoch);
        }
    }
    if (st == FG_OK) {
        out->n_params = fg_model_num_params(m);
        out->params = fg_malloc(out->n_params * sizeof *out->params);
        if (out->params)
            memcpy(out->params, fg_model_params(m), out->n_params * sizeof *out->params);
        else
            st = FG_ERR_NOMEM;
    }
    fg_optim_free(&opt);
    fg_free(ranges);
    fg_free(order);
    fg_free(in);
    fg_free(tg);
    fg_model_delete(m);
    if (st != FG_OK) {
        fg_data_tfcls_delete(out);
        return NULL;
    }
    return out;
}

void fg_data_tfcls_delete(fg_data_tfcls *m)
{
    if (!m)
        return;
    fg_free(m->params);
    fg_free(m);
}

size_t fg_data_tfcls_num_params(const fg_data_tfcls *m)
{
    return m->n_params;
}

void fg_data_tfcls_get_config(const fg_data_tfcls *m, fg_data_tfcls_config *c)
{
    memset(c, 0, sizeof *c);
    c->layout = (int)m->mc.layout;
    c->n_layer = m->mc.n_layer;
    c->n_head = m->mc.n_head;
    c->d_model = m->mc.d_model;
    c->max_len = m->max_len;
}

fg_data_tfcls_ctx *fg_data_tfcls_ctx_new(const fg_data_tfcls *m)
{
    fg_data_tfcls_ctx *x = fg_calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->max_len = m->max_len;
    x->m = fg_model_new(&m->mc, 1, m->max_len + 1);
    x->in = fg_malloc(((size_t)m->max_len + 1) * sizeof *x->in);
    if (!x->m || !x->in) {
        fg_data_tfcls_ctx_delete(x);
        return NULL;
    }
    if (fg_model_num_params(x->m) != m->n_params) { /* load checked it: a safety net */
        fg_error(FG_ERR_INVALID, "transformer classifier: %zu parameters for a model of %zu", m->n_params,
                 fg_model_num_params(x->m));
        fg_data_tfcls_ctx_delete(x);
        return NULL;
    }
    memcpy(fg_model_params(x->m), m->params, m->n_params * sizeof *m->params);
    /* One call here, on the creating thread: the kernels configure themselves on their
     * first use, which must not happen first inside the pipeline's parallel region. */
    (void)fg_data_tfcls_predict(x, "", 0);
    return x;
}

void fg_data_tfcls_ctx_delete(fg_data_tfcls_ctx *x)
{
    if (!x)
        return;
    fg_model_delete(x->m);
    fg_free(x->in);
    fg_free(x);
}

float fg_data_tfcls_predict(fg_data_tfcls_ctx *x, const char *text, size_t len)
{
    int k = len < (size_t)x->max_len ? (int)len : x->max_len;
    const unsigned char *u = (const unsigned char *)text;
    for (int i = 0; i < k; i++)
        x->in[i] = u[i];
    x->in[k] = TOK_SEP;
    /* a pipeline thread is one core: with --threads 1 the outer region is inactive and
     * the kernels' own regions would otherwise fork a team per GEMM */
    int save = omp_get_max_threads();
    omp_set_num_threads(1);
    float loss;
    fg_status st = fg_model_forward(x->m, x->in, NULL, 1, k + 1, &loss);
    omp_set_num_threads(save);
    const float *lg = fg_model_logits(x->m);
    if (st != FG_OK || !lg)
        return 0.5f; /* cannot happen for byte inputs within max_len: undecided */
    const fg_model_config *mc = fg_model_get_config(x->m);
    int Vp = mc->padded_vocab > 0 ? mc->padded_vocab : (mc->vocab_size + 63) / 64 * 64;
    const float *row = lg + (size_t)k * (size_t)Vp;
    return (float)(1.0 / (1.0 + exp(-((double)row[TOK_KEEP] - (double)row[TOK_DROP]))));
}

/* ---- file ---- */
#define TF_MAGIC "FGTFC001"
enum { TF_HDR_WORDS = 8, TF_HDR_BYTES = 8 + TF_HDR_WORDS * 4 + 8 };

fg_status fg_data_tfcls_save(const fg_data_tfcls *m, const char *path)
{
    uint32_t hdr[TF_HDR_WORDS] = {1,
                                  (uint32_t)m->mc.layout,
                                  (uint32_t)m->mc.n_layer,
                                  (uint32_t)m->mc.n_head,
                                  (uint32_t)m->mc.d_model,
                                  (uint32_t)m->mc.d_ff,
                                  (uint32_t)m->max_len,
                                  (uint32_t)m->mc.vocab_size};
    uint64_t np = m->n_params;
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)TF_MAGIC, 8);
    crc = crc32(crc, (const Bytef *)hdr, sizeof hdr);
    crc = crc32(crc, (const Bytef *)&np, sizeof np);
    crc = crc32_z(crc, (const Bytef *)m->params, m->n_params * sizeof *m->params);
    uint32_t c32 = (uint32_t)crc;
    fg_file_tx tx;
    fg_status st = fg_file_tx_open(&tx, path, 0);
    if (st != FG_OK)
        return st;
    /* a failed write is kept by tx and reported by commit, which then leaves path alone */
    fg_file_tx_write(&tx, TF_MAGIC, 8);
    fg_file_tx_write(&tx, hdr, sizeof hdr);
    fg_file_tx_write(&tx, &np, sizeof np);
    fg_file_tx_write(&tx, m->params, m->n_params * sizeof *m->params);
    fg_file_tx_write(&tx, &c32, 4);
    return fg_file_tx_commit(&tx);
}

/* Reads the whole of path (classifier files are small). */
static fg_status slurp(const char *path, unsigned char **buf, size_t *n)
{
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot open classifier: %s", path, strerror(errno));
    sbuf b = {0};
    unsigned char tmp[1 << 16];
    size_t k;
    fg_status st = FG_OK;
    while (st == FG_OK && (k = fread(tmp, 1, sizeof tmp, f)) > 0)
        st = sbuf_put(&b, tmp, k);
    if (st == FG_OK && ferror(f))
        st = fg_error(FG_ERR_IO, "%s: byte %zu: read failed", path, b.n);
    fclose(f);
    if (st != FG_OK) {
        sbuf_free(&b);
        return st;
    }
    *buf = (unsigned char *)b.p;
    *n = b.n;
    return FG_OK;
}

fg_data_tfcls *fg_data_tfcls_load(const char *path)
{
    unsigned char *buf;
    size_t n;
    if (slurp(path, &buf, &n) != FG_OK)
        return NULL;
    fg_data_tfcls *m = NULL;
    uint32_t hdr[TF_HDR_WORDS];
    uint64_t np;
    if (n < 8 || memcmp(buf, TF_MAGIC, 8) != 0) {
        fg_error(FG_ERR_FORMAT, "%s: byte 0: not a frugal transformer classifier (magic is not %s)", path, TF_MAGIC);
        goto fail;
    }
    if (n < TF_HDR_BYTES) {
        fg_error(FG_ERR_CORRUPT, "%s: byte %zu: truncated header (%d bytes expected)", path, n, (int)TF_HDR_BYTES);
        goto fail;
    }
    memcpy(hdr, buf + 8, sizeof hdr);
    memcpy(&np, buf + 8 + sizeof hdr, sizeof np);
    if (hdr[0] != 1) {
        fg_error(FG_ERR_UNSUPPORTED, "%s: byte 8: transformer classifier version %u (this build reads 1)", path,
                 hdr[0]);
        goto fail;
    }
    if (hdr[7] != TF_VOCAB) {
        fg_error(FG_ERR_CORRUPT, "%s: byte 36: vocabulary of %u tokens (the byte vocabulary has %d)", path, hdr[7],
                 (int)TF_VOCAB);
        goto fail;
    }
    if (hdr[1] > 1 || hdr[2] > 32 || hdr[3] > 4096 || hdr[4] > 4096 || hdr[5] > (1u << 20) || hdr[6] > 65536) {
        fg_error(FG_ERR_CORRUPT,
                 "%s: byte 12: model shape out of range (layout %u, n_layer %u, n_head %u, d_model %u, d_ff %u, "
                 "max_len %u)",
                 path, hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6]);
        goto fail;
    }
    if (np > (n - TF_HDR_BYTES) / 4 || n != TF_HDR_BYTES + np * 4 + 4) {
        fg_error(FG_ERR_CORRUPT, "%s: byte %zu: file has %zu bytes, %llu parameters need %llu (truncated or padded)",
                 path, n, n, (unsigned long long)np, (unsigned long long)(TF_HDR_BYTES + np * 4 + 4));
        goto fail;
    }
    uint32_t c32;
    memcpy(&c32, buf + n - 4, 4);
    uint32_t crc = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), buf, n - 4);
    if (crc != c32) {
        fg_error(FG_ERR_CORRUPT, "%s: checksum mismatch (file %08x, computed %08x over bytes 0..%zu)", path, c32, crc,
                 n - 4);
        goto fail;
    }
    m = fg_calloc(1, sizeof *m);
    if (!m)
        goto fail;
    if (make_model_config((int)hdr[1], (int)hdr[2], (int)hdr[3], (int)hdr[4], (int)hdr[5], (int)hdr[6], &m->mc) !=
        FG_OK) {
        fg_error(FG_ERR_CORRUPT, "%s: byte 12: %s", path, fg_last_error());
        goto fail;
    }
    m->max_len = (int)hdr[6];
    fg_model *probe = fg_model_new(&m->mc, 1, 1);
    if (!probe)
        goto fail;
    size_t want = fg_model_num_params(probe);
    fg_model_delete(probe);
    if (want != np) {
        fg_error(FG_ERR_CORRUPT, "%s: byte 40: %llu parameters, the model shape in the header has %zu", path,
                 (unsigned long long)np, want);
        goto fail;
    }
    m->n_params = (size_t)np;
    m->params = fg_malloc(m->n_params * sizeof *m->params);
    if (!m->params)
        goto fail;
    memcpy(m->params, buf + TF_HDR_BYTES, m->n_params * sizeof *m->params);
    fg_free(buf);
    return m;
fail:
    fg_data_tfcls_delete(m);
    fg_free(buf);
    return NULL;
}

int fg_data_classifier_file_kind(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fg_error(FG_ERR_IO, "%s: cannot open classifier: %s", path, strerror(errno));
        return 0;
    }
    char magic[8] = {0};
    size_t k = fread(magic, 1, 8, f);
    fclose(f);
    if (k == 8 && !memcmp(magic, "FGCLS001", 8))
        return 1;
    if (k == 8 && !memcmp(magic, TF_MAGIC, 8))
        return 2;
    fg_error(FG_ERR_FORMAT, "%s: byte 0: not a frugal classifier (magic is neither FGCLS001 nor %s)", path, TF_MAGIC);
    return 0;
}
