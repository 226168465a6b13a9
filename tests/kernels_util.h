/* kernels_util.h: helpers shared by the kernel test programs (they link fg_kernels;
 * the harness does not): list an op's variants and force one into the table. */
#ifndef FRUGAL_TEST_KERNELS_UTIL_H
#define FRUGAL_TEST_KERNELS_UTIL_H

#include <string.h>

#include "frugal/kernels.h"
#include "harness.h"

/* Variants of op available here (always at least "ref", first). */
static inline int variants(const char *op, const char **names)
{
    int n = fg_kernels_variants(op, names, 8);
    FG_CHECK(n >= 1 && !strcmp(names[0], "ref"), "%s: no ref variant", op);
    return n;
}

static inline void use(const char *op, const char *v)
{
    fg_status st = fg_kernels_set(op, v);
    FG_CHECK(st == FG_OK, "set %s=%s: %s", op, v, fg_last_error());
}

#endif
