/* test_dist.c: the communicator. In one process: the single-process communicator (every
 * collective the identity, p2p refused), the grid's coordinates and its size check, the
 * shard partition. Then the same program is started by `mpirun -np 4 --oversubscribe`
 * (FG_TEST_DIST_MPI=1), where each rank checks every MPI collective, in place and
 * non-blocking, against the sums it can compute alone; skipped when mpirun or MPI is absent. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frugal/dist.h"
#include "harness.h"

static void test_local(void)
{
    fg_comm *w = NULL;
    FG_CHECK(fg_dist_init(NULL, NULL, 0, &w) == FG_OK, "local init: %s", fg_last_error());
    FG_CHECK(fg_comm_size(w) == 1 && fg_comm_rank(w) == 0, "local: rank %d of %d", fg_comm_rank(w), fg_comm_size(w));
    FG_CHECK(!strcmp(fg_comm_kind(w), "local"), "kind %s", fg_comm_kind(w));
    float buf[5] = {1, 2, 3, 4, 5}, out[5] = {0};
    FG_CHECK(fg_comm_allreduce(w, buf, 5, FG_DT_F32, FG_OP_SUM) == FG_OK && buf[4] == 5, "local allreduce");
    int counts[1] = {5}, displs[1] = {0};
    FG_CHECK(fg_comm_reduce_scatter(w, buf, out, counts, FG_DT_F32, FG_OP_SUM) == FG_OK && out[2] == 3,
             "local reduce-scatter copies");
    FG_CHECK(fg_comm_allgather(w, buf, counts, displs, FG_DT_F32) == FG_OK && buf[0] == 1, "local allgather");
    fg_req r;
    int done = 0;
    FG_CHECK(fg_comm_iallreduce(w, buf, 5, FG_DT_F32, FG_OP_SUM, &r) == FG_OK && fg_comm_test(w, &r, &done) == FG_OK &&
                 done,
             "local iallreduce completes");
    FG_CHECK(fg_comm_send(w, buf, 1, FG_DT_F32, 1, 0) == FG_ERR_INVALID && strstr(fg_last_error(), "no peer"),
             "local send refused: %s", fg_last_error());
    fg_grid g;
    FG_CHECK(fg_grid_init(&g, w, 2, 1, 1, 1) == FG_ERR_INVALID && strstr(fg_last_error(), "mpirun -np"),
             "grid size checked: %s", fg_last_error());
    FG_CHECK(fg_grid_init(&g, w, 1, 1, 1, 1) == FG_OK && fg_comm_size(g.dp_comm) == 1, "grid 1x1x1x1");
    fg_grid_free(&g);
    float *m = fg_comm_alloc(w, 64);
    FG_CHECK(m && m[15] == 0.0f, "alloc zeroed");
    fg_comm_free_mem(w, m);
    fg_dist_finalize(w);
    /* the partition: contiguous, covering, first n % p ranks one more */
    FG_CHECK(fg_dist_part_offset(10, 4, 0) == 0 && fg_dist_part_offset(10, 4, 1) == 3 &&
                 fg_dist_part_offset(10, 4, 2) == 6 && fg_dist_part_offset(10, 4, 3) == 8 &&
                 fg_dist_part_offset(10, 4, 4) == 10,
             "partition of 10 over 4");
}

/* The top-k codec: the k largest |v| are sent, decoded to the same places; error feedback
 * leaves exactly the unsent part (and bf16's rounding) in v; momentum masked where sent;
 * the message sizes give the byte ratios the issue targets. */
