/* data.h: the `frugal clean` pipeline: streaming readers (text, HTML, JSONL, WARC/WET,
 * plain or .gz/.zst, files or directories), an editable rules file (regex substitutions,
 * line filters, document rejects, Unicode normalization, quality thresholds), Gopher/C4
 * style quality heuristics combined into one score, a hashed word + char n-gram linear
 * classifier or a small transformer (src/model's decoder over bytes) for the ambiguous
 * band, exact + MinHash/LSH dedup, and a JSONL writer.
 *
 * Usage:
 *   fg_data_rules *rules; fg_data_rules_load(&rules, "configs/clean_rules.conf");
 *   fg_data_clean_config cfg; fg_data_clean_config_init(&cfg);
 *   cfg.rules = rules; cfg.out_path = "kept.jsonl"; cfg.rejects_path = "rejects.jsonl";
 *   fg_data_report rep; fg_data_clean_run(&cfg, paths, n_paths, &rep);
 *   fg_data_report_print(stdout, &rep); fg_data_report_free(&rep);
 * Every input document ends up in the output or in the rejects file (with the rule
 * that rejected it); rep.docs_read == rep.docs_kept + sum(rep.rejects[i].count).
 * HTML pages (files and WARC responses) go through main-content extraction
 * (fg_data_html_extract) before the rules. Left out: perplexity filtering.
 */
#ifndef FRUGAL_DATA_H
#define FRUGAL_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- documents and readers ---- */
typedef enum fg_doc_format {
    FG_DOC_TEXT = 0, /* raw bytes are the text */
    FG_DOC_HTML = 1, /* raw bytes are an HTML page (charset may need conversion) */
    FG_DOC_JSON = 2, /* raw bytes are one JSON object with a "text" string field */
} fg_doc_format;

/* One document as it travels through the pipeline. The reader fills raw/format/source
 * (and reject when the record could not be read); fg_data_doc_decode fills text/meta. */
typedef struct fg_doc {
    fg_doc_format format;
    char *raw;             /* bytes as read (owned), raw_len bytes, NUL-terminated */
    size_t raw_len;        /* bytes */
    char *source;          /* "path:line" or "path#record" (owned) */
    char *charset;         /* declared charset (HTTP header / WARC), or NULL (owned) */
    char *meta;            /* other JSON members "k":v,... without braces, or NULL (owned) */
    char *text;            /* decoded UTF-8 text (owned; may be raw after a move), len bytes */
    size_t len;            /* bytes */
    const char *reject;    /* static rule name when already rejected, else NULL */
    char *detail;          /* human message for the reject (owned), or NULL */
    int label;             /* -1 unknown, 0 negative, 1 positive (from --eval-label field) */
    uint32_t utf8_repairs; /* invalid UTF-8 sequences replaced by U+FFFD */
} fg_doc;

void fg_doc_free(fg_doc *d); /* frees owned fields and zeroes *d; NULL-safe */

typedef struct fg_data_reader fg_data_reader;

/* Opens a reader over files and directories (walked recursively in sorted order; hidden
 * entries skipped). Formats come from the name after stripping .gz/.zst: .jsonl/.ndjson/
 * .json (JSON lines; a .json file holding one array is read as its elements), .html/.htm,
 * .warc/.wet/.wat (WARC records; also sniffed from a "WARC/" first line), .txt/.text/.md
 * (one document per file). Unknown extensions found in directories are skipped and
 * listed by fg_data_reader_skipped; named explicitly they are read as text.
 * Returns FG_OK, or FG_ERR_IO when a path does not exist. */
fg_status fg_data_reader_open(fg_data_reader **out, const char *const *paths, int n_paths);

/* What one input may cost, enforced while reading: a decompression bomb or a 2 GB line
 * stops at the limit, it is never held (or written to the rejects) whole. */
