/* test_optim.c — AdamW, SGD, schedules and clipping against torch.optim goldens.
 *
 * Owner: train. Goldens: tests/ref/train/golden/optim.bin from tests/ref/train/optim_ref.py;
 * tests/ref/train/golden/lion.bin from tests/ref/train/lion_ref.py (Lion is not in torch.optim:
 * the script writes the paper's algorithm in torch ops).
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

/* pl_adamw_step (16 lanes at a time where the CPU has AVX-512F) gives the bits of the plain
 * scalar update written out here, over a length with a tail and values of every size. */
static void test_adamw_bits_of_scalar(void **state)
{
    (void)state;
    const int64_t n = 70001;   /* > 65536: the threaded path too */
    float *p = malloc((size_t)n * 4), *q = malloc((size_t)n * 4), *g = malloc((size_t)n * 4);
    float *m = malloc((size_t)n * 4), *v = malloc((size_t)n * 4), *m2 = malloc((size_t)n * 4), *v2 = malloc((size_t)n * 4);
    uint32_t x = 12345;
    for (int64_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        float r = (float)(x >> 8) / 16777216.0f - 0.5f;
        p[i] = q[i] = r;
        g[i] = r * (float)(1 + (i % 7)) * ((i % 3) ? 1e-3f : 10.0f);
        m[i] = m2[i] = 0.1f * r;
        v[i] = v2[i] = r * r * 0.01f;
    }
    struct pl_adamw_cfg c = pl_adamw_defaults();
    for (int64_t t = 1; t <= 3; t++) {
        const double lr = 1e-3 * (double)t;
        pl_adamw_step(p, g, m, v, n, &c, lr, t);
        const double bc1 = 1.0 - pow(c.beta1, (double)t), bc2 = 1.0 - pow(c.beta2, (double)t);
        const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
        const float decay = (float)(1.0 - lr * c.weight_decay), b2 = (float)c.beta2;
        const float omb1 = (float)(1.0 - c.beta1), omb2 = (float)(1.0 - c.beta2), eps = (float)c.eps;
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i], pi = q[i] * decay;
            float mi = m2[i] + omb1 * (gi - m2[i]);
            float vi = b2 * v2[i] + omb2 * (gi * gi);
            m2[i] = mi;
            v2[i] = vi;
            float denom = sqrtf(vi) / bc2_sqrt + eps;
            q[i] = pi - step_size * (mi / denom);
        }
        assert_memory_equal(p, q, (size_t)n * 4);
        assert_memory_equal(m, m2, (size_t)n * 4);
        assert_memory_equal(v, v2, (size_t)n * 4);
    }
    free(p); free(q); free(g); free(m); free(v); free(m2); free(v2);
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

