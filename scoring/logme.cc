// LogME (You et al., ICML 2021), the fixed-point iteration of thuml/LogME. See METHODS.md.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "scoring/internal.h"
#include "scoring/metrics.h"

namespace modeldock::scoring {
namespace {

constexpr double kMinSingularValue = 1e-10;
// Singular values below this fraction of the largest are numerical zeros: taken from the Gram
// matrix's eigenvalues, they come out near sqrt(eps * D) of the largest (1e-7..1e-6) instead of 0
// (a dead ReLU unit, a constant column), and keeping them moves the evidence by log(alpha) / 2
// each, i.e. by roundoff. A direct SVD would drop them; so does this cutoff.
constexpr double kRelativeCutoff = 1e-6;
constexpr int kMaxIterations = 11;
constexpr double kTolerance = 1e-3;
constexpr double kEpsilon = 1e-5;

// The smallest singular value kept, from the Gram matrix's eigenvalues (s = sqrt(eigenvalue)).
double Cutoff(const std::vector<double>& eigenvalues) {
  double largest = 0.0;
  for (double v : eigenvalues) largest = std::max(largest, v);
  return std::max(kMinSingularValue, kRelativeCutoff * std::sqrt(largest));
}

}  // namespace

// Choices where METHODS.md is silent:
// - the evidence is averaged over the classes present in the query (num_classes may count
//   classes without samples; an all-zero target would add a meaningless term);
// - for N <= D the thin SVD of F is taken from the eigendecomposition of F F^T (left singular
//   vectors directly), for N > D from F^T F as in the reference; singular values <= 1e-10 or
//   <= 1e-6 of the largest are dropped in both cases (the reference keeps the second kind, so
//   its value on rank-deficient features depends on roundoff).
absl::StatusOr<double> LogMe(const Tensor& features, const std::vector<int32_t>& labels,
                             int num_classes) {
  auto data = internal::Prepare(features, labels, num_classes, "features");
  if (!data.ok()) return data.status();
  const internal::Matrix& f = data->x;
  const int64_t n = f.rows;
  const int64_t d = f.cols;
  const int num_c = data->num_classes();

  // sigma_j = s_j^2 and, per class, x_c = U^T y_c with U the left singular vectors of F.
  std::vector<double> sigma;
  std::vector<std::vector<double>> x(static_cast<size_t>(num_c));
  if (n > d) {
    auto eig = internal::EigenSymmetric(internal::Gram(f));
    if (!eig.ok()) return eig.status();
    // F^T y_c is the sum of the class's rows; U^T y_c = V^T (F^T y_c) / s.
    internal::Matrix class_sums(num_c, d);
    for (int64_t i = 0; i < n; ++i) {
      double* sum = class_sums.Row(data->labels[i]);
      const double* row = f.Row(i);
      for (int64_t j = 0; j < d; ++j) sum[j] += row[j];
    }
    const double cutoff = Cutoff(eig->values);
    for (int64_t e = 0; e < d; ++e) {
      const double s = std::sqrt(std::max(eig->values[e], 0.0));
      if (!(s > cutoff)) continue;
      sigma.push_back(s * s);
      const double* v = eig->vectors.Row(e);
      for (int c = 0; c < num_c; ++c) {
        const double* sum = class_sums.Row(c);
        double dot = 0.0;
        for (int64_t j = 0; j < d; ++j) dot += v[j] * sum[j];
        x[c].push_back(dot / s);
      }
    }
  } else {
    auto eig = internal::EigenSymmetric(internal::OuterGram(f));
    if (!eig.ok()) return eig.status();
    const double cutoff = Cutoff(eig->values);
    for (int64_t e = 0; e < n; ++e) {
      const double s = std::sqrt(std::max(eig->values[e], 0.0));
      if (!(s > cutoff)) continue;
      sigma.push_back(s * s);
      const double* u = eig->vectors.Row(e);
      std::vector<double> dots(static_cast<size_t>(num_c), 0.0);
      for (int64_t i = 0; i < n; ++i) dots[data->labels[i]] += u[i];
      for (int c = 0; c < num_c; ++c) x[c].push_back(dots[c]);
    }
  }

  const double nd = static_cast<double>(n);
  const double dd = static_cast<double>(d);
  double total = 0.0;
  for (int c = 0; c < num_c; ++c) {
    double x2_sum = 0.0;
    for (double v : x[c]) x2_sum += v * v;
    const double res_x2 = static_cast<double>(data->counts[c]) - x2_sum;  // |y_c|^2 = n_c
    double alpha = 1.0;
    double beta = 1.0;
    double m2 = 0.0;
    double res2 = 0.0;
    for (int it = 0; it < kMaxIterations; ++it) {
      const double t = alpha / beta;
      double gamma = 0.0;
      m2 = 0.0;
      res2 = res_x2;
      for (size_t j = 0; j < sigma.size(); ++j) {
        const double sg = sigma[j];
        const double x2 = x[c][j] * x[c][j];
        gamma += sg / (sg + t);
        m2 += sg * x2 / ((t + sg) * (t + sg));
        const double shrink = 1.0 + sg / t;
        res2 += x2 / (shrink * shrink);
      }
      alpha = gamma / (m2 + kEpsilon);
      beta = (nd - gamma) / (res2 + kEpsilon);
      if (std::abs(alpha / beta - t) / t <= kTolerance) break;
    }
    double log_det = 0.0;
    for (double sg : sigma) log_det += std::log(alpha + beta * sg);
    const double evidence = dd / 2.0 * std::log(alpha) + nd / 2.0 * std::log(beta) - 0.5 * log_det -
                            beta / 2.0 * res2 - alpha / 2.0 * m2 - nd / 2.0 * std::log(2.0 * M_PI);
    total += evidence / nd;
  }
  return total / num_c;
}

}  // namespace modeldock::scoring
