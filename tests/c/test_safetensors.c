/* test_safetensors.c — safetensors reader and writer: hand-written files laid out as the
 * format's specification says (an independent check of the reader), write→read round trips
 * of every supported dtype with __metadata__, sharded models through
 * model.safetensors.index.json, tensor lifetime beyond close, and bad input (truncation,
 * header length, bad JSON, unsupported dtypes, inconsistent offsets) → the right status and a
 * message naming the file.
 *
 * Owner: formats. Run from the repository root.
 */
#include "pl_test.h"
#include "peftlua/safetensors.h"
#include "peftlua/quant.h"
#include "peftlua/tensor.h"
#include "peftlua/alloc.h"

/* A file: u64 header length, the header text (padded to pad bytes if larger), data bytes. */
static void write_st(const char *path, const char *header, const void *data, size_t n, uint64_t claim)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hl = claim ? claim : strlen(header);
    fwrite(&hl, 8, 1, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void test_handwritten(void **state)
{
    (void)state;
    /* two tensors, keys not in data order, metadata last, header padded with spaces */
    const char *hdr = "{\"b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[12,15]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[0,12]},"
                      "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[15,17]},"
                      "\"__metadata__\":{\"format\":\"pt\"}}   ";
    uint8_t data[17];
    const float a[3] = { 1.5f, -2.0f, 3.25f };
    memcpy(data, a, 12);
    data[12] = 0xff; data[13] = 7; data[14] = 0x80;
    const uint16_t bf = 0xc0a0;   /* -5.0 */
    memcpy(data + 15, &bf, 2);
    const char *path = pl_test_tmp("hand.safetensors");
    write_st(path, hdr, data, sizeof data, 0);

    int64_t mapped0 = pl_mem_current(PL_MEM_MAPPED);
    struct pl_safetensors *st;
    assert_int_equal(pl_safetensors_open(path, &st), PL_OK);
    assert_true(pl_mem_current(PL_MEM_MAPPED) > mapped0);
    assert_int_equal(pl_safetensors_count(st), 3);
    assert_string_equal(pl_safetensors_meta(st, "format"), "pt");
    assert_null(pl_safetensors_meta(st, "nope"));
    assert_int_equal(pl_safetensors_meta_count(st), 1);
    struct pl_tensor *ta = pl_safetensors_tensor(st, "a");
    struct pl_tensor *tb = pl_safetensors_tensor(st, "b");
    struct pl_tensor *ts = pl_safetensors_tensor(st, "s");
    assert_non_null(ta); assert_non_null(tb); assert_non_null(ts);
    assert_int_equal(ta->dtype, PL_F32);
    assert_int_equal(ta->ndim, 2);
    assert_int_equal(ta->shape[0], 1);
    assert_int_equal(ta->shape[1], 3);
    assert_memory_equal(pl_tensor_data(ta), a, 12);
    assert_int_equal(tb->dtype, PL_I8);
    assert_int_equal(((int8_t *)pl_tensor_data(tb))[0], -1);
    assert_int_equal(((int8_t *)pl_tensor_data(tb))[2], -128);
    assert_int_equal(ts->ndim, 0);
    uint16_t got;
    memcpy(&got, pl_tensor_data(ts), 2);
    assert_true(pl_bf16_to_f32(got) == -5.0f);
    assert_null(pl_safetensors_tensor(st, "zz"));
    assert_non_null(strstr(pl_last_error(), "hand.safetensors: no tensor 'zz'"));
    pl_safetensors_close(st);
    /* tensors keep the mapping */
    assert_memory_equal(pl_tensor_data(ta), a, 12);
    pl_tensor_release(ta);
    pl_tensor_release(tb);
    pl_tensor_release(ts);
    assert_int_equal(pl_mem_current(PL_MEM_MAPPED), mapped0);
}

/* A file written by the official safetensors library (tests/ref/quant/make_goldens.py). */
static void test_reference_file(void **state)
{
    (void)state;
    struct pl_safetensors *st;
    assert_int_equal(pl_safetensors_open("tests/ref/quant/reference.safetensors", &st), PL_OK);
    assert_int_equal(pl_safetensors_count(st), 5);
    assert_string_equal(pl_safetensors_meta(st, "format"), "pt");
    assert_string_equal(pl_safetensors_meta(st, "writer"), "safetensors");
    const struct { const char *name; enum pl_dtype dt; int ndim; int64_t s0, s1; double a, b; } c[] = {
        { "f32", PL_F32, 2, 3, 4, 0.5, -1 }, { "f16", PL_F16, 2, 2, 3, 0.25, -0.5 },
        { "bf16", PL_BF16, 1, 8, 0, 1.5, -4 }, { "i32", PL_I32, 1, 5, 0, 1000, -2000 },
        { "i8", PL_I8, 2, 2, 3, 1, -3 },
    };
    for (int k = 0; k < 5; k++) {
        struct pl_tensor *t = pl_safetensors_tensor(st, c[k].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, c[k].dt);
        assert_int_equal(t->ndim, c[k].ndim);
        assert_int_equal(t->shape[0], c[k].s0);
        if (c[k].ndim > 1) assert_int_equal(t->shape[1], c[k].s1);
        const int64_t n = pl_tensor_numel(t);
        float v[16];
        assert_int_equal(pl_dequant_row(t->dtype, pl_tensor_data(t), v, n), PL_OK);
        for (int64_t i = 0; i < n; i++) assert_true(v[i] == (float)(c[k].a * (double)i + c[k].b));
        pl_tensor_release(t);
    }
    pl_safetensors_close(st);
}

static struct pl_tensor *filled(enum pl_dtype dt, int ndim, const int64_t *shape, float base)
{
    struct pl_tensor *t = pl_tensor_new(dt, ndim, shape, PL_MEM_WEIGHTS);
    assert_non_null(t);
    int64_t n = pl_tensor_numel(t);
    float *x = malloc((size_t)n * sizeof(float) + 4);
    for (int64_t i = 0; i < n; i++) x[i] = base + (float)(i % 7) - 3.0f;
    assert_int_equal(pl_quant_row(dt, x, pl_tensor_data(t), n), PL_OK);
    free(x);
    return t;
}

static void test_roundtrip(void **state)
{
    (void)state;
    const int64_t s2[] = { 4, 6 }, s1[] = { 5 }, s3[] = { 2, 3, 4 };
    struct pl_tensor *ts[] = {
        filled(PL_F32, 2, s2, 0.5f), filled(PL_F16, 1, s1, 1.25f), filled(PL_BF16, 3, s3, 2.0f),
        filled(PL_I32, 1, s1, 100.0f), filled(PL_I8, 2, s2, -1.0f),
    };
    const char *names[] = { "model.layers.0.self_attn.q_proj.weight", "f16", "bf16 with space", "i32", "i8\"quoted" };
    struct pl_safetensors_writer *w = pl_safetensors_writer_new();
    assert_non_null(w);
    assert_int_equal(pl_safetensors_set_meta(w, "format", "pt"), PL_OK);
    assert_int_equal(pl_safetensors_set_meta(w, "note", "first"), PL_OK);
    assert_int_equal(pl_safetensors_set_meta(w, "note", "peftlua"), PL_OK);
    for (int i = 0; i < 5; i++) assert_int_equal(pl_safetensors_add_tensor(w, names[i], ts[i]), PL_OK);
    assert_int_equal(pl_safetensors_add_tensor(w, "f16", ts[0]), PL_ERR_ARG);
    const int64_t sq[] = { 2, 32 };
    struct pl_tensor *q = filled(PL_Q8_0, 2, sq, 0.0f);
    assert_int_equal(pl_safetensors_add_tensor(w, "q", q), PL_ERR_UNSUPPORTED);
    assert_non_null(strstr(pl_last_error(), "q8_0"));
    pl_tensor_release(q);
    const char *path = pl_test_tmp("rt.safetensors");
    assert_int_equal(pl_safetensors_writer_write(w, path), PL_OK);
    pl_safetensors_writer_free(w);

    /* header length is a multiple of 8 */
    FILE *f = fopen(path, "rb");
    uint64_t hl;
    assert_int_equal(fread(&hl, 8, 1, f), 1);
    fclose(f);
    assert_int_equal(hl % 8, 0);

    struct pl_safetensors *st;
    assert_int_equal(pl_safetensors_open(path, &st), PL_OK);
    assert_int_equal(pl_safetensors_count(st), 5);
    assert_string_equal(pl_safetensors_meta(st, "note"), "peftlua");
    assert_string_equal(pl_safetensors_meta(st, "format"), "pt");
    for (int i = 0; i < 5; i++) {
        const int64_t k = pl_safetensors_find(st, names[i]);
        assert_true(k >= 0);
        assert_string_equal(pl_safetensors_info(st, k)->name, names[i]);
        struct pl_tensor *t = pl_safetensors_tensor_at(st, k);
        assert_non_null(t);
        assert_int_equal(t->dtype, ts[i]->dtype);
        assert_int_equal(t->ndim, ts[i]->ndim);
        assert_memory_equal(t->shape, ts[i]->shape, sizeof(int64_t) * (size_t)t->ndim);
        assert_int_equal(pl_tensor_nbytes(t), pl_tensor_nbytes(ts[i]));
        assert_memory_equal(pl_tensor_data(t), pl_tensor_data(ts[i]), pl_tensor_nbytes(t));
        pl_tensor_release(t);
    }
    /* the first data byte sits at 8 + header length, 8-byte aligned in the file */
    assert_int_equal((8 + hl) % 8, 0);
    pl_safetensors_close(st);
    for (int i = 0; i < 5; i++) pl_tensor_release(ts[i]);
}

static void test_sharded(void **state)
{
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/sharded", pl_test_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    const int64_t s[] = { 2, 2 };
    struct pl_tensor *t1 = filled(PL_F32, 2, s, 1.0f), *t2 = filled(PL_F16, 2, s, 2.0f), *t3 = filled(PL_F32, 2, s, 3.0f);
    char p1[400], p2[400], ip[400];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", dir);
    struct pl_safetensors_writer *w = pl_safetensors_writer_new();
    assert_int_equal(pl_safetensors_add_tensor(w, "embed", t1), PL_OK);
    assert_int_equal(pl_safetensors_add_tensor(w, "l0", t2), PL_OK);
    assert_int_equal(pl_safetensors_writer_write(w, p1), PL_OK);
    pl_safetensors_writer_free(w);
    w = pl_safetensors_writer_new();
    assert_int_equal(pl_safetensors_add_tensor(w, "head", t3), PL_OK);
    assert_int_equal(pl_safetensors_writer_write(w, p2), PL_OK);
    pl_safetensors_writer_free(w);
    FILE *f = fopen(ip, "w");
    fprintf(f, "{\"metadata\": {\"total_size\": 40},\n \"weight_map\": {\n"
               "  \"embed\": \"model-00001-of-00002.safetensors\",\n"
               "  \"head\": \"model-00002-of-00002.safetensors\",\n"
               "  \"l0\": \"model-00001-of-00002.safetensors\"}}\n");
    fclose(f);
    for (int how = 0; how < 2; how++) {
        struct pl_safetensors *st;
        assert_int_equal(pl_safetensors_open(how ? ip : dir, &st), PL_OK);
        assert_int_equal(pl_safetensors_count(st), 3);
        struct pl_tensor *h = pl_safetensors_tensor(st, "head");
        assert_non_null(h);
        assert_memory_equal(pl_tensor_data(h), pl_tensor_data(t3), 16);
        assert_non_null(strstr(pl_safetensors_info(st, pl_safetensors_find(st, "head"))->file, "00002"));
        struct pl_tensor *l0 = pl_safetensors_tensor(st, "l0");
        assert_memory_equal(pl_tensor_data(l0), pl_tensor_data(t2), 8);
        pl_safetensors_close(st);
        pl_tensor_release(h);
        pl_tensor_release(l0);
    }
    /* an index that puts a tensor in the wrong shard */
    f = fopen(ip, "w");
    fprintf(f, "{\"weight_map\": {\"embed\": \"model-00002-of-00002.safetensors\"}}");
    fclose(f);
    struct pl_safetensors *st;
    assert_int_equal(pl_safetensors_open(dir, &st), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "model.safetensors.index.json: weight_map puts tensor 'embed'"));
    /* a shard that is missing */
    f = fopen(ip, "w");
    fprintf(f, "{\"weight_map\": {\"embed\": \"model-00003-of-00002.safetensors\"}}");
    fclose(f);
    assert_int_equal(pl_safetensors_open(ip, &st), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "model-00003-of-00002.safetensors"));
    /* an index that is not JSON */
    f = fopen(ip, "w");
    fprintf(f, "{\"weight_map\": {\n\"embed\": }");
    fclose(f);
    assert_int_equal(pl_safetensors_open(ip, &st), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "model.safetensors.index.json:2"));
    /* a directory with a single model.safetensors */
    char d2[300], p3[400];
    snprintf(d2, sizeof d2, "%s/single", pl_test_dir);
    assert_int_equal(mkdir(d2, 0755), 0);
    snprintf(p3, sizeof p3, "%s/model.safetensors", d2);
    w = pl_safetensors_writer_new();
    assert_int_equal(pl_safetensors_add_tensor(w, "x", t1), PL_OK);
    assert_int_equal(pl_safetensors_writer_write(w, p3), PL_OK);
    pl_safetensors_writer_free(w);
    assert_int_equal(pl_safetensors_open(d2, &st), PL_OK);
    assert_int_equal(pl_safetensors_count(st), 1);
    pl_safetensors_close(st);
    assert_int_equal(pl_safetensors_open(pl_test_dir, &st), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "no model.safetensors"));
    pl_tensor_release(t1);
    pl_tensor_release(t2);
    pl_tensor_release(t3);
}

