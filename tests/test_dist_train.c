/* test_dist_train.c: data-parallel training through `mpirun --oversubscribe frugal train
 * --dp N` against one process at the same global batch: dp 2 and 4, with and without
 * ZeRO-1, dense and MoE, 20 steps: losses to 1e-5 relative, final params to 1e-6. A dp=4
 * ZeRO-1 checkpoint resumes at dp 2 (ZeRO-1) and dp 1 with the same next losses. ZeRO-1's
 * optimizer state per rank is 1/N of the unsharded run's (the cost summary). A SIGKILLed
 * rank ends the job non-zero within 60 s, naming the rank; the run resumes at the same
 * and a smaller rank count. Top-k compression: density 1 is the dense sum, 5% meets the byte
 * targets, with ZeRO-1 equals the unsharded compressed run, the warm-up's densities, and a
 * resumed compressed run is bit-exact (the residuals are checkpointed per rank). A rank that
 * hangs alive is named by the watchdog (--comm-timeout) and the job ends. Skips when
 * this build has no MPI or mpirun is absent. */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dist_util.h"
#include "frugal/ckpt.h"
#include "frugal/dist.h"
#include "harness.h"

#define MPIRUN DIST_MPIRUN

static char bin[1024], data[4096];
static char out[65536];

static int count_ckpts(const char *dir);

static int train(int np, const char *args)
{
    char cmd[16384];
    if (np == 0)
        snprintf(cmd, sizeof cmd, "'%s' train %s", bin, args);
    else
        snprintf(cmd, sizeof cmd, MPIRUN " -np %d '%s' train --dp %d %s", np, bin, np, args);
    return fg_test_run(cmd, out, sizeof out);
}

static long opt_bytes(const char *log)
{
    const char *p = strstr(log, "optimizer / rank: ");
    return p ? atol(p + strlen("optimizer / rank: ")) : -1;
}

static void test_equivalence(const char *name, const char *model)
{
    char ref[1024], dir[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "%s %s --max-steps 20 --out '%s'", data, model, ref);
    int rc = train(0, args);
    FG_CHECK(rc == 0, "%s: single-process run: %s", name, out);
    long full = -1; /* m + v bytes of the unsharded dp run before each ZeRO-1 one */
    static const int nps[] = {2, 4};
    for (int i = 0; i < 2; i++)
        for (int zero = 0; zero < 2; zero++) {
            int np = nps[i];
            snprintf(dir, sizeof dir, "%s/%s_dp%d_z%d", fg_test_tmpdir(), name, np, zero);
            snprintf(args, sizeof args, "%s %s --max-steps 20 --zero %d --out '%s'", data, model, zero, dir);
            snprintf(what, sizeof what, "%s dp=%d%s", name, np, zero ? " ZeRO-1" : "");
            rc = train(np, args);
            FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
            if (rc != 0)
                continue;
            dist_check_losses(what, ref, dir, 1, 20);
            dist_check_params(what, ref, dir);
            long b = opt_bytes(out);
            if (!zero)
                full = b;
            if (zero) /* the partition's rounding: at most one float of m and v more than 1/N */
                FG_CHECK(b * np >= full && b * np <= full + 8L * np,
                         "%s: optimizer state %ld bytes per rank, %ld unsharded", what, b, full);
            else
                FG_CHECK(b > 0, "%s: optimizer state %ld bytes per rank reported", what, b);
        }
}

