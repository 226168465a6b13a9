/* int8_vnni_avx512.c: the int8 GEMM (uint8 x int8 -> int32, NT layout) on AVX512-VNNI
 * vpdpbusd: quad-interleaved packed panels and an 8 x 48 register tile for M > 4, and
 * unpacked row dot products for decode-sized M (1..4 rows: no packing pass over B). */
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "kernels_impl.h"
#include "vmath_avx512.h"

/* vpdpbusd acc, a, b adds a[4l..4l+3] (uint8) . b[4l..4l+3] (int8) to int32 lane l, with
 * wrap-around (not the saturating vpdpbusds), so every step is exact modulo 2^32 and the
 * result is exact whenever the true sum fits int32 (the op's contract). Both operands
 * are packed as 32-bit words holding a k quad (k..k+3), zero-padded past K:
 *   A: per strip of MR rows, per quad q: MR words (row i: A(i, 4q..4q+3));
 *   B: per strip of NR rows of B (= columns of C), per quad q: NR words.
 * Micro-kernel: broadcast one A word, multiply by three B vectors: an 8 x 48 tile in 24
 * zmm accumulators, as the bf16 kernel (bf16_avx512.c). K in equal blocks of at most KC
 * bytes (multiples of 4), so layers with K <= 1536 write C once; A blocks of MC rows
 * (384 KB) and B strips (72 KB) stay in L2, the bf16 kernel's byte sizes. */
enum { MR = 8, NRV = 3, NR = NRV * 16, KC = 1536, MC = 256, SMALL_M = 4 };

static inline __mmask64 bytes_mask(int nb)
{
    return nb >= 64 ? ~(__mmask64)0 : nb <= 0 ? (__mmask64)0 : (((__mmask64)1 << nb) - 1u);
}

static inline __mmask16 cols_mask(int w)
{
    return w >= 16 ? (__mmask16)0xffff : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1u);
}

/* r[k] = the first nb (<= 64) bytes at row0 + k * ld for k < nrows, zeros elsewhere. */
static inline void load_quads(__m512 r[16], const void *row0, size_t ld, int nrows, int nb)
{
    __mmask64 m = bytes_mask(nb);
    for (int k = 0; k < 16; k++)
        r[k] = k < nrows ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi8(m, (const char *)row0 + (size_t)k * ld))
                         : _mm512_setzero_ps();
}

/* A rows i0..i0+mc, bytes k0..k0+kc: 16 rows (two strips) at a time, 16 x 16 word transposes. */
static void pack_a(uint32_t *ap, const uint8_t *A, int lda, int i0, int mc, int k0, int kc)
{
    int kq = (kc + 3) / 4;
    for (int s = 0; s < mc; s += 2 * MR) {
        int nrow = mc - s < 2 * MR ? mc - s : 2 * MR;
        uint32_t *d0 = ap + (size_t)(s / MR) * kq * MR, *d1 = d0 + (size_t)kq * MR;
        const uint8_t *row0 = A + (size_t)(i0 + s) * lda + k0;
        for (int q0 = 0; q0 < kq; q0 += 16) {
            int nq = kq - q0 < 16 ? kq - q0 : 16;
            __m512 r[16];
            load_quads(r, row0 + 4 * q0, (size_t)lda, nrow, kc - 4 * q0);
            fg_transpose16_512(r);
            for (int q = 0; q < nq; q++) {
                __m512i w = _mm512_castps_si512(r[q]);
                _mm256_store_si256((__m256i *)(d0 + (size_t)(q0 + q) * MR), _mm512_castsi512_si256(w));
                if (nrow > MR)
                    _mm256_store_si256((__m256i *)(d1 + (size_t)(q0 + q) * MR), _mm512_extracti64x4_epi64(w, 1));
            }
        }
    }
}

/* B rows j0..j0+nr (nr <= NR), bytes k0..k0+kc; rows past nr are zero. */
static void pack_b(uint32_t *bp, const int8_t *B, int ldb, int j0, int nr, int k0, int kc)
{
    int kq = (kc + 3) / 4;
    for (int v = 0; v < NRV; v++) {
        int nrow = nr - v * 16 < 0 ? 0 : nr - v * 16 > 16 ? 16 : nr - v * 16;
        const int8_t *row0 = B + (size_t)(j0 + v * 16) * ldb + k0;
        for (int q0 = 0; q0 < kq; q0 += 16) {
            int nq = kq - q0 < 16 ? kq - q0 : 16;
            __m512 r[16];
            load_quads(r, row0 + 4 * q0, (size_t)ldb, nrow, kc - 4 * q0);
            fg_transpose16_512(r);
            for (int q = 0; q < nq; q++)
                _mm512_store_si512(bp + (size_t)(q0 + q) * NR + v * 16, _mm512_castps_si512(r[q]));
        }
    }
}

