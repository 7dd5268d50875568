/* tensor.c — refcounted storage, tensor views, conversion and f32 arithmetic (see tensor.h).
 *
 * Ownership: a storage is shared by every tensor viewing it (refcount); a tensor is owned by
 * whoever holds a reference (the Lua userdata, a model, a trainer). Arithmetic here is the
 * convenience layer for Lua and tests (results are new contiguous f32 tensors); the hot paths
 * of training use the planned-buffer kernels in kernels.h instead.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "peftlua/blas.h"
#include "peftlua/quant.h"
#include "peftlua/tensor.h"

/* ---------------- storage ---------------- */

struct pl_storage *pl_storage_new(size_t nbytes, enum pl_mem_cat cat)
{
    struct pl_storage *s = pl_calloc(1, sizeof *s, PL_MEM_DATA);
    if (!s) { pl_fail(PL_ERR_NOMEM, "out of memory allocating a storage header"); return NULL; }
    s->data = pl_calloc(1, nbytes ? nbytes : 1, cat);
    if (!s->data) {
        pl_free(s);
        pl_fail(PL_ERR_NOMEM, "out of memory allocating %zu bytes of %s", nbytes, pl_mem_cat_name(cat));
        return NULL;
    }
    s->nbytes = nbytes;
    s->refcount = 1;
    s->cat = cat;
    return s;
}

struct pl_storage *pl_storage_wrap(void *data, size_t nbytes, enum pl_mem_cat cat,
                                   void (*release)(struct pl_storage *), void *owner)
{
    struct pl_storage *s = pl_calloc(1, sizeof *s, PL_MEM_DATA);
    if (!s) { pl_fail(PL_ERR_NOMEM, "out of memory allocating a storage header"); return NULL; }
    s->data = data;
    s->nbytes = nbytes;
    s->refcount = 1;
    s->cat = cat;
    s->release = release;
    s->owner = owner;
    return s;
}

void pl_storage_retain(struct pl_storage *s)
{
    if (s) __atomic_fetch_add(&s->refcount, 1, __ATOMIC_RELAXED);
}

void pl_storage_release(struct pl_storage *s)
{
    if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (s->release) s->release(s);
    else pl_free(s->data);
    pl_free(s);
}

/* ---------------- tensors ---------------- */

static void pl_contiguous_strides(struct pl_tensor *t)
{
    int64_t st = 1;
    for (int i = t->ndim - 1; i >= 0; i--) { t->stride[i] = st; st *= t->shape[i]; }
}

static enum pl_status pl_check_shape(enum pl_dtype dtype, int ndim, const int64_t *shape, int64_t *numel)
{
    if ((unsigned)dtype >= PL_DTYPE_COUNT) return pl_fail(PL_ERR_ARG, "unknown dtype %d", (int)dtype);
    if (ndim < 0 || ndim > PL_MAX_DIMS) return pl_fail(PL_ERR_ARG, "tensor rank %d out of range 0..%d", ndim, PL_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return pl_fail(PL_ERR_ARG, "negative size %lld in dimension %d", (long long)shape[i], i);
        if (shape[i] && n > INT64_MAX / shape[i]) return pl_fail(PL_ERR_ARG, "tensor size overflows");
        n *= shape[i];
    }
    const struct pl_dtype_info *di = pl_dtype_info(dtype);
    if (di->block > 1 && (ndim == 0 || shape[ndim - 1] % di->block))
        return pl_fail(PL_ERR_ARG, "%s tensor: last dimension must be a multiple of %d", di->name, di->block);
    *numel = n;
    return PL_OK;
}

static struct pl_tensor *pl_tensor_alloc_header(void)
{
    struct pl_tensor *t = pl_calloc(1, sizeof *t, PL_MEM_DATA);
    if (!t) pl_fail(PL_ERR_NOMEM, "out of memory allocating a tensor header");
    else t->refcount = 1;
    return t;
}

struct pl_tensor *pl_tensor_new(enum pl_dtype dtype, int ndim, const int64_t *shape, enum pl_mem_cat cat)
{
    int64_t n;
    if (pl_check_shape(dtype, ndim, shape, &n) != PL_OK) return NULL;
    struct pl_storage *s = pl_storage_new(pl_dtype_row_bytes(dtype, n), cat);
    if (!s) return NULL;
    struct pl_tensor *t = pl_tensor_over(s, 0, dtype, ndim, shape);
    pl_storage_release(s);
    return t;
}

