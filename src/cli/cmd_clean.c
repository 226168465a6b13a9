/* cmd_clean.c: `frugal clean` (rules + heuristics + classifier + dedup over files and
 * directories, writing kept and rejected JSONL and a report) and `frugal clean
 * train-classifier` (labeled JSONL or TSV -> classifier file, with held-out accuracy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "frugal/data.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: frugal clean [options] INPUT...   (files or directories: .jsonl .json .txt .html .warc .wet, "
               "optionally .gz/.zst)\n"
               "  -o, --output FILE       kept documents, JSONL (default clean.jsonl)\n"
               "  --rejects FILE          rejected documents with the rule that rejected them (default "
               "<output>.rejects.jsonl)\n"
               "  --rules FILE            rules file (default configs/clean_rules.conf)\n"
               "  --classifier MODEL      classifier for documents between the reject and accept scores\n"
               "  --classify MODE         ambiguous (default) | all (classifier on every document) | none\n"
               "  --threshold P           keep when classifier P(keep) >= P (default 0.5)\n"
               "  --no-dedup | --no-exact | --no-near\n"
               "  --jaccard J             near-duplicate threshold (default 0.8)\n"
               "  --num-perm N            MinHash permutations (default 128)\n"
               "  --shingle K             words per shingle (default 5)\n"
               "  --dedup-mb MB           memory bound of the dedup tables (default 256)\n"
               "  --max-doc-mb MB         larger documents are rejected as doc_too_large (default 32)\n"
               "  --threads N             worker threads (default: all cores)\n"
               "  --batch N               documents per parallel batch (default 512)\n"
               "  --report FILE           also write the report as JSON\n"
               "  --eval-label FIELD      score decisions against a gold label field (accuracy in the report)\n"
               "  --positive LIST         label values meaning keep (default 1,true,keep,good,ham,pos)\n"
               "  --progress | --no-progress   progress bar on stderr (default: when stderr is a terminal)\n"
               "  -q, --quiet             no report on stdout\n"
               "\n"
               "usage: frugal clean train-classifier --input FILE -o MODEL [options]\n"
               "  --input FILE            labeled JSONL (text + label field) or, with --tsv, LABEL<TAB>TEXT lines\n"
               "  --label-field F         (default label)   --positive LIST (as above)\n"
               "  --tsv [--skip-header]   TSV input\n"
               "  --rules FILE            clean training texts with these rules first, as the pipeline does\n"
               "  --raw                   do not clean training texts\n"
               "  --test-frac F           held-out fraction for the accuracy report (default 0.2)\n"
               "  --epochs N --lr X --buckets LOG2 --word-ngrams N --char-ngrams MIN-MAX --seed S\n");
}

static const char *default_rules(void)
{
    static char path[4096];
    if (access("configs/clean_rules.conf", R_OK) == 0)
        return "configs/clean_rules.conf";
    const char *src = getenv("FG_SOURCE_DIR");
    if (src) {
        snprintf(path, sizeof path, "%s/configs/clean_rules.conf", src);
        if (access(path, R_OK) == 0)
            return path;
    }
    char exe[3000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *s = strrchr(exe, '/');
        if (s)
            *s = 0;
        snprintf(path, sizeof path, "%s/../configs/clean_rules.conf", exe);
        if (access(path, R_OK) == 0)
            return path;
    }
    return "configs/clean_rules.conf";
}

/* ---- train-classifier ---- */
typedef struct examples {
    char **text;
    size_t *len;
    int *y;
    size_t n, cap;
} examples;

static int ex_add(examples *e, const char *t, size_t n, int y)
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
            return -1;
        e->cap = cap;
    }
    char *c = fg_malloc(n + 1);
    if (!c)
        return -1;
    memcpy(c, t, n);
    c[n] = 0;
    e->text[e->n] = c;
    e->len[e->n] = n;
    e->y[e->n++] = y;
    return 0;
}

static void ex_free(examples *e)
{
    for (size_t i = 0; i < e->n; i++)
        fg_free(e->text[i]);
    fg_free(e->text);
    fg_free(e->len);
    fg_free(e->y);
}

static bool in_list(const char *v, size_t n, const char *list)
{
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        if (k == n && !strncasecmp(p, v, n))
            return true;
        if (!c)
            return false;
        p = c + 1;
    }
}

