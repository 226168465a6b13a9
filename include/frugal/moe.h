/* moe.h: the DeepSeekMoE-style sparse FFN block: S shared experts (always on) plus
 * E fine-grained routed SwiGLU experts, top-K routing by sigmoid affinity, load
 * balancing by a per-expert bias nudged from recent load (or an aux loss, or none).
 *
 * Usage (the model does this per MoE layer; tests call it directly):
 *   fg_moe_config mc = model_cfg.moe; mc.d_model = model_cfg.d_model; // fg_moe_config: model.h
 *   if (fg_moe_config_validate(&mc) != FG_OK) ... fg_last_error() ...
 *   fg_moe_layer L; fg_moe_layer_init(&L, &mc, max_tokens);   // cache of one layer
 *   fg_moe_scratch S; fg_moe_scratch_init(&S, &mc, max_tokens); // shared by layers
 *   fg_moe_forward(&L, out, x, &w, B, T);             // out[B*T,C] = FFN(x)
 *   fg_moe_backward(&L, &S, dx, &dw, dout, x, &w, 1.0f); // dx, dw accumulate (+=)
 *   // after the optimizer step:
 *   fg_moe_balance_update(w.router_bias, hist, hist_steps, L.step_load, E, W, gamma);
 * Execution: (token, expert) pairs are counting-sorted by expert, each expert runs one
 * GEMM on its gathered rows (gate|up fused as one [2H,C] linear, SwiGLU, down [C,H]),
 * the outputs are combined per token by a deterministic weighted sum. Nothing here
 * allocates after init (expert parallelism over ranks, moe_ep.c, grows its buffers).
 */
#ifndef FRUGAL_MOE_H
#define FRUGAL_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/core.h"
#include "frugal/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The one validation of the MoE settings: FG_OK, or FG_ERR_INVALID with a message naming
 * the field and its value (K > E, K > FG_MOE_MAX_K, E = 0, H <= 0, negative
 * gamma/alpha/capacity, window < 1, unknown balance, ...). */
fg_status fg_moe_config_validate(const fg_moe_config *mc);
/* Model-level MoE checks (moe.n_expert == 0 means dense; then the other MoE fields must
 * not ask for experts), n_dense_layers within 0..n_layer, then fg_moe_config_validate
 * with the model's d_model. */
fg_status fg_moe_model_config_validate(const fg_model_config *cfg);

/* Roles of the tensors of one MoE layer, for shape checks and naming. */
typedef enum fg_moe_role {
    FG_MOE_ROUTER_W = 0,    /* [E, C] router weight (trained) */
    FG_MOE_ROUTER_BIAS = 1, /* [E] selection bias (frozen: moved by the balance rule) */
    FG_MOE_EXPERT_FC = 2,   /* [E, 2H, C] per expert: rows [0,H) gate, [H,2H) up */
    FG_MOE_EXPERT_PROJ = 3, /* [E, C, H] per expert down projection */
    FG_MOE_SHARED_FC = 4,   /* [2SH, C]: rows [0,SH) gate, [SH,2SH) up */
    FG_MOE_SHARED_PROJ = 5, /* [C, SH] */
    FG_MOE_LOAD_HIST = 6,   /* [W, E] frozen: routed tokens per expert, last W steps (ring) */
    FG_MOE_LOAD_STEPS = 7,  /* [1] frozen: number of steps pushed into the ring */
    FG_MOE_N_ROLES = 8,
} fg_moe_role;
/* Expected shape of a role: writes ndim and shape[0..ndim); ndim 0 when the role
 * has no tensor for this config (shared roles when S == 0). */
void fg_moe_role_shape(const fg_moe_config *mc, fg_moe_role role, int *ndim, int shape[4]);
/* FG_OK when t's shape matches the role's expected shape, else FG_ERR_INVALID naming
 * the tensor, its shape and the config fields it should match. */
fg_status fg_moe_check_tensor(const fg_moe_config *mc, fg_moe_role role, const fg_tensor_info *t);

/* Weight (or gradient) views of one layer. shared_* are NULL when S == 0. */
typedef struct fg_moe_weights {
    float *router_w;    /* [E, C] */
    float *router_bias; /* [E] (unused in gradients) */
    float *expert_fc;   /* [E, 2H, C] */
    float *expert_proj; /* [E, C, H] */
    float *shared_fc;   /* [2SH, C] */
    float *shared_proj; /* [C, SH] */
    /* bf16 precision of the routed and shared experts (all NULL: fp32 GEMMs). bf16
     * copies of expert_fc / expert_proj / shared_fc / shared_proj, and two work areas of
     * n_tok * max(K*max(C, 2H), max(C, 2SH)) values each for the bf16 operands (rows of
     * one expert never overlap another's; the shared expert runs after them). */
    const uint16_t *expert_fc_bf16, *expert_proj_bf16, *shared_fc_bf16, *shared_proj_bf16;
    uint16_t *bf16_x, *bf16_d;
    /* fp32 only: when set, the routed and shared experts' GEMMs run through these (the
     * model's int8 QAT and int8 inference hooks, src/model/qat.c) with lin_ctx as first
     * argument; backward accumulates (+=) as fg_matmul_backward. The hooks share scratch,
     * so the experts then run one after another (each GEMM still threaded). */
    void (*lin_fwd)(const void *ctx, float *out, const float *inp, const float *weight, int N, int C, int OC);
    void (*lin_bwd)(const void *ctx, float *dinp, float *dweight, const float *dout, const float *inp,
                    const float *weight, int N, int C, int OC);
    const void *lin_ctx;
} fg_moe_weights;

