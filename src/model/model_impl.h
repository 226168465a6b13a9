/* model_impl.h: the fg_model struct and helpers shared by the files of src/model
 * (model.c: config, tables, forward/backward; generate.c: KV cache + sampler;
 * llmc.c: llm.c checkpoint import/export). Not a public header.
 *
 * Parameters are located by offsets (in floats) into the flat params/grads buffers;
 * FG_NO_TENSOR marks a tensor the layout does not have (e.g. biases in llama).
 */
#ifndef FRUGAL_MODEL_IMPL_H
#define FRUGAL_MODEL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "frugal/model.h"
#include "frugal/moe.h"

#define FG_NO_TENSOR ((size_t)-1)

/* Offsets of one layer's parameters (FG_NO_TENSOR when absent in this layout). */
typedef struct model_layer_off {
    size_t ln1w, ln1b;          /* [C] */
    size_t qkvw, qkvb;          /* [3C,C], [3C] */
    size_t attprojw, attprojb;  /* [C,C], [C] */
    size_t ln2w, ln2b;          /* [C] */
    size_t fcw, fcb;            /* [Fin,C], [Fin]: Fin = F (gpt2) or 2F = [gate | up] (llama) */
    size_t fcprojw, fcprojb;    /* [C,F], [C] */
    size_t moe[FG_MOE_N_ROLES]; /* MoE layers: offsets by fg_moe_role (fc*, fcproj* absent) */
    /* FFN sharing (share.c), seed form: per shared matrix j, U [n, rows, r] and V [n, cols, r]
     * (n = experts or 1); alpha [1] when learned */
    size_t share_u[4], share_v[4], share_alpha;
    /* MLA (mla.c; qkv* absent): r = mla_kv_rank, rq = mla_q_rank, R = mla_rope_dim,
     * D = HS + R the query/key head size */
    size_t mla_qa, mla_lnqw, mla_lnqb, mla_qb; /* [rq,C], [rq], [rq], [NH*D,rq] (rq > 0) */
    size_t mla_q;                              /* [NH*D,C] (rq == 0) */
    size_t mla_kva, mla_kr;                    /* [r,C], [R,C] (R > 0) */
    size_t mla_lnkvw, mla_lnkvb, mla_kvb;      /* [r], [r], [2C,r]: per head h rows k_nope_h, then v_h */
    /* int8 QAT with qat_quant = lsq (qat.c): per QK_* kind, the learned log step factor of
     * each output row ([rows]; routed experts [E*R]) */
    size_t qat_step[9];
} model_layer_off;

/* Scratch of one dense FFN call: its saved activations (training: one per layer;
 * generation: one token's worth). The MoE FFN adds its own fields here. */
typedef struct model_ffn_acts {
    float *fch;     /* [N,Fin] pre-activation */
    float *fch_act; /* [N,F] after GELU / SwiGLU */
} model_ffn_acts;

/* Saved activations of one layer, each sized for the capacity B*T = N rows. */
typedef struct model_layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* [N,C], [N], [N] (mean unused by RMSNorm) */
    float *qkv;                       /* [N,3C], q and k after RoPE (llama) */
    float *atty;                      /* [N,C] attention output before the projection */
    float *lse;                       /* [B,NH,T] logsumexp of each query row */
    float *res2;                      /* [N,C] residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* [N,C], [N], [N] */
    model_ffn_acts ffn;
    float *res3; /* [N,C] residual after the FFN = the layer's output */
} model_layer_acts;

typedef struct model_prob_id {
    float p;
    int32_t id;
} model_prob_id;

/* KV cache and one-token scratch for generation (allocated at first use). */
typedef struct model_kv {
    float *mem;          /* the one allocation everything below points into */
    float *k, *v;        /* [L,maxT,C] after RoPE (k) */
    float *x, *ln, *tmp; /* [C] residual, normed, projection output */
    float *mean, *rstd;  /* [1] */
    float *qkv;          /* [3C] */
    float *att;          /* [C] */
    float *scores;       /* [maxT] */
    model_ffn_acts ffn;  /* [Fin], [F] */
    float *logits;       /* [Vp] */
    float *probs;        /* [V] sampler work */
    model_prob_id *cand; /* [V] sampler work: candidates sorted by probability */
    /* batched prompt prefill (dense models): a second allocation, made at the first
     * prompt longer than one token, every buffer sized for maxT rows */
    float *pre;                    /* the allocation */
    float *px, *pln, *ptmp, *patt; /* [maxT,C] */
    float *pqkv;                   /* [maxT,3C] */
    float *plse, *pmean, *prstd;   /* [NH,maxT], [maxT], [maxT] */
    model_ffn_acts pffn;           /* [maxT,Fin], [maxT,F] */
} model_kv;

