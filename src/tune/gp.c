/* gp.c — Gaussian-process regression for the Bayesian optimiser (owner: tune).
 *
 * Model (see tune.h): standardised y ~ GP(0, sf2·m(r) + sn2·δ), Matérn 5/2 or RBF m with one
 * length scale per input dimension. The kernel matrix is factored by LAPACK (linalg.c);
 * hyperparameters maximise the log marginal likelihood with its analytic gradient, by a
 * projected L-BFGS inside box bounds in log space, from several starts.
 *
 * Storage: X row-major n x d; kernel matrices column-major n x n (symmetric); L lower.
 * Also here: the Latin hypercube (the generator itself is rng.c).
 */
#include <float.h>
#include <math.h>
#include <string.h>
#include "peftlua/alloc.h"
#include "peftlua/linalg.h"
#include "peftlua/tune.h"

/* ---------------- random numbers ---------------- */

/* pl_rng_seed/next/uniform/normal live in rng.c */

void pl_rng_lhs(struct pl_rng *r, int n, int d, double *out)
{
    /* each column: a random permutation of the n strata, jittered inside its stratum */
    for (int j = 0; j < d; j++) {
        for (int i = 0; i < n; i++) out[(size_t)i * d + j] = i;
        for (int i = n - 1; i > 0; i--) {
            int k = (int)(pl_rng_uniform(r) * (i + 1));
            double t = out[(size_t)i * d + j];
            out[(size_t)i * d + j] = out[(size_t)k * d + j];
            out[(size_t)k * d + j] = t;
        }
        for (int i = 0; i < n; i++) out[(size_t)i * d + j] = (out[(size_t)i * d + j] + pl_rng_uniform(r)) / n;
    }
}

/* ---------------- the GP ---------------- */

struct pl_gp {
    int d, n, cap;
    enum pl_gp_kernel kernel;
    double *X, *y;            /* X[cap*d] row-major; y standardised */
    double ymean, ystd;
    double *ls, sf2, sn2;     /* ls[d] */
    double jitter;            /* extra diagonal added when K needed it to factor */
    double *L, *alpha;        /* L[cap*cap] lower Cholesky of K; alpha = K⁻¹y */
    double *Kf, *A;           /* scratch for the fit: noise-free K, and K / K⁻¹ */
    double *al;               /* scratch α for the fit */
    double *ws;               /* prediction scratch */
    size_t ws_len;
    int factored;
};

struct pl_gp_fit_opts pl_gp_fit_defaults(void)
{
    return (struct pl_gp_fit_opts){ .ls_lo = 1e-2, .ls_hi = 1e2, .sf2_lo = 1e-2, .sf2_hi = 1e2,
                                  .sn2_lo = 1e-6, .sn2_hi = 1.0 };
}

enum pl_status pl_gp_new(struct pl_gp **out, int d, enum pl_gp_kernel kernel)
{
    *out = NULL;
    if (d < 1) return pl_fail(PL_ERR_ARG, "gp: dimension %d must be >= 1", d);
    if (kernel != PL_GP_MATERN52 && kernel != PL_GP_RBF) return pl_fail(PL_ERR_ARG, "gp: unknown kernel %d", (int)kernel);
    struct pl_gp *gp = pl_calloc(1, sizeof *gp, PL_MEM_WORKSPACE);
    if (!gp) return pl_fail(PL_ERR_NOMEM, "gp: out of memory");
    gp->d = d; gp->kernel = kernel;
    gp->ls = pl_alloc(sizeof(double) * d, PL_MEM_WORKSPACE);
    if (!gp->ls) { pl_free(gp); return pl_fail(PL_ERR_NOMEM, "gp: out of memory"); }
    for (int k = 0; k < d; k++) gp->ls[k] = 0.5;
    gp->sf2 = 1.0; gp->sn2 = 1e-4; gp->ystd = 1.0;
    *out = gp;
    return PL_OK;
}

