/* tests/bench/bench.h — what the benchmark programs share: a monotonic clock, the CPU's name as
 * the engine reports it (peft.hw), random inputs, best-of-N timing and comma-separated counts. */
#ifndef PL_BENCH_H
#define PL_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "peftlua/hw.h"

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void cpu_model(char *buf, size_t n)
{
    struct pl_hw hw;
    snprintf(buf, n, "%s", pl_hw_query(&hw) == PL_OK && hw.cpu_model[0] ? hw.cpu_model : "unknown");
}

/* n floats uniform in [-s, s] (malloc'd) */
static inline float *rnd(size_t n, float s, unsigned *seed)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = ((float)rand_r(seed) / (float)RAND_MAX * 2.0f - 1.0f) * s;
    return p;
}

/* out = best (smallest) wall time in seconds of `reps` runs of stmt. */
#define BEST(out, reps, stmt) do { out = 1e30; for (int r_ = 0; r_ < (reps); r_++) {        \
        double t0_ = now(); stmt; double t_ = now() - t0_; if (t_ < out) out = t_; } } while (0)

/* The next entry of a comma-separated list of counts ("1,2"), *p moved past it. */
static inline int next_count(const char **p)
{
    int v = atoi(*p);
    while (**p && **p != ',') (*p)++;
    if (**p == ',') (*p)++;
    return v;
}

#endif
