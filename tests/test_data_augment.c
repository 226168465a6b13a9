/* test_data_augment.c: loss-driven augmentation's parts: token classes from token text;
 * each transform deterministic for a seed; the permutations (word swaps, sentence and
 * clause reordering) reversible and moving what they say; blanking corrupting inputs
 * only; the word -> syntax schedule; the hard pool (threshold, entry, exit, rate) and
 * its state round trip continuing the same stream; per-row losses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/data.h"
#include "harness.h"

static uint8_t cls[256];

static void byte_classes(void)
{
    for (int i = 0; i < 256; i++) {
        uint8_t b = (uint8_t)i;
        cls[i] = fg_aug_token_class(&b, 1);
    }
}

static int to_ids(const char *s, int32_t *w)
{
    int n = (int)strlen(s);
    for (int i = 0; i < n; i++)
        w[i] = (uint8_t)s[i];
    return n;
}

static void to_text(const int32_t *w, int n, char *s)
{
    for (int i = 0; i < n; i++)
        s[i] = (char)w[i];
    s[n] = '\0';
}

static void test_classes(void)
{
    const struct {
        const char *t;
        uint8_t want;
    } cases[] = {
        {" cat", FG_AUG_SPACE | FG_AUG_WORD},
        {"cat", FG_AUG_WORD},
        {" ", FG_AUG_SPACE | FG_AUG_WORD},
        {".", FG_AUG_SENT_END},
        {"?\n", FG_AUG_SENT_END | FG_AUG_NEWLINE},
        {",", FG_AUG_CLAUSE_END},
        {" well;", FG_AUG_SPACE | FG_AUG_CLAUSE_END},
        {"\n", FG_AUG_NEWLINE},
        {"don't", FG_AUG_WORD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t c = fg_aug_token_class((const uint8_t *)cases[i].t, strlen(cases[i].t));
        FG_CHECK(c == cases[i].want, "class of '%s': %#x, want %#x", cases[i].t, c, cases[i].want);
    }
}

/* The permutation is one (every index once), out[i] = w[perm[i]], and undoing it gives w. */
static int check_perm(const int32_t *w, const int32_t *out, const int32_t *perm, int n)
{
    static int32_t back[512];
    static char seen[512];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < n; i++) {
        if (perm[i] < 0 || perm[i] >= n || seen[perm[i]] || out[i] != w[perm[i]])
            return 0;
        seen[perm[i]] = 1;
    }
    fg_aug_unpermute(out, perm, n, back);
    return memcmp(back, w, (size_t)n * sizeof *w) == 0;
}

static const char *TEXT = "ing the cat sat on the mat. The dog ran far away, and the bird sang loudly. "
                          "Now it rains; we stay in, we read. Then we sle";

