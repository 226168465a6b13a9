/* cmd_tokenize.c: `frugal tokenize train | encode | decode`: trains a byte-level BPE
 * vocabulary on the documents fg_data_reader finds (files, directories, JSONL), encodes
 * them into token shards with all cores (documents separated by <|endoftext|>), and
 * decodes shards back to text. Parsing, batching and reporting only; the work is in
 * src/tok and src/data. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "frugal/data.h"
#include "frugal/shard.h"
#include "frugal/tok.h"

#define PATH 4096
#define MAX_SPECIALS 64

/* ---- options: one struct, one table per subcommand ---- */
typedef struct tok_opts {
    char tokenizer[PATH], out[PATH], field[128], allowed_special[4096];
    int pattern; /* index into patterns[] */
    int vocab_size, min_frequency, threads;
    long shard_tokens;
    double val_frac;
    int no_eot, print;
    fg_cli_reader_opts lim; /* the reader's limits */
} tok_opts;

static const char *const patterns[] = {"gpt2", "cl100k", NULL};

#define F(field) FG_OPT_FIELD(tok_opts, field)
/* The reader's options (and threads), the same for train and encode: one table that
 * both parse next to their own, with the reader's limits (fg_cli_reader_table). */
static const fg_opt input_opts[] = {
    {"field", FG_OPT_STR, F(field), .help = "JSONL member holding the text"},
    {"threads", FG_OPT_INT, F(threads), .min = 0, .max = 4096, .help = "0: all cores"},
};
static const fg_opt train_opts[] = {
    {"out", FG_OPT_STR, F(out), .help = "tokenizer.json to write (required)"},
    {"vocab_size", FG_OPT_INT, F(vocab_size), .min = 257, .max = 1 << 24, .help = "ids in all, specials included"},
    {"min_frequency", FG_OPT_INT, F(min_frequency), .min = 0, .max = FG_OPT_INF,
     .help = "pairs seen fewer times are never merged"},
    {"pattern", FG_OPT_ENUM, F(pattern), .choices = patterns, .help = "pre-tokenization regex"},
};
static const fg_opt encode_opts[] = {
    {"tokenizer", FG_OPT_STR, F(tokenizer), .help = "tokenizer.json, a GPT-2 directory or \"byte\" (required)"},
    {"out", FG_OPT_STR, F(out), .help = "FILE.bin (one shard) or DIR (shard_NNNNNN.bin)"},
    {"print", FG_OPT_BOOL, F(print), .help = "print the ids instead, one line per document"},
    {"shard_tokens", FG_OPT_LONG, F(shard_tokens), .min = 1, .max = 1e12, .help = "tokens per shard in DIR"},
    {"val_frac", FG_OPT_DOUBLE, F(val_frac), .min = 0, .max = 0.999,
     .help = "last fraction of each batch's tokens to val_*.bin / *_val.bin"},
    {"no_eot", FG_OPT_BOOL, F(no_eot), .help = "no <|endoftext|> after each document"},
    {"allowed_special", FG_OPT_STR, F(allowed_special),
     .help = "special tokens read as their ids in the text: all, or a comma list (default: none, as plain text)"},
};
static const fg_opt decode_opts[] = {
    {"tokenizer", FG_OPT_STR, F(tokenizer), .help = "tokenizer.json, a GPT-2 directory or \"byte\" (required)"},
    {"out", FG_OPT_STR, F(out), .help = "text file to write (default stdout)"},
};
#undef F

static const char usage_text[] =
    "usage:\n"
    "  frugal tokenize train  --out tokenizer.json [--vocab-size 32768] [--special TEXT]... [options] INPUT...\n"
    "  frugal tokenize encode --tokenizer T (--out DIR|FILE.bin | --print) [options] INPUT...\n"
    "  frugal tokenize decode --tokenizer T [--out FILE] SHARD.bin\n"
    "INPUT: files or directories read by the clean pipeline's reader: .txt/.md (and any file named\n"
    "explicitly) one document each; .jsonl/.json one document per line (its --field member); .html,\n"
    ".warc/.wet; any of them .gz/.zst. Directories are walked in sorted order; files of other types\n"
    "in them are skipped. A record that cannot be read (broken JSON, a lone surrogate, a truncated\n"
    "gzip) is skipped and reported with its file:line; the rest is encoded.\n"
    "T: tokenizer.json, a GPT-2 directory (encoder.json + vocab.bpe) or \"byte\".\n";

