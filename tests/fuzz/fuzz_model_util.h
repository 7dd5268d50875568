/* fuzz_model_util.h — what the model harnesses do with a model that loaded: encode and decode
 * through its tokenizer and run a two-token forward pass, so that the weights and the
 * configuration the file declared are used, not only parsed. */
#ifndef PL_FUZZ_MODEL_UTIL_H
#define PL_FUZZ_MODEL_UTIL_H
#include "fuzz_common.h"

static inline void fz_use_tokenizer(const struct pl_tokenizer *t, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (pl_tokenizer_encode(t, text, strlen(text), PL_TOK_DEFAULT_SPECIAL | PL_TOK_PARSE_SPECIAL, &ids, &n) == PL_OK) {
        const int32_t V = pl_tokenizer_n_vocab(t);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= V) { fprintf(stderr, "id %d outside the vocabulary of %d\n", ids[i], V); abort(); }
        char *s = NULL;
        size_t len = 0;
        if (pl_tokenizer_decode(t, ids, n, PL_TOK_DECODE_SPECIAL, &s, &len) == PL_OK) pl_free(s);
    }
    pl_free(ids);
    int32_t probe[4] = { 0, pl_tokenizer_n_vocab(t), -1, 1 << 30 };   /* out-of-range ids must be refused */
    char *s = NULL;
    size_t len = 0;
    if (pl_tokenizer_decode(t, probe, 4, 0, &s, &len) == PL_OK) { fprintf(stderr, "decode accepted bad ids\n"); abort(); }
    pl_free(s);
}

static inline void fz_use_model(struct pl_model *m)
{
    if (m->tok) {
        fz_use_tokenizer(m->tok, "Once upon a time, <s> the cat \xe2\x96\x81 caf\xc3\xa9 \xf0\x9f\x98\x80 \xff");
    }
    const int T = m->cfg.seq_len < 4 ? m->cfg.seq_len : 4;
    if (T < 2) return;
    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, T, 0);
    if (!c) return;
    int32_t ids[2] = { m->cfg.bos_id >= 0 && m->cfg.bos_id < m->cfg.vocab_size ? m->cfg.bos_id : 0,
                       m->cfg.vocab_size - 1 };
    if (pl_llama_forward(c, ids, 2, 0, 0) == PL_OK) {
        int32_t tg[2] = { ids[1], -1 };
        (void)pl_llama_loss(c, tg, 2, NULL);
    }
    int32_t bad[2] = { m->cfg.vocab_size, -5 };          /* refused, not read out of bounds */
    struct pl_llama_ctx *c2 = pl_llama_ctx_new(m, 1, T, 0);
    if (c2) {
        if (pl_llama_forward(c2, bad, 2, 0, 0) == PL_OK) { fprintf(stderr, "forward accepted bad ids\n"); abort(); }
        pl_llama_ctx_free(c2);
    }
    pl_llama_ctx_free(c);
}
#endif