static void test_reshard(void)
{
    char ref[1024], src[1024], dir[1024], args[8192], what[256], cmd[4096];
    const char *model = "--n-layer 2 --n-head 2 --d-model 16";
    snprintf(ref, sizeof ref, "%s/dense_ref", fg_test_tmpdir());
    snprintf(src, sizeof src, "%s/reshard_dp4", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --stop-after 10 --ckpt-every 10 --zero 1 --out '%s'", data, model,
             src);
    int rc = train(4, args);
    FG_CHECK(rc == 0, "dp=4 ZeRO-1 first half: %s", out);
    dist_check_losses("dp=4 ZeRO-1 first half", ref, src, 1, 10);
    /* per-rank shard files: rank 0's main file holds the params only, each rank its m, v */
    {
        char **paths = NULL, zd[1200];
        int n = 0;
        snprintf(zd, sizeof zd, "%s/ckpt", src);
        bool ok = fg_ckpt_list(zd, &paths, &n) == FG_OK && n > 0;
        void *buf = NULL;
        size_t bytes = 0;
        FG_CHECK(ok && fg_ckpt_read_tensor(paths[n - 1], "params", &buf, &bytes) == FG_OK,
                 "dp=4 ZeRO-1: the main checkpoint holds the params");
        fg_free(buf);
        buf = NULL;
        FG_CHECK(ok && fg_ckpt_read_tensor(paths[n - 1], "adam.m", &buf, &bytes) != FG_OK,
                 "dp=4 ZeRO-1: the main checkpoint holds no whole adam.m");
        fg_clear_error();
        fg_free(buf);
        fg_ckpt_list_free(paths, n);
        for (int q = 0; q < 4; q++) {
            snprintf(zd, sizeof zd, "%s/ckpt/zero.rank%d", src, q);
            FG_CHECK(count_ckpts(zd) == 1, "dp=4 ZeRO-1: rank %d's shard file in %s", q, zd);
        }
    }
    /* one rank's shard missing (killed mid-write): the step is not usable, and here no
     * older one exists, so the resume fails naming the shard */
    snprintf(dir, sizeof dir, "%s/reshard_partial", fg_test_tmpdir());
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && rm '%s'/ckpt/zero.rank2/ckpt-*", src, dir, dir);
    FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "copy %s without rank 2's shard", src);
    snprintf(args, sizeof args, "%s %s --max-steps 20 --zero 1 --resume --out '%s'", data, model, dir);
    rc = train(2, args);
    FG_CHECK(rc != 0 && strstr(out, "zero.rank2: no ZeRO-1 shard of step 10"),
             "dp=4 ZeRO-1 checkpoint without rank 2's shard: exit %d: %s", rc, out);
    static const int nps[] = {2, 1};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/reshard_to_%d", fg_test_tmpdir(), nps[i]);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", src, dir);
        FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "copy %s", src);
        snprintf(args, sizeof args, "%s %s --max-steps 20 --zero %d --resume --out '%s'", data, model, nps[i] > 1, dir);
        rc = train(nps[i] > 1 ? nps[i] : 0, args);
        snprintf(what, sizeof what, "dp=4 ZeRO-1 checkpoint resumed at dp=%d", nps[i]);
        FG_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: exit %d: %s", what, rc, out);
        dist_check_losses(what, ref, dir, 11, 20);
        dist_check_params(what, ref, dir);
    }
}

/* Dynamic loss scaling with an overflow injected at step 5: under ZeRO-1 the inf sits in
 * the shards, the ranks agree to skip, and the run stays one process's. */
static void test_loss_scale(void)
{
    char ref[1024], dir[1024], args[8192];
    const char *model = "--n-layer 2 --n-head 2 --d-model 16 --max-steps 20 --loss-scale dynamic "
                        "--inject-overflow-step 5";
    snprintf(ref, sizeof ref, "%s/scaler_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/scaler_dp2", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0 && strstr(out, "1 step skipped"), "loss scaling, one process: %s", out);
    snprintf(args, sizeof args, "%s %s --zero 1 --out '%s'", data, model, dir);
    FG_CHECK(train(2, args) == 0 && strstr(out, "1 step skipped"), "loss scaling, dp=2 ZeRO-1: %s", out);
    dist_check_losses("loss scaling dp=2 ZeRO-1", ref, dir, 1, 20);
    dist_check_params("loss scaling dp=2 ZeRO-1", ref, dir);
}

/* bf16 Adam moments under ZeRO-1: each rank keeps its shard in bf16, checkpoints gather
 * them widened to fp32; the run stays one process's. */
static void test_bf16_moments(void)
{
    char ref[1024], dir[1024], args[8192];
    const char *model = "--n-layer 2 --n-head 2 --d-model 16 --max-steps 20 --adam-moments bf16 --ckpt-every 10";
    snprintf(ref, sizeof ref, "%s/bf16m_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/bf16m_dp2", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0, "bf16 moments, one process: %s", out);
    snprintf(args, sizeof args, "%s %s --zero 1 --out '%s'", data, model, dir);
    FG_CHECK(train(2, args) == 0, "bf16 moments, dp=2 ZeRO-1: %s", out);
    dist_check_losses("bf16 moments dp=2 ZeRO-1", ref, dir, 1, 20);
    dist_check_params("bf16 moments dp=2 ZeRO-1", ref, dir);
}

/* Top-k compression: at density 1 (every value sent, fp32, no local clipping) it is the
 * dense sum, so one process's training; at 5% the messages meet the byte targets and the
 * loss still falls. */
static double compress_ratio(const char *log)
{
    const char *p = strstr(log, "dense, ");
    return p ? atof(p + strlen("dense, ")) : 0.0;
}

