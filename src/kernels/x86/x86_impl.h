/* x86_impl.h: declarations of the AVX2 / AVX-512 kernel variants and the registry
 * rows that dispatch.c appends for them (FG_X86_VARIANTS). */
#ifndef FRUGAL_KERNELS_X86_IMPL_H
#define FRUGAL_KERNELS_X86_IMPL_H

#include "frugal/kernels.h"

void fg_attention_forward_avx512(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
void fg_attention_backward_avx512(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse,
                                  int B, int T, int C, int NH);

#define FG_X86_VARIANTS                                                                                                \
    V("attention_forward", LVL_AVX512, attention_forward, fg_attention_forward_avx512),                                \
        V("attention_backward", LVL_AVX512, attention_backward, fg_attention_backward_avx512),

#endif
