/* train_params.c — the trained parameters of a trainer: full fine-tuning's flat f32 master
 * vector (and each weight's gradient slot in it), the optimizer state allocated for the
 * trained vector, and named access to parameters and gradients (PEFT/HF names).
 *
 * Owner: train. A leaf of the training files: the step (train.c), the backward
 * (train_bwd.c), the head (train_head.c) and checkpoints (train_ckpt.c) call it; it calls
 * none of them.
 */
#include <stdio.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/ckpt.h"
#include "peftlua/train.h"
#include "train_internal.h"

/* Full fine-tuning: one flat f32 vector holding every weight; the model's tensors become views
 * of it. Tied output: the same view, so both uses accumulate into one gradient. */
enum pl_status pl_train_setup_full(struct pl_trainer *t)
{
    struct pl_model *m = t->model;
    int np = pl_model_n_params(m);
    int64_t total = 0;
    for (int i = 0; i < np; i++) total += pl_tensor_numel(*pl_model_param(m, i, NULL, 0));
    struct pl_storage *s = pl_storage_new((size_t)total * sizeof(float), PL_MEM_WEIGHTS);
    if (!s) return pl_fail(PL_ERR_NOMEM, "train: out of memory for the f32 master copy of %lld weights",
                           (long long)total);
    t->grads = pl_calloc((size_t)total, sizeof(float), PL_MEM_GRADS);
    t->full = pl_calloc((size_t)np, sizeof *t->full, PL_MEM_GRADS);
    if (!t->grads || !t->full) {
        pl_storage_release(s);
        return pl_fail(PL_ERR_NOMEM, "train: out of memory for %lld gradients", (long long)total);
    }
    t->n_full = np;
    size_t off = 0;
    for (int i = 0; i < np; i++) {
        char name[160];
        struct pl_tensor **slot = pl_model_param(m, i, name, sizeof name);
        struct pl_tensor *w = *slot;
        struct pl_tensor *f = pl_tensor_over(s, off * sizeof(float), PL_F32, w->ndim, w->shape);
        if (!f) { pl_storage_release(s); return PL_ERR_NOMEM; }
        enum pl_status st = pl_tensor_read_f32(w, pl_tensor_data(f));
        if (st != PL_OK) {
            pl_tensor_release(f);
            pl_storage_release(s);
            return pl_fail(st, "train: %s: %s", name, pl_last_error());
        }
        int64_t n = pl_tensor_numel(w);
        t->full[i].w = pl_tensor_data(f);
        t->full[i].g = t->grads + off;
        t->full[i].n = n;
        if (i == 0 && m->cfg.tied_output) {
            pl_tensor_release(m->output);
            m->output = pl_tensor_retain(f);
        }
        pl_tensor_release(w);
        *slot = f;
        off += (size_t)n;
    }
    t->params = pl_tensor_data(m->tok_embd);   /* offset 0 of the flat vector */
    pl_storage_release(s);                     /* the tensors hold it */
    t->n_params = total;
    return PL_OK;
}

float *pl_train_grad_of(struct pl_trainer *t, const struct pl_tensor *w)
{
    if (t->cfg.method != PL_TRAIN_FULL || !w) return NULL;
    const float *d = pl_tensor_data(w);
    for (int i = 0; i < t->n_full; i++)
        if (t->full[i].w == d) return t->full[i].g;
    return NULL;
}

enum pl_status pl_train_ensure_optim(struct pl_trainer *t)
{
    /* allocated on first use, so gradient-only uses (checks, evaluation) never pay for it */
    const struct pl_optimizer *o = pl_optimizer_get(t->cfg.optim);
    if (!o) return pl_fail(PL_ERR_ARG, "train: unknown optimizer %d", (int)t->cfg.optim);
    if (!t->opt_m) t->opt_m = pl_calloc((size_t)t->n_params, sizeof(float), PL_MEM_OPTIM);
    if (o->n_state > 1 && !t->opt_v)
        t->opt_v = pl_calloc((size_t)t->n_params, sizeof(float), PL_MEM_OPTIM);
    if (!t->opt_m || (o->n_state > 1 && !t->opt_v))
        return pl_fail(PL_ERR_NOMEM, "train: out of memory for optimizer state (%lld parameters)",
                       (long long)t->n_params);
    return PL_OK;
}

