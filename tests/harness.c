/* harness.c: counters, summary line, tolerance checks, paths, temp dirs and the
 * fixture reader shared by all test programs. */
#define _GNU_SOURCE
#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fg_test_passed, fg_test_failed, fg_test_skipped;
static const char *suite_name = "test";
static char tmpdir[256];

void fg_test_begin(const char *suite)
{
    suite_name = suite;
    fg_log_level = atoi(fg_env("FG_LOG_LEVEL", "1"));
}

void fg_test_record(bool ok, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        fg_test_passed++;
        return;
    }
    fg_test_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void fg_test_skip(const char *what, const char *why)
{
    fg_test_skipped++;
    printf("SKIP %s: %s\n", what, why);
}

int fg_test_end(void)
{
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    }
    printf("%s: %d passed, %d failed", suite_name, fg_test_passed, fg_test_failed);
    if (fg_test_skipped)
        printf(", %d skipped", fg_test_skipped);
    printf("\n");
    return fg_test_failed ? 1 : 0;
}

double fg_test_cosine(const float *a, const float *b, size_t n, double *norm_b)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (norm_b)
        *norm_b = sqrt(bb);
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

double fg_test_max_rel_err(const float *a, const float *b, size_t n)
{
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= maxdiff)) /* catches NaN */
            maxdiff = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > maxref)
            maxref = fabs(b[i]);
    }
    return maxdiff / (maxref + 1e-12);
}

bool fg_test_check_tensor(const char *name, const float *got, const float *want, size_t n, double tol)
{
    double e = fg_test_max_rel_err(got, want, n);
    bool ok = e <= tol;
    fg_test_record(ok, __FILE__, __LINE__, "%s: max rel err %.3g > tol %.3g", name, e, tol);
    return ok;
}

const char *fg_test_shared_path(const char *rel)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/data/%s", fg_env("FG_SHARED_DIR", "../shared"), rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

const char *fg_test_source_path(const char *rel)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", fg_env("FG_SOURCE_DIR", "."), rel);
    return buf;
}

const char *fg_test_frugal_bin(void)
{
    return fg_env("FG_FRUGAL_BIN", "frugal");
}

void fg_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    FG_CHECK(f != NULL, "create %s", path);
    if (!f)
        return;
    fwrite(data, 1, n, f);
    fclose(f);
}

const char *fg_test_grammar_corpus(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", fg_test_tmpdir(), name);
    if (access(path, F_OK) == 0)
        return path;
    FILE *f = fopen(path, "wb");
    FG_ASSERT(f);
    static const char *subj[] = {"the cat", "a dog", "my friend", "the king", "our queen"};
    static const char *verb[] = {"sees", "likes", "finds", "hears"};
    static const char *obj[] = {"the moon.", "a bird.", "the sea.", "some bread.", "the river."};
    fg_rng r;
    fg_rng_seed(&r, 11);
    for (int i = 0; i < 3000; i++)
        fprintf(f, "%s %s %s\n", subj[fg_rng_below(&r, 5)], verb[fg_rng_below(&r, 4)], obj[fg_rng_below(&r, 5)]);
    fclose(f);
    return path;
}

const char *fg_test_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "%s/fgtest.XXXXXX", fg_env("TMPDIR", "/tmp"));
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
    }
    return tmpdir;
}

int fg_test_run(const char *cmd, char *out, size_t cap)
{
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t n = 0;
    if (out && cap) {
        n = fread(out, 1, cap - 1, p);
        out[n] = 0;
    }
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- fixtures ---- */
static bool rd(FILE *f, void *p, size_t n)
{
    return fread(p, 1, n, f) == n;
}

fg_status fg_fixture_load(fg_fixture *fx, const char *path)
{
    memset(fx, 0, sizeof *fx);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fg_error(FG_ERR_IO, "%s: cannot open fixture", path);
    char magic[8];
    fg_status st = FG_OK;
    if (!rd(f, magic, 8) || memcmp(magic, "FGFIX001", 8) != 0) {
        st = fg_error(FG_ERR_FORMAT, "%s: not a fixture file", path);
        goto close;
    }
    for (;;) {
        uint32_t nl;
        if (fread(&nl, 4, 1, f) != 1)
            break;
        fg_fixture_tensor t;
        memset(&t, 0, sizeof t);
        uint32_t dt, nd;
        if (nl >= sizeof t.name || !rd(f, t.name, nl) || !rd(f, &dt, 4) || !rd(f, &nd, 4) || nd > 8) {
            st = fg_error(FG_ERR_FORMAT, "%s: bad record header", path);
            goto close;
        }
        t.dtype = (int)dt;
        t.ndim = (int)nd;
        t.numel = 1;
        for (uint32_t i = 0; i < nd; i++) {
            if (!rd(f, &t.shape[i], 4)) {
                st = fg_error(FG_ERR_FORMAT, "%s: truncated shape", path);
                goto close;
            }
            t.numel *= (size_t)t.shape[i];
        }
        t.data = malloc(t.numel * 4 + 4);
        if (!t.data || !rd(f, t.data, t.numel * 4)) {
            free(t.data);
            st = fg_error(FG_ERR_FORMAT, "%s: truncated data of %s", path, t.name);
            goto close;
        }
        fg_fixture_tensor *nt = realloc(fx->t, sizeof *nt * (size_t)(fx->n + 1));
        if (!nt) {
            free(t.data);
            st = FG_ERR_NOMEM;
            goto close;
        }
        fx->t = nt;
        fx->t[fx->n++] = t;
    }
close:
    fclose(f);
    if (st != FG_OK)
        fg_fixture_free(fx);
    return st;
}

void fg_fixture_free(fg_fixture *fx)
{
    for (int i = 0; i < fx->n; i++)
        free(fx->t[i].data);
    free(fx->t);
    memset(fx, 0, sizeof *fx);
}

const fg_fixture_tensor *fg_fixture_get(const fg_fixture *fx, const char *name)
{
    for (int i = 0; i < fx->n; i++)
        if (strcmp(fx->t[i].name, name) == 0)
            return &fx->t[i];
    fg_test_record(false, __FILE__, __LINE__, "fixture tensor '%s' missing", name);
    fprintf(stderr, "missing fixture tensor %s\n", name);
    abort();
}
