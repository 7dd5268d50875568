/* data_tok.c — binds the data pipeline's tokenizer interface (struct pl_data_tokenizer,
 * data.h) to the project's tokenizer (tokenizer.h).
 *
 * Owner: data. Text is encoded with special-token parsing on (chat templates write
 * "<|im_start|>" and friends as text) and without BOS/EOS, which rendering adds itself;
 * token bytes come from pl_tokenizer_token_bytes so whole-text encodings can be lined up
 * with the template's loss spans. Chat records are rendered by the model's own template
 * (chat.h); the loss span of an assistant message is its content and its end-of-turn marker.
 */
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/chat.h"
#include "peftlua/data.h"
#include "peftlua/tokenizer.h"

static enum pl_status tok_encode(void *ctx, const char *text, size_t n, struct pl_data_ids *out)
{
    int32_t *ids = NULL;
    size_t cnt = 0;
    enum pl_status st = pl_tokenizer_encode(ctx, text, n, PL_TOK_PARSE_SPECIAL, &ids, &cnt);
    for (size_t i = 0; st == PL_OK && i < cnt; i++) st = pl_data_ids_push(out, ids[i]);
    pl_free(ids);
    return st;
}

static int tok_bytes(void *ctx, int32_t id, char *buf, size_t cap)
{
    return pl_tokenizer_token_bytes(ctx, id, 1, buf, cap);
}

static enum pl_status tok_chat(void *ctx, const struct pl_data_msg *msgs, int n, char **text,
                               size_t *len, struct pl_data_span **spans, int *n_spans)
{
    struct pl_chat_msg small[8] = { { NULL, NULL } }, *m = small;
    if (n > 8) {
        m = pl_alloc((size_t)n * sizeof *m, PL_MEM_WORKSPACE);
        if (!m) return pl_fail(PL_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) { m[i].role = msgs[i].role; m[i].content = msgs[i].content; }
    struct pl_chat_result r;
    memset(&r, 0, sizeof r);
    enum pl_status st = pl_chat_render_tok(ctx, NULL, m, (size_t)n, 0, &r);
    if (m != small) pl_free(m);
    if (st) return st;
    struct pl_data_span *sp = pl_alloc((r.n_spans ? r.n_spans : 1) * sizeof *sp, PL_MEM_DATA);
    char *t = pl_alloc(r.len + 1, PL_MEM_DATA);
    if (!sp || !t) {
        pl_free(sp); pl_free(t); pl_chat_result_free(&r);
        return pl_fail(PL_ERR_NOMEM, "out of memory");
    }
    memcpy(t, r.text, r.len);
    t[r.len] = 0;
    for (size_t i = 0; i < r.n_spans; i++) { sp[i].begin = r.spans[i].start; sp[i].end = r.spans[i].turn_end; }
    *text = t;
    *len = r.len;
    *spans = sp;
    *n_spans = (int)r.n_spans;
    pl_chat_result_free(&r);
    return PL_OK;
}

void pl_data_tokenizer_bind(struct pl_data_tokenizer *dt, const struct pl_tokenizer *tok)
{
    memset(dt, 0, sizeof *dt);
    dt->ctx = (void *)tok;
    dt->encode = tok_encode;
    dt->token_bytes = tok_bytes;
    dt->render_chat = tok_chat;
    dt->bos_id = pl_tokenizer_bos(tok);
    dt->eos_id = pl_tokenizer_eos(tok);
    dt->pad_id = -1;
    dt->add_bos = pl_tokenizer_add_bos(tok) > 0;
    dt->completion_chat = pl_chat_detect(pl_tokenizer_chat_template(tok)) != PL_CHAT_NONE;
}
