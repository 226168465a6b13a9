/* main.c: `frugal <subcommand> [args]` dispatch, global flags and exit codes.
 * The only place (with the cmd_*.c files) that exits; the library returns statuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmds[] = {
    {"train", fg_cmd_train, "train a model (flags or --config FILE.json)"},
    {"sample", fg_cmd_sample, "generate text from a checkpoint"},
    {"synth", fg_cmd_synth, "sample a run, keep what a discriminator takes for real text"},
    {"plot", fg_cmd_plot, "plot runs' metrics (loss, LR, tokens/s, ...) to SVG and PNG"},
    {"tokenize", fg_cmd_tokenize, "train | encode | decode a byte-level BPE tokenizer"},
    {"clean", fg_cmd_clean, "clean, filter and deduplicate documents"},
    {"ckpt", fg_cmd_ckpt, "info | verify | diff checkpoints"},
    {"convert", fg_cmd_convert, "import/export llm.c GPT-2 checkpoints"},
    {"bench", fg_cmd_bench, "quick kernel and training-step benchmarks"},
    {"hw", fg_cmd_hw, "CPU features and the kernel variant picked for each op"},
};

int fg_cli_fail(const char *cmd, fg_status st, const char *hint)
{
    const char *msg = fg_last_error();
    fprintf(stderr, "frugal %s: error: %s\n", cmd, msg[0] ? msg : fg_status_str(st));
    if (hint)
        fprintf(stderr, "hint: %s\n", hint);
    return st == FG_ERR_INVALID ? 2 : 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: frugal <command> [options]   (frugal <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-9s %s\n", cmds[i].name, cmds[i].help);
}

/* OpenBLAS's pthreads build (the one linked, docs/KERNELS.md) starts cores - 1
 * spinning threads in its library constructor, before main, sized by
 * OPENBLAS_NUM_THREADS; Frugal splits GEMMs over its own OpenMP threads, and
 * blas_threading=blas grows the pool when asked (openblas_set_num_threads adds
 * threads). So, unless the user sized the pool, the process runs itself again once
 * with OPENBLAS_NUM_THREADS=1: no BLAS thread is started that the run will not use.
 * If the exec fails (no /proc), the run goes on with the pool. */
static void no_blas_pool_at_load(char **argv)
{
    if (getenv("OPENBLAS_NUM_THREADS"))
        return;
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv)
{
    no_blas_pool_at_load(argv);
    const char *lvl = getenv("FG_LOG_LEVEL");
    if (lvl && *lvl) {
        char *end = NULL;
        long v = strtol(lvl, &end, 10);
        if (end == lvl || *end || v < 0 || v > 3) {
            fprintf(stderr, "frugal: error: FG_LOG_LEVEL: expected 0 (errors) .. 3 (debug), got '%s'\n", lvl);
            return 2;
        }
        fg_log_level = (int)v;
    }
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "frugal: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
