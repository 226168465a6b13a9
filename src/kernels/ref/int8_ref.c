/* int8_ref.c: scalar references of the int8 ops: the GEMM (uint8 x int8 -> int32, NT
 * layout) and its packed form with the fused dequantization, and the per-token
 * activation codes (alone, after RMSNorm, after SwiGLU): the oracles the VNNI and
 * AVX-512 variants are compared with bit for bit. */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"

/* int32 accumulation: exact under the op's K <= 65536 (every partial sum fits). */
void fg_gemm_u8s8_ref(int M, int N, int K, const uint8_t *A, int lda, const int8_t *B, int ldb, int32_t *C, int ldc)
{
#pragma omp parallel for schedule(static) if ((double)M * N * K > 1e6)
    for (int i = 0; i < M; i++) {
        const uint8_t *a = A + (size_t)i * lda;
        for (int j = 0; j < N; j++) {
            const int8_t *b = B + (size_t)j * ldb;
            int32_t acc = 0;
            for (int k = 0; k < K; k++)
                acc += (int32_t)a[k] * (int32_t)b[k];
            C[(size_t)i * ldc + j] = acc;
        }
    }
}

/* Byte index of B(j, k) in the packed layout (kernel_ops.h gemm_u8s8_pack_b). */
static size_t packed_byte(int K, int j, int k)
{
    size_t kq = (size_t)(K + 3) / 4;
    return 4 * ((size_t)(j / FG_I8_NR) * kq * FG_I8_NR + (size_t)(k / 4) * FG_I8_NR + (size_t)(j % FG_I8_NR)) +
           (size_t)(k % 4);
}

void fg_gemm_u8s8_pack_b_ref(uint32_t *P, int N, int K, const int8_t *B, int ldb)
{
    unsigned char *p = (unsigned char *)P;
    memset(P, 0, fg_gemm_u8s8_packed_words(N, K) * sizeof(uint32_t));
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++)
            p[packed_byte(K, j, k)] = (unsigned char)B[(size_t)j * ldb + k];
}

/* The epilogue's fp32 steps as the contract orders them (this file is built without FMA). */
static inline float dequant(int32_t acc, int32_t comp, float sa, float sb, const float *bias, int j)
{
    float v = sa * sb * (float)(acc - comp);
    return v + (bias ? bias[j] : 0.0f);
}

void fg_gemm_u8s8_packed_ref(int M, int N, int K, const uint8_t *A, int lda, const uint32_t *P, const float *sa,
                             const float *sb, const int32_t *comp, const float *bias, const float *resid, float *out,
                             int ldo)
{
    const int8_t *p = (const int8_t *)P;
#pragma omp parallel for schedule(static) if ((double)M * N * K > 1e6)
    for (int i = 0; i < M; i++) {
        const uint8_t *a = A + (size_t)i * lda;
        for (int j = 0; j < N; j++) {
            int32_t acc = 0;
            for (int k = 0; k < K; k++)
                acc += (int32_t)a[k] * (int32_t)p[packed_byte(K, j, k)];
            float v = dequant(acc, comp[j], sa[i], sb[j], bias, j);
            size_t o = (size_t)i * ldo + j;
            out[o] = resid ? resid[o] + v : v;
        }
    }
}

/* One row's codes from its values y(c) (a function of the row, evaluated twice: once
 * for the range, once for the codes, so no row buffer is needed). */
#define QUANT_ROW(u, scale, C, Y)                                                                                      \
    do {                                                                                                               \
        float amax_ = 0.0f;                                                                                            \
        for (int c = 0; c < (C); c++)                                                                                  \
            amax_ = fmaxf(amax_, fabsf(Y));                                                                            \
        float s_ = amax_ > 0.0f ? amax_ / 127.0f : 1.0f, inv_ = 1.0f / s_;                                             \
        *(scale) = s_;                                                                                                 \
        for (int c = 0; c < (C); c++) {                                                                                \
            float q_ = nearbyintf((Y)*inv_);                                                                           \
            q_ = q_ < -127.0f ? -127.0f : q_ > 127.0f ? 127.0f : q_;                                                   \
            (u)[c] = (uint8_t)((int)q_ + 128);                                                                         \
        }                                                                                                              \
    } while (0)

void fg_quantize_u8_ref(uint8_t *u, float *scale, const float *x, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        QUANT_ROW(u + (size_t)n * C, scale + n, C, xr[c]);
    }
}

/* y as fg_rmsnorm_forward_ref computes it (double statistics, one rounding to float). */
void fg_rmsnorm_quant_u8_ref(uint8_t *u, float *scale, const float *inp, const float *weight, int N, int C, float eps)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++)
            ss += (double)x[c] * x[c];
        double r = 1.0 / sqrt(ss / C + eps);
        QUANT_ROW(u + (size_t)n * C, scale + n, C, (float)(x[c] * r * weight[c]));
    }
}

/* y as fg_swiglu_forward_ref computes it. */
void fg_swiglu_quant_u8_ref(uint8_t *u, float *scale, const float *inp, int N, int H)
{
#pragma omp parallel for schedule(static) if ((size_t)N * H > 65536)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H;
        QUANT_ROW(u + (size_t)n * H, scale + n, H, (float)(a[c] * (1.0 / (1.0 + exp(-(double)a[c]))) * b[c]));
    }
}
