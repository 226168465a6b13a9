/* model.c: model config and validation, the parameter size table (named views into one
 * flat fp32 buffer, llm.c's order for gpt2), activation layout, init, the activation-byte
 * count, and the fp32 forward/backward driver for the llama and gpt2 layouts (bf16 and
 * fp8 run lowp.c's). Generation lives in generate.c, llm.c checkpoint I/O in llmc.c; the
 * FFN of every layer goes through model_ffn_forward/_backward so a routed (MoE) FFN can
 * slot in there.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "model_impl.h"

/* ---- config ---- */

void fg_model_config_default(fg_model_config *cfg, fg_layout layout)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->layout = layout;
    cfg->vocab_size = 256;
    cfg->padded_vocab = 0;
    cfg->max_seq_len = 256;
    cfg->n_layer = 4;
    cfg->n_head = 4;
    cfg->d_model = 128;
    cfg->d_ff = 0;
    cfg->norm_eps = 1e-5f;
    cfg->rope_theta = 10000.0f;
    cfg->tie_embeddings = layout == FG_LAYOUT_GPT2 ? 1 : 0;
    cfg->moe.route_scale = 1.0f;
    cfg->moe.balance = FG_BALANCE_BIAS;
    cfg->moe.balance_gamma = 1e-3f;
    cfg->moe.balance_gain = 0.0f;
    cfg->moe.router_logit_scale = 1.0f;
    cfg->moe.router_lr_scale = 1.0f;
    cfg->moe.balance_window = 1;
    cfg->moe.balance_alpha = 1e-4f;
    cfg->moe.capacity_factor = 0.0f;
    cfg->ffn_share_group = 2; /* FFN sharing (share.c): off until ffn_share is set */
    cfg->ffn_share_alpha = 0.5f;
    cfg->ffn_share_rank = 8;
    cfg->mtp_lambda = 0.3f; /* multi-token prediction (mtp.c): off until mtp_depth is set */
}

fg_status fg_model_config_validate(const fg_model_config *cfg)
{
    if (!cfg)
        return fg_error(FG_ERR_INVALID, "model config: NULL");
    if (cfg->layout != FG_LAYOUT_LLAMA && cfg->layout != FG_LAYOUT_GPT2)
        return fg_error(FG_ERR_INVALID, "model config: layout = %d is neither llama (0) nor gpt2 (1)",
                        (int)cfg->layout);
    if (cfg->vocab_size < 1)
        return fg_error(FG_ERR_INVALID, "model config: vocab_size = %d must be >= 1", cfg->vocab_size);
    if (cfg->padded_vocab != 0 && cfg->padded_vocab < cfg->vocab_size)
        return fg_error(FG_ERR_INVALID, "model config: padded_vocab = %d is smaller than vocab_size = %d",
                        cfg->padded_vocab, cfg->vocab_size);
    if (cfg->padded_vocab < 0 || cfg->vocab_size > (1 << 30))
        return fg_error(FG_ERR_INVALID, "model config: padded_vocab = %d / vocab_size = %d out of range",
                        cfg->padded_vocab, cfg->vocab_size);
    if (cfg->max_seq_len < 1 || cfg->max_seq_len > (1 << 24))
        return fg_error(FG_ERR_INVALID, "model config: max_seq_len = %d must be in [1, 2^24]", cfg->max_seq_len);
    if (cfg->n_layer < 1 || cfg->n_layer > 4096)
        return fg_error(FG_ERR_INVALID, "model config: n_layer = %d must be in [1, 4096]", cfg->n_layer);
    if (cfg->n_head < 1)
        return fg_error(FG_ERR_INVALID, "model config: n_head = %d must be >= 1", cfg->n_head);
    if (cfg->d_model < 1 || cfg->d_model > (1 << 20))
        return fg_error(FG_ERR_INVALID, "model config: d_model = %d must be in [1, 2^20]", cfg->d_model);
    if (cfg->d_model % cfg->n_head != 0)
        return fg_error(FG_ERR_INVALID, "model config: n_head = %d does not divide d_model = %d", cfg->n_head,
                        cfg->d_model);
    if (cfg->layout == FG_LAYOUT_LLAMA && (cfg->d_model / cfg->n_head) % 2 != 0)
        return fg_error(FG_ERR_INVALID, "model config: head size d_model/n_head = %d must be even for RoPE",
                        cfg->d_model / cfg->n_head);
    if (cfg->d_ff < 0 || cfg->d_ff > (1 << 22))
        return fg_error(FG_ERR_INVALID, "model config: d_ff = %d must be in [0, 2^22] (0 = default)", cfg->d_ff);
    if (!(cfg->norm_eps > 0.0f) || !isfinite(cfg->norm_eps))
        return fg_error(FG_ERR_INVALID, "model config: norm_eps = %g must be a positive finite number",
                        (double)cfg->norm_eps);
    if (cfg->layout == FG_LAYOUT_LLAMA && (!(cfg->rope_theta > 0.0f) || !isfinite(cfg->rope_theta)))
        return fg_error(FG_ERR_INVALID, "model config: rope_theta = %g must be a positive finite number",
                        (double)cfg->rope_theta);
    if (cfg->tie_embeddings != 0 && cfg->tie_embeddings != 1)
        return fg_error(FG_ERR_INVALID, "model config: tie_embeddings = %d must be 0 or 1", cfg->tie_embeddings);
    if (cfg->precision != FG_PRECISION_FP32 && cfg->precision != FG_PRECISION_BF16 &&
        cfg->precision != FG_PRECISION_FP8)
        return fg_error(FG_ERR_INVALID, "model config: precision = %d is none of fp32 (0), bf16 (1), fp8 (2)",
                        (int)cfg->precision);
    if (cfg->fp8_format != FG_FP8_RECIPE_E4M3 && cfg->fp8_format != FG_FP8_RECIPE_HYBRID)
        return fg_error(FG_ERR_INVALID, "model config: fp8_format = %d is neither e4m3 (0) nor hybrid (1)",
                        (int)cfg->fp8_format);
    if (cfg->fp8_format == FG_FP8_RECIPE_HYBRID && cfg->precision != FG_PRECISION_FP8)
        return fg_error(FG_ERR_INVALID, "model config: fp8_format = hybrid needs precision = fp8 (precision is %s)",
                        cfg->precision == FG_PRECISION_BF16 ? "bf16" : "fp32");
    /* QAT hooks the fp32 linear layers; bf16 / fp8 run lowp.c, which has no quantizer */
    if (cfg->qat_layers[0] != '\0' && cfg->precision != FG_PRECISION_FP32)
        return fg_error(FG_ERR_INVALID, "model config: qat_layers = \"%s\" needs precision = fp32 (precision is %s)",
                        cfg->qat_layers, cfg->precision == FG_PRECISION_BF16 ? "bf16" : "fp8");
    if (model_share_validate(cfg) != FG_OK || model_mtp_validate(cfg) != FG_OK) /* share.c, mtp.c */
        return FG_ERR_INVALID;
    fg_status st = model_mla_config_validate(cfg); /* mla_kv_rank == 0: plain attention */
    if (st != FG_OK)
        return st;
    return fg_moe_model_config_validate(cfg); /* moe.n_expert == 0: dense, else the MoE fields */
}

