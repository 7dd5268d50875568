/* train_internal.h — shared by the training files only (src/train/train.c, train_params.c,
 * train_bwd.c, train_head.c, train_ckpt.c, train_export.c, ckpt.c). Owner: train. */
#ifndef PEFTLUA_TRAIN_INTERNAL_H
#define PEFTLUA_TRAIN_INTERNAL_H

#include "peftlua/train.h"

/* The trainer (opaque outside the training code: train.h's functions). */
struct pl_trainer {
    struct pl_train_cfg cfg;
    struct pl_model *model;          /* borrowed; modified (hook, or f32 master weights) */
    struct pl_lora *lora;            /* LoRA: owned */
    struct pl_ckpt *ckpt;            /* checkpointed forward/backward when cfg.ckpt_every > 0
                                        (then also evaluation; ctx and the backward buffers
                                        below are not made) */
    struct pl_llama_ctx *ctx;        /* planned plan_rows x seq_len with saved activations */
    int32_t plan_rows;               /* rows per forward the buffers hold (<= batch_size after
                                        a shrink; 0: unplanned after a failed re-plan) */
    float *params, *grads;           /* the trained flat vector and its gradient */
    int64_t n_params;
    float *opt_m, *opt_v;            /* the optimizer's state vectors 0 and 1 (as many as its
                                        table entry's n_state: AdamW's moments, SGD's or Lion's
                                        momentum in opt_m); allocated at the first step (or
                                        checkpoint save/load) */
    int64_t step;                    /* optimizer steps done */
    int32_t micro;                   /* micro-batches accumulated toward the next step */
    double accum_loss;               /* sum over the pending micro-batches of mean losses */
    int64_t accum_tokens;
    int64_t tokens_seen;             /* target tokens trained on */
    uint64_t dropout_at_step;        /* LoRA dropout position when the current step began */
    double last_loss, last_grad_norm, last_lr;
    /* fp16 loss scaling (S = 1 and nothing skipped otherwise) */
    double loss_scale;               /* S: the loss gradient is multiplied by it */
    int64_t good_steps;              /* finite steps since S last changed */
    int64_t skipped_steps;           /* steps skipped for a non-finite gradient */
    /* backward scratch (one planned allocation, PL_MEM_ACTIVATIONS) */
    float *bwd_mem;
    struct pl_act_grads g;
    float *ce_losses, *ce_lse;       /* [B*T] cross-entropy saved state */
    int32_t *targets;                /* [B*n] padded copy of the current chunk, then [B*T] x 2:
                                        the scored rows' indices and targets (head_rows) */
    int32_t *head_rows;
    int64_t head_nr;                 /* scored rows of the staged chunk */
    int32_t cur_n;                   /* its row length n (<= seq_len) */
    int32_t *ids;                    /* [B*T] */
    /* full fine-tuning: the f32 master vector's per-parameter views */
    int32_t n_full;
    struct pl_trainer_param { float *w, *g; int64_t n; } *full;
    /* data parallel (set by pl_dist_trainer_attach, dist.h; 0 = one process): `world` ranks
       each run grad_accum micro-batches of every step, this one is `rank`. Each micro-batch is
       scaled 1/(grad_accum · world); LoRA dropout positions are the global micro-batch's
       (rank r runs global micro-batches r·grad_accum ..); reduce, when set, sums gradients,
       accum_loss and accum_tokens over the ranks at the start of pl_trainer_step. */
    int32_t world, rank;
    enum pl_status (*reduce)(struct pl_trainer *t);
};

/* Full fine-tuning: every weight becomes a view of one flat f32 master vector (t->params),
 * with its gradient slot in t->grads (src/train/train_params.c). */
enum pl_status pl_train_setup_full(struct pl_trainer *t);
/* Where the backward finds layer l's f32 activations: the saved ones (the plain trainer) or
 * its segment recomputed from a kept input (checkpointing, src/train/ckpt.c). */
typedef enum pl_status (*pl_train_acts_fn)(void *ctx, int l, struct pl_llama_acts *a);
struct pl_train_head;
/* The whole-model backward once the head's dlogits are in h: head and final norm, blocks
 * L-1..0 (pl_llama_block_backward, with the trainer's parameters: adapters or full
 * fine-tuning's master weights), the embedding. ids, pos [B*n]; B x T the plan's strides. */
enum pl_status pl_train_model_backward(struct pl_trainer *t, const struct pl_train_head *h,
                                       const float *xL, struct pl_act_grads *g,
                                       const int32_t *ids, const int32_t *pos, int B, int T,
                                       int n, pl_train_acts_fn acts_of, void *actx);
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

/* Copy a [B, n] batch into a plan of PB >= B rows as [PB, n]: missing rows are padding (the
 * model's eos, or 0) with ignored targets; pos_out (may be NULL) gets each row's positions
 * 0..n-1. Rows are only as long as the batch (n <= the plan's T), so short batches cost what
 * they hold; causal attention makes padding at a row's end harmless anyway. */
void pl_train_stage(int32_t *ids_out, int32_t *tg_out, int32_t *pos_out, int PB,
                    const struct pl_model_config *c, const int32_t *ids, const int32_t *targets,
                    int B, int n);

/* Allocate the optimizer state if not yet done (zeroed). */
enum pl_status pl_train_ensure_optim(struct pl_trainer *t);

#endif
