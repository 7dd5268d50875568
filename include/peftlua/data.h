/* data.h — fine-tuning datasets: reading, validation, rendering to (ids, loss mask), batching.
 *
 * Implemented in src/data/data.c reading and validation, src/data/data_build.c rendering, statistics and
 * splits, src/data/data_batch.c RNG, shuffling, batching and the resumable iterator; the Lua
 * binding is src/lua/l_data.c, module peft.data.
 *
 * Pipeline:
 *   1. pl_data_read(): a JSONL file (one object a line) or a JSON array of objects becomes
 *      records of one format — text {"text"}, completion {"prompt","completion"}, chat
 *      {"messages":[{"role","content"}...]} with an optional leading system turn, alpaca
 *      {"instruction","input","output"} — detected from the first record's keys unless
 *      forced. Every problem is an issue "path:line: what" (invalid JSON with its column,
 *      missing key, wrong type, empty content, role order, invalid UTF-8, a record of another
 *      format than the file's); nothing is dropped silently.
 *   2. pl_dataset_build(): records are rendered through a struct pl_data_tokenizer (the
 *      model's tokenizer and chat template via pl_data_tokenizer_bind, or any implementation
 *      of the interface, e.g. a test double) to token ids and a loss mask, truncated to
 *      max_seq_len (counted), with length statistics and exact duplicates reported.
 *   3. pl_data_iter: batches by length buckets (padded) or packed rows, shuffled by our own
 *      RNG (xoshiro256** seeded by splitmix64 — the same seed gives the same order on every
 *      platform), with a position (epoch, index, RNG state) that can be saved and restored.
 *
 * Loss mask and the next-token shift. Example i has ids x[0..L) and mask m[0..L): m[t] = 1
 * when token x[t] is to be predicted (a completion/assistant token, EOS included; every
 * token except a leading BOS when training on prompts too). A batch row of length T holds
 *   ids[t]     = x[t]                              for t < L-1, else pad_id
 *   targets[t] = m[t+1] ? x[t+1] : -1              for t < L-1, else -1
 * i.e. the shift is done here: the trainer computes cross-entropy of logits[t] against
 * targets[t], ignoring -1.
 *
 * Worked example (C):
 *     struct pl_data_file *f;
 *     pl_data_read(&f, "train.jsonl", PL_DATA_AUTO);           // issues in f->issues
 *     struct pl_dataset *ds;
 *     struct pl_data_build_opts o = pl_data_build_defaults();  // max_seq_len 512, ...
 *     pl_dataset_build(&ds, f, NULL, 0, &tok, &o);             // fails on issues unless o.skip_bad
 *     struct pl_data_iter *it = pl_data_iter_new(ds, &(struct pl_data_iter_opts){
 *         .batch_size = 4, .shuffle = 1, .seed = 42 });
 *     struct pl_data_batch b;
 *     while (pl_data_iter_next(it, &b) == PL_OK && b.epoch == 0) train_step(b.ids, b.targets, b.batch, b.seq);
 *     pl_data_iter_free(it); pl_dataset_free(ds); pl_data_file_free(f);
 */
#ifndef PEFTLUA_DATA_H
#define PEFTLUA_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

/* ---------------------------------------------------------------- records and reading */

enum pl_data_format { PL_DATA_AUTO = 0, PL_DATA_TEXT, PL_DATA_COMPLETION, PL_DATA_CHAT,
                      PL_DATA_ALPACA, PL_DATA_FORMAT_COUNT };

/* "auto", "text", "completion", "chat", "alpaca" */
const char *pl_data_format_name(enum pl_data_format f);
/* Also accepts "prompt_completion", "messages", "instruction". -1 if unknown. */
int pl_data_format_from_name(const char *name);

struct pl_data_msg {
    char *role;      /* "system", "user", "assistant" */
    char *content;
};

struct pl_data_record {
    int32_t line;                 /* 1-based line where the record starts */
    /* text: a = text.  completion: a = prompt, b = completion.
     * alpaca: a = instruction, b = input ("" if absent), c = output.  chat: msgs. */
    char *a, *b, *c;
    int32_t n_msgs;
    struct pl_data_msg *msgs;
};

struct pl_data_issue {
    int32_t line;                 /* 0: about the whole file */
    char *msg;                    /* "path:line: problem" */
};

struct pl_data_file {
    char *path;
    enum pl_data_format format;   /* detected (or forced); AUTO if no record was readable */
    int32_t format_line;          /* the line the format was detected from */
    int32_t is_array;             /* 1: a JSON array, 0: JSONL */
    int32_t n_seen;               /* records (non-blank lines / array elements) seen */
    int32_t n_records;
    struct pl_data_record *records;   /* the good ones, in file order */
    int32_t n_issues;
    struct pl_data_issue *issues;     /* one per bad record (and file-level problems) */
};

/* Longest JSONL line or array element accepted (bytes); longer ones are an issue. */
#define PL_DATA_MAX_RECORD_BYTES (8u << 20)

