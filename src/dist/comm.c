/* comm.c: the fg_comm front (argument checks, dispatch through the ops table), the
 * single-process communicator (every collective is the identity on rank 0 of 1), the
 * rank grid and the shard partition. No MPI here: comm_mpi.c has it. */
#include <stdlib.h>
#include <string.h>

#include "dist_impl.h"

size_t fg_dtype_size(fg_dtype t)
{
    switch (t) {
    case FG_DT_F32:
    case FG_DT_I32: return 4;
    case FG_DT_F64:
    case FG_DT_I64: return 8;
    case FG_DT_U8: return 1;
    case FG_DT_U16: return 2;
    }
    return 0;
}

int fg_dist_launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

/* ---- the single-process communicator ---- */
static void local_free(fg_comm *c)
{
    fg_free(c);
}

static void local_abort(fg_comm *c, int code)
{
    exit(code); /* only the CLI calls abort: the one process is the whole job */
}

static fg_status local_split(fg_comm *c, int color, int key, fg_comm **out)
{
    *out = fg_comm_local();
    return *out ? FG_OK : FG_ERR_NOMEM;
}

static void *local_alloc(fg_comm *c, size_t bytes)
{
    return fg_calloc(bytes ? bytes : 1, 1);
}

static void local_free_mem(fg_comm *c, void *p)
{
    fg_free(p);
}

static fg_status local_iallreduce(fg_comm *c, void *buf, size_t n, fg_dtype t, fg_redop op, fg_req *req)
{
    return FG_OK;
}

static fg_status local_ireduce_scatter(fg_comm *c, const void *send, void *recv, const int *counts, fg_dtype t,
                                       fg_redop op, fg_req *req)
{
    if (send != recv)
        memmove(recv, send, (size_t)counts[0] * fg_dtype_size(t));
    return FG_OK;
}

static fg_status local_iallgather(fg_comm *c, void *buf, const int *counts, const int *displs, fg_dtype t, fg_req *req)
{
    return FG_OK;
}

static fg_status local_ialltoall(fg_comm *c, const void *send, void *recv, size_t n, fg_dtype t, fg_req *req)
{
    if (send != recv)
        memmove(recv, send, n * fg_dtype_size(t));
    return FG_OK;
}

static fg_status local_gatherv(fg_comm *c, const void *send, int n, void *recv, const int *counts, const int *displs,
                               fg_dtype t, int root)
{
    if (send != (const char *)recv + (size_t)displs[0] * fg_dtype_size(t))
        memmove((char *)recv + (size_t)displs[0] * fg_dtype_size(t), send, (size_t)n * fg_dtype_size(t));
    return FG_OK;
}

static fg_status local_bcast(fg_comm *c, void *buf, size_t n, fg_dtype t, int root)
{
    return FG_OK;
}

static fg_status local_ibarrier(fg_comm *c, fg_req *req)
{
    return FG_OK;
}

static fg_status local_p2p(const char *what, int peer)
{
    return fg_error(FG_ERR_INVALID, "%s to rank %d: the single-process communicator has no peer", what, peer);
}

static fg_status local_isend(fg_comm *c, const void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req)
{
    return local_p2p("send", peer);
}

static fg_status local_irecv(fg_comm *c, void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req)
{
    return local_p2p("recv", peer);
}

static fg_status local_test(fg_comm *c, fg_req *req, int *done)
{
    req->active = 0;
    *done = 1;
    return FG_OK;
}

static fg_status local_wait(fg_comm *c, fg_req *req)
{
    req->active = 0;
    return FG_OK;
}

static const fg_comm_ops local_ops = {
    .kind = "local",
    .free = local_free,
    .abort = local_abort,
    .split = local_split,
    .alloc = local_alloc,
    .free_mem = local_free_mem,
    .iallreduce = local_iallreduce,
    .ireduce_scatter = local_ireduce_scatter,
    .iallgather = local_iallgather,
    .ialltoall = local_ialltoall,
    .gatherv = local_gatherv,
    .bcast = local_bcast,
    .ibarrier = local_ibarrier,
    .isend = local_isend,
    .irecv = local_irecv,
    .test = local_test,
    .wait = local_wait,
};

fg_comm *fg_comm_local(void)
{
    fg_comm *c = fg_calloc(1, sizeof *c);
    if (!c) {
        fg_error(FG_ERR_NOMEM, "communicator: out of memory");
        return NULL;
    }
    c->ops = &local_ops;
    c->rank = 0;
    c->size = 1;
    return c;
}

/* ---- world ---- */
fg_status fg_dist_init(int *argc, char ***argv, int use_mpi, fg_comm **world)
{
    *world = NULL;
    if (!use_mpi) {
        *world = fg_comm_local();
        if (!*world)
            return FG_ERR_NOMEM;
        (*world)->is_world = 1;
        return FG_OK;
    }
    return dist_mpi_init(argc, argv, world);
}

void fg_dist_finalize(fg_comm *world)
{
    if (!world)
        return;
    int mpi = world->ops != &local_ops;
    fg_free(world);
    if (mpi)
        dist_mpi_finalize();
}