/* Fills padded_vocab and d_ff defaults into a validated config, and the MoE block's
 * width (the one place it is copied). */
static void resolve_config(fg_model_config *c)
{
    c->moe.d_model = c->d_model;
    if (c->padded_vocab == 0)
        c->padded_vocab = (c->vocab_size + 63) / 64 * 64;
    if (c->d_ff == 0) {
        if (c->layout == FG_LAYOUT_GPT2) {
            c->d_ff = 4 * c->d_model;
        } else {
            /* LLaMA: 2/3 of 4C, rounded up to a multiple of 64 */
            int h = (8 * c->d_model + 2) / 3;
            c->d_ff = (h + 63) / 64 * 64;
        }
    }
    /* MLA's decoupled RoPE key: half a head, as DeepSeek-V2 (d_h^R = d_h / 2), kept even */
    if (c->mla_kv_rank > 0 && c->layout == FG_LAYOUT_LLAMA && c->mla_rope_dim == 0) {
        int hs = c->d_model / c->n_head;
        c->mla_rope_dim = hs / 2 >= 2 ? hs / 2 / 2 * 2 : 2;
    }
}

/* ---- parameter table ---- */

enum tensor_kind { KIND_MATRIX, KIND_RESID_PROJ, KIND_BIAS, KIND_NORM, KIND_EMBED };

/* One parameter type: one tensor per layer (per_layer) or a single global tensor.
 * field: offsetof(model_layer_off, x) per layer, offsetof(fg_model, x) global. */
typedef struct param_type {
    const char *name; /* per layer: the suffix after "h.<l>." */
    int per_layer;
    int rows, cols; /* cols == 0: a vector [rows] */
    enum tensor_kind kind;
    size_t field;
} param_type;

#define LAYER_FIELD(x) offsetof(model_layer_off, x)
#define MODEL_FIELD(x) offsetof(fg_model, x)

/* The parameter types of m's layout in flat-buffer order: grouped by type across
 * layers, which for gpt2 is exactly llm.c's checkpoint order (wte, wpe, ln1w, ln1b,
 * qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb),
 * so llm.c import/export is one contiguous read/write. An untied head comes last.
 * Returns the count written to t (at most cap). */
static int param_types(const fg_model *m, param_type *t, int cap)
{
    const fg_model_config *c = &m->cfg;
    int C = c->d_model, Vp = c->padded_vocab, gpt2 = c->layout == FG_LAYOUT_GPT2;
    int n = 0;
#define ADD(nm, pl, r, cl, k, f)                                                                                       \
    do {                                                                                                               \
        FG_ASSERT(n < cap);                                                                                            \
        t[n++] = (param_type){nm, pl, r, cl, k, f};                                                                    \
    } while (0)
    ADD("wte", 0, Vp, C, KIND_EMBED, MODEL_FIELD(wte));
    if (gpt2)
        ADD("wpe", 0, c->max_seq_len, C, KIND_EMBED, MODEL_FIELD(wpe));
    ADD("ln_1.weight", 1, C, 0, KIND_NORM, LAYER_FIELD(ln1w));
    if (gpt2)
        ADD("ln_1.bias", 1, C, 0, KIND_BIAS, LAYER_FIELD(ln1b));
    if (c->mla_kv_rank > 0) { /* MLA in place of qkv (mla.c; docs/MODEL.md "MLA") */
        int r = c->mla_kv_rank, rq = c->mla_q_rank, R = c->mla_rope_dim, D = C / c->n_head + R;
        if (rq > 0) {
            ADD("attn.q_a.weight", 1, rq, C, KIND_MATRIX, LAYER_FIELD(mla_qa));
            if (c->mla_latent_norm)
                ADD("attn.ln_q.weight", 1, rq, 0, KIND_NORM, LAYER_FIELD(mla_lnqw));
            if (c->mla_latent_norm && gpt2)
                ADD("attn.ln_q.bias", 1, rq, 0, KIND_BIAS, LAYER_FIELD(mla_lnqb));
            ADD("attn.q_b.weight", 1, c->n_head * D, rq, KIND_MATRIX, LAYER_FIELD(mla_qb));
        } else {
            ADD("attn.q.weight", 1, c->n_head * D, C, KIND_MATRIX, LAYER_FIELD(mla_q));
        }
        ADD("attn.kv_a.weight", 1, r, C, KIND_MATRIX, LAYER_FIELD(mla_kva));
        if (R > 0)
            ADD("attn.k_rope.weight", 1, R, C, KIND_MATRIX, LAYER_FIELD(mla_kr));
        if (c->mla_latent_norm)
            ADD("attn.ln_kv.weight", 1, r, 0, KIND_NORM, LAYER_FIELD(mla_lnkvw));
        if (c->mla_latent_norm && gpt2)
            ADD("attn.ln_kv.bias", 1, r, 0, KIND_BIAS, LAYER_FIELD(mla_lnkvb));
        ADD("attn.kv_b.weight", 1, 2 * C, r, KIND_MATRIX, LAYER_FIELD(mla_kvb));
    } else {
        ADD("attn.qkv.weight", 1, 3 * C, C, KIND_MATRIX, LAYER_FIELD(qkvw));
        if (gpt2)
            ADD("attn.qkv.bias", 1, 3 * C, 0, KIND_BIAS, LAYER_FIELD(qkvb));
    }
    ADD("attn.proj.weight", 1, C, C, KIND_RESID_PROJ, LAYER_FIELD(attprojw));
    if (gpt2)
        ADD("attn.proj.bias", 1, C, 0, KIND_BIAS, LAYER_FIELD(attprojb));
    ADD("ln_2.weight", 1, C, 0, KIND_NORM, LAYER_FIELD(ln2w));
    if (gpt2)
        ADD("ln_2.bias", 1, C, 0, KIND_BIAS, LAYER_FIELD(ln2b));
    ADD("mlp.fc.weight", 1, m->Fin, C, KIND_MATRIX, LAYER_FIELD(fcw));
    if (gpt2)
        ADD("mlp.fc.bias", 1, m->Fin, 0, KIND_BIAS, LAYER_FIELD(fcb));
    ADD("mlp.proj.weight", 1, C, m->F, KIND_RESID_PROJ, LAYER_FIELD(fcprojw));
    if (gpt2)
        ADD("mlp.proj.bias", 1, C, 0, KIND_BIAS, LAYER_FIELD(fcprojb));
    ADD("ln_f.weight", 0, C, 0, KIND_NORM, MODEL_FIELD(lnfw));
    if (gpt2)
        ADD("ln_f.bias", 0, C, 0, KIND_BIAS, MODEL_FIELD(lnfb));
    if (!c->tie_embeddings)
        ADD("lm_head.weight", 0, Vp, C, KIND_MATRIX, MODEL_FIELD(head));
#undef ADD
    return n;
}