struct pl_tensor *pl_tensor_over(struct pl_storage *s, size_t offset, enum pl_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t n;
    if (pl_check_shape(dtype, ndim, shape, &n) != PL_OK) return NULL;
    size_t need = pl_dtype_row_bytes(dtype, n);
    if (offset > s->nbytes || need > s->nbytes - offset) {
        pl_fail(PL_ERR_ARG, "tensor of %zu bytes at offset %zu exceeds its storage of %zu bytes", need, offset, s->nbytes);
        return NULL;
    }
    struct pl_tensor *t = pl_tensor_alloc_header();
    if (!t) return NULL;
    pl_storage_retain(s);
    t->storage = s;
    t->offset = offset;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    pl_contiguous_strides(t);
    return t;
}

struct pl_tensor *pl_tensor_retain(struct pl_tensor *t)
{
    if (t) __atomic_fetch_add(&t->refcount, 1, __ATOMIC_RELAXED);
    return t;
}

void pl_tensor_release(struct pl_tensor *t)
{
    if (!t || __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
    pl_storage_release(t->storage);
    pl_free(t);
}

int64_t pl_tensor_numel(const struct pl_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int pl_tensor_is_contiguous(const struct pl_tensor *t)
{
    int64_t st = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != st) return 0;
        st *= t->shape[i];
    }
    return 1;
}

size_t pl_tensor_nbytes(const struct pl_tensor *t) { return pl_dtype_row_bytes(t->dtype, pl_tensor_numel(t)); }
void *pl_tensor_data(const struct pl_tensor *t) { return (char *)t->storage->data + t->offset; }

int pl_tensor_same_shape(const struct pl_tensor *a, const struct pl_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++) if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *pl_tensor_describe(const struct pl_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "%s[", pl_dtype_info(t->dtype)->name);
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* Byte offset of element index `elem` (an element offset along strides) for any dtype. */
static size_t pl_elem_bytes(enum pl_dtype dt, int64_t elem)
{
    const struct pl_dtype_info *di = pl_dtype_info(dt);
    return (size_t)(elem / di->block) * (size_t)di->block_bytes;
}

/* ---------------- views ---------------- */

static struct pl_tensor *pl_tensor_view_of(const struct pl_tensor *t)
{
    struct pl_tensor *v = pl_tensor_alloc_header();
    if (!v) return NULL;
    *v = *t;
    v->refcount = 1;
    pl_storage_retain(t->storage);
    return v;
}

struct pl_tensor *pl_tensor_reshape(struct pl_tensor *t, int ndim, const int64_t *shape)
{
    if (!pl_tensor_is_contiguous(t)) { pl_fail(PL_ERR_ARG, "reshape needs a contiguous tensor (use clone first)"); return NULL; }
    if (ndim < 0 || ndim > PL_MAX_DIMS) { pl_fail(PL_ERR_ARG, "reshape: rank %d out of range", ndim); return NULL; }
    int64_t sh[PL_MAX_DIMS], known = 1, n = pl_tensor_numel(t);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (sh[i] == -1) {
            if (infer >= 0) { pl_fail(PL_ERR_ARG, "reshape: only one dimension may be -1"); return NULL; }
            infer = i;
        } else if (sh[i] < 0) { pl_fail(PL_ERR_ARG, "reshape: negative size"); return NULL; }
        else known *= sh[i];
    }
    if (infer >= 0) sh[infer] = known ? n / known : 0;
    int64_t m = 1;
    for (int i = 0; i < ndim; i++) m *= sh[i];
    if (m != n) { pl_fail(PL_ERR_ARG, "reshape: %lld elements cannot take a shape of %lld", (long long)n, (long long)m); return NULL; }
    const struct pl_dtype_info *di = pl_dtype_info(t->dtype);
    if (di->block > 1 && (ndim == 0 || sh[ndim - 1] % di->block)) { pl_fail(PL_ERR_ARG, "reshape: %s rows must stay multiples of %d", di->name, di->block); return NULL; }
    struct pl_tensor *v = pl_tensor_view_of(t);
    if (!v) return NULL;
    v->ndim = ndim;
    memcpy(v->shape, sh, sizeof(int64_t) * (size_t)ndim);
    pl_contiguous_strides(v);
    return v;
}