/* A tensor saved for backward in bf16 or fp8 (lowp.c): exactly one of bf / q8 is set.
 * fp8 codes carry one fp32 scale per row per 128 columns (DeepSeek-V3's 1x128 tiles). */
typedef struct model_saved {
    uint16_t *bf; /* [rows, cols] bf16 */
    uint8_t *q8;  /* [rows, cols] fp8 codes (format fmt) */
    float *scale; /* [rows, ceil(cols/128)] */
    int fmt;      /* fg_fp8_format of q8 */
    size_t cols;  /* row length (the saved tensor's C, 3C, Fin or Vp) */
} model_saved;

/* Saved activations of one layer in bf16 / fp8 precision (lowp.c). The norms save
 * their normalised x-hat (not the residual): the GEMM input x-hat * w + b and the
 * norm's input x-hat / rstd + mean are rebuilt from it, so no residual stream is kept
 * per layer. The FFN activation (GELU / SwiGLU) is recomputed from fch in backward. */
typedef struct model_lp_layer {
    model_saved xn1, qkv, atty, xn2, fch; /* [N,C], [N,3C] (bf16 always), [N,C], [N,C], [N,Fin] (dense) */
    float *mean1, *rstd1, *mean2, *rstd2; /* [N] (means unused by RMSNorm) */
    float *lse;                           /* [N*NH] */
} model_lp_layer;

/* State of a bf16 / fp8 model's forward and backward (lowp.c). One allocation: the
 * saved part, then scratch shared by forward and backward (the forward-only and
 * backward-only buffers overlap). */
typedef struct model_lp {
    uint8_t *mem;
    size_t saved_bytes, scratch_bytes;
    model_lp_layer *la;    /* [L] */
    model_saved xnf, dlog; /* final norm x-hat [N,C]; loss gradient (softmax - onehot) [N,Vp] */
    float *meanf, *rstdf;  /* [N] */
    float *losses;         /* [N] */
    float *ones, *zeros;   /* [C]: a norm's weight and bias giving x-hat */
    int act_fmt, grad_fmt; /* fp8 formats of activations and of activation gradients */
    int R;                 /* head row chunk */
    uint32_t *headp;       /* head weight packed for the row chunks' GEMMs (NULL: one chunk at capacity) */
    /* scratch used by both passes */
    float *lnb, *tmp;   /* [N,C] */
    float *qf;          /* [N,3C] */
    float *attf;        /* [N,C] */
    float *fchf, *actf; /* [N,Fin], [N,F] */
    uint8_t *q8s;       /* [N*W] fp8 codes of a transient operand (fp8 only) */
    float *q8sc;        /* [N*ceil(W/128)] their scales */
    /* forward only */
    float *res;  /* [N,C] the residual stream */
    float *hlog; /* [R,Vp] logits of one head chunk */
    /* backward only */
    float *dres, *dln, *datty; /* [N,C] */
    float *dqkv;               /* [N,3C] */
    float *dfch, *dfch_act;    /* [N,Fin], [N,F] (dfch_act is actf's memory) */
    uint16_t *hbf;             /* [R,Vp] bf16 rows of the fp8 loss gradient (fp8 only) */
    /* fp8 weights: one block row (128 rows) of codes and scales at a time */
    uint8_t *wq8;
    float *wsc;
    size_t wcols;      /* widest weight row */
    float lut[2][256]; /* fp8 decode tables (e4m3, e5m2) */
} model_lp;

/* Ops timed by the optional per-op profile (fg_model_profile). */
enum model_op {
    OP_EMBED,
    OP_NORM,
    OP_QKV,
    OP_ROPE,
    OP_ATTN,
    OP_ATTPROJ,
    OP_FC,
    OP_ACT,
    OP_FCPROJ,
    OP_RESID,
    OP_HEAD,
    OP_XENT,
    OP_ZERO,
    OP_COUNT
};

