/* test_dist_pp.c: pipeline-parallel training through `mpirun --oversubscribe frugal train
 * --pp P [--dp D]` against one process at the same global batch: pp 2 at 1, 3 and 8
 * micro-batches, pp 4, dp 2 x pp 2, dense and MoE, gpt2 and llama, FFN sharing, 20 steps:
 * losses to 1e-5 relative, final params to 1e-6. A pp 2 checkpoint resumes at pp 1 and at
 * dp 2 x pp 2 with the same next losses. --zero 1 shards m, v over every rank (pp 2,
 * dp 2 x pp 2; rank 0 keeps 1/world of them) and its checkpoints resume unsharded, at
 * another sharded layout and at dp 2. With one stage slowed on purpose the balancer
 * moves layers off it at a checkpoint boundary and the losses stay one process's, with
 * --zero 1 too (the stage's shards re-cut, stage-owned memory kept). Layouts
 * the pipeline refuses say why. Skips when this build has no MPI or mpirun is absent. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist_util.h"
#include "frugal/ckpt.h"
#include "frugal/dist.h"
#include "harness.h"

static char bin[1024], data[4096];
static char out[65536];

/* np 0: one process, no launcher */
static int train(int np, const char *args)
{
    return dist_train(bin, np, args, out, sizeof out);
}

/* One layout against one process: pp 2 and dp 2 x pp 2 at 4 micro-batches. */
static void test_layout(const char *name, const char *model)
{
    char ref[1024], dir[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "%s %s --grad-accum 4 --out '%s'", data, model, ref);
    int rc = train(0, args);
    FG_CHECK(rc == 0, "%s: single-process run: %s", name, out);
    static const char *grids[] = {"--pp 2", "--dp 2 --pp 2"};
    static const int nps[] = {2, 4};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/%s_%d", fg_test_tmpdir(), name, i);
        snprintf(args, sizeof args, "%s %s %s --grad-accum 4 --out '%s'", grids[i], data, model, dir);
        snprintf(what, sizeof what, "%s %s", name, grids[i]);
        rc = train(nps[i], args);
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0)
            continue;
        FG_CHECK(strstr(out, "pipeline bubble : ") != NULL, "%s: the cost summary reports the bubble: %s", what, out);
        /* dense stages keep one activation set per micro-batch in flight (stage 0 of 2: two)
         * and never recompute; a stage with MoE layers recomputes instead */
        const char *sets = strstr(model, "n-expert")
                               ? "rank 0 keeps 1 activation sets"
                               : "rank 0 keeps 2 activation sets, 0.000 s of forward recomputation";
        FG_CHECK(strstr(out, sets) != NULL, "%s: \"%s\" in: %s", what, sets, out);
        dist_check_losses(what, ref, dir, 1, 20);
        dist_check_params(what, ref, dir);
    }
}

/* Micro-batch counts below, at and above the stage count (warm-up longer than the step,
 * an odd count, a long steady state), and four stages of one layer each. */
static void test_micro(void)
{
    const char *model = "--n-layer 4 --n-head 2 --d-model 16";
    static const int As[] = {1, 3, 8};
    for (int i = 0; i < 3; i++) {
        char ref[1024], dir[1024], args[8192], what[256];
        snprintf(ref, sizeof ref, "%s/micro%d_ref", fg_test_tmpdir(), As[i]);
        snprintf(args, sizeof args, "%s %s --grad-accum %d --out '%s'", data, model, As[i], ref);
        FG_CHECK(train(0, args) == 0, "grad_accum %d, one process: %s", As[i], out);
        int pps[] = {2, 4};
        for (int k = 0; k < (As[i] == 8 ? 2 : 1); k++) {
            snprintf(dir, sizeof dir, "%s/micro%d_pp%d", fg_test_tmpdir(), As[i], pps[k]);
            snprintf(args, sizeof args, "--pp %d %s %s --grad-accum %d --out '%s'", pps[k], data, model, As[i], dir);
            snprintf(what, sizeof what, "pp %d, %d micro-batches", pps[k], As[i]);
            int rc = train(pps[k], args);
            FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
            if (rc != 0)
                continue;
            char want[64];
            snprintf(want, sizeof want, "%.1f%% theoretical", 100.0 * (pps[k] - 1) / (As[i] + pps[k] - 1));
            FG_CHECK(strstr(out, want) != NULL, "%s: theoretical bubble %s in: %s", what, want, out);
            dist_check_losses(what, ref, dir, 1, 20);
            dist_check_params(what, ref, dir);
        }
    }
}

