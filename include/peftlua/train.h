/* train.h — the training engine: one step of LoRA or full fine-tuning over a Llama model,
 * the whole-model backward pass, gradient accumulation, clipping, the optimizer step, and
 * checkpoints that resume bit-identically.
 *
 * Implemented in src/train/train.c step and optimizer, src/train/train_bwd.c backward assembly,
 * src/train/train_ckpt.c checkpoints and atomic files; Lua: src/lua/l_train.c, lua/peft/train.lua.
 *
 * A step, llm.c style, over the model's planned activations (pl_llama_ctx with PL_LLAMA_SAVE):
 *     for each of grad_accum micro-batches:
 *         forward (adapters through the model's linear hook) → logits
 *         cross-entropy over targets (−1 ignored) → dlogits, scaled by 1/(tokens · grad_accum)
 *         backward through every layer, accumulating into the flat gradient vector
 *     clip to max_grad_norm (global L2), lr from the schedule, AdamW or SGD, zero gradients.
 * The backward is explicit (src/train/train_bwd.c): per layer it reads the layer's saved input and
 * activations only, so gradient checkpointing can later recompute a layer from its input.
 *
 * Methods:
 *   LoRA  trained vector = the adapters' flat A/B vector (lora.h); the base stays as loaded.
 *   full  every weight becomes an f32 master copy laid out in ONE flat vector (PL_MEM_WEIGHTS)
 *         in pl_model_param() order, replacing the model's tensors (views of that vector);
 *         tied embeddings share one copy and receive both gradients.
 *
 * Memory: the per-step buffers are planned for plan_rows rows of seq_len tokens (at first
 * batch_size). pl_trainer_shrink re-plans at half the rows after an allocation failure; a
 * micro-batch with more rows than planned then runs as consecutive chunks of plan_rows rows,
 * each chunk's dlogits scaled by 1/(scored targets of the whole micro-batch), so the
 * accumulated gradient is the unsplit micro-batch's (up to the order of f32 sums) and the data
 * order and effective batch do not change. Checkpointing (ckpt_every = k, src/train/ckpt.c) keeps
 * only every k-th layer's input and recomputes the rest in the backward, for LoRA and full.
 *
 * Determinism: with the same seed, data order and thread count every step gives the same bits
 * (kernels reduce in fixed orders; dropout masks are hashes of (seed, step, layer, proj, i),
 * i counted from the micro-batch's first row, so chunks see the masks of the unsplit batch).
 *
 * Mixed precision (cfg.precision):
 *   fp32  everything f32 (as loaded: a quantised or 16-bit base is used as it is).
 *   bf16  frozen weights: LoRA's f32 projection weights are re-stored as bf16 when the trainer
 *         is made (pl_qlora_quantize; quantised/f16 bases, embeddings, head and norms keep
 *         their type; full fine-tuning has no frozen weights). Saved activations: the context
 *         saves them as bf16 (PL_LLAMA_SAVE_BF16, model.h lists which ones): each layer is
 *         computed in f32, rounded to nearest even into its 16-bit slot, widened back to f32
 *         one layer at a time for the backward (checkpointed, ckpt_every >= 3: the segment's
 *         layers likewise in 16-bit slots, ckpt.h; every 1 or 2 stays f32, where 16 bits
 *         would save nothing). f32: the residual stream, logits, every
 *         gradient (weights and activations), LoRA adapters, full fine-tuning's master
 *         weights, optimizer state; all sums accumulate in f32.
 *   (cfg.compute = PL_COMPUTE_BF16 is separate from this: it rounds the inputs of the linear
 *   layers' products — forward, input gradient, full fine-tuning's weight gradient — to bf16
 *   and sums in f32, whatever the storage; gemm16.h.)
 *   fp16  the same with IEEE f16 (10-bit mantissa, range 6e-5 .. 65504) as the 16-bit type,
 *         plus dynamic loss scaling: the loss gradient is multiplied by S (loss_scale,
 *         default 2^16) so every gradient is S times its value; the optimizer step first
 *         unscales (× 1/S, exact for a power of two), then clips. If the unscaled norm is not
 *         finite the step is skipped: parameters and optimizer state untouched, gradients
 *         dropped, skipped_steps + 1, S halved (never below 1); after growth_interval
 *         consecutive finite steps S doubles. The 16-bit quantities in fp16 mode are the
 *         frozen f16 projection weights and the saved f16 activations only; gradients are
 *         never stored in 16 bits here, so the scaler does not have the job it has on a GPU
 *         (keeping f16 gradients from underflowing): S shifts f32 gradients by an exact power
 *         of two and changes none of their bits unless they overflow f32. What it protects
 *         is the update: a non-finite gradient — an activation beyond 65504 saved as inf, or
 *         S · gradient overflowing f32 — skips the step instead of writing inf/NaN into the
 *         parameters and moments, and S backs off. A step skipped still counts in `step`
 *         (the run's step budget); the schedule and AdamW's bias correction count applied
 *         updates (step − skipped_steps), as PyTorch's GradScaler + scheduler do.
 *
 * Checkpoints (a directory): state-<step>.bin (header, trained vector, optimizer state, data
 * position, RNG/dropout step, user blob) and manifest.json naming it, each written to a
 * temporary file, fsync'ed and renamed, the manifest last; older state files are then removed.
 * A run resumed from a checkpoint continues with the same bits as one never interrupted.
 */
