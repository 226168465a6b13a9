/* cmd_tokenize.c: `frugal tokenize train | encode | decode`: trains a byte-level BPE
 * vocabulary on files, directories or JSONL (`text` field), encodes them into token
 * shards with all cores (documents separated by <|endoftext|>), and decodes shards
 * back to text. Parsing, reading inputs and reporting only; the work is in src/tok. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "frugal/shard.h"
#include "frugal/tok.h"

/* ---- inputs: a batch of documents pointing into owned buffers ---- */
typedef struct docs {
    char **buf; /* owned buffers */
    size_t n_buf, cap_buf;
    const char **doc;
    size_t *len;
    size_t n, cap;
    size_t bytes;
    size_t files;
} docs;

static void docs_clear(docs *d)
{
    for (size_t i = 0; i < d->n_buf; i++)
        fg_free(d->buf[i]);
    d->n_buf = d->n = d->bytes = 0;
}

static void docs_free(docs *d)
{
    docs_clear(d);
    fg_free(d->buf);
    fg_free(d->doc);
    fg_free(d->len);
    memset(d, 0, sizeof *d);
}

static fg_status docs_own(docs *d, char *buf)
{
    if (d->n_buf == d->cap_buf) {
        size_t cap = d->cap_buf ? d->cap_buf * 2 : 64;
        char **b = fg_realloc(d->buf, cap * sizeof(char *));
        if (!b)
            return FG_ERR_NOMEM;
        d->buf = b;
        d->cap_buf = cap;
    }
    d->buf[d->n_buf++] = buf;
    return FG_OK;
}

static fg_status docs_add(docs *d, const char *p, size_t len)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        const char **dd = fg_realloc(d->doc, cap * sizeof(char *));
        if (!dd)
            return FG_ERR_NOMEM;
        d->doc = dd;
        size_t *ll = fg_realloc(d->len, cap * sizeof(size_t));
        if (!ll)
            return FG_ERR_NOMEM;
        d->len = ll;
        d->cap = cap;
    }
    d->doc[d->n] = p;
    d->len[d->n++] = len;
    d->bytes += len;
    return FG_OK;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    char *buf = NULL;
    if (fstat(fileno(f), &sb) != 0 || !(buf = fg_malloc((size_t)sb.st_size + 1)) ||
        fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        fg_free(buf);
        fclose(f);
        fg_error(FG_ERR_IO, "%s: cannot read", path);
        return NULL;
    }
    fclose(f);
    buf[sb.st_size] = 0;
    *len = (size_t)sb.st_size;
    return buf;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* One file: JSONL (.jsonl/.json: one document per line, its `field` string) or text
 * (the whole file is one document). */
static fg_status add_file(docs *d, const char *path, const char *field)
{
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf)
        return FG_ERR_IO;
    fg_status st = docs_own(d, buf);
    if (st != FG_OK) {
        fg_free(buf);
        return st;
    }
    d->files++;
    if (!ends_with(path, ".jsonl") && !ends_with(path, ".json"))
        return docs_add(d, buf, len);
    /* JSONL: the decoded texts are written back over the line they came from (a JSON
     * string is never shorter than its value), so the buffer stays the only copy */
    int line = 0;
    for (char *p = buf, *next; p < buf + len; p = next) {
        line++;
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        next = nl ? nl + 1 : buf + len;
        size_t ll = (size_t)((nl ? nl : buf + len) - p);
        while (ll && (p[ll - 1] == '\r' || p[ll - 1] == ' '))
            ll--;
        if (ll == 0)
            continue;
        json_error_t err;
        json_t *o = json_loadb(p, ll, JSON_ALLOW_NUL, &err);
        if (!o)
            return fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s", path, line, err.column, err.text);
        json_t *t = json_object_get(o, field);
        if (!json_is_string(t)) {
            json_decref(o);
            return fg_error(FG_ERR_FORMAT, "%s:%d:1: no string field \"%s\"", path, line, field);
        }
        size_t tl = json_string_length(t);
        memcpy(p, json_string_value(t), tl);
        json_decref(o);
        if ((st = docs_add(d, p, tl)) != FG_OK)
            return st;
    }
    return FG_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the regular files under path (itself when a file), sorted, into *list. */
