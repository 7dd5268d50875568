/* train.c — the trainer: set-up for LoRA or full fine-tuning, micro-batches with gradient
 * accumulation, the optimizer step, evaluation, and named access to gradients.
 *
 * Owner: train. The backward pass is assembled in src/train_bwd.c, checkpoints live in
 * src/train_ckpt.c; the contract is include/peftlua/train.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/ckpt.h"
#include "peftlua/kernels.h"
#include "peftlua/qlora.h"
#include "peftlua/train.h"
#include "train_internal.h"

struct pl_train_cfg pl_train_defaults(void)
{
    struct pl_train_cfg c;
    memset(&c, 0, sizeof c);
    c.method = PL_TRAIN_LORA;
    c.optim = PL_OPTIM_ADAMW;
    c.batch_size = 4;
    c.seq_len = 256;
    c.grad_accum = 1;
    c.lr = 2e-4;
    c.weight_decay = 0.0;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.momentum = 0.9;
    c.schedule = PL_SCHED_COSINE;
    c.total_steps = 100;
    c.max_grad_norm = 1.0;
    c.seed = 42;
    c.lora = pl_lora_defaults();
    c.precision = PL_PREC_FP32;
    c.loss_scale = 65536.0;
    c.growth_interval = 2000;
    return c;
}

int pl_precision_from_name(const char *name)
{
    if (!name) return -1;
    if (strcmp(name, "fp32") == 0) return PL_PREC_FP32;
    if (strcmp(name, "bf16") == 0) return PL_PREC_BF16;
    if (strcmp(name, "fp16") == 0) return PL_PREC_FP16;
    return -1;
}

const char *pl_precision_name(enum pl_precision p)
{
    return p == PL_PREC_BF16 ? "bf16" : p == PL_PREC_FP16 ? "fp16" : "fp32";
}

/* Mixed precision, LoRA: the frozen projections that are f32 in every layer are re-stored in
 * the 16-bit type (src/qlora.c, row by row); quantised or 16-bit ones keep their type. */
static enum pl_status store_frozen16(struct pl_model *m, enum pl_precision p)
{
    uint32_t targets = 0;
    for (int q = 0; q < PL_PROJ_COUNT; q++) {
        int all = 1;
        for (int l = 0; l < m->cfg.n_layers; l++)
            if (m->layers[l].w[q]->dtype != PL_F32) all = 0;
        if (all) targets |= 1u << q;
    }
    if (!targets) return PL_OK;
    enum pl_status st = pl_qlora_quantize(m, p == PL_PREC_BF16 ? PL_BF16 : PL_F16, targets, NULL);
    if (st != PL_OK) return pl_fail(st, "train: precision %s: %s", pl_precision_name(p), pl_last_error());
    return PL_OK;
}

/* Full fine-tuning: one flat f32 vector holding every weight; the model's tensors become views
 * of it. Tied output: the same view, so both uses accumulate into one gradient. */
static enum pl_status setup_full(struct pl_trainer *t)
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

/* The staged batch (ids, targets), the cross-entropy state and, unless src/ckpt.c plans its
 * own (grads = 0), the activation gradients of the backward: one block each. */
