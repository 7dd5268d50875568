/* tune.h — Bayesian optimisation: a Gaussian process (gp.c) and an ask/tell optimiser over
 * mixed search spaces (bayes.c; history JSON in tune_io.c; test functions and the efficiency
 * study in tune_study.c; LAPACK through linalg.h).
 *
 * Example (minimise f over a learning rate and a LoRA rank):
 *
 *     struct pl_tune_param ps[2] = {
 *         { .name = "lr",   .type = PL_TUNE_REAL, .lo = 1e-5, .hi = 1e-2, .log = 1 },
 *         { .name = "rank", .type = PL_TUNE_INT,  .lo = 4,    .hi = 64,   .pow2 = 1 },
 *     };
 *     struct pl_tune_opts o = pl_tune_defaults();  o.seed = 1;
 *     struct pl_tune *t;  if (pl_tune_new(&t, ps, 2, &o)) fail(pl_last_error());
 *     for (int i = 0; i < 30; i++) {
 *         double v[2];  pl_tune_ask(t, 1, v);           // v = {lr, rank}
 *         pl_tune_tell(t, v, f(v[0], (int)v[1]));      // NaN/inf = failed trial
 *     }
 *     pl_tune_best(t, v, &y);  pl_tune_free(t);
 *
 * Parameter values cross the API as doubles: a real is its value, an integer its (whole)
 * value, a categorical the index of its choice. Internally every parameter is encoded in the
 * unit cube (log scale for log parameters, one unit coordinate per choice for categoricals)
 * and the GP sees the encoding of the *rounded* value, so it never models a difference that
 * the objective cannot see.
 *
 * The GP: y ~ GP(0, k) on standardised outputs, k = sf2 * m(r) + sn2 * δ with
 *   r² = Σ_d (x_d − x'_d)² / l_d²,
 *   Matérn 5/2: m(r) = (1 + √5 r + 5r²/3) exp(−√5 r);  RBF: m(r) = exp(−r²/2).
 * Hyperparameters θ = (log l_1..l_D, log sf2, log sn2) maximise the log marginal likelihood
 *   log p(y|θ) = −½ yᵀK⁻¹y − ½ log|K| − n/2 log 2π
 * by multi-start projected L-BFGS inside box bounds, with the analytic gradient
 *   ∂/∂θ_k = ½ tr((ααᵀ − K⁻¹) ∂K/∂θ_k),  α = K⁻¹y.
 */
#ifndef PEFTLUA_TUNE_H
#define PEFTLUA_TUNE_H

#include <stdint.h>
#include "peftlua/rng.h"
#include "peftlua/status.h"

/* ---- random numbers come from rng.h (deterministic per seed) ---- */
/* Latin hypercube: n points in [0,1)^d, row-major out[n*d]. */
void     pl_rng_lhs(struct pl_rng *r, int n, int d, double *out);

/* ---- Gaussian process ---- */
enum pl_gp_kernel { PL_GP_MATERN52 = 0, PL_GP_RBF = 1 };

struct pl_gp;   /* opaque */

/* Fit options. Box bounds in natural units (not logs); defaults l ∈ [0.01, 100],
 * sf2 ∈ [0.01, 100], sn2 ∈ [1e-6, 1]. ls_prior_a/b > 0 add a Gamma(a, rate b) log prior
 * (a−1) log l − b l on every length scale, making the fit a MAP estimate (default off: plain
 * maximum likelihood). */
struct pl_gp_fit_opts { double ls_lo, ls_hi, sf2_lo, sf2_hi, sn2_lo, sn2_hi, ls_prior_a, ls_prior_b; };
struct pl_gp_fit_opts pl_gp_fit_defaults(void);

enum pl_status pl_gp_new(struct pl_gp **out, int d, enum pl_gp_kernel kernel);
void pl_gp_free(struct pl_gp *gp);
/* Copy the data (X row-major n x d, y[n]). y is standardised: (y − mean) / std with the
 * population std (1 where it is 0). Non-finite values are rejected. Keeps hyperparameters. */