static fg_status list_files(const char *path, char ***list, size_t *n, size_t *cap)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return fg_error(FG_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            char **l = fg_realloc(*list, *cap * sizeof(char *));
            if (!l)
                return FG_ERR_NOMEM;
            *list = l;
        }
        (*list)[(*n)++] = fg_strdup(path);
        return (*list)[*n - 1] ? FG_OK : FG_ERR_NOMEM;
    }
    DIR *dir = opendir(path);
    if (!dir)
        return fg_error(FG_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
    char **names = NULL;
    size_t nn = 0, cn = 0;
    fg_status st = FG_OK;
    struct dirent *e;
    while ((e = readdir(dir)) && st == FG_OK) {
        if (e->d_name[0] == '.')
            continue;
        if (nn == cn) {
            cn = cn ? cn * 2 : 64;
            char **l = fg_realloc(names, cn * sizeof(char *));
            if (!l) {
                st = FG_ERR_NOMEM;
                break;
            }
            names = l;
        }
        size_t sl = strlen(path) + strlen(e->d_name) + 2;
        names[nn] = fg_malloc(sl);
        if (!names[nn]) {
            st = FG_ERR_NOMEM;
            break;
        }
        snprintf(names[nn++], sl, "%s/%s", path, e->d_name);
    }
    closedir(dir);
    if (nn)
        qsort(names, nn, sizeof(char *), cmp_str);
    for (size_t i = 0; i < nn; i++) {
        if (st == FG_OK)
            st = list_files(names[i], list, n, cap);
        fg_free(names[i]);
    }
    fg_free(names);
    return st;
}

/* ---- options ---- */
typedef struct opts {
    const char *tokenizer, *out, *field, *pattern;
    const char **inputs;
    int n_inputs;
    const char *specials[64];
    int n_specials;
    int vocab_size, min_frequency, threads;
    long long shard_tokens;
    double val_frac;
    bool no_eot, print;
} opts;

static void usage(void)
{
    fprintf(stderr, "usage:\n"
                    "  frugal tokenize train  --out tokenizer.json [--vocab-size 32768] [--min-frequency 2]\n"
                    "                         [--pattern gpt2|cl100k] [--special TEXT]... [--threads N] INPUT...\n"
                    "  frugal tokenize encode --tokenizer T (--out DIR|FILE.bin | --print) [--shard-tokens N]\n"
                    "                         [--no-eot] [--threads N] [--field text] INPUT...\n"
                    "  frugal tokenize decode --tokenizer T [--out FILE] SHARD.bin\n"
                    "INPUT: text files (one document each), .jsonl/.json files (one document per line, its\n"
                    "\"text\" field), or directories of them. T: tokenizer.json, a GPT-2 directory\n"
                    "(encoder.json + vocab.bpe) or \"byte\". --val-frac F: the last F of each batch's tokens\n"
                    "(the tail of the text, batches are 256 MB) go to DIR/val_*.bin or FILE_val.bin.\n");
}

/* Parses argv; returns 0 or the exit code for a usage error. */
static int parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->vocab_size = 32768;
    o->min_frequency = 2;
    o->field = "text";
    o->pattern = "gpt2";
    o->shard_tokens = 100000000LL;
    o->inputs = fg_calloc((size_t)argc + 1, sizeof(char *));
    if (!o->inputs)
        return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(name) (!strcmp(a, name) && v && (i++, 1))
        if (TAKE("--tokenizer"))
            o->tokenizer = v;
        else if (TAKE("--out") || TAKE("-o"))
            o->out = v;
        else if (TAKE("--field"))
            o->field = v;
        else if (TAKE("--pattern"))
            o->pattern = v;
        else if (TAKE("--vocab-size"))
            o->vocab_size = atoi(v);
        else if (TAKE("--min-frequency"))
            o->min_frequency = atoi(v);
        else if (TAKE("--threads"))
            o->threads = atoi(v);
        else if (TAKE("--shard-tokens"))
            o->shard_tokens = atoll(v);
        else if (TAKE("--val-frac"))
            o->val_frac = atof(v);
        else if (TAKE("--special")) {
            if (o->n_specials == 64) {
                fprintf(stderr, "frugal tokenize: at most 64 --special tokens\n");
                return 2;
            }
            o->specials[o->n_specials++] = v;
        } else if (!strcmp(a, "--no-eot"))
            o->no_eot = true;
        else if (!strcmp(a, "--print"))
            o->print = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 2;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "frugal tokenize: unknown or incomplete option '%s'\n", a);
            usage();
            return 2;
        } else
            o->inputs[o->n_inputs++] = a;
