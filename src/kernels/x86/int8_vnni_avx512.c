/* int8_vnni_avx512.c: the int8 GEMM (uint8 x int8 -> int32, NT layout) on AVX512-VNNI
 * vpdpbusd: quad-interleaved packed panels and an 8 x 48 register tile for M > 4, and
 * unpacked row dot products for decode-sized M (1..4 rows: no packing pass over B); the
 * prompt path's form on weights packed once, with the dequantization in the tile's store,
 * and the per-token activation codes (alone, after RMSNorm, after SwiGLU) in one pass. */
#include <immintrin.h>
#include <math.h>
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

/* ---- weights packed once, dequantization fused (kernel_ops.h gemm_u8s8_packed) ----
 * The packed layout is pack_b's over the whole K, so a layer's weights are packed at
 * load time instead of at every call (pack_b took a third of the int8 prompt path's
 * GEMM time). No K blocks: a tile sees all of K, so its store is the layer's output. */
_Static_assert((int)NR == (int)FG_I8_NR, "gemm_u8s8_pack_b's strip width is the micro-kernel's");

void fg_gemm_u8s8_pack_b_avx512(uint32_t *P, int N, int K, const int8_t *B, int ldb)
{
    int kq = (K + 3) / 4, ns = (N + NR - 1) / NR;
    if (kq == 0)
        return;
#pragma omp parallel for schedule(static) if ((size_t)N * K > 65536)
    for (int s = 0; s < ns; s++) {
        int j0 = s * NR;
        pack_b(P + (size_t)s * kq * NR, B, ldb, j0, N - j0 < NR ? N - j0 : NR, 0, K);
    }
}

/* Keeps the compiler from contracting a multiply and the add after it into one FMA
 * (C_EXTENSIONS: GCC's -ffp-contract=fast): the contract rounds each step. */
#define NO_CONTRACT(x) __asm__("" : "+v"(x))

/* One tile row's epilogue: the contract's v = (sa sb) (acc - comp), + bias, + resid. */
static inline void store_ep(float *o, const float *r, __m512i a0, __m512i a1, __m512i a2, int nr, float sa,
                            const float *sb, const int32_t *comp, const float *bias)
{
    __m512i acc[NRV] = {a0, a1, a2};
    __m512 vsa = _mm512_set1_ps(sa);
    for (int v = 0; v < NRV; v++) {
        __mmask16 m = cols_mask(nr - v * 16);
        if (!m)
            break;
        __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[v], _mm512_maskz_loadu_epi32(m, comp + v * 16)));
        __m512 x = _mm512_mul_ps(_mm512_mul_ps(vsa, _mm512_maskz_loadu_ps(m, sb + v * 16)), d);
        NO_CONTRACT(x);
        x = _mm512_add_ps(x, bias ? _mm512_maskz_loadu_ps(m, bias + v * 16) : _mm512_setzero_ps());
        if (r)
            x = _mm512_add_ps(_mm512_maskz_loadu_ps(m, r + v * 16), x);
        _mm512_mask_storeu_ps(o + v * 16, m, x);
    }
}

#define EP_STORE(i)                                                                                                    \
    if (i < mr)                                                                                                        \
        store_ep(out + (size_t)(i)*ldo, resid ? resid + (size_t)(i)*ldo : NULL, c##i##0, c##i##1, c##i##2, nr, sa[i],  \
                 sb, comp, bias);

static void micro_ep(const uint32_t *ap, const uint32_t *bp, int kq, int mr, int nr, const float *sa, const float *sb,
                     const int32_t *comp, const float *bias, const float *resid, float *out, int ldo)
{
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7);
    for (int q = 0; q < kq; q++, ap += MR, bp += NR) {
        __m512i b0 = _mm512_load_si512(bp), b1 = _mm512_load_si512(bp + 16), b2 = _mm512_load_si512(bp + 32);
        ACC_STEP(0) ACC_STEP(1) ACC_STEP(2) ACC_STEP(3) ACC_STEP(4) ACC_STEP(5) ACC_STEP(6) ACC_STEP(7)
    }
    EP_STORE(0) EP_STORE(1) EP_STORE(2) EP_STORE(3) EP_STORE(4) EP_STORE(5) EP_STORE(6) EP_STORE(7)
}

/* Decode-sized M on the packed weights: one A row against a 48-column strip, its words
 * read straight from the row (the last, partial quad zero-filled: the weights' bytes past
 * K are zeros anyway, but the row ends at K), two quads per step into two accumulator
 * sets so six vpdpbusd chains are in flight. The strip is one sequential stream. */
