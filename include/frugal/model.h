/* model.h: decoder-only transformer (llama or gpt2 layout, dense or MoE FFN) with
 * explicit forward and backward, all parameters in one flat fp32 buffer.
 *
 * Usage:
 *   fg_model_config cfg; fg_model_config_default(&cfg, FG_LAYOUT_LLAMA);
 *   cfg.n_layer = 4; ...
 *   fg_model *m = fg_model_new(&cfg, B, T);       // NULL + fg_last_error() on failure
 *   fg_model_init_weights(m, seed);
 *   fg_model_zero_grad(m);
 *   fg_model_forward(m, inputs, targets, B, T, &loss);
 *   fg_model_backward(m, 1.0f);                    // grads += d(mean loss)/d(params)
 *   ... optimiser on fg_model_params(m) / fg_model_grads(m) ...
 *   fg_model_post_step(m);                         // e.g. MoE router bias update
 * Params, grads: one contiguous buffer each, same layout; tensors are named views
 * into it (fg_model_tensor). Activations are sized once from (B, T) at creation;
 * forward/backward never allocate. Calls with smaller B or T than at creation work.
 */
#ifndef FRUGAL_MODEL_H
#define FRUGAL_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Written to checkpoints: append-only. */
typedef enum fg_layout {
    FG_LAYOUT_LLAMA = 0, /* RMSNorm, RoPE, SwiGLU, no biases, untied head */
    FG_LAYOUT_GPT2 = 1,  /* LayerNorm, learned positions, GELU, biases, tied embeddings */
} fg_layout;

typedef enum fg_balance {
    FG_BALANCE_BIAS = 0,   /* history-aware per-expert bias, no aux loss (DeepSeek-V3) */
    FG_BALANCE_NONE = 1,   /* plain top-K */
    FG_BALANCE_SEQAUX = 2, /* sequence-wise auxiliary balance loss, weight alpha */
    FG_BALANCE_SWITCH = 3, /* classic Switch-Transformer aux loss, weight alpha */
} fg_balance;

/* Largest top-K the MoE block supports (per-token gate gradients live on the stack): the
 * one bound of n_expert_active, used by the option table and fg_moe_config_validate. */
#define FG_MOE_MAX_K 64
/* Most expert groups node-limited routing takes (group scores live on the stack). */
#define FG_MOE_MAX_GROUPS 256

/* How a MoE layer spreads its experts over the threads (an execution choice: results are
 * the same up to fp32 rounding). */
typedef enum fg_moe_par {
    FG_MOE_PAR_AUTO = 0,    /* experts side by side unless GEMMs use the BLAS's own threads */
    FG_MOE_PAR_EXPERTS = 1, /* one expert per thread */
    FG_MOE_PAR_GEMM = 2,    /* experts one after another, each GEMM over the threads */
} fg_moe_par;

/* The MoE FFN settings (moe.h has the block). Embedded in fg_model_config as .moe; the
 * flat config keys (n_expert, n_expert_active, ...) are these field names. */
typedef struct fg_moe_config {
    int n_expert;             /* E routed experts per MoE layer (0 in a model config: dense) */
    int n_expert_active;      /* K routed experts per token, 1..min(E, FG_MOE_MAX_K) */
    int n_shared_expert;      /* S always-on experts (one dense SwiGLU of S*H) */
    int d_expert;             /* H: hidden size of one expert (SwiGLU) */
    int n_dense_layers;       /* the first D layers of a model keep a dense FFN */
    float route_scale;        /* K > 1: gates = route_scale * a_i / sum of the K chosen a_j; K = 1: route_scale * a (a
                                 normalised top-1 gate is constant and gives the router no gradient) */
    fg_balance balance;       /* BIAS, NONE, SEQAUX or SWITCH */
    float balance_gamma;      /* bias step per optimizer step (BIAS, sign rule) */
    float balance_gain;       /* bias step per unit of relative load error (BIAS; 0 = sign rule only) */
    float router_logit_scale; /* router logits s = scale * x W_r^T (1: plain; < 1 slows the router under Adam) */
    float router_lr_scale;    /* the router weights' learning rate is lr * this (1 = plain) */
    int balance_window;       /* W: steps of load history the bias update sums */
    float balance_alpha;      /* aux-loss weight (SEQAUX, SWITCH) */
    float capacity_factor;    /* 0: no limit; else cap = ceil(cf * tokens * K / E) per expert */
    fg_moe_par parallel;      /* execution only: experts side by side or threaded GEMMs */
    /* node-limited routing (DeepSeek-V3): the E experts form route_groups groups of E/G
     * consecutive experts (a node's, or an ep rank's, under contiguous placement); a
     * token's K experts come from its route_max_groups best groups. 0: off. */
    int route_groups;
    int route_max_groups;
    /* C, the width: not a setting. fg_model_new sets it from the model's d_model; a block
     * built alone (tests, benchmarks) sets it itself. */
    int d_model;
} fg_moe_config;

