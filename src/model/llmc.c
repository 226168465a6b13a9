/* llmc.c: import and export of llm.c's GPT-2 checkpoint (train_gpt2.c, version 3:
 * a 256 x int32 header {20240326, 3, maxT, V, L, NH, C, Vp, 0...} then every fp32
 * parameter in llm.c's order, which is Frugal's gpt2 flat order, so the body is one
 * read or write). Leaves out: version 5 (bf16, llm.c's CUDA trainer), big-endian hosts.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "frugal/model.h"
#include "model_impl.h"

#define LLMC_MAGIC 20240326
#define LLMC_VERSION 3
#define LLMC_HEADER_INTS 256

fg_model *fg_model_load_llmc(const char *path, int B, int T)
{
    fg_model *m = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fg_error(FG_ERR_IO, "%s: cannot open llm.c checkpoint: %s", path, strerror(errno));
        return NULL;
    }
    int32_t h[LLMC_HEADER_INTS];
    size_t got = fread(h, sizeof(int32_t), LLMC_HEADER_INTS, f);
    if (got != LLMC_HEADER_INTS) {
        fg_error(FG_ERR_CORRUPT, "%s: truncated: %zu bytes, shorter than the 1024-byte llm.c header", path,
                 got * sizeof(int32_t));
        goto done;
    }
    if (h[0] != LLMC_MAGIC) {
        fg_error(FG_ERR_FORMAT, "%s: bad magic %d at byte 0 (an llm.c GPT-2 checkpoint starts with %d)", path, h[0],
                 LLMC_MAGIC);
        goto done;
    }
    if (h[1] != LLMC_VERSION) {
        fg_error(FG_ERR_UNSUPPORTED, "%s: llm.c checkpoint version %d at byte 4; only version %d (fp32) is supported",
                 path, h[1], LLMC_VERSION);
        goto done;
    }
    fg_model_config cfg;
    fg_model_config_default(&cfg, FG_LAYOUT_GPT2);
    cfg.max_seq_len = h[2];
    cfg.vocab_size = h[3];
    cfg.n_layer = h[4];
    cfg.n_head = h[5];
    cfg.d_model = h[6];
    cfg.padded_vocab = h[7];
    cfg.tie_embeddings = 1;
    if (cfg.d_model > 0)
        cfg.d_ff = 4 * cfg.d_model;
    if (fg_model_config_validate(&cfg) != FG_OK || cfg.padded_vocab < 1) {
        char why[256]; /* copied: fg_error overwrites the last-error buffer it would read */
        snprintf(why, sizeof why, "%s", cfg.padded_vocab < 1 ? "Vp < 1" : fg_last_error());
        fg_error(FG_ERR_FORMAT, "%s: header {maxT %d, V %d, L %d, NH %d, C %d, Vp %d} is not a valid model: %s", path,
                 h[2], h[3], h[4], h[5], h[6], h[7], why);
        goto done;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fg_error(FG_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        goto done;
    }
    long fsize = ftell(f);
    /* llm.c's parameter count from the header alone, checked against the file size
     * before anything is allocated (a bogus header must not trigger a huge allocation) */
    double C = h[6], L = h[4];
    double np = (double)h[7] * C + (double)h[2] * C + L * (12.0 * C * C + 13.0 * C) + 2.0 * C;
    double want = (double)sizeof h + 4.0 * np;
    if (fsize < 0 || (double)fsize != want) {
        fg_error(
            (double)fsize < want ? FG_ERR_CORRUPT : FG_ERR_FORMAT,
            "%s: %s: file has %ld bytes, header {maxT %d, V %d, L %d, NH %d, C %d, Vp %d} implies %.0f (1024 + 4 x "
            "%.0f params)",
            path, (double)fsize < want ? "truncated" : "wrong size", fsize, h[2], h[3], h[4], h[5], h[6], h[7], want,
            np);
        goto done;
    }
    m = fg_model_new(&cfg, B, T < cfg.max_seq_len ? T : cfg.max_seq_len);
    if (!m)
        goto done;
    FG_ASSERT(m->n_params == (size_t)np); /* the flat gpt2 layout is llm.c's */
    if (fseek(f, (long)sizeof h, SEEK_SET) != 0 || fread(m->params, sizeof(float), m->n_params, f) != m->n_params) {
        fg_error(FG_ERR_IO, "%s: read of %zu parameters failed", path, m->n_params);
        goto fail;
    }
    goto done;
fail:
    fg_model_delete(m);
    m = NULL;
done:
    fclose(f);
    return m;
}

fg_status fg_model_save_llmc(const fg_model *m, const char *path)
{
    const fg_model_config *c = &m->cfg;
    if (c->layout != FG_LAYOUT_GPT2 || !c->tie_embeddings || c->d_ff != 4 * c->d_model || c->moe.n_expert > 0 ||
        c->ffn_share != FG_SHARE_NONE || c->mtp_depth > 0 || c->mla_kv_rank > 0)
        return fg_error(FG_ERR_UNSUPPORTED,
                        "%s: llm.c checkpoints hold only dense gpt2 models with tied embeddings, d_ff = 4C and no "
                        "FFN sharing, MTP or MLA (this model: layout %d, tie %d, d_ff %d, C %d, n_expert %d, "
                        "ffn_share %d, mla_kv_rank %d)",
                        path, (int)c->layout, c->tie_embeddings, c->d_ff, c->d_model, c->moe.n_expert,
                        (int)c->ffn_share, c->mla_kv_rank);
    int32_t h[LLMC_HEADER_INTS] = {0};
    h[0] = LLMC_MAGIC;
    h[1] = LLMC_VERSION;
    h[2] = c->max_seq_len;
    h[3] = c->vocab_size;
    h[4] = c->n_layer;
    h[5] = c->n_head;
    h[6] = c->d_model;
    h[7] = c->padded_vocab;
    FILE *f = fopen(path, "wb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    fg_status st = FG_OK;
    if (fwrite(h, sizeof h, 1, f) != 1 || fwrite(m->params, sizeof(float), m->n_params, f) != m->n_params)
        st = fg_error(FG_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (fclose(f) != 0 && st == FG_OK)
        st = fg_error(FG_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}
