/* adamw_bf16.c: AdamW over bf16-stored moments, the portable version (the reference,
 * and what a CPU without AVX-512 runs). Memory-bound: the arithmetic is not the cost. */
#include <math.h>

#include "optim_impl.h"

void optim_adamw_bf16m_scalar(float *params, const float *grads, uint16_t *m, uint16_t *v, uint16_t *pbf, size_t n,
                              const optim_adamw_args *a)
{
    const float b1 = a->beta1, b2 = a->beta2, c1 = 1.0f - a->beta1, c2 = 1.0f - a->beta2;
    size_t nchunk = (n + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (nchunk > 2)
    for (size_t ch = 0; ch < nchunk; ch++) {
        size_t hi = (ch + 1) * OPTIM_CHUNK < n ? (ch + 1) * OPTIM_CHUNK : n;
        for (size_t i = ch * OPTIM_CHUNK; i < hi; i++) {
            float g = grads[i] * a->grad_coef;
            float mi = b1 * optim_f32(m[i]) + c1 * g;
            float vi = b2 * optim_f32(v[i]) + c2 * g * g;
            m[i] = optim_bf16(mi);
            v[i] = optim_bf16(vi);
            float p = params[i];
            p -= a->lr * (a->weight_decay * p + mi * a->ibc1 / (sqrtf(vi * a->ibc2) + a->eps));
            params[i] = p;
            if (pbf)
                pbf[i] = optim_bf16(p);
        }
    }
}