/* Arithmetic of the linear layers and storage of the activations saved for backward
 * (docs/PRECISION.md "bf16 training", "fp8 training"). Written to run configs: append-only. */
typedef enum fg_precision {
    FG_PRECISION_FP32 = 0, /* everything fp32 */
    FG_PRECISION_BF16 = 1, /* GEMMs on bf16 operands (fp32 accumulation, fp32 master weights), saved activations bf16 */
    FG_PRECISION_FP8 = 2,  /* as bf16, with GEMM inputs and saved activations in fp8 (1x128 / 128x128 scaling) */
} fg_precision;

/* Which fp8 format each tensor class uses under FG_PRECISION_FP8. Append-only. */
typedef enum fg_fp8_recipe {
    FG_FP8_RECIPE_E4M3 = 0,   /* e4m3 everywhere (DeepSeek-V3) */
    FG_FP8_RECIPE_HYBRID = 1, /* e4m3 weights and activations, e5m2 activation gradients (Transformer Engine) */
} fg_fp8_recipe;

/* Cross-layer FFN sharing (src/model/share.c, docs/MODEL.md). Written to run configs: append-only. */
typedef enum fg_ffn_share {
    FG_SHARE_NONE = 0,  /* every layer has its own FFN */
    FG_SHARE_PLAIN = 1, /* ALBERT: the layers of a group use the group's first FFN (a = 1) */
    FG_SHARE_SEED = 2,  /* W_{l} = a W_{l-1} + (1 - a) U_l V_l^T inside a group, rank-r U, V */
} fg_ffn_share;

typedef struct fg_model_config {
    fg_layout layout;
    int vocab_size;           /* V: real tokens */
    int padded_vocab;         /* Vp >= V (rows of wte/head); 0 = round V up to a multiple of 64 */
    int max_seq_len;          /* maxT */
    int n_layer;              /* L */
    int n_head;               /* NH; head size HS = d_model / n_head */
    int d_model;              /* C */
    int d_ff;                 /* dense FFN hidden size; 0 = 4C (gpt2) or multiple-of-64 near 8C/3 (llama) */
    float norm_eps;           /* 1e-5 */
    float rope_theta;         /* 10000 */
    int tie_embeddings;       /* head uses wte (gpt2 default 1, llama default 0) */
    fg_moe_config moe;        /* MoE FFN (moe.n_expert == 0: dense everywhere); the block's config, embedded */
    fg_precision precision;   /* FP32 (default), BF16 or FP8 */
    fg_fp8_recipe fp8_format; /* FP8 only (E4M3 default; HYBRID needs precision FP8) */
    /* int8 quantization-aware training (src/model/qat.c, docs/PRECISION.md "int8"): ""
     * off, or a comma list of qkv, attproj, fc, fcproj, head, expert_fc, expert_proj,
     * shared_fc, shared_proj ("experts" = the last four; "all" = all but the head; the
     * head stays fp32 unless named, the MoE router always) */
    char qat_layers[48];
    int qat_act; /* QAT activation ranges from each batch: 0 per token, 1 per tensor */
    /* QAT weight step sizes: 0 (ste) max|w|/127 per output channel; 1 (lsq) that times a
     * learned exp(p) per channel, p a parameter with LSQ's gradient (docs/PRECISION.md) */
    int qat_lsq;
    /* cross-layer FFN sharing (share.c): groups of ffn_share_group consecutive layers of
     * the same kind (dense or MoE); each layer after a group's first derives its FFN
     * matrices (dense, or every expert and the shared expert) from the layer before */
    fg_ffn_share ffn_share;    /* NONE (default), PLAIN or SEED */
    int ffn_share_group;       /* G >= 1 (1: nothing shared) */
    float ffn_share_alpha;     /* SEED: a in [0, 1] (the start value when learned) */
    int ffn_share_learn_alpha; /* SEED: 1 = a is a parameter per derived layer */
    int ffn_share_rank;        /* SEED: r of the new component U V^T */
    /* multi-token prediction (mtp.c, DeepSeek-V3): mtp_depth sequential modules after the
     * last layer, module k predicting token t+k+1; training only (generation skips them) */
    int mtp_depth;    /* D (0 = off) */
    float mtp_lambda; /* weight of the mean of the D modules' losses in the trained objective */
    /* multi-head latent attention (src/model/mla.c, docs/MODEL.md "MLA"; DeepSeek-V2/V3):
     * keys and values from one latent of mla_kv_rank values per token (0: plain
     * attention), queries through a latent of mla_q_rank (0: a full-rank query), and a
     * decoupled RoPE key of mla_rope_dim values shared by the heads (llama only; 0 = HS/2;
     * gpt2 must leave it 0: its positions are learned). Needs precision fp32. */
    int mla_kv_rank;
    int mla_q_rank;
    int mla_rope_dim;
    /* 1: the layout's norm after each latent (DeepSeek-V2/V3's form, gains from sqrt(C/r));
     * 0 (default): no latent norms, the down-projections initialised at 1/sqrt(C) and the
     * up-projections at 0.02 sqrt(C/r) (docs/perf/mla.md: within 0.25% of plain attention
     * at 1/4 of the cache, where the normed form lost 2-4%) */
    int mla_latent_norm;
} fg_model_config;

