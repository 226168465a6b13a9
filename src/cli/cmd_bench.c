/* cmd_bench.c: `frugal bench`: training-step speed of a config (flags or --config)
 * next to sgemm measured in the same run; prints key=value lines for scripts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "frugal/train.h"

int fg_cmd_bench(int argc, char **argv)
{
    int iters = 5, warmup = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: frugal bench [--config FILE.json] [model/batch options of frugal train] [--iters N] "
                   "[--warmup-iters N]\n  times N training steps on random tokens and sgemm in the same run\n");
            return 0;
        }
        if (i + 1 < argc && (!strcmp(argv[i], "--iters") || !strcmp(argv[i], "--warmup-iters"))) {
            char *end = NULL;
            long v = strtol(argv[i + 1], &end, 10);
            if (end == argv[i + 1] || *end || v < 0 || v > 100000 || (v == 0 && !strcmp(argv[i], "--iters"))) {
                fprintf(stderr, "frugal bench: error: %s: expected a count, got '%s'\n", argv[i], argv[i + 1]);
                return 2;
            }
            if (!strcmp(argv[i], "--iters"))
                iters = (int)v;
            else
                warmup = (int)v;
            i++;
        }
    }
    static const char *const extra[] = {"iters", "warmup-iters", NULL};
    fg_train_config c;
    fg_train_config_default(&c);
    fg_status st = fg_train_config_from_args(&c, argc, argv, extra);
    if (st != FG_OK)
        return fg_cli_fail("bench", st, "frugal train --help lists the options");
    fg_train_bench_result r;
    st = fg_train_bench(&c, iters, warmup, stdout, &r);
    if (st != FG_OK)
        return fg_cli_fail("bench", st, NULL);
    return 0;
}
