/* tokenizer.c — the tokenizer object, encoding (SentencePiece-style, byte-level BPE,
 * llama2.c) and decoding (owner: tokenizer). Word splitting for BPE is in tokenizer_pre.c,
 * the file loaders in tokenizer_load.c.
 *
 * The algorithms follow their references step by step so ids come out identical:
 *   SPM   llama.cpp llm_tokenizer_spm: symbols = UTF-8 chars of " "+text with ' '->"▁"; a
 *         max-heap of adjacent pairs whose concatenation is a token, keyed by that token's
 *         score (ties: leftmost); merge until empty; symbols that are not tokens fall back to
 *         <0xXX> byte tokens.
 *   BPE   llama.cpp llm_tokenizer_bpe: per pre-tokenized word, bytes -> GPT-2 unicode chars;
 *         a min-heap of adjacent pairs keyed by merge rank (ties: leftmost); a popped pair is
 *         applied only if both sides still spell it.
 *   L2C   llama2.c run.c encode(): dummy " " token, per-character lookup (byte fallback
 *         id = byte + 3), then repeatedly merge the pair whose concatenation has the highest
 *         score (first such pair on ties) — run.c rescans the sequence per merge; we keep a
 *         heap of candidate pairs, which yields the same merges in O(n log n).
 *   SPM vocabularies given with merges instead of scores (HF tokenizer.json of Llama-style
 *         models: BPE + byte_fallback over "▁"-text) merge by rank with the BPE loop over the
 *         whole "▁"-text, as HF's BPE model does, and fall back to <0xXX> bytes.
 * Special tokens: the text is first cut at occurrences of control/unknown tokens (only with
 * PL_TOK_PARSE_SPECIAL) and user-defined tokens (always), longest token first, as
 * llama.cpp's tokenizer_st_partition does.
 */
#include <stdlib.h>
#include <string.h>
#include "tokenizer_internal.h"
#include "peftlua/alloc.h"
#include "peftlua/unicode.h"

/* ------------------------------------------------------------------ string map */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;                     /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

enum pl_status pl_strmap_init(struct pl_strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 16) cap *= 2;
    memset(m, 0, sizeof *m);
    m->keys = pl_calloc(cap, sizeof *m->keys, PL_MEM_DATA);
    m->lens = pl_calloc(cap, sizeof *m->lens, PL_MEM_DATA);
    m->vals = pl_calloc(cap, sizeof *m->vals, PL_MEM_DATA);
    m->cap = cap;
    if (!m->keys || !m->lens || !m->vals) {
        pl_strmap_free(m);
        return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory for a %zu-entry table", expected);
    }
    return PL_OK;
}

void pl_strmap_free(struct pl_strmap *m)
{
    pl_free(m->keys); pl_free(m->lens); pl_free(m->vals);
    memset(m, 0, sizeof *m);
}

static enum pl_status strmap_grow(struct pl_strmap *m)
{
    struct pl_strmap nm;
    enum pl_status st = pl_strmap_init(&nm, m->cap);          /* doubles the capacity */
    if (st) return st;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) pl_strmap_put(&nm, m->keys[i], m->lens[i], m->vals[i], 1);
    pl_strmap_free(m);
    *m = nm;
    return PL_OK;
}

enum pl_status pl_strmap_put(struct pl_strmap *m, const char *k, size_t len, int32_t v, int overwrite)
{
    if ((m->n + 1) * 2 > m->cap) { enum pl_status st = strmap_grow(m); if (st) return st; }
    size_t i = (size_t)hash_bytes(k, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->lens[i] == len && memcmp(m->keys[i], k, len) == 0) {
            if (overwrite) m->vals[i] = v;
            return PL_OK;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = k; m->lens[i] = (uint32_t)len; m->vals[i] = v; m->n++;
    return PL_OK;
}

int32_t pl_strmap_get(const struct pl_strmap *m, const char *k, size_t len)
{
    if (!m->cap) return -1;
    size_t i = (size_t)hash_bytes(k, len) & (m->cap - 1);
    while (m->keys[i]) {
        if (m->lens[i] == len && memcmp(m->keys[i], k, len) == 0) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

/* ------------------------------------------------------------------ GPT-2 byte map */

/* Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes
 * take code points 256, 257, ... in byte order. */
static int byte_is_self(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); }

uint32_t pl_tok_byte_to_cp(unsigned b)
{
    if (byte_is_self(b)) return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++) if (!byte_is_self(x)) n++;
    return 256 + n;
}

int pl_tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_is_self(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned n = 0;
    for (unsigned x = 0; x < 256; x++)
        if (!byte_is_self(x) && n++ == cp - 256) return (int)x;
    return -1;
}

/* ------------------------------------------------------------------ object */

static const char *kind_default_pre(const struct pl_tokenizer *t) { return t->kind == PL_TOK_BPE ? "default" : ""; }

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct pl_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : (x > y);
}

/* insertion sort with a context (qsort_r is not portable); the special list is short */
static void sort_special(struct pl_tokenizer *t)
{
    for (int32_t i = 1; i < t->n_special; i++) {
        int32_t v = t->special[i], j = i - 1;
        while (j >= 0 && cmp_special(&t->special[j], &v, t) > 0) { t->special[j + 1] = t->special[j]; j--; }
        t->special[j + 1] = v;
    }
}

static int parse_byte_token(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!h || !l || !s[3] || !s[4]) return -1;
    return (int)((h - hex) * 16 + (l - hex));
}

