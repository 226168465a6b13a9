/* cmd_convert.c: `frugal convert`: llm.c GPT-2 checkpoints (v3, fp32) and Hugging Face
 * transformers directories into a Frugal run directory (config.json + final/ checkpoint)
 * and back, runs into GGUF for llama.cpp, a run's linear layers into an int8 weights
 * file (--quantize int8), and the logits / greedy tokens the outside checks compare. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "frugal/convert.h"
#include "frugal/kernels.h"
#include "frugal/train.h"

typedef struct convert_opts {
    char from_llmc[4096], to_llmc[4096], out[FG_TRAIN_PATH_MAX], run[4096], ckpt[4096], tokenizer[FG_TRAIN_PATH_MAX];
    char quantize[16], layers[48];
    char to_hf[4096], from_hf[4096], to_gguf[4096], type[16], logits[4096], tokens[65536];
    int greedy;
    double shard_mb;
} convert_opts;

#define CF(field) FG_OPT_FIELD(convert_opts, field)
static const fg_opt convert_table[] = {
    {"from_llmc", FG_OPT_STR, CF(from_llmc), .help = "llm.c checkpoint to import (gpt2_124M.bin, version 3)"},
    {"out", FG_OPT_STR, CF(out),
     .help = "run directory to create (with --from-llmc); int8 weights file (with --quantize, default RUN/model.int8)"},
    {"tokenizer", FG_OPT_STR, CF(tokenizer), .help = "tokenizer recorded in the run's config (with --from-llmc)"},
    {"to_llmc", FG_OPT_STR, CF(to_llmc), .help = "llm.c checkpoint to write"},
    {"run", FG_OPT_STR, CF(run), .help = "run directory to export (with --to-llmc)"},
    {"ckpt", FG_OPT_STR, CF(ckpt), .help = "checkpoint directory (default RUN/final)"},
    {"quantize", FG_OPT_STR, CF(quantize), .help = "int8: write the run's linear layers as int8 weights (with --run)"},
    {"to_hf", FG_OPT_STR, CF(to_hf), .help = "transformers directory to write (with --run)"},
    {"from_hf", FG_OPT_STR, CF(from_hf),
     .help = "transformers directory to import (GPT2LMHeadModel, LlamaForCausalLM; with --out)"},
    {"shard_mb", FG_OPT_DOUBLE, CF(shard_mb), .min = 0, .max = 1e9,
     .help = "with --to-hf: safetensors shard size in MB (0: 5000, transformers' default)"},
    {"to_gguf", FG_OPT_STR, CF(to_gguf), .help = "GGUF file to write for llama.cpp (with --run; llama layout)"},
    {"type", FG_OPT_STR, CF(type), .help = "with --to-gguf: f32, f16 or q8_0 (default f32)"},
    {"logits", FG_OPT_STR, CF(logits),
     .help = "with --run and --tokens: write the fp32 logits [n_tokens, vocab_size] (float32, little-endian) here"},
    {"greedy", FG_OPT_INT, CF(greedy), .min = 0, .max = 1 << 20,
     .help = "with --run and --tokens: print the ids of N greedy next tokens"},
    {"tokens", FG_OPT_STR, CF(tokens), .help = "comma-separated token ids (with --logits or --greedy)"},
    {"layers", FG_OPT_STR, CF(layers),
     .help = "with --quantize: the qat_layers syntax (qkv, ..., experts, all; default: the run's qat_layers, else "
             "all)"},
};
#undef CF

static const char convert_usage[] =
    "usage: frugal convert --from-llmc FILE.bin --out RUN_DIR [--tokenizer PATH]\n"
    "       frugal convert --to-llmc FILE.bin --run RUN_DIR [--ckpt CKPT_DIR]\n"
    "       frugal convert --quantize int8 --run RUN_DIR [--ckpt CKPT_DIR] [--out FILE]\n"
    "       frugal convert --to-hf DIR --run RUN_DIR [--ckpt CKPT_DIR] [--shard-mb N]\n"
    "       frugal convert --from-hf DIR --out RUN_DIR [--tokenizer PATH]\n"
    "       frugal convert --to-gguf FILE.gguf --run RUN_DIR [--type f32|f16|q8_0]\n"
    "       frugal convert --run RUN_DIR --tokens 1,2,3 (--logits FILE | --greedy N)\n"
    "Loads and stores weights only (no kernels run).\n";

/* The run's tokenizer for an export (NULL, with a warning, when it cannot be loaded:
 * the weights are still worth writing). */
static fg_tokenizer *run_tokenizer(const fg_train_config *c)
{
    if (!c->tokenizer[0]) {
        fprintf(stderr, "convert: the run records no tokenizer: none written\n");
        return NULL;
    }
    fg_tokenizer *t = fg_tok_load(c->tokenizer);
    if (!t)
        fprintf(stderr, "convert: warning: tokenizer %s not written: %s\n", c->tokenizer, fg_last_error());
    return t;
}

