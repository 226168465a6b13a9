/* config.c: the training options as one table (name, type, field, range, help) that
 * serves flags, JSON files (jansson), validation, help and the config.json written
 * into each run. Leaves out nested JSON: the file is one flat object of these keys. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/train.h"

typedef enum opt_type { T_INT, T_LONG, T_U64, T_FLOAT, T_DOUBLE, T_BOOL, T_STR, T_LAYOUT, T_BALANCE } opt_type;

typedef struct opt {
    const char *name;
    opt_type type;
    size_t off, size;
    double min, max;
    int min_excl; /* 1: value must be > min */
    const char *help;
} opt;

#define F(field) offsetof(fg_train_config, field), sizeof(((fg_train_config *)0)->field)
#define BIG 1e18
static const opt opts[] = {
    /* model */
    {"layout", T_LAYOUT, F(model.layout), 0, 0, 0, "llama (RMSNorm, RoPE, SwiGLU) or gpt2 (LayerNorm, GELU)"},
    {"vocab_size", T_INT, F(model.vocab_size), 0, 1 << 24, 0, "V; 0 = from the tokenizer or shards"},
    {"padded_vocab", T_INT, F(model.padded_vocab), 0, 1 << 24, 0, "Vp >= V; 0 = V rounded up to 64"},
    {"max_seq_len", T_INT, F(model.max_seq_len), 0, 1 << 20, 0, "maxT; 0 = seq_len"},
    {"n_layer", T_INT, F(model.n_layer), 1, 1024, 0, "transformer blocks L"},
    {"n_head", T_INT, F(model.n_head), 1, 1024, 0, "attention heads NH"},
    {"d_model", T_INT, F(model.d_model), 1, 1 << 16, 0, "width C"},
    {"d_ff", T_INT, F(model.d_ff), 0, 1 << 20, 0, "dense FFN hidden size; 0 = layout default"},
    {"norm_eps", T_FLOAT, F(model.norm_eps), 0, 1, 1, "norm epsilon"},
    {"rope_theta", T_FLOAT, F(model.rope_theta), 0, 1e9, 1, "RoPE base"},
    {"tie_embeddings", T_BOOL, F(model.tie_embeddings), 0, 1, 0, "head shares wte"},
    {"n_expert", T_INT, F(model.n_expert), 0, 4096, 0, "routed experts per MoE layer; 0 = dense"},
    {"n_expert_active", T_INT, F(model.n_expert_active), 0, 4096, 0, "K routed experts per token"},
    {"n_shared_expert", T_INT, F(model.n_shared_expert), 0, 64, 0, "always-on experts"},
    {"d_expert", T_INT, F(model.d_expert), 0, 1 << 20, 0, "expert hidden size"},
    {"n_dense_layers", T_INT, F(model.n_dense_layers), 0, 1024, 0, "first layers kept dense"},
    {"route_scale", T_FLOAT, F(model.route_scale), 0, 1e3, 0, "scale on normalised gates"},
    {"balance", T_BALANCE, F(model.balance), 0, 0, 0, "bias | none | seqaux | switch"},
    {"balance_gamma", T_FLOAT, F(model.balance_gamma), 0, 10, 0, "router bias update speed"},
    {"balance_gain", T_FLOAT, F(model.balance_gain), 0, 10, 0, "proportional router bias gain; 0 = sign only"},
    {"router_logit_scale", T_FLOAT, F(model.router_logit_scale), 1e-6, 1e3, 0, "scale on router logits"},
    {"router_lr_scale", T_FLOAT, F(model.router_lr_scale), 0, 1e3, 1, "router weights' lr multiplier"},
    {"balance_window", T_INT, F(model.balance_window), 1, 1 << 20, 0, "steps of load history"},
    {"balance_alpha", T_FLOAT, F(model.balance_alpha), 0, 10, 0, "aux balance loss weight"},
    {"capacity_factor", T_FLOAT, F(model.capacity_factor), 0, 1e3, 0, "expert capacity; 0 = unlimited"},
    /* data */
    {"data", T_STR, F(data), 0, 0, 0, "raw text file to tokenise and split"},
    {"train_shards", T_STR, F(train_shards), 0, 0, 0, "comma-separated token shards (instead of data)"},
    {"val_shards", T_STR, F(val_shards), 0, 0, 0, "comma-separated validation shards"},
    {"tokenizer", T_STR, F(tokenizer), 0, 0, 0, "byte, or a tokenizer.json / GPT-2 directory"},
    {"val_frac", T_FLOAT, F(val_frac), 0, 0.9, 1, "tail share of the text held out for validation"},
    {"sequential", T_BOOL, F(sequential), 0, 1, 0, "consecutive windows instead of random ones"},
    /* batch */
    {"batch_size", T_INT, F(batch_size), 1, 1 << 16, 0, "B, sequences per micro-batch"},
    {"seq_len", T_INT, F(seq_len), 1, 1 << 20, 0, "T, tokens per sequence"},
    {"grad_accum", T_INT, F(grad_accum), 1, 1 << 16, 0, "micro-batches per optimiser step"},
    {"max_steps", T_LONG, F(max_steps), 1, BIG, 0, "optimiser steps"},
    {"stop_after", T_LONG, F(stop_after), 0, BIG, 0, "stop after this step (schedule still spans max_steps); 0 = off"},
    {"max_seconds", T_DOUBLE, F(max_seconds), 0, BIG, 0,
     "training-time budget: the LR schedule is shortened to fit it; 0 = none"},
    /* optimiser */
    {"lr", T_FLOAT, F(lr), 0, 10, 1, "peak learning rate"},
    {"min_lr", T_FLOAT, F(min_lr), 0, 10, 0, "learning rate at the end of the cosine"},
    {"warmup_steps", T_LONG, F(warmup_steps), 0, BIG, 0, "linear warmup steps"},
    {"weight_decay", T_FLOAT, F(weight_decay), 0, 10, 0, "AdamW decay (not on norms, biases, embeddings)"},
    {"decay_all", T_BOOL, F(decay_all), 0, 1, 0, "decay norms, biases and embeddings too"},
    {"beta1", T_FLOAT, F(beta1), 0, 0.999999, 0, "AdamW beta1"},
    {"beta2", T_FLOAT, F(beta2), 0, 0.999999, 0, "AdamW beta2"},
    {"eps", T_FLOAT, F(eps), 0, 1, 1, "AdamW epsilon"},
    {"grad_clip", T_FLOAT, F(grad_clip), 0, 1e6, 0, "global gradient-norm clip; 0 = off"},
    /* evaluation, logging */
    {"val_every", T_INT, F(val_every), 0, 1 << 30, 0, "steps between validations; 0 = only at the end"},
    {"val_batches", T_INT, F(val_batches), 1, 1 << 20, 0, "micro-batches per validation"},
    {"log_every", T_INT, F(log_every), 1, 1 << 30, 0, "steps between printed lines"},
    /* run */
    {"out", T_STR, F(out), 0, 0, 0, "run directory"},
    {"ckpt_dir", T_STR, F(ckpt_dir), 0, 0, 0, "checkpoint directory; empty = <out>/ckpt"},
    {"ckpt_every", T_INT, F(ckpt_every), 0, 1 << 30, 0, "steps between checkpoints; 0 = none"},
    {"resume", T_BOOL, F(resume), 0, 1, 0, "continue from the latest checkpoint"},
    {"overwrite", T_BOOL, F(overwrite), 0, 1, 0, "reuse an out dir that already holds a run"},
    {"seed", T_U64, F(seed), 0, 9.0e18, 0, "RNG seed (init, data order)"},
    {"threads", T_INT, F(threads), 0, 4096, 0, "threads; 0 = all cores"},
    {"kernels", T_STR, F(kernels), 0, 0, 0, "kernel variants: auto, ref, ...; empty = $FG_KERNELS or auto"},
    {"max_epochs", T_DOUBLE, F(max_epochs), 0, 1e6, 0,
     "caps max_steps at this many passes over the train tokens; 0 = off"},
    {"keep_best", T_BOOL, F(keep_best), 0, 1, 0, "keep the params of the best validation loss in <out>/best"},
};
#define N_OPTS ((int)(sizeof opts / sizeof opts[0]))

