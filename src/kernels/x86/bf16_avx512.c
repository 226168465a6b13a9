/* bf16_avx512.c: bf16 kernels on AVX-512: fp32 <-> bf16 conversion (integer RNE on any
 * AVX-512 CPU, vcvtne2ps2bf16 where AVX512-BF16 is), and the bf16 GEMM on vdpbf16ps
 * (packed pair-interleaved panels, an 8 x 48 register tile, K blocks of <= 768). */
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "bf16_avx512.h"
#include "kernels_impl.h"
#include "vmath_avx512.h"

/* ---- conversions ---- */

static inline __mmask16 tail16(size_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* Conversions are memory-bound: threads only for large arrays (FG_PAR_MIN_ELEMS), in 64k chunks. */
enum { CVT_CHUNK = 1 << 16 };

void fg_cvt_f32_bf16_avx512(uint16_t *out, const float *in, size_t n)
{
    FG_FOR_CHUNKS512(n, CVT_CHUNK, FG_PAR_MIN_ELEMS / CVT_CHUNK,
                     _mm256_mask_storeu_epi16(out + i, k, fg_rne16_512(_mm512_maskz_loadu_epi32(k, in + i))););
}

void fg_cvt_bf16_f32_avx512(float *out, const uint16_t *in, size_t n)
{
    FG_FOR_CHUNKS512(
        n, CVT_CHUNK, FG_PAR_MIN_ELEMS / CVT_CHUNK,
        _mm512_mask_storeu_epi32(out + i, k,
                                 _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, in + i)), 16)););
}

/* One row of bf16_affine from offset r: per 16 lanes widen, multiply, add, store fp32
 * and/or the reference's rounding (the integer rule: any AVX-512 CPU). */
static inline void affine_row(uint16_t *out, float *outf, const uint16_t *x, const float *w, const float *b, size_t r,
                              int C)
{
    for (int c = 0; c < C; c += 16) {
        __mmask16 k = tail16((size_t)(C - c));
        __m512 v =
            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, x + r + c)), 16));
        v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, w + c));
        v = _mm512_add_ps(v, b ? _mm512_maskz_loadu_ps(k, b + c) : _mm512_setzero_ps());
        if (outf)
            _mm512_mask_storeu_ps(outf + r + c, k, v);
        if (out)
            _mm256_mask_storeu_epi16(out + r + c, k, fg_rne16_512(_mm512_castps_si512(v)));
    }
}

/* Rows over the threads when large, else inline, outside any OpenMP construct (a false
 * `if` clause still calls GOMP_parallel and wakes a futex). */
void fg_bf16_affine_avx512(uint16_t *out, float *outf, const uint16_t *x, const float *w, const float *b, int N, int C)
{
    if ((size_t)N * C < FG_PAR_MIN_ELEMS) {
        for (int n = 0; n < N; n++)
            affine_row(out, outf, x, w, b, (size_t)n * C, C);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        affine_row(out, outf, x, w, b, (size_t)n * C, C);
}

/* vcvtne2ps2bf16 rounds like the reference except that it flushes fp32 subnormals to
 * zero (Intel SDM: DAZ semantics), so a block holding a subnormal takes the integer rule. */
static inline __mmask16 subnormal16(__m512i x)
{
    return _mm512_testn_epi32_mask(x, _mm512_set1_epi32(0x7f800000)) &
           _mm512_test_epi32_mask(x, _mm512_set1_epi32(0x007fffff));
}

static inline void cvt_chunk_bf16(uint16_t *out, const float *in, size_t lo, size_t end)
{
    for (size_t i = lo; i < end; i += 32) {
        __mmask16 m0 = tail16(end - i), m1 = end - i > 16 ? tail16(end - i - 16) : 0;
        __m512i l = _mm512_maskz_loadu_epi32(m0, in + i), hi = _mm512_maskz_loadu_epi32(m1, in + i + 16);
        if (subnormal16(l) | subnormal16(hi)) {
            _mm256_mask_storeu_epi16(out + i, m0, fg_rne16_512(l));
            _mm256_mask_storeu_epi16(out + i + 16, m1, fg_rne16_512(hi));
        } else {
            __m512i r = (__m512i)_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(hi), _mm512_castsi512_ps(l));
            _mm512_mask_storeu_epi16(out + i, ((__mmask32)m1 << 16) | m0, r);
        }
    }
}