void fg_comm_free(fg_comm *c)
{
    if (c && !c->is_world)
        c->ops->free(c);
}

int fg_comm_rank(const fg_comm *c)
{
    return c->rank;
}

int fg_comm_size(const fg_comm *c)
{
    return c->size;
}

const char *fg_comm_kind(const fg_comm *c)
{
    return c->ops->kind;
}

void fg_comm_abort(fg_comm *c, int code)
{
    c->ops->abort(c, code);
}

fg_status fg_comm_split(fg_comm *c, int color, int key, fg_comm **out)
{
    fg_status st = c->ops->split(c, color, key, out);
    if (st == FG_OK && *out)
        (*out)->timeout = c->timeout; /* the watchdog covers every group of the grid */
    return st;
}

void fg_comm_set_timeout(fg_comm *c, double seconds)
{
    c->timeout = seconds > 0 ? seconds : 0;
}

double fg_comm_timeout(const fg_comm *c)
{
    return c->timeout;
}

void *fg_comm_alloc(fg_comm *c, size_t bytes)
{
    return c->ops->alloc(c, bytes);
}

void fg_comm_free_mem(fg_comm *c, void *p)
{
    if (p)
        c->ops->free_mem(c, p);
}

/* ---- collectives ---- */
static fg_status start(fg_req *req)
{
    memset(req, 0, sizeof *req);
    return FG_OK;
}

/* The byte counter: what a bandwidth-optimal algorithm sends from this rank (ring
 * all-reduce 2(p-1)/p n, reduce-scatter and all-gather (p-1)/p n, all-to-all the p-1
 * blocks for others, point-to-point exactly), counted when an operation starts. The MPI
 * library may pick another algorithm: this is the model, not a packet count. */
static void count(fg_comm *c, double elems, fg_dtype t)
{
    c->sent += elems * (double)fg_dtype_size(t);
}

double fg_comm_bytes_sent(const fg_comm *c)
{
    return c->sent;
}

fg_status fg_comm_iallreduce(fg_comm *c, void *buf, size_t n, fg_dtype t, fg_redop op, fg_req *req)
{
    start(req);
    count(c, 2.0 * (c->size - 1) / c->size * (double)n, t);
    return c->ops->iallreduce(c, buf, n, t, op, req);
}

fg_status fg_comm_allreduce(fg_comm *c, void *buf, size_t n, fg_dtype t, fg_redop op)
{
    fg_req r;
    fg_status st = fg_comm_iallreduce(c, buf, n, t, op, &r);
    return st == FG_OK ? fg_comm_wait(c, &r) : st;
}

fg_status fg_comm_ireduce_scatter(fg_comm *c, const void *send, void *recv, const int *counts, fg_dtype t, fg_redop op,
                                  fg_req *req)
{
    start(req);
    for (int r = 0; r < c->size; r++)
        count(c, (double)(c->size - 1) / c->size * counts[r], t);
    return c->ops->ireduce_scatter(c, send, recv, counts, t, op, req);
}

fg_status fg_comm_reduce_scatter(fg_comm *c, const void *send, void *recv, const int *counts, fg_dtype t, fg_redop op)
{
    fg_req r;
    fg_status st = fg_comm_ireduce_scatter(c, send, recv, counts, t, op, &r);
    return st == FG_OK ? fg_comm_wait(c, &r) : st;
}

fg_status fg_comm_iallgather(fg_comm *c, void *buf, const int *counts, const int *displs, fg_dtype t, fg_req *req)
{
    start(req);
    for (int r = 0; r < c->size; r++)
        count(c, (double)(c->size - 1) / c->size * counts[r], t);
    return c->ops->iallgather(c, buf, counts, displs, t, req);
}

fg_status fg_comm_allgather(fg_comm *c, void *buf, const int *counts, const int *displs, fg_dtype t)
{
    fg_req r;
    fg_status st = fg_comm_iallgather(c, buf, counts, displs, t, &r);
    return st == FG_OK ? fg_comm_wait(c, &r) : st;
}

fg_status fg_comm_ialltoall(fg_comm *c, const void *send, void *recv, size_t n, fg_dtype t, fg_req *req)
{
    start(req);
    count(c, (double)(c->size - 1) * (double)n, t);
    return c->ops->ialltoall(c, send, recv, n, t, req);
}

fg_status fg_comm_alltoall(fg_comm *c, const void *send, void *recv, size_t n, fg_dtype t)
{
    fg_req r;
    fg_status st = fg_comm_ialltoall(c, send, recv, n, t, &r);
    return st == FG_OK ? fg_comm_wait(c, &r) : st;
}

fg_status fg_comm_gatherv(fg_comm *c, const void *send, int n, void *recv, const int *counts, const int *displs,
                          fg_dtype t, int root)
{
    if (c->rank != root)
        count(c, (double)n, t);
    return c->ops->gatherv(c, send, n, recv, counts, displs, t, root);
}

