#include "dock/replica_sync.h"

#include <chrono>
#include <utility>

#include "spdlog/spdlog.h"

namespace modeldock::dock {

ReplicaSync::ReplicaSync(std::unique_ptr<ChangeFeed> feed, absl::Duration interval,
                         Handlers handlers)
    : feed_(std::move(feed)), interval_(interval), handlers_(std::move(handlers)) {}

ReplicaSync::~ReplicaSync() { Stop(); }

void ReplicaSync::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ReplicaSync::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool ReplicaSync::stopping() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopping_;
}

void ReplicaSync::Run() {
  // The dock rebuilt its index from the store after LISTEN began; one catch-up at once covers a
  // change committed between that rebuild and this thread's first Wait.
  bool catch_up = true;
  absl::Time last_catch_up = absl::InfinitePast();
  while (!stopping()) {
    auto events = feed_->Wait(absl::Milliseconds(250));
    if (!events.ok()) {
      spdlog::warn("{}; catching up from the store once it is back", events.status().ToString());
      catch_up = true;
      std::unique_lock<std::mutex> lock(mutex_);
      stop_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
      continue;
    }
    for (const ModelChangeEvent& event : *events) {
      if (absl::Status s = handlers_.apply(event); !s.ok()) {
        spdlog::warn("cannot apply change '{}' of model {}: {}; catching up from the store",
                     ModelChangeName(event.change), event.model_id, s.ToString());
        catch_up = true;
      }
    }
    if (catch_up || absl::Now() - last_catch_up >= interval_) {
      absl::Status s = handlers_.catch_up();
      if (!s.ok()) spdlog::warn("index catch-up failed: {}", s.ToString());
      catch_up = !s.ok();
      last_catch_up = absl::Now();
    }
  }
}

}  // namespace modeldock::dock