static void expect(const char *name, const char *hdr, size_t ndata, uint64_t claim, enum pl_status want,
                   const char *needle)
{
    static const uint8_t zeros[64];
    const char *path = pl_test_tmp(name);
    write_st(path, hdr, zeros, ndata, claim);
    struct pl_safetensors *st = (struct pl_safetensors *)0x1;
    enum pl_status s = pl_safetensors_open(path, &st);
    if (want == PL_OK) {
        assert_int_equal(s, PL_OK);
        pl_safetensors_close(st);
        return;
    }
    if (s != want || !strstr(pl_last_error(), name) || (needle && !strstr(pl_last_error(), needle)))
        print_message("%s: status %d: %s\n", name, (int)s, pl_last_error());
    assert_int_equal(s, want);
    assert_null(st);
    assert_non_null(strstr(pl_last_error(), name));
    if (needle) assert_non_null(strstr(pl_last_error(), needle));
}

#define T1(dtype, shape, b, e) "{\"t\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" b "," e "]}}"

static void test_bad_input(void **state)
{
    (void)state;
    const char *path = pl_test_tmp("short.safetensors");
    FILE *f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    struct pl_safetensors *st;
    assert_int_equal(pl_safetensors_open(path, &st), PL_ERR_FORMAT);
    assert_non_null(strstr(pl_last_error(), "short.safetensors: truncated"));

    expect("ok.safetensors", T1("F32", "[2]", "0", "8"), 8, 0, PL_OK, NULL);
    expect("hdrlen.safetensors", T1("F32", "[2]", "0", "8"), 8, 1000000, PL_ERR_FORMAT,
           "header length 1000000 runs past end of file");
    expect("hdrhuge.safetensors", T1("F32", "[2]", "0", "8"), 8, UINT64_MAX, PL_ERR_FORMAT, "runs past end of file");
    expect("badjson.safetensors", "{\"t\": {\"dtype\": \"F32\",, }}", 0, 0, PL_ERR_FORMAT, "invalid JSON");
    expect("notobj.safetensors", "[1,2,3]", 0, 0, PL_ERR_FORMAT, "JSON object");
    expect("f64.safetensors", T1("F64", "[1]", "0", "8"), 8, 0, PL_ERR_UNSUPPORTED,
           "tensor 't' has dtype F64, which peftlua does not support");
    expect("i64.safetensors", T1("I64", "[1]", "0", "8"), 8, 0, PL_ERR_UNSUPPORTED, "dtype I64");
    expect("dtype.safetensors", T1("F17", "[1]", "0", "8"), 8, 0, PL_ERR_FORMAT, "unknown dtype \"F17\"");
    expect("size.safetensors", T1("F32", "[3]", "0", "8"), 8, 0, PL_ERR_FORMAT, "make 12 bytes but data_offsets span 8");
    expect("past.safetensors", T1("F32", "[4]", "0", "16"), 8, 0, PL_ERR_FORMAT, "runs past the end of the data section");
    expect("gap.safetensors", T1("F32", "[1]", "4", "8"), 8, 0, PL_ERR_FORMAT, "gap of 4 bytes");
    expect("trail.safetensors", T1("F32", "[1]", "0", "4"), 8, 0, PL_ERR_FORMAT, "data section has 8 bytes");
    expect("neg.safetensors", T1("F32", "[-2]", "0", "8"), 8, 0, PL_ERR_FORMAT, "not a non-negative integer");
    expect("frac.safetensors", T1("F32", "[2]", "0.5", "8"), 8, 0, PL_ERR_FORMAT, "data_offsets");
    expect("rev.safetensors", T1("F32", "[0]", "8", "0"), 8, 0, PL_ERR_FORMAT, "data_offsets");
    expect("dims.safetensors", T1("F32", "[1,1,1,1,1,1,1,1,1]", "0", "4"), 4, 0, PL_ERR_FORMAT, "9 dimensions");
    expect("bigshape.safetensors", T1("F32", "[4294967296,4294967296]", "0", "8"), 8, 0, PL_ERR_FORMAT, "overflows");
    expect("overlap.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, PL_ERR_FORMAT, "overlaps");
    expect("dup.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, PL_ERR_FORMAT, "duplicate tensor name 'a'");
    expect("nodtype.safetensors", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, PL_ERR_FORMAT, "missing \"dtype\"");
    expect("meta.safetensors", "{\"__metadata__\":{\"k\":1}}", 0, 0, PL_ERR_FORMAT, "__metadata__ 'k' is not a string");
    expect("entry.safetensors", "{\"t\":[1]}", 0, 0, PL_ERR_FORMAT, "entry is not an object");
    assert_int_equal(pl_safetensors_open(pl_test_tmp("absent.safetensors"), &st), PL_ERR_IO);
    assert_non_null(strstr(pl_last_error(), "absent.safetensors"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handwritten),
        cmocka_unit_test(test_reference_file),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, pl_test_tmpdir_setup, pl_test_tmpdir_teardown);
}
