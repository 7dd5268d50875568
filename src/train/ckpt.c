/* ckpt.c — gradient checkpointing for LoRA / QLoRA and full fine-tuning: segment inputs
 * kept, each segment's activations recomputed from its input during backward.
 *
 * Owner: train (written by memory). Contract: include/peftlua/ckpt.h. The layer forward below is the block of
 * src/model/llama.c (pl_llama_forward) and the layer backward the block of src/train/train_bwd.c, with
 * per-layer buffers indexed by segment slot instead of by layer:
 *   forward   h = x + Wo·attn(rope(Wq·n1), rope(Wk·n1), Wv·n1),  n1 = RMSNorm(x)
 *             x' = h + Wd·(silu(Wg·n2) ⊙ Wu·n2),                   n2 = RMSNorm(h)
 *             (each W·v plus the LoRA term through the model's linear hook)
 *   backward  the same chain in reverse (see train_bwd.c's header for each δ).
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
    const int64_t nseg = (L + k - 1) / k, BT = (int64_t)B * T, D = c->dim, F = c->hidden_dim;
    const int64_t Hd = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t wide = mx(mx(D, F), Hd), V = c->vocab_size;
    const int h16 = act16 && k >= 3;
    const int64_t kf = h16 ? 1 : k, SH = h16 ? k : 0;
    /* rounded: xn_att, xn_ffn, q, att_out, kc, vc, att, gate, up, act; f32 per slot: resid2, rstd's */
    int64_t rounded = BT * D * 2 + BT * Hd * 2 + BT * KV * 2 + (int64_t)B * c->n_heads * T * T
                    + BT * F * 3;
    *halves = SH * rounded;
    return (nseg + 1) * BT * D + (k - 1) * BT * D + kf * rounded + k * (BT * D + BT * 2)
         + BT * D + BT + BT * V + 2 * BT + BT * wide               /* head, loss, scratch */
         + pl_act_grads_floats(c, BT)                               /* backward */
         + 5 * BT;                                 /* pos, ids, targets, head rows + targets */
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
    CARVE(xn_att, kf * BT * D);
    CARVE(rstd_att, k * BT);
    CARVE(q, kf * BT * Hd);
    CARVE(kc, kf * BT * KV);
    CARVE(vc, kf * BT * KV);
    CARVE(att, kf * B * (int64_t)c->n_heads * T * T);
    CARVE(att_out, kf * BT * Hd);
    CARVE(resid2, k * BT * D);
    CARVE(xn_ffn, kf * BT * D);
    CARVE(rstd_ffn, k * BT);
    CARVE(gate, kf * BT * F);
    CARVE(up, kf * BT * F);
    CARVE(act, kf * BT * F);
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

/* Buffers of one layer as it sits in segment slot j. */
struct slot {
    const float *xin;
    float *xout, *xn, *rs, *q, *kc, *vc, *att, *ao, *x2, *xf, *rf, *g, *u, *a;
};

static struct slot slot_of(struct pl_ckpt *ck, int64_t l)
{
    const struct pl_model_config *c = &ck->t->model->cfg;
    const int64_t BT = (int64_t)ck->B * ck->T, D = c->dim, F = c->hidden_dim;
    const int64_t Hd = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t seg = l / ck->every, j = l % ck->every, L = c->n_layers;
    const int last = (j == ck->every - 1) || (l == L - 1);
    const size_t r = ck->h ? 0 : (size_t)j;   /* rounded buffers: the one f32 working slot */
    struct slot s;
    s.xin = j == 0 ? ck->ckpt + (size_t)seg * BT * D : ck->s_in + (size_t)(j - 1) * BT * D;
    s.xout = last ? ck->ckpt + (size_t)(seg + 1) * BT * D : ck->s_in + (size_t)j * BT * D;
    s.xn = ck->xn_att + r * BT * D;
    s.rs = ck->rstd_att + (size_t)j * BT;
    s.q = ck->q + r * BT * Hd;
    s.kc = ck->kc + r * BT * KV;
    s.vc = ck->vc + r * BT * KV;
    s.att = ck->att + r * ck->B * c->n_heads * ck->T * ck->T;
    s.ao = ck->att_out + r * BT * Hd;
    s.x2 = ck->resid2 + (size_t)j * BT * D;
    s.xf = ck->xn_ffn + r * BT * D;
    s.rf = ck->rstd_ffn + (size_t)j * BT;
    s.g = ck->gate + r * BT * F;
    s.u = ck->up + r * BT * F;
    s.a = ck->act + r * BT * F;
    return s;
}

