/* loader.c: cuts training windows of T+1 tokens out of memory-mapped shards, either
 * at random positions (drawn from a seeded RNG, so the order is reproducible and its
 * state is a few words to checkpoint) or consecutively. Leaves out shuffling of
 * documents: windows cross document boundaries, as in llm.c and nanoGPT. */
#include <string.h>

#include "frugal/train.h"

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

void fg_loader_next(fg_loader *l, int32_t *inputs, int32_t *targets)
{
    int T = l->T;
    for (int b = 0; b < l->B; b++) {
        uint64_t start = 0;
        const fg_shard *s = next_window(l, &start);
        copy_window(s, start, T, inputs + (size_t)b * T, targets + (size_t)b * T);
    }
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
    memset(l, 0, sizeof *l);
}
