/* test_precision.c: the precision module against PyTorch 2.15 fixtures
 * (tools/gen_precision_fixtures.py): all 256 e4m3 / e5m2 codes decoded, an fp32 sweep
 * (ties, subnormals, overflow, NaN, inf, both signs) encoded to e4m3fn / e5m2 / bf16 bit
 * for bit, DeepSeek-V3 1x128 and 128x128 fp8 quantization (codes and scales bit for bit,
 * plus the round-trip error bound), GradScaler scale sequences; and by hand: exhaustive
 * round trips, Megatron hysteresis and min_scale, unscale with found-inf, bad arguments.
 * Everything here is exact integer / IEEE arithmetic: no tolerance except the derived
 * round-trip bound of the quantization. */
#include <math.h>
#include <string.h>

#include "frugal/precision.h"
#include "harness.h"

static const fg_fixture_tensor *get(const fg_fixture *fx, const char *name)
{
    const fg_fixture_tensor *t = fg_fixture_get(fx, name);
    FG_ASSERT(t); /* fg_fixture_get already recorded the failure; nothing else can run */
    return t;
}

/* Counts mismatches of one category, prints the first few, records one check. */
typedef struct tally {
    const char *what;
    long bad, n;
} tally;

static void tally_add(tally *t, bool ok, uint32_t in, uint32_t got, uint32_t want)
{
    t->n++;
    if (ok)
        return;
    if (t->bad++ < 5)
        printf("  %s: input 0x%08x (%.9g): got 0x%x, PyTorch 0x%x\n", t->what, in, (double)fg_test_from_bits(in), got,
               want);
}

static void tally_end(const tally *t)
{
    FG_CHECK(t->bad == 0, "%s: %ld of %ld differ", t->what, t->bad, t->n);
}

static void test_decode(const fg_fixture *fx)
{
    const fg_fp8_format fmts[2] = {FG_FP8_E4M3, FG_FP8_E5M2};
    const char *names[2] = {"e4m3_decode", "e5m2_decode"};
    for (int f = 0; f < 2; f++) {
        const int32_t *want = get(fx, names[f])->data;
        tally t = {names[f], 0, 0};
        float arr[256];
        uint8_t codes[256];
        for (int c = 0; c < 256; c++)
            codes[c] = (uint8_t)c;
        fg_fp8_to_f32_array(arr, codes, 256, fmts[f]);
        for (int c = 0; c < 256; c++) {
            uint32_t got = fg_test_bits(fg_fp8_to_f32((uint8_t)c, fmts[f]));
            tally_add(&t, got == (uint32_t)want[c] && fg_test_bits(arr[c]) == got, (uint32_t)c, got, (uint32_t)want[c]);
        }
        tally_end(&t);
    }
    /* the landmarks, by hand */
    FG_CHECK(fg_fp8_to_f32(0x7e, FG_FP8_E4M3) == 448.0f && fg_fp8_to_f32(0x01, FG_FP8_E4M3) == 0x1p-9f,
             "e4m3 max 448, min subnormal 2^-9");
    FG_CHECK(isnan(fg_fp8_to_f32(0x7f, FG_FP8_E4M3)) && isnan(fg_fp8_to_f32(0xff, FG_FP8_E4M3)), "e4m3 NaN codes");
    FG_CHECK(fg_fp8_to_f32(0x7b, FG_FP8_E5M2) == 57344.0f && fg_fp8_to_f32(0x01, FG_FP8_E5M2) == 0x1p-16f,
             "e5m2 max 57344, min subnormal 2^-16");
    FG_CHECK(isinf(fg_fp8_to_f32(0x7c, FG_FP8_E5M2)) && fg_fp8_to_f32(0xfc, FG_FP8_E5M2) < 0, "e5m2 +-inf");
    FG_CHECK(fg_fp8_max(FG_FP8_E4M3) == 448.0f && fg_fp8_max(FG_FP8_E5M2) == 57344.0f, "fp8 max");
}

