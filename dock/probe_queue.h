// Internal: the dock's probing jobs and the threads that run them (docs/ARCHITECTURE.md,
// "Registration" and "Replicas"). The queue knows nothing of what a probe does: each job is a
// model id handed to the dock's `probe` callback (the Prober, prober.h).
//
// Owns: the in-memory jobs, the leases this replica holds and the worker and renewal threads;
// `mutex_` guards the jobs, leases and stopping flag.
#ifndef MODELDOCK_DOCK_PROBE_QUEUE_H_
#define MODELDOCK_DOCK_PROBE_QUEUE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "dock/store_tables.h"

namespace modeldock::dock {

struct ProbeQueueOptions {
  int workers = 2;
  // Null: this process is the store's only user and the jobs are an in-memory FIFO. Set
  // (replicas on one PostgreSQL): a PENDING row is the job; workers claim it from this table
  // (the store's lease columns, not owned), leased to `replica_id`, and a thread renews the
  // leases every lease / 3 while the probes run, so the job of a replica that dies mid-probe is
  // taken over once its lease expires.
  ProbeJobTable* shared_jobs = nullptr;
  std::string replica_id;  // the owner of this replica's leases
  absl::Duration lease = absl::Seconds(30);
};

class ProbeQueue {
 public:
  // Runs one job to its end (sets the model's state itself); called on a worker thread.
  using ProbeFn = std::function<void(const std::string& model_id)>;

  ProbeQueue(ProbeQueueOptions options, ProbeFn probe);
  ~ProbeQueue();  // Stop() and Join()
  ProbeQueue(const ProbeQueue&) = delete;
  ProbeQueue& operator=(const ProbeQueue&) = delete;

  // Queues a job (in-memory mode) or wakes a worker to claim it from the store (shared mode).
  // Jobs may be queued before Start: the dock's start-up requeues interrupted probes first.
  void Enqueue(const std::string& model_id);
  void Start();
  // Takes no further job and wakes idle workers. A running probe sees stopping() and ends
  // early once the dock kills its worker process; Join waits for it.
  void Stop();
  void Join();
  bool stopping() const;
  // Waits `delay`, or less if Stop is called meanwhile; false when stopping. A job uses it to
  // back off before it retries a failed store read (the job stays its thread's).
  bool WaitUnlessStopping(absl::Duration delay);
  // Jobs waiting in the in-memory queue (0 in shared mode: the store holds them).
  int waiting() const;

 private:
  void RunQueued();       // in-memory mode: one worker thread
  void ClaimFromStore();  // shared mode: one worker thread
  void RenewLeases();     // shared mode: the renewal thread

  const ProbeQueueOptions options_;
  const ProbeFn probe_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;          // a job was queued, or stopping
  std::condition_variable renewal_wake_;  // stopping (renewal thread, WaitUnlessStopping)
  std::deque<std::string> queue_;         // in-memory mode only
  std::set<std::string> leased_;          // shared mode: the jobs this replica's workers run
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_PROBE_QUEUE_H_