static void test_compress(void)
{
    char ref[1024], dir[1024], args[8192];
    const char *model = "--n-layer 2 --n-head 2 --d-model 16";
    snprintf(ref, sizeof ref, "%s/dense_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/compress_all", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --compress 1 --compress-delta 0 --compress-clip 0 --out '%s'",
             data, model, dir);
    int rc = train(2, args);
    FG_CHECK(rc == 0, "compression at density 1: %s", out);
    dist_check_losses("dp=2 top-k at density 1", ref, dir, 1, 20);
    dist_check_params("dp=2 top-k at density 1", ref, dir);
    static const char *fmts[] = {"--compress-delta 0 --compress-bf16 0", "--compress-delta 1 --compress-bf16 1"};
    static const double want[] = {10.0, 20.0};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/compress5_%d", fg_test_tmpdir(), i);
        snprintf(args, sizeof args, "%s %s --max-steps 20 --compress 0.05 %s --out '%s'", data, model, fmts[i], dir);
        rc = train(4, args);
        FG_CHECK(rc == 0, "top-k 5%% (%s): %s", fmts[i], out);
        double ratio = compress_ratio(out);
        FG_CHECK(ratio >= want[i], "top-k 5%% (%s): %.2fx fewer bytes than dense (want >= %g)", fmts[i], ratio,
                 want[i]);
        static dist_curve c;
        FG_CHECK(dist_read_curve(dir, &c) && c.seen[1] && c.seen[20] && c.loss[20] < c.loss[1] - 0.05,
                 "top-k 5%% (%s): loss falls, %g -> %g", fmts[i], c.loss[1], c.loss[20]);
    }
    /* with ZeRO-1: the same sparse sum on every rank, AdamW on each rank's shard of it; the
     * same training as the unsharded compressed run (only the clipping norm is summed in
     * another order) */
    char zdir[1024];
    snprintf(ref, sizeof ref, "%s/compress5_1", fg_test_tmpdir());
    snprintf(zdir, sizeof zdir, "%s/compress5_zero", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --compress 0.05 %s --zero 1 --out '%s'", data, model, fmts[1],
             zdir);
    rc = train(4, args);
    FG_CHECK(rc == 0 && strstr(out, "ZeRO-1"), "top-k 5%% with ZeRO-1: %s", out);
    dist_check_losses("dp=4 top-k 5% ZeRO-1 against dp=4 top-k 5%", ref, zdir, 1, 20);
    dist_check_params("dp=4 top-k 5% ZeRO-1 against dp=4 top-k 5%", ref, zdir);
    /* the warm-up: 25%, 6.25% then the target, over the first 8 steps */
    snprintf(dir, sizeof dir, "%s/compress_warm", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 12 --compress 0.05 --compress-warmup 8 --out '%s'", data, model,
             dir);
    FG_CHECK(train(2, args) == 0, "top-k warm-up: %s", out);
    char *mj = NULL;
    size_t ml = 0;
    char mp[1100];
    snprintf(mp, sizeof mp, "%s/metrics.jsonl", dir);
    if (fg_read_file(mp, 0, &mj, &ml) == FG_OK) {
        FG_CHECK(strstr(mj, "\"step\": 4, \"loss") && strstr(mj, "\"comm_density\": 0.25}") &&
                     strstr(mj, "\"comm_density\": 0.0625}") && strstr(mj, "\"comm_density\": 0.05}"),
                 "top-k warm-up: densities 0.25, 0.0625, 0.05 in the metrics");
        const char *s5 = strstr(mj, "\"step\": 5, \"loss"), *s4 = strstr(mj, "\"step\": 4, \"loss");
        const char *e4 = s4 ? strchr(s4, '\n') : NULL, *e5 = s5 ? strchr(s5, '\n') : NULL;
        FG_CHECK(e4 && e5 && strstr(s4, "0.25}") < e4 && strstr(s5, "0.0625}") < e5,
                 "top-k warm-up: step 4 at 25%%, step 5 at 6.25%%");
        fg_free(mj);
    }
}

/* The compression residual is checkpointed per rank: a compressed run stopped at step 10
 * and resumed at the same rank count is the uninterrupted run, bit for bit (without the
 * residuals it is not: they would restart at zero); at another rank count the residuals
 * are summed and shared evenly. */
