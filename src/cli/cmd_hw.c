/* cmd_hw.c: `frugal hw` — CPU features, AMX permission and the kernel variant
 * chosen for each op under the given --kernels mode. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frugal/hw.h"
#include "frugal/kernels.h"

int fg_cmd_hw(int argc, char **argv)
{
    const char *mode = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--kernels=", 10))
            mode = argv[i] + 10;
        else if (!strcmp(argv[i], "--kernels") && i + 1 < argc)
            mode = argv[++i];
        else {
            fprintf(stderr, "usage: frugal hw [--kernels=auto|ref|...]\n");
            return 2;
        }
    }
    /* configure first: a bad FG_HW_DISABLE / FG_KERNELS / FG_BLAS_THREADING fails before any output */
    fg_status st = fg_kernels_init(mode);
    if (st != FG_OK)
        return fg_cli_fail("hw", st, "valid --kernels modes are listed by `frugal hw`");
    fg_hw_print(stdout);
    printf("threads:    %d\nkernels:\n", fg_threads_get());
    fg_kernels_print(stdout);
    return 0;
}
