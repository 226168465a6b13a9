/* moe.c: the MoE FFN block: sigmoid router with biased top-K selection, counting sort
 * of (token, expert) pairs, one GEMM pair per expert, deterministic weighted combine,
 * aux balance losses, capacity dropping, their backward, and the bias-history rule.
 * Expert parallelism (the rows sent to the experts' ranks) is moe_ep.c's. */
#include "frugal/moe.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "frugal/kernels.h"
#include "moe_impl.h"

/* ---- configuration ---- */

/* Node-limited routing marks the allowed experts on the stack: the option table's bound. */
#define ROUTE_MAX_E 4096
/* Per-token passes (routing, gather, combine, their backward) thread from this many
 * elements on: src/kernels' FG_PAR_MIN_ELEMS (a passive fork/join costs ~0.1 ms of
 * CPU; docs/perf/kernels.md, section 7). Routing costs several ops per logit: 1/8. */
#define MOE_PAR_ELEMS ((size_t)1 << 19)

fg_status fg_moe_config_validate(const fg_moe_config *mc)
{
    if (mc->d_model <= 0)
        return fg_error(FG_ERR_INVALID, "moe: d_model = %d: must be positive", mc->d_model);
    if (mc->n_expert <= 0)
        return fg_error(FG_ERR_INVALID, "moe: n_expert = %d: a MoE layer needs at least one routed expert",
                        mc->n_expert);
    if (mc->n_expert_active < 1)
        return fg_error(FG_ERR_INVALID, "moe: n_expert_active = %d: each token must be routed to at least one expert",
                        mc->n_expert_active);
    if (mc->n_expert_active > FG_MOE_MAX_K)
        return fg_error(FG_ERR_INVALID, "moe: n_expert_active = %d: at most FG_MOE_MAX_K = %d supported",
                        mc->n_expert_active, FG_MOE_MAX_K);
    if (mc->n_expert_active > mc->n_expert)
        return fg_error(FG_ERR_INVALID,
                        "moe: n_expert_active = %d > n_expert = %d: top-K cannot choose more experts than exist",
                        mc->n_expert_active, mc->n_expert);
    if (mc->n_shared_expert < 0)
        return fg_error(FG_ERR_INVALID, "moe: n_shared_expert = %d: must be >= 0", mc->n_shared_expert);
    if (mc->d_expert <= 0)
        return fg_error(FG_ERR_INVALID, "moe: d_expert = %d: the expert hidden size must be positive", mc->d_expert);
    if (!(mc->route_scale > 0.0f) || !isfinite(mc->route_scale))
        return fg_error(FG_ERR_INVALID, "moe: route_scale = %g: must be a positive finite number",
                        (double)mc->route_scale);
    if ((int)mc->balance < FG_BALANCE_BIAS || (int)mc->balance > FG_BALANCE_SWITCH)
        return fg_error(FG_ERR_INVALID, "moe: balance = %d: must be 0 (bias), 1 (none), 2 (seqaux) or 3 (switch)",
                        (int)mc->balance);
    if (!(mc->balance_gamma >= 0.0f) || !isfinite(mc->balance_gamma))
        return fg_error(FG_ERR_INVALID, "moe: balance_gamma = %g: must be >= 0", (double)mc->balance_gamma);
    if (!(mc->router_logit_scale > 0.0f) || !isfinite(mc->router_logit_scale))
        return fg_error(FG_ERR_INVALID, "moe: router_logit_scale = %g: must be > 0", (double)mc->router_logit_scale);
    if (!(mc->balance_gain >= 0.0f) || !isfinite(mc->balance_gain))
        return fg_error(FG_ERR_INVALID, "moe: balance_gain = %g: must be >= 0", (double)mc->balance_gain);
    if (mc->balance_window < 1)
        return fg_error(FG_ERR_INVALID, "moe: balance_window = %d: must be at least 1 step", mc->balance_window);
    if (!(mc->balance_alpha >= 0.0f) || !isfinite(mc->balance_alpha))
        return fg_error(FG_ERR_INVALID, "moe: balance_alpha = %g: must be >= 0", (double)mc->balance_alpha);
    if (mc->route_groups < 0 || mc->route_groups > FG_MOE_MAX_GROUPS)
        return fg_error(FG_ERR_INVALID, "moe: route_groups = %d: must be 0 (off) .. %d", mc->route_groups,
                        FG_MOE_MAX_GROUPS);
    if (mc->route_groups > 0) {
        int G = mc->route_groups, M = mc->route_max_groups;
        if (mc->n_expert > ROUTE_MAX_E)
            return fg_error(FG_ERR_INVALID,
                            "moe: node-limited routing (route_groups = %d) takes at most %d experts, "
                            "n_expert = %d",
                            G, ROUTE_MAX_E, mc->n_expert);
        if (mc->n_expert % G != 0)
            return fg_error(FG_ERR_INVALID, "moe: route_groups = %d does not divide n_expert = %d", G, mc->n_expert);
        if (M < 1 || M > G)
            return fg_error(FG_ERR_INVALID, "moe: route_max_groups = %d: must be 1 .. route_groups (= %d)", M, G);
        if (M * (mc->n_expert / G) < mc->n_expert_active)
            return fg_error(FG_ERR_INVALID,
                            "moe: route_max_groups = %d groups of %d experts cannot hold n_expert_active = %d", M,
                            mc->n_expert / G, mc->n_expert_active);
    } else if (mc->route_max_groups != 0) {
        return fg_error(FG_ERR_INVALID, "moe: route_max_groups = %d without route_groups", mc->route_max_groups);
    }
    if ((int)mc->parallel < FG_MOE_PAR_AUTO || (int)mc->parallel > FG_MOE_PAR_GEMM)
        return fg_error(FG_ERR_INVALID, "moe: parallel = %d: must be 0 (auto), 1 (experts) or 2 (gemm)",
                        (int)mc->parallel);
    if (!(mc->capacity_factor >= 0.0f) || !isfinite(mc->capacity_factor))
        return fg_error(FG_ERR_INVALID, "moe: capacity_factor = %g: must be 0 (no limit) or positive",
                        (double)mc->capacity_factor);
    return FG_OK;
}

