/* lowp.c: the model's bf16 and fp8 precisions: activations saved for backward in bf16 or
 * fp8 (DeepSeek-V3 1x128 tiles), every GEMM on bf16 operands with fp32 accumulation,
 * the head in row chunks (no fp32 logits kept), fp8 weights through 128x128 blocks.
 * fp32 stays model.c's path; docs/PRECISION.md "bf16 and fp8 training" has the design.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/precision.h"
#include "model_impl.h"

enum { HEAD_ROWS_MIN = 64, PAR_MIN = 1 << 15, ACT_ROWS = 32 };
/* Row passes over [N, C] thread from this many elements on: src/kernels' FG_PAR_MIN_ELEMS
 * (a passive fork/join costs ~0.1 ms of CPU; docs/perf/kernels.md, section 7). */
enum { PAR_ELEMS = 1 << 19 };

/* ---- layout ---- */

typedef struct carver {
    uint8_t *base; /* NULL: count only */
    size_t off;
} carver;

static void *carve(carver *c, size_t bytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 63) / 64 * 64;
    return p;
}

static size_t ntiles(size_t cols)
{
    return (cols + FG_FP8_TILE - 1) / FG_FP8_TILE;
}

/* A saved tensor [rows, cols]: bf16 when fmt < 0, else fp8 codes of format fmt. */
static void carve_saved(carver *c, model_saved *s, size_t rows, size_t cols, int fmt)
{
    memset(s, 0, sizeof *s);
    s->cols = cols;
    s->fmt = fmt < 0 ? 0 : fmt;
    if (fmt < 0) {
        s->bf = carve(c, rows * cols * sizeof(uint16_t));
        return;
    }
    s->q8 = carve(c, rows * cols);
    s->scale = carve(c, rows * ntiles(cols) * sizeof(float));
}

static int has_dense_ffn(const fg_model *m)
{
    for (int l = 0; l < m->cfg.n_layer; l++)
        if (!model_is_moe_layer(m, l))
            return 1;
    return 0;
}

static void layout(fg_model *m, model_lp *lp, carver *c)
{
    const fg_model_config *cf = &m->cfg;
    size_t N = (size_t)m->B * (size_t)m->T, C = (size_t)cf->d_model, NH = (size_t)cf->n_head;
    size_t Fin = (size_t)m->Fin, F = (size_t)m->F, Vp = (size_t)cf->padded_vocab, R = (size_t)lp->R;
    size_t NC = N * C, f = sizeof(float);
    int fp8 = cf->precision == FG_PRECISION_FP8, dense = has_dense_ffn(m);
    int af = fp8 ? lp->act_fmt : -1, gf = fp8 ? lp->grad_fmt : -1;
    /* saved */
    for (int l = 0; l < cf->n_layer; l++) {
        model_lp_layer *a = &lp->la[l];
        carve_saved(c, &a->xn1, N, C, af);
        a->mean1 = carve(c, N * f);
        a->rstd1 = carve(c, N * f);
        carve_saved(c, &a->qkv, N, 3 * C, -1); /* attention's input stays bf16 (as V3 keeps attention) */
        a->lse = carve(c, N * NH * f);
        carve_saved(c, &a->atty, N, C, af);
        carve_saved(c, &a->xn2, N, C, af);
        a->mean2 = carve(c, N * f);
        a->rstd2 = carve(c, N * f);
        if (!model_is_moe_layer(m, l))
            carve_saved(c, &a->fch, N, Fin, af);
        else
            memset(&a->fch, 0, sizeof a->fch);
    }
    carve_saved(c, &lp->xnf, N, C, af);
    lp->meanf = carve(c, N * f);
    lp->rstdf = carve(c, N * f);
    carve_saved(c, &lp->dlog, N, Vp, gf);
    lp->losses = carve(c, N * f);
    lp->saved_bytes = c->off;
    /* scratch: what both passes use, then what one pass keeps across a layer (forward:
     * the residual stream and a head chunk; backward: the residual gradient, dln and a
     * head chunk), then the attention-phase and FFN-phase buffers over each other */
    size_t W = 3 * C > Fin ? 3 * C : Fin;
    lp->ones = carve(c, C * f);
    lp->zeros = carve(c, C * f);
    lp->lnb = carve(c, NC * f);
    lp->tmp = carve(c, NC * f);
    lp->q8s = fp8 ? carve(c, N * W) : NULL;
    lp->q8sc = fp8 ? carve(c, N * ntiles(W) * f) : NULL;
    lp->wq8 = fp8 ? carve(c, (size_t)FG_FP8_TILE * lp->wcols) : NULL;
    lp->wsc = fp8 ? carve(c, ntiles(lp->wcols) * f) : NULL;
    lp->res = carve(c, NC * f); /* forward */
    c->off -= (NC * f + 63) / 64 * 64;
    lp->dres = carve(c, NC * f); /* backward */
    lp->dln = carve(c, NC * f);
    /* the phases: attention, FFN, and the head (forward logits chunk or backward fp8
     * gradient chunk), never live at once */
    size_t p0 = c->off, end = p0;
#define PHASE_END()                                                                                                    \
    do {                                                                                                               \
        end = c->off > end ? c->off : end;                                                                             \
        c->off = p0;                                                                                                   \
    } while (0)
    lp->qf = carve(c, 3 * NC * f);
    lp->attf = carve(c, NC * f);
    lp->datty = carve(c, NC * f);
    lp->dqkv = carve(c, 3 * NC * f);
    PHASE_END();
    lp->fchf = dense ? carve(c, N * Fin * f) : NULL;
    lp->actf = dense ? carve(c, N * F * f) : NULL;
    lp->dfch = dense ? carve(c, N * Fin * f) : NULL;
    lp->dfch_act = lp->actf; /* backward reads actf (as a bf16 operand) before writing dfch_act */
    PHASE_END();
    lp->hlog = carve(c, R * Vp * f);
    PHASE_END();
    lp->hbf = fp8 ? carve(c, R * Vp * sizeof(uint16_t)) : NULL;
    PHASE_END();
#undef PHASE_END
    c->off = end;
    lp->scratch_bytes = c->off - lp->saved_bytes;
}

