/* lora.c — LoRA adapters: creation and initialisation, the forward hook with hashed dropout,
 * the adapter backward, merging, and PEFT-layout save/load.
 *
 * Owner: train. The math lives in include/peftlua/lora.h; the matrix products are the
 * kernels' pl_lora_fwd / pl_lora_bwd (kernels.h). The safetensors file is read and written by
 * formats' safetensors.h; adapter_config.json through pl_file_write_atomic (train.h):
 * temporary file, fsync, rename.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peftlua/alloc.h"
#include "peftlua/json.h"
#include "peftlua/kernels.h"
#include "peftlua/lora.h"
#include "peftlua/quant.h"
#include "peftlua/safetensors.h"
#include "peftlua/train.h"
#include "lora_internal.h"

struct pl_lora_cfg pl_lora_defaults(void)
{
    struct pl_lora_cfg c;
    memset(&c, 0, sizeof c);
    c.r = 8;
    c.alpha = 16.0f;
    c.targets = (1u << PL_PROJ_Q) | (1u << PL_PROJ_V);
    return c;
}

const char *pl_adapter_kind_name(int kind)
{
    return kind == PL_ADAPTER_DORA ? "dora" : kind == PL_ADAPTER_IA3 ? "ia3" : "lora";
}

void pl_lora_touch(struct pl_lora *a)
{
    if (a) a->version++;
}

int pl_lora_target_from_name(const char *name)
{
    for (int p = 0; p < PL_PROJ_COUNT; p++)
        if (name && strcmp(name, pl_proj_names[p]) == 0) return p;
    return -1;
}

void pl_lora_proj_shape(const struct pl_model_config *mc, enum pl_proj p, int64_t *in,
                        int64_t *out)
{
    int64_t D = mc->dim, F = mc->hidden_dim;
    int64_t Hd = (int64_t)mc->n_heads * mc->head_dim, KV = (int64_t)mc->n_kv_heads * mc->head_dim;
    switch (p) {
    case PL_PROJ_Q: *in = D; *out = Hd; break;
    case PL_PROJ_K: case PL_PROJ_V: *in = D; *out = KV; break;
    case PL_PROJ_O: *in = Hd; *out = D; break;
    case PL_PROJ_GATE: case PL_PROJ_UP: *in = D; *out = F; break;
    default: *in = F; *out = D; break;
    }
}

static int layer_selected(const struct pl_lora_cfg *c, int l)
{
    if (c->n_layers_sel == 0) return 1;
    for (int i = 0; i < c->n_layers_sel; i++)
        if (c->layers[i] == l) return 1;
    return 0;
}

/* Build the adapter table and the flat parameter vector (zeroed). */
static enum pl_status lora_alloc(struct pl_lora **out, const struct pl_model_config *mc,
                                 const struct pl_lora_cfg *cfg)
{
    *out = NULL;
    if (cfg->r < 1 || cfg->r > PL_LORA_MAX_RANK)
        return pl_fail(PL_ERR_ARG, "lora: rank r = %d must be in [1, %d]", cfg->r, PL_LORA_MAX_RANK);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return pl_fail(PL_ERR_ARG, "lora: dropout %g must be in [0, 1)", (double)cfg->dropout);
    if ((cfg->targets & ((1u << PL_PROJ_COUNT) - 1)) == 0 || cfg->targets >> PL_PROJ_COUNT)
        return pl_fail(PL_ERR_ARG, "lora: no target modules (use q_proj ... down_proj)");
    if (cfg->n_layers_sel < 0 || cfg->n_layers_sel > PL_LORA_MAX_LAYERS)
        return pl_fail(PL_ERR_ARG, "lora: %d selected layers", cfg->n_layers_sel);
    for (int i = 0; i < cfg->n_layers_sel; i++)
        if (cfg->layers[i] < 0 || cfg->layers[i] >= mc->n_layers)
            return pl_fail(PL_ERR_ARG, "lora: layer %d out of range (model has %d layers)",
                           cfg->layers[i], mc->n_layers);
    if (mc->n_layers <= 0 || mc->n_layers > PL_LORA_MAX_LAYERS)
        return pl_fail(PL_ERR_ARG, "lora: model has %d layers", mc->n_layers);
    if (cfg->kind < PL_ADAPTER_LORA || cfg->kind > PL_ADAPTER_IA3)
        return pl_fail(PL_ERR_ARG, "lora: unknown adapter method %d", cfg->kind);
    if (cfg->kind == PL_ADAPTER_DORA && cfg->dropout > 0)
        return pl_fail(PL_ERR_UNSUPPORTED, "dora: lora_dropout %g is not supported with DoRA (use 0)",
                       (double)cfg->dropout);
    if (cfg->kind == PL_ADAPTER_IA3 && cfg->dropout > 0)
        return pl_fail(PL_ERR_ARG, "ia3: IA3 has no dropout (lora_dropout %g)", (double)cfg->dropout);
    if (cfg->kind == PL_ADAPTER_IA3 && cfg->n_layers_sel > 0)
        return pl_fail(PL_ERR_UNSUPPORTED, "ia3: PEFT's IA3Config has no layers_to_transform; IA3 adapts every layer");
    if (cfg->kind == PL_ADAPTER_IA3 && (cfg->ff_targets & ~cfg->targets))
        return pl_fail(PL_ERR_ARG, "ia3: feedforward_modules must be among target_modules");

    struct pl_lora *a = pl_calloc(1, sizeof *a, PL_MEM_ADAPTERS);
    if (!a) return pl_fail(PL_ERR_NOMEM, "lora: out of memory");
    a->cfg = *cfg;
    a->n_model_layers = mc->n_layers;
    a->qk_interleaved = mc->rope_layout == PL_ROPE_LAYOUT_INTERLEAVED;
    a->n_heads = mc->n_heads;
    a->n_kv_heads = mc->n_kv_heads;
    a->scale = cfg->use_rslora ? cfg->alpha / sqrtf((float)cfg->r) : cfg->alpha / (float)cfg->r;
    a->enabled = 1;
    a->index = pl_alloc((size_t)mc->n_layers * PL_PROJ_COUNT * sizeof(int32_t), PL_MEM_ADAPTERS);
    a->ad = pl_calloc((size_t)mc->n_layers * PL_PROJ_COUNT, sizeof *a->ad, PL_MEM_ADAPTERS);
    if (!a->index || !a->ad) { pl_lora_free(a); return pl_fail(PL_ERR_NOMEM, "lora: out of memory"); }
    int64_t total = 0;
    for (int l = 0; l < mc->n_layers; l++)
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            a->index[l * PL_PROJ_COUNT + p] = -1;
            if (!(cfg->targets & (1u << p)) || !layer_selected(cfg, l)) continue;
            struct pl_lora_adapter *d = &a->ad[a->n];
            d->layer = l;
            d->proj = (enum pl_proj)p;
            pl_lora_proj_shape(mc, (enum pl_proj)p, &d->in, &d->out);
            d->ff = cfg->kind == PL_ADAPTER_IA3 && (cfg->ff_targets & (1u << p)) != 0;
            d->norm_ver = -1;
            if (cfg->kind == PL_ADAPTER_IA3) total += d->ff ? d->in : d->out;
            else total += (int64_t)cfg->r * (d->in + d->out) + (cfg->kind == PL_ADAPTER_DORA ? d->out : 0);
            a->index[l * PL_PROJ_COUNT + p] = a->n++;
        }
    a->n_params = total;
    a->params = pl_calloc((size_t)total, sizeof(float), PL_MEM_ADAPTERS);
    if (!a->params) {
        pl_lora_free(a);
        return pl_fail(PL_ERR_NOMEM, "lora: out of memory for %lld adapter weights", (long long)total);
    }
    float *p = a->params;
    for (int i = 0; i < a->n; i++) {
        struct pl_lora_adapter *d = &a->ad[i];
        if (cfg->kind == PL_ADAPTER_IA3) {
            d->vec = p; p += d->ff ? d->in : d->out;
            continue;
        }
        d->A = p; p += (size_t)cfg->r * d->in;
        d->B = p; p += (size_t)cfg->r * d->out;
        if (cfg->kind == PL_ADAPTER_DORA) {
            d->mag = p; p += d->out;
            d->wnorm = pl_alloc((size_t)d->out * sizeof(float), PL_MEM_ADAPTERS);
            if (!d->wnorm) { pl_lora_free(a); return pl_fail(PL_ERR_NOMEM, "dora: out of memory"); }
        }
    }
    *out = a;
    return PL_OK;
}

