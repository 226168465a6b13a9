/* cmd_sample.c: `frugal sample`: loads a run's config, tokenizer and final (or given)
 * checkpoint and prints samples from fg_model_generate (KV cache, temperature,
 * top-k, top-p). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "frugal/tok.h"
#include "frugal/train.h"

static void sample_usage(FILE *f)
{
    fprintf(f, "usage: frugal sample --run DIR [--ckpt CKPT_DIR] [--prompt TEXT] [--n TOKENS] [--num-samples K]\n"
               "                     [--temperature 0.8] [--top-k 40] [--top-p 0.95] [--seed 1] [--tokenizer PATH]\n"
               "  --ckpt: a checkpoint directory (default DIR/final); --temperature 0 is greedy\n");
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end = NULL;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "frugal sample: error: %s: expected a number in [%g, %g], got '%s'\n", flag, lo, hi, v);
        return 2;
    }
    *out = x;
    return 0;
}

int fg_cmd_sample(int argc, char **argv)
{
    const char *run = NULL, *ckpt = "", *prompt = "", *tok_path = NULL;
    double n_new = 200, n_samples = 1, temp = 0.8, top_k = 40, top_p = 0.95, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            sample_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            sample_usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(a, "--run"))
            run = v;
        else if (!strcmp(a, "--ckpt"))
            ckpt = v;
        else if (!strcmp(a, "--prompt"))
            prompt = v;
        else if (!strcmp(a, "--tokenizer"))
            tok_path = v;
        else if (!strcmp(a, "--n"))
            bad = parse_num(a, v, 1, 1e6, &n_new);
        else if (!strcmp(a, "--num-samples"))
            bad = parse_num(a, v, 1, 1000, &n_samples);
        else if (!strcmp(a, "--temperature"))
            bad = parse_num(a, v, 0, 100, &temp);
        else if (!strcmp(a, "--top-k"))
            bad = parse_num(a, v, 0, 1e9, &top_k);
        else if (!strcmp(a, "--top-p"))
            bad = parse_num(a, v, 1e-6, 1, &top_p);
        else if (!strcmp(a, "--seed"))
            bad = parse_num(a, v, 0, 9e15, &seed);
        else {
            fprintf(stderr, "frugal sample: error: unknown option '%s'\n", a);
            sample_usage(stderr);
            return 2;
        }
        if (bad)
            return bad;
    }
    if (!run) {
        fprintf(stderr, "frugal sample: error: --run DIR is required\n");
        sample_usage(stderr);
        return 2;
    }
    fg_train_config c;
    fg_model *m = NULL;
    fg_status st = fg_train_load_run(run, ckpt, 1, 0, &c, &m);
    if (st != FG_OK)
        return fg_cli_fail("sample", st, "--run takes the --out directory of a finished `frugal train`");
    int code = 0;
    uint32_t *ids = NULL;
    int32_t *buf = NULL, *all = NULL;
    fg_tokenizer *tok = fg_tok_load(tok_path ? tok_path : c.tokenizer);
    if (!tok) {
        code = fg_cli_fail("sample", fg_last_status(), "give the run's tokenizer with --tokenizer PATH");
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
    /* all: prompt + generated tokens; buf: one fg_model_generate window */
    all = fg_malloc((size_t)(n_prompt + n_want) * sizeof(int32_t));
    buf = fg_malloc((size_t)maxT * sizeof(int32_t));
    if (!all || !buf) {
        code = fg_cli_fail("sample", FG_ERR_NOMEM, NULL);
        goto out;
    }
    fg_sampler s = {.temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p};
    fg_rng_seed(&s.rng, (uint64_t)seed);
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
            int n = fg_model_generate(m, all + total - ctx, ctx, want, eot, &s, buf);
            if (n < 0) {
                code = fg_cli_fail("sample", (fg_status)n, NULL);
                goto out;
            }
            memcpy(all + total, buf + ctx, (size_t)(n - ctx) * sizeof(int32_t));
            total += n - ctx;
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
out:
    fg_free(all);
    fg_free(buf);
    fg_free(ids);
    fg_tok_delete(tok);
    fg_model_delete(m);
    return code;
}
