/* cmd_synth.c: `frugal synth`: samples a trained run on all cores, keeps the samples the
 * real-vs-synthetic discriminator cannot tell from held-out real text, writes them (for
 * `frugal train --synth-path`) with the kept fraction beside them (synth.h). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "frugal/kernels.h"
#include "frugal/shard.h"
#include "frugal/synth.h"
#include "frugal/train.h"

typedef struct synth_opts {
    char run[4096], ckpt[4096], out[4096], real[4096], scores[4096], kernels[32];
    int n_samples, n, top_k, threads, folds;
    double temperature, top_p, threshold;
    uint64_t seed;
} synth_opts;

#define SF(field) FG_OPT_FIELD(synth_opts, field)
static const fg_opt synth_table[] = {
    {"run", FG_OPT_STR, SF(run), .help = "the --out directory of a finished `frugal train` (required)"},
    {"ckpt", FG_OPT_STR, SF(ckpt), .help = "a checkpoint directory (default RUN/final)"},
    {"out", FG_OPT_STR, SF(out),
     .help = "kept samples, each followed by a blank line (required); OUT.json gets the counts and kept fraction"},
    {"real", FG_OPT_STR, SF(real),
     .help = "held-out real text for the discriminator (default: the run's validation text, RUN/data/val.bin)"},
    {"scores", FG_OPT_STR, SF(scores), .help = "also write every sample with its P(real) and verdict as JSONL here"},
    {"n_samples", FG_OPT_INT, SF(n_samples), .min = 2, .max = 1 << 24, .help = "samples to draw"},
    {"n", FG_OPT_INT, SF(n), .min = 1, .max = 1 << 20, .help = "tokens per sample (at most max_seq_len - 1)"},
    {"temperature", FG_OPT_DOUBLE, SF(temperature), .min = 0, .max = 100, .help = "0 is greedy"},
    {"top_k", FG_OPT_INT, SF(top_k), .min = 0, .max = 1e9, .help = "0: no top-k cut"},
    {"top_p", FG_OPT_DOUBLE, SF(top_p), .min = 1e-6, .max = 1, .help = "nucleus mass"},
    {"seed", FG_OPT_U64, SF(seed), .help = "sampling and fold seed (sample k depends on seed and k only)"},
    {"threshold", FG_OPT_DOUBLE, SF(threshold), .min = 0, .max = 1,
     .help = "keep a sample when the discriminator's P(real) >= this (0.5: at least as likely real as synthetic)"},
    {"folds", FG_OPT_INT, SF(folds), .min = 2, .max = 16,
     .help = "cross-fitting folds: each sample is scored by a discriminator trained without it"},
    {"kernels", FG_OPT_STR, SF(kernels), .help = "auto, ref or a variant (`frugal hw` lists them)"},
    {"threads", FG_OPT_INT, SF(threads), .min = 0, .max = 4096, .help = "samples decoded side by side; 0: all cores"},
};
#undef SF

/* The run's held-out text: its validation shard decoded back to text. */
static fg_status run_val_text(const char *run, const fg_tokenizer *tok, char **text, size_t *len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data/val.bin", run);
    fg_shard s;
    fg_status st = fg_shard_open(&s, path);
    if (st != FG_OK)
        return fg_error(st, "%s: no validation text (a run trained from --data has one; else give --real FILE)", path);
    uint32_t *ids = fg_malloc((s.n_tokens ? s.n_tokens : 1) * sizeof *ids);
    if (!ids) {
        fg_shard_close(&s);
        return FG_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < s.n_tokens; i++)
        ids[i] = fg_shard_token(&s, i);
    st = fg_tok_decode(tok, ids, (size_t)s.n_tokens, text, len);
    fg_free(ids);
    fg_shard_close(&s);
    return st;
}

static void json_str(fg_file_tx *t, const char *s, size_t n)
{
    fg_file_tx_printf(t, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fg_file_tx_printf(t, "\\%c", c);
        else if (c < 0x20)
            fg_file_tx_printf(t, "\\u%04x", c);
        else
            fg_file_tx_write(t, &s[i], 1);
    }
    fg_file_tx_printf(t, "\"");
}

