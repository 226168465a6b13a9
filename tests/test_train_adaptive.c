/* test_train_adaptive.c: the adaptive batch size rules on synthetic streams of known
 * noise (each grows when the noise dominates and stays put when the signal does; the
 * gradient noise scale estimate lands near its true value), the LR multiplier, the
 * state round trip, and training runs: the batch grows in the metrics, and a resume mid-
 * run is bit-exact with the rule on, with loss-driven augmentation on, with both, and with
 * both plus synthetic text mixed in (all three levers of issue 17). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void rule_config(fg_train_config *c, int rule, int B, int accum)
{
    fg_train_config_default(c);
    c->batch_rule = rule;
    c->batch_size = B;
    c->grad_accum = accum;
    c->batch_accum_max = 64;
    c->batch_check_every = 20;
    c->batch_ratio = 1.0f;
    c->batch_ema = 0.9f;
}

/* One synthetic step of the gns rule: true gradient G (|G|^2 = g2 over d coordinates),
 * per-row noise of variance sigma^2 per coordinate, so tr(Sigma) = d sigma^2 and the
 * true B_simple = d sigma^2 / g2 rows. The first micro-batch (B rows) and the step's
 * mean over accum micro-batches are drawn as vectors and their squared norms observed. */
static int gns_step(fg_adapt *a, fg_rng *rng, int d, double g2, double sigma)
{
    static double small[4096], big[4096];
    double gi = sqrt(g2 / d), sd = sigma / sqrt((double)a->rows);
    for (int i = 0; i < d; i++)
        big[i] = 0;
    for (int k = 0; k < a->accum; k++)
        for (int i = 0; i < d; i++) {
            double v = gi + sd * fg_rng_normal(rng);
            if (k == 0)
                small[i] = v;
            big[i] += v / a->accum;
        }
    double ss = 0, bs = 0;
    for (int i = 0; i < d; i++) {
        ss += small[i] * small[i];
        bs += big[i] * big[i];
    }
    return fg_adapt_observe(a, 0, ss, bs);
}

static void test_gns_rule(void)
{
    fg_train_config c;
    fg_rng rng;
    fg_adapt a;
    /* noise-dominated: B_simple = 1000 x 1 / 1 = 1000 rows, steps of 4 x 2 = 8 rows: the
     * batch doubles at each decision until the cap (64 micro-batches = 256 rows < 1000) */
    rule_config(&c, FG_BATCH_GNS, 4, 2);
    fg_adapt_init(&a, &c);
    fg_rng_seed(&rng, 1);
    for (int s = 0; s < 200; s++)
        gns_step(&a, &rng, 1000, 1.0, 1.0);
    FG_CHECK(a.accum == 64 && a.grows == 5, "gns, noise 1000 rows: accum 2 -> %d (%ld doublings), want 64 (5)", a.accum,
             a.grows);
    FG_CHECK(fabs(a.b_noise / 1000.0 - 1) < 0.25, "gns estimate %.1f rows, true 1000", a.b_noise);
    /* signal-dominated: B_simple = 1000 x 0.01^2 / 1 = 0.1 rows: never grows */
    fg_adapt_init(&a, &c);
    fg_rng_seed(&rng, 2);
    int grew = 0;
    for (int s = 0; s < 200; s++)
        grew += gns_step(&a, &rng, 1000, 1.0, 0.01);
    FG_CHECK(grew == 0 && a.accum == 2, "gns, noise 0.1 rows: no growth (grew %d, accum %d)", grew, a.accum);
    FG_CHECK(fabs(a.b_noise / 0.1 - 1) < 0.25, "gns estimate %.4f rows, true 0.1", a.b_noise);
    /* in between: B_simple = 40 rows; steps of 8 rows grow to 16, 32, then (40 / 64 < 1) stop */
    fg_adapt_init(&a, &c);
    fg_rng_seed(&rng, 3);
    for (int s = 0; s < 400; s++)
        gns_step(&a, &rng, 1000, 1.0, sqrt(0.04));
    FG_CHECK(a.accum == 16, "gns, noise 40 rows: accum %d, want 16 (64 rows > 40 > 32 rows)", a.accum);
    FG_CHECK(fabs(a.b_noise / 40.0 - 1) < 0.25, "gns estimate %.2f rows, true 40", a.b_noise);
}

