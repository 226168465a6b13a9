/* file.c: whole-or-absent file writes (temp file in the same directory, checked writes,
 * fsync, rename, fsync of the directory) and the exclusive lock on an output. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frugal/core.h"

#define TX_BUF (64u << 10)

/* The directory part of path ("." when it has none), for the fsync after a rename. */
static fg_status fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) >= sizeof dir)
        return fg_error(FG_ERR_INVALID, "%s: path too long", path);
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fg_error(FG_ERR_IO, "%s: cannot open directory to fsync: %s", dir, strerror(errno));
    fg_status st = FG_OK;
    /* Some file systems (tmpfs, some FUSE) refuse fsync on a directory with EINVAL:
     * there is nothing to make durable then. */
    if (fsync(fd) != 0 && errno != EINVAL)
        st = fg_error(FG_ERR_IO, "%s: fsync of directory failed: %s", dir, strerror(errno));
    close(fd);
    return st;
}

/* Records the first failure of a transaction; later ones are consequences. */
static fg_status tx_fail(fg_file_tx *t, fg_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static fg_status tx_fail(fg_file_tx *t, fg_status st, const char *fmt, ...)
{
    if (t->st == FG_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->first_error, sizeof t->first_error, fmt, ap);
        va_end(ap);
        t->st = st;
    }
    return fg_error(t->st, "%s", t->first_error);
}

/* Writes n bytes at the end of the temp file; the first failure is recorded with the
 * size and offset of the write that failed. */
static fg_status tx_put(fg_file_tx *t, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = write(t->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : ENOSPC;
            return tx_fail(t, FG_ERR_IO, "%s: write of %zu bytes at byte %" PRIu64 " failed: %s", t->path, n, t->offset,
                           strerror(e));
        }
        p += r;
        n -= (size_t)r;
        t->offset += (uint64_t)r;
    }
    return FG_OK;
}

static fg_status tx_drain(fg_file_tx *t)
{
    fg_status st = tx_put(t, t->buf, t->buf_len);
    t->buf_len = 0;
    return st;
}

fg_status fg_file_tx_open(fg_file_tx *t, const char *path, unsigned flags)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->flags = flags;
    size_t pl = strlen(path);
    if (pl == 0)
        return fg_error(FG_ERR_INVALID, "output path is empty");
    t->path = fg_malloc(pl + 1);
    t->tmp = fg_malloc(pl + 32);
    t->buf = fg_malloc(TX_BUF);
    if (!t->path || !t->tmp || !t->buf) {
        fg_file_tx_abort(t);
        return FG_ERR_NOMEM;
    }
    memcpy(t->path, path, pl + 1);
    /* The pid keeps two processes writing the same output from sharing one temp file;
     * the lock (fg_lock_acquire) is what keeps them from racing on the final name. */
    snprintf(t->tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    t->fd = open(t->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t->fd < 0) {
        fg_status st = fg_error(FG_ERR_IO, "%s: cannot create %s: %s", path, t->tmp, strerror(errno));
        fg_free(t->tmp); /* nothing was created: abort must not unlink someone else's file */
        t->tmp = NULL;
        fg_file_tx_abort(t);
        return st;
    }
    return FG_OK;
}

fg_status fg_file_tx_write(fg_file_tx *t, const void *data, size_t len)
{
    if (t->st != FG_OK)
        return fg_error(t->st, "%s", t->first_error);
    const uint8_t *p = data;
    if (len >= TX_BUF) {
        /* large blobs (checkpoint tensors) go straight to the file, without a copy */
        if (tx_drain(t) != FG_OK)
            return t->st;
        return tx_put(t, p, len);
    }
    while (len) {
        if (t->buf_len == TX_BUF && tx_drain(t) != FG_OK)
            return t->st;
        size_t n = TX_BUF - t->buf_len < len ? TX_BUF - t->buf_len : len;
        memcpy(t->buf + t->buf_len, p, n);
        t->buf_len += n;
        p += n;
        len -= n;
    }
    return FG_OK;
}

fg_status fg_file_tx_printf(fg_file_tx *t, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return tx_fail(t, FG_ERR_INTERNAL, "%s: cannot format output text", t->path);
    if ((size_t)n < sizeof small)
        return fg_file_tx_write(t, small, (size_t)n);
    char *big = fg_malloc((size_t)n + 1);
    if (!big)
        return tx_fail(t, FG_ERR_NOMEM, "%s: no memory for %d bytes of output text", t->path, n);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    fg_status st = fg_file_tx_write(t, big, (size_t)n);
    fg_free(big);
    return st;
}

fg_status fg_file_tx_status(const fg_file_tx *t)
{
    return t->st;
}

