/* ckpt.c — gradient checkpointing for LoRA / QLoRA and full fine-tuning: segment inputs
 * kept, each segment's activations recomputed from its input during backward.
 *
 * Owner: train. Contract: include/peftlua/ckpt.h. Checkpointing is a policy over the model's
 * one block (model.h): which layer inputs are kept (every k-th: the segment inputs) and when a
 * segment's forward runs again (pl_llama_block_forward, just before its backward). The block's
 * buffers are planned per segment slot (pl_llama_acts_carve) instead of per layer, and the
 * backward is the trainer's (src/train/train_bwd.c pl_train_model_backward with this file's
 * recomputing source of activations).
 * LoRA: only the adapters are trained; no weight gradient is formed for the frozen base, whose
 * input-gradient products dequantise panels inside pl_linear_bwd (NF4, Q8_0, ...).
 * Full fine-tuning: every weight is an f32 master copy and pl_train_grad_of() gives its
 * gradient slot; each weight, norm, head and embedding gradient is accumulated by the same
 * kernel call, in the same order, as in train_bwd.c, so the gradients are those of the
 * uncheckpointed backward.
 * Mixed precision (the trainer's bf16/fp16, every >= 3): each layer is computed in an f32
 * working slot and its rounded activations kept in 16-bit segment slots (src/model/llama.c's
 * pl_llama_acts_copy16), widened back before its backward; the recomputed forward starts from
 * the same f32 checkpoints, so the gradients equal the uncheckpointed 16-bit trainer's.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/ckpt.h"
#include "peftlua/kernels.h"
#include "peftlua/lora.h"
#include "train_internal.h"

static int64_t mx(int64_t a, int64_t b) { return a > b ? a : b; }

static int clamp_every(int every, int L) { return every < 1 || every > L ? L : every; }

/* The plan, as f32 elements (*halves: 16-bit elements) with the rounded buffers in kf f32
 * slots and SH 16-bit ones. */
static int64_t plan_sizes(const struct pl_model_config *c, int B, int T, int every, int act16,
                          int64_t *halves)
{
    const int64_t L = c->n_layers, k = clamp_every(every, c->n_layers);
    const int64_t nseg = (L + k - 1) / k;
    struct pl_llama_plan P;
    pl_llama_plan_of(c, B, T, &P);
    const int h16 = act16 && k >= 3;
    const int64_t kf = h16 ? 1 : k, SH = h16 ? k : 0;
    *halves = SH * P.rounded;
    return (nseg + 1) * P.x + (k - 1) * P.x                       /* kept inputs, segment slots */
         + pl_llama_acts_floats(&P, kf, k, kf)                      /* the block's buffers */
         + P.x + P.rows + P.rows * c->vocab_size + 2 * P.rows + P.wide   /* head, loss, scratch */
         + P.grads                                                  /* backward */
         + 5 * P.rows;                             /* pos, ids, targets, head rows + targets */
}

int64_t pl_ckpt_plan_floats(const struct pl_model_config *c, int B, int T, int every)
{
    int64_t h;
    return plan_sizes(c, B, T, every, 0, &h);
}

int64_t pl_ckpt_plan_bytes(const struct pl_model_config *c, int B, int T, int every, int act16)
{
    int64_t h, f = plan_sizes(c, B, T, every, act16, &h);
    int64_t k = clamp_every(every, c->n_layers);
    return f * 4 + h * 2 + (act16 && k >= 3 ? k * (int64_t)sizeof(struct pl_llama_acts16) : 0);
}

