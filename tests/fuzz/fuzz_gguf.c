/* fuzz_gguf.c — GGUF: the container (metadata, tensor table) and a model + tokenizer from it. */
#include "fuzz_model_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *p = fz_write("m.gguf", data, size);
    struct pl_gguf *g = NULL;
    if (pl_gguf_open(p, &g) == PL_OK) {
        for (int64_t i = 0; i < pl_gguf_kv_count(g); i++) {
            const struct pl_gguf_value *v = pl_gguf_kv_value(g, i);
            int64_t iv;
            double dv;
            for (uint64_t k = 0; k < 3; k++) { (void)pl_gguf_value_i64(v, k, &iv); (void)pl_gguf_value_f64(v, k, &dv); }
            (void)pl_gguf_find_key(g, pl_gguf_kv_key(g, i));
        }
        for (int64_t i = 0; i < pl_gguf_tensor_count(g); i++) (void)pl_gguf_tensor_info(g, i);
        pl_gguf_close(g);
    }
    struct pl_model_load_opts o = { NULL, 1 };
    struct pl_model *m = NULL;
    if (pl_model_load(&m, p, &o) == PL_OK) {
        fz_use_model(m);
        pl_model_free(m);
    }
    struct pl_tokenizer *t = NULL;
    if (pl_tokenizer_load_gguf(&t, p) == PL_OK) {
        fz_use_tokenizer(t, "Hello world! 123 caf\xc3\xa9 \xe2\x96\x81");
        pl_tokenizer_free(t);
    }
    return 0;
}
