// Stage-2 transferability scores, computed in float64 from a candidate model's outputs on the
// query samples. Higher = predicted to transfer better, for every metric.
// Formulas: ../shared/METHODS.md (restated from the papers and their reference code).
#ifndef MODELDOCK_SCORING_METRICS_H_
#define MODELDOCK_SCORING_METRICS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock::scoring {

enum class Metric { kTmi, kLogMe, kLeep, kNce, kHScore, kShrinkageHScore, kGbc, kSfda };

// "tmi", "logme", "leep", "nce", "hscore", "shrinkage_hscore", "gbc", "sfda".
std::string_view MetricName(Metric metric);
absl::StatusOr<Metric> ParseMetric(std::string_view name);
const std::vector<Metric>& AllMetrics();
// LEEP and NCE use the model's own classifier outputs (logits); the others use features.
bool UsesLogits(Metric metric);

struct ScoreInput {
  const Tensor* features = nullptr;             // [N, D] penultimate features (or logits)
  const Tensor* logits = nullptr;               // [N, Cs] the model's own classifier outputs
  const std::vector<int32_t>* labels = nullptr; // N labels in 0..C-1
  int num_classes = 0;                          // C
};

// Dispatches to the metric. INVALID_ARGUMENT on inconsistent shapes, fewer than 2 classes, etc.
absl::StatusOr<double> Score(Metric metric, const ScoreInput& input);

// Individual metrics. features / logits are [N, D] row-major float32, converted to float64.
struct TmiOptions {
  int k = 3;  // k-th nearest neighbour for the Kozachenko-Leonenko estimator
};
absl::StatusOr<double> Tmi(const Tensor& features, const std::vector<int32_t>& labels,
                           int num_classes, const TmiOptions& options = {});
absl::StatusOr<double> LogMe(const Tensor& features, const std::vector<int32_t>& labels,
                             int num_classes);
// LEEP / NCE apply softmax to the logits themselves.
absl::StatusOr<double> Leep(const Tensor& logits, const std::vector<int32_t>& labels,
                            int num_classes);
absl::StatusOr<double> Nce(const Tensor& logits, const std::vector<int32_t>& labels,
                           int num_classes);
absl::StatusOr<double> HScore(const Tensor& features, const std::vector<int32_t>& labels,
                              int num_classes);
absl::StatusOr<double> ShrinkageHScore(const Tensor& features, const std::vector<int32_t>& labels,
                                       int num_classes);
absl::StatusOr<double> Gbc(const Tensor& features, const std::vector<int32_t>& labels,
                           int num_classes);
absl::StatusOr<double> Sfda(const Tensor& features, const std::vector<int32_t>& labels,
                            int num_classes);

}  // namespace modeldock::scoring

#endif  // MODELDOCK_SCORING_METRICS_H_