/* Statistics of the last forward of one layer. */
typedef struct fg_moe_layer_stats {
    float load_max_over_mean; /* max_e count_e / mean_e count_e (routed, before dropping) */
    float load_cv;            /* std_e count_e / mean_e count_e */
    float active_frac;        /* kept (token, expert) pairs / (tokens * E) */
    long dropped;             /* pairs dropped by the capacity limit */
    float aux_loss;           /* alpha-weighted aux loss (0 for BIAS / NONE) */
} fg_moe_layer_stats;

/* Forward cache of one layer, sized for up to max_tokens tokens (one allocation). */
typedef struct fg_moe_layer {
    fg_moe_config cfg;
    int max_tokens;
    int n_tok, B, T;    /* of the last forward */
    int n_rows;         /* kept (token, expert) pairs of the last forward */
    float *aff;         /* [n_tok, E] sigmoid affinities a = sigmoid(x W_r^T) */
    float *prob;        /* [n_tok, E] softmax of the router logits (SWITCH only) */
    int32_t *topk;      /* [n_tok, K] chosen experts, by descending a + bias */
    float *gate;        /* [n_tok, K] route_scale * a / sum of the chosen a */
    int32_t *pos;       /* [n_tok, K] row of the pair in expert-sorted order, -1 if dropped */
    int32_t *offs;      /* [E+1] first sorted row of each expert (kept rows only) */
    int32_t *count;     /* [E] pairs routed to each expert (before dropping) */
    int32_t *row_tok;   /* [n_tok*K] token of each sorted row */
    float *xg;          /* [n_tok*K, C] gathered inputs, expert-sorted */
    float *h;           /* [n_tok*K, 2H] expert gate|up pre-activations */
    float *act;         /* [n_tok*K, H] expert SwiGLU outputs */
    float *eo;          /* [n_tok*K, C] expert outputs (ungated) */
    float *hs;          /* [n_tok, 2SH] shared pre-activations */
    float *as;          /* [n_tok, SH] shared SwiGLU outputs */
    float *step_load;   /* [E] routed pairs counted by backward since the last take */
    double *total_load; /* [E] routed pairs counted by backward since init */
    double *aux_tmp;    /* [E] work space of the aux-loss sums */
    fg_moe_layer_stats stats;
    /* expert parallelism (moe_ep.c): NULL runs every expert here; set, the kept rows go
     * to the ranks owning their experts and the outputs come back (training forwards) */
    struct fg_moe_ep_layer *ep;
    void *mem;
} fg_moe_layer;

/* Backward scratch; one can serve every layer of a model. */
typedef struct fg_moe_scratch {
    int max_tokens;
    float *d_eo;   /* [n_tok*K, C] */
    float *d_act;  /* [n_tok*K, H] */
    float *d_h;    /* [n_tok*K, 2H] */
    float *d_xg;   /* [n_tok*K, C] */
    float *d_as;   /* [n_tok, SH] */
    float *d_hs;   /* [n_tok, 2SH] */
    float *d_s;    /* [n_tok, E] gradient wrt router logits */
    double *seq_f; /* [E] SEQAUX f_e of the sequence being processed */
    void *mem;
} fg_moe_scratch;

/* Allocates the cache for up to max_tokens tokens (mc must be valid). FG_ERR_NOMEM
 * or FG_ERR_INVALID on failure, leaving L zeroed. */
fg_status fg_moe_layer_init(fg_moe_layer *L, const fg_moe_config *mc, int max_tokens);
void fg_moe_layer_free(fg_moe_layer *L); /* safe on a zeroed or freed layer */
fg_status fg_moe_scratch_init(fg_moe_scratch *S, const fg_moe_config *mc, int max_tokens);
void fg_moe_scratch_free(fg_moe_scratch *S);
/* Bytes fg_moe_layer_init / fg_moe_scratch_init allocate (for memory tables). */
size_t fg_moe_layer_bytes(const fg_moe_config *mc, int max_tokens);
size_t fg_moe_scratch_bytes(const fg_moe_config *mc, int max_tokens);

/* out[B*T, C] = shared(x) + sum over chosen e of gate_e * expert_e(x), x[B*T, C]
 * (tokens of sequence b are rows b*T .. b*T+T-1; T matters for SEQAUX only).
 * Sets L->stats (aux loss included). FG_ERR_INVALID if B*T > max_tokens. */
