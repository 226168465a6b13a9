/* attention_bf16_ref.c: scalar reference of causal self-attention on a bf16 qkv: the
 * inputs widened exactly, doubles throughout, and bf16 roundings at the points where the
 * fast kernel feeds its bf16 products (p, dout, dS; kernel_ops.h has the contract). */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"

/* Largest head size the reference handles (its row accumulators live on the stack). */
#define FG_ATTN_REF_MAX_HS 512

static double widen(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* Round to nearest even (bf16_ref.c's rule) of v as an fp32, widened back. */
static double round_bf16(double v)
{
    float f = (float)v;
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) <= 0x7f800000u)
        x = (x + 0x7fffu + ((x >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &x, sizeof f);
    return f;
}

static double dot(const uint16_t *a, const uint16_t *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += widen(a[i]) * widen(b[i]);
    return s;
}

void fg_attention_bf16_forward_ref(float *out, float *lse, const uint16_t *qkv, int B, int T, int C, int NH)
{
    int HS = C / NH;
    size_t C3 = (size_t)3 * C;
    double scale = 1.0 / sqrt((double)HS);
    FG_ASSERT(HS * NH == C && HS <= FG_ATTN_REF_MAX_HS);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const uint16_t *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
            for (int t = 0; t < T; t++) {
                const uint16_t *q = base + t * C3;
                double mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    double s = scale * dot(q, base + j * C3 + C, HS);
                    mx = s > mx ? s : mx;
                }
                /* the weights of the sum are rounded (the kernel's PV product takes bf16
                 * operands), the normaliser is not */
                double sum = 0.0, acc[FG_ATTN_REF_MAX_HS] = {0};
                for (int j = 0; j <= t; j++) {
                    double p = exp(scale * dot(q, base + j * C3 + C, HS) - mx), pr = round_bf16(p);
                    const uint16_t *v = base + j * C3 + 2 * C;
                    sum += p;
                    for (int i = 0; i < HS; i++)
                        acc[i] += pr * widen(v[i]);
                }
                float *o = out + ((size_t)b * T + t) * C + (size_t)h * HS;
                for (int i = 0; i < HS; i++)
                    o[i] = (float)(acc[i] / sum);
                /* sum >= 1: the maximum's own term is exp(0) */
                // cppcheck-suppress invalidFunctionArg
                lse[((size_t)b * NH + h) * T + t] = (float)(mx + log(sum));
            }
        }
    }
}

/* As fg_attention_backward_ref, with g = bf16(dout) in dP and dV, bf16(p) in dV and
 * dS = bf16(scale p (dP - D)) in dQ and dK. All writes of head h in batch b come from
 * the (b, h) iteration alone. */
void fg_attention_bf16_backward_ref(float *dqkv, const float *dout, const uint16_t *qkv, const float *out,
                                    const float *lse, int B, int T, int C, int NH)
{
    int HS = C / NH;
    size_t C3 = (size_t)3 * C;
    double scale = 1.0 / sqrt((double)HS);
    FG_ASSERT(HS * NH == C && HS <= FG_ATTN_REF_MAX_HS);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const uint16_t *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
            float *dbase = dqkv + (size_t)b * T * C3 + (size_t)h * HS;
            for (int t = 0; t < T; t++) {
                const uint16_t *q = base + t * C3;
                const float *go = dout + ((size_t)b * T + t) * C + (size_t)h * HS;
                const float *o = out + ((size_t)b * T + t) * C + (size_t)h * HS;
                double l = lse[((size_t)b * NH + h) * T + t], D = 0.0, g[FG_ATTN_REF_MAX_HS];
                for (int i = 0; i < HS; i++) {
                    D += (double)go[i] * o[i];
                    g[i] = round_bf16(go[i]);
                }
                for (int j = 0; j <= t; j++) {
                    const uint16_t *k = base + j * C3 + C, *v = base + j * C3 + 2 * C;
                    double p = exp(scale * dot(q, k, HS) - l), dp = 0.0;
                    for (int i = 0; i < HS; i++)
                        dp += g[i] * widen(v[i]);
                    double ds = round_bf16(scale * p * (dp - D)), pr = round_bf16(p);
                    float *dq = dbase + t * C3, *dk = dbase + j * C3 + C, *dv = dbase + j * C3 + 2 * C;
                    for (int i = 0; i < HS; i++) {
                        dq[i] += (float)(ds * widen(k[i]));
                        dk[i] += (float)(ds * widen(q[i]));
                        dv[i] += (float)(pr * g[i]);
                    }
                }
            }
        }
    }
}
