/* pipeline.c: `frugal clean` end to end: batches of documents are read by one thread
 * while the others clean, score and classify the previous batch (OpenMP); dedup,
 * counting and writing then run in input order, so output bytes do not depend on the
 * thread count. Every document lands in the output or the rejects file.
 * Left out: compressed output, resuming an interrupted run. */
#define _GNU_SOURCE /* strcasestr, fputs_unlocked */
#include <errno.h>
#include <jansson.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "data_impl.h"

void fg_data_clean_config_init(fg_data_clean_config *c)
{
    memset(c, 0, sizeof *c);
    c->classify = FG_CLASSIFY_AMBIGUOUS;
    c->classifier_threshold = 0.5f;
    fg_data_dedup_config_init(&c->dedup);
    c->positive_labels = "1,true,keep,good,ham,pos";
    c->batch_docs = 512;
    c->batch_bytes = (size_t)32 << 20;
    c->max_doc_bytes = (size_t)32 << 20;
    c->max_file_bytes = FG_DATA_DEFAULT_MAX_FILE_BYTES;
    c->langid = true;
}

/* Reject names for quality rejections, "quality:<heuristic>". */
static const char *q_reject_names[FG_Q_COUNT] = {
    "quality:min_words",        "quality:max_words",          "quality:min_mean_word_len",  "quality:max_mean_word_len",
    "quality:max_symbol_ratio", "quality:max_bullet_lines",   "quality:max_ellipsis_lines", "quality:min_alpha_words",
    "quality:max_dup_lines",    "quality:max_dup_line_chars", "quality:max_top_2gram",      "quality:max_top_3gram",
    "quality:max_top_4gram",    "quality:max_dup_5gram",      "quality:max_dup_6gram",      "quality:max_dup_7gram",
    "quality:max_dup_8gram",    "quality:max_dup_9gram",      "quality:max_dup_10gram",     "quality:min_stopwords",
    "quality:max_dup_paras",    "quality:max_dup_para_chars"};

typedef struct slot {
    fg_doc doc;
    char *clean; /* cleaned text (owned) */
    size_t clean_len;
    char *title;         /* <title> of an extracted HTML page (owned), or NULL */
    fg_data_lang lang;   /* of the cleaned text; code "" when not identified */
    float score, p_keep; /* heuristic score; classifier P(keep) or -1 */
    int route;           /* 0 accepted by score, 1 rejected by score, 2 classifier, 3 no score */
    uint64_t h;
    uint32_t *sig; /* into the batch's signature block, or NULL */
} slot;

typedef struct batch {
    slot *s;
    int n;
    uint32_t *sigs; /* [batch_docs * n_perm] */
} batch;

typedef struct run {
    const fg_data_clean_config *c;
    fg_data_dedup *dd;
    fg_data_scratch **scr;  /* [threads] */
    fg_data_tfcls_ctx **tf; /* [threads] transformer instances, or NULL */
    uint64_t **line_drops;  /* [threads][n_rules] */
    int n_perm;
} run;

/* P(keep) from the configured classifier: the transformer (this thread's instance) when
 * there is one, else the linear model. */
static float predict(run *R, int tid, const char *text, size_t n)
{
    if (R->tf)
        return fg_data_tfcls_predict(R->tf[tid], text, n);
    return fg_data_classifier_predict(R->c->classifier, text, n);
}

