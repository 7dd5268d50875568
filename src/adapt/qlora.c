/* qlora.c — QLoRA frozen bases: projections re-stored as NF4 / Q8_0 / bf16 / f16 row by row,
 * and Llama-shaped models with random quantised weights generated in place.
 *
 * Owner: memory. Contract: include/peftlua/qlora.h. Block layouts are quant.c's:
 *   NF4    64 elements, 36 bytes: f32 s | 32 bytes of code pairs (low nibble = even element)
 *          x = s · NF4[q]  (bitsandbytes' 16 NormalFloat values)
 *   NF4_32 32 elements, 18 bytes: f16 s | 16 bytes of code pairs
 *   NF4_DQ 64-element blocks of int8 c | 32 bytes of code pairs, then per 256 blocks f32 g, mu:
 *          s = mu + g·c (double quantisation; the whole tensor is one unit)
 *   Q8_0   32 elements, 34 bytes: f16 d | 32 int8 q,  x = d · q
 * The NF4 block scale is the least-squared-error one of a small set (quant.c pl_nf4_fit) unless
 * the caller asks for bitsandbytes' absmax.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "peftlua/alloc.h"
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
#endif
#include "peftlua/qlora.h"
#include "peftlua/quant.h"
#include "peftlua/rng.h"

/* A copy of t in its own heap storage (same dtype), or NULL with the error set. */
static struct pl_tensor *own_copy(const struct pl_tensor *t)
{
    return pl_tensor_convert(t, t->dtype, PL_MEM_WEIGHTS);
}

/* t is a view into a larger heap allocation (the llama2.c loader's one storage). */
static int is_shared_view(const struct pl_tensor *t)
{
    return t && !t->storage->release && t->storage->nbytes > pl_tensor_nbytes(t);
}

static enum pl_status restore(struct pl_tensor **slot, struct pl_tensor *nt)
{
    if (!nt) return PL_ERR_NOMEM;
    pl_tensor_release(*slot);
    *slot = nt;
    return PL_OK;
}

static enum pl_status quant_row(enum pl_dtype dt, const float *x, void *dst, int64_t n, enum pl_nf4_scale how)
{
    if (dt == PL_NF4 || dt == PL_NF4_32) return pl_quant_row_nf4(dt, x, dst, n, how);
    return pl_quant_row(dt, x, dst, n);
}

/* w (any dtype) re-stored into q (same shape) row by row; rows holds nth rows of `wide`
 * floats, twice (source, and the re-stored row read back for the error sums). */
