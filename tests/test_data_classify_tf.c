/* test_data_classify_tf.c: the transformer quality classifier: it learns a separable toy
 * task, its file round-trips bit for bit, damaged files are refused naming the file and
 * the problem, and the pipeline sends it only the ambiguous documents (all of them with
 * --classify all), through the CLI too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/data.h"
#include "frugal/kernels.h"
#include "harness.h"

/* Toy task: "keep" texts are words of the letters a..f, "drop" texts words of t..z,
 * nw words of 2..7 letters. The classes share no byte but the space. */
static size_t toy_text(fg_rng *r, int keep, int nw, char *buf)
{
    size_t n = 0;
    for (int w = 0; w < nw; w++) {
        int L = 2 + (int)fg_rng_below(r, 6);
        for (int k = 0; k < L; k++)
            buf[n++] = (char)((keep ? 'a' : 't') + (int)fg_rng_below(r, 6));
        buf[n++] = w + 1 < nw ? ' ' : '.';
    }
    buf[n] = 0;
    return n;
}

enum { NTOY = 192, TOYLEN = 80 };
static char toy_buf[NTOY][TOYLEN];
static const char *toy_t[NTOY];
static size_t toy_l[NTOY];
static int toy_y[NTOY];

static void toy_config(fg_data_tfcls_config *c)
{
    fg_data_tfcls_config_init(c);
    c->n_layer = 1;
    c->n_head = 2;
    c->d_model = 32;
    c->max_len = 48;
    c->epochs = 6;
    c->lm_epochs = 1;
    c->batch = 16;
    c->lr = 3e-3f;
    c->seed = 7;
}

static fg_data_tfcls *train_toy(void)
{
    fg_rng r;
    fg_rng_seed(&r, 99);
    for (int i = 0; i < NTOY; i++) {
        toy_y[i] = i & 1;
        toy_l[i] = toy_text(&r, toy_y[i], 3 + (int)fg_rng_below(&r, 8), toy_buf[i]);
        toy_t[i] = toy_buf[i];
    }
    fg_data_tfcls_config c;
    toy_config(&c);
    double t0 = fg_time_sec();
    fg_data_tfcls *m = fg_data_tfcls_train(&c, toy_t, toy_l, toy_y, NTOY / 2);
    FG_CHECK(m != NULL, "train: %s", fg_last_error());
    printf("  toy training: %.2f s, %zu parameters\n", fg_time_sec() - t0, m ? fg_data_tfcls_num_params(m) : 0);
    return m;
}

static void test_learns(fg_data_tfcls *m)
{
    fg_data_tfcls_ctx *x = fg_data_tfcls_ctx_new(m);
    FG_CHECK(x != NULL, "ctx: %s", fg_last_error());
    if (!x)
        return;
    int ok = 0, n = 0;
    double margin = 0;
    for (int i = NTOY / 2; i < NTOY; i++, n++) { /* held out: never trained on */
        float p = fg_data_tfcls_predict(x, toy_t[i], toy_l[i]);
        ok += (p >= 0.5f) == toy_y[i];
        margin += toy_y[i] ? p : 1 - p;
    }
    FG_CHECK(ok >= n * 95 / 100, "toy task held out: %d/%d correct (mean P(true label) %.3f)", ok, n, margin / n);
    /* untrained (same shape, no label epochs): chance, so the check above can fail */
    fg_data_tfcls_config c;
    toy_config(&c);
    c.epochs = 0;
    fg_data_tfcls *u = fg_data_tfcls_train(&c, toy_t, toy_l, toy_y, NTOY / 2);
    fg_data_tfcls_ctx *ux = u ? fg_data_tfcls_ctx_new(u) : NULL;
    FG_CHECK(ux != NULL, "untrained model: %s", fg_last_error());
    int uok = 0;
    for (int i = NTOY / 2; ux && i < NTOY; i++)
        uok += (fg_data_tfcls_predict(ux, toy_t[i], toy_l[i]) >= 0.5f) == toy_y[i];
    FG_CHECK(uok < n * 80 / 100, "without label epochs the toy task is not learned (%d/%d)", uok, n);
    fg_data_tfcls_ctx_delete(ux);
    fg_data_tfcls_delete(u);
    /* long texts read their first max_len bytes only; empty text is fine */
    char big[4096];
    memset(big, 'a', sizeof big);
    float pb = fg_data_tfcls_predict(x, big, sizeof big), pe = fg_data_tfcls_predict(x, "", 0);
    FG_CHECK(pb >= 0 && pb <= 1 && pe >= 0 && pe <= 1, "long / empty text: %g %g", pb, pe);
    /* bad settings name themselves */
    c.epochs = 0;
    c.lm_epochs = 0;
    FG_CHECK(!fg_data_tfcls_train(&c, toy_t, toy_l, toy_y, 4) && strstr(fg_last_error(), "epochs"),
             "no epochs refused: %s", fg_last_error());
    toy_config(&c);
    c.d_model = 30; /* not a multiple of 4 heads */
    c.n_head = 4;
    FG_CHECK(!fg_data_tfcls_train(&c, toy_t, toy_l, toy_y, 4) && strstr(fg_last_error(), "d_model"),
             "bad shape refused: %s", fg_last_error());
    fg_data_tfcls_ctx_delete(x);
}