#define FG_DATA_EXCERPT_BYTES 1024 /* bytes of an oversized document kept in its reject */
#define FG_DATA_DEFAULT_MAX_FILE_BYTES ((uint64_t)16 << 30)
typedef struct fg_data_reader_limits {
    /* One document: a text/HTML file, a JSONL line, a WARC record, a .json file that is
     * loaded whole. A larger one becomes a doc_too_large document holding its first
     * FG_DATA_EXCERPT_BYTES bytes; at most this many bytes of it are ever in memory, the
     * rest is read past. Default 1 GiB (the clean pipeline passes its max_doc_bytes). */
    size_t max_doc_bytes;
    /* Decoded bytes of one .gz/.zst file: reading stops there, and the document in
     * flight (or, at a document boundary, an empty one) becomes file_too_large; the
     * file's later bytes are not read. Plain files are not limited (their size on disk
     * is the bound). Default FG_DATA_DEFAULT_MAX_FILE_BYTES, 16 GiB: above a Common
     * Crawl WARC file (about 1 GiB compressed, 4-5 GiB decoded). 0 means the default. */
    uint64_t max_file_bytes;
    /* A read_error (unreadable file, corrupt or truncated .gz/.zst, WARC payload cut by
     * the end of the file) makes fg_data_reader_next fail with FG_ERR_CORRUPT
     * (FG_ERR_IO for a file that cannot be opened) and the message naming the file,
     * the byte offset in the file and the decoder's message, instead of returning a
     * read_error document. Default false. */
    bool fail_on_read_error;
} fg_data_reader_limits;
void fg_data_reader_limits_init(fg_data_reader_limits *l);
/* Applies to the files opened from now on (call it right after fg_data_reader_open). */
void fg_data_reader_set_limits(fg_data_reader *r, const fg_data_reader_limits *l);

/* Next document into *doc (which the caller frees with fg_doc_free). *got = false at
 * the end. Damaged input (broken gzip, over-long lines, oversized documents or files)
 * becomes a document with doc->reject set rather than an error (unless
 * fail_on_read_error is set); a read error is also warned about on the log (file, byte
 * offset, decoder message) and listed by fg_data_reader_errors. */
fg_status fg_data_reader_next(fg_data_reader *r, fg_doc *doc, bool *got);
/* Read errors so far, one line per file: "path: byte N: message" ("" when none), and
 * the number of files with one. */
const char *fg_data_reader_errors(const fg_data_reader *r);
uint64_t fg_data_reader_error_files(const fg_data_reader *r);

/* Bytes of input consumed so far (compressed bytes for compressed files), and the total
 * on-disk size of all inputs (for a progress bar). */
uint64_t fg_data_reader_bytes_done(const fg_data_reader *r);
uint64_t fg_data_reader_bytes_total(const fg_data_reader *r);
/* Files skipped for an unknown type (newline-separated, "" when none). */
const char *fg_data_reader_skipped(const fg_data_reader *r);
/* Non-document WARC records skipped (request, metadata, warcinfo, non-HTML responses). */
uint64_t fg_data_reader_warc_skipped(const fg_data_reader *r);
/* Files to read (directories walked; skipped files not counted); 0 for NULL. */
int fg_data_reader_n_files(const fg_data_reader *r);
void fg_data_reader_close(fg_data_reader *r); /* NULL-safe */

/* Decodes doc->raw into doc->text: parses JSON (text field, other fields kept as meta;
 * label_field, when not NULL, sets doc->label from that field using positive_labels, a
 * comma-separated list), converts a declared non-UTF-8 charset (iconv), and repairs
 * invalid UTF-8 (each bad sequence -> U+FFFD, counted in doc->utf8_repairs). Broken JSON
 * sets doc->reject = "broken_json" and a detail "source:line:col: message". */
fg_status fg_data_doc_decode(fg_doc *doc, const char *label_field, const char *positive_labels);

/* ---- UTF-8 ---- */
/* true when s[0..n) is valid UTF-8 (no overlongs, surrogates or values > U+10FFFF). */
bool fg_data_utf8_valid(const char *s, size_t n);
/* Copies s[0..n) to a new buffer (*out, *out_len; caller fg_free's) replacing each invalid
 * sequence by U+FFFD; returns the number of replacements in *n_bad. */
fg_status fg_data_utf8_repair(const char *s, size_t n, char **out, size_t *out_len, uint32_t *n_bad);

/* ---- JSON output ---- */
/* Appends s[0..n) as a JSON string literal (quotes included) to f. */
void fg_data_json_write_string(FILE *f, const char *s, size_t n);

