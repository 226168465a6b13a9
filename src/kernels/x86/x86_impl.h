/* x86_impl.h: declarations of the AVX2 / AVX-512 kernel variants and the registry
 * rows that dispatch.c appends for them (FG_X86_VARIANTS). */
#ifndef FRUGAL_KERNELS_X86_IMPL_H
#define FRUGAL_KERNELS_X86_IMPL_H

#include "frugal/kernels.h"

/* Each fg_<op>_avx2 / fg_<op>_avx512 below has exactly the contract of fg_<op> in
 * kernels.h (shapes, accumulation, NULL outputs, aliasing); callers reach them only
 * through the dispatch table, after cpuid said the ISA is there. */

void fg_attention_forward_avx512(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
void fg_attention_backward_avx512(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                                  int B, int T, int C, int NH);
double fg_softmax_xent_avx512(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V,
                              int Vp, float dloss);
void fg_gelu_forward_avx512(float *out, const float *inp, size_t n);
void fg_gelu_backward_avx512(float *dinp, const float *dout, const float *inp, size_t n);
void fg_swiglu_forward_avx512(float *out, const float *inp, int N, int H);
void fg_swiglu_backward_avx512(float *dinp, const float *dout, const float *inp, int N, int H);
void fg_rmsnorm_forward_avx512(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void fg_rmsnorm_backward_avx512(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                                const float *rstd, int N, int C);
void fg_layernorm_forward_avx512(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                 const float *bias, int N, int C, float eps);
void fg_layernorm_backward_avx512(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                  const float *weight, const float *mean, const float *rstd, int N, int C);
void fg_add_avx512(float *out, const float *a, const float *b, size_t n);
void fg_axpy_avx512(float *y, float a, const float *x, size_t n);
void fg_scale_avx512(float *x, float s, size_t n);
double fg_sumsq_avx512(const float *x, size_t n);
void fg_adamw_update_avx512(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                            float beta2, float eps, float weight_decay, int t);
void fg_embedding_forward_avx512(float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T,
                                 int C);
void fg_embedding_backward_avx512(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T,
                                  int C);
void fg_rope_forward_avx512(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);
void fg_rope_backward_avx512(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);
void fg_attention_forward_avx2(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
void fg_attention_backward_avx2(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                                int B, int T, int C, int NH);
double fg_softmax_xent_avx2(float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V,
                            int Vp, float dloss);
void fg_gelu_forward_avx2(float *out, const float *inp, size_t n);
void fg_gelu_backward_avx2(float *dinp, const float *dout, const float *inp, size_t n);
void fg_swiglu_forward_avx2(float *out, const float *inp, int N, int H);
void fg_swiglu_backward_avx2(float *dinp, const float *dout, const float *inp, int N, int H);
void fg_adamw_update_avx2(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                          float beta2, float eps, float weight_decay, int t);

void fg_rmsnorm_forward_avx2(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void fg_rmsnorm_backward_avx2(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                              const float *rstd, int N, int C);
void fg_layernorm_forward_avx2(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                               const float *bias, int N, int C, float eps);
void fg_layernorm_backward_avx2(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *weight, const float *mean, const float *rstd, int N, int C);
void fg_rope_forward_avx2(float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);
void fg_rope_backward_avx2(float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta);
void fg_embedding_forward_avx2(float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T,
                               int C);
void fg_embedding_backward_avx2(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T,
                                int C);
void fg_add_avx2(float *out, const float *a, const float *b, size_t n);
void fg_axpy_avx2(float *y, float a, const float *x, size_t n);
void fg_scale_avx2(float *x, float s, size_t n);
double fg_sumsq_avx2(const float *x, size_t n);

/* Registry rows: per op, in ascending level (dispatch.c keeps the last allowed). */
#define FG_X86_VARIANTS                                                                                                \
    V("attention_forward", LVL_AVX2, attention_forward, fg_attention_forward_avx2),                                    \
        V("attention_backward", LVL_AVX2, attention_backward, fg_attention_backward_avx2),                             \
        V("rmsnorm_forward", LVL_AVX2, rmsnorm_forward, fg_rmsnorm_forward_avx2),                                      \
        V("rmsnorm_backward", LVL_AVX2, rmsnorm_backward, fg_rmsnorm_backward_avx2),                                   \
        V("layernorm_forward", LVL_AVX2, layernorm_forward, fg_layernorm_forward_avx2),                                \
        V("layernorm_backward", LVL_AVX2, layernorm_backward, fg_layernorm_backward_avx2),                             \
        V("rope_forward", LVL_AVX2, rope_forward, fg_rope_forward_avx2),                                               \
        V("rope_backward", LVL_AVX2, rope_backward, fg_rope_backward_avx2),                                            \
        V("embedding_forward", LVL_AVX2, embedding_forward, fg_embedding_forward_avx2),                                \
        V("embedding_backward", LVL_AVX2, embedding_backward, fg_embedding_backward_avx2),                             \
        V("add", LVL_AVX2, add, fg_add_avx2), V("axpy", LVL_AVX2, axpy, fg_axpy_avx2),                                 \
        V("scale", LVL_AVX2, scale, fg_scale_avx2), V("sumsq", LVL_AVX2, sumsq, fg_sumsq_avx2),                        \
        V("softmax_xent", LVL_AVX2, softmax_xent, fg_softmax_xent_avx2),                                               \
        V("gelu_forward", LVL_AVX2, gelu_forward, fg_gelu_forward_avx2),                                               \
        V("gelu_backward", LVL_AVX2, gelu_backward, fg_gelu_backward_avx2),                                            \
        V("swiglu_forward", LVL_AVX2, swiglu_forward, fg_swiglu_forward_avx2),                                         \
        V("swiglu_backward", LVL_AVX2, swiglu_backward, fg_swiglu_backward_avx2),                                      \
        V("adamw_update", LVL_AVX2, adamw_update, fg_adamw_update_avx2),                                               \
        V("attention_forward", LVL_AVX512, attention_forward, fg_attention_forward_avx512),                            \
        V("attention_backward", LVL_AVX512, attention_backward, fg_attention_backward_avx512),                         \
        V("softmax_xent", LVL_AVX512, softmax_xent, fg_softmax_xent_avx512),                                           \
        V("gelu_forward", LVL_AVX512, gelu_forward, fg_gelu_forward_avx512),                                           \
        V("gelu_backward", LVL_AVX512, gelu_backward, fg_gelu_backward_avx512),                                        \
        V("swiglu_forward", LVL_AVX512, swiglu_forward, fg_swiglu_forward_avx512),                                     \
        V("swiglu_backward", LVL_AVX512, swiglu_backward, fg_swiglu_backward_avx512),                                  \
        V("rmsnorm_forward", LVL_AVX512, rmsnorm_forward, fg_rmsnorm_forward_avx512),                                  \
        V("rmsnorm_backward", LVL_AVX512, rmsnorm_backward, fg_rmsnorm_backward_avx512),                               \
        V("layernorm_forward", LVL_AVX512, layernorm_forward, fg_layernorm_forward_avx512),                            \
        V("layernorm_backward", LVL_AVX512, layernorm_backward, fg_layernorm_backward_avx512),                         \
        V("add", LVL_AVX512, add, fg_add_avx512), V("axpy", LVL_AVX512, axpy, fg_axpy_avx512),                         \
        V("scale", LVL_AVX512, scale, fg_scale_avx512), V("sumsq", LVL_AVX512, sumsq, fg_sumsq_avx512),                \
        V("adamw_update", LVL_AVX512, adamw_update, fg_adamw_update_avx512),                                           \
        V("embedding_forward", LVL_AVX512, embedding_forward, fg_embedding_forward_avx512),                            \
        V("embedding_backward", LVL_AVX512, embedding_backward, fg_embedding_backward_avx512),                         \
        V("rope_forward", LVL_AVX512, rope_forward, fg_rope_forward_avx512),                                           \
        V("rope_backward", LVL_AVX512, rope_backward, fg_rope_backward_avx512),

#endif
