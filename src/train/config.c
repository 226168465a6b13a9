/* config.c: the training options as one option table (core's opts.h: name, type, field,
 * range, help, environment override) that serves flags, JSON files, validation, help,
 * the config.json written into each run and the resume check. Flat: one object of keys. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/opts.h"
#include "frugal/precision.h"
#include "frugal/train.h"

/* A row whose value may differ when a run is resumed (docs/TRAINING.md lists them): the
 * caller's bit in fg_opt.flags. Every other row changes the model, the data or the
 * optimiser state's meaning, and a resume with a new value is refused. */
#define RESUMABLE 0x10000u

static const char *const layout_names[] = {"llama", "gpt2", NULL};
static const char *const balance_names[] = {"bias", "none", "seqaux", "switch", NULL};
static const char *const blas_names[] = {"auto", "omp", "blas", NULL};
static const char *const moe_par_names[] = {"auto", "experts", "gemm", NULL};
static const char *const loss_scale_names[] = {"off", "dynamic", NULL};
static const char *const precision_names[] = {"fp32", "bf16", "fp8", NULL};
static const char *const fp8_format_names[] = {"e4m3", "hybrid", NULL};
static const char *const moments_names[] = {"fp32", "bf16", NULL}; /* fg_adam_moments order */
static const char *const qat_act_names[] = {"token", "tensor", NULL};
static const char *const qat_quant_names[] = {"ste", "lsq", NULL};
static const char *const ffn_share_names[] = {"none", "plain", "seed", NULL};     /* fg_ffn_share order */
static const char *const batch_rule_names[] = {"fixed", "loss_var", "gns", NULL}; /* fg_batch_rule order */
static const char *const batch_lr_names[] = {"none", "sqrt", "linear", NULL};     /* fg_batch_lr order */

_Static_assert(sizeof(fg_layout) == sizeof(int) && sizeof(fg_balance) == sizeof(int) &&
                   sizeof(fg_moe_par) == sizeof(int) && sizeof(fg_precision) == sizeof(int) &&
                   sizeof(fg_fp8_recipe) == sizeof(int) && sizeof(fg_ffn_share) == sizeof(int),
               "enums are stored as int");

/* A layout brings its own tying default; the other model fields stay. */
static fg_status layout_defaults(void *obj, const char *where)
{
    fg_train_config *c = obj;
    fg_model_config d;
    fg_model_config_default(&d, c->model.layout);
    c->model.tie_embeddings = d.tie_embeddings;
    return FG_OK;
}