/* A checkpoint written by pp 2 resumes at pp 1 (one process) and at dp 2 x pp 2. */
static void test_resume(void)
{
    char ref[1024], src[1024], args[8192];
    const char *model = "--n-layer 4 --n-head 2 --d-model 16 --layout gpt2 --grad-accum 4";
    snprintf(ref, sizeof ref, "%s/resume_ref", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0, "resume reference: %s", out);
    snprintf(src, sizeof src, "%s/resume_pp2", fg_test_tmpdir());
    snprintf(args, sizeof args, "--pp 2 %s %s --stop-after 10 --ckpt-every 10 --out '%s'", data, model, src);
    FG_CHECK(train(2, args) == 0, "pp 2 first half: %s", out);
    dist_check_losses("pp 2 first half", ref, src, 1, 10);
    static const char *grids[] = {"", "--dp 2 --pp 2"};
    static const int nps[] = {0, 4};
    snprintf(args, sizeof args, "%s %s", data, model);
    dist_check_resumes(bin, "pp 2", src, ref, args, 2, grids, nps);
}

/* One stage slowed on purpose (--pp-slow-rank: 20 ms per layer per pass, a hundred
 * times the test model's compute): at the first checkpoint boundary the balancer moves
 * layers off it, 2|2 -> 3|1, and the training is still one process's. Without
 * --pp-balance the layers stay. */
static void test_balance(void)
{
    char ref[1024], dir[1024], args[8192];
    const char *model = "--layout llama --n-layer 4 --n-head 2 --d-model 16 --grad-accum 4 --max-steps 12";
    snprintf(ref, sizeof ref, "%s/balance_ref", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0, "balance reference: %s", out);
    for (int bal = 0; bal < 2; bal++) {
        snprintf(dir, sizeof dir, "%s/balance_%d", fg_test_tmpdir(), bal);
        snprintf(args, sizeof args,
                 "--pp 2 %s %s --pp-slow-rank 1 --pp-slow-ms 20 --pp-balance %d --ckpt-every 4 --out '%s'", data, model,
                 bal, dir);
        int rc = train(2, args);
        FG_CHECK(rc == 0, "slowed stage, balance %d: exit %d: %s", bal, rc, out);
        static dist_curve c;
        FG_CHECK(dist_read_curve(dir, &c), "slowed stage: metrics");
        FG_CHECK(!strcmp(c.layers[4], "2, 2"), "before the first boundary: layers %s (want 2, 2)", c.layers[4]);
        const char *want = bal ? "3, 1" : "2, 2";
        FG_CHECK(!strcmp(c.layers[5], want) && !strcmp(c.layers[12], want),
                 "balance %d: layers %s at step 5, %s at step 12 (want %s)", bal, c.layers[5], c.layers[12], want);
        if (bal)
            FG_CHECK(strstr(out, "pipeline balance: stage compute s") && strstr(out, "2|2 -> 3|1"),
                     "the balancer says what it moved: %s", out);
        dist_check_losses(bal ? "balanced pipeline" : "slowed pipeline", ref, dir, 1, 12);
        dist_check_params(bal ? "balanced pipeline" : "slowed pipeline", ref, dir);
    }
}

/* The balancer's split is saved with the checkpoint (a hint): a balanced pp 2 run stopped
 * at step 8 resumes at pp 2 with --pp-balance on its 3|1 split from step 9 on (not the
 * even 2|2 the balancer would have to find again), at pp 2 without the balancer on the
 * even split, and at one process (the split ignored); the losses stay one process's. */