fg_status fg_moe_model_config_validate(const fg_model_config *cfg)
{
    const fg_moe_config *c = &cfg->moe;
    if (c->n_expert < 0)
        return fg_error(FG_ERR_INVALID, "moe: n_expert = %d: must be >= 0 (0 = dense model)", c->n_expert);
    if (c->n_expert == 0) {
        if (c->n_expert_active > 0)
            return fg_error(FG_ERR_INVALID,
                            "moe: n_expert = 0 but n_expert_active = %d: top-K routing needs routed experts "
                            "(set n_expert >= n_expert_active, or n_expert_active = 0 for a dense model)",
                            c->n_expert_active);
        if (c->n_shared_expert > 0)
            return fg_error(FG_ERR_INVALID,
                            "moe: n_expert = 0 but n_shared_expert = %d: shared experts belong to a MoE layer "
                            "(use d_ff for a dense model)",
                            c->n_shared_expert);
        return FG_OK;
    }
    /* the two model-level fields: the block itself has no layers and no optimiser */
    if (c->n_dense_layers < 0 || c->n_dense_layers > cfg->n_layer)
        return fg_error(FG_ERR_INVALID, "moe: n_dense_layers = %d: must be in 0..n_layer (= %d)", c->n_dense_layers,
                        cfg->n_layer);
    if (!(c->router_lr_scale > 0.0f) || !isfinite(c->router_lr_scale))
        return fg_error(FG_ERR_INVALID, "moe: router_lr_scale = %g: must be > 0", (double)c->router_lr_scale);
    fg_moe_config mc = *c;
    mc.d_model = cfg->d_model; /* the block's C is the model's width */
    return fg_moe_config_validate(&mc);
}

void fg_moe_role_shape(const fg_moe_config *mc, fg_moe_role role, int *ndim, int shape[4])
{
    int E = mc->n_expert, C = mc->d_model, H = mc->d_expert, SH = mc->n_shared_expert * mc->d_expert;
    *ndim = 0;
    switch (role) {
    case FG_MOE_ROUTER_W: *ndim = 2, shape[0] = E, shape[1] = C; break;
    case FG_MOE_ROUTER_BIAS: *ndim = 1, shape[0] = E; break;
    case FG_MOE_EXPERT_FC: *ndim = 3, shape[0] = E, shape[1] = 2 * H, shape[2] = C; break;
    case FG_MOE_EXPERT_PROJ: *ndim = 3, shape[0] = E, shape[1] = C, shape[2] = H; break;
    case FG_MOE_SHARED_FC:
        if (SH > 0)
            *ndim = 2, shape[0] = 2 * SH, shape[1] = C;
        break;
    case FG_MOE_SHARED_PROJ:
        if (SH > 0)
            *ndim = 2, shape[0] = C, shape[1] = SH;
        break;
    case FG_MOE_LOAD_HIST: *ndim = 2, shape[0] = mc->balance_window, shape[1] = E; break;
    case FG_MOE_LOAD_STEPS: *ndim = 1, shape[0] = 1; break;
    case FG_MOE_N_ROLES: break;
    }
}

static const char *role_expect[FG_MOE_N_ROLES] = {
    "[n_expert, d_model]",
    "[n_expert]",
    "[n_expert, 2*d_expert, d_model]",
    "[n_expert, d_model, d_expert]",
    "[2*n_shared_expert*d_expert, d_model]",
    "[d_model, n_shared_expert*d_expert]",
    "[balance_window, n_expert]",
    "[1]",
};

static int fmt_shape(char *buf, size_t cap, int ndim, const int *shape)
{
    int len = snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < (int)cap; i++)
        len += snprintf(buf + len, cap - (size_t)len, "%s%d", i ? "," : "", shape[i]);
    if (len < (int)cap)
        len += snprintf(buf + len, cap - (size_t)len, "]");
    return len;
}

fg_status fg_moe_check_tensor(const fg_moe_config *mc, fg_moe_role role, const fg_tensor_info *t)
{
    if ((int)role < 0 || role >= FG_MOE_N_ROLES)
        return fg_error(FG_ERR_INVALID, "moe: unknown tensor role %d", (int)role);
    int ndim, shape[4] = {0, 0, 0, 0};
    fg_moe_role_shape(mc, role, &ndim, shape);
    bool ok = ndim == t->ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = shape[i] == t->shape[i];
    if (ok)
        return FG_OK;
    char got[64], want[64];
    fmt_shape(got, sizeof got, t->ndim, t->shape);
    fmt_shape(want, sizeof want, ndim, shape);
    return fg_error(FG_ERR_INVALID,
                    "moe: tensor %s has shape %s but the config (n_expert=%d, d_model=%d, d_expert=%d, "
                    "n_shared_expert=%d) needs %s = %s",
                    t->name, got, mc->n_expert, mc->d_model, mc->d_expert, mc->n_shared_expert, role_expect[role],
                    ndim ? want : "no tensor");
}

/* ---- memory ---- */

static size_t align64(size_t bytes)
{
    return (bytes + 63) & ~(size_t)63;
}

/* Carves the next `bytes` (64-aligned) from *cur; with base NULL only counts.
 * A zero-byte request gives NULL (e.g. prob when the switch loss is off). */
static void *carve(uint8_t *base, size_t *cur, size_t bytes)
{
    void *p = base && bytes ? base + *cur : NULL;
    *cur += align64(bytes);
    return p;
}

static size_t layout_layer(fg_moe_layer *L, const fg_moe_config *mc, int n, uint8_t *base)
{
    size_t E = (size_t)mc->n_expert, K = (size_t)mc->n_expert_active, C = (size_t)mc->d_model;
    size_t H = (size_t)mc->d_expert, SH = (size_t)mc->n_shared_expert * H, NK = (size_t)n * K;
    size_t cur = 0;
    L->aff = carve(base, &cur, (size_t)n * E * sizeof(float));
    L->prob = carve(base, &cur, mc->balance == FG_BALANCE_SWITCH ? (size_t)n * E * sizeof(float) : 0);
    L->topk = carve(base, &cur, NK * sizeof(int32_t));
    L->gate = carve(base, &cur, NK * sizeof(float));
    L->pos = carve(base, &cur, NK * sizeof(int32_t));
    L->offs = carve(base, &cur, (E + 1) * sizeof(int32_t));
    L->count = carve(base, &cur, 2 * E * sizeof(int32_t)); /* second half: per-expert cursor */
    L->row_tok = carve(base, &cur, NK * sizeof(int32_t));
    L->xg = carve(base, &cur, NK * C * sizeof(float));
    L->h = carve(base, &cur, NK * 2 * H * sizeof(float));
    L->act = carve(base, &cur, NK * H * sizeof(float));
    L->eo = carve(base, &cur, NK * C * sizeof(float));
    L->hs = carve(base, &cur, (size_t)n * 2 * SH * sizeof(float));
    L->as = carve(base, &cur, (size_t)n * SH * sizeof(float));
    L->step_load = carve(base, &cur, E * sizeof(float));
    L->total_load = carve(base, &cur, E * sizeof(double));
    L->aux_tmp = carve(base, &cur, E * sizeof(double));
    return cur;
}

