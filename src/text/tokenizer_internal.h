/* tokenizer_internal.h — shared between src/tokenizer*.c only (owner: tokenizer). */
#ifndef PEFTLUA_TOKENIZER_INTERNAL_H
#define PEFTLUA_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/tokenizer.h"

/* Open-addressing hash map from byte strings to int32 (keys are not copied). */
struct pl_strmap {
    const char **keys; uint32_t *lens; int32_t *vals;
    size_t cap, n;
};
enum pl_status pl_strmap_init(struct pl_strmap *m, size_t expected);
void pl_strmap_free(struct pl_strmap *m);
/* Insert or overwrite (overwrite=1) / keep the first (overwrite=0). */
enum pl_status pl_strmap_put(struct pl_strmap *m, const char *k, size_t len, int32_t v, int overwrite);
int32_t pl_strmap_get(const struct pl_strmap *m, const char *k, size_t len);   /* -1 if absent */

struct pl_tokenizer {
    enum pl_tok_kind kind;
    int32_t n_vocab;
    char **text; uint32_t *len;       /* vocabulary strings as stored */
    float *score;
    uint8_t *type;                    /* enum pl_tok_type */
    struct pl_strmap tok2id;          /* last id wins on duplicates (llama.cpp) */
    struct pl_strmap ranks;           /* BPE: "left right" -> rank, first wins */
    char **merge_text; int32_t n_merges;
    enum pl_tok_pre pre; char *pre_name; int ignore_merges;
    int32_t bos, eos, unk, pad, eot;
    int add_bos, add_eos, add_space_prefix;
    int prefix_first_only;            /* HF Metaspace(prepend_scheme=first): prefix only text at offset 0 not starting with ' ' */
    int32_t byte_tok[256];            /* SPM: <0xXX> ids (-1 absent); BPE: id of each byte's char */
    int32_t *special; int32_t n_special;  /* control/user-defined/unknown ids, longest text first */
    char *chat_template;
};

/* Pre-tokenized words: word k is bytes[ends[k-1] .. ends[k]) (ends[-1] = 0). */
struct pl_tok_words { char *bytes; size_t *ends; size_t n; };
enum pl_status pl_tok_pretokenize(enum pl_tok_pre pre, const char *text, size_t len,
                                  struct pl_tok_words *w);
void pl_tok_words_free(struct pl_tok_words *w);

/* GPT-2 byte <-> unicode map: the code point standing for byte b, and back (-1 if none). */
uint32_t pl_tok_byte_to_cp(unsigned b);
int pl_tok_cp_to_byte(uint32_t cp);

#endif
