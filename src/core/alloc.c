/* alloc.c — the counting allocator and the profiler's timeline (see alloc.h).
 * Owner: memory (profiler: memprof). The JSON export of the profiler is src/train/memprof.c.
 *
 * Each block carries a 64-byte header (requested size, category, magic) in front of the
 * pointer handed out, which keeps the payload 64-byte aligned. Counters are C11 atomics so
 * kernels may allocate from worker threads (OpenMP); the allocation path takes no lock.
 *
 * Peaks come in three layers so that the timeline costs the allocation path nothing:
 *   pl_pk    the peak of the current window (since the last mark or reset) — the only one the
 *            allocation path updates, exactly as before the timeline existed;
 *   pl_hist  the highest earlier window since the last pl_mem_reset_peak;
 *   pl_win   what a pl_mem_reset_peak inside the window took away from pl_pk, so that the
 *            window's peak in the next mark still covers it.
 * pl_mem_peak() = max(pl_hist, pl_pk). A mark exchanges pl_pk for the current bytes (the next
 * window starts there). An allocation on another thread while a mark runs is counted in one
 * of the two windows, possibly with its peak attributed to the later one.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
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
static _Atomic int64_t pl_hist[PL_MEM_NCAT], pl_total_hist;   /* see the top of the file */
static _Atomic int64_t pl_win[PL_MEM_NCAT], pl_total_win;
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

static int pl_exact_blocks;
void pl_mem_set_exact(int on) { pl_exact_blocks = on != 0; }

