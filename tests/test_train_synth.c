/* test_train_synth.c: synthetic data (synth.h): the discriminator removes obviously fake
 * text and keeps real-like text, sampling is deterministic for a seed (and independent
 * of the thread count), the mix honours its ratio everywhere in the stream, and a run
 * with synth_path trains on the mixed tokens. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "frugal/shard.h"
#include "frugal/synth.h"
#include "frugal/train.h"
#include "harness.h"

static const char *tmp(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", fg_test_tmpdir(), name);
    return p[k];
}

/* English-like lines from a small grammar: what "real" text looks like here. */
static size_t real_like(fg_rng *r, char *buf, size_t cap)
{
    static const char *det[] = {"the", "a", "my", "our", "this"};
    static const char *noun[] = {"king", "queen", "horse", "friend", "city", "night", "sword", "letter"};
    static const char *verb[] = {"sees", "loves", "keeps", "sends", "finds", "hears", "takes"};
    size_t n = 0;
    for (int s = 0; s < 4; s++)
        n += (size_t)snprintf(buf + n, cap - n, "%s %s %s %s %s.\n", det[fg_rng_below(r, 5)], noun[fg_rng_below(r, 8)],
                              verb[fg_rng_below(r, 7)], det[fg_rng_below(r, 5)], noun[fg_rng_below(r, 8)]);
    return n;
}

/* What an untrained model writes: random letters and spaces. */
static size_t garbage(fg_rng *r, char *buf, size_t cap)
{
    size_t n = 100 + fg_rng_below(r, 40);
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = fg_rng_below(r, 5) == 0 ? ' ' : (char)('a' + fg_rng_below(r, 26));
    buf[n] = '\0';
    return n;
}

static void test_filter(void)
{
    enum { NR = 200, NS = 120, CAP = 400 };
    static char rb[NR][CAP], sb[NS][CAP];
    const char *real[NR], *syn[NS];
    size_t rl[NR], sl[NS];
    fg_rng r;
    fg_rng_seed(&r, 7);
    for (int i = 0; i < NR; i++) {
        rl[i] = real_like(&r, rb[i], CAP);
        real[i] = rb[i];
    }
    /* samples: even ones real-like (drawn apart from the real text), odd ones garbage */
    fg_rng_seed(&r, 99);
    for (int i = 0; i < NS; i++) {
        sl[i] = i % 2 ? garbage(&r, sb[i], CAP) : real_like(&r, sb[i], CAP);
        syn[i] = sb[i];
    }
    fg_synth_filter_config f;
    fg_synth_filter_config_default(&f);
    float p[NS];
    unsigned char keep[NS];
    fg_synth_filter_result res;
    fg_status st = fg_synth_filter(&f, real, rl, NR, syn, sl, NS, p, keep, &res);
    FG_CHECK(st == FG_OK, "filter: %s", fg_last_error());
    if (st != FG_OK)
        return;
    int kept_like = 0, kept_garbage = 0;
    for (int i = 0; i < NS; i++) {
        kept_like += i % 2 == 0 && keep[i];
        kept_garbage += i % 2 == 1 && keep[i];
        FG_CHECK(keep[i] == (p[i] >= f.threshold), "sample %d: kept %d with P(real) %.3f", i, keep[i], (double)p[i]);
    }
    /* the real-like half is the real distribution itself: the discriminator cannot
     * separate it and must keep nearly all; garbage it must drop */
    FG_CHECK(kept_like >= NS / 2 * 9 / 10, "real-like samples kept: %d of %d", kept_like, NS / 2);
    FG_CHECK(kept_garbage == 0, "garbage samples kept: %d of %d", kept_garbage, NS / 2);
    FG_CHECK(res.kept == (size_t)(kept_like + kept_garbage) && res.n == NS &&
                 fabs(res.kept_frac - (double)res.kept / NS) < 1e-12,
             "result counts: kept %zu of %zu, fraction %.4f", res.kept, res.n, res.kept_frac);
    FG_CHECK(res.real_pass_frac > 0.9, "held-out real text passes: %.3f", res.real_pass_frac);

    /* the same inputs and seed: the same scores, bit for bit */
    float p2[NS];
    fg_synth_filter_result res2;
    FG_CHECK(fg_synth_filter(&f, real, rl, NR, syn, sl, NS, p2, NULL, &res2) == FG_OK && !memcmp(p, p2, sizeof p),
             "filter deterministic");

    /* a threshold of 0 keeps all; too few items is refused with the counts */
    f.threshold = 0.0f;
    FG_CHECK(fg_synth_filter(&f, real, rl, NR, syn, sl, NS, NULL, keep, &res) == FG_OK && res.kept == NS,
             "threshold 0 keeps every sample: %zu", res.kept);
    f.threshold = 0.5f;
    FG_CHECK(fg_synth_filter(&f, real, rl, 1, syn, sl, NS, NULL, NULL, &res) == FG_ERR_INVALID &&
                 strstr(fg_last_error(), "1 real pieces"),
             "too little real text refused: %s", fg_last_error());
}

