/* ckpt.h: checkpoints: full + delta files, written synchronously or by a background
 * thread from a snapshot copy, crash-safe (temp file, fsync, rename), verified by CRC.
 *
 * Usage (the trainer):
 *   fg_ckpt_opts o = fg_ckpt_opts_default();
 *   fg_ckpt_writer *w = fg_ckpt_writer_new("runs/x/ckpt", &o);
 *   fg_ckpt_tensor t[] = {{"params", params, nbytes}, {"adam.m", m, nbytes}, ...};
 *   fg_ckpt_writer_save(w, step, meta_json, t, 3);   // returns once the copy is taken
 *   ...
 *   fg_ckpt_writer_delete(w);                         // waits for the last write
 *   fg_ckpt_load_latest("runs/x/ckpt", &step, &meta_json, t, 3);
 * meta_json is the caller's JSON text (config, RNG states, data position, LR and
 * batch-size controller state); the checkpoint stores it verbatim with a CRC.
 *
 * Tools (frugal ckpt info | verify | diff): fg_ckpt_list, fg_ckpt_info_read,
 * fg_ckpt_verify, fg_ckpt_load_file, fg_ckpt_read_tensor. The file format is in
 * docs/CHECKPOINTS.md.
 */
#ifndef FRUGAL_CKPT_H
#define FRUGAL_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_ckpt_tensor {
    const char *name; /* unique, <= 63 bytes */
    void *data;
    size_t bytes;
} fg_ckpt_tensor;

/* The checkpoint policy. The trainer fills it from its config (ckpt_full_every,
 * ckpt_keep, ckpt_async, ckpt_zstd_level, ckpt_compress_full, ckpt_write_delay_ms: one
 * option table, with the FG_CKPT_* environment overrides parsed there); this module
 * reads no environment. */
typedef struct fg_ckpt_opts {
    int full_every;     /* a full checkpoint every F saves, deltas in between (1 = always full), >= 1 */
    int keep_full;      /* retention: keep the last K full checkpoints and their deltas (0: keep all), >= 0 */
    bool async;         /* write from a background thread */
    int zstd_level;     /* compression level for deltas (and compressed full checkpoints), 1..19 */
    bool compress_full; /* full checkpoints byte-shuffled + zstd instead of raw */
    int write_delay_ms; /* test hook: pause after each tensor written (kill-mid-write tests), 0..60000 */
} fg_ckpt_opts;

/* full_every 10, keep_full 2, async, zstd_level 1, compress_full off, no delay. */
fg_ckpt_opts fg_ckpt_opts_default(void);

typedef struct fg_ckpt_writer fg_ckpt_writer;

/* Creates dir if needed and removes stale temp files left by a crash. NULL on
 * failure (status in fg_last_status(), message in fg_last_error()); an option out of
 * its range is FG_ERR_INVALID naming the field ("checkpoint option full_every = 0:
 * must be >= 1"). */
fg_ckpt_writer *fg_ckpt_writer_new(const char *dir, const fg_ckpt_opts *opts);
/* Copies the tensors into a staging buffer (the caller may change them as soon as
 * this returns), then writes the checkpoint of `step`, in the background when async.
 * Waits first for a write still in flight (never two at once). Returns the failure of
 * a previous async write if there was one (the first failure is the one reported, even
 * when this save's own write fails too), else the status of the copy (and of the
 * write, when synchronous). */
fg_status fg_ckpt_writer_save(fg_ckpt_writer *w, long step, const char *meta_json, const fg_ckpt_tensor *t, int n);
/* Streamed save: fills buf with bytes [off, off + n) of tensor i; called for every piece
 * of every tensor in order. A failure ends the save (nothing written). */
typedef fg_status (*fg_ckpt_fill_fn)(void *ctx, int i, size_t off, void *buf, size_t n);
/* A full checkpoint whose tensors (names[i], bytes[i] each) the caller produces piece by
 * piece (pieces of chunk bytes from offset 0, the last shorter), so that no copy of the
 * whole state exists anywhere (pipeline stages streaming their tensors to the writing
 * rank, docs/DIST.md). Written in the calling thread, after the write in flight, raw (no
 * compression, no delta: a delta needs the base whole), crash-safe as save (temp file,
 * fsync, rename), with the same retention. fill is called for every piece even after a
 * write failed (the peers feeding it are drained); the next save is a full one. */
fg_status fg_ckpt_writer_save_stream(fg_ckpt_writer *w, long step, const char *meta_json, const char *const *names,
                                     const size_t *bytes, int n, size_t chunk, fg_ckpt_fill_fn fill, void *ctx);
/* Waits for the write in flight; returns its status. */
fg_status fg_ckpt_writer_wait(fg_ckpt_writer *w);
/* Waits, then frees. Returns the status of the last write. NULL is a no-op. */
fg_status fg_ckpt_writer_delete(fg_ckpt_writer *w);

/* What a writer did so far (for the cost summary and benchmarks). */
typedef struct fg_ckpt_stats {
    long n_full, n_delta;           /* checkpoints written */
    uint64_t raw_full, file_full;   /* bytes: tensor bytes and file bytes of full checkpoints */
    uint64_t raw_delta, file_delta; /* same for deltas */
    double copy_sec;                /* seconds the caller spent in save() copying */
    double wait_sec;                /* seconds the caller spent waiting for a write in flight */
    double write_sec;               /* seconds spent encoding + writing (background when async) */
    double write_cpu_sec;           /* CPU seconds of that (the rest is waiting for the disk) */
} fg_ckpt_stats;
/* Call after fg_ckpt_writer_wait (the writer thread updates the figures). */
void fg_ckpt_writer_stats(const fg_ckpt_writer *w, fg_ckpt_stats *s);

