/* bench_tune.c — the Bayesian optimiser's efficiency study and ask() speed (owner: tune).
 *
 *   build/<dir>/bench/bench_tune                 # full study (20 seeds x 30 evals) + speed
 *   build/<dir>/bench/bench_tune --seeds 5       # fewer seeds
 *   build/<dir>/bench/bench_tune --speed-only
 *   build/<dir>/bench/bench_tune --to-1pct 150  # also: evaluations to 1% of the optimum (10 seeds)
 *
 * Efficiency: for Branin, Hartmann-3 and Hartmann-6, the simple regret (best value found −
 * global minimum) after `budget` evaluations, by Bayesian optimisation (default options,
 * seed s) and by uniform random search (seed s), over seeds 1..N; prints medians and
 * quartiles. Speed: ask() with 200 observations in 6 dimensions on one BLAS thread.
 * Prints figures only; never fails on time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/utsname.h>
#include "peftlua/alloc.h"
#include "peftlua/blas.h"
#include "peftlua/tune.h"

#include "bench.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(const double *s, int n, double q)   /* s sorted; linear interpolation */
{
    double pos = q * (n - 1);
    int i = (int)pos;
    return i + 1 < n ? s[i] + (pos - i) * (s[i + 1] - s[i]) : s[n - 1];
}

static void machine(void)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p) { snprintf(model, sizeof model, "%s", p + 2); model[strcspn(model, "\n")] = 0; }
                break;
            }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    printf("machine: %s (%s %s); BLAS core %s, %d thread(s)\n", model, u.sysname, u.machine, pl_blas_corename(), pl_blas_threads());
}

static int study(int seeds, int budget)
{
    static const char *fns[3] = { "branin", "hartmann3", "hartmann6" };
    double *rb = malloc(sizeof(double) * seeds), *rr = malloc(sizeof(double) * seeds);
    printf("\nefficiency: simple regret after %d evaluations, %d seeds (BO: peft.tune defaults, Matern 5/2 + log EI)\n", budget, seeds);
    printf("%-10s | %-29s | %-29s | %s\n", "function", "BO median [q25, q75]", "random median [q25, q75]", "random/BO");
    for (int f = 0; f < 3; f++) {
        double t0 = now();
        for (int s = 0; s < seeds; s++) {
            if (pl_tune_study_run(fns[f], 0, (uint64_t)s + 1, budget, &rb[s], NULL) ||
                pl_tune_study_run(fns[f], 1, (uint64_t)s + 1, budget, &rr[s], NULL)) {
                fprintf(stderr, "bench_tune: %s\n", pl_last_error());
                free(rb); free(rr);
                return 1;
            }
        }
        qsort(rb, seeds, sizeof *rb, cmp);
        qsort(rr, seeds, sizeof *rr, cmp);
        double mb = quantile(rb, seeds, 0.5), mr = quantile(rr, seeds, 0.5);
        printf("%-10s | %9.3g [%8.3g, %8.3g] | %9.3g [%8.3g, %8.3g] | %8.1fx   (%.1f s)\n", fns[f], mb,
               quantile(rb, seeds, 0.25), quantile(rb, seeds, 0.75), mr, quantile(rr, seeds, 0.25),
               quantile(rr, seeds, 0.75), mr / mb, now() - t0);
        fflush(stdout);
    }
    free(rb); free(rr);
    return 0;
}

/* Evaluations until the best value is within 1% of the optimum, |f − f*| <= 0.01 |f*| (the
 * criterion of Jones, Schonlau & Welch 1998 for EGO). Runs that never get there count as
 * max + 1 ("> max" in the median if more than half do). */
