// LEEP (Nguyen et al. 2020) and NCE (Tran et al. 2019) from the model's own classifier outputs.
// Both are invariant to dropping target classes without samples, so the compacted labels of
// internal::Prepare are used as is.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "scoring/internal.h"
#include "scoring/metrics.h"

namespace modeldock::scoring {

absl::StatusOr<double> Leep(const Tensor& logits, const std::vector<int32_t>& labels,
                            int num_classes) {
  auto data = internal::Prepare(logits, labels, num_classes, "logits");
  if (!data.ok()) return data.status();
  internal::Matrix& theta = data->x;
  internal::SoftmaxRows(theta);
  const int64_t n = theta.rows;
  const int64_t cs = theta.cols;
  const int num_c = data->num_classes();

  // joint(y, z) = (1/N) sum_{i: y_i = y} theta_iz; P(y|z) = joint / sum_y joint.
  internal::Matrix joint(num_c, cs);
  for (int64_t i = 0; i < n; ++i) {
    double* row = joint.Row(data->labels[i]);
    const double* t = theta.Row(i);
    for (int64_t z = 0; z < cs; ++z) row[z] += t[z] / static_cast<double>(n);
  }
  std::vector<double> marginal(static_cast<size_t>(cs), 0.0);
  for (int c = 0; c < num_c; ++c) {
    for (int64_t z = 0; z < cs; ++z) marginal[z] += joint.At(c, z);
  }
  for (int c = 0; c < num_c; ++c) {
    for (int64_t z = 0; z < cs; ++z) {
      // A source class no sample puts mass on (softmax underflow) contributes nothing.
      joint.At(c, z) = marginal[z] > 0.0 ? joint.At(c, z) / marginal[z] : 0.0;
    }
  }
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double* t = theta.Row(i);
    const double* p_y_given_z = joint.Row(data->labels[i]);
    double p = 0.0;
    for (int64_t z = 0; z < cs; ++z) p += p_y_given_z[z] * t[z];
    total += std::log(p);
  }
  return total / static_cast<double>(n);
}

// NCE = sum_{y,z} P(y,z) log P(y|z) = -H(Y|Z), with 0 log 0 = 0 and z_i = argmax of the logits
// (softmax does not change the argmax; ties go to the lowest index, like numpy.argmax).
absl::StatusOr<double> Nce(const Tensor& logits, const std::vector<int32_t>& labels,
                           int num_classes) {
  auto data = internal::Prepare(logits, labels, num_classes, "logits");
  if (!data.ok()) return data.status();
  const internal::Matrix& theta = data->x;
  const int64_t n = theta.rows;
  const int64_t cs = theta.cols;
  const int num_c = data->num_classes();
  internal::Matrix joint(num_c, cs);
  for (int64_t i = 0; i < n; ++i) {
    const double* row = theta.Row(i);
    const int64_t z = std::max_element(row, row + cs) - row;
    joint.At(data->labels[i], z) += 1.0;
  }
  double total = 0.0;
  for (int64_t z = 0; z < cs; ++z) {
    double count_z = 0.0;
    for (int c = 0; c < num_c; ++c) count_z += joint.At(c, z);
    if (count_z == 0.0) continue;
    for (int c = 0; c < num_c; ++c) {
      const double count = joint.At(c, z);
      if (count > 0.0) total += count / static_cast<double>(n) * std::log(count / count_z);
    }
  }
  return total;
}

}  // namespace modeldock::scoring
