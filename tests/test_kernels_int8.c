/* test_kernels_int8.c: the int8 GEMM (uint8 x int8 -> int32) in every variant this CPU
 * supports, bit for bit against an int64 oracle: ragged M/N/K across both VNNI paths
 * (decode-sized M and packed tiles) and their K blocks, tails of every vector width,
 * padded leading dimensions (padding never written), the extreme values at K = 65536,
 * thread-count invariance, and which variant dispatch picks. The prompt path's fused
 * ops likewise: the GEMM on weights packed once with its dequantization epilogue against
 * the oracle's sums and the contract's fp32 steps, and the per-token activation codes
 * (alone, after RMSNorm, after SwiGLU) against a scalar oracle of the rule. */
#include <math.h>
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

/* ---- packed weights, fused dequantization ---- */

/* The epilogue's steps as the contract orders them, on the int64 oracle's exact sum. */
static float want_ep(int64_t acc, int32_t comp, float sa, float sb, const float *bias, int j, const float *r)
{
    volatile float p = sa * sb; /* volatile: each step rounded, never contracted */
    volatile float v = p * (float)(int32_t)(acc - comp);
    v = v + (bias ? bias[j] : 0.0f);
    return r ? *r + v : v;
}

/* One packed GEMM per (pack variant x GEMM variant); resid: 0 none, 1 separate, 2 = out. */
static int check_packed(const char *v, int M, int N, int K, int pad, int with_bias, int resid_mode)
{
    int lda = K + pad, ldo = N + pad;
    size_t na = (size_t)(M ? M : 1) * lda, nb = (size_t)(N ? N : 1) * (K + 1), no = (size_t)(M ? M : 1) * ldo;
    uint8_t *A = fg_malloc(na + 1);
    int8_t *B = fg_malloc(nb + 1);
    uint32_t *P = fg_malloc((fg_gemm_u8s8_packed_words(N, K) + 1) * sizeof(uint32_t));
    uint32_t *P2 = fg_malloc((fg_gemm_u8s8_packed_words(N, K) + 1) * sizeof(uint32_t));
    float *sa = fg_malloc(sizeof(float) * (size_t)(M + 1)), *sb = fg_malloc(sizeof(float) * (size_t)(N + 1));
    float *bias = fg_malloc(sizeof(float) * (size_t)(N + 1)), *out = fg_malloc(sizeof(float) * no);
    float *res = fg_malloc(sizeof(float) * no), *want = fg_malloc(sizeof(float) * no);
    int32_t *comp = fg_malloc(sizeof(int32_t) * (size_t)(N + 1));
    FG_ASSERT(A && B && P && P2 && sa && sb && bias && out && res && want && comp);
    fill(A, na, B, nb, 0);
    for (int i = 0; i < M; i++)
        sa[i] = 1e-3f * (1.0f + fg_rng_uniform(&rng));
    for (int j = 0; j < N; j++) {
        int32_t sum = 0;
        for (int k = 0; k < K; k++)
            sum += B[(size_t)j * (K + 1) + k];
        comp[j] = 128 * sum;
        sb[j] = 1e-2f * (0.5f + fg_rng_uniform(&rng));
        bias[j] = fg_rng_normal(&rng);
    }
    for (size_t i = 0; i < no; i++)
        res[i] = out[i] = fg_rng_normal(&rng);
    const float *b = with_bias ? bias : NULL, *r = resid_mode == 1 ? res : resid_mode == 2 ? out : NULL;
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldo; j++) {
            size_t o = (size_t)i * ldo + j;
            if (j >= N) {
                want[o] = out[o]; /* padding: never written */
                continue;
            }
            int64_t acc = 0;
            for (int k = 0; k < K; k++)
                acc += (int64_t)A[(size_t)i * lda + k] * B[(size_t)j * (K + 1) + k];
            want[o] = want_ep(acc, comp[j], sa[i], sb[j], b, j, r ? r + o : NULL);
        }
    /* the layout is the contract's: every pack variant writes the same words */
    const char *pv[8];
    int npv = variants("gemm_u8s8_pack_b", pv);
    size_t words = fg_gemm_u8s8_packed_words(N, K);
    use("gemm_u8s8_pack_b", "ref");
    fg_gemm_u8s8_pack_b(P2, N, K, B, K + 1);
    for (int p = 0; p < npv; p++) {
        use("gemm_u8s8_pack_b", pv[p]);
        memset(P, 0xa5, words * sizeof(uint32_t));
        fg_gemm_u8s8_pack_b(P, N, K, B, K + 1);
        if (memcmp(P, P2, words * sizeof(uint32_t)) && bad++ < 3)
            FG_CHECK(0, "pack_b %s N=%d K=%d: layout differs from ref", pv[p], N, K);
    }
    fg_gemm_u8s8_packed(M, N, K, A, lda, P, sa, sb, comp, b, r, out, ldo);
    for (size_t o = 0; o < (size_t)M * ldo; o++)
        if (memcmp(&out[o], &want[o], sizeof(float)) && bad++ < 3)
            FG_CHECK(0, "%s M=%d N=%d K=%d pad=%d bias=%d resid=%d: out[%zu] = %.9g, want %.9g", v, M, N, K, pad,
                     with_bias, resid_mode, o, (double)out[o], (double)want[o]);
    fg_free(A);
    fg_free(B);
    fg_free(P);
    fg_free(P2);
    fg_free(sa);
    fg_free(sb);
    fg_free(bias);
    fg_free(out);
    fg_free(res);
    fg_free(want);
    fg_free(comp);
    return bad;
}

