/* test_train_best.c: corpus-sized runs (issue 10): max_epochs caps max_steps by the
 * training tokens, and keep_best keeps the params of the lowest validation loss in best/. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frugal/ckpt.h"
#include "frugal/kernels.h"
#include "frugal/train.h"
#include "harness.h"

static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fg_test_tmpdir(), name);
    return buf[k];
}

/* ~24 kB of a small grammar: learnable in a few dozen steps, so validation falls */
static const char *corpus(void)
{
    const char *path = tmp("best_corpus.txt");
    static const char *who[] = {"the cat", "a dog", "my friend", "the old man", "her sister"};
    static const char *did[] = {"saw", "liked", "followed", "called", "found"};
    static const char *what[] = {"the ball", "a red hat", "the river", "some bread", "the door"};
    FILE *f = fopen(path, "wb");
    FG_ASSERT(f);
    unsigned s = 7;
    for (int i = 0; i < 900; i++) {
        s = s * 1103515245u + 12345u;
        fprintf(f, "%s %s %s.\n", who[(s >> 8) % 5], did[(s >> 12) % 5], what[(s >> 16) % 5]);
    }
    fclose(f);
    return path;
}

static void small_config(fg_train_config *c, const char *out)
{
    fg_train_config_default(c);
    snprintf(c->data, sizeof c->data, "%s", corpus());
    snprintf(c->out, sizeof c->out, "%s", out);
    c->model.n_layer = 1;
    c->model.d_model = 32;
    c->model.n_head = 2;
    c->batch_size = 4;
    c->seq_len = 32;
    c->max_steps = 30;
    c->warmup_steps = 3;
    c->lr = 1e-2f;
    c->min_lr = 1e-3f;
    c->val_every = 5;
    c->val_batches = 2;
    c->threads = 2;
    c->overwrite = 1;
}

static uint64_t train_tokens(const char *run)
{
    char path[600];
    snprintf(path, sizeof path, "%s/data/train.bin", run);
    fg_loader l;
    if (fg_loader_open(&l, path, 1, 32, 1, 0, UINT32_MAX) != FG_OK)
        return 0;
    uint64_t n = fg_loader_tokens(&l);
    fg_loader_close(&l);
    return n;
}

static void test_max_epochs(void)
{
    fg_train_config c;
    const char *run = tmp("run_epochs");
    small_config(&c, run);
    c.max_steps = 100000;
    c.max_epochs = 0.5;
    c.val_every = 0;
    fg_train_result r;
    FG_CHECK(fg_train_run(&c, NULL, &r) == FG_OK, "capped run: %s", fg_last_error());
    uint64_t n = train_tokens(run);
    long want = (long)ceil(0.5 * (double)n / (4.0 * 32.0));
    FG_CHECK(n > 0 && r.steps == want, "max_epochs 0.5 of %llu tokens at 128 per step: %ld steps, want %ld",
             (unsigned long long)n, r.steps, want);
    /* config.json records the capped length (what the schedule spanned) */
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", run);
    fg_train_config back;
    fg_train_config_default(&back);
    fg_status st = fg_train_config_load_json(&back, path);
    FG_CHECK(st == FG_OK && back.max_steps == want && back.max_epochs == 0.5,
             "config.json: max_steps %ld (want %ld) max_epochs %g", back.max_steps, want, back.max_epochs);

    /* a cap above max_steps, and 0, leave max_steps alone */
    small_config(&c, run);
    c.max_epochs = 1000;
    st = fg_train_run(&c, NULL, &r);
    FG_CHECK(st == FG_OK && r.steps == 30, "max_epochs 1000: %ld steps", r.steps);
    small_config(&c, run);
    c.max_epochs = 0;
    st = fg_train_run(&c, NULL, &r);
    FG_CHECK(st == FG_OK && r.steps == 30, "max_epochs 0: %ld steps", r.steps);

    /* bounds: the table's, with the key named */
    fg_train_config_default(&c);
    FG_CHECK(fg_train_config_set(&c, "max_epochs", "-1", "--max-epochs") == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "--max-epochs") != NULL,
             "max_epochs -1 refused naming the flag: %s", fg_last_error());
    FG_CHECK(fg_train_config_set(&c, "keep_best", "2", "--keep-best") == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "--keep-best") != NULL,
             "keep_best 2 refused naming the flag: %s", fg_last_error());
}

