/* pp.h (private to src/train): pipeline parallelism for the training loop: contiguous
 * stages of layers over the pp communicator, the 1F1B micro-batch schedule with
 * non-blocking sends of activations and their gradients, the gradient sum over stages
 * (and data-parallel replicas), the measured bubble and the stage balancer. train.c
 * calls it only when the pp communicator has more than one rank. docs/DIST.md. */
#ifndef FRUGAL_TRAIN_PP_H
#define FRUGAL_TRAIN_PP_H

#include <stdbool.h>

#include "dp.h"
#include "frugal/dist.h"
#include "frugal/model.h"
#include "frugal/optim.h"

typedef struct pp_stats {
    int stages, micro;            /* p, and m micro-batches per step (this dp replica's) */
    int chunks;                   /* V model chunks per stage (interleaved 1F1B; 1: contiguous stages) */
    double bubble, bubble_theory; /* last step: measured (mean idle / wall over stages), (p-1)/(V m+p-1) */
    double bubble_sum;            /* measured bubble summed over steps (mean = / steps) */
    long steps;
    double bytes, bytes_step; /* activations + gradients sent by this rank, + the grad all-reduce model */
    double recompute_s;       /* this rank's forward recomputation, summed */
    int slots;                /* this rank's activation sets (0: it recomputes) */
    double step_compute[64];  /* last step's compute seconds of each stage (every rank has them) */
    int n_balance, n_moved;   /* balancer runs, runs that moved layers */
} pp_stats;

typedef struct pp pp;

/* comm: the pp group (stage s = its rank; size 1: one stage, for a tp-only run); dp_comm,
 * tp_comm: the data-parallel and tensor-parallel groups (NULL or size 1: none), summed
 * over after the stages (tp: grads only, every tp rank computes the same loss). The model must be fp32 and have at
 * least as many layers as stages. slow_rank / slow_ms: test hook, that pp rank spins slow_ms per layer of each forward
 * and backward (a slower machine); slow_rank < 0: off. chunks: V model chunks per rank, the
 * interleaved 1F1B schedule when > 1 (micro-batches a multiple of the stages; no balancer,
 * pp_set_bounds refuses; the chunks recompute their forward instead of keeping activation
 * sets); 1: contiguous stages. */
pp *pp_new(fg_comm *comm, fg_comm *dp_comm, fg_comm *tp_comm, fg_model *m, int B, int T, int slow_rank, float slow_ms,
           int chunks);
void pp_delete(pp *p);
int pp_rank(const pp *p);
int pp_size(const pp *p);
/* Layers [bounds[s], bounds[s+1]) run on stage s; bounds has pp_size + 1 entries. With V > 1
 * chunks: on virtual stage s (chunk s / pp_size of rank s % pp_size), V pp_size + 1 entries. */
const int *pp_bounds(const pp *p);
/* A split saved with a checkpoint (a hint: the balancer's last decision): taken when it
 * has pp_size + 1 entries that cut this model's layers into non-empty contiguous stages;
 * FG_ERR_INVALID naming the problem otherwise (the bounds then stay). Every rank must
 * pass the same bounds. */
fg_status pp_set_bounds(pp *p, const int *bounds, int n);
/* One step's gradients: the Al = A / dp micro-batches of this replica through the 1F1B
 * pipeline (each backward scaled by grad_scale / A, as one process), then the grads
 * summed over the stages, the tp shards and the dp replicas (every rank of the job holds the whole
 * sum, so every rank takes the same optimiser step), the MoE loads likewise over the
 * stages. *loss = the mean loss over all A micro-batches. */
fg_status pp_grads(pp *p, fg_model *m, const int32_t *inp, const int32_t *tgt, int B, int T, int Al, int A,
                   float grad_scale, float *loss);
/* Stage 0's stopping decision and schedule length, for every stage. */
fg_status pp_agree(pp *p, long *total, bool *last);
fg_status pp_barrier(pp *p);
/* The balancer: from the stages' compute time per layer since the last call (each
 * stage's slowest replica), moves layers from slow stages to fast ones when that shortens
 * the slowest stage by more than 5%. Same decision on every rank of the job (from the
 * same gathered times). *moved: 1 when
 * the bounds changed. msg (may be NULL): one line saying what it saw and did. */
fg_status pp_balance(pp *p, int *moved, char *msg, size_t msg_len);
/* Stage-owned memory under ZeRO-1 (docs/DIST.md "Stage balancer"): a move gathers each
 * stage's m, v whole on its ranks from the old shards (dp_gather_moments) and sends the
 * moved layers' with their params; after pp_balance moved, the caller takes that transient
 * (fp32, flat addressing, fg_calloc_lazy: fg_free_lazy it; NULL when nothing moved), re-cuts
 * the shards over pp_own_spans (dp_respan, dp_optim_init into the same fg_optim) and hands
 * the new dp over with pp_set_zero. */
