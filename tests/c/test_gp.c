/* test_gp.c — the Gaussian process against scikit-learn goldens, finite differences and
 * edge cases (owner: tune). Goldens: tests/ref/gp/fixture_*.txt from tests/ref/gp/make_goldens.py.
 * Run from the repository root.
 */
#include <glob.h>
#include <math.h>
#include "pl_test.h"
#include "peftlua/alloc.h"
#include "peftlua/linalg.h"
#include "peftlua/tune.h"

struct fixture {
    char kernel[32];
    int n, d, m;
    double sf2, sn2, ls[16];
    double *X, *y, *Xs, *mean, *var, lml, fit_lml, fit_hyper[18];
};

static int read_tag(FILE *f, const char *tag)
{
    char buf[64];
    int c;
    for (;;) {
        if (fscanf(f, "%63s", buf) != 1) return 0;
        if (buf[0] == '#') { while ((c = fgetc(f)) != EOF && c != '\n') ; continue; }
        return strcmp(buf, tag) == 0;
    }
}

static void read_nums(FILE *f, double *v, int n)
{
    for (int i = 0; i < n; i++) assert_int_equal(fscanf(f, "%lf", &v[i]), 1);
}

static double *read_arr(FILE *f, const char *tag, int n)
{
    assert_true(read_tag(f, tag));
    double *v = malloc(sizeof(double) * (n ? n : 1));
    read_nums(f, v, n);
    return v;
}

static void load_fixture(const char *path, struct fixture *fx)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_true(read_tag(f, "kernel"));
    assert_int_equal(fscanf(f, "%31s", fx->kernel), 1);
    assert_true(read_tag(f, "dims"));
    assert_int_equal(fscanf(f, "%d %d %d", &fx->n, &fx->d, &fx->m), 3);
    assert_true(fx->d <= 16);
    assert_true(read_tag(f, "hyper"));
    read_nums(f, &fx->sf2, 1); read_nums(f, &fx->sn2, 1); read_nums(f, fx->ls, fx->d);
    fx->X = read_arr(f, "X", fx->n * fx->d);
    fx->y = read_arr(f, "y", fx->n);
    fx->Xs = read_arr(f, "Xs", fx->m * fx->d);
    fx->mean = read_arr(f, "mean", fx->m);
    fx->var = read_arr(f, "var", fx->m);
    assert_true(read_tag(f, "lml")); read_nums(f, &fx->lml, 1);
    assert_true(read_tag(f, "fit_lml")); read_nums(f, &fx->fit_lml, 1);
    assert_true(read_tag(f, "fit_hyper")); read_nums(f, fx->fit_hyper, fx->d + 2);
    fclose(f);
}

static void free_fixture(struct fixture *fx)
{
    free(fx->X); free(fx->y); free(fx->Xs); free(fx->mean); free(fx->var);
}

static enum pl_gp_kernel kernel_of(const struct fixture *fx)
{
    return strcmp(fx->kernel, "rbf") == 0 ? PL_GP_RBF : PL_GP_MATERN52;
}

/* A GP with the fixture's kernel and training data (hyperparameters not yet set). */
static struct pl_gp *gp_of(const struct fixture *fx)
{
    struct pl_gp *gp;
    assert_int_equal(pl_gp_new(&gp, fx->d, kernel_of(fx)), PL_OK);
    assert_int_equal(pl_gp_set_data(gp, fx->X, fx->y, fx->n), PL_OK);
    return gp;
}

