/* test_gguf.c — GGUF reader and writer: the real stories260K and SmolLM2 files, write→read
 * round trips (every metadata type, nested and string arrays, tensors of several dtypes,
 * alignment), tensor lifetime beyond close, and bad input written into a temporary directory
 * (truncation, wrong magic, out-of-range offsets, unsupported types, absurd counts/lengths),
 * each of which must fail with the right status and a message naming the file.
 *
 * Owner: formats. Run from the repository root. The SmolLM2 test skips (with a note) when
 * models/SmolLM2-135M-Instruct.Q4_1.gguf has not been fetched (`make model`).
 */
#include <math.h>
#include <unistd.h>
#include "pl_test.h"
#include "peftlua/gguf.h"
#include "peftlua/quant.h"
#include "peftlua/tensor.h"
#include "peftlua/alloc.h"

#define STORIES PL_SHARED "/models/stories260K/stories260K.gguf"
#define STORIES_BIN PL_SHARED "/models/stories260K/stories260K.bin"
#define SMOL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* ------------------------------------------------------------------ real files */

static void test_stories260k(void **state)
{
    (void)state;
    int64_t mapped0 = pl_mem_current(PL_MEM_MAPPED);
    struct pl_gguf *g;
    assert_int_equal(pl_gguf_open(STORIES, &g), PL_OK);
    assert_int_equal(pl_gguf_version(g), 3);
    assert_int_equal(pl_gguf_alignment(g), 32);
    assert_int_equal(pl_gguf_kv_count(g), 19);
    assert_int_equal(pl_gguf_tensor_count(g), 48);
    assert_int_equal(pl_mem_current(PL_MEM_MAPPED) - mapped0, (int64_t)pl_gguf_file_size(g));

    uint32_t u;
    assert_int_equal(pl_gguf_get_u32(g, "llama.embedding_length", &u), PL_OK); assert_int_equal(u, 64);
    assert_int_equal(pl_gguf_get_u32(g, "llama.block_count", &u), PL_OK); assert_int_equal(u, 5);
    assert_int_equal(pl_gguf_get_u32(g, "llama.attention.head_count", &u), PL_OK); assert_int_equal(u, 8);
    assert_int_equal(pl_gguf_get_u32(g, "llama.attention.head_count_kv", &u), PL_OK); assert_int_equal(u, 4);
    assert_int_equal(pl_gguf_get_u32(g, "llama.feed_forward_length", &u), PL_OK); assert_int_equal(u, 172);
    int32_t i32;
    assert_int_equal(pl_gguf_get_i32(g, "llama.context_length", &i32), PL_OK); assert_int_equal(i32, 2048);
    /* u32 0xffffffff does not fit an i32 */
    assert_int_equal(pl_gguf_get_i32(g, "tokenizer.ggml.padding_token_id", &i32), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "out of range"));
    float eps;
    assert_int_equal(pl_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), PL_OK);
    assert_true(eps == 1e-5f);
    const char *s;
    assert_int_equal(pl_gguf_get_str(g, "general.architecture", &s), PL_OK);
    assert_string_equal(s, "llama");
    assert_string_equal(pl_gguf_str_or(g, "tokenizer.ggml.model", "?"), "llama");
    assert_string_equal(pl_gguf_str_or(g, "nope", "dflt"), "dflt");
    assert_int_equal(pl_gguf_u32_or(g, "tokenizer.ggml.bos_token_id", 99), 1);
    assert_int_equal(pl_gguf_u32_or(g, "general.architecture", 99), 99);   /* wrong type → default */
    assert_int_equal(pl_gguf_get_u32(g, "general.architecture", &u), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "stories260K.gguf: metadata 'general.architecture' is string"));
    assert_int_equal(pl_gguf_get_u32(g, "no.such.key", &u), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "'no.such.key' not found"));

    enum pl_gguf_type et;
    uint64_t n;
    assert_int_equal(pl_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n), PL_OK);
    assert_int_equal(et, PL_GGUF_STRING);
    assert_int_equal(n, 512);
    uint64_t len;
    assert_int_equal(pl_gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s, &len), PL_OK);
    assert_string_equal(s, "<unk>");
    assert_int_equal(len, 5);
    assert_int_equal(pl_gguf_arr_str(g, "tokenizer.ggml.tokens", 512, &s, &len), PL_ERR_ARG);
    const struct pl_gguf_str *toks = pl_gguf_str_array(g, "tokenizer.ggml.tokens", &n);
    assert_non_null(toks);
    assert_int_equal(n, 512);
    assert_string_equal(toks[1].s, "<s>");
    assert_string_equal(toks[2].s, "</s>");
    assert_null(pl_gguf_str_array(g, "tokenizer.ggml.scores", &n));
    int64_t tt;
    assert_int_equal(pl_gguf_arr_i64(g, "tokenizer.ggml.token_type", 0, &tt), PL_OK);
    assert_int_equal(tt, 2);
    float sc;
    assert_int_equal(pl_gguf_arr_f32(g, "tokenizer.ggml.scores", 0, &sc), PL_OK);
    assert_true(sc == 0.0f);

    /* token_embd.weight is bit-identical to the llama2.c checkpoint's embedding table,
     * which follows its 7-int header */
    const int64_t ti = pl_gguf_tensor_find(g, "token_embd.weight");
    assert_true(ti >= 0);
    const struct pl_gguf_tensor_info *info = pl_gguf_tensor_info(g, ti);
    assert_int_equal(info->dtype, PL_F32);
    assert_int_equal(info->ndim, 2);
    assert_int_equal(info->shape[0], 512);
    assert_int_equal(info->shape[1], 64);
    assert_int_equal(info->ne[0], 64);
    assert_int_equal(info->nbytes, 512 * 64 * 4);
    assert_int_equal(info->offset % 32, 0);
    size_t nbin;
    uint8_t *bin = pl_test_read(STORIES_BIN, &nbin);
    assert_memory_equal((const uint8_t *)info->data, bin + 28, 512 * 64 * 4);

    struct pl_tensor *t = pl_gguf_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 512);
    assert_int_equal(t->shape[1], 64);
    assert_ptr_equal(pl_tensor_data(t), info->data);
    assert_null(pl_gguf_tensor(g, "blk.99.attn_q.weight"));
    assert_non_null(strstr(pl_last_error(), "stories260K.gguf: no tensor 'blk.99.attn_q.weight'"));

    /* the mapping outlives close while a tensor holds it */
    pl_gguf_close(g);
    assert_true(pl_mem_current(PL_MEM_MAPPED) > mapped0);
    assert_memory_equal(pl_tensor_data(t), bin + 28, 512 * 64 * 4);
    pl_tensor_release(t);
    assert_int_equal(pl_mem_current(PL_MEM_MAPPED), mapped0);
    free(bin);
}

