/* tensor.h — n-dimensional tensors as views over refcounted storage.
 *
 * Conventions (everyone relies on these):
 *  - shape[] is row-major, PyTorch order: shape[0] varies slowest, shape[ndim-1] fastest.
 *    A GGUF tensor with ne = {K, N} is shape {N, K} here; a Linear weight is {out, in}.
 *  - stride[] counts elements, not bytes. Block-quantised dtypes (Q8_0, Q4_K, ...) are only
 *    contiguous along the last dimension (whole rows of blocks); views may narrow/select
 *    leading dimensions only. NF4_DQ is one unit per tensor (all blocks, then the table of
 *    its double-quantised scales): no narrowing views of it at all.
 *  - A tensor holds one reference to its storage; storage is freed with its last tensor.
 *    Storage may be heap (pl_alloc, counted under its category) or borrowed from a file
 *    mapping (released through the storage's release callback).
 *  - Functions returning a new tensor return NULL on failure with pl_last_error() set.
 */
#ifndef PEFTLUA_TENSOR_H
#define PEFTLUA_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/alloc.h"
#include "peftlua/status.h"

#define PL_MAX_DIMS 8
#define PL_NF4_DQ_GROUP 256   /* NF4_DQ: blocks per group of double-quantised scales */

enum pl_dtype {
    PL_F32 = 0,
    PL_F16,
    PL_BF16,
    PL_I32,
    PL_I8,
    PL_Q8_0,
    PL_Q4_0,
    PL_Q4_1,
    PL_Q5_0,
    PL_Q5_1,
    PL_Q2_K,
    PL_Q3_K,
    PL_Q4_K,
    PL_Q5_K,
    PL_Q6_K,
    PL_Q8_K,
    PL_NF4,       /* QLoRA NormalFloat4, 64-element blocks with an f32 scale */
    PL_NF4_32,    /* NF4, 32-element blocks with an f16 scale (the same 4.5 bits per weight) */
    PL_NF4_DQ,    /* NF4, 64-element blocks, double-quantised scales (one unit per tensor:
                   * pl_dtype_row_bytes(PL_NF4_DQ, numel) includes its group table) */
    PL_DTYPE_COUNT
};

struct pl_dtype_info {
    const char *name;     /* "f32", "q4_k", ... */
    int32_t block;        /* elements per block (1 for scalar types) */
    int32_t block_bytes;  /* bytes per block */
    int32_t gguf_type;    /* ggml_type id, -1 if none */
};

const struct pl_dtype_info *pl_dtype_info(enum pl_dtype t);
int    pl_dtype_from_name(const char *name);        /* -1 if unknown */
int    pl_dtype_from_gguf(int32_t ggml_type);       /* -1 if unsupported */
int    pl_dtype_is_quant(enum pl_dtype t);          /* block > 1 */
/* Bytes for n consecutive elements; n must be a multiple of the block size (else 0). */
size_t pl_dtype_row_bytes(enum pl_dtype t, int64_t n);

struct pl_storage {
    void   *data;
    size_t  nbytes;
    int32_t refcount;            /* atomic in practice: tensors may be shared across threads */
    enum pl_mem_cat cat;
    void  (*release)(struct pl_storage *s);   /* NULL: data came from pl_alloc */
    void   *owner;                            /* for release (e.g. a file mapping) */
};

struct pl_tensor {
    struct pl_storage *storage;
    size_t  offset;              /* bytes from storage->data */
    enum pl_dtype dtype;
    int32_t ndim;
    int64_t shape[PL_MAX_DIMS];
    int64_t stride[PL_MAX_DIMS]; /* elements */
    int32_t refcount;
};

/* --- storage --- */
struct pl_storage *pl_storage_new(size_t nbytes, enum pl_mem_cat cat);   /* zeroed */
struct pl_storage *pl_storage_wrap(void *data, size_t nbytes, enum pl_mem_cat cat,
                                   void (*release)(struct pl_storage *), void *owner);
void pl_storage_retain(struct pl_storage *s);
void pl_storage_release(struct pl_storage *s);

/* --- creation and lifetime --- */
struct pl_tensor *pl_tensor_new(enum pl_dtype dtype, int ndim, const int64_t *shape,
                                enum pl_mem_cat cat);                      /* zeroed */
