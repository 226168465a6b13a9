/* dist.h: communicators for distributed training: the fg_comm interface (collectives,
 * point-to-point, barrier, abort; blocking and non-blocking) with an MPI implementation
 * and a single-process one, and the rank grid (dp x tp x pp x ep, one communicator per
 * group). src/dist is the only code that includes mpi.h.
 *
 * Usage (what `frugal train --dp N` does under `mpirun -np N`):
 *   fg_comm *world = NULL;
 *   fg_dist_init(&argc, &argv, 1, &world);            // MPI_Init_thread; size 1 without MPI
 *   fg_grid g; fg_grid_init(&g, world, N, 1, 1, 1);   // g.dp: the data-parallel communicator
 *   fg_req r; fg_comm_iallreduce(g.dp, grads + off, n, FG_DT_F32, FG_OP_SUM, &r);
 *   ... more backward ...  fg_comm_test(g.dp, &r, &done);  ...  fg_comm_wait(g.dp, &r);
 *   fg_grid_free(&g); fg_dist_finalize(world);
 * Collectives work in place on the caller's buffers (MPI_IN_PLACE: no staging copy).
 * Counts are element counts (size_t; MPI needs them below 2^31: FG_ERR_INVALID otherwise).
 * Every call returns fg_status; an MPI error becomes FG_ERR_IO naming the call and rank.
 */
#ifndef FRUGAL_DIST_H
#define FRUGAL_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fg_dtype { FG_DT_F32, FG_DT_F64, FG_DT_I32, FG_DT_I64, FG_DT_U8, FG_DT_U16 } fg_dtype;
typedef enum fg_redop { FG_OP_SUM, FG_OP_MAX, FG_OP_MIN } fg_redop;

size_t fg_dtype_size(fg_dtype t);

typedef struct fg_comm fg_comm;

/* A non-blocking operation in flight. Zero-initialised = no operation (test/wait on it
 * return at once). The bytes hold the implementation's handle (an MPI_Request). */
typedef struct fg_req {
    unsigned char opaque[16];
    int active;
    const char *what; /* the MPI call that started it (the watchdog's message) */
} fg_req;

/* 1 when this build has the MPI implementation (libopenmpi-dev was found by CMake). */
int fg_dist_have_mpi(void);
/* 1 when the process was started by an MPI launcher (mpirun, srun with PMI/PMIx):
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK or SLURM_PROCID in the environment. */
int fg_dist_launched(void);

/* The world communicator. use_mpi 0: a single-process one (no MPI call at all). use_mpi 1:
 * MPI_Init_thread (funneled) and MPI_COMM_WORLD with errors returned, not fatal;
 * FG_ERR_INVALID when this build has no MPI. argc/argv may be NULL. */
fg_status fg_dist_init(int *argc, char ***argv, int use_mpi, fg_comm **world);
/* Frees world (and MPI_Finalize when it was MPI). */
void fg_dist_finalize(fg_comm *world);
/* A single-process communicator (rank 0 of 1): every collective is the identity. */
fg_comm *fg_comm_local(void);
void fg_comm_free(fg_comm *c); /* not for the world: fg_dist_finalize */

int fg_comm_rank(const fg_comm *c);
int fg_comm_size(const fg_comm *c);
const char *fg_comm_kind(const fg_comm *c); /* "mpi" or "local" */
/* Ends every process of the job (MPI_Abort; exit() for the local one). Only the CLI
 * calls it, after printing why: a rank that fails alone would leave the others waiting. */
void fg_comm_abort(fg_comm *c, int code);
/* Watchdog for a rank that hangs alive: with seconds > 0, every wait (fg_comm_wait and the
 * blocking collectives) polls with a deadline; a wait still incomplete after `seconds`
 * (or one that hears a peer's watchdog go off) exchanges notes with the other ranks
 * through a communicator of its own for up to min(2, seconds) s, then fails with
 * FG_ERR_IO naming the world ranks that did not answer (hung, or busy outside
 * communication for longer than the timeout). 0: off (plain MPI_Wait). Communicators
 * split from c inherit it. The local communicator never waits. */
void fg_comm_set_timeout(fg_comm *c, double seconds);
double fg_comm_timeout(const fg_comm *c);
/* Ranks with equal color form a new communicator, ordered by key (MPI_Comm_split). */
fg_status fg_comm_split(fg_comm *c, int color, int key, fg_comm **out);

/* Communication buffers allocated once (MPI_Alloc_mem: an RDMA transport registers them
 * once). Zeroed. NULL + fg_error on failure. */
void *fg_comm_alloc(fg_comm *c, size_t bytes);
void fg_comm_free_mem(fg_comm *c, void *p);

/* ---- collectives; the i-forms start the operation and fill *req ---- */
/* buf[n] = op over ranks of buf[n], in place. */
fg_status fg_comm_allreduce(fg_comm *c, void *buf, size_t n, fg_dtype t, fg_redop op);
fg_status fg_comm_iallreduce(fg_comm *c, void *buf, size_t n, fg_dtype t, fg_redop op, fg_req *req);
/* send holds sum(counts) elements, rank r's segment at the prefix sum of counts before r;
 * recv[counts[rank]] = op over ranks of this rank's segment. send and recv must not overlap. */
fg_status fg_comm_reduce_scatter(fg_comm *c, const void *send, void *recv, const int *counts, fg_dtype t, fg_redop op);
fg_status fg_comm_ireduce_scatter(fg_comm *c, const void *send, void *recv, const int *counts, fg_dtype t, fg_redop op,
                                  fg_req *req);
