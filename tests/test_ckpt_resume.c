/* test_ckpt_resume.c: checkpoints through the real trainer (FG_FRUGAL_BIN): 100 steps
 * straight against 50 + resume + 50 (dense, and MoE once the model accepts it) give
 * identical losses at every step and identical parameter and optimizer bytes; a run
 * SIGKILLed at >= 20 random moments (many inside checkpoint writes) always resumes from
 * the newest complete checkpoint and follows the uninterrupted loss curve exactly; a
 * flipped byte in the newest checkpoint is detected and the previous one is used. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frugal/ckpt.h"
#include "harness.h"

#define MAX_STEPS 400

static char bin[1024], shards[4096];

/* Losses per step from metrics.jsonl; a step may appear more than once (a resumed run
 * appends the steps after its checkpoint again): every occurrence is checked. */
typedef struct curve {
    double loss[MAX_STEPS + 1];
    int seen[MAX_STEPS + 1];
    int lines, bad_lines;
} curve;

static bool read_curve(const char *run, curve *c)
{
    char path[1200], line[1024];
    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    while (fgets(line, sizeof line, f)) {
        long step;
        double loss;
        int n = 0;
        if (sscanf(line, "{\"step\": %ld, \"loss\": %lf%n", &step, &loss, &n) != 2)
            continue; /* validation lines */
        if (line[n] != ',' || step < 1 || step > MAX_STEPS) {
            c->bad_lines++;
            continue;
        }
        c->lines++;
        if (c->seen[step]++ && c->loss[step] != loss)
            c->bad_lines++; /* a replayed step with another loss */
        c->loss[step] = loss;
    }
    fclose(f);
    return true;
}

/* Every step 1..n present in got with exactly the reference loss. */
static void check_curve(const char *what, const curve *ref, const curve *got, int n)
{
    int missing = 0, differ = 0, first = 0;
    for (int s = 1; s <= n; s++) {
        if (!got->seen[s])
            missing++;
        else if (got->loss[s] != ref->loss[s]) {
            differ++;
            first = first ? first : s;
        }
    }
    FG_CHECK(missing == 0 && differ == 0 && got->bad_lines == 0,
             "%s: %d steps missing, %d differ (first at step %d), %d inconsistent lines, of %d", what, missing, differ,
             first, got->bad_lines, n);
}

static int run_train(const char *args, const char *env, char *out, size_t cap)
{
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "env %s '%s' train %s", env ? env : "", bin, args);
    return fg_test_run(cmd, out, cap);
}

/* Compares one tensor of two checkpoint files, bit for bit. */
static bool same_tensor(const char *a, const char *b, const char *name)
{
    void *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    bool ok = fg_ckpt_read_tensor(a, name, &da, &na) == FG_OK && fg_ckpt_read_tensor(b, name, &db, &nb) == FG_OK &&
              na == nb && na > 0 && !memcmp(da, db, na);
    fg_free(da);
    fg_free(db);
    return ok;
}

static const char *newest_in(const char *dir)
{
    static char buf[2][1400];
    static int k;
    char *p = buf[k++ % 2];
    char **paths;
    int n;
    p[0] = 0;
    if (fg_ckpt_list(dir, &paths, &n) == FG_OK && n > 0)
        snprintf(p, 1400, "%s", paths[n - 1]);
    if (n >= 0)
        fg_ckpt_list_free(paths, n);
    return p;
}

