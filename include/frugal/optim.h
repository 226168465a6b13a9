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
 * m and v are one fp32 buffer each, in the params' layout, so checkpoints and
 * sharding see flat spans. Frozen ranges are never updated nor counted in the norm;
 * parts of the buffer outside every range are left alone too. Adjacent ranges with
 * the same flags are merged at init, so a model of hundreds of tensors costs a few
 * kernel calls (each an OpenMP fork/join) per step, not hundreds.
 */
#ifndef FRUGAL_OPTIM_H
#define FRUGAL_OPTIM_H

#include <stddef.h>

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

typedef struct fg_adamw_config {
    float beta1;        /* 0.9 */
    float beta2;        /* 0.95 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0.1, applied as p -= lr * wd * p on decay ranges only */
} fg_adamw_config;

fg_adamw_config fg_adamw_config_default(void);

typedef struct fg_optim {
    size_t n_params;
    float *m;               /* [n_params] first moment */
    float *v;               /* [n_params] second moment */
    fg_optim_range *ranges; /* the caller's ranges, adjacent ones of equal flags merged */
    int n_ranges;
    fg_optim_range *spans; /* non-frozen stretches (decay ignored): what the norm and clipping sweep */
    int n_spans;
    fg_adamw_config cfg;
    long t; /* AdamW steps taken (bias correction uses t + 1 on the next step) */
} fg_optim;

/* Allocates zeroed m, v and a copy of the ranges. Ranges must lie inside
 * [0, n_params) and not overlap (FG_ERR_INVALID naming the range otherwise). */
fg_status fg_optim_init(fg_optim *o, size_t n_params, const fg_optim_range *ranges, int n_ranges,
                        const fg_adamw_config *cfg);
void fg_optim_free(fg_optim *o); /* safe on a zeroed or freed struct */

/* One AdamW step with learning rate lr on every non-frozen range (PyTorch
 * torch.optim.AdamW semantics: decay decoupled and scaled by lr). Increments o->t. */
void fg_optim_step(fg_optim *o, float *params, const float *grads, float lr);

/* Global L2 norm of grads over the non-frozen ranges (accumulated in double). */
double fg_optim_grad_norm(const fg_optim *o, const float *grads);

/* Clipping: computes the global norm; when max_norm > 0 and norm > max_norm, scales
 * the gradients of non-frozen ranges by max_norm / (norm + 1e-6) (PyTorch
 * clip_grad_norm_). Returns the norm before clipping (may be inf/nan: the caller
 * decides whether to skip the step). */
double fg_optim_clip(const fg_optim *o, float *grads, float max_norm);

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