static void test_balance_resume(void)
{
    char ref[1024], src[1024], dir[1024], args[8192], cmd[4096], what[256];
    const char *model = "--layout llama --n-layer 4 --n-head 2 --d-model 16 --grad-accum 4 --max-steps 12";
    const char *slow = "--pp-slow-rank 1 --pp-slow-ms 20 --ckpt-every 4";
    snprintf(ref, sizeof ref, "%s/balance_ref", fg_test_tmpdir());
    snprintf(src, sizeof src, "%s/balance_resume_src", fg_test_tmpdir());
    snprintf(args, sizeof args, "--pp 2 %s %s %s --pp-balance 1 --stop-after 8 --out '%s'", data, model, slow, src);
    FG_CHECK(train(2, args) == 0 && strstr(out, "2|2 -> 3|1"), "balanced first half: %s", out);
    static const char *grids[] = {"--pp 2 --pp-balance 1", "--pp 2 --pp-balance 0", ""};
    static const char *want[] = {"3, 1", "2, 2", ""};
    static const char *note[] = {"pipeline split 3|1 taken from the checkpoint",
                                 "pipeline split of 2 stages not taken (no --pp-balance)", NULL};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/balance_resume_%d", fg_test_tmpdir(), i);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", src, dir);
        FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "copy %s", src);
        snprintf(args, sizeof args, "%s %s %s %s --resume --out '%s'", grids[i], data, model, i < 2 ? slow : "", dir);
        snprintf(what, sizeof what, "balanced checkpoint resumed at '%s'", grids[i]);
        int rc = train(i < 2 ? 2 : 0, args);
        FG_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: exit %d: %s", what, rc, out);
        if (note[i])
            FG_CHECK(strstr(out, note[i]) != NULL, "%s: says \"%s\": %s", what, note[i], out);
        else
            FG_CHECK(strstr(out, "pipeline split") == NULL, "%s: no split to take: %s", what, out);
        static dist_curve c;
        FG_CHECK(dist_read_curve(dir, &c), "%s: metrics", what);
        FG_CHECK(!strcmp(c.layers[9], want[i]), "%s: layers %s at step 9 (want '%s')", what, c.layers[9], want[i]);
        dist_check_losses(what, ref, dir, 9, 12);
        dist_check_params(what, ref, dir);
    }
}

/* ZeRO-1 over the whole grid (--zero 1 with pp): every rank keeps 1/world of m and v,
 * the grads are reduce-scattered over every rank and the params all-gathered; pp 2 and
 * dp 2 x pp 2 against one process (the <name>_ref runs of test_layout), and a sharded pp 2
 * checkpoint resumes unsharded at one process, at dp 2 x pp 2 sharded over 4 and at dp 2
 * (ZeRO over dp) with the same next losses. */
static void test_zero(const char *name, const char *model)
{
    char ref[1024], src[1024], args[8192], what[256], cmd[4096];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    static const char *grids[] = {"--pp 2 --zero 1", "--dp 2 --pp 2 --zero 1"};
    static const int nps[] = {2, 4};
    snprintf(args, sizeof args, "%s %s --grad-accum 4", data, model);
    dist_check_sharded(bin, name, ref, args, 2, grids, nps);
    snprintf(src, sizeof src, "%s/%s_zero_src", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "--pp 2 --zero 1 %s %s --grad-accum 4 --stop-after 10 --ckpt-every 10 --out '%s'", data,
             model, src);
    FG_CHECK(train(2, args) == 0, "%s sharded pp 2 first half: %s", name, out);
    snprintf(cmd, sizeof cmd, "test -d '%s/ckpt/zero.rank1'", src);
    FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "%s: the sharded pp 2 run wrote rank 1's shard of m, v", name);
    static const char *rgrids[] = {"", "--dp 2 --pp 2 --zero 1", "--dp 2 --zero 1"};
    static const int rnps[] = {0, 4, 2};
    snprintf(what, sizeof what, "%s sharded pp 2", name);
    snprintf(args, sizeof args, "%s %s --grad-accum 4", data, model);
    dist_check_resumes(bin, what, src, ref, args, 3, rgrids, rnps);
}

/* Stage-owned memory (docs/DIST.md "Memory per rank"): rank 0's summary line
 * "stage mem bytes : whole W rank0 O0 resident R0 others O1 resident R1 peak P0 P1" (params +
 * grads + m + v: the whole model's, rank 0's share and resident pages, the largest other
 * rank's; peak: the most resident pages after any checkpoint, validation, best/, final/ or
 * resume). Each rank's resident pages are its share (plus a partial page at the ends of its
 * spans) and the share is the stage's layers, about 1/P of them. */