struct pl_tensor *pl_tensor_narrow(struct pl_tensor *t, int dim, int64_t start, int64_t len)
{
    if (dim < 0 || dim >= t->ndim) { pl_fail(PL_ERR_ARG, "narrow: dimension %d out of range for rank %d", dim, t->ndim); return NULL; }
    if (start < 0 || len < 0 || start + len > t->shape[dim]) { pl_fail(PL_ERR_ARG, "narrow: range [%lld, %lld) outside size %lld", (long long)start, (long long)(start + len), (long long)t->shape[dim]); return NULL; }
    if (pl_dtype_is_quant(t->dtype) && dim == t->ndim - 1 && len != t->shape[dim]) { pl_fail(PL_ERR_ARG, "narrow: cannot split rows of a block-quantised tensor"); return NULL; }
    if (t->dtype == PL_NF4_DQ && len != t->shape[dim]) { pl_fail(PL_ERR_ARG, "narrow: an nf4_dq tensor is one unit (its scale table follows all blocks); convert it first"); return NULL; }
    struct pl_tensor *v = pl_tensor_view_of(t);
    if (!v) return NULL;
    v->offset += pl_elem_bytes(t->dtype, start * t->stride[dim]);
    v->shape[dim] = len;
    return v;
}

struct pl_tensor *pl_tensor_select(struct pl_tensor *t, int dim, int64_t index)
{
    if (dim < 0 || dim >= t->ndim) { pl_fail(PL_ERR_ARG, "select: dimension %d out of range for rank %d", dim, t->ndim); return NULL; }
    if (index < 0 || index >= t->shape[dim]) { pl_fail(PL_ERR_ARG, "select: index %lld outside size %lld", (long long)index, (long long)t->shape[dim]); return NULL; }
    if (pl_dtype_is_quant(t->dtype) && dim == t->ndim - 1) { pl_fail(PL_ERR_ARG, "select: cannot index inside rows of a block-quantised tensor"); return NULL; }
    if (t->dtype == PL_NF4_DQ && t->shape[dim] != 1) { pl_fail(PL_ERR_ARG, "select: an nf4_dq tensor is one unit (its scale table follows all blocks); convert it first"); return NULL; }
    struct pl_tensor *v = pl_tensor_view_of(t);
    if (!v) return NULL;
    v->offset += pl_elem_bytes(t->dtype, index * t->stride[dim]);
    for (int i = dim; i < t->ndim - 1; i++) { v->shape[i] = t->shape[i + 1]; v->stride[i] = t->stride[i + 1]; }
    v->ndim--;
    return v;
}

struct pl_tensor *pl_tensor_transpose(struct pl_tensor *t, int d0, int d1)
{
    if (d0 < 0 || d0 >= t->ndim || d1 < 0 || d1 >= t->ndim) { pl_fail(PL_ERR_ARG, "transpose: dimensions %d,%d out of range for rank %d", d0, d1, t->ndim); return NULL; }
    if (pl_dtype_is_quant(t->dtype) && d0 != d1 && (d0 == t->ndim - 1 || d1 == t->ndim - 1)) { pl_fail(PL_ERR_ARG, "transpose: block-quantised rows cannot be transposed (convert to f32 first)"); return NULL; }
    struct pl_tensor *v = pl_tensor_view_of(t);
    if (!v) return NULL;
    int64_t s = v->shape[d0]; v->shape[d0] = v->shape[d1]; v->shape[d1] = s;
    s = v->stride[d0]; v->stride[d0] = v->stride[d1]; v->stride[d1] = s;
    return v;
}

/* ---------------- element access ---------------- */

static double pl_scalar_load(enum pl_dtype dt, const char *base, int64_t elem)
{
    switch (dt) {
    case PL_F32: return ((const float *)base)[elem];
    case PL_F16: return pl_f16_to_f32(((const uint16_t *)base)[elem]);
    case PL_BF16: return pl_bf16_to_f32(((const uint16_t *)base)[elem]);
    case PL_I32: return ((const int32_t *)base)[elem];
    case PL_I8: return ((const int8_t *)base)[elem];
    default: return NAN;
    }
}