enum pl_status pl_lora_new(struct pl_lora **out, const struct pl_model_config *mc,
                           const struct pl_lora_cfg *cfg, uint64_t seed)
{
    enum pl_status st = lora_alloc(out, mc, cfg);
    if (st != PL_OK) return st;
    struct pl_lora *a = *out;
    /* Kaiming-uniform with a = sqrt(5): gain = sqrt(2 / (1 + 5)), bound = gain·sqrt(3 / fan_in)
     * = 1 / sqrt(fan_in). B stays zero. */
    struct pl_rng rng;
    pl_rng_seed(&rng, seed);
    a->dropout_seed = seed ^ 0x9e3779b97f4a7c15ull;
    if (a->cfg.kind == PL_ADAPTER_IA3) {   /* PEFT: init_ia3_weights → ones */
        for (int64_t k = 0; k < a->n_params; k++) a->params[k] = 1.0f;
        return PL_OK;
    }
    for (int i = 0; i < a->n; i++) {
        struct pl_lora_adapter *d = &a->ad[i];
        double bound = 1.0 / sqrt((double)d->in);
        int64_t n = (int64_t)a->cfg.r * d->in;
        for (int64_t k = 0; k < n; k++)
            d->A[k] = (float)((2.0 * pl_rng_uniform(&rng) - 1.0) * bound);
    }
    a->dropout_seed = seed ^ 0x9e3779b97f4a7c15ull;
    return PL_OK;
}

void pl_lora_free(struct pl_lora *a)
{
    if (!a) return;
    pl_lora_detach(a);
    for (int i = 0; a->ad && i < a->n; i++) pl_free(a->ad[i].wnorm);
    pl_free(a->params);
    pl_free(a->grads);
    pl_free(a->xa_mem);
    pl_free(a->work);
    pl_free(a->ys_mem);
    pl_free(a->dy_work);
    pl_free(a->xs);
    pl_free(a->index);
    pl_free(a->ad);
    pl_free(a);
}

struct pl_lora_adapter *pl_lora_get(struct pl_lora *a, int layer, enum pl_proj p)
{
    if (!a || layer < 0 || layer >= a->n_model_layers || (unsigned)p >= PL_PROJ_COUNT) return NULL;
    int i = a->index[layer * PL_PROJ_COUNT + p];
    return i < 0 ? NULL : &a->ad[i];
}

enum pl_status pl_lora_plan(struct pl_lora *a, int64_t rows)
{
    if (rows <= 0) return pl_fail(PL_ERR_ARG, "lora: plan for %lld rows", (long long)rows);
    if (!a->grads) {
        a->grads = pl_calloc((size_t)a->n_params, sizeof(float), PL_MEM_GRADS);
        if (!a->grads) return pl_fail(PL_ERR_NOMEM, "lora: out of memory for gradients");
        for (int i = 0; i < a->n; i++) {   /* the same offsets as the parameters */
            struct pl_lora_adapter *d = &a->ad[i];
            if (d->A) { d->dA = a->grads + (d->A - a->params); d->dB = a->grads + (d->B - a->params); }
            if (d->mag) d->dmag = a->grads + (d->mag - a->params);
            if (d->vec) d->dvec = a->grads + (d->vec - a->params);
        }
    }
    if (rows <= a->rows_cap) return PL_OK;
    pl_lora_unplan(a);
    const int lowrank = a->cfg.kind != PL_ADAPTER_IA3;
    if (lowrank) {
        a->xa_mem = pl_alloc((size_t)rows * a->cfg.r * a->n * sizeof(float), PL_MEM_ACTIVATIONS);
        if (!a->xa_mem) return pl_fail(PL_ERR_NOMEM, "lora: out of memory for saved activations");
    }
    if (a->cfg.kind != PL_ADAPTER_LORA) {
        /* DoRA and output-scaling IA3 save the pre-scaling output; the backward scales dy */
        int64_t ys = 0, wide = 0;
        for (int i = 0; i < a->n; i++) {
            const struct pl_lora_adapter *d = &a->ad[i];
            if (!d->ff) ys += d->out;
            if (d->out > wide) wide = d->out;
            if (d->in > wide) wide = d->in;
        }
        a->ys_mem = ys ? pl_alloc((size_t)(rows * ys) * sizeof(float), PL_MEM_ACTIVATIONS) : NULL;
        a->dy_work = pl_alloc((size_t)(rows * wide) * sizeof(float), PL_MEM_WORKSPACE);
        if ((ys && !a->ys_mem) || !a->dy_work) {
            pl_lora_unplan(a);
            return pl_fail(PL_ERR_NOMEM, "%s: out of memory for saved outputs of %lld rows",
                           pl_adapter_kind_name(a->cfg.kind), (long long)rows);
        }
        float *q = a->ys_mem;
        for (int i = 0; i < a->n; i++)
            if (!a->ad[i].ff) { a->ad[i].ysave = q; q += (size_t)(rows * a->ad[i].out); }
    }
    if (a->cfg.dropout > 0) {
        int64_t wide = 0;
        for (int i = 0; i < a->n; i++) if (a->ad[i].in > wide) wide = a->ad[i].in;
        a->work = pl_alloc((size_t)rows * wide * 2 * sizeof(float), PL_MEM_WORKSPACE);
        if (!a->work) return pl_fail(PL_ERR_NOMEM, "lora: out of memory for dropout workspace");
    }
    if (lowrank)
        for (int i = 0; i < a->n; i++) a->ad[i].xa = a->xa_mem + (size_t)i * rows * a->cfg.r;
    a->rows_cap = rows;
    return PL_OK;
}

