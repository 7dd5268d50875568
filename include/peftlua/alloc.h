/* alloc.h — the one counting allocator.
 *
 * Every engine allocation goes through pl_alloc() with a category. Current and peak bytes per
 * category (and in total) are what the memory profiler, the memory model and the auto-sizer
 * read. Blocks are 64-byte aligned. Memory mapped from files is not allocated here but is
 * accounted with pl_mem_track() under PL_MEM_MAPPED.
 *
 * A budget (pl_mem_set_budget) makes allocations beyond it fail with NULL, as a real
 * allocation failure would; pl_mem_fail_after() injects a failure for tests.
 *
 * The profiler's timeline: pl_mem_mark("step 12") appends a snapshot — per-category current
 * bytes, the per-category and total peak since the previous mark (so a step's transient
 * workspace shows even though it is freed by the time of the mark), process RSS — to a
 * bounded in-memory timeline. The allocation path pays nothing for it: it keeps one peak per
 * counter as before, and a mark folds that "window" peak into the long-term one and restarts
 * it. The timeline holds at most `cap` entries (default PL_MEM_TIMELINE_CAP); when full, each
 * pair of neighbouring entries is merged into one (peaks: the larger; current, RSS, time and
 * label: the later) and every entry from then on covers twice as many marks (the stride), so a
 * 100k-step run keeps an even overview of the whole run in fixed memory, peaks never lost.
 * Marks are meant to be taken between steps from one thread; they take a mutex among
 * themselves and the readers, never on the allocation path.
 */
#ifndef PEFTLUA_ALLOC_H
#define PEFTLUA_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

enum pl_mem_cat {
    PL_MEM_WEIGHTS = 0,
    PL_MEM_ADAPTERS,
    PL_MEM_GRADS,
    PL_MEM_OPTIM,
    PL_MEM_ACTIVATIONS,
    PL_MEM_WORKSPACE,
    PL_MEM_DATA,      /* tokenizers, datasets, metadata, misc long-lived engine objects */
    PL_MEM_MAPPED,    /* file mappings (tracked, not allocated here) */
    PL_MEM_NCAT
};

/* Overflow-checked size arithmetic for every size that comes from a file: each returns 1 and
 * stores the product/sum when it fits, 0 (leaving *out alone) when it would overflow. */
static inline int pl_mul_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}
static inline int pl_mul3_size(size_t a, size_t b, size_t c, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r)) return 0;
    *out = r;
    return 1;
}
static inline int pl_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}
static inline int pl_add_i64(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}

void *pl_alloc(size_t nbytes, enum pl_mem_cat cat);   /* uninitialised, 64-byte aligned */
void *pl_calloc(size_t n, size_t size, enum pl_mem_cat cat);
void *pl_realloc(void *p, size_t nbytes);             /* keeps the block's category */
char *pl_strdup(const char *s, enum pl_mem_cat cat);
void  pl_free(void *p);                               /* NULL is fine */
size_t pl_alloc_size(const void *p);                  /* requested size of a live block */

/* Account bytes not allocated here (mmap). delta may be negative. */
void pl_mem_track(enum pl_mem_cat cat, int64_t delta);

int64_t pl_mem_current(enum pl_mem_cat cat);
int64_t pl_mem_peak(enum pl_mem_cat cat);
int64_t pl_mem_current_total(void);   /* all categories except PL_MEM_MAPPED */
int64_t pl_mem_peak_total(void);      /* peak of that sum */
void    pl_mem_reset_peak(void);      /* peaks := current */
const char *pl_mem_cat_name(enum pl_mem_cat cat);   /* "weights", "adapters", ... */
int     pl_mem_cat_from_name(const char *name);     /* -1 if unknown */

/* Budget on the tracked total (excluding mapped); 0 = unlimited. */
void    pl_mem_set_budget(int64_t bytes);
int64_t pl_mem_budget(void);
/* Make the n-th next allocation fail (n >= 1); 0 disables. For tests of recovery paths. */
void    pl_mem_fail_after(int64_t n);

/* Exact-size blocks (no rounding to 64 bytes), so that AddressSanitizer catches a read one
 * byte past any block: the fuzzers (tests/fuzz/) turn this on; off by default. */
void    pl_mem_set_exact(int on);

/* Process resident set size in bytes (current and peak), -1 where unknown. */
int64_t pl_mem_rss(void);
int64_t pl_mem_rss_peak(void);

/* ---- timeline ---- */
#define PL_MEM_TIMELINE_CAP 1024
#define PL_MEM_LABEL_MAX 48

struct pl_mem_snap {
    double  t;                          /* seconds since the timeline's first mark */
    int64_t first, last;                /* 1-based indices of the marks this entry covers */
    char    label[PL_MEM_LABEL_MAX];    /* the last mark's label (truncated) */
    int64_t current[PL_MEM_NCAT];       /* bytes at the last mark */
    int64_t peak[PL_MEM_NCAT];          /* highest between the mark before `first` and `last` */
    int64_t current_total, peak_total;  /* the same over all categories except mapped */
    int64_t rss, rss_peak;              /* process RSS at the mark; its peak since the start */
};

/* Take a snapshot (label may be NULL: ""); *out (if not NULL) receives this mark's own entry,
 * before any merging. Peaks of the next window start at the current bytes. Allocates the
 * timeline (PL_MEM_DATA, cap * sizeof(struct pl_mem_snap)) on the first mark; if that fails
 * (a tight budget), *out is still filled and the window restarted, but the entry is not kept
 * and PL_ERR_NOMEM is returned; the next mark tries again. */
enum pl_status pl_mem_mark(const char *label, struct pl_mem_snap *out);
size_t  pl_mem_timeline_len(void);
/* Copy entry i (0 = oldest) into *out; PL_ERR_ARG if i >= len. */
enum pl_status pl_mem_timeline_get(size_t i, struct pl_mem_snap *out);
void    pl_mem_timeline_clear(void);              /* entries dropped, stride 1, clock restarts */
/* Cap (an even number >= 2); clears the timeline. PL_ERR_ARG otherwise. */
enum pl_status pl_mem_timeline_set_cap(size_t cap);
size_t  pl_mem_timeline_cap(void);
int64_t pl_mem_timeline_stride(void);             /* marks per entry now (1, 2, 4, ...) */
int64_t pl_mem_timeline_marks(void);              /* marks taken since the last clear */

/* The profiler as one JSON document (src/train/memprof.c): categories, current and peak bytes by
 * category and total, budget, rss, rss_peak, and the timeline. Caller frees with pl_free();
 * NULL (message set) when out of memory. */
char *pl_mem_json(int pretty);

#endif
