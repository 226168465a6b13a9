/* core.c: status strings, last-error buffer, logging, asserts, counted aligned
 * allocation with failure injection, RNG, timers and process facts. */
#define _GNU_SOURCE
#include "frugal/core.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int fg_log_level = FG_LOG_INFO;

static _Thread_local char last_error[1024];
static _Thread_local fg_status last_status;

const char *fg_status_str(fg_status st)
{
    switch (st) {
    case FG_OK: return "ok";
    case FG_ERR_INVALID: return "invalid argument";
    case FG_ERR_IO: return "I/O error";
    case FG_ERR_FORMAT: return "malformed input";
    case FG_ERR_NOMEM: return "out of memory";
    case FG_ERR_UNSUPPORTED: return "unsupported";
    case FG_ERR_CORRUPT: return "corrupt data";
    case FG_ERR_INTERNAL: return "internal error";
    case FG_ERR_NUMERIC: return "numeric error";
    }
    return "unknown status";
}

fg_status fg_error(fg_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    last_status = st;
    fg_log(FG_LOG_DEBUG, "error (%s): %s", fg_status_str(st), last_error);
    return st;
}

const char *fg_last_error(void)
{
    return last_error;
}
fg_status fg_last_status(void)
{
    return last_status != FG_OK ? last_status : FG_ERR_INTERNAL;
}
void fg_clear_error(void)
{
    last_error[0] = 0;
    last_status = FG_OK;
}

void fg_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > fg_log_level)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from threads do not interleave. */
    fprintf(stderr, "[frugal %s] %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], line);
}

void fg_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "[frugal] assertion failed at %s:%d: %s\n", file, line, cond);
    fflush(stderr);
    abort();
}

/* ---- allocation: a 64-byte header in front of each block holds its size, so
 * fg_free can count without a lookup table and the payload stays 64-aligned. */
#define HDR 64
static atomic_size_t mem_current;
static atomic_size_t mem_peak;
static atomic_long fail_countdown;

static bool should_fail(void)
{
    long c = atomic_load(&fail_countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return c == 1;
    }
    return false;
}

static void count_add(size_t n)
{
    size_t cur = atomic_fetch_add(&mem_current, n) + n;
    size_t pk = atomic_load(&mem_peak);
    while (cur > pk && !atomic_compare_exchange_weak(&mem_peak, &pk, cur)) {
    }
}

void *fg_malloc(size_t bytes)
{
    if (should_fail()) {
        fg_error(FG_ERR_NOMEM, "allocation of %zu bytes failed (injected)", bytes);
        return NULL;
    }
    if (bytes > SIZE_MAX - HDR) {
        fg_error(FG_ERR_NOMEM, "allocation of %zu bytes is too large", bytes);
        return NULL;
    }
    void *raw = NULL;
    if (posix_memalign(&raw, HDR, bytes + HDR) != 0) {
        fg_error(FG_ERR_NOMEM, "allocation of %zu bytes failed", bytes);
        return NULL;
    }
    *(size_t *)raw = bytes;
    count_add(bytes);
    return (uint8_t *)raw + HDR;
}

void *fg_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        fg_error(FG_ERR_NOMEM, "calloc(%zu, %zu) overflows", n, size);
        return NULL;
    }
    void *p = fg_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

/* one page of header (the size) in front of a page-aligned payload */
static size_t page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

void *fg_calloc_lazy(size_t n, size_t size)
{
    size_t ps = page_size();
    if ((size && n > SIZE_MAX / size) || n * size > SIZE_MAX - 2 * ps) {
        fg_error(FG_ERR_NOMEM, "lazy calloc(%zu, %zu) overflows", n, size);
        return NULL;
    }
    if (should_fail()) {
        fg_error(FG_ERR_NOMEM, "allocation of %zu bytes failed (injected)", n * size);
        return NULL;
    }
    size_t bytes = n * size;
    uint8_t *raw = mmap(NULL, bytes + ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) {
        fg_error(FG_ERR_NOMEM, "mapping of %zu bytes failed: %s", bytes, strerror(errno));
        return NULL;
    }
    *(size_t *)raw = bytes;
    count_add(bytes);
    return raw + ps;
}

void fg_free_lazy(void *p)
{
    if (!p)
        return;
    size_t ps = page_size();
    uint8_t *raw = (uint8_t *)p - ps;
    size_t bytes = *(size_t *)raw;
    atomic_fetch_sub(&mem_current, bytes);
    munmap(raw, bytes + ps);
}

