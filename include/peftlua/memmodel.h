/* memmodel.h — the memory model: bytes a training run will hold, by allocator category,
 * predicted before anything is allocated; and the auto-sizer built on it.
 *
 * Implemented in src/train/memmodel.c; Lua: src/lua/l_memmodel.c, lua/peft/memory.lua.
 *
 * The model is not a rule of thumb: it replays the buffer plans the engine allocates
 * (pl_llama_ctx_new, the trainer's backward plan, pl_lora_new/pl_lora_plan, the optimizer
 * state, setup of full fine-tuning, the kernels' per-thread panels) with the same formulas,
 * so the predicted peak per category matches pl_mem_peak() of the counting allocator.
 *
 * Peaks are taken over two phases:
 *   setup   the trainer is being made; full fine-tuning holds the loaded weights and the f32
 *           master copy at once (the loaded copy is released after);
 *   step    forward + backward + optimizer: weights, adapters, gradients, optimizer state,
 *           planned activations, persistent workspace, plus the largest transient workspace
 *           one kernel takes (dequantisation panels, attention-backward blocks, RoPE tables).
 * Category peaks are the maximum over phases; the total peak is the larger phase total.
 * Bytes from file mappings (GGUF/safetensors tensors used in place) are reported apart, as
 * "mapped": they count toward resident memory once touched but are not heap allocations.
 *
 * Gradient checkpointing (ckpt_every = k >= 1, LoRA/QLoRA) is the plan of src/train/ckpt.c: the
 * residual stream at segment boundaries, one segment's activations (k layers, K/V included),
 * the head and backward buffers for B x T; the trainer beside it is made at 1 x 1.
 *
 * Precision: "fp32" keeps frozen weights as loaded; "bf16"/"fp16" store frozen f32 weights
 * as bf16/f16 (quantised bases are unchanged); trained parameters, gradients and optimizer
 * state are always f32. Saved activations: bf16/f16 copies per layer plus one f32 layer
 * (src/model/llama.c PL_LLAMA_SAVE_BF16/F16; the residual stream and rstd's stay f32); under
 * checkpointing every k >= 3 layers, 16-bit segment slots plus one f32 working slot
 * (src/train/ckpt.c; k = 1, 2 stay f32).
 *
 * Worked example:
 *     struct pl_memmodel_cfg c = pl_memmodel_defaults();
 *     pl_memmodel_cfg_from_model(&c, model);            // shape and weight bytes as loaded
 *     c.method = PL_MEMM_QLORA; c.quant_dtype = PL_NF4; c.batch = 1; c.seq_len = 512;
 *     c.ckpt_every = 1;
 *     struct pl_mem_estimate e;
 *     pl_memmodel_estimate(&c, &e);                      // e.peak_total, e.peak[PL_MEM_...]
 */
#ifndef PEFTLUA_MEMMODEL_H
#define PEFTLUA_MEMMODEL_H

#include <stdint.h>
#include "peftlua/alloc.h"
#include "peftlua/model.h"
#include "peftlua/status.h"
#include "peftlua/tensor.h"

enum pl_memm_method { PL_MEMM_LORA = 0, PL_MEMM_QLORA, PL_MEMM_FULL };
enum pl_memm_precision { PL_MEMM_FP32 = 0, PL_MEMM_BF16, PL_MEMM_FP16 };