/* Runs `call`, adding its wall time to m's profile slot `op` when profiling is on. */
#define MODEL_PROF(m, op, call)                                                                                        \
    do {                                                                                                               \
        double t0_ = (m)->prof_on ? fg_time_sec() : 0.0;                                                               \
        call;                                                                                                          \
        if ((m)->prof_on)                                                                                              \
            (m)->prof[(m)->prof_dir][op] += fg_time_sec() - t0_;                                                       \
    } while (0)

struct fg_model {
    fg_model_config cfg; /* resolved: padded_vocab and d_ff filled in */
    int B, T;            /* activation capacity */
    int HS, F, Fin;      /* head size, FFN hidden size, FFN first-linear outputs */

    int n_tensors;
    fg_tensor_info *tensors;
    size_t n_params; /* stored (trained, checkpointed) parameters */
    size_t n_alloc;  /* floats in params / grads: n_params, then FFN sharing's materialised weights */
    float *params;   /* [n_alloc] */
    float *grads;    /* [n_alloc] */

    size_t wte, wpe, lnfw, lnfb, head; /* offsets; head == wte when tied */
    model_layer_off *layer;            /* [L] */

    /* activations: one allocation */
    float *acts;
    model_layer_acts *la; /* [L] */
    float *encoded;       /* [N,C] embedding output = layer 0 input */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits; /* [N,Vp] */
    float *losses; /* [N] */
    /* backward scratch (reused by every layer) */
    float *dres;               /* [N,C] gradient of the residual stream */
    float *dlogits;            /* [N,Vp] */
    float *dln;                /* [N,C] */
    float *dqkv;               /* [N,3C] */
    float *datty;              /* [N,C] */
    float *dfch;               /* [N,Fin] */
    float *dfch_act;           /* [N,F] */
    int32_t *inputs, *targets; /* [N] copies of the last forward's batch */

    /* state of the last forward */
    int cur_B, cur_T;
    int has_targets;
    int n_counted;       /* targets >= 0 */
    float dlogits_scale; /* dlogits currently hold dlogits_scale * (softmax - onehot) */
    int fwd_done;

    model_kv *kv; /* NULL until fg_model_generate / fg_model_decode_step */

    /* MoE (moe_model.c): caches of layers l >= n_dense_layers (zeroed for dense ones) */
    fg_moe_layer *moe;           /* [L], NULL for a dense model */
    fg_moe_scratch *moe_scratch; /* backward scratch shared by the MoE layers */
    float moe_loss_scale;        /* loss_scale of the running backward (aux losses) */
    struct fg_moe_ep *moe_ep;    /* expert parallelism (moe_ep.c), NULL: every expert here */
    int moe_ep_on;               /* training forwards use it; evaluation runs locally */

    /* bf16 / fp8 precision only (NULL for fp32): a bf16 copy of every parameter (fp8:
     * through 128x128 e4m3 blocks), refreshed at each forward (after the optimiser's
     * update), and two scratch rows-buffers of bf_cap values each for a GEMM's activation
     * operand and its output gradient (the layers' and the MoE experts'). */
    uint16_t *wbf;       /* [n_params] */
    uint16_t *xbf, *dbf; /* [bf_cap] */
    size_t bf_cap;
    int bf_live;  /* inside fg_model_forward / _backward of a bf16 model: wbf is current */
    int wbf_set;  /* fg_model_bf16_weights handed wbf out to be written: the next forward keeps it */
    model_lp *lp; /* bf16 / fp8 precision: saved activations and scratch (NULL for fp32) */

    fg_model_grad_hook grad_hook; /* after each layer's backward (fg_model_set_grad_hook) */
    void *grad_hook_ctx;
    struct model_qat *qat;     /* int8 QAT state (qat.c), NULL when cfg.qat_layers is "" */
    struct model_int8 *i8;     /* int8 inference weights (int8.c), NULL until fg_model_int8_load */
    float *share_scratch;      /* FFN sharing (share.c): one matrix of the largest shared shape */
    struct model_mtp *mtp;     /* multi-token prediction (mtp.c), NULL when cfg.mtp_depth == 0 */
    struct model_tp *tp;       /* tensor-parallel shard of the stage functions (stage_tp.c), NULL: off */
    struct model_slots *slots; /* extra activation sets of a pipeline stage (stage.c), NULL: none */
    struct model_mla *mla;     /* multi-head latent attention (mla.c), NULL when cfg.mla_kv_rank is 0 */

