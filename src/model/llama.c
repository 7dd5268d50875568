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
#include <stddef.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/kernels.h"
#include "peftlua/model.h"
#include "peftlua/status.h"

static size_t pl_sz(int64_t a) { return (size_t)a; }

/* What a context of B x T with these flags plans: the slot counts and the float counts of
 * each part of its one allocation (pl_llama_ctx_new carves them in this order). */
struct ctx_counts {
    int flags, act_dtype;
    int S, S2, SK, SH;     /* slots: rounded f32, always-f32, KV cache, 16-bit copies */
    struct pl_llama_plan P;
    int64_t resid, acts, xfinal, rstd_final, scratch, floats, halves;
};

static void ctx_counts(const struct pl_model_config *cf, int B, int T, int flags,
                       struct ctx_counts *k)
{
    const int save = (flags & (PL_LLAMA_SAVE | PL_LLAMA_SAVE_BF16 | PL_LLAMA_SAVE_F16)) != 0;
    k->act_dtype = (flags & PL_LLAMA_SAVE_BF16) ? PL_BF16 : (flags & PL_LLAMA_SAVE_F16) ? PL_F16 : PL_F32;
    const int h16 = k->act_dtype != PL_F32, L = cf->n_layers;
    k->flags = save ? flags | PL_LLAMA_SAVE : flags;
    k->S = save && !h16 ? L : 1;     /* f32 copies of the buffers 16-bit mode rounds */
    k->S2 = save ? L : 1;            /* resid2 and the rstd's: f32 whenever saved */
    k->SK = h16 ? 1 : L;             /* KV cache */
    k->SH = h16 ? L : 0;             /* 16-bit copies */
    pl_llama_plan_of(cf, B, T, &k->P);
    k->resid = (save ? L + 1 : 2) * k->P.x;
    k->acts = pl_llama_acts_floats(&k->P, k->S, k->S2, k->SK);
    k->xfinal = k->P.x;
    k->rstd_final = k->P.rows;
    k->scratch = k->P.wide;
    k->floats = k->resid + k->acts + k->xfinal + k->rstd_final + k->scratch;
    k->halves = k->SH * k->P.rounded;
}

int64_t pl_llama_ctx_bytes(const struct pl_model_config *cf, int B, int T, int flags)
{
    struct ctx_counts k;
    ctx_counts(cf, B, T, flags, &k);
    return (int64_t)sizeof(struct pl_llama_ctx) + k.floats * 4 + k.halves * 2
         + k.P.rows * (int64_t)sizeof(int32_t);   /* + pos */
}

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
    if ((flags & PL_LLAMA_SAVE_BF16) && (flags & PL_LLAMA_SAVE_F16)) {
        pl_fail(PL_ERR_ARG, "llama: a context saves activations as bf16 or as f16, not both");
        return NULL;
    }
    struct pl_llama_ctx *c = pl_calloc(1, sizeof *c, PL_MEM_ACTIVATIONS);
    if (!c) { pl_fail(PL_ERR_NOMEM, "llama: out of memory for a context"); return NULL; }
    struct ctx_counts K;
    ctx_counts(cf, B, T, flags, &K);
    c->act_dtype = K.act_dtype;
    c->m = m; c->B = B; c->T = T; c->flags = K.flags;
    c->n_saved = K.S;
    const int SH = K.SH;
    const struct pl_llama_plan P = K.P;
    const int64_t BT = P.rows, D = cf->dim, Hd = (int64_t)cf->n_heads * cf->head_dim;
    const int64_t KV = (int64_t)cf->n_kv_heads * cf->head_dim, F = cf->hidden_dim;
    const int64_t att1 = P.att;
    const int h16 = K.act_dtype != PL_F32;
    /* the residual stream, the block's buffers (pl_llama_acts_carve), the head, the scratch:
     * summed for the one allocation, then carved from it in this order */
    const struct { float **at; int64_t n; } plan[] = {
        { &c->resid, K.resid },
        { NULL, K.acts },
        { &c->xfinal, K.xfinal },
        { &c->rstd_final, K.rstd_final },
        { &c->scratch, K.scratch },
    };
    const struct { uint16_t **at; int64_t n; } plan16[] = {
        { &c->h_xn_att, SH * BT * D },
        { &c->h_q, SH * BT * Hd },
        { &c->h_kc, SH * BT * KV },
        { &c->h_vc, SH * BT * KV },
        { &c->h_att, SH * att1 },
        { &c->h_att_out, SH * BT * Hd },
        { &c->h_xn_ffn, SH * BT * D },
        { &c->h_gate, SH * BT * F },
        { &c->h_up, SH * BT * F },
        { &c->h_act, SH * BT * F },
    };
    const size_t nplan = sizeof plan / sizeof plan[0], nplan16 = sizeof plan16 / sizeof plan16[0];
    const size_t need = pl_sz(K.floats), need16 = pl_sz(K.halves);   /* = the sums of plan, plan16 */
    c->mem_floats = need;
    c->mem_halves = need16;
    c->mem = pl_alloc(need * sizeof(float) + need16 * sizeof(uint16_t), PL_MEM_ACTIVATIONS);
    if (!c->mem) {
        pl_free(c);
        pl_fail(PL_ERR_NOMEM, "llama: out of memory planning %.1f MiB of activations for %d x %d",
                ((double)need * 4 + (double)need16 * 2) / 1048576.0, B, T);
        return NULL;
    }
    float *p = c->mem;
    for (size_t i = 0; i < nplan; i++) {
        if (plan[i].at) *plan[i].at = p;
        else pl_llama_acts_carve(&c->buf, p, &P, K.S, K.S2, K.SK);
        p += pl_sz(plan[i].n);
    }
    uint16_t *h = (uint16_t *)p;
    for (size_t i = 0; i < nplan16; i++) {
        *plan16[i].at = h16 ? h : NULL;
        h += pl_sz(plan16[i].n);
    }
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

