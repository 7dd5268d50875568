/* data_build.c — rendering records to (token ids, loss mask), truncation, length statistics,
 * exact duplicates and the train/validation split.
 *
 * Owner: data. Rendering goes through struct pl_data_tokenizer (data.h) so that this file
 * knows nothing of a particular tokenizer or chat template: text and prompt/completion
 * records are encoded directly; chat and alpaca records are rendered by the tokenizer's chat
 * template, which also says which bytes the assistant produced. Loss-bearing and prompt bytes
 * are encoded as separate segments so that the mask lines up with token boundaries exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/data.h"

enum pl_status pl_data_ids_push(struct pl_data_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        int64_t nc = ids->cap ? ids->cap * 2 : 256;
        int32_t *p = pl_realloc(ids->v, (size_t)nc * sizeof *p);   /* NULL: a new data block */
        if (!p) return pl_fail(PL_ERR_NOMEM, "out of memory for token ids");
        ids->v = p;
        ids->cap = nc;
    }
    ids->v[ids->n++] = id;
    return PL_OK;
}

void pl_data_ids_free(struct pl_data_ids *ids)
{
    pl_free(ids->v);
    memset(ids, 0, sizeof *ids);
}

/* Grow the mask to ids->cap (mask entries for ids already pushed keep their values). */
static enum pl_status mask_fit(uint8_t **mask, int64_t *mcap, int64_t need)
{
    if (need <= *mcap) return PL_OK;
    int64_t nc = *mcap ? *mcap : 256;
    while (nc < need) nc *= 2;
    uint8_t *p = *mask ? pl_realloc(*mask, (size_t)nc) : pl_alloc((size_t)nc, PL_MEM_DATA);
    if (!p) return pl_fail(PL_ERR_NOMEM, "out of memory for loss masks");
    *mask = p;
    *mcap = nc;
    return PL_OK;
}

struct render {
    struct pl_data_ids *ids;
    uint8_t **mask;
    int64_t mcap;
    const struct pl_data_tokenizer *tok;
};

static enum pl_status emit_id(struct render *r, int32_t id, int m)
{
    enum pl_status st = pl_data_ids_push(r->ids, id);
    if (st) return st;
    if ((st = mask_fit(r->mask, &r->mcap, r->ids->n))) return st;
    (*r->mask)[r->ids->n - 1] = (uint8_t)m;
    return PL_OK;
}

static enum pl_status emit_text(struct render *r, const char *s, size_t n, int m)
{
    if (n == 0) return PL_OK;
    int64_t before = r->ids->n;
    enum pl_status st = r->tok->encode(r->tok->ctx, s, n, r->ids);
    if (st) return st;
    if ((st = mask_fit(r->mask, &r->mcap, r->ids->n))) return st;
    memset(*r->mask + before, m, (size_t)(r->ids->n - before));
    return PL_OK;
}

/* Fallback: encode prompt and loss segments separately (used when the tokens of the whole
 * text cannot be lined up with its bytes). */
static enum pl_status emit_spans(struct render *r, const char *text, size_t len,
                                 const struct pl_data_span *sp, int n_sp, int train_on_prompt)
{
    size_t at = 0;
    enum pl_status st;
    for (int i = 0; i < n_sp; i++) {
        size_t b = sp[i].begin, e = sp[i].end;
        if ((st = emit_text(r, text + at, b - at, train_on_prompt))) return st;
        if ((st = emit_text(r, text + b, e - b, 1))) return st;
        at = e;
    }
    return emit_text(r, text + at, len - at, train_on_prompt);
}

/* Encode the whole text at once (as inference would) and give each token the mask of the
 * bytes it covers: a token overlapping a loss span is a target. Token bytes are lined up with
 * the text allowing inserted spaces (SentencePiece's space prefix); if they do not line up,
 * fall back to per-segment encoding. */