static void test_smollm2(void **state)
{
    (void)state;
    if (access(SMOL, R_OK) != 0) {
        print_message("note: %s absent (run `make model`); SmolLM2 checks skipped\n", SMOL);
        skip();
    }
    struct pl_gguf *g;
    assert_int_equal(pl_gguf_open(SMOL, &g), PL_OK);
    assert_int_equal(pl_gguf_tensor_count(g), 272);
    int count[PL_DTYPE_COUNT] = {0};
    for (int64_t i = 0; i < pl_gguf_tensor_count(g); i++) count[pl_gguf_tensor_info(g, i)->dtype]++;
    assert_int_equal(count[PL_Q4_1], 210);
    assert_int_equal(count[PL_F32], 61);
    assert_int_equal(count[PL_Q8_0], 1);
    assert_string_equal(pl_gguf_str_or(g, "general.architecture", ""), "llama");
    uint32_t u;
    assert_int_equal(pl_gguf_get_u32(g, "llama.block_count", &u), PL_OK); assert_int_equal(u, 30);
    assert_int_equal(pl_gguf_get_u32(g, "llama.embedding_length", &u), PL_OK); assert_int_equal(u, 576);
    uint64_t n;
    assert_non_null(pl_gguf_str_array(g, "tokenizer.ggml.tokens", &n));
    assert_int_equal(n, 49152);
    assert_non_null(pl_gguf_str_array(g, "tokenizer.ggml.merges", &n));
    assert_true(n > 40000);
    /* a Q4_1 weight dequantises to finite values of a plausible magnitude */
    struct pl_tensor *t = pl_gguf_tensor(g, "blk.0.attn_q.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, PL_Q4_1);
    assert_int_equal(t->shape[0], 576);
    assert_int_equal(t->shape[1], 576);
    float row[576];
    double ss = 0;
    assert_int_equal(pl_dequant_row(PL_Q4_1, pl_tensor_data(t), row, 576), PL_OK);
    for (int i = 0; i < 576; i++) { assert_true(isfinite(row[i])); ss += row[i] * row[i]; }
    assert_true(ss > 0 && sqrt(ss / 576) < 5);
    pl_tensor_release(t);
    pl_gguf_close(g);
}

/* llama.cpp's vocabulary-only files (no tensors) from several converters all parse, with the
 * published vocabulary sizes. */
static void test_vocab_files(void **state)
{
    (void)state;
    const struct { const char *name; uint64_t n_tokens; const char *model; } v[] = {
        { "llama-spm", 32000, "llama" }, { "gpt-2", 50257, "gpt2" }, { "bert-bge", 30522, "bert" },
        { "phi-3", 32064, "llama" }, { "deepseek-llm", 102400, "gpt2" }, { "falcon", 65024, "gpt2" },
        { "starcoder", 49152, "gpt2" }, { "baichuan", 64000, "llama" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, PL_SHARED "/tokenizer-tests/llamacpp/ggml-vocab-%s.gguf", v[i].name);
        struct pl_gguf *g;
        assert_int_equal(pl_gguf_open(path, &g), PL_OK);
        assert_int_equal(pl_gguf_tensor_count(g), 0);
        uint64_t n = 0;
        const struct pl_gguf_str *toks = pl_gguf_str_array(g, "tokenizer.ggml.tokens", &n);
        assert_non_null(toks);
        assert_int_equal(n, v[i].n_tokens);
        assert_string_equal(pl_gguf_str_or(g, "tokenizer.ggml.model", ""), v[i].model);
        pl_gguf_close(g);
    }
}

/* ------------------------------------------------------------------ round trips */

static int values_equal(const struct pl_gguf_value *a, const struct pl_gguf_value *b)
{
    if (a->type != b->type) return 0;
    switch (a->type) {
    case PL_GGUF_UINT8: case PL_GGUF_UINT16: case PL_GGUF_UINT32: case PL_GGUF_UINT64: return a->v.u64 == b->v.u64;
    case PL_GGUF_INT8: case PL_GGUF_INT16: case PL_GGUF_INT32: case PL_GGUF_INT64: return a->v.i64 == b->v.i64;
    case PL_GGUF_FLOAT32: case PL_GGUF_FLOAT64: return memcmp(&a->v.f64, &b->v.f64, 8) == 0;
    case PL_GGUF_BOOL: return a->v.b == b->v.b;
    case PL_GGUF_STRING: return a->v.str.len == b->v.str.len && memcmp(a->v.str.s, b->v.str.s, a->v.str.len) == 0;
    case PL_GGUF_ARRAY:
        if (a->v.arr.elem != b->v.arr.elem || a->v.arr.n != b->v.arr.n) return 0;
        if (a->v.arr.elem == PL_GGUF_STRING) {
            const struct pl_gguf_str *x = a->v.arr.data, *y = b->v.arr.data;
            for (uint64_t i = 0; i < a->v.arr.n; i++)
                if (x[i].len != y[i].len || memcmp(x[i].s, y[i].s, x[i].len)) return 0;
            return 1;
        }
        if (a->v.arr.elem == PL_GGUF_ARRAY) {
            const struct pl_gguf_value *x = a->v.arr.data, *y = b->v.arr.data;
            for (uint64_t i = 0; i < a->v.arr.n; i++)
                if (!values_equal(&x[i], &y[i])) return 0;
            return 1;
        }
        return a->v.arr.n == 0 ||
               memcmp(a->v.arr.data, b->v.arr.data, a->v.arr.n * pl_gguf_type_size(a->v.arr.elem)) == 0;
    default: return 0;
    }
}

/* Every metadata key and tensor of g into w, in g's order. */
static void copy_all(struct pl_gguf_writer *w, struct pl_gguf *g)
{
    assert_int_equal(pl_gguf_copy_kv(w, g), PL_OK);
    for (int64_t i = 0; i < pl_gguf_tensor_count(g); i++) {
        struct pl_tensor *t = pl_gguf_tensor_at(g, i);
        assert_non_null(t);
        assert_int_equal(pl_gguf_add_tensor(w, pl_gguf_tensor_info(g, i)->name, t), PL_OK);
        pl_tensor_release(t);
    }
}

static void assert_same_file(const struct pl_gguf *a, const struct pl_gguf *b)
{
    assert_int_equal(pl_gguf_kv_count(a), pl_gguf_kv_count(b));
    for (int64_t i = 0; i < pl_gguf_kv_count(a); i++) {
        assert_string_equal(pl_gguf_kv_key(a, i), pl_gguf_kv_key(b, i));
        assert_true(values_equal(pl_gguf_kv_value(a, i), pl_gguf_kv_value(b, i)));
    }
    assert_int_equal(pl_gguf_tensor_count(a), pl_gguf_tensor_count(b));
    for (int64_t i = 0; i < pl_gguf_tensor_count(a); i++) {
        const struct pl_gguf_tensor_info *x = pl_gguf_tensor_info(a, i), *y = pl_gguf_tensor_info(b, i);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        assert_memory_equal(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
        assert_int_equal(y->offset % pl_gguf_alignment(b), 0);
    }
}

static void test_roundtrip_stories(void **state)
{
    (void)state;
    struct pl_gguf *g, *h;
    assert_int_equal(pl_gguf_open(STORIES, &g), PL_OK);
    struct pl_gguf_writer *w = pl_gguf_writer_new();
    assert_non_null(w);
    copy_all(w, g);
    struct pl_tensor *dup = pl_gguf_tensor_at(g, 0);
    assert_int_equal(pl_gguf_add_tensor(w, "token_embd.weight", dup), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "duplicate tensor name"));
    pl_tensor_release(dup);
    const char *out = pl_test_tmp("stories_copy.gguf");
    assert_int_equal(pl_gguf_writer_write(w, out), PL_OK);
    pl_gguf_writer_free(w);
    assert_int_equal(pl_gguf_open(out, &h), PL_OK);
    assert_same_file(g, h);
    /* same layout as the original: the files are byte-identical */
    size_t n1, n2;
    uint8_t *b1 = pl_test_read(STORIES, &n1), *b2 = pl_test_read(out, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    /* GGUF v2 has the same layout for these types: the same bytes with version 2 read alike */
    b2[4] = 2;
    const char *v2 = pl_test_tmp("stories_v2.gguf");
    pl_test_write(v2, b2, n2);
    struct pl_gguf *g2;
    assert_int_equal(pl_gguf_open(v2, &g2), PL_OK);
    assert_int_equal(pl_gguf_version(g2), 2);
    assert_same_file(g, g2);
    pl_gguf_close(g2);
    free(b1);
    free(b2);
    pl_gguf_close(h);
    pl_gguf_close(g);
}

static struct pl_tensor *make_tensor(enum pl_dtype dt, int ndim, const int64_t *shape, unsigned seed)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)sin(0.37 * (double)i + seed) * 2.0f;
    struct pl_tensor *t = pl_tensor_new(dt, ndim, shape, PL_MEM_WEIGHTS);
    assert_non_null(t);
    assert_int_equal(pl_quant_row(dt, x, pl_tensor_data(t), n), PL_OK);
    free(x);
    return t;
}

