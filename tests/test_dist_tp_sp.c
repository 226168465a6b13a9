/* test_dist_tp_sp.c: sequence parallelism (`frugal train --tp 2 --tp-sp true`) under
 * mpirun against one process at the same global batch: tp 2, dp 2 x tp 2 and tp 2 x pp 2,
 * gpt2 and llama, dense and MoE, 20 steps (and tp 2 with ZeRO-1, dp 2 x tp 2 x pp 2 for llama
 * and gpt2 MoE), losses to 1e-5 relative and final params to
 * 1e-6 (test_dist_tp's tolerances); the activation sums' bytes equal tp 2's without it; a
 * sequence-parallel checkpoint resumes at one process with the same next losses; what is
 * not built is refused. Skips when this build has no MPI or mpirun is absent. */
#define _GNU_SOURCE
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

/* the cost summary's "tensor parallel : ..." line of out into line ("" when absent) */
static void tp_line(char *line, size_t cap)
{
    const char *p = strstr(out, "tensor parallel :");
    size_t n = p ? strcspn(p, "\n") : 0;
    n = n < cap ? n : cap - 1;
    if (p)
        memcpy(line, p, n);
    line[n] = '\0';
}

/* `name` (model flags `model`) at one process, then with sequence parallelism at each of
 * grids[0..n) on nps[i] ranks; with `bytes`, tp 2 without it as well, whose activation
 * sums must have sent what tp 2 with it sent. */
static void test_layout(const char *name, const char *model, const char *const *grids, const int *nps, int n, int bytes)
{
    char ref[1024], dir[1024], args[8192], what[256], with_sp[512] = "", without_sp[512] = "";
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "%s %s --grad-accum 4 --out '%s'", data, model, ref);
    int rc = train(0, args);
    FG_CHECK(rc == 0, "%s: single-process run: %s", name, out);
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/%s_sp%d", fg_test_tmpdir(), name, i);
        snprintf(args, sizeof args, "%s --tp-sp true %s %s --grad-accum 4 --out '%s'", grids[i], data, model, dir);
        snprintf(what, sizeof what, "%s %s --tp-sp true", name, grids[i]);
        rc = train(nps[i], args);
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0)
            continue;
        FG_CHECK(strstr(out, "sequence parallel:") != NULL, "%s: the cost summary reports sp: %s", what, out);
        if (i == 0)
            tp_line(with_sp, sizeof with_sp);
        dist_check_losses(what, ref, dir, 1, 20);
        dist_check_params(what, ref, dir);
    }
    if (!bytes)
        return;
    snprintf(dir, sizeof dir, "%s/%s_nosp", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "%s %s %s --grad-accum 4 --out '%s'", grids[0], data, model, dir);
    snprintf(what, sizeof what, "%s %s", name, grids[0]);
    rc = train(nps[0], args);
    FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
    tp_line(without_sp, sizeof without_sp);
    FG_CHECK(with_sp[0] && strcmp(with_sp, without_sp) == 0,
             "%s: the activation sums send as much with sequence parallelism (\"%s\") as without (\"%s\")", what,
             with_sp, without_sp);
    dist_check_losses(what, ref, dir, 1, 20);
}

/* A sequence-parallel checkpoint of `name` at `grid` (np ranks) resumes at one process with
 * the one-process run's losses of steps 11..20 and its final params. */
