// Internal: a model's state transitions (PENDING -> PROBING -> READY or FAILED, and back to
// PENDING to probe again) and the callers waiting for them (Dock::WaitForChange). Every change
// of a row's state, reason, spec or revision that a waiter must see goes through here.
//
// Owns: the waiters' condition variable, guarded by `mutex_`. The rows themselves are the model
// table's (ModelTable: in the dock, the CachingModelTable, with its own locks); a transition is
// one write to it.
#ifndef MODELDOCK_DOCK_MODEL_STATES_H_
#define MODELDOCK_DOCK_MODEL_STATES_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dock/store_tables.h"
#include "dock/types.h"

namespace modeldock::dock {

class ModelStates {
 public:
  // `models` (not owned) holds the rows; reads for waiters come from it too.
  explicit ModelStates(ModelTable* models) : models_(models) {}
  ModelStates(const ModelStates&) = delete;
  ModelStates& operator=(const ModelStates&) = delete;

  // Moves `record` to `state` with `reason` (revision + 1), writes it and wakes the waiters.
  // NOT_FOUND (deleted meanwhile) is nothing to do. Another store error is logged with the
  // model's id, not returned: the callers (a probing job, an integrity check) go on with the
  // record changed in memory, and their next transition writes the whole row again.
  void Set(ModelRecord& record, ModelState state, const std::string& reason);
  // Writes `record`'s edited spec with revision + 1 (Dock::UpdateModel), waking the waiters.
  absl::Status UpdateSpec(ModelRecord& record);
  // Wakes the waiters (a change written elsewhere: a probe's commit, a deletion, a replica's).
  void Notify();
  // The record once its revision differs from `seen_revision`, or at `timeout` as it is then.
  absl::StatusOr<ModelRecord> WaitForChange(const std::string& id, int64_t seen_revision,
                                            absl::Duration timeout);

 private:
  ModelTable* const models_;
  std::mutex mutex_;
  std::condition_variable changed_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_MODEL_STATES_H_
