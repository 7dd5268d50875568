/* options.h — the training options of a run, declared once.
 *
 * One table of descriptors (name, type, default, range or choices, help) for every option of a
 * fine-tuning run (peft.train.run, `peftlua train`). Everything that knows about the options
 * reads it: the Lua check and its messages (lua/peft/train_options.lua, through
 * src/lua/pl_options.c), peft.train.options(), `peftlua train --help`, docs/api.md, and the
 * engine's own name → enum parsing (precision, schedule, optimizer, method), so that a value
 * is validated in one place. A new option is one entry in src/train/options.c (plus the code
 * that uses it).
 *
 * Worked example — check a value a user typed:
 *
 *     const struct pl_option *o = pl_option_find("lora_rank");
 *     char why[128];
 *     if (pl_option_check_number(o, 0, why, sizeof why))
 *         fprintf(stderr, "%s = 0 %s\n", o->name, why);   // "is out of range (an integer >= 1)"
 */
#ifndef PEFTLUA_OPTIONS_H
#define PEFTLUA_OPTIONS_H

#include <stddef.h>

#include "peftlua/status.h"

enum pl_opt_type {
    PL_OPT_INTEGER = 0, PL_OPT_NUMBER, PL_OPT_BOOLEAN, PL_OPT_STRING,
    PL_OPT_PATH,        /* a readable file */
    PL_OPT_LIST,        /* a list of strings (command line: one comma-separated string) */
    PL_OPT_INT_LIST,    /* a list of integers >= 0 */
    PL_OPT_FUNCTION,    /* a Lua callback */
    PL_OPT_MODEL,       /* a path or a loaded model */
    PL_OPT_BOOL_OR_INT, /* false | true | k >= 1 */
    PL_OPT_SIZE,        /* bytes: an integer or "512M", "8G" */
    PL_OPT_TRACKING,    /* a store path, a table of `keys`, or false */
    PL_OPT_NTYPES
};

/* flags */
#define PL_OPT_REQUIRED 1u
#define PL_OPT_HAS_MIN  2u
#define PL_OPT_HAS_MAX  4u
#define PL_OPT_MIN_OPEN 8u   /* exclusive lower bound */
#define PL_OPT_MAX_OPEN 16u  /* exclusive upper bound */

struct pl_option {
    const char *name;
    enum pl_opt_type type;
    const char *group;            /* run, method, lora, schedule, optimizer, data, eval */
    const char *dflt;             /* the default as written: "8", "1.0", "lora", "false"; NULL: none */
    const char *doc;              /* the default as documented when it is computed; NULL: dflt */
    unsigned flags;
    double min, max;              /* with PL_OPT_HAS_MIN / PL_OPT_HAS_MAX (integers and numbers) */
    const char *const *choices;   /* NULL-terminated; NULL: any value of the type */
    const char *const *keys;      /* PL_OPT_TRACKING: the keys of its table form */
    const char *help;
};

/* The training options, in documentation order; *n their count. */
const struct pl_option *pl_train_options(int *n);
/* The option named `name`, or NULL. */
const struct pl_option *pl_option_find(const char *name);
/* "integer", "number", ... (the Lua layer's type names). */
const char *pl_option_type_name(enum pl_opt_type t);

/* "an integer >= 1", "a number in (0, 1)", "a number in [0, 1]": the allowed range in words. */
const char *pl_option_range_text(const struct pl_option *o, char *buf, size_t n);
/* v against o's range: 0 when inside, else 1 with `why` = "is out of range (an integer >= 1)". */
int pl_option_check_number(const struct pl_option *o, double v, char *why, size_t n);
/* s among o's choices: its index (0-based), else -1 with `why` = "is not one of \"a\", \"b\"". */
int pl_option_check_choice(const struct pl_option *o, const char *s, char *why, size_t n);
/* The index of `value` among the choices of option `option` ("precision", "bf16" → 1), -1 if
 * either is unknown. The engine's enums follow the order of the choices. */
int pl_option_choice(const char *option, const char *value);
/* The i-th choice of `option`, or NULL. */
const char *pl_option_choice_name(const char *option, int i);

/* A trainer configuration set by option name from its command-line form, checked through the
 * table as the Lua layer checks it ("lora_rank", "16"; "targets", "q_proj,v_proj" or "all";
 * "checkpointing", "true" | "false" | "2"; "method", "dora" also sets the adapter kind and
 * IA3 its default targets; "lora_rank" also sets lora_alpha to its default, 2 x rank, so set
 * lora_alpha after it). PL_ERR_ARG with "lora_rank = \"0\" is out of range (an integer
 * >= 1)" on a bad value; PL_ERR_UNSUPPORTED for an option of the run (dataset, output, ...). */
struct pl_train_cfg;
enum pl_status pl_train_cfg_set(struct pl_train_cfg *c, const char *name, const char *value);

/* The memory model's inputs from a trainer configuration (method, adapter kind, targets, rank,
 * dropout, layers, rows per forward, sequence, accumulation, checkpointing, precision,
 * optimizer); the model's shape and dtypes come from pl_memmodel_cfg_from_model, QLoRA's re-stored
 * type from the quantised base. */
struct pl_memmodel_cfg;
void pl_memmodel_cfg_from_train(struct pl_memmodel_cfg *m, const struct pl_train_cfg *t);

#endif