static void pl_scalar_store(enum pl_dtype dt, char *base, int64_t elem, double v)
{
    switch (dt) {
    case PL_F32: ((float *)base)[elem] = (float)v; break;
    case PL_F16: ((uint16_t *)base)[elem] = pl_f32_to_f16((float)v); break;
    case PL_BF16: ((uint16_t *)base)[elem] = pl_f32_to_bf16((float)v); break;
    case PL_I32: ((int32_t *)base)[elem] = (int32_t)v; break;
    case PL_I8: ((int8_t *)base)[elem] = (int8_t)v; break;
    default: break;
    }
}

/* Calls fn(elem_offset, linear_index) for every element in row-major order. */
#define PL_FOREACH(t, body)                                                              \
    do {                                                                                 \
        int64_t idx_[PL_MAX_DIMS] = { 0 }, off_ = 0, n_ = pl_tensor_numel(t);            \
        for (int64_t lin_ = 0; lin_ < n_; lin_++) {                                      \
            int64_t elem = off_, lin = lin_;                                             \
            (void)lin;                                                                   \
            body;                                                                        \
            for (int d_ = (t)->ndim - 1; d_ >= 0; d_--) {                                \
                off_ += (t)->stride[d_];                                                 \
                if (++idx_[d_] < (t)->shape[d_]) break;                                  \
                off_ -= (t)->stride[d_] * (t)->shape[d_];                                \
                idx_[d_] = 0;                                                            \
            }                                                                            \
        }                                                                                \
    } while (0)

enum pl_status pl_tensor_read_f32(const struct pl_tensor *t, float *out)
{
    const char *base = pl_tensor_data(t);
    const struct pl_dtype_info *di = pl_dtype_info(t->dtype);
    if (di->block == 1) {
        if (t->dtype == PL_F32 && pl_tensor_is_contiguous(t)) {
            memcpy(out, base, sizeof(float) * (size_t)pl_tensor_numel(t));
            return PL_OK;
        }
        PL_FOREACH(t, out[lin] = (float)pl_scalar_load(t->dtype, base, elem));
        return PL_OK;
    }
    /* nf4_dq: the whole tensor is one unit (views of it are never made) */
    if (t->dtype == PL_NF4_DQ) {
        if (!pl_tensor_is_contiguous(t)) return pl_fail(PL_ERR_ARG, "nf4_dq tensor is not contiguous");
        return pl_dequant_row(t->dtype, base, out, pl_tensor_numel(t));
    }
    /* block-quantised: whole contiguous rows along the last dimension */
    if (t->ndim == 0 || t->stride[t->ndim - 1] != 1)
        return pl_fail(PL_ERR_ARG, "%s tensor rows are not contiguous", di->name);
    int64_t row = t->shape[t->ndim - 1], nrows = row ? pl_tensor_numel(t) / row : 0;
    int64_t idx[PL_MAX_DIMS] = { 0 }, off = 0;
    for (int64_t r = 0; r < nrows; r++) {
        enum pl_status st = pl_dequant_row(t->dtype, base + pl_elem_bytes(t->dtype, off), out + r * row, row);
        if (st != PL_OK) return st;
        for (int d = t->ndim - 2; d >= 0; d--) {
            off += t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            off -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
    }
    return PL_OK;
}

enum pl_status pl_tensor_write_f32(struct pl_tensor *t, const float *in)
{
    char *base = pl_tensor_data(t);
    if (pl_dtype_is_quant(t->dtype)) {
        if (!pl_tensor_is_contiguous(t)) return pl_fail(PL_ERR_ARG, "writing a quantised tensor needs it contiguous");
        return pl_quant_row(t->dtype, in, base, pl_tensor_numel(t));
    }
    PL_FOREACH(t, pl_scalar_store(t->dtype, base, elem, in[lin]));
    return PL_OK;
}

static int pl_index_elem(const struct pl_tensor *t, const int64_t *idx, int64_t *elem)
{
    int64_t e = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (idx[i] < 0 || idx[i] >= t->shape[i]) return 0;
        e += idx[i] * t->stride[i];
    }
    *elem = e;
    return 1;
}

