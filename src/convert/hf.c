/* hf.c: Hugging Face transformers directories: GPT2LMHeadModel, LlamaForCausalLM and
 * (MoE) Glm4MoeForCausalLM (config.json, generation_config.json, safetensors weights,
 * tokenizer.json) from and into Frugal models. Left out: grouped-query attention,
 * attention biases, rope scaling (refused on import, naming the key). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert_impl.h"
#include "frugal/convert.h"

/* ---- shared helpers ---- */
int cv_byte_unicode(int b)
{
    /* printable Latin-1 bytes stand for themselves; the other 68 map to 256.. in order */
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF)))
            n++;
    return 256 + n;
}

int cv_bytes_to_bpe(const uint8_t *bytes, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int cp = cv_byte_unicode(bytes[i]);
        if (o + 3 >= cap)
            return -1;
        if (cp < 0x80)
            out[o++] = (char)cp;
        else {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[o] = 0;
    return (int)o;
}

static size_t map_numel(const cv_map *e)
{
    return e->op == CV_COPY ? e->ti->numel : (size_t)e->rows * e->cols;
}

void cv_gather(const float *params, const cv_map *e, float *out)
{
    const float *p = params + e->ti->offset;
    if (e->op == CV_COPY)
        memcpy(out, p, e->ti->numel * sizeof(float));
    else if (e->op == CV_ROWS)
        memcpy(out, p + (size_t)e->row0 * e->cols, (size_t)e->rows * e->cols * sizeof(float));
    else
        for (int i = 0; i < e->rows; i++)
            for (int j = 0; j < e->cols; j++)
                out[(size_t)j * e->rows + i] = p[(size_t)i * e->cols + j];
    if (e->scale != 1.0f)
        for (size_t i = 0, n = map_numel(e); i < n; i++)
            out[i] *= e->scale;
}

void cv_scatter(float *params, const cv_map *e, const float *in)
{
    float *p = params + e->ti->offset;
    if (e->op == CV_COPY)
        memcpy(p, in, e->ti->numel * sizeof(float));
    else if (e->op == CV_ROWS)
        memcpy(p + (size_t)e->row0 * e->cols, in, (size_t)e->rows * e->cols * sizeof(float));
    else
        for (int i = 0; i < e->rows; i++)
            for (int j = 0; j < e->cols; j++)
                p[(size_t)i * e->cols + j] = in[(size_t)j * e->rows + i];
    FG_ASSERT(e->scale == 1.0f); /* imports build models whose router logit scale is 1 */
}

/* The outside shape of an entry. */
static int map_shape(const cv_map *e, int64_t *shape)
{
    if (e->op == CV_COPY) {
        for (int d = 0; d < e->ti->ndim; d++)
            shape[d] = e->ti->shape[d];
        return e->ti->ndim;
    }
    shape[0] = e->op == CV_TRANS ? e->cols : e->rows;
    shape[1] = e->op == CV_TRANS ? e->rows : e->cols;
    return 2;
}

/* ---- the name maps ---- */
static void add(cv_map *out, int *n, const fg_model *m, const char *fr, cv_op op, int row0, int rows, const char *fmt,
                ...) __attribute__((format(printf, 8, 9)));
static void add(cv_map *out, int *n, const fg_model *m, const char *fr, cv_op op, int row0, int rows, const char *fmt,
                ...)
{
    cv_map *e = &out[*n];
    memset(e, 0, sizeof *e);
    e->ti = fg_model_find_tensor(m, fr);
    FG_ASSERT(e->ti);
    e->op = op;
    e->cols = e->ti->ndim >= 2 ? e->ti->shape[e->ti->ndim - 1] : 0; /* 3-D experts: rows of [E*R, cols] */
    e->scale = 1.0f;
    e->row0 = row0;
    e->rows = op == CV_ROWS ? rows : e->ti->shape[0];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    (*n)++;
}

static int map_count(const fg_model *m)
{
    const fg_model_config *c = fg_model_get_config(m);
    return (16 + 3 * c->moe.n_expert) * c->n_layer + 8;
}

/* A MoE layer as Glm4MoeForCausalLM's (the legacy per-expert names that GLM-4.5
 * checkpoints use and transformers converts on load): router, its selection bias, each
 * routed expert's SwiGLU, the shared experts as one SwiGLU of S x H. */
static void moe_map(const fg_model *m, int l, cv_map *out, int *n)
{
    const fg_moe_config *mc = &fg_model_get_config(m)->moe;
    int E = mc->n_expert, H = mc->d_expert, C = mc->d_model, SH = mc->n_shared_expert * H;
    char fr[64];
    snprintf(fr, sizeof fr, "h.%d.moe.router.weight", l);
    add(out, n, m, fr, CV_COPY, 0, 0, "model.layers.%d.mlp.gate.weight", l);
    out[*n - 1].scale = mc->router_logit_scale; /* Frugal's logits are scale x W x */
    snprintf(fr, sizeof fr, "h.%d.moe.router.bias", l);
    add(out, n, m, fr, CV_COPY, 0, 0, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    out[*n - 1].scale = mc->balance == FG_BALANCE_BIAS ? 1.0f : 0.0f; /* the bias picks experts only under BIAS */
    for (int e = 0; e < E; e++) {
        snprintf(fr, sizeof fr, "h.%d.moe.experts.fc.weight", l);
        add(out, n, m, fr, CV_ROWS, e * 2 * H, H, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
        add(out, n, m, fr, CV_ROWS, e * 2 * H + H, H, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
        snprintf(fr, sizeof fr, "h.%d.moe.experts.proj.weight", l);
        add(out, n, m, fr, CV_ROWS, e * C, C, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
    }
    if (SH > 0) {
        snprintf(fr, sizeof fr, "h.%d.moe.shared.fc.weight", l);
        add(out, n, m, fr, CV_ROWS, 0, SH, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l);
        add(out, n, m, fr, CV_ROWS, SH, SH, "model.layers.%d.mlp.shared_experts.up_proj.weight", l);
        snprintf(fr, sizeof fr, "h.%d.moe.shared.proj.weight", l);
        add(out, n, m, fr, CV_COPY, 0, 0, "model.layers.%d.mlp.shared_experts.down_proj.weight", l);
    }
}

/* Every tensor of m under its transformers name (GPT-2: under `prefix`, "transformer."
 * as save_pretrained writes it or "" as the original OpenAI conversion did). */
static int hf_map(const fg_model *m, const char *prefix, cv_map *out)
{
    const fg_model_config *c = fg_model_get_config(m);
    int n = 0, C = c->d_model, V = c->vocab_size;
    char fr[64];
    if (c->layout == FG_LAYOUT_GPT2) {
        add(out, &n, m, "wte", CV_ROWS, 0, V, "%swte.weight", prefix);
        add(out, &n, m, "wpe", CV_COPY, 0, 0, "%swpe.weight", prefix);
        static const char *const parts[][3] = {
            {"ln_1.weight", "ln_1.weight", "c"},
            {"ln_1.bias", "ln_1.bias", "c"},
            {"attn.qkv.weight", "attn.c_attn.weight", "t"},
            {"attn.qkv.bias", "attn.c_attn.bias", "c"},
            {"attn.proj.weight", "attn.c_proj.weight", "t"},
            {"attn.proj.bias", "attn.c_proj.bias", "c"},
            {"ln_2.weight", "ln_2.weight", "c"},
            {"ln_2.bias", "ln_2.bias", "c"},
            {"mlp.fc.weight", "mlp.c_fc.weight", "t"},
            {"mlp.fc.bias", "mlp.c_fc.bias", "c"},
            {"mlp.proj.weight", "mlp.c_proj.weight", "t"},
            {"mlp.proj.bias", "mlp.c_proj.bias", "c"},
        };
        for (int l = 0; l < c->n_layer; l++)
            for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
                snprintf(fr, sizeof fr, "h.%d.%s", l, parts[i][0]);
                add(out, &n, m, fr, parts[i][2][0] == 't' ? CV_TRANS : CV_COPY, 0, 0, "%sh.%d.%s", prefix, l,
                    parts[i][1]);
            }
        add(out, &n, m, "ln_f.weight", CV_COPY, 0, 0, "%sln_f.weight", prefix);
        add(out, &n, m, "ln_f.bias", CV_COPY, 0, 0, "%sln_f.bias", prefix);
    } else {
        int F = fg_model_get_config(m)->d_ff;
        add(out, &n, m, "wte", CV_ROWS, 0, V, "model.embed_tokens.weight");
        for (int l = 0; l < c->n_layer; l++) {
            snprintf(fr, sizeof fr, "h.%d.ln_1.weight", l);
            add(out, &n, m, fr, CV_COPY, 0, 0, "model.layers.%d.input_layernorm.weight", l);
            snprintf(fr, sizeof fr, "h.%d.attn.qkv.weight", l);
            add(out, &n, m, fr, CV_ROWS, 0, C, "model.layers.%d.self_attn.q_proj.weight", l);
            add(out, &n, m, fr, CV_ROWS, C, C, "model.layers.%d.self_attn.k_proj.weight", l);
            add(out, &n, m, fr, CV_ROWS, 2 * C, C, "model.layers.%d.self_attn.v_proj.weight", l);
            snprintf(fr, sizeof fr, "h.%d.attn.proj.weight", l);
            add(out, &n, m, fr, CV_COPY, 0, 0, "model.layers.%d.self_attn.o_proj.weight", l);
            snprintf(fr, sizeof fr, "h.%d.ln_2.weight", l);
            add(out, &n, m, fr, CV_COPY, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l);
            snprintf(fr, sizeof fr, "h.%d.moe.router.weight", l);
            if (fg_model_find_tensor(m, fr)) {
                moe_map(m, l, out, &n);
                continue;
            }
            snprintf(fr, sizeof fr, "h.%d.mlp.fc.weight", l);
            add(out, &n, m, fr, CV_ROWS, 0, F, "model.layers.%d.mlp.gate_proj.weight", l);
            add(out, &n, m, fr, CV_ROWS, F, F, "model.layers.%d.mlp.up_proj.weight", l);
            snprintf(fr, sizeof fr, "h.%d.mlp.proj.weight", l);
            add(out, &n, m, fr, CV_COPY, 0, 0, "model.layers.%d.mlp.down_proj.weight", l);
        }
        add(out, &n, m, "ln_f.weight", CV_COPY, 0, 0, "model.norm.weight");
    }
    if (!c->tie_embeddings)
        add(out, &n, m, "lm_head.weight", CV_ROWS, 0, V, "lm_head.weight");
    FG_ASSERT(n <= map_count(m));
    return n;
}

/* ---- export ---- */
static fg_status mkdir_one(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return fg_error(FG_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    return FG_OK;
}

/* A float as its shortest decimal (1e-05, not 9.99999974738e-06): what a person would
 * write in config.json, and what reads back to the same fp32 value. */
static json_t *json_float(float f)
{
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return json_real(strtod(buf, NULL));
}

static fg_status write_json(const char *dir, const char *name, json_t *root)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *txt = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!txt)
        return fg_error(FG_ERR_NOMEM, "%s: out of memory building JSON", path);
    size_t n = strlen(txt);
    txt[n] = '\n'; /* json_dumps leaves room for its NUL only: rewrite it as the last newline */
    fg_status st = fg_file_commit(path, txt, n + 1);
    free(txt);
    return st;
}

static json_t *hf_config(const fg_model *m, int eot)
{
    const fg_model_config *c = fg_model_get_config(m);
    json_t *j;
    if (c->layout == FG_LAYOUT_GPT2) {
        int F = fg_model_get_config(m)->d_ff;
        j = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:o, s:f, s:f, s:f, s:b, s:f, s:b, s:s}",
                      "architectures", "GPT2LMHeadModel", "model_type", "gpt2", "vocab_size", c->vocab_size,
                      "n_positions", c->max_seq_len, "n_ctx", c->max_seq_len, "n_embd", c->d_model, "n_layer",
                      c->n_layer, "n_head", c->n_head, "activation_function", "gelu_new", "layer_norm_epsilon",
                      json_float(c->norm_eps), "resid_pdrop", 0.0, "embd_pdrop", 0.0, "attn_pdrop", 0.0,
                      "scale_attn_weights", 1, "initializer_range", 0.02, "tie_word_embeddings", c->tie_embeddings,
                      "torch_dtype", "float32");
        json_object_set_new(j, "n_inner", F == 4 * c->d_model ? json_null() : json_integer(F));
    } else if (c->moe.n_expert > 0) {
        /* Glm4Moe routes as Frugal does (sigmoid, bias for the choice only, normalised
         * top-K gates times routed_scaling_factor); one group keeps every expert
         * eligible, full rotary and no QK norm make its attention llama's */
        const fg_moe_config *mc = &c->moe;
        j = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:f, s:s, s:b, s:b, s:b}",
                      "architectures", "Glm4MoeForCausalLM", "model_type", "glm4_moe", "vocab_size", c->vocab_size,
                      "hidden_size", c->d_model, "intermediate_size", c->d_ff, "num_hidden_layers", c->n_layer,
                      "num_attention_heads", c->n_head, "num_key_value_heads", c->n_head, "head_dim",
                      c->d_model / c->n_head, "max_position_embeddings", c->max_seq_len, "moe_intermediate_size",
                      mc->d_expert, "rms_norm_eps", json_float(c->norm_eps), "rope_theta", json_float(c->rope_theta),
                      "partial_rotary_factor", 1.0, "hidden_act", "silu", "tie_word_embeddings", c->tie_embeddings,
                      "attention_bias", 0, "use_qk_norm", 0);
        json_t *x = json_pack("{s:i, s:i, s:i, s:i, s:o, s:i, s:i, s:b, s:s, s:i}", "n_routed_experts", mc->n_expert,
                              "num_experts_per_tok", mc->n_expert_active, "n_shared_experts", mc->n_shared_expert,
                              "first_k_dense_replace", mc->n_dense_layers, "routed_scaling_factor",
                              json_float(mc->route_scale), "n_group", 1, "topk_group", 1, "norm_topk_prob",
                              mc->n_expert_active > 1, /* K = 1: g = scale a (docs/MOE.md) */
                              "torch_dtype", "float32", "num_nextn_predict_layers", 0);
        if (j && x)
            json_object_update(j, x);
        json_decref(x);
    } else {
        int F = fg_model_get_config(m)->d_ff;
        j = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:s, s:b, s:b, s:b, s:n, "
                      "s:f, s:s}",
                      "architectures", "LlamaForCausalLM", "model_type", "llama", "vocab_size", c->vocab_size,
                      "hidden_size", c->d_model, "intermediate_size", F, "num_hidden_layers", c->n_layer,
                      "num_attention_heads", c->n_head, "num_key_value_heads", c->n_head, "head_dim",
                      c->d_model / c->n_head, "max_position_embeddings", c->max_seq_len, "rms_norm_eps",
                      json_float(c->norm_eps), "rope_theta", json_float(c->rope_theta), "hidden_act", "silu",
                      "tie_word_embeddings", c->tie_embeddings, "attention_bias", 0, "mlp_bias", 0, "rope_scaling",
                      "initializer_range", 0.02, "torch_dtype", "float32");
    }
    if (j && eot >= 0) {
        json_object_set_new(j, "bos_token_id", json_integer(eot));
        json_object_set_new(j, "eos_token_id", json_integer(eot));
    }
    return j;
}

