/* comm_mpi.c: the MPI communicator (the only file that includes mpi.h): collectives in
 * place (MPI_IN_PLACE) on the caller's buffers, non-blocking forms with MPI_Request held
 * in fg_req, errors returned (MPI_ERRORS_RETURN) as fg_status naming the call and rank,
 * and the watchdog: waits polled against a deadline, then a roll call of the ranks. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dist_impl.h"

_Static_assert(sizeof(MPI_Request) <= sizeof(((fg_req *)0)->opaque), "MPI_Request fits in fg_req");

/* The communicator, and a duplicate that only the watchdog's notes travel on (so they
 * never match the training's own point-to-point messages). */
typedef struct mpi_box {
    MPI_Comm comm, wd;
} mpi_box;

static MPI_Comm comm_of(const fg_comm *c)
{
    return ((const mpi_box *)c->impl)->comm;
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
static fg_status mpi_wait(fg_comm *c, fg_req *req);

static void mpi_free(fg_comm *c)
{
    MPI_Comm mc = comm_of(c);
    mpi_box *b = c->impl;
    if (b->wd != MPI_COMM_NULL)
        MPI_Comm_free(&b->wd);
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
    req->what = call;
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
    fg_req r;
    memset(&r, 0, sizeof r);
    fg_status st =
        started(c, &r, MPI_Igatherv(send, n, dt_of(t), recv, counts, displs, dt_of(t), root, comm_of(c), req_of(&r)),
                "MPI_Igatherv");
    return st == FG_OK ? mpi_wait(c, &r) : st; /* the watchdog's deadline applies */
}

static fg_status mpi_bcast(fg_comm *c, void *buf, size_t n, fg_dtype t, int root)
{
    fg_status st = count_ok(c, n, "MPI_Bcast");
    if (st != FG_OK)
        return st;
    fg_req r;
    memset(&r, 0, sizeof r);
    st = started(c, &r, MPI_Ibcast(buf, (int)n, dt_of(t), root, comm_of(c), req_of(&r)), "MPI_Ibcast");
    return st == FG_OK ? mpi_wait(c, &r) : st; /* the watchdog's deadline applies */
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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nap(long usec)
{
    struct timespec ts = {0, usec * 1000L};
    nanosleep(&ts, NULL);
}

#define WD_TAG 7

/* rank q of comm in MPI_COMM_WORLD's numbering (what mpirun's messages use) */
static int world_of(MPI_Comm comm, int q)
{
    MPI_Group g, wg;
    int wq = q;
    MPI_Comm_group(comm, &g);
    MPI_Comm_group(MPI_COMM_WORLD, &wg);
    MPI_Group_translate_ranks(g, 1, &q, wg, &wq);
    MPI_Group_free(&g);
    MPI_Group_free(&wg);
    return wq;
}

/* The roll call after a wait ran out of time (or heard a peer's watchdog): every live rank
 * sends its world rank to every other on the watchdog communicator and listens for
 * min(2, timeout) s; ranks silent by then are named. Peers still waiting join as soon as
 * they poll (they listen for notes while waiting), so the live ranks answer within
 * milliseconds and the silent ones are the ranks outside communication. */
static fg_status watchdog(fg_comm *c, const char *what, double waited, int heard_from)
{
    mpi_box *b = c->impl;
    int p = c->size, me = c->rank, wme = world_of(b->comm, c->rank);
    int *got = fg_calloc((size_t)p, sizeof(int)), *in = fg_calloc((size_t)p, sizeof(int));
    MPI_Request *rq = fg_calloc((size_t)p * 2, sizeof(MPI_Request));
    if (!got || !in || !rq) {
        fg_free(got);
        fg_free(in);
        fg_free(rq);
        return fg_error(FG_ERR_IO,
                        "watchdog: %s on rank %d of %d not complete after %.1f s (out of memory for the "
                        "roll call)",
                        what, me, p, waited);
    }
    for (int q = 0; q < p; q++) {
        rq[q] = rq[p + q] = MPI_REQUEST_NULL;
        if (q == me)
            continue;
        MPI_Irecv(&in[q], 1, MPI_INT, q, WD_TAG, b->wd, &rq[q]);
        MPI_Isend(&wme, 1, MPI_INT, q, WD_TAG, b->wd, &rq[p + q]);
    }
    got[me] = 1;
    double grace = c->timeout < 2.0 ? c->timeout : 2.0, t0 = now();
    int missing = p - 1;
    while (missing > 0 && now() - t0 < grace) {
        for (int q = 0; q < p; q++) {
            int flag = 0;
            if (!got[q] && MPI_Test(&rq[q], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) {
                got[q] = 1;
                missing--;
            }
        }
        if (missing > 0)
            nap(1000);
    }
    /* the silent ranks, in world numbering */
    char names[512];
    size_t len = 0;
    names[0] = '\0';
    for (int q = 0; q < p && len + 16 < sizeof names; q++)
        if (!got[q])
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%d", len ? ", " : "", world_of(b->comm, q));
    /* the notes of the silent ranks never come: the job ends (MPI_Abort) without them */
    fg_free(got);
    fg_free(in);
    fg_free(rq);
    if (heard_from >= 0 && missing == 0)
        return fg_error(FG_ERR_IO,
                        "watchdog: %s on rank %d of %d (world rank %d) stopped after %.1f s: world rank %d's watchdog "
                        "went off (every rank of this communicator answered)",
                        what, me, p, wme, waited, heard_from);
    if (missing == 0)
        return fg_error(FG_ERR_IO,
                        "watchdog: %s on rank %d of %d (world rank %d) not complete after %.1f s (--comm-timeout), "
                        "though every rank of this communicator answered",
                        what, me, p, wme, waited);
    return fg_error(FG_ERR_IO,
                    "watchdog: %s on rank %d of %d (world rank %d) not complete after %.1f s (--comm-timeout); no "
                    "answer within %.1f s from world rank%s %s: hung, or busy outside communication for longer than "
                    "the timeout",
                    what, me, p, wme, waited, grace, missing > 1 ? "s" : "", names);
}

static fg_status mpi_wait(fg_comm *c, fg_req *req)
{
    req->active = 0;
    if (c->timeout <= 0)
        return check(c, MPI_Wait(req_of(req), MPI_STATUS_IGNORE), "MPI_Wait");
    /* polled: MPI_Test progresses the operation; a peer's note on the watchdog
     * communicator means its deadline passed: join its roll call at once */
    mpi_box *b = c->impl;
    double t0 = now();
    for (long spin = 0;; spin++) {
        int flag = 0, note = 0;
        fg_status st = check(c, MPI_Test(req_of(req), &flag, MPI_STATUS_IGNORE), "MPI_Test");
        if (st != FG_OK || flag)
            return st;
        MPI_Status ps;
        MPI_Iprobe(MPI_ANY_SOURCE, WD_TAG, b->wd, &note, &ps);
        double waited = now() - t0;
        if (note || waited > c->timeout) {
            int from = note ? world_of(b->comm, ps.MPI_SOURCE) : -1;
            return watchdog(c, req->what ? req->what : "a wait", waited, note ? from : -1);
        }
        if (spin > 1000) /* past the first moments, wait politely: the other ranks share the cores */
            nap(50);
    }
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
    mpi_box *box = fg_malloc(sizeof *box);
    if (!c || !box) {
        fg_free(c);
        fg_free(box);
        fg_error(FG_ERR_NOMEM, "communicator: out of memory");
        return NULL;
    }
    box->comm = mc;
    box->wd = MPI_COMM_NULL;
    /* collective, as every caller of wrap is (init, split) */
    if (MPI_Comm_dup(mc, &box->wd) == MPI_SUCCESS)
        MPI_Comm_set_errhandler(box->wd, MPI_ERRORS_RETURN);
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
