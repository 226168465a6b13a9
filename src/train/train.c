/* train.c: one training run end to end: checks every input before writing, tokenises
 * raw text into shards, then steps (accumulate, clip, schedule, AdamW), validates,
 * logs metrics.jsonl, checkpoints through ckpt.h and prints the cost summary.
 * With loss_scale dynamic, the loss scaler (precision.h) scales the backward and skips
 * steps whose gradients hold inf/nan. Leaves out data/tensor/pipeline parallelism (src/dist). */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dp.h"
#include "frugal/ckpt.h"
#include "frugal/data.h"
#include "frugal/hw.h"
#include "frugal/kernels.h"
#include "frugal/moe.h"
#include "frugal/optim.h"
#include "frugal/precision.h"
#include "frugal/synth.h"
#include "frugal/tok.h"
#include "frugal/train.h"
#include "pp.h"
#include "tp.h"

#define PATHN (FG_TRAIN_PATH_MAX + 64)

typedef struct run {
    fg_train_config c;
    fg_tokenizer *tok;
    fg_model *m;
    fg_optim opt;
    fg_loss_scaler scaler; /* loss_scale dynamic; checkpointed in the meta */
    fg_loader train, val;
    bool has_val;
    int32_t *inp, *tgt; /* [grad_accum*B, T] */
    fg_ckpt_writer *ckw;
    bool ckpt_failed;       /* a checkpoint write failed: the cost summary says so */
    fg_lock lock;           /* on <out>/.frugal.lock: one process per run directory */
    fg_ckpt_writer *best_w; /* <out>/best (keep_best), made at the first save */
    FILE *metrics;
    int metrics_errno; /* first failed write to metrics.jsonl, 0 while none */
    char metrics_path[PATHN];
    long step;            /* optimiser steps completed */
    double tokens_before; /* tokens of steps done before a resume */
    char train_path[PATHN], val_path[PATHN];
    /* data parallelism: comm is the dp communicator (NULL: one process); dp exists when it
     * has more than one rank. Rank 0 alone writes (run directory, metrics, checkpoints). */
    fg_comm *comm;
    fg_comm *ep_comm; /* expert parallelism: this rank's ep group (NULL: off) */
    /* pipeline parallelism (pp.c): pp_comm the stage group (NULL: one stage); pp exists
     * when it has more than one rank. rank0 is then world rank 0 (stage 0 of replica 0). */
    fg_comm *pp_comm;
    pp *pp;
    /* tensor parallelism (tp.c; its steps run through pp.c, a single stage when pp is 1) */
    fg_comm *tp_comm;
    tp *tp;
    /* every rank of the grid: ZeRO-1's group when tp or pp > 1 (then dp exists even at dp 1) */
    fg_comm *world;
    fg_comm *stage_comm; /* ZeRO-1 over a pipeline stage's ranks (stage-owned memory) */
    /* pipelines: params + grads + m + v bytes, rank 0's and the largest of any rank: the
     * stage's share (own), resident pages (res), peak RSS; whole: the whole model's */
    double mem[4], mem_max[4], mem_whole;
    double peak_resident; /* the most resident pages of the four buffers seen after a resume, checkpoint, validation,
                             final/ */
    dp *dp;
    bool rank0;
    fg_adapt ad;           /* adaptive batch size (adaptive.c): ad.accum micro-batches this step */
    float *row_loss;       /* augmentation: [B] per-row losses of a micro-batch, for the loader */
    char layout_note[256]; /* --resume: what of the saved pipeline split / expert placement was taken */
} run;

/* ---- small file helpers ---- */
static fg_status mkdir_p(const char *dir)
{
    char p[PATHN];
    if (strlen(dir) >= sizeof p)
        return fg_error(FG_ERR_INVALID, "%s: path too long", dir);
    strcpy(p, dir);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char keep = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return fg_error(FG_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            *s = keep;
            if (!keep)
                break;
        }
    }
    return FG_OK;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static fg_status read_file(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fg_status st = FG_OK;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = fg_error(FG_ERR_IO, "%s: not a readable regular file", path);
        goto out_close;
    }
    *len = (size_t)sb.st_size;
    *text = fg_malloc(*len + 1);
    if (!*text) {
        st = FG_ERR_NOMEM;
        goto out_close;
    }
    if (fread(*text, 1, *len, f) != *len) {
        fg_free(*text);
        *text = NULL;
        st = fg_error(FG_ERR_IO, "%s: read failed", path);
        goto out_close;
    }
    (*text)[*len] = '\0';
out_close:
    fclose(f);
    return st;
}

/* Writes text and a newline to path, whole or absent (fg_file_commit). */
static fg_status write_text_atomic(const char *path, const char *text)
{
    fg_file_tx tx;
    fg_status st = fg_file_tx_open(&tx, path, 0);
    if (st != FG_OK)
        return st;
    fg_file_tx_write(&tx, text, strlen(text));
    fg_file_tx_write(&tx, "\n", 1);
    return fg_file_tx_commit(&tx);
}

static fg_status write_shard(const char *path, const uint32_t *ids, size_t n, uint32_t vocab, int eot)
{
    fg_shard_writer w;
    fg_status st = fg_shard_writer_open(&w, path, vocab, eot >= 0 ? (uint32_t)eot : FG_SHARD_NO_EOT, 0);
    if (st != FG_OK)
        return st;
    st = fg_shard_writer_write(&w, ids, n);
    if (st != FG_OK) {
        fg_shard_writer_abort(&w);
        return st;
    }
    return fg_shard_writer_close(&w);
}

/* Prefixes the last error with `what` (the message is copied first: fg_error
 * formats into the same buffer). */
static fg_status rewrap(fg_status st, const char *what)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", fg_last_error());
    return fg_error(st, "%s: %s", what, msg);
}

/* ---- metrics.jsonl: appended line by line, every write checked; the first failure
 * stops the run (a log with a hole would pass for a complete one) ---- */
