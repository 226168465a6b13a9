/* test_data_pipeline.c: `frugal clean` end to end: the shared web samples with pinned
 * kept / rejected counts, counts that add up, output identical for 1 and 2 threads;
 * bad input (broken JSON lines with line numbers, invalid UTF-8 repaired or rejected,
 * empty files, a 100 MB single line); the CLI's messages and exit codes. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/data.h"
#include "harness.h"

/* Lines of a JSONL file, each checked to parse as a JSON object; -1 when unreadable. */
static long count_json_lines(const char *path, const char *must_have_key)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    long n = 0, bad = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t err;
        json_t *v = json_loadb(line, (size_t)len, 0, &err);
        if (!v || !json_is_object(v) || (must_have_key && !json_object_get(v, must_have_key)))
            bad++;
        if (v)
            json_decref(v);
        n++;
    }
    free(line);
    fclose(f);
    FG_CHECK(bad == 0, "%s: %ld lines are not JSON objects with '%s'", path, bad, must_have_key ? must_have_key : "");
    return n;
}

static uint64_t sum_rejects(const fg_data_report *r)
{
    uint64_t s = 0;
    for (int i = 0; i < r->n_rejects; i++)
        s += r->rejects[i].count;
    return s;
}

static bool files_equal(const char *a, const char *b)
{
    char cmd[2048], out[64];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return fg_test_run(cmd, out, sizeof out) == 0;
}

static void test_web(fg_data_rules *rules)
{
    const char *web = fg_test_shared_path("web");
    if (!web) {
        fg_test_skip("end-to-end on shared web data", "../shared/data/web not found");
        return;
    }
    const char *tmp = fg_test_tmpdir();
    char out1[512], rej1[512], out2[512], rej2[512];
    snprintf(out1, sizeof out1, "%s/web1.jsonl", tmp);
    snprintf(rej1, sizeof rej1, "%s/web1.rejects.jsonl", tmp);
    snprintf(out2, sizeof out2, "%s/web2.jsonl", tmp);
    snprintf(rej2, sizeof rej2, "%s/web2.rejects.jsonl", tmp);
    fg_data_clean_config c;
    fg_data_clean_config_init(&c);
    c.rules = rules;
    c.out_path = out1;
    c.rejects_path = rej1;
    c.threads = 1;
    c.batch_docs = 16; /* several batches, so the read-ahead overlap is exercised */
    const char *paths[1] = {web};
    fg_data_report r;
    fg_status st = fg_data_clean_run(&c, paths, 1, &r);
    FG_CHECK(st == FG_OK, "clean web: %s", fg_last_error());
    /* Pinned against configs/clean_rules.conf: a change of the default rules that moves
     * these numbers must update them here (and say why in the commit). */
    FG_CHECK(r.docs_read == 250, "docs read %llu (207 pages + 10 + 10 dolma + WARC/WET records + evaldata)",
             (unsigned long long)r.docs_read);
    FG_CHECK(r.docs_kept == 217, "kept %llu", (unsigned long long)r.docs_kept);
    FG_CHECK(r.docs_rejected == 33, "rejected %llu", (unsigned long long)r.docs_rejected);
    FG_CHECK(r.docs_read == r.docs_kept + sum_rejects(&r), "read = kept + rejected per rule (%llu + %llu)",
             (unsigned long long)r.docs_kept, (unsigned long long)sum_rejects(&r));
    FG_CHECK(r.docs_rejected == sum_rejects(&r), "rejected = sum per rule");
    FG_CHECK(fg_data_report_rejects_for(&r, "read_error") == 1, "clipped.warc.gz: 1 read_error");
    FG_CHECK(fg_data_report_rejects_for(&r, "broken_json") == 1, "evaldata.json.gz (one JSON object): broken_json");
    /* The whirlwind WET record repeats the WARC page's text at shingle Jaccard 0.80, right
     * on the default 0.8 threshold, so whether it is caught there depends on the hash
     * seeds and on small rule changes (it is caught now: 1 of the 33 rejects); it is
     * checked below at 0.6, where LSH catches J=0.8 with p > 0.98. */
    FG_CHECK(fg_data_report_rejects_for(&r, "lorem_ipsum") == 1, "one page holds lorem ipsum");
    FG_CHECK(r.warc_records_skipped == 41, "WARC request/metadata/warcinfo records skipped: %llu",
             (unsigned long long)r.warc_records_skipped);
    FG_CHECK(r.utf8_repaired_docs == 1, "one page has invalid UTF-8, repaired: %llu",
             (unsigned long long)r.utf8_repaired_docs);
    FG_CHECK(r.skipped_files && strstr(r.skipped_files, "INDEX.tsv"), "INDEX.tsv listed as skipped");
    FG_CHECK(r.bytes_kept > 1000000 && r.bytes_kept < r.bytes_read / 5, "kept %llu of %llu bytes (HTML stripped)",
             (unsigned long long)r.bytes_kept, (unsigned long long)r.bytes_read);
    FG_CHECK(count_json_lines(out1, "text") == (long)r.docs_kept, "output lines = kept");
    FG_CHECK(count_json_lines(rej1, "reject") == (long)r.docs_rejected, "rejects lines = rejected");
    FG_CHECK(r.dedup_bytes > 0 && r.dedup_bytes <= c.dedup.max_bytes, "dedup memory %zu reported and bounded",
             r.dedup_bytes);
    fg_data_report_free(&r);
    /* Same bytes with two threads and bigger batches. */
    c.out_path = out2;
    c.rejects_path = rej2;
    c.threads = 2;
    c.batch_docs = 100;
    st = fg_data_clean_run(&c, paths, 1, &r);
    FG_CHECK(st == FG_OK && r.docs_kept == 217, "2 threads: same counts");
    FG_CHECK(files_equal(out1, out2) && files_equal(rej1, rej2), "output and rejects identical for 1 and 2 threads");
    fg_data_report_free(&r);
    /* Near duplicates: the same Aragonese Wikipedia page as a WARC response and as CC's WET text. */
    char warc[600], wet[600];
    snprintf(warc, sizeof warc, "%s/cc/whirlwind.warc.gz", web);
    snprintf(wet, sizeof wet, "%s/cc/whirlwind.warc.wet.gz", web);
    const char *pair[2] = {warc, wet};
    c.dedup.jaccard = 0.6;
    st = fg_data_clean_run(&c, pair, 2, &r);
    FG_CHECK(st == FG_OK && r.docs_read == 2 && r.near_dups == 1 &&
                 fg_data_report_rejects_for(&r, "near_duplicate") == 1,
             "WET copy of the WARC page found as a near duplicate (%llu)", (unsigned long long)r.near_dups);
    fg_data_report_free(&r);
}

