/* adapters.h — LoRA adapters loaded for inference beside a model, by name, chosen per call.
 *
 * Implemented in src/adapt/adapters.c. Training attaches ONE adapter it owns (lora.h); this
 * is the other use: several finished adapters loaded next to one base model (peftlua's own
 * or ones Hugging Face PEFT saved, or GGUF LoRA adapters as llama.cpp reads them), each with
 * a user scale, and the forward of one call made with one of them (or none).
 *
 * An adapter's effective scale is (alpha / r, or alpha / sqrt(r) for rsLoRA) × the user's
 * scale — the same as llama.cpp's --lora-scaled and PEFT's set_adapter + scaling.
 *
 * Worked example:
 *     struct pl_adapter_set *s = pl_adapter_set_new();
 *     struct pl_lora *a;
 *     pl_adapter_open(&a, "runs/x/adapter", &model->cfg);      // dir, its .safetensors, or .gguf
 *     pl_adapter_set_add(s, "x", "runs/x/adapter", a, 1.0f);   // s owns a now
 *     struct pl_hook_state h = pl_adapter_use(model, pl_adapter_set_find(s, "x")->lora);
 *     ... pl_llama_forward / pl_generate ...
 *     pl_adapter_restore(model, h);
 *     pl_adapter_set_free(s, model);
 */
#ifndef PEFTLUA_ADAPTERS_H
#define PEFTLUA_ADAPTERS_H

#include "peftlua/lora.h"
#include "peftlua/model.h"
#include "peftlua/status.h"

/* Open a LoRA adapter for a model of configuration mc from
 *   - a directory holding adapter_config.json + adapter_model.safetensors (peftlua, HF PEFT),
 *   - either of those two files (the other is taken from the same directory),
 *   - a GGUF LoRA adapter (general.type "adapter", adapter.type "lora"; llama.cpp's layout).
 * Every mismatch names the file and the first offending tensor or key. LoRA, DoRA (use_dora)
 * and IA3 (peft_type IA3) directories load; bias and per-module rank/alpha patterns are refused.
 * A user scale multiplies LoRA's/DoRA's alpha/r; IA3 has no scale (PEFT has none) and ignores it. */
enum pl_status pl_adapter_open(struct pl_lora **out, const char *path,
                               const struct pl_model_config *mc);

/* Write adapter a (for model m) as a GGUF LoRA adapter that llama.cpp loads with
 * --lora FILE (layout in src/adapt/lora_gguf.c): dtype "f32" (NULL) or "f16"; written atomically. */
enum pl_status pl_lora_export_gguf(const struct pl_lora *a, const struct pl_model *m,
                                   const char *path, const char *dtype);
/* An Ollama Modelfile at path: FROM the base GGUF (absolute path), ADAPTER the adapter GGUF
 * (relative to the Modelfile's directory, where it must lie). */
enum pl_status pl_ollama_modelfile_write(const char *path, const char *base_gguf,
                                         const char *adapter_gguf);
/* Read a GGUF LoRA adapter (see pl_adapter_open). */
enum pl_status pl_lora_load_gguf(struct pl_lora **out, const char *path,
                                 const struct pl_model_config *mc);

struct pl_adapter_slot {
    char *name;
    char *path;
    struct pl_lora *lora;      /* owned */
    float user_scale;          /* lora->scale = base scale × user_scale */
};

struct pl_adapter_set {
    struct pl_adapter_slot *v;
    int n, cap;
};

struct pl_adapter_set *pl_adapter_set_new(void);
/* Frees every adapter; first takes any of them off m's hook (m may be NULL). */
void pl_adapter_set_free(struct pl_adapter_set *s, struct pl_model *m);
/* Add lora under name (must be new, 1..127 characters); the set owns lora on PL_OK only. */
enum pl_status pl_adapter_set_add(struct pl_adapter_set *s, const char *name, const char *path,
                                  struct pl_lora *lora, float user_scale);
/* Remove and free the named adapter (PL_ERR_ARG naming the loaded ones if absent). */
enum pl_status pl_adapter_set_remove(struct pl_adapter_set *s, const char *name,
                                     struct pl_model *m);
struct pl_adapter_slot *pl_adapter_set_find(struct pl_adapter_set *s, const char *name);
/* The default for a call: the last loaded, NULL when none is. */
struct pl_adapter_slot *pl_adapter_set_last(struct pl_adapter_set *s);

/* The model's hook for one call: pl_adapter_use installs lora (NULL: the base model alone)
 * and returns what was there; pl_adapter_restore puts it back. Nested uses restore in order. */
struct pl_hook_state { pl_linear_hook_fn fn; void *ctx; pl_linear_in_hook_fn in_fn; };
struct pl_hook_state pl_adapter_use(struct pl_model *m, struct pl_lora *lora);
void pl_adapter_restore(struct pl_model *m, struct pl_hook_state h);

#endif
