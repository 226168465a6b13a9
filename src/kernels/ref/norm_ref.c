/* norm_ref.c: scalar reference RMSNorm and LayerNorm, forward and backward, with
 * per-row statistics in double. Row loops run in parallel; the weight gradients are
 * reduced by a second loop over channels so no two threads write one location. */
#include <math.h>

#include "frugal/kernels.h"

void fg_rmsnorm_forward_ref(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++)
            ss += (double)x[c] * x[c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++)
            o[c] = (float)(x[c] * r * weight[c]);
        rstd[n] = (float)r;
    }
}

/* Forward: y_c = x_c r w_c with r = (mean(x^2) + eps)^(-1/2), so
 * dx_c = r w_c g_c - r^3 x_c / C * sum_j w_j g_j x_j and dw_c = sum_n g_c x_c r. */
void fg_rmsnorm_backward_ref(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                             const float *rstd, int N, int C)
{
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            double r = rstd[n], dot = 0.0;
            for (int c = 0; c < C; c++)
                dot += (double)weight[c] * g[c] * x[c];
            double k = r * r * r * dot / C;
            float *d = dinp + (size_t)n * C;
            for (int c = 0; c < C; c++)
                d[c] += (float)(r * weight[c] * g[c] - k * x[c]);
        }
    }
    if (dweight) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++)
                acc += (double)dout[(size_t)n * C + c] * inp[(size_t)n * C + c] * rstd[n];
            dweight[c] += (float)acc;
        }
    }
}

/* rmsnorm_forward_ref with weight 1, its rounding, bf16_affine_ref of that (a reference:
 * the two-pass route through scratch arrays). */
void fg_rmsnorm_forward_bf16_ref(uint16_t *xhat, uint16_t *out, float *outf, float *rstd, const float *inp,
                                 const float *w, int N, int C, float eps)
{
    size_t n = (size_t)N * C;
    float *y = fg_malloc((n ? n : 1) * sizeof(float)), *ones = fg_malloc((size_t)C * sizeof(float));
    FG_ASSERT(y && ones);
    for (int c = 0; c < C; c++)
        ones[c] = 1.0f;
    fg_rmsnorm_forward_ref(y, rstd, inp, ones, N, C, eps);
    fg_cvt_f32_bf16_ref(xhat, y, n);
    fg_bf16_affine_ref(out, outf, xhat, w, NULL, N, C);
    fg_free(y);
    fg_free(ones);
}

/* rmsnorm_backward_ref on the rebuilt input, held in a scratch array (a reference). */
void fg_rmsnorm_backward_bf16_ref(float *dinp, float *dweight, const float *dout, const uint16_t *xhat,
                                  const float *weight, const float *rstd, int N, int C)
{
    size_t n = (size_t)N * C;
    float *inp = fg_malloc((n ? n : 1) * sizeof(float));
    FG_ASSERT(inp);
    fg_cvt_bf16_f32_ref(inp, xhat, n);
    for (int r = 0; r < N; r++) {
        float inv = 1.0f / rstd[r], *x = inp + (size_t)r * C;
        for (int c = 0; c < C; c++)
            x[c] = x[c] * inv + 0.0f;
    }
    fg_rmsnorm_backward_ref(dinp, dweight, dout, inp, weight, rstd, N, C);
    fg_free(inp);
}

void fg_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= C; /* biased variance, as torch.nn.LayerNorm */
        double r = 1.0 / sqrt(v + eps);
        for (int c = 0; c < C; c++)
            o[c] = (float)((x[c] - m) * r * weight[c] + (bias ? bias[c] : 0.0f));
        mean[n] = (float)m;
        rstd[n] = (float)r;
    }
}

/* Forward: y_c = xhat_c w_c + b_c, xhat = (x - mean) r. With dxhat_c = w_c g_c:
 * dx_c = r (dxhat_c - mean_j(dxhat_j) - xhat_c mean_j(dxhat_j xhat_j)). */
void fg_layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N, int C)
{
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            double m = mean[n], r = rstd[n], s1 = 0.0, s2 = 0.0;
            for (int c = 0; c < C; c++) {
                double dxh = (double)weight[c] * g[c];
                s1 += dxh;
                s2 += dxh * (x[c] - m) * r;
            }
            s1 /= C;
            s2 /= C;
            float *d = dinp + (size_t)n * C;
            for (int c = 0; c < C; c++) {
                double xh = (x[c] - m) * r;
                d[c] += (float)(r * ((double)weight[c] * g[c] - s1 - xh * s2));
            }
        }
    }
    if (dweight || dbias) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            double aw = 0.0, ab = 0.0;
            for (int n = 0; n < N; n++) {
                double g = dout[(size_t)n * C + c];
                aw += g * (inp[(size_t)n * C + c] - (double)mean[n]) * rstd[n];
                ab += g;
            }
            if (dweight)
                dweight[c] += (float)aw;
            if (dbias)
                dbias[c] += (float)ab;
        }
    }
}

/* layernorm_forward_ref's rows with weight 1, bias 0, rounded to bf16 (the saved x-hat),
 * then bf16_affine_ref of them: the two-pass route's arithmetic, term for term. */
void fg_layernorm_forward_bf16_ref(uint16_t *xhat, uint16_t *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= C;
        double r = 1.0 / sqrt(v + eps);
        for (int c = 0; c < C; c++) {
            float xh = (float)((x[c] - m) * r * 1.0f + 0.0f);
            fg_cvt_f32_bf16_ref(xhat + (size_t)n * C + c, &xh, 1);
        }
        mean[n] = (float)m;
        rstd[n] = (float)r;
    }
    fg_bf16_affine_ref(out, NULL, xhat, w, b, N, C);
}
