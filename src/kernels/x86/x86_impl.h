/* x86_impl.h: the registry rows of the AVX2 / AVX-512 kernel variants, which dispatch.c
 * appends to its own (their prototypes come from the op list, via kernels_impl.h). */
#ifndef FRUGAL_KERNELS_X86_IMPL_H
#define FRUGAL_KERNELS_X86_IMPL_H

#include "kernels_impl.h"

/* Each fg_<op>_avx2 / fg_<op>_avx512 has exactly the contract of fg_<op> (shapes,
 * accumulation, NULL outputs, aliasing); callers reach them only through the dispatch
 * table, after cpuid said the ISA is there. Rows are V(op, level, function); dispatch.c
 * checks each function's type against the op at compile time. */
#define FG_X86_VARIANTS(V)                                                                                             \
    V(attention_forward, FG_LVL_AVX2, fg_attention_forward_avx2)                                                       \
    V(attention_backward, FG_LVL_AVX2, fg_attention_backward_avx2)                                                     \
    V(rmsnorm_forward, FG_LVL_AVX2, fg_rmsnorm_forward_avx2)                                                           \
    V(rmsnorm_backward, FG_LVL_AVX2, fg_rmsnorm_backward_avx2)                                                         \
    V(layernorm_forward, FG_LVL_AVX2, fg_layernorm_forward_avx2)                                                       \
    V(layernorm_backward, FG_LVL_AVX2, fg_layernorm_backward_avx2)                                                     \
    V(rope_forward, FG_LVL_AVX2, fg_rope_forward_avx2)                                                                 \
    V(rope_backward, FG_LVL_AVX2, fg_rope_backward_avx2)                                                               \
    V(embedding_forward, FG_LVL_AVX2, fg_embedding_forward_avx2)                                                       \
    V(embedding_backward, FG_LVL_AVX2, fg_embedding_backward_avx2)                                                     \
    V(add, FG_LVL_AVX2, fg_add_avx2)                                                                                   \
    V(axpy, FG_LVL_AVX2, fg_axpy_avx2)                                                                                 \
    V(scale, FG_LVL_AVX2, fg_scale_avx2)                                                                               \
    V(sumsq, FG_LVL_AVX2, fg_sumsq_avx2)                                                                               \
    V(softmax_xent, FG_LVL_AVX2, fg_softmax_xent_avx2)                                                                 \
    V(softmax_xent_bf16, FG_LVL_AVX2, fg_softmax_xent_bf16_avx2)                                                       \
    V(gelu_forward, FG_LVL_AVX2, fg_gelu_forward_avx2)                                                                 \
    V(gelu_backward, FG_LVL_AVX2, fg_gelu_backward_avx2)                                                               \
    V(swiglu_forward, FG_LVL_AVX2, fg_swiglu_forward_avx2)                                                             \
    V(swiglu_backward, FG_LVL_AVX2, fg_swiglu_backward_avx2)                                                           \
    V(adamw_update, FG_LVL_AVX2, fg_adamw_update_avx2)                                                                 \
    V(attention_forward, FG_LVL_AVX512, fg_attention_forward_avx512)                                                   \
    V(attention_backward, FG_LVL_AVX512, fg_attention_backward_avx512)                                                 \
    V(softmax_xent, FG_LVL_AVX512, fg_softmax_xent_avx512)                                                             \
    V(softmax_xent_bf16, FG_LVL_AVX512, fg_softmax_xent_bf16_avx512)                                                   \
    V(gelu_forward, FG_LVL_AVX512, fg_gelu_forward_avx512)                                                             \
    V(gelu_backward, FG_LVL_AVX512, fg_gelu_backward_avx512)                                                           \
    V(swiglu_forward, FG_LVL_AVX512, fg_swiglu_forward_avx512)                                                         \
    V(swiglu_backward, FG_LVL_AVX512, fg_swiglu_backward_avx512)                                                       \
    V(rmsnorm_forward, FG_LVL_AVX512, fg_rmsnorm_forward_avx512)                                                       \
    V(rmsnorm_backward, FG_LVL_AVX512, fg_rmsnorm_backward_avx512)                                                     \
    V(rmsnorm_backward_bf16, FG_LVL_AVX512, fg_rmsnorm_backward_bf16_avx512)                                           \
    V(rmsnorm_forward_bf16, FG_LVL_AVX512, fg_rmsnorm_forward_bf16_avx512)                                             \
    V(layernorm_forward, FG_LVL_AVX512, fg_layernorm_forward_avx512)                                                   \
    V(layernorm_backward, FG_LVL_AVX512, fg_layernorm_backward_avx512)                                                 \
    V(add, FG_LVL_AVX512, fg_add_avx512)                                                                               \
    V(colsum_add, FG_LVL_AVX512, fg_colsum_add_avx512)                                                                 \
    V(axpy, FG_LVL_AVX512, fg_axpy_avx512)                                                                             \
    V(scale, FG_LVL_AVX512, fg_scale_avx512)                                                                           \
    V(sumsq, FG_LVL_AVX512, fg_sumsq_avx512)                                                                           \
    V(adamw_update, FG_LVL_AVX512, fg_adamw_update_avx512)                                                             \
    V(embedding_forward, FG_LVL_AVX512, fg_embedding_forward_avx512)                                                   \
    V(embedding_backward, FG_LVL_AVX512, fg_embedding_backward_avx512)                                                 \
    V(rope_forward, FG_LVL_AVX512, fg_rope_forward_avx512)                                                             \
    V(rope_backward, FG_LVL_AVX512, fg_rope_backward_avx512)                                                           \
    V(cvt_f32_bf16, FG_LVL_AVX512, fg_cvt_f32_bf16_avx512)                                                             \
    V(cvt_bf16_f32, FG_LVL_AVX512, fg_cvt_bf16_f32_avx512)                                                             \
    V(cvt_f32_bf16, FG_LVL_AVX512BF16, fg_cvt_f32_bf16_avx512bf16)                                                     \
    V(bf16_affine, FG_LVL_AVX512, fg_bf16_affine_avx512)                                                               \
    V(layernorm_forward_bf16, FG_LVL_AVX512, fg_layernorm_forward_bf16_avx512)                                         \
    V(gelu_backward_bf16, FG_LVL_AVX512, fg_gelu_backward_bf16_avx512)                                                 \
    V(swiglu_forward_bf16, FG_LVL_AVX512, fg_swiglu_forward_bf16_avx512)                                               \
    V(swiglu_backward_bf16, FG_LVL_AVX512, fg_swiglu_backward_bf16_avx512)                                             \
    V(bgemm, FG_LVL_AVX512BF16, fg_bgemm_avx512bf16)                                                                   \
    V(attention_bf16_forward, FG_LVL_AVX512BF16, fg_attention_bf16_forward_avx512bf16)                                 \
    V(attention_bf16_backward, FG_LVL_AVX512BF16, fg_attention_bf16_backward_avx512bf16)                               \
    V(bgemm_pack_b, FG_LVL_AVX512BF16, fg_bgemm_pack_b_avx512bf16)                                                     \
    V(bgemm_packed, FG_LVL_AVX512BF16, fg_bgemm_packed_avx512bf16)                                                     \
    V(gemm_u8s8, FG_LVL_AVX512VNNI, fg_gemm_u8s8_avx512vnni)                                                           \
    V(gemm_u8s8_pack_b, FG_LVL_AVX512, fg_gemm_u8s8_pack_b_avx512)                                                     \
    V(gemm_u8s8_packed, FG_LVL_AVX512VNNI, fg_gemm_u8s8_packed_avx512vnni)                                             \
    V(quantize_u8, FG_LVL_AVX512, fg_quantize_u8_avx512)                                                               \
    V(rmsnorm_quant_u8, FG_LVL_AVX512, fg_rmsnorm_quant_u8_avx512)                                                     \
    V(swiglu_quant_u8, FG_LVL_AVX512, fg_swiglu_quant_u8_avx512)                                                       \
    V(fq_scales, FG_LVL_AVX512, fg_fq_scales_avx512)                                                                   \
    V(fake_quant, FG_LVL_AVX512, fg_fake_quant_avx512)                                                                 \
    V(fake_quant_mask, FG_LVL_AVX512, fg_fake_quant_mask_avx512)

#endif
