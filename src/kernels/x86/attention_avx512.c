/* attention_avx512.c: flash-style causal attention, forward and backward, AVX-512.
 * Queries go in blocks of 32 held TRANSPOSED (head dim x 32 query lanes), so every
 * score tile is computed as keys x query-lanes and the online softmax (max, exp,
 * sum, rescale) runs lane-wise with no horizontal reductions; keys are visited in
 * blocks of 64. Scratch is a few stack tiles sized by HS (24 KB forward, 40 KB
 * backward at HS=64): memory O(HS) per query row, never T x T. Head sizes that
 * are not a multiple of 16 (or > 256) use the reference. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "attention_avx512.h"
#include "vmath_avx512.h"
#include "x86_impl.h"

/* St[j][0:32] = sum_d A[j][d] * Bt[d][0:32] for j < nk; A rows lda apart (keys or
 * values in qkv), Bt a transposed query-side tile. 8 keys x 2 vectors in registers. */
static void rows_by_tile(float *St, const float *A, size_t lda, int nk, const float *Bt, int HS)
{
    int j = 0;
    for (; j + 8 <= nk; j += 8) {
        __m512 acc[8][2];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        const float *a = A + (size_t)j * lda;
        for (int d = 0; d < HS; d++) {
            __m512 b0 = _mm512_load_ps(Bt + d * BQ), b1 = _mm512_load_ps(Bt + d * BQ + 16);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                __m512 x = _mm512_set1_ps(a[r * lda + d]);
                acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            _mm512_store_ps(St + (j + r) * BQ, acc[r][0]);
            _mm512_store_ps(St + (j + r) * BQ + 16, acc[r][1]);
        }
    }
    for (; j < nk; j++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        const float *a = A + (size_t)j * lda;
        for (int d = 0; d < HS; d++) {
            __m512 x = _mm512_set1_ps(a[d]);
            a0 = _mm512_fmadd_ps(x, _mm512_load_ps(Bt + d * BQ), a0);
            a1 = _mm512_fmadd_ps(x, _mm512_load_ps(Bt + d * BQ + 16), a1);
        }
        _mm512_store_ps(St + j * BQ, a0);
        _mm512_store_ps(St + j * BQ + 16, a1);
    }
}

/* Ct[d][0:32] += sum_j A[j][d] * Pt[j][0:32] for d < HS (a multiple of 8), j < nk:
 * O^T += V^T P^T in the forward, dQ^T += K^T dS^T in the backward. */
static void tile_acc(float *Ct, const float *A, size_t lda, int nk, const float *Pt, int HS)
{
    for (int d = 0; d < HS; d += 8) {
        __m512 acc[8][2];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            acc[r][0] = _mm512_load_ps(Ct + (d + r) * BQ);
            acc[r][1] = _mm512_load_ps(Ct + (d + r) * BQ + 16);
        }
        for (int j = 0; j < nk; j++) {
            __m512 p0 = _mm512_load_ps(Pt + j * BQ), p1 = _mm512_load_ps(Pt + j * BQ + 16);
            const float *a = A + (size_t)j * lda + d;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                __m512 x = _mm512_set1_ps(a[r]);
                acc[r][0] = _mm512_fmadd_ps(x, p0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(x, p1, acc[r][1]);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            _mm512_store_ps(Ct + (d + r) * BQ, acc[r][0]);
            _mm512_store_ps(Ct + (d + r) * BQ + 16, acc[r][1]);
        }
    }
}

/* D[j][0:HS] += sum_i Pt[j][i] * R[i][0:HS] for j < nk, i < nq; D rows ldd apart, R
 * rows ldr apart: dV += P^T dO and dK += dS^T Q in the backward. */
static void rows_acc(float *D, size_t ldd, const float *Pt, int nk, const float *R, size_t ldr, int nq, int HS)
{
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
        int c = 0;
        for (; c + 64 <= HS; c += 64) {
            __m512 acc[4][4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
            for (int i = 0; i < nq; i++) {
                const float *x = R + (size_t)i * ldr + c;
                __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16), x2 = _mm512_loadu_ps(x + 32),
                       x3 = _mm512_loadu_ps(x + 48);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) {
                    __m512 p = _mm512_set1_ps(Pt[(j + r) * BQ + i]);
                    acc[r][0] = _mm512_fmadd_ps(p, x0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(p, x1, acc[r][1]);
                    acc[r][2] = _mm512_fmadd_ps(p, x2, acc[r][2]);
                    acc[r][3] = _mm512_fmadd_ps(p, x3, acc[r][3]);
                }
            }
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                float *y = D + (size_t)(j + r) * ldd + c;
                for (int v = 0; v < 4; v++)
                    _mm512_storeu_ps(y + 16 * v, _mm512_add_ps(_mm512_loadu_ps(y + 16 * v), acc[r][v]));
            }
        }
        for (; c < HS; c += 16) {
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int i = 0; i < nq; i++) {
                __m512 x = _mm512_loadu_ps(R + (size_t)i * ldr + c);
                for (int r = 0; r < 4; r++)
                    acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(Pt[(j + r) * BQ + i]), x, acc[r]);
            }
            for (int r = 0; r < 4; r++) {
                float *y = D + (size_t)(j + r) * ldd + c;
                _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), acc[r]));
            }
        }
    }
    for (; j < nk; j++)
        for (int c = 0; c < HS; c += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (int i = 0; i < nq; i++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(Pt[j * BQ + i]), _mm512_loadu_ps(R + (size_t)i * ldr + c), acc);
            float *y = D + (size_t)j * ldd + c;
            _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), acc));
        }
}

