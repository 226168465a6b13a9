/* quant_ref.c: scalar references of the QAT fake-quantization ops (row ranges, the
 * quantize-dequantize, the straight-through mask): src/precision/quant.c's rules, which
 * every variant matches bit for bit. */
#include <math.h>

#include "frugal/kernels.h"

/* fmaxf(m, a) for an m that is never NaN (a NaN a leaves m), without the libm call. */
static inline float max_abs(float m, float x)
{
    float a = fabsf(x);
    return a > m ? a : m;
}

void fg_fq_scales_ref(float *scale, const float *x, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++)
            m = max_abs(m, xr[c]);
        scale[r] = m > 0.0f ? m / 127.0f : 1.0f;
    }
}

/* clamp keeps a NaN code NaN (both compares false), as quant.c's clampq */
static inline float clamp127(float q)
{
    return q < -127.0f ? -127.0f : q > 127.0f ? 127.0f : q;
}

/* + 0.0f: PyTorch's fake quantization holds the code as an int64, so a small negative
 * value's -0 code becomes +0 and its output +0 (not folded away without -ffast-math). */
void fg_fake_quant_ref(float *out, const float *x, const float *scale, int stride, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int r = 0; r < N; r++) {
        float s = scale[(size_t)r * stride], inv = 1.0f / s;
        size_t o = (size_t)r * C;
        for (int c = 0; c < C; c++)
            out[o + c] = (clamp127(nearbyintf(x[o + c] * inv)) + 0.0f) * s;
    }
}

void fg_fake_quant_mask_ref(float *dx, const float *dout, const float *x, const float *scale, int stride, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int r = 0; r < N; r++) {
        float inv = 1.0f / scale[(size_t)r * stride];
        size_t o = (size_t)r * C;
        for (int c = 0; c < C; c++) {
            float q = nearbyintf(x[o + c] * inv);
            dx[o + c] = q >= -127.0f && q <= 127.0f ? dout[o + c] : 0.0f;
        }
    }
}
