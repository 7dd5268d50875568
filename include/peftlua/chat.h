/* chat.h — chat templates: a conversation rendered to the exact text a model's own Jinja
 * template produces (owner: tokenizer).
 *
 * Families, recognised from the model's template string (tokenizer.chat_template) by
 * distinctive markers, or forced by name:
 *   "chatml"   <|im_start|>role\ncontent<|im_end|>\n ...; a default system prompt when the
 *              template has one and the first message is not a system one (SmolLM2, Qwen2);
 *              add_generation_prompt appends "<|im_start|>assistant\n".
 *   "llama2"   <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s>... (contents
 *              stripped, roles must alternate user/assistant).
 *   "llama3"   <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
 *   "mistral"  <s>[INST] user [/INST]answer</s> ... (Mistral-7B-Instruct-v0.1; no system role)
 *   "zephyr"   <|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n...</s>\n
 * Every rendering equals what jinja2 renders from the family's real template (goldens in
 * tests/ref/chat/). Template errors (roles not alternating, a role the template refuses) are
 * PL_ERR_ARG with the template's own message.
 *
 * Each rendering also reports, per assistant message, the byte span of its content in the
 * text and where its turn ends (content + the end-of-turn marker: <|im_end|>, <|eot_id|>,
 * </s>): the training data pipeline trains on [start, turn_end) and masks the rest.
 *
 *   struct pl_chat_msg m[] = { {"user", "Hi"}, {"assistant", "Hello!"} };
 *   struct pl_chat_result r;
 *   if (pl_chat_render_tok(tok, NULL, m, 2, 0, &r) == PL_OK) { use(r.text, r.spans); pl_chat_result_free(&r); }
 */
#ifndef PEFTLUA_CHAT_H
#define PEFTLUA_CHAT_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

struct pl_tokenizer;

enum pl_chat_family {
    PL_CHAT_NONE = 0, PL_CHAT_CHATML, PL_CHAT_LLAMA2, PL_CHAT_LLAMA3, PL_CHAT_MISTRAL, PL_CHAT_ZEPHYR
};

struct pl_chat_msg { const char *role; const char *content; };

/* An assistant message's content in the rendered text: [start, end); its turn ends at turn_end. */
struct pl_chat_span { int32_t msg; size_t start, end, turn_end; };

struct pl_chat_result {
    char *text; size_t len;                    /* NUL-terminated; pl_free via pl_chat_result_free */
    struct pl_chat_span *spans; size_t n_spans;
};

struct pl_chat_opts {
    enum pl_chat_family family;     /* PL_CHAT_NONE: recognise from template */
    const char *template_str;       /* the model's template (recognition, default system prompt) */
    const char *bos, *eos;          /* BOS/EOS token texts; NULL: "<s>"/"</s>" ("<|begin_of_text|>" for llama3) */
    int add_generation_prompt;
};

/* Family of a template string (PL_CHAT_NONE when no family's markers are found). */
enum pl_chat_family pl_chat_detect(const char *tmpl);
const char *pl_chat_family_name(enum pl_chat_family f);   /* "chatml", ..., "none" */
int pl_chat_family_from_name(const char *name);           /* -1 if unknown */
/* The default system prompt a ChatML template inserts when the conversation has none, copied
 * into a new string (pl_free), or NULL when the template has none. */
char *pl_chat_default_system(const char *tmpl);

enum pl_status pl_chat_render(const struct pl_chat_opts *o, const struct pl_chat_msg *msgs, size_t n,
                              struct pl_chat_result *out);
/* Same, with BOS/EOS texts and the template taken from a tokenizer; family NULL = recognise. */
enum pl_status pl_chat_render_tok(const struct pl_tokenizer *t, const char *family,
                                  const struct pl_chat_msg *msgs, size_t n, int add_generation_prompt,
                                  struct pl_chat_result *out);
void pl_chat_result_free(struct pl_chat_result *r);

#endif
