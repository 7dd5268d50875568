/* names.c — the architecture's tensor names in one table (model.h "Tensor names"): each
 * projection's PEFT/HF module name, the block it sits in, its GGUF stem; the per-layer and
 * whole-model tensors in HF and GGUF spelling; the names of adapter tensors. Loading (model.c),
 * adapters (lora.c, lora_gguf.c), gradients by name (train.c) and export (train_export.c) all
 * read it, so a new architecture's names are added here.
 */
#include <stdio.h>
#include <string.h>

#include "peftlua/model.h"

const char *const pl_proj_names[PL_PROJ_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};
const char *const pl_proj_gguf_names[PL_PROJ_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

const char *pl_proj_block(enum pl_proj p)
{
    return p <= PL_PROJ_O ? "self_attn" : "mlp";
}

/* the whole-model tensors and, under model.layers.N. / blk.N., the per-layer ones */
static const struct { const char *hf, *gg; } model_names[] = {
    { "model.embed_tokens.weight", "token_embd.weight" },
    { "model.norm.weight", "output_norm.weight" },
    { "lm_head.weight", "output.weight" },
};
static const struct { const char *hf, *gg; } layer_names[] = {
    { "input_layernorm.weight", "attn_norm.weight" },
    { "post_attention_layernorm.weight", "ffn_norm.weight" },
};

const char *pl_name_model_tensor(enum pl_model_tensor t, int gguf)
{
    return (unsigned)t < 3 ? (gguf ? model_names[t].gg : model_names[t].hf) : NULL;
}

int pl_name_layer_norm(char *buf, size_t n, int layer, int ffn, int gguf)
{
    const char *s = gguf ? layer_names[ffn != 0].gg : layer_names[ffn != 0].hf;
    return snprintf(buf, n, gguf ? "blk.%d.%s" : "model.layers.%d.%s", layer, s);
}

int pl_name_proj(char *buf, size_t n, int layer, enum pl_proj p, int bias, int gguf)
{
    if (gguf) return snprintf(buf, n, "blk.%d.%s.%s", layer, pl_proj_gguf_names[p], bias ? "bias" : "weight");
    return snprintf(buf, n, "model.layers.%d.%s.%s.%s", layer, pl_proj_block(p), pl_proj_names[p],
                    bias ? "bias" : "weight");
}

int pl_name_adapter(char *buf, size_t n, const char *prefix, int layer, enum pl_proj p, char which)
{
    if (which == 'M' || which == 'L')
        return snprintf(buf, n, "%smodel.layers.%d.%s.%s.%s", prefix ? prefix : "", layer,
                        pl_proj_block(p), pl_proj_names[p], which == 'M' ? "lora_magnitude_vector" : "ia3_l");
    return snprintf(buf, n, "%smodel.layers.%d.%s.%s.lora_%c.weight", prefix ? prefix : "", layer,
                    pl_proj_block(p), pl_proj_names[p], which);
}

int pl_name_hf_to_gguf(const char *hf, char *out, size_t n)
{
    for (size_t i = 0; i < sizeof model_names / sizeof model_names[0]; i++)
        if (strcmp(hf, model_names[i].hf) == 0) { snprintf(out, n, "%s", model_names[i].gg); return 1; }
    int l, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &used) != 1 || used == 0) return 0;
    const char *rest = hf + used;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
        if (strcmp(rest, layer_names[i].hf) == 0) { snprintf(out, n, "blk.%d.%s", l, layer_names[i].gg); return 1; }
    for (int p = 0; p < PL_PROJ_COUNT; p++) {
        const char *blk = pl_proj_block((enum pl_proj)p);
        size_t bl = strlen(blk), pl = strlen(pl_proj_names[p]);
        if (strncmp(rest, blk, bl) != 0 || rest[bl] != '.') continue;
        const char *q = rest + bl + 1;
        if (strncmp(q, pl_proj_names[p], pl) != 0 || q[pl] != '.') continue;
        q += pl + 1;
        if (strcmp(q, "weight") == 0 || (strcmp(q, "bias") == 0 && p <= PL_PROJ_V)) {
            snprintf(out, n, "blk.%d.%s.%s", l, pl_proj_gguf_names[p], q);
            return 1;
        }
    }
    return 0;
}
