/* lora_gguf.c — LoRA adapters as GGUF files in llama.cpp's adapter layout: write and read.
 *
 * Owner: interop. The one place that knows this format (llama.cpp's convert_lora_to_gguf.py
 * writes it, src/llama-adapter.cpp reads it):
 *   metadata  general.architecture  the base's ("llama", "qwen2"); llama.cpp refuses others
 *             general.type          "adapter"
 *             adapter.type          "lora"
 *             adapter.lora.alpha    f32; llama.cpp scales by alpha / r (r = lora_b's inner
 *                                   size), so rsLoRA's alpha / sqrt(r) is written as
 *                                   alpha·sqrt(r) — the same effective scale
 *   tensors   blk.<l>.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a
 *             [r, in] and .lora_b [out, r] (row-major; ggml ne reversed), f32 or f16.
 * Row order of q/k lora_b: llama.cpp's "llama" GGUFs hold Q/K rows permuted to interleaved
 * RoPE pairs (its converter permutes them), "qwen2" keeps HF's rotate-half order. The adapter
 * holds rows in its model's own order (lora.h), so rows are re-ordered when the two differ.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peftlua/adapters.h"
#include "peftlua/alloc.h"
#include "peftlua/gguf.h"
#include "peftlua/lora.h"
#include "peftlua/quant.h"
#include "peftlua/train.h"


/* llama.cpp's row order for q/k in a GGUF of this architecture: 1 interleaved, 0 half. */
static int gguf_qk_interleaved(enum pl_arch arch) { return arch == PL_ARCH_LLAMA; }

/* Re-order the rows of B [heads*hd, r]: to_half 1: interleaved → half (row 2i → i, 2i+1 →
 * hd/2 + i within each head), 0: the inverse. */
static enum pl_status reorder_rows(float *B, int64_t rows, int64_t r, int64_t heads, int to_half)
{
    if (heads <= 0 || rows % heads) return PL_OK;
    int64_t hd = rows / heads;
    if (hd % 2) return PL_OK;
    float *tmp = pl_alloc((size_t)(rows * r) * sizeof(float), PL_MEM_WORKSPACE);
    if (!tmp) return pl_fail(PL_ERR_NOMEM, "lora gguf: out of memory");
    memcpy(tmp, B, (size_t)(rows * r) * sizeof(float));
    for (int64_t h = 0; h < heads; h++)
        for (int64_t k = 0; k < hd; k++) {
            int64_t half = k % 2 == 0 ? k / 2 : hd / 2 + k / 2;   /* interleaved row k → half row */
            int64_t from = h * hd + (to_half ? k : half), to = h * hd + (to_half ? half : k);
            memcpy(B + (size_t)(to * r), tmp + (size_t)(from * r), (size_t)r * sizeof(float));
        }
    pl_free(tmp);
    return PL_OK;
}

static float base_scale(const struct pl_lora_cfg *c)
{
    return c->use_rslora ? c->alpha / sqrtf((float)c->r) : c->alpha / (float)c->r;
}

enum pl_status pl_lora_export_gguf(const struct pl_lora *a, const struct pl_model *m,
                                   const char *path, const char *dtype)
{
    enum pl_dtype dt = PL_F32;
    if (a->cfg.kind != PL_ADAPTER_LORA)
        return pl_fail(PL_ERR_UNSUPPORTED, "GGUF adapter: llama.cpp's LoRA adapters hold lora_a/lora_b only; a %s adapter cannot be written (merge it into the base with tr:merge() and export the model)",
                       a->cfg.kind == PL_ADAPTER_DORA ? "DoRA" : "IA3");
    if (dtype && strcmp(dtype, "f32") != 0) {
        if (strcmp(dtype, "f16") != 0)
            return pl_fail(PL_ERR_ARG, "GGUF adapter: dtype must be \"f32\" or \"f16\", not \"%s\"", dtype);
        dt = PL_F16;
    }
    if (a->n_model_layers != m->cfg.n_layers)
        return pl_fail(PL_ERR_ARG, "GGUF adapter: adapter for %d layers, model has %d", a->n_model_layers,
                       m->cfg.n_layers);
    const int r = a->cfg.r;
    const int reorder = a->qk_interleaved != gguf_qk_interleaved(m->cfg.arch);
    struct pl_gguf_writer *w = pl_gguf_writer_new();
    if (!w) return PL_ERR_NOMEM;
    enum pl_status st = pl_gguf_set_str(w, "general.architecture",
                                        m->cfg.arch == PL_ARCH_QWEN2 ? "qwen2" : "llama");
    if (st == PL_OK) st = pl_gguf_set_str(w, "general.type", "adapter");
    if (st == PL_OK) st = pl_gguf_set_str(w, "general.name", m->name ? m->name : "peftlua");
    if (st == PL_OK) st = pl_gguf_set_str(w, "adapter.type", "lora");
    /* llama.cpp: scale = alpha / r; write the alpha that gives this adapter's scale */
    if (st == PL_OK) st = pl_gguf_set_f32(w, "adapter.lora.alpha", base_scale(&a->cfg) * (float)r);
    for (int i = 0; i < a->n && st == PL_OK; i++) {
        const struct pl_lora_adapter *d = &a->ad[i];
        for (int k = 0; k < 2 && st == PL_OK; k++) {
            int64_t shape[2] = { k ? d->out : r, k ? r : d->in };
            struct pl_tensor *t = pl_tensor_new(PL_F32, 2, shape, PL_MEM_WORKSPACE);
            if (!t) { st = PL_ERR_NOMEM; break; }
            float *v = pl_tensor_data(t);
            memcpy(v, k ? d->B : d->A, (size_t)(shape[0] * shape[1]) * sizeof(float));
            if (k && reorder && d->proj <= PL_PROJ_K)
                st = reorder_rows(v, d->out, r, d->proj == PL_PROJ_Q ? a->n_heads : a->n_kv_heads,
                                  a->qk_interleaved);
            struct pl_tensor *c = st == PL_OK && dt != PL_F32 ? pl_tensor_convert(t, dt, PL_MEM_WORKSPACE) : NULL;
            if (st == PL_OK && dt != PL_F32 && !c) st = PL_ERR_NOMEM;
            char name[160];
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_%c", d->layer, pl_proj_gguf_names[d->proj], k ? 'b' : 'a');
            if (st == PL_OK) st = pl_gguf_add_tensor(w, name, c ? c : t);
            pl_tensor_release(c);
            pl_tensor_release(t);
        }
    }
    if (st == PL_OK) st = pl_gguf_writer_write(w, path);
    pl_gguf_writer_free(w);
    return st;
}

