/* io.c: document readers (text, HTML, JSONL, WARC/WET; plain, gzip or zstd; files and
 * directories), decoding (JSON fields, charset conversion, UTF-8 repair) and JSON output
 * helpers. Damaged records become rejected documents, never lost ones.
 * Left out: ARC (pre-WARC) files, HTTP chunked bodies, bzip2/xz. */
#define _GNU_SOURCE /* strcasestr, fputs_unlocked */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <iconv.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <uchardet.h>
#include <utf8proc.h>
#include <zlib.h>
#include <zstd.h>

#include "data_impl.h"

/* ---- sbuf ---- */
/* Room for extra more bytes and a NUL. The capacity doubles (amortised appends), but
 * never past limit + 1 bytes unless the bytes asked for need more: a buffer bounded
 * by a document limit is not allocated twice as large as the limit. */
static fg_status sbuf_reserve_max(sbuf *b, size_t extra, size_t limit)
{
    size_t need = b->n + extra + 1;
    if (need <= b->cap)
        return FG_OK;
    size_t cap = b->cap ? b->cap : 128;
    cap = cap <= limit / 2 ? 2 * cap : limit + 1;
    if (cap < need)
        cap = need;
    char *p = fg_realloc(b->p, cap);
    if (!p)
        return FG_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return FG_OK;
}

fg_status sbuf_reserve(sbuf *b, size_t extra)
{
    return sbuf_reserve_max(b, extra, SIZE_MAX - 1);
}

fg_status sbuf_put(sbuf *b, const void *s, size_t n)
{
    if (sbuf_reserve(b, n) != FG_OK)
        return FG_ERR_NOMEM;
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return FG_OK;
}

fg_status sbuf_putc(sbuf *b, char c)
{
    return sbuf_put(b, &c, 1);
}

fg_status sbuf_json_escape(sbuf *b, const char *s, size_t n)
{
    if (sbuf_reserve(b, n + 16) != FG_OK)
        return FG_ERR_NOMEM;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (sbuf_put(b, s + run, i - run) != FG_OK)
            return FG_ERR_NOMEM;
        char esc[8];
        int k;
        switch (c) {
        case '"': k = snprintf(esc, sizeof esc, "\\\""); break;
        case '\\': k = snprintf(esc, sizeof esc, "\\\\"); break;
        case '\n': k = snprintf(esc, sizeof esc, "\\n"); break;
        case '\t': k = snprintf(esc, sizeof esc, "\\t"); break;
        case '\r': k = snprintf(esc, sizeof esc, "\\r"); break;
        default: k = snprintf(esc, sizeof esc, "\\u%04x", c); break;
        }
        if (sbuf_put(b, esc, (size_t)k) != FG_OK)
            return FG_ERR_NOMEM;
        run = i + 1;
    }
    return sbuf_put(b, s + run, n - run);
}

void sbuf_free(sbuf *b)
{
    fg_free(b->p);
    memset(b, 0, sizeof *b);
}

void fg_data_json_write_string(FILE *f, const char *s, size_t n)
{
    putc_unlocked('"', f);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        fwrite_unlocked(s + run, 1, i - run, f);
        switch (c) {
        case '"': fputs_unlocked("\\\"", f); break;
        case '\\': fputs_unlocked("\\\\", f); break;
        case '\n': fputs_unlocked("\\n", f); break;
        case '\t': fputs_unlocked("\\t", f); break;
        case '\r': fputs_unlocked("\\r", f); break;
        default: fprintf(f, "\\u%04x", c); break;
        }
        run = i + 1;
    }
    fwrite_unlocked(s + run, 1, n - run, f);
    putc_unlocked('"', f);
}

/* ---- UTF-8 ---- */
/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when invalid. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0;
        if (c == 0xF4 && s[1] >= 0x90)
            return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

bool fg_data_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path: 8 bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        int k = utf8_seq(s + i, n - i);
        if (!k)
            return false;
        i += (size_t)k;
    }
    return true;
}

fg_status fg_data_utf8_repair(const char *str, size_t n, char **out, size_t *out_len, uint32_t *n_bad)
{
    const unsigned char *s = (const unsigned char *)str;
    sbuf b = {0};
    uint32_t bad = 0;
    if (sbuf_reserve(&b, n + 16) != FG_OK)
        return fg_error(FG_ERR_NOMEM, "utf8 repair: out of memory for %zu bytes", n);
    size_t i = 0, run = 0;
    while (i < n) {
        int k = utf8_seq(s + i, n - i);
        if (k) {
            i += (size_t)k;
            continue;
        }
        if (sbuf_put(&b, s + run, i - run) != FG_OK || sbuf_put(&b, "\xEF\xBF\xBD", 3) != FG_OK)
            goto nomem;
        bad++;
        i++;
        /* Skip the continuation bytes of the broken sequence so one bad char gives one U+FFFD. */
        while (i < n && (s[i] & 0xC0) == 0x80 && !utf8_seq(s + i, n - i))
            i++;
        run = i;
    }
    if (sbuf_put(&b, s + run, n - run) != FG_OK)
        goto nomem;
    *out = b.p;
    *out_len = b.n;
    *n_bad = bad;
    return FG_OK;
nomem:
    sbuf_free(&b);
    return fg_error(FG_ERR_NOMEM, "utf8 repair: out of memory for %zu bytes", n);
}

/* ---- input streams: plain, gzip, zstd behind one buffered reader ----
 * gzip is inflated here rather than through gzread: gzread passes non-gzip bytes through
 * as if they were text and does not say where a stream broke. */
enum { IN_PLAIN, IN_GZ, IN_ZST };
#define IN_BUF (1 << 20)
#define ZIN_BUF (1 << 17)
#define ZST_SLICE (1 << 14)

typedef struct instream {
    int kind;
    FILE *f;
    z_stream zs;
    bool zs_init, gz_member; /* inflate state made; inside a gzip member */
    uint64_t gz_members;     /* gzip members read to their end */
    ZSTD_DCtx *z;
    uint8_t *zin; /* compressed input buffer (gzip and zstd) */
    ZSTD_inBuffer zb;
    uint8_t *buf; /* cap bytes (>= IN_BUF) of decoded input */
    size_t pos, len, cap;
    bool eof;
    char err[224];        /* decompression or read error, "" when none */
    uint64_t err_offset;  /* byte of the file (compressed stream) where err was found */
    uint64_t err_decoded; /* decoded bytes delivered before it */
    uint64_t raw_read;    /* bytes read from disk */
    uint64_t out_bytes;   /* decoded bytes delivered */
    uint64_t max_out;     /* compressed files: decoded bytes allowed (UINT64_MAX: no limit) */
    bool over;            /* stopped at max_out with more data left */
    size_t zlast;         /* last ZSTD_decompressStream result: 0 when a frame just ended */
    bool last_nl;         /* the last in_line ended at a '\n' */
    uint64_t line_total;  /* bytes of the last in_line's line, the skipped part included */
} instream;

