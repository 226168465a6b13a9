/* gguf.c: GGUF v3 files for llama.cpp ("llama" architecture: hyper-parameters, GPT-2
 * BPE tokenizer, weights in f32, f16 or Q8_0) and the reader that brings them back into
 * a Frugal model. Left out: other architectures (gpt2, MoE), k-quants. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert_impl.h"
#include "frugal/convert.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_ALIGN 32
#define QK8_0 32

enum { GT_U8 = 0, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STR, GT_ARR, GT_U64, GT_I64, GT_F64 };

/* ---- a growable byte buffer for the header ---- */
typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} gbuf;

static void put(gbuf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 4096;
        while (c < b->n + n)
            c *= 2;
        uint8_t *q = fg_realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v)
{
    put(b, &v, 4);
}
static void put_u64(gbuf *b, uint64_t v)
{
    put(b, &v, 8);
}
static void put_str(gbuf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}
static void kv_key(gbuf *b, const char *k, uint32_t type)
{
    put_str(b, k, strlen(k));
    put_u32(b, type);
}
static void kv_u32(gbuf *b, const char *k, uint32_t v)
{
    kv_key(b, k, GT_U32);
    put_u32(b, v);
}
static void kv_f32(gbuf *b, const char *k, float v)
{
    kv_key(b, k, GT_F32);
    put(b, &v, 4);
}
static void kv_str(gbuf *b, const char *k, const char *v)
{
    kv_key(b, k, GT_STR);
    put_str(b, v, strlen(v));
}
static void kv_bool(gbuf *b, const char *k, int v)
{
    kv_key(b, k, GT_BOOL);
    uint8_t x = (uint8_t)(v != 0);
    put(b, &x, 1);
}

/* ---- the tensor map ---- */
typedef struct gmap {
    cv_map e;
    int permute; /* q, k: HF's rotate_half rows into ggml's interleaved pairs */
} gmap;

static int gguf_map(const fg_model *m, gmap *out)
{
    const fg_model_config *c = fg_model_get_config(m);
    int n = 0, C = c->d_model, V = c->vocab_size;
    int F = fg_model_get_config(m)->d_ff;
    char fr[64];
#define G(frn, op_, r0, rs, perm, ...)                                                                                 \
    do {                                                                                                               \
        gmap *g = &out[n++];                                                                                           \
        memset(g, 0, sizeof *g);                                                                                       \
        g->e.ti = fg_model_find_tensor(m, frn);                                                                        \
        FG_ASSERT(g->e.ti);                                                                                            \
        g->e.op = op_;                                                                                                 \
        g->e.cols = g->e.ti->ndim == 2 ? g->e.ti->shape[1] : 0;                                                        \
        g->e.scale = 1.0f;                                                                                             \
        g->e.row0 = r0;                                                                                                \
        g->e.rows = op_ == CV_ROWS ? rs : g->e.ti->shape[0];                                                           \
        g->permute = perm;                                                                                             \
        snprintf(g->e.name, sizeof g->e.name, __VA_ARGS__);                                                            \
    } while (0)
    G("wte", CV_ROWS, 0, V, 0, "token_embd.weight");
    for (int l = 0; l < c->n_layer; l++) {
        snprintf(fr, sizeof fr, "h.%d.ln_1.weight", l);
        G(fr, CV_COPY, 0, 0, 0, "blk.%d.attn_norm.weight", l);
        snprintf(fr, sizeof fr, "h.%d.attn.qkv.weight", l);
        G(fr, CV_ROWS, 0, C, 1, "blk.%d.attn_q.weight", l);
        G(fr, CV_ROWS, C, C, 1, "blk.%d.attn_k.weight", l);
        G(fr, CV_ROWS, 2 * C, C, 0, "blk.%d.attn_v.weight", l);
        snprintf(fr, sizeof fr, "h.%d.attn.proj.weight", l);
        G(fr, CV_COPY, 0, 0, 0, "blk.%d.attn_output.weight", l);
        snprintf(fr, sizeof fr, "h.%d.ln_2.weight", l);
        G(fr, CV_COPY, 0, 0, 0, "blk.%d.ffn_norm.weight", l);
        snprintf(fr, sizeof fr, "h.%d.mlp.fc.weight", l);
        G(fr, CV_ROWS, 0, F, 0, "blk.%d.ffn_gate.weight", l);
        G(fr, CV_ROWS, F, F, 0, "blk.%d.ffn_up.weight", l);
        snprintf(fr, sizeof fr, "h.%d.mlp.proj.weight", l);
        G(fr, CV_COPY, 0, 0, 0, "blk.%d.ffn_down.weight", l);
    }
    G("ln_f.weight", CV_COPY, 0, 0, 0, "output_norm.weight");
    if (!c->tie_embeddings)
        G("lm_head.weight", CV_ROWS, 0, V, 0, "output.weight");
#undef G
    return n;
}