static void test_writer_all_types(void **state)
{
    (void)state;
    struct pl_gguf_writer *w = pl_gguf_writer_new();
    assert_int_equal(pl_gguf_set_u8(w, "t.u8", 200), PL_OK);
    assert_int_equal(pl_gguf_set_i8(w, "t.i8", -100), PL_OK);
    assert_int_equal(pl_gguf_set_u16(w, "t.u16", 60000), PL_OK);
    assert_int_equal(pl_gguf_set_i16(w, "t.i16", -30000), PL_OK);
    assert_int_equal(pl_gguf_set_u32(w, "t.u32", 4000000000u), PL_OK);
    assert_int_equal(pl_gguf_set_i32(w, "t.i32", -2000000000), PL_OK);
    assert_int_equal(pl_gguf_set_u64(w, "t.u64", UINT64_MAX - 5), PL_OK);
    assert_int_equal(pl_gguf_set_i64(w, "t.i64", INT64_MIN + 7), PL_OK);
    assert_int_equal(pl_gguf_set_f32(w, "t.f32", 0.1f), PL_OK);
    assert_int_equal(pl_gguf_set_f64(w, "t.f64", 0.1), PL_OK);
    assert_int_equal(pl_gguf_set_bool(w, "t.bool", 1), PL_OK);
    assert_int_equal(pl_gguf_set_str(w, "t.str", "héllo"), PL_OK);
    assert_int_equal(pl_gguf_set_str(w, "t.str", "replaced"), PL_OK);   /* replaces in place */
    const char *strs[] = { "a", "", "<|im_start|>", "Ġthe" };
    assert_int_equal(pl_gguf_set_arr_str(w, "t.strs", strs, 4), PL_OK);
    const int32_t ints[] = { 1, -2, 3 };
    assert_int_equal(pl_gguf_set_arr(w, "t.ints", PL_GGUF_INT32, ints, 3), PL_OK);
    const float fl[] = { 1.5f, -2.25f };
    assert_int_equal(pl_gguf_set_arr(w, "t.floats", PL_GGUF_FLOAT32, fl, 2), PL_OK);
    assert_int_equal(pl_gguf_set_arr(w, "t.empty", PL_GGUF_UINT64, NULL, 0), PL_OK);
    assert_int_equal(pl_gguf_set_arr(w, "t.bad", PL_GGUF_STRING, strs, 1), PL_ERR_ARG);
    /* nested: [[1,2],[3]] of u16 and [["x"]] */
    const uint16_t a1[] = { 1, 2 }, a2[] = { 3 };
    struct pl_gguf_str xs = { "x", 1 };
    struct pl_gguf_value inner[3] = {
        { .type = PL_GGUF_ARRAY, .v.arr = { PL_GGUF_UINT16, 2, a1 } },
        { .type = PL_GGUF_ARRAY, .v.arr = { PL_GGUF_UINT16, 1, a2 } },
        { .type = PL_GGUF_ARRAY, .v.arr = { PL_GGUF_STRING, 1, &xs } },
    };
    struct pl_gguf_value outer = { .type = PL_GGUF_ARRAY, .v.arr = { PL_GGUF_ARRAY, 3, inner } };
    assert_int_equal(pl_gguf_set_value(w, "t.nested", &outer), PL_OK);
    assert_int_equal(pl_gguf_set_alignment(w, 48), PL_ERR_ARG);
    assert_int_equal(pl_gguf_set_alignment(w, 64), PL_OK);

    const int64_t s1[] = { 3, 256 }, s2[] = { 5 }, s3[] = { 2, 2, 64 };
    struct pl_tensor *ts[] = {
        make_tensor(PL_Q4_K, 2, s1, 1), make_tensor(PL_F16, 1, s2, 2), make_tensor(PL_BF16, 1, s2, 3),
        make_tensor(PL_Q8_0, 3, s3, 4), make_tensor(PL_I8, 1, s2, 5), make_tensor(PL_F32, 1, s2, 6),
        make_tensor(PL_Q6_K, 2, s1, 7),
    };
    const char *names[] = { "a.q4k", "b.f16", "c.bf16", "d.q80", "e.i8", "f.f32", "g.q6k" };
    for (int i = 0; i < 7; i++) assert_int_equal(pl_gguf_add_tensor(w, names[i], ts[i]), PL_OK);
    struct pl_tensor *nf = make_tensor(PL_NF4, 1, s1 + 1, 8);
    assert_int_equal(pl_gguf_add_tensor(w, "nf4", nf), PL_ERR_UNSUPPORTED);
    pl_tensor_release(nf);
    const char *out = pl_test_tmp("types.gguf");
    assert_int_equal(pl_gguf_writer_write(w, out), PL_OK);
    pl_gguf_writer_free(w);

    struct pl_gguf *g;
    assert_int_equal(pl_gguf_open(out, &g), PL_OK);
    assert_int_equal(pl_gguf_alignment(g), 64);
    assert_int_equal(pl_gguf_data_offset(g) % 64, 0);
    uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f; double d; int b; const char *s;
    assert_int_equal(pl_gguf_get_u32(g, "t.u8", &u32), PL_OK); assert_int_equal(u32, 200);
    assert_int_equal(pl_gguf_get_i32(g, "t.i8", &i32), PL_OK); assert_int_equal(i32, -100);
    assert_int_equal(pl_gguf_get_u32(g, "t.u16", &u32), PL_OK); assert_int_equal(u32, 60000);
    assert_int_equal(pl_gguf_get_i32(g, "t.i16", &i32), PL_OK); assert_int_equal(i32, -30000);
    assert_int_equal(pl_gguf_get_u32(g, "t.u32", &u32), PL_OK); assert_int_equal(u32, 4000000000u);
    assert_int_equal(pl_gguf_get_i32(g, "t.i32", &i32), PL_OK); assert_int_equal(i32, -2000000000);
    assert_int_equal(pl_gguf_get_u64(g, "t.u64", &u64), PL_OK); assert_true(u64 == UINT64_MAX - 5);
    assert_int_equal(pl_gguf_get_i64(g, "t.i64", &i64), PL_OK); assert_true(i64 == INT64_MIN + 7);
    assert_int_equal(pl_gguf_get_u32(g, "t.i8", &u32), PL_ERR_FORMAT);   /* negative */
    assert_int_equal(pl_gguf_get_f32(g, "t.f32", &f), PL_OK); assert_true(f == 0.1f);
    assert_int_equal(pl_gguf_get_f64(g, "t.f64", &d), PL_OK); assert_true(d == 0.1);
    assert_int_equal(pl_gguf_get_f64(g, "t.u16", &d), PL_OK); assert_true(d == 60000.0);
    assert_int_equal(pl_gguf_get_bool(g, "t.bool", &b), PL_OK); assert_int_equal(b, 1);
    assert_int_equal(pl_gguf_get_str(g, "t.str", &s), PL_OK); assert_string_equal(s, "replaced");
    assert_int_equal(pl_gguf_find_key(g, "t.str"), 11);                 /* kept its position */
    uint64_t n;
    const struct pl_gguf_str *sa = pl_gguf_str_array(g, "t.strs", &n);
    assert_non_null(sa);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) assert_string_equal(sa[i].s, strs[i]);
    assert_int_equal(pl_gguf_arr_i64(g, "t.ints", 1, &i64), PL_OK); assert_int_equal(i64, -2);
    assert_int_equal(pl_gguf_arr_f32(g, "t.floats", 1, &f), PL_OK); assert_true(f == -2.25f);
    enum pl_gguf_type et;
    assert_int_equal(pl_gguf_get_arr(g, "t.empty", &et, &n), PL_OK);
    assert_int_equal(et, PL_GGUF_UINT64); assert_int_equal(n, 0);
    const struct pl_gguf_value *nv = pl_gguf_find(g, "t.nested");
    assert_non_null(nv);
    assert_true(values_equal(nv, &outer));
    const struct pl_gguf_value *nest = nv->v.arr.data;
    assert_true(pl_gguf_value_i64(&nest[0], 1, &i64)); assert_int_equal(i64, 2);
    assert_false(pl_gguf_value_i64(&nest[0], 2, &i64));
    for (int i = 0; i < 7; i++) {
        struct pl_tensor *t = pl_gguf_tensor(g, names[i]);
        assert_non_null(t);
        assert_int_equal(t->dtype, ts[i]->dtype);
        assert_int_equal(t->ndim, ts[i]->ndim);
        assert_memory_equal(t->shape, ts[i]->shape, sizeof(int64_t) * (size_t)t->ndim);
        assert_int_equal(pl_tensor_nbytes(t), pl_tensor_nbytes(ts[i]));
        assert_memory_equal(pl_tensor_data(t), pl_tensor_data(ts[i]), pl_tensor_nbytes(t));
        assert_int_equal(pl_gguf_tensor_info(g, i)->offset % 64, 0);
        pl_tensor_release(t);
        pl_tensor_release(ts[i]);
    }
    /* rewrite through copy_kv: identical metadata */
    struct pl_gguf_writer *w2 = pl_gguf_writer_new();
    copy_all(w2, g);
    const char *out2 = pl_test_tmp("types2.gguf");
    assert_int_equal(pl_gguf_writer_write(w2, out2), PL_OK);
    pl_gguf_writer_free(w2);
    struct pl_gguf *h;
    assert_int_equal(pl_gguf_open(out2, &h), PL_OK);
    assert_same_file(g, h);
    pl_gguf_close(h);
    pl_gguf_close(g);
    /* no temporary files left behind */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", pl_test_dir);
    assert_int_not_equal(system(cmd), 0);
    /* writing into a missing directory fails cleanly */
    w = pl_gguf_writer_new();
    assert_int_equal(pl_gguf_writer_write(w, "/nonexistent-dir/x.gguf"), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "/nonexistent-dir/x.gguf"));
    pl_gguf_writer_free(w);
}