static enum pl_status plan_bwd(struct pl_trainer *t, int grads)
{
    const struct pl_model_config *c = &t->model->cfg;
    int64_t BT = (int64_t)t->cfg.batch_size * t->cfg.seq_len;
    size_t n = (grads ? (size_t)pl_act_grads_floats(c, BT) : 0) + 2 * (size_t)BT;
    t->bwd_mem = pl_alloc(n * sizeof(float), PL_MEM_ACTIVATIONS);
    t->ids = pl_alloc((size_t)BT * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    t->targets = pl_alloc((size_t)BT * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    if (!t->bwd_mem || !t->ids || !t->targets)
        return pl_fail(PL_ERR_NOMEM, "train: out of memory for %.1f MiB of backward buffers",
                       (double)n * 4 / 1048576.0);
    float *p = grads ? pl_act_grads_carve(&t->g, t->bwd_mem, c, BT) : t->bwd_mem;
    t->ce_losses = p;
    t->ce_lse = p + BT;
    return PL_OK;
}

enum pl_status pl_trainer_new(struct pl_trainer **out, struct pl_model *m,
                              const struct pl_train_cfg *cfg)
{
    *out = NULL;
    if (cfg->batch_size < 1 || cfg->seq_len < 1)
        return pl_fail(PL_ERR_ARG, "train: batch_size %d and seq_len %d must be at least 1",
                       cfg->batch_size, cfg->seq_len);
    if (cfg->grad_accum < 1)
        return pl_fail(PL_ERR_ARG, "train: grad_accum %d must be at least 1", cfg->grad_accum);
    if (!(cfg->lr >= 0) || !isfinite(cfg->lr))
        return pl_fail(PL_ERR_ARG, "train: learning_rate %g is not a non-negative number", cfg->lr);
    if (m->linear_hook)
        return pl_fail(PL_ERR_STATE, "train: the model already has adapters attached");
    if ((int)cfg->precision < PL_PREC_FP32 || (int)cfg->precision > PL_PREC_FP16)
        return pl_fail(PL_ERR_ARG, "train: unknown precision %d (fp32, bf16 or fp16)", (int)cfg->precision);
    if (cfg->precision == PL_PREC_FP16) {
        int e;
        if (!(cfg->loss_scale >= 1.0) || !isfinite(cfg->loss_scale) || frexp(cfg->loss_scale, &e) != 0.5)
            return pl_fail(PL_ERR_ARG, "train: loss_scale %g must be a power of two >= 1 (unscaling is then exact)",
                           cfg->loss_scale);
        if (cfg->growth_interval < 1)
            return pl_fail(PL_ERR_ARG, "train: growth_interval %d must be at least 1", cfg->growth_interval);
    }
    enum pl_status st;
    if (cfg->method == PL_TRAIN_LORA && cfg->precision != PL_PREC_FP32 &&
        (st = store_frozen16(m, cfg->precision)) != PL_OK)
        return st;
    struct pl_trainer *t = pl_calloc(1, sizeof *t, PL_MEM_OPTIM);
    if (!t) return pl_fail(PL_ERR_NOMEM, "train: out of memory");
    t->cfg = *cfg;
    t->model = m;
    t->loss_scale = cfg->precision == PL_PREC_FP16 ? cfg->loss_scale : 1.0;
    if (cfg->method == PL_TRAIN_LORA) {
        if ((st = pl_lora_new(&t->lora, &m->cfg, &cfg->lora, cfg->seed)) != PL_OK) goto fail;
        if ((st = pl_lora_plan(t->lora, (int64_t)cfg->batch_size * cfg->seq_len)) != PL_OK) goto fail;
        t->params = t->lora->params;
        t->grads = t->lora->grads;
        t->n_params = t->lora->n_params;
        pl_lora_attach(t->lora, m);
    } else {
        if ((st = setup_full(t)) != PL_OK) goto fail;
    }
    if (cfg->ckpt_every > 0) {
        /* Checkpointed: src/ckpt.c owns the training activations; the context here only
         * serves evaluation (nothing saved), plus the staged batch and the eval loss state. */
        if (cfg->method != PL_TRAIN_LORA) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "train: gradient checkpointing is implemented for LoRA/QLoRA, not full fine-tuning");
            goto fail;
        }
        t->ctx = pl_llama_ctx_new(m, cfg->batch_size, cfg->seq_len, 0);
        if (!t->ctx) { st = PL_ERR_NOMEM; goto fail; }
        if ((st = plan_bwd(t, 0)) != PL_OK) goto fail;
        if ((st = pl_ckpt_new(&t->ckpt, t, cfg->batch_size, cfg->seq_len, cfg->ckpt_every)) != PL_OK) goto fail;
    } else {
        int flags = PL_LLAMA_SAVE | (cfg->precision == PL_PREC_BF16 ? PL_LLAMA_SAVE_BF16
                                     : cfg->precision == PL_PREC_FP16 ? PL_LLAMA_SAVE_F16 : 0);
        t->ctx = pl_llama_ctx_new(m, cfg->batch_size, cfg->seq_len, flags);
        if (!t->ctx) { st = PL_ERR_NOMEM; goto fail; }
        if ((st = plan_bwd(t, 1)) != PL_OK) goto fail;
    }
    *out = t;
    return PL_OK;
fail:
    pl_trainer_free(t);
    return st;
}

void pl_trainer_free(struct pl_trainer *t)
{
    if (!t) return;
    pl_ckpt_free(t->ckpt);
    pl_lora_free(t->lora);
    if (t->cfg.method == PL_TRAIN_FULL) pl_free(t->grads);
    pl_free(t->full);
    pl_free(t->opt_m);
    pl_free(t->opt_v);
    pl_free(t->bwd_mem);
    pl_free(t->ids);
    pl_free(t->targets);
    pl_llama_ctx_free(t->ctx);
    pl_free(t);
}

/* Copy a [B, n] batch into the planned layout as [batch_size, n]: missing rows are padding
 * with ignored targets. Rows are only as long as the batch (n <= seq_len), so short batches
 * cost what they hold; causal attention makes padding at a row's end harmless anyway. */