/* ---- few-row projections (generation) ----
 * For M <= PL_GEMV_MAX_ROWS rows the panel dequantise + sgemm path of pl_linear_fwd spends
 * most of its time writing and copying f32 panels. Here each weight block (32 elements of
 * q4_0 / q4_1 / q8_0 / f16) is decoded into registers and used at once for every row:
 *   y[m, n] = sum_k W[n, k] x[m, k] (+ bias[n]),  W[n, k] = d * q + m (q4_1), d * (q - 8)
 *   (q4_0), d * q (q8_0), as ggml defines the blocks.
 * Output rows n are split statically over OpenMP threads; each y element is reduced by one
 * thread in a fixed order, so results do not depend on the thread count. AVX-512 or AVX2+FMA;
 * other machines use pl_linear_fwd. */
#define PL_GEMV_MAX_ROWS 4
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define PL_HAVE_GEMV 1

static inline float pl_h2f(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline __m256 pl_u8x8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }
static inline __m256 pl_i8x8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)); }

/* Decode one 32-element block into w[4] (eight weights each, in order). */
static inline void pl_gemv_decode(enum pl_dtype t, const uint8_t *b, __m256 w[4])
{
    if (t == PL_Q8_0) {
        __m256 d = _mm256_set1_ps(pl_h2f(b));
        __m128i lo = _mm_loadu_si128((const __m128i *)(b + 2));
        __m128i hi = _mm_loadu_si128((const __m128i *)(b + 18));
        w[0] = _mm256_mul_ps(d, pl_i8x8_to_ps(lo));
        w[1] = _mm256_mul_ps(d, pl_i8x8_to_ps(_mm_srli_si128(lo, 8)));
        w[2] = _mm256_mul_ps(d, pl_i8x8_to_ps(hi));
        w[3] = _mm256_mul_ps(d, pl_i8x8_to_ps(_mm_srli_si128(hi, 8)));
    } else if (t == PL_F16) {
        for (int i = 0; i < 4; i++)
            w[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 16 * i)));
    } else {   /* q4_0, q4_1: 16 bytes of nibbles, low nibbles are elements 0..15 */
        int q41 = t == PL_Q4_1;
        __m256 d = _mm256_set1_ps(pl_h2f(b));
        __m256 mn = q41 ? _mm256_set1_ps(pl_h2f(b + 2)) : _mm256_set1_ps(-8.0f * pl_h2f(b));
        __m128i q = _mm_loadu_si128((const __m128i *)(b + (q41 ? 4 : 2)));
        __m128i mask = _mm_set1_epi8(0x0f);
        __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        w[0] = _mm256_fmadd_ps(d, pl_u8x8_to_ps(lo), mn);
        w[1] = _mm256_fmadd_ps(d, pl_u8x8_to_ps(_mm_srli_si128(lo, 8)), mn);
        w[2] = _mm256_fmadd_ps(d, pl_u8x8_to_ps(hi), mn);
        w[3] = _mm256_fmadd_ps(d, pl_u8x8_to_ps(_mm_srli_si128(hi, 8)), mn);
    }
}

