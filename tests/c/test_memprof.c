/* test_memprof.c — the memory profiler's timeline (src/core/alloc.c) and JSON export
 * (src/train/memprof.c): exact window peaks with blocks allocated and freed from OpenMP threads,
 * pairwise downsampling past the cap, the JSON document read back through json.h, and a mark
 * whose timeline cannot be allocated. Owner: memprof. */
#include <omp.h>
#include "pl_test.h"
#include "peftlua/json.h"

/* Every thread takes `per` blocks of `sz` bytes, all threads hold them at a barrier, then
 * free them: the window's workspace peak is exactly base + threads * per * sz, whatever the
 * interleaving, if the counters are updated atomically. */
static void test_threads_exact_window_peak(void **state)
{
    (void)state;
    enum { PER = 64, SZ = 1000 };
    pl_mem_timeline_clear();
    struct pl_mem_snap base, s;
    assert_int_equal(pl_mem_mark("warm", NULL), PL_OK);
    assert_int_equal(pl_mem_mark("base", &base), PL_OK);
    int nthreads = 0;
    for (int rep = 0; rep < 20; rep++) {
        #pragma omp parallel num_threads(4)
        {
            void *p[PER];
            for (int i = 0; i < PER; i++) p[i] = pl_alloc(SZ, PL_MEM_WORKSPACE);
            #pragma omp barrier
            #pragma omp single
            nthreads = omp_get_num_threads();
            for (int i = 0; i < PER; i++) pl_free(p[i]);
        }
    }
    assert_int_equal(pl_mem_mark("after", &s), PL_OK);
    assert_int_equal(s.current[PL_MEM_WORKSPACE], base.current[PL_MEM_WORKSPACE]);
    assert_int_equal(s.current_total, base.current_total);
    assert_int_equal(s.peak[PL_MEM_WORKSPACE], base.current[PL_MEM_WORKSPACE] + (int64_t)nthreads * PER * SZ);
    assert_int_equal(s.peak_total, base.current_total + (int64_t)nthreads * PER * SZ);
    assert_true(pl_mem_peak(PL_MEM_WORKSPACE) >= s.peak[PL_MEM_WORKSPACE]);
    /* the next window starts at the current bytes */
    assert_int_equal(pl_mem_mark("idle", &s), PL_OK);
    assert_int_equal(s.peak[PL_MEM_WORKSPACE], s.current[PL_MEM_WORKSPACE]);
}

/* cap 4: marks 1..4 fill it; mark 5 merges pairs (stride 2) and starts a new entry; ... */
static void test_downsampling(void **state)
{
    (void)state;
    assert_int_equal(pl_mem_timeline_set_cap(3), PL_ERR_ARG);
    assert_int_equal(pl_mem_timeline_set_cap(4), PL_OK);
    struct pl_mem_snap s;
    int64_t base = pl_mem_current(PL_MEM_WORKSPACE);
    for (int i = 1; i <= 11; i++) {
        char label[16];
        snprintf(label, sizeof label, "m%d", i);
        void *p = pl_alloc((size_t)i * 100, PL_MEM_WORKSPACE);   /* window i peaks at base + 100 i */
        pl_free(p);
        assert_int_equal(pl_mem_mark(label, NULL), PL_OK);
        assert_true(pl_mem_timeline_len() <= 4);
    }
    /* 11 marks, cap 4: stride 4 after marks 5 and 9 forced merges -> entries [1-4] [5-8] [9-11] */
    assert_int_equal(pl_mem_timeline_stride(), 4);
    assert_int_equal(pl_mem_timeline_marks(), 11);
    assert_int_equal(pl_mem_timeline_len(), 3);
    const int64_t first[3] = { 1, 5, 9 }, last[3] = { 4, 8, 11 };
    for (size_t e = 0; e < 3; e++) {
        assert_int_equal(pl_mem_timeline_get(e, &s), PL_OK);
        assert_int_equal(s.first, first[e]);
        assert_int_equal(s.last, last[e]);
        assert_int_equal(s.peak[PL_MEM_WORKSPACE], base + 100 * last[e]);   /* the largest window */
        char want[16];
        snprintf(want, sizeof want, "m%d", (int)last[e]);
        assert_string_equal(s.label, want);
    }
    assert_int_equal(pl_mem_timeline_get(3, &s), PL_ERR_ARG);
    assert_int_equal(pl_mem_timeline_set_cap(PL_MEM_TIMELINE_CAP), PL_OK);
    assert_int_equal(pl_mem_timeline_len(), 0);
}

