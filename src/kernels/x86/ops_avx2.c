/* ops_avx2.c: AVX2 variants of the ops whose references are slowest (they call libm
 * exp/tanh per element): softmax + cross-entropy, GELU, SwiGLU, and AdamW. Same
 * formulas as the AVX-512 files; full vectors in the loops, scalar tails. */
#include <immintrin.h>
#include <math.h>

#include "vmath_avx2.h"
#include "x86_impl.h"
#include "xent_rows.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax256(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static double xent_row(float *d, const float *x, int tgt, int V, float dloss)
{
    int V8 = V & ~7, i;
    __m256 m0 = _mm256_set1_ps(-INFINITY);
    for (i = 0; i < V8; i += 8)
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    float mx = hmax256(m0);
    for (; i < V; i++)
        mx = x[i] > mx ? x[i] : mx;
    /* exp-sum: float vectors within 1024-column chunks, chunks added in double */
    __m256 vm = _mm256_set1_ps(mx);
    double sum = 0.0;
    for (i = 0; i + 16 <= V8;) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        for (int end = i + 1024 < V8 ? i + 1024 : V8; i + 16 <= end; i += 16) {
            s0 = _mm256_add_ps(s0, fg_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
            s1 = _mm256_add_ps(s1, fg_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm)));
        }
        sum += hsum256(_mm256_add_ps(s0, s1));
    }
    for (; i < V8; i += 8)
        sum += hsum256(fg_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    for (; i < V; i++)
        sum += exp((double)x[i] - mx);
    double lse = mx + log(sum); /* sum >= 1: the maximum's own term */
    if (d) {
        /* d = exp(x - max) * (dloss / sum) - dloss onehot; x[i] is read before d[i]
         * is written, so d may alias x */
        __m256 vs = _mm256_set1_ps((float)(dloss / sum));
        for (i = 0; i < V8; i += 8)
            _mm256_storeu_ps(d + i, _mm256_mul_ps(fg_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)), vs));
        for (; i < V; i++)
            d[i] = (float)(dloss * exp((double)x[i] - lse));
        d[tgt] -= dloss;
    }
    return lse;
}

double fg_softmax_xent_avx2(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V,
                            int Vp, float dloss)
{
    return fg_xent_rows(xent_row, dlogits, losses, logits, targets, N, V, Vp, dloss);
}

/* issue 11's bf16 head: this row pass, each row then rounded (any conversion variant
 * gives the same bits; AVX2 has none of its own) */
double fg_softmax_xent_bf16_avx2(uint16_t *dlogits, float *losses, float *logits, const int32_t *targets, int N, int V,
                                 int Vp, float dloss)
{
    return fg_xent_rows_bf16(xent_row, fg_cvt_f32_bf16_ref, NULL, dlogits, losses, logits, targets, N, V, Vp, dloss);
}

/* GELU as x sigmoid(2u), u = k (x + c x^3); scalar tails use the same formula. */
static inline __m256 gelu_u(__m256 x)
{
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    return _mm256_mul_ps(_mm256_set1_ps(GELU_K), _mm256_fmadd_ps(x3, _mm256_set1_ps(GELU_C), x));
}

static inline float gelu_s(float x)
{
    float u = GELU_K * (x + GELU_C * x * x * x);
    return 1.0f / (1.0f + expf(-2.0f * u));
}

void fg_gelu_forward_avx2(float *out, const float *inp, size_t n)
{
    size_t n8 = n & ~(size_t)7;
#pragma omp parallel for schedule(static) if (n8 > 32768)
    for (size_t i = 0; i < n8; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i), u = gelu_u(x);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(x, fg_sigmoid256(_mm256_add_ps(u, u))));
    }
    for (size_t i = n8; i < n; i++)
        out[i] = inp[i] * gelu_s(inp[i]);
}

