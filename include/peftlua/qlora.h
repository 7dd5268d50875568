/* qlora.h — frozen bases for QLoRA: a loaded model's projection weights re-stored as NF4
 * (QLoRA's NormalFloat4: PL_NF4 64-element blocks with an f32 scale, PL_NF4_32 32-element
 * blocks with an f16 scale, PL_NF4_DQ 64-element blocks with double-quantised scales), Q8_0,
 * bf16 or f16, and Llama-shaped models with random quantised weights made directly in memory.
 * NF4 scales are chosen per block to minimise the block's squared error (quant.h
 * pl_nf4_fit), or as the block's absmax (bitsandbytes) on request.
 *
 * Implemented in src/adapt/qlora.c.
 *
 * Only the seven projections (q k v o gate up down) are re-stored; the token embedding, the
 * output head and the norms keep their dtype, as in the QLoRA paper (embeddings and norms are
 * not quantised), unless opts ask for the embedding and head in another dtype (Q8_0: 8.5
 * bits a weight instead of bf16's 16; a Llama-2-7B's two 32000 x 4096 tensors 0.25 GiB
 * instead of 0.49). Conversion goes row by row through one f32 row buffer: no whole f32 copy of
 * the base is ever made. A projection whose input size is not a whole number of the target's
 * blocks (stories260K's down_proj, 172 columns) stays as it is and is counted in `kept`.
 * When the loaded weights are views of one heap allocation (llama2.c .bin), every tensor not
 * converted is copied to its own storage, so the old allocation is freed.
 *
 * The matmuls then dequantise cache-sized panels inside the kernel for the forward and the
 * input-gradient backward (kernels.h pl_linear_fwd / pl_linear_bwd), split across threads.
 *
 * Worked example:
 *     pl_model_load(&m, "SmolLM2-135M-Instruct.Q4_1.gguf", NULL);
 *     struct pl_qlora_stats qs;
 *     pl_qlora_quantize(m, PL_NF4, 0, &qs);    // every projection now NF4 (heap, PL_MEM_WEIGHTS)
 *     ... pl_trainer_new(&t, m, &cfg) with LoRA as usual ...
 */
#ifndef PEFTLUA_QLORA_H
#define PEFTLUA_QLORA_H

#include <stdint.h>
#include "peftlua/model.h"
#include "peftlua/quant.h"
#include "peftlua/status.h"
#include "peftlua/tensor.h"

struct pl_qlora_stats {
    int32_t converted;       /* projections re-stored */
    int32_t kept;            /* projections left as they were (block size does not divide) */
    int64_t bytes_before;    /* bytes of the projections before */
    int64_t bytes_after;     /* and after */
    int64_t elements;        /* weights re-stored */
    double err2;             /* Σ (re-stored − before)² over them (as f32 values) */
    double ref2;             /* Σ before²: sqrt(err2 / ref2) is the relative RMS error */
    /* the token embedding and output head, when opts re-store them (not in the sums above) */
    int32_t embed_converted; /* tensors re-stored: 0, 1 (tied: one tensor) or 2 */
    int64_t embed_bytes_before, embed_bytes_after;
    double embed_err2, embed_ref2;
};

struct pl_qlora_opts {
    enum pl_nf4_scale nf4_scale;   /* PL_NF4_SCALE_MSE (0, the default) or PL_NF4_SCALE_ABSMAX */
    /* embed_set = 1: the frozen token embedding and output head (one tensor when tied) are
     * re-stored as embed_dtype too (PL_Q8_0, PL_BF16, PL_F16 or PL_F32), row by row; the
     * embedding lookup dequantises its rows and the head's products take the dtype as the
     * projections' do. 0 (the default): they keep their dtype, as in the QLoRA paper. */
    int32_t embed_set;
    enum pl_dtype embed_dtype;
};

/* Re-store m's projection weights as dtype (PL_NF4, PL_NF4_32, PL_NF4_DQ, PL_Q8_0, PL_BF16,
 * PL_F16, or PL_F32 for an f32 base dequantised from a quantised file). targets: bits
 * (1u << enum pl_proj), 0 for all seven. Fails with PL_ERR_ARG on another dtype or when the
 * model has adapters attached (its hook would see different weights mid-run).
 * opts NULL: defaults (MSE-chosen NF4 scales). */
enum pl_status pl_qlora_quantize(struct pl_model *m, enum pl_dtype dtype, uint32_t targets,
                                 struct pl_qlora_stats *stats);
enum pl_status pl_qlora_quantize_opts(struct pl_model *m, enum pl_dtype dtype, uint32_t targets,
                                      const struct pl_qlora_opts *opts, struct pl_qlora_stats *stats);

/* A model of configuration cfg whose projections are random `dtype` blocks (nf4, nf4_dq or
 * q8_0) written directly (codes uniform, scales ~ 0.02/code range, like a trained model's; nf4_dq:
 * the block scales double-quantised, int8 codes around one group mean), the embedding and output
 * head random `embd_dtype` (f32, f16, bf16 or q8_0) values of scale 0.02, norms one. No f32 copy of any projection is made. No tokenizer. Deterministic in seed. */
enum pl_status pl_qlora_random_model(struct pl_model **out, const struct pl_model_config *cfg,
                                     enum pl_dtype dtype, enum pl_dtype embd_dtype, uint64_t seed);

#endif
