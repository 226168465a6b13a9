/* precision.h: the number formats below fp32 and the bookkeeping around them: bf16 and
 * fp8 (e4m3, e5m2) scalar codecs, DeepSeek-V3 fine-grained fp8 scaling (1x128 tiles,
 * 128x128 blocks, fp32 scales), and the dynamic loss scaler (PyTorch GradScaler rule
 * with Megatron's hysteresis and a floor), with the inf/nan check and unscale it needs.
 *
 * Usage:
 *   uint16_t h = fg_bf16_from_f32(x);              float y = fg_bf16_to_f32(h);
 *   uint8_t q = fg_fp8_from_f32(x, FG_FP8_E4M3);    // PyTorch's x.to(torch.float8_e4m3fn)
 *   uint8_t s = fg_fp8_from_f32_sat(x, FG_FP8_E5M2);// finite overflow clamps to +-57344
 *   // activations [N, C]: one fp32 scale per row per 128 columns
 *   float *sc = fg_malloc(fg_fp8_scale_count(N, C, 1, 128) * sizeof(float));
 *   fg_fp8_quantize(q8, sc, x, N, C, 1, 128, FG_FP8_E4M3);
 *   fg_fp8_dequantize(x2, q8, sc, N, C, 1, 128, FG_FP8_E4M3);
 *   // loss scaling: loss * s.scale backward, then
 *   bool inf = false; fg_grad_unscale(grads, n, fg_loss_scaler_inv_scale(&s), &inf);
 *   bool skip = fg_loss_scaler_update(&s, inf);    // skip the optimizer step when true
 * These are the scalar references: the vectorised bf16 row converters and the bf16
 * GEMMs live in src/kernels and are tested against these. Formats, rounding, overflow
 * and the scale layout vs PyTorch and DeepSeek-V3: docs/PRECISION.md.
 */
#ifndef FRUGAL_PRECISION_H
#define FRUGAL_PRECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- bf16: the top 16 bits of an fp32 (1 sign, 8 exponent, 7 mantissa bits) ---- */

/* Round to nearest, ties to even, subnormals rounded the same way (not flushed), inf
 * kept, finite values that round past the largest bf16 become inf (as PyTorch). NaN ->
 * quiet NaN keeping the sign and the top payload bits: (bits >> 16) | 0x0040, which is
 * what vcvtneps2bf16 gives (PyTorch gives 0x7fc0 scalar, 0xffff vectorised: see docs). */
uint16_t fg_bf16_from_f32(float x);
/* Exact: the bits shifted up 16. */
float fg_bf16_to_f32(uint16_t h);
/* The same over n values; out and in do not overlap. */
void fg_bf16_from_f32_array(uint16_t *out, const float *in, size_t n);
void fg_bf16_to_f32_array(float *out, const uint16_t *in, size_t n);

/* ---- fp8 ----
 * E4M3 is PyTorch's float8_e4m3fn: bias 7, no inf, S.1111.111 is NaN, max 448, min
 * normal 2^-6, min subnormal 2^-9. E5M2 is float8_e5m2: bias 15, IEEE-like (inf is
 * S.11111.00, NaN S.11111.xx with xx != 0), max 57344, min normal 2^-14, min subnormal
 * 2^-16. Values are stored in a uint8_t. The enum is written to disk by callers that
 * cache fp8 tensors: append only. */
typedef enum fg_fp8_format {
    FG_FP8_E4M3 = 0,
    FG_FP8_E5M2 = 1,
} fg_fp8_format;

#define FG_FP8_E4M3_MAX 448.0f
#define FG_FP8_E5M2_MAX 57344.0f

/* Largest finite value of the format (448 or 57344); 0 for an unknown format. */
float fg_fp8_max(fg_fp8_format fmt);
/* "e4m3" or "e5m2" ("?" otherwise). */
const char *fg_fp8_format_name(fg_fp8_format fmt);