#define F(field) FG_OPT_FIELD(fg_train_config, field)
#define BIG 1e18
static const fg_opt opts[] = {
    /* model */
    {"layout", FG_OPT_ENUM, F(model.layout), .choices = layout_names, .after_set = layout_defaults,
     .flags = FG_OPT_FIRST, .help = "llama (RMSNorm, RoPE, SwiGLU) or gpt2 (LayerNorm, GELU)"},
    {"vocab_size", FG_OPT_INT, F(model.vocab_size), 0, 1 << 24, .help = "V; 0 = from the tokenizer or shards"},
    {"padded_vocab", FG_OPT_INT, F(model.padded_vocab), 0, 1 << 24, .help = "Vp >= V; 0 = V rounded up to 64"},
    {"max_seq_len", FG_OPT_INT, F(model.max_seq_len), 0, 1 << 20, .help = "maxT; 0 = seq_len"},
    {"n_layer", FG_OPT_INT, F(model.n_layer), 1, 1024, .help = "transformer blocks L"},
    {"n_head", FG_OPT_INT, F(model.n_head), 1, 1024, .help = "attention heads NH"},
    {"d_model", FG_OPT_INT, F(model.d_model), 1, 1 << 16, .help = "width C"},
    {"d_ff", FG_OPT_INT, F(model.d_ff), 0, 1 << 20, .help = "dense FFN hidden size; 0 = layout default"},
    {"norm_eps", FG_OPT_FLOAT, F(model.norm_eps), 0, 1, 1, .help = "norm epsilon"},
    {"rope_theta", FG_OPT_FLOAT, F(model.rope_theta), 0, 1e9, 1, .help = "RoPE base"},
    {"tie_embeddings", FG_OPT_BOOL, F(model.tie_embeddings), .help = "head shares wte"},
    {"precision", FG_OPT_ENUM, F(model.precision), .choices = precision_names,
     .help = "fp32; bf16 (bf16 GEMMs, fp32 accumulation and master weights, bf16 saved activations); fp8 (as bf16, "
             "GEMM inputs and saved activations in fp8 with 1x128 / 128x128 scales)"},
    {"fp8_format", FG_OPT_ENUM, F(model.fp8_format), .choices = fp8_format_names,
     .help = "precision fp8: e4m3 everywhere (DeepSeek-V3), or hybrid (e5m2 activation gradients)"},
    {"qat_layers", FG_OPT_STR, F(model.qat_layers),
     .help = "int8 QAT: comma list of qkv, attproj, fc, fcproj, head, expert_fc, expert_proj, shared_fc, "
             "shared_proj, experts (the last four), or all (all but head); empty = off"},
    {"qat_act", FG_OPT_ENUM, F(model.qat_act), .choices = qat_act_names,
     .help = "int8 QAT activation ranges from each batch: per token or per tensor"},
    {"qat_quant", FG_OPT_ENUM, F(model.qat_lsq), .choices = qat_quant_names,
     .help = "int8 QAT weight steps: ste (max|w|/127 per channel, straight-through) or lsq (that times a learned "
             "per-channel factor, LSQ gradient)"},
    /* cross-layer FFN sharing (src/model/share.c, docs/MODEL.md) */
    {"ffn_share", FG_OPT_ENUM, F(model.ffn_share), .choices = ffn_share_names,
     .help = "FFN sharing in groups of consecutive layers: none; plain (ALBERT, one FFN per group); seed "
             "(W_l = a W_{l-1} + (1-a) U_l V_l^T, rank ffn_share_rank)"},
    {"ffn_share_group", FG_OPT_INT, F(model.ffn_share_group), 1, 4096,
     .help = "G consecutive layers of one kind (dense / MoE) per sharing group"},
    {"ffn_share_alpha", FG_OPT_FLOAT, F(model.ffn_share_alpha), 0, 1, .help = "seed: a (start value when learned)"},
    {"ffn_share_learn_alpha", FG_OPT_BOOL, F(model.ffn_share_learn_alpha),
     .help = "seed: a is a trained parameter per derived layer"},
    {"ffn_share_rank", FG_OPT_INT, F(model.ffn_share_rank), 1, 4096, .help = "seed: rank r of the new component"},
    /* multi-token prediction (src/model/mtp.c, docs/MODEL.md) */
    {"mtp_depth", FG_OPT_INT, F(model.mtp_depth), 0, 16,
     .help = "multi-token prediction modules D (DeepSeek-V3; training only); 0 = off"},
    {"mtp_lambda", FG_OPT_FLOAT, F(model.mtp_lambda), 0, 1e3, .help = "weight of the MTP modules' mean loss"},
    /* multi-head latent attention (docs/MODEL.md "Multi-head latent attention") */
    {"mla_kv_rank", FG_OPT_INT, F(model.mla_kv_rank), 0, 1 << 20,
     .help = "MLA: latent width d_c of keys and values (the KV cache keeps it per token); 0 = plain attention"},
    {"mla_q_rank", FG_OPT_INT, F(model.mla_q_rank), 0, 1 << 20,
     .help = "MLA: latent width d_c' of the queries; 0 = full-rank queries"},
    {"mla_rope_dim", FG_OPT_INT, F(model.mla_rope_dim), 0, 4096,
     .help = "MLA: decoupled RoPE key size d_h^R, shared by the heads (llama; even); 0 = head size / 2 (gpt2: 0)"},
    {"mla_latent_norm", FG_OPT_BOOL, F(model.mla_latent_norm),
     .help = "MLA: norm the latents (DeepSeek's form); false = no norms, scaled init (trains better here)"},
    /* MoE: the flat keys are the fields of fg_moe_config, embedded as model.moe */
    {"n_expert", FG_OPT_INT, F(model.moe.n_expert), 0, 4096, .help = "routed experts per MoE layer; 0 = dense"},
    {"n_expert_active", FG_OPT_INT, F(model.moe.n_expert_active), 0, FG_MOE_MAX_K,
     .help = "K routed experts per token (<= n_expert)"},
    {"n_shared_expert", FG_OPT_INT, F(model.moe.n_shared_expert), 0, 64, .help = "always-on experts"},
    {"d_expert", FG_OPT_INT, F(model.moe.d_expert), 0, 1 << 20, .help = "expert hidden size"},
    {"n_dense_layers", FG_OPT_INT, F(model.moe.n_dense_layers), 0, 1024, .help = "first layers kept dense"},
    {"route_scale", FG_OPT_FLOAT, F(model.moe.route_scale), 0, 1e3, 1, .help = "scale on normalised gates"},
    {"balance", FG_OPT_ENUM, F(model.moe.balance), .choices = balance_names, .help = "expert load balancing"},
    {"balance_gamma", FG_OPT_FLOAT, F(model.moe.balance_gamma), 0, 10, .help = "router bias update speed"},
    {"balance_gain", FG_OPT_FLOAT, F(model.moe.balance_gain), 0, 10,
     .help = "proportional router bias gain; 0 = sign only"},
    {"router_logit_scale", FG_OPT_FLOAT, F(model.moe.router_logit_scale), 1e-6, 1e3, .help = "scale on router logits"},
    {"router_lr_scale", FG_OPT_FLOAT, F(model.moe.router_lr_scale), 0, 1e3, 1, .help = "router weights' lr multiplier"},
    {"balance_window", FG_OPT_INT, F(model.moe.balance_window), 1, 1 << 20, .help = "steps of load history"},
    {"balance_alpha", FG_OPT_FLOAT, F(model.moe.balance_alpha), 0, 10, .help = "aux balance loss weight"},
    {"capacity_factor", FG_OPT_FLOAT, F(model.moe.capacity_factor), 0, 1e3, .help = "expert capacity; 0 = unlimited"},
    {"route_groups", FG_OPT_INT, F(model.moe.route_groups), 0, FG_MOE_MAX_GROUPS,
     .help = "node-limited routing: expert groups (consecutive experts); 0 = off"},
    {"route_max_groups", FG_OPT_INT, F(model.moe.route_max_groups), 0, FG_MOE_MAX_GROUPS,
     .help = "node-limited routing: groups a token's experts may come from"},
    {"moe_parallel", FG_OPT_ENUM, F(model.moe.parallel), .choices = moe_par_names, .env = "FG_MOE_PAR",
     .flags = RESUMABLE, .help = "MoE experts on threads side by side, or threaded GEMMs one after another"},
    /* data */
    {"data", FG_OPT_STR, F(data), .help = "raw text file to tokenise and split"},
    {"train_shards", FG_OPT_STR, F(train_shards), .help = "comma-separated token shards (instead of data)"},
    {"val_shards", FG_OPT_STR, F(val_shards), .help = "comma-separated validation shards"},
    {"tokenizer", FG_OPT_STR, F(tokenizer), .help = "byte, or a tokenizer.json / GPT-2 directory"},
    {"val_frac", FG_OPT_FLOAT, F(val_frac), 0, 0.9, 1, .help = "tail share of the text held out for validation"},
    {"sequential", FG_OPT_BOOL, F(sequential), .help = "consecutive windows instead of random ones"},
    {"synth_path", FG_OPT_STR, F(synth_path),
     .help = "synthetic text (`frugal synth --out`) mixed into the training part of data (docs/TRAINING.md)"},
    {"synth_ratio", FG_OPT_FLOAT, F(synth_ratio), 0, 0.99,
     .help = "share of the training tokens taken from synth_path (repeated if short); validation stays real"},
    /* batch */
    {"batch_size", FG_OPT_INT, F(batch_size), 1, 1 << 16, .help = "B, sequences per micro-batch"},
    {"seq_len", FG_OPT_INT, F(seq_len), 1, 1 << 20, .help = "T, tokens per sequence"},
    {"grad_accum", FG_OPT_INT, F(grad_accum), 1, 1 << 16, .help = "micro-batches per optimiser step"},
    {"max_steps", FG_OPT_LONG, F(max_steps), 1, BIG, .flags = RESUMABLE, .help = "optimiser steps"},
    {"stop_after", FG_OPT_LONG, F(stop_after), 0, BIG, .flags = RESUMABLE,
     .help = "stop after this step (schedule still spans max_steps); 0 = off"},
    {"max_seconds", FG_OPT_DOUBLE, F(max_seconds), 0, BIG, .flags = RESUMABLE,
     .help = "training-time budget: the LR schedule is shortened to fit it; 0 = none"},
    /* optimiser */
    {"lr", FG_OPT_FLOAT, F(lr), 0, 10, 1, .help = "peak learning rate"},
    {"min_lr", FG_OPT_FLOAT, F(min_lr), 0, 10, .flags = RESUMABLE, .help = "learning rate at the end of the cosine"},
    {"warmup_steps", FG_OPT_LONG, F(warmup_steps), 0, BIG, .help = "linear warmup steps"},
    {"weight_decay", FG_OPT_FLOAT, F(weight_decay), 0, 10, .help = "AdamW decay (not on norms, biases, embeddings)"},
    {"decay_all", FG_OPT_BOOL, F(decay_all), .help = "decay norms, biases and embeddings too"},
    {"beta1", FG_OPT_FLOAT, F(beta1), 0, 0.999999, .help = "AdamW beta1"},
    {"beta2", FG_OPT_FLOAT, F(beta2), 0, 0.999999, .help = "AdamW beta2"},
    {"eps", FG_OPT_FLOAT, F(eps), 0, 1, 1, .help = "AdamW epsilon"},
    {"grad_clip", FG_OPT_FLOAT, F(grad_clip), 0, 1e6, .help = "global gradient-norm clip; 0 = off"},
    {"adam_moments", FG_OPT_ENUM, F(adam_moments), .choices = moments_names,
     .help = "storage of AdamW's m and v: fp32, or bf16 (half the state bytes; docs/PRECISION.md)"},
    /* evaluation, logging */
    {"val_every", FG_OPT_INT, F(val_every), 0, 1 << 30, .flags = RESUMABLE,
     .help = "steps between validations; 0 = only at the end"},
    {"val_batches", FG_OPT_INT, F(val_batches), 1, 1 << 20, .flags = RESUMABLE, .help = "micro-batches per validation"},
    {"log_every", FG_OPT_INT, F(log_every), 1, 1 << 30, .flags = RESUMABLE, .help = "steps between printed lines"},
    /* run */
    {"out", FG_OPT_STR, F(out), .flags = RESUMABLE, .help = "run directory"},
    {"ckpt_dir", FG_OPT_STR, F(ckpt_dir), .flags = RESUMABLE, .help = "checkpoint directory; empty = <out>/ckpt"},
    {"ckpt_every", FG_OPT_INT, F(ckpt_every), 0, 1 << 30, .flags = RESUMABLE,
     .help = "steps between checkpoints; 0 = none"},
    {"resume", FG_OPT_BOOL, F(resume), .flags = RESUMABLE, .help = "continue from the latest checkpoint"},
    /* read only when a run starts (a resume continues from its own checkpoint) */
    {"init_from", FG_OPT_STR, F(init_from), .flags = RESUMABLE,
     .help = "fine-tune: start from the params of this checkpoint directory (e.g. RUN/final of an imported model)"},
    {"overwrite", FG_OPT_BOOL, F(overwrite), .flags = RESUMABLE, .help = "reuse an out dir that already holds a run"},
    {"seed", FG_OPT_U64, F(seed), 0, 9.0e18, .help = "RNG seed (init, data order)"},
    /* checkpoint policy (ckpt.h fg_ckpt_opts); the environment variables are overrides for
     * tests and benchmarks, parsed here like flags */
    {"ckpt_full_every", FG_OPT_INT, F(ckpt_full_every), 1, 1 << 20, .env = "FG_CKPT_FULL_EVERY", .flags = RESUMABLE,
     .help = "a full checkpoint every N saves, deltas between (1 = always full)"},
    {"ckpt_keep", FG_OPT_INT, F(ckpt_keep), 0, 1 << 20, .env = "FG_CKPT_KEEP", .flags = RESUMABLE,
     .help = "full checkpoints kept with their deltas; 0 = all"},
    {"ckpt_async", FG_OPT_BOOL, F(ckpt_async), .env = "FG_CKPT_ASYNC", .flags = RESUMABLE,
     .help = "write checkpoints from a background thread"},
    {"ckpt_zstd_level", FG_OPT_INT, F(ckpt_zstd_level), 1, 19, .env = "FG_CKPT_ZSTD_LEVEL", .flags = RESUMABLE,
     .help = "zstd level of delta (and compressed full) checkpoints"},
    {"ckpt_compress_full", FG_OPT_BOOL, F(ckpt_compress_full), .env = "FG_CKPT_COMPRESS_FULL", .flags = RESUMABLE,
     .help = "byte-shuffle + zstd full checkpoints instead of raw"},
    {"ckpt_write_delay_ms", FG_OPT_INT, F(ckpt_write_delay_ms), 0, 60000, .env = "FG_CKPT_WRITE_DELAY_MS",
     .flags = RESUMABLE, .help = "test hook: pause after each tensor written"},
    /* machine */
    {"threads", FG_OPT_INT, F(threads), 0, 4096, .flags = RESUMABLE, .help = "threads; 0 = all cores"},
    {"kernels", FG_OPT_STR, F(kernels), .flags = RESUMABLE,
     .help = "kernel variants: auto, ref, ...; empty = $FG_KERNELS or auto"},
    {"blas_threading", FG_OPT_ENUM, F(blas_threading), .choices = blas_names, .flags = RESUMABLE,
     .help = "GEMM threads: omp (kernels split GEMMs over OpenMP) or blas (OpenBLAS's own); auto = "
             "$FG_BLAS_THREADING or omp"},
    /* run length and what is kept */
    {"max_epochs", FG_OPT_DOUBLE, F(max_epochs), 0, 1e6, .flags = RESUMABLE,
     .help = "caps max_steps at this many passes over the train tokens; 0 = off"},
    {"keep_best", FG_OPT_BOOL, F(keep_best), .flags = RESUMABLE,
     .help = "keep the params of the best validation loss in <out>/best"},
    /* dynamic loss scaling: the scaler's state is in each checkpoint, so its settings
     * are fixed for the run (a resume continues the same scale sequence bit for bit) */
    {"loss_scale", FG_OPT_ENUM, F(loss_scale), .choices = loss_scale_names,
     .help = "loss scaling: off, or dynamic (scale the loss, skip steps with inf/nan gradients)"},
    {"loss_scale_init", FG_OPT_FLOAT, F(loss_scale_init), 0, 1e30, 1, .help = "first loss scale (dynamic)"},
    {"loss_scale_growth_interval", FG_OPT_INT, F(loss_scale_growth_interval), 1, 1 << 30,
     .help = "clean steps before the loss scale doubles"},
    {"loss_scale_hysteresis", FG_OPT_INT, F(loss_scale_hysteresis), 1, 1 << 20,
     .help = "overflowing steps before the loss scale halves (1: PyTorch, 2: Megatron)"},
    {"inject_overflow_step", FG_OPT_LONG, F(inject_overflow_step), 0, BIG, .flags = RESUMABLE,
     .help = "test hook: put an inf into the gradients of this step; 0 = off"},
    /* data parallelism: the same training at any rank count, so all three may change on
     * resume (a ZeRO-1 checkpoint holds the whole m, v: it reshards on load) */
    {"dp", FG_OPT_INT, F(dp), 1, 1 << 16, .flags = RESUMABLE,
     .help = "data-parallel ranks (run under mpirun -np DP); grad_accum must be a multiple"},
    {"zero", FG_OPT_BOOL, F(zero), .flags = RESUMABLE,
     .help = "ZeRO-1: shard Adam's m and v over the dp ranks (with tp / pp: every rank)"},
    {"ep", FG_OPT_INT, F(ep), 1, 1 << 16, .flags = RESUMABLE,
     .help = "expert-parallel ranks (MoE; mpirun -np DP*EP): experts spread over them, tokens by all-to-all"},
    {"ep_place", FG_OPT_BOOL, F(ep_place), .flags = RESUMABLE,
     .help = "re-place experts over the ep ranks by load at each checkpoint boundary"},
    {"ep_spill", FG_OPT_BOOL, F(ep_spill), .flags = RESUMABLE,
     .help = "expert parallel: rows of an overloaded rank's experts computed by the least loaded rank"},
    {"bucket_mb", FG_OPT_FLOAT, F(bucket_mb), 1e-4, 1e4, .flags = RESUMABLE,
     .help = "gradient bucket (MiB) reduced while backward goes on"},
    {"compress", FG_OPT_FLOAT, F(compress), 0, 1, .flags = RESUMABLE,
     .help = "top-k gradient compression: density kept (0.05 = 5%, down to 0.001); 0 = off"},
    {"compress_delta", FG_OPT_BOOL, F(compress_delta), .flags = RESUMABLE,
     .help = "compressed indices as varint gaps (else uint32)"},
    {"compress_bf16", FG_OPT_BOOL, F(compress_bf16), .flags = RESUMABLE,
     .help = "compressed values in bf16 (else fp32)"},
    {"compress_momentum", FG_OPT_FLOAT, F(compress_momentum), 0, 0.999, .flags = RESUMABLE,
     .help = "DGC momentum correction factor; 0 = off"},
    {"compress_clip", FG_OPT_BOOL, F(compress_clip), .flags = RESUMABLE,
     .help = "DGC local clipping at grad_clip / sqrt(dp)"},
    {"compress_warmup", FG_OPT_LONG, F(compress_warmup), 0, BIG, .flags = RESUMABLE,
     .help = "DGC warm-up: over these first steps the density falls 25%, 6.25%, ... to compress; 0 = off"},
    {"comm_timeout", FG_OPT_DOUBLE, F(comm_timeout), 0, 1e6, .flags = RESUMABLE,
     .help = "watchdog: seconds a collective may wait before the job ends naming the rank that hangs; 0 = off"},
    {"hang_rank", FG_OPT_INT, F(hang_rank), -1, 1 << 16, .flags = RESUMABLE,
     .help = "test hook: this rank sleeps (alive, silent) from step hang_step on; -1 = off"},
    {"hang_step", FG_OPT_LONG, F(hang_step), 0, BIG, .flags = RESUMABLE, .help = "test hook: see hang_rank"},
    /* ---- adaptive batch size (adaptive.c; issue 17) ---- */
    {"batch_rule", FG_OPT_ENUM, F(batch_rule), .choices = batch_rule_names,
     .help = "adaptive batch: fixed; loss_var (loss noise against its trend); gns (gradient noise scale)"},
    {"batch_accum_max", FG_OPT_INT, F(batch_accum_max), 0, 1 << 16,
     .help = "adaptive batch: most micro-batches per step grad_accum may double to; 0 = grad_accum"},
    {"batch_check_every", FG_OPT_INT, F(batch_check_every), 1, 1024,
     .help = "adaptive batch: steps between decisions (loss_var: the window)"},
    {"batch_ratio", FG_OPT_FLOAT, F(batch_ratio), 0, 1e6,
     .help = "adaptive batch: the batch doubles while the rule's noise / signal exceeds this"},
    {"batch_ema", FG_OPT_FLOAT, F(batch_ema), 0, 0.9999, .help = "adaptive batch (gns): EMA decay of the estimates"},
    {"batch_lr_scaling", FG_OPT_ENUM, F(batch_lr_scaling), .choices = batch_lr_names,
     .help = "adaptive batch: LR x (accum / grad_accum)^p, p = 0, 1/2, 1"},
    /* ---- loss-driven augmentation (data.h's fg_aug_*; issue 17) ---- */
    {"aug", FG_OPT_BOOL, F(aug), .help = "loss-driven augmentation: hard windows revisited, transformed"},
    {"aug_frac", FG_OPT_FLOAT, F(aug_frac), 0, 1, 1, .help = "augmentation: hard = loss in this top share"},
    {"aug_rate", FG_OPT_FLOAT, F(aug_rate), 0, 1, .help = "augmentation: share of rows drawn from the hard pool"},
    {"aug_pool", FG_OPT_INT, F(aug_pool), 1, 1 << 20, .help = "augmentation: hard windows kept"},
    {"aug_visits", FG_OPT_INT, F(aug_visits), 1, 1 << 20, .help = "augmentation: revisits before one leaves the pool"},
    {"aug_drop", FG_OPT_FLOAT, F(aug_drop), 0, 1, .help = "augmentation (word): token dropout rate; 0 = off"},
    {"aug_swap", FG_OPT_FLOAT, F(aug_swap), 0, 1, .help = "augmentation (word): adjacent word swap rate; 0 = off"},
    {"aug_mask", FG_OPT_FLOAT, F(aug_mask), 0, 1, .help = "augmentation (word): share of tokens span-masked; 0 = off"},
    {"aug_span", FG_OPT_INT, F(aug_span), 1, 1 << 10, .help = "augmentation (word): tokens per masked span"},
    {"aug_syntax_start", FG_OPT_FLOAT, F(aug_syntax_start), 0, 1,
     .help = "augmentation: training progress where sentence/clause reordering starts"},
    {"aug_syntax_end", FG_OPT_FLOAT, F(aug_syntax_end), 0, 1,
     .help = "augmentation: progress from which only sentence/clause reordering is used"},
    {"aug_mask_token", FG_OPT_INT, F(aug_mask_token), -1, 1 << 24,
     .help = "augmentation: the blanking token id; -1 = end-of-text if the tokenizer has one, else 0"},
    /* pipeline parallelism: any stage count gives the same training, so all resumable */
    {"pp", FG_OPT_INT, F(pp), 1, 64, .flags = RESUMABLE,
     .help = "pipeline stages (run under mpirun -np DP*PP); at most n_layer, fp32 only"},
    {"pp_chunks", FG_OPT_INT, F(pp_chunks), 1, 16, .flags = RESUMABLE,
     .help = "model chunks per pipeline rank (interleaved 1F1B); 1 = contiguous stages"},
    {"pp_balance", FG_OPT_BOOL, F(pp_balance), .flags = RESUMABLE,
     .help = "move layers from slow pipeline stages to fast ones at each checkpoint boundary"},
    {"pp_slow_rank", FG_OPT_INT, F(pp_slow_rank), -1, 63, .flags = RESUMABLE,
     .help = "test hook: this pipeline stage spins pp_slow_ms per layer per pass (a slower machine); -1 off"},
    {"pp_slow_ms", FG_OPT_FLOAT, F(pp_slow_ms), 0, 1e6, .flags = RESUMABLE,
     .help = "the slowed stage's delay per layer per forward or backward, ms"},
    {"tp", FG_OPT_INT, F(tp), 1, 64, .flags = RESUMABLE,
     .help = "tensor-parallel ranks (run under mpirun -np DP*TP*PP); dense fp32 models"},
    {"tp_sp", FG_OPT_BOOL, F(tp_sp), .flags = RESUMABLE,
     .help = "sequence parallelism with tp: norms and residuals on each tp rank's 1/tp of the tokens"},
    {"tp_sp_regather", FG_OPT_BOOL, F(tp_sp_regather), .flags = RESUMABLE,
     .help = "with tp_sp: keep the norm outputs as rows too, all-gathered again in backward (less memory, more "
             "bytes)"},
};
#define N_OPTS FG_OPT_COUNT(opts)

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
    c->dp = 1;
    c->ep = 1;
    c->ep_place = 1;
    c->ep_spill = 1;
    c->pp = 1;
    c->tp = 1;
    c->pp_slow_rank = -1;
    c->pp_chunks = 1;
    c->bucket_mb = 25.0f; /* PyTorch DDP's bucket_cap_mb */
    c->compress_delta = 1;
    c->compress_clip = 1;
    c->hang_rank = -1;
    c->ckpt_full_every = 10;
    c->ckpt_keep = 2;
    c->ckpt_async = 1;
    c->ckpt_zstd_level = 1;
    c->ckpt_compress_full = 0;
    c->ckpt_write_delay_ms = 0;
    c->keep_best = 1;
    c->loss_scale = 0; /* off: fp32 gradients neither overflow nor underflow at any sane scale */
    fg_loss_scaler_config ls = fg_loss_scaler_config_default(); /* the scaler's own defaults */
    c->loss_scale_init = ls.init_scale;
    c->loss_scale_growth_interval = ls.growth_interval;
    c->loss_scale_hysteresis = ls.hysteresis;
    c->batch_rule = FG_BATCH_FIXED;
    c->batch_check_every = 50;
    c->batch_ratio = 1.0f;
    c->batch_ema = 0.95f;
    c->batch_lr_scaling = FG_BATCH_LR_SQRT;
    c->aug_frac = 0.2f;
    c->aug_rate = 0.25f;
    c->aug_pool = 256;
    c->aug_visits = 4;
    c->aug_drop = 0.1f;
    c->aug_swap = 0.1f;
    c->aug_mask = 0.15f;
    c->aug_span = 3;
    c->aug_syntax_start = 0.3f;
    c->aug_syntax_end = 0.8f;
    c->aug_mask_token = -1;
    c->blas_threading = 0; /* auto: the kernels read FG_BLAS_THREADING (their one parser) or use omp */
}

