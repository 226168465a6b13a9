/* norm_avx512.c: RMSNorm and LayerNorm forward/backward, AVX-512. Row statistics in
 * float vectors (rows are <= a few thousand wide); the input gradient is parallel
 * over rows, the weight/bias gradients over 64-column blocks (each thread sums its
 * columns over all rows), so no two threads write one location. */
#include <immintrin.h>
#include <math.h>

#include "bf16_avx512.h"
#include "frugal/core.h"
#include "vmath_avx512.h"
#include "x86_impl.h"

enum { CB = 64 };

static inline float dot_row(const float *a, const float *b, int C)
{
    __m512 s = _mm512_setzero_ps();
    for (int c = 0; c < C; c += 16) {
        __mmask16 k = fg_tail_mask(C - c);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + c), _mm512_maskz_loadu_ps(k, b + c), s);
    }
    return _mm512_reduce_add_ps(s);
}

void fg_rmsnorm_forward_avx512(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps)
{
    FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, n, 0, N, {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float r = 1.0f / sqrtf(dot_row(x, x, C) / (float)C + eps);
        __m512 vr = _mm512_set1_ps(r);
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = fg_tail_mask(C - c);
            __m512 y =
                _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + c), vr), _mm512_maskz_loadu_ps(k, weight + c));
            _mm512_mask_storeu_ps(o + c, k, y);
        }
        rstd[n] = r;
    });
}

/* y = x r w: dx = r w g - (r^3 / C) (sum_j w_j g_j x_j) x; dw = sum_n g x r. */
void fg_rmsnorm_backward_avx512(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                                const float *rstd, int N, int C)
{
    if (dinp) {
        FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, n, 0, N, {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            float *d = dinp + (size_t)n * C;
            float r = rstd[n];
            __m512 s = _mm512_setzero_ps();
            for (int c = 0; c < C; c += 16) {
                __mmask16 k = fg_tail_mask(C - c);
                __m512 wg = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, g + c));
                s = _mm512_fmadd_ps(wg, _mm512_maskz_loadu_ps(k, x + c), s);
            }
            __m512 vk = _mm512_set1_ps(-r * r * r * _mm512_reduce_add_ps(s) / (float)C), vr = _mm512_set1_ps(r);
            for (int c = 0; c < C; c += 16) {
                __mmask16 k = fg_tail_mask(C - c);
                __m512 wg = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, g + c));
                __m512 v = _mm512_fmadd_ps(vk, _mm512_maskz_loadu_ps(k, x + c), _mm512_mul_ps(vr, wg));
                _mm512_mask_storeu_ps(d + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, d + c), v));
            }
        });
    }
    if (dweight) {
        int nblk = (C + CB - 1) / CB;
        FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, blk, 0, nblk, {
            int c0 = blk * CB;
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
                __m512 vr = _mm512_set1_ps(rstd[n]);
                for (int v = 0; v < 4; v++) {
                    __mmask16 k = fg_tail_mask(C - c0 - 16 * v > 0 ? C - c0 - 16 * v : 0);
                    __m512 xr = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + 16 * v), vr);
                    acc[v] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, g + 16 * v), xr, acc[v]);
                }
            }
            for (int v = 0; v < 4; v++) {
                __mmask16 k = fg_tail_mask(C - c0 - 16 * v > 0 ? C - c0 - 16 * v : 0);
                float *w = dweight + c0 + 16 * v;
                _mm512_mask_storeu_ps(w, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, w), acc[v]));
            }
        });
    }
}

/* fg_rmsnorm_forward_avx512 with weight 1 (the same operations: x r 1), rounded to bf16 by
 * the rule cvt_f32_bf16's variant uses, then bf16_affine of the rounded lanes (one
 * multiply, + 0: bf16_affine with b NULL), per row in registers and L1: the saved x-hat
 * and the next GEMM's operand without an fp32 x-hat written and read back twice. */
void fg_rmsnorm_forward_bf16_avx512(uint16_t *xhat, uint16_t *out, float *outf, float *rstd, const float *inp,
                                    const float *w, int N, int C, float eps)
{
    int unit = fg_bf16_unit_on();
    FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, n, 0, N, {
        const float *x = inp + (size_t)n * C;
        uint16_t *xo = xhat + (size_t)n * C;
        float r = 1.0f / sqrtf(dot_row(x, x, C) / (float)C + eps);
        __m512 vr = _mm512_set1_ps(r), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 32) {
            __mmask32 k = fg_tail32((size_t)(C - c));
            __m512 y[2];
            for (int h = 0; h < 2; h++) {
                __mmask16 kh = (__mmask16)(k >> (16 * h));
                y[h] = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(kh, x + c + 16 * h), vr), one);
            }
            __m512i hb = fg_store_bf16x32(xo + c, y[0], y[1], k, unit);
            for (int h = 0; h < 2; h++) {
                __mmask16 kh = (__mmask16)(k >> (16 * h));
                __m256i q = h ? _mm512_extracti64x4_epi64(hb, 1) : _mm512_castsi512_si256(hb);
                __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(q), 16));
                y[h] = _mm512_add_ps(_mm512_mul_ps(v, _mm512_maskz_loadu_ps(kh, w + c + 16 * h)), zero);
                if (outf)
                    _mm512_mask_storeu_ps(outf + (size_t)n * C + c + 16 * h, kh, y[h]);
            }
            if (out)
                fg_store_bf16x32(out + (size_t)n * C + c, y[0], y[1], k, unit);
        }
        rstd[n] = r;
    });
}

