// Runs of registered models: uploaded files in the sandboxed worker processes (sandbox/),
// remote models on their KServe v2 server (remote/). RunModel is the one seam both go through,
// so probing, stage 2, the output cache and Infer do not know which kind they run.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "dock/dock_impl.h"
#include "spdlog/spdlog.h"

#ifndef MODELDOCK_DEFAULT_WORKER_BINARY
#define MODELDOCK_DEFAULT_WORKER_BINARY "modeldock-worker"
#endif

namespace modeldock::dock {
namespace fs = std::filesystem;

namespace {

// Runs a worker job; if its worker died under it (ABORTED), once more on a fresh worker, since
// the crash may have been the host's. A second death is the model's: FAILED_PRECONDITION with
// the worker's reason and `second_death` appended.
template <typename Job>
auto RetryIfWorkerDied(const std::string& model, const char* second_death, const Job& job)
    -> decltype(job()) {
  auto result = job();
  if (!absl::IsAborted(result.status())) return result;
  spdlog::warn("model '{}': {}; retrying once on a fresh worker", model,
               std::string(result.status().message()));
  result = job();
  if (absl::IsAborted(result.status())) {
    return absl::FailedPreconditionError(absl::StrCat(result.status().message(), second_death));
  }
  return result;
}

}  // namespace

absl::Status DockImpl::StartWorkers() {
  const SandboxOptions& box = options_.sandbox;
  sandbox::PoolOptions pool;
  pool.worker_binary = box.worker_binary;
  if (pool.worker_binary.empty()) {
    // Installed layout: the worker beside the server binary; else the one this build made.
    std::error_code ec;
    fs::path beside = fs::read_symlink("/proc/self/exe", ec).parent_path() / "modeldock-worker";
    pool.worker_binary = !ec && fs::exists(beside, ec) ? beside.string()
                                                        : MODELDOCK_DEFAULT_WORKER_BINARY;
  }
  pool.workers = box.workers > 0 ? box.workers
                                 : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  pool.torch_threads = box.torch_threads;
  pool.memory_limit_bytes = box.memory_limit_bytes;
  pool.model_cache_bytes = options_.model_cache_bytes / pool.workers;
  pool.max_waiting = box.max_waiting_jobs;
  pool.isolate_network = box.isolate_network;
  pool.seccomp = box.seccomp;
  auto started = sandbox::WorkerPool::Start(pool);
  if (!started.ok()) return started.status();
  workers_pool_ = std::move(*started);
  if (options_.stage2_workers == 0) options_.stage2_workers = pool.workers;
  return absl::OkStatus();
}

sandbox::JobLimits DockImpl::LimitsFor(absl::Duration wall) const {
  sandbox::JobLimits limits;
  limits.wall = wall;
  // CPU summed over the worker's threads: a model that starts threads of its own hits this
  // before the wall-time limit.
  limits.cpu = wall * std::max(1, options_.sandbox.torch_threads);
  return limits;
}

sandbox::WireLimits DockImpl::OutputLimits() const {
  sandbox::WireLimits limits;
  limits.max_classes = options_.sandbox.max_classes;
  limits.max_feature_dim = options_.sandbox.max_feature_dim;
  limits.max_bytes_per_sample = options_.sandbox.max_output_bytes_per_sample;
  limits.max_layers = options_.sandbox.max_layers;
  return limits;
}

absl::StatusOr<sandbox::RunResult> DockImpl::RunModel(const ModelRecord& record,
                                                      const Tensor& samples, bool want_features,
                                                      bool want_layers,
                                                      absl::Duration time_limit,
                                                      const sandbox::CancelCheck& cancelled) {
  if (IsRemote(record.spec)) return RunRemote(record, samples, time_limit, cancelled);
  // Never hand a worker a file that is not what was registered (issue 28).
  if (absl::Status s = CheckModelFile(record); !s.ok()) return s;
  sandbox::JobRequest job;
  job.kind = sandbox::JobKind::kRun;
  job.model_path = blobs_->PathOf(record.sha256);
  job.model_key = ModelKey(record);
  job.input_shape = record.spec.input_shape;
  job.num_classes = OutputWidth(record);
  job.want_features = want_features && record.has_embed;
  job.feature_dim = job.want_features ? record.feature_dim : 0;
  if (want_layers) {
    for (const ModelLayer& layer : record.layers) job.layer_dims.push_back(layer.dim);
  }
  job.limits = OutputLimits();
  job.samples = samples;
  auto result = RetryIfWorkerDied(
      record.spec.name, " (twice; the model is not retried again)",
      [&] { return workers_pool_->Run(job, LimitsFor(time_limit), cancelled); });
  if (absl::IsNotFound(result.status())) {
    return absl::NotFoundError(absl::StrCat("model '", record.spec.name,
                                            "' was deleted while the job was running"));
  }
  return result;
}

absl::StatusOr<sandbox::AdmitResult> DockImpl::Admit(const std::string& model_name,
                                                    const sandbox::JobRequest& admission) {
  const sandbox::JobLimits limits = LimitsFor(options_.sandbox.admission_time_limit);
  return RetryIfWorkerDied(model_name, " (twice: the model crashes its worker)",
                           [&] { return workers_pool_->Admit(admission, limits, nullptr); });
}

remote::KServeClient* DockImpl::RemoteClient(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(remote_mutex_);
  std::unique_ptr<remote::KServeClient>& client = remote_clients_[endpoint];
  if (client == nullptr) {
    client = remote::KServeClient::Connect(endpoint, remote_credentials_.For(endpoint));
  }
  return client.get();
}

absl::StatusOr<sandbox::RunResult> DockImpl::RunRemote(const ModelRecord& record,
                                                       const Tensor& samples,
                                                       absl::Duration time_limit,
                                                       const sandbox::CancelCheck& cancelled) {
  // The remote server sees the model's declared input shape, as a worker would adapt it.
  const Tensor* input = &samples;
  Tensor adapted;
  if (samples.SampleShape() != record.spec.input_shape) {
    auto a = encoder::AdaptInputs(samples, record.spec.input_shape);
    if (!a.ok()) return a.status();
    adapted = *std::move(a);
    input = &adapted;
  }
  const remote::RemoteTarget target{record.spec.remote_endpoint, record.spec.remote_model,
                                    record.spec.remote_version};
  const absl::Time start = absl::Now();
  auto outputs = RemoteClient(target.endpoint)
                     ->Infer(target, *input, start + time_limit, remote::InferOptions(),
                             [&] { return cancelled && cancelled(); });
  if (!outputs.ok()) return outputs.status();
  if (outputs->shape[1] != OutputWidth(record)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "remote model '", record.spec.name, "' returned ", outputs->shape[1],
        " outputs per sample; it was admitted with ", OutputWidth(record)));
  }
  for (float v : outputs->values) {
    if (!std::isfinite(v)) {
      return absl::FailedPreconditionError(
          absl::StrCat("remote model '", record.spec.name, "' returned NaN/Inf"));
    }
  }
  sandbox::RunResult result;
  result.logits = *std::move(outputs);
  result.millis = absl::ToDoubleMilliseconds(absl::Now() - start);
  return result;
}

}  // namespace modeldock::dock
