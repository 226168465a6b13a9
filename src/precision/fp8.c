/* fp8.c: the scalar fp8 codecs, e4m3 (float8_e4m3fn) and e5m2 (float8_e5m2): decode,
 * PyTorch-exact encode and the saturating encode used after scaling. Integer
 * arithmetic on the fp32 bits only, so the result does not depend on the FPU's rounding
 * mode or on FTZ/DAZ. Leaves out the fnuz variants (no training recipe here uses them). */
#include <string.h>

#include "frugal/precision.h"

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
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
static uint32_t round_mag(uint32_t a, int m, int bias)
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

float fg_fp8_max(fg_fp8_format fmt)
{
    switch (fmt) {
    case FG_FP8_E4M3: return FG_FP8_E4M3_MAX;
    case FG_FP8_E5M2: return FG_FP8_E5M2_MAX;
    }
    return 0.0f;
}

const char *fg_fp8_format_name(fg_fp8_format fmt)
{
    switch (fmt) {
    case FG_FP8_E4M3: return "e4m3";
    case FG_FP8_E5M2: return "e5m2";
    }
    return "?";
}

float fg_fp8_to_f32(uint8_t code, fg_fp8_format fmt)
{
    const uint32_t s = (uint32_t)(code & 0x80u) << 24;
    uint32_t e, mnt;
    if (fmt == FG_FP8_E4M3) {
        e = (code >> 3) & 15u;
        mnt = code & 7u;
        if (e == 15 && mnt == 7)
            return f32_from_bits(s | 0x7ff00000u); /* PyTorch's bits for the NaN code */
        if (e == 0)
            return f32_from_bits(s | f32_bits((float)mnt * 0x1p-9f)); /* subnormal: mnt * 2^-9 */
        return f32_from_bits(s | ((e + 127 - 7) << 23) | (mnt << 20));
    }
    FG_ASSERT(fmt == FG_FP8_E5M2);
    e = (code >> 2) & 31u;
    mnt = code & 3u;
    if (e == 31) /* inf, or NaN quieted with the payload kept (as fp16 -> fp32 does) */
        return f32_from_bits(mnt ? s | 0x7fc00000u | (mnt << 21) : s | 0x7f800000u);
    if (e == 0)
        return f32_from_bits(s | f32_bits((float)mnt * 0x1p-16f)); /* subnormal: mnt * 2^-16 */
    return f32_from_bits(s | ((e + 127 - 15) << 23) | (mnt << 21));
}

uint8_t fg_fp8_from_f32(float x, fg_fp8_format fmt)
{
    const uint32_t u = f32_bits(x), s = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint8_t)(s | FP8_NAN_CODE);
    if (fmt == FG_FP8_E4M3) {
        /* No inf in e4m3fn: PyTorch 2.15 saturates inf and every finite overflow to 448
         * (the round-up above 464 would otherwise land on the NaN code). */
        uint32_t c = a == 0x7f800000u ? E4M3_MAX_CODE : round_mag(a, 3, 7);
        return (uint8_t)(s | (c > E4M3_MAX_CODE ? E4M3_MAX_CODE : c));
    }
    FG_ASSERT(fmt == FG_FP8_E5M2);
    /* IEEE: rounding past 57344 + half an ulp (61440, the tie goes to the even inf) is inf. */
    uint32_t c = a == 0x7f800000u ? E5M2_INF_CODE : round_mag(a, 2, 15);
    return (uint8_t)(s | (c > E5M2_INF_CODE ? E5M2_INF_CODE : c));
}

uint8_t fg_fp8_from_f32_sat(float x, fg_fp8_format fmt)
{
    if (fmt == FG_FP8_E4M3)
        return fg_fp8_from_f32(x, fmt);
    FG_ASSERT(fmt == FG_FP8_E5M2);
    const uint32_t u = f32_bits(x), s = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint8_t)(s | FP8_NAN_CODE);
    uint32_t c = a == 0x7f800000u ? E5M2_MAX_CODE : round_mag(a, 2, 15);
    return (uint8_t)(s | (c > E5M2_MAX_CODE ? E5M2_MAX_CODE : c));
}

void fg_fp8_from_f32_array(uint8_t *out, const float *in, size_t n, fg_fp8_format fmt, bool saturate)
{
    if (saturate)
        for (size_t i = 0; i < n; i++)
            out[i] = fg_fp8_from_f32_sat(in[i], fmt);
    else
        for (size_t i = 0; i < n; i++)
            out[i] = fg_fp8_from_f32(in[i], fmt);
}

void fg_fp8_to_f32_array(float *out, const uint8_t *in, size_t n, fg_fp8_format fmt)
{
    float lut[256]; /* 1 KiB on the stack: cheaper than decoding each of n values */
    for (int c = 0; c < 256; c++)
        lut[c] = fg_fp8_to_f32((uint8_t)c, fmt);
    for (size_t i = 0; i < n; i++)
        out[i] = lut[in[i]];
}