/* Small arrays run inline, outside any OpenMP construct (a false `if` still calls
 * GOMP_parallel and a futex wake; the MoE experts convert from inside their region). */
void fg_cvt_f32_bf16_avx512bf16(uint16_t *out, const float *in, size_t n)
{
    if (n <= FG_PAR_MIN_ELEMS) {
        cvt_chunk_bf16(out, in, 0, n);
        return;
    }
    size_t nchunk = (n + CVT_CHUNK - 1) / CVT_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunk; c++)
        cvt_chunk_bf16(out, in, c * CVT_CHUNK, (c + 1) * CVT_CHUNK < n ? (c + 1) * CVT_CHUNK : n);
}

/* ---- bf16 GEMM on vdpbf16ps ----
 * vdpbf16ps acc, a, b adds a[2l] b[2l] + a[2l+1] b[2l+1] to fp32 lane l, so both
 * operands are packed as 32-bit words holding a k pair (k, k+1):
 *   A: per strip of MR rows, per pair p: MR words (row i: A(i,2p), A(i,2p+1));
 *   B: per strip of NR columns, per pair p: NR words (column j: B(2p,j), B(2p+1,j)).
 * The micro-kernel broadcasts one A word and multiplies it by three B vectors: an
 * MR x NR = 8 x 48 tile in 24 zmm accumulators (+3 B vectors + 1 broadcast of 32
 * registers). An odd K is padded with a zero half-pair. Blocking: K in equal blocks of
 * at most KC (K <= 768, most layers, is one block: C is written once); per K block the
 * A block (MC x KC, 384 KB) is packed once and each B strip (KC x NR, 72 KB) is packed
 * once and swept by every A strip of the block, both from L2 (1 MB on Zen 4). KC and
 * MC were picked among 256..1536 x 128..512 by bench_gemm_bf16 (docs/KERNELS.md). */
enum { MR = 8, NRV = 3, NR = NRV * 16, KC = 768, MC = 256, PFB = 8, PFP = 8 };
_Static_assert((int)NR == (int)FG_BGEMM_NR, "the packed layout's strip width is the micro-kernel's");

/* r[k] = the np (<= 16) words starting at row0 + k * ld for k < nrows, zeros after. */
static inline void load_words(__m512 r[16], const uint16_t *row0, size_t ld, int nrows, int np)
{
    __mmask16 m = tail16((size_t)np);
    for (int k = 0; k < nrows; k++)
        _mm_prefetch((const char *)(row0 + (size_t)k * ld + 2 * 32), _MM_HINT_T0);
    for (int k = 0; k < 16; k++)
        r[k] =
            k < nrows ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi32(m, row0 + (size_t)k * ld)) : _mm512_setzero_ps();
}

static inline __mmask16 cols_mask(int w)
{
    return w >= 16 ? (__mmask16)0xffff : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1u);
}

