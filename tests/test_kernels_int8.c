/* test_kernels_int8.c: the int8 GEMM (uint8 x int8 -> int32) in every variant this CPU
 * supports, bit for bit against an int64 oracle: ragged M/N/K across both VNNI paths
 * (decode-sized M and packed tiles) and their K blocks, tails of every vector width,
 * padded leading dimensions (padding never written), the extreme values at K = 65536,
 * thread-count invariance, and which variant dispatch picks. */
#include <stdlib.h>
#include <string.h>

#include "frugal/hw.h"
#include "frugal/kernels.h"
#include "harness.h"
#include "kernels_util.h"

static fg_rng rng;

/* fill: 0 random, 1 extremes (255 x -128: the largest magnitude), 2 (255 x 127) */
static void fill(uint8_t *A, size_t na, int8_t *B, size_t nb, int mode)
{
    for (size_t i = 0; i < na; i++)
        A[i] = mode ? 255 : (uint8_t)fg_rng_below(&rng, 256);
    for (size_t i = 0; i < nb; i++)
        B[i] = mode == 1 ? -128 : mode == 2 ? 127 : (int8_t)((int)fg_rng_below(&rng, 256) - 128);
}

/* One GEMM with leading dimensions padded by pad; C's padding holds a canary. Returns
 * the number of wrong entries (each is also a failed check, up to a few). */
static int check_shape(const char *v, int M, int N, int K, int pad, int mode)
{
    int lda = K + pad, ldb = K + 2 * pad, ldc = N + pad;
    size_t na = (size_t)(M ? M : 1) * lda, nb = (size_t)(N ? N : 1) * ldb, nc = (size_t)(M ? M : 1) * ldc;
    uint8_t *A = fg_malloc(na + 1);
    int8_t *B = fg_malloc(nb + 1);
    int32_t *C = fg_malloc(nc * sizeof(int32_t));
    FG_ASSERT(A && B && C);
    fill(A, na, B, nb, mode);
    for (size_t i = 0; i < nc; i++)
        C[i] = 0x5a5a5a5a;
    fg_gemm_u8s8(M, N, K, A, lda, B, ldb, C, ldc);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            int32_t got = C[(size_t)i * ldc + j];
            int64_t want = 0x5a5a5a5a;
            if (j < N) {
                want = 0;
                for (int k = 0; k < K; k++)
                    want += (int64_t)A[(size_t)i * lda + k] * B[(size_t)j * ldb + k];
            }
            if (got != want && bad++ < 3)
                FG_CHECK(0, "%s M=%d N=%d K=%d pad=%d: C[%d,%d] = %d, want %lld", v, M, N, K, pad, i, j, got,
                         (long long)want);
        }
    fg_free(A);
    fg_free(B);
    fg_free(C);
    return bad;
}