static enum pl_status convert(const struct pl_tensor *w, struct pl_tensor *q, enum pl_nf4_scale how,
                              float *rows, int64_t wide, int nth, struct pl_qlora_stats *stats)
{
    const enum pl_dtype dt = q->dtype;
    const int64_t out = w->shape[0], in = w->shape[1], total = out * in;
    const size_t rb_out = pl_dtype_row_bytes(dt, in);
    const uint8_t *src = pl_tensor_data(w);
    uint8_t *dst = pl_tensor_data(q);
    /* the formats are checked on row 0 first; then rows are independent */
    enum pl_status st = pl_dequant_part(w->dtype, src, total, 0, rows, in);
    if (st != PL_OK) return st;
    double err2 = 0.0, ref2 = 0.0;
    if (dt == PL_NF4_DQ) {
        /* pass 1: every block's scale; the group table then needs them all (groups of 256
         * blocks run across rows); pass 2: the codes against the scales as stored */
        const int64_t nbr = in / 64, nb = total / 64;
        float *sc = pl_alloc((size_t)nb * sizeof(float), PL_MEM_WORKSPACE);
        if (!sc) return pl_fail(PL_ERR_NOMEM, "out of memory for %lld nf4_dq scales", (long long)nb);
        #pragma omp parallel for schedule(static) num_threads(nth) if(total > 65536)
        for (int64_t r = 0; r < out; r++) {
            float *row = rows + (size_t)omp_get_thread_num() * (size_t)wide * 2;
            pl_dequant_part(w->dtype, src, total, r * in, row, in);
            for (int64_t b = 0; b < nbr; b++) sc[r * nbr + b] = pl_nf4_fit(row + 64 * b, 64, how, 0);
        }
        pl_nf4dq_pack_scales(sc, nb, dst);
        pl_free(sc);
        #pragma omp parallel for schedule(static) num_threads(nth) if(total > 65536) reduction(+:err2, ref2)
        for (int64_t r = 0; r < out; r++) {
            float *row = rows + (size_t)omp_get_thread_num() * (size_t)wide * 2, *back = row + wide;
            pl_dequant_part(w->dtype, src, total, r * in, row, in);
            pl_nf4dq_codes(row, in, dst, nb, r * nbr);
            pl_dequant_part(dt, dst, total, r * in, back, in);
            for (int64_t j = 0; j < in; j++) {
                const double d = (double)back[j] - row[j];
                err2 += d * d;
                ref2 += (double)row[j] * row[j];
            }
        }
    } else {
        if ((st = quant_row(dt, rows, dst, in, how)) != PL_OK) return st;
        #pragma omp parallel for schedule(static) num_threads(nth) if(total > 65536) reduction(+:err2, ref2)
        for (int64_t r = 0; r < out; r++) {
            float *row = rows + (size_t)omp_get_thread_num() * (size_t)wide * 2, *back = row + wide;
            pl_dequant_part(w->dtype, src, total, r * in, row, in);
            quant_row(dt, row, dst + (size_t)r * rb_out, in, how);
            pl_dequant_row(dt, dst + (size_t)r * rb_out, back, in);
            for (int64_t j = 0; j < in; j++) {
                const double d = (double)back[j] - row[j];
                err2 += d * d;
                ref2 += (double)row[j] * row[j];
            }
        }
    }
    stats->elements += total;
    stats->err2 += err2;
    stats->ref2 += ref2;
    return PL_OK;
}

/* The token embedding and the output head (one tensor when tied): re-stored as
 * opts->embed_dtype when asked, else copied off a shared llama2.c storage. */
static enum pl_status restore_embed(struct pl_model *m, const struct pl_qlora_opts *opts,
                                    enum pl_nf4_scale how, float *rows, int64_t wide, int nth,
                                    struct pl_qlora_stats *stats)
{
    const int tied = m->output == m->tok_embd;
    struct pl_tensor **slots[2] = { &m->tok_embd, &m->output };
    for (int i = 0; i < (tied ? 1 : 2); i++) {
        struct pl_tensor *w = *slots[i], *nt;
        if (opts && opts->embed_set && w->dtype != opts->embed_dtype) {
            if (w->ndim != 2 || w->shape[1] > wide)
                return pl_fail(PL_ERR_ARG, "qlora: the %s is not a [vocab, dim] matrix", i ? "output head" : "token embedding");
            if (!(nt = pl_tensor_new(opts->embed_dtype, 2, w->shape, PL_MEM_WEIGHTS))) return PL_ERR_NOMEM;
            struct pl_qlora_stats es;
            memset(&es, 0, sizeof es);
            enum pl_status st = convert(w, nt, how, rows, wide, nth, &es);
            if (st != PL_OK) {
                pl_tensor_release(nt);
                return pl_fail(st, "qlora: %s: %s", i ? "output head" : "token embedding", pl_last_error());
            }
            stats->embed_converted++;
            stats->embed_bytes_before += (int64_t)pl_tensor_nbytes(w);
            stats->embed_bytes_after += (int64_t)pl_tensor_nbytes(nt);
            stats->embed_err2 += es.err2;
            stats->embed_ref2 += es.ref2;
        } else if (is_shared_view(w)) {
            if (!(nt = own_copy(w))) return PL_ERR_NOMEM;
        } else {
            continue;
        }
        if (tied) { pl_tensor_release(m->output); m->output = pl_tensor_retain(nt); }
        pl_tensor_release(*slots[i]);
        *slots[i] = nt;
    }
    return PL_OK;
}

