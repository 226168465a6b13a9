/* cmd_convert.c: `frugal convert`: llm.c GPT-2 checkpoints (v3, fp32) into a Frugal
 * run directory (config.json + final/ checkpoint) and back, and a run's linear layers
 * into an int8 weights file (--quantize int8). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frugal/train.h"

typedef struct convert_opts {
    char from_llmc[4096], to_llmc[4096], out[FG_TRAIN_PATH_MAX], run[4096], ckpt[4096], tokenizer[FG_TRAIN_PATH_MAX];
    char quantize[16], layers[48];
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
    {"layers", FG_OPT_STR, CF(layers),
     .help = "with --quantize: qkv, attproj, fc, fcproj, head or all (default: the run's qat_layers, else all)"},
};
#undef CF

static const char convert_usage[] =
    "usage: frugal convert --from-llmc FILE.bin --out RUN_DIR [--tokenizer PATH]\n"
    "       frugal convert --to-llmc FILE.bin --run RUN_DIR [--ckpt CKPT_DIR]\n"
    "       frugal convert --quantize int8 --run RUN_DIR [--ckpt CKPT_DIR] [--out FILE]\n"
    "Loads and stores weights only (no kernels run).\n";

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
