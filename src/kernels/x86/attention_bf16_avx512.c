/* attention_bf16_avx512.c: flash-style causal attention on a bf16 qkv, forward and
 * backward, with every product on vdpbf16ps (fp32 accumulation) and the softmax in fp32.
 * The layout is attention_avx512.c's (32 query lanes held transposed, keys in blocks of
 * 64, lane-wise online softmax); vdpbf16ps sums PAIRS along the reduction index, so each
 * operand is packed into 32-bit words holding two bf16 values adjacent in that index:
 *   S^T = K Q^T, dP^T = V dO^T   (pairs along the head dim: a qkv row's own words,
 *                                 the query side transposed word by word)
 *   O^T += V^T P^T, dQ^T += K^T dS^T (pairs of keys: two rows of V / K interleaved)
 *   dV += P^T dO, dK += dS^T Q     (pairs of queries: two rows of dO / Q interleaved)
 * Head sizes that are not a multiple of 16 (or > 256) use the reference. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "attention_avx512.h"
#include "vmath_avx512.h"
#include "x86_impl.h"

/* word i of the result = (bf16 i, bf16 16 + i) of the input: two rows of 16 interleaved */
static const uint16_t pair_idx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

static inline __m512i pair16(__m256i lo, __m256i hi, __m512i idx)
{
    return _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}

static inline __m512i bcast_word(const uint16_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return _mm512_set1_epi32((int)w);
}

#define DP(acc, a, b) _mm512_dpbf16_ps(acc, (__m512bh)(a), (__m512bh)(b))

/* St rows J..J+NR-1 from their lane vectors V0..1 (lanes 16 V0.. on); the lanes below
 * are stored as zeros. */
#define RBT_GROUP(J, NR, V0)                                                                                           \
    do {                                                                                                               \
        __m512 acc[NR][2];                                                                                             \
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();              \
        const uint16_t *a = A + (size_t)(J)*lda;                                                                       \
        for (int w = 0; w < HW; w++) {                                                                                 \
            __m512i bv[2];                                                                                             \
            _Pragma("GCC unroll 2") for (int v = V0; v < 2; v++) bv[v] = _mm512_load_si512(Xt + w * BQ + 16 * v);      \
            _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)                                                       \
            {                                                                                                          \
                __m512i x = bcast_word(a + r * lda + 2 * w);                                                           \
                _Pragma("GCC unroll 2") for (int v = V0; v < 2; v++) acc[r][v] = DP(acc[r][v], x, bv[v]);              \
            }                                                                                                          \
        }                                                                                                              \
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)                                                           \
        {                                                                                                              \
            _mm512_store_ps(St + ((J) + r) * BQ, acc[r][0]);                                                           \
            _mm512_store_ps(St + ((J) + r) * BQ + 16, acc[r][1]);                                                      \
        }                                                                                                              \
    } while (0)

/* St[j][0:32] = sum_d A[j][d] * X[i][d] for j < nk, from Xt = X word-transposed
 * (Xt[w][i] = X[i][2w], X[i][2w+1]); A bf16 rows lda apart. 8 keys x 2 vectors. Key j
 * is kq + j from the block's first query: from kq + j >= 16 on, queries 0..15 cannot
 * see it (causal), so their lanes are zeros and their products are skipped. */
static void rows_by_tile(float *St, const uint16_t *A, size_t lda, int nk, int kq, const uint32_t *Xt, int HW)
{
    int j = 0;
    for (; j + 8 <= nk; j += 8) {
        if (kq + j >= 16)
            RBT_GROUP(j, 8, 1);
        else
            RBT_GROUP(j, 8, 0);
    }
    for (; j < nk; j++) {
        if (kq + j >= 16)
            RBT_GROUP(j, 1, 1);
        else
            RBT_GROUP(j, 1, 0);
    }
}

/* Ct[d][0:32] += sum_j A[j][d] * P[j][0:32] over key pairs jp < njp, from Ap[jp][d] =
 * (A[2jp][d], A[2jp+1][d]) and Pp[jp][i] = (P[2jp][i], P[2jp+1][i]): O^T += V^T P^T,
 * dQ^T += K^T dS^T. HS a multiple of 8. Key 2jp is kq + 2jp from the block's first query:
 * from kq + 2jp >= 16 on, lanes 0..15 of P are causal zeros and their products skipped. */