static inline float pl_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static int pl_gemv_ok(enum pl_dtype t, int64_t M, int64_t K)
{
    return M <= PL_GEMV_MAX_ROWS && K % 32 == 0 &&
           (t == PL_Q4_0 || t == PL_Q4_1 || t == PL_Q8_0 || t == PL_F16);
}

#if defined(__AVX512F__)
/* AVX-512: one 32-element block is two registers of sixteen weights. */
static inline void pl_gemv_decode16(enum pl_dtype t, const uint8_t *b, __m512 w[2])
{
    if (t == PL_Q8_0) {
        __m512 d = _mm512_set1_ps(pl_h2f(b));
        w[0] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2)))));
        w[1] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18)))));
    } else if (t == PL_F16) {
        w[0] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
        w[1] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 32)));
    } else {
        int q41 = t == PL_Q4_1;
        __m512 d = _mm512_set1_ps(pl_h2f(b));
        __m512 mn = q41 ? _mm512_set1_ps(pl_h2f(b + 2)) : _mm512_set1_ps(-8.0f * pl_h2f(b));
        __m128i q = _mm_loadu_si128((const __m128i *)(b + (q41 ? 4 : 2)));
        __m128i mask = _mm_set1_epi8(0x0f);
        __m128i lo = _mm_and_si128(q, mask), hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        w[0] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), mn);
        w[1] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), mn);
    }
}
#endif

static void pl_gemv(float *y, const float *x, const void *W, enum pl_dtype t, const float *bias,
                    int64_t M, int64_t K, int64_t N)
{
    const size_t bb = t == PL_F16 ? 64 : (size_t)pl_dtype_info(t)->block_bytes;
    const size_t rb = (size_t)(K / 32) * bb;
    const uint8_t *w8 = W;
    #pragma omp parallel for schedule(static) if (N * K >= (1 << 16))
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *row = w8 + (size_t)n * rb;
#if defined(__AVX512F__)
        /* Four independent accumulator chains per row (two blocks x two halves) so the FMA
         * latency does not serialise the loop. */
        __m512 acc[PL_GEMV_MAX_ROWS][4];
        for (int64_t m = 0; m < M; m++)
            for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 64 <= K; k += 64) {
            __m512 w[4];
            pl_gemv_decode16(t, row + (size_t)(k / 32) * bb, w);
            pl_gemv_decode16(t, row + (size_t)(k / 32 + 1) * bb, w + 2);
            for (int64_t m = 0; m < M; m++) {
                const float *xm = x + m * K + k;
                for (int j = 0; j < 4; j++)
                    acc[m][j] = _mm512_fmadd_ps(w[j], _mm512_loadu_ps(xm + 16 * j), acc[m][j]);
            }
        }
        if (k < K) {
            __m512 w[2];
            pl_gemv_decode16(t, row + (size_t)(k / 32) * bb, w);
            for (int64_t m = 0; m < M; m++) {
                const float *xm = x + m * K + k;
                acc[m][0] = _mm512_fmadd_ps(w[0], _mm512_loadu_ps(xm), acc[m][0]);
                acc[m][1] = _mm512_fmadd_ps(w[1], _mm512_loadu_ps(xm + 16), acc[m][1]);
            }
        }
        for (int64_t m = 0; m < M; m++) {
            __m512 a = _mm512_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]),
                                     _mm512_add_ps(acc[m][2], acc[m][3]));
            y[m * N + n] = _mm512_reduce_add_ps(a) + (bias ? bias[n] : 0.0f);
        }
#else
        __m256 acc[PL_GEMV_MAX_ROWS][4];
        for (int64_t m = 0; m < M; m++)
            for (int j = 0; j < 4; j++) acc[m][j] = _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k += 32) {
            __m256 w[4];
            pl_gemv_decode(t, row + (size_t)(k / 32) * bb, w);
            for (int64_t m = 0; m < M; m++) {
                const float *xm = x + m * K + k;
                for (int j = 0; j < 4; j++)
                    acc[m][j] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(xm + 8 * j), acc[m][j]);
            }
        }
        for (int64_t m = 0; m < M; m++) {
            __m256 a = _mm256_add_ps(_mm256_add_ps(acc[m][0], acc[m][1]),
                                     _mm256_add_ps(acc[m][2], acc[m][3]));
            y[m * N + n] = pl_hsum(a) + (bias ? bias[n] : 0.0f);
        }
#endif
    }
}
#endif