static fg_status in_open(instream *in, const char *path, uint64_t max_out)
{
    memset(in, 0, sizeof *in);
    in->max_out = UINT64_MAX;
    size_t n = strlen(path);
    if (n > 3 && !strcmp(path + n - 3, ".gz"))
        in->kind = IN_GZ;
    else if (n > 4 && !strcmp(path + n - 4, ".zst"))
        in->kind = IN_ZST;
    if (in->kind != IN_PLAIN)
        in->max_out = max_out; /* plain files cannot expand: their size on disk is the bound */
    in->buf = fg_malloc(IN_BUF);
    if (!in->buf)
        return FG_ERR_NOMEM;
    in->cap = IN_BUF;
    in->f = fopen(path, "rb");
    if (!in->f) {
        fg_free(in->buf);
        in->buf = NULL;
        return fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (in->kind == IN_GZ) {
        in->zin = fg_malloc(ZIN_BUF);
        if (!in->zin || inflateInit2(&in->zs, 16 + MAX_WBITS) != Z_OK)
            return FG_ERR_NOMEM;
        in->zs_init = true;
    } else if (in->kind == IN_ZST) {
        in->z = ZSTD_createDCtx();
        in->zin = fg_malloc(ZSTD_DStreamInSize());
        if (!in->z || !in->zin)
            return FG_ERR_NOMEM;
    }
    return FG_OK;
}

static void in_close(instream *in)
{
    if (in->zs_init)
        inflateEnd(&in->zs);
    if (in->f)
        fclose(in->f);
    if (in->z)
        ZSTD_freeDCtx(in->z);
    fg_free(in->zin);
    fg_free(in->buf);
    memset(in, 0, sizeof *in);
}

static void in_fail(instream *in, uint64_t offset, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void in_fail(instream *in, uint64_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(in->err, sizeof in->err, fmt, ap);
    va_end(ap);
    in->err_offset = offset;
    in->err_decoded = in->out_bytes; /* in_fill adds what the failing call still decoded */
    in->eof = true;
}

/* Inflates into in->buf; returns the bytes produced (0 at the end or on error). Members
 * are read one after another (concatenated gzip); zero bytes after the last member
 * (padding) are ignored, anything else there is an error. */
static size_t gz_fill(instream *in)
{
    z_stream *zs = &in->zs;
    zs->next_out = in->buf;
    zs->avail_out = IN_BUF;
    while (zs->avail_out == IN_BUF) {
        if (zs->avail_in == 0) {
            size_t k = fread(in->zin, 1, ZIN_BUF, in->f);
            if (k == 0) {
                if (ferror(in->f))
                    in_fail(in, in->raw_read, "read error: %s", strerror(errno));
                else if (in->gz_member)
                    in_fail(in, in->raw_read, "gzip: unexpected end of file (truncated stream)");
                in->eof = true;
                break;
            }
            in->raw_read += k;
            zs->next_in = in->zin;
            zs->avail_in = (uInt)k;
        }
        uint64_t at = in->raw_read - zs->avail_in; /* file offset of next_in */
        if (!in->gz_member) {
            if (in->gz_members > 0 && zs->next_in[0] == 0) { /* padding after a member */
                zs->next_in++;
                zs->avail_in--;
                continue;
            }
            if (zs->next_in[0] != 0x1f || (zs->avail_in > 1 && zs->next_in[1] != 0x8b)) {
                in_fail(in, at, "gzip: %s (byte 0x%02x where the gzip magic 1f 8b must be)",
                        at == 0 ? "not gzip data" : "garbage after the last gzip member", zs->next_in[0]);
                break;
            }
            inflateReset(zs);
            in->gz_member = true;
        }
        int rc = inflate(zs, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            in->gz_member = false;
            in->gz_members++;
            continue;
        }
        if (rc == Z_OK || (rc == Z_BUF_ERROR && zs->avail_in == 0))
            continue;
        in_fail(in, in->raw_read - zs->avail_in, "gzip: %s", zs->msg ? zs->msg : zError(rc));
        break;
    }
    return IN_BUF - zs->avail_out;
}

/* Decompresses into in->buf; returns the bytes produced (0 at the end or on error). */
static size_t zst_fill(instream *in)
{
    ZSTD_outBuffer ob = {in->buf, IN_BUF, 0};
    while (ob.pos < IN_BUF / 2 && !in->eof) { /* small slices: fill the buffer over several */
        if (in->zb.pos == in->zb.size) {
            size_t k = fread(in->zin, 1, ZSTD_DStreamInSize(), in->f);
            in->raw_read += k;
            if (k == 0) {
                if (ferror(in->f))
                    in_fail(in, in->raw_read, "read error: %s", strerror(errno));
                else if (in->zlast != 0)
                    in_fail(in, in->raw_read, "zstd: truncated frame (unexpected end of file)");
                in->eof = true;
                break;
            }
            in->zb.src = in->zin;
            in->zb.size = k;
            in->zb.pos = 0;
        }
        /* Input goes in in slices of ZST_SLICE bytes: an error is then located within a
         * slice, and what the blocks before it decoded has been delivered already. */
        size_t at = in->zb.pos, end = in->zb.size - at > ZST_SLICE ? at + ZST_SLICE : in->zb.size;
        ZSTD_inBuffer win = {in->zb.src, end, at};
        in->zlast = ZSTD_decompressStream(in->z, &ob, &win);
        in->zb.pos = win.pos;
        if (ZSTD_isError(in->zlast)) {
            uint64_t base = in->raw_read - in->zb.size; /* file offset of zin[0] */
            in_fail(in, base + at, "zstd: %s (in compressed bytes %llu..%llu)", ZSTD_getErrorName(in->zlast),
                    (unsigned long long)(base + at), (unsigned long long)(base + end - 1));
            break;
        }
    }
    return ob.pos;
}

/* Refills the buffer; false at end of data, on error (in->err set) or at the decoded
 * size limit (in->over set). Bytes decoded before an error are delivered first. */
static bool in_fill(instream *in)
{
    if (in->eof)
        return false;
    in->pos = in->len = 0;
    size_t k;
    if (in->kind == IN_PLAIN) {
        k = fread(in->buf, 1, IN_BUF, in->f);
        in->raw_read += k;
        if (k == 0) {
            if (ferror(in->f))
                in_fail(in, in->raw_read, "read error: %s", strerror(errno));
            in->eof = true;
        }
    } else {
        k = in->kind == IN_GZ ? gz_fill(in) : zst_fill(in);
    }
    if (k > in->max_out - in->out_bytes) { /* a decompression bomb stops here */
        k = (size_t)(in->max_out - in->out_bytes);
        in->over = true;
        in->eof = true;
    }
    in->out_bytes += k;
    in->len = k;
    if (in->err[0])
        in->err_decoded = in->out_bytes;
    return k > 0;
}

/* Compressed bytes consumed so far (where reading stopped). */
static uint64_t in_consumed(const instream *in)
{
    if (in->kind == IN_GZ)
        return in->raw_read - in->zs.avail_in;
    if (in->kind == IN_ZST)
        return in->raw_read - (in->zb.size - in->zb.pos);
    return in->raw_read;
}

/* Puts s[0..n) back in front of the unread input (WARC resynchronisation). */
static fg_status in_unread(instream *in, const void *s, size_t n)
{
    size_t rest = in->len - in->pos;
    if (n + rest > in->cap) {
        uint8_t *b = fg_realloc(in->buf, n + rest);
        if (!b)
            return FG_ERR_NOMEM;
        in->buf = b;
        in->cap = n + rest;
    }
    memmove(in->buf + n, in->buf + in->pos, rest);
    memcpy(in->buf, s, n);
    in->pos = 0;
    in->len = n + rest;
    return FG_OK;
}

/* Reads one line (without the '\n'; a trailing '\r' is kept) into b (reset first).
 * Returns 1 for a line, 0 at end of data, -1 on out-of-memory. Lines beyond max bytes
 * are cut: *cut is set and the rest of the line is skipped (read, not stored), so the
 * memory a line takes is bounded by max whatever its length. in->line_total gets the
 * whole line's length, in->last_nl whether it ended at a '\n'. */
static int in_line(instream *in, sbuf *b, size_t max, bool *cut)
{
    b->n = 0;
    *cut = false;
    in->last_nl = false;
    in->line_total = 0;
    bool any = false;
    for (;;) {
        if (in->pos == in->len && !in_fill(in))
            return any ? 1 : 0;
        any = true;
        uint8_t *s = in->buf + in->pos;
        size_t avail = in->len - in->pos;
        uint8_t *nl = memchr(s, '\n', avail);
        size_t take = nl ? (size_t)(nl - s) : avail;
        size_t room = b->n < max ? max - b->n : 0;
        if (take > room)
            *cut = true;
        size_t k = take < room ? take : room;
        if (sbuf_reserve_max(b, k, max) != FG_OK || sbuf_put(b, s, k) != FG_OK)
            return -1;
        in->line_total += take;
        in->pos += take + (nl ? 1 : 0);
        if (nl) {
            in->last_nl = true;
            return 1;
        }
    }
}

/* Reads up to n bytes; the first keep of them are appended to b (NULL: none), the rest
 * only consumed. Returns bytes consumed. */
static uint64_t in_take(instream *in, sbuf *b, uint64_t n, uint64_t keep)
{
    uint64_t got = 0;
    while (got < n) {
        if (in->pos == in->len && !in_fill(in))
            break;
        size_t take = in->len - in->pos;
        if (take > n - got)
            take = (size_t)(n - got);
        if (b && got < keep) {
            size_t k = keep - got < take ? (size_t)(keep - got) : take;
            if (sbuf_reserve_max(b, k, b->n + (size_t)(keep - got)) != FG_OK ||
                sbuf_put(b, in->buf + in->pos, k) != FG_OK)
                break;
        }
        in->pos += take;
        got += take;
    }
    return got;
}

/* Reads up to n bytes into b (appending). Returns bytes read. */
static size_t in_read(instream *in, sbuf *b, size_t n)
{
    return (size_t)in_take(in, b, n, n);
}

/* ---- reader ---- */
enum { FMT_SKIP = -1, FMT_TEXT = 0, FMT_HTML = 1, FMT_JSONL = 2, FMT_WARC = 3, FMT_JSON_ARRAY = 4 };

struct fg_data_reader {
    char **files;
    int n_files, cap_files;
    int cur; /* index of the open file, -1 before the first */
    int fmt; /* of the open file */
    bool open;
    instream in;
    uint64_t line; /* lines or records read in the open file */
    uint64_t bytes_done_closed, bytes_total;
    sbuf line_buf, skipped;
    json_t *array; /* FMT_JSON_ARRAY: the loaded array */
    size_t array_i;
    uint64_t warc_skipped;
    fg_data_reader_limits lim;
    bool limit_reported; /* the open file's file_too_large document was produced */
    sbuf errors;         /* "path: byte N: message\n" per file with a read error */
    uint64_t n_error_files;
    fg_status last_read_error; /* FG_ERR_IO (cannot open) or FG_ERR_CORRUPT, for fail_on_read_error */
    bool json_ext;             /* the open file is named .json (maybe one array, not lines) */
};

static int fmt_from_name(const char *path)
{
    char name[512];
    const char *base = strrchr(path, '/');
    snprintf(name, sizeof name, "%s", base ? base + 1 : path);
    size_t n = strlen(name);
    if (n > 3 && !strcasecmp(name + n - 3, ".gz"))
        name[n -= 3] = 0;
    else if (n > 4 && !strcasecmp(name + n - 4, ".zst"))
        name[n -= 4] = 0;
    const char *dot = strrchr(name, '.');
    if (!dot)
        return FMT_SKIP;
    static const struct {
        const char *ext;
        int fmt;
    } map[] = {{".jsonl", FMT_JSONL}, {".ndjson", FMT_JSONL}, {".json", FMT_JSONL}, {".html", FMT_HTML},
               {".htm", FMT_HTML},    {".xhtml", FMT_HTML},   {".warc", FMT_WARC},  {".wet", FMT_WARC},
               {".wat", FMT_WARC},    {".txt", FMT_TEXT},     {".text", FMT_TEXT},  {".md", FMT_TEXT}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcasecmp(dot, map[i].ext))
            return map[i].fmt;
    return FMT_SKIP;
}

static fg_status add_file(fg_data_reader *r, const char *path)
{
    if (r->n_files == r->cap_files) {
        int cap = r->cap_files ? 2 * r->cap_files : 16;
        char **f = fg_realloc(r->files, (size_t)cap * sizeof *f);
        if (!f)
            return FG_ERR_NOMEM;
        r->files = f;
        r->cap_files = cap;
    }
    r->files[r->n_files] = fg_strdup(path);
    if (!r->files[r->n_files])
        return FG_ERR_NOMEM;
    r->n_files++;
    struct stat st;
    if (stat(path, &st) == 0)
        r->bytes_total += (uint64_t)st.st_size;
    return FG_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static fg_status walk(fg_data_reader *r, const char *path, bool explicit_path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return fg_error(FG_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat lst;
    if (!explicit_path && S_ISDIR(st.st_mode) && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        /* symlinked directories inside a walk are not followed: no cycles */
        sbuf_put(&r->skipped, path, strlen(path));
        sbuf_put(&r->skipped, " (symlinked directory)\n", 23);
        return FG_OK;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (!explicit_path && fmt_from_name(path) == FMT_SKIP) {
            sbuf_put(&r->skipped, path, strlen(path));
            sbuf_putc(&r->skipped, '\n');
            return FG_OK;
        }
        return add_file(r, path);
    }
    DIR *d = opendir(path);
    if (!d)
        return fg_error(FG_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    fg_status st2 = FG_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = fg_realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) {
                st2 = FG_ERR_NOMEM;
                goto done;
            }
            names = nn;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[n] = fg_malloc(len);
        if (!names[n]) {
            st2 = FG_ERR_NOMEM;
            goto done;
        }
        snprintf(names[n], len, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", e->d_name);
        n++;
    }
    if (n > 1)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n && st2 == FG_OK; i++)
        st2 = walk(r, names[i], false);
done:
    for (int i = 0; i < n; i++)
        fg_free(names[i]);
    fg_free(names);
    closedir(d);
    return st2;
}

fg_status fg_data_reader_open(fg_data_reader **out, const char *const *paths, int n_paths)
{
    *out = NULL;
    fg_data_reader *r = fg_calloc(1, sizeof *r);
    if (!r)
        return FG_ERR_NOMEM;
    r->cur = -1;
    fg_data_reader_limits_init(&r->lim);
    sbuf_putc(&r->skipped, 0);
    r->skipped.n = 0;
    sbuf_putc(&r->errors, 0);
    r->errors.n = 0;
    for (int i = 0; i < n_paths; i++) {
        fg_status st = walk(r, paths[i], true);
        if (st != FG_OK) {
            fg_data_reader_close(r);
            return st;
        }
    }
    *out = r;
    return FG_OK;
}

/* tokenize's summary counts files (added for `frugal tokenize`, which reads through here) */
int fg_data_reader_n_files(const fg_data_reader *r)
{
    return r ? r->n_files : 0;
}

void fg_data_reader_close(fg_data_reader *r)
{
    if (!r)
        return;
    if (r->open)
        in_close(&r->in);
    for (int i = 0; i < r->n_files; i++)
        fg_free(r->files[i]);
    fg_free(r->files);
    sbuf_free(&r->line_buf);
    sbuf_free(&r->skipped);
    sbuf_free(&r->errors);
    if (r->array)
        json_decref(r->array);
    fg_free(r);
}

uint64_t fg_data_reader_bytes_done(const fg_data_reader *r)
{
    return r->bytes_done_closed + (r->open ? r->in.raw_read : 0);
}
uint64_t fg_data_reader_bytes_total(const fg_data_reader *r)
{
    return r->bytes_total;
}
const char *fg_data_reader_skipped(const fg_data_reader *r)
{
    return r->skipped.p ? r->skipped.p : "";
}
uint64_t fg_data_reader_warc_skipped(const fg_data_reader *r)
{
    return r->warc_skipped;
}

void fg_data_reader_limits_init(fg_data_reader_limits *l)
{
    memset(l, 0, sizeof *l);
    l->max_doc_bytes = (size_t)1 << 30;
    l->max_file_bytes = FG_DATA_DEFAULT_MAX_FILE_BYTES;
}

void fg_data_reader_set_limits(fg_data_reader *r, const fg_data_reader_limits *l)
{
    r->lim = *l;
    if (r->lim.max_doc_bytes < FG_DATA_EXCERPT_BYTES)
        r->lim.max_doc_bytes = FG_DATA_EXCERPT_BYTES;
    if (r->lim.max_file_bytes == 0)
        r->lim.max_file_bytes = FG_DATA_DEFAULT_MAX_FILE_BYTES;
}

const char *fg_data_reader_errors(const fg_data_reader *r)
{
    return r->errors.p ? r->errors.p : "";
}

uint64_t fg_data_reader_error_files(const fg_data_reader *r)
{
    return r->n_error_files;
}

void fg_doc_free(fg_doc *d)
{
    if (!d)
        return;
    if (d->text != d->raw)
        fg_free(d->text);
    fg_free(d->raw);
    fg_free(d->source);
    fg_free(d->charset);
    fg_free(d->meta);
    fg_free(d->detail);
    memset(d, 0, sizeof *d);
    d->label = -1;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = fg_malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Takes ownership of b's bytes as doc->raw. */
static void take_raw(fg_doc *doc, sbuf *b)
{
    if (!b->p)
        sbuf_reserve(b, 0);
    doc->raw = b->p;
    doc->raw_len = b->n;
    memset(b, 0, sizeof *b);
}

static void close_file(fg_data_reader *r)
{
    if (r->open) {
        r->bytes_done_closed += r->in.raw_read;
        in_close(&r->in);
        r->open = false;
    }
}

/* Records a read error of the open file (once per file: the stream stops at the first)
 * and warns; returns the detail text for the read_error document (owned). */
static char *note_read_error(fg_data_reader *r, const char *what)
{
    const char *path = r->files[r->cur];
    char *d = dup_printf("%s: %s at byte %llu of the file (after %llu decoded bytes)%s%s", path, r->in.err,
                         (unsigned long long)r->in.err_offset, (unsigned long long)r->in.err_decoded, what ? "; " : "",
                         what ? what : "");
    FG_WARN("%s", d ? d : path);
    char line[512];
    int k = snprintf(line, sizeof line, "%s: byte %llu: %s\n", path, (unsigned long long)r->in.err_offset, r->in.err);
    sbuf_put(&r->errors, line, k < (int)sizeof line ? (size_t)k : sizeof line - 1);
    r->n_error_files++;
    r->last_read_error = FG_ERR_CORRUPT;
    r->in.err[0] = 0; /* reported: not again at the end of the file */
    return d;
}

/* Cuts raw bytes held in b to the excerpt an oversized document keeps, and gives back
 * the memory past it (the document waits in a batch until it is written). */
static void keep_excerpt(sbuf *b)
{
    if (b->n > FG_DATA_EXCERPT_BYTES) {
        b->n = FG_DATA_EXCERPT_BYTES;
        b->p[b->n] = 0;
    }
    if (b->cap > b->n + 1) {
        char *p = fg_realloc(b->p, b->n + 1);
        if (p) {
            b->p = p;
            b->cap = b->n + 1;
        }
    }
}

/* The decoded-size limit of a .gz/.zst file stopped the stream (in.over) at the end of
 * what was just read: the document in flight becomes the file_too_large reject. */
static bool at_file_limit(const fg_data_reader *r)
{
    return r->in.over && r->in.pos == r->in.len && !r->limit_reported;
}

static char *file_limit_detail(fg_data_reader *r)
{
    r->limit_reported = true;
    char b1[32];
    return dup_printf("%s: more than %llu decoded bytes (%s, limit max_file_bytes / --max-file-mb); reading stopped "
                      "at byte %llu of the compressed file, the rest was not read",
                      r->files[r->cur], (unsigned long long)r->lim.max_file_bytes,
                      fg_fmt_bytes(b1, sizeof b1, (double)r->lim.max_file_bytes),
                      (unsigned long long)in_consumed(&r->in));
}

static char *doc_limit_detail(const fg_data_reader *r, const char *what, uint64_t seen, bool seen_all)
{
    char b1[32];
    return dup_printf("%s: %s of %s%llu bytes exceeds max_doc_bytes / --max-doc-mb (%zu bytes, %s); only its first "
                      "%d bytes are kept here",
                      r->files[r->cur], what, seen_all ? "" : "more than ", (unsigned long long)seen,
                      r->lim.max_doc_bytes, fg_fmt_bytes(b1, sizeof b1, (double)r->lim.max_doc_bytes),
                      FG_DATA_EXCERPT_BYTES);
}

static fg_status open_next_file(fg_data_reader *r)
{
    close_file(r);
    if (r->array) {
        json_decref(r->array);
        r->array = NULL;
    }
    r->cur++;
    if (r->cur >= r->n_files)
        return FG_OK;
    const char *path = r->files[r->cur];
    r->limit_reported = false;
    fg_status st = in_open(&r->in, path, r->lim.max_file_bytes);
    if (st != FG_OK) {
        in_close(&r->in); /* frees whatever in_open allocated before failing */
        return st;
    }
    r->open = true;
    r->line = 0;
    r->fmt = fmt_from_name(path);
    if (r->fmt == FMT_SKIP)
        r->fmt = FMT_TEXT;
    r->json_ext = strstr(path, ".json") && !strstr(path, ".jsonl") && !strstr(path, ".ndjson");
    /* Sniff: WARC by its version line, whatever the name says. */
    if (r->in.pos == r->in.len)
        in_fill(&r->in);
    if (r->in.len - r->in.pos >= 5 && !memcmp(r->in.buf + r->in.pos, "WARC/", 5))
        r->fmt = FMT_WARC;
    return FG_OK;
}

/* A whole file as one document (text or HTML), then the file is closed. At most
 * max_doc_bytes + 1 bytes are read: a larger file is a doc_too_large excerpt. */
static void read_whole(fg_data_reader *r, fg_doc *doc)
{
    sbuf b = {0};
    size_t lim = r->lim.max_doc_bytes;
    while (b.n <= lim && in_read(&r->in, &b, lim + 1 - b.n) > 0) {
    }
    doc->format = r->fmt == FMT_HTML ? FG_DOC_HTML : FG_DOC_TEXT;
    doc->source = fg_strdup(r->files[r->cur]);
    if (b.n > lim) {
        keep_excerpt(&b);
        doc->reject = "doc_too_large";
        doc->detail = doc_limit_detail(r, "a document", lim, false);
    } else if (r->in.err[0]) {
        doc->reject = "read_error";
        char what[96];
        snprintf(what, sizeof what, "the document holds the %zu bytes decoded before it", b.n);
        doc->detail = note_read_error(r, what);
    } else if (at_file_limit(r)) {
        keep_excerpt(&b);
        doc->reject = "file_too_large";
        doc->detail = file_limit_detail(r);
    }
    take_raw(doc, &b);
    close_file(r);
}

/* Header value after "Name:" in a header block, copied into out (trimmed). */
static bool header_value(const char *block, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = block, *end = block + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            size_t k = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
            memcpy(out, v, k);
            out[k] = 0;
            return true;
        }
        p = eol + 1;
    }
    return false;
}

static void charset_from_content_type(const char *ct, char *out, size_t cap)
{
    out[0] = 0;
    const char *c = strcasestr(ct, "charset=");
    if (!c)
        return;
    c += 8;
    while (*c == '"' || *c == '\'')
        c++;
    size_t k = 0;
    while (c[k] && c[k] != ';' && c[k] != '"' && c[k] != '\'' && c[k] != ' ' && c[k] != '>' && c[k] != '/' &&
           c[k] != '\t' && c[k] != '\r' && c[k] != '\n' && k < cap - 1)
        k++;
    memcpy(out, c, k);
    out[k] = 0;
}

/* Content-Length is sometimes wrong (hand-made or re-encoded files). A payload that runs
 * into the next record is cut at the "\nWARC/1." line and the rest put back; a payload
 * followed by something other than the next record's version line is extended up to it. */
static void warc_resync(fg_data_reader *r, sbuf *body)
{
    const char *m = body->n ? memmem(body->p, body->n, "\nWARC/1.", 8) : NULL;
    if (m) {
        size_t i = (size_t)(m - body->p) + 1;
        in_unread(&r->in, body->p + i, body->n - i);
        body->n = i;
        body->p[i] = 0;
        return;
    }
    sbuf *lb = &r->line_buf;
    sbuf pending = {0};
    bool cut;
    for (;;) {
        /* bounded: past max_doc_bytes the record is too large anyway (the caller rejects
         * it), and what follows is read as out of sync */
        if (body->n + pending.n > r->lim.max_doc_bytes)
            break;
        int k = in_line(&r->in, lb, r->lim.max_doc_bytes, &cut);
        if (k <= 0)
            break;
        if (lb->n >= 7 && !memcmp(lb->p, "WARC/1.", 7)) {
            sbuf_putc(lb, '\n');
            in_unread(&r->in, lb->p, lb->n);
            break;
        }
        sbuf_put(&pending, lb->p, lb->n);
        sbuf_putc(&pending, '\n');
        bool blank = lb->n == 0 || (lb->n == 1 && lb->p[0] == '\r');
        if (!blank) { /* real continuation: move what is pending into the body */
            sbuf_put(body, pending.p, pending.n);
            pending.n = 0;
        }
    }
    sbuf_free(&pending);
}

/* One WARC record. Returns 1 when a document was produced, 0 when the record was
 * skipped (not a document), -1 at end of file. */
static int read_warc(fg_data_reader *r, fg_doc *doc)
{
    sbuf *lb = &r->line_buf;
    bool cut;
    int k;
    /* Skip blank lines between records, then expect the version line. */
    do {
        k = in_line(&r->in, lb, 1 << 16, &cut);
        if (k <= 0)
            return -1;
    } while (lb->n == 0 || (lb->n == 1 && lb->p[0] == '\r'));
    const char *path = r->files[r->cur];
    r->line++;
    if (lb->n < 5 || memcmp(lb->p, "WARC/", 5) != 0) {
        /* Out of sync: the rest of the file is one damaged record (read, an excerpt kept). */
        sbuf rest = {0};
        sbuf_put(&rest, lb->p, lb->n);
        sbuf_putc(&rest, '\n');
        uint64_t n = r->in.line_total + 1 + in_take(&r->in, &rest, UINT64_MAX, FG_DATA_EXCERPT_BYTES);
        keep_excerpt(&rest);
        take_raw(doc, &rest);
        doc->source = dup_printf("%s#%llu", path, (unsigned long long)r->line);
        doc->reject = "broken_warc";
        doc->detail = dup_printf("%s: record %llu: expected a WARC/1.x version line; the rest of the file (%llu "
                                 "bytes) is this record, its first %d bytes kept here",
                                 path, (unsigned long long)r->line, (unsigned long long)n, FG_DATA_EXCERPT_BYTES);
        return 1;
    }
    sbuf hdr = {0};
    for (;;) {
        k = in_line(&r->in, lb, 1 << 16, &cut);
        if (k <= 0 || lb->n == 0 || (lb->n == 1 && lb->p[0] == '\r'))
            break;
        if (hdr.n < (1 << 16)) { /* a header block past 64 KiB is not a WARC header: bounded */
            sbuf_put(&hdr, lb->p, lb->n);
            sbuf_putc(&hdr, '\n');
        }
    }
    char type[64] = "", clen[32] = "", uri[2048] = "", rid[128] = "", date[64] = "", ctype[256] = "";
    header_value(hdr.p, hdr.n, "WARC-Type", type, sizeof type);
    header_value(hdr.p, hdr.n, "Content-Length", clen, sizeof clen);
    header_value(hdr.p, hdr.n, "WARC-Target-URI", uri, sizeof uri);
    header_value(hdr.p, hdr.n, "WARC-Record-ID", rid, sizeof rid);
    header_value(hdr.p, hdr.n, "WARC-Date", date, sizeof date);
    header_value(hdr.p, hdr.n, "Content-Type", ctype, sizeof ctype);
    sbuf_free(&hdr);
    uint64_t want = strtoull(clen, NULL, 10);
    /* A payload over max_doc_bytes is read past, keeping 64 KiB (HTTP headers, to tell
     * whether it is a document at all); the memory a record takes stays bounded. */
    bool big = want > r->lim.max_doc_bytes;
    sbuf body = {0};
    uint64_t got = in_take(&r->in, &body, want, big ? (1u << 16) : want);
    if (got == want && !big)
        warc_resync(r, &body);
    if (body.n > r->lim.max_doc_bytes)
        big = true;
    bool is_doc = !strcmp(type, "conversion") || !strcmp(type, "response") || !strcmp(type, "resource");
    if (got < want) {
        if (big)
            keep_excerpt(&body);
        take_raw(doc, &body);
        doc->source = dup_printf("%s#%llu", path, (unsigned long long)r->line);
        if (at_file_limit(r)) {
            doc->reject = "file_too_large";
            doc->detail = file_limit_detail(r);
            return 1;
        }
        doc->reject = "read_error";
        if (!r->in.err[0]) /* a plain file that ends inside the payload */
            in_fail(&r->in, in_consumed(&r->in), "WARC payload truncated (end of file)");
        char what[2300];
        snprintf(what, sizeof what, "record %llu (%s %s): payload truncated at %llu of %llu bytes",
                 (unsigned long long)r->line, type, uri, (unsigned long long)got, (unsigned long long)want);
        doc->detail = note_read_error(r, what);
        return 1;
    }
    if (!is_doc) {
        sbuf_free(&body);
        r->warc_skipped++;
        return 0;
    }
    char charset[64] = "";
    size_t skip = 0;
    if (!strcmp(type, "response")) {
        /* HTTP headers, then the body; only HTML (or untyped) responses are documents. */
        const char *sep = body.p ? strstr(body.p, "\r\n\r\n") : NULL;
        size_t hlen = sep ? (size_t)(sep - body.p) + 4 : body.n;
        char hct[256] = "";
        header_value(body.p, hlen, "Content-Type", hct, sizeof hct);
        if (hct[0] && !strcasestr(hct, "html")) {
            sbuf_free(&body);
            r->warc_skipped++;
            return 0;
        }
        charset_from_content_type(hct, charset, sizeof charset);
        skip = hlen;
        doc->format = FG_DOC_HTML;
    } else {
        charset_from_content_type(ctype, charset, sizeof charset);
        doc->format = strcasestr(ctype, "html") ? FG_DOC_HTML : FG_DOC_TEXT;
    }
    if (big) {
        keep_excerpt(&body);
        take_raw(doc, &body);
        doc->source = dup_printf("%s#%llu", path, (unsigned long long)r->line);
        doc->reject = "doc_too_large";
        doc->detail = doc_limit_detail(r, "a WARC record", want, true);
        return 1;
    }
    if (skip) {
        memmove(body.p, body.p + skip, body.n - skip);
        body.n -= skip;
        body.p[body.n] = 0;
    }
    take_raw(doc, &body);
    doc->source = dup_printf("%s#%llu", path, (unsigned long long)r->line);
    if (charset[0])
        doc->charset = fg_strdup(charset);
    sbuf m = {0};
    sbuf_put(&m, "\"url\":\"", 7);
    sbuf_json_escape(&m, uri, strlen(uri));
    sbuf_put(&m, "\",\"warc_record_id\":\"", 20);
    sbuf_json_escape(&m, rid, strlen(rid));
    sbuf_put(&m, "\",\"warc_date\":\"", 15);
    sbuf_json_escape(&m, date, strlen(date));
    sbuf_putc(&m, '"');
    doc->meta = m.p;
    return 1;
}

/* A .json file whose first line is not a whole object: load it (at most max_doc_bytes);
 * an array of objects yields its elements, anything else is one rejected record. */
static int start_json_file(fg_data_reader *r, fg_doc *doc, sbuf *first)
{
    sbuf all = {0};
    sbuf_put(&all, first->p, first->n);
    sbuf_putc(&all, '\n');
    size_t lim = r->lim.max_doc_bytes;
    while (all.n <= lim && in_read(&r->in, &all, lim + 1 - all.n) > 0) {
    }
    if (all.n > lim) {
        keep_excerpt(&all);
        take_raw(doc, &all);
        doc->source = fg_strdup(r->files[r->cur]);
        doc->reject = "doc_too_large";
        doc->detail = doc_limit_detail(r, "a .json file (not JSON lines, so loaded whole)", lim, false);
        close_file(r);
        return 1;
    }
    json_error_t err;
    json_t *v = json_loadb(all.p, all.n, JSON_ALLOW_NUL, &err);
    if (v && json_is_array(v)) {
        sbuf_free(&all);
        r->array = v;
        r->array_i = 0;
        r->fmt = FMT_JSON_ARRAY;
        return 0;
    }
    take_raw(doc, &all);
    doc->source = fg_strdup(r->files[r->cur]);
    doc->reject = "broken_json";
    if (v)
        doc->detail =
            dup_printf("%s:1:1: a JSON file must hold one object per line or an array of objects", r->files[r->cur]);
    else
        doc->detail = dup_printf("%s:%d:%d: %s", r->files[r->cur], err.line, err.column, err.text);
    if (v)
        json_decref(v);
    return 1;
}

static bool blank_line(const sbuf *b)
{
    return b->n == 0 || (b->n == 1 && b->p[0] == '\r');
}

/* The next JSON line of the open file into doc: 1 a document, 0 continue (the file
 * turned out to be a .json array), -1 end of file, -2 out of memory. */
static int next_json_line(fg_data_reader *r, fg_doc *doc)
{
    const char *path = r->files[r->cur];
    bool cut = false;
    int k;
    do {
        k = in_line(&r->in, &r->line_buf, r->lim.max_doc_bytes, &cut);
        r->line++;
    } while (k == 1 && blank_line(&r->line_buf));
    if (k < 0)
        return -2;
    if (k == 0)
        return -1;
    bool limit = !r->in.last_nl && at_file_limit(r);
    if (cut || limit) {
        keep_excerpt(&r->line_buf);
        take_raw(doc, &r->line_buf);
        doc->format = FG_DOC_JSON;
        doc->source = dup_printf("%s:%llu", path, (unsigned long long)r->line);
        doc->reject = limit ? "file_too_large" : "doc_too_large";
        doc->detail = limit ? file_limit_detail(r) : doc_limit_detail(r, "a line", r->in.line_total, true);
        return 1;
    }
    if (r->line == 1 && r->json_ext) {
        /* .json: one object per line, or else the whole file is one JSON value. */
        json_error_t err;
        json_t *v = json_loadb(r->line_buf.p, r->line_buf.n, JSON_ALLOW_NUL, &err);
        bool whole_obj = v && json_is_object(v);
        if (v)
            json_decref(v);
        if (!whole_obj && fg_data_utf8_valid(r->line_buf.p, r->line_buf.n))
            return start_json_file(r, doc, &r->line_buf);
    }
    take_raw(doc, &r->line_buf);
    doc->format = FG_DOC_JSON;
    doc->source = dup_printf("%s:%llu", path, (unsigned long long)r->line);
    return 1;
}

static fg_status reader_next(fg_data_reader *r, fg_doc *doc, bool *got)
{
    memset(doc, 0, sizeof *doc);
    doc->label = -1;
    *got = false;
    for (;;) {
        if (!r->open && !r->array) {
            fg_status st = open_next_file(r);
            if (st != FG_OK) {
                /* An unreadable file is a rejected record, so the run goes on. */
                const char *path = r->files[r->cur];
                doc->raw = fg_strdup("");
                doc->source = fg_strdup(path);
                doc->reject = "read_error";
                doc->detail = fg_strdup(fg_last_error());
                FG_WARN("%s", fg_last_error());
                sbuf_put(&r->errors, fg_last_error(), strlen(fg_last_error()));
                sbuf_putc(&r->errors, '\n');
                r->n_error_files++;
                r->last_read_error = st == FG_ERR_NOMEM ? FG_ERR_NOMEM : FG_ERR_IO;
                *got = true;
                return FG_OK;
            }
            if (r->cur >= r->n_files)
                return FG_OK;
        }
        const char *path = r->files[r->cur];
        if (r->fmt == FMT_TEXT || r->fmt == FMT_HTML) {
            read_whole(r, doc); /* closes the file */
            r->line = 1;
            *got = true;
            return FG_OK;
        }
        if (r->fmt == FMT_JSON_ARRAY) {
            if (r->array_i >= json_array_size(r->array)) {
                json_decref(r->array);
                r->array = NULL;
                close_file(r);
                continue;
            }
            json_t *e = json_array_get(r->array, r->array_i++);
            char *s = json_dumps(e, JSON_COMPACT);
            doc->raw = fg_strdup(s ? s : "null");
            free(s); /* jansson allocates with malloc */
            doc->raw_len = strlen(doc->raw);
            doc->format = FG_DOC_JSON;
            doc->source = dup_printf("%s[%zu]", path, r->array_i - 1);
            *got = true;
            return FG_OK;
        }
        int k = r->fmt == FMT_JSONL ? next_json_line(r, doc) : read_warc(r, doc);
        if (k == -2)
            return fg_error(FG_ERR_NOMEM, "%s:%llu: out of memory reading a line", path, (unsigned long long)r->line);
        if (k == 1) {
            *got = true;
            return FG_OK;
        }
        if (k == 0)
            continue;
        /* End of this file: a decompression error, or the decoded-size limit, becomes a
         * rejected record of its own (the documents before it were delivered). */
        if (r->in.err[0] || (r->in.over && !r->limit_reported)) {
            doc->raw = fg_strdup("");
            doc->source = dup_printf("%s:%llu", path, (unsigned long long)r->line);
            if (r->in.err[0]) {
                char what[96];
                snprintf(what, sizeof what, "the stream ends after record/line %llu", (unsigned long long)r->line);
                doc->reject = "read_error";
                doc->detail = note_read_error(r, what);
            } else {
                doc->reject = "file_too_large";
                doc->detail = file_limit_detail(r);
            }
            close_file(r);
            *got = true;
            return FG_OK;
        }
        close_file(r);
    }
}

fg_status fg_data_reader_next(fg_data_reader *r, fg_doc *doc, bool *got)
{
    fg_status st = reader_next(r, doc, got);
    if (st == FG_OK && *got && r->lim.fail_on_read_error && doc->reject && !strcmp(doc->reject, "read_error")) {
        st = fg_error(r->last_read_error != FG_OK ? r->last_read_error : FG_ERR_CORRUPT,
                      "%s (fail_on_read_error is set)", doc->detail ? doc->detail : doc->source);
        fg_doc_free(doc);
        *got = false;
    }
    return st;
}

/* ---- decoding ---- */
static bool label_positive(const char *v, const char *positives)
{
    size_t n = strlen(v);
    const char *p = positives;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t k = c ? (size_t)(c - p) : strlen(p);
        if (k == n && !strncasecmp(p, v, n))
            return true;
        if (!c)
            break;
        p = c + 1;
    }
    return false;
}

/* doc->label from a JSON object's label_field (a string, integer or boolean, compared
 * as text against positives); left as it is when the field is absent. */
static void set_label(fg_doc *doc, const json_t *obj, const char *label_field, const char *positives)
{
    json_t *l = json_object_get(obj, label_field);
    char lv[64] = "";
    if (json_is_string(l))
        snprintf(lv, sizeof lv, "%s", json_string_value(l));
    else if (json_is_integer(l))
        snprintf(lv, sizeof lv, "%lld", (long long)json_integer_value(l));
    else if (json_is_boolean(l))
        snprintf(lv, sizeof lv, "%s", json_is_true(l) ? "true" : "false");
    if (l)
        doc->label = label_positive(lv, positives) ? 1 : 0;
}

/* Charset named by an HTML <meta> tag (<meta charset=x> or <meta http-equiv content="...;
 * charset=x">) within the first 8 KiB, into out ("" when none). Only <meta> tags count:
 * a <script charset="utf-8"> before the real <meta charset="gb2312"> once made GB2312
 * pages decode as UTF-8 (issue 16). */
static void sniff_meta_charset(const char *s, size_t n, char *out, size_t cap)
{
    out[0] = 0;
    size_t k = n < 8192 ? n : 8192;
    for (size_t i = 0; i + 5 < k; i++) {
        if (s[i] != '<' || strncasecmp(s + i + 1, "meta", 4) != 0 || isalnum((unsigned char)s[i + 5]))
            continue;
        const char *end = memchr(s + i, '>', k - i);
        if (!end)
            return;
        char tag[1024];
        size_t tl = (size_t)(end - (s + i));
        if (tl >= sizeof tag)
            tl = sizeof tag - 1;
        memcpy(tag, s + i, tl);
        tag[tl] = 0;
        for (size_t j = 0; j < tl; j++)
            if (!tag[j])
                tag[j] = ' ';
        charset_from_content_type(tag, out, cap);
        if (out[0])
            return;
        i = (size_t)(end - s);
    }
}

/* Charset from a byte-order mark, and the BOM's length (0 when none). */
static size_t bom_charset(const char *s, size_t n, char *out, size_t cap)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF) {
        snprintf(out, cap, "UTF-8");
        return 3;
    }
    if (n >= 2 && u[0] == 0xFF && u[1] == 0xFE) {
        snprintf(out, cap, "UTF-16LE");
        return 2;
    }
    if (n >= 2 && u[0] == 0xFE && u[1] == 0xFF) {
        snprintf(out, cap, "UTF-16BE");
        return 2;
    }
    return 0;
}

