/* attention_avx2.c: the flash-style causal attention of attention_avx512.c for AVX2
 * CPUs: the same transposed-query-tile design with 16 query lanes (two 8-float
 * vectors) per block, key blocks of 64, register blocks sized for 16 ymm registers.
 * Head sizes that are not a multiple of 16 (or > 256) use the reference. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "vmath_avx2.h"
#include "x86_impl.h"

enum { BQ = 16, BK = 64, MAXHS = 256 };
#define NEG_BIG (-1e30f)

/* St[j][0:16] = sum_d A[j][d] * Bt[d][0:16], j < nk (4 keys x 2 vectors per block). */
static void rows_by_tile(float *St, const float *A, size_t lda, int nk, const float *Bt, int HS)
{
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        __m256 acc[4][2];
        for (int r = 0; r < 4; r++)
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        const float *a = A + (size_t)j * lda;
        for (int d = 0; d < HS; d++) {
            __m256 b0 = _mm256_load_ps(Bt + d * BQ), b1 = _mm256_load_ps(Bt + d * BQ + 8);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m256 x = _mm256_broadcast_ss(a + r * lda + d);
                acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
            }
        }
        for (int r = 0; r < 4; r++) {
            _mm256_store_ps(St + (j + r) * BQ, acc[r][0]);
            _mm256_store_ps(St + (j + r) * BQ + 8, acc[r][1]);
        }
    }
    for (; j < nk; j++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        const float *a = A + (size_t)j * lda;
        for (int d = 0; d < HS; d++) {
            __m256 x = _mm256_broadcast_ss(a + d);
            a0 = _mm256_fmadd_ps(x, _mm256_load_ps(Bt + d * BQ), a0);
            a1 = _mm256_fmadd_ps(x, _mm256_load_ps(Bt + d * BQ + 8), a1);
        }
        _mm256_store_ps(St + j * BQ, a0);
        _mm256_store_ps(St + j * BQ + 8, a1);
    }
}

/* Ct[d][0:16] += sum_j A[j][d] * Pt[j][0:16], d < HS (multiple of 4), j < nk. */
static void tile_acc(float *Ct, const float *A, size_t lda, int nk, const float *Pt, int HS)
{
    for (int d = 0; d < HS; d += 4) {
        __m256 acc[4][2];
        for (int r = 0; r < 4; r++) {
            acc[r][0] = _mm256_load_ps(Ct + (d + r) * BQ);
            acc[r][1] = _mm256_load_ps(Ct + (d + r) * BQ + 8);
        }
        for (int j = 0; j < nk; j++) {
            __m256 p0 = _mm256_load_ps(Pt + j * BQ), p1 = _mm256_load_ps(Pt + j * BQ + 8);
            const float *a = A + (size_t)j * lda + d;
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m256 x = _mm256_broadcast_ss(a + r);
                acc[r][0] = _mm256_fmadd_ps(x, p0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, p1, acc[r][1]);
            }
        }
        for (int r = 0; r < 4; r++) {
            _mm256_store_ps(Ct + (d + r) * BQ, acc[r][0]);
            _mm256_store_ps(Ct + (d + r) * BQ + 8, acc[r][1]);
        }
    }
}

/* D[j][0:HS] += sum_i Pt[j][i] * R[i][0:HS], j < nk, i < nq (4 keys x 16 dims). */
static void rows_acc(float *D, size_t ldd, const float *Pt, int nk, const float *R, size_t ldr, int nq, int HS)
{
    int j = 0;
    for (; j + 4 <= nk; j += 4)
        for (int c = 0; c < HS; c += 16) {
            __m256 acc[4][2];
            for (int r = 0; r < 4; r++)
                acc[r][0] = acc[r][1] = _mm256_setzero_ps();
            for (int i = 0; i < nq; i++) {
                const float *x = R + (size_t)i * ldr + c;
                __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) {
                    __m256 p = _mm256_broadcast_ss(Pt + (j + r) * BQ + i);
                    acc[r][0] = _mm256_fmadd_ps(p, x0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(p, x1, acc[r][1]);
                }
            }
            for (int r = 0; r < 4; r++) {
                float *y = D + (size_t)(j + r) * ldd + c;
                _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), acc[r][0]));
                _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_loadu_ps(y + 8), acc[r][1]));
            }
        }
    for (; j < nk; j++)
        for (int c = 0; c < HS; c += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int i = 0; i < nq; i++)
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(Pt + j * BQ + i), _mm256_loadu_ps(R + (size_t)i * ldr + c),
                                      acc);
            float *y = D + (size_t)j * ldd + c;
            _mm256_storeu_ps(y, _mm256_add_ps(_mm256_loadu_ps(y), acc));
        }
}

