/* model.h — Llama-family language models: configuration, named weights, forward, generation.
 *
 * Implemented in src/model/model.c loaders and card, src/model/llama.c forward, src/model/generate.c sampling.
 *
 * A struct pl_model holds a configuration and its weights as named struct pl_tensor
 * parameters (HF names, e.g. "model.layers.0.self_attn.q_proj.weight"), loaded from
 *   - GGUF v2/v3 (architectures "llama" and "qwen2"; tensors used in place from the mapping),
 *   - llama2.c legacy .bin + tokenizer.bin (a negative vocab_size means an unshared classifier),
 *   - safetensors + HF config.json + tokenizer.json (a directory or a .safetensors path).
 * Weights keep their file dtype (f32, f16, q4_1, ...); the forward dequantises panels.
 *
 * Worked example:
 *     struct pl_model *m;
 *     if (pl_model_load(&m, "model.gguf", NULL) != PL_OK) puts(pl_last_error());
 *     struct pl_llama_ctx *c = pl_llama_ctx_new(m, 2, 16, 0);      // batch 2, up to 16 tokens
 *     pl_llama_forward(c, ids, 16, 0, PL_LLAMA_ALL_LOGITS);        // ids [2,16] at positions
 *                                                                  // 0..15; c->logits [2,16,vocab]
 *     pl_llama_ctx_free(c); pl_model_free(m);
 *
 * Training (LoRA / full fine-tuning) builds on this:
 *   - pl_model_param() enumerates every weight by name and returns the slot (struct
 *     pl_tensor **) so a trainer can replace it with a trainable f32 copy;
 *   - model->linear_hook, when set, is called after every projection (q..down) with the
 *     projection's input and output rows, so an adapter can add x A^T B^T * scale;
 *   - a context made with PL_LLAMA_SAVE keeps every layer's activations (llm.c style) for a
 *     backward pass; without it one layer's buffers are reused.
 */
#ifndef PEFTLUA_MODEL_H
#define PEFTLUA_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/rng.h"
#include "peftlua/status.h"
#include "peftlua/tensor.h"

struct pl_tokenizer;

enum pl_arch { PL_ARCH_LLAMA = 0, PL_ARCH_QWEN2 };

/* How RoPE pairs dimensions: INTERLEAVED rotates (x[2i], x[2i+1]) — llama2.c and GGUF llama
 * (whose converter permuted Q/K); HALF rotates (x[i], x[i + d/2]) — HF checkpoints, qwen2. */
enum pl_rope_layout { PL_ROPE_LAYOUT_INTERLEAVED = 0, PL_ROPE_LAYOUT_HALF };

enum pl_model_format { PL_FORMAT_GGUF = 0, PL_FORMAT_LLAMA2C, PL_FORMAT_SAFETENSORS };

struct pl_model_config {
    enum pl_arch arch;
    int32_t dim;            /* embedding_length */
    int32_t hidden_dim;     /* feed_forward_length */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;       /* dim / n_heads */
    int32_t n_rot;          /* rotated dimensions per head (rope.dimension_count) */
    int32_t vocab_size;
    int32_t seq_len;        /* context length */
    float   rope_base;
    float   norm_eps;
    enum pl_rope_layout rope_layout;
    int32_t tied_output;    /* output projection shares tok_embd */
    int32_t qkv_bias;       /* qwen2 */
    int32_t bos_id, eos_id; /* -1 if unknown */
};

/* The seven projections of a block, in PEFT's target-module names. */
enum pl_proj { PL_PROJ_Q = 0, PL_PROJ_K, PL_PROJ_V, PL_PROJ_O, PL_PROJ_GATE, PL_PROJ_UP,
               PL_PROJ_DOWN, PL_PROJ_COUNT };
extern const char *const pl_proj_names[PL_PROJ_COUNT];   /* "q_proj", ... "down_proj" */

/* Tensor names, one table for every reader and writer (src/model/names.c). HF spelling:
 * "model.layers.3.self_attn.q_proj.weight"; GGUF (llama.cpp): "blk.3.attn_q.weight". */