void pl_lora_unplan(struct pl_lora *a)
{
    if (!a) return;
    pl_free(a->xa_mem);
    pl_free(a->work);
    pl_free(a->ys_mem);
    pl_free(a->dy_work);
    a->xa_mem = NULL;
    a->work = NULL;
    a->ys_mem = NULL;
    a->dy_work = NULL;
    a->rows_cap = 0;
    for (int i = 0; i < a->n; i++) a->ad[i].xa = a->ad[i].ysave = NULL;
}

void pl_lora_attach(struct pl_lora *a, struct pl_model *m)
{
    if (a->attached && a->attached != m) pl_lora_detach(a);
    m->linear_hook = pl_lora_hook;
    m->linear_hook_ctx = a;
    m->linear_in_hook = a->cfg.kind == PL_ADAPTER_IA3 && a->cfg.ff_targets ? pl_lora_in_hook : NULL;
    a->attached = m;
}

void pl_lora_detach(struct pl_lora *a)
{
    if (!a || !a->attached) return;
    if (a->attached->linear_hook_ctx == a) {
        a->attached->linear_hook = NULL;
        a->attached->linear_hook_ctx = NULL;
        a->attached->linear_in_hook = NULL;
    }
    a->attached = NULL;
}

/* Dropout keep mask for element i of the input of (layer, p) at the current dropout step: a
 * splitmix64-style hash of key + i·φ, so it is recomputable in the backward. Element i is
 * dropped when u = (h >> 11)·2^-53 < p, which for the 53-bit integer m = h >> 11 is m < ⌈p·2^53⌉
 * (scaling by 2^53 is exact), so the test is an integer compare; the kept factor is 1/(1-p)
 * and a dropped element is multiplied by +0 (as x·0.0f). */
static inline uint64_t drop_hash(uint64_t key, uint64_t i)
{
    uint64_t z = key + i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) >> 11;
}

static uint64_t drop_key(const struct pl_lora *a, int layer, enum pl_proj p)
{
    uint64_t k = a->dropout_seed;
    k ^= (a->dropout_step + 1) * 0xd1b54a32d192ed03ull;
    k ^= ((uint64_t)layer * PL_PROJ_COUNT + (uint64_t)p + 1) * 0x8cb92ba72f3d8dd7ull;
    return k;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
static inline __m512i drop_hash8(__m512i z)
{
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
                           _mm512_set1_epi64((long long)0xbf58476d1ce4e5b9ull));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
                           _mm512_set1_epi64((long long)0x94d049bb133111ebull));
    return _mm512_srli_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 31)), 11);
}
#endif

/* y[i] = x[i]·f(i) for i in [0, N), f the keep factor of element i0 + i; the same bits with or
 * without the 16-lane path. keep (may be NULL): bit i % 16 of keep[i / 16] set where kept. */
static void dropout_scale(float *y, const float *x, uint64_t key, int64_t i0, int64_t N, float pr,
                          uint16_t *keep)
{
    const float inv_keep = 1.0f / (1.0f - pr);
    const uint64_t thr = (uint64_t)ceil((double)pr * 0x1.0p53);
    const int64_t chunk = 4096;                   /* elements per work item */
#pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t c0 = 0; c0 < N; c0 += chunk) {
        const int64_t c1 = c0 + chunk < N ? c0 + chunk : N;
        int64_t i = c0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
        const __m512i step = _mm512_set1_epi64((long long)(16 * 0x9e3779b97f4a7c15ull));
        const __m512i vthr = _mm512_set1_epi64((long long)thr);
        const __m512 vinv = _mm512_set1_ps(inv_keep);
        __m512i z0 = _mm512_setzero_si512(), z1;
        {
            uint64_t b[16];
            for (int l = 0; l < 16; l++) b[l] = key + (uint64_t)(i0 + i + l) * 0x9e3779b97f4a7c15ull;
            z0 = _mm512_loadu_si512(b);
            z1 = _mm512_loadu_si512(b + 8);
        }
        for (; i + 16 <= c1; i += 16) {
            __mmask8 k0 = _mm512_cmpge_epu64_mask(drop_hash8(z0), vthr);
            __mmask8 k1 = _mm512_cmpge_epu64_mask(drop_hash8(z1), vthr);
            const __mmask16 km = (__mmask16)((unsigned)k0 | ((unsigned)k1 << 8));
            if (keep) keep[i / 16] = (uint16_t)km;
            __m512 f = _mm512_maskz_mov_ps(km, vinv);
            __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), f);
            _mm512_storeu_ps(y + i, v);
            z0 = _mm512_add_epi64(z0, step);
            z1 = _mm512_add_epi64(z1, step);
        }
#endif
        for (; i < c1; i++) {   /* i starts a whole group of 16 here (chunk and lanes are) */
            float f = drop_hash(key, (uint64_t)(i0 + i)) < thr ? 0.0f : inv_keep;
            y[i] = x[i] * f;
            if (keep) {
                if (i % 16 == 0) keep[i / 16] = 0;
                if (f != 0.0f) keep[i / 16] |= (uint16_t)(1u << (i % 16));
            }
        }
    }
}

static void apply_dropout(const struct pl_lora *a, int layer, enum pl_proj p, float *xd,
                          const float *x, int64_t n, int64_t in)
{
    dropout_scale(xd, x, drop_key(a, layer, p), a->dropout_row0 * in, n, a->cfg.dropout, NULL);
}

enum pl_status pl_lora_hook(void *ctx, int layer, enum pl_proj p, float *y, const float *x,
                            int64_t n)
{
    struct pl_lora *a = ctx;
    if (!a->enabled) return PL_OK;
    struct pl_lora_adapter *d = pl_lora_get(a, layer, p);
    if (!d) return PL_OK;
    const int64_t r = a->cfg.r;
    if (a->training && n > a->rows_cap)
        return pl_fail(PL_ERR_STATE, "lora: forward of %lld rows but %lld were planned",
                       (long long)n, (long long)a->rows_cap);
    if (a->cfg.kind == PL_ADAPTER_IA3) return d->ff ? PL_OK : pl_ia3_out_fwd(a, d, y, n);
    if (a->cfg.kind == PL_ADAPTER_DORA) {
        if (!a->attached || !a->mag_ready)
            return pl_fail(PL_ERR_STATE, "dora: the magnitude vectors are not initialised (pl_lora_init_magnitude)");
        const struct pl_layer *ly = &a->attached->layers[layer];
        return pl_dora_fwd(a, d, ly->w[p], ly->b[p], y, x, n);
    }
    if (a->training) {
        const float *xin = x;
        if (a->cfg.dropout > 0) {
            apply_dropout(a, layer, p, a->work, x, n * d->in, d->in);
            xin = a->work;
        }
        pl_lora_fwd(y, d->xa, xin, d->A, d->B, a->scale, n, d->in, d->out, r);
        return PL_OK;
    }
    float *xa = pl_alloc((size_t)n * r * sizeof(float), PL_MEM_WORKSPACE);
    if (!xa) return pl_fail(PL_ERR_NOMEM, "lora: out of memory for %lld rows", (long long)n);
    pl_lora_fwd(y, xa, x, d->A, d->B, a->scale, n, d->in, d->out, r);
    pl_free(xa);
    return PL_OK;
}