static void tile_acc(float *Ct, const uint32_t *Ap, int njp, int kq, const uint32_t *Pp, int HS)
{
    int jh = (17 - kq) / 2; /* the first pair with kq + 2jp >= 16 */
    jh = jh < 0 ? 0 : jh > njp ? njp : jh;
    for (int d = 0; d < HS; d += 8) {
        __m512 acc[8][2];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            acc[r][0] = _mm512_load_ps(Ct + (d + r) * BQ);
            acc[r][1] = _mm512_load_ps(Ct + (d + r) * BQ + 16);
        }
        int jp = 0;
        for (; jp < jh; jp++) {
            __m512i p0 = _mm512_load_si512(Pp + jp * BQ), p1 = _mm512_load_si512(Pp + jp * BQ + 16);
            const uint32_t *a = Ap + (size_t)jp * HS + d;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                __m512i x = _mm512_set1_epi32((int)a[r]);
                acc[r][0] = DP(acc[r][0], x, p0);
                acc[r][1] = DP(acc[r][1], x, p1);
            }
        }
        for (; jp < njp; jp++) {
            __m512i p1 = _mm512_load_si512(Pp + jp * BQ + 16);
            const uint32_t *a = Ap + (size_t)jp * HS + d;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                acc[r][1] = DP(acc[r][1], _mm512_set1_epi32((int)a[r]), p1);
        }
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            _mm512_store_ps(Ct + (d + r) * BQ, acc[r][0]);
            _mm512_store_ps(Ct + (d + r) * BQ + 16, acc[r][1]);
        }
    }
}

/* First query pair of a 32-query block whose weights for keys >= kq (key index relative
 * to the block's first query) can be non-zero: causally, pair ip (queries 2ip, 2ip+1)
 * sees key kq only if 2ip + 1 >= kq; the pairs before it are exact zeros in P and dS. */
static inline int first_pair(int kq, int nip)
{
    int ip = kq > 0 ? kq / 2 : 0;
    return ip < nip ? ip : nip;
}

/* D rows J.. (+)= NR keys x NV vectors of 16 dims from c, over query pairs ip0..nip. */
#define ROWS_ACC_BLOCK(J, NR, NV)                                                                                      \
    do {                                                                                                               \
        __m512 acc[NR][NV];                                                                                            \
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++) for (int v = 0; v < NV; v++) acc[r][v] =                  \
            _mm512_setzero_ps();                                                                                       \
        for (int ip = ip0; ip < nip; ip++) {                                                                           \
            const uint32_t *x = Rq + (size_t)ip * HS + c;                                                              \
            __m512i xv[NV];                                                                                            \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) xv[v] = _mm512_load_si512(x + 16 * v);                \
            _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)                                                       \
            {                                                                                                          \
                __m512i p = _mm512_set1_epi32((int)Pq[((J) + r) * (BQ / 2) + ip]);                                     \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = DP(acc[r][v], p, xv[v]);              \
            }                                                                                                          \
        }                                                                                                              \
        _Pragma("GCC unroll 8") for (int r = 0; r < NR; r++)                                                           \
        {                                                                                                              \
            float *y = D + (size_t)((J) + r) * ldd + c;                                                                \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                                                       \
                _mm512_storeu_ps(y + 16 * v, _mm512_add_ps(_mm512_loadu_ps(y + 16 * v), acc[r][v]));                   \
        }                                                                                                              \
    } while (0)

/* D[j][0:HS] += sum_i P[j][i] * R[i][0:HS] over query pairs ip < nip, from Pq[j][ip] =
 * (P[j][2ip], P[j][2ip+1]) (BQ / 2 words a row) and Rq[ip][d] = (R[2ip][d], R[2ip+1][d]):
 * dV += P^T dO, dK += dS^T Q. D fp32 rows ldd apart; key j is kq + j from the block's
 * first query, so each group of keys starts at its first causally visible pair.
 * Register blocks of 16 accumulators: 4 keys x 64 dims, 8 keys x 32 dims (HS = 32 would
 * otherwise run 4 keys x 16 dims, 4 dependent chains on a 6-cycle vdpbf16ps). */
