/* shard.h: token shard files (what the trainer reads) and their mmap loader.
 *
 * Format v2, little-endian (docs/FORMATS.md):
 *   offset 0   u32 magic 0x46475348 ("HSGF" on disk) | u32 version = 2
 *          8   u32 token_bytes (2 or 4)              | u32 vocab_size
 *         16   u64 n_tokens                          | u32 eot_id (0xFFFFFFFF: none)
 *         28   u32 header_crc (crc32 of bytes 0..27 and 32..63)
 *         32   u32 block_bytes (token bytes per CRC block, 1 MiB) | 36..63 zero
 *         64   n_tokens tokens of token_bytes each
 *          then n_blocks u32 CRC-32s, one per block_bytes of token data (the last
 *          block may be shorter); n_blocks = ceil(n_tokens * token_bytes / block_bytes)
 * The file size must be exactly 64 + n_tokens * token_bytes + 4 * n_blocks. Every block
 * is checked at open (one read of the file). Version 1 (no block CRCs, size exactly
 * 64 + n_tokens * token_bytes, header_crc over bytes 0..27) is still read, with a
 * warning. llm.c's .bin files (magic 20240520, 1024-byte header, uint16 tokens) too.
 * Writers go through fg_file_tx ("<path>.tmp.<pid>", fsync, rename, fsync of the
 * directory), so a shard is whole or absent.
 */
#ifndef FRUGAL_SHARD_H
#define FRUGAL_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FG_SHARD_MAGIC 0x46475348u
#define FG_SHARD_VERSION 2u
#define FG_SHARD_HEADER_BYTES 64u
#define FG_SHARD_BLOCK_BYTES (1u << 20) /* token bytes per CRC block (a multiple of 4) */
#define FG_SHARD_NO_EOT 0xFFFFFFFFu

typedef struct fg_shard_writer {
    fg_file_tx tx; /* the temp file, committed (fsync, rename, fsync of the directory) at close */
    char *path;    /* final path (NULL once closed or aborted) */
    uint32_t token_bytes, vocab_size, eot_id;
    uint64_t n_tokens;
    uint32_t block_crc;  /* CRC-32 of the current, unfinished block so far */
    uint32_t block_fill; /* bytes in the current block */
    uint32_t *crcs;      /* CRC-32 of each finished block */
    size_t n_blocks, cap_blocks;
} fg_shard_writer;

/* token_bytes 0 picks 2 when vocab_size <= 65536, else 4. */
fg_status fg_shard_writer_open(fg_shard_writer *w, const char *path, uint32_t vocab_size, uint32_t eot_id,
                               uint32_t token_bytes);
/* Every id must be < vocab_size (FG_ERR_INVALID otherwise). */
fg_status fg_shard_writer_write(fg_shard_writer *w, const uint32_t *ids, size_t n);
/* Appends the block CRCs, finishes the header, fsyncs and renames into place. Frees w
 * on every path. */
fg_status fg_shard_writer_close(fg_shard_writer *w);
/* Drops the temporary file. Safe after close or a failed open. */
void fg_shard_writer_abort(fg_shard_writer *w);

typedef struct fg_shard {
    char *path;
    const uint8_t *map; /* whole file */
    size_t map_bytes;
    const uint8_t *tokens;
    uint64_t n_tokens;
    uint32_t token_bytes, vocab_size, eot_id;
    uint32_t version; /* 2: every block's CRC checked at open; 1: no checksum; 0: llm.c file */
} fg_shard;

/* Maps and validates a shard: magic, version, header CRC, exact size, for v2 the CRC of
 * every block of tokens (FG_ERR_CORRUPT naming the block and its byte range), for uint32
 * shards every id < vocab_size. Messages name the file and the problem. A v1 shard
 * (no checksum) opens with a warning on the log. */
fg_status fg_shard_open(fg_shard *s, const char *path);
void fg_shard_close(fg_shard *s);
static inline uint32_t fg_shard_token(const fg_shard *s, uint64_t i)
{
    if (s->token_bytes == 2)
        return ((const uint16_t *)(const void *)s->tokens)[i];
    return ((const uint32_t *)(const void *)s->tokens)[i];
}

#ifdef __cplusplus
}
#endif
#endif
