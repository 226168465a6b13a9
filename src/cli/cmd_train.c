/* cmd_train.c: `frugal train`: builds the config from defaults, --config FILE.json
 * and flags, runs it, and turns a failure into a message and an exit code. The
 * work (and the cost summary) is fg_train_run's. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frugal/train.h"

static void train_usage(FILE *f)
{
    fprintf(f, "usage: frugal train [--config FILE.json] [--data FILE.txt | --train-shards A.bin,... [--val-shards "
               "..]] [--out DIR] [options]\n");
    fg_train_config_print_help(f);
}

int fg_cmd_train(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            train_usage(stdout);
            return 0;
        }
    fg_train_config c;
    fg_train_config_default(&c);
    fg_status st = fg_train_config_from_args(&c, argc, argv, NULL);
    if (st != FG_OK)
        return fg_cli_fail("train", st, "frugal train --help lists the options");
    fg_train_result r;
    st = fg_train_run(&c, stdout, &r);
    if (st != FG_OK)
        return fg_cli_fail("train", st, NULL);
    return 0;
}
