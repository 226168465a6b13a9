/* augment.c: loss-driven augmentation: token classes from token text, the word-level
 * (dropout, word swaps, span masking) and syntax-level (sentence, clause reordering)
 * transforms on token windows, their schedule, and the pool of hard windows with the
 * loss threshold that fills it. Leaves out reading windows (the trainer's loader). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/data.h"

static int is_word_byte(uint8_t b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '\'' || b == '-' ||
           b >= 0x80; /* UTF-8 letters of other scripts count as word bytes */
}

uint8_t fg_aug_token_class(const uint8_t *t, size_t n)
{
    uint8_t c = 0;
    if (n == 0)
        return 0;
    if (memchr(t, '\n', n))
        c |= FG_AUG_NEWLINE;
    size_t i = 0;
    if (t[0] == ' ') {
        c |= FG_AUG_SPACE;
        while (i < n && t[i] == ' ')
            i++;
    }
    int word = 1;
    for (size_t k = i; k < n; k++)
        word &= is_word_byte(t[k]);
    if (word && !(c & FG_AUG_NEWLINE))
        c |= FG_AUG_WORD; /* a lone space too: it leads the next word in a byte vocabulary */
    size_t e = n;
    while (e > 0 && (t[e - 1] == ' ' || t[e - 1] == '\n'))
        e--;
    if (e > 0 && (t[e - 1] == '.' || t[e - 1] == '!' || t[e - 1] == '?'))
        c |= FG_AUG_SENT_END;
    if (e > 0 && (t[e - 1] == ',' || t[e - 1] == ';' || t[e - 1] == ':'))
        c |= FG_AUG_CLAUSE_END;
    return c;
}

float fg_aug_syntax_share(const fg_aug_config *c, float p)
{
    if (p <= c->syntax_start)
        return 0;
    if (p >= c->syntax_end)
        return 1;
    return (p - c->syntax_start) / (c->syntax_end - c->syntax_start);
}

/* ---- permutations ---- */

static void identity(const int32_t *w, int n, int32_t *out, int32_t *perm)
{
    for (int i = 0; i < n; i++) {
        out[i] = w[i];
        if (perm)
            perm[i] = i;
    }
}

/* Writes the units [s[k], s[k+1]) of w in the order ord[0..nu) from position s[0]. */
static void place_units(const int32_t *w, const int *s, const int *ord, int nu, int32_t *out, int32_t *perm)
{
    int pos = s[0];
    for (int k = 0; k < nu; k++)
        for (int i = s[ord[k]]; i < s[ord[k] + 1]; i++, pos++) {
            out[pos] = w[i];
            if (perm)
                perm[pos] = i;
        }
}

/* Words: a new one starts at a space-led token or around a line break. A plain word is
 * space-led and made of word tokens only; the window's first and last words may be cut
 * by the window and are never moved. cls is indexed by token id (every id of w in it). */
int fg_aug_word_swap(const uint8_t *cls, const int32_t *w, int n, float rate, fg_rng *rng, int32_t *out, int32_t *perm)
{
    identity(w, n, out, perm);
    int *st = malloc(((size_t)n + 1) * sizeof *st);
    if (!st)
        return 0;
    int nw = 0;
    for (int i = 0; i < n; i++) {
        uint8_t c = cls[w[i]], p = i > 0 ? cls[w[i - 1]] : 0;
        if (i == 0 || (c & (FG_AUG_SPACE | FG_AUG_NEWLINE)) || (p & FG_AUG_NEWLINE))
            st[nw++] = i;
    }
    st[nw] = n;
    int moved = 0;
    for (int k = 1; k + 2 < nw; k++) { /* words k, k+1, neither the first nor the last */
        int plain = 1;
        for (int i = st[k]; i < st[k + 2] && plain; i++)
            plain = (cls[w[i]] & FG_AUG_WORD) != 0;
        plain &= (cls[w[st[k]]] & FG_AUG_SPACE) && (cls[w[st[k + 1]]] & FG_AUG_SPACE);
        if (!plain || fg_rng_uniform(rng) >= rate)
            continue;
        int ord[2] = {1, 0};
        place_units(w, st + k, ord, 2, out, perm);
        moved += 2;
        k++; /* no word moves twice */
    }
    free(st);
    return moved;
}

