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
 */
#ifndef FRUGAL_CKPT_H
#define FRUGAL_CKPT_H

#include <stdbool.h>
#include <stddef.h>

#include "frugal/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_ckpt_tensor {
    const char *name; /* unique, <= 63 bytes */
    void *data;
    size_t bytes;
} fg_ckpt_tensor;

typedef struct fg_ckpt_opts {
    int full_every; /* a full checkpoint every F saves, deltas in between (1 = always full) */
    int keep_full;  /* retention: keep the last K full checkpoints and their deltas */
    bool async;     /* write from a background thread */
    int zstd_level; /* compression level for deltas */
} fg_ckpt_opts;

fg_ckpt_opts fg_ckpt_opts_default(void);

typedef struct fg_ckpt_writer fg_ckpt_writer;

/* Creates dir if needed. NULL on failure (last error set). */
fg_ckpt_writer *fg_ckpt_writer_new(const char *dir, const fg_ckpt_opts *opts);
/* Copies the tensors into a staging buffer (the caller may change them as soon as
 * this returns), then writes the checkpoint of `step`, in the background when async.
 * Waits first for a write still in flight (never two at once). Returns the status of
 * the copy, or of a previous async write that failed. */
fg_status fg_ckpt_writer_save(fg_ckpt_writer *w, long step, const char *meta_json, const fg_ckpt_tensor *t, int n);
/* Waits for the write in flight; returns its status. */
fg_status fg_ckpt_writer_wait(fg_ckpt_writer *w);
/* Waits, then frees. Returns the status of the last write. NULL is a no-op. */
fg_status fg_ckpt_writer_delete(fg_ckpt_writer *w);

/* Loads the newest checkpoint in dir that verifies, falling back to older ones with a
 * warning naming what failed. Each t[i].data is filled; a missing tensor or a size
 * mismatch is an error (nothing partial is reported as success). *meta_json is
 * fg_malloc'd. FG_ERR_IO when dir holds no checkpoint. */
fg_status fg_ckpt_load_latest(const char *dir, long *step, char **meta_json, const fg_ckpt_tensor *t, int n);

#ifdef __cplusplus
}
#endif
#endif
