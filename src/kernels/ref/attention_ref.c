/* attention_ref.c: scalar reference causal self-attention over a packed qkv buffer.
 * Each query row recomputes its scores in passes over the keys (max, then sum and
 * output), so memory stays O(1) per row; doubles throughout. Parallel over (b, h). */
#include <math.h>

#include "frugal/kernels.h"

/* Largest head size the reference handles (the output accumulator lives on the stack). */
#define FG_ATTN_REF_MAX_HS 512

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

void fg_attention_forward_ref(float *out, float *lse, const float *qkv, int B, int T, int C, int NH)
{
    int HS = C / NH;
    size_t C3 = (size_t)3 * C;
    double scale = 1.0 / sqrt((double)HS);
    FG_ASSERT(HS * NH == C && HS <= FG_ATTN_REF_MAX_HS);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
            for (int t = 0; t < T; t++) {
                const float *q = base + t * C3;
                /* max subtraction keeps exp() in range */
                double mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    double s = scale * dot(q, base + j * C3 + C, HS);
                    mx = s > mx ? s : mx;
                }
                double sum = 0.0;
                for (int j = 0; j <= t; j++)
                    sum += exp(scale * dot(q, base + j * C3 + C, HS) - mx);
                /* sum >= 1: the maximum's own term is exp(0) */
                // cppcheck-suppress invalidFunctionArg
                double l = mx + log(sum);
                double acc[FG_ATTN_REF_MAX_HS] = {0};
                for (int j = 0; j <= t; j++) {
                    double p = exp(scale * dot(q, base + j * C3 + C, HS) - l);
                    const float *v = base + j * C3 + 2 * C;
                    for (int i = 0; i < HS; i++)
                        acc[i] += p * v[i];
                }
                float *o = out + ((size_t)b * T + t) * C + (size_t)h * HS;
                for (int i = 0; i < HS; i++)
                    o[i] = (float)acc[i];
                lse[((size_t)b * NH + h) * T + t] = (float)l;
            }
        }
    }
}

/* Forward: s_tj = scale q_t.k_j, p_tj = exp(s_tj - lse_t), o_t = sum_j p_tj v_j (j <= t).
 * Backward: dv_j += sum_t p_tj do_t; dp_tj = do_t.v_j; ds_tj = p_tj (dp_tj - D_t) with
 * D_t = do_t.o_t; dq_t += scale sum_j ds_tj k_j; dk_j += scale sum_t ds_tj q_t.
 * All writes of head h in batch b come from the (b, h) iteration alone. */
void fg_attention_backward_ref(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                               int B, int T, int C, int NH)
{
    int HS = C / NH;
    size_t C3 = (size_t)3 * C;
    double scale = 1.0 / sqrt((double)HS);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
            float *dbase = dqkv + (size_t)b * T * C3 + (size_t)h * HS;
            for (int t = 0; t < T; t++) {
                const float *q = base + t * C3;
                const float *g = dout + ((size_t)b * T + t) * C + (size_t)h * HS;
                const float *o = out + ((size_t)b * T + t) * C + (size_t)h * HS;
                double l = lse[((size_t)b * NH + h) * T + t];
                double D = dot(g, o, HS);
                for (int j = 0; j <= t; j++) {
                    const float *k = base + j * C3 + C, *v = base + j * C3 + 2 * C;
                    double p = exp(scale * dot(q, k, HS) - l);
                    double ds = p * (dot(g, v, HS) - D);
                    float *dq = dbase + t * C3, *dk = dbase + j * C3 + C, *dv = dbase + j * C3 + 2 * C;
                    for (int i = 0; i < HS; i++) {
                        dq[i] += (float)(scale * ds * k[i]);
                        dk[i] += (float)(scale * ds * q[i]);
                        dv[i] += (float)(p * g[i]);
                    }
                }
            }
        }
    }
}