static size_t layout_scratch(fg_moe_scratch *S, const fg_moe_config *mc, int n, uint8_t *base)
{
    size_t E = (size_t)mc->n_expert, K = (size_t)mc->n_expert_active, C = (size_t)mc->d_model;
    size_t H = (size_t)mc->d_expert, SH = (size_t)mc->n_shared_expert * H, NK = (size_t)n * K;
    size_t cur = 0;
    S->d_eo = carve(base, &cur, NK * C * sizeof(float));
    S->d_act = carve(base, &cur, NK * H * sizeof(float));
    S->d_h = carve(base, &cur, NK * 2 * H * sizeof(float));
    S->d_xg = carve(base, &cur, NK * C * sizeof(float));
    S->d_as = carve(base, &cur, (size_t)n * SH * sizeof(float));
    S->d_hs = carve(base, &cur, (size_t)n * 2 * SH * sizeof(float));
    S->d_s = carve(base, &cur, (size_t)n * E * sizeof(float));
    S->seq_f = carve(base, &cur, E * sizeof(double));
    return cur;
}

size_t fg_moe_layer_bytes(const fg_moe_config *mc, int max_tokens)
{
    fg_moe_layer tmp;
    return layout_layer(&tmp, mc, max_tokens, NULL);
}

size_t fg_moe_scratch_bytes(const fg_moe_config *mc, int max_tokens)
{
    fg_moe_scratch tmp;
    return layout_scratch(&tmp, mc, max_tokens, NULL);
}

/* What both caches need before they can be laid out: a valid config, tokens to hold. */
static fg_status check_sizes(const fg_moe_config *mc, int max_tokens)
{
    fg_status st = fg_moe_config_validate(mc);
    if (st != FG_OK)
        return st;
    if (max_tokens < 1)
        return fg_error(FG_ERR_INVALID, "moe: max_tokens = %d: must be positive", max_tokens);
    return FG_OK;
}

fg_status fg_moe_layer_init(fg_moe_layer *L, const fg_moe_config *mc, int max_tokens)
{
    memset(L, 0, sizeof *L);
    fg_status st = check_sizes(mc, max_tokens);
    if (st != FG_OK)
        return st;
    size_t bytes = fg_moe_layer_bytes(mc, max_tokens);
    uint8_t *mem = fg_malloc(bytes);
    if (!mem)
        return fg_error(FG_ERR_NOMEM, "moe: cannot allocate %zu bytes of layer cache", bytes);
    memset(mem, 0, bytes);
    layout_layer(L, mc, max_tokens, mem);
    L->mem = mem;
    L->cfg = *mc;
    L->max_tokens = max_tokens;
    return FG_OK;
}

void fg_moe_layer_free(fg_moe_layer *L)
{
    if (!L)
        return;
    fg_free(L->mem);
    memset(L, 0, sizeof *L);
}

fg_status fg_moe_scratch_init(fg_moe_scratch *S, const fg_moe_config *mc, int max_tokens)
{
    memset(S, 0, sizeof *S);
    fg_status st = check_sizes(mc, max_tokens);
    if (st != FG_OK)
        return st;
    size_t bytes = fg_moe_scratch_bytes(mc, max_tokens);
    uint8_t *mem = fg_malloc(bytes);
    if (!mem)
        return fg_error(FG_ERR_NOMEM, "moe: cannot allocate %zu bytes of backward scratch", bytes);
    layout_scratch(S, mc, max_tokens, mem);
    S->mem = mem;
    S->max_tokens = max_tokens;
    return FG_OK;
}

void fg_moe_scratch_free(fg_moe_scratch *S)
{
    if (!S)
        return;
    fg_free(S->mem);
    memset(S, 0, sizeof *S);
}

/* ---- routing ---- */

/* One token: a = sigmoid(s) in place over aff[E] (s = router logits on entry), the
 * softmax of s into prob (SWITCH only), top-K of a + bias into topk[K] by descending
 * score (ties: lower index first), gates = scale * a_k / sum_j a_j over the K chosen
 * (K = 1: scale * a, unnormalised). */
/* Node-limited routing: marks allowed[e] for the experts of the M groups (of E/G
 * consecutive experts) with the highest group scores, a group's score being the sum of
 * its two best a + bias (DeepSeek-V3's inference code; one when groups have one expert);
 * ties: lower group first. */
static void allowed_groups(unsigned char *allowed, const float *aff, const float *bias, int E, int G, int M)
{
    float gs[FG_MOE_MAX_GROUPS];
    unsigned char pick[FG_MOE_MAX_GROUPS];
    int per = E / G;
    for (int g = 0; g < G; g++) {
        float b1 = -INFINITY, b2 = -INFINITY;
        for (int e = g * per; e < (g + 1) * per; e++) {
            float sc = aff[e] + (bias ? bias[e] : 0.0f);
            if (sc > b1)
                b2 = b1, b1 = sc;
            else if (sc > b2)
                b2 = sc;
        }
        gs[g] = per > 1 ? b1 + b2 : b1;
        pick[g] = 0;
    }
    for (int m = 0; m < M; m++) {
        int best = -1;
        for (int g = 0; g < G; g++)
            if (!pick[g] && (best < 0 || gs[g] > gs[best]))
                best = g;
        if (best < 0) /* M <= G (validated): not reached */
            break;
        pick[best] = 1;
    }
    for (int e = 0; e < E; e++)
        allowed[e] = pick[e / per];
}

static void route_token(float *aff, float *prob, int32_t *topk, float *gate, const float *bias, int E, int K,
                        float scale, int G, int M)
{
    if (prob) {
        /* max subtraction keeps exp in range for any logit scale */
        float mx = aff[0];
        for (int e = 1; e < E; e++)
            mx = fmaxf(mx, aff[e]);
        double z = 0;
        for (int e = 0; e < E; e++) {
            prob[e] = expf(aff[e] - mx);
            z += prob[e];
        }
        for (int e = 0; e < E; e++)
            prob[e] = (float)(prob[e] / z);
    }
    for (int e = 0; e < E; e++)
        aff[e] = 1.0f / (1.0f + expf(-aff[e]));
    unsigned char allowed[ROUTE_MAX_E]; /* validated: E <= ROUTE_MAX_E when G > 0 */
    bool limited = G > 0 && M < G;
    if (limited)
        allowed_groups(allowed, aff, bias, E, G, M);
    for (int k = 0; k < K; k++) {
        int best = -1;
        float best_score = 0;
        for (int e = 0; e < E; e++) {
            if (limited && !allowed[e])
                continue;
            bool taken = false;
            for (int j = 0; j < k && !taken; j++)
                taken = topk[j] == e;
            float sc = aff[e] + (bias ? bias[e] : 0.0f);
            if (!taken && (best < 0 || sc > best_score))
                best = e, best_score = sc;
        }
        topk[k] = best;
    }
    if (K == 1) { /* unnormalised: a / a would be a constant gate, the router untrained (docs/MOE.md) */
        gate[0] = scale * aff[topk[0]];
        return;
    }
    float sum = 0;
    for (int k = 0; k < K; k++)
        sum += aff[topk[k]];
    for (int k = 0; k < K; k++)
        gate[k] = scale * aff[topk[k]] / sum;
}