enum pl_status pl_qlora_quantize(struct pl_model *m, enum pl_dtype dtype, uint32_t targets,
                                 struct pl_qlora_stats *stats)
{
    return pl_qlora_quantize_opts(m, dtype, targets, NULL, stats);
}

enum pl_status pl_qlora_quantize_opts(struct pl_model *m, enum pl_dtype dtype, uint32_t targets,
                                      const struct pl_qlora_opts *opts, struct pl_qlora_stats *stats)
{
    struct pl_qlora_stats z;
    if (!stats) stats = &z;
    memset(stats, 0, sizeof *stats);
    const enum pl_nf4_scale how = opts ? opts->nf4_scale : PL_NF4_SCALE_MSE;
    if ((int)dtype < 0 || dtype >= PL_DTYPE_COUNT)
        return pl_fail(PL_ERR_ARG, "qlora: unknown dtype %d", (int)dtype);
    if (dtype != PL_NF4 && dtype != PL_NF4_32 && dtype != PL_NF4_DQ && dtype != PL_Q8_0 &&
        dtype != PL_BF16 && dtype != PL_F16 && dtype != PL_F32)
        return pl_fail(PL_ERR_ARG, "qlora: %s: the frozen base can be nf4, nf4_32, nf4_dq, q8_0, bf16, f16 or f32, not %s",
                       m->path ? m->path : "model", pl_dtype_info(dtype)->name);
    if (how != PL_NF4_SCALE_MSE && how != PL_NF4_SCALE_ABSMAX)
        return pl_fail(PL_ERR_ARG, "qlora: unknown nf4 scale rule %d", (int)how);
    if (m->linear_hook)
        return pl_fail(PL_ERR_STATE, "qlora: %s: quantise the base before attaching adapters",
                       m->path ? m->path : "model");
    if (opts && opts->embed_set) {
        const enum pl_dtype ed = opts->embed_dtype;
        if (ed != PL_Q8_0 && ed != PL_BF16 && ed != PL_F16 && ed != PL_F32)
            return pl_fail(PL_ERR_ARG, "qlora: %s: the embedding and output head can be re-stored as q8_0, bf16, f16 or f32, not %s",
                           m->path ? m->path : "model", (int)ed >= 0 && ed < PL_DTYPE_COUNT ? pl_dtype_info(ed)->name : "?");
        if (m->cfg.dim % pl_dtype_info(ed)->block)
            return pl_fail(PL_ERR_ARG, "qlora: %s: embedding rows of %d elements are not a whole number of %s blocks of %d; keep the embedding as loaded",
                           m->path ? m->path : "model", m->cfg.dim, pl_dtype_info(ed)->name, pl_dtype_info(ed)->block);
    }
    if (!targets) targets = (1u << PL_PROJ_COUNT) - 1;
    const int64_t blk = pl_dtype_info(dtype)->block;
    const struct pl_model_config *c = &m->cfg;
    int64_t wide = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    int64_t hd = (int64_t)c->n_heads * c->head_dim;
    if (hd > wide) wide = hd;
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    float *rows = pl_alloc((size_t)nth * (size_t)wide * 2 * sizeof(float), PL_MEM_WORKSPACE);
    if (!rows) return pl_fail(PL_ERR_NOMEM, "qlora: out of memory for %d rows of %lld floats", nth, (long long)wide);
    enum pl_status st = PL_OK;
    for (int l = 0; l < c->n_layers && st == PL_OK; l++) {
        struct pl_layer *ly = &m->layers[l];
        for (int p = 0; p < PL_PROJ_COUNT && st == PL_OK; p++) {
            struct pl_tensor *w = ly->w[p];
            int64_t in = w->shape[1];
            if (!(targets & (1u << p)) || w->dtype == dtype || in % blk != 0 || in > wide) {
                if (w->dtype != dtype) stats->kept++;
                if (is_shared_view(w)) st = restore(&ly->w[p], own_copy(w));
                continue;
            }
            struct pl_tensor *q = pl_tensor_new(dtype, 2, w->shape, PL_MEM_WEIGHTS);
            if (!q) { st = PL_ERR_NOMEM; break; }
            st = convert(w, q, how, rows, wide, nth, stats);
            if (st != PL_OK) {
                pl_tensor_release(q);
                st = pl_fail(st, "qlora: layer %d %s: %s", l, pl_proj_names[p], pl_last_error());
                break;
            }
            stats->bytes_before += (int64_t)pl_tensor_nbytes(w);
            stats->bytes_after += (int64_t)pl_tensor_nbytes(q);
            stats->converted++;
            pl_tensor_release(w);
            ly->w[p] = q;
        }
        if (st != PL_OK) break;
        /* norms and biases off a shared allocation */
        if (is_shared_view(ly->attn_norm)) st = restore(&ly->attn_norm, own_copy(ly->attn_norm));
        if (st == PL_OK && is_shared_view(ly->ffn_norm)) st = restore(&ly->ffn_norm, own_copy(ly->ffn_norm));
        for (int p = 0; p < PL_PROJ_COUNT && st == PL_OK; p++)
            if (is_shared_view(ly->b[p])) st = restore(&ly->b[p], own_copy(ly->b[p]));
    }
    if (st == PL_OK && is_shared_view(m->out_norm)) st = restore(&m->out_norm, own_copy(m->out_norm));
    if (st == PL_OK) st = restore_embed(m, opts, how, rows, wide, nth, stats);
    pl_free(rows);
    if (st == PL_ERR_NOMEM && pl_last_error()[0] == 0)
        pl_fail(st, "qlora: out of memory re-storing the base");
    return st;
}

