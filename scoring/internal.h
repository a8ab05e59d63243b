// Internal to scoring/: input validation shared by the metric implementations.
#ifndef MODELDOCK_SCORING_INTERNAL_H_
#define MODELDOCK_SCORING_INTERNAL_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"
#include "scoring/linalg.h"

namespace modeldock::scoring::internal {

// Debian's Abseil has its own absl::string_view, which std::string_view does not convert to.
inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

// Validated float64 copy of a metric's input. Classes without samples are dropped: every metric
// works on the K >= 2 classes present in the query, relabelled 0..K-1 in increasing label order.
struct LabelledData {
  Matrix x;                     // [N, D]; trailing dimensions of the tensor are flattened
  std::vector<int32_t> labels;  // N labels in 0..K-1
  std::vector<int64_t> counts;  // K per-class sample counts, all > 0
  int num_classes() const { return static_cast<int>(counts.size()); }
};

// INVALID_ARGUMENT on: a tensor that is not [N, D...] or whose values do not match its shape,
// N == 0, a label count != N, labels outside 0..num_classes-1, non-finite values, or fewer than
// 2 classes with samples. `what` names the tensor in messages ("features", "logits").
absl::StatusOr<LabelledData> Prepare(const Tensor& tensor, const std::vector<int32_t>& labels,
                                     int num_classes, std::string_view what);

}  // namespace modeldock::scoring::internal

#endif  // MODELDOCK_SCORING_INTERNAL_H_
