/* quant_avx512.c: AVX-512 QAT fake-quantization ops (row ranges, quantize-dequantize,
 * straight-through mask), bit for bit quant_ref.c: one multiply, one round to nearest
 * even, the same clamps and products per value. */
#include <immintrin.h>

#include "vmath_avx512.h"
#include "x86_impl.h"

/* Rows in parallel only from 1M values: a vector pass over 64K values takes tens of
 * microseconds, about an OpenMP fork and join on a quiet machine and far less than one on
 * a loaded one (a preempted thread holds the barrier); rows are independent, so the
 * split does not change a bit. */
#define PAR_MIN ((size_t)1 << 20)

static inline __m512 abs_ps(__m512 x)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

static inline __m512 round_even(__m512 x)
{
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void fg_fq_scales_avx512(float *scale, const float *x, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * C;
        __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
        int c = 0;
        /* vmaxps returns its second operand when either is NaN: the running max, so a
         * NaN value is skipped as fmaxf skips it; max is exact, so lane order is free */
        for (; c + 32 <= C; c += 32) {
            m0 = _mm512_max_ps(abs_ps(_mm512_loadu_ps(xr + c)), m0);
            m1 = _mm512_max_ps(abs_ps(_mm512_loadu_ps(xr + c + 16)), m1);
        }
        for (; c < C; c += 16)
            m0 = _mm512_max_ps(abs_ps(_mm512_maskz_loadu_ps(fg_tail_mask(C - c), xr + c)), m0);
        float m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
        scale[r] = m > 0.0f ? m / 127.0f : 1.0f;
    }
}

void fg_fake_quant_avx512(float *out, const float *x, const float *scale, int stride, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int r = 0; r < N; r++) {
        float s = scale[(size_t)r * stride], inv = 1.0f / s;
        __m512 vs = _mm512_set1_ps(s), vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f),
               hi = _mm512_set1_ps(127.0f), zero = _mm512_setzero_ps();
        size_t o = (size_t)r * C;
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = fg_tail_mask(C - c);
            __m512 q = round_even(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + o + c), vinv));
            /* bounds first: a NaN code stays NaN as in the scalar clamp; + 0 turns -0 to +0 */
            q = _mm512_add_ps(_mm512_min_ps(hi, _mm512_max_ps(lo, q)), zero);
            _mm512_mask_storeu_ps(out + o + c, k, _mm512_mul_ps(q, vs));
        }
    }
}

void fg_fake_quant_mask_avx512(float *dx, const float *dout, const float *x, const float *scale, int stride, int N,
                               int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int r = 0; r < N; r++) {
        __m512 vinv = _mm512_set1_ps(1.0f / scale[(size_t)r * stride]), lo = _mm512_set1_ps(-127.0f),
               hi = _mm512_set1_ps(127.0f);
        size_t o = (size_t)r * C;
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = fg_tail_mask(C - c);
            __m512 q = round_even(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + o + c), vinv));
            __mmask16 in = _mm512_mask_cmp_ps_mask(k, q, lo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(q, hi, _CMP_LE_OQ);
            _mm512_mask_storeu_ps(dx + o + c, k, _mm512_maskz_loadu_ps(in, dout + o + c));
        }
    }
}
