/* tokenizer.h — text <-> token ids for the models peftlua runs (owner: tokenizer).
 *
 * Three algorithms, each reproducing a reference exactly:
 *   PL_TOK_SPM      SentencePiece-style (Llama, Phi-3, llama2.c GGUFs): llama.cpp's llama-spm
 *                   tokenizer — "▁" for spaces, a space prefix, highest-score bigram merges,
 *                   byte fallback through <0xXX> tokens.
 *   PL_TOK_BPE      byte-level BPE (GPT-2, StarCoder, SmolLM2, Falcon, DeepSeek, MPT, ...):
 *                   the vocabulary's pre-tokenizer splits the text, each word's bytes go through
 *                   GPT-2's byte->unicode map and merge by rank (llama.cpp's llm_tokenizer_bpe).
 *   PL_TOK_LLAMA2C  llama2.c's tokenizer.bin with run.c's encode(): a separate dummy " " token,
 *                   per-character lookup with byte fallback (id = byte + 3), then best-score
 *                   pair merges over the whole sequence.
 *   PL_TOK_WPM      WordPiece (BERT): llama.cpp's llm_tokenizer_wpm — accents dropped (first
 *                   code point of NFD), lowercase, split at white space / punctuation / CJK,
 *                   greedy longest match of "▁"+word, [UNK] for a word that does not tokenize.
 *                   BOS/EOS are [CLS]/[SEP].
 * Special tokens (control / user-defined) are matched in text when asked (PL_TOK_PARSE_SPECIAL);
 * user-defined tokens are always matched, as llama.cpp does.
 *
 * Example
 *   struct pl_tokenizer *tok;
 *   if (pl_tokenizer_load(&tok, "models/SmolLM2-135M-Instruct.Q4_1.gguf")) die(pl_last_error());
 *   int32_t *ids; size_t n;
 *   pl_tokenizer_encode(tok, "Hello", 5, PL_TOK_PARSE_SPECIAL, &ids, &n);
 *   char *text; size_t len;
 *   pl_tokenizer_decode(tok, ids, n, 0, &text, &len);      // "Hello"
 *   pl_free(ids); pl_free(text); pl_tokenizer_free(tok);
 *
 * Memory: everything is allocated with pl_alloc under PL_MEM_DATA; arrays returned to the
 * caller are freed with pl_free().
 */
#ifndef PEFTLUA_TOKENIZER_H
#define PEFTLUA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

enum pl_tok_kind { PL_TOK_SPM = 0, PL_TOK_BPE, PL_TOK_LLAMA2C, PL_TOK_WPM };

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
enum pl_tok_type {
    PL_TOKT_UNDEFINED = 0, PL_TOKT_NORMAL = 1, PL_TOKT_UNKNOWN = 2, PL_TOKT_CONTROL = 3,
    PL_TOKT_USER_DEFINED = 4, PL_TOKT_UNUSED = 5, PL_TOKT_BYTE = 6
};

/* Pre-tokenizers (BPE word splitting), named as GGUF's tokenizer.ggml.pre. */
enum pl_tok_pre {
    PL_PRE_GPT2 = 0,       /* "gpt-2", "mpt", "olmo", "jais" */
    PL_PRE_STARCODER,      /* "starcoder", "refact", "smollm", "command-r", "codeshell", ... */
    PL_PRE_FALCON,         /* "falcon" */
    PL_PRE_DEEPSEEK_CODER, /* "deepseek-coder" */
    PL_PRE_DEEPSEEK_LLM,   /* "deepseek-llm" */
    PL_PRE_LLAMA3,         /* "llama3", "llama-bpe", "dbrx", "smaug-bpe" */
    PL_PRE_QWEN2,          /* "qwen2", "stablelm2" */
    PL_PRE_DEFAULT         /* "default" and unknown names: llama.cpp's default BPE splits */
};

/* Everything a tokenizer is built from; loaders fill it, pl_tokenizer_new copies it. */
struct pl_tokenizer_spec {
    enum pl_tok_kind kind;
    int32_t n_vocab;
    const char *const *tokens;     /* n_vocab strings (may contain no NUL) */
    const uint32_t *token_lens;    /* byte lengths, or NULL for strlen */
    const float *scores;           /* n_vocab, or NULL (all 0) */
    const int32_t *types;          /* n_vocab enum pl_tok_type, or NULL (inferred) */
    int32_t n_merges;              /* BPE: "left right" strings, rank = index */
    const char *const *merges;
    const char *pre;               /* BPE pre-tokenizer name; NULL = "default" */
    int32_t bos, eos, unk, pad;    /* -1 when absent */
    int add_bos, add_eos, add_space_prefix;   /* -1 = the algorithm's default */
    int prefix_first_only;         /* SPM: the space prefix only at the very start of the text and only
                                      when it does not begin with ' ' (HF Metaspace "first") */
    const char *chat_template;     /* may be NULL */
};

