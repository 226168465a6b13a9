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
    /* field by field: the struct's padding byte is not part of the state */
    return !memcmp(a->p, b->p, sizeof a->p) && !memcmp(a->m, b->m, sizeof a->m) &&
           !memcmp(a->blob, b->blob, sizeof a->blob);
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

/* Loads path into a fresh state; FG_OK and the state, or the error. */
static fg_status load_path(const char *path, state *got, long *step)
{
    fg_ckpt_tensor t[3];
    return fg_ckpt_load_file(path, step, NULL, t, tensors(got, t));
}

static const char *file_of(const char *dir, long step, bool delta)
{
    static char buf[4][600];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 600, "%s/ckpt-%010ld-%s.fgck", dir, step, delta ? "delta" : "full");
    return p;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void test_delta_chain(void)
{
    const char *dir = mkdir_in_tmp("chain");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = false;
    o.full_every = 3;
    o.keep_full = 0;
    state *hist = calloc(8, sizeof *hist), *got = calloc(1, sizeof *got);
    FG_CHECK(write_run(dir, o, 7, hist) == FG_OK, "delta run: %s", fg_last_error());
    FG_CHECK(count_files(dir, "-full.fgck") == 3 && count_files(dir, "-delta.fgck") == 4,
             "full at 10, 40, 70; deltas at 20, 30, 50, 60");
    for (int i = 1; i <= 7; i++) {
        bool delta = (i - 1) % 3 != 0;
        const char *path = file_of(dir, i * 10, delta);
        long step = -1;
        memset(got, 0, sizeof *got);
        fg_status st = load_path(path, got, &step);
        FG_CHECK(st == FG_OK && step == i * 10 && state_eq(got, &hist[i]), "step %d (%s) loads bit-exact: %s", i * 10,
                 delta ? "delta" : "full", st ? fg_last_error() : "ok");
        FG_CHECK(fg_ckpt_verify(path) == FG_OK, "verify %s", path);
        fg_ckpt_info info;
        if (fg_ckpt_info_read(path, &info) == FG_OK) {
            FG_CHECK(info.delta == delta && info.step == i * 10 && info.n_tensor == 3, "info of step %d", i * 10);
            if (delta)
                FG_CHECK(info.base_step == (i - 1) / 3 * 30 + 10, "delta %d is against full %ld", i * 10,
                         info.base_step);
            fg_ckpt_info_free(&info);
        }
    }
    /* a delta of a slowly changing state is smaller than the full file */
    FG_CHECK(file_size(file_of(dir, 20, true)) < file_size(file_of(dir, 10, false)), "delta %ld < full %ld bytes",
             file_size(file_of(dir, 20, true)), file_size(file_of(dir, 10, false)));
    void *data = NULL;
    size_t bytes = 0;
    FG_CHECK(fg_ckpt_read_tensor(file_of(dir, 60, true), "adam.m", &data, &bytes) == FG_OK && bytes == sizeof got->m &&
                 !memcmp(data, hist[6].m, bytes),
             "read_tensor through a delta");
    fg_free(data);
    free(hist);
    free(got);
}

/* Tensor bytes of every file in two directories are identical (the files differ in
 * their uid and creation time only). */
static void test_async_equals_sync(void)
{
    const char *ds = mkdir_in_tmp("sync"), *da = mkdir_in_tmp("async");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.full_every = 3;
    o.keep_full = 0;
    o.async = false;
    FG_CHECK(write_run(ds, o, 6, NULL) == FG_OK, "sync run");
    o.async = true;
    FG_CHECK(write_run(da, o, 6, NULL) == FG_OK, "async run: %s", fg_last_error());
    char **ps, **pa;
    int ns, na;
    FG_CHECK(fg_ckpt_list(ds, &ps, &ns) == FG_OK && fg_ckpt_list(da, &pa, &na) == FG_OK && ns == na && ns == 6,
             "same files");
    int same = 0;
    for (int i = 0; i < ns && i < na; i++) {
        FG_CHECK(!strcmp(strrchr(ps[i], '/'), strrchr(pa[i], '/')), "same name %s", strrchr(pa[i], '/'));
        FG_CHECK(file_size(ps[i]) == file_size(pa[i]), "same size %s", strrchr(pa[i], '/'));
        const char *names[] = {"params", "adam.m", "blob"};
        for (int k = 0; k < 3; k++) {
            void *a = NULL, *b = NULL;
            size_t na_ = 0, nb = 0;
            if (fg_ckpt_read_tensor(ps[i], names[k], &a, &na_) == FG_OK &&
                fg_ckpt_read_tensor(pa[i], names[k], &b, &nb) == FG_OK && na_ == nb && !memcmp(a, b, na_))
                same++;
            fg_free(a);
            fg_free(b);
        }
    }
    FG_CHECK(same == 18, "async tensors == sync tensors (%d of 18)", same);
    fg_ckpt_list_free(ps, ns);
    fg_ckpt_list_free(pa, na);
}