enum pl_status pl_gp_set_data(struct pl_gp *gp, const double *X, const double *y, int n);
/* Set hyperparameters (ls[d], sf2, sn2; sf2 and sn2 in the standardised scale) and factor K. */
enum pl_status pl_gp_set_hyper(struct pl_gp *gp, const double *ls, double sf2, double sn2);
void pl_gp_get_hyper(const struct pl_gp *gp, double *ls, double *sf2, double *sn2);
/* Fit the hyperparameters (b NULL: defaults): L-BFGS from the current ones, then from
 * n_restarts random starts (log-uniform in the bounds or their central 70%) drawn from rng;
 * the best is polished by one more L-BFGS run when n_restarts > 0. Leaves K factored at the
 * best; keeps the old hyperparameters if no start gives a finite LML. */
enum pl_status pl_gp_fit(struct pl_gp *gp, const struct pl_gp_fit_opts *b, int n_restarts, int max_iter,
                         struct pl_rng *rng);
/* Log marginal likelihood of the standardised y at the current hyperparameters. */
double pl_gp_lml(const struct pl_gp *gp);
/* LML and its gradient (grad[d+2]) at θ = (log l, log sf2, log sn2) without changing the GP's
 * hyperparameters. Returns −inf where K is not positive definite. */
double pl_gp_lml_grad(struct pl_gp *gp, const double *theta, double *grad);
/* Posterior of the latent f at m points (Xs row-major m x d): mean[m], var[m] (var may be
 * NULL). standardized = 0: in the units of y; 1: in the standardised units. */
enum pl_status pl_gp_predict(struct pl_gp *gp, const double *Xs, int m, double *mean, double *var,
                             int standardized);
int  pl_gp_n(const struct pl_gp *gp);
void pl_gp_ystats(const struct pl_gp *gp, double *mean, double *std);

/* ---- search spaces and the optimiser ---- */
enum pl_tune_type { PL_TUNE_REAL = 0, PL_TUNE_INT = 1, PL_TUNE_CAT = 2 };

struct pl_tune_param {
    const char *name;
    enum pl_tune_type type;
    double lo, hi;          /* real/int: inclusive bounds (lo == hi: a fixed dimension) */
    int log;                /* real/int: search on a log scale (lo > 0) */
    int pow2;               /* int: only powers of two in [lo, hi] */
    int n_choices;          /* cat: number of choices (>= 1) */
    const char *const *choices;   /* cat: labels, unique (used by history JSON) */
};

enum pl_tune_acq { PL_TUNE_EI = 0, PL_TUNE_UCB = 1 };

/* Constraint between parameters: return 1 if the decoded values v[np] are allowed, 0 if not,
 * −1 to abort the ask (the callback has set a message with pl_fail). */
typedef int (*pl_tune_feasible_fn)(const double *v, void *ud);

struct pl_tune_opts {
    uint64_t seed;
    int n_init;               /* Latin-hypercube design size; 0 = max(5, 2·dims) */
    enum pl_tune_acq acq;
    enum pl_gp_kernel kernel;
    double xi;                /* EI: improvement margin (standardised units) */
    double kappa;             /* UCB: μ − κσ is minimised */
    int n_candidates;         /* random candidates per acquisition maximisation */
    int n_restarts;           /* GP fit: random restarts beyond the warm start */
    int failure_model;        /* failed trials always enter the GP at the worst value seen (a
                                 penalty); 1 also fits a second GP to success (+1) / failure (−1)
                                 labels and maximises acq + log P(success), P = Φ(μ_c/σ_c) */
    pl_tune_feasible_fn feasible;
    void *feasible_ud;
};
struct pl_tune_opts pl_tune_defaults(void);

struct pl_tune;   /* opaque */

/* Encoded dimensions (one per real/int, one per categorical choice) a space may have. */
#define PL_TUNE_MAX_DIMS 1024

enum pl_status pl_tune_new(struct pl_tune **out, const struct pl_tune_param *params, int np,
                           const struct pl_tune_opts *opts);
