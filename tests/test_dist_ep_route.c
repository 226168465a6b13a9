/* test_dist_ep_route.c: node-limited routing (route_groups G, route_max_groups M, as
 * DeepSeek-V3): every token's experts come from at most M groups, and they are the
 * top-K of a + bias inside the M groups of highest score (sum of a group's two best),
 * recomputed here independently; M = G is plain top-K; the settings are validated. */
#include <stdlib.h>
#include <string.h>

#include "frugal/moe.h"
#include "harness.h"

enum { E = 16, K = 4, C = 8, H = 8, B = 4, T = 32, N = B * T };

static fg_moe_config config(int G, int M)
{
    fg_moe_config mc = {.n_expert = E,
                        .n_expert_active = K,
                        .d_expert = H,
                        .d_model = C,
                        .balance = FG_BALANCE_BIAS,
                        .route_scale = 1.0f,
                        .balance_gamma = 0.001f,
                        .router_logit_scale = 1.0f,
                        .balance_window = 4,
                        .route_groups = G,
                        .route_max_groups = M};
    return mc;
}

static float *rnd(fg_rng *r, size_t n, float sd)
{
    float *p = fg_malloc(n * sizeof *p);
    FG_ASSERT(p);
    for (size_t i = 0; i < n; i++)
        p[i] = sd * fg_rng_normal(r);
    return p;
}

/* topk of every token under (G, M) into out[N*K] */
static void route(int G, int M, const float *x, const fg_moe_weights *w, int32_t *out, float *aff)
{
    fg_moe_config mc = config(G, M);
    fg_moe_layer L;
    FG_ASSERT(fg_moe_layer_init(&L, &mc, N) == FG_OK);
    float *o = fg_malloc((size_t)N * C * sizeof *o);
    FG_ASSERT(o && fg_moe_forward(&L, o, x, w, B, T) == FG_OK);
    memcpy(out, L.topk, (size_t)N * K * sizeof *out);
    if (aff)
        memcpy(aff, L.aff, (size_t)N * E * sizeof *aff);
    fg_free(o);
    fg_moe_layer_free(&L);
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* the rule, from the affinities: the M best groups, then the top-K inside them */
static void expect(const float *a, const float *bias, int G, int M, int32_t *want)
{
    int per = E / G;
    float gs[E];
    int pick[E] = {0};
    for (int g = 0; g < G; g++) {
        float s[E] = {0};
        for (int j = 0; j < per; j++)
            s[j] = a[g * per + j] + bias[g * per + j];
        qsort(s, (size_t)per, sizeof *s, cmp_desc);
        gs[g] = s[0] + (per > 1 ? s[1] : 0.0f);
    }
    for (int m = 0; m < M; m++) {
        int best = -1;
        for (int g = 0; g < G; g++)
            if (!pick[g] && (best < 0 || gs[g] > gs[best]))
                best = g;
        if (best < 0)
            return;
        pick[best] = 1;
    }
    int taken[E] = {0};
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (pick[e / per] && !taken[e] && (best < 0 || a[e] + bias[e] > a[best] + bias[best]))
                best = e;
        taken[best] = 1;
        want[k] = best;
    }
}

static void test_rule(void)
{
    fg_rng r;
    fg_rng_seed(&r, 7);
    fg_moe_weights w = {0};
    float *x = rnd(&r, (size_t)N * C, 1.0f);
    w.router_w = rnd(&r, (size_t)E * C, 1.0f);
    w.router_bias = rnd(&r, E, 0.05f);
    w.expert_fc = rnd(&r, (size_t)E * 2 * H * C, 0.1f);
    w.expert_proj = rnd(&r, (size_t)E * C * H, 0.1f);
    static int32_t free_k[N * K], lim[N * K], full[N * K];
    static float aff[N * E];
    route(0, 0, x, &w, free_k, NULL);
    route(4, 4, x, &w, full, NULL);
    FG_CHECK(memcmp(free_k, full, sizeof full) == 0, "route_max_groups = route_groups is plain top-K");
    static const int gm[][2] = {{4, 2}, {4, 1}, {8, 2}, {2, 1}};
    for (int c = 0; c < 4; c++) {
        int G = gm[c][0], M = gm[c][1], per = E / G;
        route(G, M, x, &w, lim, aff);
        int over = 0, bad = 0, wrong = 0, changed = 0;
        for (int t = 0; t < N; t++) {
            int used[E] = {0}, n_used = 0, n_free = 0, used_free[E] = {0};
            for (int k = 0; k < K; k++) {
                int g = lim[t * K + k] / per, gf = free_k[t * K + k] / per;
                n_used += !used[g]++;
                n_free += !used_free[gf]++;
            }
            over += n_free > M; /* plain top-K would have crossed the limit here */
            bad += n_used > M;
            int32_t want[K];
            expect(aff + (size_t)t * E, w.router_bias, G, M, want);
            wrong += memcmp(want, lim + t * K, sizeof want) != 0;
            changed += memcmp(free_k + t * K, lim + t * K, sizeof want) != 0;
        }
        FG_CHECK(bad == 0, "G=%d M=%d: %d tokens use more than %d groups", G, M, bad, M);
        FG_CHECK(wrong == 0, "G=%d M=%d: %d tokens differ from the rule recomputed here", G, M, wrong);
        FG_CHECK(over > 0 && changed >= over, "G=%d M=%d: the limit binds (%d tokens over it unlimited, %d changed)", G,
                 M, over, changed);
    }
    fg_free(x);
    fg_free(w.router_w);
    fg_free(w.router_bias);
    fg_free(w.expert_fc);
    fg_free(w.expert_proj);
}

static void test_validation(void)
{
    static const int bad[][2] = {{3, 1}, {4, 5}, {4, 0}, {8, 1}, {0, 2}};
    static const char *why[] = {"does not divide", "must be 1 ..", "must be 1 ..", "cannot hold", "without"};
    for (int i = 0; i < 5; i++) {
        fg_moe_config mc = config(bad[i][0], bad[i][1]);
        fg_status st = fg_moe_config_validate(&mc);
        FG_CHECK(st == FG_ERR_INVALID && strstr(fg_last_error(), why[i]), "G=%d M=%d refused (%s): %s", bad[i][0],
                 bad[i][1], why[i], fg_last_error());
    }
    fg_moe_config ok = config(4, 2);
    FG_CHECK(fg_moe_config_validate(&ok) == FG_OK, "G=4 M=2 accepted: %s", fg_last_error());
}

int main(void)
{
    FG_TEST_BEGIN("dist_ep_route");
    test_rule();
    test_validation();
    return fg_test_end();
}
