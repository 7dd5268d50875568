/* gemm16.h — matrix products with bf16 inputs and f32 accumulation (owner: kernels).
 *
 * What it is for: the frozen base's projections in training (forward y = x·Wᵀ and input
 * gradient dx += dy·W) at twice the f32 multiply rate, on CPUs with AVX512_BF16
 * (`vdpbf16ps`: 32 bf16 products summed into 16 f32 lanes per instruction). The weight may be
 * of any float or block dtype; it is dequantised straight into bf16 panels (never a whole f32
 * or bf16 copy). The activation operand is rounded to bf16 (round to nearest even).
 *
 * Numerics (checked in tests/c/test_gemm16.c): with u = 2^-8 the unit roundoff of bf16
 * (8 significant bits), each product â·ŵ of rounded inputs is exact in f32 and the sums are
 * f32, so for every output element
 *     |ĉ − c| ≤ (2u + u² + γ_K (1 + u)²) · Σ_k |a_k| |w_k|,   γ_K = K·2^-24 / (1 − K·2^-24),
 * c the exact product of the f32 inputs (w the dequantised weight). Against the exact product
 * of the bf16-rounded inputs the bound is γ_K · Σ_k |â_k| |ŵ_k| (only the f32 summation).
 * Subnormal inputs and results are flushed to zero by the instruction (its DAZ/FTZ rule).
 *
 * Compute mode: pl_compute_set(PL_COMPUTE_BF16) makes pl_linear_fwd and the input and weight
 * gradients of pl_linear_bwd (kernels.h) use these products for products of at least PL_GEMM16_MIN_ROWS rows;
 * the trainer sets it around each batch for `compute = "bf16"` (train.h cfg.compute). It is a process-wide setting like the
 * thread count. Where the CPU has no AVX512_BF16 (or the build is not x86-64 GCC/Clang) the
 * mode reads back as PL_COMPUTE_F32 and everything runs the f32 path unchanged.
 * Like pl_sgemm, the work is cut into pieces by shape alone: results are bit-identical for any
 * thread count.
 */
#ifndef PEFTLUA_GEMM16_H
#define PEFTLUA_GEMM16_H

#include <stdint.h>
#include "peftlua/status.h"
#include "peftlua/tensor.h"

enum pl_compute { PL_COMPUTE_F32 = 0, PL_COMPUTE_BF16 = 1 };

/* Smaller products (generation, few rows) stay f32: packing would cost more than it saves. */
#define PL_GEMM16_MIN_ROWS 16

/* 1 where this build and CPU run the bf16 kernel (AVX512_BF16 at run time), else 0. */
int pl_gemm16_available(void);
/* The ISA the bf16 kernel uses, for benchmark rows: "avx512_bf16" or "none". */
const char *pl_gemm16_isa(void);

/* Set the compute mode of the linear kernels; returns the previous one. Asking for bf16 where
 * it is not available leaves f32 (pl_compute_get tells which is in force). */
enum pl_compute pl_compute_set(enum pl_compute c);
/* The trainer's `compute` option by name: "bf16" -> PL_COMPUTE_BF16, "auto" -> bf16 where
 * pl_gemm16_available(), else f32; anything else -> PL_COMPUTE_F32. */
enum pl_compute pl_compute_from_name(const char *name);
enum pl_compute pl_compute_get(void);

/* C[M,N] = beta·C + A[M,R] · B[R,N], A f32 (row stride R) rounded to bf16, B from a weight W of
 * dtype wt (f32, f16, bf16, GGUF blocks, NF4 ...):
 *   w_nr = 1: W is stored [N, R] and B = Wᵀ   (forward:        y[M,N] = x[M,K] · W[N,K]ᵀ)
 *   w_nr = 0: W is stored [R, N] and B = W    (input gradient: dx[M,K] += dy[M,N] · W[N,K])
 * beta 0 never reads C. Errors: PL_ERR_UNSUPPORTED where pl_gemm16_available() is 0, a bad
 * dtype or a block size that does not divide the row, PL_ERR_NOMEM for the workspace. */
/* pl_gemm16 keeps its last workspace (at most PL_GEMM16_WS_KEEP bytes, counted as workspace)
 * for the next call; this frees it (the trainer calls it when it is freed). */
#define PL_GEMM16_WS_KEEP ((int64_t)64 << 20)
void pl_gemm16_release(void);

/* The workspace bytes of one pl_gemm16 (w_nr as there) or pl_gemm16_tn (w_nr 0, wt PL_F32)
 * call of that shape on nth threads — what the memory model counts (memmodel.c); 0 where the
 * kernel is not built. Products whose packed activations would pass 4 MiB are cut into row
 * chunks and (w_nr 0) reduction slices, so this stays a few MiB per thread at any size. */
int64_t pl_gemm16_ws_bytes(enum pl_dtype wt, int w_nr, int64_t M, int64_t R, int64_t N, int nth);

/* Attention in compute mode bf16 (pl_attention_fwd/bwd in kernels.h, for T >= PL_GEMM16_MIN_ROWS
 * new tokens): the products S = Q·Kᵀ, O = P·V, dV += Pᵀ·dO, dP = dO·Vᵀ, dQ += dS·K,
 * dK += dSᵀ·Q take bf16-rounded operands with f32 sums (src/tensor/attn16.c); softmax and its
 * backward stay f32. Per product the bound above holds with K the reduction (HD for S and dP,
 * the keys for O and dQ, the block's query rows for dV and dK) and a, w the f32 operands of
 * that product (P, dS as computed in f32). Through the softmax (tests/c/test_gemm16.c,
 * test_attention): with e_t = max_j (2u + u² + γ_HD)·scale·Σ_d |q_td| |k_jd| the largest
 * error of row t's scores, each probability is within (e^{2e_t} − 1)·p_tj of the f32 one.
 * Bytes of its per-call workspace (bwd 0: forward, 1: backward) on nth threads; 0 where it
 * does not run. */
int64_t pl_attn16_ws_bytes(int bwd, int64_t B, int64_t T, int64_t past, int64_t NKV, int64_t HD,
                           int nth);

enum pl_status pl_gemm16(float *C, const float *A, const void *W, enum pl_dtype wt, int w_nr,
                         float beta, int64_t M, int64_t R, int64_t N);

/* C[M,N] = beta·C + A[R,M]ᵀ · B[R,N], both f32 (row strides M and N) rounded to bf16, f32
 * sums — the weight gradient dW[N,K] += dy[M,N]ᵀ · x[M,K] of full fine-tuning. */
enum pl_status pl_gemm16_tn(float *C, const float *A, const float *B, float beta, int64_t M,
                            int64_t R, int64_t N);

#endif
