/* generate.c: autoregressive decoding with a KV cache (one token at a time through
 * every layer, keys/values of earlier positions kept per layer) and the sampler
 * (temperature, top-k, top-p, greedy at temperature 0). The cache and the one-token
 * scratch are one allocation made at first use, apart from the training activations.
 * Leaves out: batched decoding, cache reuse across calls with a shared prefix.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "model_impl.h"

void model_kv_free(fg_model *m)
{
    if (!m->kv)
        return;
    fg_free(m->kv->mem);
    fg_free(m->kv->pre);
    fg_free(m->kv);
    m->kv = NULL;
}

static fg_status kv_alloc(fg_model *m)
{
    if (m->kv)
        return FG_OK;
    const fg_model_config *c = &m->cfg;
    size_t C = (size_t)c->d_model, maxT = (size_t)c->max_seq_len, L = (size_t)c->n_layer;
    size_t V = (size_t)c->vocab_size, Vp = (size_t)c->padded_vocab;
    model_kv *kv = fg_calloc(1, sizeof *kv);
    if (!kv)
        return FG_ERR_NOMEM;
    size_t kvn = m->mla ? 0 : L * maxT * C; /* MLA keeps its compressed cache itself (mla.c) */
    size_t sizes[] = {kvn, kvn, C, C, C, 1, 1, 3 * C, C, maxT, (size_t)m->Fin, (size_t)m->F, Vp, V, 2 * V};
    float **ptrs[] = {&kv->k,       &kv->v,           &kv->x,      &kv->ln,    &kv->tmp,
                      &kv->mean,    &kv->rstd,        &kv->qkv,    &kv->att,   &kv->scores,
                      &kv->ffn.fch, &kv->ffn.fch_act, &kv->logits, &kv->probs, (float **)&kv->cand};
    size_t n = sizeof sizes / sizeof sizes[0], total = 0;
    for (size_t i = 0; i < n; i++)
        total += (sizes[i] + 15) / 16 * 16;
    kv->mem = fg_calloc(total, sizeof(float)); /* cand[] (float + int32 pairs) takes 2 V slots */
    if (!kv->mem) {
        fg_free(kv);
        return FG_ERR_NOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        *ptrs[i] = kv->mem + off;
        off += (sizes[i] + 15) / 16 * 16;
    }
    m->kv = kv;
    return FG_OK;
}

