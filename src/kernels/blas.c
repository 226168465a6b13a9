/* blas.c: GEMM and the linear layer on the system BLAS (OpenBLAS, cblas_sgemm).
 * Backward = two sgemms (beta = 1, so they accumulate) + a bias reduction. Threading
 * per FG_BLAS_THREADING: split over our OpenMP threads, or the BLAS's own pool
 * (docs/KERNELS.md). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "kernels_impl.h"

/* The build links OpenBLAS's pthreads variant (docs/KERNELS.md); the CLI starts it
 * with OPENBLAS_NUM_THREADS=1, so its pool has no thread until `blas` threading asks
 * for them here. -DFG_OPENBLAS_OPENMP_BUILD=ON links the OpenMP variant, which threads a
 * call over OpenMP's own pool, sized by omp_get_max_threads(), and runs it
 * single-threaded inside a parallel region (our split); its openblas_set_num_threads is
 * omp_set_num_threads, so it is never called there: it would shrink every kernel's
 * pool. Which one the loader found is asked at run time. */
static int blas_is_openmp(void)
{
    return openblas_get_parallel() == 2;
}

void fg_blas_set_threads(int split, int n)
{
    if (!blas_is_openmp())
        openblas_set_num_threads(split ? 1 : n);
}

void fg_blas_print(FILE *f)
{
    fprintf(f, "OpenBLAS %s %s, %s", openblas_get_corename(), blas_is_openmp() ? "(OpenMP build)" : "(pthreads build)",
            fg_kt.blas_split ? "1-thread calls split over the OpenMP threads" : "threads each call itself");
}

static void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
}

/* With blas_split, each OpenMP thread runs a single-threaded sgemm on a slice of the
 * larger of M and N (slices a multiple of 16 wide), so only OpenMP's threads ever
 * run: no BLAS thread pool spinning against ours. Small GEMMs (< 8 MFLOP: a passive
 * fork/join costs ~0.1 ms of CPU, about 4 MFLOP here; docs/perf/kernels.md, section 7;
 * the MoE router's three) and calls from inside a parallel region run on the calling thread. */
void fg_sgemm_blas(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    int nt = omp_get_max_threads();
    if (!fg_kt.blas_split || nt == 1 || omp_in_parallel() || 2.0 * M * N * K < 8e6) {
        gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int split_m = M >= N, len = split_m ? M : N;
    int step = ((len + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel num_threads(nt)
    {
        int i0 = omp_get_thread_num() * step, n = len - i0 < step ? len - i0 : step;
        if (n > 0) {
            if (split_m)
                gemm(trans_a, trans_b, n, N, K, alpha, trans_a ? A + i0 : A + (size_t)i0 * lda, lda, B, ldb, beta,
                     C + (size_t)i0 * ldc, ldc);
            else
                gemm(trans_a, trans_b, M, n, K, alpha, A, lda, trans_b ? B + (size_t)i0 * ldb : B + i0, ldb, beta,
                     C + i0, ldc);
        }
    }
}

void fg_bias_reduce(float *acc, const float *rows, int N, int OC)
{
    enum { CB = 256 };
    int nblk = (OC + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (nblk > 1 && (size_t)N * OC >= FG_PAR_MIN_ELEMS)
    for (int blk = 0; blk < nblk; blk++) {
        int o0 = blk * CB, o1 = o0 + CB < OC ? o0 + CB : OC;
        float s[CB];
        memset(s, 0, sizeof s);
        for (int n = 0; n < N; n++) {
            const float *r = rows + (size_t)n * OC;
            for (int o = o0; o < o1; o++)
                s[o - o0] += r[o];
        }
        for (int o = o0; o < o1; o++)
            acc[o] += s[o - o0];
    }
}

void fg_matmul_forward_blas(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC)
{
    float beta = 0.0f;
    if (bias) {
        /* start from the bias rows and let the GEMM accumulate onto them */
#pragma omp parallel for schedule(static) if ((size_t)N * OC >= FG_PAR_MIN_ELEMS)
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    fg_sgemm_blas(0, 1, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

/* Backward of out = inp @ weight^T + bias (accumulating). */
void fg_matmul_backward_blas(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, int N, int C, int OC)
{
    if (dinp) /* dinp[N,C] += dout[N,OC] @ weight[OC,C] */
        fg_sgemm_blas(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight) /* dweight[OC,C] += dout^T[OC,N] @ inp[N,C] */
        fg_sgemm_blas(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias)
        fg_bias_reduce(dbias, dout, N, OC);
}
