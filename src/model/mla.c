/* mla.c: multi-head latent attention (DeepSeek-V2/V3) for the fp32 model: keys and values
 * up-projected from one latent per token (normed in DeepSeek's form, mla_latent_norm), queries
 * through a latent of their own, and a decoupled RoPE key shared by the heads; forward,
 * backward, and decoding from a cache of only the latent and the RoPE key (W_UK absorbed
 * into the query, W_UV into the output). Shapes and FLOPs: docs/MODEL.md "Multi-head
 * latent attention".
 *
 * Per head the query and key have D = HS + R values ([nope | rope]) and the value HS.
 * The training path packs q, k, v into one [N, 3 NH D] buffer, the value padded with R
 * zeros per head, so the existing attention kernel runs it unchanged (its scale
 * 1/sqrt(D) is DeepSeek's); the zero columns give zero outputs, dropped by a gather.
 */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "model_impl.h"

/* Saved activations of one MLA layer (capacity N = B*T rows). */
typedef struct mla_layer {
    float *qa, *q_mean, *q_rstd, *qn;    /* [N,rq] query latent before / after its norm, [N], [N] (rq > 0) */
    float *kvc, *kv_mean, *kv_rstd, *cn; /* [N,r] kv latent before / after its norm, [N], [N] */
    float *qkv;                          /* [N,3Cp], Cp = NH*D: q; k = [k_nope_h | k_rope]; v = [v_h | 0] */
    float *atty;                         /* [N,Cp] attention output (zero in the padded columns) */
    float *lse;                          /* [N*NH] */
} mla_layer;

struct model_mla {
    int r, rq, R, D, Cp; /* kv rank, q rank (0: none), rope dim, q/k head size, NH*D */
    float *mem;
    size_t saved_floats, scratch_floats;
    mla_layer *la; /* [L] */
    /* scratch shared by the layers; forward and backward reuse the same buffers */
    float *kvb;        /* [N,2C] k_nope | v per head; backward: their gradient */
    float *kr;         /* [N,R] the shared RoPE key; backward: its gradient */
    float *dqkv;       /* [N,3Cp] */
    float *datt;       /* [N,Cp] */
    float *dcn, *dkvc; /* [N,r] */
    float *dqn, *dqa;  /* [N,rq] */
    /* decoding, allocated at the first step */
    float *dec;
    float *lat, *krc; /* [L,maxT,r] normed latents, [L,maxT,R] rotated RoPE keys: the whole cache */
    float *q, *qa1, *qn1, *kvc1, *qt, *olat, *scores, *mean1,
        *rstd1; /* [Cp], [rq], [rq], [r], [r], [r], [maxT], [1], [1] */
};

fg_status model_mla_config_validate(const fg_model_config *c)
{
    if (c->mla_kv_rank == 0) {
        if (c->mla_q_rank != 0 || c->mla_rope_dim != 0 || c->mla_latent_norm != 0)
            return fg_error(FG_ERR_INVALID,
                            "model config: mla_q_rank = %d, mla_rope_dim = %d, mla_latent_norm = %d need mla_kv_rank > "
                            "0 (MLA is off)",
                            c->mla_q_rank, c->mla_rope_dim, c->mla_latent_norm);
        return FG_OK;
    }
    if (c->mla_kv_rank < 0 || c->mla_kv_rank > (1 << 20))
        return fg_error(FG_ERR_INVALID, "model config: mla_kv_rank = %d must be in [0, 2^20] (0 = off)",
                        c->mla_kv_rank);
    if (c->mla_q_rank < 0 || c->mla_q_rank > (1 << 20))
        return fg_error(FG_ERR_INVALID, "model config: mla_q_rank = %d must be in [0, 2^20] (0 = full-rank query)",
                        c->mla_q_rank);
    if (c->layout == FG_LAYOUT_GPT2 && c->mla_rope_dim != 0)
        return fg_error(FG_ERR_INVALID,
                        "model config: mla_rope_dim = %d with layout gpt2: its positions are learned (wpe), so MLA "
                        "there has no RoPE key (give 0)",
                        c->mla_rope_dim);
    if (c->mla_rope_dim < 0 || c->mla_rope_dim > 4096 || c->mla_rope_dim % 2 != 0)
        return fg_error(FG_ERR_INVALID, "model config: mla_rope_dim = %d must be even, in [0, 4096] (0 = HS/2)",
                        c->mla_rope_dim);
    if (c->precision != FG_PRECISION_FP32)
        return fg_error(FG_ERR_INVALID, "model config: mla_kv_rank = %d needs precision = fp32 (precision is %s)",
                        c->mla_kv_rank, c->precision == FG_PRECISION_BF16 ? "bf16" : "fp8");
    if (c->qat_layers[0] != '\0')
        return fg_error(FG_ERR_INVALID,
                        "model config: mla_kv_rank = %d with qat_layers = \"%s\": QAT of the MLA projections is not "
                        "built",
                        c->mla_kv_rank, c->qat_layers);
    return FG_OK;
}

