/* quant.c: symmetric int8 quantization: scales from ranges, PyTorch-exact fake
 * quantization with its straight-through backward, LSQ with its step gradient, the
 * running range observer, and the integer codes the int8 GEMM reads. */
#include <limits.h>
#include <math.h>

#include "frugal/kernels.h"
#include "frugal/precision.h"

static inline float row_scale(const float *scale, int stride, int r)
{
    return scale[(size_t)r * stride];
}

/* PyTorch's rounding: nearbyint (ties to even) of x * (1/s), in float. */
static inline float code_of(float x, float inv)
{
    return nearbyintf(x * inv);
}

static inline float clampq(float q)
{
    return q < -FG_INT8_QMAX ? (float)-FG_INT8_QMAX : q > FG_INT8_QMAX ? (float)FG_INT8_QMAX : q;
}

/* The three QAT hot loops are kernel ops (kernel_ops.h fq_scales, fake_quant,
 * fake_quant_mask; their ref variant is this file's former scalar code, every variant bit
 * for bit): the PyTorch fixture tests of these functions thus hold for the vector ones. */
void fg_int8_scales_rows(float *scale, const float *x, int rows, int cols)
{
    fg_fq_scales(scale, x, rows, cols);
}

/* One row of n values is fq_scales' rule; longer tensors fold their rows' maxima (a max is
 * exact, so the grouping does not change it). */
float fg_int8_scale_tensor(const float *x, size_t n)
{
    if (n <= INT_MAX) {
        float s;
        fg_fq_scales(&s, x, n ? 1 : 0, (int)n);
        return n ? s : 1.0f;
    }
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(x[i]));
    return m > 0.0f ? m / (float)FG_INT8_QMAX : 1.0f;
}

void fg_fake_quant_rows(float *out, const float *x, const float *scale, int stride, int rows, int cols)
{
    fg_fake_quant(out, x, scale, stride, rows, cols);
}

void fg_fake_quant_rows_backward(float *dx, const float *dout, const float *x, const float *scale, int stride, int rows,
                                 int cols)
{
    fg_fake_quant_mask(dx, dout, x, scale, stride, rows, cols);
}

void fg_lsq_forward(float *out, const float *x, const float *step, int stride, int rows, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (int r = 0; r < rows; r++) {
        float s = row_scale(step, stride, r);
        size_t o = (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            out[o + c] = nearbyintf(clampq(x[o + c] / s)) * s;
    }
}

float fg_lsq_grad_scale(size_t n_per_step)
{
    return (float)(1.0 / sqrt((double)n_per_step * FG_INT8_QMAX));
}

/* nearbyintf(v) for |v| <= 127 (or NaN) without the libm call (not inlined under the
 * generic x86-64 flags): adding and taking away 1.5 * 2^23 leaves no fraction bits, so the
 * sum rounds to nearest even as nearbyintf does. Only the sign of a zero result can
 * differ, and (double)r - (double)v does not see it. */
static inline float round_small(float v)
{
    return (v + 12582912.0f) - 12582912.0f; /* not folded without -ffast-math */
}

/* Per-row sums in double; a per-tensor step (stride 0) adds every row's sum once, after
 * the loop (rows run in parallel). */
void fg_lsq_backward(float *dx, float *dstep, const float *dout, const float *x, const float *step, int stride,
                     int rows, int cols, float grad_scale)
{
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if ((size_t)rows * cols > 65536)
    for (int r = 0; r < rows; r++) {
        float s = row_scale(step, stride, r);
        size_t o = (size_t)r * cols;
        double acc = 0.0;
        for (int c = 0; c < cols; c++) {
            float v = x[o + c] / s, g = dout[o + c];
            if (v < -FG_INT8_QMAX) {
                acc += (double)g * -FG_INT8_QMAX;
                dx[o + c] = 0.0f;
            } else if (v > FG_INT8_QMAX) {
                acc += (double)g * FG_INT8_QMAX;
                dx[o + c] = 0.0f;
            } else {
                acc += (double)g * ((double)round_small(v) - (double)v);
                dx[o + c] = g;
            }
        }
        if (stride)
            dstep[(size_t)r * stride] += (float)(acc * grad_scale);
        else
            total += acc;
    }
    if (!stride && rows > 0)
        dstep[0] += (float)(total * grad_scale);
}

void fg_lsq_init(float *step, const float *x, int stride, int rows, int cols)
{
    double total = 0.0;
    for (int r = 0; r < rows; r++) {
        double acc = 0.0;
        for (int c = 0; c < cols; c++)
            acc += fabs((double)x[(size_t)r * cols + c]);
        if (stride) {
            double m = cols ? acc / cols : 0.0;
            step[(size_t)r * stride] = m > 0.0 ? (float)(2.0 * m / sqrt((double)FG_INT8_QMAX)) : 1.0f / FG_INT8_QMAX;
        }
        total += acc;
    }
    if (!stride) {
        double m = rows && cols ? total / ((double)rows * cols) : 0.0;
        step[0] = m > 0.0 ? (float)(2.0 * m / sqrt((double)FG_INT8_QMAX)) : 1.0f / FG_INT8_QMAX;
    }
}

void fg_int8_observer_update(fg_int8_observer *o, float batch_amax)
{
    if (o->batches++ == 0)
        o->amax = batch_amax;
    else
        o->amax += o->momentum * (batch_amax - o->amax);
}

void fg_int8_quantize_rows(int8_t *q, const float *x, const float *scale, int stride, int rows, int cols)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (int r = 0; r < rows; r++) {
        float inv = 1.0f / row_scale(scale, stride, r);
        size_t o = (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            q[o + c] = (int8_t)clampq(code_of(x[o + c], inv));
    }
}

void fg_int8_quantize_act_u8(uint8_t *u, float *scale, const float *x, int rows, int cols)
{
    fg_int8_scales_rows(scale, x, rows, cols);
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (int r = 0; r < rows; r++) {
        float inv = 1.0f / scale[r];
        size_t o = (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            u[o + c] = (uint8_t)((int)clampq(code_of(x[o + c], inv)) + 128);
    }
}
