/* loader.c: cuts training windows of T+1 tokens out of memory-mapped shards, either
 * at random positions (drawn from a seeded RNG, so the order is reproducible and its
 * state is a few words to checkpoint) or consecutively. Leaves out shuffling of
 * documents: windows cross document boundaries, as in llm.c and nanoGPT. */
#include <string.h>

#include "frugal/data.h"
#include "frugal/train.h"

/* A window's source for the hard pool: shard index above bit 40, start below. */
#define SRC_SHIFT 40

uint64_t fg_loader_tokens(const fg_loader *l)
{
    uint64_t n = 0;
    for (int i = 0; i < l->n_shards; i++)
        n += l->shards[i].n_tokens;
    return n;
}

fg_status fg_loader_open(fg_loader *l, const char *paths_csv, int B, int T, int sequential, uint64_t seed,
                         uint32_t vocab_limit)
{
    memset(l, 0, sizeof *l);
    fg_status st = FG_OK;
    int n = 1;
    for (const char *p = paths_csv; *p; p++)
        n += *p == ',';
    char *list = fg_strdup(paths_csv);
    l->shards = fg_calloc((size_t)n, sizeof *l->shards);
    if (!list || !l->shards) {
        st = FG_ERR_NOMEM;
        goto fail;
    }
    char *save = NULL;
    for (char *path = strtok_r(list, ",", &save); path; path = strtok_r(NULL, ",", &save)) {
        fg_shard *s = &l->shards[l->n_shards];
        st = fg_shard_open(s, path);
        if (st != FG_OK)
            goto fail;
        l->n_shards++;
        if (s->n_tokens < (uint64_t)T + 1) {
            st = fg_error(FG_ERR_FORMAT, "%s: %llu tokens, fewer than seq_len + 1 = %d", path,
                          (unsigned long long)s->n_tokens, T + 1);
            goto fail;
        }
        if (s->vocab_size > vocab_limit) {
            st = fg_error(FG_ERR_INVALID, "%s: shard vocab_size %u exceeds the model's vocab_size %u", path,
                          s->vocab_size, vocab_limit);
            goto fail;
        }
        l->n_windows += s->n_tokens - (uint64_t)T;
    }
    if (l->n_shards == 0) {
        st = fg_error(FG_ERR_INVALID, "no shard path in '%s'", paths_csv);
        goto fail;
    }
    l->B = B;
    l->T = T;
    l->sequential = sequential;
    fg_rng_seed(&l->rng, seed);
    fg_free(list);
    return FG_OK;
fail:
    fg_free(list);
    fg_loader_close(l);
    return st;
}

static void copy_window(const fg_shard *s, uint64_t start, int T, int32_t *inp, int32_t *tgt)
{
    for (int t = 0; t < T; t++) {
        inp[t] = (int32_t)fg_shard_token(s, start + (uint64_t)t);
        tgt[t] = (int32_t)fg_shard_token(s, start + (uint64_t)t + 1);
    }
}

/* The next window's shard and start; the one place that moves the loader's state, so
 * skipping windows (another data-parallel rank's share) moves it exactly as reading. */
static const fg_shard *next_window(fg_loader *l, uint64_t *start)
{
    int T = l->T;
    if (l->sequential) {
        const fg_shard *s = &l->shards[l->shard];
        if (l->pos + (uint64_t)T + 1 > s->n_tokens) {
            l->shard = (l->shard + 1) % l->n_shards;
            l->pos = 0;
            s = &l->shards[l->shard];
        }
        *start = l->pos;
        l->pos += (uint64_t)T;
        return s;
    }
    /* a uniform start over all windows of all shards; the modulo bias of a
     * 64-bit draw over < 2^40 windows is below 2^-24 */
    uint64_t w = fg_rng_next(&l->rng) % l->n_windows;
    int i = 0;
    while (w >= l->shards[i].n_tokens - (uint64_t)T) {
        w -= l->shards[i].n_tokens - (uint64_t)T;
        i++;
    }
    *start = w;
    return &l->shards[i];
}