/* Defaults for a layout (a tiny model: L=4, C=128, NH=4, V=256, maxT=256). */
void fg_model_config_default(fg_model_config *cfg, fg_layout layout);
/* FG_OK, or FG_ERR_INVALID with a message naming the field and value. */
fg_status fg_model_config_validate(const fg_model_config *cfg);

typedef struct fg_tensor_info {
    char name[64]; /* "wte", "h.3.attn.qkv.weight", ... */
    size_t offset; /* in floats, into params / grads */
    size_t numel;
    int ndim;
    int shape[4];
    int no_decay; /* 1 for norms, biases, embeddings, router biases */
    /* 1: state kept in the flat buffer (so checkpoints carry it) but never touched by
     * the optimiser or clipping, e.g. MoE router bias and load history; grads stay 0. */
    int frozen;
    float lr_scale; /* the optimiser's lr multiplier for this tensor: 1, router weights router_lr_scale */
} fg_tensor_info;

typedef struct fg_model fg_model;

/* Allocates params, grads and activations for batches up to B x T (T <= maxT).
 * Weights are zero until fg_model_init_weights or a load. NULL on failure. */
fg_model *fg_model_new(const fg_model_config *cfg, int B, int T);
void fg_model_delete(fg_model *m);

const fg_model_config *fg_model_get_config(const fg_model *m);
size_t fg_model_num_params(const fg_model *m);        /* total parameters */
size_t fg_model_num_active_params(const fg_model *m); /* used per token (MoE: K of N experts) */
float *fg_model_params(fg_model *m);
float *fg_model_grads(fg_model *m);
/* bf16 precision: the bf16 copy of the params, [n_params] (NULL for fp32 and fp8, whose
 * copy goes through fp8 blocks at each forward), marked current: the caller writes bf16(params) into all of it before
 * the next forward, which then skips its own conversion (the optimiser's fused step does both). */
uint16_t *fg_model_bf16_weights(fg_model *m);
int fg_model_num_tensors(const fg_model *m);
const fg_tensor_info *fg_model_tensor(const fg_model *m, int i);
const fg_tensor_info *fg_model_find_tensor(const fg_model *m, const char *name); /* NULL if absent */

/* GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2L),
 * norms 1, biases 0. Deterministic for a seed. */
void fg_model_init_weights(fg_model *m, uint64_t seed);
/* The same values, written only into the tensors keep(ctx, t) holds for (every tensor's
 * random numbers are still drawn, so a kept tensor gets one process's values): a pipeline
 * stage initialises its own tensors and never touches the other pages of the lazy params
 * buffer (docs/DIST.md "Memory per rank"). The MoE / MLA rescaling passes after it touch
 * their tensors in every layer (the caller releases them). keep NULL: every tensor. */
void fg_model_init_weights_keep(fg_model *m, uint64_t seed, int (*keep)(void *ctx, const fg_tensor_info *t), void *ctx);

/* inputs, targets: [B,T] token ids (targets may be NULL: logits only; target < 0
 * ignored). *loss = mean over counted targets (plus aux losses, if enabled). */
