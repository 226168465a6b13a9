/* embed_ref.c: scalar reference token (+ learned position) embedding, forward and
 * backward. The backward scatters into shared rows, so threads own column ranges. */
#include "frugal/kernels.h"

void fg_embedding_forward_ref(float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T,
                              int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *e = wte + (size_t)tokens[n] * C;
        const float *p = wpe ? wpe + (size_t)(n % T) * C : NULL;
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++)
            o[c] = p ? e[c] + p[c] : e[c];
    }
}

/* Backward of out[n] = wte[tokens[n]] + wpe[n % T]. Two rows n may share a token, so
 * the parallel loop runs over channel blocks: each thread writes only its columns. */
void fg_embedding_backward_ref(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T, int C)
{
    enum { CB = 64 };
    int nblk = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * C;
            if (dwte) {
                float *d = dwte + (size_t)tokens[n] * C;
                for (int c = c0; c < c1; c++)
                    d[c] += g[c];
            }
            if (dwpe) {
                float *d = dwpe + (size_t)(n % T) * C;
                for (int c = c0; c < c1; c++)
                    d[c] += g[c];
            }
        }
    }
}