static void test_permutations(void)
{
    int32_t w[512], out[512], out2[512], perm[512];
    char s[512];
    int n = to_ids(TEXT, w);
    fg_rng r1, r2;

    /* word swaps: rate 1 swaps every eligible pair of plain words; the cut first and
     * last words stay; words with punctuation stay */
    fg_rng_seed(&r1, 5);
    int moved = fg_aug_word_swap(cls, w, n, 1.0f, &r1, out, perm);
    to_text(out, n, s);
    FG_CHECK(moved > 0 && check_perm(w, out, perm, n), "word swap: %d words moved, a reversible permutation: '%s'",
             moved, s);
    FG_CHECK(!strncmp(s, "ing the", 7) || !strncmp(s, "ing cat", 7), "word swap keeps the cut first word: '%s'", s);
    FG_CHECK(!strcmp(s + n - 4, " sle"), "word swap keeps the cut last word: '%s'", s);
    FG_CHECK(strstr(s, " mat.") && strstr(s, " away,") && strstr(s, " rains;"), "words carrying punctuation stay: '%s'",
             s);
    fg_rng_seed(&r1, 5);
    fg_aug_word_swap(cls, w, n, 1.0f, &r1, out2, NULL);
    FG_CHECK(!memcmp(out, out2, (size_t)n * sizeof *out), "word swap: the same seed, the same output");
    fg_rng_seed(&r1, 5);
    fg_aug_word_swap(cls, w, n, 0.3f, &r1, out, perm);
    fg_rng_seed(&r2, 6);
    fg_aug_word_swap(cls, w, n, 0.3f, &r2, out2, NULL);
    FG_CHECK(memcmp(out, out2, (size_t)n * sizeof *out) != 0, "word swap: another seed, another output");
    FG_CHECK(fg_aug_word_swap(cls, w, n, 0.0f, &r1, out, perm) == 0 && !memcmp(out, w, (size_t)n * sizeof *w),
             "word swap at rate 0: identity");

    /* sentences: the three complete ones move, the cut head and tail stay */
    fg_rng_seed(&r1, 9);
    moved = fg_aug_reorder(cls, w, n, 0, &r1, out, perm);
    to_text(out, n, s);
    FG_CHECK(moved >= 2 && check_perm(w, out, perm, n), "sentences: %d moved, reversible: '%s'", moved, s);
    FG_CHECK(!strncmp(s, "ing the cat sat on the mat.", 27), "sentences: cut head kept: '%s'", s);
    FG_CHECK(!strcmp(s + n - 12, " Then we sle"), "sentences: cut tail kept: '%s'", s);
    FG_CHECK(strstr(s, " The dog ran far away, and the bird sang loudly.") &&
                 strstr(s, " Now it rains; we stay in, we read."),
             "sentences move whole: '%s'", s);
    fg_rng_seed(&r2, 9);
    fg_aug_reorder(cls, w, n, 0, &r2, out2, NULL);
    FG_CHECK(!memcmp(out, out2, (size_t)n * sizeof *out), "sentences: the same seed, the same output");

    /* clauses: two bodies around one mark trade places, the marks stay */
    fg_rng_seed(&r1, 3);
    moved = fg_aug_reorder(cls, w, n, 1, &r1, out, perm);
    to_text(out, n, s);
    FG_CHECK(moved == 2 && check_perm(w, out, perm, n), "clauses: reversible: '%s'", s);
    static const char *const swapped[] = {
        " and the bird sang loudly, The dog ran far away.",
        " we stay in; Now it rains, we read.",
        " Now it rains; we read, we stay in.",
    };
    int hits = 0;
    for (int i = 0; i < 3; i++)
        hits += strstr(s, swapped[i]) != NULL;
    FG_CHECK(hits == 1, "clauses: exactly one pair exchanged, marks in place: '%s'", s);
    /* which pair: each of the three over seeds */
    int seen[3] = {0, 0, 0};
    for (uint64_t seed = 0; seed < 60; seed++) {
        fg_rng_seed(&r1, seed);
        fg_aug_reorder(cls, w, n, 1, &r1, out, NULL);
        to_text(out, n, s);
        for (int i = 0; i < 3; i++)
            seen[i] += strstr(s, swapped[i]) != NULL;
    }
    FG_CHECK(seen[0] && seen[1] && seen[2], "clauses: every pair is drawn (%d %d %d of 60)", seen[0], seen[1], seen[2]);

    /* nothing to reorder: one sentence, no clause mark */
    n = to_ids("one two. three four five", w);
    FG_CHECK(fg_aug_reorder(cls, w, n, 0, &r1, out, perm) == 0 && fg_aug_reorder(cls, w, n, 1, &r1, out, perm) == 0 &&
                 !memcmp(out, w, (size_t)n * sizeof *w),
             "no complete pair: nothing moves");
}

