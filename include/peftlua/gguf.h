/* gguf.h — reading and writing GGUF model files (versions 2 and 3).
 *
 * A GGUF file is: magic "GGUF", version, tensor count, metadata count; the metadata
 * key/value pairs; the tensor infos (name, ggml dims ne[] fastest first, ggml type, offset
 * relative to the data section); padding to general.alignment (default 32); the tensor data.
 *
 * Reading maps the whole file (mmap) and validates everything against its size before any
 * use: magic, version, counts, string lengths, nesting, dims and element-count overflow,
 * tensor types, offset alignment, data in bounds, duplicate names. Every failure returns
 * PL_ERR_FORMAT / PL_ERR_UNSUPPORTED / PL_ERR_IO with a one-line message "<path>: <problem>",
 * e.g. "x.gguf: tensor 'blk.0.attn_q.weight' data [offset 123, 4096 bytes] runs past end of
 * file (2000 bytes)".
 *
 * Tensors are used in place: pl_gguf_tensor() returns a struct pl_tensor whose storage
 * borrows the mapping and holds a reference on the file, so the mapping stays alive while
 * any tensor does, even after pl_gguf_close(). Shapes are row-major (PyTorch order): a GGUF
 * tensor with ne = {K, N} has shape {N, K}. The mapping is accounted under PL_MEM_MAPPED.
 *
 * Worked example:
 *
 *     struct pl_gguf *g;
 *     if (pl_gguf_open("model.gguf", &g) != PL_OK) { fprintf(stderr, "%s\n", pl_last_error()); return 1; }
 *     uint32_t n_layer;
 *     if (pl_gguf_get_u32(g, "llama.block_count", &n_layer) != PL_OK) ...;
 *     const char *arch = pl_gguf_str_or(g, "general.architecture", "?");
 *     float eps = pl_gguf_f32_or(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
 *     struct pl_tensor *wq = pl_gguf_tensor(g, "blk.0.attn_q.weight");   // shape {out, in}
 *     ...
 *     pl_tensor_release(wq);
 *     pl_gguf_close(g);
 *
 *     // writing: metadata of every type, then tensors of any dtype, then one atomic write
 *     struct pl_gguf_writer *w = pl_gguf_writer_new();
 *     pl_gguf_set_str(w, "general.architecture", "llama");
 *     pl_gguf_set_u32(w, "llama.block_count", 5);
 *     pl_gguf_add_tensor(w, "token_embd.weight", emb);
 *     enum pl_status st = pl_gguf_writer_write(w, "out.gguf");
 *     pl_gguf_writer_free(w);
 */
#ifndef PEFTLUA_GGUF_H
#define PEFTLUA_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"
#include "peftlua/tensor.h"

/* Metadata value types, numbered as in the GGUF specification. */
enum pl_gguf_type {
    PL_GGUF_UINT8 = 0, PL_GGUF_INT8 = 1, PL_GGUF_UINT16 = 2, PL_GGUF_INT16 = 3,
    PL_GGUF_UINT32 = 4, PL_GGUF_INT32 = 5, PL_GGUF_FLOAT32 = 6, PL_GGUF_BOOL = 7,
    PL_GGUF_STRING = 8, PL_GGUF_ARRAY = 9, PL_GGUF_UINT64 = 10, PL_GGUF_INT64 = 11,
    PL_GGUF_FLOAT64 = 12, PL_GGUF_TYPE_COUNT
};
const char *pl_gguf_type_name(enum pl_gguf_type t);     /* "u32", "string", "array", ... */
/* Name of a ggml tensor type id ("q4_k", "iq2_xxs", ...; "?" if unknown). */
const char *pl_ggml_type_name(int32_t ggml_type);

#define PL_GGUF_DEFAULT_ALIGNMENT 32

/* A string: s is NUL-terminated (a copy owned by the file or writer); len excludes the NUL
 * and counts embedded NULs if any. */
struct pl_gguf_str {
    const char *s;
    uint64_t len;
};

/* A metadata value. Scalars are widened: unsigned types in u64, signed in i64, floats in f64,
 * bool in b. Arrays: elem is the element type and data points at n elements laid out as
 *   numeric/bool elements: the file's little-endian bytes, possibly unaligned — read them
 *                          with pl_gguf_value_i64/f64 (or memcpy);
 *   strings: struct pl_gguf_str[n];   arrays (nested): struct pl_gguf_value[n].          */
struct pl_gguf_value {
    enum pl_gguf_type type;
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        int b;
        struct pl_gguf_str str;
        struct { enum pl_gguf_type elem; uint64_t n; const void *data; } arr;
    } v;
};