#undef TAKE
    }
    return 0;
}

static fg_status gather(const opts *o, char ***files, size_t *n_files)
{
    size_t cap = 0;
    *files = NULL;
    *n_files = 0;
    for (int i = 0; i < o->n_inputs; i++) {
        fg_status st = list_files(o->inputs[i], files, n_files, &cap);
        if (st != FG_OK)
            return st;
    }
    return FG_OK;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fg_free(l[i]);
    fg_free(l);
}

static int cmd_train(const opts *o)
{
    if (!o->out || o->n_inputs == 0) {
        usage();
        return 2;
    }
    fg_tok_train_opts to;
    fg_tok_train_opts_default(&to);
    to.vocab_size = o->vocab_size;
    to.min_frequency = o->min_frequency;
    to.threads = o->threads;
    to.progress = true;
    if (!strcmp(o->pattern, "cl100k"))
        to.pattern = FG_TOK_PATTERN_CL100K;
    else if (strcmp(o->pattern, "gpt2") != 0) {
        fprintf(stderr, "frugal tokenize: --pattern must be gpt2 or cl100k\n");
        return 2;
    }
    const char *specials[65];
    specials[0] = "<|endoftext|>";
    int ns = 1;
    for (int i = 0; i < o->n_specials; i++)
        if (strcmp(o->specials[i], "<|endoftext|>") != 0)
            specials[ns++] = o->specials[i];
    to.specials = specials;
    to.n_specials = ns;
    docs d = {0};
    char **files = NULL;
    size_t n_files = 0;
    fg_tokenizer *tok = NULL;
    uint32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 0;
    double t0 = fg_time_sec();
    fg_status st = gather(o, &files, &n_files);
    for (size_t i = 0; i < n_files && st == FG_OK; i++)
        st = add_file(&d, files[i], o->field);
    if (st == FG_OK && d.bytes == 0)
        st = fg_error(FG_ERR_INVALID, "no text in the inputs");
    double t1 = fg_time_sec();
    if (st == FG_OK)
        st = fg_tok_train(&to, d.doc, d.len, d.n, &tok);
    double t2 = fg_time_sec();
    if (st == FG_OK)
        st = fg_tok_save(tok, o->out);
    if (st == FG_OK)
        st = fg_tok_encode_docs(tok, d.doc, d.len, d.n, false, o->threads, NULL, &ids, &n_ids);
    if (st != FG_OK) {
        rc = fg_cli_fail("tokenize train", st, "inputs are text files, .jsonl files or directories of them");
        goto done;
    }
    printf("trained %s: vocab %d (%d merges, %d special) from %zu files, %zu documents, %zu bytes in %.2f s "
           "(read %.2f s); %.3f bytes/token on the training text\n",
           o->out, fg_tok_vocab_size(tok), fg_tok_n_merges(tok), fg_tok_n_special(tok), d.files, d.n, d.bytes, t2 - t1,
           t1 - t0, n_ids ? (double)d.bytes / (double)n_ids : 0.0);
done:
    fg_free(ids);
    fg_tok_delete(tok);
    free_list(files, n_files);
    docs_free(&d);
    return rc;
}

