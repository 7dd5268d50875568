/* train_export.c — writing a (merged or fully fine-tuned) model: GGUF or safetensors.
 *
 * Owner: train. The file formats are formats' (gguf.h, safetensors.h); this file maps the
 * model's parameters to each format's names and dtypes:
 *   GGUF: llama.cpp names (token_embd.weight, blk.N.attn_q.weight, ...); every metadata key of
 *         the source GGUF is copied when the model came from one (else a minimal llama header
 *         is written). dtype f32 / f16 / bf16, or "base": each tensor in the type it had in the
 *         source file (re-quantised with the reference rounding; norms stay f32).
 *   safetensors: HF names (model.layers.N.self_attn.q_proj.weight, ...) plus config.json; Q and
 *         K rows are un-permuted when the model uses GGUF's interleaved RoPE layout, so HF's
 *         rotate-half Llama reads them correctly.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "peftlua/alloc.h"
#include "peftlua/gguf.h"
#include "peftlua/json.h"
#include "peftlua/safetensors.h"
#include "train_internal.h"


/* Rows of a [H*hd, in] projection from GGUF's interleaved pair order to HF's half order:
 * within each head, row 2i → i and row 2i+1 → hd/2 + i. */
static struct pl_tensor *unpermute_rows(const struct pl_tensor *w, int64_t heads)
{
    struct pl_tensor *f = pl_tensor_convert(w, PL_F32, PL_MEM_WORKSPACE);
    if (!f) return NULL;
    int64_t rows = f->shape[0], in = f->shape[1], hd = rows / heads;
    struct pl_tensor *o = pl_tensor_new(PL_F32, 2, f->shape, PL_MEM_WORKSPACE);
    if (!o) { pl_tensor_release(f); return NULL; }
    const float *src = pl_tensor_data(f);
    float *dst = pl_tensor_data(o);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t r = 0; r < hd; r++) {
            int64_t to = h * hd + (r % 2 == 0 ? r / 2 : hd / 2 + r / 2);
            memcpy(dst + (size_t)to * in, src + (size_t)(h * hd + r) * in, (size_t)in * sizeof(float));
        }
    pl_tensor_release(f);
    return o;
}