static void test_sweep(const fg_fixture *fx)
{
    const fg_fixture_tensor *tin = get(fx, "sweep_in");
    const int32_t *in = tin->data, *fp8 = get(fx, "sweep_fp8")->data, *bf = get(fx, "sweep_bf16")->data;
    size_t n = tin->numel;
    FG_CHECK(n > 5000, "sweep has %zu values", n);
    tally t[4] = {{"e4m3 (x.to)", 0, 0}, {"e4m3 saturating", 0, 0}, {"e5m2 (x.to)", 0, 0}, {"e5m2 saturating", 0, 0}};
    tally tb = {"bf16", 0, 0}, tnan = {"bf16 NaN (sign + payload kept, quiet)", 0, 0};
    tally tarr = {"array encoders == scalar", 0, 0};
    long ties = 0, nans = 0, subs = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)in[i], w = (uint32_t)fp8[i];
        float x = fg_test_from_bits(u);
        uint32_t got[4] = {fg_fp8_from_f32(x, FG_FP8_E4M3), fg_fp8_from_f32_sat(x, FG_FP8_E4M3),
                           fg_fp8_from_f32(x, FG_FP8_E5M2), fg_fp8_from_f32_sat(x, FG_FP8_E5M2)};
        for (int k = 0; k < 4; k++)
            tally_add(&t[k], got[k] == ((w >> (8 * k)) & 0xffu), u, got[k], (w >> (8 * k)) & 0xffu);
        uint16_t h = fg_bf16_from_f32(x), ha;
        uint8_t qa[2];
        fg_bf16_from_f32_array(&ha, &x, 1);
        fg_fp8_from_f32_array(&qa[0], &x, 1, FG_FP8_E5M2, false);
        fg_fp8_from_f32_array(&qa[1], &x, 1, FG_FP8_E5M2, true);
        tally_add(&tarr, ha == h && qa[0] == got[2] && qa[1] == got[3], u, ha, h);
        if (isnan(x)) {
            /* PyTorch gives 0x7fc0 (scalar) or 0xffff (vectorised) for every NaN; ours
             * keeps the sign and payload like vcvtneps2bf16: both must at least be NaN. */
            nans++;
            uint16_t want = (uint16_t)((u >> 16) | 0x40u);
            tally_add(&tnan, h == want && isnan(fg_bf16_to_f32(h)) && isnan(fg_bf16_to_f32((uint16_t)bf[i])), u, h,
                      (uint32_t)bf[i]);
        } else {
            tally_add(&tb, h == (uint32_t)bf[i], u, h, (uint32_t)bf[i]);
            ties += (u & 0xffffu) == 0x8000u;
            subs += (u & 0x7f800000u) == 0 && (u & 0x7fffffu);
        }
    }
    for (int k = 0; k < 4; k++)
        tally_end(&t[k]);
    tally_end(&tb);
    tally_end(&tnan);
    tally_end(&tarr);
    FG_CHECK(ties > 300 && nans > 5 && subs > 3, "sweep covers bf16 ties (%ld), NaNs (%ld), fp32 subnormals (%ld)",
             ties, nans, subs);
}

/* Rules checked without PyTorch: every value of each format encodes back to its code,
 * exhaustively, and a few hand-picked roundings. */