static void pack_a(uint32_t *ap, int trans_a, const uint16_t *A, int lda, int i0, int mc, int k0, int kc)
{
    int kp = (kc + 1) / 2, full = kc / 2;
    if (!trans_a) { /* A(i,k) = A[i*lda + k]: a pair is one word of row i; 16 rows (two strips) at a time */
        for (int s = 0; s < mc; s += 2 * MR) {
            int nrow = mc - s < 2 * MR ? mc - s : 2 * MR;
            uint32_t *d0 = ap + (size_t)(s / MR) * kp * MR, *d1 = d0 + (size_t)kp * MR;
            const uint16_t *row0 = A + (size_t)(i0 + s) * lda + k0;
            for (int p0 = 0; p0 < full; p0 += 16) {
                int np = full - p0 < 16 ? full - p0 : 16;
                __m512 r[16];
                load_words(r, row0 + 2 * p0, (size_t)lda, nrow, np);
                fg_transpose16_512(r);
                for (int q = 0; q < np; q++) {
                    __m512i w = _mm512_castps_si512(r[q]);
                    _mm256_store_si256((__m256i *)(d0 + (size_t)(p0 + q) * MR), _mm512_castsi512_si256(w));
                    if (nrow > MR)
                        _mm256_store_si256((__m256i *)(d1 + (size_t)(p0 + q) * MR), _mm512_extracti64x4_epi64(w, 1));
                }
            }
            if (kc & 1)
                for (int i = 0; i < (nrow > MR ? 2 * MR : MR); i++)
                    (i < MR ? d0 : d1)[(size_t)(kp - 1) * MR + i % MR] = i < nrow ? row0[(size_t)i * lda + kc - 1] : 0u;
        }
        return;
    }
    /* A(i,k) = A[k*lda + i]: a pair interleaves rows k and k+1, 32 columns (a 64-byte
     * line of each row, four strips) at a time; rows PFP pairs ahead are prefetched (a
     * walk down the rows, 2 lda apart, that the hardware prefetcher does not follow) */
    for (int s0 = 0; s0 < mc; s0 += 4 * MR) {
        for (int p = 0; p < kp; p++) {
            const uint16_t *r0 = A + (size_t)(k0 + 2 * p) * lda + i0 + s0;
            int has1 = 2 * p + 1 < kc;
            if (p + PFP < kp)
                for (int q = 0; q < 2; q++) {
                    const char *f = (const char *)(r0 + (size_t)(2 * PFP + q) * lda);
                    _mm_prefetch(f, _MM_HINT_T0);
                    _mm_prefetch(f + 62, _MM_HINT_T0);
                }
            for (int h = 0; h < 2 && s0 + 16 * h < mc; h++) {
                int c = s0 + 16 * h;
                __mmask16 m = cols_mask(mc - c);
                __m256i x0 = _mm256_maskz_loadu_epi16(m, r0 + 16 * h);
                __m256i x1 = _mm256_maskz_loadu_epi16(has1 ? m : 0, r0 + (has1 ? (size_t)lda : 0) + 16 * h);
                __m512i z =
                    _mm512_or_si512(_mm512_cvtepu16_epi32(x0), _mm512_slli_epi32(_mm512_cvtepu16_epi32(x1), 16));
                uint32_t *d = ap + (size_t)(c / MR) * kp * MR + (size_t)p * MR;
                _mm256_store_si256((__m256i *)d, _mm512_castsi512_si256(z));
                if (mc - c > MR)
                    _mm256_store_si256((__m256i *)(d + (size_t)kp * MR), _mm512_extracti64x4_epi64(z, 1));
            }
        }
    }
}

/* Stores one packed B vector: into the cache (a strip the micro-kernel reads next), or
 * streamed past it (nt: bgemm_pack_b's whole weight, MBs read later: no line is read
 * for ownership first, and the caches keep what the GEMMs use). */
static inline void put_b(uint32_t *d, __m512i v, int nt)
{
    if (nt)
        _mm512_stream_si512((__m512i *)d, v);
    else
        _mm512_store_si512(d, v);
}