#ifndef PEFTLUA_TRAIN_H
#define PEFTLUA_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/fileio.h"
#include "peftlua/gemm16.h"
#include "peftlua/lora.h"
#include "peftlua/model.h"
#include "peftlua/optim.h"
#include "peftlua/status.h"

enum pl_train_method { PL_TRAIN_LORA = 0, PL_TRAIN_FULL };
/* cfg.optim: an index into the optimizer table (optim.h, pl_optimizer_find); the first two by name */
enum pl_optim_kind { PL_OPTIM_ADAMW = 0, PL_OPTIM_SGD };
enum pl_precision { PL_PREC_FP32 = 0, PL_PREC_BF16, PL_PREC_FP16 };

/* "fp32" | "bf16" | "fp16" → enum pl_precision, -1 if unknown; and back. */
int pl_precision_from_name(const char *name);
const char *pl_precision_name(enum pl_precision p);

struct pl_train_cfg {
    enum pl_train_method method;
    enum pl_optim_kind optim;
    int32_t batch_size;        /* rows per micro-batch (the first plan is made for this) */
    int32_t seq_len;           /* longest row (tokens) of a micro-batch */
    int32_t grad_accum;        /* micro-batches per optimizer step (>= 1) */
    double lr;
    double weight_decay;       /* AdamW decoupled decay / SGD L2 */
    double beta1, beta2, eps;  /* AdamW */
    double momentum;           /* SGD */
    int32_t nesterov;
    enum pl_schedule schedule;
    int64_t warmup;            /* optimizer steps */
    int64_t total_steps;       /* for the schedule */
    double min_lr_ratio;
    double max_grad_norm;      /* <= 0: no clipping */
    uint64_t seed;
    struct pl_lora_cfg lora;   /* method == PL_TRAIN_LORA */
    int32_t ckpt_every;        /* gradient checkpointing (LoRA or full): keep every k-th layer
                                  input and recompute the rest in backward (src/train/ckpt.c); 0: off */
    int32_t plan_rows;         /* rows per forward planned at first (1..batch_size; 0: batch_size) */
    enum pl_precision precision;   /* see "Mixed precision" above */
    enum pl_compute compute;   /* products of forward and gradients (linear layers): PL_COMPUTE_F32, or
                                  PL_COMPUTE_BF16 (bf16 inputs, f32 sums; gemm16.h) where the CPU
                                  has AVX512_BF16, else f32 as if not asked */
    double loss_scale;         /* fp16: initial S (a power of two; default 65536) */
    int32_t growth_interval;   /* fp16: finite steps before S doubles (default 2000) */
};
/* AdamW, lr 2e-4, wd 0, cosine, warmup 0, clip 1.0, batch 4 x 256, accumulation 1, fp32
 * (loss scale 65536 and growth interval 2000 for fp16), LoRA defaults from pl_lora_defaults(). */
struct pl_train_cfg pl_train_defaults(void);

/* struct pl_act_grads (the backward's activation gradients) is the block's: model.h. */

struct pl_ckpt;
/* A trainer. Its fields are private to the training code (src/train/train_internal.h); the
 * functions below read and set what callers need. */
struct pl_trainer;

/* The configuration it was made with; its model (borrowed); LoRA: its adapters (owned by the
 * trainer), NULL for full fine-tuning. */
const struct pl_train_cfg *pl_trainer_cfg(const struct pl_trainer *t);
struct pl_model *pl_trainer_model(const struct pl_trainer *t);
struct pl_lora *pl_trainer_lora(const struct pl_trainer *t);
/* The trained flat vector (LoRA: the adapters' parameters, lora.h; full: every weight's f32
 * master copy in pl_model_param() order) and its gradient; *n (may be NULL) gets the length. */
