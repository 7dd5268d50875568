/* train.c — the trainer: set-up for LoRA or full fine-tuning, the per-step plan (and its
 * re-planning at fewer rows after an allocation failure), micro-batches run as chunks of the
 * planned rows with gradient accumulation, the optimizer step, evaluation, and named access
 * to gradients.
 *
 * Owner: train. The backward pass is assembled in src/train/train_bwd.c, gradient
 * checkpointing's plan and recompute policy in src/train/ckpt.c, the trained parameters in
 * src/train/train_params.c, checkpoints in src/train/train_ckpt.c; the contract is
 * include/peftlua/train.h. Call graph among them (no cycles): train → ckpt → train_bwd →
 * train_head → train_params; train_ckpt → train_params.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/ckpt.h"
#include "peftlua/gemm16.h"
#include "peftlua/kernels.h"
#include "peftlua/qlora.h"
#include "peftlua/train.h"
#include "peftlua/options.h"
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
    c.compute = PL_COMPUTE_F32;
    c.loss_scale = 65536.0;
    c.growth_interval = 2000;
    return c;
}

/* the option table's choices, in enum pl_precision order (src/train/options.c) */
int pl_precision_from_name(const char *name)
{
    return pl_option_choice("precision", name);
}

const char *pl_precision_name(enum pl_precision p)
{
    return p == PL_PREC_BF16 ? "bf16" : p == PL_PREC_FP16 ? "fp16" : "fp32";
}

/* Mixed precision, LoRA: the frozen projections that are f32 in every layer are re-stored in
 * the 16-bit type (src/adapt/qlora.c, row by row); quantised or 16-bit ones keep their type. */
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

/* The staged chunk (ids, targets), the cross-entropy state and the activation gradients of
 * the backward for `rows` rows: one block each (uncheckpointed trainer). */
/* Its sizes: floats of the block (activation gradients + the two cross-entropy rows), and the
 * int32 rows of ids [BT] and targets [BT] + head rows and targets [2][BT]. */
static int64_t bwd_floats(const struct pl_model_config *c, int64_t BT)
{
    return pl_act_grads_floats(c, BT) + 2 * BT;
}
enum { BWD_ID_ROWS = 1, BWD_TARGET_ROWS = 3 };

/* The context's flags for a precision: every layer saved, in 16 bits for bf16/fp16. */
static int save_flags(enum pl_precision pr)
{
    return PL_LLAMA_SAVE | (pr == PL_PREC_BF16 ? PL_LLAMA_SAVE_BF16
                            : pr == PL_PREC_FP16 ? PL_LLAMA_SAVE_F16 : 0);
}

int64_t pl_trainer_plan_bytes(const struct pl_model_config *c, int rows, int T, int ckpt_every,
                              enum pl_precision pr)
{
    const int64_t BT = (int64_t)rows * T;
    if (ckpt_every > 0)   /* plan(): src/train/ckpt.c's plan only */
        return (int64_t)sizeof(struct pl_ckpt) +
               pl_ckpt_plan_bytes(c, rows, T, ckpt_every, pr != PL_PREC_FP32);
    return pl_llama_ctx_bytes(c, rows, T, save_flags(pr))
         + BT * c->vocab_size * 4                    /* the context's logits (first forward) */
         + bwd_floats(c, BT) * 4 + (BWD_ID_ROWS + BWD_TARGET_ROWS) * BT * 4;
}

