/* ckpt.h — gradient checkpointing for LoRA / QLoRA training: keep only the residual stream at
 * segment boundaries, recompute each segment's activations from its input during backward.
 *
 * Owner: memory (src/ckpt.c).
 *
 * Policy: every = k >= 1 layers per segment. The forward keeps the input of every segment
 * (ceil(L/k) + 1 residual copies of [B·T, dim]) and holds full activations for the k layers
 * of one segment only (norms, q, the segment's K/V, attention probabilities, SwiGLU inputs).
 * The backward walks segments from the last: it recomputes the segment's forward from its
 * saved input (the last segment is still in place from the forward), then runs the layers'
 * backward in reverse. k = L keeps everything (no recomputation).
 * Extra cost: one more forward of every segment but the last (about +1/3 of a LoRA step).
 *
 * The forward and backward formulas are the ones of src/llama.c and src/train_bwd.c (the
 * same kernels, called in the same order), so gradients equal the trainer's without
 * checkpointing up to the order of a few f32 sums (tests/c/test_ckpt.c: <= 1e-6 relative).
 *
 * It drives a LoRA trainer (train.h) from outside: the adapters, their gradients and the
 * optimizer are the trainer's; only the activations are planned here. Make the trainer with
 * a small batch_size × seq_len (1 × 1) so that its own full-activation plan stays tiny, then:
 *     struct pl_ckpt *ck;
 *     pl_ckpt_new(&ck, trainer, 1, 512, 1);             // batch 1 × 512, every layer
 *     pl_ckpt_micro(ck, ids, targets, 1, 512, &loss, &count, &stepped);
 * Dropout masks are hashes of the trainer's dropout position, so recomputation sees the
 * same masks as the forward.
 */
#ifndef PEFTLUA_CKPT_H
#define PEFTLUA_CKPT_H

#include <stdint.h>
#include "peftlua/status.h"
#include "peftlua/train.h"

struct pl_ckpt {
    struct pl_trainer *t;          /* borrowed: LoRA trainer (adapters attached to t->model) */
    int32_t B, T, every, n_seg;
    int32_t cur_n;
    float *mem;                    /* one planned allocation, PL_MEM_ACTIVATIONS */
    size_t mem_floats;
    /* checkpoints: [n_seg + 1][B·T·dim] (segment inputs, then the last layer's output) */
    float *ckpt;
    /* per segment slot j < every (strides B·T·...): the layer's input (j > 0), activations */
    float *s_in, *xn_att, *rstd_att, *q, *kc, *vc, *att, *att_out, *resid2, *xn_ffn, *rstd_ffn,
          *gate, *up, *act;
    float *xfinal, *rstd_final, *logits, *ce_losses, *ce_lse, *scratch;
    struct pl_act_grads g;
    int32_t *pos, *ids, *targets;
};

/* Plan checkpointed activations for batch B × up to T tokens over trainer t (LoRA only; its
 * adapters are re-planned for B·T rows). every < 1 or > n_layers is clamped. */
enum pl_status pl_ckpt_new(struct pl_ckpt **out, struct pl_trainer *t, int B, int T, int every);
void pl_ckpt_free(struct pl_ckpt *ck);

/* Floats pl_ckpt_new plans for a model of configuration c (for the memory model). */
int64_t pl_ckpt_plan_floats(const struct pl_model_config *c, int B, int T, int every);

/* Forward + checkpointed backward of one micro-batch (ids, targets [B, n], targets < 0
 * ignored; B <= planned B, n <= T): adapter gradients accumulate into t->grads scaled by
 * mul / (scored targets). *loss: mean cross-entropy (NAN if nothing is scored). */
enum pl_status pl_ckpt_grad(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                            int B, int n, double mul, double *loss, int64_t *count);

/* As pl_trainer_micro: accumulate toward grad_accum micro-batches, then the optimizer step
 * (*stepped = 1). */
enum pl_status pl_ckpt_micro(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                             int B, int n, double *loss, int64_t *count, int *stepped);

/* One optimizer step over rows x n tokens (ids, targets [rows, n]) in micro-batches of
 * (*ck)->B rows, each weighted 1/(micro-batches) as gradient accumulation does. If any
 * allocation fails during the step (PL_ERR_NOMEM: a budget, a real failure, or
 * pl_mem_fail_after), the partial step is rewound (gradients zeroed, dropout position back),
 * *ck is re-planned with half the rows per micro-batch (so the effective batch is kept) and
 * the whole step is retried; each change is appended to log as one line. The optimizer state
 * and any checkpoint on disk are untouched by a failed attempt. Fails only when a single row
 * does not fit, with the message naming it. *loss: token-weighted mean over the step. */
enum pl_status pl_ckpt_step_shrinking(struct pl_ckpt **ck, const int32_t *ids,
                                      const int32_t *targets, int rows, int n, double *loss,
                                      char *log, size_t log_size);

#endif