fg_status fg_model_decode_step(fg_model *m, int32_t token, int pos, const float **logits)
{
    const fg_model_config *c = &m->cfg;
    if (token < 0 || token >= c->vocab_size)
        return fg_error(FG_ERR_INVALID, "fg_model_decode_step: token %d is outside the vocabulary [0, %d)", token,
                        c->vocab_size);
    if (pos < 0 || pos >= c->max_seq_len)
        return fg_error(FG_ERR_INVALID, "fg_model_decode_step: position %d is outside [0, max_seq_len = %d)", pos,
                        c->max_seq_len);
    fg_status st = kv_alloc(m);
    if (st != FG_OK)
        return st;
    if (pos == 0)
        model_share_refresh(m); /* FFN sharing: weights may have changed since the last sequence */
    model_kv *kv = m->kv;
    int C = c->d_model, NH = c->n_head, HS = m->HS;
    size_t stride_l = (size_t)c->max_seq_len * C;
    float scale = 1.0f / sqrtf((float)HS);

    /* x = wte[token] (+ wpe[pos]) */
    if (m->wpe != FG_NO_TENSOR)
        fg_add(kv->x, m->params + m->wte + (size_t)token * C, m->params + m->wpe + (size_t)pos * C, C);
    else
        memcpy(kv->x, m->params + m->wte + (size_t)token * C, (size_t)C * sizeof(float));
    for (int l = 0; l < c->n_layer; l++) {
        const model_layer_off *o = &m->layer[l];
        float *kc = kv->k + l * stride_l, *vc = kv->v + l * stride_l;
        model_norm_forward(m, kv->ln, kv->mean, kv->rstd, kv->x, model_p(m, o->ln1w), model_p(m, o->ln1b), 1);
        if (m->mla) {
            st = model_mla_decode(m, l, kv->att, kv->ln, pos);
            if (st != FG_OK)
                return st;
            goto attproj;
        }
        model_linear_forward(m, kv->qkv, kv->ln, model_p(m, o->qkvw), model_p(m, o->qkvb), 1, C, 3 * C);
        if (c->layout == FG_LAYOUT_LLAMA) {
            fg_rope_forward(kv->qkv, 1, 1, NH, HS, 3 * C, pos, c->rope_theta);
            fg_rope_forward(kv->qkv + C, 1, 1, NH, HS, 3 * C, pos, c->rope_theta);
        }
        memcpy(kc + (size_t)pos * C, kv->qkv + C, (size_t)C * sizeof(float));
        memcpy(vc + (size_t)pos * C, kv->qkv + 2 * C, (size_t)C * sizeof(float));
        for (int h = 0; h < NH; h++) {
            /* scores[t] = q_h . k_h[t] / sqrt(HS), t <= pos (causal: only the past is cached) */
            fg_sgemm(0, 1, 1, pos + 1, HS, scale, kv->qkv + h * HS, HS, kc + h * HS, C, 0.0f, kv->scores, pos + 1);
            float mx = kv->scores[0];
            for (int t = 1; t <= pos; t++)
                mx = fmaxf(mx, kv->scores[t]);
            double sum = 0.0; /* max subtracted so exp never overflows */
            for (int t = 0; t <= pos; t++) {
                kv->scores[t] = expf(kv->scores[t] - mx);
                sum += kv->scores[t];
            }
            float inv = (float)(1.0 / sum);
            for (int t = 0; t <= pos; t++)
                kv->scores[t] *= inv;
            /* att_h = probs @ v_h */
            fg_sgemm(0, 0, 1, HS, pos + 1, 1.0f, kv->scores, pos + 1, vc + h * HS, C, 0.0f, kv->att + h * HS, HS);
        }
    attproj:
        model_linear_forward(m, kv->tmp, kv->att, model_p(m, o->attprojw), model_p(m, o->attprojb), 1, C, C);
        fg_add(kv->x, kv->x, kv->tmp, C);
        model_norm_forward(m, kv->ln, kv->mean, kv->rstd, kv->x, model_p(m, o->ln2w), model_p(m, o->ln2b), 1);
        model_ffn_forward(m, l, kv->tmp, kv->ln, 1, &kv->ffn);
        fg_add(kv->x, kv->x, kv->tmp, C);
    }
    model_norm_forward(m, kv->ln, kv->mean, kv->rstd, kv->x, model_p(m, m->lnfw), model_p(m, m->lnfb), 1);
    model_linear_forward(m, kv->logits, kv->ln, m->params + m->head, NULL, 1, C, c->padded_vocab);
    if (logits)
        *logits = kv->logits;
    return FG_OK;
}

/* Descending probability, then ascending id: a total order, so the result does not
 * depend on the qsort implementation. */
