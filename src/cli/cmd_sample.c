/* cmd_sample.c: `frugal sample`: loads a run's config, tokenizer and final (or given)
 * checkpoint and prints samples from fg_model_generate (KV cache, temperature,
 * top-k, top-p). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "frugal/kernels.h"
#include "frugal/tok.h"
#include "frugal/train.h"

typedef struct sample_opts {
    char run[4096], ckpt[4096], prompt[8192], tokenizer[4096], kernels[32];
    char int8_file[4096], eval[4096];
    int n, num_samples, top_k, threads, int8, eval_tokens, speculative, prefill;
    double temperature, top_p;
    uint64_t seed;
} sample_opts;

#define SF(field) FG_OPT_FIELD(sample_opts, field)
static const fg_opt sample_table[] = {
    {"run", FG_OPT_STR, SF(run), .help = "the --out directory of a finished `frugal train` (required)"},
    {"ckpt", FG_OPT_STR, SF(ckpt), .help = "a checkpoint directory (default RUN/final)"},
    {"prompt", FG_OPT_STR, SF(prompt), .help = "text to continue (default: start of a document)"},
    {"n", FG_OPT_INT, SF(n), .min = 1, .max = 1000000, .help = "tokens to generate per sample"},
    {"num_samples", FG_OPT_INT, SF(num_samples), .min = 1, .max = 1000, .help = "samples"},
    {"temperature", FG_OPT_DOUBLE, SF(temperature), .min = 0, .max = 100, .help = "0 is greedy"},
    {"top_k", FG_OPT_INT, SF(top_k), .min = 0, .max = 1e9, .help = "0: no top-k cut"},
    {"top_p", FG_OPT_DOUBLE, SF(top_p), .min = 1e-6, .max = 1, .help = "nucleus mass"},
    {"seed", FG_OPT_U64, SF(seed), .help = "sampling RNG seed"},
    {"tokenizer", FG_OPT_STR, SF(tokenizer), .help = "tokenizer (default: the run's)"},
    {"kernels", FG_OPT_STR, SF(kernels), .help = "auto, ref or a variant (`frugal hw` lists them)"},
    {"threads", FG_OPT_INT, SF(threads), .min = 0, .max = 4096, .help = "0: all cores"},
    {"int8", FG_OPT_BOOL, SF(int8),
     .help = "decode with int8 GEMMs (weights from `frugal convert --quantize int8`, activations per token)"},
    {"int8_file", FG_OPT_STR, SF(int8_file), .help = "int8 weights (default RUN/model.int8; implies --int8)"},
    {"eval", FG_OPT_STR, SF(eval),
     .help = "instead of sampling: mean loss and perplexity of the model on this text file (windows of seq_len)"},
    {"eval_tokens", FG_OPT_INT, SF(eval_tokens), .min = 0, .max = 1 << 30,
     .help = "with --eval: at most this many tokens (0: all)"},
    {"prefill", FG_OPT_BOOL, SF(prefill),
     .help = "with --eval: time prompt processing instead of the loss (each window through the KV-cache prefill, "
             "only the last position's logits, as llama.cpp's prompt evaluation)"},
    {"speculative", FG_OPT_BOOL, SF(speculative),
     .help = "greedy speculative decoding, the run's first MTP module drafting (mtp_depth >= 1, --temperature 0): "
             "prints acceptance rate and speed-up over plain greedy decoding (one context window per sample)"},
};

/* --speculative: per sample, plain greedy decoding and the speculative one on the same
 * prompt (one window), timed; prints the speculative text, the acceptance rate, both
 * rates and whether the tokens agree. */