static void test_round_trips(void)
{
    const fg_fp8_format fmts[2] = {FG_FP8_E4M3, FG_FP8_E5M2};
    for (int f = 0; f < 2; f++) {
        int bad = 0;
        for (int c = 0; c < 256; c++) {
            float x = fg_fp8_to_f32((uint8_t)c, fmts[f]);
            if (isnan(x))
                bad += fg_fp8_from_f32(x, fmts[f]) != (uint8_t)((c & 0x80) | 0x7f);
            else
                bad += fg_fp8_from_f32(x, fmts[f]) != c ||
                       (isfinite(x) && fg_fp8_from_f32_sat(x, fmts[f]) != c); /* sat differs only at inf */
        }
        FG_CHECK(bad == 0, "%s: %d codes do not survive decode -> encode", fg_fp8_format_name(fmts[f]), bad);
    }
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = fg_bf16_to_f32((uint16_t)h);
        bad += isnan(x) ? fg_bf16_from_f32(x) != (h | 0x40u) : fg_bf16_from_f32(x) != h;
    }
    FG_CHECK(bad == 0, "bf16: %d of 65536 do not survive decode -> encode", bad);
    uint16_t hs[3];
    float xs[3] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 3.4028235e38f}, back[3];
    fg_bf16_from_f32_array(hs, xs, 3);
    fg_bf16_to_f32_array(back, hs, 3);
    FG_CHECK(back[0] == 1.0f && back[1] == 1.0f + 0x1p-6f && isinf(back[2]),
             "bf16 ties go to even (1+2^-8 -> 1, 1+3*2^-8 -> 1+2^-6), FLT_MAX -> inf");
    /* e4m3: 464 is the tie between 448 and the (NaN) code above: even = 448; 17 = tie
     * 16|18 -> 16; e5m2: 61440 ties 57344|inf -> inf (even), saturating -> 57344 */
    FG_CHECK(fg_fp8_from_f32(464.0f, FG_FP8_E4M3) == 0x7e && fg_fp8_from_f32(-1e30f, FG_FP8_E4M3) == 0xfe &&
                 fg_fp8_from_f32(17.0f, FG_FP8_E4M3) == 0x58,
             "e4m3 hand cases");
    FG_CHECK(fg_fp8_from_f32(61440.0f, FG_FP8_E5M2) == 0x7c && fg_fp8_from_f32(61439.996f, FG_FP8_E5M2) == 0x7b &&
                 fg_fp8_from_f32_sat(-INFINITY, FG_FP8_E5M2) == 0xfb && fg_fp8_from_f32_sat(NAN, FG_FP8_E5M2) == 0x7f,
             "e5m2 hand cases");
}

/* The twin of qmat() in tools/gen_precision_fixtures.py: exact in fp32. */
static uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static float *qmat(size_t rows, size_t cols, uint32_t seed)
{
    float *x = fg_malloc(rows * cols * sizeof(float));
    FG_ASSERT(x);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            uint32_t h = fmix32(seed * 0x9e3779b1u + (uint32_t)(i * 65536 + j));
            int n = (int)(h & 0xfffff) - 0x80000, e = (int)((h >> 20) & 15) - 30;
            if ((i * cols + j) % 37 == 0)
                e += 8;
            float v = (float)n * ldexpf(1.0f, e);
            if ((i % 4 == 1 && j >= 128 && j < 256) || (i >= 128 && j < 128))
                v = 0.0f;
            x[i * cols + j] = v;
        }
    return x;
}

/* Round-trip bound of quantize -> dequantize, per element. With s the block's scale
 * and y = x / s: fl(y) = y(1+d1), the fp8 code's value is fl(y)(1+d2) when |fl(y)| is in
 * the normal range, and the product with s is rounded once more (1+d3), |d1|, |d3| <=
 * 2^-24. Round to nearest with m mantissa bits gives |d2| <= 2^-(m+1) (half an ulp of a
 * value in [2^e, 2^(e+1)) is 2^(e-m-1)): 2^-4 for e4m3, 2^-3 for e5m2. Below the
 * smallest normal the code error is absolute: half a subnormal quantum, 2^-10 (e4m3) or
 * 2^-17 (e5m2), times s. Saturation never costs more: |y| <= amax / fl(amax / max) <=
 * max (1 + 2^-23). So |x' - x| <= max(2^-(m+1) |x|, q/2 * s) (1 + 2^-20), the last
 * factor covering d1, d3 and their products. */
static double quant_bound(float x, float s, fg_fp8_format fmt)
{
    double rel = fmt == FG_FP8_E4M3 ? 0x1p-4 : 0x1p-3, half_q = fmt == FG_FP8_E4M3 ? 0x1p-10 : 0x1p-17;
    return fmax(rel * fabs((double)x), half_q * (double)s) * (1.0 + 0x1p-20);
}