int64_t pl_trainer_n_params(const struct pl_trainer *t);
float *pl_trainer_params(const struct pl_trainer *t, int64_t *n);
float *pl_trainer_grads(const struct pl_trainer *t, int64_t *n);
/* State vector i of the optimizer (i < its table entry's n_state: AdamW's m, v; SGD's or
 * Lion's momentum), NULL before it is allocated (first step, checkpoint save or load). */
float *pl_trainer_optim_state(const struct pl_trainer *t, int i);
/* Full fine-tuning: parameter i's view of the master vector (w) and of the gradient (g) and
 * its length, in pl_model_param() order; 0 when i is out of range (or LoRA). */
int pl_trainer_n_views(const struct pl_trainer *t);
/* The checkpointed plan (ckpt.h) when the trainer checkpoints, else NULL. */
struct pl_ckpt *pl_trainer_ckpt(const struct pl_trainer *t);
int64_t pl_trainer_view(const struct pl_trainer *t, int i, float **w, float **g);

/* The trainer's counters and its current plan. */
struct pl_trainer_state {
    int64_t step;              /* optimizer steps done (skipped ones included) */
    int32_t micro;             /* micro-batches accumulated toward the next step */
    int64_t tokens_seen;       /* target tokens trained on */
    double accum_loss;         /* sum over the pending micro-batches of mean loss · count */
    int64_t accum_tokens;
    double last_loss, last_grad_norm, last_lr;
    double loss_scale;         /* fp16's S (1 otherwise) */
    int64_t good_steps;        /* finite steps since S last changed */
    int64_t skipped_steps;     /* steps skipped for a non-finite gradient */
    uint64_t dropout_at_step;  /* LoRA dropout position when the current step began */
    int32_t plan_rows;         /* rows per forward planned (0: unplanned after a failed re-plan) */
    int32_t checkpointed;      /* 1: the plan is gradient checkpointing's (src/train/ckpt.c) */
    int64_t plan_bytes;        /* the plan's one activation allocation (context or checkpointed) */
    int32_t world, rank;       /* data parallel ranks (dist.h; world 1: one process) and this one */
};
struct pl_trainer_state pl_trainer_state(const struct pl_trainer *t);
/* Set the optimizer step count (tools that rebuild a trainer at a known position, tests of
 * checkpoint files); nothing else changes. */
void pl_trainer_set_step(struct pl_trainer *t, int64_t step);

/* Make a trainer for model m (LoRA: creates adapters from cfg->lora and cfg->seed and attaches
 * them; full: converts every weight to its f32 master copy). */
enum pl_status pl_trainer_new(struct pl_trainer **out, struct pl_model *m,
                              const struct pl_train_cfg *cfg);
/* Frees the trainer and its adapters (detaching them). Full fine-tuning leaves the model with
 * the trained f32 weights (they are owned by the model's tensors). */
void pl_trainer_free(struct pl_trainer *t);

/* Forward + backward of one micro-batch: ids and targets are [B, n] row-major (n <= seq_len;
 * B > plan_rows runs as chunks of plan_rows rows; a short last chunk is padded with ignored
 * rows). Gradients accumulate, scaled 1/(grad_accum · scored targets of the micro-batch).
 * *loss: mean cross-entropy of this micro-batch over its *count targets (NAN if none). When
 * the micro-batch completes grad_accum, the optimizer step runs (*stepped = 1). Any failure
 * (PL_ERR_NOMEM included) leaves a partial step: pl_trainer_rewind drops it. */
enum pl_status pl_trainer_micro(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                                int B, int n, double *loss, int64_t *count, int *stepped);
/* Loss and gradients of one batch without touching the optimizer: gradients are zeroed first
 * and left in pl_trainer_grads(t) as d(mean loss)/d(params). For gradient checks. */
enum pl_status pl_trainer_grad(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                               int B, int n, double *loss);
/* Mean loss of a batch without gradients (adapters enabled, no dropout). */
enum pl_status pl_trainer_eval(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                               int B, int n, double *sum, int64_t *count);
/* The optimizer step over the accumulated gradients (clip, schedule, update, zero). */
enum pl_status pl_trainer_step(struct pl_trainer *t);
/* Drop a partly accumulated step (after an interrupted micro-batch): gradients zeroed, the
 * micro-batch count and dropout position back to the last optimizer step. */
void pl_trainer_rewind(struct pl_trainer *t);

/* Bytes of the per-step plan a trainer makes for `rows` rows of T tokens (PL_MEM_ACTIVATIONS:
 * the saving context with its logits and the backward buffers, or the checkpointed plan;
 * LoRA's own saved activations excluded: lora.h). The memory model's activation figure. */
int64_t pl_trainer_plan_bytes(const struct pl_model_config *c, int rows, int T, int ckpt_every,
                              enum pl_precision precision);
