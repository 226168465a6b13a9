/* writer.c: the checkpoint writer: snapshot copy into one staging buffer, full or
 * delta decision, an optional background thread (one write in flight at most),
 * retention of the last K full checkpoints and their deltas, stale temp cleanup.
 * The file layout itself is in format.c. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_impl.h"

#define ALIGN 64

/* Layout of a snapshot: n tensors at 64-byte aligned offsets of one buffer. */
typedef struct layout {
    int n;
    char (*names)[64]; /* [n] */
    size_t *bytes;     /* [n] */
    size_t *off;       /* [n], bytes into the buffer */
    size_t total;      /* bytes */
} layout;

struct fg_ckpt_writer {
    char *dir;
    fg_ckpt_opts o;
    ckpt_scratch s; /* encoding buffers, used by whoever runs the job */

    /* the snapshot being written (owned by the writer thread while busy) */
    layout cur;
    uint8_t *stage;
    size_t stage_cap;
    char *meta;
    long step;
    bool delta;

    /* the last full checkpoint written: deltas are XORs against it */
    layout base;
    uint8_t *base_buf;
    size_t base_cap;
    bool have_base;
    long base_step;
    uint64_t base_uid;
    char base_file[64];
    int deltas_since_full;

    /* work arrays of a job: [cur.n] */
    const char **job_names;
    const uint8_t **job_data;
    const uint8_t **job_base;
    int job_cap;

    /* background thread */
    bool thread_on, busy, quit;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fg_status err; /* of the last background write, reported once */
    char errmsg[1024];

    fg_ckpt_stats stats;
};

fg_ckpt_opts fg_ckpt_opts_default(void)
{
    fg_ckpt_opts o = {.full_every = 10, .keep_full = 2, .async = true, .zstd_level = 1, .compress_full = false};
    return o;
}

static fg_status check_opts(const fg_ckpt_opts *o)
{
    if (o->full_every < 1)
        return fg_error(FG_ERR_INVALID, "checkpoint option full_every = %d: must be >= 1", o->full_every);
    if (o->keep_full < 0)
        return fg_error(FG_ERR_INVALID, "checkpoint option keep_full = %d: must be >= 0 (0 = keep all)", o->keep_full);
    if (o->zstd_level < 1 || o->zstd_level > 19)
        return fg_error(FG_ERR_INVALID, "checkpoint option zstd_level = %d: must be in 1..19", o->zstd_level);
    if (o->write_delay_ms < 0 || o->write_delay_ms > 60000)
        return fg_error(FG_ERR_INVALID, "checkpoint option write_delay_ms = %d: must be in 0..60000",
                        o->write_delay_ms);
    return FG_OK;
}

static void layout_free(layout *l)
{
    fg_free(l->names);
    fg_free(l->bytes);
    fg_free(l->off);
    memset(l, 0, sizeof *l);
}

static bool layout_equal(const layout *a, const layout *b)
{
    if (a->n != b->n || a->total != b->total)
        return false;
    for (int i = 0; i < a->n; i++)
        if (a->bytes[i] != b->bytes[i] || strcmp(a->names[i], b->names[i]) != 0)
            return false;
    return true;
}