static void test_quantize(const fg_fixture *fx)
{
    struct {
        const char *layout;
        size_t rows, cols;
        int br, bc;
        uint32_t seed;
    } cases[2] = {{"tile", 6, 300, 1, 128, 1}, {"block", 130, 140, 128, 128, 2}};
    const fg_fp8_format fmts[2] = {FG_FP8_E4M3, FG_FP8_E5M2};
    for (int k = 0; k < 2; k++) {
        size_t rows = cases[k].rows, cols = cases[k].cols, n = rows * cols;
        int br = cases[k].br, bc = cases[k].bc;
        float *x = qmat(rows, cols, cases[k].seed), *y = fg_malloc(n * sizeof(float));
        uint8_t *q = fg_malloc(n);
        size_t ns = fg_fp8_scale_count(rows, cols, br, bc);
        float *s = fg_malloc(ns * sizeof(float));
        FG_ASSERT(y && q && s);
        FG_CHECK(ns == ((rows + br - 1) / br) * ((cols + bc - 1) / bc) && ns == (k == 0 ? 18u : 4u), "%s: %zu scales",
                 cases[k].layout, ns);
        for (int f = 0; f < 2; f++) {
            const char *fname = fg_fp8_format_name(fmts[f]);
            char name[64];
            snprintf(name, sizeof name, "q_%s_%s_x0", fname, cases[k].layout);
            FG_CHECK(memcmp(get(fx, name)->data, x, 8 * sizeof(float)) == 0, "%s: C twin of qmat() agrees", name);
            FG_CHECK(fg_fp8_quantize(q, s, x, rows, cols, br, bc, fmts[f]) == FG_OK, "quantize: %s", fg_last_error());
            snprintf(name, sizeof name, "q_%s_%s_scales", fname, cases[k].layout);
            const fg_fixture_tensor *ts = get(fx, name);
            size_t sdiff = ts->numel == ns ? 0 : ns, sfirst = 0;
            for (size_t i = 0; i < ns && ts->numel == ns; i++)
                if (fg_test_bits(s[i]) != fg_test_bits(((const float *)ts->data)[i]) && !sdiff++)
                    sfirst = i;
            FG_CHECK(sdiff == 0, "%s: %zu of %zu scales differ (first at %zu: %a vs %a)", name, sdiff, ns, sfirst,
                     (double)s[sfirst], (double)((const float *)ts->data)[sfirst]);
            snprintf(name, sizeof name, "q_%s_%s_codes", fname, cases[k].layout);
            const uint8_t *want = get(fx, name)->data; /* packed 4 a word, little end first */
            size_t diff = 0, first = n;
            for (size_t i = 0; i < n; i++)
                if (q[i] != want[i]) {
                    diff++;
                    first = first < i ? first : i;
                }
            FG_CHECK(diff == 0, "%s: %zu of %zu codes differ (first at %zu)", name, diff, n, first);

            FG_CHECK(fg_fp8_dequantize(y, q, s, rows, cols, br, bc, fmts[f]) == FG_OK, "dequantize");
            size_t over = 0, zero_tiles = 0, not_product = 0;
            double worst = 0;
            for (size_t i = 0; i < n; i++) {
                size_t r = i / cols, c = i % cols;
                float sc = s[(r / (size_t)br) * ((cols + bc - 1) / bc) + c / (size_t)bc];
                double err = fabs((double)y[i] - (double)x[i]), b = quant_bound(x[i], sc, fmts[f]);
                over += !(err <= b);
                worst = fmax(worst, err / b);
                not_product += y[i] != fg_fp8_to_f32(q[i], fmts[f]) * sc;
            }
            for (size_t i = 0; i < ns; i++)
                zero_tiles += s[i] == 1.0f;
            FG_CHECK(over == 0, "%s %s: %zu values outside the round-trip bound (worst %.3f of it)", fname,
                     cases[k].layout, over, worst);
            FG_CHECK(not_product == 0, "%s %s: %zu dequantized values are not decode * scale", fname, cases[k].layout,
                     not_product);
            FG_CHECK(zero_tiles >= 1, "%s %s: the zero block has scale 1", fname, cases[k].layout);
        }
        fg_free(x);
        fg_free(y);
        fg_free(q);
        fg_free(s);
    }

    /* 128 x 1 tiles (V3's backward re-tiling of cached activations) of W are the 1 x 128
     * tiles of W^T, transposed: codes and scales alike */
    {
        size_t R = 130, C = 140;
        float *w = qmat(R, C, 2), *wt = fg_malloc(R * C * sizeof(float));
        uint8_t *qa = fg_malloc(R * C), *qb = fg_malloc(R * C);
        float *sa = fg_malloc(2 * C * sizeof(float)), *sb = fg_malloc(2 * C * sizeof(float));
        FG_ASSERT(wt && qa && qb && sa && sb);
        for (size_t r = 0; r < R; r++)
            for (size_t c = 0; c < C; c++)
                wt[c * R + r] = w[r * C + c];
        FG_CHECK(fg_fp8_scale_count(R, C, 128, 1) == 2 * C, "128x1 scale count");
        FG_CHECK(fg_fp8_quantize(qa, sa, w, R, C, 128, 1, FG_FP8_E4M3) == FG_OK &&
                     fg_fp8_quantize(qb, sb, wt, C, R, 1, 128, FG_FP8_E4M3) == FG_OK,
                 "quantize 128x1 and 1x128 of the transpose");
        size_t bad = 0;
        for (size_t r = 0; r < R; r++)
            for (size_t c = 0; c < C; c++)
                bad += qa[r * C + c] != qb[c * R + r];
        for (size_t bi = 0; bi < 2; bi++)
            for (size_t c = 0; c < C; c++)
                bad += fg_test_bits(sa[bi * C + c]) != fg_test_bits(sb[c * 2 + bi]);
        FG_CHECK(bad == 0, "128x1 tiles == transposed 1x128 tiles of the transpose (%zu differ)", bad);
        fg_free(w);
        fg_free(wt);
        fg_free(qa);
        fg_free(qb);
        fg_free(sa);
        fg_free(sb);
    }

    /* by hand: NaN and inf in a tile, all-zero tile, a negative zero, bad arguments */
    float t[3 * 4] = {1, 2, NAN, 4, 0, -0.0f, 0, 0, 1, INFINITY, -2, 8};
    uint8_t q[12];
    float s[3];
    FG_CHECK(fg_fp8_quantize(q, s, t, 3, 4, 1, 4, FG_FP8_E4M3) == FG_OK, "quantize 3x4");
    FG_CHECK(isnan(s[0]) && isnan(fg_fp8_to_f32(q[0], FG_FP8_E4M3)) && isnan(fg_fp8_to_f32(q[3], FG_FP8_E4M3)),
             "a NaN makes its tile's scale and values NaN (scale %g)", (double)s[0]);
    FG_CHECK(s[1] == 1.0f && q[4] == 0 && q[5] == 0x80, "zero tile: scale 1, codes +0 / -0");
    FG_CHECK(isinf(s[2]) && q[8] == 0 && isnan(fg_fp8_to_f32(q[9], FG_FP8_E4M3)) && q[10] == 0x80,
             "an inf makes the scale inf: finite values -> 0, the inf -> NaN");
    FG_CHECK(fg_fp8_quantize(q, s, t, 3, 4, 0, 4, FG_FP8_E4M3) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "block_rows 0"),
             "block_rows 0 refused: %s", fg_last_error());
    FG_CHECK(fg_fp8_dequantize(t, q, s, 3, 4, 1, 4, (fg_fp8_format)7) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "format 7"),
             "unknown format refused: %s", fg_last_error());
    FG_CHECK(fg_fp8_scale_count(3, 4, 0, 4) == 0 && fg_fp8_scale_count(0, 5, 1, 128) == 0, "scale count edge cases");
}