/* Carves the saved and scratch buffers for N rows out of base (or counts when NULL). */
static void mla_layout(fg_model *m, struct model_mla *s, float *base)
{
    size_t N = (size_t)m->B * (size_t)m->T, C = (size_t)m->cfg.d_model, NH = (size_t)m->cfg.n_head;
    size_t r = (size_t)s->r, rq = (size_t)s->rq, R = (size_t)s->R, Cp = (size_t)s->Cp;
    size_t off = 0;
#define CARVE(ptr, n)                                                                                                  \
    do {                                                                                                               \
        if (base)                                                                                                      \
            (ptr) = base + off;                                                                                        \
        off += ((n) + 15) / 16 * 16;                                                                                   \
    } while (0)
    for (int l = 0; l < m->cfg.n_layer; l++) {
        mla_layer *a = &s->la[l];
        CARVE(a->qa, N * rq);
        CARVE(a->q_mean, rq ? N : 0);
        CARVE(a->q_rstd, rq ? N : 0);
        CARVE(a->qn, N * rq);
        CARVE(a->kvc, N * r);
        CARVE(a->kv_mean, N);
        CARVE(a->kv_rstd, N);
        CARVE(a->cn, N * r);
        CARVE(a->qkv, N * 3 * Cp);
        CARVE(a->atty, N * Cp);
        CARVE(a->lse, N * NH);
    }
    s->saved_floats = off;
    CARVE(s->kvb, N * 2 * C);
    CARVE(s->kr, N * R);
    CARVE(s->dqkv, N * 3 * Cp);
    CARVE(s->datt, N * Cp);
    CARVE(s->dcn, N * r);
    CARVE(s->dkvc, N * r);
    CARVE(s->dqn, N * rq);
    CARVE(s->dqa, N * rq);
#undef CARVE
    s->scratch_floats = off - s->saved_floats;
}

fg_status model_mla_init(fg_model *m)
{
    const fg_model_config *c = &m->cfg;
    if (c->mla_kv_rank <= 0)
        return FG_OK;
    struct model_mla *s = fg_calloc(1, sizeof *s);
    if (!s)
        return FG_ERR_NOMEM;
    m->mla = s;
    s->r = c->mla_kv_rank;
    s->rq = c->mla_q_rank;
    s->R = c->mla_rope_dim;
    s->D = m->HS + s->R;
    s->Cp = c->n_head * s->D;
    s->la = fg_calloc((size_t)c->n_layer, sizeof *s->la);
    if (!s->la)
        return FG_ERR_NOMEM;
    mla_layout(m, s, NULL);
    s->mem = fg_calloc(s->saved_floats + s->scratch_floats, sizeof(float));
    if (!s->mem)
        return FG_ERR_NOMEM;
    mla_layout(m, s, s->mem);
    return FG_OK;
}

void model_mla_free(fg_model *m)
{
    if (!m->mla)
        return;
    fg_free(m->mla->dec);
    fg_free(m->mla->mem);
    fg_free(m->mla->la);
    fg_free(m->mla);
    m->mla = NULL;
}

void model_mla_act_bytes(const fg_model *m, size_t *saved, size_t *scratch)
{
    *saved = m->mla ? m->mla->saved_floats * sizeof(float) : 0;
    *scratch = m->mla ? m->mla->scratch_floats * sizeof(float) : 0;
}

size_t fg_model_kv_bytes_per_token(const fg_model *m)
{
    const fg_model_config *c = &m->cfg;
    size_t per_layer = c->mla_kv_rank > 0 ? (size_t)c->mla_kv_rank + (size_t)c->mla_rope_dim : 2 * (size_t)c->d_model;
    return per_layer * (size_t)c->n_layer * sizeof(float);
}

