/* format.c: the checkpoint file: writing one file crash-safely, reading and verifying
 * its header, manifest and tensors, applying a delta to its base, listing a directory.
 * Layout (docs/CHECKPOINTS.md): header | tensor blobs | JSON manifest | trailer.
 * Leaves out the writer object, the background thread and retention (writer.c). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "ckpt_impl.h"

#define MAX_MANIFEST_BYTES (1u << 30)

/* ---- names ---- */
void ckpt_file_name(char *buf, size_t cap, long step, bool delta)
{
    snprintf(buf, cap, "ckpt-%010ld-%s.fgck", step, delta ? "delta" : "full");
}

bool ckpt_parse_name(const char *name, long *step, bool *delta)
{
    if (strncmp(name, "ckpt-", 5) != 0)
        return false;
    const char *p = name + 5;
    if (*p < '0' || *p > '9')
        return false;
    char *end = NULL;
    errno = 0;
    long s = strtol(p, &end, 10);
    if (errno || s < 0)
        return false;
    if (!strcmp(end, "-full.fgck"))
        *delta = false;
    else if (!strcmp(end, "-delta.fgck"))
        *delta = true;
    else
        return false;
    *step = s;
    return true;
}

/* ---- little-endian helpers ---- */
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static uint32_t crc(const void *p, size_t n)
{
    return (uint32_t)crc32_z(0L, (const Bytef *)p, n);
}

/* ---- a growing text buffer for the manifest (fg_malloc'd) ---- */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = fg_realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal: quotes, backslashes and control bytes escaped; other bytes
 * (UTF-8) copied. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_add(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        sb_add(b, run, (size_t)(s - run));
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof esc, "\\%c", c);
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        sb_add(b, esc, strlen(esc));
        run = s + 1;
    }
    sb_add(b, run, (size_t)(s - run));
    sb_add(b, "\"", 1);
}

/* ---- writing: every file through fg_file_tx (core.h: temp file, fsync, rename, fsync
 * of the directory) ---- */

/* The `latest` pointer: atomic against a kill, but without fsyncs: loading never trusts
 * it (it picks the newest file that verifies), so after a power loss a stale pointer
 * costs nothing, while two more fsyncs per checkpoint would cost the synchronous mode. */
static fg_status write_latest(const char *dir, const char *fname)
{
    char path[PATH_MAX], line[80];
    if (snprintf(path, sizeof path, "%s/latest", dir) >= (int)sizeof path)
        return fg_error(FG_ERR_INVALID, "%s: checkpoint directory path too long", dir);
    int n = snprintf(line, sizeof line, "%s\n", fname);
    return fg_file_commit_flags(path, line, (size_t)n, FG_FILE_NO_SYNC);
}

