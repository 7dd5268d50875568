/* test_optim.c — AdamW, SGD, schedules and clipping against torch.optim goldens.
 *
 * Owner: train. Goldens: tests/ref/train/golden/optim.bin from tests/ref/train/optim_ref.py.
 * Run from the repository root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "peftlua/optim.h"

#define GOLDEN "tests/ref/train/golden/optim.bin"

struct gold {
    int n, steps;
    float *p0, *grads, *lrs, *adamw, *sgd, *sgdn, clip_norm, *clipped;
    float *buf;
};

static int load_gold(void **state)
{
    FILE *f = fopen(GOLDEN, "rb");
    assert_non_null(f);
    char magic[8];
    int32_t hdr[2];
    assert_int_equal(fread(magic, 1, 8, f), 8);
    assert_memory_equal(magic, "PLOPTIM1", 8);
    assert_int_equal(fread(hdr, 4, 2, f), 2);
    struct gold *g = calloc(1, sizeof *g);
    g->n = hdr[0];
    g->steps = hdr[1];
    size_t n = (size_t)g->n, s = (size_t)g->steps;
    size_t total = n + s * n + s + 3 * s * n + 1 + n;
    g->buf = malloc(total * sizeof(float));
    assert_int_equal(fread(g->buf, sizeof(float), total, f), total);
    fclose(f);
    float *p = g->buf;
    g->p0 = p; p += n;
    g->grads = p; p += s * n;
    g->lrs = p; p += s;
    g->adamw = p; p += s * n;
    g->sgd = p; p += s * n;
    g->sgdn = p; p += s * n;
    g->clip_norm = *p++;
    g->clipped = p;
    *state = g;
    return 0;
}

static int free_gold(void **state)
{
    struct gold *g = *state;
    free(g->buf);
    free(g);
    return 0;
}

static double rel_err(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den + 1e-30));
}

static void test_adamw_matches_torch(void **state)
{
    struct gold *g = *state;
    float *p = malloc(g->n * sizeof(float)), *m = calloc(g->n, sizeof(float)),
          *v = calloc(g->n, sizeof(float));
    memcpy(p, g->p0, g->n * sizeof(float));
    struct pl_adamw_cfg c = pl_adamw_defaults();
    c.weight_decay = 0.1;
    for (int s = 0; s < g->steps; s++) {
        pl_adamw_step(p, g->grads + (size_t)s * g->n, m, v, g->n, &c, g->lrs[s], s + 1);
        double e = rel_err(p, g->adamw + (size_t)s * g->n, g->n);
        if (e > 1e-6) fail_msg("adamw step %d: relative error %.3g", s + 1, e);
        for (int i = 0; i < g->n; i++)
            if (fabsf(p[i] - g->adamw[(size_t)s * g->n + i]) > 2e-6f * (1 + fabsf(p[i])))
                fail_msg("adamw step %d elem %d: %.9g vs torch %.9g", s + 1, i, p[i],
                         g->adamw[(size_t)s * g->n + i]);
    }
    free(p); free(m); free(v);
}

static void check_sgd(struct gold *g, const float *want, int nesterov)
{
    float *p = malloc(g->n * sizeof(float)), *b = calloc(g->n, sizeof(float));
    memcpy(p, g->p0, g->n * sizeof(float));
    struct pl_sgd_cfg c = { 0.9, nesterov ? 0.0 : 0.1, 0.01, nesterov };
    for (int s = 0; s < g->steps; s++) {
        pl_sgd_step(p, g->grads + (size_t)s * g->n, b, g->n, &c, g->lrs[s] * 10.0f, s == 0);
        double e = rel_err(p, want + (size_t)s * g->n, g->n);
        if (e > 1e-6) fail_msg("sgd%s step %d: relative error %.3g", nesterov ? " nesterov" : "", s + 1, e);
    }
    free(p); free(b);
}

static void test_sgd_matches_torch(void **state)
{
    struct gold *g = *state;
    check_sgd(g, g->sgd, 0);
    check_sgd(g, g->sgdn, 1);
}

static void test_clip_matches_torch(void **state)
{
    struct gold *g = *state;
    float *a = malloc(g->n * sizeof(float));
    memcpy(a, g->grads, g->n * sizeof(float));
    float *parts[2] = { a, a + g->n / 4 };
    int64_t ns[2] = { g->n / 4, g->n - g->n / 4 };
    double norm = pl_clip_grad_norm(parts, ns, 2, 0.5);
    assert_true(fabs(norm - g->clip_norm) < 1e-5 * g->clip_norm);
    assert_true(rel_err(a, g->clipped, g->n) < 1e-6);
    /* after clipping the norm is max_norm; clipping again changes nothing */
    double n2 = pl_grad_global_norm(parts, ns, 2);
    assert_true(fabs(n2 - 0.5) < 1e-5);
    float keep = a[3];
    pl_clip_grad_norm(parts, ns, 2, 1.0);
    assert_true(a[3] == keep);
    /* max_norm <= 0 disables clipping but still reports the norm */
    assert_true(fabs(pl_clip_grad_norm(parts, ns, 2, 0.0) - n2) < 1e-12);
    /* a non-finite gradient leaves the vector alone */
    a[0] = NAN;
    float keep1 = a[1];
    assert_true(isnan(pl_clip_grad_norm(parts, ns, 2, 0.1)));
    assert_true(a[1] == keep1);
    free(a);
}