/* The byte tokenizer (ids = byte values, <|endoftext|> = 256) as a byte-level BPE
 * without merges: the same ids for any text in `tokenizers`. */
static fg_status write_byte_tokenizer(const char *path, int eot)
{
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        uint8_t by = (uint8_t)b;
        char s[8];
        cv_bytes_to_bpe(&by, 1, s, sizeof s);
        json_object_set_new(vocab, s, json_integer(b));
    }
    json_t *added = json_array();
    if (eot >= 0)
        json_array_append_new(added,
                              json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", eot, "content", "<|endoftext|>",
                                        "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                           "use_regex", 1);
    json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:n, s:o, s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, "
                             "s:o, s:[]}}",
                             "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
                             "pre_tokenizer", bl, "post_processor", "decoder", json_deep_copy(bl), "model", "type",
                             "BPE", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                             "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges");
    char *txt = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
    json_decref(root);
    if (!txt)
        return fg_error(FG_ERR_NOMEM, "%s: out of memory building JSON", path);
    fg_status st = fg_file_commit(path, txt, strlen(txt));
    free(txt);
    return st;
}

static fg_status write_tokenizer(const fg_model *m, const fg_tokenizer *tok, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int eot = fg_tok_eot(tok);
    fg_status st = fg_tok_save(tok, path);
    if (st == FG_ERR_UNSUPPORTED) /* the built-in byte tokenizer */
        st = write_byte_tokenizer(path, eot);
    if (st != FG_OK)
        return st;
    const char *et = eot >= 0 ? "<|endoftext|>" : NULL;
    json_t *tc =
        json_pack("{s:s, s:i, s:b, s:b}", "tokenizer_class", "PreTrainedTokenizerFast", "model_max_length",
                  fg_model_get_config(m)->max_seq_len, "add_prefix_space", 0, "clean_up_tokenization_spaces", 0);
    if (tc && et) {
        json_object_set_new(tc, "bos_token", json_string(et));
        json_object_set_new(tc, "eos_token", json_string(et));
        json_object_set_new(tc, "unk_token", json_string(et));
    }
    return write_json(dir, "tokenizer_config.json", tc);
}

