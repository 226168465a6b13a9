/* rope_angles.h: the RoPE angles of the x86 variants, computed as the reference does
 * (in double, once per position, shared by every batch row and head). */
#ifndef FRUGAL_KERNELS_ROPE_ANGLES_H
#define FRUGAL_KERNELS_ROPE_ANGLES_H

#include <math.h>
#include <stdbool.h>

#include "kernels_impl.h"

enum { FG_ROPE_MAXHALF = 512 }; /* the variants keep one position's angles on the stack */

/* Head sizes above 2 * FG_ROPE_MAXHALF go to the reference: returns true when it ran. */
static inline bool fg_rope_wide_ref(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta,
                                    double sign)
{
    if (HS / 2 <= FG_ROPE_MAXHALF)
        return false;
    (sign > 0 ? fg_rope_forward_ref : fg_rope_backward_ref)(x, B, T, NH, HS, row_stride, pos0, theta);
    return true;
}

/* inv_freq[i] = theta^(-2i / HS) for i < HS / 2. */
static inline void fg_rope_inv_freq(double *inv_freq, int HS, float theta)
{
    for (int i = 0; i < HS / 2; i++)
        inv_freq[i] = pow((double)theta, -2.0 * i / HS);
}

/* cos and sin of the angles at signed position p (sign * position). */
static inline void fg_rope_angles(float *cs, float *sn, const double *inv_freq, int half, double p)
{
    for (int i = 0; i < half; i++) {
        double ang = p * inv_freq[i];
        cs[i] = (float)cos(ang);
        sn[i] = (float)sin(ang);
    }
}

#endif