/* Xt[d][i] = s * X[i][d] for i < nq, 0 for the padding lanes nq..31 (HS % 16 == 0). */
static void load_t(float *Xt, const float *X, size_t ldx, int nq, int HS, float s)
{
    const __m512 vs = _mm512_set1_ps(s);
    for (int i0 = 0; i0 < BQ; i0 += 16)
        for (int d0 = 0; d0 < HS; d0 += 16) {
            __m512 r[16];
            for (int k = 0; k < 16; k++)
                r[k] = i0 + k < nq ? _mm512_mul_ps(_mm512_loadu_ps(X + (size_t)(i0 + k) * ldx + d0), vs)
                                   : _mm512_setzero_ps();
            fg_transpose16_512(r);
            for (int k = 0; k < 16; k++)
                _mm512_store_ps(Xt + (d0 + k) * BQ + i0, r[k]);
        }
}

/* One block of 32 queries of head h, batch b: online softmax over key blocks. */
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
    __m512 m[2] = {_mm512_set1_ps(NEG_BIG), _mm512_set1_ps(NEG_BIG)};
    __m512 l[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int j0 = 0; j0 < kend; j0 += BK) {
        int nk = kend - j0 < BK ? kend - j0 : BK;
        rows_by_tile(St, base + (size_t)j0 * C3 + C, C3, nk, Qt, HS);
        int diag = j0 + nk - 1 > t0;
        for (int v = 0; v < 2; v++) {
            __m512 mb = _mm512_set1_ps(NEG_BIG);
            for (int j = 0; j < nk; j++) {
                __m512 s = _mm512_load_ps(St + j * BQ + 16 * v);
                if (diag) {
                    s = _mm512_mask_blend_ps(causal_mask(t0, v, j0 + j), _mm512_set1_ps(NEG_BIG), s);
                    _mm512_store_ps(St + j * BQ + 16 * v, s);
                }
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
        tile_acc(Ot, base + (size_t)j0 * C3 + 2 * C, C3, nk, St, HS);
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
    store_t(out + ((size_t)b * T + t0) * C + (size_t)h * HS, (size_t)C, Ot, inv, nq, HS, 0);
}

void fg_attention_forward_avx512(float *out, float *lse, const float *qkv, int B, int T, int C, int NH)
{
    if (!supported(C, NH)) {
        fg_attention_forward_ref(out, lse, qkv, B, T, C, NH);
        return;
    }
    int nqb = (T + BQ - 1) / BQ;
    /* later query blocks see more keys: dynamic scheduling balances the triangle */
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int qb = 0; qb < nqb; qb++)
                fwd_block(out, lse, qkv, b, h, qb * BQ, T, C, NH);
}

/* Backward of one head: query blocks outer (Q, dO transposed once per block), key
 * blocks inner. With P = exp(S - lse), dP = dO V^T, D_i = dO_i.O_i, dS = P (dP - D):
 * dV += P^T dO, dK += scale dS^T Q, dQ += scale dS K. */
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
    float ones[BQ];
    for (int i = 0; i < BQ; i++)
        ones[i] = 1.0f;
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
            rows_by_tile(Pt, K, C3, nk, Qt, HS);  /* scaled scores S^T */
            rows_by_tile(dSt, V, C3, nk, Gt, HS); /* dP^T */
            int diag = j0 + nk - 1 > t0;
            for (int v = 0; v < 2; v++) {
                __m512 L = _mm512_load_ps(Lv + 16 * v), D = _mm512_load_ps(Dv + 16 * v);
                __mmask16 valid = fg_tail_mask(nq - 16 * v > 0 ? nq - 16 * v : 0);
                for (int j = 0; j < nk; j++) {
                    __mmask16 mk = diag ? valid & causal_mask(t0, v, j0 + j) : valid;
                    __m512 p =
                        _mm512_maskz_mov_ps(mk, fg_exp512(_mm512_sub_ps(_mm512_load_ps(Pt + j * BQ + 16 * v), L)));
                    __m512 ds = _mm512_mul_ps(p, _mm512_sub_ps(_mm512_load_ps(dSt + j * BQ + 16 * v), D));
                    _mm512_store_ps(Pt + j * BQ + 16 * v, p);
                    _mm512_store_ps(dSt + j * BQ + 16 * v, _mm512_mul_ps(ds, _mm512_set1_ps(scale)));
                }
            }
            rows_acc(dbase + (size_t)j0 * C3 + 2 * C, C3, Pt, nk, gbase + (size_t)t0 * C, C, nq, HS); /* dV */
            rows_acc(dbase + (size_t)j0 * C3 + C, C3, dSt, nk, base + (size_t)t0 * C3, C3, nq, HS);   /* dK */
            tile_acc(dQt, K, C3, nk, dSt, HS);                                                        /* dQ^T */
        }
        store_t(dbase + (size_t)t0 * C3, C3, dQt, ones, nq, HS, 1);
    }
}

void fg_attention_backward_avx512(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                                  int B, int T, int C, int NH)
{
    if (!supported(C, NH)) {
        fg_attention_backward_ref(dqkv, dout, qkv, out, lse, B, T, C, NH);
        return;
    }
    /* dK and dV of a head collect from every query block: one thread per (b, h) */
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            bwd_head(dqkv, dout, qkv, out, lse, b, h, T, C, NH);
}