fg_status cv_check_plain(const fg_model_config *c, const char *where)
{
    /* the transformers classes and llama.cpp's llama have plain attention and one FFN per
     * layer; DeepSeek-V3's class has MLA but not Frugal's gpt2/llama blocks around it */
    if (c->ffn_share != FG_SHARE_NONE || c->mla_kv_rank > 0 || c->mtp_depth > 0)
        return fg_error(FG_ERR_UNSUPPORTED,
                        "%s: this model uses %s, which no exported format expresses (docs/FORMATS.md); export a "
                        "model without it",
                        where,
                        c->ffn_share != FG_SHARE_NONE ? "cross-layer FFN sharing ('ffn_share')"
                        : c->mla_kv_rank > 0          ? "multi-head latent attention ('mla_kv_rank')"
                                                      : "multi-token prediction modules ('mtp_depth')");
    return FG_OK;
}

fg_status fg_hf_export(const fg_model *m, const fg_tokenizer *tok, const char *dir, size_t max_shard_bytes)
{
    const fg_model_config *c = fg_model_get_config(m);
    fg_status lst = cv_check_plain(c, dir);
    if (lst != FG_OK)
        return lst;
    if (c->moe.n_expert > 0 && c->layout != FG_LAYOUT_LLAMA)
        return fg_error(FG_ERR_UNSUPPORTED,
                        "%s: MoE models are exported as Glm4MoeForCausalLM, whose blocks are llama's; this MoE model "
                        "has the gpt2 layout (docs/FORMATS.md)",
                        dir);
    if (c->moe.n_expert > 0 && (c->moe.n_shared_expert < 1 || c->moe.n_expert < 2))
        return fg_error(FG_ERR_UNSUPPORTED,
                        "%s: Glm4MoeForCausalLM needs at least one shared expert and two routed experts (this model: "
                        "n_shared_expert %d, n_expert %d)",
                        dir, c->moe.n_shared_expert, c->moe.n_expert);
    if (c->vocab_size > c->padded_vocab)
        return fg_error(FG_ERR_INTERNAL, "%s: vocab_size %d > padded_vocab %d", dir, c->vocab_size, c->padded_vocab);
    fg_status st = mkdir_one(dir);
    if (st != FG_OK)
        return st;
    cv_map *map = fg_malloc((size_t)map_count(m) * sizeof *map);
    if (!map)
        return FG_ERR_NOMEM;
    int n = hf_map(m, "transformer.", map);
    fg_st_out *out = fg_calloc((size_t)n, sizeof *out);
    float **bufs = fg_calloc((size_t)n, sizeof *bufs);
    const float *params = fg_model_params((fg_model *)m);
    for (int i = 0; out && bufs && i < n; i++) {
        out[i].name = map[i].name;
        out[i].ndim = map_shape(&map[i], out[i].shape);
        if (map[i].op == CV_TRANS || map[i].scale != 1.0f) {
            if (!(bufs[i] = fg_malloc(map[i].ti->numel * sizeof(float)))) {
                st = FG_ERR_NOMEM;
                break;
            }
            cv_gather(params, &map[i], bufs[i]);
            out[i].data = bufs[i];
        } else
            out[i].data = params + map[i].ti->offset + (size_t)map[i].row0 * (size_t)map[i].cols;
    }
    if (!out || !bufs)
        st = FG_ERR_NOMEM;
    static const char *const meta[] = {"format", "pt", NULL};
    if (st == FG_OK)
        st = fg_st_write_dir(dir, out, n, max_shard_bytes, meta);
    for (int i = 0; bufs && i < n; i++)
        fg_free(bufs[i]);
    fg_free(bufs);
    fg_free(out);
    fg_free(map);
    int eot = tok ? fg_tok_eot(tok) : -1;
    if (st == FG_OK)
        st = write_json(dir, "config.json", hf_config(m, eot));
    if (st == FG_OK) {
        json_t *g = json_object();
        if (eot >= 0) {
            json_object_set_new(g, "bos_token_id", json_integer(eot));
            json_object_set_new(g, "eos_token_id", json_integer(eot));
        }
        st = write_json(dir, "generation_config.json", g);
    }
    if (st == FG_OK && tok)
        st = write_tokenizer(m, tok, dir);
    return st;
}

