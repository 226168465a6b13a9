/* bench_attn_bf16.c: a fixed number of bf16 attention forward + backward calls at one
 * shape, for `perf stat -e cycles:u` (user cycles per call, steadier than wall time on a
 * shared machine); defaults: the recipe's shape (B 16, T 128, C 128, NH 4: HS 32).
 *
 *   build/bench_attn_bf16 [B T C NH [ITERS [THREADS [fwd|bwd|both]]]]
 * Prints the wall and process-CPU time a call (the loop only, no setup) and the GF/s by
 * wall clock for orientation (4*T*T/2*HS fwd, 10*T*T/2*HS bwd a head). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frugal/kernels.h"

/* FNV-1a of the bytes of n floats. */
static unsigned digest(const float *x, size_t n)
{
    const unsigned char *p = (const unsigned char *)x;
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

int main(int argc, char **argv)
{
    int B = argc > 4 ? atoi(argv[1]) : 16, T = argc > 4 ? atoi(argv[2]) : 128;
    int C = argc > 4 ? atoi(argv[3]) : 128, NH = argc > 4 ? atoi(argv[4]) : 4;
    int iters = argc > 5 ? atoi(argv[5]) : 200, threads = argc > 6 ? atoi(argv[6]) : 1;
    const char *what = argc > 7 ? argv[7] : "both";
    int fwd = strcmp(what, "bwd") != 0, bwd = strcmp(what, "fwd") != 0;
    if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH || iters <= 0 || threads <= 0) {
        fprintf(stderr, "usage: %s [B T C NH [ITERS [THREADS [fwd|bwd|both]]]]\n", argv[0]);
        return 1;
    }
    if (fg_kernels_configure("auto", NULL, threads) != FG_OK) {
        fprintf(stderr, "bench_attn_bf16: %s\n", fg_last_error());
        return 1;
    }
    size_t N = (size_t)B * T, C3 = (size_t)3 * C;
    float *x = fg_malloc(sizeof(float) * N * C3), *dqkv = fg_malloc(sizeof(float) * N * C3);
    float *out = fg_malloc(sizeof(float) * N * C), *dout = fg_malloc(sizeof(float) * N * C);
    float *lse = fg_malloc(sizeof(float) * N * NH);
    uint16_t *qkv = fg_malloc(sizeof(uint16_t) * N * C3);
    if (!x || !dqkv || !out || !dout || !lse || !qkv) {
        fprintf(stderr, "bench_attn_bf16: out of memory\n");
        return 1;
    }
    fg_rng r;
    fg_rng_seed(&r, 5);
    for (size_t i = 0; i < N * C3; i++)
        x[i] = fg_rng_normal(&r);
    for (size_t i = 0; i < N * C; i++)
        dout[i] = 0.01f * fg_rng_normal(&r);
    fg_cvt_f32_bf16(qkv, x, N * C3);
    memset(dqkv, 0, sizeof(float) * N * C3);
    fg_attention_bf16_forward(out, lse, qkv, B, T, C, NH);
    fg_attention_bf16_backward(dqkv, dout, qkv, out, lse, B, T, C, NH);
    /* a digest of one call's bits (out, lse, dqkv), to compare builds */
    printf("digest out %08x lse %08x dqkv %08x\n", digest(out, N * C), digest(lse, N * NH), digest(dqkv, N * C3));
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    double t0 = fg_time_sec();
    for (int it = 0; it < iters; it++) {
        if (fwd)
            fg_attention_bf16_forward(out, lse, qkv, B, T, C, NH);
        if (bwd)
            fg_attention_bf16_backward(dqkv, dout, qkv, out, lse, B, T, C, NH);
    }
    double t = (fg_time_sec() - t0) / iters;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = ((double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec)) / iters;
    double fl = (double)B * NH * T * T / 2 * (C / NH) * (4 * fwd + 10 * bwd);
    printf("attention_bf16 (%s) B%d T%d C%d NH%d %s, %d thread%s: %.3f ms a call (wall), %.3f ms CPU, %.1f GF/s "
           "(wall)\n",
           fg_kernels_variant("attention_bf16_forward"), B, T, C, NH, what, threads, threads > 1 ? "s" : "", t * 1e3,
           cpu * 1e3, fl / t * 1e-9);
    fg_free(x), fg_free(dqkv), fg_free(out), fg_free(dout), fg_free(lse), fg_free(qkv);
    return 0;
}