/* Output: one .bin file, or DIR/shard_NNNNNN.bin of at most shard_tokens each. */
typedef struct sink {
    const opts *o;
    const fg_tokenizer *tok;
    const char *prefix; /* "shard" or "val" */
    bool dir;
    fg_shard_writer w;
    bool open;
    int n_shards;
    uint64_t in_shard;
} sink;

static fg_status sink_write(sink *s, const uint32_t *ids, size_t n)
{
    fg_status st = FG_OK;
    while (n > 0) {
        if (!s->open) {
            char path[4096];
            size_t ol = strlen(s->o->out);
            if (s->dir)
                snprintf(path, sizeof path, "%s/%s_%06d.bin", s->o->out, s->prefix, s->n_shards);
            else if (strcmp(s->prefix, "val") == 0) /* x.bin -> x_val.bin */
                snprintf(path, sizeof path, "%.*s_val.bin", (int)(ol - 4), s->o->out);
            else
                snprintf(path, sizeof path, "%s", s->o->out);
            int eot = fg_tok_eot(s->tok);
            if ((st = fg_shard_writer_open(&s->w, path, (uint32_t)fg_tok_vocab_size(s->tok),
                                           eot < 0 ? FG_SHARD_NO_EOT : (uint32_t)eot, 0)) != FG_OK)
                return st;
            s->open = true;
            s->n_shards++;
            s->in_shard = 0;
        }
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

#define BATCH_BYTES ((size_t)256 << 20)

static int cmd_encode(const opts *o)
{
    if (!o->tokenizer || (!o->out && !o->print) || o->n_inputs == 0 || o->shard_tokens <= 0 || o->val_frac < 0 ||
        o->val_frac >= 1) {
        usage();
        return 2;
    }
    docs d = {0};
    char **files = NULL;
    size_t n_files = 0, total_bytes = 0, total_docs = 0, total_files = 0;
    uint64_t total_tokens = 0, val_tokens = 0;
    int rc = 0;
    sink s = {.o = o, .prefix = "shard"}, sv = {.o = o, .prefix = "val"};
    fg_status st = FG_OK;
    double t0 = fg_time_sec();
    fg_tokenizer *tok = fg_tok_load(o->tokenizer);
    if (!tok) {
        rc = fg_cli_fail("tokenize encode", fg_last_status(),
                         "--tokenizer takes tokenizer.json, a GPT-2 directory or byte");
        goto done;
    }
    s.tok = sv.tok = tok;
    if (!o->print) {
        s.dir = sv.dir = !ends_with(o->out, ".bin");
        if (s.dir && mkdir(o->out, 0755) != 0 && errno != EEXIST) {
            st = fg_error(FG_ERR_IO, "%s: cannot create directory: %s", o->out, strerror(errno));
            goto fail;
        }
    }
    if ((st = gather(o, &files, &n_files)) != FG_OK)
        goto fail;
    size_t all_bytes = 0;
    for (size_t i = 0; i < n_files; i++) {
        struct stat sb;
        if (stat(files[i], &sb) == 0)
            all_bytes += (size_t)sb.st_size;
    }
    fg_progress prog;
    fg_progress_begin(&prog, "encode", (double)all_bytes, "B");
    for (size_t i = 0; i <= n_files; i++) {
        if (i < n_files && (st = add_file(&d, files[i], o->field)) != FG_OK)
            goto fail;
        if (d.bytes < BATCH_BYTES && i < n_files)
            continue;
        /* encode the batch with all threads; progress counts text bytes */
        uint32_t *ids = NULL;
        size_t n = 0;
        prog.done = (double)total_bytes;
        st = fg_tok_encode_docs(tok, d.doc, d.len, d.n, !o->no_eot, o->threads, &prog, &ids, &n);
        if (st == FG_OK && o->print) {
            for (size_t k = 0; k < n; k++)
                printf(k + 1 < n ? "%u " : "%u\n", ids[k]);
        } else if (st == FG_OK) {
            size_t n_val = (size_t)((double)n * o->val_frac);
            st = sink_write(&s, ids, n - n_val);
            if (st == FG_OK && n_val > 0)
                st = sink_write(&sv, ids + n - n_val, n_val);
            val_tokens += n_val;
        }
        fg_free(ids);
        if (st != FG_OK)
            goto fail;
        total_bytes += d.bytes;
        total_docs += d.n;
        total_files += d.files;
        total_tokens += n;
        d.files = 0;
        docs_clear(&d);
        fg_progress_update(&prog, (double)total_bytes);
    }
    fg_progress_end(&prog);
    for (sink *k = &s; k; k = k == &s ? &sv : NULL) {
        if (k->open) {
            k->open = false;
            if ((st = fg_shard_writer_close(&k->w)) != FG_OK)
                goto fail;
        }
    }
    double dt = fg_time_sec() - t0;
    fprintf(o->print ? stderr : stdout,
            "encoded %zu files, %zu documents, %zu bytes -> %llu tokens (%.3f bytes/token) in %.2f s "
            "(%.1f MB/s, %d threads)%s%s%s",
            total_files, total_docs, total_bytes, (unsigned long long)total_tokens,
            total_tokens ? (double)total_bytes / (double)total_tokens : 0.0, dt, dt > 0 ? total_bytes / dt / 1e6 : 0.0,
            o->threads > 0 ? o->threads : fg_threads_get(), o->print ? "" : " into ", o->print ? "" : o->out,
            s.dir && !o->print ? " (shard_*.bin)" : "");
    if (val_tokens)
        fprintf(stdout, "; %llu of them to validation (%s)", (unsigned long long)val_tokens,
                s.dir ? "val_*.bin" : "*_val.bin");
    fprintf(o->print ? stderr : stdout, "\n");
    goto done;
fail:
    if (s.open)
        fg_shard_writer_abort(&s.w);
    if (sv.open)
        fg_shard_writer_abort(&sv.w);
    rc = fg_cli_fail("tokenize encode", st, NULL);
done:
    fg_tok_delete(tok);
    free_list(files, n_files);
    docs_free(&d);
    return rc;
}

static int cmd_decode(const opts *o)
{
    if (!o->tokenizer || o->n_inputs != 1) {
        usage();
        return 2;
    }
    int rc = 0;
    fg_shard sh;
    bool sh_open = false;
    FILE *out = stdout;
    uint32_t *ids = NULL;
    char *text = NULL;
    fg_status st = FG_OK;
    fg_tokenizer *tok = fg_tok_load(o->tokenizer);
    if (!tok) {
        rc = fg_cli_fail("tokenize decode", fg_last_status(), NULL);
        goto done;
    }
    if ((st = fg_shard_open(&sh, o->inputs[0])) != FG_OK)
        goto fail;
    sh_open = true;
    if (o->out && !(out = fopen(o->out, "wb"))) {
        st = fg_error(FG_ERR_IO, "%s: cannot open for writing: %s", o->out, strerror(errno));
        out = stdout;
        goto fail;
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
        if (fwrite(text, 1, len, out) != len) {
            st = fg_error(FG_ERR_IO, "%s: write failed", o->out ? o->out : "stdout");
            goto fail;
        }
        fg_free(text);
        text = NULL;
    }
    goto done;
fail:
    rc = fg_cli_fail("tokenize decode", st, NULL);
done:
    if (out != stdout && fclose(out) != 0 && rc == 0)
        rc = fg_cli_fail("tokenize decode", fg_error(FG_ERR_IO, "%s: close failed", o->out), NULL);
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
        usage();
        return argc < 2 ? 2 : 0;
    }
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc == 0) {
        if (!strcmp(argv[1], "train"))
            rc = cmd_train(&o);
        else if (!strcmp(argv[1], "encode"))
            rc = cmd_encode(&o);
        else if (!strcmp(argv[1], "decode"))
            rc = cmd_decode(&o);
        else {
            fprintf(stderr, "frugal tokenize: unknown subcommand '%s'\n", argv[1]);
            usage();
            rc = 2;
        }
    }
    fg_free(o.inputs);
    return rc;
}