static int sample_speculative(fg_model *m, fg_tokenizer *tok, const int32_t *prompt, int n_prompt, int n_want,
                              int n_samples, int skip, int eot)
{
    int maxT = fg_model_get_config(m)->max_seq_len;
    if (n_prompt >= maxT)
        return fg_cli_fail(
            "sample",
            fg_error(FG_ERR_INVALID, "--speculative: prompt of %d tokens fills the context %d", n_prompt, maxT), NULL);
    int want = n_want < maxT - n_prompt ? n_want : maxT - n_prompt;
    int32_t *a = fg_malloc((size_t)maxT * sizeof(int32_t)), *b = fg_malloc((size_t)maxT * sizeof(int32_t));
    fg_sampler s = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    fg_rng_seed(&s.rng, 1);
    double t_plain = 0, t_spec = 0;
    long tok_plain = 0, tok_spec = 0, drafted = 0, accepted = 0, differ = 0;
    int code = 0;
    for (int k = 0; a && b && k < n_samples && code == 0; k++) {
        double t0 = fg_time_sec();
        int na = fg_model_generate(m, prompt, n_prompt, want, eot, &s, a);
        double t1 = fg_time_sec();
        fg_spec_stats st;
        int nb = fg_model_generate_spec(m, prompt, n_prompt, want, eot, b, &st);
        double t2 = fg_time_sec();
        if (na < 0 || nb < 0) {
            code = fg_cli_fail("sample", (fg_status)(na < 0 ? na : nb), NULL);
            break;
        }
        t_plain += t1 - t0, t_spec += t2 - t1;
        tok_plain += na - n_prompt, tok_spec += nb - n_prompt;
        drafted += st.drafted, accepted += st.accepted;
        int i = 0;
        while (i < na && i < nb && a[i] == b[i])
            i++;
        differ += i < na || i < nb;
        char *text = NULL;
        size_t len = 0;
        if (fg_tok_decode(tok, (const uint32_t *)(const void *)(b + skip), (size_t)(nb - skip), &text, &len) != FG_OK) {
            code = fg_cli_fail("sample", fg_last_status(), NULL);
            break;
        }
        printf("--- sample %d (%d tokens, greedy, speculative) ---\n%s\n", k + 1, nb - skip, text);
        if (i < na || i < nb)
            fprintf(stderr,
                    "sample: speculative and plain greedy tokens differ from token %d (fp32 rounding of the "
                    "two-row pass on a near tie)\n",
                    i);
        fg_free(text);
    }
    if (code == 0) {
        double rp = t_plain > 0 ? tok_plain / t_plain : 0, rs = t_spec > 0 ? tok_spec / t_spec : 0;
        fprintf(stderr,
                "sample: speculative decoding (MTP module 1 drafts): %ld of %ld drafts accepted (%.1f%%), %.2f tokens "
                "per main-model pass; %.1f tokens/s vs plain greedy %.1f tokens/s: speed-up %.2fx; %ld of %d samples "
                "differ\n",
                accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0,
                drafted ? (double)tok_spec / (double)drafted : 1.0, rs, rp, rp > 0 ? rs / rp : 0.0, differ, n_samples);
    }
    fg_free(a);
    fg_free(b);
    return code;
}

/* Mean next-token loss over the text in windows of T tokens (non-overlapping, each
 * predicting its T next tokens), weighted by tokens: the validation loss of the run on
 * that text, through every forward path of the model (int8 layers included). */
static int eval_text(fg_model *m, fg_tokenizer *tok, const char *path, int max_tokens, int T, const char *what,
                     int prefill)
{
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    uint32_t *ids = NULL;
    fg_status st = fg_read_file(path, (size_t)1 << 32, &text, &len);
    if (st == FG_OK)
        st = fg_tok_encode(tok, text, len, &ids, &n_ids);
    fg_free(text);
    if (st != FG_OK)
        return fg_cli_fail("sample", st, NULL);
    if (max_tokens > 0 && n_ids > (size_t)max_tokens)
        n_ids = (size_t)max_tokens;
    double sum = 0.0;
    size_t counted = 0;
    int32_t *in = fg_malloc(2 * (size_t)T * sizeof(int32_t)), *tg = in ? in + T : NULL;
    double t0 = fg_time_sec();
    for (size_t i = 0; in && i + 1 < n_ids; i += (size_t)T) {
        int t = (int)(n_ids - 1 - i < (size_t)T ? n_ids - 1 - i : (size_t)T);
        for (int j = 0; j < t; j++) {
            in[j] = (int32_t)ids[i + j];
            tg[j] = (int32_t)ids[i + j + 1];
        }
        float loss = 0.0f;
        if (prefill) { /* n_new 0: the prompt's pass alone, its last logits computed */
            fg_sampler s = {.temperature = 0.0f, .top_p = 1.0f};
            int r = fg_model_generate(m, in, t, 0, -1, &s, tg);
            st = r < 0 ? (fg_status)r : FG_OK;
        } else {
            st = fg_model_forward(m, in, tg, 1, t, &loss);
        }
        if (st != FG_OK)
            break;
        sum += (double)loss * t;
        counted += (size_t)t;
    }
    double secs = fg_time_sec() - t0;
    fg_free(in);
    fg_free(ids);
    if (st != FG_OK || !counted)
        return fg_cli_fail("sample", st != FG_OK ? st : fg_error(FG_ERR_INVALID, "%s: fewer than 2 tokens", path),
                           NULL);
    if (!prefill)
        printf("eval: %s: %zu tokens, loss %.5f, perplexity %.4f (%s)\n", path, counted, sum / (double)counted,
               exp(sum / (double)counted), what);
    /* the forward over T-token windows is prompt processing: its rate, for int8 vs fp32 */
    printf("eval: %.1f tokens/s (%zu tokens in %.3f s, windows of %d%s)\n", secs > 0 ? (double)counted / secs : 0.0,
           counted, secs, T, prefill ? ", prefill: last position's logits only" : "");
    return 0;
}
#undef SF