static void tokenize_usage(FILE *f)
{
    fputs(usage_text, f);
    fprintf(f, "train options:\n");
    fprintf(f, "  --special TEXT  a special token (repeatable; <|endoftext|> is always one)\n");
    fg_opts_print_help(f, train_opts, FG_OPT_COUNT(train_opts), NULL);
    fprintf(f, "encode options:\n");
    fg_opts_print_help(f, encode_opts, FG_OPT_COUNT(encode_opts), NULL);
    fprintf(f, "decode options:\n");
    fg_opts_print_help(f, decode_opts, FG_OPT_COUNT(decode_opts), NULL);
    fprintf(f, "train and encode options:\n");
    fg_opts_print_help(f, input_opts, FG_OPT_COUNT(input_opts), NULL);
    fg_opt_table lim = fg_cli_reader_table(NULL);
    fg_opts_print_help(f, lim.opts, lim.n, NULL);
}

static void opts_default(tok_opts *o)
{
    memset(o, 0, sizeof *o);
    o->vocab_size = 32768;
    o->min_frequency = 2;
    snprintf(o->field, sizeof o->field, "text");
    o->shard_tokens = 100000000L;
    fg_data_reader_limits l;
    fg_data_reader_limits_init(&l);
    fg_cli_reader_opts_init(&o->lim, l.max_doc_bytes, l.max_file_bytes, l.fail_on_read_error);
}

/* Opens the reader over the positional inputs with the limits the flags set. */
static fg_status open_reader(fg_data_reader **rd, const tok_opts *o, const char **pos, int n_pos)
{
    fg_status st = fg_data_reader_open(rd, pos, n_pos);
    if (st != FG_OK)
        return st;
    fg_data_reader_limits l;
    fg_data_reader_limits_init(&l);
    fg_cli_reader_opts_apply(&o->lim, &l.max_doc_bytes, &l.max_file_bytes, &l.fail_on_read_error);
    fg_data_reader_set_limits(*rd, &l);
    return FG_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* ---- a batch of documents (owned texts) ---- */
typedef struct docs {
    char **text;
    size_t *len;
    size_t n, cap;
    size_t bytes;
} docs;

static fg_status docs_add(docs *d, char *text, size_t len)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        char **t = fg_realloc(d->text, cap * sizeof *t);
        if (t)
            d->text = t;
        size_t *l = fg_realloc(d->len, cap * sizeof *l);
        if (l)
            d->len = l;
        if (!t || !l)
            return FG_ERR_NOMEM;
        d->cap = cap;
    }
    d->text[d->n] = text;
    d->len[d->n++] = len;
    d->bytes += len;
    return FG_OK;
}

static void docs_clear(docs *d)
{
    for (size_t i = 0; i < d->n; i++)
        fg_free(d->text[i]);
    d->n = d->bytes = 0;
}

static void docs_free(docs *d)
{
    docs_clear(d);
    fg_free(d->text);
    fg_free(d->len);
    memset(d, 0, sizeof *d);
}

/* ---- reading: fg_data_reader, one document at a time ---- */
typedef struct input {
    fg_data_reader *rd;
    const char *field;
    const char *cmd;
    uint64_t docs, rejected;
} input;

#define REPORT_REJECTS 10

/* A member other than "text" of a JSON record (fg_data_doc_decode reads "text"). */
static fg_status json_field(fg_doc *d, const char *field)
{
    json_error_t err;
    json_t *o = json_loadb(d->raw, d->raw_len, JSON_ALLOW_NUL, &err);
    json_t *t = o && json_is_object(o) ? json_object_get(o, field) : NULL;
    fg_status st = FG_OK;
    if (!o) {
        d->reject = "broken_json";
        fg_error(FG_ERR_FORMAT, "%s:%d: %s", d->source, err.column, err.text);
    } else if (!json_is_string(t)) {
        d->reject = "no_text_field";
        fg_error(FG_ERR_FORMAT, "%s: no string member \"%s\"", d->source, field);
    } else {
        size_t tl = json_string_length(t);
        d->text = fg_strndup(json_string_value(t), tl);
        if (!d->text)
            st = FG_ERR_NOMEM;
        else
            d->len = tl;
    }
    json_decref(o);
    return st;
}

/* Next usable document into *text (owned; caller frees) and *len; *got false at the
 * end. Records that cannot be read are counted, the first few reported on stderr. */
