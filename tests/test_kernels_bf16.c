/* test_kernels_bf16.c: the bf16 ops in every variant this CPU supports: conversions bit
 * for bit against an independent round-to-nearest-even oracle (ties, subnormals, inf,
 * NaN, overflow, every bf16 value widened), and the bf16 GEMM against an fp64 sum of the
 * same bf16 inputs within the bound of docs/KERNELS.md, for NN/NT/TN/TT, several K,
 * ragged M/N, padded leading dimensions, alpha/beta, K = 0, and thread-count invariance;
 * the packed-B GEMM against the unpacked one; bf16_affine against PyTorch and ref; the
 * fused bf16 ops (softmax_xent_bf16, layernorm_forward_bf16, gelu_backward_bf16) and
 * colsum_add against their fp32 op then the
 * conversion. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/hw.h"
#include "frugal/kernels.h"
#include "harness.h"
#include "kernels_util.h"

static fg_rng rng;
static int verbose;

static double widen(uint16_t h)
{
    return (double)fg_test_from_bits((uint32_t)h << 16);
}

/* The oracle, written differently from the kernels: pick the nearer of the two bf16
 * neighbours (truncation and the next one up in magnitude) in double arithmetic, the
 * one with an even last bit on a tie. NaN: quiet NaN, sign and top payload kept. */
static uint16_t oracle(float f)
{
    uint32_t x = fg_test_bits(f);
    if (isnan(f))
        return (uint16_t)((x >> 16) | 0x40);
    if (isinf(f))
        return (uint16_t)(x >> 16);
    uint16_t lo = (uint16_t)(x >> 16), hi = (uint16_t)(lo + 1);
    /* past the largest finite bf16, hi is inf: IEEE rounds as if it were 2^128 */
    double whi = (hi & 0x7fff) == 0x7f80 ? copysign(ldexp(1.0, 128), (double)f) : widen(hi);
    double dl = fabs((double)f - widen(lo)), dh = fabs(whi - (double)f);
    if (dl < dh)
        return lo;
    if (dh < dl)
        return hi;
    return (lo & 1) ? hi : lo;
}

static void test_convert(void)
{
    /* specials and edges first, then random bit patterns (every class turns up) */
    static const uint32_t edges[] = {
        0x00000000, 0x80000000, 0x7f800000, 0xff800000,             /* zeros, infs */
        0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fbfffff, /* NaNs: quiet, signalling, payloads */
        0x7fff0000, 0x7fffffff, 0xffffffff, 0x7f808000, 0x7f80ffff, /* NaNs whose rounding would carry */
        0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0xbf808000, /* ties to even (down, up), near ties */
        0x00000001, 0x00008000, 0x00018000, 0x00007fff, 0x007fffff, /* subnormals: tiny, ties, to normal */
        0x807f8000, 0x80008001, 0x00800000, 0x7f7fffff, 0x7f7f8000, /* -subnormals, min normal, overflow to inf */
        0x7f7f7fff, 0xff7f8000, 0x3f800000, 0x4049fdb0, 0x0000ffff};
    size_t ne = sizeof edges / sizeof edges[0], n = ne + 100003; /* odd: vector tails */
    float *in = fg_malloc((n + 1) * sizeof(float));
    uint16_t *want = fg_malloc(n * sizeof(uint16_t)), *got = fg_malloc((n + 2) * sizeof(uint16_t));
    FG_ASSERT(in && want && got);
    for (size_t i = 0; i < n; i++)
        in[i] = fg_test_from_bits(i < ne ? edges[i] : (uint32_t)fg_rng_next(&rng));
    for (size_t i = 0; i < n; i++)
        want[i] = oracle(in[i]);
    const char *vs[8];
    int nv = variants("cvt_f32_bf16", vs);
    for (int v = 0; v < nv; v++) {
        use("cvt_f32_bf16", vs[v]);
        for (int off = 0; off < 2; off++) { /* aligned and misaligned starts */
            memset(got, 0xab, (n + 2) * sizeof(uint16_t));
            fg_cvt_f32_bf16(got + off, in, n - off);
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < n - off; i++)
                if (got[off + i] != want[i] && !bad++)
                    first = i;
            FG_CHECK(!bad, "cvt_f32_bf16[%s] off %d: %zu mismatches, first 0x%08x -> 0x%04x (want 0x%04x)", vs[v], off,
                     bad, fg_test_bits(in[first]), got[off + first], want[first]);
            FG_CHECK(got[off + n - off] == 0xabab, "cvt_f32_bf16[%s] wrote past the end", vs[v]);
        }
    }
    /* every bf16 value widens exactly (h << 16, NaNs included) */
    uint16_t *all = fg_malloc(65537 * sizeof(uint16_t));
    float *wide = fg_malloc(65538 * sizeof(float));
    FG_ASSERT(all && wide);
    for (uint32_t h = 0; h < 65537; h++)
        all[h] = (uint16_t)h;
    nv = variants("cvt_bf16_f32", vs);
    for (int v = 0; v < nv; v++) {
        use("cvt_bf16_f32", vs[v]);
        memset(wide, 0xab, 65538 * sizeof(float));
        fg_cvt_bf16_f32(wide, all, 65537);
        size_t bad = 0;
        for (uint32_t h = 0; h < 65537; h++)
            bad += fg_test_bits(wide[h]) != (uint32_t)(uint16_t)h << 16;
        FG_CHECK(!bad && fg_test_bits(wide[65537]) == 0xabababab, "cvt_bf16_f32[%s]: %zu mismatches", vs[v], bad);
    }
    fg_free(all);
    fg_free(wide);
    fg_free(in);
    fg_free(want);
    fg_free(got);
}

/* Random bf16 with magnitudes in [2^-6, 2^2) or zero, so no product or partial sum
 * comes near the subnormal range (where vdpbf16ps flushes; the bound's absolute term). */
static uint16_t *rand_bf16(size_t n)
{
    uint16_t *x = fg_malloc(n * sizeof(uint16_t) + 64);
    FG_ASSERT(x);
    for (size_t i = 0; i < n; i++) {
        float f = fg_rng_normal(&rng);
        if (fabsf(f) < 0.015625f)
            f = fg_rng_below(&rng, 8) ? copysignf(0.015625f, f) : 0.0f;
        x[i] = oracle(f);
    }
    return x;
}

static const double U = 5.9604644775390625e-08; /* 2^-24 */

