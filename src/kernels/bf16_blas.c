/* bf16_blas.c: the bf16 GEMM where the CPU has no bf16 dot-product unit: bf16 panels
 * widened to fp32 (exact) and multiplied by the fp32 sgemm (fg_sgemm_blas, with its
 * threading), K in chunks so the scratch stays bounded. */
#include <string.h>

#include "kernels_impl.h"

/* K chunk: the fp32 copies hold (M + N) x KCH floats. OpenBLAS blocks K by a few
 * hundred itself, so chunking costs one more pass over C per chunk, nothing else. */
enum { KCH = 512 };

/* dst[r, 0..cols) = widen(src[r * ld + 0..cols)), rows in parallel. */
static void widen_rows(float *dst, const uint16_t *src, int rows, int cols, int ld)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (int r = 0; r < rows; r++)
        fg_cvt_bf16_f32(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols);
}

int fg_bgemm_trivial(int M, int N, int K, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return 1;
    if (K != 0)
        return 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
    return 1;
}

void fg_bgemm_blas(int trans_a, int trans_b, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                   const uint16_t *B, int ldb, float beta, float *C, int ldc)
{
    if (fg_bgemm_trivial(M, N, K, beta, C, ldc))
        return;
    int kch = K < KCH ? K : KCH;
    float *a = fg_malloc(sizeof(float) * (size_t)M * kch), *b = fg_malloc(sizeof(float) * (size_t)N * kch);
    if (!a || !b) { /* no scratch: the reference gives the same result within the bound */
        fg_free(a);
        fg_free(b);
        fg_bgemm_ref(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    for (int k0 = 0; k0 < K; k0 += kch) {
        int kc = K - k0 < kch ? K - k0 : kch;
        /* keep each operand's orientation: op() is applied by the sgemm */
        if (trans_a) /* A stored [K][M] */
            widen_rows(a, A + (size_t)k0 * lda, kc, M, lda);
        else
            widen_rows(a, A + k0, M, kc, lda);
        if (trans_b) /* B stored [N][K] */
            widen_rows(b, B + k0, N, kc, ldb);
        else
            widen_rows(b, B + (size_t)k0 * ldb, kc, N, ldb);
        fg_sgemm_blas(trans_a, trans_b, M, N, kc, alpha, a, trans_a ? M : kc, b, trans_b ? kc : N, k0 ? 1.0f : beta, C,
                      ldc);
    }
    fg_free(a);
    fg_free(b);
}

/* Packing is data movement: the blas row packs with the reference's rule, strip by strip. */
void fg_bgemm_pack_b_blas(uint32_t *P, int trans_b, int N, int K, const uint16_t *B, int ldb)
{
    size_t kp = (size_t)(K + 1) / 2;
    int ns = (N + FG_BGEMM_NR - 1) / FG_BGEMM_NR;
#pragma omp parallel for schedule(static) if ((size_t)N * K > 65536)
    for (int s = 0; s < ns; s++) {
        uint32_t *d = P + (size_t)s * kp * FG_BGEMM_NR;
        for (size_t p = 0; p < kp; p++)
            for (int jj = 0; jj < FG_BGEMM_NR; jj++) {
                int j = s * FG_BGEMM_NR + jj, k = (int)(2 * p);
                uint32_t lo = 0, hi = 0;
                if (j < N) {
                    lo = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                    if (k + 1 < K)
                        hi = trans_b ? B[(size_t)j * ldb + k + 1] : B[(size_t)(k + 1) * ldb + j];
                }
                d[p * FG_BGEMM_NR + (size_t)jj] = lo | hi << 16;
            }
    }
}

/* op(B) widened back from the packed words, rows [2 p0, 2 p0 + 2 np) of it as fp32 [.., N]. */
static void unpack_rows(float *dst, const uint32_t *P, int N, int K, int p0, int np)
{
    size_t kp = (size_t)(K + 1) / 2;
#pragma omp parallel for schedule(static) if ((size_t)N * np > 32768)
    for (int p = p0; p < p0 + np; p++)
        for (int j = 0; j < N; j++) {
            uint32_t w = P[(size_t)(j / FG_BGEMM_NR) * kp * FG_BGEMM_NR + (size_t)p * FG_BGEMM_NR + j % FG_BGEMM_NR];
            uint32_t lo = w << 16, hi = w & 0xffff0000u;
            memcpy(dst + (size_t)(2 * (p - p0)) * N + j, &lo, sizeof lo);
            memcpy(dst + (size_t)(2 * (p - p0) + 1) * N + j, &hi, sizeof hi);
        }
}

void fg_bgemm_packed_blas(int trans_a, int M, int N, int K, float alpha, const uint16_t *A, int lda, const uint32_t *P,
                          float beta, float *C, int ldc)
{
    if (fg_bgemm_trivial(M, N, K, beta, C, ldc))
        return;
    int kch = K < KCH ? (K + 1) / 2 * 2 : KCH; /* even: chunks start on a pair */
    float *a = fg_malloc(sizeof(float) * (size_t)M * kch), *b = fg_malloc(sizeof(float) * (size_t)N * kch);
    if (!a || !b) {
        fg_free(a);
        fg_free(b);
        fg_bgemm_packed_ref(trans_a, M, N, K, alpha, A, lda, P, beta, C, ldc);
        return;
    }
    for (int k0 = 0; k0 < K; k0 += kch) {
        int kc = K - k0 < kch ? K - k0 : kch;
        if (trans_a)
            widen_rows(a, A + (size_t)k0 * lda, kc, M, lda);
        else
            widen_rows(a, A + k0, M, kc, lda);
        unpack_rows(b, P, N, K, k0 / 2, (kc + 1) / 2); /* an odd last row is the zero half, unused */
        fg_sgemm_blas(trans_a, 0, M, N, kc, alpha, a, trans_a ? M : kc, b, N, k0 ? 1.0f : beta, C, ldc);
    }
    fg_free(a);
    fg_free(b);
}