/* ------------------------------------------------------------------ bad input */

struct buf { uint8_t *p; size_t n, cap; };
static void b_put(struct buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2 + 64; b->p = realloc(b->p, b->cap); }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void b_u32(struct buf *b, uint32_t x) { b_put(b, &x, 4); }
static void b_u64(struct buf *b, uint64_t x) { b_put(b, &x, 8); }
static void b_str(struct buf *b, const char *s) { b_u64(b, strlen(s)); b_put(b, s, strlen(s)); }

/* A small GGUF with one kv and one tensor whose fields the caller chooses. */
struct spec {
    uint32_t version; uint64_t n_kv_claim, n_t_claim;
    uint32_t ndim; int64_t ne0, ne1; uint32_t type; uint64_t offset; size_t data_bytes;
    uint64_t key_len_override;
};
static void build(struct buf *b, const struct spec *s)
{
    b->n = 0;
    b_put(b, "GGUF", 4);
    b_u32(b, s->version);
    b_u64(b, s->n_t_claim);
    b_u64(b, s->n_kv_claim);
    if (s->key_len_override) { b_u64(b, s->key_len_override); b_put(b, "general.name", 12); }
    else b_str(b, "general.name");
    b_u32(b, PL_GGUF_STRING);
    b_str(b, "bad");
    b_str(b, "blk.0.attn_q.weight");
    b_u32(b, s->ndim);
    b_u64(b, (uint64_t)s->ne0);
    if (s->ndim > 1) b_u64(b, (uint64_t)s->ne1);
    b_u32(b, s->type);
    b_u64(b, s->offset);
    while (b->n % 32) b_put(b, "", 1);
    for (size_t i = 0; i < s->data_bytes; i++) b_put(b, "\x01", 1);
}