enum pl_status pl_lora_backward(struct pl_lora *a, int layer, enum pl_proj p, float *dx,
                                const float *dy, const float *x, int64_t n)
{
    struct pl_lora_adapter *d = pl_lora_get(a, layer, p);
    if (!d || !a->enabled) return PL_OK;
    if (a->cfg.kind != PL_ADAPTER_LORA)
        return pl_fail(PL_ERR_STATE, "%s: the adapter backward runs through pl_lora_proj_backward",
                       pl_adapter_kind_name(a->cfg.kind));
    if (!a->grads || n > a->rows_cap)
        return pl_fail(PL_ERR_STATE, "lora: backward of %lld rows without a plan for them",
                       (long long)n);
    const int64_t r = a->cfg.r, in = d->in;
    if (a->cfg.dropout <= 0)
        return pl_lora_bwd(dx, d->dA, d->dB, dy, d->xa, x, d->A, d->B, a->scale, n, in, d->out, r);
    /* dropout: dA sees the dropped input; dx gets the mask applied to (g·A). The mask is hashed
     * once here, its bits kept (in the second half of the workspace) for the dx pass. */
    float *xd = a->work;
    uint16_t *keep = (uint16_t *)(a->work + (size_t)n * in);
    dropout_scale(xd, x, drop_key(a, layer, p), a->dropout_row0 * in, n * in, a->cfg.dropout, keep);
    return pl_lora_bwd_dropout(dx, d->dA, d->dB, dy, d->xa, xd, keep, 1.0f / (1.0f - a->cfg.dropout),
                               d->A, d->B, a->scale, n, in, d->out, r);
}

const float *pl_lora_in_hook(void *ctx, int layer, enum pl_proj p, const float *x, int64_t n)
{
    struct pl_lora *a = ctx;
    if (!a->enabled || a->cfg.kind != PL_ADAPTER_IA3) return x;
    struct pl_lora_adapter *d = pl_lora_get(a, layer, p);
    if (!d || !d->ff) return x;
    return pl_ia3_in(a, d, x, n);
}

enum pl_status pl_lora_proj_backward(struct pl_lora *a, int layer, enum pl_proj p,
                                     const struct pl_tensor *w, float *dW, float *db, float *dx,
                                     const float *dy, const float *x, int64_t n)
{
    struct pl_lora_adapter *d = a && a->enabled ? pl_lora_get(a, layer, p) : NULL;
    if (!d || a->cfg.kind == PL_ADAPTER_LORA) {
        enum pl_status st = pl_linear_bwd(dx, dW, db, dy, x, pl_tensor_data(w), w->dtype, n,
                                          w->shape[1], w->shape[0]);
        if (st != PL_OK || !d) return st;
        return pl_lora_backward(a, layer, p, dx, dy, x, n);
    }
    if (!a->grads || n > a->rows_cap || !a->dy_work)
        return pl_fail(PL_ERR_STATE, "%s: backward of %lld rows without a plan for them",
                       pl_adapter_kind_name(a->cfg.kind), (long long)n);
    if (dW || db)
        return pl_fail(PL_ERR_STATE, "%s: the base weights are frozen", pl_adapter_kind_name(a->cfg.kind));
    if (a->cfg.kind == PL_ADAPTER_DORA) return pl_dora_bwd(a, d, w, dx, dy, x, n);
    return pl_ia3_bwd(a, d, w, dx, dy, x, n);
}

enum pl_status pl_lora_init_magnitude(struct pl_lora *a, const struct pl_model *m)
{
    if (a->cfg.kind != PL_ADAPTER_DORA) return PL_OK;
    if (m->cfg.n_layers != a->n_model_layers)
        return pl_fail(PL_ERR_ARG, "dora: adapters for %d layers, model has %d", a->n_model_layers,
                       m->cfg.n_layers);
    for (int i = 0; i < a->n; i++) {
        enum pl_status st = pl_dora_init(a, &a->ad[i], m->layers[a->ad[i].layer].w[a->ad[i].proj]);
        if (st != PL_OK) return st;
    }
    a->mag_ready = 1;
    a->version++;
    return PL_OK;
}

void pl_lora_merge_into(float *W, const float *A, const float *B, float scale, int64_t out,
                        int64_t in, int64_t r)
{
    /* W[o, i] += scale · Σ_k B[o, k] A[k, i]; accumulated in double per element. */
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; o++) {
        float *w = W + (size_t)o * in;
        const float *b = B + (size_t)o * r;
        for (int64_t i = 0; i < in; i++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++) s += (double)b[k] * A[(size_t)k * in + i];
            w[i] += (float)(scale * s);
        }
    }
}

enum pl_status pl_lora_merge(struct pl_lora *a, struct pl_model *m)
{
    if (m->cfg.n_layers != a->n_model_layers)
        return pl_fail(PL_ERR_ARG, "lora merge: adapters for %d layers, model has %d",
                       a->n_model_layers, m->cfg.n_layers);
    for (int i = 0; i < a->n; i++) {
        struct pl_lora_adapter *d = &a->ad[i];
        struct pl_tensor **slot = &m->layers[d->layer].w[d->proj];
        struct pl_tensor *w = *slot;
        if (w->ndim != 2 || w->shape[0] != d->out || w->shape[1] != d->in)
            return pl_fail(PL_ERR_ARG, "lora merge: layer %d %s is [%lld,%lld], adapter wants [%lld,%lld]",
                           d->layer, pl_proj_names[d->proj], (long long)w->shape[0],
                           (long long)w->shape[1], (long long)d->out, (long long)d->in);
        struct pl_tensor *f = pl_tensor_new(PL_F32, 2, w->shape, PL_MEM_WEIGHTS);
        if (!f) return PL_ERR_NOMEM;
        enum pl_status st = pl_tensor_read_f32(w, pl_tensor_data(f));
        if (st != PL_OK) { pl_tensor_release(f); return st; }
        struct pl_tensor **bslot = &m->layers[d->layer].b[d->proj], *bf = NULL;
        if (a->cfg.kind == PL_ADAPTER_IA3 && !d->ff && *bslot) {   /* PEFT scales the bias too */
            bf = pl_tensor_new(PL_F32, 1, (*bslot)->shape, PL_MEM_WEIGHTS);
            if (!bf || (st = pl_tensor_read_f32(*bslot, pl_tensor_data(bf))) != PL_OK) {
                pl_tensor_release(f);
                pl_tensor_release(bf);
                return bf ? st : PL_ERR_NOMEM;
            }
        }
        if (a->cfg.kind == PL_ADAPTER_IA3) pl_ia3_merge_into(d, pl_tensor_data(f), bf ? pl_tensor_data(bf) : NULL);
        else if (a->cfg.kind == PL_ADAPTER_DORA) pl_dora_merge_into(a, d, pl_tensor_data(f));
        else pl_lora_merge_into(pl_tensor_data(f), d->A, d->B, a->scale, d->out, d->in, a->cfg.r);
        pl_tensor_release(w);
        *slot = f;
        if (bf) { pl_tensor_release(*bslot); *bslot = bf; }
    }
    pl_lora_detach(a);
    return PL_OK;
}