/* Removes every checkpoint file (ckpt-*.fgck), `latest` and *.tmp from dir; other
 * files are left alone. For a fresh run in a directory that held another run: without
 * it, a resume after a crash early in the new run would pick the old run's newer
 * checkpoints. A missing dir is FG_OK. */
fg_status fg_ckpt_remove_all(const char *dir);

/* Loads the newest checkpoint in dir that verifies, falling back to older ones with a
 * warning naming what failed. Each t[i].data is filled; a missing tensor or a size
 * mismatch is an error (nothing partial is reported as success). *meta_json is
 * fg_malloc'd. FG_ERR_IO when dir holds no checkpoint. */
fg_status fg_ckpt_load_latest(const char *dir, long *step, char **meta_json, const fg_ckpt_tensor *t, int n);

/* Loads one checkpoint file (a delta is applied to its base, found in the same
 * directory). Everything is verified before t[i].data is touched; on failure the
 * buffers may hold a partial load but the status says so. meta_json may be NULL. */
fg_status fg_ckpt_load_file(const char *path, long *step, char **meta_json, const fg_ckpt_tensor *t, int n);

/* ---- inspection ---- */
enum fg_ckpt_encoding { /* written to disk: append only */
                        FG_CKPT_ENC_RAW = 0,
                        FG_CKPT_ENC_SHUF_ZSTD = 1,     /* byte-plane shuffle, zstd */
                        FG_CKPT_ENC_XOR_SHUF_ZSTD = 2, /* XOR with the base tensor, shuffle, zstd */
};
const char *fg_ckpt_encoding_name(int enc);

typedef struct fg_ckpt_entry {
    char name[64];
    uint64_t bytes;        /* decoded size */
    uint64_t offset;       /* of the stored bytes in the file */
    uint64_t stored_bytes; /* size in the file */
    uint32_t crc32;        /* zlib crc32 of the decoded bytes */
    uint32_t stored_crc32; /* zlib crc32 of the stored bytes */
    int encoding;          /* enum fg_ckpt_encoding */
} fg_ckpt_entry;

typedef struct fg_ckpt_info {
    int version;
    long step;
    bool delta;
    long base_step;      /* delta only */
    uint64_t uid;        /* random id of this checkpoint */
    uint64_t base_uid;   /* delta only: uid of the full checkpoint it is against */
    char base_file[64];  /* delta only: file name of the base, same directory */
    uint64_t file_bytes; /* size of the file */
    double created;      /* unix seconds */
    int n_tensor;
    fg_ckpt_entry *tensors; /* [n_tensor], fg_malloc'd */
    char *meta_json;        /* fg_malloc'd, "" when none */
} fg_ckpt_info;

/* Reads and checks the header, trailer and manifest of one file (magic, version, size,
 * manifest CRC), not the tensor data. Free with fg_ckpt_info_free. */
fg_status fg_ckpt_info_read(const char *path, fg_ckpt_info *info);
void fg_ckpt_info_free(fg_ckpt_info *info); /* zeroed or NULL: no-op */

/* Verifies everything: header, manifest, every stored and decoded CRC, and for a delta
 * its base. FG_OK when the file would load. */
fg_status fg_ckpt_verify(const char *path);

/* Pieces of one tensor: bytes [off, off + bytes) into dst. */
typedef struct fg_ckpt_piece {
    uint64_t off, bytes;
    void *dst;
} fg_ckpt_piece;
/* Reads the pieces of tensor `name` (of `bytes` bytes) of one file through bounded
 * buffers, never the whole tensor: raw, its stored CRC checked, then each piece read in
 * place; zstd / delta, decompressed as it streams, the pieces picked out of the byte
 * planes (word-aligned pieces of a tensor of whole words; else decoded whole). Stored CRCs
 * are checked, decoded ones (whole-tensor sums) are not; on failure the pieces may hold a
 * partial read. A pipeline stage resuming only its own tensors. */
fg_status fg_ckpt_read_pieces(const char *path, const char *name, size_t bytes, const fg_ckpt_piece *pc, int n);

/* Decodes one tensor (applying a delta to its base). *data is fg_malloc'd. */
fg_status fg_ckpt_read_tensor(const char *path, const char *name, void **data, size_t *bytes);

/* Checkpoint files of dir, oldest step first: *paths is an fg_malloc'd array of
 * fg_malloc'd strings (free with fg_ckpt_list_free). *n = 0 when none. */
fg_status fg_ckpt_list(const char *dir, char ***paths, int *n);
void fg_ckpt_list_free(char **paths, int n);
/* Reads dir/latest (the informative pointer to the newest checkpoint; loading never
 * trusts it) into name (cap bytes). FG_OK with name "" when there is none; FG_OK with
 * the file name when it holds one line naming a checkpoint (ckpt-<step>-full|delta.fgck);
 * FG_ERR_FORMAT "<dir>/latest: ..." when it holds anything else (name ""). */
fg_status fg_ckpt_read_latest(const char *dir, char *name, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