fg_status fg_ckpt_read_latest(const char *dir, char *name, size_t cap)
{
    char path[PATH_MAX], buf[128];
    name[0] = 0;
    if (snprintf(path, sizeof path, "%s/latest", dir) >= (int)sizeof path)
        return fg_error(FG_ERR_INVALID, "%s: checkpoint directory path too long", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? FG_OK : fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return fg_error(FG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    buf[n] = 0;
    size_t len = strcspn(buf, "\n");
    long step;
    bool delta;
    bool one_line = (size_t)n == len || ((size_t)n == len + 1 && buf[len] == '\n');
    buf[len] = 0;
    if (!one_line || !ckpt_parse_name(buf, &step, &delta) || len + 1 > cap)
        return fg_error(FG_ERR_FORMAT,
                        "%s: not a checkpoint pointer (want one line 'ckpt-<step>-full|delta.fgck', %zd bytes "
                        "found); it is informative only: loading picks the newest checkpoint that verifies",
                        path, n);
    memcpy(name, buf, len + 1);
    return FG_OK;
}

static uint64_t new_uid(void)
{
    uint64_t u = 0;
    if (getrandom(&u, sizeof u, 0) != (ssize_t)sizeof u || u == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        u = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40) ^ 1;
    }
    return u;
}

/* Tensor i of a streamed job: the caller's pieces written raw as they come, the CRC
 * summed over them (so the writer holds one chunk, never the tensor). Every piece is
 * asked for even after a write failed (fg_file_tx keeps the first failure for commit):
 * the ranks feeding fill must be drained. Only fill's own failure stops. */
static fg_status stream_tensor(fg_file_tx *tx, const ckpt_job *job, int i, ckpt_scratch *s, fg_ckpt_entry *e,
                               uint64_t off)
{
    size_t chunk = job->chunk ? job->chunk : (size_t)1 << 20;
    if (s->shuf_cap < chunk) {
        fg_free(s->shuf);
        s->shuf_cap = 0;
        if (!(s->shuf = fg_malloc(chunk)))
            return FG_ERR_NOMEM;
        s->shuf_cap = chunk;
    }
    uLong c = crc32_z(0L, Z_NULL, 0);
    for (size_t at = 0; at < job->bytes[i]; at += chunk) {
        size_t k = job->bytes[i] - at < chunk ? job->bytes[i] - at : chunk;
        fg_status st = job->fill(job->fill_ctx, i, at, s->shuf, k);
        if (st != FG_OK)
            return st;
        c = crc32_z(c, s->shuf, k);
        fg_file_tx_write(tx, s->shuf, k);
    }
    snprintf(e->name, sizeof e->name, "%s", job->names[i]);
    e->bytes = job->bytes[i];
    e->offset = off;
    e->stored_bytes = job->bytes[i];
    e->crc32 = e->stored_crc32 = (uint32_t)c;
    e->encoding = FG_CKPT_ENC_RAW;
    if (job->delay_ms > 0)
        usleep((useconds_t)job->delay_ms * 1000);
    return FG_OK;
}

fg_status ckpt_write_file(const char *dir, const ckpt_job *job, ckpt_scratch *s, char *fname, uint64_t *uid,
                          uint64_t *file_bytes)
{
    char path[PATH_MAX];
    ckpt_file_name(fname, 64, job->step, job->delta);
    if (snprintf(path, sizeof path, "%s/%s", dir, fname) >= (int)sizeof path)
        return fg_error(FG_ERR_INVALID, "%s: checkpoint directory path too long", dir);
    *uid = new_uid();
    fg_status st = FG_OK;
    sbuf m = {0};
    fg_ckpt_entry *e = fg_calloc((size_t)job->n, sizeof *e);
    if (!e)
        return FG_ERR_NOMEM;
    fg_file_tx tx;
    st = fg_file_tx_open(&tx, path, 0);
    if (st != FG_OK)
        goto free_entries;
    uint8_t hdr[CKPT_HEADER_BYTES] = {0};
    memcpy(hdr, CKPT_MAGIC, 8);
    put_u32(hdr + 8, CKPT_VERSION);
    st = fg_file_tx_write(&tx, hdr, sizeof hdr);
    uint64_t off = CKPT_HEADER_BYTES;
    for (int i = 0; i < job->n && st == FG_OK && job->fill; i++) {
        st = stream_tensor(&tx, job, i, s, &e[i], off);
        off += e[i].stored_bytes;
    }
    for (int i = 0; i < job->n && st == FG_OK && !job->fill; i++) {
        int enc = job->delta ? FG_CKPT_ENC_XOR_SHUF_ZSTD : job->compress_full ? FG_CKPT_ENC_SHUF_ZSTD : FG_CKPT_ENC_RAW;
        int level = job->delta ? job->delta_level : CKPT_FULL_ZSTD_LEVEL;
        const uint8_t *stored;
        size_t stored_bytes;
        st = ckpt_encode(s, enc, level, job->data[i], job->delta ? job->base[i] : NULL, job->bytes[i], &stored,
                         &stored_bytes);
        if (st != FG_OK)
            break;
        snprintf(e[i].name, sizeof e[i].name, "%s", job->names[i]);
        e[i].bytes = job->bytes[i];
        e[i].offset = off;
        e[i].stored_bytes = stored_bytes;
        e[i].crc32 = crc(job->data[i], job->bytes[i]);
        e[i].stored_crc32 = stored == job->data[i] ? e[i].crc32 : crc(stored, stored_bytes);
        e[i].encoding = enc;
        st = fg_file_tx_write(&tx, stored, stored_bytes);
        off += stored_bytes;
        if (job->delay_ms > 0)
            usleep((useconds_t)job->delay_ms * 1000);
    }
    if (st != FG_OK)
        goto abort_file;

    char uidhex[17];
    snprintf(uidhex, sizeof uidhex, "%016" PRIx64, *uid);
    sb_printf(&m, "{\"format\":\"frugal-ckpt\",\"version\":%d,\"step\":%ld,\"kind\":\"%s\",\"uid\":\"%s\",",
              CKPT_VERSION, job->step, job->delta ? "delta" : "full", uidhex);
    if (job->delta) {
        snprintf(uidhex, sizeof uidhex, "%016" PRIx64, job->base_uid);
        sb_printf(&m, "\"base_step\":%ld,\"base_uid\":\"%s\",\"base_file\":", job->base_step, uidhex);
        sb_json_str(&m, job->base_file);
        sb_add(&m, ",", 1);
    }
    sb_printf(&m, "\"created\":%.3f,\"tensors\":[", (double)time(NULL));
    for (int i = 0; i < job->n; i++) {
        sb_add(&m, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
        sb_json_str(&m, e[i].name);
        sb_printf(&m,
                  ",\"bytes\":%" PRIu64 ",\"encoding\":\"%s\",\"offset\":%" PRIu64 ",\"stored_bytes\":%" PRIu64
                  ",\"crc32\":%" PRIu32 ",\"stored_crc32\":%" PRIu32 "}",
                  e[i].bytes, fg_ckpt_encoding_name(e[i].encoding), e[i].offset, e[i].stored_bytes, e[i].crc32,
                  e[i].stored_crc32);
    }
    sb_add(&m, "],\"meta\":", 9);
    sb_json_str(&m, job->meta ? job->meta : "");
    sb_add(&m, "}", 1);
    if (m.oom) {
        st = FG_ERR_NOMEM;
        goto abort_file;
    }
    uint8_t tr[CKPT_TRAILER_BYTES];
    put_u64(tr, off);
    put_u64(tr + 8, m.len);
    put_u32(tr + 16, crc(m.p, m.len));
    put_u32(tr + 20, crc(tr, 20));
    memcpy(tr + 24, CKPT_END_MAGIC, 8);
    fg_file_tx_write(&tx, m.p, m.len);
    fg_file_tx_write(&tx, tr, sizeof tr);
    /* commit reports the first failed write, if any, and only then removes the temp file */
    st = fg_file_tx_commit(&tx);
    if (st == FG_OK) {
        *file_bytes = off + m.len + CKPT_TRAILER_BYTES;
        st = write_latest(dir, fname);
    }
    goto free_entries;
abort_file:
    fg_file_tx_abort(&tx);
free_entries:
    fg_free(m.p);
    fg_free(e);
    return st;
}

/* ---- reading ---- */
static fg_status read_at(int fd, void *buf, size_t n, uint64_t off, const char *path)
{
    uint8_t *q = buf;
    while (n) {
        ssize_t r = pread(fd, q, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return fg_error(FG_ERR_IO, "%s: read at byte %" PRIu64 " failed: %s", path, off, strerror(errno));
        if (r == 0)
            return fg_error(FG_ERR_CORRUPT, "%s: truncated: file ends before byte %" PRIu64, path, off);
        q += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return FG_OK;
}

static fg_status get_int(json_t *o, const char *key, long long lo, long long *v, const char *path, const char *where)
{
    json_t *x = json_object_get(o, key);
    if (!json_is_integer(x) || json_integer_value(x) < lo)
        return fg_error(FG_ERR_FORMAT, "%s: manifest%s: '%s' missing or not an integer >= %lld", path, where, key, lo);
    *v = json_integer_value(x);
    return FG_OK;
}

static fg_status get_str(json_t *o, const char *key, const char **v, const char *path, const char *where)
{
    json_t *x = json_object_get(o, key);
    if (!json_is_string(x))
        return fg_error(FG_ERR_FORMAT, "%s: manifest%s: '%s' missing or not a string", path, where, key);
    *v = json_string_value(x);
    return FG_OK;
}

static fg_status get_uid(json_t *o, const char *key, uint64_t *v, const char *path)
{
    const char *s = NULL;
    fg_status st = get_str(o, key, &s, path, "");
    if (st != FG_OK)
        return st;
    char *end = NULL;
    errno = 0;
    unsigned long long u = strtoull(s, &end, 16);
    if (errno || strlen(s) != 16 || *end)
        return fg_error(FG_ERR_FORMAT, "%s: manifest: '%s' is not 16 hex digits: '%s'", path, key, s);
    *v = u;
    return FG_OK;
}

static int encoding_from_name(const char *s)
{
    for (int e = FG_CKPT_ENC_RAW; e <= FG_CKPT_ENC_XOR_SHUF_ZSTD; e++)
        if (!strcmp(s, fg_ckpt_encoding_name(e)))
            return e;
    return -1;
}

/* Fills info from the parsed manifest; checks every entry against the data area
 * [CKPT_HEADER_BYTES, data_end). */
static fg_status parse_manifest(json_t *root, fg_ckpt_info *info, uint64_t data_end, const char *path)
{
    const char *fmt = NULL, *kind = NULL, *meta = NULL;
    long long v;
    fg_status st;
    if (!json_is_object(root))
        return fg_error(FG_ERR_FORMAT, "%s: manifest is not a JSON object", path);
    if ((st = get_str(root, "format", &fmt, path, "")) != FG_OK)
        return st;
    if (strcmp(fmt, "frugal-ckpt") != 0)
        return fg_error(FG_ERR_FORMAT, "%s: manifest format is '%s', expected 'frugal-ckpt'", path, fmt);
    if ((st = get_int(root, "version", 1, &v, path, "")) != FG_OK)
        return st;
    if (v != info->version)
        return fg_error(FG_ERR_FORMAT, "%s: manifest version %lld differs from the header's %d", path, v,
                        info->version);
    if ((st = get_int(root, "step", 0, &v, path, "")) != FG_OK)
        return st;
    info->step = (long)v;
    if ((st = get_str(root, "kind", &kind, path, "")) != FG_OK)
        return st;
    if (strcmp(kind, "full") && strcmp(kind, "delta"))
        return fg_error(FG_ERR_FORMAT, "%s: manifest kind '%s' is neither 'full' nor 'delta'", path, kind);
    info->delta = !strcmp(kind, "delta");
    if ((st = get_uid(root, "uid", &info->uid, path)) != FG_OK)
        return st;
    if (info->delta) {
        const char *bf = NULL;
        if ((st = get_int(root, "base_step", 0, &v, path, "")) != FG_OK)
            return st;
        info->base_step = (long)v;
        if ((st = get_uid(root, "base_uid", &info->base_uid, path)) != FG_OK)
            return st;
        if ((st = get_str(root, "base_file", &bf, path, "")) != FG_OK)
            return st;
        long bstep;
        bool bdelta;
        if (strlen(bf) >= sizeof info->base_file || !ckpt_parse_name(bf, &bstep, &bdelta) || bdelta ||
            bstep != info->base_step)
            return fg_error(FG_ERR_FORMAT, "%s: manifest base_file '%s' is not the full checkpoint of step %ld", path,
                            bf, info->base_step);
        snprintf(info->base_file, sizeof info->base_file, "%s", bf);
    }
    json_t *c = json_object_get(root, "created");
    info->created = json_is_number(c) ? json_number_value(c) : 0;
    if ((st = get_str(root, "meta", &meta, path, "")) != FG_OK)
        return st;
    info->meta_json = fg_strdup(meta);
    if (!info->meta_json)
        return FG_ERR_NOMEM;
    json_t *ts = json_object_get(root, "tensors");
    if (!json_is_array(ts))
        return fg_error(FG_ERR_FORMAT, "%s: manifest: 'tensors' missing or not an array", path);
    size_t nt = json_array_size(ts);
    if (nt > 1000000)
        return fg_error(FG_ERR_FORMAT, "%s: manifest lists %zu tensors", path, nt);
    info->tensors = fg_calloc(nt ? nt : 1, sizeof *info->tensors);
    if (!info->tensors)
        return FG_ERR_NOMEM;
    for (size_t i = 0; i < nt; i++) {
        json_t *t = json_array_get(ts, i);
        fg_ckpt_entry *e = &info->tensors[i];
        char where[48];
        snprintf(where, sizeof where, " tensor %zu", i);
        const char *name = NULL, *enc = NULL;
        if (!json_is_object(t))
            return fg_error(FG_ERR_FORMAT, "%s: manifest%s is not an object", path, where);
        if ((st = get_str(t, "name", &name, path, where)) != FG_OK)
            return st;
        if (!name[0] || strlen(name) >= sizeof e->name)
            return fg_error(FG_ERR_FORMAT, "%s: manifest%s: name '%s' is empty or longer than 63 bytes", path, where,
                            name);
        snprintf(e->name, sizeof e->name, "%s", name);
        if ((st = get_str(t, "encoding", &enc, path, where)) != FG_OK)
            return st;
        e->encoding = encoding_from_name(enc);
        if (e->encoding < 0)
            return fg_error(FG_ERR_UNSUPPORTED, "%s: tensor '%s' uses encoding '%s', unknown to this build", path, name,
                            enc);
        long long b, o, sb, c1, c2;
        if ((st = get_int(t, "bytes", 0, &b, path, where)) != FG_OK ||
            (st = get_int(t, "offset", CKPT_HEADER_BYTES, &o, path, where)) != FG_OK ||
            (st = get_int(t, "stored_bytes", 0, &sb, path, where)) != FG_OK ||
            (st = get_int(t, "crc32", 0, &c1, path, where)) != FG_OK ||
            (st = get_int(t, "stored_crc32", 0, &c2, path, where)) != FG_OK)
            return st;
        if ((uint64_t)o > data_end || (uint64_t)sb > data_end - (uint64_t)o || c1 > 0xffffffffll || c2 > 0xffffffffll ||
            (e->encoding == FG_CKPT_ENC_RAW && sb != b))
            return fg_error(FG_ERR_FORMAT,
                            "%s: tensor '%s': offset %lld + %lld stored bytes falls outside the data area (ends at "
                            "%" PRIu64 ") or a field is out of range",
                            path, name, o, sb, data_end);
        if (e->encoding == FG_CKPT_ENC_XOR_SHUF_ZSTD && !info->delta)
            return fg_error(FG_ERR_FORMAT, "%s: tensor '%s' is a delta in a full checkpoint", path, name);
        e->bytes = (uint64_t)b;
        e->offset = (uint64_t)o;
        e->stored_bytes = (uint64_t)sb;
        e->crc32 = (uint32_t)c1;
        e->stored_crc32 = (uint32_t)c2;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(info->tensors[j].name, e->name))
                return fg_error(FG_ERR_FORMAT, "%s: manifest names tensor '%s' twice", path, name);
        info->n_tensor = (int)i + 1;
    }
    return FG_OK;
}

void fg_ckpt_info_free(fg_ckpt_info *info)
{
    if (!info)
        return;
    fg_free(info->tensors);
    fg_free(info->meta_json);
    memset(info, 0, sizeof *info);
}

fg_status fg_ckpt_info_read(const char *path, fg_ckpt_info *info)
{
    memset(info, 0, sizeof *info);
    fg_status st = FG_OK;
    char *mtext = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = fg_error(FG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto close_file;
    }
    uint64_t size = (uint64_t)sb.st_size;
    info->file_bytes = size;
    uint8_t hdr[CKPT_HEADER_BYTES];
    if (size < 8) {
        st =
            fg_error(FG_ERR_CORRUPT, "%s: truncated (%" PRIu64 " bytes): not a complete frugal checkpoint", path, size);
        goto close_file;
    }
    if ((st = read_at(fd, hdr, size < sizeof hdr ? 8 : sizeof hdr, 0, path)) != FG_OK)
        goto close_file;
    if (memcmp(hdr, CKPT_MAGIC, 8) != 0) {
        char shown[9];
        for (int i = 0; i < 8; i++)
            shown[i] = hdr[i] >= 0x20 && hdr[i] < 0x7f ? (char)hdr[i] : '?';
        shown[8] = 0;
        st = fg_error(FG_ERR_FORMAT, "%s: byte 0: not a frugal checkpoint (magic '%s', expected '%s')", path, shown,
                      CKPT_MAGIC);
        goto close_file;
    }
    if (size < CKPT_HEADER_BYTES + CKPT_TRAILER_BYTES) {
        st =
            fg_error(FG_ERR_CORRUPT, "%s: truncated (%" PRIu64 " bytes): not a complete frugal checkpoint", path, size);
        goto close_file;
    }
    info->version = (int)get_u32(hdr + 8);
    if (get_u32(hdr + 8) > CKPT_VERSION) {
        st = fg_error(FG_ERR_UNSUPPORTED,
                      "%s: byte 8: checkpoint format version %" PRIu32
                      " is newer than this build reads (%d); use a newer frugal",
                      path, get_u32(hdr + 8), CKPT_VERSION);
        goto close_file;
    }
    if (info->version < 1 || get_u32(hdr + 12) != 0) {
        st = fg_error(FG_ERR_FORMAT, "%s: byte 8: bad version %d or flags %" PRIu32, path, info->version,
                      get_u32(hdr + 12));
        goto close_file;
    }
    uint8_t tr[CKPT_TRAILER_BYTES];
    uint64_t tpos = size - CKPT_TRAILER_BYTES;
    if ((st = read_at(fd, tr, sizeof tr, tpos, path)) != FG_OK)
        goto close_file;
    if (memcmp(tr + 24, CKPT_END_MAGIC, 8) != 0) {
        st = fg_error(FG_ERR_CORRUPT,
                      "%s: byte %" PRIu64 ": no end marker: truncated or damaged (an interrupted write?)", path,
                      tpos + 24);
        goto close_file;
    }
    if (get_u32(tr + 20) != crc(tr, 20)) {
        st = fg_error(FG_ERR_CORRUPT, "%s: byte %" PRIu64 ": trailer CRC mismatch", path, tpos);
        goto close_file;
    }
    uint64_t moff = get_u64(tr), mlen = get_u64(tr + 8);
    if (moff < CKPT_HEADER_BYTES || mlen > MAX_MANIFEST_BYTES || moff + mlen != tpos) {
        st = fg_error(FG_ERR_CORRUPT,
                      "%s: byte %" PRIu64 ": manifest at %" PRIu64 " (+%" PRIu64 ") does not end at the trailer", path,
                      tpos, moff, mlen);
        goto close_file;
    }
    mtext = fg_malloc(mlen + 1);
    if (!mtext) {
        st = FG_ERR_NOMEM;
        goto close_file;
    }
    if ((st = read_at(fd, mtext, mlen, moff, path)) != FG_OK)
        goto free_text;
    mtext[mlen] = 0;
    uint32_t got = crc(mtext, mlen);
    if (got != get_u32(tr + 16)) {
        st = fg_error(FG_ERR_CORRUPT,
                      "%s: byte %" PRIu64 ": manifest CRC mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                      path, moff, get_u32(tr + 16), got);
        goto free_text;
    }
    json_error_t jerr;
    json_t *root = json_loadb(mtext, mlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st = fg_error(FG_ERR_FORMAT, "%s: manifest (byte %" PRIu64 ") line %d column %d: %s", path, moff, jerr.line,
                      jerr.column, jerr.text);
        goto free_text;
    }
    st = parse_manifest(root, info, moff, path);
    json_decref(root);
free_text:
    fg_free(mtext);
close_file:
    close(fd);
    if (st != FG_OK) {
        fg_ckpt_info_free(info);
        info->file_bytes = 0;
    }
    return st;
}

/* ---- loading tensors ---- */

/* A checkpoint opened for reading: its info, its fd, and for a delta the same of the
 * base. */
typedef struct chain {
    const char *path;
    char bpath[PATH_MAX];
    fg_ckpt_info info, binfo;
    int fd, bfd;
    uint8_t *blob;
    size_t blob_cap;
    ckpt_scratch s;
} chain;

static void chain_close(chain *c)
{
    if (c->fd >= 0)
        close(c->fd);
    if (c->bfd >= 0)
        close(c->bfd);
    fg_ckpt_info_free(&c->info);
    fg_ckpt_info_free(&c->binfo);
    fg_free(c->blob);
    ckpt_scratch_free(&c->s);
}

static fg_status chain_open(chain *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->fd = c->bfd = -1;
    fg_status st = fg_ckpt_info_read(path, &c->info);
    if (st != FG_OK)
        return st;
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0)
        return fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!c->info.delta)
        return FG_OK;
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) : 1;
    snprintf(c->bpath, sizeof c->bpath, "%.*s/%s", dlen, slash ? path : ".", c->info.base_file);
    st = fg_ckpt_info_read(c->bpath, &c->binfo);
    if (st == FG_ERR_IO)
        return fg_error(FG_ERR_CORRUPT, "%s: this delta needs its base %s, which is missing", path, c->bpath);
    if (st != FG_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", fg_last_error());
        return fg_error(st, "%s: its base is unusable: %s", path, msg);
    }
    if (c->binfo.delta || c->binfo.uid != c->info.base_uid || c->binfo.step != c->info.base_step)
        return fg_error(FG_ERR_CORRUPT,
                        "%s: base %s is not the full checkpoint this delta was written against (uid %016" PRIx64
                        ", expected %016" PRIx64 ")",
                        path, c->bpath, c->binfo.uid, c->info.base_uid);
    c->bfd = open(c->bpath, O_RDONLY | O_CLOEXEC);
    if (c->bfd < 0)
        return fg_error(FG_ERR_IO, "%s: cannot open: %s", c->bpath, strerror(errno));
    return FG_OK;
}

static const fg_ckpt_entry *find_entry(const fg_ckpt_info *info, const char *name)
{
    for (int i = 0; i < info->n_tensor; i++)
        if (!strcmp(info->tensors[i].name, name))
            return &info->tensors[i];
    return NULL;
}

/* Reads the stored bytes of e into c->blob and checks their CRC. */
static fg_status read_blob(chain *c, int fd, const char *path, const fg_ckpt_entry *e)
{
    if (e->stored_bytes > c->blob_cap) {
        fg_free(c->blob);
        c->blob_cap = 0;
        c->blob = fg_malloc(e->stored_bytes ? e->stored_bytes : 1);
        if (!c->blob)
            return FG_ERR_NOMEM;
        c->blob_cap = e->stored_bytes;
    }
    fg_status st = read_at(fd, c->blob, e->stored_bytes, e->offset, path);
    if (st != FG_OK)
        return st;
    uint32_t got = crc(c->blob, e->stored_bytes);
    if (got != e->stored_crc32)
        return fg_error(FG_ERR_CORRUPT,
                        "%s: tensor '%s' (bytes %" PRIu64 "..%" PRIu64 "): CRC mismatch (stored %08" PRIx32
                        ", computed %08" PRIx32 ")",
                        path, e->name, e->offset, e->offset + e->stored_bytes, e->stored_crc32, got);
    return FG_OK;
}

/* Entry of `name` in the checkpoint and (delta) its base, checked to hold `bytes`. */
static fg_status lookup(chain *c, const char *name, size_t bytes, const fg_ckpt_entry **e, const fg_ckpt_entry **be)
{
    *e = find_entry(&c->info, name);
    *be = NULL;
    if (!*e)
        return fg_error(FG_ERR_FORMAT, "%s: holds no tensor '%s'", c->path, name);
    if ((*e)->bytes != bytes)
        return fg_error(FG_ERR_INVALID,
                        "%s: tensor '%s' holds %" PRIu64 " bytes, the caller expects %zu (a different config?)",
                        c->path, name, (*e)->bytes, bytes);
    if (!c->info.delta)
        return FG_OK;
    *be = find_entry(&c->binfo, name);
    if (!*be || (*be)->bytes != bytes)
        return fg_error(FG_ERR_CORRUPT, "%s: tensor '%s' is missing or of another size in the base %s", c->path, name,
                        c->bpath);
    return FG_OK;
}

/* Decodes one tensor into dst (bytes = e->bytes): base first for a delta, then the
 * XOR; the decoded CRCs are checked. */
static fg_status decode_tensor(chain *c, const fg_ckpt_entry *e, const fg_ckpt_entry *be, uint8_t *dst)
{
    fg_status st;
    if (be) {
        if ((st = read_blob(c, c->bfd, c->bpath, be)) != FG_OK)
            return st;
        if ((st = ckpt_decode(&c->s, be->encoding, dst, be->bytes, c->blob, be->stored_bytes, c->bpath, be->name)) !=
            FG_OK)
            return st;
        if (crc(dst, be->bytes) != be->crc32)
            return fg_error(FG_ERR_CORRUPT, "%s: tensor '%s': decoded bytes fail their CRC", c->bpath, be->name);
    }
    if ((st = read_blob(c, c->fd, c->path, e)) != FG_OK)
        return st;
    if ((st = ckpt_decode(&c->s, e->encoding, dst, e->bytes, c->blob, e->stored_bytes, c->path, e->name)) != FG_OK)
        return st;
    if (crc(dst, e->bytes) != e->crc32)
        return fg_error(FG_ERR_CORRUPT, "%s: tensor '%s': decoded bytes fail their CRC%s", c->path, e->name,
                        be ? " (delta applied to the wrong base?)" : "");
    return FG_OK;
}

fg_status fg_ckpt_load_file(const char *path, long *step, char **meta_json, const fg_ckpt_tensor *t, int n)
{
    chain c;
    const fg_ckpt_entry *e, *be;
    if (meta_json)
        *meta_json = NULL;
    fg_status st = chain_open(&c, path);
    /* First pass: every requested tensor exists with the right size and its stored
     * bytes (and its base's) pass their CRC, before any caller buffer is written. */
    for (int i = 0; i < n && st == FG_OK; i++) {
        for (int j = 0; j < i && st == FG_OK; j++)
            if (!strcmp(t[i].name, t[j].name))
                st = fg_error(FG_ERR_INVALID, "%s: tensor '%s' requested twice", path, t[i].name);
        if (st == FG_OK)
            st = lookup(&c, t[i].name, t[i].bytes, &e, &be);
        if (st == FG_OK && be)
            st = read_blob(&c, c.bfd, c.bpath, be);
        if (st == FG_OK)
            st = read_blob(&c, c.fd, path, e);
    }
    for (int i = 0; i < n && st == FG_OK; i++) {
        st = lookup(&c, t[i].name, t[i].bytes, &e, &be);
        if (st == FG_OK)
            st = decode_tensor(&c, e, be, t[i].data);
    }
    if (st == FG_OK && meta_json) {
        *meta_json = fg_strdup(c.info.meta_json);
        if (!*meta_json)
            st = FG_ERR_NOMEM;
    }
    if (st == FG_OK && step)
        *step = c.info.step;
    chain_close(&c);
    return st;
}

/* The stored bytes of e through a bounded buffer: their CRC checked; with a zstd encoding
 * the frame decompressed as it streams, and each piece's bytes picked out of the byte planes
 * (byte k of word i sits at k * W + i of the shuffled W-word tensor) into its dst, or XORed
 * into it (a delta over its base). Word-aligned pieces of a tensor of whole words only. */
static fg_status stream_pieces(chain *c, int fd, const char *path, const fg_ckpt_entry *e, const fg_ckpt_piece *pc,
                               int n, bool xor_into)
{
    const size_t cap = (size_t)1 << 20, W = e->bytes / 4;
    bool raw = e->encoding == FG_CKPT_ENC_RAW;
    uint8_t *in = fg_malloc(cap), *out = raw ? NULL : fg_malloc(cap);
    ZSTD_DCtx *dz = raw ? NULL : ZSTD_createDCtx();
    fg_status st = in && (raw || (out && dz)) ? FG_OK : FG_ERR_NOMEM;
    if (st == FG_OK && !raw && e->encoding != FG_CKPT_ENC_SHUF_ZSTD && e->encoding != FG_CKPT_ENC_XOR_SHUF_ZSTD)
        st = fg_error(FG_ERR_UNSUPPORTED, "%s: tensor '%s': unknown encoding %d", path, e->name, e->encoding);
    if (st == FG_OK && raw && e->stored_bytes != e->bytes)
        st = fg_error(FG_ERR_FORMAT, "%s: tensor '%s': raw size %" PRIu64 " != %" PRIu64, path, e->name,
                      e->stored_bytes, e->bytes);
    uLong got = crc32_z(0L, Z_NULL, 0);
    uint64_t pos = 0; /* decoded (shuffled) bytes seen */
    size_t zr = 1;
    for (uint64_t at = 0; at < e->stored_bytes && st == FG_OK; at += cap) {
        size_t k = e->stored_bytes - at < cap ? (size_t)(e->stored_bytes - at) : cap;
        st = read_at(fd, in, k, e->offset + at, path);
        if (st != FG_OK)
            break;
        got = crc32_z(got, in, k);
        if (raw)
            continue; /* raw pieces are read in place below, once the CRC holds */
        ZSTD_inBuffer ib = {in, k, 0};
        for (;;) {
            ZSTD_outBuffer ob = {out, cap, 0};
            zr = ZSTD_decompressStream(dz, &ob, &ib);
            if (ZSTD_isError(zr) || pos + ob.pos > e->bytes) {
                st = fg_error(FG_ERR_CORRUPT, "%s: tensor '%s': zstd: %s", path, e->name,
                              ZSTD_isError(zr) ? ZSTD_getErrorName(zr) : "frame longer than the tensor");
                break;
            }
            /* the window [pos, pos + ob.pos) of the planes, into each piece */
            for (int i = 0; i < n; i++) {
                uint64_t a = pc[i].off / 4, b = a + pc[i].bytes / 4;
                uint8_t *d = pc[i].dst;
                for (int pl = 0; pl < 4; pl++) {
                    uint64_t lo = pl * W + a > pos ? pl * W + a : pos;
                    uint64_t hi = pl * W + b < pos + ob.pos ? pl * W + b : pos + ob.pos;
                    for (uint64_t q = lo; q < hi; q++) {
                        uint8_t v = out[q - pos];
                        d[(q - pl * W - a) * 4 + (uint64_t)pl] =
                            xor_into ? d[(q - pl * W - a) * 4 + (uint64_t)pl] ^ v : v;
                    }
                }
            }
            pos += ob.pos;
            /* done: the frame ended, or this input is used up and nothing is held back
             * (a full output buffer may leave bytes inside the decoder) */
            if (zr == 0 || (ib.pos == ib.size && ob.pos < cap))
                break;
        }
    }
    if (st == FG_OK && (uint32_t)got != e->stored_crc32)
        st = fg_error(FG_ERR_CORRUPT,
                      "%s: tensor '%s' (bytes %" PRIu64 "..%" PRIu64 "): CRC mismatch (stored %08" PRIx32
                      ", computed %08" PRIx32 ")",
                      path, e->name, e->offset, e->offset + e->stored_bytes, e->stored_crc32, (uint32_t)got);
    if (st == FG_OK && !raw && (zr != 0 || pos != e->bytes))
        st = fg_error(FG_ERR_CORRUPT, "%s: tensor '%s': zstd frame holds %" PRIu64 " bytes, expected %" PRIu64, path,
                      e->name, pos, e->bytes);
    for (int i = 0; i < n && st == FG_OK && raw; i++)
        st = read_at(fd, pc[i].dst, pc[i].bytes, e->offset + pc[i].off, path);
    ZSTD_freeDCtx(dz);
    fg_free(in);
    fg_free(out);
    return st;
}

fg_status fg_ckpt_read_pieces(const char *path, const char *name, size_t bytes, const fg_ckpt_piece *pc, int n)
{
    chain c;
    const fg_ckpt_entry *e = NULL, *be = NULL;
    fg_status st = chain_open(&c, path);
    if (st == FG_OK)
        st = lookup(&c, name, bytes, &e, &be);
    bool words = bytes % 4 == 0;
    for (int i = 0; i < n && st == FG_OK; i++) {
        if (pc[i].off > bytes || pc[i].bytes > bytes - pc[i].off)
            st = fg_error(FG_ERR_INVALID, "%s: tensor '%s': piece %d (bytes %" PRIu64 "..%" PRIu64 ") out of its %zu",
                          path, name, i, pc[i].off, pc[i].off + pc[i].bytes, bytes);
        words = words && pc[i].off % 4 == 0 && pc[i].bytes % 4 == 0;
    }
    bool plain = !be && e && e->encoding == FG_CKPT_ENC_RAW;
    if (st == FG_OK && (plain || words)) {
        /* bounded: a delta's base first (its pieces), then the delta XORed into them; the
         * decoded CRCs (over whole tensors) are not checked, the stored ones are */
        if (be)
            st = stream_pieces(&c, c.bfd, c.bpath, be, pc, n, false);
        if (st == FG_OK)
            st = stream_pieces(&c, c.fd, path, e, pc, n, be != NULL);
    } else if (st == FG_OK) {
        /* bytes not whole words (no tensor of a training run): decoded whole */
        uint8_t *t = fg_malloc(bytes ? bytes : 1);
        st = t ? decode_tensor(&c, e, be, t) : FG_ERR_NOMEM;
        for (int i = 0; i < n && st == FG_OK; i++)
            memcpy(pc[i].dst, t + pc[i].off, pc[i].bytes);
        fg_free(t);
    }
    chain_close(&c);
    return st;
}

fg_status fg_ckpt_read_tensor(const char *path, const char *name, void **data, size_t *bytes)
{
    chain c;
    const fg_ckpt_entry *e = NULL, *be;
    *data = NULL;
    *bytes = 0;
    fg_status st = chain_open(&c, path);
    if (st == FG_OK) {
        e = find_entry(&c.info, name);
        if (!e)
            st = fg_error(FG_ERR_INVALID, "%s: holds no tensor '%s'", path, name);
    }
    if (st == FG_OK)
        st = lookup(&c, name, e->bytes, &e, &be);
    uint8_t *buf = NULL;
    if (st == FG_OK) {
        buf = fg_malloc(e->bytes ? e->bytes : 1);
        if (!buf)
            st = FG_ERR_NOMEM;
    }
    if (st == FG_OK)
        st = decode_tensor(&c, e, be, buf);
    if (st == FG_OK) {
        *data = buf;
        *bytes = e->bytes;
    } else {
        fg_free(buf);
    }
    chain_close(&c);
    return st;
}

fg_status fg_ckpt_verify(const char *path)
{
    chain c;
    uint8_t *buf = NULL;
    const fg_ckpt_entry *e, *be;
    fg_status st = chain_open(&c, path);
    uint64_t maxb = 1;
    for (int i = 0; st == FG_OK && i < c.info.n_tensor; i++)
        maxb = c.info.tensors[i].bytes > maxb ? c.info.tensors[i].bytes : maxb;
    if (st == FG_OK) {
        buf = fg_malloc(maxb);
        if (!buf)
            st = FG_ERR_NOMEM;
    }
    for (int i = 0; st == FG_OK && i < c.info.n_tensor; i++) {
        st = lookup(&c, c.info.tensors[i].name, c.info.tensors[i].bytes, &e, &be);
        if (st == FG_OK)
            st = decode_tensor(&c, e, be, buf);
    }
    fg_free(buf);
    chain_close(&c);
    return st;
}

/* ---- listing ---- */
typedef struct named {
    long step;
    bool delta;
    char *path;
} named;

static int cmp_named(const void *a, const void *b)
{
    const named *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? -1 : 1;
    return (int)x->delta - (int)y->delta; /* a full before a delta of the same step */
}

void fg_ckpt_list_free(char **paths, int n)
{
    for (int i = 0; paths && i < n; i++)
        fg_free(paths[i]);
    fg_free(paths);
}

fg_status fg_ckpt_list(const char *dir, char ***paths, int *n)
{
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return fg_error(FG_ERR_IO, "%s: cannot open checkpoint directory: %s", dir, strerror(errno));
    fg_status st = FG_OK;
    named *v = NULL;
    int cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long step;
        bool delta;
        if (!ckpt_parse_name(de->d_name, &step, &delta))
            continue;
        if (cnt == cap) {
            int nc = cap ? 2 * cap : 16;
            named *q = fg_realloc(v, (size_t)nc * sizeof *v);
            if (!q) {
                st = FG_ERR_NOMEM;
                break;
            }
            v = q;
            cap = nc;
        }
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        v[cnt].path = fg_malloc(len);
        if (!v[cnt].path) {
            st = FG_ERR_NOMEM;
            break;
        }
        snprintf(v[cnt].path, len, "%s/%s", dir, de->d_name);
        v[cnt].step = step;
        v[cnt].delta = delta;
        cnt++;
    }
    closedir(d);
    char **out = NULL;
    if (st == FG_OK && cnt) {
        out = fg_malloc((size_t)cnt * sizeof *out);
        if (!out)
            st = FG_ERR_NOMEM;
    }
    if (st != FG_OK) {
        for (int i = 0; i < cnt; i++)
            fg_free(v[i].path);
        fg_free(v);
        return st;
    }
    if (cnt)
        qsort(v, (size_t)cnt, sizeof *v, cmp_named);
    for (int i = 0; i < cnt; i++)
        out[i] = v[i].path;
    fg_free(v);
    *paths = out;
    *n = cnt;
    return FG_OK;
}

