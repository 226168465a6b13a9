/* int8.c: int8 inference weights: quantizing a model's linear layers into the int8 weights
 * file (codes + per-channel fp32 scales, docs/FORMATS.md), loading and checking it, and
 * the int8 forward of those layers (per-token dynamic activation codes) on weights packed
 * at load for fg_gemm_u8s8_packed, whose store dequantizes; for prompts the norm or
 * SwiGLU, the codes and the residual add are fused around the GEMM. */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/precision.h"
#include "model_impl.h"

#define I8_MAGIC "FGINT8v1"
#define I8_VERSION 1u
#define I8_NAME 64
/* activation rows quantized and multiplied at once when the scratch cannot grow to a
 * call's rows */
enum { I8_ROWS = 64 };

typedef struct i8_tensor {
    size_t off;       /* the fp32 weight's offset in m->params: the layer is found by it */
    int rows, cols;   /* a routed experts' [E, R, cols] tensor is E*R rows: row r0 + j of
                         expert e's matrix is row e*R + j, each with its own scale */
    float *scale;     /* [rows] */
    int32_t *comp;    /* [rows] 128 * sum_c q[r, c] (q: the codes): the u8 shift of the activations */
    int seg;          /* rows of one matrix (an expert's R, else rows): packed per matrix */
    uint32_t *packed; /* the codes: fg_gemm_u8s8_pack_b of each matrix, fg_gemm_u8s8_packed_words(seg, cols)
                         apart (the only copy: no row-major one is kept) */
} i8_tensor;

struct model_int8 {
    int n;
    int experts; /* a MoE expert tensor is among them */
    i8_tensor *t;
    uint8_t *u; /* [I8_ROWS x max cols] activation codes + 128 */
    float *as;  /* [I8_ROWS] their scales */
    int max_c;
    int cap;     /* rows the packed path's scratch holds (grown on demand) */
    uint8_t *pu; /* [cap x max cols] activation codes + 128 */
    float *pas;  /* [cap] their scales */
};

/* FNV-1a, 64 bits: a checksum against truncation and flipped bytes (not an adversary). */
static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void free_state(struct model_int8 *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        fg_free(s->t[i].scale);
        fg_free(s->t[i].comp);
        fg_free(s->t[i].packed);
    }
    fg_free(s->t);
    fg_free(s->u);
    fg_free(s->as);
    fg_free(s->pu);
    fg_free(s->pas);
    fg_free(s);
}

int model_int8_covers_experts(const fg_model *m)
{
    return m->i8 && m->i8->experts;
}

void model_int8_free(fg_model *m)
{
    free_state(m->i8);
    m->i8 = NULL;
}

/* The tensors a layer list covers, in table order. */
static int covered(const fg_model *m, unsigned kinds, const fg_tensor_info **out)
{
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor_info *t = &m->tensors[i];
        int l, k = t->ndim == 2 || t->ndim == 3 ? model_linear_kind(m, m->params + t->offset, &l) : -1;
        if (k >= 0 && (kinds & (1u << k))) {
            if (out)
                out[n] = t;
            n++;
        }
    }
    return n;
}

fg_status fg_model_int8_save(const fg_model *m, const char *layers, const char *path)
{
    unsigned kinds;
    fg_status st = model_qat_parse_layers(layers && layers[0] ? layers : "all", &kinds);
    if (st != FG_OK)
        return st;
    int n = covered(m, kinds, NULL);
    if (!n)
        return fg_error(FG_ERR_INVALID, "%s: no linear layer of this model matches '%s'", path, layers);
    const fg_tensor_info **ts = fg_malloc((size_t)n * sizeof *ts);
    if (!ts)
        return FG_ERR_NOMEM;
    covered(m, kinds, ts);
    size_t bytes = 8 + 4 + 4 + 8 + 8;
    for (int i = 0; i < n; i++)
        bytes += I8_NAME + 8 + ts[i]->numel / (size_t)ts[i]->shape[ts[i]->ndim - 1] * 4 + ts[i]->numel;
    unsigned char *buf = fg_malloc(bytes), *p = buf;
    if (!buf) {
        fg_free(ts);
        return FG_ERR_NOMEM;
    }
    uint32_t ver = I8_VERSION, nt = (uint32_t)n;
    uint64_t np = m->n_params;
    memcpy(p, I8_MAGIC, 8);
    memcpy(p + 8, &ver, 4);
    memcpy(p + 12, &nt, 4);
    memcpy(p + 16, &np, 8);
    p += 24;
    for (int i = 0; i < n; i++) {
        const fg_tensor_info *t = ts[i];
        uint32_t cols = (uint32_t)t->shape[t->ndim - 1], rows = (uint32_t)(t->numel / cols);
        memset(p, 0, I8_NAME);
        memcpy(p, t->name, strnlen(t->name, I8_NAME - 1));
        memcpy(p + I8_NAME, &rows, 4);
        memcpy(p + I8_NAME + 4, &cols, 4);
        p += I8_NAME + 8;
        float *sc = fg_malloc(rows * sizeof(float));
        if (!sc) {
            fg_free(buf);
            fg_free(ts);
            return FG_ERR_NOMEM;
        }
        model_qat_weight_scales(m, t->offset, sc, (int)rows); /* max rule, or LSQ's learned steps */
        memcpy(p, sc, rows * sizeof(float));
        p += (size_t)rows * 4;
        fg_int8_quantize_rows((int8_t *)p, m->params + t->offset, sc, 1, (int)rows, (int)cols);
        p += (size_t)rows * cols;
        fg_free(sc);
    }
    uint64_t h = fnv1a(buf, (size_t)(p - buf));
    memcpy(p, &h, 8);
    st = fg_file_commit(path, buf, bytes);
    fg_free(buf);
    fg_free(ts);
    return st;
}