    int prof_on, prof_dir;    /* profiling enabled; 0 forward, 1 backward */
    double prof[2][OP_COUNT]; /* seconds per op since fg_model_profile(m, 1) */
    long prof_calls[2];       /* forward / backward calls profiled */
};

/* Dense FFN of layer l (or, later, the MoE FFN): out[N,C] = FFN(inp[N,C]);
 * saved activations go to a. */
void model_ffn_forward(fg_model *m, int l, float *out, const float *inp, int N, model_ffn_acts *a);
/* dinp[N,C] += d/dinp given dout[N,C]; parameter grads accumulate into m->grads.
 * dfch[N,Fin], dfch_act[N,F]: scratch, zeroed here. */
void model_ffn_backward(fg_model *m, int l, float *dinp, const float *dout, const float *inp, int N,
                        const model_ffn_acts *a, float *dfch, float *dfch_act);
/* Linear layer out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias, weight a view into
 * m->params, in fp32 (the fp32 model and generation; bf16 / fp8 run lowp.c's lin_fwd). */
void model_linear_forward(const fg_model *m, float *out, const float *inp, const float *weight, const float *bias,
                          int N, int C, int OC);
/* Its backward (accumulating, as fg_matmul_backward): dinp += dout @ weight, dweight +=
 * dout^T @ inp, dbias += column sums of dout (always fp32); any of the three may be NULL. */
void model_linear_backward(const fg_model *m, float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int N, int C, int OC);
/* Norm of the layout: LayerNorm (gpt2) or RMSNorm (llama; b and mean unused). */
void model_norm_forward(const fg_model *m, float *out, float *mean, float *rstd, const float *inp, const float *w,
                        const float *b, int N);

/* ---- int8 QAT hooks (qat.c) and int8 inference (int8.c) ---- */
/* The linear layers QAT and int8 inference can cover, as bits of a mask. */
enum { QK_QKV, QK_ATTPROJ, QK_FC, QK_FCPROJ, QK_HEAD, QK_EFC, QK_EPROJ, QK_SFC, QK_SPROJ, QK_N };
/* Parses a qat_layers list ("qkv,fc", "all", ...) into QK_* bits; a bad name is refused. */
fg_status model_qat_parse_layers(const char *list, unsigned *kinds);
/* The QK_* kind of a weight (a view into m->params) and its layer (n_layer for the
 * head); -1 when it is not a linear layer's weight. A routed expert's matrix is a view
 * at the start of one expert's block of the [E, rows, cols] tensor. */
int model_linear_kind(const fg_model *m, const float *weight, int *layer);
/* Points w's lin_fwd / lin_bwd at m's QAT and int8 hooks when either is on. */
void model_moe_lin_hooks(const fg_model *m, fg_moe_weights *w);
void model_int8_free(fg_model *m);
int model_int8_covers_experts(const fg_model *m); /* an expert's weights are in m's int8 file */
/* int8 forward of a layer loaded by fg_model_int8_load: 1 (done) or 0 (not int8). */
int model_int8_linear_forward(const fg_model *m, float *out, const float *inp, const float *weight, const float *bias,
                              int N, int C, int OC);
/* The prompt path's fused int8 layers (int8.c; 1: done, 0: not int8 here, nothing
 * written): x += linear(inp); out = linear(rmsnorm(x)); x += FFN(rmsnorm(x)) of dense
 * llama layer l (fch: [N, Fin] scratch). */
int model_int8_linear_add(const fg_model *m, float *x, const float *inp, const float *weight, const float *bias, int N,
                          int C, int OC);
int model_int8_norm_linear(const fg_model *m, float *out, const float *x, const float *normw, const float *weight,
                           const float *bias, int N, int C, int OC);
int model_int8_ffn_add(const fg_model *m, int l, float *x, float *fch, int N);
fg_status model_qat_init(fg_model *m); /* parses cfg.qat_layers; NULL state when off */
void model_qat_free(fg_model *m);
/* LSQ step tensors (qat_quant = lsq): their count, their entries in the table (after the
 * other tensors; offsets into m->layer[l].qat_step), their start value (0: the max rule). */
int model_qat_num_tensors(const fg_model *m);
size_t model_qat_add_tensors(fg_model *m, int *ti, size_t off);
void model_qat_init_weights(fg_model *m);
/* scale[0..rows) of the weight tensor at offset off (max|w|/127 per row) times the learned
 * step factors when LSQ covers it (the int8 file then holds what training saw). */
