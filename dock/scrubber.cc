#include "dock/scrubber.h"

#include <algorithm>

#include "spdlog/spdlog.h"

namespace modeldock::dock {

const char* ScrubStateName(ScrubResult::State state) {
  switch (state) {
    case ScrubResult::State::kIdle: return "idle";
    case ScrubResult::State::kRunning: return "running";
    case ScrubResult::State::kDone: return "done";
    case ScrubResult::State::kFailed: return "failed";
  }
  return "unknown";
}

Scrubber::Scrubber(Options options, Job job)
    : options_(std::move(options)), job_(std::move(job)) {}

Scrubber::~Scrubber() { Stop(); }

void Scrubber::Start() {
  if (options_.interval > absl::ZeroDuration()) {
    const absl::Time last = options_.last_run ? options_.last_run() : absl::InfinitePast();
    // Never scrubbed: one interval from now (a fresh dock's files were hashed at upload).
    next_due_ = last == absl::InfinitePast() ? absl::Now() + options_.interval
                                             : std::max(last + options_.interval, absl::Now());
    spdlog::info("scrub: every {}; next at {}", absl::FormatDuration(options_.interval),
                 absl::FormatTime(next_due_, absl::UTCTimeZone()));
  }
  thread_ = std::thread([this] { Loop(); });
}

void Scrubber::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scrubber::Loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    while (!stopping_ && !requested_ && absl::Now() < next_due_) {
      const absl::Duration left = std::min(next_due_ - absl::Now(), absl::Minutes(1));
      changed_.wait_for(lock, absl::ToChronoMilliseconds(std::max(left, absl::Milliseconds(1))));
    }
    if (stopping_) return;
    requested_ = false;
    running_ = true;
    ++started_runs_;
    ScrubResult running;
    running.state = ScrubResult::State::kRunning;
    running.started_unix_ms = absl::ToUnixMillis(absl::Now());
    last_ = running;
    lock.unlock();
    changed_.notify_all();
    ScrubResult result = job_([this] {
      std::lock_guard<std::mutex> guard(mutex_);
      return stopping_;
    });
    result.started_unix_ms = running.started_unix_ms;
    result.finished_unix_ms = absl::ToUnixMillis(absl::Now());
    if (result.state == ScrubResult::State::kDone && options_.record_run) {
      options_.record_run(absl::FromUnixMillis(result.finished_unix_ms));
    }
    lock.lock();
    last_ = std::move(result);
    running_ = false;
    ++finished_runs_;
    if (options_.interval > absl::ZeroDuration()) next_due_ = absl::Now() + options_.interval;
    changed_.notify_all();
  }
}

absl::StatusOr<ScrubResult> Scrubber::Request(bool wait,
                                              const std::function<bool()>& is_cancelled) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  // The scrub this request waits for: the running one, or the next one started.
  const int64_t target = running_ ? started_runs_ : started_runs_ + 1;
  if (!running_ && !requested_) {
    requested_ = true;
    changed_.notify_all();
  }
  if (!wait) {
    // Report it as running from now on, even before the thread picked it up.
    changed_.wait_for(lock, std::chrono::seconds(1), [&] { return started_runs_ >= target; });
    return last_;
  }
  while (finished_runs_ < target) {
    if (stopping_) return absl::UnavailableError("the server is shutting down");
    if (is_cancelled && is_cancelled()) {
      return absl::CancelledError("stopped waiting for the scrub; it goes on");
    }
    changed_.wait_for(lock, std::chrono::milliseconds(200));
  }
  return last_;
}

ScrubResult Scrubber::Last() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_;
}

int64_t Scrubber::runs() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_runs_;
}

}  // namespace modeldock::dock