/* "blk.<l>.<pl_proj_gguf_names (model/names.c)>.weight.lora_<a|b>" → layer, proj, which; 0 if not of that form. */
static int parse_gg_name(const char *s, int *layer, int *proj, char *which)
{
    if (strncmp(s, "blk.", 4) != 0) return 0;
    char *end;
    long l = strtol(s + 4, &end, 10);
    if (end == s + 4 || *end != '.') return 0;
    s = end + 1;
    for (int p = 0; p < PL_PROJ_COUNT; p++) {
        size_t n = strlen(pl_proj_gguf_names[p]);
        if (strncmp(s, pl_proj_gguf_names[p], n) == 0 && strncmp(s + n, ".weight.lora_", 13) == 0 &&
            (s[n + 13] == 'a' || s[n + 13] == 'b') && s[n + 14] == '\0') {
            *layer = (int)l;
            *proj = p;
            *which = s[n + 13];
            return 1;
        }
    }
    return 0;
}

enum pl_status pl_lora_load_gguf(struct pl_lora **out, const char *path,
                                 const struct pl_model_config *mc)
{
    *out = NULL;
    struct pl_gguf *g;
    enum pl_status st = pl_gguf_open(path, &g);
    if (st != PL_OK) return st;
    const char *type = pl_gguf_str_or(g, "general.type", "");
    const char *atype = pl_gguf_str_or(g, "adapter.type", "");
    const char *arch = pl_gguf_str_or(g, "general.architecture", "");
    const char *want_arch = mc->arch == PL_ARCH_QWEN2 ? "qwen2" : "llama";
    if (strcmp(type, "adapter") != 0 || strcmp(atype, "lora") != 0) {
        st = pl_fail(PL_ERR_FORMAT, "%s: not a GGUF LoRA adapter (general.type \"%s\", adapter.type \"%s\"; "
                     "want \"adapter\" and \"lora\")", path, type, atype);
        goto fail;
    }
    if (strcmp(arch, want_arch) != 0) {
        st = pl_fail(PL_ERR_FORMAT, "%s: adapter for architecture \"%s\", the model is \"%s\"", path, arch, want_arch);
        goto fail;
    }
    /* first pass: rank, targets and layers from the names and shapes */
    struct pl_lora_cfg cfg = pl_lora_defaults();
    cfg.targets = 0;
    cfg.r = 0;
    unsigned char *lay = pl_calloc((size_t)mc->n_layers, 1, PL_MEM_WORKSPACE);
    if (!lay) { st = pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    int64_t nt = pl_gguf_tensor_count(g);
    for (int64_t k = 0; k < nt && st == PL_OK; k++) {
        const struct pl_gguf_tensor_info *ti = pl_gguf_tensor_info(g, k);
        int layer, proj;
        char which;
        if (!parse_gg_name(ti->name, &layer, &proj, &which)) {
            st = pl_fail(PL_ERR_UNSUPPORTED, "%s: tensor %s is not a LoRA weight of a projection peftlua adapts "
                         "(blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight.lora_{a,b})",
                         path, ti->name);
            break;
        }
        if (layer < 0 || layer >= mc->n_layers) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s: the base model has no blk.%d (it has %d layers)", path,
                         ti->name, layer, mc->n_layers);
            break;
        }
        if (ti->ndim != 2) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s has %d dimensions, not 2", path, ti->name, ti->ndim);
            break;
        }
        int64_t rk = which == 'a' ? ti->shape[0] : ti->shape[1];
        /* the rank and shape are checked here, before anything is allocated from them */
        if (rk < 1 || rk > PL_LORA_MAX_RANK) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s has rank %lld (1 to %d expected)", path, ti->name,
                         (long long)rk, PL_LORA_MAX_RANK);
            break;
        }
        int64_t in, out;
        pl_lora_proj_shape(mc, (enum pl_proj)proj, &in, &out);
        if ((which == 'a' ? ti->shape[1] : ti->shape[0]) != (which == 'a' ? in : out)) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], this model needs [%lld, %lld] "
                         "(adapter for another base model?)", path, ti->name, (long long)ti->shape[0],
                         (long long)ti->shape[1], (long long)(which == 'a' ? rk : out), (long long)(which == 'a' ? in : rk));
            break;
        }
        if (cfg.r == 0) cfg.r = (int32_t)rk;
        if (rk != cfg.r) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s has rank %lld, earlier tensors rank %d (one rank per adapter)",
                         path, ti->name, (long long)rk, cfg.r);
            break;
        }
        cfg.targets |= 1u << proj;
        lay[layer] = 1;
    }
    if (st == PL_OK && cfg.r == 0) st = pl_fail(PL_ERR_FORMAT, "%s: no LoRA tensors", path);
    if (st == PL_OK) {
        int all = 1;
        for (int l = 0; l < mc->n_layers; l++) all &= lay[l];
        if (!all)
            for (int l = 0; l < mc->n_layers; l++)
                if (lay[l]) cfg.layers[cfg.n_layers_sel++] = l;
    }
    pl_free(lay);
    if (st != PL_OK) goto fail;
    float alpha = pl_gguf_f32_or(g, "adapter.lora.alpha", 0.0f);
    cfg.alpha = alpha != 0.0f ? alpha : (float)cfg.r;   /* llama.cpp: no alpha → scale 1 */
    struct pl_lora *a;
    if ((st = pl_lora_new(&a, mc, &cfg, 0)) != PL_OK) {
        st = pl_fail(st, "%s: %s", path, pl_last_error());
        goto fail;
    }
    memset(a->params, 0, (size_t)a->n_params * sizeof(float));   /* absent pairs add nothing */
    const int reorder = a->qk_interleaved != gguf_qk_interleaved(mc->arch);
    for (int64_t k = 0; k < nt && st == PL_OK; k++) {
        const struct pl_gguf_tensor_info *ti = pl_gguf_tensor_info(g, k);
        int layer, proj;
        char which;
        parse_gg_name(ti->name, &layer, &proj, &which);
        struct pl_lora_adapter *d = pl_lora_get(a, layer, (enum pl_proj)proj);
        int64_t want0 = which == 'a' ? cfg.r : d->out, want1 = which == 'a' ? d->in : cfg.r;
        if (ti->shape[0] != want0 || ti->shape[1] != want1) {
            st = pl_fail(PL_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], this model needs [%lld, %lld] "
                         "(adapter for another base model?)", path, ti->name, (long long)ti->shape[0],
                         (long long)ti->shape[1], (long long)want0, (long long)want1);
            break;
        }
        struct pl_tensor *t = pl_gguf_tensor_at(g, k);
        if (!t) { st = PL_ERR_FORMAT; break; }
        float *dst = which == 'a' ? d->A : d->B;
        st = pl_tensor_read_f32(t, dst);
        pl_tensor_release(t);
        if (st == PL_OK && which == 'b' && reorder && d->proj <= PL_PROJ_K)
            st = reorder_rows(dst, d->out, cfg.r, d->proj == PL_PROJ_Q ? a->n_heads : a->n_kv_heads,
                              !a->qk_interleaved);
    }
    pl_gguf_close(g);
    if (st != PL_OK) { pl_lora_free(a); return st; }
    *out = a;
    return PL_OK;
