#include "dock/sandbox_runner.h"

#include <algorithm>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
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

std::string WorkerBinary(const SandboxOptions& box) {
  if (!box.worker_binary.empty()) return box.worker_binary;
  // Installed layout: the worker beside the server binary; else the one this build made.
  std::error_code ec;
  fs::path beside = fs::read_symlink("/proc/self/exe", ec).parent_path() / "modeldock-worker";
  return !ec && fs::exists(beside, ec) ? beside.string() : MODELDOCK_DEFAULT_WORKER_BINARY;
}

absl::StatusOr<std::unique_ptr<SandboxRunner>> SandboxRunner::Start(const SandboxOptions& box,
                                                                    int64_t model_cache_bytes,
                                                                    ModelFiles* files) {
  sandbox::PoolOptions pool;
  pool.worker_binary = WorkerBinary(box);
  pool.workers = box.workers > 0 ? box.workers
                                 : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  pool.torch_threads = box.torch_threads;
  pool.memory_limit_bytes = box.memory_limit_bytes;
  pool.model_cache_bytes = model_cache_bytes / pool.workers;
  pool.max_waiting = box.max_waiting_jobs;
  pool.isolate_network = box.isolate_network;
  pool.seccomp = box.seccomp;
  auto started = sandbox::WorkerPool::Start(pool);
  if (!started.ok()) return started.status();
  return std::unique_ptr<SandboxRunner>(
      new SandboxRunner(box, *std::move(started), pool.workers, files));
}

sandbox::JobLimits SandboxRunner::LimitsFor(absl::Duration wall) const {
  sandbox::JobLimits limits;
  limits.wall = wall;
  // CPU summed over the worker's threads: a model that starts threads of its own hits this
  // before the wall-time limit.
  limits.cpu = wall * std::max(1, box_.torch_threads);
  return limits;
}

sandbox::WireLimits SandboxRunner::OutputLimits() const {
  sandbox::WireLimits limits;
  limits.max_classes = box_.max_classes;
  limits.max_feature_dim = box_.max_feature_dim;
  limits.max_bytes_per_sample = box_.max_output_bytes_per_sample;
  limits.max_layers = box_.max_layers;
  return limits;
}

absl::StatusOr<sandbox::JobRequest> SandboxRunner::RunJob(const ModelRecord& record,
                                                          const RunRequest& request) {
  // Never hand a worker a file that is not what was registered (issue 28).
  auto path = files_->VerifiedPath(record);
  if (!path.ok()) return path.status();
  sandbox::JobRequest job;
  job.kind = sandbox::JobKind::kRun;
  job.model_path = *std::move(path);
  job.model_key = ModelKey(record);
  job.input_shape = record.spec.input_shape;
  job.num_classes = OutputWidth(record);
  job.want_features = request.want_features && record.has_embed;
  job.feature_dim = job.want_features ? record.feature_dim : 0;
  if (request.want_layers) {
    for (const ModelLayer& layer : record.layers) job.layer_dims.push_back(layer.dim);
  }
  job.limits = OutputLimits();
  return job;
}

absl::StatusOr<RunOutputs> SandboxRunner::RunInPool(const ModelRecord& record,
                                                    const sandbox::JobRequest& job,
                                                    const RunRequest& request) {
  const sandbox::CancelCheck cancelled = request.cancelled;
  auto result = RetryIfWorkerDied(
      record.spec.name, " (twice; the model is not retried again)",
      [&] { return pool_->Run(job, LimitsFor(request.time_limit), cancelled); });
  if (absl::IsNotFound(result.status())) {
    return absl::NotFoundError(absl::StrCat("model '", record.spec.name,
                                            "' was deleted while the job was running"));
  }
  if (!result.ok()) return result.status();
  RunOutputs outputs;
  outputs.logits = std::move(result->logits);
  outputs.features = std::move(result->features);
  outputs.layers = std::move(result->layers);
  outputs.millis = result->millis;
  return outputs;
}

absl::StatusOr<RunOutputs> SandboxRunner::Run(const ModelRecord& record, const Tensor& samples,
                                              const RunRequest& request) {
  if (record.spec.task == TaskKind::kTextClassification) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", record.spec.name, "' is a text model; it runs on texts, not tensors"));
  }
  auto job = RunJob(record, request);
  if (!job.ok()) return job.status();
  job->samples = samples;
  return RunInPool(record, *job, request);
}

absl::StatusOr<RunOutputs> SandboxRunner::RunTexts(const ModelRecord& record,
                                                   const std::vector<std::string>& texts,
                                                   const RunRequest& request) {
  if (record.spec.task != TaskKind::kTextClassification) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", record.spec.name, "' takes tensors, not texts"));
  }
  auto job = RunJob(record, request);
  if (!job.ok()) return job.status();
  job->input_kind = sandbox::WireInputKind::kText;
  job->texts = texts;
  return RunInPool(record, *job, request);
}

bool SandboxRunner::IsLoaded(const ModelRecord& record) {
  return pool_->IsLoaded(ModelKey(record));
}

void SandboxRunner::Forget(const ModelRecord& record) { pool_->Forget(ModelKey(record)); }

absl::StatusOr<sandbox::AdmitResult> SandboxRunner::Admit(const std::string& model_name,
                                                          sandbox::JobRequest admission) {
  admission.limits = OutputLimits();
  const sandbox::JobLimits limits = LimitsFor(box_.admission_time_limit);
  return RetryIfWorkerDied(model_name, " (twice: the model crashes its worker)",
                           [&] { return pool_->Admit(admission, limits, nullptr); });
}

}  // namespace modeldock::dock
