/* train.h: training runs: the config (defaults, JSON file, flag overrides,
 * validation), the token-window loader over shards, gradient accumulation, the
 * training loop with validation, metrics, checkpoints and the cost summary.
 *
 * Usage (what `frugal train` does):
 *   fg_train_config c; fg_train_config_default(&c);
 *   fg_train_config_load_json(&c, "configs/demo.json");      // optional
 *   fg_train_config_set(&c, "lr", "3e-4", "--lr");            // flags override
 *   fg_train_result r;
 *   fg_status st = fg_train_run(&c, stdout, &r);              // prints progress + cost summary
 * A run directory (`out`) receives config.json, metrics.jsonl, the tokenised data
 * (when training from raw text), checkpoints (ckpt/), the final model (final/) and
 * the model of the best validation loss (best/, keep_best), the last three through
 * ckpt.h. Same config + seed + threads = same losses bit for bit. Errors name the file
 * (and line:column for JSON) and the problem, and are detected before anything is
 * written into the run directory.
 */
#ifndef FRUGAL_TRAIN_H
#define FRUGAL_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "frugal/core.h"
#include "frugal/model.h"
#include "frugal/shard.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FG_TRAIN_PATH_MAX 1024

typedef struct fg_train_config {
    fg_model_config model; /* vocab_size 0: taken from the tokenizer / shards; max_seq_len 0: seq_len */
    /* ---- data ---- */
    char data[FG_TRAIN_PATH_MAX];         /* raw text, tokenised into <out>/data/{train,val}.bin */
    char train_shards[FG_TRAIN_PATH_MAX]; /* comma-separated shard paths (instead of data) */
    char val_shards[FG_TRAIN_PATH_MAX];   /* comma-separated; optional with train_shards */
    char tokenizer[FG_TRAIN_PATH_MAX];    /* "byte" or a tokenizer.json / GPT-2 directory */
    float val_frac;                       /* share of the text's bytes held out (tail), 0.1 */
    int sequential;                       /* 1: consecutive windows; 0: random windows (default) */
    char synth_path[FG_TRAIN_PATH_MAX];   /* synthetic text (`frugal synth`) mixed into data's training part */
    float synth_ratio;                    /* share of training tokens that are synthetic, [0, 0.99] */
    /* ---- batch ---- */
    int batch_size; /* B, sequences per micro-batch */
    int seq_len;    /* T */
    int grad_accum; /* micro-batches per optimiser step */
    long max_steps;
    long stop_after;    /* 0: off; else stop once this many steps are done (the LR
                           schedule still spans max_steps): training in pieces */
    double max_seconds; /* 0: none; else a training-time budget the schedule is fitted to */
    /* ---- optimiser ---- */
    float lr, min_lr; /* peak and final LR of warmup + cosine */
    long warmup_steps;
    float weight_decay, beta1, beta2, eps;
    int decay_all;    /* 1: decay every trained tensor; 0: not norms, biases, embeddings */
    float grad_clip;  /* global-norm clip, 0 = off */
    int adam_moments; /* fg_adam_moments (optim.h): 0 fp32, 1 bf16 (stored rounded to nearest even) */
    /* ---- evaluation, logging ---- */
    int val_every;   /* steps between validations (0: only at the end) */
    int val_batches; /* micro-batches per validation */
    int log_every;   /* steps between printed lines (metrics.jsonl gets every step) */
    /* ---- run ---- */
    char out[FG_TRAIN_PATH_MAX];      /* run directory */
    char ckpt_dir[FG_TRAIN_PATH_MAX]; /* "" = <out>/ckpt */
    int ckpt_every;                   /* steps between checkpoints, 0 = none */
    int resume;                       /* continue from the latest checkpoint in ckpt_dir */
    /* fine-tuning: the params of the newest checkpoint in this directory (e.g. an imported
     * run's final/) replace the random init at the start of a new run ("" = none) */
    char init_from[FG_TRAIN_PATH_MAX];
    int overwrite; /* allow an out dir that already holds a run */
    uint64_t seed;
    /* ---- checkpoint policy: handed to ckpt.h as fg_ckpt_opts ---- */
    int ckpt_full_every;     /* a full checkpoint every N saves, deltas between */
    int ckpt_keep;           /* full checkpoints kept with their deltas (0: all) */
    int ckpt_async;          /* 1: write from a background thread */
    int ckpt_zstd_level;     /* 1..19 */
    int ckpt_compress_full;  /* 1: full checkpoints byte-shuffled + zstd */
    int ckpt_write_delay_ms; /* test hook: pause after each tensor written */
    /* ---- machine ---- */
    int threads;        /* 0: all cores */
    char kernels[32];   /* "auto", "ref", ...; "" = $FG_KERNELS or auto */
    int blas_threading; /* 0: auto ($FG_BLAS_THREADING or omp), 1: omp (kernels split GEMMs over OpenMP), 2: blas */
    /* ---- run length and what is kept ---- */
    double max_epochs; /* 0: off; else max_steps is capped at max_epochs x train tokens / tokens per step */
    int keep_best;     /* 1 (default): the params of the best validation so far in <out>/best, as final/ */
    /* ---- dynamic loss scaling (precision.h's fg_loss_scaler; docs/TRAINING.md) ---- */
    int loss_scale;                 /* 0: off (default: fp32 gradients need none), 1: dynamic */
    float loss_scale_init;          /* first scale, 65536 */
    int loss_scale_growth_interval; /* clean steps before the scale doubles, 2000 */
    int loss_scale_hysteresis;      /* overflowing steps before it halves, 1 (PyTorch) */
    long inject_overflow_step;      /* test hook: an inf put into the gradients of this step (1-based); 0 off */
    /* ---- data parallelism (src/dist, docs/DIST.md): run under mpirun -np dp ---- */
    int dp;          /* data-parallel ranks; grad_accum micro-batches are split among them */
    int zero;        /* 1: ZeRO-1, Adam m, v sharded over the dp ranks */
    int ep;          /* expert-parallel ranks (MoE): mpirun -np dp x ep; the ep ranks share the batch too */
    int ep_place;    /* 1: re-place experts by their load history at each checkpoint boundary */
    int ep_spill;    /* 1: overloaded ranks' rows go to the least loaded rank each micro-batch */
    float bucket_mb; /* gradient bucket size, MiB: reduced as soon as backward has filled it */
    /* top-k gradient compression (Deep Gradient Compression; dist.h's codec) */
    float compress;          /* density kept per bucket (0.05 = 5%); 0: off, dense all-reduce */
    int compress_delta;      /* 1: varint-delta indices; 0: uint32 */
    int compress_bf16;       /* 1: bf16 values; 0: fp32 */
    float compress_momentum; /* DGC momentum correction factor; 0: off (AdamW has its own m) */
    int compress_clip;       /* 1: DGC local clipping at grad_clip / sqrt(dp) before accumulation */
    long compress_warmup;    /* DGC density warm-up: steps of 25%, 6.25%, ... down to compress; 0: off */
    double comm_timeout;     /* watchdog: a collective not done after this many seconds ends the job; 0: off */
    int hang_rank;           /* test hook: this world rank sleeps (hangs alive) at step hang_step; -1 off */
    long hang_step;
    /* ---- adaptive batch size (adaptive.c, docs/TRAINING.md "Adaptive batch size") ---- */
    int batch_rule;        /* fg_batch_rule: fixed (default), loss_var, gns */
    int batch_accum_max;   /* bound: micro-batches per step the rule may grow grad_accum to */
    int batch_check_every; /* steps between the rule's decisions (loss_var: its window) */
    float batch_ratio;     /* grow when noise / signal (rule's measure) exceeds this */
    float batch_ema;       /* gns: EMA decay of the |G|^2 and tr(Sigma) estimates */
    int batch_lr_scaling;  /* fg_batch_lr: none, sqrt (default), linear in accum / grad_accum */
    /* ---- loss-driven augmentation (data.h's fg_aug_*, docs/TRAINING.md) ---- */
    int aug;                                /* 1: hard windows revisited with transforms */
    float aug_frac, aug_rate;               /* hard: top frac of recent window losses; rate: share of rows revisited */
    int aug_pool, aug_visits;               /* hard windows kept; revisits before one leaves */
    float aug_drop, aug_swap, aug_mask;     /* word level: dropout rate, word-swap rate, masked share */
    int aug_span;                           /* span masking: tokens per span */
    float aug_syntax_start, aug_syntax_end; /* progress where syntax level starts / takes over */
    int aug_mask_token;                     /* -1: the tokenizer's end-of-text id, else 0 */
    /* ---- pipeline parallelism (docs/DIST.md "Pipeline parallelism"): mpirun -np dp x pp ---- */
    int pp;           /* pipeline stages; grad_accum / dp micro-batches flow through them (1F1B) */
    int pp_chunks;    /* model chunks per stage rank (interleaved 1F1B, docs/DIST.md); 1: contiguous stages */
    int pp_balance;   /* 1: at each checkpoint boundary move layers from slow stages to fast ones */
    int pp_slow_rank; /* test hook: this stage spins pp_slow_ms per layer per pass; -1 off */
    float pp_slow_ms;
    int tp;             /* tensor-parallel ranks (Megatron-style shards of heads, FFN and vocabulary) */
    int tp_sp;          /* 1: sequence parallelism over the tp ranks (norms, residuals on 1/tp of the tokens) */
    int tp_sp_regather; /* with tp_sp: norm outputs kept as rows, all-gathered again in backward */
} fg_train_config;

