/* fp8.c: the scalar fp8 codecs, e4m3 (float8_e4m3fn) and e5m2 (float8_e5m2): decode,
 * PyTorch-exact encode and the saturating encode used after scaling. Integer
 * arithmetic on the fp32 bits only, so the result does not depend on the FPU's rounding
 * mode or on FTZ/DAZ. Leaves out the fnuz variants (no training recipe here uses them). */
#include "precision_impl.h"

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
            return fp8_f32_from_bits(s | 0x7ff00000u); /* PyTorch's bits for the NaN code */
        if (e == 0)
            return fp8_f32_from_bits(s | fp8_f32_bits((float)mnt * 0x1p-9f)); /* subnormal: mnt * 2^-9 */
        return fp8_f32_from_bits(s | ((e + 127 - 7) << 23) | (mnt << 20));
    }
    FG_ASSERT(fmt == FG_FP8_E5M2);
    e = (code >> 2) & 31u;
    mnt = code & 3u;
    if (e == 31) /* inf, or NaN quieted with the payload kept (as fp16 -> fp32 does) */
        return fp8_f32_from_bits(mnt ? s | 0x7fc00000u | (mnt << 21) : s | 0x7f800000u);
    if (e == 0)
        return fp8_f32_from_bits(s | fp8_f32_bits((float)mnt * 0x1p-16f)); /* subnormal: mnt * 2^-16 */
    return fp8_f32_from_bits(s | ((e + 127 - 15) << 23) | (mnt << 21));
}

uint8_t fg_fp8_from_f32(float x, fg_fp8_format fmt)
{
    return fp8_encode(x, fmt);
}

uint8_t fg_fp8_from_f32_sat(float x, fg_fp8_format fmt)
{
    return fp8_encode_sat(x, fmt);
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