fg_status fg_model_forward(fg_model *m, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss);
/* Backpropagates the last forward: grads += loss_scale * d(loss)/d(params). */
fg_status fg_model_backward(fg_model *m, float loss_scale);
void fg_model_zero_grad(fg_model *m);
/* Called by fg_model_backward after layer l's backward (l = n_layer-1 down to 0): the
 * grads of "h.<l>.*" tensors and of ln_f / lm_head are final for this backward (wte, wpe
 * only once backward returns). Data-parallel training starts reducing them there. NULL:
 * none (the default). */
typedef void (*fg_model_grad_hook)(void *ctx, int layer);
void fg_model_set_grad_hook(fg_model *m, fg_model_grad_hook fn, void *ctx);
/* ---- pipeline stages (stage.c; docs/DIST.md "Pipeline parallelism") ----
 * Forward over layers [l0, l1) on the residual stream [B*T, C]: l0 == 0 starts from the
 * embedding of inputs (x unused), l0 > 0 from x (the previous stage's output); l1 ==
 * n_layer ends with the final norm, head and the mean loss over targets, l1 < n_layer
 * copies the stream after layer l1-1 into y. *loss (may be NULL): the last stage's loss
 * plus the MoE balance losses of these layers, 0 + those for the others, so the stages'
 * sum is fg_model_forward's loss. Same results as the whole model's forward for those
 * layers; fp32 models only (FG_ERR_INVALID for bf16 / fp8). */
fg_status fg_model_forward_range(fg_model *m, int l0, int l1, const int32_t *inputs, const int32_t *targets,
                                 const float *x, int B, int T, float *y, float *loss);
/* Backpropagates the last fg_model_forward_range over these layers (same l0, l1 and x;
 * forwards of disjoint ranges may run in between, as in an interleaved pipeline): l1 == n_layer
 * starts from the loss (d = loss_scale x d(loss)), l1 < n_layer from dy = d/dy (already
 * scaled); l0 > 0 writes dx = d/dx, l0 == 0 ends in the embedding. Grads accumulate;
 * loss_scale also scales the MoE balance losses of these layers. */
fg_status fg_model_backward_range(fg_model *m, int l0, int l1, const float *x, const float *dy, float *dx,
                                  float loss_scale);
/* Activation slots for a pipeline stage running n micro-batches in flight (1F1B): n - 1
 * more sets of layers [l0, l1)'s saved activations (and of the embedding output and the
 * tokens), so a micro-batch's backward finds its own forward's activations without
 * running it again. fg_model_stage_slot(m, k) makes set k (0 <= k < n; 0: the model's own)
 * the one the next fg_model_forward_range / _backward_range use. n <= 1 frees them.
 * FG_ERR_INVALID for a range holding a MoE layer (its caches are not duplicated: such a
 * stage recomputes the forward instead). */
fg_status fg_model_stage_slots(fg_model *m, int l0, int l1, int n);
void fg_model_stage_slot(fg_model *m, int k);
/* Tensor parallelism (stage_tp.c, Megatron-LM style; docs/DIST.md "Tensor parallelism"):
 * with rank r of size > 1 set, fg_model_forward_range / _backward_range compute this
 * rank's shard: heads [r NH/size, ...) of attention, FFN columns [r F/size, ...) (first
 * GEMM by columns, second by rows), vocabulary rows [r Vp/size, ...) of the embedding
 * and the head with the cross-entropy over the split vocabulary. fn sums (max = 0) or
 * maxes (max = 1) n floats in place over the group; every rank of the group makes the
 * same calls in the same order. Grads: each rank's shard of the split tensors, and on
 * rank 0 only the replicated ones (norms, row-parallel biases, positions), so the sum
 * over the group is the whole gradient. fg_model_forward (the whole model) ignores it.
 * MoE layers: every expert's hidden units [r H/size, ...) (and the shared experts'),
 * the router whole on every rank. fp32 models without QAT whose n_head, FFN width,
 * padded_vocab (and d_expert) divide by size; size 1 or fn NULL: off. */