static void process(run *R, slot *sl, int tid)
{
    const fg_data_clean_config *c = R->c;
    fg_doc *d = &sl->doc;
    sl->p_keep = -1;
    sl->route = 3;
    if (d->reject)
        return;
    if (d->raw_len > c->max_doc_bytes) { /* the reader bounds documents already: a safety net */
        d->reject = "doc_too_large";
        d->detail = fg_malloc(256);
        if (d->detail)
            snprintf(d->detail, 256, "%s: document of %zu bytes exceeds --max-doc-mb (%zu bytes)", d->source,
                     d->raw_len, c->max_doc_bytes);
        if (d->raw_len > FG_DATA_EXCERPT_BYTES) { /* the rejects file gets an excerpt, not the document */
            d->raw_len = FG_DATA_EXCERPT_BYTES;
            d->raw[d->raw_len] = 0;
        }
        return;
    }
    if (fg_data_doc_decode(d, c->label_field, c->positive_labels) != FG_OK) {
        d->reject = "internal_error";
        d->detail = fg_strdup(fg_last_error());
        return;
    }
    if (d->reject)
        return;
    if (d->utf8_repairs && fg_data_rules_utf8_reject(c->rules)) {
        d->reject = "invalid_utf8";
        d->detail = fg_malloc(256);
        if (d->detail)
            snprintf(d->detail, 256, "%s: %u invalid UTF-8 sequences (rules say utf8 reject)", d->source,
                     d->utf8_repairs);
        return;
    }
    const char *in = d->text, *out, *rej;
    size_t in_len = d->len, n;
    fg_data_extracted ex = {0};
    if (d->format == FG_DOC_HTML && c->extract == FG_EXTRACT_DOM) {
        if (fg_data_html_extract(d->text, d->len, &ex) != FG_OK) {
            d->reject = "internal_error";
            d->detail = fg_strdup(fg_last_error());
            return;
        }
        if (ex.reject) {
            d->reject = ex.reject;
            d->detail = fg_malloc(strlen(d->source) + sizeof ex.detail + 4);
            if (d->detail)
                sprintf(d->detail, "%s: %s", d->source, ex.detail);
            fg_data_extracted_free(&ex);
            return;
        }
        in = ex.text;
        in_len = ex.len;
        sl->title = ex.title;
        ex.title = NULL;
    }
    fg_status rst = fg_data_rules_apply(c->rules, R->scr[tid], in, in_len, &out, &n, &rej, R->line_drops[tid]);
    /* the input of the rules, for `compat datatrove` quality (ex.text is freed below, so
     * that mode measures the decoded text of an HTML page: the profile is for JSONL text) */
    const char *qin = ex.text ? d->text : in;
    size_t qin_len = ex.text ? d->len : in_len;
    fg_data_extracted_free(&ex);
    if (rst != FG_OK) {
        d->reject = "internal_error";
        d->detail = fg_strdup(fg_last_error());
        return;
    }
    if (rej) {
        d->reject = rej;
        return;
    }
    if (n == 0) {
        d->reject = "empty_after_cleaning";
        return;
    }
    sl->clean = fg_malloc(n + 1);
    if (!sl->clean) {
        d->reject = "internal_error";
        return;
    }
    memcpy(sl->clean, out, n);
    sl->clean[n] = 0;
    sl->clean_len = n;
    if (c->langid)
        fg_data_langid(sl->clean, n, &sl->lang);
    bool use_cls = (c->classifier || c->tf_classifier) && c->classify != FG_CLASSIFY_NONE;
    if (use_cls && c->classify == FG_CLASSIFY_ALL) {
        sl->route = 2;
        sl->p_keep = predict(R, tid, sl->clean, n);
        if (sl->p_keep < c->classifier_threshold)
            d->reject = "classifier";
    } else {
        fg_quality_stats st;
        if (fg_data_rules_compat_datatrove(c->rules)) /* Gopher before C4, as datatrove runs them */
            fg_data_quality_measure(c->rules, R->scr[tid], qin, qin_len, &st);
        else
            fg_data_quality_measure(c->rules, R->scr[tid], sl->clean, n, &st);
        int worst;
        double acc, rj;
        fg_data_rules_thresholds(c->rules, &acc, &rj);
        sl->score = (float)fg_data_quality_score(c->rules, &st, &worst);
        if (sl->score >= acc) {
            sl->route = 0;
        } else if (sl->score < rj) {
            sl->route = 1;
            d->reject = worst >= 0 ? q_reject_names[worst] : "quality";
        } else if (use_cls) {
            sl->route = 2;
            sl->p_keep = predict(R, tid, sl->clean, n);
            if (sl->p_keep < c->classifier_threshold)
                d->reject = "classifier";
        } else if (sl->score < 0.5 * (acc + rj)) {
            sl->route = 1;
            d->reject = worst >= 0 ? q_reject_names[worst] : "quality";
        } else {
            sl->route = 0;
        }
    }
    if (d->reject || !R->dd)
        return;
    sl->h = fg_data_dedup_exact_hash(sl->clean, n);
    if (c->dedup.near && sl->sig)
        fg_data_dedup_minhash(R->dd, sl->clean, n, sl->sig);
}

