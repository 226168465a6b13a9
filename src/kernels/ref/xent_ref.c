/* xent_ref.c: scalar reference fused softmax + cross-entropy over padded logits, in
 * double; writes per-row losses and (optionally) dlogits, possibly in place. */
#include <math.h>

#include "xent_rows.h"

/* The row pass in double: max, exp-sum, gradient. */
static double xent_row(float *d, const float *x, int tgt, int V, float dloss)
{
    /* max subtraction keeps exp() in range */
    double mx = -INFINITY;
    for (int i = 0; i < V; i++)
        mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < V; i++)
        sum += exp(x[i] - mx);
    /* sum >= 1: the maximum's own term is exp(0) */
    // cppcheck-suppress invalidFunctionArg
    double lse = mx + log(sum);
    if (d)
        /* reads x[i] before writing d[i], so d may alias x */
        for (int i = 0; i < V; i++)
            d[i] = (float)(dloss * (exp(x[i] - lse) - (i == tgt ? 1.0 : 0.0)));
    return lse;
}

double fg_softmax_xent_ref(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V,
                           int Vp, float dloss)
{
    return fg_xent_rows(xent_row, dlogits, losses, logits, targets, N, V, Vp, dloss);
}

/* The fp32 rows rounded by the reference conversion, row by row. */
double fg_softmax_xent_bf16_ref(uint16_t *dlogits, float *losses, float *logits, const int32_t *targets, int N, int V,
                                int Vp, float dloss)
{
    return fg_xent_rows_bf16(xent_row, fg_cvt_f32_bf16_ref, NULL, dlogits, losses, logits, targets, N, V, Vp, dloss);
}
