/* elem_ref.c: scalar reference elementwise ops and reductions for the model and
 * the optimiser (add, axpy, scale, sum of squares, AdamW). */
#include <math.h>

#include "frugal/kernels.h"

void fg_add_ref(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void fg_axpy_ref(float *y, float a, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void fg_scale_ref(float *x, float s, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

double fg_sumsq_ref(const float *x, size_t n)
{
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

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
