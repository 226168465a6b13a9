/* test_shard.c: token shard round trips (uint16, uint32, llm.c .bin) and every
 * corruption the reader must name: missing, empty, truncated, bad magic, bad CRC,
 * size mismatch, flipped token bytes (block CRC), out-of-range ids; v1 shards (no
 * checksum) still open; a failed write leaves the old file untouched. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "frugal/shard.h"
#include "harness.h"

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fg_test_tmpdir(), name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    FG_ASSERT(f);
    FG_ASSERT(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static size_t read_bytes(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void expect_error(const char *path, fg_status want, const char *needle)
{
    fg_shard s;
    fg_status st = fg_shard_open(&s, path);
    FG_CHECK(st == want, "%s: status %d, want %d (%s)", path, st, want, fg_last_error());
    FG_CHECK(strstr(fg_last_error(), path) != NULL, "message names the file: %s", fg_last_error());
    FG_CHECK(strstr(fg_last_error(), needle) != NULL, "message says '%s': %s", needle, fg_last_error());
    FG_CHECK(s.map == NULL && s.path == NULL, "failed open leaves the struct empty");
}

static void round_trip(uint32_t vocab, uint32_t token_bytes, uint32_t want_bytes)
{
    const char *path = tmp_path(want_bytes == 2 ? "rt16.bin" : "rt32.bin");
    enum { N = 5000 };
    uint32_t *ids = malloc(N * sizeof *ids);
    fg_rng r;
    fg_rng_seed(&r, vocab);
    for (int i = 0; i < N; i++)
        ids[i] = fg_rng_below(&r, vocab);
    ids[0] = vocab - 1; /* the largest id survives the narrowing */
    fg_shard_writer w;
    FG_CHECK(fg_shard_writer_open(&w, path, vocab, 0, token_bytes) == FG_OK, "open: %s", fg_last_error());
    FG_CHECK(w.token_bytes == want_bytes, "token_bytes %u, want %u", w.token_bytes, want_bytes);
    /* two writes, so the chunked conversion crosses a call boundary */
    FG_CHECK(fg_shard_writer_write(&w, ids, 1234) == FG_OK, "write: %s", fg_last_error());
    FG_CHECK(fg_shard_writer_write(&w, ids + 1234, N - 1234) == FG_OK, "write: %s", fg_last_error());
    FG_CHECK(fg_shard_writer_close(&w) == FG_OK, "close: %s", fg_last_error());
    FG_CHECK(w.path == NULL && w.crcs == NULL, "close frees the writer");
    fg_shard s;
    FG_CHECK(fg_shard_open(&s, path) == FG_OK, "open shard: %s", fg_last_error());
    FG_CHECK(s.version == FG_SHARD_VERSION, "written as version %u (got %u)", FG_SHARD_VERSION, s.version);
    FG_CHECK(s.n_tokens == N && s.token_bytes == want_bytes && s.vocab_size == vocab && s.eot_id == 0,
             "header fields n=%llu tb=%u V=%u eot=%u", (unsigned long long)s.n_tokens, s.token_bytes, s.vocab_size,
             s.eot_id);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += fg_shard_token(&s, (uint64_t)i) != ids[i];
    FG_CHECK(bad == 0, "%d tokens differ after the round trip", bad);
    fg_shard_close(&s);
    free(ids);
}

static void test_round_trips(void)
{
    round_trip(256 + 1, 0, 2);
    round_trip(65536, 0, 2);
    round_trip(70000, 0, 4);
    round_trip(300, 4, 4);
}