void pl_tokenizer_free(struct pl_tokenizer *t)
{
    if (!t) return;
    if (t->text) for (int32_t i = 0; i < t->n_vocab; i++) pl_free(t->text[i]);
    if (t->merge_text) for (int32_t i = 0; i < t->n_merges; i++) pl_free(t->merge_text[i]);
    pl_free(t->text); pl_free(t->len); pl_free(t->score); pl_free(t->type);
    pl_free(t->merge_text); pl_free(t->special); pl_free(t->pre_name); pl_free(t->chat_template);
    pl_strmap_free(&t->tok2id); pl_strmap_free(&t->ranks);
    pl_free(t);
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = pl_alloc(n + 1, PL_MEM_DATA);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}

enum pl_status pl_tokenizer_new(struct pl_tokenizer **out, const struct pl_tokenizer_spec *sp,
                                const char *what)
{
    *out = NULL;
    if (!what) what = "tokenizer";
    if (sp->n_vocab <= 0 || !sp->tokens)
        return pl_fail(PL_ERR_FORMAT, "%s: empty vocabulary", what);
    if (sp->n_vocab > PL_TOKENIZER_MAX_VOCAB)
        return pl_fail(PL_ERR_FORMAT, "%s: %d tokens (at most %d)", what, (int)sp->n_vocab, PL_TOKENIZER_MAX_VOCAB);
    if (sp->kind == PL_TOK_LLAMA2C && sp->n_vocab < 259)
        return pl_fail(PL_ERR_FORMAT, "%s: a llama2.c vocabulary of %d tokens lacks the 256 byte tokens (ids 3..258)",
                       what, (int)sp->n_vocab);
    struct pl_tokenizer *t = pl_calloc(1, sizeof *t, PL_MEM_DATA);
    if (!t) return pl_fail(PL_ERR_NOMEM, "%s: out of memory", what);
    enum pl_status st = PL_OK;
    int32_t n = sp->n_vocab;
    t->kind = sp->kind;
    t->n_vocab = n;
    t->text = pl_calloc((size_t)n, sizeof *t->text, PL_MEM_DATA);
    t->len = pl_calloc((size_t)n, sizeof *t->len, PL_MEM_DATA);
    t->score = pl_calloc((size_t)n, sizeof *t->score, PL_MEM_DATA);
    t->type = pl_calloc((size_t)n, sizeof *t->type, PL_MEM_DATA);
    if (!t->text || !t->len || !t->score || !t->type) goto oom;
    if ((st = pl_strmap_init(&t->tok2id, (size_t)n))) goto fail;
    for (int32_t i = 0; i < n; i++) {
        const char *s = sp->tokens[i] ? sp->tokens[i] : "";
        size_t l = sp->token_lens ? sp->token_lens[i] : strlen(s);
        if (!(t->text[i] = dup_bytes(s, l))) goto oom;
        t->len[i] = (uint32_t)l;
        t->score[i] = sp->scores ? sp->scores[i] : 0.0f;
        int ty = sp->types ? sp->types[i] : PL_TOKT_NORMAL;
        if (ty < 0 || ty > PL_TOKT_BYTE) ty = PL_TOKT_UNDEFINED;
        t->type[i] = (uint8_t)ty;
        if ((st = pl_strmap_put(&t->tok2id, t->text[i], l, i, 1))) goto fail;
    }
    t->bos = sp->bos; t->eos = sp->eos; t->unk = sp->unk; t->pad = sp->pad;
    if (t->bos >= n) t->bos = -1;
    if (t->eos >= n) t->eos = -1;
    if (t->unk >= n) t->unk = -1;
    if (t->pad >= n) t->pad = -1;
    if (!sp->types) {     /* llama2.c: no types in the file; infer them */
        for (int32_t i = 0; i < n; i++) {
            if (parse_byte_token(t->text[i], t->len[i]) >= 0) t->type[i] = PL_TOKT_BYTE;
            else if (i == t->unk) t->type[i] = PL_TOKT_UNKNOWN;
            else if (i == t->bos || i == t->eos) t->type[i] = PL_TOKT_CONTROL;
        }
    }
    t->add_bos = sp->add_bos >= 0 ? sp->add_bos : (t->kind != PL_TOK_BPE);
    t->add_eos = sp->add_eos >= 0 ? sp->add_eos : (t->kind == PL_TOK_WPM);   /* BERT: [SEP] */
    t->add_space_prefix = sp->add_space_prefix >= 0 ? sp->add_space_prefix
                                                     : (t->kind == PL_TOK_SPM || t->kind == PL_TOK_LLAMA2C);
    t->prefix_first_only = sp->prefix_first_only;
    if (t->bos < 0) t->add_bos = 0;
    if (t->eos < 0) t->add_eos = 0;

    /* end-of-turn token (as llama.cpp's list) */
    t->eot = -1;
    {
        static const char *eots[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                     "<|endoftext|>", "<EOT>", "<|EOT|>", "<｜end▁of▁sentence｜>"};
        for (size_t k = 0; k < sizeof eots / sizeof eots[0] && t->eot < 0; k++) {
            int32_t id = pl_strmap_get(&t->tok2id, eots[k], strlen(eots[k]));
            if (id >= 0 && (t->type[id] == PL_TOKT_CONTROL || t->type[id] == PL_TOKT_USER_DEFINED ||
                            strcmp(eots[k], "<|im_end|>") == 0 || strcmp(eots[k], "<|eot_id|>") == 0))
                t->eot = id;
        }
        if (t->eot >= 0 && t->type[t->eot] == PL_TOKT_NORMAL) t->type[t->eot] = PL_TOKT_CONTROL;
        if (t->eot < 0) t->eot = t->eos;
    }

    /* byte tokens */
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (t->kind == PL_TOK_BPE) {
        for (int b = 0; b < 256; b++) {
            char u[4]; int k = pl_utf8_encode(pl_tok_byte_to_cp((unsigned)b), u);
            t->byte_tok[b] = pl_strmap_get(&t->tok2id, u, (size_t)k);
        }
    } else {
        for (int32_t i = 0; i < n; i++) {
            int b = parse_byte_token(t->text[i], t->len[i]);
            if (b >= 0 && t->byte_tok[b] < 0) t->byte_tok[b] = i;
        }
        for (int b = 0; b < 256; b++) if (t->byte_tok[b] < 0) {
            char c = (char)b;
            t->byte_tok[b] = pl_strmap_get(&t->tok2id, &c, 1);
        }
    }

    /* special tokens, longest first */
    for (int32_t i = 0; i < n; i++)
        if ((t->type[i] == PL_TOKT_CONTROL || t->type[i] == PL_TOKT_USER_DEFINED ||
             t->type[i] == PL_TOKT_UNKNOWN) && t->len[i] > 0) t->n_special++;
    if (t->n_special) {
        if (!(t->special = pl_alloc((size_t)t->n_special * sizeof *t->special, PL_MEM_DATA))) goto oom;
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++)
            if ((t->type[i] == PL_TOKT_CONTROL || t->type[i] == PL_TOKT_USER_DEFINED ||
                 t->type[i] == PL_TOKT_UNKNOWN) && t->len[i] > 0) t->special[k++] = i;
        sort_special(t);
    }

    /* BPE merges and pre-tokenizer; an SPM vocabulary may come with merges instead of scores
     * (HF tokenizer.json of Llama-style models): it then merges by rank */
    if (t->kind == PL_TOK_BPE || (t->kind == PL_TOK_SPM && sp->n_merges > 0)) {
        if (t->kind == PL_TOK_BPE) {
            const char *pre = sp->pre && *sp->pre ? sp->pre : "default";
            int p = pl_tok_pre_from_name(pre);
            if (p < 0) { st = pl_fail(PL_ERR_UNSUPPORTED, "%s: pre-tokenizer '%s' is not supported", what, pre); goto fail; }
            t->pre = (enum pl_tok_pre)p;
            t->ignore_merges = (t->pre == PL_PRE_LLAMA3);
            if (!(t->pre_name = pl_strdup(pre, PL_MEM_DATA))) goto oom;
        } else if (!(t->pre_name = pl_strdup("", PL_MEM_DATA))) goto oom;
        if (sp->n_merges <= 0 || !sp->merges) { st = pl_fail(PL_ERR_FORMAT, "%s: BPE vocabulary without merges", what); goto fail; }
        t->merge_text = pl_calloc((size_t)sp->n_merges, sizeof *t->merge_text, PL_MEM_DATA);
        if (!t->merge_text) goto oom;
        t->n_merges = sp->n_merges;
        if ((st = pl_strmap_init(&t->ranks, (size_t)sp->n_merges))) goto fail;
        for (int32_t i = 0; i < sp->n_merges; i++) {
            const char *m = sp->merges[i] ? sp->merges[i] : "";
            size_t l = strlen(m);
            if (!(t->merge_text[i] = dup_bytes(m, l))) goto oom;
            const char *sep = l > 1 ? memchr(m + 1, ' ', l - 1) : NULL;
            if (!sep) { st = pl_fail(PL_ERR_FORMAT, "%s: merge %d ('%s') has no space", what, (int)i, m); goto fail; }
            if ((st = pl_strmap_put(&t->ranks, t->merge_text[i], l, i, 0))) goto fail;
        }
    } else {
        if (!(t->pre_name = pl_strdup(kind_default_pre(t), PL_MEM_DATA))) goto oom;
    }
    if (sp->chat_template && !(t->chat_template = pl_strdup(sp->chat_template, PL_MEM_DATA))) goto oom;
    *out = t;
    return PL_OK;