/* 100 straight against 50 + resume + 50. */
static void test_resume(const char *what, const char *model)
{
    char a[1024], b[1024], args[16384], out[8192];
    snprintf(a, sizeof a, "%s/%s_straight", fg_test_tmpdir(), what);
    snprintf(b, sizeof b, "%s/%s_split", fg_test_tmpdir(), what);
    const char *common = "--max-steps 100 --ckpt-every 10 --val-every 0 --val-batches 1 --log-every 1000 --threads 1";
    snprintf(args, sizeof args, "%s %s %s --out '%s'", shards, model, common, a);
    int rc = run_train(args, NULL, out, sizeof out);
    if (rc != 0 && strstr(out, "model config")) {
        fg_test_skip(what, "the model rejects this config (not built yet?)");
        printf("  %s", out);
        return;
    }
    FG_CHECK(rc == 0, "%s straight run: %s", what, out);
    snprintf(args, sizeof args, "%s %s %s --out '%s' --stop-after 50", shards, model, common, b);
    FG_CHECK(run_train(args, NULL, out, sizeof out) == 0, "%s first half: %s", what, out);
    snprintf(args, sizeof args, "%s %s %s --out '%s' --resume 1", shards, model, common, b);
    FG_CHECK(run_train(args, NULL, out, sizeof out) == 0 && strstr(out, "at step 50"), "%s resume: %s", what, out);
    static curve ca, cb;
    FG_CHECK(read_curve(a, &ca) && read_curve(b, &cb), "metrics");
    check_curve(what, &ca, &cb, 100);
    FG_CHECK(ca.lines == 100 && cb.lines == 100, "%s: 100 loss lines each (%d, %d)", what, ca.lines, cb.lines);
    char fa[1200], fb[1200], ka[1200], kb[1200];
    snprintf(fa, sizeof fa, "%s/final", a);
    snprintf(fb, sizeof fb, "%s/final", b);
    snprintf(ka, sizeof ka, "%s/ckpt", a);
    snprintf(kb, sizeof kb, "%s/ckpt", b);
    FG_CHECK(same_tensor(newest_in(fa), newest_in(fb), "params"), "%s: final parameter bytes identical", what);
    const char *na = newest_in(ka), *nb = newest_in(kb);
    FG_CHECK(strstr(na, "ckpt-0000000100") && strstr(nb, "ckpt-0000000100"), "step-100 checkpoints: %s %s", na, nb);
    FG_CHECK(same_tensor(na, nb, "params") && same_tensor(na, nb, "adam.m") && same_tensor(na, nb, "adam.v"),
             "%s: params and Adam moments at step 100 identical", what);
}

static int count_suffix(const char *dir, const char *suffix)
{
    char cmd[1400], out[64];
    snprintf(cmd, sizeof cmd, "ls '%s' 2>/dev/null | grep -c '%s$'", dir, suffix);
    fg_test_run(cmd, out, sizeof out);
    return atoi(out);
}

/* Step of the newest checkpoint in dir that verifies, 0 when none. */
static long newest_valid(const char *dir, int *invalid)
{
    char **paths;
    int n;
    long best = 0;
    *invalid = 0;
    if (fg_ckpt_list(dir, &paths, &n) != FG_OK)
        return 0;
    for (int i = n - 1; i >= 0; i--) {
        fg_ckpt_info info;
        if (fg_ckpt_verify(paths[i]) == FG_OK && fg_ckpt_info_read(paths[i], &info) == FG_OK) {
            if (!best)
                best = info.step;
            fg_ckpt_info_free(&info);
        } else {
            (*invalid)++;
            printf("  does not verify: %s\n", fg_last_error());
        }
    }
    fg_ckpt_list_free(paths, n);
    return best;
}