/* Text of the rejects-file line whose "reject" is name (first one), into buf. */
static bool find_reject(const char *path, const char *name, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char *line = NULL;
    size_t lc = 0;
    bool found = false;
    char key[128];
    snprintf(key, sizeof key, "{\"reject\":\"%s\"", name);
    while (getline(&line, &lc, f) > 0) {
        if (!strncmp(line, key, strlen(key))) {
            snprintf(buf, cap, "%s", line);
            found = true;
            break;
        }
    }
    free(line);
    fclose(f);
    return found;
}

static void test_bad_input(fg_data_rules *rules)
{
    const char *tmp = fg_test_tmpdir();
    char dir[512], p[700], out[600], rej[600];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    FG_CHECK(system(p) == 0, "mkdir");
    const char *good = "The history of the town goes back to the twelfth century, when a small group of "
                       "farmers settled on the bank of the river. They built a mill and a church, and the "
                       "village grew slowly over the next two hundred years as trade with the nearby city "
                       "increased and new families arrived from the surrounding hills to work in the fields.";
    char jl[4096];
    int k = snprintf(jl, sizeof jl,
                     "{\"text\":\"%s\",\"id\":1}\n"
                     "{\"text\": \"unterminated\n"
                     "{\"text\":\"caf\xE9 %s\",\"id\":3}\n"
                     "[1,2]\n"
                     "{\"no_text\":1}\n"
                     "\n"
                     "{\"text\":\"  %s\",\"id\":7}\n",
                     good, good, good);
    snprintf(p, sizeof p, "%s/a.jsonl", dir);
    fg_test_write_file(p, jl, (size_t)k);
    snprintf(p, sizeof p, "%s/b_empty.jsonl", dir);
    fg_test_write_file(p, "", 0);
    snprintf(p, sizeof p, "%s/c_empty.txt", dir);
    fg_test_write_file(p, "", 0);
    snprintf(p, sizeof p, "%s/d_latin1.txt", dir);
    char lat[600];
    int kl = snprintf(lat, sizeof lat, "Gr\xFC\xDF Gott! %s", good);
    fg_test_write_file(p, lat, (size_t)kl);
    /* A 100 MB single line (JSONL), built in chunks. */
    snprintf(p, sizeof p, "%s/e_big.jsonl", dir);
    FILE *f = fopen(p, "wb");
    FG_CHECK(f != NULL, "create big file");
    if (f) {
        static char chunk[1 << 20];
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = (i % 7 == 6) ? ' ' : (char)('a' + (i % 26));
        fputs("{\"text\":\"", f);
        for (int i = 0; i < 100; i++)
            fwrite(chunk, 1, sizeof chunk, f);
        fputs("\"}\n", f);
        fclose(f);
    }
    snprintf(out, sizeof out, "%s/bad.jsonl", tmp);
    snprintf(rej, sizeof rej, "%s/bad.rejects.jsonl", tmp);
    fg_data_clean_config c;
    fg_data_clean_config_init(&c);
    c.rules = rules;
    c.out_path = out;
    c.rejects_path = rej;
    c.threads = 2;
    c.dedup.near = false;
    const char *paths[1] = {dir};
    fg_data_report r;
    double t0 = fg_time_sec();
    fg_status st = fg_data_clean_run(&c, paths, 1, &r);
    double t1 = fg_time_sec();
    FG_CHECK(st == FG_OK, "bad input does not fail the run: %s", fg_last_error());
    /* a.jsonl: 6 records (blank line skipped); c_empty.txt: 1; d_latin1.txt: 1; e_big: 1. */
    FG_CHECK(r.docs_read == 9, "documents read %llu", (unsigned long long)r.docs_read);
    FG_CHECK(r.docs_read == r.docs_kept + sum_rejects(&r), "counts add up: %llu = %llu + %llu",
             (unsigned long long)r.docs_read, (unsigned long long)r.docs_kept, (unsigned long long)sum_rejects(&r));
    FG_CHECK(fg_data_report_rejects_for(&r, "broken_json") == 2, "broken line and array line: broken_json");
    FG_CHECK(fg_data_report_rejects_for(&r, "no_text_field") == 1, "object without text");
    FG_CHECK(fg_data_report_rejects_for(&r, "empty_after_cleaning") == 1, "empty text file");
    FG_CHECK(fg_data_report_rejects_for(&r, "doc_too_large") == 1, "100 MB line rejected as too large");
    FG_CHECK(fg_data_report_rejects_for(&r, "exact_duplicate") == 1,
             "doc 7 repeats doc 1 (modulo spaces): exact duplicate");
    FG_CHECK(r.docs_kept == 3, "kept: doc 1, doc 3 (repaired), the Latin-1 text (%llu)",
             (unsigned long long)r.docs_kept);
    FG_CHECK(r.utf8_repaired_docs == 2 && r.utf8_repairs == 3, "invalid UTF-8 repaired: %llu docs, %llu sequences",
             (unsigned long long)r.utf8_repaired_docs, (unsigned long long)r.utf8_repairs);
    char line[1024];
    FG_CHECK(find_reject(rej, "broken_json", line, sizeof line) && strstr(line, "a.jsonl:2:") &&
                 strstr(line, "unterminated"),
             "broken JSON reported with its line number and kept verbatim: %.200s", line);
    FG_CHECK(find_reject(rej, "doc_too_large", line, sizeof line) && strstr(line, "e_big.jsonl:1"),
             "too-large document names its source: %.200s", line);
    FG_CHECK(count_json_lines(rej, "reject") == (long)r.docs_rejected, "every reject written with its rule");
    FG_CHECK(count_json_lines(out, "text") == 3, "kept documents written");
    /* Not a timing test: a generous bound that only catches quadratic behaviour on the big line. */
    FG_CHECK(t1 - t0 < 30, "bad-input run took %.1f s", t1 - t0);
    fg_data_report_free(&r);

    /* With `utf8 reject`, invalid UTF-8 is rejected with its reason instead. */
    fg_data_rules *strict = NULL;
    const char *txt = "utf8 reject\n";
    FG_CHECK(fg_data_rules_parse(&strict, txt, strlen(txt), "strict") == FG_OK, "strict rules");
    c.rules = strict;
    paths[0] = p; /* only the latin-1 file */
    snprintf(p, sizeof p, "%s/d_latin1.txt", dir);
    st = fg_data_clean_run(&c, paths, 1, &r);
    FG_CHECK(st == FG_OK && fg_data_report_rejects_for(&r, "invalid_utf8") == 1, "utf8 reject: invalid_utf8");
    FG_CHECK(find_reject(rej, "invalid_utf8", line, sizeof line) && strstr(line, "2 invalid UTF-8 sequences"),
             "reason recorded: %.200s", line);
    fg_data_report_free(&r);
    fg_data_rules_delete(strict);
}

