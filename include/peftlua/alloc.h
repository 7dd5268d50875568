/* alloc.h — the one counting allocator.
 *
 * Every engine allocation goes through pl_alloc() with a category. Current and peak bytes per
 * category (and in total) are what the memory profiler, the memory model and the auto-sizer
 * read. Blocks are 64-byte aligned. Memory mapped from files is not allocated here but is
 * accounted with pl_mem_track() under PL_MEM_MAPPED.
 *
 * A budget (pl_mem_set_budget) makes allocations beyond it fail with NULL, as a real
 * allocation failure would; pl_mem_fail_after() injects a failure for tests.
 */
#ifndef PEFTLUA_ALLOC_H
#define PEFTLUA_ALLOC_H

#include <stddef.h>
#include <stdint.h>

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

/* Process resident set size in bytes (current and peak), -1 where unknown. */
int64_t pl_mem_rss(void);
int64_t pl_mem_rss_peak(void);

#endif