fg_status fg_file_tx_pwrite(fg_file_tx *t, uint64_t offset, const void *data, size_t len)
{
    if (t->st != FG_OK)
        return fg_error(t->st, "%s", t->first_error);
    if (tx_drain(t) != FG_OK)
        return t->st;
    if (offset > t->offset || len > t->offset - offset)
        return tx_fail(t, FG_ERR_INTERNAL, "%s: patch of %zu bytes at byte %" PRIu64 " past the %" PRIu64 " written",
                       t->path, len, offset, t->offset);
    const uint8_t *p = data;
    while (len) {
        ssize_t r = pwrite(t->fd, p, len, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return tx_fail(t, FG_ERR_IO, "%s: write of %zu bytes at byte %" PRIu64 " failed: %s", t->path, len, offset,
                           strerror(r < 0 ? errno : ENOSPC));
        p += r;
        len -= (size_t)r;
        offset += (uint64_t)r;
    }
    return FG_OK;
}

fg_status fg_file_tx_commit(fg_file_tx *t)
{
    if (t->fd < 0) {
        fg_file_tx_abort(t);
        return fg_error(FG_ERR_INTERNAL, "file transaction committed twice or never opened");
    }
    if (t->st == FG_OK)
        tx_drain(t);
    if (t->st == FG_OK && !(t->flags & FG_FILE_NO_SYNC) && fsync(t->fd) != 0)
        tx_fail(t, FG_ERR_IO, "%s: fsync failed: %s", t->path, strerror(errno));
    /* Delayed allocation: some file systems only report ENOSPC at close. */
    int rc = close(t->fd);
    t->fd = -1;
    if (rc != 0)
        tx_fail(t, FG_ERR_IO, "%s: close failed: %s", t->path, strerror(errno));
    if (t->st == FG_OK && rename(t->tmp, t->path) != 0)
        tx_fail(t, FG_ERR_IO, "%s: rename from %s failed: %s", t->path, t->tmp, strerror(errno));
    fg_status st = t->st;
    if (st == FG_OK) {
        fg_free(t->tmp); /* renamed: nothing left to unlink */
        t->tmp = NULL;
        if (!(t->flags & FG_FILE_NO_SYNC))
            st = fsync_parent(t->path);
    } else {
        /* Re-raise the first failure: closing or unlinking may have set another one. */
        char msg[sizeof t->first_error];
        snprintf(msg, sizeof msg, "%s", t->first_error);
        fg_file_tx_abort(t);
        return fg_error(st, "%s", msg);
    }
    fg_file_tx_abort(t);
    return st;
}

void fg_file_tx_abort(fg_file_tx *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->tmp)
        unlink(t->tmp);
    fg_free(t->tmp);
    fg_free(t->path);
    fg_free(t->buf);
    t->tmp = t->path = NULL;
    t->buf = NULL;
    t->buf_len = 0;
}

fg_status fg_file_commit_flags(const char *path, const void *data, size_t len, unsigned flags)
{
    fg_file_tx t;
    fg_status st = fg_file_tx_open(&t, path, flags);
    if (st != FG_OK)
        return st;
    /* A write failure is recorded in t; commit reports it and removes the temp file. */
    fg_file_tx_write(&t, data, len);
    return fg_file_tx_commit(&t);
}

fg_status fg_file_commit(const char *path, const void *data, size_t len)
{
    return fg_file_commit_flags(path, data, len, 0);
}

/* ---- lock ---- */
fg_status fg_lock_acquire(fg_lock *l, const char *lock_path)
{
    l->fd = -1;
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fg_error(FG_ERR_IO, "%s: cannot open lock file: %s", lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char text[32] = {0};
        ssize_t n = pread(fd, text, sizeof text - 1, 0);
        close(fd);
        if (e != EWOULDBLOCK)
            return fg_error(FG_ERR_IO, "%s: cannot lock: %s", lock_path, strerror(e));
        char *end = NULL;
        long pid = n > 0 ? strtol(text, &end, 10) : 0;
        if (pid > 0 && end && (*end == '\n' || *end == 0))
            return fg_error(FG_ERR_IO, "%s: locked by pid %ld (another frugal process is using it)", lock_path, pid);
        /* The holder locked but has not written its pid yet. */
        return fg_error(FG_ERR_IO, "%s: locked by another process (pid not yet recorded)", lock_path);
    }
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        fg_status st =
            fg_error(FG_ERR_IO, "%s: cannot record the pid in the lock file: %s", lock_path, strerror(errno));
        close(fd);
        return st;
    }
    l->fd = fd;
    return FG_OK;
}

void fg_lock_release(fg_lock *l)
{
    if (l->fd < 0)
        return;
    /* The file stays: unlinking it would let a process that opened the old inode and a
     * process that creates a new one both hold "the" lock. An empty file means free. */
    if (ftruncate(l->fd, 0) != 0)
        FG_DEBUG("lock file: cannot clear the pid: %s", strerror(errno));
    close(l->fd); /* closing the last descriptor releases the flock */
    l->fd = -1;
}