static int64_t num(const struct pl_json *o, const char *k)
{
    const struct pl_json *v = pl_json_get(o, k);
    assert_int_equal(pl_json_type(v), PL_JSON_NUMBER);
    return (int64_t)pl_json_num(v, -1);
}

static void test_json_reads_back(void **state)
{
    (void)state;
    pl_mem_timeline_clear();
    for (int i = 0; i < 3; i++) {
        void *p = pl_alloc(4096, PL_MEM_ACTIVATIONS);
        pl_free(p);
        assert_int_equal(pl_mem_mark(i == 1 ? "quote \" and \\ back" : "step", NULL), PL_OK);
    }
    char *text = pl_mem_json(1);
    assert_non_null(text);
    assert_null(strstr(text, "nan"));
    assert_null(strstr(text, "inf"));
    struct pl_json *j = pl_json_parse(text, strlen(text), "memory.json");
    assert_non_null(j);
    assert_int_equal(num(j, "version"), 1);
    assert_int_equal(num(j, "marks"), 3);
    assert_int_equal(pl_json_len(pl_json_get(j, "categories")), PL_MEM_NCAT);
    assert_true(num(j, "rss") > 0);
    assert_true(num(j, "rss_peak") >= num(j, "rss"));
    const struct pl_json *cur = pl_json_get(j, "current");
    int64_t sum = 0;
    for (int c = 0; c < PL_MEM_NCAT; c++)
        if (c != PL_MEM_MAPPED) sum += num(cur, pl_mem_cat_name(c));
    assert_int_equal(num(cur, "total"), sum);
    const struct pl_json *tl = pl_json_get(j, "timeline");
    assert_int_equal(pl_json_len(tl), 3);
    for (int i = 0; i < 3; i++) {
        struct pl_mem_snap s;
        assert_int_equal(pl_mem_timeline_get((size_t)i, &s), PL_OK);
        const struct pl_json *e = pl_json_at(tl, i);
        assert_string_equal(pl_json_get_str(e, "label"), s.label);
        assert_int_equal(num(e, "first"), s.first);
        assert_int_equal(num(pl_json_get(e, "peak"), "activations"), s.peak[PL_MEM_ACTIVATIONS]);
        assert_int_equal(num(pl_json_get(e, "peak"), "total"), s.peak_total);
        assert_int_equal(num(pl_json_get(e, "current"), "total"), s.current_total);
        assert_int_equal(num(e, "rss"), s.rss);
    }
    assert_string_equal(pl_json_get_str(pl_json_at(tl, 1), "label"), "quote \" and \\ back");
    pl_json_free(j);
    pl_free(text);
}

/* The timeline's buffer is allocated by the first mark after a cap change; when that fails
 * the mark says so and the next one works. */
static void test_mark_out_of_memory(void **state)
{
    (void)state;
    assert_int_equal(pl_mem_timeline_set_cap(16), PL_OK);
    void *p = pl_alloc(5000, PL_MEM_WORKSPACE);
    pl_free(p);
    pl_mem_fail_after(1);
    struct pl_mem_snap s;
    assert_int_equal(pl_mem_mark("x", &s), PL_ERR_NOMEM);
    assert_non_null(strstr(pl_last_error(), "memory timeline"));
    assert_int_equal(pl_mem_timeline_len(), 0);
    assert_int_equal(pl_mem_timeline_marks(), 0);
    assert_string_equal(s.label, "x");                   /* the snapshot is still given */
    assert_true(s.peak[PL_MEM_WORKSPACE] >= s.current[PL_MEM_WORKSPACE] + 5000);
    assert_int_equal(pl_mem_mark("y", NULL), PL_OK);
    assert_int_equal(pl_mem_timeline_len(), 1);
    assert_int_equal(pl_mem_timeline_set_cap(PL_MEM_TIMELINE_CAP), PL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_exact_window_peak),
        cmocka_unit_test(test_downsampling),
        cmocka_unit_test(test_json_reads_back),
        cmocka_unit_test(test_mark_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
