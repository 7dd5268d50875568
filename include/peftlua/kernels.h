/* kernels.h — explicit forward/backward kernels of the Llama layers (owner: kernels).
 *
 * llm.c style: one free function per layer over caller-provided (planned) f32 buffers.
 *  - Forward writes its output and caches what backward needs (saved state) in buffers the
 *    caller provides.
 *  - Backward ACCUMULATES (+=) into every gradient buffer it is given, so a tensor used twice
 *    (tied embeddings, residual streams) simply receives both contributions. Zero gradient
 *    buffers before a step. A NULL gradient pointer means "not needed" and is skipped.
 *  - One argument order everywhere: outputs, saved state, inputs, parameters, sizes.
 *  - Activations are f32 and contiguous, row-major, with the shapes given above each function.
 *    Weights of the linear and embedding kernels may be of any dtype of tensor.h (f32, f16,
 *    bf16, the GGUF block types, NF4): rows are dequantised on the fly (quant.h).
 *
 * Threads: the kernels use OpenMP (omp_get_max_threads()) and BLAS through pl_sgemm, on one
 * thread pool (see blas.h). Every kernel gives bit-identical results for any thread count:
 * work is split into pieces whose boundaries do not depend on the thread count and every
 * output element is reduced by one thread in a fixed order.
 *
 * Worked example (one Llama block's attention half, B=1, T tokens, no biases):
 *     pl_rmsnorm_fwd(xn, rstd, x, w_attn_norm, T, C, eps);
 *     pl_linear_fwd(q, xn, wq_data, wq_dtype, NULL, T, C, NH*HD);   // and k, v
 *     pl_rope_fwd(q, q, pos, T, NH, HD, theta, PL_ROPE_NORMAL);       // in place
 *     pl_attention_fwd(att_out, probs, q, k, v, 1, T, 0, T, NH, NKV, HD);
 *     pl_linear_fwd(o, att_out, wo_data, wo_dtype, NULL, T, NH*HD, C);
 *     pl_residual_fwd(x2, x, o, T*C);
 * Functions returning enum pl_status fail (with pl_last_error() set) only on bad arguments
 * (unsupported dtype, token id out of range, sizes not a multiple of the block size) or when
 * their small internal workspace cannot be allocated; the others cannot fail.
 */
#ifndef PEFTLUA_KERNELS_H
#define PEFTLUA_KERNELS_H

#include <stdint.h>
#include "peftlua/status.h"
#include "peftlua/tensor.h"

/* ---------------------------------------------------------------- embedding ---------------
 * out[N,C] = W[tokens[n], :]            W: [V,C] of any dtype (row dequantised), N = B*T.
 * Fails with PL_ERR_ARG naming the position if a token is outside [0,V). */
enum pl_status pl_embedding_fwd(float *out, const int32_t *tokens, const void *W,
                                enum pl_dtype wtype, int64_t N, int64_t V, int64_t C);
/* dW[tokens[n], :] += dout[n, :]        dW: [V,C] f32. Tokens are assumed valid (checked
 * by the forward pass); out-of-range ones are skipped. */
void pl_embedding_bwd(float *dW, const float *dout, const int32_t *tokens,
                      int64_t N, int64_t V, int64_t C);

/* ---------------------------------------------------------------- RMSNorm -----------------
 * rstd[n] = 1 / sqrt(mean_c x[n,c]^2 + eps);  out[n,c] = x[n,c] * rstd[n] * w[c]
 * x, out: [N,C]; rstd: [N] (saved); w: [C]. out may equal x. */
void pl_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w,
                    int64_t N, int64_t C, float eps);
/* With g = dout * w:  dx += rstd * g - x * rstd^3 * mean_c(g * x);   dw += sum_n dout * x * rstd
 * dx may be NULL (no input gradient), dw may be NULL (frozen weight). */
void pl_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *rstd,
                    const float *x, const float *w, int64_t N, int64_t C);

/* ---------------------------------------------------------------- linear ------------------
 * y[M,N] = x[M,K] · W[N,K]ᵀ (+ bias[N])     W: [N,K] (PyTorch Linear layout) of any dtype.
 * f32 W: one pl_sgemm. Other dtypes: W is dequantised in panels of rows (at most 256 rows and
 * 4 MiB of f32) into per-thread workspace, never as a whole f32 copy; (panel x row block)
 * pieces are shared among OpenMP threads, each one single-threaded sgemm writing a disjoint
 * block of y. y must not overlap x. Fails if wtype is not convertible or K is not a multiple
 * of its block size. */
enum pl_status pl_linear_fwd(float *y, const float *x, const void *W, enum pl_dtype wtype,
                             const float *bias, int64_t M, int64_t K, int64_t N);