static void test_llmc(void)
{
    const char *path = tmp_path("llmc.bin");
    enum { N = 100 };
    uint8_t buf[1024 + 2 * N];
    memset(buf, 0, sizeof buf);
    int32_t hdr[3] = {20240520, 1, N};
    memcpy(buf, hdr, sizeof hdr);
    for (int i = 0; i < N; i++) {
        uint16_t t = (uint16_t)(50256 - i);
        memcpy(buf + 1024 + 2 * i, &t, 2);
    }
    write_bytes(path, buf, sizeof buf);
    fg_shard s;
    FG_CHECK(fg_shard_open(&s, path) == FG_OK, "llm.c file opens: %s", fg_last_error());
    FG_CHECK(s.n_tokens == N && s.vocab_size == 50257 && s.eot_id == 50256, "llm.c header read");
    FG_CHECK(fg_shard_token(&s, 0) == 50256 && fg_shard_token(&s, N - 1) == 50256 - (N - 1), "llm.c tokens read");
    fg_shard_close(&s);
    /* one byte short: the exact-size rule of llm.c's own loader */
    const char *shortp = tmp_path("llmc_short.bin");
    write_bytes(shortp, buf, sizeof buf - 1);
    expect_error(shortp, FG_ERR_FORMAT, "size mismatch");
    const char *hdrp = tmp_path("llmc_hdr.bin");
    write_bytes(hdrp, buf, 500);
    expect_error(hdrp, FG_ERR_FORMAT, "truncated");
}

static void test_corruptions(void)
{
    expect_error(tmp_path("does_not_exist.bin"), FG_ERR_IO, "cannot open");
    const char *empty = tmp_path("empty.bin");
    write_bytes(empty, "", 0);
    expect_error(empty, FG_ERR_FORMAT, "empty");

    /* a good shard to corrupt */
    const char *good = tmp_path("good.bin");
    uint32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    fg_shard_writer w;
    FG_ASSERT(fg_shard_writer_open(&w, good, 20, FG_SHARD_NO_EOT, 2) == FG_OK);
    FG_ASSERT(fg_shard_writer_write(&w, ids, 10) == FG_OK);
    FG_ASSERT(fg_shard_writer_close(&w) == FG_OK);
    uint8_t buf[256];
    size_t n = read_bytes(good, buf, sizeof buf);
    FG_CHECK(n == 64 + 20 + 4, "file is exactly 64 + n*2 + one block CRC bytes (%zu)", n);

    const char *p = tmp_path("bad_magic.bin");
    uint8_t b[256];
    memcpy(b, buf, n);
    b[0] ^= 0xFF;
    write_bytes(p, b, n);
    expect_error(p, FG_ERR_FORMAT, "bad magic");

    p = tmp_path("bad_crc.bin");
    memcpy(b, buf, n);
    b[16] ^= 0x01; /* n_tokens changed, CRC not updated */
    write_bytes(p, b, n);
    expect_error(p, FG_ERR_CORRUPT, "corrupt header");

    p = tmp_path("truncated_header.bin");
    write_bytes(p, buf, 40);
    expect_error(p, FG_ERR_FORMAT, "truncated");

    p = tmp_path("truncated_tokens.bin");
    write_bytes(p, buf, n - 3);
    expect_error(p, FG_ERR_CORRUPT, "size mismatch (truncated)");

    /* one flipped bit in a token: the block CRC catches it */
    p = tmp_path("flipped_token.bin");
    memcpy(b, buf, n);
    b[64 + 7] ^= 0x01;
    write_bytes(p, b, n);
    expect_error(p, FG_ERR_CORRUPT, "corrupt tokens: block 0 of 1 (file bytes 64..83");

    /* a damaged CRC table is as corrupt as damaged tokens */
    p = tmp_path("flipped_crc.bin");
    memcpy(b, buf, n);
    b[n - 1] ^= 0x80;
    write_bytes(p, b, n);
    expect_error(p, FG_ERR_CORRUPT, "corrupt tokens: block 0");

    /* block_bytes is covered by the header CRC */
    p = tmp_path("bad_block_bytes.bin");
    memcpy(b, buf, n);
    b[32] ^= 0x04;
    write_bytes(p, b, n);
    expect_error(p, FG_ERR_CORRUPT, "corrupt header");

    p = tmp_path("trailing.bin");
    memcpy(b, buf, n);
    b[n] = 0;
    b[n + 1] = 0;
    write_bytes(p, b, n + 2);
    expect_error(p, FG_ERR_FORMAT, "size mismatch");

    p = tmp_path("tiny.bin");
    write_bytes(p, "ab", 2);
    expect_error(p, FG_ERR_FORMAT, "too short");

    /* uint32 shard holding an id >= vocab_size (header consistent, CRC right) */
    const char *big = tmp_path("big.bin");
    FG_ASSERT(fg_shard_writer_open(&w, big, 70000, FG_SHARD_NO_EOT, 4) == FG_OK);
    FG_ASSERT(fg_shard_writer_write(&w, ids, 10) == FG_OK);
    FG_ASSERT(fg_shard_writer_close(&w) == FG_OK);
    n = read_bytes(big, b, sizeof b);
    uint32_t huge = 80000;
    memcpy(b + 64 + 4 * 3, &huge, 4);
    uint32_t crc = (uint32_t)crc32(0, b + 64, 40); /* a consistent file: the id check itself */
    memcpy(b + 64 + 40, &crc, 4);
    write_bytes(big, b, n);
    expect_error(big, FG_ERR_FORMAT, ">= vocab_size");
}