static void test_retention(void)
{
    const char *dir = mkdir_in_tmp("keep");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = true;
    o.full_every = 2;
    o.keep_full = 2;
    state *hist = calloc(11, sizeof *hist), *got = calloc(1, sizeof *got);
    FG_CHECK(write_run(dir, o, 10, hist) == FG_OK, "retention run");
    /* full at 10 30 50 70 90, deltas at 20 40 60 80 100: keep 70 80 90 100 */
    FG_CHECK(count_files(dir, "-full.fgck") == 2 && count_files(dir, "-delta.fgck") == 2, "2 full + 2 deltas kept");
    FG_CHECK(file_size(file_of(dir, 70, false)) > 0 && file_size(file_of(dir, 100, true)) > 0 &&
                 file_size(file_of(dir, 50, false)) < 0,
             "the newest are kept, the oldest removed");
    long step = -1;
    fg_ckpt_tensor t[3];
    FG_CHECK(fg_ckpt_load_latest(dir, &step, NULL, t, tensors(got, t)) == FG_OK && step == 100 &&
                 state_eq(got, &hist[10]),
             "latest is step 100, bit-exact");
    char latest[600], line[128] = "";
    snprintf(latest, sizeof latest, "%s/latest", dir);
    FILE *f = fopen(latest, "r");
    if (f) {
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        fclose(f);
    }
    FG_CHECK(!strcmp(line, "ckpt-0000000100-delta.fgck\n"), "latest pointer names the newest: '%s'", line);
    snprintf(latest, sizeof latest, "%s/notes.txt", dir);
    f = fopen(latest, "w");
    if (f)
        fclose(f);
    FG_CHECK(fg_ckpt_remove_all(dir) == FG_OK && count_files(dir, ".fgck") == 0 && access(latest, F_OK) == 0,
             "remove_all removes checkpoints only");
    FG_CHECK(fg_ckpt_remove_all(mkdir_in_tmp("never")) == FG_OK, "remove_all on a missing dir");

    /* a new writer's first checkpoint starts a new timeline: higher steps are removed */
    const char *tl = mkdir_in_tmp("timeline");
    o.full_every = 3;
    o.keep_full = 0;
    FG_CHECK(write_run(tl, o, 6, hist) == FG_OK, "old timeline 10..60");
    fg_ckpt_writer *w = fg_ckpt_writer_new(tl, &o);
    fg_ckpt_tensor t2[3];
    state_init(got, 5);
    FG_CHECK(w && fg_ckpt_writer_save(w, 25, "{}", t2, tensors(got, t2)) == FG_OK && fg_ckpt_writer_delete(w) == FG_OK,
             "new timeline at 25");
    FG_CHECK(count_files(tl, ".fgck") == 3 && file_size(file_of(tl, 20, true)) > 0 &&
                 file_size(file_of(tl, 30, true)) < 0 && file_size(file_of(tl, 60, true)) < 0,
             "files after step 25 removed, 10 and 20 kept (%d files)", count_files(tl, ".fgck"));
    state *back = calloc(1, sizeof *back);
    FG_CHECK(fg_ckpt_load_latest(tl, &step, NULL, t2, tensors(back, t2)) == FG_OK && step == 25 && state_eq(back, got),
             "latest is the new timeline's step 25");
    free(back);
    free(hist);
    free(got);
}

static void copy_dir(const char *from, const char *to)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    FG_CHECK(system(cmd) == 0, "%s", cmd);
}

static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    if (!f) {
        FG_CHECK(0, "open %s", path);
        return;
    }
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

