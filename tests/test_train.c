/* test_train.c: config errors with FILE:LINE:COL, flags over config, the JSON round
 * trip, the window loader, gradient accumulation (2 x B/2 = 1 x B), a tiny model's
 * validation loss falling, bit-exact determinism and resume, and `frugal train`
 * refusing bad input (non-zero exit, message naming the file, nothing written), and the
 * run directory's safety: --overwrite clears the old run, the lock, checked metrics
 * writes, the first failed checkpoint write named. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frugal/kernels.h"
#include "frugal/optim.h"
#include "frugal/train.h"
#include "harness.h"

static const char *tmp(const char *name)
{
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fg_test_tmpdir(), name);
    return buf[k];
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    FG_ASSERT(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- config ---- */
static void expect_json_error(const char *name, const char *text, const char *want)
{
    const char *path = tmp(name);
    write_file(path, text);
    fg_train_config c;
    fg_train_config_default(&c);
    fg_status st = fg_train_config_load_json(&c, path);
    char expect[1024];
    snprintf(expect, sizeof expect, "%s:%s", path, want);
    FG_CHECK(st != FG_OK && strstr(fg_last_error(), expect) != NULL, "%s: want '%s', got '%s'", name, expect,
             fg_last_error());
}

static void test_config(void)
{
    expect_json_error("unknown.json", "{\n  \"lr\": 0.001,\n    \"n_layr\": 4\n}\n", "3:5: unknown key 'n_layr'");
    expect_json_error("type.json", "{\"lr\": \"fast\"}", "1:2: key 'lr': expected a number");
    expect_json_error("range.json", "{\n\"batch_size\": 0}", "2:1: key 'batch_size': must be >= 1 (got 0)");
    expect_json_error("neg.json", "{\"seq_len\": 64,\n \"lr\": -1}", "2:2: key 'lr': must be > 0 (got -1)");
    expect_json_error("frac.json", "{\"n_layer\": 2.5}", "1:2: key 'n_layer': must be a whole number");
    expect_json_error("layout.json", "{\"layout\": \"gpt3\"}", "1:2: key 'layout': must be one of llama, gpt2");
    expect_json_error("syntax.json", "{\n  \"lr\": 0.001,\n  \"seed\": 1,,\n}", "3:13:");
    expect_json_error("dup.json", "{\"lr\": 1, \"lr\": 2}", "1:");
    expect_json_error("array.json", "[1, 2]", "1:1: expected a JSON object");
    expect_json_error("dash.json", "{\"batch-size\": 4}", "1:2: unknown key 'batch-size'");
    /* a key name inside a string value is not mistaken for the key */
    expect_json_error("instr.json", "{\"data\": \"\\\"bogus\\\": x\",\n \"bogus\": 1}", "2:2: unknown key 'bogus'");

    fg_train_config c;
    fg_train_config_default(&c);
    FG_CHECK(fg_train_config_load_json(&c, tmp("missing.json")) == FG_ERR_IO && strstr(fg_last_error(), "missing.json"),
             "missing config named: %s", fg_last_error());

    /* flags after the config win; booleans stand alone; dashes read as underscores */
    const char *cfg = tmp("good.json");
    write_file(cfg, "{\"layout\": \"gpt2\", \"n_layer\": 3, \"lr\": 0.002, \"data\": \"x.txt\"}");
    char *argv[] = {"train", "--lr", "5e-4", "--config", (char *)cfg, "--batch-size=3", "--resume", "--seq-len", "16"};
    fg_train_config_default(&c);
    fg_status st = fg_train_config_from_args(&c, 9, argv, NULL);
    FG_CHECK(st == FG_OK, "args: %s", fg_last_error());
    FG_CHECK(c.lr == 5e-4f && c.model.n_layer == 3 && c.batch_size == 3 && c.resume == 1 && c.seq_len == 16 &&
                 c.model.layout == FG_LAYOUT_GPT2 && c.model.tie_embeddings == 1,
             "config then flags: lr %g L %d B %d resume %d", c.lr, c.model.n_layer, c.batch_size, c.resume);
    FG_CHECK(fg_train_config_validate(&c) == FG_OK, "valid: %s", fg_last_error());

    char *bad[] = {"train", "--lr", "abc"};
    FG_CHECK(fg_train_config_from_args(&c, 3, bad, NULL) == FG_ERR_INVALID && strstr(fg_last_error(), "--lr"),
             "bad flag value: %s", fg_last_error());
    char *unk[] = {"train", "--nope", "1"};
    FG_CHECK(fg_train_config_from_args(&c, 3, unk, NULL) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "unknown option --nope"),
             "unknown flag: %s", fg_last_error());

    /* the JSON written into a run reads back to the same config */
    c.model.moe.n_expert = 8;
    c.model.moe.balance = FG_BALANCE_SEQAUX;
    c.min_lr = 1.2345e-5f;
    c.seed = 1234567890123ull;
    char *j1 = fg_train_config_to_json(&c);
    fg_train_config d;
    fg_train_config_default(&d);
    FG_CHECK(j1 && fg_train_config_load_json_text(&d, j1, "roundtrip") == FG_OK, "reload: %s", fg_last_error());
    char *j2 = fg_train_config_to_json(&d);
    FG_CHECK(j1 && j2 && strcmp(j1, j2) == 0, "to_json(load(to_json(c))) == to_json(c)");
    FG_CHECK(d.min_lr == c.min_lr && d.seed == c.seed && d.model.moe.n_expert == 8 &&
                 d.model.moe.balance == FG_BALANCE_SEQAUX,
             "fields survive the round trip");
    fg_free(j1);
    fg_free(j2);

    fg_train_config_default(&c);
    FG_CHECK(fg_train_config_validate(&c) == FG_ERR_INVALID && strstr(fg_last_error(), "no training data"),
             "no data: %s", fg_last_error());
    strcpy(c.data, "x.txt");
    c.min_lr = 1.0f;
    FG_CHECK(fg_train_config_validate(&c) == FG_ERR_INVALID && strstr(fg_last_error(), "min_lr"), "min_lr > lr");
}

