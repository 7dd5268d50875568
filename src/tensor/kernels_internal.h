/* kernels_internal.h — helpers shared by src/kernels*.c only (owner: kernels). Not public. */
#ifndef PEFTLUA_KERNELS_INTERNAL_H
#define PEFTLUA_KERNELS_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include "peftlua/alloc.h"

/* One block of workspace kept from a call for the next (gemm16.c, attn16.c): a step makes
 * hundreds of calls, and a fresh multi-KiB/MiB block each time costs page faults and page
 * clearing. pl_k_kept_get hands out the kept block (grown to `need`) when it is free and
 * `need` <= `keep`, else a fresh one; a concurrent caller finding it busy gets its own.
 * pl_k_kept_put gives either back; the block stays counted as workspace while kept and
 * pl_k_kept_release frees it. NULL: out of memory. */
struct pl_k_kept { pthread_mutex_t lock; void *p; size_t bytes; };
#define PL_K_KEPT_INIT { PTHREAD_MUTEX_INITIALIZER, NULL, 0 }

static inline void *pl_k_kept_get(struct pl_k_kept *k, size_t need, size_t keep)
{
    if (need <= keep && pthread_mutex_trylock(&k->lock) == 0) {
        if (k->bytes < need) {
            pl_free(k->p);
            k->p = pl_alloc(need, PL_MEM_WORKSPACE);
            k->bytes = k->p ? need : 0;
        }
        if (k->p) return k->p;                    /* unlocked by pl_k_kept_put */
        pthread_mutex_unlock(&k->lock);
        return NULL;
    }
    return pl_alloc(need, PL_MEM_WORKSPACE);
}

static inline void pl_k_kept_put(struct pl_k_kept *k, void *p)
{
    if (p && p == k->p) pthread_mutex_unlock(&k->lock);
    else pl_free(p);
}

static inline void pl_k_kept_release(struct pl_k_kept *k)
{
    pthread_mutex_lock(&k->lock);
    pl_free(k->p);
    k->p = NULL;
    k->bytes = 0;
    pthread_mutex_unlock(&k->lock);
}

#ifdef _OPENMP
#include <omp.h>
static inline int pl_k_max_threads(void) { return omp_get_max_threads(); }
static inline int pl_k_thread_id(void)   { return omp_get_thread_num(); }
#else
static inline int pl_k_max_threads(void) { return 1; }
static inline int pl_k_thread_id(void)   { return 0; }
#endif

/* Parallel regions only for work worth waking threads for (a wake-up and barrier cost
 * microseconds, and far more on a busy machine where a thread may be descheduled). The
 * pieces do not change with this, only who runs them, so results stay the same. */
#define PL_K_PAR_MIN (1 << 15)
#define PL_K_PAR(work) ((int64_t)(work) >= PL_K_PAR_MIN)

/* e^x for the softmax/sigmoid loops: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a
 * degree-6 polynomial for e^r (Cephes expf coefficients) and 2^n put into the exponent bits.
 * Branch-free and call-free so that `omp simd` loops vectorise it (glibc's expf does not vectorise without
 * -ffast-math); relative error below 2e-7 over the clamped range [-87, 88] — inputs below -87
 * give about 1.6e-38 instead of a denormal, which no sum here can notice. */
static inline float pl_k_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* n = round(x / ln2) by the 1.5·2^23 trick: vectorises where floorf/rintf do not (they
     * need -fno-trapping-math); exact for |x / ln2| < 2^22 under round-to-nearest. */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    /* NaN passes the clamps above: give NaN back without converting it to an integer (UB) */
    const int nan = n != n;
    int32_t bits = ((nan ? 0 : (int32_t)n) + 127) * (1 << 23);
    float sc;
    memcpy(&sc, &bits, sizeof sc);
    return nan ? n : e * sc;
}

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

/* The attention products in bf16 (attn16.c): 1 where they ran (compute mode bf16 on an
 * AVX512_BF16 CPU, T >= PL_GEMM16_MIN_ROWS), 0 where the caller must run its f32 path. */
int pl_attn16_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                  int64_t B, int64_t T, int64_t past, int64_t Tcap, int64_t NH, int64_t NKV,
                  int64_t HD);
int pl_attn16_bwd(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                  const float *q, const float *k, const float *v, int64_t B, int64_t T,
                  int64_t past, int64_t Tcap, int64_t NH, int64_t NKV, int64_t HD);
/* Frees attn16's kept workspace (called by pl_gemm16_release). */
void pl_attn16_release(void);

#endif
