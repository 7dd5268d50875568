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

struct pl_lora_cfg pl_lora_defaults(void)
{
    struct pl_lora_cfg c;
    memset(&c, 0, sizeof c);
    c.r = 8;
    c.alpha = 16.0f;
    c.targets = (1u << PL_PROJ_Q) | (1u << PL_PROJ_V);
    return c;
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
            total += (int64_t)cfg->r * (d->in + d->out);
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
        a->ad[i].A = p; p += (size_t)cfg->r * a->ad[i].in;
        a->ad[i].B = p; p += (size_t)cfg->r * a->ad[i].out;
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
    pl_free(a->params);
    pl_free(a->grads);
    pl_free(a->xa_mem);
    pl_free(a->work);
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
        float *g = a->grads;
        for (int i = 0; i < a->n; i++) {
            a->ad[i].dA = g; g += (size_t)a->cfg.r * a->ad[i].in;
            a->ad[i].dB = g; g += (size_t)a->cfg.r * a->ad[i].out;
        }
    }
    if (rows <= a->rows_cap) return PL_OK;
    pl_lora_unplan(a);
    a->xa_mem = pl_alloc((size_t)rows * a->cfg.r * a->n * sizeof(float), PL_MEM_ACTIVATIONS);
    if (!a->xa_mem) return pl_fail(PL_ERR_NOMEM, "lora: out of memory for saved activations");
    if (a->cfg.dropout > 0) {
        int64_t wide = 0;
        for (int i = 0; i < a->n; i++) if (a->ad[i].in > wide) wide = a->ad[i].in;
        a->work = pl_alloc((size_t)rows * wide * 2 * sizeof(float), PL_MEM_WORKSPACE);
        if (!a->work) return pl_fail(PL_ERR_NOMEM, "lora: out of memory for dropout workspace");
    }
    for (int i = 0; i < a->n; i++) a->ad[i].xa = a->xa_mem + (size_t)i * rows * a->cfg.r;
    a->rows_cap = rows;
    return PL_OK;
}

void pl_lora_unplan(struct pl_lora *a)
{
    if (!a) return;
    pl_free(a->xa_mem);
    pl_free(a->work);
    a->xa_mem = NULL;
    a->work = NULL;
    a->rows_cap = 0;
    for (int i = 0; i < a->n; i++) a->ad[i].xa = NULL;
}

void pl_lora_attach(struct pl_lora *a, struct pl_model *m)
{
    if (a->attached && a->attached != m) pl_lora_detach(a);
    m->linear_hook = pl_lora_hook;
    m->linear_hook_ctx = a;
    a->attached = m;
}

void pl_lora_detach(struct pl_lora *a)
{
    if (!a || !a->attached) return;
    if (a->attached->linear_hook_ctx == a) {
        a->attached->linear_hook = NULL;
        a->attached->linear_hook_ctx = NULL;
    }
    a->attached = NULL;
}

/* Keep-mask factor for element i of the input of (layer, p) at the current dropout step:
 * 0 (dropped) or 1/(1-p). A splitmix64-style hash of the whole key, so it is recomputable. */
static inline float drop_factor(uint64_t key, int64_t i, float p, float inv_keep)
{
    uint64_t z = key + (uint64_t)i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    double u = (double)(z >> 11) * 0x1.0p-53;
    return u < (double)p ? 0.0f : inv_keep;
}

static uint64_t drop_key(const struct pl_lora *a, int layer, enum pl_proj p)
{
    uint64_t k = a->dropout_seed;
    k ^= (a->dropout_step + 1) * 0xd1b54a32d192ed03ull;
    k ^= ((uint64_t)layer * PL_PROJ_COUNT + (uint64_t)p + 1) * 0x8cb92ba72f3d8dd7ull;
    return k;
}

static void apply_dropout(const struct pl_lora *a, int layer, enum pl_proj p, float *xd,
                          const float *x, int64_t n, int64_t in)
{
    const float pr = a->cfg.dropout, inv_keep = 1.0f / (1.0f - pr);
    const uint64_t key = drop_key(a, layer, p);
    const int64_t i0 = a->dropout_row0 * in;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) xd[i] = x[i] * drop_factor(key, i0 + i, pr, inv_keep);
}

