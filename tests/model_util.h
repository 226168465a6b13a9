/* model_util.h: helpers shared by the model tests: the weights every PyTorch twin in
 * tools/gen_*_fixtures.py gets, a splitmix64 hash of the flat parameter index.
 */
#ifndef FRUGAL_TEST_MODEL_UTIL_H
#define FRUGAL_TEST_MODEL_UTIL_H

#include <stdint.h>
#include <string.h>

#include "frugal/model.h"

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

#endif