extern const char *const pl_proj_gguf_names[PL_PROJ_COUNT];   /* "attn_q", ... "ffn_down" */
const char *pl_proj_block(enum pl_proj p);                    /* "self_attn" | "mlp" */
enum pl_model_tensor { PL_NAME_TOK_EMBD = 0, PL_NAME_OUT_NORM, PL_NAME_OUTPUT };
const char *pl_name_model_tensor(enum pl_model_tensor t, int gguf);   /* "model.norm.weight" */
/* "model.layers.N.input_layernorm.weight" (ffn = 1: post_attention_layernorm) / "blk.N.attn_norm.weight" */
int pl_name_layer_norm(char *buf, size_t n, int layer, int ffn, int gguf);
/* "model.layers.N.self_attn.q_proj.weight" (bias: ".bias") / "blk.N.attn_q.weight" */
int pl_name_proj(char *buf, size_t n, int layer, enum pl_proj p, int bias, int gguf);
/* An adapter tensor, as PEFT names it: which 'A'/'B' → "<prefix>model.layers.N.<block>.<proj>.lora_A.weight",
 * 'M' → "...lora_magnitude_vector" (DoRA), 'L' → "...ia3_l" (IA3); prefix "base_model.model."
 * in PEFT files, "" for gradients by name. */
int pl_name_adapter(char *buf, size_t n, const char *prefix, int layer, enum pl_proj p, char which);
/* The GGUF name of a model tensor's HF name; 0 when it has none. */
int pl_name_hf_to_gguf(const char *hf, char *out, size_t n);

struct pl_layer {
    struct pl_tensor *attn_norm;               /* [dim] */
    struct pl_tensor *w[PL_PROJ_COUNT];        /* Linear weights [out, in] */
    struct pl_tensor *b[PL_PROJ_COUNT];        /* biases [out] or NULL (q/k/v for qwen2) */
    struct pl_tensor *ffn_norm;                /* [dim] */
};

/* Called after y = x W^T (+ b) for projection p of layer l over n rows; x is [n, in],
 * y is [n, out] (row-major, f32). Return non-PL_OK to abort the forward. */
typedef enum pl_status (*pl_linear_hook_fn)(void *ctx, int layer, enum pl_proj p,
                                            float *y, const float *x, int64_t n);

/* Called before y = x W^T: may return a replacement input (IA3 scales down_proj's input);
 * NULL (with the error set) aborts the forward. */
typedef const float *(*pl_linear_in_hook_fn)(void *ctx, int layer, enum pl_proj p,
                                             const float *x, int64_t n);

struct pl_model {
    struct pl_model_config cfg;
    struct pl_tensor *tok_embd;                /* [vocab, dim] */
    struct pl_tensor *out_norm;                /* [dim] */
    struct pl_tensor *output;                  /* [vocab, dim]; when tied, a second reference to
                                                  tok_embd: replace both slots together */
    struct pl_layer  *layers;                  /* [n_layers] */
    struct pl_tokenizer *tok;                  /* NULL if none was found */
    enum pl_model_format format;
    char *path;                                /* the file or directory loaded */
    char *name;                                /* general.name or the file's base name */
    char *chat_template;                       /* the model's own template string, or NULL */
    char *source_id;                           /* the Hugging Face id the file records (GGUF
                                                  general.source.huggingface.repository, else
                                                  general.base_model.0.repo_url), or NULL */
    char *tokenizer_path;                      /* where the tokenizer was loaded from, or NULL */
    pl_linear_hook_fn linear_hook;             /* NULL: plain projections */
    void *linear_hook_ctx;
    pl_linear_in_hook_fn linear_in_hook;       /* NULL: inputs as they are (ctx: linear_hook_ctx) */
};

struct pl_model_load_opts {
    const char *tokenizer;   /* tokenizer path (tokenizer.bin / tokenizer.json / .gguf) or NULL */
    int32_t no_tokenizer;    /* 1: do not require one */
};

/* Load a model from path (a .gguf, a llama2.c .bin, a .safetensors or a directory holding
 * model.safetensors + config.json + tokenizer.json). For a .bin without opts->tokenizer,
 * tokenizer.bin or tok<vocab>.bin next to it is used; none found is an error unless
 * opts->no_tokenizer. */
enum pl_status pl_model_load(struct pl_model **out, const char *path,
                             const struct pl_model_load_opts *opts);
void pl_model_free(struct pl_model *m);   /* NULL is fine */

