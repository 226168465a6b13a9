/* bench_util.h: the timing loop shared by the kernel benchmarks: wall or process-CPU
 * clock, and the median of repeated calls after a warm-up call. */
#ifndef FRUGAL_BENCH_UTIL_H
#define FRUGAL_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

#include "frugal/core.h"

/* Seconds: wall clock, or the process CPU clock with cputime (steadier on a busy box). */
static inline double bench_now(int cputime)
{
    if (!cputime)
        return fg_time_sec();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per call of fn(ctx): one warm-up call, then at least 3 and at most
 * max_calls (<= 32) timed calls while the wall time stays within budget seconds. */
static inline double bench_median_time(void (*fn)(void *), void *ctx, double budget, int max_calls, int cputime)
{
    fn(ctx);
    double t[32] = {0};
    int n = 0;
    if (max_calls > 32)
        max_calls = 32;
    double t0 = fg_time_sec();
    while (n < max_calls && (n < 3 || fg_time_sec() - t0 < budget)) {
        double a = bench_now(cputime);
        fn(ctx);
        t[n++] = bench_now(cputime) - a;
    }
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    return t[n / 2];
}

#endif