/* C row: the first K block stores, later blocks add (int32, exact). */
static inline void store_row(int32_t *c, __m512i a0, __m512i a1, __m512i a2, int nr, int first)
{
    __m512i acc[NRV] = {a0, a1, a2};
    for (int v = 0; v < NRV; v++) {
        __mmask16 m = cols_mask(nr - v * 16);
        if (!m)
            break;
        __m512i r = acc[v];
        if (!first)
            r = _mm512_add_epi32(r, _mm512_maskz_loadu_epi32(m, c + v * 16));
        _mm512_mask_storeu_epi32(c + v * 16, m, r);
    }
}

/* 24 named accumulators (not an array indexed at run time), so they stay in registers. */
#define ACC_DECL(i) __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define ACC_STEP(i)                                                                                                    \
    {                                                                                                                  \
        __m512i a = _mm512_set1_epi32((int)ap[i]);                                                                     \
        c##i##0 = _mm512_dpbusd_epi32(c##i##0, a, b0);                                                                 \
        c##i##1 = _mm512_dpbusd_epi32(c##i##1, a, b1);                                                                 \
        c##i##2 = _mm512_dpbusd_epi32(c##i##2, a, b2);                                                                 \
    }
#define ACC_STORE(i)                                                                                                   \
    if (i < mr)                                                                                                        \
        store_row(C + (size_t)(i)*ldc, c##i##0, c##i##1, c##i##2, nr, first);

static void micro(const uint32_t *ap, const uint32_t *bp, int kq, int32_t *C, int ldc, int mr, int nr, int first)
{
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7);
    for (int q = 0; q < kq; q++, ap += MR, bp += NR) {
        __m512i b0 = _mm512_load_si512(bp), b1 = _mm512_load_si512(bp + 16), b2 = _mm512_load_si512(bp + 32);
        ACC_STEP(0) ACC_STEP(1) ACC_STEP(2) ACC_STEP(3) ACC_STEP(4) ACC_STEP(5) ACC_STEP(6) ACC_STEP(7)
    }
    ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3) ACC_STORE(4) ACC_STORE(5) ACC_STORE(6) ACC_STORE(7)
}

#define AP_WORDS ((size_t)MC * (KC / 4))
#define BP_WORDS ((size_t)(KC / 4) * NR)

static void gemm_serial(int M, int N, int K, const uint8_t *A, int lda, const int8_t *B, int ldb, int32_t *C, int ldc,
                        uint32_t *ap, uint32_t *bp)
{
    int nkb = (K + KC - 1) / KC, kcb = ((K + nkb - 1) / nkb + 3) / 4 * 4;
    for (int k0 = 0; k0 < K; k0 += kcb) {
        int kc = K - k0 < kcb ? K - k0 : kcb, kq = (kc + 3) / 4;
        for (int i0 = 0; i0 < M; i0 += MC) {
            int mc = M - i0 < MC ? M - i0 : MC;
            pack_a(ap, A, lda, i0, mc, k0, kc);
            for (int j0 = 0; j0 < N; j0 += NR) {
                int nr = N - j0 < NR ? N - j0 : NR;
                pack_b(bp, B, ldb, j0, nr, k0, kc);
                for (int s = 0; s < mc; s += MR)
                    micro(ap + (size_t)(s / MR) * kq * MR, bp, kq, C + (size_t)(i0 + s) * ldc + j0, ldc,
                          mc - s < MR ? mc - s : MR, nr, k0 == 0);
            }
        }
    }
}

/* Decode-sized M: one row of A against 8 rows of B, 64 bytes of k per step, straight
 * from the row-major operands (masked loads past K read zeros), 8 named accumulators
 * summed horizontally at the end (512 -> 128 bits, then hadd trees). nr < 8: the
 * missing B rows repeat the last one and are not stored. M = 2..4 call it per row (B
 * is then in cache). */
