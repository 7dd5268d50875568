/* train_bwd.c — the whole-model backward pass of the Llama forward in src/model/llama.c.
 *
 * Owner: train. It walks the layers in reverse over the activations the forward saved
 * (pl_llama_ctx with PL_LLAMA_SAVE; with mixed precision they were saved in 16 bits and
 * pl_llama_saved_layer widens one layer at a time into f32 buffers) and calls the kernels' backward functions (kernels.h),
 * which accumulate. For each layer it reads only that layer's saved buffers and its input
 * residual, so a checkpointing variant can recompute them from the layer input first.
 *
 * Per block (forward in llama.c), with δ the gradient of the block output x':
 *   down:    δact  = δ·Wd (+ LoRA)            dWd += δᵀ·act
 *   SwiGLU:  δgate, δup from δact
 *   gate/up: δh    = δgate·Wg + δup·Wu (+ LoRA)
 *   norm:    δx2   = δ + RMSNorm_bwd(δh)
 *   o:       δa    = δx2·Wo (+ LoRA)
 *   attention → δq, δk, δv (rotated) → RoPE⁻¹ → δq, δk
 *   q/k/v:   δxn   = δq·Wq + δk·Wk + δv·Wv (+ LoRA)
 *   norm:    δx    = δx2 + RMSNorm_bwd(δxn)
 * then the final norm/output head before the blocks and the embedding after them.
 */
#include <string.h>

#include "peftlua/kernels.h"
#include "train_internal.h"

/* The backward's widest row: max(dim, hidden, heads·head_dim) (d_wide holds any of them). */
static int64_t act_wide(const struct pl_model_config *c)
{
    int64_t w = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    int64_t hd = (int64_t)c->n_heads * c->head_dim;
    return hd > w ? hd : w;
}

int64_t pl_act_grads_floats(const struct pl_model_config *c, int64_t BT)
{
    return BT * (3 * (int64_t)c->dim + 3 * (int64_t)c->n_heads * c->head_dim
                 + 3 * (int64_t)c->n_kv_heads * c->head_dim + act_wide(c) + 3 * (int64_t)c->hidden_dim);
}

float *pl_act_grads_carve(struct pl_act_grads *g, float *p, const struct pl_model_config *c, int64_t BT)
{
    const int64_t D = c->dim, F = c->hidden_dim, Hd = (int64_t)c->n_heads * c->head_dim;
    const int64_t KV = (int64_t)c->n_kv_heads * c->head_dim, wide = act_wide(c);
#define CARVE(f, k) do { g->f = p; p += (size_t)(k); } while (0)
    CARVE(d_resid, BT * D);
    CARVE(d_resid2, BT * D);
    CARVE(d_xn, BT * D);
    CARVE(d_q, BT * Hd);
    CARVE(d_qr, BT * Hd);
    CARVE(d_ao, BT * Hd);
    CARVE(d_k, BT * KV);
    CARVE(d_kr, BT * KV);
    CARVE(d_v, BT * KV);
    CARVE(d_wide, BT * wide);
    CARVE(d_act, BT * F);
    CARVE(d_gate, BT * F);
    CARVE(d_up, BT * F);
#undef CARVE
    return p;
}

static const float *fdata(const struct pl_tensor *t) { return (const float *)pl_tensor_data(t); }

/* dx += dy·W (+ adapter), dW += dyᵀ·x when W is trained (full), dbias likewise. */
static enum pl_status proj_bwd(struct pl_trainer *t, int l, enum pl_proj p, float *dx,
                               const float *dy, const float *x, int64_t rows)
{
    const struct pl_layer *ly = &t->model->layers[l];
    const struct pl_tensor *w = ly->w[p];
    float *dW = pl_train_grad_of(t, w);
    float *db = ly->b[p] ? pl_train_grad_of(t, ly->b[p]) : NULL;
    return pl_lora_proj_backward(t->lora, l, p, w, dW, db, dx, dy, x, rows);
}

enum pl_status pl_train_backward(struct pl_trainer *t)
{
    struct pl_model *m = t->model;
    struct pl_llama_ctx *c = t->ctx;
    const struct pl_model_config *cf = &m->cfg;
    /* planned: B x T (per-layer buffer strides); this batch: rows of n tokens, R = B·n rows */
    const int64_t B = c->B, T = c->T, BT = B * T, n = t->cur_n, R = B * n, L = cf->n_layers;
    const int64_t D = cf->dim, F = cf->hidden_dim, H = cf->n_heads, Hkv = cf->n_kv_heads;
    const int64_t hd = cf->head_dim, Hd = H * hd, KV = Hkv * hd, V = cf->vocab_size;
    const enum pl_rope_mode rmode =
        cf->rope_layout == PL_ROPE_LAYOUT_HALF ? PL_ROPE_NEOX : PL_ROPE_NORMAL;
    enum pl_status st;

    /* output head over the scored rows (src/train/train_head.c): logits = RMSNorm(x_L) · Woutᵀ */
    const float *xL = c->resid + (size_t)L * BT * D;
    struct pl_train_head h;
    pl_trainer_head(t, &h);
    if ((st = pl_train_head_bwd(t, &h, xL, t->g.d_wide, t->g.d_resid, R)) != PL_OK) return st;