/* A contiguous tensor over existing storage at a byte offset (takes a storage reference). */
struct pl_tensor *pl_tensor_over(struct pl_storage *s, size_t offset, enum pl_dtype dtype,
                                 int ndim, const int64_t *shape);
struct pl_tensor *pl_tensor_retain(struct pl_tensor *t);
void pl_tensor_release(struct pl_tensor *t);                              /* NULL is fine */

/* --- inspection --- */
int64_t pl_tensor_numel(const struct pl_tensor *t);
size_t  pl_tensor_nbytes(const struct pl_tensor *t);   /* of the viewed elements if contiguous */
int     pl_tensor_is_contiguous(const struct pl_tensor *t);
void   *pl_tensor_data(const struct pl_tensor *t);     /* storage->data + offset */
int     pl_tensor_same_shape(const struct pl_tensor *a, const struct pl_tensor *b);
/* "f32[4,8]" into buf. */
const char *pl_tensor_describe(const struct pl_tensor *t, char *buf, size_t n);

/* --- views (share storage) --- */
struct pl_tensor *pl_tensor_reshape(struct pl_tensor *t, int ndim, const int64_t *shape); /* contiguous; one -1 allowed */
struct pl_tensor *pl_tensor_narrow(struct pl_tensor *t, int dim, int64_t start, int64_t len);
struct pl_tensor *pl_tensor_select(struct pl_tensor *t, int dim, int64_t index);          /* drops dim */
struct pl_tensor *pl_tensor_transpose(struct pl_tensor *t, int d0, int d1);

/* --- copies and conversion --- */
struct pl_tensor *pl_tensor_clone(const struct pl_tensor *t, enum pl_mem_cat cat);        /* contiguous copy */
struct pl_tensor *pl_tensor_convert(const struct pl_tensor *t, enum pl_dtype to, enum pl_mem_cat cat);
/* Element access as double (scalar dtypes any layout; quantised: contiguous). idx has ndim entries. */
double pl_tensor_get(const struct pl_tensor *t, const int64_t *idx);
enum pl_status pl_tensor_set(struct pl_tensor *t, const int64_t *idx, double v); /* f32/f16/bf16/i32 */
/* Read/write every element in row-major order as f32 (any dtype readable; writable: scalar). */
enum pl_status pl_tensor_read_f32(const struct pl_tensor *t, float *out);
enum pl_status pl_tensor_write_f32(struct pl_tensor *t, const float *in);

/* --- arithmetic (f32 results; inputs of any dtype are converted) --- */
enum pl_binop { PL_OP_ADD, PL_OP_SUB, PL_OP_MUL, PL_OP_DIV, PL_OP_MAX, PL_OP_MIN, PL_OP_POW };
enum pl_unop  { PL_OP_NEG, PL_OP_EXP, PL_OP_LOG, PL_OP_SQRT, PL_OP_ABS, PL_OP_TANH, PL_OP_SIGMOID,
                PL_OP_RELU, PL_OP_SILU };
enum pl_reduce { PL_RED_SUM, PL_RED_MEAN, PL_RED_MAX, PL_RED_MIN, PL_RED_ARGMAX };

/* Broadcasting NumPy-style. */
struct pl_tensor *pl_tensor_binop(enum pl_binop op, const struct pl_tensor *a, const struct pl_tensor *b);
struct pl_tensor *pl_tensor_binop_scalar(enum pl_binop op, const struct pl_tensor *a, double s, int scalar_first);
struct pl_tensor *pl_tensor_unop(enum pl_unop op, const struct pl_tensor *a);
/* dim < 0: over all elements (result has ndim 0, one element). */
struct pl_tensor *pl_tensor_reduce(enum pl_reduce op, const struct pl_tensor *a, int dim, int keepdim);
struct pl_tensor *pl_tensor_softmax(const struct pl_tensor *a, int dim);
/* a [..., m, k] @ b [k, n] or [..., k, n] (batched, batch dims equal or b 2-D) → [..., m, n]. */
struct pl_tensor *pl_tensor_matmul(const struct pl_tensor *a, const struct pl_tensor *b);
enum pl_status pl_tensor_fill(struct pl_tensor *t, double v);
enum pl_status pl_tensor_copy(struct pl_tensor *dst, const struct pl_tensor *src); /* same numel */
/* max |a-b| over elements (same shape). */
double pl_tensor_max_abs_diff(const struct pl_tensor *a, const struct pl_tensor *b);

#endif
