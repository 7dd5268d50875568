/* test_tensor.c — tensors: views share storage, strides, conversion, arithmetic, matmul vs a
 * naive triple loop, memory accounting returns to zero. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "peftlua/quant.h"
#include "peftlua/tensor.h"

static struct pl_tensor *arange(int ndim, const int64_t *shape)
{
    struct pl_tensor *t = pl_tensor_new(PL_F32, ndim, shape, PL_MEM_WORKSPACE);
    assert_non_null(t);
    float *p = pl_tensor_data(t);
    for (int64_t i = 0; i < pl_tensor_numel(t); i++) p[i] = (float)i;
    return t;
}

static void test_views_share_storage(void **state)
{
    (void)state;
    int64_t before = pl_mem_current(PL_MEM_WORKSPACE);
    int64_t sh[3] = { 2, 3, 4 };
    struct pl_tensor *t = arange(3, sh);
    assert_int_equal(pl_mem_current(PL_MEM_WORKSPACE) - before, 24 * 4);
    struct pl_tensor *tr = pl_tensor_transpose(t, 1, 2);    /* [2,4,3] */
    assert_false(pl_tensor_is_contiguous(tr));
    int64_t idx[3] = { 1, 3, 2 };
    assert_float_equal(pl_tensor_get(tr, idx), 1 * 12 + 2 * 4 + 3, 0);
    struct pl_tensor *sel = pl_tensor_select(t, 0, 1);      /* [3,4] = 12..23 */
    struct pl_tensor *nar = pl_tensor_narrow(sel, 1, 1, 2); /* [3,2] */
    float out[6];
    assert_int_equal(pl_tensor_read_f32(nar, out), PL_OK);
    float want[6] = { 13, 14, 17, 18, 21, 22 };
    assert_memory_equal(out, want, sizeof want);
    /* writes through a view are visible in the base */
    int64_t j[2] = { 0, 0 };
    assert_int_equal(pl_tensor_set(nar, j, -5), PL_OK);
    int64_t k[3] = { 1, 0, 1 };
    assert_float_equal(pl_tensor_get(t, k), -5, 0);
    /* views add no storage; releasing the base keeps the storage alive for views */
    assert_int_equal(pl_mem_current(PL_MEM_WORKSPACE) - before, 24 * 4);
    pl_tensor_release(t);
    assert_float_equal(pl_tensor_get(tr, idx), 23, 0);
    pl_tensor_release(tr);
    pl_tensor_release(sel);
    pl_tensor_release(nar);
    assert_int_equal(pl_mem_current(PL_MEM_WORKSPACE), before);
}

static void test_clone_of_strided(void **state)
{
    (void)state;
    int64_t sh[2] = { 3, 5 };
    struct pl_tensor *t = arange(2, sh);
    struct pl_tensor *tr = pl_tensor_transpose(t, 0, 1);
    struct pl_tensor *c = pl_tensor_clone(tr, PL_MEM_WORKSPACE);
    assert_true(pl_tensor_is_contiguous(c));
    const float *p = pl_tensor_data(c);
    for (int i = 0; i < 5; i++)
        for (int r = 0; r < 3; r++) assert_float_equal(p[i * 3 + r], r * 5 + i, 0);
    int64_t bad[1] = { 7 };
    assert_null(pl_tensor_reshape(tr, 1, bad));
    assert_non_null(strstr(pl_last_error(), "contiguous"));
    int64_t ok[2] = { -1, 3 };
    struct pl_tensor *rs = pl_tensor_reshape(c, 2, ok);
    assert_int_equal(rs->shape[0], 5);
    pl_tensor_release(rs);
    pl_tensor_release(c);
    pl_tensor_release(tr);
    pl_tensor_release(t);
}

static void test_convert_roundtrip(void **state)
{
    (void)state;
    int64_t sh[2] = { 4, 64 };
    struct pl_tensor *t = pl_tensor_new(PL_F32, 2, sh, PL_MEM_WORKSPACE);
    float *p = pl_tensor_data(t);
    for (int i = 0; i < 256; i++) p[i] = sinf((float)i * 0.37f) * 3.0f;
    static const enum pl_dtype types[] = { PL_F16, PL_BF16, PL_Q8_0, PL_Q4_0, PL_Q4_1, PL_NF4 };
    /* half the largest code gap times the block scale (absmax 3): NF4 gap 0.3038 → 0.456 */
    static const double tol[] = { 2e-3, 2e-2, 3e-2, 0.45, 0.3, 0.46 };
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        struct pl_tensor *q = pl_tensor_convert(t, types[k], PL_MEM_WEIGHTS);
        assert_non_null(q);
        assert_int_equal(pl_tensor_nbytes(q), pl_dtype_row_bytes(types[k], 256));
        struct pl_tensor *back = pl_tensor_convert(q, PL_F32, PL_MEM_WORKSPACE);
        double d = pl_tensor_max_abs_diff(t, back);
        if (d > tol[k]) print_error("%s: max abs diff %g > %g\n", pl_dtype_info(types[k])->name, d, tol[k]);
        assert_true(d <= tol[k]);
        assert_true(d > 0 || types[k] == PL_F16);
        /* selecting a row of a quantised tensor reads the same values */
        struct pl_tensor *row = pl_tensor_select(q, 0, 2);
        float r[64];
        assert_int_equal(pl_tensor_read_f32(row, r), PL_OK);
        assert_memory_equal(r, (float *)pl_tensor_data(back) + 128, sizeof r);
        pl_tensor_release(row);
        pl_tensor_release(back);
        pl_tensor_release(q);
    }
    int64_t odd[1] = { 33 };
    assert_null(pl_tensor_new(PL_Q8_0, 1, odd, PL_MEM_WEIGHTS));
    assert_non_null(strstr(pl_last_error(), "multiple of 32"));
    pl_tensor_release(t);
}