/* ---- import ---- */
typedef struct cfg_reader {
    const char *path, *cls;
    json_t *j;
} cfg_reader;

/* key -> *v; a missing key is an error when required, else *v keeps its default */
static fg_status cfg_num(const cfg_reader *r, const char *key, int required, double *v)
{
    json_t *x = json_object_get(r->j, key);
    if (!x || json_is_null(x)) {
        if (required)
            return fg_error(FG_ERR_FORMAT, "%s: missing key '%s' (%s needs it)", r->path, key, r->cls);
        return FG_OK;
    }
    if (!json_is_number(x))
        return fg_error(FG_ERR_FORMAT, "%s: key '%s': expected a number", r->path, key);
    *v = json_number_value(x);
    return FG_OK;
}

static fg_status cfg_int(const cfg_reader *r, const char *key, int required, int *v)
{
    double d = *v;
    fg_status st = cfg_num(r, key, required, &d);
    if (st == FG_OK && (d != floor(d) || d < 0 || d > 1e9))
        return fg_error(FG_ERR_FORMAT, "%s: key '%s' = %g: expected a non-negative whole number", r->path, key, d);
    *v = (int)d;
    return st;
}

static fg_status cfg_bool(const cfg_reader *r, const char *key, int *v)
{
    json_t *x = json_object_get(r->j, key);
    if (x && !json_is_null(x)) {
        if (!json_is_boolean(x))
            return fg_error(FG_ERR_FORMAT, "%s: key '%s': expected true or false", r->path, key);
        *v = json_is_true(x);
    }
    return FG_OK;
}