/* uchardet's guess for bytes that are neither declared nor valid UTF-8 ("" when it has
 * none). Only the first 64 KiB are shown to it: enough for a confident guess. */
static void detect_charset(const char *s, size_t n, char *out, size_t cap)
{
    out[0] = 0;
    uchardet_t u = uchardet_new();
    if (!u)
        return;
    if (uchardet_handle_data(u, s, n < 65536 ? n : 65536) == 0) {
        uchardet_data_end(u);
        const char *cs = uchardet_get_charset(u);
        if (cs && cs[0] && strcasecmp(cs, "ASCII") != 0)
            snprintf(out, cap, "%s", cs);
    }
    uchardet_delete(u);
}

/* Converts raw from charset to UTF-8 with iconv; bad bytes become U+FFFD (counted).
 * Returns false when the charset is unknown (the caller then treats bytes as UTF-8). */
static bool convert_charset(fg_doc *doc, const char *charset, size_t skip)
{
    const char *cs = charset;
    if (!strcasecmp(cs, "gb2312") || !strcasecmp(cs, "gbk") || !strcasecmp(cs, "x-gbk"))
        cs = "GB18030";
    else if (!strcasecmp(cs, "iso-8859-1") || !strcasecmp(cs, "latin1") || !strcasecmp(cs, "us-ascii"))
        cs = "WINDOWS-1252"; /* as browsers do (WHATWG encoding standard) */
    iconv_t cd = iconv_open("UTF-8", cs);
    if (cd == (iconv_t)-1)
        return false;
    sbuf b = {0};
    if (sbuf_reserve(&b, doc->raw_len * 2 + 64) != FG_OK) {
        iconv_close(cd);
        return false;
    }
    char *in = doc->raw + skip;
    size_t inleft = doc->raw_len - skip;
    while (inleft > 0) {
        if (sbuf_reserve(&b, inleft * 2 + 64) != FG_OK)
            break;
        char *o = b.p + b.n;
        size_t oleft = b.cap - b.n - 1;
        size_t rc = iconv(cd, &in, &inleft, &o, &oleft);
        b.n = (size_t)(o - b.p);
        if (rc == (size_t)-1) {
            if (errno == E2BIG)
                continue;
            /* EILSEQ / EINVAL: replace one byte. */
            sbuf_put(&b, "\xEF\xBF\xBD", 3);
            doc->utf8_repairs++;
            in++;
            inleft--;
        }
    }
    iconv_close(cd);
    b.p[b.n] = 0;
    if (doc->text != doc->raw)
        fg_free(doc->text);
    doc->text = b.p;
    doc->len = b.n;
    return true;
}