/* Per-expert capacity (rows kept) for n tokens. */
static int capacity(const fg_moe_config *mc, int n)
{
    if (mc->capacity_factor <= 0.0f)
        return INT_MAX;
    double cap = ceil((double)mc->capacity_factor * (double)n * mc->n_expert_active / mc->n_expert);
    return cap > (double)INT_MAX ? INT_MAX : (int)cap;
}

/* Experts run side by side (one expert per thread, `omp parallel for` over experts,
 * dynamic schedule) or one after another with each GEMM split over the threads.
 * Side by side needs no fork/join per GEMM (6 per expert per step) and is the
 * default: the kernels' "omp" GEMM threading (src/kernels, the default) runs a GEMM
 * called inside a parallel region single-threaded on its thread. Under OpenBLAS's
 * own pthread pool (FG_BLAS_THREADING=blas) concurrent callers serialise, so there
 * one after another is used. cfg.parallel (config key moe_parallel) forces a choice. */
int moe_parallel_over_experts(const fg_moe_config *mc, const fg_moe_weights *w)
{
    if (w->lin_fwd) /* int8 QAT / inference hooks share one scratch: one expert at a time */
        return 0;
    if (mc->parallel != FG_MOE_PAR_AUTO)
        return mc->parallel == FG_MOE_PAR_EXPERTS && mc->n_expert > 1;
    return mc->n_expert > 1 && fg_threads_get() > 1 && strcmp(fg_kernels_blas_threading(), "blas") != 0;
}

/* The bf16 layer's fused route: the SwiGLUs write only their bf16 GEMM operands
 * (swiglu_*_bf16), and what the backward's GEMMs read again is kept in bf16 in the
 * layer's own fp32 buffers (bf16_view): xg (gathered from one conversion of x), act and
 * as. The forward and backward each convert once instead of 4 and 8 times per layer, and
 * the backward zeroes no SwiGLU gradient. The same bits as the unfused route (each fused
 * op is its fp32 op then the conversion), taken only where the fused op's variant has
 * the fp32 op's name (FG_HW_DISABLE=avx512 runs avx2 SwiGLUs, which have no fused twin)
 * and neither expert parallelism (fp32 only) nor the int8 hooks are on. The backward
 * asks again: the kernel table must not change between a forward and its backward (it
 * changes only in tests and benchmarks, between steps; fg_moe_layer, a public struct,
 * has no field to keep the forward's answer in). */
static int bf16_fused(const fg_moe_layer *L, const fg_moe_weights *w)
{
    if (!w->expert_fc_bf16 || L->ep || w->lin_fwd || w->lin_bwd ||
        (L->cfg.n_shared_expert > 0 && (!w->shared_fc_bf16 || !w->shared_proj_bf16)))
        return 0;
    return !strcmp(fg_kernels_variant("swiglu_forward_bf16"), fg_kernels_variant("swiglu_forward")) &&
           !strcmp(fg_kernels_variant("swiglu_backward_bf16"), fg_kernels_variant("swiglu_backward"));
}

/* A layer buffer of fp32 values reused, in the fused route, for bf16 rows of the same
 * count and width (the first half of its bytes). */
static uint16_t *bf16_view(float *buf)
{
    return (uint16_t *)(void *)buf;
}

/* out[N,OC] = inp[N,C] @ weight^T in fp32, or on bf16 operands when wbf is given (the
 * shared expert's linear layers; work: the weights' bf16 work areas). */
static void shared_linear_forward(const fg_moe_weights *w, float *out, const float *inp, const float *weight,
                                  const uint16_t *wbf, int N, int C, int OC)
{
    if (w->lin_fwd) {
        w->lin_fwd(w->lin_ctx, out, inp, weight, N, C, OC);
        return;
    }
    if (!wbf) {
        fg_matmul_forward(out, inp, weight, NULL, N, C, OC);
        return;
    }
    fg_cvt_f32_bf16(w->bf16_x, inp, (size_t)N * C);
    fg_bgemm(0, 1, N, OC, C, 1.0f, w->bf16_x, C, wbf, C, 0.0f, out, OC);
}

/* dinp += dout @ weight, dweight += dout^T @ inp (as fg_matmul_backward, no bias). */
static void shared_linear_backward(const fg_moe_weights *w, float *dinp, float *dweight, const float *dout,
                                   const float *inp, const float *weight, const uint16_t *wbf, int N, int C, int OC)
{
    if (w->lin_bwd) {
        w->lin_bwd(w->lin_ctx, dinp, dweight, dout, inp, weight, N, C, OC);
        return;
    }
    if (!wbf) {
        fg_matmul_backward(dinp, dweight, NULL, dout, inp, weight, N, C, OC);
        return;
    }
    fg_cvt_f32_bf16(w->bf16_d, dout, (size_t)N * OC);
    fg_bgemm(0, 0, N, C, OC, 1.0f, w->bf16_d, OC, wbf, C, 1.0f, dinp, C);
    fg_cvt_f32_bf16(w->bf16_x, inp, (size_t)N * C);
    fg_bgemm(1, 0, OC, C, N, 1.0f, w->bf16_d, OC, w->bf16_x, C, 1.0f, dweight, C);
}

void moe_expert_rows_forward(const fg_moe_config *mc, const fg_moe_weights *w, int e, const float *xg, float *h,
                             float *act, float *eo, int ne)
{
    size_t C = (size_t)mc->d_model, H = (size_t)mc->d_expert;
    const float *fc = w->expert_fc + (size_t)e * 2 * H * C, *proj = w->expert_proj + (size_t)e * C * H;
    if (w->lin_fwd) { /* int8 QAT / int8 inference of expert e's two matrices */
        w->lin_fwd(w->lin_ctx, h, xg, fc, ne, (int)C, (int)(2 * H));
        fg_swiglu_forward(act, h, ne, (int)H);
        w->lin_fwd(w->lin_ctx, eo, act, proj, ne, (int)H, (int)C);
        return;
    }
    fg_matmul_forward(h, xg, fc, NULL, ne, (int)C, (int)(2 * H));
    fg_swiglu_forward(act, h, ne, (int)H);
    fg_matmul_forward(eo, act, proj, NULL, ne, (int)H, (int)C);
}