/* ---- report helpers ---- */
static void count_reject(fg_data_report *rep, const char *name)
{
    for (int i = 0; i < rep->n_rejects; i++)
        if (!strcmp(rep->rejects[i].name, name)) {
            rep->rejects[i].count++;
            return;
        }
    fg_data_reject_count *r = fg_realloc(rep->rejects, (size_t)(rep->n_rejects + 1) * sizeof *r);
    if (!r)
        return;
    rep->rejects = r;
    rep->rejects[rep->n_rejects++] = (fg_data_reject_count){name, 1};
}

uint64_t fg_data_report_rejects_for(const fg_data_report *rep, const char *name)
{
    for (int i = 0; i < rep->n_rejects; i++)
        if (!strcmp(rep->rejects[i].name, name))
            return rep->rejects[i].count;
    return 0;
}

void fg_data_report_free(fg_data_report *rep)
{
    fg_free(rep->rejects);
    fg_free(rep->line_drops);
    fg_free(rep->skipped_files);
    fg_free(rep->read_errors);
    memset(rep, 0, sizeof *rep);
}

/* ---- writing ---- */
static void write_text_field(FILE *f, const char *s, size_t n)
{
    if (fg_data_utf8_valid(s, n)) {
        fg_data_json_write_string(f, s, n);
        return;
    }
    char *fixed;
    size_t fn;
    uint32_t bad;
    if (fg_data_utf8_repair(s, n, &fixed, &fn, &bad) == FG_OK) {
        fg_data_json_write_string(f, fixed, fn);
        fg_free(fixed);
    } else {
        fg_data_json_write_string(f, "", 0);
    }
}

static void write_kept(FILE *f, const slot *sl)
{
    fputs_unlocked("{\"text\":", f);
    fg_data_json_write_string(f, sl->clean, sl->clean_len);
    if (sl->title) {
        fputs_unlocked(",\"title\":", f);
        write_text_field(f, sl->title, strlen(sl->title));
    }
    if (sl->lang.code[0])
        fprintf(f, ",\"lang\":\"%s\",\"lang_pct\":%d", sl->lang.code, sl->lang.percent);
    if (sl->doc.meta && sl->doc.meta[0]) {
        putc_unlocked(',', f);
        fputs_unlocked(sl->doc.meta, f);
    } else {
        fputs_unlocked(",\"source\":", f);
        write_text_field(f, sl->doc.source, strlen(sl->doc.source));
    }
    fputs_unlocked("}\n", f);
}

static void write_reject(FILE *f, const slot *sl)
{
    const fg_doc *d = &sl->doc;
    fputs_unlocked("{\"reject\":", f);
    fg_data_json_write_string(f, d->reject, strlen(d->reject));
    if (d->detail) {
        fputs_unlocked(",\"detail\":", f);
        write_text_field(f, d->detail, strlen(d->detail));
    }
    fputs_unlocked(",\"source\":", f);
    write_text_field(f, d->source ? d->source : "", d->source ? strlen(d->source) : 0);
    if (sl->route == 1 || sl->route == 0)
        fprintf(f, ",\"score\":%.4f", sl->score);
    if (sl->p_keep >= 0)
        fprintf(f, ",\"p_keep\":%.4f", sl->p_keep);
    if (sl->lang.code[0])
        fprintf(f, ",\"lang\":\"%s\"", sl->lang.code);
    /* The original document: decoded text when decoding succeeded, else the raw bytes. */
    fputs_unlocked(",\"text\":", f);
    if (d->text)
        write_text_field(f, d->text, d->len);
    else
        write_text_field(f, d->raw ? d->raw : "", d->raw ? d->raw_len : 0);
    if (d->meta && d->meta[0]) {
        putc_unlocked(',', f);
        fputs_unlocked(d->meta, f);
    }
    fputs_unlocked("}\n", f);
}

