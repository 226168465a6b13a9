/* optim_impl.h: the AdamW sweeps over bf16-stored moments (adamw_bf16.c, scalar, and
 * adamw_avx512.c), shared by optim.c; not part of the public header. */
#ifndef FRUGAL_OPTIM_IMPL_H
#define FRUGAL_OPTIM_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* The constants of one AdamW step over one range. */
typedef struct optim_adamw_args {
    float lr, beta1, beta2, eps, weight_decay;
    float ibc1, ibc2; /* 1 / (1 - beta^t), rounded to float as the fp32 kernels do */
    float grad_coef;  /* multiplies each gradient as read */
} optim_adamw_args;

/* n elements: g = grads * coef; m, v (bf16) updated in fp32 then stored rounded to
 * nearest even; params updated from the fp32 m, v before rounding; pbf (may be NULL)
 * = bf16(params) after the update. Parallel over chunks when n is large. */
void optim_adamw_bf16m_scalar(float *params, const float *grads, uint16_t *m, uint16_t *v, uint16_t *pbf, size_t n,
                              const optim_adamw_args *a);
void optim_adamw_bf16m_avx512(float *params, const float *grads, uint16_t *m, uint16_t *v, uint16_t *pbf, size_t n,
                              const optim_adamw_args *a);

/* The same sweep over fp32 moments: the bits of fg_scale(grads, coef) (skipped at 1),
 * fg_adamw_update_avx512 and fg_cvt_f32_bf16 in sequence. */
void optim_adamw_f32m_avx512(float *params, const float *grads, float *m, float *v, uint16_t *pbf, size_t n,
                             const optim_adamw_args *a);

/* Round to nearest even with the kernels' NaN rule (fg_cvt_f32_bf16). */
static inline uint16_t optim_bf16(float x)
{
    union {
        float f;
        uint32_t u;
    } b = {x};
    if ((b.u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((b.u >> 16) | 0x0040u);
    return (uint16_t)((b.u + 0x7fffu + ((b.u >> 16) & 1u)) >> 16);
}

static inline float optim_f32(uint16_t h)
{
    union {
        uint32_t u;
        float f;
    } b = {(uint32_t)h << 16};
    return b.f;
}

/* Elements per work item of the sweeps: a multiple of 16, so that a range cut in
 * chunks hands every vector kernel the same tail as the whole range would. */
enum { OPTIM_CHUNK = 16384 };

#endif
