/* fuzz_llama2c_model.c — a llama2.c model checkpoint (.bin): header, weights, forward. */
#include "fuzz_model_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *p = fz_write("model.bin", data, size);
    struct pl_model_load_opts o = { NULL, 1 };
    struct pl_model *m = NULL;
    if (pl_model_load(&m, p, &o) == PL_OK) {
        fz_use_model(m);
        pl_model_free(m);
    }
    return 0;
}