static void rows_acc(float *D, size_t ldd, const uint32_t *Pq, int nk, int kq, const uint32_t *Rq, int nip, int HS)
{
    int j = 0;
    for (; j + 8 <= nk; j += 8) {
        int c = 0;
        for (; c + 64 <= HS; c += 64) {
            int ip0 = first_pair(kq + j, nip);
            ROWS_ACC_BLOCK(j, 4, 4);
            ip0 = first_pair(kq + j + 4, nip);
            ROWS_ACC_BLOCK(j + 4, 4, 4);
        }
        int ip0 = first_pair(kq + j, nip);
        for (; c + 32 <= HS; c += 32)
            ROWS_ACC_BLOCK(j, 8, 2);
        for (; c < HS; c += 16)
            ROWS_ACC_BLOCK(j, 8, 1);
    }
    for (; j + 4 <= nk; j += 4) {
        int ip0 = first_pair(kq + j, nip), c = 0;
        for (; c + 32 <= HS; c += 32)
            ROWS_ACC_BLOCK(j, 4, 2);
        for (; c < HS; c += 16)
            ROWS_ACC_BLOCK(j, 4, 1);
    }
    for (; j < nk; j++) {
        int ip0 = first_pair(kq + j, nip);
        for (int c = 0; c < HS; c += 16)
            ROWS_ACC_BLOCK(j, 1, 1);
    }
}

/* Y[i][d] (+)= Xt[d][i] * w[i] (w NULL: 1) for i < nq: attention_avx512.h's store_t on
 * fg_transpose16_512. */
static void store_tile(float *Y, size_t ldy, const float *Xt, const float *w, int nq, int HS, int accumulate)
{
    for (int i0 = 0; i0 < nq; i0 += 16)
        for (int d0 = 0; d0 < HS; d0 += 16) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++)
                r[k] = _mm512_load_ps(Xt + (d0 + k) * BQ + i0);
            fg_transpose16_512(r);
            int n = nq - i0 < 16 ? nq - i0 : 16;
            for (int k = 0; k < n; k++) {
                float *y = Y + (size_t)(i0 + k) * ldy + d0;
                __m512 v = w ? _mm512_mul_ps(r[k], _mm512_set1_ps(w[i0 + k])) : r[k];
                _mm512_storeu_ps(y, accumulate ? _mm512_add_ps(_mm512_loadu_ps(y), v) : v);
            }
        }
}

/* Xt[w][i] = word w of bf16 row i of X (rows ldx apart) for i < nq, 0 for the padding
 * lanes nq..31; HW = HS / 2 words a row (a multiple of 8). */
static void load_wt(uint32_t *Xt, const uint16_t *X, size_t ldx, int nq, int HW)
{
    for (int i0 = 0; i0 < BQ; i0 += 16)
        for (int w0 = 0; w0 < HW; w0 += 16) {
            int nw = HW - w0 < 16 ? HW - w0 : 16;
            __mmask16 k = fg_tail_mask(nw);
            __m512 r[16];
            for (int q = 0; q < 16; q++)
                r[q] = i0 + q < nq
                           ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi32(k, X + (size_t)(i0 + q) * ldx + 2 * w0))
                           : _mm512_setzero_ps();
            fg_transpose16_512(r);
            for (int q = 0; q < nw; q++)
                _mm512_store_si512(Xt + (w0 + q) * BQ + i0, _mm512_castps_si512(r[q]));
        }
}

/* Rq[ip][d] = (X[2ip][d], X[2ip+1][d]) for ip < BQ / 2, rows past nq as zeros: two bf16
 * rows (ldx apart) interleaved into HS words. */
static void load_pairs(uint32_t *Rq, const uint16_t *X, size_t ldx, int nq, int HS)
{
    const __m512i idx = _mm512_loadu_si512(pair_idx);
    for (int ip = 0; ip < BQ / 2; ip++) {
        const uint16_t *a = 2 * ip < nq ? X + (size_t)(2 * ip) * ldx : NULL;
        const uint16_t *b = 2 * ip + 1 < nq ? X + (size_t)(2 * ip + 1) * ldx : NULL;
        for (int d = 0; d < HS; d += 16) {
            __m256i lo = a ? _mm256_loadu_si256((const __m256i *)(a + d)) : _mm256_setzero_si256();
            __m256i hi = b ? _mm256_loadu_si256((const __m256i *)(b + d)) : _mm256_setzero_si256();
            _mm512_store_si512(Rq + (size_t)ip * HS + d, pair16(lo, hi, idx));
        }
    }
}

