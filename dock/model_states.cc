#include "dock/model_states.h"

#include <algorithm>

#include "spdlog/spdlog.h"

namespace modeldock::dock {

void ModelStates::Set(ModelRecord& record, ModelState state, const std::string& reason) {
  record.state = state;
  record.state_reason = reason;
  ++record.revision;
  const absl::Status s = models_->UpdateState(record);
  if (!s.ok() && !absl::IsNotFound(s)) {
    spdlog::error("cannot update state of {} to {}: {}", record.id, ModelStateName(state),
                  s.ToString());
  }
  Notify();
}

absl::Status ModelStates::UpdateSpec(ModelRecord& record) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++record.revision;
  if (absl::Status s = models_->UpdateSpec(record); !s.ok()) return s;
  changed_.notify_all();
  return absl::OkStatus();
}

void ModelStates::Notify() {
  std::lock_guard<std::mutex> lock(mutex_);
  changed_.notify_all();
}

absl::StatusOr<ModelRecord> ModelStates::WaitForChange(const std::string& id,
                                                       int64_t seen_revision,
                                                       absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    auto record = models_->Get(id);
    if (!record.ok()) return record.status();
    const absl::Duration left = deadline - absl::Now();
    if (record->revision != seen_revision || left <= absl::ZeroDuration()) return record;
    changed_.wait_for(lock,
                      absl::ToChronoMilliseconds(std::min(left, absl::Milliseconds(200))));
  }
}

}  // namespace modeldock::dock
