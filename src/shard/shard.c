/* shard.c: token shard writer (through fg_file_tx: whole or absent; a CRC-32 per 1 MiB
 * block of tokens) and the mmap reader that validates Frugal v2 (checksummed) and v1 shards and
 * llm.c .bin token files. Leaves out batching: the training loader (src/train/loader.c)
 * cuts windows out of opened shards. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "frugal/shard.h"

#define HEADER_BYTES FG_SHARD_HEADER_BYTES
#define LLMC_MAGIC 20240520u
#define LLMC_HEADER_BYTES 1024u
#define LLMC_VOCAB 50257u /* llm.c token files hold GPT-2 ids */
#define LLMC_EOT 50256u

/* zlib's CRC-32 (IEEE 802.3), continued from crc (0 to start). zlib takes uInt lengths,
 * so large spans go in 1 GiB pieces. */
static uint32_t crc32_more(uint32_t crc, const uint8_t *p, size_t n)
{
    uLong c = crc;
    while (n > 0) {
        size_t k = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        c = crc32(c, p, (uInt)k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static uint32_t crc32_bytes(const uint8_t *p, size_t n)
{
    return crc32_more(0, p, n);
}

/* The header CRC: bytes 0..27 (v1), and for v2 also 32..63, where the v2 fields live. */
static uint32_t header_crc(const uint8_t *h, uint32_t version)
{
    uint32_t c = crc32_bytes(h, 28);
    return version >= 2 ? crc32_more(c, h + 32, FG_SHARD_HEADER_BYTES - 32) : c;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void writer_release(fg_shard_writer *w)
{
    fg_free(w->path);
    fg_free(w->crcs);
    w->path = NULL;
    w->crcs = NULL;
    w->n_blocks = w->cap_blocks = 0;
}

/* Ends the current block: its CRC goes to the table. */
static fg_status end_block(fg_shard_writer *w)
{
    if (w->n_blocks == w->cap_blocks) {
        size_t cap = w->cap_blocks ? 2 * w->cap_blocks : 64;
        uint32_t *c = fg_realloc(w->crcs, cap * sizeof *c);
        if (!c)
            return fg_error(FG_ERR_NOMEM, "%s: out of memory for the block CRC table", w->path);
        w->crcs = c;
        w->cap_blocks = cap;
    }
    w->crcs[w->n_blocks++] = w->block_crc;
    w->block_crc = 0;
    w->block_fill = 0;
    return FG_OK;
}

/* Feeds written token bytes to the per-block CRCs. */
static fg_status crc_feed(fg_shard_writer *w, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t k = FG_SHARD_BLOCK_BYTES - w->block_fill;
        if (k > n)
            k = n;
        w->block_crc = crc32_more(w->block_crc, p, k);
        w->block_fill += (uint32_t)k;
        p += k;
        n -= k;
        if (w->block_fill == FG_SHARD_BLOCK_BYTES) {
            fg_status st = end_block(w);
            if (st != FG_OK)
                return st;
        }
    }
    return FG_OK;
}

fg_status fg_shard_writer_open(fg_shard_writer *w, const char *path, uint32_t vocab_size, uint32_t eot_id,
                               uint32_t token_bytes)
{
    memset(w, 0, sizeof *w);
    w->tx.fd = -1; /* abort after a failed open must not close descriptor 0 */
    if (token_bytes == 0)
        token_bytes = vocab_size <= 65536u ? 2u : 4u;
    if (token_bytes != 2 && token_bytes != 4)
        return fg_error(FG_ERR_INVALID, "%s: token_bytes must be 2 or 4 (got %u)", path, token_bytes);
    if (vocab_size == 0 || (token_bytes == 2 && vocab_size > 65536u))
        return fg_error(FG_ERR_INVALID, "%s: vocab_size %u does not fit %u-byte tokens", path, vocab_size, token_bytes);
    if (eot_id != FG_SHARD_NO_EOT && eot_id >= vocab_size)
        return fg_error(FG_ERR_INVALID, "%s: eot_id %u >= vocab_size %u", path, eot_id, vocab_size);
    w->path = fg_strdup(path);
    if (!w->path)
        return FG_ERR_NOMEM;
    fg_status st = fg_file_tx_open(&w->tx, path, 0);
    if (st != FG_OK) {
        writer_release(w);
        return st;
    }
    w->token_bytes = token_bytes;
    w->vocab_size = vocab_size;
    w->eot_id = eot_id;
    uint8_t zero[HEADER_BYTES] = {0}; /* placeholder until close knows n_tokens */
    if ((st = fg_file_tx_write(&w->tx, zero, sizeof zero)) != FG_OK) {
        fg_shard_writer_abort(w);
        return st;
    }
    return FG_OK;
}

fg_status fg_shard_writer_write(fg_shard_writer *w, const uint32_t *ids, size_t n)
{
    uint8_t buf[4096];
    size_t per = sizeof buf / w->token_bytes;
    for (size_t i = 0; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        for (size_t j = 0; j < k; j++) {
            uint32_t id = ids[i + j];
            if (id >= w->vocab_size)
                return fg_error(FG_ERR_INVALID, "%s: token id %u at position %llu >= vocab_size %u", w->path, id,
                                (unsigned long long)(w->n_tokens + i + j), w->vocab_size);
            if (w->token_bytes == 2) {
                buf[2 * j] = (uint8_t)id;
                buf[2 * j + 1] = (uint8_t)(id >> 8);
            } else {
                put_u32(buf + 4 * j, id);
            }
        }
        fg_status st = fg_file_tx_write(&w->tx, buf, k * w->token_bytes);
        if (st != FG_OK)
            return st;
        st = crc_feed(w, buf, k * w->token_bytes);
        if (st != FG_OK)
            return st;
    }
    w->n_tokens += n;
    return FG_OK;
}

fg_status fg_shard_writer_close(fg_shard_writer *w)
{
    fg_status st = FG_OK;
    if (w->block_fill > 0 && (st = end_block(w)) != FG_OK)
        goto fail_abort;
    for (size_t i = 0; i < w->n_blocks && st == FG_OK; i++) {
        uint8_t c[4];
        put_u32(c, w->crcs[i]);
        st = fg_file_tx_write(&w->tx, c, 4);
    }
    if (st != FG_OK)
        goto fail_abort;
    uint8_t h[HEADER_BYTES] = {0};
    put_u32(h + 0, FG_SHARD_MAGIC);
    put_u32(h + 4, FG_SHARD_VERSION);
    put_u32(h + 8, w->token_bytes);
    put_u32(h + 12, w->vocab_size);
    put_u64(h + 16, w->n_tokens);
    put_u32(h + 24, w->eot_id);
    put_u32(h + 32, FG_SHARD_BLOCK_BYTES);
    put_u32(h + 28, header_crc(h, FG_SHARD_VERSION));
    if ((st = fg_file_tx_pwrite(&w->tx, 0, h, sizeof h)) != FG_OK)
        goto fail_abort;
    st = fg_file_tx_commit(&w->tx); /* ends the transaction either way */
    writer_release(w);
    return st;
fail_abort:
    fg_shard_writer_abort(w);
    return st;
}

void fg_shard_writer_abort(fg_shard_writer *w)
{
    fg_file_tx_abort(&w->tx);
    writer_release(w);
}

/* Validates a mapped file as a Frugal v2 or v1 shard or an llm.c token file; fills s. */
static fg_status parse_header(fg_shard *s, const char *path)
{
    const uint8_t *h = s->map;
    size_t size = s->map_bytes;
    if (size < 4)
        return fg_error(FG_ERR_FORMAT, "%s: file too short (%zu bytes): not a token shard", path, size);
    uint32_t magic = get_u32(h);
    if (magic == LLMC_MAGIC) {
        if (size < LLMC_HEADER_BYTES)
            return fg_error(FG_ERR_FORMAT, "%s: truncated llm.c token file: %zu bytes, header needs %u", path, size,
                            LLMC_HEADER_BYTES);
        uint32_t version = get_u32(h + 4);
        if (version != 1)
            return fg_error(FG_ERR_UNSUPPORTED, "%s: llm.c token file version %u (only 1, uint16 GPT-2 ids, is read)",
                            path, version);
        uint64_t n = get_u32(h + 8);
        if (size != LLMC_HEADER_BYTES + 2 * n)
            return fg_error(FG_ERR_FORMAT, "%s: size mismatch: header says %llu tokens (%llu bytes), file has %zu",
                            path, (unsigned long long)n, (unsigned long long)(LLMC_HEADER_BYTES + 2 * n), size);
        s->tokens = h + LLMC_HEADER_BYTES;
        s->n_tokens = n;
        s->token_bytes = 2;
        s->vocab_size = LLMC_VOCAB;
        s->eot_id = LLMC_EOT;
        s->version = 0;
        return FG_OK;
    }
    if (magic != FG_SHARD_MAGIC)
        return fg_error(FG_ERR_FORMAT, "%s: bad magic 0x%08x: not a Frugal token shard (0x%08x) or llm.c .bin file",
                        path, magic, FG_SHARD_MAGIC);
    if (size < HEADER_BYTES)
        return fg_error(FG_ERR_FORMAT, "%s: truncated: %zu bytes, the shard header needs %u", path, size, HEADER_BYTES);
    /* The version picks which bytes the CRC covers; a damaged version fails the CRC. */
    uint32_t version = get_u32(h + 4);
    uint32_t crc = header_crc(h, version);
    if (crc != get_u32(h + 28))
        return fg_error(FG_ERR_CORRUPT, "%s: corrupt header: CRC 0x%08x, stored 0x%08x", path, crc, get_u32(h + 28));
    if (version != 1 && version != FG_SHARD_VERSION)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: shard version %u (this build reads 1 and %u)", path, version,
                        FG_SHARD_VERSION);
    uint32_t tb = get_u32(h + 8);
    if (tb != 2 && tb != 4)
        return fg_error(FG_ERR_FORMAT, "%s: token_bytes %u (must be 2 or 4)", path, tb);
    uint64_t n = get_u64(h + 16);
    uint32_t bb = version >= 2 ? get_u32(h + 32) : 0;
    if (version >= 2 && (bb == 0 || bb % 4 != 0))
        return fg_error(FG_ERR_FORMAT, "%s: block_bytes %u (must be a positive multiple of 4)", path, bb);
    if (n > (UINT64_MAX / 2 - HEADER_BYTES) / tb)
        return fg_error(FG_ERR_FORMAT, "%s: n_tokens %llu is impossible", path, (unsigned long long)n);
    uint64_t data = n * tb, n_blocks = bb ? (data + bb - 1) / bb : 0;
    uint64_t want = HEADER_BYTES + data + 4 * n_blocks;
    if (size != want) {
        if (version >= 2)
            return fg_error(size < want ? FG_ERR_CORRUPT : FG_ERR_FORMAT,
                            "%s: size mismatch%s: header says %llu tokens of %u bytes + %llu block CRCs (%llu bytes), "
                            "file has %zu",
                            path, size < want ? " (truncated)" : "", (unsigned long long)n, tb,
                            (unsigned long long)n_blocks, (unsigned long long)want, size);
        return fg_error(FG_ERR_FORMAT,
                        "%s: size mismatch: header says %llu tokens of %u bytes (%llu bytes), file has %zu", path,
                        (unsigned long long)n, tb, (unsigned long long)want, size);
    }
    /* v2: every block of tokens against its CRC (the cost of this read is measured in
     * docs/FORMATS.md). */
    const uint8_t *tok = h + HEADER_BYTES, *table = tok + data;
    for (uint64_t b = 0; b < n_blocks; b++) {
        uint64_t off = b * bb, len = data - off < bb ? data - off : bb;
        uint32_t got = crc32_bytes(tok + off, (size_t)len), stored = get_u32(table + 4 * b);
        if (got != stored)
            return fg_error(FG_ERR_CORRUPT,
                            "%s: corrupt tokens: block %llu of %llu (file bytes %llu..%llu, tokens %llu..%llu) has "
                            "CRC 0x%08x, stored 0x%08x",
                            path, (unsigned long long)b, (unsigned long long)n_blocks,
                            (unsigned long long)(HEADER_BYTES + off),
                            (unsigned long long)(HEADER_BYTES + off + len - 1), (unsigned long long)(off / tb),
                            (unsigned long long)((off + len) / tb - 1), got, stored);
    }
    if (version == 1)
        FG_WARN("%s: version 1 shard has no checksum (corruption cannot be detected); re-encode it with "
                "`frugal tokenize encode` to get a version 2 shard",
                path);
    s->version = version;
    s->tokens = h + HEADER_BYTES;
    s->n_tokens = n;
    s->token_bytes = tb;
    s->vocab_size = get_u32(h + 12);
    s->eot_id = get_u32(h + 24);
    if (s->vocab_size == 0 || (tb == 2 && s->vocab_size > 65536u))
        return fg_error(FG_ERR_FORMAT, "%s: vocab_size %u does not fit %u-byte tokens", path, s->vocab_size, tb);
    if (tb == 4) {
        /* uint16 ids are bounded by the format; uint32 ids are checked once here so
         * the training loop can index embeddings without a check per token. */
        for (uint64_t i = 0; i < n; i++) {
            uint32_t id = get_u32(s->tokens + 4 * i);
            if (id >= s->vocab_size)
                return fg_error(FG_ERR_FORMAT, "%s: token %llu has id %u >= vocab_size %u", path, (unsigned long long)i,
                                id, s->vocab_size);
        }
    }
    return FG_OK;
}

fg_status fg_shard_open(fg_shard *s, const char *path)
{
    memset(s, 0, sizeof *s);
    fg_status st;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fg_error(FG_ERR_IO, "%s: cannot open token shard: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = fg_error(FG_ERR_IO, "%s: stat failed: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = fg_error(FG_ERR_IO, "%s: not a regular file", path);
        goto out_close;
    }
    if (sb.st_size == 0) {
        st = fg_error(FG_ERR_FORMAT, "%s: empty file: not a token shard", path);
        goto out_close;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = fg_error(FG_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto out_close;
    }
    s->map = map;
    s->map_bytes = (size_t)sb.st_size;
    s->path = fg_strdup(path);
    if (!s->path) {
        st = FG_ERR_NOMEM;
        goto out_unmap;
    }
    st = parse_header(s, path);
    if (st != FG_OK)
        goto out_unmap;
    close(fd);
    return FG_OK;
out_unmap:
    munmap((void *)s->map, s->map_bytes);
    fg_free(s->path);
    memset(s, 0, sizeof *s);
out_close:
    close(fd);
    return st;
}

void fg_shard_close(fg_shard *s)
{
    if (s->map)
        munmap((void *)s->map, s->map_bytes);
    fg_free(s->path);
    memset(s, 0, sizeof *s);
}