static void test_cli(void)
{
    const char *bin = fg_test_frugal_bin();
    const char *tmp = fg_test_tmpdir();
    char cmd[2048], out[8192], p[600];
    snprintf(p, sizeof p, "%s/bad.conf", tmp);
    fg_test_write_file(p, "sub ok s/a/b/\nsubb x s/a/b/\n", 28);
    snprintf(cmd, sizeof cmd, "%s clean --rules %s -o %s/x.jsonl %s 2>&1", bin, p, tmp, p);
    int rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc != 0 && strstr(out, "bad.conf:2:1: unknown directive"), "bad rules file: rc %d, '%s'", rc, out);
    snprintf(cmd, sizeof cmd, "%s clean -o %s/x.jsonl /nonexistent/input 2>&1", bin, tmp);
    rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc != 0 && strstr(out, "/nonexistent/input"), "missing input: rc %d, '%s'", rc, out);
    snprintf(cmd, sizeof cmd, "%s clean --classify all -o %s/x.jsonl %s 2>&1", bin, tmp, p);
    rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc == 2 && strstr(out, "needs --classifier"), "--classify all without a model: rc %d", rc);
    snprintf(cmd, sizeof cmd, "%s clean --bogus 2>&1", bin);
    rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc == 2 && strstr(out, "unknown option --bogus"), "unknown option: rc %d", rc);
    /* train-classifier + clean with it, on a tiny labeled set built here */
    snprintf(p, sizeof p, "%s/lab.jsonl", tmp);
    FILE *f = fopen(p, "wb");
    for (int i = 0; f && i < 200; i++)
        fprintf(f, "{\"text\":\"%s number %d\",\"label\":\"%s\"}\n",
                i % 2 ? "a careful report on the history of science" : "click here to win free cheap offer", i,
                i % 2 ? "good" : "bad");
    if (f)
        fclose(f);
    snprintf(cmd, sizeof cmd, "%s clean train-classifier --input %s -o %s/m.cls --raw 2>&1", bin, p, tmp);
    rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc == 0 && strstr(out, "held-out accuracy 1.0000"), "train-classifier: rc %d, '%s'", rc, out);
    snprintf(cmd, sizeof cmd,
             "%s clean --classifier %s/m.cls --classify all --eval-label label --positive good --no-dedup "
             "--rules /dev/null -o %s/y.jsonl %s 2>&1",
             bin, tmp, tmp, p);
    rc = fg_test_run(cmd, out, sizeof out);
    FG_CHECK(rc == 0 && strstr(out, "accuracy 1.0000") && strstr(out, "check: read 200 = kept 100"),
             "classify all with labels: rc %d, '%s'", rc, out);
}

int main(void)
{
    FG_TEST_BEGIN("data_pipeline");
    fg_data_rules *rules = NULL;
    fg_status st = fg_data_rules_load(&rules, fg_test_source_path("configs/clean_rules.conf"));
    FG_CHECK(st == FG_OK, "default rules: %s", fg_last_error());
    if (rules) {
        test_web(rules);
        test_bad_input(rules);
    }
    test_cli();
    fg_data_rules_delete(rules);
    return fg_test_end();
}
