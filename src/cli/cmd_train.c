/* cmd_train.c: placeholder until the trainer work lands; prints that the command is
 * not available yet and exits 2. Replaced by the real subcommand. */
#include <stdio.h>

#include "cli.h"

int fg_cmd_train(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "frugal %s: not implemented yet\n", argv[0]);
    return 2;
}

int fg_cmd_sample(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "frugal %s: not implemented yet\n", argv[0]);
    return 2;
}

int fg_cmd_bench(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "frugal %s: not implemented yet\n", argv[0]);
    return 2;
}

int fg_cmd_convert(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "frugal %s: not implemented yet\n", argv[0]);
    return 2;
}