static bool is_utf8_name(const char *cs)
{
    return !strcasecmp(cs, "utf-8") || !strcasecmp(cs, "utf8");
}

/* More than 1 in 8 non-ASCII bytes start an invalid UTF-8 sequence: the bytes are in
 * another charset, not UTF-8 with a few broken characters (which is repaired instead:
 * a guess from a few bad bytes would garble the rest). */
static bool mostly_invalid_utf8(const char *s, size_t n)
{
    size_t high = 0, bad = 0, i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        high++;
        size_t k = u[i] >= 0xF0 ? 4 : u[i] >= 0xE0 ? 3 : u[i] >= 0xC2 ? 2 : 0;
        if (k == 0 || i + k > n || !fg_data_utf8_valid(s + i, k)) {
            bad++;
            i++;
        } else {
            i += k;
        }
    }
    return high > 0 && bad * 8 > high;
}

/* ---- JSONL fast path ----
 * The usual line is an object with a plain "text" string and a few small members. Here
 * the text is decoded by a direct scan and only the other members go through jansson
 * (which validates them and reads the label), instead of building and re-serialising a
 * DOM of the whole line. Anything unusual (escaped keys, lone surrogates, duplicate or
 * non-string "text", raw control characters, trailing garbage) returns 0 and the caller
 * uses jansson on the whole line, which also produces the error message. */
