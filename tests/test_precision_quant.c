/* test_precision_quant.c: int8 quantization against PyTorch fixtures
 * (tools/gen_quant_fixtures.py): fake quantization per channel / per tensor / per token
 * bit for bit with torch.fake_quantize_per_{channel,tensor}_affine and their
 * straight-through backward, the per-token scales, LSQ forward and backward against an
 * autograd twin, the integer codes against the fake-quantized values, and the running
 * range observer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/precision.h"
#include "harness.h"

static const fg_fixture_tensor *get(const fg_fixture *fx, const char *name)
{
    const fg_fixture_tensor *t = fg_fixture_get(fx, name);
    FG_ASSERT(t);
    return t;
}

/* number of values that differ (== : the STE gradients are torch's dout * mask, so a
 * masked negative gradient is -0 there and +0 here) */
static size_t values_differ(const float *a, const float *b, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += a[i] != b[i];
    return bad;
}

/* number of values whose bits differ */
static size_t bits_differ(const float *a, const float *b, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += fg_test_bits(a[i]) != fg_test_bits(b[i]);
    return bad;
}

/* Fake quantization with a given scale (stride 1 per channel, 0 per tensor): values and
 * STE gradient bit for bit, the codes dequantize to the same values, and out may alias x. */
static void check_fake_quant(const fg_fixture *fx, const char *p, int stride)
{
    char n[64];
#define T(suffix) (snprintf(n, sizeof n, "%s_%s", p, suffix), get(fx, n))
    const fg_fixture_tensor *tx = T("x");
    int rows = tx->shape[0], cols = tx->shape[1];
    size_t sz = (size_t)rows * cols;
    const float *x = tx->data, *sc = T("scale")->data, *g = T("g")->data, *want = T("out")->data, *wdx = T("dx")->data;
    float *out = fg_malloc(sz * sizeof(float)), *dx = fg_malloc(sz * sizeof(float));
    int8_t *q = fg_malloc(sz);
    FG_ASSERT(out && dx && q);
    fg_fake_quant_rows(out, x, sc, stride, rows, cols);
    FG_CHECK(bits_differ(out, want, sz) == 0, "%s: forward differs from torch in %zu of %zu values", p,
             bits_differ(out, want, sz), sz);
    size_t clamped = 0, ties = 0;
    for (size_t i = 0; i < sz; i++) {
        float v = x[i] / sc[(i / cols) * stride];
        clamped += fabsf(v) > 127.5f;
        ties += fabsf(v - truncf(v)) == 0.5f;
    }
    FG_CHECK(clamped > 0 && ties > 0, "%s: the inputs hold clamped values (%zu) and ties (%zu)", p, clamped, ties);
    fg_fake_quant_rows_backward(dx, g, x, sc, stride, rows, cols);
    FG_CHECK(values_differ(dx, wdx, sz) == 0, "%s: STE gradient differs from torch in %zu values", p,
             values_differ(dx, wdx, sz));
    fg_int8_quantize_rows(q, x, sc, stride, rows, cols);
    size_t bad = 0;
    for (size_t i = 0; i < sz; i++)
        bad += fg_test_bits((float)q[i] * sc[(i / cols) * stride]) != fg_test_bits(want[i]) || q[i] == -128;
    FG_CHECK(bad == 0, "%s: %zu codes do not dequantize to torch's values", p, bad);
    memcpy(out, x, sz * sizeof(float));
    fg_fake_quant_rows(out, out, sc, stride, rows, cols);
    FG_CHECK(bits_differ(out, want, sz) == 0, "%s: in place", p);
    fg_free(out);
    fg_free(dx);
    fg_free(q);
#undef T
}

/* Per token, dynamic: the scales are max|x|/127 of each row, bit for bit with torch, and
 * the u8 activations for the int8 GEMM are the codes + 128. */
static void check_per_token(const fg_fixture *fx)
{
    const fg_fixture_tensor *tx = get(fx, "fq_k_x");
    int rows = tx->shape[0], cols = tx->shape[1];
    size_t sz = (size_t)rows * cols;
    const float *x = tx->data, *wsc = get(fx, "fq_k_scale")->data, *want = get(fx, "fq_k_out")->data;
    float sc[16], sc2[16], *out = fg_malloc(sz * sizeof(float));
    uint8_t *u = fg_malloc(sz);
    int8_t *q = fg_malloc(sz);
    FG_ASSERT(out && u && q && rows <= 16);
    fg_int8_scales_rows(sc, x, rows, cols);
    FG_CHECK(bits_differ(sc, wsc, (size_t)rows) == 0, "per-token scales differ from torch's amax/127");
    fg_fake_quant_rows(out, x, sc, 1, rows, cols);
    FG_CHECK(bits_differ(out, want, sz) == 0, "per-token forward differs in %zu values", bits_differ(out, want, sz));
    fg_int8_quantize_act_u8(u, sc2, x, rows, cols);
    fg_int8_quantize_rows(q, x, sc, 1, rows, cols);
    size_t bad = bits_differ(sc, sc2, (size_t)rows);
    for (size_t i = 0; i < sz; i++)
        bad += (int)u[i] - 128 != q[i];
    FG_CHECK(bad == 0, "u8 activations are not codes + 128 (%zu)", bad);
    /* an all-zero row: scale 1, codes 0 */
    float z[5] = {0}, zs = 0;
    fg_int8_scales_rows(&zs, z, 1, 5);
    FG_CHECK(zs == 1.0f && fg_int8_scale_tensor(z, 5) == 1.0f, "zero row scale %g", zs);
    fg_free(out);
    fg_free(u);
    fg_free(q);
}