double pl_tensor_get(const struct pl_tensor *t, const int64_t *idx)
{
    int64_t e;
    if (!pl_index_elem(t, idx, &e)) { pl_fail(PL_ERR_ARG, "index out of range"); return NAN; }
    const struct pl_dtype_info *di = pl_dtype_info(t->dtype);
    if (di->block == 1) return pl_scalar_load(t->dtype, pl_tensor_data(t), e);
    float blk[256];
    if (di->block > 256) return NAN;
    if (t->dtype == PL_NF4_DQ) {
        if (pl_dequant_part(t->dtype, pl_tensor_data(t), pl_tensor_numel(t), e - e % di->block, blk, di->block) != PL_OK) return NAN;
        return blk[e % di->block];
    }
    const char *p = (const char *)pl_tensor_data(t) + pl_elem_bytes(t->dtype, e);
    if (pl_dequant_row(t->dtype, p, blk, di->block) != PL_OK) return NAN;
    return blk[e % di->block];
}

enum pl_status pl_tensor_set(struct pl_tensor *t, const int64_t *idx, double v)
{
    int64_t e;
    if (pl_dtype_is_quant(t->dtype)) return pl_fail(PL_ERR_UNSUPPORTED, "cannot set single elements of a %s tensor", pl_dtype_info(t->dtype)->name);
    if (!pl_index_elem(t, idx, &e)) return pl_fail(PL_ERR_ARG, "index out of range");
    pl_scalar_store(t->dtype, pl_tensor_data(t), e, v);
    return PL_OK;
}

/* ---------------- copies ---------------- */

struct pl_tensor *pl_tensor_convert(const struct pl_tensor *t, enum pl_dtype to, enum pl_mem_cat cat)
{
    struct pl_tensor *r = pl_tensor_new(to, t->ndim, t->shape, cat);
    if (!r) return NULL;
    if (t->dtype == to && pl_tensor_is_contiguous(t)) {
        memcpy(pl_tensor_data(r), pl_tensor_data(t), pl_tensor_nbytes(t));
        return r;
    }
    int64_t n = pl_tensor_numel(t);
    float *tmp = to == PL_F32 ? pl_tensor_data(r) : pl_alloc(sizeof(float) * (size_t)(n ? n : 1), PL_MEM_WORKSPACE);
    enum pl_status st = tmp ? pl_tensor_read_f32(t, tmp) : pl_fail(PL_ERR_NOMEM, "out of memory converting a tensor");
    if (st == PL_OK && to != PL_F32) st = pl_tensor_write_f32(r, tmp);
    if (to != PL_F32) pl_free(tmp);
    if (st != PL_OK) { pl_tensor_release(r); return NULL; }
    return r;
}

struct pl_tensor *pl_tensor_clone(const struct pl_tensor *t, enum pl_mem_cat cat)
{
    if (pl_dtype_is_quant(t->dtype) && !pl_tensor_is_contiguous(t)) {
        /* copy row by row */
        struct pl_tensor *r = pl_tensor_new(t->dtype, t->ndim, t->shape, cat);
        if (!r) return NULL;
        int64_t row = t->shape[t->ndim - 1], nrows = pl_tensor_numel(t) / (row ? row : 1);
        size_t rb = pl_dtype_row_bytes(t->dtype, row);
        int64_t idx[PL_MAX_DIMS] = { 0 }, off = 0;
        for (int64_t k = 0; k < nrows; k++) {
            memcpy((char *)pl_tensor_data(r) + (size_t)k * rb, (const char *)pl_tensor_data(t) + pl_elem_bytes(t->dtype, off), rb);
            for (int d = t->ndim - 2; d >= 0; d--) {
                off += t->stride[d];
                if (++idx[d] < t->shape[d]) break;
                off -= t->stride[d] * t->shape[d];
                idx[d] = 0;
            }
        }
        return r;
    }
    if (t->dtype == PL_F32 || !pl_dtype_is_quant(t->dtype) || pl_tensor_is_contiguous(t)) {
        /* (contiguous block-quantised data is copied as it is: exact, no requantisation) */
        struct pl_tensor *r = pl_tensor_new(t->dtype, t->ndim, t->shape, cat);
        if (!r) return NULL;
        if (pl_tensor_is_contiguous(t)) memcpy(pl_tensor_data(r), pl_tensor_data(t), pl_tensor_nbytes(t));
        else {
            const char *src = pl_tensor_data(t);
            char *dst = pl_tensor_data(r);
            size_t es = (size_t)pl_dtype_info(t->dtype)->block_bytes;
            PL_FOREACH(t, memcpy(dst + (size_t)lin * es, src + (size_t)elem * es, es));
        }
        return r;
    }
    return pl_tensor_convert(t, t->dtype, cat);
}