/* Sentences end after a sentence-end token; the text before the window's first end and
 * after its last is cut by the window and stays where it is. */
static int sentence_starts(const uint8_t *cls, const int32_t *w, int n, int *s)
{
    int ns = 0;
    for (int i = 0; i + 1 < n; i++)
        if (cls[w[i]] & FG_AUG_SENT_END)
            s[ns++] = i + 1;
    return ns; /* s[0..ns): starts of units after each end; complete sentences: [s[k], s[k+1]) */
}

int fg_aug_reorder(const uint8_t *cls, const int32_t *w, int n, int clauses, fg_rng *rng, int32_t *out, int32_t *perm)
{
    identity(w, n, out, perm);
    int *s = malloc(((size_t)n + 1) * sizeof *s);
    int *ord = malloc(((size_t)n + 1) * sizeof *ord);
    int moved = 0;
    if (!s || !ord)
        goto out;
    int ns = sentence_starts(cls, w, n, s);
    if (!clauses) {
        int nu = ns - 1; /* complete sentences */
        if (nu < 2)
            goto out;
        for (int k = 0; k < nu; k++)
            ord[k] = k;
        for (int k = nu - 1; k > 0; k--) { /* Fisher-Yates */
            int j = (int)fg_rng_below(rng, (uint32_t)k + 1);
            int t = ord[k];
            ord[k] = ord[j];
            ord[j] = t;
        }
        int same = 1;
        for (int k = 0; k < nu; k++)
            same &= ord[k] == k;
        if (same) { /* a shuffle that moved nothing: exchange the first two */
            ord[0] = 1;
            ord[1] = 0;
        }
        place_units(w, s, ord, nu, out, perm);
        for (int k = 0; k < nu; k++)
            moved += ord[k] != k;
        goto out;
    }
    /* clauses: bodies between clause marks inside one complete sentence; the marks (the
     * comma, the full stop) stay in place and the bodies around one mark trade places */
    int n_pairs = 0;
    for (int pass = 0; pass < 2; pass++) {
        int pick = pass ? (int)fg_rng_below(rng, (uint32_t)n_pairs) : -1, seen = 0;
        for (int k = 0; k + 1 < ns; k++) {
            int a = s[k], end = s[k + 1] - 1; /* end: the sentence-end token */
            for (int i = a; i < end; i++) {
                if (!(cls[w[i]] & FG_AUG_CLAUSE_END) || i == a)
                    continue;
                int j = i + 1; /* the next clause's end: the next mark or the sentence end */
                while (j < end && !(cls[w[j]] & FG_AUG_CLAUSE_END))
                    j++;
                if (j == i + 1) { /* an empty second body */
                    a = i + 1;
                    continue;
                }
                if (seen++ == pick) {
                    /* units: body1 [a,i), mark i, body2 [i+1,j) -> body2, mark, body1 */
                    int u[4] = {a, i, i + 1, j}, o[3] = {2, 1, 0};
                    place_units(w, u, o, 3, out, perm);
                    moved = 2;
                    goto out;
                }
                a = i + 1;
            }
        }
        n_pairs = seen;
        if (n_pairs == 0)
            break;
    }
out:
    free(s);
    free(ord);
    return moved;
}

int fg_aug_blank(const int32_t *w, int n, float rate, int span, int32_t mask, fg_rng *rng, int32_t *out)
{
    if (span < 1)
        span = 1;
    int blanked = 0;
    float p_start = rate / (float)span;
    for (int i = 0; i < n; i++)
        out[i] = w[i];
    for (int i = 0; i < n; i++) {
        if (fg_rng_uniform(rng) >= p_start)
            continue;
        for (int k = 0; k < span && i < n; k++, i++) {
            blanked += out[i] != mask;
            out[i] = mask;
        }
        i--;
    }
    return blanked;
}