/* ---- loader ---- */
static void make_shard(const char *path, uint32_t n, uint32_t vocab)
{
    fg_shard_writer w;
    FG_ASSERT(fg_shard_writer_open(&w, path, vocab, FG_SHARD_NO_EOT, 0) == FG_OK);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = i % vocab;
        FG_ASSERT(fg_shard_writer_write(&w, &id, 1) == FG_OK);
    }
    FG_ASSERT(fg_shard_writer_close(&w) == FG_OK);
}

static void test_loader(void)
{
    const char *a = tmp("a.bin"), *b = tmp("b.bin");
    make_shard(a, 50, 1000);
    make_shard(b, 30, 1000);
    char list[1100];
    snprintf(list, sizeof list, "%s,%s", a, b);
    fg_loader l;
    FG_CHECK(fg_loader_open(&l, list, 2, 8, 1, 0, 1000) == FG_OK, "open: %s", fg_last_error());
    FG_CHECK(fg_loader_tokens(&l) == 80, "80 tokens");
    int32_t in[16], tg[16];
    int ok = 1;
    /* sequential: windows at 0, 8, ... of shard a; targets shifted by one */
    for (int it = 0; it < 3; it++) {
        fg_loader_next(&l, in, tg);
        for (int i = 0; i < 16; i++)
            ok &= in[i] == it * 16 + i && tg[i] == in[i] + 1;
    }
    FG_CHECK(ok, "sequential windows and shifted targets");
    fg_loader_next(&l, in, tg); /* 48 + 9 > 50: moves on to shard b, then continues in b */
    FG_CHECK(in[0] == 0 && in[8] == 8 && tg[15] == 16, "wraps to the next shard: %d %d %d", in[0], in[8], tg[15]);
    fg_loader_close(&l);

    /* random windows: reproducible for a seed, and always inside a shard */
    fg_loader l1, l2;
    FG_ASSERT(fg_loader_open(&l1, list, 4, 8, 0, 7, 1000) == FG_OK);
    FG_ASSERT(fg_loader_open(&l2, list, 4, 8, 0, 7, 1000) == FG_OK);
    int32_t in2[32], tg2[32], in1[32], tg1[32];
    int same = 1, inside = 1;
    for (int it = 0; it < 20; it++) {
        fg_loader_next(&l1, in1, tg1);
        fg_loader_next(&l2, in2, tg2);
        same &= memcmp(in1, in2, sizeof in1) == 0 && memcmp(tg1, tg2, sizeof tg1) == 0;
        for (int i = 0; i < 32; i++)
            inside &= tg1[i] == in1[i] + 1; /* a window crossing a shard end would break this */
    }
    FG_CHECK(same, "same seed, same windows");
    FG_CHECK(inside, "random windows never cross a shard boundary");
    fg_loader_close(&l1);
    fg_loader_close(&l2);

    FG_CHECK(fg_loader_open(&l, a, 1, 50, 0, 0, 1000) == FG_ERR_FORMAT && strstr(fg_last_error(), a) &&
                 strstr(fg_last_error(), "fewer than seq_len + 1"),
             "short shard: %s", fg_last_error());
    FG_CHECK(fg_loader_open(&l, a, 1, 8, 0, 0, 500) == FG_ERR_INVALID && strstr(fg_last_error(), "vocab_size"),
             "shard vocab above the model's: %s", fg_last_error());
    snprintf(list, sizeof list, "%s,%s", a, tmp("nope.bin"));
    FG_CHECK(fg_loader_open(&l, list, 1, 8, 0, 0, 1000) == FG_ERR_IO && strstr(fg_last_error(), "nope.bin"),
             "missing shard named: %s", fg_last_error());
}

/* ---- gradient accumulation ---- */
static void test_grad_accum(void)
{
    fg_model_config mc;
    fg_model_config_default(&mc, FG_LAYOUT_LLAMA);
    mc.vocab_size = 64;
    mc.n_layer = 2;
    mc.d_model = 32;
    mc.n_head = 2;
    mc.max_seq_len = 16;
    int B = 4, T = 16;
    fg_model *m = fg_model_new(&mc, B, T);
    if (!m) {
        FG_CHECK(0, "model: %s", fg_last_error());
        return;
    }
    fg_model_init_weights(m, 3);
    int32_t in[64], tg[64];
    fg_rng r;
    fg_rng_seed(&r, 5);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)fg_rng_below(&r, 64);
        tg[i] = (int32_t)fg_rng_below(&r, 64);
    }
    size_t n = fg_model_num_params(m);
    float *g1 = malloc(n * sizeof(float));
    float l1 = 0, l2 = 0;
    FG_CHECK(fg_train_grads(m, in, tg, B, T, 1, &l1) == FG_OK, "1 x B: %s", fg_last_error());
    memcpy(g1, fg_model_grads(m), n * sizeof(float));
    FG_CHECK(fg_train_grads(m, in, tg, B / 2, T, 2, &l2) == FG_OK, "2 x B/2: %s", fg_last_error());
    /* the same sums in a different order: float rounding of sums of ~B*T terms */
    FG_CHECK_CLOSE(l2, l1, 1e-6);
    fg_test_check_tensor("grads 2 x (B/2) vs 1 x B", fg_model_grads(m), g1, n, 1e-5);
    /* and the check can fail: one micro-batch alone is a different gradient */
    FG_ASSERT(fg_train_grads(m, in, tg, B / 2, T, 1, &l2) == FG_OK);
    FG_CHECK(fg_test_max_rel_err(fg_model_grads(m), g1, n) > 1e-3, "half the batch differs");
    free(g1);
    fg_model_delete(m);
}

/* ---- whole runs on a tiny model ---- */

/* A corpus with learnable structure: shuffled lines of a small grammar. */
static const char *make_corpus(void)
{
    return fg_test_grammar_corpus("corpus.txt");
}

static void tiny_config(fg_train_config *c, const char *out)
{
    fg_train_config_default(c);
    snprintf(c->data, sizeof c->data, "%s", make_corpus());
    snprintf(c->out, sizeof c->out, "%s", out);
    c->model.n_layer = 1;
    c->model.d_model = 32;
    c->model.n_head = 2;
    c->batch_size = 4;
    c->seq_len = 32;
    c->max_steps = 40;
    c->warmup_steps = 5;
    c->lr = 1e-2f;
    c->min_lr = 1e-3f;
    c->val_every = 20;
    c->val_batches = 4;
    c->threads = 2;
}