/* A key that Frugal cannot honour unless it has the value that means "as Frugal does". */
static fg_status cfg_expect(const cfg_reader *r, const char *key, const char *want_str, int want_false)
{
    json_t *x = json_object_get(r->j, key);
    if (!x || json_is_null(x))
        return FG_OK;
    if (want_str && !(json_is_string(x) && !strcmp(json_string_value(x), want_str)))
        return fg_error(FG_ERR_UNSUPPORTED, "%s: key '%s' must be \"%s\" for Frugal's %s", r->path, key, want_str,
                        r->cls);
    if (want_false && !json_is_false(x))
        return fg_error(FG_ERR_UNSUPPORTED, "%s: key '%s' must be false: Frugal's %s has no such feature", r->path, key,
                        r->cls);
    return FG_OK;
}

/* Glm4Moe's MoE keys: only the settings under which it routes as Frugal does are read
 * (full rotary, no QK norm, normalised top-K, every expert group eligible). */
static fg_status read_glm_moe(const cfg_reader *r, fg_model_config *mc)
{
    fg_moe_config *m = &mc->moe;
    int E = 0, K = 0, S = 1, D = 1, groups = 1, topk_groups = 1, norm = 1;
    double scale = 1.0, partial = 0.5; /* Glm4MoeConfig's defaults */
    json_t *rp = json_object_get(r->j, "rope_parameters");
    cfg_reader rr = {r->path, r->cls, rp};
    fg_status st;
    if ((st = cfg_int(r, "n_routed_experts", 0, &E)) || (st = cfg_int(r, "num_local_experts", 0, &E)) ||
        (st = cfg_int(r, "num_experts_per_tok", 1, &K)) ||
        (st = cfg_int(r, "moe_intermediate_size", 1, &m->d_expert)) || (st = cfg_int(r, "n_shared_experts", 0, &S)) ||
        (st = cfg_int(r, "first_k_dense_replace", 0, &D)) || (st = cfg_num(r, "routed_scaling_factor", 0, &scale)) ||
        (st = cfg_int(r, "n_group", 0, &groups)) || (st = cfg_int(r, "topk_group", 0, &topk_groups)) ||
        (st = cfg_bool(r, "norm_topk_prob", &norm)) || (st = cfg_num(r, "partial_rotary_factor", 0, &partial)) ||
        (json_is_object(rp) && (st = cfg_num(&rr, "partial_rotary_factor", 0, &partial))) ||
        (st = cfg_expect(r, "use_qk_norm", NULL, 1)))
        return st;
    if (E == 0)
        return fg_error(FG_ERR_FORMAT, "%s: missing key 'n_routed_experts' (%s needs it)", r->path, r->cls);
    if (partial != 1.0)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g: Frugal rotates the whole head (1.0)",
                        r->path, partial);
    /* Frugal normalises the chosen gates when K > 1; with K = 1 it does not (the
     * normalised gate would be the constant scale: docs/MOE.md "Routing") */
    if (!norm && K > 1)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: norm_topk_prob false: Frugal normalises the chosen gates", r->path);
    if (norm && K == 1)
        return fg_error(FG_ERR_UNSUPPORTED,
                        "%s: norm_topk_prob true with num_experts_per_tok 1: Frugal's one-expert gate is "
                        "routed_scaling_factor x the affinity, not normalised",
                        r->path);
    if (topk_groups < groups)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: group-limited routing (topk_group %d < n_group %d) is not Frugal's",
                        r->path, topk_groups, groups);
    m->n_expert = E;
    m->n_expert_active = K;
    m->n_shared_expert = S;
    m->n_dense_layers = D;
    m->route_scale = (float)scale;
    m->balance = FG_BALANCE_BIAS;
    return FG_OK;
}

