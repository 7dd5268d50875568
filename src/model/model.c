/* model.c — model configuration and named weights from GGUF, llama2.c .bin and safetensors;
 * parameter enumeration by HF name; the model card.
 *
 * Owner: model. File parsing itself belongs to src/formats/gguf.c and src/formats/safetensors.c (formats) and
 * the tokenizer loaders to src/tokenizer*.c; this file maps their tensors and metadata onto
 * struct pl_model and checks that every shape is what the configuration implies.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peftlua/alloc.h"
#include "peftlua/chat.h"
#include "peftlua/gguf.h"
#include "peftlua/json.h"
#include "peftlua/quant.h"
#include "peftlua/model.h"
#include "peftlua/safetensors.h"
#include "peftlua/tokenizer.h"

static char *pl_model_strdup(const char *s) { return s ? pl_strdup(s, PL_MEM_DATA) : NULL; }

static int pl_file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int pl_dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int pl_ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

void pl_model_free(struct pl_model *m)
{
    if (!m) return;
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++) {
        struct pl_layer *ly = &m->layers[l];
        pl_tensor_release(ly->attn_norm);
        pl_tensor_release(ly->ffn_norm);
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            pl_tensor_release(ly->w[p]);
            pl_tensor_release(ly->b[p]);
        }
    }
    pl_tensor_release(m->tok_embd);
    pl_tensor_release(m->out_norm);
    pl_tensor_release(m->output);   /* a second reference to tok_embd when tied */
    pl_free(m->layers);
    if (m->tok) pl_tokenizer_free(m->tok);
    pl_free(m->path);
    pl_free(m->name);
    pl_free(m->chat_template);
    pl_free(m->source_id);
    pl_free(m->tokenizer_path);
    pl_free(m);
}

/* ---- parameters by name ---- */

static int pl_layer_n_params(const struct pl_model *m) { return 9 + (m->cfg.qkv_bias ? 3 : 0); }

int pl_model_n_params(const struct pl_model *m)
{
    if (!m->layers) return 0;
    return 1 + m->cfg.n_layers * pl_layer_n_params(m) + 1 + (m->cfg.tied_output ? 0 : 1);
}

struct pl_tensor **pl_model_param(struct pl_model *m, int i, char *name, size_t name_size)
{
    char tmp[8];
    if (!name) { name = tmp; name_size = sizeof tmp; }
    int np = pl_model_n_params(m), per = pl_layer_n_params(m);
    if (i < 0 || i >= np) return NULL;
    /* names: src/model/names.c */
    if (i == 0) { snprintf(name, name_size, "%s", pl_name_model_tensor(PL_NAME_TOK_EMBD, 0)); return &m->tok_embd; }
    i -= 1;
    if (i < m->cfg.n_layers * per) {
        int l = i / per, k = i % per;
        struct pl_layer *ly = &m->layers[l];
        /* in HF's order: input norm, q k v o, (q k v biases), post-attention norm, gate up down */
        if (k == 0) {
            pl_name_layer_norm(name, name_size, l, 0, 0);
            return &ly->attn_norm;
        }
        if (k <= 4) {
            pl_name_proj(name, name_size, l, (enum pl_proj)(k - 1), 0, 0);
            return &ly->w[k - 1];
        }
        if (m->cfg.qkv_bias) {
            if (k <= 7) {
                pl_name_proj(name, name_size, l, (enum pl_proj)(k - 5), 1, 0);
                return &ly->b[k - 5];
            }
            k -= 3;
        }
        if (k == 5) {
            pl_name_layer_norm(name, name_size, l, 1, 0);
            return &ly->ffn_norm;
        }
        pl_name_proj(name, name_size, l, (enum pl_proj)(PL_PROJ_GATE + k - 6), 0, 0);
        return &ly->w[PL_PROJ_GATE + k - 6];
    }
    i -= m->cfg.n_layers * per;
    if (i == 0) { snprintf(name, name_size, "%s", pl_name_model_tensor(PL_NAME_OUT_NORM, 0)); return &m->out_norm; }
    snprintf(name, name_size, "%s", pl_name_model_tensor(PL_NAME_OUTPUT, 0));
    return &m->output;
}

struct pl_tensor **pl_model_find_param(struct pl_model *m, const char *name)
{
    char buf[128];
    int np = pl_model_n_params(m);
    for (int i = 0; i < np; i++) {
        struct pl_tensor **slot = pl_model_param(m, i, buf, sizeof buf);
        if (strcmp(buf, name) == 0) return slot;
    }
    return NULL;
}

int64_t pl_model_param_count(const struct pl_model *m)
{
    int64_t n = 0;
    int np = pl_model_n_params(m);
    for (int i = 0; i < np; i++) {
        struct pl_tensor **slot = pl_model_param((struct pl_model *)m, i, NULL, 0);
        if (slot && *slot) n += pl_tensor_numel(*slot);
    }
    return n;
}

/* ---- validation shared by every format ---- */