void fg_mem_release(void *p, size_t bytes)
{
    size_t ps = page_size();
    uintptr_t a = ((uintptr_t)p + ps - 1) / ps * ps, e = ((uintptr_t)p + bytes) / ps * ps;
    if (p && e > a)
        madvise((void *)a, e - a, MADV_DONTNEED);
}

size_t fg_mem_resident(const void *p, size_t bytes)
{
    if (!p || !bytes)
        return 0;
    size_t ps = page_size();
    uintptr_t a = (uintptr_t)p / ps * ps, e = ((uintptr_t)p + bytes + ps - 1) / ps * ps;
    size_t np = (e - a) / ps, res = 0;
    unsigned char vec[4096];
    for (size_t i = 0; i < np; i += sizeof vec) {
        size_t k = np - i < sizeof vec ? np - i : sizeof vec;
        if (mincore((void *)(a + i * ps), k * ps, vec) != 0)
            return 0;
        for (size_t j = 0; j < k; j++)
            res += vec[j] & 1;
    }
    return res * ps;
}

void fg_free(void *p)
{
    if (!p)
        return;
    uint8_t *raw = (uint8_t *)p - HDR;
    atomic_fetch_sub(&mem_current, *(size_t *)raw);
    free(raw);
}

void *fg_realloc(void *p, size_t bytes)
{
    if (!p)
        return fg_malloc(bytes);
    size_t old = *(size_t *)((uint8_t *)p - HDR);
    void *q = fg_malloc(bytes);
    if (!q)
        return NULL;
    memcpy(q, p, old < bytes ? old : bytes);
    fg_free(p);
    return q;
}

char *fg_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fg_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *fg_strndup(const char *s, size_t n)
{
    char *d = fg_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

size_t fg_mem_current(void)
{
    return atomic_load(&mem_current);
}
size_t fg_mem_peak(void)
{
    return atomic_load(&mem_peak);
}
void fg_mem_fail_after(long n)
{
    atomic_store(&fail_countdown, n > 0 ? n : 0);
}

/* ---- RNG ---- */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void fg_rng_seed(fg_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t fg_rng_next(fg_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t fg_rng_below(fg_rng *r, uint32_t n)
{
    /* Lemire's multiply-shift; the tiny bias (< n / 2^32) does not matter here. */
    return (uint32_t)(((fg_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

float fg_rng_uniform(fg_rng *r)
{
    return (float)(fg_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float fg_rng_normal(fg_rng *r)
{
    /* Box-Muller; u1 kept away from 0 so log() stays finite. */
    double u1 = ((double)(fg_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(fg_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ---- time, threads, process ---- */
double fg_time_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int fg_threads_get(void)
{
    return omp_get_max_threads();
}

void fg_threads_set(int n)
{
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
}

size_t fg_peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtoull(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

const char *fg_env(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return (v && *v) ? v : fallback;
}

fg_status fg_read_file(const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fg_status st = FG_OK;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = fg_error(FG_ERR_IO, "%s: cannot read", path);
        goto close;
    }
    if (max_bytes && (size_t)n > max_bytes) {
        st = fg_error(FG_ERR_IO, "%s: %ld bytes, over the limit of %zu", path, n, max_bytes);
        goto close;
    }
    buf = fg_malloc((size_t)n + 1);
    if (!buf) {
        st = FG_ERR_NOMEM;
        goto close;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fg_free(buf);
        st = fg_error(FG_ERR_IO, "%s: cannot read", path);
        goto close;
    }
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
close:
    fclose(f);
    return st;
}

const char *fg_fmt_bytes(char *buf, size_t n, double bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

/* ---- progress ---- */
void fg_progress_begin(fg_progress *p, const char *label, double total, const char *unit)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->t_start = p->t_last = fg_time_sec();
    const char *force = getenv("FG_PROGRESS");
    p->enabled = force ? atoi(force) != 0 : isatty(2);
}

static void progress_draw(fg_progress *p, double now, bool final)
{
    double el = now - p->t_start;
    double rate = el > 0 ? p->done / el : 0;
    double frac = p->total > 0 ? p->done / p->total : 0;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    double eta = (rate > 0 && p->total > p->done) ? (p->total - p->done) / rate : 0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %.3g %s/s ETA %02d:%02d%s", p->label, bar, 100 * frac, rate, p->unit,
            (int)(eta / 60), (int)eta % 60, final ? "\n" : "");
    fflush(stderr);
}

void fg_progress_update(fg_progress *p, double done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double now = fg_time_sec();
    if (now - p->t_last < 0.1)
        return;
    p->t_last = now;
    progress_draw(p, now, false);
}

void fg_progress_end(fg_progress *p)
{
    if (p->enabled)
        progress_draw(p, fg_time_sec(), true);
}
