/* cmd_clean.c: `frugal clean` (rules + heuristics + classifier + dedup over files and
 * directories, writing kept and rejected JSONL and a report) and `frugal clean
 * train-classifier` (labeled JSONL or TSV -> linear or transformer classifier file, with
 * held-out accuracy).
 * Parsing and reporting; the work is fg_data_clean_run's and fg_data_classifier_train_file's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "frugal/data.h"

#define PATH 4096

static const char *const short_flags[] = {"-o", "--output", "-q", "--quiet", NULL};

/* ---- train-classifier ---- */
typedef struct tc_opts {
    char input[PATH], output[PATH], label_field[128], positive[512], rules[PATH], char_ngrams[32];
    int tsv, skip_header, raw;
    double test_frac;
    fg_data_classifier_config model;
    int kind;   /* index of kinds: linear, transformer */
    int layout; /* index of layouts: the fg_layout values in order */
    fg_data_tfcls_config tf;
} tc_opts;

static const char *const kinds[] = {"linear", "transformer", NULL};
static const char *const layouts[] = {"llama", "gpt2", NULL};

#define TF(field) FG_OPT_FIELD(tc_opts, field)
static const fg_opt tc_table[] = {
    {"input", FG_OPT_STR, TF(input), .help = "labeled JSONL (text + label field) or, with --tsv, LABEL<TAB>TEXT lines"},
    {"output", FG_OPT_STR, TF(output), .help = "classifier file to write (-o)"},
    {"label_field", FG_OPT_STR, TF(label_field), .help = "JSONL member holding the label"},
    {"positive", FG_OPT_STR, TF(positive), .help = "comma list of label values meaning keep"},
    {"tsv", FG_OPT_BOOL, TF(tsv), .help = "TSV input"},
    {"skip_header", FG_OPT_BOOL, TF(skip_header), .help = "TSV: skip the first line"},
    {"rules", FG_OPT_STR, TF(rules),
     .help = "clean training texts with these rules first (default: the installed rules)"},
    {"raw", FG_OPT_BOOL, TF(raw), .help = "do not clean training texts"},
    {"test_frac", FG_OPT_DOUBLE, TF(test_frac), .min = 0, .max = 0.99, .help = "held-out fraction for the accuracy"},
    {"epochs", FG_OPT_INT, TF(model.epochs), .min = 1, .max = 10000, .help = "passes over the training set"},
    {"lr", FG_OPT_FLOAT, TF(model.lr), .min = 0, .min_excl = 1, .max = 100, .help = "SGD step"},
    {"buckets", FG_OPT_INT, TF(model.log2_buckets), .min = 8, .max = 28, .help = "log2 of the hashed feature space"},
    {"word_ngrams", FG_OPT_INT, TF(model.word_ngrams), .min = 1, .max = 2, .help = "word n-grams up to"},
    {"char_ngrams", FG_OPT_STR, TF(char_ngrams), .help = "byte n-gram lengths MIN-MAX (0-0: none)"},
    {"seed", FG_OPT_U64, TF(model.seed), .help = "shuffling and the held-out split (and the transformer's init)"},
    {"kind", FG_OPT_ENUM, TF(kind), .choices = kinds,
     .help = "linear: hashed n-gram logistic regression; transformer: a small decoder over bytes (docs/DATA.md)"},
    {"layout", FG_OPT_ENUM, TF(layout), .choices = layouts, .help = "transformer: block layout"},
    {"layers", FG_OPT_INT, TF(tf.n_layer), .min = 1, .max = 32, .help = "transformer: layers"},
    {"d_model", FG_OPT_INT, TF(tf.d_model), .min = 8, .max = 4096, .help = "transformer: width"},
    {"heads", FG_OPT_INT, TF(tf.n_head), .min = 1, .max = 256, .help = "transformer: attention heads"},
    {"max_len", FG_OPT_INT, TF(tf.max_len), .min = 1, .max = 65536, .help = "transformer: bytes of text read"},
    {"tf_epochs", FG_OPT_INT, TF(tf.epochs), .min = 0, .max = 10000, .help = "transformer: label epochs"},
    {"lm_epochs", FG_OPT_INT, TF(tf.lm_epochs), .min = 0, .max = 10000,
     .help = "transformer: next-byte epochs on the training texts first"},
    {"tf_batch", FG_OPT_INT, TF(tf.batch), .min = 1, .max = 4096, .help = "transformer: sequences per step"},
    {"tf_lr", FG_OPT_FLOAT, TF(tf.lr), .min = 0, .min_excl = 1, .max = 1, .help = "transformer: AdamW peak lr"},
};
#undef TF