static void test_scaler_vs_torch(const fg_fixture *fx)
{
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "scaler_%d_cfg", k);
        const float *cfgv = get(fx, name)->data;
        snprintf(name, sizeof name, "scaler_%d_found", k);
        const fg_fixture_tensor *tf = get(fx, name);
        const int32_t *found = tf->data;
        snprintf(name, sizeof name, "scaler_%d_scale", k);
        const float *scale = get(fx, name)->data;
        snprintf(name, sizeof name, "scaler_%d_tracker", k);
        const int32_t *tracker = get(fx, name)->data;
        /* the factors are Python doubles in the generator; the fixture holds them as fp32 */
        static const double factors[3][2] = {{2.0, 0.5}, {1.7, 0.3}, {2.0, 0.5}};
        FG_CHECK(cfgv[1] == (float)factors[k][0] && cfgv[2] == (float)factors[k][1], "scaler case %d factors", k);
        fg_loss_scaler_config c = fg_loss_scaler_config_default();
        c.init_scale = cfgv[0];
        c.growth_factor = factors[k][0];
        c.backoff_factor = factors[k][1];
        c.growth_interval = (int)cfgv[3];
        fg_loss_scaler s;
        FG_CHECK(fg_loss_scaler_init(&s, &c) == FG_OK, "init: %s", fg_last_error());
        long bad = 0, skipped = 0;
        for (size_t i = 0; i < tf->numel; i++) {
            bool skip = fg_loss_scaler_update(&s, found[i] != 0);
            skipped += found[i] != 0;
            if (skip != (found[i] != 0) || fg_test_bits(s.scale) != fg_test_bits(scale[i]) ||
                s.growth_tracker != tracker[i]) {
                if (bad++ < 3)
                    printf("  scaler %d step %zu: scale %.9g tracker %d, torch %.9g %d\n", k, i, (double)s.scale,
                           s.growth_tracker, (double)scale[i], tracker[i]);
            }
        }
        FG_CHECK(bad == 0, "scaler case %d: %ld of %zu steps differ from torch._amp_update_scale_", k, bad, tf->numel);
        FG_CHECK(s.steps == (int64_t)tf->numel && s.skipped_steps == skipped, "scaler case %d counters", k);
    }
    fg_loss_scaler s;
    FG_CHECK(fg_loss_scaler_init(&s, NULL) == FG_OK && s.scale == 65536.0f && s.cfg.growth_interval == 2000 &&
                 s.cfg.hysteresis == 1,
             "defaults are GradScaler's");
    s.scale = 3.0f;
    FG_CHECK(fg_test_bits(fg_loss_scaler_inv_scale(&s)) == fg_test_bits((float)(1.0 / 3.0)), "inv_scale as GradScaler");
}