static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

/* Skips a JSON value leniently (jansson validates it later); returns the index after it
 * or 0 on malformed structure. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    int depth = 0;
    do {
        if (i >= n)
            return 0;
        char c = s[i];
        if (c == '"') {
            i++;
            while (i < n && s[i] != '"')
                i += s[i] == '\\' ? 2 : 1;
            if (i >= n)
                return 0;
            i++;
        } else if (c == '{' || c == '[') {
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return 0;
            i++;
        } else if (depth == 0) {
            while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' && s[i] != '\r' &&
                   s[i] != '\n')
                i++;
        } else {
            i++;
        }
    } while (depth > 0);
    return i;
}

static int hex4(const char *p, uint32_t *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0)
            return 0;
        *v = (*v << 4) | (uint32_t)d;
    }
    return 1;
}

/* Decodes the JSON string starting after the opening quote at s[i]; *end gets the index
 * after the closing quote. Returns the fg_malloc'd text (length *len) or NULL (fallback). */
static char *decode_string(const char *s, size_t n, size_t i, size_t *end, size_t *len)
{
    size_t j = i;
    while (j < n && s[j] != '"' && s[j] != '\\' && (unsigned char)s[j] >= 0x20)
        j++;
    /* escapes only shrink the text, so n - i bytes are enough */
    char *o = fg_malloc(n - i + 1);
    if (!o)
        return NULL;
    memcpy(o, s + i, j - i);
    size_t w = j - i;
    while (j < n) {
        unsigned char c = (unsigned char)s[j];
        if (c == '"') {
            o[w] = 0;
            *end = j + 1;
            *len = w;
            return o;
        }
        if (c < 0x20)
            break;
        if (c != '\\') {
            o[w++] = (char)c;
            j++;
            continue;
        }
        if (j + 1 >= n)
            break;
        char e = s[j + 1];
        j += 2;
        switch (e) {
        case '"': o[w++] = '"'; continue;
        case '\\': o[w++] = '\\'; continue;
        case '/': o[w++] = '/'; continue;
        case 'b': o[w++] = '\b'; continue;
        case 'f': o[w++] = '\f'; continue;
        case 'n': o[w++] = '\n'; continue;
        case 'r': o[w++] = '\r'; continue;
        case 't': o[w++] = '\t'; continue;
        case 'u': {
            uint32_t cp, lo;
            if (j + 4 > n || !hex4(s + j, &cp))
                goto fallback;
            j += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                goto fallback; /* lone low surrogate */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j + 6 > n || s[j] != '\\' || s[j + 1] != 'u' || !hex4(s + j + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    goto fallback;
                j += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            w += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp,
                                              (utf8proc_uint8_t *)o + w); /* <= 4 bytes for >= 6 bytes of input */
            continue;
        }
        default: goto fallback;
        }
    }
fallback:
    fg_free(o);
    return NULL;
}