/* loss_var on l_t = 5 - 0.01 t + sigma e_t: a window of 20 drops 0.2 */
static void test_loss_var_rule(void)
{
    fg_train_config c;
    fg_rng rng;
    fg_adapt a;
    rule_config(&c, FG_BATCH_LOSS_VAR, 4, 1);
    c.batch_accum_max = 8;
    const double sigmas[3] = {1.0, 0.01, 0.05};
    const int want[3] = {8, 1, -1};
    for (int i = 0; i < 3; i++) {
        fg_adapt_init(&a, &c);
        fg_rng_seed(&rng, 7 + (uint64_t)i);
        int first_grow = -1;
        for (int t = 0; t < 200; t++) {
            /* a larger batch averages more rows: the noise falls by sqrt(accum) */
            double noise = sigmas[i] / sqrt((double)a.accum) * fg_rng_normal(&rng);
            if (fg_adapt_observe(&a, 5 - 0.01 * t + noise, NAN, NAN) && first_grow < 0)
                first_grow = t + 1;
        }
        if (want[i] > 0)
            FG_CHECK(a.accum == want[i], "loss_var sigma %g: accum %d, want %d", sigmas[i], a.accum, want[i]);
        else /* sd 0.05 against a drop of 0.2 (estimated +-0.02): 0.25, no growth either */
            FG_CHECK(a.accum == 1, "loss_var sigma %g (noise/drop ~0.25): accum %d, want 1", sigmas[i], a.accum);
        if (i == 0)
            FG_CHECK(first_grow == 20, "loss_var: the first decision is at the window's end (step %d)", first_grow);
    }
    /* a flat loss is all noise at any size: grows to the cap */
    fg_adapt_init(&a, &c);
    fg_rng_seed(&rng, 11);
    for (int t = 0; t < 200; t++)
        fg_adapt_observe(&a, 3 + 0.001 * fg_rng_normal(&rng), NAN, NAN);
    FG_CHECK(a.accum == 8, "loss_var on a plateau: accum %d, want the cap 8", a.accum);
    /* fixed: never */
    rule_config(&c, FG_BATCH_FIXED, 4, 1);
    fg_adapt_init(&a, &c);
    for (int t = 0; t < 200; t++)
        fg_adapt_observe(&a, 3, NAN, NAN);
    FG_CHECK(a.accum == 1 && fg_adapt_lr_mult(&a) == 1.0f, "fixed: accum %d", a.accum);
}

static void test_lr_and_state(void)
{
    fg_train_config c;
    fg_adapt a, b;
    rule_config(&c, FG_BATCH_LOSS_VAR, 4, 2);
    fg_adapt_init(&a, &c);
    a.accum = 8;
    FG_CHECK(fg_adapt_lr_mult(&a) == 2.0f, "sqrt scaling: accum 2 -> 8: x%g, want 2", fg_adapt_lr_mult(&a));
    a.lr_scaling = FG_BATCH_LR_LINEAR;
    FG_CHECK(fg_adapt_lr_mult(&a) == 4.0f, "linear scaling: x%g, want 4", fg_adapt_lr_mult(&a));
    a.lr_scaling = FG_BATCH_LR_NONE;
    FG_CHECK(fg_adapt_lr_mult(&a) == 1.0f, "no scaling: x%g", fg_adapt_lr_mult(&a));
    /* round trip: doubles exactly, the window, the counters */
    a.lr_scaling = FG_BATCH_LR_SQRT;
    a.observed = 13;
    a.ema_g2 = 0.1 / 3;
    a.ema_s = 1e-7 / 7;
    a.ema_n = 5;
    a.b_noise = a.ema_s / a.ema_g2;
    a.noise = INFINITY;
    a.n_loss = 3;
    a.loss[0] = 1.0 / 3;
    a.loss[1] = 2.5;
    a.loss[2] = (double)2.7182817f;
    char *s = fg_adapt_save(&a);
    fg_adapt_init(&b, &c);
    FG_CHECK(s && fg_adapt_restore(&b, s, "state") == FG_OK, "restore: %s", fg_last_error());
    FG_CHECK(b.accum == 8 && b.observed == 13 && b.ema_g2 == a.ema_g2 && b.ema_s == a.ema_s && b.ema_n == 5 &&
                 b.b_noise == a.b_noise && b.n_loss == 3 && !memcmp(b.loss, a.loss, 3 * sizeof(double)),
             "state round trip is exact: %s", s ? s : "(null)");
    fg_free(s);
    /* an accum outside the config's bounds is refused, naming it */
    fg_status st = fg_adapt_restore(&b, "{\"accum\":128,\"loss_window\":[]}", "ck/meta");
    FG_CHECK(st == FG_ERR_FORMAT && strstr(fg_last_error(), "ck/meta") && strstr(fg_last_error(), "accum 128"),
             "bad accum: %s", fg_last_error());
}

static void test_config(void)
{
    fg_train_config c;
    fg_train_config_default(&c);
    FG_CHECK(fg_train_config_set(&c, "batch-rule", "gns", "--batch-rule") == FG_OK && c.batch_rule == FG_BATCH_GNS,
             "--batch-rule gns");
    fg_status st = fg_train_config_set(&c, "batch_rule", "big", "--batch-rule");
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "--batch-rule"), "bad rule: %s", fg_last_error());
    snprintf(c.data, sizeof c.data, "x.txt");
    c.grad_accum = 1;
    st = fg_train_config_validate(&c);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "grad_accum"), "gns with accum 1: %s", fg_last_error());
    c.grad_accum = 4;
    c.batch_accum_max = 2;
    st = fg_train_config_validate(&c);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "batch_accum_max"), "max below accum: %s",
             fg_last_error());
}

