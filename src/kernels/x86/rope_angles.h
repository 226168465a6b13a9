/* rope_angles.h: the RoPE loop of the x86 variants: angles computed as the reference
 * does (in double, once per position, shared by every batch row and head), rows
 * prefetched ahead; a variant writes only the rotation of one row's heads. */
#ifndef FRUGAL_KERNELS_ROPE_ANGLES_H
#define FRUGAL_KERNELS_ROPE_ANGLES_H

#include <math.h>
#include <stdbool.h>

#include "frugal/core.h"
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

/* Rotates the NH heads (HS floats each) of one row by the angles cs/sn (HS / 2 each,
 * 64-byte aligned). */
typedef void (*fg_rope_rotate_fn)(float *row, int NH, int HS, const float *cs, const float *sn);

enum { FG_ROPE_AHEAD = 8 }; /* rows; recipe rope samples: 2 ahead 1.46%, 8 and 16 0.93-1.03% */

/* The whole op: sign 1 forward, -1 backward (the rotation is orthogonal, so its
 * backward rotates by -angle). Static inline: compiled with each file's ISA flags; the
 * rotation is called once per (position, batch row). At a position the loop visits the B
 * rows T * row_stride floats apart (far past what the hardware prefetchers follow), so
 * each row's first touch waited on memory (the rotation's loads were 58% of its samples
 * in the recipe's profile): the row FG_ROPE_AHEAD steps ahead is prefetched. */
static inline void fg_rope_rows(fg_rope_rotate_fn rotate, float *x, int B, int T, int NH, int HS, int row_stride,
                                int pos0, float theta, double sign)
{
    if (fg_rope_wide_ref(x, B, T, NH, HS, row_stride, pos0, theta, sign))
        return;
    int half = HS / 2;
    size_t len = sizeof(float) * (size_t)NH * HS;
    double inv_freq[FG_ROPE_MAXHALF];
    fg_rope_inv_freq(inv_freq, HS, theta);
    FG_ROWS_FOR((size_t)B * T * NH * HS >= FG_PAR_MIN_ELEMS, int, t, 0, T, {
        float cs[FG_ROPE_MAXHALF] __attribute__((aligned(64))), sn[FG_ROPE_MAXHALF] __attribute__((aligned(64)));
        fg_rope_angles(cs, sn, inv_freq, half, sign * (double)(pos0 + t));
        for (int b = 0; b < B; b++) {
            int pb = b + FG_ROPE_AHEAD, pt = t + pb / B;
            pb %= B;
            if (pt < T) {
                const char *r = (const char *)(x + ((size_t)pb * T + pt) * row_stride);
                for (size_t o = 0; o < len; o += 64)
                    __builtin_prefetch(r + o, 0, 3); /* prefetcht0 */
            }
            rotate(x + ((size_t)b * T + t) * row_stride, NH, HS, cs, sn);
        }
    });
}

#endif