static const char *layout_names[] = {"llama", "gpt2"};
static const char *balance_names[] = {"bias", "none", "seqaux", "switch"};

void fg_train_config_default(fg_train_config *c)
{
    memset(c, 0, sizeof *c);
    fg_model_config_default(&c->model, FG_LAYOUT_LLAMA);
    c->model.vocab_size = 0;
    c->model.max_seq_len = 0;
    strcpy(c->tokenizer, "byte");
    c->val_frac = 0.1f;
    c->batch_size = 8;
    c->seq_len = 128;
    c->grad_accum = 1;
    c->max_steps = 1000;
    c->lr = 1e-3f;
    c->min_lr = 1e-4f;
    c->warmup_steps = 50;
    c->weight_decay = 0.1f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->grad_clip = 1.0f;
    c->val_every = 100;
    c->val_batches = 10;
    c->log_every = 10;
    strcpy(c->out, "runs/run");
    c->seed = 1337;
    c->keep_best = 1;
}

static const opt *find_opt(const char *key)
{
    char k[64];
    size_t n = strlen(key);
    if (n >= sizeof k)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        k[i] = key[i] == '-' ? '_' : key[i];
    for (int i = 0; i < N_OPTS; i++)
        if (!strcmp(opts[i].name, k))
            return &opts[i];
    return NULL;
}