enum pl_status pl_tensor_fill(struct pl_tensor *t, double v)
{
    if (pl_dtype_is_quant(t->dtype)) return pl_fail(PL_ERR_UNSUPPORTED, "cannot fill a %s tensor", pl_dtype_info(t->dtype)->name);
    char *base = pl_tensor_data(t);
    PL_FOREACH(t, pl_scalar_store(t->dtype, base, elem, v));
    return PL_OK;
}

enum pl_status pl_tensor_copy(struct pl_tensor *dst, const struct pl_tensor *src)
{
    int64_t n = pl_tensor_numel(src);
    if (n != pl_tensor_numel(dst)) return pl_fail(PL_ERR_ARG, "copy: %lld elements into %lld", (long long)n, (long long)pl_tensor_numel(dst));
    float *tmp = pl_alloc(sizeof(float) * (size_t)(n ? n : 1), PL_MEM_WORKSPACE);
    if (!tmp) return pl_fail(PL_ERR_NOMEM, "out of memory in copy");
    enum pl_status st = pl_tensor_read_f32(src, tmp);
    if (st == PL_OK) st = pl_tensor_write_f32(dst, tmp);
    pl_free(tmp);
    return st;
}

/* ---------------- arithmetic ---------------- */

/* A contiguous f32 view of t: t itself (retained) when already so, else a converted copy. */
static struct pl_tensor *pl_as_f32(const struct pl_tensor *t)
{
    if (t->dtype == PL_F32 && pl_tensor_is_contiguous(t)) return pl_tensor_retain((struct pl_tensor *)t);
    return pl_tensor_convert(t, PL_F32, PL_MEM_WORKSPACE);
}

static float pl_apply_binop(enum pl_binop op, float x, float y)
{
    switch (op) {
    case PL_OP_ADD: return x + y;
    case PL_OP_SUB: return x - y;
    case PL_OP_MUL: return x * y;
    case PL_OP_DIV: return x / y;
    case PL_OP_MAX: return x > y ? x : y;
    case PL_OP_MIN: return x < y ? x : y;
    case PL_OP_POW: return powf(x, y);
    }
    return NAN;
}

struct pl_tensor *pl_tensor_binop(enum pl_binop op, const struct pl_tensor *a, const struct pl_tensor *b)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[PL_MAX_DIMS], sa[PL_MAX_DIMS], sb[PL_MAX_DIMS];
    /* broadcast from the right, strides of contiguous copies, 0 where broadcast */
    int64_t stra = 1, strb = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char x[96], y[96];
            pl_fail(PL_ERR_ARG, "shapes %s and %s do not broadcast", pl_tensor_describe(a, x, sizeof x), pl_tensor_describe(b, y, sizeof y));
            return NULL;
        }
        shape[i] = da == 1 ? db : da;
        sa[i] = da == 1 ? 0 : stra;
        sb[i] = db == 1 ? 0 : strb;
        stra *= da;
        strb *= db;
    }
    struct pl_tensor *fa = pl_as_f32(a), *fb = fa ? pl_as_f32(b) : NULL;
    struct pl_tensor *r = fb ? pl_tensor_new(PL_F32, nd, shape, PL_MEM_WORKSPACE) : NULL;
    if (r) {
        const float *pa = pl_tensor_data(fa), *pb = pl_tensor_data(fb);
        float *pr = pl_tensor_data(r);
        int64_t idx[PL_MAX_DIMS] = { 0 }, oa = 0, ob = 0, n = pl_tensor_numel(r);
        for (int64_t k = 0; k < n; k++) {
            pr[k] = pl_apply_binop(op, pa[oa], pb[ob]);
            for (int d = nd - 1; d >= 0; d--) {
                oa += sa[d]; ob += sb[d];
                if (++idx[d] < shape[d]) break;
                oa -= sa[d] * shape[d]; ob -= sb[d] * shape[d];
                idx[d] = 0;
            }
        }
    }
    pl_tensor_release(fa);
    pl_tensor_release(fb);
    return r;
}