/* Scales a tensor the generic init drew at N(0, 0.02) to N(0, std). */
static void rescale(float *w, size_t n, float std)
{
    float f = std / 0.02f;
    for (size_t i = 0; i < n; i++)
        w[i] *= f;
}

/* Runs after the generic init (matrices N(0, 0.02), norm weights 1); docs/perf/mla.md
 * section 2 has the measurements.
 * Both forms: the down-projections W_DKV, W_DQ at N(0, 1/C), so a latent entry has about
 * the size of an entry of the normed input (unit). Under a latent norm the down-projection
 * is scale-invariant and Adam moves each entry by about lr per step whatever its size, so
 * at 0.02 it turned by ~lr/0.02 (10% at lr 2e-3) per step; at 1/sqrt(C) 4.4x slower.
 * Without latent norms (the default): the up-projections W_UKV, W_UQ at N(0, 0.02^2 C/r)
 * (C/rq), so keys, values and queries start at plain attention's scale, 0.02 sqrt(C) per
 * entry; with 0.02 for both factors the product starts sqrt(r/C) * 0.02 sqrt(C) small and
 * the pair trained like one matrix at a fraction of the learning rate.
 * With latent norms (DeepSeek-V2, arXiv 2405.04434, section 3.1.2: besides the norms after
 * the latents, "additional scaling factors at the width bottlenecks", values not given):
 * the up-projections keep 0.02 and the factor is the norm's initial gain, sqrt(C / r)
 * (sqrt(C / rq) for the query latent), so a normed latent of r values has the length of a
 * normed C-wide input; learned from there. */
void model_mla_init_weights(fg_model *m)
{
    const fg_model_config *c = &m->cfg;
    if (!m->mla)
        return;
    int C = c->d_model, r = m->mla->r, rq = m->mla->rq, norm = c->mla_latent_norm;
    float down = 1.0f / sqrtf((float)C);
    float gkv = sqrtf((float)C / (float)r), gq = rq > 0 ? sqrtf((float)C / (float)rq) : 0.0f;
    for (int l = 0; l < c->n_layer; l++) {
        const model_layer_off *o = &m->layer[l];
        rescale(m->params + o->mla_kva, (size_t)r * C, down);
        if (rq > 0)
            rescale(m->params + o->mla_qa, (size_t)rq * C, down);
        if (!norm) {
            rescale(m->params + o->mla_kvb, (size_t)2 * C * r, 0.02f * gkv);
            if (rq > 0)
                rescale(m->params + o->mla_qb, (size_t)m->mla->Cp * rq, 0.02f * gq);
            continue;
        }
        float *wkv = m->params + o->mla_lnkvw;
        for (int i = 0; i < r; i++)
            wkv[i] = gkv;
        float *wq = rq > 0 ? m->params + o->mla_lnqw : NULL;
        for (int i = 0; wq && i < rq; i++)
            wq[i] = gq;
    }
}

/* ---- pieces ---- */

/* out[N,OC] (row stride ldo) = inp[N,K] (row stride ldi) @ W[OC,K]^T */
static void lin_fwd(float *out, int ldo, const float *inp, int ldi, const float *w, int N, int K, int OC)
{
    fg_sgemm(0, 1, N, OC, K, 1.0f, inp, ldi, w, K, 0.0f, out, ldo);
}

/* dinp[N,K] += dout @ W (when dinp != NULL); dW[OC,K] += dout^T @ inp */
static void lin_bwd(float *dinp, int ldd, float *dw, const float *dout, int ldo, const float *inp, int ldi,
                    const float *w, int N, int K, int OC)
{
    if (dinp)
        fg_sgemm(0, 0, N, K, OC, 1.0f, dout, ldo, w, K, 1.0f, dinp, ldd);
    fg_sgemm(1, 0, OC, K, N, 1.0f, dout, ldo, inp, ldi, 1.0f, dw, K);
}

/* The layout's norm over d values per row (the latents' norms; LayerNorm has a bias). */
static void norm_fwd(const fg_model *m, float *out, float *mean, float *rstd, const float *inp, const float *w,
                     const float *b, int N, int d)
{
    if (!m->cfg.mla_latent_norm) { /* no latent norms: the latent as it is */
        memcpy(out, inp, (size_t)N * (size_t)d * sizeof(float));
        return;
    }
    if (m->cfg.layout == FG_LAYOUT_GPT2)
        fg_layernorm_forward(out, mean, rstd, inp, w, b, N, d, m->cfg.norm_eps);
    else
        fg_rmsnorm_forward(out, rstd, inp, w, N, d, m->cfg.norm_eps);
}