/* Loads dir's latest into a sentinel-filled state; expects `want_step` (and the state
 * of that step) or, when want_step < 0, a failure with the buffers untouched. */
static void expect_latest(const char *dir, long want_step, const state *hist, const char *what)
{
    state *got = malloc(sizeof *got);
    memset(got, 0xAB, sizeof *got);
    fg_ckpt_tensor t[3];
    long step = -1;
    fg_status st = fg_ckpt_load_latest(dir, &step, NULL, t, tensors(got, t));
    if (want_step < 0) {
        state *sentinel = malloc(sizeof *sentinel);
        memset(sentinel, 0xAB, sizeof *sentinel);
        FG_CHECK(st != FG_OK, "%s: load fails", what);
        FG_CHECK(state_eq(got, sentinel), "%s: nothing partial was loaded", what);
        free(sentinel);
    } else {
        FG_CHECK(st == FG_OK && step == want_step && state_eq(got, &hist[want_step / 10]),
                 "%s: falls back to step %ld (got %ld, %s)", what, want_step, step, st ? fg_last_error() : "ok");
    }
    free(got);
}

static void test_corruption(void)
{
    const char *dir = mkdir_in_tmp("good"), *bad = mkdir_in_tmp("bad");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = false;
    o.full_every = 3;
    o.keep_full = 0;
    state *hist = calloc(7, sizeof *hist);
    FG_CHECK(write_run(dir, o, 6, hist) == FG_OK, "corruption base run");
    /* files: 10 full, 20 30 delta, 40 full, 50 60 delta */
    const char *newest = file_of(bad, 60, true);
    fg_ckpt_info info;
    FG_CHECK(fg_ckpt_info_read(file_of(dir, 60, true), &info) == FG_OK, "info");
    long data_at = (long)info.tensors[0].offset + 5, size = (long)info.file_bytes;
    fg_ckpt_info_free(&info);

    copy_dir(dir, bad);
    flip_byte(newest, data_at);
    FG_CHECK(fg_ckpt_verify(newest) == FG_ERR_CORRUPT && strstr(fg_last_error(), "CRC"), "tensor flip: %s",
             fg_last_error());
    expect_latest(bad, 50, hist, "flipped tensor byte");

    copy_dir(dir, bad);
    flip_byte(newest, size - 40);
    FG_CHECK(fg_ckpt_verify(newest) == FG_ERR_CORRUPT && strstr(fg_last_error(), "manifest"), "manifest flip: %s",
             fg_last_error());
    expect_latest(bad, 50, hist, "flipped manifest byte");

    copy_dir(dir, bad);
    FG_CHECK(truncate(newest, size / 2) == 0, "truncate");
    FG_CHECK(fg_ckpt_verify(newest) == FG_ERR_CORRUPT && strstr(fg_last_error(), "truncated"), "truncated: %s",
             fg_last_error());
    expect_latest(bad, 50, hist, "truncated file");
    FG_CHECK(truncate(newest, 3) == 0, "truncate to 3 bytes");
    FG_CHECK(fg_ckpt_verify(newest) == FG_ERR_CORRUPT && strstr(fg_last_error(), "truncated"), "3 bytes: %s",
             fg_last_error());

    copy_dir(dir, bad);
    flip_byte(newest, 2);
    FG_CHECK(fg_ckpt_verify(newest) == FG_ERR_FORMAT && strstr(fg_last_error(), "not a frugal checkpoint"),
             "foreign: %s", fg_last_error());
    expect_latest(bad, 50, hist, "wrong magic");

    copy_dir(dir, bad);
    flip_byte(newest, 9); /* version 1 -> 4097 */
    FG_CHECK(fg_ckpt_verify(newest) == FG_ERR_UNSUPPORTED && strstr(fg_last_error(), "newer"), "future: %s",
             fg_last_error());
    expect_latest(bad, 50, hist, "future version");

    copy_dir(dir, bad);
    FG_CHECK(unlink(file_of(bad, 40, false)) == 0, "remove base");
    FG_CHECK(fg_ckpt_verify(newest) == FG_ERR_CORRUPT && strstr(fg_last_error(), "missing"), "missing base: %s",
             fg_last_error());
    expect_latest(bad, 30, hist, "missing base");

    copy_dir(dir, bad);
    flip_byte(file_of(bad, 40, false), data_at);
    expect_latest(bad, 30, hist, "corrupt base");

    /* a foreign file under a checkpoint name, and nothing else */
    const char *lone = mkdir_in_tmp("lone");
    copy_dir(dir, lone);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -f '%s'/ckpt-* && echo 'hello world, not a checkpoint' > '%s'", lone,
             file_of(lone, 10, false));
    FG_CHECK(system(cmd) == 0, "write foreign file");
    expect_latest(lone, -1, hist, "only a foreign file");
    FG_CHECK(strstr(fg_last_error(), "no checkpoint verifies") && strstr(fg_last_error(), "not a frugal checkpoint"),
             "message names the reason: %s", fg_last_error());
    /* the only checkpoint with a flipped tensor byte: error, buffers untouched */
    copy_dir(dir, lone);
    snprintf(cmd, sizeof cmd, "cd '%s' && rm -f ckpt-*-delta.fgck ckpt-0000000040-full.fgck", lone);
    FG_CHECK(system(cmd) == 0, "keep one file");
    flip_byte(file_of(lone, 10, false), size / 3 > 5000 ? 5000 : size / 3);
    expect_latest(lone, -1, hist, "only checkpoint corrupt");

    /* every single flipped byte of a file is detected (sampled every 7 bytes) */
    copy_dir(dir, bad);
    const char *full = file_of(bad, 40, false);
    long fsz = file_size(full);
    int missed = 0, tried = 0;
    for (long off = 0; off < fsz; off += (off < 64 || off > fsz - 64) ? 1 : 7) {
        flip_byte(full, off);
        if (fg_ckpt_verify(full) == FG_OK)
            missed++;
        flip_byte(full, off);
        tried++;
    }
    FG_CHECK(missed == 0 && fg_ckpt_verify(full) == FG_OK, "%d of %d single-byte flips undetected", missed, tried);

    /* a size mismatch (another config) is an error, not a fallback */
    float small[10];
    fg_ckpt_tensor t1 = {"params", small, sizeof small};
    FG_CHECK(fg_ckpt_load_latest(dir, NULL, NULL, &t1, 1) == FG_ERR_INVALID && strstr(fg_last_error(), "expects"),
             "size mismatch: %s", fg_last_error());
    fg_ckpt_tensor t2 = {"nope", small, sizeof small};
    FG_CHECK(fg_ckpt_load_latest(dir, NULL, NULL, &t2, 1) != FG_OK && strstr(fg_last_error(), "no tensor 'nope'"),
             "missing tensor: %s", fg_last_error());
    FG_CHECK(fg_ckpt_load_latest(mkdir_in_tmp("nonexistent"), NULL, NULL, &t2, 1) == FG_ERR_IO, "no dir: %s",
             fg_last_error());
    free(hist);
}

