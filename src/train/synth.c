/* synth.c: synthetic training text: samples a trained run with one model per thread,
 * filters them with a cross-fitted real-vs-synthetic classifier and mixes the kept text
 * into the training tokens at a fixed share (docs/TRAINING.md "Synthetic data"). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "frugal/synth.h"
#include "frugal/train.h"

void fg_synth_gen_config_default(fg_synth_gen_config *g)
{
    memset(g, 0, sizeof *g);
    g->n_samples = 64;
    g->n_tokens = 128;
    g->temperature = 0.8f;
    g->top_k = 40;
    g->top_p = 0.95f;
    g->seed = 1;
}

void fg_synth_free_texts(char **texts, size_t *lens, size_t n)
{
    for (size_t i = 0; texts && i < n; i++)
        fg_free(texts[i]);
    fg_free(texts);
    fg_free(lens);
}

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* Start token: <|endoftext|>, else the id of a line break (as `frugal sample`). */
static int32_t start_token(const fg_tokenizer *tok)
{
    int eot = fg_tok_eot(tok);
    if (eot >= 0)
        return eot;
    uint32_t *nl = NULL;
    size_t n = 0;
    int32_t id = fg_tok_encode(tok, "\n", 1, &nl, &n) == FG_OK && n ? (int32_t)nl[0] : 0;
    fg_free(nl);
    return id;
}

fg_status fg_synth_generate(const char *run, const char *ckpt, const fg_tokenizer *tok, const fg_synth_gen_config *g,
                            char ***texts_out, size_t **lens_out)
{
    *texts_out = NULL;
    *lens_out = NULL;
    if (g->n_samples < 1 || g->n_tokens < 1 || g->threads < 0)
        return fg_error(FG_ERR_INVALID, "synth: n_samples %d and n_tokens %d must be >= 1, threads %d >= 0",
                        g->n_samples, g->n_tokens, g->threads);
    int nth = g->threads ? g->threads : omp_get_max_threads();
    if (nth > g->n_samples)
        nth = g->n_samples;
    fg_model **models = fg_calloc((size_t)nth, sizeof *models);
    int32_t **bufs = fg_calloc((size_t)g->n_samples, sizeof *bufs);
    int *ns = fg_calloc((size_t)g->n_samples, sizeof *ns);
    char **texts = fg_calloc((size_t)g->n_samples, sizeof *texts);
    size_t *lens = fg_calloc((size_t)g->n_samples, sizeof *lens);
    fg_status st = models && bufs && ns && texts && lens ? FG_OK : FG_ERR_NOMEM;
    /* one model per thread: fg_model_generate keeps its KV cache in the model */
    for (int t = 0; st == FG_OK && t < nth; t++) {
        fg_train_config c;
        st = fg_train_load_run(run, ckpt ? ckpt : "", 1, 0, &c, &models[t]);
    }
    int maxT = st == FG_OK ? fg_model_get_config(models[0])->max_seq_len : 0;
    if (st == FG_OK && g->n_tokens > maxT - 1)
        st = fg_error(FG_ERR_INVALID, "synth: n_tokens %d exceeds the run's context: at most max_seq_len - 1 = %d",
                      g->n_tokens, maxT - 1);
    if (st == FG_OK && fg_tok_vocab_size(tok) > fg_model_get_config(models[0])->vocab_size)
        st = fg_error(FG_ERR_INVALID, "synth: the tokenizer's %d ids exceed run %s's vocab_size %d",
                      fg_tok_vocab_size(tok), run, fg_model_get_config(models[0])->vocab_size);
    for (int k = 0; st == FG_OK && k < g->n_samples; k++)
        if (!(bufs[k] = fg_malloc((size_t)maxT * sizeof(int32_t))))
            st = FG_ERR_NOMEM;
    if (st != FG_OK)
        goto out;
    int32_t start = start_token(tok);
    int eot = fg_tok_eot(tok);
    int failed = 0; /* the first failing sample's status (set inside the loop) */
    /* Samples side by side; the kernels called inside run serially on their thread
     * (a GEMM inside a parallel region does not split). Dynamic schedule: samples
     * stopped at <|endoftext|> are shorter. */
#pragma omp parallel for num_threads(nth) schedule(dynamic, 1)
    for (int k = 0; k < g->n_samples; k++) {
        fg_model *m = models[omp_get_thread_num()];
        fg_sampler s = {.temperature = g->temperature, .top_k = g->top_k, .top_p = g->top_p};
        fg_rng_seed(&s.rng, mix64(g->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)k + 1));
        int n = fg_model_generate(m, &start, 1, g->n_tokens, eot, &s, bufs[k]);
        if (n < 0) {
#pragma omp critical(fg_synth_fail)
            if (!failed)
                failed = n;
        }
        ns[k] = n;
    }
    if (failed) {
        st = (fg_status)failed;
        goto out;
    }
    for (int k = 0; st == FG_OK && k < g->n_samples; k++) {
        int n = ns[k];
        if (n > 1 && bufs[k][n - 1] == eot)
            n--; /* the stop token is not text */
        st = fg_tok_decode(tok, (const uint32_t *)(const void *)(bufs[k] + 1), (size_t)(n - 1), &texts[k], &lens[k]);
    }