void pp_take_moments(pp *p, float **m, float **v);
const pp_stats *pp_get_stats(const pp *p);
/* ZeRO-1 over the whole grid (d made with the grid's communicator as its ZeRO group):
 * pp_grads then leaves the grads unsummed and has d reduce-scatter them over every rank
 * (dp_scatter), so each rank receives only its shard's sums; the loss is summed as before. */
struct dp;
void pp_set_zero(pp *p, struct dp *d);

/* Stage-owned memory (docs/DIST.md "Memory per rank"): this rank keeps only its stage's
 * tensors (its layers; the embedding on stage 0, the final norm and head on the last, a
 * tied wte on both) in the params, grads and m, v: the other pages of these lazy buffers
 * are released and never touched again; the grads are summed per owned span (no sum over
 * the stages). pp_own_begin first (before dp_new: pp_own_spans are the spans ZeRO-1 over the
 * stage shards), then pp_own_enable with the optimiser once the params are initialised or
 * loaded: without ZeRO-1 o's m, v follow the stage and the step goes through pp_norm /
 * pp_step; with it (pp_set_zero first) dp.c keeps the stage's shard. A no-op (every stage
 * keeps everything, as before) with one stage, FFN sharing or multi-token prediction
 * (weights tied across layers). */
fg_status pp_own_begin(pp *p);
fg_status pp_own_enable(pp *p, struct fg_optim *o);
const dp_span *pp_own_spans(const pp *p, int *n);
/* fg_model_init_weights for a rank of pp_comm that will keep only its stage's tensors
 * (owned: pp_own_begin will be called): the same values, written only into the tensors of
 * its stage under pp_new's even split; everything else as fg_model_init_weights. */
void pp_init_weights(fg_comm *pp_comm, int chunks, int owned, fg_model *m, uint64_t seed);
/* the flat stretch the clipping norm leaves out on this stage: the tied wte's second copy
 * (the last stage's); *len 0: none */
void pp_norm_skip(const pp *p, size_t *off, size_t *len);
int pp_own(const pp *p);
/* the floats of the tensors this rank keeps (the whole model's without stage-owned memory) */
size_t pp_kept(const pp *p);
/* Releases the pages this stage does not own (after the initial split's init, or a split changed at resume). */
void pp_release(pp *p);
/* Checkpoints, final/ and best/ without the whole model on rank 0 (docs/DIST.md "Memory per
 * rank"): rank 0 writes one process's file (fg_ckpt_writer_save_stream) while the other
 * stages of its pipeline stream their tensors to it in pieces of PP_SCHUNK bytes, which it
 * writes and drops. pp_lead_pipe: this rank is in rank 0's pipeline (replica 0, tp rank 0)
 * with stage-owned memory on; pp_stream_tensors: the file's tensors (3: params, adam.m,
 * adam.v as fp32; 1: params, ZeRO-1's m, v being in the shard files). Every member calls
 * pp_stream_begin(nt), rank 0 hands pp_stream_fill (ctx p) to the writer, then every
 * member calls pp_stream_end: the others send there; rank 0 drains what its writer did
 * not ask for (a failed open). */
#define PP_SCHUNK ((size_t)1 << 20)
int pp_lead_pipe(const pp *p);
int pp_stream_tensors(const pp *p);
fg_status pp_stream_begin(pp *p, int nt);
fg_status pp_stream_fill(void *ctx, int k, size_t off, void *buf, size_t bytes);
fg_status pp_stream_end(pp *p);
/* Validation through the pipeline (members of a pipeline, every stage): one batch's
 * forward, each stage its layers, the residual stream sent on as in training; *loss is the
 * last stage's, sent to stage 0 (valid there). */
int pp_val_member(const pp *p); /* replica 0's pipeline, every tp rank */
fg_status pp_eval(pp *p, fg_model *m, const int32_t *inp, const int32_t *tgt, int B, int T, float *loss);
/* stage 0's *flag to every stage */
fg_status pp_bcast_flag(pp *p, int *flag);
/* With pp_own: loss scaling's check, the clipping norm (the stages' owned squared norms
 * summed, the tied wte once) and the AdamW step over the stage's spans. */
fg_status pp_unscale(pp *p, float inv_scale, bool *found_inf);
fg_status pp_norm(pp *p, double *norm);
void pp_step(pp *p, float lr, float grad_coef);
/* Bytes of params + grads (+ m, v when they follow the stage, not under ZeRO-1): this
 * stage's share (owned), the pages resident now (resident; 0 when pp_own is off) and the
 * whole model's (whole). */
void pp_memory(const pp *p, size_t *owned, size_t *resident, size_t *whole);

#endif
