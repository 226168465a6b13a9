/* bf16_avx512.h: the bf16 rounding rule of cvt_f32_bf16 (ref/bf16_ref.c) on 16 lanes and
 * on one value, for the AVX-512 files that write bf16 as they compute (conversion, xent). */
#ifndef FRUGAL_KERNELS_X86_BF16_AVX512_H
#define FRUGAL_KERNELS_X86_BF16_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels_impl.h"

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

/* 1 when cvt_f32_bf16 runs on the bf16 unit (the CPU has AVX512-BF16 and neither the
 * mode nor FG_HW_DISABLE rules it out): the fused ops then round with vcvtne2ps2bf16 too.
 * Every file of this header is built with -mavx512bf16 (CMakeLists FG_FLAGS_avx512). */
static inline int fg_bf16_unit_on(void)
{
    return fg_kt.level[FG_OP_cvt_f32_bf16] == FG_LVL_AVX512BF16;
}

/* fp32 subnormal lanes: vcvtne2ps2bf16 flushes them (DAZ), the rule rounds them. */
static inline __mmask16 fg_subnormal16(__m512i x)
{
    return _mm512_testn_epi32_mask(x, _mm512_set1_epi32(0x7f800000)) &
           _mm512_test_epi32_mask(x, _mm512_set1_epi32(0x007fffff));
}

/* Stores the lanes k of bf16(lo) (values 0-15) and bf16(hi) (16-31) at d, by the rule:
 * with unit, one vcvtne2ps2bf16 for the 32 unless one is subnormal (the same bits:
 * docs/KERNELS.md), else the integer rule. Returns the 32 rounded values. */
static inline __m512i fg_store_bf16x32(uint16_t *d, __m512 lo, __m512 hi, __mmask32 k, int unit)
{
    __m512i a = _mm512_castps_si512(lo), b = _mm512_castps_si512(hi), r;
    if (unit && !(fg_subnormal16(a) | fg_subnormal16(b)))
        r = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    else
        r = _mm512_inserti64x4(_mm512_castsi256_si512(fg_rne16_512(a)), fg_rne16_512(b), 1);
    _mm512_mask_storeu_epi16(d, k, r);
    return r;
}

static inline __mmask32 fg_tail32(size_t left)
{
    return left >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << left) - 1u);
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
