/* fuzz_llama2c_tokenizer.c — a llama2.c tokenizer.bin: load, encode (with byte fallback), decode. */
#include "fuzz_model_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *p = fz_write("tok.bin", data, size);
    struct pl_tokenizer *t = NULL;
    if (pl_tokenizer_load_llama2c(&t, p) != PL_OK) return 0;
    fz_use_tokenizer(t, "Once upon a time \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \x01\xff");
    pl_tokenizer_free(t);
    return 0;
}
