/* synth.h: synthetic training text (issue 17), part of fg_train: sampling a trained run
 * on all cores (one model per thread, KV-cache decoding), the discriminator that keeps
 * the samples Frugal's classifier cannot tell from held-out real text, and the token mix
 * the trainer applies for `synth_path` / `synth_ratio`.
 *
 * Usage (what `frugal synth` does):
 *   fg_synth_gen_config g; fg_synth_gen_config_default(&g);
 *   fg_synth_generate(run, NULL, tok, &g, &texts, &lens);          // n_samples texts
 *   fg_synth_split_text(real, real_len, target, &pieces, &plens, &n_pieces);
 *   fg_synth_filter(&f, pieces, plens, n_pieces, texts, lens, n, p_real, keep, &res);
 * and `frugal train --synth-path kept.txt --synth-ratio 0.5` mixes them in
 * (fg_synth_mix_file). Same seed (and thread count) = same samples, same mix.
 */
#ifndef FRUGAL_SYNTH_H
#define FRUGAL_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"
#include "frugal/data.h"
#include "frugal/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sampling ---- */
typedef struct fg_synth_gen_config {
    int n_samples;     /* samples to draw (default 64) */
    int n_tokens;      /* tokens per sample, at most the model's max_seq_len - 1 (default 128) */
    float temperature; /* 0.8; 0 greedy */
    int top_k;         /* 40; 0 off */
    float top_p;       /* 0.95; 1 off */
    uint64_t seed;     /* sample k draws from a generator seeded by (seed, k) */
    int threads;       /* models decoding side by side; 0 = the OpenMP thread count */
} fg_synth_gen_config;
void fg_synth_gen_config_default(fg_synth_gen_config *g);

/* Loads the run (`frugal train`'s --out; ckpt as fg_train_load_run: NULL or "" = final/)
 * once per thread and draws g->n_samples samples side by side, each from the start token
 * (<|endoftext|>, else the id of "\n") until n_tokens or <|endoftext|>. Sample k depends
 * only on (seed, k), not on which thread drew it. *texts[k] (NUL-terminated, lens[k]
 * bytes) and the arrays are fg_malloc'd: free with fg_synth_free_texts. */
fg_status fg_synth_generate(const char *run, const char *ckpt, const fg_tokenizer *tok, const fg_synth_gen_config *g,
                            char ***texts, size_t **lens);
void fg_synth_free_texts(char **texts, size_t *lens, size_t n);

/* Cuts text into pieces of about target bytes at line breaks (a piece ends at the first
 * '\n' at or after target bytes; the tail shorter than target/2 is dropped), the real
 * half of the discriminator's data cut to the samples' size. Pointers into text;
 * *pieces and *lens fg_malloc'd. */
fg_status fg_synth_split_text(const char *text, size_t len, size_t target, const char ***pieces, size_t **lens,
                              size_t *n);

/* ---- discriminator ---- */
typedef struct fg_synth_filter_config {
    float threshold;               /* keep a sample when P(real) >= threshold (default 0.5: the classifier
                                      finds it at least as likely real as synthetic) */
    int folds;                     /* cross-fitting folds, 2..16 (default 2) */
    fg_data_classifier_config cls; /* Frugal's quality classifier (data.h); its defaults but 2 epochs */
} fg_synth_filter_config;
void fg_synth_filter_config_default(fg_synth_filter_config *f);

typedef struct fg_synth_filter_result {
    size_t kept, n;        /* samples kept, of n */
    double kept_frac;      /* kept / n */
    double real_pass_frac; /* held-out real pieces scored >= threshold: the same test applied to real text */
    double syn_mean_p;     /* mean P(real) over the samples */
    double accuracy;       /* balanced accuracy on the held-out folds: mean of the real and synthetic
                              classes' shares on the right side of 0.5 */
} fg_synth_filter_result;

/* Trains the classifier real (label 1) against synthetic (label 0) and scores each
 * sample. Cross-fitted: items go to folds by a hash of (index, cls.seed); fold k's items
 * are scored by a classifier trained on the other folds, so no sample is judged by a
 * classifier that saw it. The larger class trains on an evenly spaced subset of the
 * smaller one's size (every item is still scored). p_real[n_syn] and keep[n_syn] (1 = kept) are written; each may
 * be NULL. Needs at least `folds` real pieces and samples. */
fg_status fg_synth_filter(const fg_synth_filter_config *f, const char *const *real, const size_t *real_lens,
                          size_t n_real, const char *const *syn, const size_t *syn_lens, size_t n_syn, float *p_real,
                          unsigned char *keep, fg_synth_filter_result *res);

/* ---- mixing ---- */
/* Interleaves synthetic tokens into the real ones so that a share `ratio` (in [0, 1)) of
 * the output is synthetic: round(ratio / (1 - ratio) * n_real) synthetic tokens, read
 * cyclically from a seed-chosen offset of syn (repeated when syn is shorter), in chunks
 * of `chunk` tokens spread evenly among the real ones (so every part of the stream, and
 * both random and sequential windows, see the ratio). *out fg_malloc'd; *n_syn_out
 * synthetic tokens in it. */
fg_status fg_synth_mix(const uint32_t *real, size_t n_real, const uint32_t *syn, size_t n_syn, double ratio,
                       uint64_t seed, size_t chunk, uint32_t **out, size_t *n_out, size_t *n_syn_out);

/* The trainer's side (`synth_path`, `synth_ratio`): reads and tokenises the text file at
 * path and replaces *ids (n tokens of training text) by fg_synth_mix of it (chunks of 256
 * tokens). Messages name the file. */
fg_status fg_synth_mix_file(const char *path, const fg_tokenizer *tok, double ratio, uint64_t seed, uint32_t **ids,
                            size_t *n, size_t *n_syn);

#ifdef __cplusplus
}
#endif
#endif