static void metrics_printf(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void metrics_printf(run *r, const char *fmt, ...)
{
    if (!r->metrics)
        return; /* a data-parallel rank other than 0 */
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(r->metrics, fmt, ap);
    va_end(ap);
    if (n < 0 && !r->metrics_errno)
        r->metrics_errno = errno ? errno : EIO;
}

static fg_status metrics_flush(run *r)
{
    if (!r->metrics)
        return FG_OK;
    if (fflush(r->metrics) != 0 && !r->metrics_errno)
        r->metrics_errno = errno ? errno : EIO;
    if (!r->metrics_errno && ferror(r->metrics))
        r->metrics_errno = EIO;
    if (r->metrics_errno)
        return fg_error(FG_ERR_IO, "%s: write failed at step %ld: %s (the run stops: its log would have a hole)",
                        r->metrics_path, r->step, strerror(r->metrics_errno));
    return FG_OK;
}

/* A run stopped by a failed write (or a kill) may have left a torn last line in
 * metrics.jsonl: a resume drops it, so the log stays one JSON object per line. */
static fg_status trim_torn_line(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (!file_exists(path))
        return FG_OK;
    fg_status st = fg_read_file(path, 0, &text, &len);
    if (st != FG_OK)
        return st;
    size_t keep = len;
    while (keep > 0 && text[keep - 1] != '\n')
        keep--;
    fg_free(text);
    if (keep < len) {
        FG_WARN("%s: dropping a torn last line (%zu bytes) before appending", path, len - keep);
        if (truncate(path, (off_t)keep) != 0)
            return fg_error(FG_ERR_IO, "%s: cannot drop the torn last line: %s", path, strerror(errno));
    }
    return FG_OK;
}

/* ---- the run directory ---- */

/* --resume needs a checkpoint: checked before anything is written (no data/, no lock
 * file, no config.json for a run that cannot start). */
static fg_status require_checkpoint(const char *ckpt_dir)
{
    char **paths = NULL;
    int n = 0;
    fg_status st = fg_ckpt_list(ckpt_dir, &paths, &n);
    fg_ckpt_list_free(paths, n);
    if (st != FG_OK && access(ckpt_dir, F_OK) != 0)
        st = fg_error(FG_ERR_IO, "--resume: %s: no checkpoint directory: nothing to resume (nothing was written)",
                      ckpt_dir);
    else if (st == FG_OK && n == 0)
        st = fg_error(FG_ERR_IO, "--resume: %s: no checkpoint (ckpt-*.fgck) to resume from (nothing was written)",
                      ckpt_dir);
    return st;
}

/* --overwrite: the previous run's checkpoints, final/, best/ and metrics go before this
 * run writes anything, so a resume after a crash early in this run cannot pick up the
 * old run's state into the new run's log. Called with the run directory locked. */
static fg_status clear_old_run(const fg_train_config *c)
{
    char p[PATHN];
    fg_status st = fg_ckpt_remove_all(c->ckpt_dir);
    if (st == FG_OK)
        st = dp_remove_rank_ckpts(c->ckpt_dir); /* per-rank files: residuals, ZeRO-1 shards */
    static const char *subdirs[] = {"final", "best"};
    for (int i = 0; i < 2 && st == FG_OK; i++) {
        snprintf(p, sizeof p, "%s/%s", c->out, subdirs[i]);
        st = fg_ckpt_remove_all(p);
    }
    snprintf(p, sizeof p, "%s/metrics.jsonl", c->out);
    if (st == FG_OK && unlink(p) != 0 && errno != ENOENT)
        st = fg_error(FG_ERR_IO, "%s: cannot remove the previous run's metrics: %s", p, strerror(errno));
    return st;
}

/* ---- gradient accumulation ---- */
fg_status fg_train_grads(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int n_micro,
                         float *loss)
{
    return fg_train_grads_scaled(m, inputs, targets, B, T, n_micro, 1.0f, loss);
}

fg_status fg_train_grads_scaled(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int n_micro,
                                float grad_scale, float *loss)
{
    fg_model_zero_grad(m);
    double sum = 0;
    for (int k = 0; k < n_micro; k++) {
        size_t off = (size_t)k * B * T;
        float l = 0;
        if (k > 0) /* the params have not moved since micro-batch 0's forward converted them */
            fg_model_bf16_weights(m);
        fg_status st = fg_model_forward(m, inputs + off, targets + off, B, T, &l);
        if (st != FG_OK)
            return st;
        /* mean over all rows = sum over micro-batches of (micro mean) / n_micro */
        st = fg_model_backward(m, grad_scale * (1.0f / (float)n_micro));
        if (st != FG_OK)
            return st;
        sum += l;
    }
    *loss = (float)(sum / n_micro);
    return FG_OK;
}

/* fg_train_grads_scaled for the loop: with small_sq (adaptive batch, gns) also the squared
 * norm of the gradient after the first micro-batch, read while the other micro-batches
 * are still to come: the small-batch half of the noise estimate, for one pass over the
 * gradients. */
static fg_status step_grads(run *r, int A, float scale, float *loss, double *small_sq)
{
    int B = r->c.batch_size, T = r->c.seq_len;
    fg_model *m = r->m;
    fg_model_zero_grad(m);
    double sum = 0;
    for (int k = 0; k < A; k++) {
        size_t off = (size_t)k * B * T;
        float l = 0;
        if (k > 0) /* the params have not moved since micro-batch 0's forward converted them */
            fg_model_bf16_weights(m);
        fg_status st = fg_model_forward(m, r->inp + off, r->tgt + off, B, T, &l);
        if (st == FG_OK)
            st = fg_model_backward(m, scale * (1.0f / (float)A));
        if (st != FG_OK)
            return st;
        if (k == 0 && small_sq)
            *small_sq = fg_adapt_sq_norm(fg_model_grads(m), fg_model_num_params(m));
        if (r->train.aug) { /* augmentation: each window's loss to the loader's hard pool */
            const float *z = fg_model_logits(m);
            if (z)
                fg_aug_row_losses(z, r->tgt + off, B, T, fg_model_get_config(m)->vocab_size,
                                  fg_model_get_config(m)->padded_vocab, r->row_loss);
            for (int b = 0; !z && b < B; b++)
                r->row_loss[b] = l; /* bf16/fp8 keep no logits: the micro-batch's loss stands for its rows */
            fg_loader_aug_report(&r->train, k * B, r->row_loss, B);
        }
        sum += l;
    }
    *loss = (float)(sum / A);
    return FG_OK;
}

/* ---- data preparation ---- */

/* Tokenises c->data, holding out the tail val_frac of its bytes (cut at the next
 * line break) for validation. Writes nothing: *tr and *va are fg_malloc'd. */
static fg_status encode_text(const run *r, uint32_t **tr, size_t *ntr, uint32_t **va, size_t *nva)
{
    const fg_train_config *c = &r->c;
    char *text = NULL;
    size_t len = 0;
    fg_status st = read_file(c->data, &text, &len);
    if (st != FG_OK)
        return st;
    if (len == 0) {
        st = fg_error(FG_ERR_FORMAT, "%s: empty file: nothing to train on", c->data);
        goto out_text;
    }
    size_t cut = (size_t)((double)len * (1.0 - c->val_frac));
    const char *nl = memchr(text + cut, '\n', len - cut);
    if (nl && (size_t)(nl + 1 - text) < len)
        cut = (size_t)(nl + 1 - text);
    st = fg_tok_encode(r->tok, text, cut, tr, ntr);
    size_t n_syn = 0; /* synthetic text mixed into the training part only (synth.h) */
    if (st == FG_OK && c->synth_path[0]) {
        st = fg_synth_mix_file(c->synth_path, r->tok, c->synth_ratio, c->seed, tr, ntr, &n_syn);
        if (st != FG_OK) {
            fg_free(*tr);
            *tr = NULL;
        } else
            FG_INFO("data: %zu of %zu training tokens from %s", n_syn, *ntr, c->synth_path);
    }
    if (st != FG_OK)
        goto out_text;
    st = fg_tok_encode(r->tok, text + cut, len - cut, va, nva);
    if (st != FG_OK) {
        fg_free(*tr);
        *tr = NULL;
        goto out_text;
    }
    if (*ntr < (size_t)c->seq_len + 1 || *nva < (size_t)c->seq_len + 1) {
        st = fg_error(FG_ERR_FORMAT,
                      "%s: too short: %zu training and %zu validation tokens after the %.0f%% split; each part needs "
                      "seq_len + 1 = %d",
                      c->data, *ntr, *nva, 100.0 * c->val_frac, c->seq_len + 1);
        fg_free(*tr);
        fg_free(*va);
        *tr = *va = NULL;
    }
out_text:
    fg_free(text);
    return st;
}

/* ---- the layout's balancing decisions in the checkpoint meta: hints, not state ----
 * The pipeline split (pp_balance's last decision) and the expert placement (ep_place's)
 * are saved so a resumed run starts where the balancers were; the tensors do not depend
 * on them (every rank holds the whole model), so a checkpoint still loads at any layout,
 * and the hints are taken only when the resumed layout is the saved one (same pp, same
 * ep) and its balancer is on; otherwise the run starts even / contiguous as before. */
static void layout_save(const run *r, json_t *o)
{
    if (r->pp && pp_size(r->pp) > 1 && r->c.pp_chunks == 1) { /* interleaved: always the even split */
        json_t *a = json_array();
        for (int s = 0; s <= pp_size(r->pp); s++)
            json_array_append_new(a, json_integer(pp_bounds(r->pp)[s]));
        json_object_set_new(o, "pp_split", a);
    }
    int P = fg_model_moe_ep_size(r->m);
    if (P < 2)
        return;
    const fg_model_config *mc = fg_model_get_config(r->m);
    json_t *layers = json_array();
    for (int l = 0; l < mc->n_layer; l++) {
        int sz = 0;
        const int32_t *own = fg_model_moe_ep_owner(r->m, l, &sz);
        json_t *a = own ? json_array() : json_null();
        for (int e = 0; own && e < mc->moe.n_expert; e++)
            json_array_append_new(a, json_integer(own[e]));
        json_array_append_new(layers, a);
    }
    json_t *ep = json_object();
    json_object_set_new(ep, "ep", json_integer(P));
    json_object_set_new(ep, "owner", layers);
    json_object_set_new(o, "ep_placement", ep);
}

/* The hints of a checkpoint's meta into this run (the same on every rank: each reads
 * the same file); r->layout_note says what was taken. A hint that does not fit is a
 * malformed checkpoint only when the layout matches (FG_ERR_FORMAT). */
static fg_status layout_restore(run *r, json_t *o, const char *dir)
{
    char *note = r->layout_note;
    size_t cap = sizeof r->layout_note, len = 0;
    note[0] = '\0';
    json_t *split = json_object_get(o, "pp_split");
    if (r->pp && pp_size(r->pp) > 1 && json_is_array(split)) {
        int P = pp_size(r->pp), n = (int)json_array_size(split), b[65];
        /* ZeRO-1 over a stage: the dp object and the shards being read are cut on the
         * even split already (the balancer moves the layers again) */
        bool zs = r->dp && dp_zero(r->dp) && pp_own(r->pp);
        if (n != P + 1 || !r->c.pp_balance || zs) {
            len += (size_t)snprintf(note + len, cap - len, "pipeline split of %d stages not taken (%s); ", n - 1,
                                    n != P + 1 ? "another pp"
                                    : zs       ? "ZeRO-1 shards are cut on the even split at start"
                                               : "no --pp-balance");
        } else {
            for (int s = 0; s < n; s++)
                b[s] = (int)json_integer_value(json_array_get(split, (size_t)s));
            if (pp_set_bounds(r->pp, b, n) != FG_OK) {
                char why[256]; /* fg_error formats into the buffer fg_last_error returns */
                snprintf(why, sizeof why, "%s", fg_last_error());
                return fg_error(FG_ERR_FORMAT, "%s: checkpoint meta pp_split: %s", dir, why);
            }
            len += (size_t)snprintf(note + len, cap - len, "pipeline split");
            for (int s = 0; s < P && len < cap; s++)
                len += (size_t)snprintf(note + len, cap - len, "%s%d", s ? "|" : " ", b[s + 1] - b[s]);
            if (len < cap)
                len += (size_t)snprintf(note + len, cap - len, " taken from the checkpoint; ");
        }
    }
    json_t *ep = json_object_get(o, "ep_placement");
    int P = fg_model_moe_ep_size(r->m);
    if (P >= 2 && json_is_object(ep) && len < cap) {
        int saved = (int)json_integer_value(json_object_get(ep, "ep"));
        json_t *layers = json_object_get(ep, "owner");
        const fg_model_config *mc = fg_model_get_config(r->m);
        if (saved != P || !r->c.ep_place || !json_is_array(layers)) {
            len += (size_t)snprintf(note + len, cap - len, "expert placement of ep %d not taken (%s); ", saved,
                                    saved != P ? "another ep" : "no ep_place");
        } else {
            int32_t *own = fg_malloc((size_t)mc->moe.n_expert * sizeof *own);
            int moved = 0;
            fg_status st = own ? FG_OK : FG_ERR_NOMEM;
            for (int l = 0; l < mc->n_layer && st == FG_OK; l++) {
                json_t *a = json_array_get(layers, (size_t)l);
                int sz = 0;
                const int32_t *cur = fg_model_moe_ep_owner(r->m, l, &sz);
                if (!cur)
                    continue;
                if (!json_is_array(a) || (int)json_array_size(a) != mc->moe.n_expert) {
                    st = fg_error(FG_ERR_FORMAT, "%s: checkpoint meta ep_placement: layer %d has no %d owners", dir, l,
                                  mc->moe.n_expert);
                    break;
                }
                for (int e = 0; e < mc->moe.n_expert; e++) {
                    own[e] = (int32_t)json_integer_value(json_array_get(a, (size_t)e));
                    moved += own[e] != cur[e];
                }
                if (fg_model_moe_ep_place(r->m, l, own) != FG_OK) {
                    char why[256];
                    snprintf(why, sizeof why, "%s", fg_last_error());
                    st = fg_error(FG_ERR_FORMAT, "%s: checkpoint meta ep_placement: %s", dir, why);
                }
            }
            fg_free(own);
            if (st != FG_OK)
                return st;
            len += (size_t)snprintf(note + len, cap - len,
                                    "expert placement taken from the checkpoint (%d experts off their contiguous "
                                    "blocks); ",
                                    moved);
        }
    }
    if (len >= 2 && len < cap)
        note[len - 2] = '\0'; /* the last "; " */
    return FG_OK;
}

/* ---- checkpoint meta: everything beyond the tensors needed for a bit-exact resume ---- */
static char *meta_json(const run *r, double tokens)
{
    json_t *o = json_object();
    json_t *rng = json_array();
    for (int i = 0; i < 4; i++) {
        char hex[24];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->train.rng.s[i]);
        json_array_append_new(rng, json_string(hex));
    }
    json_object_set_new(o, "step", json_integer(r->step));
    json_object_set_new(o, "adam_t", json_integer(r->opt.t));
    json_object_set_new(o, "loader_rng", rng);
    json_object_set_new(o, "loader_shard", json_integer(r->train.shard));
    json_object_set_new(o, "loader_pos", json_integer((json_int_t)r->train.pos));
    json_object_set_new(o, "tokens", json_real(tokens));
    layout_save(r, o);
    if (r->dp && dp_zero(r->dp)) /* m, v are in the ranks' shard files (dp.c) */
        json_object_set_new(o, "zero_shards", json_integer(dp_shards(r->dp)));
    if (r->c.loss_scale) {
        /* the scale is a float: as a double it prints and reads back exactly */
        const fg_loss_scaler *sc = &r->scaler;
        json_t *ls = json_object();
        json_object_set_new(ls, "scale", json_real(sc->scale));
        json_object_set_new(ls, "growth_tracker", json_integer(sc->growth_tracker));
        json_object_set_new(ls, "hysteresis_tracker", json_integer(sc->hysteresis_tracker));
        json_object_set_new(ls, "steps", json_integer(sc->steps));
        json_object_set_new(ls, "skipped_steps", json_integer(sc->skipped_steps));
        json_object_set_new(ls, "backoffs", json_integer(sc->backoffs));
        json_object_set_new(ls, "growths", json_integer(sc->growths));
        json_object_set_new(o, "loss_scaler", ls);
    }
    if (r->c.batch_rule != FG_BATCH_FIXED) { /* adaptive batch: its accum and estimates */
        char *as = fg_adapt_save(&r->ad);
        json_t *aj = as ? json_loads(as, 0, NULL) : NULL;
        fg_free(as);
        json_object_set_new(o, "adaptive_batch", aj ? aj : json_null());
    }
    if (r->c.aug && r->train.aug) { /* augmentation: the hard pool, its threshold ring and RNG */
        char *as = fg_aug_save(r->train.aug);
        json_t *aj = as ? json_loads(as, 0, NULL) : NULL;
        fg_free(as);
        json_object_set_new(o, "augment", aj ? aj : json_null());
    }
    char *cfg = fg_train_config_to_json(&r->c);
    json_t *cj = cfg ? json_loads(cfg, 0, NULL) : NULL;
    fg_free(cfg);
    json_object_set_new(o, "config", cj ? cj : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *out = s ? fg_strdup(s) : NULL;
    free(s);
    return out;
}

static fg_status meta_restore(run *r, const char *meta, const char *dir)
{
    json_error_t err;
    json_t *o = json_loads(meta, 0, &err);
    fg_status st = FG_OK;
    json_t *rng = o ? json_object_get(o, "loader_rng") : NULL;
    if (!o || !json_is_integer(json_object_get(o, "step")) || !json_is_array(rng) || json_array_size(rng) != 4) {
        st = fg_error(FG_ERR_FORMAT, "%s: checkpoint meta lacks step / loader state", dir);
        goto out;
    }
    r->step = (long)json_integer_value(json_object_get(o, "step"));
    r->opt.t = (long)json_integer_value(json_object_get(o, "adam_t"));
    for (int i = 0; i < 4; i++) {
        const char *hex = json_string_value(json_array_get(rng, (size_t)i));
        r->train.rng.s[i] = hex ? strtoull(hex, NULL, 16) : 0;
    }
    r->train.shard = (int)json_integer_value(json_object_get(o, "loader_shard"));
    r->train.pos = (uint64_t)json_integer_value(json_object_get(o, "loader_pos"));
    r->tokens_before = json_number_value(json_object_get(o, "tokens"));
    if (r->train.shard < 0 || r->train.shard >= r->train.n_shards) {
        st = fg_error(FG_ERR_FORMAT, "%s: checkpoint loader shard %d out of range", dir, r->train.shard);
        goto out;
    }
    if (r->c.loss_scale) {
        json_t *ls = json_object_get(o, "loss_scaler");
        json_t *scale = ls ? json_object_get(ls, "scale") : NULL;
        if (!json_is_number(scale) || !(json_number_value(scale) > 0)) {
            st = fg_error(FG_ERR_FORMAT, "%s: checkpoint meta lacks the loss scaler's state (loss_scale dynamic)", dir);
            goto out;
        }
        fg_loss_scaler *sc = &r->scaler;
        sc->scale = (float)json_number_value(scale);
        sc->growth_tracker = (int)json_integer_value(json_object_get(ls, "growth_tracker"));
        sc->hysteresis_tracker = (int)json_integer_value(json_object_get(ls, "hysteresis_tracker"));
        sc->steps = (int64_t)json_integer_value(json_object_get(ls, "steps"));
        sc->skipped_steps = (int64_t)json_integer_value(json_object_get(ls, "skipped_steps"));
        sc->backoffs = (int64_t)json_integer_value(json_object_get(ls, "backoffs"));
        sc->growths = (int64_t)json_integer_value(json_object_get(ls, "growths"));
    }
    if (r->c.batch_rule != FG_BATCH_FIXED) {
        json_t *aj = json_object_get(o, "adaptive_batch");
        char *as = json_is_object(aj) ? json_dumps(aj, JSON_COMPACT) : NULL;
        st = as ? fg_adapt_restore(&r->ad, as, dir)
                : fg_error(FG_ERR_FORMAT, "%s: checkpoint meta lacks the adaptive batch state (batch_rule)", dir);
        free(as);
        if (st != FG_OK)
            goto out;
    }
    if (r->c.aug && r->train.aug) {
        json_t *aj = json_object_get(o, "augment");
        char *as = json_is_object(aj) ? json_dumps(aj, JSON_COMPACT) : NULL;
        st = as ? fg_aug_restore(r->train.aug, as, dir)
                : fg_error(FG_ERR_FORMAT, "%s: checkpoint meta lacks the augmentation state (aug)", dir);
        free(as);
    }
    if (st == FG_OK)
        st = layout_restore(r, o, dir);
out:
    json_decref(o);
    return st;
}

/* Checkpoints hold the moments in fp32 whatever their storage: with bf16 moments
 * *scratch is their widened copy (exact; fg_free it after use), NULL otherwise. Under
 * ZeRO-1 the moments are in each rank's shard file (dp.c), so the main file holds the
 * params only. Returns the tensor count (0 on failure, the status in *st). */
static int ckpt_tensors(run *r, fg_ckpt_tensor t[3], float **scratch, fg_status *st)
{
    size_t bytes = fg_model_num_params(r->m) * sizeof(float);
    *scratch = NULL;
    *st = FG_OK;
    t[0] = (fg_ckpt_tensor){"params", fg_model_params(r->m), bytes};
    if (r->dp && dp_zero(r->dp))
        return 1;
    float *m = NULL, *v = NULL;
    *st = fg_optim_moments_f32(&r->opt, &m, &v, scratch);
    t[1] = (fg_ckpt_tensor){"adam.m", m, bytes};
    t[2] = (fg_ckpt_tensor){"adam.v", v, bytes};
    return *st == FG_OK ? 3 : 0;
}

/* One checkpoint file into the model and the moments this rank keeps, sm/sv = the flat
 * pieces `want` of the whole m, v (each at its dst): params and meta from the file; m, v
 * from it too (written whole) or from the ZeRO-1 shard files of its step (meta
 * "zero_shards": P). */
static fg_status load_one(run *r, const char *path, long *step, char **meta, float *sm, float *sv, const dp_piece *want,
                          int nwant)
{
    size_t n = fg_model_num_params(r->m), bytes = n * sizeof(float);
    fg_ckpt_tensor t[3] = {{"params", fg_model_params(r->m), bytes}, {"adam.m", sm, bytes}, {"adam.v", sv, bytes}};
    fg_status st = fg_ckpt_load_file(path, step, meta, t, 1);
    if (st != FG_OK)
        return st;
    json_t *o = json_loads(*meta, 0, NULL), *z = o ? json_object_get(o, "zero_shards") : NULL;
    long P = json_is_integer(z) ? (long)json_integer_value(z) : 0;
    json_decref(o);
    if (P > 0)
        return dp_load_shards(r->c.ckpt_dir, *step, (int)P, n, want, nwant, sm, sv);
    if (nwant == 1 && want[0].off == 0 && want[0].len == n)
        return fg_ckpt_load_file(path, step, NULL, t + 1, 2);
    /* written whole, a shard kept: through whole buffers */
    float *zm = fg_malloc(bytes ? bytes : 1), *zv = fg_malloc(bytes ? bytes : 1);
    st = zm && zv ? FG_OK : FG_ERR_NOMEM;
    t[1].data = zm;
    t[2].data = zv;
    if (st == FG_OK)
        st = fg_ckpt_load_file(path, step, NULL, t + 1, 2);
    for (int j = 0; j < nwant && st == FG_OK; j++) {
        memcpy(sm + want[j].dst, zm + want[j].off, want[j].len * sizeof(float));
        memcpy(sv + want[j].dst, zv + want[j].off, want[j].len * sizeof(float));
    }
    fg_free(zm);
    fg_free(zv);
    return st;
}

static void note_resident(run *r);

/* load_one under stage-owned memory: only this stage's pieces of the file's params (and of
 * m, v when the file holds them whole) are read, in place (fg_ckpt_read_pieces), never the
 * whole model; the balancer's split of the meta first, so the pieces are those of the
 * split the run goes on with. want: the flat pieces of m, v this rank keeps (ZeRO-1's
 * shard), or own_moments: its stage's spans (after the split is taken). */
static fg_status load_one_owned(run *r, const char *path, long *step, char **meta, float *sm, float *sv,
                                const dp_piece *want, int nwant, bool own_moments)
{
    size_t n = fg_model_num_params(r->m), bytes = n * sizeof(float);
    fg_ckpt_info info;
    fg_status st = fg_ckpt_info_read(path, &info);
    if (st != FG_OK)
        return st;
    *step = info.step;
    *meta = fg_strdup(info.meta_json);
    fg_ckpt_info_free(&info);
    if (!*meta)
        return FG_ERR_NOMEM;
    json_t *o = json_loads(*meta, 0, NULL), *z = o ? json_object_get(o, "zero_shards") : NULL;
    long P = json_is_integer(z) ? (long)json_integer_value(z) : 0;
    st = o ? layout_restore(r, o, r->c.ckpt_dir) : FG_OK; /* a bad meta fails in meta_restore */
    json_decref(o);
    pp_release(r->pp); /* a split taken from the meta: what the initial split's stage held goes */
    int ns = 0;
    const dp_span *sp = pp_own_spans(r->pp, &ns);
    int np = ns > nwant ? ns : nwant;
    fg_ckpt_piece *pc = st == FG_OK ? fg_calloc((size_t)np + 1, sizeof *pc) : NULL;
    if (st == FG_OK && !pc)
        st = FG_ERR_NOMEM;
    float *par = fg_model_params(r->m);
    for (int i = 0; i < ns && st == FG_OK; i++)
        pc[i] = (fg_ckpt_piece){sp[i].off * sizeof(float), sp[i].len * sizeof(float), par + sp[i].off};
    if (st == FG_OK)
        st = fg_ckpt_read_pieces(path, "params", bytes, pc, ns);
    if (st == FG_OK && P > 0)
        st = dp_load_shards(r->c.ckpt_dir, *step, (int)P, n, want, nwant, sm, sv);
    if (own_moments) { /* the stage's spans of m, v: those of the split just taken */
        want = (const dp_piece *)NULL;
        nwant = ns;
    }
    for (int k = 0; k < 2 && st == FG_OK && P <= 0; k++) {
        float *dst = k ? sv : sm;
        for (int i = 0; i < nwant; i++)
            pc[i] = want ? (fg_ckpt_piece){want[i].off * sizeof(float), want[i].len * sizeof(float), dst + want[i].dst}
                         : (fg_ckpt_piece){sp[i].off * sizeof(float), sp[i].len * sizeof(float), dst + sp[i].off};
        st = fg_ckpt_read_pieces(path, k ? "adam.v" : "adam.m", bytes, pc, nwant);
    }
    fg_free(pc);
    return st;
}

/* --resume: the newest checkpoint whose whole state loads (a ZeRO-1 main file whose shard
 * files are incomplete, a rank killed mid-write, is passed over as one that fails
 * verification is). Under ZeRO-1 each rank keeps its own span of m, v, read from whichever
 * form the checkpoint has, so any dp size, sharded or not, reads any other's. */
static fg_status load_resume(run *r)
{
    size_t n = fg_model_num_params(r->m);
    dp_piece whole = {0, n, 0};
    const dp_piece *want = &whole; /* the flat pieces of m, v this rank keeps */
    int nwant = 1;
    const bool zero = r->dp && dp_zero(r->dp), owned = r->pp && pp_own(r->pp);
    if (zero)
        want = dp_shard_pieces(r->dp, &nwant);
    float *sm, *sv, *sscr = NULL; /* fp32 views of the kept moments (storage, or a scratch to narrow from) */
    fg_status st = FG_OK;
    float *lazy = NULL; /* bf16 moments of a stage: an fp32 scratch whose untouched pages never exist */
    if (st == FG_OK && owned && !zero && r->opt.m16) {
        st = (lazy = fg_calloc_lazy(2 * n + 1, sizeof(float))) ? FG_OK : FG_ERR_NOMEM;
        sm = lazy;
        sv = lazy + n;
    } else if (st == FG_OK) {
        st = fg_optim_moments_f32(&r->opt, &sm, &sv, &sscr);
    }
    char **paths = NULL;
    int np = 0;
    if (st == FG_OK)
        st = fg_ckpt_list(r->c.ckpt_dir, &paths, &np);
    if (st == FG_OK && np == 0)
        st = fg_error(FG_ERR_IO, "%s: no checkpoint (ckpt-*.fgck) found", r->c.ckpt_dir);
    long step = 0;
    char *meta = NULL;
    fg_status first = FG_OK;
    char first_msg[1024] = "";
    for (int i = np - 1; i >= 0 && st == FG_OK; i--) {
        fg_free(meta);
        meta = NULL;
        st = owned ? load_one_owned(r, paths[i], &step, &meta, sm, sv, want, nwant, !zero)
                   : load_one(r, paths[i], &step, &meta, sm, sv, want, nwant);
        if (st == FG_OK) {
            if (i != np - 1 && r->rank0)
                FG_WARN("resumed from %s, an older checkpoint, because newer ones are not usable", paths[i]);
            break;
        }
        if (st == FG_ERR_NOMEM || st == FG_ERR_INVALID) /* not the file's fault */
            break;
        if (first == FG_OK) {
            first = st;
            snprintf(first_msg, sizeof first_msg, "%s", fg_last_error());
        }
        if (r->rank0)
            FG_WARN("checkpoint %s is not usable: %s%s", paths[i], fg_last_error(),
                    i ? "; trying the previous one" : "");
        st = i ? FG_OK
               : fg_error(first, "%s: no checkpoint loads; the newest failed with: %s", r->c.ckpt_dir, first_msg);
    }
    fg_ckpt_list_free(paths, np);
    if (st == FG_OK && lazy) { /* narrowed span by span: the other pages stay untouched */
        int ns = 0;
        const dp_span *sp = pp_own_spans(r->pp, &ns);
        for (int i = 0; i < ns; i++) {
            fg_cvt_f32_bf16(r->opt.m16 + sp[i].off, sm + sp[i].off, sp[i].len);
            fg_cvt_f32_bf16(r->opt.v16 + sp[i].off, sv + sp[i].off, sp[i].len);
        }
    } else if (st == FG_OK) {
        fg_optim_moments_commit(&r->opt, sm, sv);
    }
    fg_free(sscr);
    if (lazy)
        fg_free_lazy(lazy);
    if (st == FG_OK)
        st = meta_restore(r, meta, r->c.ckpt_dir);
    if (st == FG_OK && r->dp) { /* compression's residuals (docs/DIST.md) */
        char note[256];
        st = dp_load_resid(r->dp, r->c.ckpt_dir, step, note, sizeof note);
        if (st == FG_OK && note[0] && r->rank0)
            FG_WARN("%s", note);
    }
    fg_free(meta);
    return st;
}

/* ---- expert placement (expert parallelism, docs/DIST.md) ---- */
/* At a checkpoint boundary: every rank re-places the experts from the same global load
 * history (no communication, no weights to move); rank 0 reports it. */
static fg_status place_experts(run *r, FILE *out)
{
    if (fg_model_moe_ep_size(r->m) < 2)
        return FG_OK;
    fg_moe_placement_report rep;
    fg_status st = fg_model_moe_ep_replace(r->m, &rep);
    if (st != FG_OK)
        return st;
    metrics_printf(r,
                   "{\"step\": %ld, \"ep_load_before\": %.6f, \"ep_load_after\": %.6f, \"ep_load_contiguous\": "
                   "%.6f, \"ep_load_steps\": %ld, \"ep_moved\": %d, \"ep_micro_contiguous\": %.6f, "
                   "\"ep_micro_placed\": %.6f, \"ep_micro_run\": %.6f}\n",
                   r->step, rep.before, rep.after, rep.contiguous, rep.steps, rep.moved, rep.per_micro[0],
                   rep.per_micro[1], rep.per_micro[2]);
    if (out)
        fprintf(out,
                "step %6ld | expert placement: rows per rank, max/mean per micro-batch over the last %ld steps: "
                "%.3f as run (contiguous blocks would be %.3f, placement alone %.3f); summed over the steps %.3f "
                "(contiguous %.3f), %.3f re-placed on the same loads, %d experts moved\n",
                r->step, rep.steps, rep.per_micro[2], rep.per_micro[0], rep.per_micro[1], rep.before, rep.contiguous,
                rep.after, rep.moved);
    return FG_OK;
}

/* Stage-owned memory: the resident pages of this rank's params, grads, m, v now, kept as
 * the run's high-water mark (the test of docs/DIST.md "Memory per rank" checks it: a
 * checkpoint, a validation, final/ or a resume that brought the whole model onto a rank
 * would show here) */
static void note_resident(run *r)
{
    if (!r->pp || !pp_own(r->pp))
        return;
    size_t own = 0, resid = 0, whole = 0;
    pp_memory(r->pp, &own, &resid, &whole);
    if ((double)resid > r->peak_resident)
        r->peak_resident = (double)resid;
}

/* ---- evaluation ---- */
static float evaluate(run *r)
{
    /* stage-owned memory: through the pipeline of replica 0 (every stage its layers, all
     * its tp ranks), never the whole model on one rank; else rank 0 alone */
    const bool pipe = r->pp && pp_own(r->pp);
    if (!r->has_val || (pipe ? !pp_val_member(r->pp) : !r->rank0))
        return NAN; /* the others wait at the next collective */
    int B = r->c.batch_size, T = r->c.seq_len;
    fg_loader_rewind(&r->val);
    double sum = 0;
    fg_model_moe_ep_enable(r->m, 0); /* every expert here */
    for (int i = 0; i < r->c.val_batches; i++) {
        fg_loader_next(&r->val, r->inp, r->tgt);
        float l = 0;
        fg_status st =
            pipe ? pp_eval(r->pp, r->m, r->inp, r->tgt, B, T, &l) : fg_model_forward(r->m, r->inp, r->tgt, B, T, &l);
        if (st != FG_OK) {
            sum = NAN;
            break;
        }
        sum += l;
    }
    fg_model_moe_ep_enable(r->m, 1);
    note_resident(r);
    return r->rank0 ? (float)(sum / r->c.val_batches) : NAN;
}

/* ---- resume: the run's config.json against the config asked for now (both resolved) ---- */
static fg_status check_resume(const fg_train_config *c, FILE *out)
{
    char path[PATHN];
    snprintf(path, sizeof path, "%s/config.json", c->out);
    if (!file_exists(path))
        return fg_error(FG_ERR_INVALID, "--resume: %s not found: %s holds no run to resume", path, c->out);
    fg_train_config old;
    fg_train_config_default(&old);
    fg_status st = fg_train_config_load_json(&old, path);
    if (st != FG_OK)
        return st;
    return fg_train_config_check_resume(&old, c, path, out);
}

/* Loss-driven augmentation: the token classes from the tokenizer's token texts, the
 * config handed over as fg_aug_config, the hook in the training loader. */
static fg_status aug_setup(run *r)
{
    const fg_train_config *c = &r->c;
    if (!r->tok)
        return fg_error(FG_ERR_INVALID, "'aug': augmentation finds words and sentences through the tokenizer's "
                                        "token texts; give --tokenizer");
    int n = fg_tok_vocab_size(r->tok);
    uint8_t *cls = fg_malloc((size_t)n);
    r->row_loss = fg_malloc((size_t)c->batch_size * sizeof(float));
    if (!cls || !r->row_loss) {
        fg_free(cls);
        return FG_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        const uint8_t *t = fg_tok_token_bytes(r->tok, (uint32_t)i, &len);
        cls[i] = t ? fg_aug_token_class(t, len) : 0;
    }
    int eot = fg_tok_eot(r->tok);
    fg_aug_config ac = {c->aug_frac,
                        c->aug_rate,
                        c->aug_pool,
                        c->aug_visits,
                        c->aug_drop,
                        c->aug_swap,
                        c->aug_mask,
                        c->aug_span,
                        c->aug_syntax_start,
                        c->aug_syntax_end,
                        c->aug_mask_token >= 0 ? c->aug_mask_token
                        : eot >= 0             ? eot
                                               : 0,
                        c->seed ^ 0xA06ull};
    fg_status st = fg_loader_aug_enable(&r->train, &ac, cls, n, r->ad.accum_max * c->batch_size);
    fg_free(cls);
    return st;
}

/* ---- setup: everything that can fail on bad input happens before any write ---- */
/* The optimiser's ranges: one per tensor (fg_free them) */
static fg_optim_range *optim_ranges(const run *r, int *n)
{
    int nt = fg_model_num_tensors(r->m);
    fg_optim_range *ranges = fg_malloc((size_t)nt * sizeof *ranges + 1);
    for (int i = 0; ranges && i < nt; i++) {
        const fg_tensor_info *ti = fg_model_tensor(r->m, i);
        ranges[i] =
            (fg_optim_range){ti->offset, ti->numel, (r->c.decay_all || !ti->no_decay), ti->frozen, ti->lr_scale};
    }
    *n = nt;
    return ranges;
}

/* ZeRO-1 over a stage's spans after the balancer moved layers (docs/DIST.md "Stage
 * balancer"): pp_balance left each stage's m, v gathered whole on its ranks (the moved
 * layers' received from their old stage); the dp object and the optimiser are rebuilt on
 * the new spans and each rank keeps its new shard of them; the transient goes. */
static fg_status zero_recut(run *r)
{
    float *m = NULL, *v = NULL;
    pp_take_moments(r->pp, &m, &v);
    fg_status st = m && v ? FG_OK : fg_error(FG_ERR_INTERNAL, "ZeRO-1 re-cut: the stage's m, v were not gathered");
    int nsp = 0, nt = 0, npc = 0;
    const dp_span *sp = pp_own_spans(r->pp, &nsp);
    size_t xo = 0, xl = 0;
    pp_norm_skip(r->pp, &xo, &xl);
    dp *nd = st == FG_OK ? dp_respan(r->dp, r->c.bucket_mb, sp, nsp, xo, xl) : NULL;
    if (st == FG_OK && !nd)
        st = fg_last_status();
    fg_optim_range *ranges = st == FG_OK ? optim_ranges(r, &nt) : NULL;
    if (st == FG_OK && !ranges)
        st = FG_ERR_NOMEM;
    if (st == FG_OK) {
        r->dp = nd;
        pp_set_zero(r->pp, nd);
        fg_adamw_config ac = r->opt.cfg;
        long t = r->opt.t;
        fg_optim_free(&r->opt);
        st = dp_optim_init(r->dp, &r->opt, ranges, nt, &ac);
        r->opt.t = t;
    }
    const dp_piece *pc = st == FG_OK ? dp_shard_pieces(r->dp, &npc) : NULL;
    for (int j = 0; j < npc; j++)
        if (r->opt.m) {
            memcpy(r->opt.m + pc[j].dst, m + pc[j].off, pc[j].len * sizeof(float));
            memcpy(r->opt.v + pc[j].dst, v + pc[j].off, pc[j].len * sizeof(float));
        } else { /* bf16 moments: exact, they were widened from bf16 */
            fg_cvt_f32_bf16(r->opt.m16 + pc[j].dst, m + pc[j].off, pc[j].len);
            fg_cvt_f32_bf16(r->opt.v16 + pc[j].dst, v + pc[j].off, pc[j].len);
        }
    fg_free(ranges);
    if (m)
        fg_free_lazy(m);
    if (v)
        fg_free_lazy(v);
    return st;
}

static fg_status setup(run *r, FILE *out)
{
    fg_train_config *c = &r->c;
    fg_status st = fg_train_config_validate(c);
    if (st != FG_OK)
        return st;
    /* threads 0 = all cores (fg_threads_set's meaning), set before the kernels fill their
     * table; kernels / blas_threading left unset fall to FG_KERNELS / FG_BLAS_THREADING,
     * parsed by the kernels alone, and the values in effect are recorded in config.json */
    fg_threads_set(c->threads);
    st = fg_kernels_configure(c->kernels[0] ? c->kernels : NULL, fg_train_blas_threading_name(c), fg_threads_get());
    if (st != FG_OK)
        return st;
    fg_kernels_settings ks = fg_kernels_settings_get();
    if (!c->kernels[0])
        snprintf(c->kernels, sizeof c->kernels, "%s", ks.mode);
    c->blas_threading = strcmp(ks.blas_threading, "blas") == 0 ? 2 : 1;
    char path[PATHN];
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->out);
    if (file_exists(path) && !c->resume && !c->overwrite)
        return fg_error(FG_ERR_INVALID,
                        "%s: the run directory already holds a run (give --resume, --overwrite 1 or "
                        "another --out)",
                        c->out);
    if (!c->ckpt_dir[0]) {
        if (strlen(c->out) + 6 > sizeof c->ckpt_dir)
            return fg_error(FG_ERR_INVALID, "'out' is too long: %s", c->out);
        memcpy(c->ckpt_dir, c->out, strlen(c->out));
        strcpy(c->ckpt_dir + strlen(c->out), "/ckpt");
    }

    uint32_t vocab = 0;
    if (c->tokenizer[0]) {
        r->tok = fg_tok_load(c->tokenizer);
        if (!r->tok)
            return rewrap(fg_last_status(), "tokenizer");
        vocab = (uint32_t)fg_tok_vocab_size(r->tok);
        /* config.json records an absolute path, so `frugal sample` works from anywhere */
        char *abs = strcmp(c->tokenizer, "byte") ? realpath(c->tokenizer, NULL) : NULL;
        if (abs && strlen(abs) < sizeof c->tokenizer)
            strcpy(c->tokenizer, abs);
        free(abs); /* realpath's malloc */
    }

    uint32_t *tr = NULL, *va = NULL;
    size_t ntr = 0, nva = 0;
    if (c->data[0]) {
        st = r->rank0 ? encode_text(r, &tr, &ntr, &va, &nva) : FG_OK; /* rank 0 writes the shards */
        if (st != FG_OK)
            return st;
        snprintf(r->train_path, sizeof r->train_path, "%s/data/train.bin", c->out);
        snprintf(r->val_path, sizeof r->val_path, "%s/data/val.bin", c->out);
    } else {
        /* shards: check them all now (opened again below, after any write) */
        uint32_t shard_vocab = 0;
        for (int k = 0; k < 2; k++) {
            const char *list = k == 0 ? c->train_shards : c->val_shards;
            if (!list[0])
                continue;
            fg_loader probe;
            st = fg_loader_open(&probe, list, 1, c->seq_len, 1, 0, UINT32_MAX);
            if (st != FG_OK)
                return st;
            for (int i = 0; i < probe.n_shards; i++)
                if (probe.shards[i].vocab_size > shard_vocab)
                    shard_vocab = probe.shards[i].vocab_size;
            fg_loader_close(&probe);
        }
        if (r->tok && shard_vocab > vocab)
            return fg_error(FG_ERR_INVALID,
                            "shards hold ids up to vocab_size %u, above tokenizer %s's %u (give --tokenizer "
                            "the one that encoded them, or --tokenizer '' to train without one)",
                            shard_vocab, c->tokenizer, vocab);
        if (!r->tok)
            vocab = shard_vocab;
        snprintf(r->train_path, sizeof r->train_path, "%s", c->train_shards);
        snprintf(r->val_path, sizeof r->val_path, "%s", c->val_shards);
    }
    if (c->model.vocab_size == 0)
        c->model.vocab_size = (int)vocab;
    else if ((uint32_t)c->model.vocab_size < vocab)
        st = fg_error(FG_ERR_INVALID, "'vocab_size' %d is below the tokenizer's / shards' %u", c->model.vocab_size,
                      vocab);
    if (c->model.max_seq_len == 0)
        c->model.max_seq_len = c->seq_len;
    if (st == FG_OK)
        st = fg_model_config_validate(&c->model);
    if (st != FG_OK)
        goto out_ids;

    r->m = fg_model_new(&c->model, c->batch_size, c->seq_len);
    if (!r->m) {
        st = rewrap(fg_last_status(), "model");
        goto out_ids;
    }
    c->model = *fg_model_get_config(r->m); /* resolved: padded_vocab, d_ff, ... */
    /* a pipeline stage writes only its own tensors (docs/DIST.md "Memory per rank") */
    pp_init_weights(r->pp_comm, c->pp_chunks, c->pp > 1, r->m, c->seed);
    if (r->ep_comm && fg_comm_size(r->ep_comm) > 1) {
        if ((st = fg_model_moe_set_ep(r->m, r->ep_comm)) != FG_OK)
            goto out_ids;
        fg_model_moe_ep_spill(r->m, c->ep_spill);
    }
    if (c->init_from[0] && !c->resume) {
        /* fine-tuning: the same model's trained params instead of the random init (the
         * checkpoint's size check refuses another model's) */
        fg_ckpt_tensor it = {"params", fg_model_params(r->m), fg_model_num_params(r->m) * sizeof(float)};
        long it_step = 0;
        char *it_meta = NULL;
        st = fg_ckpt_load_latest(c->init_from, &it_step, &it_meta, &it, 1);
        fg_free(it_meta);
        if (st != FG_OK)
            goto out_ids;
        if (out)
            fprintf(out, "init_from       : %s (step %ld)\n", c->init_from, it_step);
    }
    int nt = 0;
    fg_optim_range *ranges = optim_ranges(r, &nt);
    if (!ranges) {
        st = FG_ERR_NOMEM;
        goto out_ids;
    }
    if (c->loss_scale) {
        fg_loss_scaler_config lc = fg_loss_scaler_config_default();
        lc.init_scale = c->loss_scale_init;
        lc.growth_interval = c->loss_scale_growth_interval;
        lc.hysteresis = c->loss_scale_hysteresis;
        st = fg_loss_scaler_init(&r->scaler, &lc);
        if (st != FG_OK)
            goto out_ids;
    }
    fg_adamw_config ac = {c->beta1, c->beta2, c->eps, c->weight_decay, c->adam_moments};
    dp_compress cz = {c->compress,
                      {c->compress_delta, c->compress_bf16},
                      c->compress_momentum,
                      c->compress_clip && c->grad_clip > 0 && c->dp > 1 ? c->grad_clip / sqrtf((float)c->dp) : 0.0f,
                      c->compress_warmup};
    /* tp / pp first: a pipeline stage keeps its own tensors only, the spans ZeRO-1 then
     * shards over the stage's ranks (docs/DIST.md "Memory per rank") */
    if (st == FG_OK && r->tp_comm && fg_comm_size(r->tp_comm) > 1 &&
        !(r->tp = tp_new(r->tp_comm, r->m, c->tp_sp ? 1 + c->tp_sp_regather : 0)))
        st = fg_last_status();
    if (st == FG_OK && (c->pp > 1 || c->tp > 1) &&
        !(r->pp = pp_new(r->pp_comm, r->comm, r->tp_comm, r->m, c->batch_size, c->seq_len, c->pp_slow_rank,
                         c->pp_slow_ms, c->pp_chunks)))
        st = fg_last_status();
    if (st == FG_OK && r->pp && c->pp > 1)
        st = pp_own_begin(r->pp);
    if (st == FG_OK && r->rank0 && r->pp && pp_own(r->pp) && (c->ckpt_async || c->ckpt_full_every > 1))
        FG_INFO("pipeline stages stream their tensors to rank 0 for checkpoints, which are written raw, full and "
                "synchronously: ckpt_async and delta checkpoints apply to one-process and data-parallel runs "
                "(docs/DIST.md \"Memory per rank\")");
    const bool stage_zero = st == FG_OK && c->zero && r->pp && pp_own(r->pp);
    /* ZeRO-1 over the stage's ranks (stage-owned memory), or with tp / pp over the whole
     * grid (the balancer, FFN sharing: every stage keeps every tensor) */
    if (st == FG_OK && stage_zero)
        st = fg_comm_split(r->world, fg_comm_rank(r->pp_comm), fg_comm_rank(r->world), &r->stage_comm);
    fg_comm *zc = stage_zero ? r->stage_comm : c->zero && (c->pp > 1 || c->tp > 1) ? r->world : NULL;
    int nsp = 0;
    const dp_span *sp = stage_zero ? pp_own_spans(r->pp, &nsp) : NULL;
    if (st == FG_OK) {
        if (((r->comm && fg_comm_size(r->comm) > 1) || (zc && (fg_comm_size(zc) > 1 || stage_zero))) &&
            !(r->dp = dp_new(r->comm, zc, r->m, c->zero, c->bucket_mb, &cz, sp, nsp)))
            st = fg_last_status();
        else if (r->dp && c->zero)
            st = dp_optim_init(r->dp, &r->opt, ranges, nt, &ac); /* m, v of this rank's shard only */
        else
            st = fg_optim_init(&r->opt, fg_model_num_params(r->m), ranges, nt, &ac);
    }
    fg_free(ranges);
    if (st == FG_OK && stage_zero) { /* the norm and the inf check also over the stages */
        size_t xo = 0, xl = 0;
        pp_norm_skip(r->pp, &xo, &xl);
        dp_set_outer(r->dp, r->pp_comm, xo, xl, fg_comm_rank(r->world), fg_comm_size(r->world));
    }
    if (st == FG_OK && r->pp && zc && r->dp)
        pp_set_zero(r->pp, r->dp);
    if (st == FG_OK && r->pp) /* each stage keeps its own tensors only (docs/DIST.md "Memory per rank") */
        st = pp_own_enable(r->pp, &r->opt);
    if (st != FG_OK)
        goto out_ids;
    fg_adapt_init(&r->ad, c);
    /* adaptive batch: the buffers hold the most micro-batches the rule may grow to */
    size_t rows = (size_t)r->ad.accum_max * c->batch_size * c->seq_len;
    r->inp = fg_malloc(rows * sizeof(int32_t));
    r->tgt = fg_malloc(rows * sizeof(int32_t));
    if (!r->inp || !r->tgt) {
        st = FG_ERR_NOMEM;
        goto out_ids;
    }

    if (c->resume) {
        st = check_resume(c, out);
        if (st == FG_OK)
            st = require_checkpoint(c->ckpt_dir);
        if (st != FG_OK)
            goto out_ids;
    }
    /* first writes: the run directory (locked: two trainers on one directory would
     * tear each other's files), then the tokenised text */
    st = r->rank0 ? mkdir_p(c->out) : FG_OK;
    if (st == FG_OK && r->rank0) {
        snprintf(path, sizeof path, "%s/.frugal.lock", c->out);
        st = fg_lock_acquire(&r->lock, path);
    }
    if (st == FG_OK && r->rank0 && c->overwrite && !c->resume)
        st = clear_old_run(c);
    if (st == FG_OK && r->rank0 && c->data[0] &&
        !(c->resume && file_exists(r->train_path) && file_exists(r->val_path))) {
        snprintf(path, sizeof path, "%s/data", c->out);
        st = mkdir_p(path);
        if (st == FG_OK)
            st = write_shard(r->train_path, tr, ntr, (uint32_t)c->model.vocab_size, r->tok ? fg_tok_eot(r->tok) : -1);
        if (st == FG_OK)
            st = write_shard(r->val_path, va, nva, (uint32_t)c->model.vocab_size, r->tok ? fg_tok_eot(r->tok) : -1);
        if (st == FG_OK && out)
            fprintf(out, "data: %s -> %zu train + %zu val tokens (%s)\n", c->data, ntr, nva, c->tokenizer);
    }
    if (st == FG_OK && r->dp)
        st = dp_barrier(r->dp); /* rank 0's shards are written before anyone opens them */
    if (st == FG_OK && r->pp && c->pp > 1)
        st = pp_barrier(r->pp); /* ... the other stages' ranks too (after their replica's barrier) */
    if (st == FG_OK && r->tp)
        st = fg_comm_barrier(r->tp_comm); /* ... and the tp ranks (after their stage's) */
    if (st != FG_OK)
        goto out_ids;
    st = fg_loader_open(&r->train, r->train_path, c->batch_size, c->seq_len, c->sequential, c->seed ^ 0x5EEDull,
                        (uint32_t)c->model.vocab_size);
    if (st == FG_OK && c->aug)
        st = aug_setup(r);
    if (st == FG_OK && r->val_path[0]) {
        st = fg_loader_open(&r->val, r->val_path, c->batch_size, c->seq_len, 1, 0, (uint32_t)c->model.vocab_size);
        r->has_val = st == FG_OK;
    }
out_ids:
    fg_free(tr);
    fg_free(va);
    return st;
}