fg_status model_lp_init(fg_model *m)
{
    if (m->cfg.precision == FG_PRECISION_FP32)
        return FG_OK;
    model_lp *lp = fg_calloc(1, sizeof *lp);
    if (!lp)
        return fg_error(FG_ERR_NOMEM, "model: cannot allocate the bf16/fp8 state");
    m->lp = lp;
    lp->la = fg_calloc((size_t)m->cfg.n_layer, sizeof *lp->la);
    if (!lp->la)
        return fg_error(FG_ERR_NOMEM, "model: cannot allocate the bf16/fp8 layer table");
    int N = m->B * m->T;
    /* head chunk: as many rows as the attention / FFN phase's scratch holds in fp32
     * logits (that memory is free while the head runs), at least 64 (a GEMM of fewer
     * rows re-reads the whole head weight too often: 2x slower at 32 rows, measured) */
    size_t C = (size_t)m->cfg.d_model, ph = 8 * C;
    if (has_dense_ffn(m) && 2 * (size_t)m->Fin + (size_t)m->F > ph)
        ph = 2 * (size_t)m->Fin + (size_t)m->F;
    size_t R = ph * (size_t)N / (size_t)m->cfg.padded_vocab / 16 * 16;
    R = R < HEAD_ROWS_MIN ? HEAD_ROWS_MIN : R;
    lp->R = (int)(R < (size_t)N ? R : (size_t)N);
    if (lp->R < N) { /* several chunks: each would repack the head weight (30% of a 64-row GEMM, measured) */
        lp->headp = fg_malloc(fg_bgemm_packed_words(m->cfg.padded_vocab, m->cfg.d_model) * sizeof(uint32_t));
        if (!lp->headp)
            return fg_error(FG_ERR_NOMEM, "model: cannot allocate the packed head weight");
    }
    lp->act_fmt = FG_FP8_E4M3;
    lp->grad_fmt = m->cfg.fp8_format == FG_FP8_RECIPE_HYBRID ? FG_FP8_E5M2 : FG_FP8_E4M3;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor_info *t = &m->tensors[i];
        if (t->ndim >= 2 && (size_t)t->shape[t->ndim - 1] > lp->wcols)
            lp->wcols = (size_t)t->shape[t->ndim - 1];
    }
    for (int k = 0; k < 2; k++)
        for (int q = 0; q < 256; q++)
            lp->lut[k][q] = fg_fp8_to_f32((uint8_t)q, (fg_fp8_format)k);
    carver c = {NULL, 0};
    layout(m, lp, &c);
    lp->mem = fg_calloc(c.off, 1);
    if (!lp->mem)
        return fg_error(FG_ERR_NOMEM, "model: cannot allocate %zu bytes of bf16/fp8 activations", c.off);
    carver c2 = {lp->mem, 0};
    layout(m, lp, &c2);
    for (int i = 0; i < m->cfg.d_model; i++)
        lp->ones[i] = 1.0f;
    return FG_OK;
}

void model_lp_free(fg_model *m)
{
    if (!m->lp)
        return;
    fg_free(m->lp->mem);
    fg_free(m->lp->headp);
    fg_free(m->lp->la);
    fg_free(m->lp);
    m->lp = NULL;
}

/* ---- conversions ---- */