static void test_schedules(void **state)
{
    (void)state;
    const double lr = 1e-3;
    /* warmup 4 of 20: 1/4, 2/4, 3/4, 4/4 of the base */
    for (int s = 0; s < 4; s++) {
        assert_true(fabs(pl_lr_at(PL_SCHED_COSINE, lr, s, 4, 20, 0.0) - lr * (s + 1) / 4.0) < 1e-15);
        assert_true(fabs(pl_lr_at(PL_SCHED_LINEAR, lr, s, 4, 20, 0.0) - lr * (s + 1) / 4.0) < 1e-15);
        assert_true(fabs(pl_lr_at(PL_SCHED_CONSTANT, lr, s, 4, 20, 0.0) - lr * (s + 1) / 4.0) < 1e-15);
    }
    assert_true(pl_lr_at(PL_SCHED_CONSTANT, lr, 15, 4, 20, 0.0) == lr);
    /* linear: step 12 of (4..20) is half way */
    assert_true(fabs(pl_lr_at(PL_SCHED_LINEAR, lr, 12, 4, 20, 0.0) - lr * 0.5) < 1e-15);
    assert_true(fabs(pl_lr_at(PL_SCHED_LINEAR, lr, 20, 4, 20, 0.0)) < 1e-15);
    assert_true(fabs(pl_lr_at(PL_SCHED_LINEAR, lr, 30, 4, 20, 0.0)) < 1e-15);
    /* cosine: 1 at the end of warmup, 1/2 half way, (1+cos(pi/4))/2 a quarter of the way */
    assert_true(fabs(pl_lr_at(PL_SCHED_COSINE, lr, 4, 4, 20, 0.0) - lr) < 1e-15);
    assert_true(fabs(pl_lr_at(PL_SCHED_COSINE, lr, 12, 4, 20, 0.0) - lr * 0.5) < 1e-15);
    assert_true(fabs(pl_lr_at(PL_SCHED_COSINE, lr, 8, 4, 20, 0.0) - lr * 0.5 * (1 + cos(M_PI / 4))) < 1e-15);
    /* a floor */
    assert_true(fabs(pl_lr_at(PL_SCHED_COSINE, lr, 20, 4, 20, 0.1) - lr * 0.1) < 1e-15);
    /* no warmup */
    assert_true(pl_lr_at(PL_SCHED_LINEAR, lr, 0, 0, 10, 0.0) == lr);
    assert_int_equal(pl_schedule_from_name("cosine"), PL_SCHED_COSINE);
    assert_int_equal(pl_schedule_from_name("linear"), PL_SCHED_LINEAR);
    assert_int_equal(pl_schedule_from_name("constant"), PL_SCHED_CONSTANT);
    assert_int_equal(pl_schedule_from_name("exp"), -1);
    assert_string_equal(pl_schedule_name(PL_SCHED_COSINE), "cosine");
}

static void test_adamw_first_step_is_sign(void **state)
{
    (void)state;
    /* With no decay the first AdamW step moves every parameter by lr·sign(g) (up to eps). */
    float p[4] = { 1, 1, 1, 1 }, gr[4] = { 3, -0.001f, 100, -7 }, m[4] = { 0 }, v[4] = { 0 };
    struct pl_adamw_cfg c = pl_adamw_defaults();
    c.weight_decay = 0;
    pl_adamw_step(p, gr, m, v, 4, &c, 0.01, 1);
    assert_true(fabsf(p[0] - 0.99f) < 1e-6f);
    assert_true(fabsf(p[1] - 1.01f) < 1e-4f);
    assert_true(fabsf(p[2] - 0.99f) < 1e-6f);
    assert_true(fabsf(p[3] - 1.01f) < 1e-6f);
    /* decoupled decay alone: zero gradient shrinks by (1 - lr·wd) */
    float q[1] = { 2 }, z[1] = { 0 }, m1[1] = { 0 }, v1[1] = { 0 };
    c.weight_decay = 0.5;
    pl_adamw_step(q, z, m1, v1, 1, &c, 0.1, 1);
    assert_true(fabsf(q[0] - 2 * 0.95f) < 1e-6f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_sgd_matches_torch),
        cmocka_unit_test(test_clip_matches_torch),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_adamw_first_step_is_sign),
    };
    return cmocka_run_group_tests(tests, load_gold, free_gold);
}