/* Pp[jp][0:32] = (P[2jp][i], P[2jp+1][i]) rounded to bf16 for jp < (nk + 1) / 2, from
 * P^T rows of 32 fp32 lanes (a missing odd row: zeros). */
static void pack_key_pairs(uint32_t *Pp, const float *Pt, int nk)
{
    const __m512i idx = _mm512_loadu_si512(pair_idx);
    for (int j = 0; j < nk; j += 2)
        for (int v = 0; v < 2; v++) {
            __m512 a = _mm512_load_ps(Pt + j * BQ + 16 * v);
            __m512 b = j + 1 < nk ? _mm512_load_ps(Pt + (j + 1) * BQ + 16 * v) : _mm512_setzero_ps();
            __m512i x = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            _mm512_store_si512(Pp + (j / 2) * BQ + 16 * v, _mm512_permutexvar_epi16(idx, x));
        }
}

/* Pq[j][0:16] = P^T row j's 32 lanes rounded to bf16: word ip = (P[j][2ip], P[j][2ip+1]). */
static void pack_query_pairs(uint32_t *Pq, const float *Pt, int nk)
{
    for (int j = 0; j < nk; j++) {
        __m512bh x = _mm512_cvtne2ps_pbh(_mm512_load_ps(Pt + j * BQ + 16), _mm512_load_ps(Pt + j * BQ));
        _mm512_store_si512(Pq + j * (BQ / 2), (__m512i)x);
    }
}

/* Ap[jp][d] = (A[j0+2jp][d], A[j0+2jp+1][d]) for the nk rows of a key block (rows lda
 * apart; a missing odd row: zeros, never read past the block). */
static void load_key_pairs(uint32_t *Ap, const uint16_t *A, size_t lda, int nk, int HS)
{
    const __m512i idx = _mm512_loadu_si512(pair_idx);
    for (int j = 0; j < nk; j += 2) {
        const uint16_t *a = A + (size_t)j * lda, *b = j + 1 < nk ? a + lda : NULL;
        for (int d = 0; d < HS; d += 16) {
            __m256i lo = _mm256_loadu_si256((const __m256i *)(a + d));
            __m256i hi = b ? _mm256_loadu_si256((const __m256i *)(b + d)) : _mm256_setzero_si256();
            _mm512_store_si512(Ap + (size_t)(j / 2) * HS + d, pair16(lo, hi, idx));
        }
    }
}

/* Prefetch n rows (ld bytes apart) of len bytes each into L2: a head's rows of qkv, O,
 * dO and dqkv are read (or written) once or twice each per call, strided, and the
 * kernels otherwise wait on them; what the next block or head will touch is fetched
 * while this one's products run. */
static inline void prefetch_rows(const void *p, size_t ld, int n, size_t len)
{
    const char *c = p;
    for (int i = 0; i < n; i++)
        for (size_t o = 0; o < len; o += 64)
            _mm_prefetch(c + (size_t)i * ld + o, _MM_HINT_T1);
}

/* Prefetch rows r0..r0+n-1 of one head's qkv (bf16), and of its dO and O unless NULL. */
static inline void prefetch_inputs(const uint16_t *base, const float *gbase, const float *obase, int r0, int n, int C,
                                   int HS)
{
    size_t r = (size_t)r0, C3 = (size_t)3 * C;
    if (gbase)
        prefetch_rows(gbase + r * C, sizeof(float) * (size_t)C, n, sizeof(float) * (size_t)HS);
    if (obase)
        prefetch_rows(obase + r * C, sizeof(float) * (size_t)C, n, sizeof(float) * (size_t)HS);
    for (int part = 0; part < 3; part++)
        prefetch_rows(base + r * C3 + (size_t)part * C, sizeof(uint16_t) * C3, n, sizeof(uint16_t) * (size_t)HS);
}