static int name_index(const char *s, const char **names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

/* Stores a number into the option's field after the range check. */
static fg_status set_number(fg_train_config *c, const opt *o, double v, const char *where)
{
    char *field = (char *)c + o->off;
    bool integral = o->type == T_INT || o->type == T_LONG || o->type == T_U64 || o->type == T_BOOL;
    if (integral && v != floor(v))
        return fg_error(FG_ERR_INVALID, "%s: key '%s': must be a whole number (got %g)", where, o->name, v);
    if (o->min_excl ? !(v > o->min) : !(v >= o->min))
        return fg_error(FG_ERR_INVALID, "%s: key '%s': must be %s %g (got %g)", where, o->name,
                        o->min_excl ? ">" : ">=", o->min, v);
    if (!(v <= o->max))
        return fg_error(FG_ERR_INVALID, "%s: key '%s': must be <= %g (got %g)", where, o->name, o->max, v);
    switch (o->type) {
    case T_INT:
    case T_BOOL: *(int *)(void *)field = (int)v; break;
    case T_LONG: *(long *)(void *)field = (long)v; break;
    case T_U64: *(uint64_t *)(void *)field = (uint64_t)v; break;
    case T_FLOAT: *(float *)(void *)field = (float)v; break;
    case T_DOUBLE: *(double *)(void *)field = v; break;
    default: return fg_error(FG_ERR_INTERNAL, "%s: key '%s' is not numeric", where, o->name);
    }
    return FG_OK;
}

static fg_status set_string(fg_train_config *c, const opt *o, const char *s, const char *where)
{
    char *field = (char *)c + o->off;
    if (o->type == T_LAYOUT) {
        int i = name_index(s, layout_names, 2);
        if (i < 0)
            return fg_error(FG_ERR_INVALID, "%s: key 'layout': must be llama or gpt2 (got '%s')", where, s);
        /* a layout brings its own tying default; the other model fields stay */
        fg_model_config d;
        fg_model_config_default(&d, (fg_layout)i);
        c->model.layout = (fg_layout)i;
        c->model.tie_embeddings = d.tie_embeddings;
        return FG_OK;
    }
    if (o->type == T_BALANCE) {
        int i = name_index(s, balance_names, 4);
        if (i < 0)
            return fg_error(FG_ERR_INVALID, "%s: key 'balance': must be bias, none, seqaux or switch (got '%s')", where,
                            s);
        c->model.balance = (fg_balance)i;
        return FG_OK;
    }
    if (strlen(s) >= o->size)
        return fg_error(FG_ERR_INVALID, "%s: key '%s': value longer than %zu bytes", where, o->name, o->size - 1);
    strcpy(field, s);
    return FG_OK;
}

static bool is_text_type(opt_type t)
{
    return t == T_STR || t == T_LAYOUT || t == T_BALANCE;
}

int fg_train_config_key_is_flag(const char *key)
{
    const opt *o = find_opt(key);
    return o && o->type == T_BOOL;
}

fg_status fg_train_config_set(fg_train_config *c, const char *key, const char *value, const char *where)
{
    const opt *o = find_opt(key);
    if (!o)
        return fg_error(FG_ERR_INVALID, "%s: unknown key '%s' (frugal train --help lists them)", where, key);
    if (is_text_type(o->type))
        return set_string(c, o, value, where);
    if (o->type == T_BOOL) {
        if (!strcmp(value, "true") || !strcmp(value, "yes"))
            return set_number(c, o, 1, where);
        if (!strcmp(value, "false") || !strcmp(value, "no"))
            return set_number(c, o, 0, where);
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end != '\0' || errno == ERANGE)
        return fg_error(FG_ERR_INVALID, "%s: key '%s': expected a number, got '%s'", where, o->name, value);
    return set_number(c, o, v, where);
}

/* Line and column (1-based) of the top-level key `key` in JSON text, found by a
 * small scan that skips strings and nested values; jansson reports positions only
 * for syntax errors, not for the values of a parsed object. 0:0 when not found. */
static void key_position(const char *text, const char *key, int *line, int *col)
{
    int depth = 0, ln = 1, cl = 1;
    size_t klen = strlen(key);
    *line = *col = 0;
    for (const char *p = text; *p; p++, cl++) {
        if (*p == '\n') {
            ln++;
            cl = 0;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            const char *s = p + 1, *q = s;
            while (*q && *q != '"') {
                if (*q == '\\' && q[1])
                    q++;
                q++;
            }
            const char *after = *q ? q + 1 : q;
            while (*after == ' ' || *after == '\t' || *after == '\r' || *after == '\n')
                after++;
            if (depth == 1 && *after == ':' && (size_t)(q - s) == klen && !strncmp(s, key, klen)) {
                *line = ln;
                *col = cl;
                return;
            }
            cl += (int)(q - p);
            p = *q ? q : q - 1;
        }
    }
}

static fg_status apply_json_value(fg_train_config *c, const opt *o, json_t *v, const char *where)
{
    if (is_text_type(o->type)) {
        if (!json_is_string(v))
            return fg_error(FG_ERR_INVALID, "%s: key '%s': expected a string", where, o->name);
        return set_string(c, o, json_string_value(v), where);
    }
    if (o->type == T_BOOL && json_is_boolean(v))
        return set_number(c, o, json_is_true(v) ? 1 : 0, where);
    if (!json_is_number(v))
        return fg_error(FG_ERR_INVALID, "%s: key '%s': expected a %s", where, o->name,
                        o->type == T_BOOL ? "boolean" : "number");
    return set_number(c, o, json_number_value(v), where);
}

fg_status fg_train_config_load_json_text(fg_train_config *c, const char *text, const char *name)
{
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s", name, err.line, err.column, err.text);
    fg_status st = FG_OK;
    if (!json_is_object(root)) {
        st = fg_error(FG_ERR_FORMAT, "%s:1:1: expected a JSON object of options", name);
        goto out_root;
    }
    /* layout first: it sets the layout's defaults under the keys that follow */
    for (int pass = 0; pass < 2 && st == FG_OK; pass++) {
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v)
        {
            if ((pass == 0) != (strcmp(key, "layout") == 0))
                continue;
            int line, col;
            key_position(text, key, &line, &col);
            char where[FG_TRAIN_PATH_MAX + 32];
            snprintf(where, sizeof where, "%s:%d:%d", name, line, col);
            const opt *o = find_opt(key);
            if (!o || strchr(key, '-')) {
                st = fg_error(FG_ERR_INVALID, "%s: unknown key '%s'", where, key);
                break;
            }
            st = apply_json_value(c, o, v, where);
            if (st != FG_OK)
                break;
        }
    }
out_root:
    json_decref(root);
    return st;
}

