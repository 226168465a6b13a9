/* test_data_pipeline.c: `frugal clean` end to end: the shared web samples with pinned
 * kept / rejected counts, counts that add up, output identical for 1 and 2 threads;
 * bad input (broken JSON lines with line numbers, invalid UTF-8 repaired or rejected,
 * empty files, a 100 MB single line); decompression bombs bounded in time, memory and
 * rejects size; corrupt or truncated .gz/.zst named with their byte offset, and fatal
 * on request; the CLI's messages and exit codes. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

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
        json_t *v = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &err); /* a page may hold NUL bytes */
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
    /* Issue 16 moved these (217 / 33 with regex tag stripping): DOM extraction 215 / 35
     * (pages whose main text is short once menus and footers are gone fall under
     * min_words); then 218 / 32 when mostly-CJK text stopped being judged by the length
     * of its few space-separated tokens (the Chinese pages had failed min_mean_word_len);
     * 219 / 31 when the page's <main> won over a side text (france.attc.org: its article,
     * not a short box, is extracted and passes min_words); 224 / 26 with the second round
     * of extraction rules: five pages whose article had been cut to a fragment now pass
     * min_words (sports.fr's live ticker, dalloz-actualite.fr and cooperativa.cl under
     * layout hints, 1337kultur.de's entry-content, brasil247.com no longer max_dup_lines),
     * a WARC page's one line is no longer empty, and france.attc.org's article (its lead and
     * one line, not the newsletter box beside it) is under min_words. */
    FG_CHECK(r.docs_kept == 224, "kept %llu", (unsigned long long)r.docs_kept);
    FG_CHECK(r.docs_rejected == 26, "rejected %llu", (unsigned long long)r.docs_rejected);
    FG_CHECK(r.docs_read == r.docs_kept + sum_rejects(&r), "read = kept + rejected per rule (%llu + %llu)",
             (unsigned long long)r.docs_kept, (unsigned long long)sum_rejects(&r));
    FG_CHECK(r.docs_rejected == sum_rejects(&r), "rejected = sum per rule");
    FG_CHECK(fg_data_report_rejects_for(&r, "read_error") == 1, "clipped.warc.gz: 1 read_error");
    FG_CHECK(fg_data_report_rejects_for(&r, "broken_json") == 1, "evaldata.json.gz (one JSON object): broken_json");
    /* The whirlwind WET record repeats the WARC page's text at shingle Jaccard 0.80, right
     * on the default 0.8 threshold, so whether it is caught there depends on the hash
     * seeds and on small rule changes (it is caught now: 1 of the 33 rejects); it is
     * checked below at 0.6, where LSH catches J=0.8 with p > 0.98. */
    /* The one page with "Lorem Ipsum" (biobiochile.cl) has it in a hidden (d-none) link box,
     * which the extractor leaves out: the page is kept now. */
    FG_CHECK(fg_data_report_rejects_for(&r, "lorem_ipsum") == 0, "lorem ipsum only in hidden boilerplate");
    FG_CHECK(r.warc_records_skipped == 41, "WARC request/metadata/warcinfo records skipped: %llu",
             (unsigned long long)r.warc_records_skipped);
    /* 0 since issue 16: the one page repaired before (nmb-media.de.ebay) is ISO-8859-1 as its
     * <meta> says; a "charset=utf-8;base64" inside a script had been taken for its charset. */
    FG_CHECK(r.utf8_repaired_docs == 0, "no page has invalid UTF-8 left to repair: %llu",
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
    FG_CHECK(st == FG_OK && r.docs_kept == 224, "2 threads: same counts");
    FG_CHECK(files_equal(out1, out2) && files_equal(rej1, rej2), "output and rejects identical for 1 and 2 threads");
    fg_data_report_free(&r);
    /* Near duplicates: the same Aragonese Wikipedia page as a WARC response and as CC's WET text. */
    char warc[600], wet[600];
    snprintf(warc, sizeof warc, "%s/cc/whirlwind.warc.gz", web);
    snprintf(wet, sizeof wet, "%s/cc/whirlwind.warc.wet.gz", web);
    const char *pair[2] = {warc, wet};
    c.dedup.jaccard = 0.6;
    /* WET is CC's text of the whole page, menus included; the WARC page's main content
     * alone is further from it, so this dedup check compares whole pages. */
    c.extract = FG_EXTRACT_NONE;
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

/* ---- compressed inputs built here, streamed (a bomb is never held in memory) ---- */

/* Writes prefix, then n_zeros zero bytes, then suffix, as one gzip member. */
static bool write_gz(const char *path, const char *prefix, uint64_t n_zeros, const char *suffix)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
        fclose(f);
        return false;
    }
    static unsigned char zeros[1 << 20], out[1 << 16];
    bool ok = true;
    for (int part = 0; part < 3 && ok; part++) {
        uint64_t left = part == 1 ? n_zeros : strlen(part == 0 ? prefix : suffix);
        const unsigned char *src = part == 1 ? zeros : (const unsigned char *)(part == 0 ? prefix : suffix);
        do {
            size_t k = left < sizeof zeros ? (size_t)left : sizeof zeros;
            zs.next_in = (unsigned char *)src;
            zs.avail_in = (uInt)k;
            left -= k;
            int flush = part == 2 && left == 0 ? Z_FINISH : Z_NO_FLUSH;
            int rc;
            do {
                zs.next_out = out;
                zs.avail_out = sizeof out;
                rc = deflate(&zs, flush);
                ok = ok && rc != Z_STREAM_ERROR &&
                     fwrite(out, 1, sizeof out - zs.avail_out, f) == sizeof out - zs.avail_out;
            } while (ok && (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END)));
        } while (ok && left > 0);
    }
    deflateEnd(&zs);
    return fclose(f) == 0 && ok;
}