enum pl_status pl_ckpt_new(struct pl_ckpt **out, struct pl_trainer *t, int B, int T, int every)
{
    *out = NULL;
    if (!t || (!t->lora && t->cfg.method != PL_TRAIN_FULL))
        return pl_fail(PL_ERR_ARG, "checkpointing: needs a LoRA or full fine-tuning trainer");
    const struct pl_model_config *c = &t->model->cfg;
    if (B < 1 || T < 1)
        return pl_fail(PL_ERR_ARG, "checkpointing: batch %d x sequence %d must be positive", B, T);
    if (c->seq_len > 0 && T > c->seq_len)
        return pl_fail(PL_ERR_ARG, "checkpointing: sequence %d exceeds the model's context length %d",
                       T, c->seq_len);
    enum pl_status st = t->lora ? pl_lora_plan(t->lora, (int64_t)B * T) : PL_OK;
    if (st != PL_OK) return st;
    struct pl_ckpt *ck = pl_calloc(1, sizeof *ck, PL_MEM_ACTIVATIONS);
    if (!ck) return pl_fail(PL_ERR_NOMEM, "checkpointing: out of memory");
    const int64_t L = c->n_layers, k = clamp_every(every, c->n_layers);
    ck->t = t; ck->B = B; ck->T = T; ck->every = (int32_t)k;
    ck->n_seg = (int32_t)((L + k - 1) / k);
    const int64_t BT = (int64_t)B * T, D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    const int64_t Hd = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t wide = mx(mx(D, F), Hd);
    const int h16 = t->cfg.precision != PL_PREC_FP32 && k >= 3;
    const int64_t kf = h16 ? 1 : k;
    ck->act_dtype = !h16 ? PL_F32 : t->cfg.precision == PL_PREC_BF16 ? PL_BF16 : PL_F16;
    int64_t halves;
    ck->mem_floats = (size_t)plan_sizes(c, B, T, every, h16, &halves);
    ck->mem_halves = (size_t)halves;
    ck->mem = pl_alloc(ck->mem_floats * sizeof(float) + ck->mem_halves * sizeof(uint16_t),
                       PL_MEM_ACTIVATIONS);
    if (h16) ck->h = pl_calloc((size_t)k, sizeof *ck->h, PL_MEM_ACTIVATIONS);
    if (!ck->mem || (h16 && !ck->h)) {
        pl_ckpt_free(ck);
        return pl_fail(PL_ERR_NOMEM, "checkpointing: out of memory planning %.1f MiB of activations for %d x %d",
                       (double)pl_ckpt_plan_bytes(c, B, T, every, h16) / 1048576.0, B, T);
    }
    float *p = ck->mem;
#define CARVE(f, n) do { ck->f = p; p += (size_t)(n); } while (0)
    CARVE(ckpt, (ck->n_seg + 1) * BT * D);
    CARVE(s_in, (k - 1) * BT * D);
    {
        struct pl_llama_plan P;
        pl_llama_plan_of(c, B, T, &P);
        p = pl_llama_acts_carve(&ck->buf, p, &P, kf, k, kf);
    }
    CARVE(xfinal, BT * D);
    CARVE(rstd_final, BT);
    CARVE(logits, BT * V);
    CARVE(ce_losses, BT);
    CARVE(ce_lse, BT);
    CARVE(scratch, BT * wide);
#undef CARVE
    p = pl_act_grads_carve(&ck->g, p, c, BT);
    ck->pos = (int32_t *)p; p += BT;
    ck->ids = (int32_t *)p; p += BT;
    ck->targets = (int32_t *)p; p += BT;
    ck->head_rows = (int32_t *)p; p += 2 * BT;
    if (h16) {   /* the 16-bit slots, after every f32 buffer */
        uint16_t *h = (uint16_t *)(ck->mem + ck->mem_floats);
        const int64_t A = (int64_t)B * c->n_heads * T * T;
        for (int64_t j = 0; j < k; j++) {
            struct pl_llama_acts16 *s = &ck->h[j];
#define CARVE16(f, n) do { s->f = h; h += (size_t)(n); } while (0)
            CARVE16(xn, BT * D); CARVE16(q, BT * Hd); CARVE16(kc, BT * KV); CARVE16(vc, BT * KV);
            CARVE16(att, A); CARVE16(ao, BT * Hd); CARVE16(xf, BT * D); CARVE16(g, BT * F);
            CARVE16(u, BT * F); CARVE16(a, BT * F);
#undef CARVE16
        }
    }
    *out = ck;
    return PL_OK;
}

void pl_ckpt_free(struct pl_ckpt *ck)
{
    if (!ck) return;
    pl_free(ck->h);
    pl_free(ck->mem);
    pl_free(ck);
}

/* Buffers of layer l as it sits in its segment slot j (16-bit slots: the rounded buffers in
 * the one f32 working slot). */
static void slot_of(struct pl_ckpt *ck, int64_t l, struct pl_llama_acts *a)
{
    const struct pl_model_config *c = &ck->t->model->cfg;
    const int64_t BT = (int64_t)ck->B * ck->T, D = c->dim;
    const int64_t seg = l / ck->every, j = l % ck->every, L = c->n_layers;
    const int last = (j == ck->every - 1) || (l == L - 1);
    const int64_t r = ck->h ? 0 : j;
    struct pl_llama_plan P;
    pl_llama_plan_of(c, ck->B, ck->T, &P);
    pl_llama_acts_slot(a, &ck->buf, &P, r, j, r);
    a->xin = j == 0 ? ck->ckpt + (size_t)seg * BT * D : ck->s_in + (size_t)(j - 1) * BT * D;
    a->xout = last ? ck->ckpt + (size_t)(seg + 1) * BT * D : ck->s_in + (size_t)j * BT * D;
}

/* 16-bit slots: round layer l's activations into its segment slot (store) or widen them
 * back into the working slot (load), as src/model/llama.c does per layer. */
static void slot_copy16(struct pl_ckpt *ck, int64_t l, const struct pl_llama_acts *a, int store)
{
    if (!ck->h) return;
    pl_llama_acts_copy16(&ck->t->model->cfg, ck->B, ck->T, ck->cur_n, (enum pl_dtype)ck->act_dtype,
                         a, &ck->h[l % ck->every], store);
}