static enum pl_status pl_check_shape(const char *path, const char *what, const struct pl_tensor *t,
                                     int ndim, int64_t d0, int64_t d1)
{
    char buf[96];
    if (!t) return pl_fail(PL_ERR_FORMAT, "%s: missing tensor %s", path, what);
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        if (ndim == 2)
            return pl_fail(PL_ERR_FORMAT, "%s: tensor %s is %s, expected [%lld,%lld]", path, what,
                           pl_tensor_describe(t, buf, sizeof buf), (long long)d0, (long long)d1);
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s is %s, expected [%lld]", path, what,
                       pl_tensor_describe(t, buf, sizeof buf), (long long)d0);
    }
    if (!pl_tensor_is_contiguous(t))
        return pl_fail(PL_ERR_FORMAT, "%s: tensor %s is not contiguous", path, what);
    return PL_OK;
}

static enum pl_status pl_check_config(const char *path, struct pl_model_config *c)
{
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->vocab_size <= 0)
        return pl_fail(PL_ERR_FORMAT,
                       "%s: bad configuration (dim %d, hidden %d, layers %d, heads %d/%d, vocab %d)",
                       path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->vocab_size);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads)
        return pl_fail(PL_ERR_FORMAT, "%s: dim %d / heads %d / kv heads %d do not divide", path,
                       c->dim, c->n_heads, c->n_kv_heads);
    if (c->dim > (1 << 20) || c->hidden_dim > (1 << 22) || c->n_layers > 4096 ||
        c->vocab_size > (1 << 24) || c->n_heads > 4096)
        return pl_fail(PL_ERR_FORMAT, "%s: implausible configuration (dim %d, layers %d, vocab %d)",
                       path, c->dim, c->n_layers, c->vocab_size);
    if (c->head_dim > (1 << 16) || c->n_rot > (1 << 16) || c->seq_len > (1 << 24))
        return pl_fail(PL_ERR_FORMAT, "%s: implausible configuration (head_dim %d, rotary dims %d, context %d)",
                       path, c->head_dim, c->n_rot, c->seq_len);
    if (c->head_dim <= 0) c->head_dim = c->dim / c->n_heads;
    if (c->n_rot <= 0 || c->n_rot > c->head_dim || c->n_rot % 2) c->n_rot = c->head_dim;
    if (c->seq_len <= 0) c->seq_len = 2048;
    if (!(c->rope_base > 0)) c->rope_base = 10000.0f;
    if (!(c->norm_eps > 0)) c->norm_eps = 1e-5f;
    return PL_OK;
}

/* Every weight finite: a NaN or infinity in a file (corrupt download, hostile file) is refused
 * here, naming the tensor, instead of reaching the kernels. A scan of the bits, not of values:
 * f32/f16/bf16 elements, and for block-quantised types the f16/f32 scales of every block (the
 * integer quants cannot be non-finite, and a non-finite scale makes its whole block so); other
 * types (the in-memory NF4 ones) through their dequantised values. About 10 ms per 100 MB. */
struct scale_at { enum pl_dtype t; int32_t block_bytes, off[2], f32; };
static const struct scale_at scale_table[] = {   /* ggml block layouts */
    { PL_Q4_0, 18, { 0, -1 }, 0 }, { PL_Q4_1, 20, { 0, 2 }, 0 }, { PL_Q5_0, 22, { 0, -1 }, 0 },
    { PL_Q5_1, 24, { 0, 2 }, 0 }, { PL_Q8_0, 34, { 0, -1 }, 0 }, { PL_Q2_K, 84, { 80, 82 }, 0 },
    { PL_Q3_K, 110, { 108, -1 }, 0 }, { PL_Q4_K, 144, { 0, 2 }, 0 }, { PL_Q5_K, 176, { 0, 2 }, 0 },
    { PL_Q6_K, 210, { 208, -1 }, 0 }, { PL_Q8_K, 292, { 0, -1 }, 1 },
};

static int bits_nonfinite(const uint8_t *p, int64_t n, size_t stride, size_t width)
{
    int bad = 0;
    if (width == 4) {
        for (int64_t k = 0; k < n; k++) {
            uint32_t u;
            memcpy(&u, p + (size_t)k * stride, 4);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
    } else {   /* f16 (exponent 0x7c00) or bf16 (0x7f80): the caller passes the mask's width */
        for (int64_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, p + (size_t)k * stride, 2);
            bad |= (h & (uint16_t)width) == (uint16_t)width;
        }
    }
    return bad;
}