/* Parameters by HF name ("model.embed_tokens.weight", "model.layers.3.mlp.up_proj.weight",
 * "model.norm.weight", "lm_head.weight" unless tied). Index 0..pl_model_n_params()-1. The
 * returned slot may be overwritten with another tensor of the same shape (release the old).
 * Mapped weights (GGUF, safetensors) keep their file mapping alive through their storage. */
int pl_model_n_params(const struct pl_model *m);
struct pl_tensor **pl_model_param(struct pl_model *m, int i, char *name, size_t name_size);
struct pl_tensor **pl_model_find_param(struct pl_model *m, const char *name);
int64_t pl_model_param_count(const struct pl_model *m);   /* number of scalar weights */

/* The model card. */
struct pl_model_card {
    const char *arch;            /* "llama", "qwen2" */
    const char *format;          /* "gguf", "llama2.c", "safetensors" */
    const char *path, *name;
    int64_t n_params;
    int64_t weight_bytes;        /* bytes of weight data as stored */
    int32_t dtype_count[PL_DTYPE_COUNT];   /* tensors per dtype */
    int32_t context_length, vocab_size, n_layers, dim, hidden_dim, n_heads, n_kv_heads;
    float   rope_base, norm_eps;
    int32_t tied_output;
    const char *chat_family;     /* "chatml", "llama2", "llama3", "mistral", "zephyr" or "none" */
    const char *tokenizer_path;  /* NULL if none */
};
void pl_model_card(const struct pl_model *m, struct pl_model_card *card);

/* ---- forward (src/model/llama.c) ---- */

/* Context flags. PL_LLAMA_SAVE keeps every layer's activations for a backward pass, in f32.
 * PL_LLAMA_SAVE_BF16 / PL_LLAMA_SAVE_F16 (each implies PL_LLAMA_SAVE; mixed precision) keep
 * them in 16 bits instead: each layer is computed in f32 in one-layer buffers, exactly as
 * without saving, and its activations are then rounded (round-to-nearest-even, kernels.h
 * pl_act16_store) into that layer's 16-bit copies. pl_llama_saved_layer() widens them back into
 * the one-layer f32 buffers for the backward. What is rounded: the normed inputs of both
 * halves (xn_att, xn_ffn), q, K, V, the attention probabilities and output, gate, up and their
 * SwiGLU product. What stays f32: the residual stream (resid, resid2), the RMSNorm rstd's, the
 * final norm, logits (and every gradient, which the trainer keeps). The forward's own results
 * (logits, loss) are therefore identical to an f32-saving context's. Such a context serves
 * training steps only: forwards start at position 0 (no KV cache is kept across calls). */
enum { PL_LLAMA_SAVE = 1, PL_LLAMA_SAVE_BF16 = 2, PL_LLAMA_SAVE_F16 = 4 };

/* One layer's activations as f32 (slot pointers into a context's buffers). */
struct pl_llama_acts {
    const float *xin;        /* the layer's input (residual stream) */
    float *xout;             /* its output */
    float *xn, *rs, *q, *kc, *vc, *att, *ao, *x2, *xf, *rf, *g, *u, *a;
};

