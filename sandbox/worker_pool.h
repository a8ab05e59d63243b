// A pool of modeldock-worker processes that run every piece of uploaded model code (admission
// checks, probing, stage-2 runs), so that none runs in the server process.
//
// Limits per job, enforced from outside the worker: wall time and CPU time (the pool watches the
// worker and SIGKILLs it), memory actually used (a cgroup v2 memory.max per worker where the host
// delegates one, else the worker's resident memory polled with the other limits; see
// memory_limit.h). A job killed for memory is run again on a fresh worker at half the batch, down
// to one sample; the batch that fitted is remembered per model. Hot models stay loaded in the
// worker that ran them, and jobs for a model go to that worker when it is free.
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
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "sandbox/memory_limit.h"
#include "sandbox/wire.h"

namespace modeldock::sandbox {

// CPU time (user + system, all threads) a process has used, from /proc/PID/stat; -1 if it is
// gone. What the pool's CPU limit measures (and what tests use to check that nothing spins).
double ProcessCpuSeconds(pid_t pid);

struct PoolOptions {
  std::string worker_binary;  // path of modeldock-worker
  int workers = 2;
  int torch_threads = 1;                  // LibTorch threads inside each worker
  // Memory each worker may use: resident (anonymous + shared) memory, or the cgroup's memory.max
  // where one is available. 0 = none.
  int64_t memory_limit_bytes = 4ll << 30;
  // Address-space cap (RLIMIT_AS) kept as a backstop against one huge allocation between two
  // polls; 0 = AddressSpaceBackstop(memory_limit_bytes), -1 = none.
  int64_t address_space_limit_bytes = 0;
  // Limit memory by cgroup v2 where this process's cgroup allows it (else resident memory).
  bool use_cgroup = true;
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
  int64_t batch_size = 0;  // the batch the model ran at (smaller than asked after running out)
};

// A tune job's result (encoder::FineTuneResult across the wire).
struct TuneResult {
  std::vector<WireTuneEpoch> epochs;
  int64_t best_epoch = 0;
  double best_accuracy = 0;
  int64_t train_samples = 0;
  int64_t val_samples = 0;
  std::string stop_reason;
  std::string tuned_model;  // TorchScript archive of the best epoch
  double millis = 0;
};

// Called on the job's thread for every epoch a tune job finishes (epoch 0 included).
using TuneProgressFn = std::function<void(const WireTuneEpoch&)>;

struct PoolStats {
  int workers = 0;
  std::vector<pid_t> pids;  // running workers (-1 for a slot not started yet)
  int64_t jobs = 0;
  int64_t restarts = 0;     // workers killed or lost and replaced
  int waiting = 0;
  std::string confinement;  // what the last started worker reported
  std::string memory_limit;  // how memory is limited ("resident memory <= 4.00 GiB, ...")
  int64_t memory_kills = 0;  // jobs killed for memory (each retried at half the batch)
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

  // Fine-tunes a model (request.kind must be kTune; request.model_path its file) in a worker,
  // with progress after every epoch. Never retried: a job killed for time or memory fails with
  // DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED (the worker is replaced; other jobs go on).
  absl::StatusOr<TuneResult> Tune(const JobRequest& request, const JobLimits& limits,
                                  const CancelCheck& cancelled, const TuneProgressFn& progress);

  // The model's file is gone: workers drop it at their next job.
  void Forget(const std::string& model_key);
  // Whether some worker has the model loaded (the latency budget's estimate of load time).
  bool IsLoaded(const std::string& model_key);
  // The pool refused a job because too many were waiting (retry later), as opposed to a job
  // that failed on its own.
  static bool IsOverloaded(const absl::Status& status);
  // The worker was killed for going past the memory limit (after the retries at smaller batches).
  static bool IsMemoryExceeded(const absl::Status& status);
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
    std::string cgroup;  // its cgroup (memory.max); empty = resident memory is polled
  };

  explicit WorkerPool(const PoolOptions& options);
  absl::StatusOr<int> Acquire(const std::string& model_key, const CancelCheck& cancelled);
  void Release(int slot, bool keep_process);
  absl::Status Spawn(Slot& slot);
  // Spawn's parts: the worker's command line and environment, and the process itself (its end
  // of the socket pair as fd 3, stdout to stderr, no signals blocked).
  std::vector<std::string> WorkerArguments() const;
  std::vector<std::string> WorkerEnvironment() const;
  absl::StatusOr<pid_t> StartWorkerProcess(int child_end) const;
  // What Execute uses of its slot, read under the lock once the slot has a live worker.
  struct SlotView {
    pid_t pid = -1;
    int fd = -1;
    std::string cgroup;
    std::vector<std::string> unload;  // sent with this job
  };
  // Execute's parts: the slot's worker (started again if it died while idle; on failure the
  // slot is released), and the job's frames both ways under `check` (`model_fd`, if any, is
  // passed to the worker and closed).
  absl::Status TakeSlot(int index, SlotView* view);
  absl::StatusOr<JobResponse> Exchange(int fd, int model_fd, const JobRequest& request,
                                       const WaitCheck& check, std::vector<std::string>* unload,
                                       int64_t batch_cap, uint64_t max_floats,
                                       const TuneProgressFn& progress);
  void Kill(Slot& slot);
  absl::StatusOr<JobResponse> Execute(int slot, const JobRequest& request,
                                      const JobLimits& limits, const CancelCheck& cancelled,
                                      uint64_t max_floats, int64_t batch_cap,
                                      absl::Time job_start,
                                      const TuneProgressFn& progress = nullptr);
  // Execute on a free worker, again at half the batch (down to 1) while the worker is killed for
  // memory, within the job's wall-time limit.
  absl::StatusOr<JobResponse> ExecuteHalving(const JobRequest& request, const JobLimits& limits,
                                             const CancelCheck& cancelled, uint64_t max_floats);
  // RESOURCE_EXHAUSTED naming the limit, with a payload that IsMemoryExceeded recognises.
  absl::Status MemoryExceeded(int64_t used, const std::string& cgroup) const;
  // The worker died under a job: reaped, its slot freed, and the cause named.
  absl::Status WorkerDied(int index, pid_t pid, const std::string& cgroup);
  int64_t AddressSpaceLimit() const;  // the backstop passed to workers; 0 = none
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
  std::unique_ptr<WorkerCgroups> cgroups_;  // null: resident memory is polled
  std::string memory_limit_;  // PoolStats::memory_limit
  int64_t memory_kills_ = 0;
  // Batch that fitted a model after a memory kill or an allocation failure, by model key.
  std::unordered_map<std::string, int64_t> fitted_batch_;
};

}  // namespace modeldock::sandbox

#endif  // MODELDOCK_SANDBOX_WORKER_POOL_H_