static fg_status read_config(const char *path, fg_model_config *mc)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return fg_error(access(path, F_OK) ? FG_ERR_IO : FG_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column,
                        je.text);
    fg_status st = FG_OK;
    cfg_reader r = {path, "", j};
    json_t *arch = json_array_get(json_object_get(j, "architectures"), 0);
    const char *a = json_string_value(arch), *mt = json_string_value(json_object_get(j, "model_type"));
    if (!a && !mt) {
        st = fg_error(FG_ERR_FORMAT, "%s: missing key 'architectures' (and no 'model_type')", path);
        goto out;
    }
    int gpt2 = a ? !strcmp(a, "GPT2LMHeadModel") : !strcmp(mt, "gpt2");
    int glm = a ? !strcmp(a, "Glm4MoeForCausalLM") : !strcmp(mt, "glm4_moe");
    int llama = glm || (a ? !strcmp(a, "LlamaForCausalLM") : !strcmp(mt, "llama"));
    if (!gpt2 && !llama) {
        st = fg_error(
            FG_ERR_UNSUPPORTED,
            "%s: architecture '%s' is not imported (GPT2LMHeadModel, LlamaForCausalLM and Glm4MoeForCausalLM are)",
            path, a ? a : mt);
        goto out;
    }
    r.cls = gpt2 ? "GPT2LMHeadModel" : glm ? "Glm4MoeForCausalLM" : "LlamaForCausalLM";
    fg_model_config_default(mc, gpt2 ? FG_LAYOUT_GPT2 : FG_LAYOUT_LLAMA);
    double eps = gpt2 ? 1e-5 : 1e-6, theta = 10000; /* transformers' defaults */
    int kv = -1, hd = -1;
    mc->tie_embeddings = 1; /* PretrainedConfig's default */
    if (gpt2) {
        if ((st = cfg_int(&r, "vocab_size", 1, &mc->vocab_size)) || (st = cfg_int(&r, "n_embd", 1, &mc->d_model)) ||
            (st = cfg_int(&r, "n_layer", 1, &mc->n_layer)) || (st = cfg_int(&r, "n_head", 1, &mc->n_head)) ||
            (st = cfg_int(&r, "n_positions", 1, &mc->max_seq_len)) || (st = cfg_int(&r, "n_inner", 0, &mc->d_ff)) ||
            (st = cfg_num(&r, "layer_norm_epsilon", 0, &eps)) ||
            (st = cfg_bool(&r, "tie_word_embeddings", &mc->tie_embeddings)))
            goto out;
        json_t *act = json_object_get(j, "activation_function");
        const char *as = json_string_value(act);
        if (act && !(as && (!strcmp(as, "gelu_new") || !strcmp(as, "gelu_pytorch_tanh")))) {
            st = fg_error(FG_ERR_UNSUPPORTED,
                          "%s: activation_function '%s': Frugal's gpt2 layout uses the tanh GELU (gelu_new)", path,
                          as ? as : "?");
            goto out;
        }
        if ((st = cfg_expect(&r, "scale_attn_by_inverse_layer_idx", NULL, 1)) ||
            (st = cfg_expect(&r, "reorder_and_upcast_attn", NULL, 1)))
            goto out;
        if (mc->d_ff == 0 && mc->d_model > 0)
            mc->d_ff = 4 * mc->d_model;
    } else {
        json_t *rp = json_object_get(j, "rope_parameters"); /* transformers 5 moved rope_theta here */
        cfg_reader rr = {path, r.cls, rp};
        if ((st = cfg_int(&r, "vocab_size", 1, &mc->vocab_size)) ||
            (st = cfg_int(&r, "hidden_size", 1, &mc->d_model)) ||
            (st = cfg_int(&r, "intermediate_size", 1, &mc->d_ff)) ||
            (st = cfg_int(&r, "num_hidden_layers", 1, &mc->n_layer)) ||
            (st = cfg_int(&r, "num_attention_heads", 1, &mc->n_head)) ||
            (st = cfg_int(&r, "max_position_embeddings", 1, &mc->max_seq_len)) ||
            (st = cfg_int(&r, "num_key_value_heads", 0, &kv)) || (st = cfg_int(&r, "head_dim", 0, &hd)) ||
            (st = cfg_num(&r, "rms_norm_eps", 0, &eps)) || (st = cfg_num(&r, "rope_theta", 0, &theta)) ||
            (json_is_object(rp) && (st = cfg_num(&rr, "rope_theta", 0, &theta))))
            goto out;
        mc->tie_embeddings = 0; /* LlamaConfig's default */
        if ((st = cfg_bool(&r, "tie_word_embeddings", &mc->tie_embeddings)) ||
            (st = cfg_expect(&r, "hidden_act", "silu", 0)) || (st = cfg_expect(&r, "attention_bias", NULL, 1)) ||
            (st = cfg_expect(&r, "mlp_bias", NULL, 1)))
            goto out;
        if (glm && (st = read_glm_moe(&r, mc)) != FG_OK)
            goto out;
        json_t *rs = json_object_get(j, "rope_scaling");
        const char *rt = json_is_object(rp) ? json_string_value(json_object_get(rp, "rope_type")) : NULL;
        if ((rs && !json_is_null(rs)) || (rt && strcmp(rt, "default"))) {
            st = fg_error(FG_ERR_UNSUPPORTED, "%s: rope scaling (rope_scaling / rope_type '%s') is not supported", path,
                          rt ? rt : "set");
            goto out;
        }
        if (kv >= 0 && kv != mc->n_head) {
            st = fg_error(FG_ERR_UNSUPPORTED,
                          "%s: num_key_value_heads %d != num_attention_heads %d: Frugal has no grouped-query attention",
                          path, kv, mc->n_head);
            goto out;
        }
        if (hd >= 0 && mc->n_head > 0 && hd * mc->n_head != mc->d_model) {
            st = fg_error(FG_ERR_UNSUPPORTED, "%s: head_dim %d x %d heads != hidden_size %d", path, hd, mc->n_head,
                          mc->d_model);
            goto out;
        }
    }
    mc->norm_eps = (float)eps;
    mc->rope_theta = (float)theta;
    if (fg_model_config_validate(mc) != FG_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", fg_last_error());
        st = fg_error(FG_ERR_FORMAT, "%s: not a valid %s for Frugal: %s", path, r.cls, why);
    }