static void test_split(void)
{
    const char *text = "aaaa\nbbbbbbbb\ncc\ndddddd\ne";
    const char **pc = NULL;
    size_t *pl = NULL, n = 0;
    FG_CHECK(fg_synth_split_text(text, strlen(text), 4, &pc, &pl, &n) == FG_OK, "split: %s", fg_last_error());
    /* pieces end at the first line break at or after 4 bytes; the 1-byte tail is dropped */
    FG_CHECK(n == 3 && pl[0] == 5 && pl[1] == 9 && pl[2] == 10 && pc[1] == text + 5, "pieces %zu: %zu %zu %zu", n,
             n > 0 ? pl[0] : 0, n > 1 ? pl[1] : 0, n > 2 ? pl[2] : 0);
    fg_free(pc);
    fg_free(pl);
}

static void test_mix(void)
{
    enum { NREAL = 100000, NSYN = 7000 };
    static uint32_t real[NREAL], syn[NSYN];
    for (int i = 0; i < NREAL; i++)
        real[i] = (uint32_t)(i % 1000);
    for (int i = 0; i < NSYN; i++)
        syn[i] = 1000 + (uint32_t)i; /* ids >= 1000 are synthetic */
    const double ratios[] = {0.0, 0.05, 0.3, 0.5, 0.9};
    for (size_t k = 0; k < sizeof ratios / sizeof ratios[0]; k++) {
        double ratio = ratios[k];
        uint32_t *o = NULL, *o2 = NULL;
        size_t n = 0, ns = 0, n2 = 0, ns2 = 0;
        fg_status st = fg_synth_mix(real, NREAL, syn, NSYN, ratio, 5, 256, &o, &n, &ns);
        FG_CHECK(st == FG_OK, "mix %.2f: %s", ratio, fg_last_error());
        if (st != FG_OK)
            continue;
        size_t want = (size_t)llround(ratio / (1 - ratio) * NREAL);
        size_t count = 0, next_real = 0, in_order = 1;
        for (size_t i = 0; i < n; i++) {
            if (o[i] >= 1000)
                count++;
            else
                in_order &= o[i] == real[next_real++]; /* real tokens all there, in order */
        }
        FG_CHECK(ns == want && count == want && n == NREAL + want && next_real == NREAL && in_order,
                 "ratio %.2f: %zu synthetic of %zu (want %zu), real in order %zu", ratio, count, n, want, in_order);
        /* the share holds in every stretch of 8192 tokens, within a chunk's worth */
        double worst = 0;
        for (size_t a = 0; a + 8192 <= n; a += 8192) {
            size_t c = 0;
            for (size_t i = a; i < a + 8192; i++)
                c += o[i] >= 1000;
            worst = fmax(worst, fabs((double)c / 8192 - ratio));
        }
        FG_CHECK(worst <= 2.0 * 256 / 8192 + 1e-9, "ratio %.2f holds locally: worst deviation %.4f", ratio, worst);
        /* deterministic for a seed; another seed starts the synthetic text elsewhere */
        FG_CHECK(fg_synth_mix(real, NREAL, syn, NSYN, ratio, 5, 256, &o2, &n2, &ns2) == FG_OK && n2 == n &&
                     !memcmp(o, o2, n * sizeof *o),
                 "ratio %.2f: same seed, same mix", ratio);
        fg_free(o2);
        if (ratio > 0) {
            FG_CHECK(fg_synth_mix(real, NREAL, syn, NSYN, ratio, 6, 256, &o2, &n2, &ns2) == FG_OK && n2 == n &&
                         memcmp(o, o2, n * sizeof *o) != 0,
                     "ratio %.2f: another seed, another offset", ratio);
            fg_free(o2);
        }
        fg_free(o);
    }
    uint32_t *o = NULL;
    size_t n = 0, ns = 0;
    FG_CHECK(fg_synth_mix(real, NREAL, syn, NSYN, 1.0, 5, 256, &o, &n, &ns) == FG_ERR_INVALID, "ratio 1 refused");
    FG_CHECK(fg_synth_mix(real, NREAL, syn, 0, 0.5, 5, 256, &o, &n, &ns) == FG_ERR_INVALID,
             "no synthetic tokens at ratio 0.5 refused");
}

static void tiny_config(fg_train_config *c, const char *out)
{
    fg_train_config_default(c);
    snprintf(c->data, sizeof c->data, "%s", fg_test_grammar_corpus("grammar.txt"));
    snprintf(c->out, sizeof c->out, "%s", out);
    c->model.n_layer = 1;
    c->model.d_model = 32;
    c->model.n_head = 2;
    c->batch_size = 4;
    c->seq_len = 64;
    c->max_steps = 30;
    c->warmup_steps = 5;
    c->lr = 1e-2f;
    c->min_lr = 1e-3f;
    c->val_every = 0;
    c->val_batches = 2;
    c->threads = 2;
}