/* In place: rank r's counts[r] elements at buf + displs[r] go to every rank (allgatherv). */
fg_status fg_comm_allgather(fg_comm *c, void *buf, const int *counts, const int *displs, fg_dtype t);
fg_status fg_comm_iallgather(fg_comm *c, void *buf, const int *counts, const int *displs, fg_dtype t, fg_req *req);
/* send[size*n] -> recv[size*n]: block r of send goes to rank r, block r of recv came from r. */
fg_status fg_comm_alltoall(fg_comm *c, const void *send, void *recv, size_t n, fg_dtype t);
fg_status fg_comm_ialltoall(fg_comm *c, const void *send, void *recv, size_t n, fg_dtype t, fg_req *req);
/* All-to-all with per-peer counts (elements): scounts[r] elements from send go to rank r,
 * rcounts[r] elements into recv come from r, each side packed in rank order. The counts
 * must agree pairwise (an all-to-all of them first). Point-to-point underneath
 * (alltoallv.c); the self block is a memcpy, so a single-process communicator works. */
fg_status fg_comm_alltoallv(fg_comm *c, const void *send, const size_t *scounts, void *recv, const size_t *rcounts,
                            fg_dtype t);
/* Root's send[counts[rank]] gathered into recv at displs (recv only read on root). */
fg_status fg_comm_gatherv(fg_comm *c, const void *send, int n, void *recv, const int *counts, const int *displs,
                          fg_dtype t, int root);
fg_status fg_comm_bcast(fg_comm *c, void *buf, size_t n, fg_dtype t, int root);
fg_status fg_comm_barrier(fg_comm *c);
fg_status fg_comm_ibarrier(fg_comm *c, fg_req *req);

/* Bytes this rank has sent through c since it was made: the bandwidth-optimal count of
 * each operation started (ring all-reduce 2(p-1)/p x n, reduce-scatter / all-gather /
 * broadcast (p-1)/p x n, all-to-all the p-1 other blocks, sends and gathers exactly). */
double fg_comm_bytes_sent(const fg_comm *c);

/* ---- point to point (the local communicator has no peer: FG_ERR_INVALID) ---- */
fg_status fg_comm_send(fg_comm *c, const void *buf, size_t n, fg_dtype t, int peer, int tag);
fg_status fg_comm_recv(fg_comm *c, void *buf, size_t n, fg_dtype t, int peer, int tag);
fg_status fg_comm_isend(fg_comm *c, const void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req);
fg_status fg_comm_irecv(fg_comm *c, void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req);

/* ---- completion: test also progresses the other operations in flight (MPI) ---- */
fg_status fg_comm_test(fg_comm *c, fg_req *req, int *done);
fg_status fg_comm_wait(fg_comm *c, fg_req *req);
fg_status fg_comm_waitall(fg_comm *c, fg_req *reqs, int n);

/* ---- the rank grid: world = pp x dp x ep x tp (tp fastest-varying, then ep, dp, pp),
 * as Megatron-LM lays tensor-parallel ranks side by side on one node. Each group has its
 * own communicator (a size-1 group gets a local one). Only dp is used by training today. */
typedef struct fg_grid {
    int dp, tp, pp, ep;                                     /* group sizes; product = world size */
    int rank, size;                                         /* in world */
    int dp_rank, tp_rank, pp_rank, ep_rank;                 /* coordinates */
    fg_comm *world, *dp_comm, *tp_comm, *pp_comm, *ep_comm; /* world is borrowed */
} fg_grid;

/* FG_ERR_INVALID when dp*tp*pp*ep differs from world's size (the message names both). */
fg_status fg_grid_init(fg_grid *g, fg_comm *world, int dp, int tp, int pp, int ep);
void fg_grid_free(fg_grid *g);

/* ---- contiguous shards of n elements over p ranks: rank r owns [off(r), off(r+1)),
 * the first n % p ranks one element more (ZeRO-1's optimiser-state partition) ---- */
size_t fg_dist_part_offset(size_t n, int p, int r);

/* ---- top-k gradient compression (Deep Gradient Compression, Lin et al. 2018) ----
 * One bucket of len values: v is the accumulated residual (error feedback: the part of
 * past gradients not yet sent), u the momentum-corrected velocity (NULL: no momentum
 * correction). Encoding picks the k largest |v| (ties by lower index), writes them as
 * (index, value) pairs: indices ascending, either uint32 or delta-coded (LEB128 varint of
 * the gap minus one), then the values, fp32 or bf16 (round to nearest even); then v at
 * those places keeps what the value lost to bf16 and u is zeroed there (DGC's momentum
 * factor masking). */
typedef struct fg_topk_format {
    int delta_idx; /* 1: varint gaps; 0: uint32 indices */
    int bf16;      /* 1: bf16 values; 0: fp32 */
} fg_topk_format;

/* k for a bucket of len at density: floor(density x len), at least 1 (so never more
 * than density: the byte targets hold exactly). */
size_t fg_topk_count(size_t len, double density);
/* Largest message for k pairs of a bucket of len values. */
size_t fg_topk_max_bytes(size_t k, fg_topk_format f);
/* Encodes into out (at least fg_topk_max_bytes); scratch: len floats. Returns bytes. */
size_t fg_topk_encode(float *v, float *u, size_t len, size_t k, fg_topk_format f, uint8_t *out, float *scratch);
/* Adds a message's k pairs into dst[len]. Returns the bytes read; 0 when the message is
 * malformed (an index out of range, truncated). */
size_t fg_topk_decode_add(const uint8_t *in, size_t avail, size_t len, size_t k, fg_topk_format f, float *dst);

#ifdef __cplusplus
}
#endif
#endif
