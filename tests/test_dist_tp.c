/* test_dist_tp.c: tensor-parallel training through `mpirun --oversubscribe frugal train
 * --tp 2 [--dp 2] [--pp 2]` against one process at the same global batch: tp 2, dp 2 x
 * tp 2, tp 2 x pp 2 and dp 2 x tp 2 x pp 2, gpt2 (tied embedding, biases, LayerNorm,
 * GELU) and llama (RoPE, SwiGLU, RMSNorm), dense and MoE (experts split by hidden units;
 * gpt2 with the sequence-wise aux loss, llama with the bias rule and capacity dropping),
 * 20 steps: losses to 1e-5 relative, final params to 1e-6. tp 2 x pp 2 checkpoints (dense
 * and MoE) resume at other layouts with the same next losses. --zero 1 shards m, v over
 * every rank of the grid (tp 2, dp 2 x tp 2 x pp 2), and its checkpoints resume at other
 * layouts, sharded or not. What the shards cannot
 * split is refused with the reason. Skips when this build has no MPI or mpirun is absent. */
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

static void test_layout(const char *name, const char *model)
{
    char ref[1024], dir[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "%s %s --grad-accum 4 --out '%s'", data, model, ref);
    int rc = train(0, args);
    FG_CHECK(rc == 0, "%s: single-process run: %s", name, out);
    static const char *grids[] = {"--tp 2", "--dp 2 --tp 2", "--tp 2 --pp 2", "--dp 2 --tp 2 --pp 2"};
    static const int nps[] = {2, 4, 4, 8};
    for (int i = 0; i < 4; i++) {
        snprintf(dir, sizeof dir, "%s/%s_%d", fg_test_tmpdir(), name, i);
        snprintf(args, sizeof args, "%s %s %s --grad-accum 4 --out '%s'", grids[i], data, model, dir);
        snprintf(what, sizeof what, "%s %s", name, grids[i]);
        rc = train(nps[i], args);
        FG_CHECK(rc == 0, "%s: exit %d: %s", what, rc, out);
        if (rc != 0)
            continue;
        FG_CHECK(strstr(out, "tensor parallel : 2 ranks") != NULL, "%s: the cost summary reports tp: %s", what, out);
        dist_check_losses(what, ref, dir, 1, 20);
        dist_check_params(what, ref, dir);
    }
}

/* A tp 2 x pp 2 checkpoint of `name` (whose one-process run is <name>_ref) resumes at each
 * of grids[0..n) (np 0: one process) with that run's losses of steps 11..20. */
static void test_resume(const char *name, const char *model, const char *const *grids, const int *nps, int n)
{
    char ref[1024], src[1024], args[8192], what[256];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    snprintf(src, sizeof src, "%s/resume_%s_tp2pp2", fg_test_tmpdir(), name);
    snprintf(args, sizeof args, "--tp 2 --pp 2 %s %s --grad-accum 4 --stop-after 10 --ckpt-every 10 --out '%s'", data,
             model, src);
    snprintf(what, sizeof what, "%s tp 2 x pp 2 first half", name);
    FG_CHECK(train(4, args) == 0, "%s: %s", what, out);
    dist_check_losses(what, ref, src, 1, 10);
    snprintf(what, sizeof what, "%s tp 2 x pp 2", name);
    snprintf(args, sizeof args, "%s %s --grad-accum 4", data, model);
    dist_check_resumes(bin, what, src, ref, args, n, grids, nps);
}

/* ZeRO-1 over the whole grid (--zero 1 with tp): tp 2 and dp 2 x tp 2 x pp 2 (8 ranks)
 * against one process, rank 0 keeping 1/world of m and v; a sharded tp 2 x pp 2
 * checkpoint (4 shard files) resumes at one process, at tp 2 sharded over 2 and at dp 2 x
 * tp 2 unsharded with the same next losses. */