static void expert_forward(fg_moe_layer *L, const fg_moe_weights *w, int e)
{
    size_t C = (size_t)L->cfg.d_model, H = (size_t)L->cfg.d_expert;
    int r0 = L->offs[e], ne = L->offs[e + 1] - r0;
    if (ne == 0)
        return;
    if (bf16_fused(L, w)) { /* xg already in bf16; act written only in bf16 */
        const uint16_t *xgb = bf16_view(L->xg) + (size_t)r0 * C;
        uint16_t *actb = bf16_view(L->act) + (size_t)r0 * H;
        fg_bgemm(0, 1, ne, (int)(2 * H), (int)C, 1.0f, xgb, (int)C, w->expert_fc_bf16 + (size_t)e * 2 * H * C, (int)C,
                 0.0f, L->h + (size_t)r0 * 2 * H, (int)(2 * H));
        fg_swiglu_forward_bf16(actb, L->h + (size_t)r0 * 2 * H, ne, (int)H);
        fg_bgemm(0, 1, ne, (int)C, (int)H, 1.0f, actb, (int)H, w->expert_proj_bf16 + (size_t)e * C * H, (int)H, 0.0f,
                 L->eo + (size_t)r0 * C, (int)C);
        return;
    }
    if (w->expert_fc_bf16) { /* bf16 operands, fp32 accumulation (docs/PRECISION.md) */
        size_t W = C > 2 * H ? C : 2 * H;
        uint16_t *xb = w->bf16_x + (size_t)r0 * W;
        fg_cvt_f32_bf16(xb, L->xg + (size_t)r0 * C, (size_t)ne * C);
        fg_bgemm(0, 1, ne, (int)(2 * H), (int)C, 1.0f, xb, (int)C, w->expert_fc_bf16 + (size_t)e * 2 * H * C, (int)C,
                 0.0f, L->h + (size_t)r0 * 2 * H, (int)(2 * H));
        fg_swiglu_forward(L->act + (size_t)r0 * H, L->h + (size_t)r0 * 2 * H, ne, (int)H);
        fg_cvt_f32_bf16(xb, L->act + (size_t)r0 * H, (size_t)ne * H);
        fg_bgemm(0, 1, ne, (int)C, (int)H, 1.0f, xb, (int)H, w->expert_proj_bf16 + (size_t)e * C * H, (int)H, 0.0f,
                 L->eo + (size_t)r0 * C, (int)C);
        return;
    }
    moe_expert_rows_forward(&L->cfg, w, e, L->xg + (size_t)r0 * C, L->h + (size_t)r0 * 2 * H, L->act + (size_t)r0 * H,
                            L->eo + (size_t)r0 * C, ne);
}

/* Aux losses of the last forward (SEQAUX / SWITCH; 0 otherwise), alpha included.
 * SEQAUX (DeepSeek-V3): per sequence b, f_e = E/(K T) * #{t in b: e chosen},
 *   P_e = mean_t a_te / sum_j a_tj, loss_b = alpha sum_e f_e P_e; mean over b.
 * SWITCH (Switch Transformer, top-K): f_e = count_e / (n K), P_e = mean_t softmax(s_t)_e,
 *   loss = alpha * E * sum_e f_e P_e over the whole batch.
 * f counts routed pairs (before any capacity drop) and carries no gradient. */
static double aux_loss(const fg_moe_layer *L)
{
    const fg_moe_config *mc = &L->cfg;
    int E = mc->n_expert, K = mc->n_expert_active, n = L->n_tok, B = L->B, T = L->T;
    double *P = L->aux_tmp, total = 0;
    int32_t *cnt = L->count + E; /* the cursor half of count is free after the sort */
    if (mc->balance == FG_BALANCE_SEQAUX) {
        for (int b = 0; b < B; b++) {
            memset(cnt, 0, (size_t)E * sizeof *cnt);
            memset(P, 0, (size_t)E * sizeof *P);
            for (int t = b * T; t < (b + 1) * T; t++) {
                const float *a = L->aff + (size_t)t * E;
                double As = 0;
                for (int k = 0; k < K; k++)
                    cnt[L->topk[(size_t)t * K + k]]++;
                for (int e = 0; e < E; e++)
                    As += a[e];
                for (int e = 0; e < E; e++)
                    P[e] += a[e] / As;
            }
            double lb = 0;
            for (int e = 0; e < E; e++)
                lb += (double)E / ((double)K * T) * cnt[e] * (P[e] / T);
            total += mc->balance_alpha * lb;
        }
        return total / B;
    }
    if (mc->balance == FG_BALANCE_SWITCH) {
        memset(P, 0, (size_t)E * sizeof *P);
        for (int t = 0; t < n; t++)
            for (int e = 0; e < E; e++)
                P[e] += L->prob[(size_t)t * E + e];
        for (int e = 0; e < E; e++)
            total += (double)L->count[e] / ((double)n * K) * (P[e] / n);
        return mc->balance_alpha * (double)E * total;
    }
    return 0;
}