out:
    for (int t = 0; models && t < nth; t++)
        fg_model_delete(models[t]);
    fg_free(models);
    for (int k = 0; bufs && k < g->n_samples; k++)
        fg_free(bufs[k]);
    fg_free(bufs);
    fg_free(ns);
    if (st != FG_OK) {
        fg_synth_free_texts(texts, lens, texts ? (size_t)g->n_samples : 0);
        return st;
    }
    *texts_out = texts;
    *lens_out = lens;
    return FG_OK;
}

fg_status fg_synth_split_text(const char *text, size_t len, size_t target, const char ***pieces_out, size_t **lens_out,
                              size_t *n_out)
{
    *pieces_out = NULL;
    *lens_out = NULL;
    *n_out = 0;
    if (target == 0)
        return fg_error(FG_ERR_INVALID, "synth: piece size must be > 0");
    size_t cap = len / target + 2, n = 0;
    const char **pieces = fg_malloc(cap * sizeof *pieces);
    size_t *lens = fg_malloc(cap * sizeof *lens);
    if (!pieces || !lens) {
        fg_free(pieces);
        fg_free(lens);
        return FG_ERR_NOMEM;
    }
    size_t at = 0;
    while (at < len && n < cap) {
        size_t end = at + target < len ? at + target : len;
        const char *nl = end < len ? memchr(text + end, '\n', len - end) : NULL;
        end = nl ? (size_t)(nl - text) + 1 : len;
        if (end - at < target / 2)
            break; /* a short tail: a length the samples do not have */
        pieces[n] = text + at;
        lens[n++] = end - at;
        at = end;
    }
    *pieces_out = pieces;
    *lens_out = lens;
    *n_out = n;
    return FG_OK;
}

void fg_synth_filter_config_default(fg_synth_filter_config *f)
{
    memset(f, 0, sizeof *f);
    f->threshold = 0.5f;
    f->folds = 2;
    fg_data_classifier_config_init(&f->cls);
    /* 2 epochs, not the cleaning classifier's 8: a few hundred items of two classes drawn
     * from overlapping text are memorised by 8 passes, and held-out real text then scores
     * as synthetic (test_train_synth's case: real passing 0.79 at 8 epochs, 0.97 at 2,
     * garbage dropped at both) */
    f->cls.epochs = 2;
}

static int fold_of(size_t i, int is_real, const fg_synth_filter_config *f)
{
    return (int)(mix64(((uint64_t)i << 1 | (uint64_t)is_real) ^ f->cls.seed * 0x9e3779b97f4a7c15ULL) %
                 (uint64_t)f->folds);
}

/* Class balance: of n_this items of one class, about n_other evenly spaced ones train
 * (all when n_this <= n_other), so the classifier's bias is not the classes' ratio. */
static int trains(size_t j, size_t n_this, size_t n_other)
{
    return n_this <= n_other || (j * n_other) / n_this != ((j + 1) * n_other) / n_this;
}

fg_status fg_synth_filter(const fg_synth_filter_config *f, const char *const *real, const size_t *real_lens,
                          size_t n_real, const char *const *syn, const size_t *syn_lens, size_t n_syn, float *p_real,
                          unsigned char *keep, fg_synth_filter_result *res)
{
    memset(res, 0, sizeof *res);
    if (f->folds < 2 || f->folds > 16 || !(f->threshold >= 0.0f && f->threshold <= 1.0f))
        return fg_error(FG_ERR_INVALID, "synth filter: folds %d must be in 2..16 and threshold %g in [0, 1]", f->folds,
                        (double)f->threshold);
    if (n_real < (size_t)f->folds || n_syn < (size_t)f->folds)
        return fg_error(FG_ERR_INVALID,
                        "synth filter: %zu real pieces and %zu samples: each needs at least folds = %d (give more "
                        "real text or more samples)",
                        n_real, n_syn, f->folds);
    size_t n_all = n_real + n_syn;
    const char **texts = fg_malloc(n_all * sizeof *texts);
    size_t *lens = fg_malloc(n_all * sizeof *lens);
    int *y = fg_malloc(n_all * sizeof *y);
    float *p = fg_malloc(n_all * sizeof *p);
    fg_status st = texts && lens && y && p ? FG_OK : FG_ERR_NOMEM;
    size_t correct[2] = {0, 0}; /* held-out synthetic, real items on the right side of 0.5 */
    for (int k = 0; st == FG_OK && k < f->folds; k++) {
        size_t n = 0;
        for (size_t i = 0; i < n_all; i++) {
            int is_real = i < n_real;
            size_t j = is_real ? i : i - n_real;
            if (fold_of(j, is_real, f) == k || !trains(j, is_real ? n_real : n_syn, is_real ? n_syn : n_real))
                continue;
            texts[n] = is_real ? real[j] : syn[j];
            lens[n] = is_real ? real_lens[j] : syn_lens[j];
            y[n++] = is_real;
        }
        fg_data_classifier *cls = fg_data_classifier_train(&f->cls, texts, lens, y, n);
        if (!cls) {
            st = fg_last_status();
            break;
        }
        for (size_t i = 0; i < n_all; i++) {
            int is_real = i < n_real;
            size_t j = is_real ? i : i - n_real;
            if (fold_of(j, is_real, f) != k)
                continue;
            p[i] = fg_data_classifier_predict(cls, is_real ? real[j] : syn[j], is_real ? real_lens[j] : syn_lens[j]);
            correct[is_real] += (p[i] >= 0.5f) == (is_real != 0);
        }
        fg_data_classifier_delete(cls);
    }
    if (st == FG_OK) {
        size_t pass = 0;
        double sum = 0.0;
        for (size_t i = 0; i < n_real; i++)
            pass += p[i] >= f->threshold;
        for (size_t j = 0; j < n_syn; j++) {
            float q = p[n_real + j];
            int kept = q >= f->threshold;
            if (p_real)
                p_real[j] = q;
            if (keep)
                keep[j] = (unsigned char)kept;
            res->kept += (size_t)kept;
            sum += q;
        }
        res->n = n_syn;
        res->kept_frac = (double)res->kept / (double)n_syn;
        res->real_pass_frac = (double)pass / (double)n_real;
        res->syn_mean_p = sum / (double)n_syn;
        res->accuracy = 0.5 * ((double)correct[0] / (double)n_syn + (double)correct[1] / (double)n_real);
    }
    fg_free(texts);
    fg_free(lens);
    fg_free(y);
    fg_free(p);
    return st;
}

