/* mtp.c: multi-token prediction as DeepSeek-V3 (cfg.mtp_depth, docs/MODEL.md "Multi-token
 * prediction"): D sequential modules after the last layer, trained with weight mtp_lambda.
 *
 * Module k (1..D) at position i: h'_i = M_k [norm_h(h^{k-1}_i) ; norm_e(wte[t_{i+k}])],
 * h^k = block_k(h') (one causal transformer block of the layout, dense FFN of d_ff),
 * logits = norm_f,k(h^k) @ head^T (the model's head / tied wte), target t_{i+k+1}. h^0 is
 * the last layer's output (before ln_f). The block runs over all T positions: inputs past
 * the sequence (t_{i+k} with i+k >= T) are token 0 and their targets ignored, which the
 * causal mask keeps from every counted position. L_k is the mean over counted targets;
 * backward adds lambda / D * sum_k L_k to the objective. Training only: generation never
 * runs the modules (the speculative draft is a follow-up).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frugal/kernels.h"
#include "model_impl.h"

/* One module's parameter offsets (FG_NO_TENSOR when the layout has no such tensor). */
typedef struct mtp_off {
    size_t lnhw, lnhb, lnew, lneb, ehw, lnfw, lnfb;
    model_layer_off blk; /* ln1, qkv, attproj, ln2, fc, fcproj */
} mtp_off;

/* One module's saved activations, each sized for N = B*T rows. */
typedef struct mtp_acts {
    float *emb;                    /* [N,C] wte[t_{i+k}] */
    float *hn, *hn_mean, *hn_rstd; /* norm_h(h^{k-1}) */
    float *en, *en_mean, *en_rstd; /* norm_e(emb) */
    float *cat;                    /* [N,2C] */
    float *x;                      /* [N,C] the block's input */
    model_layer_acts blk;
    float *lnf, *lnf_mean, *lnf_rstd;
    float *dlogits; /* [N,Vp] logits, then (softmax - onehot) * dl_scale */
    float *losses;  /* [N] */
    int32_t *tok, *tgt;
    float dl_scale; /* the scale dlogits hold */
    float base;     /* lambda / (D n_k): dl_scale for loss_scale 1 */
} mtp_acts;

typedef struct model_mtp {
    int D;
    mtp_off *off;
    mtp_acts *a;
    float *mem;
    int32_t *imem;
    float *dres, *dcarry, *dcat, *dtmp; /* backward scratch */
    size_t saved, scratch;              /* floats */
    float loss;
    int fwd;
} model_mtp;

fg_status model_mtp_validate(const fg_model_config *cfg)
{
    if (cfg->mtp_depth < 0 || cfg->mtp_depth > 16)
        return fg_error(FG_ERR_INVALID, "model config: mtp_depth = %d must be in [0, 16]", cfg->mtp_depth);
    if (cfg->mtp_depth == 0)
        return FG_OK;
    if (!(cfg->mtp_lambda >= 0.0f) || !isfinite(cfg->mtp_lambda))
        return fg_error(FG_ERR_INVALID, "model config: mtp_lambda = %g must be a finite number >= 0",
                        (double)cfg->mtp_lambda);
    /* the modules run lowp.c's path nowhere: bf16 / fp8 would need their own copies */
    if (cfg->precision != FG_PRECISION_FP32)
        return fg_error(FG_ERR_INVALID, "model config: mtp_depth = %d needs precision = fp32", cfg->mtp_depth);
    return FG_OK;
}

fg_status model_mtp_new(fg_model *m)
{
    int D = m->cfg.mtp_depth;
    if (D == 0)
        return FG_OK;
    m->mtp = fg_calloc(1, sizeof *m->mtp);
    if (!m->mtp)
        return fg_error(FG_ERR_NOMEM, "model: cannot allocate the MTP state");
    m->mtp->D = D;
    m->mtp->off = fg_calloc((size_t)D, sizeof *m->mtp->off);
    m->mtp->a = fg_calloc((size_t)D, sizeof *m->mtp->a);
    if (!m->mtp->off || !m->mtp->a)
        return fg_error(FG_ERR_NOMEM, "model: cannot allocate the MTP state");
    for (int k = 0; k < D; k++) {
        size_t *o = (size_t *)&m->mtp->off[k];
        for (size_t j = 0; j < sizeof(mtp_off) / sizeof(size_t); j++)
            o[j] = FG_NO_TENSOR;
    }
    return FG_OK;
}

/* A module's tensors in flat order: (suffix, rows, cols, field); cols 0 = vector. */
typedef struct mtp_type {
    const char *name;
    int rows, cols;
    size_t *field;
} mtp_type;

