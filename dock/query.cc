// The checks of a query's samples and the preparation of its labels, shared by Recommend (the
// Recommender, dock/recommender.h) and ReportOutcome.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dock/recommender.h"
#include "encoder/knowledge.h"

namespace modeldock::dock {

bool Compatible(const ModelRecord& record, TaskKind task, const Tensor& samples) {
  if (record.state != ModelState::kReady || record.spec.task != task) return false;
  if (task == TaskKind::kTextClassification) return true;  // every text model takes strings
  // Audio: clips of any length (fitted to the model's [T]).
  if (task == TaskKind::kAudioClassification) return samples.shape.size() == 2;
  std::vector<int64_t> sample_shape = samples.SampleShape();
  if (task == TaskKind::kTabularClassification) return record.spec.input_shape == sample_shape;
  return sample_shape.size() == 3 && (sample_shape[0] == 1 || sample_shape[0] == 3);
}

absl::Status ValidateQuerySamples(const Tensor& samples, TaskKind task) {
  if (task == TaskKind::kTextClassification) {
    // A text dataset's samples are [N, 0] beside its N texts (the server's decoding checks that
    // the texts are valid UTF-8).
    if (samples.shape.size() != 2 || samples.shape[1] != 0 || samples.Rows() < 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a text query needs at least 4 texts; got ", samples.Rows()));
    }
    return absl::OkStatus();
  }
  if (!samples.IsConsistent() || samples.shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "query samples must be [N, ...] with matching data; got shape ", ShapeToString(samples.shape),
        " and ", samples.values.size(), " values"));
  }
  if (samples.Rows() < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("a query needs at least 4 samples; got ", samples.Rows()));
  }
  if (task == TaskKind::kImageClassification && samples.shape.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image queries are [N, C, H, W]; got ", ShapeToString(samples.shape)));
  }
  if (task == TaskKind::kTabularClassification && samples.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tabular queries are [N, F]; got ", ShapeToString(samples.shape)));
  }
  if (task == TaskKind::kAudioClassification && samples.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "audio queries are [N, T] clips of 16 kHz mono; got ", ShapeToString(samples.shape)));
  }
  for (float v : samples.values) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("query samples contain NaN or Inf");
  }
  return absl::OkStatus();
}

absl::StatusOr<PreparedLabels> PrepareLabels(const Dataset& dataset,
                                             const std::optional<Tensor>& embeddings) {
  const Tensor& samples = dataset.samples;
  PreparedLabels out;
  out.labels = dataset.labels;
  std::vector<int32_t>& labels = out.labels;
  if (!labels.empty()) {
    if (labels.size() != static_cast<size_t>(samples.Rows())) {
      return absl::InvalidArgumentError(absl::StrCat("got ", labels.size(), " labels for ",
                                                     samples.Rows(), " samples"));
    }
    for (int32_t y : labels) {
      if (y < 0) return absl::InvalidArgumentError("labels must be >= 0");
    }
    // Renumber the labels present to 0..C-1: metrics average over classes, and an empty class
    // (labels {1, 5}) must not count as one.
    std::map<int32_t, int32_t> compact;
    for (int32_t y : labels) compact.emplace(y, 0);
    int32_t next = 0;
    for (auto& [label, index] : compact) index = next++;
    for (int32_t& y : labels) y = compact[y];
    out.num_classes = static_cast<int>(compact.size());
    if (out.num_classes < 2) {
      return absl::InvalidArgumentError(
          "the query's labels name only one class; transferability needs at least 2 classes "
          "(or send the dataset unlabelled to have it clustered)");
    }
    out.source = "given";
    return out;
  }
  // Unlabelled: k-means clusters of E's embeddings (raw features for tabular data).
  if (dataset.is_text() && !embeddings) {
    return absl::FailedPreconditionError(
        "an unlabelled text query is clustered in the text knowledge space, which this dock's "
        "assets do not have (scripts/make_assets.py builds it); send the labels");
  }
  int k = static_cast<int>(std::clamp<int64_t>(samples.Rows() / 10, 2, 10));
  const Tensor& basis = embeddings ? *embeddings : samples;
  Tensor flat = basis;
  flat.shape = {basis.Rows(), basis.RowSize()};
  labels = encoder::ClusterLabels(flat, k);
  out.num_classes = *std::max_element(labels.begin(), labels.end()) + 1;
  out.source = absl::StrCat("clustered (k-means on ",
                            embeddings ? "reference-encoder embeddings" : "raw features",
                            ", k=", out.num_classes, ")");
  return out;
}

}  // namespace modeldock::dock