/* Activations planned once for batch B and up to T positions (KV cache of T per sequence). */
struct pl_llama_ctx {
    struct pl_model *m;
    int32_t B, T, flags;
    int32_t n_past;          /* positions already in the KV cache (generation) */
    int32_t n_fwd;           /* tokens per sequence of the last forward */
    float *logits;           /* [B, n, vocab] after pl_llama_forward (rows for the n given) */
    int64_t n_logits;        /* rows in logits */
    const float *x_last;     /* [B, n, dim] the last layer's output after pl_llama_forward */
    /* planned buffers (one allocation, PL_MEM_ACTIVATIONS). Layer-indexed ones have n_saved
     * copies: n_layers when saving in f32, else 1 (one layer's buffers, reused); resid2 and the
     * rstd's have n_layers copies whenever saving (they stay f32 in 16-bit mode too); the KV
     * cache has n_layers copies except in 16-bit mode (one: training only). */
    float *mem;
    size_t mem_floats;       /* f32 elements of mem */
    int32_t n_saved;
    float *resid;     /* [L + 1 when saving, else 2][B*T*dim] residual stream entering each layer */
    /* The block's buffers (pl_llama_acts_carve; buf.xin/xout unused), slot 0 of each:
     *   xn  [n_saved][B*T*dim] RMSNorm(resid) before attention;  rs [L or 1][B*T]
     *   q   [n_saved][B*T*n_heads*head_dim] after RoPE
     *   kc, vc [L or 1][B][T][n_kv_heads*head_dim] KV cache, after RoPE
     *   att [n_saved][B][n_heads][T][T] softmax probabilities;  ao [n_saved][B*T*heads*head_dim]
     *   x2  [L or 1][B*T*dim] after the attention residual
     *   xf  [n_saved][B*T*dim];  rf [L or 1][B*T]
     *   g, u [n_saved][B*T*hidden] pre-activation;  a [n_saved][B*T*hidden] silu(gate) * up */
    struct pl_llama_acts buf;
    float *xfinal;    /* [B*T*dim] final RMSNorm output */
    float *rstd_final;/* [B*T] */
    float *scratch;   /* [B*T*max(dim, hidden, heads*head_dim)] projection outputs */
    int32_t *pos;     /* [B*T] positions of the rows being computed (RoPE) */
    /* 16-bit mode (PL_LLAMA_SAVE_BF16/F16): act_dtype PL_BF16 or PL_F16, and per layer the
     * 16-bit copies of the buffers above of the same name and layout ([n_layers][...]), in the
     * same allocation after the f32 ones. act_dtype is PL_F32 otherwise (pointers NULL). */
    int32_t act_dtype;
    size_t mem_halves;       /* 16-bit elements of mem */
    uint16_t *h_xn_att, *h_q, *h_kc, *h_vc, *h_att, *h_att_out, *h_xn_ffn, *h_gate, *h_up,
             *h_act;
};

/* The 16-bit copies of the rounded ones, laid out as the f32 buffers of a B x T plan. */
struct pl_llama_acts16 {
    uint16_t *xn, *q, *kc, *vc, *att, *ao, *xf, *g, *u, *a;
};
/* Round (store = 1) the rounded activations of one layer of an n-token forward over a B x T
 * plan from a's f32 buffers into h, or widen them back (store = 0); t is PL_BF16 or PL_F16.
 * Only what the forward wrote is converted: B·n rows, K/V positions 0..n-1 of each sequence,
 * the [B][heads][n][n] probabilities. Shared by src/model/llama.c and src/train/ckpt.c. */
void pl_llama_acts_copy16(const struct pl_model_config *cf, int B, int T, int n, enum pl_dtype t,
                          const struct pl_llama_acts *a, const struct pl_llama_acts16 *h, int store);

/* ---- the Llama block: one forward, one backward, one activation plan ----
 * Every caller runs the block through these: pl_llama_forward (inference, generation, the
 * plain trainer's saved-activation forward) and src/train/ckpt.c (checkpointed segments,
 * forward and recompute); the trainer's backward and the checkpointed one both call
 * pl_llama_block_backward. Callers differ only in where a layer's buffers live (which slot of
 * their plan) and in when a layer's forward runs (checkpointing is that policy). */

/* Element counts of the block's buffers for a B x T plan. */
struct pl_llama_plan {
    int64_t x;        /* B*T*dim: residual stream, normed inputs, resid2 */
    int64_t rows;     /* B*T: one RMSNorm rstd */
    int64_t q;        /* B*T*n_heads*head_dim: q, attention output */
    int64_t kv;       /* B*T*n_kv_heads*head_dim: K or V (cache layout [B][T][..]) */
    int64_t att;      /* B*n_heads*T*T: attention probabilities */
    int64_t ffn;      /* B*T*hidden: gate, up, their SwiGLU product */
    int64_t wide;     /* B*T*max(dim, hidden, n_heads*head_dim): projection scratch */
    int64_t rounded;  /* one layer's buffers that 16-bit saving rounds: 2x + 2q + 2kv + att + 3ffn */
    int64_t grads;    /* floats of struct pl_act_grads (the backward's activation gradients) */
};
void pl_llama_plan_of(const struct pl_model_config *c, int B, int T, struct pl_llama_plan *p);
/* Floats of the block buffers of struct pl_llama_acts (xin, xout excluded) with nr slots of
 * each rounded buffer, nf of those always f32 (rs, x2, rf) and nk of the K/V cache. */