static fg_status input_next(input *in, char **text, size_t *len, bool *got)
{
    for (;;) {
        fg_doc d;
        fg_status st = fg_data_reader_next(in->rd, &d, got);
        if (st != FG_OK || !*got)
            return st;
        const char *why = NULL;
        char msg[1024] = "";
        if (d.reject) {
            why = d.detail ? d.detail : d.reject;
        } else if (d.format == FG_DOC_TEXT) {
            /* text is tokenized byte for byte: no UTF-8 repair, the tokenizer takes any bytes */
            *text = d.raw;
            *len = d.raw_len;
            d.raw = NULL;
            if (d.text == *text)
                d.text = NULL;
        } else if (d.format == FG_DOC_JSON && strcmp(in->field, "text") != 0) {
            fg_clear_error();
            if ((st = json_field(&d, in->field)) != FG_OK) {
                fg_doc_free(&d);
                return st;
            }
            if (d.reject)
                snprintf(msg, sizeof msg, "%s", fg_last_error());
        } else if ((st = fg_data_doc_decode(&d, NULL, NULL)) != FG_OK) {
            fg_doc_free(&d);
            return st;
        } else if (d.reject) {
            why = d.detail ? d.detail : d.reject;
        }
        if (!why && msg[0])
            why = msg;
        if (why) {
            /* the reader's details already start with file:line */
            bool named = d.source && !strncmp(why, d.source, strlen(d.source));
            if (++in->rejected <= REPORT_REJECTS)
                fprintf(stderr, "frugal %s: skipped %s%s%s\n", in->cmd, named ? "" : d.source, named ? "" : ": ", why);
            fg_doc_free(&d);
            continue;
        }
        if (d.format != FG_DOC_TEXT) {
            *text = d.text;
            *len = d.len;
            if (d.raw == d.text)
                d.raw = NULL;
            d.text = NULL;
        }
        fg_doc_free(&d);
        in->docs++;
        return FG_OK;
    }
}

static void input_report(const input *in)
{
    if (in->rejected > REPORT_REJECTS)
        fprintf(stderr, "frugal %s: ... %llu records skipped in all\n", in->cmd, (unsigned long long)in->rejected);
    const char *sk = fg_data_reader_skipped(in->rd);
    if (sk && sk[0])
        fprintf(stderr, "frugal %s: files of unknown type skipped:\n%s\n", in->cmd, sk);
}

/* ---- train ---- */

/* --special may repeat, which an option table does not do: it is taken out of argv
 * first (into specials) and the rest goes through the table. */
static int take_specials(int *argc, char **argv, const char **specials, int *n)
{
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "--"))
            break;
        if (!strncmp(a, "--special=", 10))
            v = a + 10;
        else if (!strcmp(a, "--special")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "frugal tokenize train: error: --special: missing value\n");
                return 2;
            }
            v = argv[++i];
        }
        if (!v) {
            argv[w++] = argv[i];
            continue;
        }
        if (*n == MAX_SPECIALS) {
            fprintf(stderr, "frugal tokenize train: error: --special: at most %d special tokens\n", MAX_SPECIALS);
            return 2;
        }
        specials[(*n)++] = v;
    }
    for (int i = w; i < *argc; i++) /* whatever followed a "--" */
        argv[w++] = argv[i];
    *argc = w;
    return -1;
}

/* Parses a train or encode command line (its own table, input_opts, the reader's
 * limits) into *o, from
 * the defaults; positionals go to a->pos, allocated here. Returns -1 when the command
 * goes on (the caller frees a->pos), else its exit code (a->pos already freed). */
static int parse_sub(const char *cmd, const fg_opt *opts, int n_opts, int argc, char **argv, tok_opts *o,
                     fg_opt_args *a)
{
    tok_opts def;
    opts_default(o);
    def = *o;
    *a = (fg_opt_args){.pos = fg_calloc((size_t)argc + 1, sizeof *a->pos), .max_pos = argc};
    if (!a->pos)
        return fg_cli_fail(cmd, FG_ERR_NOMEM, NULL);
    fg_opt_table t[] = {{opts, n_opts, o}, {input_opts, FG_OPT_COUNT(input_opts), o}, fg_cli_reader_table(&o->lim)};
    const void *defs[] = {&def, &def, &def.lim};
    fg_cli_spec spec = {cmd, usage_text, t, defs, 3, (const char *const[]){"-o", "--out", NULL}};
    int rc = fg_cli_parse(&spec, argc, argv, a);
    if (rc >= 0)
        fg_free(a->pos);
    return rc;
}