static int train_classifier(int argc, char **argv)
{
    const char *input = NULL, *outp = NULL, *label_field = "label", *positive = "1,true,keep,good,ham,pos";
    const char *rules_path = NULL;
    bool tsv = false, skip_header = false, raw = false;
    double test_frac = 0.2;
    fg_data_classifier_config cc;
    fg_data_classifier_config_init(&cc);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (ARG("--input"))
            input = v;
        else if (ARG("-o") || ARG("--output"))
            outp = v;
        else if (ARG("--label-field"))
            label_field = v;
        else if (ARG("--positive"))
            positive = v;
        else if (ARG("--rules"))
            rules_path = v;
        else if (!strcmp(a, "--tsv"))
            tsv = true;
        else if (!strcmp(a, "--skip-header"))
            skip_header = true;
        else if (!strcmp(a, "--raw"))
            raw = true;
        else if (ARG("--test-frac"))
            test_frac = atof(v);
        else if (ARG("--epochs"))
            cc.epochs = atoi(v);
        else if (ARG("--lr"))
            cc.lr = (float)atof(v);
        else if (ARG("--buckets"))
            cc.log2_buckets = atoi(v);
        else if (ARG("--word-ngrams"))
            cc.word_ngrams = atoi(v);
        else if (ARG("--char-ngrams")) {
            if (sscanf(v, "%d-%d", &cc.char_min, &cc.char_max) != 2) {
                fprintf(stderr,
                        "frugal clean train-classifier: --char-ngrams wants MIN-MAX (e.g. 3-5, 0-0 for none)\n");
                return 2;
            }
        } else if (ARG("--seed"))
            cc.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "frugal clean train-classifier: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
#undef ARG
    }
    if (!input || !outp) {
        fprintf(stderr, "frugal clean train-classifier: --input and -o are required\n");
        return 2;
    }
    if (test_frac < 0 || test_frac >= 1) {
        fprintf(stderr, "frugal clean train-classifier: --test-frac must be in [0, 1)\n");
        return 2;
    }
    int rc = 1;
    fg_status st = FG_OK;
    examples ex = {0};
    fg_data_rules *rules = NULL;
    fg_data_scratch *scr = NULL;
    fg_data_classifier *m = NULL;
    if (!raw) {
        if ((st = fg_data_rules_load(&rules, rules_path ? rules_path : default_rules())) != FG_OK)
            return fg_cli_fail("clean train-classifier", st, "fix the rules file or pass --raw");
        scr = fg_data_scratch_new(rules);
        if (!scr) {
            rc = fg_cli_fail("clean train-classifier", FG_ERR_NOMEM, NULL);
            goto done;
        }
    }
    uint64_t bad_lines = 0;
    if (tsv) {
        FILE *f = fopen(input, "rb");
        if (!f) {
            rc = fg_cli_fail("clean train-classifier", fg_error(FG_ERR_IO, "%s: cannot open", input), NULL);
            goto done;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long ln = 0;
        while ((n = getline(&line, &cap, f)) > 0) {
            ln++;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
            if (ln == 1 && skip_header)
                continue;
            char *tab = memchr(line, '\t', (size_t)n);
            if (!tab) {
                bad_lines++;
                if (bad_lines <= 5)
                    fprintf(stderr, "frugal clean train-classifier: %s:%ld: no TAB, line skipped\n", input, ln);
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
            int y = in_list(line, (size_t)(tab - line), positive) ? 1 : 0;
            if (ex_add(&ex, t, tl, y) != 0) {
                fg_free(fixed);
                free(line);
                fclose(f);
                rc = fg_cli_fail("clean train-classifier", FG_ERR_NOMEM, NULL);
                goto done;
            }
            fg_free(fixed);
        }
        free(line); /* getline allocates with malloc */
        fclose(f);
    } else {
        fg_data_reader *rd = NULL;
        const char *paths[1] = {input};
        if ((st = fg_data_reader_open(&rd, paths, 1)) != FG_OK) {
            rc = fg_cli_fail("clean train-classifier", st, NULL);
            goto done;
        }
        fg_doc d;
        bool got;
        while ((st = fg_data_reader_next(rd, &d, &got)) == FG_OK && got) {
            fg_data_doc_decode(&d, label_field, positive);
            if (d.reject || d.label < 0) {
                bad_lines++;
                if (bad_lines <= 5)
                    fprintf(stderr, "frugal clean train-classifier: %s: skipped (%s)\n", d.source,
                            d.reject ? (d.detail ? d.detail : d.reject) : "no label field");
            } else if (ex_add(&ex, d.text, d.len, d.label) != 0) {
                st = FG_ERR_NOMEM;
                fg_doc_free(&d);
                break;
            }
            fg_doc_free(&d);
        }
        fg_data_reader_close(rd);
        if (st != FG_OK) {
            rc = fg_cli_fail("clean train-classifier", st, NULL);
            goto done;
        }
    }
    if (rules) {
        /* Clean every text as the pipeline will before the classifier sees it. */
        for (size_t i = 0; i < ex.n; i++) {
            const char *out, *rej;
            size_t n;
            if (fg_data_rules_apply(rules, scr, ex.text[i], ex.len[i], &out, &n, &rej, NULL) != FG_OK)
                continue;
            char *c = fg_malloc(n + 1);
            if (!c)
                continue;
            memcpy(c, out, n);
            c[n] = 0;
            fg_free(ex.text[i]);
            ex.text[i] = c;
            ex.len[i] = n;
        }
    }
    /* Deterministic split: a hash of the example index decides held-out membership. */
    examples tr = {0}, te = {0};
    size_t pos = 0;
    for (size_t i = 0; i < ex.n; i++) {
        uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ULL ^ cc.seed;
        h ^= h >> 31;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        bool test = (double)(h % 1000000) / 1e6 < test_frac;
        examples *dst = test ? &te : &tr;
        pos += ex.y[i];
        if (ex_add(dst, ex.text[i], ex.len[i], ex.y[i]) != 0) {
            rc = fg_cli_fail("clean train-classifier", FG_ERR_NOMEM, NULL);
            ex_free(&tr);
            ex_free(&te);
            goto done;
        }
    }
    printf("examples: %zu (%zu positive), train %zu, held out %zu, skipped %llu\n", ex.n, pos, tr.n, te.n,
           (unsigned long long)bad_lines);
    double t0 = fg_time_sec();
    m = fg_data_classifier_train(&cc, (const char *const *)tr.text, tr.len, tr.y, tr.n);
    double t1 = fg_time_sec();
    if (!m) {
        ex_free(&tr);
        ex_free(&te);
        rc = fg_cli_fail("clean train-classifier", FG_ERR_INVALID, "check the input has labeled examples");
        goto done;
    }
    for (int pass = 0; pass < 2; pass++) {
        examples *e = pass ? &te : &tr;
        size_t ok = 0, tp = 0, fp = 0, fn = 0;
        for (size_t i = 0; i < e->n; i++) {
            int p = fg_data_classifier_predict(m, e->text[i], e->len[i]) >= 0.5f;
            ok += p == e->y[i];
            tp += p && e->y[i];
            fp += p && !e->y[i];
            fn += !p && e->y[i];
        }
        if (e->n)
            printf("%s accuracy %.4f (%zu/%zu), precision %.4f, recall %.4f\n", pass ? "held-out" : "train   ",
                   (double)ok / (double)e->n, ok, e->n, tp + fp ? (double)tp / (double)(tp + fp) : 0.0,
                   tp + fn ? (double)tp / (double)(tp + fn) : 0.0);
    }
    printf("trained in %.2f s (%d epochs, 2^%d buckets, word n-grams %d, char n-grams %d-%d)\n", t1 - t0, cc.epochs,
           cc.log2_buckets, cc.word_ngrams, cc.char_min, cc.char_max);
    ex_free(&tr);
    ex_free(&te);
    if ((st = fg_data_classifier_save(m, outp)) != FG_OK) {
        rc = fg_cli_fail("clean train-classifier", st, NULL);
        goto done;
    }
    printf("saved %s\n", outp);
    rc = 0;
done:
    fg_data_classifier_delete(m);
    fg_data_scratch_delete(scr);
    fg_data_rules_delete(rules);
    ex_free(&ex);
    return rc;
}

int fg_cmd_clean(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "train-classifier"))
        return train_classifier(argc - 1, argv + 1);
    fg_data_clean_config c;
    fg_data_clean_config_init(&c);
    const char *rules_path = NULL, *cls_path = NULL, *report_path = NULL, *outp = "clean.jsonl", *rejp = NULL;
    bool quiet = false;
    int progress = -1;
    const char **inputs = fg_calloc((size_t)argc + 1, sizeof *inputs);
    int n_in = 0;
    if (!inputs)
        return fg_cli_fail("clean", FG_ERR_NOMEM, NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (ARG("-o") || ARG("--output"))
            outp = v;
        else if (ARG("--rejects"))
            rejp = v;
        else if (ARG("--rules"))
            rules_path = v;
        else if (ARG("--classifier"))
            cls_path = v;
        else if (ARG("--classify")) {
            if (!strcmp(v, "ambiguous"))
                c.classify = FG_CLASSIFY_AMBIGUOUS;
            else if (!strcmp(v, "all"))
                c.classify = FG_CLASSIFY_ALL;
            else if (!strcmp(v, "none"))
                c.classify = FG_CLASSIFY_NONE;
            else {
                fprintf(stderr, "frugal clean: --classify wants ambiguous, all or none\n");
                fg_free(inputs);
                return 2;
            }
        } else if (ARG("--threshold"))
            c.classifier_threshold = (float)atof(v);
        else if (!strcmp(a, "--no-dedup"))
            c.dedup.exact = c.dedup.near = false;
        else if (!strcmp(a, "--no-exact"))
            c.dedup.exact = false;
        else if (!strcmp(a, "--no-near"))
            c.dedup.near = false;
        else if (ARG("--jaccard"))
            c.dedup.jaccard = atof(v);
        else if (ARG("--num-perm"))
            c.dedup.n_perm = atoi(v);
        else if (ARG("--shingle"))
            c.dedup.shingle = atoi(v);
        else if (ARG("--dedup-mb"))
            c.dedup.max_bytes = (size_t)(atof(v) * 1048576.0);
        else if (ARG("--max-doc-mb"))
            c.max_doc_bytes = (size_t)(atof(v) * 1048576.0);
        else if (ARG("--threads"))
            c.threads = atoi(v);
        else if (ARG("--batch"))
            c.batch_docs = atoi(v);
        else if (ARG("--report"))
            report_path = v;
        else if (ARG("--eval-label"))
            c.label_field = v;
        else if (ARG("--positive"))
            c.positive_labels = v;
        else if (!strcmp(a, "--progress"))
            progress = 1;
        else if (!strcmp(a, "--no-progress"))
            progress = 0;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
            quiet = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            fg_free(inputs);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "frugal clean: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            fg_free(inputs);
            return 2;
        } else
            inputs[n_in++] = a;
