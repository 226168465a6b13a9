/* shard.h: token shard files (what the trainer reads) and their mmap loader.
 *
 * Format v1, little-endian (docs/FORMATS.md):
 *   offset 0   u32 magic 0x46475348 ("HSGF" on disk) | u32 version = 1
 *          8   u32 token_bytes (2 or 4)              | u32 vocab_size
 *         16   u64 n_tokens                          | u32 eot_id (0xFFFFFFFF: none)
 *         28   u32 header_crc (crc32 of bytes 0..27)  | 32..63 zero
 *         64   n_tokens tokens of token_bytes each
 * The file size must be exactly 64 + n_tokens * token_bytes. llm.c's .bin files
 * (magic 20240520, 1024-byte header, uint16 tokens) are read too.
 * Writers write to "<path>.tmp", fsync, then rename, so a shard is whole or absent.
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
#define FG_SHARD_VERSION 1u
#define FG_SHARD_NO_EOT 0xFFFFFFFFu

typedef struct fg_shard_writer {
    FILE *f;
    char *path;     /* final path */
    char *tmp_path; /* path + ".tmp" */
    uint32_t token_bytes, vocab_size, eot_id;
    uint64_t n_tokens;
} fg_shard_writer;

/* token_bytes 0 picks 2 when vocab_size <= 65536, else 4. */
fg_status fg_shard_writer_open(fg_shard_writer *w, const char *path, uint32_t vocab_size, uint32_t eot_id,
                               uint32_t token_bytes);
/* Every id must be < vocab_size (FG_ERR_INVALID otherwise). */
fg_status fg_shard_writer_write(fg_shard_writer *w, const uint32_t *ids, size_t n);
/* Finishes the header, fsyncs and renames into place. Frees w on every path. */
fg_status fg_shard_writer_close(fg_shard_writer *w);
/* Drops the temporary file. */
void fg_shard_writer_abort(fg_shard_writer *w);

typedef struct fg_shard {
    char *path;
    const uint8_t *map; /* whole file */
    size_t map_bytes;
    const uint8_t *tokens;
    uint64_t n_tokens;
    uint32_t token_bytes, vocab_size, eot_id;
} fg_shard;

/* Maps and validates a shard (magic, version, header CRC, exact size, and for
 * uint16 shards nothing to check further). Messages name the file and the problem. */
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