static float *find_vec(struct pl_trainer *t, const char *name, int64_t *n, int want_grad)
{
    char buf[200];
    if (t->cfg.method == PL_TRAIN_LORA) {
        struct pl_lora *a = t->lora;
        for (int i = 0; i < a->n; i++) {
            struct pl_lora_adapter *d = &a->ad[i];
            for (int w = 0; w < 4; w++) {   /* lora_A, lora_B, lora_magnitude_vector, ia3_l */
                float *v = w == 0 ? d->A : w == 1 ? d->B : w == 2 ? d->mag : d->vec;
                if (!v) continue;
                pl_name_adapter(buf, sizeof buf, "", d->layer, d->proj, "ABML"[w]);   /* model/names.c */
                if (strcmp(buf, name) == 0) {
                    *n = w == 0 ? (int64_t)a->cfg.r * d->in : w == 1 ? (int64_t)a->cfg.r * d->out
                       : w == 2 ? d->out : (d->ff ? d->in : d->out);
                    if (want_grad) return w == 0 ? d->dA : w == 1 ? d->dB : w == 2 ? d->dmag : d->dvec;
                    return v;
                }
            }
        }
        return NULL;
    }
    int np = pl_model_n_params(t->model);
    for (int i = 0; i < np && i < t->n_full; i++) {
        pl_model_param(t->model, i, buf, sizeof buf);
        if (strcmp(buf, name) == 0) {
            *n = t->full[i].n;
            return want_grad ? t->full[i].g : t->full[i].w;
        }
    }
    return NULL;
}

float *pl_trainer_find_grad(struct pl_trainer *t, const char *name, int64_t *n)
{
    return find_vec(t, name, n, 1);
}

float *pl_trainer_find_param(struct pl_trainer *t, const char *name, int64_t *n)
{
    return find_vec(t, name, n, 0);
}

/* ---- what callers may read (and the one thing they may set) of the private struct ---- */

const struct pl_train_cfg *pl_trainer_cfg(const struct pl_trainer *t) { return &t->cfg; }
struct pl_model *pl_trainer_model(const struct pl_trainer *t) { return t->model; }
struct pl_lora *pl_trainer_lora(const struct pl_trainer *t) { return t->lora; }
int64_t pl_trainer_n_params(const struct pl_trainer *t) { return t->n_params; }

float *pl_trainer_params(const struct pl_trainer *t, int64_t *n)
{
    if (n) *n = t->n_params;
    return t->params;
}

float *pl_trainer_grads(const struct pl_trainer *t, int64_t *n)
{
    if (n) *n = t->n_params;
    return t->grads;
}

float *pl_trainer_optim_state(const struct pl_trainer *t, int i)
{
    return i == 0 ? t->opt_m : i == 1 ? t->opt_v : NULL;
}

int pl_trainer_n_views(const struct pl_trainer *t) { return t->n_full; }
struct pl_ckpt *pl_trainer_ckpt(const struct pl_trainer *t) { return t->ckpt; }

int64_t pl_trainer_view(const struct pl_trainer *t, int i, float **w, float **g)
{
    if (i < 0 || i >= t->n_full) return 0;
    if (w) *w = t->full[i].w;
    if (g) *g = t->full[i].g;
    return t->full[i].n;
}

struct pl_trainer_state pl_trainer_state(const struct pl_trainer *t)
{
    struct pl_trainer_state s = {
        .step = t->step, .micro = t->micro, .tokens_seen = t->tokens_seen,
        .accum_loss = t->accum_loss, .accum_tokens = t->accum_tokens, .last_loss = t->last_loss,
        .last_grad_norm = t->last_grad_norm, .last_lr = t->last_lr, .loss_scale = t->loss_scale,
        .good_steps = t->good_steps, .skipped_steps = t->skipped_steps,
        .dropout_at_step = t->dropout_at_step, .plan_rows = t->plan_rows,
        .checkpointed = t->ckpt != NULL, .world = t->world > 1 ? t->world : 1, .rank = t->rank,
        .plan_bytes = t->ckpt ? (int64_t)(t->ckpt->mem_floats * 4 + t->ckpt->mem_halves * 2)
                    : t->ctx ? (int64_t)(t->ctx->mem_floats * 4 + t->ctx->mem_halves * 2) : 0,
    };
    return s;
}

void pl_trainer_set_step(struct pl_trainer *t, int64_t step) { t->step = step; }
