/* memprof.c — the memory profiler as one JSON document (pl_mem_json, see alloc.h).
 * Owner: memprof. The numbers come from the counting allocator and its timeline
 * (src/core/alloc.c); this file only lays them out, through the JSON layer (src/core/json.c), so the
 * document is valid JSON whatever the numbers (the allocator's are integers; -1 means unknown).
 *
 *   { "version": 1, "categories": ["weights", ...],
 *     "current": {"weights": B, ..., "total": B}, "peak": {...same keys...},
 *     "budget": B (the allocator's hard budget; 0 = none),
 *     "default_budget": B (the hardware report's: what auto-sizing uses when none is given),
 *     "rss": B, "rss_peak": B,
 *     "timeline_cap": N, "timeline_stride": S, "marks": M,
 *     "timeline": [ {"t": s, "label": "step 3", "first": i, "last": j,
 *                    "current": {...}, "peak": {...}, "rss": B, "rss_peak": B}, ... ] }
 *
 * "total" excludes the mapped category (as pl_mem_current_total does).
 */
#include <stdio.h>
#include "peftlua/alloc.h"
#include "peftlua/hw.h"
#include "peftlua/json.h"

static void pl_memprof_bytes(struct pl_json *parent, const int64_t *v, int64_t total)
{
    for (int c = 0; c < PL_MEM_NCAT; c++) pl_json_add_num(parent, pl_mem_cat_name(c), (double)v[c]);
    pl_json_add_num(parent, "total", (double)total);
}

char *pl_mem_json(int pretty)
{
    /* the numbers first: building the document allocates (data) */
    int64_t cur[PL_MEM_NCAT], pk[PL_MEM_NCAT];
    for (int c = 0; c < PL_MEM_NCAT; c++) {
        cur[c] = pl_mem_current(c);
        pk[c] = pl_mem_peak(c);
    }
    int64_t cur_total = pl_mem_current_total(), pk_total = pl_mem_peak_total();
    struct pl_json *root = pl_json_new_object();
    if (!root) { pl_fail(PL_ERR_NOMEM, "memory profile: out of memory building JSON"); return NULL; }
    pl_json_add_num(root, "version", 1);
    struct pl_json *cats = pl_json_add_array(root, "categories");
    for (int c = 0; c < PL_MEM_NCAT; c++) pl_json_add_str(cats, NULL, pl_mem_cat_name(c));
    pl_memprof_bytes(pl_json_add_object(root, "current"), cur, cur_total);
    pl_memprof_bytes(pl_json_add_object(root, "peak"), pk, pk_total);
    pl_json_add_num(root, "budget", (double)pl_mem_budget());
    struct pl_hw hw;
    pl_json_add_num(root, "default_budget", pl_hw_query(&hw) == PL_OK ? (double)pl_hw_default_budget(&hw) : 0.0);
    pl_json_add_num(root, "rss", (double)pl_mem_rss());
    pl_json_add_num(root, "rss_peak", (double)pl_mem_rss_peak());
    pl_json_add_num(root, "timeline_cap", (double)pl_mem_timeline_cap());
    pl_json_add_num(root, "timeline_stride", (double)pl_mem_timeline_stride());
    pl_json_add_num(root, "marks", (double)pl_mem_timeline_marks());
    struct pl_json *tl = pl_json_add_array(root, "timeline");
    struct pl_mem_snap s;
    size_t n = pl_mem_timeline_len();
    for (size_t i = 0; i < n && pl_mem_timeline_get(i, &s) == PL_OK; i++) {
        struct pl_json *e = pl_json_add_object(tl, NULL);
        pl_json_add_num(e, "t", s.t);
        pl_json_add_str(e, "label", s.label);
        pl_json_add_num(e, "first", (double)s.first);
        pl_json_add_num(e, "last", (double)s.last);
        pl_memprof_bytes(pl_json_add_object(e, "current"), s.current, s.current_total);
        pl_memprof_bytes(pl_json_add_object(e, "peak"), s.peak, s.peak_total);
        pl_json_add_num(e, "rss", (double)s.rss);
        pl_json_add_num(e, "rss_peak", (double)s.rss_peak);
    }
    char *out = pl_json_print(root, pretty);
    pl_json_free(root);
    if (!out) pl_fail(PL_ERR_NOMEM, "memory profile: out of memory printing JSON");
    return out;
}