/* d/dx [x s(2u)] = s + 2 x s (1 - s) u', u' = k (1 + 3 c x^2). */
void fg_gelu_backward_avx2(float *dinp, const float *dout, const float *inp, size_t n)
{
    size_t n8 = n & ~(size_t)7;
#pragma omp parallel for schedule(static) if (n8 > 32768)
    for (size_t i = 0; i < n8; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i), u = gelu_u(x), x2 = _mm256_mul_ps(x, x);
        __m256 du = _mm256_mul_ps(_mm256_set1_ps(GELU_K),
                                  _mm256_fmadd_ps(x2, _mm256_set1_ps(3.0f * GELU_C), _mm256_set1_ps(1.0f)));
        __m256 s = fg_sigmoid256(_mm256_add_ps(u, u));
        __m256 sq = _mm256_mul_ps(s, _mm256_sub_ps(_mm256_set1_ps(1.0f), s));
        __m256 g = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_add_ps(x, x), sq), du, s);
        _mm256_storeu_ps(dinp + i, _mm256_fmadd_ps(g, _mm256_loadu_ps(dout + i), _mm256_loadu_ps(dinp + i)));
    }
    for (size_t i = n8; i < n; i++) {
        float x = inp[i], s = gelu_s(x);
        float g = s + 2.0f * x * s * (1.0f - s) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
        dinp[i] += g * dout[i];
    }
}

void fg_swiglu_forward_avx2(float *out, const float *inp, int N, int H)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H;
        float *o = out + (size_t)n * H;
        int i = 0;
        for (; i + 8 <= H; i += 8) {
            __m256 x = _mm256_loadu_ps(a + i);
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(x, fg_sigmoid256(x)), _mm256_loadu_ps(b + i)));
        }
        for (; i < H; i++)
            o[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
    }
}

/* out = a s(a) b: da += g b s (1 + a (1 - s)), db += g a s. */
void fg_swiglu_backward_avx2(float *dinp, const float *dout, const float *inp, int N, int H)
{
    const __m256 one = _mm256_set1_ps(1.0f);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H, *g = dout + (size_t)n * H;
        float *da = dinp + (size_t)n * 2 * H, *db = da + H;
        int i = 0;
        for (; i + 8 <= H; i += 8) {
            __m256 x = _mm256_loadu_ps(a + i), y = _mm256_loadu_ps(b + i), gg = _mm256_loadu_ps(g + i);
            __m256 s = fg_sigmoid256(x);
            __m256 ga =
                _mm256_mul_ps(_mm256_mul_ps(gg, y), _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one)));
            _mm256_storeu_ps(da + i, _mm256_add_ps(_mm256_loadu_ps(da + i), ga));
            _mm256_storeu_ps(db + i, _mm256_add_ps(_mm256_loadu_ps(db + i), _mm256_mul_ps(gg, _mm256_mul_ps(x, s))));
        }
        for (; i < H; i++) {
            float s = 1.0f / (1.0f + expf(-a[i]));
            da[i] += g[i] * b[i] * s * (1.0f + a[i] * (1.0f - s));
            db[i] += g[i] * a[i] * s;
        }
    }
}

void fg_adamw_update_avx2(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                          float beta2, float eps, float weight_decay, int t)
{
    float ibc1 = (float)(1.0 / (1.0 - pow(beta1, t))), ibc2 = (float)(1.0 / (1.0 - pow(beta2, t)));
    const __m256 b1 = _mm256_set1_ps(beta1), b2 = _mm256_set1_ps(beta2), c1 = _mm256_set1_ps(1.0f - beta1),
                 c2 = _mm256_set1_ps(1.0f - beta2), vb1 = _mm256_set1_ps(ibc1), vb2 = _mm256_set1_ps(ibc2),
                 veps = _mm256_set1_ps(eps), vlr = _mm256_set1_ps(lr), vwd = _mm256_set1_ps(weight_decay);
    size_t n8 = n & ~(size_t)7;
#pragma omp parallel for schedule(static) if (n8 > 32768)
    for (size_t i = 0; i < n8; i += 8) {
        __m256 g = _mm256_loadu_ps(grads + i), p = _mm256_loadu_ps(params + i);
        __m256 mi = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m + i), _mm256_mul_ps(c1, g));
        __m256 vi = _mm256_fmadd_ps(b2, _mm256_loadu_ps(v + i), _mm256_mul_ps(_mm256_mul_ps(c2, g), g));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, vb2)), veps);
        __m256 upd = _mm256_fmadd_ps(vwd, p, _mm256_div_ps(_mm256_mul_ps(mi, vb1), den));
        _mm256_storeu_ps(params + i, _mm256_fnmadd_ps(vlr, upd, p));
    }
    for (size_t i = n8; i < n; i++) {
        float mi = beta1 * m[i] + (1.0f - beta1) * grads[i];
        float vi = beta2 * v[i] + (1.0f - beta2) * grads[i] * grads[i];
        m[i] = mi;
        v[i] = vi;
        params[i] -= lr * (mi * ibc1 / (sqrtf(vi * ibc2) + eps) + weight_decay * params[i]);
    }
}