static int module_types(const fg_model *m, mtp_off *o, mtp_type *t)
{
    int C = m->cfg.d_model, gpt2 = m->cfg.layout == FG_LAYOUT_GPT2, n = 0;
#define T_(nm, r, c, f) t[n++] = (mtp_type){nm, r, c, f}
    T_("ln_h.weight", C, 0, &o->lnhw);
    if (gpt2)
        T_("ln_h.bias", C, 0, &o->lnhb);
    T_("ln_e.weight", C, 0, &o->lnew);
    if (gpt2)
        T_("ln_e.bias", C, 0, &o->lneb);
    T_("eh.weight", C, 2 * C, &o->ehw);
    T_("ln_1.weight", C, 0, &o->blk.ln1w);
    if (gpt2)
        T_("ln_1.bias", C, 0, &o->blk.ln1b);
    T_("attn.qkv.weight", 3 * C, C, &o->blk.qkvw);
    if (gpt2)
        T_("attn.qkv.bias", 3 * C, 0, &o->blk.qkvb);
    T_("attn.proj.weight", C, C, &o->blk.attprojw);
    if (gpt2)
        T_("attn.proj.bias", C, 0, &o->blk.attprojb);
    T_("ln_2.weight", C, 0, &o->blk.ln2w);
    if (gpt2)
        T_("ln_2.bias", C, 0, &o->blk.ln2b);
    T_("mlp.fc.weight", m->Fin, C, &o->blk.fcw);
    if (gpt2)
        T_("mlp.fc.bias", m->Fin, 0, &o->blk.fcb);
    T_("mlp.proj.weight", C, m->F, &o->blk.fcprojw);
    if (gpt2)
        T_("mlp.proj.bias", C, 0, &o->blk.fcprojb);
    T_("ln_f.weight", C, 0, &o->lnfw);
    if (gpt2)
        T_("ln_f.bias", C, 0, &o->lnfb);
#undef T_
    return n;
}

int model_mtp_num_tensors(const fg_model *m)
{
    if (!m->mtp)
        return 0;
    mtp_type t[32];
    mtp_off o;
    return m->mtp->D * module_types(m, &o, t);
}

size_t model_mtp_add_tensors(fg_model *m, int *ti, size_t off)
{
    for (int k = 0; m->mtp && k < m->mtp->D; k++) {
        mtp_type t[32];
        int n = module_types(m, &m->mtp->off[k], t);
        for (int i = 0; i < n; i++) {
            fg_tensor_info *ti_ = &m->tensors[(*ti)++];
            snprintf(ti_->name, sizeof ti_->name, "mtp.%d.%s", k, t[i].name);
            ti_->offset = off;
            ti_->ndim = t[i].cols ? 2 : 1;
            ti_->shape[0] = t[i].rows;
            ti_->shape[1] = t[i].cols;
            ti_->numel = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1);
            ti_->no_decay = t[i].cols == 0; /* norms and biases */
            ti_->frozen = 0;
            ti_->lr_scale = 1.0f;
            *t[i].field = off;
            off += ti_->numel;
        }
    }
    return off;
}

/* Carves the activations (base NULL: counts). Returns the floats. */
static size_t layout(fg_model *m, float *base, int32_t *ibase)
{
    model_mtp *p = m->mtp;
    size_t N = (size_t)m->B * (size_t)m->T, C = (size_t)m->cfg.d_model, Vp = (size_t)m->cfg.padded_vocab;
    size_t NH = (size_t)m->cfg.n_head, Fin = (size_t)m->Fin, F = (size_t)m->F, off = 0;
#define CARVE(ptr, n)                                                                                                  \
    do {                                                                                                               \
        if (base)                                                                                                      \
            (ptr) = base + off;                                                                                        \
        off += ((n) + 15) / 16 * 16;                                                                                   \
    } while (0)
    for (int k = 0; k < p->D; k++) {
        mtp_acts *a = &p->a[k];
        CARVE(a->emb, N * C);
        CARVE(a->hn, N * C);
        CARVE(a->hn_mean, N);
        CARVE(a->hn_rstd, N);
        CARVE(a->en, N * C);
        CARVE(a->en_mean, N);
        CARVE(a->en_rstd, N);
        CARVE(a->cat, 2 * N * C);
        CARVE(a->x, N * C);
        CARVE(a->blk.ln1, N * C);
        CARVE(a->blk.ln1_mean, N);
        CARVE(a->blk.ln1_rstd, N);
        CARVE(a->blk.qkv, 3 * N * C);
        CARVE(a->blk.atty, N * C);
        CARVE(a->blk.lse, N * NH);
        CARVE(a->blk.res2, N * C);
        CARVE(a->blk.ln2, N * C);
        CARVE(a->blk.ln2_mean, N);
        CARVE(a->blk.ln2_rstd, N);
        CARVE(a->blk.ffn.fch, N * Fin);
        CARVE(a->blk.ffn.fch_act, N * F);
        CARVE(a->blk.res3, N * C);
        CARVE(a->lnf, N * C);
        CARVE(a->lnf_mean, N);
        CARVE(a->lnf_rstd, N);
        CARVE(a->dlogits, N * Vp);
        CARVE(a->losses, N);
        if (ibase) {
            a->tok = ibase + (size_t)2 * k * N;
            a->tgt = a->tok + N;
        }
    }
    p->saved = off;
    CARVE(p->dres, N * C);
    CARVE(p->dcarry, N * C);
    CARVE(p->dcat, 2 * N * C);
    CARVE(p->dtmp, N * C);
#undef CARVE
    p->scratch = off - p->saved;
    return off;
}