static void test_resume(const char *name, const char *model, const char *grid, int np)
{
    char ref[1024], src[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(src, sizeof src, "%s/resume_%s_sp", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "%s --tp-sp true %s %s --grad-accum 4 --stop-after 10 --ckpt-every 10 --out '%s'", grid,
             data, model, src);
    snprintf(what, sizeof what, "%s %s --tp-sp true first half", name, grid);
    FG_CHECK(train(np, args) == 0, "%s: %s", what, out);
    dist_check_losses(what, ref, src, 1, 10);
    snprintf(what, sizeof what, "%s %s --tp-sp true", name, grid);
    snprintf(args, sizeof args, "%s %s --grad-accum 4", data, model);
    static const char *grids[] = {""};
    static const int nps[] = {0};
    dist_check_resumes(bin, what, src, ref, args, 1, grids, nps);
}

/* --tp-sp-regather (the norm outputs kept as rows only, all-gathered again in backward)
 * at `grid` against the one-process run of `name`: same losses and params; the activation
 * sums send more than without it (2 all-gathers more per layer backward, 1 for the head) */
static void test_regather(const char *name, const char *model, const char *grid, int np)
{
    char ref[1024], dir[1024], args[8192], what[256], line[512];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(dir, sizeof dir, "%s/%s_regather_%d", fg_test_tmpdir(), name, np);
    snprintf(args, sizeof args, "%s --tp-sp true --tp-sp-regather true %s %s --grad-accum 4 --out '%s'", grid, data,
             model, dir);
    snprintf(what, sizeof what, "%s %s --tp-sp-regather true", name, grid);
    int rc = train(np, args);
    FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
    if (rc != 0)
        return;
    tp_line(line, sizeof line);
    FG_CHECK(strstr(out, "sequence parallel:") && line[0], "%s: the cost summary reports tp and sp: %s", what, out);
    dist_check_losses(what, ref, dir, 1, 20);
    dist_check_params(what, ref, dir);
}

static void test_refused(void)
{
    char dir[1024], args[8192];
    snprintf(dir, sizeof dir, "%s/refused", fg_test_tmpdir());
    static const struct {
        int np;
        const char *flags, *msg;
    } cases[] = {
        {0, "--tp-sp true --n-layer 2 --n-head 2 --d-model 16", "needs 'tp' >= 2"},
        {2, "--tp 2 --tp-sp-regather true --n-layer 2 --n-head 2 --d-model 16", "goes with 'tp_sp'"},
        {4,
         "--tp 2 --ep 2 --tp-sp true --n-layer 2 --n-head 2 --d-model 16 --n-expert 4 --n-expert-active 2 "
         "--d-expert 16",
         "'tp_sp' with 'ep' 2: not built"},
        {2, "--tp 2 --tp-sp true --n-layer 2 --n-head 2 --d-model 16 --batch-size 1 --seq-len 15",
         "do not split evenly over 'tp' 2"},
    };
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "%s %s --overwrite 1 --out '%s'", data, cases[i].flags, dir);
        int rc = train(cases[i].np, args);
        FG_CHECK(rc != 0 && strstr(out, cases[i].msg), "'%s' refused with \"%s\": exit %d: %s", cases[i].flags,
                 cases[i].msg, rc, out);
    }
}

int main(void)
{
    FG_TEST_BEGIN("dist_tp_sp");
    snprintf(bin, sizeof bin, "%s", fg_test_frugal_bin());
    char prep[1024];
    if (!dist_test_start("sequence-parallel training", bin, prep, sizeof prep))
        return fg_test_end();
    dist_tiny_data(data, sizeof data, prep);
    /* test_dist_tp's models: MoE with a dense first layer, 4 experts top-2 and a shared
     * one (gpt2 with the sequence-wise aux loss, llama with the bias rule and capacity) */
    const char *gpt2 = "--layout gpt2 --n-layer 4 --n-head 2 --d-model 16";
    const char *llama = "--layout llama --n-layer 4 --n-head 2 --d-model 16";
    const char *gpt2_moe =
        "--layout gpt2 --n-layer 4 --n-head 2 --d-model 16 --n-dense-layers 1 --n-expert 4 "
        "--n-expert-active 2 --n-shared-expert 1 --d-expert 16 --balance seqaux --balance-alpha 0.01";
    const char *llama_moe = "--layout llama --n-layer 4 --n-head 2 --d-model 16 --n-dense-layers 1 --n-expert 4 "
                            "--n-expert-active 2 --n-shared-expert 1 --d-expert 16 --capacity-factor 1.5";
    /* the last two (ZeRO-1 over the grid; 8 ranks on 2 cores) for one dense and one MoE model */
    static const char *grids[] = {"--tp 2", "--dp 2 --tp 2", "--tp 2 --pp 2", "--tp 2 --zero 1",
                                  "--dp 2 --tp 2 --pp 2"};
    static const int nps[] = {2, 4, 4, 2, 8};
    test_layout("gpt2", gpt2, grids, nps, 3, 1);
    test_layout("llama", llama, grids, nps, 5, 0);
    test_layout("gpt2_moe", gpt2_moe, grids, nps, 5, 0);
    test_layout("llama_moe", llama_moe, grids, nps, 3, 1);
    test_regather("gpt2", gpt2, "--tp 2", 2);
    test_regather("llama", llama, "--tp 2 --pp 2", 4);
    test_regather("llama_moe", llama_moe, "--dp 2 --tp 2", 4);
    test_regather("gpt2_moe", gpt2_moe, "--tp 2", 2);
    test_resume("gpt2", gpt2, "--tp 2 --pp 2", 4);
    test_resume("llama_moe", llama_moe, "--dp 2 --tp 2", 4);
    test_refused();
    return fg_test_end();
}