static void pack_b(uint32_t *bp, int trans_b, const uint16_t *B, int ldb, int j0, int nr, int k0, int kc, int nt)
{
    int kp = (kc + 1) / 2, full = kc / 2;
    if (!trans_b) { /* B(k,j) = B[k*ldb + j]: interleave rows k and k+1, 16 columns at a time */
        for (int p = 0; p < kp; p++) {
            const uint16_t *r0 = B + (size_t)(k0 + 2 * p) * ldb + j0;
            int has1 = 2 * p + 1 < kc;
            if (p + PFP < kp)
                for (int q = 0; q < 2; q++) {
                    const char *f = (const char *)(r0 + (size_t)(2 * PFP + q) * ldb);
                    _mm_prefetch(f, _MM_HINT_T0);
                    _mm_prefetch(f + 64, _MM_HINT_T0);
                }
            for (int v = 0; v < NRV; v++) {
                __mmask16 m = cols_mask(nr - v * 16);
                __m256i x0 = _mm256_maskz_loadu_epi16(m, r0 + v * 16);
                __m256i x1 = _mm256_maskz_loadu_epi16(has1 ? m : 0, r0 + (has1 ? (size_t)ldb : 0) + v * 16);
                __m512i z =
                    _mm512_or_si512(_mm512_cvtepu16_epi32(x0), _mm512_slli_epi32(_mm512_cvtepu16_epi32(x1), 16));
                put_b(bp + (size_t)p * NR + v * 16, z, nt);
            }
        }
        return;
    }
    /* B(k,j) = B[j*ldb + k]: a pair is one word of row j; 16 x 16 word transposes */
    for (int v = 0; v < NRV; v++) {
        int nrow = nr - v * 16 < 0 ? 0 : nr - v * 16 > 16 ? 16 : nr - v * 16;
        const uint16_t *row0 = B + (size_t)(j0 + v * 16) * ldb + k0;
        for (int p0 = 0; p0 < full; p0 += 16) {
            int np = full - p0 < 16 ? full - p0 : 16;
            __m512 r[16];
            load_words(r, row0 + 2 * p0, (size_t)ldb, nrow, np);
            fg_transpose16_512(r);
            for (int q = 0; q < np; q++)
                put_b(bp + (size_t)(p0 + q) * NR + v * 16, _mm512_castps_si512(r[q]), nt);
        }
        if (kc & 1)
            for (int j = 0; j < 16; j++)
                bp[(size_t)(kp - 1) * NR + v * 16 + j] = j < nrow ? row0[(size_t)j * ldb + kc - 1] : 0u;
    }
}

/* C row of nv vectors: first K block C = alpha acc + beta C (C not read when beta ==
 * 0), later blocks C += alpha acc; alpha == 1 skips the multiply (x 1 is exact). */
static inline __attribute__((always_inline)) void store_row(float *c, __m512 a0, __m512 a1, __m512 a2, int nv, int nr,
                                                            float alpha, float beta, int first)
{
    __m512 acc[NRV] = {a0, a1, a2};
    __m512 va = _mm512_set1_ps(alpha);
    for (int v = 0; v < nv; v++) {
        __mmask16 m = cols_mask(nr - v * 16);
        __m512 r = alpha == 1.0f ? acc[v] : _mm512_mul_ps(va, acc[v]);
        if (!first)
            r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c + v * 16));
        else if (beta != 0.0f)
            r = _mm512_add_ps(r, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, c + v * 16)));
        _mm512_mask_storeu_ps(c + v * 16, m, r);
    }
}

/* One A word (a k pair of one row) on every lane; a may be 2-byte aligned only. */
static inline __m512bh bcast_word(const char *a)
{
    int w;
    memcpy(&w, a, sizeof w);
    return (__m512bh)_mm512_set1_epi32(w);
}

/* The accumulators are 24 named variables (not an array indexed at run time), so they
 * stay in registers; nv (1..3 B vectors) is a constant in each instance, so a strip of
 * <= 32 or <= 16 columns (N = 128, 176, 352 leave one) runs only the products it keeps. */
