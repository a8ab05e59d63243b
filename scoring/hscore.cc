// H-score (Bao et al. 2019) and its shrinkage version (Ibrahim et al., NeurIPS 2021 "Newer is
// not always better"), H = tr(pinv(Cov(F)) Cov(g)), g_i = class mean of x_i.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "scoring/internal.h"
#include "scoring/metrics.h"

namespace modeldock::scoring {
namespace {

// Pseudo-inverse cutoff, relative to the largest eigenvalue. The reference code passes
// rcond=1e-15, which keeps round-off eigenvalues of a rank-deficient covariance (N <= D) and
// makes the score explode; D * machine epsilon (numpy >= 2's default for pinv) drops them.
double PinvCutoff(const std::vector<double>& eigenvalues) {
  double largest = 0.0;
  for (double v : eigenvalues) largest = std::max(largest, std::abs(v));
  return static_cast<double>(eigenvalues.size()) * std::numeric_limits<double>::epsilon() * largest;
}

// Centred features and the centred class means of a validated input.
struct Centred {
  internal::LabelledData data;
  internal::Matrix class_means;  // [K, D], class means of the centred features
};

Centred CentreAndClassMeans(internal::LabelledData data) {
  internal::CentreColumns(data.x);
  const int64_t d = data.x.cols;
  internal::Matrix means(data.num_classes(), d);
  for (int64_t i = 0; i < data.x.rows; ++i) {
    double* m = means.Row(data.labels[i]);
    const double* row = data.x.Row(i);
    for (int64_t j = 0; j < d; ++j) m[j] += row[j];
  }
  for (int c = 0; c < data.num_classes(); ++c) {
    double* m = means.Row(c);
    for (int64_t j = 0; j < d; ++j) m[j] /= static_cast<double>(data.counts[c]);
  }
  return Centred{std::move(data), std::move(means)};
}

// tr(pinv(A) Cov(g)) where A = V diag(values) V^T and Cov(g) is the unbiased (N - 1) covariance
// of the per-sample class means: (1 / (N - 1)) sum_c n_c m_c m_c^T for centred means m_c.
double TracePinvTimesCovG(const internal::SymmetricEigen& eig, const Centred& centred) {
  const double cutoff = PinvCutoff(eig.values);
  const int64_t d = centred.data.x.cols;
  const double n = static_cast<double>(centred.data.x.rows);
  double total = 0.0;
  for (int64_t e = 0; e < static_cast<int64_t>(eig.values.size()); ++e) {
    const double lambda = eig.values[e];
    if (!(std::abs(lambda) > cutoff)) continue;
    const double* v = eig.vectors.Row(e);
    double projected = 0.0;  // v^T Cov(g) v
    for (int c = 0; c < centred.data.num_classes(); ++c) {
      const double* m = centred.class_means.Row(c);
      double dot = 0.0;
      for (int64_t j = 0; j < d; ++j) dot += v[j] * m[j];
      projected += static_cast<double>(centred.data.counts[c]) * dot * dot;
    }
    total += projected / (n - 1.0) / lambda;
  }
  return total;
}

// Ledoit-Wolf shrinkage intensity for centred X with S = X^T X / N, as sklearn's
// ledoit_wolf_shrinkage computes it.
double LedoitWolfShrinkage(const internal::Matrix& x, const internal::Matrix& s) {
  const int64_t n = x.rows;
  const int64_t p = x.cols;
  if (p == 1) return 0.0;  // any shrinkage gives the same 1 x 1 estimate
  double sum_norm4 = 0.0;  // sum_{j,k} (X2^T X2)_{jk} = sum_i |x_i|^4
  for (int64_t i = 0; i < n; ++i) {
    const double* row = x.Row(i);
    double norm2 = 0.0;
    for (int64_t j = 0; j < p; ++j) norm2 += row[j] * row[j];
    sum_norm4 += norm2 * norm2;
  }
  double s_frob2 = 0.0;
  double trace = 0.0;
  for (double v : s.data) s_frob2 += v * v;
  for (int64_t j = 0; j < p; ++j) trace += s.At(j, j);
  const double nd = static_cast<double>(n);
  const double pd = static_cast<double>(p);
  const double mu = trace / pd;
  double beta = (sum_norm4 / nd - s_frob2) / (pd * nd);
  const double delta = (s_frob2 - 2.0 * mu * trace + pd * mu * mu) / pd;
  if (!(delta > 0.0)) return 0.0;  // S is already the scaled identity
  beta = std::min(beta, delta);
  return beta == 0.0 ? 0.0 : beta / delta;
}

}  // namespace

absl::StatusOr<double> HScore(const Tensor& features, const std::vector<int32_t>& labels,
                              int num_classes) {
  auto data = internal::Prepare(features, labels, num_classes, "features");
  if (!data.ok()) return data.status();
  const Centred centred = CentreAndClassMeans(*std::move(data));
  const double n = static_cast<double>(centred.data.x.rows);
  auto eig = internal::EigenSymmetric(internal::Gram(centred.data.x, 1.0 / (n - 1.0)));
  if (!eig.ok()) return eig.status();
  return TracePinvTimesCovG(*eig, centred);
}

// Following the reference: Cov_alpha(F) is the Ledoit-Wolf estimate (biased, 1/N, shrunk
// towards tr(S)/D I), Cov(g) stays the unbiased covariance and is scaled by (1 - alpha).
absl::StatusOr<double> ShrinkageHScore(const Tensor& features, const std::vector<int32_t>& labels,
                                       int num_classes) {
  auto data = internal::Prepare(features, labels, num_classes, "features");
  if (!data.ok()) return data.status();
  const Centred centred = CentreAndClassMeans(*std::move(data));
  const double n = static_cast<double>(centred.data.x.rows);
  const internal::Matrix s = internal::Gram(centred.data.x, 1.0 / n);
  const double alpha = LedoitWolfShrinkage(centred.data.x, s);
  auto eig = internal::EigenSymmetric(s);
  if (!eig.ok()) return eig.status();
  // Shrinking towards mu I keeps the eigenvectors and maps each eigenvalue l to
  // (1 - alpha) l + alpha mu.
  double mu = 0.0;
  for (int64_t j = 0; j < s.rows; ++j) mu += s.At(j, j);
  mu /= static_cast<double>(s.rows);
  for (double& v : eig->values) v = (1.0 - alpha) * v + alpha * mu;
  return (1.0 - alpha) * TracePinvTimesCovG(*eig, centred);
}

}  // namespace modeldock::scoring