/* MoE layers have no dense FFN tensors (their FFN is moe_model.c's); layers whose FFN
 * matrices derive from the layer before (share.c) have none of those matrices. */
static int skip_for_moe(const fg_model *m, const param_type *p, int l)
{
    if (p->per_layer && model_share_derived(m, l) && (p->field == LAYER_FIELD(fcw) || p->field == LAYER_FIELD(fcprojw)))
        return 1;
    return p->per_layer && model_is_moe_layer(m, l) &&
           (p->field == LAYER_FIELD(fcw) || p->field == LAYER_FIELD(fcb) || p->field == LAYER_FIELD(fcprojw) ||
            p->field == LAYER_FIELD(fcprojb));
}

/* Builds m->tensors and the offsets in m->layer / m; sets m->n_params. */
static fg_status build_tensor_table(fg_model *m)
{
    param_type types[48];
    int nt = param_types(m, types, 48), L = m->cfg.n_layer;
    int count = 0;
    for (int i = 0; i < nt; i++)
        for (int l = 0; l < (types[i].per_layer ? L : 1); l++)
            count += !skip_for_moe(m, &types[i], l);
    count += model_moe_num_tensors(m);
    count += model_share_num_tensors(m);
    count += model_mtp_num_tensors(m);
    count += model_qat_num_tensors(m);
    m->tensors = fg_calloc((size_t)count, sizeof *m->tensors);
    if (!m->tensors)
        return FG_ERR_NOMEM;
    m->n_tensors = count;
    m->wte = m->wpe = m->lnfw = m->lnfb = m->head = FG_NO_TENSOR;
    for (int l = 0; l < L; l++) {
        size_t *o = (size_t *)&m->layer[l];
        for (size_t k = 0; k < sizeof(model_layer_off) / sizeof(size_t); k++)
            o[k] = FG_NO_TENSOR;
    }
    size_t off = 0;
    int ti = 0;
    for (int i = 0; i < nt; i++) {
        const param_type *p = &types[i];
        for (int l = 0; l < (p->per_layer ? L : 1); l++) {
            if (skip_for_moe(m, p, l))
                continue;
            fg_tensor_info *t = &m->tensors[ti++];
            if (p->per_layer) {
                snprintf(t->name, sizeof t->name, "h.%d.%s", l, p->name);
                *(size_t *)((char *)&m->layer[l] + p->field) = off;
            } else {
                snprintf(t->name, sizeof t->name, "%s", p->name);
                *(size_t *)((char *)m + p->field) = off;
            }
            t->offset = off;
            t->ndim = p->cols ? 2 : 1;
            t->shape[0] = p->rows;
            t->shape[1] = p->cols;
            t->numel = (size_t)p->rows * (size_t)(p->cols ? p->cols : 1);
            t->no_decay = p->kind == KIND_BIAS || p->kind == KIND_NORM || p->kind == KIND_EMBED;
            t->frozen = 0;
            t->lr_scale = 1.0f;
            off += t->numel;
        }
    }
    off = model_moe_add_tensors(m, &ti, off);
    off = model_share_add_tensors(m, &ti, off);
    off = model_mtp_add_tensors(m, &ti, off);
    off = model_qat_add_tensors(m, &ti, off);
    FG_ASSERT(ti == count);
    if (m->cfg.tie_embeddings)
        m->head = m->wte;
    m->n_params = off;
    m->n_alloc = model_share_place(m, off); /* derived FFN weights after the stored ones */
    return FG_OK;
}

/* ---- activations ---- */

/* Carves every activation buffer for capacity (B, T) out of base (or only counts when
 * base is NULL). Each buffer starts on a 64-byte boundary. Returns the float count. */
static size_t layout_acts(fg_model *m, float *base)
{
    const fg_model_config *c = &m->cfg;
    size_t N = (size_t)m->B * (size_t)m->T, C = (size_t)c->d_model, Vp = (size_t)c->padded_vocab;
    size_t NH = (size_t)c->n_head, Fin = (size_t)m->Fin, F = (size_t)m->F;
    size_t off = 0;
#define CARVE(ptr, n)                                                                                                  \
    do {                                                                                                               \
        if (base)                                                                                                      \
            (ptr) = base + off;                                                                                        \
        off += ((n) + 15) / 16 * 16;                                                                                   \
    } while (0)
    for (int l = 0; l < c->n_layer; l++) {
        model_layer_acts *a = &m->la[l];
        CARVE(a->ln1, N * C);
        CARVE(a->ln1_mean, N);
        CARVE(a->ln1_rstd, N);
        CARVE(a->qkv, c->mla_kv_rank > 0 ? 0 : N * 3 * C); /* MLA keeps its own (mla.c) */
        CARVE(a->atty, N * C);
        CARVE(a->lse, N * NH);
        CARVE(a->res2, N * C);
        CARVE(a->ln2, N * C);
        CARVE(a->ln2_mean, N);
        CARVE(a->ln2_rstd, N);
        CARVE(a->ffn.fch, N * Fin);
        CARVE(a->ffn.fch_act, N * F);
        CARVE(a->res3, N * C);
    }
    CARVE(m->encoded, N * C);
    CARVE(m->lnf, N * C);
    CARVE(m->lnf_mean, N);
    CARVE(m->lnf_rstd, N);
    CARVE(m->logits, N * Vp);
    CARVE(m->losses, N);
    CARVE(m->dres, N * C);
    CARVE(m->dlogits, N * Vp);
    CARVE(m->dln, N * C);
    CARVE(m->dqkv, N * 3 * C);
    CARVE(m->datty, N * C);
    CARVE(m->dfch, N * Fin);
    CARVE(m->dfch_act, N * F);
#undef CARVE
    return off;
}

/* ---- lifecycle ---- */