static void norm_bwd(const fg_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, const float *mean, const float *rstd, int N, int d)
{
    if (!m->cfg.mla_latent_norm) {
        fg_add(dinp, dinp, dout, (size_t)N * (size_t)d);
        return;
    }
    if (m->cfg.layout == FG_LAYOUT_GPT2)
        fg_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, d);
    else
        fg_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, d);
}

/* ---- training forward / backward ---- */

void model_mla_forward(fg_model *m, int l, float *atty, const float *x, int B, int T)
{
    struct model_mla *s = m->mla;
    const model_layer_off *o = &m->layer[l];
    mla_layer *a = &s->la[l];
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, NH = c->n_head, HS = m->HS, r = s->r, rq = s->rq, R = s->R, D = s->D, Cp = s->Cp;
    int W3 = 3 * Cp;
    /* q = W_UQ norm(W_DQ x), or W_Q x: straight into the packed rows */
    if (rq > 0) {
        lin_fwd(a->qa, rq, x, C, model_p(m, o->mla_qa), N, C, rq);
        norm_fwd(m, a->qn, a->q_mean, a->q_rstd, a->qa, model_p(m, o->mla_lnqw), model_p(m, o->mla_lnqb), N, rq);
        lin_fwd(a->qkv, W3, a->qn, rq, model_p(m, o->mla_qb), N, rq, Cp);
    } else {
        lin_fwd(a->qkv, W3, x, C, model_p(m, o->mla_q), N, C, Cp);
    }
    /* c = norm(W_DKV x); [k_nope | v] = W_UKV c */
    lin_fwd(a->kvc, r, x, C, model_p(m, o->mla_kva), N, C, r);
    norm_fwd(m, a->cn, a->kv_mean, a->kv_rstd, a->kvc, model_p(m, o->mla_lnkvw), model_p(m, o->mla_lnkvb), N, r);
    lin_fwd(s->kvb, 2 * C, a->cn, r, model_p(m, o->mla_kvb), N, r, 2 * C);
    if (R > 0) { /* k_rope = RoPE(W_KR x), one per token; q's rope part of each head rotated */
        lin_fwd(s->kr, R, x, C, model_p(m, o->mla_kr), N, C, R);
        fg_rope_forward(s->kr, B, T, 1, R, R, 0, c->rope_theta);
        for (int h = 0; h < NH; h++)
            fg_rope_forward(a->qkv + (size_t)h * D + HS, B, T, 1, R, W3, 0, c->rope_theta);
    }
#pragma omp parallel for schedule(static) if ((size_t)N * Cp > 65536)
    for (int n = 0; n < N; n++) {
        float *kr = a->qkv + (size_t)n * W3 + Cp, *vr = kr + Cp;
        const float *src = s->kvb + (size_t)n * 2 * C;
        for (int h = 0; h < NH; h++) {
            memcpy(kr + (size_t)h * D, src + (size_t)h * 2 * HS, (size_t)HS * sizeof(float));
            memcpy(vr + (size_t)h * D, src + (size_t)h * 2 * HS + HS, (size_t)HS * sizeof(float));
            if (R > 0) {
                memcpy(kr + (size_t)h * D + HS, s->kr + (size_t)n * R, (size_t)R * sizeof(float));
                memset(vr + (size_t)h * D + HS, 0, (size_t)R * sizeof(float));
            }
        }
    }
    fg_attention_forward(a->atty, a->lse, a->qkv, B, T, Cp, NH);
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH; h++)
            memcpy(atty + (size_t)n * C + (size_t)h * HS, a->atty + (size_t)n * Cp + (size_t)h * D,
                   (size_t)HS * sizeof(float));
}