/* step and value of the lowest val_loss in metrics.jsonl (the first of equals) */
static long best_val_step(const char *run, double *best)
{
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    long step = -1;
    *best = INFINITY;
    while (fgets(line, sizeof line, f)) {
        long s;
        double v;
        if (sscanf(line, "{\"step\": %ld, \"val_loss\": %lf}", &s, &v) == 2 && v < *best) {
            *best = v;
            step = s;
        }
    }
    fclose(f);
    return step;
}

static int count_ckpt_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    const struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, "ckpt-", 5) == 0;
    closedir(d);
    return n;
}

static void test_keep_best(void)
{
    fg_train_config c;
    const char *run = tmp("run_best");
    small_config(&c, run);
    fg_train_result r;
    FG_CHECK(fg_train_run(&c, NULL, &r) == FG_OK, "run: %s", fg_last_error());
    double best = 0;
    long want = best_val_step(run, &best);
    FG_CHECK(want > 0 && best < r.first_val - 0.5, "validation falls: %.3f -> best %.3f at step %ld", r.first_val, best,
             want);

    char dir[600];
    snprintf(dir, sizeof dir, "%s/best", run);
    FG_CHECK(count_ckpt_files(dir) == 1, "best/ holds one checkpoint (got %d)", count_ckpt_files(dir));
    /* best/ loads as a run's model, and it is the params of the best validation's step */
    fg_train_config lc;
    fg_model *m = NULL;
    FG_CHECK(fg_train_load_run(run, dir, 1, 0, &lc, &m) == FG_OK, "load best/: %s", fg_last_error());
    if (m) {
        fg_ckpt_tensor t = {"params", fg_model_params(m), fg_model_num_params(m) * sizeof(float)};
        long step = -1;
        char *meta = NULL;
        fg_status st = fg_ckpt_load_latest(dir, &step, &meta, &t, 1);
        FG_CHECK(st == FG_OK && step == want, "best/ is step %ld, lowest val_loss at step %ld", step, want);
        fg_free(meta);
        fg_model_delete(m);
    }

    /* A run whose validation loss rises: trained on lines of 'a', validated on the
     * tail's lines of 'b', so the more it learns the worse validation gets. best/ must
     * stay at the earlier, lower step, not follow the last one. */
    const char *run2 = tmp("run_best_rise");
    small_config(&c, run2);
    const char *ab = tmp("best_ab.txt");
    FILE *f = fopen(ab, "wb");
    FG_ASSERT(f);
    for (int i = 0; i < 1000; i++)
        fputs(i < 900 ? "aaaaaaaaaaaaaaa\n" : "bbbbbbbbbbbbbbb\n", f);
    fclose(f);
    snprintf(c.data, sizeof c.data, "%s", ab);
    FG_CHECK(fg_train_run(&c, NULL, &r) == FG_OK, "rising run: %s", fg_last_error());
    want = best_val_step(run2, &best);
    FG_CHECK(want >= 0 && want < r.steps && r.last_val > best, "the rising run's best %.3f at step %ld, last %.3f",
             best, want, r.last_val);
    snprintf(dir, sizeof dir, "%s/best", run2);
    m = NULL;
    FG_CHECK(fg_train_load_run(run2, dir, 1, 0, &lc, &m) == FG_OK, "load best/: %s", fg_last_error());
    if (m) {
        fg_ckpt_tensor t = {"params", fg_model_params(m), fg_model_num_params(m) * sizeof(float)};
        long step = -1;
        char *meta = NULL;
        fg_status st = fg_ckpt_load_latest(dir, &step, &meta, &t, 1);
        FG_CHECK(st == FG_OK && step == want, "rising run: best/ is step %ld, lowest val_loss at step %ld", step, want);
        fg_free(meta);
        fg_model_delete(m);
    }

    /* keep_best 0: no best/ */
    const char *run0 = tmp("run_nobest");
    small_config(&c, run0);
    c.keep_best = 0;
    FG_CHECK(fg_train_run(&c, NULL, NULL) == FG_OK, "keep_best 0 run: %s", fg_last_error());
    snprintf(dir, sizeof dir, "%s/best", run0);
    struct stat sb;
    FG_CHECK(stat(dir, &sb) != 0, "keep_best 0 writes no best/");
}

int main(void)
{
    FG_TEST_BEGIN("train_best");
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "kernels: %s", fg_last_error());
    test_max_epochs();
    test_keep_best();
    return fg_test_end();
}