static glob_t fixtures(void)
{
    glob_t g;
    assert_int_equal(glob("tests/ref/gp/fixture_*.txt", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 5);
    return g;
}

/* Fixed hyperparameters: posterior mean, variance and LML equal scikit-learn's to 1e-6. */
static void test_sklearn_fixed(void **state)
{
    (void)state;
    glob_t g = fixtures();
    for (size_t k = 0; k < g.gl_pathc; k++) {
        struct fixture fx;
        load_fixture(g.gl_pathv[k], &fx);
        struct pl_gp *gp = gp_of(&fx);
        assert_int_equal(pl_gp_set_hyper(gp, fx.ls, fx.sf2, fx.sn2), PL_OK);
        double mean[fx.m], var[fx.m], dm = 0, dv = 0;
        assert_int_equal(pl_gp_predict(gp, fx.Xs, fx.m, mean, var, 0), PL_OK);
        for (int j = 0; j < fx.m; j++) {
            dm = fmax(dm, fabs(mean[j] - fx.mean[j]));
            dv = fmax(dv, fabs(var[j] - fx.var[j]));
        }
        double dl = fabs(pl_gp_lml(gp) - fx.lml);
        printf("  %-48s max|Δmean| %.2e  max|Δvar| %.2e  |Δlml| %.2e\n", g.gl_pathv[k], dm, dv, dl);
        assert_true(dm <= 1e-6);
        assert_true(dv <= 1e-6);
        assert_true(dl <= 1e-6);
        pl_gp_free(gp);
        free_fixture(&fx);
    }
    globfree(&g);
}

/* Fitted hyperparameters: our maximised LML is at least scikit-learn's. */
static void test_sklearn_fit(void **state)
{
    (void)state;
    glob_t g = fixtures();
    for (size_t k = 0; k < g.gl_pathc; k++) {
        struct fixture fx;
        load_fixture(g.gl_pathv[k], &fx);
        struct pl_gp *gp = gp_of(&fx);
        struct pl_rng rng;
        pl_rng_seed(&rng, 7);
        assert_int_equal(pl_gp_fit(gp, NULL, 20, 200, &rng), PL_OK);
        double lml = pl_gp_lml(gp), sf2, sn2, ls[16];
        pl_gp_get_hyper(gp, ls, &sf2, &sn2);
        printf("  %-48s LML ours %.8f  sklearn %.8f  (sf2 %.3g sn2 %.3g l0 %.3g)\n", g.gl_pathv[k], lml, fx.fit_lml, sf2, sn2, ls[0]);
        assert_true(lml >= fx.fit_lml - 1e-6);
        pl_gp_free(gp);
        free_fixture(&fx);
    }
    globfree(&g);
}

/* The analytic LML gradient against central differences, both kernels. */
static void test_lml_gradient(void **state)
{
    (void)state;
    for (int kn = 0; kn < 2; kn++) {
        int n = 17, d = 3;
        double X[17 * 3], y[17];
        struct pl_rng r;
        pl_rng_seed(&r, 3 + kn);
        for (int i = 0; i < n * d; i++) X[i] = pl_rng_uniform(&r);
        for (int i = 0; i < n; i++) y[i] = sin(4 * X[i * d]) + X[i * d + 1] * X[i * d + 2] + 0.1 * pl_rng_normal(&r);
        struct pl_gp *gp;
        assert_int_equal(pl_gp_new(&gp, d, kn ? PL_GP_RBF : PL_GP_MATERN52), PL_OK);
        assert_int_equal(pl_gp_set_data(gp, X, y, n), PL_OK);
        double th[5] = { log(0.3), log(0.7), log(1.4), log(0.9), log(0.02) }, g[5], gd[5];
        pl_gp_lml_grad(gp, th, g);
        for (int k = 0; k < d + 2; k++) {
            double h = 1e-5, tp[5], tm[5];
            memcpy(tp, th, sizeof th); memcpy(tm, th, sizeof th);
            tp[k] += h; tm[k] -= h;
            gd[k] = (pl_gp_lml_grad(gp, tp, NULL) - pl_gp_lml_grad(gp, tm, NULL)) / (2 * h);
            assert_true(fabs(g[k] - gd[k]) <= 1e-5 * fmax(1.0, fabs(gd[k])));
        }
        /* lml_grad at the GP's own hyperparameters equals pl_gp_lml */
        double ls[3] = { 0.3, 0.7, 1.4 };
        assert_int_equal(pl_gp_set_hyper(gp, ls, 0.9, 0.02), PL_OK);
        assert_true(fabs(pl_gp_lml(gp) - pl_gp_lml_grad(gp, th, NULL)) < 1e-10);
        pl_gp_free(gp);
    }
}

/* Cholesky, solves and inverse on a small SPD matrix against direct products. */
static void test_linalg(void **state)
{
    (void)state;
    int n = 4;
    double M[16], A[16], L[16], b[4] = { 1, -2, 0.5, 3 }, x[4];
    struct pl_rng r;
    pl_rng_seed(&r, 11);
    for (int i = 0; i < 16; i++) M[i] = pl_rng_normal(&r);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = i == j ? 0.5 : 0.0;
            for (int k = 0; k < n; k++) s += M[i + k * n] * M[j + k * n];
            A[i + j * n] = s;
        }
    memcpy(L, A, sizeof A);
    assert_int_equal(pl_chol(L, n), PL_OK);
    memcpy(x, b, sizeof b);
    assert_int_equal(pl_chol_solve(L, n, x, 1), PL_OK);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += A[i + j * n] * x[j];
        assert_true(fabs(s - b[i]) < 1e-10);
    }
    /* L⁻¹ then L⁻ᵀ is the same solve */
    memcpy(x, b, sizeof b);
    assert_int_equal(pl_tri_solve(L, n, x, 1, 0), PL_OK);
    assert_int_equal(pl_tri_solve(L, n, x, 1, 1), PL_OK);
    double y2[4];
    memcpy(y2, b, sizeof b);
    pl_chol_solve(L, n, y2, 1);
    for (int i = 0; i < n; i++) assert_true(fabs(x[i] - y2[i]) < 1e-10);
    /* log-determinant: ½ log|A| from the diagonal of L vs the product of pivots */
    double det = 1;
    for (int i = 0; i < n; i++) det *= L[i + i * n] * L[i + i * n];
    assert_true(fabs(pl_chol_logdet_half(L, n) - 0.5 * log(det)) < 1e-12);
    assert_int_equal(pl_chol_inverse(L, n), PL_OK);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += A[i + k * n] * L[k + j * n];
            assert_true(fabs(s - (i == j)) < 1e-10);
        }
    /* not positive definite: a clear error, not a crash */
    double B[4] = { 1, 2, 2, 1 };
    assert_int_equal(pl_chol(B, 2), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "not positive definite"));
}