fg_status fg_moe_forward(fg_moe_layer *L, float *out, const float *x, const fg_moe_weights *w, int B, int T);
/* Backpropagates the last forward of L: dx[B*T,C] += dL/dx, dw->* += dL/dw (the
 * router weight through the gates and the aux loss; never the bias), where
 * dout[B*T,C] = dL/dout and the aux loss enters L with weight aux_scale (the
 * caller's loss scale). x and w must be those of the forward. Also adds the routed
 * counts to L->step_load and L->total_load (so evaluation forwards do not count). */
fg_status fg_moe_backward(fg_moe_layer *L, fg_moe_scratch *S, float *dx, const fg_moe_weights *dw, const float *dout,
                          const float *x, const fg_moe_weights *w, float aux_scale);

/* The history rule, after each optimizer step: pushes step_load[E] into the ring
 * hist[W,E] at slot (*hist_steps mod W), increments *hist_steps, sums the valid
 * slots into load_e and moves bias_e by
 *   gamma * sign(err_e) + gain * err_e,  err_e = (mean - load_e) / mean  (in [1 - E/K, 1])
 * (down when overloaded, up when underloaded, unchanged when exactly at the mean;
 * gain 0 is DeepSeek-V3's sign rule; with mean 0 the bias does not move). */
void fg_moe_balance_update(float *bias, float *hist, float *hist_steps, const float *step_load, int E, int W,
                           float gamma, float gain);

/* ---- expert parallelism (moe_ep.c; docs/DIST.md "Expert parallelism") ----
 * The ranks of ep (an fg_comm of the ep group) each own some experts (contiguous blocks
 * at first); a training forward (one with targets) sends each kept (token, expert) row
 * to the expert's owner and the output back, backward the same with the gradients, and
 * the owner accumulates its experts' weight gradients. Every rank keeps the whole flat
 * buffer: the gradients of the experts it does not own stay zero there, so the data-
 * parallel sum over the ep ranks completes them. fp32 only. ep NULL: off. The model
 * borrows ep until set to NULL or deleted. */
struct fg_comm;
fg_status fg_model_moe_set_ep(fg_model *m, struct fg_comm *ep);
/* 0: even training forwards run every expert here (the other ranks must not wait). */
void fg_model_moe_ep_enable(fg_model *m, int on);
/* owner[E] of MoE layer l (every rank of the group owning at least one expert, the same
 * on every rank): the placement of the following forwards. FG_ERR_INVALID naming the bad
 * entry. No weights move: every rank holds them all. */
fg_status fg_model_moe_ep_place(fg_model *m, int l, const int32_t *owner);
/* Layer l's placement (NULL without expert parallelism or for a dense layer), and the
 * group's size. */
const int32_t *fg_model_moe_ep_owner(const fg_model *m, int l, int *ep_size);

/* Placement from the load history. Each optimiser step (fg_model_post_step) adds the
 * step's global expert loads to a per-layer sum; fg_model_moe_ep_replace re-places every
 * MoE layer's experts from it (fg_moe_place) and starts the sum again. Reported: the
 * worst layer's max/mean per-rank load over the steps summed, with the placement in use
 * (before), with the new one on the same loads (after) and with the contiguous blocks of
 * the start (contiguous), and the experts moved. */
typedef struct fg_moe_placement_report {
    double before, after;
    double contiguous; /* the same loads on the first placement (contiguous blocks) */
    /* measured per micro-batch (the rows each rank computed; max/mean, summed over the
     * micro-batches, worst layer): [0] had the experts stayed in contiguous blocks, [1]
     * with the placement alone, [2] as run (placement + spill) */
    double per_micro[3];
    int moved;
    long steps;
} fg_moe_placement_report;
fg_status fg_model_moe_ep_replace(fg_model *m, fg_moe_placement_report *rep);
/* max over ranks / mean over ranks of sum of load[e] over owner[e] = rank (1 when no
 * load); rank_load[P] receives the sums. */
double fg_moe_rank_imbalance(const double *load, const int32_t *owner, int E, int P, double *rank_load);
/* The placement rule: longest-processing-time first into ranks of at most ceil(E/P)
 * experts, then swaps that lower the most loaded rank (E >= P). FG_ERR_NOMEM only. */
fg_status fg_moe_place(const double *load, int E, int P, int32_t *owner);
/* The spill (on by default): in each micro-batch, while a rank has more than its share
 * of the rows (+1%), blocks of its experts' rows (one source rank's rows of one expert)
 * go to the least loaded rank, the ones that rank sent itself first. Possible because
 * every rank holds every expert's weights; the expert's gradient is then summed over
 * ranks by the dp all-reduce like any other. Off: each expert's rows go to its owner. */
void fg_model_moe_ep_spill(fg_model *m, int on);
/* The ep group's size (0 without expert parallelism). */
int fg_model_moe_ep_size(const fg_model *m);
/* Bytes this rank sent to others through the expert all-to-alls so far. */
double fg_model_moe_ep_bytes(const fg_model *m);

#ifdef __cplusplus
}
#endif
#endif