void fg_train_config_default(fg_train_config *c);

/* Sets one option from text, as a flag gives it ("lr", "3e-4"); dashes in key are
 * read as underscores. `where` prefixes error messages (e.g. "--lr"). Unknown key,
 * unparsable or out-of-range value: FG_ERR_INVALID. */
fg_status fg_train_config_set(fg_train_config *c, const char *key, const char *value, const char *where);

/* 1 when key is a boolean option (a flag that may stand without a value). */
int fg_train_config_key_is_flag(const char *key);

/* Applies a JSON object of options (flat, the same keys as the flags) from a file.
 * Errors: "FILE:LINE:COL: unknown key 'x'", "... key 'lr': expected a number",
 * "... key 'lr': must be > 0 (got -1)", JSON syntax errors with their position. */
fg_status fg_train_config_load_json(fg_train_config *c, const char *path);
/* The same from JSON text; `name` stands for the file in messages. */
fg_status fg_train_config_load_json_text(fg_train_config *c, const char *text, const char *name);

/* Applies command-line arguments argv[1..argc): "--config FILE" first (wherever it
 * stands), then the environment overrides (fg_train_config_apply_env), then each
 * "--key VALUE" / "--key=VALUE" in order; a boolean key may stand alone ("--resume").
 * Options listed in `extra` (names without "--", NULL-terminated; may be NULL; at most
 * 16) take a value and are skipped, left for the caller. Messages name the flag
 * ("--lr: ...") or the config file position. So flags > environment > file > defaults. */
