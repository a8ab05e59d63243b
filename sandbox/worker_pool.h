// A pool of modeldock-worker processes that run every piece of uploaded model code (admission
// checks, probing, stage-2 runs), so that none runs in the server process.
//
// Limits per job, enforced from outside the worker: wall time and CPU time (the pool watches the
// worker and SIGKILLs it), memory (the worker's own RLIMIT_AS, set before any model loads: an
// allocation past it fails inside the model and the worker is replaced). Hot models stay loaded
// in the worker that ran them, and jobs for a model go to that worker when it is free.
#ifndef MODELDOCK_SANDBOX_WORKER_POOL_H_
#define MODELDOCK_SANDBOX_WORKER_POOL_H_

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "sandbox/wire.h"

namespace modeldock::sandbox {

// CPU time (user + system, all threads) a process has used, from /proc/PID/stat; -1 if it is
// gone. What the pool's CPU limit measures (and what tests use to check that nothing spins).
double ProcessCpuSeconds(pid_t pid);

struct PoolOptions {
  std::string worker_binary;  // path of modeldock-worker
  int workers = 2;
  int torch_threads = 1;                  // LibTorch threads inside each worker
  int64_t memory_limit_bytes = 4ll << 30;  // address space of each worker (0 = none)
  // Loaded models kept per worker, by an estimate of their memory (twice the file size).
  int64_t model_cache_bytes = 1ll << 30;
  // Jobs allowed to wait for a free worker; past this, RESOURCE_EXHAUSTED with a retry hint.
  int max_waiting = 256;
  bool isolate_network = true;
  bool seccomp = true;
};

struct JobLimits {
  absl::Duration wall = absl::Seconds(60);
  absl::Duration cpu = absl::Seconds(120);  // summed over the worker's threads
};

// Polled while a job waits or runs: true abandons it (CANCELLED), killing the worker if it runs.
using CancelCheck = std::function<bool()>;

struct AdmitResult {
  bool has_embed = false;
  int64_t feature_dim = 0;
  int64_t num_outputs = 0;
  std::vector<std::string> layer_names;  // embed_layers; empty without
  std::vector<int64_t> layer_dims;
  double millis = 0;
};

struct RunResult {
  Tensor logits;
  Tensor features;  // empty shape when not requested or not exported
  std::vector<Tensor> layers;  // embed_layers' outputs when request.layer_dims was set
  double millis = 0;
  bool cache_hit = false;
};

struct PoolStats {
  int workers = 0;
  std::vector<pid_t> pids;  // running workers (-1 for a slot not started yet)
  int64_t jobs = 0;
  int64_t restarts = 0;     // workers killed or lost and replaced
  int waiting = 0;
  std::string confinement;  // what the last started worker reported
};

class WorkerPool {
 public:
  // Checks the binary and starts one worker to learn what confinement this host allows.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Start(const PoolOptions& options);
  ~WorkerPool();

  // Admission checks of an uploaded file (request.kind must be kAdmit; never cached in a worker).
  absl::StatusOr<AdmitResult> Admit(const JobRequest& request, const JobLimits& limits,
                                    const CancelCheck& cancelled);
  // Runs a model on request.samples (request.kind must be kRun). request.model_key routes the
  // job to a worker that has the model loaded. The samples are sent without a copy.
  absl::StatusOr<RunResult> Run(const JobRequest& request, const JobLimits& limits,
                                const CancelCheck& cancelled);

  // The model's file is gone: workers drop it at their next job.
  void Forget(const std::string& model_key);
  // Whether some worker has the model loaded (the latency budget's estimate of load time).
  bool IsLoaded(const std::string& model_key);
  // The pool refused a job because too many were waiting (retry later), as opposed to a job
  // that failed on its own.
  static bool IsOverloaded(const absl::Status& status);
  PoolStats Stats();
  // Kills every worker; jobs waiting or running end with UNAVAILABLE.
  void Shutdown();

 private:
  struct Slot {
    pid_t pid = -1;
    int fd = -1;
    bool busy = false;
    std::list<std::pair<std::string, int64_t>> loaded;  // (key, cost), most recent first
    std::vector<std::string> unload;                    // sent with the next job
  };

  explicit WorkerPool(const PoolOptions& options);
  absl::StatusOr<int> Acquire(const std::string& model_key, const CancelCheck& cancelled);
  void Release(int slot, bool keep_process);
  absl::Status Spawn(Slot& slot);
  void Kill(Slot& slot);
  absl::StatusOr<JobResponse> Execute(int slot, const JobRequest& request,
                                      const JobLimits& limits, const CancelCheck& cancelled,
                                      uint64_t max_floats);
  void NoteLoaded(Slot& slot, const std::string& key, int64_t cost);

  PoolOptions options_;
  std::mutex mutex_;
  std::condition_variable free_;
  std::vector<Slot> slots_;
  int waiting_ = 0;
  int64_t jobs_ = 0;
  int64_t restarts_ = 0;
  bool stopping_ = false;
  std::string confinement_;
  std::string root_dir_;  // empty directory the workers chroot into
};

}  // namespace modeldock::sandbox

#endif  // MODELDOCK_SANDBOX_WORKER_POOL_H_