static long file_size(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void patch_byte(const char *p, long at, int xor_with)
{
    FILE *f = fopen(p, "r+b");
    if (!f)
        return;
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ xor_with, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to, long n)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    for (long i = 0; a && b && i < n; i++) {
        int c = fgetc(a);
        if (c == EOF)
            break;
        fputc(c, b);
    }
    if (a)
        fclose(a);
    if (b)
        fclose(b);
}

static void test_file(fg_data_tfcls *m)
{
    const char *tmp = fg_test_tmpdir();
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/toy.tfc", tmp);
    FG_CHECK(fg_data_tfcls_save(m, p) == FG_OK, "save: %s", fg_last_error());
    FG_CHECK(fg_data_classifier_file_kind(p) == 2, "kind of a transformer file");
    fg_data_tfcls *m2 = fg_data_tfcls_load(p);
    FG_CHECK(m2 != NULL, "load: %s", fg_last_error());
    if (!m2)
        return;
    fg_data_tfcls_config a, b;
    fg_data_tfcls_get_config(m, &a);
    fg_data_tfcls_get_config(m2, &b);
    FG_CHECK(!memcmp(&a, &b, sizeof a) && fg_data_tfcls_num_params(m) == fg_data_tfcls_num_params(m2),
             "shape round trip");
    fg_data_tfcls_ctx *x = fg_data_tfcls_ctx_new(m), *x2 = fg_data_tfcls_ctx_new(m2);
    int same = 0;
    for (int i = 0; x && x2 && i < NTOY; i++)
        same += fg_data_tfcls_predict(x, toy_t[i], toy_l[i]) == fg_data_tfcls_predict(x2, toy_t[i], toy_l[i]);
    FG_CHECK(same == NTOY, "round trip: %d/%d predictions bit-identical", same, NTOY);
    fg_data_tfcls_ctx_delete(x);
    fg_data_tfcls_ctx_delete(x2);
    fg_data_tfcls_delete(m2);

    long n = file_size(p);
    snprintf(q, sizeof q, "%s/bad.tfc", tmp);
    /* a flipped weight bit: the checksum */
    copy_file(p, q, n);
    patch_byte(q, n / 2, 0x10);
    FG_CHECK(!fg_data_tfcls_load(q) && strstr(fg_last_error(), q) && strstr(fg_last_error(), "checksum"),
             "flipped bit: %s", fg_last_error());
    /* cut short: the size, with the byte count */
    copy_file(p, q, n - 100);
    FG_CHECK(!fg_data_tfcls_load(q) && strstr(fg_last_error(), q) && strstr(fg_last_error(), "truncated"),
             "truncated file: %s", fg_last_error());
    copy_file(p, q, 20);
    FG_CHECK(!fg_data_tfcls_load(q) && strstr(fg_last_error(), "truncated header"), "truncated header: %s",
             fg_last_error());
    /* a version from the future */
    copy_file(p, q, n);
    patch_byte(q, 8, 0x02);
    FG_CHECK(!fg_data_tfcls_load(q) && strstr(fg_last_error(), "version 3"), "version: %s", fg_last_error());
    /* a header that lies about the shape (crc fixed up would still fail the count): layers 1 -> 3 */
    copy_file(p, q, n);
    patch_byte(q, 16, 0x02);
    FG_CHECK(!fg_data_tfcls_load(q) && strstr(fg_last_error(), q), "shape changed: %s", fg_last_error());
    /* not a classifier at all; a linear classifier file is not a transformer one */
    fg_test_write_file(q, "hello, this is not a model\n", 27);
    FG_CHECK(!fg_data_tfcls_load(q) && strstr(fg_last_error(), "magic") && strstr(fg_last_error(), q), "bad magic: %s",
             fg_last_error());
    FG_CHECK(fg_data_classifier_file_kind(q) == 0 && strstr(fg_last_error(), q), "kind of garbage: %s",
             fg_last_error());
    FG_CHECK(!fg_data_tfcls_load("/nonexistent/x.tfc") && strstr(fg_last_error(), "/nonexistent/x.tfc"),
             "missing file: %s", fg_last_error());
}