/* --tokens "1,2,3" into ids[] (fg_malloc'd), checked against the vocabulary. */
static fg_status parse_tokens(const char *s, int vocab, int32_t **ids, int *n)
{
    int cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    *ids = fg_malloc((size_t)cap * sizeof **ids);
    if (!*ids)
        return FG_ERR_NOMEM;
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= vocab || (*end && *end != ',')) {
            fg_free(*ids);
            *ids = NULL;
            return fg_error(FG_ERR_INVALID, "--tokens: '%.20s' at character %d is not an id below %d", p, (int)(p - s),
                            vocab);
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!*n)
        return fg_error(FG_ERR_INVALID, "--tokens: no ids");
    return FG_OK;
}

/* The run's model in fp32 (a bf16/fp8 run keeps no logits; its master weights are fp32). */
static fg_status load_fp32(const char *run, const char *ckpt, int T, fg_train_config *c, fg_model **m)
{
    fg_status st = fg_train_load_run(run, ckpt, 1, T, c, m);
    if (st != FG_OK || c->model.precision == FG_PRECISION_FP32)
        return st;
    fg_model_config mc = *fg_model_get_config(*m);
    mc.precision = FG_PRECISION_FP32;
    fg_model *f = fg_model_new(&mc, 1, T);
    if (!f) {
        fg_model_delete(*m);
        *m = NULL;
        return fg_last_status();
    }
    memcpy(fg_model_params(f), fg_model_params(*m), fg_model_num_params(f) * sizeof(float));
    fg_model_delete(*m);
    *m = f;
    return FG_OK;
}

static int eval_tokens(const convert_opts *o)
{
    fg_status st = fg_kernels_configure(NULL, NULL, 0);
    if (st != FG_OK)
        return fg_cli_fail("convert", st, NULL);
    fg_train_config c;
    fg_model *m = NULL;
    int32_t *ids = NULL, *out = NULL;
    int n = 0;
    st = fg_train_load_run(o->run, o->ckpt, 1, 1, &c, &m); /* the vocabulary and maxT first */
    if (st == FG_OK) {
        st = parse_tokens(o->tokens, c.model.vocab_size, &ids, &n);
        fg_model_delete(m);
        m = NULL;
    }
    if (st == FG_OK && n > c.model.max_seq_len)
        st = fg_error(FG_ERR_INVALID, "--tokens: %d ids, the model's context is %d", n, c.model.max_seq_len);
    if (st == FG_OK)
        st = load_fp32(o->run, o->ckpt, n, &c, &m);
    if (st == FG_OK && o->logits[0]) {
        float loss;
        st = fg_model_forward(m, ids, NULL, 1, n, &loss);
        const float *lg = st == FG_OK ? fg_model_logits(m) : NULL;
        FILE *f = lg ? fopen(o->logits, "wb") : NULL;
        if (st == FG_OK && !f)
            st = fg_error(FG_ERR_IO, "%s: cannot create: %s", o->logits, strerror(errno));
        int V = c.model.vocab_size, Vp = fg_model_get_config(m)->padded_vocab;
        for (int t = 0; f && t < n && st == FG_OK; t++)
            if (fwrite(lg + (size_t)t * Vp, sizeof(float), (size_t)V, f) != (size_t)V)
                st = fg_error(FG_ERR_IO, "%s: write failed: %s", o->logits, strerror(errno));
        if (f && fclose(f) != 0 && st == FG_OK)
            st = fg_error(FG_ERR_IO, "%s: close failed: %s", o->logits, strerror(errno));
        if (st == FG_OK)
            printf("convert: logits [%d, %d] -> %s\n", n, V, o->logits);
    }
    if (st == FG_OK && o->greedy) {
        int cap = n + o->greedy;
        out = fg_malloc((size_t)cap * sizeof *out);
        fg_sampler s = {.temperature = 0, .top_k = 0, .top_p = 1};
        int got = out ? fg_model_generate(m, ids, n, o->greedy, -1, &s, out) : FG_ERR_NOMEM;
        if (got < 0)
            st = (fg_status)got;
        for (int i = n; i < got; i++)
            printf("%s%d", i > n ? " " : "", out[i]);
        if (got >= 0)
            printf("\n");
    }
    fg_free(out);
    fg_free(ids);
    fg_model_delete(m);
    return st == FG_OK ? 0 : fg_cli_fail("convert", st, NULL);
}

/* An absolute form of a path that may not exist yet (config.json records the
 * tokenizer's path, and runs are read from any working directory). */
