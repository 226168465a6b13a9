/* rope_avx512.c: rotary position embedding (rotate_half pairing), AVX-512. The
 * angles of one position are computed once (double, as the reference) and applied to
 * every batch row and head; the rotation itself is 16 pairs per vector op. */
#include <immintrin.h>
#include <math.h>

#include "rope_angles.h"
#include "vmath_avx512.h"
#include "x86_impl.h"

static void rope(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta, double sign)
{
    if (fg_rope_wide_ref(x, B, T, NH, HS, row_stride, pos0, theta, sign))
        return;
    int half = HS / 2;
    double inv_freq[FG_ROPE_MAXHALF];
    fg_rope_inv_freq(inv_freq, HS, theta);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float cs[FG_ROPE_MAXHALF] __attribute__((aligned(64))), sn[FG_ROPE_MAXHALF] __attribute__((aligned(64)));
        fg_rope_angles(cs, sn, inv_freq, half, sign * (double)(pos0 + t));
        for (int b = 0; b < B; b++) {
            float *row = x + ((size_t)b * T + t) * row_stride;
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
    }
}

void fg_rope_forward_avx512(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    rope(x, B, T, NH, HS, row_stride, pos0, theta, 1.0);
}

/* The forward is an orthogonal rotation; its backward rotates by -angle. */
void fg_rope_backward_avx512(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    rope(dx, B, T, NH, HS, row_stride, pos0, theta, -1.0);
}
