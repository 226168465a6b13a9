/* cmd_convert.c: `frugal convert`: llm.c GPT-2 checkpoints (v3, fp32) into a Frugal
 * run directory (config.json + final/ checkpoint) and back. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frugal/train.h"

static void convert_usage(FILE *f)
{
    fprintf(f, "usage: frugal convert --from-llmc FILE.bin --out RUN_DIR [--tokenizer PATH]\n"
               "       frugal convert --to-llmc FILE.bin --run RUN_DIR [--ckpt CKPT_DIR]\n");
}

int fg_cmd_convert(int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *out = NULL, *run = NULL, *ckpt = "", *tok = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            convert_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            convert_usage(stderr);
            return 2;
        }
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--from-llmc"))
            from = v;
        else if (!strcmp(a, "--to-llmc"))
            to = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--run"))
            run = v;
        else if (!strcmp(a, "--ckpt"))
            ckpt = v;
        else if (!strcmp(a, "--tokenizer"))
            tok = v;
        else {
            fprintf(stderr, "frugal convert: error: unknown option '%s'\n", a);
            convert_usage(stderr);
            return 2;
        }
    }
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
    convert_usage(stderr);
    return 2;
}
