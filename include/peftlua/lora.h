/* lora.h — LoRA adapters over a Llama model's projections, in HF PEFT's layout.
 *
 * Implemented in src/adapt/lora.c.
 *
 * For a frozen projection y = x Wᵀ (W: [out, in]) an adapter adds
 *     y += scale · dropout(x) Aᵀ Bᵀ,   A: [r, in], B: [out, r],
 *     scale = alpha / r   (rsLoRA: alpha / sqrt(r)).
 * A starts Kaiming-uniform as PyTorch's nn.Linear default (a = sqrt(5), so U(−1/sqrt(in),
 * 1/sqrt(in))), B starts at zero, so a new adapter leaves the model unchanged.
 * Targets use PEFT's module names (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)
 * and may be limited to some layers (PEFT's layers_to_transform).
 *
 * Storage: every A and B lives in ONE flat f32 vector (PL_MEM_ADAPTERS) in adapter order
 * (layer-major, then projection order q,k,v,o,gate,up,down; A before B), and their gradients
 * in one flat vector of the same layout (PL_MEM_GRADS), so the optimizer (optim.h) updates
 * all adapters with one call.
 *
 * Dropout never stores a mask: the keep/drop decision for element i of the input of
 * (layer, proj) at step s is a hash of (seed, s, layer, proj, i), recomputed by the backward.
 * i counts elements from the first row of the micro-batch: a trainer running a micro-batch
 * as chunks of rows sets dropout_row0 to the chunk's first row, so every row sees the mask
 * it would have seen unsplit.
 *
 * Models loaded from GGUF keep llama.cpp's permuted Q/K rows (interleaved RoPE pairs); HF and
 * PEFT use the rotate-half order. The adapters train in the model's own order and lora_B of
 * q_proj/k_proj is permuted to HF's order in the file (and back on load), so a saved adapter
 * applies to the HF checkpoint of the same model.
 *
 * Files (HF PEFT): a directory with
 *   adapter_model.safetensors  base_model.model.model.layers.<l>.self_attn.q_proj.lora_A.weight
 *                              [r, in] and ...lora_B.weight [out, r] (mlp.* for gate/up/down), F32
 *   adapter_config.json        peft_type "LORA", r, lora_alpha, lora_dropout, target_modules,
 *                              use_rslora, bias "none", task_type "CAUSAL_LM",
 *                              base_model_name_or_path, layers_to_transform, ...
 *
 * Worked example:
 *     struct pl_lora_cfg lc = pl_lora_defaults();          // r 8, alpha 16, q_proj v_proj
 *     struct pl_lora *a;
 *     pl_lora_new(&a, &model->cfg, &lc, 42);
 *     pl_lora_attach(a, model);                             // forward now includes the adapters
 *     ... train ...
 *     pl_lora_save(a, "out/adapter", model->name);
 *     pl_lora_merge(a, model);                              // W += scale·B·A; detaches
 */
#ifndef PEFTLUA_LORA_H
#define PEFTLUA_LORA_H

#include <stdint.h>
#include "peftlua/model.h"
#include "peftlua/status.h"

#define PL_LORA_MAX_LAYERS 1024
#define PL_LORA_MAX_RANK 65536     /* adapter_config.json "r" above this is refused */

/* The adapter method (PEFT's names):
 *   PL_ADAPTER_LORA  y = x W0ᵀ + s · x Aᵀ Bᵀ                       (LoraConfig)
 *   PL_ADAPTER_DORA  y = m ⊙ (x W0ᵀ + s · x Aᵀ Bᵀ) / ‖W0 + s·BA‖_row  (LoraConfig use_dora):
 *                    m [out] is "lora_magnitude_vector", initialised to ‖W0‖_row (so a new
 *                    adapter leaves the model unchanged); the norm is taken per output row over
 *                    the input dimension and is DETACHED in the backward exactly as PEFT's
 *                    peft/tuners/lora/dora.py does ("weight_norm = weight_norm.detach()", DoRA
 *                    paper §4.3): it is a constant for the gradients of A, B and m. No dropout.
 *                    Bias: y = m/‖·‖ ⊙ (x W0ᵀ + s·xAᵀBᵀ) + b (PEFT subtracts and re-adds it).
 *   PL_ADAPTER_IA3   (IA3Config) learned vectors "ia3_l", initialised to ones:
 *                    targets not in feedforward_modules scale the OUTPUT, y = l ⊙ (x Wᵀ + b),
 *                    l [out] (PEFT stores [out, 1]); feedforward targets scale the INPUT,
 *                    y = (x ⊙ l) Wᵀ + b, l [in] (PEFT stores [1, in]). PEFT's Llama default:
 *                    k_proj, v_proj, down_proj with down_proj feedforward. r, alpha, dropout
 *                    are unused.
 * The math of both lives in src/adapt/dora.c and src/adapt/ia3.c; the hook, the projection backward and
 * merge/save/load here dispatch to them, so the saved-activation trainer (src/train/train_bwd.c) and
 * checkpointing (src/train/ckpt.c) run the same code. */