fg_status fg_train_config_load_json(fg_train_config *c, const char *path)
{
    char *text;
    size_t n;
    fg_status st = fg_read_file(path, (size_t)64 << 20, &text, &n);
    if (st != FG_OK)
        return st;
    st = fg_train_config_load_json_text(c, text, path);
    fg_free(text);
    return st;
}

fg_status fg_train_config_validate(const fg_train_config *c)
{
    bool has_data = c->data[0] != '\0', has_shards = c->train_shards[0] != '\0';
    if (has_data == has_shards)
        return fg_error(FG_ERR_INVALID, has_data
                                            ? "give either 'data' (raw text) or 'train_shards', not both"
                                            : "no training data: give --data FILE.txt or --train-shards A.bin,...");
    if (c->val_shards[0] && !has_shards)
        return fg_error(FG_ERR_INVALID, "'val_shards' goes with 'train_shards' (with 'data' the split is val_frac)");
    if (!c->tokenizer[0] && has_data)
        return fg_error(FG_ERR_INVALID, "'tokenizer' is empty: raw text needs one (e.g. byte)");
    if (!c->out[0])
        return fg_error(FG_ERR_INVALID, "'out' (the run directory) is empty");
    if (c->min_lr > c->lr)
        return fg_error(FG_ERR_INVALID, "'min_lr' %g is above 'lr' %g", c->min_lr, c->lr);
    if (c->model.max_seq_len > 0 && c->seq_len > c->model.max_seq_len)
        return fg_error(FG_ERR_INVALID, "'seq_len' %d exceeds 'max_seq_len' %d", c->seq_len, c->model.max_seq_len);
    if (c->model.d_model % c->model.n_head != 0)
        return fg_error(FG_ERR_INVALID, "'d_model' %d is not a multiple of 'n_head' %d", c->model.d_model,
                        c->model.n_head);
    return FG_OK;
}