typedef struct gemm_case {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
} gemm_case;

/* Runs the dispatched bgemm (variant already set) and checks every element against
 * the fp64 sum: |got - exact| <= gamma_{K+2} (|alpha| sum|a||b| + |beta||c|) + (K+2) 2^-126.
 * Returns the largest error / bound seen (for FG_TEST_VERBOSE). */
static double check_case(const char *v, const gemm_case *g, const uint16_t *A, const uint16_t *B, const float *C0,
                         const float *C)
{
    double n = g->K + 2, gamma = n * U / (1.0 - n * U), worst = 0.0;
    size_t bad = 0;
    int bi = 0, bj = 0;
    double bgot = 0, bwant = 0;
    for (int i = 0; i < g->M; i++) {
        for (int j = 0; j < g->N; j++) {
            double s = 0.0, sa = 0.0;
            for (int k = 0; k < g->K; k++) {
                double a = widen(g->ta ? A[(size_t)k * g->lda + i] : A[(size_t)i * g->lda + k]);
                double b = widen(g->tb ? B[(size_t)j * g->ldb + k] : B[(size_t)k * g->ldb + j]);
                s += a * b;
                sa += fabs(a * b);
            }
            double c0 = C0[(size_t)i * g->ldc + j];
            double want = g->alpha * s + (g->beta == 0.0f ? 0.0 : g->beta * c0);
            double bound = gamma * (fabs(g->alpha) * sa + (g->beta == 0.0f ? 0.0 : fabs(g->beta * c0))) +
                           n * 1.1754943508222875e-38;
            double got = C[(size_t)i * g->ldc + j], err = fabs(got - want);
            if (!(err <= bound) && !bad++) {
                bi = i, bj = j, bgot = got, bwant = want;
            }
            if (bound > 0 && err / bound > worst)
                worst = err / bound;
        }
    }
    /* padding columns of C untouched */
    for (int i = 0; i < g->M; i++)
        for (int j = g->N; j < g->ldc; j++)
            bad += fg_test_bits(C[(size_t)i * g->ldc + j]) != fg_test_bits(C0[(size_t)i * g->ldc + j]);
    FG_CHECK(!bad, "bgemm[%s] %s%s M%d N%d K%d alpha %g beta %g: %zu bad, first (%d,%d) got %.9g want %.9g", v,
             g->ta ? "T" : "N", g->tb ? "T" : "N", g->M, g->N, g->K, g->alpha, g->beta, bad, bi, bj, bgot, bwant);
    return worst;
}

static double run_case(const char *v, const gemm_case *g, const uint16_t *A, const uint16_t *B, const float *C0,
                       float *C)
{
    memcpy(C, C0, sizeof(float) * (size_t)g->M * g->ldc);
    fg_bgemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, g->lda, B, g->ldb, g->beta, C, g->ldc);
    return check_case(v, g, A, B, C0, C);
}

/* The packed route (bgemm_pack_b + bgemm_packed) on case g: every pack variant writes
 * the reference's words (padding zeros included), every packed variant is within the
 * bound, and ref / avx512bf16 equal their own bgemm bit for bit (same sums, same order),
 * whichever variant packed. C holds the unpacked result of variant v on entry. */
static void check_packed(const gemm_case *g, const uint16_t *A, const uint16_t *B, const float *C0)
{
    size_t words = fg_bgemm_packed_words(g->N, g->K), nc = (size_t)g->M * g->ldc;
    uint32_t *P0 = fg_malloc(words * sizeof(uint32_t) + 4), *P = fg_malloc(words * sizeof(uint32_t) + 4);
    float *C = fg_malloc(sizeof(float) * nc), *Cu = fg_malloc(sizeof(float) * nc);
    FG_ASSERT(P0 && P && C && Cu);
    const char *ps[8], *vs[8];
    int np = variants("bgemm_pack_b", ps), nv = variants("bgemm_packed", vs);
    fg_bgemm_pack_b_ref(P0, g->tb, g->N, g->K, B, g->ldb);
    for (int p = 0; p < np; p++) {
        use("bgemm_pack_b", ps[p]);
        memset(P, 0xa5, words * sizeof(uint32_t));
        fg_bgemm_pack_b(P, g->tb, g->N, g->K, B, g->ldb);
        FG_CHECK(!memcmp(P, P0, words * sizeof(uint32_t)), "bgemm_pack_b[%s] %s N%d K%d: words differ from ref", ps[p],
                 g->tb ? "T" : "N", g->N, g->K);
        for (int v = 0; v < nv; v++) {
            use("bgemm_packed", vs[v]);
            memcpy(C, C0, sizeof(float) * nc);
            fg_bgemm_packed(g->ta, g->M, g->N, g->K, g->alpha, A, g->lda, P, g->beta, C, g->ldc);
            check_case(vs[v], g, A, B, C0, C);
            if (!strcmp(vs[v], "blas"))
                continue;
            use("bgemm", vs[v]);
            memcpy(Cu, C0, sizeof(float) * nc);
            fg_bgemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, g->lda, B, g->ldb, g->beta, Cu, g->ldc);
            FG_CHECK(!memcmp(C, Cu, sizeof(float) * nc),
                     "bgemm_packed[%s] (packed by %s) %s%s M%d N%d K%d differs from bgemm", vs[v], ps[p],
                     g->ta ? "T" : "N", g->tb ? "T" : "N", g->M, g->N, g->K);
        }
    }
    fg_free(P0);
    fg_free(P);
    fg_free(C);
    fg_free(Cu);
}