typedef fg_status (*fg_model_tp_reduce)(void *ctx, float *buf, size_t n, int max);
fg_status fg_model_set_tp(fg_model *m, int rank, int size, fg_model_tp_reduce fn, void *ctx);
/* Sequence parallelism (Korthikanti et al. 2022) on top of the tp shard set above: the
 * regions outside the split GEMMs (norms, residual adds, biases, the embedding's output)
 * keep and compute only this rank's rows [r N/size, (r+1) N/size) of the B*T tokens.
 * The residual stream x / y / dy / dx of fg_model_forward_range / _backward_range is
 * then that [N/size, C] slice. fn(ctx, buf, n, gather): gather 0, reduce-scatter: buf
 * [size n] summed over the group, this rank's block of n written to out; gather 1,
 * all-gather in place: rank r's n floats at buf + r n go to every rank (out unused).
 * Grads: the norms' are each rank's partial sums (the sum over the group is the whole
 * gradient, as for the split tensors). fn NULL: off. FG_ERR_INVALID without tp. The norm
 * outputs (the column-parallel GEMMs' inputs) are kept gathered, so the bytes moved are
 * the all-reduces'; regather: kept as rows only and all-gathered again in backward for
 * the weight gradients (Megatron-LM's choice: 2 [N, C] less kept per layer, 2 more
 * all-gathers per layer backward). */
typedef fg_status (*fg_model_tp_seq_fn)(void *ctx, float *buf, float *out, size_t n, int gather);
fg_status fg_model_set_tp_seq(fg_model *m, fg_model_tp_seq_fn fn, int regather);
/* The number of parts of the residual stream per rank: the tp size with sequence
 * parallelism on, else 1 (pipeline stages send B*T*C / this floats). */
int fg_model_tp_seq_split(const fg_model *m);
/* Bytes of one activation set's replicated-region tensors (per layer the two residuals
 * and the norms' statistics, the embedding output, the final norm's statistics; all the
 * model's layers, of which a pipeline stage has its own) that sequence parallelism does
 * not keep on this rank: (1 - 1/size) of them; 0 when off. */
double fg_model_tp_seq_saved(const fg_model *m);
/* With tp set: the largest resident size (bytes of touched pages) of the fp32 activation
 * buffer seen after a range backward, a measure of what this rank's shard keeps (the
 * whole-model forward of validation touches the rest: a run without it shows the shard's). */
size_t fg_model_tp_act_resident(const fg_model *m);
/* After each optimizer step (MoE: router bias update from load history). */
void fg_model_post_step(fg_model *m);
/* Layer l's expert loads counted since the last fg_model_post_step ([n_expert] floats,
 * *n set), NULL for a dense layer: data-parallel ranks sum them before post_step. */
float *fg_model_moe_step_load(fg_model *m, int l, int *n);
/* Router statistics of the last forward, over all MoE layers (all zero for dense). */
typedef struct fg_moe_stats {
    float load_max_over_mean; /* max over experts and layers of load / mean load */
    float load_cv;            /* mean over layers of the coefficient of variation of loads */
    float active_frac;        /* routed-expert parameters used per token / all routed ones */
    long dropped_tokens;      /* token-expert assignments dropped by the capacity limit */
    float aux_loss;           /* auxiliary balance loss included in the last loss (0 if none) */
} fg_moe_stats;
void fg_model_moe_stats(const fg_model *m, fg_moe_stats *s);
/* Prints a per-layer table of expert loads accumulated since creation (MoE only). */
void fg_model_moe_print_loads(const fg_model *m, FILE *f);
/* Which experts each token of the last forward chose in layer l: topk[t*K + k] for
 * t < *n_tok (the row-major B x T tokens), k < *k. NULL (and 0s) for a dense layer or
 * before any forward. Read-only, valid until the next forward; for diagnostics. */
const int32_t *fg_model_moe_routes(const fg_model *m, int l, int *n_tok, int *k);

/* Multi-token prediction (cfg.mtp_depth > 0): the mean over the D modules of their
 * cross-entropy in the last forward with targets (0 when off). fg_model_forward's *loss
 * stays the next-token loss (+ MoE aux), comparable with a model without MTP; backward
 * differentiates loss + mtp_lambda * this. */
float fg_model_mtp_loss(const fg_model *m);

/* Logits of the last forward: [B,T,Vp]. NULL for a bf16 or fp8 model, which keeps no
 * logits (its head runs in row chunks and saves only the bf16/fp8 gradient of the loss;
 * a forward without targets skips the head there). */
const float *fg_model_logits(const fg_model *m);

/* Activation memory of the model at its capacity (B, T) and precision: `saved` is what
 * the forward writes for the backward to read (per-layer caches, final norm, the logits
 * or their saved gradient, MoE caches); `scratch` is the working memory reused by every
 * layer (fp32 buffers of forward and backward, bf16 GEMM operands, fp8 quantization
 * codes, head chunk). Master weights, gradients, their bf16 copy and the optimiser are
 * not counted. Both are allocated once by fg_model_new: their sum is the peak. */