/* ---- training runs ---- */
static void tiny_config(fg_train_config *c, const char *out)
{
    fg_train_config_default(c);
    snprintf(c->data, sizeof c->data, "%s", fg_test_grammar_corpus("corpus.txt"));
    snprintf(c->out, sizeof c->out, "%s", out);
    c->model.n_layer = 1;
    c->model.d_model = 32;
    c->model.n_head = 2;
    c->batch_size = 4;
    c->seq_len = 32;
    c->grad_accum = 2;
    c->max_steps = 30;
    c->warmup_steps = 5;
    c->lr = 1e-2f;
    c->min_lr = 1e-3f;
    c->val_every = 0;
    c->val_batches = 4;
    c->threads = 2;
}

/* The value text of `key` in each training line of metrics.jsonl. */
static int read_field(const char *run, const char *key, char vals[][32], int cap)
{
    char path[600], pat[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        if (!strstr(line, "\"loss\": "))
            continue;
        const char *p = strstr(line, pat);
        if (p)
            sscanf(p + strlen(pat), "%31[^,}]", vals[n]);
        else
            strcpy(vals[n], "-");
        n++;
    }
    fclose(f);
    return n;
}

static int same_field(const char *a, const char *b, const char *key, int want)
{
    static char va[64][32], vb[64][32];
    int na = read_field(a, key, va, 64), nb = read_field(b, key, vb, 64);
    int same = na == want && nb == want;
    for (int i = 0; same && i < na; i++)
        same &= strcmp(va[i], vb[i]) == 0;
    return same;
}

/* Stop at step 13 (checkpoint) and resume to 30 = uninterrupted, field for field. */
static void resume_case(const char *tag, fg_train_config *c, const char *const *fields)
{
    char name[64];
    snprintf(name, sizeof name, "%s_a", tag);
    const char *ra = tmp(name);
    snprintf(c->out, sizeof c->out, "%s", ra);
    fg_train_result rra, rrb;
    FG_CHECK(fg_train_run(c, NULL, &rra) == FG_OK, "%s reference: %s", tag, fg_last_error());
    snprintf(name, sizeof name, "%s_b", tag);
    const char *rb = tmp(name);
    snprintf(c->out, sizeof c->out, "%s", rb);
    c->ckpt_every = 5;
    c->stop_after = 13;
    FG_CHECK(fg_train_run(c, NULL, NULL) == FG_OK, "%s first part: %s", tag, fg_last_error());
    c->stop_after = 0;
    c->resume = 1;
    FG_CHECK(fg_train_run(c, NULL, &rrb) == FG_OK, "%s resume: %s", tag, fg_last_error());
    for (int i = 0; fields[i]; i++)
        FG_CHECK(same_field(ra, rb, fields[i], 30), "%s: stop at 13 + resume = uninterrupted: '%s' of 30 steps", tag,
                 fields[i]);
    FG_CHECK(rra.last_val == rrb.last_val && rra.last_loss == rrb.last_loss,
             "%s: same end (val %.9g vs %.9g, loss %.9g vs %.9g)", tag, rra.last_val, rrb.last_val, rra.last_loss,
             rrb.last_loss);
}

static const char *field_list(const char *run, const char *key)
{
    static char out[2048];
    static char v[64][32];
    int n = read_field(run, key, v, 64);
    out[0] = '\0';
    for (int i = 0; i < n && strlen(out) + 40 < sizeof out; i++) {
        strcat(out, v[i]);
        strcat(out, " ");
    }
    return out;
}