/* Re-plan the per-step buffers (activation context, backward buffers, LoRA's saved x·Aᵀ and
 * dropout workspace, or the checkpointed plan) for `rows` rows of seq_len tokens, freeing the
 * old plan first. Parameters, gradients and optimizer state are untouched. On failure the
 * trainer is left unplanned (its steps fail with PL_ERR_STATE until a re-plan succeeds). */
enum pl_status pl_trainer_replan(struct pl_trainer *t, int rows);
/* After an allocation failure (and pl_trainer_rewind): re-plan at half the rows per forward
 * (halving again while the plan itself cannot be allocated). *new_rows gets the rows planned.
 * PL_ERR_NOMEM, saying so, when the trainer is already at one row or one row cannot be
 * planned. The numbers a step computes do not change beyond f32 summation order. */
enum pl_status pl_trainer_shrink(struct pl_trainer *t, int *new_rows);
/* The one shrink-and-retry policy, for a step (or an evaluation) that failed with st, why
 * its message (NULL: pl_last_error()), step0 the optimizer steps done before it began. When
 * no update was applied (the step count still step0) the pending step is rewound. Then, for an
 * allocation failure, the plan is halved (pl_trainer_shrink): PL_OK with *from / *to the rows
 * per forward before and after — run the step again, from its first micro-batch. Otherwise a
 * failure that says why it cannot be retried: st with why (not an allocation failure, or its
 * update was applied), or PL_ERR_NOMEM when it already ran one row per forward ("allocation
 * failed (<why>) with one row of T tokens per forward: nothing smaller to re-plan").
 * pl_trainer_step_shrinking and peft.train.run (tr:recover) both use it. */
enum pl_status pl_trainer_recover(struct pl_trainer *t, enum pl_status st, const char *why,
                                  int64_t step0, int *from, int *to);
/* One optimizer step over rows = batch_size × grad_accum rows of n tokens (ids, targets
 * [rows, n]), as grad_accum micro-batches of batch_size rows; an allocation failure rewinds
 * the step, shrinks (pl_trainer_shrink) and retries it, appending one line per change to log
 * ("allocation failed (<why>): micro-batch 4 -> 2 rows (x2 chunks), step 3 retried").
 * Fails only when one row does not fit (or on any other error). *loss: the step's mean. */
enum pl_status pl_trainer_step_shrinking(struct pl_trainer *t, const int32_t *ids,
                                         const int32_t *targets, int rows, int n, double *loss,
                                         char *log, size_t log_size);

/* Gradient of the trained parameter named as PEFT/HF names it (LoRA: "...q_proj.lora_A.weight"
 * without the base_model.model. prefix, e.g. "model.layers.0.self_attn.q_proj.lora_A.weight";
 * full: "model.layers.0.self_attn.q_proj.weight"). *n gets its size. NULL if unknown. */
float *pl_trainer_find_grad(struct pl_trainer *t, const char *name, int64_t *n);
float *pl_trainer_find_param(struct pl_trainer *t, const char *name, int64_t *n);

/* ---- checkpoints (src/train/train_ckpt.c) ---- */

/* Save the trainer's state plus an opaque user blob (e.g. the data position and metrics
 * cursor) into dir (created if missing). */
enum pl_status pl_trainer_save(struct pl_trainer *t, const char *dir, const void *blob,
                               size_t blob_size);
/* Restore into a trainer made with the same configuration and model. *blob (pl_alloc'd,
 * PL_MEM_DATA, free with pl_free) and *blob_size receive the user blob (either may be NULL).
 * The rows planned per forward are not part of the checkpoint (they change only the order of
 * f32 sums): a caller that had shrunk re-plans with pl_trainer_replan after loading to get the
 * same bits (peft.train.run keeps them in its user blob). */
enum pl_status pl_trainer_load(struct pl_trainer *t, const char *dir, void **blob,
                               size_t *blob_size);
/* 1 if dir holds a readable manifest. */
int pl_trainer_has_checkpoint(const char *dir);

/* ---- outputs (src/train/train_export.c) ---- */

/* Write model m (adapters merged, or fully fine-tuned) as format "gguf" (path: a file) or
 * "safetensors" (path: a directory receiving model.safetensors + config.json). dtype: "f32",
 * "f16", "bf16", or "base" (GGUF only: each tensor in the type it had in the source GGUF);
 * NULL = f32. Fails if adapters are still attached. */
enum pl_status pl_train_export(struct pl_model *m, const char *path, const char *format,
                               const char *dtype);

/* pl_file_write_atomic (the one atomic writer) is declared in fileio.h, included above. */

#endif
