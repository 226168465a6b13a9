/* core.h: status codes, last-error messages, logging, asserts, counted allocation,
 * RNG, timers, thread count, the progress bar, atomic file writes and output locks,
 * used by every module.
 *
 * Usage:
 *   fg_status st = fg_something(...);
 *   if (st != FG_OK) fprintf(stderr, "%s\n", fg_last_error());
 * Library code reports failure with `return fg_error(FG_ERR_FORMAT, "%s:%d: ...",
 * path, line)`; only src/cli exits. All heap memory goes through fg_malloc/fg_free,
 * which count bytes for the cost summary and let tests inject failures.
 * Globals: the log level, and the allocation counters (like redis zmalloc's
 * used_memory); the last-error buffer is thread-local.
 */
#ifndef FRUGAL_CORE_H
#define FRUGAL_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ---- */
typedef enum fg_status {
    FG_OK = 0,
    FG_ERR_INVALID = -1,     /* bad argument, config key or value */
    FG_ERR_IO = -2,          /* open/read/write/fsync/rename failed */
    FG_ERR_FORMAT = -3,      /* malformed input file (JSON, shard, tokenizer, ...) */
    FG_ERR_NOMEM = -4,       /* allocation failed */
    FG_ERR_UNSUPPORTED = -5, /* feature, version or ISA not available */
    FG_ERR_CORRUPT = -6,     /* checksum mismatch, truncated file */
    FG_ERR_INTERNAL = -7,    /* a bug: invariant broken */
    FG_ERR_NUMERIC = -8,     /* NaN/Inf where it cannot be handled */
} fg_status;

/* Name of a status ("invalid argument", ...). Never NULL. */
const char *fg_status_str(fg_status st);

/* Records a formatted message as this thread's last error (replacing the previous
 * one), logs it at DEBUG level, and returns st so callers can `return fg_error(...)`. */
fg_status fg_error(fg_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's last error message ("" when none). Valid until the next fg_error. */
const char *fg_last_error(void);
/* The status given to this thread's last fg_error. Constructors that return a pointer
 * (fg_model_new, fg_tok_load, fg_ckpt_writer_new, ...) return NULL on failure after
 * calling fg_error on every failing path, so their callers read the status here
 * instead of guessing one: `if (!m) return fg_last_status();`. FG_ERR_INTERNAL when no
 * error was recorded since fg_clear_error (a failure without a message is a bug). */
fg_status fg_last_status(void);
void fg_clear_error(void); /* clears the message and the status */

/* ---- logging ---- */
enum fg_log_level { FG_LOG_ERROR = 0, FG_LOG_WARN = 1, FG_LOG_INFO = 2, FG_LOG_DEBUG = 3 };
extern int fg_log_level; /* messages above this level are dropped; default INFO */

/* Writes "[frugal LEVEL] message\n" to stderr when level <= fg_log_level. */
void fg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define FG_WARN(...) fg_log(FG_LOG_WARN, __VA_ARGS__)
#define FG_INFO(...) fg_log(FG_LOG_INFO, __VA_ARGS__)
#define FG_DEBUG(...) fg_log(FG_LOG_DEBUG, __VA_ARGS__)

/* Broken invariants abort in every build type, printing file:line and the condition. */
void fg_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));
#define FG_ASSERT(c) ((c) ? (void)0 : fg_assert_fail(#c, __FILE__, __LINE__))

/* ---- counted allocation ----
 * fg_malloc returns 64-byte aligned memory (cache line, AVX-512 vector) or NULL with
 * the last error set. fg_free(NULL) is a no-op. fg_realloc keeps the alignment. */