static void test_bgemm(void)
{
    static const int Ks[] = {1, 2, 17, 128, 257, 768, 3072};
    static const int MN[][2] = {{37, 53}, {9, 101}, {1, 1}};
    const char *vs[8];
    int nv = variants("bgemm", vs);
    for (int ks = 0; ks < (int)(sizeof Ks / sizeof Ks[0]); ks++) {
        for (int s = 0; s < 3; s++) {
            for (int t = 0; t < 4; t++) {
                int K = Ks[ks], M = MN[s][0], N = MN[s][1];
                if (K == 3072 && s != 0)
                    continue;
                gemm_case g = {t >> 1, t & 1, M, N, K, 0, 0, N + 3, 1.0f, 0.0f};
                g.lda = (g.ta ? M : K) + 5; /* padded leading dimensions */
                g.ldb = (g.tb ? K : N) + 2;
                /* alpha/beta: plain, accumulate (backward), scaled */
                if (t == 1)
                    g.alpha = 0.5f, g.beta = 0.25f;
                if (t == 2)
                    g.beta = 1.0f;
                if (t == 3)
                    g.alpha = -2.0f, g.beta = -1.0f;
                size_t na = (size_t)(g.ta ? K : M) * g.lda, nb = (size_t)(g.tb ? N : K) * g.ldb;
                uint16_t *A = rand_bf16(na), *B = rand_bf16(nb);
                float *C0 = fg_malloc(sizeof(float) * (size_t)M * g.ldc),
                      *C = fg_malloc(sizeof(float) * (size_t)M * g.ldc);
                FG_ASSERT(C0 && C);
                for (size_t i = 0; i < (size_t)M * g.ldc; i++)
                    C0[i] = g.beta == 0.0f ? NAN : fg_rng_normal(&rng); /* beta == 0 must not read C */
                for (int v = 0; v < nv; v++) {
                    use("bgemm", vs[v]);
                    double w = run_case(vs[v], &g, A, B, C0, C);
                    if (verbose)
                        printf("  bgemm[%-10s] %c%c M%-3d N%-3d K%-4d err/bound %.3f\n", vs[v], g.ta ? 'T' : 'N',
                               g.tb ? 'T' : 'N', M, N, K, w);
                }
                check_packed(&g, A, B, C0);
                fg_free(A);
                fg_free(B);
                fg_free(C0);
                fg_free(C);
            }
        }
    }
}

/* Shapes that cross the blocks (M > 512, K > 256 and odd, N not a multiple of 48) and
 * the thread split on both M and N; the result must not depend on the thread count
 * (threads split M or N, never K: same sums in the same order). */
static void test_bgemm_blocks(void)
{
    static const gemm_case cases[] = {
        {0, 1, 600, 130, 301, 301, 301, 130, 1.0f, 0.0f}, /* forward NT, split N */
        {0, 0, 70, 700, 515, 515, 700, 700, 1.0f, 1.0f},  /* dinp NN, split N */
        {1, 0, 1100, 97, 260, 1100, 97, 97, 1.0f, 1.0f},  /* dweight TN, split M */
        {0, 1, 64, 96, 4096, 4096, 4096, 96, 1.0f, 0.0f}, /* long K */
        {0, 0, 5, 7, 0, 1, 7, 7, 1.0f, 0.5f},             /* K = 0: C = beta C */
    };
    const char *vs[8];
    int nv = variants("bgemm", vs), nthreads = fg_threads_get();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const gemm_case *g = &cases[c];
        size_t na = (size_t)(g->ta ? g->K : g->M) * g->lda, nb = (size_t)(g->tb ? g->N : g->K) * g->ldb;
        uint16_t *A = rand_bf16(na + 1), *B = rand_bf16(nb + 1);
        size_t nc = (size_t)g->M * g->ldc;
        float *C0 = fg_malloc(sizeof(float) * nc), *C = fg_malloc(sizeof(float) * nc),
              *C1 = fg_malloc(sizeof(float) * nc);
        FG_ASSERT(C0 && C && C1);
        for (size_t i = 0; i < nc; i++)
            C0[i] = fg_rng_normal(&rng);
        for (int v = 0; v < nv; v++) {
            use("bgemm", vs[v]);
            double w = run_case(vs[v], g, A, B, C0, C);
            if (verbose)
                printf("  bgemm[%-10s] %c%c M%-4d N%-4d K%-4d err/bound %.3f\n", vs[v], g->ta ? 'T' : 'N',
                       g->tb ? 'T' : 'N', g->M, g->N, g->K, w);
            if (strcmp(vs[v], "avx512bf16"))
                continue;
            fg_threads_set(1);
            memcpy(C1, C0, sizeof(float) * nc);
            fg_bgemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, A, g->lda, B, g->ldb, g->beta, C1, g->ldc);
            fg_threads_set(nthreads);
            FG_CHECK(!memcmp(C, C1, sizeof(float) * nc), "bgemm[avx512bf16] case %zu: 1 thread differs from %d", c,
                     nthreads);
        }
        check_packed(g, A, B, C0);
        fg_free(A);
        fg_free(B);
        fg_free(C0);
        fg_free(C);
        fg_free(C1);
    }
}

/* avx512bf16 reads a row-major A's pairs in place (no pack) unless the K block ends on a
 * half pair or the rows lie a multiple of 4 KB apart; and runs an edge strip of <= 32 or
 * <= 16 columns with fewer B vectors. Both must leave the sums and their order as the
 * packed path's: the same A stored with lda = 2048 (4 KB rows: packed) and with an odd
 * lda (in place, words 2-byte aligned) must give the same bits, within the bound, for
 * the recipe's shapes (N = 128, 176, 352: edge strips of 32, 32, 16 columns; M = 37:
 * an edge of 5 rows) and an odd K over several K blocks (the last one packed). */