struct pl_tensor *pl_tensor_binop_scalar(enum pl_binop op, const struct pl_tensor *a, double s, int scalar_first)
{
    struct pl_tensor *r = pl_tensor_convert(a, PL_F32, PL_MEM_WORKSPACE);
    if (!r) return NULL;
    float *p = pl_tensor_data(r);
    int64_t n = pl_tensor_numel(r);
    for (int64_t i = 0; i < n; i++) p[i] = scalar_first ? pl_apply_binop(op, (float)s, p[i]) : pl_apply_binop(op, p[i], (float)s);
    return r;
}

struct pl_tensor *pl_tensor_unop(enum pl_unop op, const struct pl_tensor *a)
{
    struct pl_tensor *r = pl_tensor_convert(a, PL_F32, PL_MEM_WORKSPACE);
    if (!r) return NULL;
    float *p = pl_tensor_data(r);
    int64_t n = pl_tensor_numel(r);
    for (int64_t i = 0; i < n; i++) {
        float x = p[i];
        switch (op) {
        case PL_OP_NEG: x = -x; break;
        case PL_OP_EXP: x = expf(x); break;
        case PL_OP_LOG: x = logf(x); break;
        case PL_OP_SQRT: x = sqrtf(x); break;
        case PL_OP_ABS: x = fabsf(x); break;
        case PL_OP_TANH: x = tanhf(x); break;
        case PL_OP_SIGMOID: x = 1.0f / (1.0f + expf(-x)); break;
        case PL_OP_RELU: x = x > 0 ? x : 0; break;
        case PL_OP_SILU: x = x / (1.0f + expf(-x)); break;
        }
        p[i] = x;
    }
    return r;
}

struct pl_tensor *pl_tensor_reduce(enum pl_reduce op, const struct pl_tensor *a, int dim, int keepdim)
{
    struct pl_tensor *fa = pl_as_f32(a);
    if (!fa) return NULL;
    int64_t outer = 1, len, inner = 1, shape[PL_MAX_DIMS];
    int nd = 0;
    if (dim < 0) {
        len = pl_tensor_numel(a);
        if (keepdim) { nd = a->ndim; for (int i = 0; i < nd; i++) shape[i] = 1; }
    } else {
        if (dim >= a->ndim) { pl_tensor_release(fa); pl_fail(PL_ERR_ARG, "reduce: dimension %d out of range for rank %d", dim, a->ndim); return NULL; }
        for (int i = 0; i < dim; i++) outer *= a->shape[i];
        len = a->shape[dim];
        for (int i = dim + 1; i < a->ndim; i++) inner *= a->shape[i];
        for (int i = 0; i < a->ndim; i++) {
            if (i == dim) { if (keepdim) shape[nd++] = 1; }
            else shape[nd++] = a->shape[i];
        }
    }
    if ((op == PL_RED_MAX || op == PL_RED_MIN || op == PL_RED_ARGMAX) && len == 0) {
        pl_tensor_release(fa);
        pl_fail(PL_ERR_ARG, "reduce: max/min of an empty dimension");
        return NULL;
    }
    struct pl_tensor *r = pl_tensor_new(PL_F32, nd, shape, PL_MEM_WORKSPACE);
    if (r) {
        const float *p = pl_tensor_data(fa);
        float *q = pl_tensor_data(r);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t in = 0; in < inner; in++) {
                const float *x = p + o * len * inner + in;
                double acc = op == PL_RED_MAX || op == PL_RED_MIN || op == PL_RED_ARGMAX ? x[0] : 0.0;
                int64_t arg = 0;
                for (int64_t k = 0; k < len; k++) {
                    double v = x[k * inner];
                    if (op == PL_RED_SUM || op == PL_RED_MEAN) acc += v;
                    else if ((op == PL_RED_MAX || op == PL_RED_ARGMAX) && v > acc) { acc = v; arg = k; }
                    else if (op == PL_RED_MIN && v < acc) acc = v;
                }
                if (op == PL_RED_MEAN) acc = len ? acc / (double)len : NAN;
                if (op == PL_RED_ARGMAX) acc = (double)arg;
                q[o * inner + in] = (float)acc;
            }
    }
    pl_tensor_release(fa);
    return r;
}