/* ---------------------------------------------------------------- PEFT files */

/* Rows of B [heads*hd, r] between the model's interleaved order and HF's half order:
 * to_hf: row 2i of a head → i, row 2i+1 → hd/2 + i; else the inverse. */
static void permute_rows(float *B, int64_t rows, int64_t r, int64_t heads, int to_hf, float *tmp)
{
    int64_t hd = rows / heads;
    if (heads <= 0 || hd % 2 != 0) return;
    memcpy(tmp, B, (size_t)(rows * r) * sizeof(float));
    for (int64_t h = 0; h < heads; h++)
        for (int64_t k = 0; k < hd; k++) {
            int64_t hf = k % 2 == 0 ? k / 2 : hd / 2 + k / 2;
            int64_t from = h * hd + (to_hf ? k : hf), to = h * hd + (to_hf ? hf : k);
            memcpy(B + (size_t)(to * r), tmp + (size_t)(from * r), (size_t)r * sizeof(float));
        }
}

/* Re-order the per-output-row tensors of q_proj/k_proj in the flat vector v (laid out as
 * a->params): lora_B rows, DoRA's lora_magnitude_vector, IA3's output-scaling ia3_l. */
static enum pl_status permute_qk(const struct pl_lora *a, float *v, int to_hf)
{
    if (!a->qk_interleaved) return PL_OK;
    int64_t most = 0;
    for (int i = 0; i < a->n; i++)
        if (a->ad[i].proj <= PL_PROJ_K && a->ad[i].out > most) most = a->ad[i].out;
    if (!most) return PL_OK;
    float *tmp = pl_alloc((size_t)(most * a->cfg.r) * sizeof(float), PL_MEM_WORKSPACE);
    if (!tmp) return pl_fail(PL_ERR_NOMEM, "lora: out of memory");
    for (int i = 0; i < a->n; i++) {
        const struct pl_lora_adapter *d = &a->ad[i];
        if (d->proj > PL_PROJ_K) continue;
        int64_t heads = d->proj == PL_PROJ_Q ? a->n_heads : a->n_kv_heads;
        if (d->B) permute_rows(v + (d->B - a->params), d->out, a->cfg.r, heads, to_hf, tmp);
        if (d->mag) permute_rows(v + (d->mag - a->params), d->out, 1, heads, to_hf, tmp);
        if (d->vec && !d->ff) permute_rows(v + (d->vec - a->params), d->out, 1, heads, to_hf, tmp);
    }
    pl_free(tmp);
    return PL_OK;
}

/* which: 'A', 'B' (lora_A/B.weight), 'M' (DoRA lora_magnitude_vector), 'L' (IA3 ia3_l) —
 * as PEFT's save_pretrained writes them (no ".weight" after the last two). */
static void peft_name(char *buf, size_t n, int layer, enum pl_proj p, char which)
{
    pl_name_adapter(buf, n, "base_model.model.", layer, p, which);   /* src/model/names.c */
}

/* The tensors of adapter d in file order: which letter, its data in a->params, its shape. */
static int adapter_tensors(const struct pl_lora *a, const struct pl_lora_adapter *d, char *which,
                           float **data, int64_t shape[][2], int *ndim)
{
    int k = 0;
    if (a->cfg.kind == PL_ADAPTER_IA3) {
        which[k] = 'L'; data[k] = d->vec; ndim[k] = 2;
        shape[k][0] = d->ff ? 1 : d->out; shape[k][1] = d->ff ? d->in : 1;
        return 1;
    }
    which[k] = 'A'; data[k] = d->A; ndim[k] = 2; shape[k][0] = a->cfg.r; shape[k][1] = d->in; k++;
    which[k] = 'B'; data[k] = d->B; ndim[k] = 2; shape[k][0] = d->out; shape[k][1] = a->cfg.r; k++;
    if (d->mag) { which[k] = 'M'; data[k] = d->mag; ndim[k] = 1; shape[k][0] = d->out; shape[k][1] = 1; k++; }
    return k;
}