static enum pl_status plan_bwd(struct pl_trainer *t, int rows)
{
    const struct pl_model_config *c = &t->model->cfg;
    int64_t BT = (int64_t)rows * t->cfg.seq_len;
    size_t n = (size_t)bwd_floats(c, BT);
    t->bwd_mem = pl_alloc(n * sizeof(float), PL_MEM_ACTIVATIONS);
    t->ids = pl_alloc(BWD_ID_ROWS * (size_t)BT * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    t->targets = pl_alloc(BWD_TARGET_ROWS * (size_t)BT * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    if (!t->bwd_mem || !t->ids || !t->targets)
        return pl_fail(PL_ERR_NOMEM, "train: out of memory for %.1f MiB of backward buffers",
                       (double)n * 4 / 1048576.0);
    t->head_rows = t->targets + BT;
    float *p = pl_act_grads_carve(&t->g, t->bwd_mem, c, BT);
    t->ce_losses = p;
    t->ce_lse = p + BT;
    return PL_OK;
}

/* Free every per-step buffer: the checkpointed plan, or the context, backward buffers and
 * LoRA's saved activations. Parameters, gradients and optimizer state stay. */
static void unplan(struct pl_trainer *t)
{
    pl_ckpt_free(t->ckpt);
    t->ckpt = NULL;
    pl_llama_ctx_free(t->ctx);
    t->ctx = NULL;
    pl_free(t->bwd_mem);
    pl_free(t->ids);
    pl_free(t->targets);
    t->bwd_mem = t->ce_losses = t->ce_lse = NULL;
    t->ids = t->targets = t->head_rows = NULL;
    memset(&t->g, 0, sizeof t->g);
    pl_lora_unplan(t->lora);
    t->plan_rows = 0;
}

/* Plan rows x seq_len. Checkpointed: src/train/ckpt.c's plan only (it plans the adapters and also
 * serves evaluation). Otherwise: LoRA's saved activations, the model's context with every
 * layer's activations saved, and the backward buffers. */
static enum pl_status plan(struct pl_trainer *t, int rows)
{
    const struct pl_model_config *c = &t->model->cfg;
    const int T = t->cfg.seq_len;
    if (c->seq_len > 0 && T > c->seq_len)
        return pl_fail(PL_ERR_ARG, "train: seq_len %d exceeds the model's context length %d", T,
                       c->seq_len);
    enum pl_status st;
    if (t->cfg.ckpt_every > 0) {
        st = pl_ckpt_new(&t->ckpt, t, rows, T, t->cfg.ckpt_every);
    } else {
        if (t->lora && (st = pl_lora_plan(t->lora, (int64_t)rows * T)) != PL_OK) return st;
        t->ctx = pl_llama_ctx_new(t->model, rows, T, save_flags(t->cfg.precision));
        st = t->ctx ? plan_bwd(t, rows) : PL_ERR_NOMEM;
    }
    if (st == PL_OK) t->plan_rows = rows;
    return st;
}

enum pl_status pl_trainer_replan(struct pl_trainer *t, int rows)
{
    if (rows < 1) return pl_fail(PL_ERR_ARG, "train: re-plan for %d rows", rows);
    unplan(t);
    enum pl_status st = plan(t, rows);
    if (st != PL_OK) unplan(t);
    return st;
}

enum pl_status pl_trainer_shrink(struct pl_trainer *t, int *new_rows)
{
    const int from = t->plan_rows;
    if (from <= 1)
        return pl_fail(PL_ERR_NOMEM, "train: already planned for %s row of %d tokens per forward; nothing smaller to re-plan",
                       from == 1 ? "one" : "no", t->cfg.seq_len);
    for (int rows = from / 2;; rows /= 2) {
        enum pl_status st = pl_trainer_replan(t, rows);
        if (st == PL_OK) {
            if (new_rows) *new_rows = rows;
            return PL_OK;
        }
        if (st != PL_ERR_NOMEM) return st;
        if (rows == 1) {
            char why[256];
            snprintf(why, sizeof why, "%s", pl_last_error());
            return pl_fail(PL_ERR_NOMEM, "train: even one row of %d tokens per forward cannot be planned (%s)",
                           t->cfg.seq_len, why);
        }
    }
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
    if (cfg->plan_rows < 0 || cfg->plan_rows > cfg->batch_size)
        return pl_fail(PL_ERR_ARG, "train: plan_rows %d must be in 1..batch_size %d (0: batch_size)",
                       cfg->plan_rows, cfg->batch_size);
    if (cfg->ckpt_every < 0)
        return pl_fail(PL_ERR_ARG, "train: checkpointing every %d layers must be >= 0 (0: off)",
                       cfg->ckpt_every);
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
        t->params = t->lora->params;
        t->n_params = t->lora->n_params;
        pl_lora_attach(t->lora, m);
        if ((st = pl_lora_init_magnitude(t->lora, m)) != PL_OK) goto fail;   /* DoRA */
    } else {
        if ((st = pl_train_setup_full(t)) != PL_OK) goto fail;
    }
    if ((st = plan(t, cfg->plan_rows > 0 ? cfg->plan_rows : cfg->batch_size)) != PL_OK) goto fail;
    if (t->lora) t->grads = t->lora->grads;   /* made by the first pl_lora_plan */
    *out = t;
    return PL_OK;
fail:
    pl_trainer_free(t);
    return st;
}

void pl_trainer_free(struct pl_trainer *t)
{
    if (!t) return;
    unplan(t);
    pl_lora_free(t->lora);
    if (t->cfg.method == PL_TRAIN_FULL) pl_free(t->grads);
    pl_free(t->full);
    pl_free(t->opt_m);
    pl_free(t->opt_v);
    if (t->cfg.compute == PL_COMPUTE_BF16) pl_gemm16_release();   /* its kept workspace */
    pl_free(t);
}

static void stage_batch(struct pl_trainer *t, const int32_t *ids, const int32_t *targets, int B,
                        int n)
{
    pl_train_stage(t->ids, t->targets, NULL, t->plan_rows, &t->model->cfg, ids, targets, B, n);
    t->cur_n = n;
}

/* The head buffers of the saved-activation plan (src/train/train_head.c); h->nr from the last
 * pl_train_head_rows over t->targets. */
static void trainer_head(struct pl_trainer *t, struct pl_train_head *h)
{
    const int64_t BT = (int64_t)t->plan_rows * t->cfg.seq_len;
    h->xfinal = t->ctx->xfinal;
    h->rstd = t->ctx->rstd_final;
    h->logits = t->ctx->logits;
    h->ce_losses = t->ce_losses;
    h->ce_lse = t->ce_lse;
    h->rows = t->head_rows;
    h->tg = t->head_rows + BT;
    h->nr = t->head_nr;
}

/* The plain trainer's source of activations for the backward: every layer's as the forward
 * saved them (16-bit copies widened one layer at a time). */
static enum pl_status saved_acts(void *ctx, int l, struct pl_llama_acts *a)
{
    return pl_llama_saved_layer(ctx, l, a);
}

/* Forward (+ backward with grad) of one chunk of B <= plan_rows rows starting at row row0 of
 * its micro-batch; dlogits scaled by mul / denom per scored target (mul carries the fp16
 * loss scale S). */
static enum pl_status run_chunk(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                                int B, int n, int64_t row0, double mul, int64_t denom, int grad,
                                double *loss, int64_t *count)
{
    if (t->lora) t->lora->dropout_row0 = row0 * n;   /* token rows before this chunk */
    if (t->ckpt) return pl_ckpt_run(t->ckpt, ids, targets, B, n, mul, denom, grad, loss, count);
    stage_batch(t, ids, targets, B, n);
    const int64_t BT = (int64_t)t->plan_rows * n;
    if (t->lora) t->lora->training = grad ? 1 : 0;
    enum pl_status st = pl_llama_forward(t->ctx, t->ids, n, 0, PL_LLAMA_NO_HEAD);
    t->ctx->n_past = 0;
    if (st != PL_OK) goto out;
    /* the output head over the scored rows only (src/train/train_head.c) */
    struct pl_train_head h;
    trainer_head(t, &h);
    t->head_nr = pl_train_head_rows(&h, t->targets, BT);
    double mean = 0;
    int64_t cnt = 0;
    if ((st = pl_train_head_fwd(t, &h, t->ctx->x_last, &mean, &cnt)) != PL_OK) goto out;
    *loss = cnt ? mean : NAN;
    *count = cnt;
    if (cnt == 0 || !grad) goto out;   /* nothing to learn from: no gradient */
    pl_train_head_dlogits(t, &h, (float)(mul / (double)denom));
    h.nr = t->head_nr;
    st = pl_train_model_backward(t, &h, t->ctx->x_last, &t->g, t->ids, t->ctx->pos, t->plan_rows,
                                 t->cfg.seq_len, n, saved_acts, t->ctx);
out:
    if (t->lora) t->lora->training = 0;
    return st;
}

/* A [B, n] micro-batch as chunks of plan_rows rows. Each chunk's dlogits are scaled by
 * mul / (scored targets of the whole batch), so the chunks' gradients sum to the unsplit
 * batch's. *mean: the batch's mean loss (NAN if nothing scored), *sum: mean · count. */
static enum pl_status run_batch(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                                int B, int n, double mul, int grad, double *mean, double *sum,
                                int64_t *count)
{
    if (t->plan_rows < 1)
        return pl_fail(PL_ERR_STATE, "train: the trainer has no activation plan (a re-plan failed); re-plan it with fewer rows");
    if (B < 1 || n < 1 || n > t->cfg.seq_len)
        return pl_fail(PL_ERR_ARG, "train: batch %d x %d does not fit the planned sequence of %d tokens",
                       B, n, t->cfg.seq_len);
    const int64_t V = t->model->cfg.vocab_size, N = (int64_t)B * n;
    int64_t total = 0;
    for (int64_t i = 0; i < N; i++) {
        if (targets[i] >= V)
            return pl_fail(PL_ERR_ARG, "train: target %d at row %lld, position %lld is outside the vocabulary [0,%lld)",
                           (int)targets[i], (long long)(i / n), (long long)(i % n), (long long)V);
        total += targets[i] >= 0;
    }
    const int P = t->plan_rows;
    enum pl_status st = PL_OK;
    double l = NAN, s = 0;
    /* compute bf16: the products of the forward and input gradient in bf16 (gemm16.h) */
    const enum pl_compute prev = pl_compute_set(t->cfg.compute);
    pl_rope_keep(1);   /* one RoPE table for the batch's layers (kernels.h) */
    int64_t cnt = 0;
    if (B <= P) {
        /* one chunk: exactly the unsplit computation */
        if (total > 0 || !grad) st = run_chunk(t, ids, targets, B, n, 0, mul, total, grad, &l, &cnt);
        if (cnt == 0) l = NAN;
        s = cnt ? l * (double)cnt : 0;
    } else {
        for (int r0 = 0; r0 < B && st == PL_OK; r0 += P) {
            const int cb = B - r0 < P ? B - r0 : P;
            const int32_t *tg = targets + (size_t)r0 * n;
            int scored = 0;
            for (int64_t i = 0; i < (int64_t)cb * n && !scored; i++) scored = tg[i] >= 0;
            if (!scored) continue;   /* no loss, no gradient: skip the chunk */
            double lc = NAN;
            int64_t cc = 0;
            st = run_chunk(t, ids + (size_t)r0 * n, tg, cb, n, r0, mul, total, grad, &lc, &cc);
            if (st == PL_OK && cc > 0) {
                s += lc * (double)cc;
                cnt += cc;
            }
        }
        l = cnt ? s / (double)cnt : NAN;
    }
    pl_rope_keep(0);
    pl_compute_set(prev);
    if (t->lora) t->lora->dropout_row0 = 0;
    if (mean) *mean = l;
    if (sum) *sum = s;
    if (count) *count = cnt;
    return st;
}

/* A micro-batch's loss into the pending step; the optimizer step when it completes grad_accum. */
static enum pl_status account_micro(struct pl_trainer *t, double l, int64_t c, double *loss,
                                    int64_t *count, int *stepped)
{
    enum pl_status st;
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

enum pl_status pl_trainer_micro(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                                int B, int n, double *loss, int64_t *count, int *stepped)
{
    *stepped = 0;
    double l = NAN;
    int64_t c = 0;
    const int world = t->world > 1 ? t->world : 1;
    if (t->lora && world > 1 && t->micro == 0)
        t->lora->dropout_step = t->dropout_at_step + (uint64_t)t->rank * (uint64_t)t->cfg.grad_accum;
    enum pl_status st = run_batch(t, ids, targets, B, n,
                                  t->loss_scale / ((double)t->cfg.grad_accum * world), 1, &l, NULL, &c);
    if (t->lora && st != PL_ERR_ARG && st != PL_ERR_STATE) t->lora->dropout_step++;
    if (st != PL_OK) return st;
    return account_micro(t, l, c, loss, count, stepped);
}

/* ---- a checkpointed plan made by the caller (ckpt.h): its micro-batch and gradient ---- */

enum pl_status pl_ckpt_grad(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                            int B, int n, double mul, double *loss, int64_t *count)
{
    struct pl_lora *a = ck->t->lora;
    if (a) a->dropout_row0 = 0;
    enum pl_status st = pl_ckpt_run(ck, ids, targets, B, n, mul, 0, 1, loss, count);
    if (a) a->dropout_step++;
    return st;
}

enum pl_status pl_ckpt_micro(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                             int B, int n, double *loss, int64_t *count, int *stepped)
{
    struct pl_trainer *t = ck->t;
    *stepped = 0;
    double l = NAN;
    int64_t c = 0;
    enum pl_status st = pl_ckpt_grad(ck, ids, targets, B, n, t->loss_scale / t->cfg.grad_accum, &l, &c);
    if (st != PL_OK) return st;
    return account_micro(t, l, c, loss, count, stepped);
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
    enum pl_status st;
    /* data parallel: every rank's gradients and loss sums first (dist.h), so that all ranks
       clip, schedule and update alike */
    if (t->reduce && (st = t->reduce(t)) != PL_OK) return st;
    if ((st = pl_train_ensure_optim(t)) != PL_OK) return st;
    pl_lora_touch(t->lora);   /* the parameters change below (DoRA's norms follow) */
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
        const struct pl_optim_hparams h = { t->cfg.beta1, t->cfg.beta2, t->cfg.eps,
                                            t->cfg.weight_decay, t->cfg.momentum, t->cfg.nesterov };
        float *const state[PL_OPTIM_MAX_STATE] = { t->opt_m, t->opt_v };
        pl_optimizer_get(t->cfg.optim)->step(t->params, t->grads, state, n, &h, lr, applied + 1);
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
    if (t->lora) {
        if (t->world > 1) {
            /* past every rank's micro-batches of this step */
            t->dropout_at_step += (uint64_t)t->world * (uint64_t)t->cfg.grad_accum;
            t->lora->dropout_step = t->dropout_at_step;
        } else {
            t->dropout_at_step = t->lora->dropout_step;
        }
    }
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
    double l = NAN;
    /* scaled as a training step is, then unscaled: the gradients of the mean loss */
    enum pl_status st = run_batch(t, ids, targets, B, n, t->loss_scale, 1, &l, NULL, NULL);
    if (t->lora && st != PL_ERR_ARG && st != PL_ERR_STATE) t->lora->dropout_step++;
    if (loss) *loss = l;
    if (st != PL_OK) return st;
    unscale(t);
    return PL_OK;
}

enum pl_status pl_trainer_eval(struct pl_trainer *t, const int32_t *ids, const int32_t *targets,
                               int B, int n, double *sum, int64_t *count)
{
    return run_batch(t, ids, targets, B, n, 1.0, 0, NULL, sum, count);
}

enum pl_status pl_trainer_recover(struct pl_trainer *t, enum pl_status st, const char *why_in,
                                  int64_t step0, int *from, int *to)
{
    char why[256];
    snprintf(why, sizeof why, "%s", why_in ? why_in : pl_last_error());
    *from = t->plan_rows;
    *to = 0;
    if (st == PL_OK) return pl_fail(PL_ERR_ARG, "train: nothing failed; nothing to recover");
    if (t->step != step0) return pl_fail(st, "%s", why);   /* its update was applied: nothing to redo */
    pl_trainer_rewind(t);
    if (st != PL_ERR_NOMEM) return pl_fail(st, "%s", why);
    if (*from <= 1)
        return pl_fail(PL_ERR_NOMEM, "train: allocation failed (%s) with one row of %d tokens per forward: nothing smaller to re-plan",
                       why, t->cfg.seq_len);
    enum pl_status st2 = pl_trainer_shrink(t, to);
    if (st2 != PL_OK) {
        char why2[256];
        snprintf(why2, sizeof why2, "%s", pl_last_error());
        return pl_fail(st2, "train: allocation failed (%s), then %s", why, why2);
    }
    return PL_OK;
}

enum pl_status pl_trainer_step_shrinking(struct pl_trainer *t, const int32_t *ids,
                                         const int32_t *targets, int rows, int n, double *loss,
                                         char *log, size_t log_size)
{
    const int mb = t->cfg.batch_size, ga = t->cfg.grad_accum;
    if (rows != mb * ga || n < 1 || n > t->cfg.seq_len)
        return pl_fail(PL_ERR_ARG, "train: a step is %d x %d rows of up to %d tokens, not %d x %d",
                       ga, mb, t->cfg.seq_len, rows, n);
    size_t used = log && log_size ? strlen(log) : 0;
    const int64_t step0 = t->step;
    for (;;) {
        enum pl_status st = PL_OK;
        int stepped = 0;
        for (int i = 0; i < ga && st == PL_OK; i++)
            st = pl_trainer_micro(t, ids + (size_t)i * mb * n, targets + (size_t)i * mb * n, mb, n,
                                  NULL, NULL, &stepped);
        if (st == PL_OK) {
            if (loss) *loss = t->last_loss;
            return PL_OK;
        }
        char why[256];
        snprintf(why, sizeof why, "%s", pl_last_error());
        int from = 0, to = 0;
        if ((st = pl_trainer_recover(t, st, why, step0, &from, &to)) != PL_OK) return st;
        if (log && used + 1 < log_size) {
            int w = snprintf(log + used, log_size - used,
                             "allocation failed (%s): micro-batch %d -> %d rows (x%d chunks), step %lld retried\n",
                             why, from, to, (mb + to - 1) / to, (long long)step0 + 1);
            if (w > 0) used += (size_t)w < log_size - used ? (size_t)w : log_size - used - 1;
        }
    }
}