fg_status model_mtp_init(fg_model *m)
{
    if (!m->mtp)
        return FG_OK;
    size_t n = layout(m, NULL, NULL), N = (size_t)m->B * (size_t)m->T;
    m->mtp->mem = fg_calloc(n, sizeof(float));
    m->mtp->imem = fg_calloc(2 * (size_t)m->mtp->D * N, sizeof(int32_t));
    if (!m->mtp->mem || !m->mtp->imem)
        return fg_error(FG_ERR_NOMEM, "model: cannot allocate the MTP activations (%zu floats)", n);
    layout(m, m->mtp->mem, m->mtp->imem);
    return FG_OK;
}

void model_mtp_free(fg_model *m)
{
    if (!m->mtp)
        return;
    fg_free(m->mtp->mem);
    fg_free(m->mtp->imem);
    fg_free(m->mtp->off);
    fg_free(m->mtp->a);
    fg_free(m->mtp);
    m->mtp = NULL;
}

float fg_model_mtp_loss(const fg_model *m)
{
    return m->mtp && m->mtp->fwd ? m->mtp->loss : 0.0f;
}

/* The module's transformer block: the layer of model.c with a dense FFN. */
static void block_forward(fg_model *m, const model_layer_off *o, model_layer_acts *a, const float *x, int B, int T)
{
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, NH = c->n_head;
    model_norm_forward(m, a->ln1, a->ln1_mean, a->ln1_rstd, x, model_p(m, o->ln1w), model_p(m, o->ln1b), N);
    model_linear_forward(m, a->qkv, a->ln1, model_p(m, o->qkvw), model_p(m, o->qkvb), N, C, 3 * C);
    if (c->layout == FG_LAYOUT_LLAMA) {
        fg_rope_forward(a->qkv, B, T, NH, m->HS, 3 * C, 0, c->rope_theta);
        fg_rope_forward(a->qkv + C, B, T, NH, m->HS, 3 * C, 0, c->rope_theta);
    }
    fg_attention_forward(a->atty, a->lse, a->qkv, B, T, C, NH);
    model_linear_forward(m, a->res2, a->atty, model_p(m, o->attprojw), model_p(m, o->attprojb), N, C, C);
    fg_add(a->res2, a->res2, x, (size_t)N * C);
    model_norm_forward(m, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, model_p(m, o->ln2w), model_p(m, o->ln2b), N);
    model_linear_forward(m, a->ffn.fch, a->ln2, model_p(m, o->fcw), model_p(m, o->fcb), N, C, m->Fin);
    if (c->layout == FG_LAYOUT_GPT2)
        fg_gelu_forward(a->ffn.fch_act, a->ffn.fch, (size_t)N * (size_t)m->F);
    else
        fg_swiglu_forward(a->ffn.fch_act, a->ffn.fch, N, m->F);
    model_linear_forward(m, a->res3, a->ffn.fch_act, model_p(m, o->fcprojw), model_p(m, o->fcprojb), N, m->F, C);
    fg_add(a->res3, a->res3, a->res2, (size_t)N * C);
}

