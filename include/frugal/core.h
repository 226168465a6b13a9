/* core.h: status codes, last-error messages, logging, asserts, counted allocation,
 * arenas, RNG, timers, thread count and the progress bar, used by every module.
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
void fg_clear_error(void);

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
size_t fg_mem_current(void); /* bytes live through fg_malloc now */
size_t fg_mem_peak(void);    /* high-water mark of fg_mem_current */
/* Test hook: the n-th fg_malloc/calloc/realloc from now (1 = next) fails; n <= 0 disables. */
void fg_mem_fail_after(long n);

/* ---- arena: per-step scratch, reset each step, never freed piecemeal ---- */
typedef struct fg_arena {
    uint8_t *base;
    size_t cap;  /* bytes */
    size_t used; /* bytes */
    size_t peak; /* high-water mark of used */
} fg_arena;
fg_status fg_arena_init(fg_arena *a, size_t cap);
/* 64-byte aligned; NULL (last error set) when the arena is full. */
void *fg_arena_alloc(fg_arena *a, size_t bytes);
void fg_arena_reset(fg_arena *a);
void fg_arena_free(fg_arena *a); /* safe on a zeroed or already freed arena */

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
double fg_time_sec(void);                                   /* monotonic seconds */
int fg_threads_get(void);                                   /* OpenMP threads used by kernels */
void fg_threads_set(int n);                                 /* n <= 0: all cores */
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

/* ---- misc ---- */
/* Human-readable byte count into buf ("1.50 GiB"). Returns buf. */
const char *fg_fmt_bytes(char *buf, size_t n, double bytes);

#ifdef __cplusplus
}
#endif
#endif