static void test_bgemm_inplace_a(void)
{
    static const int shp[][3] = {{37, 176, 128}, {37, 352, 128}, {70, 128, 176}, {9, 130, 1537}, {16, 48, 2}};
    if (fg_kernels_set("bgemm", "avx512bf16") != FG_OK) {
        printf("  (bgemm avx512bf16 not on this CPU: in-place A test skipped)\n");
        return;
    }
    for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s++) {
        for (int tb = 0; tb < 2; tb++) {
            int M = shp[s][0], N = shp[s][1], K = shp[s][2], ldo = K + 1, ldb = tb ? K : N;
            gemm_case g = {0, tb, M, N, K, 2048, ldb, N, 1.0f, 1.0f};
            uint16_t *A = rand_bf16((size_t)M * 2048), *B = rand_bf16((size_t)(tb ? N : K) * ldb),
                     *Ao = fg_malloc((size_t)M * ldo * sizeof(uint16_t) + 64);
            float *C0 = fg_malloc(sizeof(float) * (size_t)M * N), *C = fg_malloc(sizeof(float) * (size_t)M * N),
                  *Co = fg_malloc(sizeof(float) * (size_t)M * N);
            FG_ASSERT(Ao && C0 && C && Co);
            for (int i = 0; i < M; i++)
                memcpy(Ao + (size_t)i * ldo, A + (size_t)i * 2048, (size_t)K * sizeof(uint16_t));
            for (size_t i = 0; i < (size_t)M * N; i++)
                C0[i] = fg_rng_normal(&rng);
            run_case("avx512bf16", &g, A, B, C0, C);
            memcpy(Co, C0, sizeof(float) * (size_t)M * N);
            fg_bgemm(0, tb, M, N, K, 1.0f, Ao, ldo, B, ldb, 1.0f, Co, N);
            FG_CHECK(!memcmp(C, Co, sizeof(float) * (size_t)M * N),
                     "bgemm[avx512bf16] N%c M%d N%d K%d: A in place (lda %d) differs from A packed (lda 2048)",
                     tb ? 'T' : 'N', M, N, K, ldo);
            fg_free(A);
            fg_free(B);
            fg_free(Ao);
            fg_free(C0);
            fg_free(C);
            fg_free(Co);
        }
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* bf16_affine in every variant: against PyTorch bit for bit (fixture: infs, overflow to
 * inf, -0, ties; b given and NULL), then against ref bit for bit on rows large enough to
 * be split over threads, with NaN in x and every out / outf combination. */
static void test_affine(void)
{
    const char *vs[8];
    int nv = variants("bf16_affine", vs);
    fg_fixture fxs, *fx = &fxs;
    const char *path = fg_test_source_path("tests/fixtures/kernels/bf16_affine.fgfix");
    fg_status st = fg_fixture_load(fx, path);
    FG_CHECK(st == FG_OK, "load %s: %s", path, fg_last_error());
    if (st == FG_OK) {
        const fg_fixture_tensor *tx = fg_fixture_get(fx, "affine.x");
        const float *w = FG_FIX_F32(fx, "affine.w"), *b = FG_FIX_F32(fx, "affine.b");
        int N = tx->shape[0], C = tx->shape[1];
        size_t n = tx->numel;
        uint16_t *x = fg_malloc(n * 2), *out = fg_malloc(n * 2);
        float *outf = fg_malloc(n * 4);
        FG_ASSERT(x && out && outf);
        for (size_t i = 0; i < n; i++)
            x[i] = (uint16_t)((const int32_t *)tx->data)[i];
        for (int v = 0; v < nv; v++) {
            use("bf16_affine", vs[v]);
            for (int nob = 0; nob < 2; nob++) {
                fg_bf16_affine(out, outf, x, w, nob ? NULL : b, N, C);
                const int32_t *wo = fg_fixture_get(fx, nob ? "affine.out_nob" : "affine.out")->data;
                const float *wf = FG_FIX_F32(fx, nob ? "affine.outf_nob" : "affine.outf");
                size_t bad = 0, first = 0;
                for (size_t i = 0; i < n; i++)
                    if (out[i] != (uint16_t)wo[i] || fg_test_bits(outf[i]) != fg_test_bits(wf[i]))
                        first = bad++ ? first : i;
                FG_CHECK(!bad, "bf16_affine[%s] %s vs torch: %zu differ, first %zu: %04x (%.9g) want %04x (%.9g)",
                         vs[v], nob ? "b NULL" : "b", bad, first, out[first], (double)outf[first], (unsigned)wo[first],
                         (double)wf[first]);
            }
        }
        fg_free(x);
        fg_free(out);
        fg_free(outf);
        fg_fixture_free(fx);
    }
    enum { N = 70, C = 1001 };
    size_t n = (size_t)N * C;
    uint16_t *x = rand_bf16(n), *o0 = fg_malloc(n * 2), *o1 = fg_malloc(n * 2);
    float *w = fg_malloc(C * 4), *b = fg_malloc(C * 4), *f0 = fg_malloc(n * 4), *f1 = fg_malloc(n * 4);
    FG_ASSERT(o0 && o1 && w && b && f0 && f1);
    for (int c = 0; c < C; c++)
        w[c] = fg_rng_normal(&rng), b[c] = c % 7 ? fg_rng_normal(&rng) : 0.0f;
    x[5] = 0x7fc1, x[6] = 0xffa0, x[7] = 0x7f80, x[8] = 0x8000, x[9] = 0x0001; /* NaNs, inf, -0, subnormal */
    fg_bf16_affine_ref(o0, f0, x, w, b, N, C);
    for (int v = 0; v < nv; v++) {
        use("bf16_affine", vs[v]);
        for (int mode = 0; mode < 3; mode++) { /* both, bf16 only, fp32 only */
            memset(o1, 0xa5, n * 2);
            memset(f1, 0xa5, n * 4);
            fg_bf16_affine(mode == 2 ? NULL : o1, mode == 1 ? NULL : f1, x, w, b, N, C);
            FG_CHECK(mode == 2 || !memcmp(o0, o1, n * 2), "bf16_affine[%s] mode %d: bf16 out differs from ref", vs[v],
                     mode);
            FG_CHECK(mode == 1 || !memcmp(f0, f1, n * 4), "bf16_affine[%s] mode %d: fp32 out differs from ref", vs[v],
                     mode);
            FG_CHECK(mode != 2 || o1[n - 1] == 0xa5a5, "bf16_affine[%s]: out NULL written", vs[v]);
            FG_CHECK(mode != 1 || fg_test_bits(f1[n - 1]) == 0xa5a5a5a5u, "bf16_affine[%s]: outf NULL written", vs[v]);
        }
    }
    fg_free(x);
    fg_free(o0);
    fg_free(o1);
    fg_free(w);
    fg_free(b);
    fg_free(f0);
    fg_free(f1);
}

/* softmax_xent_bf16 in every variant: the bf16 gradient is bit for bit cvt_f32_bf16 of
 * the fp32 gradient that softmax_xent's variant of the same name writes in place (the
 * model's route before), and the losses and the sum are softmax_xent's: ignored rows,
 * padding columns, V not a multiple of 16, GPT-2's V, large logits and a dloss small
 * enough for subnormal gradients (rounded, not flushed). */
static void test_xent_bf16(void)
{
    const char *vs[8];
    int nv = variants("softmax_xent_bf16", vs);
    static const int shapes[][3] = {{5, 37, 64}, {7, 1000, 1024}, {3, 50257, 50304}}; /* N, V, Vp */
    static const float dlosses[] = {1.0f, 1.0f / 1024.0f, 1e-39f};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int N = shapes[sh][0], V = shapes[sh][1], Vp = shapes[sh][2];
        size_t n = (size_t)N * Vp;
        float *x = fg_malloc(n * 4), *x1 = fg_malloc(n * 4), *l0 = fg_malloc((size_t)N * 4),
              *l1 = fg_malloc((size_t)N * 4);
        uint16_t *want = fg_malloc(n * 2), *got = fg_malloc(n * 2);
        int32_t *tg = fg_malloc((size_t)N * 4);
        FG_ASSERT(x && x1 && l0 && l1 && want && got && tg);
        for (size_t i = 0; i < n; i++)
            x[i] = (i % (size_t)Vp) < (size_t)V ? 3.0f * fg_rng_normal(&rng) : 1e30f; /* padding: garbage */
        for (int r = 0; r < N; r++)
            tg[r] = r == 1 ? -1 : (int32_t)fg_rng_below(&rng, (uint32_t)V);
        x[(size_t)Vp + 2] = 80.0f; /* an ignored row's values do not matter */
        x[2] = 88.0f;              /* a dominant logit: the others' gradients are tiny */
        for (int v = 0; v < nv; v++) {
            use("softmax_xent_bf16", vs[v]);
            use("softmax_xent", vs[v]);
            for (size_t di = 0; di < sizeof dlosses / sizeof dlosses[0]; di++) {
                float dl = dlosses[di];
                memcpy(x1, x, n * 4);
                double s0 = fg_softmax_xent(x1, l0, x1, tg, N, V, Vp, dl);
                fg_cvt_f32_bf16_ref(want, x1, n);
                memcpy(x1, x, n * 4);
                memset(got, 0xa5, n * 2);
                double s1 = fg_softmax_xent_bf16(got, l1, x1, tg, N, V, Vp, dl);
                size_t bad = 0, first = 0;
                for (size_t i = 0; i < n; i++)
                    if (got[i] != want[i] && !bad++)
                        first = i;
                FG_CHECK(!bad, "softmax_xent_bf16[%s] N%d V%d dloss %g: %zu differ, first %zu: %04x want %04x", vs[v],
                         N, V, (double)dl, bad, first, got[first], want[first]);
                FG_CHECK(s0 == s1 && !memcmp(l0, l1, (size_t)N * 4), "softmax_xent_bf16[%s] V%d: losses differ", vs[v],
                         V);
            }
        }
        fg_free(x);
        fg_free(x1);
        fg_free(l0);
        fg_free(l1);
        fg_free(want);
        fg_free(got);
        fg_free(tg);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* layernorm_forward_bf16 in every variant: x-hat, output, mean and rstd bit for bit as the
 * two-pass route makes them with layernorm_forward's variant of the same name
 * (layernorm_forward with weight 1 and bias 0, cvt_f32_bf16, bf16_affine): a row of -0
 * (x-hat +0), a constant row, a row with an inf (NaN), large and tiny rows, C not a
 * multiple of 16, b NULL, subnormal outputs. */
static void test_layernorm_bf16(void)
{
    const char *vs[8];
    int nv = variants("layernorm_forward_bf16", vs);
    enum { N = 9, C = 200 };
    size_t n = (size_t)N * C;
    float *x = fg_malloc(n * 4), *f = fg_malloc(n * 4), *w = fg_malloc(C * 4), *b = fg_malloc(C * 4),
          *ones = fg_malloc(C * 4), *zeros = fg_malloc(C * 4);
    float m0[N], r0[N], m1[N], r1[N];
    uint16_t *xh0 = fg_malloc(n * 2), *o0 = fg_malloc(n * 2), *xh1 = fg_malloc(n * 2), *o1 = fg_malloc(n * 2);
    FG_ASSERT(x && f && w && b && ones && zeros && xh0 && o0 && xh1 && o1);
    for (size_t i = 0; i < n; i++)
        x[i] = fg_rng_normal(&rng) * (i / C == 4 ? 1e30f : i / C == 5 ? 1e-30f : 1.0f) + (i / C == 6 ? 100.0f : 0.0f);
    for (int c = 0; c < C; c++) {
        x[c] = -0.0f;    /* row 0: all -0 */
        x[C + c] = 2.5f; /* row 1: constant */
        w[c] = fg_rng_normal(&rng), b[c] = c % 5 ? fg_rng_normal(&rng) : -0.0f;
        ones[c] = 1.0f, zeros[c] = 0.0f;
    }
    x[2 * C + 7] = INFINITY;                     /* row 2: NaN x-hat */
    w[3] = 1e-39f, b[3] = 0.0f, w[40] = -3e-40f; /* subnormal outputs: rounded, not flushed */
    for (int v = 0; v < nv; v++) {
        use("layernorm_forward_bf16", vs[v]);
        use("layernorm_forward", vs[v]);
        for (int nob = 0; nob < 2; nob++) {
            const float *bb = nob ? NULL : b;
            fg_layernorm_forward(f, m0, r0, x, ones, zeros, N, C, 1e-5f);
            fg_cvt_f32_bf16_ref(xh0, f, n);
            fg_bf16_affine_ref(o0, NULL, xh0, w, bb, N, C);
            memset(xh1, 0xa5, n * 2);
            memset(o1, 0xa5, n * 2);
            fg_layernorm_forward_bf16(xh1, o1, m1, r1, x, w, bb, N, C, 1e-5f);
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < n; i++)
                if ((xh0[i] != xh1[i] || o0[i] != o1[i]) && !bad++)
                    first = i;
            FG_CHECK(!bad,
                     "layernorm_forward_bf16[%s] b%s: %zu differ, first %zu: x-hat %04x want %04x, out %04x want %04x",
                     vs[v], nob ? " NULL" : "", bad, first, xh1[first], xh0[first], o1[first], o0[first]);
            FG_CHECK(!memcmp(m0, m1, sizeof m0) && !memcmp(r0, r1, sizeof r0),
                     "layernorm_forward_bf16[%s]: mean/rstd differ", vs[v]);
            FG_CHECK(xh1[0] == 0x0000, "layernorm_forward_bf16[%s]: x-hat of -0 is %04x, want +0", vs[v], xh1[0]);
        }
    }
    fg_free(x), fg_free(f), fg_free(w), fg_free(b), fg_free(ones), fg_free(zeros);
    fg_free(xh0), fg_free(o0), fg_free(xh1), fg_free(o1);
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* gelu_backward_bf16 in every variant: fp32 and bf16 outputs bit for bit as gelu_backward's
 * variant of the same name into a zeroed array, then cvt_f32_bf16 (-0 products give +0),
 * each output alone too, n not a multiple of 16; inputs: every bf16 exponent range, inf,
 * NaN, -0; subnormal gradients (the bf16 unit's rounding flushes them: the rule's path). */
static void test_gelu_bf16(void)
{
    const char *vs[8];
    int nv = variants("gelu_backward_bf16", vs);
    enum { NG = 70001 };
    uint16_t *xb = rand_bf16(NG), *g0 = fg_malloc(NG * 2), *g1 = fg_malloc(NG * 2);
    float *xf = fg_malloc(NG * 4), *dout = fg_malloc(NG * 4), *d0 = fg_malloc(NG * 4), *d1 = fg_malloc(NG * 4);
    FG_ASSERT(xb && g0 && g1 && xf && dout && d0 && d1);
    for (size_t i = 0; i < NG; i++) {
        if (i % 11 == 0)
            xb[i] = (uint16_t)fg_rng_below(&rng, 65536); /* any bits: huge, tiny, inf, NaN */
        dout[i] = i % 13 == 0 ? -0.0f : i % 17 == 0 ? 1e-39f * fg_rng_normal(&rng) : fg_rng_normal(&rng);
    }
    xb[1] = 0x8000, xb[2] = 0x7f80, xb[3] = 0xff80, xb[4] = 0x7fc0;
    fg_cvt_bf16_f32_ref(xf, xb, NG);
    for (int v = 0; v < nv; v++) {
        use("gelu_backward_bf16", vs[v]);
        use("gelu_backward", vs[v]);
        memset(d0, 0, NG * 4);
        fg_gelu_backward(d0, dout, xf, NG);
        fg_cvt_f32_bf16_ref(g0, d0, NG);
        for (int mode = 0; mode < 3; mode++) { /* both, bf16 only, fp32 only */
            memset(g1, 0xa5, NG * 2);
            memset(d1, 0xa5, NG * 4);
            fg_gelu_backward_bf16(mode == 2 ? NULL : g1, mode == 1 ? NULL : d1, dout, xb, NG);
            FG_CHECK(mode == 2 || !memcmp(g0, g1, NG * 2), "gelu_backward_bf16[%s] mode %d: bf16 differs", vs[v], mode);
            FG_CHECK(mode == 1 || !memcmp(d0, d1, NG * 4), "gelu_backward_bf16[%s] mode %d: fp32 differs", vs[v], mode);
            FG_CHECK(mode != 2 || g1[NG - 1] == 0xa5a5, "gelu_backward_bf16[%s]: dinpb NULL written", vs[v]);
            FG_CHECK(mode != 1 || fg_test_bits(d1[NG - 1]) == 0xa5a5a5a5u, "gelu_backward_bf16[%s]: dinp NULL written",
                     vs[v]);
        }
    }
    fg_free(xb), fg_free(g0), fg_free(g1), fg_free(xf), fg_free(dout), fg_free(d0), fg_free(d1);
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* swiglu_forward_bf16 and swiglu_backward_bf16 in every variant: bit for bit swiglu_forward
 * then cvt_f32_bf16, and swiglu_backward into a zeroed array then cvt (-0 products give
 * +0; SET: the output's previous bytes never matter), for the variant of the same name;
 * H not a multiple of 16 or 32 (tails), one shape over FG_PAR_MIN_ELEMS (the threaded
 * branch) also at 1 thread; inputs with inf, NaN, -0, huge values and subnormal
 * gradients (the bf16 unit's rounding flushes them: the rule's path). */
static void test_swiglu_bf16(void)
{
    const char *vs[8];
    int nv = variants("swiglu_forward_bf16", vs), nthreads = fg_threads_get();
    static const int shapes[][2] = {{3000, 176}, {37, 45}, {5, 16}, {2, 33}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int N = shapes[sh][0], H = shapes[sh][1];
        size_t nh = (size_t)N * H, n2 = 2 * nh;
        float *inp = fg_malloc(n2 * 4), *dout = fg_malloc(nh * 4), *f = fg_malloc(n2 * 4);
        uint16_t *b0 = fg_malloc(n2 * 2), *b1 = fg_malloc(n2 * 2);
        FG_ASSERT(inp && dout && f && b0 && b1);
        for (size_t i = 0; i < n2; i++)
            inp[i] = i % 97 == 0 ? 60.0f * fg_rng_normal(&rng) : 3.0f * fg_rng_normal(&rng);
        for (size_t i = 0; i < nh; i++)
            dout[i] = i % 13 == 0 ? -0.0f : i % 17 == 0 ? 1e-39f * fg_rng_normal(&rng) : fg_rng_normal(&rng);
        inp[1] = -0.0f, inp[3] = INFINITY, inp[5] = -INFINITY, inp[7] = NAN, inp[n2 - 1] = 1e-40f;
        for (int v = 0; v < nv; v++) {
            use("swiglu_forward_bf16", vs[v]);
            use("swiglu_forward", vs[v]);
            use("swiglu_backward_bf16", vs[v]);
            use("swiglu_backward", vs[v]);
            fg_swiglu_forward(f, inp, N, H);
            fg_cvt_f32_bf16_ref(b0, f, nh);
            for (int th = 0; th < 2; th++) {
                fg_threads_set(th ? 1 : nthreads);
                memset(b1, 0xa5, n2 * 2);
                fg_swiglu_forward_bf16(b1, inp, N, H);
                FG_CHECK(!memcmp(b0, b1, nh * 2), "swiglu_forward_bf16[%s] %dx%d th %d: differs", vs[v], N, H, th);
                FG_CHECK(b1[nh] == 0xa5a5, "swiglu_forward_bf16[%s] %dx%d: wrote past the end", vs[v], N, H);
            }
            fg_threads_set(nthreads);
            memset(f, 0, n2 * 4);
            fg_swiglu_backward(f, dout, inp, N, H);
            fg_cvt_f32_bf16_ref(b0, f, n2);
            for (int th = 0; th < 2; th++) {
                fg_threads_set(th ? 1 : nthreads);
                memset(b1, th ? 0xff : 0xa5, n2 * 2);
                fg_swiglu_backward_bf16(b1, dout, inp, N, H);
                FG_CHECK(!memcmp(b0, b1, n2 * 2), "swiglu_backward_bf16[%s] %dx%d th %d: differs", vs[v], N, H, th);
            }
            fg_threads_set(nthreads);
        }
        fg_free(inp), fg_free(dout), fg_free(f), fg_free(b0), fg_free(b1);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* rmsnorm_forward_bf16 in every variant: rstd, the x-hat and both outputs bit for bit
 * rmsnorm_forward (weight 1) of the variant of the same name, cvt_f32_bf16 and
 * bf16_affine; each output alone; C not a multiple of 16 or 32; one shape over
 * FG_PAR_MIN_ELEMS also at 1 thread; inputs with -0, huge and tiny rows. */
static void test_rmsnorm_fwd_bf16(void)
{
    const char *vs[8];
    int nv = variants("rmsnorm_forward_bf16", vs), nthreads = fg_threads_get();
    static const int shapes[][2] = {{1024, 768}, {37, 45}, {5, 16}, {3, 130}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int N = shapes[sh][0], C = shapes[sh][1];
        size_t n = (size_t)N * C;
        float *x = fg_malloc(n * 4), *y = fg_malloc(n * 4), *w = fg_malloc((size_t)C * 4),
              *ones = fg_malloc((size_t)C * 4), *r0 = fg_malloc((size_t)N * 4), *r1 = fg_malloc((size_t)N * 4),
              *f0 = fg_malloc(n * 4), *f1 = fg_malloc(n * 4);
        uint16_t *xh0 = fg_malloc(n * 2), *xh1 = fg_malloc(n * 2), *o0 = fg_malloc(n * 2), *o1 = fg_malloc(n * 2);
        FG_ASSERT(x && y && w && ones && r0 && r1 && f0 && f1 && xh0 && xh1 && o0 && o1);
        for (size_t i = 0; i < n; i++)
            x[i] = i % 31 == 0 ? -0.0f
                               : fg_rng_normal(&rng) * (i / C % 3 == 1   ? 1e18f
                                                        : i / C % 3 == 2 ? 1e-18f
                                                                         : 1.0f);
        for (int c = 0; c < C; c++)
            w[c] = fg_rng_normal(&rng), ones[c] = 1.0f;
        for (int v = 0; v < nv; v++) {
            use("rmsnorm_forward_bf16", vs[v]);
            use("rmsnorm_forward", vs[v]);
            fg_rmsnorm_forward(y, r0, x, ones, N, C, 1e-5f);
            fg_cvt_f32_bf16_ref(xh0, y, n);
            fg_bf16_affine_ref(o0, f0, xh0, w, NULL, N, C);
            for (int mode = 0; mode < 4; mode++) { /* both, bf16 only, fp32 only, both on 1 thread */
                fg_threads_set(mode == 3 ? 1 : nthreads);
                memset(xh1, 0xa5, n * 2), memset(o1, 0xa5, n * 2), memset(f1, 0xa5, n * 4);
                fg_rmsnorm_forward_bf16(xh1, mode == 2 ? NULL : o1, mode == 1 ? NULL : f1, r1, x, w, N, C, 1e-5f);
                FG_CHECK(!memcmp(r0, r1, (size_t)N * 4) && !memcmp(xh0, xh1, n * 2),
                         "rmsnorm_forward_bf16[%s] %dx%d mode %d: rstd or x-hat differs", vs[v], N, C, mode);
                FG_CHECK(mode == 2 || !memcmp(o0, o1, n * 2), "rmsnorm_forward_bf16[%s] %dx%d mode %d: out differs",
                         vs[v], N, C, mode);
                FG_CHECK(mode == 1 || !memcmp(f0, f1, n * 4), "rmsnorm_forward_bf16[%s] %dx%d mode %d: outf differs",
                         vs[v], N, C, mode);
                FG_CHECK(mode != 2 || o1[n - 1] == 0xa5a5, "rmsnorm_forward_bf16[%s]: out NULL written", vs[v]);
                FG_CHECK(mode != 1 || fg_test_bits(f1[n - 1]) == 0xa5a5a5a5u,
                         "rmsnorm_forward_bf16[%s]: outf NULL written", vs[v]);
            }
            fg_threads_set(nthreads);
        }
        fg_free(x), fg_free(y), fg_free(w), fg_free(ones), fg_free(r0), fg_free(r1), fg_free(f0), fg_free(f1);
        fg_free(xh0), fg_free(xh1), fg_free(o0), fg_free(o1);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* rmsnorm_backward_bf16 in every variant: bit for bit rmsnorm_backward of the variant of
 * the same name on the input rebuilt as x-hat * (1 / rstd) + 0, both gradients added into
 * pre-filled arrays, each alone (NULL), C not a multiple of 16 or of the 64-column blocks,
 * one shape over FG_PAR_MIN_ELEMS (the threaded branches) also at 1 thread, -0 x-hats. */
static void test_rmsnorm_bwd_bf16(void)
{
    const char *vs[8];
    int nv = variants("rmsnorm_backward_bf16", vs), nthreads = fg_threads_get();
    static const int shapes[][2] = {{1024, 768}, {37, 45}, {5, 16}, {3, 130}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int N = shapes[sh][0], C = shapes[sh][1];
        size_t n = (size_t)N * C;
        uint16_t *xh = rand_bf16(n);
        float *inp = fg_malloc(n * 4), *g = fg_malloc(n * 4), *w = fg_malloc((size_t)C * 4),
              *rstd = fg_malloc((size_t)N * 4), *d0 = fg_malloc(n * 4), *d1 = fg_malloc(n * 4),
              *dw0 = fg_malloc((size_t)C * 4), *dw1 = fg_malloc((size_t)C * 4);
        FG_ASSERT(xh && inp && g && w && rstd && d0 && d1 && dw0 && dw1);
        for (size_t i = 0; i < n; i++) {
            g[i] = fg_rng_normal(&rng);
            if (i % 29 == 0)
                xh[i] = 0x8000; /* -0: the rebuild's + 0 makes it +0 */
        }
        for (int c = 0; c < C; c++)
            w[c] = fg_rng_normal(&rng);
        for (int r = 0; r < N; r++)
            rstd[r] = 0.3f + 3.0f * fg_rng_uniform(&rng);
        fg_cvt_bf16_f32_ref(inp, xh, n);
        for (int r = 0; r < N; r++)
            for (int c = 0; c < C; c++)
                inp[(size_t)r * C + c] = inp[(size_t)r * C + c] * (1.0f / rstd[r]) + 0.0f;
        for (int v = 0; v < nv; v++) {
            use("rmsnorm_backward_bf16", vs[v]);
            use("rmsnorm_backward", vs[v]);
            for (size_t i = 0; i < n; i++)
                d0[i] = 0.25f * (float)(i % 7);
            for (int c = 0; c < C; c++)
                dw0[c] = 0.5f * (float)(c % 5);
            fg_rmsnorm_backward(d0, dw0, g, inp, w, rstd, N, C);
            for (int mode = 0; mode < 4; mode++) { /* both, dinp only, dweight only, both on 1 thread */
                fg_threads_set(mode == 3 ? 1 : nthreads);
                for (size_t i = 0; i < n; i++)
                    d1[i] = 0.25f * (float)(i % 7);
                for (int c = 0; c < C; c++)
                    dw1[c] = 0.5f * (float)(c % 5);
                fg_rmsnorm_backward_bf16(mode == 2 ? NULL : d1, mode == 1 ? NULL : dw1, g, xh, w, rstd, N, C);
                FG_CHECK(mode == 2 || !memcmp(d0, d1, n * 4), "rmsnorm_backward_bf16[%s] %dx%d mode %d: dinp differs",
                         vs[v], N, C, mode);
                FG_CHECK(mode == 1 || !memcmp(dw0, dw1, (size_t)C * 4),
                         "rmsnorm_backward_bf16[%s] %dx%d mode %d: dweight differs", vs[v], N, C, mode);
                FG_CHECK(mode != 2 || d1[n - 1] == 0.25f * (float)((n - 1) % 7),
                         "rmsnorm_backward_bf16[%s]: dinp NULL written", vs[v]);
                FG_CHECK(mode != 1 || dw1[C - 1] == 0.5f * (float)((C - 1) % 5),
                         "rmsnorm_backward_bf16[%s]: dweight NULL written", vs[v]);
            }
            fg_threads_set(nthreads);
        }
        fg_free(xh), fg_free(inp), fg_free(g), fg_free(w), fg_free(rstd);
        fg_free(d0), fg_free(d1), fg_free(dw0), fg_free(dw1);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* colsum_add (the bf16 model's bias gradients) in every variant: bit for bit the row-order
 * fp32 sums from +0 (the loop of fg_add calls it replaced), added into db: C across and
 * below the 128-column blocks and not a multiple of 16, -0 columns (+0 sum), a NaN, N 0. */
static void test_colsum(void)
{
    const char *vs[8];
    int nv = variants("colsum_add", vs);
    static const int shapes[][2] = {{1024, 384}, {77, 1153}, {5, 7}, {0, 40}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int N = shapes[sh][0], C = shapes[sh][1];
        size_t n = (size_t)N * C;
        float *x = fg_malloc((n + 1) * 4), *d0 = fg_malloc((size_t)C * 4), *d1 = fg_malloc((size_t)C * 4),
              *db = fg_malloc((size_t)C * 4);
        FG_ASSERT(x && d0 && d1 && db);
        for (size_t i = 0; i < n; i++)
            x[i] = i % (size_t)C == 1 ? -0.0f : fg_rng_normal(&rng) * (i % 3 ? 1.0f : 1e4f);
        if (n > 5)
            x[n / 2 + (n / 2 % (size_t)C == 1)] = NAN;
        for (int c = 0; c < C; c++) {
            db[c] = c % 4 ? fg_rng_normal(&rng) : -0.0f;
            float s = 0.0f;
            for (int r = 0; r < N; r++)
                s = s + x[(size_t)r * C + c];
            d0[c] = db[c] + s;
        }
        for (int v = 0; v < nv; v++) {
            use("colsum_add", vs[v]);
            memcpy(d1, db, (size_t)C * 4);
            fg_colsum_add(d1, x, N, C);
            FG_CHECK(!memcmp(d0, d1, (size_t)C * 4), "colsum_add[%s] N%d C%d differs", vs[v], N, C);
        }
        fg_free(x), fg_free(d0), fg_free(d1), fg_free(db);
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

/* auto picks the bf16 unit when the CPU (less FG_HW_DISABLE) has it, else the
 * conversion + sgemm route; FG_KERNELS=ref picks ref. */
static void test_dispatch(void)
{
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    const fg_cpu *cpu = fg_hw_cpu();
    bool has512 = cpu->avx512f && cpu->avx512bw && cpu->avx512vl && cpu->avx512dq && cpu->os_avx512;
    const char *mode = fg_kernels_settings_get().mode;
    const char *want = !strcmp(mode, "ref") ? "ref" : has512 && cpu->avx512_bf16 ? "avx512bf16" : "blas";
    FG_CHECK(!strcmp(fg_kernels_variant("bgemm"), want), "bgemm picked %s, want %s (FG_HW_DISABLE '%s')",
             fg_kernels_variant("bgemm"), want, fg_hw_disabled());
    FG_CHECK(!strcmp(fg_kernels_variant("bgemm_packed"), want) && !strcmp(fg_kernels_variant("bgemm_pack_b"), want),
             "bgemm_packed / bgemm_pack_b picked %s / %s, want %s", fg_kernels_variant("bgemm_packed"),
             fg_kernels_variant("bgemm_pack_b"), want);
    if (has512 && strcmp(mode, "ref")) {
        FG_CHECK(fg_kernels_init("avx512") == FG_OK && !strcmp(fg_kernels_variant("bgemm"), "blas") &&
                     !strcmp(fg_kernels_variant("cvt_f32_bf16"), "avx512"),
                 "mode avx512: bgemm %s", fg_kernels_variant("bgemm"));
        FG_CHECK((fg_kernels_init("avx512bf16") == FG_OK) == cpu->avx512_bf16, "mode avx512bf16 vs cpu");
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("kernels_bf16");
    verbose = getenv("FG_TEST_VERBOSE") != NULL;
    fg_rng_seed(&rng, 11);
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    test_dispatch();
    test_convert();
    test_bgemm();
    test_bgemm_blocks();
    test_bgemm_inplace_a();
    test_affine();
    test_xent_bf16();
    test_layernorm_bf16();
    test_gelu_bf16();
    test_swiglu_bf16();
    test_rmsnorm_bwd_bf16();
    test_rmsnorm_fwd_bf16();
    test_colsum();
    return fg_test_end();
}
