/* kernel_ops.h: THE list of kernel ops, each once: return type, name, parameter list,
 * argument names and the shape check run at the public entry point (an X-macro list).
 *
 * Not a normal header: it has no include guard on purpose. Whoever includes it defines
 * FG_KERNEL_OP(ret, name, params, args, check) first; the file expands every entry
 * and #undefs the macro. kernels.h turns it into the fg_<op> and fg_<op>_ref
 * prototypes, src/kernels/kernels_impl.h into the typed table slots and the variant
 * prototypes, dispatch.c into the public wrappers and the op names. Adding an op is
 * one entry here plus its fg_<op>_ref; its contract is the comment above its entry.
 * Conventions are in kernels.h. `check` is an expression over the parameters that must
 * hold (FG_ASSERT at entry: a caller bug aborts with the condition).
 */
#ifndef FG_KERNEL_OP /* included without a definition (e.g. by a linter): expand to nothing */
#define FG_KERNEL_OP(ret, name, params, args, check)
#endif

/* clang-format off */

/* ---- GEMM ---- */
/* C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major, op(X) = X or X^T
 * (trans_a/trans_b nonzero). Plain BLAS semantics (lda/ldb/ldc in elements). */
FG_KERNEL_OP(void, sgemm,
             (int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc),
             (trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
             M >= 0 && N >= 0 && K >= 0)

/* ---- bf16 (docs/KERNELS.md "bf16 GEMM") ----
 * bf16 values are stored as uint16_t: the top half of an fp32. */
/* out[i] = bf16(in[i]), round to nearest even (ties to the even bf16), subnormals
 * rounded the same way (not flushed), inf kept, NaN -> quiet NaN with the sign and the
 * top payload bits (in >> 16 | 0x0040). n values; out and in do not overlap. */
FG_KERNEL_OP(void, cvt_f32_bf16, (uint16_t *out, const float *in, size_t n), (out, in, n), 1)
/* out[i] = (float)in[i], exact (in << 16). */
FG_KERNEL_OP(void, cvt_bf16_f32, (float *out, const uint16_t *in, size_t n), (out, in, n), 1)
/* C[M,N] (fp32) = alpha * op(A) @ op(B) + beta * C with A, B bf16 and every product
 * summed in fp32 (bf16 x bf16 is exact in fp32): sgemm's layout, transposes, ld and
 * beta == 0 rules. Linear layer: forward NT (x @ W^T), dinp NN, dweight TN. Error vs
 * the exact sum within gamma_{K+2} (|alpha| sum|a||b| + |beta||c|) (docs/KERNELS.md). */
FG_KERNEL_OP(void, bgemm,
             (int trans_a, int trans_b, int M, int N, int K, float alpha, const uint16_t *A, int lda, const uint16_t *B,
              int ldb, float beta, float *C, int ldc),
             (trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
             M >= 0 && N >= 0 && K >= 0)
/* P = op(B) [K,N] packed once for many bgemm_packed calls with that B (the head weight
 * over the head's row chunks): fg_bgemm_packed_words(N, K) words, strips of
 * FG_BGEMM_NR columns, each ceil(K/2) pairs; word p * FG_BGEMM_NR + j % FG_BGEMM_NR of
 * strip j / FG_BGEMM_NR (strips ceil(K/2) * FG_BGEMM_NR words apart) holds op(B)(2p, j)
 * in its low half and op(B)(2p+1, j) in its high half, zeros past K and N. The layout is
 * the same for every variant, so P from one variant feeds another. P is 64-byte aligned
 * (fg_malloc's). */
FG_KERNEL_OP(void, bgemm_pack_b, (uint32_t *P, int trans_b, int N, int K, const uint16_t *B, int ldb),
             (P, trans_b, N, K, B, ldb), N >= 0 && K >= 0 && ((uintptr_t)P & 63) == 0)
/* bgemm with op(B) packed by bgemm_pack_b: C = alpha * op(A) @ op(B) + beta * C, the
 * bound of bgemm; the ref and avx512bf16 variants give their bgemm's result bit for bit. */
FG_KERNEL_OP(void, bgemm_packed,
             (int trans_a, int M, int N, int K, float alpha, const uint16_t *A, int lda, const uint32_t *P, float beta,
              float *C, int ldc),
             (trans_a, M, N, K, alpha, A, lda, P, beta, C, ldc), M >= 0 && N >= 0 && K >= 0 && ((uintptr_t)P & 63) == 0)

/* The bf16 model's norm output from its saved bf16 x-hat, as the next GEMM reads it:
 * v = x[n,c] * w[c] + b[c] (b NULL: + 0.0f) in fp32, one multiply then one add (not
 * fused); outf[n,c] = v when outf, out[n,c] = bf16(v) (cvt_f32_bf16's rule) when out. */
FG_KERNEL_OP(void, bf16_affine,
             (uint16_t *out, float *outf, const uint16_t *x, const float *w, const float *b, int N, int C),
             (out, outf, x, w, b, N, C), N >= 0 && C >= 0)
/* The bf16 model's LayerNorm forward in one pass per row: mean, rstd as layernorm_forward
 * writes them; xhat[n,c] = bf16(layernorm_forward's output with weight 1, bias 0) (the
 * saved x-hat) and out = bf16_affine(xhat, w, b) (the next GEMM's operand), the bits the
 * variant of layernorm_forward of the same name, cvt_f32_bf16 and bf16_affine give. */
FG_KERNEL_OP(void, layernorm_forward_bf16,
             (uint16_t *xhat, uint16_t *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
              int N, int C, float eps),
             (xhat, out, mean, rstd, inp, w, b, N, C, eps), N >= 0 && C > 0)
/* The bf16 model's GELU backward from the saved bf16 input: v = what gelu_backward's
 * variant of the same name adds into a zeroed dinp for the input (float)inp[i] and dout[i]
 * (so +0 for a -0 product); dinp[i] = v when dinp, dinpb[i] = bf16(v) when dinpb. */
FG_KERNEL_OP(void, gelu_backward_bf16,
             (uint16_t *dinpb, float *dinp, const float *dout, const uint16_t *inp, size_t n),
             (dinpb, dinp, dout, inp, n), 1)
/* The bf16 model's SwiGLU forward written only as the next GEMM's operand: out[N,H] =
 * bf16(what swiglu_forward's variant of the same name writes) (cvt_f32_bf16's rule). */
FG_KERNEL_OP(void, swiglu_forward_bf16, (uint16_t *out, const float *inp, int N, int H), (out, inp, N, H), 1)
/* The bf16 model's SwiGLU backward written only as the next GEMMs' operand: dinpb[N,2H] =
 * bf16(v), v = what swiglu_backward's variant of the same name adds into a zeroed dinp
 * (so +0 for a -0 product). SET: no zeroing, no fp32 output. */
FG_KERNEL_OP(void, swiglu_backward_bf16, (uint16_t *dinpb, const float *dout, const float *inp, int N, int H),
             (dinpb, dout, inp, N, H), 1)

/* ---- int8 (docs/KERNELS.md "int8 GEMM"; issue 14) ----
 * C[M,N] (int32) = A[M,K] (uint8) @ B[N,K]^T (int8), exact, C overwritten: a linear
 * layer's forward layout (activations x weights^T, both K-contiguous rows). Exact
 * whenever every result fits int32, which K <= 65536 guarantees (|a b| <= 255 * 128).
 * A symmetric int8 activation q is passed as q + 128 and the caller subtracts
 * 128 * sum_k B[n,k] (the u8 x s8 form is what vpdpbusd multiplies). */
FG_KERNEL_OP(void, gemm_u8s8,
             (int M, int N, int K, const uint8_t *A, int lda, const int8_t *B, int ldb, int32_t *C, int ldc),
             (M, N, K, A, lda, B, ldb, C, ldc),
             M >= 0 && N >= 0 && K >= 0 && K <= 65536 && lda >= K && ldb >= K && ldc >= N)
/* B [N,K] (int8, a linear layer's weight rows) packed once for gemm_u8s8_packed:
 * fg_gemm_u8s8_packed_words(N, K) words, strips of FG_I8_NR rows of B, each ceil(K/4)
 * quads; word q * FG_I8_NR + j % FG_I8_NR of strip j / FG_I8_NR (strips ceil(K/4) *
 * FG_I8_NR words apart) holds B(j, 4q + b) in its byte b, zeros past K and N. The layout
 * is the same for every variant. P is 64-byte aligned (fg_malloc's). */
FG_KERNEL_OP(void, gemm_u8s8_pack_b, (uint32_t *P, int N, int K, const int8_t *B, int ldb), (P, N, K, B, ldb),
             N >= 0 && K >= 0 && K <= 65536 && ldb >= K && ((uintptr_t)P & 63) == 0)
/* The int8 linear layer with its dequantization fused, B packed by gemm_u8s8_pack_b:
 * acc = gemm_u8s8's exact sum A(i,:) . B(j,:), then in fp32, one rounding per step in
 * this order (no fused multiply-add): v = (sa[i] * sb[j]) * (float)(acc - comp[j]);
 * v = v + (bias ? bias[j] : 0.0f); out[i,j] = resid ? resid[i,j] + v : v (resid and out
 * row stride ldo; resid may be out). comp[j] = 128 * sum_k B(j,k) takes the + 128 of
 * A's codes back out. Every variant gives the same floats. */
FG_KERNEL_OP(void, gemm_u8s8_packed,
             (int M, int N, int K, const uint8_t *A, int lda, const uint32_t *P, const float *sa, const float *sb,
              const int32_t *comp, const float *bias, const float *resid, float *out, int ldo),
             (M, N, K, A, lda, P, sa, sb, comp, bias, resid, out, ldo),
             M >= 0 && N >= 0 && K >= 0 && K <= 65536 && lda >= K && ldo >= N && ((uintptr_t)P & 63) == 0)
/* Per-token activation codes for the int8 GEMMs: scale[n] = max_c |x[n,c]| / 127 (1 for
 * an all-zero row), u[n,c] = clamp(nearbyint(x[n,c] * (1 / scale[n])), -127, 127) + 128
 * (fg_int8_quantize_act_u8's rule, bit for bit in every variant). */
FG_KERNEL_OP(void, quantize_u8, (uint8_t *u, float *scale, const float *x, int N, int C), (u, scale, x, N, C),
             N >= 0 && C >= 0)
/* rmsnorm_forward then quantize_u8 of its output in one pass over the row, the output
 * never written: u, scale are bit for bit quantize_u8 of the same level's
 * rmsnorm_forward output (ref of ref, avx512 of avx512). */
FG_KERNEL_OP(void, rmsnorm_quant_u8,
             (uint8_t *u, float *scale, const float *inp, const float *weight, int N, int C, float eps),
             (u, scale, inp, weight, N, C, eps), N >= 0 && C >= 0)
/* swiglu_forward then quantize_u8 of its output [N,H] (the FFN's down-projection input),
 * as rmsnorm_quant_u8: bit for bit the same level's swiglu_forward, quantized. */
FG_KERNEL_OP(void, swiglu_quant_u8, (uint8_t *u, float *scale, const float *inp, int N, int H), (u, scale, inp, N, H),
             N >= 0 && H >= 0)

/* ---- int8 fake quantization (QAT, docs/PRECISION.md; issue 14) ----
 * The rules of src/precision/quant.c bit for bit in every variant (the PyTorch-exact
 * ones its fixture tests hold): scale[r] = max_c |x[r,c]| / 127 (1 for an all-zero row;
 * NaN ignored as fmaxf does), fg_int8_scales_rows. */
FG_KERNEL_OP(void, fq_scales, (float *scale, const float *x, int N, int C), (scale, x, N, C), N >= 0 && C >= 0)
/* out[r,c] = (clamp(nearbyint(x[r,c] * (1 / s)), -127, 127) + 0) * s, s = scale[r * stride]
 * (stride 0: one scale), ties to even, -0 codes to +0: fg_fake_quant_rows. out may be x. */
FG_KERNEL_OP(void, fake_quant, (float *out, const float *x, const float *scale, int stride, int N, int C),
             (out, x, scale, stride, N, C), N >= 0 && C >= 0 && stride >= 0)
/* The straight-through backward: dx = dout where nearbyint(x * (1 / s)) is within +-127,
 * else 0 (NaN: 0): fg_fake_quant_rows_backward. dx may be dout. */
FG_KERNEL_OP(void, fake_quant_mask,
             (float *dx, const float *dout, const float *x, const float *scale, int stride, int N, int C),
             (dx, dout, x, scale, stride, N, C), N >= 0 && C >= 0 && stride >= 0)

/* Linear layer, PyTorch layout: out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC].
 * bias may be NULL. */
FG_KERNEL_OP(void, matmul_forward,
             (float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC),
             (out, inp, weight, bias, N, C, OC),
             N >= 0 && C >= 0 && OC >= 0)
/* dinp[N,C] += dout[N,OC] @ weight; dweight[OC,C] += dout^T @ inp; dbias[OC] += sum_n dout. */
FG_KERNEL_OP(void, matmul_backward,
             (float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight,
              int N, int C, int OC),
             (dinp, dweight, dbias, dout, inp, weight, N, C, OC),
             N >= 0 && C >= 0 && OC >= 0)

/* ---- embeddings ---- */
/* out[N,C] = wte[tokens[n]] (+ wpe[pos[n]] when wpe != NULL; pos[n] = n % T). */
FG_KERNEL_OP(void, embedding_forward,
             (float *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int T, int C),
             (out, tokens, wte, wpe, N, T, C),
             N >= 0 && C >= 0 && (!wpe || T > 0))
/* dwte[tokens[n]] += dout[n]; dwpe[n % T] += dout[n] when dwpe != NULL. */
FG_KERNEL_OP(void, embedding_backward,
             (float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int N, int T, int C),
             (dwte, dwpe, dout, tokens, N, T, C),
             N >= 0 && C >= 0 && (!dwpe || T > 0))

/* ---- norms ---- */
/* out = inp / sqrt(mean(inp^2) + eps) * weight; rstd[N] saved for backward. */
FG_KERNEL_OP(void, rmsnorm_forward,
             (float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps),
             (out, rstd, inp, weight, N, C, eps),
             1)
FG_KERNEL_OP(void, rmsnorm_backward,
             (float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
              const float *rstd, int N, int C),
             (dinp, dweight, dout, inp, weight, rstd, N, C),
             1)
/* The bf16 model's RMSNorm forward in one pass per row: rstd as rmsnorm_forward writes it;
 * xhat[n,c] = bf16(rmsnorm_forward's output with weight 1) (the saved x-hat), then
 * bf16_affine(xhat, w, NULL) into out (bf16, the next GEMM's operand) when out and outf
 * (fp32) when outf: the bits the variant of rmsnorm_forward of the same name,
 * cvt_f32_bf16 and bf16_affine give. */
FG_KERNEL_OP(void, rmsnorm_forward_bf16,
             (uint16_t *xhat, uint16_t *out, float *outf, float *rstd, const float *inp, const float *w, int N, int C,
              float eps),
             (xhat, out, outf, rstd, inp, w, N, C, eps), N >= 0 && C > 0)
/* The bf16 model's RMSNorm backward from its saved bf16 x-hat: rmsnorm_backward's variant
 * of the same name on inp[n,c] = (float)xhat[n,c] * (1.0f / rstd[n]) + 0.0f (the input
 * rebuilt as the model did, one multiply then one add), bit for bit, without inp in memory. */
FG_KERNEL_OP(void, rmsnorm_backward_bf16,
             (float *dinp, float *dweight, const float *dout, const uint16_t *xhat, const float *weight,
              const float *rstd, int N, int C),
             (dinp, dweight, dout, xhat, weight, rstd, N, C),
             N >= 0 && C >= 0)
/* out = (inp - mean) * rstd * weight + bias; mean[N], rstd[N] saved. */
FG_KERNEL_OP(void, layernorm_forward,
             (float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, int N,
              int C, float eps),
             (out, mean, rstd, inp, weight, bias, N, C, eps),
             1)
FG_KERNEL_OP(void, layernorm_backward,
             (float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight,
              const float *mean, const float *rstd, int N, int C),
             (dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C),
             1)

/* ---- RoPE ----
 * x[B,T,NH,HS] rotated in place, HF/NeoX "rotate_half" convention: for i < HS/2,
 * pair (x[i], x[i+HS/2]) rotated by angle (pos0 + t) * theta^(-2i/HS).
 * row_stride: floats between consecutive (b,t) rows (NH*HS for a plain tensor,
 * 3C when x points into a packed qkv buffer). Backward = rotation by -angle,
 * applied in place to the gradient. */
FG_KERNEL_OP(void, rope_forward,
             (float *x, int B, int T, int NH, int HS, int row_stride, int pos0, float theta),
             (x, B, T, NH, HS, row_stride, pos0, theta),
             HS % 2 == 0 && row_stride >= NH * HS)
FG_KERNEL_OP(void, rope_backward,
             (float *dx, int B, int T, int NH, int HS, int row_stride, int pos0, float theta),
             (dx, B, T, NH, HS, row_stride, pos0, theta),
             HS % 2 == 0 && row_stride >= NH * HS)

/* ---- causal self-attention (flash-style: memory linear in T per row) ----
 * qkv[B,T,3C]: q at [0,C), k at [C,2C), v at [2C,3C) of each row; head h uses
 * columns [h*HS, (h+1)*HS) of each. out[B,T,C]; lse[B,NH,T] = logsumexp of the
 * scaled scores of each query row (saved for backward). scale = 1/sqrt(HS). */
FG_KERNEL_OP(void, attention_forward,
             (float *out, float *lse, const float *qkv, int B, int T, int C, int NH),
             (out, lse, qkv, B, T, C, NH),
             NH > 0 && C % NH == 0 && B >= 0 && T >= 0)
/* dqkv[B,T,3C] += gradient through attention, from dout[B,T,C]; needs the forward's
 * out and lse (softmax recomputed, never stored as T x T). */
FG_KERNEL_OP(void, attention_backward,
             (float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B, int T,
              int C, int NH),
             (dqkv, dout, qkv, out, lse, B, T, C, NH),
             NH > 0 && C % NH == 0 && B >= 0 && T >= 0)

/* The same attention on a bf16 qkv[B,T,3C] (docs/KERNELS.md "bf16 attention"): the
 * products on bf16 operands, scores, softmax, lse and every sum in fp32. Forward: S =
 * scale q.k summed in fp32 (exact products), lse as attention_forward, O = sum_j
 * bf16(p_j) v_j / l with p_j = exp(s_j - m) (m a running max, l the fp32 sum of the
 * unrounded p_j). out[B,T,C] and lse[B,NH,T] fp32. */
FG_KERNEL_OP(void, attention_bf16_forward,
             (float *out, float *lse, const uint16_t *qkv, int B, int T, int C, int NH),
             (out, lse, qkv, B, T, C, NH),
             NH > 0 && C % NH == 0 && B >= 0 && T >= 0)
/* dqkv[B,T,3C] (fp32) += the gradient of attention_bf16_forward from dout[B,T,C] (fp32)
 * with out (fp32, the forward's output as the caller kept it) and lse: p = exp(s - lse)
 * in fp32, g = bf16(dout), dP = g.v, D = dout.out (fp32), dS = bf16(scale p (dP - D));
 * dV += bf16(p) g, dQ += dS k, dK += dS q, all sums in fp32. */
FG_KERNEL_OP(void, attention_bf16_backward,
             (float *dqkv, const float *dout, const uint16_t *qkv, const float *out, const float *lse, int B, int T,
              int C, int NH),
             (dqkv, dout, qkv, out, lse, B, T, C, NH),
             NH > 0 && C % NH == 0 && B >= 0 && T >= 0)

/* ---- activations ---- */
/* GELU, tanh approximation (GPT-2): out[n] = 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))). */
FG_KERNEL_OP(void, gelu_forward, (float *out, const float *inp, size_t n), (out, inp, n), 1)
FG_KERNEL_OP(void, gelu_backward, (float *dinp, const float *dout, const float *inp, size_t n),
             (dinp, dout, inp, n), 1)
/* SwiGLU: inp[N,2H] holds gate a = inp[:, :H] and up b = inp[:, H:]; out[N,H] = silu(a) * b. */
FG_KERNEL_OP(void, swiglu_forward, (float *out, const float *inp, int N, int H), (out, inp, N, H), 1)
FG_KERNEL_OP(void, swiglu_backward, (float *dinp, const float *dout, const float *inp, int N, int H),
             (dinp, dout, inp, N, H), 1)

/* ---- fused softmax + cross-entropy over logits[N,Vp] (first V columns real) ----
 * losses[n] = -log softmax(logits[n, :V])[targets[n]]; rows with targets[n] < 0 are
 * ignored (loss 0, gradient 0). When dlogits != NULL it is SET (not accumulated) to
 * dloss * (softmax - onehot) on real columns and 0 on padding columns; dlogits may
 * alias logits. Returns the sum of losses over counted rows. */
FG_KERNEL_OP(double, softmax_xent,
             (float *dlogits, float *losses, const float *logits, const int32_t *targets, int N, int V, int Vp,
              float dloss),
             (dlogits, losses, logits, targets, N, V, Vp, dloss),
             N >= 0 && V > 0 && V <= Vp)
/* softmax_xent for the bf16 model's head: dlogits[N,Vp] (bf16) = bf16(the fp32 dlogits
 * that softmax_xent's variant of the same level writes), cvt_f32_bf16's rounding, in one
 * pass per row (the row stays in cache; no fp32 gradient array is written and read back).
 * logits is scratch: the variant may overwrite it. Returns softmax_xent's sum. */
FG_KERNEL_OP(double, softmax_xent_bf16,
             (uint16_t *dlogits, float *losses, float *logits, const int32_t *targets, int N, int V, int Vp,
              float dloss),
             (dlogits, losses, logits, targets, N, V, Vp, dloss),
             N >= 0 && V > 0 && V <= Vp)

/* ---- elementwise / reductions used by the model and the optimiser ---- */
/* out = a + b (out may alias a or b) */
FG_KERNEL_OP(void, add, (float *out, const float *a, const float *b, size_t n), (out, a, b, n), 1)
/* A bias gradient: db[c] += s_c, s_c = the fp32 sum of x[0,c], x[1,c], ... x[N-1,c] in
 * row order from +0 (each add rounded: the bits of acc = acc + row, row by row). */
FG_KERNEL_OP(void, colsum_add, (float *db, const float *x, int N, int C), (db, x, N, C), N >= 0 && C >= 0)
/* y += a x */
FG_KERNEL_OP(void, axpy, (float *y, float a, const float *x, size_t n), (y, a, x, n), 1)
/* x *= s */
FG_KERNEL_OP(void, scale, (float *x, float s, size_t n), (x, s, n), 1)
/* sum x^2, in double */
FG_KERNEL_OP(double, sumsq, (const float *x, size_t n), (x, n), 1)

/* AdamW (decoupled decay, PyTorch semantics), step t >= 1:
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t);
 * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p). */
FG_KERNEL_OP(void, adamw_update,
             (float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1, float beta2,
              float eps, float weight_decay, int t),
             (params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t),
             1)

/* clang-format on */
#undef FG_KERNEL_OP
