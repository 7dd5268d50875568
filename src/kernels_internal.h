/* kernels_internal.h — helpers shared by src/kernels*.c only (owner: kernels). Not public. */
#ifndef PEFTLUA_KERNELS_INTERNAL_H
#define PEFTLUA_KERNELS_INTERNAL_H

#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
static inline int pl_k_max_threads(void) { return omp_get_max_threads(); }
static inline int pl_k_thread_id(void)   { return omp_get_thread_num(); }
#else
static inline int pl_k_max_threads(void) { return 1; }
static inline int pl_k_thread_id(void)   { return 0; }
#endif

/* Dot product with eight independent lanes summed in a fixed order at the end: vectorisable
 * without -ffast-math and deterministic (the same result on every thread and run). */
static inline float pl_k_dot(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* y[i] += a * x[i] */
static inline void pl_k_axpy(float *restrict y, float a, const float *restrict x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

#endif