static void load_t(float *Xt, const float *X, size_t ldx, int nq, int HS, float s)
{
    for (int d = 0; d < HS; d++)
        for (int i = nq; i < BQ; i++)
            Xt[d * BQ + i] = 0.0f;
    for (int i = 0; i < nq; i++) {
        const float *x = X + (size_t)i * ldx;
        for (int d = 0; d < HS; d++)
            Xt[d * BQ + i] = s * x[d];
    }
}

/* Lanes (8 per half) whose query t0 + 8 half + lane may see key j, as a float mask. */
static inline __m256 causal_mask(int t0, int half, int j)
{
    __m256i q = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(t0 + 8 * half + 1));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(q, _mm256_set1_epi32(j)));
}

static int supported(int C, int NH)
{
    int HS = C / NH;
    return HS * NH == C && HS % 16 == 0 && HS <= MAXHS;
}

static void fwd_block(float *out, float *lse, const float *qkv, int b, int h, int t0, int T, int C, int NH)
{
    int HS = C / NH, nq = T - t0 < BQ ? T - t0 : BQ, kend = t0 + nq;
    size_t C3 = (size_t)3 * C;
    const float *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    float Qt[HS * BQ] __attribute__((aligned(64)));
    float Ot[HS * BQ] __attribute__((aligned(64)));
    float St[BK * BQ] __attribute__((aligned(64)));
    load_t(Qt, base + (size_t)t0 * C3, C3, nq, HS, 1.0f / sqrtf((float)HS));
    memset(Ot, 0, sizeof(float) * (size_t)HS * BQ);
    __m256 m[2] = {_mm256_set1_ps(NEG_BIG), _mm256_set1_ps(NEG_BIG)};
    __m256 l[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int j0 = 0; j0 < kend; j0 += BK) {
        int nk = kend - j0 < BK ? kend - j0 : BK;
        rows_by_tile(St, base + (size_t)j0 * C3 + C, C3, nk, Qt, HS);
        int diag = j0 + nk - 1 > t0;
        for (int v = 0; v < 2; v++) {
            __m256 mb = _mm256_set1_ps(NEG_BIG);
            for (int j = 0; j < nk; j++) {
                __m256 s = _mm256_load_ps(St + j * BQ + 8 * v);
                if (diag) {
                    s = _mm256_blendv_ps(_mm256_set1_ps(NEG_BIG), s, causal_mask(t0, v, j0 + j));
                    _mm256_store_ps(St + j * BQ + 8 * v, s);
                }
                mb = _mm256_max_ps(mb, s);
            }
            /* online softmax: rescale the running sum and output by exp(m_old - m_new) */
            __m256 mn = _mm256_max_ps(m[v], mb), sum = _mm256_setzero_ps();
            __m256 alpha = fg_exp256(_mm256_sub_ps(m[v], mn));
            for (int j = 0; j < nk; j++) {
                __m256 p = fg_exp256(_mm256_sub_ps(_mm256_load_ps(St + j * BQ + 8 * v), mn));
                _mm256_store_ps(St + j * BQ + 8 * v, p);
                sum = _mm256_add_ps(sum, p);
            }
            l[v] = _mm256_fmadd_ps(l[v], alpha, sum);
            m[v] = mn;
            for (int d = 0; d < HS; d++)
                _mm256_store_ps(Ot + d * BQ + 8 * v, _mm256_mul_ps(_mm256_load_ps(Ot + d * BQ + 8 * v), alpha));
        }
        tile_acc(Ot, base + (size_t)j0 * C3 + 2 * C, C3, nk, St, HS);
    }
    float mv[BQ] __attribute__((aligned(64))), lv[BQ] __attribute__((aligned(64)));
    for (int v = 0; v < 2; v++) {
        _mm256_store_ps(mv + 8 * v, m[v]);
        _mm256_store_ps(lv + 8 * v, l[v]);
    }
    for (int i = 0; i < nq; i++) {
        float inv = 1.0f / lv[i];
        float *o = out + ((size_t)b * T + t0 + i) * C + (size_t)h * HS;
        for (int d = 0; d < HS; d++)
            o[d] = Ot[d * BQ + i] * inv;
        lse[((size_t)b * NH + h) * T + t0 + i] = mv[i] + logf(lv[i]);
    }
}

void fg_attention_forward_avx2(float *out, float *lse, const float *qkv, int B, int T, int C, int NH)
{
    if (!supported(C, NH)) {
        fg_attention_forward_ref(out, lse, qkv, B, T, C, NH);
        return;
    }
    int nqb = (T + BQ - 1) / BQ;
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int qb = 0; qb < nqb; qb++)
                fwd_block(out, lse, qkv, b, h, qb * BQ, T, C, NH);
}