/* Lion through the optimizer table, against tests/ref/train/golden/lion.bin. */
static void test_lion_matches_reference(void **state)
{
    (void)state;
    FILE *f = fopen("tests/ref/train/golden/lion.bin", "rb");
    assert_non_null(f);
    char magic[8];
    int32_t hdr[2];
    float hp[3];
    assert_int_equal(fread(magic, 1, 8, f), 8);
    assert_memory_equal(magic, "PLLION01", 8);
    assert_int_equal(fread(hdr, 4, 2, f), 2);
    assert_int_equal(fread(hp, 4, 3, f), 3);
    const size_t n = (size_t)hdr[0], s = (size_t)hdr[1];
    const size_t total = n + s * n + s + s * n + n;
    float *buf = malloc(total * sizeof(float));
    assert_int_equal(fread(buf, sizeof(float), total, f), total);
    fclose(f);
    const float *p0 = buf, *grads = p0 + n, *lrs = grads + s * n, *want = lrs + s, *mwant = want + s * n;

    const int kind = pl_optimizer_find("lion");
    assert_true(kind >= 0);
    const struct pl_optimizer *o = pl_optimizer_get(kind);
    assert_string_equal(o->name, "lion");
    assert_int_equal(o->n_state, 1);
    /* the hyper-parameters as stored (f32) widened, as a trainer configuration holds them */
    /* the script's hyper-parameters are Python floats (doubles); the file stores them as f32 */
    assert_true(hp[0] == 0.9f && hp[1] == 0.99f && hp[2] == 0.1f);
    const struct pl_optim_hparams h = { 0.9, 0.99, 1e-8, 0.1, 0.0, 0 };
    float *p = malloc(n * sizeof(float)), *m = calloc(n, sizeof(float));
    memcpy(p, p0, n * sizeof(float));
    float *st[PL_OPTIM_MAX_STATE] = { m, NULL };
    for (size_t k = 0; k < s; k++) {
        o->step(p, grads + k * n, st, (int64_t)n, &h, lrs[k], (int64_t)k + 1);
        for (size_t i = 0; i < n; i++) {
            float w = want[k * n + i];
            /* each step moves a parameter by exactly ±lr (or 0) after decay: a sign flipped
             * against the reference would be off by 2·lr, far beyond this bound */
            if (fabsf(p[i] - w) > 1e-6f * (1 + fabsf(w)))
                fail_msg("lion step %zu elem %zu: %.9g vs reference %.9g", k + 1, i, p[i], w);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (fabsf(m[i] - mwant[i]) > 1e-6f * (1 + fabsf(mwant[i])))
            fail_msg("lion momentum elem %zu: %.9g vs reference %.9g", i, m[i], mwant[i]);
    /* sign(0) = 0: element 5 had a zero gradient at step 1, so it moved by decay only */
    float q[1] = { 2 }, z[1] = { 0 }, mz[1] = { 0 };
    float *sz[PL_OPTIM_MAX_STATE] = { mz, NULL };
    o->step(q, z, sz, 1, &h, 0.01, 1);
    assert_true(q[0] == 2.0f * (float)(1.0 - 0.01 * 0.1));
    free(p); free(m); free(buf);
}

/* The table: names, state counts, and entries equal to the direct calls bit for bit. */
static void test_optimizer_table(void **state)
{
    struct gold *g = *state;
    assert_true(pl_optimizer_count() >= 3);
    assert_int_equal(pl_optimizer_find("adamw"), 0);
    assert_int_equal(pl_optimizer_find("sgd"), 1);
    assert_int_equal(pl_optimizer_find("adam"), -1);
    assert_null(pl_optimizer_get(-1));
    assert_null(pl_optimizer_get(pl_optimizer_count()));
    for (int i = 0; i < pl_optimizer_count(); i++) {
        const struct pl_optimizer *o = pl_optimizer_get(i);
        assert_true(o->n_state >= 1 && o->n_state <= PL_OPTIM_MAX_STATE);
        assert_int_equal(pl_optimizer_find(o->name), i);
        assert_non_null(o->help);
    }
    const int n = g->n;
    float *p = malloc(n * 4), *q = malloc(n * 4), *m = calloc(n, 4), *v = calloc(n, 4),
          *m2 = calloc(n, 4), *v2 = calloc(n, 4);
    memcpy(p, g->p0, n * 4); memcpy(q, g->p0, n * 4);
    struct pl_optim_hparams h = { 0.9, 0.999, 1e-8, 0.1, 0.9, 1 };
    struct pl_adamw_cfg ac = { 0.9, 0.999, 1e-8, 0.1 };
    float *st[PL_OPTIM_MAX_STATE] = { m2, v2 };
    for (int s = 0; s < g->steps; s++) {
        pl_adamw_step(p, g->grads + (size_t)s * n, m, v, n, &ac, g->lrs[s], s + 1);
        pl_optimizer_get(pl_optimizer_find("adamw"))->step(q, g->grads + (size_t)s * n, st, n, &h, g->lrs[s], s + 1);
    }
    assert_memory_equal(p, q, (size_t)n * 4);
    assert_memory_equal(v, v2, (size_t)n * 4);
    memcpy(p, g->p0, n * 4); memcpy(q, g->p0, n * 4);
    struct pl_sgd_cfg sc = { 0.9, 0.0, 0.1, 1 };
    for (int s = 0; s < g->steps; s++) {
        pl_sgd_step(p, g->grads + (size_t)s * n, m, n, &sc, g->lrs[s], s == 0);
        pl_optimizer_get(pl_optimizer_find("sgd"))->step(q, g->grads + (size_t)s * n, st, n, &h, g->lrs[s], s + 1);
    }
    assert_memory_equal(p, q, (size_t)n * 4);
    free(p); free(q); free(m); free(v); free(m2); free(v2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_sgd_matches_torch),
        cmocka_unit_test(test_clip_matches_torch),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_adamw_first_step_is_sign),
        cmocka_unit_test(test_adamw_bits_of_scalar),
        cmocka_unit_test(test_lion_matches_reference),
        cmocka_unit_test(test_optimizer_table),
    };
    return cmocka_run_group_tests(tests, load_gold, free_gold);
}
