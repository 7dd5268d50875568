/* chat.c — chat template rendering for the ChatML, Llama 2, Llama 3, Mistral and Zephyr
 * families (owner: tokenizer). Each family's code is a direct transcription of its Jinja
 * template (quoted above each function), including Python's str.strip() where the template
 * strips, so the bytes match what jinja2 renders; tests/ref/chat/ holds the evidence.
 */
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/chat.h"
#include "peftlua/tokenizer.h"
#include "peftlua/unicode.h"

/* ------------------------------------------------------------------ output buffer */

struct sbuf { char *p; size_t n, cap; int oom; };

static void put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (b->n + n + 1 > nc) nc *= 2;
        char *np = pl_realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np; b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(struct sbuf *b, const char *s) { put(b, s, strlen(s)); }

struct spans { struct pl_chat_span *v; size_t n, cap; int oom; };
static void span_add(struct spans *s, int32_t msg, size_t a, size_t e, size_t te)
{
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        struct pl_chat_span *nv = pl_realloc(s->v, nc * sizeof *nv);
        if (!nv) { s->oom = 1; return; }
        s->v = nv; s->cap = nc;
    }
    struct pl_chat_span x = { msg, a, e, te };
    s->v[s->n++] = x;
}

/* ------------------------------------------------------------------ Python str.strip() */

static int py_space(uint32_t c) { return pl_uni_is_space(c) || (c >= 0x1C && c <= 0x1F); }

/* [*a, *e) of s[0..n) without leading/trailing white space as Python's str.isspace sees it */
static void py_strip(const char *s, size_t n, size_t *a, size_t *e)
{
    size_t i = 0;
    while (i < n) { size_t p = i; if (!py_space(pl_utf8_decode(s, n, &p))) break; i = p; }
    size_t j = n;
    while (j > i) {
        size_t k = j - 1;
        while (k > i && ((unsigned char)s[k] & 0xC0) == 0x80) k--;   /* start of the last code point */
        size_t p = k;
        if (!py_space(pl_utf8_decode(s, j, &p)) || p != j) break;
        j = k;
    }
    *a = i; *e = j;
}

static int is(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

/* ------------------------------------------------------------------ families */

/* {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}
 * {{ '<|im_start|>system\n<default><|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role']
 * + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}
 * {{ '<|im_start|>assistant\n' }}{% endif %} */
static enum pl_status r_chatml(struct sbuf *b, struct spans *sp, const struct pl_chat_msg *m, size_t n,
                               const char *dflt_system, int gen)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && !is(m[0].role, "system") && dflt_system) {
            puts_(b, "<|im_start|>system\n"); puts_(b, dflt_system); puts_(b, "<|im_end|>\n");
        }
        puts_(b, "<|im_start|>"); puts_(b, m[i].role); puts_(b, "\n");
        size_t a = b->n;
        puts_(b, m[i].content);
        size_t e = b->n;
        puts_(b, "<|im_end|>");
        if (is(m[i].role, "assistant")) span_add(sp, (int32_t)i, a, e, b->n);
        puts_(b, "\n");
    }
    if (gen) puts_(b, "<|im_start|>assistant\n");
    return PL_OK;
}

/* meta-llama/Llama-2-*-chat-hf: system folded into the first user turn as
 * '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content; user: bos + '[INST] ' + content.strip()
 * + ' [/INST]'; assistant: ' ' + content.strip() + ' ' + eos. Roles must alternate. */
static enum pl_status r_llama2(struct sbuf *b, struct spans *sp, const struct pl_chat_msg *m, size_t n,
                               const char *bos, const char *eos)
{
    size_t first = 0;
    const char *sys = NULL;
    if (n > 0 && is(m[0].role, "system")) { sys = m[0].content; first = 1; }
    struct sbuf c = {0};
    for (size_t i = first; i < n; i++) {
        size_t k = i - first;
        if (is(m[i].role, "user") != (k % 2 == 0)) {
            pl_free(c.p);
            return pl_fail(PL_ERR_ARG, "chat template llama2: Conversation roles must alternate user/assistant/user/assistant/... (message %zu is '%s')", i + 1, m[i].role);
        }
        c.n = 0;
        if (k == 0 && sys) { puts_(&c, "<<SYS>>\n"); puts_(&c, sys); puts_(&c, "\n<</SYS>>\n\n"); }
        puts_(&c, m[i].content);
        if (c.oom) break;
        size_t a, e;
        py_strip(c.p ? c.p : "", c.n, &a, &e);
        if (is(m[i].role, "user")) {
            puts_(b, bos); puts_(b, "[INST] "); put(b, c.p + a, e - a); puts_(b, " [/INST]");
        } else if (is(m[i].role, "assistant")) {
            puts_(b, " ");
            size_t s0 = b->n;
            put(b, c.p + a, e - a);
            size_t s1 = b->n;
            puts_(b, " "); puts_(b, eos);
            span_add(sp, (int32_t)i, s0, s1, b->n);
        }
    }
    int oom = c.oom;
    pl_free(c.p);
    if (oom) b->oom = 1;
    return PL_OK;
}