/* Read and validate a file. Returns PL_OK when the file could be read at all (per-record
 * problems are in f->issues); PL_ERR_IO if it cannot be opened. force = PL_DATA_AUTO detects. */
enum pl_status pl_data_read(struct pl_data_file **out, const char *path, enum pl_data_format force);
/* The same from memory (name is used in messages). */
enum pl_status pl_data_read_mem(struct pl_data_file **out, const char *name, const char *text,
                                size_t n, enum pl_data_format force);
void pl_data_file_free(struct pl_data_file *f);

/* Canonical JSON of text (object keys sorted, no whitespace); NULL with message on invalid
 * JSON. Free with pl_free(). Used for exact-match scoring of tool calls. */
char *pl_data_json_canonical(const char *text, size_t n);

/* ---------------------------------------------------------------- tokenizer interface */

struct pl_data_ids { int32_t *v; int64_t n, cap; };       /* growable id list (PL_MEM_DATA) */
enum pl_status pl_data_ids_push(struct pl_data_ids *ids, int32_t id);
void pl_data_ids_free(struct pl_data_ids *ids);

struct pl_data_span { size_t begin, end; };               /* byte range [begin, end) */

/* What rendering needs from a tokenizer and its chat template. */
struct pl_data_tokenizer {
    void *ctx;
    /* Append the ids of text[0..n) to out; special-token strings ("<|im_start|>") in the text
     * are recognised as their tokens. No BOS/EOS is added. */
    enum pl_status (*encode)(void *ctx, const char *text, size_t n, struct pl_data_ids *out);
    /* The bytes token id stands for (control tokens: their text) into buf[0..cap); returns
     * the full length, -1 if unknown. Lets a whole-text encoding be lined up with the loss
     * spans; NULL: loss and prompt segments are encoded separately. */
    int (*token_bytes)(void *ctx, int32_t id, char *buf, size_t cap);
    /* Render a conversation with the model's chat template (no generation prompt): *text is
     * allocated with pl_alloc, *spans (pl_alloc) are the bytes the assistant produces — each
     * assistant message's content and its end-of-turn marker — in increasing order. */
    enum pl_status (*render_chat)(void *ctx, const struct pl_data_msg *msgs, int n_msgs,
                                  char **text, size_t *len, struct pl_data_span **spans,
                                  int *n_spans);
    int32_t bos_id;      /* prepended to text/completion examples when add_bos; -1 none */
    int32_t eos_id;      /* appended to text/completion examples; -1 none */
    int32_t pad_id;      /* padding id in batches (targets there are -1) */
    int32_t add_bos;
    /* Prompt/completion records go through render_chat as a user turn (the prompt) and an
     * assistant turn (the completion) instead of [BOS] prompt completion [EOS]. Set by
     * pl_data_tokenizer_bind when the vocabulary has a chat template it recognises (and by a
     * Lua chat override); the data option chat_template = false clears it. */
    int32_t completion_chat;
};

struct pl_tokenizer;
/* Bind dt to the project's tokenizer (tokenizer.h): encoding with special tokens parsed,
 * token bytes, BOS/EOS/add_bos from the vocabulary, pad = EOS, and the model's chat template
 * for chat/alpaca records. tok must outlive dt. (src/data/data_tok.c) */
void pl_data_tokenizer_bind(struct pl_data_tokenizer *dt, const struct pl_tokenizer *tok);

/* ---------------------------------------------------------------- datasets */

struct pl_data_example {
    int32_t file;        /* 0: the main file, 1: the validation file */
    int32_t line;
    int32_t len;         /* tokens after truncation */
    int32_t n_target;    /* tokens with mask 1 */
    int32_t truncated;   /* tokens cut by max_seq_len */
    int64_t off;         /* into ids/mask pools */
};

#define PL_DATA_HIST_BUCKETS 12   /* lengths 1, 2-3, 4-7, ..., >= 2048 (log2 buckets) */

struct pl_data_stats {
    int32_t count;
    int64_t tokens, target_tokens;
    int32_t min, max, median, p95;
    double mean;
    int32_t hist_lo[PL_DATA_HIST_BUCKETS], hist_count[PL_DATA_HIST_BUCKETS];
    int32_t truncated;          /* examples cut to max_seq_len */
    int64_t truncated_tokens;
    int32_t no_target;          /* examples left without any loss token (excluded) */
};

struct pl_data_build_opts {
    int32_t max_seq_len;        /* tokens per example, after which it is cut (default 512) */
    int32_t train_on_prompt;    /* loss on prompt tokens too */
    int32_t skip_bad;           /* drop records with issues (counted) instead of failing */
    double  valid_fraction;     /* 0: no split (unless a validation file is given) */
    uint64_t seed;              /* for the fraction split */
};
struct pl_data_build_opts pl_data_build_defaults(void);