/* ---- HTML main-content extraction (src/data/extract.c, libxml2's HTML parser) ---- */
typedef struct fg_data_extracted {
    char *text;                           /* main content, paragraphs separated by '\n' (fg_malloc'd), or NULL */
    size_t len;                           /* bytes */
    char *title;                          /* <title> text (fg_malloc'd), or NULL */
    const char *reject;                   /* static reason when nothing could be extracted, else NULL */
    char detail[160];                     /* its explanation */
    uint64_t page_chars, container_chars; /* non-space text bytes of the page / the container chosen */
} fg_data_extracted;
/* Extracts the main content of html[0..len) (UTF-8; any <meta charset> is ignored, the
 * caller has decoded already). Navigation, headers/footers, comments, link lists, hidden
 * and non-text elements are left out (algorithm at the top of extract.c). Malformed
 * input never fails: a page with no content gets res->reject ("extract_no_html",
 * "extract_empty") and a detail. Returns FG_ERR_NOMEM only. Thread-safe. */
fg_status fg_data_html_extract(const char *html, size_t len, fg_data_extracted *res);
void fg_data_extracted_free(fg_data_extracted *r); /* NULL-safe; zeroes text and title */

/* ---- language identification (src/data/langid_cld2.cc, Debian's libcld2) ---- */
typedef struct fg_data_lang {
    char code[16]; /* ISO 639-1 where there is one ("en", "zh", "zh-Hant"), "und" when unknown */
    int percent;   /* share of the text in that language, 0..100 */
    bool reliable; /* cld2's own verdict */
} fg_data_lang;
/* Language of text[0..len) (valid UTF-8; the first 64 KiB are looked at). Thread-safe. */
void fg_data_langid(const char *text, size_t len, fg_data_lang *out);

/* ---- rules ---- */
typedef struct fg_data_rules fg_data_rules;

/* Parses a rules file (syntax in configs/clean_rules.conf and docs/DATA.md). Errors
 * are FG_ERR_FORMAT "path:line:col: problem" (regex errors give the pattern offset). */
fg_status fg_data_rules_load(fg_data_rules **out, const char *path);
/* Same from a string; name is used in messages. */
fg_status fg_data_rules_parse(fg_data_rules **out, const char *text, size_t len, const char *name);
void fg_data_rules_delete(fg_data_rules *r);

/* Per-thread scratch for applying rules and computing heuristics (buffers, PCRE2 match
 * data, hash tables). One per thread; never shared. */
typedef struct fg_data_scratch fg_data_scratch;
fg_data_scratch *fg_data_scratch_new(const fg_data_rules *r);
void fg_data_scratch_delete(fg_data_scratch *s);

/* Cleans text[0..len): substitutions in file order, then line filters, then Unicode
 * normalization, then trimming of blank-line runs. On success *out (len *out_len) points
 * into the scratch, valid until the next call with it. When a `reject` rule matches,
 * *reject_rule is its name (static until rules are deleted), otherwise NULL. line_drops,
 * when not NULL, has fg_data_rules_count(r) counters: lines dropped per rule index. */
fg_status fg_data_rules_apply(const fg_data_rules *r, fg_data_scratch *s, const char *text, size_t len,
                              const char **out, size_t *out_len, const char **reject_rule, uint64_t *line_drops);
int fg_data_rules_count(const fg_data_rules *r);
const char *fg_data_rules_name(const fg_data_rules *r, int i);
/* "repair" (default) or "reject": what to do with invalid UTF-8 (directive `utf8`). */
bool fg_data_rules_utf8_reject(const fg_data_rules *r);
/* Directive `compat datatrove` (the --profile datatrove rules): the quality heuristics
 * measure the text before the rules (datatrove runs its Gopher filters before C4's line
 * removal), count punctuation attached to a word as a token of its own in
 * min_alpha_words (as datatrove's word tokenizer splits it off), and count distinct stop
 * words (datatrove: stop_words & set(words)). */
bool fg_data_rules_compat_datatrove(const fg_data_rules *r);
/* Accept / reject thresholds on the quality score (directive `threshold`). */
void fg_data_rules_thresholds(const fg_data_rules *r, double *accept, double *reject);

