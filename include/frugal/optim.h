/* optim.h: AdamW over flat parameter buffers with a per-range decay mask, the
 * warmup + cosine learning-rate schedule, and global-norm gradient clipping.
 *
 * Usage (the trainer):
 *   fg_optim_range r[] = {{offset, numel, decay, frozen}, ...};   // from the model's tensors
 *   fg_optim o; fg_optim_init(&o, n_params, r, n_ranges, &adam);
 *   float lr = fg_lr_at(&sched, step);                    // step counts from 0
 *   double norm = fg_optim_clip(&o, grads, 1.0f);          // global L2 norm before clipping
 *   fg_optim_step(&o, params, grads, lr);                  // m, v, params updated; o.t += 1
 *   fg_optim_free(&o);
 * or, one sweep for clipping, the update and the bf16 weight copy (bf16 training):
 *   double norm = fg_optim_grad_norm(&o, grads);
 *   fg_optim_step_fused(&o, params, grads, lr, fg_optim_clip_coef(norm, 1.0f), wbf);
 * m and v are one buffer each (fp32, or bf16 with adam moments bf16: m16 / v16), in
 * the params' layout, so checkpoints and sharding see flat spans. Frozen ranges are never updated nor counted in the
 * norm; parts of the buffer outside every range are left alone too. Adjacent ranges with the same flags are merged at
 * init, so a model of hundreds of tensors costs a few kernel calls (each an OpenMP fork/join) per step, not hundreds.
 */
#ifndef FRUGAL_OPTIM_H
#define FRUGAL_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_optim_range {
    size_t offset; /* floats into params / grads / m / v */
    size_t numel;
    int decay;  /* 1: weight decay applies; 0: norms, biases, embeddings by default */
    int frozen; /* 1: skipped by the update and by the gradient norm */
    /* multiplies the step's lr (and so the decoupled decay) on this range; 0 is read
     * as 1 so that ranges written without it train at the plain rate */
    float lr_scale;
} fg_optim_range;

/* Storage of Adam's m and v (docs/PRECISION.md "Optimizer"). The arithmetic is fp32
 * either way; bf16 stores each moment rounded to nearest even after its update. */
typedef enum fg_adam_moments { FG_ADAM_MOMENTS_FP32 = 0, FG_ADAM_MOMENTS_BF16 = 1 } fg_adam_moments;

typedef struct fg_adamw_config {
    float beta1;        /* 0.9 */
    float beta2;        /* 0.95 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0.1, applied as p -= lr * wd * p on decay ranges only */
    int moments;        /* fg_adam_moments; 0 (fp32) when left out */
} fg_adamw_config;

fg_adamw_config fg_adamw_config_default(void);

typedef struct fg_optim {
    size_t n_params;
    float *m;               /* [n_params] first moment (fp32 moments; NULL with bf16) */
    float *v;               /* [n_params] second moment (fp32 moments; NULL with bf16) */
    uint16_t *m16, *v16;    /* [n_params] the same in bf16 (bf16 moments; NULL with fp32) */
    fg_optim_range *ranges; /* the caller's ranges, adjacent ones of equal flags merged */
    int n_ranges;
    fg_optim_range *spans; /* non-frozen stretches (decay ignored): what the norm and clipping sweep */
    int n_spans;
    fg_adamw_config cfg;
    long t; /* AdamW steps taken (bias correction uses t + 1 on the next step) */
} fg_optim;

/* Allocates zeroed m, v (cfg->moments decides their type) and a copy of the ranges. Ranges must lie inside
 * [0, n_params) and not overlap (FG_ERR_INVALID naming the range otherwise). */
fg_status fg_optim_init(fg_optim *o, size_t n_params, const fg_optim_range *ranges, int n_ranges,
                        const fg_adamw_config *cfg);
void fg_optim_free(fg_optim *o); /* safe on a zeroed or freed struct */

/* One AdamW step with learning rate lr on every non-frozen range (PyTorch
 * torch.optim.AdamW semantics: decay decoupled and scaled by lr). Increments o->t. */
void fg_optim_step(fg_optim *o, float *params, const float *grads, float lr);

/* fg_optim_step with two more jobs done in the same sweep over memory:
 * grad_coef multiplies each gradient as it is read (the clipping factor of
 * fg_optim_clip_coef; grads itself is not written), and params_bf16, when not NULL,
 * receives bf16(params) (round to nearest even, as fg_cvt_f32_bf16) of all n_params
 * values after the update, frozen ranges and gaps included. With fp32 moments the
 * params, m and v are bit for bit those of fg_optim_clip + fg_optim_step, and the bf16
 * copy that of fg_cvt_f32_bf16 over the updated params. */
void fg_optim_step_fused(fg_optim *o, float *params, const float *grads, float lr, float grad_coef,
                         uint16_t *params_bf16);

/* Bytes of optimizer state per parameter (m + v): 8 with fp32 moments, 4 with bf16. */
size_t fg_adam_moment_bytes(int moments);

/* Checkpoints keep m and v in fp32 (bf16 -> fp32 -> bf16 is exact, so a resumed run is
 * bit for bit the one that was not stopped). fg_optim_moments_f32 gives fp32 views:
 * o->m and o->v themselves with fp32 moments (*scratch = NULL); with bf16 moments a new
 * buffer *scratch of 2 n_params floats holding them widened (FG_ERR_NOMEM if it cannot
 * be had; fg_free it after use). After a checkpoint was loaded into the views,
 * fg_optim_moments_commit narrows them back into the bf16 storage (no-op for fp32). */
fg_status fg_optim_moments_f32(fg_optim *o, float **m, float **v, float **scratch);
void fg_optim_moments_commit(fg_optim *o, const float *m, const float *v);

/* Global L2 norm of grads over the non-frozen ranges (accumulated in double). */
double fg_optim_grad_norm(const fg_optim *o, const float *grads);

/* Clipping: computes the global norm; when max_norm > 0 and norm > max_norm, scales
 * the gradients of non-frozen ranges by max_norm / (norm + 1e-6) (PyTorch
 * clip_grad_norm_). Returns the norm before clipping (may be inf/nan: the caller
 * decides whether to skip the step). */
double fg_optim_clip(const fg_optim *o, float *grads, float max_norm);

/* The factor fg_optim_clip multiplies the gradients by for this norm: max_norm /
 * (norm + 1e-6) when max_norm > 0 and norm is finite and above it, else 1. */
float fg_optim_clip_coef(double norm, float max_norm);

/* Learning-rate schedule: linear warmup from lr/warmup to lr over `warmup` steps,
 * then cosine decay from lr to min_lr at step total-1, then min_lr. */
typedef struct fg_lr_schedule {
    float lr;     /* peak */
    float min_lr; /* floor reached at the end */
    long warmup;  /* steps; 0 = none */
    long total;   /* steps of the run */
} fg_lr_schedule;

/* Learning rate of step (0-based). */
float fg_lr_at(const fg_lr_schedule *s, long step);

#ifdef __cplusplus
}
#endif
#endif