static void test_compress_resume(void)
{
    char ref[1024], dir[1024], dir4[1100], args[8192], cmd[4096];
    const char *model = "--n-layer 2 --n-head 2 --d-model 16 --max-steps 20 --ckpt-every 10 --compress 0.05";
    snprintf(ref, sizeof ref, "%s/cresume_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/cresume", fg_test_tmpdir());
    snprintf(dir4, sizeof dir4, "%s_dp4", dir);
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(2, args) == 0, "compressed dp=2, 20 steps: %s", out);
    snprintf(args, sizeof args, "%s %s --stop-after 10 --out '%s'", data, model, dir);
    FG_CHECK(train(2, args) == 0, "compressed dp=2, first 10 steps: %s", out);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", dir, dir4);
    FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "copy %s", dir);
    snprintf(args, sizeof args, "%s %s --resume --out '%s'", data, model, dir);
    FG_CHECK(train(2, args) == 0 && strstr(out, "resumed from") && !strstr(out, "residuals"),
             "compressed dp=2 resumed at step 10: %s", out);
    static dist_curve a, b;
    FG_CHECK(dist_read_curve(ref, &a) && dist_read_curve(dir, &b), "compressed resume: metrics");
    int differ = 0;
    for (int s = 1; s <= 20; s++)
        differ += !a.seen[s] || !b.seen[s] || a.loss[s] != b.loss[s];
    FG_CHECK(differ == 0, "compressed resume at dp=2: %d of 20 losses differ from the uninterrupted run", differ);
    dist_check_params_within("compressed resume at dp=2", ref, dir, 0);
    snprintf(args, sizeof args, "%s %s --resume --out '%s'", data, model, dir4);
    FG_CHECK(train(4, args) == 0 && strstr(out, "residuals of 2 ranks at step 10 summed and shared evenly by 4"),
             "compressed dp=2 checkpoint resumed at dp=4: %s", out);
}

/* ---- a rank killed mid-step ---- */

/* pid of the frugal process whose environment says OMPI_COMM_WORLD_RANK=rank and whose
 * command line names dir; 0 when none yet */
static pid_t find_rank(const char *dir, int rank)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    pid_t found = 0;
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        pid_t pid = (pid_t)atol(e->d_name);
        if (pid <= 0)
            continue;
        char path[128], buf[65536];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        bool mine = false;
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
            mine |= strcmp(buf + i, dir) == 0;
        if (!mine || !strstr(buf, "frugal"))
            continue;
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        f = fopen(path, "r");
        n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
            if (!strcmp(buf + i, want))
                found = pid;
    }
    closedir(d);
    return found;
}

static int count_ckpts(const char *dir)
{
    char **paths = NULL;
    int n = 0;
    if (fg_ckpt_list(dir, &paths, &n) != FG_OK)
        return 0;
    fg_ckpt_list_free(paths, n);
    return n;
}

