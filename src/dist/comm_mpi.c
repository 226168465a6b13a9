/* comm_mpi.c: the MPI communicator (the only file that includes mpi.h): collectives in
 * place (MPI_IN_PLACE) on the caller's buffers, non-blocking forms with MPI_Request held
 * in fg_req, errors returned (MPI_ERRORS_RETURN) as fg_status naming the call and rank. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "dist_impl.h"

_Static_assert(sizeof(MPI_Request) <= sizeof(((fg_req *)0)->opaque), "MPI_Request fits in fg_req");

static MPI_Comm comm_of(const fg_comm *c)
{
    return *(const MPI_Comm *)c->impl;
}

static MPI_Datatype dt_of(fg_dtype t)
{
    switch (t) {
    case FG_DT_F32: return MPI_FLOAT;
    case FG_DT_F64: return MPI_DOUBLE;
    case FG_DT_I32: return MPI_INT32_T;
    case FG_DT_I64: return MPI_INT64_T;
    case FG_DT_U8: return MPI_UINT8_T;
    case FG_DT_U16: return MPI_UINT16_T;
    }
    return MPI_BYTE;
}

static MPI_Op op_of(fg_redop op)
{
    return op == FG_OP_MAX ? MPI_MAX : op == FG_OP_MIN ? MPI_MIN : MPI_SUM;
}

static fg_status check(const fg_comm *c, int rc, const char *call)
{
    if (rc == MPI_SUCCESS)
        return FG_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", rc);
    return fg_error(FG_ERR_IO, "%s on rank %d of %d: %s", call, c->rank, c->size, msg);
}

static fg_status count_ok(const fg_comm *c, size_t n, const char *call)
{
    if (n > (size_t)INT_MAX)
        return fg_error(FG_ERR_INVALID, "%s on rank %d: %zu elements exceed MPI's int count", call, c->rank, n);
    return FG_OK;
}

static MPI_Request *req_of(fg_req *r)
{
    return (MPI_Request *)(void *)r->opaque;
}

static fg_comm *wrap(MPI_Comm mc, int is_world);

static void mpi_free(fg_comm *c)
{
    MPI_Comm mc = comm_of(c);
    if (mc != MPI_COMM_WORLD && mc != MPI_COMM_NULL)
        MPI_Comm_free(&mc);
    fg_free(c->impl);
    fg_free(c);
}

static void mpi_abort(fg_comm *c, int code)
{
    MPI_Abort(comm_of(c), code);
}

static fg_status mpi_split(fg_comm *c, int color, int key, fg_comm **out)
{
    MPI_Comm nc;
    fg_status st = check(c, MPI_Comm_split(comm_of(c), color, key, &nc), "MPI_Comm_split");
    if (st != FG_OK)
        return st;
    MPI_Comm_set_errhandler(nc, MPI_ERRORS_RETURN);
    *out = wrap(nc, 0);
    return *out ? FG_OK : FG_ERR_NOMEM;
}

static void *mpi_alloc(fg_comm *c, size_t bytes)
{
    void *p = NULL;
    if (MPI_Alloc_mem((MPI_Aint)(bytes ? bytes : 1), MPI_INFO_NULL, &p) != MPI_SUCCESS || !p) {
        fg_error(FG_ERR_NOMEM, "MPI_Alloc_mem of %zu bytes failed on rank %d", bytes, c->rank);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

static void mpi_free_mem(fg_comm *c, void *p)
{
    MPI_Free_mem(p);
}

static fg_status started(fg_comm *c, fg_req *req, int rc, const char *call)
{
    fg_status st = check(c, rc, call);
    req->active = st == FG_OK;
    return st;
}

static fg_status mpi_iallreduce(fg_comm *c, void *buf, size_t n, fg_dtype t, fg_redop op, fg_req *req)
{
    fg_status st = count_ok(c, n, "MPI_Iallreduce");
    if (st != FG_OK)
        return st;
    return started(c, req, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, dt_of(t), op_of(op), comm_of(c), req_of(req)),
                   "MPI_Iallreduce");
}

static fg_status mpi_ireduce_scatter(fg_comm *c, const void *send, void *recv, const int *counts, fg_dtype t,
                                     fg_redop op, fg_req *req)
{
    return started(c, req, MPI_Ireduce_scatter(send, recv, counts, dt_of(t), op_of(op), comm_of(c), req_of(req)),
                   "MPI_Ireduce_scatter");
}

static fg_status mpi_iallgather(fg_comm *c, void *buf, const int *counts, const int *displs, fg_dtype t, fg_req *req)
{
    return started(
        c, req,
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, dt_of(t), comm_of(c), req_of(req)),
        "MPI_Iallgatherv");
}

static fg_status mpi_ialltoall(fg_comm *c, const void *send, void *recv, size_t n, fg_dtype t, fg_req *req)
{
    fg_status st = count_ok(c, n, "MPI_Ialltoall");
    if (st != FG_OK)
        return st;
    return started(c, req, MPI_Ialltoall(send, (int)n, dt_of(t), recv, (int)n, dt_of(t), comm_of(c), req_of(req)),
                   "MPI_Ialltoall");
}

static fg_status mpi_gatherv(fg_comm *c, const void *send, int n, void *recv, const int *counts, const int *displs,
                             fg_dtype t, int root)
{
    return check(c, MPI_Gatherv(send, n, dt_of(t), recv, counts, displs, dt_of(t), root, comm_of(c)), "MPI_Gatherv");
}

static fg_status mpi_bcast(fg_comm *c, void *buf, size_t n, fg_dtype t, int root)
{
    fg_status st = count_ok(c, n, "MPI_Bcast");
    if (st != FG_OK)
        return st;
    return check(c, MPI_Bcast(buf, (int)n, dt_of(t), root, comm_of(c)), "MPI_Bcast");
}

static fg_status mpi_ibarrier(fg_comm *c, fg_req *req)
{
    return started(c, req, MPI_Ibarrier(comm_of(c), req_of(req)), "MPI_Ibarrier");
}

static fg_status mpi_isend(fg_comm *c, const void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req)
{
    fg_status st = count_ok(c, n, "MPI_Isend");
    if (st != FG_OK)
        return st;
    return started(c, req, MPI_Isend(buf, (int)n, dt_of(t), peer, tag, comm_of(c), req_of(req)), "MPI_Isend");
}

static fg_status mpi_irecv(fg_comm *c, void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req)
{
    fg_status st = count_ok(c, n, "MPI_Irecv");
    if (st != FG_OK)
        return st;
    return started(c, req, MPI_Irecv(buf, (int)n, dt_of(t), peer, tag, comm_of(c), req_of(req)), "MPI_Irecv");
}

static fg_status mpi_test(fg_comm *c, fg_req *req, int *done)
{
    int flag = 0;
    fg_status st = check(c, MPI_Test(req_of(req), &flag, MPI_STATUS_IGNORE), "MPI_Test");
    *done = st == FG_OK ? flag : 1;
    if (*done)
        req->active = 0;
    return st;
}

static fg_status mpi_wait(fg_comm *c, fg_req *req)
{
    req->active = 0;
    return check(c, MPI_Wait(req_of(req), MPI_STATUS_IGNORE), "MPI_Wait");
}

static const fg_comm_ops mpi_ops = {
    .kind = "mpi",
    .free = mpi_free,
    .abort = mpi_abort,
    .split = mpi_split,
    .alloc = mpi_alloc,
    .free_mem = mpi_free_mem,
    .iallreduce = mpi_iallreduce,
    .ireduce_scatter = mpi_ireduce_scatter,
    .iallgather = mpi_iallgather,
    .ialltoall = mpi_ialltoall,
    .gatherv = mpi_gatherv,
    .bcast = mpi_bcast,
    .ibarrier = mpi_ibarrier,
    .isend = mpi_isend,
    .irecv = mpi_irecv,
    .test = mpi_test,
    .wait = mpi_wait,
};

static fg_comm *wrap(MPI_Comm mc, int is_world)
{
    fg_comm *c = fg_calloc(1, sizeof *c);
    MPI_Comm *box = fg_malloc(sizeof *box);
    if (!c || !box) {
        fg_free(c);
        fg_free(box);
        fg_error(FG_ERR_NOMEM, "communicator: out of memory");
        return NULL;
    }
    *box = mc;
    c->impl = box;
    c->ops = &mpi_ops;
    c->is_world = is_world;
    MPI_Comm_rank(mc, &c->rank);
    MPI_Comm_size(mc, &c->size);
    return c;
}

int fg_dist_have_mpi(void)
{
    return 1;
}

fg_status dist_mpi_init(int *argc, char ***argv, fg_comm **world)
{
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    /* funneled: only the main thread calls MPI (the OpenMP threads and the checkpoint
     * writer never do) */
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return fg_error(FG_ERR_IO, "MPI_Init_thread failed (is this process started by mpirun / srun?)");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    *world = wrap(MPI_COMM_WORLD, 1);
    return *world ? FG_OK : FG_ERR_NOMEM;
}

void dist_mpi_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin)
        MPI_Finalize();
}
