/* tp.h (private to src/train): tensor parallelism for the training loop: the model's
 * shard functions (stage_tp.c) wired to the tp communicator, and the byte count of the
 * activation sums. The gradient sum over the group is pp.c's (it drives every step of a
 * tp or pp run). docs/DIST.md "Tensor parallelism". */
#ifndef FRUGAL_TRAIN_TP_H
#define FRUGAL_TRAIN_TP_H

#include "frugal/dist.h"
#include "frugal/model.h"

typedef struct tp tp;

/* Sets m's tensor-parallel shard to this rank of comm (size > 1), with sequence
 * parallelism when seq_parallel is 1 (reduce-scatters and all-gathers of the token rows
 * over comm) or 2 (the norm outputs re-gathered in backward: fg_model_set_tp_seq). NULL + fg_error when the model
 * cannot be split (fg_model_set_tp's message). */
tp *tp_new(fg_comm *comm, fg_model *m, int seq_parallel);
/* Unsets the shard of m (when m is not NULL) and frees. */
void tp_delete(tp *t, fg_model *m);
/* Bytes this rank sent for the activation sums so far (ring all-reduce, reduce-scatter
 * and all-gather counts). */
double tp_bytes(const tp *t);
int tp_size(const tp *t);

#endif