fg_model *fg_model_new(const fg_model_config *cfg, int B, int T)
{
    if (fg_model_config_validate(cfg) != FG_OK)
        return NULL;
    if (B < 1 || T < 1 || T > cfg->max_seq_len) {
        fg_error(FG_ERR_INVALID, "fg_model_new: batch B = %d, T = %d must satisfy B >= 1, 1 <= T <= max_seq_len = %d",
                 B, T, cfg->max_seq_len);
        return NULL;
    }
    fg_model *m = fg_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    resolve_config(&m->cfg);
    m->B = B;
    m->T = T;
    m->HS = m->cfg.d_model / m->cfg.n_head;
    m->F = m->cfg.d_ff;
    m->Fin = m->cfg.layout == FG_LAYOUT_LLAMA ? 2 * m->F : m->F;
    size_t N = (size_t)B * (size_t)T;
    if (N * (size_t)m->cfg.padded_vocab > (size_t)1 << 40) {
        fg_error(FG_ERR_INVALID, "fg_model_new: B*T*Vp = %zu logits is too large", N * (size_t)m->cfg.padded_vocab);
        goto fail;
    }
    m->layer = fg_calloc((size_t)m->cfg.n_layer, sizeof *m->layer);
    m->la = fg_calloc((size_t)m->cfg.n_layer, sizeof *m->la);
    if (!m->layer || !m->la)
        goto fail;
    if (model_mtp_new(m) != FG_OK || build_tensor_table(m) != FG_OK)
        goto fail;
    /* pages exist once touched: a pipeline stage touches only its own tensors' spans
     * (docs/DIST.md "Memory per rank") */
    m->params = fg_calloc_lazy(m->n_alloc, sizeof(float));
    m->grads = fg_calloc_lazy(m->n_alloc, sizeof(float));
    if (!m->params || !m->grads)
        goto fail;
    m->inputs = fg_calloc(N, sizeof(int32_t));
    m->targets = fg_calloc(N, sizeof(int32_t));
    if (!m->inputs || !m->targets)
        goto fail;
    if (m->cfg.precision == FG_PRECISION_FP32) { /* bf16 / fp8 keep their own (lowp.c) */
        /* lazy as well: a pipeline stage touches only its layers' activations (and the
         * logits only on the last stage) */
        m->acts = fg_calloc_lazy(layout_acts(m, NULL), sizeof(float));
        if (!m->acts)
            goto fail;
        layout_acts(m, m->acts);
    } else {
        /* the widest operand rows of any layer's GEMM: C, 3C, Fin or F columns (the head
         * runs in row chunks of its own) */
        size_t w = (size_t)m->cfg.d_model * 3;
        if ((size_t)m->Fin > w)
            w = (size_t)m->Fin;
        const fg_moe_config *mc = &m->cfg.moe;
        if (mc->n_expert > 0) { /* routed experts: K rows per token, C or 2H columns */
            size_t we = (size_t)mc->n_expert_active *
                        (size_t)(m->cfg.d_model > 2 * mc->d_expert ? m->cfg.d_model : 2 * mc->d_expert);
            size_t SH2 = 2 * (size_t)mc->n_shared_expert * (size_t)mc->d_expert; /* shared expert: C or 2SH */
            if (we > w)
                w = we;
            if (SH2 > w)
                w = SH2;
        }
        m->bf_cap = N * w;
        m->wbf = fg_calloc(m->n_params, sizeof(uint16_t));
        m->xbf = fg_calloc(m->bf_cap, sizeof(uint16_t));
        m->dbf = fg_calloc(m->bf_cap, sizeof(uint16_t));
        if (!m->wbf || !m->xbf || !m->dbf)
            goto fail;
    }
    if (model_qat_init(m) != FG_OK || model_share_init(m) != FG_OK || model_mtp_init(m) != FG_OK)
        goto fail;
    if (model_moe_init(m) != FG_OK || model_lp_init(m) != FG_OK || model_mla_init(m) != FG_OK)
        goto fail;
    return m;
fail:
    fg_model_delete(m);
    return NULL;
}

void fg_model_delete(fg_model *m)
{
    if (!m)
        return;
    model_kv_free(m);
    model_moe_free(m);
    model_mla_free(m);
    model_lp_free(m);
    model_qat_free(m);
    model_int8_free(m);
    model_stage_free(m); /* stage.c: activation slots, tensor-parallel shard */
    model_share_free(m);
    model_mtp_free(m);
    fg_free(m->wbf);
    fg_free(m->xbf);
    fg_free(m->dbf);
    fg_free(m->inputs);
    fg_free(m->targets);
    fg_free_lazy(m->acts);
    fg_free_lazy(m->grads);
    fg_free_lazy(m->params);
    fg_free(m->tensors);
    fg_free(m->la);
    fg_free(m->layer);
    fg_free(m);
}

const fg_model_config *fg_model_get_config(const fg_model *m)
{
    return &m->cfg;
}
size_t fg_model_num_params(const fg_model *m)
{
    return m->n_params;
}
float *fg_model_params(fg_model *m)
{
    return m->params;
}
float *fg_model_grads(fg_model *m)
{
    return m->grads;
}
int fg_model_num_tensors(const fg_model *m)
{
    return m->n_tensors;
}
const fg_tensor_info *fg_model_tensor(const fg_model *m, int i)
{
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}
const fg_tensor_info *fg_model_find_tensor(const fg_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}
const float *fg_model_logits(const fg_model *m)
{
    return m->logits;
}

static size_t al16(size_t n) /* a CARVE'd buffer of n floats, in floats */
{
    return (n + 15) / 16 * 16;
}

size_t fg_model_activation_bytes(const fg_model *m, fg_model_act_bytes *parts)
{
    fg_model_act_bytes b = {0, 0};
    size_t N = (size_t)m->B * (size_t)m->T, C = (size_t)m->cfg.d_model;
    if (m->lp) {
        b.saved = m->lp->saved_bytes;
        b.scratch = m->lp->scratch_bytes + 2 * m->bf_cap * sizeof(uint16_t); /* + the bf16 GEMM operands */
    } else {
        /* the backward scratch of layout_acts; everything else there is written by forward */
        size_t scr = 3 * al16(N * C) + al16(3 * N * C) + al16(N * (size_t)m->Fin) + al16(N * (size_t)m->F);
        b.scratch = scr * sizeof(float);
        b.saved = layout_acts((fg_model *)m, NULL) * sizeof(float) - b.scratch;
    }
    size_t mtp_saved, mtp_scratch; /* multi-token prediction modules (mtp.c) */
    model_mtp_act_bytes(m, &mtp_saved, &mtp_scratch);
    b.saved += mtp_saved;
    b.scratch += mtp_scratch;
    size_t mla_saved = 0, mla_scratch = 0; /* MLA's own caches and scratch (0 when off) */
    model_mla_act_bytes(m, &mla_saved, &mla_scratch);
    b.saved += mla_saved;
    b.scratch += mla_scratch;
    if (m->moe) { /* MoE caches (fp32 at every precision) and their backward scratch */
        fg_moe_config mc = m->cfg.moe;
        mc.d_model = m->cfg.d_model;
        for (int l = 0; l < m->cfg.n_layer; l++)
            if (model_is_moe_layer(m, l))
                b.saved += fg_moe_layer_bytes(&mc, (int)N);
        b.scratch += fg_moe_scratch_bytes(&mc, (int)N);
    }
    if (parts)
        *parts = b;
    return b.saved + b.scratch;
}

