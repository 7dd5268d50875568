/* train_internal.h — shared between src/train/train.c, src/train/train_bwd.c, src/train/train_ckpt.c and src/train/ckpt.c
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

/* The output head over a step's scored rows only (src/train/train_head.c). The buffers hold up to
 * R rows: xfinal [R, dim], rstd [R], logits [R, vocab] (then dlogits, in place), ce_losses,
 * ce_lse [R]; rows and tg [R] the scored rows' indices and targets, nr how many. */
struct pl_train_head {
    float *xfinal, *rstd, *logits, *ce_losses, *ce_lse;
    int32_t *rows, *tg;
    int64_t nr;
};
/* Gather the rows of targets[R] that are scored (>= 0): returns and sets h->nr. */
int64_t pl_train_head_rows(struct pl_train_head *h, const int32_t *targets, int64_t R);
/* logits of the gathered rows of xL [R, dim] (final norm, output head) and their mean
 * cross-entropy (*mean 0, *count 0 when nothing is scored). */
enum pl_status pl_train_head_fwd(struct pl_trainer *t, struct pl_train_head *h, const float *xL,
                                 double *mean, int64_t *count);
/* dlogits = scale · (softmax − onehot), in place over h->logits. */
void pl_train_head_dlogits(struct pl_trainer *t, struct pl_train_head *h, float scale);
/* Head backward: d_resid [R, dim] = the final norm's input gradient (zero on unscored rows),
 * dxf [nr, dim] scratch; full fine-tuning also accumulates Wout's and the norm's gradients. */
enum pl_status pl_train_head_bwd(struct pl_trainer *t, const struct pl_train_head *h,
                                 const float *xL, float *dxf, float *d_resid, int64_t R);

/* The saved-activation trainer's head buffers (src/train/train.c). */
void pl_trainer_head(struct pl_trainer *t, struct pl_train_head *h);

/* Allocate the optimizer state if not yet done (zeroed). */
enum pl_status pl_train_ensure_optim(struct pl_trainer *t);

#endif
