/* dist_impl.h: the communicator's table of operations, shared by the single-process
 * implementation (comm.c) and the MPI one (comm_mpi.c, the only file with mpi.h). */
#ifndef FRUGAL_DIST_IMPL_H
#define FRUGAL_DIST_IMPL_H

#include "frugal/dist.h"

typedef struct fg_comm_ops {
    const char *kind;
    void (*free)(fg_comm *c);
    void (*abort)(fg_comm *c, int code);
    fg_status (*split)(fg_comm *c, int color, int key, fg_comm **out);
    void *(*alloc)(fg_comm *c, size_t bytes);
    void (*free_mem)(fg_comm *c, void *p);
    fg_status (*iallreduce)(fg_comm *c, void *buf, size_t n, fg_dtype t, fg_redop op, fg_req *req);
    fg_status (*ireduce_scatter)(fg_comm *c, const void *send, void *recv, const int *counts, fg_dtype t, fg_redop op,
                                 fg_req *req);
    fg_status (*iallgather)(fg_comm *c, void *buf, const int *counts, const int *displs, fg_dtype t, fg_req *req);
    fg_status (*ialltoall)(fg_comm *c, const void *send, void *recv, size_t n, fg_dtype t, fg_req *req);
    fg_status (*gatherv)(fg_comm *c, const void *send, int n, void *recv, const int *counts, const int *displs,
                         fg_dtype t, int root);
    fg_status (*bcast)(fg_comm *c, void *buf, size_t n, fg_dtype t, int root);
    fg_status (*ibarrier)(fg_comm *c, fg_req *req);
    fg_status (*isend)(fg_comm *c, const void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req);
    fg_status (*irecv)(fg_comm *c, void *buf, size_t n, fg_dtype t, int peer, int tag, fg_req *req);
    fg_status (*test)(fg_comm *c, fg_req *req, int *done);
    fg_status (*wait)(fg_comm *c, fg_req *req);
} fg_comm_ops;

struct fg_comm {
    const fg_comm_ops *ops;
    int rank, size;
    int is_world;   /* MPI_COMM_WORLD: freed by fg_dist_finalize only */
    double sent;    /* bytes this rank sent, by the bandwidth-optimal model (fg_comm_bytes_sent) */
    double timeout; /* watchdog seconds (fg_comm_set_timeout); 0 off */
    void *impl;     /* the MPI_Comm, boxed */
};

/* comm_mpi.c (absent without MPI: these then report FG_ERR_INVALID) */
fg_status dist_mpi_init(int *argc, char ***argv, fg_comm **world);
void dist_mpi_finalize(void);

#endif