static void test_compress_full_and_layout_change(void)
{
    const char *dir = mkdir_in_tmp("zfull");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = true;
    o.compress_full = true;
    o.full_every = 100;
    o.keep_full = 0;
    state *s = calloc(1, sizeof *s), *got = calloc(1, sizeof *got);
    state_init(s, 3);
    fg_ckpt_writer *w = fg_ckpt_writer_new(dir, &o);
    fg_ckpt_tensor t[3];
    int n = tensors(s, t);
    FG_CHECK(w && fg_ckpt_writer_save(w, 1, "{}", t, n) == FG_OK, "save 1");
    state_step(s, 1);
    FG_CHECK(fg_ckpt_writer_save(w, 2, "{}", t, n) == FG_OK, "save 2 (delta)");
    state_step(s, 2);
    FG_CHECK(fg_ckpt_writer_save(w, 3, "{}", t, 2) == FG_OK, "save 3 with 2 tensors: a new layout");
    FG_CHECK(fg_ckpt_writer_delete(w) == FG_OK, "delete");
    FG_CHECK(file_size(file_of(dir, 2, true)) > 0 && file_size(file_of(dir, 3, false)) > 0,
             "a layout change forces a full checkpoint");
    fg_ckpt_info info;
    FG_CHECK(fg_ckpt_info_read(file_of(dir, 1, false), &info) == FG_OK &&
                 info.tensors[0].encoding == FG_CKPT_ENC_SHUF_ZSTD,
             "full is shuffle-zstd");
    fg_ckpt_info_free(&info);
    FG_CHECK(fg_ckpt_load_file(file_of(dir, 3, false), NULL, NULL, tensors(got, t) ? t : t, 2) == FG_OK &&
                 !memcmp(got->p, s->p, sizeof s->p) && !memcmp(got->m, s->m, sizeof s->m),
             "compressed full round trip");
    free(s);
    free(got);
}