/* ---- quality heuristics (Gopher / C4 / RefinedWeb style) ---- */
typedef enum fg_quality_id {
    FG_Q_MIN_WORDS,
    FG_Q_MAX_WORDS,
    FG_Q_MIN_MEAN_WORD_LEN,
    FG_Q_MAX_MEAN_WORD_LEN,
    FG_Q_MAX_SYMBOL_RATIO,
    FG_Q_MAX_BULLET_LINES,
    FG_Q_MAX_ELLIPSIS_LINES,
    FG_Q_MIN_ALPHA_WORDS,
    FG_Q_MAX_DUP_LINES,
    FG_Q_MAX_DUP_LINE_CHARS,
    FG_Q_MAX_TOP_2GRAM,
    FG_Q_MAX_TOP_3GRAM,
    FG_Q_MAX_TOP_4GRAM,
    FG_Q_MAX_DUP_5GRAM,
    FG_Q_MAX_DUP_6GRAM,
    FG_Q_MAX_DUP_7GRAM,
    FG_Q_MAX_DUP_8GRAM,
    FG_Q_MAX_DUP_9GRAM,
    FG_Q_MAX_DUP_10GRAM,
    FG_Q_MIN_STOPWORDS,
    FG_Q_MAX_DUP_PARAS,      /* Gopher: fraction of paragraphs ("\n\n"-separated) that repeat one before */
    FG_Q_MAX_DUP_PARA_CHARS, /* Gopher: characters in repeated paragraphs / characters of the text */
    FG_Q_COUNT
} fg_quality_id;

/* Measured values, indexed by fg_quality_id (counts, ratios in [0,1], bytes/word). */
typedef struct fg_quality_stats {
    double v[FG_Q_COUNT];
    uint64_t n_words, n_lines;
} fg_quality_stats;

const char *fg_data_quality_name(fg_quality_id q); /* "min_words", ... */
/* Measures text[0..len) (cleaned UTF-8). Words split on whitespace; each CJK ideograph
 * or kana counts as one word. Stop words come from the rules' `stopwords` lists (the
 * best list counts). */
void fg_data_quality_measure(const fg_data_rules *r, fg_data_scratch *s, const char *text, size_t len,
                             fg_quality_stats *st);
/* Score in [0,1]: 1 - sum_i weight_i * penalty_i, where penalty_i is 0 inside the soft
 * limit, 1 beyond the hard limit, linear between. *worst (may be NULL) gets the
 * heuristic with the largest weighted penalty, or -1 when none is violated. */
double fg_data_quality_score(const fg_data_rules *r, const fg_quality_stats *st, int *worst);

/* ---- classifier: hashed word 1..N-gram + char n-gram logistic regression ---- */
typedef struct fg_data_classifier_config {
    int log2_buckets; /* hash space 2^k weights (default 20) */
    int word_ngrams;  /* 1 or 2 (default 2) */
    int char_min;     /* char n-gram lengths in bytes (default 3..5); 0 disables */
    int char_max;
    int epochs;    /* default 8 */
    float lr;      /* SGD step (default 0.5), decayed linearly to 0 */
    uint64_t seed; /* shuffling */
} fg_data_classifier_config;
void fg_data_classifier_config_init(fg_data_classifier_config *c);

typedef struct fg_data_classifier fg_data_classifier;
/* Trains on n texts with labels y[i] in {0,1}. Returns NULL with the last error set. */
fg_data_classifier *fg_data_classifier_train(const fg_data_classifier_config *c, const char *const *texts,
                                             const size_t *lens, const int *y, size_t n);
/* P(label 1 | text): the "keep" probability. Thread-safe (no scratch written). */
float fg_data_classifier_predict(const fg_data_classifier *m, const char *text, size_t len);
/* File: "FGCLS001", u32 version 1, u32 log2_buckets, word_ngrams, char_min, char_max,
 * f32 bias, f32 w[2^log2_buckets], u32 crc32 of everything before it. */
fg_status fg_data_classifier_save(const fg_data_classifier *m, const char *path);
fg_data_classifier *fg_data_classifier_load(const char *path);
void fg_data_classifier_delete(fg_data_classifier *m);

/* Training from a labeled file (src/data/classify_train.c): JSONL read with
 * fg_data_reader (the text plus label_field, compared with positive_labels), or with
 * tsv LABEL<TAB>TEXT lines; texts cleaned by rules first when rules != NULL; a
 * deterministic held-out split (hash of the example index and model.seed). Lines that
 * cannot be used are skipped, counted, and the first five named in a warning. */
typedef struct fg_data_classifier_train_config {
    fg_data_classifier_config model;
    const char *label_field;     /* JSONL label member (default "label") */
    const char *positive_labels; /* comma-separated values meaning keep (default "1,true,keep,good,ham,pos") */
    bool tsv, skip_header;       /* TSV input; skip its first line */
    const fg_data_rules *rules;  /* NULL: texts used raw */
    double test_frac;            /* held-out fraction in [0, 1) (default 0.2) */
} fg_data_classifier_train_config;
void fg_data_classifier_train_config_init(fg_data_classifier_train_config *c);