out:
    json_decref(j);
    return st;
}

/* Buffers and parameters transformers keeps in some checkpoints that are not weights. */
static int ignorable(const char *name)
{
    size_t n = strlen(name);
    static const char *const tails[] = {".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq"};
    for (size_t i = 0; i < 3; i++) {
        size_t k = strlen(tails[i]);
        if (n >= k && !strcmp(name + n - k, tails[i]))
            return 1;
    }
    return 0;
}

fg_model *fg_hf_import(const char *dir, int B, int T)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    fg_model_config mc;
    if (read_config(path, &mc) != FG_OK)
        return NULL;
    fg_st_set s;
    if (fg_st_open(&s, dir) != FG_OK)
        return NULL;
    fg_model *m = fg_model_new(&mc, B > 0 ? B : 1, T <= 0 || T > mc.max_seq_len ? mc.max_seq_len : T);
    cv_map *map = m ? fg_malloc((size_t)map_count(m) * sizeof *map) : NULL;
    char *used = fg_calloc((size_t)s.n + 1, 1);
    fg_status st = m && map && used ? FG_OK : fg_last_status();
    int n = 0;
    if (st == FG_OK) {
        const char *prefix =
            mc.layout == FG_LAYOUT_GPT2 && !fg_st_find(&s, "transformer.wte.weight") && fg_st_find(&s, "wte.weight")
                ? ""
                : "transformer.";
        n = hf_map(m, prefix, map);
    }
    /* every check before any weight is copied */
    for (int i = 0; i < n && st == FG_OK; i++) {
        const fg_st_tensor *t = fg_st_find(&s, map[i].name);
        if (!t) {
            st = fg_error(FG_ERR_FORMAT, "%s: no tensor '%s' (the config's model needs it)", s.paths[0], map[i].name);
            break;
        }
        int64_t want[FG_ST_MAX_DIM];
        int nd = map_shape(&map[i], want), same = nd == t->ndim;
        for (int d = 0; same && d < nd; d++)
            same = want[d] == t->shape[d];
        if (!same) {
            char a[96], b[96];
            size_t o = 0;
            o += (size_t)snprintf(a + o, sizeof a - o, "[");
            for (int d = 0; d < nd; d++)
                o += (size_t)snprintf(a + o, sizeof a - o, "%s%lld", d ? ", " : "", (long long)want[d]);
            snprintf(a + o, sizeof a - o, "]");
            o = (size_t)snprintf(b, sizeof b, "[");
            for (int d = 0; d < t->ndim; d++)
                o += (size_t)snprintf(b + o, sizeof b - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            snprintf(b + o, sizeof b - o, "]");
            st = fg_error(FG_ERR_FORMAT, "%s: tensor '%s' has shape %s, the config says %s", s.paths[t->file],
                          map[i].name, b, a);
        }
        used[t - s.t] = 1;
    }
    for (int i = 0; i < s.n && st == FG_OK; i++) {
        if (used[i] || ignorable(s.t[i].name))
            continue;
        if (mc.tie_embeddings && !strcmp(s.t[i].name, "lm_head.weight"))
            continue; /* a tied head written out anyway: the embedding is the weight */
        st = fg_error(FG_ERR_FORMAT, "%s: tensor '%s' has no place in a %s model of this config", s.paths[s.t[i].file],
                      s.t[i].name, mc.layout == FG_LAYOUT_GPT2 ? "GPT2LMHeadModel" : "LlamaForCausalLM");
    }
    float *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < n && st == FG_OK; i++) {
        const fg_st_tensor *t = fg_st_find(&s, map[i].name);
        size_t k = fg_st_numel(t);
        if (k > cap) {
            fg_free(buf);
            if (!(buf = fg_malloc(k * sizeof(float)))) {
                st = FG_ERR_NOMEM;
                break;
            }
            cap = k;
        }
        fg_st_read_f32(&s, t, buf);
        cv_scatter(fg_model_params(m), &map[i], buf);
    }
    fg_free(buf);
    fg_free(used);
    fg_free(map);
    fg_st_close(&s);
    if (st != FG_OK) {
        fg_model_delete(m);
        return NULL;
    }
    return m;
}