/* In input order: dedup, count, write, free. */
static void finish_batch(run *R, batch *b, fg_data_report *rep, FILE *out, FILE *rej)
{
    const fg_data_clean_config *c = R->c;
    for (int i = 0; i < b->n; i++) {
        slot *sl = &b->s[i];
        fg_doc *d = &sl->doc;
        rep->docs_read++;
        rep->bytes_read += d->text ? d->len : d->raw_len;
        if (d->utf8_repairs) {
            rep->utf8_repaired_docs++;
            rep->utf8_repairs += d->utf8_repairs;
        }
        if (sl->route == 2) {
            rep->sent_to_classifier++;
            if (d->reject)
                rep->classifier_rejected++;
            else
                rep->classifier_kept++;
        } else if (sl->route == 0) {
            rep->accepted_by_score++;
        } else if (sl->route == 1) {
            rep->rejected_by_score++;
        }
        if (!d->reject && R->dd) {
            int k = fg_data_dedup_check(R->dd, sl->h, c->dedup.near ? sl->sig : NULL);
            if (k == 1) {
                d->reject = "exact_duplicate";
                rep->exact_dups++;
            } else if (k == 2) {
                d->reject = "near_duplicate";
                rep->near_dups++;
            }
        }
        bool kept = d->reject == NULL;
        if (d->label >= 0) {
            rep->labeled++;
            bool pos = d->label == 1;
            rep->tp += kept && pos;
            rep->fp += kept && !pos;
            rep->tn += !kept && !pos;
            rep->fn += !kept && pos;
            rep->label_correct += kept == pos;
        }
        if (kept) {
            rep->docs_kept++;
            rep->bytes_kept += sl->clean_len;
            if (out)
                write_kept(out, sl);
        } else {
            rep->docs_rejected++;
            count_reject(rep, d->reject);
            if (rej)
                write_reject(rej, sl);
        }
        fg_doc_free(d);
        fg_free(sl->clean);
        fg_free(sl->title);
        sl->clean = sl->title = NULL;
    }
    b->n = 0;
}

/* Reads up to a batch of documents; returns FG_OK (b->n may be 0 at the end). */
static fg_status fill_batch(run *R, fg_data_reader *rd, batch *b)
{
    const fg_data_clean_config *c = R->c;
    size_t bytes = 0;
    b->n = 0;
    while (b->n < c->batch_docs && bytes < c->batch_bytes) {
        slot *sl = &b->s[b->n];
        memset(sl, 0, sizeof *sl);
        bool got;
        fg_status st = fg_data_reader_next(rd, &sl->doc, &got);
        if (st != FG_OK)
            return st;
        if (!got)
            break;
        sl->sig = b->sigs ? b->sigs + (size_t)b->n * (size_t)R->n_perm : NULL;
        bytes += sl->doc.raw_len;
        b->n++;
    }
    return FG_OK;
}

static fg_status batch_init(batch *b, int n, int n_perm)
{
    b->s = fg_calloc((size_t)n, sizeof *b->s);
    b->sigs = n_perm ? fg_malloc((size_t)n * (size_t)n_perm * sizeof *b->sigs) : NULL;
    b->n = 0;
    return (b->s && (!n_perm || b->sigs)) ? FG_OK : FG_ERR_NOMEM;
}