/* bf16 round to nearest even of a finite or infinite value (NaN stays NaN, quiet). */
static inline uint16_t bf16_rne(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* The fp32 value of a bf16 (exact). */
static inline float bf16_widen(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* out = bf16(decode(q) * scale of its block), blocks of block_rows x 128: the fp8 value
 * handed to a bf16 GEMM (one more rounding: an e4m3 / e5m2 code times an fp32 scale). */
static void deq_bf16(const model_lp *lp, uint16_t *out, const uint8_t *q, const float *sc, size_t rows, size_t cols,
                     size_t block_rows, int fmt)
{
    const float *lut = lp->lut[fmt];
    size_t nbc = ntiles(cols);
    FG_ROWS_FOR(rows * cols >= PAR_MIN, size_t, r, 0, rows, {
        const float *s = sc + (r / block_rows) * nbc;
        const uint8_t *qr = q + r * cols;
        uint16_t *o = out + r * cols;
        for (size_t c = 0; c < cols; c++)
            o[c] = bf16_rne(lut[qr[c]] * s[c / FG_FP8_TILE]);
    });
}

/* Saves rows [r0, r0+rows) of s from x[rows, s->cols]. */
static void store(const model_saved *s, size_t r0, const float *x, size_t rows)
{
    size_t cols = s->cols;
    if (s->bf) {
        fg_cvt_f32_bf16(s->bf + r0 * cols, x, rows * cols);
        return;
    }
    fg_status st = fg_fp8_quantize(s->q8 + r0 * cols, s->scale + r0 * ntiles(cols), x, rows, cols, 1, FG_FP8_TILE,
                                   (fg_fp8_format)s->fmt);
    FG_ASSERT(st == FG_OK);
}

/* bf16 rows [r0, r0+rows) of s: the saved values themselves (bf16), or decoded into scratch (fp8). */
static const uint16_t *view_bf16(const model_lp *lp, const model_saved *s, size_t r0, size_t rows, uint16_t *scratch)
{
    size_t cols = s->cols;
    if (s->bf)
        return s->bf + r0 * cols;
    deq_bf16(lp, scratch, s->q8 + r0 * cols, s->scale + r0 * ntiles(cols), rows, cols, 1, s->fmt);
    return scratch;
}

/* The first rows of s decoded to fp32 (exact for bf16 and for code * scale). */
static void load_f32(const model_saved *s, float *out, size_t rows)
{
    if (s->bf) {
        fg_cvt_bf16_f32(out, s->bf, rows * s->cols);
        return;
    }
    fg_status st = fg_fp8_dequantize(out, s->q8, s->scale, rows, s->cols, 1, FG_FP8_TILE, (fg_fp8_format)s->fmt);
    FG_ASSERT(st == FG_OK);
}

/* A transient GEMM operand x[rows, cols] as bf16: rounded (bf16), or through fp8 codes of
 * format fmt in 1x128 tiles and back (fp8), so the product sees what fp8 storage keeps. */
static void operand_bf16(const fg_model *m, uint16_t *out, const float *x, size_t rows, size_t cols, int fmt)
{
    const model_lp *lp = m->lp;
    if (m->cfg.precision != FG_PRECISION_FP8) {
        fg_cvt_f32_bf16(out, x, rows * cols);
        return;
    }
    fg_status st = fg_fp8_quantize(lp->q8s, lp->q8sc, x, rows, cols, 1, FG_FP8_TILE, (fg_fp8_format)fmt);
    FG_ASSERT(st == FG_OK);
    deq_bf16(lp, out, lp->q8s, lp->q8sc, rows, cols, 1, fmt);
}

void model_lp_refresh_weights(fg_model *m)
{
    if (m->cfg.precision != FG_PRECISION_FP8) {
        fg_cvt_f32_bf16(m->wbf, m->params, m->n_params);
        return;
    }
    /* fp8 weights: every matrix (a 3-D tensor: each [shape1, shape2] slice, one expert)
     * through e4m3 codes in 128x128 blocks and back to the bf16 copy the GEMMs read;
     * vectors (norms, biases) and frozen state are only rounded to bf16 (no GEMM reads them) */
    model_lp *lp = m->lp;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor_info *t = &m->tensors[i];
        const float *p = m->params + t->offset;
        uint16_t *w = m->wbf + t->offset;
        if (t->ndim < 2 || t->frozen || t->numel == 0) {
            fg_cvt_f32_bf16(w, p, t->numel);
            continue;
        }
        size_t cols = (size_t)t->shape[t->ndim - 1], rows = t->numel / cols;
        size_t slice = t->ndim == 3 ? (size_t)t->shape[1] : rows;
        for (size_t s0 = 0; s0 < rows; s0 += slice)
            for (size_t r0 = s0; r0 < s0 + slice; r0 += FG_FP8_TILE) {
                size_t nr = s0 + slice - r0 < FG_FP8_TILE ? s0 + slice - r0 : FG_FP8_TILE;
                fg_status st =
                    fg_fp8_quantize(lp->wq8, lp->wsc, p + r0 * cols, nr, cols, FG_FP8_TILE, FG_FP8_TILE, FG_FP8_E4M3);
                FG_ASSERT(st == FG_OK);
                deq_bf16(lp, w + r0 * cols, lp->wq8, lp->wsc, nr, cols, FG_FP8_TILE, FG_FP8_E4M3);
            }
    }
}

/* ---- layers ---- */

/* out = x-hat * w + b from the saved x-hat (b NULL: RMSNorm): the norm's output as
 * forward hands it to the next GEMM and backward rebuilds it, identically. */
static void norm_out(const fg_model *m, float *out, const model_saved *xn, const float *w, const float *b, int N)
{
    size_t C = (size_t)m->cfg.d_model;
    if (xn->bf) { /* one pass: widened, multiplied and added in registers (the same bits) */
        fg_bf16_affine(NULL, out, xn->bf, w, b, N, (int)C);
        return;
    }
    load_f32(xn, out, (size_t)N);
    FG_ROWS_FOR((size_t)N * C >= PAR_ELEMS, int, n, 0, N, {
        float *o = out + (size_t)n * C;
        for (size_t c = 0; c < C; c++)
            o[c] = o[c] * w[c] + (b ? b[c] : 0.0f);
    });
}

/* norm_out rounded to bf16 into xb, the next GEMM's operand: from a bf16 x-hat in one
 * pass (fg_bf16_affine: no fp32 copy written and read back), from fp8 through lnb. */
static void norm_out_bf16(const fg_model *m, uint16_t *xb, const model_saved *xn, const float *w, const float *b, int N)
{
    size_t C = (size_t)m->cfg.d_model;
    if (xn->bf) {
        fg_bf16_affine(xb, NULL, xn->bf, w, b, N, (int)C);
        return;
    }
    norm_out(m, m->lp->lnb, xn, w, b, N);
    fg_cvt_f32_bf16(xb, m->lp->lnb, (size_t)N * C);
}

/* The norm's input rebuilt from the saved x-hat: x-hat / rstd + mean (mean 0: RMSNorm).
 * The norm's backward recomputes (inp - mean) * rstd from it, which is x-hat again. */
static void norm_inp(const fg_model *m, float *out, const model_saved *xn, const float *mean, const float *rstd, int N)
{
    size_t C = (size_t)m->cfg.d_model;
    int ln = m->cfg.layout == FG_LAYOUT_GPT2;
    if (xn->bf) { /* one pass from the bf16 x-hat: no fp32 copy written and read back */
        const uint16_t *x = xn->bf;
        FG_ROWS_FOR((size_t)N * C >= PAR_ELEMS, int, n, 0, N, {
            float *o = out + (size_t)n * C, r = 1.0f / rstd[n], mu = ln ? mean[n] : 0.0f;
            const uint16_t *xr = x + (size_t)n * C;
            for (size_t c = 0; c < C; c++)
                o[c] = bf16_widen(xr[c]) * r + mu;
        });
        return;
    }
    load_f32(xn, out, (size_t)N);
    FG_ROWS_FOR((size_t)N * C >= PAR_ELEMS, int, n, 0, N, {
        float *o = out + (size_t)n * C, r = 1.0f / rstd[n], mu = ln ? mean[n] : 0.0f;
        for (size_t c = 0; c < C; c++)
            o[c] = o[c] * r + mu;
    });
}

/* A fused bf16 op gives its two-pass route's bits only in the variant of that route's op
 * (the same name: FG_HW_DISABLE=avx512 picks avx2 for the fp32 op, where the fused one
 * has only ref): otherwise the two passes run. */
static int fused_ok(const char *fused, const char *op)
{
    return !strcmp(fg_kernels_variant(fused), fg_kernels_variant(op));
}

/* Norm backward into dres from the saved x-hat: RMSNorm on a bf16 x-hat in one kernel
 * that rebuilds the input in registers (rmsnorm_backward_bf16: the same bits), else the
 * input rebuilt into lp->tmp (norm_inp) and the fp32 backward. */
static void norm_bwd(fg_model *m, const model_saved *xn, const float *mean, const float *rstd, size_t wo, size_t bo,
                     int N)
{
    model_lp *lp = m->lp;
    if (xn->bf && m->cfg.layout == FG_LAYOUT_LLAMA && fused_ok("rmsnorm_backward_bf16", "rmsnorm_backward")) {
        fg_rmsnorm_backward_bf16(lp->dres, model_g(m, wo), lp->dln, xn->bf, model_p(m, wo), rstd, N, m->cfg.d_model);
        return;
    }
    norm_inp(m, lp->tmp, xn, mean, rstd, N);
    model_norm_backward(m, lp->dres, model_g(m, wo), model_g(m, bo), lp->dln, lp->tmp, model_p(m, wo), mean, rstd, N);
}

/* Norm forward: saves x-hat, mean, rstd and leaves the output (from the saved x-hat) in
 * xb as bf16 when xb is given, else in lp->lnb (fp32, for the MoE FFN). */
static void norm_fwd(fg_model *m, model_saved *xn, float *mean, float *rstd, const float *inp, const float *w,
                     const float *b, int N, uint16_t *xb)
{
    model_lp *lp = m->lp;
    if (xb && xn->bf && m->cfg.layout == FG_LAYOUT_GPT2 && fused_ok("layernorm_forward_bf16", "layernorm_forward")) {
        /* one pass: the fp32 x-hat is not written to lnb, read, rounded and read again */
        fg_layernorm_forward_bf16(xn->bf, xb, mean, rstd, inp, w, b, N, m->cfg.d_model, m->cfg.norm_eps);
        return;
    }
    if (xn->bf && !b && m->cfg.layout == FG_LAYOUT_LLAMA && fused_ok("rmsnorm_forward_bf16", "rmsnorm_forward")) {
        /* one pass: x-hat rounded and the output (bf16 operand, or fp32 for the MoE FFN) */
        fg_rmsnorm_forward_bf16(xn->bf, xb, xb ? NULL : lp->lnb, rstd, inp, w, N, m->cfg.d_model, m->cfg.norm_eps);
        return;
    }
    /* weight 1, bias 0: the kernel's output is x-hat itself */
    model_norm_forward(m, lp->lnb, mean, rstd, inp, lp->ones, lp->zeros, N);
    store(xn, 0, lp->lnb, (size_t)N);
    if (xb)
        norm_out_bf16(m, xb, xn, w, b, N);
    else
        norm_out(m, lp->lnb, xn, w, b, N);
}

/* out[N,OC] = xb[N,C] @ W^T + bias with W the bf16 copy of the parameter at woff. */
static void lin_fwd(const fg_model *m, float *out, const uint16_t *xb, size_t woff, size_t boff, int N, int C, int OC)
{
    const float *bias = model_p(m, boff);
    float beta = 0.0f;
    if (bias) {
        FG_ROWS_FOR((size_t)N * OC >= PAR_ELEMS, int, n, 0, N,
                    { memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float)); });
        beta = 1.0f;
    }
    fg_bgemm(0, 1, N, OC, C, 1.0f, xb, C, m->wbf + woff, C, beta, out, OC);
}

