/* test_optim.c: AdamW (3 steps, decay / no-decay groups, a frozen range) and
 * global-norm clipping against torch.optim.AdamW / clip_grad_norm_ fixtures
 * (tools/gen_optim_fixtures.py), with fp32 and with bf16 moments; the fused step (clip
 * factor + update + bf16 weight copy) bit for bit against the separate passes; the
 * fp32 checkpoint view of bf16 moments (exact round trip, bit-exact resume); the
 * decay mask in isolation; schedule values; range validation; per-range
 * learning-rate multipliers. */
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/optim.h"
#include "harness.h"

/* bf16 -> fp32 here, independent of the library's converters */
static float fg_bf16_to_f32_ref(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* the flat layout written by tools/gen_optim_fixtures.py */
static const fg_optim_range ranges[] = {
    {0, 128, 1, 0, 1},  /* w1 [8,16] decay */
    {128, 16, 0, 0, 1}, /* b1 [16] no decay */
    {144, 4, 0, 1, 1},  /* frozen [4] */
    {148, 35, 1, 0, 1}, /* w2 [5,7] decay */
};
#define NP 183

static void test_adamw_vs_torch(void)
{
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path("tests/fixtures/optim/adamw.bin")) != FG_OK) {
        FG_CHECK(0, "fixture: %s", fg_last_error());
        return;
    }
    const float *hyper = FG_FIX_F32(&fx, "hyper");
    const float *lr = FG_FIX_F32(&fx, "lr");
    fg_adamw_config cfg = {.beta1 = hyper[0], .beta2 = hyper[1], .eps = hyper[2], .weight_decay = hyper[3]};
    fg_optim o;
    FG_CHECK(fg_optim_init(&o, NP, ranges, 4, &cfg) == FG_OK, "init: %s", fg_last_error());
    float p[NP];
    memcpy(p, FG_FIX_F32(&fx, "p0"), sizeof p);
    const char *gname[3] = {"g1", "g2", "g3"}, *pname[3] = {"p1", "p2", "p3"};
    for (int k = 0; k < 3; k++) {
        fg_optim_step(&o, p, FG_FIX_F32(&fx, gname[k]), lr[k]);
        /* fp32 AdamW: torch computes sqrt(v)/sqrt(1-b2^t) + eps, the kernel
         * sqrt(v/(1-b2^t)) + eps, and orders the multiplies differently: a few ulps of
         * a ~1e-2 update on O(1) weights. 2e-6 relative is ~16 ulps of the weights. */
        char name[32];
        snprintf(name, sizeof name, "params after step %d", k + 1);
        fg_test_check_tensor(name, p, FG_FIX_F32(&fx, pname[k]), NP, 2e-6);
    }
    FG_CHECK(o.t == 3, "step counter %ld", o.t);
    /* moments are plain exponential averages: within float rounding of torch */
    fg_test_check_tensor("adam m after 3 steps", o.m, FG_FIX_F32(&fx, "m3"), NP, 1e-6);
    fg_test_check_tensor("adam v after 3 steps", o.v, FG_FIX_F32(&fx, "v3"), NP, 1e-6);
    const float *p0 = FG_FIX_F32(&fx, "p0");
    FG_CHECK(memcmp(p + 144, p0 + 144, 4 * sizeof(float)) == 0, "frozen range untouched");
    fg_optim_free(&o);

    /* clipping */
    FG_CHECK(fg_optim_init(&o, NP, ranges, 4, &cfg) == FG_OK, "init");
    float g[NP];
    memcpy(g, FG_FIX_F32(&fx, "clip_in"), sizeof g);
    double norm = fg_optim_clip(&o, g, 1.0f);
    /* the norm is summed in double here and in float by torch: 1e-6 relative */
    FG_CHECK_CLOSE(norm, FG_FIX_F32(&fx, "clip_norm")[0], 1e-6);
    fg_test_check_tensor("clipped grads", g, FG_FIX_F32(&fx, "clip_out"), NP, 1e-6);
    FG_CHECK(fg_optim_grad_norm(&o, g) <= 1.0 + 1e-5, "norm after clipping %.8f", fg_optim_grad_norm(&o, g));
    memcpy(g, FG_FIX_F32(&fx, "clip_in"), sizeof g);
    double n2 = fg_optim_clip(&o, g, 0.0f);
    FG_CHECK(n2 == norm && memcmp(g, FG_FIX_F32(&fx, "clip_in"), sizeof g) == 0, "max_norm 0: norm only");
    memcpy(g, FG_FIX_F32(&fx, "clip_in"), sizeof g);
    fg_optim_clip(&o, g, (float)norm * 2);
    FG_CHECK(memcmp(g, FG_FIX_F32(&fx, "clip_in"), sizeof g) == 0, "norm under max_norm: untouched");
    fg_optim_free(&o);
    fg_fixture_free(&fx);
}

