/* bench_gemm16.c — f32 against bf16 matrix products on the training shapes (owner: kernels).
 * Never fails on time. Usage: bench_gemm16 [rows (1024)] [reps (3)] [threads list, e.g. "1,2"]
 *
 * Prints the machine (CPU model, ISA, OpenBLAS core), then for 1 and 2 threads:
 *  - peak GFLOP/s measured on this machine: a register-only loop of independent f32 FMAs
 *    (vfmadd231ps zmm: 32 flops each) and of bf16 dot products (vdpbf16ps zmm: 64 flops each);
 *    and the rate of a 1024³ product (OpenBLAS sgemm, pl_gemm16);
 *  - for every distinct GEMM of a SmolLM2-135M LoRA step (hidden 576, intermediate 1536, 9/3
 *    heads of 64, vocab 49152, `rows` = batch × sequence), forward y = x·Wᵀ and input
 *    gradient dx = dy·W: GFLOP/s of the f32 path (pl_linear_* with f32 weights: OpenBLAS sgemm;
 *    with Q4_1 weights: panel dequantisation + sgemm) and of the bf16 path (pl_gemm16 with the
 *    same weights), best of `reps` runs.
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
#include "peftlua/gemm16.h"
#include "peftlua/kernels.h"
#include "peftlua/quant.h"
#include "peftlua/tensor.h"

#include "bench.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define X86 1
#endif

#ifdef X86
#define ITERS 20000000L
/* 16 independent chains of each instruction, no memory: the issue rate the core sustains. */
__attribute__((target("avx512f"), noinline)) static float peak_fma(long iters)
{
    __m512 a[16], x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < iters; n++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    }
    __m512 s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"), noinline)) static float peak_dpbf16(long iters)
{
    __m512 a[16];
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x3f803f80);
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < iters; n++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = _mm512_dpbf16_ps(a[i], x, y);
    }
    __m512 s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

/* GFLOP/s of the loop on every thread at once (total flops / wall time). */
static double peak(int bf16, int nth)
{
    volatile float sink = 0;
    long it = ITERS / 4;
    double t0 = now();
    #pragma omp parallel num_threads(nth)
    {
        float s = bf16 ? peak_dpbf16(it) : peak_fma(it);
        #pragma omp atomic
        sink += s;
    }
    double t = now() - t0;
    (void)sink;
    return (double)nth * it * 16 * (bf16 ? 64 : 32) / t * 1e-9;
}
#endif

struct shape { const char *name; int64_t K, N; };   /* W [N, K] */

