/* loops.h: the ops whose fast variant is the reference loop plus `omp simd` (embedding,
 * add, axpy, scale, sumsq), written ONCE and compiled once per ISA: ref/loops_ref.c
 * builds them as the _ref references (no -m flags), x86/loops_avx2.c as the _avx2
 * variants (the file's -mavx2 -mfma flags let gcc vectorise the same loops 8 wide).
 * x86/loops_avx512.c builds only the embedding (FG_LOOPS_EMBEDDING_ONLY): AVX-512 has
 * its own chunked intrinsics for add, axpy, scale and sumsq (elem_avx512.c).
 * The including file defines FG_LOOPS_SUFFIX (ref, avx2, avx512) first; no include guard. */
#include <string.h>

#include "kernels_impl.h"

#ifndef FG_LOOPS_SUFFIX
#error "define FG_LOOPS_SUFFIX (ref, avx2, ...) before including loops.h"
#endif
#define FG_LOOPS_CAT2(op, sfx) fg_##op##_##sfx
#define FG_LOOPS_CAT(op, sfx) FG_LOOPS_CAT2(op, sfx)
#define FG_LOOPS_FN(op) FG_LOOPS_CAT(op, FG_LOOPS_SUFFIX)

/* Elementwise ops are memory-bound: no threads below 4 chunks of 16k elements (the
 * embedding: below FG_PAR_MIN_ELEMS, issue 17). Column blocks of the embedding scatter:
 * 64 floats. */
enum { FG_LOOPS_PAR_MIN = 4 * 16384, FG_LOOPS_CB = 64 };

void FG_LOOPS_FN(embedding_forward)(float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T,
                                    int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= FG_PAR_MIN_ELEMS)
    for (int n = 0; n < N; n++) {
        const float *e = wte + (size_t)tokens[n] * C;
        float *o = out + (size_t)n * C;
        if (!wpe) {
            memcpy(o, e, (size_t)C * sizeof(float));
            continue;
        }
        const float *p = wpe + (size_t)(n % T) * C;
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = e[c] + p[c];
    }
}

/* Backward of out[n] = wte[tokens[n]] + wpe[n % T]. Two rows n may share a token, so
 * the parallel loop runs over column blocks: each thread writes only its columns. */
void FG_LOOPS_FN(embedding_backward)(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T,
                                     int C)
{
    int nblk = (C + FG_LOOPS_CB - 1) / FG_LOOPS_CB;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= FG_PAR_MIN_ELEMS)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * FG_LOOPS_CB, c1 = c0 + FG_LOOPS_CB < C ? c0 + FG_LOOPS_CB : C;
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * C;
            if (dwte) {
                float *d = dwte + (size_t)tokens[n] * C;
#pragma omp simd
                for (int c = c0; c < c1; c++)
                    d[c] += g[c];
            }
            if (dwpe) {
                float *d = dwpe + (size_t)(n % T) * C;
#pragma omp simd
                for (int c = c0; c < c1; c++)
                    d[c] += g[c];
            }
        }
    }
}

#ifndef FG_LOOPS_EMBEDDING_ONLY
void FG_LOOPS_FN(add)(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > FG_LOOPS_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void FG_LOOPS_FN(axpy)(float *y, float a, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > FG_LOOPS_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void FG_LOOPS_FN(scale)(float *x, float s, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > FG_LOOPS_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

/* Accumulates in double, in every build. */
double FG_LOOPS_FN(sumsq)(const float *x, size_t n)
{
    double s = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (n > FG_LOOPS_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

#endif /* FG_LOOPS_EMBEDDING_ONLY */

#undef FG_LOOPS_FN
#undef FG_LOOPS_CAT
#undef FG_LOOPS_CAT2