void *fg_malloc(size_t bytes);
void *fg_calloc(size_t n, size_t size);
void *fg_realloc(void *p, size_t bytes);
void fg_free(void *p);
char *fg_strdup(const char *s);
/* Copy of s[0..n) with a NUL after it (s may hold NULs; NULL on failure, last error set). */
char *fg_strndup(const char *s, size_t n);
size_t fg_mem_current(void); /* bytes live through fg_malloc now */
size_t fg_mem_peak(void);    /* high-water mark of fg_mem_current */
/* Test hook: the n-th fg_malloc/calloc/realloc from now (1 = next) fails; n <= 0 disables. */
void fg_mem_fail_after(long n);
/* Zeroed memory whose pages exist only once touched (an anonymous mapping, page-aligned;
 * counted in fg_mem_current like fg_calloc, whole): the model's flat buffers, of which a
 * pipeline stage touches only its own tensors' spans (docs/DIST.md "Memory per rank").
 * Freed with fg_free_lazy only. */
void *fg_calloc_lazy(size_t n, size_t size);
void fg_free_lazy(void *p);
/* Gives the whole pages inside [p, p + bytes) of fg_calloc_lazy memory back to the system
 * (they read as zeros afterwards); the partial pages at either end stay. */
void fg_mem_release(void *p, size_t bytes);
/* Bytes of the pages covering [p, p + bytes) that are resident now (0 when unknown). */
size_t fg_mem_resident(const void *p, size_t bytes);

/* ---- RNG: xoshiro256** seeded through splitmix64; reproducible across machines ---- */
typedef struct fg_rng {
    uint64_t s[4];
} fg_rng;
void fg_rng_seed(fg_rng *r, uint64_t seed);
uint64_t fg_rng_next(fg_rng *r);
uint32_t fg_rng_below(fg_rng *r, uint32_t n); /* uniform in [0, n), n > 0 */
float fg_rng_uniform(fg_rng *r);              /* uniform in [0, 1) with 24 random bits */
float fg_rng_normal(fg_rng *r);               /* standard normal (Box-Muller) */

/* ---- time, threads, memory of the process ---- */
double fg_time_sec(void);   /* monotonic seconds */
int fg_threads_get(void);   /* OpenMP threads used by kernels */
void fg_threads_set(int n); /* n <= 0: all cores */
/* for (T i = lo; i < hi; i++) body, over the OpenMP threads when par, else as a plain
 * loop outside any OpenMP construct: a region with a false `if` clause still calls
 * GOMP_parallel and wakes a futex, which row passes run several times per layer and step
 * cannot afford (docs/perf/kernels.md, section 10). */
#define FG_ROWS_FOR(par, T, i, lo, hi, ...)                                                                            \
    do {                                                                                                               \
        if (par) {                                                                                                     \
            _Pragma("omp parallel for schedule(static)") for (T i = (lo); i < (hi); i++) __VA_ARGS__                   \
        } else {                                                                                                       \
            for (T i = (lo); i < (hi); i++)                                                                            \
                __VA_ARGS__                                                                                            \
        }                                                                                                              \
    } while (0)
size_t fg_peak_rss_bytes(void);                             /* VmHWM of this process, 0 when unknown */
const char *fg_env(const char *name, const char *fallback); /* getenv with default */

/* ---- progress bar on stderr (only when stderr is a terminal or FG_PROGRESS=1) ----
 * Shows done/total, rate in `unit`/s and the ETA; at most ~10 redraws a second. */
typedef struct fg_progress {
    const char *label;
    const char *unit;
    double total, done;
    double t_start, t_last;
    bool enabled;
} fg_progress;
void fg_progress_begin(fg_progress *p, const char *label, double total, const char *unit);
void fg_progress_update(fg_progress *p, double done); /* absolute amount done */
void fg_progress_end(fg_progress *p);

/* ---- files ---- */
/* Reads the whole file at path into *out (fg_malloc'd, with a NUL after the last
 * byte; the caller fg_free()s it) and its size into *len. max_bytes > 0 refuses larger
 * files. FG_ERR_IO with "<path>: cannot open: <reason>", "<path>: cannot read" or
 * "<path>: N bytes, over the limit of M" in the last error; *out is NULL then. */
fg_status fg_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Whole-or-absent writes. Every output that replaces a file goes through these: the
 * bytes go to "<path>.tmp.<pid>" in the same directory, every write is checked, then
 * fsync, rename over path (atomic on POSIX) and fsync of the directory. After a crash
 * or a failure path holds either its old content or the new one, never a torn mix; a
 * failure removes the temp file. A crash can leave "<path>.tmp.<pid>" behind. One
 * transaction per path per process at a time (the temp name is per process); other
 * processes are kept off an output by fg_lock. */