/* dres: d(block output) in, d(block input x) out (both residual branches added in). */
static void block_backward(fg_model *m, const model_layer_off *o, const model_layer_acts *a, const float *x,
                           float *dres, int B, int T)
{
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, NH = c->n_head;
    size_t NC = (size_t)N * C;
    memset(m->dln, 0, NC * sizeof(float));
    memset(m->dfch_act, 0, (size_t)N * (size_t)m->F * sizeof(float));
    memset(m->dfch, 0, (size_t)N * (size_t)m->Fin * sizeof(float));
    model_linear_backward(m, m->dfch_act, model_g(m, o->fcprojw), model_g(m, o->fcprojb), dres, a->ffn.fch_act,
                          model_p(m, o->fcprojw), N, m->F, C);
    if (c->layout == FG_LAYOUT_GPT2)
        fg_gelu_backward(m->dfch, m->dfch_act, a->ffn.fch, (size_t)N * (size_t)m->F);
    else
        fg_swiglu_backward(m->dfch, m->dfch_act, a->ffn.fch, N, m->F);
    model_linear_backward(m, m->dln, model_g(m, o->fcw), model_g(m, o->fcb), m->dfch, a->ln2, model_p(m, o->fcw), N, C,
                          m->Fin);
    model_norm_backward(m, dres, model_g(m, o->ln2w), model_g(m, o->ln2b), m->dln, a->res2, model_p(m, o->ln2w),
                        a->ln2_mean, a->ln2_rstd, N);
    memset(m->datty, 0, NC * sizeof(float));
    model_linear_backward(m, m->datty, model_g(m, o->attprojw), model_g(m, o->attprojb), dres, a->atty,
                          model_p(m, o->attprojw), N, C, C);
    memset(m->dqkv, 0, 3 * NC * sizeof(float));
    fg_attention_backward(m->dqkv, m->datty, a->qkv, a->atty, a->lse, B, T, C, NH);
    if (c->layout == FG_LAYOUT_LLAMA) {
        fg_rope_backward(m->dqkv, B, T, NH, m->HS, 3 * C, 0, c->rope_theta);
        fg_rope_backward(m->dqkv + C, B, T, NH, m->HS, 3 * C, 0, c->rope_theta);
    }
    memset(m->dln, 0, NC * sizeof(float));
    model_linear_backward(m, m->dln, model_g(m, o->qkvw), model_g(m, o->qkvb), m->dqkv, a->ln1, model_p(m, o->qkvw), N,
                          C, 3 * C);
    model_norm_backward(m, dres, model_g(m, o->ln1w), model_g(m, o->ln1b), m->dln, x, model_p(m, o->ln1w), a->ln1_mean,
                        a->ln1_rstd, N);
}

fg_status model_mtp_forward(fg_model *m, int B, int T)
{
    model_mtp *p = m->mtp;
    if (!p)
        return FG_OK;
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, V = c->vocab_size, Vp = c->padded_vocab, D = p->D;
    p->fwd = 0;
    double total = 0.0;
    for (int k = 1; k <= D; k++) {
        mtp_acts *a = &p->a[k - 1];
        const mtp_off *o = &p->off[k - 1];
        const float *prev = k == 1 ? m->la[c->n_layer - 1].res3 : p->a[k - 2].blk.res3;
        int n_k = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int i = b * T + t, s = t + k - 1; /* t_{i+k} is targets[i+k-1] */
                int32_t tok = s < T ? m->targets[b * T + s] : 0;
                a->tok[i] = tok >= 0 ? tok : 0;
                a->tgt[i] = t + k < T ? m->targets[b * T + t + k] : -1;
                n_k += a->tgt[i] >= 0;
            }
        fg_embedding_forward(a->emb, a->tok, m->params + m->wte, NULL, N, T, C);
        model_norm_forward(m, a->hn, a->hn_mean, a->hn_rstd, prev, model_p(m, o->lnhw), model_p(m, o->lnhb), N);
        model_norm_forward(m, a->en, a->en_mean, a->en_rstd, a->emb, model_p(m, o->lnew), model_p(m, o->lneb), N);
        for (int i = 0; i < N; i++) {
            memcpy(a->cat + (size_t)i * 2 * C, a->hn + (size_t)i * C, (size_t)C * sizeof(float));
            memcpy(a->cat + (size_t)i * 2 * C + C, a->en + (size_t)i * C, (size_t)C * sizeof(float));
        }
        model_linear_forward(m, a->x, a->cat, model_p(m, o->ehw), NULL, N, 2 * C, C);
        block_forward(m, &o->blk, &a->blk, a->x, B, T);
        model_norm_forward(m, a->lnf, a->lnf_mean, a->lnf_rstd, a->blk.res3, model_p(m, o->lnfw), model_p(m, o->lnfb),
                           N);
        model_linear_forward(m, a->dlogits, a->lnf, m->params + m->head, NULL, N, C, Vp);
        a->base = n_k > 0 ? c->mtp_lambda / ((float)D * (float)n_k) : 0.0f;
        a->dl_scale = a->base;
        double sum = fg_softmax_xent(a->dlogits, a->losses, a->dlogits, a->tgt, N, V, Vp, a->dl_scale);
        total += n_k > 0 ? sum / n_k : 0.0;
    }
    p->loss = (float)(total / D);
    if (!isfinite(p->loss))
        return fg_error(FG_ERR_NUMERIC, "fg_model_forward: multi-token prediction loss is %g", (double)p->loss);
    p->fwd = 1;
    return FG_OK;
}

