/* data_batch.c — the data order: seeded draws, shuffling, length-bucketed or packed batches,
 * and an iterator whose position can be saved and restored exactly.
 *
 * Owner: data. The RNG is rng.h's xoshiro256** (Blackman & Vigna, 2018) seeded through
 * splitmix64, with bounded draws by rejection, so an order depends only on the seed — never
 * on the platform's rand() or on floating point.
 *
 * One epoch's plan, drawn when the epoch starts:
 *   1. order = 0..n-1, Fisher–Yates shuffled when shuffle is on;
 *   2a. unpacked: within windows of bucket*batch_size consecutive examples, sort by length
 *       (ties by position) so a batch holds similar lengths and pads little; cut into
 *       batches; shuffle the batch order when shuffle is on;
 *   2b. packed: fill rows of seq_len positions greedily in order with whole examples (an
 *       example of L tokens takes L-1 positions: every token but the last is an input);
 *       consecutive batch_size rows make a batch.
 * The state saved is (epoch, index of the next batch, RNG state before the plan was drawn);
 * restoring redraws the same plan and continues at the same batch.
 */
#include <stdlib.h>
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/data.h"
#include "peftlua/rng.h"

/* ---------------------------------------------------------------- RNG */

/* peftlua's one generator (rng.h) over the same four words: copied in and out so that
 * struct pl_data_rng stays its own type in data.h. */
void pl_data_rng_seed(struct pl_data_rng *r, uint64_t seed)
{
    struct pl_rng g;
    _Static_assert(sizeof g.s == sizeof r->s, "pl_data_rng and pl_rng hold the same state");
    pl_rng_seed(&g, seed);
    memcpy(r->s, g.s, sizeof r->s);
}

uint64_t pl_data_rng_next(struct pl_data_rng *r)
{
    struct pl_rng g;
    memcpy(g.s, r->s, sizeof g.s);
    const uint64_t x = pl_rng_next(&g);
    memcpy(r->s, g.s, sizeof r->s);
    return x;
}

uint64_t pl_data_rng_below(struct pl_data_rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t threshold = (0 - n) % n;   /* 2^64 mod n: reject the short last cycle */
    for (;;) {
        uint64_t x = pl_data_rng_next(r);
        if (x >= threshold) return x % n;
    }
}

double pl_data_rng_uniform(struct pl_data_rng *r)
{
    return (double)(pl_data_rng_next(r) >> 11) * 0x1.0p-53;
}

void pl_data_shuffle_i32(struct pl_data_rng *r, int32_t *v, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)pl_data_rng_below(r, (uint64_t)i + 1);
        int32_t t = v[i]; v[i] = v[j]; v[j] = t;
    }
}

/* ---------------------------------------------------------------- iterator */

struct pl_data_iter {
    const struct pl_dataset *ds;
    struct pl_data_iter_opts o;
    int32_t tmax;                 /* widest batch (columns) */
    struct pl_data_rng rng;
    struct pl_data_iter_state st;
    /* the current epoch's plan */
    int32_t *arr;                 /* example indices in consumption order */
    int32_t *row_start;           /* rows over arr, n_rows + 1 */
    int32_t *batch_start;         /* batches over rows, n_batches + 1 */
    int32_t n_rows, n_batches;
    /* scratch */
    int32_t *tmp_arr, *tmp_rows, *perm;
    int32_t *ids, *targets;
};

struct pl_data_iter_opts pl_data_iter_defaults(void)
{
    struct pl_data_iter_opts o = { .batch_size = 4, .shuffle = 1, .packing = 0, .seq_len = 0,
                                   .bucket = 16, .drop_last = 0, .seed = 42 };
    return o;
}

void pl_data_iter_free(struct pl_data_iter *it)
{
    if (!it) return;
    pl_free(it->arr); pl_free(it->row_start); pl_free(it->batch_start);
    pl_free(it->tmp_arr); pl_free(it->tmp_rows); pl_free(it->perm);
    pl_free(it->ids); pl_free(it->targets);
    pl_free(it);
}

struct lenpos { int32_t len, pos, ex; };

static int cmp_lenpos(const void *a, const void *b)
{
    const struct lenpos *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos - y->pos;
}