static int cmd_train(int argc, char **argv)
{
    const char *specials[MAX_SPECIALS + 1];
    int n_specials = 0;
    int rc = take_specials(&argc, argv, specials + 1, &n_specials);
    if (rc >= 0)
        return rc;
    tok_opts o;
    fg_opt_args a;
    if ((rc = parse_sub("tokenize train", train_opts, FG_OPT_COUNT(train_opts), argc, argv, &o, &a)) >= 0)
        return rc;
    const char **pos = a.pos;
    if (!o.out[0] || a.n_pos == 0) {
        rc = fg_cli_fail("tokenize train", fg_error(FG_ERR_INVALID, "--out FILE and at least one INPUT are required"),
                         "frugal tokenize --help");
        goto out;
    }
    const char *outs[] = {o.out};
    fg_status st = fg_cli_check_outputs(outs, 1, pos, a.n_pos, false);
    if (st != FG_OK) {
        rc = fg_cli_fail("tokenize train", st, NULL);
        goto out;
    }
    fg_tok_train_opts to;
    fg_tok_train_opts_default(&to);
    to.vocab_size = o.vocab_size;
    to.min_frequency = o.min_frequency;
    to.threads = o.threads;
    to.progress = true;
    to.pattern = o.pattern == 1 ? FG_TOK_PATTERN_CL100K : FG_TOK_PATTERN_GPT2;
    specials[0] = "<|endoftext|>";
    int ns = 1;
    for (int i = 1; i <= n_specials; i++)
        if (strcmp(specials[i], "<|endoftext|>") != 0)
            specials[ns++] = specials[i];
    to.specials = specials;
    to.n_specials = ns;
    docs d = {0};
    input in = {.field = o.field, .cmd = "tokenize train"};
    fg_tokenizer *tok = NULL;
    uint32_t *ids = NULL;
    size_t n_ids = 0;
    fg_lock lock = {-1};
    char lock_path[PATH + 8];
    snprintf(lock_path, sizeof lock_path, "%s.lock", o.out);
    double t0 = fg_time_sec();
    st = fg_lock_acquire(&lock, lock_path);
    if (st == FG_OK)
        st = open_reader(&in.rd, &o, pos, a.n_pos);
    for (bool got = true; st == FG_OK && got;) {
        char *text = NULL;
        size_t len = 0;
        st = input_next(&in, &text, &len, &got);
        if (st == FG_OK && got && (st = docs_add(&d, text, len)) != FG_OK)
            fg_free(text);
    }
    if (in.rd)
        input_report(&in);
    if (st == FG_OK && d.bytes == 0)
        st = fg_error(FG_ERR_INVALID, "no text in the inputs");
    double t1 = fg_time_sec();
    if (st == FG_OK)
        st = fg_tok_train(&to, (const char *const *)d.text, d.len, d.n, &tok);
    double t2 = fg_time_sec();
    if (st == FG_OK)
        st = fg_tok_save(tok, o.out);
    if (st == FG_OK)
        st = fg_tok_encode_docs(tok, (const char *const *)d.text, d.len, d.n, false, o.threads, NULL, &ids, &n_ids);
    if (st != FG_OK)
        rc = fg_cli_fail("tokenize train", st, "inputs are text files, .jsonl files or directories of them");
    else {
        printf("trained %s: vocab %d (%d merges, %d special) from %zu files, %zu documents, %zu bytes in %.2f s "
               "(read %.2f s); %.3f bytes/token on the training text",
               o.out, fg_tok_vocab_size(tok), fg_tok_n_merges(tok), fg_tok_n_special(tok),
               (size_t)fg_data_reader_n_files(in.rd), d.n, d.bytes, t2 - t1, t1 - t0,
               n_ids ? (double)d.bytes / (double)n_ids : 0.0);
        if (in.rejected)
            printf("; %llu records skipped", (unsigned long long)in.rejected);
        printf("\n");
        rc = 0;
    }
    fg_free(ids);
    fg_tok_delete(tok);
    fg_data_reader_close(in.rd);
    fg_lock_release(&lock);
    docs_free(&d);
out:
    fg_free(pos);
    return rc;
}

/* ---- encode ---- */

/* Output: one .bin file, or DIR/shard_NNNNNN.bin of at most shard_tokens each. */
typedef struct sink {
    const tok_opts *o;
    const fg_tokenizer *tok;
    const char *prefix; /* "shard" or "val" */
    bool dir;
    fg_shard_writer w;
    bool open;
    int n_shards;
    uint64_t in_shard;
} sink;

static fg_status sink_open(sink *s)
{
    char path[PATH + 32];
    size_t ol = strlen(s->o->out);
    if (s->dir)
        snprintf(path, sizeof path, "%s/%s_%06d.bin", s->o->out, s->prefix, s->n_shards);
    else if (strcmp(s->prefix, "val") == 0) /* x.bin -> x_val.bin */
        snprintf(path, sizeof path, "%.*s_val.bin", (int)(ol - 4), s->o->out);
    else
        snprintf(path, sizeof path, "%s", s->o->out);
    int eot = fg_tok_eot(s->tok);
    fg_status st = fg_shard_writer_open(&s->w, path, (uint32_t)fg_tok_vocab_size(s->tok),
                                        eot < 0 ? FG_SHARD_NO_EOT : (uint32_t)eot, 0);
    if (st != FG_OK)
        return st;
    s->open = true;
    s->n_shards++;
    s->in_shard = 0;
    return FG_OK;
}

