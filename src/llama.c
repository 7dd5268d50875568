/* llama.c — the batched Llama forward over planned activation buffers, loss and scoring.
 *
 * Owner: model. The per-op kernels (embedding, RMSNorm, linear over any-dtype weights, RoPE,
 * attention, SwiGLU, cross-entropy) come from include/peftlua/kernels.h; this file plans the
 * buffers, wires the ops layer by layer (with the KV cache) and calls the adapter hook.
 *
 * Per block l, over rows r = (b, t):
 *   xn   = RMSNorm(x) * attn_norm
 *   q,k,v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv); RoPE(q, k) at position pos + t
 *   a    = softmax(q k^T / sqrt(head_dim) + causal mask) v        (grouped-query: head h uses
 *                                                                   kv head h / (H / Hkv))
 *   x2   = x + a Wo^T
 *   h    = RMSNorm(x2) * ffn_norm
 *   x'   = x2 + (silu(h Wg^T) * (h Wu^T)) Wd^T
 * logits = RMSNorm(x_L) * out_norm  Wout^T.
 */
#include <math.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/kernels.h"
#include "peftlua/model.h"
#include "peftlua/status.h"

static size_t pl_sz(int64_t a) { return (size_t)a; }

struct pl_llama_ctx *pl_llama_ctx_new(struct pl_model *m, int B, int T, int flags)
{
    const struct pl_model_config *cf = &m->cfg;
    if (B <= 0 || T <= 0) {
        pl_fail(PL_ERR_ARG, "llama: batch %d x sequence %d must be positive", B, T);
        return NULL;
    }
    if (T > cf->seq_len && cf->seq_len > 0) {
        pl_fail(PL_ERR_ARG, "llama: sequence %d exceeds the model's context length %d", T,
                cf->seq_len);
        return NULL;
    }
    struct pl_llama_ctx *c = pl_calloc(1, sizeof *c, PL_MEM_ACTIVATIONS);
    if (!c) { pl_fail(PL_ERR_NOMEM, "llama: out of memory for a context"); return NULL; }
    c->m = m; c->B = B; c->T = T; c->flags = flags;
    int L = cf->n_layers;
    int S = (flags & PL_LLAMA_SAVE) ? L : 1;
    c->n_saved = S;
    int64_t BT = (int64_t)B * T, D = cf->dim, Hd = (int64_t)cf->n_heads * cf->head_dim;
    int64_t KV = (int64_t)cf->n_kv_heads * cf->head_dim, F = cf->hidden_dim;
    int64_t wide = D > F ? D : F;
    if (Hd > wide) wide = Hd;
    int64_t resid_copies = (flags & PL_LLAMA_SAVE) ? L + 1 : 2;
    size_t need = 0;
#define PLAN(field, n) do { need += pl_sz(n); } while (0)
    PLAN(resid, resid_copies * BT * D);
    PLAN(xn_att, S * BT * D);
    PLAN(rstd_att, S * BT);
    PLAN(q, S * BT * Hd);
    PLAN(kc, (int64_t)L * BT * KV);
    PLAN(vc, (int64_t)L * BT * KV);
    PLAN(att, S * (int64_t)B * cf->n_heads * T * T);
    PLAN(att_out, S * BT * Hd);
    PLAN(resid2, S * BT * D);
    PLAN(xn_ffn, S * BT * D);
    PLAN(rstd_ffn, S * BT);
    PLAN(gate, S * BT * F);
    PLAN(up, S * BT * F);
    PLAN(act, S * BT * F);
    PLAN(xfinal, BT * D);
    PLAN(rstd_final, BT);
    PLAN(scratch, BT * wide);
#undef PLAN
    c->mem_floats = need;
    c->mem = pl_alloc(need * sizeof(float), PL_MEM_ACTIVATIONS);
    if (!c->mem) {
        pl_free(c);
        pl_fail(PL_ERR_NOMEM, "llama: out of memory planning %.1f MiB of activations for %d x %d",
                (double)need * 4 / 1048576.0, B, T);
        return NULL;
    }
    float *p = c->mem;
#define CARVE(field, n) do { c->field = p; p += pl_sz(n); } while (0)
    CARVE(resid, resid_copies * BT * D);
    CARVE(xn_att, S * BT * D);
    CARVE(rstd_att, S * BT);
    CARVE(q, S * BT * Hd);
    CARVE(kc, (int64_t)L * BT * KV);
    CARVE(vc, (int64_t)L * BT * KV);
    CARVE(att, S * (int64_t)B * cf->n_heads * T * T);
    CARVE(att_out, S * BT * Hd);
    CARVE(resid2, S * BT * D);
    CARVE(xn_ffn, S * BT * D);
    CARVE(rstd_ffn, S * BT);
    CARVE(gate, S * BT * F);
    CARVE(up, S * BT * F);
    CARVE(act, S * BT * F);
    CARVE(xfinal, BT * D);
    CARVE(rstd_final, BT);
    CARVE(scratch, BT * wide);
#undef CARVE
    c->pos = pl_alloc((size_t)BT * sizeof(int32_t), PL_MEM_ACTIVATIONS);
    if (!c->pos) {
        pl_llama_ctx_free(c);
        pl_fail(PL_ERR_NOMEM, "llama: out of memory for a context");
        return NULL;
    }
    return c;
}

