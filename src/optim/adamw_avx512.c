/* adamw_avx512.c: the fused AdamW sweeps with AVX-512 (F, BW, VL: no AVX512-BF16
 * needed, the bf16 rounding is integer arithmetic): over bf16-stored moments, and over
 * fp32 ones with the clip factor and the bf16 weight copy folded in. Both repeat the
 * operation order of the kernels' fg_adamw_update_avx512, so the fp32 one gives its
 * bits (test_optim checks it); run only where the kernels' adamw_update is avx512. */
#include <immintrin.h>

#include "optim_impl.h"

static inline __m512 widen(__mmask16 k, const uint16_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
}

/* optim_bf16 on 16 lanes: + 0x7fff + lsb, then the top halves; NaN quieted */
static inline __m256i narrow(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                     _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

/* One AdamW sweep; LOAD_M / STORE_M read and write 16 moments of the storage type. */
#define ADAMW_SWEEP(LOAD_M, STORE_M)                                                                                   \
    const __m512 b1 = _mm512_set1_ps(a->beta1), b2 = _mm512_set1_ps(a->beta2), c1 = _mm512_set1_ps(1.0f - a->beta1),   \
                 c2 = _mm512_set1_ps(1.0f - a->beta2), ibc1 = _mm512_set1_ps(a->ibc1), ibc2 = _mm512_set1_ps(a->ibc2), \
                 veps = _mm512_set1_ps(a->eps), vlr = _mm512_set1_ps(a->lr), vwd = _mm512_set1_ps(a->weight_decay),    \
                 coef = _mm512_set1_ps(a->grad_coef);                                                                  \
    const int scaled = a->grad_coef != 1.0f;                                                                           \
    size_t nchunk = (n + OPTIM_CHUNK - 1) / OPTIM_CHUNK;                                                               \
    _Pragma("omp parallel for schedule(static) if (nchunk > 2)") for (size_t ch = 0; ch < nchunk; ch++)                \
    {                                                                                                                  \
        size_t hi = (ch + 1) * OPTIM_CHUNK < n ? (ch + 1) * OPTIM_CHUNK : n;                                           \
        for (size_t i = ch * OPTIM_CHUNK; i < hi; i += 16) {                                                           \
            __mmask16 k = hi - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hi - i)) - 1u);                       \
            __m512 g = _mm512_maskz_loadu_ps(k, grads + i);                                                            \
            if (scaled)                                                                                                \
                g = _mm512_mul_ps(g, coef);                                                                            \
            __m512 p = _mm512_maskz_loadu_ps(k, params + i);                                                           \
            __m512 mi = _mm512_fmadd_ps(b1, LOAD_M(m), _mm512_mul_ps(c1, g));                                          \
            __m512 vi = _mm512_fmadd_ps(b2, LOAD_M(v), _mm512_mul_ps(_mm512_mul_ps(c2, g), g));                        \
            STORE_M(m, mi);                                                                                            \
            STORE_M(v, vi);                                                                                            \
            __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(vi, ibc2)), veps);                                 \
            __m512 upd = _mm512_fmadd_ps(vwd, p, _mm512_div_ps(_mm512_mul_ps(mi, ibc1), den));                         \
            p = _mm512_fnmadd_ps(vlr, upd, p);                                                                         \
            _mm512_mask_storeu_ps(params + i, k, p);                                                                   \
            if (pbf)                                                                                                   \
                _mm256_mask_storeu_epi16(pbf + i, k, narrow(p));                                                       \
        }                                                                                                              \
    }

#define LOAD_BF16(x) widen(k, (x) + i)
#define STORE_BF16(x, val) _mm256_mask_storeu_epi16((x) + i, k, narrow(val))
#define LOAD_F32(x) _mm512_maskz_loadu_ps(k, (x) + i)
#define STORE_F32(x, val) _mm512_mask_storeu_ps((x) + i, k, (val))

void optim_adamw_bf16m_avx512(float *params, const float *grads, uint16_t *m, uint16_t *v, uint16_t *pbf, size_t n,
                              const optim_adamw_args *a)
{
    ADAMW_SWEEP(LOAD_BF16, STORE_BF16)
}

void optim_adamw_f32m_avx512(float *params, const float *grads, float *m, float *v, uint16_t *pbf, size_t n,
                             const optim_adamw_args *a)
{
    ADAMW_SWEEP(LOAD_F32, STORE_F32)
}
