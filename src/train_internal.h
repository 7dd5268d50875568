/* train_internal.h — shared between src/train.c, src/train_bwd.c, src/train_ckpt.c and src/ckpt.c
 * (which takes full fine-tuning's gradient slots from pl_train_grad_of) only.
 * Owner: train. */
#ifndef PEFTLUA_TRAIN_INTERNAL_H
#define PEFTLUA_TRAIN_INTERNAL_H

#include "peftlua/train.h"

/* Backward of the staged batch whose forward is in t->ctx and whose dlogits replaced
 * t->ctx->logits: accumulates into t->grads (adapters, or every f32 master weight). */
enum pl_status pl_train_backward(struct pl_trainer *t);
/* Full fine-tuning: the gradient slice of master weight w (NULL for LoRA or unknown). */
float *pl_train_grad_of(struct pl_trainer *t, const struct pl_tensor *w);

/* Allocate the optimizer state if not yet done (zeroed). */
enum pl_status pl_train_ensure_optim(struct pl_trainer *t);

#endif