void model_mla_backward(fg_model *m, int l, float *dx, const float *datty, const float *x, int B, int T)
{
    struct model_mla *s = m->mla;
    const model_layer_off *o = &m->layer[l];
    mla_layer *a = &s->la[l];
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, NH = c->n_head, HS = m->HS, r = s->r, rq = s->rq, R = s->R, D = s->D, Cp = s->Cp;
    int W3 = 3 * Cp;
    size_t NCp = (size_t)N * Cp;
    memset(s->datt, 0, NCp * sizeof(float)); /* the padded value columns get no gradient */
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NH; h++)
            memcpy(s->datt + (size_t)n * Cp + (size_t)h * D, datty + (size_t)n * C + (size_t)h * HS,
                   (size_t)HS * sizeof(float));
    memset(s->dqkv, 0, 3 * NCp * sizeof(float));
    fg_attention_backward(s->dqkv, s->datt, a->qkv, a->atty, a->lse, B, T, Cp, NH);
    /* gradients of k_nope | v (kvb) and of the shared rope key (kr: summed over heads) */
#pragma omp parallel for schedule(static) if ((size_t)N * Cp > 65536)
    for (int n = 0; n < N; n++) {
        const float *dk = s->dqkv + (size_t)n * W3 + Cp, *dv = dk + Cp;
        float *dst = s->kvb + (size_t)n * 2 * C, *dkr = s->kr + (size_t)n * R;
        for (int i = 0; i < R; i++)
            dkr[i] = 0.0f;
        for (int h = 0; h < NH; h++) {
            memcpy(dst + (size_t)h * 2 * HS, dk + (size_t)h * D, (size_t)HS * sizeof(float));
            memcpy(dst + (size_t)h * 2 * HS + HS, dv + (size_t)h * D, (size_t)HS * sizeof(float));
            for (int i = 0; i < R; i++)
                dkr[i] += dk[(size_t)h * D + HS + i];
        }
    }
    if (R > 0) {
        fg_rope_backward(s->kr, B, T, 1, R, R, 0, c->rope_theta);
        lin_bwd(dx, C, model_g(m, o->mla_kr), s->kr, R, x, C, model_p(m, o->mla_kr), N, C, R);
        for (int h = 0; h < NH; h++)
            fg_rope_backward(s->dqkv + (size_t)h * D + HS, B, T, 1, R, W3, 0, c->rope_theta);
    }
    memset(s->dcn, 0, (size_t)N * r * sizeof(float));
    lin_bwd(s->dcn, r, model_g(m, o->mla_kvb), s->kvb, 2 * C, a->cn, r, model_p(m, o->mla_kvb), N, r, 2 * C);
    memset(s->dkvc, 0, (size_t)N * r * sizeof(float));
    norm_bwd(m, s->dkvc, model_g(m, o->mla_lnkvw), model_g(m, o->mla_lnkvb), s->dcn, a->kvc, model_p(m, o->mla_lnkvw),
             a->kv_mean, a->kv_rstd, N, r);
    lin_bwd(dx, C, model_g(m, o->mla_kva), s->dkvc, r, x, C, model_p(m, o->mla_kva), N, C, r);
    if (rq > 0) {
        memset(s->dqn, 0, (size_t)N * rq * sizeof(float));
        lin_bwd(s->dqn, rq, model_g(m, o->mla_qb), s->dqkv, W3, a->qn, rq, model_p(m, o->mla_qb), N, rq, Cp);
        memset(s->dqa, 0, (size_t)N * rq * sizeof(float));
        norm_bwd(m, s->dqa, model_g(m, o->mla_lnqw), model_g(m, o->mla_lnqb), s->dqn, a->qa, model_p(m, o->mla_lnqw),
                 a->q_mean, a->q_rstd, N, rq);
        lin_bwd(dx, C, model_g(m, o->mla_qa), s->dqa, rq, x, C, model_p(m, o->mla_qa), N, C, rq);
    } else {
        lin_bwd(dx, C, model_g(m, o->mla_q), s->dqkv, W3, x, C, model_p(m, o->mla_q), N, C, Cp);
    }
}

/* ---- decoding with the compressed cache ---- */

static fg_status dec_alloc(fg_model *m)
{
    struct model_mla *s = m->mla;
    if (s->dec)
        return FG_OK;
    size_t L = (size_t)m->cfg.n_layer, maxT = (size_t)m->cfg.max_seq_len;
    size_t sizes[] = {L * maxT * (size_t)s->r,
                      L * maxT * (size_t)s->R,
                      (size_t)s->Cp,
                      (size_t)s->rq,
                      (size_t)s->rq,
                      (size_t)s->r,
                      (size_t)s->r,
                      (size_t)s->r,
                      maxT,
                      1,
                      1};
    float **ptrs[] = {&s->lat, &s->krc,  &s->q,      &s->qa1,   &s->qn1,  &s->kvc1,
                      &s->qt,  &s->olat, &s->scores, &s->mean1, &s->rstd1};
    size_t n = sizeof sizes / sizeof sizes[0], total = 0;
    for (size_t i = 0; i < n; i++)
        total += (sizes[i] + 15) / 16 * 16;
    s->dec = fg_calloc(total, sizeof(float));
    if (!s->dec)
        return FG_ERR_NOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        *ptrs[i] = s->dec + off;
        off += (sizes[i] + 15) / 16 * 16;
    }
    return FG_OK;
}

