// The dock's side of model runs: starting the runners (model_runner.h), Infer, and the verified
// file a sandboxed run reads. Probing and the Recommender call the runner themselves; none of
// them knows which kind of model it runs.
#include <utility>

#include "dock/dock_impl.h"

namespace modeldock::dock {

absl::Status DockImpl::StartRunners() {
  auto remote = KServeRunner::Create(options_);
  if (!remote.ok()) return remote.status();
  remote_ = *std::move(remote);
  auto sandbox = SandboxRunner::Start(options_.sandbox, options_.model_cache_bytes, this);
  if (!sandbox.ok()) return sandbox.status();
  sandbox_ = *std::move(sandbox);
  runner_ = std::make_unique<RoutingRunner>(sandbox_.get(), remote_.get());
  if (options_.stage2_workers == 0) options_.stage2_workers = sandbox_->workers();
  TunerHost host;
  host.recommend = [this](const RecommendQuery& q) { return Recommend(q); };
  host.report = [this](const OutcomeReport& r) { return ReportOutcome(r); };
  host.files = this;
  tuner_ = std::make_unique<Tuner>(options_.sandbox, std::move(host));
  return absl::OkStatus();
}

absl::StatusOr<TuneResult> DockImpl::Tune(
    const TuneQuery& query, const std::function<void(const TuneProgressEvent&)>& progress) {
  if (!tuner_) return absl::UnavailableError("the dock is not started");
  return tuner_->Tune(query, progress);
}

absl::StatusOr<RunOutputs> DockImpl::RunModel(const ModelRecord& record, const Dataset& data,
                                              bool want_features, bool want_layers,
                                              absl::Duration time_limit,
                                              const std::function<bool()>& cancelled) {
  RunRequest request;
  request.want_features = want_features;
  request.want_layers = want_layers;
  request.time_limit = time_limit;
  request.cancelled = cancelled;
  return runner_->RunOn(record, data, request);
}

absl::StatusOr<std::pair<ModelRecord, Tensor>> DockImpl::Infer(
    std::string_view model, const Tensor& samples, const std::function<bool()>& cancelled) {
  auto record = GetModel(model);
  if (!record.ok()) return record.status();
  if (record->state != ModelState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("model '", record->spec.name, "' is ",
                                                      ModelStateName(record->state),
                                                      ", not READY"));
  }
  if (!samples.IsConsistent() || samples.shape.size() < 2 || samples.Rows() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the input must be a non-empty [N, ...] tensor with matching data; got shape ",
        ShapeToString(samples.shape), " and ", samples.values.size(), " values"));
  }
  if (record->spec.task == TaskKind::kTextClassification) {
    return absl::UnimplementedError(absl::StrCat(
        "model '", record->spec.name, "' is a text model; inference on texts is not offered "
        "yet (Infer takes tensors)"));
  }
  const TaskKind task = record->spec.task;
  if (task == TaskKind::kTabularClassification  ? samples.SampleShape() != record->spec.input_shape
      : task == TaskKind::kAudioClassification ? samples.shape.size() != 2
                                                : samples.shape.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", record->spec.name, "' takes ", ShapeToString(record->spec.input_shape),
        task == TaskKind::kTabularClassification ? ""
        : task == TaskKind::kAudioClassification ? " audio clips (any length: cropped or padded)"
                                                 : " images (any size: resized)",
        " per sample; got ", ShapeToString(samples.shape)));
  }
  sandbox::CancelCheck check = [&] { return cancelled && cancelled(); };
  Dataset data;
  data.samples = samples;
  auto run = RunModel(*record, data, /*want_features=*/false, /*want_layers=*/false,
                      options_.sandbox.run_time_limit, check);
  if (!run.ok()) return run.status();
  return std::make_pair(*std::move(record), std::move(run->logits));
}

absl::StatusOr<std::string> DockImpl::VerifiedPath(const ModelRecord& record) {
  if (absl::Status s = CheckModelFile(record); !s.ok()) return s;
  return blobs_->PathOf(record.sha256);
}

}  // namespace modeldock::dock