/* ------------------------------------------------------------------ reading */

struct pl_gguf;   /* opaque, refcounted */

/* Open and validate path. On success *out holds one reference. */
enum pl_status pl_gguf_open(const char *path, struct pl_gguf **out);
struct pl_gguf *pl_gguf_retain(struct pl_gguf *g);
/* Drop a reference; the mapping goes with the last one (tensors hold references). NULL ok. */
void pl_gguf_close(struct pl_gguf *g);

const char *pl_gguf_path(const struct pl_gguf *g);
uint32_t    pl_gguf_version(const struct pl_gguf *g);
uint32_t    pl_gguf_alignment(const struct pl_gguf *g);
uint64_t    pl_gguf_data_offset(const struct pl_gguf *g);   /* start of the tensor data section */
uint64_t    pl_gguf_file_size(const struct pl_gguf *g);

/* --- metadata: enumeration --- */
int64_t pl_gguf_kv_count(const struct pl_gguf *g);
const char *pl_gguf_kv_key(const struct pl_gguf *g, int64_t i);              /* NULL if out of range */
const struct pl_gguf_value *pl_gguf_kv_value(const struct pl_gguf *g, int64_t i);
int64_t pl_gguf_find_key(const struct pl_gguf *g, const char *key);         /* index or -1 */
const struct pl_gguf_value *pl_gguf_find(const struct pl_gguf *g, const char *key); /* NULL if absent */

/* --- metadata: typed getters. Missing key → PL_ERR_FORMAT "<path>: metadata key 'k' not
 * found"; wrong type or out of range → PL_ERR_FORMAT naming key, type and value. Integers
 * convert between widths when the value fits; f32/f64 accept any numeric type. --- */
enum pl_status pl_gguf_get_u32(const struct pl_gguf *g, const char *key, uint32_t *out);
enum pl_status pl_gguf_get_i32(const struct pl_gguf *g, const char *key, int32_t *out);
enum pl_status pl_gguf_get_u64(const struct pl_gguf *g, const char *key, uint64_t *out);
enum pl_status pl_gguf_get_i64(const struct pl_gguf *g, const char *key, int64_t *out);
enum pl_status pl_gguf_get_f32(const struct pl_gguf *g, const char *key, float *out);
enum pl_status pl_gguf_get_f64(const struct pl_gguf *g, const char *key, double *out);
enum pl_status pl_gguf_get_bool(const struct pl_gguf *g, const char *key, int *out);
enum pl_status pl_gguf_get_str(const struct pl_gguf *g, const char *key, const char **out);
/* Array: element type and length. */
enum pl_status pl_gguf_get_arr(const struct pl_gguf *g, const char *key,
                               enum pl_gguf_type *elem, uint64_t *n);
/* Array element i (numeric arrays: any integer/bool/float element type; strings). */
enum pl_status pl_gguf_arr_i64(const struct pl_gguf *g, const char *key, uint64_t i, int64_t *out);
enum pl_status pl_gguf_arr_f32(const struct pl_gguf *g, const char *key, uint64_t i, float *out);
enum pl_status pl_gguf_arr_str(const struct pl_gguf *g, const char *key, uint64_t i,
                               const char **s, uint64_t *len);
/* String array as a vector (e.g. tokenizer.ggml.tokens): NULL (with message) if the key is
 * missing or not an array of strings; *n receives the length. Owned by g. */
const struct pl_gguf_str *pl_gguf_str_array(const struct pl_gguf *g, const char *key, uint64_t *n);

/* Defaults instead of errors (missing key or wrong type → dflt). */
uint32_t    pl_gguf_u32_or(const struct pl_gguf *g, const char *key, uint32_t dflt);
float       pl_gguf_f32_or(const struct pl_gguf *g, const char *key, float dflt);
const char *pl_gguf_str_or(const struct pl_gguf *g, const char *key, const char *dflt);

/* Element i of an array value as a number (integers, bool, floats) — also for nested arrays. */
int     pl_gguf_value_i64(const struct pl_gguf_value *v, uint64_t i, int64_t *out);   /* 1 ok, 0 no */
int     pl_gguf_value_f64(const struct pl_gguf_value *v, uint64_t i, double *out);
/* Size in bytes of one element of a numeric/bool type (0 for string/array). */
size_t  pl_gguf_type_size(enum pl_gguf_type t);

