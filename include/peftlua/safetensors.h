/* safetensors.h — reading and writing safetensors files (Hugging Face), single or sharded.
 *
 * A .safetensors file is: u64 little-endian header length N; N bytes of JSON
 *   {"name": {"dtype": "F16", "shape": [out, in], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string", ...}}
 * then the data section; offsets are relative to it (byte 8 + N). Shapes are row-major, as
 * in PyTorch and in struct pl_tensor.
 *
 * Reading maps the file(s) and validates: header length within the file, JSON (through
 * include/peftlua/json.h), dtype known (F32, F16, BF16, I32, I8 → peftlua dtypes; I64, F64,
 * U8, BOOL, ... → PL_ERR_UNSUPPORTED naming the tensor), shape × element size = byte range,
 * ranges within the data section, non-overlapping and together covering it exactly. Errors
 * read "<path>: <problem>".
 *
 * Sharded models: opening "model.safetensors.index.json" (or a directory holding it, or a
 * directory holding model.safetensors) reads the index's weight_map and opens every shard;
 * the tensors of all shards appear as one set.
 *
 *     struct pl_safetensors *st;
 *     if (pl_safetensors_open("model_dir", &st) != PL_OK) puts(pl_last_error());
 *     struct pl_tensor *w = pl_safetensors_tensor(st, "model.layers.0.self_attn.q_proj.weight");
 *     pl_tensor_release(w);
 *     pl_safetensors_close(st);
 *
 * Tensors borrow the mapping and hold a reference on it (as for GGUF). Mappings are
 * accounted under PL_MEM_MAPPED.
 */
#ifndef PEFTLUA_SAFETENSORS_H
#define PEFTLUA_SAFETENSORS_H

#include <stdint.h>
#include "peftlua/status.h"
#include "peftlua/tensor.h"

struct pl_safetensors;   /* opaque, refcounted */

/* path: a .safetensors file, a model.safetensors.index.json, or a directory holding either. */
enum pl_status pl_safetensors_open(const char *path, struct pl_safetensors **out);
struct pl_safetensors *pl_safetensors_retain(struct pl_safetensors *st);
void pl_safetensors_close(struct pl_safetensors *st);               /* NULL ok */

const char *pl_safetensors_path(const struct pl_safetensors *st);

struct pl_safetensors_info {
    const char *name;
    enum pl_dtype dtype;
    int32_t ndim;
    int64_t shape[PL_MAX_DIMS];
    uint64_t nbytes;
    const void *data;          /* into the mapping */
    const char *file;          /* the shard holding it */
};
int64_t pl_safetensors_count(const struct pl_safetensors *st);
int64_t pl_safetensors_find(const struct pl_safetensors *st, const char *name);  /* index or -1 */
const struct pl_safetensors_info *pl_safetensors_info(const struct pl_safetensors *st, int64_t i);
/* NULL with "<path>: no tensor 'name'" if absent. Release with pl_tensor_release(). */
struct pl_tensor *pl_safetensors_tensor(struct pl_safetensors *st, const char *name);
struct pl_tensor *pl_safetensors_tensor_at(struct pl_safetensors *st, int64_t i);

/* __metadata__ (string → string) of the first file. */
int64_t     pl_safetensors_meta_count(const struct pl_safetensors *st);
const char *pl_safetensors_meta_key(const struct pl_safetensors *st, int64_t i);
const char *pl_safetensors_meta(const struct pl_safetensors *st, const char *key);   /* NULL if absent */

/* --- writing --- */
struct pl_safetensors_writer;
struct pl_safetensors_writer *pl_safetensors_writer_new(void);
void pl_safetensors_writer_free(struct pl_safetensors_writer *w);
enum pl_status pl_safetensors_set_meta(struct pl_safetensors_writer *w, const char *key, const char *value);
/* dtypes F32, F16, BF16, I32, I8 (quantised ones → PL_ERR_UNSUPPORTED); contiguous; the writer
 * holds a reference until freed. Duplicate names → PL_ERR_ARG. */
enum pl_status pl_safetensors_add_tensor(struct pl_safetensors_writer *w, const char *name,
                                         struct pl_tensor *t);
/* Header padded with spaces to a multiple of 8; tensors in insertion order; written
 * atomically (temporary file in the same directory, fsync, rename). */
enum pl_status pl_safetensors_writer_write(struct pl_safetensors_writer *w, const char *path);

#endif
