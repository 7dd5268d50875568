/* train_head.c — the output head of a training step over its scored rows only (owner: train).
 *
 * logits = RMSNorm(x_L) · Woutᵀ is the widest product of a step ([rows x dim] x [dim x vocab]:
 * 21% of SmolLM2-135M's weights), and the cross-entropy and its backward are [rows x vocab]
 * too. Rows whose target is ignored — prompt tokens under prompt masking, padding rows, the
 * last position of a text — contribute nothing to the loss and receive a zero gradient, so
 * the head, the loss and the head's backward run over the scored rows alone, gathered in
 * order; the final norm's input gradient is scattered back (zero elsewhere). The losses and
 * gradients are those of the all-rows head (each logit is the same dot product; the sums of
 * the weight gradient skip rows that contribute exact zeros), at the cost of a step that
 * scores a fraction f of its rows: f of the head instead of all of it.
 * Used by the saved-activation trainer (src/train/train.c, src/train/train_bwd.c) and by gradient
 * checkpointing (src/train/ckpt.c), as is the staging of a batch into a plan (the other end
 * of a step).
 */
#include <string.h>

#include "peftlua/kernels.h"
#include "peftlua/model.h"
#include "train_internal.h"

void pl_train_stage(int32_t *ids_out, int32_t *tg_out, int32_t *pos_out, int PB,
                    const struct pl_model_config *c, const int32_t *ids, const int32_t *targets,
                    int B, int n)
{
    const int32_t pad = c->eos_id >= 0 ? c->eos_id : 0;
    for (int b = 0; b < PB; b++)
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)b * n + i;
            ids_out[k] = b < B ? ids[k] : pad;
            tg_out[k] = b < B ? targets[k] : -1;
            if (pos_out) pos_out[k] = i;
        }
}

int64_t pl_train_head_rows(struct pl_train_head *h, const int32_t *targets, int64_t R)
{
    int64_t nr = 0;
    for (int64_t k = 0; k < R; k++)
        if (targets[k] >= 0) {
            h->rows[nr] = (int32_t)k;
            h->tg[nr] = targets[k];
            nr++;
        }
    h->nr = nr;
    return nr;
}

enum pl_status pl_train_head_fwd(struct pl_trainer *t, struct pl_train_head *h, const float *xL,
                                 double *mean, int64_t *count)
{
    const struct pl_model *m = t->model;
    const int64_t D = m->cfg.dim, V = m->cfg.vocab_size, nr = h->nr;
    const float *w = (const float *)pl_tensor_data(m->out_norm);
    *mean = 0;
    *count = 0;
    if (nr == 0) return PL_OK;
    for (int64_t i = 0; i < nr; i++)
        pl_rmsnorm_fwd(h->xfinal + i * D, h->rstd + i, xL + (size_t)h->rows[i] * D, w, 1, D,
                       m->cfg.norm_eps);
    const struct pl_tensor *Wo = m->output;
    enum pl_status st = pl_linear_fwd(h->logits, h->xfinal, pl_tensor_data(Wo), Wo->dtype, NULL,
                                      nr, D, V);
    if (st != PL_OK) return st;
    return pl_crossentropy_fwd(h->ce_losses, h->ce_lse, mean, count, h->logits, h->tg, nr, V);
}

void pl_train_head_dlogits(struct pl_trainer *t, struct pl_train_head *h, float scale)
{
    if (h->nr == 0) return;
    pl_crossentropy_bwd(h->logits, h->ce_lse, h->logits, h->tg, scale, h->nr,
                        t->model->cfg.vocab_size);
}

enum pl_status pl_train_head_bwd(struct pl_trainer *t, const struct pl_train_head *h,
                                 const float *xL, float *dxf, float *d_resid, int64_t R)
{
    const struct pl_model *m = t->model;
    const int64_t D = m->cfg.dim, V = m->cfg.vocab_size, nr = h->nr;
    memset(d_resid, 0, (size_t)R * D * sizeof(float));
    if (nr == 0) return PL_OK;
    memset(dxf, 0, (size_t)nr * D * sizeof(float));
    const struct pl_tensor *Wo = m->output;
    enum pl_status st = pl_linear_bwd(dxf, pl_train_grad_of(t, Wo), NULL, h->logits, h->xfinal,
                                      pl_tensor_data(Wo), Wo->dtype, nr, D, V);
    if (st != PL_OK) return st;
    float *dw = pl_train_grad_of(t, m->out_norm);
    const float *w = (const float *)pl_tensor_data(m->out_norm);
    for (int64_t i = 0; i < nr; i++) {
        size_t r = (size_t)h->rows[i] * D;
        pl_rmsnorm_bwd(d_resid + r, dw, dxf + i * D, h->rstd + i, xL + r, w, 1, D);
    }
    return PL_OK;
}
