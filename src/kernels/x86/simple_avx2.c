/* simple_avx2.c: AVX2 variants of the norms and RoPE written as plain float loops with
 * `omp simd`, which gcc vectorises with this file's -mavx2 -mfma flags. Same formulas
 * as the references, in float (the references reduce in double, so these are their
 * own loops; the ops that are the reference loop itself are in loops.h). */
#include <math.h>
#include <string.h>

#include "rope_angles.h"
#include "x86_impl.h"

enum { CB = 64 };

void fg_rmsnorm_forward_avx2(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C, ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++)
            ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = x[c] * r * weight[c];
        rstd[n] = r;
    }
}

/* y = x r w: dx = r w g - (r^3 / C) (sum_j w_j g_j x_j) x; dw = sum_n g x r. */
void fg_rmsnorm_backward_avx2(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                              const float *rstd, int N, int C)
{
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            float *d = dinp + (size_t)n * C, r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++)
                dot += weight[c] * g[c] * x[c];
            float k = r * r * r * dot / (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++)
                d[c] += r * weight[c] * g[c] - k * x[c];
        }
    }
    if (dweight) {
        int nblk = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
            float acc[CB] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
                float r = rstd[n];
#pragma omp simd
                for (int c = c0; c < c1; c++)
                    acc[c - c0] += g[c] * x[c] * r;
            }
            for (int c = c0; c < c1; c++)
                dweight[c] += acc[c - c0];
        }
    }
}

void fg_layernorm_forward_avx2(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                               const float *bias, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C, m = 0.0f, v = 0.0f;
#pragma omp simd reduction(+ : m)
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= (float)C;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        float r = 1.0f / sqrtf(v / (float)C + eps);
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - m) * r * weight[c] + (bias ? bias[c] : 0.0f);
        mean[n] = m;
        rstd[n] = r;
    }
}

/* dxhat = w g; dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat)); dw = sum g xhat; db = sum g. */
void fg_layernorm_backward_avx2(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, const float *mean, const float *rstd, int N, int C)
{
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            float *d = dinp + (size_t)n * C, m = mean[n], r = rstd[n], s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
            for (int c = 0; c < C; c++) {
                float dxh = weight[c] * g[c];
                s1 += dxh;
                s2 += dxh * (x[c] - m) * r;
            }
            s1 /= (float)C;
            s2 /= (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++)
                d[c] += r * (weight[c] * g[c] - s1 - (x[c] - m) * r * s2);
        }
    }
    if (dweight || dbias) {
        int nblk = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
            float aw[CB] = {0}, ab[CB] = {0};
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
                float m = mean[n], r = rstd[n];
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    aw[c - c0] += g[c] * (x[c] - m) * r;
                    ab[c - c0] += g[c];
                }
            }
            for (int c = c0; c < c1; c++) {
                if (dweight)
                    dweight[c] += aw[c - c0];
                if (dbias)
                    dbias[c] += ab[c - c0];
            }
        }
    }
}

static void rope_rotate(float *row, int NH, int HS, const float *cs, const float *sn)
{
    int half = HS / 2;
    for (int h = 0; h < NH; h++) {
        float *v = row + (size_t)h * HS;
#pragma omp simd
        for (int i = 0; i < half; i++) {
            float a = v[i], c = v[i + half];
            v[i] = a * cs[i] - c * sn[i];
            v[i + half] = a * sn[i] + c * cs[i];
        }
    }
}

void fg_rope_forward_avx2(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    fg_rope_rows(rope_rotate, x, B, T, NH, HS, row_stride, pos0, theta, 1.0);
}

void fg_rope_backward_avx2(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    fg_rope_rows(rope_rotate, dx, B, T, NH, HS, row_stride, pos0, theta, -1.0);
}