static int json_fast(fg_doc *doc, const char *s, size_t n, const char *label_field, const char *positives)
{
    size_t i = skip_ws(s, n, 0), spans[64][2];
    int n_spans = 0;
    char *text = NULL;
    size_t text_len = 0;
    if (i >= n || s[i] != '{')
        return 0;
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == '}')
        return 0; /* empty object: let jansson say "no text" */
    for (;;) {
        if (i >= n || s[i] != '"')
            goto fallback;
        size_t k0 = i + 1, k1 = k0;
        while (k1 < n && s[k1] != '"' && s[k1] != '\\')
            k1++;
        if (k1 >= n || s[k1] != '"')
            goto fallback;
        size_t m = skip_ws(s, n, k1 + 1);
        if (m >= n || s[m] != ':')
            goto fallback;
        m = skip_ws(s, n, m + 1);
        if (k1 - k0 == 4 && !memcmp(s + k0, "text", 4)) {
            if (text || m >= n || s[m] != '"')
                goto fallback;
            text = decode_string(s, n, m + 1, &m, &text_len);
            if (!text)
                goto fallback;
        } else {
            size_t e = skip_value(s, n, m);
            if (!e || n_spans == 64)
                goto fallback;
            spans[n_spans][0] = i;
            spans[n_spans][1] = e;
            n_spans++;
            m = e;
        }
        m = skip_ws(s, n, m);
        if (m < n && s[m] == ',') {
            i = skip_ws(s, n, m + 1);
            continue;
        }
        if (m < n && s[m] == '}') {
            i = skip_ws(s, n, m + 1);
            break;
        }
        goto fallback;
    }
    if (i != n || !text)
        goto fallback;
    if (n_spans) {
        sbuf mb = {0};
        sbuf_putc(&mb, '{');
        for (int k = 0; k < n_spans; k++) {
            if (k)
                sbuf_putc(&mb, ',');
            sbuf_put(&mb, s + spans[k][0], spans[k][1] - spans[k][0]);
        }
        sbuf_putc(&mb, '}');
        json_error_t err;
        json_t *v = mb.p ? json_loadb(mb.p, mb.n, JSON_ALLOW_NUL, &err) : NULL;
        if (!v || !json_is_object(v) || json_object_get(v, "text")) {
            if (v)
                json_decref(v);
            sbuf_free(&mb);
            goto fallback;
        }
        if (label_field)
            set_label(doc, v, label_field, positives);
        json_decref(v);
        /* meta: the members verbatim, without the braces */
        memmove(mb.p, mb.p + 1, mb.n - 2);
        mb.p[mb.n - 2] = 0;
        doc->meta = mb.p;
    }
    doc->text = text;
    doc->len = text_len;
    return 1;