static fg_status sink_write(sink *s, const uint32_t *ids, size_t n)
{
    fg_status st = FG_OK;
    while (n > 0) {
        if (!s->open && (st = sink_open(s)) != FG_OK)
            return st;
        size_t take = n;
        if (s->dir && s->in_shard + take > (uint64_t)s->o->shard_tokens)
            take = (size_t)((uint64_t)s->o->shard_tokens - s->in_shard);
        if ((st = fg_shard_writer_write(&s->w, ids, take)) != FG_OK)
            return st;
        s->in_shard += take;
        ids += take;
        n -= take;
        if (s->dir && s->in_shard >= (uint64_t)s->o->shard_tokens) {
            s->open = false;
            if ((st = fg_shard_writer_close(&s->w)) != FG_OK)
                return st;
        }
    }
    return FG_OK;
}

/* Special tokens read as their ids (tiktoken's allowed_special): "all", or a comma list
 * of registered special-token strings. */
typedef struct allowed {
    char *text[MAX_SPECIALS];
    size_t len[MAX_SPECIALS];
    uint32_t id[MAX_SPECIALS];
    int n;
} allowed;

static void allowed_free(allowed *al)
{
    for (int i = 0; i < al->n; i++)
        fg_free(al->text[i]);
    al->n = 0;
}

static fg_status allowed_add(allowed *al, const char *s, size_t n, uint32_t id)
{
    if (al->n == MAX_SPECIALS)
        return fg_error(FG_ERR_INVALID, "--allowed-special: at most %d tokens", MAX_SPECIALS);
    if (!(al->text[al->n] = fg_malloc(n + 1)))
        return FG_ERR_NOMEM;
    memcpy(al->text[al->n], s, n);
    al->text[al->n][n] = 0;
    al->len[al->n] = n;
    al->id[al->n++] = id;
    return FG_OK;
}

static fg_status allowed_parse(allowed *al, const fg_tokenizer *tok, const char *spec)
{
    al->n = 0;
    if (!spec[0])
        return FG_OK;
    if (!strcmp(spec, "all")) {
        /* every id whose bytes are a registered special token */
        for (int id = 0; id < fg_tok_vocab_size(tok) && al->n < fg_tok_n_special(tok); id++) {
            size_t n;
            const uint8_t *b = fg_tok_token_bytes(tok, (uint32_t)id, &n);
            char s[256];
            if (!b || n == 0 || n >= sizeof s || memchr(b, 0, n))
                continue;
            memcpy(s, b, n);
            s[n] = 0;
            fg_status st;
            if (fg_tok_special_id(tok, s) == id && (st = allowed_add(al, s, n, (uint32_t)id)) != FG_OK)
                return st;
        }
        return FG_OK;
    }
    for (const char *p = spec;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char s[256];
        if (n == 0 || n >= sizeof s)
            return fg_error(FG_ERR_INVALID, "--allowed-special: empty or over-long name in '%s'", spec);
        memcpy(s, p, n);
        s[n] = 0;
        int id = fg_tok_special_id(tok, s);
        if (id < 0)
            return fg_error(FG_ERR_INVALID, "--allowed-special: '%s' is not a special token of this tokenizer", s);
        fg_status st = allowed_add(al, s, n, (uint32_t)id);
        if (st != FG_OK)
            return st;
        if (!c)
            return FG_OK;
        p = c + 1;
    }
}

/* Leftmost allowed special in t[0..n) (longest on ties): its index, or -1. */
static int find_allowed(const allowed *al, const char *t, size_t n, size_t *at)
{
    int best = -1;
    size_t best_at = n;
    for (int k = 0; k < al->n; k++) {
        const char *p = memmem(t, n, al->text[k], al->len[k]);
        if (!p)
            continue;
        size_t i = (size_t)(p - t);
        if (best < 0 || i < best_at || (i == best_at && al->len[k] > al->len[best])) {
            best = k;
            best_at = i;
        }
    }
    *at = best_at;
    return best;
}

/* Encoded batch: ids, and where each document's ids end. */
typedef struct encoded {
    uint32_t *ids;
    size_t n;
    size_t *ends; /* per document */
} encoded;

static void encoded_free(encoded *e)
{
    fg_free(e->ids);
    fg_free(e->ends);
    memset(e, 0, sizeof *e);
}

/* Encodes the batch with all threads. With allowed specials each document is cut at
 * them into pieces encoded as ordinary text (as tiktoken does), and the pieces are
 * joined with the specials' ids between them. */