static void row_ep(const uint8_t *a, int K, const uint32_t *bp, int kq, int nr, float sa, const float *sb,
                   const int32_t *comp, const float *bias, const float *r, float *o)
{
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, d0 = c0, d1 = c0, d2 = c0;
    int q = 0, kfull = K / 4;
    for (; q + 1 < kfull; q += 2, bp += 2 * NR) {
        uint32_t w0, w1;
        memcpy(&w0, a + 4 * q, 4);
        memcpy(&w1, a + 4 * q + 4, 4);
        __m512i x0 = _mm512_set1_epi32((int)w0), x1 = _mm512_set1_epi32((int)w1);
        c0 = _mm512_dpbusd_epi32(c0, x0, _mm512_load_si512(bp));
        c1 = _mm512_dpbusd_epi32(c1, x0, _mm512_load_si512(bp + 16));
        c2 = _mm512_dpbusd_epi32(c2, x0, _mm512_load_si512(bp + 32));
        d0 = _mm512_dpbusd_epi32(d0, x1, _mm512_load_si512(bp + NR));
        d1 = _mm512_dpbusd_epi32(d1, x1, _mm512_load_si512(bp + NR + 16));
        d2 = _mm512_dpbusd_epi32(d2, x1, _mm512_load_si512(bp + NR + 32));
    }
    for (; q < kq; q++, bp += NR) {
        uint32_t w = 0;
        memcpy(&w, a + 4 * q, q < kfull ? 4 : (size_t)(K - 4 * q));
        __m512i x = _mm512_set1_epi32((int)w);
        c0 = _mm512_dpbusd_epi32(c0, x, _mm512_load_si512(bp));
        c1 = _mm512_dpbusd_epi32(c1, x, _mm512_load_si512(bp + 16));
        c2 = _mm512_dpbusd_epi32(c2, x, _mm512_load_si512(bp + 32));
    }
    store_ep(o, r, _mm512_add_epi32(c0, d0), _mm512_add_epi32(c1, d1), _mm512_add_epi32(c2, d2), nr, sa, sb, comp,
             bias);
}

static void packed_small_m(int M, int N, int K, const uint8_t *A, int lda, const uint32_t *P, const float *sa,
                           const float *sb, const int32_t *comp, const float *bias, const float *resid, float *out,
                           int ldo, int nt)
{
    int kq = (K + 3) / 4, ns = (N + NR - 1) / NR;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int s = 0; s < ns; s++) {
        int j0 = s * NR, nr = N - j0 < NR ? N - j0 : NR;
        for (int i = 0; i < M; i++) {
            size_t o = (size_t)i * ldo + (size_t)j0;
            row_ep(A + (size_t)i * lda, K, P + (size_t)s * kq * NR, kq, nr, sa[i], sb + j0, comp + j0,
                   bias ? bias + j0 : NULL, resid ? resid + o : NULL, out + o);
        }
    }
}

/* Threads split the larger of M and N as gemm_u8s8 does; A is packed in blocks of rows
 * whose packed bytes (rows x K) stay near 384 KB, so a block stays in L2 while every
 * B strip (48 x K bytes) passes over it. */
void fg_gemm_u8s8_packed_avx512vnni(int M, int N, int K, const uint8_t *A, int lda, const uint32_t *P, const float *sa,
                                    const float *sb, const int32_t *comp, const float *bias, const float *resid,
                                    float *out, int ldo)
{
    if (M <= 0 || N <= 0)
        return;
    int kq = (K + 3) / 4, kw = kq ? kq : 1;
    int mcb = (int)((size_t)AP_WORDS / (size_t)kw) / MR * MR;
    mcb = mcb < MR ? MR : mcb > MC ? MC : mcb;
    int nt = omp_get_max_threads();
    if (omp_in_parallel() || 2.0 * M * N * K < 4e6)
        nt = 1;
    if (M <= SMALL_M) {
        packed_small_m(M, N, K, A, lda, P, sa, sb, comp, bias, resid, out, ldo, nt);
        return;
    }
    int split_m = M > N, len = split_m ? M : N, unit = split_m ? MR : NR;
    int step = ((len + nt - 1) / nt + unit - 1) / unit * unit;
    nt = (len + step - 1) / step;
    size_t per = (size_t)mcb * kw;
    uint32_t *buf = fg_malloc(per * sizeof(uint32_t) * (size_t)nt);
    if (!buf) { /* no scratch: the reference gives the same floats */
        fg_gemm_u8s8_packed_ref(M, N, K, A, lda, P, sa, sb, comp, bias, resid, out, ldo);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        uint32_t *ap = buf + (size_t)t * per;
        int m0 = split_m ? t * step : 0, m1 = split_m ? (m0 + step < M ? m0 + step : M) : M;
        int n0 = split_m ? 0 : t * step, n1 = split_m ? N : (n0 + step < N ? n0 + step : N);
        for (int i0 = m0; i0 < m1; i0 += mcb) {
            int mc = m1 - i0 < mcb ? m1 - i0 : mcb;
            pack_a(ap, A, lda, i0, mc, 0, K);
            for (int j0 = n0; j0 < n1; j0 += NR) {
                int nr = n1 - j0 < NR ? n1 - j0 : NR;
                const uint32_t *bp = P + (size_t)(j0 / NR) * kq * NR;
                for (int s = 0; s < mc; s += MR) {
                    size_t o = (size_t)(i0 + s) * ldo + (size_t)j0;
                    micro_ep(ap + (size_t)(s / MR) * kq * MR, bp, kq, mc - s < MR ? mc - s : MR, nr, sa + i0 + s,
                             sb + j0, comp + j0, bias ? bias + j0 : NULL, resid ? resid + o : NULL, out + o, ldo);
                }
            }
        }
    }
    fg_free(buf);
}