struct pl_memmodel_cfg {
    struct pl_model_config shape;  /* dim, hidden_dim, layers, heads, kv heads, head_dim, vocab,
                                      tied_output, qkv_bias are read */
    enum pl_memm_method method;
    /* Projection weights (q..down) as loaded: f32/f16/bf16/q8_0/q4_0/q4_1/q4_k/... */
    enum pl_dtype base_dtype;
    /* QLoRA: the type the projections are re-stored in on load (nf4 or q8_0; when equal to
     * base_dtype the loaded blocks are used as they are). */
    enum pl_dtype quant_dtype;
    enum pl_dtype embd_dtype;      /* token embedding and output head as loaded */
    /* QLoRA, embed_set = 1: the embedding and head re-stored as embed_dtype on load
     * (qlora.h pl_qlora_opts; q8_0, bf16, f16 or f32). */
    int32_t embed_set;
    enum pl_dtype embed_dtype;
    int32_t base_mapped;           /* 1: weights used in place from a file mapping */
    /* Bytes as loaded, when known (pl_memmodel_cfg_from_model): override the shape formula. */
    int64_t loaded_heap_bytes;     /* heap (PL_MEM_WEIGHTS) bytes of the loaded weights, -1: derive */
    int64_t loaded_mapped_bytes;   /* mapped bytes of the loaded weights, -1: derive */
    int32_t loaded_heap_shared;    /* 1: the loaded heap weights are one storage (llama2.c) */
    int32_t batch, seq_len, grad_accum;
    int32_t ckpt_every;            /* 0: none; k >= 1: checkpoint every k layers */
    enum pl_memm_precision precision;
    int32_t lora_r;
    uint32_t lora_targets;         /* bit (1u << enum pl_proj) */
    int32_t lora_n_layers;         /* layers with adapters (0: all) */
    float lora_dropout;
    int32_t optim;                 /* the optimizer table's index (optim.h; 0: AdamW) */
    int32_t optim_sgd;             /* 1: SGD whatever optim says (older callers) */
    int32_t adapter_kind;          /* enum pl_adapter_kind (lora.h): LoRA, DoRA, IA3 (with
                                      method lora or qlora) */
    uint32_t ia3_ff_targets;       /* IA3: targets scaling their input (feedforward_modules) */
    int32_t threads;               /* 0: omp_get_max_threads() */
    int32_t compute;               /* enum pl_compute (gemm16.h): 1 bf16 counts its kernels'
                                      workspace where the CPU runs them (the trainer's cfg.compute) */
};

struct pl_mem_estimate {
    int64_t peak[PL_MEM_NCAT];     /* predicted peak bytes per category (MAPPED: file bytes) */
    int64_t setup_total, step_total;
    int64_t peak_total;            /* tracked heap peak (all categories except mapped/data) */
    int64_t resident;              /* peak_total + mapped bytes used in place: what RSS approaches */
    int64_t transient_workspace;   /* largest single-kernel workspace included in step_total */
    int64_t trained_params;        /* scalars in the trained vector */
};

/* r 8, q_proj+v_proj, batch 4 x 256, accumulation 1, AdamW, f32 base, no checkpointing. */
struct pl_memmodel_cfg pl_memmodel_defaults(void);
/* Take shape, dtypes and loaded weight bytes (heap / mapped) from a loaded model. */
void pl_memmodel_cfg_from_model(struct pl_memmodel_cfg *c, const struct pl_model *m);
/* Llama-2-7B's shape (32 x 4096, hidden 11008, 32 heads, vocab 32000, context 4096). */
struct pl_model_config pl_memmodel_llama2_7b(void);

/* Predict; fails (PL_ERR_ARG, message naming the field) on an impossible configuration. */
enum pl_status pl_memmodel_estimate(const struct pl_memmodel_cfg *c, struct pl_mem_estimate *e);

/* Bytes of an [out, in] weight held as dtype t. */
int64_t pl_memmodel_weight_bytes(enum pl_dtype t, int64_t out, int64_t in);

/* Auto-sizing under a budget of `budget` bytes (compared with e.resident).
 * want_batch: the effective batch to keep (batch x grad_accum); want_seq: the longest sequence
 * wanted. fix_batch / fix_seq: 1 to keep that value as given. On success c->batch,
 * c->grad_accum and c->seq_len are set to the largest fitting values (batch first, halving,
 * then the sequence, halving down to min_seq) and *e the estimate. If nothing fits:
 * PL_ERR_NOMEM with a message naming the bytes needed at the smallest size tried, the budget,
 * and what would make it fit (QLoRA, checkpointing, shorter sequences), as far as the model
 * says they would. */
enum pl_status pl_memmodel_autosize(struct pl_memmodel_cfg *c, int64_t budget, int want_batch,
                                    int want_seq, int fix_batch, int fix_seq, int min_seq,
                                    struct pl_mem_estimate *e);

/* Names for configuration fields ("lora", "qlora", "full"; "fp32", "bf16", "fp16"), -1 if unknown. */
int pl_memm_method_from_name(const char *s);
int pl_memm_precision_from_name(const char *s);

#endif
