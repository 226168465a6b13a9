/* act_ref.c: scalar reference GELU (tanh approximation) and SwiGLU, forward and
 * backward, computed in double. */
#include <math.h>

#include "frugal/kernels.h"

#define GELU_K 0.7978845608028654 /* sqrt(2/pi) */

void fg_gelu_forward_ref(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(GELU_K * (x + 0.044715 * x * x * x))));
    }
}

/* d/dx [0.5 x (1 + tanh(u))], u = k (x + 0.044715 x^3):
 * 0.5 (1 + tanh u) + 0.5 x sech^2(u) k (1 + 3 0.044715 x^2). */
void fg_gelu_backward_ref(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double u = GELU_K * (x + 0.044715 * x * x * x);
        double th = tanh(u);
        double d = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_K * (1.0 + 3.0 * 0.044715 * x * x);
        dinp[i] += (float)(d * dout[i]);
    }
}

void fg_swiglu_forward_ref(float *out, const float *inp, int N, int H)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H;
        for (int i = 0; i < H; i++) {
            double s = 1.0 / (1.0 + exp(-(double)a[i]));
            out[(size_t)n * H + i] = (float)(a[i] * s * b[i]);
        }
    }
}

/* out = a sig(a) b: da = g b sig(a) (1 + a (1 - sig(a))), db = g a sig(a). */
void fg_swiglu_backward_ref(float *dinp, const float *dout, const float *inp, int N, int H)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H;
        const float *g = dout + (size_t)n * H;
        float *da = dinp + (size_t)n * 2 * H, *db = da + H;
        for (int i = 0; i < H; i++) {
            double s = 1.0 / (1.0 + exp(-(double)a[i]));
            da[i] += (float)(g[i] * b[i] * s * (1.0 + a[i] * (1.0 - s)));
            db[i] += (float)(g[i] * a[i] * s);
        }
    }
}

/* gelu_backward_ref's value added to 0 (its += on a zeroed dinp), from the widened input. */
void fg_gelu_backward_bf16_ref(uint16_t *dinpb, float *dinp, const float *dout, const uint16_t *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float xf;
        fg_cvt_bf16_f32_ref(&xf, inp + i, 1);
        double x = xf;
        double u = GELU_K * (x + 0.044715 * x * x * x);
        double th = tanh(u);
        double d = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_K * (1.0 + 3.0 * 0.044715 * x * x);
        float v = 0.0f + (float)(d * dout[i]);
        if (dinp)
            dinp[i] = v;
        if (dinpb)
            fg_cvt_f32_bf16_ref(dinpb + i, &v, 1);
    }
}

/* swiglu_forward_ref's value, rounded. */
void fg_swiglu_forward_bf16_ref(uint16_t *out, const float *inp, int N, int H)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H;
        for (int i = 0; i < H; i++) {
            double s = 1.0 / (1.0 + exp(-(double)a[i]));
            float v = (float)(a[i] * s * b[i]);
            fg_cvt_f32_bf16_ref(out + (size_t)n * H + i, &v, 1);
        }
    }
}

/* swiglu_backward_ref's values added to 0 (its += on a zeroed dinp), rounded. */
void fg_swiglu_backward_bf16_ref(uint16_t *dinpb, const float *dout, const float *inp, int N, int H)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H;
        const float *g = dout + (size_t)n * H;
        uint16_t *da = dinpb + (size_t)n * 2 * H, *db = da + H;
        for (int i = 0; i < H; i++) {
            double s = 1.0 / (1.0 + exp(-(double)a[i]));
            float va = 0.0f + (float)(g[i] * b[i] * s * (1.0 + a[i] * (1.0 - s)));
            float vb = 0.0f + (float)(g[i] * a[i] * s);
            fg_cvt_f32_bf16_ref(da + i, &va, 1);
            fg_cvt_f32_bf16_ref(db + i, &vb, 1);
        }
    }
}