oom:
    st = pl_fail(PL_ERR_NOMEM, "%s: out of memory building the tokenizer", what);
fail:
    pl_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------ output vector */

struct ivec { int32_t *v; size_t n, cap; int oom; };

static void ivec_push(struct ivec *o, int32_t id)
{
    if (o->oom) return;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *nv = pl_realloc(o->v, nc * sizeof *nv);
        if (!nv) { o->oom = 1; return; }
        o->v = nv; o->cap = nc;
    }
    o->v[o->n++] = id;
}

/* ------------------------------------------------------------------ symbols and heaps */

struct sym { const char *text; int32_t n; int32_t prev, next; };
/* key: SPM/llama2.c -score, BPE rank; a, b, merged: llama2.c's ids (staleness check) */
struct bigram { double key; int32_t left, right; size_t size; int32_t a, b, merged; };

/* min-heap on (key, left): SPM uses key = -score, so the highest score comes out first. */
struct heap { struct bigram *v; size_t n, cap; int oom; };

static int bg_less(const struct bigram *a, const struct bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void heap_push(struct heap *h, struct bigram b)
{
    if (h->oom) return;
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        struct bigram *nv = pl_realloc(h->v, nc * sizeof *nv);
        if (!nv) { h->oom = 1; return; }
        h->v = nv; h->cap = nc;
    }
    size_t i = h->n++;
    h->v[i] = b;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_less(&h->v[i], &h->v[p])) break;
        struct bigram t = h->v[i]; h->v[i] = h->v[p]; h->v[p] = t;
        i = p;
    }
}

