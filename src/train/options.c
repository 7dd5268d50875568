/* options.c — the training options of a run, declared once (options.h).
 *
 * Each entry: name, type, group, default (as written), default as documented (when computed
 * at run time), flags (required, bounds), min, max, choices, keys (tracking), help.
 * The Lua layer builds its check, peft.train.options(), `peftlua train --help` and docs/api.md
 * from this table (src/lua/pl_options.c pushes it); the engine parses names through it
 * (pl_option_choice: precision, schedule, optimizer).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "peftlua/options.h"

#define T_INTEGER PL_OPT_INTEGER
#define T_NUMBER PL_OPT_NUMBER
#define T_BOOLEAN PL_OPT_BOOLEAN
#define T_STRING PL_OPT_STRING
#define T_PATH PL_OPT_PATH
#define T_LIST PL_OPT_LIST
#define T_INT_LIST PL_OPT_INT_LIST
#define T_FUNCTION PL_OPT_FUNCTION
#define T_MODEL PL_OPT_MODEL
#define T_BOOL_OR_INT PL_OPT_BOOL_OR_INT
#define T_SIZE PL_OPT_SIZE
#define T_TRACKING PL_OPT_TRACKING
#define REQ PL_OPT_REQUIRED
#define MIN PL_OPT_HAS_MIN
#define MAX PL_OPT_HAS_MAX
#define MINO PL_OPT_MIN_OPEN
#define MAXO PL_OPT_MAX_OPEN

static const char *const ch_method[] = { "lora", "dora", "ia3", "qlora", "full", NULL };
static const char *const ch_adapter[] = { "lora", "dora", "ia3", NULL };
static const char *const ch_quant[] = { "nf4", "nf4_32", "nf4_dq", "q8_0", NULL };
static const char *const ch_precision[] = { "fp32", "bf16", "fp16", NULL };
static const char *const ch_compute[] = { "auto", "f32", "bf16", NULL };
static const char *const ch_optimizer[] = { "adamw", "sgd", "lion", NULL };   /* optim.c's table order */
static const char *const ch_schedule[] = { "constant", "linear", "cosine", NULL };
static const char *const ch_format[] = { "auto", "text", "completion", "chat", "alpaca", NULL };
static const char *const keys_tracking[] = { "uri", "experiment", "run_name", "tags", NULL };
/* name, type, group, default (as written), default as documented, flags, min, max, choices,
 * keys, help — in documentation order, by group */