void pl_gp_free(struct pl_gp *gp)
{
    if (!gp) return;
    pl_free(gp->X); pl_free(gp->y); pl_free(gp->ls); pl_free(gp->L); pl_free(gp->alpha);
    pl_free(gp->Kf); pl_free(gp->A); pl_free(gp->al); pl_free(gp->ws);
    pl_free(gp);
}

int pl_gp_n(const struct pl_gp *gp) { return gp->n; }
void pl_gp_ystats(const struct pl_gp *gp, double *mean, double *std) { *mean = gp->ymean; *std = gp->ystd; }

static enum pl_status grow(double **p, size_t n)
{
    double *q = *p ? pl_realloc(*p, sizeof(double) * n) : pl_alloc(sizeof(double) * n, PL_MEM_WORKSPACE);
    if (!q) return pl_fail(PL_ERR_NOMEM, "gp: out of memory for %zu doubles", n);
    *p = q;
    return PL_OK;
}

/* m(r) and g(r) = −(1/r) dm/dr, so that ∂k/∂log l_k = sf2 · g(r) · Δ_k² / l_k². */
static inline double kern_m(enum pl_gp_kernel kn, double r2, double *g)
{
    if (kn == PL_GP_RBF) {
        double e = exp(-0.5 * r2);
        if (g) *g = e;
        return e;
    }
    double r = sqrt(r2), s5r = sqrt(5.0) * r, e = exp(-s5r);
    if (g) *g = (5.0 / 3.0) * (1.0 + s5r) * e;
    return (1.0 + s5r + (5.0 / 3.0) * r2) * e;
}

static inline double sqdist(const double *a, const double *b, const double *ils2, int d)
{
    double s = 0.0;
    for (int k = 0; k < d; k++) { double t = a[k] - b[k]; s += t * t * ils2[k]; }
    return s;
}

/* Kf[i + j n] = sf2 m(r_ij), full symmetric. */
static void build_kf(const struct pl_gp *gp, const double *ls, double sf2, double *Kf)
{
    int n = gp->n, d = gp->d;
    double ils2[d];
    for (int k = 0; k < d; k++) ils2[k] = 1.0 / (ls[k] * ls[k]);
    for (int j = 0; j < n; j++) {
        Kf[j + (size_t)j * n] = sf2;
        for (int i = j + 1; i < n; i++) {
            double v = sf2 * kern_m(gp->kernel, sqdist(gp->X + (size_t)i * d, gp->X + (size_t)j * d, ils2, d), NULL);
            Kf[i + (size_t)j * n] = v;
            Kf[j + (size_t)i * n] = v;
        }
    }
}

/* Factor K = Kf + (sn2 + jitter) I into gp->L, raising the jitter until it succeeds. */
static enum pl_status factor(struct pl_gp *gp)
{
    int n = gp->n;
    gp->factored = 0;
    if (n == 0) { gp->factored = 1; return PL_OK; }
    enum pl_status st;
    if ((st = grow(&gp->Kf, (size_t)n * n)) || (st = grow(&gp->L, (size_t)n * n)) || (st = grow(&gp->alpha, n))) return st;
    build_kf(gp, gp->ls, gp->sf2, gp->Kf);
    double jit = 0.0;
    for (int attempt = 0; attempt < 12; attempt++) {
        memcpy(gp->L, gp->Kf, sizeof(double) * n * n);
        for (int i = 0; i < n; i++) gp->L[i + (size_t)i * n] += gp->sn2 + jit;
        if (pl_chol(gp->L, n) == PL_OK) {
            gp->jitter = jit;
            memcpy(gp->alpha, gp->y, sizeof(double) * n);
            if ((st = pl_chol_solve(gp->L, n, gp->alpha, 1))) return st;
            gp->factored = 1;
            return PL_OK;
        }
        jit = jit == 0.0 ? 1e-10 * gp->sf2 : jit * 10.0;
    }
    return pl_fail(PL_ERR_ARG, "gp: kernel matrix of %d points not positive definite even with jitter", n);
}