static const char tc_usage[] = "usage: frugal clean train-classifier --input FILE -o MODEL [options]\n";

/* --char-ngrams MIN-MAX into the model config; a usage error names the flag */
static fg_status parse_char_ngrams(const char *v, fg_data_classifier_config *m)
{
    int lo, hi, used = 0;
    if (sscanf(v, "%d-%d%n", &lo, &hi, &used) != 2 || v[used] != 0 || lo < 0 || hi < lo || hi > 16 ||
        (lo == 0 && hi != 0))
        return fg_error(FG_ERR_INVALID, "--char-ngrams: expected MIN-MAX with 1 <= MIN <= MAX <= 16, or 0-0 (got '%s')",
                        v);
    m->char_min = lo;
    m->char_max = hi;
    return FG_OK;
}

static int train_classifier(int argc, char **argv)
{
    const char *cmd = "clean train-classifier";
    fg_data_classifier_train_config tc;
    fg_data_classifier_train_config_init(&tc);
    tc_opts o, def;
    memset(&o, 0, sizeof o);
    snprintf(o.label_field, sizeof o.label_field, "%s", tc.label_field);
    snprintf(o.positive, sizeof o.positive, "%s", tc.positive_labels);
    o.test_frac = tc.test_frac;
    o.model = tc.model;
    fg_data_tfcls_config_init(&o.tf);
    o.layout = o.tf.layout;
    snprintf(o.char_ngrams, sizeof o.char_ngrams, "%d-%d", o.model.char_min, o.model.char_max);
    def = o;
    fg_opt_table t = {tc_table, FG_OPT_COUNT(tc_table), &o};
    const void *defs[] = {&def};
    fg_cli_spec spec = {cmd, tc_usage, &t, defs, 1, short_flags};
    fg_opt_args a = {0};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    fg_status st = parse_char_ngrams(o.char_ngrams, &o.model);
    if (st == FG_OK && (!o.input[0] || !o.output[0]))
        st = fg_error(FG_ERR_INVALID, "--input FILE and -o MODEL are required");
    if (st == FG_OK) {
        const char *outs[] = {o.output}, *ins[] = {o.input};
        st = fg_cli_check_outputs(outs, 1, ins, 1, false);
    }
    if (st != FG_OK)
        return fg_cli_fail(cmd, st, "frugal clean train-classifier --help lists the options");
    tc.model = o.model;
    tc.label_field = o.label_field;
    tc.positive_labels = o.positive;
    tc.tsv = o.tsv;
    tc.skip_header = o.skip_header;
    tc.test_frac = o.test_frac;
    fg_data_rules *rules = NULL;
    fg_data_classifier *m = NULL;
    fg_data_tfcls *tm = NULL;
    if (!o.raw) {
        const char *rp = o.rules[0] ? o.rules : fg_cli_default_rules();
        if (!rp || (st = fg_data_rules_load(&rules, rp)) != FG_OK)
            return fg_cli_fail(cmd, rp ? st : FG_ERR_IO, "fix the rules file, pass --rules FILE or --raw");
        tc.rules = rules;
    }
    fg_data_classifier_train_report r;
    o.tf.layout = o.layout;
    o.tf.seed = o.model.seed;
    if (o.kind == 1)
        st = fg_data_tfcls_train_file(&tc, &o.tf, o.input, &tm, &r);
    else
        st = fg_data_classifier_train_file(&tc, o.input, &m, &r);
    if (st != FG_OK) {
        rc = fg_cli_fail(cmd, st, "check the input has labeled examples");
        goto done;
    }
    printf("examples: %zu (%zu positive), train %zu, held out %zu, skipped %llu\n", r.examples, r.positive, r.train.n,
           r.held_out.n, (unsigned long long)r.skipped);
    for (int pass = 0; pass < 2; pass++) {
        const fg_data_classifier_score *s = pass ? &r.held_out : &r.train;
        if (s->n)
            printf("%s accuracy %.4f (%zu/%zu), precision %.4f, recall %.4f\n", pass ? "held-out" : "train   ",
                   (double)s->correct / (double)s->n, s->correct, s->n,
                   s->tp + s->fp ? (double)s->tp / (double)(s->tp + s->fp) : 0.0,
                   s->tp + s->fn ? (double)s->tp / (double)(s->tp + s->fn) : 0.0);
    }
    if (tm)
        printf("trained in %.2f s (transformer: %s, %d layers, d_model %d, %d heads, %d bytes, %zu parameters; "
               "%d next-byte + %d label epochs)\n",
               r.seconds, layouts[o.layout], o.tf.n_layer, o.tf.d_model, o.tf.n_head, o.tf.max_len,
               fg_data_tfcls_num_params(tm), o.tf.lm_epochs, o.tf.epochs);
    else
        printf("trained in %.2f s (%d epochs, 2^%d buckets, word n-grams %d, char n-grams %d-%d)\n", r.seconds,
               tc.model.epochs, tc.model.log2_buckets, tc.model.word_ngrams, tc.model.char_min, tc.model.char_max);
    if ((st = tm ? fg_data_tfcls_save(tm, o.output) : fg_data_classifier_save(m, o.output)) != FG_OK) {
        rc = fg_cli_fail(cmd, st, NULL);
        goto done;
    }
    printf("saved %s\n", o.output);
    rc = 0;
done:
    fg_data_classifier_delete(m);
    fg_data_tfcls_delete(tm);
    fg_data_rules_delete(rules);
    return rc;
}