fallback:
    fg_free(text);
    return 0;
}

fg_status fg_data_doc_decode(fg_doc *doc, const char *label_field, const char *positive_labels)
{
    if (doc->reject)
        return FG_OK;
    if (!positive_labels)
        positive_labels = "1,true,keep,good,ham,pos";
    if (doc->format == FG_DOC_JSON) {
        const char *src = doc->raw;
        size_t n = doc->raw_len;
        char *fixed = NULL;
        if (!fg_data_utf8_valid(src, n)) {
            size_t fn;
            uint32_t bad;
            if (fg_data_utf8_repair(src, n, &fixed, &fn, &bad) != FG_OK)
                return FG_ERR_NOMEM;
            src = fixed;
            n = fn;
            doc->utf8_repairs += bad;
        }
        if (json_fast(doc, src, n, label_field, positive_labels)) {
            fg_free(fixed);
            return FG_OK;
        }
        json_error_t err;
        json_t *v = json_loadb(src, n, JSON_ALLOW_NUL, &err);
        fg_free(fixed);
        if (!v) {
            doc->reject = "broken_json";
            doc->detail = dup_printf("%s:%d: %s", doc->source, err.column, err.text);
            return FG_OK;
        }
        json_t *t = json_is_object(v) ? json_object_get(v, "text") : NULL;
        if (!json_is_object(v) || !json_is_string(t)) {
            doc->reject = json_is_object(v) ? "no_text_field" : "broken_json";
            doc->detail = dup_printf("%s: %s", doc->source,
                                     json_is_object(v) ? "no \"text\" string field" : "line is not a JSON object");
            json_decref(v);
            return FG_OK;
        }
        size_t tl = json_string_length(t);
        doc->text = fg_strndup(json_string_value(t), tl);
        if (!doc->text) {
            json_decref(v);
            return FG_ERR_NOMEM;
        }
        doc->len = tl;
        json_object_del(v, "text");
        if (label_field)
            set_label(doc, v, label_field, positive_labels);
        if (json_object_size(v) > 0) {
            char *m = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (m) {
                size_t ml = strlen(m);
                doc->meta = fg_malloc(ml);
                if (doc->meta) {
                    memcpy(doc->meta, m + 1, ml - 2); /* without the braces */
                    doc->meta[ml - 2] = 0;
                }
                free(m); /* jansson allocates with malloc */
            }
        }
        json_decref(v);
        return FG_OK;
    }
    /* Text / HTML: BOM, declared charset (HTTP/WARC header, then <meta> when the bytes are
     * not UTF-8), then UTF-8 check; bytes that are still mostly invalid UTF-8 go to uchardet. */
    char cs[64] = "";
    size_t bom = bom_charset(doc->raw, doc->raw_len, cs, sizeof cs);
    if (bom == 3)
        cs[0] = 0; /* UTF-8: checked below, with the BOM kept out of the text */
    else if (!bom && doc->charset)
        snprintf(cs, sizeof cs, "%s", doc->charset);
    else if (!bom && doc->format == FG_DOC_HTML && !fg_data_utf8_valid(doc->raw, doc->raw_len))
        sniff_meta_charset(doc->raw, doc->raw_len, cs, sizeof cs);
    if (cs[0] && !is_utf8_name(cs) && convert_charset(doc, cs, bom))
        return FG_OK;
    if (fg_data_utf8_valid(doc->raw + bom, doc->raw_len - bom)) {
        doc->text = doc->raw + bom;
        doc->len = doc->raw_len - bom;
        if (bom) { /* text must own its buffer or alias raw: copy without the BOM */
            doc->text = fg_strndup(doc->raw + bom, doc->raw_len - bom);
            if (!doc->text)
                return FG_ERR_NOMEM;
        }
        return FG_OK;
    }
    if (!bom && doc->format == FG_DOC_HTML && mostly_invalid_utf8(doc->raw, doc->raw_len)) {
        char guess[64];
        detect_charset(doc->raw, doc->raw_len, guess, sizeof guess);
        if (guess[0] && !is_utf8_name(guess) && convert_charset(doc, guess, 0))
            return FG_OK;
    }
    uint32_t bad = 0;
    fg_status st = fg_data_utf8_repair(doc->raw + bom, doc->raw_len - bom, &doc->text, &doc->len, &bad);
    doc->utf8_repairs += bad;
    return st;
}
