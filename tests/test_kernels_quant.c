/* test_kernels_quant.c: the QAT fake-quantization ops (fq_scales, fake_quant,
 * fake_quant_mask) in every variant, bit for bit against src/precision/quant.c's rules
 * written out here: ties, -0 codes, all-zero rows, clipped values, NaN and inf. */
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "harness.h"
#include "kernels_util.h"

static fg_rng rng;

static float clampq(float q)
{
    return q < -127.0f ? -127.0f : q > 127.0f ? 127.0f : q;
}

/* Row r: 0 random, 1 zeros, 2 ties at scale 1 (amax 127), 3 tiny values of both signs
 * (-0 codes) and a large one, 4 NaN and inf among random values. */
static void fill(float *x, int N, int C)
{
    for (int r = 0; r < N; r++)
        for (int c = 0; c < C; c++) {
            float *v = &x[(size_t)r * C + c];
            switch (r % 5) {
            case 1: *v = 0.0f; break;
            case 2: *v = c == 0 ? 127.0f : (float)((c % 200) - 100) + 0.5f; break;
            case 3: *v = c == 0 ? 50.0f : 1e-4f * fg_rng_normal(&rng); break;
            case 4: *v = c % 7 == 3 ? NAN : c % 11 == 5 ? -INFINITY : 2.0f * fg_rng_normal(&rng); break;
            default: *v = 3.0f * fg_rng_normal(&rng);
            }
        }
}

static int same(float a, float b)
{
    return !memcmp(&a, &b, sizeof a);
}

static int check_shape(const char *v, int N, int C, int stride)
{
    size_t n = (size_t)N * C;
    float *x = fg_malloc(sizeof(float) * (n + 1)), *dy = fg_malloc(sizeof(float) * (n + 1));
    float *out = fg_malloc(sizeof(float) * (n + 1)), *dx = fg_malloc(sizeof(float) * (n + 1));
    float *sc = fg_malloc(sizeof(float) * (size_t)(N + 1)), *ms = fg_malloc(sizeof(float) * (size_t)(N + 1));
    FG_ASSERT(x && dy && out && dx && sc && ms);
    fill(x, N, C);
    for (size_t i = 0; i < n; i++)
        dy[i] = fg_rng_normal(&rng);
    int bad = 0;
    fg_fq_scales(sc, x, N, C);
    for (int r = 0; r < N; r++) {
        float m = 0.0f;
        for (int c = 0; c < C; c++)
            m = fmaxf(m, fabsf(x[(size_t)r * C + c]));
        float want = m > 0.0f ? m / 127.0f : 1.0f;
        if (!same(sc[r], want) && bad++ < 3)
            FG_CHECK(0, "fq_scales %s N=%d C=%d: scale[%d] = %.9g, want %.9g", v, N, C, r, (double)sc[r], (double)want);
    }
    /* the masks need clipped values: scales at 0.4x the range (and the one given scale
     * of stride 0) */
    for (int r = 0; r < N; r++)
        ms[r] = sc[r] * (r % 2 ? 0.4f : 1.0f);
    if (!stride)
        ms[0] = 0.01f;
    fg_fake_quant(out, x, ms, stride, N, C);
    memcpy(dx, dy, sizeof(float) * n);
    fg_fake_quant_mask(dx, dx, x, ms, stride, N, C); /* in place, as qat.c calls it */
    for (int r = 0; r < N; r++) {
        float s = ms[(size_t)r * stride], inv = 1.0f / s;
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)r * C + c;
            float q = nearbyintf(x[i] * inv), fq = (clampq(q) + 0.0f) * s;
            float g = q >= -127.0f && q <= 127.0f ? dy[i] : 0.0f;
            if (!same(out[i], fq) && bad++ < 3)
                FG_CHECK(0, "fake_quant %s N=%d C=%d stride=%d: [%d,%d] x=%.9g: %.9g, want %.9g", v, N, C, stride, r, c,
                         (double)x[i], (double)out[i], (double)fq);
            if (!same(dx[i], g) && bad++ < 3)
                FG_CHECK(0, "fake_quant_mask %s N=%d C=%d stride=%d: [%d,%d] x=%.9g: %.9g, want %.9g", v, N, C, stride,
                         r, c, (double)x[i], (double)dx[i], (double)g);
        }
    }
    fg_free(x);
    fg_free(dy);
    fg_free(out);
    fg_free(dx);
    fg_free(sc);
    fg_free(ms);
    return bad;
}

int main(void)
{
    FG_TEST_BEGIN("kernels_quant");
    fg_rng_seed(&rng, 1414);
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    /* the last shape is above the AVX-512 variant's 1M-value threshold for threads */
    static const int shapes[][2] = {{0, 5},  {1, 1},   {5, 15},   {5, 16},    {10, 17},
                                    {5, 33}, {7, 128}, {5, 1000}, {600, 128}, {1030, 1024}};
    static const char *const ops[] = {"fq_scales", "fake_quant", "fake_quant_mask"};
    for (int o = 0; o < 3; o++) {
        const char *names[8];
        int nv = variants(ops[o], names);
        for (int v = 0; v < nv; v++) {
            for (int u = 0; u < 3; u++)
                use(ops[u], "ref");
            use(ops[o], names[v]);
            int bad = 0;
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int stride = 0; stride < 2; stride++)
                    bad += check_shape(names[v], shapes[s][0], shapes[s][1], stride);
            FG_CHECK(bad == 0, "%s %s: %d values differ from the rule", ops[o], names[v], bad);
        }
    }
    FG_CHECK(fg_kernels_init(NULL) == FG_OK, "init: %s", fg_last_error());
    return fg_test_end();
}