/* dx[M,K] += dy[M,N] · W[N,K]      (any dtype; panels over N, threads over blocks of dx)
 * dW[N,K] += dy[M,N]ᵀ · x[M,K]     (only with an f32 W; pass NULL otherwise)
 * dbias[N] += sum_m dy[m,:]
 * Any of dx, dW, dbias may be NULL; none may overlap dy or x. */
enum pl_status pl_linear_bwd(float *dx, float *dW, float *dbias, const float *dy,
                             const float *x, const void *W, enum pl_dtype wtype,
                             int64_t M, int64_t K, int64_t N);

/* ---------------------------------------------------------------- LoRA --------------------
 * y[M,N] += scale · (x[M,K] · A[r,K]ᵀ) · B[N,r]ᵀ       xa[M,r] = x · Aᵀ is saved.
 * (Dropout, where used, is applied by the caller to the x given here.) */
void pl_lora_fwd(float *y, float *xa, const float *x, const float *A, const float *B,
                 float scale, int64_t M, int64_t K, int64_t N, int64_t r);
/* With g[M,r] = scale · dy · B:   dB += scale · dyᵀ · xa;   dA += gᵀ · x;   dx += g · A.
 * Any of dx, dA, dB may be NULL. */
enum pl_status pl_lora_bwd(float *dx, float *dA, float *dB, const float *dy, const float *xa,
                           const float *x, const float *A, const float *B, float scale,
                           int64_t M, int64_t K, int64_t N, int64_t r);
/* pl_lora_bwd for an adapter with input dropout: x is the dropped input (x ⊙ keep / (1 − p)),
 * which dA sees, and dx += ((g · A) ⊙ keep) · inv_keep, keep element i being bit i % 16 of
 * keep[i / 16] (i = m·K + k). The masked product is one pass over dx (no [M,K] workspace). */
enum pl_status pl_lora_bwd_dropout(float *dx, float *dA, float *dB, const float *dy,
                                   const float *xa, const float *x, const uint16_t *keep,
                                   float inv_keep, const float *A, const float *B, float scale,
                                   int64_t M, int64_t K, int64_t N, int64_t r);

/* ---------------------------------------------------------------- RoPE --------------------
 * x, out: [N,H,HD] (N = B*T tokens, H heads), pos[N] = position of token n (so generation
 * with a KV cache passes past+t). inv_freq[i] = theta^(-2i/HD), angle = pos * inv_freq[i].
 * PL_ROPE_NORMAL: pairs (x[2i], x[2i+1])          — llama.cpp "normal" mode, llama2.c, GGUF
 *                                                   llama files (Q/K rows permuted by convert).
 * PL_ROPE_NEOX:   pairs (x[i], x[i + HD/2])       — HF rotate_half / GPT-NeoX.
 * Each pair (a, b) becomes (a cos − b sin, a sin + b cos). out may equal x (in place). */
enum pl_rope_mode { PL_ROPE_NORMAL = 0, PL_ROPE_NEOX = 1 };
void pl_rope_fwd(float *out, const float *x, const int32_t *pos, int64_t N, int64_t H,
                 int64_t HD, float theta, enum pl_rope_mode mode);
/* dx += Rᵀ dout (the inverse rotation). dx must not alias dout. */
void pl_rope_bwd(float *dx, const float *dout, const int32_t *pos, int64_t N, int64_t H,
                 int64_t HD, float theta, enum pl_rope_mode mode);

/* While on, the (cos, sin) table of a call is kept for the next call with the same positions
 * span, head dim and theta (one table, counted as workspace while kept); off frees it. The
 * trainer turns it on around each batch: one table a step instead of four a layer. Same bits
 * either way. */
void pl_rope_keep(int on);

/* ---------------------------------------------------------------- attention ---------------
 * Causal grouped-query attention with an optional KV cache.
 *   q, out: [B,T,NH,HD]        queries of the T new tokens, at positions past .. past+T-1
 *   k, v:   [B,Tcap,NKV,HD]    keys/values of positions 0 .. past+T-1 (Tcap >= past+T; for a
 *                              training step Tcap = T and past = 0)
 *   probs:  [B,NH,T,Tk]        saved softmax probabilities, Tk = past+T (entries past the causal
 *                              limit are written as 0)
 * Query head h reads kv head h / (NH/NKV); NH must be a multiple of NKV.
 *   s[j] = q·k[j] / sqrt(HD) for j <= past+t;  p = softmax(s);  out = Σ_j p[j] v[j]
 * Threads over (b, h). In compute mode bf16 (gemm16.h) with T >= PL_GEMM16_MIN_ROWS both
 * directions take the products in bf16 with f32 sums (src/tensor/attn16.c; softmax f32;
 * threads over (b, kv head)); the bound is in gemm16.h. Same bits for any thread count. */
