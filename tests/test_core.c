/* test_core.c: status/last-error, counted allocation with failure injection,
 * arena alignment and exhaustion, RNG reproducibility and moments. */
#include <string.h>

#include "frugal/core.h"
#include "frugal/hw.h"
#include "harness.h"

static void test_errors(void)
{
    fg_status st = fg_error(FG_ERR_FORMAT, "%s:%d: bad thing", "file.json", 3);
    FG_CHECK(st == FG_ERR_FORMAT, "fg_error returns its status");
    FG_CHECK(strcmp(fg_last_error(), "file.json:3: bad thing") == 0, "last error is '%s'", fg_last_error());
    FG_CHECK(strcmp(fg_status_str(FG_ERR_IO), "I/O error") == 0, "status string");
    fg_clear_error();
    FG_CHECK(fg_last_error()[0] == 0, "cleared");
}

static void test_alloc(void)
{
    size_t before = fg_mem_current();
    float *a = fg_malloc(1000 * sizeof(float));
    FG_CHECK(a != NULL && ((uintptr_t)a & 63) == 0, "64-byte aligned");
    FG_CHECK(fg_mem_current() == before + 4000, "counted %zu", fg_mem_current() - before);
    FG_CHECK(fg_mem_peak() >= before + 4000, "peak");
    a = fg_realloc(a, 8000 * sizeof(float));
    FG_CHECK(a && ((uintptr_t)a & 63) == 0, "realloc aligned");
    fg_free(a);
    FG_CHECK(fg_mem_current() == before, "freed");
    fg_free(NULL);
    fg_mem_fail_after(2);
    void *p1 = fg_malloc(10);
    void *p2 = fg_malloc(10);
    void *p3 = fg_malloc(10);
    FG_CHECK(p1 && !p2 && p3, "second allocation fails when injected");
    FG_CHECK(strstr(fg_last_error(), "injected") != NULL, "message says injected");
    fg_free(p1);
    fg_free(p3);
    FG_CHECK(fg_calloc(SIZE_MAX / 2, 4) == NULL, "calloc overflow refused");
}

static void test_arena(void)
{
    fg_arena a;
    FG_CHECK(fg_arena_init(&a, 1024) == FG_OK, "arena init");
    char *p = fg_arena_alloc(&a, 10), *q = fg_arena_alloc(&a, 10);
    FG_CHECK(p && q && ((uintptr_t)q & 63) == 0 && q - p == 64, "arena aligns to 64");
    FG_CHECK(fg_arena_alloc(&a, 2000) == NULL, "arena refuses overflow");
    fg_arena_reset(&a);
    FG_CHECK(fg_arena_alloc(&a, 1000) == a.base, "reset rewinds");
    FG_CHECK(a.peak >= 1000, "peak kept");
    fg_arena_free(&a);
    fg_arena_free(&a);
}

static void test_rng(void)
{
    fg_rng r1, r2;
    fg_rng_seed(&r1, 42);
    fg_rng_seed(&r2, 42);
    int same = 1;
    for (int i = 0; i < 100; i++)
        same &= fg_rng_next(&r1) == fg_rng_next(&r2);
    FG_CHECK(same, "same seed, same stream");
    double s = 0, s2 = 0, u = 0;
    int n = 200000, below_ok = 1;
    for (int i = 0; i < n; i++) {
        double x = fg_rng_normal(&r1);
        s += x;
        s2 += x * x;
        float v = fg_rng_uniform(&r1);
        u += v;
        below_ok &= v >= 0 && v < 1 && fg_rng_below(&r1, 7) < 7;
    }
    FG_CHECK(fabs(s / n) < 0.01 && fabs(s2 / n - 1) < 0.02, "normal mean %.4f var %.4f", s / n, s2 / n);
    FG_CHECK(fabs(u / n - 0.5) < 0.005 && below_ok, "uniform mean %.4f", u / n);
}

int main(void)
{
    FG_TEST_BEGIN("core");
    test_errors();
    test_alloc();
    test_arena();
    test_rng();
    FG_CHECK(fg_peak_rss_bytes() > 0, "peak RSS readable");
    return fg_test_end();
}
