/* test_core.c: status/last-error, counted allocation with failure injection,
 * RNG reproducibility and moments, atomic file writes
 * (replace, abort, a real write failure) and the output lock across processes. */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frugal/core.h"
#include "frugal/hw.h"
#include "harness.h"

static void test_errors(void)
{
    fg_status st = fg_error(FG_ERR_FORMAT, "%s:%d: bad thing", "file.json", 3);
    FG_CHECK(st == FG_ERR_FORMAT, "fg_error returns its status");
    FG_CHECK(strcmp(fg_last_error(), "file.json:3: bad thing") == 0, "last error is '%s'", fg_last_error());
    FG_CHECK(strcmp(fg_status_str(FG_ERR_IO), "I/O error") == 0, "status string");
    FG_CHECK(fg_last_status() == FG_ERR_FORMAT, "last status is the one given to fg_error");
    fg_clear_error();
    FG_CHECK(fg_last_error()[0] == 0, "cleared");
    FG_CHECK(fg_last_status() == FG_ERR_INTERNAL, "no recorded status reads as a bug, never as FG_OK");
    fg_mem_fail_after(1);
    FG_CHECK(fg_malloc(8) == NULL && fg_last_status() == FG_ERR_NOMEM, "a failed allocation records FG_ERR_NOMEM");
}

static void test_alloc(void)
{
    size_t before = fg_mem_current();
    float *a = fg_malloc(1000 * sizeof(float));
    FG_CHECK(a != NULL && ((uintptr_t)a & 63) == 0, "64-byte aligned");
    FG_CHECK(fg_mem_current() == before + 4000, "counted %zu", fg_mem_current() - before);
    FG_CHECK(fg_mem_peak() >= before + 4000, "peak");
    a = fg_realloc(a, 8000 * sizeof(float));
    FG_CHECK(a && ((uintptr_t)a & 63) == 0, "realloc aligned");
    fg_free(a);
    FG_CHECK(fg_mem_current() == before, "freed");
    fg_free(NULL);
    fg_mem_fail_after(2);
    void *p1 = fg_malloc(10);
    void *p2 = fg_malloc(10);
    void *p3 = fg_malloc(10);
    FG_CHECK(p1 && !p2 && p3, "second allocation fails when injected");
    FG_CHECK(strstr(fg_last_error(), "injected") != NULL, "message says injected");
    fg_free(p1);
    fg_free(p3);
    FG_CHECK(fg_calloc(SIZE_MAX / 2, 4) == NULL, "calloc overflow refused");
}

static void test_rng(void)
{
    fg_rng r1, r2;
    fg_rng_seed(&r1, 42);
    fg_rng_seed(&r2, 42);
    int same = 1;
    for (int i = 0; i < 100; i++)
        same &= fg_rng_next(&r1) == fg_rng_next(&r2);
    FG_CHECK(same, "same seed, same stream");
    double s = 0, s2 = 0, u = 0;
    int n = 200000, below_ok = 1;
    for (int i = 0; i < n; i++) {
        double x = fg_rng_normal(&r1);
        s += x;
        s2 += x * x;
        float v = fg_rng_uniform(&r1);
        u += v;
        below_ok &= v >= 0 && v < 1 && fg_rng_below(&r1, 7) < 7;
    }
    FG_CHECK(fabs(s / n) < 0.01 && fabs(s2 / n - 1) < 0.02, "normal mean %.4f var %.4f", s / n, s2 / n);
    FG_CHECK(fabs(u / n - 0.5) < 0.005 && below_ok, "uniform mean %.4f", u / n);
}

/* Number of entries in dir whose name contains ".tmp" (leftover temp files). */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += strstr(de->d_name, ".tmp") != NULL;
    if (d)
        closedir(d);
    return n;
}

static bool file_is(const char *path, const char *want)
{
    char *got = NULL;
    size_t n = 0;
    bool ok = fg_read_file(path, 0, &got, &n) == FG_OK && n == strlen(want) && memcmp(got, want, n) == 0;
    fg_free(got);
    return ok;
}

static void test_file_commit(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/commit", fg_test_tmpdir());
    FG_CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    FG_CHECK(fg_file_commit(path, "old\n", 4) == FG_OK, "first commit: %s", fg_last_error());
    FG_CHECK(fg_file_commit(path, "new content\n", 12) == FG_OK, "replacing commit: %s", fg_last_error());
    FG_CHECK(file_is(path, "new content\n"), "commit replaced the content");
    FG_CHECK(count_tmp(dir) == 0, "no temp file left after commit");

    /* Streaming: many small writes cross the 64 KiB buffer. */
    fg_file_tx t;
    FG_CHECK(fg_file_tx_open(&t, path, 0) == FG_OK, "tx open");
    size_t total = 0;
    for (int i = 0; i < 20000; i++) {
        fg_file_tx_printf(&t, "%05d\n", i);
        total += 6;
    }
    FG_CHECK(fg_file_tx_status(&t) == FG_OK, "tx writes ok");
    FG_CHECK(file_is(path, "new content\n"), "old content visible until commit");
    FG_CHECK(fg_file_tx_commit(&t) == FG_OK, "tx commit: %s", fg_last_error());
    char *got = NULL;
    size_t n = 0;
    FG_CHECK(fg_read_file(path, 0, &got, &n) == FG_OK && n == total && !memcmp(got + n - 6, "19999\n", 6),
             "streamed file has %zu bytes, want %zu", n, total);
    fg_free(got);

    /* Abort leaves the old file as it was, and no temp file. */
    FG_CHECK(fg_file_commit(path, "keep me\n", 8) == FG_OK, "commit before abort");
    FG_CHECK(fg_file_tx_open(&t, path, 0) == FG_OK, "tx open for abort");
    fg_file_tx_write(&t, "partial", 7);
    fg_file_tx_abort(&t);
    fg_file_tx_abort(&t); /* twice is harmless */
    FG_CHECK(file_is(path, "keep me\n"), "abort left the old file");
    FG_CHECK(count_tmp(dir) == 0, "abort removed the temp file");

    /* A directory that does not exist: the message names the path. */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/missing/out.txt", dir);
    FG_CHECK(fg_file_commit(bad, "x", 1) == FG_ERR_IO && strstr(fg_last_error(), bad), "missing directory refused: %s",
             fg_last_error());
}