void fg_model_init_weights(fg_model *m, uint64_t seed)
{
    fg_model_init_weights_keep(m, seed, NULL, NULL);
}

void fg_model_init_weights_keep(fg_model *m, uint64_t seed, int (*keep)(void *ctx, const fg_tensor_info *t), void *ctx)
{
    fg_rng rng;
    fg_rng_seed(&rng, seed);
    float resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    int V = m->cfg.vocab_size;
    for (int i = 0; i < m->n_tensors; i++) {
        const fg_tensor_info *t = &m->tensors[i];
        float *p = m->params + t->offset;
        const char *nm = strrchr(t->name, '.') ? strrchr(t->name, '.') + 1 : t->name;
        int is_norm = strstr(t->name, "ln_") != NULL && strcmp(nm, "weight") == 0;
        int is_bias = strcmp(nm, "bias") == 0;
        int is_resid = strstr(t->name, "proj.weight") != NULL;
        int is_vocab = strcmp(t->name, "wte") == 0 || strcmp(t->name, "lm_head.weight") == 0;
        if (keep && !keep(ctx, t)) { /* the draws only, so the next tensors get their values */
            for (size_t j = 0; j < t->numel; j++)
                if (!t->frozen && !is_norm && !is_bias && !(is_vocab && j >= (size_t)V * (size_t)t->shape[1]))
                    (void)fg_rng_normal(&rng);
            continue;
        }
        for (size_t j = 0; j < t->numel; j++) {
            if (t->frozen)
                p[j] = 0.0f; /* MoE router bias and load history start neutral */
            else if (is_norm)
                p[j] = 1.0f;
            else if (is_bias)
                p[j] = 0.0f;
            else if (is_vocab && j >= (size_t)V * (size_t)t->shape[1])
                p[j] = 0.0f; /* padding rows of the vocabulary: never a token, never a logit that counts */
            else
                p[j] = (is_resid ? resid_std : 0.02f) * fg_rng_normal(&rng);
        }
    }
    model_moe_init_weights(m);
    model_mla_init_weights(m);
    model_share_init_weights(m);
    model_qat_init_weights(m);
}

void fg_model_zero_grad(fg_model *m)
{
    memset(m->grads, 0, m->n_params * sizeof(float));
}

/* fg_model_num_active_params, fg_model_post_step, fg_model_moe_stats and
 * fg_model_moe_print_loads live in moe_model.c (trivial for dense models). */

double fg_model_flops_per_token(const fg_model *m, int T)
{
    /* llm.c: 6 N (forward 2N + backward 4N multiply-adds as 2 flops) plus causal
     * attention 6 L T C (QK^T and AV: 4 T C per token if full, halved by the mask,
     * times 3 for forward + backward). */
    const fg_model_config *c = &m->cfg;
    /* FFN sharing's seed form adds the materialisation of its weights, once per step of
     * the model's B x T tokens (its derived weights are counted as active) */
    /* MLA: QK^T over heads of HS + R, AV over heads of HS: 3 L T (NH (HS + R) + C) */
    double att = c->mla_kv_rank > 0
                     ? 3.0 * c->n_layer * (double)T * (c->n_head * (m->HS + c->mla_rope_dim) + c->d_model)
                     : 6.0 * c->n_layer * (double)T * c->d_model;
    /* FFN sharing's seed form adds the materialisation of its weights, once per step of
     * the model's B x T tokens (its derived weights are counted as active) */
    return 6.0 * (double)fg_model_num_active_params(m) + att +
           model_share_step_flops(m) / ((double)m->B * (double)m->T) + model_mtp_flops_per_token(m, T);
}

/* ---- layers ---- */

void model_norm_forward(const fg_model *m, float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, int N)
{
    if (m->cfg.layout == FG_LAYOUT_GPT2)
        fg_layernorm_forward(out, mean, rstd, inp, w, b, N, m->cfg.d_model, m->cfg.norm_eps);
    else
        fg_rmsnorm_forward(out, rstd, inp, w, N, m->cfg.d_model, m->cfg.norm_eps);
}

/* dinp[N,C] += norm backward; dw, db accumulate (db unused by RMSNorm). */
void model_norm_backward(fg_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const float *mean, const float *rstd, int N)
{
    if (m->cfg.layout == FG_LAYOUT_GPT2)
        fg_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, m->cfg.d_model);
    else
        fg_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, m->cfg.d_model);
}

/* ---- linear layers (fp32: bf16 and fp8 run lowp.c's) ---- */

void model_linear_forward(const fg_model *m, float *out, const float *inp, const float *weight, const float *bias,
                          int N, int C, int OC)
{
    if (m->i8 && model_int8_linear_forward(m, out, inp, weight, bias, N, C, OC))
        return;
    if (m->qat && model_qat_linear_forward(m, out, inp, weight, bias, N, C, OC))
        return;
    fg_matmul_forward(out, inp, weight, bias, N, C, OC);
}

void model_linear_backward(const fg_model *m, float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int N, int C, int OC)
{
    if (m->qat && model_qat_linear_backward(m, dinp, dweight, dbias, dout, inp, weight, N, C, OC))
        return;
    fg_matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}

void model_ffn_forward(fg_model *m, int l, float *out, const float *inp, int N, model_ffn_acts *a)
{
    if (model_is_moe_layer(m, l)) {
        model_moe_ffn_forward(m, l, out, inp, N);
        return;
    }
    const model_layer_off *o = &m->layer[l];
    int C = m->cfg.d_model;
    /* fch = inp @ fcw^T + fcb: [N,F] (gpt2) or [N,2F] = [gate | up] (llama) */
    MODEL_PROF(m, OP_FC, model_linear_forward(m, a->fch, inp, model_p(m, o->fcw), model_p(m, o->fcb), N, C, m->Fin));
    if (m->cfg.layout == FG_LAYOUT_GPT2)
        MODEL_PROF(m, OP_ACT, fg_gelu_forward(a->fch_act, a->fch, (size_t)N * (size_t)m->F));
    else
        MODEL_PROF(m, OP_ACT, fg_swiglu_forward(a->fch_act, a->fch, N, m->F));
    MODEL_PROF(m, OP_FCPROJ,
               model_linear_forward(m, out, a->fch_act, model_p(m, o->fcprojw), model_p(m, o->fcprojb), N, m->F, C));
}