struct pl_dataset {
    char *path;
    enum pl_data_format format;
    int32_t n;
    struct pl_data_example *ex;
    int32_t *ids;               /* pool */
    uint8_t *mask;              /* pool */
    int64_t pool_n;
    int32_t bos_id, eos_id, pad_id;
    int32_t max_seq_len;
    uint64_t seed;              /* the build's seed (a default for batching) */
    struct pl_data_stats stats;
    int32_t n_seen;             /* records seen in the file(s) this split came from */
    int32_t skipped;            /* bad records skipped (skip_bad) */
    int32_t n_issues;
    struct pl_data_issue *issues;  /* copies of the file issues */
    int32_t duplicates;         /* records equal to an earlier one (within this split) */
    int32_t n_dup_pairs;
    int32_t (*dup_pairs)[2];    /* first PL_DATA_MAX_DUP_PAIRS (line, line of first copy) */
    int32_t overlap;            /* records also present in the other split */
};
#define PL_DATA_MAX_DUP_PAIRS 32

/* Build the training dataset from f and, when valid_file is given or opts->valid_fraction > 0,
 * the validation dataset (*valid_out, else NULL). Fails with the first issue (and the count)
 * when a file has issues and !skip_bad; with no examples at all; or on tokenizer failure. */
enum pl_status pl_dataset_build(struct pl_dataset **train_out, struct pl_dataset **valid_out,
                                const struct pl_data_file *f, const struct pl_data_file *valid_file,
                                const struct pl_data_tokenizer *tok,
                                const struct pl_data_build_opts *opts);
void pl_dataset_free(struct pl_dataset *ds);

/* Render one record (format fmt) to ids and mask; exposed for tests and for the Lua layer. */
enum pl_status pl_data_render(struct pl_data_ids *ids, uint8_t **mask, enum pl_data_format fmt,
                              const struct pl_data_record *r, const struct pl_data_tokenizer *tok,
                              int train_on_prompt);

/* Lengths and statistics helpers. */
void pl_data_stats_compute(struct pl_data_stats *s, const int32_t *lens, int32_t n);

/* ---------------------------------------------------------------- RNG and batching */

/* xoshiro256** (Blackman & Vigna), seeded by splitmix64(seed). */
struct pl_data_rng { uint64_t s[4]; };
void     pl_data_rng_seed(struct pl_data_rng *r, uint64_t seed);
uint64_t pl_data_rng_next(struct pl_data_rng *r);
/* Uniform in [0, n), n >= 1, unbiased (rejection). */
uint64_t pl_data_rng_below(struct pl_data_rng *r, uint64_t n);
double   pl_data_rng_uniform(struct pl_data_rng *r);        /* [0, 1) with 53 bits */
/* Fisher–Yates shuffle of v[0..n). */
void     pl_data_shuffle_i32(struct pl_data_rng *r, int32_t *v, int64_t n);

struct pl_data_iter_opts {
    int32_t batch_size;     /* rows per batch (>= 1) */
    int32_t shuffle;        /* shuffle examples (and batches) each epoch */
    int32_t packing;        /* pack whole examples into rows of seq_len+1 tokens */
    int32_t seq_len;        /* 0: pad each batch to its longest row; else every batch is this
                               long (packing: row length; default max_seq_len) */
    int32_t bucket;         /* length buckets: sort within windows of bucket batches (0: off;
                               default 16 when unset via pl_data_iter_defaults) */
    int32_t drop_last;      /* drop a final short batch */
    uint64_t seed;
};
struct pl_data_iter_opts pl_data_iter_defaults(void);

/* Position in the data order: enough to continue exactly where a run stopped. */
struct pl_data_iter_state {
    int64_t epoch;          /* epochs completed before the current one */
    int64_t index;          /* next batch within the current epoch */
    uint64_t rng[4];        /* RNG state before the current epoch's order was drawn */
};

struct pl_data_batch {
    int32_t batch, seq;     /* rows and columns */
    const int32_t *ids;     /* [batch, seq], pad_id where empty */
    const int32_t *targets; /* [batch, seq], -1 = ignored */
    int64_t n_target;       /* targets != -1 */
    int64_t epoch, index;   /* which batch this was */
    const int32_t *examples;/* example indices in this batch (packing: in row order) */
    int32_t n_examples;
};

struct pl_data_iter;
/* The iterator borrows ds (keep it alive). NULL with message on bad options. */
struct pl_data_iter *pl_data_iter_new(const struct pl_dataset *ds, const struct pl_data_iter_opts *o);
void pl_data_iter_free(struct pl_data_iter *it);
/* Next batch (valid until the next call); moves to the next epoch after the last batch. */
enum pl_status pl_data_iter_next(struct pl_data_iter *it, struct pl_data_batch *b);
int64_t pl_data_iter_batches_per_epoch(const struct pl_data_iter *it);
void pl_data_iter_get_state(const struct pl_data_iter *it, struct pl_data_iter_state *st);
enum pl_status pl_data_iter_set_state(struct pl_data_iter *it, const struct pl_data_iter_state *st);

#endif