void model_qat_weight_scales(const fg_model *m, size_t off, float *scale, int rows);
/* Fake-quantized linear forward / backward when weight is a layer QAT covers: returns 1
 * (done), else 0 (the caller runs the plain layer). Same contracts as model_linear_*. */
int model_qat_linear_forward(const fg_model *m, float *out, const float *inp, const float *weight, const float *bias,
                             int N, int C, int OC);
int model_qat_linear_backward(const fg_model *m, float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, int N, int C, int OC);

static inline const float *model_p(const fg_model *m, size_t off)
{
    return off == FG_NO_TENSOR ? NULL : m->params + off;
}
static inline float *model_g(fg_model *m, size_t off)
{
    return off == FG_NO_TENSOR ? NULL : m->grads + off;
}

/* ---- MoE FFN hooks (moe_model.c) ---- */
bool model_is_moe_layer(const fg_model *m, int l);
int model_moe_num_tensors(const fg_model *m); /* MoE tensors appended to the table */
/* Appends the MoE tensors at m->tensors[*ti..] from flat offset off; returns the end. */
size_t model_moe_add_tensors(fg_model *m, int *ti, size_t off);
fg_status model_moe_init(fg_model *m); /* after the table: checks shapes, allocates caches */
void model_moe_free(fg_model *m);
void model_moe_ffn_forward(const fg_model *m, int l, float *out, const float *inp, int N);
void model_moe_ffn_backward(fg_model *m, int l, float *dinp, const float *dout, const float *inp, int N);
float model_moe_aux_loss(const fg_model *m); /* sum over MoE layers of the last forward */
void model_moe_init_weights(fg_model *m);    /* after the generic init: expert inputs, router at GPT-2 small's scale */
float moe_expert_init_std(int d_model);      /* that std: 0.02 sqrt(768 / d_model), >= 0.02 */
/* expert parallelism (moe_ep.c) */
void model_moe_ep_free(fg_model *m);
struct fg_moe_ep_layer *model_moe_ep_layer(const fg_model *m, int l);    /* NULL: run locally */
fg_status model_moe_ep_status(fg_model *m);                              /* first exchange failure */
void model_moe_ep_note_load(fg_model *m, int l, const float *step_load); /* each optimiser step */

/* ---- bf16 / fp8 precision (lowp.c) ---- */
fg_status model_lp_init(fg_model *m); /* allocates m->lp (after the tensor table) */
void model_lp_free(fg_model *m);
void model_lp_refresh_weights(fg_model *m); /* m->wbf from m->params (fp8: through 128x128 blocks) */
fg_status model_lp_forward(fg_model *m, const int32_t *targets, int B, int T, float *loss);
fg_status model_lp_backward(fg_model *m, float loss_scale);
/* Norm backward of the layout: dinp += ..., dw, db accumulate (model.c). */
void model_norm_backward(fg_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, const float *mean, const float *rstd, int N);

/* ---- the fp32 forward / backward in pieces (model.c), driven by model_forward /
 * model_backward and by the pipeline stages (stage.c) ---- */
/* Layer l on the residual stream res [B*T, C]: output in m->la[l].res3. */
void model_layer_forward(fg_model *m, int l, const float *res, int B, int T);
/* Final norm, head, loss (targets: m->targets, m->n_counted set by the caller). */
fg_status model_head_forward(fg_model *m, const float *res, const int32_t *targets, int N, float *loss);
/* m->dres = d(loss)/d(res_last) through the head and final norm (grads accumulate). */
void model_head_backward(fg_model *m, const float *res_last, float loss_scale);
/* m->dres: d/d(la[l].res3) in, d/d(res) out; res = the layer's forward input. */
void model_layer_backward(fg_model *m, int l, const float *res, int B, int T);

/* ---- tensor parallelism (stage_tp.c): the same pieces on this rank's shard ---- */
typedef struct model_tp model_tp;
void model_tp_free(fg_model *m);
void model_stage_free(fg_model *m);       /* slots and the tp shard (fg_model_delete) */
fg_status model_tp_status(fg_model *m);   /* the first failed reduce since the last call */
void model_tp_note_resident(fg_model *m); /* after a backward: the activations' resident pages */
void model_tp_layer_forward(fg_model *m, int l, const float *res, int B, int T);
void model_tp_layer_backward(fg_model *m, int l, const float *res, int B, int T);
void model_tp_embed_forward(fg_model *m, int N, int T);
void model_tp_embed_backward(fg_model *m, int N, int T);
fg_status model_tp_head_forward(fg_model *m, const float *res, const int32_t *targets, int N, float *loss);
void model_tp_head_backward(fg_model *m, const float *res_last, float loss_scale);