static enum pl_status layer_fwd(struct pl_ckpt *ck, int l)
{
    struct pl_llama_acts a;
    slot_of(ck, l, &a);
    enum pl_status st = pl_llama_block_forward(ck->t->model, l, &a, ck->scratch, ck->pos, ck->B,
                                               ck->T, ck->cur_n, 0);
    if (st == PL_OK) slot_copy16(ck, l, &a, 1);
    return st;
}

static enum pl_status segment_fwd(struct pl_ckpt *ck, int seg)
{
    const int L = ck->t->model->cfg.n_layers;
    enum pl_status st;
    for (int l = seg * ck->every; l < L && l < (seg + 1) * ck->every; l++) {
        if ((st = pl_interrupt_check()) != PL_OK) return st;
        if ((st = layer_fwd(ck, l)) != PL_OK) return st;
    }
    return PL_OK;
}

/* The checkpointing policy's source of activations for the backward (layers L-1..0): on
 * reaching the last layer of a segment other than the last one (whose forward is still in
 * place), recompute the segment from its kept input; then layer l's slot, widened from its
 * 16-bit copy first when there is one. */
static enum pl_status recomputed_acts(void *ctx, int l, struct pl_llama_acts *a)
{
    struct pl_ckpt *ck = ctx;
    const int L = ck->t->model->cfg.n_layers, s = l / ck->every;
    const int last_of_seg = l == L - 1 || l % ck->every == ck->every - 1;
    enum pl_status st;
    if (last_of_seg && s != ck->n_seg - 1 && (st = segment_fwd(ck, s)) != PL_OK) return st;
    slot_of(ck, l, a);
    slot_copy16(ck, l, a, 0);
    return PL_OK;
}

/* Forward of the staged batch; with grad, the checkpointed backward too, dlogits scaled by
 * mul / denom per scored target (denom <= 0: this batch's own count). */
static enum pl_status fwd_bwd(struct pl_ckpt *ck, double mul, int64_t denom, int grad,
                              double *loss, int64_t *count)
{
    struct pl_trainer *t = ck->t;
    struct pl_model *m = t->model;
    const struct pl_model_config *c = &m->cfg;
    const int64_t n = ck->cur_n, R = (int64_t)ck->B * n, D = c->dim, V = c->vocab_size;
    enum pl_status st;
    const struct pl_tensor *E = m->tok_embd;
    if ((st = pl_embedding_fwd(ck->ckpt, ck->ids, pl_tensor_data(E), E->dtype, R, V, D)) != PL_OK)
        return st;
    for (int s = 0; s < ck->n_seg; s++)
        if ((st = segment_fwd(ck, s)) != PL_OK) return st;
    const float *xL = ck->ckpt + (size_t)ck->n_seg * ck->B * ck->T * D;
    /* the output head over the scored rows only (src/train/train_head.c) */
    struct pl_train_head h = { ck->xfinal, ck->rstd_final, ck->logits, ck->ce_losses, ck->ce_lse,
                               ck->head_rows, ck->head_rows + (size_t)ck->B * ck->T, 0 };
    pl_train_head_rows(&h, ck->targets, R);
    double mean = 0;
    int64_t cnt = 0;
    if ((st = pl_train_head_fwd(t, &h, xL, &mean, &cnt)) != PL_OK) return st;
    *loss = cnt ? mean : NAN;
    *count = cnt;
    if (cnt == 0 || !grad) return PL_OK;
    pl_train_head_dlogits(t, &h, (float)(mul / (double)(denom > 0 ? denom : cnt)));
    return pl_train_model_backward(t, &h, xL, &ck->g, ck->ids, ck->pos, ck->B, ck->T, (int)n,
                                   recomputed_acts, ck);
}

/* [B, n] into the planned [ck->B, n] with padding rows ignored (as the trainer stages). */
static enum pl_status stage(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets, int B, int n)
{
    if (B < 1 || B > ck->B || n < 1 || n > ck->T)
        return pl_fail(PL_ERR_ARG, "checkpointing: batch %d x %d does not fit the planned %d x %d", B, n,
                       ck->B, ck->T);
    pl_train_stage(ck->ids, ck->targets, ck->pos, ck->B, &ck->t->model->cfg, ids, targets, B, n);
    ck->cur_n = n;
    return PL_OK;
}

enum pl_status pl_ckpt_run(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets,
                           int B, int n, double mul, int64_t denom, int grad, double *loss,
                           int64_t *count)
{
    enum pl_status st = stage(ck, ids, targets, B, n);
    if (st != PL_OK) return st;
    struct pl_lora *a = ck->t->lora;
    if (a) a->training = grad ? 1 : 0;
    double l = NAN;
    int64_t c = 0;
    st = fwd_bwd(ck, mul, denom, grad, &l, &c);
    if (a) a->training = 0;
    if (loss) *loss = l;
    if (count) *count = c;
    return st;
}