/* Compresses data[0..n) as a zstd frame with a content checksum (as the zstd tool does). */
static bool write_zst(const char *path, const void *data, size_t n)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(n);
    void *buf = malloc(cap);
    bool ok = c && buf && !ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1));
    size_t k = ok ? ZSTD_compress2(c, buf, cap, data, n) : 0;
    ok = ok && !ZSTD_isError(k);
    if (ok)
        fg_test_write_file(path, buf, k);
    free(buf);
    ZSTD_freeCCtx(c);
    return ok;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* A gzip bomb (issue 10: 2 MB of gzip holding 2 GB of zeros ran past 200 s, 2.1 GB of
 * memory and a 9.8 GB rejects file). 256 MiB of zeros (about 250 KB compressed) keep the
 * test quick; the bounds below would fail by orders of magnitude without the limits. */
static void test_bomb(fg_data_rules *rules)
{
    const char *tmp = fg_test_tmpdir();
    char jl[600], txt[600], zst[600], out[600], rej[600], line[4096];
    snprintf(jl, sizeof jl, "%s/bomb.jsonl.gz", tmp);
    snprintf(txt, sizeof txt, "%s/bomb.txt.gz", tmp);
    snprintf(zst, sizeof zst, "%s/bomb.jsonl.zst", tmp);
    snprintf(out, sizeof out, "%s/bomb.out.jsonl", tmp);
    snprintf(rej, sizeof rej, "%s/bomb.rejects.jsonl", tmp);
    const uint64_t zeros = (uint64_t)256 << 20;
    double t0 = fg_time_sec();
    FG_CHECK(write_gz(jl, "{\"text\":\"", zeros, "\"}\n") && write_gz(txt, "", zeros, ""), "bombs written");
    FG_CHECK(file_size(jl) > 0 && file_size(jl) < (1 << 20), "bomb.jsonl.gz is %lld bytes", file_size(jl));
    fg_data_clean_config c;
    fg_data_clean_config_init(&c);
    c.rules = rules;
    c.out_path = out;
    c.rejects_path = rej;
    c.threads = 2;
    c.dedup.near = false;
    c.max_doc_bytes = (size_t)1 << 20;
    c.max_file_bytes = (uint64_t)64 << 20;
    fg_data_report r;
    double t1 = fg_time_sec();
    /* 1. JSONL: one 256 MiB line. At most 1 MiB of it is held; reading stops after 64 MiB. */
    const char *p1[1] = {jl};
    fg_status st = fg_data_clean_run(&c, p1, 1, &r);
    FG_CHECK(st == FG_OK && r.docs_read == 1 && fg_data_report_rejects_for(&r, "file_too_large") == 1,
             "jsonl bomb: one file_too_large reject (%s)", fg_last_error());
    FG_CHECK(r.input_bytes < (uint64_t)file_size(jl), "the rest of the compressed file is not read (%llu of %lld)",
             (unsigned long long)r.input_bytes, file_size(jl));
    FG_CHECK(find_reject(rej, "file_too_large", line, sizeof line) && strstr(line, "bomb.jsonl.gz") &&
                 strstr(line, "67108864 decoded bytes") && strstr(line, "max_file_bytes"),
             "reason names the file and the limit: %.300s", line);
    FG_CHECK(file_size(rej) > 0 && file_size(rej) < 16384, "rejects file %lld bytes (an excerpt, not 256 MiB)",
             file_size(rej));
    fg_data_report_free(&r);
    /* 2. Text: one document; reading stops just past max_doc_bytes. */
    const char *p2[1] = {txt};
    st = fg_data_clean_run(&c, p2, 1, &r);
    FG_CHECK(st == FG_OK && r.docs_read == 1 && fg_data_report_rejects_for(&r, "doc_too_large") == 1,
             "text bomb: doc_too_large (%s)", fg_last_error());
    FG_CHECK(find_reject(rej, "doc_too_large", line, sizeof line) && strstr(line, "more than 1048576 bytes") &&
                 strstr(line, "first 1024 bytes"),
             "doc_too_large reason: %.300s", line);
    FG_CHECK(file_size(rej) > 0 && file_size(rej) < 16384, "rejects file %lld bytes", file_size(rej));
    fg_data_report_free(&r);
    /* 3. zstd, same file limit. */
    size_t zn = (size_t)32 << 20;
    char *zdata = calloc(1, zn);
    FG_ASSERT(zdata);
    memcpy(zdata, "{\"text\":\"", 9);
    FG_CHECK(write_zst(zst, zdata, zn), "zstd bomb written");
    free(zdata);
    c.max_file_bytes = (uint64_t)8 << 20;
    const char *p3[1] = {zst};
    st = fg_data_clean_run(&c, p3, 1, &r);
    FG_CHECK(st == FG_OK && r.docs_read == 1 && fg_data_report_rejects_for(&r, "file_too_large") == 1,
             "zstd bomb: file_too_large");
    fg_data_report_free(&r);
    size_t peak_small = fg_mem_peak();
    /* fg_mem_peak is the process's high-water mark: these runs come first in main. Two
     * batches of documents (each at most an excerpt), 1 MiB line buffer, 1 MiB decode
     * buffer, dedup tables: a few MiB; the unbounded reader held 256 MiB here. */
    FG_CHECK(peak_small < ((size_t)12 << 20), "peak memory %zu bytes with 1 MiB documents", peak_small);
    /* 4. The defaults (32 MiB documents, 16 GiB files): the whole 256 MiB line is read past. */
    fg_data_clean_config_init(&c);
    c.rules = rules;
    c.out_path = out;
    c.rejects_path = rej;
    c.threads = 2;
    st = fg_data_clean_run(&c, p1, 1, &r);
    FG_CHECK(st == FG_OK && r.docs_read == 1 && fg_data_report_rejects_for(&r, "doc_too_large") == 1,
             "defaults: the 256 MiB line is doc_too_large");
    FG_CHECK(find_reject(rej, "doc_too_large", line, sizeof line) && strstr(line, "a line of 268435467 bytes"),
             "the line's length is reported: %.300s", line);
    FG_CHECK(file_size(rej) > 0 && file_size(rej) < 16384, "rejects file %lld bytes", file_size(rej));
    FG_CHECK(fg_mem_peak() < ((size_t)72 << 20), "peak memory %zu bytes with the default 32 MiB bound", fg_mem_peak());
    fg_data_report_free(&r);
    double t2 = fg_time_sec();
    printf("bomb: 4 runs %.2f s (writing %.2f s), peak memory %.1f MiB after the 1 MiB runs, %.1f MiB after all\n",
           t2 - t1, t1 - t0, (double)peak_small / 1048576.0, (double)fg_mem_peak() / 1048576.0);
    /* Generous against a loaded machine and ASan; unbounded it took minutes. */
    FG_CHECK(t2 - t1 < 20, "four bomb runs took %.1f s (writing the bombs %.1f s)", t2 - t1, t1 - t0);
}