fg_status fg_train_config_from_args(fg_train_config *c, int argc, char **argv, const char *const *extra);

/* Applies the options that have an environment override (FG_CKPT_FULL_EVERY, FG_CKPT_KEEP,
 * FG_CKPT_ASYNC, FG_CKPT_ZSTD_LEVEL, FG_CKPT_COMPRESS_FULL, FG_CKPT_WRITE_DELAY_MS,
 * FG_BLAS_THREADING; --help shows them) through the same parser as flags: a bad value is
 * FG_ERR_INVALID naming the variable. Each one applied is reported to `report` (may be
 * NULL) and in the log at INFO level; the values end up in the run's config.json. */
fg_status fg_train_config_apply_env(fg_train_config *c, FILE *report);

/* Resume check: compares the config of the run being resumed (old, from its config.json,
 * named `name` in messages) with the one asked for now, both resolved (vocab_size,
 * max_seq_len, d_ff, padded_vocab, ckpt_dir filled in). A difference in a setting that
 * changes the model, the data or the optimiser is FG_ERR_INVALID listing every such key
 * with its old and new value; a difference in a resumable one (docs/TRAINING.md: max_steps,
 * stop_after, max_seconds, min_lr, val_every, val_batches, log_every, ckpt_*, threads,
 * kernels, blas_threading) is logged to `log` (may be NULL) as "resume: max_steps 1000 -> 2000". */
fg_status fg_train_config_check_resume(const fg_train_config *old, const fg_train_config *now, const char *name,
                                       FILE *log);

/* "omp" or "blas": c->blas_threading as the kernels name it; NULL for auto. */
const char *fg_train_blas_threading_name(const fg_train_config *c);

/* Cross-field checks (needs data, model shape...). FG_ERR_INVALID naming the key. */
fg_status fg_train_config_validate(const fg_train_config *c);

/* Every option as one JSON object (fg_malloc'd text; NULL on failure). Loading it
 * back with fg_train_config_load_json_text gives the same config. */
char *fg_train_config_to_json(const fg_train_config *c);

/* One line per option: name, default, meaning, [range], (env override). */
void fg_train_config_print_help(FILE *f);

/* ---- token windows over shards ---- */
typedef struct fg_loader {
    fg_shard *shards;
    int n_shards;
    uint64_t n_windows; /* random mode: start positions summed over shards */
    int B, T;
    int sequential;
    fg_rng rng;   /* random mode */
    int shard;    /* sequential mode: current shard */
    uint64_t pos; /* sequential mode: next window start */
    /* loss-driven augmentation (fg_loader_aug_enable; NULL: off): the source of each row
     * read since fg_loader_aug_begin, so the trainer can report their losses */
    struct fg_aug_state *aug;
    float aug_progress;
    uint64_t *row_src;
    uint8_t *row_rev;
    int row_cap, n_rows;
    int32_t *aug_win; /* [T+1] */
} fg_loader;