static void test_runs(void)
{
    fg_train_config c;
    static char acc[64][32];
    /* gns on the grammar corpus: the noise is large against 8-row steps; the batch grows
     * during the run and the metrics say so; resumed mid-run it is the same run */
    tiny_config(&c, tmp("gns"));
    c.batch_rule = FG_BATCH_GNS;
    c.batch_accum_max = 16;
    c.batch_check_every = 4;
    c.batch_ratio = 0.05f;
    static const char *const fields[] = {"loss", "lr", "grad_norm", "batch", "accum", "b_noise", "tokens", NULL};
    resume_case("gns", &c, fields);
    int n = read_field(tmp("gns_a"), "accum", acc, 64);
    FG_CHECK(n == 30 && !strcmp(acc[0], "2") && atoi(acc[29]) > 2, "gns run: accum %s at step 1, %s at step 30",
             n > 0 ? acc[0] : "?", n == 30 ? acc[29] : "?");
    int grew = 0;
    for (int i = 1; i < 13 && n == 30; i++)
        grew += strcmp(acc[i], acc[i - 1]) != 0;
    FG_CHECK(grew > 0, "gns run: the batch grows before the resume point (measures %s)",
             field_list(tmp("gns_a"), "batch_noise"));
    /* loss_var from one micro-batch */
    tiny_config(&c, tmp("lv"));
    c.grad_accum = 1;
    c.batch_rule = FG_BATCH_LOSS_VAR;
    c.batch_accum_max = 16;
    c.batch_check_every = 5;
    c.batch_ratio = 0.01f; /* below every measure of this run (0.04 and up): grows at 5, 10, 15, 20 */
    static const char *const fields_lv[] = {"loss", "lr", "batch", "batch_noise", NULL};
    resume_case("loss_var", &c, fields_lv);
    n = read_field(tmp("loss_var_a"), "accum", acc, 64);
    FG_CHECK(n == 30 && !strcmp(acc[12], "4") && !strcmp(acc[29], "16"),
             "loss_var run: accum 4 at step 13 (the resume point) and 16 at the end: %s",
             field_list(tmp("loss_var_a"), "accum"));
}

/* Loss-driven augmentation on: resumed mid-run = uninterrupted (the pool, its threshold
 * ring and RNG are in the checkpoint), alone and with the adaptive batch on too. */
static void test_aug_runs(void)
{
    fg_train_config c;
    static char rv[64][32];
    tiny_config(&c, tmp("aug"));
    c.aug = 1;
    c.aug_rate = 0.5f;
    c.aug_syntax_start = 0.0f;
    c.aug_syntax_end = 0.6f; /* both levels within 30 steps */
    static const char *const fields[] = {"loss", "grad_norm", "aug_revisits", "aug_threshold", "aug_pool", NULL};
    resume_case("aug", &c, fields);
    int n = read_field(tmp("aug_a"), "aug_revisits", rv, 64);
    FG_CHECK(n == 30 && atoi(rv[12]) > 0 && atoi(rv[29]) > atoi(rv[12]),
             "aug run: hard windows revisited before step 13 (%s) and after (%s)", n == 30 ? rv[12] : "?",
             n == 30 ? rv[29] : "?");
    /* the same with the adaptive batch */
    tiny_config(&c, tmp("aug_lv"));
    c.aug = 1;
    c.aug_rate = 0.5f;
    c.aug_syntax_start = 0.0f;
    c.aug_syntax_end = 0.6f;
    c.grad_accum = 1;
    c.batch_rule = FG_BATCH_LOSS_VAR;
    c.batch_accum_max = 16;
    c.batch_check_every = 5;
    c.batch_ratio = 0.01f;
    static const char *const fields2[] = {"loss", "batch", "aug_revisits", "aug_pool", NULL};
    resume_case("aug_lv", &c, fields2);
    /* all three training-loop levers of issue 17: the same with synthetic text mixed in */
    static const char synth[] = "the cat saw a dog. a dog ran to the cat, and the cat ran away.\n"
                                "one bird sang; two birds sang. the dog slept by the door.\n";
    char sp[600];
    snprintf(sp, sizeof sp, "%s", tmp("synth.txt"));
    fg_test_write_file(sp, synth, sizeof synth - 1);
    c.synth_ratio = 0.3f;
    snprintf(c.synth_path, sizeof c.synth_path, "%s", sp);
    c.resume = 0; /* resume_case left the config resuming; this run starts fresh */
    resume_case("aug_lv_synth", &c, fields2);
    FG_CHECK(!same_field(tmp("aug_lv_a"), tmp("aug_lv_synth_a"), "loss", 30),
             "aug_lv_synth: the synthetic mix changes the run (losses differ from aug_lv's)");
    /* an augmented run is another run: its losses differ from the plain one's */
    tiny_config(&c, tmp("plain"));
    fg_train_result rp, ra;
    FG_CHECK(fg_train_run(&c, NULL, &rp) == FG_OK, "plain: %s", fg_last_error());
    c.aug = 1;
    snprintf(c.out, sizeof c.out, "%s", tmp("aug_c"));
    FG_CHECK(fg_train_run(&c, NULL, &ra) == FG_OK, "aug: %s", fg_last_error());
    FG_CHECK(rp.last_loss != ra.last_loss, "augmentation changes the run (%.9g vs %.9g)", rp.last_loss, ra.last_loss);
    /* refused with dp > 1, named */
    c.dp = 2;
    c.grad_accum = 2;
    fg_status st = fg_train_config_validate(&c);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "'aug'"), "aug with dp: %s", fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("train_adaptive");
    test_gns_rule();
    test_loss_var_rule();
    test_lr_and_state();
    test_config();
    test_runs();
    test_aug_runs();
    return fg_test_end();
}