static void test_async_error_surfaces(void)
{
    const char *dir = mkdir_in_tmp("vanish");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = true;
    state *s = calloc(1, sizeof *s);
    fg_ckpt_writer *w = fg_ckpt_writer_new(dir, &o);
    fg_ckpt_tensor t[3];
    int n = tensors(s, t);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    FG_CHECK(w && system(cmd) == 0, "directory removed under the writer");
    FG_CHECK(fg_ckpt_writer_save(w, 1, "{}", t, n) == FG_OK, "save returns once copied");
    fg_status st = fg_ckpt_writer_wait(w);
    FG_CHECK(st == FG_ERR_IO && strstr(fg_last_error(), "step 1"), "background error surfaces at wait: %s",
             fg_last_error());
    FG_CHECK(fg_ckpt_writer_wait(w) == FG_OK, "reported once");
    FG_CHECK(fg_ckpt_writer_save(w, 2, "{}", t, n) == FG_OK, "save 2");
    FG_CHECK(fg_ckpt_writer_delete(w) == FG_ERR_IO, "error of the last write surfaces at delete");
    free(s);

    /* a stale temp file from a crash is removed by the next writer */
    const char *d2 = mkdir_in_tmp("stale");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && echo x > '%s/ckpt-0000000005-full.fgck.tmp'", d2, d2);
    FG_CHECK(system(cmd) == 0, "stale tmp");
    fg_ckpt_writer_delete(fg_ckpt_writer_new(d2, &o));
    snprintf(cmd, sizeof cmd, "%s/ckpt-0000000005-full.fgck.tmp", d2);
    FG_CHECK(access(cmd, F_OK) != 0, "stale tmp removed");
}

/* Allocation failures at every point of saving and loading: an error or a correct
 * result, never a checkpoint that loads to wrong bytes. */
static void test_alloc_failures(void)
{
    state *hist = calloc(5, sizeof *hist), *got = calloc(1, sizeof *got);
    int failures_seen = 0, wrong = 0, k;
    for (k = 1; k < 200; k++) {
        char name[32];
        snprintf(name, sizeof name, "oom%d", k);
        const char *dir = mkdir_in_tmp(name);
        fg_ckpt_opts o = fg_ckpt_opts_default();
        o.full_every = 2;
        o.async = k % 2;
        fg_mem_fail_after(k);
        fg_status st = write_run(dir, o, 4, hist);
        fg_mem_fail_after(0);
        failures_seen += st != FG_OK;
        fg_ckpt_tensor t[3];
        long step = -1;
        if (fg_ckpt_load_latest(dir, &step, NULL, t, tensors(got, t)) == FG_OK &&
            (step % 10 || step < 10 || step > 40 || !state_eq(got, &hist[step / 10])))
            wrong++;
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            break;
        if (st == FG_OK)
            break; /* k is past the last allocation of a run */
    }
    FG_CHECK(failures_seen > 5 && k < 200, "%d injected failures reported as errors (run needs %d allocations)",
             failures_seen, k);
    FG_CHECK(wrong == 0, "%d loads gave wrong bytes", wrong);
    /* loading under allocation failures */
    const char *dir = mkdir_in_tmp("oomload");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.full_every = 2;
    FG_CHECK(write_run(dir, o, 4, hist) == FG_OK, "run for load failures");
    int load_fail = 0;
    wrong = 0;
    for (k = 1; k < 100; k++) {
        fg_ckpt_tensor t[3];
        long step = -1;
        fg_mem_fail_after(k);
        fg_status st = fg_ckpt_load_latest(dir, &step, NULL, t, tensors(got, t));
        fg_mem_fail_after(0);
        if (st != FG_OK) {
            load_fail++;
            continue;
        }
        wrong += step != 40 || !state_eq(got, &hist[4]);
        break;
    }
    FG_CHECK(load_fail > 2 && wrong == 0, "load: %d injected failures, %d wrong", load_fail, wrong);
    free(hist);
    free(got);
}