/* The rebuilt input x-hat / rstd + 0 of 16 lanes (one multiply, one add: as the model's
 * rebuild pass, whose output rmsnorm_backward read). */
static inline __m512 rebuilt16(const uint16_t *xh, __m512 inv, __mmask16 k)
{
    __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, xh)), 16));
    return _mm512_add_ps(_mm512_mul_ps(v, inv), _mm512_setzero_ps());
}

/* fg_rmsnorm_backward_avx512 with each load of inp replaced by rebuilt16. */
void fg_rmsnorm_backward_bf16_avx512(float *dinp, float *dweight, const float *dout, const uint16_t *xhat,
                                     const float *weight, const float *rstd, int N, int C)
{
    if (dinp) {
        FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, n, 0, N, {
            const uint16_t *x = xhat + (size_t)n * C;
            const float *g = dout + (size_t)n * C;
            float *d = dinp + (size_t)n * C;
            float r = rstd[n];
            __m512 inv = _mm512_set1_ps(1.0f / r), s = _mm512_setzero_ps();
            for (int c = 0; c < C; c += 16) {
                __mmask16 k = fg_tail_mask(C - c);
                __m512 wg = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, g + c));
                s = _mm512_fmadd_ps(wg, rebuilt16(x + c, inv, k), s);
            }
            __m512 vk = _mm512_set1_ps(-r * r * r * _mm512_reduce_add_ps(s) / (float)C), vr = _mm512_set1_ps(r);
            for (int c = 0; c < C; c += 16) {
                __mmask16 k = fg_tail_mask(C - c);
                __m512 wg = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, g + c));
                __m512 v = _mm512_fmadd_ps(vk, rebuilt16(x + c, inv, k), _mm512_mul_ps(vr, wg));
                _mm512_mask_storeu_ps(d + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, d + c), v));
            }
        });
    }
    if (dweight) {
        int nblk = (C + CB - 1) / CB;
        FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, blk, 0, nblk, {
            int c0 = blk * CB;
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int n = 0; n < N; n++) {
                const uint16_t *x = xhat + (size_t)n * C + c0;
                const float *g = dout + (size_t)n * C + c0;
                __m512 vr = _mm512_set1_ps(rstd[n]), inv = _mm512_set1_ps(1.0f / rstd[n]);
                for (int v = 0; v < 4; v++) {
                    __mmask16 k = fg_tail_mask(C - c0 - 16 * v > 0 ? C - c0 - 16 * v : 0);
                    __m512 xr = _mm512_mul_ps(rebuilt16(x + 16 * v, inv, k), vr);
                    acc[v] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, g + 16 * v), xr, acc[v]);
                }
            }
            for (int v = 0; v < 4; v++) {
                __mmask16 k = fg_tail_mask(C - c0 - 16 * v > 0 ? C - c0 - 16 * v : 0);
                float *w = dweight + c0 + 16 * v;
                _mm512_mask_storeu_ps(w, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, w), acc[v]));
            }
        });
    }
}

void fg_layernorm_forward_avx512(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                 const float *bias, int N, int C, float eps)
{
    FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, n, 0, N, {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        __m512 s = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 16)
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(fg_tail_mask(C - c), x + c));
        float m = _mm512_reduce_add_ps(s) / (float)C;
        __m512 vm = _mm512_set1_ps(m), v2 = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 16) { /* two-pass variance: no cancellation */
            __mmask16 k = fg_tail_mask(C - c);
            __m512 xc = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + c), vm);
            v2 = _mm512_fmadd_ps(xc, xc, v2);
        }
        float r = 1.0f / sqrtf(_mm512_reduce_add_ps(v2) / (float)C + eps);
        __m512 vr = _mm512_set1_ps(r);
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = fg_tail_mask(C - c);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), vm), vr);
            __m512 b = bias ? _mm512_maskz_loadu_ps(k, bias + c) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(o + c, k, _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(k, weight + c), b));
        }
        mean[n] = m;
        rstd[n] = r;
    });
}

/* layernorm_forward with weight 1 and bias 0 (x-hat, as fma(xh, 1, 0) makes it: -0 -> +0)
 * rounded to bf16, then bf16_affine of that rounded row, per row in registers and L1:
 * the saved x-hat and the next GEMM's operand without the fp32 output written and read
 * back twice. */