enum pl_status pl_gp_set_data(struct pl_gp *gp, const double *X, const double *y, int n)
{
    if (n < 0) return pl_fail(PL_ERR_ARG, "gp: negative number of points");
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) return pl_fail(PL_ERR_ARG, "gp: y[%d] is not finite", i);
        for (int k = 0; k < gp->d; k++)
            if (!isfinite(X[(size_t)i * gp->d + k])) return pl_fail(PL_ERR_ARG, "gp: X[%d][%d] is not finite", i, k);
    }
    enum pl_status st;
    if (n > gp->cap) {
        if ((st = grow(&gp->X, (size_t)n * gp->d)) || (st = grow(&gp->y, n))) return st;
        gp->cap = n;
    }
    gp->n = n;
    if (n) memcpy(gp->X, X, sizeof(double) * n * gp->d);
    double m = 0.0, v = 0.0;
    for (int i = 0; i < n; i++) m += y[i];
    m = n ? m / n : 0.0;
    for (int i = 0; i < n; i++) v += (y[i] - m) * (y[i] - m);
    double s = n ? sqrt(v / n) : 1.0;
    if (!(s >= 10 * DBL_EPSILON)) s = 1.0;   /* as scikit-learn's _handle_zeros_in_scale */
    gp->ymean = m; gp->ystd = s;
    for (int i = 0; i < n; i++) gp->y[i] = (y[i] - m) / s;
    return factor(gp);
}

enum pl_status pl_gp_set_hyper(struct pl_gp *gp, const double *ls, double sf2, double sn2)
{
    for (int k = 0; k < gp->d; k++)
        if (!(ls[k] > 0) || !isfinite(ls[k])) return pl_fail(PL_ERR_ARG, "gp: length scale %d = %g must be > 0", k, ls[k]);
    if (!(sf2 > 0) || !isfinite(sf2)) return pl_fail(PL_ERR_ARG, "gp: signal variance %g must be > 0", sf2);
    if (!(sn2 >= 0) || !isfinite(sn2)) return pl_fail(PL_ERR_ARG, "gp: noise variance %g must be >= 0", sn2);
    memcpy(gp->ls, ls, sizeof(double) * gp->d);
    gp->sf2 = sf2; gp->sn2 = sn2;
    return factor(gp);
}

void pl_gp_get_hyper(const struct pl_gp *gp, double *ls, double *sf2, double *sn2)
{
    if (ls) memcpy(ls, gp->ls, sizeof(double) * gp->d);
    if (sf2) *sf2 = gp->sf2;
    if (sn2) *sn2 = gp->sn2;
}

double pl_gp_lml(const struct pl_gp *gp)
{
    int n = gp->n;
    if (!gp->factored) return -INFINITY;
    double q = 0.0;
    for (int i = 0; i < n; i++) q += gp->y[i] * gp->alpha[i];
    return -0.5 * q - pl_chol_logdet_half(gp->L, n) - 0.5 * n * log(2.0 * M_PI);
}