enum pl_adapter_kind { PL_ADAPTER_LORA = 0, PL_ADAPTER_DORA, PL_ADAPTER_IA3 };

struct pl_lora_cfg {
    int32_t r;              /* rank >= 1 */
    float alpha;
    float dropout;          /* probability in [0, 1) */
    uint32_t targets;       /* bit (1u << enum pl_proj) per target module */
    int32_t use_rslora;
    int32_t n_layers_sel;   /* 0: every layer; else the layers in layers[] */
    int32_t layers[PL_LORA_MAX_LAYERS];
    int32_t kind;           /* enum pl_adapter_kind */
    uint32_t ff_targets;    /* IA3: feedforward_modules (a subset of targets) */
};
struct pl_lora_cfg pl_lora_defaults(void);     /* r 8, alpha 16, dropout 0, q_proj + v_proj */

/* "q_proj" → PL_PROJ_Q ...; -1 if unknown. */
int pl_lora_target_from_name(const char *name);

struct pl_lora_adapter {
    int32_t layer;
    enum pl_proj proj;
    int64_t in, out;
    float *A, *B;           /* into pl_lora.params */
    float *dA, *dB;         /* into pl_lora.grads (NULL until pl_lora_plan) */
    float *xa;              /* [rows, r] x·Aᵀ saved by the forward (NULL until planned) */
    /* DoRA */
    float *mag, *dmag;      /* [out] lora_magnitude_vector and its gradient */
    float *wnorm;           /* [out] ‖W0 + s·BA‖ per output row (detached), computed at version
                               norm_ver of the parameters */
    int64_t norm_ver;
    /* IA3 */
    float *vec, *dvec;      /* ia3_l: [out], or [in] when ff */
    int32_t ff;             /* IA3 feedforward: scales the input */
    /* DoRA, IA3 on outputs: the pre-scaling output saved by a training forward [rows, out]
       (DoRA: x W0ᵀ + s·xAᵀBᵀ without bias; IA3: x Wᵀ + b) */
    float *ysave;
};

struct pl_lora {
    struct pl_lora_cfg cfg;
    int32_t n_model_layers;
    float scale;
    int32_t enabled;        /* 0: the hook adds nothing (the base model alone) */
    int32_t training;       /* 1: apply dropout and save xa for the backward */
    int32_t n;              /* adapters */
    struct pl_lora_adapter *ad;
    int32_t *index;         /* [n_model_layers * PL_PROJ_COUNT] → adapter or −1 */
    float *params;          /* all A and B */
    float *grads;           /* same layout, or NULL */
    int64_t n_params;
    /* training plan */
    int64_t rows_cap;       /* rows (batch × sequence) the xa buffers hold */
    float *xa_mem;          /* PL_MEM_ACTIVATIONS */
    float *work;            /* [rows_cap * max(in, out)] workspace for dropout */
    uint64_t dropout_seed;
    uint64_t dropout_step;  /* advanced by the trainer each micro-batch */
    int64_t dropout_row0;   /* row of the micro-batch the current forward starts at (chunks) */
    struct pl_model *attached;
    /* The model's Q/K rows are in GGUF's interleaved RoPE order (llama.cpp permuted them);
     * PEFT files hold HF's order, so lora_B of q_proj/k_proj is re-ordered on save/load. */
    int32_t qk_interleaved, n_heads, n_kv_heads;
    /* DoRA / IA3 */
    int64_t version;        /* bumped whenever the parameters may have changed (optimizer step,
                               load, pl_lora_touch); DoRA's cached norms follow it */
    float *ys_mem;          /* PL_MEM_ACTIVATIONS: every adapter's ysave */
    float *dy_work;         /* [rows_cap * widest] scaled output/input gradient (backward) */
    float *xs;              /* IA3 feedforward: the scaled input (grown as needed) */
    int64_t xs_cap;
    int32_t mag_ready;      /* DoRA: magnitudes initialised (or loaded) */
};