/* ---------------------------------------------------------------- random models */

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Fill rows [0, rows) of a quantised tensor with random blocks; each row from its own
 * stream so the result does not depend on the thread count. NF4_DQ (one unit per tensor):
 * each block's int8 scale code and its 32 code bytes per row, then the group table (every
 * group the same step and mean, so the scales span the same range as NF4's). */
static void fill_random_blocks(struct pl_tensor *t, uint64_t seed)
{
    const enum pl_dtype dt = t->dtype;
    const int64_t rows = t->shape[0], in = t->shape[1];
    const int dq = dt == PL_NF4_DQ;
    const int64_t bb = pl_dtype_info(dt)->block_bytes;
    const int64_t nb = in / pl_dtype_info(dt)->block;
    const size_t rb = (size_t)(nb * bb);
    uint8_t *d = pl_tensor_data(t);
    /* weights of std ~0.02: NF4 codes span [-1, 1] → absmax ≈ 0.02·2.5; Q8_0 d = absmax/127 */
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        uint64_t s = mix64(seed ^ mix64((uint64_t)r));
        uint8_t *p = d + (size_t)r * rb;
        for (int64_t b = 0; b < nb; b++, p += bb) {
            s = mix64(s);
            float amax = 0.04f + 0.02f * (float)((s >> 40) & 0xFFFF) / 65536.0f;
            int64_t k = 0;
            if (dt == PL_NF4) { memcpy(p, &amax, 4); k = 4; }
            else if (dq) { p[0] = (uint8_t)(int8_t)((int)((s >> 40) & 0xFF) % 255 - 127); k = 1; }
            else { uint16_t h = pl_f32_to_f16(amax / 127.0f); memcpy(p, &h, 2); k = 2; }
            for (; k < bb; k += 8) {
                s = mix64(s);
                size_t n = (size_t)(bb - k) < 8 ? (size_t)(bb - k) : 8;
                memcpy(p + k, &s, n);
            }
        }
    }
    if (dq) {   /* s = mu + g·c with c in [-127, 127]: s in [0.04, 0.06] */
        const int64_t nbt = rows * nb, ng = (nbt + PL_NF4_DQ_GROUP - 1) / PL_NF4_DQ_GROUP;
        const float gm[2] = { 0.01f / 127.0f, 0.05f };
        for (int64_t g = 0; g < ng; g++) memcpy(d + (size_t)nbt * 33 + (size_t)g * 8, gm, 8);
    }
}