fg_status model_mla_decode(fg_model *m, int l, float *att, const float *x, int pos)
{
    fg_status st = dec_alloc(m);
    if (st != FG_OK)
        return st;
    struct model_mla *s = m->mla;
    const model_layer_off *o = &m->layer[l];
    const fg_model_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, HS = m->HS, r = s->r, rq = s->rq, R = s->R, D = s->D, Cp = s->Cp;
    size_t maxT = (size_t)c->max_seq_len;
    float *lat = s->lat + (size_t)l * maxT * r, *krc = s->krc + (size_t)l * maxT * R;
    if (rq > 0) {
        lin_fwd(s->qa1, rq, x, C, model_p(m, o->mla_qa), 1, C, rq);
        norm_fwd(m, s->qn1, s->mean1, s->rstd1, s->qa1, model_p(m, o->mla_lnqw), model_p(m, o->mla_lnqb), 1, rq);
        lin_fwd(s->q, Cp, s->qn1, rq, model_p(m, o->mla_qb), 1, rq, Cp);
    } else {
        lin_fwd(s->q, Cp, x, C, model_p(m, o->mla_q), 1, C, Cp);
    }
    /* the cache row of this position: the normed latent and the rotated rope key */
    lin_fwd(s->kvc1, r, x, C, model_p(m, o->mla_kva), 1, C, r);
    norm_fwd(m, lat + (size_t)pos * r, s->mean1, s->rstd1, s->kvc1, model_p(m, o->mla_lnkvw), model_p(m, o->mla_lnkvb),
             1, r);
    if (R > 0) {
        lin_fwd(krc + (size_t)pos * R, R, x, C, model_p(m, o->mla_kr), 1, C, R);
        fg_rope_forward(krc + (size_t)pos * R, 1, 1, 1, R, R, pos, c->rope_theta);
        for (int h = 0; h < NH; h++)
            fg_rope_forward(s->q + (size_t)h * D + HS, 1, 1, 1, R, D, pos, c->rope_theta);
    }
    float scale = 1.0f / sqrtf((float)D);
    const float *wkvb = model_p(m, o->mla_kvb);
    for (int h = 0; h < NH; h++) {
        const float *wuk = wkvb + (size_t)h * 2 * HS * r, *wuv = wuk + (size_t)HS * r;
        /* absorbed key projection: q_nope . (W_UK_h c_t) = (W_UK_h^T q_nope) . c_t */
        fg_sgemm(0, 0, 1, r, HS, 1.0f, s->q + (size_t)h * D, HS, wuk, r, 0.0f, s->qt, r);
        fg_sgemm(0, 1, 1, pos + 1, r, scale, s->qt, r, lat, r, 0.0f, s->scores, pos + 1);
        if (R > 0)
            fg_sgemm(0, 1, 1, pos + 1, R, scale, s->q + (size_t)h * D + HS, R, krc, R, 1.0f, s->scores, pos + 1);
        float mx = s->scores[0];
        for (int t = 1; t <= pos; t++)
            mx = fmaxf(mx, s->scores[t]);
        double sum = 0.0;
        for (int t = 0; t <= pos; t++) {
            s->scores[t] = expf(s->scores[t] - mx);
            sum += s->scores[t];
        }
        float inv = (float)(1.0 / sum);
        for (int t = 0; t <= pos; t++)
            s->scores[t] *= inv;
        /* absorbed value projection: sum_t p_t W_UV_h c_t = W_UV_h (sum_t p_t c_t) */
        fg_sgemm(0, 0, 1, r, pos + 1, 1.0f, s->scores, pos + 1, lat, r, 0.0f, s->olat, r);
        fg_sgemm(0, 1, 1, HS, r, 1.0f, s->olat, r, wuv, r, 0.0f, att + (size_t)h * HS, HS);
    }
    return FG_OK;
}