static enum pl_status emit_masked(struct render *r, const char *text, size_t len,
                                  const struct pl_data_span *sp, int n_sp, int train_on_prompt)
{
    for (int i = 0; i < n_sp; i++)
        if (sp[i].begin > sp[i].end || sp[i].end > len || (i > 0 && sp[i].begin < sp[i - 1].end))
            return pl_fail(PL_ERR_STATE, "chat template returned overlapping or out-of-range spans");
    const struct pl_data_tokenizer *tok = r->tok;
    int64_t base = r->ids->n;
    enum pl_status st = tok->encode(tok->ctx, text, len, r->ids);
    if (st) return st;
    if ((st = mask_fit(r->mask, &r->mcap, r->ids->n))) return st;
    uint8_t *m = *r->mask;
    if (train_on_prompt) { memset(m + base, 1, (size_t)(r->ids->n - base)); return PL_OK; }
    if (!tok->token_bytes) goto segments;
    size_t p = 0;
    int si = 0;
    char small[256];
    for (int64_t i = base; i < r->ids->n; i++) {
        int nb = tok->token_bytes(tok->ctx, r->ids->v[i], small, sizeof small);
        if (nb < 0 || nb > (int)sizeof small) goto segments;
        size_t s0 = p;
        int matched = 0;
        for (int k = 0; k < nb; k++) {
            if (p < len && text[p] == small[k]) { if (!matched) s0 = p; matched = 1; p++; }
            else if (small[k] != ' ') goto segments;
        }
        size_t e0 = matched ? p : s0;
        while (si < n_sp && sp[si].end <= s0 && !(sp[si].begin == sp[si].end && sp[si].begin == s0)) si++;
        int loss = 0;
        if (si < n_sp) {
            if (matched) loss = sp[si].begin < e0 && s0 < sp[si].end;
            else loss = sp[si].begin <= s0 && s0 < sp[si].end;
        }
        m[i] = (uint8_t)loss;
    }
    if (p != len) goto segments;
    return PL_OK;
segments:
    r->ids->n = base;
    return emit_spans(r, text, len, sp, n_sp, train_on_prompt);
}

enum pl_status pl_data_render(struct pl_data_ids *ids, uint8_t **mask, enum pl_data_format fmt,
                              const struct pl_data_record *rec, const struct pl_data_tokenizer *tok,
                              int train_on_prompt)
{
    struct render r = { ids, mask, *mask ? (int64_t)pl_alloc_size(*mask) : 0, tok };
    enum pl_status st = PL_OK;
    ids->n = 0;
    int pc = fmt == PL_DATA_COMPLETION && tok->completion_chat && tok->render_chat;
    if (pc) fmt = PL_DATA_ALPACA;   /* the user/assistant pair below */
    switch (fmt) {
    case PL_DATA_TEXT:
    case PL_DATA_COMPLETION: {
        if (tok->add_bos && tok->bos_id >= 0 && (st = emit_id(&r, tok->bos_id, 0))) return st;
        size_t la = strlen(rec->a);
        if (fmt == PL_DATA_TEXT) {
            struct pl_data_span sp = { 0, la };
            st = emit_masked(&r, rec->a, la, &sp, 1, 1);
        } else {
            size_t lb = strlen(rec->b);
            char *full = pl_alloc(la + lb + 1, PL_MEM_WORKSPACE);
            if (!full) return pl_fail(PL_ERR_NOMEM, "out of memory");
            memcpy(full, rec->a, la);
            memcpy(full + la, rec->b, lb + 1);
            struct pl_data_span sp = { la, la + lb };
            st = emit_masked(&r, full, la + lb, &sp, 1, train_on_prompt);
            pl_free(full);
        }
        if (st) return st;
        if (tok->eos_id >= 0 && (st = emit_id(&r, tok->eos_id, 1))) return st;
        return PL_OK;
    }
    case PL_DATA_CHAT:
    case PL_DATA_ALPACA: {
        if (!tok->render_chat) return pl_fail(PL_ERR_UNSUPPORTED, "the tokenizer has no chat template");
        struct pl_data_msg two[2];
        const struct pl_data_msg *msgs = rec->msgs;
        int n = rec->n_msgs;
        char *user = NULL;
        if (fmt == PL_DATA_ALPACA) {
            /* instruction, then the input (if any) after a blank line, as the user turn; a
             * prompt/completion record (completion_chat) is prompt as user, completion as
             * assistant */
            char *ans = pc ? rec->b : rec->c;
            size_t la = strlen(rec->a), lb = pc ? 0 : strlen(rec->b);
            user = pl_alloc(la + lb + 3, PL_MEM_WORKSPACE);
            if (!user) return pl_fail(PL_ERR_NOMEM, "out of memory");
            memcpy(user, rec->a, la);
            if (lb) { memcpy(user + la, "\n\n", 2); memcpy(user + la + 2, rec->b, lb); la += 2 + lb; }
            user[la] = 0;
            two[0].role = "user"; two[0].content = user;
            two[1].role = "assistant"; two[1].content = ans;
            msgs = two;
            n = 2;
        }
        char *text = NULL;
        size_t len = 0;
        struct pl_data_span *sp = NULL;
        int n_sp = 0;
        st = tok->render_chat(tok->ctx, msgs, n, &text, &len, &sp, &n_sp);
        pl_free(user);
        if (st == PL_OK) st = emit_masked(&r, text, len, sp, n_sp, train_on_prompt);
        pl_free(text);
        pl_free(sp);
        if (st) return st;
        /* a template that does not write BOS itself gets one when the vocabulary wants it */
        if (tok->add_bos && tok->bos_id >= 0 && (ids->n == 0 || ids->v[0] != tok->bos_id)) {
            if ((st = pl_data_ids_push(ids, 0))) return st;
            if ((st = mask_fit(mask, &r.mcap, ids->n))) return st;
            memmove(ids->v + 1, ids->v, (size_t)(ids->n - 1) * sizeof *ids->v);
            memmove(*mask + 1, *mask, (size_t)(ids->n - 1));
            ids->v[0] = tok->bos_id;
            (*mask)[0] = 0;
        }
        return PL_OK;
    }
    default:
        return pl_fail(PL_ERR_ARG, "cannot render format '%s'", pl_data_format_name(fmt));
    }
}