static void test_topk(void)
{
    enum { N = 4000 };
    static float v[N], v0[N], u[N], scratch[N], dst[N];
    static uint8_t msg[N * 9];
    fg_rng rng;
    fg_rng_seed(&rng, 7);
    for (int fmt = 0; fmt < 4; fmt++) {
        fg_topk_format f = {fmt & 1, fmt >> 1};
        for (int i = 0; i < N; i++) {
            v[i] = v0[i] = (float)(fg_rng_uniform(&rng) * 2 - 1) * (i % 7 == 0 ? 10.0f : 1.0f);
            u[i] = 1.0f;
        }
        v[5] = v0[5] = 20.0f; /* a tie at the top: both go */
        v[6] = v0[6] = -20.0f;
        size_t k = fg_topk_count(N, 0.05);
        FG_CHECK(k == 200, "k of 5%% of 4000: %zu", k);
        size_t bytes = fg_topk_encode(v, u, N, k, f, msg, scratch);
        FG_CHECK(bytes <= fg_topk_max_bytes(k, f), "message within its bound");
        memset(dst, 0, sizeof dst);
        FG_CHECK(fg_topk_decode_add(msg, bytes, N, k, f, dst) == bytes, "fmt %d: decodes all %zu bytes", fmt, bytes);
        /* sent + residual = original, exactly; sent ones are the k largest */
        int sent = 0, bad = 0;
        float min_sent = INFINITY, max_kept = 0;
        for (int i = 0; i < N; i++) {
            bad += dst[i] + v[i] != v0[i];
            if (dst[i] != 0) {
                sent++;
                min_sent = fminf(min_sent, fabsf(v0[i]));
                bad += u[i] != 0.0f;
            } else {
                max_kept = fmaxf(max_kept, fabsf(v0[i]));
            }
        }
        FG_CHECK(bad == 0 && sent == (int)k, "fmt %d: %d sent (want %zu), %d wrong", fmt, sent, k, bad);
        FG_CHECK(min_sent >= max_kept, "fmt %d: smallest sent %g >= largest kept %g", fmt, min_sent, max_kept);
        FG_CHECK(dst[5] != 0 && dst[6] != 0, "fmt %d: the largest two sent", fmt);
        if (!f.bf16) /* fp32: nothing left where sent */
            FG_CHECK(v[5] == 0.0f, "fmt %d: residual zero where sent", fmt);
        double ratio = (double)N * 4 / (double)bytes;
        if (fmt == 0)
            FG_CHECK(ratio >= 10.0, "5%% with uint32 indices, fp32 values: %.2fx fewer bytes (want >= 10)", ratio);
        if (fmt == 3)
            FG_CHECK(ratio >= 20.0, "5%% with delta indices, bf16 values: %.2fx fewer bytes (want >= 20)", ratio);
        FG_CHECK(fg_topk_decode_add(msg, bytes - 1, N, k, f, dst) == 0, "fmt %d: a truncated message is refused", fmt);
    }
    /* an index out of range is refused */
    fg_topk_format f = {0, 0};
    uint32_t bad_idx = N + 3;
    float val = 1;
    memcpy(msg, &bad_idx, 4);
    memcpy(msg + 4, &val, 4);
    FG_CHECK(fg_topk_decode_add(msg, 8, N, 1, f, dst) == 0, "index out of range refused");
}

