/* dp.h (private to src/train): data parallelism for the training loop: each rank's share
 * of the global batch, gradient buckets reduced while backward runs (a hook per layer),
 * ZeRO-1 (reduce-scatter, AdamW on the local shard, all-gather), the communication
 * counters. train.c calls it only when the dp communicator has more than one rank. */
#ifndef FRUGAL_TRAIN_DP_H
#define FRUGAL_TRAIN_DP_H

#include "frugal/ckpt.h"
#include "frugal/dist.h"
#include "frugal/optim.h"
#include "frugal/train.h"

typedef struct dp_stats {
    double bytes;      /* sent per rank (bandwidth-optimal count: ring all-reduce 2(p-1)/p x n) */
    double bytes_step; /* of the last step */
    double span_s;     /* first bucket started -> all reduced, summed over steps */
    double exposed_s;  /* backward finished -> all reduced: communication not hidden */
    double overlap_s;  /* first bucket started -> backward finished: communication hidden */
    double step_span_s, step_exposed_s, step_overlap_s;
    int n_buckets;
    /* compression: this rank's message, and what the dense gradient would have been;
     * payload / dense sum the steps at the target density only (after the warm-up) */
    double payload, payload_step, dense, dense_step, density_step;
    long payload_steps;
} dp_stats;

typedef struct dp dp;

/* a stretch [off, off + len) of the flat buffers */
typedef struct dp_span {
    size_t off, len;
} dp_span;
/* a flat stretch [off, off + len) stored at dst of a compact buffer (a shard) */
typedef struct dp_piece {
    size_t off, len, dst;
} dp_piece;

/* Top-k compression (off when density is 0): see dist.h's codec and docs/DIST.md. */
typedef struct dp_compress {
    float density;
    fg_topk_format fmt;
    float momentum;   /* DGC momentum correction; 0 off */
    float local_clip; /* DGC local clipping threshold (grad_clip / sqrt(p)); 0 off */
    long warmup;      /* DGC density warm-up: steps over which 25%, 6.25%, ... fall to density; 0 off */
} dp_compress;

/* spans (NULL: the whole buffer): the flat spans this rank keeps (a pipeline stage's own
 * tensors, docs/DIST.md "Memory per rank"): only they are reduced, and ZeRO-1 shards them,
 * laid end to end, over zcomm (the stage's ranks). comm: the batch group (the ranks that split the global batch's
 * micro-batches). zcomm: ZeRO-1's group, over which m, v are sharded and the grads reduce-scattered (NULL: comm; with
 * tp / pp: the whole grid, whose every rank holds part of each gradient sum). With zero, dp_optim_init initialises the
 * optimiser over this rank's shard; without, the caller initialises it over the whole buffer. */
dp *dp_new(fg_comm *comm, fg_comm *zcomm, fg_model *m, int zero, float bucket_mb, const dp_compress *cz,
           const dp_span *spans, int n_spans);
int dp_compressed(const dp *d);
/* The step about to be computed (0-based): the compression's warm-up reads it. */
void dp_set_step(dp *d, long step);
/* The density of top-k at a step: the warm-up's 0.25^(j+1) (j the warm-up stage, the
 * stages above the target sharing the warm-up steps evenly), then the target. */
double dp_density_at(const dp_compress *cz, long step);
void dp_delete(dp *d);
int dp_rank(const dp *d);
int dp_size(const dp *d);
int dp_zero(const dp *d);
/* ZeRO-1: the number of shards (ranks of the ZeRO group); 0 without zero. */
int dp_shards(const dp *d);
/* ZeRO-1: this rank's shard [*off, *off + *len) of the compact index of the kept spans
 * (the flat buffer without spans). */
void dp_shard(const dp *d, size_t *off, size_t *len);
/* ... as flat pieces, each with its place in the shard (one piece without spans). */
const dp_piece *dp_shard_pieces(const dp *d, int *n);
/* Kept spans (a pipeline stage's own tensors): the clipping norm and the inf/nan check are
 * also summed over oc (the stages), the norm leaving out the flat [ex_off, ex_off + ex_len)
 * (the tied wte's copy on the last stage; ex_len 0: none), and the shard files are named
 * by this rank's place file_rank among file_ranks (the world's: the stages' groups would
 * name theirs alike). */
void dp_set_outer(dp *d, fg_comm *oc, size_t ex_off, size_t ex_len, int file_rank, int file_ranks);
fg_status dp_optim_init(const dp *d, fg_optim *o, const fg_optim_range *ranges, int n, const fg_adamw_config *ac);

/* The rank's A/p micro-batches of the global batch (A x B windows, as one process reads
 * them): the loader moves past the other ranks' windows. */