static uint64_t shard_tokens(const char *path)
{
    fg_shard s;
    if (fg_shard_open(&s, path) != FG_OK)
        return 0;
    uint64_t n = s.n_tokens;
    fg_shard_close(&s);
    return n;
}

static void test_generate_and_train(void)
{
    fg_train_config c;
    const char *run = tmp("run");
    tiny_config(&c, run);
    fg_status st = fg_train_run(&c, NULL, NULL);
    FG_CHECK(st == FG_OK, "train: %s", fg_last_error());
    if (st != FG_OK)
        return;
    fg_tokenizer *tok = fg_tok_load("byte");
    fg_synth_gen_config g;
    fg_synth_gen_config_default(&g);
    g.n_samples = 6;
    g.n_tokens = 40;
    g.seed = 3;
    char **t1 = NULL, **t2 = NULL, **t3 = NULL;
    size_t *l1 = NULL, *l2 = NULL, *l3 = NULL;
    g.threads = 1;
    st = fg_synth_generate(run, NULL, tok, &g, &t1, &l1);
    FG_CHECK(st == FG_OK, "generate: %s", fg_last_error());
    if (st != FG_OK) {
        fg_tok_delete(tok);
        return;
    }
    g.threads = 2;
    FG_CHECK(fg_synth_generate(run, NULL, tok, &g, &t2, &l2) == FG_OK, "generate 2 threads: %s", fg_last_error());
    g.seed = 4;
    FG_CHECK(fg_synth_generate(run, NULL, tok, &g, &t3, &l3) == FG_OK, "generate seed 4: %s", fg_last_error());
    int same = t1 && t2, differ = 0;
    for (int k = 0; same && t3 && k < g.n_samples; k++) {
        same &= l1[k] == l2[k] && !memcmp(t1[k], t2[k], l1[k]);
        differ |= l1[k] != l3[k] || memcmp(t1[k], t3[k], l1[k]) != 0;
        FG_CHECK(l1[k] > 0 && l1[k] <= 40 && strlen(t1[k]) == l1[k], "sample %d: %zu bytes", k, l1[k]);
    }
    FG_CHECK(same, "same seed: same samples on 1 and 2 threads");
    FG_CHECK(differ, "another seed: other samples");
    g.n_tokens = 64; /* the run's context is 64: at most 63 new tokens after the start one */
    char **t4 = NULL;
    size_t *l4 = NULL;
    FG_CHECK(fg_synth_generate(run, NULL, tok, &g, &t4, &l4) == FG_ERR_INVALID && strstr(fg_last_error(), "63"),
             "n_tokens beyond the context refused: %s", fg_last_error());

    /* a run with synth_path: its training shard is the mix, validation stays real */
    const char *syn_path = tmp("synth.txt");
    fg_test_write_file(syn_path, t1[0], l1[0]);
    const char *run2 = tmp("run_synth");
    tiny_config(&c, run2);
    c.max_steps = 2;
    snprintf(c.synth_path, sizeof c.synth_path, "%s", syn_path);
    c.synth_ratio = 0.25f;
    st = fg_train_run(&c, NULL, NULL);
    FG_CHECK(st == FG_OK, "train with synth: %s", fg_last_error());
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/data/train.bin", run);
    snprintf(p2, sizeof p2, "%s/data/train.bin", run2);
    uint64_t n_real = shard_tokens(p1), n_mixed = shard_tokens(p2);
    uint64_t want = n_real + (uint64_t)llround(0.25 / 0.75 * (double)n_real);
    FG_CHECK(n_real > 0 && n_mixed == want, "mixed train shard: %llu tokens, want %llu (real %llu)",
             (unsigned long long)n_mixed, (unsigned long long)want, (unsigned long long)n_real);
    snprintf(p1, sizeof p1, "%s/data/val.bin", run);
    snprintf(p2, sizeof p2, "%s/data/val.bin", run2);
    FG_CHECK(shard_tokens(p1) == shard_tokens(p2) && shard_tokens(p1) > 0, "validation text unchanged");
    /* the two keys go together, and with raw text */
    tiny_config(&c, tmp("run_bad"));
    c.synth_ratio = 0.25f;
    FG_CHECK(fg_train_config_validate(&c) == FG_ERR_INVALID && strstr(fg_last_error(), "synth_path"),
             "synth_ratio without synth_path refused: %s", fg_last_error());
    fg_synth_free_texts(t1, l1, (size_t)g.n_samples);
    fg_synth_free_texts(t2, l2, t2 ? (size_t)g.n_samples : 0);
    fg_synth_free_texts(t3, l3, t3 ? (size_t)g.n_samples : 0);
    fg_tok_delete(tok);
}

int main(void)
{
    FG_TEST_BEGIN("train_synth");
    test_split();
    test_filter();
    test_mix();
    test_generate_and_train();
    return fg_test_end();
}