static void test_packed(void)
{
    /* tiles of 8 rows x 48 columns, row blocks near 384 KB of A (K = 3000: 128 rows),
     * quads and their tails, both thread splits (M > N and M <= N); decode-sized M (the
     * row kernel: K odd, even and partial in quads, 1..4 rows) */
    static const int shapes[][3] = {{1, 1, 1},      {3, 50, 7},      {8, 48, 16},  {9, 49, 17},    {17, 95, 383},
                                    {64, 200, 768}, {130, 40, 3000}, {300, 9, 65}, {40, 97, 2048}, {5, 7, 0},
                                    {0, 5, 9},      {6, 0, 9},       {2, 700, 96}, {1, 100, 770},  {4, 49, 5},
                                    {2, 48, 3},     {1, 320, 768},   {1, 5, 0},    {3, 97, 1}};
    const char *names[8];
    int nv = variants("gemm_u8s8_packed", names);
    for (int v = 0; v < nv; v++) {
        use("gemm_u8s8_packed", names[v]);
        int bad = 0, n = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int mode = 0; mode < 6; mode++, n++)
                bad += check_packed(names[v], shapes[s][0], shapes[s][1], shapes[s][2], mode & 1 ? 3 : 0, mode & 1,
                                    mode / 2);
        FG_CHECK(bad == 0, "%s: %d wrong entries over %d packed GEMMs", names[v], bad, n);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* ---- activation codes ---- */

/* The rule, scalar: scale = amax / 127 (1 for zeros), code = nearbyint(y / scale) in
 * [-127, 127] + 128; returns the number of wrong codes or scales. */
static int check_codes(const char *what, const uint8_t *u, const float *scale, const float *y, int N, int C)
{
    int bad = 0;
    for (int n = 0; n < N; n++) {
        float amax = 0.0f;
        for (int c = 0; c < C; c++)
            amax = fmaxf(amax, fabsf(y[(size_t)n * C + c]));
        float s = amax > 0.0f ? amax / 127.0f : 1.0f, inv = 1.0f / s;
        if (memcmp(&s, &scale[n], sizeof s) && bad++ < 3)
            FG_CHECK(0, "%s N=%d C=%d: scale[%d] = %.9g, want %.9g", what, N, C, n, (double)scale[n], (double)s);
        for (int c = 0; c < C; c++) {
            float q = nearbyintf(y[(size_t)n * C + c] * inv);
            q = q < -127.0f ? -127.0f : q > 127.0f ? 127.0f : q;
            uint8_t w = (uint8_t)((int)q + 128);
            if (u[(size_t)n * C + c] != w && bad++ < 3)
                FG_CHECK(0, "%s N=%d C=%d: u[%d,%d] = %d, want %d", what, N, C, n, c, u[(size_t)n * C + c], w);
        }
    }
    return bad;
}

/* quantize_u8 against the rule; rmsnorm_quant_u8 and swiglu_quant_u8 against the rule
 * applied to the same level's rmsnorm_forward / swiglu_forward output. Rows include an
 * all-zero one and exact ties (k + 0.5 at scale 1: to even). */
static void test_codes(void)
{
    static const int shapes[][2] = {{1, 1}, {3, 15}, {2, 16}, {5, 17}, {4, 768}, {3, 1000}, {129, 64}};
    const char *names[8];
    for (int op = 0; op < 3; op++) {
        const char *opn = op == 0 ? "quantize_u8" : op == 1 ? "rmsnorm_quant_u8" : "swiglu_quant_u8";
        const char *base = op == 1 ? "rmsnorm_forward" : op == 2 ? "swiglu_forward" : NULL;
        int nv = variants(opn, names);
        for (int v = 0; v < nv; v++) {
            use(opn, names[v]);
            if (base)
                use(base, names[v]); /* the level whose arithmetic the fused op repeats */
            int bad = 0;
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                int N = shapes[s][0], C = shapes[s][1], W = op == 2 ? 2 * C : C;
                float *x = fg_malloc(sizeof(float) * (size_t)N * W), *w = fg_malloc(sizeof(float) * (size_t)C);
                float *y = fg_malloc(sizeof(float) * (size_t)N * C), *sc = fg_malloc(sizeof(float) * (size_t)N);
                float *rs = fg_malloc(sizeof(float) * (size_t)N);
                uint8_t *u = fg_malloc((size_t)N * C + 1);
                FG_ASSERT(x && w && y && sc && u && rs);
                for (size_t i = 0; i < (size_t)N * W; i++)
                    x[i] = 3.0f * fg_rng_normal(&rng);
                for (int c = 0; c < C; c++)
                    w[c] = 1.0f + 0.1f * fg_rng_normal(&rng);
                if (op == 0 && N > 2) {
                    memset(x + C, 0, sizeof(float) * (size_t)C); /* row 1: zeros */
                    for (int c = 0; c < C; c++)                  /* row 2: amax 127, ties */
                        x[2 * (size_t)C + c] = c == 0 ? 127.0f : (float)((int)(c % 200) - 100) + 0.5f;
                }
                if (op == 0)
                    memcpy(y, x, sizeof(float) * (size_t)N * C);
                else if (op == 1)
                    fg_rmsnorm_forward(y, rs, x, w, N, C, 1e-5f);
                else
                    fg_swiglu_forward(y, x, N, C);
                if (op == 0)
                    fg_quantize_u8(u, sc, x, N, C);
                else if (op == 1)
                    fg_rmsnorm_quant_u8(u, sc, x, w, N, C, 1e-5f);
                else
                    fg_swiglu_quant_u8(u, sc, x, N, C);
                char what[64];
                snprintf(what, sizeof what, "%s %s", opn, names[v]);
                bad += check_codes(what, u, sc, y, N, C);
                fg_free(x);
                fg_free(w);
                fg_free(y);
                fg_free(sc);
                fg_free(rs);
                fg_free(u);
            }
            FG_CHECK(bad == 0, "%s %s: %d wrong codes or scales", opn, names[v], bad);
        }
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
    test_packed();
    test_codes();
    return fg_test_end();
}
