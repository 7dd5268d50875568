/* fuzz_adapter.c — a PEFT LoRA adapter directory: adapter_config.json, then (after FZ_SPLIT)
 * adapter_model.safetensors; or, when the input starts with "GGUF", a llama.cpp-layout GGUF
 * LoRA adapter (lora_gguf.c). Loaded for the model shape of tests/data/lora/peft_fixture
 * (hidden 24, intermediate 40, 3 layers, 4 heads, 2 kv heads; interleaved rope as GGUF). */
#include <sys/stat.h>
#include "fuzz_common.h"
#include "peftlua/adapters.h"

static const struct pl_model_config mc = {
    .arch = PL_ARCH_LLAMA, .dim = 24, .hidden_dim = 40, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
    .head_dim = 6, .n_rot = 6, .vocab_size = 64, .seq_len = 32, .rope_base = 10000.0f, .norm_eps = 1e-5f,
    .rope_layout = PL_ROPE_LAYOUT_INTERLEAVED, .bos_id = 1, .eos_id = 2,
};
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/adapter", fz_dir);
    if (!ready) { mkdir(dir, 0700); ready = 1; }
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        const char *p = fz_write("adapter.gguf", data, size);
        struct pl_lora *a = NULL;
        if (pl_lora_load_gguf(&a, p, &mc) == PL_OK) {
            if (a->n_params <= 0 || a->cfg.r < 1 || a->cfg.r > PL_LORA_MAX_RANK) abort();
            pl_lora_free(a);
        }
        return 0;
    }
    const uint8_t *part[2];
    size_t len[2];
    int np = fz_split(data, size, part, len, 2);
    fz_write("adapter/adapter_config.json", part[0], len[0]);
    if (np > 1) fz_write("adapter/adapter_model.safetensors", part[1], len[1]);
    else unlink(fz_path("adapter/adapter_model.safetensors"));
    struct pl_lora *a = NULL;
    if (pl_lora_load(&a, dir, &mc) == PL_OK) {
        if (a->n_params <= 0 || a->cfg.r < 1 || a->cfg.r > PL_LORA_MAX_RANK) abort();
        pl_lora_free(a);
    }
    return 0;
}