/* Backward of lin_fwd from the bf16 output gradient dob (dout its fp32 original, for the
 * bias): dinp = dob @ W (set, not accumulated), dW += dob^T @ xb, dbias += colsum(dout). */
static void lin_bwd(fg_model *m, float *dinp, const uint16_t *dob, const float *dout, const uint16_t *xb, size_t woff,
                    size_t boff, int N, int C, int OC)
{
    fg_bgemm(0, 0, N, C, OC, 1.0f, dob, OC, m->wbf + woff, C, 0.0f, dinp, C);
    fg_bgemm(1, 0, OC, C, N, 1.0f, dob, OC, xb, C, 1.0f, m->grads + woff, C);
    if (boff != FG_NO_TENSOR)
        fg_colsum_add(m->grads + boff, dout, N, OC); /* each column in row order, as before */
}

static void act_fwd(const fg_model *m, float *out, const float *inp, int N)
{
    if (m->cfg.layout == FG_LAYOUT_GPT2)
        fg_gelu_forward(out, inp, (size_t)N * (size_t)m->F);
    else
        fg_swiglu_forward(out, inp, N, m->F);
}

/* xb[N,F] = bf16(act(fch)) for a bf16 model, from the saved fch: per block of ACT_ROWS
 * rows, fch's fp32 rows (forward: rounded to the saved bf16 first, as backward will see
 * them; backward: widened from it) go through the activation into a per-thread block
 * of actf that stays in L2 and are rounded from there. The separate passes wrote and
 * read back N Fin and N F fp32 values (18 bytes per value of traffic, 8 now); the
 * results are the same bits. fchf holds the widened fch afterwards when keep (the
 * two-pass GELU / SwiGLU backward reads it; the fused one reads the bf16 fch), else only
 * per-thread blocks of it are used, like actf's. */