/* 16-bit slots: round layer l's activations into its segment slot (store) or widen them
 * back into the working slot (load), as src/model/llama.c does per layer. */
static void slot_copy16(struct pl_ckpt *ck, int64_t l, const struct slot *s, int store)
{
    if (!ck->h) return;
    const struct pl_llama_acts a = { s->xin, s->xout, s->xn, s->rs, s->q, s->kc, s->vc, s->att,
                                     s->ao, s->x2, s->xf, s->rf, s->g, s->u, s->a };
    pl_llama_acts_copy16(&ck->t->model->cfg, ck->B, ck->T, ck->cur_n, (enum pl_dtype)ck->act_dtype,
                         &a, &ck->h[l % ck->every], store);
}

static const float *fdata(const struct pl_tensor *t) { return (const float *)pl_tensor_data(t); }

/* y = x Wᵀ (+ b), then the adapter hook — as llama.c's projection for more than a few rows. */
static enum pl_status proj(struct pl_model *m, int l, enum pl_proj p, float *y, const float *x,
                           int64_t R)
{
    const struct pl_tensor *w = m->layers[l].w[p], *b = m->layers[l].b[p];
    if (m->linear_in_hook && !(x = m->linear_in_hook(m->linear_hook_ctx, l, p, x, R)))
        return PL_ERR_NOMEM;
    enum pl_status st = pl_linear_fwd(y, x, pl_tensor_data(w), w->dtype, b ? fdata(b) : NULL, R,
                                      w->shape[1], w->shape[0]);
    if (st != PL_OK) return st;
    return m->linear_hook ? m->linear_hook(m->linear_hook_ctx, l, p, y, x, R) : PL_OK;
}

static enum pl_status layer_fwd(struct pl_ckpt *ck, int l)
{
    struct pl_model *m = ck->t->model;
    const struct pl_model_config *c = &m->cfg;
    const int64_t B = ck->B, T = ck->T, n = ck->cur_n, R = B * n, D = c->dim, F = c->hidden_dim;
    const int64_t H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim, KV = Hkv * hd;
    const enum pl_rope_mode rm = c->rope_layout == PL_ROPE_LAYOUT_HALF ? PL_ROPE_NEOX : PL_ROPE_NORMAL;
    const struct pl_layer *ly = &m->layers[l];
    struct slot s = slot_of(ck, l);
    float *tmp = ck->scratch;
    enum pl_status st;
    pl_rmsnorm_fwd(s.xn, s.rs, s.xin, fdata(ly->attn_norm), R, D, c->norm_eps);
    if ((st = proj(m, l, PL_PROJ_Q, s.q, s.xn, R)) != PL_OK) return st;
    pl_rope_fwd(s.q, s.q, ck->pos, R, H, hd, c->rope_base, rm);
    if ((st = proj(m, l, PL_PROJ_K, tmp, s.xn, R)) != PL_OK) return st;
    pl_rope_fwd(tmp, tmp, ck->pos, R, Hkv, hd, c->rope_base, rm);
    for (int64_t b = 0; b < B; b++)
        memcpy(s.kc + (size_t)b * T * KV, tmp + (size_t)b * n * KV, (size_t)n * KV * sizeof(float));
    if ((st = proj(m, l, PL_PROJ_V, tmp, s.xn, R)) != PL_OK) return st;
    for (int64_t b = 0; b < B; b++)
        memcpy(s.vc + (size_t)b * T * KV, tmp + (size_t)b * n * KV, (size_t)n * KV * sizeof(float));
    pl_attention_fwd(s.ao, s.att, s.q, s.kc, s.vc, B, n, 0, T, H, Hkv, hd);
    if ((st = proj(m, l, PL_PROJ_O, tmp, s.ao, R)) != PL_OK) return st;
    pl_residual_fwd(s.x2, s.xin, tmp, R * D);
    pl_rmsnorm_fwd(s.xf, s.rf, s.x2, fdata(ly->ffn_norm), R, D, c->norm_eps);
    if ((st = proj(m, l, PL_PROJ_GATE, s.g, s.xf, R)) != PL_OK) return st;
    if ((st = proj(m, l, PL_PROJ_UP, s.u, s.xf, R)) != PL_OK) return st;
    pl_swiglu_fwd(s.a, s.g, s.u, R * F);
    if ((st = proj(m, l, PL_PROJ_DOWN, tmp, s.a, R)) != PL_OK) return st;
    pl_residual_fwd(s.xout, s.x2, tmp, R * D);
    slot_copy16(ck, l, &s, 1);
    return PL_OK;
}