enum pl_status pl_lora_save(const struct pl_lora *a, const char *dir, const char *base_name)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return pl_fail(PL_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    char path[4096], name[256];
    /* The tensors are views of a copy of the flat vector (A then B per adapter) with q/k
     * lora_B rows in HF's order; formats' writer lays them out and writes atomically. */
    struct pl_storage *data = pl_storage_new((size_t)a->n_params * sizeof(float), PL_MEM_WORKSPACE);
    if (!data) return pl_fail(PL_ERR_NOMEM, "lora save: out of memory");
    memcpy(data->data, a->params, (size_t)a->n_params * sizeof(float));
    enum pl_status st = permute_qk(a, data->data, 1);
    struct pl_safetensors_writer *w = st == PL_OK ? pl_safetensors_writer_new() : NULL;
    if (st == PL_OK && !w) st = PL_ERR_NOMEM;
    if (st == PL_OK) st = pl_safetensors_set_meta(w, "format", "pt");
    for (int i = 0; i < a->n && st == PL_OK; i++) {
        const struct pl_lora_adapter *d = &a->ad[i];
        char which[3];
        float *src[3];
        int64_t shape[3][2];
        int ndim[3];
        int nt = adapter_tensors(a, d, which, src, shape, ndim);
        for (int k = 0; k < nt && st == PL_OK; k++) {
            struct pl_tensor *t = pl_tensor_over(data, (size_t)(src[k] - a->params) * sizeof(float),
                                                 PL_F32, ndim[k], shape[k]);
            if (!t) { st = PL_ERR_NOMEM; break; }
            peft_name(name, sizeof name, d->layer, d->proj, which[k]);
            st = pl_safetensors_add_tensor(w, name, t);
            pl_tensor_release(t);
        }
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st == PL_OK) st = pl_safetensors_writer_write(w, path);
    pl_safetensors_writer_free(w);
    pl_storage_release(data);
    if (st != PL_OK) return st;

    struct pl_json *c = pl_json_new_object();
    if (!c) return pl_fail(PL_ERR_NOMEM, "lora save: out of memory");
    if (a->cfg.kind == PL_ADAPTER_IA3) {   /* PEFT's IA3Config */
        pl_json_add_null(c, "auto_mapping");
        pl_json_add_str(c, "base_model_name_or_path", base_name ? base_name : "");
        pl_json_add_bool(c, "fan_in_fan_out", 0);
        struct pl_json *ff = pl_json_add_array(c, "feedforward_modules");
        for (int p = 0; p < PL_PROJ_COUNT; p++)
            if (a->cfg.ff_targets & (1u << p)) pl_json_add_str(ff, NULL, pl_proj_names[p]);
        pl_json_add_bool(c, "inference_mode", 1);
        pl_json_add_bool(c, "init_ia3_weights", 1);
        pl_json_add_null(c, "modules_to_save");
        pl_json_add_str(c, "peft_type", "IA3");
        pl_json_add_null(c, "revision");
        struct pl_json *tm = pl_json_add_array(c, "target_modules");
        for (int p = 0; p < PL_PROJ_COUNT; p++)
            if (a->cfg.targets & (1u << p)) pl_json_add_str(tm, NULL, pl_proj_names[p]);
        pl_json_add_str(c, "task_type", "CAUSAL_LM");
        goto write_config;
    }
    pl_json_add_object(c, "alpha_pattern");
    pl_json_add_null(c, "auto_mapping");
    pl_json_add_str(c, "base_model_name_or_path", base_name ? base_name : "");
    pl_json_add_str(c, "bias", "none");
    pl_json_add_bool(c, "fan_in_fan_out", 0);
    pl_json_add_bool(c, "inference_mode", 1);
    pl_json_add_bool(c, "init_lora_weights", 1);
    pl_json_add_null(c, "layers_pattern");
    if (a->cfg.n_layers_sel > 0) {
        struct pl_json *ls = pl_json_add_array(c, "layers_to_transform");
        for (int i = 0; i < a->cfg.n_layers_sel; i++) pl_json_add_num(ls, NULL, a->cfg.layers[i]);
    } else {
        pl_json_add_null(c, "layers_to_transform");
    }
    pl_json_add_num(c, "lora_alpha", a->cfg.alpha);
    pl_json_add_num(c, "lora_dropout", a->cfg.dropout);
    pl_json_add_null(c, "modules_to_save");
    pl_json_add_str(c, "peft_type", "LORA");
    pl_json_add_num(c, "r", a->cfg.r);
    pl_json_add_object(c, "rank_pattern");
    pl_json_add_null(c, "revision");
    struct pl_json *tm = pl_json_add_array(c, "target_modules");
    for (int p = 0; p < PL_PROJ_COUNT; p++)
        if (a->cfg.targets & (1u << p)) pl_json_add_str(tm, NULL, pl_proj_names[p]);
    pl_json_add_str(c, "task_type", "CAUSAL_LM");
    pl_json_add_bool(c, "use_dora", a->cfg.kind == PL_ADAPTER_DORA);
    pl_json_add_bool(c, "use_rslora", a->cfg.use_rslora);
write_config:;
    char *cs = pl_json_print(c, 1);
    pl_json_free(c);
    if (!cs) return pl_fail(PL_ERR_NOMEM, "lora save: out of memory");
    size_t cl = strlen(cs);
    cs[cl] = '\0';
    const void *cp[2] = { cs, "\n" };
    size_t csz[2] = { cl, 1 };
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    st = pl_file_write_atomic(path, cp, csz, 2);
    pl_free(cs);
    return st;
}

/* Parse "base_model.model.model.layers.<l>.<block>.<proj>.lora_<A|B>.weight" (PEFT also
 * writes ".lora_A.default.weight" in memory, never in files). */
static int parse_peft_name(const char *s, int *layer, int *proj, char *which)
{
    const char *pre = "base_model.model.model.layers.";
    if (strncmp(s, pre, strlen(pre)) != 0) return 0;
    char *end;
    long l = strtol(s + strlen(pre), &end, 10);
    if (end == s + strlen(pre) || *end != '.') return 0;
    /* the inverse of peft_name: whatever src/model/names.c writes is what is read */
    char buf[256];
    for (int p = 0; p < PL_PROJ_COUNT; p++)
        for (int w = 0; w < 4; w++) {
            pl_name_adapter(buf, sizeof buf, "base_model.model.", (int)l, (enum pl_proj)p, "ABML"[w]);
            if (strcmp(buf, s) == 0) {
                *layer = (int)l;
                *proj = p;
                *which = "ABML"[w];
                return 1;
            }
        }
    return 0;
}