static enum pl_status pl_check_finite(struct pl_model *m)
{
    enum pl_status st = PL_OK;
    int np = pl_model_n_params(m);
    for (int i = 0; i < np && st == PL_OK; i++) {
        char name[128];
        struct pl_tensor **slot = pl_model_param(m, i, name, sizeof name);
        const struct pl_tensor *t = slot ? *slot : NULL;
        if (!t) continue;
        const int64_t n = pl_tensor_numel(t);
        const uint8_t *base = pl_tensor_data(t);
        const int64_t blk = pl_dtype_info(t->dtype)->block;
        const int32_t bb = pl_dtype_info(t->dtype)->block_bytes;
        int bad = 0, known = 1;
        if (t->dtype == PL_F32) bad = bits_nonfinite(base, n, 4, 4);
        else if (t->dtype == PL_F16) bad = bits_nonfinite(base, n, 2, 0x7c00);
        else if (t->dtype == PL_BF16) bad = bits_nonfinite(base, n, 2, 0x7f80);
        else if (t->dtype == PL_I32 || t->dtype == PL_I8) continue;
        else {
            known = 0;
            for (size_t k = 0; k < sizeof scale_table / sizeof *scale_table; k++) {
                const struct scale_at *sa = &scale_table[k];
                if (sa->t != t->dtype || sa->block_bytes != bb || blk <= 0 || n % blk) continue;
                const int64_t nb = n / blk;
                for (int j = 0; j < 2; j++)
                    if (sa->off[j] >= 0)
                        bad |= bits_nonfinite(base + sa->off[j], nb, (size_t)bb, sa->f32 ? 4 : 0x7c00);
                known = 1;
            }
        }
        if (!known && blk > 0 && n % blk == 0) {   /* anything else: by value, in chunks */
            enum { CHUNK = 1 << 14 };
            const int64_t step = (CHUNK / blk) * blk;
            float *buf = step ? pl_alloc(CHUNK * sizeof(float), PL_MEM_WORKSPACE) : NULL;
            if (step && !buf) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", m->path);
            for (int64_t k = 0; buf && k < n && !bad; k += step) {
                const int64_t c = n - k < step ? n - k : step;
                if (pl_dequant_part(t->dtype, base, n, k, buf, c) != PL_OK) break;
                for (int64_t q = 0; q < c; q++) bad |= !isfinite(buf[q]);
            }
            pl_free(buf);
        }
        if (bad) st = pl_fail(PL_ERR_FORMAT, "%s: tensor '%s' holds NaN or infinite values (corrupt file?)", m->path, name);
    }
    return st;
}

static enum pl_status pl_check_weights(const struct pl_model *m)
{
    const struct pl_model_config *c = &m->cfg;
    const char *p = m->path;
    int64_t D = c->dim, F = c->hidden_dim, Hd = (int64_t)c->n_heads * c->head_dim;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    enum pl_status st;
    if ((st = pl_check_shape(p, "token embedding", m->tok_embd, 2, c->vocab_size, D))) return st;
    if ((st = pl_check_shape(p, "output norm", m->out_norm, 1, D, 0))) return st;
    if ((st = pl_check_shape(p, "output", m->output, 2, c->vocab_size, D))) return st;
    if (m->out_norm->dtype != PL_F32)
        return pl_fail(PL_ERR_UNSUPPORTED, "%s: output norm must be f32", p);
    for (int l = 0; l < c->n_layers; l++) {
        const struct pl_layer *ly = &m->layers[l];
        char what[64];
        int64_t out[PL_PROJ_COUNT] = { Hd, KV, KV, D, F, F, D };
        int64_t in[PL_PROJ_COUNT] = { D, D, D, Hd, D, D, F };
        snprintf(what, sizeof what, "layer %d attention norm", l);
        if ((st = pl_check_shape(p, what, ly->attn_norm, 1, D, 0))) return st;
        snprintf(what, sizeof what, "layer %d ffn norm", l);
        if ((st = pl_check_shape(p, what, ly->ffn_norm, 1, D, 0))) return st;
        if (ly->attn_norm->dtype != PL_F32 || ly->ffn_norm->dtype != PL_F32)
            return pl_fail(PL_ERR_UNSUPPORTED, "%s: layer %d norms must be f32", p, l);
        for (int k = 0; k < PL_PROJ_COUNT; k++) {
            snprintf(what, sizeof what, "layer %d %s", l, pl_proj_names[k]);
            if ((st = pl_check_shape(p, what, ly->w[k], 2, out[k], in[k]))) return st;
            if (ly->b[k]) {
                snprintf(what, sizeof what, "layer %d %s bias", l, pl_proj_names[k]);
                if ((st = pl_check_shape(p, what, ly->b[k], 1, out[k], 0))) return st;
                if (ly->b[k]->dtype != PL_F32)
                    return pl_fail(PL_ERR_UNSUPPORTED, "%s: %s must be f32", p, what);
            }
        }
    }
    return PL_OK;
}

static struct pl_model *pl_model_alloc(const char *path)
{
    struct pl_model *m = pl_calloc(1, sizeof *m, PL_MEM_DATA);
    if (!m) { pl_fail(PL_ERR_NOMEM, "%s: out of memory", path); return NULL; }
    m->path = pl_model_strdup(path);
    const char *base = strrchr(path, '/');
    m->name = pl_model_strdup(base ? base + 1 : path);
    return m;
}

static enum pl_status pl_model_alloc_layers(struct pl_model *m)
{
    m->layers = pl_calloc((size_t)m->cfg.n_layers, sizeof *m->layers, PL_MEM_DATA);
    return m->layers ? PL_OK : pl_fail(PL_ERR_NOMEM, "%s: out of memory", m->path);
}

/* ---- llama2.c legacy .bin ---- */

/* Header: int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; then f32
 * arrays: token_embedding [V,D], rms_att [L,D], wq [L,D,D], wk [L,KV,D], wv [L,KV,D],
 * wo [L,D,D], rms_ffn [L,D], w1 [L,F,D], w2 [L,D,F], w3 [L,F,D], rms_final [D],
 * freq_cis_real and _imag [seq, head/2] (unused), wcls [V,D] when vocab_size < 0. */