void pl_llama_ctx_free(struct pl_llama_ctx *c)
{
    if (!c) return;
    pl_free(c->logits);
    pl_free(c->pos);
    pl_free(c->mem);
    pl_free(c);
}

/* y[n, out] = x[n, in] W^T (+ b), then the adapter hook. */
static enum pl_status pl_llama_linear(struct pl_llama_ctx *c, int layer, enum pl_proj p,
                                      float *y, const float *x, int64_t n)
{
    struct pl_model *m = c->m;
    const struct pl_tensor *w = m->layers[layer].w[p];
    const struct pl_tensor *b = m->layers[layer].b[p];
    enum pl_status st = pl_linear_fwd(y, x, pl_tensor_data(w), w->dtype,
                                      b ? (const float *)pl_tensor_data(b) : NULL, n,
                                      w->shape[1], w->shape[0]);
    if (st != PL_OK) return st;
    if (m->linear_hook) return m->linear_hook(m->linear_hook_ctx, layer, p, y, x, n);
    return PL_OK;
}

enum pl_status pl_llama_forward(struct pl_llama_ctx *c, const int32_t *ids, int n, int pos,
                                int logits_last_only)
{
    struct pl_model *m = c->m;
    const struct pl_model_config *cf = &m->cfg;
    const int B = c->B, T = c->T, L = cf->n_layers, H = cf->n_heads, Hkv = cf->n_kv_heads;
    const int hd = cf->head_dim, D = cf->dim, F = cf->hidden_dim, V = cf->vocab_size;
    const int64_t Hd = (int64_t)H * hd, KV = (int64_t)Hkv * hd, BT = (int64_t)B * T;
    const int64_t rows = (int64_t)B * n;
    const int save = (c->flags & PL_LLAMA_SAVE) != 0;
    const enum pl_rope_mode rmode =
        cf->rope_layout == PL_ROPE_LAYOUT_HALF ? PL_ROPE_NEOX : PL_ROPE_NORMAL;
    enum pl_status st;

    if (n <= 0 || pos < 0 || pos + n > T)
        return pl_fail(PL_ERR_ARG, "llama: positions %d..%d do not fit the context of %d", pos,
                       pos + n - 1, T);
    if (pos > c->n_past)
        return pl_fail(PL_ERR_ARG, "llama: position %d skips past the %d cached positions", pos,
                       c->n_past);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < n; t++) c->pos[(int64_t)b * n + t] = pos + t;

    const struct pl_tensor *E = m->tok_embd;
    float *x = c->resid;
    if ((st = pl_embedding_fwd(x, ids, pl_tensor_data(E), E->dtype, rows, V, D)) != PL_OK)
        return st;

    for (int l = 0; l < L; l++) {
        if ((st = pl_interrupt_check()) != PL_OK) return st;
        const struct pl_layer *ly = &m->layers[l];
        int s = save ? l : 0;
        float *xin = c->resid + (size_t)(save ? l : (l & 1)) * BT * D;
        float *xout = c->resid + (size_t)(save ? l + 1 : ((l + 1) & 1)) * BT * D;
        float *xn = c->xn_att + (size_t)s * BT * D;
        float *rs = c->rstd_att + (size_t)s * BT;
        float *q = c->q + (size_t)s * BT * Hd;
        float *kc = c->kc + (size_t)l * BT * KV;
        float *vc = c->vc + (size_t)l * BT * KV;
        float *att = c->att + (size_t)s * B * H * T * T;
        float *ao = c->att_out + (size_t)s * BT * Hd;
        float *x2 = c->resid2 + (size_t)s * BT * D;
        float *xf = c->xn_ffn + (size_t)s * BT * D;
        float *rf = c->rstd_ffn + (size_t)s * BT;
        float *g = c->gate + (size_t)s * BT * F;
        float *u = c->up + (size_t)s * BT * F;
        float *a = c->act + (size_t)s * BT * F;
        float *tmp = c->scratch;

        pl_rmsnorm_fwd(xn, rs, xin, (const float *)pl_tensor_data(ly->attn_norm), rows, D,
                       cf->norm_eps);
        if ((st = pl_llama_linear(c, l, PL_PROJ_Q, q, xn, rows)) != PL_OK) return st;
        pl_rope_fwd(q, q, c->pos, rows, H, hd, cf->rope_base, rmode);
        /* K (rotated) and V of the new rows go into the cache at [b][pos + t]. */
        if ((st = pl_llama_linear(c, l, PL_PROJ_K, tmp, xn, rows)) != PL_OK) return st;
        pl_rope_fwd(tmp, tmp, c->pos, rows, Hkv, hd, cf->rope_base, rmode);
        for (int b = 0; b < B; b++)
            memcpy(kc + ((size_t)b * T + pos) * KV, tmp + (size_t)b * n * KV,
                   (size_t)n * KV * sizeof(float));
        if ((st = pl_llama_linear(c, l, PL_PROJ_V, tmp, xn, rows)) != PL_OK) return st;
        for (int b = 0; b < B; b++)
            memcpy(vc + ((size_t)b * T + pos) * KV, tmp + (size_t)b * n * KV,
                   (size_t)n * KV * sizeof(float));
        pl_attention_fwd(ao, att, q, kc, vc, B, n, pos, T, H, Hkv, hd);
        if ((st = pl_llama_linear(c, l, PL_PROJ_O, tmp, ao, rows)) != PL_OK) return st;
        pl_residual_fwd(x2, xin, tmp, rows * D);

        pl_rmsnorm_fwd(xf, rf, x2, (const float *)pl_tensor_data(ly->ffn_norm), rows, D,
                       cf->norm_eps);
        if ((st = pl_llama_linear(c, l, PL_PROJ_GATE, g, xf, rows)) != PL_OK) return st;
        if ((st = pl_llama_linear(c, l, PL_PROJ_UP, u, xf, rows)) != PL_OK) return st;
        pl_swiglu_fwd(a, g, u, rows * F);
        if ((st = pl_llama_linear(c, l, PL_PROJ_DOWN, tmp, a, rows)) != PL_OK) return st;
        pl_residual_fwd(xout, x2, tmp, rows * D);
    }
    if ((st = pl_interrupt_check()) != PL_OK) return st;
    c->n_past = pos + n;

    const float *xL = c->resid + (size_t)(save ? L : (L & 1)) * BT * D;
    int64_t out_rows = rows;
    const float *xin = xL;
    if (logits_last_only) {
        /* Gather the last row of each sequence. */
        for (int b = 0; b < B; b++)
            memcpy(c->scratch + (size_t)b * D, xL + ((size_t)b * n + n - 1) * D,
                   (size_t)D * sizeof(float));
        xin = c->scratch;
        out_rows = B;
    }
    pl_rmsnorm_fwd(c->xfinal, c->rstd_final, xin, (const float *)pl_tensor_data(m->out_norm),
                   out_rows, D, cf->norm_eps);
    size_t need = (size_t)out_rows * V * sizeof(float);
    if (!c->logits || pl_alloc_size(c->logits) < need) {
        pl_free(c->logits);
        c->logits = pl_alloc(need, PL_MEM_ACTIVATIONS);
        if (!c->logits)
            return pl_fail(PL_ERR_NOMEM, "llama: out of memory for %lld x %d logits",
                           (long long)out_rows, V);
    }
    c->n_logits = out_rows;
    const struct pl_tensor *W = m->output;
    return pl_linear_fwd(c->logits, c->xfinal, pl_tensor_data(W), W->dtype, NULL, out_rows, D, V);
}