static void act_bf16(fg_model *m, model_lp_layer *a, uint16_t *xb, int N, int save, int keep)
{
    model_lp *lp = m->lp;
    size_t F = (size_t)m->F, Fin = (size_t)m->Fin;
    int nb = (N + ACT_ROWS - 1) / ACT_ROWS, own = omp_get_max_threads() * ACT_ROWS > N;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nb; blk++) {
        size_t r0 = (size_t)blk * ACT_ROWS, nr = (size_t)N - r0 < ACT_ROWS ? (size_t)N - r0 : ACT_ROWS;
        size_t blk0 = own ? r0 : (size_t)omp_get_thread_num() * ACT_ROWS;
        float *f = lp->fchf + (save || keep ? r0 : blk0) * Fin, *t = lp->actf + blk0 * F;
        if (save)
            fg_cvt_f32_bf16(a->fch.bf + r0 * Fin, f, nr * Fin);
        fg_cvt_bf16_f32(f, a->fch.bf + r0 * Fin, nr * Fin);
        act_fwd(m, t, f, (int)nr);
        fg_cvt_f32_bf16(xb + r0 * F, t, nr * F);
    }
}

/* ---- forward / backward ---- */

/* Whether attention takes the bf16 kernel (products on vdpbf16ps, no widening pass):
 * wherever dispatch chose a fast variant of it. Its reference (scalar, doubles) exists
 * to test that kernel against, so a CPU without one (or --kernels=ref) keeps the route
 * it had: qkv widened to fp32 for the fp32 attention, whose results and speed stay
 * those measured before the bf16 kernel (docs/KERNELS.md "bf16 attention"). */