static int cmp_desc(const void *a, const void *b)
{
    const model_prob_id *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Picks the next token from logits[0..V) with s's settings. */
static int32_t sample(model_kv *kv, const float *logits, int V, fg_sampler *s)
{
    if (s->temperature <= 0.0f) { /* greedy; lowest id on ties */
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    float *p = kv->probs;
    float mx = logits[0];
    for (int i = 1; i < V; i++)
        mx = fmaxf(mx, logits[i]);
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        p[i] = expf((logits[i] - mx) / s->temperature);
        sum += p[i];
    }
    for (int i = 0; i < V; i++)
        p[i] = (float)(p[i] / sum);
    int n = V;
    model_prob_id *cd = kv->cand;
    if ((s->top_k > 0 && s->top_k < V) || (s->top_p > 0.0f && s->top_p < 1.0f)) {
        for (int i = 0; i < V; i++)
            cd[i] = (model_prob_id){p[i], i};
        qsort(cd, (size_t)V, sizeof *cd, cmp_desc);
        if (s->top_k > 0 && s->top_k < n)
            n = s->top_k;
        if (s->top_p > 0.0f && s->top_p < 1.0f) {
            /* smallest prefix whose mass reaches top_p (always at least one token) */
            double cum = 0.0;
            int k = 0;
            while (k < n) {
                cum += cd[k++].p;
                if (cum >= s->top_p)
                    break;
            }
            n = k;
        }
        double mass = 0.0;
        for (int k = 0; k < n; k++)
            mass += cd[k].p;
        double r = (double)fg_rng_uniform(&s->rng) * mass;
        for (int k = 0; k < n; k++) {
            r -= cd[k].p;
            if (r < 0.0)
                return cd[k].id;
        }
        return cd[n - 1].id;
    }
    double r = (double)fg_rng_uniform(&s->rng);
    for (int i = 0; i < V; i++) {
        r -= p[i];
        if (r < 0.0)
            return i;
    }
    return V - 1; /* rounding left a sliver of mass */
}

static fg_status prefill_alloc(fg_model *m)
{
    model_kv *kv = m->kv;
    if (kv->pre)
        return FG_OK;
    const fg_model_config *c = &m->cfg;
    size_t T = (size_t)c->max_seq_len, C = (size_t)c->d_model, NH = (size_t)c->n_head;
    size_t sizes[] = {T * C, T * C, T * C, T * C, T * 3 * C, NH * T, T, T, T * (size_t)m->Fin, T * (size_t)m->F};
    float **ptrs[] = {&kv->px,   &kv->pln,   &kv->ptmp,  &kv->patt,     &kv->pqkv,
                      &kv->plse, &kv->pmean, &kv->prstd, &kv->pffn.fch, &kv->pffn.fch_act};
    size_t n = sizeof sizes / sizeof sizes[0], total = 0;
    for (size_t i = 0; i < n; i++)
        total += (sizes[i] + 15) / 16 * 16;
    kv->pre = fg_calloc(total, sizeof(float));
    if (!kv->pre)
        return FG_ERR_NOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        *ptrs[i] = kv->pre + off;
        off += (sizes[i] + 15) / 16 * 16;
    }
    return FG_OK;
}

static int has_moe_layer(const fg_model *m)
{
    for (int l = 0; l < m->cfg.n_layer; l++)
        if (model_is_moe_layer(m, l))
            return 1;
    return 0;
}

/* Feeds prompt[0..n) (n <= maxT) as one causal batch: every layer runs once over the n
 * rows (GEMMs instead of n one-row passes), k and v of every position go to the cache,
 * and *logits gets the last position's next-token logits. Same result as n decode
 * steps, up to summation order. */