#undef ARG
    }
    if (n_in == 0) {
        fprintf(stderr, "frugal clean: no input files or directories\n");
        usage(stderr);
        fg_free(inputs);
        return 2;
    }
    char rej_default[4096];
    if (!rejp) {
        snprintf(rej_default, sizeof rej_default, "%s.rejects.jsonl", outp);
        rejp = rej_default;
    }
    c.out_path = outp;
    c.rejects_path = rejp;
    c.progress = progress < 0 ? isatty(2) : progress;
    int rc = 1;
    fg_data_rules *rules = NULL;
    fg_data_classifier *m = NULL;
    fg_data_report rep;
    memset(&rep, 0, sizeof rep);
    fg_status st = fg_data_rules_load(&rules, rules_path ? rules_path : default_rules());
    if (st != FG_OK) {
        rc = fg_cli_fail("clean", st, "fix the rules file (syntax: docs/DATA.md) or pass --rules FILE");
        goto done;
    }
    if (cls_path) {
        m = fg_data_classifier_load(cls_path);
        if (!m) {
            rc = fg_cli_fail("clean", fg_last_status(), "train one with `frugal clean train-classifier`");
            goto done;
        }
    } else if (c.classify == FG_CLASSIFY_ALL) {
        fprintf(stderr, "frugal clean: --classify all needs --classifier MODEL\n");
        rc = 2;
        goto done;
    }
    c.rules = rules;
    c.classifier = m;
    st = fg_data_clean_run(&c, inputs, n_in, &rep);
    if (st != FG_OK) {
        rc = fg_cli_fail("clean", st, NULL);
        goto done;
    }
    if (!quiet) {
        fg_data_report_print(stdout, &rep);
        printf("output %s, rejects %s\n", outp, rejp);
    }
    if (report_path && (st = fg_data_report_write_json(&rep, report_path)) != FG_OK) {
        rc = fg_cli_fail("clean", st, NULL);
        goto done;
    }
    rc = 0;
done:
    fg_data_report_free(&rep);
    fg_data_classifier_delete(m);
    fg_data_rules_delete(rules);
    fg_free(inputs);
    return rc;
}