/* The same three steps with bf16 moments against torch.optim.AdamW whose exp_avg /
 * exp_avg_sq are rounded to bf16 after each step (the twin). */
static void test_adamw_bf16_moments_vs_torch(void)
{
    fg_fixture fx;
    if (fg_fixture_load(&fx, fg_test_source_path("tests/fixtures/optim/adamw_bf16m.bin")) != FG_OK) {
        FG_CHECK(0, "fixture: %s", fg_last_error());
        return;
    }
    const float *hyper = FG_FIX_F32(&fx, "hyper");
    const float *lr = FG_FIX_F32(&fx, "lr");
    fg_adamw_config cfg = {.beta1 = hyper[0],
                           .beta2 = hyper[1],
                           .eps = hyper[2],
                           .weight_decay = hyper[3],
                           .moments = FG_ADAM_MOMENTS_BF16};
    fg_optim o;
    FG_ASSERT(fg_optim_init(&o, NP, ranges, 4, &cfg) == FG_OK);
    FG_CHECK(o.m == NULL && o.v == NULL && o.m16 && o.v16, "bf16 moments: only the bf16 buffers");
    float p[NP];
    uint16_t pbf[NP] = {0};
    memcpy(p, FG_FIX_F32(&fx, "p0"), sizeof p);
    const char *gname[3] = {"g1", "g2", "g3"}, *pname[3] = {"p1", "p2", "p3"};
    for (int k = 0; k < 3; k++) {
        fg_optim_step_fused(&o, p, FG_FIX_F32(&fx, gname[k]), lr[k], 1.0f, k == 2 ? pbf : NULL);
        char name[48];
        snprintf(name, sizeof name, "bf16-moment params after step %d", k + 1);
        /* the fp32 tolerance of test_adamw_vs_torch: both sides round the same fp32
         * moments to bf16, so the rounding adds nothing unless a few-ulp fp32
         * difference straddles a bf16 rounding boundary (none in this fixture) */
        fg_test_check_tensor(name, p, FG_FIX_F32(&fx, pname[k]), NP, 2e-6);
    }
    /* the stored moments: torch's rounded to bf16, so equal bits expected */
    const float *m3 = FG_FIX_F32(&fx, "m3"), *v3 = FG_FIX_F32(&fx, "v3");
    int bad_m = 0, bad_v = 0;
    for (int i = 0; i < NP; i++) {
        bad_m += fg_bf16_to_f32_ref(o.m16[i]) != m3[i];
        bad_v += fg_bf16_to_f32_ref(o.v16[i]) != v3[i];
    }
    FG_CHECK(bad_m == 0 && bad_v == 0, "bf16 m, v equal torch's rounded moments: %d, %d differ", bad_m, bad_v);
    const float *pb = FG_FIX_F32(&fx, "p3_bf16");
    int bad_p = 0;
    for (int i = 0; i < NP; i++)
        bad_p += fg_bf16_to_f32_ref(pbf[i]) != pb[i];
    /* the params differ from torch's by ulps: a bf16 rounding may fall apart rarely */
    FG_CHECK(bad_p == 0, "bf16 copy of the params equals torch's .bfloat16(): %d differ", bad_p);
    FG_CHECK(fg_adam_moment_bytes(FG_ADAM_MOMENTS_BF16) == 4 && fg_adam_moment_bytes(FG_ADAM_MOMENTS_FP32) == 8,
             "state bytes per parameter");
    fg_optim_free(&o);
    fg_fixture_free(&fx);
}

/* Ranges long enough for several chunks and threads, odd lengths (vector tails), a
 * frozen range and a gap: the layout the fused step must get right. */
#define FN 70001
static const fg_optim_range franges[] = {
    {0, 40000, 1, 0, 1},
    {40000, 77, 0, 0, 1},
    {40077, 3000, 1, 1, 1},
    {43077, 20003, 1, 0, 0.5f},
    /* [63080, 63100) belongs to no range */
    {63100, 6901, 0, 0, 1},
};