fg_status fg_moe_forward(fg_moe_layer *L, float *out, const float *x, const fg_moe_weights *w, int B, int T)
{
    const fg_moe_config *mc = &L->cfg;
    int E = mc->n_expert, K = mc->n_expert_active, C = mc->d_model, H = mc->d_expert;
    int SH = mc->n_shared_expert * H;
    if (B < 1 || T < 1 || (long)B * T > L->max_tokens)
        return fg_error(FG_ERR_INVALID, "moe: forward on B=%d x T=%d tokens, layer sized for %d", B, T, L->max_tokens);
    int n = B * T;
    L->n_tok = n, L->B = B, L->T = T;
    const float *bias = mc->balance == FG_BALANCE_BIAS ? w->router_bias : NULL;

    /* router: logits s[n,E] = x W_r^T, then per token sigmoid, top-K, gates */
    fg_matmul_forward(L->aff, x, w->router_w, NULL, n, C, E);
    if (mc->router_logit_scale != 1.0f)
        for (size_t i = 0; i < (size_t)n * E; i++)
            L->aff[i] *= mc->router_logit_scale;
    FG_ROWS_FOR((size_t)n * E >= MOE_PAR_ELEMS / 8, int, t, 0, n, {
        route_token(L->aff + (size_t)t * E, L->prob ? L->prob + (size_t)t * E : NULL, L->topk + (size_t)t * K,
                    L->gate + (size_t)t * K, bias, E, K, mc->route_scale, mc->route_groups, mc->route_max_groups);
    });

    /* counting sort of the pairs by expert, stable in token order, so the capacity
     * limit keeps each expert's first `cap` tokens */
    int32_t *count = L->count, *seen = L->count + E;
    memset(count, 0, (size_t)E * sizeof *count);
    for (int i = 0; i < n * K; i++)
        count[L->topk[i]]++;
    int cap = capacity(mc, n);
    L->offs[0] = 0;
    for (int e = 0; e < E; e++)
        L->offs[e + 1] = L->offs[e] + (count[e] < cap ? count[e] : cap);
    memset(seen, 0, (size_t)E * sizeof *seen);
    long dropped = 0;
    for (int i = 0; i < n * K; i++) {
        int e = L->topk[i], r = seen[e]++;
        if (r < cap) {
            L->pos[i] = L->offs[e] + r;
            L->row_tok[L->offs[e] + r] = i / K;
        } else {
            L->pos[i] = -1;
            dropped++;
        }
    }
    L->n_rows = L->offs[E];

    int fused = bf16_fused(L, w);
    if (fused) { /* x converted once (the shared expert's operand too), its rows gathered */
        uint16_t *xgb = bf16_view(L->xg);
        fg_cvt_f32_bf16(w->bf16_x, x, (size_t)n * C);
        FG_ROWS_FOR((size_t)L->n_rows * C >= MOE_PAR_ELEMS, int, r, 0, L->n_rows, {
            memcpy(xgb + (size_t)r * C, w->bf16_x + (size_t)L->row_tok[r] * C, (size_t)C * sizeof(uint16_t));
        });
    } else {
        FG_ROWS_FOR((size_t)L->n_rows * C >= MOE_PAR_ELEMS, int, r, 0, L->n_rows,
                    { memcpy(L->xg + (size_t)r * C, x + (size_t)L->row_tok[r] * C, (size_t)C * sizeof(float)); });
    }

    if (L->ep) { /* expert parallel: the rows go to the experts' ranks and come back */
        fg_status st = moe_ep_forward(L, w);
        if (st != FG_OK)
            return st;
    } else if (moe_parallel_over_experts(&L->cfg, w)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int e = 0; e < E; e++)
            expert_forward(L, w, e);
    } else {
        for (int e = 0; e < E; e++)
            expert_forward(L, w, e);
    }

    /* shared experts: one dense SwiGLU of S*H writes out; routed outputs added after */
    if (SH > 0 && fused) {
        uint16_t *asb = bf16_view(L->as);
        fg_bgemm(0, 1, n, 2 * SH, C, 1.0f, w->bf16_x, C, w->shared_fc_bf16, C, 0.0f, L->hs, 2 * SH);
        fg_swiglu_forward_bf16(asb, L->hs, n, SH);
        fg_bgemm(0, 1, n, C, SH, 1.0f, asb, SH, w->shared_proj_bf16, SH, 0.0f, out, C);
    } else if (SH > 0) {
        shared_linear_forward(w, L->hs, x, w->shared_fc, w->shared_fc_bf16, n, C, 2 * SH);
        fg_swiglu_forward(L->as, L->hs, n, SH);
        shared_linear_forward(w, out, L->as, w->shared_proj, w->shared_proj_bf16, n, SH, C);
    } else {
        memset(out, 0, (size_t)n * C * sizeof(float));
    }
    /* combine: out[t] += sum_k gate_tk * eo[pos_tk], slots in a fixed order per token,
     * so the result does not depend on the thread count */
    FG_ROWS_FOR((size_t)n * K * C >= MOE_PAR_ELEMS, int, t, 0, n, {
        float *o = out + (size_t)t * C;
        for (int k = 0; k < K; k++) {
            int p = L->pos[(size_t)t * K + k];
            if (p < 0)
                continue;
            float g = L->gate[(size_t)t * K + k];
            const float *eo = L->eo + (size_t)p * C;
            /* omp simd: these row loops are elementwise (same bits), and gcc -O2 left them scalar */
            _Pragma("omp simd") for (int c = 0; c < C; c++) o[c] += g * eo[c];
        }
    });

    /* statistics */
    double mean = (double)n * K / E, var = 0;
    int mx = 0;
    for (int e = 0; e < E; e++) {
        mx = count[e] > mx ? count[e] : mx;
        var += (count[e] - mean) * (count[e] - mean);
    }
    L->stats.load_max_over_mean = (float)(mx / mean);
    L->stats.load_cv = (float)(sqrt(var / E) / mean);
    L->stats.active_frac = (float)((double)L->n_rows / ((double)n * E));
    L->stats.dropped = dropped;
    L->stats.aux_loss = (float)aux_loss(L);
    return FG_OK;
}

/* ---- backward ---- */

void moe_expert_rows_backward(const fg_moe_config *mc, const fg_moe_weights *dw, const fg_moe_weights *w, int e,
                              const float *d_eo, float *d_act, float *d_h, float *d_xg, const float *xg, const float *h,
                              const float *act, int ne)
{
    size_t C = (size_t)mc->d_model, H = (size_t)mc->d_expert;
    const float *proj = w->expert_proj + (size_t)e * C * H, *fc = w->expert_fc + (size_t)e * 2 * H * C;
    if (w->lin_bwd) { /* the same products through the QAT hook (which accumulates) */
        memset(d_act, 0, (size_t)ne * H * sizeof(float));
        w->lin_bwd(w->lin_ctx, d_act, dw->expert_proj + (size_t)e * C * H, d_eo, act, proj, ne, (int)H, (int)C);
        memset(d_h, 0, (size_t)ne * 2 * H * sizeof(float));
        fg_swiglu_backward(d_h, d_act, h, ne, (int)H);
        memset(d_xg, 0, (size_t)ne * C * sizeof(float));
        w->lin_bwd(w->lin_ctx, d_xg, dw->expert_fc + (size_t)e * 2 * H * C, d_h, xg, fc, ne, (int)C, (int)(2 * H));
        return;
    }
    /* eo = act @ proj_e^T: d_act = d_eo @ proj_e (set, beta 0: no zeroing pass),
     * dproj_e += d_eo^T @ act */
    fg_sgemm(0, 0, ne, (int)H, (int)C, 1.0f, d_eo, (int)C, proj, (int)H, 0.0f, d_act, (int)H);
    fg_sgemm(1, 0, (int)C, (int)H, ne, 1.0f, d_eo, (int)C, act, (int)H, 1.0f, dw->expert_proj + (size_t)e * C * H,
             (int)H);
    /* act = silu(h[:, :H]) * h[:, H:] (the kernel accumulates into d_h) */
    memset(d_h, 0, (size_t)ne * 2 * H * sizeof(float));
    fg_swiglu_backward(d_h, d_act, h, ne, (int)H);
    /* h = xg @ fc_e^T: d_xg = d_h @ fc_e (set), dfc_e += d_h^T @ xg */
    fg_sgemm(0, 0, ne, (int)C, (int)(2 * H), 1.0f, d_h, (int)(2 * H), fc, (int)C, 0.0f, d_xg, (int)C);
    fg_sgemm(1, 0, (int)(2 * H), (int)C, ne, 1.0f, d_h, (int)(2 * H), xg, (int)C, 1.0f,
             dw->expert_fc + (size_t)e * 2 * H * C, (int)C);
}