static fg_status encode_batch(const fg_tokenizer *tok, const tok_opts *o, const allowed *al, const docs *d,
                              fg_progress *prog, encoded *e)
{
    memset(e, 0, sizeof *e);
    bool eot = !o->no_eot;
    if (eot && fg_tok_eot(tok) < 0)
        return fg_error(FG_ERR_INVALID, "the tokenizer has no <|endoftext|> token: pass --no-eot");
    if (!(e->ends = fg_malloc((d->n ? d->n : 1) * sizeof(size_t))))
        return FG_ERR_NOMEM;
    if (al->n == 0)
        return fg_tok_encode_docs_ends(tok, (const char *const *)d->text, d->len, d->n, eot, o->threads, prog, &e->ids,
                                       &e->n, e->ends);
    /* pieces: the text between specials; sep[p]: the special id after piece p, or -1 at the
     * end of a document */
    size_t cap = d->n + 16, np = 0;
    const char **piece = fg_malloc(cap * sizeof *piece);
    size_t *plen = fg_malloc(cap * sizeof *plen), *pend = NULL;
    int64_t *sep = fg_malloc(cap * sizeof *sep);
    uint32_t *pids = NULL;
    size_t n_pids = 0;
    fg_status st = piece && plen && sep ? FG_OK : FG_ERR_NOMEM;
    for (size_t k = 0; k < d->n && st == FG_OK; k++) {
        const char *t = d->text[k];
        size_t left = d->len[k];
        for (;;) {
            if (np == cap) {
                cap *= 2;
                const char **p2 = fg_realloc(piece, cap * sizeof *p2);
                if (p2)
                    piece = p2;
                size_t *l2 = fg_realloc(plen, cap * sizeof *l2);
                if (l2)
                    plen = l2;
                int64_t *s2 = fg_realloc(sep, cap * sizeof *s2);
                if (s2)
                    sep = s2;
                if (!p2 || !l2 || !s2) {
                    st = FG_ERR_NOMEM;
                    break;
                }
            }
            size_t at;
            int s = find_allowed(al, t, left, &at);
            piece[np] = t;
            plen[np] = s < 0 ? left : at;
            sep[np++] = s < 0 ? -1 : (int64_t)al->id[s];
            if (s < 0)
                break;
            t += at + al->len[s];
            left -= at + al->len[s];
        }
    }
    if (st == FG_OK && !(pend = fg_malloc((np ? np : 1) * sizeof *pend)))
        st = FG_ERR_NOMEM;
    if (st == FG_OK)
        st = fg_tok_encode_docs_ends(tok, piece, plen, np, false, o->threads, prog, &pids, &n_pids, pend);
    /* every separator adds one id, every document end one eot */
    size_t total = n_pids;
    for (size_t p = 0; p < np; p++)
        total += sep[p] >= 0 || eot;
    if (st == FG_OK && !(e->ids = fg_malloc((total ? total : 1) * sizeof(uint32_t))))
        st = FG_ERR_NOMEM;
    if (st == FG_OK) {
        size_t from = 0, doc = 0;
        for (size_t p = 0; p < np; p++) {
            memcpy(e->ids + e->n, pids + from, (pend[p] - from) * sizeof(uint32_t));
            e->n += pend[p] - from;
            from = pend[p];
            if (sep[p] >= 0)
                e->ids[e->n++] = (uint32_t)sep[p];
            else {
                if (eot)
                    e->ids[e->n++] = (uint32_t)fg_tok_eot(tok);
                e->ends[doc++] = e->n;
            }
        }
    }
    fg_free(piece);
    fg_free(plen);
    fg_free(pend);
    fg_free(sep);
    fg_free(pids);
    if (st != FG_OK)
        encoded_free(e);
    return st;
}

#define BATCH_BYTES ((size_t)256 << 20)

