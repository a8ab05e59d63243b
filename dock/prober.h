// Internal: probing (docs/ARCHITECTURE.md, "Registration"). A probing job runs a model black-box
// on its knowledge space's probe set, turns its behaviour into a knowledge vector, and commits
// the model READY with its probe outputs, compressed features and vector, then indexes the
// vector; or moves it to FAILED with the reason.
//
// Owns: the probing queue and its threads (ProbeQueue), the probing counters (atomics), and the
// request id of each waiting job (requests_mutex_).
// Locks: a job's commit and index change are one Registry::CommitProbe, under the registry lock,
// which orders them with deletions; nothing else here is shared.
#ifndef MODELDOCK_DOCK_PROBER_H_
#define MODELDOCK_DOCK_PROBER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "dock/caches.h"
#include "dock/caching_store.h"
#include "dock/knowledge_spaces.h"
#include "dock/model_runner.h"
#include "dock/registry.h"
#include "dock/probe_queue.h"
#include "dock/types.h"

namespace modeldock::dock {

struct ProberOptions {
  ProbeQueueOptions queue;
  // DockOptions::probe_budget: the wall time after which a model's probing stops (never before
  // kMinProbeRows samples); zero = the whole probe set.
  absl::Duration budget = absl::Seconds(60);
  absl::Duration run_time_limit = absl::Seconds(300);  // one chunk's run (sandbox.probe_time_limit)
  int stored_dim = 32;  // DockOptions::proxy.stored_dim: compressed probe features kept per model
};

class Prober {
 public:
  // Not owned; each must outlive the prober.
  struct Deps {
    // The model table (the dock's in memory): a job reads its model fresh (GetFresh); it
    // commits it READY with its probe data through the registry (Registry::CommitProbe).
    CachingModelTable* models = nullptr;
    KnowledgeSpaces* spaces = nullptr;
    ModelRunner* runner = nullptr;
    Registry* registry = nullptr;  // state transitions; commits ordered with deletions
    LruCache<const Tensor>* proxy_cache = nullptr;  // keys "id|probe set": erased on commit
  };
  // Probing never stops before this many probe samples (or the whole set, if smaller): fewer
  // leave too few boundary samples for a knowledge vector.
  static constexpr int64_t kMinProbeRows = 256;
  // A failed read of the job's model is retried after this, doubling up to the maximum.
  static constexpr absl::Duration kFirstReadBackoff = absl::Milliseconds(100);
  static constexpr absl::Duration kMaxReadBackoff = absl::Seconds(10);

  Prober(ProberOptions options, Deps deps);
  ~Prober();  // Stop() and Join()
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Queues a model's probing (see ProbeQueue::Enqueue); jobs may be queued before Start. The
  // job's log lines name the calling thread's request (the registration's), if any.
  void Enqueue(const std::string& model_id);
  void Start() { queue_->Start(); }
  // Takes no further job; a running job ends once its run is killed (the dock kills the
  // workers) and leaves its model PROBING, resumed at the next start. Join waits for it.
  void Stop() { queue_->Stop(); }
  void Join() { queue_->Join(); }
  int waiting() const { return queue_->waiting(); }

  int64_t done() const { return done_; }
  int64_t failed() const { return failed_; }
  double seconds() const { return static_cast<double>(micros_) / 1e6; }

  // One job, on the calling thread (ProbeQueue's callback; tests call it directly).
  void Probe(const std::string& id);

 private:
  struct ProbeRun {
    Tensor logits;
    Tensor features;  // empty without embed(x)
    int64_t rows = 0;
    bool budget_cut = false;
  };
  // The job's model from the database; a store error other than NOT_FOUND is retried (with
  // back-off) until it succeeds or the queue stops, so no job is lost to a passing store fault.
  absl::StatusOr<ModelRecord> ReadJob(const std::string& id);
  // Runs the model on a prefix of its space's probe set, chunk by chunk, until the set or the
  // budget is used up. Progress is shown in the model's state reason.
  absl::StatusOr<ProbeRun> RunOnProbes(ModelRecord& record, const KnowledgeSpace& space);
  // The checks, the vector and the commit of a finished run; the failure to report otherwise.
  absl::Status Commit(ModelRecord& record, KnowledgeSpace& space, const ProbeRun& run,
                      absl::Time start);
  // A model no knowledge space takes: READY for stage 2 only.
  void ReadyWithoutSpace(ModelRecord& record);

  const ProberOptions options_;
  const Deps deps_;
  // The request that queued each waiting job (only those queued while a request ran).
  std::mutex requests_mutex_;
  std::map<std::string, std::string> request_of_job_;
  std::unique_ptr<ProbeQueue> queue_;
  std::atomic<int64_t> done_{0}, failed_{0}, micros_{0};
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_PROBER_H_
