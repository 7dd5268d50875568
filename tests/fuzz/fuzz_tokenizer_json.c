/* fuzz_tokenizer_json.c — a Hugging Face tokenizer.json: load, encode, decode. */
#include "fuzz_model_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *p = fz_write("tokenizer.json", data, size);
    struct pl_tokenizer *t = NULL;
    if (pl_tokenizer_load_hf(&t, p) != PL_OK) return 0;
    fz_use_tokenizer(t, "Hello world! <s> 12345 caf\xc3\xa9  \t\n \xe2\x96\x81x \xf0\x9f\x98\x80 \xff\xfe");
    fz_use_tokenizer(t, "");
    pl_tokenizer_free(t);
    return 0;
}
