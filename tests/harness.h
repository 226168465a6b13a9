/* harness.h: the tiny test harness every tests/test_*.c uses, plus fixture loading.
 * Each program ends with the line "N passed, N failed[, N skipped]" and exits 1 on any failure.
 *
 *   int main(void) { FG_TEST_BEGIN("kernels");
 *       FG_CHECK(x == 1, "x was %d", x);
 *       FG_CHECK_CLOSE(a, b, 1e-5);                   // relative+absolute tolerance
 *       return fg_test_end(); }
 * Fixtures (written by tools/fixtures.py): a file of named tensors; see fg_fixture_*.
 */
#ifndef FRUGAL_TEST_HARNESS_H
#define FRUGAL_TEST_HARNESS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "frugal/core.h"

extern int fg_test_passed, fg_test_failed, fg_test_skipped;

void fg_test_begin(const char *suite);
int fg_test_end(void); /* prints the summary line; returns the exit code */
void fg_test_record(bool ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void fg_test_skip(const char *what, const char *why);

#define FG_TEST_BEGIN(suite) fg_test_begin(suite)
#define FG_CHECK(cond, ...) fg_test_record((cond), __FILE__, __LINE__, __VA_ARGS__)
/* |a-b| <= tol * max(1, |b|) */
#define FG_CHECK_CLOSE(a, b, tol)                                                                                      \
    do {                                                                                                               \
        double fa_ = (double)(a), fb_ = (double)(b);                                                                   \
        fg_test_record(fabs(fa_ - fb_) <= (tol)*fmax(1.0, fabs(fb_)), __FILE__, __LINE__, "%s = %.9g, %s = %.9g", #a,  \
                       fa_, #b, fb_);                                                                                  \
    } while (0)

/* max_i |a_i - b_i| / (max_i |b_i| + 1e-12): error normalised by the reference's scale. */
double fg_test_max_rel_err(const float *a, const float *b, size_t n);
/* Checks fg_test_max_rel_err(got, want, n) <= tol and reports the name and error. */
bool fg_test_check_tensor(const char *name, const float *got, const float *want, size_t n, double tol);
/* Cosine of the angle between a and b (1 when both are zero, 0 when one is); *norm_b
 * (optional) gets |b|, the reference's scale. */
double fg_test_cosine(const float *a, const float *b, size_t n, double *norm_b);

/* Path of a file in ../shared/data (FG_SHARED_DIR/data/rel), or NULL when absent: the
 * caller then calls fg_test_skip with a clear message. Returned string is static. */
const char *fg_test_shared_path(const char *rel);
/* Path under the source tree (FG_SOURCE_DIR/rel). Returned string is static. */
const char *fg_test_source_path(const char *rel);
/* Path of the frugal binary (FG_FRUGAL_BIN). */
const char *fg_test_frugal_bin(void);
/* Fresh empty temporary directory (removed at fg_test_end). */
const char *fg_test_tmpdir(void);
/* Writes n bytes to path; a failure to create it is a failed check. */
void fg_test_write_file(const char *path, const void *data, size_t n);
/* Writes (once: kept if it exists) a corpus with learnable structure into
 * <tmpdir>/<name>: 3000 shuffled lines of a small grammar ("the cat sees the moon.").
 * Returns the path (static storage, valid until the next call). */
const char *fg_test_grammar_corpus(const char *name);
/* Runs a shell command, captures up to cap-1 bytes of stdout+stderr into out; returns exit code. */
int fg_test_run(const char *cmd, char *out, size_t cap);

/* ---- fixtures: sequence of records
 *   u32 name_len, name bytes, u32 dtype (0 f32, 1 i32), u32 ndim, i32 shape[ndim], data
 * preceded by the 8-byte magic "FGFIX001". */
typedef struct fg_fixture_tensor {
    char name[128];
    int dtype;
    int ndim;
    int shape[8];
    size_t numel;
    void *data;
} fg_fixture_tensor;
typedef struct fg_fixture {
    int n;
    fg_fixture_tensor *t;
} fg_fixture;
fg_status fg_fixture_load(fg_fixture *fx, const char *path);
void fg_fixture_free(fg_fixture *fx);
/* Tensor by name, or NULL (and a failed check is recorded naming it). */
const fg_fixture_tensor *fg_fixture_get(const fg_fixture *fx, const char *name);
#define FG_FIX_F32(fx, name) ((const float *)fg_fixture_get((fx), (name))->data)

/* The bits of a float and back (memcpy: no aliasing games). */
static inline uint32_t fg_test_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}
static inline float fg_test_from_bits(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

#endif