/* Sets l to the layout of t[0..n) (arrays grown as needed). */
static fg_status layout_set(layout *l, const fg_ckpt_tensor *t, int n)
{
    if (n > l->n || !l->names) {
        char(*names)[64] = fg_malloc((size_t)n * sizeof *names);
        size_t *bytes = fg_malloc((size_t)n * sizeof *bytes);
        size_t *off = fg_malloc((size_t)n * sizeof *off);
        if (!names || !bytes || !off) {
            fg_free(names);
            fg_free(bytes);
            fg_free(off);
            return FG_ERR_NOMEM;
        }
        layout_free(l);
        l->names = names;
        l->bytes = bytes;
        l->off = off;
    }
    l->n = n;
    l->total = 0;
    for (int i = 0; i < n; i++) {
        snprintf(l->names[i], 64, "%s", t[i].name);
        l->bytes[i] = t[i].bytes;
        l->off[i] = l->total;
        l->total += (t[i].bytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    return FG_OK;
}

static fg_status layout_copy(layout *dst, const layout *src)
{
    if (dst->n < src->n || !dst->names) {
        layout_free(dst);
        dst->names = fg_malloc((size_t)src->n * sizeof *dst->names);
        dst->bytes = fg_malloc((size_t)src->n * sizeof *dst->bytes);
        dst->off = fg_malloc((size_t)src->n * sizeof *dst->off);
        if (!dst->names || !dst->bytes || !dst->off) {
            layout_free(dst);
            return FG_ERR_NOMEM;
        }
    }
    dst->n = src->n;
    dst->total = src->total;
    memcpy(dst->names, src->names, (size_t)src->n * sizeof *src->names);
    memcpy(dst->bytes, src->bytes, (size_t)src->n * sizeof *src->bytes);
    memcpy(dst->off, src->off, (size_t)src->n * sizeof *src->off);
    return FG_OK;
}

/* Keeps the newest keep_full full checkpoints with step <= step and the deltas after
 * the oldest of them; removes older files, and another file of this very step (the
 * other kind, left by an earlier run). After the first write of a writer (`first`), it
 * also removes every file of a higher step: a new timeline starts here, and those
 * belong to an abandoned one (a previous run in the same directory, or checkpoints
 * that failed verification at resume), which a later resume must not pick. Failures
 * only warn: the new checkpoint is safe. */
static void retention(fg_ckpt_writer *w, long step, const char *fname, bool first)
{
    char **paths;
    int np;
    if (fg_ckpt_list(w->dir, &paths, &np) != FG_OK) {
        FG_WARN("checkpoint retention skipped: %s", fg_last_error());
        return;
    }
    long cutoff = -1;
    int nfull = 0;
    for (int i = np - 1; i >= 0; i--) {
        const char *name = strrchr(paths[i], '/') + 1;
        long s;
        bool d;
        if (!ckpt_parse_name(name, &s, &d) || s > step || d)
            continue;
        if (++nfull == w->o.keep_full)
            cutoff = s;
    }
    /* Newest first: a delta goes before the full it needs, so a crash in the middle
     * of this loop never leaves a delta without its base. */
    for (int i = np - 1; i >= 0; i--) {
        const char *name = strrchr(paths[i], '/') + 1;
        long s;
        bool d;
        if (!ckpt_parse_name(name, &s, &d))
            continue;
        bool drop = (w->o.keep_full > 0 && cutoff >= 0 && s < cutoff) || (s == step && strcmp(name, fname) != 0) ||
                    (first && s > step);
        if (drop && unlink(paths[i]) != 0)
            FG_WARN("checkpoint retention: cannot remove %s: %s", paths[i], strerror(errno));
    }
    fg_ckpt_list_free(paths, np);
}

/* Writes the staged snapshot; on a full checkpoint the staging buffer becomes the new
 * base (a pointer swap, no copy). Runs on the writer thread when async. */
static double thread_cpu_sec(void)
{
    struct timespec ts;
    return clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0 ? (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec : 0.0;
}

static fg_status run_job(fg_ckpt_writer *w)
{
    double t0 = fg_time_sec(), c0 = thread_cpu_sec();
    for (int i = 0; i < w->cur.n; i++) {
        w->job_names[i] = w->cur.names[i];
        w->job_data[i] = w->stage + w->cur.off[i];
        w->job_base[i] = w->delta ? w->base_buf + w->base.off[i] : NULL;
    }
    ckpt_job job = {.step = w->step,
                    .delta = w->delta,
                    .meta = w->meta,
                    .n = w->cur.n,
                    .names = w->job_names,
                    .data = w->job_data,
                    .bytes = w->cur.bytes,
                    .base = w->job_base,
                    .base_step = w->base_step,
                    .base_uid = w->base_uid,
                    .base_file = w->base_file,
                    .delta_level = w->o.zstd_level,
                    .compress_full = w->o.compress_full,
                    .delay_ms = w->o.write_delay_ms};
    char fname[64];
    uint64_t uid = 0, fbytes = 0;
    fg_status st = ckpt_write_file(w->dir, &job, &w->s, fname, &uid, &fbytes);
    if (st == FG_OK && !w->delta)
        st = layout_copy(&w->base, &w->cur);
    if (st != FG_OK) {
        if (!w->delta)
            w->have_base = false; /* the next save writes a full one again */
        w->stats.write_sec += fg_time_sec() - t0;
        w->stats.write_cpu_sec += thread_cpu_sec() - c0;
        return st;
    }
    uint64_t raw = 0;
    bool first = w->stats.n_full + w->stats.n_delta == 0;
    for (int i = 0; i < w->cur.n; i++)
        raw += w->cur.bytes[i];
    if (w->delta) {
        w->deltas_since_full++;
        w->stats.n_delta++;
        w->stats.raw_delta += raw;
        w->stats.file_delta += fbytes;
    } else {
        uint8_t *b = w->base_buf;
        size_t bc = w->base_cap;
        w->base_buf = w->stage;
        w->base_cap = w->stage_cap;
        w->stage = b;
        w->stage_cap = bc;
        w->have_base = true;
        w->base_step = w->step;
        w->base_uid = uid;
        snprintf(w->base_file, sizeof w->base_file, "%s", fname);
        w->deltas_since_full = 0;
        w->stats.n_full++;
        w->stats.raw_full += raw;
        w->stats.file_full += fbytes;
    }
    retention(w, w->step, fname, first);
    w->stats.write_sec += fg_time_sec() - t0;
    w->stats.write_cpu_sec += thread_cpu_sec() - c0;
    return FG_OK;
}

static void *writer_main(void *arg)
{
    fg_ckpt_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->busy && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->busy)
            break;
        pthread_mutex_unlock(&w->mu);
        fg_status st = run_job(w);
        pthread_mutex_lock(&w->mu);
        if (st != FG_OK) {
            w->err = st;
            snprintf(w->errmsg, sizeof w->errmsg, "background checkpoint write of step %ld failed: %s", w->step,
                     fg_last_error()[0] ? fg_last_error() : fg_status_str(st));
        }
        w->busy = false;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* mkdir -p */
static fg_status make_dirs(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return fg_error(FG_ERR_INVALID, "%s: path too long", dir);
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != 0)
            continue;
        char c = *q;
        *q = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return fg_error(FG_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
        *q = c;
        if (!c)
            break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return fg_error(FG_ERR_IO, "%s: not a directory", dir);
    return FG_OK;
}

/* A temp file of an interrupted write: "<name>.tmp.<pid>" (fg_file_tx) or "<name>.tmp"
 * (written by earlier versions). */
static bool is_tmp_name(const char *name)
{
    const char *t = strstr(name, ".tmp");
    if (!t)
        return false;
    while (strstr(t + 1, ".tmp"))
        t = strstr(t + 1, ".tmp");
    if (t[4] == 0)
        return true;
    if (t[4] != '.' || !t[5])
        return false;
    for (const char *p = t + 5; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* Removes temp files: writes interrupted by a crash (never valid checkpoints). */
static void remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (is_tmp_name(de->d_name)) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            if (unlink(p) == 0)
                FG_INFO("removed %s, left by an interrupted checkpoint write", p);
        }
    }
    closedir(d);
}

fg_status fg_ckpt_remove_all(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? FG_OK : fg_error(FG_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    fg_status st = FG_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long step;
        bool delta;
        bool ours =
            ckpt_parse_name(de->d_name, &step, &delta) || !strcmp(de->d_name, "latest") || is_tmp_name(de->d_name);
        if (!ours)
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (unlink(p) != 0 && errno != ENOENT && st == FG_OK)
            st = fg_error(FG_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
    }
    closedir(d);
    return st;
}

fg_ckpt_writer *fg_ckpt_writer_new(const char *dir, const fg_ckpt_opts *opts)
{
    fg_ckpt_opts o = opts ? *opts : fg_ckpt_opts_default();
    if (!dir || !dir[0]) {
        fg_error(FG_ERR_INVALID, "checkpoint directory is empty");
        return NULL;
    }
    if (check_opts(&o) != FG_OK)
        return NULL;
    if (make_dirs(dir) != FG_OK)
        return NULL;
    remove_stale_tmp(dir);
    fg_ckpt_writer *w = fg_calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->o = o;
    w->dir = fg_strdup(dir);
    if (!w->dir)
        goto free_writer;
    if (o.async) {
        if (pthread_mutex_init(&w->mu, NULL) != 0) {
            fg_error(FG_ERR_INTERNAL, "cannot create the checkpoint writer's mutex");
            goto free_dir;
        }
        if (pthread_cond_init(&w->cv, NULL) != 0) {
            fg_error(FG_ERR_INTERNAL, "cannot create the checkpoint writer's condition variable");
            goto destroy_mutex;
        }
        int rc = pthread_create(&w->thread, NULL, writer_main, w);
        if (rc != 0) {
            fg_error(FG_ERR_INTERNAL, "cannot start the checkpoint writer thread: %s", strerror(rc));
            goto destroy_cond;
        }
        w->thread_on = true;
    }
    return w;
destroy_cond:
    pthread_cond_destroy(&w->cv);
destroy_mutex:
    pthread_mutex_destroy(&w->mu);
free_dir:
    fg_free(w->dir);
free_writer:
    fg_free(w);
    return NULL;
}

/* Waits for the write in flight; returns (once) the error of a failed background write. */
fg_status fg_ckpt_writer_wait(fg_ckpt_writer *w)
{
    if (!w->thread_on)
        return FG_OK;
    double t0 = fg_time_sec();
    pthread_mutex_lock(&w->mu);
    while (w->busy)
        pthread_cond_wait(&w->cv, &w->mu);
    fg_status st = w->err;
    w->err = FG_OK;
    pthread_mutex_unlock(&w->mu);
    w->stats.wait_sec += fg_time_sec() - t0;
    if (st != FG_OK)
        return fg_error(st, "%s", w->errmsg);
    return FG_OK;
}

fg_status fg_ckpt_writer_save(fg_ckpt_writer *w, long step, const char *meta_json, const fg_ckpt_tensor *t, int n)
{
    fg_status prev = fg_ckpt_writer_wait(w);
    char prevmsg[1024] = "";
    if (prev != FG_OK)
        snprintf(prevmsg, sizeof prevmsg, "%s", fg_last_error());
    if (n < 1 || !t || step < 0)
        return fg_error(FG_ERR_INVALID, "checkpoint save: %d tensors at step %ld", n, step);
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0] || strlen(t[i].name) > 63 || (!t[i].data && t[i].bytes))
            return fg_error(FG_ERR_INVALID, "checkpoint save: tensor %d has no name, a name over 63 bytes or no data",
                            i);
        for (int j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                return fg_error(FG_ERR_INVALID, "checkpoint save: tensor name '%s' appears twice", t[i].name);
    }
    double t0 = fg_time_sec();
    fg_status st = layout_set(&w->cur, t, n);
    if (st == FG_OK && w->stage_cap < w->cur.total) {
        uint8_t *b = fg_malloc(w->cur.total ? w->cur.total : 1);
        if (!b) {
            st = FG_ERR_NOMEM;
        } else {
            fg_free(w->stage);
            w->stage = b;
            w->stage_cap = w->cur.total;
        }
    }
    if (st == FG_OK && w->job_cap < n) {
        const char **a = fg_malloc((size_t)n * sizeof *a);
        const uint8_t **b = fg_malloc((size_t)n * sizeof *b);
        const uint8_t **c = fg_malloc((size_t)n * sizeof *c);
        if (!a || !b || !c) {
            fg_free(a);
            fg_free(b);
            fg_free(c);
            st = FG_ERR_NOMEM;
        } else {
            fg_free(w->job_names);
            fg_free(w->job_data);
            fg_free(w->job_base);
            w->job_names = a;
            w->job_data = b;
            w->job_base = c;
            w->job_cap = n;
        }
    }
    char *meta = NULL;
    if (st == FG_OK) {
        meta = fg_strdup(meta_json ? meta_json : "");
        if (!meta)
            st = FG_ERR_NOMEM;
    }
    if (st != FG_OK) {
        w->have_base = w->have_base && layout_equal(&w->cur, &w->base);
        return st;
    }
    fg_free(w->meta);
    w->meta = meta;
    for (int i = 0; i < n; i++)
        if (t[i].bytes)
            memcpy(w->stage + w->cur.off[i], t[i].data, t[i].bytes);
    w->step = step;
    w->delta = w->have_base && layout_equal(&w->cur, &w->base) && w->deltas_since_full < w->o.full_every - 1;
    w->stats.copy_sec += fg_time_sec() - t0;
    if (w->thread_on) {
        pthread_mutex_lock(&w->mu);
        w->busy = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    } else {
        st = run_job(w);
    }
    /* The earlier failure first: on a full disk this save's own write fails too, and
     * the message must name the write that failed first. */
    if (prev != FG_OK)
        return fg_error(prev, "%s", prevmsg);
    return st;
}

fg_status fg_ckpt_writer_save_stream(fg_ckpt_writer *w, long step, const char *meta_json, const char *const *names,
                                     const size_t *bytes, int n, size_t chunk, fg_ckpt_fill_fn fill, void *ctx)
{
    fg_status prev = fg_ckpt_writer_wait(w);
    char prevmsg[1024] = "";
    if (prev != FG_OK)
        snprintf(prevmsg, sizeof prevmsg, "%s", fg_last_error());
    if (n < 1 || !names || !bytes || !fill || step < 0)
        return fg_error(FG_ERR_INVALID, "checkpoint save: %d streamed tensors at step %ld", n, step);
    double t0 = fg_time_sec(), c0 = thread_cpu_sec();
    ckpt_job job = {.step = step,
                    .meta = meta_json ? meta_json : "",
                    .n = n,
                    .names = names,
                    .bytes = bytes,
                    .delay_ms = w->o.write_delay_ms,
                    .fill = fill,
                    .fill_ctx = ctx,
                    .chunk = chunk};
    char fname[64];
    uint64_t uid = 0, fbytes = 0;
    fg_status st = ckpt_write_file(w->dir, &job, &w->s, fname, &uid, &fbytes);
    /* the base of deltas is not kept (it would be the whole state): the next save is full */
    w->have_base = false;
    if (st == FG_OK) {
        bool first = w->stats.n_full + w->stats.n_delta == 0;
        w->stats.n_full++;
        for (int i = 0; i < n; i++)
            w->stats.raw_full += bytes[i];
        w->stats.file_full += fbytes;
        retention(w, step, fname, first);
    }
    w->stats.write_sec += fg_time_sec() - t0;
    w->stats.write_cpu_sec += thread_cpu_sec() - c0;
    if (prev != FG_OK)
        return fg_error(prev, "%s", prevmsg);
    return st;
}

void fg_ckpt_writer_stats(const fg_ckpt_writer *w, fg_ckpt_stats *s)
{
    /* write_sec and the counters are updated by the writer thread: read them only
     * after fg_ckpt_writer_wait (documented in ckpt.h). */
    *s = w->stats;
}

fg_status fg_ckpt_writer_delete(fg_ckpt_writer *w)
{
    if (!w)
        return FG_OK;
    fg_status st = fg_ckpt_writer_wait(w);
    const fg_ckpt_stats *s = &w->stats;
    if (s->n_full + s->n_delta > 0)
        FG_INFO("checkpoints in %s: %ld full (%.1f MB), %ld delta (%.1f MB, %.3f of their tensor bytes); training "
                "thread: copy %.3f s, wait %.3f s; writer (%s): %.3f s, CPU %.3f s",
                w->dir, s->n_full, (double)s->file_full / 1e6, s->n_delta, (double)s->file_delta / 1e6,
                s->raw_delta ? (double)s->file_delta / (double)s->raw_delta : 0.0, s->copy_sec, s->wait_sec,
                w->thread_on ? "background" : "in the training thread", s->write_sec, s->write_cpu_sec);
    if (w->thread_on) {
        pthread_mutex_lock(&w->mu);
        w->quit = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    ckpt_scratch_free(&w->s);
    layout_free(&w->cur);
    layout_free(&w->base);
    fg_free(w->stage);
    fg_free(w->base_buf);
    fg_free(w->meta);
    fg_free(w->job_names);
    fg_free(w->job_data);
    fg_free(w->job_base);
    fg_free(w->dir);
    fg_free(w);
    return st;
}