int fg_cmd_sample(int argc, char **argv)
{
    sample_opts o = {.n = 200, .num_samples = 1, .top_k = 40, .temperature = 0.8, .top_p = 0.95, .seed = 1}, def = o;
    fg_opt_table t = {sample_table, FG_OPT_COUNT(sample_table), &o};
    const void *defs[] = {&def};
    fg_cli_spec spec = {"sample", "usage: frugal sample --run DIR [options]\n", &t, defs, 1, NULL};
    fg_opt_args a = {0};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!o.run[0])
        return fg_cli_fail("sample", fg_error(FG_ERR_INVALID, "--run DIR is required"), "frugal sample --help");
    fg_status st = fg_kernels_configure(o.kernels[0] ? o.kernels : NULL, NULL, o.threads);
    if (st != FG_OK)
        return fg_cli_fail("sample", st, "valid --kernels modes are listed by `frugal hw`");
    const char *run = o.run, *ckpt = o.ckpt, *prompt = o.prompt, *tok_path = o.tokenizer[0] ? o.tokenizer : NULL;
    double n_new = o.n, n_samples = o.num_samples, temp = o.temperature, top_k = o.top_k, top_p = o.top_p;
    uint64_t seed = o.seed;
    fg_train_config c;
    fg_model *m = NULL;
    st = fg_train_load_run(run, ckpt, 1, 0, &c, &m);
    if (st != FG_OK)
        return fg_cli_fail("sample", st, "--run takes the --out directory of a finished `frugal train`");
    if (o.int8 || o.int8_file[0]) {
        char path[4096 + 16];
        snprintf(path, sizeof path, "%s", o.int8_file);
        if (!o.int8_file[0])
            snprintf(path, sizeof path, "%s/model.int8", run);
        st = fg_model_int8_load(m, path);
        if (st != FG_OK) {
            fg_model_delete(m);
            return fg_cli_fail("sample", st, "write the file with `frugal convert --quantize int8 --run RUN`");
        }
        fprintf(stderr, "sample: int8 weights from %s (gemm_u8s8 %s)\n", path, fg_kernels_variant("gemm_u8s8"));
    }
    int code = 0;
    uint32_t *ids = NULL;
    int32_t *buf = NULL, *all = NULL;
    fg_tokenizer *tok = fg_tok_load(tok_path ? tok_path : c.tokenizer);
    if (!tok) {
        code = fg_cli_fail("sample", fg_last_status(), "give the run's tokenizer with --tokenizer PATH");
        goto out;
    }
    if (o.eval[0]) {
        int T = c.seq_len > 0 && c.seq_len < fg_model_get_config(m)->max_seq_len ? c.seq_len
                                                                                 : fg_model_get_config(m)->max_seq_len;
        code = eval_text(m, tok, o.eval, o.eval_tokens, T, o.int8 || o.int8_file[0] ? "int8" : "fp32", o.prefill);
        goto out;
    }
    size_t n_ids = 0;
    st = fg_tok_encode(tok, prompt, strlen(prompt), &ids, &n_ids);
    if (st != FG_OK) {
        code = fg_cli_fail("sample", st, NULL);
        goto out;
    }
    int maxT = fg_model_get_config(m)->max_seq_len;
    int eot = fg_tok_eot(tok);
    int32_t start = eot;
    if (start < 0) { /* no <|endoftext|>: start from the tokenizer's id of a line break */
        uint32_t *nl = NULL;
        size_t n_nl = 0;
        start = fg_tok_encode(tok, "\n", 1, &nl, &n_nl) == FG_OK && n_nl ? (int32_t)nl[0] : 0;
        fg_free(nl);
    }
    int n_prompt = n_ids ? (int)n_ids : 1, n_want = (int)n_new;
    if (o.speculative) {
        if (temp != 0.0) {
            code = fg_cli_fail(
                "sample", fg_error(FG_ERR_INVALID, "--speculative verifies greedily: temperature %g must be 0", temp),
                "add --temperature 0");
            goto out;
        }
        if (fg_model_get_config(m)->mtp_depth < 1) {
            code = fg_cli_fail("sample", fg_error(FG_ERR_INVALID, "--speculative: the run has no MTP module"),
                               "train with --mtp-depth 1 (or more)");
            goto out;
        }
        int32_t *p = fg_malloc((size_t)n_prompt * sizeof(int32_t));
        for (int i = 0; p && i < n_prompt; i++)
            p[i] = n_ids ? (int32_t)ids[i] : start;
        code = p ? sample_speculative(m, tok, p, n_prompt, n_want, (int)n_samples, n_ids ? 0 : 1, eot)
                 : fg_cli_fail("sample", FG_ERR_NOMEM, NULL);
        fg_free(p);
        goto out;
    }
    /* all: prompt + generated tokens; buf: one fg_model_generate window */
    all = fg_malloc((size_t)(n_prompt + n_want) * sizeof(int32_t));
    buf = fg_malloc((size_t)maxT * sizeof(int32_t));
    if (!all || !buf) {
        code = fg_cli_fail("sample", FG_ERR_NOMEM, NULL);
        goto out;
    }
    fg_sampler s = {.temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p};
    fg_rng_seed(&s.rng, (uint64_t)seed);
    double gen_secs = 0.0;
    long gen_tokens = 0;
    for (int k = 0; k < (int)n_samples; k++) {
        for (int i = 0; i < n_prompt; i++)
            all[i] = n_ids ? (int32_t)ids[i] : start;
        int total = n_prompt;
        /* Longer than the context: slide a window, re-reading the last maxT/2 tokens
         * as the prompt of the next call (its KV cache is rebuilt each time). */
        while (total - n_prompt < n_want) {
            int ctx = total <= maxT / 2 ? total : maxT / 2;
            int want = n_want - (total - n_prompt);
            if (want > maxT - ctx)
                want = maxT - ctx;
            double g0 = fg_time_sec();
            int n = fg_model_generate(m, all + total - ctx, ctx, want, eot, &s, buf);
            gen_secs += fg_time_sec() - g0;
            if (n < 0) {
                code = fg_cli_fail("sample", (fg_status)n, NULL);
                goto out;
            }
            memcpy(all + total, buf + ctx, (size_t)(n - ctx) * sizeof(int32_t));
            total += n - ctx;
            gen_tokens += n - ctx;
            if (n - ctx < want || (total > 0 && all[total - 1] == eot))
                break; /* stopped at <|endoftext|> */
        }
        int from = n_ids ? 0 : 1; /* the start token is not part of the text */
        char *text = NULL;
        size_t len = 0;
        st = fg_tok_decode(tok, (const uint32_t *)(const void *)(all + from), (size_t)(total - from), &text, &len);
        if (st != FG_OK) {
            code = fg_cli_fail("sample", st, NULL);
            goto out;
        }
        printf("--- sample %d (%d tokens, temperature %g, top-k %d, top-p %g) ---\n%s\n", k + 1, total - from, temp,
               (int)top_k, top_p, text);
        fg_free(text);
    }
    /* decode rate: generated tokens over the time in fg_model_generate (its prompt
     * prefill included, detokenising and printing excluded) */
    fprintf(stderr, "sample: %ld tokens generated in %.3f s, %.1f tokens/s (%s)\n", gen_tokens, gen_secs,
            gen_secs > 0 ? (double)gen_tokens / gen_secs : 0.0, o.int8 || o.int8_file[0] ? "int8" : "fp32");
    fprintf(stderr, "sample: kv cache %zu bytes per token\n", fg_model_kv_bytes_per_token(m));
out:
    fg_free(all);
    fg_free(buf);
    fg_free(ids);
    fg_tok_delete(tok);
    fg_model_delete(m);
    return code;
}