static int to_1pct(int seeds, int maxev)
{
    static const char *fns[3] = { "branin", "hartmann3", "hartmann6" };
    enum { RS_MAX = 20000 };
    double *tr = malloc(sizeof(double) * RS_MAX), *nb = malloc(sizeof(double) * seeds), *nr = malloc(sizeof(double) * seeds);
    printf("\nevaluations to reach 1%% of the optimum, median over %d seeds (BO capped at %d, random at %d)\n", seeds, maxev, RS_MAX);
    printf("%-10s | %-14s | %-14s\n", "function", "BO", "random search");
    for (int f = 0; f < 3; f++) {
        const struct pl_tune_testfn *tf = pl_tune_testfn(fns[f]);
        double tol = 0.01 * fabs(tf->fmin), r, t0 = now();
        for (int s = 0; s < seeds; s++) {
            if (pl_tune_study_run(fns[f], 0, (uint64_t)s + 1, maxev, &r, tr)) { fprintf(stderr, "bench_tune: %s\n", pl_last_error()); return 1; }
            nb[s] = maxev + 1;
            for (int e = 0; e < maxev; e++) if (tr[e] <= tol) { nb[s] = e + 1; break; }
            pl_tune_study_run(fns[f], 1, (uint64_t)s + 1, RS_MAX, &r, tr);
            nr[s] = RS_MAX + 1;
            for (int e = 0; e < RS_MAX; e++) if (tr[e] <= tol) { nr[s] = e + 1; break; }
        }
        qsort(nb, seeds, sizeof *nb, cmp);
        qsort(nr, seeds, sizeof *nr, cmp);
        double mb = quantile(nb, seeds, 0.5), mr = quantile(nr, seeds, 0.5);
        char a[32], b[32];
        if (mb > maxev) snprintf(a, sizeof a, "> %d", maxev); else snprintf(a, sizeof a, "%.1f", mb);
        if (mr > RS_MAX) snprintf(b, sizeof b, "> %d", RS_MAX); else snprintf(b, sizeof b, "%.1f", mr);
        printf("%-10s | %-14s | %-14s   (%.1f s)\n", fns[f], a, b, now() - t0);
        fflush(stdout);
    }
    free(tr); free(nb); free(nr);
    return 0;
}

static int speed(void)
{
    const struct pl_tune_testfn *h6 = pl_tune_testfn("hartmann6");
    static const char *names[6] = { "x1", "x2", "x3", "x4", "x5", "x6" };
    struct pl_tune_param ps[6];
    for (int k = 0; k < 6; k++) ps[k] = (struct pl_tune_param){ .name = names[k], .type = PL_TUNE_REAL, .lo = 0, .hi = 1 };
    struct pl_tune_opts o = pl_tune_defaults();
    struct pl_tune *t;
    if (pl_tune_new(&t, ps, 6, &o)) { fprintf(stderr, "bench_tune: %s\n", pl_last_error()); return 1; }
    struct pl_rng r;
    pl_rng_seed(&r, 99);
    double x[6];
    for (int i = 0; i < 200; i++) {
        for (int k = 0; k < 6; k++) x[k] = pl_rng_uniform(&r);
        pl_tune_tell(t, x, h6->f(x));
    }
    double wall[6], cpu[6];
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now(), c0 = cpu_now();
        if (pl_tune_ask(t, 1, x)) { fprintf(stderr, "bench_tune: %s\n", pl_last_error()); pl_tune_free(t); return 1; }
        wall[rep] = now() - t0;
        cpu[rep] = cpu_now() - c0;
        pl_tune_clear_pending(t);
    }
    printf("\nspeed: ask() with 200 observations in 6-D, 1 BLAS thread (target <= 200 ms)\n");
    printf("  first ask (GP fit from default hyperparameters): %6.1f ms wall, %6.1f ms CPU\n", 1e3 * wall[0], 1e3 * cpu[0]);
    qsort(wall + 1, 5, sizeof(double), cmp);
    qsort(cpu + 1, 5, sizeof(double), cmp);
    printf("  later asks (warm-started fit), median of 5:      %6.1f ms wall, %6.1f ms CPU\n", 1e3 * wall[3], 1e3 * cpu[3]);
    printf("  peak workspace: %.2f MB\n", pl_mem_peak(PL_MEM_WORKSPACE) / 1e6);
    pl_tune_free(t);
    return 0;
}

int main(int argc, char **argv)
{
    int seeds = 20, budget = 30, speed_only = 0, pct = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) seeds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) budget = atoi(argv[++i]);
        else if (strcmp(argv[i], "--speed-only") == 0) speed_only = 1;
        else if (strcmp(argv[i], "--to-1pct") == 0 && i + 1 < argc) pct = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--seeds N] [--budget N] [--speed-only] [--to-1pct MAX_EVALS]\n", argv[0]); return 2; }
    }
    if (seeds < 1 || budget < 1) { fprintf(stderr, "bench_tune: seeds and budget must be >= 1\n"); return 2; }
    pl_blas_set_threads(1);
    printf("bench_tune\n");
    machine();
    if (speed()) return 1;
    if (!speed_only && study(seeds, budget)) return 1;
    if (pct > 0 && to_1pct(seeds < 10 ? seeds : 10, pct)) return 1;
    return 0;
}