enum pl_status pl_lora_hook(void *ctx, int layer, enum pl_proj p, float *y, const float *x,
                            int64_t n)
{
    struct pl_lora *a = ctx;
    if (!a->enabled) return PL_OK;
    struct pl_lora_adapter *d = pl_lora_get(a, layer, p);
    if (!d) return PL_OK;
    const int64_t r = a->cfg.r;
    if (a->training) {
        if (n > a->rows_cap)
            return pl_fail(PL_ERR_STATE, "lora: forward of %lld rows but %lld were planned",
                           (long long)n, (long long)a->rows_cap);
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
    if (!a->grads || n > a->rows_cap)
        return pl_fail(PL_ERR_STATE, "lora: backward of %lld rows without a plan for them",
                       (long long)n);
    const int64_t r = a->cfg.r, in = d->in;
    if (a->cfg.dropout <= 0)
        return pl_lora_bwd(dx, d->dA, d->dB, dy, d->xa, x, d->A, d->B, a->scale, n, in, d->out, r);
    /* dropout: dA sees the dropped input; dx gets the mask applied to (g·A). */
    float *xd = a->work, *dxd = a->work + (size_t)n * in;
    apply_dropout(a, layer, p, xd, x, n * in, in);
    if (dx) memset(dxd, 0, (size_t)n * in * sizeof(float));
    enum pl_status st = pl_lora_bwd(dx ? dxd : NULL, d->dA, d->dB, dy, d->xa, xd, d->A, d->B,
                                    a->scale, n, in, d->out, r);
    if (st != PL_OK || !dx) return st;
    const float pr = a->cfg.dropout, inv_keep = 1.0f / (1.0f - pr);
    const uint64_t key = drop_key(a, layer, p);
    const int64_t N = n * in, i0 = a->dropout_row0 * in;
#pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t i = 0; i < N; i++) dx[i] += dxd[i] * drop_factor(key, i0 + i, pr, inv_keep);
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
        pl_lora_merge_into(pl_tensor_data(f), d->A, d->B, a->scale, d->out, d->in, a->cfg.r);
        pl_tensor_release(w);
        *slot = f;
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

/* Re-order q_proj/k_proj lora_B rows of the flat vector v (laid out as a->params). */
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
        float *B = v + (d->B - a->params);
        permute_rows(B, d->out, a->cfg.r, d->proj == PL_PROJ_Q ? a->n_heads : a->n_kv_heads, to_hf, tmp);
    }
    pl_free(tmp);
    return PL_OK;
}

static void peft_name(char *buf, size_t n, int layer, enum pl_proj p, char which)
{
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
             p <= PL_PROJ_O ? "self_attn" : "mlp", pl_proj_names[p], which);
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
        for (int k = 0; k < 2 && st == PL_OK; k++) {
            const float *src = k ? d->B : d->A;
            int64_t shape[2] = { k ? d->out : a->cfg.r, k ? a->cfg.r : d->in };
            struct pl_tensor *t = pl_tensor_over(data, (size_t)(src - a->params) * sizeof(float),
                                                 PL_F32, 2, shape);
            if (!t) { st = PL_ERR_NOMEM; break; }
            peft_name(name, sizeof name, d->layer, d->proj, k ? 'B' : 'A');
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
    pl_json_add_bool(c, "use_dora", 0);
    pl_json_add_bool(c, "use_rslora", a->cfg.use_rslora);
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
    s += strlen(pre);
    char *end;
    long l = strtol(s, &end, 10);
    if (end == s || *end != '.') return 0;
    s = end + 1;
    if (strncmp(s, "self_attn.", 10) == 0) s += 10;
    else if (strncmp(s, "mlp.", 4) == 0) s += 4;
    else return 0;
    for (int p = 0; p < PL_PROJ_COUNT; p++) {
        size_t n = strlen(pl_proj_names[p]);
        if (strncmp(s, pl_proj_names[p], n) == 0 && strncmp(s + n, ".lora_", 6) == 0 &&
            (s[n + 6] == 'A' || s[n + 6] == 'B') && strcmp(s + n + 7, ".weight") == 0) {
            *layer = (int)l;
            *proj = p;
            *which = s[n + 6];
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
    if (!pt || strcmp(pt, "LORA") != 0) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: peft_type is %s, not \"LORA\"", path, pt ? pt : "missing");
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
    if (pl_json_bool(pl_json_get(c, "use_dora"), 0)) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: use_dora is true: DoRA is not implemented in peftlua "
                     "(merge it in PEFT with merge_and_unload() and load the merged model)", path);
        goto done;
    }
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
    for (int64_t k = 0; k < pl_safetensors_count(sf); k++) {
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
    if ((uint64_t)need > have) {
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
    unsigned char *got = pl_calloc((size_t)(2 * a->n), 1, PL_MEM_WORKSPACE);
    for (int64_t k = 0; k < nt && st == PL_OK; k++) {
        const struct pl_safetensors_info *ti = pl_safetensors_info(sf, k);
        int layer, proj;
        char which;
        int64_t want0, want1;
        if ((st = check_tensor(path, ti, mc, &cfg, &layer, &proj, &which, &want0, &want1)) != PL_OK) break;
        struct pl_lora_adapter *d = pl_lora_get(a, layer, (enum pl_proj)proj);
        st = pl_dequant_row(ti->dtype, ti->data, which == 'A' ? d->A : d->B, want0 * want1);
        if (got) got[2 * (d - a->ad) + (which == 'B')] = 1;
        seen++;
    }
    pl_safetensors_close(sf);
    if (st == PL_OK && !got) st = pl_fail(PL_ERR_NOMEM, "lora load: out of memory");
    for (int i = 0; st == PL_OK && i < 2 * a->n; i++)
        if (!got[i]) {
            char nm[256];
            peft_name(nm, sizeof nm, a->ad[i / 2].layer, a->ad[i / 2].proj, i % 2 ? 'B' : 'A');
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s is missing (adapter_config.json targets it; %lld LoRA tensors in the file, %d expected)",
                         path, nm, (long long)seen, 2 * a->n);
        }
    pl_free(got);
    if (st == PL_OK) st = permute_qk(a, a->params, 0);
    if (st != PL_OK) { pl_lora_free(a); return st; }
    *out = a;
    return PL_OK;
}
