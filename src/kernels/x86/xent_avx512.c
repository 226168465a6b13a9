/* xent_avx512.c: fused softmax + cross-entropy over padded logit rows (V up to
 * ~50k), AVX-512: a max pass, an exp-sum pass (keeping the exps in the gradient row
 * when asked) and a scaling pass per row (fp32, or rounded to bf16 for the bf16 head),
 * each streaming the row from L2; rows in parallel. */
#include <immintrin.h>
#include <math.h>

#include "bf16_avx512.h"
#include "vmath_avx512.h"
#include "x86_impl.h"
#include "xent_rows.h"

/* The max and exp-sum passes: returns log(sum exp x) and the sum; with d, each
 * exp(x - max) is stored in d. */
static double exp_pass(float *d, const float *x, int V, double *sum_out)
{
    /* max subtraction keeps exp() in range; four accumulators hide latency */
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int i = 0;
    for (; i + 64 <= V; i += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i < V; i += 16)
        m0 = _mm512_mask_max_ps(m0, fg_tail_mask(V - i), m0, _mm512_maskz_loadu_ps(fg_tail_mask(V - i), x + i));
    float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    /* exp-sum: float vectors within 1024-column chunks, chunks added in double, so
     * the float partial sums stay short (16 lanes x 4 x 16 terms) even at V = 50k. With
     * a gradient to write, each exp(x - max) is stored in d as it is summed, and the
     * gradient pass only scales it: one exp per logit, not two (the same bits: the
     * gradient pass computed exactly these values again). x[i] is read before d[i] is
     * written (aliasing). */
    __m512 vm = _mm512_set1_ps(mx);
    double sum = 0.0;
#define XENT_EXP(j, s)                                                                                                 \
    {                                                                                                                  \
        __m512 e_ = fg_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i + (j)), vm));                                        \
        if (d)                                                                                                         \
            _mm512_storeu_ps(d + i + (j), e_);                                                                         \
        s = _mm512_add_ps(s, e_);                                                                                      \
    }
    for (i = 0; i + 64 <= V;) {
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int end = i + 1024 < V ? i + 1024 : V; i + 64 <= end; i += 64) {
            XENT_EXP(0, s0)
            XENT_EXP(16, s1)
            XENT_EXP(32, s2)
            XENT_EXP(48, s3)
        }
        sum += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    }
#undef XENT_EXP
    for (; i < V; i += 16) {
        __mmask16 k = fg_tail_mask(V - i);
        __m512 e = fg_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
        if (d)
            _mm512_mask_storeu_ps(d + i, k, e);
        sum += _mm512_reduce_add_ps(_mm512_maskz_mov_ps(k, e));
    }
    *sum_out = sum;
    return mx + log(sum); /* sum >= 1: the maximum's own term */
}

static double xent_row(float *d, const float *x, int tgt, int V, float dloss)
{
    double sum, lse = exp_pass(d, x, V, &sum);
    if (d) {
        /* d = dloss * (softmax - onehot) = exp(x - max) * (dloss / sum) - dloss onehot:
         * x - max is exact for the large terms (no float lse rounding in the exponent) */
        __m512 vs = _mm512_set1_ps((float)(dloss / sum));
        for (int i = 0; i < V; i += 16) {
            __mmask16 k = fg_tail_mask(V - i);
            _mm512_mask_storeu_ps(d + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, d + i), vs));
        }
        d[tgt] -= dloss;
    }
    return lse;
}

/* xent_row's result rounded to bf16 as the scaling pass makes it: the exps stay in x
 * (fp32, in L2), each 16 products are rounded and stored, the target's value (product
 * minus dloss, two fp32 roundings as xent_row makes them) is rounded last. */
static double xent_row_bf16(uint16_t *d, float *x, int tgt, int V, float dloss)
{
    double sum, lse = exp_pass(x, x, V, &sum);
    float vsf = (float)(dloss / sum);
    __m512 vs = _mm512_set1_ps(vsf);
    int unit = fg_bf16_unit_on();
    for (int i = 0; i < V; i += 32) {
        __mmask32 k = fg_tail32((size_t)(V - i));
        __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps((__mmask16)k, x + i), vs);
        __m512 hi = _mm512_mul_ps(_mm512_maskz_loadu_ps((__mmask16)(k >> 16), x + i + 16), vs);
        fg_store_bf16x32(d + i, lo, hi, k, unit);
    }
    /* volatile: the product is rounded to fp32 before the subtraction (no contraction
     * into an fma, which xent_row's store between them also rules out) */
    volatile float p = x[tgt] * vsf;
    d[tgt] = fg_rne1(p - dloss);
    return lse;
}

double fg_softmax_xent_bf16_avx512(uint16_t *dlogits, float *losses, float *logits, const int32_t *targets, int N,
                                   int V, int Vp, float dloss)
{
    return fg_xent_rows_bf16(NULL, NULL, xent_row_bf16, dlogits, losses, logits, targets, N, V, Vp, dloss);
}

double fg_softmax_xent_avx512(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V,
                              int Vp, float dloss)
{
    return fg_xent_rows(xent_row, dlogits, losses, logits, targets, N, V, Vp, dloss);
}
