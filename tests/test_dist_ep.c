/* test_dist_ep.c: expert-parallel training through `mpirun --oversubscribe frugal train
 * --ep N` against one process at the same global batch: ep 2, ep 4 and dp 2 x ep 2, both
 * model layouts (gpt2, llama), 20 steps: losses to 1e-5 relative, final params to 1e-6;
 * checkpoints saved at ep 2 resume at ep 1 and at ep 1 resume at ep 2 with the same next
 * losses; node-limited routing at ep 4, experts re-placed by load every 4 steps (with and
 * without the spill of overloaded ranks' rows), too; ep with pipeline stages and tensor
 * parallelism (ep 2 x pp 2, dp 2 x ep 2 x pp 2 with the stage balancer, tp 2 x ep 2, dp 2
 * x tp 2 x ep 2, tp 2 x ep 2 x pp 2), and an ep 2 x pp 2 checkpoint resumed at ep 4.
 * Skips when this build has no MPI or mpirun is absent. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist_util.h"
#include "frugal/ckpt.h"
#include "frugal/dist.h"
#include "harness.h"

#define MPIRUN DIST_MPIRUN

static char bin[1024], data[4096];
static char out[65536];

/* np 0: one process, no launcher; else mpirun -np dp*ep */
static int train(int dp, int ep, const char *args)
{
    char cmd[16384];
    if (dp * ep == 1)
        snprintf(cmd, sizeof cmd, "'%s' train %s", bin, args);
    else
        snprintf(cmd, sizeof cmd, MPIRUN " -np %d '%s' train --dp %d --ep %d %s", dp * ep, bin, dp, ep, args);
    return fg_test_run(cmd, out, sizeof out);
}

/* bytes per step of the expert all-to-alls, from the cost summary; -1 when absent */
static double ep_bytes(const char *log)
{
    const char *p = strstr(log, "expert parallel : ");
    return p ? atof(p + strlen("expert parallel : ")) : -1.0;
}

static const char *model_of(const char *layout, char *buf, size_t cap)
{
    /* 8 experts: ep 4 leaves two per rank, so the owner runs several experts at once;
     * capacity 1.5 drops a few rows on the token's rank, before any exchange */
    snprintf(buf, cap,
             "--layout %s --n-layer 3 --n-head 2 --d-model 16 --n-dense-layers 1 --n-expert 8 --n-expert-active 2 "
             "--n-shared-expert 1 --d-expert 8 --capacity-factor 1.5",
             layout);
    return buf;
}

static void test_equivalence(const char *layout)
{
    char ref[1024], dir[1024], args[8192], what[256], model[1024];
    model_of(layout, model, sizeof model);
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), layout);
    snprintf(args, sizeof args, "%s %s --max-steps 20 --out '%s'", data, model, ref);
    int rc = train(1, 1, args);
    FG_CHECK(rc == 0, "%s: single-process run: %s", layout, out);
    static const int grid[][2] = {{1, 2}, {1, 4}, {2, 2}};
    for (int i = 0; i < 3; i++) {
        int dp = grid[i][0], ep = grid[i][1];
        snprintf(dir, sizeof dir, "%s/%s_dp%d_ep%d", fg_test_tmpdir(), layout, dp, ep);
        snprintf(args, sizeof args, "%s %s --max-steps 20 --out '%s'", data, model, dir);
        snprintf(what, sizeof what, "%s dp=%d ep=%d", layout, dp, ep);
        rc = train(dp, ep, args);
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0)
            continue;
        FG_CHECK(ep_bytes(out) > 0, "%s: the expert all-to-alls moved bytes:\n%s", what, out);
        dist_check_losses(what, ref, dir, 1, 20);
        dist_check_params(what, ref, dir);
    }
}

/* A checkpoint holds the whole flat buffer whatever the layout: ep 2 -> ep 1, ep 1 -> ep 2. */
static void test_resume(void)
{
    char ref[1024], src[1024], args[8192], what[256], model[1024];
    model_of("llama", model, sizeof model);
    snprintf(ref, sizeof ref, "%s/llama_ref", fg_test_tmpdir());
    static const int from[] = {2, 1}, to[] = {1, 2};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/resume_ep%d_to_ep%d", fg_test_tmpdir(), from[i], to[i]);
        snprintf(args, sizeof args, "%s %s --max-steps 20 --stop-after 10 --ckpt-every 10 --out '%s'", data, model,
                 src);
        snprintf(what, sizeof what, "ep=%d first half", from[i]);
        int rc = train(1, from[i], args);
        FG_CHECK(rc == 0, "%s: %s", what, out);
        dist_check_losses(what, ref, src, 1, 10);
        snprintf(args, sizeof args, "%s %s --max-steps 20 --resume --out '%s'", data, model, src);
        rc = train(1, to[i], args);
        snprintf(what, sizeof what, "ep=%d checkpoint resumed at ep=%d", from[i], to[i]);
        FG_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: exit %d: %s", what, rc, out);
        dist_check_losses(what, ref, src, 11, 20);
        dist_check_params(what, ref, src);
    }
}