static void test_kill(void)
{
    char dir[1024], ck[1100], logp[1100], args[8192], cmd[16384], ref[1024];
    const char *model = "--n-layer 2 --n-head 2 --d-model 16 --max-steps 100000 --ckpt-every 5";
    snprintf(dir, sizeof dir, "%s/killed", fg_test_tmpdir());
    snprintf(ck, sizeof ck, "%s/ckpt", dir);
    snprintf(logp, sizeof logp, "%s/killed.log", fg_test_tmpdir());
    snprintf(cmd, sizeof cmd, MPIRUN " -np 2 '%s' train --dp 2 --zero 1 %s %s --out %s > '%s' 2>&1", bin, data, model,
             dir, logp);
    pid_t job = fork();
    if (job == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* wait for two checkpoints, then kill rank 1 wherever it is in its step */
    pid_t victim = 0;
    for (int i = 0; i < 600 && !(count_ckpts(ck) >= 2 && (victim = find_rank(dir, 1))); i++)
        usleep(50000);
    FG_CHECK(victim > 0, "rank 1 of the job found after checkpoints");
    if (victim <= 0) {
        kill(job, SIGKILL);
        waitpid(job, NULL, 0);
        return;
    }
    usleep(30000);
    double t0 = fg_time_sec();
    kill(victim, SIGKILL);
    int status = 0;
    pid_t w = 0;
    while ((w = waitpid(job, &status, WNOHANG)) == 0 && fg_time_sec() - t0 < 90)
        usleep(50000);
    double took = fg_time_sec() - t0;
    if (w == 0) {
        kill(job, SIGKILL);
        waitpid(job, &status, 0);
    }
    FG_CHECK(w == job && took < 60, "job ended %.1f s after the kill (want < 60)", took);
    FG_CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0, "mpirun exit status %d (want non-zero)",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    char *log = NULL;
    size_t len = 0;
    if (fg_read_file(logp, 0, &log, &len) == FG_OK) {
        FG_CHECK(strstr(log, "rank 1") != NULL, "the message names rank 1:\n%s", log);
        fg_free(log);
    }
    /* resume at 2 and at 1 rank, 10 steps each past the checkpoint, against one process */
    int at = 0;
    {
        char **paths = NULL;
        int n = 0;
        if (fg_ckpt_list(ck, &paths, &n) == FG_OK && n > 0) {
            long step = 0;
            char *meta = NULL;
            if (fg_ckpt_load_file(paths[n - 1], &step, &meta, NULL, 0) == FG_OK)
                at = (int)step;
            fg_free(meta);
        }
        fg_ckpt_list_free(paths, n);
    }
    FG_CHECK(at >= 10, "a checkpoint at step %d survives the kill", at);
    int stop = at + 10;
    snprintf(ref, sizeof ref, "%s/kill_ref", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --stop-after %d --out '%s'", data, model, stop, ref);
    FG_CHECK(train(0, args) == 0, "reference: %s", out);
    char dir1[1100];
    snprintf(dir1, sizeof dir1, "%s_1", dir);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", dir, dir1);
    FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "copy");
    snprintf(args, sizeof args, "%s %s --zero 1 --stop-after %d --resume --out '%s'", data, model, stop, dir);
    FG_CHECK(train(2, args) == 0, "resume at dp=2: %s", out);
    dist_check_losses("killed, resumed at dp=2", ref, dir, at + 1, stop);
    dist_check_params("killed, resumed at dp=2", ref, dir);
    snprintf(args, sizeof args, "%s %s --stop-after %d --resume --out '%s'", data, model, stop, dir1);
    FG_CHECK(train(0, args) == 0, "resume at dp=1: %s", out);
    dist_check_losses("killed, resumed at dp=1", ref, dir1, at + 1, stop);
    dist_check_params("killed, resumed at dp=1", ref, dir1);
}

/* ---- a rank that hangs alive: the watchdog (--comm-timeout) ends the job naming it ---- */
static void test_hang(void)
{
    char ref[1024], dir[1024], args[8192];
    const char *model = "--n-layer 2 --n-head 2 --d-model 16";
    /* polled waits with a deadline train as plain MPI_Wait does */
    snprintf(ref, sizeof ref, "%s/dense_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/watchdog_ok", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --zero 1 --comm-timeout 120 --out '%s'", data, model, dir);
    FG_CHECK(train(2, args) == 0, "dp=2 with the watchdog on: %s", out);
    dist_check_losses("dp=2 with the watchdog on", ref, dir, 1, 20);
    /* rank 2 of 4 sleeps at step 3: the others' wait runs out after 3 s, the roll call
     * names it, the job ends non-zero */
    snprintf(dir, sizeof dir, "%s/watchdog_hang", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 100 --comm-timeout 3 --hang-rank 2 --hang-step 3 --out '%s'", data,
             model, dir);
    double t0 = fg_time_sec();
    int rc = train(4, args);
    double took = fg_time_sec() - t0;
    FG_CHECK(rc != 0, "a hung rank: mpirun exit %d (want non-zero)", rc);
    FG_CHECK(strstr(out, "watchdog: ") && strstr(out, "no answer within") && strstr(out, "from world rank 2:"),
             "a hung rank: the message names world rank 2:\n%s", out);
    FG_CHECK(took < 60, "a hung rank: the job ended after %.1f s (want < 60: 3 s deadline, 2 s roll call)", took);
}

int main(void)
{
    FG_TEST_BEGIN("dist_train");
    snprintf(bin, sizeof bin, "%s", fg_test_frugal_bin());
    char prep[1024];
    if (!dist_test_start("data-parallel training", bin, prep, sizeof prep))
        return fg_test_end();
    /* tiny models, one thread per rank: the two cores of CI run four ranks */
    snprintf(data, sizeof data,
             "--train-shards '%s/data/train.bin' --val-shards '%s/data/val.bin' --batch-size 2 --seq-len 16 "
             "--grad-accum 4 --val-every 0 --val-batches 1 --log-every 100000 --threads 1 --bucket-mb 0.002",
             prep, prep);
    test_equivalence("dense", "--n-layer 2 --n-head 2 --d-model 16");
    test_equivalence("moe", "--n-layer 2 --n-head 2 --d-model 16 --n-expert 4 --n-expert-active 2 "
                            "--n-shared-expert 1 --d-expert 16");
    test_reshard();
    test_compress();
    test_compress_resume();
    test_loss_scale();
    test_bf16_moments();
    test_kill();
    test_hang();
    return fg_test_end();
}
