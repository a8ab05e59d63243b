#include "dock/probe_queue.h"

#include <chrono>
#include <utility>

#include "spdlog/spdlog.h"

namespace modeldock::dock {

ProbeQueue::ProbeQueue(ProbeQueueOptions options, ProbeFn probe)
    : options_(std::move(options)), probe_(std::move(probe)) {}

ProbeQueue::~ProbeQueue() {
  Stop();
  Join();
}

void ProbeQueue::Enqueue(const std::string& model_id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Shared queue: the model's row is the job (PENDING); only wake a worker to claim it.
    if (options_.shared_jobs == nullptr) queue_.push_back(model_id);
  }
  wake_.notify_one();
}

void ProbeQueue::Start() {
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this] {
      if (options_.shared_jobs != nullptr) {
        ClaimFromStore();
      } else {
        RunQueued();
      }
    });
  }
  if (options_.shared_jobs != nullptr) threads_.emplace_back([this] { RenewLeases(); });
}

void ProbeQueue::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  renewal_wake_.notify_all();
}

void ProbeQueue::Join() {
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

bool ProbeQueue::stopping() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopping_;
}

bool ProbeQueue::WaitUnlessStopping(absl::Duration delay) {
  std::unique_lock<std::mutex> lock(mutex_);
  renewal_wake_.wait_for(lock, absl::ToChronoMilliseconds(delay), [this] { return stopping_; });
  return !stopping_;
}

int ProbeQueue::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(queue_.size());
}

void ProbeQueue::RunQueued() {
  while (true) {
    std::string id;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      id = queue_.front();
      queue_.pop_front();
    }
    probe_(id);
  }
}

void ProbeQueue::ClaimFromStore() {
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
    }
    auto claimed = options_.shared_jobs->ClaimProbeJob(options_.replica_id, options_.lease);
    if (!claimed.ok()) spdlog::warn("cannot claim a probing job: {}", claimed.status().ToString());
    if (!claimed.ok() || !claimed->has_value()) {
      // Woken by a registration on this replica; others' jobs and expired leases are found by
      // looking again every second.
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, std::chrono::seconds(1));
      continue;
    }
    const std::string id = **claimed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      leased_.insert(id);
    }
    spdlog::info("probing job {} claimed by {}", id, options_.replica_id);
    probe_(id);
    std::lock_guard<std::mutex> lock(mutex_);
    leased_.erase(id);
  }
}

void ProbeQueue::RenewLeases() {
  // A third of the lease: two renewals may fail (a slow store, a reconnect) before another
  // replica may take the job over.
  const auto period = absl::ToChronoMilliseconds(options_.lease / 3);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!renewal_wake_.wait_for(lock, period, [this] { return stopping_; })) {
    const std::vector<std::string> ids(leased_.begin(), leased_.end());
    if (ids.empty()) continue;
    lock.unlock();
    absl::Status s =
        options_.shared_jobs->RenewProbeLeases(ids, options_.replica_id, options_.lease);
    if (!s.ok()) {
      spdlog::warn("cannot renew the leases of {} probing jobs: {}", ids.size(), s.ToString());
    }
    lock.lock();
  }
}

}  // namespace modeldock::dock