void *pl_alloc(size_t nbytes, enum pl_mem_cat cat)
{
    if ((unsigned)cat >= PL_MEM_NCAT) cat = PL_MEM_DATA;
    if (nbytes > SIZE_MAX - 2 * PL_HDR || pl_should_fail(nbytes, cat)) return NULL;
    size_t total = PL_HDR + (pl_exact_blocks ? nbytes : ((nbytes + 63) & ~(size_t)63));
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
static int64_t pl_max64(int64_t a, int64_t b) { return a > b ? a : b; }

int64_t pl_mem_peak(enum pl_mem_cat cat)
{
    if ((unsigned)cat >= PL_MEM_NCAT) return 0;
    return pl_max64(atomic_load(&pl_hist[cat]), atomic_load(&pl_pk[cat]));
}
int64_t pl_mem_current_total(void) { return atomic_load(&pl_total); }
int64_t pl_mem_peak_total(void) { return pl_max64(atomic_load(&pl_total_hist), atomic_load(&pl_total_peak)); }

/* Restart one counter's window at `cur`; returns the window's peak. keep_hist: fold it into
 * the long-term peak (a mark), else the long-term peak restarts at cur (a reset) and the
 * window's peak so far is remembered for the next mark. */
static int64_t pl_window_restart(_Atomic int64_t *pk, _Atomic int64_t *hist, _Atomic int64_t *win,
                                 int64_t cur, int keep_hist)
{
    int64_t old = atomic_exchange(pk, cur);
    if (keep_hist) {
        pl_peak_up(hist, old);
        return pl_max64(pl_max64(old, atomic_exchange(win, 0)), cur);
    }
    pl_peak_up(win, old);
    atomic_store(hist, cur);
    return old;
}

void pl_mem_reset_peak(void)
{
    for (int i = 0; i < PL_MEM_NCAT; i++)
        pl_window_restart(&pl_pk[i], &pl_hist[i], &pl_win[i], atomic_load(&pl_cur[i]), 0);
    pl_window_restart(&pl_total_peak, &pl_total_hist, &pl_total_win, atomic_load(&pl_total), 0);
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
    long page = sysconf(_SC_PAGESIZE);
    return ok ? (int64_t)rss * (page > 0 ? page : 4096) : -1;
#endif
}

/* The kernel's high-water mark can trail the current RSS by a few pages (its counters are
 * synced lazily), so the peak reported is never below the current value. */
int64_t pl_mem_rss_peak(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
#if defined(__APPLE__)
    int64_t pk = (int64_t)ru.ru_maxrss;          /* bytes on macOS */
#else
    int64_t pk = (int64_t)ru.ru_maxrss * 1024;   /* KiB on Linux */
#endif
    return pl_max64(pk, pl_mem_rss());
}

/* ---- the timeline ---- */

static pthread_mutex_t pl_tl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pl_mem_snap *pl_tl;        /* pl_tl_cap entries, allocated on the first mark */
static size_t pl_tl_cap = PL_MEM_TIMELINE_CAP, pl_tl_len;
static int64_t pl_tl_stride = 1, pl_tl_marks;
static double pl_tl_t0;

static double pl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* a := a followed by b (b is later): peaks the larger, the rest b's */
static void pl_snap_merge(struct pl_mem_snap *a, const struct pl_mem_snap *b)
{
    int64_t first = a->first;
    int64_t pk[PL_MEM_NCAT], pkt = pl_max64(a->peak_total, b->peak_total);
    int64_t rpk = pl_max64(a->rss_peak, b->rss_peak);
    for (int c = 0; c < PL_MEM_NCAT; c++) pk[c] = pl_max64(a->peak[c], b->peak[c]);
    *a = *b;
    a->first = first;
    memcpy(a->peak, pk, sizeof pk);
    a->peak_total = pkt;
    a->rss_peak = rpk;
}

static int64_t pl_snap_marks(const struct pl_mem_snap *s) { return s->last - s->first + 1; }

enum pl_status pl_mem_mark(const char *label, struct pl_mem_snap *out)
{
    pthread_mutex_lock(&pl_tl_lock);
    if (!pl_tl) pl_tl = pl_alloc(pl_tl_cap * sizeof *pl_tl, PL_MEM_DATA);
    struct pl_mem_snap s;
    memset(&s, 0, sizeof s);
    double now = pl_now();
    if (pl_tl_marks == 0) pl_tl_t0 = now;
    s.t = now - pl_tl_t0;
    s.first = s.last = ++pl_tl_marks;
    snprintf(s.label, sizeof s.label, "%s", label ? label : "");
    for (int c = 0; c < PL_MEM_NCAT; c++) {
        s.current[c] = atomic_load(&pl_cur[c]);
        s.peak[c] = pl_window_restart(&pl_pk[c], &pl_hist[c], &pl_win[c], s.current[c], 1);
    }
    s.current_total = atomic_load(&pl_total);
    s.peak_total = pl_window_restart(&pl_total_peak, &pl_total_hist, &pl_total_win, s.current_total, 1);
    s.rss = pl_mem_rss();
    s.rss_peak = pl_mem_rss_peak();
    if (out) *out = s;
    if (!pl_tl) {   /* the snapshot is still returned and the window restarted */
        pl_tl_marks--;
        pthread_mutex_unlock(&pl_tl_lock);
        return pl_fail(PL_ERR_NOMEM, "memory timeline: cannot allocate %zu entries (%zu bytes); mark '%s' not kept",
                       pl_tl_cap, pl_tl_cap * sizeof *pl_tl, s.label);
    }

    if (pl_tl_len > 0 && pl_snap_marks(&pl_tl[pl_tl_len - 1]) < pl_tl_stride) {
        pl_snap_merge(&pl_tl[pl_tl_len - 1], &s);
    } else {
        if (pl_tl_len == pl_tl_cap) {
            /* Every entry covers `stride` marks here (one is appended only when the last is
             * full), so after merging pairs every entry covers 2 * stride. */
            for (size_t i = 0; i < pl_tl_cap / 2; i++) {
                pl_tl[i] = pl_tl[2 * i];
                pl_snap_merge(&pl_tl[i], &pl_tl[2 * i + 1]);
            }
            pl_tl_len = pl_tl_cap / 2;
            pl_tl_stride *= 2;
        }
        pl_tl[pl_tl_len++] = s;
    }
    pthread_mutex_unlock(&pl_tl_lock);
    return PL_OK;
}

size_t pl_mem_timeline_len(void)
{
    pthread_mutex_lock(&pl_tl_lock);
    size_t n = pl_tl_len;
    pthread_mutex_unlock(&pl_tl_lock);
    return n;
}

enum pl_status pl_mem_timeline_get(size_t i, struct pl_mem_snap *out)
{
    pthread_mutex_lock(&pl_tl_lock);
    size_t n = pl_tl_len;
    if (i < n) *out = pl_tl[i];
    pthread_mutex_unlock(&pl_tl_lock);
    if (i >= n) return pl_fail(PL_ERR_ARG, "memory timeline: entry %zu of %zu", i, n);
    return PL_OK;
}

static void pl_tl_clear_locked(void)
{
    pl_tl_len = 0;
    pl_tl_stride = 1;
    pl_tl_marks = 0;
    /* the next mark's window starts now */
    for (int c = 0; c < PL_MEM_NCAT; c++)
        pl_window_restart(&pl_pk[c], &pl_hist[c], &pl_win[c], atomic_load(&pl_cur[c]), 1);
    pl_window_restart(&pl_total_peak, &pl_total_hist, &pl_total_win, atomic_load(&pl_total), 1);
}

void pl_mem_timeline_clear(void)
{
    pthread_mutex_lock(&pl_tl_lock);
    pl_tl_clear_locked();
    pthread_mutex_unlock(&pl_tl_lock);
}

enum pl_status pl_mem_timeline_set_cap(size_t cap)
{
    if (cap < 2 || cap % 2 != 0 || cap > ((size_t)1 << 24))
        return pl_fail(PL_ERR_ARG, "memory timeline: cap %zu must be an even number in 2..16777216", cap);
    pthread_mutex_lock(&pl_tl_lock);
    pl_free(pl_tl);   /* reallocated, at the new size, by the next mark */
    pl_tl = NULL;
    pl_tl_cap = cap;
    pl_tl_clear_locked();
    pthread_mutex_unlock(&pl_tl_lock);
    return PL_OK;
}

size_t pl_mem_timeline_cap(void)
{
    pthread_mutex_lock(&pl_tl_lock);
    size_t c = pl_tl_cap;
    pthread_mutex_unlock(&pl_tl_lock);
    return c;
}

int64_t pl_mem_timeline_stride(void)
{
    pthread_mutex_lock(&pl_tl_lock);
    int64_t s = pl_tl_stride;
    pthread_mutex_unlock(&pl_tl_lock);
    return s;
}

int64_t pl_mem_timeline_marks(void)
{
    pthread_mutex_lock(&pl_tl_lock);
    int64_t m = pl_tl_marks;
    pthread_mutex_unlock(&pl_tl_lock);
    return m;
}