/* The "loss" values of metrics.jsonl in order, as text (bit-exact comparison). */
static int read_losses(const char *run, char losses[][32], int cap)
{
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        const char *p = strstr(line, "\"loss\": ");
        if (p && !strstr(line, "val_loss")) {
            sscanf(p + 8, "%31[^,]", losses[n]);
            n++;
        }
    }
    fclose(f);
    return n;
}

static void test_runs(void)
{
    fg_train_config c;
    const char *run1 = tmp("run1");
    tiny_config(&c, run1);
    fg_train_result r1;
    fg_status st = fg_train_run(&c, NULL, &r1);
    FG_CHECK(st == FG_OK, "run: %s", fg_last_error());
    if (st != FG_OK)
        return;
    FG_CHECK(r1.steps == 40 && r1.tokens == 40.0 * 4 * 32, "steps %ld tokens %.0f", r1.steps, r1.tokens);
    /* from ln(257) = 5.55 at init; 40 steps on a grammar with ~2 bits/char of
     * entropy must clear a 1.0 nat drop with a wide margin (it reaches ~2.0 by step 20) */
    FG_CHECK(r1.last_val < r1.first_val - 1.0f, "val loss falls: %.3f -> %.3f", r1.first_val, r1.last_val);
    FG_CHECK(r1.last_loss < r1.first_loss - 1.5f, "train loss falls: %.3f -> %.3f", r1.first_loss, r1.last_loss);
    FG_CHECK(r1.flops > 0 && r1.ckpt_bytes > 0, "flops %.3g, ckpt bytes %zu", r1.flops, r1.ckpt_bytes);
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", run1);
    FG_CHECK(exists(p), "config.json written");
    snprintf(p, sizeof p, "%s/data/train.bin", run1);
    FG_CHECK(exists(p), "tokenised train shard written");

    /* the run loads back for sampling */
    fg_train_config lc;
    fg_model *m = NULL;
    st = fg_train_load_run(run1, "", 1, 0, &lc, &m);
    FG_CHECK(st == FG_OK && m && lc.model.vocab_size == 257, "load run: %s", fg_last_error());
    fg_model_delete(m);

    /* determinism: same config and seed, same losses to the last bit */
    const char *run2 = tmp("run2");
    tiny_config(&c, run2);
    fg_train_result r2;
    FG_CHECK(fg_train_run(&c, NULL, &r2) == FG_OK, "second run: %s", fg_last_error());
    static char l1[64][32], l2[64][32], l3[64][32];
    int n1 = read_losses(run1, l1, 64), n2 = read_losses(run2, l2, 64);
    int same = n1 == 40 && n2 == 40;
    for (int i = 0; same && i < n1; i++)
        same &= strcmp(l1[i], l2[i]) == 0;
    FG_CHECK(same, "rerun gives identical losses (%d, %d lines)", n1, n2);
    FG_CHECK(r1.last_val == r2.last_val, "identical val loss");

    /* the out dir of a finished run is refused without --resume / --overwrite */
    FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_ERR_INVALID && strstr(fg_last_error(), "already holds a run"),
             "existing run refused: %s", fg_last_error());

    /* resume: 15 steps, stop, resume to 40 = the uninterrupted run, bit for bit */
    const char *run3 = tmp("run3");
    tiny_config(&c, run3);
    c.ckpt_every = 10;
    c.stop_after = 15;
    FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "first half: %s", fg_last_error());
    c.stop_after = 0;
    c.resume = 1;
    fg_train_result r3;
    FG_CHECK(fg_train_run(&c, NULL, &r3) == FG_OK, "resume: %s", fg_last_error());
    FG_CHECK(r3.steps == 25, "resumed run took %ld steps (want 25)", r3.steps);
    int n3 = read_losses(run3, l3, 64);
    same = n3 == 40;
    for (int i = 0; same && i < n3; i++)
        same &= strcmp(l1[i], l3[i]) == 0;
    FG_CHECK(same, "stop at 15 + resume = uninterrupted run (%d lines)", n3);
    FG_CHECK(r3.last_val == r1.last_val, "same final val loss %.9g vs %.9g", r3.last_val, r1.last_val);
}

/* MoE: the router bias and its load history live in params as frozen tensors, so
 * stop + resume must still equal the uninterrupted run */
static void test_moe_resume(void)
{
    fg_train_config c;
    const char *a = tmp("moe_a"), *b = tmp("moe_b");
    tiny_config(&c, a);
    c.model.moe.n_expert = 4;
    c.model.moe.n_expert_active = 1;
    c.model.moe.n_shared_expert = 1;
    c.model.moe.d_expert = 32;
    c.max_steps = 12;
    c.val_every = 0;
    fg_train_result ra, rb;
    fg_status st = fg_train_run(&c, NULL, &ra);
    FG_CHECK(st == FG_OK, "MoE run: %s", fg_last_error());
    if (st != FG_OK)
        return;
    /* the router statistics of every training line: K/E = 1/4 of the routed parameters
     * active per token (no capacity limit, so nothing dropped), a max/mean in [1, E] */
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", a);
    FILE *f = fopen(path, "r");
    int n_moe = 0, bad = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"moe_active_frac\": "), *q = strstr(line, "\"moe_load_max_over_mean\": ");
        if (!strstr(line, "\"loss\""))
            continue;
        n_moe++;
        double mm = q ? atof(q + 26) : -1;
        bad += !p || atof(p + 19) != 0.25 || !strstr(line, "\"moe_dropped\": 0") || !(mm >= 1.0 && mm <= 4.0);
    }
    if (f)
        fclose(f);
    FG_CHECK(n_moe == 12 && bad == 0, "MoE metrics: %d training lines, %d with wrong router statistics", n_moe, bad);
    snprintf(c.out, sizeof c.out, "%s", b);
    c.ckpt_every = 4;
    c.stop_after = 6;
    FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "MoE first half: %s", fg_last_error());
    c.stop_after = 0;
    c.resume = 1;
    FG_CHECK(fg_train_run(&c, NULL, &rb) == FG_OK, "MoE resume: %s", fg_last_error());
    static char la[16][32], lb[16][32];
    int na = read_losses(a, la, 16), nb = read_losses(b, lb, 16);
    int same = na == 12 && nb == 12;
    for (int i = 0; same && i < na; i++)
        same &= strcmp(la[i], lb[i]) == 0;
    FG_CHECK(same, "MoE: stop at 6 + resume = uninterrupted (%d, %d lines)", na, nb);
    FG_CHECK(ra.last_val == rb.last_val, "MoE: same final val loss");
}