    for (int64_t l = L - 1; l >= 0; l--) {
        if ((st = pl_interrupt_check()) != PL_OK) return st;
        const struct pl_layer *ly = &m->layers[l];
        /* f32 views of the layer's saved activations (widened first if they are 16-bit) */
        struct pl_llama_acts A;
        if ((st = pl_llama_saved_layer(c, (int)l, &A)) != PL_OK) return st;
        const float *xin = A.xin, *xn = A.xn, *rs = A.rs, *q = A.q, *kc = A.kc, *vc = A.vc;
        const float *att = A.att, *ao = A.ao, *x2 = A.x2, *xf = A.xf, *rf = A.rf, *g = A.g;
        const float *u = A.u, *a = A.a;

        /* MLP half: δ = d_resid */
        memset(t->g.d_act, 0, (size_t)R * F * sizeof(float));
        if ((st = proj_bwd(t, (int)l, PL_PROJ_DOWN, t->g.d_act, t->g.d_resid, a, R)) != PL_OK) return st;
        memset(t->g.d_gate, 0, (size_t)R * F * sizeof(float));
        memset(t->g.d_up, 0, (size_t)R * F * sizeof(float));
        pl_swiglu_bwd(t->g.d_gate, t->g.d_up, t->g.d_act, g, u, R * F);
        memset(t->g.d_xn, 0, (size_t)R * D * sizeof(float));
        if ((st = proj_bwd(t, (int)l, PL_PROJ_GATE, t->g.d_xn, t->g.d_gate, xf, R)) != PL_OK) return st;
        if ((st = proj_bwd(t, (int)l, PL_PROJ_UP, t->g.d_xn, t->g.d_up, xf, R)) != PL_OK) return st;
        memcpy(t->g.d_resid2, t->g.d_resid, (size_t)R * D * sizeof(float));
        pl_rmsnorm_bwd(t->g.d_resid2, pl_train_grad_of(t, ly->ffn_norm), t->g.d_xn, rf, x2,
                       fdata(ly->ffn_norm), R, D);

        /* attention half: δ = d_resid2 */
        memset(t->g.d_ao, 0, (size_t)R * Hd * sizeof(float));
        if ((st = proj_bwd(t, (int)l, PL_PROJ_O, t->g.d_ao, t->g.d_resid2, ao, R)) != PL_OK) return st;
        memset(t->g.d_qr, 0, (size_t)R * Hd * sizeof(float));
        memset(t->g.d_kr, 0, (size_t)BT * KV * sizeof(float));
        memset(t->g.d_k, 0, (size_t)BT * KV * sizeof(float));
        /* dk, dv come back in the cache layout [B][T][KV]; d_k receives dv first */
        if ((st = pl_attention_bwd(t->g.d_qr, t->g.d_kr, t->g.d_k, t->g.d_ao, att, q, kc, vc, B, n, 0, T,
                                   H, Hkv, hd)) != PL_OK)
            return st;
        /* to rows [B·n][KV]: dv into d_v, dk (rotated) compacted in place in d_kr */
        for (int64_t b = 0; b < B; b++) {
            memcpy(t->g.d_v + (size_t)b * n * KV, t->g.d_k + (size_t)b * T * KV, (size_t)n * KV * sizeof(float));
            if (n < T && b > 0)
                memmove(t->g.d_kr + (size_t)b * n * KV, t->g.d_kr + (size_t)b * T * KV, (size_t)n * KV * sizeof(float));
        }
        memset(t->g.d_q, 0, (size_t)R * Hd * sizeof(float));
        memset(t->g.d_k, 0, (size_t)R * KV * sizeof(float));
        pl_rope_bwd(t->g.d_q, t->g.d_qr, c->pos, R, H, hd, cf->rope_base, rmode);
        pl_rope_bwd(t->g.d_k, t->g.d_kr, c->pos, R, Hkv, hd, cf->rope_base, rmode);
        memset(t->g.d_xn, 0, (size_t)R * D * sizeof(float));
        if ((st = proj_bwd(t, (int)l, PL_PROJ_Q, t->g.d_xn, t->g.d_q, xn, R)) != PL_OK) return st;
        if ((st = proj_bwd(t, (int)l, PL_PROJ_K, t->g.d_xn, t->g.d_k, xn, R)) != PL_OK) return st;
        if ((st = proj_bwd(t, (int)l, PL_PROJ_V, t->g.d_xn, t->g.d_v, xn, R)) != PL_OK) return st;
        memcpy(t->g.d_resid, t->g.d_resid2, (size_t)R * D * sizeof(float));
        pl_rmsnorm_bwd(t->g.d_resid, pl_train_grad_of(t, ly->attn_norm), t->g.d_xn, rs, xin,
                       fdata(ly->attn_norm), R, D);
    }
    float *dE = pl_train_grad_of(t, m->tok_embd);
    if (dE) pl_embedding_bwd(dE, t->g.d_resid, t->ids, R, V, D);
    return PL_OK;
}