static void test_matmul_vs_naive(void **state)
{
    (void)state;
    int64_t sa[3] = { 2, 5, 7 }, sb[2] = { 7, 3 };
    struct pl_tensor *a = arange(3, sa), *b = arange(2, sb);
    float *pb = pl_tensor_data(b);
    for (int i = 0; i < 21; i++) pb[i] = 0.5f - (float)i * 0.1f;
    struct pl_tensor *c = pl_tensor_matmul(a, b);
    assert_non_null(c);
    assert_int_equal(c->ndim, 3);
    assert_int_equal(c->shape[2], 3);
    const float *pa = pl_tensor_data(a), *pc = pl_tensor_data(c);
    for (int bt = 0; bt < 2; bt++)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 3; j++) {
                double s = 0;
                for (int k = 0; k < 7; k++) s += (double)pa[bt * 35 + i * 7 + k] * pb[k * 3 + j];
                assert_float_equal(pc[bt * 15 + i * 3 + j], s, 1e-3);
            }
    struct pl_tensor *bad = pl_tensor_matmul(b, b);
    assert_null(bad);
    assert_non_null(strstr(pl_last_error(), "do not multiply"));
    pl_tensor_release(a);
    pl_tensor_release(b);
    pl_tensor_release(c);
}

static void test_broadcast_and_reduce(void **state)
{
    (void)state;
    int64_t sa[2] = { 2, 3 }, sb[1] = { 3 };
    struct pl_tensor *a = arange(2, sa), *b = arange(1, sb);
    struct pl_tensor *s = pl_tensor_binop(PL_OP_MUL, a, b);
    const float *p = pl_tensor_data(s);
    float want[6] = { 0, 1, 4, 0, 4, 10 };
    assert_memory_equal(p, want, sizeof want);
    struct pl_tensor *r = pl_tensor_reduce(PL_RED_SUM, s, 1, 0);
    assert_int_equal(r->ndim, 1);
    assert_float_equal(((float *)pl_tensor_data(r))[1], 14, 0);
    struct pl_tensor *m = pl_tensor_reduce(PL_RED_ARGMAX, s, 0, 0);
    assert_float_equal(((float *)pl_tensor_data(m))[2], 1, 0);
    struct pl_tensor *sm = pl_tensor_softmax(a, 1);
    const float *q = pl_tensor_data(sm);
    double e0 = exp(0), e1 = exp(1), e2 = exp(2);
    assert_float_equal(q[0], e0 / (e0 + e1 + e2), 1e-6);
    int64_t sc[1] = { 2 };
    struct pl_tensor *c = arange(1, sc);
    assert_null(pl_tensor_binop(PL_OP_ADD, a, c));
    assert_non_null(strstr(pl_last_error(), "do not broadcast"));
    pl_tensor_release(c);
    pl_tensor_release(sm);
    pl_tensor_release(m);
    pl_tensor_release(r);
    pl_tensor_release(s);
    pl_tensor_release(a);
    pl_tensor_release(b);
}

static void test_budget_and_injected_failure(void **state)
{
    (void)state;
    int64_t sh[1] = { 1 << 20 };
    pl_mem_set_budget(pl_mem_current_total() + 1000);
    assert_null(pl_tensor_new(PL_F32, 1, sh, PL_MEM_ACTIVATIONS));
    assert_int_equal(pl_mem_current(PL_MEM_ACTIVATIONS), 0);
    pl_mem_set_budget(0);
    pl_mem_fail_after(2); /* header ok, data fails */
    assert_null(pl_tensor_new(PL_F32, 1, sh, PL_MEM_ACTIVATIONS));
    pl_mem_fail_after(0);
    struct pl_tensor *t = pl_tensor_new(PL_F32, 1, sh, PL_MEM_ACTIVATIONS);
    assert_non_null(t);
    assert_int_equal(pl_mem_current(PL_MEM_ACTIVATIONS), 4 << 20);
    assert_true(pl_mem_peak(PL_MEM_ACTIVATIONS) >= 4 << 20);
    pl_tensor_release(t);
    assert_int_equal(pl_mem_current(PL_MEM_ACTIVATIONS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views_share_storage),
        cmocka_unit_test(test_clone_of_strided),
        cmocka_unit_test(test_convert_roundtrip),
        cmocka_unit_test(test_matmul_vs_naive),
        cmocka_unit_test(test_broadcast_and_reduce),
        cmocka_unit_test(test_budget_and_injected_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