static const struct pl_option train_options[] = {
    { "model", T_MODEL, "run", NULL, NULL, REQ, 0, 0, NULL, NULL,
      "the base model: a path (GGUF, safetensors folder, llama2.c .bin) or a peft.Model" },
    { "dataset", T_PATH, "run", NULL, NULL, REQ, 0, 0, NULL, NULL,
      "training data (.jsonl/.json/.txt; formats in docs/data.md)" },
    { "output", T_STRING, "run", NULL, NULL, REQ, 0, 0, NULL, NULL,
      "output folder (adapter/, checkpoint/, metrics.jsonl, memory.json); must be empty or absent unless resume or overwrite" },
    { "valid", T_PATH, "run", NULL, NULL, 0, 0, 0, NULL, NULL,
      "validation data file" },
    { "valid_fraction", T_NUMBER, "run", NULL, NULL, MIN|MAX|MAXO, 0, 1, NULL, NULL,
      "fraction of the training data held out for validation (instead of valid)" },
    { "resume", T_BOOLEAN, "run", "false", NULL, 0, 0, 0, NULL, NULL,
      "continue from output/checkpoint (exactly: same losses as an uninterrupted run)" },
    { "overwrite", T_BOOLEAN, "run", "false", NULL, 0, 0, 0, NULL, NULL,
      "replace what a previous run left in output" },
    { "method", T_STRING, "method", "lora", NULL, 0, 0, 0, ch_method, NULL,
      "LoRA adapters, DoRA (weight-decomposed LoRA), IA3 (learned scaling of k, v and down_proj's input), LoRA over a quantised base, or every weight" },
    { "adapter", T_STRING, "method", NULL, "\"lora\"", 0, 0, 0, ch_adapter, NULL,
      "method = \"qlora\": the adapter method on the quantised base" },
    { "feedforward", T_LIST, "method", NULL, "{\"down_proj\"}", 0, 0, 0, NULL, NULL,
      "ia3: targets whose input (not output) is scaled" },
    { "quant", T_STRING, "method", NULL, "\"nf4\"", 0, 0, 0, ch_quant, NULL,
      "qlora: how the frozen base is re-stored on load" },
    { "double_quant", T_BOOLEAN, "method", "false", NULL, 0, 0, 0, NULL, NULL,
      "qlora nf4: double-quantised (8-bit) block scales" },
    { "precision", T_STRING, "method", "fp32", NULL, 0, 0, 0, ch_precision, NULL,
      "16-bit frozen weights and saved activations (fp16 adds dynamic loss scaling)" },
    { "compute", T_STRING, "method", "auto", NULL, 0, 0, 0, ch_compute, NULL,
      "bf16: the forward and gradient products with bf16 inputs and f32 sums (CPUs with AVX512_BF16; f32 elsewhere); auto: bf16 where the CPU has AVX512_BF16, else f32" },
    { "loss_scale", T_NUMBER, "method", NULL, "65536", MIN|MINO, 0, 0, NULL, NULL,
      "precision = \"fp16\": initial loss scale (a power of two)" },
    { "growth_interval", T_INTEGER, "method", NULL, "2000", MIN, 1, 0, NULL, NULL,
      "precision = \"fp16\": finite steps before the scale doubles" },
    { "checkpointing", T_BOOL_OR_INT, "method", "false", NULL, 0, 0, 0, NULL, NULL,
      "recompute activations in the backward pass (true: keep every layer input; k: every k-th)" },
    { "distributed", T_BOOLEAN, "method", NULL, "true when the MPI job has several ranks", 0, 0, 0, NULL, NULL,
      "data-parallel over the MPI job's ranks (mpirun/srun; docs/distributed.md)" },
    { "memory_budget", T_SIZE, "method", NULL, "the hardware report's budget", 0, 0, 0, NULL, NULL,
      "bytes the run may use (an integer or \"512M\", \"8G\"); default PEFT_MEMORY_BUDGET or 85% of available RAM" },
    { "lora_rank", T_INTEGER, "lora", NULL, "from the data (peft.tune.suggest_rank)", MIN, 1, 0, NULL, NULL,
      "LoRA rank r (unset: suggested from the dataset, reasons in run.json)" },
    { "lora_alpha", T_NUMBER, "lora", NULL, "2 x lora_rank", MIN|MINO, 0, 0, NULL, NULL,
      "LoRA alpha (scale alpha / r)" },
    { "lora_dropout", T_NUMBER, "lora", "0", NULL, MIN|MAX|MAXO, 0, 1, NULL, NULL,
      "dropout on the LoRA input" },
    { "targets", T_LIST, "lora", NULL, "{\"q_proj\", \"v_proj\"}", 0, 0, 0, NULL, NULL,
      "LoRA target modules (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)" },
    { "layers", T_INT_LIST, "lora", NULL, "every layer", 0, 0, 0, NULL, NULL,
      "layers that get adapters (0-based)" },
    { "rslora", T_BOOLEAN, "lora", "false", NULL, 0, 0, 0, NULL, NULL,
      "rsLoRA scaling alpha / sqrt(r)" },
    { "max_iters", T_INTEGER, "schedule", NULL, "one epoch", MIN, 1, 0, NULL, NULL,
      "optimizer steps (or epochs)" },
    { "epochs", T_NUMBER, "schedule", NULL, NULL, MIN|MINO, 0, 0, NULL, NULL,
      "passes over the training data (or max_iters)" },
    { "batch_size", T_INTEGER, "schedule", NULL, "4, fitted to the memory budget", MIN, 1, 0, NULL, NULL,
      "rows per micro-batch" },
    { "grad_accum", T_INTEGER, "schedule", "1", NULL, MIN, 1, 0, NULL, NULL,
      "micro-batches per optimizer step" },
    { "max_seq_len", T_INTEGER, "schedule", NULL, "min(512, the model's context), fitted to the budget", MIN, 2, 0, NULL, NULL,
      "tokens per example (longer ones are cut)" },
    { "packing", T_BOOLEAN, "schedule", "false", NULL, 0, 0, 0, NULL, NULL,
      "pack several examples into each row" },
    { "learning_rate", T_NUMBER, "optimizer", NULL, "2e-4 (full: 2e-5)", MIN|MINO, 0, 0, NULL, NULL,
      "peak learning rate" },
    { "optimizer", T_STRING, "optimizer", "adamw", NULL, 0, 0, 0, ch_optimizer, NULL,
      "optimizer" },
    { "weight_decay", T_NUMBER, "optimizer", "0", NULL, MIN, 0, 0, NULL, NULL,
      "decoupled weight decay" },
    { "momentum", T_NUMBER, "optimizer", "0.9", NULL, MIN|MAX|MAXO, 0, 1, NULL, NULL,
      "sgd: momentum" },
    { "schedule", T_STRING, "optimizer", "cosine", NULL, 0, 0, 0, ch_schedule, NULL,
      "learning-rate schedule after warm-up" },
    { "warmup", T_INTEGER, "optimizer", "0", NULL, MIN, 0, 0, NULL, NULL,
      "warm-up steps (linear from 0)" },
    { "min_lr_ratio", T_NUMBER, "optimizer", "0", NULL, MIN|MAX, 0, 1, NULL, NULL,
      "floor of the schedule, as a fraction of learning_rate" },
    { "max_grad_norm", T_NUMBER, "optimizer", "1.0", NULL, MIN, 0, 0, NULL, NULL,
      "gradient clipping norm (0: off)" },
    { "seed", T_INTEGER, "optimizer", "42", NULL, 0, 0, 0, NULL, NULL,
      "random seed (data order, dropout, initialisation)" },
    { "format", T_STRING, "data", "auto", NULL, 0, 0, 0, ch_format, NULL,
      "data format (auto: detected from the keys)" },
    { "chat_template", T_BOOLEAN, "data", "true", NULL, 0, 0, 0, NULL, NULL,
      "render prompt/completion records with the model's chat template (user = prompt, assistant = completion) when it has one" },
    { "train_on_prompt", T_BOOLEAN, "data", "false", NULL, 0, 0, 0, NULL, NULL,
      "loss on prompt tokens too" },
    { "skip_bad", T_BOOLEAN, "data", "false", NULL, 0, 0, 0, NULL, NULL,
      "skip bad records (counted) instead of stopping" },
    { "eval_every", T_INTEGER, "eval", "0", NULL, MIN, 0, 0, NULL, NULL,
      "steps between validation evaluations (0: never)" },
    { "eval_batches", T_INTEGER, "eval", "0", NULL, MIN, 0, 0, NULL, NULL,
      "limit of validation batches per evaluation (0: all)" },
    { "early_stopping", T_INTEGER, "eval", NULL, NULL, MIN, 1, 0, NULL, NULL,
      "evaluations without improvement before stopping (keeps output/best)" },
    { "save_every", T_INTEGER, "eval", "0", NULL, MIN, 0, 0, NULL, NULL,
      "steps between checkpoints (0: only at the end)" },
    { "name", T_STRING, "eval", NULL, NULL, 0, 0, 0, NULL, NULL,
      "run name (the report's title)" },
    { "report", T_BOOLEAN, "eval", "true", NULL, 0, 0, 0, NULL, NULL,
      "write output/report.html (loss, learning rate, gradient norm, tokens/s, memory, configuration, samples)" },
    { "save_adapter", T_BOOLEAN, "eval", "true", NULL, 0, 0, 0, NULL, NULL,
      "write output/adapter (PEFT layout)" },
    { "progress", T_BOOLEAN, "eval", NULL, "not quiet", 0, 0, 0, NULL, NULL,
      "progress line on stderr" },
    { "quiet", T_BOOLEAN, "eval", "false", NULL, 0, 0, 0, NULL, NULL,
      "print nothing" },
    { "on_step", T_FUNCTION, "eval", NULL, NULL, 0, 0, 0, NULL, NULL,
      "callback(info) after each step: {step, total, loss, lr, grad_norm, tokens_per_s, elapsed, eta, val_loss, loss_scale, skipped_steps}; return false to stop" },
    { "on_eval", T_FUNCTION, "eval", NULL, NULL, 0, 0, 0, NULL, NULL,
      "callback(info) after each evaluation: {step, val_loss, loss}" },
    { "on_phase", T_FUNCTION, "eval", NULL, NULL, 0, 0, 0, NULL, NULL,
      "callback(phase) as a phase begins: \"evaluating\", \"training\", \"saving\"" },
    { "tracking", T_TRACKING, "eval", NULL, "$PEFT_TRACKING", 0, 0, 0, NULL, keys_tracking,
      "also an MLflow run in a file store: \"mlruns\" | {uri =, experiment =, run_name =, tags =} | false (docs/tracking.md)" },
};