void model_ffn_backward(fg_model *m, int l, float *dinp, const float *dout, const float *inp, int N,
                        const model_ffn_acts *a, float *dfch, float *dfch_act)
{
    if (model_is_moe_layer(m, l)) {
        model_moe_ffn_backward(m, l, dinp, dout, inp, N);
        return;
    }
    const model_layer_off *o = &m->layer[l];
    int C = m->cfg.d_model;
    MODEL_PROF(m, OP_ZERO, memset(dfch_act, 0, (size_t)N * (size_t)m->F * sizeof(float)));
    MODEL_PROF(m, OP_ZERO, memset(dfch, 0, (size_t)N * (size_t)m->Fin * sizeof(float)));
    /* out = fch_act @ fcprojw^T + fcprojb */
    MODEL_PROF(m, OP_FCPROJ,
               model_linear_backward(m, dfch_act, model_g(m, o->fcprojw), model_g(m, o->fcprojb), dout, a->fch_act,
                                     model_p(m, o->fcprojw), N, m->F, C));
    /* fch_act = gelu(fch) or silu(gate) * up */
    if (m->cfg.layout == FG_LAYOUT_GPT2)
        MODEL_PROF(m, OP_ACT, fg_gelu_backward(dfch, dfch_act, a->fch, (size_t)N * (size_t)m->F));
    else
        MODEL_PROF(m, OP_ACT, fg_swiglu_backward(dfch, dfch_act, a->fch, N, m->F));
    /* fch = inp @ fcw^T + fcb */
    MODEL_PROF(m, OP_FC,
               model_linear_backward(m, dinp, model_g(m, o->fcw), model_g(m, o->fcb), dfch, inp, model_p(m, o->fcw), N,
                                     C, m->Fin));
}

/* ---- forward / backward ---- */

/* Layer l's forward on the residual stream res [B*T, C] (the embedding output or the
 * previous layer's res3, or a pipeline stage's received input): its output is la[l].res3.
 * The pieces model_forward runs, shared with the pipeline stages of stage.c. */
void model_layer_forward(fg_model *m, int l, const float *res, int B, int T)
{
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, NH = c->n_head;
    const model_layer_off *o = &m->layer[l];
    model_layer_acts *a = &m->la[l];
    MODEL_PROF(
        m, OP_NORM,
        model_norm_forward(m, a->ln1, a->ln1_mean, a->ln1_rstd, res, model_p(m, o->ln1w), model_p(m, o->ln1b), N));
    if (m->mla) {
        MODEL_PROF(m, OP_ATTN, model_mla_forward(m, l, a->atty, a->ln1, B, T));
    } else {
        MODEL_PROF(m, OP_QKV,
                   model_linear_forward(m, a->qkv, a->ln1, model_p(m, o->qkvw), model_p(m, o->qkvb), N, C, 3 * C));
        if (c->layout == FG_LAYOUT_LLAMA) {
            MODEL_PROF(m, OP_ROPE, fg_rope_forward(a->qkv, B, T, NH, m->HS, 3 * C, 0, c->rope_theta));     /* q */
            MODEL_PROF(m, OP_ROPE, fg_rope_forward(a->qkv + C, B, T, NH, m->HS, 3 * C, 0, c->rope_theta)); /* k */
        }
        MODEL_PROF(m, OP_ATTN, fg_attention_forward(a->atty, a->lse, a->qkv, B, T, C, NH));
    }
    /* res2 = res + atty @ attprojw^T + attprojb (projection written in place, then added) */
    MODEL_PROF(m, OP_ATTPROJ,
               model_linear_forward(m, a->res2, a->atty, model_p(m, o->attprojw), model_p(m, o->attprojb), N, C, C));
    MODEL_PROF(m, OP_RESID, fg_add(a->res2, a->res2, res, (size_t)N * C));
    MODEL_PROF(
        m, OP_NORM,
        model_norm_forward(m, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, model_p(m, o->ln2w), model_p(m, o->ln2b), N));
    model_ffn_forward(m, l, a->res3, a->ln2, N, &a->ffn);
    MODEL_PROF(m, OP_RESID, fg_add(a->res3, a->res3, a->res2, (size_t)N * C));
}

/* Final norm, head and (with targets) the loss of the residual stream res [N, C]. */
fg_status model_head_forward(fg_model *m, const float *res, const int32_t *targets, int N, float *loss)
{
    const fg_model_config *c = &m->cfg;
    int C = c->d_model, V = c->vocab_size, Vp = c->padded_vocab;
    MODEL_PROF(
        m, OP_NORM,
        model_norm_forward(m, m->lnf, m->lnf_mean, m->lnf_rstd, res, model_p(m, m->lnfw), model_p(m, m->lnfb), N));
    /* logits[N,Vp] = lnf @ head^T (padding rows of head give padding columns, ignored) */
    MODEL_PROF(m, OP_HEAD, model_linear_forward(m, m->logits, m->lnf, m->params + m->head, NULL, N, C, Vp));
    if (targets) {
        double sum = 0.0;
        /* One pass gives the losses and dlogits for loss_scale 1 (softmax is not
         * recomputed in backward); backward rescales dlogits if asked for another scale. */
        m->dlogits_scale = m->n_counted > 0 ? 1.0f / (float)m->n_counted : 0.0f;
        MODEL_PROF(m, OP_XENT,
                   sum = fg_softmax_xent(m->dlogits, m->losses, m->logits, m->targets, N, V, Vp, m->dlogits_scale));
        float l = m->n_counted > 0 ? (float)(sum / m->n_counted) : 0.0f;
        l += model_moe_aux_loss(m); /* SEQAUX / SWITCH balance losses (0 otherwise) */
        if (!isfinite(l))
            return fg_error(FG_ERR_NUMERIC, "fg_model_forward: loss is %g", (double)l);
        if (loss)
            *loss = l;
    } else if (loss) {
        *loss = 0.0f;
    }
    return FG_OK;
}