static void test_hysteresis(void)
{
    /* Hand-computed from Megatron-LM's DynamicGradScaler.update: hysteresis 2, min 256,
     * interval 3. F = overflow, . = clean. Tracker h starts at 2, is decremented by each
     * overflow, backs off when <= 0, and is reset to 2 only when the scale grows. */
    fg_loss_scaler_config c = {.init_scale = 1024,
                               .growth_factor = 2,
                               .backoff_factor = 0.5f,
                               .growth_interval = 3,
                               .hysteresis = 2,
                               .min_scale = 256};
    const char *pat = "FFF...FFFF..F...F.F";
    const float want[] = {
        1024,           /* F h=1: tolerated */
        512,            /* F h=0: back off */
        256,            /* F h=-1: back off */
        256,  256, 512, /* third clean step: grow, h=2 */
        512,            /* F h=1 */
        256,            /* F h=0 */
        256,            /* F h=-1: 128 floored at min_scale 256 */
        256,            /* F floored */
        256,  256, 256, /* F: growth tracker reset */
        256,  256, 512, /* grown, h=2 */
        512,            /* F h=1 */
        512,            /* clean: h stays 1 (not reset by a clean step) */
        256,            /* F h=0: backs off although the overflows were not consecutive */
    };
    fg_loss_scaler s;
    FG_CHECK(fg_loss_scaler_init(&s, &c) == FG_OK, "init: %s", fg_last_error());
    size_t n = strlen(pat);
    FG_ASSERT(n == sizeof want / sizeof want[0]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool skip = fg_loss_scaler_update(&s, pat[i] == 'F');
        if (skip != (pat[i] == 'F') || s.scale != want[i]) {
            bad++;
            printf("  hysteresis step %zu (%c): scale %g, expected %g\n", i, pat[i], (double)s.scale, (double)want[i]);
        }
    }
    FG_CHECK(bad == 0, "hysteresis sequence: %d steps differ", bad);
    FG_CHECK(s.steps == 19 && s.skipped_steps == 10 && s.growths == 2 && s.backoffs == 7,
             "counters: steps %lld skipped %lld growths %lld backoffs %lld", (long long)s.steps,
             (long long)s.skipped_steps, (long long)s.growths, (long long)s.backoffs);

    /* validation names the field */
    struct {
        fg_loss_scaler_config c;
        const char *field;
    } badcfg[] = {
        {{0, 2, 0.5f, 1, 1, 0}, "init_scale"},     {{1, 1, 0.5f, 1, 1, 0}, "growth_factor"},
        {{1, 2, 1.0f, 1, 1, 0}, "backoff_factor"}, {{1, 2, 0.5f, 0, 1, 0}, "growth_interval"},
        {{1, 2, 0.5f, 1, 0, 0}, "hysteresis"},     {{1, 2, 0.5f, 1, 1, 2}, "min_scale"},
    };
    for (size_t i = 0; i < sizeof badcfg / sizeof badcfg[0]; i++)
        FG_CHECK(fg_loss_scaler_init(&s, &badcfg[i].c) == FG_ERR_INVALID && strstr(fg_last_error(), badcfg[i].field),
                 "bad %s refused: %s", badcfg[i].field, fg_last_error());
}