/* Opens comma-separated shards. Each must hold at least T+1 tokens and ids below
 * vocab_limit (its header's vocab_size <= vocab_limit); messages name the file. */
fg_status fg_loader_open(fg_loader *l, const char *paths_csv, int B, int T, int sequential, uint64_t seed,
                         uint32_t vocab_limit);
/* Fills inputs[B*T] and targets[B*T] (= inputs shifted by one) with the next B windows. */
void fg_loader_next(fg_loader *l, int32_t *inputs, int32_t *targets);
/* Moves past n windows as fg_loader_next would, reading no token: a data-parallel rank
 * skips the windows of the global batch that other ranks read. */
void fg_loader_skip(fg_loader *l, uint64_t n_windows);
void fg_loader_rewind(fg_loader *l); /* sequential start, rng untouched */
void fg_loader_close(fg_loader *l);
uint64_t fg_loader_tokens(const fg_loader *l); /* tokens in all shards */
/* Loss-driven augmentation: from now on fg_loader_next draws each row from the hard pool
 * with probability cfg->rate (transformed, data.h's fg_aug_apply) and records every row's
 * source, up to max_rows rows per step. cls: a class per token id (fg_aug_token_class). */
struct fg_aug_config;
fg_status fg_loader_aug_enable(fg_loader *l, const struct fg_aug_config *cfg, const uint8_t *cls, int n_cls,
                               int max_rows);
/* A step starts: rows counted from 0, transforms scheduled at progress (0..1). */
void fg_loader_aug_begin(fg_loader *l, float progress);
/* Losses of rows [row0, row0+n) of this step (in reading order; one micro-batch: their
 * mean is the level each is judged against). */
void fg_loader_aug_report(fg_loader *l, int row0, const float *losses, int n);

/* ---- gradient accumulation ----
 * inputs/targets: [n_micro*B, T]. Zeroes the grads, then runs n_micro forward/
 * backward passes of B rows each, each backward scaled by 1/n_micro, so the grads
 * are those of the mean loss over all rows (equal token counts per micro-batch).
 * *loss = mean of the micro-batch losses. */
fg_status fg_train_grads(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int n_micro,
                         float *loss);
/* The same with every backward scaled by grad_scale / n_micro (the loss scaler's scale:
 * the grads come out multiplied by grad_scale; a power of two keeps them exact). */
fg_status fg_train_grads_scaled(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, int n_micro,
                                float grad_scale, float *loss);

/* ---- adaptive batch size (adaptive.c) ----
 * The effective batch grows by doubling grad_accum (micro-batches of B rows, so memory
 * is flat) up to batch_accum_max when the gradient noise is large against the signal:
 *   loss_var: over the last batch_check_every step losses, a least-squares line; the
 *     residual standard deviation against the drop the line predicts over the window;
 *   gns: McCandlish et al. 2018's B_simple = tr(Sigma) / |G|^2 (in rows) from the squared
 *     norms of one micro-batch's gradient (B rows) and of the step's (accum x B rows),
 *     each estimate an EMA; grow while B_simple / rows per step exceeds batch_ratio.
 * It never shrinks. The LR multiplier is (accum / grad_accum)^p, p = 0, 1/2 or 1. */
typedef enum { FG_BATCH_FIXED = 0, FG_BATCH_LOSS_VAR = 1, FG_BATCH_GNS = 2 } fg_batch_rule;
typedef enum { FG_BATCH_LR_NONE = 0, FG_BATCH_LR_SQRT = 1, FG_BATCH_LR_LINEAR = 2 } fg_batch_lr;
#define FG_ADAPT_WINDOW_MAX 1024

typedef struct fg_adapt {
    int rule, lr_scaling;
    int rows;          /* B: rows per micro-batch */
    int accum0, accum; /* micro-batches per step: at the start, now */
    int accum_max, check_every;
    double ratio, ema;
    long observed;        /* steps seen */
    long grows;           /* doublings so far */
    double ema_g2, ema_s; /* gns: EMAs of the |G|^2 and tr(Sigma) estimates */
    long ema_n;
    double b_noise; /* gns: last B_simple, rows (NAN before the first estimate) */
    double noise;   /* last decision's measure (noise / signal), NAN before one */
    int n_loss;     /* loss_var: losses in the window */
    double loss[FG_ADAPT_WINDOW_MAX];
} fg_adapt;

