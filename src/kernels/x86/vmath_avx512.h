/* vmath_avx512.h: vectorised float math for the AVX-512 kernels (exp, sigmoid,
 * horizontal reductions). Included only by *_avx512.c files (compiled with -mavx512f). */
#ifndef FRUGAL_KERNELS_VMATH_AVX512_H
#define FRUGAL_KERNELS_VMATH_AVX512_H

#include <immintrin.h>

/* exp(x) for 16 floats, Cephes expf: n = round(x log2 e), r = x - n ln2 (ln2 split in
 * two so r is exact), exp(r) by a degree-6 polynomial on |r| <= ln2/2, times 2^n via
 * scalef. Max error ~2 ulp over [-87.3, 88.7]; x > 88.7 gives +inf as expf does, and
 * x < -87.3 (including -1e30 used for masked scores) gives exactly 0, never NaN. */
static inline __m512 fg_exp512(__m512 x)
{
    const __m512 hi = _mm512_set1_ps(88.7228f), lo = _mm512_set1_ps(-87.3365f);
    __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    x = _mm512_min_ps(x, hi);
    x = _mm512_max_ps(x, lo);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n));
}

/* 1 / (1 + exp(-x)): exact 0 / 1 limits, no overflow (exp(-x) -> inf gives 0). */
static inline __m512 fg_sigmoid512(__m512 x)
{
    __m512 e = fg_exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* Mask of the first n (0..16) lanes. */
static inline __mmask16 fg_tail_mask(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* Runs the statements after the first three arguments for i = 0, 16, 32, ... < n,
 * with k the mask of the lanes below n, over chunks of `chunk` elements: the chunks
 * in parallel (OpenMP) when there are more than min_par of them. For the elementwise
 * kernels, which are memory-bound: small arrays stay on one thread. */
#define FG_FOR_CHUNKS512_BODY_(n, chunk, ...)                                                                          \
    {                                                                                                                  \
        size_t lo_ = ch_ * (chunk), hi_ = lo_ + (chunk) < (n) ? lo_ + (chunk) : (n);                                   \
        for (size_t i = lo_; i < hi_; i += 16) {                                                                       \
            __mmask16 k = fg_tail_mask((int)(hi_ - i < 16 ? hi_ - i : 16));                                            \
            __VA_ARGS__                                                                                                \
        }                                                                                                              \
    }
/* Arrays of at most min_par chunks run inline: an OpenMP region with a false `if` still
 * costs a GOMP_parallel call (about a microsecond), which the bf16 model's thousands of
 * row-sized calls (bias gradients through fg_add) paid. */
#define FG_FOR_CHUNKS512(n, chunk, min_par, ...)                                                                       \
    do {                                                                                                               \
        size_t nchunk_ = ((n) + (chunk)-1) / (chunk), minpar_ = (min_par);                                             \
        if (nchunk_ > minpar_) {                                                                                       \
            _Pragma("omp parallel for schedule(static)") for (size_t ch_ = 0; ch_ < nchunk_; ch_++)                    \
                FG_FOR_CHUNKS512_BODY_(n, chunk, __VA_ARGS__)                                                          \
        } else {                                                                                                       \
            for (size_t ch_ = 0; ch_ < nchunk_; ch_++)                                                                 \
                FG_FOR_CHUNKS512_BODY_(n, chunk, __VA_ARGS__)                                                          \
        }                                                                                                              \
    } while (0)

/* In-register transpose of a 16 x 16 block of 32-bit words: r[k] (row k) becomes column k
 * (attention's K tiles, the bf16 GEMM's packing; bf16 words travel as floats: shuffles
 * move bits only). Unrolled and inlined: as loops called out of line (gcc -O2) t, u and
 * r went through the stack (the bf16 GEMM's pack_b spent 1.7% of a bf16 training step
 * in it). */
static inline __attribute__((always_inline)) void fg_transpose16_512(__m512 r[16])
{
    __m512 t[16], u[16];
#pragma GCC unroll 16
    for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
#pragma GCC unroll 16
    for (int k = 0; k < 16; k += 4) {
        u[k] = _mm512_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 16
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_f32x4(u[k], u[k + 4], 0x88);
        t[k + 4] = _mm512_shuffle_f32x4(u[k], u[k + 4], 0xdd);
        t[k + 8] = _mm512_shuffle_f32x4(u[k + 8], u[k + 12], 0x88);
        t[k + 12] = _mm512_shuffle_f32x4(u[k + 8], u[k + 12], 0xdd);
    }
#pragma GCC unroll 16
    for (int k = 0; k < 8; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xdd);
    }
}

#endif