#define DOT_PTR(j) const int8_t *b##j = B + (size_t)((j) < nr ? (j) : nr - 1) * ldb;
#define DOT_DECL(j) __m512i d##j = _mm512_setzero_si512();
#define DOT_STEP(j)                                                                                                    \
    d##j = _mm512_dpbusd_epi32(d##j, a, _mm512_maskz_loadu_epi8(m, b##j + k));                                         \
    _mm_prefetch((const char *)(b##j + k) + pf, _MM_HINT_T0);
#define DOT_FOLD(j)                                                                                                    \
    __m256i h##j = _mm256_add_epi32(_mm512_castsi512_si256(d##j), _mm512_extracti64x4_epi64(d##j, 1));                 \
    __m128i y##j = _mm_add_epi32(_mm256_castsi256_si128(h##j), _mm256_extracti128_si256(h##j, 1));

static void dot_row8(const uint8_t *A, const int8_t *B, int ldb, int nr, int K, int32_t *C)
{
    DOT_PTR(0) DOT_PTR(1) DOT_PTR(2) DOT_PTR(3) DOT_PTR(4) DOT_PTR(5) DOT_PTR(6) DOT_PTR(7);
    DOT_DECL(0) DOT_DECL(1) DOT_DECL(2) DOT_DECL(3) DOT_DECL(4) DOT_DECL(5) DOT_DECL(6) DOT_DECL(7);
    /* the same bytes of the next tile's rows (8 rows on): the decode GEMV streams the
     * weights once, and the hardware prefetcher alone left it at a third of the head's
     * memory bandwidth */
    size_t pf = (size_t)8 * ldb;
    for (int k = 0; k < K; k += 64) {
        __mmask64 m = bytes_mask(K - k);
        __m512i a = _mm512_maskz_loadu_epi8(m, A + k);
        DOT_STEP(0) DOT_STEP(1) DOT_STEP(2) DOT_STEP(3) DOT_STEP(4) DOT_STEP(5) DOT_STEP(6) DOT_STEP(7)
    }
    DOT_FOLD(0) DOT_FOLD(1) DOT_FOLD(2) DOT_FOLD(3) DOT_FOLD(4) DOT_FOLD(5) DOT_FOLD(6) DOT_FOLD(7);
    __m128i s0 = _mm_hadd_epi32(_mm_hadd_epi32(y0, y1), _mm_hadd_epi32(y2, y3));
    __m128i s1 = _mm_hadd_epi32(_mm_hadd_epi32(y4, y5), _mm_hadd_epi32(y6, y7));
    _mm_mask_storeu_epi32(C, (__mmask8)(nr >= 4 ? 0xf : (1u << nr) - 1u), s0);
    if (nr > 4)
        _mm_mask_storeu_epi32(C + 4, (__mmask8)(nr >= 8 ? 0xf : (1u << (nr - 4)) - 1u), s1);
}

static void gemm_small_m(int M, int N, int K, const uint8_t *A, int lda, const int8_t *B, int ldb, int32_t *C, int ldc,
                         int nt)
{
    int ntiles = (N + 7) / 8;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < ntiles; t++) {
        int j0 = 8 * t, nr = N - j0 < 8 ? N - j0 : 8;
        for (int i = 0; i < M; i++)
            dot_row8(A + (size_t)i * lda, B + (size_t)j0 * ldb, ldb, nr, K, C + (size_t)i * ldc + j0);
    }
}

/* Threads split the larger of M and N (slices of whole tiles), like the bf16 kernel; K is
 * never split (integer sums are exact anyway). One thread for small GEMMs or inside a
 * parallel region. */
void fg_gemm_u8s8_avx512vnni(int M, int N, int K, const uint8_t *A, int lda, const int8_t *B, int ldb, int32_t *C,
                             int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K == 0) {
        for (int i = 0; i < M; i++)
            memset(C + (size_t)i * ldc, 0, sizeof(int32_t) * (size_t)N);
        return;
    }
    int nt = omp_get_max_threads();
    if (omp_in_parallel() || 2.0 * M * N * K < 4e6)
        nt = 1;
    if (M <= SMALL_M) {
        gemm_small_m(M, N, K, A, lda, B, ldb, C, ldc, nt);
        return;
    }
    int split_m = M > N, len = split_m ? M : N, unit = split_m ? MR : NR;
    int step = ((len + nt - 1) / nt + unit - 1) / unit * unit;
    nt = (len + step - 1) / step;
    size_t per = AP_WORDS + BP_WORDS;
    uint32_t *buf = fg_malloc(per * sizeof(uint32_t) * (size_t)nt);
    if (!buf) { /* no scratch: the reference gives the same (exact) result */
        fg_gemm_u8s8_ref(M, N, K, A, lda, B, ldb, C, ldc);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        uint32_t *ap = buf + (size_t)t * per, *bp = ap + AP_WORDS;
        int i0 = t * step, n = len - i0 < step ? len - i0 : step;
        if (split_m)
            gemm_serial(n, N, K, A + (size_t)i0 * lda, lda, B, ldb, C + (size_t)i0 * ldc, ldc, ap, bp);
        else
            gemm_serial(M, n, K, A, lda, B + (size_t)i0 * ldb, ldb, C + i0, ldc, ap, bp);
    }
    fg_free(buf);
}