void fg_adapt_init(fg_adapt *a, const fg_train_config *c);
/* One step: its mean loss, and (gns) the squared norms of the first micro-batch's
 * gradient (small_sq, B rows) and the step's (big_sq, accum x B rows), both of the mean
 * loss, unscaled. Returns 1 when accum doubled: the next step uses a->accum. */
int fg_adapt_observe(fg_adapt *a, double loss, double small_sq, double big_sq);
/* The multiplier of the scheduled LR for the current accum. */
float fg_adapt_lr_mult(const fg_adapt *a);
/* Sum of squares in double (the gns small-batch norm). */
double fg_adapt_sq_norm(const float *g, size_t n);
/* The state as a JSON object (fg_malloc'd text) / back from it: a checkpoint's meta
 * keeps it so a resume continues bit for bit. `where` names the source in messages. */
char *fg_adapt_save(const fg_adapt *a);
fg_status fg_adapt_restore(fg_adapt *a, const char *json_text, const char *where);

/* ---- runs ---- */
typedef struct fg_train_result {
    long steps;                  /* optimiser steps taken in this process */
    float first_loss, last_loss; /* training loss of the first / last step */
    float first_val, last_val;   /* validation loss at the first / last evaluation (NAN: none) */
    double tokens;               /* training tokens processed */
    double flops;                /* training FLOPs (model's per-token count x tokens) */
    double train_sec, wall_sec;
    size_t ckpt_bytes;
    long skipped_steps; /* of steps, those the loss scaler skipped (inf/nan gradients) */
    float loss_scale;   /* the scaler's scale at the end (1 when loss_scale is off) */
} fg_train_result;

/* Runs a whole training job; progress lines and the cost summary go to `out`
 * (may be NULL: silent). r may be NULL. */
fg_status fg_train_run(const fg_train_config *c, FILE *out, fg_train_result *r);
/* The same as one rank of a data-parallel job: comm is the dp group (dist.h; NULL: one
 * process), its size must be c->dp. Every rank calls it; rank 0 writes the run directory
 * and gets `out`, the others pass NULL. A failing rank returns its error: the caller ends
 * the job (fg_comm_abort), since the other ranks wait in a collective. */
struct fg_comm;
fg_status fg_train_run_comm(const fg_train_config *c, struct fg_comm *comm, FILE *out, fg_train_result *r);
/* The same on a rank grid (dist.h's fg_grid; c->dp, c->tp, c->pp, c->ep its sizes): one
 * call per rank; world rank 0 writes and gets `out`. With ep > 1 the dp x ep ranks split
 * the batch and the ep group carries the experts' all-to-alls. */
struct fg_grid;
fg_status fg_train_run_grid(const fg_train_config *c, const struct fg_grid *g, FILE *out, fg_train_result *r);

/* Loads a finished run for sampling or export: <run>/config.json and the params of
 * the newest checkpoint in ckpt_dir ("" = <run>/final, else <run>/ckpt). The model
 * is created for batches of B x T. *m owned by the caller (fg_model_delete). */
fg_status fg_train_load_run(const char *run, const char *ckpt_dir, int B, int T, fg_train_config *c, fg_model **m);

/* Writes a run directory holding an existing model (config.json + final/): used by
 * `frugal convert` to import a checkpoint from elsewhere. */
fg_status fg_train_save_run(const char *run, const fg_train_config *c, fg_model *m);

/* ---- benchmark: training-step speed against this machine's sgemm ---- */
typedef struct fg_train_bench_result {
    double ms_per_step;  /* median over the timed steps */
    double tokens_per_s; /* grad_accum*B*T / median step time */
    double flops_per_token;
    double train_gflops;    /* achieved: flops_per_token * tokens_per_s */
    double sgemm_gflops;    /* best of the sgemm shapes timed in the same call */
    double bgemm_gflops;    /* best of the same shapes in fg_bgemm; 0 for an fp32 model */
    size_t n_params;        /* total */
    size_t n_active_params; /* per token (= n_params for a dense model) */
} fg_train_bench_result;

/* Times `iters` full training steps (after `warmup` untimed ones) of the config's
 * model on random tokens (vocab_size 0 means GPT-2's 50257), then fg_sgemm (and, for a
 * model whose GEMMs run below fp32, the dispatched fg_bgemm) on the model's head and
 * FFN shapes and on 1024^3; one line per measurement to out. */
fg_status fg_train_bench(const fg_train_config *c, int iters, int warmup, FILE *out, fg_train_bench_result *r);

#ifdef __cplusplus
}
#endif
#endif