/* y[M, N] = x[M, K] W^T (+ bias) for a weight tensor of any dtype. */
static enum pl_status pl_llama_matmul(float *y, const float *x, const struct pl_tensor *w,
                                      const struct pl_tensor *b, int64_t M)
{
    const float *bias = b ? (const float *)pl_tensor_data(b) : NULL;
    int64_t K = w->shape[1], N = w->shape[0];
#ifdef PL_HAVE_GEMV
    if (pl_gemv_ok(w->dtype, M, K)) {
        pl_gemv(y, x, pl_tensor_data(w), w->dtype, bias, M, K, N);
        return PL_OK;
    }
#endif
    return pl_linear_fwd(y, x, pl_tensor_data(w), w->dtype, bias, M, K, N);
}

/* y[n, out] = x[n, in] W^T (+ b), then the adapter hook. */
static enum pl_status pl_llama_linear(struct pl_model *m, int layer, enum pl_proj p, float *y,
                                      const float *x, int64_t n)
{
    const struct pl_tensor *w = m->layers[layer].w[p];
    const struct pl_tensor *b = m->layers[layer].b[p];
    if (m->linear_in_hook && !(x = m->linear_in_hook(m->linear_hook_ctx, layer, p, x, n)))
        return PL_ERR_NOMEM;
    enum pl_status st = pl_llama_matmul(y, x, w, b, n);
    if (st != PL_OK) return st;
    if (m->linear_hook) return m->linear_hook(m->linear_hook_ctx, layer, p, y, x, n);
    return PL_OK;
}

/* ---- the activation plan ---- */

static int64_t plan_wide(const struct pl_model_config *c)
{
    int64_t w = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    int64_t hd = (int64_t)c->n_heads * c->head_dim;
    return hd > w ? hd : w;
}

void pl_llama_plan_of(const struct pl_model_config *c, int B, int T, struct pl_llama_plan *p)
{
    const int64_t BT = (int64_t)B * T;
    p->x = BT * c->dim;
    p->rows = BT;
    p->q = BT * c->n_heads * c->head_dim;
    p->kv = BT * c->n_kv_heads * c->head_dim;
    p->att = (int64_t)B * c->n_heads * T * T;
    p->ffn = BT * c->hidden_dim;
    p->wide = BT * plan_wide(c);
    p->rounded = 2 * p->x + 2 * p->q + 2 * p->kv + p->att + 3 * p->ffn;
    p->grads = pl_act_grads_floats(c, BT);
}

int64_t pl_llama_acts_floats(const struct pl_llama_plan *p, int64_t nr, int64_t nf, int64_t nk)
{
    return nr * (p->rounded - 2 * p->kv) + nk * 2 * p->kv + nf * (p->x + 2 * p->rows);
}

/* The block's buffers in carving order: which group each belongs to (rounded, f32, K/V) and
 * its per-slot size, as offsets into struct pl_llama_acts. */
enum { GR, GF, GK };
#define ACT(f, g, sz) { offsetof(struct pl_llama_acts, f), g, offsetof(struct pl_llama_plan, sz) }
static const struct { size_t at; int group; size_t size; } act_layout[] = {
    ACT(xn, GR, x), ACT(rs, GF, rows), ACT(q, GR, q), ACT(kc, GK, kv), ACT(vc, GK, kv),
    ACT(att, GR, att), ACT(ao, GR, q), ACT(x2, GF, x), ACT(xf, GR, x), ACT(rf, GF, rows),
    ACT(g, GR, ffn), ACT(u, GR, ffn), ACT(a, GR, ffn),
};
#undef ACT
#define N_ACTS (sizeof act_layout / sizeof act_layout[0])

static float **act_ptr(struct pl_llama_acts *a, size_t i) { return (float **)((char *)a + act_layout[i].at); }
static int64_t act_size(const struct pl_llama_plan *p, size_t i) { return *(const int64_t *)((const char *)p + act_layout[i].size); }

float *pl_llama_acts_carve(struct pl_llama_acts *base, float *mem, const struct pl_llama_plan *p,
                           int64_t nr, int64_t nf, int64_t nk)
{
    memset(base, 0, sizeof *base);
    for (size_t i = 0; i < N_ACTS; i++) {
        const int64_t slots = act_layout[i].group == GR ? nr : act_layout[i].group == GF ? nf : nk;
        *act_ptr(base, i) = mem;
        mem += pl_sz(slots * act_size(p, i));
    }
    return mem;
}

void pl_llama_acts_slot(struct pl_llama_acts *a, const struct pl_llama_acts *base,
                        const struct pl_llama_plan *p, int64_t r, int64_t f, int64_t k)
{
    for (size_t i = 0; i < N_ACTS; i++) {
        const int64_t s = act_layout[i].group == GR ? r : act_layout[i].group == GF ? f : k;
        *act_ptr(a, i) = *act_ptr((struct pl_llama_acts *)base, i) + pl_sz(s * act_size(p, i));
    }
}