static enum pl_status stage_batch(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                                  int B, int n)
{
    const int PB = t->cfg.batch_size, PT = t->cfg.seq_len;
    if (B < 1 || B > PB || n < 1 || n > PT)
        return pl_fail(PL_ERR_ARG, "train: batch %d x %d does not fit the planned %d x %d", B, n,
                       PB, PT);
    int32_t pad = t->model->cfg.eos_id >= 0 ? t->model->cfg.eos_id : 0;
    for (int b = 0; b < PB; b++)
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)b * n + i;
            if (b < B) {
                t->ids[k] = ids[k];
                t->targets[k] = targets[k];
            } else {
                t->ids[k] = pad;
                t->targets[k] = -1;
            }
        }
    t->cur_n = n;
    return PL_OK;
}

/* Forward + loss + backward of the staged batch; gradient scale = mul / count (mul carries the
 * fp16 loss scale S). */
static enum pl_status fwd_bwd(struct pl_trainer *t, double mul, double *loss, int64_t *count)
{
    const int PB = t->cfg.batch_size, n = t->cur_n;
    const int64_t BT = (int64_t)PB * n, V = t->model->cfg.vocab_size;
    if (t->ckpt) return pl_ckpt_grad(t->ckpt, t->ids, t->targets, PB, n, mul, loss, count);
    if (t->lora) t->lora->training = 1;
    enum pl_status st = pl_llama_forward(t->ctx, t->ids, n, 0, 0);
    t->ctx->n_past = 0;
    if (st != PL_OK) goto out;
    double mean = 0;
    int64_t cnt = 0;
    if ((st = pl_crossentropy_fwd(t->ce_losses, t->ce_lse, &mean, &cnt, t->ctx->logits,
                                  t->targets, BT, V)) != PL_OK)
        goto out;
    *loss = cnt ? mean : NAN;
    *count = cnt;
    if (cnt == 0) goto out;   /* nothing to learn from: no gradient */
    pl_crossentropy_bwd(t->ctx->logits, t->ce_lse, t->ctx->logits, t->targets,
                        (float)(mul / (double)cnt), BT, V);
    st = pl_train_backward(t);
out:
    if (t->lora) {
        t->lora->training = 0;
        t->lora->dropout_step++;
    }
    return st;
}

enum pl_status pl_trainer_micro(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                                int B, int n, double *loss, int64_t *count, int *stepped)
{
    *stepped = 0;
    enum pl_status st = stage_batch(t, ids, targets, B, n);
    if (st != PL_OK) return st;
    double l = NAN;
    int64_t c = 0;
    if ((st = fwd_bwd(t, t->loss_scale / t->cfg.grad_accum, &l, &c)) != PL_OK) return st;
    if (loss) *loss = l;
    if (count) *count = c;
    if (c > 0) {
        t->accum_loss += l * (double)c;
        t->accum_tokens += c;
    }
    if (++t->micro >= t->cfg.grad_accum) {
        if ((st = pl_trainer_step(t)) != PL_OK) return st;
        *stepped = 1;
    }
    return PL_OK;
}

enum pl_status pl_train_ensure_optim(struct pl_trainer *t)
{
    /* allocated on first use, so gradient-only uses (checks, evaluation) never pay for it */
    if (!t->opt_m) t->opt_m = pl_calloc((size_t)t->n_params, sizeof(float), PL_MEM_OPTIM);
    if (t->cfg.optim == PL_OPTIM_ADAMW && !t->opt_v)
        t->opt_v = pl_calloc((size_t)t->n_params, sizeof(float), PL_MEM_OPTIM);
    if (!t->opt_m || (t->cfg.optim == PL_OPTIM_ADAMW && !t->opt_v))
        return pl_fail(PL_ERR_NOMEM, "train: out of memory for optimizer state (%lld parameters)",
                       (long long)t->n_params);
    return PL_OK;
}

/* Gradients × 1/S: exact (S is a power of two) unless a value falls below f32's normal range. */
static void unscale(struct pl_trainer *t)
{
    if (t->loss_scale == 1.0) return;
    const float inv = (float)(1.0 / t->loss_scale);
    float *g = t->grads;
    const int64_t n = t->n_params;
    #pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
    for (int64_t i = 0; i < n; i++) g[i] *= inv;
}