/* Draw the plan for the epoch starting now (advances it->rng). */
static enum pl_status plan_epoch(struct pl_data_iter *it)
{
    const struct pl_dataset *ds = it->ds;
    int32_t n = ds->n, B = it->o.batch_size;
    int32_t *order = it->tmp_arr;
    for (int32_t i = 0; i < n; i++) order[i] = i;
    if (it->o.shuffle) pl_data_shuffle_i32(&it->rng, order, n);
    int32_t nr = 0;
    if (it->o.packing) {
        int32_t cap = it->tmax, used = 0;
        for (int32_t i = 0; i < n; i++) {
            int32_t need = ds->ex[order[i]].len - 1;
            if (i == 0 || used + need > cap) { it->tmp_rows[nr++] = i; used = 0; }
            used += need;
        }
    } else {
        if (it->o.bucket > 0) {
            int64_t w = (int64_t)B * it->o.bucket;
            struct lenpos *lp = pl_alloc((size_t)(w < n ? w : n) * sizeof *lp + 1, PL_MEM_WORKSPACE);
            if (!lp) return pl_fail(PL_ERR_NOMEM, "out of memory planning batches");
            for (int64_t s = 0; s < n; s += w) {
                int32_t m = (int32_t)(s + w <= n ? w : n - s);
                for (int32_t k = 0; k < m; k++) { lp[k].ex = order[s + k]; lp[k].len = ds->ex[lp[k].ex].len; lp[k].pos = k; }
                qsort(lp, (size_t)m, sizeof *lp, cmp_lenpos);
                for (int32_t k = 0; k < m; k++) order[s + k] = lp[k].ex;
            }
            pl_free(lp);
        }
        for (int32_t i = 0; i < n; i++) it->tmp_rows[nr++] = i;
    }
    it->tmp_rows[nr] = n;
    /* batches of B rows over the rows */
    int32_t nb = (nr + B - 1) / B;
    if (it->o.drop_last && nr % B) nb = nr / B;
    if (nb == 0)
        return pl_fail(PL_ERR_ARG, "%s: %d row%s cannot fill one batch of %d (drop_last)", ds->path, (int)nr,
                       nr == 1 ? "" : "s", (int)B);
    for (int32_t k = 0; k < nb; k++) it->perm[k] = k;
    if (it->o.shuffle && !it->o.packing) pl_data_shuffle_i32(&it->rng, it->perm, nb);
    /* lay the batches out in consumption order */
    int32_t at = 0, r = 0;
    it->batch_start[0] = 0;
    for (int32_t k = 0; k < nb; k++) {
        int32_t b = it->perm[k];
        int32_t r0 = b * B, r1 = r0 + B < nr ? r0 + B : nr;
        for (int32_t q = r0; q < r1; q++) {
            it->row_start[r++] = at;
            for (int32_t e = it->tmp_rows[q]; e < it->tmp_rows[q + 1]; e++) it->arr[at++] = order[e];
        }
        it->batch_start[k + 1] = r;
    }
    it->row_start[r] = at;
    it->n_rows = r;
    it->n_batches = nb;
    return PL_OK;
}

struct pl_data_iter *pl_data_iter_new(const struct pl_dataset *ds, const struct pl_data_iter_opts *o)
{
    if (!ds || ds->n < 1) { pl_fail(PL_ERR_ARG, "batches: the dataset is empty"); return NULL; }
    if (o->batch_size < 1) { pl_fail(PL_ERR_ARG, "batches: batch_size must be at least 1 (got %d)", (int)o->batch_size); return NULL; }
    if (o->seq_len < 0) { pl_fail(PL_ERR_ARG, "batches: seq_len must be positive (got %d)", (int)o->seq_len); return NULL; }
    if (o->bucket < 0) { pl_fail(PL_ERR_ARG, "batches: bucket must be >= 0 (got %d)", (int)o->bucket); return NULL; }
    int32_t longest = 0;
    for (int32_t i = 0; i < ds->n; i++) if (ds->ex[i].len - 1 > longest) longest = ds->ex[i].len - 1;
    int32_t tmax = o->seq_len ? o->seq_len : (o->packing ? (ds->max_seq_len > longest ? ds->max_seq_len : longest) : longest);
    if (longest > tmax) {
        pl_fail(PL_ERR_ARG, "batches: seq_len %d is shorter than the longest example (%d positions; max_seq_len %d)",
                (int)tmax, (int)longest, (int)ds->max_seq_len);
        return NULL;
    }
    struct pl_data_iter *it = pl_calloc(1, sizeof *it, PL_MEM_DATA);
    if (!it) { pl_fail(PL_ERR_NOMEM, "out of memory"); return NULL; }
    it->ds = ds;
    it->o = *o;
    it->tmax = tmax;
    size_t n = (size_t)ds->n;
    it->arr = pl_alloc(n * sizeof(int32_t), PL_MEM_DATA);
    it->tmp_arr = pl_alloc(n * sizeof(int32_t), PL_MEM_DATA);
    it->row_start = pl_alloc((n + 1) * sizeof(int32_t), PL_MEM_DATA);
    it->tmp_rows = pl_alloc((n + 1) * sizeof(int32_t), PL_MEM_DATA);
    it->batch_start = pl_alloc((n + 1) * sizeof(int32_t), PL_MEM_DATA);
    it->perm = pl_alloc((n + 1) * sizeof(int32_t), PL_MEM_DATA);
    size_t cells = (size_t)o->batch_size * (size_t)tmax;
    it->ids = pl_alloc(cells * sizeof(int32_t), PL_MEM_DATA);
    it->targets = pl_alloc(cells * sizeof(int32_t), PL_MEM_DATA);
    if (!it->arr || !it->tmp_arr || !it->row_start || !it->tmp_rows || !it->batch_start || !it->perm ||
        !it->ids || !it->targets) {
        pl_data_iter_free(it);
        pl_fail(PL_ERR_NOMEM, "out of memory for a batch iterator");
        return NULL;
    }
    pl_data_rng_seed(&it->rng, o->seed);
    memcpy(it->st.rng, it->rng.s, sizeof it->st.rng);
    if (plan_epoch(it) != PL_OK) { pl_data_iter_free(it); return NULL; }
    return it;
}

