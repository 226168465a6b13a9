/* kernels_impl.h: the dispatch table shared by the files of src/kernels and the declarations
 * of the non-reference variants (BLAS, AVX2, AVX-512). Not a public header. */
#ifndef FRUGAL_KERNELS_IMPL_H
#define FRUGAL_KERNELS_IMPL_H

#include "frugal/kernels.h"

/* Upper bound on the rows of dispatch.c's variant registry (checked there). */
#define FG_KERNEL_REGISTRY_MAX 128

/* One function pointer per op, the GEMM threading mode and the chosen levels. */
typedef struct fg_kernel_table {
    int ready;
    int blas_split; /* 1: GEMMs split over our OpenMP threads, BLAS single-threaded (FG_BLAS_THREADING=omp) */
    unsigned char level[FG_KERNEL_REGISTRY_MAX]; /* per registry row: level chosen for that row's op */
    void (*sgemm)(int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
    void (*matmul_forward)(float *, const float *, const float *, const float *, int, int, int);
    void (*matmul_backward)(float *, float *, float *, const float *, const float *, const float *, int, int, int);
    void (*embedding_forward)(float *, const int32_t *, const float *, const float *, int, int, int);
    void (*embedding_backward)(float *, float *, const float *, const int32_t *, int, int, int);
    void (*rmsnorm_forward)(float *, float *, const float *, const float *, int, int, float);
    void (*rmsnorm_backward)(float *, float *, const float *, const float *, const float *, const float *, int, int);
    void (*layernorm_forward)(float *, float *, float *, const float *, const float *, const float *, int, int, float);
    void (*layernorm_backward)(float *, float *, float *, const float *, const float *, const float *, const float *,
                               const float *, int, int);
    void (*rope_forward)(float *, int, int, int, int, int, int, float);
    void (*rope_backward)(float *, int, int, int, int, int, int, float);
    void (*attention_forward)(float *, float *, const float *, int, int, int, int);
    void (*attention_backward)(float *, const float *, const float *, const float *, const float *, int, int, int, int);
    void (*gelu_forward)(float *, const float *, size_t);
    void (*gelu_backward)(float *, const float *, const float *, size_t);
    void (*swiglu_forward)(float *, const float *, int, int);
    void (*swiglu_backward)(float *, const float *, const float *, int, int);
    double (*softmax_xent)(float *, float *, const float *, const int32_t *, int, int, int, float);
    void (*add)(float *, const float *, const float *, size_t);
    void (*axpy)(float *, float, const float *, size_t);
    void (*scale)(float *, float, size_t);
    double (*sumsq)(const float *, size_t);
    void (*adamw_update)(float *, const float *, float *, float *, size_t, float, float, float, float, float, int);
} fg_kernel_table;

/* The dispatch table: the one global of the module (filled by fg_kernels_init). */
extern fg_kernel_table fg_kt;

/* ---- BLAS (src/kernels/blas.c) ---- */
void fg_sgemm_blas(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc);
void fg_matmul_forward_blas(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
void fg_matmul_backward_blas(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, int N, int C, int OC);
/* Sets the BLAS library's own thread count (no-op for single-threaded builds). */
void fg_blas_set_threads(int n);
/* Prints "OpenBLAS <core>, <threading>" (no newline) for fg_kernels_print. */
void fg_blas_print(FILE *f);

/* Sum over n of rows[n, :] into acc[0..OC) (acc += ...), parallel over columns. */
void fg_bias_reduce(float *acc, const float *rows, int N, int OC);

#endif
