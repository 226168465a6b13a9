/* act_avx512.c: GELU (tanh form, computed as x * sigmoid(2u), which equals
 * 0.5 x (1 + tanh u) without the cancellation of 1 + tanh near -1) and SwiGLU,
 * forward and backward, AVX-512 with the vector exp of vmath_avx512.h. */
#include <immintrin.h>

#include "bf16_avx512.h"
#include "vmath_avx512.h"
#include "x86_impl.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

enum { CHUNK = 4096 }; /* elements per OpenMP work item */

/* u = k (x + c x^3), from x and x^2 (the backward needs x^2 again). */
static inline __m512 gelu_u(__m512 x, __m512 x2)
{
    return _mm512_mul_ps(_mm512_set1_ps(GELU_K), _mm512_fmadd_ps(_mm512_mul_ps(x2, x), _mm512_set1_ps(GELU_C), x));
}

void fg_gelu_forward_avx512(float *out, const float *inp, size_t n)
{
    FG_FOR_CHUNKS512(n, CHUNK, FG_PAR_MIN_ELEMS / CHUNK, {
        __m512 x = _mm512_maskz_loadu_ps(k, inp + i);
        __m512 u = gelu_u(x, _mm512_mul_ps(x, x));
        __m512 s = fg_sigmoid512(_mm512_add_ps(u, u));
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(x, s));
    });
}

/* d/dx [x s(2u)] = s + 2 x s (1 - s) u', u' = k (1 + 3 c x^2); matches the reference's
 * 0.5 (1 + tanh u) + 0.5 x sech^2(u) u' since 1 + tanh u = 2s, sech^2 u = 4 s (1 - s). */
static inline __m512 gelu_grad(__m512 x)
{
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = gelu_u(x, x2);
    __m512 du =
        _mm512_mul_ps(_mm512_set1_ps(GELU_K), _mm512_fmadd_ps(x2, _mm512_set1_ps(3.0f * GELU_C), _mm512_set1_ps(1.0f)));
    __m512 s = fg_sigmoid512(_mm512_add_ps(u, u));
    __m512 sq = _mm512_mul_ps(s, _mm512_sub_ps(_mm512_set1_ps(1.0f), s));
    return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_add_ps(x, x), sq), du, s);
}

void fg_gelu_backward_avx512(float *dinp, const float *dout, const float *inp, size_t n)
{
    FG_FOR_CHUNKS512(n, CHUNK, FG_PAR_MIN_ELEMS / CHUNK, {
        __m512 g = gelu_grad(_mm512_maskz_loadu_ps(k, inp + i));
        __m512 d = _mm512_maskz_loadu_ps(k, dinp + i);
        _mm512_mask_storeu_ps(dinp + i, k, _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(k, dout + i), d));
    });
}

/* gelu_backward on a zeroed dinp (the fma's addend +0), the input widened from bf16; the
 * bf16 model's FC input gradient written once in fp32 (bias gradient) and in bf16 (the
 * GEMMs' operand): no memset, no conversion pass. */
static inline __m512 gelu_grad_set(const uint16_t *inp, const float *dout, __mmask16 k)
{
    __m512 x = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, inp)), 16));
    return _mm512_fmadd_ps(gelu_grad(x), _mm512_maskz_loadu_ps(k, dout), _mm512_setzero_ps());
}

void fg_gelu_backward_bf16_avx512(uint16_t *dinpb, float *dinp, const float *dout, const uint16_t *inp, size_t n)
{
    size_t nchunk = (n + CHUNK - 1) / CHUNK;
    int unit = fg_bf16_unit_on();
#pragma omp parallel for schedule(static) if (n > FG_PAR_MIN_ELEMS)
    for (size_t ch = 0; ch < nchunk; ch++) {
        size_t end = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
        for (size_t i = ch * CHUNK; i < end; i += 32) { /* CHUNK is a multiple of 32 */
            __mmask32 k = fg_tail32(end - i);
            __m512 lo = gelu_grad_set(inp + i, dout + i, (__mmask16)k);
            __m512 hi = gelu_grad_set(inp + i + 16, dout + i + 16, (__mmask16)(k >> 16));
            if (dinp) {
                _mm512_mask_storeu_ps(dinp + i, (__mmask16)k, lo);
                _mm512_mask_storeu_ps(dinp + i + 16, (__mmask16)(k >> 16), hi);
            }
            if (dinpb)
                fg_store_bf16x32(dinpb + i, lo, hi, k, unit);
        }
    }
}

/* One row of out = a s(a) b. The row loops run inline below FG_PAR_MIN_ELEMS, outside
 * any OpenMP construct: a region with a false `if` still calls GOMP_parallel (and a
 * futex wake), and the MoE experts call these from inside their own region. */
static inline void swiglu_fwd_row(float *o, const float *a, int H)
{
    const float *b = a + H;
    for (int i = 0; i < H; i += 16) {
        __mmask16 k = fg_tail_mask(H - i);
        __m512 x = _mm512_maskz_loadu_ps(k, a + i);
        __m512 y = _mm512_mul_ps(_mm512_mul_ps(x, fg_sigmoid512(x)), _mm512_maskz_loadu_ps(k, b + i));
        _mm512_mask_storeu_ps(o + i, k, y);
    }
}

