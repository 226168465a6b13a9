/* cmd_clean.c: placeholder until the data-cleaning work lands; prints that the command is
 * not available yet and exits 2. Replaced by the real subcommand. */
#include <stdio.h>

#include "cli.h"

int fg_cmd_clean(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "frugal %s: not implemented yet\n", argv[0]);
    return 2;
}