/* ---- clean ---- */
typedef struct clean_opts {
    char output[PATH], rejects[PATH], rules[PATH], classifier[PATH], report[PATH], eval_label[128], positive[512];
    int classify;        /* index of classify_modes: the fg_classify_mode values in order */
    int classifier_kind; /* index of classifier_kinds: auto, linear, transformer */
    int extract;         /* index of extract_modes: the fg_extract_mode values in order */
    float threshold;
    int no_dedup, no_exact, no_near;
    int no_langid;
    int profile; /* index of profiles: 0 default rules, 1 datatrove */
    double jaccard, dedup_mb;
    fg_cli_reader_opts lim; /* the reader's limits */
    int num_perm, shingle, threads, batch;
    int progress, no_progress, quiet;
} clean_opts;

static const char *const classify_modes[] = {"ambiguous", "all", "none", NULL};
static const char *const classifier_kinds[] = {"auto", "linear", "transformer", NULL};
static const char *const extract_modes[] = {"dom", "none", NULL};
static const char *const profiles[] = {"default", "datatrove", NULL};

#define CF(field) FG_OPT_FIELD(clean_opts, field)
static const fg_opt clean_table[] = {
    {"output", FG_OPT_STR, CF(output), .help = "kept documents, JSONL (-o)"},
    {"rejects", FG_OPT_STR, CF(rejects),
     .help = "rejected documents with the rule that rejected them (default <output>.rejects.jsonl)"},
    {"rules", FG_OPT_STR, CF(rules),
     .help = "rules file (default: configs/clean_rules.conf beside the binary or installed)"},
    {"classifier", FG_OPT_STR, CF(classifier), .help = "classifier for documents between the reject and accept scores"},
    {"classifier_kind", FG_OPT_ENUM, CF(classifier_kind), .choices = classifier_kinds,
     .help = "what --classifier holds (auto: from the file's magic); a file of the other kind is refused"},
    {"classify", FG_OPT_ENUM, CF(classify), .choices = classify_modes,
     .help = "ambiguous: between the scores; all: every document; none"},
    {"extract", FG_OPT_ENUM, CF(extract), .choices = extract_modes,
     .help = "HTML pages: main-content extraction (dom), or the raw page to the rules (none)"},
    {"threshold", FG_OPT_FLOAT, CF(threshold), .min = 0, .max = 1, .help = "keep when classifier P(keep) >= this"},
    {"profile", FG_OPT_ENUM, CF(profile), .choices = profiles,
     .help = "datatrove: clean_rules_datatrove.conf beside the default rules (datatrove's Gopher + C4 as hard "
             "cut-offs); --rules overrides"},
    {"no_langid", FG_OPT_BOOL, CF(no_langid), .help = "no language identification (\"lang\" in the output)"},
    {"no_dedup", FG_OPT_BOOL, CF(no_dedup), .help = "no exact and no near-duplicate removal"},
    {"no_exact", FG_OPT_BOOL, CF(no_exact), .help = "no exact-duplicate removal"},
    {"no_near", FG_OPT_BOOL, CF(no_near), .help = "no near-duplicate (MinHash) removal"},
    {"jaccard", FG_OPT_DOUBLE, CF(jaccard), .min = 0, .min_excl = 1, .max = 1, .help = "near-duplicate threshold"},
    {"num_perm", FG_OPT_INT, CF(num_perm), .min = 1, .max = 4096, .help = "MinHash permutations"},
    {"shingle", FG_OPT_INT, CF(shingle), .min = 1, .max = 64, .help = "words per shingle"},
    {"dedup_mb", FG_OPT_DOUBLE, CF(dedup_mb), .min = 0, .min_excl = 1, .max = 1 << 24,
     .help = "memory bound of the dedup tables, MB"},
    {"threads", FG_OPT_INT, CF(threads), .min = 0, .max = 4096, .help = "worker threads (0: all cores)"},
    {"batch", FG_OPT_INT, CF(batch), .min = 1, .max = 1 << 24, .help = "documents per parallel batch"},
    {"report", FG_OPT_STR, CF(report), .help = "also write the report as JSON"},
    {"eval_label", FG_OPT_STR, CF(eval_label), .help = "score decisions against this gold label member"},
    {"positive", FG_OPT_STR, CF(positive), .help = "comma list of label values meaning keep"},
    {"progress", FG_OPT_BOOL, CF(progress), .help = "progress bar on stderr (default: when stderr is a terminal)"},
    {"no_progress", FG_OPT_BOOL, CF(no_progress), .help = "no progress bar"},
    {"quiet", FG_OPT_BOOL, CF(quiet), .help = "no report on stdout (-q)"},
};
#undef CF