static bool stage_mem(const char *what, double v[7])
{
    const char *p = strstr(out, "stage mem bytes : ");
    bool ok = p && sscanf(p, "stage mem bytes : whole %lf rank0 %lf resident %lf others %lf resident %lf peak %lf %lf",
                          &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]) == 7;
    FG_CHECK(ok, "%s: the stage memory line in: %s", what, out);
    return ok;
}

/* The validation losses of metrics.jsonl (steps 2 and 4 here) against the reference's to
 * 1e-5 relative: validation through the pipeline computes one process's loss. */
static void check_val(const char *what, const char *ref, const char *dir)
{
    double va[2][8] = {{0}};
    int seen[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char path[1200], line[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", k ? dir : ref);
        FILE *f = fopen(path, "r");
        FG_CHECK(f != NULL, "%s: %s", what, path);
        while (f && fgets(line, sizeof line, f)) {
            long step = -1;
            double v = 0;
            if (sscanf(line, "{\"step\": %ld, \"val_loss\": %lf", &step, &v) == 2 && step >= 0 && step < 8) {
                va[k][step] = v;
                seen[k] |= 1 << step;
            }
        }
        if (f)
            fclose(f);
    }
    FG_CHECK(seen[0] && seen[0] == seen[1], "%s: validations at the same steps (%x, %x)", what, seen[0], seen[1]);
    for (int s = 0; s < 8; s++)
        if (seen[0] & seen[1] & (1 << s))
            FG_CHECK(fabs(va[0][s] - va[1][s]) <= 1e-5 * fabs(va[0][s]),
                     "%s: val loss at step %d: %.9g, one process %.9g", what, s, va[1][s], va[0][s]);
}

/* The peak check: no rank ever held more than its share, not rank 0 for a checkpoint (the
 * other stages stream their tensors to its writer), a validation (through the pipeline),
 * best/, final/, nor any rank at resume (each reads its own pieces of the file). Before,
 * rank 0 gathered the whole model for each and every rank loaded the whole file. */
static void check_peak(const char *what, const double v[7], double slack, double others_share)
{
    FG_CHECK(v[5] <= v[1] + slack && v[6] <= others_share + slack,
             "%s: peak resident %.0f / %.0f beyond the shares %.0f / %.0f of %.0f (rank 0 / the others)", what, v[5],
             v[6], v[1], v[3], v[0]);
}

static void test_memory(void)
{
    /* 8 layers of C 128: 1.63M params, 24.9 MiB of params + grads + m + v, tensors of many
     * pages (the spans' partial end pages are a small part); a checkpoint, a validation
     * and best/ every 2 steps, final/ at the end */
    const char *model = "--layout gpt2 --n-layer 8 --n-head 4 --d-model 128 --max-steps 4 --ckpt-every 2 "
                        "--val-every 2 --keep-best 1";
    const double slack = 1 << 20; /* partial pages: ~20 spans x 2 ends x 4 buffers x 4 KiB, doubled */
    char ref[1024], dir[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/mem_ref", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --grad-accum 4 --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0, "memory: one process: %s", out);
    /* the balanced run last: the checks below know it by its index */
    static const char *grids[] = {"--pp 2",
                                  "--pp 4",
                                  "--dp 2 --pp 2 --adam-moments bf16",
                                  "--tp 2 --pp 2",
                                  "--pp 2 --pp-chunks 2",
                                  "--dp 2 --pp 2 --zero 1",
                                  "--pp 2 --pp-balance --pp-slow-rank 1 --pp-slow-ms 30 --ckpt-every 2"};
    static const int nps[] = {2, 4, 4, 4, 2, 4, 2};
    const int n = (int)(sizeof nps / sizeof nps[0]);
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/mem_%d", fg_test_tmpdir(), i);
        snprintf(args, sizeof args, "%s %s %s --grad-accum 4 --out '%s'", grids[i], data, model, dir);
        snprintf(what, sizeof what, "memory %s", grids[i]);
        int rc = train(nps[i], args);
        double v[7];
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0 || !stage_mem(what, v))
            continue;
        int P = strstr(grids[i], "--pp 4") ? 4 : 2;
        double W = v[0]; /* with bf16 moments 12 bytes a param, the shares too */
        FG_CHECK(v[2] >= v[1] && v[4] >= v[3] && v[4] <= v[3] + slack,
                 "%s: resident pages %.0f / %.0f are the shares %.0f / %.0f (rank 0 / the others)", what, v[2], v[4],
                 v[1], v[3]);
        FG_CHECK(v[2] <= v[1] + slack, "%s: rank 0 resident %.0f beyond its share %.0f", what, v[2], v[1]);
        /* the balanced run's rank 1 kept half the layers until the move */
        check_peak(what, v, slack, i < n - 1 ? v[3] : W * (1.0 / P + 0.1));
        if (i != 2)
            check_val(what, ref, dir);
        if (i < n - 1) /* even split: each rank about W / P (the embedding rides on the end stages) */
            FG_CHECK(v[1] < W * (1.0 / P + 0.1) && v[3] < W * (1.0 / P + 0.1),
                     "%s: rank 0 keeps %.0f, the others at most %.0f of the %.0f bytes (want about 1/%d)", what, v[1],
                     v[3], W, P);
        else /* the balancer moved layers onto stage 0, their params and m, v with them */
            FG_CHECK(strstr(out, "-> ") && v[1] > W * 0.6 && v[3] < W * 0.4,
                     "%s: after the move rank 0 keeps %.0f, rank 1 %.0f of %.0f: %s", what, v[1], v[3], W, out);
        if (i != 2) /* bf16 moments are another optimiser */
            dist_check_losses(what, ref, dir, 1, 4);
        /* tp's partial sums, added in another order, move this model's params by up to
         * 4e-6 from one process's after 4 steps (the same bits with and without stage-owned
         * memory: the tp equivalence at 1e-6 is test_dist_tp's, on its models) */
        if (i != 2 && i != 3)
            dist_check_params(what, ref, dir);
    }
    /* resume: a pp 2 run stopped at step 2, resumed at pp 2 and at pp 4 (each rank reads its
     * own pieces of the one-process file rank 0 streamed, raw) */
    char src[1024];
    snprintf(src, sizeof src, "%s/mem_stop", fg_test_tmpdir());
    snprintf(args, sizeof args, "--pp 2 %s %s --grad-accum 4 --stop-after 2 --out '%s'", data, model, src);
    FG_CHECK(train(2, args) == 0, "memory: pp 2 stopped at step 2: %s", out);
    /* and a one-process run's zstd delta (every step checkpointed, shuffled + zstd: step 2
     * is a delta over a compressed full), resumed at pp 2: the pieces are decoded as the
     * file streams through a bounded buffer, never a whole tensor */
    char src1[1024];
    snprintf(src1, sizeof src1, "%s/mem_stop1", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --grad-accum 4 --stop-after 2 --ckpt-every 1 --ckpt-compress-full 1 --out '%s'",
             data, model, src1);
    FG_CHECK(train(0, args) == 0, "memory: one process stopped at step 2: %s", out);
    snprintf(args, sizeof args, "ls '%s/ckpt' | grep -q 0000000002-delta", src1);
    FG_CHECK(fg_test_run(args, NULL, 0) == 0, "memory: step 2 of the one-process run is a delta");
    static const char *rgrids[] = {"--pp 2", "--pp 4", "--pp 2"};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%.1000s_%d", src, i);
        snprintf(args, sizeof args, "rm -rf '%s' && cp -r '%s' '%s'", dir, i == 2 ? src1 : src, dir);
        FG_CHECK(fg_test_run(args, NULL, 0) == 0, "copy %s", src);
        snprintf(args, sizeof args, "%s %s %s --grad-accum 4 --resume --out '%s'", rgrids[i], data, model, dir);
        snprintf(what, sizeof what, "memory resume %s at %s", i == 2 ? "of a one-process zstd delta" : "", rgrids[i]);
        double v[7];
        int rc = train(i == 1 ? 4 : 2, args);
        FG_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: exit %d: %s", what, rc, out);
        if (rc != 0 || !stage_mem(what, v))
            continue;
        check_peak(what, v, slack, v[3]);
        dist_check_losses(what, ref, dir, 3, 4);
        dist_check_params(what, ref, dir);
    }
}