fg_status fg_ckpt_load_latest(const char *dir, long *step, char **meta_json, const fg_ckpt_tensor *t, int n)
{
    char **paths;
    int np;
    fg_status st = fg_ckpt_list(dir, &paths, &np);
    if (st != FG_OK)
        return st;
    if (np == 0) {
        fg_ckpt_list_free(paths, np);
        return fg_error(FG_ERR_IO, "%s: no checkpoint (ckpt-*.fgck) found", dir);
    }
    fg_status first = FG_OK;
    char first_msg[1024] = "";
    for (int i = np - 1; i >= 0; i--) {
        st = fg_ckpt_load_file(paths[i], step, meta_json, t, n);
        if (st == FG_OK) {
            if (i != np - 1)
                FG_WARN("resumed from %s, an older checkpoint, because newer ones failed verification", paths[i]);
            break;
        }
        if (st == FG_ERR_NOMEM || st == FG_ERR_INVALID) /* not the file's fault: an older one fails alike */
            break;
        if (first == FG_OK) {
            first = st;
            snprintf(first_msg, sizeof first_msg, "%s", fg_last_error());
        }
        FG_WARN("checkpoint %s is not usable: %s%s", paths[i], fg_last_error(), i ? "; trying the previous one" : "");
    }
    fg_ckpt_list_free(paths, np);
    if (st != FG_OK && st != FG_ERR_NOMEM && st != FG_ERR_INVALID)
        return fg_error(first, "%s: no checkpoint verifies; the newest failed with: %s", dir, first_msg);
    return st;
}
