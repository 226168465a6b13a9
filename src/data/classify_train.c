/* classify_train.c: training a quality classifier (linear or transformer) from a labeled
 * file: reads JSONL (text + label field, through fg_data_reader) or LABEL<TAB>TEXT lines,
 * cleans the texts with the rules as the pipeline will, splits off a deterministic
 * held-out set, trains and scores both parts. `frugal clean train-classifier` only parses and prints. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "data_impl.h"

void fg_data_classifier_train_config_init(fg_data_classifier_train_config *c)
{
    memset(c, 0, sizeof *c);
    fg_data_classifier_config_init(&c->model);
    c->label_field = "label";
    c->positive_labels = "1,true,keep,good,ham,pos";
    c->test_frac = 0.2;
}

/* ---- examples: owned texts with 0/1 labels ---- */
typedef struct examples {
    char **text;
    size_t *len;
    int *y;
    size_t n, cap;
} examples;

/* Adds a borrowed text (the split sets point into the full set's texts). */
static fg_status ex_ref(examples *e, char *t, size_t n, int y)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 1024;
        char **tt = fg_realloc(e->text, cap * sizeof *tt);
        if (tt)
            e->text = tt;
        size_t *ll = fg_realloc(e->len, cap * sizeof *ll);
        if (ll)
            e->len = ll;
        int *yy = fg_realloc(e->y, cap * sizeof *yy);
        if (yy)
            e->y = yy;
        if (!tt || !ll || !yy)
            return FG_ERR_NOMEM;
        e->cap = cap;
    }
    e->text[e->n] = t;
    e->len[e->n] = n;
    e->y[e->n++] = y;
    return FG_OK;
}

/* Adds an owned copy of t[0..n). */
static fg_status ex_add(examples *e, const char *t, size_t n, int y)
{
    char *c = fg_strndup(t, n);
    if (!c)
        return FG_ERR_NOMEM;
    fg_status st = ex_ref(e, c, n, y);
    if (st != FG_OK)
        fg_free(c);
    return st;
}

/* The split sets share the texts of the full set: free_texts only for the owner. */
static void ex_free(examples *e, bool free_texts)
{
    if (free_texts)
        for (size_t i = 0; i < e->n; i++)
            fg_free(e->text[i]);
    fg_free(e->text);
    fg_free(e->len);
    fg_free(e->y);
    memset(e, 0, sizeof *e);
}

static bool in_list(const char *v, size_t n, const char *list)
{
    for (const char *p = list;;) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        if (k == n && !strncasecmp(p, v, n))
            return true;
        if (!c)
            return false;
        p = c + 1;
    }
}

/* Bad lines are skipped, counted, and the first few named in a warning. */
#define WARN_LINES 5

static fg_status read_tsv(const fg_data_classifier_train_config *c, const char *path, examples *ex, uint64_t *skipped)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long ln = 0;
    fg_status st = FG_OK;
    while (st == FG_OK && (n = getline(&line, &cap, f)) > 0) {
        ln++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (ln == 1 && c->skip_header)
            continue;
        char *tab = memchr(line, '\t', (size_t)n);
        if (!tab) {
            if (++*skipped <= WARN_LINES)
                FG_WARN("%s:%ld: no TAB, line skipped", path, ln);
            continue;
        }
        char *fixed = NULL;
        size_t fn = 0;
        uint32_t nb;
        const char *t = tab + 1;
        size_t tl = (size_t)(line + n - t);
        if (!fg_data_utf8_valid(t, tl) && fg_data_utf8_repair(t, tl, &fixed, &fn, &nb) == FG_OK) {
            t = fixed;
            tl = fn;
        }
        st = ex_add(ex, t, tl, in_list(line, (size_t)(tab - line), c->positive_labels) ? 1 : 0);
        fg_free(fixed);
    }
    if (st == FG_OK && ferror(f))
        st = fg_error(FG_ERR_IO, "%s:%ld: read failed", path, ln + 1);
    free(line); /* getline allocates with malloc */
    fclose(f);
    return st;
}

static fg_status read_jsonl(const fg_data_classifier_train_config *c, const char *path, examples *ex, uint64_t *skipped)
{
    fg_data_reader *rd = NULL;
    const char *paths[1] = {path};
    fg_status st = fg_data_reader_open(&rd, paths, 1);
    if (st != FG_OK)
        return st;
    fg_doc d;
    bool got;
    while ((st = fg_data_reader_next(rd, &d, &got)) == FG_OK && got) {
        st = fg_data_doc_decode(&d, c->label_field, c->positive_labels);
        if (st == FG_OK && (d.reject || d.label < 0)) {
            if (++*skipped <= WARN_LINES)
                FG_WARN("%s: skipped (%s)", d.source, d.reject ? (d.detail ? d.detail : d.reject) : "no label field");
        } else if (st == FG_OK)
            st = ex_add(ex, d.text, d.len, d.label);
        fg_doc_free(&d);
        if (st != FG_OK)
            break;
    }
    fg_data_reader_close(rd);
    return st;
}