/* ---- cross-layer FFN sharing (share.c) ---- */
fg_status model_share_validate(const fg_model_config *cfg);
/* 1 when layer l's FFN matrices derive from layer l-1's (their stored tensors are absent) */
bool model_share_derived(const fg_model *m, int l);
/* 1 for the MoE roles sharing derives (experts' and shared expert's fc / proj) */
bool model_share_moe_role(int role);
int model_share_num_tensors(const fg_model *m);
size_t model_share_add_tensors(fg_model *m, int *ti, size_t off); /* U, V, alpha of derived layers */
/* After the table: points the derived layers' FFN offsets at the source's (plain) or at
 * materialised copies from off on (seed); returns the floats to allocate. */
size_t model_share_place(fg_model *m, size_t off);
fg_status model_share_init(fg_model *m); /* scratch; after params are allocated */
void model_share_free(fg_model *m);
void model_share_init_weights(fg_model *m);          /* after the generic init: alpha, U V^T scale */
void model_share_refresh(fg_model *m);               /* materialises the derived weights from params */
void model_share_zero_grads(fg_model *m);            /* at the start of a backward */
void model_share_fold(fg_model *m, int l);           /* after layer l's backward: its FFN grads to U, V, a, source */
size_t model_share_extra_weights(const fg_model *m); /* weights used per token minus stored, all experts */
double model_share_step_flops(const fg_model *m);    /* materialise + fold, one training step */

/* ---- multi-token prediction (mtp.c) ---- */
fg_status model_mtp_validate(const fg_model_config *cfg);
fg_status model_mtp_new(fg_model *m); /* before the tensor table: the modules' offsets */
int model_mtp_num_tensors(const fg_model *m);
size_t model_mtp_add_tensors(fg_model *m, int *ti, size_t off);
fg_status model_mtp_init(fg_model *m); /* after the table: activations for (B, T) */
void model_mtp_free(fg_model *m);
/* After the main forward with targets: the D modules on the last layer's output. */
fg_status model_mtp_forward(fg_model *m, int B, int T);
/* After the final norm's backward: adds the modules' gradient to m->dres and wte/head. */
void model_mtp_backward(fg_model *m, float loss_scale);
void model_mtp_act_bytes(const fg_model *m, size_t *saved, size_t *scratch);
double model_mtp_flops_per_token(const fg_model *m, int T); /* extra head and attention */
/* ---- multi-head latent attention (mla.c) ---- */
/* The MLA fields of a config (mla_*), checked by fg_model_config_validate. */
fg_status model_mla_config_validate(const fg_model_config *cfg);
/* Allocates m->mla (saved activations for capacity B*T, scratch) when MLA is on. */
fg_status model_mla_init(fg_model *m);
void model_mla_free(fg_model *m);
/* After the generic init: the latent norms' gains sqrt(C/r), sqrt(C/rq) (DeepSeek's
 * scaling factors at the width bottlenecks; mla.c). */
void model_mla_init_weights(fg_model *m);
/* Layer l's attention from the normed input x[N,C] to atty[N,C] (before the output
 * projection), saving what backward needs. */
void model_mla_forward(fg_model *m, int l, float *atty, const float *x, int B, int T);
/* Its backward: dx[N,C] += d/dx given datty[N,C]; parameter grads accumulate. */
void model_mla_backward(fg_model *m, int l, float *dx, const float *datty, const float *x, int B, int T);
/* One decode step of layer l at position pos with the compressed cache (the latent
 * and the RoPE key per token; W_UK absorbed into the query, W_UV into the output):
 * att[C] from the normed x[C]. */
fg_status model_mla_decode(fg_model *m, int l, float *att, const float *x, int pos);
/* Saved and scratch bytes of the MLA activations (0 when off). */
void model_mla_act_bytes(const fg_model *m, size_t *saved, size_t *scratch);

/* Frees the generation state (model.c calls it from fg_model_delete). */
void model_kv_free(fg_model *m);

#endif
