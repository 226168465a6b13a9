/* ckpt_impl.h: what the files of src/ckpt share: the on-disk constants, the tensor
 * codecs (codec.c), writing one checkpoint file (format.c) and file-name helpers. */
#ifndef FRUGAL_CKPT_IMPL_H
#define FRUGAL_CKPT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frugal/ckpt.h"

#define CKPT_MAGIC "FRUGALCK"     /* 8 bytes at offset 0 */
#define CKPT_END_MAGIC "FGCKEND1" /* 8 bytes at the end of the file */
#define CKPT_VERSION 1
#define CKPT_HEADER_BYTES 16  /* magic, u32 version, u32 flags (0) */
#define CKPT_TRAILER_BYTES 32 /* u64 manifest offset, u64 manifest bytes, u32 manifest crc, u32 trailer crc, magic */
#define CKPT_FULL_ZSTD_LEVEL 1

/* Reusable buffers of a writer or reader: grown on demand, freed by ckpt_scratch_free. */
typedef struct ckpt_scratch {
    uint8_t *shuf; /* shuffled bytes, >= the largest tensor */
    size_t shuf_cap;
    uint8_t *out; /* compressed bytes */
    size_t out_cap;
    void *cctx; /* ZSTD_CCtx */
} ckpt_scratch;
void ckpt_scratch_free(ckpt_scratch *s);

/* Byte-plane shuffle of bytes/4 little-endian words (all byte 0s, then byte 1s, ...)
 * of src XOR base (base may be NULL); a bytes%4 tail follows unshuffled. */
void ckpt_shuffle(uint8_t *dst, const uint8_t *src, const uint8_t *base, size_t bytes);
/* Inverse of ckpt_shuffle: dst = unshuffle(src), or dst ^= unshuffle(src) when xor_into. */
void ckpt_unshuffle(uint8_t *dst, const uint8_t *src, size_t bytes, bool xor_into);

/* Encodes src (bytes) with enc (base needed for FG_CKPT_ENC_XOR_SHUF_ZSTD). *stored
 * points at the bytes to write (src itself for raw, else s->out), *stored_bytes their
 * size. */
fg_status ckpt_encode(ckpt_scratch *s, int enc, int level, const uint8_t *src, const uint8_t *base, size_t bytes,
                      const uint8_t **stored, size_t *stored_bytes);
/* Decodes stored bytes into dst (bytes). For the XOR encoding dst must hold the base
 * tensor and is XORed in place. Errors name path and tensor. */
fg_status ckpt_decode(ckpt_scratch *s, int enc, uint8_t *dst, size_t bytes, const uint8_t *stored, size_t stored_bytes,
                      const char *path, const char *name);

/* One checkpoint to write: n tensors, the base (last full) for a delta. */
typedef struct ckpt_job {
    long step;
    bool delta;
    const char *meta; /* JSON text, may be "" */
    int n;
    const char *const *names;   /* [n] */
    const uint8_t *const *data; /* [n] */
    const size_t *bytes;        /* [n] */
    const uint8_t *const *base; /* [n], delta only */
    long base_step;             /* delta only */
    uint64_t base_uid;          /* delta only */
    const char *base_file;      /* delta only: file name */
    int delta_level;            /* zstd level of deltas */
    bool compress_full;
    int delay_ms; /* test hook: sleep after each tensor, so a kill lands inside a write */
    /* streamed (fg_ckpt_writer_save_stream): data is NULL, fill produces each tensor in
     * pieces of chunk bytes, written raw as they come (delta and compress_full off) */
    fg_ckpt_fill_fn fill;
    void *fill_ctx;
    size_t chunk;
} ckpt_job;

/* Writes dir/<name>.tmp, fsyncs, renames it to dir/<name> and fsyncs dir; then the
 * `latest` pointer the same way. fname receives the file name (>= 64 bytes), *uid the
 * new checkpoint's id, *file_bytes its size. */
fg_status ckpt_write_file(const char *dir, const ckpt_job *job, ckpt_scratch *s, char *fname, uint64_t *uid,
                          uint64_t *file_bytes);

/* "ckpt-0000000123-full.fgck" (delta: "-delta"). */
void ckpt_file_name(char *buf, size_t cap, long step, bool delta);
/* Parses a checkpoint file name; false when name is not one. */
bool ckpt_parse_name(const char *name, long *step, bool *delta);

#endif