typedef struct fg_data_classifier_score {
    size_t n, correct, tp, fp, fn; /* at P(keep) >= 0.5 */
} fg_data_classifier_score;

typedef struct fg_data_classifier_train_report {
    size_t examples, positive;
    uint64_t skipped;                         /* lines without a usable label or text */
    fg_data_classifier_score train, held_out; /* held_out.n == 0 when test_frac is 0 */
    double seconds;                           /* training time */
} fg_data_classifier_train_report;

/* Reads path, trains, scores; *out gets the classifier (fg_data_classifier_delete it).
 * FG_ERR_IO / FG_ERR_FORMAT naming the file, FG_ERR_INVALID for a bad config or no
 * examples. */
fg_status fg_data_classifier_train_file(const fg_data_classifier_train_config *c, const char *path,
                                        fg_data_classifier **out, fg_data_classifier_train_report *rep);

/* ---- transformer classifier (src/data/classify_tf.c): Frugal's own decoder (src/model)
 * over the bytes of the text, for the ambiguous band ----
 * The input is the first max_len bytes of the cleaned text followed by a separator token;
 * the model's next-token logits at the separator, read over two label tokens (KEEP,
 * DROP), give P(keep) = sigmoid(l_KEEP - l_DROP): the LM head restricted to two rows is
 * the classification head. Training optionally starts with lm_epochs of next-byte
 * prediction on the training texts (a little pretraining), then epochs of the label
 * objective (cross-entropy at the separator only; every other target is ignored). */
typedef struct fg_data_tfcls_config {
    int layout;    /* fg_layout of src/model: 0 llama (default), 1 gpt2 */
    int n_layer;   /* default 2 */
    int n_head;    /* default 4 */
    int d_model;   /* default 64 */
    int max_len;   /* bytes of text read (default 256); the model's context is max_len + 1 */
    int epochs;    /* label epochs (default 12) */
    int lm_epochs; /* next-byte epochs before them (default 3; 0: none) */
    int batch;     /* sequences per step (default 16) */
    float lr;      /* AdamW peak (default 2e-3), warmup 5 %, cosine to lr/10 */
    uint64_t seed; /* init and shuffling */
} fg_data_tfcls_config;
void fg_data_tfcls_config_init(fg_data_tfcls_config *c);

typedef struct fg_data_tfcls fg_data_tfcls;         /* the weights and shape; read-only once built */
typedef struct fg_data_tfcls_ctx fg_data_tfcls_ctx; /* a model instance for one thread */
/* Trains on n texts with labels y[i] in {0,1} (the kernels' threads). NULL with the last
 * error set (bad config, no examples, memory). */
fg_data_tfcls *fg_data_tfcls_train(const fg_data_tfcls_config *c, const char *const *texts, const size_t *lens,
                                   const int *y, size_t n);
/* A per-thread instance (activations for one sequence). NULL with the last error set. */
fg_data_tfcls_ctx *fg_data_tfcls_ctx_new(const fg_data_tfcls *m);
void fg_data_tfcls_ctx_delete(fg_data_tfcls_ctx *x); /* NULL-safe */
/* P(keep | text) on one thread: the kernels' nested parallelism is turned off for the
 * call, so one pipeline thread costs one core. */
float fg_data_tfcls_predict(fg_data_tfcls_ctx *x, const char *text, size_t len);
/* File: "FGTFC001", u32 version 1, u32 layout, n_layer, n_head, d_model, d_ff, max_len,
 * vocab, u64 n_params, f32 params[n_params] (src/model's flat layout), u32 crc32 of
 * everything before it. Load errors name the file, the byte offset and the problem. */
fg_status fg_data_tfcls_save(const fg_data_tfcls *m, const char *path);
fg_data_tfcls *fg_data_tfcls_load(const char *path);
void fg_data_tfcls_delete(fg_data_tfcls *m);                                    /* NULL-safe */
size_t fg_data_tfcls_num_params(const fg_data_tfcls *m);                        /* weights in the model */
void fg_data_tfcls_get_config(const fg_data_tfcls *m, fg_data_tfcls_config *c); /* its shape (training fields 0) */

/* Which classifier a file holds, from its first 8 bytes: 1 linear (FGCLS001), 2
 * transformer (FGTFC001); 0 with an error naming the file when it is neither or cannot
 * be read. */
int fg_data_classifier_file_kind(const char *path);

/* The transformer twin of fg_data_classifier_train_file: the same reading, cleaning and
 * held-out split (c->model.seed, c->test_frac), then fg_data_tfcls_train. */