/* One block of 32 queries of head h, batch b: online softmax over key blocks. */
static void fwd_block(float *out, float *lse, const uint16_t *qkv, int b, int h, int t0, int B, int T, int C, int NH)
{
    int HS = C / NH, HW = HS / 2, nq = T - t0 < BQ ? T - t0 : BQ, kend = t0 + nq;
    size_t C3 = (size_t)3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
    const uint16_t *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    uint32_t Qt[HW * BQ] __attribute__((aligned(64)));
    uint32_t Pp[BK / 2 * BQ] __attribute__((aligned(64)));
    uint32_t Vp[BK / 2 * HS] __attribute__((aligned(64)));
    float Ot[HS * BQ] __attribute__((aligned(64)));
    float St[BK * BQ] __attribute__((aligned(64)));
    /* this block's output rows, and the query rows (Q, K, V) of the block that the
     * schedule hands out next (the next query block, or the next head's first) */
    prefetch_rows(out + ((size_t)b * T + t0) * C + (size_t)h * HS, sizeof(float) * (size_t)C, nq,
                  sizeof(float) * (size_t)HS);
    int nb = b, nh = h, nt = kend;
    if (nt >= T && (nt = 0, ++nh == NH))
        nh = 0, nb++;
    if (nb < B)
        prefetch_inputs(qkv + (size_t)nb * T * C3 + (size_t)nh * HS, NULL, NULL, nt, T - nt < BQ ? T - nt : BQ, C, HS);
    load_wt(Qt, base + (size_t)t0 * C3, C3, nq, HW);
    memset(Ot, 0, sizeof(float) * (size_t)HS * BQ);
    __m512 m[2] = {_mm512_set1_ps(NEG_BIG), _mm512_set1_ps(NEG_BIG)};
    __m512 l[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < kend; j0 += BK) {
        int nk = kend - j0 < BK ? kend - j0 : BK;
        rows_by_tile(St, base + (size_t)j0 * C3 + C, C3, nk, j0 - t0, Qt, HW);
        int diag = j0 + nk - 1 > t0;
        for (int v = 0; v < 2; v++) {
            __m512 mb = _mm512_set1_ps(NEG_BIG);
            for (int j = 0; j < nk; j++) {
                __m512 s = _mm512_mul_ps(_mm512_load_ps(St + j * BQ + 16 * v), vscale);
                if (diag)
                    s = _mm512_mask_blend_ps(causal_mask(t0, v, j0 + j), _mm512_set1_ps(NEG_BIG), s);
                _mm512_store_ps(St + j * BQ + 16 * v, s);
                mb = _mm512_max_ps(mb, s);
            }
            /* online softmax: new max, rescale the running sum and output by exp(m_old - m_new) */
            __m512 mn = _mm512_max_ps(m[v], mb), sum = _mm512_setzero_ps();
            __m512 alpha = fg_exp512(_mm512_sub_ps(m[v], mn));
            for (int j = 0; j < nk; j++) {
                __m512 p = fg_exp512(_mm512_sub_ps(_mm512_load_ps(St + j * BQ + 16 * v), mn));
                _mm512_store_ps(St + j * BQ + 16 * v, p);
                sum = _mm512_add_ps(sum, p);
            }
            l[v] = _mm512_fmadd_ps(l[v], alpha, sum);
            m[v] = mn;
            for (int d = 0; d < HS; d++)
                _mm512_store_ps(Ot + d * BQ + 16 * v, _mm512_mul_ps(_mm512_load_ps(Ot + d * BQ + 16 * v), alpha));
        }
        pack_key_pairs(Pp, St, nk);
        load_key_pairs(Vp, base + (size_t)j0 * C3 + 2 * C, C3, nk, HS);
        tile_acc(Ot, Vp, (nk + 1) / 2, j0 - t0, Pp, HS);
    }
    float mv[BQ] __attribute__((aligned(64))), lv[BQ] __attribute__((aligned(64)));
    for (int v = 0; v < 2; v++) {
        _mm512_store_ps(mv + 16 * v, m[v]);
        _mm512_store_ps(lv + 16 * v, l[v]);
    }
    float inv[BQ];
    for (int i = 0; i < nq; i++) {
        inv[i] = 1.0f / lv[i];
        lse[((size_t)b * NH + h) * T + t0 + i] = mv[i] + logf(lv[i]);
    }
    store_tile(out + ((size_t)b * T + t0) * C + (size_t)h * HS, (size_t)C, Ot, inv, nq, HS, 0);
}