static enum pl_status pl_model_load_llama2c(struct pl_model *m, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int32_t h[7];
    if (fread(h, sizeof(int32_t), 7, f) != 7) {
        fclose(f);
        return pl_fail(PL_ERR_FORMAT, "%s: truncated llama2.c header (28 bytes expected)", path);
    }
    fseek(f, 0, SEEK_END);
    long fsize = ftell(f);
    struct pl_model_config *c = &m->cfg;
    c->arch = PL_ARCH_LLAMA;
    c->dim = h[0]; c->hidden_dim = h[1]; c->n_layers = h[2]; c->n_heads = h[3];
    if (h[5] == INT32_MIN) {   /* -INT32_MIN does not exist */
        fclose(f);
        return pl_fail(PL_ERR_FORMAT, "%s: bad vocab_size %d in llama2.c header", path, h[5]);
    }
    c->n_kv_heads = h[4]; c->vocab_size = h[5] < 0 ? -h[5] : h[5]; c->seq_len = h[6];
    c->tied_output = h[5] > 0;
    c->rope_base = 10000.0f; c->norm_eps = 1e-5f;
    c->rope_layout = PL_ROPE_LAYOUT_INTERLEAVED;
    c->bos_id = 1; c->eos_id = 2;
    enum pl_status st = pl_check_config(path, c);
    if (st) { fclose(f); return st; }
    if (c->seq_len <= 0 || c->seq_len > (1 << 20)) {
        fclose(f);
        return pl_fail(PL_ERR_FORMAT, "%s: bad seq_len %d in llama2.c header", path, h[6]);
    }
    int64_t D = c->dim, F = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim, hs = c->head_dim;
    /* sizes from the header, multiplied with overflow checks (alloc.h) */
    const int64_t terms[][4] = {
        { V, D, 1, 1 }, { L, D, 1, 1 }, { L, D, D, 1 }, { 2, L, KV, D }, { L, D, D, 1 }, { L, D, 1, 1 },
        { 3, L, F, D }, { D, 1, 1, 1 }, { c->seq_len, hs, 1, 1 }, { c->tied_output ? 0 : V, D, 1, 1 },
    };
    int64_t floats = 0, bytes = 0;
    int ok = 1;
    for (size_t k = 0; k < sizeof terms / sizeof *terms && ok; k++) {
        int64_t t = 1;
        for (int q = 0; q < 4 && ok; q++) ok = pl_mul_i64(t, terms[k][q], &t);
        ok = ok && pl_add_i64(floats, t, &floats);
    }
    ok = ok && pl_mul_i64(floats, 4, &bytes) && bytes <= INT64_MAX - 28;
    if (!ok || fsize < 28 || (int64_t)(fsize - 28) < bytes) {
        fclose(f);
        if (!ok) return pl_fail(PL_ERR_FORMAT, "%s: the llama2.c header's sizes overflow", path);
        return pl_fail(PL_ERR_FORMAT, "%s: truncated: %ld bytes, the header implies %lld", path,
                       fsize, (long long)(28 + bytes));
    }
    struct pl_storage *s = pl_storage_new((size_t)floats * 4, PL_MEM_WEIGHTS);
    if (!s) { fclose(f); return pl_fail(PL_ERR_NOMEM, "%s: out of memory for weights", path); }
    fseek(f, 28, SEEK_SET);
    size_t got = fread(s->data, 4, (size_t)floats, f);
    fclose(f);
    if (got != (size_t)floats) {
        pl_storage_release(s);
        return pl_fail(PL_ERR_IO, "%s: short read of weights", path);
    }
    if ((st = pl_model_alloc_layers(m))) { pl_storage_release(s); return st; }
    size_t off = 0;
    /* One tensor per layer slice: t(shape) at the running offset. */
#define TAKE(dst, nd, a, b_) do { int64_t sh[2] = { (a), (b_) }; \
        (dst) = pl_tensor_over(s, off * 4, PL_F32, (nd), sh); \
        if (!(dst)) { pl_storage_release(s); return PL_ERR_NOMEM; } \
        off += (size_t)((nd) == 2 ? (a) * (b_) : (a)); } while (0)
    TAKE(m->tok_embd, 2, V, D);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].attn_norm, 1, D, 0);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].w[PL_PROJ_Q], 2, D, D);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].w[PL_PROJ_K], 2, KV, D);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].w[PL_PROJ_V], 2, KV, D);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].w[PL_PROJ_O], 2, D, D);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].ffn_norm, 1, D, 0);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].w[PL_PROJ_GATE], 2, F, D);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].w[PL_PROJ_DOWN], 2, D, F);
    for (int l = 0; l < L; l++) TAKE(m->layers[l].w[PL_PROJ_UP], 2, F, D);
    TAKE(m->out_norm, 1, D, 0);
    off += (size_t)(c->seq_len * hs);   /* freq_cis_real + freq_cis_imag: recomputed instead */
    if (c->tied_output) m->output = pl_tensor_retain(m->tok_embd);
    else TAKE(m->output, 2, V, D);