static void teardown(run *r)
{
    if (r->metrics)
        fclose(r->metrics); /* every line was flushed and checked */
    fg_status st = fg_ckpt_writer_delete(r->ckw);
    if (st != FG_OK)
        FG_WARN("also: %s", fg_last_error());
    st = fg_ckpt_writer_delete(r->best_w);
    if (st != FG_OK)
        FG_WARN("also: %s", fg_last_error());
    fg_free(r->inp);
    fg_free(r->tgt);
    fg_free(r->row_loss);
    fg_loader_close(&r->train);
    fg_loader_close(&r->val);
    fg_optim_free(&r->opt);
    dp_delete(r->dp);
    if (r->stage_comm)
        fg_comm_free(r->stage_comm);
    pp_delete(r->pp);
    tp_delete(r->tp, r->m);
    fg_model_delete(r->m);
    fg_tok_delete(r->tok);
    fg_lock_release(&r->lock);
}

static void print_cost(FILE *out, const run *r, const fg_train_result *res, double flops_tok, long steps)
{
    if (!out)
        return;
    char b1[32], b2[32], b3[32];
    double tps = res->train_sec > 0 ? res->tokens / res->train_sec : 0;
    fprintf(out, "\n== cost summary ==\n");
    fprintf(out, "params          : %zu total, %zu active per token\n", fg_model_num_params(r->m),
            fg_model_num_active_params(r->m));
    fprintf(out, "kv cache        : %zu bytes per token (fp32, all layers%s)\n", fg_model_kv_bytes_per_token(r->m),
            r->c.model.mla_kv_rank > 0 ? "; MLA latent + rope key" : "");
    fprintf(out, "steps           : %ld (this process), %ld in the run\n", steps, r->step);
    fprintf(out, "tokens          : %.0f (%d x %d x %d per step", res->tokens, r->c.grad_accum, r->c.batch_size,
            r->c.seq_len);
    if (r->c.batch_rule != FG_BATCH_FIXED) /* adaptive batch: where it ended */
        fprintf(out, " at the start, %d x %d x %d at the end: %ld doublings", r->ad.accum, r->c.batch_size,
                r->c.seq_len, r->ad.grows);
    fprintf(out, ")\n");
    fprintf(out, "training FLOPs  : %.4g (%.4g per token: 6 N_active + 6 L T C)\n", res->flops, flops_tok);
    fprintf(out, "wall time       : %.2f s (training steps %.2f s)\n", res->wall_sec, res->train_sec);
    fprintf(out, "throughput      : %.1f tokens/s\n", tps);
    fprintf(out, "achieved        : %.2f GFLOP/s\n", res->train_sec > 0 ? res->flops / res->train_sec / 1e9 : 0.0);
    fprintf(out, "peak RSS        : %s\n", fg_fmt_bytes(b1, sizeof b1, (double)fg_peak_rss_bytes()));
    fprintf(out, "peak fg_malloc  : %s\n", fg_fmt_bytes(b2, sizeof b2, (double)fg_mem_peak()));
    fg_model_act_bytes ab;
    size_t act = fg_model_activation_bytes(r->m, &ab);
    const char *const prec[] = {"fp32", "bf16", "fp8"};
    fprintf(out, "activations     : %s peak (%s saved for backward + %s scratch, %s)\n",
            fg_fmt_bytes(b1, sizeof b1, (double)act), fg_fmt_bytes(b2, sizeof b2, (double)ab.saved),
            fg_fmt_bytes(b3, sizeof b3, (double)ab.scratch), prec[fg_model_get_config(r->m)->precision]);
    fprintf(out, "checkpointed    : %s%s\n", fg_fmt_bytes(b3, sizeof b3, (double)res->ckpt_bytes),
            r->ckpt_failed ? " written, then a checkpoint write failed" : "");
    fprintf(out, "threads         : %d, kernels: matmul=%s\n", fg_threads_get(), fg_kernels_variant("matmul"));
    if (r->dp) {
        const dp_stats *ds = dp_get_stats(r->dp);
        int p = dp_size(r->dp);
        char zs[64] = "";
        if (dp_zero(r->dp))
            snprintf(zs, sizeof zs, dp_shards(r->dp) != p ? ", ZeRO-1 over all %d ranks of the grid" : ", ZeRO-1",
                     dp_shards(r->dp));
        fprintf(out, "data parallel   : %d ranks%s, %d gradient buckets\n", p, zs, ds->n_buckets);
        fprintf(out,
                "communication   : %s sent per rank (%s per step), %.3f s in flight, %.3f s overlapped with "
                "backward, %.3f s exposed (%.0f%% hidden)\n",
                fg_fmt_bytes(b1, sizeof b1, ds->bytes),
                fg_fmt_bytes(b2, sizeof b2, steps > 0 ? ds->bytes / (double)steps : 0.0), ds->span_s, ds->overlap_s,
                ds->exposed_s, ds->span_s > 0 ? 100.0 * (ds->span_s - ds->exposed_s) / ds->span_s : 0.0);
    }
    if (r->comm && fg_comm_size(r->comm) > 1) /* src/dist's own count, every operation (docs/SCALING.md) */
        fprintf(out, "fg_comm counter : %s per step sent per rank in the batch group%s%s\n",
                fg_fmt_bytes(b1, sizeof b1, steps > 0 ? fg_comm_bytes_sent(r->comm) / steps : 0.0),
                r->ep_comm && fg_comm_size(r->ep_comm) > 1 ? ", in the ep group " : "",
                r->ep_comm && fg_comm_size(r->ep_comm) > 1
                    ? fg_fmt_bytes(b2, sizeof b2, steps > 0 ? fg_comm_bytes_sent(r->ep_comm) / steps : 0.0)
                    : "");
    if (fg_model_moe_ep_size(r->m) > 0) { /* rank 0's share: the ranks are alike */
        double eb = fg_model_moe_ep_bytes(r->m);
        fprintf(out, "expert parallel : %d ranks, %s sent per rank by the expert all-to-alls (%s per step)\n",
                fg_model_moe_ep_size(r->m), fg_fmt_bytes(b1, sizeof b1, eb),
                fg_fmt_bytes(b2, sizeof b2, steps > 0 ? eb / steps : 0.0));
    }
    if (r->tp)
        fprintf(out, "tensor parallel : %d ranks, %s sent per rank by the activation sums (%s per step)\n",
                tp_size(r->tp), fg_fmt_bytes(b1, sizeof b1, tp_bytes(r->tp)),
                fg_fmt_bytes(b2, sizeof b2, steps > 0 ? tp_bytes(r->tp) / (double)steps : 0.0));
    if (r->tp) /* rank 0's, before its first whole-model validation */
        fprintf(out, "tp activations  : %s resident%s%s%s\n",
                fg_fmt_bytes(b1, sizeof b1, (double)fg_model_tp_act_resident(r->m)),
                r->c.tp_sp ? "; sequence parallel: " : "",
                r->c.tp_sp ? fg_fmt_bytes(b2, sizeof b2, fg_model_tp_seq_saved(r->m)) : "",
                r->c.tp_sp ? " per micro-batch set not kept (counted)" : "");
    if (r->pp && r->c.pp > 1) {
        const pp_stats *ps = pp_get_stats(r->pp);
        const int *bd = pp_bounds(r->pp);
        fprintf(out, "pipeline        : %d stages", ps->stages);
        if (ps->chunks > 1)
            fprintf(out, " x %d chunks (interleaved)", ps->chunks);
        fprintf(out, ", layers");
        for (int s = 0; s < ps->stages * ps->chunks; s++)
            fprintf(out, "%s%d-%d", s ? " | " : " ", bd[s], bd[s + 1] - 1);
        fprintf(out, ", %d micro-batches per step (1F1B), balancer moved layers %d of %d times\n", ps->micro,
                ps->n_moved, ps->n_balance);
        fprintf(out,
                "pipeline bubble : %.1f%% measured (mean idle share of the stages' step time), %.1f%% theoretical "
                "%s\n",
                ps->steps > 0 ? 100.0 * ps->bubble_sum / (double)ps->steps : 0.0, 100.0 * ps->bubble_theory,
                ps->chunks > 1 ? "(p-1)/(v*m+p-1)" : "(p-1)/(m+p-1)");
        fprintf(out,
                "pipeline comm   : %s sent by rank 0 (%s per step); rank 0 keeps %d activation sets, %.3f s of "
                "forward recomputation\n",
                fg_fmt_bytes(b1, sizeof b1, ps->bytes),
                fg_fmt_bytes(b2, sizeof b2, steps > 0 ? ps->bytes / (double)steps : 0.0), ps->slots ? ps->slots : 1,
                ps->recompute_s);
    }
    if (r->dp && dp_compressed(r->dp)) {
        const dp_stats *ds = dp_get_stats(r->dp);
        fprintf(out,
                "compression     : top-k %g%% (%s indices, %s values): %.0f bytes per rank per step against %.0f "
                "dense, %.1fx fewer\n",
                100.0 * r->c.compress, r->c.compress_delta ? "delta" : "uint32", r->c.compress_bf16 ? "bf16" : "fp32",
                ds->payload_steps > 0 ? ds->payload / (double)ds->payload_steps : 0.0,
                ds->payload_steps > 0 ? ds->dense / (double)ds->payload_steps : 0.0,
                ds->payload > 0 ? ds->dense / ds->payload : 0.0);
    }
    /* Adam's m + v as stored, beside the other storage; master weights are fp32 always */
    size_t np = fg_model_num_params(r->m), nopt = r->opt.n_params; /* ZeRO-1: the rank's shard */
    int bf = r->c.adam_moments == FG_ADAM_MOMENTS_BF16;
    char s1[32], s2[32], s3[32];
    fprintf(out, "optimizer state : m+v %s (%s moments; %s as %s), master weights %s (fp32)\n",
            fg_fmt_bytes(s1, sizeof s1, (double)nopt * (double)fg_adam_moment_bytes(r->c.adam_moments)),
            bf ? "bf16" : "fp32", fg_fmt_bytes(s2, sizeof s2, (double)nopt * (double)fg_adam_moment_bytes(!bf)),
            bf ? "fp32" : "bf16", fg_fmt_bytes(s3, sizeof s3, (double)np * sizeof(float)));
    if (r->dp || r->pp) {
        /* what this rank keeps for training (activations above): with pipeline stages the
         * floats of its stage's tensors (docs/DIST.md "Memory per rank"), else the whole
         * params and grads; ZeRO-1 adds its shard's reduced grads */
        const bool zero = r->dp && dp_zero(r->dp), own = r->pp && pp_own(r->pp) && !zero;
        size_t keep = r->pp ? pp_kept(r->pp) : np; /* a pipeline stage: its own tensors' floats */
        fprintf(out, "optimizer / rank: %zu bytes of m+v (%s)\n",
                (own ? keep : nopt) * fg_adam_moment_bytes(r->c.adam_moments),
                zero  ? "ZeRO-1: this rank's shard"
                : own ? "this stage's tensors"
                      : "whole, on every rank");
        size_t zoff = 0, zlen = 0;
        if (r->dp && dp_zero(r->dp) && !dp_compressed(r->dp))
            dp_shard(r->dp, &zoff, &zlen);
        fprintf(out,
                "memory / rank   : params %zu bytes, grads %zu bytes, optimizer %zu bytes, ZeRO grad shard %zu bytes\n",
                keep * sizeof(float), keep * sizeof(float),
                (own ? keep : nopt) * fg_adam_moment_bytes(r->c.adam_moments), zlen * sizeof(float));
    }
    if (r->pp && pp_size(r->pp) > 1) {
        /* rank 0 (its stage, also while it writes a checkpoint or final/) and the
         * largest of the other ranks; resident: the pages of the four buffers, measured */
        char b[7][32];
        fprintf(out,
                "stage memory    : params+grads+m+v of %s (whole model%s): rank 0 keeps %s (%s resident), the "
                "other ranks at most %s (%s resident); peak RSS rank 0 %s, the others at most %s\n",
                fg_fmt_bytes(b[0], sizeof b[0], r->mem_whole),
                pp_own(r->pp) ? ", each stage keeps its own tensors" : ", every rank keeps it",
                fg_fmt_bytes(b[1], sizeof b[1], r->mem[0]), fg_fmt_bytes(b[2], sizeof b[2], r->mem[1]),
                fg_fmt_bytes(b[3], sizeof b[3], r->mem_max[0]), fg_fmt_bytes(b[4], sizeof b[4], r->mem_max[1]),
                fg_fmt_bytes(b[5], sizeof b[5], r->mem[2]), fg_fmt_bytes(b[6], sizeof b[6], r->mem_max[2]));
        /* peak: the most resident at any checkpoint, validation, final/ or resume */
        fprintf(out, "stage mem bytes : whole %.0f rank0 %.0f resident %.0f others %.0f resident %.0f peak %.0f %.0f\n",
                r->mem_whole, r->mem[0], r->mem[1], r->mem_max[0], r->mem_max[1], r->mem[3], r->mem_max[3]);
    }
    if (r->c.loss_scale)
        fprintf(out, "loss scaling    : dynamic, %ld step%s skipped (inf/nan gradients), scale now %g\n",
                res->skipped_steps, res->skipped_steps == 1 ? "" : "s", (double)r->scaler.scale);
}

