/* moe_impl.h (private to src/model): what the MoE block (moe.c) shares with its expert-
 * parallel execution (moe_ep.c): one expert's fp32 forward and backward on given rows. */
#ifndef FRUGAL_MOE_IMPL_H
#define FRUGAL_MOE_IMPL_H

#include "frugal/moe.h"

/* h[ne,2H] = xg fc_e^T, act[ne,H] = swiglu(h), eo[ne,C] = act proj_e^T. */
void moe_expert_rows_forward(const fg_moe_config *mc, const fg_moe_weights *w, int e, const float *xg, float *h,
                             float *act, float *eo, int ne);
/* From d_eo[ne,C]: d_act, d_h (work), d_xg[ne,C] set; dw's expert e accumulates. */
void moe_expert_rows_backward(const fg_moe_config *mc, const fg_moe_weights *dw, const fg_moe_weights *w, int e,
                              const float *d_eo, float *d_act, float *d_h, float *d_xg, const float *xg, const float *h,
                              const float *act, int ne);
/* Experts side by side on the threads (moe.c's choice, see there; never with w's int8 hooks). */
int moe_parallel_over_experts(const fg_moe_config *mc, const fg_moe_weights *w);

/* moe_ep.c: the expert section of fg_moe_forward / fg_moe_backward when L->ep is set:
 * L's kept rows (L->xg at L->offs) go to the experts' owners, L->eo comes back; in
 * backward S->d_eo goes, S->d_xg comes back and dw gets the owned experts' gradients. */
fg_status moe_ep_forward(fg_moe_layer *L, const fg_moe_weights *w);
fg_status moe_ep_backward(fg_moe_layer *L, fg_moe_scratch *S, const fg_moe_weights *dw, const fg_moe_weights *w);

#endif