/* Meta-Llama-3-*-Instruct: per message '<|start_header_id|>' + role + '<|end_header_id|>\n\n'
 * + content | trim + '<|eot_id|>', bos before the first; add_generation_prompt appends the
 * assistant header. */
static enum pl_status r_llama3(struct sbuf *b, struct spans *sp, const struct pl_chat_msg *m, size_t n,
                               const char *bos, int gen)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 0) puts_(b, bos);
        puts_(b, "<|start_header_id|>"); puts_(b, m[i].role); puts_(b, "<|end_header_id|>\n\n");
        size_t a, e, cl = strlen(m[i].content);
        py_strip(m[i].content, cl, &a, &e);
        size_t s0 = b->n;
        put(b, m[i].content + a, e - a);
        size_t s1 = b->n;
        puts_(b, "<|eot_id|>");
        if (is(m[i].role, "assistant")) span_add(sp, (int32_t)i, s0, s1, b->n);
    }
    if (gen) puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return PL_OK;
}

/* mistralai/Mistral-7B-Instruct-v0.1: bos, then user '[INST] ' + content + ' [/INST]',
 * assistant content + eos + ' '; roles must alternate; no other roles. */
static enum pl_status r_mistral(struct sbuf *b, struct spans *sp, const struct pl_chat_msg *m, size_t n,
                                const char *bos, const char *eos)
{
    puts_(b, bos);
    for (size_t i = 0; i < n; i++) {
        if (is(m[i].role, "user") != (i % 2 == 0))
            return pl_fail(PL_ERR_ARG, "chat template mistral: Conversation roles must alternate user/assistant/user/assistant/... (message %zu is '%s')", i + 1, m[i].role);
        if (is(m[i].role, "user")) {
            puts_(b, "[INST] "); puts_(b, m[i].content); puts_(b, " [/INST]");
        } else if (is(m[i].role, "assistant")) {
            size_t s0 = b->n;
            puts_(b, m[i].content);
            size_t s1 = b->n;
            puts_(b, eos);
            span_add(sp, (int32_t)i, s0, s1, b->n);
            puts_(b, " ");
        } else {
            return pl_fail(PL_ERR_ARG, "chat template mistral: Only user and assistant roles are supported! (message %zu is '%s')", i + 1, m[i].role);
        }
    }
    return PL_OK;
}

/* HuggingFaceH4/zephyr-7b-beta (rendered with trim_blocks/lstrip_blocks as transformers does):
 * '<|role|>\n' + content + eos + '\n' for user/system/assistant; after the last message,
 * '<|assistant|>\n' when add_generation_prompt. */
static enum pl_status r_zephyr(struct sbuf *b, struct spans *sp, const struct pl_chat_msg *m, size_t n,
                               const char *eos, int gen)
{
    for (size_t i = 0; i < n; i++) {
        const char *r = m[i].role;
        if (is(r, "user") || is(r, "system") || is(r, "assistant")) {
            puts_(b, "<|"); puts_(b, r); puts_(b, "|>\n");
            size_t s0 = b->n;
            puts_(b, m[i].content);
            size_t s1 = b->n;
            puts_(b, eos);
            if (is(r, "assistant")) span_add(sp, (int32_t)i, s0, s1, b->n);
            puts_(b, "\n");
        }
        if (i + 1 == n && gen) puts_(b, "<|assistant|>\n");
    }
    return PL_OK;
}

/* ------------------------------------------------------------------ recognition */

enum pl_chat_family pl_chat_detect(const char *t)
{
    if (!t) return PL_CHAT_NONE;
    if (strstr(t, "<|im_start|>")) return PL_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return PL_CHAT_LLAMA3;
    if (strstr(t, "<<SYS>>")) return PL_CHAT_LLAMA2;
    if (strstr(t, "[INST]")) return PL_CHAT_MISTRAL;
    if (strstr(t, "<|user|>") && strstr(t, "<|assistant|>") && strstr(t, "eos_token") && !strstr(t, "<|end|>"))
        return PL_CHAT_ZEPHYR;
    return PL_CHAT_NONE;
}

static const char *const NAMES[] = { "none", "chatml", "llama2", "llama3", "mistral", "zephyr" };

const char *pl_chat_family_name(enum pl_chat_family f)
{
    return ((unsigned)f < sizeof NAMES / sizeof NAMES[0]) ? NAMES[f] : "none";
}

