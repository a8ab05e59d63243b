// Internal to scoring/: small float64 dense linear algebra over row-major arrays, backed by the
// BLAS/LAPACK that libfaiss-dev already pulls in (OpenBLAS on Debian). Not a public header.
#ifndef MODELDOCK_SCORING_LINALG_H_
#define MODELDOCK_SCORING_LINALG_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace modeldock::scoring::internal {

// Row-major rows x cols matrix of doubles.
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<double> data;

  Matrix() = default;
  Matrix(int64_t r, int64_t c) : rows(r), cols(c), data(static_cast<size_t>(r * c), 0.0) {}
  double* Row(int64_t i) { return data.data() + i * cols; }
  const double* Row(int64_t i) const { return data.data() + i * cols; }
  double& At(int64_t i, int64_t j) { return data[static_cast<size_t>(i * cols + j)]; }
  double At(int64_t i, int64_t j) const { return data[static_cast<size_t>(i * cols + j)]; }
};

// scale * A^T A (cols x cols, both triangles filled).
Matrix Gram(const Matrix& a, double scale = 1.0);
// Row-wise softmax in place (max-shifted).
void SoftmaxRows(Matrix& m);
// scale * A A^T (rows x rows, both triangles filled).
Matrix OuterGram(const Matrix& a, double scale = 1.0);
// A B^T for A [m, k] and B [n, k]: [m, n].
Matrix MulABt(const Matrix& a, const Matrix& b);

// Eigen-decomposition of a symmetric matrix: values ascending, vectors.Row(j) is the unit
// eigenvector of values[j].
struct SymmetricEigen {
  std::vector<double> values;
  Matrix vectors;
};
absl::StatusOr<SymmetricEigen> EigenSymmetric(const Matrix& a);

// Solves A X = B^T for symmetric positive definite A [n, n] and B [m, n] (m right-hand sides,
// one per row); returns X^T [m, n]. INVALID_ARGUMENT if A is not positive definite.
absl::StatusOr<Matrix> SolveSpd(const Matrix& a, const Matrix& b);

// Subtracts the column means in place and returns them.
std::vector<double> CentreColumns(Matrix& a);

// Centres the columns of `x` and projects it onto its top min(dims, cols) principal axes
// (eigenvectors of X^T X, largest eigenvalue first; no whitening). Each axis's sign is fixed so
// that its largest-magnitude loading is positive, so the result does not depend on the eigen
// solver's sign choice. Returns [rows, min(dims, cols)].
absl::StatusOr<Matrix> PrincipalComponents(Matrix x, int64_t dims);

}  // namespace modeldock::scoring::internal

#endif  // MODELDOCK_SCORING_LINALG_H_