/* ---------------------------------------------------------------- statistics */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Percentiles by nearest rank: the smallest length with at least p of the examples <= it. */
void pl_data_stats_compute(struct pl_data_stats *s, const int32_t *lens, int32_t n)
{
    s->count = n;
    for (int k = 0; k < PL_DATA_HIST_BUCKETS; k++) { s->hist_lo[k] = 1 << k; s->hist_count[k] = 0; }
    s->hist_lo[0] = 0;   /* bucket 0 holds lengths 0 and 1 */
    if (n <= 0) { s->min = s->max = s->median = s->p95 = 0; s->mean = 0; s->tokens = 0; return; }
    int32_t *v = pl_alloc((size_t)n * sizeof *v, PL_MEM_WORKSPACE);
    int64_t sum = 0;
    for (int32_t i = 0; i < n; i++) {
        sum += lens[i];
        int k = 0;
        while (k + 1 < PL_DATA_HIST_BUCKETS && lens[i] >= (1 << (k + 1))) k++;
        s->hist_count[k]++;
    }
    s->tokens = sum;
    s->mean = (double)sum / n;
    if (v) {
        memcpy(v, lens, (size_t)n * sizeof *v);
        qsort(v, (size_t)n, sizeof *v, cmp_i32);
        s->min = v[0];
        s->max = v[n - 1];
        s->median = v[(int32_t)ceil(0.50 * n) - 1];
        s->p95 = v[(int32_t)ceil(0.95 * n) - 1];
        pl_free(v);
    }
}

/* ---------------------------------------------------------------- duplicates */