#define ACC_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define ACC_STEP(i)                                                                                                    \
    {                                                                                                                  \
        __m512bh w = bcast_word(a##i + off);                                                                           \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, w, b0);                                                                    \
        if (nv > 1)                                                                                                    \
            c##i##1 = _mm512_dpbf16_ps(c##i##1, w, b1);                                                                \
        if (nv > 2)                                                                                                    \
            c##i##2 = _mm512_dpbf16_ps(c##i##2, w, b2);                                                                \
    }
#define ACC_STORE(i)                                                                                                   \
    if (i < mr)                                                                                                        \
        store_row(C + (size_t)(i)*ldc, c##i##0, c##i##1, c##i##2, nv, nr, alpha, beta, first);

/* One B strip against the mc rows of an A block, 8 rows (one C tile) at a time. The
 * tiles run in this loop, not one call each: a call's pushes wait behind the previous
 * tile's 24 C stores in the store queue (their lines still on the way), which perf put at
 * ~1% of the recipe's step. A strip's words: row i's word of pair p at a + i * rs + p *
 * ps bytes, strips ss bytes apart (packed: rs 4, ps 4 MR, ss 4 MR kp; read in place from
 * a row-major A: rs 2 lda, ps 4, ss MR rs). Rows past the block's end read its strip's
 * row 0 (valid memory; their sums are not stored). */
static inline __attribute__((always_inline)) void strip_nv(const int nv, const char *a, size_t rs, size_t ps, size_t ss,
                                                           int mc, const uint32_t *bp0, int kp, float *C, int ldc,
                                                           int nr, float alpha, float beta, int first)
{
    for (int s = 0; s < mc; s += MR, a += ss, C += (size_t)MR * ldc) {
        int mr = mc - s < MR ? mc - s : MR;
        const uint32_t *bp = bp0;
        /* The C tile's 24 lines are usually in no cache (the weight gradients' C is MBs),
         * and the hardware prefetcher cannot guess 8 rows ldc apart: fetched now, they
         * arrive while the K loop runs (TN at K = 256: 160 -> 195 GF/s, 1 thread, CPU time). */
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++)
                _mm_prefetch((const char *)(C + (size_t)i * ldc + v * 16), _MM_HINT_T0);
        const char *a0 = a, *a1 = a + (1 < mr) * rs, *a2 = a + (2 < mr) * 2 * rs, *a3 = a + (3 < mr) * 3 * rs,
                   *a4 = a + (4 < mr) * 4 * rs, *a5 = a + (5 < mr) * 5 * rs, *a6 = a + (6 < mr) * 6 * rs,
                   *a7 = a + (7 < mr) * 7 * rs;
        ACC_DECL(0)
        ACC_DECL(1)
        ACC_DECL(2)
        ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7) size_t off = 0;
        for (int p = 0; p < kp; p++, off += ps, bp += NR) {
            /* the B strip (72 KB at KC) streams from L2: its lines PFB pairs ahead */
            for (int v = 0; v < nv; v++)
                _mm_prefetch((const char *)(bp + PFB * NR + 16 * v), _MM_HINT_T0);
            __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = b0, b2 = b0;
            if (nv > 1)
                b1 = (__m512bh)_mm512_load_si512(bp + 16);
            if (nv > 2)
                b2 = (__m512bh)_mm512_load_si512(bp + 32);
            ACC_STEP(0) ACC_STEP(1) ACC_STEP(2) ACC_STEP(3) ACC_STEP(4) ACC_STEP(5) ACC_STEP(6) ACC_STEP(7)
        }
        ACC_STORE(0) ACC_STORE(1) ACC_STORE(2) ACC_STORE(3) ACC_STORE(4) ACC_STORE(5) ACC_STORE(6) ACC_STORE(7)
    }
}

static void strip1(const char *a, size_t rs, size_t ps, size_t ss, int mc, const uint32_t *bp, int kp, float *C,
                   int ldc, int nr, float alpha, float beta, int first)
{
    strip_nv(1, a, rs, ps, ss, mc, bp, kp, C, ldc, nr, alpha, beta, first);
}
static void strip2(const char *a, size_t rs, size_t ps, size_t ss, int mc, const uint32_t *bp, int kp, float *C,
                   int ldc, int nr, float alpha, float beta, int first)
{
    strip_nv(2, a, rs, ps, ss, mc, bp, kp, C, ldc, nr, alpha, beta, first);
}
static void strip3(const char *a, size_t rs, size_t ps, size_t ss, int mc, const uint32_t *bp, int kp, float *C,
                   int ldc, int nr, float alpha, float beta, int first)
{
    strip_nv(3, a, rs, ps, ss, mc, bp, kp, C, ldc, nr, alpha, beta, first);
}