void pl_tune_free(struct pl_tune *t);
int  pl_tune_nparams(const struct pl_tune *t);
const struct pl_tune_param *pl_tune_param(const struct pl_tune *t, int i);   /* NULL if out of range */
/* Replace the constraint callback (e.g. the Lua binding installs its trampoline per call). */
void pl_tune_set_feasible(struct pl_tune *t, pl_tune_feasible_fn fn, void *ud);

/* Propose q points (out[q*np], decoded). Points asked and not yet told are "pending": later
 * proposals treat them as observed at the GP's mean (kriging believer), so batches and
 * repeated asks spread out. */
enum pl_status pl_tune_ask(struct pl_tune *t, int q, double *out);
/* Record an observation. A non-finite y (NaN, ±inf) marks a failed trial: it is modelled as a
 * penalty (the worst finite value seen) or by the failure model (opts.failure_model) so the
 * search moves away from it. Removes a matching
 * pending point. Values are checked against the space (range, integrality, choice index). */
enum pl_status pl_tune_tell(struct pl_tune *t, const double *v, double y);
/* tell() with named metrics kept with the trial (e.g. "time", "memory"; any finite or
 * non-finite double) for the Pareto helper and the history file. Keys are copied. */
enum pl_status pl_tune_tell_metrics(struct pl_tune *t, const double *v, double y, int nm,
                                    const char *const *keys, const double *vals);
/* The metrics of observation i: returns their count and points keys/vals at them (valid until
 * the optimiser is freed); 0 if none or i is out of range. */
int pl_tune_obs_metrics(const struct pl_tune *t, int i, const char *const **keys, const double **vals);
/* Check values against the space as tell() does, without recording anything. */
enum pl_status pl_tune_check(const struct pl_tune *t, const double *v);
/* The best finite observation; PL_ERR_STATE if there is none. */
enum pl_status pl_tune_best(const struct pl_tune *t, double *v, double *y);
int  pl_tune_count(const struct pl_tune *t);                         /* observations told */
/* Observation i (0-based, in the order told): v[np], y (as told; NaN for a failure). */
enum pl_status pl_tune_obs(const struct pl_tune *t, int i, double *v, double *y);
int  pl_tune_pending(const struct pl_tune *t);
void pl_tune_clear_pending(struct pl_tune *t);

/* History as JSON:
 *   {"format": "peftlua-tune-history", "version": 1,
 *    "space": [{"name":..., "type": "real"|"int"|"cat", "lo":, "hi":, "log":, "pow2":, "choices": [...]}],
 *    "trials": [{"params": {"lr": 0.001, "rank": 8, "method": "lora"}, "value": 0.25}
 *               | {..., "value": null, "failed": true}], optional "metrics": {"time": 12.5}}
 * Numbers are printed to 15 significant digits where that reads back within an ulp.
 * Load checks the space matches this optimiser's (names, types, bounds, choices) and tells
 * every trial; a mismatch or malformed file fails with the file and the trial named. */
enum pl_status pl_tune_save(const struct pl_tune *t, const char *path);
enum pl_status pl_tune_load(struct pl_tune *t, const char *path);

/* ---- standard test functions and the efficiency study (tune_study.c) ----
 * "branin" (2-D on [−5,10]×[0,15], min 0.397887), "hartmann3" (3-D on [0,1]³, min −3.86278),
 * "hartmann6" (6-D on [0,1]⁶, min −3.32237). */
struct pl_tune_testfn {
    const char *name;
    int d;
    double lo[6], hi[6];
    double fmin;
    double (*f)(const double *x);
};
const struct pl_tune_testfn *pl_tune_testfn(const char *name);   /* NULL if unknown */
/* One run: minimise fn with `budget` evaluations by Bayesian optimisation (random = 0, with the
 * default options and this seed) or by uniform random search (random = 1); *regret = best
 * value found − fmin; trace (may be NULL) receives the best-so-far regret after each of the
 * `budget` evaluations. */
enum pl_status pl_tune_study_run(const char *fn, int random, uint64_t seed, int budget, double *regret,
                                 double *trace);

#endif