static const struct spec good = { 3, 1, 1, 2, 32, 4, 0, 0, 512, 0 };

static void expect_fail(const struct buf *b, const char *name, enum pl_status want, const char *needle)
{
    const char *path = pl_test_tmp(name);
    pl_test_write(path, b->p, b->n);
    struct pl_gguf *g = (struct pl_gguf *)0x1;
    enum pl_status st = pl_gguf_open(path, &g);
    if (st != want || !strstr(pl_last_error(), name) || (needle && !strstr(pl_last_error(), needle)))
        print_message("%s: status %d, message: %s\n", name, (int)st, pl_last_error());
    assert_int_equal(st, want);
    assert_null(g);
    assert_non_null(strstr(pl_last_error(), name));
    if (needle) assert_non_null(strstr(pl_last_error(), needle));
}

static void test_bad_input(void **state)
{
    (void)state;
    struct buf b = {0};
    struct spec s = good;
    build(&b, &s);
    {   /* the baseline is valid */
        const char *path = pl_test_tmp("good.gguf");
        pl_test_write(path, b.p, b.n);
        struct pl_gguf *g;
        assert_int_equal(pl_gguf_open(path, &g), PL_OK);
        assert_int_equal(pl_gguf_tensor_info(g, 0)->nbytes, 512);
        pl_gguf_close(g);
    }
    struct buf t = { malloc(b.n), b.n - 1, b.n };
    memcpy(t.p, b.p, b.n);
    expect_fail(&t, "truncated_data.gguf", PL_ERR_FORMAT, "runs past end of file");
    t.n = 30;
    expect_fail(&t, "truncated_header.gguf", PL_ERR_FORMAT, "truncated");
    t.n = 0;
    expect_fail(&t, "empty.gguf", PL_ERR_FORMAT, "empty");
    free(t.p);

    b.p[0] = 'G'; b.p[1] = 'G'; b.p[2] = 'M'; b.p[3] = 'L';
    expect_fail(&b, "wrong_magic.gguf", PL_ERR_FORMAT, "not a GGUF file");

    s = good; s.offset = 4096; build(&b, &s);
    expect_fail(&b, "offset_range.gguf", PL_ERR_FORMAT,
                "tensor 'blk.0.attn_q.weight' data [offset 4224, 512 bytes] runs past end of file");
    s = good; s.offset = 8; build(&b, &s);
    expect_fail(&b, "offset_align.gguf", PL_ERR_FORMAT, "not a multiple of the alignment");
    s = good; s.offset = UINT64_MAX - 31; build(&b, &s);
    expect_fail(&b, "offset_huge.gguf", PL_ERR_FORMAT, "runs past end of file");
    s = good; s.type = 16; build(&b, &s);
    expect_fail(&b, "iq2.gguf", PL_ERR_UNSUPPORTED, "'blk.0.attn_q.weight' has type 16 (iq2_xxs)");
    s = good; s.type = 1000; build(&b, &s);
    expect_fail(&b, "type1000.gguf", PL_ERR_UNSUPPORTED, "type 1000");
    s = good; s.type = 2; s.ne0 = 48; build(&b, &s);
    expect_fail(&b, "badrow.gguf", PL_ERR_FORMAT, "not a multiple of the q4_0 block size 32");
    s = good; s.n_kv_claim = 1000000000000ull; build(&b, &s);
    expect_fail(&b, "kv_count.gguf", PL_ERR_FORMAT, "metadata count 1000000000000 is impossible");
    s = good; s.n_t_claim = UINT64_MAX; build(&b, &s);
    expect_fail(&b, "t_count.gguf", PL_ERR_FORMAT, "tensor count");
    s = good; s.key_len_override = 1ull << 62; build(&b, &s);
    expect_fail(&b, "keylen.gguf", PL_ERR_FORMAT, "string length 4611686018427387904");
    s = good; s.ndim = 0; build(&b, &s);
    expect_fail(&b, "ndim0.gguf", PL_ERR_FORMAT, "0 dimensions");
    s = good; s.ndim = 9; build(&b, &s);
    expect_fail(&b, "ndim9.gguf", PL_ERR_FORMAT, "9 dimensions");
    s = good; s.ne1 = -4; build(&b, &s);
    expect_fail(&b, "negdim.gguf", PL_ERR_FORMAT, "negative dimension");
    s = good; s.ne0 = 1ll << 40; s.ne1 = 1ll << 40; build(&b, &s);
    expect_fail(&b, "overflow.gguf", PL_ERR_FORMAT, "overflows");
    s = good; s.version = 1; build(&b, &s);
    expect_fail(&b, "v1.gguf", PL_ERR_UNSUPPORTED, "version 1");
    s = good; s.version = 7; build(&b, &s);
    expect_fail(&b, "v7.gguf", PL_ERR_FORMAT, "unknown GGUF version 7");
    s = good; s.version = 0x03000000; build(&b, &s);
    expect_fail(&b, "bigendian.gguf", PL_ERR_UNSUPPORTED, "big-endian");

    /* metadata oddities: bad value type, huge array, deep nesting, bad alignment, duplicates */
    const struct { const char *name; const char *needle; int kind; } kvcases[] = {
        { "kvtype.gguf", "unknown value type 77", 0 },
        { "arrhuge.gguf", "cannot fit", 1 },
        { "nest.gguf", "nested deeper", 2 },
        { "align.gguf", "not a power of two", 3 },
        { "dupkey.gguf", "duplicate metadata key", 4 },
        { "strarr.gguf", "runs past end of file", 5 },
        { "aligntype.gguf", "general.alignment has type string", 6 },
    };
    for (size_t c = 0; c < sizeof kvcases / sizeof kvcases[0]; c++) {
        b.n = 0;
        b_put(&b, "GGUF", 4); b_u32(&b, 3); b_u64(&b, 0);
        b_u64(&b, kvcases[c].kind == 4 ? 2 : 1);
        switch (kvcases[c].kind) {
        case 0: b_str(&b, "k"); b_u32(&b, 77); b_u32(&b, 0); break;
        case 1: b_str(&b, "k"); b_u32(&b, PL_GGUF_ARRAY); b_u32(&b, PL_GGUF_UINT64); b_u64(&b, 1ull << 60); break;
        case 2: b_str(&b, "k"); b_u32(&b, PL_GGUF_ARRAY);
                for (int i = 0; i < 20; i++) { b_u32(&b, PL_GGUF_ARRAY); b_u64(&b, 1); }
                b_u32(&b, PL_GGUF_UINT8); b_u64(&b, 0); break;
        case 3: b_str(&b, "general.alignment"); b_u32(&b, PL_GGUF_UINT32); b_u32(&b, 48); break;
        case 4: b_str(&b, "k"); b_u32(&b, PL_GGUF_UINT8); b_put(&b, "\1", 1);
                b_str(&b, "k"); b_u32(&b, PL_GGUF_UINT8); b_put(&b, "\1", 1); break;
        case 5: b_str(&b, "k"); b_u32(&b, PL_GGUF_ARRAY); b_u32(&b, PL_GGUF_STRING); b_u64(&b, 2);
                b_str(&b, "ok"); b_u64(&b, 1000); b_put(&b, "short", 5); break;
        case 6: b_str(&b, "general.alignment"); b_u32(&b, PL_GGUF_STRING); b_str(&b, "32"); break;
        }
        expect_fail(&b, kvcases[c].name, PL_ERR_FORMAT, kvcases[c].needle);
    }
    free(b.p);

    struct pl_gguf *g;
    assert_int_equal(pl_gguf_open(pl_test_tmp("missing.gguf"), &g), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "missing.gguf"));
    assert_int_equal(pl_gguf_open(pl_test_dir, &g), PL_ERR_IO);
}