void fg_swiglu_forward_avx512(float *out, const float *inp, int N, int H)
{
    if ((size_t)N * H < FG_PAR_MIN_ELEMS) {
        for (int n = 0; n < N; n++)
            swiglu_fwd_row(out + (size_t)n * H, inp + (size_t)n * 2 * H, H);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        swiglu_fwd_row(out + (size_t)n * H, inp + (size_t)n * 2 * H, H);
}

/* out = a s(a) b: da += g b s (1 + a (1 - s)), db += g a s. */
static inline void swiglu_bwd_row(float *da, const float *g, const float *a, int H)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const float *b = a + H;
    float *db = da + H;
    for (int i = 0; i < H; i += 16) {
        __mmask16 k = fg_tail_mask(H - i);
        __m512 x = _mm512_maskz_loadu_ps(k, a + i), y = _mm512_maskz_loadu_ps(k, b + i);
        __m512 gg = _mm512_maskz_loadu_ps(k, g + i), s = fg_sigmoid512(x);
        __m512 ga =
            _mm512_mul_ps(_mm512_mul_ps(gg, y), _mm512_mul_ps(s, _mm512_fmadd_ps(x, _mm512_sub_ps(one, s), one)));
        _mm512_mask_storeu_ps(da + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, da + i), ga));
        __m512 gb = _mm512_mul_ps(gg, _mm512_mul_ps(x, s));
        _mm512_mask_storeu_ps(db + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, db + i), gb));
    }
}

void fg_swiglu_backward_avx512(float *dinp, const float *dout, const float *inp, int N, int H)
{
    if ((size_t)N * H < FG_PAR_MIN_ELEMS) {
        for (int n = 0; n < N; n++)
            swiglu_bwd_row(dinp + (size_t)n * 2 * H, dout + (size_t)n * H, inp + (size_t)n * 2 * H, H);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        swiglu_bwd_row(dinp + (size_t)n * 2 * H, dout + (size_t)n * H, inp + (size_t)n * 2 * H, H);
}

/* swiglu_forward's lanes (the same operations), rounded 32 at a time by the rule
 * cvt_f32_bf16's variant uses: the fp32 output is never written. */
static inline __m512 swiglu_fwd16(const float *a, const float *b, __mmask16 k)
{
    __m512 x = _mm512_maskz_loadu_ps(k, a);
    return _mm512_mul_ps(_mm512_mul_ps(x, fg_sigmoid512(x)), _mm512_maskz_loadu_ps(k, b));
}

static inline void swiglu_fwd_row_bf16(uint16_t *o, const float *a, int H, int unit)
{
    const float *b = a + H;
    for (int i = 0; i < H; i += 32) {
        __mmask32 k = fg_tail32((size_t)(H - i));
        __m512 lo = swiglu_fwd16(a + i, b + i, (__mmask16)k);
        __m512 hi = swiglu_fwd16(a + i + 16, b + i + 16, (__mmask16)(k >> 16));
        fg_store_bf16x32(o + i, lo, hi, k, unit);
    }
}

void fg_swiglu_forward_bf16_avx512(uint16_t *out, const float *inp, int N, int H)
{
    int unit = fg_bf16_unit_on();
    if ((size_t)N * H < FG_PAR_MIN_ELEMS) {
        for (int n = 0; n < N; n++)
            swiglu_fwd_row_bf16(out + (size_t)n * H, inp + (size_t)n * 2 * H, H, unit);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        swiglu_fwd_row_bf16(out + (size_t)n * H, inp + (size_t)n * 2 * H, H, unit);
}

/* swiglu_bwd_row's two gradients for 16 lanes, each added to +0 (its += on a zeroed row). */
static inline void swiglu_bwd16(__m512 *ga, __m512 *gb, const float *g, const float *a, const float *b, __mmask16 k)
{
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    __m512 x = _mm512_maskz_loadu_ps(k, a), y = _mm512_maskz_loadu_ps(k, b);
    __m512 gg = _mm512_maskz_loadu_ps(k, g), s = fg_sigmoid512(x);
    __m512 va = _mm512_mul_ps(_mm512_mul_ps(gg, y), _mm512_mul_ps(s, _mm512_fmadd_ps(x, _mm512_sub_ps(one, s), one)));
    *ga = _mm512_add_ps(zero, va);
    *gb = _mm512_add_ps(zero, _mm512_mul_ps(gg, _mm512_mul_ps(x, s)));
}

static inline void swiglu_bwd_row_bf16(uint16_t *da, const float *g, const float *a, int H, int unit)
{
    const float *b = a + H;
    uint16_t *db = da + H;
    for (int i = 0; i < H; i += 32) {
        __mmask32 k = fg_tail32((size_t)(H - i));
        __m512 a0, b0, a1, b1;
        swiglu_bwd16(&a0, &b0, g + i, a + i, b + i, (__mmask16)k);
        swiglu_bwd16(&a1, &b1, g + i + 16, a + i + 16, b + i + 16, (__mmask16)(k >> 16));
        fg_store_bf16x32(da + i, a0, a1, k, unit);
        fg_store_bf16x32(db + i, b0, b1, k, unit);
    }
}

void fg_swiglu_backward_bf16_avx512(uint16_t *dinpb, const float *dout, const float *inp, int N, int H)
{
    int unit = fg_bf16_unit_on();
    if ((size_t)N * H < FG_PAR_MIN_ELEMS) {
        for (int n = 0; n < N; n++)
            swiglu_bwd_row_bf16(dinpb + (size_t)n * 2 * H, dout + (size_t)n * H, inp + (size_t)n * 2 * H, H, unit);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        swiglu_bwd_row_bf16(dinpb + (size_t)n * 2 * H, dout + (size_t)n * H, inp + (size_t)n * 2 * H, H, unit);
}
