/* attention_avx512.h: what the fp32 and the bf16 AVX-512 attention kernels share: the
 * 32-query-lane block shape, the causal lane mask, the transposed tile's store, the guard. */
#ifndef FRUGAL_ATTENTION_AVX512_H
#define FRUGAL_ATTENTION_AVX512_H

#include <immintrin.h>
#include <stddef.h>

#include "vmath_avx512.h"

enum { BQ = 32, BK = 64, MAXHS = 256 };
#define NEG_BIG (-1e30f) /* masked score: exp() of it minus any real max is exactly 0 */

/* Y[i][d] (+)= Xt[d][i] * w[i] (w NULL: 1) for i < nq: the transposed tile back into rows ldy
 * apart; accumulate != 0 adds to Y instead of overwriting it. */
static inline void store_t(float *Y, size_t ldy, const float *Xt, const float *w, int nq, int HS, int accumulate)
{
    for (int i0 = 0; i0 < nq; i0 += 16)
        for (int d0 = 0; d0 < HS; d0 += 16) {
            __m512 r[16];
            for (int k = 0; k < 16; k++)
                r[k] = _mm512_load_ps(Xt + (d0 + k) * BQ + i0);
            fg_transpose16_512(r);
            for (int k = 0; k < 16 && i0 + k < nq; k++) {
                float *y = Y + (size_t)(i0 + k) * ldy + d0;
                __m512 v = w ? _mm512_mul_ps(r[k], _mm512_set1_ps(w[i0 + k])) : r[k];
                _mm512_storeu_ps(y, accumulate ? _mm512_add_ps(_mm512_loadu_ps(y), v) : v);
            }
        }
}

/* Lanes i of a 32-query block whose query t0+i may see key j: t0 + i >= j. */
static inline __mmask16 causal_mask(int t0, int half, int j)
{
    int first = j - t0 - 16 * half; /* first visible lane */
    if (first <= 0)
        return (__mmask16)0xFFFF;
    if (first >= 16)
        return 0;
    return (__mmask16)(0xFFFFu << first);
}

static inline int supported(int C, int NH)
{
    int HS = C / NH;
    return HS * NH == C && HS % 16 == 0 && HS <= MAXHS;
}

#endif