/* bf16 training with bf16 Adam moments (the fused step writes the bf16 weight copy;
 * two micro-batches reuse it): stop + resume equals the uninterrupted run bit for bit
 * (the checkpoint holds the moments widened to fp32, which narrows back exactly), and
 * it learns as the fp32-moment run does. */
static void test_bf16_moments_resume(void)
{
    fg_train_config c;
    const char *a = tmp("bf16m_a"), *b = tmp("bf16m_b"), *f = tmp("bf16m_f32");
    tiny_config(&c, a);
    c.model.precision = FG_PRECISION_BF16;
    c.adam_moments = FG_ADAM_MOMENTS_BF16;
    c.grad_accum = 2;
    c.max_steps = 20;
    c.val_every = 0;
    fg_train_result ra, rb, rf;
    fg_status st = fg_train_run(&c, NULL, &ra);
    FG_CHECK(st == FG_OK, "bf16-moment run: %s", fg_last_error());
    if (st != FG_OK)
        return;
    snprintf(c.out, sizeof c.out, "%s", b);
    c.ckpt_every = 4;
    c.stop_after = 10;
    FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "bf16-moment first half: %s", fg_last_error());
    c.stop_after = 0;
    c.resume = 1;
    FG_CHECK(fg_train_run(&c, NULL, &rb) == FG_OK, "bf16-moment resume: %s", fg_last_error());
    static char la[32][32], lb[32][32];
    int na = read_losses(a, la, 32), nb = read_losses(b, lb, 32);
    int same = na == 20 && nb == 20;
    for (int i = 0; same && i < na; i++)
        same &= strcmp(la[i], lb[i]) == 0;
    FG_CHECK(same, "bf16 moments: stop at 10 + resume = uninterrupted (%d, %d lines)", na, nb);
    FG_CHECK(ra.last_val == rb.last_val, "bf16 moments: same final val loss");
    tiny_config(&c, f);
    c.model.precision = FG_PRECISION_BF16;
    c.grad_accum = 2;
    c.max_steps = 20;
    c.val_every = 0;
    FG_CHECK(fg_train_run(&c, NULL, &rf) == FG_OK, "fp32-moment run: %s", fg_last_error());
    /* 8 bits of mantissa in m and v move each update by ~0.4% at most: after 20 steps
     * both runs have dropped ~3 nats from 5.55 and end together (2.3898 vs 2.3899 when
     * written); 0.5% leaves room for other kernels' rounding */
    FG_CHECK(fabsf(ra.last_val - rf.last_val) < 0.005f * rf.last_val && ra.last_val < ra.first_val - 1.0f,
             "bf16 vs fp32 moments: val loss %.4f vs %.4f (from %.4f)", ra.last_val, rf.last_val, ra.first_val);
}

/* ---- the CLI on bad input ---- */
static void expect_cli_fail(const char *args, const char *needle, const char *must_not_exist)
{
    const char *bin = fg_test_frugal_bin();
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "%s train %s", bin, args);
    int rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc != 0, "'%s' fails (rc %d)", args, rc);
    FG_CHECK(strstr(out, needle) != NULL, "'%s' says '%s': %s", args, needle, out);
    if (must_not_exist)
        FG_CHECK(!exists(must_not_exist), "%s not created", must_not_exist);
}

static void test_cli(void)
{
    const char *bin = fg_test_frugal_bin();
    if (!bin || !exists(bin)) {
        fg_test_skip("frugal train CLI", "FG_FRUGAL_BIN not built");
        return;
    }
    char args[1600];
    const char *out = tmp("cli_out");
    snprintf(args, sizeof args, "--data %s --out %s", tmp("no_such.txt"), out);
    expect_cli_fail(args, "no_such.txt: cannot open", out);

    const char *empty = tmp("empty.txt");
    write_file(empty, "");
    snprintf(args, sizeof args, "--data %s --out %s", empty, out);
    expect_cli_fail(args, "empty.txt: empty file", out);

    const char *shortt = tmp("short.txt");
    write_file(shortt, "tiny\n");
    snprintf(args, sizeof args, "--data %s --out %s --seq-len 64", shortt, out);
    expect_cli_fail(args, "short.txt: too short", out);

    const char *corrupt = tmp("corrupt.bin");
    write_file(corrupt, "this is not a token shard at all, just text padding it out to more than 64 bytes long");
    snprintf(args, sizeof args, "--train-shards %s --out %s", corrupt, out);
    expect_cli_fail(args, "corrupt.bin: bad magic", out);

    /* a valid shard too short for one window, and a missing one */
    const char *tiny = tmp("tiny_shard.bin");
    make_shard(tiny, 10, 300);
    snprintf(args, sizeof args, "--train-shards %s --out %s --seq-len 32", tiny, out);
    expect_cli_fail(args, "tiny_shard.bin: 10 tokens, fewer than seq_len + 1", out);
    snprintf(args, sizeof args, "--train-shards %s --out %s", tmp("gone.bin"), out);
    expect_cli_fail(args, "gone.bin: cannot open", out);
    const char *good = tmp("good_shard.bin");
    make_shard(good, 500, 300);
    snprintf(args, sizeof args, "--train-shards %s --val-shards %s --out %s --seq-len 32", good, corrupt, out);
    expect_cli_fail(args, "corrupt.bin: bad magic", out);
    snprintf(args, sizeof args, "--train-shards %s --tokenizer byte --out %s --seq-len 32", good, out);
    expect_cli_fail(args, "above tokenizer byte's 257", out);

    const char *cfg = tmp("cli_bad.json");
    write_file(cfg, "{\n  \"lr\": 0.001,\n  \"learning_rate\": 3\n}");
    snprintf(args, sizeof args, "--config %s --data %s --out %s", cfg, make_corpus(), out);
    expect_cli_fail(args, "cli_bad.json:3:3: unknown key 'learning_rate'", out);

    snprintf(args, sizeof args, "--data %s --out %s --lr -3", make_corpus(), out);
    expect_cli_fail(args, "--lr: must be > 0 (got -3)", out);

    snprintf(args, sizeof args, "--data %s --out %s --n-head 5 --d-model 32", make_corpus(), out);
    expect_cli_fail(args, "n_head", out);

    /* an existing run is not written over */
    const char *prev = tmp("prev_run");
    char metrics[600];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", prev);
    snprintf(args, sizeof args, "mkdir -p %s", prev);
    FG_ASSERT(system(args) == 0);
    write_file(metrics, "{\"step\": 1}\n");
    snprintf(args, sizeof args, "--data %s --out %s", make_corpus(), prev);
    expect_cli_fail(args, "already holds a run", NULL);
    FILE *f = fopen(metrics, "r");
    char line[64] = {0};
    if (f) {
        FG_ASSERT(fgets(line, sizeof line, f));
        fclose(f);
    }
    FG_CHECK(strcmp(line, "{\"step\": 1}\n") == 0, "previous metrics untouched");
}

