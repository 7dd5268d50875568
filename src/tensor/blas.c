/* blas.c — row-major sgemm over CBLAS, run on peftlua's one thread pool (owner: kernels).
 *
 * The only file in peftlua that includes cblas.h (see include/peftlua/blas.h for the policy).
 * OpenBLAS's own thread pool is set to one thread once, before the first product; a large
 * pl_sgemm is cut into fixed pieces (tiles of the output) shared among OpenMP threads, each piece one single-threaded BLAS call. Why: mixing
 * OpenBLAS's pthreads pool with the OpenMP pool of the other kernels made each pool spin while
 * the other worked — measured on 2 cores, a linear + attention + SwiGLU sequence took 26-30 ms
 * against 15 ms for its parts run separately. With one pool it takes the sum of its parts.
 * The piece boundaries depend only on the shape, so results do not depend on the thread count.
 *
 * The thread and core-name queries are OpenBLAS extensions; with another CBLAS build with
 * -DPL_BLAS_GENERIC (then the library's own threading is whatever it is configured to be).
 */
#include "peftlua/blas.h"
#include <cblas.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many multiply-adds a product runs as one call: a parallel region costs more. */
#define SPLIT_MIN_MACS (1 << 17)
#define TILE_M 256
#define TILE_N 512

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void)
{
#ifndef PL_BLAS_GENERIC
    openblas_set_num_threads(1);
#endif
}

static void gemm1(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                  float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha,
                A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void pl_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {                      /* BLAS would still scale C by beta; do the same */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    pthread_once(&blas_once, blas_init);
#ifdef _OPENMP
    /* Split by shape alone (also with one thread), so the pieces, and the rounding, are the same
     * whatever the thread count: BLAS rounds an element differently depending on the shape of
     * the call it is in. Inside any parallel region — active or not, hence omp_get_level() and
     * not omp_in_parallel(), which is false in a team of one — it is one plain call. */
    if (omp_get_level() == 0 && (double)M * N * K >= SPLIT_MIN_MACS) {
        /* Pieces: tiles of TILE_M rows x TILE_N columns of C. Each piece packs its own rows of
         * op(A) and columns of op(B); at 256 x 512 one thread runs the tiles as fast as one
         * whole call (measured, 1 thread: 114-118 vs 112-122 GFLOP/s on SmolLM2 shapes; 128 x
         * 256 tiles lost about 8%), and a 1024-token step still has 4-12 pieces per product. */
        int64_t tm = (M + TILE_M - 1) / TILE_M, tn = (N + TILE_N - 1) / TILE_N;
        if (tm * tn > 1) {
            #pragma omp parallel for schedule(dynamic, 1)
            for (int64_t p = 0; p < tm * tn; p++) {
                int64_t m0 = (p / tn) * TILE_M, n0 = (p % tn) * TILE_N;
                int64_t mm = M - m0 < TILE_M ? M - m0 : TILE_M;
                int64_t nn = N - n0 < TILE_N ? N - n0 : TILE_N;
                const float *Ap = trans_a ? A + m0 : A + m0 * lda;
                const float *Bp = trans_b ? B + n0 * ldb : B + n0;
                gemm1(trans_a, trans_b, mm, nn, K, alpha, Ap, lda, Bp, ldb, beta,
                      C + m0 * ldc + n0, ldc);
            }
            return;
        }
    }
#endif
    gemm1(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int pl_blas_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void pl_blas_set_threads(int n)
{
    if (n < 1) n = 1;
    pthread_once(&blas_once, blas_init);
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* OpenBLAS kernel families, weakest first, as far as sgemm is concerned: the SSE-era cores,
 * then AVX (Sandybridge), AVX2 + FMA (Haswell, Zen), AVX-512 (SkylakeX and later). A DYNAMIC_ARCH
 * OpenBLAS that does not know a CPU model falls back to Prescott: Debian 12's 0.3.21 does so
 * on Sapphire/Emerald Rapids, whose AVX-512 then runs SSE3 kernels at a quarter of the rate
 * (measured on 2 cores: Prescott 60, Haswell 155, SkylakeX 232 GFLOP/s at 1024 x 2304 x 576). */
static int core_rank(const char *name)
{
    static const char *const avx512[] = { "SkylakeX", "Cooperlake", "SapphireRapids" };
    static const char *const avx2[] = { "Haswell", "Zen", "Zen3", "Zen4", "Excavator", "Steamroller" };
    for (size_t i = 0; i < sizeof avx512 / sizeof avx512[0]; i++) if (!strcasecmp(name, avx512[i])) return 3;
    for (size_t i = 0; i < sizeof avx2 / sizeof avx2[0]; i++) if (!strcasecmp(name, avx2[i])) return 2;
    if (!strcasecmp(name, "Sandybridge") || !strcasecmp(name, "Bulldozer") || !strcasecmp(name, "Piledriver")) return 1;
    return 0;
}

const char *pl_blas_better_coretype(void)
{
#if !defined(PL_BLAS_GENERIC) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    const char *best = NULL;
    int want = 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) { best = "SkylakeX"; want = 3; }
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) { best = "Haswell"; want = 2; }
    return best && core_rank(pl_blas_corename()) < want ? best : NULL;
#else
    return NULL;
#endif
}

const char *pl_blas_corename(void)
{
#ifndef PL_BLAS_GENERIC
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
#else
    return "unknown";
#endif
}