static const char *const type_names[PL_OPT_NTYPES] = {
    "integer", "number", "boolean", "string", "path", "list", "int_list", "function", "model",
    "bool_or_int", "size", "tracking"
};

const struct pl_option *pl_train_options(int *n)
{
    if (n) *n = (int)(sizeof train_options / sizeof train_options[0]);
    return train_options;
}

const struct pl_option *pl_option_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof train_options / sizeof train_options[0]; i++)
        if (strcmp(train_options[i].name, name) == 0) return &train_options[i];
    return NULL;
}

const char *pl_option_type_name(enum pl_opt_type t)
{
    return (unsigned)t < PL_OPT_NTYPES ? type_names[t] : "?";
}

/* a bound as Lua's tostring writes the integers the table holds ("0", "1"); others %.14g */
static void fmt_bound(char *b, size_t n, double v)
{
    if (v == floor(v) && fabs(v) < 1e15) snprintf(b, n, "%.0f", v);
    else snprintf(b, n, "%.14g", v);
}

const char *pl_option_range_text(const struct pl_option *o, char *buf, size_t n)
{
    const char *kind = o->type == PL_OPT_INTEGER ? "an integer" : o->type == PL_OPT_NUMBER ? "a number"
                     : pl_option_type_name(o->type);
    char lo[32], hi[32];
    fmt_bound(lo, sizeof lo, o->min);
    fmt_bound(hi, sizeof hi, o->max);
    int hmin = (o->flags & PL_OPT_HAS_MIN) != 0, hmax = (o->flags & PL_OPT_HAS_MAX) != 0;
    if (hmin && hmax)
        snprintf(buf, n, "%s in %s%s, %s%s", kind, o->flags & PL_OPT_MIN_OPEN ? "(" : "[", lo, hi,
                 o->flags & PL_OPT_MAX_OPEN ? ")" : "]");
    else if (hmin)
        snprintf(buf, n, "%s %s %s", kind, o->flags & PL_OPT_MIN_OPEN ? ">" : ">=", lo);
    else if (hmax)
        snprintf(buf, n, "%s %s %s", kind, o->flags & PL_OPT_MAX_OPEN ? "<" : "<=", hi);
    else
        snprintf(buf, n, "%s", kind);
    return buf;
}