/* rows of one head: HF [half][j] -> ggml [j][half] (llama.cpp's convert_hf_to_gguf
 * permute), or back when inverse */
static void permute_rows(const float *in, float *out, int rows, int cols, int HS, int inverse)
{
    int half = HS / 2;
    for (int r = 0; r < rows; r++) {
        int h = r / HS, i = r % HS;
        int hf = h * HS + i, gg = h * HS + (i % half) * 2 + i / half;
        const float *src = in + (size_t)(inverse ? gg : hf) * cols;
        memcpy(out + (size_t)(inverse ? hf : gg) * cols, src, (size_t)cols * sizeof(float));
    }
}

static int tensor_type(const gmap *g, fg_gguf_type type)
{
    if (g->e.ti->ndim != 2 || type == FG_GGUF_F32)
        return FG_GGUF_F32; /* norms stay f32, as llama.cpp's converter keeps them */
    if (type == FG_GGUF_Q8_0 && g->e.cols % QK8_0)
        return FG_GGUF_F16;
    return type;
}

static size_t type_bytes(int type, size_t numel)
{
    return type == FG_GGUF_F32 ? 4 * numel : type == FG_GGUF_F16 ? 2 * numel : numel / QK8_0 * (2 + QK8_0);
}

/* ---- the tokenizer's metadata ---- */
/* The merges of a BPE tokenizer, read from its tokenizer.json form (tok.h has no merge
 * accessor; fg_tok_save is the one place that spells them). */
static json_t *tok_merges(const fg_tokenizer *tok)
{
    char tmpl[] = "/tmp/frugal-gguf-tok-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return NULL;
    close(fd);
    json_t *merges = NULL;
    if (fg_tok_save(tok, tmpl) == FG_OK) {
        json_t *root = json_load_file(tmpl, 0, NULL);
        json_t *mm = json_object_get(json_object_get(root, "model"), "merges");
        merges = json_is_array(mm) ? json_incref(mm) : NULL;
        json_decref(root);
    }
    unlink(tmpl);
    return merges;
}

static fg_status put_tokenizer(gbuf *b, const fg_tokenizer *tok, int V, uint64_t *n_kv, const char *path)
{
    int tv = tok ? fg_tok_vocab_size(tok) : 257, eot = tok ? fg_tok_eot(tok) : 256;
    json_t *merges = tok && fg_tok_n_merges(tok) > 0 ? tok_merges(tok) : json_array();
    if (!merges)
        return fg_error(FG_ERR_IO, "%s: cannot read the tokenizer's merges", path);
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", tok && fg_tok_get_pattern(tok) == FG_TOK_PATTERN_CL100K ? "llama-bpe" : "gpt-2");
    kv_key(b, "tokenizer.ggml.tokens", GT_ARR);
    put_u32(b, GT_STR);
    put_u64(b, (uint64_t)V);
    char s[4096], raw[4096];
    uint8_t *special = fg_calloc((size_t)V + 1, 1);
    if (!special) {
        json_decref(merges);
        return FG_ERR_NOMEM;
    }
    for (int id = 0; id < V; id++) {
        size_t len = 0;
        const uint8_t *by = NULL;
        uint8_t one = (uint8_t)id;
        if (tok && id < tv)
            by = fg_tok_token_bytes(tok, (uint32_t)id, &len);
        else if (!tok && id < 256)
            by = &one, len = 1;
        raw[0] = 0;
        if (by && len < sizeof raw) {
            memcpy(raw, by, len);
            raw[len] = 0;
        }
        special[id] = id == eot || (tok && id < tv && raw[0] && fg_tok_special_id(tok, raw) == id);
        if (special[id]) /* specials keep their text, as llama.cpp's control tokens do */
            snprintf(s, sizeof s, "%s", id == eot && !tok ? "<|endoftext|>" : raw);
        else if (!by || cv_bytes_to_bpe(by, len, s, sizeof s) < 0)
            snprintf(s, sizeof s, "[PAD%d]", id);
        put_str(b, s, strlen(s));
    }
    kv_key(b, "tokenizer.ggml.token_type", GT_ARR);
    put_u32(b, GT_I32);
    put_u64(b, (uint64_t)V);
    for (int id = 0; id < V; id++) {
        int32_t t = special[id] ? 3 : (id < tv ? 1 : 5); /* control, normal, unused */
        put(b, &t, 4);
    }
    fg_free(special);
    kv_key(b, "tokenizer.ggml.merges", GT_ARR);
    put_u32(b, GT_STR);
    put_u64(b, json_array_size(merges));
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *mj = json_array_get(merges, i);
        if (json_is_array(mj)) /* tokenizers >= 0.20 may write pairs */
            snprintf(s, sizeof s, "%s %s", json_string_value(json_array_get(mj, 0)),
                     json_string_value(json_array_get(mj, 1)));
        else
            snprintf(s, sizeof s, "%s", json_string_value(mj));
        put_str(b, s, strlen(s));
    }
    json_decref(merges);
    *n_kv += 5;
    if (eot >= 0 && eot < V) {
        kv_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)eot);
        kv_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)eot);
        *n_kv += 2;
    }
    kv_bool(b, "tokenizer.ggml.add_bos_token", 0);
    *n_kv += 1;
    return FG_OK;
}

