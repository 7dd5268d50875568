/* train_bwd.c — the whole-model backward pass of the Llama forward in src/model/llama.c.
 *
 * Owner: train. Output head (src/train/train_head.c), then every block through the model's
 * one block backward (pl_llama_block_backward) from the layer's f32 activations, then the
 * embedding. Where a layer's activations come from is the caller's policy: the plain trainer
 * reads what the forward saved (pl_llama_saved_layer widens 16-bit copies one layer at a
 * time); gradient checkpointing (src/train/ckpt.c) recomputes each segment from its input.
 * This file also supplies the parameter side of the block backward (which weights are trained
 * and where their gradients go: LoRA adapters, or full fine-tuning's f32 master copies).
 */
#include "peftlua/kernels.h"
#include "train_internal.h"

/* dx += dy·W (+ adapter), dW += dyᵀ·x when W is trained (full), dbias likewise. */
static enum pl_status hook_proj_bwd(void *ctx, int l, enum pl_proj p, float *dx,
                                    const float *dy, const float *x, int64_t rows)
{
    struct pl_trainer *t = ctx;
    const struct pl_layer *ly = &t->model->layers[l];
    const struct pl_tensor *w = ly->w[p];
    float *dW = pl_train_grad_of(t, w);
    float *db = ly->b[p] ? pl_train_grad_of(t, ly->b[p]) : NULL;
    return pl_lora_proj_backward(t->lora, l, p, w, dW, db, dx, dy, x, rows);
}

static float *hook_grad_of(void *ctx, const struct pl_tensor *w)
{
    return pl_train_grad_of(ctx, w);
}

enum pl_status pl_train_model_backward(struct pl_trainer *t, const struct pl_train_head *h,
                                       const float *xL, struct pl_act_grads *g,
                                       const int32_t *ids, const int32_t *pos, int B, int T,
                                       int n, pl_train_acts_fn acts_of, void *actx)
{
    struct pl_model *m = t->model;
    const struct pl_model_config *cf = &m->cfg;
    const int64_t R = (int64_t)B * n;
    const struct pl_llama_grad_hooks hooks = { t, hook_proj_bwd, hook_grad_of };
    enum pl_status st;
    /* output head and final norm: logits = RMSNorm(x_L) · Woutᵀ over the scored rows */
    if ((st = pl_train_head_bwd(t, h, xL, g->d_wide, g->d_resid, R)) != PL_OK) return st;
    for (int l = cf->n_layers - 1; l >= 0; l--) {
        if ((st = pl_interrupt_check()) != PL_OK) return st;
        struct pl_llama_acts A;
        if ((st = acts_of(actx, l, &A)) != PL_OK) return st;
        if ((st = pl_llama_block_backward(m, l, &A, g, pos, B, T, n, &hooks)) != PL_OK) return st;
    }
    float *dE = pl_train_grad_of(t, m->tok_embd);
    if (dE) pl_embedding_bwd(dE, g->d_resid, ids, R, cf->vocab_size, cf->dim);
    return PL_OK;
}