int64_t pl_data_iter_batches_per_epoch(const struct pl_data_iter *it)
{
    return it->n_batches;   /* fixed for unpacked data; packed: of the current epoch */
}

void pl_data_iter_get_state(const struct pl_data_iter *it, struct pl_data_iter_state *st)
{
    *st = it->st;
}

enum pl_status pl_data_iter_set_state(struct pl_data_iter *it, const struct pl_data_iter_state *st)
{
    if (st->epoch < 0 || st->index < 0)
        return pl_fail(PL_ERR_ARG, "batches: bad iterator state (epoch %lld, index %lld)",
                       (long long)st->epoch, (long long)st->index);
    if ((st->rng[0] | st->rng[1] | st->rng[2] | st->rng[3]) == 0)
        return pl_fail(PL_ERR_ARG, "batches: bad iterator state (all-zero RNG state)");
    struct pl_data_iter_state saved = it->st;
    struct pl_data_rng saved_rng = it->rng;
    memcpy(it->rng.s, st->rng, sizeof it->rng.s);
    enum pl_status s = plan_epoch(it);
    if (s == PL_OK && st->index > it->n_batches)
        s = pl_fail(PL_ERR_ARG, "batches: iterator state index %lld is past the %d batches of an epoch",
                    (long long)st->index, (int)it->n_batches);
    if (s != PL_OK) {   /* put the old plan back */
        it->rng = saved_rng;
        memcpy(it->rng.s, saved.rng, sizeof it->rng.s);
        plan_epoch(it);
        it->rng = saved_rng;
        it->st = saved;
        return s;
    }
    it->st = *st;
    return PL_OK;
}

enum pl_status pl_data_iter_next(struct pl_data_iter *it, struct pl_data_batch *b)
{
    if (it->st.index >= it->n_batches) {
        memcpy(it->st.rng, it->rng.s, sizeof it->st.rng);
        enum pl_status s = plan_epoch(it);
        if (s) return s;
        it->st.epoch++;
        it->st.index = 0;
    }
    const struct pl_dataset *ds = it->ds;
    int32_t k = (int32_t)it->st.index;
    int32_t r0 = it->batch_start[k], r1 = it->batch_start[k + 1];
    int32_t rows = r1 - r0;
    /* width: fixed, or the longest row of this batch */
    int32_t T = it->o.seq_len;
    if (!T) {
        if (it->o.packing) T = it->tmax;
        else
            for (int32_t r = r0; r < r1; r++) {
                int32_t w = 0;
                for (int32_t e = it->row_start[r]; e < it->row_start[r + 1]; e++) w += ds->ex[it->arr[e]].len - 1;
                if (w > T) T = w;
            }
    }
    int64_t nt = 0;
    for (int32_t r = r0; r < r1; r++) {
        int32_t *ids = it->ids + (size_t)(r - r0) * T, *tg = it->targets + (size_t)(r - r0) * T;
        int32_t p = 0;
        for (int32_t e = it->row_start[r]; e < it->row_start[r + 1]; e++) {
            const struct pl_data_example *x = &ds->ex[it->arr[e]];
            const int32_t *xi = ds->ids + x->off;
            const uint8_t *xm = ds->mask + x->off;
            for (int32_t t = 0; t + 1 < x->len; t++, p++) {
                ids[p] = xi[t];
                tg[p] = xm[t + 1] ? xi[t + 1] : -1;
                nt += xm[t + 1] != 0;
            }
        }
        for (; p < T; p++) { ids[p] = ds->pad_id; tg[p] = -1; }
    }
    b->batch = rows;
    b->seq = T;
    b->ids = it->ids;
    b->targets = it->targets;
    b->n_target = nt;
    b->epoch = it->st.epoch;
    b->index = it->st.index;
    b->examples = it->arr + it->row_start[r0];
    b->n_examples = it->row_start[r1] - it->row_start[r0];
    it->st.index++;
    return PL_OK;
}