int main(int argc, char **argv)
{
    int64_t M = argc > 1 ? atoll(argv[1]) : 1024;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *tl = argc > 3 ? argv[3] : "1,2";
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    int avail = pl_gemm16_available();
    printf("bench_gemm16: %s, bf16 ISA %s, OpenBLAS core %s; rows %lld, best of %d\n", cpu,
           pl_gemm16_isa(), pl_blas_corename(), (long long)M, reps);
    const struct shape sh[] = {
        {"q,o  576->576", 576, 576},       {"k,v  576->192", 576, 192},
        {"gate,up 576->1536", 576, 1536},  {"down 1536->576", 1536, 576},
        {"head 576->49152", 576, 49152},
    };
    const int nsh = sizeof sh / sizeof sh[0];
    unsigned seed = 7;
    int64_t maxK = 1536, maxN = 49152;
    float *x = rnd((size_t)(M * maxK), 1.0f, &seed);
    float *dy = rnd((size_t)(M * maxN), 1.0f, &seed);
    float *y = malloc((size_t)(M * maxN) * sizeof(float));
    float *dx = calloc((size_t)(M * maxK), sizeof(float));
    for (const char *p = tl; *p;) {
        int nth = next_count(&p);
        if (nth < 1) continue;
        pl_blas_set_threads(nth);
        printf("\n%d thread%s:\n", nth, nth > 1 ? "s" : "");
#ifdef X86
        double pf = peak(0, nth), pb = avail ? peak(1, nth) : 0;
        printf("  peak (register loop): f32 FMA %.1f GFLOP/s, bf16 vdpbf16ps %.1f GFLOP/s\n", pf, pb);
#endif
        {
            int64_t n = 1024;
            float *a = rnd((size_t)(n * n), 1.0f, &seed), *b = rnd((size_t)(n * n), 1.0f, &seed);
            float *c = malloc((size_t)(n * n) * sizeof(float));
            double ts, tb = 0;
            BEST(ts, reps, pl_sgemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n));
            if (avail) BEST(tb, reps, pl_gemm16(c, a, b, PL_F32, 1, 0.0f, n, n, n));
            printf("  1024^3: sgemm %.1f GFLOP/s, gemm16 %.1f GFLOP/s\n", 2e-9 * n * n * n / ts,
                   avail ? 2e-9 * n * n * n / tb : 0.0);
            free(a); free(b); free(c);
        }
        printf("  %-20s %-4s %9s %9s %9s %9s %7s\n", "GEMM (W [N,K])", "pass", "f32", "f32 q4_1",
               "bf16", "bf16 q4_1", "bf16/f32");
        double tot[4] = {0, 0, 0, 0};
        for (int s = 0; s < nsh; s++) {
            int64_t K = sh[s].K, N = sh[s].N;
            float *W = rnd((size_t)(N * K), 0.05f, &seed);
            size_t rb = pl_dtype_row_bytes(PL_Q4_1, K);
            uint8_t *Wq = malloc((size_t)N * rb);
            for (int64_t r = 0; r < N; r++) pl_quant_row(PL_Q4_1, W + r * K, Wq + r * rb, K);
            double fl = 2.0 * M * N * K;
            for (int pass = 0; pass < 2; pass++) {
                double t[4] = {0, 0, 0, 0};
                pl_compute_set(PL_COMPUTE_F32);
                if (pass == 0) {
                    BEST(t[0], reps, pl_linear_fwd(y, x, W, PL_F32, NULL, M, K, N));
                    BEST(t[1], reps, pl_linear_fwd(y, x, Wq, PL_Q4_1, NULL, M, K, N));
                    if (avail) BEST(t[2], reps, pl_gemm16(y, x, W, PL_F32, 1, 0.0f, M, K, N));
                    if (avail) BEST(t[3], reps, pl_gemm16(y, x, Wq, PL_Q4_1, 1, 0.0f, M, K, N));
                } else {
                    BEST(t[0], reps, pl_linear_bwd(dx, NULL, NULL, dy, x, W, PL_F32, M, K, N));
                    BEST(t[1], reps, pl_linear_bwd(dx, NULL, NULL, dy, x, Wq, PL_Q4_1, M, K, N));
                    if (avail) BEST(t[2], reps, pl_gemm16(dx, dy, W, PL_F32, 0, 1.0f, M, N, K));
                    if (avail) BEST(t[3], reps, pl_gemm16(dx, dy, Wq, PL_Q4_1, 0, 1.0f, M, N, K));
                }
                for (int i = 0; i < 4; i++) tot[i] += t[i] * (s < 3 ? 2 : 1);   /* q,o / k,v / gate,up: two each */
                printf("  %-20s %-4s %9.1f %9.1f %9.1f %9.1f %6.2fx\n", sh[s].name, pass ? "dx" : "fwd",
                       fl / t[0] * 1e-9, fl / t[1] * 1e-9, avail ? fl / t[2] * 1e-9 : 0.0,
                       avail ? fl / t[3] * 1e-9 : 0.0, avail ? t[1] / t[3] : 0.0);
            }
            free(W); free(Wq);
        }
        printf("  one layer's 7 projections + head, fwd + dx: f32 %.1f ms, f32 q4_1 %.1f ms, bf16 %.1f ms, bf16 q4_1 %.1f ms\n",
               tot[0] * 1e3, tot[1] * 1e3, tot[2] * 1e3, tot[3] * 1e3);
    }
    free(x); free(dy); free(y); free(dx);
    return 0;
}