fg_status fg_data_tfcls_train_file(const fg_data_classifier_train_config *c, const fg_data_tfcls_config *tc,
                                   const char *path, fg_data_tfcls **out, fg_data_classifier_train_report *rep);

/* ---- dedup: exact (hash of normalized text) + MinHash/LSH near-duplicates ---- */
typedef struct fg_data_dedup_config {
    bool exact, near;
    double jaccard;   /* near-duplicate threshold (default 0.8) */
    int n_perm;       /* MinHash permutations (default 128); bands x rows chosen from jaccard */
    int shingle;      /* words per shingle (default 5) */
    size_t max_bytes; /* memory bound for both tables (default 256 MiB) */
    uint64_t seed;
} fg_data_dedup_config;
void fg_data_dedup_config_init(fg_data_dedup_config *c);

typedef struct fg_data_dedup fg_data_dedup;
fg_data_dedup *fg_data_dedup_new(const fg_data_dedup_config *c);
void fg_data_dedup_delete(fg_data_dedup *d);
int fg_data_dedup_n_perm(const fg_data_dedup *d);
/* Hash of text normalized (ASCII lower-cased, punctuation dropped, whitespace runs
 * collapsed). Thread-safe. */
uint64_t fg_data_dedup_exact_hash(const char *text, size_t len);
/* MinHash signature of the text's word shingles into sig[n_perm]. Thread-safe. */
void fg_data_dedup_minhash(const fg_data_dedup *d, const char *text, size_t len, uint32_t *sig);
/* Checks then inserts (call in document order for deterministic output): returns 0 for
 * a new document, 1 for an exact duplicate, 2 for a near duplicate. sig may be NULL
 * when near dedup is off. When the tables reach max_bytes, later documents are still
 * checked but no longer inserted (counted by fg_data_dedup_not_indexed). */
int fg_data_dedup_check(fg_data_dedup *d, uint64_t exact_hash, const uint32_t *sig);
size_t fg_data_dedup_bytes(const fg_data_dedup *d); /* bytes held by the tables */
uint64_t fg_data_dedup_not_indexed(const fg_data_dedup *d);
void fg_data_dedup_bands(const fg_data_dedup *d, int *bands, int *rows);

/* ---- the pipeline ---- */
typedef enum fg_classify_mode {
    FG_CLASSIFY_AMBIGUOUS = 0, /* only documents between the reject and accept scores */
    FG_CLASSIFY_ALL = 1,       /* every document (heuristic score not used) */
    FG_CLASSIFY_NONE = 2,      /* no classifier: ambiguous documents kept when score >= midpoint */
} fg_classify_mode;

typedef enum fg_extract_mode {
    FG_EXTRACT_DOM = 0,  /* fg_data_html_extract, then the rules on its text */
    FG_EXTRACT_NONE = 1, /* the page's HTML goes to the rules as it is (regex tag stripping) */
} fg_extract_mode;

typedef struct fg_data_clean_config {
    const fg_data_rules *rules;           /* required */
    const fg_data_classifier *classifier; /* NULL: FG_CLASSIFY_NONE behaviour (unless tf_classifier) */
    const fg_data_tfcls *tf_classifier;   /* transformer classifier; used instead of classifier when set */
    fg_classify_mode classify;
    float classifier_threshold; /* keep when P(keep) >= this (default 0.5) */
    fg_data_dedup_config dedup;
    const char *out_path;        /* kept documents (JSONL; .gz/.zst not supported); NULL: none */
    const char *rejects_path;    /* rejected documents with "reject" and "detail"; NULL: none */
    const char *label_field;     /* optional: metadata field holding a gold label */
    const char *positive_labels; /* comma-separated values meaning "keep" (default "1,true,keep,good,ham,pos") */
    int threads;                 /* <= 0: all cores */
    int batch_docs;              /* documents per parallel batch (default 512) */
    size_t batch_bytes;          /* raw bytes per batch (default 32 MiB) */
    size_t max_doc_bytes;        /* larger documents are rejected as doc_too_large, bounded while
                                    reading (fg_data_reader_limits; default 32 MiB) */
    uint64_t max_file_bytes;     /* decoded bytes per .gz/.zst input, then file_too_large
                                    (fg_data_reader_limits; default 16 GiB) */
    bool fail_on_read_error;     /* a corrupt/truncated/unreadable input fails the run (FG_ERR_CORRUPT
                                    or FG_ERR_IO naming file and byte) instead of a read_error reject */
    bool progress;               /* progress bar on stderr (MB of input on disk, rate, ETA) */
    fg_extract_mode extract;     /* HTML pages: DOM main-content extraction (default) or rules only */
    bool langid;                 /* language of each cleaned text in "lang"/"lang_pct" (default true) */
} fg_data_clean_config;
void fg_data_clean_config_init(fg_data_clean_config *c);

