/* matmul_ref.c: scalar reference GEMM and linear layer (forward and backward), plain
 * loops with double accumulation, OpenMP over an output dimension. The oracle for
 * the BLAS variant, not meant to be fast. */
#include "frugal/kernels.h"

void fg_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * (double)b;
            }
            float *c = &C[(size_t)i * ldc + j];
            /* BLAS semantics: beta == 0 overwrites C without reading it (C may hold NaN). */
            *c = beta == 0.0f ? (float)(alpha * acc) : (float)(alpha * acc + (double)beta * (double)*c);
        }
    }
}

void fg_matmul_forward_ref(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            const float *w = weight + (size_t)o * C;
            double acc = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++)
                acc += (double)x[c] * (double)w[c];
            out[(size_t)n * OC + o] = (float)acc;
        }
    }
}

/* Backward of out = inp @ weight^T + bias. */
void fg_matmul_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, int N, int C, int OC)
{
    if (dinp) {
        /* dinp[n,c] += sum_o dout[n,o] weight[o,c] */
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * OC;
            for (int c = 0; c < C; c++) {
                double acc = 0.0;
                for (int o = 0; o < OC; o++)
                    acc += (double)g[o] * (double)weight[(size_t)o * C + c];
                dinp[(size_t)n * C + c] += (float)acc;
            }
        }
    }
    if (dweight || dbias) {
        /* dweight[o,c] += sum_n dout[n,o] inp[n,c];  dbias[o] += sum_n dout[n,o] */
#pragma omp parallel for schedule(static)
        for (int o = 0; o < OC; o++) {
            if (dweight) {
                for (int c = 0; c < C; c++) {
                    double acc = 0.0;
                    for (int n = 0; n < N; n++)
                        acc += (double)dout[(size_t)n * OC + o] * (double)inp[(size_t)n * C + c];
                    dweight[(size_t)o * C + c] += (float)acc;
                }
            }
            if (dbias) {
                double acc = 0.0;
                for (int n = 0; n < N; n++)
                    acc += dout[(size_t)n * OC + o];
                dbias[o] += (float)acc;
            }
        }
    }
}