void fg_attention_bf16_forward_avx512bf16(float *out, float *lse, const uint16_t *qkv, int B, int T, int C, int NH)
{
    if (!supported(C, NH)) {
        fg_attention_bf16_forward_ref(out, lse, qkv, B, T, C, NH);
        return;
    }
    int nqb = (T + BQ - 1) / BQ;
    /* later query blocks see more keys: dynamic scheduling balances the triangle */
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int qb = 0; qb < nqb; qb++)
                fwd_block(out, lse, qkv, b, h, qb * BQ, B, T, C, NH);
}

/* Backward of one head: query blocks outer (their operands packed once per block), key
 * blocks inner. With P = exp(S - lse), dP = dO V^T, D_i = dO_i.O_i, dS = scale P (dP - D):
 * dV += P^T dO, dK += dS^T Q, dQ += dS K. */
static void bwd_head(float *dqkv, const float *dout, const uint16_t *qkv, const float *out, const float *lse, int b,
                     int h, int B, int T, int C, int NH)
{
    int HS = C / NH, HW = HS / 2;
    size_t C3 = (size_t)3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    const uint16_t *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    float *dbase = dqkv + (size_t)b * T * C3 + (size_t)h * HS;
    const float *gbase = dout + (size_t)b * T * C + (size_t)h * HS;
    const float *obase = out + (size_t)b * T * C + (size_t)h * HS;
    const float *lrow = lse + ((size_t)b * NH + h) * T;
    uint16_t Gb[BQ * HS] __attribute__((aligned(64)));      /* bf16(dO) rows */
    uint32_t Qt[HW * BQ] __attribute__((aligned(64)));      /* Q word-transposed */
    uint32_t Gt[HW * BQ] __attribute__((aligned(64)));      /* bf16(dO) word-transposed */
    uint32_t Qq[BQ / 2 * HS] __attribute__((aligned(64)));  /* Q query pairs */
    uint32_t Gq[BQ / 2 * HS] __attribute__((aligned(64)));  /* bf16(dO) query pairs */
    uint32_t Kp[BK / 2 * HS] __attribute__((aligned(64)));  /* K key pairs */
    uint32_t Pq[BK * BQ / 2] __attribute__((aligned(64)));  /* bf16(P) query pairs */
    uint32_t dSq[BK * BQ / 2] __attribute__((aligned(64))); /* bf16(dS) query pairs */
    uint32_t dSp[BK / 2 * BQ] __attribute__((aligned(64))); /* bf16(dS) key pairs */
    float dQt[HS * BQ] __attribute__((aligned(64)));
    float Pt[BK * BQ] __attribute__((aligned(64)));
    float dSt[BK * BQ] __attribute__((aligned(64)));
    float Dv[BQ] __attribute__((aligned(64))), Lv[BQ] __attribute__((aligned(64)));
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int t0 = 0; t0 < T; t0 += BQ) {
        int nq = T - t0 < BQ ? T - t0 : BQ, kend = t0 + nq;
        /* the next block's rows (after the last: the first block of the head the schedule
         * hands out next), fetched while this block's products run */
        int nb = b, nh = h, nt = kend;
        if (nt >= T && (nt = 0, ++nh == NH))
            nh = 0, nb++;
        if (nb < B) {
            int nn = T - nt < BQ ? T - nt : BQ;
            size_t ho = (size_t)nh * HS, r = (size_t)nb * T + (size_t)nt;
            prefetch_inputs(qkv + (size_t)nb * T * C3 + ho, dout + (size_t)nb * T * C + ho,
                            out + (size_t)nb * T * C + ho, nt, nn, C, HS);
            for (int part = 0; part < 3; part++)
                prefetch_rows(dqkv + r * C3 + (size_t)part * C + ho, sizeof(float) * C3, nn,
                              sizeof(float) * (size_t)HS);
        }
        /* bf16(dO) rows (zeros past nq) and D_i = dO_i.O_i in one pass over dO */
        for (int i = 0; i < BQ; i++) {
            __m512 D = _mm512_setzero_ps();
            for (int d = 0; d < HS; d += 16) {
                __m512 g = i < nq ? _mm512_loadu_ps(gbase + (size_t)(t0 + i) * C + d) : _mm512_setzero_ps();
                _mm256_store_si256((__m256i *)(Gb + (size_t)i * HS + d), (__m256i)_mm512_cvtneps_pbh(g));
                if (i < nq)
                    D = _mm512_fmadd_ps(g, _mm512_loadu_ps(obase + (size_t)(t0 + i) * C + d), D);
            }
            Dv[i] = _mm512_reduce_add_ps(D);
            Lv[i] = i < nq ? lrow[t0 + i] : 0.0f;
        }
        load_wt(Qt, base + (size_t)t0 * C3, C3, nq, HW);
        load_wt(Gt, Gb, (size_t)HS, nq, HW);
        load_pairs(Qq, base + (size_t)t0 * C3, C3, nq, HS);
        load_pairs(Gq, Gb, (size_t)HS, BQ, HS);
        memset(dQt, 0, sizeof(float) * (size_t)HS * BQ);
        for (int j0 = 0; j0 < kend; j0 += BK) {
            int nk = kend - j0 < BK ? kend - j0 : BK;
            const uint16_t *K = base + (size_t)j0 * C3 + C, *V = base + (size_t)j0 * C3 + 2 * C;
            rows_by_tile(Pt, K, C3, nk, j0 - t0, Qt, HW);  /* unscaled scores S^T */
            rows_by_tile(dSt, V, C3, nk, j0 - t0, Gt, HW); /* dP^T */
            int diag = j0 + nk - 1 > t0;
            for (int v = 0; v < 2; v++) {
                __m512 L = _mm512_load_ps(Lv + 16 * v), D = _mm512_load_ps(Dv + 16 * v);
                __mmask16 valid = fg_tail_mask(nq - 16 * v > 0 ? nq - 16 * v : 0);
                for (int j = 0; j < nk; j++) {
                    __mmask16 mk = diag ? valid & causal_mask(t0, v, j0 + j) : valid;
                    __m512 s = _mm512_mul_ps(_mm512_load_ps(Pt + j * BQ + 16 * v), vscale);
                    __m512 p = _mm512_maskz_mov_ps(mk, fg_exp512(_mm512_sub_ps(s, L)));
                    __m512 ds = _mm512_mul_ps(p, _mm512_sub_ps(_mm512_load_ps(dSt + j * BQ + 16 * v), D));
                    _mm512_store_ps(Pt + j * BQ + 16 * v, p);
                    _mm512_store_ps(dSt + j * BQ + 16 * v, _mm512_mul_ps(ds, vscale));
                }
            }
            pack_query_pairs(Pq, Pt, nk);
            pack_query_pairs(dSq, dSt, nk);
            pack_key_pairs(dSp, dSt, nk);
            load_key_pairs(Kp, K, C3, nk, HS);
            int nip = (nq + 1) / 2;
            rows_acc(dbase + (size_t)j0 * C3 + 2 * C, C3, Pq, nk, j0 - t0, Gq, nip, HS); /* dV */
            rows_acc(dbase + (size_t)j0 * C3 + C, C3, dSq, nk, j0 - t0, Qq, nip, HS);    /* dK */
            tile_acc(dQt, Kp, (nk + 1) / 2, j0 - t0, dSp, HS);                           /* dQ^T */
        }
        store_tile(dbase + (size_t)t0 * C3, C3, dQt, NULL, nq, HS, 1);
    }
}

void fg_attention_bf16_backward_avx512bf16(float *dqkv, const float *dout, const uint16_t *qkv, const float *out,
                                           const float *lse, int B, int T, int C, int NH)
{
    if (!supported(C, NH)) {
        fg_attention_bf16_backward_ref(dqkv, dout, qkv, out, lse, B, T, C, NH);
        return;
    }
    /* dK and dV of a head collect from every query block: one thread per (b, h) */
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            bwd_head(dqkv, dout, qkv, out, lse, b, h, B, T, C, NH);
}