static int cmd_encode(int argc, char **argv)
{
    tok_opts o;
    fg_opt_args a;
    int rc = parse_sub("tokenize encode", encode_opts, FG_OPT_COUNT(encode_opts), argc, argv, &o, &a);
    if (rc >= 0)
        return rc;
    const char **pos = a.pos;
    fg_status st = FG_OK;
    if (!o.tokenizer[0] || (!o.out[0] && !o.print) || (o.out[0] && o.print) || a.n_pos == 0)
        st = fg_error(FG_ERR_INVALID, "needs --tokenizer T, one of --out or --print, and at least one INPUT");
    else if (o.out[0] && !ends_with(o.out, ".bin") && !o.print) {
        struct stat sb;
        if (stat(o.out, &sb) == 0 && !S_ISDIR(sb.st_mode))
            st =
                fg_error(FG_ERR_INVALID, "--out %s: an existing file that is not .bin (give FILE.bin or a DIR)", o.out);
    }
    if (st == FG_OK && o.out[0]) {
        const char *outs[] = {o.out};
        st = fg_cli_check_outputs(outs, 1, pos, a.n_pos, false);
    }
    if (st != FG_OK) {
        rc = fg_cli_fail("tokenize encode", st, "frugal tokenize --help");
        fg_free(pos);
        return rc;
    }
    docs d = {0};
    input in = {.field = o.field, .cmd = "tokenize encode"};
    size_t total_bytes = 0;
    uint64_t total_tokens = 0, val_tokens = 0;
    rc = 0;
    sink s = {.o = &o, .prefix = "shard"}, sv = {.o = &o, .prefix = "val"};
    allowed al = {.n = 0};
    fg_lock lock = {-1};
    double t0 = fg_time_sec();
    fg_tokenizer *tok = fg_tok_load(o.tokenizer);
    if (!tok) {
        rc = fg_cli_fail("tokenize encode", fg_last_status(),
                         "--tokenizer takes tokenizer.json, a GPT-2 directory or byte");
        goto done;
    }
    s.tok = sv.tok = tok;
    if ((st = allowed_parse(&al, tok, o.allowed_special)) != FG_OK)
        goto fail;
    if (!o.print) {
        /* the lock sits inside a shard directory (as train's <out>/.frugal.lock; the
         * reader skips dot-files) and beside a single .bin file */
        s.dir = sv.dir = !ends_with(o.out, ".bin");
        if (s.dir && mkdir(o.out, 0755) != 0 && errno != EEXIST) {
            st = fg_error(FG_ERR_IO, "%s: cannot create directory: %s", o.out, strerror(errno));
            goto fail;
        }
        char lock_path[PATH + 16];
        snprintf(lock_path, sizeof lock_path, s.dir ? "%s/.frugal.lock" : "%s.lock", o.out);
        if ((st = fg_lock_acquire(&lock, lock_path)) != FG_OK)
            goto fail;
    }
    if ((st = open_reader(&in.rd, &o, pos, a.n_pos)) != FG_OK)
        goto fail;
    fg_progress prog;
    fg_progress_begin(&prog, "encode", (double)fg_data_reader_bytes_total(in.rd), "B");
    for (bool got = true; got;) {
        char *text = NULL;
        size_t len = 0;
        if ((st = input_next(&in, &text, &len, &got)) != FG_OK)
            goto fail;
        if (got && (st = docs_add(&d, text, len)) != FG_OK) {
            fg_free(text);
            goto fail;
        }
        if (got && d.bytes < BATCH_BYTES)
            continue;
        encoded e;
        prog.done = (double)total_bytes;
        if ((st = encode_batch(tok, &o, &al, &d, &prog, &e)) != FG_OK)
            goto fail;
        if (o.print) { /* one line per document */
            for (size_t k = 0, from = 0; k < d.n; from = e.ends[k++]) {
                for (size_t i = from; i < e.ends[k]; i++)
                    printf(i > from ? " %u" : "%u", e.ids[i]);
                putchar('\n');
            }
            if (fflush(stdout) != 0 || ferror(stdout))
                st = fg_error(FG_ERR_IO, "stdout: write failed: %s", strerror(errno));
        } else {
            size_t n_val = (size_t)((double)e.n * o.val_frac);
            st = sink_write(&s, e.ids, e.n - n_val);
            if (st == FG_OK && n_val > 0)
                st = sink_write(&sv, e.ids + e.n - n_val, n_val);
            val_tokens += n_val;
        }
        total_tokens += e.n;
        encoded_free(&e);
        if (st != FG_OK)
            goto fail;
        total_bytes += d.bytes;
        docs_clear(&d);
        fg_progress_update(&prog, (double)total_bytes);
    }
    fg_progress_end(&prog);
    input_report(&in);
    if (!o.print && total_tokens - val_tokens == 0) {
        /* Nothing to write: an empty shard would only fail later in training, and a
         * silent success with no file misleads. */
        st = fg_error(FG_ERR_FORMAT,
                      "no tokens to write: the inputs hold no text (%llu documents, %llu skipped); %s "
                      "not written",
                      (unsigned long long)in.docs, (unsigned long long)in.rejected, o.out);
        goto fail;
    }
    for (sink *k = &s; k; k = k == &s ? &sv : NULL) {
        if (k->open) {
            k->open = false;
            if ((st = fg_shard_writer_close(&k->w)) != FG_OK)
                goto fail;
        }
    }
    double dt = fg_time_sec() - t0;
    FILE *rep = o.print ? stderr : stdout;
    fprintf(rep,
            "encoded %zu files, %llu documents, %zu bytes -> %llu tokens (%.3f bytes/token) in %.2f s "
            "(%.1f MB/s, %d threads)",
            (size_t)fg_data_reader_n_files(in.rd), (unsigned long long)in.docs, total_bytes,
            (unsigned long long)total_tokens, total_tokens ? (double)total_bytes / (double)total_tokens : 0.0, dt,
            dt > 0 ? total_bytes / dt / 1e6 : 0.0, o.threads > 0 ? o.threads : fg_threads_get());
    if (!o.print)
        fprintf(rep, " into %s%s", o.out, s.dir ? " (shard_*.bin)" : "");
    if (val_tokens)
        fprintf(rep, "; %llu of them to validation (%s)", (unsigned long long)val_tokens,
                s.dir ? "val_*.bin" : "*_val.bin");
    if (in.rejected)
        fprintf(rep, "; %llu records skipped", (unsigned long long)in.rejected);
    fprintf(rep, "\n");
    goto done;
fail:
    if (s.open)
        fg_shard_writer_abort(&s.w);
    if (sv.open)
        fg_shard_writer_abort(&sv.w);
    rc = fg_cli_fail("tokenize encode", st, NULL);
done:
    allowed_free(&al);
    fg_tok_delete(tok);
    fg_data_reader_close(in.rd);
    fg_lock_release(&lock);
    docs_free(&d);
    fg_free(pos);
    return rc;
}

