#include <cblas.h>
#include <stddef.h>

/* LAPACK's Cholesky factorization and inverse, which OpenBLAS's library carries (Debian's
 * libopenblas-dev ships no LAPACK header). Fortran calling convention: every argument by
 * address, 32-bit integers (the LP64 build), column-major storage, and the length of each
 * character argument passed last, as gfortran does. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_length);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_length);