static void test_exact(void)
{
    /* M: decode path (1..4) and packed tiles (8-row strips, 256-row blocks); N: 16-lane
     * vectors and 48-column strips; K: quads, 64-byte vectors, KC = 1536 blocks */
    static const int shapes[][3] = {
        {1, 1, 1},     {1, 7, 3},       {2, 5, 4},     {3, 9, 5},     {4, 4, 63},     {4, 13, 64},   {1, 50, 65},
        {5, 1, 1},     {8, 48, 16},     {9, 49, 17},   {7, 47, 127},  {16, 96, 64},   {17, 33, 383}, {37, 53, 384},
        {64, 17, 385}, {33, 100, 1536}, {9, 50, 1537}, {3, 21, 3071}, {20, 20, 3100}, {300, 70, 40}, {1, 1, 0},
        {5, 7, 0},     {0, 5, 9},       {6, 0, 9},     {257, 9, 129}, {2, 700, 96}};
    const char *names[8];
    int nv = variants("gemm_u8s8", names);
    for (int v = 0; v < nv; v++) {
        use("gemm_u8s8", names[v]);
        int bad = 0, n = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int pad = 0; pad <= 5; pad += 5, n++)
                bad += check_shape(names[v], shapes[s][0], shapes[s][1], shapes[s][2], pad, 0);
        FG_CHECK(bad == 0, "%s: %d wrong entries over %d GEMMs", names[v], bad, n);
        /* the largest magnitudes the contract allows: K = 65536 of 255 x -128 is
         * -2139095040, of 255 x 127 2122383360, both in int32 */
        FG_CHECK(check_shape(names[v], 1, 5, 65536, 0, 1) == 0, "%s: extreme K=65536 decode", names[v]);
        FG_CHECK(check_shape(names[v], 9, 20, 65536, 0, 2) == 0, "%s: extreme K=65536 packed", names[v]);
        FG_CHECK(check_shape(names[v], 9, 17, 4000, 3, 1) == 0, "%s: extremes K=4000", names[v]);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* Exact sums do not depend on how the work is split: 1 vs 2 threads, bitwise. */
static void test_threads(void)
{
    int M = 96, N = 200, K = 777;
    uint8_t *A = fg_malloc((size_t)M * K);
    int8_t *B = fg_malloc((size_t)N * K);
    int32_t *C1 = fg_malloc(sizeof(int32_t) * (size_t)M * N), *C2 = fg_malloc(sizeof(int32_t) * (size_t)M * N);
    FG_ASSERT(A && B && C1 && C2);
    fill(A, (size_t)M * K, B, (size_t)N * K, 0);
    FG_CHECK(fg_kernels_configure(NULL, NULL, 1) == FG_OK, "1 thread: %s", fg_last_error());
    fg_gemm_u8s8(M, N, K, A, K, B, K, C1, N);
    FG_CHECK(fg_kernels_configure(NULL, NULL, 2) == FG_OK, "2 threads: %s", fg_last_error());
    fg_gemm_u8s8(M, N, K, A, K, B, K, C2, N);
    FG_CHECK(!memcmp(C1, C2, sizeof(int32_t) * (size_t)M * N), "%s: 1 vs 2 threads differ",
             fg_kernels_variant("gemm_u8s8"));
    fg_free(A);
    fg_free(B);
    fg_free(C1);
    fg_free(C2);
}

/* auto picks the VNNI kernel when the CPU (less FG_HW_DISABLE) has the int8 unit, else
 * ref; masking the int8 unit leaves the bf16 one alone and vice versa. */
static void test_dispatch(void)
{
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    const fg_cpu *cpu = fg_hw_cpu();
    bool has512 = cpu->avx512f && cpu->avx512bw && cpu->avx512vl && cpu->avx512dq && cpu->os_avx512;
    const char *mode = fg_kernels_settings_get().mode;
    const char *want = strcmp(mode, "ref") && has512 && cpu->avx512_vnni ? "avx512vnni" : "ref";
    FG_CHECK(!strcmp(fg_kernels_variant("gemm_u8s8"), want), "gemm_u8s8 picked %s, want %s (FG_HW_DISABLE '%s')",
             fg_kernels_variant("gemm_u8s8"), want, fg_hw_disabled());
    if (has512 && strcmp(mode, "ref")) {
        const char *bf = cpu->avx512_bf16 ? "avx512bf16" : "blas";
        FG_CHECK(!strcmp(fg_kernels_variant("bgemm"), bf), "bgemm picked %s next to the int8 unit, want %s",
                 fg_kernels_variant("bgemm"), bf);
        FG_CHECK((fg_kernels_init("avx512vnni") == FG_OK) == cpu->avx512_vnni, "mode avx512vnni vs cpu");
        FG_CHECK(fg_kernels_init("avx512bf16") != FG_OK || !strcmp(fg_kernels_variant("gemm_u8s8"), "ref"),
                 "mode avx512bf16 (below avx512vnni) picked %s", fg_kernels_variant("gemm_u8s8"));
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("kernels_int8");
    fg_rng_seed(&rng, 14);
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    test_dispatch();
    test_exact();
    test_threads();
    return fg_test_end();
}