static void expert_backward(fg_moe_layer *L, fg_moe_scratch *S, const fg_moe_weights *dw, const fg_moe_weights *w,
                            int e)
{
    size_t C = (size_t)L->cfg.d_model, H = (size_t)L->cfg.d_expert;
    int r0 = L->offs[e], ne = L->offs[e + 1] - r0;
    if (ne == 0)
        return;
    size_t r = (size_t)r0;
    float *d_eo = S->d_eo + r * C, *d_act = S->d_act + r * H, *d_h = S->d_h + r * 2 * H, *d_xg = S->d_xg + r * C;
    if (bf16_fused(L, w)) { /* act and xg kept in bf16 by the forward; d_h made in bf16 */
        size_t W = C > 2 * H ? C : 2 * H;
        uint16_t *db = w->bf16_d + r * W;
        fg_cvt_f32_bf16(db, d_eo, (size_t)ne * C);
        fg_bgemm(0, 0, ne, (int)H, (int)C, 1.0f, db, (int)C, w->expert_proj_bf16 + (size_t)e * C * H, (int)H, 0.0f,
                 d_act, (int)H);
        fg_bgemm(1, 0, (int)C, (int)H, ne, 1.0f, db, (int)C, bf16_view(L->act) + r * H, (int)H, 1.0f,
                 dw->expert_proj + (size_t)e * C * H, (int)H);
        fg_swiglu_backward_bf16(db, d_act, L->h + r * 2 * H, ne, (int)H); /* d_eo's bf16 is read: reuse */
        fg_bgemm(0, 0, ne, (int)C, (int)(2 * H), 1.0f, db, (int)(2 * H), w->expert_fc_bf16 + (size_t)e * 2 * H * C,
                 (int)C, 0.0f, d_xg, (int)C);
        fg_bgemm(1, 0, (int)(2 * H), (int)C, ne, 1.0f, db, (int)(2 * H), bf16_view(L->xg) + r * C, (int)C, 1.0f,
                 dw->expert_fc + (size_t)e * 2 * H * C, (int)C);
        return;
    }
    if (w->expert_fc_bf16) { /* the same four products on bf16 operands */
        size_t W = C > 2 * H ? C : 2 * H;
        uint16_t *xb = w->bf16_x + r * W, *db = w->bf16_d + r * W;
        fg_cvt_f32_bf16(db, d_eo, (size_t)ne * C);
        fg_bgemm(0, 0, ne, (int)H, (int)C, 1.0f, db, (int)C, w->expert_proj_bf16 + (size_t)e * C * H, (int)H, 0.0f,
                 d_act, (int)H);
        fg_cvt_f32_bf16(xb, L->act + r * H, (size_t)ne * H);
        fg_bgemm(1, 0, (int)C, (int)H, ne, 1.0f, db, (int)C, xb, (int)H, 1.0f, dw->expert_proj + (size_t)e * C * H,
                 (int)H);
        memset(d_h, 0, (size_t)ne * 2 * H * sizeof(float));
        fg_swiglu_backward(d_h, d_act, L->h + r * 2 * H, ne, (int)H);
        fg_cvt_f32_bf16(db, d_h, (size_t)ne * 2 * H);
        fg_bgemm(0, 0, ne, (int)C, (int)(2 * H), 1.0f, db, (int)(2 * H), w->expert_fc_bf16 + (size_t)e * 2 * H * C,
                 (int)C, 0.0f, d_xg, (int)C);
        fg_cvt_f32_bf16(xb, L->xg + r * C, (size_t)ne * C);
        fg_bgemm(1, 0, (int)(2 * H), (int)C, ne, 1.0f, db, (int)(2 * H), xb, (int)C, 1.0f,
                 dw->expert_fc + (size_t)e * 2 * H * C, (int)C);
        return;
    }
    moe_expert_rows_backward(&L->cfg, dw, w, e, d_eo, d_act, d_h, d_xg, L->xg + r * C, L->h + r * 2 * H, L->act + r * H,
                             ne);
}

/* Router backward of one token into d_s[E] (dL/ds, s the router logits).
 * Gates: g_k = r a_k / A, A = sum_j a_j over the K chosen, so
 *   dL/da_k = (r / A) (dg_k - sum_j dg_j a_j / A).
 * SEQAUX (when f != NULL): loss += c * sum_e f_e a_e / As (As = sum over all E), so
 *   dL/da_j += c (f_j - sum_e f_e a_e / As) / As.
 * Then through a = sigmoid(s): ds = da * a (1 - a).
 * SWITCH (when p != NULL): loss += sum_e w_e p_e, p = softmax(s), w_e = sw * count_e:
 *   ds_j += p_j (w_j - sum_e w_e p_e). */
static void router_token_backward(float *d_s, const float *a, const int32_t *topk, const float *dg, int E, int K,
                                  float route_scale, const double *f, double c, const float *p, const int32_t *count,
                                  double sw)
{
    memset(d_s, 0, (size_t)E * sizeof *d_s);
    if (K == 1) { /* g = r a (not normalised): dL/da = r dg */
        d_s[topk[0]] = route_scale * dg[0];
    } else {
        double A = 0, dot = 0;
        for (int k = 0; k < K; k++)
            A += a[topk[k]], dot += (double)dg[k] * a[topk[k]];
        for (int k = 0; k < K; k++)
            d_s[topk[k]] = (float)(route_scale / A * (dg[k] - dot / A));
    }
    if (f) {
        double As = 0, fa = 0;
        for (int e = 0; e < E; e++)
            As += a[e], fa += f[e] * a[e];
        for (int e = 0; e < E; e++)
            d_s[e] += (float)(c * (f[e] - fa / As) / As);
    }
    for (int e = 0; e < E; e++)
        d_s[e] *= a[e] * (1.0f - a[e]);
    if (p) {
        double wp = 0;
        for (int e = 0; e < E; e++)
            wp += sw * count[e] * p[e];
        for (int e = 0; e < E; e++)
            d_s[e] += (float)(p[e] * (sw * count[e] - wp));
    }
}

