/* cmd_hw.c: `frugal hw` — CPU features, AMX permission, the unit each training
 * precision's GEMMs run on and the kernel variant chosen for each op under the given
 * --kernels mode (and FG_HW_DISABLE). */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frugal/hw.h"
#include "frugal/kernels.h"

typedef struct hw_opts {
    char kernels[32], blas_threading[16];
    int threads;
} hw_opts;

static const fg_opt hw_table[] = {
    {"kernels", FG_OPT_STR, FG_OPT_FIELD(hw_opts, kernels), .help = "auto, ref or a variant (avx2, avx512, blas...)"},
    {"blas_threading", FG_OPT_STR, FG_OPT_FIELD(hw_opts, blas_threading),
     .help = "omp or blas (default $FG_BLAS_THREADING, else omp)"},
    {"threads", FG_OPT_INT, FG_OPT_FIELD(hw_opts, threads), .min = 0, .max = 4096, .help = "0: all cores"},
};

/* Threads of this process (/proc/self/task entries), -1 when unknown. */
static int process_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    for (const struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int fg_cmd_hw(int argc, char **argv)
{
    /* before any kernel or parallel region: a BLAS pool started at load shows here */
    int threads_at_start = process_threads();
    hw_opts o = {.kernels = ""}, def = o;
    fg_opt_table t = {hw_table, FG_OPT_COUNT(hw_table), &o};
    const void *defs[] = {&def};
    fg_cli_spec spec = {"hw", "usage: frugal hw [--kernels auto|ref|...] [--blas-threading omp|blas] [--threads N]\n",
                        &t,   defs,
                        1,    NULL};
    fg_opt_args a = {0};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    /* configure first: a bad FG_HW_DISABLE / FG_KERNELS / FG_BLAS_THREADING fails before any output */
    fg_status st =
        fg_kernels_configure(o.kernels[0] ? o.kernels : NULL, o.blas_threading[0] ? o.blas_threading : NULL, o.threads);
    if (st != FG_OK)
        return fg_cli_fail("hw", st, "valid --kernels modes are listed by `frugal hw`");
    fg_hw_print(stdout);
    printf("units:      (the GEMMs of each --precision, from the kernels chosen below)\n");
    fg_hw_print_units(stdout, "  ", fg_kernels_variant("matmul"), fg_kernels_variant("bgemm"));
    printf("threads:    %d (process threads at start: %d)\nkernels:\n", fg_threads_get(), threads_at_start);
    fg_kernels_print(stdout);
    return 0;
}