struct keyed {
    uint64_t h;
    char *key;
    size_t len;
    int32_t split, idx, line;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

/* The record's content as one string; fields separated by bytes that cannot occur in valid
 * JSON-decoded text fields of our records (0x1E between fields, 0x1F between role/content). */
static char *record_key(const struct pl_data_record *r, size_t *len)
{
    size_t n = 4;
    const char *f[3] = { r->a, r->b, r->c };
    for (int i = 0; i < 3; i++) if (f[i]) n += strlen(f[i]) + 1;
    for (int i = 0; i < r->n_msgs; i++) n += strlen(r->msgs[i].role) + strlen(r->msgs[i].content) + 2;
    char *k = pl_alloc(n, PL_MEM_WORKSPACE);
    if (!k) return NULL;
    size_t at = 0;
    for (int i = 0; i < 3; i++)
        if (f[i]) { size_t l = strlen(f[i]); memcpy(k + at, f[i], l); at += l; k[at++] = 0x1E; }
    for (int i = 0; i < r->n_msgs; i++) {
        size_t l = strlen(r->msgs[i].role);
        memcpy(k + at, r->msgs[i].role, l); at += l; k[at++] = 0x1F;
        l = strlen(r->msgs[i].content);
        memcpy(k + at, r->msgs[i].content, l); at += l; k[at++] = 0x1E;
    }
    k[at] = 0;
    *len = at;
    return k;
}

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    int c = memcmp(x->key, y->key, x->len);
    if (c) return c;
    if (x->split != y->split) return x->split - y->split;
    return x->idx - y->idx;
}

static int same_key(const struct keyed *x, const struct keyed *y)
{
    return x->h == y->h && x->len == y->len && memcmp(x->key, y->key, x->len) == 0;
}

/* ---------------------------------------------------------------- building */

struct pl_data_build_opts pl_data_build_defaults(void)
{
    struct pl_data_build_opts o = { .max_seq_len = 512, .train_on_prompt = 0, .skip_bad = 0,
                                    .valid_fraction = 0, .seed = 42 };
    return o;
}

void pl_dataset_free(struct pl_dataset *ds)
{
    if (!ds) return;
    for (int i = 0; i < ds->n_issues; i++) pl_free(ds->issues[i].msg);
    pl_free(ds->issues);
    pl_free(ds->dup_pairs);
    pl_free(ds->ex);
    pl_free(ds->ids);
    pl_free(ds->mask);
    pl_free(ds->path);
    pl_free(ds);
}

/* A selection of records from one file. */
struct part {
    const struct pl_data_file *f;
    int32_t file;          /* 0 main, 1 valid */
    int32_t *idx;          /* record indices */
    int32_t n;
};

static enum pl_status check_issues(const struct pl_data_file *f, int skip_bad)
{
    if (f->n_issues == 0 || (skip_bad && f->n_records > 0)) return PL_OK;
    if (f->n_issues == 1) return pl_fail(PL_ERR_FORMAT, "%s", f->issues[0].msg);
    return pl_fail(PL_ERR_FORMAT, "%s (and %d more problem%s in %s; skip_bad = true skips bad records)",
                   f->issues[0].msg, f->n_issues - 1, f->n_issues > 2 ? "s" : "", f->path);
}

static enum pl_status copy_issues(struct pl_dataset *ds, const struct pl_data_file *f)
{
    ds->skipped = f->n_seen - f->n_records;
    if (f->n_issues == 0) return PL_OK;
    ds->issues = pl_calloc((size_t)f->n_issues, sizeof *ds->issues, PL_MEM_DATA);
    if (!ds->issues) return pl_fail(PL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < f->n_issues; i++) {
        ds->issues[i].line = f->issues[i].line;
        ds->issues[i].msg = pl_strdup(f->issues[i].msg, PL_MEM_DATA);
        if (!ds->issues[i].msg) return pl_fail(PL_ERR_NOMEM, "out of memory");
        ds->n_issues = i + 1;
    }
    return PL_OK;
}