/* Every truncation of the real file's header region, and random byte corruption, fails
 * cleanly or parses — never a crash (this is what ASan/UBSan watch). */
static void test_truncations_and_corruption(void **state)
{
    (void)state;
    size_t n;
    uint8_t *full = pl_test_read(STORIES, &n);
    struct pl_gguf *g;
    assert_int_equal(pl_gguf_open(STORIES, &g), PL_OK);
    const size_t hdr = (size_t)pl_gguf_data_offset(g);
    pl_gguf_close(g);
    const char *path = pl_test_tmp("cut.gguf");
    int fails = 0;
    for (size_t cut = 0; cut < hdr + 64; cut += (cut < 256 ? 1 : 37)) {
        pl_test_write(path, full, cut);
        enum pl_status st = pl_gguf_open(path, &g);
        assert_int_equal(st, PL_ERR_FORMAT);
        assert_non_null(strstr(pl_last_error(), "cut.gguf"));
        fails++;
    }
    assert_true(fails > 300);
    uint64_t r = 12345;
    int opened = 0;
    const char *cpath = pl_test_tmp("corrupt.gguf");
    uint8_t *c = malloc(n);
    for (int it = 0; it < 60; it++) {
        memcpy(c, full, n);
        for (int k = 0; k < 4; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            c[(r >> 33) % hdr] ^= (uint8_t)(1u << ((r >> 20) & 7));
        }
        pl_test_write(cpath, c, n);
        if (pl_gguf_open(cpath, &g) == PL_OK) {
            opened++;
            for (int64_t i = 0; i < pl_gguf_tensor_count(g); i++) {
                struct pl_tensor *t = pl_gguf_tensor_at(g, i);
                if (t) pl_tensor_release(t);
            }
            pl_gguf_close(g);
        } else {
            assert_non_null(strstr(pl_last_error(), "corrupt.gguf"));
        }
    }
    print_message("corruption: %d of 60 corrupted files still parsed (bit flips in strings)\n", opened);
    free(c);
    free(full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_vocab_files),
        cmocka_unit_test(test_roundtrip_stories),
        cmocka_unit_test(test_writer_all_types),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_truncations_and_corruption),
    };
    return cmocka_run_group_tests(tests, pl_test_tmpdir_setup, pl_test_tmpdir_teardown);
}