static enum pl_status write_hf_config(const struct pl_model *m, const char *dir)
{
    const struct pl_model_config *c = &m->cfg;
    struct pl_json *j = pl_json_new_object();
    if (!j) return pl_fail(PL_ERR_NOMEM, "export: out of memory");
    struct pl_json *a = pl_json_add_array(j, "architectures");
    pl_json_add_str(a, NULL, c->arch == PL_ARCH_QWEN2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
    pl_json_add_str(j, "model_type", c->arch == PL_ARCH_QWEN2 ? "qwen2" : "llama");
    pl_json_add_num(j, "hidden_size", c->dim);
    pl_json_add_num(j, "intermediate_size", c->hidden_dim);
    pl_json_add_num(j, "num_hidden_layers", c->n_layers);
    pl_json_add_num(j, "num_attention_heads", c->n_heads);
    pl_json_add_num(j, "num_key_value_heads", c->n_kv_heads);
    pl_json_add_num(j, "head_dim", c->head_dim);
    pl_json_add_num(j, "vocab_size", c->vocab_size);
    pl_json_add_num(j, "max_position_embeddings", c->seq_len);
    pl_json_add_num(j, "rms_norm_eps", c->norm_eps);
    pl_json_add_num(j, "rope_theta", c->rope_base);
    pl_json_add_bool(j, "tie_word_embeddings", c->tied_output);
    pl_json_add_str(j, "hidden_act", "silu");
    pl_json_add_str(j, "torch_dtype", "float32");
    if (c->bos_id >= 0) pl_json_add_num(j, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) pl_json_add_num(j, "eos_token_id", c->eos_id);
    char *txt = pl_json_print(j, 1);
    pl_json_free(j);
    if (!txt) return pl_fail(PL_ERR_NOMEM, "export: out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    const void *p[2] = { txt, "\n" };
    size_t s[2] = { strlen(txt), 1 };
    enum pl_status st = pl_file_write_atomic(path, p, s, 2);
    pl_free(txt);
    return st;
}

static enum pl_status export_safetensors(struct pl_model *m, const char *dir, enum pl_dtype dt)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return pl_fail(PL_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    struct pl_safetensors_writer *w = pl_safetensors_writer_new();
    if (!w) return PL_ERR_NOMEM;
    enum pl_status st = PL_OK;
    int np = pl_model_n_params(m);
    for (int i = 0; i < np && st == PL_OK; i++) {
        char name[160];
        struct pl_tensor *t = *pl_model_param(m, i, name, sizeof name);
        struct pl_tensor *src = NULL;
        int is_qk = strstr(name, "q_proj.weight") || strstr(name, "k_proj.weight");
        if (is_qk && m->cfg.rope_layout == PL_ROPE_LAYOUT_INTERLEAVED) {
            int64_t heads = strstr(name, "q_proj") ? m->cfg.n_heads : m->cfg.n_kv_heads;
            src = unpermute_rows(t, heads);
        } else {
            src = pl_tensor_retain(t);
        }
        if (!src) { st = PL_ERR_NOMEM; break; }
        enum pl_dtype want = pl_dtype_is_quant(src->dtype) || dt != (enum pl_dtype)-1 ? dt : src->dtype;
        if (want == (enum pl_dtype)-1) want = PL_F32;
        struct pl_tensor *c = pl_tensor_convert(src, want, PL_MEM_WORKSPACE);
        pl_tensor_release(src);
        if (!c) { st = PL_ERR_NOMEM; break; }
        st = pl_safetensors_add_tensor(w, name, c);
        pl_tensor_release(c);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st == PL_OK) st = pl_safetensors_writer_write(w, path);
    pl_safetensors_writer_free(w);
    if (st == PL_OK) st = write_hf_config(m, dir);
    return st;
}

static enum pl_status export_gguf(struct pl_model *m, const char *path, enum pl_dtype dt, int base)
{
    struct pl_gguf *src = NULL;
    if (m->format == PL_FORMAT_GGUF && pl_gguf_open(m->path, &src) != PL_OK) return PL_ERR_IO;
    if (base && !src)
        return pl_fail(PL_ERR_ARG, "export: dtype \"base\" needs a model loaded from GGUF (%s is not)", m->path);
    struct pl_gguf_writer *w = pl_gguf_writer_new();
    if (!w) { pl_gguf_close(src); return PL_ERR_NOMEM; }
    enum pl_status st = PL_OK;
    if (src) {
        st = pl_gguf_copy_kv(w, src);
    } else {
        const struct pl_model_config *c = &m->cfg;
        st = pl_gguf_set_str(w, "general.architecture", "llama");
        if (st == PL_OK) st = pl_gguf_set_str(w, "general.name", m->name ? m->name : "peftlua");
        if (st == PL_OK) st = pl_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layers);
        if (st == PL_OK) st = pl_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
        if (st == PL_OK) st = pl_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
        if (st == PL_OK) st = pl_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
        if (st == PL_OK) st = pl_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
        if (st == PL_OK) st = pl_gguf_set_u32(w, "llama.context_length", (uint32_t)c->seq_len);
        if (st == PL_OK) st = pl_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->n_rot);
        if (st == PL_OK) st = pl_gguf_set_f32(w, "llama.rope.freq_base", c->rope_base);
        if (st == PL_OK) st = pl_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    }
    int np = pl_model_n_params(m);
    for (int i = 0; i < np && st == PL_OK; i++) {
        char name[160], gname[160];
        struct pl_tensor *t = *pl_model_param(m, i, name, sizeof name);
        if (!pl_name_hf_to_gguf(name, gname, sizeof gname)) {   /* src/model/names.c */
            st = pl_fail(PL_ERR_UNSUPPORTED, "export: no GGUF name for %s", name);
            break;
        }
        enum pl_dtype want = dt;
        if (base) {
            int64_t k = pl_gguf_tensor_find(src, gname);
            want = k >= 0 ? pl_gguf_tensor_info(src, k)->dtype : PL_F32;
        }
        if (t->ndim == 1) want = PL_F32;   /* norms and biases stay f32, as llama.cpp writes them */
        struct pl_tensor *c = pl_tensor_convert(t, want, PL_MEM_WORKSPACE);
        if (!c) { st = pl_fail(PL_ERR_UNSUPPORTED, "export: %s to %s: %s", name, pl_dtype_info(want)->name, pl_last_error()); break; }
        st = pl_gguf_add_tensor(w, gname, c);
        pl_tensor_release(c);
    }
    if (st == PL_OK) st = pl_gguf_writer_write(w, path);
    pl_gguf_writer_free(w);
    pl_gguf_close(src);
    return st;
}

enum pl_status pl_train_export(struct pl_model *m, const char *path, const char *format,
                               const char *dtype)
{
    int base = dtype && strcmp(dtype, "base") == 0;
    enum pl_dtype dt = (enum pl_dtype)-1;
    if (dtype && !base) {
        int d = pl_dtype_from_name(dtype);
        if (d < 0) return pl_fail(PL_ERR_ARG, "export: unknown dtype \"%s\"", dtype);
        dt = (enum pl_dtype)d;
    }
    if (m->linear_hook)
        return pl_fail(PL_ERR_STATE, "export: adapters are attached; merge them first");
    if (strcmp(format, "gguf") == 0) {
        if (dt == (enum pl_dtype)-1 && !base) dt = PL_F32;
        return export_gguf(m, path, dt, base);
    }
    if (strcmp(format, "safetensors") == 0) {
        if (base) return pl_fail(PL_ERR_ARG, "export: safetensors holds f32, f16 or bf16, not \"base\"");
        if (dt != (enum pl_dtype)-1 && dt != PL_F32 && dt != PL_F16 && dt != PL_BF16)
            return pl_fail(PL_ERR_ARG, "export: safetensors holds f32, f16 or bf16, not %s", dtype);
        return export_safetensors(m, path, dt);
    }
    return pl_fail(PL_ERR_ARG, "export: format must be \"gguf\" or \"safetensors\", not \"%s\"", format);
}