static void test_unscale(void)
{
    float g[6] = {1, -2, 4, INFINITY, 8, 0};
    bool found = false;
    fg_grad_unscale(g, 6, 0.25f, &found);
    FG_CHECK(found && g[0] == 0.25f && g[1] == -0.5f && isinf(g[3]) && g[4] == 2.0f, "unscale with an inf: flagged");
    float h[3] = {1e30f, -3, 0};
    found = false;
    fg_grad_unscale(h, 3, 0.5f, &found);
    FG_CHECK(!found && h[0] == 5e29f && h[1] == -1.5f, "clean buffer: not flagged, scaled");
    found = true;
    fg_grad_unscale(h, 3, 1.0f, &found);
    FG_CHECK(found && h[1] == -1.5f, "the flag is never cleared; inv_scale 1 leaves values");
    /* past the parallel threshold, one NaN in the middle */
    size_t n = 300000;
    float *big = fg_malloc(n * sizeof(float));
    FG_ASSERT(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (float)(i % 7);
    FG_CHECK(!fg_nonfinite(big, n), "finite buffer");
    big[n / 2 + 3] = -NAN;
    found = false;
    fg_grad_unscale(big, n, 0.5f, &found);
    FG_CHECK(found && fg_nonfinite(big, n) && big[6] == 3.0f && big[n - 1] == (float)((n - 1) % 7) * 0.5f,
             "large buffer with one NaN: flagged, all scaled");
    fg_free(big);
}

int main(void)
{
    FG_TEST_BEGIN("precision");
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path("tests/fixtures/precision/precision.bin")) != FG_OK) {
        FG_CHECK(0, "fixture: %s", fg_last_error());
        return fg_test_end();
    }
    test_decode(&fx);
    test_sweep(&fx);
    test_round_trips();
    test_quantize(&fx);
    test_scaler_vs_torch(&fx);
    test_hysteresis();
    test_unscale();
    fg_fixture_free(&fx);
    return fg_test_end();
}
