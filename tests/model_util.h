/* model_util.h: helpers shared by the model tests: the weights every PyTorch twin in
 * tools/gen_*_fixtures.py gets, a splitmix64 hash of the flat parameter index.
 */
#ifndef FRUGAL_TEST_MODEL_UTIL_H
#define FRUGAL_TEST_MODEL_UTIL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "frugal/core.h"
#include "frugal/model.h"
#include "harness.h"

static inline float fg_test_hash_u(uint64_t idx, uint64_t seed)
{
    uint64_t z = idx + 0x9E3779B97F4A7C15ULL * (seed + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    float k = (float)(z % 20001);
    return (k - 10000.0f) / 10000.0f;
}

static inline int fg_test_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Same values as weights_from_hash in tools/gen_model_fixtures.py: matrices and
 * embeddings 0.1 u, biases 0.05 u, norm weights 1 + 0.1 u, u in [-1, 1]. */
static inline void fg_test_hash_weights(fg_model *m, uint64_t seed)
{
    float *p = fg_model_params(m);
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        int bias = fg_test_ends_with(t->name, "bias");
        int norm = strstr(t->name, "ln_") != NULL && fg_test_ends_with(t->name, "weight");
        for (size_t j = 0; j < t->numel; j++) {
            float u = fg_test_hash_u(t->offset + j, seed);
            p[t->offset + j] = bias ? u * 0.05f : norm ? 1.0f + u * 0.1f : u * 0.1f;
        }
    }
}

/* Central differences (h = 1e-2) of the trained objective (the loss, plus mtp_lambda x
 * the MTP modules' loss when they are on) at three entries of every tensor whose name
 * contains `only` (NULL: all): its largest gradient and two drawn from r, against the
 * gradient of one backward of (in, tg). Each miss is reported under `nm`; returns the
 * count of entries checked, *bad the misses. */
static inline int fg_test_fd_tensors(fg_model *m, const int32_t *in, const int32_t *tg, int B, int T, const char *only,
                                     fg_rng *r, const char *nm, int *bad)
{
    float loss, lp, lm;
    fg_model_zero_grad(m);
    fg_model_forward(m, in, tg, B, T, &loss);
    fg_model_backward(m, 1.0f);
    float *p = fg_model_params(m);
    const float *g = fg_model_grads(m);
    const fg_model_config *c = fg_model_get_config(m);
    float lam = c->mtp_depth > 0 ? c->mtp_lambda : 0.0f; /* backward differentiates it too */
    int checked = 0;
    *bad = 0;
    for (int i = 0; i < fg_model_num_tensors(m); i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        if (only && !strstr(t->name, only))
            continue;
        size_t pick[3] = {0, fg_rng_below(r, (uint32_t)t->numel), fg_rng_below(r, (uint32_t)t->numel)};
        for (size_t j = 0; j < t->numel; j++)
            if (fabsf(g[t->offset + j]) > fabsf(g[t->offset + pick[0]]))
                pick[0] = j;
        for (int k = 0; k < 3; k++) {
            size_t at = t->offset + pick[k];
            float save = p[at], h = 1e-2f;
            p[at] = save + h;
            fg_model_forward(m, in, tg, B, T, &lp);
            lp += lam * (lam != 0.0f ? fg_model_mtp_loss(m) : 0.0f);
            p[at] = save - h;
            fg_model_forward(m, in, tg, B, T, &lm);
            lm += lam * (lam != 0.0f ? fg_model_mtp_loss(m) : 0.0f);
            p[at] = save;
            double fd = ((double)lp - (double)lm) / (2.0 * h);
            checked++;
            if (fabs(fd - g[at]) > 2e-2 * fabs(g[at]) + 1e-4) {
                (*bad)++;
                FG_CHECK(0, "%s: finite difference of %s[%zu]: %.6g, backward %.6g", nm, t->name, pick[k], fd, g[at]);
            }
        }
    }
    return checked;
}

#endif
