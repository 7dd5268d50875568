/* peftlua.h — the peftlua engine in one include.
 *
 * peftlua fine-tunes Llama-family language models on ordinary machines. This library
 * (libpeftlua.a) is the engine; the `peftlua` host drives it from Lua, and C programs can use
 * it directly:  cc app.c $(pkg-config --cflags --libs peftlua)
 *
 * Conventions shared by every header:
 *   - Functions return enum pl_status (PL_OK == 0); on failure pl_last_error() holds one line
 *     naming the file/tensor/line and the problem. Nothing calls exit() or abort() on input.
 *   - Every allocation goes through pl_alloc() (alloc.h) with a category — weights, adapters,
 *     gradients, optimizer, activations, workspace, data — so current and peak bytes per
 *     category are always known (pl_mem_current / pl_mem_peak).
 *   - Tensors (tensor.h) are views over refcounted storage; shapes are row-major (a Linear
 *     weight is [out, in]); block-quantised dtypes use ggml's layouts bit for bit.
 *   - Kernels (kernels.h) are llm.c-style free functions over caller-planned buffers:
 *     outputs, saved state, inputs, parameters, sizes; backward passes accumulate.
 *   - Long loops check pl_interrupt_check() and unwind with PL_ERR_INTERRUPTED.
 *
 * Worked example — load a model, generate, score:
 *
 *     #include <peftlua/peftlua.h>
 *     struct pl_model *m;
 *     if (pl_model_load(&m, "SmolLM2-135M-Instruct.Q4_1.gguf", NULL) != PL_OK) {
 *         fprintf(stderr, "%s\n", pl_last_error());
 *         return 1;
 *     }
 *     int32_t *ids; size_t n;
 *     pl_tokenizer_encode(m->tok, "Once upon a time", 16, PL_TOK_DEFAULT_SPECIAL, &ids, &n);
 *     struct pl_generate_opts g = { .max_tokens = 32 };
 *     pl_sampler_init(&g.sampler, 42);          // then g.sampler.greedy = 1 or a temperature
 *     g.sampler.greedy = 1;
 *     char *text;
 *     if (pl_generate(m, ids, (int)n, &g, &text, NULL, NULL) == PL_OK) puts(text);
 *     pl_free(text); pl_free(ids); pl_model_free(m);
 *
 * Headers by layer:
 *   status.h alloc.h rng.h json.h fileio.h hw.h      — foundations
 *   tensor.h quant.h blas.h linalg.h                 — tensors and numerics
 *   gguf.h safetensors.h                             — model files
 *   tokenizer.h unicode.h chat.h                     — text
 *   kernels.h model.h                                — forward/backward, generation
 *   data.h lora.h optim.h options.h train.h ckpt.h   — fine-tuning
 *   qlora.h memmodel.h                               — quantised bases, memory model
 *   tune.h                                           — Bayesian optimisation
 *   chart.h html.h                                   — charts and reports
 */
#ifndef PEFTLUA_PEFTLUA_H
#define PEFTLUA_PEFTLUA_H

#include "peftlua/status.h"
#include "peftlua/alloc.h"
#include "peftlua/rng.h"
#include "peftlua/json.h"
#include "peftlua/fileio.h"
#include "peftlua/hw.h"
#include "peftlua/tensor.h"
#include "peftlua/quant.h"
#include "peftlua/blas.h"
#include "peftlua/gemm16.h"
#include "peftlua/linalg.h"
#include "peftlua/gguf.h"
#include "peftlua/safetensors.h"
#include "peftlua/tokenizer.h"
#include "peftlua/unicode.h"
#include "peftlua/chat.h"
#include "peftlua/kernels.h"
#include "peftlua/model.h"
#include "peftlua/data.h"
#include "peftlua/lora.h"
#include "peftlua/optim.h"
#include "peftlua/train.h"
#include "peftlua/ckpt.h"
#include "peftlua/qlora.h"
#include "peftlua/options.h"
#include "peftlua/memmodel.h"
#include "peftlua/tune.h"
#include "peftlua/chart.h"
#include "peftlua/html.h"

#endif