typedef struct fg_model_act_bytes {
    size_t saved;
    size_t scratch;
} fg_model_act_bytes;
/* Returns saved + scratch; fills *parts when not NULL. */
size_t fg_model_activation_bytes(const fg_model *m, fg_model_act_bytes *parts);

/* Training FLOPs per token for sequence length T (6 N_active + attention 6 L T C,
 * llm.c's convention: forward + backward, multiply-add = 2). */
double fg_model_flops_per_token(const fg_model *m, int T);

/* Bytes the generation KV cache holds per token over all layers (fp32 values):
 * 4 * 2 L C for plain attention (k and v), 4 L (mla_kv_rank + mla_rope_dim) with MLA
 * (the normed latent and the rotated shared RoPE key). */
size_t fg_model_kv_bytes_per_token(const fg_model *m);

/* Per-op profile (benchmarks): on != 0 resets the counters and times every op of the
 * following forward/backward calls (wall time around each kernel call); 0 stops and
 * keeps the counts for fg_model_profile_print. */
void fg_model_profile(fg_model *m, int on);
/* Prints per-op ms per forward / backward call and each op's share of the total. */
void fg_model_profile_print(const fg_model *m, FILE *f);

/* ---- generation with a KV cache ---- */
typedef struct fg_sampler {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    fg_rng rng;
} fg_sampler;

/* Appends up to n_new tokens after prompt[0..n_prompt) into out (out[0..n_prompt)
 * copies the prompt); stops early at token `stop` (>= 0) or at maxT. Returns the
 * number of tokens in out, or a negative fg_status. Uses its own KV cache, so it
 * does not disturb training activations. */
int fg_model_generate(fg_model *m, const int32_t *prompt, int n_prompt, int n_new, int stop, fg_sampler *s,
                      int32_t *out);

/* Greedy speculative decoding with the first multi-token prediction module as the draft
 * (src/model/mtp.c; needs cfg.mtp_depth >= 1): per step the module drafts token n+1 from
 * the main model's state at n-1 and token n, and one main-model pass over tokens n and
 * the draft checks it. The output is greedy decoding's (fg_model_generate at temperature
 * 0, up to fp32 rounding of the two-row GEMMs). Same contract as fg_model_generate; the
 * prompt goes token by token. Uses and overwrites the model's KV cache. */
typedef struct fg_spec_stats {
    long drafted;     /* draft tokens checked */
    long accepted;    /* of them, equal to the main model's greedy token */
    long main_passes; /* two-token verification passes */
} fg_spec_stats;
int fg_model_generate_spec(fg_model *m, const int32_t *prompt, int n_prompt, int n_new, int stop, int32_t *out,
                           fg_spec_stats *stats);

/* ---- int8 inference (src/model/int8.c; docs/FORMATS.md "int8 weights") ----
 * fg_model_int8_save quantizes the weights of the linear layers named by `layers` (the
 * qat_layers syntax; NULL or "" = "all": every linear layer but the head, routed
 * experts per expert) per output channel
 * (max|w|/127, the QAT rule) and writes codes + fp32 scales to path.
 * fg_model_int8_load reads such a file into m: from then on every forward of m
 * (generation included) runs those layers on the int8 GEMM with per-token dynamic
 * activation quantization. A file whose tensors are not m's, whose shapes differ, whose
 * scales are not finite and > 0, or whose checksum fails is refused naming the file and
 * the tensor; m is then unchanged. */
fg_status fg_model_int8_save(const fg_model *m, const char *layers, const char *path);
fg_status fg_model_int8_load(fg_model *m, const char *path);

/* One step of KV-cache decoding (what fg_model_generate runs): feeds `token` at
 * position pos (0 <= pos < maxT) through every layer, storing its keys/values in the
 * cache, and points *logits at its next-token logits [Vp] (valid until the next call).
 * Positions 0..pos-1 must have been fed since the last pos 0. */
fg_status fg_model_decode_step(fg_model *m, int32_t token, int pos, const float **logits);

/* ---- interop with llm.c's GPT-2 checkpoint (v3, fp32) ---- */
/* Creates a gpt2-layout model (B, T as for fg_model_new) from an llm.c file. */
fg_model *fg_model_load_llmc(const char *path, int B, int T);
fg_status fg_model_save_llmc(const fg_model *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