/* The pipeline with a one-heuristic rules file: >= 20 words is accepted by the score,
 * <= 4 rejected, between goes to the classifier. Four documents: a long "drop" text
 * (accepted by score), a short one (rejected by score), a middle-sized "drop" text and a
 * middle-sized "keep" text (the classifier decides both). */
static void test_pipeline(fg_data_tfcls *m)
{
    const char *tmp = fg_test_tmpdir();
    char in[512], out[512], rej[512], cls[512], rules_p[512];
    snprintf(in, sizeof in, "%s/pipe.jsonl", tmp);
    snprintf(out, sizeof out, "%s/pipe.out.jsonl", tmp);
    snprintf(rej, sizeof rej, "%s/pipe.rej.jsonl", tmp);
    snprintf(cls, sizeof cls, "%s/pipe.tfc", tmp);
    snprintf(rules_p, sizeof rules_p, "%s/pipe.conf", tmp);
    fg_rng r;
    fg_rng_seed(&r, 5);
    char t[4][400];
    toy_text(&r, 0, 30, t[0]);
    toy_text(&r, 0, 2, t[1]);
    toy_text(&r, 0, 12, t[2]);
    toy_text(&r, 1, 12, t[3]);
    FILE *f = fopen(in, "wb");
    for (int i = 0; f && i < 4; i++)
        fprintf(f, "{\"text\": \"%s\", \"id\": %d}\n", t[i], i);
    if (f)
        fclose(f);
    const char *rt = "quality min_words 20 4 1\nthreshold 0.8 0.2\n";
    fg_data_rules *rules = NULL;
    FG_CHECK(fg_data_rules_parse(&rules, rt, strlen(rt), "pipe") == FG_OK, "rules: %s", fg_last_error());
    if (!rules)
        return;
    fg_data_clean_config c;
    fg_data_clean_config_init(&c);
    c.rules = rules;
    c.tf_classifier = m;
    c.out_path = out;
    c.rejects_path = rej;
    c.threads = 2;
    c.langid = false;
    c.dedup.exact = c.dedup.near = false;
    const char *paths[1] = {in};
    fg_data_report rep;
    fg_status st = fg_data_clean_run(&c, paths, 1, &rep);
    FG_CHECK(st == FG_OK, "run: %s", fg_last_error());
    FG_CHECK(rep.sent_to_classifier == 2 && rep.classifier_kept == 1 && rep.classifier_rejected == 1,
             "ambiguous-only: sent %llu (kept %llu, rejected %llu), want 2 (1, 1)",
             (unsigned long long)rep.sent_to_classifier, (unsigned long long)rep.classifier_kept,
             (unsigned long long)rep.classifier_rejected);
    FG_CHECK(rep.docs_kept == 2 && rep.accepted_by_score == 1 && fg_data_report_rejects_for(&rep, "classifier") == 1,
             "ambiguous-only: kept %llu (the long drop text by score, the keep text by the classifier)",
             (unsigned long long)rep.docs_kept);
    fg_data_report_free(&rep);
    c.classify = FG_CLASSIFY_ALL;
    /* one thread and two write the same bytes (P(keep) is in each reject line) */
    char *one = NULL, *two = NULL;
    size_t n1 = 0, n2 = 0;
    c.threads = 1;
    st = fg_data_clean_run(&c, paths, 1, &rep);
    fg_data_report_free(&rep);
    FG_CHECK(st == FG_OK && fg_read_file(rej, 1 << 20, &one, &n1) == FG_OK, "1 thread: %s", fg_last_error());
    c.threads = 2;
    st = fg_data_clean_run(&c, paths, 1, &rep);
    FG_CHECK(st == FG_OK && rep.sent_to_classifier == 4 && rep.docs_kept == 1 &&
                 fg_data_report_rejects_for(&rep, "classifier") == 3,
             "classify-all: sent %llu, kept %llu", (unsigned long long)rep.sent_to_classifier,
             (unsigned long long)rep.docs_kept);
    fg_data_report_free(&rep);
    FG_CHECK(fg_read_file(rej, 1 << 20, &two, &n2) == FG_OK && n1 == n2 && n1 > 0 && !memcmp(one, two, n1),
             "rejects with 1 and 2 threads: %zu and %zu bytes, identical", n1, n2);
    fg_free(one);
    fg_free(two);
    c.classify = FG_CLASSIFY_NONE;
    st = fg_data_clean_run(&c, paths, 1, &rep);
    FG_CHECK(st == FG_OK && rep.sent_to_classifier == 0, "classify none: sent %llu",
             (unsigned long long)rep.sent_to_classifier);
    fg_data_report_free(&rep);

    /* the CLI: the kind comes from the file; a damaged file is named with its problem */
    FG_CHECK(fg_data_tfcls_save(m, cls) == FG_OK, "save: %s", fg_last_error());
    fg_test_write_file(rules_p, rt, strlen(rt));
    const char *bin = fg_test_frugal_bin();
    char cmd[4096], o[8192];
    snprintf(cmd, sizeof cmd, "%s clean %s --rules %s --classifier %s --no-dedup --no-langid -o %s 2>&1", bin, in,
             rules_p, cls, out);
    int rc = fg_test_run(cmd, o, sizeof o);
    FG_CHECK(rc == 0 && strstr(o, "sent to classifier 2 (kept 1, rejected 1)"), "CLI ambiguous: rc %d, '%s'", rc, o);
    snprintf(cmd, sizeof cmd, "%s clean %s --rules %s --classifier %s --classifier-kind linear -o %s 2>&1", bin, in,
             rules_p, cls, out);
    rc = fg_test_run(cmd, o, sizeof o);
    FG_CHECK(rc != 0 && strstr(o, "holds a transformer classifier"), "CLI kind mismatch: rc %d, '%s'", rc, o);
    patch_byte(cls, file_size(cls) / 2, 0x01);
    snprintf(cmd, sizeof cmd, "%s clean %s --rules %s --classifier %s -o %s 2>&1", bin, in, rules_p, cls, out);
    rc = fg_test_run(cmd, o, sizeof o);
    FG_CHECK(rc != 0 && strstr(o, cls) && strstr(o, "checksum mismatch"), "CLI corrupt classifier: rc %d, '%s'", rc, o);
    /* train-classifier --kind transformer on a labeled JSONL of the toy task */
    char lab[512];
    snprintf(lab, sizeof lab, "%s/toy_lab.jsonl", tmp);
    f = fopen(lab, "wb");
    for (int i = 0; f && i < NTOY; i++)
        fprintf(f, "{\"text\": \"%s\", \"label\": %d}\n", toy_t[i], toy_y[i]);
    if (f)
        fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s clean train-classifier --kind transformer --raw --input %s -o %s --layers 1 --heads 2 --d-model 32 "
             "--max-len 48 --tf-epochs 6 --lm-epochs 1 --tf-lr 0.003 --test-frac 0.5 2>&1",
             bin, lab, cls);
    rc = fg_test_run(cmd, o, sizeof o);
    double acc = 0;
    const char *h = strstr(o, "held-out accuracy ");
    if (h)
        acc = atof(h + strlen("held-out accuracy "));
    FG_CHECK(rc == 0 && acc >= 0.95 && strstr(o, "transformer: llama, 1 layers"), "CLI train: rc %d, acc %.3f, '%s'",
             rc, acc, o);
    FG_CHECK(fg_data_classifier_file_kind(cls) == 2, "CLI wrote a transformer file");
    fg_data_rules_delete(rules);
}

int main(void)
{
    FG_TEST_BEGIN("data_classify_tf");
    if (fg_kernels_init(NULL) != FG_OK) {
        FG_CHECK(0, "kernels init: %s", fg_last_error());
        return fg_test_end();
    }
    fg_data_tfcls *m = train_toy();
    if (m) {
        test_learns(m);
        test_file(m);
        test_pipeline(m);
    }
    fg_data_tfcls_delete(m);
    return fg_test_end();
}