/* The checkpoint policy of the config, as ckpt.h takes it. */
static fg_ckpt_opts ckpt_opts(const fg_train_config *c)
{
    fg_ckpt_opts o = {.full_every = c->ckpt_full_every,
                      .keep_full = c->ckpt_keep,
                      .async = c->ckpt_async != 0,
                      .zstd_level = c->ckpt_zstd_level,
                      .compress_full = c->ckpt_compress_full != 0,
                      .write_delay_ms = c->ckpt_write_delay_ms};
    return o;
}

/* Stage-owned memory: rank 0 writes one process's file while the other stages of its
 * pipeline stream their tensors to it piece by piece (docs/DIST.md "Memory per rank"); w
 * (rank 0's writer, NULL when it could not be made) and meta matter on rank 0 only. */
static fg_status stream_write(run *r, fg_ckpt_writer *w, const char *meta, int nt)
{
    if (!pp_lead_pipe(r->pp))
        return FG_OK;
    static const char *const names[3] = {"params", "adam.m", "adam.v"};
    size_t b = fg_model_num_params(r->m) * sizeof(float), bytes[3] = {b, b, b};
    fg_status st = pp_stream_begin(r->pp, nt);
    if (st == FG_OK && r->rank0 && w)
        st = fg_ckpt_writer_save_stream(w, r->step, meta, names, bytes, nt, PP_SCHUNK, pp_stream_fill, r->pp);
    char msg[1024] = "";
    if (st != FG_OK)
        snprintf(msg, sizeof msg, "%s", fg_last_error());
    fg_status st2 = pp_stream_end(r->pp); /* the others send; rank 0 drains what was not asked for */
    note_resident(r);
    if (st != FG_OK)
        return fg_error(st, "%s", msg);
    return st2;
}