static long resumed_step(const char *log)
{
    char buf[16384];
    FILE *f = fopen(log, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strstr(buf, "resumed from ");
    const char *q = p ? strstr(p, " at step ") : NULL;
    return q ? atol(q + 9) : -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts `frugal train args` with env, output to log; returns its pid. */
static pid_t spawn(const char *args, const char *env, const char *log)
{
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "exec env %s '%s' train %s > '%s' 2>&1", env, bin, args, log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void test_sigkill(void)
{
    const int steps = 300;
    char ref[1024], run[1024], ck[1200], log[1200], args[16384], base[8192], out[8192];
    snprintf(ref, sizeof ref, "%s/kill_ref", fg_test_tmpdir());
    snprintf(run, sizeof run, "%s/kill_run", fg_test_tmpdir());
    snprintf(ck, sizeof ck, "%s/ckpt", run);
    snprintf(log, sizeof log, "%s/kill.log", fg_test_tmpdir());
    snprintf(base, sizeof base,
             "%s --n-layer 1 --n-head 2 --d-model 16 --max-steps %d --val-every 0 --val-batches 1 --log-every 100000 "
             "--threads 1",
             shards, steps);
    /* the reference: no checkpoints at all */
    snprintf(args, sizeof args, "%s --out '%s' --ckpt-every 0", base, ref);
    FG_CHECK(run_train(args, NULL, out, sizeof out) == 0, "reference run: %s", out);
    static curve cref, crun;
    FG_CHECK(read_curve(ref, &cref) && cref.lines == steps, "reference curve");

    fg_rng rng;
    fg_rng_seed(&rng, 2024);
    int base_ms = 60, kills = 0, mid_write = 0, resumes_checked = 0, wrong_resume = 0, half_files = 0,
        finished_early = 0;
    for (int trial = 0; trial < 80; trial++) {
        int bad = 0;
        long expect = newest_valid(ck, &bad);
        half_files += bad;
        /* stop after enough kills, but only with a checkpoint past step 1 on disk: when a run
         * finished between kills, the directory was cleared and the next run may be killed
         * before its first write, leaving nothing for the flip and the final resume (seen on a
         * loaded machine) */
        if (kills >= 24 && expect > 1)
            break;
        /* checkpoint every step (a delta most of the time); odd trials stretch each write
         * (3 tensors x 4 ms) so the kill lands inside one, even trials write at full speed */
        const char *env = trial % 2 ? "FG_CKPT_WRITE_DELAY_MS=4" : "FG_CKPT_WRITE_DELAY_MS=0";
        snprintf(args, sizeof args, "%s --out '%s' --ckpt-every 1 %s", base, run,
                 expect ? "--resume 1" : "--overwrite 1");
        pid_t pid = spawn(args, env, log);
        int delay = base_ms + (int)fg_rng_below(&rng, 400);
        sleep_ms(delay);
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            finished_early++; /* the run ended before the kill: start a fresh one */
            FG_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "trial %d exited with %d", trial, status);
        } else {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            kills++;
            mid_write += count_suffix(ck, "\\.tmp\\.[0-9]*") /* fg_file_tx temp names */ > 0;
            int dummy_bad;
            if (!expect && !newest_valid(ck, &dummy_bad) && base_ms < 4000)
                base_ms *= 2; /* killed before the first checkpoint: a slow (loaded) machine, wait longer */
        }
        long got = resumed_step(log);
        if (expect && got >= 0) {
            resumes_checked++;
            if (got != expect) {
                wrong_resume++;
                printf("  trial %d: resumed at step %ld, newest valid checkpoint was %ld\n", trial, got, expect);
            }
        }
        if (finished_early) {
            /* compare the finished run, then restart from scratch */
            FG_CHECK(read_curve(run, &crun), "metrics of trial %d", trial);
            check_curve("run finished between kills", &cref, &crun, steps);
            finished_early = 0;
            char cmd[1400];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
            FG_CHECK(system(cmd) == 0, "clean");
        }
    }
    int bad = 0;
    long expect = newest_valid(ck, &bad);
    half_files += bad;
    printf("  %d SIGKILLs, %d with a checkpoint write in flight (a temp file left), %d resumes checked\n", kills,
           mid_write, resumes_checked);
    FG_CHECK(kills >= 20, "at least 20 kills (%d)", kills);
    FG_CHECK(mid_write >= 3, "some kills inside checkpoint writes (%d)", mid_write);
    FG_CHECK(half_files == 0, "no file under a checkpoint name ever failed to verify (%d did)", half_files);
    FG_CHECK(wrong_resume == 0 && resumes_checked >= 10, "every resume used the newest complete checkpoint (%d wrong)",
             wrong_resume);

    /* a flipped byte in the newest checkpoint: detected, the previous one used */
    if (expect > 1) {
        const char *newest = newest_in(ck);
        FILE *f = fopen(newest, "r+b");
        if (f) {
            fseek(f, 40, SEEK_SET);
            int c = fgetc(f);
            fseek(f, 40, SEEK_SET);
            fputc(c ^ 1, f);
            fclose(f);
        }
        int dummy;
        long prev = 0;
        char **paths;
        int n;
        if (fg_ckpt_list(ck, &paths, &n) == FG_OK) {
            for (int i = n - 1; i >= 0 && !prev; i--) {
                fg_ckpt_info info;
                if (fg_ckpt_verify(paths[i]) == FG_OK && fg_ckpt_info_read(paths[i], &info) == FG_OK) {
                    prev = info.step;
                    fg_ckpt_info_free(&info);
                }
            }
            fg_ckpt_list_free(paths, n);
        }
        (void)dummy;
        FG_CHECK(prev > 0 && prev < expect, "the flip leaves an older valid checkpoint (%ld < %ld)", prev, expect);
        expect = prev;
    }
    /* the last resume runs to the end */
    snprintf(args, sizeof args, "%s --out '%s' --ckpt-every 1 --resume 1", base, run);
    int rc = run_train(args, NULL, out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "at step %ld", expect);
    FG_CHECK(rc == 0 && strstr(out, want), "final resume %s: %s", want, out);
    FG_CHECK(strstr(out, "not usable") && strstr(out, "CRC"), "the flipped byte is reported with a warning");
    FG_CHECK(read_curve(run, &crun), "metrics of the killed run");
    check_curve("killed and resumed run vs uninterrupted", &cref, &crun, steps);
    printf("  %d loss lines for %d steps (replayed steps matched too)\n", crun.lines, steps);
    char fr[1200], fk[1200];
    snprintf(fr, sizeof fr, "%s/final", ref);
    snprintf(fk, sizeof fk, "%s/final", run);
    FG_CHECK(same_tensor(newest_in(fr), newest_in(fk), "params"), "final params identical to the uninterrupted run");
}

/* frugal ckpt info | verify | diff on the dense runs of test_resume. */
static void test_cli(void)
{
    char a[1024], b[1024], cmd[4096], out[16384];
    snprintf(a, sizeof a, "%s/dense_straight/ckpt", fg_test_tmpdir());
    snprintf(b, sizeof b, "%s/dense_split/ckpt", fg_test_tmpdir());
    if (access(a, F_OK) != 0) {
        fg_test_skip("cli", "the dense runs did not happen");
        return;
    }
    snprintf(cmd, sizeof cmd, "'%s' ckpt info '%s'", bin, a);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 0 && strstr(out, "latest -> ckpt-0000000100") && strstr(out, "delta"),
             "ckpt info DIR: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' ckpt info '%s/ckpt-0000000100-delta.fgck'", bin, a);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 0 && strstr(out, "xor-shuffle-zstd") && strstr(out, "adam.v") &&
                 strstr(out, "meta"),
             "ckpt info FILE: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' ckpt verify '%s'", bin, a);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 0 && strstr(out, "verify; --resume would load"), "ckpt verify: %s",
             out);
    snprintf(cmd, sizeof cmd, "'%s' ckpt diff '%s/ckpt-0000000100-delta.fgck' '%s/ckpt-0000000100-delta.fgck'", bin, a,
             b);
    int rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc <= 1 && !strstr(out, "words differ") && strstr(out, "params ") && strstr(out, "identical"),
             "ckpt diff of the two step-100 checkpoints: tensors identical: %s", out);
    snprintf(cmd, sizeof cmd, "'%s' ckpt diff '%s/ckpt-0000000090-delta.fgck' '%s/ckpt-0000000100-delta.fgck'", bin, a,
             a);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 1 && strstr(out, "words differ"), "ckpt diff 90 vs 100: %s", out);
    /* damaged, foreign and future files: a clear message and exit 1, never a crash */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && cp ckpt-0000000100-delta.fgck t.fgck && printf 'X' | dd of=t.fgck bs=1 seek=30 conv=notrunc "
             "2>/dev/null && '%s' ckpt verify t.fgck",
             a, bin);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 1 && strstr(out, "CRC mismatch"), "flipped: %s", out);
    snprintf(cmd, sizeof cmd, "cd '%s' && head -c 1000 ckpt-0000000100-delta.fgck > t.fgck && '%s' ckpt verify t.fgck",
             a, bin);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 1 && strstr(out, "truncated"), "truncated: %s", out);
    snprintf(cmd, sizeof cmd, "cd '%s' && echo '{\"not\": 1}' > t.fgck && '%s' ckpt info t.fgck", a, bin);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 1 && strstr(out, "not a frugal checkpoint"), "foreign: %s", out);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && cp ckpt-0000000100-delta.fgck t.fgck && printf '\\007' | dd of=t.fgck bs=1 seek=8 "
             "conv=notrunc 2>/dev/null && '%s' ckpt verify t.fgck 2>&1; rc=$?; rm -f t.fgck; exit $rc",
             a, bin);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 1 && strstr(out, "version 7 is newer"), "future: %s", out);
    /* a garbage `latest` is named as such, never printed raw (it used to be) */
    static char gcmd[8192];
    snprintf(gcmd, sizeof gcmd,
             "rm -rf '%s/../garbage' && cp -r '%s' '%s/../garbage' && printf 'HACKED\\033[31m\\n\\nmore' > "
             "'%s/../garbage/latest' && '%s' ckpt info '%s/../garbage'",
             a, a, a, a, bin, a);
    FG_CHECK(fg_test_run(gcmd, out, sizeof out) == 0 && strstr(out, "garbage/latest: not a checkpoint pointer") &&
                 strstr(out, "latest -> (invalid") && !strstr(out, "HACKED"),
             "garbage latest: %s", out);
}