static int attn_bf16(void)
{
    return strcmp(fg_kernels_variant("attention_bf16"), "ref") != 0;
}

fg_status model_lp_forward(fg_model *m, const int32_t *targets, int B, int T, float *loss)
{
    const fg_model_config *c = &m->cfg;
    model_lp *lp = m->lp;
    int N = B * T, C = c->d_model, V = c->vocab_size, Vp = c->padded_vocab, NH = c->n_head;
    size_t NC = (size_t)N * C;
    uint16_t *xb = m->xbf;
    MODEL_PROF(m, OP_EMBED, fg_embedding_forward(lp->res, m->inputs, m->params + m->wte, model_p(m, m->wpe), N, T, C));
    for (int l = 0; l < c->n_layer; l++) {
        const model_layer_off *o = &m->layer[l];
        model_lp_layer *a = &lp->la[l];
        MODEL_PROF(m, OP_NORM,
                   norm_fwd(m, &a->xn1, a->mean1, a->rstd1, lp->res, model_p(m, o->ln1w), model_p(m, o->ln1b), N, xb));
        MODEL_PROF(m, OP_QKV, lin_fwd(m, lp->qf, xb, o->qkvw, o->qkvb, N, C, 3 * C));
        if (c->layout == FG_LAYOUT_LLAMA) {
            MODEL_PROF(m, OP_ROPE, fg_rope_forward(lp->qf, B, T, NH, m->HS, 3 * C, 0, c->rope_theta));
            MODEL_PROF(m, OP_ROPE, fg_rope_forward(lp->qf + C, B, T, NH, m->HS, 3 * C, 0, c->rope_theta));
        }
        /* attention runs on the saved (bf16) qkv, so its lse matches what backward sees:
         * read in place by the bf16 kernel, else widened for the fp32 one (attn_bf16) */
        if (attn_bf16())
            MODEL_PROF(m, OP_ATTN, store(&a->qkv, 0, lp->qf, (size_t)N);
                       fg_attention_bf16_forward(lp->attf, a->lse, a->qkv.bf, B, T, C, NH));
        else
            MODEL_PROF(m, OP_ATTN, store(&a->qkv, 0, lp->qf, (size_t)N); load_f32(&a->qkv, lp->qf, (size_t)N);
                       fg_attention_forward(lp->attf, a->lse, lp->qf, B, T, C, NH));
        MODEL_PROF(m, OP_ATTPROJ, store(&a->atty, 0, lp->attf, (size_t)N);
                   lin_fwd(m, lp->tmp, view_bf16(lp, &a->atty, 0, (size_t)N, xb), o->attprojw, o->attprojb, N, C, C));
        MODEL_PROF(m, OP_RESID, fg_add(lp->res, lp->res, lp->tmp, NC));
        int moe = model_is_moe_layer(m, l);
        MODEL_PROF(m, OP_NORM,
                   norm_fwd(m, &a->xn2, a->mean2, a->rstd2, lp->res, model_p(m, o->ln2w), model_p(m, o->ln2b), N,
                            moe ? NULL : xb));
        if (moe) {
            model_moe_ffn_forward(m, l, lp->tmp, lp->lnb, N);
        } else {
            MODEL_PROF(m, OP_FC, lin_fwd(m, lp->fchf, xb, o->fcw, o->fcb, N, C, m->Fin));
            /* the activation runs on the saved fch, as backward recomputes it */
            if (a->fch.bf) {
                MODEL_PROF(m, OP_ACT, act_bf16(m, a, xb, N, 1, 1));
            } else {
                MODEL_PROF(m, OP_ACT, store(&a->fch, 0, lp->fchf, (size_t)N); load_f32(&a->fch, lp->fchf, (size_t)N);
                           act_fwd(m, lp->actf, lp->fchf, N);
                           operand_bf16(m, xb, lp->actf, (size_t)N, (size_t)m->F, lp->act_fmt));
            }
            MODEL_PROF(m, OP_FCPROJ, lin_fwd(m, lp->tmp, xb, o->fcprojw, o->fcprojb, N, m->F, C));
        }
        MODEL_PROF(m, OP_RESID, fg_add(lp->res, lp->res, lp->tmp, NC));
    }
    MODEL_PROF(m, OP_NORM,
               norm_fwd(m, &lp->xnf, lp->meanf, lp->rstdf, lp->res, model_p(m, m->lnfw), model_p(m, m->lnfb), N, xb));
    if (!targets) { /* no logits are kept at this precision: nothing to compute */
        if (loss)
            *loss = 0.0f;
        return FG_OK;
    }
    /* head in chunks of R rows: logits of a chunk (fp32) -> losses and softmax - onehot
     * (loss scale 1: backward's GEMMs take the scale as alpha) -> saved in bf16 / fp8 */
    double sum = 0.0;
    /* several chunks: the head weight packed once (the optimiser may have written wbf
     * since the last forward, so every forward packs) */
    const uint32_t *hp = N > lp->R ? lp->headp : NULL;
    if (hp)
        MODEL_PROF(m, OP_HEAD, fg_bgemm_pack_b(lp->headp, 1, Vp, C, m->wbf + m->head, C));
    for (int r0 = 0; r0 < N; r0 += lp->R) {
        int nr = N - r0 < lp->R ? N - r0 : lp->R;
        const uint16_t *xr = xb + (size_t)r0 * C;
        if (hp)
            MODEL_PROF(m, OP_HEAD, fg_bgemm_packed(0, nr, Vp, C, 1.0f, xr, C, hp, 0.0f, lp->hlog, Vp));
        else
            MODEL_PROF(m, OP_HEAD, fg_bgemm(0, 1, nr, Vp, C, 1.0f, xr, C, m->wbf + m->head, C, 0.0f, lp->hlog, Vp));
        /* bf16: the gradient rounded row by row as xent makes it (the same bits as the
         * fp32 pass then the conversion, without the chunk's fp32 gradient written to
         * memory and read back); fp8: the fp32 chunk, then its tiles */
        if (lp->dlog.bf)
            MODEL_PROF(m, OP_XENT,
                       sum += fg_softmax_xent_bf16(lp->dlog.bf + (size_t)r0 * Vp, lp->losses + r0, lp->hlog,
                                                   m->targets + r0, nr, V, Vp, 1.0f));
        else
            MODEL_PROF(m, OP_XENT,
                       sum += fg_softmax_xent(lp->hlog, lp->losses + r0, lp->hlog, m->targets + r0, nr, V, Vp, 1.0f);
                       store(&lp->dlog, (size_t)r0, lp->hlog, (size_t)nr));
    }
    float lv = m->n_counted > 0 ? (float)(sum / m->n_counted) : 0.0f;
    lv += model_moe_aux_loss(m);
    if (!isfinite(lv))
        return fg_error(FG_ERR_NUMERIC, "fg_model_forward: loss is %g", (double)lv);
    if (loss)
        *loss = lv;
    return FG_OK;
}