/* A shard of several blocks: the damaged block is the one named, with its token range. */
static void test_blocks(void)
{
    const char *path = tmp_path("blocks.bin");
    enum { N = 1300000 }; /* 2.6 MB of uint16 tokens: blocks 0 and 1 full, block 2 partial */
    uint32_t *ids = malloc(N * sizeof *ids);
    FG_ASSERT(ids);
    for (int i = 0; i < N; i++)
        ids[i] = (uint32_t)(i * 7919u) % 1000u;
    fg_shard_writer w;
    FG_ASSERT(fg_shard_writer_open(&w, path, 1000, 999, 2) == FG_OK);
    for (int i = 0; i < N; i += 100000)
        FG_ASSERT(fg_shard_writer_write(&w, ids + i, N - i < 100000 ? (size_t)(N - i) : 100000) == FG_OK);
    FG_ASSERT(fg_shard_writer_close(&w) == FG_OK);
    size_t data = (size_t)N * 2, size = 64 + data + 3 * 4;
    uint8_t *b = malloc(size + 1);
    FG_ASSERT(b);
    FG_CHECK(read_bytes(path, b, size + 1) == size, "3 block CRCs after %zu token bytes", data);
    fg_shard s;
    FG_CHECK(fg_shard_open(&s, path) == FG_OK && s.n_tokens == N && fg_shard_token(&s, N - 1) == ids[N - 1],
             "multi-block shard opens: %s", fg_last_error());
    fg_shard_close(&s);
    const char *p = tmp_path("blocks_flip.bin");
    size_t at = 64 + (1u << 20) + 12345; /* inside block 1 */
    b[at] ^= 0x10;
    write_bytes(p, b, size);
    expect_error(p, FG_ERR_CORRUPT, "block 1 of 3 (file bytes 1048640..2097215, tokens 524288..1048575)");
    b[at] ^= 0x10;
    b[64 + data - 1] ^= 0x01; /* last byte of the short last block */
    write_bytes(p, b, size);
    expect_error(p, FG_ERR_CORRUPT, "block 2 of 3");
    free(b);
    free(ids);
}