static void check_lsq(const fg_fixture *fx, const char *p, int stride)
{
    char n[64];
#define T(suffix) (snprintf(n, sizeof n, "%s_%s", p, suffix), get(fx, n))
    const fg_fixture_tensor *tx = T("x");
    int rows = tx->shape[0], cols = tx->shape[1];
    size_t sz = (size_t)rows * cols;
    const float *x = tx->data, *s = T("s")->data, *g = T("g")->data, *want = T("out")->data, *wdx = T("dx")->data,
                *wds = T("ds")->data;
    int nsteps = stride ? rows : 1;
    float *out = fg_malloc(sz * sizeof(float)), *dx = fg_malloc(sz * sizeof(float)), ds[16] = {0};
    FG_ASSERT(out && dx && nsteps <= 16);
    fg_lsq_forward(out, x, s, stride, rows, cols);
    FG_CHECK(bits_differ(out, want, sz) == 0, "%s: LSQ forward differs from the torch twin in %zu values", p,
             bits_differ(out, want, sz));
    for (int i = 0; i < nsteps; i++)
        ds[i] = 0.25f; /* accumulates */
    fg_lsq_backward(dx, ds, g, x, s, stride, rows, cols, fg_lsq_grad_scale(stride ? (size_t)cols : sz));
    /* torch's dx is (g s) / s through autograd: within an ulp of g */
    FG_CHECK(fg_test_max_rel_err(dx, wdx, sz) < 1e-6, "%s: LSQ dx err %g", p, fg_test_max_rel_err(dx, wdx, sz));
    for (int i = 0; i < nsteps; i++)
        ds[i] -= 0.25f;
    /* the step gradient sums about cols (or rows x cols) terms: torch in float, we in
     * double; 1e-5 of the largest */
    FG_CHECK(fg_test_max_rel_err(ds, wds, (size_t)nsteps) < 1e-5, "%s: LSQ dstep err %g", p,
             fg_test_max_rel_err(ds, wds, (size_t)nsteps));
    fg_free(out);
    fg_free(dx);
#undef T
}

static void check_observer_and_init(void)
{
    fg_int8_observer o = {0.0f, 0.01f, 0};
    fg_int8_observer_update(&o, 2.0f);
    FG_CHECK(o.amax == 2.0f && o.batches == 1, "first batch sets the range: %g", o.amax);
    fg_int8_observer_update(&o, 4.0f);
    FG_CHECK_CLOSE(o.amax, 2.02, 1e-7);
    float x[6] = {1, -1, 2, -2, 0, 0}, st[2];
    fg_lsq_init(st, x, 1, 2, 3);
    FG_CHECK_CLOSE(st[0], 2.0 * (4.0 / 3.0) / sqrt(127.0), 1e-6);
    FG_CHECK_CLOSE(st[1], 2.0 * (2.0 / 3.0) / sqrt(127.0), 1e-6);
    fg_lsq_init(st, x, 0, 2, 3);
    FG_CHECK_CLOSE(st[0], 2.0 * 1.0 / sqrt(127.0), 1e-6);
    FG_CHECK_CLOSE(fg_lsq_grad_scale(127), 1.0 / 127.0, 1e-7);
}

/* fg_lsq_backward rounds without libm (quant.c round_small): the same step gradient, bit
 * for bit, as nearbyintf over ties (k + 0.5 and -(k + 0.5): to even), small values of
 * both signs (-0 codes), clipped values and the bounds. */
static void check_lsq_rounding(void)
{
    enum { R = 3, C = 1021 };
    static float x[R * C], g[R * C], dx[R * C];
    float step[R] = {1.0f, 0.5f, 0.0371f}, ds[R] = {0}, scale = fg_lsq_grad_scale(C);
    for (int i = 0; i < R * C; i++) {
        int k = i % C;
        x[i] = (float)((k % 300) - 150) + (k % 3 == 0 ? 0.5f : k % 3 == 1 ? 0.25f : 1e-3f);
        x[i] *= step[i / C] * (i % 2 ? -1.0f : 1.0f);
        g[i] = 0.01f * (float)((i * 37) % 101) - 0.5f;
    }
    fg_lsq_backward(dx, ds, g, x, step, 1, R, C, scale);
    for (int r = 0; r < R; r++) {
        double acc = 0.0;
        for (int c = 0; c < C; c++) {
            float v = x[r * C + c] / step[r], gi = g[r * C + c];
            acc += v < -127.0f  ? (double)gi * -127.0
                   : v > 127.0f ? (double)gi * 127.0
                                : (double)gi * ((double)nearbyintf(v) - (double)v);
        }
        float want = (float)(acc * scale);
        FG_CHECK(!memcmp(&want, &ds[r], sizeof want), "lsq step grad row %d: %.9g, want %.9g", r, (double)ds[r],
                 (double)want);
    }
}

int main(void)
{
    FG_TEST_BEGIN("precision_quant");
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path("tests/fixtures/quant/quant.bin")) != FG_OK) {
        FG_CHECK(0, "fixture: %s", fg_last_error());
        return fg_test_end();
    }
    check_fake_quant(&fx, "fq_c", 1);
    check_fake_quant(&fx, "fq_t", 0);
    check_per_token(&fx);
    check_lsq(&fx, "lsq_c", 1);
    check_lsq(&fx, "lsq_t", 0);
    check_observer_and_init();
    check_lsq_rounding();
    fg_fixture_free(&fx);
    return fg_test_end();
}
