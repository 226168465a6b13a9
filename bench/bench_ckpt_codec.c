/* bench_ckpt_codec.c: where the time of one checkpoint goes, per stage, on a synthetic
 * Adam state (params, m, v evolving like AdamW): snapshot copy, CRC32, and whole sync
 * writes of full (raw and shuffle+zstd) and delta checkpoints at zstd levels 1 and 3,
 * with their sizes. Measured in one process, so the figures compare with each other.
 * Usage: bench_ckpt_codec [n_params (default 2000000)] [dir (default /tmp)] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#include "frugal/ckpt.h"

typedef struct adam {
    size_t n;
    float *p, *m, *v; /* [n] each */
    fg_rng rng;
} adam;

/* One AdamW-like step with a random gradient (lr 1e-3, betas 0.9 / 0.95). */
static void adam_step(adam *a)
{
    for (size_t i = 0; i < a->n; i++) {
        float g = 1e-2f * fg_rng_normal(&a->rng);
        a->m[i] = 0.9f * a->m[i] + 0.1f * g;
        a->v[i] = 0.95f * a->v[i] + 0.05f * g * g;
        a->p[i] -= 1e-3f * a->m[i] / (sqrtf(a->v[i]) + 1e-8f);
    }
}

static int tensors(adam *a, fg_ckpt_tensor *t)
{
    size_t b = a->n * sizeof(float);
    t[0] = (fg_ckpt_tensor){"params", a->p, b};
    t[1] = (fg_ckpt_tensor){"adam.m", a->m, b};
    t[2] = (fg_ckpt_tensor){"adam.v", a->v, b};
    return 3;
}

/* Saves a full checkpoint then, 10 steps later, a delta, synchronously; reports the
 * write seconds and file bytes of each. */
static int measure(adam *a, const char *dir, const char *label, int level, bool zfull)
{
    char d[1024], cmd[1100];
    snprintf(d, sizeof d, "%s/bench_ckpt_codec.%d", dir, level * 2 + zfull);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        return 1;
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = false;
    o.full_every = 100;
    o.keep_full = 0;
    o.zstd_level = level;
    o.compress_full = zfull;
    fg_ckpt_writer *w = fg_ckpt_writer_new(d, &o);
    if (!w)
        return 1;
    fg_ckpt_tensor t[3];
    int n = tensors(a, t);
    fg_ckpt_stats s0, s1, s2;
    fg_ckpt_writer_stats(w, &s0);
    if (fg_ckpt_writer_save(w, 1, "{}", t, n) != FG_OK)
        return 1;
    fg_ckpt_writer_stats(w, &s1);
    for (int k = 0; k < 10; k++)
        adam_step(a);
    if (fg_ckpt_writer_save(w, 11, "{}", t, n) != FG_OK)
        return 1;
    fg_ckpt_writer_stats(w, &s2);
    double raw = (double)s1.raw_full;
    printf("%-34s full %6.3f s %6.0f MB/s size %.3f | delta %6.3f s %6.0f MB/s size %.3f of raw, %.3f of full\n", label,
           s1.write_sec - s0.write_sec, raw / 1e6 / (s1.write_sec - s0.write_sec), (double)s1.file_full / raw,
           s2.write_sec - s1.write_sec, raw / 1e6 / (s2.write_sec - s1.write_sec), (double)s2.file_delta / raw,
           (double)s2.file_delta / (double)s1.file_full);
    fg_ckpt_writer_delete(w);
    if (system(cmd) != 0)
        return 1;
    return 0;
}