/* ---- decode ---- */

static int cmd_decode(int argc, char **argv)
{
    tok_opts o, def;
    opts_default(&o);
    def = o;
    const char *pos[2];
    fg_opt_table t = {decode_opts, FG_OPT_COUNT(decode_opts), &o};
    const void *defs[] = {&def};
    fg_cli_spec spec = {"tokenize decode", usage_text, &t, defs, 1, (const char *const[]){"-o", "--out", NULL}};
    fg_opt_args a = {.pos = pos, .max_pos = 1};
    int rc = fg_cli_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!o.tokenizer[0] || a.n_pos != 1)
        return fg_cli_fail("tokenize decode", fg_error(FG_ERR_INVALID, "needs --tokenizer T and one SHARD.bin"),
                           "frugal tokenize --help");
    rc = 0;
    fg_shard sh;
    bool sh_open = false;
    fg_file_tx tx;
    bool tx_open = false;
    uint32_t *ids = NULL;
    char *text = NULL;
    fg_status st = FG_OK;
    fg_tokenizer *tok = fg_tok_load(o.tokenizer);
    if (!tok) {
        rc = fg_cli_fail("tokenize decode", fg_last_status(), NULL);
        goto done;
    }
    if (o.out[0]) {
        const char *outs[] = {o.out}, *ins[] = {pos[0]};
        if ((st = fg_cli_check_outputs(outs, 1, ins, 1, false)) != FG_OK)
            goto fail;
    }
    if ((st = fg_shard_open(&sh, pos[0])) != FG_OK)
        goto fail;
    sh_open = true;
    if (o.out[0]) {
        if ((st = fg_file_tx_open(&tx, o.out, 0)) != FG_OK)
            goto fail;
        tx_open = true;
    }
    const size_t block = 1 << 20;
    if (!(ids = fg_malloc(block * sizeof(uint32_t)))) {
        st = FG_ERR_NOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < sh.n_tokens; i += block) {
        size_t n = (size_t)(sh.n_tokens - i < block ? sh.n_tokens - i : block), len;
        for (size_t k = 0; k < n; k++)
            ids[k] = fg_shard_token(&sh, i + k);
        if ((st = fg_tok_decode(tok, ids, n, &text, &len)) != FG_OK)
            goto fail;
        if (tx_open)
            st = fg_file_tx_write(&tx, text, len);
        else if (fwrite(text, 1, len, stdout) != len)
            st = fg_error(FG_ERR_IO, "stdout: write failed: %s", strerror(errno));
        if (st != FG_OK)
            goto fail;
        fg_free(text);
        text = NULL;
    }
    if (tx_open) {
        tx_open = false;
        if ((st = fg_file_tx_commit(&tx)) != FG_OK)
            goto fail;
    } else if (fflush(stdout) != 0) {
        st = fg_error(FG_ERR_IO, "stdout: write failed: %s", strerror(errno));
        goto fail;
    }
    goto done;
fail:
    if (tx_open)
        fg_file_tx_abort(&tx);
    rc = fg_cli_fail("tokenize decode", st, NULL);
done:
    if (sh_open)
        fg_shard_close(&sh);
    fg_free(text);
    fg_free(ids);
    fg_tok_delete(tok);
    return rc;
}

int fg_cmd_tokenize(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        tokenize_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train"))
        return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "encode"))
        return cmd_encode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "decode"))
        return cmd_decode(argc - 1, argv + 1);
    fprintf(stderr, "frugal tokenize: error: unknown subcommand '%s' (train, encode or decode)\n", argv[1]);
    tokenize_usage(stderr);
    return 2;
}