int main(void)
{
    FG_TEST_BEGIN("ckpt_resume");
    const char *text = fg_test_shared_path("tinyshakespeare.txt");
    snprintf(bin, sizeof bin, "%s", fg_test_frugal_bin() ? fg_test_frugal_bin() : "");
    char out[8192];
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' train --help", bin);
    static char own_text[512];
    if (!text) {
        /* Without ../shared the resume and crash checks still run, on generated text:
         * they compare runs with each other, so any corpus with enough tokens will do. */
        snprintf(own_text, sizeof own_text, "%s/corpus.txt", fg_test_tmpdir());
        FILE *f = fopen(own_text, "w");
        fg_rng r;
        fg_rng_seed(&r, 7);
        for (int i = 0; f && i < 60000; i++) {
            static const char *words[] = {"the", "king", "shall", "speak", "of", "love", "and", "war", "my", "lord"};
            fprintf(f, "%s%s", words[fg_rng_below(&r, 10)], i % 12 == 11 ? ".\n" : " ");
        }
        FG_CHECK(f && fclose(f) == 0, "cannot write %s", own_text);
        text = own_text;
        printf("note: shared/data/tinyshakespeare.txt is absent; using generated text\n");
    }
    if (!bin[0] || access(bin, X_OK) != 0 || fg_test_run(cmd, out, sizeof out) != 0 || !strstr(out, "--stop-after") ||
        !strstr(out, "--resume")) {
        fg_test_skip("resume", "FG_FRUGAL_BIN has no `train` with --resume and --stop-after");
        return fg_test_end();
    }
    /* tokenise once; every run then reads the same shards */
    char prep[1024], args[16384];
    snprintf(prep, sizeof prep, "%s/prep", fg_test_tmpdir());
    snprintf(args, sizeof args, "--data '%s' --out '%s' --max-steps 1 --n-layer 1 --n-head 2 --d-model 16", text, prep);
    if (run_train(args, NULL, out, sizeof out) != 0) {
        FG_CHECK(0, "tokenising run: %s", out);
        return fg_test_end();
    }
    snprintf(shards, sizeof shards,
             "--train-shards '%s/data/train.bin' --val-shards '%s/data/val.bin' --batch-size 2 --seq-len 16", prep,
             prep);
    test_resume("dense", "--n-layer 2 --n-head 2 --d-model 16");
    test_resume("moe", "--n-layer 2 --n-head 2 --d-model 16 --n-expert 4 --n-expert-active 1 --n-shared-expert 1 "
                       "--d-expert 16");
    test_cli();
    test_sigkill();
    return fg_test_end();
}