struct pl_tensor *pl_tensor_softmax(const struct pl_tensor *a, int dim)
{
    if (dim < 0) dim += a->ndim;
    if (dim < 0 || dim >= a->ndim) { pl_fail(PL_ERR_ARG, "softmax: dimension out of range"); return NULL; }
    struct pl_tensor *r = pl_tensor_convert(a, PL_F32, PL_MEM_WORKSPACE);
    if (!r) return NULL;
    int64_t outer = 1, len = a->shape[dim], inner = 1;
    for (int i = 0; i < dim; i++) outer *= a->shape[i];
    for (int i = dim + 1; i < a->ndim; i++) inner *= a->shape[i];
    float *p = pl_tensor_data(r);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            float *x = p + o * len * inner + in, mx = -INFINITY;
            double s = 0;
            for (int64_t k = 0; k < len; k++) if (x[k * inner] > mx) mx = x[k * inner];
            for (int64_t k = 0; k < len; k++) { x[k * inner] = expf(x[k * inner] - mx); s += x[k * inner]; }
            for (int64_t k = 0; k < len; k++) x[k * inner] = (float)(x[k * inner] / s);
        }
    return r;
}

struct pl_tensor *pl_tensor_matmul(const struct pl_tensor *a, const struct pl_tensor *b)
{
    char x[96], y[96];
    if (a->ndim < 2 || b->ndim < 2 || a->shape[a->ndim - 1] != b->shape[b->ndim - 2]) {
        pl_fail(PL_ERR_ARG, "matmul: shapes %s and %s do not multiply", pl_tensor_describe(a, x, sizeof x), pl_tensor_describe(b, y, sizeof y));
        return NULL;
    }
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
    int64_t batch = pl_tensor_numel(a) / (m * k != 0 ? m * k : 1), bbatch = pl_tensor_numel(b) / (k * n != 0 ? k * n : 1);
    if (m * k == 0) batch = 1;
    if (b->ndim > 2 && bbatch != batch) {
        pl_fail(PL_ERR_ARG, "matmul: batch dimensions of %s and %s differ", pl_tensor_describe(a, x, sizeof x), pl_tensor_describe(b, y, sizeof y));
        return NULL;
    }
    int64_t shape[PL_MAX_DIMS];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    shape[a->ndim - 1] = n;
    struct pl_tensor *fa = pl_as_f32(a), *fb = fa ? pl_as_f32(b) : NULL;
    struct pl_tensor *r = fb ? pl_tensor_new(PL_F32, a->ndim, shape, PL_MEM_WORKSPACE) : NULL;
    if (r && m && n) {
        const float *pa = pl_tensor_data(fa), *pb = pl_tensor_data(fb);
        float *pr = pl_tensor_data(r);
        for (int64_t i = 0; i < batch; i++)
            pl_sgemm(0, 0, (int)m, (int)n, (int)k, 1.0f, pa + i * m * k, (int)k,
                     pb + (b->ndim > 2 ? i * k * n : 0), (int)n, 0.0f, pr + i * m * n, (int)n);
    }
    pl_tensor_release(fa);
    pl_tensor_release(fb);
    return r;
}

double pl_tensor_max_abs_diff(const struct pl_tensor *a, const struct pl_tensor *b)
{
    if (pl_tensor_numel(a) != pl_tensor_numel(b)) return INFINITY;
    struct pl_tensor *fa = pl_as_f32(a), *fb = fa ? pl_as_f32(b) : NULL;
    double m = fb ? 0 : INFINITY;
    if (fb) {
        const float *pa = pl_tensor_data(fa), *pb = pl_tensor_data(fb);
        for (int64_t i = 0; i < pl_tensor_numel(a); i++) {
            double d = fabs((double)pa[i] - pb[i]);
            if (d > m || d != d) m = d;
        }
    }
    pl_tensor_release(fa);
    pl_tensor_release(fb);
    return m;
}