#undef TAKE
    pl_storage_release(s);   /* the tensors hold it now */
    m->format = PL_FORMAT_LLAMA2C;
    return PL_OK;
}

/* ---- GGUF ---- */

static enum pl_status pl_gguf_req_i32(struct pl_gguf *g, const char *arch, const char *key,
                                      int32_t *out)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    uint32_t v;
    enum pl_status st = pl_gguf_get_u32(g, k, &v);
    if (st != PL_OK) return st;
    if (v > (1u << 30)) return pl_fail(PL_ERR_FORMAT, "%s: %s = %u is implausible", pl_gguf_path(g), k, v);
    *out = (int32_t)v;
    return PL_OK;
}

static int32_t pl_gguf_opt_i32(struct pl_gguf *g, const char *arch, const char *key, int32_t dflt)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    uint32_t v = pl_gguf_u32_or(g, k, (uint32_t)dflt);
    return v > (1u << 30) ? dflt : (int32_t)v;
}

static float pl_gguf_opt_f32(struct pl_gguf *g, const char *arch, const char *key, float dflt)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return pl_gguf_f32_or(g, k, dflt);
}

static struct pl_tensor *pl_gguf_get(struct pl_gguf *g, const char *k, int optional)
{
    if (optional && pl_gguf_tensor_find(g, k) < 0) return NULL;
    return pl_gguf_tensor(g, k);
}

static enum pl_status pl_model_load_gguf(struct pl_model *m, const char *path,
                                         const struct pl_model_load_opts *o)
{
    struct pl_gguf *g = NULL;
    enum pl_status st = pl_gguf_open(path, &g);
    if (st != PL_OK) return st;
    const char *arch = pl_gguf_str_or(g, "general.architecture", NULL);
    struct pl_model_config *c = &m->cfg;
    if (!arch) { st = pl_fail(PL_ERR_FORMAT, "%s: no general.architecture in the metadata", path); goto fail; }
    if (strcmp(arch, "llama") == 0) c->arch = PL_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) c->arch = PL_ARCH_QWEN2;
    else {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: unknown architecture '%s' (supported: llama, qwen2)",
                     path, arch);
        goto fail;
    }
    if ((st = pl_gguf_req_i32(g, arch, "block_count", &c->n_layers)) ||
        (st = pl_gguf_req_i32(g, arch, "embedding_length", &c->dim)) ||
        (st = pl_gguf_req_i32(g, arch, "feed_forward_length", &c->hidden_dim)) ||
        (st = pl_gguf_req_i32(g, arch, "attention.head_count", &c->n_heads)))
        goto fail;
    c->n_kv_heads = pl_gguf_opt_i32(g, arch, "attention.head_count_kv", c->n_heads);
    c->seq_len = pl_gguf_opt_i32(g, arch, "context_length", 2048);
    c->rope_base = pl_gguf_opt_f32(g, arch, "rope.freq_base", 10000.0f);
    c->norm_eps = pl_gguf_opt_f32(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f);
    c->head_dim = pl_gguf_opt_i32(g, arch, "attention.key_length", 0);
    c->n_rot = pl_gguf_opt_i32(g, arch, "rope.dimension_count", 0);
    c->rope_layout = c->arch == PL_ARCH_QWEN2 ? PL_ROPE_LAYOUT_HALF : PL_ROPE_LAYOUT_INTERLEAVED;
    c->qkv_bias = c->arch == PL_ARCH_QWEN2;
    c->bos_id = (int32_t)pl_gguf_u32_or(g, "tokenizer.ggml.bos_token_id", (uint32_t)-1);
    c->eos_id = (int32_t)pl_gguf_u32_or(g, "tokenizer.ggml.eos_token_id", (uint32_t)-1);
    if (!(m->tok_embd = pl_gguf_get(g, pl_name_model_tensor(PL_NAME_TOK_EMBD, 1), 0))) { st = PL_ERR_FORMAT; goto fail; }
    if (m->tok_embd->ndim != 2) {
        st = pl_fail(PL_ERR_FORMAT, "%s: %s is not a matrix", path, pl_name_model_tensor(PL_NAME_TOK_EMBD, 1));
        goto fail;
    }
    c->vocab_size = pl_gguf_opt_i32(g, arch, "vocab_size", (int32_t)m->tok_embd->shape[0]);
    if ((st = pl_check_config(path, c))) goto fail;
    if ((int64_t)c->head_dim * c->n_heads != c->dim) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: head size %d x %d heads differs from dim %d", path,
                     c->head_dim, c->n_heads, c->dim);
        goto fail;
    }
    if (c->n_rot != c->head_dim) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: partial rotary embedding (%d of %d dims) not supported",
                     path, c->n_rot, c->head_dim);
        goto fail;
    }
    if ((st = pl_model_alloc_layers(m))) goto fail;
    for (int l = 0; l < c->n_layers; l++) {   /* names: src/model/names.c */
        struct pl_layer *ly = &m->layers[l];
        char k[96], k2[96];
        pl_name_layer_norm(k, sizeof k, l, 0, 1);
        pl_name_layer_norm(k2, sizeof k2, l, 1, 1);
        if (!(ly->attn_norm = pl_gguf_get(g, k, 0)) || !(ly->ffn_norm = pl_gguf_get(g, k2, 0))) {
            st = PL_ERR_FORMAT;
            goto fail;
        }
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            pl_name_proj(k, sizeof k, l, (enum pl_proj)p, 0, 1);
            if (!(ly->w[p] = pl_gguf_get(g, k, 0))) { st = PL_ERR_FORMAT; goto fail; }
            if (c->qkv_bias && p <= PL_PROJ_V) {
                pl_name_proj(k, sizeof k, l, (enum pl_proj)p, 1, 1);
                if (!(ly->b[p] = pl_gguf_get(g, k, 0))) { st = PL_ERR_FORMAT; goto fail; }
            }
        }
    }
    if (!(m->out_norm = pl_gguf_get(g, pl_name_model_tensor(PL_NAME_OUT_NORM, 1), 0))) { st = PL_ERR_FORMAT; goto fail; }
    m->output = pl_gguf_get(g, pl_name_model_tensor(PL_NAME_OUTPUT, 1), 1);
    c->tied_output = m->output == NULL;
    if (!m->output) m->output = pl_tensor_retain(m->tok_embd);
    const char *name = pl_gguf_str_or(g, "general.name", NULL);
    if (name) { pl_free(m->name); m->name = pl_model_strdup(name); }
    {   /* where the weights came from, as a Hugging Face id: "org/name" */
        const char *src = pl_gguf_str_or(g, "general.source.huggingface.repository", NULL);
        if (!src) src = pl_gguf_str_or(g, "general.base_model.0.repo_url", NULL);
        if (src) {
            static const char *const pre[] = { "https://huggingface.co/", "http://huggingface.co/", "huggingface.co/" };
            for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
                if (strncmp(src, pre[i], strlen(pre[i])) == 0) { src += strlen(pre[i]); break; }
            if (*src) m->source_id = pl_model_strdup(src);
        }
    }
    const char *tmpl = pl_gguf_str_or(g, "tokenizer.chat_template", NULL);
    if (tmpl) m->chat_template = pl_model_strdup(tmpl);
    if (!o->tokenizer && !o->no_tokenizer) {
        if (!pl_gguf_str_or(g, "tokenizer.ggml.model", NULL)) {
            st = pl_fail(PL_ERR_FORMAT, "%s: no tokenizer in the file (tokenizer.ggml.model missing); "
                         "pass a tokenizer path", path);
            goto fail;
        }
        if ((st = pl_tokenizer_load_gguf(&m->tok, path))) goto fail;
        m->tokenizer_path = pl_model_strdup(path);
    }
    m->format = PL_FORMAT_GGUF;
    pl_gguf_close(g);   /* the tensors keep the mapping alive */
    return PL_OK;