/* Deterministic split: a hash of the example index (and the seed) decides held-out
 * membership, so the same file and seed give the same split on every machine. */
static bool held_out(size_t i, uint64_t seed, double frac)
{
    uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return (double)(h % 1000000) / 1e6 < frac;
}

/* Scores either kind: lin, or the transformer through its instance tf. */
static void evaluate(const fg_data_classifier *lin, fg_data_tfcls_ctx *tf, const examples *e,
                     fg_data_classifier_score *s)
{
    memset(s, 0, sizeof *s);
    s->n = e->n;
    for (size_t i = 0; i < e->n; i++) {
        float pk = lin ? fg_data_classifier_predict(lin, e->text[i], e->len[i])
                       : fg_data_tfcls_predict(tf, e->text[i], e->len[i]);
        int p = pk >= 0.5f;
        s->correct += p == e->y[i];
        s->tp += p && e->y[i];
        s->fp += p && !e->y[i];
        s->fn += !p && e->y[i];
    }
}

/* Both kinds: tc == NULL trains the linear model into *lin, else the transformer into *tf. */
static fg_status train_file(const fg_data_classifier_train_config *c, const fg_data_tfcls_config *tc, const char *path,
                            fg_data_classifier **lin, fg_data_tfcls **tf, fg_data_classifier_train_report *rep)
{
    memset(rep, 0, sizeof *rep);
    if (!(c->test_frac >= 0 && c->test_frac < 1))
        return fg_error(FG_ERR_INVALID, "test fraction must be in [0, 1) (got %g)", c->test_frac);
    examples ex = {0}, tr = {0}, te = {0};
    fg_data_scratch *scr = NULL;
    fg_status st = c->tsv ? read_tsv(c, path, &ex, &rep->skipped) : read_jsonl(c, path, &ex, &rep->skipped);
    if (st != FG_OK)
        goto done;
    if (c->rules) {
        /* Clean every text as the pipeline will before the classifier sees it; a text
         * the rules reject keeps its raw form (it still teaches the label). */
        if (!(scr = fg_data_scratch_new(c->rules))) {
            st = FG_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < ex.n; i++) {
            const char *cleaned, *rej;
            size_t n;
            if (fg_data_rules_apply(c->rules, scr, ex.text[i], ex.len[i], &cleaned, &n, &rej, NULL) != FG_OK)
                continue;
            char *copy = fg_strndup(cleaned, n);
            if (!copy) {
                st = FG_ERR_NOMEM;
                goto done;
            }
            fg_free(ex.text[i]);
            ex.text[i] = copy;
            ex.len[i] = n;
        }
    }
    for (size_t i = 0; i < ex.n && st == FG_OK; i++) {
        rep->positive += (size_t)ex.y[i];
        examples *dst = held_out(i, c->model.seed, c->test_frac) ? &te : &tr;
        st = ex_ref(dst, ex.text[i], ex.len[i], ex.y[i]);
    }
    if (st != FG_OK)
        goto done;
    rep->examples = ex.n;
    double t0 = fg_time_sec();
    fg_data_classifier *m = NULL;
    fg_data_tfcls *t = NULL;
    if (tc)
        t = fg_data_tfcls_train(tc, (const char *const *)tr.text, tr.len, tr.y, tr.n);
    else
        m = fg_data_classifier_train(&c->model, (const char *const *)tr.text, tr.len, tr.y, tr.n);
    rep->seconds = fg_time_sec() - t0;
    if (!m && !t) {
        /* the message is the trainer's (bad config, no examples, memory) */
        st = tr.n ? fg_last_status() : fg_error(FG_ERR_INVALID, "%s: no labeled examples to train on", path);
        goto done;
    }
    fg_data_tfcls_ctx *x = t ? fg_data_tfcls_ctx_new(t) : NULL;
    if (t && !x) {
        st = fg_last_status();
        fg_data_tfcls_delete(t);
        goto done;
    }
    evaluate(m, x, &tr, &rep->train);
    evaluate(m, x, &te, &rep->held_out);
    fg_data_tfcls_ctx_delete(x);
    *lin = m;
    *tf = t;
done:
    fg_data_scratch_delete(scr);
    ex_free(&tr, false);
    ex_free(&te, false);
    ex_free(&ex, true);
    return st;
}

fg_status fg_data_classifier_train_file(const fg_data_classifier_train_config *c, const char *path,
                                        fg_data_classifier **out, fg_data_classifier_train_report *rep)
{
    fg_data_tfcls *unused = NULL;
    *out = NULL;
    return train_file(c, NULL, path, out, &unused, rep);
}

fg_status fg_data_tfcls_train_file(const fg_data_classifier_train_config *c, const fg_data_tfcls_config *tc,
                                   const char *path, fg_data_tfcls **out, fg_data_classifier_train_report *rep)
{
    fg_data_classifier *unused = NULL;
    *out = NULL;
    return train_file(c, tc, path, &unused, out, rep);
}