void fg_aug_unpermute(const int32_t *out, const int32_t *perm, int n, int32_t *orig)
{
    for (int i = 0; i < n; i++)
        orig[perm[i]] = out[i];
}

fg_aug_kind fg_aug_apply(const fg_aug_config *c, const uint8_t *cls, int n_cls, float progress, fg_rng *rng,
                         const int32_t *w, int T, int32_t *inputs, int32_t *targets)
{
    int n = T + 1;
    int32_t *buf = malloc((size_t)n * sizeof *buf);
    fg_aug_kind kind = FG_AUG_NONE;
    if (!buf)
        goto plain;
    /* the transforms index the class table by id: a window holding an id outside it (a
     * model vocabulary wider than the tokenizer's) is revisited as it is */
    for (int i = 0; i < n; i++)
        if (w[i] < 0 || w[i] >= n_cls)
            goto plain;
    int moved = 0;
    if (fg_rng_uniform(rng) < fg_aug_syntax_share(c, progress)) {
        int first_clauses = fg_rng_uniform(rng) < 0.5f;
        for (int t = 0; t < 2 && !moved; t++) {
            int cl = t ? !first_clauses : first_clauses;
            moved = fg_aug_reorder(cls, w, n, cl, rng, buf, NULL);
            kind = moved ? (cl ? FG_AUG_CLAUSES : FG_AUG_SENTENCES) : FG_AUG_NONE;
        }
        if (moved) {
            memcpy(inputs, buf, (size_t)T * sizeof *buf);
            memcpy(targets, buf + 1, (size_t)T * sizeof *buf);
            free(buf);
            return kind;
        }
    }
    /* word level (also when a window has no sentence or clause to move) */
    fg_aug_kind cand[3];
    int nc = 0;
    if (c->drop > 0)
        cand[nc++] = FG_AUG_DROP;
    if (c->swap > 0)
        cand[nc++] = FG_AUG_SWAP;
    if (c->mask > 0)
        cand[nc++] = FG_AUG_MASK;
    if (nc == 0)
        goto plain;
    kind = cand[fg_rng_below(rng, (uint32_t)nc)];
    if (kind == FG_AUG_SWAP) {
        moved = fg_aug_word_swap(cls, w, n, c->swap, rng, buf, NULL);
        if (!moved)
            goto plain;
        memcpy(inputs, buf, (size_t)T * sizeof *buf);
        memcpy(targets, buf + 1, (size_t)T * sizeof *buf);
    } else {
        moved = kind == FG_AUG_DROP ? fg_aug_blank(w, n, c->drop, 1, c->mask_token, rng, buf)
                                    : fg_aug_blank(w, n, c->mask, c->span, c->mask_token, rng, buf);
        if (!moved)
            goto plain;
        memcpy(inputs, buf, (size_t)T * sizeof *buf);
        memcpy(targets, w + 1, (size_t)T * sizeof *buf); /* the clean next tokens */
    }
    free(buf);
    return kind;
plain:
    free(buf);
    memcpy(inputs, w, (size_t)T * sizeof *w);
    memcpy(targets, w + 1, (size_t)T * sizeof *w);
    return FG_AUG_NONE;
}

void fg_aug_row_losses(const float *logits, const int32_t *targets, int B, int T, int V, int Vp, float *out)
{
    for (int b = 0; b < B; b++) {
        double sum = 0;
        int cnt = 0;
        for (int t = 0; t < T; t++) {
            int32_t y = targets[(size_t)b * T + t];
            if (y < 0 || y >= V)
                continue;
            const float *z = logits + ((size_t)b * T + t) * (size_t)Vp;
            int im = 0;
            for (int v = 1; v < V; v++)
                im = z[v] > z[im] ? v : im;
            float mx = z[im];
            double se = 1.0; /* the max's own term */
            for (int v = 0; v < V; v++)
                se += v == im ? 0.0 : exp((double)(z[v] - mx));
            sum += log(se) + mx - z[y];
            cnt++;
        }
        out[b] = cnt ? (float)(sum / cnt) : 0.0f;
    }
}