/* Decode, exact (every fp8 value is an fp32). NaN codes give the bits PyTorch gives. */
float fg_fp8_to_f32(uint8_t code, fg_fp8_format fmt);

/* Encode as PyTorch 2.15's tensor.to(torch.float8_*): round to nearest even, subnormals
 * kept, both signs, NaN -> S.1111.111 / S.11111.11 (sign kept). Overflow differs by
 * format, as in PyTorch:
 *   e4m3: |x| >= 464 (the tie above 448 rounds to the even 448 and everything beyond
 *         would land on the NaN code) and +-inf saturate to +-448;
 *   e5m2: |x| >= 61440 (max + half an ulp; the tie rounds to even = inf) and +-inf
 *         give +-inf, as IEEE round to nearest does. */
uint8_t fg_fp8_from_f32(float x, fg_fp8_format fmt);
/* Saturating encode (Transformer Engine / DeepSeek-V3 cast after scaling, and
 * torch.clamp(x, -max, max).to(fp8)): as fg_fp8_from_f32, but every value beyond
 * +-max, inf included, gives +-max; NaN stays NaN. For e4m3 this is the same function
 * as fg_fp8_from_f32 (PyTorch 2.15 already saturates e4m3). */
uint8_t fg_fp8_from_f32_sat(float x, fg_fp8_format fmt);

/* Array forms; saturate picks fg_fp8_from_f32_sat over fg_fp8_from_f32. */
void fg_fp8_from_f32_array(uint8_t *out, const float *in, size_t n, fg_fp8_format fmt, bool saturate);
void fg_fp8_to_f32_array(float *out, const uint8_t *in, size_t n, fg_fp8_format fmt);

/* ---- fine-grained fp8 scaling (DeepSeek-V3, arXiv:2412.19437 section 3.3) ----
 * x is a row-major fp32 matrix [rows, cols] cut into blocks of block_rows x
 * block_cols: 1 x 128 tiles for activations and activation gradients (per token, per
 * 128 channels), 128 x 128 blocks for weights. Edge blocks are smaller when rows or
 * cols are not multiples (ragged edges are handled, nothing is padded).
 * Scales: one fp32 per block, row-major [ceil(rows/block_rows), ceil(cols/block_cols)]:
 *   scale[bi * ceil(cols/block_cols) + bj] covers x[bi*block_rows .. , bj*block_cols ..].
 * For 1 x 128 tiles that is [rows, ceil(cols/128)], for 128 x 128 [ceil(rows/128),
 * ceil(cols/128)]. Any block shape works: V3's backward re-tiles cached activations for
 * the weight gradient as 128 x 1 (block_rows 128, block_cols 1). scale = amax / fp8_max with amax the block's max |x|
 * (the online max-abs: computed from the data being cast, no history), q = fg_fp8_from_f32_sat(x / scale), dequantized
 * x' = fp8_to_f32(q) * scale. A block of zeros gets scale 1 (its codes are zeros either way; 1 keeps the scale finite
 * for the dequantizing GEMM). A NaN in a block makes its scale NaN (so every value of that block decodes NaN and the
 * loss scaler sees it); an inf makes the scale inf (finite values -> 0, the inf -> NaN) — DeepSeek-V3's act_quant does
 * the same, and neither happens in a clean step. */

/* Number of scales: ceil(rows/block_rows) * ceil(cols/block_cols); 0 for bad sizes. */
size_t fg_fp8_scale_count(size_t rows, size_t cols, int block_rows, int block_cols);

/* q[rows*cols] codes, scales[fg_fp8_scale_count(...)]. FG_ERR_INVALID (naming the
 * argument) for block sizes < 1 or an unknown format; nothing written then. Runs over
 * OpenMP threads by block row; writes each output once. */
fg_status fg_fp8_quantize(uint8_t *q, float *scales, const float *x, size_t rows, size_t cols, int block_rows,
                          int block_cols, fg_fp8_format fmt);