static enum pl_status load_config(const char *dir, struct pl_lora_cfg *cfg)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    struct pl_json *c = pl_json_parse_file(path);
    if (!c) return PL_ERR_FORMAT;
    enum pl_status st = PL_OK;
    *cfg = pl_lora_defaults();
    cfg->targets = 0;
    const char *pt = pl_json_get_str(c, "peft_type");
    if (!pt || (strcmp(pt, "LORA") != 0 && strcmp(pt, "IA3") != 0)) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: peft_type is %s, not \"LORA\" or \"IA3\"", path, pt ? pt : "missing");
        goto done;
    }
    if (strcmp(pt, "IA3") == 0) {
        cfg->kind = PL_ADAPTER_IA3;
        cfg->r = 1;
        for (int k = 0; k < 2 && st == PL_OK; k++) {
            struct pl_json *tm = pl_json_get(c, k ? "feedforward_modules" : "target_modules");
            uint32_t *bits = k ? &cfg->ff_targets : &cfg->targets;
            int nn = pl_json_type(tm) == PL_JSON_STRING ? 1 : pl_json_len(tm);
            for (int i = 0; i < nn; i++) {
                const char *nm = pl_json_type(tm) == PL_JSON_STRING ? pl_json_str(tm) : pl_json_str(pl_json_at(tm, i));
                int p = pl_lora_target_from_name(nm);
                if (p < 0) {
                    st = pl_fail(PL_ERR_UNSUPPORTED, "%s: %s entry \"%s\" is not one of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj",
                                 path, k ? "feedforward_modules" : "target_modules", nm ? nm : "?");
                    break;
                }
                *bits |= 1u << p;
            }
        }
        goto done;
    }
    int64_t r;
    if (pl_json_get_int(c, "r", 1, PL_LORA_MAX_RANK, 0, &r) != 1) {
        st = pl_fail(PL_ERR_FORMAT, "%s: \"r\" must be an integer rank in [1, %d]", path, PL_LORA_MAX_RANK);
        goto done;
    }
    cfg->r = (int32_t)r;
    double alpha = pl_json_get_num(c, "lora_alpha", (double)cfg->r);
    double dropout = pl_json_get_num(c, "lora_dropout", 0);
    if (!(alpha > -1e30 && alpha < 1e30) || !(dropout >= 0 && dropout < 1)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: \"lora_alpha\" must be a finite number and \"lora_dropout\" in [0, 1)", path);
        goto done;
    }
    cfg->alpha = (float)alpha;
    cfg->dropout = (float)dropout;
    cfg->use_rslora = pl_json_bool(pl_json_get(c, "use_rslora"), 0);
    const char *bias = pl_json_get_str(c, "bias");
    if (bias && strcmp(bias, "none") != 0) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: bias \"%s\" is not supported (only \"none\")", path, bias);
        goto done;
    }
    if (pl_json_bool(pl_json_get(c, "use_dora"), 0)) cfg->kind = PL_ADAPTER_DORA;
    /* per-module ranks/alphas would need one r per adapter; PEFT writes {} when unused */
    static const char *const patterns[] = { "rank_pattern", "alpha_pattern" };
    for (int i = 0; i < 2; i++) {
        struct pl_json *pat = pl_json_get(c, patterns[i]);
        if (pl_json_type(pat) == PL_JSON_OBJECT && pl_json_len(pat) > 0) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: %s is not empty: per-module ranks/alphas are not supported",
                         path, patterns[i]);
            goto done;
        }
    }
    if (cfg->r < 1) {
        st = pl_fail(PL_ERR_FORMAT, "%s: r is missing or below 1", path);
        goto done;
    }
    struct pl_json *tm = pl_json_get(c, "target_modules");
    if (pl_json_type(tm) == PL_JSON_STRING) {
        int p = pl_lora_target_from_name(pl_json_str(tm));
        if (p < 0) { st = pl_fail(PL_ERR_UNSUPPORTED, "%s: target_modules \"%s\" is not a projection name", path, pl_json_str(tm)); goto done; }
        cfg->targets = 1u << p;
    } else {
        for (int i = 0; i < pl_json_len(tm); i++) {
            const char *s = pl_json_str(pl_json_at(tm, i));
            int p = pl_lora_target_from_name(s);
            if (p < 0) {
                st = pl_fail(PL_ERR_UNSUPPORTED, "%s: target module \"%s\" is not one of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj",
                             path, s ? s : "?");
                goto done;
            }
            cfg->targets |= 1u << p;
        }
    }
    struct pl_json *ls = pl_json_get(c, "layers_to_transform");
    int64_t li;
    if (pl_json_type(ls) == PL_JSON_NUMBER) {
        if (pl_json_int(ls, 0, PL_LORA_MAX_LAYERS - 1, 0, &li) != 1) {
            st = pl_fail(PL_ERR_FORMAT, "%s: \"layers_to_transform\" is not a layer index", path);
            goto done;
        }
        cfg->n_layers_sel = 1;
        cfg->layers[0] = (int32_t)li;
    } else if (pl_json_type(ls) == PL_JSON_ARRAY) {
        int n = pl_json_len(ls);
        if (n > PL_LORA_MAX_LAYERS) { st = pl_fail(PL_ERR_FORMAT, "%s: too many layers_to_transform", path); goto done; }
        for (int i = 0; i < n; i++) {
            if (pl_json_int(pl_json_at(ls, i), 0, PL_LORA_MAX_LAYERS - 1, 0, &li) != 1) {
                st = pl_fail(PL_ERR_FORMAT, "%s: \"layers_to_transform\" entry %d is not a layer index", path, i);
                goto done;
            }
            cfg->layers[i] = (int32_t)li;
        }
        cfg->n_layers_sel = n;
    }
done:
    pl_json_free(c);
    return st;
}

/* One tensor of adapter_model.safetensors against the config and the model, before anything is
 * allocated for it: a PEFT LoRA name, a layer the model has, a configured target, the rank,
 * dtype and shape. */
static enum pl_status check_tensor(const char *path, const struct pl_safetensors_info *ti,
                                   const struct pl_model_config *mc, const struct pl_lora_cfg *c,
                                   int *layer_out, int *proj_out, char *which_out,
                                   int64_t *want0_out, int64_t *want1_out)
{
    const char *name = ti->name;
    int layer, proj;
    char which;
    if (!parse_peft_name(name, &layer, &proj, &which))
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s is not a LoRA weight of a base module peftlua "
                       "adapts (base_model.model.model.layers.N.{self_attn,mlp}.<q..down>_proj.lora_{A,B}.weight)",
                       path, name);
    if (which != 'A' && which != 'B')
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s does not belong to a LoRA adapter (adapter_config.json)", path, name);
    if (layer < 0 || layer >= mc->n_layers)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s: the base model has no module model.layers.%d (it has %d layers)",
                       path, name, layer, mc->n_layers);
    if (!(c->targets & (1u << proj)) || !layer_selected(c, layer))
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s is not among the configured targets/layers", path, name);
    if (ti->ndim == 2 && (which == 'A' ? ti->shape[0] : ti->shape[1]) != c->r)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s has rank %lld but adapter_config.json says r = %d",
                       path, name, (long long)(which == 'A' ? ti->shape[0] : ti->shape[1]), c->r);
    if (ti->dtype != PL_F32 && ti->dtype != PL_F16 && ti->dtype != PL_BF16)
        return pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16, BF16 supported)", path,
                       name, pl_dtype_info(ti->dtype)->name);
    int64_t in, out;
    pl_lora_proj_shape(mc, (enum pl_proj)proj, &in, &out);
    int64_t want0 = which == 'A' ? c->r : out, want1 = which == 'A' ? in : c->r;
    if (ti->ndim != 2 || ti->shape[0] != want0 || ti->shape[1] != want1)
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], this model needs [%lld, %lld] "
                       "(adapter for another base model?)", path, name,
                       (long long)ti->shape[0], (long long)(ti->ndim > 1 ? ti->shape[1] : 0),
                       (long long)want0, (long long)want1);
    *layer_out = layer; *proj_out = proj; *which_out = which; *want0_out = want0; *want1_out = want1;
    return PL_OK;
}

