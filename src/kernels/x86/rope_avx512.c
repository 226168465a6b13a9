/* rope_avx512.c: rotary position embedding (rotate_half pairing), AVX-512: the
 * rotation of one row's heads, 16 pairs per vector op; the angles (once per position,
 * in double as the reference) are rope_angles.h's, its loop with a row prefetch. */
#include <immintrin.h>

#include "rope_angles.h"
#include "vmath_avx512.h"
#include "x86_impl.h"

/* 16 pairs per vector op. */
static void rotate(float *row, int NH, int HS, const float *cs, const float *sn)
{
    int half = HS / 2;
    for (int h = 0; h < NH; h++) {
        float *v = row + (size_t)h * HS;
        for (int i = 0; i < half; i += 16) {
            __mmask16 k = fg_tail_mask(half - i);
            __m512 a = _mm512_maskz_loadu_ps(k, v + i), c = _mm512_maskz_loadu_ps(k, v + half + i);
            __m512 vc = _mm512_load_ps(cs + i), vs = _mm512_load_ps(sn + i);
            _mm512_mask_storeu_ps(v + i, k, _mm512_fmsub_ps(a, vc, _mm512_mul_ps(c, vs)));
            _mm512_mask_storeu_ps(v + half + i, k, _mm512_fmadd_ps(a, vs, _mm512_mul_ps(c, vc)));
        }
    }
}

enum { ROPE_AHEAD = 8 }; /* rows; recipe rope samples: 2 ahead 1.46%, 8 and 16 0.93-1.03% */

/* rope_angles.h's fg_rope_rows with a software prefetch: at a position the loop visits
 * the B rows T * row_stride floats apart (far past what the hardware prefetchers
 * follow), so each row's first touch waited on memory (the rotation's loads were 58% of
 * its samples in the recipe's profile); the row ROPE_AHEAD steps ahead is fetched instead. */
static void rope_rows(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta, double sign)
{
    if (fg_rope_wide_ref(x, B, T, NH, HS, row_stride, pos0, theta, sign))
        return;
    int half = HS / 2;
    size_t len = sizeof(float) * (size_t)NH * HS;
    double inv_freq[FG_ROPE_MAXHALF];
    fg_rope_inv_freq(inv_freq, HS, theta);
#pragma omp parallel for schedule(static) if ((size_t)B * T * NH * HS >= FG_PAR_MIN_ELEMS)
    for (int t = 0; t < T; t++) {
        float cs[FG_ROPE_MAXHALF] __attribute__((aligned(64))), sn[FG_ROPE_MAXHALF] __attribute__((aligned(64)));
        fg_rope_angles(cs, sn, inv_freq, half, sign * (double)(pos0 + t));
        for (int b = 0; b < B; b++) {
            int pb = b + ROPE_AHEAD, pt = t + pb / B;
            pb %= B;
            if (pt < T) {
                const char *r = (const char *)(x + ((size_t)pb * T + pt) * row_stride);
                for (size_t o = 0; o < len; o += 64)
                    _mm_prefetch(r + o, _MM_HINT_T0);
            }
            rotate(x + ((size_t)b * T + t) * row_stride, NH, HS, cs, sn);
        }
    }
}

void fg_rope_forward_avx512(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    rope_rows(x, B, T, NH, HS, row_stride, pos0, theta, 1.0);
}

/* The forward is an orthogonal rotation; its backward rotates by -angle. */
void fg_rope_backward_avx512(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    rope_rows(dx, B, T, NH, HS, row_stride, pos0, theta, -1.0);
}