static fg_status model_forward(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss)
{
    const fg_model_config *c = &m->cfg;
    if (B < 1 || T < 1 || B > m->B || T > m->T || (size_t)B * (size_t)T > (size_t)m->B * (size_t)m->T)
        return fg_error(FG_ERR_INVALID, "fg_model_forward: B = %d, T = %d exceed the capacity B = %d, T = %d", B, T,
                        m->B, m->T);
    int N = B * T, C = c->d_model, V = c->vocab_size;
    for (int i = 0; i < N; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            return fg_error(FG_ERR_INVALID, "fg_model_forward: inputs[%d] = %d is outside the vocabulary [0, %d)", i,
                            inputs[i], V);
        if (targets && targets[i] >= V)
            return fg_error(FG_ERR_INVALID, "fg_model_forward: targets[%d] = %d is outside the vocabulary [0, %d)", i,
                            targets[i], V);
    }
    m->fwd_done = 0;
    m->cur_B = B;
    m->cur_T = T;
    memcpy(m->inputs, inputs, (size_t)N * sizeof(int32_t));
    m->has_targets = targets != NULL;
    m->n_counted = 0;
    if (targets) {
        memcpy(m->targets, targets, (size_t)N * sizeof(int32_t));
        for (int i = 0; i < N; i++)
            m->n_counted += targets[i] >= 0;
    }

    m->prof_dir = 0;
    m->prof_calls[0] += m->prof_on;
    if (m->lp) {
        fg_status st = model_lp_forward(m, targets, B, T, loss);
        m->fwd_done = st == FG_OK;
        return st;
    }
    model_share_refresh(m); /* FFN sharing: derived weights from the current params */
    MODEL_PROF(m, OP_EMBED,
               fg_embedding_forward(m->encoded, m->inputs, m->params + m->wte, model_p(m, m->wpe), N, T, C));
    const float *res = m->encoded;
    for (int l = 0; l < c->n_layer; l++) {
        model_layer_forward(m, l, res, B, T);
        res = m->la[l].res3;
    }
    fg_status st = model_head_forward(m, res, targets, N, loss);
    if (st == FG_OK && targets)
        st = model_mtp_forward(m, B, T); /* multi-token prediction: its own loss (mtp.c) */
    if (st != FG_OK)
        return st;
    m->fwd_done = 1;
    return FG_OK;
}

/* Backward of the loss through the head and the final norm: m->dres (zeroed here) gets
 * d(loss)/d(res_last), res_last the residual stream entering the final norm. */
void model_head_backward(fg_model *m, const float *res_last, float loss_scale)
{
    const fg_model_config *c = &m->cfg;
    int N = m->cur_B * m->cur_T, C = c->d_model, V = c->vocab_size, Vp = c->padded_vocab;
    size_t NC = (size_t)N * C;
    /* loss = sum(losses) / n_counted: dlogits = loss_scale / n_counted * (softmax - onehot);
     * the forward left it computed for its own scale m->dlogits_scale. */
    float want = loss_scale / (float)m->n_counted;
    if (want != m->dlogits_scale) {
        if (m->dlogits_scale != 0.0f && isfinite(want / m->dlogits_scale))
            MODEL_PROF(m, OP_XENT, fg_scale(m->dlogits, want / m->dlogits_scale, (size_t)N * Vp));
        else
            MODEL_PROF(m, OP_XENT, fg_softmax_xent(m->dlogits, m->losses, m->logits, m->targets, N, V, Vp, want));
        m->dlogits_scale = want;
    }
    MODEL_PROF(m, OP_ZERO, memset(m->dln, 0, NC * sizeof(float)));
    MODEL_PROF(
        m, OP_HEAD,
        model_linear_backward(m, m->dln, m->grads + m->head, NULL, m->dlogits, m->lnf, m->params + m->head, N, C, Vp));
    MODEL_PROF(m, OP_ZERO, memset(m->dres, 0, NC * sizeof(float)));
    MODEL_PROF(m, OP_NORM,
               model_norm_backward(m, m->dres, model_g(m, m->lnfw), model_g(m, m->lnfb), m->dln, res_last,
                                   model_p(m, m->lnfw), m->lnf_mean, m->lnf_rstd, N));
}

/* Layer l's backward: m->dres holds d(loss)/d(la[l].res3) and becomes d(loss)/d(res),
 * res the layer's input as given to model_layer_forward. */
void model_layer_backward(fg_model *m, int l, const float *res, int B, int T)
{
    const fg_model_config *c = &m->cfg;
    int N = B * T, C = c->d_model, NH = c->n_head;
    size_t NC = (size_t)N * C;
    const model_layer_off *o = &m->layer[l];
    model_layer_acts *a = &m->la[l];
    /* res3 = res2 + FFN(ln2(res2)) */
    MODEL_PROF(m, OP_ZERO, memset(m->dln, 0, NC * sizeof(float)));
    model_ffn_backward(m, l, m->dln, m->dres, a->ln2, N, &a->ffn, m->dfch, m->dfch_act);
    MODEL_PROF(m, OP_NORM,
               model_norm_backward(m, m->dres, model_g(m, o->ln2w), model_g(m, o->ln2b), m->dln, a->res2,
                                   model_p(m, o->ln2w), a->ln2_mean, a->ln2_rstd, N));
    /* res2 = res + atty @ attprojw^T + attprojb */
    MODEL_PROF(m, OP_ZERO, memset(m->datty, 0, NC * sizeof(float)));
    MODEL_PROF(m, OP_ATTPROJ,
               model_linear_backward(m, m->datty, model_g(m, o->attprojw), model_g(m, o->attprojb), m->dres, a->atty,
                                     model_p(m, o->attprojw), N, C, C));
    if (m->mla) { /* atty = MLA(ln1) */
        MODEL_PROF(m, OP_ZERO, memset(m->dln, 0, NC * sizeof(float)));
        MODEL_PROF(m, OP_ATTN, model_mla_backward(m, l, m->dln, m->datty, a->ln1, B, T));
    } else {
        /* atty = attention(qkv) */
        MODEL_PROF(m, OP_ZERO, memset(m->dqkv, 0, 3 * NC * sizeof(float)));
        MODEL_PROF(m, OP_ATTN, fg_attention_backward(m->dqkv, m->datty, a->qkv, a->atty, a->lse, B, T, C, NH));
        if (c->layout == FG_LAYOUT_LLAMA) { /* q, k were rotated in place after the projection */
            MODEL_PROF(m, OP_ROPE, fg_rope_backward(m->dqkv, B, T, NH, m->HS, 3 * C, 0, c->rope_theta));
            MODEL_PROF(m, OP_ROPE, fg_rope_backward(m->dqkv + C, B, T, NH, m->HS, 3 * C, 0, c->rope_theta));
        }
        /* qkv = ln1 @ qkvw^T + qkvb; ln1 = norm(res) */
        MODEL_PROF(m, OP_ZERO, memset(m->dln, 0, NC * sizeof(float)));
        MODEL_PROF(m, OP_QKV,
                   model_linear_backward(m, m->dln, model_g(m, o->qkvw), model_g(m, o->qkvb), m->dqkv, a->ln1,
                                         model_p(m, o->qkvw), N, C, 3 * C));
    }
    MODEL_PROF(m, OP_NORM,
               model_norm_backward(m, m->dres, model_g(m, o->ln1w), model_g(m, o->ln1b), m->dln, res,
                                   model_p(m, o->ln1w), a->ln1_mean, a->ln1_rstd, N));
}