/* Whole file into malloc'd memory; NULL on failure. */
static unsigned char *slurp(const char *path, long *size)
{
    char *p;
    size_t n;
    if (fg_read_file(path, 0, &p, &n) != FG_OK)
        return NULL;
    *size = (long)n;
    return (unsigned char *)p;
}

static bool spit(const char *path, const unsigned char *p, long size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(p, 1, (size_t)size, f) == (size_t)size;
    return fclose(f) == 0 && ok;
}

/* Random damage (bit flips, runs of random bytes, truncation, bytes inserted) to a
 * delta or its base, 600 times: never a crash (the sanitizer build runs this too),
 * never a load that reports success with other bytes than were saved. */
static void test_random_damage(void)
{
    const char *dir = mkdir_in_tmp("dmg_src"), *bad = mkdir_in_tmp("dmg");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.async = false;
    o.full_every = 2;
    o.keep_full = 0;
    state *hist = calloc(3, sizeof *hist), *got = calloc(1, sizeof *got);
    FG_CHECK(write_run(dir, o, 2, hist) == FG_OK, "damage run");
    copy_dir(dir, bad);
    const char *paths[2] = {file_of(bad, 20, true), file_of(bad, 10, false)};
    long size[2] = {0, 0};
    unsigned char *orig[2] = {slurp(paths[0], &size[0]), slurp(paths[1], &size[1])};
    unsigned char *buf = malloc((size_t)(size[0] > size[1] ? size[0] : size[1]) + 64);
    if (!orig[0] || !orig[1] || !buf) {
        FG_CHECK(0, "read the damage sources");
        goto done;
    }
    fg_rng r;
    fg_rng_seed(&r, 99);
    int detected = 0, survived = 0, wrong = 0;
    for (int trial = 0; trial < 600; trial++) {
        int v = trial % 2;
        long n = size[v], at = (long)fg_rng_below(&r, (uint32_t)size[v]);
        memcpy(buf, orig[v], (size_t)n);
        int kind = (int)fg_rng_below(&r, 4);
        if (kind == 0) { /* one to three flipped bits */
            for (int k = 0, nk = 1 + (int)fg_rng_below(&r, 3); k < nk; k++)
                buf[(at + k * 13) % n] ^= (unsigned char)(1u << fg_rng_below(&r, 8));
        } else if (kind == 1) { /* a run of random bytes */
            for (long k = at, e = at + 1 + (long)fg_rng_below(&r, 64); k < e && k < n; k++)
                buf[k] = (unsigned char)fg_rng_below(&r, 256);
        } else if (kind == 2) { /* truncated */
            n = at;
        } else { /* bytes inserted: everything after shifts */
            memmove(buf + at + 3, buf + at, (size_t)(n - at));
            memcpy(buf + at, "abc", 3);
            n += 3;
        }
        if (!spit(paths[v], buf, n) || !spit(paths[1 - v], orig[1 - v], size[1 - v])) {
            FG_CHECK(0, "write damaged file");
            break;
        }
        fg_ckpt_tensor t[3];
        long step = -1;
        if (fg_ckpt_load_file(paths[0], &step, NULL, t, tensors(got, t)) != FG_OK) {
            detected++;
        } else {
            survived++; /* only damage that changes no byte could pass */
            wrong += step != 20 || !state_eq(got, &hist[2]);
        }
    }
    printf("  random damage: %d of 600 detected, %d loaded the right bytes, %d wrong\n", detected, survived, wrong);
    FG_CHECK(wrong == 0, "%d damaged files loaded wrong bytes (%d detected, %d loaded right)", wrong, detected,
             survived);
    FG_CHECK(detected >= 590, "damage detected %d of 600 times", detected);
done:
    fg_free(orig[0]);
    fg_free(orig[1]);
    free(buf);
    free(hist);
    free(got);
}

/* The policy comes from the caller only (the trainer's config keys ckpt_*): the module
 * reads no environment, and a value out of range is refused naming the field. */