fg_status fg_comm_bcast(fg_comm *c, void *buf, size_t n, fg_dtype t, int root)
{
    if (c->size > 1) /* a pipelined broadcast: each rank but the last forwards the message once */
        count(c, (double)(c->size - 1) / c->size * (double)n, t);
    return c->ops->bcast(c, buf, n, t, root);
}

fg_status fg_comm_ibarrier(fg_comm *c, fg_req *req)
{
    start(req);
    return c->ops->ibarrier(c, req);
}

fg_status fg_comm_barrier(fg_comm *c)
{
    fg_req r;
    fg_status st = fg_comm_ibarrier(c, &r);
    return st == FG_OK ? fg_comm_wait(c, &r) : st;
}

fg_status fg_comm_isend(fg_comm *c, const void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req)
{
    start(req);
    count(c, (double)n, t);
    return c->ops->isend(c, buf, n, t, peer, tag, req);
}

fg_status fg_comm_irecv(fg_comm *c, void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req)
{
    start(req);
    return c->ops->irecv(c, buf, n, t, peer, tag, req);
}

fg_status fg_comm_send(fg_comm *c, const void *buf, size_t n, fg_dtype t, int peer, int tag)
{
    fg_req r;
    fg_status st = fg_comm_isend(c, buf, n, t, peer, tag, &r);
    return st == FG_OK ? fg_comm_wait(c, &r) : st;
}

fg_status fg_comm_recv(fg_comm *c, void *buf, size_t n, fg_dtype t, int peer, int tag)
{
    fg_req r;
    fg_status st = fg_comm_irecv(c, buf, n, t, peer, tag, &r);
    return st == FG_OK ? fg_comm_wait(c, &r) : st;
}

fg_status fg_comm_test(fg_comm *c, fg_req *req, int *done)
{
    if (!req->active) {
        *done = 1;
        return FG_OK;
    }
    return c->ops->test(c, req, done);
}

fg_status fg_comm_wait(fg_comm *c, fg_req *req)
{
    return req->active ? c->ops->wait(c, req) : FG_OK;
}

fg_status fg_comm_waitall(fg_comm *c, fg_req *reqs, int n)
{
    fg_status first = FG_OK;
    for (int i = 0; i < n; i++) {
        fg_status st = fg_comm_wait(c, &reqs[i]);
        if (first == FG_OK)
            first = st;
    }
    return first;
}

/* ---- grid ---- */
static fg_status group(fg_comm *world, int size, int color, int key, fg_comm **out)
{
    if (size == 1) {
        *out = fg_comm_local();
        return *out ? FG_OK : FG_ERR_NOMEM;
    }
    return fg_comm_split(world, color, key, out);
}

fg_status fg_grid_init(fg_grid *g, fg_comm *world, int dp, int tp, int pp, int ep)
{
    memset(g, 0, sizeof *g);
    if (dp < 1 || tp < 1 || pp < 1 || ep < 1)
        return fg_error(FG_ERR_INVALID, "rank grid: dp %d x tp %d x pp %d x ep %d: every size must be >= 1", dp, tp, pp,
                        ep);
    if ((long)dp * tp * pp * ep != world->size)
        return fg_error(FG_ERR_INVALID,
                        "rank grid: dp %d x tp %d x pp %d x ep %d = %ld ranks, but the job has %d (mpirun -np)", dp, tp,
                        pp, ep, (long)dp * tp * pp * ep, world->size);
    g->dp = dp, g->tp = tp, g->pp = pp, g->ep = ep;
    g->world = world;
    g->rank = world->rank;
    g->size = world->size;
    int r = g->rank;
    g->tp_rank = r % tp;
    r /= tp;
    g->ep_rank = r % ep;
    r /= ep;
    g->dp_rank = r % dp;
    g->pp_rank = r / dp;
    /* color: the coordinates outside the group, so ranks differing only inside it meet */
    fg_status st = group(world, dp, (g->pp_rank * ep + g->ep_rank) * tp + g->tp_rank, g->dp_rank, &g->dp_comm);
    if (st == FG_OK)
        st = group(world, tp, (g->pp_rank * dp + g->dp_rank) * ep + g->ep_rank, g->tp_rank, &g->tp_comm);
    if (st == FG_OK)
        st = group(world, pp, (g->dp_rank * ep + g->ep_rank) * tp + g->tp_rank, g->pp_rank, &g->pp_comm);
    if (st == FG_OK)
        st = group(world, ep, (g->pp_rank * dp + g->dp_rank) * tp + g->tp_rank, g->ep_rank, &g->ep_comm);
    if (st != FG_OK)
        fg_grid_free(g);
    return st;
}

void fg_grid_free(fg_grid *g)
{
    fg_comm_free(g->dp_comm);
    fg_comm_free(g->tp_comm);
    fg_comm_free(g->pp_comm);
    fg_comm_free(g->ep_comm);
    memset(g, 0, sizeof *g);
}

size_t fg_dist_part_offset(size_t n, int p, int r)
{
    size_t q = n / (size_t)p, rem = n % (size_t)p, ur = (size_t)r;
    return ur * q + (ur < rem ? ur : rem);
}