fg_status fg_synth_mix(const uint32_t *real, size_t n_real, const uint32_t *syn, size_t n_syn, double ratio,
                       uint64_t seed, size_t chunk, uint32_t **out, size_t *n_out, size_t *n_syn_out)
{
    *out = NULL;
    *n_out = *n_syn_out = 0;
    if (!(ratio >= 0.0 && ratio < 1.0) || chunk == 0)
        return fg_error(FG_ERR_INVALID, "synth mix: ratio %g must be in [0, 1) and chunk %zu > 0", ratio, chunk);
    size_t target = ratio > 0.0 ? (size_t)llround(ratio / (1.0 - ratio) * (double)n_real) : 0;
    if (target > 0 && n_syn == 0)
        return fg_error(FG_ERR_INVALID, "synth mix: no synthetic tokens to mix at ratio %g", ratio);
    uint32_t *o = fg_malloc((n_real + target + 1) * sizeof *o);
    if (!o)
        return FG_ERR_NOMEM;
    fg_rng rng;
    fg_rng_seed(&rng, seed ^ 0x5717ull);
    size_t off = n_syn ? (size_t)(fg_rng_next(&rng) % n_syn) : 0;
    size_t r = 0, s = 0, n = 0;
    while (r < n_real || s < target) {
        /* synthetic next while it is behind its share of what has been written */
        int take_syn = s < target && (r >= n_real || (double)s * (double)n_real <= (double)r * (double)target);
        if (take_syn) {
            size_t k = target - s < chunk ? target - s : chunk;
            for (size_t i = 0; i < k; i++)
                o[n++] = syn[(off + s + i) % n_syn];
            s += k;
        } else {
            size_t k = n_real - r < chunk ? n_real - r : chunk;
            memcpy(o + n, real + r, k * sizeof *o);
            n += k;
            r += k;
        }
    }
    *out = o;
    *n_out = n;
    *n_syn_out = s;
    return FG_OK;
}

fg_status fg_synth_mix_file(const char *path, const fg_tokenizer *tok, double ratio, uint64_t seed, uint32_t **ids,
                            size_t *n, size_t *n_syn)
{
    char *text = NULL;
    size_t len = 0;
    uint32_t *syn = NULL, *mixed = NULL;
    size_t ns = 0, nm = 0;
    *n_syn = 0;
    fg_status st = fg_read_file(path, (size_t)1 << 34, &text, &len);
    if (st == FG_OK && len == 0)
        st = fg_error(FG_ERR_FORMAT, "%s: empty synthetic text", path);
    if (st == FG_OK)
        st = fg_tok_encode(tok, text, len, &syn, &ns);
    fg_free(text);
    if (st == FG_OK)
        st = fg_synth_mix(*ids, *n, syn, ns, ratio, seed, 256, &mixed, &nm, n_syn);
    fg_free(syn);
    if (st != FG_OK) {
        char msg[512]; /* fg_last_error's buffer is the one fg_error writes */
        snprintf(msg, sizeof msg, "%s", fg_last_error());
        return strstr(msg, path) ? st : fg_error(st, "%s: %s", path, msg[0] ? msg : fg_status_str(st));
    }
    if (*n_syn > 4 * ns) /* few samples survived the discriminator: each is seen many times */
        FG_WARN("%s: %zu synthetic tokens repeated %.1f times to reach synth_ratio %g (draw more samples)", path, ns,
                (double)*n_syn / (double)ns, ratio);
    fg_free(*ids);
    *ids = mixed;
    *n = nm;
    return FG_OK;
}