/* The expert placement is saved with the checkpoint (a hint): an ep 4 run re-placed at
 * step 4 and stopped at step 8 resumes at ep 4 with the experts where step 4 put them
 * (the same number off their contiguous blocks as moved then), and at ep 2 from the
 * contiguous blocks; the losses stay one process's. */
static void test_placement_resume(void)
{
    char ref[1024], src[1024], dir[1024], args[8192], cmd[4096], model[1024], want[128];
    model_of("llama", model, sizeof model);
    snprintf(ref, sizeof ref, "%s/llama_ref", fg_test_tmpdir());
    snprintf(src, sizeof src, "%s/placed_src", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --ckpt-every 4 --stop-after 8 --out '%s'", data, model, src);
    FG_CHECK(train(1, 4, args) == 0, "ep=4 first half: %s", out);
    const char *p = strstr(out, "re-placed on the same loads, ");
    int moved = p ? atoi(p + strlen("re-placed on the same loads, ")) : -1;
    FG_CHECK(moved > 0, "experts moved at step 4 (%d): %s", moved, out);
    static const int eps[] = {4, 2};
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/placed_resume_ep%d", fg_test_tmpdir(), eps[i]);
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", src, dir);
        FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "copy %s", src);
        snprintf(args, sizeof args, "%s %s --max-steps 20 --ckpt-every 4 --resume --out '%s'", data, model, dir);
        int rc = train(1, eps[i], args);
        if (eps[i] == 4)
            snprintf(want, sizeof want, "expert placement taken from the checkpoint (%d experts off", moved);
        else
            snprintf(want, sizeof want, "expert placement of ep 4 not taken (another ep)");
        FG_CHECK(rc == 0 && strstr(out, want), "ep=4 checkpoint resumed at ep=%d says \"%s\": exit %d: %s", eps[i],
                 want, rc, out);
        dist_check_losses("placed checkpoint resumed", ref, dir, 9, 20);
        dist_check_params("placed checkpoint resumed", ref, dir);
    }
}

/* Expert parallelism with the other model splits: inside pipeline stages (each stage's
 * ep group exchanges the rows of that stage's MoE layers) and with tensor parallelism
 * (each expert split by hidden units over the tp group; the ep group joins ranks of equal
 * tp rank, which exchange their slices' rows). ep 2 x pp 2, dp 2 x ep 2 x pp 2 with the
 * stage balancer on (every replica must draw the same split, or the ep groups, which span
 * the replicas, would exchange different layers' rows and hang), tp 2 x ep 2, dp 2 x tp 2
 * x ep 2 and tp 2 x ep 2 x pp 2 (8 ranks), experts re-placed every 4 steps; the ep 2 x pp 2
 * run stops at step 10 and its checkpoint resumes at ep 4. */
static void test_grids(const char *layout)
{
    char ref[1024], dir[1024], args[8192], what[256], model[1024], cmd[16384];
    model_of(layout, model, sizeof model);
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), layout);
    static const char *grids[] = {"--dp 1 --ep 2 --pp 2", "--dp 2 --ep 2 --pp 2 --pp-balance 1", "--tp 2 --ep 2",
                                  "--dp 2 --tp 2 --ep 2", "--tp 2 --ep 2 --pp 2"};
    static const int nps[] = {4, 8, 4, 8, 8};
    for (int i = 0; i < 5; i++) {
        snprintf(dir, sizeof dir, "%s/%s_grid_%d", fg_test_tmpdir(), layout, i);
        snprintf(cmd, sizeof cmd, MPIRUN " -np %d '%s' train %s %s %s --max-steps 20 --ckpt-every 4 %s --out '%s'",
                 nps[i], bin, grids[i], data, model, i == 0 ? "--stop-after 10" : "", dir);
        snprintf(what, sizeof what, "%s %s", layout, grids[i]);
        int rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0)
            continue;
        const char *other = strstr(grids[i], "--pp") ? "pipeline        : 2 stages" : "tensor parallel : 2 ranks";
        FG_CHECK(ep_bytes(out) > 0 && strstr(out, other), "%s: ep and the other split both ran: %s", what, out);
        dist_check_losses(what, ref, dir, 1, i == 0 ? 10 : 20);
        if (i > 0)
            dist_check_params(what, ref, dir);
    }
    snprintf(dir, sizeof dir, "%s/%s_grid_0", fg_test_tmpdir(), layout);
    snprintf(args, sizeof args, "%s %s --max-steps 20 --ckpt-every 4 --resume --out '%s'", data, model, dir);
    snprintf(what, sizeof what, "%s ep 2 x pp 2 checkpoint resumed at ep 4", layout);
    int rc = train(1, 4, args);
    FG_CHECK(rc == 0 && strstr(out, "resumed from"), "%s: exit %d: %s", what, rc, out);
    dist_check_losses(what, ref, dir, 11, 20);
    dist_check_params(what, ref, dir);
}

/* Node-limited routing (each token's experts from at most 2 of 4 groups = ep ranks):
 * the same training at ep 4 as in one process. */