int pl_option_check_number(const struct pl_option *o, double v, char *why, size_t n)
{
    int bad = v != v;
    if ((o->flags & PL_OPT_HAS_MIN) && (v < o->min || ((o->flags & PL_OPT_MIN_OPEN) && v == o->min))) bad = 1;
    if ((o->flags & PL_OPT_HAS_MAX) && (v > o->max || ((o->flags & PL_OPT_MAX_OPEN) && v == o->max))) bad = 1;
    if (!bad) return 0;
    char r[96];
    snprintf(why, n, "is out of range (%s)", pl_option_range_text(o, r, sizeof r));
    return 1;
}

int pl_option_check_choice(const struct pl_option *o, const char *s, char *why, size_t n)
{
    if (!o->choices) return 0;
    for (int i = 0; o->choices[i]; i++)
        if (s && strcmp(o->choices[i], s) == 0) return i;
    if (why && n) {
        size_t len = (size_t)snprintf(why, n, "is not one of ");
        for (int i = 0; o->choices[i] && len < n; i++)
            len += (size_t)snprintf(why + len, n - len, "%s\"%s\"", i ? ", " : "", o->choices[i]);
    }
    return -1;
}

int pl_option_choice(const char *option, const char *value)
{
    const struct pl_option *o = pl_option_find(option);
    if (!o || !o->choices || !value) return -1;
    return pl_option_check_choice(o, value, NULL, 0);
}

const char *pl_option_choice_name(const char *option, int i)
{
    const struct pl_option *o = pl_option_find(option);
    if (!o || !o->choices || i < 0) return NULL;
    for (int k = 0; o->choices[k]; k++)
        if (k == i) return o->choices[k];
    return NULL;
}
