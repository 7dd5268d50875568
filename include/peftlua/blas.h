/* blas.h — the one wrapper around BLAS (owner: kernels).
 *
 * src/tensor/blas.c is the only file that includes cblas.h; swapping the BLAS touches that file alone.
 * Matrices are row-major. pl_sgemm computes
 *     C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]
 * with op(X) = X or Xᵀ (trans_a / trans_b non-zero), lda/ldb/ldc the row strides in elements of
 * A, B and C as stored (so A is [M,K] with lda >= K, or [K,M] with lda >= M when transposed).
 *
 * Threads — one pool: peftlua runs all its parallel work, BLAS included, on OpenMP threads.
 * OpenBLAS's own pthreads pool is set to one thread before the first product, and pl_sgemm cuts
 * a large product into fixed pieces (tiles of C) that OpenMP threads share, one
 * single-threaded BLAS call each; called inside a parallel region it is one plain call. Two
 * pools busy-waiting against each other cost up to 2x on a small machine (measured; see
 * src/tensor/blas.c). The pieces depend only on the shape, so pl_sgemm gives bit-identical results
 * for any thread count.
 * pl_blas_threads() is the number of threads a pl_sgemm uses (the OpenMP team size) and
 * pl_blas_set_threads(n) sets it (omp_set_num_threads): it is the engine's thread count.
 */
#ifndef PEFTLUA_BLAS_H
#define PEFTLUA_BLAS_H

#include <stdint.h>

void pl_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc);

int         pl_blas_threads(void);          /* BLAS threads in use */
void        pl_blas_set_threads(int n);     /* n >= 1 */
const char *pl_blas_corename(void);         /* OpenBLAS core type, e.g. "Haswell", or "unknown" */
/* The OpenBLAS core type this CPU could use when the one OpenBLAS chose is a weaker family
 * ("SkylakeX" for AVX-512 F/BW/DQ/VL, "Haswell" for AVX2 + FMA), else NULL. OpenBLAS reads
 * OPENBLAS_CORETYPE only when it loads, so a program acts on this by setting the variable and
 * re-executing itself, as the peftlua host does when the user has not set it. */
const char *pl_blas_better_coretype(void);

#endif