static fg_status save_ckpt(run *r, double tokens)
{
    if (r->dp) {
        fg_ckpt_opts o = ckpt_opts(&r->c);
        fg_status st = FG_OK;
        if (dp_zero(r->dp)) /* each rank its shard of m, v: no rank holds them whole */
            st = dp_save_shards(r->dp, &r->opt, r->c.ckpt_dir, r->step, &o);
        if (st == FG_OK) /* compression: each rank's residual (no-op without) */
            st = dp_save_resid(r->dp, r->c.ckpt_dir, r->step, &o);
        if (st != FG_OK)
            return st;
    }
    const bool stream = r->pp && pp_own(r->pp);
    if (!r->rank0)
        return stream ? stream_write(r, NULL, NULL, pp_stream_tensors(r->pp)) : FG_OK;
    fg_status sw = FG_OK;
    if (!r->ckw) {
        fg_ckpt_opts o = ckpt_opts(&r->c);
        r->ckw = fg_ckpt_writer_new(r->c.ckpt_dir, &o);
        if (!r->ckw) {
            r->ckpt_failed = true;
            sw = fg_last_status();
        }
    }
    char *meta = sw == FG_OK ? meta_json(r, tokens) : NULL;
    if (sw == FG_OK && !meta)
        sw = FG_ERR_NOMEM;
    if (stream) {
        fg_status st = stream_write(r, sw == FG_OK ? r->ckw : NULL, meta, pp_stream_tensors(r->pp));
        fg_free(meta);
        st = sw != FG_OK ? sw : st;
        r->ckpt_failed |= st != FG_OK;
        return st;
    }
    if (sw != FG_OK)
        return sw;
    fg_ckpt_tensor t[3];
    float *scratch;
    fg_status st = FG_OK;
    int nt = ckpt_tensors(r, t, &scratch, &st);
    if (st == FG_OK)
        st = fg_ckpt_writer_save(r->ckw, r->step, meta, t, nt);
    fg_free(scratch);
    fg_free(meta);
    r->ckpt_failed |= st != FG_OK;
    return st;
}