/* dx += dy·W (LoRA: frozen base, panels dequantised in the kernel) + the adapter's backward;
 * full fine-tuning: dW += dyᵀ·x and dbias likewise, into the trainer's gradient slots. */
static enum pl_status proj_bwd(struct pl_ckpt *ck, int l, enum pl_proj p, float *dx,
                               const float *dy, const float *x, int64_t R)
{
    struct pl_trainer *t = ck->t;
    const struct pl_layer *ly = &t->model->layers[l];
    const struct pl_tensor *w = ly->w[p];
    float *dW = pl_train_grad_of(t, w);
    float *db = ly->b[p] ? pl_train_grad_of(t, ly->b[p]) : NULL;
    return pl_lora_proj_backward(t->lora, l, p, w, dW, db, dx, dy, x, R);
}

static enum pl_status layer_bwd(struct pl_ckpt *ck, int l)
{
    struct pl_model *m = ck->t->model;
    const struct pl_model_config *c = &m->cfg;
    const int64_t B = ck->B, T = ck->T, BT = B * T, n = ck->cur_n, R = B * n, D = c->dim;
    const int64_t F = c->hidden_dim, H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim;
    const int64_t Hd = H * hd, KV = Hkv * hd;
    const enum pl_rope_mode rm = c->rope_layout == PL_ROPE_LAYOUT_HALF ? PL_ROPE_NEOX : PL_ROPE_NORMAL;
    const struct pl_layer *ly = &m->layers[l];
    struct slot s = slot_of(ck, l);
    slot_copy16(ck, l, &s, 0);   /* 16-bit slots: widen this layer's activations first */
    enum pl_status st;
    /* MLP half: δ = d_resid */
    memset(ck->g.d_act, 0, (size_t)R * F * sizeof(float));
    if ((st = proj_bwd(ck, l, PL_PROJ_DOWN, ck->g.d_act, ck->g.d_resid, s.a, R)) != PL_OK) return st;
    memset(ck->g.d_gate, 0, (size_t)R * F * sizeof(float));
    memset(ck->g.d_up, 0, (size_t)R * F * sizeof(float));
    pl_swiglu_bwd(ck->g.d_gate, ck->g.d_up, ck->g.d_act, s.g, s.u, R * F);
    memset(ck->g.d_xn, 0, (size_t)R * D * sizeof(float));
    if ((st = proj_bwd(ck, l, PL_PROJ_GATE, ck->g.d_xn, ck->g.d_gate, s.xf, R)) != PL_OK) return st;
    if ((st = proj_bwd(ck, l, PL_PROJ_UP, ck->g.d_xn, ck->g.d_up, s.xf, R)) != PL_OK) return st;
    memcpy(ck->g.d_resid2, ck->g.d_resid, (size_t)R * D * sizeof(float));
    pl_rmsnorm_bwd(ck->g.d_resid2, pl_train_grad_of(ck->t, ly->ffn_norm), ck->g.d_xn, s.rf, s.x2,
                   fdata(ly->ffn_norm), R, D);
    /* attention half: δ = d_resid2 */
    memset(ck->g.d_ao, 0, (size_t)R * Hd * sizeof(float));
    if ((st = proj_bwd(ck, l, PL_PROJ_O, ck->g.d_ao, ck->g.d_resid2, s.ao, R)) != PL_OK) return st;
    memset(ck->g.d_qr, 0, (size_t)R * Hd * sizeof(float));
    memset(ck->g.d_kr, 0, (size_t)BT * KV * sizeof(float));
    memset(ck->g.d_k, 0, (size_t)BT * KV * sizeof(float));
    if ((st = pl_attention_bwd(ck->g.d_qr, ck->g.d_kr, ck->g.d_k, ck->g.d_ao, s.att, s.q, s.kc, s.vc, B, n,
                               0, T, H, Hkv, hd)) != PL_OK)
        return st;
    /* dk, dv in the cache layout [B][T][KV] → rows [B·n][KV] (dv was written to d_k) */
    for (int64_t b = 0; b < B; b++) {
        memcpy(ck->g.d_v + (size_t)b * n * KV, ck->g.d_k + (size_t)b * T * KV, (size_t)n * KV * sizeof(float));
        if (n < T && b > 0)
            memmove(ck->g.d_kr + (size_t)b * n * KV, ck->g.d_kr + (size_t)b * T * KV, (size_t)n * KV * sizeof(float));
    }
    memset(ck->g.d_q, 0, (size_t)R * Hd * sizeof(float));
    memset(ck->g.d_k, 0, (size_t)R * KV * sizeof(float));
    pl_rope_bwd(ck->g.d_q, ck->g.d_qr, ck->pos, R, H, hd, c->rope_base, rm);
    pl_rope_bwd(ck->g.d_k, ck->g.d_kr, ck->pos, R, Hkv, hd, c->rope_base, rm);
    memset(ck->g.d_xn, 0, (size_t)R * D * sizeof(float));
    if ((st = proj_bwd(ck, l, PL_PROJ_Q, ck->g.d_xn, ck->g.d_q, s.xn, R)) != PL_OK) return st;
    if ((st = proj_bwd(ck, l, PL_PROJ_K, ck->g.d_xn, ck->g.d_k, s.xn, R)) != PL_OK) return st;
    if ((st = proj_bwd(ck, l, PL_PROJ_V, ck->g.d_xn, ck->g.d_v, s.xn, R)) != PL_OK) return st;
    memcpy(ck->g.d_resid, ck->g.d_resid2, (size_t)R * D * sizeof(float));
    pl_rmsnorm_bwd(ck->g.d_resid, pl_train_grad_of(ck->t, ly->attn_norm), ck->g.d_xn, s.rs, s.xin,
                   fdata(ly->attn_norm), R, D);
    return PL_OK;
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

/* Forward of the staged batch; with grad, the checkpointed backward too, dlogits scaled by
 * mul / denom per scored target (denom <= 0: this batch's own count). */
static enum pl_status fwd_bwd(struct pl_ckpt *ck, double mul, int64_t denom, int grad,
                              double *loss, int64_t *count)
{
    struct pl_trainer *t = ck->t;
    struct pl_model *m = t->model;
    const struct pl_model_config *c = &m->cfg;
    const int64_t n = ck->cur_n, R = (int64_t)ck->B * n, D = c->dim, V = c->vocab_size;
    const int L = c->n_layers;
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
    /* output head and final norm (full fine-tuning: their gradients too, as train_bwd.c) */
    if ((st = pl_train_head_bwd(t, &h, xL, ck->g.d_wide, ck->g.d_resid, R)) != PL_OK) return st;
    for (int s = ck->n_seg - 1; s >= 0; s--) {
        if (s != ck->n_seg - 1 && (st = segment_fwd(ck, s)) != PL_OK) return st;   /* recompute */
        int l0 = s * ck->every, l1 = (s + 1) * ck->every < L ? (s + 1) * ck->every : L;
        for (int l = l1 - 1; l >= l0; l--) {
            if ((st = pl_interrupt_check()) != PL_OK) return st;
            if ((st = layer_bwd(ck, l)) != PL_OK) return st;
        }
    }
    float *dE = pl_train_grad_of(t, E);
    if (dE) pl_embedding_bwd(dE, ck->g.d_resid, ck->ids, R, V, D);
    return PL_OK;
}

/* [B, n] into the planned [ck->B, n] with padding rows ignored (as the trainer stages). */
static enum pl_status stage(struct pl_ckpt *ck, const int32_t *ids, const int32_t *targets, int B, int n)
{
    if (B < 1 || B > ck->B || n < 1 || n > ck->T)
        return pl_fail(PL_ERR_ARG, "checkpointing: batch %d x %d does not fit the planned %d x %d", B, n,
                       ck->B, ck->T);
    const struct pl_model_config *c = &ck->t->model->cfg;
    int32_t pad = c->eos_id >= 0 ? c->eos_id : 0;
    for (int b = 0; b < ck->B; b++)
        for (int i = 0; i < n; i++) {
            size_t k = (size_t)b * n + i;
            ck->ids[k] = b < B ? ids[k] : pad;
            ck->targets[k] = b < B ? targets[k] : -1;
            ck->pos[k] = i;
        }
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
