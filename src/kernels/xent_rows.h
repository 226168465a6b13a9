/* xent_rows.h: the row loop that every softmax_xent variant shares (ignored rows, the
 * per-row loss, the padding columns, the total); a variant writes only one row's pass. */
#ifndef FRUGAL_KERNELS_XENT_ROWS_H
#define FRUGAL_KERNELS_XENT_ROWS_H

#include <string.h>

#include "frugal/kernels.h"

/* One row of logits x[0..V): returns log(sum exp x) and, when d != NULL, writes
 * d[0..V) = dloss * (softmax(x) - onehot(tgt)). d may alias x (read x[i] before
 * writing d[i]). */
typedef double (*fg_xent_row_fn)(float *d, const float *x, int tgt, int V, float dloss);

/* Static inline so that each including file compiles it with its own ISA flags; the
 * row pass is called once per row (V ~ 50k columns), so the indirect call is free. */
static inline double fg_xent_rows(fg_xent_row_fn row, float *dlogits, float *losses, const float *logits,
                                  const int32_t *targets, int N, int V, int Vp, float dloss)
{
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * Vp;
        float *d = dlogits ? dlogits + (size_t)n * Vp : NULL;
        int tgt = targets[n];
        if (tgt < 0) {
            losses[n] = 0.0f;
            if (d)
                for (int i = 0; i < Vp; i++)
                    d[i] = 0.0f;
            continue;
        }
        FG_ASSERT(tgt < V);
        float xt = x[tgt]; /* before the row pass may overwrite it (in-place dlogits) */
        double loss = row(d, x, tgt, V, dloss) - xt;
        losses[n] = (float)loss;
        total += loss;
        if (d)
            for (int i = V; i < Vp; i++)
                d[i] = 0.0f;
    }
    return total;
}

/* softmax_xent_bf16's row loop: per row, the fp32 row pass in place in logits (the row,
 * V floats, stays in L2) and its result rounded into the bf16 gradient row by cvt (any
 * cvt_f32_bf16 variant: they agree bit for bit). A variant with a row pass that rounds
 * as it scales passes row_bf16 instead (row then unused): it writes d[0..V) itself. */
typedef void (*fg_xent_cvt_fn)(uint16_t *out, const float *in, size_t n);
typedef double (*fg_xent_row_bf16_fn)(uint16_t *d, float *x, int tgt, int V, float dloss);
static inline double fg_xent_rows_bf16(fg_xent_row_fn row, fg_xent_cvt_fn cvt, fg_xent_row_bf16_fn row_bf16,
                                       uint16_t *dlogits, float *losses, float *logits, const int32_t *targets, int N,
                                       int V, int Vp, float dloss)
{
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * Vp;
        uint16_t *d = dlogits + (size_t)n * Vp;
        int tgt = targets[n];
        if (tgt < 0) {
            losses[n] = 0.0f;
            memset(d, 0, (size_t)Vp * sizeof *d);
            continue;
        }
        FG_ASSERT(tgt < V);
        float xt = x[tgt];
        double lse;
        if (row_bf16) {
            lse = row_bf16(d, x, tgt, V, dloss);
        } else {
            lse = row(x, x, tgt, V, dloss);
            cvt(d, x, (size_t)V);
        }
        double loss = lse - xt;
        losses[n] = (float)loss;
        total += loss;
        memset(d + V, 0, (size_t)(Vp - V) * sizeof *d); /* bf16 +0 is 0x0000 */
    }
    return total;
}

#endif