/* Version 1 files (written before the block CRCs) still open, with a warning. */
static void test_v1(void)
{
    uint8_t b[64 + 8] = {0};
    uint32_t v[4] = {0x46475348u, 1, 2, 50};
    memcpy(b, v, sizeof v);
    uint64_t n = 4;
    memcpy(b + 16, &n, 8);
    uint32_t eot = 7, crc;
    memcpy(b + 24, &eot, 4);
    crc = (uint32_t)crc32(0, b, 28);
    memcpy(b + 28, &crc, 4);
    uint16_t t[4] = {7, 1, 49, 2};
    memcpy(b + 64, t, sizeof t);
    const char *p = tmp_path("v1.bin");
    write_bytes(p, b, sizeof b);
    fg_shard s;
    FG_CHECK(fg_shard_open(&s, p) == FG_OK, "v1 shard opens: %s", fg_last_error());
    FG_CHECK(s.version == 1 && s.n_tokens == 4 && fg_shard_token(&s, 2) == 49, "v1 fields and tokens read");
    fg_shard_close(&s);
    /* v1 has no block table: a v1 file with 4 extra bytes is a size mismatch */
    uint8_t c[64 + 12] = {0};
    memcpy(c, b, sizeof b);
    p = tmp_path("v1_long.bin");
    write_bytes(p, c, sizeof c);
    expect_error(p, FG_ERR_FORMAT, "size mismatch");
    /* an unknown version is refused (with the CRC made right, so the version is read) */
    uint32_t ver = 3;
    memcpy(b + 4, &ver, 4);
    crc = (uint32_t)crc32(crc32(0, b, 28), b + 32, 32);
    memcpy(b + 28, &crc, 4);
    p = tmp_path("v3.bin");
    write_bytes(p, b, sizeof b);
    expect_error(p, FG_ERR_UNSUPPORTED, "shard version 3");
}

static void test_writer_errors(void)
{
    /* an id out of range is refused, and abort leaves the previous file intact */
    const char *path = tmp_path("keep.bin");
    write_bytes(path, "previous contents", 17);
    fg_shard_writer w;
    FG_ASSERT(fg_shard_writer_open(&w, path, 100, FG_SHARD_NO_EOT, 0) == FG_OK);
    uint32_t ids[3] = {1, 100, 2};
    fg_status st = fg_shard_writer_write(&w, ids, 3);
    FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), "id 100") && strstr(fg_last_error(), path),
             "out-of-range id named: %s", fg_last_error());
    fg_shard_writer_abort(&w);
    uint8_t b[128];
    size_t n = read_bytes(path, b, sizeof b);
    FG_CHECK(n == 17 && memcmp(b, "previous contents", 17) == 0, "old file untouched after abort");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "rb");
    FG_CHECK(f == NULL, "temporary file removed by abort");
    if (f)
        fclose(f);
    /* the temp file exists while writing, and close leaves only the shard */
    FG_ASSERT(fg_shard_writer_open(&w, path, 100, FG_SHARD_NO_EOT, 0) == FG_OK);
    f = fopen(tmp, "rb");
    FG_CHECK(f != NULL, "writing goes to %s", tmp);
    if (f)
        fclose(f);
    FG_ASSERT(fg_shard_writer_write(&w, ids, 1) == FG_OK);
    FG_CHECK(fg_shard_writer_close(&w) == FG_OK, "close: %s", fg_last_error());
    f = fopen(tmp, "rb");
    FG_CHECK(f == NULL, "no temporary file left after close");
    if (f)
        fclose(f);
    n = read_bytes(path, b, sizeof b);
    FG_CHECK(n == 64 + 2 + 4, "the new shard replaced the old file (%zu bytes)", n);
    /* abort after a failed open is harmless (it must not close descriptor 0) */
    FG_CHECK(fg_shard_writer_open(&w, tmp_path("y.bin"), 0, 0, 0) == FG_ERR_INVALID, "vocab 0 refused");
    bool open0 = fcntl(0, F_GETFD) != -1;
    fg_shard_writer_abort(&w);
    FG_CHECK((fcntl(0, F_GETFD) != -1) == open0, "descriptor 0 untouched by the abort");

    FG_CHECK(fg_shard_writer_open(&w, tmp_path("x.bin"), 70000, 0, 2) == FG_ERR_INVALID, "vocab too big for u16");
    FG_CHECK(fg_shard_writer_open(&w, tmp_path("x.bin"), 10, 10, 0) == FG_ERR_INVALID, "eot out of range");
    FG_CHECK(fg_shard_writer_open(&w, "/nonexistent_dir_fg/x.bin", 10, 0, 0) == FG_ERR_IO, "unwritable path: %s",
             fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("shard");
    test_round_trips();
    test_llmc();
    test_corruptions();
    test_blocks();
    test_v1();
    test_writer_errors();
    return fg_test_end();
}