int64_t pl_llama_acts_floats(const struct pl_llama_plan *p, int64_t nr, int64_t nf, int64_t nk);
/* Carve them from mem in the order xn, rs, q, kc, vc, att, ao, x2, xf, rf, g, u, a; base
 * points at slot 0 of each (xin, xout NULL). Returns mem past them. */
float *pl_llama_acts_carve(struct pl_llama_acts *base, float *mem, const struct pl_llama_plan *p,
                           int64_t nr, int64_t nf, int64_t nk);
/* a = the buffers of rounded slot r, f32 slot f and K/V slot k of base (xin, xout kept). */
void pl_llama_acts_slot(struct pl_llama_acts *a, const struct pl_llama_acts *base,
                        const struct pl_llama_plan *p, int64_t r, int64_t f, int64_t k);

/* Forward of block l over B sequences of a T-position plan: n new tokens per sequence at
 * positions pos..pos+n-1 (pos_ids [B*n] their RoPE positions), reading a->xin and writing
 * every buffer of a, a->xout last. K and V of the new rows go to a->kc/vc at [b][pos + t];
 * attention reads positions 0..pos+n-1. tmp: B*n*max(dim, hidden, heads*head_dim) floats.
 * Projections go through the model's adapter hooks. */
enum pl_status pl_llama_block_forward(struct pl_model *m, int l, const struct pl_llama_acts *a,
                                      float *tmp, const int32_t *pos_ids, int B, int T, int n,
                                      int pos);

/* Gradients of one layer's activations during a backward pass (pl_llama_plan.grads floats). */
struct pl_act_grads {
    float *d_resid, *d_resid2, *d_xn, *d_q, *d_qr, *d_ao, *d_k, *d_kr, *d_v, *d_wide, *d_act,
          *d_gate, *d_up;
};
/* Floats the block needs for BT rows of model configuration c (= pl_llama_plan.grads). */
int64_t pl_act_grads_floats(const struct pl_model_config *c, int64_t BT);
/* Point g's buffers into p (pl_act_grads_floats(c, BT) floats); returns p past them. */
float *pl_act_grads_carve(struct pl_act_grads *g, float *p, const struct pl_model_config *c, int64_t BT);

/* What a backward does with parameters: the model knows the block, the trainer knows what is
 * trained. proj_bwd: dx += dy·W of layer l's projection p (plus the adapter's backward), and
 * W's (and its bias's) gradient when W is trained. grad_of: the gradient slot of a norm
 * weight, NULL when it is not trained. */
struct pl_llama_grad_hooks {
    void *ctx;
    enum pl_status (*proj_bwd)(void *ctx, int l, enum pl_proj p, float *dx, const float *dy,
                               const float *x, int64_t rows);
    float *(*grad_of)(void *ctx, const struct pl_tensor *w);
};
/* Backward of block l (forward as pl_llama_block_forward at pos 0 over n tokens), from the
 * layer's f32 activations a: on entry g->d_resid holds the gradient of the block's output
 * (rows [B*n][dim]), on return the gradient of its input; parameter gradients accumulate
 * through h. The other buffers of g are scratch. */
enum pl_status pl_llama_block_backward(struct pl_model *m, int l, const struct pl_llama_acts *a,
                                       struct pl_act_grads *g, const int32_t *pos_ids, int B,
                                       int T, int n, const struct pl_llama_grad_hooks *h);

struct pl_llama_ctx *pl_llama_ctx_new(struct pl_model *m, int B, int T, int flags);
/* Bytes pl_llama_ctx_new(m, B, T, flags) allocates for a model of configuration cf (the
 * context, its planned buffers, positions; the logits come with the first forward: rows x
 * vocab floats). The memory model reads this rather than a copy of the formula. */
int64_t pl_llama_ctx_bytes(const struct pl_model_config *cf, int B, int T, int flags);
void pl_llama_ctx_free(struct pl_llama_ctx *c);
/* Layer l's activations from the last forward of a saving context, as f32, for its backward:
 * the saved buffers themselves, or in 16-bit mode the one-layer f32 buffers refilled (widened)
 * from layer l's copies (valid until the next call). Fails on a context that does not save. */