/* convert (llm.c round trip) and sample through the CLI: the same model sampled
 * with the same seed before and after export + import gives the same text */

/* Removes `frugal sample`'s "sample: N tokens generated in ..." line (a timing) from out. */
static void drop_rate_line(char *out)
{
    char *p = strstr(out, "sample: ");
    while (p && !strstr(p, " tokens generated in "))
        p = strstr(p + 1, "sample: ");
    if (!p)
        return;
    char *e = strchr(p, '\n');
    if (e)
        memmove(p, e + 1, strlen(e + 1) + 1);
    else
        *p = '\0';
}

static void test_cli_convert_sample(void)
{
    const char *bin = fg_test_frugal_bin();
    if (!bin || !exists(bin)) {
        fg_test_skip("frugal convert/sample CLI", "FG_FRUGAL_BIN not built");
        return;
    }
    const char *run = tmp("gpt2run"), *llmc = tmp("gpt2.bin"), *back = tmp("gpt2back");
    char cmd[4096], out1[4096], out2[4096];
    snprintf(cmd, sizeof cmd,
             "%s train --layout gpt2 --n-layer 1 --d-model 32 --n-head 2 --seq-len 32 --batch-size 2 --max-steps 3 "
             "--val-batches 1 --data %s --out %s",
             bin, make_corpus(), run);
    int rc = fg_test_run(cmd, out1, sizeof out1);
    FG_CHECK(rc == 0 && strstr(out1, "== cost summary ==") && strstr(out1, "peak RSS"),
             "train prints the cost "
             "summary: %s",
             out1);
    snprintf(cmd, sizeof cmd, "%s convert --to-llmc %s --run %s && %s convert --from-llmc %s --out %s --tokenizer byte",
             bin, llmc, run, bin, llmc, back);
    rc = fg_test_run(cmd, out1, sizeof out1);
    FG_CHECK(rc == 0, "convert round trip: %s", out1);
    snprintf(cmd, sizeof cmd, "%s sample --run %s --prompt 'the ' --n 40 --seed 5 --temperature 1", bin, run);
    int rc1 = fg_test_run(cmd, out1, sizeof out1);
    snprintf(cmd, sizeof cmd, "%s sample --run %s --prompt 'the ' --n 40 --seed 5 --temperature 1", bin, back);
    int rc2 = fg_test_run(cmd, out2, sizeof out2);
    drop_rate_line(out1); /* the decode rate is a timing: it differs run to run */
    drop_rate_line(out2);
    FG_CHECK(rc1 == 0 && rc2 == 0 && strstr(out1, "--- sample 1") && strcmp(out1, out2) == 0,
             "same samples after llm.c export + import:\n%s\n%s", out1, out2);
    snprintf(cmd, sizeof cmd, "%s sample --run %s", bin, tmp("no_run"));
    rc = fg_test_run(cmd, out1, sizeof out1);
    FG_CHECK(rc != 0 && strstr(out1, "no_run/config.json"), "sample of a missing run: %s", out1);
    snprintf(cmd, sizeof cmd, "%s convert --from-llmc %s --out %s", bin, make_corpus(), tmp("bad_import"));
    rc = fg_test_run(cmd, out1, sizeof out1);
    FG_CHECK(rc != 0 && strstr(out1, "corpus.txt") && !exists(tmp("bad_import")), "import of a non-llm.c file: %s",
             out1);
}

/* ---- one channel per knob: every knob category fails on a bad value, naming the knob ---- */
static void expect_args_fail(const char *what, int argc, char **argv, const char *want)
{
    fg_train_config c;
    fg_train_config_default(&c);
    fg_status st = fg_train_config_from_args(&c, argc, argv, NULL);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), want), "%s: want '%s', got '%s'", what, want,
             fg_last_error());
}