int fg_train_config_key_is_flag(const char *key)
{
    const fg_opt *o = fg_opts_find(opts, N_OPTS, key);
    return o && o->type == FG_OPT_BOOL;
}

fg_status fg_train_config_set(fg_train_config *c, const char *key, const char *value, const char *where)
{
    const fg_opt *o = fg_opts_find(opts, N_OPTS, key);
    if (!o)
        return fg_error(FG_ERR_INVALID, "%s: unknown key '%s' (frugal train --help lists them)", where, key);
    return fg_opt_set(o, c, value, where);
}

fg_status fg_train_config_load_json_text(fg_train_config *c, const char *text, const char *name)
{
    return fg_opts_load_json_text(opts, N_OPTS, c, text, name, 0);
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

fg_status fg_train_config_apply_env(fg_train_config *c, FILE *report)
{
    return fg_opts_apply_env(opts, N_OPTS, c, report);
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
    if ((c->synth_ratio > 0) != (c->synth_path[0] != '\0') || (c->synth_path[0] && !has_data))
        return fg_error(FG_ERR_INVALID, "'synth_path' and 'synth_ratio' > 0 go together, with 'data' (raw text)");
    if (!c->out[0])
        return fg_error(FG_ERR_INVALID, "'out' (the run directory) is empty");
    if (c->min_lr > c->lr)
        return fg_error(FG_ERR_INVALID, "'min_lr' %g is above 'lr' %g", c->min_lr, c->lr);
    if (c->model.max_seq_len > 0 && c->seq_len > c->model.max_seq_len)
        return fg_error(FG_ERR_INVALID, "'seq_len' %d exceeds 'max_seq_len' %d", c->seq_len, c->model.max_seq_len);
    if (c->compress > 0 && c->compress < 0.001f)
        return fg_error(FG_ERR_INVALID, "'compress' %g: the density goes down to 0.001 (0 = off)", c->compress);
    if ((c->pp > 1 || c->tp > 1) && c->compress > 0)
        return fg_error(FG_ERR_INVALID,
                        "'%s' %d with 'compress': not built (pipeline stages and tensor shards sum whole "
                        "gradients)",
                        c->pp > 1 ? "pp" : "tp", c->pp > 1 ? c->pp : c->tp);
    if ((c->pp > 1 || c->tp > 1) && c->model.precision != FG_PRECISION_FP32)
        return fg_error(FG_ERR_INVALID, "'%s' %d: pipeline stages and tensor shards run fp32 models only",
                        c->pp > 1 ? "pp" : "tp", c->pp > 1 ? c->pp : c->tp);
    if (c->pp_slow_rank >= c->pp)
        return fg_error(FG_ERR_INVALID, "'pp_slow_rank' %d: the pipeline has stages 0..%d", c->pp_slow_rank, c->pp - 1);
    if ((c->pp > 1 || c->tp > 1) && c->model.mtp_depth > 0)
        return fg_error(FG_ERR_INVALID,
                        "'%s' %d with 'mtp_depth' %d: not built (the MTP modules run on the whole model)",
                        c->pp > 1 ? "pp" : "tp", c->pp > 1 ? c->pp : c->tp, c->model.mtp_depth);
    /* the levers that landed beside pipeline / tensor parallelism and do not yet run with
     * them: MLA keeps its own per-layer saved activations (no pipeline activation sets, no
     * tp shard), the adaptive batch and augmentation need every micro-batch's loss on one
     * rank */
    if ((c->pp > 1 || c->tp > 1) && (c->model.mla_kv_rank > 0 || c->batch_rule != FG_BATCH_FIXED || c->aug))
        return fg_error(FG_ERR_INVALID, "'%s' %d with %s: not built", c->pp > 1 ? "pp" : "tp",
                        c->pp > 1 ? c->pp : c->tp,
                        c->model.mla_kv_rank > 0          ? "'mla_kv_rank' (multi-head latent attention)"
                        : c->batch_rule != FG_BATCH_FIXED ? "an adaptive 'batch_rule'"
                                                          : "'aug' (loss-driven augmentation)");
    if (c->pp > c->model.n_layer)
        return fg_error(FG_ERR_INVALID, "'pp' %d exceeds 'n_layer' %d (a stage holds at least one layer)", c->pp,
                        c->model.n_layer);
    if (c->pp_chunks > 1) {
        /* the interleaved schedule (docs/DIST.md "Interleaved schedule"): micro-batches run
         * through the chunks in groups of pp, as Megatron-LM requires */
        int per = c->grad_accum / (c->dp * c->ep);
        if (c->pp < 2)
            return fg_error(FG_ERR_INVALID, "'pp_chunks' %d needs 'pp' >= 2 (it interleaves pipeline stages)",
                            c->pp_chunks);
        if (c->pp * c->pp_chunks > c->model.n_layer)
            return fg_error(FG_ERR_INVALID,
                            "'pp' %d x 'pp_chunks' %d exceeds 'n_layer' %d (a chunk holds at least one layer)", c->pp,
                            c->pp_chunks, c->model.n_layer);
        if (per < 1 || per % c->pp != 0 || c->grad_accum % (c->dp * c->ep) != 0)
            return fg_error(FG_ERR_INVALID,
                            "'pp_chunks' %d: the interleaved schedule needs the micro-batches per replica "
                            "('grad_accum' %d / ('dp' %d x 'ep' %d)) to be a multiple of 'pp' %d",
                            c->pp_chunks, c->grad_accum, c->dp, c->ep, c->pp);
        if (c->pp_balance)
            return fg_error(FG_ERR_INVALID,
                            "'pp_chunks' %d with 'pp_balance': not built (the balancer moves the "
                            "bounds of contiguous stages)",
                            c->pp_chunks);
        if (c->tp > 1)
            return fg_error(FG_ERR_INVALID, "'pp_chunks' %d with 'tp' %d: not built", c->pp_chunks, c->tp);
    }
    if (c->tp_sp_regather && !c->tp_sp)
        return fg_error(FG_ERR_INVALID, "'tp_sp_regather' goes with 'tp_sp' (sequence parallelism)");
    if (c->tp_sp && c->tp < 2)
        return fg_error(FG_ERR_INVALID, "'tp_sp' (sequence parallelism) needs 'tp' >= 2 (it splits over the tp ranks)");
    if (c->tp_sp && c->ep > 1)
        return fg_error(FG_ERR_INVALID,
                        "'tp_sp' with 'ep' %d: not built (the expert exchange sends every tp rank's whole tokens)",
                        c->ep);
    if (c->tp_sp && ((long)c->batch_size * c->seq_len) % c->tp != 0)
        return fg_error(
            FG_ERR_INVALID,
            "'tp_sp': a micro-batch's 'batch_size' %d x 'seq_len' %d tokens do not split evenly over 'tp' %d",
            c->batch_size, c->seq_len, c->tp);
    if (c->grad_accum % c->dp != 0)
        return fg_error(FG_ERR_INVALID,
                        "'grad_accum' %d is not a multiple of 'dp' %d (each rank takes grad_accum / dp "
                        "micro-batches of the same global batch)",
                        c->grad_accum, c->dp);
    if (c->batch_rule == FG_BATCH_GNS && c->grad_accum < 2)
        return fg_error(FG_ERR_INVALID, "'batch_rule' gns needs 'grad_accum' >= 2 (it compares the first "
                                        "micro-batch's gradient with the step's)");
    if (c->batch_rule != FG_BATCH_FIXED && c->batch_accum_max > 0 && c->batch_accum_max < c->grad_accum)
        return fg_error(FG_ERR_INVALID, "'batch_accum_max' %d is below 'grad_accum' %d", c->batch_accum_max,
                        c->grad_accum);
    if (c->aug && c->dp > 1)
        return fg_error(FG_ERR_INVALID, "'aug' with 'dp' %d: not built (the hard-window pool is one process's)", c->dp);
    if (c->aug && c->aug_syntax_end < c->aug_syntax_start)
        return fg_error(FG_ERR_INVALID, "'aug_syntax_end' %g is before 'aug_syntax_start' %g", c->aug_syntax_end,
                        c->aug_syntax_start);
    if (c->ep > 1 && c->grad_accum % (c->dp * c->ep) != 0)
        return fg_error(FG_ERR_INVALID,
                        "'grad_accum' %d is not a multiple of 'dp' x 'ep' = %d (the ep ranks take micro-batches "
                        "of the batch too)",
                        c->grad_accum, c->dp * c->ep);
    if (c->ep > 1 && c->model.moe.n_expert < c->ep)
        return fg_error(FG_ERR_INVALID, "'ep' %d needs a MoE model with at least as many experts ('n_expert' %d)",
                        c->ep, c->model.moe.n_expert);
    if (c->model.d_model % c->model.n_head != 0)
        return fg_error(FG_ERR_INVALID, "'d_model' %d is not a multiple of 'n_head' %d", c->model.d_model,
                        c->model.n_head);
    return FG_OK;
}

char *fg_train_config_to_json(const fg_train_config *c)
{
    return fg_opts_to_json(opts, N_OPTS, c);
}

const char *fg_train_blas_threading_name(const fg_train_config *c)
{
    return c->blas_threading == 2 ? "blas" : c->blas_threading == 1 ? "omp" : NULL;
}

void fg_train_config_print_help(FILE *f)
{
    fg_train_config d;
    fg_train_config_default(&d);
    fprintf(f, "options (flags --name VALUE or --name=VALUE; JSON keys in --config FILE; [range], (env override)):\n");
    fg_opts_print_help(f, opts, N_OPTS, &d);
}

fg_status fg_train_config_from_args(fg_train_config *c, int argc, char **argv, const char *const *extra)
{
    /* --config first, wherever it stands, so that flags override the file */
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
    /* then the environment overrides (validated, reported), then the flags */
    fg_status st = fg_train_config_apply_env(c, NULL);
    if (st != FG_OK)
        return st;
    /* --config and the caller's extra options take a value this table does not keep */
    char skipped[FG_TRAIN_PATH_MAX], names[16][64];
    fg_opt side[17] = {{"config", FG_OPT_STR, 0, sizeof skipped, .help = "JSON file of options"}};
    int n_side = 1;
    for (int i = 0; extra && extra[i] && n_side < FG_OPT_COUNT(side); i++) {
        char *k = names[n_side - 1]; /* keys are spelled with '_' in tables */
        snprintf(k, sizeof names[0], "%s", extra[i]);
        for (char *p = k; *p; p++)
            *p = *p == '-' ? '_' : *p;
        side[n_side++] = (fg_opt){.name = k, .type = FG_OPT_STR, .size = sizeof skipped};
    }
    fg_opt_table tables[2] = {{opts, N_OPTS, c}, {side, n_side, skipped}};
    fg_opt_args a = {0};
    return fg_opts_parse_args(tables, 2, argc, argv, &a);
}

/* Appends "key old -> new" to buf (", "-separated). */
static void add_change(char *buf, size_t cap, const fg_opt *o, const void *old, const void *now)
{
    char a[96], b[96];
    size_t len = strlen(buf);
    if (len + 4 >= cap)
        return;
    snprintf(buf + len, cap - len, "%s%s %s -> %s", len ? ", " : "", o->name, fg_opt_format(o, old, a, sizeof a),
             fg_opt_format(o, now, b, sizeof b));
}

fg_status fg_train_config_check_resume(const fg_train_config *old, const fg_train_config *now, const char *name,
                                       FILE *log)
{
    char refused[768] = "";
    int n_refused = 0;
    for (int i = 0; i < N_OPTS; i++) {
        const fg_opt *o = &opts[i];
        if (fg_opt_equal(o, old, now))
            continue;
        if (!(o->flags & RESUMABLE)) {
            add_change(refused, sizeof refused, o, old, now);
            n_refused++;
        } else if (log && strcmp(o->name, "resume") && strcmp(o->name, "overwrite") && strcmp(o->name, "out")) {
            char a[96], b[96];
            fprintf(log, "resume: %s %s -> %s\n", o->name, fg_opt_format(o, old, a, sizeof a),
                    fg_opt_format(o, now, b, sizeof b));
        }
    }
    if (n_refused)
        return fg_error(FG_ERR_INVALID,
                        "--resume: %d setting%s differ%s from the run in %s, and change the model, the data or the "
                        "optimiser: %s (resume without them, or start a new run with another --out)",
                        n_refused, n_refused > 1 ? "s" : "", n_refused > 1 ? "" : "s", name, refused);
    return FG_OK;
}