struct pl_tokenizer;

enum pl_status pl_tokenizer_new(struct pl_tokenizer **out, const struct pl_tokenizer_spec *spec,
                                const char *what);
/* Load from a path: .gguf (tokenizer.ggml.* metadata), .json (HF tokenizer.json — byte-level
 * BPE, or Llama-style BPE with byte fallback over "▁" text, which becomes PL_TOK_SPM merging by
 * rank — with
 * tokenizer_config.json beside it for the chat template and BOS/EOS when present), anything
 * else as a llama2.c tokenizer.bin. A missing file is PL_ERR_IO naming the path. */
/* Limits on vocabularies read from files (tokenizer.json ids, GGUF arrays). */
#define PL_TOKENIZER_MAX_VOCAB (1 << 24)
#define PL_TOKENIZER_MAX_GAP   65536   /* tokenizer.json: unused ids tolerated beyond the entries */
enum pl_status pl_tokenizer_load(struct pl_tokenizer **out, const char *path);
enum pl_status pl_tokenizer_load_gguf(struct pl_tokenizer **out, const char *path);
enum pl_status pl_tokenizer_load_llama2c(struct pl_tokenizer **out, const char *path);
enum pl_status pl_tokenizer_load_hf(struct pl_tokenizer **out, const char *path);
void pl_tokenizer_free(struct pl_tokenizer *t);

/* Encoding flags. */
enum {
    PL_TOK_ADD_BOS       = 1,   /* prepend BOS (when the vocabulary has one) */
    PL_TOK_ADD_EOS       = 2,   /* append EOS */
    PL_TOK_PARSE_SPECIAL = 4,   /* match control tokens (e.g. "<|im_start|>") in the text */
    PL_TOK_DEFAULT_SPECIAL = 8  /* BOS/EOS as the vocabulary's add_bos/add_eos say (overrides 1,2) */
};
/* Encode text[0..len) into a new array *ids (pl_free it) of *n ids. */
enum pl_status pl_tokenizer_encode(const struct pl_tokenizer *t, const char *text, size_t len,
                                   unsigned flags, int32_t **ids, size_t *n);

/* Decoding flags. */
enum {
    PL_TOK_DECODE_SPECIAL = 1,  /* render control tokens ("<|im_end|>") instead of dropping them */
    PL_TOK_DECODE_KEEP_PREFIX = 2 /* SPM: keep the leading space the space prefix produced */
};
/* Decode ids into a new NUL-terminated string *text (pl_free it) of *len bytes. Ids out of
 * range are PL_ERR_ARG. SPM/llama2.c: pieces' "▁" become spaces, <0xXX> bytes are raw bytes
 * and the first piece loses one leading space (the space prefix); BPE: byte-level decoding. */
enum pl_status pl_tokenizer_decode(const struct pl_tokenizer *t, const int32_t *ids, size_t n,
                                   unsigned flags, char **text, size_t *len);
/* The bytes one token decodes to (no prefix stripping; control tokens give their text when
 * special != 0, else ""). Writes at most cap bytes; returns the full length, -1 if id is out
 * of range. */
int pl_tokenizer_token_bytes(const struct pl_tokenizer *t, int32_t id, int special,
                             char *buf, size_t cap);
/* The vocabulary string of a token as stored (e.g. "▁the", "Ġthe"), NULL if out of range. */
const char *pl_tokenizer_piece(const struct pl_tokenizer *t, int32_t id, size_t *len);
/* Id of an exact vocabulary string, -1 if absent. */
int32_t pl_tokenizer_find(const struct pl_tokenizer *t, const char *s, size_t len);

int32_t pl_tokenizer_n_vocab(const struct pl_tokenizer *t);
int32_t pl_tokenizer_bos(const struct pl_tokenizer *t);     /* -1 if none */
int32_t pl_tokenizer_eos(const struct pl_tokenizer *t);
int32_t pl_tokenizer_eot(const struct pl_tokenizer *t);     /* end of turn (<|im_end|>, <|eot_id|>), else eos */
enum pl_tok_kind pl_tokenizer_kind(const struct pl_tokenizer *t);
enum pl_tok_type pl_tokenizer_type(const struct pl_tokenizer *t, int32_t id);
const char *pl_tokenizer_pre_name(const struct pl_tokenizer *t);   /* "gpt-2", "smollm", "" for SPM */
int pl_tokenizer_add_bos(const struct pl_tokenizer *t);   /* what PL_TOK_DEFAULT_SPECIAL adds */
int pl_tokenizer_add_eos(const struct pl_tokenizer *t);
const char *pl_tokenizer_chat_template(const struct pl_tokenizer *t);  /* NULL if none */

/* Name <-> enum of pre-tokenizers; pl_tok_pre_from_name returns -1 for names it does not
 * implement (loaders then fail with PL_ERR_UNSUPPORTED rather than tokenize differently). */
int pl_tok_pre_from_name(const char *name);

#endif