double pl_gp_lml_grad(struct pl_gp *gp, const double *theta, double *grad)
{
    int n = gp->n, d = gp->d;
    double ls[d], ils2[d];
    for (int k = 0; k < d; k++) { ls[k] = exp(theta[k]); ils2[k] = 1.0 / (ls[k] * ls[k]); }
    double sf2 = exp(theta[d]), sn2 = exp(theta[d + 1]);
    if (grad) memset(grad, 0, sizeof(double) * (d + 2));
    if (n == 0) return 0.0;
    if (grow(&gp->Kf, (size_t)n * n) || grow(&gp->A, (size_t)n * n) || grow(&gp->al, n)) return -INFINITY;
    double *Kf = gp->Kf, *A = gp->A, *al = gp->al;
    build_kf(gp, ls, sf2, Kf);
    memcpy(A, Kf, sizeof(double) * n * n);
    for (int i = 0; i < n; i++) A[i + (size_t)i * n] += sn2;
    if (pl_chol(A, n) != PL_OK) return -INFINITY;
    memcpy(al, gp->y, sizeof(double) * n);
    if (pl_chol_solve(A, n, al, 1) != PL_OK) return -INFINITY;
    double q = 0.0;
    for (int i = 0; i < n; i++) q += gp->y[i] * al[i];
    double lml = -0.5 * q - pl_chol_logdet_half(A, n) - 0.5 * n * log(2.0 * M_PI);
    if (!grad || !isfinite(lml)) return lml;
    if (pl_chol_inverse(A, n) != PL_OK) return -INFINITY;
    /* A := W = ααᵀ − K⁻¹ (lower triangle and diagonal are all that is read) */
    double gsf = 0.0, gsn = 0.0;
    for (int j = 0; j < n; j++) {
        double wjj = al[j] * al[j] - A[j + (size_t)j * n];
        gsf += 0.5 * wjj * Kf[j + (size_t)j * n];
        gsn += 0.5 * wjj * sn2;
        const double *xj = gp->X + (size_t)j * d;
        for (int i = j + 1; i < n; i++) {
            double w = al[i] * al[j] - A[i + (size_t)j * n];
            gsf += w * Kf[i + (size_t)j * n];       /* ½·2 for the symmetric pair */
            const double *xi = gp->X + (size_t)i * d;
            double dd[d], r2 = 0.0;
            for (int k = 0; k < d; k++) { double t = xi[k] - xj[k]; dd[k] = t * t * ils2[k]; r2 += dd[k]; }
            double g;
            kern_m(gp->kernel, r2, &g);
            double c = w * sf2 * g;
            for (int k = 0; k < d; k++) grad[k] += c * dd[k];
        }
    }
    grad[d] = gsf;
    grad[d + 1] = gsn;
    return lml;
}

/* ---- projected L-BFGS on a box: minimise f(x); f returns +inf where undefined ---- */

typedef double (*pl_objfn)(void *ud, const double *x, double *g);

#define LBFGS_M 8

