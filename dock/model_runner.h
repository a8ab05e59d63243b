// Internal: how the dock runs a registered model. Probing, stage 2, the output cache and Infer
// call a ModelRunner and do not know which kind of model they run:
//   SandboxRunner (sandbox_runner.h)  uploaded TorchScript files, in the sandboxed worker
//                                     processes (sandbox/)
//   KServeRunner (kserve_runner.h)    remote models, on their KServe v2 server (remote/)
//   RoutingRunner (below)             the dock's runner: each model to the runner of its kind
// Tests can hand the parts that run models a fake runner.
#ifndef MODELDOCK_DOCK_MODEL_RUNNER_H_
#define MODELDOCK_DOCK_MODEL_RUNNER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/audio.h"
#include "common/tensor.h"
#include "dock/types.h"

namespace modeldock::dock {

struct RunRequest {
  bool want_features = false;  // embed(x), for a model that exports it (record.has_embed)
  bool want_layers = false;    // embed_layers(x), for a model that exports it (record.layers)
  absl::Duration time_limit = absl::Seconds(60);
  std::function<bool()> cancelled;  // polled while the model runs; may be empty
};

// What one run returns, whichever runner ran it.
struct RunOutputs {
  Tensor logits;                // forward(x): [N, K] logits, or [N, D] features of an extractor
  Tensor features;              // embed(x) when asked for and exported; else empty shape
  std::vector<Tensor> layers;   // embed_layers(x) when asked for and exported
  double millis = 0;            // the run's wall time
};

// Thread-safe: every method may be called from many threads at once.
class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // Runs `record` on `samples` ([N, ...]; images are adapted to the model's input shape).
  // NOT_FOUND if the model was deleted while it ran, DATA_LOSS if its stored file is bad,
  // FAILED_PRECONDITION for a model that misbehaves (crashes, wrong outputs, NaN/Inf),
  // DEADLINE_EXCEEDED / CANCELLED / RESOURCE_EXHAUSTED for the limits.
  virtual absl::StatusOr<RunOutputs> Run(const ModelRecord& record, const Tensor& samples,
                                         const RunRequest& request) = 0;
  // Runs a text model (task kTextClassification) on strings; the same errors. A runner that
  // has no text models (remote ones, today) says so.
  virtual absl::StatusOr<RunOutputs> RunTexts(const ModelRecord& record,
                                              const std::vector<std::string>& texts,
                                              const RunRequest& request) {
    (void)texts;
    (void)request;
    return absl::UnimplementedError(
        absl::StrCat("model '", record.spec.name, "': this runner does not run text models"));
  }
  // A dataset's texts for a text model, else its samples.
  absl::StatusOr<RunOutputs> RunOn(const ModelRecord& record, const Dataset& dataset,
                                   const RunRequest& request) {
    return dataset.is_text() ? RunTexts(record, dataset.texts, request)
                             : Run(record, dataset.samples, request);
  }
  // Whether a run would find the model loaded (cost estimates); false when unknown.
  virtual bool IsLoaded(const ModelRecord& record) = 0;
  // Drops what is kept of a deleted model (loaded modules); nothing when none.
  virtual void Forget(const ModelRecord& record) = 0;
};

// The dock's runner: uploaded models to `local`, remote ones (IsRemote) to `remote`. Owns
// neither.
class RoutingRunner : public ModelRunner {
 public:
  RoutingRunner(ModelRunner* local, ModelRunner* remote) : local_(local), remote_(remote) {}
  absl::StatusOr<RunOutputs> Run(const ModelRecord& record, const Tensor& samples,
                                 const RunRequest& request) override {
    // Audio clips of another length than the model's [T]: centre-cropped or zero-padded (the
    // workers' image adaptation does not apply to them).
    if (record.spec.task == TaskKind::kAudioClassification && samples.shape.size() == 2 &&
        record.spec.input_shape.size() == 1 && samples.shape[1] != record.spec.input_shape[0]) {
      return For(record).Run(record, FitAudioLength(samples, record.spec.input_shape[0]), request);
    }
    return For(record).Run(record, samples, request);
  }
  absl::StatusOr<RunOutputs> RunTexts(const ModelRecord& record,
                                      const std::vector<std::string>& texts,
                                      const RunRequest& request) override {
    return For(record).RunTexts(record, texts, request);
  }
  bool IsLoaded(const ModelRecord& record) override { return For(record).IsLoaded(record); }
  void Forget(const ModelRecord& record) override { For(record).Forget(record); }

 private:
  ModelRunner& For(const ModelRecord& record) const {
    return IsRemote(record.spec) ? *remote_ : *local_;
  }
  ModelRunner* const local_;
  ModelRunner* const remote_;
};

// Key of a loaded model in the workers and in the caches: a loaded module depends on the model's
// bytes and its declared input shape.
inline std::string ModelKey(const ModelRecord& record) {
  return absl::StrCat(record.sha256, "|", ShapeToString(record.spec.input_shape));
}

// Width of forward(x): K logits of a classifier, D features of a feature extractor.
inline int64_t OutputWidth(const ModelRecord& record) {
  return record.spec.kind == ModelKind::kFeatureExtractor
             ? record.feature_dim
             : static_cast<int64_t>(record.spec.class_labels.size());
}

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_MODEL_RUNNER_H_