static void test_knobs(void)
{
    /* flags */
    char *a1[] = {"train", "--ckpt-keep", "abc"};
    expect_args_fail("flag ckpt_keep", 3, a1, "--ckpt-keep: expected a number, got 'abc'");
    char *a2[] = {"train", "--blas-threading", "gpu"};
    expect_args_fail("flag blas_threading", 3, a2, "--blas-threading: must be one of auto, omp, blas (got 'gpu')");
    char *a3[] = {"train", "--ckpt-zstd-level=0"};
    expect_args_fail("flag ckpt_zstd_level", 2, a3, "--ckpt-zstd-level: must be >= 1 (got 0)");
    char *a4[] = {"train", "--max-steps", "1.5"};
    expect_args_fail("flag max_steps", 3, a4, "--max-steps: must be a whole number (got 1.5)");
    char *a5[] = {"train", "--ckpt-async", "perhaps"};
    expect_args_fail("flag ckpt_async", 3, a5, "unexpected argument 'perhaps'");
    /* the MoE top-k: one bound, FG_MOE_MAX_K, in the table and in the MoE validation */
    char *a6[] = {"train", "--n-expert-active", "65"};
    char want[64];
    snprintf(want, sizeof want, "--n-expert-active: must be <= %d (got 65)", FG_MOE_MAX_K);
    expect_args_fail("flag n_expert_active", 3, a6, want);
    fg_train_config c;
    fg_train_config_default(&c);
    strcpy(c.data, "x.txt");
    c.model.vocab_size = 256;
    c.model.max_seq_len = 128;
    c.model.moe.n_expert = 128, c.model.moe.n_expert_active = FG_MOE_MAX_K + 1, c.model.moe.d_expert = 16;
    snprintf(want, sizeof want, "n_expert_active = %d: at most FG_MOE_MAX_K = %d", FG_MOE_MAX_K + 1, FG_MOE_MAX_K);
    FG_CHECK(fg_model_config_validate(&c.model) == FG_ERR_INVALID && strstr(fg_last_error(), want),
             "MoE top-k bound: %s", fg_last_error());

    /* JSON config keys */
    expect_json_error("zstd.json", "{\n \"ckpt_zstd_level\": 40}",
                      "2:2: key 'ckpt_zstd_level': must be <= 19 (got 40)");
    expect_json_error("blas.json", "{\"blas_threading\": 1}", "1:2: key 'blas_threading': expected a string");
    expect_json_error("keep.json", "{\"ckpt_keep\": -1}", "1:2: key 'ckpt_keep': must be >= 0 (got -1)");

    /* environment overrides: through the same parser, named, and flags win over them */
    setenv("FG_CKPT_KEEP", "x", 1);
    char *a7[] = {"train"};
    expect_args_fail("env FG_CKPT_KEEP", 1, a7, "FG_CKPT_KEEP: expected a number, got 'x'");
    unsetenv("FG_CKPT_KEEP");
    setenv("FG_CKPT_ASYNC", "maybe", 1);
    expect_args_fail("env FG_CKPT_ASYNC", 1, a7, "FG_CKPT_ASYNC: expected true or false");
    unsetenv("FG_CKPT_ASYNC");
    /* FG_BLAS_THREADING has one parser, the kernels': the config leaves it alone */
    setenv("FG_BLAS_THREADING", "gpu", 1);
    fg_train_config_default(&c);
    FG_CHECK(fg_train_config_from_args(&c, 1, a7, NULL) == FG_OK && c.blas_threading == 0,
             "FG_BLAS_THREADING not parsed by the config: %s", fg_last_error());
    unsetenv("FG_BLAS_THREADING");
    setenv("FG_CKPT_WRITE_DELAY_MS", "-4", 1);
    expect_args_fail("env FG_CKPT_WRITE_DELAY_MS", 1, a7, "FG_CKPT_WRITE_DELAY_MS: must be >= 0 (got -4)");
    unsetenv("FG_CKPT_WRITE_DELAY_MS");
    setenv("FG_CKPT_FULL_EVERY", "3", 1);
    setenv("FG_CKPT_ZSTD_LEVEL", "5", 1);
    char *a8[] = {"train", "--ckpt-zstd-level", "7"};
    fg_train_config_default(&c);
    FG_CHECK(fg_train_config_from_args(&c, 3, a8, NULL) == FG_OK && c.ckpt_full_every == 3 && c.ckpt_zstd_level == 7,
             "env applied, flag over env: full_every %d level %d (%s)", c.ckpt_full_every, c.ckpt_zstd_level,
             fg_last_error());
    unsetenv("FG_CKPT_FULL_EVERY");
    unsetenv("FG_CKPT_ZSTD_LEVEL");

    /* every knob is in the JSON record of a run */
    fg_train_config_default(&c);
    char *js = fg_train_config_to_json(&c);
    static const char *const keys[] = {"ckpt_full_every", "ckpt_keep",          "ckpt_async",
                                       "ckpt_zstd_level", "ckpt_compress_full", "ckpt_write_delay_ms",
                                       "blas_threading",  "n_expert_active"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char k[64];
        snprintf(k, sizeof k, "\"%s\":", keys[i]);
        FG_CHECK(js && strstr(js, k), "config.json has %s", keys[i]);
    }
    FG_CHECK(js && strstr(js, "\"blas_threading\": \"auto\""), "blas_threading recorded by name");
    fg_free(js);

    /* through the CLI: a bad override fails naming the variable; a good one is reported
     * and recorded in the run's config.json */
    const char *bin = fg_test_frugal_bin();
    if (bin && exists(bin)) {
        char cmd[2048], out[8192];
        const char *run = tmp("env_run");
        snprintf(cmd, sizeof cmd, "FG_CKPT_KEEP=abc %s train --data %s --out %s", bin, make_corpus(), run);
        int rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc != 0 && strstr(out, "FG_CKPT_KEEP: expected a number, got 'abc'") && !exists(run),
                 "CLI: bad environment override refused (rc %d): %s", rc, out);
        snprintf(cmd, sizeof cmd,
                 "FG_LOG_LEVEL=2 FG_CKPT_KEEP=3 %s train --data %s --out %s --n-layer 1 --d-model 32 --n-head 2 "
                 "--seq-len 32 --batch-size 2 --max-steps 2 --val-batches 1",
                 bin, make_corpus(), run);
        rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc == 0 && strstr(out, "environment: FG_CKPT_KEEP=3 sets ckpt_keep"), "CLI: override reported: %s",
                 out);
        char p[700];
        snprintf(p, sizeof p, "%s/config.json", run);
        fg_train_config_default(&c);
        FG_CHECK(fg_train_config_load_json(&c, p) == FG_OK && c.ckpt_keep == 3, "config.json records ckpt_keep %d",
                 c.ckpt_keep);
        /* the kernel knobs: a bad FG_BLAS_THREADING fails the run naming it (the kernels'
         * parser); a good one is in effect and recorded */
        const char *run2 = tmp("env_run2");
        snprintf(cmd, sizeof cmd, "FG_BLAS_THREADING=gpu %s train --data %s --out %s", bin, make_corpus(), run2);
        rc = fg_test_run(cmd, out, sizeof out);
        FG_CHECK(rc != 0 && strstr(out, "FG_BLAS_THREADING='gpu'") && !exists(run2),
                 "CLI: bad FG_BLAS_THREADING refused (rc %d): %s", rc, out);
        snprintf(cmd, sizeof cmd,
                 "FG_BLAS_THREADING=blas %s train --data %s --out %s --n-layer 1 --d-model 32 --n-head 2 "
                 "--seq-len 32 --batch-size 2 --max-steps 2 --val-batches 1",
                 bin, make_corpus(), run2);
        rc = fg_test_run(cmd, out, sizeof out);
        snprintf(p, sizeof p, "%s/config.json", run2);
        fg_train_config_default(&c);
        FG_CHECK(rc == 0 && fg_train_config_load_json(&c, p) == FG_OK && c.blas_threading == 2 && c.kernels[0],
                 "config.json records the kernel knobs in effect: blas_threading %d kernels '%s' (%s)",
                 c.blas_threading, c.kernels, out);
    }

    /* and in --help, with its environment variable */
    const char *hp = tmp("help.txt");
    FILE *f = fopen(hp, "w+");
    fg_train_config_print_help(f);
    rewind(f);
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    FG_CHECK(strstr(buf, "--ckpt-keep") && strstr(buf, "(env FG_CKPT_KEEP)") && strstr(buf, "--blas-threading") &&
                 strstr(buf, "[auto|omp|blas]"),
             "help lists the checkpoint and BLAS knobs");
}