/* A corrupt, truncated or mislabelled compressed input: the documents before the damage
 * are kept, the file and the byte offset are named, and fail_on_read_error makes it fatal. */
static void test_read_errors(fg_data_rules *rules)
{
    const char *tmp = fg_test_tmpdir();
    char dir[600], p[700], out[600], rej[600];
    snprintf(dir, sizeof dir, "%s/damaged", tmp);
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    FG_CHECK(system(p) == 0, "mkdir");
    /* 2000 distinct lines of varied text: about 400 KB, so a truncation falls mid-stream */
    size_t cap = (size_t)1 << 20, n = 0;
    char *jl = malloc(cap);
    FG_ASSERT(jl);
    uint64_t x = 12345;
    for (int i = 0; i < 2000; i++) {
        n += (size_t)snprintf(jl + n, cap - n, "{\"text\":\"record %d:", i);
        for (int w = 0; w < 30; w++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            n += (size_t)snprintf(jl + n, cap - n, " w%llx", (unsigned long long)(x >> 44));
        }
        n += (size_t)snprintf(jl + n, cap - n, ".\"}\n");
    }
    /* truncated gzip: the first 60% of a whole gzip file */
    char full[700];
    snprintf(full, sizeof full, "%s/full.jsonl.gz", tmp);
    gzFile g = gzopen(full, "wb");
    FG_ASSERT(g && gzwrite(g, jl, (unsigned)n) == (int)n && gzclose(g) == Z_OK);
    size_t gn = (size_t)file_size(full);
    char *gb = malloc(gn);
    FILE *f = fopen(full, "rb");
    FG_ASSERT(f && fread(gb, 1, gn, f) == gn);
    fclose(f);
    snprintf(p, sizeof p, "%s/a_truncated.jsonl.gz", dir);
    fg_test_write_file(p, gb, gn * 6 / 10);
    /* gzip followed by garbage */
    char *gg = malloc(gn + 5);
    memcpy(gg, gb, gn);
    memcpy(gg + gn, "junk!", 5);
    snprintf(p, sizeof p, "%s/b_trailing.jsonl.gz", dir);
    fg_test_write_file(p, gg, gn + 5);
    /* not gzip at all */
    snprintf(p, sizeof p, "%s/c_garbage.jsonl.gz", dir);
    fg_test_write_file(p, "this is not gzip data\n", 22);
    /* zstd with a flipped byte in the middle (the frame has a content checksum) */
    snprintf(p, sizeof p, "%s/d_corrupt.jsonl.zst", dir);
    FG_ASSERT(write_zst(p, jl, n));
    size_t zn = (size_t)file_size(p);
    char *zb = malloc(zn);
    f = fopen(p, "rb");
    FG_ASSERT(f && fread(zb, 1, zn, f) == zn);
    fclose(f);
    zb[zn / 2] ^= 0x5a;
    fg_test_write_file(p, zb, zn);
    /* truncated zstd */
    snprintf(p, sizeof p, "%s/e_truncated.jsonl.zst", dir);
    zb[zn / 2] ^= 0x5a;
    fg_test_write_file(p, zb, zn / 3);

    snprintf(out, sizeof out, "%s/damaged.jsonl", tmp);
    snprintf(rej, sizeof rej, "%s/damaged.rejects.jsonl", tmp);
    fg_data_clean_config c;
    fg_data_clean_config_init(&c);
    c.rules = rules;
    c.out_path = out;
    c.rejects_path = rej;
    c.threads = 2;
    c.dedup.exact = c.dedup.near = false;
    const char *paths[1] = {dir};
    fg_data_report r;
    fg_status st = fg_data_clean_run(&c, paths, 1, &r);
    FG_CHECK(st == FG_OK, "damaged inputs do not fail the run by default: %s", fg_last_error());
    FG_CHECK(fg_data_report_rejects_for(&r, "read_error") == 5, "one read_error per damaged file: %llu",
             (unsigned long long)fg_data_report_rejects_for(&r, "read_error"));
    FG_CHECK(r.read_error_files == 5, "5 files with read errors in the report: %llu",
             (unsigned long long)r.read_error_files);
    const char *e = r.read_errors ? r.read_errors : "";
    FG_CHECK(strstr(e, "a_truncated.jsonl.gz: byte ") && strstr(e, "gzip: unexpected end of file"),
             "truncated gzip named with its offset: %s", e);
    FG_CHECK(strstr(e, "b_trailing.jsonl.gz: byte ") && strstr(e, "garbage after the last gzip member"),
             "trailing garbage named");
    FG_CHECK(strstr(e, "c_garbage.jsonl.gz: byte 0: gzip: not gzip data"), "non-gzip bytes named: %s", e);
    FG_CHECK(strstr(e, "d_corrupt.jsonl.zst: byte ") && strstr(e, "zstd: "), "corrupt zstd named");
    FG_CHECK(strstr(e, "e_truncated.jsonl.zst: byte ") && strstr(e, "zstd: truncated"), "truncated zstd named");
    char want[700], line[2048];
    snprintf(want, sizeof want, "b_trailing.jsonl.gz: byte %zu: ", gn);
    FG_CHECK(strstr(e, want) != NULL, "the garbage starts at byte %zu: %s", gn, e);
    /* The whole trailing file's 2000 records and most of the truncated one's are kept. */
    FG_CHECK(r.docs_read >= 2000 + 1000 + 5 && r.docs_read == r.docs_kept + r.docs_rejected,
             "records before the damage read and accounted for: %llu", (unsigned long long)r.docs_read);
    FG_CHECK(find_reject(rej, "read_error", line, sizeof line) && strstr(line, "a_truncated.jsonl.gz") &&
                 strstr(line, "at byte "),
             "read_error reject says where: %.300s", line);
    char printed[8192] = "";
    FILE *mf = fmemopen(printed, sizeof printed - 1, "w");
    if (mf) {
        fg_data_report_print(mf, &r);
        fclose(mf);
    }
    FG_CHECK(strstr(printed, "read errors in 5 files") && strstr(printed, "c_garbage.jsonl.gz: byte 0"),
             "summary lists the read errors: %s", printed);
    fg_data_report_free(&r);
    /* fatal on request: the first damaged file stops the run, named with its offset */
    c.fail_on_read_error = true;
    st = fg_data_clean_run(&c, paths, 1, &r);
    FG_CHECK(st == FG_ERR_CORRUPT && strstr(fg_last_error(), "a_truncated.jsonl.gz") &&
                 strstr(fg_last_error(), "unexpected end of file (truncated stream) at byte "),
             "fail_on_read_error: status %d, '%s' (the error was met by the read-ahead thread)", st, fg_last_error());
    fg_data_report_free(&r);
    snprintf(p, sizeof p, "%s/c_garbage.jsonl.gz", dir);
    paths[0] = p;
    st = fg_data_clean_run(&c, paths, 1, &r);
    FG_CHECK(st == FG_ERR_CORRUPT && strstr(fg_last_error(), "not gzip data") &&
                 strstr(fg_last_error(), "at byte 0 of the file"),
             "garbage .gz fatal: '%s'", fg_last_error());
    fg_data_report_free(&r);
    free(jl);
    free(gb);
    free(gg);
    free(zb);
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
        test_bomb(rules); /* first: it checks the process's peak memory */
        test_read_errors(rules);
        test_web(rules);
        test_bad_input(rules);
    }
    test_cli();
    fg_data_rules_delete(rules);
    return fg_test_end();
}