static enum pl_status build_part(struct pl_dataset **out, const struct part *p, const char *path,
                                 const struct pl_data_tokenizer *tok, const struct pl_data_build_opts *o)
{
    struct pl_dataset *ds = pl_calloc(1, sizeof *ds, PL_MEM_DATA);
    if (!ds) return pl_fail(PL_ERR_NOMEM, "out of memory");
    *out = ds;
    ds->path = pl_strdup(path, PL_MEM_DATA);
    ds->format = p->f->format;
    ds->bos_id = tok->bos_id;
    ds->eos_id = tok->eos_id;
    ds->pad_id = tok->pad_id >= 0 ? tok->pad_id : (tok->eos_id >= 0 ? tok->eos_id : 0);
    ds->max_seq_len = o->max_seq_len;
    ds->seed = o->seed;
    ds->ex = pl_calloc((size_t)(p->n ? p->n : 1), sizeof *ds->ex, PL_MEM_DATA);
    int32_t *lens = pl_alloc((size_t)(p->n ? p->n : 1) * sizeof *lens, PL_MEM_WORKSPACE);
    if (!ds->path || !ds->ex || !lens) { pl_free(lens); return pl_fail(PL_ERR_NOMEM, "out of memory"); }
    struct pl_data_ids ids = { 0 };
    uint8_t *mask = NULL;
    int64_t pcap = 0;
    enum pl_status st = PL_OK;
    for (int32_t k = 0; k < p->n && st == PL_OK; k++) {
        if ((k & 255) == 255 && (st = pl_interrupt_check()) != PL_OK) break;   /* Ctrl-C: a safe point */
        const struct pl_data_record *r = &p->f->records[p->idx[k]];
        st = pl_data_render(&ids, &mask, p->f->format, r, tok, o->train_on_prompt);
        if (st) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", pl_last_error());
            st = pl_fail(st, "%s:%d: cannot render: %s", p->f->path, (int)r->line, msg);
            break;
        }
        int32_t len = (int32_t)ids.n, cut = 0;
        if (len > o->max_seq_len) { cut = len - o->max_seq_len; len = o->max_seq_len; }
        int32_t nt = 0;
        for (int32_t t = 1; t < len; t++) nt += mask[t] != 0;   /* mask[0] is never a target */
        if (cut) { ds->stats.truncated++; ds->stats.truncated_tokens += cut; }
        if (nt == 0) { ds->stats.no_target++; continue; }
        if (ds->pool_n + len > pcap) {
            int64_t nc = pcap ? pcap : 4096;
            while (nc < ds->pool_n + len) nc *= 2;
            int32_t *ni = ds->ids ? pl_realloc(ds->ids, (size_t)nc * sizeof *ni) : pl_alloc((size_t)nc * sizeof *ni, PL_MEM_DATA);
            if (!ni) { st = pl_fail(PL_ERR_NOMEM, "out of memory for dataset tokens"); break; }
            ds->ids = ni;
            uint8_t *nm = ds->mask ? pl_realloc(ds->mask, (size_t)nc) : pl_alloc((size_t)nc, PL_MEM_DATA);
            if (!nm) { st = pl_fail(PL_ERR_NOMEM, "out of memory for dataset masks"); break; }
            ds->mask = nm;
            pcap = nc;
        }
        struct pl_data_example *e = &ds->ex[ds->n];
        e->file = p->file;
        e->line = r->line;
        e->len = len;
        e->n_target = nt;
        e->truncated = cut;
        e->off = ds->pool_n;
        memcpy(ds->ids + ds->pool_n, ids.v, (size_t)len * sizeof *ids.v);
        memcpy(ds->mask + ds->pool_n, mask, (size_t)len);
        ds->pool_n += len;
        ds->stats.target_tokens += nt;
        lens[ds->n++] = len;
    }
    pl_data_ids_free(&ids);
    pl_free(mask);
    if (st == PL_OK) {
        int32_t nt = ds->stats.truncated, nn = ds->stats.no_target;
        int64_t ttok = ds->stats.truncated_tokens, tt = ds->stats.target_tokens;
        pl_data_stats_compute(&ds->stats, lens, ds->n);
        ds->stats.truncated = nt;
        ds->stats.no_target = nn;
        ds->stats.truncated_tokens = ttok;
        ds->stats.target_tokens = tt;
    }
    pl_free(lens);
    return st;
}