int fg_cmd_synth(int argc, char **argv)
{
    synth_opts o = {.n_samples = 64,
                    .n = 128,
                    .top_k = 40,
                    .temperature = 0.8,
                    .top_p = 0.95,
                    .seed = 1,
                    .threshold = 0.5,
                    .folds = 2};
    synth_opts def = o;
    fg_opt_table t = {synth_table, FG_OPT_COUNT(synth_table), &o};
    const void *defs[] = {&def};
    fg_cli_spec spec = {"synth", "usage: frugal synth --run DIR --out FILE [options]\n", &t, defs, 1, NULL};
    fg_opt_args a = {0};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!o.run[0] || !o.out[0])
        return fg_cli_fail("synth", fg_error(FG_ERR_INVALID, "--run DIR and --out FILE are required"),
                           "frugal synth --help");
    fg_status st = fg_kernels_configure(o.kernels[0] ? o.kernels : NULL, NULL, o.threads);
    if (st != FG_OK)
        return fg_cli_fail("synth", st, "valid --kernels modes are listed by `frugal hw`");
    fg_train_config c;
    fg_model *m = NULL;
    st = fg_train_load_run(o.run, o.ckpt, 1, 0, &c, &m);
    fg_model_delete(m);
    if (st != FG_OK)
        return fg_cli_fail("synth", st, "--run takes the --out directory of a finished `frugal train`");
    int code = 0;
    char **texts = NULL, *real = NULL;
    size_t *lens = NULL, real_len = 0, n_pieces = 0, *plens = NULL;
    const char **pieces = NULL;
    float *p = NULL;
    unsigned char *keep = NULL;
    fg_tokenizer *tok = fg_tok_load(c.tokenizer);
    if (!tok) {
        code = fg_cli_fail("synth", fg_last_status(), "the run's tokenizer (config.json) must still exist");
        goto out;
    }
    st = o.real[0] ? fg_read_file(o.real, (size_t)1 << 34, &real, &real_len)
                   : run_val_text(o.run, tok, &real, &real_len);
    if (st != FG_OK) {
        code = fg_cli_fail("synth", st, NULL);
        goto out;
    }
    fg_synth_gen_config g;
    fg_synth_gen_config_default(&g);
    g.n_samples = o.n_samples;
    g.n_tokens = o.n;
    g.temperature = (float)o.temperature;
    g.top_k = o.top_k;
    g.top_p = (float)o.top_p;
    g.seed = o.seed;
    g.threads = o.threads;
    double t0 = fg_time_sec();
    st = fg_synth_generate(o.run, o.ckpt, tok, &g, &texts, &lens);
    if (st != FG_OK) {
        code = fg_cli_fail("synth", st, NULL);
        goto out;
    }
    double gen_s = fg_time_sec() - t0;
    /* real pieces cut to the samples' mean length, so length is no tell */
    size_t total = 0;
    for (int k = 0; k < g.n_samples; k++)
        total += lens[k];
    size_t target = total / (size_t)g.n_samples;
    st = fg_synth_split_text(real, real_len, target ? target : 1, &pieces, &plens, &n_pieces);
    fg_synth_filter_config f;
    fg_synth_filter_config_default(&f);
    f.threshold = (float)o.threshold;
    f.folds = o.folds;
    f.cls.seed = o.seed;
    p = fg_malloc((size_t)g.n_samples * sizeof *p);
    keep = fg_malloc((size_t)g.n_samples);
    fg_synth_filter_result res;
    if (st == FG_OK && (!p || !keep))
        st = FG_ERR_NOMEM;
    if (st == FG_OK)
        st = fg_synth_filter(&f, pieces, plens, n_pieces, (const char *const *)texts, lens, (size_t)g.n_samples, p,
                             keep, &res);
    if (st != FG_OK) {
        code = fg_cli_fail("synth", st, "--real FILE gives more real text; --n-samples more samples");
        goto out;
    }
    fg_file_tx tx;
    st = fg_file_tx_open(&tx, o.out, 0);
    for (int k = 0; st == FG_OK && k < g.n_samples; k++)
        if (keep[k]) {
            fg_file_tx_write(&tx, texts[k], lens[k]);
            fg_file_tx_write(&tx, "\n\n", 2);
        }
    if (st == FG_OK)
        st = fg_file_tx_commit(&tx);
    char path[4200];
    snprintf(path, sizeof path, "%s.json", o.out);
    if (st == FG_OK && (st = fg_file_tx_open(&tx, path, 0)) == FG_OK) {
        fg_file_tx_printf(&tx,
                          "{\"run\": \"%s\", \"generated\": %zu, \"kept\": %zu, \"kept_frac\": %.6f, "
                          "\"threshold\": %.6g, \"folds\": %d, \"real_pieces\": %zu, \"real_pass_frac\": %.6f, "
                          "\"discriminator_accuracy\": %.6f, \"mean_p_real\": %.6f, \"tokens_per_sample\": %d, "
                          "\"temperature\": %g, \"top_k\": %d, \"top_p\": %g, \"seed\": %llu}\n",
                          o.run, res.n, res.kept, res.kept_frac, o.threshold, o.folds, n_pieces, res.real_pass_frac,
                          res.accuracy, res.syn_mean_p, o.n, o.temperature, o.top_k, o.top_p,
                          (unsigned long long)o.seed);
        st = fg_file_tx_commit(&tx);
    }
    if (st == FG_OK && o.scores[0] && (st = fg_file_tx_open(&tx, o.scores, 0)) == FG_OK) {
        for (int k = 0; k < g.n_samples; k++) {
            fg_file_tx_printf(&tx, "{\"sample\": %d, \"p_real\": %.6f, \"kept\": %s, \"text\": ", k, (double)p[k],
                              keep[k] ? "true" : "false");
            json_str(&tx, texts[k], lens[k]);
            fg_file_tx_printf(&tx, "}\n");
        }
        st = fg_file_tx_commit(&tx);
    }
    if (st != FG_OK) {
        code = fg_cli_fail("synth", st, NULL);
        goto out;
    }
    printf("synth: %d samples of up to %d tokens in %.2f s (%d threads)\n", g.n_samples, g.n_tokens, gen_s,
           o.threads ? o.threads : omp_get_max_threads());
    printf("synth: discriminator (%d-fold, %zu real pieces of ~%zu bytes): accuracy %.3f, real text passing %.3f\n",
           o.folds, n_pieces, target, res.accuracy, res.real_pass_frac);
    printf("synth: kept %zu of %zu samples (kept fraction %.4f, P(real) >= %g) -> %s (+ %s)\n", res.kept, res.n,
           res.kept_frac, o.threshold, o.out, path);
out:
    fg_free(p);
    fg_free(keep);
    fg_free(pieces);
    fg_free(plens);
    fg_free(real);
    fg_synth_free_texts(texts, lens, texts ? (size_t)o.n_samples : 0);
    fg_tok_delete(tok);
    return code;
}