/* A real write failure: a child process with a 100 KiB file-size limit (writes past it
 * fail with EFBIG) streams 200 KiB. The first failing write must be the one reported,
 * by that write, by later writes and by commit; the old file stays; no temp file. */
static void test_file_write_error(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/full", fg_test_tmpdir());
    FG_CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    fg_test_write_file(path, "old", 3);
    int fds[2];
    FG_CHECK(pipe(fds) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {100 << 10, 100 << 10};
        setrlimit(RLIMIT_FSIZE, &rl);
        static char chunk[10 << 10];
        fg_file_tx t;
        char report[2048];
        int first_fail = -1;
        if (fg_file_tx_open(&t, path, 0) != FG_OK)
            _exit(3);
        for (int i = 0; i < 20; i++)
            if (fg_file_tx_write(&t, chunk, sizeof chunk) != FG_OK && first_fail < 0)
                first_fail = i;
        fg_status st = fg_file_tx_commit(&t);
        int len = snprintf(report, sizeof report, "%d %d %s", (int)st, first_fail, fg_last_error());
        if (write(fds[1], report, (size_t)len) != len)
            _exit(4);
        _exit(0);
    }
    close(fds[1]);
    char report[2048] = {0};
    ssize_t got = read(fds[0], report, sizeof report - 1);
    close(fds[0]);
    int wst = 0;
    waitpid(pid, &wst, 0);
    FG_CHECK(got > 0 && WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "child ran (status %d)", wst);
    int st = 0, first_fail = 0, off = 0;
    FG_CHECK(sscanf(report, "%d %d %n", &st, &first_fail, &off) == 2, "report '%s'", report);
    const char *msg = report + off;
    FG_CHECK(st == FG_ERR_IO, "commit after a failed write is FG_ERR_IO (%d)", st);
    /* The 64 KiB buffer first reaches the file during the 7th 10 KiB write; during the
     * 13th, 36 KiB of the second flush fit under the limit and the remaining 28 KiB fail:
     * that is the first failure, and the 13th write (index 12) reports it. */
    FG_CHECK(first_fail == 12, "the write that hit the limit reported it (write %d)", first_fail);
    FG_CHECK(strstr(msg, path) && strstr(msg, "write of 28672 bytes at byte 102400 failed") && strstr(msg, "too large"),
             "message names the first failing write: %s", msg);
    FG_CHECK(file_is(path, "old"), "old file untouched after a failed write");
    FG_CHECK(count_tmp(dir) == 0, "temp file removed after a failed write");
}

/* The lock across processes: a child holds it, the parent is refused with the child's
 * pid, and gets it once the child is gone. */
static void test_lock(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/run.lock", fg_test_tmpdir());
    int ready[2], go[2];
    FG_CHECK(pipe(ready) == 0 && pipe(go) == 0, "pipes");
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        fg_lock l;
        char c = fg_lock_acquire(&l, path) == FG_OK ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1)
            _exit(4);
        if (read(go[0], &c, 1) < 0) /* until the parent says so (or closes) */
            _exit(5);
        fg_lock_release(&l);
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    char c = 0;
    FG_CHECK(read(ready[0], &c, 1) == 1 && c == 'y', "child acquired the lock");
    fg_lock l;
    char want[64];
    snprintf(want, sizeof want, "locked by pid %ld", (long)pid);
    FG_CHECK(fg_lock_acquire(&l, path) == FG_ERR_IO, "second acquirer refused");
    FG_CHECK(strstr(fg_last_error(), want) && strstr(fg_last_error(), path), "message names the holder: %s",
             fg_last_error());
    fg_lock_release(&l); /* no-op after a failed acquire */
    FG_CHECK(write(go[1], "x", 1) == 1, "tell the child to go");
    close(go[1]);
    close(ready[0]);
    int wst = 0;
    waitpid(pid, &wst, 0);
    FG_CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "child exited cleanly");
    FG_CHECK(fg_lock_acquire(&l, path) == FG_OK, "acquired after the holder left: %s", fg_last_error());
    fg_lock l2;
    FG_CHECK(fg_lock_acquire(&l2, path) == FG_ERR_IO, "a second acquire in the same process is refused too");
    fg_lock_release(&l);
    FG_CHECK(fg_lock_acquire(&l2, path) == FG_OK, "free again after release");
    fg_lock_release(&l2);
}

int main(void)
{
    FG_TEST_BEGIN("core");
    test_errors();
    test_alloc();
    test_rng();
    test_file_commit();
    test_file_write_error();
    test_lock();
    FG_CHECK(fg_peak_rss_bytes() > 0, "peak RSS readable");
    return fg_test_end();
}
