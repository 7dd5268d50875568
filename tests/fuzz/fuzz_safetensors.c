/* fuzz_safetensors.c — safetensors: header, tensor table, metadata, tensors over the data. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    const char *p = fz_write("m.safetensors", data, size);
    struct pl_safetensors *st = NULL;
    if (pl_safetensors_open(p, &st) != PL_OK) return 0;
    for (int64_t i = 0; i < pl_safetensors_meta_count(st); i++)
        (void)pl_safetensors_meta(st, pl_safetensors_meta_key(st, i));
    float sum = 0;
    for (int64_t i = 0; i < pl_safetensors_count(st); i++) {
        const struct pl_safetensors_info *ti = pl_safetensors_info(st, i);
        const uint8_t *b = ti->data;
        for (uint64_t k = 0; k < ti->nbytes; k++) sum += b[k];   /* every byte is inside the file */
        struct pl_tensor *t = pl_safetensors_tensor_at(st, i);
        if (t) {
            int64_t n = pl_tensor_numel(t);
            if ((ti->dtype == PL_F32 || ti->dtype == PL_F16 || ti->dtype == PL_BF16) && n > 0 && n < (1 << 20)) {
                float *f = malloc((size_t)n * sizeof *f);
                if (f && pl_dequant_row(ti->dtype, ti->data, f, n) == PL_OK) sum += f[n - 1];
                free(f);
            }
            pl_tensor_release(t);
        }
    }
    (void)sum;
    pl_safetensors_close(st);
    return 0;
}