/* Random values of scale `scale` (uniform), row by row from each row's own stream; q8_0
 * rows are those f32 values quantised. */
static enum pl_status fill_random_float(struct pl_tensor *t, uint64_t seed, float scale)
{
    const int64_t rows = t->shape[0], in = t->ndim > 1 ? t->shape[1] : 1;
    const enum pl_dtype dt = t->dtype;
    uint8_t *d = pl_tensor_data(t);
    const size_t rb = pl_dtype_row_bytes(dt, in);
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    float *buf = pl_alloc((size_t)nth * (size_t)in * sizeof(float), PL_MEM_WORKSPACE);
    if (!buf) return PL_ERR_NOMEM;
    #pragma omp parallel for schedule(static) num_threads(nth)
    for (int64_t r = 0; r < rows; r++) {
        float *f = buf + (size_t)omp_get_thread_num() * (size_t)in;
        uint64_t s = mix64(seed ^ mix64((uint64_t)r + 0x5151));
        for (int64_t i = 0; i < in; i++) {
            s = mix64(s);
            f[i] = scale * (float)(((double)(s >> 11) * 0x1.0p-53) * 2.0 - 1.0);
        }
        uint8_t *p = d + (size_t)r * rb;
        if (dt == PL_F32) memcpy(p, f, (size_t)in * 4);
        else if (dt == PL_Q8_0) pl_quant_row(dt, f, p, in);
        else
            for (int64_t i = 0; i < in; i++) {
                uint16_t h = dt == PL_BF16 ? pl_f32_to_bf16(f[i]) : pl_f32_to_f16(f[i]);
                memcpy(p + 2 * i, &h, 2);
            }
    }
    pl_free(buf);
    return PL_OK;
}

static struct pl_tensor *ones(int64_t n)
{
    struct pl_tensor *t = pl_tensor_new(PL_F32, 1, &n, PL_MEM_WEIGHTS);
    if (t) { float *f = pl_tensor_data(t); for (int64_t i = 0; i < n; i++) f[i] = 1.0f; }
    return t;
}