static const fg_tensor_info *find_tensor(const fg_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

fg_status fg_model_int8_load(fg_model *m, const char *path)
{
    char *data = NULL;
    size_t len = 0;
    fg_status st = fg_read_file(path, (size_t)1 << 40, &data, &len);
    if (st != FG_OK)
        return st;
    const unsigned char *b = (const unsigned char *)data;
    struct model_int8 *s = NULL;
    uint32_t ver = 0, nt = 0;
    uint64_t np = 0, h = 0;
    if (len < 32 || memcmp(b, I8_MAGIC, 8)) {
        st = fg_error(FG_ERR_FORMAT, "%s: not an int8 weights file (magic '%s' expected at byte 0)", path, I8_MAGIC);
        goto fail;
    }
    memcpy(&ver, b + 8, 4);
    memcpy(&nt, b + 12, 4);
    memcpy(&np, b + 16, 8);
    memcpy(&h, b + len - 8, 8);
    if (ver != I8_VERSION) {
        st = fg_error(FG_ERR_UNSUPPORTED, "%s: int8 weights version %u at byte 8 (this build reads %u)", path, ver,
                      I8_VERSION);
        goto fail;
    }
    if (fnv1a(b, len - 8) != h) {
        st = fg_error(FG_ERR_CORRUPT, "%s: checksum mismatch (bytes 0..%zu): truncated or corrupted", path, len - 8);
        goto fail;
    }
    if (np != m->n_params) {
        st = fg_error(FG_ERR_INVALID, "%s: made from a model of %llu parameters, this one has %zu (byte 16)", path,
                      (unsigned long long)np, m->n_params);
        goto fail;
    }
    s = fg_calloc(1, sizeof *s);
    if (!s || !(s->t = fg_calloc(nt ? nt : 1, sizeof *s->t))) {
        st = FG_ERR_NOMEM;
        goto fail;
    }
    size_t pos = 24, max_c = 0;
    for (uint32_t i = 0; i < nt; i++) {
        char name[I8_NAME + 1] = {0};
        uint32_t rows, cols;
        if (pos + I8_NAME + 8 > len - 8) {
            st = fg_error(FG_ERR_FORMAT, "%s: tensor %u header past the end at byte %zu", path, i, pos);
            goto fail;
        }
        memcpy(name, b + pos, I8_NAME);
        memcpy(&rows, b + pos + I8_NAME, 4);
        memcpy(&cols, b + pos + I8_NAME + 4, 4);
        pos += I8_NAME + 8;
        const fg_tensor_info *t = find_tensor(m, name);
        int l;
        if (!t || (t->ndim != 2 && t->ndim != 3) || model_linear_kind(m, m->params + t->offset, &l) < 0) {
            st = fg_error(FG_ERR_INVALID, "%s: tensor '%s' (byte %zu) is not a linear layer of this model", path, name,
                          pos - I8_NAME - 8);
            goto fail;
        }
        size_t tcols = (size_t)t->shape[t->ndim - 1], trows = t->numel / tcols;
        if (rows != trows || cols != tcols) {
            st = fg_error(FG_ERR_INVALID, "%s: tensor '%s' is %ux%u, the model's is %zux%zu", path, name, rows, cols,
                          trows, tcols);
            goto fail;
        }
        size_t need = (size_t)rows * 4 + (size_t)rows * cols;
        if (pos + need > len - 8) {
            st = fg_error(FG_ERR_FORMAT, "%s: tensor '%s' data past the end at byte %zu", path, name, pos);
            goto fail;
        }
        int kind = model_linear_kind(m, m->params + t->offset, &l);
        s->experts |= kind == QK_EFC || kind == QK_EPROJ || kind == QK_SFC || kind == QK_SPROJ;
        i8_tensor *d = &s->t[s->n++];
        d->off = t->offset;
        d->rows = (int)rows;
        d->cols = (int)cols;
        d->scale = fg_malloc(rows * sizeof(float));

        d->comp = fg_malloc(rows * sizeof(int32_t));
        if (!d->scale || !d->comp) {
            st = FG_ERR_NOMEM;
            goto fail;
        }
        memcpy(d->scale, b + pos, rows * sizeof(float));
        for (uint32_t r = 0; r < rows; r++)
            if (!(isfinite(d->scale[r]) && d->scale[r] > 0.0f)) {
                st = fg_error(FG_ERR_CORRUPT, "%s: tensor '%s': scale[%u] = %g (byte %zu) is not finite and > 0", path,
                              name, r, (double)d->scale[r], pos + (size_t)r * 4);
                goto fail;
            }
        pos += (size_t)rows * 4;
        const int8_t *q = (const int8_t *)(b + pos);
        for (uint32_t r = 0; r < rows; r++) {
            int32_t sum = 0;
            for (uint32_t c = 0; c < cols; c++) {
                int8_t v = q[(size_t)r * cols + c];
                if (v == -128) {
                    st = fg_error(FG_ERR_CORRUPT,
                                  "%s: tensor '%s': code -128 at [%u, %u] (byte %zu; codes are -127..127)", path, name,
                                  r, c, pos + (size_t)r * cols + c);
                    goto fail;
                }
                sum += v;
            }
            d->comp[r] = 128 * sum;
        }
        /* the GEMM's layout, packed once here (a third of the prompt path's GEMM time when
         * it was packed at every call); decoding reads it too, as one stream per strip */
        d->seg = t->ndim == 3 ? (int)t->shape[1] : (int)rows;
        size_t nseg = rows / (size_t)d->seg, words = fg_gemm_u8s8_packed_words(d->seg, (int)cols);
        d->packed = fg_malloc((nseg * words > 0 ? nseg * words : 1) * sizeof(uint32_t));
        if (!d->packed) {
            st = FG_ERR_NOMEM;
            goto fail;
        }
        for (size_t e = 0; e < nseg; e++)
            fg_gemm_u8s8_pack_b(d->packed + e * words, d->seg, (int)cols, q + e * (size_t)d->seg * cols, (int)cols);
        pos += (size_t)rows * cols;
        max_c = cols > max_c ? cols : max_c;
    }
    if (pos != len - 8) {
        st = fg_error(FG_ERR_FORMAT, "%s: %zu unexpected bytes after the last tensor (byte %zu)", path, len - 8 - pos,
                      pos);
        goto fail;
    }
    s->max_c = (int)max_c;
    s->u = fg_malloc((size_t)I8_ROWS * (max_c ? max_c : 1));
    s->as = fg_malloc((size_t)I8_ROWS * sizeof(float));
    if (!s->u || !s->as) {
        st = FG_ERR_NOMEM;
        goto fail;
    }
    fg_free(data);
    model_int8_free(m);
    m->i8 = s;
    return FG_OK;
fail:
    free_state(s);
    fg_free(data);
    return st;
}

/* The int8 tensor holding the [OC, C] weight at `weight` (an expert's rows inside its
 * tensor), and the row of it that is the weight's first; NULL when none does. */
static const i8_tensor *find_layer(const struct model_int8 *s, const fg_model *m, const float *weight, int C, int OC,
                                   size_t *r0)
{
    size_t off = (size_t)(weight - m->params);
    for (int i = 0; i < s->n; i++) {
        const i8_tensor *u = &s->t[i];
        size_t n = (size_t)u->rows * (size_t)u->cols;
        if (off >= u->off && off < u->off + n && (off - u->off) % (size_t)u->cols == 0) {
            *r0 = (off - u->off) / (size_t)u->cols; /* an expert's first row */
            return u->cols == C && *r0 + (size_t)OC <= (size_t)u->rows ? u : NULL;
        }
    }
    return NULL;
}

/* A layer the packed path runs: its packed matrix and where its scales start. */
typedef struct i8_layer {
    const uint32_t *p;
    const float *scale;
    const int32_t *comp;
} i8_layer;

static int packed_layer(const fg_model *m, const float *weight, int N, int C, int OC, i8_layer *L)
{
    struct model_int8 *s = m->i8;
    size_t r0 = 0;
    const i8_tensor *t = s && N > 0 && weight ? find_layer(s, m, weight, C, OC, &r0) : NULL;
    if (!t || r0 % (size_t)t->seg || OC > t->seg) /* only whole matrices from their first row */
        return 0;
    L->p = t->packed + r0 / (size_t)t->seg * fg_gemm_u8s8_packed_words(t->seg, C);
    L->scale = t->scale + r0;
    L->comp = t->comp + r0;
    return 1;
}

/* Scratch for N rows of codes (at most max cols wide); 0 when it cannot grow. */
static int ensure_rows(struct model_int8 *s, int N)
{
    if (N <= s->cap)
        return 1;
    uint8_t *u = fg_malloc((size_t)N * (size_t)(s->max_c ? s->max_c : 1));
    float *as = fg_malloc((size_t)N * sizeof(float));
    if (!u || !as) {
        fg_free(u);
        fg_free(as);
        return 0;
    }
    fg_free(s->pu);
    fg_free(s->pas);
    s->pu = u;
    s->pas = as;
    s->cap = N;
    return 1;
}

/* Every int8 layer: codes of inp's rows, then the packed GEMM with its dequantizing
 * store. A weight that is not a whole matrix of the file (no layer of the model asks for
 * one) is not int8 here: 0, and the caller's fp32 path runs. */
int model_int8_linear_forward(const fg_model *m, float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC)
{
    struct model_int8 *s = m->i8;
    i8_layer L;
    if (!packed_layer(m, weight, N, C, OC, &L))
        return 0;
    int big = ensure_rows(s, N), step = big ? N : I8_ROWS;
    uint8_t *u = big ? s->pu : s->u;
    float *as = big ? s->pas : s->as;
    for (int r0 = 0; r0 < N; r0 += step) {
        int n = N - r0 < step ? N - r0 : step;
        fg_quantize_u8(u, as, inp + (size_t)r0 * C, n, C);
        fg_gemm_u8s8_packed(n, OC, C, u, C, L.p, as, L.scale, L.comp, bias, NULL, out + (size_t)r0 * OC, OC);
    }
    return 1;
}

/* ---- the prompt path's fused layers (generate.c prefill) ----
 * Each gives what the unfused calls give, bit for bit where the norm and SwiGLU kernels
 * are the fused ones' level (kernel_ops.h): the codes are the same, the GEMM is exact,
 * and the epilogue rounds the same steps. 0: not an int8 layer here, nothing written. */

int model_int8_linear_add(const fg_model *m, float *x, const float *inp, const float *weight, const float *bias, int N,
                          int C, int OC)
{
    struct model_int8 *s = m->i8;
    i8_layer L;
    if (!packed_layer(m, weight, N, C, OC, &L) || !ensure_rows(s, N))
        return 0;
    fg_quantize_u8(s->pu, s->pas, inp, N, C);
    fg_gemm_u8s8_packed(N, OC, C, s->pu, C, L.p, s->pas, L.scale, L.comp, bias, x, x, OC);
    return 1;
}

int model_int8_norm_linear(const fg_model *m, float *out, const float *x, const float *normw, const float *weight,
                           const float *bias, int N, int C, int OC)
{
    struct model_int8 *s = m->i8;
    i8_layer L;
    if (m->cfg.layout != FG_LAYOUT_LLAMA || !packed_layer(m, weight, N, C, OC, &L) || !ensure_rows(s, N))
        return 0;
    fg_rmsnorm_quant_u8(s->pu, s->pas, x, normw, N, C, m->cfg.norm_eps);
    fg_gemm_u8s8_packed(N, OC, C, s->pu, C, L.p, s->pas, L.scale, L.comp, bias, NULL, out, OC);
    return 1;
}

int model_int8_ffn_add(const fg_model *m, int l, float *x, float *fch, int N)
{
    struct model_int8 *s = m->i8;
    const model_layer_off *o = &m->layer[l];
    int C = m->cfg.d_model;
    i8_layer fc, proj;
    if (m->cfg.layout != FG_LAYOUT_LLAMA || model_is_moe_layer(m, l) ||
        !packed_layer(m, model_p(m, o->fcw), N, C, m->Fin, &fc) ||
        !packed_layer(m, model_p(m, o->fcprojw), N, m->F, C, &proj) || !ensure_rows(s, N))
        return 0;
    fg_rmsnorm_quant_u8(s->pu, s->pas, x, model_p(m, o->ln2w), N, C, m->cfg.norm_eps);
    fg_gemm_u8s8_packed(N, m->Fin, C, s->pu, C, fc.p, s->pas, fc.scale, fc.comp, model_p(m, o->fcb), NULL, fch, m->Fin);
    fg_swiglu_quant_u8(s->pu, s->pas, fch, N, m->F);
    fg_gemm_u8s8_packed(N, C, m->F, s->pu, m->F, proj.p, s->pas, proj.scale, proj.comp, model_p(m, o->fcprojb), x, x,
                        C);
    return 1;
}