/* Duplicates within each part and overlap between them. */
static enum pl_status find_duplicates(struct pl_dataset *ds[2], const struct part parts[2], int nparts)
{
    int32_t total = 0;
    for (int s = 0; s < nparts; s++) total += parts[s].n;
    if (total == 0) return PL_OK;
    struct keyed *k = pl_calloc((size_t)total, sizeof *k, PL_MEM_WORKSPACE);
    if (!k) return pl_fail(PL_ERR_NOMEM, "out of memory");
    enum pl_status st = PL_OK;
    int32_t m = 0;
    for (int s = 0; s < nparts && st == PL_OK; s++)
        for (int32_t i = 0; i < parts[s].n; i++) {
            const struct pl_data_record *r = &parts[s].f->records[parts[s].idx[i]];
            k[m].key = record_key(r, &k[m].len);
            if (!k[m].key) { st = pl_fail(PL_ERR_NOMEM, "out of memory"); break; }
            k[m].h = fnv1a(k[m].key, k[m].len);
            k[m].split = s;
            k[m].idx = i;
            k[m].line = r->line;
            m++;
        }
    if (st == PL_OK) {
        qsort(k, (size_t)m, sizeof *k, cmp_keyed);
        for (int s = 0; s < nparts; s++) {
            ds[s]->dup_pairs = pl_calloc(PL_DATA_MAX_DUP_PAIRS, sizeof *ds[s]->dup_pairs, PL_MEM_DATA);
            if (!ds[s]->dup_pairs) { st = pl_fail(PL_ERR_NOMEM, "out of memory"); break; }
        }
        for (int32_t i = 0; i < m && st == PL_OK;) {
            int32_t j = i + 1;
            while (j < m && same_key(&k[i], &k[j])) j++;
            int in[2] = { 0, 0 };
            int32_t first_line[2] = { 0, 0 };
            for (int32_t q = i; q < j; q++) {
                int s = k[q].split;
                if (in[s]++ == 0) { first_line[s] = k[q].line; continue; }
                ds[s]->duplicates++;
                if (ds[s]->n_dup_pairs < PL_DATA_MAX_DUP_PAIRS) {
                    ds[s]->dup_pairs[ds[s]->n_dup_pairs][0] = k[q].line;
                    ds[s]->dup_pairs[ds[s]->n_dup_pairs][1] = first_line[s];
                    ds[s]->n_dup_pairs++;
                }
            }
            if (nparts == 2 && in[0] && in[1]) { ds[0]->overlap += in[0]; ds[1]->overlap += in[1]; }
            i = j;
        }
    }
    for (int32_t i = 0; i < m; i++) pl_free(k[i].key);
    pl_free(k);
    return st;
}

static int cmp_i32_asc(const void *a, const void *b) { return cmp_i32(a, b); }

