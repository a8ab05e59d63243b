// GBC (Pandy et al., CVPR 2022): Gaussian Bhattacharyya coefficient between spherical per-class
// Gaussians, following google-research/stable_transfer/transferability/gbc.py.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "scoring/internal.h"
#include "scoring/metrics.h"

namespace modeldock::scoring {
namespace {

constexpr int64_t kPcaDims = 64;
// Per-dimension variance floor of the reference (constant features, single-sample classes).
constexpr double kMinVariance = 1e-4;

}  // namespace

// Choices where METHODS.md is silent (all as in the reference code, except the first):
// - PCA to 64 dimensions only when D > 64 (spherical GBC is rotation invariant, so a full-rank
//   PCA would change nothing); the paper reduces to 64 dims before GBC;
// - per-dimension population variances are floored at 1e-4 before the spherical average;
// - the spherical log-determinant term is NOT multiplied by the dimension: the reference sums
//   logs of scalar variances, D_B = |mu1 - mu2|^2 / (8 s) + (log s - (log s1 + log s2) / 2) / 2
//   with s = (s1 + s2) / 2;
// - GBC = -sum over ordered pairs of present classes (each unordered pair counted twice).
absl::StatusOr<double> Gbc(const Tensor& features, const std::vector<int32_t>& labels,
                           int num_classes) {
  auto data = internal::Prepare(features, labels, num_classes, "features");
  if (!data.ok()) return data.status();
  internal::Matrix z = std::move(data->x);
  if (z.cols > kPcaDims) {
    // Centred and projected onto the top kPcaDims principal axes (no whitening). Spherical
    // Gaussians do not depend on the axes' signs.
    auto projected = internal::PrincipalComponents(std::move(z), kPcaDims);
    if (!projected.ok()) return projected.status();
    z = *std::move(projected);
  }
  const int num_c = data->num_classes();
  const int64_t d = z.cols;

  internal::Matrix means(num_c, d);
  for (int64_t i = 0; i < z.rows; ++i) {
    double* m = means.Row(data->labels[i]);
    const double* row = z.Row(i);
    for (int64_t j = 0; j < d; ++j) m[j] += row[j];
  }
  for (int c = 0; c < num_c; ++c) {
    for (int64_t j = 0; j < d; ++j) means.At(c, j) /= static_cast<double>(data->counts[c]);
  }
  internal::Matrix variances(num_c, d);
  for (int64_t i = 0; i < z.rows; ++i) {
    const int c = data->labels[i];
    const double* row = z.Row(i);
    for (int64_t j = 0; j < d; ++j) {
      const double diff = row[j] - means.At(c, j);
      variances.At(c, j) += diff * diff;
    }
  }
  std::vector<double> spherical(static_cast<size_t>(num_c), 0.0);
  for (int c = 0; c < num_c; ++c) {
    for (int64_t j = 0; j < d; ++j) {
      const double var = variances.At(c, j) / static_cast<double>(data->counts[c]);
      spherical[c] += std::max(var, kMinVariance);
    }
    spherical[c] /= static_cast<double>(d);
  }

  double gbc = 0.0;
  for (int c1 = 0; c1 < num_c; ++c1) {
    for (int c2 = 0; c2 < num_c; ++c2) {
      if (c1 == c2) continue;
      const double s = (spherical[c1] + spherical[c2]) / 2.0;
      double dist2 = 0.0;
      for (int64_t j = 0; j < d; ++j) {
        const double diff = means.At(c1, j) - means.At(c2, j);
        dist2 += diff * diff;
      }
      const double bhattacharyya =
          dist2 / s / 8.0 +
          0.5 * (std::log(s) - 0.5 * std::log(spherical[c1]) - 0.5 * std::log(spherical[c2]));
      gbc -= std::exp(-bhattacharyya);
    }
  }
  return gbc;
}

}  // namespace modeldock::scoring