static void test_rng_lhs(void **state)
{
    (void)state;
    struct pl_rng a, b;
    pl_rng_seed(&a, 42); pl_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) assert_true(pl_rng_next(&a) == pl_rng_next(&b));
    pl_rng_seed(&b, 43);
    assert_true(pl_rng_next(&a) != pl_rng_next(&b));
    double s = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) { double z = pl_rng_normal(&a); s += z; s2 += z * z; }
    assert_true(fabs(s / 20000) < 0.03 && fabs(s2 / 20000 - 1) < 0.05);
    int n = 10, d = 3;
    double P[30];
    pl_rng_lhs(&a, n, d, P);
    for (int j = 0; j < d; j++) {
        int seen[10] = { 0 };
        for (int i = 0; i < n; i++) {
            double v = P[i * d + j];
            assert_true(v >= 0 && v < 1);
            seen[(int)(v * n)]++;
        }
        for (int i = 0; i < n; i++) assert_int_equal(seen[i], 1);   /* one point per stratum */
    }
}

/* Duplicates, a constant y, one point, no points, bad input. */
static void test_gp_edge_cases(void **state)
{
    (void)state;
    struct pl_gp *gp;
    struct pl_rng r;
    pl_rng_seed(&r, 5);
    assert_int_equal(pl_gp_new(&gp, 2, PL_GP_MATERN52), PL_OK);
    double X[12] = { 0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.5, 0.5, 0.5, 0.5, 0.9, 0.1 }, y[6] = { 1, 1.1, 0.9, 2, 2, 3 };
    double xs[4] = { 0.1, 0.2, 0.7, 0.3 }, mu[2], var[2];
    assert_int_equal(pl_gp_set_data(gp, X, y, 6), PL_OK);                 /* duplicates */
    assert_int_equal(pl_gp_fit(gp, NULL, 3, 100, &r), PL_OK);
    assert_int_equal(pl_gp_predict(gp, xs, 2, mu, var, 0), PL_OK);
    assert_true(fabs(mu[0] - 1.0) < 0.2 && isfinite(mu[1]) && var[0] >= 0 && var[1] > 0);
    double yc[6] = { 4, 4, 4, 4, 4, 4 };
    assert_int_equal(pl_gp_set_data(gp, X, yc, 6), PL_OK);                /* constant */
    assert_int_equal(pl_gp_fit(gp, NULL, 3, 100, &r), PL_OK);
    assert_int_equal(pl_gp_predict(gp, xs, 2, mu, var, 0), PL_OK);
    assert_true(fabs(mu[0] - 4) < 1e-6 && fabs(mu[1] - 4) < 1e-6 && isfinite(var[1]));
    assert_int_equal(pl_gp_set_data(gp, X, y, 1), PL_OK);                 /* one point */
    assert_int_equal(pl_gp_fit(gp, NULL, 2, 100, &r), PL_OK);
    assert_int_equal(pl_gp_predict(gp, xs, 2, mu, var, 0), PL_OK);
    assert_true(fabs(mu[0] - 1) < 1e-6 && isfinite(mu[1]) && isfinite(var[1]));
    assert_int_equal(pl_gp_set_data(gp, X, y, 0), PL_OK);                 /* prior */
    assert_int_equal(pl_gp_predict(gp, xs, 2, mu, var, 1), PL_OK);
    assert_true(mu[0] == 0 && var[0] > 0);
    double yn[2] = { 1, NAN };
    assert_int_equal(pl_gp_set_data(gp, X, yn, 2), PL_ERR_ARG);
    assert_non_null(strstr(pl_last_error(), "y[1]"));
    double bad[2] = { 0.1, -1 };
    assert_int_equal(pl_gp_set_hyper(gp, bad, 1, 1e-3), PL_ERR_ARG);
    pl_gp_free(gp);
    assert_int_equal(pl_gp_new(&gp, 0, PL_GP_RBF), PL_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linalg),
        cmocka_unit_test(test_rng_lhs),
        cmocka_unit_test(test_lml_gradient),
        cmocka_unit_test(test_sklearn_fixed),
        cmocka_unit_test(test_sklearn_fit),
        cmocka_unit_test(test_gp_edge_cases),
    };
    const int64_t before = pl_mem_current_total();
    return pl_test_leak_check(cmocka_run_group_tests(tests, NULL, NULL), before);
}