static double lbfgs_box(pl_objfn f, void *ud, double *x, const double *lo, const double *hi, int n, int max_iter)
{
    double g[n], xn[n], gn[n], pg[n], dvec[n], S[LBFGS_M][n], Y[LBFGS_M][n], rho[LBFGS_M], a[LBFGS_M];
    int freem[n], prevfree[n];
    int mem = 0, head = 0;
    for (int i = 0; i < n; i++) { x[i] = fmin(hi[i], fmax(lo[i], x[i])); prevfree[i] = -1; }
    double fx = f(ud, x, g);
    if (!isfinite(fx)) return fx;
    for (int it = 0; it < max_iter; it++) {
        double pgmax = 0.0;
        int changed = 0;
        for (int i = 0; i < n; i++) {
            freem[i] = !((x[i] <= lo[i] && g[i] > 0) || (x[i] >= hi[i] && g[i] < 0));
            pg[i] = freem[i] ? g[i] : 0.0;
            if (fabs(pg[i]) > pgmax) pgmax = fabs(pg[i]);
            if (freem[i] != prevfree[i]) changed = 1;
            prevfree[i] = freem[i];
        }
        if (pgmax < 1e-6) break;
        if (changed) mem = 0;
        /* two-loop recursion on the free coordinates */
        for (int i = 0; i < n; i++) dvec[i] = pg[i];
        for (int k = 0; k < mem; k++) {
            int idx = (head - 1 - k + LBFGS_M) % LBFGS_M;
            double s = 0.0;
            for (int i = 0; i < n; i++) s += S[idx][i] * dvec[i];
            a[idx] = rho[idx] * s;
            for (int i = 0; i < n; i++) dvec[i] -= a[idx] * Y[idx][i];
        }
        if (mem > 0) {
            int idx = (head - 1 + LBFGS_M) % LBFGS_M;
            double sy = 0.0, yy = 0.0;
            for (int i = 0; i < n; i++) { sy += S[idx][i] * Y[idx][i]; yy += Y[idx][i] * Y[idx][i]; }
            double gam = sy / yy;
            for (int i = 0; i < n; i++) dvec[i] *= gam;
        }
        for (int k = mem - 1; k >= 0; k--) {
            int idx = (head - 1 - k + LBFGS_M) % LBFGS_M;
            double s = 0.0;
            for (int i = 0; i < n; i++) s += Y[idx][i] * dvec[i];
            double b = rho[idx] * s;
            for (int i = 0; i < n; i++) dvec[i] += (a[idx] - b) * S[idx][i];
        }
        double gd = 0.0;
        for (int i = 0; i < n; i++) { dvec[i] = freem[i] ? -dvec[i] : 0.0; gd += pg[i] * dvec[i]; }
        if (!(gd < 0)) {
            mem = 0; gd = 0.0;
            for (int i = 0; i < n; i++) { dvec[i] = -pg[i]; gd -= pg[i] * pg[i]; }
        }
        double t = 1.0;
        if (mem == 0) { double nn = sqrt(-gd); if (nn > 1.0) t = 1.0 / nn; }
        double fn = INFINITY;
        int ok = 0;
        for (int ls = 0; ls < 40; ls++) {
            double dec = 0.0;
            for (int i = 0; i < n; i++) { xn[i] = fmin(hi[i], fmax(lo[i], x[i] + t * dvec[i])); dec += g[i] * (xn[i] - x[i]); }
            fn = f(ud, xn, gn);
            if (isfinite(fn) && fn <= fx + 1e-4 * dec) { ok = 1; break; }
            t *= 0.5;
        }
        if (!ok) {
            if (mem > 0) { mem = 0; continue; }
            break;
        }
        double sy = 0.0, ss = 0.0;
        for (int i = 0; i < n; i++) {
            S[head][i] = xn[i] - x[i]; Y[head][i] = gn[i] - g[i];
            sy += S[head][i] * Y[head][i]; ss += S[head][i] * S[head][i];
        }
        if (sy > 1e-10 * ss) { rho[head] = 1.0 / sy; head = (head + 1) % LBFGS_M; if (mem < LBFGS_M) mem++; }
        double rel = (fx - fn) / fmax(fmax(fabs(fx), fabs(fn)), 1.0);
        memcpy(x, xn, sizeof(double) * n);
        memcpy(g, gn, sizeof(double) * n);
        fx = fn;
        if (rel < 1e-14) break;
    }
    return fx;
}

struct fit_ctx { struct pl_gp *gp; double a, b; };

/* −(LML + log prior) and its gradient in θ */
static double neg_lml(void *ud, const double *theta, double *g)
{
    struct fit_ctx *c = ud;
    int d = c->gp->d, np = d + 2;
    double v = pl_gp_lml_grad(c->gp, theta, g);
    if (!isfinite(v)) return INFINITY;
    if (c->a > 0 && c->b > 0)
        for (int k = 0; k < d; k++) {
            double l = exp(theta[k]);
            v += (c->a - 1) * theta[k] - c->b * l;
            g[k] += (c->a - 1) - c->b * l;
        }
    for (int i = 0; i < np; i++) g[i] = -g[i];
    return -v;
}