enum pl_status pl_llama_saved_layer(struct pl_llama_ctx *c, int l, struct pl_llama_acts *a);
/* Forward n tokens per sequence (ids [B, n]) at positions pos..pos+n-1 (pos + n <= T),
 * appending to the KV cache; logits for those rows into c->logits ([B, n, vocab]).
 * logits_last_only: compute logits for the last position only (row 0 of each sequence);
 * PL_LLAMA_NO_HEAD: stop after the last layer (c->x_last holds its output, c->logits is
 * allocated for every row but not computed, n_logits = 0): the trainer runs the output head
 * itself over the scored rows only (src/train/train.c pl_train_head_fwd). */
enum { PL_LLAMA_ALL_LOGITS = 0, PL_LLAMA_LAST_LOGITS = 1, PL_LLAMA_NO_HEAD = 2 };
enum pl_status pl_llama_forward(struct pl_llama_ctx *c, const int32_t *ids, int n, int pos,
                                int logits_last_only);
/* Mean cross-entropy of c->logits ([B, n, vocab] from the last forward) against targets
 * [B, n]; targets < 0 are ignored. *count gets the number of scored targets (may be NULL).
 * Returns NAN if nothing is scored. */
double pl_llama_loss(const struct pl_llama_ctx *c, const int32_t *targets, int n, int64_t *count);

/* Mean cross-entropy over a token stream, scored in windows of max_len with the given
 * stride (llama.cpp/HF perplexity style: every target scored exactly once, each window
 * conditioned on up to max_len - 1 previous tokens). Sum and count returned. */
enum pl_status pl_llama_score_stream(struct pl_model *m, const int32_t *ids, int64_t n,
                                     int max_len, int stride, double *nll_sum, int64_t *count);

/* Perplexity over a file (src/model/perplexity.c): jsonl = 0: a text file of documents
 * separated by `separator` (NULL or "": one document), each trimmed of surrounding whitespace;
 * jsonl = 1: one JSON record per line, its string `field` (NULL: "text") scored, at most
 * `limit` records (0: all). Each document is encoded with the model's BOS default and scored
 * on its own by pl_llama_score_stream (stride 0: max_seq_len). Perplexity = exp(sum / count).
 * Errors name the file and line. */
struct pl_ppl_opts {
    int jsonl;
    const char *field, *separator;
    int max_seq_len, stride, limit;
};
enum pl_status pl_model_perplexity_file(struct pl_model *m, const char *path,
                                        const struct pl_ppl_opts *o, double *nll_sum, int64_t *count);

/* ---- generation (src/model/generate.c) ---- */

/* A deterministic 64-bit PRNG (xoshiro256**, seeded by splitmix64). */

struct pl_sampler {
    float temperature;          /* <= 0: greedy */
    int32_t top_k;              /* 0: off */
    float top_p;                /* 1: off */
    float repetition_penalty;   /* 1: off (CTRL-style: divide positive logits, multiply negative) */
    int32_t greedy;
    struct pl_rng rng;
};
void pl_sampler_init(struct pl_sampler *s, uint64_t seed);
/* Sample from logits[vocab] (modified in place by the penalty); prev: recent ids. */
int32_t pl_sampler_sample(struct pl_sampler *s, float *logits, int32_t vocab,
                          const int32_t *prev, int64_t n_prev, float *work);

/* Streaming: called once per new token with the text that became final (possibly "": text
 * that might begin a stop string is held back), and once more with id -1 for held-back text
 * released at the end. Stop strings never reach the callback. Return non-zero to stop. */
typedef int (*pl_token_cb)(void *ud, int32_t id, const char *piece);

struct pl_generate_opts {
    int32_t max_tokens;          /* new tokens (default 128 if 0) */
    struct pl_sampler sampler;
    const char *const *stop;     /* stop strings (NULL-terminated array) or NULL */
    int32_t ignore_eos;
    pl_token_cb on_token;
    void *ud;
};

/* Generate from prompt ids (at least one). *out_text: generated text (pl_alloc'd, DATA;
 * free with pl_free), stop string excluded; *out_ids and *n_out: the new ids (may be NULL). */
enum pl_status pl_generate(struct pl_model *m, const int32_t *prompt, int n_prompt,
                           const struct pl_generate_opts *o, char **out_text,
                           int32_t **out_ids, int *n_out);

#endif