static void test_zero(const char *name, const char *model, int resume)
{
    char ref[1024], src[1024], args[8192], what[256], cmd[4096];
    snprintf(ref, sizeof ref, "%s/%s_ref", fg_test_tmpdir(), name);
    static const char *grids[] = {"--tp 2 --zero 1", "--dp 2 --tp 2 --pp 2 --zero 1"};
    static const int nps[] = {2, 8};
    snprintf(args, sizeof args, "%s %s --grad-accum 4", data, model);
    dist_check_sharded(bin, name, ref, args, 2, grids, nps);
    if (!resume)
        return;
    snprintf(src, sizeof src, "%s/%s_zero_src", fg_test_tmpdir(), name);
    snprintf(args, sizeof args,
             "--tp 2 --pp 2 --zero 1 %s %s --grad-accum 4 --stop-after 10 --ckpt-every 10 --out '%s'", data, model,
             src);
    FG_CHECK(train(4, args) == 0, "%s sharded tp 2 x pp 2 first half: %s", name, out);
    snprintf(cmd, sizeof cmd, "test -d '%s/ckpt/zero.rank3'", src);
    FG_CHECK(fg_test_run(cmd, NULL, 0) == 0, "%s: the sharded tp 2 x pp 2 run wrote rank 3's shard of m, v", name);
    static const char *rgrids[] = {"", "--tp 2 --zero 1", "--dp 2 --tp 2"};
    static const int rnps[] = {0, 2, 4};
    snprintf(what, sizeof what, "%s sharded tp 2 x pp 2", name);
    snprintf(args, sizeof args, "%s %s --grad-accum 4", data, model);
    dist_check_resumes(bin, what, src, ref, args, 3, rgrids, rnps);
}

static void test_refused(void)
{
    char dir[1024], args[8192];
    snprintf(dir, sizeof dir, "%s/refused", fg_test_tmpdir());
    static const char *cases[][2] = {
        {"--tp 2 --n-layer 2 --n-head 1 --d-model 16", "must all be multiples of it"},
        {"--tp 2 --n-layer 2 --n-head 2 --d-model 16 --n-expert 4 --n-expert-active 2 --d-expert 15",
         "must all be multiples of it"},
        {"--tp 2 --n-layer 2 --n-head 2 --d-model 16 --precision bf16", "fp32 models only"},
        {"--tp 2 --n-layer 2 --n-head 2 --d-model 16 --ffn-share seed", "this one has FFN sharing"},
    };
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "%s %s --overwrite 1 --out '%s'", cases[i][0], data, dir);
        int rc = train(2, args);
        FG_CHECK(rc != 0 && strstr(out, cases[i][1]), "'%s' refused with \"%s\": exit %d: %s", cases[i][0], cases[i][1],
                 rc, out);
    }
}

int main(void)
{
    FG_TEST_BEGIN("dist_tp");
    snprintf(bin, sizeof bin, "%s", fg_test_frugal_bin());
    char prep[1024];
    if (!dist_test_start("tensor-parallel training", bin, prep, sizeof prep))
        return fg_test_end();
    dist_tiny_data(data, sizeof data, prep);
    const char *gpt2 = "--layout gpt2 --n-layer 4 --n-head 2 --d-model 16";
    const char *llama = "--layout llama --n-layer 4 --n-head 2 --d-model 16";
    /* MoE: a dense first layer, 4 experts top-2 and a shared one; gpt2 with the
     * sequence-wise aux loss (its gradient added on tp rank 0 only), llama with the
     * router-bias rule and capacity 1.5 (the drops are every rank's same decision) */
    const char *gpt2_moe =
        "--layout gpt2 --n-layer 4 --n-head 2 --d-model 16 --n-dense-layers 1 --n-expert 4 "
        "--n-expert-active 2 --n-shared-expert 1 --d-expert 16 --balance seqaux --balance-alpha 0.01";
    const char *llama_moe = "--layout llama --n-layer 4 --n-head 2 --d-model 16 --n-dense-layers 1 --n-expert 4 "
                            "--n-expert-active 2 --n-shared-expert 1 --d-expert 16 --capacity-factor 1.5";
    test_layout("gpt2", gpt2);
    test_layout("llama", llama);
    test_layout("gpt2_moe", gpt2_moe);
    test_layout("llama_moe", llama_moe);
    static const char *dense_grids[] = {"", "--tp 2"}, *moe_grids[] = {"", "--dp 2 --tp 2"};
    static const int dense_nps[] = {0, 2}, moe_nps[] = {0, 4};
    test_resume("gpt2", gpt2, dense_grids, dense_nps, 2);
    test_resume("llama_moe", llama_moe, moe_grids, moe_nps, 2);
    test_zero("gpt2", gpt2, 1);
    test_zero("llama_moe", llama_moe, 0);
    test_refused();
    return fg_test_end();
}
