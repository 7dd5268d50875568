/* ckpt.h — gradient checkpointing for LoRA / QLoRA and full fine-tuning: keep only the
 * residual stream at segment boundaries, recompute each segment's activations from its input
 * during backward.
 *
 * Implemented in src/train/ckpt.c.
 *
 * Policy: every = k >= 1 layers per segment. The forward keeps the input of every segment
 * (ceil(L/k) + 1 residual copies of [B·T, dim]) and holds full activations for the k layers
 * of one segment only (norms, q, the segment's K/V, attention probabilities, SwiGLU inputs).
 * The backward walks segments from the last: it recomputes the segment's forward from its
 * saved input (the last segment is still in place from the forward), then runs the layers'
 * backward in reverse. k = L keeps everything (no recomputation).
 * Extra cost: one more forward of every segment but the last (about +1/3 of a LoRA step).
 *
 * The forward and backward formulas are the ones of src/model/llama.c and src/train/train_bwd.c (the
 * same kernels, called in the same order), so gradients equal the trainer's without
 * checkpointing up to the order of a few f32 sums (tests/c/test_ckpt.c: <= 1e-6 relative).
 *
 * Full fine-tuning: the weight, norm, output-head and embedding gradients are accumulated
 * into the trainer's slots (train_internal.h pl_train_grad_of) by the same kernel calls, in
 * the same order, as the uncheckpointed backward.
 *
 * The usual way in is the trainer itself: pl_train_cfg.ckpt_every = k makes pl_trainer_new
 * plan this instead of its saved activations (and its evaluation runs through it too). It
 * can also drive a trainer from outside: the parameters, their gradients and the optimizer
 * are the trainer's; only the activations are planned here. Make the trainer with a small
 * batch_size × seq_len (1 × 1) so that its own full-activation plan stays tiny, then:
 *     struct pl_ckpt *ck;
 *     pl_ckpt_new(&ck, trainer, 1, 512, 1);             // batch 1 × 512, every layer
 *     pl_ckpt_micro(ck, ids, targets, 1, 512, &loss, &count, &stepped);
 * Dropout masks are hashes of the trainer's dropout position (and of the row offset
 * t->lora->dropout_row0), so recomputation sees the same masks as the forward.
 */
#ifndef PEFTLUA_CKPT_H
#define PEFTLUA_CKPT_H

#include <stdint.h>
#include "peftlua/status.h"
#include "peftlua/train.h"

struct pl_ckpt {
    struct pl_trainer *t;          /* borrowed: LoRA (adapters attached to t->model) or full */
    int32_t B, T, every, n_seg;
    int32_t cur_n;
    float *mem;                    /* one planned allocation, PL_MEM_ACTIVATIONS */
    size_t mem_floats;
    /* checkpoints: [n_seg + 1][B·T·dim] (segment inputs, then the last layer's output) */
    float *ckpt;
    /* per segment slot j < every (strides B·T·...): the layer's input (j > 0), and the block's
     * buffers (model.h pl_llama_acts_carve: `every` slots, or one f32 working slot of the
     * rounded ones in 16-bit mode) */
    float *s_in;
    struct pl_llama_acts buf;
    float *xfinal, *rstd_final, *logits, *ce_losses, *ce_lse, *scratch;
    struct pl_act_grads g;
    int32_t *pos, *ids, *targets, *head_rows;   /* head_rows: [2][B·T] (src/train/train_head.c) */
    /* Mixed precision (the trainer's precision bf16/fp16) with every >= 3: act_dtype PL_BF16 or
     * PL_F16, and the rounded buffers (xn, q, kc, vc, att, ao, xf, g, u, a)
     * have one f32 working slot plus `every` 16-bit slots of the same layout, after the f32
     * ones in mem (as src/model/llama.c's 16-bit contexts). The residual stream (checkpoints, s_in,
     * resid2) and the rstd's stay f32. Per rounded element that is 4 + 2·every bytes against
     * 4·every: nothing saved below every = 3 (1 adds, 2 breaks even), so those plans stay f32
     * (act_dtype PL_F32). */
    int32_t act_dtype;
    size_t mem_halves;
    struct pl_llama_acts16 *h;     /* [every] 16-bit slots, or NULL */
};

/* Plan checkpointed activations for batch B × up to T tokens over trainer t (LoRA: its
 * adapters are planned for B·T rows). every < 1 or > n_layers is clamped. */
enum pl_status pl_ckpt_new(struct pl_ckpt **out, struct pl_trainer *t, int B, int T, int every);
void pl_ckpt_free(struct pl_ckpt *ck);

/* Floats pl_ckpt_new plans for a model of configuration c (f32 activations). */
int64_t pl_ckpt_plan_floats(const struct pl_model_config *c, int B, int T, int every);
/* Bytes of pl_ckpt_new's planned allocation (the memory model): act16 = 1 for a trainer of
 * precision bf16/fp16 (16-bit slots when every >= 3), 0 for fp32. */
int64_t pl_ckpt_plan_bytes(const struct pl_model_config *c, int B, int T, int every, int act16);

/* Forward + checkpointed backward of one micro-batch (ids, targets [B, n], targets < 0
 * ignored; B <= planned B, n <= T): gradients (adapters, or every weight for full
 * fine-tuning) accumulate into the trainer's gradients scaled by mul / (scored targets); the dropout
 * position then advances. *loss: mean cross-entropy (NAN if nothing is scored). */
enum pl_status pl_ckpt_grad(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                            int B, int n, double mul, double *loss, int64_t *count);

/* One chunk of a micro-batch, for the trainer (src/train/train.c): forward and, with grad, the
 * checkpointed backward with dlogits scaled by mul / denom per scored target (denom: the
 * whole micro-batch's scored targets; <= 0: this chunk's own). Dropout uses the trainer's
 * current position and row offset (t->lora->dropout_row0) and advances neither; grad = 0 is
 * evaluation (no dropout, nothing saved for a backward). *loss, *count: this chunk's mean
 * and scored targets. */
enum pl_status pl_ckpt_run(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                           int B, int n, double mul, int64_t denom, int grad, double *loss,
                           int64_t *count);

/* As pl_trainer_micro: accumulate toward grad_accum micro-batches, then the optimizer step
 * (*stepped = 1). */
enum pl_status pl_ckpt_micro(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                             int B, int n, double *loss, int64_t *count, int *stepped);

#endif
