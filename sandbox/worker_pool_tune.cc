// WorkerPool::Tune: one tune job on a free worker, its progress frames passed on as they come.
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sandbox/worker_pool.h"

namespace modeldock::sandbox {

absl::StatusOr<TuneResult> WorkerPool::Tune(const JobRequest& request, const JobLimits& limits,
                                            const CancelCheck& cancelled,
                                            const TuneProgressFn& progress) {
  if (request.kind != JobKind::kTune) return absl::InvalidArgumentError("not a tune job");
  if (request.model_path.empty()) return absl::InvalidArgumentError("a tune job needs a model");
  absl::StatusOr<int> slot = Acquire("", cancelled);
  if (!slot.ok()) return slot.status();
  // Not retried at a smaller batch: training at another batch is another tune.
  absl::StatusOr<JobResponse> response =
      Execute(*slot, request, limits, cancelled, /*max_floats=*/0, /*batch_cap=*/0, absl::Now(),
              progress);
  if (!response.ok()) {
    if (IsMemoryExceeded(response.status())) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++memory_kills_;
    }
    return response.status();
  }
  if (response->code != 0) {
    return absl::Status(static_cast<absl::StatusCode>(response->code), response->message);
  }
  if (response->epochs.empty() || response->tuned_model.empty() || response->best_epoch < 0 ||
      response->best_epoch >= static_cast<int64_t>(response->epochs.size())) {
    return absl::InternalError("model worker returned a tune result without epochs or model");
  }
  TuneResult result;
  result.epochs = std::move(response->epochs);
  result.best_epoch = response->best_epoch;
  result.best_accuracy = response->best_accuracy;
  result.train_samples = response->train_samples;
  result.val_samples = response->val_samples;
  result.stop_reason = std::move(response->stop_reason);
  result.tuned_model = std::move(response->tuned_model);
  result.millis = response->millis;
  return result;
}

}  // namespace modeldock::sandbox