/* ZeRO-1 with the balancer keeps stage-owned memory (docs/DIST.md "Stage balancer"):
 * dp 2 x pp 2 --zero 1 with stage 1 slowed moves layers onto stage 0 at step 2, the moved
 * layers' params and m, v go with them and the shards of m, v are re-cut over each
 * stage's new spans; the run stays one process's (losses, params), each rank's resident
 * pages stay its share (with ZeRO-1 over the whole grid instead, every rank keeps every
 * tensor: the resident checks fail), and a checkpoint after the move resumes at one
 * process with the same next losses. */
static void test_zero_balance(void)
{
    /* 5 steps: at 6 the Debug (sanitizer) build's balanced dp 2 x pp 2 params drift 1.01e-6
     * from one process's, with or without ZeRO-1 (summation order, not the re-cut) */
    const char *model = "--layout gpt2 --n-layer 8 --n-head 4 --d-model 128 --max-steps 5 --ckpt-every 2 "
                        "--grad-accum 4";
    const char *grid = "--dp 2 --pp 2 --zero 1 --pp-balance 1 --pp-slow-rank 1 --pp-slow-ms 30";
    const double slack = 1 << 20; /* test_memory's: partial pages at the spans' ends */
    char ref[1024], dir[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/zb_ref", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0, "zero balance: one process: %s", out);
    snprintf(dir, sizeof dir, "%s/zb_run", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s %s --out '%s'", grid, data, model, dir);
    snprintf(what, sizeof what, "zero balance %s", grid);
    int rc = train(4, args);
    FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
    double v[7];
    if (rc == 0 && stage_mem(what, v)) {
        double W = v[0];
        FG_CHECK(strstr(out, "4|4 -> "), "%s: the balancer moved layers: %s", what, out);
        /* rank 0 (stage 0, now most layers): params + grads of its stage and half its m, v */
        FG_CHECK(v[2] >= v[1] && v[2] <= v[1] + slack && v[4] >= v[3] && v[4] <= v[3] + slack,
                 "%s: resident pages %.0f / %.0f are the shares %.0f / %.0f (rank 0 / the others)", what, v[2], v[4],
                 v[1], v[3]);
        /* an even split's share is under W / 2 (params + grads of half the layers, a
         * quarter of m, v); the largest other rank is rank 1, rank 0's partner on stage 0 */
        FG_CHECK(v[1] > W * 0.5 && v[1] < W * 0.8 && v[3] <= v[1] + slack,
                 "%s: after the move rank 0 keeps %.0f, the others at most %.0f of %.0f", what, v[1], v[3], W);
        check_peak(what, v, slack, v[3]);
    }
    static dist_curve c;
    if (rc == 0 && dist_read_curve(dir, &c)) {
        FG_CHECK(!strcmp(c.layers[2], "4, 4") && strcmp(c.layers[3], "4, 4") && !strcmp(c.layers[3], c.layers[5]),
                 "%s: layers %s at step 2, %s at 3, %s at 5 (a move at step 2)", what, c.layers[2], c.layers[3],
                 c.layers[5]);
    }
    dist_check_losses(what, ref, dir, 1, 5);
    dist_check_params(what, ref, dir);
    /* stopped at step 3 (its checkpoints at 2 and 3 after the move: the shards cut on the new
     * spans), resumed at one process and at the same grid (the even split again) */
    char src[1024];
    snprintf(src, sizeof src, "%s/zb_stop", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s %s --stop-after 3 --out '%s'", grid, data, model, src);
    rc = train(4, args);
    FG_CHECK(rc == 0 && strstr(out, "4|4 -> "), "zero balance stopped at step 3: exit %d: %s", rc, out);
    static const char *rgrids[] = {"", "--dp 2 --pp 2 --zero 1 --pp-balance 1"};
    static const int rnps[] = {0, 4};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%.1000s_%d", src, i);
        snprintf(args, sizeof args, "rm -rf '%s' && cp -r '%s' '%s'", dir, src, dir);
        FG_CHECK(fg_test_run(args, NULL, 0) == 0, "copy %s", src);
        snprintf(args, sizeof args, "%s %s %s --resume --out '%s'", rgrids[i], data, model, dir);
        snprintf(what, sizeof what, "zero balance checkpoint resumed at '%s'", rgrids[i]);
        rc = train(rnps[i], args);
        FG_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: exit %d: %s", what, rc, out);
        dist_check_losses(what, ref, dir, 4, 5);
        dist_check_params(what, ref, dir);
    }
}

/* Loss scaling with stage-owned memory: each stage unscales its own spans and the stages
 * agree on the overflow (a MAX), so the step with the injected inf is skipped everywhere
 * and the run stays one process's. */
static void test_loss_scale(void)
{
    const char *model = "--layout llama --n-layer 4 --n-head 2 --d-model 16 --grad-accum 4 --max-steps 8 "
                        "--loss-scale dynamic --inject-overflow-step 3";
    char ref[1024], dir[1024], args[8192], path[1200];
    snprintf(ref, sizeof ref, "%s/ls_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/ls_pp2", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0, "loss scaling, one process: %s", out);
    snprintf(args, sizeof args, "--pp 2 %s %s --out '%s'", data, model, dir);
    FG_CHECK(train(2, args) == 0, "loss scaling, pp 2: %s", out);
    snprintf(path, sizeof path, "grep -c '\"skipped\": 1' '%s/metrics.jsonl' | grep -qx 1", dir);
    FG_CHECK(fg_test_run(path, NULL, 0) == 0, "loss scaling, pp 2: one step skipped (the injected overflow)");
    dist_check_losses("loss scaling pp 2", ref, dir, 1, 8);
    dist_check_params("loss scaling pp 2", ref, dir);
}

/* What the pipeline does not run is refused with the reason. */
static void test_refused(void)
{
    char dir[1024], args[8192];
    snprintf(dir, sizeof dir, "%s/refused", fg_test_tmpdir());
    static const char *cases[][2] = {
        {"--pp 2 --n-layer 4 --n-head 2 --d-model 16 --precision bf16", "fp32 models only"},
        {"--pp 4 --n-layer 2 --n-head 2 --d-model 16", "exceeds 'n_layer' 2"},
        {"--pp 2 --n-layer 4 --n-head 2 --d-model 16 --compress 0.05", "'compress': not built"},
        {"--pp 2 --n-layer 4 --n-head 2 --d-model 16 --mtp-depth 1", "'mtp_depth' 1: not built"},
        /* the levers merged beside the pipeline (MLA, adaptive batch, augmentation) */
        {"--pp 2 --n-layer 4 --n-head 2 --d-model 16 --layout llama --mla-kv-rank 8", "multi-head latent attention"},
        {"--pp 2 --n-layer 4 --n-head 2 --d-model 16 --batch-rule loss_var --grad-accum 2", "adaptive 'batch_rule'"},
        {"--pp 2 --n-layer 4 --n-head 2 --d-model 16 --aug 1", "loss-driven augmentation"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        snprintf(args, sizeof args, "%s %s --overwrite 1 --out '%s'", cases[i][0], data, dir);
        int np = strstr(cases[i][0], "--pp 4") ? 4 : 2;
        int rc = train(np, args);
        FG_CHECK(rc != 0 && strstr(out, cases[i][1]), "'%s' refused with \"%s\": exit %d: %s", cases[i][0], cases[i][1],
                 rc, out);
    }
}

int main(void)
{
    FG_TEST_BEGIN("dist_pp");
    snprintf(bin, sizeof bin, "%s", fg_test_frugal_bin());
    char prep[1024];
    if (!dist_test_start("pipeline-parallel training", bin, prep, sizeof prep))
        return fg_test_end();
    dist_tiny_data(data, sizeof data, prep);
    const char *moe = "--n-expert 4 --n-expert-active 2 --n-shared-expert 1 --d-expert 16";
    char model[512];
    static const char *layouts[] = {"gpt2", "llama"};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s", layouts[i], k ? "moe" : "dense");
            snprintf(model, sizeof model, "--layout %s --n-layer 4 --n-head 2 --d-model 16 %s", layouts[i],
                     k ? moe : "");
            test_layout(name, model);
        }
    /* cross-layer FFN sharing: derived weights refreshed per stage, grads folded per layer */
    test_layout("llama_share_seed", "--layout llama --n-layer 4 --n-head 2 --d-model 16 --ffn-share seed");
    test_zero("gpt2_dense", "--layout gpt2 --n-layer 4 --n-head 2 --d-model 16");
    test_zero("llama_moe", "--layout llama --n-layer 4 --n-head 2 --d-model 16 --n-expert 4 --n-expert-active 2 "
                           "--n-shared-expert 1 --d-expert 16");
    test_micro();
    test_resume();
    test_balance();
    test_balance_resume();
    test_memory();
    test_zero_balance();
    test_loss_scale();
    test_refused();
    return fg_test_end();
}
