/* dist_util.h: helpers shared by the mpirun tests (test_dist_train, _ep, _pp, _tp): the
 * launcher line, a run's losses from metrics.jsonl, and two runs compared step by step. */
#ifndef FRUGAL_TEST_DIST_UTIL_H
#define FRUGAL_TEST_DIST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "frugal/ckpt.h"
#include "frugal/dist.h"
#include "harness.h"

#define DIST_MAX_STEPS 4096
/* oversubscribed (more ranks than cores), as root, leaks not checked under ASan (MPI's own) */
#define DIST_MPIRUN                                                                                                    \
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "                   \
    "ASAN_OPTIONS=detect_leaks=0 timeout 300 mpirun --oversubscribe"

typedef struct dist_curve {
    double loss[DIST_MAX_STEPS + 1];
    char seen[DIST_MAX_STEPS + 1];
    char layers[DIST_MAX_STEPS + 1][32]; /* "pp_layers" of each step ("" when absent) */
    int last;                            /* the highest step logged */
} dist_curve;

/* The common start of an mpirun test: skips `what` (and returns false) when this build has
 * no MPI, mpirun is not on PATH or the frugal binary `bin` is not built; else tokenises
 * the grammar corpus once, by a one-process run, into PREP/data/{train,val}.bin, with
 * PREP = <test tmpdir>/prep written to prep[cap], and returns true. */
static inline bool dist_test_start(const char *what, const char *bin, char *prep, size_t cap)
{
    if (!fg_dist_have_mpi()) {
        fg_test_skip(what, "this build has no MPI (libopenmpi-dev not found by CMake)");
        return false;
    }
    if (fg_test_run("command -v mpirun", NULL, 0) != 0) {
        fg_test_skip(what, "mpirun not on PATH (apt-get install openmpi-bin)");
        return false;
    }
    if (access(bin, X_OK) != 0) {
        fg_test_skip(what, "the frugal binary is not built");
        return false;
    }
    snprintf(prep, cap, "%s/prep", fg_test_tmpdir());
    char cmd[8192], log[16384];
    snprintf(cmd, sizeof cmd,
             "'%s' train --data '%s' --tokenizer byte --out '%s' --max-steps 1 --n-layer 1 --n-head 2 --d-model 16",
             bin, fg_test_grammar_corpus("corpus.txt"), prep);
    if (fg_test_run(cmd, log, sizeof log) != 0) {
        FG_CHECK(0, "%s: tokenising run: %s", what, log);
        return false;
    }
    return true;
}

/* step -> loss (and pp_layers) from RUN/metrics.jsonl; a step logged twice (a resumed
 * run) keeps the later */
static inline bool dist_read_curve(const char *run, dist_curve *c)
{
    char path[1200], line[4096];
    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    while (fgets(line, sizeof line, f)) {
        long step;
        double loss;
        if (sscanf(line, "{\"step\": %ld, \"loss\": %lf", &step, &loss) != 2 || step < 1 || step > DIST_MAX_STEPS)
            continue;
        c->loss[step] = loss;
        c->seen[step] = 1;
        if (step > c->last)
            c->last = (int)step;
        const char *p = strstr(line, "\"pp_layers\": [");
        c->layers[step][0] = '\0';
        if (p) {
            p += strlen("\"pp_layers\": [");
            size_t n = strcspn(p, "]");
            if (n < sizeof c->layers[step]) {
                memcpy(c->layers[step], p, n);
                c->layers[step][n] = '\0';
            }
        }
    }
    fclose(f);
    return true;
}

/* Steps from..to of dir against ref_dir: relative 1e-5 (the order of the reductions is
 * the only difference between the layouts). */
static inline void dist_check_losses(const char *what, const char *ref_dir, const char *dir, int from, int to)
{
    static dist_curve a, b;
    FG_CHECK(dist_read_curve(ref_dir, &a) && dist_read_curve(dir, &b), "%s: metrics", what);
    int missing = 0, worst_step = 0;
    double worst = 0;
    for (int s = from; s <= to; s++) {
        if (!a.seen[s] || !b.seen[s]) {
            missing++;
            continue;
        }
        double e = fabs(a.loss[s] - b.loss[s]) / fabs(a.loss[s]);
        if (e > worst)
            worst = e, worst_step = s;
    }
    FG_CHECK(missing == 0, "%s: %d of steps %d..%d missing", what, missing, from, to);
    FG_CHECK(worst <= 1e-5, "%s: loss relative error %.3g at step %d (want <= 1e-5)", what, worst, worst_step);
}

