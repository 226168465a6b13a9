/* cmd_bench.c: `frugal bench`: training-step speed of a config (flags or --config)
 * next to sgemm measured in the same run; prints key=value lines for scripts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "frugal/train.h"

typedef struct bench_opts {
    int iters, warmup_iters;
} bench_opts;

static const fg_opt bench_table[] = {
    {"iters", FG_OPT_INT, FG_OPT_FIELD(bench_opts, iters), .min = 1, .max = 100000, .help = "timed training steps"},
    {"warmup_iters", FG_OPT_INT, FG_OPT_FIELD(bench_opts, warmup_iters), .min = 0, .max = 100000,
     .help = "untimed steps first"},
};

static const char *const bench_extra[] = {"iters", "warmup-iters", "warmup_iters", NULL};

/* Bench's own options go through its table; everything else (model, batch, --kernels,
 * --threads, --config) is the training config's, parsed by fg_train_config_from_args,
 * which leaves the names in bench_extra to us. */
static fg_status take_own(bench_opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            continue;
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        char key[32];
        if (n >= sizeof key)
            continue;
        memcpy(key, name, n);
        key[n] = 0;
        const fg_opt *row = fg_opts_find(bench_table, FG_OPT_COUNT(bench_table), key);
        if (!row)
            continue;
        char where[40];
        snprintf(where, sizeof where, "--%s", key);
        if (!eq && i + 1 >= argc)
            return fg_error(FG_ERR_INVALID, "%s: missing value", where);
        fg_status st = fg_opt_set(row, o, eq ? eq + 1 : argv[++i], where);
        if (st != FG_OK)
            return st;
    }
    return FG_OK;
}

static void bench_usage(FILE *f, const bench_opts *def)
{
    fprintf(f, "usage: frugal bench [--config FILE.json] [options of frugal train] [--iters N] [--warmup-iters N]\n"
               "  times N training steps on random tokens and sgemm in the same run\n"
               "bench options:\n");
    fg_opts_print_help(f, bench_table, FG_OPT_COUNT(bench_table), def);
    fprintf(f, "training options (model, batch, --kernels, --threads; as frugal train):\n");
    fg_train_config_print_help(f);
}

int fg_cmd_bench(int argc, char **argv)
{
    bench_opts o = {.iters = 5, .warmup_iters = 1}, def = o;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            bench_usage(stdout, &def);
            return 0;
        }
    }
    fg_status st = take_own(&o, argc, argv);
    if (st != FG_OK)
        return fg_cli_fail("bench", st, "frugal bench --help lists the options");
    fg_train_config c;
    fg_train_config_default(&c);
    st = fg_train_config_from_args(&c, argc, argv, bench_extra);
    if (st != FG_OK)
        return fg_cli_fail("bench", st, "frugal bench --help lists the options");
    fg_train_bench_result r;
    st = fg_train_bench(&c, o.iters, o.warmup_iters, stdout, &r);
    if (st != FG_OK)
        return fg_cli_fail("bench", st, NULL);
    return 0;
}
