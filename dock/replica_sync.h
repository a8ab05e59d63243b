// Internal: a replica's sync thread (docs/ARCHITECTURE.md, "Replicas"). Servers sharing one
// PostgreSQL announce committed model changes on a ChangeFeed; this thread hands each to the
// dock and, at start, every `interval` and after a lost connection, has the dock compare all
// it holds with the store (notifications may have been missed meanwhile).
//
// Owns: the ChangeFeed and the sync thread (`mutex_` guards stopping). The handlers run on that
// thread and take the dock's locks themselves.
#ifndef MODELDOCK_DOCK_REPLICA_SYNC_H_
#define MODELDOCK_DOCK_REPLICA_SYNC_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dock/store_tables.h"

namespace modeldock::dock {

class ReplicaSync {
 public:
  struct Handlers {
    // Brings what this replica holds about one model in line with the store. Must be
    // idempotent: duplicate, late and own notifications arrive too.
    std::function<absl::Status(const ModelChangeEvent& event)> apply;
    // Compares everything with the store and repairs the differences.
    std::function<absl::Status()> catch_up;
  };

  // `feed` is opened before the dock brings its index up to date, so that no change falls in
  // between; the thread starts with Start, after that.
  ReplicaSync(std::unique_ptr<ChangeFeed> feed, absl::Duration interval, Handlers handlers);
  ~ReplicaSync();  // Stop()
  ReplicaSync(const ReplicaSync&) = delete;
  ReplicaSync& operator=(const ReplicaSync&) = delete;

  void Start();
  // Ends the thread within one feed wait (250 ms) plus a running handler.
  void Stop();

 private:
  void Run();
  bool stopping() const;

  const std::unique_ptr<ChangeFeed> feed_;
  const absl::Duration interval_;
  const Handlers handlers_;
  mutable std::mutex mutex_;
  std::condition_variable stop_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_REPLICA_SYNC_H_