/* ---- the hard-window pool ---- */

fg_status fg_aug_init(fg_aug_state *s, const fg_aug_config *c, const uint8_t *cls, int n_cls)
{
    memset(s, 0, sizeof *s);
    s->c = *c;
    if (s->c.pool < 1)
        s->c.pool = 1;
    s->cls = fg_malloc((size_t)(n_cls > 0 ? n_cls : 1));
    s->pool = fg_calloc((size_t)s->c.pool, sizeof *s->pool);
    if (!s->cls || !s->pool) {
        fg_aug_free(s);
        return FG_ERR_NOMEM;
    }
    if (n_cls > 0)
        memcpy(s->cls, cls, (size_t)n_cls);
    s->n_cls = n_cls;
    fg_rng_seed(&s->rng, c->seed);
    return FG_OK;
}

void fg_aug_free(fg_aug_state *s)
{
    fg_free(s->cls);
    fg_free(s->pool);
    memset(s, 0, sizeof *s);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

float fg_aug_threshold(const fg_aug_state *s)
{
    if (s->ring_n < 32) /* a quantile of fewer is mostly noise */
        return INFINITY;
    float v[FG_AUG_RING];
    memcpy(v, s->ring, (size_t)s->ring_n * sizeof *v);
    qsort(v, (size_t)s->ring_n, sizeof *v, cmp_float);
    int k = (int)((1.0f - s->c.frac) * (float)s->ring_n);
    return v[k < 0 ? 0 : k >= s->ring_n ? s->ring_n - 1 : k];
}

int fg_aug_pick(fg_aug_state *s, uint64_t *src)
{
    float u = fg_rng_uniform(&s->rng); /* drawn always: the stream does not depend on the pool */
    if (u >= s->c.rate || s->n_pool == 0)
        return 0;
    *src = s->pool[fg_rng_below(&s->rng, (uint32_t)s->n_pool)].src;
    s->revisits++;
    return 1;
}

static int find(const fg_aug_state *s, uint64_t src)
{
    for (int i = 0; i < s->n_pool; i++)
        if (s->pool[i].src == src)
            return i;
    return -1;
}

static void drop_entry(fg_aug_state *s, int i)
{
    s->pool[i] = s->pool[--s->n_pool];
}

void fg_aug_observe(fg_aug_state *s, uint64_t src, int revisited, float loss, float level)
{
    if (level > 0)
        loss /= level; /* hardness against the rows read with it, not against older ones */
    if (!isfinite(loss))
        return;
    float thr = fg_aug_threshold(s);
    int i = find(s, src);
    if (revisited) {
        if (i < 0)
            return; /* left the pool meanwhile (picked twice in one step) */
        s->pool[i].loss = loss;
        if (++s->pool[i].visits >= s->c.max_visits || loss < thr)
            drop_entry(s, i);
        return;
    }
    s->ring[s->ring_head] = loss;
    s->ring_head = (s->ring_head + 1) % FG_AUG_RING;
    if (s->ring_n < FG_AUG_RING)
        s->ring_n++;
    if (!(loss >= thr))
        return;
    if (i >= 0) {
        s->pool[i].loss = loss;
        return;
    }
    if (s->n_pool < s->c.pool) {
        s->pool[s->n_pool++] = (fg_aug_entry){src, loss, 0};
        return;
    }
    int lo = 0; /* full: the new one replaces the easiest, if harder */
    for (int k = 1; k < s->n_pool; k++)
        if (s->pool[k].loss < s->pool[lo].loss)
            lo = k;
    if (loss > s->pool[lo].loss)
        s->pool[lo] = (fg_aug_entry){src, loss, 0};
}

/* ---- state ---- */

static json_t *hex64(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%016llx", (unsigned long long)v);
    return json_string(b);
}

static uint64_t unhex64(json_t *v)
{
    const char *s = json_string_value(v);
    return s ? strtoull(s, NULL, 16) : 0;
}

char *fg_aug_save(const fg_aug_state *s)
{
    json_t *o = json_object(), *rng = json_array(), *ring = json_array(), *pool = json_array(), *kinds = json_array();
    for (int i = 0; i < 4; i++)
        json_array_append_new(rng, hex64(s->rng.s[i]));
    for (int i = 0; i < s->ring_n; i++)
        json_array_append_new(ring, json_real(s->ring[i])); /* a float as a double: exact */
    for (int i = 0; i < s->n_pool; i++) {
        json_t *e = json_array();
        json_array_append_new(e, hex64(s->pool[i].src));
        json_array_append_new(e, json_real(s->pool[i].loss));
        json_array_append_new(e, json_integer(s->pool[i].visits));
        json_array_append_new(pool, e);
    }
    for (int k = 0; k < FG_AUG_KINDS; k++)
        json_array_append_new(kinds, json_integer((json_int_t)s->by_kind[k]));
    json_object_set_new(o, "rng", rng);
    json_object_set_new(o, "ring", ring);
    json_object_set_new(o, "ring_head", json_integer(s->ring_head));
    json_object_set_new(o, "pool", pool);
    json_object_set_new(o, "revisits", json_integer((json_int_t)s->revisits));
    json_object_set_new(o, "by_kind", kinds);
    char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    char *out = t ? fg_strdup(t) : NULL;
    free(t);
    return out;
}

fg_status fg_aug_restore(fg_aug_state *s, const char *json_text, const char *where)
{
    json_error_t err;
    json_t *o = json_loads(json_text, 0, &err);
    json_t *rng = o ? json_object_get(o, "rng") : NULL, *ring = o ? json_object_get(o, "ring") : NULL;
    json_t *pool = o ? json_object_get(o, "pool") : NULL, *kinds = o ? json_object_get(o, "by_kind") : NULL;
    fg_status st = FG_OK;
    if (!o || !json_is_array(rng) || json_array_size(rng) != 4 || !json_is_array(ring) ||
        json_array_size(ring) > FG_AUG_RING || !json_is_array(pool) || json_array_size(pool) > (size_t)s->c.pool) {
        st = fg_error(FG_ERR_FORMAT, "%s: augmentation state: missing or malformed (rng, ring, pool of at most %d)",
                      where, s->c.pool);
        goto out;
    }
    for (int i = 0; i < 4; i++)
        s->rng.s[i] = unhex64(json_array_get(rng, (size_t)i));
    s->ring_n = (int)json_array_size(ring);
    for (int i = 0; i < s->ring_n; i++)
        s->ring[i] = (float)json_number_value(json_array_get(ring, (size_t)i));
    s->ring_head = (int)json_integer_value(json_object_get(o, "ring_head"));
    if (s->ring_head < 0 || s->ring_head >= FG_AUG_RING)
        s->ring_head = 0;
    s->n_pool = (int)json_array_size(pool);
    for (int i = 0; i < s->n_pool; i++) {
        json_t *e = json_array_get(pool, (size_t)i);
        s->pool[i].src = unhex64(json_array_get(e, 0));
        s->pool[i].loss = (float)json_number_value(json_array_get(e, 1));
        s->pool[i].visits = (int)json_integer_value(json_array_get(e, 2));
    }
    s->revisits = (uint64_t)json_integer_value(json_object_get(o, "revisits"));
    for (int k = 0; k < FG_AUG_KINDS; k++)
        s->by_kind[k] = (uint64_t)json_integer_value(json_array_get(kinds, (size_t)k));
out:
    json_decref(o);
    return st;
}
