/* test_dist_ep_place.c: the expert placement rule (fg_moe_place): equal expert counts per
 * rank, every rank owns an expert, skewed loads end near 1.0 max/mean per rank (far below
 * the contiguous blocks'), with a single expert heavier than a rank's share it reaches
 * the bound, and the same loads give the same placement. No MPI: the rule is pure. */
#include <math.h>
#include <string.h>

#include "frugal/moe.h"
#include "harness.h"

enum { MAXE = 64 };

static void counts(const int32_t *owner, int E, int P, int *cnt)
{
    memset(cnt, 0, (size_t)P * sizeof *cnt);
    for (int e = 0; e < E; e++)
        cnt[owner[e]]++;
}

static void test_skewed(void)
{
    int E = 64, P = 4;
    double load[MAXE], rl[4];
    int32_t owner[MAXE], again[MAXE], contig[MAXE];
    for (int e = 0; e < E; e++) /* Zipf-like, hot experts bunched at the low indices */
        load[e] = 1000.0 / pow(1.0 + e, 0.8), contig[e] = e * P / E;
    FG_CHECK(fg_moe_place(load, E, P, owner) == FG_OK, "place");
    int cnt[4];
    counts(owner, E, P, cnt);
    FG_CHECK(cnt[0] == 16 && cnt[1] == 16 && cnt[2] == 16 && cnt[3] == 16, "16 experts each: %d %d %d %d", cnt[0],
             cnt[1], cnt[2], cnt[3]);
    double c = fg_moe_rank_imbalance(load, contig, E, P, rl), p = fg_moe_rank_imbalance(load, owner, E, P, rl);
    FG_CHECK(c > 2.0 && p < 1.02, "max/mean rank load: contiguous %.3f, placed %.3f (want < 1.02)", c, p);
    FG_CHECK(fg_moe_place(load, E, P, again) == FG_OK, "place again");
    FG_CHECK(memcmp(owner, again, sizeof owner) == 0, "same loads, same placement");
}

static void test_edges(void)
{
    double load[MAXE] = {0}, rl[4];
    int32_t owner[MAXE];
    int cnt[4];
    FG_CHECK(fg_moe_place(load, 5, 4, owner) == FG_OK,
             "place E=5"); /* no load yet: still one expert per rank at least */
    counts(owner, 5, 4, cnt);
    FG_CHECK(cnt[0] >= 1 && cnt[1] >= 1 && cnt[2] >= 1 && cnt[3] >= 1, "E=5 P=4 without load: %d %d %d %d", cnt[0],
             cnt[1], cnt[2], cnt[3]);
    FG_CHECK(fg_moe_rank_imbalance(load, owner, 5, 4, rl) == 1.0, "no load: imbalance 1");
    /* one expert carries half of everything: with 4 experts per rank its rank also takes
     * three light ones, (15 + 3) / 7.5 = 2.4 whatever happens; the rest must not pile on */
    for (int e = 0; e < 16; e++)
        load[e] = e == 3 ? 15.0 : 1.0;
    FG_CHECK(fg_moe_place(load, 16, 4, owner) == FG_OK, "place E=16");
    double p = fg_moe_rank_imbalance(load, owner, 16, 4, rl);
    FG_CHECK(fabs(p - 2.4) < 1e-9, "a hot expert with half the load: max/mean %.3f (the bound is 2.4)", p);
}

int main(void)
{
    FG_TEST_BEGIN("dist_ep_place");
    test_skewed();
    test_edges();
    return fg_test_end();
}