enum pl_status pl_dataset_build(struct pl_dataset **train_out, struct pl_dataset **valid_out,
                                const struct pl_data_file *f, const struct pl_data_file *vf,
                                const struct pl_data_tokenizer *tok,
                                const struct pl_data_build_opts *o)
{
    *train_out = NULL;
    if (valid_out) *valid_out = NULL;
    if (!tok || !tok->encode) return pl_fail(PL_ERR_ARG, "%s: a tokenizer is needed to build a dataset", f->path);
    if (o->max_seq_len < 2) return pl_fail(PL_ERR_ARG, "max_seq_len must be at least 2 (got %d)", (int)o->max_seq_len);
    if (!(o->valid_fraction >= 0 && o->valid_fraction < 1))
        return pl_fail(PL_ERR_ARG, "valid_fraction must be in [0, 1) (got %g)", o->valid_fraction);
    if (vf && o->valid_fraction > 0)
        return pl_fail(PL_ERR_ARG, "give a validation file or valid_fraction, not both");
    if ((vf || o->valid_fraction > 0) && !valid_out)
        return pl_fail(PL_ERR_ARG, "a validation split was asked for but there is nowhere to put it");
    enum pl_status st = check_issues(f, o->skip_bad);
    if (st == PL_OK && vf) st = check_issues(vf, o->skip_bad);
    if (st) return st;
    if (f->n_records == 0) return pl_fail(PL_ERR_FORMAT, "%s: no usable records", f->path);
    if (vf && vf->n_records == 0) return pl_fail(PL_ERR_FORMAT, "%s: no usable records", vf->path);
    if (vf && vf->format != f->format)
        return pl_fail(PL_ERR_FORMAT, "%s is %s data but %s is %s data", vf->path, pl_data_format_name(vf->format),
                       f->path, pl_data_format_name(f->format));

    struct part parts[2] = { { f, 0, NULL, 0 }, { vf ? vf : f, vf ? 1 : 0, NULL, 0 } };
    int nparts = (vf || o->valid_fraction > 0) ? 2 : 1;
    parts[0].idx = pl_alloc((size_t)f->n_records * sizeof(int32_t), PL_MEM_WORKSPACE);
    if (!parts[0].idx) return pl_fail(PL_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < f->n_records; i++) parts[0].idx[i] = i;
    parts[0].n = f->n_records;
    if (vf) {
        parts[1].idx = pl_alloc((size_t)vf->n_records * sizeof(int32_t), PL_MEM_WORKSPACE);
        if (!parts[1].idx) { pl_free(parts[0].idx); return pl_fail(PL_ERR_NOMEM, "out of memory"); }
        for (int32_t i = 0; i < vf->n_records; i++) parts[1].idx[i] = i;
        parts[1].n = vf->n_records;
    } else if (o->valid_fraction > 0) {
        /* A seeded permutation picks the validation records; each part keeps file order. */
        int32_t n = f->n_records;
        int32_t nv = (int32_t)floor(o->valid_fraction * n + 0.5);
        if (nv < 1) nv = 1;
        if (nv > n - 1) {
            pl_free(parts[0].idx);
            return pl_fail(PL_ERR_ARG, "%s: %d records are too few to split with valid_fraction %g", f->path, (int)n, o->valid_fraction);
        }
        struct pl_data_rng rng;
        pl_data_rng_seed(&rng, o->seed ^ 0x5EED5A1D0F00D5EDULL);
        pl_data_shuffle_i32(&rng, parts[0].idx, n);
        parts[1].idx = pl_alloc((size_t)nv * sizeof(int32_t), PL_MEM_WORKSPACE);
        if (!parts[1].idx) { pl_free(parts[0].idx); return pl_fail(PL_ERR_NOMEM, "out of memory"); }
        memcpy(parts[1].idx, parts[0].idx, (size_t)nv * sizeof(int32_t));
        memmove(parts[0].idx, parts[0].idx + nv, (size_t)(n - nv) * sizeof(int32_t));
        parts[0].n = n - nv;
        parts[1].n = nv;
        qsort(parts[0].idx, (size_t)parts[0].n, sizeof(int32_t), cmp_i32_asc);
        qsort(parts[1].idx, (size_t)parts[1].n, sizeof(int32_t), cmp_i32_asc);
    }

    struct pl_dataset *ds[2] = { NULL, NULL };
    for (int s = 0; s < nparts && st == PL_OK; s++)
        st = build_part(&ds[s], &parts[s], parts[s].f->path, tok, o);
    if (st == PL_OK) st = copy_issues(ds[0], f);
    if (st == PL_OK && vf) st = copy_issues(ds[1], vf);
    if (st == PL_OK) {
        ds[0]->n_seen = f->n_seen;
        if (nparts == 2) ds[1]->n_seen = vf ? vf->n_seen : parts[1].n;
        st = find_duplicates(ds, parts, nparts);
    }
    if (st == PL_OK && ds[0]->n == 0)
        st = pl_fail(PL_ERR_FORMAT, "%s: no example has a token to train on after truncation to max_seq_len %d",
                     f->path, (int)o->max_seq_len);
    if (st == PL_OK && nparts == 2 && ds[1]->n == 0)
        st = pl_fail(PL_ERR_FORMAT, "%s: no validation example has a token to train on after truncation to max_seq_len %d",
                     parts[1].f->path, (int)o->max_seq_len);
    pl_free(parts[0].idx);
    pl_free(parts[1].idx);
    if (st) { pl_dataset_free(ds[0]); pl_dataset_free(ds[1]); return st; }
    *train_out = ds[0];
    if (valid_out) *valid_out = ds[1];
    return PL_OK;
}
