/* alltoallv.c: the all-to-all with per-peer counts that expert parallelism exchanges its
 * token rows with, built on the communicator's non-blocking point-to-point calls. */
#include <string.h>

#include "dist_impl.h"

/* A tag of its own: pipeline stages use other tags, on other communicators anyway. */
#define ALLTOALLV_TAG 0x4550

fg_status fg_comm_alltoallv(fg_comm *c, const void *send, const size_t *scounts, void *recv, const size_t *rcounts,
                            fg_dtype t)
{
    int p = c->size, me = c->rank;
    size_t es = fg_dtype_size(t), soff = 0, roff = 0, self_s = 0, self_r = 0, n_self = 0;
    /* every peer's send and receive, then one wait: posting the receives first keeps
     * large messages off the unexpected-message queue */
    fg_req stack_reqs[64], *reqs = stack_reqs;
    if (2 * (size_t)p > sizeof stack_reqs / sizeof stack_reqs[0]) {
        reqs = fg_malloc(2 * (size_t)p * sizeof *reqs);
        if (!reqs)
            return fg_error(FG_ERR_NOMEM, "alltoallv: %d ranks: cannot allocate the request table", p);
    }
    memset(reqs, 0, 2 * (size_t)p * sizeof *reqs);
    fg_status st = FG_OK;
    for (int r = 0; r < p && st == FG_OK; r++) {
        if (r == me)
            self_r = roff, n_self = rcounts[r];
        else if (rcounts[r] > 0)
            st = fg_comm_irecv(c, (char *)recv + roff * es, rcounts[r], t, r, ALLTOALLV_TAG, &reqs[r]);
        roff += rcounts[r];
    }
    for (int r = 0; r < p && st == FG_OK; r++) {
        if (r == me) {
            self_s = soff;
            if (scounts[r] != n_self)
                st = fg_error(FG_ERR_INVALID, "alltoallv: rank %d sends itself %zu elements but expects %zu", me,
                              scounts[r], n_self);
        } else if (scounts[r] > 0) {
            st = fg_comm_isend(c, (const char *)send + soff * es, scounts[r], t, r, ALLTOALLV_TAG, &reqs[p + r]);
        }
        soff += scounts[r];
    }
    if (st == FG_OK && n_self > 0)
        memcpy((char *)recv + self_r * es, (const char *)send + self_s * es, n_self * es);
    fg_status wst = fg_comm_waitall(c, reqs, 2 * p); /* also after a failed start: no request left behind */
    if (reqs != stack_reqs)
        fg_free(reqs);
    return st != FG_OK ? st : wst;
}