int64_t pl_act_grads_floats(const struct pl_model_config *c, int64_t BT)
{
    return BT * (3 * (int64_t)c->dim + 3 * (int64_t)c->n_heads * c->head_dim
                 + 3 * (int64_t)c->n_kv_heads * c->head_dim + plan_wide(c) + 3 * (int64_t)c->hidden_dim);
}

float *pl_act_grads_carve(struct pl_act_grads *g, float *p, const struct pl_model_config *c, int64_t BT)
{
    const int64_t D = c->dim, F = c->hidden_dim, Hd = (int64_t)c->n_heads * c->head_dim;
    const int64_t KV = (int64_t)c->n_kv_heads * c->head_dim, wide = plan_wide(c);
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

/* Layer l's f32 buffers in context c: slot l where that buffer is saved per layer in f32,
 * else the one-layer slot (the residual stream alternates between two copies when nothing is
 * saved). */
static void layer_slots(const struct pl_llama_ctx *c, int l, struct pl_llama_acts *a)
{
    const int64_t BT = (int64_t)c->B * c->T, D = c->m->cfg.dim;
    const int save = (c->flags & PL_LLAMA_SAVE) != 0;
    struct pl_llama_plan P;
    pl_llama_plan_of(&c->m->cfg, c->B, c->T, &P);
    pl_llama_acts_slot(a, &c->buf, &P, c->n_saved > 1 ? l : 0,   /* rounded in 16-bit mode */
                       save ? l : 0,                              /* always f32 */
                       c->act_dtype == PL_F32 ? l : 0);           /* KV cache */
    a->xin = c->resid + (size_t)(save ? l : (l & 1)) * BT * D;
    a->xout = c->resid + (size_t)(save ? l + 1 : ((l + 1) & 1)) * BT * D;
}

void pl_llama_acts_copy16(const struct pl_model_config *cf, int B, int T, int n, enum pl_dtype t,
                          const struct pl_llama_acts *a, const struct pl_llama_acts16 *h, int store)
{
    const int64_t R = (int64_t)B * n, D = cf->dim, F = cf->hidden_dim;
    const int64_t Hd = (int64_t)cf->n_heads * cf->head_dim, KV = (int64_t)cf->n_kv_heads * cf->head_dim;
    const struct { uint16_t *h; float *f; int64_t n; } part[] = {
        { h->xn, a->xn, R * D },
        { h->q, a->q, R * Hd },
        { h->att, a->att, (int64_t)B * cf->n_heads * n * n },   /* packed at the start */
        { h->ao, a->ao, R * Hd },
        { h->xf, a->xf, R * D },
        { h->g, a->g, R * F },
        { h->u, a->u, R * F },
        { h->a, a->a, R * F },
    };
    for (size_t i = 0; i < sizeof part / sizeof part[0]; i++) {
        if (store) pl_act16_store(part[i].h, part[i].f, part[i].n, t);
        else pl_act16_load(part[i].f, part[i].h, part[i].n, t);
    }
    for (int64_t b = 0; b < B; b++) {   /* K/V: [B][T][KV], positions 0..n-1 */
        size_t o = (size_t)b * T * KV;
        if (store) {
            pl_act16_store(h->kc + o, a->kc + o, (int64_t)n * KV, t);
            pl_act16_store(h->vc + o, a->vc + o, (int64_t)n * KV, t);
        } else {
            pl_act16_load(a->kc + o, h->kc + o, (int64_t)n * KV, t);
            pl_act16_load(a->vc + o, h->vc + o, (int64_t)n * KV, t);
        }
    }
}

/* 16-bit mode: round layer l's activations of an n-token forward from the one-layer f32
 * buffers into its 16-bit copies (store), or widen them back (load). */
static void layer_copy16(struct pl_llama_ctx *c, int l, int n, const struct pl_llama_acts *a,
                         int store)
{
    const struct pl_model_config *cf = &c->m->cfg;
    const int64_t BT = (int64_t)c->B * c->T, D = cf->dim, F = cf->hidden_dim;
    const int64_t Hd = (int64_t)cf->n_heads * cf->head_dim, KV = (int64_t)cf->n_kv_heads * cf->head_dim;
    const size_t L = (size_t)l;
    const struct pl_llama_acts16 h = {
        c->h_xn_att + L * BT * D, c->h_q + L * BT * Hd, c->h_kc + L * BT * KV,
        c->h_vc + L * BT * KV, c->h_att + L * c->B * cf->n_heads * c->T * c->T,
        c->h_att_out + L * BT * Hd, c->h_xn_ffn + L * BT * D, c->h_gate + L * BT * F,
        c->h_up + L * BT * F, c->h_act + L * BT * F,
    };
    pl_llama_acts_copy16(cf, c->B, c->T, n, (enum pl_dtype)c->act_dtype, a, &h, store);
}

enum pl_status pl_llama_saved_layer(struct pl_llama_ctx *c, int l, struct pl_llama_acts *a)
{
    if (!(c->flags & PL_LLAMA_SAVE))
        return pl_fail(PL_ERR_STATE, "llama: the context was made without PL_LLAMA_SAVE; no layer activations are kept");
    if (l < 0 || l >= c->m->cfg.n_layers || c->n_fwd < 1)
        return pl_fail(PL_ERR_ARG, "llama: no saved activations of layer %d", l);
    layer_slots(c, l, a);
    if (c->act_dtype != PL_F32) layer_copy16(c, l, c->n_fwd, a, 0);
    return PL_OK;
}

enum pl_status pl_llama_block_forward(struct pl_model *m, int l, const struct pl_llama_acts *A,
                                      float *tmp, const int32_t *pos_ids, int B, int T, int n,
                                      int pos)
{
    const struct pl_model_config *cf = &m->cfg;
    const int H = cf->n_heads, Hkv = cf->n_kv_heads, hd = cf->head_dim, D = cf->dim;
    const int F = cf->hidden_dim;
    const int64_t KV = (int64_t)Hkv * hd, rows = (int64_t)B * n;
    const enum pl_rope_mode rmode =
        cf->rope_layout == PL_ROPE_LAYOUT_HALF ? PL_ROPE_NEOX : PL_ROPE_NORMAL;
    const struct pl_layer *ly = &m->layers[l];
    const float *xin = A->xin;
    float *xout = A->xout, *xn = A->xn, *rs = A->rs, *q = A->q, *kc = A->kc, *vc = A->vc;
    float *att = A->att, *ao = A->ao, *x2 = A->x2, *xf = A->xf, *rf = A->rf, *g = A->g;
    float *u = A->u, *a = A->a;
    enum pl_status st;

    pl_rmsnorm_fwd(xn, rs, xin, (const float *)pl_tensor_data(ly->attn_norm), rows, D,
                   cf->norm_eps);
    if ((st = pl_llama_linear(m, l, PL_PROJ_Q, q, xn, rows)) != PL_OK) return st;
    pl_rope_fwd(q, q, pos_ids, rows, H, hd, cf->rope_base, rmode);
    /* K (rotated) and V of the new rows go into the cache at [b][pos + t]. */
    if ((st = pl_llama_linear(m, l, PL_PROJ_K, tmp, xn, rows)) != PL_OK) return st;
    pl_rope_fwd(tmp, tmp, pos_ids, rows, Hkv, hd, cf->rope_base, rmode);
    for (int b = 0; b < B; b++)
        memcpy(kc + ((size_t)b * T + pos) * KV, tmp + (size_t)b * n * KV,
               (size_t)n * KV * sizeof(float));
    if ((st = pl_llama_linear(m, l, PL_PROJ_V, tmp, xn, rows)) != PL_OK) return st;
    for (int b = 0; b < B; b++)
        memcpy(vc + ((size_t)b * T + pos) * KV, tmp + (size_t)b * n * KV,
               (size_t)n * KV * sizeof(float));
    pl_attention_fwd(ao, att, q, kc, vc, B, n, pos, T, H, Hkv, hd);
    if ((st = pl_llama_linear(m, l, PL_PROJ_O, tmp, ao, rows)) != PL_OK) return st;
    pl_residual_fwd(x2, xin, tmp, rows * D);

    pl_rmsnorm_fwd(xf, rf, x2, (const float *)pl_tensor_data(ly->ffn_norm), rows, D,
                   cf->norm_eps);
    if ((st = pl_llama_linear(m, l, PL_PROJ_GATE, g, xf, rows)) != PL_OK) return st;
    if ((st = pl_llama_linear(m, l, PL_PROJ_UP, u, xf, rows)) != PL_OK) return st;
    pl_swiglu_fwd(a, g, u, rows * F);
    if ((st = pl_llama_linear(m, l, PL_PROJ_DOWN, tmp, a, rows)) != PL_OK) return st;
    pl_residual_fwd(xout, x2, tmp, rows * D);
    return PL_OK;
}

/* Per block, with δ the gradient of the block output x' (forward above):
 *   down:    δact  = δ·Wd (+ LoRA)            dWd += δᵀ·act
 *   SwiGLU:  δgate, δup from δact
 *   gate/up: δh    = δgate·Wg + δup·Wu (+ LoRA)
 *   norm:    δx2   = δ + RMSNorm_bwd(δh)
 *   o:       δa    = δx2·Wo (+ LoRA)
 *   attention → δq, δk, δv (rotated) → RoPE⁻¹ → δq, δk
 *   q/k/v:   δxn   = δq·Wq + δk·Wk + δv·Wv (+ LoRA)
 *   norm:    δx    = δx2 + RMSNorm_bwd(δxn)
 * The kernels' backward functions accumulate (kernels.h). */
enum pl_status pl_llama_block_backward(struct pl_model *m, int l, const struct pl_llama_acts *A,
                                       struct pl_act_grads *G, const int32_t *pos_ids, int Bi,
                                       int Ti, int ni, const struct pl_llama_grad_hooks *hk)
{
    const struct pl_model_config *cf = &m->cfg;
    const int64_t B = Bi, T = Ti, BT = B * T, n = ni, R = B * n;
    const int64_t D = cf->dim, F = cf->hidden_dim, H = cf->n_heads, Hkv = cf->n_kv_heads;
    const int64_t hd = cf->head_dim, Hd = H * hd, KV = Hkv * hd;
    const enum pl_rope_mode rmode =
        cf->rope_layout == PL_ROPE_LAYOUT_HALF ? PL_ROPE_NEOX : PL_ROPE_NORMAL;
    const struct pl_layer *ly = &m->layers[l];
    void *hc = hk->ctx;
    enum pl_status st;

    /* MLP half: δ = d_resid */
    pl_fill_zero(G->d_act, R * F);
    if ((st = hk->proj_bwd(hc, l, PL_PROJ_DOWN, G->d_act, G->d_resid, A->a, R)) != PL_OK) return st;
    pl_fill_zero(G->d_gate, R * F);
    pl_fill_zero(G->d_up, R * F);
    pl_swiglu_bwd(G->d_gate, G->d_up, G->d_act, A->g, A->u, R * F);
    pl_fill_zero(G->d_xn, R * D);
    if ((st = hk->proj_bwd(hc, l, PL_PROJ_GATE, G->d_xn, G->d_gate, A->xf, R)) != PL_OK) return st;
    if ((st = hk->proj_bwd(hc, l, PL_PROJ_UP, G->d_xn, G->d_up, A->xf, R)) != PL_OK) return st;
    pl_copy_f32(G->d_resid2, G->d_resid, R * D);
    pl_rmsnorm_bwd(G->d_resid2, hk->grad_of(hc, ly->ffn_norm), G->d_xn, A->rf, A->x2,
                   (const float *)pl_tensor_data(ly->ffn_norm), R, D);

    /* attention half: δ = d_resid2 */
    pl_fill_zero(G->d_ao, R * Hd);
    if ((st = hk->proj_bwd(hc, l, PL_PROJ_O, G->d_ao, G->d_resid2, A->ao, R)) != PL_OK) return st;
    pl_fill_zero(G->d_qr, R * Hd);
    pl_fill_zero(G->d_kr, BT * KV);
    pl_fill_zero(G->d_k, BT * KV);
    /* dk, dv come back in the cache layout [B][T][KV]; d_k receives dv first */
    if ((st = pl_attention_bwd(G->d_qr, G->d_kr, G->d_k, G->d_ao, A->att, A->q, A->kc, A->vc, B,
                               n, 0, T, H, Hkv, hd)) != PL_OK)
        return st;
    /* to rows [B·n][KV]: dv into d_v, dk (rotated) compacted in place in d_kr */
    for (int64_t b = 0; b < B; b++) {
        memcpy(G->d_v + (size_t)b * n * KV, G->d_k + (size_t)b * T * KV, (size_t)n * KV * sizeof(float));
        if (n < T && b > 0)
            memmove(G->d_kr + (size_t)b * n * KV, G->d_kr + (size_t)b * T * KV, (size_t)n * KV * sizeof(float));
    }
    pl_fill_zero(G->d_q, R * Hd);
    pl_fill_zero(G->d_k, R * KV);
    pl_rope_bwd(G->d_q, G->d_qr, pos_ids, R, H, hd, cf->rope_base, rmode);
    pl_rope_bwd(G->d_k, G->d_kr, pos_ids, R, Hkv, hd, cf->rope_base, rmode);
    pl_fill_zero(G->d_xn, R * D);
    if ((st = hk->proj_bwd(hc, l, PL_PROJ_Q, G->d_xn, G->d_q, A->xn, R)) != PL_OK) return st;
    if ((st = hk->proj_bwd(hc, l, PL_PROJ_K, G->d_xn, G->d_k, A->xn, R)) != PL_OK) return st;
    if ((st = hk->proj_bwd(hc, l, PL_PROJ_V, G->d_xn, G->d_v, A->xn, R)) != PL_OK) return st;
    pl_copy_f32(G->d_resid, G->d_resid2, R * D);
    pl_rmsnorm_bwd(G->d_resid, hk->grad_of(hc, ly->attn_norm), G->d_xn, A->rs, A->xin,
                   (const float *)pl_tensor_data(ly->attn_norm), R, D);
    return PL_OK;
}

enum pl_status pl_llama_forward(struct pl_llama_ctx *c, const int32_t *ids, int n, int pos,
                                int logits_last_only)
{
    struct pl_model *m = c->m;
    const struct pl_model_config *cf = &m->cfg;
    const int B = c->B, T = c->T, L = cf->n_layers, D = cf->dim, V = cf->vocab_size;
    const int64_t BT = (int64_t)B * T, rows = (int64_t)B * n;
    const int save = (c->flags & PL_LLAMA_SAVE) != 0;
    enum pl_status st;

    if (n <= 0 || pos < 0 || pos + n > T)
        return pl_fail(PL_ERR_ARG, "llama: positions %d..%d do not fit the context of %d", pos,
                       pos + n - 1, T);
    if (pos > c->n_past)
        return pl_fail(PL_ERR_ARG, "llama: position %d skips past the %d cached positions", pos,
                       c->n_past);
    if (pos > 0 && c->act_dtype != PL_F32)
        return pl_fail(PL_ERR_ARG, "llama: a context saving 16-bit activations runs training steps from position 0, not %d",
                       pos);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < n; t++) c->pos[(int64_t)b * n + t] = pos + t;
    c->n_fwd = 0;

    const struct pl_tensor *E = m->tok_embd;
    float *x = c->resid;
    if ((st = pl_embedding_fwd(x, ids, pl_tensor_data(E), E->dtype, rows, V, D)) != PL_OK)
        return st;

    for (int l = 0; l < L; l++) {
        if ((st = pl_interrupt_check()) != PL_OK) return st;
        struct pl_llama_acts A;
        layer_slots(c, l, &A);
        if ((st = pl_llama_block_forward(m, l, &A, c->scratch, c->pos, B, T, n, pos)) != PL_OK)
            return st;
        if (c->act_dtype != PL_F32) layer_copy16(c, l, n, &A, 1);
    }
    if ((st = pl_interrupt_check()) != PL_OK) return st;
    c->n_past = pos + n;
    c->n_fwd = n;

    const float *xL = c->resid + (size_t)(save ? L : (L & 1)) * BT * D;
    c->x_last = xL;
    /* PL_LLAMA_NO_HEAD: the caller runs the head; logits only need room for every row */
    const int no_head = logits_last_only == PL_LLAMA_NO_HEAD;
    const int last_only = logits_last_only == PL_LLAMA_LAST_LOGITS;
    const int64_t out_rows = last_only ? B : rows;
    size_t need = (size_t)out_rows * V * sizeof(float);
    if (!c->logits || pl_alloc_size(c->logits) < need) {
        pl_free(c->logits);
        c->logits = pl_alloc(need, PL_MEM_ACTIVATIONS);
        if (!c->logits)
            return pl_fail(PL_ERR_NOMEM, "llama: out of memory for %lld x %d logits",
                           (long long)out_rows, V);
    }
    if (no_head) {
        c->n_logits = 0;
        return PL_OK;
    }
    const float *xin = xL;
    if (last_only) {
        /* Gather the last row of each sequence. */
        for (int b = 0; b < B; b++)
            memcpy(c->scratch + (size_t)b * D, xL + ((size_t)b * n + n - 1) * D,
                   (size_t)D * sizeof(float));
        xin = c->scratch;
    }
    pl_rmsnorm_fwd(c->xfinal, c->rstd_final, xin, (const float *)pl_tensor_data(m->out_norm),
                   out_rows, D, cf->norm_eps);
    c->n_logits = out_rows;
    return pl_llama_matmul(c->logits, c->xfinal, m->output, NULL, out_rows);
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