fail:
    pl_gguf_close(g);
    return st;
}

/* ---------------------------------------------------------------- Ollama */

enum pl_status pl_ollama_modelfile_write(const char *path, const char *base_gguf,
                                         const char *adapter_gguf)
{
    char base[4096], buf[9000];
    if (!realpath(base_gguf, base))
        return pl_fail(PL_ERR_IO, "Modelfile: base model %s not found", base_gguf);
    if (strpbrk(base, "\n\r") || strpbrk(adapter_gguf, "\n\r"))
        return pl_fail(PL_ERR_ARG, "Modelfile: a path holds a line break");
    const char *slash = strrchr(adapter_gguf, '/');
    int n = snprintf(buf, sizeof buf,
                     "# Ollama Modelfile written by peftlua: the base model and its LoRA adapter.\n"
                     "#   ollama create NAME -f Modelfile && ollama run NAME\n"
                     "FROM %s\nADAPTER ./%s\n", base, slash ? slash + 1 : adapter_gguf);
    if (n < 0 || (size_t)n >= sizeof buf) return pl_fail(PL_ERR_ARG, "Modelfile: path too long");
    const void *parts[1] = { buf };
    size_t sizes[1] = { (size_t)n };
    return pl_file_write_atomic(path, parts, sizes, 1);
}