/* The writer of a params-only model for sampling or export (final/, best/): synchronous,
 * one full checkpoint kept (one format: ckpt.h). */
static fg_ckpt_writer *model_writer(const char *run_dir, const char *sub, const fg_train_config *c)
{
    char dir[PATHN];
    snprintf(dir, sizeof dir, "%s/%s", run_dir, sub);
    fg_ckpt_opts o = ckpt_opts(c);
    o.async = false;
    o.full_every = 1;
    o.keep_full = 1;
    return fg_ckpt_writer_new(dir, &o);
}

static fg_status save_model(fg_ckpt_writer *w, long step, const fg_train_config *c, fg_model *m)
{
    char *cfg = fg_train_config_to_json(c);
    fg_ckpt_tensor t = {"params", fg_model_params(m), fg_model_num_params(m) * sizeof(float)};
    fg_status st = cfg ? fg_ckpt_writer_save(w, step, cfg, &t, 1) : FG_ERR_NOMEM;
    fg_free(cfg);
    fg_status st2 = fg_ckpt_writer_wait(w);
    return st == FG_OK ? st2 : st;
}

/* The final model: params only, synchronous, in <out>/final. */
static fg_status save_final(const char *run_dir, long step, const fg_train_config *c, fg_model *m, uint64_t *bytes)
{
    fg_ckpt_writer *w = model_writer(run_dir, "final", c);
    if (!w)
        return fg_last_status();
    fg_status st = save_model(w, step, c, m);
    if (bytes) {
        fg_ckpt_stats s;
        fg_ckpt_writer_stats(w, &s);
        *bytes = s.file_full + s.file_delta;
    }
    fg_status st2 = fg_ckpt_writer_delete(w);
    return st == FG_OK ? st2 : st;
}

/* final/ under stage-owned memory: streamed by rank 0's pipeline (stream_write) */
static fg_status stream_final(run *r, uint64_t *bytes)
{
    fg_ckpt_writer *w = NULL;
    char *cfg = NULL;
    fg_status st = FG_OK;
    if (r->rank0 && !(w = model_writer(r->c.out, "final", &r->c)))
        st = fg_last_status();
    if (r->rank0 && st == FG_OK && !(cfg = fg_train_config_to_json(&r->c)))
        st = FG_ERR_NOMEM;
    fg_status st2 = stream_write(r, st == FG_OK ? w : NULL, cfg, 1);
    fg_free(cfg);
    if (w) {
        fg_ckpt_stats s;
        fg_ckpt_writer_stats(w, &s);
        *bytes = s.file_full + s.file_delta;
    }
    fg_status st3 = fg_ckpt_writer_delete(w);
    return st != FG_OK ? st : st2 != FG_OK ? st2 : st3;
}

/* ---- corpus-sized runs: an epoch cap on max_steps, and the best validation kept ---- */

/* max_epochs: a small corpus seen a hundred times is recited, not learnt; the cap
 * ties the step count to the train tokens (before the schedule is built from it). */
static void epoch_cap(run *r, FILE *out)
{
    fg_train_config *c = &r->c;
    double tok_step = (double)c->grad_accum * c->batch_size * c->seq_len;
    double cap = ceil(c->max_epochs * (double)fg_loader_tokens(&r->train) / tok_step);
    if (c->max_epochs <= 0 || cap >= (double)c->max_steps)
        return;
    if (out)
        fprintf(out, "max_epochs %g: max_steps %ld -> %.0f (%llu train tokens, %.0f per step)\n", c->max_epochs,
                c->max_steps, cap, (unsigned long long)fg_loader_tokens(&r->train), tok_step);
    c->max_steps = cap > 1 ? (long)cap : 1;
}

/* keep_best: after a validation that beats *best, the params go to <out>/best the way
 * final/ is written (so `frugal sample --ckpt <out>/best` reads it); one writer for the
 * run, so its summary is logged once. After a resume *best starts again at +inf: the
 * first validation replaces best/. */
static fg_status keep_best(run *r, float val, float *best)
{
    if (r->pp && pp_own(r->pp)) { /* streamed by rank 0's pipeline, rank 0's decision */
        if (!r->c.keep_best || !pp_lead_pipe(r->pp))
            return FG_OK;
        int save = r->rank0 && !isnan(val) && val < *best;
        fg_status st = pp_bcast_flag(r->pp, &save);
        if (st != FG_OK || !save)
            return st;
        char *cfg = NULL;
        if (r->rank0 && !r->best_w && !(r->best_w = model_writer(r->c.out, "best", &r->c)))
            st = fg_last_status();
        if (r->rank0 && st == FG_OK && !(cfg = fg_train_config_to_json(&r->c)))
            st = FG_ERR_NOMEM;
        fg_status st2 = stream_write(r, st == FG_OK ? r->best_w : NULL, cfg, 1);
        fg_free(cfg);
        st = st != FG_OK ? st : st2;
        if (st == FG_OK)
            *best = val;
        return st;
    }
    if (!r->rank0 || !r->c.keep_best || isnan(val) || val >= *best)
        return FG_OK;
    if (!r->best_w && !(r->best_w = model_writer(r->c.out, "best", &r->c)))
        return fg_last_status();
    fg_status st = save_model(r->best_w, r->step, &r->c, r->m);
    if (st == FG_OK)
        *best = val;
    return st;
}

fg_status fg_train_run(const fg_train_config *cfg, FILE *out, fg_train_result *res_out)
{
    return fg_train_run_comm(cfg, NULL, out, res_out);
}

static fg_status run_impl(const fg_train_config *cfg, fg_comm *comm, fg_comm *ep_comm, fg_comm *pp_comm,
                          fg_comm *tp_comm, fg_comm *world, bool rank0, FILE *out, fg_train_result *res_out);

fg_status fg_train_run_comm(const fg_train_config *cfg, fg_comm *comm, FILE *out, fg_train_result *res_out)
{
    return run_impl(cfg, comm, NULL, NULL, NULL, comm, !comm || fg_comm_rank(comm) == 0, out, res_out);
}

