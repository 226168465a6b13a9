/* bench_tok.c: tokenizer throughput: encode MB/s on one thread and on all threads, and
 * training time for a vocabulary, on the text files given (one document each).
 * bench/bench_tok.sh runs it next to tiktoken and Hugging Face tokenizers on the same
 * files and prints the ratios. Timings are the best of --reps runs.
 *
 *   bench_tok --tokenizer DIR|tokenizer.json [--reps 3] [--train-vocab 32768 --train FILE...] FILE...
 * Prints one line per measurement: "frugal <what> <seconds> <MB/s> <tokens>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/tok.h"

static char *slurp(const char *path, size_t *len)
{
    char *p;
    return fg_read_file(path, 0, &p, len) == FG_OK ? p : NULL;
}

int main(int argc, char **argv)
{
    const char *tokp = NULL, *save = NULL;
    int reps = 3, train_vocab = 32768;
    const char *files[4096], *train_files[4096];
    int nf = 0, ntf = 0, in_train = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc)
            tokp = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--train-vocab") && i + 1 < argc)
            train_vocab = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--save-json") && i + 1 < argc)
            save = argv[++i];
        else if (!strcmp(argv[i], "--train"))
            in_train = 1;
        else if (!strcmp(argv[i], "--encode"))
            in_train = 0;
        else if (in_train && ntf < 4096)
            train_files[ntf++] = argv[i];
        else if (nf < 4096)
            files[nf++] = argv[i];
    }
    if (!tokp) {
        fprintf(stderr, "usage: bench_tok --tokenizer T [--reps N] [--save-json out.json] FILE... [--train FILE...]\n");
        return 2;
    }
    fg_tokenizer *tok = fg_tok_load(tokp);
    if (!tok) {
        fprintf(stderr, "bench_tok: %s\n", fg_last_error());
        return 1;
    }
    if (save && fg_tok_save(tok, save) != FG_OK) {
        fprintf(stderr, "bench_tok: %s\n", fg_last_error());
        return 1;
    }
    const char **docs = calloc((size_t)nf + 1, sizeof(char *));
    size_t *lens = calloc((size_t)nf + 1, sizeof(size_t)), total = 0;
    for (int i = 0; i < nf; i++) {
        docs[i] = slurp(files[i], &lens[i]);
        if (!docs[i]) {
            fprintf(stderr, "bench_tok: cannot read %s\n", files[i]);
            return 1;
        }
        total += lens[i];
    }
    if (nf > 0) {
        double best1 = 1e30, bestn = 1e30;
        size_t tokens = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = fg_time_sec();
            tokens = 0;
            for (int i = 0; i < nf; i++) {
                uint32_t *ids;
                size_t n;
                if (fg_tok_encode(tok, docs[i], lens[i], &ids, &n) != FG_OK)
                    return 1;
                tokens += n;
                fg_free(ids);
            }
            double t1 = fg_time_sec();
            if (t1 - t0 < best1)
                best1 = t1 - t0;
            uint32_t *ids;
            size_t n;
            t0 = fg_time_sec();
            if (fg_tok_encode_docs(tok, docs, lens, (size_t)nf, false, 0, NULL, &ids, &n) != FG_OK)
                return 1;
            t1 = fg_time_sec();
            fg_free(ids);
            if (t1 - t0 < bestn)
                bestn = t1 - t0;
        }
        printf("frugal encode_1thread %.4f %.2f %zu\n", best1, total / best1 / 1e6, tokens);
        printf("frugal encode_allthreads %.4f %.2f %zu\n", bestn, total / bestn / 1e6, tokens);
        printf("frugal bytes %zu docs %d threads %d\n", total, nf, fg_threads_get());
    }
    if (ntf > 0) {
        const char **td = calloc((size_t)ntf, sizeof(char *));
        size_t *tl = calloc((size_t)ntf, sizeof(size_t)), ttotal = 0;
        for (int i = 0; i < ntf; i++) {
            td[i] = slurp(train_files[i], &tl[i]);
            if (!td[i])
                return 1;
            ttotal += tl[i];
        }
        fg_tok_train_opts o;
        fg_tok_train_opts_default(&o);
        o.vocab_size = train_vocab;
        fg_tokenizer *tr = NULL;
        double t0 = fg_time_sec();
        if (fg_tok_train(&o, td, tl, (size_t)ntf, &tr) != FG_OK) {
            fprintf(stderr, "bench_tok: %s\n", fg_last_error());
            return 1;
        }
        double t1 = fg_time_sec();
        printf("frugal train_%d %.4f %.2f %d\n", train_vocab, t1 - t0, ttotal / (t1 - t0) / 1e6, fg_tok_n_merges(tr));
        fg_tok_delete(tr);
        for (int i = 0; i < ntf; i++)
            fg_free((void *)td[i]);
        free(td);
        free(tl);
    }
    for (int i = 0; i < nf; i++)
        fg_free((void *)docs[i]);
    free(docs);
    free(lens);
    fg_tok_delete(tok);
    return 0;
}
