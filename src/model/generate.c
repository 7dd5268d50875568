/* generate.c — sampling and KV-cached text generation.
 *
 * Owner: model. The PRNG is our own (xoshiro256** seeded through splitmix64) so a seed gives
 * the same tokens on every platform and libc. Sampling, in order: repetition penalty (CTRL:
 * a previously seen token's logit z becomes z / p if z > 0 else z * p), then greedy argmax
 * (temperature <= 0 or greedy), else z / temperature, top-k, softmax, top-p (smallest prefix of
 * the probability-sorted tokens whose mass reaches p), and a draw. Ties sort by token id, so
 * results never depend on qsort's stability.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "peftlua/alloc.h"
#include "peftlua/model.h"
#include "peftlua/tokenizer.h"

/* ---- RNG ---- */

/* pl_rng_* lives in rng.c */

/* ---- sampler ---- */

void pl_sampler_init(struct pl_sampler *s, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->temperature = 1.0f;
    s->top_p = 1.0f;
    s->repetition_penalty = 1.0f;
    pl_rng_seed(&s->rng, seed);
}

struct pl_cand { float p; int32_t id; };

static int pl_cand_cmp(const void *a, const void *b)
{
    const struct pl_cand *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Partition c[0..n) so that its first k entries are the k first in pl_cand_cmp order
 * (quickselect, O(n) expected; the pivot is the median of three, so no randomness). */
static void pl_cand_select(struct pl_cand *c, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        struct pl_cand t;
        /* order lo, mid, hi, then use mid as the pivot */
        if (pl_cand_cmp(&c[mid], &c[lo]) < 0) { t = c[mid]; c[mid] = c[lo]; c[lo] = t; }
        if (pl_cand_cmp(&c[hi], &c[lo]) < 0) { t = c[hi]; c[hi] = c[lo]; c[lo] = t; }
        if (pl_cand_cmp(&c[hi], &c[mid]) < 0) { t = c[hi]; c[hi] = c[mid]; c[mid] = t; }
        struct pl_cand piv = c[mid];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (pl_cand_cmp(&c[i], &piv) < 0) i++;
            while (pl_cand_cmp(&c[j], &piv) > 0) j--;
            if (i <= j) { t = c[i]; c[i] = c[j]; c[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

int32_t pl_sampler_sample(struct pl_sampler *s, float *z, int32_t V, const int32_t *prev,
                          int64_t n_prev, float *work)
{
    if (s->repetition_penalty > 0 && s->repetition_penalty != 1.0f && prev) {
        /* work[0..V) marks tokens already penalised so repeats count once. */
        memset(work, 0, (size_t)V * sizeof(float));
        for (int64_t i = 0; i < n_prev; i++) {
            int32_t id = prev[i];
            if (id < 0 || id >= V || work[id] != 0) continue;
            work[id] = 1;
            z[id] = z[id] > 0 ? z[id] / s->repetition_penalty : z[id] * s->repetition_penalty;
        }
    }
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (z[i] > z[best]) best = i;
    if (s->greedy || !(s->temperature > 0)) return best;

    struct pl_cand *c = (struct pl_cand *)work;   /* work holds 2*V floats = V candidates */
    float mx = z[best];
    double sum = 0;
    for (int32_t i = 0; i < V; i++) {
        float e = expf((z[i] - mx) / s->temperature);
        c[i].p = e;
        c[i].id = i;
        sum += e;
    }
    int32_t n = V;
    /* Only the top-k (or, for top-p alone, the tokens above a negligible mass) need sorting. */
    if (s->top_k > 0 && s->top_k < V) {
        pl_cand_select(c, n, s->top_k);
        n = s->top_k;
        qsort(c, (size_t)n, sizeof *c, pl_cand_cmp);
    } else if (s->top_p > 0 && s->top_p < 1) {
        double cut = (1.0 - s->top_p) / (V - 1) * sum;
        int32_t k = 0;
        for (int32_t i = 0; i < V; i++)
            if (c[i].p >= cut) c[k++] = c[i];
        n = k;
        qsort(c, (size_t)n, sizeof *c, pl_cand_cmp);
    }
    double tot = 0;
    for (int32_t i = 0; i < n; i++) tot += c[i].p;
    if (s->top_p > 0 && s->top_p < 1) {
        double acc = 0;
        int32_t k = 0;
        while (k < n) {
            acc += c[k].p;
            k++;
            if (acc >= s->top_p * tot) break;
        }
        n = k;
        tot = acc;
    }
    double r = pl_rng_uniform(&s->rng) * tot, acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id;
}

/* ---- generation ---- */

/* First occurrence of any stop string in text at or after from, or NULL. */
static const char *pl_find_stop(const char *text, size_t from, const char *const *stop)
{
    const char *best = NULL;
    for (int i = 0; stop && stop[i]; i++) {
        if (!stop[i][0]) continue;
        const char *p = strstr(text + from, stop[i]);
        if (p && (!best || p < best)) best = p;
    }
    return best;
}

/* Length of the longest suffix of text[0..len) that is a proper prefix of a stop string. */
static size_t pl_stop_prefix_tail(const char *text, size_t len, const char *const *stop)
{
    size_t best = 0;
    for (int i = 0; stop && stop[i]; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > best; k--)
            if (k <= len && memcmp(text + len - k, stop[i], k) == 0) { best = k; break; }
    }
    return best;
}

enum pl_status pl_generate(struct pl_model *m, const int32_t *prompt, int n_prompt,
                           const struct pl_generate_opts *o, char **out_text,
                           int32_t **out_ids, int *n_out)
{
    const int V = m->cfg.vocab_size;
    int max_new = o->max_tokens > 0 ? o->max_tokens : 128;
    *out_text = NULL;
    if (out_ids) *out_ids = NULL;
    if (n_out) *n_out = 0;
    if (!m->tok) return pl_fail(PL_ERR_STATE, "%s: generate needs a tokenizer", m->path);
    if (n_prompt <= 0) return pl_fail(PL_ERR_ARG, "generate: the prompt has no tokens");
    if (n_prompt >= m->cfg.seq_len)
        return pl_fail(PL_ERR_ARG, "generate: prompt of %d tokens fills the context of %d",
                       n_prompt, m->cfg.seq_len);
    if (n_prompt + max_new > m->cfg.seq_len) max_new = m->cfg.seq_len - n_prompt;
    int T = n_prompt + max_new;

    struct pl_llama_ctx *c = pl_llama_ctx_new(m, 1, T, 0);
    if (!c) return PL_ERR_NOMEM;
    int32_t *ids = pl_alloc((size_t)T * sizeof(int32_t), PL_MEM_WORKSPACE);
    float *work = pl_alloc((size_t)V * 2 * sizeof(float), PL_MEM_WORKSPACE);
    size_t cap = 256, len = 0;
    char *text = pl_alloc(cap, PL_MEM_DATA);
    enum pl_status st = PL_OK;
    if (!ids || !work || !text) { st = pl_fail(PL_ERR_NOMEM, "generate: out of memory"); goto done; }
    text[0] = 0;
    memcpy(ids, prompt, (size_t)n_prompt * sizeof(int32_t));
    struct pl_sampler smp = o->sampler;
    int n = n_prompt, ngen = 0;
    size_t emitted = 0, max_stop = 0;   /* bytes of text streamed; longest stop string */
    for (int i = 0; o->stop && o->stop[i]; i++)
        if (strlen(o->stop[i]) > max_stop) max_stop = strlen(o->stop[i]);
    st = pl_llama_forward(c, ids, n_prompt, 0, 1);
    while (st == PL_OK && ngen < max_new) {
        int32_t id = pl_sampler_sample(&smp, c->logits, V, ids, n, work);
        if (!o->ignore_eos && (id == m->cfg.eos_id || id == pl_tokenizer_eos(m->tok) ||
                               id == pl_tokenizer_eot(m->tok)))
            break;
        ids[n++] = id;
        ngen++;
        /* The token's bytes; SentencePiece pieces after BOS lose the space prefix (run.c). */
        char piece[256];
        int pl = pl_tokenizer_token_bytes(m->tok, id, 0, piece, sizeof piece - 1);
        if (pl < 0) pl = 0;
        if (pl > (int)sizeof piece - 1) pl = (int)sizeof piece - 1;
        piece[pl] = 0;
        const char *pc = piece;
        if (pl_tokenizer_kind(m->tok) != PL_TOK_BPE && ids[n - 2] == pl_tokenizer_bos(m->tok) &&
            pc[0] == ' ') {
            pc++;
            pl--;
        }
        if (len + (size_t)pl + 1 > cap) {
            while (len + (size_t)pl + 1 > cap) cap *= 2;
            char *t2 = pl_realloc(text, cap);
            if (!t2) { st = pl_fail(PL_ERR_NOMEM, "generate: out of memory"); break; }
            text = t2;
        }
        size_t from = len > max_stop ? len - max_stop : 0;
        memcpy(text + len, pc, (size_t)pl);
        len += (size_t)pl;
        text[len] = 0;
        const char *hit = o->stop ? pl_find_stop(text, from, o->stop) : NULL;
        if (hit) {
            len = (size_t)(hit - text);
            text[len] = 0;
            if (o->on_token && len > emitted) o->on_token(o->ud, -1, text + emitted);
            emitted = len;
            break;
        }
        if (o->on_token) {
            /* Stream what can no longer become part of a stop string: hold back the longest
             * tail of the text that is a proper prefix of one. */
            size_t hold = pl_stop_prefix_tail(text, len, o->stop);
            size_t upto = len - hold > emitted ? len - hold : emitted;
            char keep = text[upto];
            text[upto] = 0;
            int stop = o->on_token(o->ud, id, text + emitted);
            text[upto] = keep;
            emitted = upto;
            if (stop) break;
        }
        if (n >= T || ngen >= max_new) break;
        st = pl_llama_forward(c, ids + n - 1, 1, n - 1, 1);
    }
    if (st == PL_OK && o->on_token && len > emitted) o->on_token(o->ud, -1, text + emitted);
    if (st == PL_OK) {
        if (out_ids) {
            *out_ids = pl_alloc((size_t)(ngen ? ngen : 1) * sizeof(int32_t), PL_MEM_DATA);
            if (*out_ids) memcpy(*out_ids, ids + n_prompt, (size_t)ngen * sizeof(int32_t));
        }
        if (n_out) *n_out = ngen;
        *out_text = text;
        text = NULL;
    }
done:
    pl_free(text);
    pl_free(work);
    pl_free(ids);
    pl_llama_ctx_free(c);
    return st;
}
