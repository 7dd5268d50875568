/* blas.h — the one wrapper around BLAS (owner: kernels).
 *
 * src/blas.c is the only file that includes cblas.h; swapping the BLAS touches that file alone.
 * Matrices are row-major. pl_sgemm computes
 *     C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]
 * with op(X) = X or Xᵀ (trans_a / trans_b non-zero), lda/ldb/ldc the row strides in elements of
 * A, B and C as stored (so A is [M,K] with lda >= K, or [K,M] with lda >= M when transposed).
 *
 * Threads: BLAS keeps its own thread pool (OpenBLAS pthreads build on Debian). peftlua's own
 * loops use OpenMP. The two never run nested at full width: a kernel that calls BLAS from inside
 * an OpenMP parallel region first pins BLAS to one thread (pl_blas_set_threads(1)) and restores
 * the previous count afterwards, so at most omp_get_max_threads() threads are busy at a time.
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

#endif