static fg_status check_llama(const fg_model_config *c, const char *path)
{
    fg_status st = cv_check_plain(c, path);
    if (st != FG_OK)
        return st;
    if (c->layout != FG_LAYOUT_LLAMA || c->moe.n_expert > 0)
        return fg_error(FG_ERR_UNSUPPORTED,
                        "%s: GGUF export writes dense llama-layout models (llama.cpp's \"llama\" architecture); this "
                        "model is %s%s",
                        path, c->layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama", c->moe.n_expert > 0 ? " with MoE" : "");
    return FG_OK;
}

fg_status fg_gguf_export(const fg_model *m, const fg_tokenizer *tok, const char *path, fg_gguf_type type)
{
    const fg_model_config *c = fg_model_get_config(m);
    fg_status st = check_llama(c, path);
    if (st != FG_OK)
        return st;
    if (type != FG_GGUF_F32 && type != FG_GGUF_F16 && type != FG_GGUF_Q8_0)
        return fg_error(FG_ERR_INVALID, "%s: GGUF type %d: expected f32, f16 or q8_0", path, (int)type);
    int HS = c->d_model / c->n_head, F = fg_model_get_config(m)->d_ff;
    gmap *map = fg_malloc((size_t)(12 * c->n_layer + 4) * sizeof *map);
    if (!map)
        return FG_ERR_NOMEM;
    int n = gguf_map(m, map);
    gbuf b = {0};
    uint64_t n_kv = 0;
    put(&b, GGUF_MAGIC, 4);
    put_u32(&b, GGUF_VERSION);
    put_u64(&b, (uint64_t)n);
    size_t n_kv_at = b.n;
    put_u64(&b, 0); /* patched below */
    kv_str(&b, "general.architecture", "llama");
    kv_str(&b, "general.name", "frugal");
    kv_u32(&b, "general.file_type", type == FG_GGUF_F32 ? 0 : type == FG_GGUF_F16 ? 1 : 7);
    kv_u32(&b, "general.alignment", GGUF_ALIGN);
    kv_u32(&b, "llama.context_length", (uint32_t)c->max_seq_len);
    kv_u32(&b, "llama.embedding_length", (uint32_t)c->d_model);
    kv_u32(&b, "llama.block_count", (uint32_t)c->n_layer);
    kv_u32(&b, "llama.feed_forward_length", (uint32_t)F);
    kv_u32(&b, "llama.attention.head_count", (uint32_t)c->n_head);
    kv_u32(&b, "llama.attention.head_count_kv", (uint32_t)c->n_head);
    kv_u32(&b, "llama.rope.dimension_count", (uint32_t)HS);
    kv_u32(&b, "llama.vocab_size", (uint32_t)c->vocab_size);
    kv_f32(&b, "llama.rope.freq_base", c->rope_theta);
    kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    n_kv += 14;
    st = put_tokenizer(&b, tok, c->vocab_size, &n_kv, path);
    memcpy(b.p + n_kv_at, &n_kv, 8);
    uint64_t off = 0;
    for (int i = 0; i < n && st == FG_OK; i++) {
        const cv_map *e = &map[i].e;
        int t = tensor_type(&map[i], type);
        put_str(&b, e->name, strlen(e->name));
        put_u32(&b, (uint32_t)e->ti->ndim);
        if (e->ti->ndim == 2) {
            put_u64(&b, (uint64_t)e->cols); /* ggml's ne[0] is the fastest dimension */
            put_u64(&b, (uint64_t)e->rows);
        } else
            put_u64(&b, e->ti->numel);
        put_u32(&b, (uint32_t)t);
        put_u64(&b, off);
        size_t numel = e->ti->ndim == 2 ? (size_t)e->rows * e->cols : e->ti->numel;
        off += (type_bytes(t, numel) + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
    static const uint8_t zeros[GGUF_ALIGN];
    put(&b, zeros, (GGUF_ALIGN - b.n % GGUF_ALIGN) % GGUF_ALIGN);
    if (b.oom && st == FG_OK)
        st = FG_ERR_NOMEM;
    fg_file_tx tx;
    if (st == FG_OK)
        st = fg_file_tx_open(&tx, path, 0);
    if (st != FG_OK) {
        fg_free(b.p);
        fg_free(map);
        return st;
    }
    fg_file_tx_write(&tx, b.p, b.n);
    fg_free(b.p);
    const float *params = fg_model_params((fg_model *)m);
    for (int i = 0; i < n && st == FG_OK; i++) {
        const cv_map *e = &map[i].e;
        size_t numel = e->ti->ndim == 2 ? (size_t)e->rows * e->cols : e->ti->numel;
        int t = tensor_type(&map[i], type);
        float *x = fg_malloc(numel * sizeof(float) * (map[i].permute ? 2 : 1));
        uint8_t *q = x ? fg_malloc(type_bytes(t, numel) + GGUF_ALIGN) : NULL;
        if (!x || !q) {
            fg_free(x);
            st = FG_ERR_NOMEM;
            break;
        }
        cv_gather(params, e, x);
        if (map[i].permute) {
            permute_rows(x, x + numel, e->rows, e->cols, HS, 0);
            memmove(x, x + numel, numel * sizeof(float));
        }
        size_t nb = type_bytes(t, numel);
        if (t == FG_GGUF_F32)
            memcpy(q, x, nb);
        else if (t == FG_GGUF_F16)
            for (size_t k = 0; k < numel; k++) {
                uint16_t h = fg_f32_to_f16(x[k]);
                memcpy(q + 2 * k, &h, 2);
            }
        else /* ggml's quantize_row_q8_0_ref */
            for (size_t blk = 0; blk < numel / QK8_0; blk++) {
                const float *v = x + blk * QK8_0;
                float amax = 0;
                for (int j = 0; j < QK8_0; j++)
                    amax = fmaxf(amax, fabsf(v[j]));
                float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
                uint16_t h = fg_f32_to_f16(d);
                uint8_t *o = q + blk * (2 + QK8_0);
                memcpy(o, &h, 2);
                for (int j = 0; j < QK8_0; j++)
                    o[2 + j] = (uint8_t)(int8_t)roundf(v[j] * id);
            }
        size_t pad = (GGUF_ALIGN - nb % GGUF_ALIGN) % GGUF_ALIGN;
        memset(q + nb, 0, pad);
        fg_file_tx_write(&tx, q, nb + pad);
        fg_free(q);
        fg_free(x);
    }
    fg_free(map);
    if (st != FG_OK) {
        fg_file_tx_abort(&tx);
        return st;
    }
    return fg_file_tx_commit(&tx);
}

/* ---- reader ---- */
typedef struct grd {
    const uint8_t *p;
    size_t n, at;
    const char *path;
    fg_status st;
} grd;

static int need(grd *r, size_t k)
{
    if (r->st != FG_OK)
        return 0;
    if (k > r->n - r->at) {
        r->st = fg_error(FG_ERR_CORRUPT, "%s: truncated: %zu bytes needed at byte %zu, the file has %zu", r->path, k,
                         r->at, r->n);
        return 0;
    }
    return 1;
}
static uint64_t get(grd *r, size_t k)
{
    uint64_t v = 0;
    if (need(r, k))
        memcpy(&v, r->p + r->at, k), r->at += k;
    return v;
}
/* a string: *s points into the file, *len its bytes */
static void get_str(grd *r, const char **s, size_t *len)
{
    uint64_t n = get(r, 8);
    *s = "";
    *len = 0;
    if (need(r, n)) {
        *s = (const char *)r->p + r->at;
        *len = (size_t)n;
        r->at += n;
    }
}

static const size_t scalar_size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* A value of type t; a number is returned in *num when it is a scalar number. */
static void get_value(grd *r, uint32_t t, double *num, int depth)
{
    if (t > GT_F64 || depth > 2) {
        if (r->st == FG_OK)
            r->st = fg_error(FG_ERR_FORMAT, "%s: unknown metadata value type %u at byte %zu", r->path, t, r->at - 4);
        return;
    }
    if (t == GT_STR) {
        const char *s;
        size_t n;
        get_str(r, &s, &n);
    } else if (t == GT_ARR) {
        uint32_t et = (uint32_t)get(r, 4);
        uint64_t cnt = get(r, 8);
        if (et <= GT_F64 && et != GT_STR && et != GT_ARR) {
            if (cnt > r->n || !need(r, (size_t)cnt * scalar_size[et]))
                return;
            r->at += (size_t)cnt * scalar_size[et];
        } else
            for (uint64_t i = 0; i < cnt && r->st == FG_OK; i++)
                get_value(r, et, NULL, depth + 1);
    } else {
        uint64_t raw = get(r, scalar_size[t]);
        if (!num)
            return;
        float f;
        double d;
        switch (t) {
        case GT_F32: memcpy(&f, &raw, 4), *num = f; break;
        case GT_F64: memcpy(&d, &raw, 8), *num = d; break;
        case GT_I8: *num = (int8_t)raw; break;
        case GT_I16: *num = (int16_t)raw; break;
        case GT_I32: *num = (int32_t)raw; break;
        case GT_I64: *num = (double)(int64_t)raw; break;
        default: *num = (double)raw;
        }
    }
}

typedef struct gtensor {
    const char *name;
    size_t name_len;
    uint32_t ndim, type;
    uint64_t ne[4], off;
} gtensor;

fg_model *fg_gguf_import(const char *path, int B, int T)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fg_error(FG_ERR_IO, "%s: cannot open GGUF file: %s", path, strerror(errno));
        return NULL;
    }
    struct stat stt;
    void *map = MAP_FAILED;
    if (fstat(fd, &stt) == 0 && stt.st_size > 0)
        map = mmap(NULL, (size_t)stt.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        fg_error(FG_ERR_CORRUPT, "%s: empty or unreadable GGUF file", path);
        return NULL;
    }
    grd r = {map, (size_t)stt.st_size, 0, path, FG_OK};
    fg_model *m = NULL;
    gtensor *ts = NULL;
    gmap *gm = NULL;
    float *buf = NULL, *tmp = NULL;
    if (!need(&r, 24) || memcmp(r.p, GGUF_MAGIC, 4)) {
        if (r.st == FG_OK)
            r.st = fg_error(FG_ERR_FORMAT, "%s: bad magic at byte 0 (a GGUF file starts with \"GGUF\")", path);
        goto out;
    }
    r.at = 4;
    uint32_t ver = (uint32_t)get(&r, 4);
    if (ver != 2 && ver != 3) {
        r.st = fg_error(FG_ERR_UNSUPPORTED, "%s: GGUF version %u at byte 4; versions 2 and 3 are read", path, ver);
        goto out;
    }
    uint64_t n_t = get(&r, 8), n_kv = get(&r, 8);
    if (n_t > r.n / 8 || n_kv > r.n / 8) {
        r.st = fg_error(FG_ERR_FORMAT, "%s: %llu tensors / %llu metadata keys cannot fit in %zu bytes", path,
                        (unsigned long long)n_t, (unsigned long long)n_kv, r.n);
        goto out;
    }
    fg_model_config mc;
    fg_model_config_default(&mc, FG_LAYOUT_LLAMA);
    double v[12] = {0};
    static const char *const keys[] = {"llama.context_length",       "llama.embedding_length",
                                       "llama.block_count",          "llama.feed_forward_length",
                                       "llama.attention.head_count", "llama.attention.head_count_kv",
                                       "llama.rope.freq_base",       "llama.attention.layer_norm_rms_epsilon",
                                       "llama.vocab_size",           "general.alignment"};
    int have[12] = {0}, arch_ok = 0;
    for (uint64_t i = 0; i < n_kv && r.st == FG_OK; i++) {
        const char *k;
        size_t kl;
        get_str(&r, &k, &kl);
        uint32_t t = (uint32_t)get(&r, 4);
        if (r.st != FG_OK)
            break;
        if (kl == 20 && !memcmp(k, "general.architecture", kl) && t == GT_STR) {
            const char *a;
            size_t al;
            get_str(&r, &a, &al);
            arch_ok = al == 5 && !memcmp(a, "llama", 5);
            if (!arch_ok) {
                r.st =
                    fg_error(FG_ERR_UNSUPPORTED, "%s: architecture '%.*s'; Frugal reads \"llama\"", path, (int)al, a);
                break;
            }
            continue;
        }
        double num = NAN;
        get_value(&r, t, &num, 0);
        for (int j = 0; j < 10; j++)
            if (strlen(keys[j]) == kl && !memcmp(keys[j], k, kl))
                v[j] = num, have[j] = 1;
    }
    if (r.st != FG_OK)
        goto out;
    if (!arch_ok) {
        r.st = fg_error(FG_ERR_FORMAT, "%s: missing key 'general.architecture'", path);
        goto out;
    }
    for (int j = 0; j < 8; j++)
        if (!have[j] || !isfinite(v[j])) {
            r.st = fg_error(FG_ERR_FORMAT, "%s: missing key '%s'", path, keys[j]);
            goto out;
        }
    mc.max_seq_len = (int)v[0];
    mc.d_model = (int)v[1];
    mc.n_layer = (int)v[2];
    mc.d_ff = (int)v[3];
    mc.n_head = (int)v[4];
    mc.rope_theta = (float)v[6];
    mc.norm_eps = (float)v[7];
    size_t align = have[9] ? (size_t)v[9] : GGUF_ALIGN;
    if (v[5] != v[4]) {
        r.st = fg_error(FG_ERR_UNSUPPORTED, "%s: head_count_kv %g != head_count %g: no grouped-query attention", path,
                        v[5], v[4]);
        goto out;
    }
    ts = fg_calloc((size_t)n_t + 1, sizeof *ts);
    if (!ts) {
        r.st = FG_ERR_NOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < n_t && r.st == FG_OK; i++) {
        get_str(&r, &ts[i].name, &ts[i].name_len);
        ts[i].ndim = (uint32_t)get(&r, 4);
        if (ts[i].ndim < 1 || ts[i].ndim > 4) {
            if (r.st == FG_OK)
                r.st = fg_error(FG_ERR_FORMAT, "%s: tensor '%.*s': %u dimensions", path, (int)ts[i].name_len,
                                ts[i].name, ts[i].ndim);
            break;
        }
        for (uint32_t d = 0; d < ts[i].ndim; d++)
            ts[i].ne[d] = get(&r, 8);
        ts[i].type = (uint32_t)get(&r, 4);
        ts[i].off = get(&r, 8);
    }
    if (r.st != FG_OK)
        goto out;
    const gtensor *emb = NULL;
    for (uint64_t i = 0; i < n_t; i++)
        if (ts[i].name_len == 17 && !memcmp(ts[i].name, "token_embd.weight", 17))
            emb = &ts[i];
    if (!emb || emb->ndim != 2) {
        r.st = fg_error(FG_ERR_FORMAT, "%s: no 2-D tensor 'token_embd.weight'", path);
        goto out;
    }
    mc.vocab_size = (int)emb->ne[1];
    int tied = 1;
    for (uint64_t i = 0; i < n_t; i++)
        if (ts[i].name_len == 13 && !memcmp(ts[i].name, "output.weight", 13))
            tied = 0;
    mc.tie_embeddings = tied;
    if (fg_model_config_validate(&mc) != FG_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", fg_last_error());
        r.st = fg_error(FG_ERR_FORMAT, "%s: hyper-parameters are not a valid model: %s", path, why);
        goto out;
    }
    size_t data0 = (r.at + align - 1) / align * align;
    m = fg_model_new(&mc, B > 0 ? B : 1, T <= 0 || T > mc.max_seq_len ? mc.max_seq_len : T);
    gm = m ? fg_malloc((size_t)(12 * mc.n_layer + 4) * sizeof *gm) : NULL;
    if (!gm) {
        r.st = fg_last_status();
        goto out;
    }
    int n = gguf_map(m, gm), HS = mc.d_model / mc.n_head;
    if ((uint64_t)n != n_t) {
        r.st = fg_error(FG_ERR_FORMAT, "%s: %llu tensors, a llama model of these hyper-parameters has %d", path,
                        (unsigned long long)n_t, n);
        goto out;
    }
    for (int i = 0; i < n && r.st == FG_OK; i++) {
        const cv_map *e = &gm[i].e;
        const gtensor *t = NULL;
        for (uint64_t j = 0; j < n_t && !t; j++)
            if (ts[j].name_len == strlen(e->name) && !memcmp(ts[j].name, e->name, ts[j].name_len))
                t = &ts[j];
        int two = e->ti->ndim == 2;
        size_t numel = two ? (size_t)e->rows * e->cols : e->ti->numel;
        if (!t) {
            r.st = fg_error(FG_ERR_FORMAT, "%s: no tensor '%s'", path, e->name);
            break;
        }
        if (t->ndim != (uint32_t)e->ti->ndim || t->ne[0] != (two ? (uint64_t)e->cols : numel) ||
            (two && t->ne[1] != (uint64_t)e->rows)) {
            r.st =
                fg_error(FG_ERR_FORMAT, "%s: tensor '%s' has the wrong shape for the hyper-parameters", path, e->name);
            break;
        }
        if (t->type != FG_GGUF_F32 && t->type != FG_GGUF_F16 && !(t->type == FG_GGUF_Q8_0 && t->ne[0] % QK8_0 == 0)) {
            r.st = fg_error(FG_ERR_UNSUPPORTED, "%s: tensor '%s' has ggml type %u (f32, f16 and q8_0 are read)", path,
                            e->name, t->type);
            break;
        }
        size_t nb = type_bytes((int)t->type, numel);
        if (t->off % align || t->off > r.n || data0 + t->off > r.n || nb > r.n - data0 - t->off) {
            r.st = fg_error(FG_ERR_CORRUPT, "%s: tensor '%s' (%zu bytes at data offset %llu) lies outside the file",
                            path, e->name, nb, (unsigned long long)t->off);
            break;
        }
        fg_free(buf);
        buf = fg_malloc(2 * numel * sizeof(float));
        if (!buf) {
            r.st = FG_ERR_NOMEM;
            break;
        }
        const uint8_t *p = r.p + data0 + t->off;
        if (t->type == FG_GGUF_F32)
            memcpy(buf, p, numel * 4);
        else if (t->type == FG_GGUF_F16)
            for (size_t k = 0; k < numel; k++) {
                uint16_t h;
                memcpy(&h, p + 2 * k, 2);
                buf[k] = fg_f16_to_f32(h);
            }
        else
            for (size_t blk = 0; blk < numel / QK8_0; blk++) {
                const uint8_t *o = p + blk * (2 + QK8_0);
                uint16_t h;
                memcpy(&h, o, 2);
                float d = fg_f16_to_f32(h);
                for (int j = 0; j < QK8_0; j++)
                    buf[blk * QK8_0 + j] = d * (float)(int8_t)o[2 + j];
            }
        if (gm[i].permute) {
            permute_rows(buf, buf + numel, e->rows, e->cols, HS, 1);
            memmove(buf, buf + numel, numel * sizeof(float));
        }
        cv_scatter(fg_model_params(m), e, buf);
    }
out:
    fg_free(buf);
    fg_free(tmp);
    fg_free(gm);
    fg_free(ts);
    munmap(map, (size_t)stt.st_size);
    if (r.st != FG_OK) {
        fg_model_delete(m);
        return NULL;
    }
    return m;
}
