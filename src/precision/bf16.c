/* bf16.c: the scalar fp32 <-> bf16 codec (round to nearest even, NaN quieted with its
 * sign and top payload kept), the reference the vectorised row converters in
 * src/kernels are checked against. Leaves out stochastic rounding (nothing uses it). */
#include <string.h>

#include "frugal/precision.h"

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

uint16_t fg_bf16_from_f32(float x)
{
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u); /* quiet bit: a payload only in the low half stays NaN */
    /* Adding 0x7fff rounds up past the halfway point; adding the kept lsb as well makes
     * the exact halfway case round up only from an odd lsb (ties to even). A carry out of
     * the mantissa bumps the exponent, which is the right answer, up to inf at the top. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float fg_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

void fg_bf16_from_f32_array(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = fg_bf16_from_f32(in[i]);
}

void fg_bf16_to_f32_array(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = fg_bf16_to_f32(in[i]);
}