/* p (when not NULL) and g from a seed */
static void fill(float *p, float *g, uint32_t seed)
{
    for (int i = 0; i < FN; i++) {
        seed = seed * 1664525u + 1013904223u;
        if (p)
            p[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.2f;
        seed = seed * 1664525u + 1013904223u;
        g[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * (i % 97 == 0 ? 40.0f : 1.0f);
    }
}

/* fp32 moments: norm + step_fused(coef, bf16 out) == clip + step + cvt, bit for bit,
 * with the clip factor active (max_norm 1 under a norm of ~80) and inactive. */
static void test_fused_bit_identical(void)
{
    float *p1 = fg_malloc(FN * sizeof(float)), *p2 = fg_malloc(FN * sizeof(float)), *g = fg_malloc(FN * sizeof(float)),
          *gc = fg_malloc(FN * sizeof(float));
    uint16_t *b1 = fg_malloc(FN * sizeof(uint16_t)), *b2 = fg_malloc(FN * sizeof(uint16_t));
    FG_ASSERT(p1 && p2 && g && gc && b1 && b2);
    fg_adamw_config cfg = fg_adamw_config_default();
    fg_optim a, b;
    FG_ASSERT(fg_optim_init(&a, FN, franges, 5, &cfg) == FG_OK);
    FG_ASSERT(fg_optim_init(&b, FN, franges, 5, &cfg) == FG_OK);
    fill(p1, g, 7);
    memcpy(p2, p1, FN * sizeof(float));
    memset(b2, 0xab, FN * sizeof(uint16_t));
    const float max_norm[3] = {1.0f, 1e6f, 1.0f};
    int same_p = 1, same_m = 1, same_b = 1, scaled = 0;
    for (int k = 0; k < 3; k++) {
        fill(NULL, g, 100 + (uint32_t)k);
        memcpy(gc, g, FN * sizeof(float));
        double n1 = fg_optim_clip(&a, gc, max_norm[k]);
        fg_optim_step(&a, p1, gc, 1e-2f);
        fg_cvt_f32_bf16(b1, p1, FN);
        double n2 = fg_optim_grad_norm(&b, g);
        float coef = fg_optim_clip_coef(n2, max_norm[k]);
        scaled += coef != 1.0f;
        fg_optim_step_fused(&b, p2, g, 1e-2f, coef, b2);
        FG_CHECK(n1 == n2, "step %d: the same norm", k);
        same_p &= memcmp(p1, p2, FN * sizeof(float)) == 0;
        same_m &= memcmp(a.m, b.m, FN * sizeof(float)) == 0 && memcmp(a.v, b.v, FN * sizeof(float)) == 0;
        same_b &= memcmp(b1, b2, FN * sizeof(uint16_t)) == 0;
    }
    FG_CHECK(scaled == 2, "the clip factor was active on 2 of 3 steps: %d", scaled);
    FG_CHECK(same_p, "fused params == clip + step, bit for bit");
    FG_CHECK(same_m, "fused m, v == clip + step, bit for bit");
    FG_CHECK(same_b, "fused bf16 copy == fg_cvt_f32_bf16 of the params (frozen range and gap included)");
    fg_optim_free(&a);
    fg_optim_free(&b);

    /* bf16 moments: the fused bf16 copy is the conversion of the updated params, and a
     * clip factor read on the fly is the same as gradients clipped in memory */
    cfg.moments = FG_ADAM_MOMENTS_BF16;
    FG_ASSERT(fg_optim_init(&a, FN, franges, 5, &cfg) == FG_OK);
    FG_ASSERT(fg_optim_init(&b, FN, franges, 5, &cfg) == FG_OK);
    fill(p1, g, 9);
    memcpy(p2, p1, FN * sizeof(float));
    same_p = same_m = same_b = 1;
    for (int k = 0; k < 3; k++) {
        fill(NULL, g, 200 + (uint32_t)k);
        memcpy(gc, g, FN * sizeof(float));
        fg_optim_clip(&a, gc, 1.0f);
        fg_optim_step(&a, p1, gc, 1e-2f);
        fg_cvt_f32_bf16(b1, p1, FN);
        fg_optim_step_fused(&b, p2, g, 1e-2f, fg_optim_clip_coef(fg_optim_grad_norm(&b, g), 1.0f), b2);
        same_p &= memcmp(p1, p2, FN * sizeof(float)) == 0;
        same_m &= memcmp(a.m16, b.m16, FN * 2) == 0 && memcmp(a.v16, b.v16, FN * 2) == 0;
        same_b &= memcmp(b1, b2, FN * sizeof(uint16_t)) == 0;
    }
    FG_CHECK(same_p && same_m && same_b, "bf16 moments: fused == separate passes (params %d, moments %d, copy %d)",
             same_p, same_m, same_b);
    fg_optim_free(&a);
    fg_optim_free(&b);
    fg_free(p1);
    fg_free(p2);
    fg_free(g);
    fg_free(gc);
    fg_free(b1);
    fg_free(b2);
}

/* Checkpoints see fp32 moments: widening bf16 and narrowing back is exact, and an
 * optimiser restored from the fp32 view after 3 steps continues bit for bit. */
static void test_bf16_moments_resume(void)
{
    float *p = fg_malloc(FN * sizeof(float)), *pr = fg_malloc(FN * sizeof(float)), *g = fg_malloc(FN * sizeof(float));
    FG_ASSERT(p && pr && g);
    fg_adamw_config cfg = fg_adamw_config_default();
    cfg.moments = FG_ADAM_MOMENTS_BF16;
    fg_optim a, r;
    FG_ASSERT(fg_optim_init(&a, FN, franges, 5, &cfg) == FG_OK);
    fill(p, g, 11);
    for (int k = 0; k < 3; k++) {
        fill(NULL, g, 300 + (uint32_t)k);
        fg_optim_step(&a, p, g, 3e-3f);
    }
    float *mv, *vv, *scratch;
    FG_ASSERT(fg_optim_moments_f32(&a, &mv, &vv, &scratch) == FG_OK);
    FG_CHECK(scratch == mv, "bf16 moments: the view is a new buffer");
    /* what a checkpoint holds, loaded into a fresh optimiser */
    FG_ASSERT(fg_optim_init(&r, FN, franges, 5, &cfg) == FG_OK);
    float *rm, *rv, *rs;
    FG_ASSERT(fg_optim_moments_f32(&r, &rm, &rv, &rs) == FG_OK);
    memcpy(rm, mv, FN * sizeof(float));
    memcpy(rv, vv, FN * sizeof(float));
    fg_optim_moments_commit(&r, rm, rv);
    r.t = a.t;
    fg_free(rs);
    fg_free(scratch);
    FG_CHECK(memcmp(r.m16, a.m16, FN * 2) == 0 && memcmp(r.v16, a.v16, FN * 2) == 0, "bf16 -> fp32 -> bf16 is exact");
    memcpy(pr, p, FN * sizeof(float));
    for (int k = 3; k < 6; k++) {
        fill(NULL, g, 300 + (uint32_t)k);
        fg_optim_step(&a, p, g, 3e-3f);
        fg_optim_step(&r, pr, g, 3e-3f);
    }
    FG_CHECK(memcmp(p, pr, FN * sizeof(float)) == 0 && memcmp(r.m16, a.m16, FN * 2) == 0 &&
                 memcmp(r.v16, a.v16, FN * 2) == 0,
             "resumed from the fp32 view: bit for bit the run that did not stop");
    /* fp32 moments: the view is the buffers themselves */
    fg_optim f;
    cfg.moments = FG_ADAM_MOMENTS_FP32;
    FG_ASSERT(fg_optim_init(&f, 10, franges, 1, &cfg) == FG_ERR_INVALID); /* range beyond 10 */
    fg_optim_range one = {0, 10, 1, 0, 1};
    FG_ASSERT(fg_optim_init(&f, 10, &one, 1, &cfg) == FG_OK);
    FG_CHECK(fg_optim_moments_f32(&f, &mv, &vv, &scratch) == FG_OK && mv == f.m && vv == f.v && !scratch,
             "fp32 moments: views are o->m, o->v");
    fg_optim_free(&f);
    cfg.moments = 7;
    FG_CHECK(fg_optim_init(&f, 10, &one, 1, &cfg) == FG_ERR_INVALID && strstr(fg_last_error(), "moments"),
             "unknown moments type refused: %s", fg_last_error());
    fg_optim_free(&a);
    fg_optim_free(&r);
    fg_free(p);
    fg_free(pr);
    fg_free(g);
}

static void test_decay_mask(void)
{
    /* zero gradients: the Adam part is 0/(0+eps) = 0, so only decay moves weights */
    fg_optim_range r[2] = {{0, 8, 1, 0, 1}, {8, 8, 0, 0, 1}};
    fg_adamw_config cfg = fg_adamw_config_default();
    cfg.weight_decay = 0.5f;
    fg_optim o;
    FG_ASSERT(fg_optim_init(&o, 16, r, 2, &cfg) == FG_OK);
    float p[16], g[16] = {0};
    for (int i = 0; i < 16; i++)
        p[i] = 1.0f + (float)i;
    fg_optim_step(&o, p, g, 0.1f);
    int ok_decay = 1, ok_keep = 1;
    for (int i = 0; i < 8; i++)
        ok_decay &= fabsf(p[i] - (1.0f + (float)i) * (1.0f - 0.1f * 0.5f)) <= 1e-6f * (1.0f + (float)i);
    for (int i = 8; i < 16; i++)
        ok_keep &= p[i] == 1.0f + (float)i;
    FG_CHECK(ok_decay, "decay range shrinks by 1 - lr*wd");
    FG_CHECK(ok_keep, "no-decay range unchanged");
    fg_optim_free(&o);
}

static void test_schedule(void)
{
    fg_lr_schedule s = {.lr = 1e-3f, .min_lr = 1e-4f, .warmup = 10, .total = 111};
    FG_CHECK_CLOSE(fg_lr_at(&s, 0), 1e-4, 1e-9);
    FG_CHECK_CLOSE(fg_lr_at(&s, 4), 5e-4, 1e-9);
    FG_CHECK_CLOSE(fg_lr_at(&s, 9), 1e-3, 1e-9);
    FG_CHECK_CLOSE(fg_lr_at(&s, 10), 1e-3, 1e-9);   /* cosine starts at the peak */
    FG_CHECK_CLOSE(fg_lr_at(&s, 60), 5.5e-4, 1e-9); /* halfway: (lr + min_lr) / 2 */
    FG_CHECK_CLOSE(fg_lr_at(&s, 110), 1e-4, 1e-9);
    FG_CHECK_CLOSE(fg_lr_at(&s, 500), 1e-4, 1e-9);
    int mono = 1;
    for (long t = 10; t < 110; t++)
        mono &= fg_lr_at(&s, t + 1) <= fg_lr_at(&s, t);
    FG_CHECK(mono, "non-increasing after warmup");
    fg_lr_schedule c = {.lr = 3e-4f, .min_lr = 3e-4f, .warmup = 0, .total = 5};
    FG_CHECK(fg_lr_at(&c, 0) == 3e-4f && fg_lr_at(&c, 4) == 3e-4f, "min_lr == lr: constant");
    fg_lr_schedule one = {.lr = 1e-3f, .min_lr = 0, .warmup = 0, .total = 1};
    FG_CHECK(fg_lr_at(&one, 0) == 1e-3f, "a one-step run uses the peak");
}

static void test_ranges(void)
{
    fg_adamw_config cfg = fg_adamw_config_default();
    fg_optim o;
    fg_optim_range over[2] = {{0, 10, 1, 0, 1}, {5, 10, 1, 0, 1}};
    FG_CHECK(fg_optim_init(&o, 20, over, 2, &cfg) == FG_ERR_INVALID && strstr(fg_last_error(), "overlaps"),
             "overlap refused: %s", fg_last_error());
    fg_optim_range out[1] = {{15, 10, 1, 0, 1}};
    FG_CHECK(fg_optim_init(&o, 20, out, 1, &cfg) == FG_ERR_INVALID && strstr(fg_last_error(), "outside"),
             "out of bounds refused: %s", fg_last_error());
    cfg.beta2 = 1.0f;
    FG_CHECK(fg_optim_init(&o, 20, over, 1, &cfg) == FG_ERR_INVALID, "beta2 = 1 refused");
    fg_optim_free(&o); /* zeroed by the failed init: a no-op */
}

/* A range's lr_scale multiplies the step's lr, decay included: the same bits as a
 * second optimiser stepping that range alone at lr * scale. 0 is read as 1. */
static void test_lr_scale(void)
{
    fg_adamw_config cfg = fg_adamw_config_default();
    cfg.weight_decay = 0.3f;
    fg_optim_range r[3] = {{0, 6, 1, 0, 0.25f}, {6, 6, 1, 0, 0}, {12, 6, 1, 0, 1}};
    fg_optim_range plain[1] = {{0, 6, 1, 0, 1}};
    fg_optim o, q, z;
    FG_ASSERT(fg_optim_init(&o, 18, r, 3, &cfg) == FG_OK);
    FG_ASSERT(fg_optim_init(&q, 6, plain, 1, &cfg) == FG_OK);
    FG_CHECK(o.n_ranges == 2, "a different lr_scale keeps ranges apart, 0 and 1 merge: %d ranges", o.n_ranges);
    float p[18], g[18], pq[6];
    for (int i = 0; i < 18; i++)
        p[i] = 0.1f * (float)(i % 7) - 0.2f, g[i] = 0.05f * (float)((i * 5) % 11) - 0.25f;
    memcpy(pq, p, sizeof pq);
    for (int k = 0; k < 3; k++) {
        fg_optim_step(&o, p, g, 1e-2f);
        fg_optim_step(&q, pq, g, 1e-2f * 0.25f);
    }
    FG_CHECK(memcmp(p, pq, sizeof pq) == 0, "lr_scale 0.25 == lr * 0.25, bit for bit");
    /* ranges 2 and 3 started from different values; compare each with a plain run */
    float p2[6], p3[6];
    for (int i = 0; i < 6; i++)
        p2[i] = 0.1f * (float)((i + 6) % 7) - 0.2f, p3[i] = 0.1f * (float)((i + 12) % 7) - 0.2f;
    FG_ASSERT(fg_optim_init(&z, 6, plain, 1, &cfg) == FG_OK);
    for (int k = 0; k < 3; k++)
        fg_optim_step(&z, p2, g + 6, 1e-2f);
    FG_CHECK(memcmp(p + 6, p2, sizeof p2) == 0, "lr_scale 0 trains at the plain rate");
    fg_optim_free(&z);
    FG_ASSERT(fg_optim_init(&z, 6, plain, 1, &cfg) == FG_OK);
    for (int k = 0; k < 3; k++)
        fg_optim_step(&z, p3, g + 12, 1e-2f);
    FG_CHECK(memcmp(p + 12, p3, sizeof p3) == 0, "lr_scale 1 trains at the plain rate");
    fg_optim_free(&z);
    fg_optim_range bad[1] = {{0, 6, 1, 0, -1}};
    FG_CHECK(fg_optim_init(&z, 6, bad, 1, &cfg) == FG_ERR_INVALID && strstr(fg_last_error(), "lr_scale"),
             "negative lr_scale refused: %s", fg_last_error());
    fg_optim_free(&o);
    fg_optim_free(&q);
}

static void test_merge(void)
{
    /* given out of order; adjacent alike ranges merge, frozen ones split the spans */
    fg_optim_range r[5] = {{10, 5, 1, 0, 1}, {0, 10, 1, 0, 1}, {15, 5, 0, 0, 1}, {20, 5, 1, 1, 1}, {25, 5, 1, 0, 1}};
    fg_adamw_config cfg = fg_adamw_config_default();
    fg_optim o;
    FG_ASSERT(fg_optim_init(&o, 30, r, 5, &cfg) == FG_OK);
    FG_CHECK(o.n_ranges == 4 && o.ranges[0].offset == 0 && o.ranges[0].numel == 15 && o.ranges[0].decay == 1,
             "merged ranges: %d, first [%zu, +%zu)", o.n_ranges, o.ranges[0].offset, o.ranges[0].numel);
    FG_CHECK(o.n_spans == 2 && o.spans[0].offset == 0 && o.spans[0].numel == 20 && o.spans[1].offset == 25 &&
                 o.spans[1].numel == 5,
             "norm spans skip the frozen range: %d", o.n_spans);
    float g[30];
    for (int i = 0; i < 30; i++)
        g[i] = 1.0f;
    FG_CHECK_CLOSE(fg_optim_grad_norm(&o, g), 5.0, 1e-12); /* sqrt(25 non-frozen ones) */
    fg_optim_free(&o);
}

int main(void)
{
    FG_TEST_BEGIN("optim");
    fg_status st = fg_kernels_init(NULL);
    FG_CHECK(st == FG_OK, "kernels init: %s", fg_last_error());
    test_adamw_vs_torch();
    test_adamw_bf16_moments_vs_torch();
    test_fused_bit_identical();
    test_bf16_moments_resume();
    test_decay_mask();
    test_schedule();
    test_ranges();
    test_merge();
    test_lr_scale();
    return fg_test_end();
}