typedef struct fg_data_reject_count {
    const char *name; /* rule name (static or owned by the rules) */
    uint64_t count;
} fg_data_reject_count;

typedef struct fg_data_report {
    uint64_t docs_read, bytes_read; /* bytes: decoded document bytes before cleaning */
    uint64_t input_bytes;           /* bytes on disk (compressed where compressed) */
    uint64_t docs_kept, bytes_kept; /* bytes: cleaned text written */
    uint64_t docs_rejected;
    uint64_t sent_to_classifier, classifier_kept, classifier_rejected;
    uint64_t accepted_by_score, rejected_by_score;
    uint64_t exact_dups, near_dups;
    uint64_t utf8_repaired_docs, utf8_repairs;
    uint64_t warc_records_skipped;
    uint64_t dedup_not_indexed;
    size_t dedup_bytes;    /* memory held by dedup tables at the end */
    size_t peak_mem_bytes; /* fg_mem_peak() at the end */
    int dedup_bands, dedup_rows;
    int n_rejects;
    fg_data_reject_count *rejects; /* per rule (owned array) */
    int n_line_rules;
    fg_data_reject_count *line_drops;                /* lines dropped per line rule (owned array) */
    uint64_t labeled, label_correct, tp, fp, tn, fn; /* when label_field is set */
    double seconds;                                  /* wall clock */
    double cpu_seconds;                              /* user + system CPU time of the process during the run */
    int threads;
    char *skipped_files; /* owned, newline-separated */
    char *read_errors;   /* owned, "path: byte N: message" per line; "" when none */
    uint64_t read_error_files;
} fg_data_report;

/* Runs the whole pipeline over the inputs; fills *rep (caller frees it with
 * fg_data_report_free). Output order equals input order for any thread count. */
fg_status fg_data_clean_run(const fg_data_clean_config *c, const char *const *paths, int n_paths, fg_data_report *rep);
void fg_data_report_print(FILE *f, const fg_data_report *rep);
fg_status fg_data_report_write_json(const fg_data_report *rep, const char *path);
uint64_t fg_data_report_rejects_for(const fg_data_report *rep, const char *name); /* 0 when absent */
void fg_data_report_free(fg_data_report *rep);

/* ---- loss-driven augmentation (augment.c; docs/TRAINING.md "Loss-driven augmentation") ----
 * Windows the model finds hard (per-window loss in the top `frac` of recent windows) are
 * kept in a pool and revisited with a transform that moves from word level (token
 * dropout, word swaps, span masking) to syntax level (sentence or clause reordering) as
 * training goes on. Transforms work on token ids through a class per token (built from
 * each token's text), so they serve any tokenizer. Deterministic for a seed. */
enum {
    FG_AUG_SPACE = 1,      /* the token's text starts with a space: a word starts here */
    FG_AUG_WORD = 2,       /* letters, digits, ' or - after that optional space (or a lone space) */
    FG_AUG_SENT_END = 4,   /* its text ends (before trailing spaces) with . ! or ? */
    FG_AUG_CLAUSE_END = 8, /* ... with , ; or : */
    FG_AUG_NEWLINE = 16    /* holds a line break */
};
uint8_t fg_aug_token_class(const uint8_t *text, size_t len);

typedef enum {
    FG_AUG_NONE = 0,      /* revisited as it is (nothing to transform) */
    FG_AUG_DROP = 1,      /* token dropout: input tokens blanked (mask token) at rate drop */
    FG_AUG_SWAP = 2,      /* adjacent plain words swapped at rate swap per word: a permutation */
    FG_AUG_MASK = 3,      /* input spans of `span` tokens blanked, about `mask` of the tokens */
    FG_AUG_SENTENCES = 4, /* the window's whole sentences in a shuffled order: a permutation */
    FG_AUG_CLAUSES = 5,   /* two adjacent clauses of one sentence exchanged: a permutation */
    FG_AUG_KINDS = 6
} fg_aug_kind;

