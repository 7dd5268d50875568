/* tune_study.c — standard global-optimisation test functions and one run of the efficiency
 * study (Bayesian optimisation vs uniform random search), shared by tests/c/test_tune.c and
 * tests/bench/bench_tune.c (owner: tune).
 *
 * Definitions as in Dixon & Szegő (1978) and the Surjanovic & Bingham virtual library:
 *   Branin:    f = (x2 − 5.1/(4π²) x1² + 5/π x1 − 6)² + 10 (1 − 1/(8π)) cos x1 + 10
 *   Hartmann:  f = −Σ_i α_i exp(−Σ_j A_ij (x_j − P_ij)²),  α = (1, 1.2, 3, 3.2)
 */
#include <math.h>
#include <string.h>
#include "peftlua/tune.h"

static double branin(const double *x)
{
    double b = 5.1 / (4 * M_PI * M_PI), c = 5 / M_PI, t = 1 / (8 * M_PI);
    double u = x[1] - b * x[0] * x[0] + c * x[0] - 6;
    return u * u + 10 * (1 - t) * cos(x[0]) + 10;
}

static const double H_ALPHA[4] = { 1.0, 1.2, 3.0, 3.2 };

static double hartmann3(const double *x)
{
    static const double A[4][3] = { { 3, 10, 30 }, { 0.1, 10, 35 }, { 3, 10, 30 }, { 0.1, 10, 35 } };
    static const double P[4][3] = { { 3689, 1170, 2673 }, { 4699, 4387, 7470 }, { 1091, 8732, 5547 }, { 381, 5743, 8828 } };
    double f = 0;
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int j = 0; j < 3; j++) { double d = x[j] - 1e-4 * P[i][j]; s += A[i][j] * d * d; }
        f -= H_ALPHA[i] * exp(-s);
    }
    return f;
}

static double hartmann6(const double *x)
{
    static const double A[4][6] = { { 10, 3, 17, 3.5, 1.7, 8 }, { 0.05, 10, 17, 0.1, 8, 14 },
                                    { 3, 3.5, 1.7, 10, 17, 8 }, { 17, 8, 0.05, 10, 0.1, 14 } };
    static const double P[4][6] = { { 1312, 1696, 5569, 124, 8283, 5886 }, { 2329, 4135, 8307, 3736, 1004, 9991 },
                                    { 2348, 1451, 3522, 2883, 3047, 6650 }, { 4047, 8828, 8732, 5743, 1091, 381 } };
    double f = 0;
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int j = 0; j < 6; j++) { double d = x[j] - 1e-4 * P[i][j]; s += A[i][j] * d * d; }
        f -= H_ALPHA[i] * exp(-s);
    }
    return f;
}

static const struct pl_tune_testfn FNS[] = {
    { "branin", 2, { -5, 0 }, { 10, 15 }, 0.397887357729739, branin },
    { "hartmann3", 3, { 0, 0, 0 }, { 1, 1, 1 }, -3.86278214782076, hartmann3 },
    { "hartmann6", 6, { 0, 0, 0, 0, 0, 0 }, { 1, 1, 1, 1, 1, 1 }, -3.32236801141551, hartmann6 },
};

const struct pl_tune_testfn *pl_tune_testfn(const char *name)
{
    for (size_t i = 0; i < sizeof FNS / sizeof FNS[0]; i++)
        if (strcmp(FNS[i].name, name) == 0) return &FNS[i];
    return NULL;
}

enum pl_status pl_tune_study_run(const char *fn, int random, uint64_t seed, int budget, double *regret,
                                 double *trace)
{
    const struct pl_tune_testfn *tf = pl_tune_testfn(fn);
    if (!tf) return pl_fail(PL_ERR_ARG, "tune: unknown test function '%s'", fn);
    if (budget < 1) return pl_fail(PL_ERR_ARG, "tune: budget %d must be >= 1", budget);
    double best = INFINITY, x[6];
    if (random) {
        struct pl_rng r;
        pl_rng_seed(&r, seed ^ 0x5DEECE66Dull);
        for (int e = 0; e < budget; e++) {
            for (int k = 0; k < tf->d; k++) x[k] = tf->lo[k] + (tf->hi[k] - tf->lo[k]) * pl_rng_uniform(&r);
            best = fmin(best, tf->f(x));
            if (trace) trace[e] = best - tf->fmin;
        }
        *regret = best - tf->fmin;
        return PL_OK;
    }
    static const char *names[6] = { "x1", "x2", "x3", "x4", "x5", "x6" };
    struct pl_tune_param ps[6];
    for (int k = 0; k < tf->d; k++)
        ps[k] = (struct pl_tune_param){ .name = names[k], .type = PL_TUNE_REAL, .lo = tf->lo[k], .hi = tf->hi[k] };
    struct pl_tune_opts o = pl_tune_defaults();
    o.seed = seed;
    struct pl_tune *t;
    enum pl_status st = pl_tune_new(&t, ps, tf->d, &o);
    if (st) return st;
    for (int e = 0; e < budget && !st; e++) {
        if (!(st = pl_tune_ask(t, 1, x))) {
            double y = tf->f(x);
            best = fmin(best, y);
            if (trace) trace[e] = best - tf->fmin;
            st = pl_tune_tell(t, x, y);
        }
    }
    pl_tune_free(t);
    *regret = best - tf->fmin;
    return st;
}