void pl_attention_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                      int64_t B, int64_t T, int64_t past, int64_t Tcap,
                      int64_t NH, int64_t NKV, int64_t HD);
/* dv[j] += Σ_t p[t,j] dout[t];  dp[t,j] = dout[t]·v[j];  ds = p ⊙ (dp − Σ_j p dp);
 * dq[t] += Σ_j ds[t,j] k[j] / sqrt(HD);   dk[j] += Σ_t ds[t,j] q[t] / sqrt(HD)
 * Shapes as the forward; dk, dv are [B,Tcap,NKV,HD]. Threads over (b, kv head), so each
 * thread owns the dk/dv rows it writes. Fails only if its row workspace cannot be allocated. */
enum pl_status pl_attention_bwd(float *dq, float *dk, float *dv, const float *dout,
                                const float *probs, const float *q, const float *k,
                                const float *v, int64_t B, int64_t T, int64_t past, int64_t Tcap,
                                int64_t NH, int64_t NKV, int64_t HD);

/* ---------------------------------------------------------------- SwiGLU ------------------
 * out[n] = silu(gate[n]) * up[n],  silu(g) = g * sigmoid(g).  All [N] (N = B*T*F). */
void pl_swiglu_fwd(float *out, const float *gate, const float *up, int64_t N);
/* dgate += dout * up * s * (1 + g (1 − s)),  s = sigmoid(g);   dup += dout * silu(g) */
void pl_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                   const float *up, int64_t N);

/* ---------------------------------------------------------------- residual ----------------
 * out = a + b (out may equal a or b);  bwd: da += dout, db += dout (either may be NULL). */
void pl_residual_fwd(float *out, const float *a, const float *b, int64_t N);
void pl_residual_bwd(float *da, float *db, const float *dout, int64_t N);
/* x[0..n) = 0 and dst[0..n) = src[0..n) (not overlapping), threads over 256 KiB pieces. */
void pl_fill_zero(float *x, int64_t n);
void pl_copy_f32(float *dst, const float *src, int64_t n);

/* ---------------------------------------------------------------- cross-entropy -----------
 * logits: [N,V]; targets[N] (< 0: ignored).  lse[n] = log Σ_v exp(logits[n,v]) (saved);
 * losses[n] = lse[n] − logits[n, targets[n]] (0 for ignored rows).
 * *mean = Σ losses / count over the non-ignored rows (0 when count is 0); *count = that count
 * (either of these two may be NULL; losses and lse may not). Fails with PL_ERR_ARG if a target is >= V. */
enum pl_status pl_crossentropy_fwd(float *losses, float *lse, double *mean, int64_t *count,
                                   const float *logits, const int32_t *targets,
                                   int64_t N, int64_t V);
/* dlogits[n,v] = scale * (softmax(logits[n])[v] − [v == targets[n]]) for non-ignored rows,
 * 0 for ignored ones. This one WRITES (it is the start of the backward pass) and dlogits may
 * equal logits (in place, saving an [N,V] buffer). scale is 1/count for the mean loss, or a
 * caller's value (e.g. 1/(count of the whole accumulated batch)). */
void pl_crossentropy_bwd(float *dlogits, const float *lse, const float *logits,
                         const int32_t *targets, float scale, int64_t N, int64_t V);

/* ---------------------------------------------------------------- 16-bit activations -----
 * Storage of saved activations in 16 bits (mixed precision): values are computed in f32 and
 * rounded into a 16-bit slot, then widened back to f32 before the backward reads them.
 *   PL_BF16: the top 16 bits of the f32 after round-to-nearest-even on the dropped 16:
 *            h = (u + 0x7fff + ((u >> 16) & 1)) >> 16, u the f32 bits; NaN stays a quiet NaN.
 *            Relative error <= 2^-9; the f32 exponent range is kept (no overflow).
 *   PL_F16:  IEEE binary16, round-to-nearest-even (F16C's vcvtps2ph, or the same rounding in
 *            scalar code): |x| >= 65520 becomes ±inf, |x| < 2^-14 is subnormal (absolute step
 *            2^-24), below 2^-25 it is 0. Relative error <= 2^-11 in the normal range.
 * Widening is exact (every 16-bit value is an f32). Elements are independent, so the result
 * does not depend on the thread count. t is PL_BF16 or PL_F16 (any other value is treated as
 * PL_BF16). */
void pl_act16_store(uint16_t *dst, const float *src, int64_t n, enum pl_dtype t);
void pl_act16_load(float *dst, const uint16_t *src, int64_t n, enum pl_dtype t);

#endif