int pl_chat_family_from_name(const char *name)
{
    if (!name) return -1;
    for (size_t i = 1; i < sizeof NAMES / sizeof NAMES[0]; i++) if (strcmp(NAMES[i], name) == 0) return (int)i;
    return -1;
}

/* The literal after "<|im_start|>system" + newline (a real one or the two characters '\n')
 * up to "<|im_end|>", when the template inserts it for conversations without a system message. */
char *pl_chat_default_system(const char *t)
{
    if (!t || !strstr(t, "!= 'system'")) return NULL;
    const char *p = strstr(t, "<|im_start|>system");
    if (!p) return NULL;
    p += strlen("<|im_start|>system");
    if (*p == '\n') p++;
    else if (p[0] == '\\' && p[1] == 'n') p += 2;
    else return NULL;
    const char *e = strstr(p, "<|im_end|>");
    if (!e) return NULL;
    for (const char *q = p; q < e; q++) if (*q == '\'' || *q == '"' || *q == '{' || *q == '}') return NULL;
    size_t n = (size_t)(e - p);
    char *s = pl_alloc(n + 1, PL_MEM_WORKSPACE);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

/* ------------------------------------------------------------------ entry points */

enum pl_status pl_chat_render(const struct pl_chat_opts *o, const struct pl_chat_msg *m, size_t n,
                              struct pl_chat_result *out)
{
    memset(out, 0, sizeof *out);
    enum pl_chat_family f = o->family != PL_CHAT_NONE ? o->family : pl_chat_detect(o->template_str);
    if (f == PL_CHAT_NONE)
        return pl_fail(PL_ERR_UNSUPPORTED, "chat: %s", o->template_str ?
                       "the model's chat template is not one of chatml, llama2, llama3, mistral, zephyr (force one by name, or render in Lua)" :
                       "the model has no chat template (force a family by name)");
    for (size_t i = 0; i < n; i++)
        if (!m[i].role || !m[i].content) return pl_fail(PL_ERR_ARG, "chat: message %zu has no role or no content", i + 1);
    const char *bos = o->bos ? o->bos : (f == PL_CHAT_LLAMA3 ? "<|begin_of_text|>" : "<s>");
    const char *eos = o->eos ? o->eos : "</s>";
    struct sbuf b = {0};
    struct spans sp = {0};
    enum pl_status st = PL_OK;
    char *dsys = NULL;
    switch (f) {
    case PL_CHAT_CHATML:
        dsys = pl_chat_default_system(o->template_str);
        st = r_chatml(&b, &sp, m, n, dsys, o->add_generation_prompt);
        break;
    case PL_CHAT_LLAMA2: st = r_llama2(&b, &sp, m, n, bos, eos); break;
    case PL_CHAT_LLAMA3: st = r_llama3(&b, &sp, m, n, bos, o->add_generation_prompt); break;
    case PL_CHAT_MISTRAL: st = r_mistral(&b, &sp, m, n, bos, eos); break;
    case PL_CHAT_ZEPHYR: st = r_zephyr(&b, &sp, m, n, eos, o->add_generation_prompt); break;
    default: break;
    }
    pl_free(dsys);
    if (st == PL_OK && (b.oom || sp.oom)) st = pl_fail(PL_ERR_NOMEM, "chat: out of memory rendering %zu messages", n);
    if (st == PL_OK && !b.p) { put(&b, "", 0); if (b.oom) st = pl_fail(PL_ERR_NOMEM, "chat: out of memory"); }
    if (st != PL_OK) { pl_free(b.p); pl_free(sp.v); return st; }
    out->text = b.p; out->len = b.n; out->spans = sp.v; out->n_spans = sp.n;
    return PL_OK;
}

enum pl_status pl_chat_render_tok(const struct pl_tokenizer *t, const char *family,
                                  const struct pl_chat_msg *m, size_t n, int gen, struct pl_chat_result *out)
{
    memset(out, 0, sizeof *out);
    struct pl_chat_opts o = {0};
    if (family) {
        int f = pl_chat_family_from_name(family);
        if (f < 0) return pl_fail(PL_ERR_ARG, "chat: unknown template family '%s' (chatml, llama2, llama3, mistral, zephyr)", family);
        o.family = (enum pl_chat_family)f;
    }
    o.template_str = t ? pl_tokenizer_chat_template(t) : NULL;
    o.add_generation_prompt = gen;
    if (t && pl_tokenizer_bos(t) >= 0) o.bos = pl_tokenizer_piece(t, pl_tokenizer_bos(t), NULL);
    if (t && pl_tokenizer_eos(t) >= 0) o.eos = pl_tokenizer_piece(t, pl_tokenizer_eos(t), NULL);
    return pl_chat_render(&o, m, n, out);
}

void pl_chat_result_free(struct pl_chat_result *r)
{
    if (!r) return;
    pl_free(r->text); pl_free(r->spans);
    memset(r, 0, sizeof *r);
}
