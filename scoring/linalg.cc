#include "scoring/linalg.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

// Fortran BLAS/LAPACK entry points (column-major). The trailing size_t arguments are the hidden
// lengths gfortran passes for CHARACTER arguments.
extern "C" {
void dsyrk_(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* beta, double* c, const int* ldc,
            size_t uplo_len, size_t trans_len);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc, size_t transa_len, size_t transb_len);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info,
             size_t jobz_len, size_t uplo_len);
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uplo_len);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda,
             double* b, const int* ldb, int* info, size_t uplo_len);
}

namespace modeldock::scoring::internal {
namespace {

// Copies the upper triangle of a column-major symmetric result into the lower one. For a
// symmetric matrix row- and column-major layouts coincide once both triangles are filled.
void Symmetrize(Matrix& m) {
  const int64_t n = m.rows;
  // Column-major upper triangle (i <= j) sits at data[j * n + i], i.e. row-major (j, i).
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t i = 0; i < j; ++i) m.At(i, j) = m.At(j, i);
  }
}

}  // namespace

// A row-major [r, c] array is the column-major [c, r] matrix A^T; BLAS sees that.
void SoftmaxRows(Matrix& m) {
  for (int64_t i = 0; i < m.rows; ++i) {
    double* row = m.Row(i);
    const double top = *std::max_element(row, row + m.cols);
    double sum = 0.0;
    for (int64_t j = 0; j < m.cols; ++j) {
      row[j] = std::exp(row[j] - top);
      sum += row[j];
    }
    for (int64_t j = 0; j < m.cols; ++j) row[j] /= sum;
  }
}

Matrix Gram(const Matrix& a, double scale) {
  const int n = static_cast<int>(a.cols);
  const int k = static_cast<int>(a.rows);
  Matrix out(n, n);
  if (n == 0 || k == 0) return out;
  const double beta = 0.0;
  // (A^T)(A^T)^T = A^T A: trans = 'N' on the column-major A^T.
  dsyrk_("U", "N", &n, &k, &scale, a.data.data(), &n, &beta, out.data.data(), &n, 1, 1);
  Symmetrize(out);
  return out;
}

Matrix OuterGram(const Matrix& a, double scale) {
  const int n = static_cast<int>(a.rows);
  const int k = static_cast<int>(a.cols);
  Matrix out(n, n);
  if (n == 0 || k == 0) return out;
  const double beta = 0.0;
  // (A^T)^T (A^T) = A A^T: trans = 'T'.
  dsyrk_("U", "T", &n, &k, &scale, a.data.data(), &k, &beta, out.data.data(), &n, 1, 1);
  Symmetrize(out);
  return out;
}

Matrix MulABt(const Matrix& a, const Matrix& b) {
  // Row-major C = A B^T is column-major C^T = B A^T = (B^T)^T (A^T).
  const int m = static_cast<int>(b.rows);
  const int n = static_cast<int>(a.rows);
  const int k = static_cast<int>(a.cols);
  Matrix out(a.rows, b.rows);
  if (m == 0 || n == 0) return out;
  if (k == 0) return out;
  const double one = 1.0;
  const double zero = 0.0;
  dgemm_("T", "N", &m, &n, &k, &one, b.data.data(), &k, a.data.data(), &k, &zero, out.data.data(),
         &m, 1, 1);
  return out;
}

absl::StatusOr<SymmetricEigen> EigenSymmetric(const Matrix& a) {
  const int n = static_cast<int>(a.rows);
  SymmetricEigen result;
  result.vectors = a;  // overwritten by the eigenvectors (column j = row j, see below)
  result.values.assign(static_cast<size_t>(n), 0.0);
  if (n == 0) return result;
  int info = 0;
  int lwork = -1;
  int liwork = -1;
  double work_query = 0.0;
  int iwork_query = 0;
  dsyevd_("V", "U", &n, result.vectors.data.data(), &n, result.values.data(), &work_query, &lwork,
          &iwork_query, &liwork, &info, 1, 1);
  if (info != 0) return absl::InternalError(absl::StrCat("dsyevd workspace query: info=", info));
  lwork = static_cast<int>(work_query) + 1;
  liwork = iwork_query;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevd_("V", "U", &n, result.vectors.data.data(), &n, result.values.data(), work.data(), &lwork,
          iwork.data(), &liwork, &info, 1, 1);
  if (info != 0) {
    return absl::InternalError(absl::StrCat("symmetric eigendecomposition failed: info=", info));
  }
  // LAPACK stores eigenvector j in column j (column-major), i.e. row j of our row-major array.
  return result;
}

absl::StatusOr<Matrix> SolveSpd(const Matrix& a, const Matrix& b) {
  const int n = static_cast<int>(a.rows);
  const int nrhs = static_cast<int>(b.rows);
  Matrix factor = a;
  int info = 0;
  dpotrf_("U", &n, factor.data.data(), &n, &info, 1);
  if (info != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("matrix is not positive definite (Cholesky pivot ", info, ")"));
  }
  // Row-major [m, n] right-hand sides are the column-major [n, m] matrix B^T.
  Matrix x = b;
  if (nrhs == 0) return x;
  dpotrs_("U", &n, &nrhs, factor.data.data(), &n, x.data.data(), &n, &info, 1);
  if (info != 0) return absl::InternalError(absl::StrCat("dpotrs failed: info=", info));
  return x;
}

absl::StatusOr<Matrix> PrincipalComponents(Matrix x, int64_t dims) {
  const int64_t d = x.cols;
  const int64_t keep = std::min(dims, d);
  CentreColumns(x);
  auto eigen = EigenSymmetric(Gram(x));
  if (!eigen.ok()) return eigen.status();
  Matrix axes(keep, d);
  for (int64_t c = 0; c < keep; ++c) {
    const double* v = eigen->vectors.Row(d - 1 - c);  // eigenvalues ascend
    int64_t largest = 0;
    for (int64_t j = 1; j < d; ++j) {
      if (std::abs(v[j]) > std::abs(v[largest])) largest = j;
    }
    const double sign = v[largest] < 0 ? -1.0 : 1.0;
    for (int64_t j = 0; j < d; ++j) axes.At(c, j) = sign * v[j];
  }
  return MulABt(x, axes);
}

std::vector<double> CentreColumns(Matrix& a) {
  std::vector<double> mean(static_cast<size_t>(a.cols), 0.0);
  if (a.rows == 0) return mean;
  for (int64_t i = 0; i < a.rows; ++i) {
    const double* row = a.Row(i);
    for (int64_t j = 0; j < a.cols; ++j) mean[j] += row[j];
  }
  for (double& m : mean) m /= static_cast<double>(a.rows);
  for (int64_t i = 0; i < a.rows; ++i) {
    double* row = a.Row(i);
    for (int64_t j = 0; j < a.cols; ++j) row[j] -= mean[j];
  }
  return mean;
}

}  // namespace modeldock::scoring::internal