/* Run by each of 4 MPI ranks. */
static void test_mpi_rank(void)
{
    fg_comm *w = NULL;
    if (fg_dist_init(NULL, NULL, 1, &w) != FG_OK) {
        FG_CHECK(0, "mpi init: %s", fg_last_error());
        return;
    }
    int r = fg_comm_rank(w), p = fg_comm_size(w);
    FG_CHECK(p == 4, "world size %d", p);
    enum { N = 1001 };
    float *buf = fg_comm_alloc(w, N * sizeof(float));
    for (int i = 0; i < N; i++)
        buf[i] = (float)(i + 1000 * r);
    fg_req req;
    FG_CHECK(fg_comm_iallreduce(w, buf, N, FG_DT_F32, FG_OP_SUM, &req) == FG_OK, "iallreduce: %s", fg_last_error());
    int done = 0;
    for (int k = 0; k < 1000000 && !done; k++)
        fg_comm_test(w, &req, &done);
    FG_CHECK(fg_comm_wait(w, &req) == FG_OK, "wait");
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += buf[i] != (float)(4 * i + 6000);
    FG_CHECK(bad == 0, "allreduce in place: %d wrong", bad);
    /* reduce-scatter of uneven segments straight out of the flat buffer */
    int counts[4], displs[4];
    for (int q = 0; q < 4; q++) {
        displs[q] = (int)fg_dist_part_offset(N, 4, q);
        counts[q] = (int)(fg_dist_part_offset(N, 4, q + 1) - displs[q]);
    }
    for (int i = 0; i < N; i++)
        buf[i] = (float)(i * (r + 1));
    float shard[N];
    FG_CHECK(fg_comm_reduce_scatter(w, buf, shard, counts, FG_DT_F32, FG_OP_SUM) == FG_OK, "reduce-scatter: %s",
             fg_last_error());
    bad = 0;
    for (int i = 0; i < counts[r]; i++)
        bad += shard[i] != (float)(10 * (displs[r] + i));
    FG_CHECK(bad == 0, "reduce-scatter: %d wrong", bad);
    /* allgather in place: each rank's segment written, the others garbage before */
    for (int i = 0; i < N; i++)
        buf[i] = -1;
    for (int i = 0; i < counts[r]; i++)
        buf[displs[r] + i] = (float)(displs[r] + i);
    FG_CHECK(fg_comm_allgather(w, buf, counts, displs, FG_DT_F32) == FG_OK, "allgather: %s", fg_last_error());
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += buf[i] != (float)i;
    FG_CHECK(bad == 0, "allgather in place: %d wrong", bad);
    /* all-to-all, gatherv, bcast, p2p, barrier */
    int32_t s[8], d[8];
    for (int q = 0; q < 4; q++)
        s[2 * q] = s[2 * q + 1] = 100 * r + q;
    FG_CHECK(fg_comm_alltoall(w, s, d, 2, FG_DT_I32) == FG_OK, "alltoall");
    bad = 0;
    for (int q = 0; q < 4; q++)
        bad += d[2 * q] != 100 * q + r || d[2 * q + 1] != 100 * q + r;
    FG_CHECK(bad == 0, "alltoall blocks: %d wrong", bad);
    double g[4] = {0};
    double mine = r + 0.5;
    int ones[4] = {1, 1, 1, 1}, at[4] = {0, 1, 2, 3};
    FG_CHECK(fg_comm_gatherv(w, &mine, 1, g, ones, at, FG_DT_F64, 0) == FG_OK, "gatherv");
    if (r == 0)
        FG_CHECK(g[0] == 0.5 && g[3] == 3.5, "gatherv on root: %g %g", g[0], g[3]);
    int64_t v = r == 2 ? 42 : 0;
    FG_CHECK(fg_comm_bcast(w, &v, 1, FG_DT_I64, 2) == FG_OK && v == 42, "bcast from 2: %ld", (long)v);
    int32_t tok = r, got = -1;
    fg_req rs, rr;
    FG_CHECK(fg_comm_isend(w, &tok, 1, FG_DT_I32, (r + 1) % 4, 7, &rs) == FG_OK &&
                 fg_comm_irecv(w, &got, 1, FG_DT_I32, (r + 3) % 4, 7, &rr) == FG_OK,
             "isend/irecv");
    fg_req both[2] = {rs, rr};
    FG_CHECK(fg_comm_waitall(w, both, 2) == FG_OK && got == (r + 3) % 4, "ring p2p got %d", got);
    /* the grid 2 x 2 (dp x tp): dp groups are ranks {0,2} and {1,3} */
    fg_grid gr;
    FG_CHECK(fg_grid_init(&gr, w, 2, 2, 1, 1) == FG_OK, "grid: %s", fg_last_error());
    FG_CHECK(gr.tp_rank == r % 2 && gr.dp_rank == r / 2, "grid coords tp %d dp %d", gr.tp_rank, gr.dp_rank);
    int32_t x = r;
    FG_CHECK(fg_comm_allreduce(gr.dp_comm, &x, 1, FG_DT_I32, FG_OP_SUM) == FG_OK && x == (r % 2) * 2 + 2,
             "dp group sum %d", x);
    fg_grid_free(&gr);
    FG_CHECK(fg_comm_barrier(w) == FG_OK, "barrier");
    fg_comm_free_mem(w, buf);
    fg_dist_finalize(w);
}

int main(void)
{
    if (getenv("FG_TEST_DIST_MPI")) {
        FG_TEST_BEGIN("dist_mpi");
        test_mpi_rank();
        return fg_test_end();
    }
    FG_TEST_BEGIN("dist");
    test_local();
    test_topk();
    if (!fg_dist_have_mpi()) {
        fg_test_skip("mpi collectives", "this build has no MPI (libopenmpi-dev not found by CMake)");
    } else if (fg_test_run("command -v mpirun", NULL, 0) != 0) {
        fg_test_skip("mpi collectives", "mpirun not on PATH (apt-get install openmpi-bin)");
    } else {
        char self[1024], cmd[2048], out[16384];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = 0;
        snprintf(cmd, sizeof cmd,
                 "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 FG_TEST_DIST_MPI=1 "
                 "ASAN_OPTIONS=detect_leaks=0 timeout 120 mpirun --oversubscribe -np 4 '%s'",
                 self);
        int rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc == 0, "mpirun -np 4 exit %d:\n%s", rc, out);
        FG_CHECK(strstr(out, " 0 failed") != NULL, "every rank passed:\n%s", out);
    }
    return fg_test_end();
}
