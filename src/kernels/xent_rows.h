/* xent_rows.h: the row loop that every softmax_xent variant shares (ignored rows, the
 * per-row loss, the padding columns, the total); a variant writes only one row's pass. */
#ifndef FRUGAL_KERNELS_XENT_ROWS_H
#define FRUGAL_KERNELS_XENT_ROWS_H

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

#endif
