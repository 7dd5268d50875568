/* ll_logits.c — llama.cpp's logits for given token ids, with optional GGUF LoRA adapters.
 *
 * Owner: interop. Built by `make llamacpp-check` against the libllama that `make llamacpp`
 * built from the llama-cpp-python sdist; the check (tests/interop/llamacpp_check.lua) compares
 * what it writes with peftlua's own logits. Usage:
 *     ll_logits MODEL.gguf IDS OUT.f32 [ADAPTER.gguf SCALE]...
 * IDS: comma-separated token ids, decoded as one batch with logits for every position; OUT:
 * raw little-endian f32 [T, n_vocab]. The KV cache is f32 (see below). Exit status 0 only when every step succeeded (llama.cpp's
 * log is silenced; errors go to stderr as one line).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char **argv)
{
    if (argc < 4 || (argc - 4) % 2) {
        fprintf(stderr, "usage: %s MODEL.gguf IDS OUT.f32 [ADAPTER.gguf SCALE]...\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    int32_t ids[4096];
    int n = 0;
    for (char *s = argv[2], *e; *s && n < 4096; s = *e ? e + 1 : e) {
        ids[n++] = (int32_t)strtol(s, &e, 10);
        if (e == s) { fprintf(stderr, "bad ids: %s\n", argv[2]); return 2; }
    }
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "%s: llama.cpp cannot load the model\n", argv[1]); return 1; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n < 64 ? 64 : n);
    cp.n_batch = cp.n_ubatch = (uint32_t)n;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.no_perf = 1;
    /* f32 KV cache and no flash attention: llama.cpp's defaults (f16 cache) round K and V to
     * half precision, which alone moves stories260K's logits by ~1e-3 relative */
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create a context\n"); return 1; }
    int na = (argc - 4) / 2;
    struct llama_adapter_lora *ad[8];
    float scales[8];
    if (na > 8) { fprintf(stderr, "at most 8 adapters\n"); return 2; }
    for (int i = 0; i < na; i++) {
        ad[i] = llama_adapter_lora_init(model, argv[4 + 2 * i]);
        if (!ad[i]) { fprintf(stderr, "%s: llama.cpp cannot load the adapter\n", argv[4 + 2 * i]); return 1; }
        scales[i] = strtof(argv[5 + 2 * i], NULL);
    }
    if (na && llama_set_adapters_lora(ctx, ad, (size_t)na, scales) != 0) {
        fprintf(stderr, "llama_set_adapters_lora failed\n");
        return 1;
    }
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = ids[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0) { fprintf(stderr, "llama_decode failed\n"); return 1; }
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE *f = fopen(argv[3], "wb");
    if (!f) { fprintf(stderr, "%s: cannot write\n", argv[3]); return 1; }
    for (int i = 0; i < n; i++) {
        const float *z = llama_get_logits_ith(ctx, i);
        if (!z || fwrite(z, sizeof(float), (size_t)nv, f) != (size_t)nv) {
            fprintf(stderr, "no logits for position %d\n", i);
            fclose(f);
            return 1;
        }
    }
    if (fclose(f) != 0) return 1;
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    printf("ll_logits: %d positions x %d logits, %d adapter(s)\n", n, nv, na);
    return 0;
}