static const char clean_usage[] =
    "usage: frugal clean [options] INPUT...   (files or directories: .jsonl .json .txt .html .warc .wet,\n"
    "                                          optionally .gz/.zst)\n"
    "       frugal clean train-classifier --input FILE -o MODEL [options]   (its --help for the options)\n"
    "Outputs are written to a temporary name and renamed when the run succeeds; an output that\n"
    "is an input (or inside an input directory) is refused; <output>.lock keeps two runs apart.\n";

/* The two outputs are written by the pipeline under temporary names that a file
 * transaction owns: fsync + rename when the run succeeds, removed when it fails. */
static fg_status open_output(fg_file_tx *tx, const char *path, bool *open)
{
    fg_status st = fg_file_tx_open(tx, path, 0);
    *open = st == FG_OK;
    return st;
}

int fg_cmd_clean(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "train-classifier"))
        return train_classifier(argc - 1, argv + 1);
    fg_data_clean_config c;
    fg_data_clean_config_init(&c);
    clean_opts o, def;
    memset(&o, 0, sizeof o);
    snprintf(o.output, sizeof o.output, "clean.jsonl");
    snprintf(o.positive, sizeof o.positive, "%s", c.positive_labels ? c.positive_labels : "1,true,keep,good,ham,pos");
    o.classify = (int)c.classify;
    o.extract = (int)c.extract;
    o.threshold = c.classifier_threshold;
    o.jaccard = c.dedup.jaccard;
    o.num_perm = c.dedup.n_perm;
    o.shingle = c.dedup.shingle;
    o.dedup_mb = (double)c.dedup.max_bytes / 1048576.0;
    fg_cli_reader_opts_init(&o.lim, c.max_doc_bytes, c.max_file_bytes, c.fail_on_read_error);
    o.threads = c.threads > 0 ? c.threads : 0;
    o.batch = c.batch_docs;
    def = o;
    const char **inputs = fg_calloc((size_t)argc + 1, sizeof *inputs);
    if (!inputs)
        return fg_cli_fail("clean", FG_ERR_NOMEM, NULL);
    fg_opt_table t[] = {{clean_table, FG_OPT_COUNT(clean_table), &o}, fg_cli_reader_table(&o.lim)};
    const void *defs[] = {&def, &def.lim};
    fg_cli_spec spec = {"clean", clean_usage, t, defs, 2, short_flags};
    fg_opt_args a = {.pos = inputs, .max_pos = argc};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0) {
        fg_free(inputs);
        return rc;
    }
    int n_in = a.n_pos;
    char rej_default[PATH + 16];
    const char *rejp = o.rejects;
    if (!rejp[0]) {
        snprintf(rej_default, sizeof rej_default, "%s.rejects.jsonl", o.output);
        rejp = rej_default;
    }
    fg_status st = FG_OK;
    if (n_in == 0)
        st = fg_error(FG_ERR_INVALID, "no input files or directories");
    else if (o.classify == FG_CLASSIFY_ALL && !o.classifier[0])
        st = fg_error(FG_ERR_INVALID, "--classify all needs --classifier MODEL");
    else if (o.progress && o.no_progress)
        st = fg_error(FG_ERR_INVALID, "--progress and --no-progress together");
    const char *outs[3] = {o.output, rejp, o.report};
    if (st == FG_OK)
        st = fg_cli_check_outputs(outs, o.report[0] ? 3 : 2, inputs, n_in, true);
    if (st != FG_OK) {
        rc = fg_cli_fail("clean", st, "frugal clean --help lists the options");
        fg_free(inputs);
        return rc;
    }
    c.classify = (fg_classify_mode)o.classify;
    c.extract = (fg_extract_mode)o.extract;
    c.langid = !o.no_langid;
    c.classifier_threshold = o.threshold;
    if (o.no_dedup)
        c.dedup.exact = c.dedup.near = false;
    if (o.no_exact)
        c.dedup.exact = false;
    if (o.no_near)
        c.dedup.near = false;
    c.dedup.jaccard = o.jaccard;
    c.dedup.n_perm = o.num_perm;
    c.dedup.shingle = o.shingle;
    c.dedup.max_bytes = (size_t)(o.dedup_mb * 1048576.0);
    fg_cli_reader_opts_apply(&o.lim, &c.max_doc_bytes, &c.max_file_bytes, &c.fail_on_read_error);
    c.threads = o.threads;
    c.batch_docs = o.batch;
    if (o.eval_label[0])
        c.label_field = o.eval_label;
    c.positive_labels = o.positive;
    c.progress = o.progress ? true : o.no_progress ? false : isatty(2);
    rc = 1;
    fg_data_rules *rules = NULL;
    fg_data_classifier *m = NULL;
    fg_data_tfcls *tm = NULL;
    fg_data_report rep;
    memset(&rep, 0, sizeof rep);
    fg_file_tx tx_out, tx_rej;
    bool out_open = false, rej_open = false;
    fg_lock lock = {-1};
    const char *rules_path = o.rules[0] ? o.rules : fg_cli_default_rules();
    char profile_path[PATH + 32];
    if (rules_path && !o.rules[0] && o.profile == 1) { /* the profile's file lies beside the default one */
        const char *slash = strrchr(rules_path, '/');
        int dl = slash ? (int)(slash - rules_path) : 1;
        snprintf(profile_path, sizeof profile_path, "%.*s/clean_rules_datatrove.conf", dl, slash ? rules_path : ".");
        rules_path = profile_path;
    }
    if (!rules_path) {
        rc = fg_cli_fail("clean", FG_ERR_IO, "pass --rules FILE");
        goto done;
    }
    if ((st = fg_data_rules_load(&rules, rules_path)) != FG_OK) {
        rc = fg_cli_fail("clean", st, "fix the rules file (syntax: docs/DATA.md) or pass --rules FILE");
        goto done;
    }
    if (o.classifier[0]) {
        int kind = fg_data_classifier_file_kind(o.classifier);
        if (kind && o.classifier_kind && kind != o.classifier_kind)
            st = fg_error(FG_ERR_INVALID, "%s: holds a %s classifier, --classifier-kind says %s", o.classifier,
                          classifier_kinds[kind], classifier_kinds[o.classifier_kind]);
        else if (!kind || (kind == 1 && !(m = fg_data_classifier_load(o.classifier))) ||
                 (kind == 2 && !(tm = fg_data_tfcls_load(o.classifier))))
            st = fg_last_status();
        if (st != FG_OK) {
            rc = fg_cli_fail("clean", st, "train one with `frugal clean train-classifier [--kind transformer]`");
            goto done;
        }
    }
    char lock_path[PATH + 8];
    snprintf(lock_path, sizeof lock_path, "%s.lock", o.output);
    if ((st = fg_lock_acquire(&lock, lock_path)) != FG_OK ||
        (st = open_output(&tx_out, o.output, &out_open)) != FG_OK ||
        (st = open_output(&tx_rej, rejp, &rej_open)) != FG_OK) {
        rc = fg_cli_fail("clean", st, NULL);
        goto done;
    }
    c.rules = rules;
    c.classifier = m;
    c.tf_classifier = tm;
    c.out_path = tx_out.tmp;
    c.rejects_path = tx_rej.tmp;
    st = fg_data_clean_run(&c, inputs, n_in, &rep);
    if (st == FG_OK) {
        out_open = false;
        st = fg_file_tx_commit(&tx_out);
    }
    if (st == FG_OK) {
        rej_open = false;
        st = fg_file_tx_commit(&tx_rej);
    }
    if (st != FG_OK) {
        rc = fg_cli_fail("clean", st, NULL);
        goto done;
    }
    if (!o.quiet) {
        fg_data_report_print(stdout, &rep);
        printf("output %s, rejects %s\n", o.output, rejp);
    }
    if (o.report[0] && (st = fg_data_report_write_json(&rep, o.report)) != FG_OK) {
        rc = fg_cli_fail("clean", st, NULL);
        goto done;
    }
    rc = 0;
done:
    if (out_open)
        fg_file_tx_abort(&tx_out);
    if (rej_open)
        fg_file_tx_abort(&tx_rej);
    fg_lock_release(&lock);
    fg_data_report_free(&rep);
    fg_data_classifier_delete(m);
    fg_data_tfcls_delete(tm);
    fg_data_rules_delete(rules);
    fg_free(inputs);
    return rc;
}