/* CPU seconds of this thread: robust to other jobs on a shared machine. */
static double cpu_sec(void)
{
    struct timespec ts;
    return clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0 ? (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec : 0.0;
}

/* CPU time of each stage of encoding a delta of `cur` against `base` (n words each),
 * as the writer does it: XOR + byte-plane shuffle, CRC32 of the raw bytes, zstd, CRC32
 * of the compressed bytes. */
static void stages(const float *cur, const float *base, size_t n, uint8_t *shuf, uint8_t *out, size_t cap)
{
    size_t bytes = n * sizeof(float);
    double t0 = cpu_sec();
    const uint8_t *s = (const uint8_t *)cur, *b = (const uint8_t *)base;
    uint8_t *d0 = shuf, *d1 = shuf + n, *d2 = shuf + 2 * n, *d3 = shuf + 3 * n;
    for (size_t i = 0; i < n; i++) {
        uint32_t w, v;
        memcpy(&w, s + 4 * i, 4);
        memcpy(&v, b + 4 * i, 4);
        w ^= v;
        d0[i] = (uint8_t)w;
        d1[i] = (uint8_t)(w >> 8);
        d2[i] = (uint8_t)(w >> 16);
        d3[i] = (uint8_t)(w >> 24);
    }
    double t1 = cpu_sec();
    uLong c = crc32_z(0L, (const Bytef *)cur, bytes);
    double t2 = cpu_sec();
    size_t z1 = ZSTD_compress(out, cap, shuf, bytes, 1);
    double t3 = cpu_sec();
    size_t z3 = ZSTD_compress(out, cap, shuf, bytes, 3);
    double t4 = cpu_sec();
    c ^= crc32_z(0L, (const Bytef *)out, z3);
    double t5 = cpu_sec();
    double mb = (double)bytes / 1e6;
    printf("  %.1f MB: xor+shuffle %.1f ms (%.0f MB/s), crc32 %.1f ms (%.0f MB/s), zstd-1 %.1f ms (%.0f MB/s, %.3f), "
           "zstd-3 %.1f ms (%.0f MB/s, %.3f), crc32 of stored %.1f ms [%lx]\n",
           mb, (t1 - t0) * 1e3, mb / (t1 - t0), (t2 - t1) * 1e3, mb / (t2 - t1), (t3 - t2) * 1e3, mb / (t3 - t2),
           ZSTD_isError(z1) ? 0.0 : (double)z1 / (double)bytes, (t4 - t3) * 1e3, mb / (t4 - t3),
           ZSTD_isError(z3) ? 0.0 : (double)z3 / (double)bytes, (t5 - t4) * 1e3, c);
}

int main(int argc, char **argv)
{
    adam a = {.n = argc > 1 ? (size_t)atol(argv[1]) : 2000000};
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    a.p = fg_malloc(a.n * sizeof(float));
    a.m = fg_calloc(a.n, sizeof(float));
    a.v = fg_calloc(a.n, sizeof(float));
    float *copy = fg_malloc(3 * a.n * sizeof(float));
    if (!a.p || !a.m || !a.v || !copy) {
        fprintf(stderr, "bench_ckpt_codec: %s\n", fg_last_error());
        return 1;
    }
    fg_rng_seed(&a.rng, 1);
    for (size_t i = 0; i < a.n; i++)
        a.p[i] = 0.02f * fg_rng_normal(&a.rng);
    for (int k = 0; k < 20; k++)
        adam_step(&a);
    double mb = 3.0 * (double)a.n * sizeof(float) / 1e6;
    printf("state: %zu params x (params, m, v) = %.1f MB, checkpoints in %s\n", a.n, mb, dir);
    double t0 = fg_time_sec();
    for (int r = 0; r < 5; r++) {
        memcpy(copy, a.p, a.n * sizeof(float));
        memcpy(copy + a.n, a.m, a.n * sizeof(float));
        memcpy(copy + 2 * a.n, a.v, a.n * sizeof(float));
    }
    double t_copy = (fg_time_sec() - t0) / 5;
    t0 = fg_time_sec();
    uLong c = crc32_z(0L, (const Bytef *)copy, 3 * a.n * sizeof(float));
    double t_crc = fg_time_sec() - t0;
    printf("snapshot copy (the only cost on the training thread when async): %.4f s (%.0f MB/s)\n", t_copy,
           mb / t_copy);
    printf("zlib crc32 over the state: %.4f s (%.0f MB/s) [%08lx]\n", t_crc, mb / t_crc, c);
    /* per-stage CPU of a delta of params after 10 more steps */
    float *base = fg_malloc(a.n * sizeof(float));
    uint8_t *shuf = fg_malloc(a.n * sizeof(float));
    size_t cap = ZSTD_compressBound(a.n * sizeof(float));
    uint8_t *out = fg_malloc(cap);
    if (base && shuf && out) {
        memcpy(base, a.p, a.n * sizeof(float));
        for (int k = 0; k < 10; k++)
            adam_step(&a);
        printf("CPU per stage, delta of params after 10 steps (the writer does this per tensor):\n");
        stages(a.p, base, a.n, shuf, out, cap);
    }
    fg_free(base);
    fg_free(shuf);
    fg_free(out);
    int rc = 0;
    rc |= measure(&a, dir, "raw full, delta zstd 1 (default)", 1, false);
    rc |= measure(&a, dir, "raw full, delta zstd 3", 3, false);
    rc |= measure(&a, dir, "shuffle+zstd-1 full, delta zstd 1", 1, true);
    fg_free(a.p);
    fg_free(a.m);
    fg_free(a.v);
    fg_free(copy);
    return rc;
}