static void test_node_limited(void)
{
    char ref[1024], dir[1024], args[8192], model[1024], m2[1200];
    model_of("llama", model, sizeof model);
    snprintf(m2, sizeof m2, "%s --route-groups 4 --route-max-groups 2", model);
    snprintf(ref, sizeof ref, "%s/limited_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/limited_ep4", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --out '%s'", data, m2, ref);
    FG_CHECK(train(1, 1, args) == 0, "node-limited routing, one process: %s", out);
    snprintf(args, sizeof args, "%s %s --max-steps 20 --out '%s'", data, m2, dir);
    FG_CHECK(train(1, 4, args) == 0, "node-limited routing, ep=4: %s", out);
    dist_check_losses("node-limited routing ep=4", ref, dir, 1, 20);
    dist_check_params("node-limited routing ep=4", ref, dir);
}

/* Experts re-placed by their load at every checkpoint boundary (each 4 steps): the
 * training is one process's all the same (the weights are on every rank; only who
 * computes which rows changes). */
static int moved_total(const char *log)
{
    int total = 0;
    for (const char *p = log; (p = strstr(p, "re-placed on the same loads, ")) != NULL; p++)
        total += atoi(p + strlen("re-placed on the same loads, "));
    return total;
}

static void test_replacement(void)
{
    char ref[1024], dir[1024], args[8192], model[1024];
    model_of("llama", model, sizeof model);
    snprintf(ref, sizeof ref, "%s/llama_ref", fg_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/replaced_ep4", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --ckpt-every 4 --log-every 1 --out '%s'", data, model, dir);
    int rc = train(1, 4, args);
    FG_CHECK(rc == 0, "ep=4 with re-placement: %s", out);
    int moved = moved_total(out);
    FG_CHECK(moved > 0, "experts moved at the checkpoint boundaries (%d):\n%s", moved, out);
    dist_check_losses("ep=4 re-placed every 4 steps", ref, dir, 1, 20);
    dist_check_params("ep=4 re-placed every 4 steps", ref, dir);
    /* the spill only ever lowers the busiest rank's rows: as run <= placement alone */
    char path[1200], line[2048];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    int reports = 0, worse = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"ep_micro_placed\": "), *q = strstr(line, "\"ep_micro_run\": ");
        if (!p || !q)
            continue;
        reports++;
        worse += atof(q + strlen("\"ep_micro_run\": ")) > atof(p + strlen("\"ep_micro_placed\": ")) + 1e-9;
    }
    if (f)
        fclose(f);
    FG_CHECK(reports >= 4 && worse == 0, "spill: %d placement reports, %d with the busiest rank worse", reports, worse);
    /* and without the spill (each expert's rows on its owner only), the same training */
    snprintf(dir, sizeof dir, "%s/replaced_nospill_ep4", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --max-steps 20 --ckpt-every 4 --ep-spill 0 --out '%s'", data, model, dir);
    FG_CHECK(train(1, 4, args) == 0, "ep=4 without spill: %s", out);
    dist_check_losses("ep=4 without spill", ref, dir, 1, 20);
    dist_check_params("ep=4 without spill", ref, dir);
}

/* What --ep refuses, with a message naming the setting. */
static void test_refusals(void)
{
    char dir[1024], args[8192];
    snprintf(dir, sizeof dir, "%s/refused", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s --n-layer 2 --n-head 2 --d-model 16 --max-steps 2 --out '%s'", data, dir);
    FG_CHECK(train(1, 2, args) != 0 && strstr(out, "'ep' 2 needs a MoE model"), "ep on a dense model: %s", out);
    snprintf(args, sizeof args,
             "%s --n-layer 2 --n-head 2 --d-model 16 --n-expert 4 --n-expert-active 2 --d-expert 8 "
             "--grad-accum 6 --max-steps 2 --out '%s'",
             data, dir);
    FG_CHECK(train(1, 4, args) != 0 && strstr(out, "not a multiple of 'dp' x 'ep'"), "grad_accum 6 at ep 4: %s", out);
}

int main(void)
{
    FG_TEST_BEGIN("dist_ep");
    snprintf(bin, sizeof bin, "%s", fg_test_frugal_bin());
    char prep[1024];
    if (!dist_test_start("expert-parallel training", bin, prep, sizeof prep))
        return fg_test_end();
    /* tiny models, one thread per rank; validation every 5 steps runs on rank 0 alone
     * (every expert local) while the others wait */
    snprintf(data, sizeof data,
             "--train-shards '%s/data/train.bin' --val-shards '%s/data/val.bin' --batch-size 2 --seq-len 16 "
             "--grad-accum 4 --val-every 5 --val-batches 1 --log-every 100000 --threads 1 --bucket-mb 0.002",
             prep, prep);
    test_equivalence("gpt2");
    test_equivalence("llama");
    test_resume();
    test_node_limited();
    test_replacement();
    test_placement_resume();
    test_grids("gpt2");
    test_grids("llama");
    test_refusals();
    return fg_test_end();
}