typedef struct fg_aug_config {
    float frac;             /* hard = relative loss in the top frac of the last 256 fresh windows */
    float rate;             /* share of rows per micro-batch drawn from the hard pool */
    int pool;               /* hard windows remembered */
    int max_visits;         /* revisits before a window leaves the pool */
    float drop, swap, mask; /* word-level rates (0 turns one off) */
    int span;               /* span masking: tokens per span */
    float syntax_start;     /* training progress (0..1) where syntax-level transforms start */
    float syntax_end;       /* ... and where they are all there is (linear in between) */
    int32_t mask_token;     /* id that blanks an input token */
    uint64_t seed;
} fg_aug_config;

/* Share of revisits that go to syntax level at progress p (0 at the start, 1 at the end). */
float fg_aug_syntax_share(const fg_aug_config *c, float progress);

/* Transforms of one window w[0..n) (n = T + 1 tokens). The permutations write out[i] =
 * w[perm[i]] (perm may be NULL) and return how many units moved (0: nothing to move, out
 * = w); fg_aug_unpermute undoes them. Word-level blanking writes the corrupted copy and
 * returns how many tokens it blanked; it is not reversible from out alone (the trainer
 * keeps the clean targets). */
int fg_aug_word_swap(const uint8_t *cls, const int32_t *w, int n, float rate, fg_rng *rng, int32_t *out, int32_t *perm);
int fg_aug_reorder(const uint8_t *cls, const int32_t *w, int n, int clauses, fg_rng *rng, int32_t *out, int32_t *perm);
int fg_aug_blank(const int32_t *w, int n, float rate, int span, int32_t mask, fg_rng *rng, int32_t *out);
void fg_aug_unpermute(const int32_t *out, const int32_t *perm, int n, int32_t *orig);

/* One revisit: picks the level by progress and a transform within it, and writes the
 * training row: permutations give inputs/targets of the permuted window; blanking
 * corrupts the inputs only (targets stay the clean next tokens: the model learns to
 * predict through the gaps). w holds T + 1 tokens. Returns the kind applied. */
fg_aug_kind fg_aug_apply(const fg_aug_config *c, const uint8_t *cls, int n_cls, float progress, fg_rng *rng,
                         const int32_t *w, int T, int32_t *inputs, int32_t *targets);

/* Per-row mean cross-entropy of [B,T] rows from fp32 logits [B,T,Vp] (first V columns). */
void fg_aug_row_losses(const float *logits, const int32_t *targets, int B, int T, int V, int Vp, float *out);

/* The hard-window pool: windows named by an opaque 64-bit source (the loader's shard and
 * start), the recent-loss ring its threshold comes from, its own RNG, counters. */
typedef struct fg_aug_entry {
    uint64_t src;
    float loss;
    int visits;
} fg_aug_entry;
#define FG_AUG_RING 256
typedef struct fg_aug_state {
    fg_aug_config c;
    uint8_t *cls; /* [n_cls] token classes (owned) */
    int n_cls;
    fg_rng rng;
    float ring[FG_AUG_RING]; /* losses of recent fresh windows */
    int ring_n, ring_head;
    fg_aug_entry *pool; /* [c.pool] */
    int n_pool;
    uint64_t revisits, by_kind[FG_AUG_KINDS];
} fg_aug_state;

fg_status fg_aug_init(fg_aug_state *s, const fg_aug_config *c, const uint8_t *cls, int n_cls);
void fg_aug_free(fg_aug_state *s);
/* With probability rate (and a non-empty pool): 1 and a hard window's source in *src. */
int fg_aug_pick(fg_aug_state *s, uint64_t *src);
/* A row's loss, taken relative to `level` (the mean loss of the rows read with it; 0:
 * absolute): a threshold from absolute losses would lag a falling loss and call nothing
 * hard. Fresh rows feed the threshold and enter the pool when hard (the pool keeps the
 * hardest); a revisited row's entry takes the new value, and leaves after max_visits or
 * once below the threshold. */
void fg_aug_observe(fg_aug_state *s, uint64_t src, int revisited, float loss, float level);
float fg_aug_threshold(const fg_aug_state *s); /* +inf until 32 fresh losses are in */
/* The state as a JSON object (fg_malloc'd text) and back: a checkpoint keeps it. */
char *fg_aug_save(const fg_aug_state *s);
fg_status fg_aug_restore(fg_aug_state *s, const char *json_text, const char *where);

#ifdef __cplusplus
}
#endif
#endif