/* ---- resume checks what it resumes ---- */
static void test_resume_check(void)
{
    fg_train_config c;
    const char *run = tmp("resume_check");
    tiny_config(&c, run);
    c.ckpt_every = 5;
    c.stop_after = 5;
    c.max_steps = 10;
    fg_status st = fg_train_run(&c, NULL, NULL);
    FG_CHECK(st == FG_OK, "first part: %s", fg_last_error());
    if (st != FG_OK)
        return;
    c.stop_after = 0;
    c.resume = 1;

    /* a model flag changed: refused, naming the key with both values; nothing written */
    fg_train_config d = c;
    d.model.d_model = 64;
    d.seq_len = 16;
    st = fg_train_run(&d, NULL, NULL);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "d_model 32 -> 64") &&
                 strstr(fg_last_error(), " seq_len 32 -> 16"),
             "changed d_model and seq_len refused: %s", fg_last_error());
    d = c;
    d.lr = 5e-3f;
    st = fg_train_run(&d, NULL, NULL);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "lr 0.00999999978 -> 0.00499999989"),
             "changed peak lr refused: %s", fg_last_error());
    d = c;
    strcpy(d.tokenizer, "byte");
    d.seed = 7;
    st = fg_train_run(&d, NULL, NULL);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "seed 1337 -> 7"), "changed seed refused: %s",
             fg_last_error());

    /* through the CLI too: the message names the flag's key */
    const char *bin = fg_test_frugal_bin();
    if (bin && exists(bin)) {
        char args[1600];
        snprintf(args, sizeof args,
                 "--data %s --out %s --n-layer 1 --d-model 48 --n-head 2 --batch-size 4 --seq-len 32 --max-steps 10 "
                 "--warmup-steps 5 --lr 1e-2 --min-lr 1e-3 --val-every 20 --val-batches 4 --threads 2 --ckpt-every 5 "
                 "--resume",
                 make_corpus(), run);
        expect_cli_fail(args, "d_model 32 -> 48", NULL);
        snprintf(args, sizeof args, "--data %s --out %s --resume", make_corpus(), tmp("never_ran"));
        expect_cli_fail(args, "holds no run to resume", tmp("never_ran"));
    }

    /* max_steps (the schedule's end), min_lr, ckpt_keep: accepted and logged */
    const char *lp = tmp("resume_log.txt");
    FILE *log = fopen(lp, "w+");
    c.max_steps = 12;
    c.min_lr = 2e-3f;
    c.ckpt_keep = 3;
    fg_train_result r;
    st = fg_train_run(&c, log, &r);
    FG_CHECK(st == FG_OK && r.steps == 7, "resume with max_steps 10 -> 12: %s (%ld steps)", fg_last_error(), r.steps);
    rewind(log);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, log);
    buf[n] = '\0';
    fclose(log);
    FG_CHECK(strstr(buf, "resume: max_steps 10 -> 12\n") &&
                 strstr(buf, "resume: min_lr 0.00100000005 -> 0.00200000009") &&
                 strstr(buf, "resume: ckpt_keep 2 -> 3") && !strstr(buf, "resume: resume"),
             "changes logged: %s", buf);
}

/* ---- the run directory: overwrite, lock, failed writes ---- */
static int count_ckpt_files(const char *dir)
{
    char cmd[700], out[64];
    snprintf(cmd, sizeof cmd, "ls '%s' 2>/dev/null | grep -c 'fgck$'", dir);
    fg_test_run(cmd, out, sizeof out);
    return atoi(out);
}