static struct bigram heap_pop(struct heap *h)
{
    struct bigram top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && bg_less(&h->v[l], &h->v[m])) m = l;
        if (r < h->n && bg_less(&h->v[r], &h->v[m])) m = r;
        if (m == i) break;
        struct bigram t = h->v[i]; h->v[i] = h->v[m]; h->v[m] = t;
        i = m;
    }
    return top;
}

struct syms { struct sym *v; size_t n, cap; int oom; };

static void syms_push(struct syms *s, struct sym x)
{
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        struct sym *nv = pl_realloc(s->v, nc * sizeof *nv);
        if (!nv) { s->oom = 1; return; }
        s->v = nv; s->cap = nc;
    }
    s->v[s->n++] = x;
}

/* split s[0..n) into UTF-8 character symbols (llama.cpp: length from the lead byte) */
static void split_chars(struct syms *sy, const char *s, size_t n)
{
    sy->n = 0;
    size_t off = 0;
    int32_t idx = 0;
    while (off < n) {
        size_t l = (size_t)pl_utf8_len((unsigned char)s[off]);
        if (l > n - off) l = n - off;
        struct sym x = { s + off, (int32_t)l, idx - 1, 0 };
        off += l;
        x.next = off == n ? -1 : idx + 1;
        idx++;
        syms_push(sy, x);
    }
}

/* ------------------------------------------------------------------ SPM */

static void spm_try_bigram(const struct pl_tokenizer *t, struct syms *sy, struct heap *h, int32_t l, int32_t r)
{
    if (l < 0 || r < 0) return;
    size_t size = (size_t)sy->v[l].n + (size_t)sy->v[r].n;
    int32_t id = pl_strmap_get(&t->tok2id, sy->v[l].text, size);
    if (id < 0) return;
    struct bigram b = { -(double)t->score[id], l, r, size, 0, 0, 0 };
    heap_push(h, b);
}

static void spm_encode(const struct pl_tokenizer *t, const char *s, size_t n, struct ivec *out, int *oom)
{
    struct syms sy = {0};
    struct heap h = {0};
    split_chars(&sy, s, n);
    for (size_t i = 1; i < sy.n; i++) spm_try_bigram(t, &sy, &h, (int32_t)i - 1, (int32_t)i);
    while (h.n && !h.oom) {
        struct bigram b = heap_pop(&h);
        struct sym *L = &sy.v[b.left], *R = &sy.v[b.right];
        if (L->n == 0 || R->n == 0 || (size_t)L->n + (size_t)R->n != b.size) continue;
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) sy.v[R->next].prev = b.left;
        spm_try_bigram(t, &sy, &h, L->prev, b.left);
        spm_try_bigram(t, &sy, &h, b.left, L->next);
    }
    if (sy.n && !h.oom && !sy.oom) {
        for (int32_t i = 0; i != -1; i = sy.v[i].next) {
            struct sym *x = &sy.v[i];
            int32_t id = pl_strmap_get(&t->tok2id, x->text, (size_t)x->n);
            if (id >= 0) { ivec_push(out, id); continue; }
            for (int32_t j = 0; j < x->n; j++) {
                int32_t bt = t->byte_tok[(unsigned char)x->text[j]];
                ivec_push(out, bt >= 0 ? bt : (t->unk >= 0 ? t->unk : 0));
            }
        }
    }
    if (h.oom || sy.oom) *oom = 1;
    pl_free(h.v); pl_free(sy.v);
}

/* ------------------------------------------------------------------ BPE */

static void bpe_try_bigram(const struct pl_tokenizer *t, struct syms *sy, struct heap *h, int32_t l, int32_t r,
                           char *buf)
{
    if (l < 0 || r < 0) return;
    const struct sym *L = &sy->v[l], *R = &sy->v[r];
    memcpy(buf, L->text, (size_t)L->n);
    buf[L->n] = ' ';
    memcpy(buf + L->n + 1, R->text, (size_t)R->n);
    int32_t rank = pl_strmap_get(&t->ranks, buf, (size_t)L->n + 1 + (size_t)R->n);
    if (rank < 0) return;
    struct bigram b = { (double)rank, l, r, (size_t)L->n + (size_t)R->n, 0, 0, 0 };
    heap_push(h, b);
}

