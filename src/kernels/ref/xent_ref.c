/* xent_ref.c: scalar reference fused softmax + cross-entropy over padded logits, in
 * double; writes per-row losses and (optionally) dlogits, possibly in place. */
#include <math.h>

#include "frugal/kernels.h"

double fg_softmax_xent_ref(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V,
                           int Vp, float dloss)
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
        double loss = lse - x[tgt];
        losses[n] = (float)loss;
        total += loss;
        if (d) {
            /* reads x[i] before writing d[i], so d may alias x */
            for (int i = 0; i < V; i++)
                d[i] = (float)(dloss * (exp(x[i] - lse) - (i == tgt ? 1.0 : 0.0)));
            for (int i = V; i < Vp; i++)
                d[i] = 0.0f;
        }
    }
    return total;
}