enum pl_status pl_trainer_step(struct pl_trainer *t)
{
    enum pl_status st = pl_train_ensure_optim(t);
    if (st != PL_OK) return st;
    float *g = t->grads;
    int64_t n = t->n_params;
    unscale(t);
    double norm = pl_clip_grad_norm(&g, &n, 1, t->cfg.max_grad_norm);
    /* the schedule and AdamW's bias correction count applied updates */
    const int64_t applied = t->step - t->skipped_steps;
    double lr = pl_lr_at(t->cfg.schedule, t->cfg.lr, applied, t->cfg.warmup, t->cfg.total_steps,
                         t->cfg.min_lr_ratio);
    const int fp16 = t->cfg.precision == PL_PREC_FP16;
    if (isfinite(norm)) {
        if (t->cfg.optim == PL_OPTIM_ADAMW) {
            struct pl_adamw_cfg c = { t->cfg.beta1, t->cfg.beta2, t->cfg.eps, t->cfg.weight_decay };
            pl_adamw_step(t->params, t->grads, t->opt_m, t->opt_v, n, &c, lr, applied + 1);
        } else {
            struct pl_sgd_cfg c = { t->cfg.momentum, 0.0, t->cfg.weight_decay, t->cfg.nesterov };
            pl_sgd_step(t->params, t->grads, t->opt_m, n, &c, lr, applied == 0);
        }
        if (fp16 && ++t->good_steps >= t->cfg.growth_interval) {
            t->loss_scale *= 2.0;
            t->good_steps = 0;
        }
    } else if (fp16) {
        /* parameters and moments untouched; the scale backs off */
        t->skipped_steps++;
        t->good_steps = 0;
        if (t->loss_scale > 1.0) t->loss_scale *= 0.5;
    }
    memset(t->grads, 0, (size_t)n * sizeof(float));
    t->last_grad_norm = norm;
    t->last_lr = lr;
    t->last_loss = t->accum_tokens ? t->accum_loss / (double)t->accum_tokens : NAN;
    t->tokens_seen += t->accum_tokens;
    t->accum_loss = 0;
    t->accum_tokens = 0;
    t->micro = 0;
    t->step++;
    if (t->lora) t->dropout_at_step = t->lora->dropout_step;
    return PL_OK;
}

void pl_trainer_rewind(struct pl_trainer *t)
{
    memset(t->grads, 0, (size_t)t->n_params * sizeof(float));
    t->micro = 0;
    t->accum_loss = 0;
    t->accum_tokens = 0;
    if (t->lora) t->lora->dropout_step = t->dropout_at_step;
}

enum pl_status pl_trainer_grad(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                               int B, int n, double *loss)
{
    memset(t->grads, 0, (size_t)t->n_params * sizeof(float));
    enum pl_status st = stage_batch(t, ids, targets, B, n);
    if (st != PL_OK) return st;
    int64_t c = 0;
    /* scaled as a training step is, then unscaled: the gradients of the mean loss */
    if ((st = fwd_bwd(t, t->loss_scale, loss, &c)) != PL_OK) return st;
    unscale(t);
    return PL_OK;
}

enum pl_status pl_trainer_eval(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                               int B, int n, double *sum, int64_t *count)
{
    enum pl_status st = stage_batch(t, ids, targets, B, n);
    if (st != PL_OK) return st;
    const int PB = t->cfg.batch_size, cn = t->cur_n;
    const int64_t BT = (int64_t)PB * cn, V = t->model->cfg.vocab_size;
    if (t->lora) t->lora->training = 0;
    st = pl_llama_forward(t->ctx, t->ids, cn, 0, 0);
    t->ctx->n_past = 0;
    if (st != PL_OK) return st;
    double mean = 0;
    int64_t cnt = 0;
    if ((st = pl_crossentropy_fwd(t->ce_losses, t->ce_lse, &mean, &cnt, t->ctx->logits, t->targets,
                                  BT, V)) != PL_OK)
        return st;
    *sum = mean * (double)cnt;
    *count = cnt;
    return PL_OK;
}

static float *find_vec(struct pl_trainer *t, const char *name, int64_t *n, int want_grad)
{
    char buf[200];
    if (t->cfg.method == PL_TRAIN_LORA) {
        struct pl_lora *a = t->lora;
        for (int i = 0; i < a->n; i++) {
            struct pl_lora_adapter *d = &a->ad[i];
            for (int w = 0; w < 2; w++) {
                snprintf(buf, sizeof buf, "model.layers.%d.%s.%s.lora_%c.weight", d->layer,
                         d->proj <= PL_PROJ_O ? "self_attn" : "mlp", pl_proj_names[d->proj],
                         w ? 'B' : 'A');
                if (strcmp(buf, name) == 0) {
                    *n = (int64_t)a->cfg.r * (w ? d->out : d->in);
                    if (want_grad) return w ? d->dB : d->dA;
                    return w ? d->B : d->A;
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