static void bpe_encode_word(const struct pl_tokenizer *t, const char *w, size_t n, struct ivec *out,
                            char *buf, int *oom)
{
    if (t->ignore_merges) {
        int32_t id = pl_strmap_get(&t->tok2id, w, n);
        if (id >= 0) { ivec_push(out, id); return; }
    }
    struct syms sy = {0};
    struct heap h = {0};
    split_chars(&sy, w, n);
    for (size_t i = 1; i < sy.n; i++) bpe_try_bigram(t, &sy, &h, (int32_t)i - 1, (int32_t)i, buf);
    while (h.n && !h.oom) {
        struct bigram b = heap_pop(&h);
        struct sym *L = &sy.v[b.left], *R = &sy.v[b.right];
        if (L->n == 0 || R->n == 0) continue;
        /* stale unless the two symbols still spell the merged pair: the texts are contiguous
         * in the word, so equal sizes and the rank lookup of the current pair decide it */
        if ((size_t)L->n + (size_t)R->n != b.size) continue;
        {
            memcpy(buf, L->text, (size_t)L->n); buf[L->n] = ' ';
            memcpy(buf + L->n + 1, R->text, (size_t)R->n);
            int32_t rank = pl_strmap_get(&t->ranks, buf, (size_t)L->n + 1 + (size_t)R->n);
            if (rank < 0 || (double)rank != b.key) continue;
        }
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) sy.v[R->next].prev = b.left;
        bpe_try_bigram(t, &sy, &h, L->prev, b.left, buf);
        bpe_try_bigram(t, &sy, &h, b.left, L->next, buf);
    }
    if (sy.n && !h.oom && !sy.oom) {
        for (int32_t i = 0; i != -1; i = sy.v[i].next) {
            struct sym *x = &sy.v[i];
            if (x->n == 0) continue;
            int32_t id = pl_strmap_get(&t->tok2id, x->text, (size_t)x->n);
            if (id >= 0) { ivec_push(out, id); continue; }
            for (int32_t j = 0; j < x->n; j++) {
                if (t->kind == PL_TOK_SPM) {      /* byte fallback through <0xXX> tokens */
                    int32_t bt = t->byte_tok[(unsigned char)x->text[j]];
                    ivec_push(out, bt >= 0 ? bt : (t->unk >= 0 ? t->unk : 0));
                    continue;
                }
                int32_t bt = pl_strmap_get(&t->tok2id, x->text + j, 1);
                if (bt >= 0) ivec_push(out, bt);
            }
        }
    }
    if (h.oom || sy.oom) *oom = 1;
    pl_free(h.v); pl_free(sy.v);
}

static enum pl_status bpe_encode(const struct pl_tokenizer *t, const char *s, size_t n, struct ivec *out)
{
    struct pl_tok_words w;
    enum pl_status st = pl_tok_pretokenize(t->pre, s, n, &w);
    if (st) return st;
    /* byte-encode the longest word once into a scratch buffer */
    size_t maxw = 0, prev = 0;
    for (size_t k = 0; k < w.n; k++) { if (w.ends[k] - prev > maxw) maxw = w.ends[k] - prev; prev = w.ends[k]; }
    char *enc = pl_alloc(maxw * 2 + 1, PL_MEM_WORKSPACE);
    char *buf = pl_alloc(maxw * 2 * 2 + 2, PL_MEM_WORKSPACE);
    int oom = !enc || !buf;
    prev = 0;
    for (size_t k = 0; k < w.n && !oom; k++) {
        size_t m = 0;
        for (size_t i = prev; i < w.ends[k]; i++)
            m += (size_t)pl_utf8_encode(pl_tok_byte_to_cp((unsigned char)w.bytes[i]), enc + m);
        prev = w.ends[k];
        bpe_encode_word(t, enc, m, out, buf, &oom);
    }
    pl_free(enc); pl_free(buf);
    pl_tok_words_free(&w);
    if (oom) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", n);
    return PL_OK;
}

/* ------------------------------------------------------------------ llama2.c */

/* run.c's loop — "merge the best-scoring adjacent pair (the leftmost of equal ones) until no
 * pair forms a vocabulary string" — done with a heap instead of rescanning the sequence each
 * time (which is quadratic): a pair entry remembers the two ids it was made from and is
 * skipped when popped if either side has changed since, so the order of merges, and the ids,
 * are exactly run.c's. */
struct l2c_sym { int32_t id, prev, next; };

static void l2c_try_pair(const struct pl_tokenizer *t, struct l2c_sym *sy, struct heap *h, int32_t l, int32_t r,
                         char *buf)
{
    if (l < 0 || r < 0) return;
    int32_t a = sy[l].id, b = sy[r].id;
    if (a < 0 || b < 0 || a >= t->n_vocab || b >= t->n_vocab) return;
    /* run.c concatenates with "%s%s": pieces end at an embedded NUL */
    size_t la = strnlen(t->text[a], t->len[a]), lb = strnlen(t->text[b], t->len[b]);
    memcpy(buf, t->text[a], la);
    memcpy(buf + la, t->text[b], lb);
    int32_t id = pl_strmap_get(&t->tok2id, buf, la + lb);
    if (id < 0 || !(t->score[id] > -1e10f)) return;
    struct bigram g = { -(double)t->score[id], l, r, 0, a, b, id };
    heap_push(h, g);
}

