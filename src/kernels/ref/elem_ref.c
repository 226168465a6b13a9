/* elem_ref.c: scalar reference AdamW update and bias-gradient column sums (add, axpy,
 * scale and sumsq are in loops.h, one source for the reference and the AVX2 variant). */
#include <math.h>

#include "frugal/kernels.h"

/* PyTorch AdamW: p *= 1 - lr wd; p -= lr mhat / (sqrt(vhat) + eps); written in the
 * contract's equivalent form with the decay on the old p. */
void fg_adamw_update_ref(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int t)
{
    double bc1 = 1.0 - pow(beta1, t), bc2 = 1.0 - pow(beta2, t);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        double mhat = mi / bc1, vhat = vi / bc2;
        params[i] = (float)(params[i] - lr * (mhat / (sqrt(vhat) + eps) + weight_decay * (double)params[i]));
    }
}

void fg_colsum_add_ref(float *db, const float *x, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++)
            s = s + x[(size_t)n * C + c];
        db[c] = db[c] + s;
    }
}