enum pl_status pl_qlora_random_model(struct pl_model **out, const struct pl_model_config *cfg,
                                     enum pl_dtype dtype, enum pl_dtype embd_dtype, uint64_t seed)
{
    *out = NULL;
    if (dtype != PL_NF4 && dtype != PL_NF4_DQ && dtype != PL_Q8_0)
        return pl_fail(PL_ERR_ARG, "qlora: random model weights can be nf4, nf4_dq or q8_0, not %s",
                       pl_dtype_info(dtype)->name);
    if (embd_dtype != PL_F32 && embd_dtype != PL_F16 && embd_dtype != PL_BF16 && embd_dtype != PL_Q8_0)
        return pl_fail(PL_ERR_ARG, "qlora: random model embeddings can be f32, f16, bf16 or q8_0, not %s",
                       pl_dtype_info(embd_dtype)->name);
    if (cfg->dim % pl_dtype_info(embd_dtype)->block)
        return pl_fail(PL_ERR_ARG, "qlora: random model: dim %d is not a whole number of %s blocks of %d",
                       cfg->dim, pl_dtype_info(embd_dtype)->name, pl_dtype_info(embd_dtype)->block);
    const int64_t blk = pl_dtype_info(dtype)->block;
    const int64_t D = cfg->dim, F = cfg->hidden_dim, Hd = (int64_t)cfg->n_heads * cfg->head_dim;
    const int64_t KV = (int64_t)cfg->n_kv_heads * cfg->head_dim, V = cfg->vocab_size;
    if (D <= 0 || F <= 0 || cfg->n_layers <= 0 || cfg->n_heads <= 0 || cfg->n_kv_heads <= 0 ||
        cfg->head_dim <= 0 || V <= 0 || cfg->n_heads % cfg->n_kv_heads != 0)
        return pl_fail(PL_ERR_ARG, "qlora: random model: invalid shape (dim %d, hidden %d, layers %d, heads %d/%d)",
                       cfg->dim, cfg->hidden_dim, cfg->n_layers, cfg->n_heads, cfg->n_kv_heads);
    if (D % blk || F % blk || Hd % blk)
        return pl_fail(PL_ERR_ARG, "qlora: random model: dim %lld, hidden %lld and heads x head_dim %lld must be multiples of %s's block of %lld",
                       (long long)D, (long long)F, (long long)Hd, pl_dtype_info(dtype)->name, (long long)blk);
    struct pl_model *m = pl_calloc(1, sizeof *m, PL_MEM_DATA);
    if (!m) return pl_fail(PL_ERR_NOMEM, "qlora: out of memory");
    m->cfg = *cfg;
    m->cfg.tied_output = 0;
    m->cfg.qkv_bias = 0;
    if (m->cfg.n_rot <= 0) m->cfg.n_rot = cfg->head_dim;
    if (m->cfg.seq_len <= 0) m->cfg.seq_len = 4096;
    if (m->cfg.rope_base <= 0) m->cfg.rope_base = 10000.0f;
    if (m->cfg.norm_eps <= 0) m->cfg.norm_eps = 1e-5f;
    m->format = PL_FORMAT_GGUF;
    char name[64];
    snprintf(name, sizeof name, "random-%s-%dx%d", pl_dtype_info(dtype)->name, cfg->n_layers, cfg->dim);
    m->name = pl_strdup(name, PL_MEM_DATA);
    m->path = pl_strdup(name, PL_MEM_DATA);
    m->layers = pl_calloc((size_t)cfg->n_layers, sizeof *m->layers, PL_MEM_DATA);
    if (!m->name || !m->path || !m->layers) goto nomem;
    int64_t es[2] = { V, D };
    if (!(m->tok_embd = pl_tensor_new(embd_dtype, 2, es, PL_MEM_WEIGHTS)) ||
        fill_random_float(m->tok_embd, seed ^ 0xE11Bull, 0.02f * 1.7320508f) != PL_OK) goto nomem;
    if (!(m->output = pl_tensor_new(embd_dtype, 2, es, PL_MEM_WEIGHTS)) ||
        fill_random_float(m->output, seed ^ 0x0A7ull, 0.02f * 1.7320508f) != PL_OK) goto nomem;
    if (!(m->out_norm = ones(D))) goto nomem;
    for (int l = 0; l < cfg->n_layers; l++) {
        struct pl_layer *ly = &m->layers[l];
        if (!(ly->attn_norm = ones(D)) || !(ly->ffn_norm = ones(D))) goto nomem;
        for (int p = 0; p < PL_PROJ_COUNT; p++) {
            int64_t sh[2];
            switch (p) {
            case PL_PROJ_Q: sh[0] = Hd; sh[1] = D; break;
            case PL_PROJ_K: case PL_PROJ_V: sh[0] = KV; sh[1] = D; break;
            case PL_PROJ_O: sh[0] = D; sh[1] = Hd; break;
            case PL_PROJ_GATE: case PL_PROJ_UP: sh[0] = F; sh[1] = D; break;
            default: sh[0] = D; sh[1] = F; break;
            }
            if (!(ly->w[p] = pl_tensor_new(dtype, 2, sh, PL_MEM_WEIGHTS))) goto nomem;
            fill_random_blocks(ly->w[p], mix64(seed + (uint64_t)l * 16 + (uint64_t)p));
        }
    }
    *out = m;
    return PL_OK;
nomem:
    pl_model_free(m);
    return pl_fail(PL_ERR_NOMEM, "qlora: out of memory for a random %d-layer %s model",
                   cfg->n_layers, pl_dtype_info(dtype)->name);
}
