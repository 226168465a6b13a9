/* int8_ref.c: scalar reference of the int8 GEMM (uint8 x int8 -> int32, NT layout), the
 * oracle the VNNI kernel is compared with bit for bit. */
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
