/* alloc.c — the counting allocator (see alloc.h).
 *
 * Each block carries a 64-byte header (requested size, category, magic) in front of the
 * pointer handed out, which keeps the payload 64-byte aligned. Counters are C11 atomics so
 * kernels may allocate from worker threads.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__APPLE__)
#include <mach/mach.h>
#include <sys/resource.h>
#else
#include <sys/resource.h>
#endif
#include "peftlua/alloc.h"

#define PL_HDR 64
#define PL_MAGIC 0x706c6d656d616c63ull

struct pl_hdr {
    uint64_t magic;
    uint64_t size;
    uint32_t cat;
};

static _Atomic int64_t pl_cur[PL_MEM_NCAT];
static _Atomic int64_t pl_pk[PL_MEM_NCAT];
static _Atomic int64_t pl_total;
static _Atomic int64_t pl_total_peak;
static _Atomic int64_t pl_budget;
static _Atomic int64_t pl_fail_countdown;

static const char *const pl_cat_names[PL_MEM_NCAT] = {
    "weights", "adapters", "gradients", "optimizer", "activations", "workspace", "data", "mapped"
};

static void pl_peak_up(_Atomic int64_t *peak, int64_t v)
{
    int64_t p = atomic_load(peak);
    while (v > p && !atomic_compare_exchange_weak(peak, &p, v)) {}
}

static void pl_count(enum pl_mem_cat cat, int64_t delta)
{
    int64_t c = atomic_fetch_add(&pl_cur[cat], delta) + delta;
    pl_peak_up(&pl_pk[cat], c);
    if (cat != PL_MEM_MAPPED) {
        int64_t t = atomic_fetch_add(&pl_total, delta) + delta;
        pl_peak_up(&pl_total_peak, t);
    }
}

void pl_mem_track(enum pl_mem_cat cat, int64_t delta)
{
    if ((unsigned)cat < PL_MEM_NCAT) pl_count(cat, delta);
}

static int pl_should_fail(size_t nbytes, enum pl_mem_cat cat)
{
    int64_t n = atomic_load(&pl_fail_countdown);
    if (n > 0) {
        n = atomic_fetch_sub(&pl_fail_countdown, 1);
        if (n == 1) return 1;
    }
    int64_t b = atomic_load(&pl_budget);
    if (b > 0 && cat != PL_MEM_MAPPED && atomic_load(&pl_total) + (int64_t)nbytes > b) return 1;
    return 0;
}

void *pl_alloc(size_t nbytes, enum pl_mem_cat cat)
{
    if ((unsigned)cat >= PL_MEM_NCAT) cat = PL_MEM_DATA;
    if (nbytes > SIZE_MAX - 2 * PL_HDR || pl_should_fail(nbytes, cat)) return NULL;
    size_t total = PL_HDR + ((nbytes + 63) & ~(size_t)63);
    void *raw = NULL;
    if (posix_memalign(&raw, 64, total ? total : 64) != 0) return NULL;
    struct pl_hdr *h = raw;
    h->magic = PL_MAGIC;
    h->size = nbytes;
    h->cat = (uint32_t)cat;
    pl_count(cat, (int64_t)nbytes);
    return (char *)raw + PL_HDR;
}

void *pl_calloc(size_t n, size_t size, enum pl_mem_cat cat)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = pl_alloc(n * size, cat);
    if (p) memset(p, 0, n * size);
    return p;
}

static struct pl_hdr *pl_hdr_of(const void *p)
{
    struct pl_hdr *h = (struct pl_hdr *)((char *)p - PL_HDR);
    if (h->magic != PL_MAGIC) {
        fprintf(stderr, "peftlua: internal error: pl_free of a block not from pl_alloc\n");
        abort(); /* memory corruption: an internal invariant, not a user error */
    }
    return h;
}

size_t pl_alloc_size(const void *p) { return p ? pl_hdr_of(p)->size : 0; }

void pl_free(void *p)
{
    if (!p) return;
    struct pl_hdr *h = pl_hdr_of(p);
    pl_count((enum pl_mem_cat)h->cat, -(int64_t)h->size);
    h->magic = 0;
    free(h);
}

void *pl_realloc(void *p, size_t nbytes)
{
    if (!p) return pl_alloc(nbytes, PL_MEM_DATA);
    struct pl_hdr *h = pl_hdr_of(p);
    void *q = pl_alloc(nbytes, (enum pl_mem_cat)h->cat);
    if (!q) return NULL;
    memcpy(q, p, h->size < nbytes ? h->size : nbytes);
    pl_free(p);
    return q;
}

char *pl_strdup(const char *s, enum pl_mem_cat cat)
{
    size_t n = strlen(s) + 1;
    char *d = pl_alloc(n, cat);
    if (d) memcpy(d, s, n);
    return d;
}

int64_t pl_mem_current(enum pl_mem_cat cat) { return (unsigned)cat < PL_MEM_NCAT ? atomic_load(&pl_cur[cat]) : 0; }
int64_t pl_mem_peak(enum pl_mem_cat cat) { return (unsigned)cat < PL_MEM_NCAT ? atomic_load(&pl_pk[cat]) : 0; }
int64_t pl_mem_current_total(void) { return atomic_load(&pl_total); }
int64_t pl_mem_peak_total(void) { return atomic_load(&pl_total_peak); }

void pl_mem_reset_peak(void)
{
    for (int i = 0; i < PL_MEM_NCAT; i++) atomic_store(&pl_pk[i], atomic_load(&pl_cur[i]));
    atomic_store(&pl_total_peak, atomic_load(&pl_total));
}

const char *pl_mem_cat_name(enum pl_mem_cat cat) { return (unsigned)cat < PL_MEM_NCAT ? pl_cat_names[cat] : "?"; }

int pl_mem_cat_from_name(const char *name)
{
    for (int i = 0; i < PL_MEM_NCAT; i++)
        if (strcmp(name, pl_cat_names[i]) == 0) return i;
    return -1;
}

void pl_mem_set_budget(int64_t bytes) { atomic_store(&pl_budget, bytes > 0 ? bytes : 0); }
int64_t pl_mem_budget(void) { return atomic_load(&pl_budget); }
void pl_mem_fail_after(int64_t n) { atomic_store(&pl_fail_countdown, n > 0 ? n : 0); }

int64_t pl_mem_rss(void)
{
#if defined(__APPLE__)
    struct mach_task_basic_info info;
    mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
    if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, (task_info_t)&info, &count) != KERN_SUCCESS) return -1;
    return (int64_t)info.resident_size;
#else
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long pages = 0, rss = 0;
    int ok = fscanf(f, "%ld %ld", &pages, &rss) == 2;
    fclose(f);
    return ok ? (int64_t)rss * 4096 : -1;
#endif
}

int64_t pl_mem_rss_peak(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
#if defined(__APPLE__)
    return (int64_t)ru.ru_maxrss;          /* bytes on macOS */
#else
    return (int64_t)ru.ru_maxrss * 1024;   /* KiB on Linux */
#endif
}