double pl_llama_loss(const struct pl_llama_ctx *c, const int32_t *targets, int n, int64_t *count)
{
    const int V = c->m->cfg.vocab_size;
    int64_t N = (int64_t)c->B * n, cnt = 0;
    double mean = NAN;
    if (count) *count = 0;
    if (N > c->n_logits) {
        pl_fail(PL_ERR_ARG, "loss: %lld targets but the last forward made %lld logit rows",
                (long long)N, (long long)c->n_logits);
        return NAN;
    }
    float *w = pl_alloc((size_t)N * 2 * sizeof(float), PL_MEM_WORKSPACE);
    if (!w) { pl_fail(PL_ERR_NOMEM, "loss: out of memory"); return NAN; }
    enum pl_status st = pl_crossentropy_fwd(w, w + N, &mean, &cnt, c->logits, targets, N, V);
    pl_free(w);
    if (st != PL_OK) return NAN;
    if (count) *count = cnt;
    return cnt ? mean : NAN;
}

enum pl_status pl_llama_score_stream(struct pl_model *m, const int32_t *ids, int64_t n,
                                     int max_len, int stride, double *nll_sum, int64_t *count)
{
    *nll_sum = 0;
    *count = 0;
    if (max_len < 2) return pl_fail(PL_ERR_ARG, "score: max_seq_len %d must be at least 2", max_len);
    if (stride <= 0 || stride > max_len)
        return pl_fail(PL_ERR_ARG, "score: stride %d must be in 1..max_seq_len (%d)", stride, max_len);
    if (n < 2) return PL_OK;
    int64_t want = n - 1 < max_len ? n - 1 : max_len;
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, (int)want, 0);
    if (!c) return PL_ERR_NOMEM;
    int32_t *tg = pl_alloc((size_t)want * sizeof(int32_t), PL_MEM_WORKSPACE);
    if (!tg) { pl_llama_ctx_free(c); return pl_fail(PL_ERR_NOMEM, "score: out of memory"); }
    enum pl_status st = PL_OK;
    int64_t scored = 0;   /* targets ids[1..scored] are done */
    for (int64_t s = 0; scored < n - 1; s += stride) {
        int64_t len = n - 1 - s < max_len ? n - 1 - s : max_len;
        if ((st = pl_llama_forward(c, ids + s, (int)len, 0, 0)) != PL_OK) break;
        for (int64_t i = 0; i < len; i++) tg[i] = (s + i + 1 > scored) ? ids[s + i + 1] : -1;
        int64_t cnt;
        double mean = pl_llama_loss(c, tg, (int)len, &cnt);
        if (cnt) { *nll_sum += mean * (double)cnt; *count += cnt; }
        scored = s + len;
    }
    pl_free(tg);
    pl_llama_ctx_free(c);
    return st;
}
