// Internal: runs uploaded models in the sandboxed worker processes (sandbox/worker_pool.h), and
// admits uploads there. Owns the worker pool; the pool has its own locks, so the runner needs
// none. A job whose worker died is retried once on a fresh worker (the crash may have been the
// host's, not the model's).
#ifndef MODELDOCK_DOCK_SANDBOX_RUNNER_H_
#define MODELDOCK_DOCK_SANDBOX_RUNNER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dock/model_runner.h"
#include "dock/types.h"
#include "sandbox/worker_pool.h"

namespace modeldock::dock {

// Where the runner gets a stored model's file: its path once verified against the registered
// digest. The dock's integrity checks (integrity.cc) implement it: a bad file is restored from a
// mirror, or DATA_LOSS and its models FAILED.
class ModelFiles {
 public:
  virtual ~ModelFiles() = default;
  virtual absl::StatusOr<std::string> VerifiedPath(const ModelRecord& record) = 0;
};

// The modeldock-worker binary: box.worker_binary, else the one beside the running executable,
// else the build's.
std::string WorkerBinary(const SandboxOptions& box);

class SandboxRunner : public ModelRunner {
 public:
  // Starts the pool (box.workers workers, 0 = one per core) sharing `model_cache_bytes` of
  // loaded models; `files` (not owned) must outlive the runner.
  static absl::StatusOr<std::unique_ptr<SandboxRunner>> Start(const SandboxOptions& box,
                                                              int64_t model_cache_bytes,
                                                              ModelFiles* files);

  absl::StatusOr<RunOutputs> Run(const ModelRecord& record, const Tensor& samples,
                                 const RunRequest& request) override;
  absl::StatusOr<RunOutputs> RunTexts(const ModelRecord& record,
                                      const std::vector<std::string>& texts,
                                      const RunRequest& request) override;
  bool IsLoaded(const ModelRecord& record) override;
  void Forget(const ModelRecord& record) override;

  // The admission checks of an uploaded file (a kAdmit job; its output limits are set here).
  absl::StatusOr<sandbox::AdmitResult> Admit(const std::string& model_name,
                                             sandbox::JobRequest admission);
  int workers() const { return workers_; }
  sandbox::PoolStats Stats() { return pool_->Stats(); }
  // Kills the workers: running jobs end at once (ABORTED).
  void Shutdown() { pool_->Shutdown(); }

 private:
  // A run job of `record` (its verified file, widths and limits) without its inputs.
  absl::StatusOr<sandbox::JobRequest> RunJob(const ModelRecord& record,
                                             const RunRequest& request);
  // Runs the job on the pool (once more if its worker died) and takes its outputs.
  absl::StatusOr<RunOutputs> RunInPool(const ModelRecord& record, const sandbox::JobRequest& job,
                                       const RunRequest& request);
  SandboxRunner(const SandboxOptions& box, std::unique_ptr<sandbox::WorkerPool> pool,
                int workers, ModelFiles* files)
      : box_(box), pool_(std::move(pool)), workers_(workers), files_(files) {}
  sandbox::JobLimits LimitsFor(absl::Duration wall) const;
  sandbox::WireLimits OutputLimits() const;

  const SandboxOptions box_;
  const std::unique_ptr<sandbox::WorkerPool> pool_;
  const int workers_;
  ModelFiles* const files_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_SANDBOX_RUNNER_H_
