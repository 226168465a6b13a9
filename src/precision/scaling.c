/* scaling.c: DeepSeek-V3 fine-grained fp8 quantization of an fp32 matrix, one fp32
 * scale per block (1x128 tiles for activations, 128x128 blocks for weights) from the
 * block's own max |x|, and the dequantization back. Leaves out delayed (history) scaling
 * and power-of-two (ue8m0) scales: V3 trains with the online max-abs. */
#include <math.h>

#include "precision_impl.h"

static size_t ceil_div(size_t a, size_t b)
{
    return (a + b - 1) / b;
}

size_t fg_fp8_scale_count(size_t rows, size_t cols, int block_rows, int block_cols)
{
    if (block_rows < 1 || block_cols < 1)
        return 0;
    return ceil_div(rows, (size_t)block_rows) * ceil_div(cols, (size_t)block_cols);
}

static fg_status check_args(const char *fn, int block_rows, int block_cols, fg_fp8_format fmt)
{
    if (block_rows < 1)
        return fg_error(FG_ERR_INVALID, "%s: block_rows %d: must be >= 1", fn, block_rows);
    if (block_cols < 1)
        return fg_error(FG_ERR_INVALID, "%s: block_cols %d: must be >= 1", fn, block_cols);
    if (fmt != FG_FP8_E4M3 && fmt != FG_FP8_E5M2)
        return fg_error(FG_ERR_INVALID, "%s: fp8 format %d: expected FG_FP8_E4M3 or FG_FP8_E5M2", fn, (int)fmt);
    return FG_OK;
}

/* Blocks below this many elements in all are done on one thread (fork/join costs more). */
enum { PARALLEL_MIN = 1 << 15 };

fg_status fg_fp8_quantize(uint8_t *q, float *scales, const float *x, size_t rows, size_t cols, int block_rows,
                          int block_cols, fg_fp8_format fmt)
{
    fg_status st = check_args("fg_fp8_quantize", block_rows, block_cols, fmt);
    if (st != FG_OK)
        return st;
    const size_t br = (size_t)block_rows, bc = (size_t)block_cols;
    const size_t nbr = ceil_div(rows, br), nbc = ceil_div(cols, bc);
    const float fmax = fg_fp8_max(fmt);
#pragma omp parallel for collapse(2) schedule(static) if (rows * cols >= PARALLEL_MIN)
    for (size_t bi = 0; bi < nbr; bi++) {
        for (size_t bj = 0; bj < nbc; bj++) {
            const size_t r1 = bi * br + br < rows ? bi * br + br : rows;
            const size_t c1 = bj * bc + bc < cols ? bj * bc + bc : cols;
            /* amax with NaN propagating (fmaxf would drop it): a NaN must reach the codes,
             * where the loss scaler's check finds it, not be scaled away. */
            float amax = 0.0f;
            for (size_t r = bi * br; r < r1; r++)
                for (size_t c = bj * bc; c < c1; c++) {
                    float a = fabsf(x[r * cols + c]);
                    amax = (a > amax || a != a) && amax == amax ? a : amax;
                }
            /* amax / max maps the block's largest value onto the format's largest; the
             * division x / scale (not a multiply by 1/scale) is V3's act_quant, so codes
             * match its kernels. x / scale can exceed max by an ulp: the encode saturates. */
            const float scale = amax == 0.0f ? 1.0f : amax / fmax;
            scales[bi * nbc + bj] = scale;
            for (size_t r = bi * br; r < r1; r++)
                for (size_t c = bj * bc; c < c1; c++)
                    q[r * cols + c] = fp8_encode_sat(x[r * cols + c] / scale, fmt);
        }
    }
    return FG_OK;
}

fg_status fg_fp8_dequantize(float *x, const uint8_t *q, const float *scales, size_t rows, size_t cols, int block_rows,
                            int block_cols, fg_fp8_format fmt)
{
    fg_status st = check_args("fg_fp8_dequantize", block_rows, block_cols, fmt);
    if (st != FG_OK)
        return st;
    float lut[256];
    for (int c = 0; c < 256; c++)
        lut[c] = fg_fp8_to_f32((uint8_t)c, fmt);
    const size_t br = (size_t)block_rows, bc = (size_t)block_cols, nbc = ceil_div(cols, bc);
#pragma omp parallel for schedule(static) if (rows * cols >= PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *srow = scales + (r / br) * nbc;
        for (size_t c = 0; c < cols; c++)
            x[r * cols + c] = lut[q[r * cols + c]] * srow[c / bc];
    }
    return FG_OK;
}