void dp_load(dp *d, fg_loader *l, int32_t *inp, int32_t *tgt, int A, int B, int T);
/* Zeroes grads, runs the local micro-batches (each backward scaled by grad_scale / A, as
 * one process with A micro-batches), reduces the grads in buckets during the last
 * backward; *loss = mean over all A micro-batches of all ranks. Without zero the grads
 * are the sums on every rank; with zero the shard's sums are in dp_shard_grads. */
fg_status dp_grads(dp *d, fg_model *m, const int32_t *inp, const int32_t *tgt, int B, int T, int A, float grad_scale,
                   float *loss);
float *dp_shard_grads(dp *d);
/* ZeRO-1 for another driver (pp.c, with tp / pp): the model's whole flat grads, each rank's
 * partial sums, reduce-scattered over the ZeRO group in the buckets' order; afterwards
 * dp_shard_grads holds this rank's shard of the sum. Counted in the stats as dp_grads'. */
fg_status dp_scatter(dp *d);
/* Adaptive batch (gns): dp_grads also measures the squared gradient norm of rank 0's
 * first micro-batch (that micro-batch's backward then reduces nothing while it runs) and
 * hands it to every rank with the loss: dp_gns_small after dp_grads. */
void dp_set_gns(dp *d, int on);
double dp_gns_small(const dp *d);
/* Loss scaling's inf/nan check over the reduced grads (zero: the shard, agreed by all). */
fg_status dp_unscale(dp *d, float *grads, size_t n, float inv_scale, bool *found_inf);
/* ZeRO-1: the global gradient norm over the shards, and the step (AdamW on the shard
 * with the clipping factor grad_coef, params all-gathered in place). */
fg_status dp_zero_norm(dp *d, const fg_optim *o, double *norm);
fg_status dp_zero_step(dp *d, fg_optim *o, float lr, float grad_coef);
/* The pipeline balancer moved layers (docs/DIST.md "Stage balancer"), ZeRO-1 over a
 * stage's kept spans: dp_gather_moments writes the whole kept spans of m, v (fp32, flat
 * addressing; m, v zero there before) on every rank of the ZeRO group from its shards (a
 * transient of the stage's m, v, the caller's lazy buffers); dp_respan returns a dp over
 * the new spans with d's groups, counters, outer settings (ex_*: dp_set_outer's, for the
 * new spans) and shard writers, d deleted (NULL on failure: d kept). The caller then
 * re-inits the optimiser over the new shard (dp_optim_init) and fills it from m, v. */
fg_status dp_gather_moments(const dp *d, fg_optim *o, float *m, float *v);
dp *dp_respan(dp *d, float bucket_mb, const dp_span *spans, int n_spans, size_t ex_off, size_t ex_len);
/* Sums the MoE expert loads over ranks (before fg_model_post_step). */
fg_status dp_moe_loads(dp *d, fg_model *m);
/* Rank 0's stopping decision and schedule length, for everyone. */
fg_status dp_agree(dp *d, long *total, bool *last);
fg_status dp_barrier(dp *d);
const dp_stats *dp_get_stats(const dp *d);

/* Compression's error-feedback state (the residual, and the velocity of momentum
 * correction) in checkpoints: each rank writes its own in <ckpt_dir>/dgc.rank<R>/ with the
 * checkpoint policy o, at the main checkpoint's step (no-op without compression). */
fg_status dp_save_resid(dp *d, const char *ckpt_dir, long step, const fg_ckpt_opts *o);
/* --resume at `step`: when every rank 0..p-1 of this run has a file of that step, each loads
 * its own (bit-exact); when another rank count P wrote them, every rank takes the sum of
 * the P residuals (and velocities) over p (the unsent gradient is kept in total, not its
 * split over ranks); none: they start at zero. *note: a line for the log ("" if none). */
fg_status dp_load_resid(dp *d, const char *ckpt_dir, long step, char *note, size_t cap);
/* --overwrite: every rank's files under ckpt_dir (residuals, ZeRO-1 shards) go (rank 0 calls it). */
fg_status dp_remove_rank_ckpts(const char *ckpt_dir);
/* ZeRO-1 checkpoints: each rank writes its own shard of m, v (fp32) into
 * <ckpt_dir>/zero.rank<R>/ at the main checkpoint's step; rank 0's main file then holds the
 * params and meta only ("zero_shards": p). No rank ever holds the whole m, v. */
fg_status dp_save_shards(dp *d, fg_optim *o, const char *ckpt_dir, long step, const fg_ckpt_opts *co);
/* m, v: for each piece of want, its flat stretch of the whole m, v (at its dst) from the
 * shards P ranks wrote at `step` (any P, any spans: resharding on load, from each file's
 * "spans" meta; only the overlapping files are read).
 * FG_ERR_IO when one of the P files of that step is missing (a rank killed mid-write). */
fg_status dp_load_shards(const char *ckpt_dir, long step, int P, size_t n, const dp_piece *want, int nwant, float *m,
                         float *v);

#endif