static void test_run_dir_safety(void)
{
    /* --overwrite into an older run, stopped before its first checkpoint: a --resume
     * must not pick up the old run's checkpoints (it used to resume the old step 20
     * into the new run's metrics and exit 0). */
    fg_train_config c;
    const char *dir = tmp("overwrite_run");
    char p[700];
    tiny_config(&c, dir);
    c.max_steps = 20;
    c.ckpt_every = 5;
    c.val_every = 0;
    FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "old run: %s", fg_last_error());
    snprintf(p, sizeof p, "%s/ckpt", dir);
    FG_CHECK(count_ckpt_files(p) > 0, "old run left checkpoints");
    c.overwrite = 1;
    c.ckpt_every = 0; /* the new run dies before its first checkpoint */
    c.max_steps = 3;
    FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "overwriting run: %s", fg_last_error());
    FG_CHECK(count_ckpt_files(p) == 0, "--overwrite removed the old run's checkpoints (%d left)", count_ckpt_files(p));
    static char l[64][32];
    FG_CHECK(read_losses(dir, l, 64) == 3, "metrics hold only the new run's 3 steps");
    c.overwrite = 0;
    c.resume = 1;
    c.max_steps = 20;
    fg_train_result res;
    fg_status st = fg_train_run(&c, NULL, &res);
    FG_CHECK(st != FG_OK && strstr(fg_last_error(), "no checkpoint"), "resume after overwrite finds nothing: %s",
             fg_last_error());

    /* metrics.jsonl on a full disk: the run stops at the first failed line, naming the
     * file (it used to go on with a torn line). */
    if (access("/dev/full", W_OK) == 0) {
        const char *mr = tmp("metrics_full");
        tiny_config(&c, mr);
        c.max_steps = 20;
        c.ckpt_every = 5;
        c.stop_after = 5;
        c.val_every = 0;
        FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "first 5 steps: %s", fg_last_error());
        snprintf(p, sizeof p, "%s/metrics.jsonl", mr);
        FG_CHECK(unlink(p) == 0 && symlink("/dev/full", p) == 0, "metrics.jsonl -> /dev/full");
        c.stop_after = 0;
        c.resume = 1;
        memset(&res, 0, sizeof res);
        st = fg_train_run(&c, NULL, &res);
        FG_CHECK(st == FG_ERR_IO && strstr(fg_last_error(), "metrics.jsonl: write failed at step 6") &&
                     strstr(fg_last_error(), "No space left"),
                 "full disk under metrics.jsonl stops the run: %s", fg_last_error());
        FG_CHECK(res.steps == 1, "stopped after the step whose line failed (%ld steps)", res.steps);

        /* the torn line such a failure leaves is dropped by the next resume */
        FG_CHECK(unlink(p) == 0, "remove the symlink");
        FILE *f = fopen(p, "w");
        FG_ASSERT(f);
        fputs("{\"step\": 5, \"loss\": 1.5}\n{\"step\": 6, \"lo", f);
        fclose(f);
        FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "resume after the torn line: %s", fg_last_error());
        char *text = NULL;
        size_t n = 0;
        FG_CHECK(fg_read_file(p, 0, &text, &n) == FG_OK && !strstr(text, "\"lo{") && !strstr(text, "\"lo\n") &&
                     text[n - 1] == '\n',
                 "torn line dropped: %s", text ? text : "");
        fg_free(text);
    } else {
        fg_test_skip("metrics on a full disk", "/dev/full is not writable here");
    }

    /* a constructor's failure keeps its own status (a missing tokenizer is an I/O
     * error; the trainer used to call every tokenizer failure FG_ERR_INVALID) */
    tiny_config(&c, tmp("no_tok_run"));
    snprintf(c.tokenizer, sizeof c.tokenizer, "%s", tmp("no_such_tokenizer.json"));
    st = fg_train_run(&c, NULL, NULL);
    FG_CHECK(st == FG_ERR_IO && strstr(fg_last_error(), "no_such_tokenizer.json"), "missing tokenizer: %d %s", st,
             fg_last_error());

    const char *bin = fg_test_frugal_bin();
    if (!bin || !exists(bin)) {
        fg_test_skip("run directory CLI checks", "FG_FRUGAL_BIN not built");
        return;
    }
    const char *good = tmp("safety_shard.bin");
    make_shard(good, 2000, 250);
    char cmd[3000], out[8192];

    /* --resume with no checkpoint fails before writing anything */
    const char *fresh = tmp("resume_nothing");
    snprintf(cmd, sizeof cmd, "%s train --data %s --out %s --resume", bin, make_corpus(), fresh);
    int rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc != 0 && (strstr(out, "no checkpoint") || strstr(out, "no run to resume")) && !exists(fresh),
             "resume with nothing to resume: rc %d, %s", rc, out);

    /* two trainers on one directory: the second is refused with the holder's pid */
    const char *locked = tmp("locked_run");
    FG_ASSERT(mkdir(locked, 0755) == 0);
    snprintf(p, sizeof p, "%s/.frugal.lock", locked);
    fg_lock lk;
    FG_CHECK(fg_lock_acquire(&lk, p) == FG_OK, "test holds the run lock: %s", fg_last_error());
    snprintf(cmd, sizeof cmd,
             "%s train --train-shards %s --out %s --seq-len 32 --n-layer 1 --d-model 32 --n-head 2 --batch-size 2 "
             "--max-steps 2",
             bin, good, locked);
    rc = fg_test_run(cmd, out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "locked by pid %ld", (long)getpid());
    snprintf(p, sizeof p, "%s/metrics.jsonl", locked);
    FG_CHECK(rc != 0 && strstr(out, want) && !exists(p), "second trainer refused: rc %d, %s", rc, out);
    fg_lock_release(&lk);
    FG_CHECK(fg_test_run(cmd, out, sizeof out) == 0, "runs once the lock is free: %s", out);

    /* a checkpoint write that fails (file-size limit: EFBIG, as on a full disk): the
     * message names the first failed write (step 5), not the later one of step 10 that
     * failed the same way, and the cost summary does not claim a clean "0 B". */
    const char *lim = tmp("limited_run");
    snprintf(cmd, sizeof cmd,
             "trap '' XFSZ; ulimit -f 40; %s train --train-shards %s --out %s --seq-len 32 --n-layer 1 --d-model 32 "
             "--n-head 2 --batch-size 2 --max-steps 20 --ckpt-every 5",
             bin, good, lim);
    rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc != 0 && strstr(out, "step 5 failed") && strstr(out, "ckpt-0000000005-full.fgck: write of") &&
                 strstr(out, "too large") && !strstr(out, "step 10 failed"),
             "first failed checkpoint write named: rc %d, %s", rc, out);
    FG_CHECK(strstr(out, "checkpointed    : 0 B written, then a checkpoint write failed") != NULL,
             "cost summary reports the failure: %s", out);
    snprintf(p, sizeof p, "%s/ckpt", lim);
    FG_CHECK(count_ckpt_files(p) == 0, "no partial checkpoint left");
}

int main(void)
{
    FG_TEST_BEGIN("train");
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "kernels: %s", fg_last_error());
    test_config();
    test_loader();
    test_grad_accum();
    test_runs();
    test_moe_resume();
    test_bf16_moments_resume();
    test_knobs();
    test_resume_check();
    test_cli();
    test_cli_convert_sample();
    test_run_dir_safety();
    return fg_test_end();
}
