// The scrub's thread and schedule (issue 28): runs a scrub job (DockImpl::RunScrub, which
// re-hashes every model file) every `interval` and whenever asked, one at a time, and keeps the
// last result. The job itself is a callback, so this part knows nothing of blobs or models.
//
// Owns: its thread, the request flag, the running/last-result state and the counters, all
// guarded by `mutex_` (with a condition variable that wakes the thread).
#ifndef MODELDOCK_DOCK_SCRUBBER_H_
#define MODELDOCK_DOCK_SCRUBBER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dock/types.h"

namespace modeldock::dock {

class Scrubber {
 public:
  // Runs one scrub; `stop` turns true when the dock shuts down (the job returns early).
  using Job = std::function<ScrubResult(const std::function<bool()>& stop)>;
  struct Options {
    absl::Duration interval = absl::Hours(24);  // zero: only on request
    // When the last scrub finished (any replica: read from the store), so that restarts do not
    // postpone scrubs forever; absl::InfinitePast() when none did.
    std::function<absl::Time()> last_run;
    // Records a finished scrub's time (the store's meta row).
    std::function<void(absl::Time)> record_run;
  };

  Scrubber(Options options, Job job);
  ~Scrubber();
  Scrubber(const Scrubber&) = delete;
  Scrubber& operator=(const Scrubber&) = delete;

  // Starts the thread (scheduled scrubs begin one interval after the last recorded one).
  void Start();
  // Starts a scrub now unless one is running; with `wait`, returns when the scrub that was
  // running or started is done (CANCELLED if `is_cancelled` turns true first).
  absl::StatusOr<ScrubResult> Request(bool wait, const std::function<bool()>& is_cancelled);
  // The running scrub (state kRunning) or the last one.
  ScrubResult Last() const;
  int64_t runs() const;
  // Stops a running scrub and the thread.
  void Stop();

 private:
  void Loop();

  const Options options_;
  const Job job_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool requested_ = false;
  bool running_ = false;
  bool stopping_ = false;
  int64_t started_runs_ = 0;   // scrubs begun
  int64_t finished_runs_ = 0;  // scrubs ended
  absl::Time next_due_ = absl::InfiniteFuture();
  ScrubResult last_;
  std::thread thread_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_SCRUBBER_H_