/* x[rows*cols] = decode(q) * scale of its block. Same errors as fg_fp8_quantize. */
fg_status fg_fp8_dequantize(float *x, const uint8_t *q, const float *scales, size_t rows, size_t cols, int block_rows,
                            int block_cols, fg_fp8_format fmt);

#define FG_FP8_TILE 128 /* DeepSeek-V3's tile and block edge */

/* ---- dynamic loss scaling ----
 * PyTorch GradScaler (torch._amp_update_scale_) with Megatron-LM's DynamicGradScaler
 * options (hysteresis, min_scale). Per step, with found_inf = any inf/nan in the
 * (scaled) gradients of this step:
 *   found_inf:  the step is skipped; growth_tracker = 0; hysteresis_tracker -= 1; if
 *               hysteresis_tracker <= 0: scale = max(scale * backoff_factor, min_scale).
 *   clean:      growth_tracker += 1; when it reaches growth_interval: growth_tracker = 0,
 *               hysteresis_tracker = hysteresis, scale *= growth_factor unless that
 *               product is not finite (PyTorch's guard; the scale then stays).
 * Products are taken in double and rounded to fp32 once, as PyTorch does. hysteresis 1
 * and min_scale 0 is exactly PyTorch; Megatron uses hysteresis 2 and min_scale 1. As in
 * Megatron's code (not its docstring) the hysteresis tracker is reset only when the
 * scale grows, not by every clean step, so once used up each later overflow halves. */
typedef struct fg_loss_scaler_config {
    float init_scale;      /* 65536 (2^16) */
    double growth_factor;  /* 2, > 1 (double, as GradScaler's Python floats) */
    double backoff_factor; /* 0.5, in (0, 1) */
    int growth_interval;   /* 2000 clean steps between growths, >= 1 */
    int hysteresis;        /* 1 (PyTorch): overflow steps tolerated before backing off, >= 1 */
    float min_scale;       /* 0 (PyTorch: none): floor of the backed-off scale, <= init_scale */
} fg_loss_scaler_config;

fg_loss_scaler_config fg_loss_scaler_config_default(void);
/* FG_OK or FG_ERR_INVALID with "loss scaler: <field> <value>: <rule>". */
fg_status fg_loss_scaler_config_validate(const fg_loss_scaler_config *c);

typedef struct fg_loss_scaler {
    fg_loss_scaler_config cfg;
    float scale;            /* multiply the loss by this before backward */
    int growth_tracker;     /* clean steps since the last growth or overflow */
    int hysteresis_tracker; /* overflows left before the next back-off */
    int64_t steps;          /* updates seen */
    int64_t skipped_steps;  /* of them, with inf/nan (optimizer step skipped) */
    int64_t backoffs;       /* times the scale was reduced */
    int64_t growths;        /* times the scale was grown */
} fg_loss_scaler;

/* Validates cfg (NULL: the defaults) and starts at cfg->init_scale. */
fg_status fg_loss_scaler_init(fg_loss_scaler *s, const fg_loss_scaler_config *cfg);
/* One step's verdict; returns true when the optimizer step must be skipped (found_inf). */
bool fg_loss_scaler_update(fg_loss_scaler *s, bool found_inf);
/* (float)(1.0 / (double)scale), as GradScaler computes inv_scale. */
float fg_loss_scaler_inv_scale(const fg_loss_scaler *s);

/* true when any of x[0..n) is inf or NaN. */
bool fg_nonfinite(const float *x, size_t n);
/* torch._amp_foreach_non_finite_check_and_unscale_ on one buffer: x[i] *= inv_scale
 * (left as is when inv_scale == 1), and *found_inf = true when any input value was inf
 * or NaN (checked before the multiply, as PyTorch; never reset to false, so one flag
 * collects several buffers). */
void fg_grad_unscale(float *x, size_t n, float inv_scale, bool *found_inf);