static void test_opts_no_env(void)
{
    setenv("FG_CKPT_KEEP", "7", 1);
    setenv("FG_CKPT_ASYNC", "0", 1);
    setenv("FG_CKPT_FULL_EVERY", "garbage", 1);
    fg_ckpt_opts o = fg_ckpt_opts_default();
    FG_CHECK(o.keep_full == 2 && o.async && o.full_every == 10 && o.zstd_level == 1 && !o.compress_full &&
                 o.write_delay_ms == 0,
             "defaults ignore the environment: keep %d async %d full_every %d", o.keep_full, (int)o.async,
             o.full_every);
    unsetenv("FG_CKPT_KEEP");
    unsetenv("FG_CKPT_ASYNC");
    unsetenv("FG_CKPT_FULL_EVERY");
    static const struct {
        int field, value;
        const char *want;
    } bad[] = {{0, 0, "full_every = 0: must be >= 1"},
               {1, -1, "keep_full = -1: must be >= 0"},
               {2, 20, "zstd_level = 20: must be in 1..19"},
               {3, -5, "write_delay_ms = -5: must be in 0..60000"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = fg_ckpt_opts_default();
        int *f[] = {&o.full_every, &o.keep_full, &o.zstd_level, &o.write_delay_ms};
        *f[bad[i].field] = bad[i].value;
        const char *dir = mkdir_in_tmp("bad_opts");
        fg_ckpt_writer *w = fg_ckpt_writer_new(dir, &o);
        struct stat sb;
        FG_CHECK(!w && strstr(fg_last_error(), bad[i].want) && stat(dir, &sb) != 0, "bad option refused: %s",
                 fg_last_error());
        fg_ckpt_writer_delete(w);
    }
}

/* Streamed saves: the tensors handed over in pieces (chunk 1000 bytes: the 7-byte blob in
 * one short piece, params in 12 pieces) give a file that loads to the same bytes as an
 * ordinary save; a save after it is full (no base kept); pieces read back (raw: in place;
 * a delta: decoded) equal the state; a failing fill leaves no file. */
static fg_status fill_state(void *ctx, int i, size_t off, void *buf, size_t n)
{
    state *s = ctx;
    const uint8_t *src = i == 0 ? (const uint8_t *)s->p : i == 1 ? (const uint8_t *)s->m : s->blob;
    if (n > 1000)
        return fg_error(FG_ERR_INTERNAL, "piece of %zu bytes above the chunk", n);
    memcpy(buf, src + off, n);
    return FG_OK;
}

static fg_status fill_fails(void *ctx, int i, size_t off, void *buf, size_t n)
{
    (void)ctx;
    (void)buf;
    (void)n;
    return i == 1 && off >= 2000 ? fg_error(FG_ERR_IO, "peer gone") : FG_OK;
}

static void test_stream_and_pieces(void)
{
    const char *dir = mkdir_in_tmp("stream");
    fg_ckpt_opts o = fg_ckpt_opts_default();
    o.full_every = 5;
    o.keep_full = 0;
    fg_ckpt_writer *w = fg_ckpt_writer_new(dir, &o);
    FG_CHECK(w != NULL, "writer: %s", fg_last_error());
    state *s = calloc(1, sizeof *s), *got = calloc(1, sizeof *got);
    state_init(s, 3);
    const char *names[3] = {"params", "adam.m", "blob"};
    size_t bytes[3] = {sizeof s->p, sizeof s->m, sizeof s->blob};
    FG_CHECK(fg_ckpt_writer_save_stream(w, 10, "{}", names, bytes, 3, 1000, fill_state, s) == FG_OK, "stream: %s",
             fg_last_error());
    long step = 0;
    FG_CHECK(load_path(file_of(dir, 10, false), got, &step) == FG_OK && step == 10 && state_eq(got, s),
             "a streamed checkpoint loads to the same bytes: %s", fg_last_error());
    FG_CHECK(fg_ckpt_verify(file_of(dir, 10, false)) == FG_OK, "verifies: %s", fg_last_error());
    fg_ckpt_tensor t[3];
    state_step(s, 11);
    FG_CHECK(fg_ckpt_writer_save(w, 20, "{}", t, tensors(s, t)) == FG_OK && fg_ckpt_writer_wait(w) == FG_OK,
             "save after the stream: %s", fg_last_error());
    FG_CHECK(access(file_of(dir, 20, false), F_OK) == 0, "the save after a stream is full (no base kept)");
    state_step(s, 21);
    FG_CHECK(fg_ckpt_writer_save(w, 30, "{}", t, tensors(s, t)) == FG_OK && fg_ckpt_writer_wait(w) == FG_OK,
             "a delta: %s", fg_last_error());
    FG_CHECK(access(file_of(dir, 30, true), F_OK) == 0, "then deltas again");
    /* pieces: from the raw file and from the delta */
    for (int k = 0; k < 2; k++) {
        const char *path = k ? file_of(dir, 30, true) : file_of(dir, 20, false);
        float a[10] = {0}, b[300] = {0};
        fg_ckpt_piece pc[2] = {{4 * 17, sizeof a, a}, {4 * 2500, sizeof b, b}};
        FG_CHECK(fg_ckpt_read_pieces(path, "params", sizeof s->p, pc, 2) == FG_OK, "pieces of %s: %s", path,
                 fg_last_error());
        state ref;
        FG_CHECK(load_path(path, &ref, &step) == FG_OK, "load %s", path);
        FG_CHECK(!memcmp(a, ref.p + 17, sizeof a) && !memcmp(b, ref.p + 2500, sizeof b), "pieces of %s are its bytes",
                 path);
        fg_ckpt_piece bad = {sizeof s->p - 4, 8, a};
        FG_CHECK(fg_ckpt_read_pieces(path, "params", sizeof s->p, &bad, 1) == FG_ERR_INVALID &&
                     strstr(fg_last_error(), "out of its"),
                 "a piece past the tensor is refused: %s", fg_last_error());
    }
    /* shuffled + zstd full and a delta over it: streamed through the planes */
    const char *zdir = mkdir_in_tmp("stream_z");
    fg_ckpt_opts oz = o;
    oz.compress_full = true;
    oz.async = false;
    fg_ckpt_writer *wz = fg_ckpt_writer_new(zdir, &oz);
    for (int k = 0; k < 2 && wz; k++) {
        state_step(s, 40 + k);
        FG_CHECK(fg_ckpt_writer_save(wz, 10 * (k + 1), "{}", t, tensors(s, t)) == FG_OK, "zstd save %d", k);
        const char *path = file_of(zdir, 10 * (k + 1), k == 1);
        float a[700] = {0};
        fg_ckpt_piece pc[3] = {{0, 4 * 100, a}, {4 * 1000, 4 * 599, a + 100}, {4 * 2999, 4, a + 699}};
        FG_CHECK(fg_ckpt_read_pieces(path, "params", sizeof s->p, pc, 3) == FG_OK, "pieces of %s: %s", path,
                 fg_last_error());
        FG_CHECK(!memcmp(a, s->p, 400) && !memcmp(a + 100, s->p + 1000, 4 * 599) && a[699] == s->p[2999],
                 "pieces of the %s are the saved bytes", k ? "zstd delta" : "zstd full");
        unsigned char b3[3];
        fg_ckpt_piece pb = {2, 3, b3}; /* not whole words: decoded whole */
        FG_CHECK(fg_ckpt_read_pieces(path, "blob", sizeof s->blob, &pb, 1) == FG_OK && !memcmp(b3, s->blob + 2, 3),
                 "a 7-byte tensor's piece: %s", fg_last_error());
    }
    FG_CHECK(wz && fg_ckpt_writer_delete(wz) == FG_OK, "zstd writer");
    FG_CHECK(fg_ckpt_writer_save_stream(w, 40, "{}", names, bytes, 3, 1000, fill_fails, s) == FG_ERR_IO &&
                 access(file_of(dir, 40, false), F_OK) != 0,
             "a failing fill writes nothing: %s", fg_last_error());
    FG_CHECK(fg_ckpt_writer_delete(w) == FG_OK, "delete");
    free(s);
    free(got);
}

int main(void)
{
    FG_TEST_BEGIN("ckpt");
    test_full_roundtrip();
    test_delta_chain();
    test_async_equals_sync();
    test_retention();
    test_corruption();
    test_compress_full_and_layout_change();
    test_async_error_surfaces();
    test_alloc_failures();
    test_random_damage();
    test_opts_no_env();
    test_stream_and_pieces();
    return fg_test_end();
}