static enum pl_status l2c_encode(const struct pl_tokenizer *t, const char *s, size_t n, int first,
                                 struct ivec *out)
{
    struct ivec seq = {0};
    if (n > 0 && first) {
        int32_t sp = pl_strmap_get(&t->tok2id, " ", 1);
        if (sp >= 0) ivec_push(&seq, sp);
    }
    for (size_t i = 0; i < n;) {
        size_t l = 1;       /* a lead byte and up to 3 continuation bytes */
        while (i + l < n && ((unsigned char)s[i + l] & 0xC0) == 0x80 && l < 4) l++;
        int32_t id = pl_strmap_get(&t->tok2id, s + i, l);
        if (id >= 0) ivec_push(&seq, id);
        else for (size_t j = 0; j < l; j++) {
            /* byte fallback: <0xXX> is id byte + 3 where the vocabulary has it, else <unk> */
            int32_t b = (int32_t)(unsigned char)s[i + j] + 3;
            ivec_push(&seq, b < t->n_vocab ? b : 0);
        }
        i += l;
    }
    size_t maxlen = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) if (t->len[i] > maxlen) maxlen = t->len[i];
    char *buf = pl_alloc(maxlen * 2 + 2, PL_MEM_WORKSPACE);
    struct l2c_sym *sy = pl_alloc((seq.n ? seq.n : 1) * sizeof *sy, PL_MEM_WORKSPACE);
    struct heap h = {0};
    enum pl_status st = PL_OK;
    if (seq.oom || !buf || !sy) { st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
    for (size_t i = 0; i < seq.n; i++) {
        sy[i].id = seq.v[i];
        sy[i].prev = (int32_t)i - 1;
        sy[i].next = i + 1 < seq.n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 1; i < seq.n; i++) l2c_try_pair(t, sy, &h, (int32_t)i - 1, (int32_t)i, buf);
    while (h.n && !h.oom) {
        struct bigram g = heap_pop(&h);
        struct l2c_sym *L = &sy[g.left], *R = &sy[g.right];
        if (L->next != g.right || L->id != g.a || R->id != g.b) continue;   /* stale */
        L->id = g.merged;
        L->next = R->next;
        if (R->next >= 0) sy[R->next].prev = g.left;
        R->id = -1;
        l2c_try_pair(t, sy, &h, L->prev, g.left, buf);
        l2c_try_pair(t, sy, &h, g.left, L->next, buf);
    }
    if (h.oom) { st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
    for (int32_t i = seq.n ? 0 : -1; i != -1; i = sy[i].next) ivec_push(out, sy[i].id);
    if (out->oom) st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
done:
    pl_free(h.v); pl_free(sy); pl_free(buf); pl_free(seq.v);
    return st;
}

/* ------------------------------------------------------------------ WordPiece */

static int wpm_is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||  /* sic, as HF */
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* llama.cpp llm_tokenizer_wpm: words from the normalised text, then per word the longest
 * vocabulary match of "▁"+word at each position; a word with an unmatched position becomes
 * [UNK] as a whole. */
static enum pl_status wpm_encode(const struct pl_tokenizer *t, const char *s, size_t n, struct ivec *out)
{
    /* normalised words: '\0'-separated in buf, word starts recorded in ws */
    char *buf = pl_alloc(n * 4 + 8, PL_MEM_WORKSPACE);
    size_t *ws = pl_alloc((n + 2) * sizeof *ws, PL_MEM_WORKSPACE);
    if (!buf || !ws) { pl_free(buf); pl_free(ws); return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory"); }
    size_t bl = 0, nw = 0, cur = 0;          /* cur: start of the word being built */
#define END_WORD() do { if (bl > cur) { ws[nw++] = cur; buf[bl++] = 0; cur = bl; } } while (0)
    for (size_t pos = 0; pos < n;) {
        uint32_t c = pl_uni_nfd_first(pl_utf8_decode(s, n, &pos));
        unsigned f = pl_ucat(c);
        if (f & PL_UCAT_SPACE) { END_WORD(); continue; }
        if (c == 0 || c == 0xFFFD || (f & PL_UCAT_CONTROL)) continue;
        char u[4];
        int k = pl_utf8_encode(pl_uni_tolower(c), u);
        if ((f & PL_UCAT_PUNCT) || (c < 0x7F && (f & PL_UCAT_SYMBOL)) || wpm_is_cjk(c)) {
            END_WORD();
            memcpy(buf + bl, u, (size_t)k); bl += (size_t)k;
            END_WORD();
        } else {
            memcpy(buf + bl, u, (size_t)k); bl += (size_t)k;
        }
    }
    END_WORD();
#undef END_WORD
    size_t maxlen = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) if (t->len[i] > maxlen) maxlen = t->len[i];
    char *w1 = pl_alloc(n * 4 + 8, PL_MEM_WORKSPACE);
    if (!w1) { pl_free(buf); pl_free(ws); return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory"); }
    for (size_t k = 0; k < nw; k++) {
        const char *w = buf + ws[k];
        size_t wl = strlen(w);
        memcpy(w1, "\xe2\x96\x81", 3);
        memcpy(w1 + 3, w, wl);
        size_t m = wl + 3, before = out->n;
        for (size_t i = 0; i < m; i++) {
            int found = 0;
            size_t jmax = i + maxlen + 1 < m ? i + maxlen + 1 : m;
            for (size_t j = jmax; j > i; j--) {
                int32_t id = pl_strmap_get(&t->tok2id, w1 + i, j - i);
                if (id >= 0) { ivec_push(out, id); found = 1; i = j - 1; break; }
            }
            if (!found) { out->n = before; break; }
        }
        if (out->n == before) ivec_push(out, t->unk >= 0 ? t->unk : 0);
    }
    pl_free(w1); pl_free(buf); pl_free(ws);
    if (out->oom) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    return PL_OK;
}

/* ------------------------------------------------------------------ encode */

struct frag { size_t off, len; int32_t tok; };   /* tok >= 0: a special token */
struct frags { struct frag *v; size_t n, cap; int oom; };

static void frags_insert(struct frags *f, size_t at, struct frag x)
{
    if (f->oom) return;
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 16;
        struct frag *nv = pl_realloc(f->v, nc * sizeof *nv);
        if (!nv) { f->oom = 1; return; }
        f->v = nv; f->cap = nc;
    }
    memmove(f->v + at + 1, f->v + at, (f->n - at) * sizeof *f->v);
    f->v[at] = x;
    f->n++;
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn)
{
    if (nn == 0 || nn > hn) return NULL;
    return memmem(h, hn, nd, nn);
}

static void partition(const struct pl_tokenizer *t, const char *s, size_t n, int parse_special, struct frags *f)
{
    struct frag all = { 0, n, -1 };
    frags_insert(f, 0, all);
    /* byte pairs present in the text: most special tokens (deepseek has thousands) can then be
     * skipped without scanning */
    uint8_t *pairs = pl_calloc(65536 / 8, 1, PL_MEM_WORKSPACE);
    if (!pairs) { f->oom = 1; return; }
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned pr = (unsigned char)s[i] << 8 | (unsigned char)s[i + 1];
        pairs[pr >> 3] |= (uint8_t)(1u << (pr & 7));
    }
    for (int32_t k = 0; k < t->n_special && !f->oom; k++) {
        int32_t id = t->special[k];
        if (!parse_special && t->type[id] != PL_TOKT_USER_DEFINED) continue;
        const char *tx = t->text[id];
        size_t tl = t->len[id];
        if (tl > n) continue;
        if (tl >= 2) {
            unsigned pr = (unsigned char)tx[0] << 8 | (unsigned char)tx[1];
            if (!(pairs[pr >> 3] & (1u << (pr & 7)))) continue;
        }
        for (size_t i = 0; i < f->n && !f->oom; i++) {
            if (f->v[i].tok >= 0) continue;
            size_t off = f->v[i].off, len = f->v[i].len;
            const char *m = find_bytes(s + off, len, tx, tl);
            if (!m) continue;
            size_t mo = (size_t)(m - s);
            /* replace fragment i by [left] token [right]; the right part is scanned next */
            f->v[i].len = mo - off;
            size_t at = i + 1;
            struct frag tok = { mo, tl, id };
            frags_insert(f, at, tok);
            if (mo + tl < off + len) {
                struct frag right = { mo + tl, off + len - mo - tl, -1 };
                frags_insert(f, at + 1, right);
            }
            if (f->v[i].len == 0) {    /* drop the empty left part */
                memmove(f->v + i, f->v + i + 1, (f->n - i - 1) * sizeof *f->v);
                f->n--;
            } else {
                i++;                   /* skip the token; loop's i++ reaches the right part */
            }
        }
    }
    pl_free(pairs);
}