fail:
    pl_gguf_close(g);
    return st;
}

/* ---- safetensors + config.json ---- */

static enum pl_status pl_json_req_i32(const struct pl_json *j, const char *file, const char *key,
                                      int32_t *out)
{
    struct pl_json *v = pl_json_get(j, key);
    if (!v || pl_json_type(v) != PL_JSON_NUMBER)
        return pl_fail(PL_ERR_FORMAT, "%s: missing number \"%s\"", file, key);
    double d = pl_json_num(v, -1);
    if (d < 0 || d > (1 << 30) || d != (double)(int32_t)d)
        return pl_fail(PL_ERR_FORMAT, "%s: \"%s\" = %g is not a valid count", file, key, d);
    *out = (int32_t)d;
    return PL_OK;
}

static enum pl_status pl_model_load_safetensors(struct pl_model *m, const char *path,
                                                const struct pl_model_load_opts *o)
{
    char dir[4096], cfgpath[4200], tokpath[4200];
    int isdir = pl_dir_exists(path);
    snprintf(dir, sizeof dir, "%s", path);
    if (!isdir) {
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0; else snprintf(dir, sizeof dir, ".");
    }
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
    if (!pl_file_exists(cfgpath))
        return pl_fail(PL_ERR_IO, "%s: no config.json next to the safetensors (looked for %s)", path,
                       cfgpath);
    struct pl_json *j = pl_json_parse_file(cfgpath);
    if (!j) return PL_ERR_FORMAT;
    struct pl_model_config *c = &m->cfg;
    enum pl_status st;
    struct pl_safetensors *sf = NULL;
    const char *mt = pl_json_get_str(j, "model_type");
    if (!mt) { st = pl_fail(PL_ERR_FORMAT, "%s: no \"model_type\"", cfgpath); goto done; }
    if (!strcmp(mt, "llama") || !strcmp(mt, "mistral")) c->arch = PL_ARCH_LLAMA;
    else if (!strcmp(mt, "qwen2")) c->arch = PL_ARCH_QWEN2;
    else {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: unknown architecture '%s' (supported: llama, mistral, qwen2)",
                     cfgpath, mt);
        goto done;
    }
    if ((st = pl_json_req_i32(j, cfgpath, "hidden_size", &c->dim)) ||
        (st = pl_json_req_i32(j, cfgpath, "intermediate_size", &c->hidden_dim)) ||
        (st = pl_json_req_i32(j, cfgpath, "num_hidden_layers", &c->n_layers)) ||
        (st = pl_json_req_i32(j, cfgpath, "num_attention_heads", &c->n_heads)) ||
        (st = pl_json_req_i32(j, cfgpath, "vocab_size", &c->vocab_size)))
        goto done;
    /* optional fields: integers checked before any cast, floats kept finite */
    static const struct { const char *key; int64_t lo, hi, dflt; } opt[] = {
        { "num_key_value_heads", 1, 1 << 20, -1 }, { "head_dim", 0, 1 << 16, 0 },
        { "max_position_embeddings", 0, 1 << 24, 2048 },
        { "bos_token_id", -1, (1 << 24) - 1, -1 }, { "eos_token_id", -1, (1 << 24) - 1, -1 },
    };
    int64_t ov[5];
    for (int k = 0; k < 5; k++) {
        const struct pl_json *v = pl_json_get(j, opt[k].key);
        if (pl_json_type(v) != PL_JSON_NUMBER) v = NULL;   /* other types: the default, as before */
        if (pl_json_int(v, opt[k].lo, opt[k].hi, opt[k].dflt, &ov[k]) < 0) {
            st = pl_fail(PL_ERR_FORMAT, "%s: \"%s\" must be an integer in [%lld, %lld]", cfgpath, opt[k].key,
                         (long long)opt[k].lo, (long long)opt[k].hi);
            goto done;
        }
    }
    c->n_kv_heads = ov[0] < 0 ? c->n_heads : (int32_t)ov[0];
    c->head_dim = (int32_t)ov[1];
    c->seq_len = (int32_t)ov[2];
    c->bos_id = (int32_t)ov[3];
    c->eos_id = (int32_t)ov[4];
    double rb = pl_json_get_num(j, "rope_theta", 10000.0), ne = pl_json_get_num(j, "rms_norm_eps", 1e-5);
    if (!(rb > 0 && rb < 1e30) || !(ne > 0 && ne < 1)) {
        st = pl_fail(PL_ERR_FORMAT, "%s: \"rope_theta\" must be a positive number and \"rms_norm_eps\" in (0, 1)", cfgpath);
        goto done;
    }
    c->rope_base = (float)rb;
    c->norm_eps = (float)ne;
    c->rope_layout = PL_ROPE_LAYOUT_HALF;   /* HF checkpoints rotate halves (rotate_half) */
    c->qkv_bias = c->arch == PL_ARCH_QWEN2;
    struct pl_json *tie = pl_json_get(j, "tie_word_embeddings");
    c->tied_output = tie ? pl_json_bool(tie, 0) : 0;
    if ((st = pl_check_config(cfgpath, c))) goto done;
    if ((int64_t)c->head_dim * c->n_heads != c->dim) {
        st = pl_fail(PL_ERR_UNSUPPORTED, "%s: head_dim %d x %d heads differs from hidden_size %d",
                     cfgpath, c->head_dim, c->n_heads, c->dim);
        goto done;
    }
    if ((st = pl_safetensors_open(path, &sf))) goto done;
    if (c->tied_output == 0 && pl_safetensors_find(sf, pl_name_model_tensor(PL_NAME_OUTPUT, 0)) < 0) c->tied_output = 1;
    if ((st = pl_model_alloc_layers(m))) goto done;
    int np = pl_model_n_params(m);
    for (int i = 0; i < np; i++) {
        char name[128];
        struct pl_tensor **slot = pl_model_param(m, i, name, sizeof name);
        if (!(*slot = pl_safetensors_tensor(sf, name))) { st = PL_ERR_FORMAT; goto done; }
    }
    if (c->tied_output) m->output = pl_tensor_retain(m->tok_embd);
    /* Norms and biases in f16/bf16 checkpoints are converted to f32 once (they are tiny). */
    for (int i = 0; i < np; i++) {
        struct pl_tensor **slot = pl_model_param(m, i, NULL, 0);
        if ((*slot)->ndim == 1 && (*slot)->dtype != PL_F32) {
            struct pl_tensor *t = pl_tensor_convert(*slot, PL_F32, PL_MEM_WEIGHTS);
            if (!t) { st = PL_ERR_NOMEM; goto done; }
            pl_tensor_release(*slot);
            *slot = t;
        }
    }
    if (!o->tokenizer && !o->no_tokenizer) {
        snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", dir);
        if (!pl_file_exists(tokpath)) {
            st = pl_fail(PL_ERR_IO, "%s: no tokenizer (looked for %s); pass a tokenizer path", path,
                         tokpath);
            goto done;
        }
        if ((st = pl_tokenizer_load_hf(&m->tok, tokpath))) goto done;
        m->tokenizer_path = pl_model_strdup(tokpath);
    }
    if (m->tok && pl_tokenizer_chat_template(m->tok))
        m->chat_template = pl_model_strdup(pl_tokenizer_chat_template(m->tok));
    m->format = PL_FORMAT_SAFETENSORS;
    st = PL_OK;