static fg_status absolute(const char *p, char *out, size_t cap)
{
    char cwd[PATH_MAX];
    int w = p[0] == '/' || !getcwd(cwd, sizeof cwd) ? snprintf(out, cap, "%s", p) : snprintf(out, cap, "%s/%s", cwd, p);
    if (w < 0 || (size_t)w >= cap)
        return fg_error(FG_ERR_INVALID, "%s: path longer than %zu bytes", p, cap - 1);
    return FG_OK;
}

static int from_hf(const convert_opts *o)
{
    const char *dir = o->from_hf, *out = o->out;
    char p[8192];
    snprintf(p, sizeof p, "%s/config.json", out);
    if (access(p, F_OK) == 0)
        return fg_cli_fail(
            "convert", fg_error(FG_ERR_INVALID, "%s: already holds a run (config.json): nothing written", out), NULL);
    fg_model *m = fg_hf_import(dir, 1, 1);
    if (!m)
        return fg_cli_fail("convert", fg_last_status(), "nothing was written");
    /* the tokenizer: --tokenizer, else the directory's tokenizer.json, checked before
     * anything is written */
    char tok_src[8192] = "";
    if (o->tokenizer[0])
        snprintf(tok_src, sizeof tok_src, "%s", o->tokenizer);
    else {
        snprintf(tok_src, sizeof tok_src, "%s/tokenizer.json", dir);
        if (access(tok_src, F_OK) != 0)
            tok_src[0] = 0;
    }
    fg_status st = FG_OK;
    char *tok_bytes = NULL;
    size_t tok_len = 0;
    int vocab = fg_model_get_config(m)->vocab_size;
    if (tok_src[0]) {
        fg_tokenizer *t = fg_tok_load(tok_src);
        if (!t)
            st = fg_last_status();
        else if (fg_tok_vocab_size(t) > vocab)
            st = fg_error(FG_ERR_FORMAT, "%s: %d tokens, more than the model's vocab_size %d", tok_src,
                          fg_tok_vocab_size(t), vocab);
        fg_tok_delete(t);
        if (st == FG_OK && strcmp(tok_src, "byte") && (st = fg_read_file(tok_src, 0, &tok_bytes, &tok_len)) != FG_OK)
            tok_bytes = NULL;
    }
    fg_train_config c;
    fg_train_config_default(&c);
    c.model = *fg_model_get_config(m);
    c.seq_len = c.model.max_seq_len;
    snprintf(c.out, sizeof c.out, "%s", out);
    if (tok_bytes) {
        snprintf(p, sizeof p, "%s/tokenizer.json", out);
        if (st == FG_OK)
            st = absolute(p, c.tokenizer, sizeof c.tokenizer);
    } else if (tok_src[0] && st == FG_OK) {
        size_t k = strlen(tok_src);
        if (k >= sizeof c.tokenizer)
            st = fg_error(FG_ERR_INVALID, "%s: tokenizer path longer than %zu bytes", tok_src, sizeof c.tokenizer - 1);
        else
            memcpy(c.tokenizer, tok_src, k + 1);
    }
    if (st == FG_OK)
        st = fg_train_save_run(out, &c, m);
    if (st == FG_OK && tok_bytes)
        st = fg_file_commit(c.tokenizer, tok_bytes, tok_len);
    fg_free(tok_bytes);
    fg_model_delete(m);
    if (st != FG_OK)
        return fg_cli_fail("convert", st, NULL);
    printf("convert: %s -> %s (config.json, final/%s)\n", dir, out, c.tokenizer[0] ? ", tokenizer" : "");
    return 0;
}

static int convert_formats(const convert_opts *o)
{
    const char *run = o->run[0] ? o->run : NULL;
    if (o->from_hf[0]) {
        if (!o->out[0] || run)
            return fg_cli_fail("convert", fg_error(FG_ERR_INVALID, "--from-hf DIR takes --out RUN_DIR"),
                               "frugal convert --help");
        return from_hf(o);
    }
    if (!run)
        return fg_cli_fail("convert", fg_error(FG_ERR_INVALID, "--to-hf, --to-gguf, --logits and --greedy take --run"),
                           "frugal convert --help");
    if (o->logits[0] || o->greedy) {
        if (!o->tokens[0])
            return fg_cli_fail("convert", fg_error(FG_ERR_INVALID, "--logits and --greedy take --tokens"), NULL);
        return eval_tokens(o);
    }
    fg_gguf_type type = FG_GGUF_F32;
    if (o->to_gguf[0] && o->type[0]) {
        if (!strcmp(o->type, "f16"))
            type = FG_GGUF_F16;
        else if (!strcmp(o->type, "q8_0"))
            type = FG_GGUF_Q8_0;
        else if (strcmp(o->type, "f32"))
            return fg_cli_fail("convert", fg_error(FG_ERR_INVALID, "--type '%s': expected f32, f16 or q8_0", o->type),
                               NULL);
    }
    fg_train_config c;
    fg_model *m = NULL;
    fg_status st = fg_train_load_run(run, o->ckpt, 1, 1, &c, &m);
    if (st != FG_OK)
        return fg_cli_fail("convert", st, NULL);
    fg_tokenizer *tok = run_tokenizer(&c);
    const char *to = o->to_hf[0] ? o->to_hf : o->to_gguf;
    if (o->to_hf[0])
        st = fg_hf_export(m, tok, o->to_hf, (size_t)(o->shard_mb * 1e6));
    else
        st = fg_gguf_export(m, tok, o->to_gguf, type);
    fg_tok_delete(tok);
    fg_model_delete(m);
    if (st != FG_OK)
        return fg_cli_fail("convert", st, NULL);
    printf("convert: %s -> %s\n", run, to);
    return 0;
}

