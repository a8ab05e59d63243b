// Metric names, dispatch and the input validation every metric shares. The metrics themselves
// live in tmi.cc, logme.cc, leep_nce.cc, hscore.cc, gbc.cc and sfda.cc.
#include "scoring/metrics.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "scoring/internal.h"

namespace modeldock::scoring {

std::string_view MetricName(Metric metric) {
  switch (metric) {
    case Metric::kTmi:
      return "tmi";
    case Metric::kLogMe:
      return "logme";
    case Metric::kLeep:
      return "leep";
    case Metric::kNce:
      return "nce";
    case Metric::kHScore:
      return "hscore";
    case Metric::kShrinkageHScore:
      return "shrinkage_hscore";
    case Metric::kGbc:
      return "gbc";
    case Metric::kSfda:
      return "sfda";
  }
  return "unknown";
}

const std::vector<Metric>& AllMetrics() {
  static const std::vector<Metric> kAll = {Metric::kTmi, Metric::kLogMe,  Metric::kLeep,
                                           Metric::kNce, Metric::kHScore, Metric::kShrinkageHScore,
                                           Metric::kGbc, Metric::kSfda};
  return kAll;
}

absl::StatusOr<Metric> ParseMetric(std::string_view name) {
  std::vector<absl::string_view> names;
  for (Metric metric : AllMetrics()) {
    if (MetricName(metric) == name) return metric;
    names.push_back(internal::ToAbsl(MetricName(metric)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown transferability metric '", internal::ToAbsl(name),
                   "'; expected one of: ", absl::StrJoin(names, ", ")));
}

bool UsesLogits(Metric metric) { return metric == Metric::kLeep || metric == Metric::kNce; }

absl::StatusOr<double> Score(Metric metric, const ScoreInput& input) {
  if (input.labels == nullptr) return absl::InvalidArgumentError("score input has no labels");
  const Tensor* tensor = UsesLogits(metric) ? input.logits : input.features;
  if (tensor == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric ", internal::ToAbsl(MetricName(metric)), " needs ",
                     UsesLogits(metric) ? "logits" : "features", ", which the score input lacks"));
  }
  const std::vector<int32_t>& labels = *input.labels;
  const int c = input.num_classes;
  switch (metric) {
    case Metric::kTmi:
      return Tmi(*tensor, labels, c);
    case Metric::kLogMe:
      return LogMe(*tensor, labels, c);
    case Metric::kLeep:
      return Leep(*tensor, labels, c);
    case Metric::kNce:
      return Nce(*tensor, labels, c);
    case Metric::kHScore:
      return HScore(*tensor, labels, c);
    case Metric::kShrinkageHScore:
      return ShrinkageHScore(*tensor, labels, c);
    case Metric::kGbc:
      return Gbc(*tensor, labels, c);
    case Metric::kSfda:
      return Sfda(*tensor, labels, c);
  }
  return absl::InvalidArgumentError("unknown metric");
}

namespace internal {

absl::StatusOr<LabelledData> Prepare(const Tensor& tensor, const std::vector<int32_t>& labels,
                                     int num_classes, std::string_view what_in) {
  const absl::string_view what = ToAbsl(what_in);
  if (tensor.shape.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be [N, D], got shape [", ShapeToString(tensor.shape), "]"));
  }
  for (int64_t dim : tensor.shape) {
    if (dim <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " has an empty dimension: [", ShapeToString(tensor.shape), "]"));
    }
  }
  if (!tensor.IsConsistent()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " holds ", tensor.values.size(), " values but its shape [",
                     ShapeToString(tensor.shape), "] needs ", tensor.NumElements()));
  }
  const int64_t n = tensor.Rows();
  const int64_t d = tensor.RowSize();
  if (static_cast<int64_t>(labels.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", n, " rows but there are ", labels.size(), " labels"));
  }
  if (num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("need at least 2 classes, num_classes = ", num_classes));
  }
  std::vector<int64_t> counts(static_cast<size_t>(num_classes), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t y = labels[i];
    if (y < 0 || y >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " of sample ", i, " is outside 0..", num_classes - 1));
    }
    ++counts[y];
  }
  LabelledData out;
  std::vector<int32_t> remap(static_cast<size_t>(num_classes), -1);
  for (int c = 0; c < num_classes; ++c) {
    if (counts[c] > 0) {
      remap[c] = static_cast<int32_t>(out.counts.size());
      out.counts.push_back(counts[c]);
    }
  }
  if (out.counts.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("need samples of at least 2 classes, the query has ", out.counts.size()));
  }
  out.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.labels[i] = remap[labels[i]];

  out.x = Matrix(n, d);
  for (size_t i = 0; i < tensor.values.size(); ++i) {
    const float v = tensor.values[i];
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " value ", i % d, " of sample ", i / d, " is not finite (", v, ")"));
    }
    out.x.data[i] = static_cast<double>(v);
  }
  return out;
}

}  // namespace internal
}  // namespace modeldock::scoring
