// A bounded queue of background jobs run one at a time on a thread of their own: work the dock
// does after answering a call (the stage-2 standings of a reported query), which must never
// hold up the call itself nor outlive the dock.
//
// Owns: the pending jobs, the thread and the stop flag (`mutex_`). Jobs run outside the lock.
#ifndef MODELDOCK_DOCK_BACKGROUND_QUEUE_H_
#define MODELDOCK_DOCK_BACKGROUND_QUEUE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace modeldock::dock {

class BackgroundQueue {
 public:
  // A job gets a "stop" predicate: true once the queue shuts down (a long job returns early).
  using Job = std::function<void(const std::function<bool()>& stopping)>;

  // `name` labels the log lines. At most `capacity` jobs wait (the running one not counted), and
  // together they hold at most `max_bytes` (what each job says it holds; a job larger than that
  // is still taken when none waits).
  BackgroundQueue(std::string name, size_t capacity, size_t max_bytes = SIZE_MAX);
  ~BackgroundQueue() { Shutdown(); }
  BackgroundQueue(const BackgroundQueue&) = delete;
  BackgroundQueue& operator=(const BackgroundQueue&) = delete;

  // False (and the job dropped, with a log line naming `what`) when the queue is full or shut
  // down: background work is best effort, the caller's answer never waits for room.
  bool Submit(const std::string& what, Job job, size_t bytes = 0);
  // Blocks until no job is pending or running (tests, and a clean shutdown of tools).
  void WaitIdle();
  // Drops the pending jobs, tells the running one to stop, and joins the thread. Idempotent.
  void Shutdown();

  size_t dropped() const { return dropped_.load(); }

 private:
  void Run();

  const std::string name_;
  const size_t capacity_;
  const size_t max_bytes_;
  std::mutex mutex_;
  std::condition_variable changed_;
  struct Pending {
    std::string what;
    Job job;
    size_t bytes = 0;
  };
  std::deque<Pending> pending_;
  size_t pending_bytes_ = 0;
  bool running_job_ = false;
  bool stopping_ = false;
  std::atomic<bool> stop_flag_{false};
  std::atomic<size_t> dropped_{0};
  std::thread thread_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_BACKGROUND_QUEUE_H_
