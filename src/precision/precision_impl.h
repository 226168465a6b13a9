/* precision_impl.h: the fp8 encoder core shared by fp8.c (the public codecs) and
 * scaling.c (the quantizer's inner loop, which inlines it). Not public. */
#ifndef FRUGAL_PRECISION_IMPL_H
#define FRUGAL_PRECISION_IMPL_H

#include <string.h>

#include "frugal/precision.h"

static inline uint32_t fp8_f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float fp8_f32_from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

enum {
    E4M3_MAX_CODE = 0x7e, /* 0.1111.110 = 448 */
    E5M2_MAX_CODE = 0x7b, /* 0.11110.11 = 57344 */
    E5M2_INF_CODE = 0x7c,
    FP8_NAN_CODE = 0x7f, /* the NaN both formats produce (PyTorch's choice for e5m2 too) */
};

/* |x| (fp32 bits a without the sign, finite) rounded to nearest even in a format with
 * m mantissa bits and exponent bias `bias`, as the code's magnitude (exponent field <<
 * m | mantissa). Not clamped: values past the format's top give larger codes and the
 * caller decides what overflow means. */
static inline uint32_t fp8_round_mag(uint32_t a, int m, int bias)
{
    const int shift = 23 - m;
    const uint32_t min_normal = (uint32_t)(127 + 1 - bias) << 23;
    if (a >= min_normal) {
        /* Drop `shift` bits rounding half to even (+ half - 1, + the kept lsb); a carry out
         * of the mantissa moves to the exponent, which is the correctly rounded result. */
        uint32_t r = a + ((1u << (shift - 1)) - 1u) + ((a >> shift) & 1u);
        return (r >> shift) - ((uint32_t)(127 - bias) << m);
    }
    /* Below the smallest normal the format counts quanta of 2^(1-bias-m): value =
     * sig * 2^(e-150), so the count is sig >> k with k = 151 - bias - m - e, rounded half
     * to even by hand. A count of 2^m is the smallest normal's code, as it should be. */
    uint32_t e = a >> 23, sig = a & 0x7fffffu;
    if (e)
        sig |= 0x800000u;
    else
        e = 1; /* fp32 subnormal: same scale as e = 1 without the hidden bit */
    int k = 151 - bias - m - (int)e;
    if (k > 24)
        return 0; /* sig < 2^24 <= 2^(k-1): below half a quantum */
    uint32_t q = sig >> k, rem = sig & ((1u << k) - 1u), half = 1u << (k - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return q;
}

static inline uint8_t fp8_encode(float x, fg_fp8_format fmt)
{
    const uint32_t u = fp8_f32_bits(x), s = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint8_t)(s | FP8_NAN_CODE);
    if (fmt == FG_FP8_E4M3) {
        /* No inf in e4m3fn: PyTorch 2.15 saturates inf and every finite overflow to 448
         * (the round-up above 464 would otherwise land on the NaN code). */
        uint32_t c = a == 0x7f800000u ? E4M3_MAX_CODE : fp8_round_mag(a, 3, 7);
        return (uint8_t)(s | (c > E4M3_MAX_CODE ? E4M3_MAX_CODE : c));
    }
    FG_ASSERT(fmt == FG_FP8_E5M2);
    /* IEEE: rounding past 57344 + half an ulp (61440, the tie goes to the even inf) is inf. */
    uint32_t c = a == 0x7f800000u ? E5M2_INF_CODE : fp8_round_mag(a, 2, 15);
    return (uint8_t)(s | (c > E5M2_INF_CODE ? E5M2_INF_CODE : c));
}

static inline uint8_t fp8_encode_sat(float x, fg_fp8_format fmt)
{
    if (fmt == FG_FP8_E4M3)
        return fp8_encode(x, fmt);
    FG_ASSERT(fmt == FG_FP8_E5M2);
    const uint32_t u = fp8_f32_bits(x), s = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint8_t)(s | FP8_NAN_CODE);
    uint32_t c = a == 0x7f800000u ? E5M2_MAX_CODE : fp8_round_mag(a, 2, 15);
    return (uint8_t)(s | (c > E5M2_MAX_CODE ? E5M2_MAX_CODE : c));
}

#endif