fg_status fg_train_run_grid(const fg_train_config *cfg, const fg_grid *g, FILE *out, fg_train_result *res_out)
{
    if (g->ep <= 1)
        return run_impl(cfg, g->dp_comm, NULL, g->pp_comm, g->tp_comm, g->world, g->rank == 0, out, res_out);
    /* expert parallel: the dp x ep ranks of one (pp, tp) place split the batch (the
     * gradient all-reduce); the ep group carries the experts' all-to-alls. With pp, each
     * stage's ep group exchanges the rows of that stage's MoE layers (every rank of it
     * runs the same 1F1B schedule, so the same layers' exchanges in the same order). With
     * tp, the ep group joins ranks of equal tp rank: each exchanges its expert slices' rows */
    fg_comm *batch = NULL;
    fg_status st = fg_comm_split(g->world, g->pp_rank * g->tp + g->tp_rank, g->rank, &batch);
    if (st != FG_OK)
        return st;
    st = run_impl(cfg, batch, g->ep_comm, g->pp_comm, g->tp_comm, g->world, g->rank == 0, out, res_out);
    fg_comm_free(batch);
    return st;
}

static fg_status run_impl(const fg_train_config *cfg, fg_comm *comm, fg_comm *ep_comm, fg_comm *pp_comm,
                          fg_comm *tp_comm, fg_comm *world, bool rank0, FILE *out, fg_train_result *res_out)
{
    double t_wall = fg_time_sec();
    run rr;
    memset(&rr, 0, sizeof rr);
    run *r = &rr;
    r->lock.fd = -1;
    r->c = *cfg;
    r->comm = comm;
    r->ep_comm = ep_comm;
    r->pp_comm = pp_comm;
    r->tp_comm = tp_comm;
    r->world = world;
    r->rank0 = rank0;
    fg_train_result res;
    memset(&res, 0, sizeof res);
    res.first_val = res.last_val = NAN;
    fg_status st = FG_OK;
    if (cfg->dp * cfg->ep != (comm ? fg_comm_size(comm) : 1))
        st = fg_error(FG_ERR_INVALID,
                      "'dp' %d x 'ep' %d, but %d process%s in the data-parallel group (run under mpirun -np %d)",
                      cfg->dp, cfg->ep, comm ? fg_comm_size(comm) : 1, comm && fg_comm_size(comm) > 1 ? "es" : "",
                      cfg->dp * cfg->ep);
    else if (cfg->ep != (ep_comm ? fg_comm_size(ep_comm) : 1))
        st = fg_error(FG_ERR_INVALID, "'ep' %d, but the expert-parallel group has %d rank(s)", cfg->ep,
                      ep_comm ? fg_comm_size(ep_comm) : 1);
    if (st == FG_OK && cfg->pp != (pp_comm ? fg_comm_size(pp_comm) : 1))
        st = fg_error(FG_ERR_INVALID, "'pp' %d, but %d stage%s in the pipeline group (run under mpirun -np dp x pp)",
                      cfg->pp, pp_comm ? fg_comm_size(pp_comm) : 1, pp_comm && fg_comm_size(pp_comm) > 1 ? "s" : "");
    if (st == FG_OK && cfg->tp != (tp_comm ? fg_comm_size(tp_comm) : 1))
        st = fg_error(FG_ERR_INVALID, "'tp' %d, but %d rank%s in the tensor-parallel group (mpirun -np dp x tp x pp)",
                      cfg->tp, tp_comm ? fg_comm_size(tp_comm) : 1, tp_comm && fg_comm_size(tp_comm) > 1 ? "s" : "");
    if (st == FG_OK)
        st = setup(r, out);
    if (st != FG_OK)
        goto out_teardown;
    fg_train_config *c = &r->c;
    epoch_cap(r, out);
    float best_val = INFINITY;

    if (c->resume) {
        st = load_resume(r);
        if (st != FG_OK)
            goto out_teardown;
        note_resident(r); /* a stage read its own pieces only: nothing to release */
        if (out)
            fprintf(out, "resumed from %s at step %ld%s%s\n", c->ckpt_dir, r->step, r->layout_note[0] ? ": " : "",
                    r->layout_note);
    }
    char path[PATHN];
    char *cj = r->rank0 ? fg_train_config_to_json(c) : NULL;
    snprintf(path, sizeof path, "%s/config.json", c->out);
    st = !r->rank0 ? FG_OK : cj ? write_text_atomic(path, cj) : FG_ERR_NOMEM;
    fg_free(cj);
    if (st != FG_OK)
        goto out_teardown;
    snprintf(r->metrics_path, sizeof r->metrics_path, "%s/metrics.jsonl", c->out);
    if (r->rank0 && c->resume && (st = trim_torn_line(r->metrics_path)) != FG_OK)
        goto out_teardown;
    r->metrics = r->rank0 ? fopen(r->metrics_path, c->resume ? "a" : "w") : NULL;
    if (r->rank0 && !r->metrics) {
        st = fg_error(FG_ERR_IO, "%s: cannot open: %s", r->metrics_path, strerror(errno));
        goto out_teardown;
    }

    const int B = c->batch_size, T = c->seq_len;
    int A = c->grad_accum;
    const double tok_step = (double)A * B * T; /* at the start (the adaptive batch may grow it) */
    const double flops_tok = fg_model_flops_per_token(r->m, T);
    fg_lr_schedule sched = {c->lr, c->min_lr, c->warmup_steps < c->max_steps ? c->warmup_steps : c->max_steps,
                            c->max_steps};
    if (out) {
        fprintf(out, "model: %s L=%d C=%d NH=%d V=%d T=%d%s, params %zu total / %zu active, %.3g FLOPs/token\n",
                c->model.layout == FG_LAYOUT_GPT2 ? "gpt2" : "llama", c->model.n_layer, c->model.d_model,
                c->model.n_head, c->model.vocab_size, T, c->model.moe.n_expert ? " MoE" : "", fg_model_num_params(r->m),
                fg_model_num_active_params(r->m), flops_tok);
        fprintf(out, "train: %ld steps x %.0f tokens, lr %g -> %g (warmup %ld), %llu train tokens%s\n", c->max_steps,
                tok_step, c->lr, c->min_lr, sched.warmup, (unsigned long long)fg_loader_tokens(&r->train),
                r->has_val ? "" : ", no validation data");
        /* which unit each precision's GEMMs use, from the dispatch table in effect */
        fprintf(out, "units (this run: precision %s):\n",
                c->model.precision == FG_PRECISION_FP32   ? "fp32"
                : c->model.precision == FG_PRECISION_BF16 ? "bf16"
                                                          : "fp8");
        fg_hw_print_units(out, "  ", fg_kernels_variant("matmul"), fg_kernels_variant("bgemm"));
        if (c->loss_scale)
            fprintf(out, "loss scaling: dynamic, scale %g (x2 after %d clean steps, /2 after %d overflowing)\n",
                    (double)r->scaler.scale, c->loss_scale_growth_interval, c->loss_scale_hysteresis);
        fflush(out);
    }
    fg_progress bar;
    fg_progress_begin(&bar, "train", (double)(c->max_steps - r->step) * tok_step, "tok");
    long first = r->step;
    float val = NAN;
    if (first == 0 && r->has_val) {
        /* the starting point, so the log shows how far validation loss falls */
        val = evaluate(r);
        res.first_val = val;
        st = keep_best(r, val, &best_val);
        if (st != FG_OK)
            goto out_teardown;
        metrics_printf(r, "{\"step\": 0, \"val_loss\": %.9g}\n", val);
        st = metrics_flush(r);
        if (st != FG_OK)
            goto out_teardown;
        if (out)
            fprintf(out, "step %6d | val loss %.4f\n", 0, val);
    }
    if (r->dp && c->batch_rule == FG_BATCH_GNS)
        dp_set_gns(r->dp, 1);
    while (r->step < c->max_steps) {
        double t0 = fg_time_sec();
        if (c->hang_rank >= 0 && r->comm && fg_comm_rank(r->comm) == c->hang_rank && r->step + 1 == c->hang_step)
            for (;;) /* test hook: alive and silent, as a rank stuck in a driver or a deadlock */
                sleep(1);
        A = r->ad.accum;  /* adaptive batch: this step's micro-batches */
        if (r->train.aug) /* augmentation: the schedule's progress, the step's row log */
            fg_loader_aug_begin(&r->train, (float)r->step / (float)c->max_steps);
        if (r->dp)
            dp_load(r->dp, &r->train, r->inp, r->tgt, A, B, T);
        else
            for (int k = 0; k < A; k++)
                fg_loader_next(&r->train, r->inp + (size_t)k * B * T, r->tgt + (size_t)k * B * T);
        float loss = 0;
        float *grads = fg_model_grads(r->m);
        const size_t n_grads = fg_model_num_params(r->m);
        const float scale = c->loss_scale ? r->scaler.scale : 1.0f;
        const bool zero = r->dp && dp_zero(r->dp);
        const bool own = r->pp && pp_own(r->pp) && !zero; /* a stage steps its own tensors */
        double small_sq = NAN;                            /* gns: |grad|^2 of the first micro-batch (as scaled) */
        if (r->dp)
            dp_set_step(r->dp, r->step); /* the compression's density warm-up */
        if (r->pp)                       /* the stages, then the sum over stages and replicas (dp's grads too) */
            st = pp_grads(r->pp, r->m, r->inp, r->tgt, B, T, A / (c->dp * c->ep), A, scale, &loss);
        else if (r->dp)
            st = dp_grads(r->dp, r->m, r->inp, r->tgt, B, T, A, scale, &loss);
        else
            st = step_grads(r, A, scale, &loss, c->batch_rule == FG_BATCH_GNS ? &small_sq : NULL);
        if (st == FG_OK && r->dp && c->batch_rule == FG_BATCH_GNS)
            small_sq = dp_gns_small(r->dp);
        if (st != FG_OK)
            goto out_teardown;
        if (c->inject_overflow_step > 0 && r->step + 1 == c->inject_overflow_step) {
            /* test hook: an overflow in the backward, as the scaler must see it (ZeRO-1: in each shard) */
            float *g0 = zero ? dp_shard_grads(r->dp) : grads;
            g0[0] = INFINITY;
        }
        bool skipped = false;
        if (c->loss_scale) {
            /* GradScaler order: unscale with the inf/nan check, then clip and step on
             * clean gradients only; the skipped step leaves params, the Adam moments and
             * Adam's t as they were, while the step counter, schedule and data move on */
            bool found_inf = false;
            if (own)
                st = pp_unscale(r->pp, fg_loss_scaler_inv_scale(&r->scaler), &found_inf);
            else if (r->dp)
                st = dp_unscale(r->dp, grads, n_grads, fg_loss_scaler_inv_scale(&r->scaler), &found_inf);
            else
                fg_grad_unscale(grads, n_grads, fg_loss_scaler_inv_scale(&r->scaler), &found_inf);
            if (st != FG_OK)
                goto out_teardown;
            skipped = fg_loss_scaler_update(&r->scaler, found_inf);
        }
        double norm = NAN;
        if (!skipped && zero)
            st = dp_zero_norm(r->dp, &r->opt, &norm); /* over all shards */
        else if (!skipped && own)
            st = pp_norm(r->pp, &norm); /* over the stages' own tensors */
        else if (!skipped)
            norm = fg_optim_grad_norm(&r->opt, grads);
        if (st != FG_OK)
            goto out_teardown;
        if (!skipped && (!isfinite(loss) || !isfinite(norm))) {
            st = fg_error(FG_ERR_NUMERIC, "step %ld: loss %g, gradient norm %g: training diverged (lower --lr?)",
                          r->step, loss, norm);
            goto out_teardown;
        }
        float lr = fg_lr_at(&sched, r->step) * fg_adapt_lr_mult(&r->ad); /* 1 unless the batch grew */
        if (!skipped) {
            if (r->dp && (st = dp_moe_loads(r->dp, r->m)) != FG_OK) /* the router bias moves by the global load */
                goto out_teardown;
            /* post_step moves frozen MoE router state only, which the update leaves
             * alone: done first, so the bf16 weight copy the step writes includes it.
             * One sweep clips (the factor read with each gradient), updates and writes
             * that copy (docs/TRAINING.md "The optimizer step") */
            fg_model_post_step(r->m);
            if (zero) /* AdamW on the shard, then the params all-gathered (the bf16 copy refreshes at forward) */
                st = dp_zero_step(r->dp, &r->opt, lr, fg_optim_clip_coef(norm, c->grad_clip));
            else if (own) /* AdamW on the stage's own tensors (fp32 pipelines: no bf16 copy) */
                pp_step(r->pp, lr, fg_optim_clip_coef(norm, c->grad_clip));
            else
                fg_optim_step_fused(&r->opt, fg_model_params(r->m), grads, lr, fg_optim_clip_coef(norm, c->grad_clip),
                                    fg_model_bf16_weights(r->m));
            if (st != FG_OK)
                goto out_teardown;
        }
        res.skipped_steps += skipped;
        if (!skipped) {
            /* the first micro-batch's gradient is that of its mean loss times 1/A (and the
             * loss scale): rescaled to its own mean loss; a skipped step tells nothing */
            double k = (double)A / scale;
            fg_adapt_observe(&r->ad, loss, small_sq * k * k, norm * norm);
        }
        r->step++;
        res.steps++;
        double dt = fg_time_sec() - t0;
        res.train_sec += dt;
        res.tokens += (double)A * B * T;
        if (r->step == first + 1)
            res.first_loss = loss;
        res.last_loss = loss;
        double tps = res.tokens / res.train_sec;
        char norm_s[32];
        snprintf(norm_s, sizeof norm_s, isfinite(norm) ? "%.6g" : "null", norm); /* JSON has no nan */
        char loss_s[32];
        snprintf(loss_s, sizeof loss_s, isfinite(loss) ? "%.9g" : "null", loss);
        metrics_printf(r,
                       "{\"step\": %ld, \"loss\": %s, \"lr\": %.6g, \"grad_norm\": %s, \"tokens\": %.0f, "
                       "\"tokens_per_s\": %.1f, \"flops_per_s\": %.4g, \"step_s\": %.4f",
                       r->step, loss_s, lr, norm_s, r->tokens_before + res.tokens, tps, tps * flops_tok, dt);
        if (c->batch_rule != FG_BATCH_FIXED) { /* the batch this step ran, in rows, and the rule's last measure */
            char nz[32];
            snprintf(nz, sizeof nz, isfinite(r->ad.noise) ? "%.6g" : "null", r->ad.noise);
            metrics_printf(r, ", \"batch\": %d, \"accum\": %d, \"batch_noise\": %s", A * B, A, nz);
            if (c->batch_rule == FG_BATCH_GNS) {
                snprintf(nz, sizeof nz, isfinite(r->ad.b_noise) ? "%.6g" : "null", r->ad.b_noise);
                metrics_printf(r, ", \"b_noise\": %s", nz);
            }
        }
        if (r->train.aug) { /* augmentation: revisits so far, the hard threshold, the pool */
            const fg_aug_state *as = r->train.aug;
            float thr = fg_aug_threshold(as);
            char ts[32];
            snprintf(ts, sizeof ts, isfinite(thr) ? "%.6g" : "null", (double)thr);
            metrics_printf(r, ", \"aug_revisits\": %llu, \"aug_threshold\": %s, \"aug_pool\": %d",
                           (unsigned long long)as->revisits, ts, as->n_pool);
        }
        if (c->loss_scale) /* the scale this step's backward used, and its verdict */
            metrics_printf(r, ", \"loss_scale\": %.9g, \"skipped\": %d", (double)scale, skipped ? 1 : 0);
        if (r->dp) { /* this step's gradient communication (docs/DIST.md) */
            const dp_stats *ds = dp_get_stats(r->dp);
            metrics_printf(r,
                           ", \"comm_bytes\": %.0f, \"comm_s\": %.6f, \"comm_exposed_s\": %.6f, "
                           "\"comm_overlap_s\": %.6f",
                           ds->bytes_step, ds->step_span_s, ds->step_exposed_s, ds->step_overlap_s);
            if (dp_compressed(r->dp))
                metrics_printf(r, ", \"comm_payload_bytes\": %.0f, \"comm_dense_bytes\": %.0f, \"comm_density\": %.6g",
                               ds->payload_step, ds->dense_step, ds->density_step);
        }
        if (r->pp && c->pp > 1) { /* this step's pipeline (docs/DIST.md "Pipeline parallelism") */
            const pp_stats *ps = pp_get_stats(r->pp);
            metrics_printf(r,
                           ", \"pp_bubble\": %.4f, \"pp_bubble_theory\": %.4f, \"pp_bytes\": %.0f, \"pp_compute_s\": [",
                           ps->bubble, ps->bubble_theory, ps->bytes_step);
            for (int s = 0; s < ps->stages; s++)
                metrics_printf(r, "%s%.6f", s ? ", " : "", ps->step_compute[s]);
            const int *bd = pp_bounds(r->pp);
            metrics_printf(r, "], \"pp_layers\": ["); /* interleaved: per virtual stage */
            for (int s = 0; s < ps->stages * ps->chunks; s++)
                metrics_printf(r, "%s%d", s ? ", " : "", bd[s + 1] - bd[s]);
            metrics_printf(r, "]");
        }
        if (c->model.moe.n_expert > 0) {
            /* router health of the step's last micro-batch */
            fg_moe_stats ms;
            fg_model_moe_stats(r->m, &ms);
            metrics_printf(r,
                           ", \"moe_load_max_over_mean\": %.4g, \"moe_load_cv\": %.4g, \"moe_active_frac\": %.4g, "
                           "\"moe_aux_loss\": %.4g, \"moe_dropped\": %ld",
                           ms.load_max_over_mean, ms.load_cv, ms.active_frac, ms.aux_loss, ms.dropped_tokens);
        }
        metrics_printf(r, "}\n");
        if (c->max_seconds > 0 && r->step - first >= 5) {
            /* a time budget: fit the schedule's length to the measured step time, so
             * the run still ends annealed at min_lr (the length only ever shrinks) */
            double per = res.train_sec / (double)(r->step - first);
            long proj = r->step + (long)((c->max_seconds - res.train_sec) / per);
            if (proj < sched.total)
                sched.total = proj > r->step ? proj : r->step;
        }
        bool last = r->step >= sched.total || (c->stop_after > 0 && r->step >= c->stop_after) ||
                    (c->max_seconds > 0 && res.train_sec >= c->max_seconds);
        if (r->dp && (st = dp_agree(r->dp, &sched.total, &last)) != FG_OK) /* clocks differ per rank */
            goto out_teardown;
        if (r->pp && c->pp > 1 && (st = pp_agree(r->pp, &sched.total, &last)) != FG_OK) /* stage 0's */
            goto out_teardown;
        if (r->tp) { /* tp rank 0's (world rank 0's after the two above) */
            int64_t v[2] = {sched.total, last ? 1 : 0};
            if ((st = fg_comm_bcast(r->tp_comm, v, 2, FG_DT_I64, 0)) != FG_OK)
                goto out_teardown;
            sched.total = (long)v[0];
            last = v[1] != 0;
        }
        bool log_now = out && (r->step % c->log_every == 0 || r->step == first + 1 || last);
        if (bar.enabled && (log_now || (c->val_every > 0 && r->step % c->val_every == 0)))
            fputs("\r\033[K", stderr); /* clear the bar's line; the next update redraws it */
        if (log_now) {
            fprintf(out, "step %6ld | loss %.4f | lr %.3e | norm %.3f | %.0f tok/s%s\n", r->step, loss, lr, norm, tps,
                    skipped ? " | skipped (inf/nan gradients)" : "");
            fflush(out);
        }
        if ((c->val_every > 0 && r->step % c->val_every == 0) || last) {
            val = evaluate(r);
            if (isnan(res.first_val))
                res.first_val = val;
            res.last_val = val;
            if (!isnan(val)) {
                metrics_printf(r, "{\"step\": %ld, \"val_loss\": %.9g}\n", r->step, val);
                if (out)
                    fprintf(out, "step %6ld | val loss %.4f\n", r->step, val);
            }
            st = keep_best(r, val, &best_val);
            if (st != FG_OK)
                goto out_teardown;
        }
        st = metrics_flush(r);
        if (st != FG_OK)
            goto out_teardown;
        if (r->pp && c->pp > 1 && c->pp_balance && c->ckpt_every > 0 && r->step % c->ckpt_every == 0 && !last) {
            /* the balancer at a checkpoint boundary: a moved layer's params and m, v go to
             * its new stage (stage-owned memory; under --zero 1 the shards re-cut) */
            char msg[512];
            int moved = 0;
            st = pp_balance(r->pp, &moved, msg, sizeof msg);
            if (st == FG_OK && moved && r->dp && dp_zero(r->dp) && pp_own(r->pp))
                st = zero_recut(r);
            if (st != FG_OK)
                goto out_teardown;
            if (out) {
                fprintf(out, "step %6ld | %s\n", r->step, msg);
                fflush(out);
            }
        }
        if (c->ckpt_every > 0 && (r->step % c->ckpt_every == 0 || last)) {
            if (c->ep_place && !last && (st = place_experts(r, out)) != FG_OK)
                goto out_teardown;
            st = save_ckpt(r, r->tokens_before + res.tokens);
            if (st != FG_OK)
                goto out_teardown;
        }
        fg_progress_update(&bar, res.tokens);
        if (last)
            break;
    }
    fg_progress_end(&bar);
    res.flops = res.tokens * flops_tok;
    res.loss_scale = c->loss_scale ? r->scaler.scale : 1.0f;
    if (r->ckw) {
        st = fg_ckpt_writer_wait(r->ckw);
        if (st != FG_OK) {
            r->ckpt_failed = true;
            goto out_teardown;
        }
        fg_ckpt_stats s;
        fg_ckpt_writer_stats(r->ckw, &s);
        res.ckpt_bytes += s.file_full + s.file_delta;
    }
    if (r->best_w) {
        fg_ckpt_stats s;
        fg_ckpt_writer_stats(r->best_w, &s);
        res.ckpt_bytes += s.file_full + s.file_delta;
    }
    uint64_t fb = 0;
    if (r->pp && pp_own(r->pp))
        st = stream_final(r, &fb);
    else
        st = r->rank0 ? save_final(c->out, r->step, c, r->m, &fb) : FG_OK;
    if (st != FG_OK)
        goto out_teardown;
    res.ckpt_bytes += fb;
    res.wall_sec = fg_time_sec() - t_wall;
    if (r->pp && pp_size(r->pp) > 1) { /* every rank: the stage memory, the largest of the grid */
        size_t own = 0, resid = 0, whole = 0;
        pp_memory(r->pp, &own, &resid, &whole);
        if (r->dp && dp_zero(r->dp)) { /* m, v: ZeRO-1's shard (fg_optim's, touched whole) */
            size_t mb = fg_adam_moment_bytes(c->adam_moments);
            own += r->opt.n_params * mb;
            resid += r->opt.n_params * mb;
            whole += fg_model_num_params(r->m) * mb;
        }
        double v[4] = {(double)own, (double)resid, (double)fg_peak_rss_bytes(),
                       r->peak_resident > (double)resid ? r->peak_resident : (double)resid};
        memcpy(r->mem, v, sizeof v);
        r->mem_whole = (double)whole;
        if (fg_comm_rank(r->world) == 0)
            v[0] = v[1] = v[2] = v[3] = 0; /* the others' largest */
        if ((st = fg_comm_allreduce(r->world, v, 4, FG_DT_F64, FG_OP_MAX)) != FG_OK)
            goto out_teardown;
        memcpy(r->mem_max, v, sizeof v);
    }
    if (out && c->model.moe.n_expert > 0) {
        fputc('\n', out);
        fg_model_moe_print_loads(r->m, out);
    }
    print_cost(out, r, &res, flops_tok, res.steps);
    if (out)
        fprintf(out, "run directory   : %s (config.json, metrics.jsonl, final/%s)\n", c->out,
                isfinite(best_val) ? ", best/" : "");
out_teardown:;
    /* The first failure is the one reported: what follows (the writer finishing a
     * write in flight into the same full disk, ...) may set other errors. */
    char first_msg[1024] = "";
    if (st != FG_OK)
        snprintf(first_msg, sizeof first_msg, "%s", fg_last_error());
    if (st != FG_OK && out && r->m && res.tokens > 0) {
        /* a run that fails after training started still reports what it cost,
         * checkpoints included (those that reached the disk) */
        if (r->ckw) {
            if (fg_ckpt_writer_wait(r->ckw) != FG_OK)
                r->ckpt_failed = true;
            fg_ckpt_stats s;
            fg_ckpt_writer_stats(r->ckw, &s);
            res.ckpt_bytes = s.file_full + s.file_delta;
        }
        double ft = fg_model_flops_per_token(r->m, r->c.seq_len);
        res.flops = res.tokens * ft;
        res.wall_sec = fg_time_sec() - t_wall;
        fprintf(out, "\nrun stopped at step %ld by an error (below)", r->step);
        print_cost(out, r, &res, ft, res.steps);
    }
    teardown(r);
    if (st != FG_OK)
        fg_error(st, "%s", first_msg);
    if (res_out)
        *res_out = res;
    return st;
}

