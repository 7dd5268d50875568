/* linalg.c — Cholesky factorisation, solves and inverse for the Gaussian process (owner: tune).
 *
 * Thin wrappers over LAPACK as shipped by OpenBLAS (pkg-config openblas links it). The Fortran
 * prototypes are declared here and nowhere else; every argument is passed by reference and
 * character arguments carry a hidden length, which the Fortran ABI appends as size_t.
 * Matrices are column-major (see linalg.h).
 */
#include <math.h>
#include <stddef.h>
#include "peftlua/linalg.h"

extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
extern void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
                    double *b, const int *ldb, int *info, size_t);
extern void dtrtrs_(const char *uplo, const char *trans, const char *diag, const int *n, const int *nrhs,
                    const double *a, const int *lda, double *b, const int *ldb, int *info,
                    size_t, size_t, size_t);

enum pl_status pl_chol(double *A, int n)
{
    int info = 0, lda = n > 0 ? n : 1;
    if (n <= 0) return pl_fail(PL_ERR_ARG, "linalg: cholesky of an empty matrix");
    dpotrf_("L", &n, A, &lda, &info, 1);
    if (info > 0) return pl_fail(PL_ERR_ARG, "linalg: matrix not positive definite (pivot %d of %d)", info, n);
    if (info < 0) return pl_fail(PL_ERR_ARG, "linalg: dpotrf argument %d invalid", -info);
    return PL_OK;
}

enum pl_status pl_chol_solve(const double *L, int n, double *B, int nrhs)
{
    int info = 0, lda = n > 0 ? n : 1;
    if (n <= 0 || nrhs <= 0) return PL_OK;
    dpotrs_("L", &n, &nrhs, L, &lda, B, &lda, &info, 1);
    if (info != 0) return pl_fail(PL_ERR_ARG, "linalg: dpotrs argument %d invalid", -info);
    return PL_OK;
}

enum pl_status pl_tri_solve(const double *L, int n, double *B, int nrhs, int trans)
{
    int info = 0, lda = n > 0 ? n : 1;
    if (n <= 0 || nrhs <= 0) return PL_OK;
    dtrtrs_("L", trans ? "T" : "N", "N", &n, &nrhs, L, &lda, B, &lda, &info, 1, 1, 1);
    if (info > 0) return pl_fail(PL_ERR_ARG, "linalg: triangular factor singular at %d", info);
    if (info < 0) return pl_fail(PL_ERR_ARG, "linalg: dtrtrs argument %d invalid", -info);
    return PL_OK;
}

enum pl_status pl_chol_inverse(double *L, int n)
{
    int info = 0, lda = n > 0 ? n : 1;
    if (n <= 0) return PL_OK;
    dpotri_("L", &n, L, &lda, &info, 1);
    if (info != 0) return pl_fail(PL_ERR_ARG, "linalg: inverse failed (info %d)", info);
    for (int j = 0; j < n; j++)          /* mirror the lower triangle into the upper */
        for (int i = j + 1; i < n; i++) L[j + (size_t)i * n] = L[i + (size_t)j * n];
    return PL_OK;
}

double pl_chol_logdet_half(const double *L, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += log(L[i + (size_t)i * n]);
    return s;
}