static void batch_free(batch *b)
{
    if (b->s)
        for (int i = 0; i < b->n; i++) {
            fg_doc_free(&b->s[i].doc);
            fg_free(b->s[i].clean);
        }
    fg_free(b->s);
    fg_free(b->sigs);
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

fg_status fg_data_clean_run(const fg_data_clean_config *c, const char *const *paths, int n_paths, fg_data_report *rep)
{
    memset(rep, 0, sizeof *rep);
    if (!c->rules)
        return fg_error(FG_ERR_INVALID, "clean: no rules given");
    if (c->batch_docs < 1)
        return fg_error(FG_ERR_INVALID, "clean: batch_docs must be >= 1");
    double t0 = fg_time_sec(), c0 = cpu_now();
    int nt = c->threads > 0 ? c->threads : omp_get_num_procs();
    run R = {c, NULL, NULL, NULL, NULL, 0};
    fg_data_reader *rd = NULL;
    FILE *out = NULL, *rej = NULL;
    batch cur = {0}, next = {0};
    fg_status st = FG_OK;
    int n_rules = fg_data_rules_count(c->rules);
    if (c->dedup.exact || c->dedup.near) {
        R.dd = fg_data_dedup_new(&c->dedup);
        if (!R.dd)
            return fg_last_status();
        R.n_perm = c->dedup.near ? fg_data_dedup_n_perm(R.dd) : 0;
    }
    R.scr = fg_calloc((size_t)nt, sizeof *R.scr);
    R.line_drops = fg_calloc((size_t)nt, sizeof *R.line_drops);
    if (!R.scr || !R.line_drops) {
        st = FG_ERR_NOMEM;
        goto cleanup;
    }
    for (int t = 0; t < nt; t++) {
        R.scr[t] = fg_data_scratch_new(c->rules);
        R.line_drops[t] = fg_calloc((size_t)n_rules + 1, sizeof **R.line_drops);
        if (!R.scr[t] || !R.line_drops[t]) {
            st = FG_ERR_NOMEM;
            goto cleanup;
        }
    }
    if (c->tf_classifier && c->classify != FG_CLASSIFY_NONE) {
        if (!(R.tf = fg_calloc((size_t)nt, sizeof *R.tf))) {
            st = FG_ERR_NOMEM;
            goto cleanup;
        }
        for (int t = 0; t < nt; t++)
            if (!(R.tf[t] = fg_data_tfcls_ctx_new(c->tf_classifier))) {
                st = fg_last_status();
                goto cleanup;
            }
    }
    if ((st = batch_init(&cur, c->batch_docs, R.n_perm)) != FG_OK ||
        (st = batch_init(&next, c->batch_docs, R.n_perm)) != FG_OK)
        goto cleanup;
    if ((st = fg_data_reader_open(&rd, paths, n_paths)) != FG_OK)
        goto cleanup;
    fg_data_reader_limits lim;
    fg_data_reader_limits_init(&lim);
    lim.max_doc_bytes = c->max_doc_bytes;
    lim.max_file_bytes = c->max_file_bytes;
    lim.fail_on_read_error = c->fail_on_read_error;
    fg_data_reader_set_limits(rd, &lim);
    if (c->out_path && !(out = fopen(c->out_path, "wb"))) {
        st = fg_error(FG_ERR_IO, "%s: cannot write: %s", c->out_path, strerror(errno));
        goto cleanup;
    }
    if (c->rejects_path && !(rej = fopen(c->rejects_path, "wb"))) {
        st = fg_error(FG_ERR_IO, "%s: cannot write: %s", c->rejects_path, strerror(errno));
        goto cleanup;
    }
    if (out)
        setvbuf(out, NULL, _IOFBF, 1 << 20);
    if (rej)
        setvbuf(rej, NULL, _IOFBF, 1 << 20);
    fg_progress prog;
    fg_progress_begin(&prog, "clean", (double)fg_data_reader_bytes_total(rd) / 1e6, "MB");
    prog.enabled = c->progress; /* the CLI decides (--progress / --no-progress / terminal) */
    if ((st = fill_batch(&R, rd, &cur)) != FG_OK)
        goto cleanup;
    while (cur.n > 0) {
        fg_status rst = FG_OK;
        char rmsg[1024] = "";
        /* One thread reads the next batch while the team (that thread included, once it
         * is done reading) cleans the current one; dynamic scheduling balances them. */
#pragma omp parallel num_threads(nt)
        {
#pragma omp single nowait
            {
                rst = fill_batch(&R, rd, &next);
                if (rst != FG_OK) /* the last error is per thread: carry it to this one */
                    snprintf(rmsg, sizeof rmsg, "%s", fg_last_error());
            }
#pragma omp for schedule(dynamic, 1) nowait
            for (int i = 0; i < cur.n; i++)
                process(&R, &cur.s[i], omp_get_thread_num());
        }
        finish_batch(&R, &cur, rep, out, rej);
        if (rst != FG_OK) {
            st = fg_error(rst, "%s", rmsg);
            goto cleanup;
        }
        batch tmp = cur;
        cur = next;
        next = tmp;
        fg_progress_update(&prog, (double)fg_data_reader_bytes_done(rd) / 1e6);
    }
    fg_progress_end(&prog);
    if (out && fflush(out) != 0) {
        st = fg_error(FG_ERR_IO, "%s: write failed: %s", c->out_path, strerror(errno));
        goto cleanup;
    }
    if (rej && fflush(rej) != 0) {
        st = fg_error(FG_ERR_IO, "%s: write failed: %s", c->rejects_path, strerror(errno));
        goto cleanup;
    }
    rep->input_bytes = fg_data_reader_bytes_done(rd);
    rep->warc_records_skipped = fg_data_reader_warc_skipped(rd);
    rep->skipped_files = fg_strdup(fg_data_reader_skipped(rd));
    rep->read_errors = fg_strdup(fg_data_reader_errors(rd));
    rep->read_error_files = fg_data_reader_error_files(rd);
    rep->n_line_rules = 0;
    rep->line_drops = fg_calloc((size_t)n_rules + 1, sizeof *rep->line_drops);
    if (rep->line_drops) {
        for (int i = 0; i < n_rules; i++) {
            uint64_t s = 0;
            for (int t = 0; t < nt; t++)
                s += R.line_drops[t][i];
            if (s)
                rep->line_drops[rep->n_line_rules++] = (fg_data_reject_count){fg_data_rules_name(c->rules, i), s};
        }
    }
    if (R.dd) {
        rep->dedup_bytes = fg_data_dedup_bytes(R.dd);
        rep->dedup_not_indexed = fg_data_dedup_not_indexed(R.dd);
        fg_data_dedup_bands(R.dd, &rep->dedup_bands, &rep->dedup_rows);
    }
    rep->threads = nt;
cleanup:
    rep->seconds = fg_time_sec() - t0;
    rep->cpu_seconds = cpu_now() - c0;
    rep->peak_mem_bytes = fg_mem_peak();
    if (out && fclose(out) != 0 && st == FG_OK)
        st = fg_error(FG_ERR_IO, "%s: close failed: %s", c->out_path, strerror(errno));
    if (rej && fclose(rej) != 0 && st == FG_OK)
        st = fg_error(FG_ERR_IO, "%s: close failed: %s", c->rejects_path, strerror(errno));
    batch_free(&cur);
    batch_free(&next);
    fg_data_reader_close(rd);
    if (R.scr)
        for (int t = 0; t < nt; t++)
            fg_data_scratch_delete(R.scr[t]);
    if (R.line_drops)
        for (int t = 0; t < nt; t++)
            fg_free(R.line_drops[t]);
    if (R.tf)
        for (int t = 0; t < nt; t++)
            fg_data_tfcls_ctx_delete(R.tf[t]);
    fg_free(R.tf);
    fg_free(R.scr);
    fg_free(R.line_drops);
    fg_data_dedup_delete(R.dd);
    return st;
}

void fg_data_report_print(FILE *f, const fg_data_report *r)
{
    char b1[32], b2[32], b3[32];
    double mb = (double)r->bytes_read / 1e6;
    fprintf(f, "documents read      %llu (%s decoded, %s on disk)\n", (unsigned long long)r->docs_read,
            fg_fmt_bytes(b1, sizeof b1, (double)r->bytes_read), fg_fmt_bytes(b2, sizeof b2, (double)r->input_bytes));
    fprintf(f, "kept                %llu (%s)\n", (unsigned long long)r->docs_kept,
            fg_fmt_bytes(b3, sizeof b3, (double)r->bytes_kept));
    fprintf(f, "rejected            %llu\n", (unsigned long long)r->docs_rejected);
    for (int i = 0; i < r->n_rejects; i++)
        fprintf(f, "  %-32s %llu\n", r->rejects[i].name, (unsigned long long)r->rejects[i].count);
    fprintf(f, "score: accepted %llu, rejected %llu, sent to classifier %llu (kept %llu, rejected %llu)\n",
            (unsigned long long)r->accepted_by_score, (unsigned long long)r->rejected_by_score,
            (unsigned long long)r->sent_to_classifier, (unsigned long long)r->classifier_kept,
            (unsigned long long)r->classifier_rejected);
    fprintf(f, "duplicates removed  %llu exact, %llu near (LSH %d bands x %d rows; tables %s%s)\n",
            (unsigned long long)r->exact_dups, (unsigned long long)r->near_dups, r->dedup_bands, r->dedup_rows,
            fg_fmt_bytes(b1, sizeof b1, (double)r->dedup_bytes),
            r->dedup_not_indexed ? ", FULL: some not indexed" : "");
    if (r->utf8_repaired_docs)
        fprintf(f, "invalid UTF-8       %llu documents repaired (%llu sequences -> U+FFFD)\n",
                (unsigned long long)r->utf8_repaired_docs, (unsigned long long)r->utf8_repairs);
    if (r->n_line_rules) {
        fprintf(f, "lines dropped:\n");
        for (int i = 0; i < r->n_line_rules; i++)
            fprintf(f, "  %-32s %llu\n", r->line_drops[i].name, (unsigned long long)r->line_drops[i].count);
    }
    if (r->warc_records_skipped)
        fprintf(f, "WARC records skipped (not documents) %llu\n", (unsigned long long)r->warc_records_skipped);
    if (r->skipped_files && r->skipped_files[0])
        fprintf(f, "files skipped (unknown type, symlinked directory):\n%s", r->skipped_files);
    if (r->read_errors && r->read_errors[0])
        fprintf(f, "read errors in %llu files (documents before the error kept, the rest of the file lost):\n%s",
                (unsigned long long)r->read_error_files, r->read_errors);
    if (r->labeled)
        fprintf(f, "labels: %llu documents, accuracy %.4f (tp %llu fp %llu tn %llu fn %llu)\n",
                (unsigned long long)r->labeled, (double)r->label_correct / (double)r->labeled,
                (unsigned long long)r->tp, (unsigned long long)r->fp, (unsigned long long)r->tn,
                (unsigned long long)r->fn);
    fprintf(f, "time %.3f s wall, %.3f s CPU; %.2f MB/s, %.2f MB per CPU-second (%d threads), peak memory %s\n",
            r->seconds, r->cpu_seconds, r->seconds > 0 ? mb / r->seconds : 0,
            r->cpu_seconds > 0 ? mb / r->cpu_seconds : 0, r->threads,
            fg_fmt_bytes(b2, sizeof b2, (double)r->peak_mem_bytes));
    uint64_t sum = r->docs_kept;
    for (int i = 0; i < r->n_rejects; i++)
        sum += r->rejects[i].count;
    fprintf(f, "check: read %llu = kept %llu + rejected per rule %llu: %s\n", (unsigned long long)r->docs_read,
            (unsigned long long)r->docs_kept, (unsigned long long)(sum - r->docs_kept),
            sum == r->docs_read ? "ok" : "MISMATCH");
}

fg_status fg_data_report_write_json(const fg_data_report *r, const char *path)
{
    json_t *o = json_object(), *rj = json_object(), *lj = json_object();
    if (!o || !rj || !lj) {
        json_decref(o);
        json_decref(rj);
        json_decref(lj);
        return fg_error(FG_ERR_NOMEM, "report: out of memory");
    }
#define SET(k, v) json_object_set_new(o, k, json_integer((json_int_t)(v)))
    SET("docs_read", r->docs_read);
    SET("bytes_read", r->bytes_read);
    SET("input_bytes", r->input_bytes);
    SET("docs_kept", r->docs_kept);
    SET("bytes_kept", r->bytes_kept);
    SET("docs_rejected", r->docs_rejected);
    SET("sent_to_classifier", r->sent_to_classifier);
    SET("classifier_kept", r->classifier_kept);
    SET("classifier_rejected", r->classifier_rejected);
    SET("accepted_by_score", r->accepted_by_score);
    SET("rejected_by_score", r->rejected_by_score);
    SET("exact_duplicates", r->exact_dups);
    SET("near_duplicates", r->near_dups);
    SET("utf8_repaired_docs", r->utf8_repaired_docs);
    SET("utf8_repairs", r->utf8_repairs);
    SET("warc_records_skipped", r->warc_records_skipped);
    SET("dedup_bytes", r->dedup_bytes);
    SET("dedup_not_indexed", r->dedup_not_indexed);
    SET("peak_mem_bytes", r->peak_mem_bytes);
    SET("threads", r->threads);
    SET("read_error_files", r->read_error_files);
    SET("labeled", r->labeled);
    SET("label_correct", r->label_correct);
#undef SET
    json_object_set_new(o, "read_errors", json_string(r->read_errors ? r->read_errors : ""));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_object_set_new(o, "cpu_seconds", json_real(r->cpu_seconds));
    for (int i = 0; i < r->n_rejects; i++)
        json_object_set_new(rj, r->rejects[i].name, json_integer((json_int_t)r->rejects[i].count));
    for (int i = 0; i < r->n_line_rules; i++)
        json_object_set_new(lj, r->line_drops[i].name, json_integer((json_int_t)r->line_drops[i].count));
    json_object_set_new(o, "rejected_per_rule", rj);
    json_object_set_new(o, "lines_dropped_per_rule", lj);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text)
        return fg_error(FG_ERR_NOMEM, "%s: cannot format the report", path);
    fg_status st = fg_file_commit(path, text, strlen(text)); /* whole or absent */
    free(text);                                              /* jansson allocates with malloc */
    return st;
}