/* Backward of one head, as in attention_avx512.c: dV += P^T dO, dK += scale dS^T Q,
 * dQ += scale dS K with P = exp(S - lse), dS = P (dO V^T - D), D = dO.O. */
static void bwd_head(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int b, int h,
                     int T, int C, int NH)
{
    int HS = C / NH;
    size_t C3 = (size_t)3 * C;
    float scale = 1.0f / sqrtf((float)HS);
    const float *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    float *dbase = dqkv + (size_t)b * T * C3 + (size_t)h * HS;
    const float *gbase = dout + (size_t)b * T * C + (size_t)h * HS;
    const float *obase = out + (size_t)b * T * C + (size_t)h * HS;
    const float *lrow = lse + ((size_t)b * NH + h) * T;
    float Qt[HS * BQ] __attribute__((aligned(64)));
    float Gt[HS * BQ] __attribute__((aligned(64)));
    float dQt[HS * BQ] __attribute__((aligned(64)));
    float Pt[BK * BQ] __attribute__((aligned(64)));
    float dSt[BK * BQ] __attribute__((aligned(64)));
    float Dv[BQ] __attribute__((aligned(64))), Lv[BQ] __attribute__((aligned(64)));
    for (int t0 = 0; t0 < T; t0 += BQ) {
        int nq = T - t0 < BQ ? T - t0 : BQ, kend = t0 + nq;
        load_t(Qt, base + (size_t)t0 * C3, C3, nq, HS, scale);
        load_t(Gt, gbase + (size_t)t0 * C, C, nq, HS, 1.0f);
        memset(dQt, 0, sizeof(float) * (size_t)HS * BQ);
        for (int i = 0; i < BQ; i++) {
            float D = 0.0f;
            if (i < nq) {
                const float *g = gbase + (size_t)(t0 + i) * C, *o = obase + (size_t)(t0 + i) * C;
                for (int d = 0; d < HS; d++)
                    D += g[d] * o[d];
            }
            Dv[i] = D;
            Lv[i] = i < nq ? lrow[t0 + i] : 0.0f;
        }
        for (int j0 = 0; j0 < kend; j0 += BK) {
            int nk = kend - j0 < BK ? kend - j0 : BK;
            const float *K = base + (size_t)j0 * C3 + C, *V = base + (size_t)j0 * C3 + 2 * C;
            rows_by_tile(Pt, K, C3, nk, Qt, HS);
            rows_by_tile(dSt, V, C3, nk, Gt, HS);
            for (int v = 0; v < 2; v++) {
                __m256 L = _mm256_load_ps(Lv + 8 * v), D = _mm256_load_ps(Dv + 8 * v);
                __m256 valid = _mm256_castsi256_ps(fg_tail_mask256(nq - 8 * v > 0 ? nq - 8 * v : 0));
                for (int j = 0; j < nk; j++) {
                    __m256 mk = _mm256_and_ps(valid, causal_mask(t0, v, j0 + j));
                    __m256 p = _mm256_and_ps(mk, fg_exp256(_mm256_sub_ps(_mm256_load_ps(Pt + j * BQ + 8 * v), L)));
                    __m256 ds = _mm256_mul_ps(p, _mm256_sub_ps(_mm256_load_ps(dSt + j * BQ + 8 * v), D));
                    _mm256_store_ps(Pt + j * BQ + 8 * v, p);
                    _mm256_store_ps(dSt + j * BQ + 8 * v, _mm256_mul_ps(ds, _mm256_set1_ps(scale)));
                }
            }
            rows_acc(dbase + (size_t)j0 * C3 + 2 * C, C3, Pt, nk, gbase + (size_t)t0 * C, C, nq, HS);
            rows_acc(dbase + (size_t)j0 * C3 + C, C3, dSt, nk, base + (size_t)t0 * C3, C3, nq, HS);
            tile_acc(dQt, K, C3, nk, dSt, HS);
        }
        for (int i = 0; i < nq; i++) {
            float *dq = dbase + (size_t)(t0 + i) * C3;
            for (int d = 0; d < HS; d++)
                dq[d] += dQt[d * BQ + i];
        }
    }
}

void fg_attention_backward_avx2(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                                int B, int T, int C, int NH)
{
    if (!supported(C, NH)) {
        fg_attention_backward_ref(dqkv, dout, qkv, out, lse, B, T, C, NH);
        return;
    }
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            bwd_head(dqkv, dout, qkv, out, lse, b, h, T, C, NH);
}