static void test_blank_and_apply(void)
{
    int32_t w[512], out[512], inp[512], tgt[512], inp2[512], tgt2[512];
    int n = to_ids(TEXT, w), T = n - 1;
    fg_rng r;
    fg_rng_seed(&r, 1);
    int k = fg_aug_blank(w, n, 0.2f, 3, 0, &r, out);
    int diff = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        diff += out[i] != w[i];
        bad += out[i] != w[i] && out[i] != 0;
    }
    FG_CHECK(k == diff && bad == 0 && k > n / 10 && k < n / 3, "span masking 20%%: %d of %d blanked (only to 0)", k, n);

    fg_aug_config c = {.frac = 0.2f,
                       .rate = 0.5f,
                       .pool = 8,
                       .max_visits = 2,
                       .drop = 0.1f,
                       .swap = 0.3f,
                       .mask = 0.15f,
                       .span = 3,
                       .syntax_start = 0.3f,
                       .syntax_end = 0.8f,
                       .mask_token = 0,
                       .seed = 1};
    FG_CHECK(fg_aug_syntax_share(&c, 0.1f) == 0 && fg_aug_syntax_share(&c, 0.9f) == 1 &&
                 fabsf(fg_aug_syntax_share(&c, 0.55f) - 0.5f) < 1e-6f,
             "schedule: 0 before 0.3, 1 after 0.8, linear between");
    int word = 0, syntax = 0, kinds[FG_AUG_KINDS] = {0};
    for (uint64_t seed = 0; seed < 200; seed++) {
        float p = seed < 100 ? 0.1f : 0.95f;
        fg_rng_seed(&r, seed);
        fg_aug_kind kd = fg_aug_apply(&c, cls, 256, p, &r, w, T, inp, tgt);
        fg_rng_seed(&r, seed);
        fg_aug_kind kd2 = fg_aug_apply(&c, cls, 256, p, &r, w, T, inp2, tgt2);
        FG_CHECK(kd == kd2 && !memcmp(inp, inp2, (size_t)T * 4) && !memcmp(tgt, tgt2, (size_t)T * 4),
                 "apply: deterministic for a seed (seed %llu)", (unsigned long long)seed);
        kinds[kd]++;
        if (p < 0.3f)
            word += kd == FG_AUG_DROP || kd == FG_AUG_SWAP || kd == FG_AUG_MASK;
        else
            syntax += kd == FG_AUG_SENTENCES || kd == FG_AUG_CLAUSES;
        if (kd == FG_AUG_DROP || kd == FG_AUG_MASK) { /* inputs blanked only, targets clean */
            int ok = !memcmp(tgt, w + 1, (size_t)T * 4);
            for (int i = 0; i < T; i++)
                ok &= inp[i] == w[i] || inp[i] == 0;
            FG_CHECK(ok, "blanking (kind %d): targets clean, inputs blanked or equal", kd);
        } else if (kd != FG_AUG_NONE) { /* a permuted window: targets follow inputs */
            int ok = 1;
            for (int i = 0; i + 1 < T; i++)
                ok &= tgt[i] == inp[i + 1];
            FG_CHECK(ok, "permutation (kind %d): targets are the permuted window shifted", kd);
        }
    }
    FG_CHECK(word == 100, "progress 0.1: word level only (%d of 100)", word);
    FG_CHECK(syntax == 100, "progress 0.95: syntax level only (%d of 100)", syntax);
    FG_CHECK(kinds[FG_AUG_DROP] && kinds[FG_AUG_SWAP] && kinds[FG_AUG_MASK] && kinds[FG_AUG_SENTENCES] &&
                 kinds[FG_AUG_CLAUSES],
             "every transform drawn: drop %d swap %d mask %d sentences %d clauses %d", kinds[1], kinds[2], kinds[3],
             kinds[4], kinds[5]);
}

