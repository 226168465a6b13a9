/* bf16_ref.c: scalar references of the bf16 ops: fp32 <-> bf16 conversion by the
 * round-to-nearest-even rule, and the bf16 GEMM with fp32 accumulation in k order. */
#include <string.h>

#include "frugal/kernels.h"

/* The one scalar rule every converter is tested against (docs/KERNELS.md): adding
 * 0x7fff plus the kept lowest bit rounds half to even, and carries into the exponent
 * correctly for subnormals, the largest finite values (to inf) and inf itself. */
static uint16_t rne(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: stays NaN, made quiet */
        return (uint16_t)((x >> 16) | 0x0040u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static float widen(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

void fg_cvt_f32_bf16_ref(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = rne(in[i]);
}

void fg_cvt_bf16_f32_ref(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = widen(in[i]);
}

/* fp32 accumulation in k order; a product of two bf16 values is exact in fp32, so the
 * only roundings are the K additions and the alpha/beta step. */
void fg_bgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                  const uint16_t *B, int ldb, float beta, float *C, int ldc)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = widen(trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                float b = widen(trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                acc += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            /* BLAS semantics: beta == 0 overwrites C without reading it (C may hold NaN). */
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
    }
}

/* Index of op(B)(k, j) in the packed layout (kernel_ops.h bgemm_pack_b): word, half. */
static size_t packed_word(int N, int K, int k, int j)
{
    (void)N;
    size_t kp = (size_t)(K + 1) / 2;
    return (size_t)(j / FG_BGEMM_NR) * kp * FG_BGEMM_NR + (size_t)(k / 2) * FG_BGEMM_NR + (size_t)(j % FG_BGEMM_NR);
}

void fg_bgemm_pack_b_ref(uint32_t *P, int trans_b, int N, int K, const uint16_t *B, int ldb)
{
    memset(P, 0, fg_bgemm_packed_words(N, K) * sizeof(uint32_t));
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) {
            uint32_t h = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
            P[packed_word(N, K, k, j)] |= h << (16 * (k & 1));
        }
}

/* As fg_bgemm_ref, op(B) read from the packed words: the same sums in the same order. */
void fg_bgemm_packed_ref(int trans_a, int M, int N, int K, float alpha, const uint16_t *A, int lda, const uint32_t *P,
                         float beta, float *C, int ldc)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = widen(trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                float b = widen((uint16_t)(P[packed_word(N, K, k, j)] >> (16 * (k & 1))));
                acc += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
    }
}

void fg_bf16_affine_ref(uint16_t *out, float *outf, const uint16_t *x, const float *w, const float *b, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)n * C + c;
            float p = widen(x[i]) * w[c];
            float v = p + (b ? b[c] : 0.0f);
            if (outf)
                outf[i] = v;
            if (out)
                out[i] = rne(v);
        }
}
