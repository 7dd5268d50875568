/* linalg.h — the small dense double-precision linear algebra the Gaussian process needs
 * (owner: tune). src/tensor/linalg.c is the only place the LAPACK symbols (dpotrf_, dpotri_, dpotrs_,
 * dtrtrs_, shipped by OpenBLAS) are declared; nothing else in the engine calls LAPACK.
 *
 * Every matrix here is column-major, n x n with leading dimension n, and the Cholesky factor
 * is the lower triangle: A = L Lᵀ. (The kernel matrices are symmetric, so row/column order of
 * the input does not matter.)
 */
#ifndef PEFTLUA_LINALG_H
#define PEFTLUA_LINALG_H

#include "peftlua/status.h"

/* In place: lower triangle of A := L with A = L Lᵀ. PL_ERR_ARG (with the failing pivot in the
 * message) when A is not numerically positive definite; the upper triangle is left untouched. */
enum pl_status pl_chol(double *A, int n);

/* B[n, nrhs] := A⁻¹ B given the factor L from pl_chol. */
enum pl_status pl_chol_solve(const double *L, int n, double *B, int nrhs);

/* B[n, nrhs] := L⁻¹ B (trans = 0) or L⁻ᵀ B (trans = 1) for the lower-triangular L. */
enum pl_status pl_tri_solve(const double *L, int n, double *B, int nrhs, int trans);

/* In place: the full symmetric A⁻¹ (both triangles) from the factor L of pl_chol. */
enum pl_status pl_chol_inverse(double *L, int n);

/* Σ log L_ii — half the log-determinant of A. */
double pl_chol_logdet_half(const double *L, int n);

#endif