fg_status model_lp_backward(fg_model *m, float loss_scale)
{
    const fg_model_config *c = &m->cfg;
    model_lp *lp = m->lp;
    int B = m->cur_B, T = m->cur_T, N = B * T, C = c->d_model, Vp = c->padded_vocab, NH = c->n_head;
    int F = m->F, Fin = m->Fin, gf = lp->grad_fmt;
    size_t NC = (size_t)N * C;
    uint16_t *xb = m->xbf, *db = m->dbf;
    m->moe_loss_scale = loss_scale;
    /* head: dlog holds softmax - onehot; d(loss)/d(logits) is that times loss_scale / n_counted */
    float alpha = loss_scale / (float)m->n_counted;
    MODEL_PROF(m, OP_HEAD, norm_out_bf16(m, xb, &lp->xnf, model_p(m, m->lnfw), model_p(m, m->lnfb), N));
    int R = lp->dlog.bf ? N : lp->R; /* bf16 rows are read in place; fp8 ones decoded per chunk */
    for (int r0 = 0; r0 < N; r0 += R) {
        int nr = N - r0 < R ? N - r0 : R;
        MODEL_PROF(m, OP_HEAD, const uint16_t *dl = view_bf16(lp, &lp->dlog, (size_t)r0, (size_t)nr, lp->hbf);
                   fg_bgemm(0, 0, nr, C, Vp, alpha, dl, Vp, m->wbf + m->head, C, 0.0f, lp->dln + (size_t)r0 * C, C);
                   fg_bgemm(1, 0, Vp, C, nr, alpha, dl, Vp, xb + (size_t)r0 * C, C, 1.0f, m->grads + m->head, C));
    }
    MODEL_PROF(m, OP_ZERO, memset(lp->dres, 0, NC * sizeof(float)));
    MODEL_PROF(m, OP_NORM, norm_bwd(m, &lp->xnf, lp->meanf, lp->rstdf, m->lnfw, m->lnfb, N));

    /* lp->dres: d(loss)/d(the residual after layer l), turned into that of its input */
    for (int l = c->n_layer - 1; l >= 0; l--) {
        const model_layer_off *o = &m->layer[l];
        model_lp_layer *a = &lp->la[l];
        if (model_is_moe_layer(m, l)) {
            norm_out(m, lp->lnb, &a->xn2, model_p(m, o->ln2w), model_p(m, o->ln2b), N);
            memset(lp->dln, 0, NC * sizeof(float));
            model_moe_ffn_backward(m, l, lp->dln, lp->dres, lp->lnb, N);
        } else {
            /* out = act @ fcprojw^T + b, act recomputed from the saved fch */
            int fused = c->layout == FG_LAYOUT_GPT2 && a->fch.bf && fused_ok("gelu_backward_bf16", "gelu_backward");
            if (a->fch.bf) {
                MODEL_PROF(m, OP_ACT, act_bf16(m, a, xb, N, 0, !fused));
            } else {
                MODEL_PROF(m, OP_ACT, load_f32(&a->fch, lp->fchf, (size_t)N); act_fwd(m, lp->actf, lp->fchf, N);
                           operand_bf16(m, xb, lp->actf, (size_t)N, (size_t)F, lp->act_fmt));
            }
            MODEL_PROF(m, OP_FCPROJ, operand_bf16(m, db, lp->dres, (size_t)N, (size_t)C, gf);
                       lin_bwd(m, lp->dfch_act, db, lp->dres, xb, o->fcprojw, o->fcprojb, N, F, C));
            /* bf16 GELU: dfch (fp32, for the bias) and its bf16 GEMM operand in one pass
             * from the saved fch, no zeroing and no conversion pass after */
            if (fused) {
                MODEL_PROF(m, OP_ACT,
                           fg_gelu_backward_bf16(db, lp->dfch, lp->dfch_act, a->fch.bf, (size_t)N * (size_t)F));
            } else {
                MODEL_PROF(m, OP_ACT, memset(lp->dfch, 0, (size_t)N * Fin * sizeof(float)));
                if (c->layout == FG_LAYOUT_GPT2)
                    MODEL_PROF(m, OP_ACT, fg_gelu_backward(lp->dfch, lp->dfch_act, lp->fchf, (size_t)N * F));
                else
                    MODEL_PROF(m, OP_ACT, fg_swiglu_backward(lp->dfch, lp->dfch_act, lp->fchf, N, F));
            }
            /* fch = ln2 @ fcw^T + b */
            MODEL_PROF(m, OP_FC, norm_out_bf16(m, xb, &a->xn2, model_p(m, o->ln2w), model_p(m, o->ln2b), N);
                       if (!fused) operand_bf16(m, db, lp->dfch, (size_t)N, (size_t)Fin, gf);
                       lin_bwd(m, lp->dln, db, lp->dfch, xb, o->fcw, o->fcb, N, C, Fin));
        }
        MODEL_PROF(m, OP_NORM, norm_bwd(m, &a->xn2, a->mean2, a->rstd2, o->ln2w, o->ln2b, N));
        /* res2 = res + atty @ attprojw^T + b */
        MODEL_PROF(m, OP_ATTPROJ, operand_bf16(m, db, lp->dres, (size_t)N, (size_t)C, gf);
                   lin_bwd(m, lp->datty, db, lp->dres, view_bf16(lp, &a->atty, 0, (size_t)N, xb), o->attprojw,
                           o->attprojb, N, C, C));
        /* atty = attention(qkv): the bf16 kernel reads qkv in place, the fp32 one widened;
         * both take atty widened (D = dout . out, fp32) */
        if (attn_bf16())
            MODEL_PROF(m, OP_ATTN, load_f32(&a->atty, lp->attf, (size_t)N); memset(lp->dqkv, 0, 3 * NC * sizeof(float));
                       fg_attention_bf16_backward(lp->dqkv, lp->datty, a->qkv.bf, lp->attf, a->lse, B, T, C, NH));
        else
            MODEL_PROF(m, OP_ATTN, load_f32(&a->qkv, lp->qf, (size_t)N); load_f32(&a->atty, lp->attf, (size_t)N);
                       memset(lp->dqkv, 0, 3 * NC * sizeof(float));
                       fg_attention_backward(lp->dqkv, lp->datty, lp->qf, lp->attf, a->lse, B, T, C, NH));
        if (c->layout == FG_LAYOUT_LLAMA) {
            MODEL_PROF(m, OP_ROPE, fg_rope_backward(lp->dqkv, B, T, NH, m->HS, 3 * C, 0, c->rope_theta));
            MODEL_PROF(m, OP_ROPE, fg_rope_backward(lp->dqkv + C, B, T, NH, m->HS, 3 * C, 0, c->rope_theta));
        }
        /* qkv = ln1 @ qkvw^T + b; ln1 = norm(res) */
        MODEL_PROF(m, OP_QKV, norm_out_bf16(m, xb, &a->xn1, model_p(m, o->ln1w), model_p(m, o->ln1b), N);
                   operand_bf16(m, db, lp->dqkv, (size_t)N, 3 * (size_t)C, gf);
                   lin_bwd(m, lp->dln, db, lp->dqkv, xb, o->qkvw, o->qkvb, N, C, 3 * C));
        MODEL_PROF(m, OP_NORM, norm_bwd(m, &a->xn1, a->mean1, a->rstd1, o->ln1w, o->ln1b, N));
    }
    MODEL_PROF(m, OP_EMBED, fg_embedding_backward(m->grads + m->wte, model_g(m, m->wpe), lp->dres, m->inputs, N, T, C));
    return FG_OK;
}