void model_mtp_backward(fg_model *m, float loss_scale)
{
    model_mtp *p = m->mtp;
    if (!p || !p->fwd)
        return;
    const fg_model_config *c = &m->cfg;
    int B = m->cur_B, T = m->cur_T, N = B * T, C = c->d_model, Vp = c->padded_vocab;
    size_t NC = (size_t)N * C;
    memset(p->dcarry, 0, NC * sizeof(float));
    for (int k = p->D; k >= 1; k--) {
        mtp_acts *a = &p->a[k - 1];
        const mtp_off *o = &p->off[k - 1];
        const float *prev = k == 1 ? m->la[c->n_layer - 1].res3 : p->a[k - 2].blk.res3;
        float want = a->base * loss_scale;
        if (want != a->dl_scale && a->dl_scale != 0.0f) { /* base 0: every target ignored or lambda 0 */
            fg_scale(a->dlogits, want / a->dl_scale, (size_t)N * Vp);
            a->dl_scale = want;
        }
        /* dres = d h^k: from module k+1's norm_h (dcarry) and this module's head */
        memcpy(p->dres, p->dcarry, NC * sizeof(float));
        memset(p->dcarry, 0, NC * sizeof(float));
        memset(p->dtmp, 0, NC * sizeof(float));
        if (a->dl_scale != 0.0f)
            model_linear_backward(m, p->dtmp, m->grads + m->head, NULL, a->dlogits, a->lnf, m->params + m->head, N, C,
                                  Vp);
        model_norm_backward(m, p->dres, model_g(m, o->lnfw), model_g(m, o->lnfb), p->dtmp, a->blk.res3,
                            model_p(m, o->lnfw), a->lnf_mean, a->lnf_rstd, N);
        block_backward(m, &o->blk, &a->blk, a->x, p->dres, B, T); /* dres = d x */
        memset(p->dcat, 0, 2 * NC * sizeof(float));
        model_linear_backward(m, p->dcat, model_g(m, o->ehw), NULL, p->dres, a->cat, model_p(m, o->ehw), N, 2 * C, C);
        for (int i = 0; i < N; i++) { /* dtmp = d hn, dres = d en */
            memcpy(p->dtmp + (size_t)i * C, p->dcat + (size_t)i * 2 * C, (size_t)C * sizeof(float));
            memcpy(p->dres + (size_t)i * C, p->dcat + (size_t)i * 2 * C + C, (size_t)C * sizeof(float));
        }
        memset(m->dln, 0, NC * sizeof(float));
        model_norm_backward(m, m->dln, model_g(m, o->lnew), model_g(m, o->lneb), p->dres, a->emb, model_p(m, o->lnew),
                            a->en_mean, a->en_rstd, N);
        fg_embedding_backward(m->grads + m->wte, NULL, m->dln, a->tok, N, T, C);
        /* h^{k-1}: the main model's last output (m->dres) or the module before's */
        model_norm_backward(m, k == 1 ? m->dres : p->dcarry, model_g(m, o->lnhw), model_g(m, o->lnhb), p->dtmp, prev,
                            model_p(m, o->lnhw), a->hn_mean, a->hn_rstd, N);
    }
}

void model_mtp_act_bytes(const fg_model *m, size_t *saved, size_t *scratch)
{
    *saved = m->mtp ? m->mtp->saved * sizeof(float) + 2 * (size_t)m->mtp->D * m->B * m->T * sizeof(int32_t) : 0;
    *scratch = m->mtp ? m->mtp->scratch * sizeof(float) : 0;
}

double model_mtp_flops_per_token(const fg_model *m, int T)
{
    /* the modules' parameters are in N_active; the head runs D more times and each block
     * adds causal attention (6 T C per token, as a layer) */
    const fg_model_config *c = &m->cfg;
    double D = c->mtp_depth;
    return 6.0 * D * (double)c->d_model * (double)c->padded_vocab + 6.0 * D * (double)T * c->d_model;
}