enum {
    /* Skip both fsyncs: still atomic against a kill, not against a power loss. Only for
     * files nobody trusts after a crash (the checkpoint `latest` pointer). */
    FG_FILE_NO_SYNC = 1u,
};

/* Writes len bytes to path atomically. FG_OK, or FG_ERR_IO with "<path>: <step> failed:
 * <reason>" (the first step that failed) and path untouched; FG_ERR_NOMEM. */
fg_status fg_file_commit(const char *path, const void *data, size_t len);
fg_status fg_file_commit_flags(const char *path, const void *data, size_t len, unsigned flags);

/* Streaming form for outputs built piece by piece (checkpoints, models, JSON):
 *   fg_file_tx t;
 *   if ((st = fg_file_tx_open(&t, path, 0)) != FG_OK) return st;
 *   fg_file_tx_write(&t, hdr, n); fg_file_tx_printf(&t, "%d\n", x); ...
 *   if (something_else_failed) { fg_file_tx_abort(&t); return st; }
 *   return fg_file_tx_commit(&t);
 * Writes are buffered (64 KiB) and checked as they reach the file: the first failure is
 * recorded ("<path>: write of N bytes at byte B failed: <reason>") and returned by that
 * call, by every later write (which then does nothing) and by commit, so the message
 * always names the write that failed first, not a later one. Fields are private. */
typedef struct fg_file_tx {
    int fd;
    unsigned flags;
    char *path, *tmp;
    uint8_t *buf;
    size_t buf_len;
    uint64_t offset;       /* bytes already in the temp file */
    fg_status st;          /* first failure, FG_OK while none */
    char first_error[512]; /* its message, kept from being overwritten by later errors */
} fg_file_tx;

/* Creates the temp file. On failure nothing is left to abort (t is cleared). */
fg_status fg_file_tx_open(fg_file_tx *t, const char *path, unsigned flags);
/* Appends bytes / formatted text; FG_OK or the transaction's first failure. */
fg_status fg_file_tx_write(fg_file_tx *t, const void *data, size_t len);
fg_status fg_file_tx_printf(fg_file_tx *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The first failure so far (FG_OK when none); its message is t->first_error. */
fg_status fg_file_tx_status(const fg_file_tx *t);
/* Overwrites len bytes at offset of what was already written (a header patched once
 * the sizes are known, as the token shard writer does); offset + len must not pass the
 * bytes written so far. Failures are recorded like a write's. */
fg_status fg_file_tx_pwrite(fg_file_tx *t, uint64_t offset, const void *data, size_t len);
/* Flushes, fsyncs, closes, renames over the path, fsyncs the directory (no fsyncs with
 * FG_FILE_NO_SYNC). Always ends the transaction; on failure the temp file is removed,
 * path is untouched and the last error is the first failure's message. */
fg_status fg_file_tx_commit(fg_file_tx *t);
/* Ends the transaction without touching path (closes and removes the temp file). Safe
 * after commit or a failed open. */
void fg_file_tx_abort(fg_file_tx *t);

/* An exclusive lock on an output (a run directory, an output file), held until
 * fg_lock_release or the process ends (a crash releases it: it is a flock(2), not the
 * existence of a file). The lock file holds the holder's pid. A second process (or a
 * second acquire in the same process) gets FG_ERR_IO with
 * "<lock_path>: locked by pid N (another frugal process is using it)".
 * fg_lock_release is a no-op after a failed acquire; the lock file stays (empty). */
typedef struct fg_lock {
    int fd; /* -1 when not held */
} fg_lock;
fg_status fg_lock_acquire(fg_lock *l, const char *lock_path);
void fg_lock_release(fg_lock *l);

/* ---- misc ---- */
/* Human-readable byte count into buf ("1.50 GiB"). Returns buf. */
const char *fg_fmt_bytes(char *buf, size_t n, double bytes);

#ifdef __cplusplus
}
#endif
#endif