fg_status fg_moe_backward(fg_moe_layer *L, fg_moe_scratch *S, float *dx, const fg_moe_weights *dw, const float *dout,
                          const float *x, const fg_moe_weights *w, float aux_scale)
{
    const fg_moe_config *mc = &L->cfg;
    int E = mc->n_expert, K = mc->n_expert_active, C = mc->d_model, H = mc->d_expert;
    int SH = mc->n_shared_expert * H, n = L->n_tok, B = L->B, T = L->T;
    if (n < 1)
        return fg_error(FG_ERR_INVALID, "moe: backward without a forward");
    if (S->max_tokens < n)
        return fg_error(FG_ERR_INVALID, "moe: backward scratch sized for %d tokens, forward had %d", S->max_tokens, n);

    /* gates: out[t] += g_tk eo[p]  =>  d_eo[p] = g_tk dout_t (dg_tk = <dout_t, eo_p> below) */
    FG_ROWS_FOR((size_t)n * K * C >= MOE_PAR_ELEMS, int, t, 0, n, {
        const float *d = dout + (size_t)t * C;
        for (int k = 0; k < K; k++) {
            int p = L->pos[(size_t)t * K + k];
            if (p < 0)
                continue;
            float g = L->gate[(size_t)t * K + k];
            float *de = S->d_eo + (size_t)p * C;
            _Pragma("omp simd") for (int c = 0; c < C; c++) de[c] = g * d[c];
        }
    });

    /* experts: each writes its own rows of d_act, d_h, d_xg and its own weight grads */
    if (L->ep) {
        fg_status st = moe_ep_backward(L, S, dw, w);
        if (st != FG_OK)
            return st;
    } else if (moe_parallel_over_experts(&L->cfg, w)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int e = 0; e < E; e++)
            expert_backward(L, S, dw, w, e);
    } else {
        for (int e = 0; e < E; e++)
            expert_backward(L, S, dw, w, e);
    }
    /* scatter: dx[t] += sum_k d_xg[pos_tk] (the gather's backward), fixed slot order */
    FG_ROWS_FOR((size_t)n * K * C >= MOE_PAR_ELEMS, int, t, 0, n, {
        float *d = dx + (size_t)t * C;
        for (int k = 0; k < K; k++) {
            int p = L->pos[(size_t)t * K + k];
            if (p < 0)
                continue;
            const float *s = S->d_xg + (size_t)p * C;
            _Pragma("omp simd") for (int c = 0; c < C; c++) d[c] += s[c];
        }
    });

    /* shared experts: out = as @ proj^T, as = swiglu(hs), hs = x @ fc^T */
    if (SH > 0 && bf16_fused(L, w)) {
        /* d_as set (beta 0; where the zeroed route had +0 this may hold -0, which the
         * SwiGLU backward's products turn into the same +0 sums), as kept in bf16, d_hs
         * written only in bf16 over dout's (read by then) */
        uint16_t *asb = bf16_view(L->as);
        fg_cvt_f32_bf16(w->bf16_d, dout, (size_t)n * C);
        fg_bgemm(0, 0, n, SH, C, 1.0f, w->bf16_d, C, w->shared_proj_bf16, SH, 0.0f, S->d_as, SH);
        fg_bgemm(1, 0, C, SH, n, 1.0f, w->bf16_d, C, asb, SH, 1.0f, dw->shared_proj, SH);
        fg_swiglu_backward_bf16(w->bf16_d, S->d_as, L->hs, n, SH);
        fg_bgemm(0, 0, n, C, 2 * SH, 1.0f, w->bf16_d, 2 * SH, w->shared_fc_bf16, C, 1.0f, dx, C);
        fg_cvt_f32_bf16(w->bf16_x, x, (size_t)n * C);
        fg_bgemm(1, 0, 2 * SH, C, n, 1.0f, w->bf16_d, 2 * SH, w->bf16_x, C, 1.0f, dw->shared_fc, C);
    } else if (SH > 0) {
        memset(S->d_as, 0, (size_t)n * SH * sizeof(float));
        memset(S->d_hs, 0, (size_t)n * 2 * SH * sizeof(float));
        shared_linear_backward(w, S->d_as, dw->shared_proj, dout, L->as, w->shared_proj, w->shared_proj_bf16, n, SH, C);
        fg_swiglu_backward(S->d_hs, S->d_as, L->hs, n, SH);
        shared_linear_backward(w, dx, dw->shared_fc, S->d_hs, x, w->shared_fc, w->shared_fc_bf16, n, C, 2 * SH);
    }

    /* router: gate gradients (+ aux losses) into d_s[n,E], then through s = x W_r^T */
    bool seqaux = mc->balance == FG_BALANCE_SEQAUX && mc->balance_alpha > 0;
    bool sw = mc->balance == FG_BALANCE_SWITCH && mc->balance_alpha > 0;
    /* SWITCH: loss = alpha E sum_e f_e mean_t p_te, f_e = count_e / (n K), so the weight
     * on p_te is aux_scale alpha E count_e / (n K n) */
    double sw_scale = sw ? (double)aux_scale * mc->balance_alpha * E / ((double)n * K * n) : 0;
    double *f = S->seq_f;
    /* SEQAUX needs each sequence's f_e before its tokens: one region per sequence. Without
     * it no token depends on its sequence, so one region takes all n tokens (B regions
     * per layer would each cost a fork/join; docs/perf/kernels.md, section 7). */
    int nseq = seqaux ? B : 1, tseq = seqaux ? T : n;
    for (int b = 0; b < nseq; b++) {
        double c = 0;
        if (seqaux) {
            /* loss_b = alpha sum_e f_e P_e, f_e = E/(K T) cnt_e, P_e = mean_t a_te/As_t;
             * mean over B: the coefficient on each a_te/As_t is aux_scale alpha / (B T) */
            memset(f, 0, (size_t)E * sizeof *f);
            for (int t = b * T; t < (b + 1) * T; t++)
                for (int k = 0; k < K; k++)
                    f[L->topk[(size_t)t * K + k]] += (double)E / ((double)K * T);
            c = (double)aux_scale * mc->balance_alpha / ((double)B * T);
        }
        int t0 = b * tseq, t1 = t0 + tseq;
        FG_ROWS_FOR((size_t)tseq * K * C >= MOE_PAR_ELEMS, int, t, t0, t1, {
            float dg[FG_MOE_MAX_K];
            for (int k = 0; k < K; k++) {
                int p = L->pos[(size_t)t * K + k];
                double acc = 0;
                if (p >= 0) {
                    const float *d = dout + (size_t)t * C, *eo = L->eo + (size_t)p * C;
                    for (int cc = 0; cc < C; cc++)
                        acc += (double)d[cc] * eo[cc];
                }
                dg[k] = (float)acc;
            }
            router_token_backward(S->d_s + (size_t)t * E, L->aff + (size_t)t * E, L->topk + (size_t)t * K, dg, E, K,
                                  mc->route_scale, seqaux ? f : NULL, c, sw ? L->prob + (size_t)t * E : NULL, L->count,
                                  sw_scale);
        });
    }
    if (mc->router_logit_scale != 1.0f) /* s = scale * x W_r^T */
        for (size_t i = 0; i < (size_t)n * E; i++)
            S->d_s[i] *= mc->router_logit_scale;
    fg_matmul_backward(dx, dw->router_w, NULL, S->d_s, x, w->router_w, n, C, E);

    /* loads seen by training steps */
    for (int e = 0; e < E; e++) {
        L->step_load[e] += (float)L->count[e];
        L->total_load[e] += L->count[e];
    }
    return FG_OK;
}

/* ---- balance ---- */

void fg_moe_balance_update(float *bias, float *hist, float *hist_steps, const float *step_load, int E, int W,
                           float gamma, float gain)
{
    long steps = (long)*hist_steps;
    float *slot = hist + (size_t)(steps % W) * E;
    memcpy(slot, step_load, (size_t)E * sizeof *slot);
    steps++;
    *hist_steps = (float)steps;
    int valid = steps < W ? (int)steps : W;
    double mean = 0;
    for (int e = 0; e < E; e++)
        for (int s = 0; s < valid; s++)
            mean += hist[(size_t)s * E + e];
    mean /= E;
    for (int e = 0; e < E; e++) {
        double load = 0;
        for (int s = 0; s < valid; s++)
            load += hist[(size_t)s * E + e];
        if (load > mean)
            bias[e] -= gamma;
        else if (load < mean)
            bias[e] += gamma;
        if (gain > 0.0f && mean > 0) {
            /* relative error in [1 - E/K, 1]: not clamped, so a collapsed expert
             * (load E/K times the mean) is pushed down at once */
            bias[e] += (float)(gain * (mean - load) / mean);
        }
    }
}