/* A hard window read again and transformed (augmentation on). */
static void revisit(fg_loader *l, uint64_t src, int32_t *inp, int32_t *tgt)
{
    const fg_shard *s = &l->shards[src >> SRC_SHIFT];
    uint64_t start = src & ((1ull << SRC_SHIFT) - 1);
    for (int t = 0; t <= l->T; t++)
        l->aug_win[t] = (int32_t)fg_shard_token(s, start + (uint64_t)t);
    fg_aug_state *a = l->aug;
    fg_aug_kind k = fg_aug_apply(&a->c, a->cls, a->n_cls, l->aug_progress, &a->rng, l->aug_win, l->T, inp, tgt);
    a->by_kind[k]++;
}

void fg_loader_next(fg_loader *l, int32_t *inputs, int32_t *targets)
{
    int T = l->T;
    for (int b = 0; b < l->B; b++) {
        uint64_t start = 0, src = 0;
        int32_t *inp = inputs + (size_t)b * T, *tgt = targets + (size_t)b * T;
        int rev = l->aug && fg_aug_pick(l->aug, &src);
        if (rev) {
            revisit(l, src, inp, tgt);
        } else {
            const fg_shard *s = next_window(l, &start);
            copy_window(s, start, T, inp, tgt);
            src = ((uint64_t)(s - l->shards) << SRC_SHIFT) | start;
        }
        if (l->aug && l->n_rows < l->row_cap) {
            l->row_src[l->n_rows] = src;
            l->row_rev[l->n_rows++] = (uint8_t)rev;
        }
    }
}

fg_status fg_loader_aug_enable(fg_loader *l, const fg_aug_config *cfg, const uint8_t *cls, int n_cls, int max_rows)
{
    l->aug = fg_calloc(1, sizeof *l->aug);
    l->row_src = fg_malloc((size_t)max_rows * sizeof *l->row_src);
    l->row_rev = fg_malloc((size_t)max_rows);
    l->aug_win = fg_malloc(((size_t)l->T + 1) * sizeof *l->aug_win);
    fg_status st =
        l->aug && l->row_src && l->row_rev && l->aug_win ? fg_aug_init(l->aug, cfg, cls, n_cls) : FG_ERR_NOMEM;
    if (st != FG_OK) {
        fg_free(l->aug);
        l->aug = NULL;
        return st;
    }
    l->row_cap = max_rows;
    return FG_OK;
}

void fg_loader_aug_begin(fg_loader *l, float progress)
{
    l->n_rows = 0;
    l->aug_progress = progress;
}

void fg_loader_aug_report(fg_loader *l, int row0, const float *losses, int n)
{
    double level = 0;
    for (int i = 0; i < n; i++)
        level += losses[i];
    level = n > 0 ? level / n : 0;
    for (int i = 0; l->aug && i < n && row0 + i < l->n_rows; i++)
        fg_aug_observe(l->aug, l->row_src[row0 + i], l->row_rev[row0 + i], losses[i], (float)level);
}

void fg_loader_skip(fg_loader *l, uint64_t n_windows)
{
    for (uint64_t k = 0; k < n_windows; k++) {
        uint64_t start = 0;
        next_window(l, &start);
    }
}

void fg_loader_rewind(fg_loader *l)
{
    l->shard = 0;
    l->pos = 0;
}

void fg_loader_close(fg_loader *l)
{
    for (int i = 0; i < l->n_shards; i++)
        fg_shard_close(&l->shards[i]);
    fg_free(l->shards);
    if (l->aug)
        fg_aug_free(l->aug);
    fg_free(l->aug);
    fg_free(l->row_src);
    fg_free(l->row_rev);
    fg_free(l->aug_win);
    memset(l, 0, sizeof *l);
}