/* ---- int8 quantization: fake quantization for QAT, LSQ, and real int8 for inference
 * (issue 14; docs/PRECISION.md "int8"). Symmetric: codes in [-127, 127], zero point 0;
 * a "row" scale layout means scale[r * stride] applies to row r of a [rows, cols]
 * matrix: stride 1 is per row (per output channel of a weight [OC, C], per token of
 * activations [N, C]), stride 0 per tensor (one scale). ---- */
#define FG_INT8_QMAX 127

/* scale[r] = max_c |x[r, c]| / 127 (an all-zero row gets 1: its codes are 0 whatever
 * the scale, and the scale stays usable as a divisor). */
void fg_int8_scales_rows(float *scale, const float *x, int rows, int cols);
/* max |x| / 127 over n values (1 when all are zero). */
float fg_int8_scale_tensor(const float *x, size_t n);

/* PyTorch's fake_quantize_per_channel_affine(x, scale, 0, 0, -127, 127) (stride 1) /
 * fake_quantize_per_tensor_affine(x, scale, 0, -127, 127) (stride 0), bit for bit:
 * out = clamp(nearbyint(x * (1.0f / s)), -127, 127) * s. out may alias x. */
void fg_fake_quant_rows(float *out, const float *x, const float *scale, int stride, int rows, int cols);
/* Its straight-through backward (PyTorch's, with clipping): dx = dout where the unclamped
 * code nearbyint(x / s) was in [-127, 127], else 0. dx is SET; it may alias dout. The mask
 * is recomputed from x, so nothing but x and the scales is kept from the forward. */
void fg_fake_quant_rows_backward(float *dx, const float *dout, const float *x, const float *scale, int stride, int rows,
                                 int cols);

/* LSQ (Esser et al. 2019, "Learned Step Size Quantization"): a learned step s per row
 * (stride 1) or per tensor (stride 0): out = clamp(nearbyint(x / s), -127, 127) * s. */
void fg_lsq_forward(float *out, const float *x, const float *step, int stride, int rows, int cols);
/* dx = dout where -127 <= x / s <= 127, else 0 (SET; may alias dout);
 * dstep[r * stride] += grad_scale * sum over its elements of dout * (round(x/s) - x/s
 * inside, -127 or 127 outside). grad_scale is the paper's g = 1 / sqrt(n * 127), n the
 * number of values sharing one step (fg_lsq_grad_scale). */
void fg_lsq_backward(float *dx, float *dstep, const float *dout, const float *x, const float *step, int stride,
                     int rows, int cols, float grad_scale);
/* 1 / sqrt(n * 127). */
float fg_lsq_grad_scale(size_t n_per_step);
/* The paper's initial step: 2 mean|x| / sqrt(127) over each row (stride 1) or all (0);
 * a zero row gets 1 / 127. */
void fg_lsq_init(float *step, const float *x, int stride, int rows, int cols);

/* A running activation range for static (per-tensor) inference scales, PyTorch's
 * MovingAverageMinMaxObserver rule on max|x|: the first batch sets it, later ones move it
 * by momentum (0.01 there): amax += momentum * (batch - amax). */
typedef struct fg_int8_observer {
    float amax;
    float momentum;
    int64_t batches;
} fg_int8_observer;
void fg_int8_observer_update(fg_int8_observer *o, float batch_amax);

/* Codes: q = clamp(nearbyint(x * (1.0f / s)), -127, 127), the integers of
 * fg_fake_quant_rows (so dequantized q * s equals its output bit for bit). */
void fg_int8_quantize_rows(int8_t *q, const float *x, const float *scale, int stride, int rows, int cols);
/* Per-token dynamic activation quantization for fg_gemm_u8s8: scale[r] = max|x[r,:]| /
 * 127 and u[r, c] = q + 128 (uint8), q as fg_int8_quantize_rows. */
void fg_int8_quantize_act_u8(uint8_t *u, float *scale, const float *x, int rows, int cols);

#ifdef __cplusplus
}
#endif
#endif