int fg_cmd_convert(int argc, char **argv)
{
    convert_opts o, def;
    memset(&o, 0, sizeof o);
    def = o;
    fg_opt_table t = {convert_table, FG_OPT_COUNT(convert_table), &o};
    const void *defs[] = {&def};
    fg_cli_spec spec = {"convert", convert_usage, &t, defs, 1, NULL};
    fg_opt_args a = {0};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    const char *from = o.from_llmc[0] ? o.from_llmc : NULL, *to = o.to_llmc[0] ? o.to_llmc : NULL;
    const char *out = o.out[0] ? o.out : NULL, *run = o.run[0] ? o.run : NULL, *ckpt = o.ckpt;
    const char *tok = o.tokenizer[0] ? o.tokenizer : NULL;
    if (from && out && !to) {
        fg_model *m = fg_model_load_llmc(from, 1, 1);
        if (!m)
            return fg_cli_fail("convert", fg_last_status(), "--from-llmc takes llm.c's gpt2_124M.bin (version 3)");
        fg_train_config c;
        fg_train_config_default(&c);
        c.model = *fg_model_get_config(m);
        c.seq_len = c.model.max_seq_len;
        snprintf(c.tokenizer, sizeof c.tokenizer, "%s", tok ? tok : "");
        snprintf(c.out, sizeof c.out, "%s", out);
        fg_status st = fg_train_save_run(out, &c, m);
        fg_model_delete(m);
        if (st != FG_OK)
            return fg_cli_fail("convert", st, NULL);
        printf("convert: %s -> %s (config.json, final/)\n", from, out);
        return 0;
    }
    if (o.to_hf[0] || o.from_hf[0] || o.to_gguf[0] || o.logits[0] || o.greedy)
        return convert_formats(&o);
    if (o.quantize[0]) {
        if (strcmp(o.quantize, "int8"))
            return fg_cli_fail("convert", fg_error(FG_ERR_INVALID, "--quantize '%s': expected int8", o.quantize), NULL);
        if (!run || from || to)
            return fg_cli_fail("convert", fg_error(FG_ERR_INVALID, "--quantize int8 takes --run RUN_DIR"),
                               "frugal convert --help");
        fg_train_config c;
        fg_model *m = NULL;
        fg_status st = fg_train_load_run(run, ckpt, 1, 1, &c, &m);
        if (st != FG_OK)
            return fg_cli_fail("convert", st, NULL);
        char path[4096 + 16];
        snprintf(path, sizeof path, "%s", out ? out : "");
        if (!out)
            snprintf(path, sizeof path, "%s/model.int8", run);
        const char *layers = o.layers[0] ? o.layers : c.model.qat_layers;
        st = fg_model_int8_save(m, layers, path);
        fg_model_delete(m);
        if (st != FG_OK)
            return fg_cli_fail("convert", st, NULL);
        printf("convert: %s -> %s (int8 weights of %s)\n", run, path, layers[0] ? layers : "all");
        return 0;
    }
    if (to && run && !from) {
        fg_train_config c;
        fg_model *m = NULL;
        fg_status st = fg_train_load_run(run, ckpt, 1, 1, &c, &m);
        if (st != FG_OK)
            return fg_cli_fail("convert", st, NULL);
        st = fg_model_save_llmc(m, to);
        fg_model_delete(m);
        if (st != FG_OK)
            return fg_cli_fail("convert", st, "llm.c checkpoints hold the gpt2 layout only");
        printf("convert: %s -> %s\n", run, to);
        return 0;
    }
    return fg_cli_fail("convert",
                       fg_error(FG_ERR_INVALID, "give either --from-llmc FILE --out DIR or --to-llmc FILE --run DIR"),
                       "frugal convert --help");
}