void fg_layernorm_forward_bf16_avx512(uint16_t *xhat, uint16_t *out, float *mean, float *rstd, const float *inp,
                                      const float *w, const float *b, int N, int C, float eps)
{
    int unit = fg_bf16_unit_on();
    FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, n, 0, N, {
        const float *x = inp + (size_t)n * C;
        uint16_t *xo = xhat + (size_t)n * C, *o = out + (size_t)n * C;
        __m512 s = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 16)
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(fg_tail_mask(C - c), x + c));
        float m = _mm512_reduce_add_ps(s) / (float)C;
        __m512 vm = _mm512_set1_ps(m), v2 = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = fg_tail_mask(C - c);
            __m512 xc = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + c), vm);
            v2 = _mm512_fmadd_ps(xc, xc, v2);
        }
        float r = 1.0f / sqrtf(_mm512_reduce_add_ps(v2) / (float)C + eps);
        __m512 vr = _mm512_set1_ps(r), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 32) {
            __mmask32 k = fg_tail32((size_t)(C - c));
            __m512 y[2];
            for (int h = 0; h < 2; h++) {
                __mmask16 kh = (__mmask16)(k >> (16 * h));
                __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(kh, x + c + 16 * h), vm), vr);
                y[h] = _mm512_fmadd_ps(xh, one, zero);
            }
            __m512i hb = fg_store_bf16x32(xo + c, y[0], y[1], k, unit);
            for (int h = 0; h < 2; h++) {
                __mmask16 kh = (__mmask16)(k >> (16 * h));
                __m256i q = h ? _mm512_extracti64x4_epi64(hb, 1) : _mm512_castsi512_si256(hb);
                __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(q), 16));
                v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(kh, w + c + 16 * h));
                y[h] = _mm512_add_ps(v, b ? _mm512_maskz_loadu_ps(kh, b + c + 16 * h) : zero);
            }
            fg_store_bf16x32(o + c, y[0], y[1], k, unit);
        }
        mean[n] = m;
        rstd[n] = r;
    });
}

/* dxhat = w g; dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat)); dw = sum g xhat; db = sum g. */
void fg_layernorm_backward_avx512(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                  const float *weight, const float *mean, const float *rstd, int N, int C)
{
    if (dinp) {
        FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, n, 0, N, {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            float *d = dinp + (size_t)n * C;
            __m512 vm = _mm512_set1_ps(mean[n]), vr = _mm512_set1_ps(rstd[n]);
            __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps();
            for (int c = 0; c < C; c += 16) {
                __mmask16 k = fg_tail_mask(C - c);
                __m512 dxh = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, g + c));
                __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), vm), vr);
                s1 = _mm512_add_ps(s1, dxh);
                s2 = _mm512_fmadd_ps(dxh, xh, s2);
            }
            __m512 m1 = _mm512_set1_ps(_mm512_reduce_add_ps(s1) / (float)C);
            __m512 m2 = _mm512_set1_ps(_mm512_reduce_add_ps(s2) / (float)C);
            for (int c = 0; c < C; c += 16) {
                __mmask16 k = fg_tail_mask(C - c);
                __m512 dxh = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, g + c));
                __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), vm), vr);
                __m512 v = _mm512_mul_ps(vr, _mm512_fnmadd_ps(xh, m2, _mm512_sub_ps(dxh, m1)));
                _mm512_mask_storeu_ps(d + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, d + c), v));
            }
        });
    }
    if (dweight || dbias) {
        int nblk = (C + CB - 1) / CB;
        FG_ROWS_FOR((size_t)N * C >= FG_PAR_MIN_ELEMS, int, blk, 0, nblk, {
            int c0 = blk * CB;
            __m512 aw[4], ab[4];
            for (int v = 0; v < 4; v++)
                aw[v] = ab[v] = _mm512_setzero_ps();
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C + c0, *g = dout + (size_t)n * C + c0;
                __m512 vm = _mm512_set1_ps(mean[n]), vr = _mm512_set1_ps(rstd[n]);
                for (int v = 0; v < 4; v++) {
                    __mmask16 k = fg_tail_mask(C - c0 - 16 * v > 0 ? C - c0 - 16 * v : 0);
                    __m512 gg = _mm512_maskz_loadu_ps(k, g + 16 * v);
                    __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + 16 * v), vm), vr);
                    aw[v] = _mm512_fmadd_ps(gg, xh, aw[v]);
                    ab[v] = _mm512_add_ps(ab[v], gg);
                }
            }
            for (int v = 0; v < 4; v++) {
                __mmask16 k = fg_tail_mask(C - c0 - 16 * v > 0 ? C - c0 - 16 * v : 0);
                if (dweight)
                    _mm512_mask_storeu_ps(dweight + c0 + 16 * v, k,
                                          _mm512_add_ps(_mm512_maskz_loadu_ps(k, dweight + c0 + 16 * v), aw[v]));
                if (dbias)
                    _mm512_mask_storeu_ps(dbias + c0 + 16 * v, k,
                                          _mm512_add_ps(_mm512_maskz_loadu_ps(k, dbias + c0 + 16 * v), ab[v]));
            }
        });
    }
}