done:
    pl_safetensors_close(sf);
    pl_json_free(j);
    return st;
}

/* ---- entry point ---- */

static enum pl_status pl_model_find_llama2c_tokenizer(const char *path, int vocab, char *out,
                                                      size_t n)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0; else snprintf(dir, sizeof dir, ".");
    snprintf(out, n, "%s/tok%d.bin", dir, vocab);
    if (pl_file_exists(out)) return PL_OK;
    snprintf(out, n, "%s/tokenizer.bin", dir);
    if (pl_file_exists(out)) return PL_OK;
    return pl_fail(PL_ERR_IO, "%s: missing tokenizer (no tok%d.bin or tokenizer.bin beside it); "
                   "pass {tokenizer = path}", path, vocab);
}

enum pl_status pl_model_load(struct pl_model **out, const char *path,
                             const struct pl_model_load_opts *opts)
{
    static const struct pl_model_load_opts none = { 0 };
    const struct pl_model_load_opts *o = opts ? opts : &none;
    *out = NULL;
    if (!path || !*path) return pl_fail(PL_ERR_ARG, "model: empty path");
    int isdir = pl_dir_exists(path);
    if (!isdir && !pl_file_exists(path))
        return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    char magic[4] = { 0 };
    if (!isdir) {
        FILE *f = fopen(path, "rb");
        if (!f) return pl_fail(PL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        (void)got;
    }
    struct pl_model *m = pl_model_alloc(path);
    if (!m) return PL_ERR_NOMEM;
    enum pl_status st;
    if (isdir || pl_ends_with(path, ".safetensors") || pl_ends_with(path, ".index.json"))
        st = pl_model_load_safetensors(m, path, o);
    else if (memcmp(magic, "GGUF", 4) == 0 || pl_ends_with(path, ".gguf"))
        st = pl_model_load_gguf(m, path, o);
    else if (pl_ends_with(path, ".bin"))
        st = pl_model_load_llama2c(m, path);
    else
        st = pl_fail(PL_ERR_FORMAT, "%s: not a model file (expected a .gguf, a llama2.c .bin, a "
                     ".safetensors or a directory with config.json)", path);
    if (st == PL_OK && m->format == PL_FORMAT_LLAMA2C && !o->tokenizer && !o->no_tokenizer) {
        char tp[4200];
        st = pl_model_find_llama2c_tokenizer(path, m->cfg.vocab_size, tp, sizeof tp);
        if (st == PL_OK) st = pl_tokenizer_load_llama2c(&m->tok, tp);
        if (st == PL_OK) m->tokenizer_path = pl_model_strdup(tp);
    }
    if (st == PL_OK && o->tokenizer && !o->no_tokenizer) {
        st = pl_tokenizer_load(&m->tok, o->tokenizer);
        if (st == PL_OK) m->tokenizer_path = pl_model_strdup(o->tokenizer);
    }
    if (st == PL_OK && m->tok && pl_tokenizer_n_vocab(m->tok) > m->cfg.vocab_size)
        st = pl_fail(PL_ERR_FORMAT, "%s: the tokenizer has %d tokens, the model only %d", path,
                     pl_tokenizer_n_vocab(m->tok), m->cfg.vocab_size);
    if (st == PL_OK && m->tok) {
        if (m->cfg.bos_id < 0) m->cfg.bos_id = pl_tokenizer_bos(m->tok);
        if (m->cfg.eos_id < 0) m->cfg.eos_id = pl_tokenizer_eos(m->tok);
        if (!m->chat_template && pl_tokenizer_chat_template(m->tok))
            m->chat_template = pl_model_strdup(pl_tokenizer_chat_template(m->tok));
    }
    if (st == PL_OK) st = pl_check_weights(m);
    if (st == PL_OK) st = pl_check_finite(m);
    if (st != PL_OK) {
        pl_model_free(m);
        return st;
    }
    *out = m;
    return PL_OK;
}

/* ---- model card ---- */

void pl_model_card(const struct pl_model *m, struct pl_model_card *card)
{
    static const char *const fmts[] = { "gguf", "llama2.c", "safetensors" };
    memset(card, 0, sizeof *card);
    card->arch = m->cfg.arch == PL_ARCH_QWEN2 ? "qwen2" : "llama";
    card->format = fmts[m->format];
    card->path = m->path;
    card->name = m->name;
    card->n_params = pl_model_param_count(m);
    int np = pl_model_n_params(m);
    for (int i = 0; i < np; i++) {
        struct pl_tensor **slot = pl_model_param((struct pl_model *)m, i, NULL, 0);
        if (!slot || !*slot) continue;
        card->dtype_count[(*slot)->dtype]++;
        card->weight_bytes += (int64_t)pl_tensor_nbytes(*slot);
    }
    card->context_length = m->cfg.seq_len;
    card->vocab_size = m->cfg.vocab_size;
    card->n_layers = m->cfg.n_layers;
    card->dim = m->cfg.dim;
    card->hidden_dim = m->cfg.hidden_dim;
    card->n_heads = m->cfg.n_heads;
    card->n_kv_heads = m->cfg.n_kv_heads;
    card->rope_base = m->cfg.rope_base;
    card->norm_eps = m->cfg.norm_eps;
    card->tied_output = m->cfg.tied_output;
    card->chat_family = pl_chat_family_name(m->chat_template ? pl_chat_detect(m->chat_template)
                                                             : PL_CHAT_NONE);
    card->tokenizer_path = m->tokenizer_path;
}
