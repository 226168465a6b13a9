/* test_dist_ep_comm.c: what expert parallelism adds to src/dist: fg_comm_alltoallv
 * (per-peer counts, zero-length pairs, the self block) and the byte counter of every
 * communicator (fg_comm_bytes_sent: the bandwidth-optimal count of each operation). In
 * one process on the local communicator, then the same program under `mpirun -np 4`
 * (FG_TEST_DIST_EP_MPI=1); skipped when mpirun or MPI is absent. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frugal/dist.h"
#include "harness.h"

/* elements rank s sends rank d: some pairs send nothing */
static size_t n_of(int s, int d)
{
    return (size_t)((s + 2 * d) % 3) * (size_t)(s + d + 1);
}

static float val(int s, int d, size_t i)
{
    return (float)(s * 1000 + d * 100) + (float)i;
}

static void test_alltoallv(fg_comm *c)
{
    int p = fg_comm_size(c), me = fg_comm_rank(c);
    size_t sc[8], rc[8], ns = 0, nr = 0;
    for (int r = 0; r < p; r++)
        sc[r] = n_of(me, r), rc[r] = n_of(r, me), ns += sc[r], nr += rc[r];
    float *s = fg_malloc((ns + 1) * sizeof *s), *d = fg_malloc((nr + 1) * sizeof *d);
    FG_ASSERT(s && d);
    size_t o = 0;
    for (int r = 0; r < p; r++)
        for (size_t i = 0; i < sc[r]; i++)
            s[o++] = val(me, r, i);
    double before = fg_comm_bytes_sent(c);
    FG_CHECK(fg_comm_alltoallv(c, s, sc, d, rc, FG_DT_F32) == FG_OK, "rank %d: alltoallv: %s", me, fg_last_error());
    int bad = 0;
    o = 0;
    for (int r = 0; r < p; r++)
        for (size_t i = 0; i < rc[r]; i++)
            bad += d[o++] != val(r, me, i);
    FG_CHECK(bad == 0, "rank %d of %d: %d received values wrong", me, p, bad);
    double want = 0;
    for (int r = 0; r < p; r++)
        want += r == me ? 0.0 : (double)sc[r] * sizeof(float);
    FG_CHECK(fg_comm_bytes_sent(c) - before == want, "rank %d: alltoallv counted %.0f bytes, sent %.0f to others", me,
             fg_comm_bytes_sent(c) - before, want);
    /* the counts must agree pairwise: a self block of the wrong size is refused */
    if (p == 1) {
        size_t one = 1, two = 2;
        FG_CHECK(fg_comm_alltoallv(c, s, &one, d, &two, FG_DT_F32) == FG_ERR_INVALID &&
                     strstr(fg_last_error(), "sends itself"),
                 "self block mismatch refused: %s", fg_last_error());
    }
    fg_free(s);
    fg_free(d);
}

static void test_counter(fg_comm *c)
{
    int p = fg_comm_size(c);
    float buf[64] = {0};
    int32_t blk[4 * 8] = {0}, out[4 * 8];
    double b0 = fg_comm_bytes_sent(c);
    FG_CHECK(fg_comm_allreduce(c, buf, 64, FG_DT_F32, FG_OP_SUM) == FG_OK, "allreduce");
    double b1 = fg_comm_bytes_sent(c);
    FG_CHECK(b1 - b0 == 2.0 * (p - 1) / p * 64 * 4, "all-reduce of 256 bytes over %d ranks counted %.1f", p, b1 - b0);
    FG_CHECK(fg_comm_alltoall(c, blk, out, 4, FG_DT_I32) == FG_OK, "alltoall");
    double b2 = fg_comm_bytes_sent(c);
    FG_CHECK(b2 - b1 == (double)(p - 1) * 16, "all-to-all of 16-byte blocks over %d ranks counted %.1f", p, b2 - b1);
}

static int run_checks(fg_comm *c)
{
    test_alltoallv(c);
    test_counter(c);
    return 0;
}

int main(void)
{
    if (getenv("FG_TEST_DIST_EP_MPI")) {
        FG_TEST_BEGIN("dist_ep_comm_mpi");
        fg_comm *w = NULL;
        FG_CHECK(fg_dist_init(NULL, NULL, 1, &w) == FG_OK, "MPI init: %s", fg_last_error());
        if (w) {
            run_checks(w);
            fg_comm_barrier(w);
            fg_dist_finalize(w);
        }
        return fg_test_end();
    }
    FG_TEST_BEGIN("dist_ep_comm");
    fg_comm *w = NULL;
    FG_CHECK(fg_dist_init(NULL, NULL, 0, &w) == FG_OK, "local init: %s", fg_last_error());
    run_checks(w);
    FG_CHECK(fg_comm_bytes_sent(w) == 0, "one process sends nothing: %.0f bytes counted", fg_comm_bytes_sent(w));
    fg_dist_finalize(w);
    if (!fg_dist_have_mpi()) {
        fg_test_skip("mpi alltoallv", "this build has no MPI (libopenmpi-dev not found by CMake)");
    } else if (fg_test_run("command -v mpirun", NULL, 0) != 0) {
        fg_test_skip("mpi alltoallv", "mpirun not on PATH (apt-get install openmpi-bin)");
    } else {
        char self[1024], cmd[2048], out[16384];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = 0;
        snprintf(cmd, sizeof cmd,
                 "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 FG_TEST_DIST_EP_MPI=1 "
                 "ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun --oversubscribe -np 4 '%s'",
                 self);
        int rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc == 0, "mpirun -np 4 exit %d:\n%s", rc, out);
        char *q = out;
        int passed_ranks = 0;
        while ((q = strstr(q, " 0 failed")) != NULL)
            passed_ranks++, q++;
        FG_CHECK(passed_ranks == 4, "every rank passed (%d of 4):\n%s", passed_ranks, out);
    }
    return fg_test_end();
}
