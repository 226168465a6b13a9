/* kernels.h: the compute kernels every layer is built from, each a scalar reference
 * (`_ref`, always built) plus fast variants picked once at start-up into a dispatch
 * table (the one global besides the log level).
 *
 * Usage:
 *   fg_kernels_init("auto");          // or "ref", or FG_KERNELS=ref in the environment
 *   fg_matmul_forward(out, inp, w, b, N, C, OC);
 * Conventions (llm.c style): arguments are outputs, inputs, weights, dims. Every
 * backward ACCUMULATES into its d* outputs (+=); the caller zeroes them. Any d* output
 * may be NULL when that gradient is not needed. Rows are contiguous, row-major.
 * Kernels never allocate, except fg_kernels_init. All are multi-threaded (OpenMP)
 * over an output dimension so no two threads write one location.
 */
#ifndef FRUGAL_KERNELS_H
#define FRUGAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills the dispatch table. mode: "auto" (best variant the CPU supports), "ref"
 * (scalar reference everywhere), or a variant name ("avx2", "avx512", "blas"...).
 * mode NULL means getenv("FG_KERNELS") or "auto". Unknown mode: FG_ERR_INVALID.
 * Calling a kernel before init initialises with NULL. Not thread-safe. */
fg_status fg_kernels_init(const char *mode);

/* Prints one line per op: "op: variant" (for `frugal hw`). */
void fg_kernels_print(FILE *f);

/* Name of the variant chosen for an op ("matmul", "attention", ...), or "?" */
const char *fg_kernels_variant(const char *op);

/* ---- GEMM ---- */
/* C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major, op(X) = X or X^T
 * (trans_a/trans_b nonzero). Plain BLAS semantics (lda/ldb/ldc in elements). */
void fg_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);

/* Linear layer, PyTorch layout: out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC].
 * bias may be NULL. */
void fg_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
/* dinp[N,C] += dout[N,OC] @ weight; dweight[OC,C] += dout^T @ inp; dbias[OC] += sum_n dout. */
void fg_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, int N, int C, int OC);

/* ---- embeddings ---- */
/* out[N,C] = wte[tokens[n]] (+ wpe[pos[n]] when wpe != NULL; pos[n] = n % T). */
void fg_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T, int C);
/* dwte[tokens[n]] += dout[n]; dwpe[n % T] += dout[n] when dwpe != NULL. */
void fg_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T, int C);

/* ---- norms ---- */
/* out = inp / sqrt(mean(inp^2) + eps) * weight; rstd[N] saved for backward. */
void fg_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void fg_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                         const float *rstd, int N, int C);
/* out = (inp - mean) * rstd * weight + bias; mean[N], rstd[N] saved. */
void fg_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, int N, int C, float eps);
void fg_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, const float *mean, const float *rstd, int N, int C);

/* ---- RoPE ----
 * x[B,T,NH,HS] rotated in place, HF/NeoX "rotate_half" convention: for i < HS/2,
 * pair (x[i], x[i+HS/2]) rotated by angle (pos0 + t) * theta^(-2i/HS).
 * row_stride: floats between consecutive (b,t) rows (NH*HS for a plain tensor,
 * 3C when x points into a packed qkv buffer). Backward = rotation by -angle,
 * applied in place to the gradient. */
void fg_rope_forward(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);
void fg_rope_backward(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);

/* ---- causal self-attention (flash-style: memory linear in T per row) ----
 * qkv[B,T,3C]: q at [0,C), k at [C,2C), v at [2C,3C) of each row; head h uses
 * columns [h*HS, (h+1)*HS) of each. out[B,T,C]; lse[B,NH,T] = logsumexp of the
 * scaled scores of each query row (saved for backward). scale = 1/sqrt(HS). */
void fg_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
/* dqkv[B,T,3C] += gradient through attention, from dout[B,T,C]; needs the forward's
 * out and lse (softmax recomputed, never stored as T x T). */
void fg_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B,
                           int T, int C, int NH);

/* ---- activations ---- */
/* GELU, tanh approximation (GPT-2): out[n] = 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))). */
void fg_gelu_forward(float *out, const float *inp, size_t n);
void fg_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* SwiGLU: inp[N,2H] holds gate a = inp[:, :H] and up b = inp[:, H:]; out[N,H] = silu(a) * b. */
void fg_swiglu_forward(float *out, const float *inp, int N, int H);
void fg_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int H);

/* ---- fused softmax + cross-entropy over logits[N,Vp] (first V columns real) ----
 * losses[n] = -log softmax(logits[n, :V])[targets[n]]; rows with targets[n] < 0 are
 * ignored (loss 0, gradient 0). When dlogits != NULL it is SET (not accumulated) to
 * dloss * (softmax - onehot) on real columns and 0 on padding columns; dlogits may
 * alias logits. Returns the sum of losses over counted rows. */
double fg_softmax_xent(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V, int Vp,
                       float dloss);

/* ---- elementwise / reductions used by the model and the optimiser ---- */
void fg_add(float *out, const float *a, const float *b, size_t n); /* out = a + b (out may alias) */
void fg_axpy(float *y, float a, const float *x, size_t n);         /* y += a x */
void fg_scale(float *x, float s, size_t n);                        /* x *= s */
double fg_sumsq(const float *x, size_t n);                         /* sum x^2, in double */

/* AdamW (decoupled decay, PyTorch semantics), step t >= 1:
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t);
 * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p). */
void fg_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int t);

/* ---- scalar references (always built; what "ref" dispatches to) ----
 * Same contracts as the dispatched functions above; tests compare every variant
 * against these. Reductions accumulate in double. */
void fg_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc);
void fg_matmul_forward_ref(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
void fg_matmul_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, int N, int C, int OC);
void fg_embedding_forward_ref(float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T,
                              int C);
void fg_embedding_backward_ref(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T, int C);
void fg_rmsnorm_forward_ref(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void fg_rmsnorm_backward_ref(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                             const float *rstd, int N, int C);
void fg_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int N, int C, float eps);
void fg_layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int N, int C);
void fg_rope_forward_ref(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);
void fg_rope_backward_ref(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);
void fg_attention_forward_ref(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
void fg_attention_backward_ref(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                               int B, int T, int C, int NH);
void fg_gelu_forward_ref(float *out, const float *inp, size_t n);
void fg_gelu_backward_ref(float *dinp, const float *dout, const float *inp, size_t n);
void fg_swiglu_forward_ref(float *out, const float *inp, int N, int H);
void fg_swiglu_backward_ref(float *dinp, const float *dout, const float *inp, int N, int H);
double fg_softmax_xent_ref(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V,
                           int Vp, float dloss);
void fg_add_ref(float *out, const float *a, const float *b, size_t n);
void fg_axpy_ref(float *y, float a, const float *x, size_t n);
void fg_scale_ref(float *x, float s, size_t n);
double fg_sumsq_ref(const float *x, size_t n);
void fg_adamw_update_ref(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, int t);

/* Names of the variants an op can take on this CPU, for tests: fills names[0..cap)
 * with every variant of `op` this CPU supports ("ref" first) and returns the count. */
int fg_kernels_variants(const char *op, const char **names, int cap);
/* Forces one op to one variant by name (tests). FG_ERR_INVALID when unknown,
 * FG_ERR_UNSUPPORTED when this CPU lacks it. */
fg_status fg_kernels_set(const char *op, const char *variant);

#ifdef __cplusplus
}
#endif
#endif
