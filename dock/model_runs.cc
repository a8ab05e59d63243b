// The dock's side of model runs: starting the runners (model_runner.h) and the verified file a
// sandboxed run reads. Probing, stage 2, the output cache and Infer call RunModel, which does
// not know which kind of model it runs.
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

absl::StatusOr<std::string> DockImpl::VerifiedPath(const ModelRecord& record) {
  if (absl::Status s = CheckModelFile(record); !s.ok()) return s;
  return blobs_->PathOf(record.sha256);
}

}  // namespace modeldock::dock