enum pl_status pl_gp_fit(struct pl_gp *gp, const struct pl_gp_fit_opts *b, int n_restarts, int max_iter,
                         struct pl_rng *rng)
{
    struct pl_gp_fit_opts db = pl_gp_fit_defaults();
    if (!b) b = &db;
    if (!(b->ls_lo > 0 && b->ls_lo <= b->ls_hi && b->sf2_lo > 0 && b->sf2_lo <= b->sf2_hi && b->sn2_lo > 0 && b->sn2_lo <= b->sn2_hi))
        return pl_fail(PL_ERR_ARG, "gp: fit bounds must be positive and ordered");
    if (gp->n == 0) return PL_OK;
    int d = gp->d, np = d + 2;
    double lo[np], hi[np], th[np], best[np], bestf = INFINITY;
    struct fit_ctx ctx = { gp, b->ls_prior_a, b->ls_prior_b };
    for (int k = 0; k < d; k++) { lo[k] = log(b->ls_lo); hi[k] = log(b->ls_hi); }
    lo[d] = log(b->sf2_lo); hi[d] = log(b->sf2_hi);
    lo[d + 1] = log(b->sn2_lo); hi[d + 1] = log(b->sn2_hi);
    for (int s = 0; s <= n_restarts; s++) {
        if (s == 0) {
            for (int k = 0; k < d; k++) th[k] = log(gp->ls[k]);
            th[d] = log(gp->sf2); th[d + 1] = log(fmax(gp->sn2, 1e-300));
        } else {
            /* random starts: log-uniform over a central part of the box */
            for (int k = 0; k < np; k++) {
                double sh = (s & 1) ? 0.15 : 0.0, a = lo[k] + sh * (hi[k] - lo[k]), c = hi[k] - sh * (hi[k] - lo[k]);
                th[k] = a + (c - a) * pl_rng_uniform(rng);
            }
        }
        double f = lbfgs_box(neg_lml, &ctx, th, lo, hi, np, max_iter);
        if (f < bestf) { bestf = f; memcpy(best, th, sizeof best); }
    }
    if (!isfinite(bestf)) return factor(gp);   /* keep the old hyperparameters */
    if (n_restarts > 0) lbfgs_box(neg_lml, &ctx, best, lo, hi, np, max_iter);   /* polish with fresh curvature memory */
    for (int k = 0; k < d; k++) gp->ls[k] = exp(best[k]);
    gp->sf2 = exp(best[d]); gp->sn2 = exp(best[d + 1]);
    return factor(gp);
}

enum pl_status pl_gp_predict(struct pl_gp *gp, const double *Xs, int m, double *mean, double *var, int standardized)
{
    int n = gp->n, d = gp->d;
    if (!gp->factored) return pl_fail(PL_ERR_STATE, "gp: predict before the kernel matrix was factored");
    double so = standardized ? 1.0 : gp->ystd, mo = standardized ? 0.0 : gp->ymean;
    if (n == 0) {
        for (int j = 0; j < m; j++) { mean[j] = mo; if (var) var[j] = gp->sf2 * so * so; }
        return PL_OK;
    }
    enum { CH = 256 };
    size_t need = (size_t)n * CH;
    if (gp->ws_len < need) {
        enum pl_status st = grow(&gp->ws, need);
        if (st) return st;
        gp->ws_len = need;
    }
    double ils2[d];
    for (int k = 0; k < d; k++) ils2[k] = 1.0 / (gp->ls[k] * gp->ls[k]);
    for (int j0 = 0; j0 < m; j0 += CH) {
        int c = m - j0 < CH ? m - j0 : CH;
        double *Ks = gp->ws;     /* n x c column-major */
        for (int j = 0; j < c; j++) {
            const double *xs = Xs + (size_t)(j0 + j) * d;
            double mu = 0.0;
            for (int i = 0; i < n; i++) {
                double v = gp->sf2 * kern_m(gp->kernel, sqdist(gp->X + (size_t)i * d, xs, ils2, d), NULL);
                Ks[i + (size_t)j * n] = v;
                mu += v * gp->alpha[i];
            }
            mean[j0 + j] = mu * so + mo;
        }
        if (!var) continue;
        enum pl_status st = pl_tri_solve(gp->L, n, Ks, c, 0);
        if (st) return st;
        for (int j = 0; j < c; j++) {
            double s = 0.0;
            for (int i = 0; i < n; i++) s += Ks[i + (size_t)j * n] * Ks[i + (size_t)j * n];
            double v = gp->sf2 - s;
            var[j0 + j] = (v > 0 ? v : 0.0) * so * so;
        }
    }
    return PL_OK;
}