/* Final params against the reference: max |a - b| <= tol max(1, |b|); tol 0 asks for
 * every parameter equal bit for bit. */
static inline void dist_check_params_within(const char *what, const char *ref_dir, const char *dir, double tol)
{
    char pa[1200], pb[1200];
    char **la = NULL, **lb = NULL;
    int na = 0, nb = 0;
    snprintf(pa, sizeof pa, "%s/final", ref_dir);
    snprintf(pb, sizeof pb, "%s/final", dir);
    bool ok = fg_ckpt_list(pa, &la, &na) == FG_OK && fg_ckpt_list(pb, &lb, &nb) == FG_OK && na > 0 && nb > 0;
    FG_CHECK(ok, "%s: final checkpoints in %s and %s", what, pa, pb);
    if (ok) {
        void *da = NULL, *db = NULL;
        size_t sa = 0, sb = 0;
        ok = fg_ckpt_read_tensor(la[na - 1], "params", &da, &sa) == FG_OK &&
             fg_ckpt_read_tensor(lb[nb - 1], "params", &db, &sb) == FG_OK && sa == sb;
        FG_CHECK(ok, "%s: params readable, same size", what);
        if (ok) {
            const float *x = da, *y = db;
            double worst = 0;
            size_t diff = 0;
            for (size_t i = 0; i < sa / 4; i++) {
                double e = fabs((double)x[i] - y[i]) / fmax(1.0, fabs((double)x[i]));
                if (e > worst)
                    worst = e;
                diff += memcmp(x + i, y + i, 4) != 0;
            }
            if (tol == 0)
                FG_CHECK(diff == 0, "%s: %zu of %zu params differ (want bit-exact)", what, diff, sa / 4);
            else
                FG_CHECK(worst <= tol, "%s: params differ by %.3g (want <= %.3g)", what, worst, tol);
        }
        fg_free(da);
        fg_free(db);
    }
    fg_ckpt_list_free(la, na);
    fg_ckpt_list_free(lb, nb);
}

static inline void dist_check_params(const char *what, const char *ref_dir, const char *dir)
{
    dist_check_params_within(what, ref_dir, dir, 1e-6);
}

/* ZeRO-1 over `world` ranks: rank 0's cost summary (out) says it keeps ceil(n / world) of
 * the n params' fp32 m and v ("optimizer / rank"), i.e. 1/world of the unsharded 8 n
 * bytes, and the "memory / rank" line reports the same optimiser bytes beside whole
 * params and grads. With pp > 1 stages (stage-owned memory, docs/DIST.md "Memory per
 * rank") rank 0 keeps its stage's k < n params and grads and ceil(k / (world / pp)) of their
 * m and v: ZeRO-1 shards the stage's own tensors over the stage's ranks. */
static inline void dist_check_opt_shard_pp(const char *what, const char *out, int world, int pp)
{
    const char *pn = strstr(out, "params          : "), *po = strstr(out, "optimizer / rank: ");
    const char *pm = strstr(out, "memory / rank   : ");
    size_t n = 0, opt = 0, mp = 0, mg = 0, mo = 0, mz = 0;
    bool ok =
        pn && po && pm && sscanf(pn, "params          : %zu total", &n) == 1 &&
        sscanf(po, "optimizer / rank: %zu bytes", &opt) == 1 &&
        sscanf(pm, "memory / rank   : params %zu bytes, grads %zu bytes, optimizer %zu bytes, ZeRO grad shard %zu", &mp,
               &mg, &mo, &mz) == 4;
    FG_CHECK(ok, "%s: params, optimizer / rank and memory / rank lines in: %s", what, out);
    if (!ok)
        return;
    if (pp > 1) {
        size_t k = mp / 4, q = (size_t)(world / pp), want = (k + q - 1) / q;
        FG_CHECK(k < n && mg == mp && opt == 8 * want && mo == opt && mz == 4 * want,
                 "%s: rank 0 keeps params %zu grads %zu bytes of the %zu params' %zu, m+v %zu, shard %zu (want params "
                 "under the whole, m+v 8 x ceil(%zu / %zu) = %zu, shard %zu)",
                 what, mp, mg, n, 4 * n, opt, mz, k, q, 8 * want, 4 * want);
        return;
    }
    size_t want = (n + (size_t)world - 1) / (size_t)world; /* rank 0 keeps the rounded-up share */
    FG_CHECK(opt == 8 * want, "%s: rank 0 keeps %zu bytes of m+v, want 8 x ceil(%zu / %d) = %zu (1/%d of %zu)", what,
             opt, n, world, 8 * want, world, 8 * n);
    FG_CHECK(mo == opt && mp == 4 * n && mg == 4 * n && mz == 4 * want,
             "%s: memory / rank: params %zu grads %zu optimizer %zu shard %zu (want %zu %zu %zu %zu)", what, mp, mg, mo,
             mz, 4 * n, 4 * n, opt, 4 * want);
}