/* --- tensors --- */
struct pl_gguf_tensor_info {
    const char *name;
    enum pl_dtype dtype;
    int32_t ggml_type;
    int32_t ndim;
    int64_t shape[PL_MAX_DIMS];   /* row-major: shape[ndim-1] = ne[0] */
    int64_t ne[PL_MAX_DIMS];      /* as in the file, fastest first */
    uint64_t offset;              /* absolute file offset of the data */
    uint64_t nbytes;
    const void *data;             /* into the mapping */
};
int64_t pl_gguf_tensor_count(const struct pl_gguf *g);
int64_t pl_gguf_tensor_find(const struct pl_gguf *g, const char *name);     /* index or -1 */
const struct pl_gguf_tensor_info *pl_gguf_tensor_info(const struct pl_gguf *g, int64_t i); /* NULL if out of range */
/* A tensor over the mapped data (no copy). NULL with "<path>: no tensor 'name'" if absent.
 * Release with pl_tensor_release(). */
struct pl_tensor *pl_gguf_tensor(struct pl_gguf *g, const char *name);
struct pl_tensor *pl_gguf_tensor_at(struct pl_gguf *g, int64_t i);

/* ------------------------------------------------------------------ writing */

struct pl_gguf_writer;   /* opaque */

struct pl_gguf_writer *pl_gguf_writer_new(void);     /* NULL (message set) on allocation failure */
void pl_gguf_writer_free(struct pl_gguf_writer *w);  /* NULL ok; releases held tensors */

/* Setting a key that exists replaces its value in place (key order is kept). Each returns
 * PL_ERR_NOMEM/PL_ERR_ARG on failure. */
enum pl_status pl_gguf_set_u8 (struct pl_gguf_writer *w, const char *key, uint8_t v);
enum pl_status pl_gguf_set_i8 (struct pl_gguf_writer *w, const char *key, int8_t v);
enum pl_status pl_gguf_set_u16(struct pl_gguf_writer *w, const char *key, uint16_t v);
enum pl_status pl_gguf_set_i16(struct pl_gguf_writer *w, const char *key, int16_t v);
enum pl_status pl_gguf_set_u32(struct pl_gguf_writer *w, const char *key, uint32_t v);
enum pl_status pl_gguf_set_i32(struct pl_gguf_writer *w, const char *key, int32_t v);
enum pl_status pl_gguf_set_u64(struct pl_gguf_writer *w, const char *key, uint64_t v);
enum pl_status pl_gguf_set_i64(struct pl_gguf_writer *w, const char *key, int64_t v);
enum pl_status pl_gguf_set_f32(struct pl_gguf_writer *w, const char *key, float v);
enum pl_status pl_gguf_set_f64(struct pl_gguf_writer *w, const char *key, double v);
enum pl_status pl_gguf_set_bool(struct pl_gguf_writer *w, const char *key, int v);
enum pl_status pl_gguf_set_str(struct pl_gguf_writer *w, const char *key, const char *v);
/* Numeric/bool array: data holds n native elements of type elem (bool: one byte each). */
enum pl_status pl_gguf_set_arr(struct pl_gguf_writer *w, const char *key, enum pl_gguf_type elem,
                               const void *data, uint64_t n);
enum pl_status pl_gguf_set_arr_str(struct pl_gguf_writer *w, const char *key,
                                   const char *const *strs, uint64_t n);
/* Any value (deep copy), e.g. from pl_gguf_kv_value() of a file being rewritten; nested
 * arrays included. */
enum pl_status pl_gguf_set_value(struct pl_gguf_writer *w, const char *key,
                                 const struct pl_gguf_value *v);
/* Copy every metadata pair of g (in order). */
enum pl_status pl_gguf_copy_kv(struct pl_gguf_writer *w, const struct pl_gguf *g);
/* Data alignment (power of two), recorded as the u32 key general.alignment (default 32 when
 * no such key is set). */
enum pl_status pl_gguf_set_alignment(struct pl_gguf_writer *w, uint32_t alignment);

/* Add a tensor (any dtype, contiguous; the writer holds a reference until freed). Quantised
 * dtypes need the last dimension to be a multiple of the block; NF4 has no GGUF type and is
 * refused (PL_ERR_UNSUPPORTED). Duplicate names → PL_ERR_ARG. */
enum pl_status pl_gguf_add_tensor(struct pl_gguf_writer *w, const char *name, struct pl_tensor *t);

/* Write GGUF v3 to path atomically: a temporary file in the same directory, fsync, rename. */
enum pl_status pl_gguf_writer_write(struct pl_gguf_writer *w, const char *path);

#endif