/* The parameters changed outside an optimizer step (tests, loaders): DoRA's norms are
 * recomputed at the next forward. */
void pl_lora_touch(struct pl_lora *a);
/* DoRA: set every lora_magnitude_vector to ‖W0‖ per output row of m's weights (PEFT's
 * initialisation; a no-op for other methods). pl_trainer_new calls it after pl_lora_new. */
enum pl_status pl_lora_init_magnitude(struct pl_lora *a, const struct pl_model *m);
/* "lora" | "dora" | "ia3" */
const char *pl_adapter_kind_name(int kind);

/* Input hook (pl_linear_in_hook_fn): IA3 feedforward targets return x ⊙ l (in a buffer of
 * the adapters), others x itself; NULL with the error set on failure. */
const float *pl_lora_in_hook(void *ctx, int layer, enum pl_proj p, const float *x, int64_t n);

/* The whole backward of projection (layer, p) with weight w (and the adapters when a != NULL):
 * dx += (dy ⊙ scaling) · W (+ the adapter's input gradient), dW/db (full fine-tuning, may be
 * NULL) and the adapter's parameter gradients. src/train/train_bwd.c and src/train/ckpt.c both call it. */
enum pl_status pl_lora_proj_backward(struct pl_lora *a, int layer, enum pl_proj p,
                                     const struct pl_tensor *w, float *dW, float *db, float *dx,
                                     const float *dy, const float *x, int64_t n);

/* New adapters for a model of configuration mc. Fails (PL_ERR_ARG) on r < 1, a dropout outside
 * [0,1), no targets, or a selected layer out of range. */
enum pl_status pl_lora_new(struct pl_lora **out, const struct pl_model_config *mc,
                           const struct pl_lora_cfg *cfg, uint64_t seed);
void pl_lora_free(struct pl_lora *a);   /* detaches; NULL is fine */

/* The adapter of (layer, proj) or NULL. */
struct pl_lora_adapter *pl_lora_get(struct pl_lora *a, int layer, enum pl_proj p);

/* Allocate gradients and the saved-activation buffers for up to `rows` rows per forward. */
enum pl_status pl_lora_plan(struct pl_lora *a, int64_t rows);
/* Free the saved-activation buffers and the dropout workspace (gradients stay), so that a
 * following pl_lora_plan can plan fewer rows. */
void pl_lora_unplan(struct pl_lora *a);

/* Install/remove the adapters as m's linear hook. */
void pl_lora_attach(struct pl_lora *a, struct pl_model *m);
void pl_lora_detach(struct pl_lora *a);

/* The hook itself (pl_linear_hook_fn): y += scale · drop(x) Aᵀ Bᵀ for (layer, p). */
enum pl_status pl_lora_hook(void *ctx, int layer, enum pl_proj p, float *y, const float *x,
                            int64_t n);

/* Backward of the adapter on (layer, p) over n rows: accumulates dA, dB into a->grads and
 * (when dx != NULL) the input gradient into dx [n, in]. x is the projection's input as the
 * forward saw it (before dropout), dy the output gradient [n, out]. Needs the xa saved by the
 * forward of the same step. Adapters absent for (layer, p): nothing happens. */
enum pl_status pl_lora_backward(struct pl_lora *a, int layer, enum pl_proj p, float *dx,
                                const float *dy, const float *x, int64_t n);

/* W[out,in] += scale · B A  (f32 W). */
void pl_lora_merge_into(float *W, const float *A, const float *B, float scale, int64_t out,
                        int64_t in, int64_t r);
/* Merge every adapter into m's weights: each targeted weight becomes an f32 tensor
 * (dequantised if it was quantised) equal to W + scale·B·A; detaches a. */
enum pl_status pl_lora_merge(struct pl_lora *a, struct pl_model *m);

/* Save to dir (created if missing) as adapter_model.safetensors + adapter_config.json, each
 * written to a temporary file, fsync'ed and renamed. base_name: base_model_name_or_path. */
enum pl_status pl_lora_save(const struct pl_lora *a, const char *dir, const char *base_name);
/* Load a PEFT LoRA directory for a model of configuration mc (shapes are checked against it;
 * any error names the file and tensor). */
enum pl_status pl_lora_load(struct pl_lora **out, const char *dir,
                            const struct pl_model_config *mc);

/* Input/output sizes of projection p in a model of configuration mc. */
void pl_lora_proj_shape(const struct pl_model_config *mc, enum pl_proj p, int64_t *in,
                        int64_t *out);

#endif