/* The same sums (each lane's products in pair order) whichever instance runs a tile. */
static void strip(const char *a, size_t rs, size_t ps, size_t ss, int mc, const uint32_t *bp, int kp, float *C, int ldc,
                  int nr, float alpha, float beta, int first)
{
    if (nr > 32)
        strip3(a, rs, ps, ss, mc, bp, kp, C, ldc, nr, alpha, beta, first);
    else if (nr > 16)
        strip2(a, rs, ps, ss, mc, bp, kp, C, ldc, nr, alpha, beta, first);
    else
        strip1(a, rs, ps, ss, mc, bp, kp, C, ldc, nr, alpha, beta, first);
}

/* Words of scratch one thread needs: the A block and one B strip. */
#define AP_WORDS ((size_t)MC * (KC / 2))
#define BP_WORDS ((size_t)(KC / 2) * NR)
/* Largest B block a thread packs whole (bgemm_serial): 1 MB, Zen 4's L2; larger ones
 * are packed strip by strip per A block. */
#define BFULL_BYTES ((size_t)1 << 20)

/* The K block: K in equal blocks of at most KC, even (a block starts on a pair). */
static int kblock(int K)
{
    int nkb = (K + KC - 1) / KC;
    return ((K + nkb - 1) / nkb + 1) / 2 * 2;
}

/* One thread's product. op(B) comes one of three ways: packed whole by the caller (P:
 * strips of all K pairs, kernel_ops.h; a K block of a strip is the words from pair
 * k0 / 2 on, jp the first column of this call in P's strips); packed per K block into
 * bfull, every strip of the block once, then swept by all the A blocks (a thread with
 * several A blocks and a B block that fits BFULL_BYTES: the weight gradients' small x
 * and the head's dinp would otherwise be packed again for each 256 rows); or packed
 * strip by strip into bp per A block. The micro-kernel calls, hence the sums, are the
 * same whichever way. */
static void bgemm_serial(int trans_a, int trans_b, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                         const uint16_t *B, int ldb, const uint32_t *P, int jp, float beta, float *C, int ldc,
                         uint32_t *ap, uint32_t *bp, uint32_t *bfull)
{
    int kcb = kblock(K);
    size_t kpp = (size_t)(K + 1) / 2;
    for (int k0 = 0; k0 < K; k0 += kcb) {
        int kc = K - k0 < kcb ? K - k0 : kcb, kp = (kc + 1) / 2;
        /* A row-major: its pairs are already words, read in place (no pack of the A block:
         * at K = 128 it cost ~5% of the GEMM) unless the block has an odd end (a half
         * pair past the row) or rows a multiple of 4 KB apart (all 8 on one L1 set) */
        int direct = !trans_a && !(kc & 1) && (size_t)lda * 2 % 4096 != 0;
        if (!P && bfull)
            for (int j0 = 0; j0 < N; j0 += NR)
                pack_b(bfull + (size_t)(j0 / NR) * kp * NR, trans_b, B, ldb, j0, N - j0 < NR ? N - j0 : NR, k0, kc, 0);
        for (int i0 = 0; i0 < M; i0 += MC) {
            int mc = M - i0 < MC ? M - i0 : MC;
            if (!direct)
                pack_a(ap, trans_a, A, lda, i0, mc, k0, kc);
            for (int j0 = 0; j0 < N; j0 += NR) {
                int nr = N - j0 < NR ? N - j0 : NR;
                const uint32_t *b = bp;
                if (P)
                    b = P + (size_t)((jp + j0) / NR) * kpp * NR + (size_t)(k0 / 2) * NR;
                else if (bfull)
                    b = bfull + (size_t)(j0 / NR) * kp * NR;
                else
                    pack_b(bp, trans_b, B, ldb, j0, nr, k0, kc, 0);
                if (direct)
                    strip((const char *)(A + (size_t)i0 * lda + k0), 2 * (size_t)lda, 4, 2 * (size_t)lda * MR, mc, b,
                          kp, C + (size_t)i0 * ldc + j0, ldc, nr, alpha, beta, k0 == 0);
                else
                    strip((const char *)ap, 4, 4 * MR, (size_t)4 * MR * kp, mc, b, kp, C + (size_t)i0 * ldc + j0, ldc,
                          nr, alpha, beta, k0 == 0);
            }
        }
    }
}