static fg_status prefill(fg_model *m, const int32_t *prompt, int n, const float **logits)
{
    fg_status st = kv_alloc(m);
    if (st == FG_OK)
        st = prefill_alloc(m);
    if (st != FG_OK)
        return st;
    model_share_refresh(m); /* FFN sharing: weights may have changed since the last sequence */
    model_kv *kv = m->kv;
    const fg_model_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head;
    size_t stride_l = (size_t)c->max_seq_len * C, nC = (size_t)n * C;
    for (int i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return fg_error(FG_ERR_INVALID, "fg_model_generate: prompt[%d] = %d is outside the vocabulary [0, %d)", i,
                            prompt[i], c->vocab_size);
    fg_embedding_forward(kv->px, prompt, m->params + m->wte, model_p(m, m->wpe), n, n, C); /* positions 0..n-1 */
    for (int l = 0; l < c->n_layer; l++) {
        const model_layer_off *o = &m->layer[l];
        /* int8 weights: the fused layers of int8.c (norm and codes in one pass, the
         * dequantization and residual add in the GEMM's store); the same values */
        if (!model_int8_norm_linear(m, kv->pqkv, kv->px, model_p(m, o->ln1w), model_p(m, o->qkvw), model_p(m, o->qkvb),
                                    n, C, 3 * C)) {
            model_norm_forward(m, kv->pln, kv->pmean, kv->prstd, kv->px, model_p(m, o->ln1w), model_p(m, o->ln1b), n);
            model_linear_forward(m, kv->pqkv, kv->pln, model_p(m, o->qkvw), model_p(m, o->qkvb), n, C, 3 * C);
        }
        if (c->layout == FG_LAYOUT_LLAMA) {
            fg_rope_forward(kv->pqkv, 1, n, NH, m->HS, 3 * C, 0, c->rope_theta);
            fg_rope_forward(kv->pqkv + C, 1, n, NH, m->HS, 3 * C, 0, c->rope_theta);
        }
        for (int t = 0; t < n; t++) {
            memcpy(kv->k + l * stride_l + (size_t)t * C, kv->pqkv + (size_t)t * 3 * C + C, (size_t)C * sizeof(float));
            memcpy(kv->v + l * stride_l + (size_t)t * C, kv->pqkv + (size_t)t * 3 * C + 2 * C,
                   (size_t)C * sizeof(float));
        }
        fg_attention_forward(kv->patt, kv->plse, kv->pqkv, 1, n, C, NH);
        if (!model_int8_linear_add(m, kv->px, kv->patt, model_p(m, o->attprojw), model_p(m, o->attprojb), n, C, C)) {
            model_linear_forward(m, kv->ptmp, kv->patt, model_p(m, o->attprojw), model_p(m, o->attprojb), n, C, C);
            fg_add(kv->px, kv->px, kv->ptmp, nC);
        }
        if (!model_int8_ffn_add(m, l, kv->px, kv->pffn.fch, n)) {
            model_norm_forward(m, kv->pln, kv->pmean, kv->prstd, kv->px, model_p(m, o->ln2w), model_p(m, o->ln2b), n);
            model_ffn_forward(m, l, kv->ptmp, kv->pln, n, &kv->pffn);
            fg_add(kv->px, kv->px, kv->ptmp, nC);
        }
    }
    /* only the last position's logits are needed */
    const float *last = kv->px + (size_t)(n - 1) * C;
    model_norm_forward(m, kv->ln, kv->mean, kv->rstd, last, model_p(m, m->lnfw), model_p(m, m->lnfb), 1);
    model_linear_forward(m, kv->logits, kv->ln, m->params + m->head, NULL, 1, C, c->padded_vocab);
    *logits = kv->logits;
    return FG_OK;
}

int fg_model_generate(fg_model *m, const int32_t *prompt, int n_prompt, int n_new, int stop, fg_sampler *s,
                      int32_t *out)
{
    const fg_model_config *c = &m->cfg;
    if (n_prompt < 1 || n_prompt > c->max_seq_len)
        return fg_error(FG_ERR_INVALID, "fg_model_generate: prompt length %d must be in [1, max_seq_len = %d]",
                        n_prompt, c->max_seq_len);
    if (n_new < 0)
        return fg_error(FG_ERR_INVALID, "fg_model_generate: n_new = %d must be >= 0", n_new);
    if (!s || !(s->temperature >= 0.0f) || s->top_k < 0 || !(s->top_p >= 0.0f))
        return fg_error(FG_ERR_INVALID, "fg_model_generate: bad sampler (temperature %g, top_k %d, top_p %g)",
                        s ? (double)s->temperature : 0.0, s ? s->top_k : 0, s ? (double)s->top_p : 0.0);
    const float *logits = NULL;
    memcpy(out, prompt, (size_t)n_prompt * sizeof(int32_t));
    if (n_prompt > 1 && !has_moe_layer(m) && !m->mla) {
        /* MoE layers keep their caches in the training state, sized for B*T rows:
         * their prompts go one token at a time; so do MLA's (its cache is mla.c's) */
        fg_status st = prefill(m, prompt, n_prompt, &logits);
        if (st != FG_OK)
            return st;
    } else {
        for (int i = 0; i < n_prompt; i++) {
            fg_status st = fg_model_decode_step(m, prompt[i], i, &logits);
            if (st != FG_OK)
                return st;
        }
    }
    int n = n_prompt;
    for (int k = 0; k < n_new && n < c->max_seq_len; k++) {
        int32_t tok = sample(m->kv, logits, c->vocab_size, s);
        out[n++] = tok;
        if (tok == stop || n >= c->max_seq_len || k + 1 == n_new)
            break;
        fg_status st = fg_model_decode_step(m, tok, n - 1, &logits);
        if (st != FG_OK)
            return st;
    }
    return n;
}