enum pl_status pl_lora_load(struct pl_lora **out, const char *dir, const struct pl_model_config *mc)
{
    *out = NULL;
    struct pl_lora_cfg cfg;
    enum pl_status st = load_config(dir, &cfg);
    if (st != PL_OK) return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char wpath[4096];
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", dir);
    struct pl_safetensors *sf;
    if ((st = pl_safetensors_open(wpath, &sf)) != PL_OK) return st;
    /* every tensor checked, and the weights the config asks for shown to be in the file, before
     * anything is allocated for them (a hostile "r" would otherwise size the allocation): at
     * least 2 bytes (f16/bf16) per weight of each configured adapter */
    if (mc->n_layers <= 0 || mc->n_layers > PL_LORA_MAX_LAYERS) {
        pl_safetensors_close(sf);
        return pl_fail(PL_ERR_ARG, "%s: lora: model has %d layers", path, mc->n_layers);
    }
    for (int64_t k = 0; cfg.kind == PL_ADAPTER_LORA && k < pl_safetensors_count(sf); k++) {
        int layer, proj;
        char which;
        int64_t w0, w1;
        if ((st = check_tensor(wpath, pl_safetensors_info(sf, k), mc, &cfg, &layer, &proj, &which, &w0, &w1)) != PL_OK) {
            pl_safetensors_close(sf);
            return st;
        }
    }
    uint64_t have = 0;
    for (int64_t k = 0; k < pl_safetensors_count(sf); k++) have += pl_safetensors_info(sf, k)->nbytes;
    int64_t need = 0;
    for (int l = 0; l < mc->n_layers; l++)
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            if (!(cfg.targets & (1u << p)) || !layer_selected(&cfg, l)) continue;
            int64_t in, out;
            pl_lora_proj_shape(mc, (enum pl_proj)p, &in, &out);
            need += 2 * (int64_t)cfg.r * (in + out);
        }
    if (cfg.kind == PL_ADAPTER_LORA && (uint64_t)need > have) {
        pl_safetensors_close(sf);
        return pl_fail(PL_ERR_FORMAT, "%s: rank r = %d needs %lld bytes of LoRA weights, but %s holds %llu",
                       path, cfg.r, (long long)need, wpath, (unsigned long long)have);
    }
    struct pl_lora *a;
    if ((st = lora_alloc(&a, mc, &cfg)) != PL_OK) {
        pl_safetensors_close(sf);
        return pl_fail(st, "%s: %s", path, pl_last_error());
    }
    a->dropout_seed = 0x9e3779b97f4a7c15ull;
    snprintf(path, sizeof path, "%s", wpath);
    int64_t nt = pl_safetensors_count(sf), seen = 0;
    unsigned char *got = pl_calloc((size_t)(3 * a->n), 1, PL_MEM_WORKSPACE);
    for (int64_t k = 0; k < nt && st == PL_OK; k++) {
        const struct pl_safetensors_info *ti = pl_safetensors_info(sf, k);
        int layer, proj;
        char which;
        const char *name = ti->name;
        if (!parse_peft_name(name, &layer, &proj, &which)) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s is not a %s weight of a base module peftlua "
                         "adapts (base_model.model.model.layers.N.{self_attn,mlp}.<q..down>_proj.%s)",
                         path, name, cfg.kind == PL_ADAPTER_IA3 ? "IA3" : cfg.kind == PL_ADAPTER_DORA ? "DoRA" : "LoRA",
                         cfg.kind == PL_ADAPTER_IA3 ? "ia3_l" : cfg.kind == PL_ADAPTER_DORA
                         ? "{lora_A.weight,lora_B.weight,lora_magnitude_vector}" : "lora_{A,B}.weight");
            break;
        }
        if ((which == 'L') != (cfg.kind == PL_ADAPTER_IA3) || (which == 'M' && cfg.kind != PL_ADAPTER_DORA)) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s does not belong to a %s adapter (adapter_config.json)", path,
                         name, cfg.kind == PL_ADAPTER_IA3 ? "IA3" : cfg.kind == PL_ADAPTER_DORA ? "DoRA" : "LoRA");
            break;
        }
        if (layer < 0 || layer >= mc->n_layers) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s: the base model has no module model.layers.%d (it has %d layers)",
                         path, name, layer, mc->n_layers);
            break;
        }
        struct pl_lora_adapter *d = pl_lora_get(a, layer, (enum pl_proj)proj);
        if (!d) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s is not among the configured targets/layers", path, name);
            break;
        }
        if ((which == 'A' || which == 'B') && ti->ndim == 2 && (which == 'A' ? ti->shape[0] : ti->shape[1]) != cfg.r) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s has rank %lld but adapter_config.json says r = %d",
                         path, name, (long long)(which == 'A' ? ti->shape[0] : ti->shape[1]), cfg.r);
            break;
        }
        if (ti->dtype != PL_F32 && ti->dtype != PL_F16 && ti->dtype != PL_BF16) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16, BF16 supported)", path,
                         name, pl_dtype_info(ti->dtype)->name);
            break;
        }
        char wh[3];
        float *dst[3];
        int64_t shp[3][2];
        int nd[3], nt2 = adapter_tensors(a, d, wh, dst, shp, nd), k2 = 0;
        while (k2 < nt2 && wh[k2] != which) k2++;
        int64_t want0 = shp[k2][0], want1 = nd[k2] == 2 ? shp[k2][1] : 1;
        /* PEFT writes ia3_l as [out, 1] / [1, in] and the magnitude as [out] */
        int shape_ok = ti->ndim == nd[k2] && ti->shape[0] == want0 && (nd[k2] == 1 || ti->shape[1] == want1);
        if (!shape_ok) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], this model needs [%lld, %lld] "
                         "(adapter for another base model?)", path, name,
                         (long long)ti->shape[0], (long long)(ti->ndim > 1 ? ti->shape[1] : 0),
                         (long long)want0, (long long)(nd[k2] == 2 ? want1 : 0));
            break;
        }
        st = pl_dequant_row(ti->dtype, ti->data, dst[k2], want0 * want1);
        if (got) got[3 * (d - a->ad) + k2] = 1;
        seen++;
    }
    pl_safetensors_close(sf);
    if (st == PL_OK && !got) st = pl_fail(PL_ERR_NOMEM, "lora load: out of memory");
    for (int i = 0; st == PL_OK && i < a->n; i++) {
        char wh[3];
        float *dst[3];
        int64_t shp[3][2];
        int nd[3], nt2 = adapter_tensors(a, &a->ad[i], wh, dst, shp, nd);
        for (int k = 0; k < nt2 && st == PL_OK; k++)
            if (!got[3 * i + k]) {
                char nm[256];
                peft_name(nm, sizeof nm, a->ad[i].layer, a->ad[i].proj, wh[k]);
                st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s is missing (adapter_config.json targets it; %lld %s tensors in the file, %d expected)",
                             path, nm, (long long)seen, pl_adapter_kind_name(cfg.kind), nt2 * a->n);
            }
    }
    pl_free(got);
    a->mag_ready = cfg.kind == PL_ADAPTER_DORA;
    if (st == PL_OK) st = permute_qk(a, a->params, 0);
    if (st != PL_OK) { pl_lora_free(a); return st; }
    *out = a;
    return PL_OK;
}