/* Threads split the larger of M and N (slices of whole tiles), like fg_sgemm_blas; one
 * thread (small GEMMs, a caller already in a parallel region) runs it whole. P: op(B)
 * packed (trans_b unused), else B. */
static void bgemm_run(int trans_a, int trans_b, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                      const uint16_t *B, int ldb, const uint32_t *P, float beta, float *C, int ldc)
{
    int nt = omp_get_max_threads();
    if (omp_in_parallel() || 2.0 * M * N * K < 4e6)
        nt = 1;
    int split_m = M > N, len = split_m ? M : N, unit = split_m ? MR : NR;
    int step = ((len + nt - 1) / nt + unit - 1) / unit * unit;
    nt = (len + step - 1) / step;
    /* a thread's rows and columns, at most; its whole B block in words */
    int tm = split_m ? step : M, tn = split_m ? N : step;
    size_t full_words = (size_t)((tn + NR - 1) / NR) * NR * (size_t)(kblock(K) / 2 + 1);
    int full = !P && tm > MC && full_words * sizeof(uint32_t) <= BFULL_BYTES;
    size_t per = AP_WORDS + (P ? 0 : full ? full_words : BP_WORDS);
    uint32_t *buf = fg_malloc(per * sizeof(uint32_t) * (size_t)nt);
    if (!buf) { /* no scratch: the reference gives the same result within the bound */
        if (P)
            fg_bgemm_packed_ref(trans_a, M, N, K, alpha, A, lda, P, beta, C, ldc);
        else
            fg_bgemm_ref(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* one thread: no OpenMP construct (a false `if` still calls GOMP_parallel and a futex
     * wake; the MoE experts' GEMMs run from inside their region) */
    if (nt == 1) {
        bgemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, P, 0, beta, C, ldc, buf, buf + AP_WORDS,
                     full ? buf + AP_WORDS : NULL);
        fg_free(buf);
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        uint32_t *ap = buf + (size_t)t * per, *bp = ap + AP_WORDS, *bf = full ? bp : NULL;
        int i0 = t * step, n = len - i0 < step ? len - i0 : step;
        if (split_m)
            bgemm_serial(trans_a, trans_b, n, N, K, alpha, trans_a ? A + i0 : A + (size_t)i0 * lda, lda, B, ldb, P, 0,
                         beta, C + (size_t)i0 * ldc, ldc, ap, bp, bf);
        else
            bgemm_serial(trans_a, trans_b, M, n, K, alpha, A, lda,
                         B && trans_b ? B + (size_t)i0 * ldb
                         : B          ? B + i0
                                      : B,
                         ldb, P, i0, beta, C + i0, ldc, ap, bp, bf);
    }
    fg_free(buf);
}

void fg_bgemm_avx512bf16(int trans_a, int trans_b, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                         const uint16_t *B, int ldb, float beta, float *C, int ldc)
{
    if (fg_bgemm_trivial(M, N, K, beta, C, ldc))
        return;
    bgemm_run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
}

/* A strip is pack_b over all of K: the strips are independent, threads take whole ones. */
void fg_bgemm_pack_b_avx512bf16(uint32_t *P, int trans_b, int N, int K, const uint16_t *B, int ldb)
{
    size_t kp = (size_t)(K + 1) / 2;
    int ns = (N + NR - 1) / NR;
#pragma omp parallel for schedule(static) if ((size_t)N * K > 65536 && !omp_in_parallel())
    for (int s = 0; s < ns; s++) {
        int j0 = s * NR, nr = N - j0 < NR ? N - j0 : NR;
        pack_b(P + (size_t)s * kp * NR, trans_b, B, ldb, j0, nr, 0, K, 1); /* zeros past N and K */
        _mm_sfence(); /* the streamed stores are visible before the region's end */
    }
}

void fg_bgemm_packed_avx512bf16(int trans_a, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                                const uint32_t *P, float beta, float *C, int ldc)
{
    if (fg_bgemm_trivial(M, N, K, beta, C, ldc))
        return;
    bgemm_run(trans_a, 0, M, N, K, alpha, A, lda, NULL, 0, P, beta, C, ldc);
}