static void test_pool(void)
{
    fg_aug_config c = {.frac = 0.25f, .rate = 0.5f, .pool = 4, .max_visits = 2, .seed = 42};
    fg_aug_state s, t;
    FG_CHECK(fg_aug_init(&s, &c, cls, 256) == FG_OK, "init");
    uint64_t src;
    FG_CHECK(!fg_aug_pick(&s, &src) && isinf(fg_aug_threshold(&s)), "empty pool: nothing picked, no threshold");
    /* losses 0..99 (shuffled by a stride): the top quarter starts at 75 */
    for (int i = 0; i < 100; i++) {
        int v = (i * 37) % 100;
        fg_aug_observe(&s, (uint64_t)v, 0, (float)v, 0);
    }
    float thr = fg_aug_threshold(&s);
    FG_CHECK(thr == 75.0f, "threshold: the 75th percentile of 0..99 = %g", thr);
    /* the pool holds the 4 hardest seen after the threshold formed */
    int hard = 1;
    for (int i = 0; i < s.n_pool; i++)
        hard &= s.pool[i].loss >= 75;
    FG_CHECK(s.n_pool == 4 && hard, "pool: 4 entries, all hard (%d)", s.n_pool);
    /* rate: about half the picks */
    int picks = 0;
    char *saved = fg_aug_save(&s);
    for (int i = 0; i < 1000; i++)
        picks += fg_aug_pick(&s, &src);
    FG_CHECK(picks > 430 && picks < 570, "pick rate 0.5: %d of 1000", picks);
    /* round trip: restored, the same stream of picks follows */
    FG_CHECK(fg_aug_init(&t, &c, cls, 256) == FG_OK && saved && fg_aug_restore(&t, saved, "meta") == FG_OK,
             "restore: %s", fg_last_error());
    fg_aug_state u;
    fg_aug_init(&u, &c, cls, 256);
    fg_aug_restore(&u, saved, "meta");
    int same = 1;
    for (int i = 0; i < 200; i++) {
        uint64_t a = 0, b = 0;
        int pa = fg_aug_pick(&t, &a), pb = fg_aug_pick(&u, &b);
        same &= pa == pb && a == b;
    }
    FG_CHECK(same && fg_aug_threshold(&t) == thr && t.n_pool == 4, "restored pools pick the same stream");
    /* exits: a revisit below the threshold leaves at once; max_visits 2 bounds the rest */
    uint64_t first = s.pool[0].src;
    fg_aug_observe(&s, first, 1, 1.0f, 0);
    FG_CHECK(s.n_pool == 3, "an easy revisit leaves the pool (%d left)", s.n_pool);
    uint64_t second = s.pool[0].src;
    fg_aug_observe(&s, second, 1, 99.0f, 0);
    FG_CHECK(s.n_pool == 3, "a hard revisit stays once");
    fg_aug_observe(&s, second, 1, 99.0f, 0);
    FG_CHECK(s.n_pool == 2, "... and leaves at max_visits");
    fg_status st = fg_aug_restore(&t, "{\"rng\":[]}", "ck/meta");
    FG_CHECK(st == FG_ERR_FORMAT && strstr(fg_last_error(), "ck/meta"), "malformed state named: %s", fg_last_error());
    fg_free(saved);
    fg_aug_free(&s);
    fg_aug_free(&t);
    fg_aug_free(&u);
}

static void test_row_losses(void)
{
    /* uniform logits: ln V for every row; a peaked row below it; ignored targets skipped */
    enum { B = 2, T = 3, V = 5, Vp = 8 };
    float z[B * T * Vp];
    int32_t y[B * T] = {1, 2, 3, -1, 4, 4};
    for (int i = 0; i < B * T * Vp; i++)
        z[i] = i % Vp >= V ? 100.0f : 0.5f; /* padding columns must not count */
    z[(3 + 1) * Vp + 4] = 10.0f;            /* row 1, t 1: confident and right */
    float out[B];
    fg_aug_row_losses(z, y, B, T, V, Vp, out);
    double l_peak = log(exp(10.0) + 4.0 * exp(0.5)) - 10.0;
    FG_CHECK(fabs(out[0] - log(5.0)) < 1e-6, "uniform row: %.7f = ln 5", out[0]);
    FG_CHECK(fabs(out[1] - (l_peak + log(5.0)) / 2) < 1e-6, "row with an ignored target: %.7f", out[1]);
}

int main(void)
{
    FG_TEST_BEGIN("data_augment");
    byte_classes();
    test_classes();
    test_permutations();
    test_blank_and_apply();
    test_pool();
    test_row_losses();
    return fg_test_end();
}
