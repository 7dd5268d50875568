/* blas.c — thin row-major wrapper over CBLAS (owner: kernels).
 *
 * The only file in peftlua that includes cblas.h (see include/peftlua/blas.h). The thread and
 * core-name queries are OpenBLAS extensions; other BLAS libraries report "unknown" / 1 thread
 * when built with -DPL_BLAS_GENERIC.
 */
#include "peftlua/blas.h"
#include <cblas.h>

#ifndef PL_BLAS_GENERIC
/* Declared by OpenBLAS's cblas.h on most installs; repeated here for installs that do not. */
int   openblas_get_num_threads(void);
void  openblas_set_num_threads(int n);
char *openblas_get_corename(void);
#endif

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
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha,
                A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

int pl_blas_threads(void)
{
#ifndef PL_BLAS_GENERIC
    return openblas_get_num_threads();
#else
    return 1;
#endif
}

void pl_blas_set_threads(int n)
{
    if (n < 1) n = 1;
#ifndef PL_BLAS_GENERIC
    openblas_set_num_threads(n);
#else
    (void)n;
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
