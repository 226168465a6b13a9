/* bf16_avx512.h: the bf16 rounding rule of cvt_f32_bf16 (ref/bf16_ref.c) on 16 lanes and
 * on one value, for the AVX-512 files that write bf16 as they compute (conversion, xent). */
#ifndef FRUGAL_KERNELS_X86_BF16_AVX512_H
#define FRUGAL_KERNELS_X86_BF16_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* + 0x7fff + lsb, NaN -> x >> 16 | 0x40, on the bits of 16 fp32 lanes. */
static inline __m256i fg_rne16_512(__m512i x)
{
    __m512i hi = _mm512_srli_epi32(x, 16);
    __m512i bias = _mm512_add_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7fff));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, bias), 16);
    __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
}

/* The same rule on one value. */
static inline uint16_t fg_rne1(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