/* ---- per-token activation codes (kernel_ops.h quantize_u8) ---- */

static inline __m512 abs_ps(__m512 x)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

/* Codes of y (1 / scale = vinv): nearest even of y * inv, clamped to +-127, + 128. */
static inline void store_codes(uint8_t *u, __m512 y, __m512 vinv, __mmask16 k)
{
    __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(y, vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    __m512i c = _mm512_add_epi32(_mm512_cvtps_epi32(q), _mm512_set1_epi32(128));
    _mm_mask_storeu_epi8(u, k, _mm512_cvtepi32_epi8(c));
}

/* The row's codes from its values Y (an expression of c and the lane mask k), computed
 * twice (range, then codes) so no row buffer is written: the fused kernels' one pass
 * over their inputs (the recomputation is a few multiplies against a K-long dot). */
#define QUANT_ROW512(u, scale, C, Y)                                                                                   \
    do {                                                                                                               \
        __m512 mx_ = _mm512_setzero_ps();                                                                              \
        for (int c = 0; c < (C); c += 16) {                                                                            \
            __mmask16 k = fg_tail_mask((C)-c);                                                                         \
            mx_ = _mm512_max_ps(mx_, abs_ps(Y));                                                                       \
        }                                                                                                              \
        float amax_ = _mm512_reduce_max_ps(mx_), s_ = amax_ > 0.0f ? amax_ / 127.0f : 1.0f;                            \
        __m512 vinv_ = _mm512_set1_ps(1.0f / s_);                                                                      \
        *(scale) = s_;                                                                                                 \
        for (int c = 0; c < (C); c += 16) {                                                                            \
            __mmask16 k = fg_tail_mask((C)-c);                                                                         \
            store_codes((u) + c, Y, vinv_, k);                                                                         \
        }                                                                                                              \
    } while (0)

void fg_quantize_u8_avx512(uint8_t *u, float *scale, const float *x, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        QUANT_ROW512(u + (size_t)n * C, scale + n, C, _mm512_maskz_loadu_ps(k, xr + c));
    }
}

/* fg_rmsnorm_forward_avx512's arithmetic (norm_avx512.c): the same dot, reduction and
 * products, so the codes are quantize_u8 of its output bit for bit. */
static inline float sumsq_row(const float *a, int C)
{
    __m512 s = _mm512_setzero_ps();
    for (int c = 0; c < C; c += 16) {
        __mmask16 k = fg_tail_mask(C - c);
        __m512 v = _mm512_maskz_loadu_ps(k, a + c);
        s = _mm512_fmadd_ps(v, v, s);
    }
    return _mm512_reduce_add_ps(s);
}

void fg_rmsnorm_quant_u8_avx512(uint8_t *u, float *scale, const float *inp, const float *weight, int N, int C,
                                float eps)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > 65536)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        __m512 vr = _mm512_set1_ps(1.0f / sqrtf(sumsq_row(x, C) / (float)C + eps));
        QUANT_ROW512(
            u + (size_t)n * C, scale + n, C,
            _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + c), vr), _mm512_maskz_loadu_ps(k, weight + c)));
    }
}

/* fg_swiglu_forward_avx512's arithmetic (act_avx512.c): a sigmoid(a) b. */
static inline __m512 swiglu16(const float *a, const float *b, __mmask16 k)
{
    __m512 x = _mm512_maskz_loadu_ps(k, a);
    return _mm512_mul_ps(_mm512_mul_ps(x, fg_sigmoid512(x)), _mm512_maskz_loadu_ps(k, b));
}

void fg_swiglu_quant_u8_avx512(uint8_t *u, float *scale, const float *inp, int N, int H)
{
#pragma omp parallel for schedule(static) if ((size_t)N * H > 65536)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * H, *b = a + H;
        QUANT_ROW512(u + (size_t)n * H, scale + n, H, swiglu16(a + c, b + c, k));
    }
}