char *fg_train_config_to_json(const fg_train_config *c)
{
    json_t *root = json_object();
    if (!root)
        return NULL;
    for (int i = 0; i < N_OPTS; i++) {
        const opt *o = &opts[i];
        const char *field = (const char *)c + o->off;
        json_t *v = NULL;
        switch (o->type) {
        case T_INT: v = json_integer(*(const int *)(const void *)field); break;
        case T_BOOL: v = json_boolean(*(const int *)(const void *)field); break;
        case T_LONG: v = json_integer(*(const long *)(const void *)field); break;
        case T_U64: v = json_integer((json_int_t) * (const uint64_t *)(const void *)field); break;
        case T_FLOAT: v = json_real(*(const float *)(const void *)field); break;
        case T_DOUBLE: v = json_real(*(const double *)(const void *)field); break;
        case T_STR: v = json_string(field); break;
        case T_LAYOUT: v = json_string(layout_names[c->model.layout == FG_LAYOUT_GPT2]); break;
        case T_BALANCE: {
            int b = (int)c->model.balance;
            v = json_string(b >= 0 && b < 4 ? balance_names[b] : "bias");
            break;
        }
        }
        if (!v || json_object_set_new(root, o->name, v) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!s)
        return NULL;
    char *out = fg_strdup(s);
    free(s); /* jansson's allocator */
    return out;
}

void fg_train_config_print_help(FILE *f)
{
    fg_train_config d;
    fg_train_config_default(&d);
    fprintf(f, "options (flags --name VALUE or --name=VALUE; JSON keys in --config FILE):\n");
    for (int i = 0; i < N_OPTS; i++) {
        const opt *o = &opts[i];
        const char *field = (const char *)&d + o->off;
        char def[64];
        switch (o->type) {
        case T_INT:
        case T_BOOL: snprintf(def, sizeof def, "%d", *(const int *)(const void *)field); break;
        case T_LONG: snprintf(def, sizeof def, "%ld", *(const long *)(const void *)field); break;
        case T_U64:
            snprintf(def, sizeof def, "%llu", (unsigned long long)*(const uint64_t *)(const void *)field);
            break;
        case T_FLOAT: snprintf(def, sizeof def, "%g", *(const float *)(const void *)field); break;
        case T_DOUBLE: snprintf(def, sizeof def, "%g", *(const double *)(const void *)field); break;
        case T_STR: snprintf(def, sizeof def, "\"%.58s\"", field); break;
        case T_LAYOUT: snprintf(def, sizeof def, "%s", layout_names[d.model.layout == FG_LAYOUT_GPT2]); break;
        case T_BALANCE: snprintf(def, sizeof def, "%s", balance_names[(int)d.model.balance & 3]); break;
        }
        char flag[64];
        snprintf(flag, sizeof flag, "%s", o->name);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(f, "  --%-18s %-12s %s\n", flag, def, o->help);
    }
}

static bool is_extra(const char *name, size_t n, const char *const *extra)
{
    for (int i = 0; extra && extra[i]; i++)
        if (strlen(extra[i]) == n && !strncmp(extra[i], name, n))
            return true;
    return false;
}

fg_status fg_train_config_from_args(fg_train_config *c, int argc, char **argv, const char *const *extra)
{
    for (int i = 1; i < argc; i++) {
        const char *cfg = NULL;
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc)
                return fg_error(FG_ERR_INVALID, "--config: missing FILE");
            cfg = argv[i + 1];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            cfg = argv[i] + 9;
        }
        if (cfg) {
            fg_status st = fg_train_config_load_json(c, cfg);
            if (st != FG_OK)
                return st;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return fg_error(FG_ERR_INVALID, "'%s': expected an option --name", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        char key[64];
        if (n == 0 || n >= sizeof key)
            return fg_error(FG_ERR_INVALID, "'%s': bad option", a);
        memcpy(key, name, n);
        key[n] = '\0';
        const char *value = eq ? eq + 1 : NULL;
        bool takes_value = strcmp(key, "config") == 0 || is_extra(name, n, extra) || !fg_train_config_key_is_flag(key);
        if (!value && takes_value) {
            if (i + 1 >= argc)
                return fg_error(FG_ERR_INVALID, "--%s: missing value", key);
            value = argv[++i];
        } else if (!value) {
            /* a boolean flag alone, or followed by an explicit 0/1/true/false */
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                value = argv[++i];
            else
                value = "1";
        }
        if (!strcmp(key, "config") || is_extra(name, n, extra))
            continue;
        char where[80];
        snprintf(where, sizeof where, "--%s", key);
        fg_status st = fg_train_config_set(c, key, value, where);
        if (st != FG_OK)
            return st;
    }
    return FG_OK;
}
