/* test_kernels_lazy.c: the first kernel call configures the table lazily, and a bad
 * environment at that point (here FG_HW_DISABLE with an unknown name, which the strict
 * parser refuses) falls back to working kernels with a warning instead of an empty table. */
#include <stdlib.h>
#include <string.h>

#include "frugal/hw.h"
#include "frugal/kernels.h"
#include "harness.h"

int main(void)
{
    FG_TEST_BEGIN("kernels_lazy");
    setenv("FG_HW_DISABLE", "avx512,bogus", 1);
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {1, 1, 1, 1, 1}, out[5];
    FG_CHECK(fg_sumsq(a, 5) == 55.0, "sumsq through the lazily filled table");
    fg_add(out, a, b, 5);
    FG_CHECK(out[4] == 6.0f, "add through the lazily filled table");
    const fg_cpu *c = fg_hw_cpu();
    FG_CHECK(!c->avx2 && !c->avx512f, "a refused FG_HW_DISABLE left features on");
    fg_kernels_settings s = fg_kernels_settings_get();
    FG_CHECK(!strcmp(s.mode, "auto") && !strcmp(s.blas_threading, "omp"), "fallback settings %s / %s", s.mode,
             s.blas_threading);
    FG_CHECK(strcmp(fg_kernels_variant("attention"), "avx512") && strcmp(fg_kernels_variant("attention"), "avx2"),
             "an ISA variant was picked with the features off: %s", fg_kernels_variant("attention"));
    /* an explicit configure still refuses the bad list, naming it */
    FG_CHECK(fg_kernels_configure(NULL, NULL, 0) == FG_ERR_INVALID && strstr(fg_last_error(), "FG_HW_DISABLE"),
             "configure with a bad FG_HW_DISABLE: %s", fg_last_error());
    return fg_test_end();
}
