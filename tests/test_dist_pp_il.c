/* test_dist_pp_il.c: the interleaved 1F1B pipeline (`frugal train --pp P --pp-chunks V`)
 * against one process at the same global batch: pp 2 x 2 chunks at 4 micro-batches (the
 * steady state) and dp 2 x pp 2 x 2 chunks at 2 per replica (m = p: all warm-up), dense and
 * MoE; 8 layers at 8 micro-batches, pp 2 x 4 chunks and pp 4 x 2 chunks; 20 steps, losses to 1e-5 relative,
 * final params to 1e-6. A pp 2 x 2 chunks checkpoint resumes at contiguous pp 2 and at
 * one process with the same next losses. What the interleaved schedule does not run is
 * refused with the reason. Skips when this build has no MPI or mpirun is absent. */
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

/* One model against one process over the given grids; theory: the summary's theoretical
 * bubble (p-1)/(V m + p-1) of each grid, sets: rank 0's activation sets (dense: min(m,
 * warm-up + 1) and no recomputation; MoE: none, NULL), layers: the metrics' pp_layers (per
 * virtual stage). */
static void run_grids(const char *name, const char *model, int accum, int n, const char *const *grids, const int *nps,
                      const char *const *theory, const int *sets, const char *layers)
{
    char ref[1024], dir[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "%s %s --grad-accum %d --out '%s'", data, model, accum, ref);
    int rc = train(0, args);
    FG_CHECK(rc == 0, "%s: single-process run: %s", name, out);
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/%s_%d", fg_test_tmpdir(), name, i);
        snprintf(args, sizeof args, "%s %s %s --grad-accum %d --out '%s'", grids[i], data, model, accum, dir);
        snprintf(what, sizeof what, "%s %s", name, grids[i]);
        rc = train(nps[i], args);
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0)
            continue;
        FG_CHECK(strstr(out, "chunks (interleaved)") != NULL, "%s: the summary names the interleaved schedule: %s",
                 what, out);
        char want[128];
        snprintf(want, sizeof want, "%s theoretical (p-1)/(v*m+p-1)", theory[i]);
        FG_CHECK(strstr(out, want) != NULL, "%s: \"%s\" in: %s", what, want, out);
        if (sets)
            snprintf(want, sizeof want, "rank 0 keeps %d activation sets, 0.000 s of forward recomputation", sets[i]);
        else
            snprintf(want, sizeof want, "rank 0 keeps 1 activation sets");
        FG_CHECK(strstr(out, want) != NULL, "%s: \"%s\" in: %s", what, want, out);
        static dist_curve c;
        FG_CHECK(dist_read_curve(dir, &c), "%s: metrics", what);
        FG_CHECK(!strcmp(c.layers[1], layers), "%s: pp_layers %s at step 1 (want %s)", what, c.layers[1], layers);
        dist_check_losses(what, ref, dir, 1, 20);
        dist_check_params(what, ref, dir);
    }
}

/* A checkpoint written by pp 2 x 2 chunks resumes at contiguous pp 2 and at one process. */
static void test_resume(void)
{
    char ref[1024], src[1024], args[8192];
    const char *model = "--n-layer 4 --n-head 2 --d-model 16 --layout gpt2 --grad-accum 4";
    snprintf(ref, sizeof ref, "%s/resume_ref", fg_test_tmpdir());
    snprintf(args, sizeof args, "%s %s --out '%s'", data, model, ref);
    FG_CHECK(train(0, args) == 0, "resume reference: %s", out);
    snprintf(src, sizeof src, "%s/resume_il", fg_test_tmpdir());
    snprintf(args, sizeof args, "--pp 2 --pp-chunks 2 %s %s --stop-after 10 --ckpt-every 10 --out '%s'", data, model,
             src);
    FG_CHECK(train(2, args) == 0, "pp 2 x 2 chunks first half: %s", out);
    dist_check_losses("pp 2 x 2 chunks first half", ref, src, 1, 10);
    static const char *grids[] = {"--pp 2", ""};
    static const int nps[] = {2, 0};
    snprintf(args, sizeof args, "%s %s", data, model);
    dist_check_resumes(bin, "pp 2 x 2 chunks", src, ref, args, 2, grids, nps);
}

static void test_refused(void)
{
    char dir[1024], args[8192];
    snprintf(dir, sizeof dir, "%s/refused", fg_test_tmpdir());
    static const char *cases[][2] = {
        {"--pp 2 --pp-chunks 2 --grad-accum 3", "to be a multiple of 'pp' 2"},
        {"--pp 2 --pp-chunks 2 --grad-accum 2 --pp-balance 1", "with 'pp_balance': not built"},
        {"--pp 2 --pp-chunks 4 --grad-accum 2", "x 'pp_chunks' 4 exceeds 'n_layer' 4"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        snprintf(args, sizeof args, "%s --n-layer 4 --n-head 2 --d-model 16 %s --overwrite 1 --out '%s'", cases[i][0],
                 data, dir);
        int rc = train(2, args);
        FG_CHECK(rc != 0 && strstr(out, cases[i][1]), "'%s' refused with \"%s\": exit %d: %s", cases[i][0], cases[i][1],
                 rc, out);
    }
}

int main(void)
{
    FG_TEST_BEGIN("dist_pp_il");
    snprintf(bin, sizeof bin, "%s", fg_test_frugal_bin());
    char prep[1024];
    if (!dist_test_start("interleaved pipeline-parallel training", bin, prep, sizeof prep))
        return fg_test_end();
    dist_tiny_data(data, sizeof data, prep);
    static const char *const grids4[] = {"--pp 2 --pp-chunks 2", "--dp 2 --pp 2 --pp-chunks 2"};
    static const int nps4[] = {2, 4};
    static const char *const th4[] = {"11.1%", "20.0%"}; /* 1/(2*4+1), 1/(2*2+1) */
    static const int sets4[] = {4, 2};                   /* rank 0: warm-up 2 + 2 of 4, all 2 of 2 */
    run_grids("gpt2_dense", "--layout gpt2 --n-layer 4 --n-head 2 --d-model 16", 4, 2, grids4, nps4, th4, sets4,
              "1, 1, 1, 1");
    run_grids("llama_moe",
              "--layout llama --n-layer 4 --n-head 2 --d-model 16 --n-expert 4 --n-expert-active 2 "
              "--n-shared-expert 1 --d-expert 16",
              4, 2, grids4, nps4, th4, NULL, "1, 1, 1, 1");
    /* more chunks than two, more stages than two */
    static const char *const grids8[] = {"--pp 2 --pp-chunks 4", "--pp 4 --pp-chunks 2"};
    static const int nps8[] = {2, 4};
    static const char *const th8[] = {"3.0%", "15.8%"}; /* 1/(4*8+1), 3/(2*8+3) */
    static const int sets8[] = {8, 8};                  /* min(8, warm-up 8 or 10 + 1) */
    run_grids("llama8", "--layout llama --n-layer 8 --n-head 2 --d-model 16", 8, 2, grids8, nps8, th8, sets8,
              "1, 1, 1, 1, 1, 1, 1, 1");
    test_resume();
    test_refused();
    return fg_test_end();
}