enum pl_status pl_tokenizer_encode(const struct pl_tokenizer *t, const char *text, size_t len,
                                   unsigned flags, int32_t **ids, size_t *n)
{
    *ids = NULL; *n = 0;
    if (!t) return pl_fail(PL_ERR_ARG, "tokenizer: NULL tokenizer");
    if (!text && len) return pl_fail(PL_ERR_ARG, "tokenizer: NULL text");
    int add_bos = (flags & PL_TOK_DEFAULT_SPECIAL) ? t->add_bos : !!(flags & PL_TOK_ADD_BOS);
    int add_eos = (flags & PL_TOK_DEFAULT_SPECIAL) ? t->add_eos : !!(flags & PL_TOK_ADD_EOS);
    struct ivec out = {0};
    struct frags fr = {0};
    enum pl_status st = PL_OK;
    int oom = 0;
    char *tmp = NULL;
    if (add_bos && t->bos >= 0) ivec_push(&out, t->bos);
    if (len > 0) partition(t, text, len, !!(flags & PL_TOK_PARSE_SPECIAL), &fr);
    if (fr.oom) { st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
    int prev_special = 1;
    for (size_t i = 0; i < fr.n && st == PL_OK; i++) {
        const struct frag *g = &fr.v[i];
        if (g->tok >= 0) { ivec_push(&out, g->tok); prev_special = 1; continue; }
        const char *s = text + g->off;
        switch (t->kind) {
        case PL_TOK_SPM: {
            /* " " prefix, then every ' ' becomes U+2581 "▁" (3 bytes) */
            size_t sp = (t->add_space_prefix && prev_special) ? 1 : 0, spaces;
            if (t->prefix_first_only) sp = t->add_space_prefix && g->off == 0 && g->len > 0 && s[0] != ' ';
            spaces = sp;
            for (size_t j = 0; j < g->len; j++) spaces += s[j] == ' ';
            size_t m = g->len + sp + spaces * 2;
            pl_free(tmp);
            if (!(tmp = pl_alloc(m + 1, PL_MEM_WORKSPACE))) { oom = 1; break; }
            size_t k = 0;
            if (sp) { memcpy(tmp, "\xe2\x96\x81", 3); k = 3; }
            for (size_t j = 0; j < g->len; j++) {
                if (s[j] == ' ') { memcpy(tmp + k, "\xe2\x96\x81", 3); k += 3; }
                else tmp[k++] = s[j];
            }
            if (t->n_merges > 0) {                /* merges by rank (HF BPE with byte fallback) */
                char *buf = pl_alloc(k + 2, PL_MEM_WORKSPACE);
                if (!buf) { oom = 1; break; }
                bpe_encode_word(t, tmp, k, &out, buf, &oom);
                pl_free(buf);
            } else {
                spm_encode(t, tmp, k, &out, &oom);
            }
            break;
        }
        case PL_TOK_BPE:
            st = bpe_encode(t, s, g->len, &out);
            break;
        case PL_TOK_LLAMA2C:
            st = l2c_encode(t, s, g->len, i == 0 && t->add_space_prefix, &out);
            break;
        case PL_TOK_WPM:
            st = wpm_encode(t, s, g->len, &out);
            break;
        }
        prev_special = 0;
    }
    if (oom && st == PL_OK) st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    if (st == PL_OK && add_eos && t->eos >= 0) ivec_push(&out, t->eos);
    if (st == PL_OK && out.oom) st = pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
done:
    pl_free(tmp);
    pl_free(fr.v);
    if (st != PL_OK) { pl_free(out.v); return st; }
    if (!out.v) out.v = pl_alloc(sizeof(int32_t), PL_MEM_WORKSPACE);   /* non-NULL empty result */
    if (!out.v) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory");
    *ids = out.v; *n = out.n;
    return PL_OK;
}

/* ------------------------------------------------------------------ decode */

int pl_tokenizer_token_bytes(const struct pl_tokenizer *t, int32_t id, int special, char *buf, size_t cap)
{
    if (!t || id < 0 || id >= t->n_vocab) return -1;
    const char *s = t->text[id];
    size_t n = t->len[id], k = 0;
    char tmp[8];
#define PUT(p, l) do { size_t l_ = (l); for (size_t q_ = 0; q_ < l_; q_++) { if (k < cap) buf[k] = (p)[q_]; k++; } } while (0)
    switch ((enum pl_tok_type)t->type[id]) {
    case PL_TOKT_CONTROL:
        if (special) PUT(s, n);
        break;
    case PL_TOKT_UNKNOWN:
        if (special) PUT(s, n);
        else if (t->kind == PL_TOK_SPM) PUT("\xe2\x96\x85", 3);   /* llama.cpp shows "▅" */
        break;
    case PL_TOKT_BYTE: {
        int b = parse_byte_token(s, n);
        if (b >= 0) { tmp[0] = (char)b; PUT(tmp, 1); }
        break;
    }
    case PL_TOKT_USER_DEFINED:
        PUT(s, n);
        break;
    default:
        if (t->kind == PL_TOK_BPE) {
            for (size_t pos = 0; pos < n;) {
                size_t at = pos;
                uint32_t cp = pl_utf8_decode(s, n, &pos);
                int b = pl_tok_cp_to_byte(cp);
                if (b >= 0) { tmp[0] = (char)b; PUT(tmp, 1); }
                else PUT(s + at, pos - at);
            }
        } else {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) { PUT(" ", 1); i += 3; }
                else { PUT(s + i, 1); i++; }
            }
        }
    }