static inline void dist_check_opt_shard(const char *what, const char *out, int world)
{
    dist_check_opt_shard_pp(what, out, world, 1);
}

/* `frugal train ARGS` on np ranks under mpirun (np 0: one process, no launcher); its
 * stdout and stderr in out[cap]. */
static inline int dist_train(const char *bin, int np, const char *args, char *out, size_t cap)
{
    char cmd[20480];
    if (np == 0)
        snprintf(cmd, sizeof cmd, "'%s' train %s", bin, args);
    else
        snprintf(cmd, sizeof cmd, DIST_MPIRUN " -np %d '%s' train %s", np, bin, args);
    return fg_test_run(cmd, out, cap);
}

/* The run SRC, stopped at step 10 with a checkpoint (written at the layout named `from`),
 * resumed in a copy <SRC>_<i> at each of grids[0..n) on nps[i] ranks (0: one process):
 * each says "resumed from" and has REF's losses of steps 11..20 and REF's final params.
 * `args` is what every resume passes besides the grid (data, model, accumulation). */
static inline void dist_check_resumes(const char *bin, const char *from, const char *src, const char *ref,
                                      const char *args, int n, const char *const *grids, const int *nps)
{
    static char out[65536];
    char dir[1024], cmd[4096], line[16384], what[512];
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%.1000s_%d", src, i);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", src, dir);
        FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "copy %s", src);
        snprintf(line, sizeof line, "%s %s --resume --out '%s'", grids[i], args, dir);
        snprintf(what, sizeof what, "%s checkpoint resumed at %s", from, nps[i] ? grids[i] : "one process");
        int rc = dist_train(bin, nps[i], line, out, sizeof out);
        FG_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: exit %d: %s", what, rc, out);
        dist_check_losses(what, ref, dir, 11, 20);
        dist_check_params(what, ref, dir);
    }
}

/* The tiny-run flags every pipeline / tensor test trains with (prep: dist_test_start's):
 * 2 x 16 tokens, no validation, one thread per rank (CI's two cores run four ranks), 20
 * steps. */
static inline void dist_tiny_data(char *data, size_t cap, const char *prep)
{
    snprintf(data, cap,
             "--train-shards '%s/data/train.bin' --val-shards '%s/data/val.bin' --batch-size 2 --seq-len 16 "
             "--val-every 0 --val-batches 1 --log-every 100000 --threads 1 --max-steps 20",
             prep, prep);
}

/* ZeRO over the grid: `args` (data, model, accumulation) at each of grids[0..n) on nps[i]
 * ranks, in <tmp>/<name>_zero<i>, against the one-process run REF: rank 0 keeps 1/world of
 * m and v, losses of steps 1..20 and the final params are REF's. */
static inline void dist_check_sharded(const char *bin, const char *name, const char *ref, const char *args, int n,
                                      const char *const *grids, const int *nps)
{
    static char out[65536];
    char dir[1024], line[16384], what[512];
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/%.200s_zero%d", fg_test_tmpdir(), name, i);
        snprintf(line, sizeof line, "%s %s --out '%s'", grids[i], args, dir);
        snprintf(what, sizeof what, "%.200s %s", name, grids[i]);
        int rc = dist_train(bin, nps[i], line, out, sizeof out);
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0)
            continue;
        const char *pp = strstr(grids[i], "--pp ");
        dist_check_opt_shard_pp(what, out, nps[i], pp ? atoi(pp + 5) : 1);
        dist_check_losses(what, ref, dir, 1, 20);
        dist_check_params(what, ref, dir);
    }
}

#endif
