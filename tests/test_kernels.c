/* test_kernels.c: every kernel op, every variant this CPU supports, against the
 * scalar reference (normalised max error); sanity checks of the dispatch table. */
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "harness.h"

static float *randn(fg_rng *r, size_t n, float s)
{
    float *x = fg_malloc(n * sizeof(float));
    FG_ASSERT(x);
    for (size_t i = 0; i < n; i++)
        x[i] = s * fg_rng_normal(r);
    return x;
}

static void test_matmul_variants(fg_rng *r)
{
    int N = 37, C = 65, OC = 47;
    float *inp = randn(r, (size_t)N * C, 1), *w = randn(r, (size_t)OC * C, 1), *b = randn(r, OC, 1);
    float *o1 = fg_calloc((size_t)N * OC, 4), *o2 = fg_calloc((size_t)N * OC, 4);
    fg_matmul_forward_ref(o1, inp, w, b, N, C, OC);
    fg_matmul_forward(o2, inp, w, b, N, C, OC);
    /* fp32 sums of 65 products of unit normals: error ~ sqrt(C) eps relative to |out| ~ sqrt(C) */
    fg_test_check_tensor("matmul_forward", o2, o1, (size_t)N * OC, 1e-5);
    fg_free(inp), fg_free(w), fg_free(b), fg_free(o1), fg_free(o2);
}

int main(void)
{
    FG_TEST_BEGIN("kernels");
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    FG_CHECK(fg_kernels_init("nope") == FG_ERR_INVALID, "unknown mode accepted");
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    fg_rng r;
    fg_rng_seed(&r, 1);
    test_matmul_variants(&r);
    return fg_test_end();
}
