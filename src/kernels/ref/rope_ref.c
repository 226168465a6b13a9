/* rope_ref.c: scalar reference rotary position embedding (HF/NeoX rotate_half
 * pairing), angles computed in double. Backward rotates the gradient by -angle. */
#include <math.h>

#include "frugal/kernels.h"

static void rope(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta, double sign)
{
    int half = HS / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *row = x + ((size_t)b * T + t) * row_stride;
            for (int i = 0; i < half; i++) {
                double ang = sign * (double)(pos0 + t) * pow((double)theta, -2.0 * i / HS);
                double cs = cos(ang), sn = sin(ang);
                for (int h = 0; h < NH; h++) {
                    float *v = row + (size_t)h * HS;
                    double a = v[i], c = v[i + half];
                    v[i] = (float)(a * cs - c * sn);
                    v[i + half] = (float)(a * sn + c * cs);
                }
            }
        }
    }
}

void fg_rope_forward_ref(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    rope(x, B, T, NH, HS, row_stride, pos0, theta, 1.0);
}

/* The forward is an orthogonal rotation R; its backward is R^T = rotation by -angle. */
void fg_rope_backward_ref(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta)
{
    rope(dx, B, T, NH, HS, row_stride, pos0, theta, -1.0);
}
