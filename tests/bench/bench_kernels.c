/* bench_kernels.c — speed figures for the layer kernels (owner: kernels). Never fails on time.
 *
 * Prints the machine (CPU model from /proc/cpuinfo), OpenMP and BLAS thread counts and the
 * OpenBLAS core type, then:
 *  - linear forward and input-gradient GFLOP/s at M=1024, K=576, N=1536 (a SmolLM2-135M MLP
 *    projection at batch 4 x 256) for f32, Q4_1 and NF4 weights (and Q8_0, Q4_K for reference);
 *  - the raw sgemm rate of the same shape (the yardstick for model-FLOPs utilisation);
 *  - attention forward/backward at SmolLM2-135M's shape (B=4, T=256, 9 heads, 3 kv heads, 64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "peftlua/hw.h"
#include "peftlua/blas.h"
#include "peftlua/kernels.h"
#include "peftlua/quant.h"
#include "peftlua/tensor.h"

#include "bench.h"

int main(void)
{
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    int omp = 1;
#ifdef _OPENMP
    omp = omp_get_max_threads();
#endif
    printf("bench_kernels: CPU %s | OpenMP threads %d | BLAS threads %d | OpenBLAS core %s\n",
           cpu, omp, pl_blas_threads(), pl_blas_corename());

    const int64_t M = 1024, K = 576, N = 1536;
    unsigned seed = 42;
    float *x = rnd((size_t)(M * K), 1, &seed), *W = rnd((size_t)(N * K), 0.05f, &seed);
    float *dy = rnd((size_t)(M * N), 1, &seed), *y = malloc((size_t)(M * N) * sizeof(float));
    float *dx = calloc((size_t)(M * K), sizeof(float));
    double flops = 2.0 * (double)M * (double)K * (double)N;

    double t; BEST(t, 5, pl_sgemm(0, 1, M, N, K, 1.0f, x, K, W, K, 0.0f, y, N));
    printf("  sgemm %lldx%lldx%lld (BLAS, %d threads)           %8.1f GFLOP/s\n",
           (long long)M, (long long)K, (long long)N, pl_blas_threads(), flops / t * 1e-9);

    enum pl_dtype types[] = {PL_F32, PL_Q4_1, PL_NF4, PL_Q8_0, PL_Q4_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        enum pl_dtype ty = types[i];
        const void *w = W;
        void *wq = NULL;
        if (ty != PL_F32) {
            size_t rb = pl_dtype_row_bytes(ty, K);
            if (rb == 0) {
                printf("  linear %-5s: K=%lld is not a whole number of blocks, skipped\n",
                       pl_dtype_info(ty)->name, (long long)K);
                continue;
            }
            wq = malloc((size_t)N * rb);
            for (int64_t n = 0; n < N; n++)
                if (pl_quant_row(ty, W + n * K, (uint8_t *)wq + (size_t)n * rb, K) != PL_OK) {
                    printf("  linear %-5s: quantisation failed: %s\n", pl_dtype_info(ty)->name,
                           pl_last_error());
                    free(wq);
                    wq = NULL;
                    break;
                }
            if (!wq) continue;
            w = wq;
        }
        double tf; BEST(tf, 5, pl_linear_fwd(y, x, w, ty, NULL, M, K, N));
        double tb; BEST(tb, 5, pl_linear_bwd(dx, NULL, NULL, dy, x, w, ty, M, K, N));
        printf("  linear %-5s fwd %7.1f GFLOP/s (%6.2f ms)   bwd dx %7.1f GFLOP/s (%6.2f ms)\n",
               pl_dtype_info(ty)->name, flops / tf * 1e-9, tf * 1e3, flops / tb * 1e-9, tb * 1e3);
        free(wq);
    }

    /* attention at SmolLM2-135M's shape */
    const int64_t B = 4, T = 256, NH = 9, NKV = 3, HD = 64;
    size_t nq = (size_t)(B * T * NH * HD), nk = (size_t)(B * T * NKV * HD);
    float *q = rnd(nq, 1, &seed), *k = rnd(nk, 1, &seed), *v = rnd(nk, 1, &seed);
    float *o = malloc(nq * sizeof(float)), *p = malloc((size_t)(B * NH * T * T) * sizeof(float));
    float *dq = calloc(nq, sizeof(float)), *dk = calloc(nk, sizeof(float)), *dv = calloc(nk, sizeof(float));
    double af = 4.0 * (double)B * NH * (double)T * (double)(T + 1) / 2.0 * (double)HD; /* QK + PV */
    double ta; BEST(ta, 3, pl_attention_fwd(o, p, q, k, v, B, T, 0, T, NH, NKV, HD));
    double tab; BEST(tab, 3, pl_attention_bwd(dq, dk, dv, o, p, q, k, v, B, T, 0, T, NH, NKV, HD));
    printf("  attention B=%lld T=%lld NH=%lld NKV=%lld HD=%lld fwd %6.2f ms (%5.1f GFLOP/s)  bwd %6.2f ms (%5.1f GFLOP/s)\n",
           (long long)B, (long long)T, (long long)NH, (long long)NKV, (long long)HD,
           ta * 1e3, af / ta * 1e-9, tab * 1e3, 2 * af / tab * 1e-9);

    /* the element-wise and row-wise kernels of one SmolLM2-135M step at 1024 tokens */
    {
        const int64_t R = M, C = 576, F = 1536, V = 49152;
        float *a = rnd((size_t)(R * F), 2, &seed), *b2 = rnd((size_t)(R * F), 1, &seed);
        float *c = malloc((size_t)(R * F) * sizeof(float)), *d = calloc((size_t)(R * F), sizeof(float));
        float *e = calloc((size_t)(R * F), sizeof(float)), *rs = malloc((size_t)R * sizeof(float));
        float *w = rnd((size_t)C, 1, &seed), *dw = calloc((size_t)C, sizeof(float));
        float *lg = rnd((size_t)(R * V), 4, &seed), *ls = malloc((size_t)R * sizeof(float));
        float *lse = malloc((size_t)R * sizeof(float));
        int32_t *pos = malloc((size_t)R * sizeof(int32_t)), *tg = malloc((size_t)R * sizeof(int32_t));
        for (int64_t i = 0; i < R; i++) { pos[i] = (int32_t)(i % 256); tg[i] = (int32_t)((i * 131) % V); }
        double mean, t1, t2, t3, t4, t5, t6, t7, t8;
        BEST(t1, 5, pl_rmsnorm_fwd(c, rs, a, w, R, C, 1e-5f));
        BEST(t2, 5, pl_rmsnorm_bwd(d, dw, b2, rs, a, w, R, C));
        BEST(t3, 5, pl_rope_fwd(c, a, pos, R, 9, 64, 10000.0f, PL_ROPE_NORMAL));
        BEST(t4, 5, pl_rope_bwd(d, b2, pos, R, 9, 64, 10000.0f, PL_ROPE_NORMAL));
        BEST(t5, 5, pl_swiglu_fwd(c, a, b2, R * F));
        BEST(t6, 5, pl_swiglu_bwd(d, e, b2, a, b2, R * F));
        BEST(t7, 3, pl_crossentropy_fwd(ls, lse, &mean, NULL, lg, tg, R, V));
        BEST(t8, 3, pl_crossentropy_bwd(lg, lse, lg, tg, 1.0f / (float)R, R, V));
        printf("  rmsnorm %lldx%lld fwd %.3f bwd %.3f ms | rope %lldx9x64 fwd %.3f bwd %.3f ms | swiglu %lldx%lld fwd %.3f bwd %.3f ms\n",
               (long long)R, (long long)C, t1 * 1e3, t2 * 1e3, (long long)R, t3 * 1e3, t4 * 1e3,
               (long long)R, (long long)F, t5 * 1e3, t6 * 1e3);
        printf("  cross-entropy %lldx%lld fwd %.2f ms bwd (in place) %.2f ms\n",
               (long long)R, (long long)V, t7 * 1e3, t8 * 1e3);
        free(a); free(b2); free(c); free(d); free(e); free(rs); free(w); free(dw); free(lg);
        free(ls); free(lse); free(pos); free(tg);
    }

    free(x); free(W); free(dy); free(y); free(dx);
    free(q); free(k); free(v); free(o); free(p); free(dq); free(dk); free(dv);
    return 0;
}
