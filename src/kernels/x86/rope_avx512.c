/* rope_avx512.c: rotary position embedding (rotate_half pairing), AVX-512: the
 * rotation of one row's heads, 16 pairs per vector op; the angles (once per position,
 * in double as the reference) and the prefetching row loop are rope_angles.h's. */
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

void fg_rope_forward_avx512(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    fg_rope_rows(rotate, x, B, T, NH, HS, row_stride, pos0, theta, 1.0);
}

/* The forward is an orthogonal rotation; its backward rotates by -angle. */
void fg_rope_backward_avx512(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    fg_rope_rows(rotate, dx, B, T, NH, HS, row_stride, pos0, theta, -1.0);
}