/* ---- loading a finished run ---- */
fg_status fg_train_load_run(const char *run_dir, const char *ckpt_dir, int B, int T, fg_train_config *c, fg_model **m)
{
    *m = NULL;
    char path[PATHN];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    fg_train_config_default(c);
    fg_status st = fg_train_config_load_json(c, path);
    if (st != FG_OK)
        return st;
    if (T <= 0 || T > c->model.max_seq_len)
        T = c->model.max_seq_len;
    fg_model *mm = fg_model_new(&c->model, B, T);
    if (!mm)
        return rewrap(fg_last_status(), path);
    char dir[PATHN];
    if (ckpt_dir && ckpt_dir[0])
        snprintf(dir, sizeof dir, "%s", ckpt_dir);
    else
        snprintf(dir, sizeof dir, "%s/final", run_dir);
    fg_ckpt_tensor t = {"params", fg_model_params(mm), fg_model_num_params(mm) * sizeof(float)};
    long step = 0;
    char *meta = NULL;
    st = fg_ckpt_load_latest(dir, &step, &meta, &t, 1);
    fg_free(meta);
    if (st != FG_OK) {
        fg_model_delete(mm);
        return st;
    }
    *m = mm;
    return FG_OK;
}

fg_status fg_train_save_run(const char *run_dir, const fg_train_config *c, fg_model *m)
{
    fg_status st = mkdir_p(run_dir);
    if (st != FG_OK)
        return st;
    char path[PATHN];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    char *cj = fg_train_config_to_json(c);
    st = cj ? write_text_atomic(path, cj) : FG_ERR_NOMEM;
    fg_free(cj);
    if (st != FG_OK)
        return st;
    return save_final(run_dir, 0, c, m, NULL);
}