#undef PUT
    return (int)k;
}

enum pl_status pl_tokenizer_decode(const struct pl_tokenizer *t, const int32_t *ids, size_t n,
                                   unsigned flags, char **text, size_t *len)
{
    *text = NULL; *len = 0;
    size_t cap = 64, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return pl_fail(PL_ERR_ARG, "tokenizer: token id %ld at position %zu is out of range [0, %d)",
                           (long)ids[i], i, (int)t->n_vocab);
        cap += t->len[ids[i]] + 4;
    }
    char *out = pl_alloc(cap + 1, PL_MEM_WORKSPACE);
    if (!out) return pl_fail(PL_ERR_NOMEM, "tokenizer: out of memory decoding %zu tokens", n);
    int strip = t->kind != PL_TOK_BPE && (t->add_space_prefix || t->kind == PL_TOK_WPM) &&
                !(flags & PL_TOK_DECODE_KEEP_PREFIX);
    int special = !!(flags & PL_TOK_DECODE_SPECIAL);
    for (size_t i = 0; i < n; i++) {
        int m = pl_tokenizer_token_bytes(t, ids[i], special, out + k, cap - k);
        if (m <= 0) continue;
        if (strip) {
            /* the space prefix: drop one leading space of the first text piece */
            if (t->type[ids[i]] != PL_TOKT_CONTROL && out[k] == ' ') { memmove(out + k, out + k + 1, (size_t)m - 1); m--; }
            if (t->type[ids[i]] != PL_TOKT_CONTROL) strip = 0;
        }
        k += (size_t)m;
    }
    out[k] = 0;
    *text = out; *len = k;
    return PL_OK;
}

/* ------------------------------------------------------------------ accessors */

const char *pl_tokenizer_piece(const struct pl_tokenizer *t, int32_t id, size_t *len)
{
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->len[id];
    return t->text[id];
}

int32_t pl_tokenizer_find(const struct pl_tokenizer *t, const char *s, size_t len)
{
    return pl_strmap_get(&t->tok2id, s, len);
}

int32_t pl_tokenizer_n_vocab(const struct pl_tokenizer *t) { return t->n_vocab; }
int32_t pl_tokenizer_bos(const struct pl_tokenizer *t) { return t->bos; }
int32_t pl_tokenizer_eos(const struct pl_tokenizer *t) { return t->eos; }
int32_t pl_tokenizer_eot(const struct pl_tokenizer *t) { return t->eot; }
enum pl_tok_kind pl_tokenizer_kind(const struct pl_tokenizer *t) { return t->kind; }
enum pl_tok_type pl_tokenizer_type(const struct pl_tokenizer *t, int32_t id)
{
    return (id >= 0 && id < t->n_vocab) ? (enum pl_tok_type)t->type[id] : PL_TOKT_UNDEFINED;
}
const char *pl_tokenizer_pre_name(const struct pl_tokenizer *t) { return t->pre_name ? t->pre_name : ""; }
int pl_tokenizer_add_bos(const struct pl_tokenizer *t) { return t->add_bos; }
int pl_tokenizer_add_eos(const struct pl_tokenizer *t) { return t->add_eos; }
const char *pl_tokenizer_chat_template(const struct pl_tokenizer *t) { return t->chat_template; }