static fg_status model_backward(fg_model *m, float loss_scale)
{
    const fg_model_config *c = &m->cfg;
    if (!m->fwd_done)
        return fg_error(FG_ERR_INVALID, "fg_model_backward: no successful forward to backpropagate");
    if (!m->has_targets)
        return fg_error(FG_ERR_INVALID, "fg_model_backward: the last forward had no targets (logits only)");
    int B = m->cur_B, T = m->cur_T, N = B * T, C = c->d_model;
    if (m->n_counted == 0)
        return FG_OK; /* every target ignored: the mean loss is the constant 0 */
    m->moe_loss_scale = loss_scale;

    m->prof_dir = 1;
    m->prof_calls[1] += m->prof_on;
    if (m->lp)
        return model_lp_backward(m, loss_scale);
    model_share_zero_grads(m);
    model_head_backward(m, m->la[c->n_layer - 1].res3, loss_scale);
    model_mtp_backward(m, loss_scale); /* multi-token prediction: into m->dres, wte / head */
    /* m->dres holds d(loss)/d(res3 of layer l); each step below turns it into the
     * gradient of the layer's input, by accumulating both residual branches into it. */
    for (int l = c->n_layer - 1; l >= 0; l--) {
        model_layer_backward(m, l, l == 0 ? m->encoded : m->la[l - 1].res3, B, T);
        model_share_fold(m, l); /* FFN sharing: this layer's FFN grads to U, V, a and its source */
        if (m->grad_hook)
            m->grad_hook(m->grad_hook_ctx, l);
    }
    /* encoded = wte[inputs] (+ wpe[t]) */
    MODEL_PROF(m, OP_EMBED, fg_embedding_backward(m->grads + m->wte, model_g(m, m->wpe), m->dres, m->inputs, N, T, C));
    return FG_OK;
}

/* The bf16 copy of the weights is refreshed at each forward and used only inside
 * forward and backward (bf_live): generation runs between optimiser steps and after
 * loads, where the copy may be stale, so it keeps the fp32 path. */
fg_status fg_model_forward(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss)
{
    if (m->wbf && !m->wbf_set) /* the weights changed since the last forward (optimiser step, load) */
        model_lp_refresh_weights(m);
    m->wbf_set = 0;
    m->bf_live = m->wbf != NULL;
    fg_status st = model_forward(m, inputs, targets, B, T, loss);
    m->bf_live = 0;
    return st == FG_OK ? model_moe_ep_status(m) : st;
}

uint16_t *fg_model_bf16_weights(fg_model *m)
{
    /* fp8 runs its weights through e4m3 128x128 blocks at each forward: a plain bf16
     * copy written by the optimiser would skip that, so fp8 keeps its own refresh */
    if (m->cfg.precision != FG_PRECISION_BF16)
        return NULL;
    m->wbf_set = 1;
    return m->wbf;
}

fg_status fg_model_backward(fg_model *m, float loss_scale)
{
    m->bf_live = m->wbf != NULL;
    fg_status st = model_backward(m, loss_scale);
    m->bf_live = 0;
    return st == FG_OK ? model_moe_ep_status(m) : st;
}

void fg_model_set_grad_hook(fg_model *m, fg_model_grad_hook fn, void *ctx)
{
    m->grad_hook = fn;
    m->grad_hook_ctx = ctx;
}

/* ---- profile ---- */

void fg_model_profile(fg_model *m, int on)
{
    m->prof_on = on != 0;
    if (!on)
        return; /* stop, keeping the counts for fg_model_profile_print */
    memset(m->prof, 0, sizeof m->prof);
    memset(m->prof_calls, 0, sizeof m->prof_calls);
}

void fg_model_profile_print(const fg_model *m, FILE *f)
{
    static const char *const names[OP_COUNT] = {
        "embedding",   "norm",           "qkv matmul",   "rope",        "attention",    "attn proj matmul", "fc matmul",
        "gelu/swiglu", "fc proj matmul", "residual add", "head matmul", "softmax+xent", "zero grads"};
    /* forward FLOPs per call of the GEMM-like ops at the last forward's B, T (backward
     * = 2x); dense FFN layers only (a MoE layer's FFN is not timed in these slots) */
    const fg_model_config *c = &m->cfg;
    double N = (double)m->cur_B * m->cur_T, C = c->d_model, L = c->n_layer, Ld = 0;
    for (int l = 0; l < c->n_layer; l++)
        Ld += !model_is_moe_layer(m, l);
    double fl[OP_COUNT] = {0};
    fl[OP_QKV] = 2 * N * C * 3 * C * L;
    fl[OP_ATTPROJ] = 2 * N * C * C * L;
    fl[OP_FC] = 2 * N * C * m->Fin * Ld;
    fl[OP_FCPROJ] = 2 * N * m->F * C * Ld;
    fl[OP_HEAD] = 2 * N * C * c->padded_vocab;
    fl[OP_ATTN] = 2 * N * m->cur_T * C * L; /* QK^T and AV, halved by the causal mask */
    double tot[2] = {0, 0};
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < OP_COUNT; i++)
            tot[d] += m->prof[d][i];
    double all = tot[0] + tot[1];
    long nf = m->prof_calls[0], nb = m->prof_calls[1];
    fprintf(f, "%-18s %12s %12s %8s %10s %10s\n", "op", "fwd ms/call", "bwd ms/call", "share", "fwd GF/s", "bwd GF/s");
    for (int i = 0; i < OP_COUNT; i++) {
        double fw = nf ? m->prof[0][i] / nf : 0.0, bw = nb ? m->prof[1][i] / nb : 0.0;
        double share = all > 0 ? 100.0 * (m->prof[0][i] + m->prof[1][i]) / all : 0.0;
        fprintf(f, "%-18s %12.3f %12.3f %7.1f%%", names[i], 1e3 * fw, 1e3 * bw, share);
        if (fl[i] > 0 && fw > 0 && bw > 0)
            fprintf(f, " %10.1f %10.1f", 1e-9 * fl[i] / fw, 1e-9 * 2 * fl[i] / bw);
        fprintf(f, "\n");
    }
    fprintf(f, "%-18s %12.3f %12.3f %7.1f%%\n", "total", nf ? 1e3 * tot[0] / nf : 0.0, nb ? 1e3 * tot[1] / nb : 0.0,
            100.0);
}
