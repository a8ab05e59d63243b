#include "dock/background_queue.h"

#include <algorithm>
#include <utility>

#include "spdlog/spdlog.h"

namespace modeldock::dock {

BackgroundQueue::BackgroundQueue(std::string name, size_t capacity, size_t max_bytes)
    : name_(std::move(name)), capacity_(capacity), max_bytes_(max_bytes) {
  thread_ = std::thread([this] { Run(); });
}

bool BackgroundQueue::Submit(const std::string& what, Job job, size_t bytes) {
  size_t waiting = 0, waiting_bytes = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool fits = pending_.empty() || (pending_.size() < capacity_ &&
                                           bytes <= max_bytes_ - std::min(max_bytes_, pending_bytes_));
    if (!stopping_ && fits) {
      pending_.push_back({what, std::move(job), bytes});
      pending_bytes_ += bytes;
      changed_.notify_all();
      return true;
    }
    waiting = pending_.size();
    waiting_bytes = pending_bytes_;
  }
  ++dropped_;
  spdlog::warn("{}: {} dropped ({} job(s) of {} bytes waiting already, or shutting down)", name_,
               what, waiting, waiting_bytes);
  return false;
}

void BackgroundQueue::WaitIdle() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return stopping_ || (pending_.empty() && !running_job_); });
}

void BackgroundQueue::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopping_ && !pending_.empty()) {
      spdlog::info("{}: {} pending job(s) dropped at shutdown", name_, pending_.size());
    }
    stopping_ = true;
    pending_.clear();
    pending_bytes_ = 0;
    stop_flag_ = true;
    changed_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void BackgroundQueue::Run() {
  const std::function<bool()> stopping = [this] { return stop_flag_.load(); };
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (stopping_) return;
    Pending next = std::move(pending_.front());
    pending_.pop_front();
    pending_bytes_ -= next.bytes;
    running_job_ = true;
    lock.unlock();
    spdlog::debug("{}: running {}", name_, next.what);
    next.job(stopping);
    lock.lock();
    running_job_ = false;
    changed_.notify_all();
  }
}

}  // namespace modeldock::dock
