// Tuner: "rank, then tune" (issue 27). Recommends with the dock's normal pipeline, splits the
// query's labelled samples (seeded, stratified), fine-tunes the top K candidates one after
// another in a modeldock-worker of its own (encoder/fine_tune.h through sandbox::WorkerPool's
// tune jobs), and records every candidate's validation accuracy as an outcome record of source
// `tune`.
//
// Owns: its WorkerPool of one worker, started at the first tune, so that tunes never take the
// workers recommendations and probes run on (they queue for their own). pool_mutex_ guards
// pool_ (its start and shutdown); the pool locks itself for jobs, so concurrent tunes wait
// for its one worker. Everything else is set at construction.
#ifndef MODELDOCK_DOCK_TUNER_H_
#define MODELDOCK_DOCK_TUNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dock/sandbox_runner.h"
#include "dock/types.h"
#include "sandbox/worker_pool.h"

namespace modeldock::dock {

// What the tuner needs from the dock (not owned; the dock outlives its tuner).
struct TunerHost {
  std::function<absl::StatusOr<RecommendResult>(const RecommendQuery&)> recommend;
  std::function<absl::StatusOr<OutcomeReportResult>(const OutcomeReport&)> report;
  ModelFiles* files = nullptr;  // verified paths of stored model files
};

// A seeded stratified split of `labels`: per class, round(fraction * n) samples (at least 1,
// at most n - 1) go to validation, chosen by a std::mt19937 shuffle of the class's indices.
// INVALID_ARGUMENT for a class with fewer than 2 samples. Indices ascending in each split.
struct Split {
  std::vector<int64_t> train, validation;
};
absl::StatusOr<Split> StratifiedSplit(const std::vector<int32_t>& labels, double fraction,
                                      uint64_t seed);

class Tuner {
 public:
  // `box`: the dock's sandbox options (binary, memory, confinement); the pool has 1 worker.
  Tuner(const SandboxOptions& box, TunerHost host);
  ~Tuner();

  // INVALID_ARGUMENT (unlabelled data, a class too small to split, top_k outside 1..10, a
  // non-positive budget); the recommendation's errors. A candidate that fails (no embed, a
  // non-finite loss, a limit) is reported in its row, not retried; the call fails only when
  // nothing could be tried. CANCELLED when query.is_cancelled says so.
  absl::StatusOr<TuneResult> Tune(const TuneQuery& query,
                                  const std::function<void(const TuneProgressEvent&)>& progress);

  // Kills the worker: a tune running ends with its candidate failed.
  void Shutdown();

 private:
  absl::StatusOr<sandbox::WorkerPool*> Pool();
  // One candidate's tune job in the pool, its row filled in (ok or failure).
  void TuneOne(const TuneQuery& query, const Split& split, const Recommendation& rec,
               int index, absl::Duration budget,
               const std::function<void(const TuneProgressEvent&)>& progress,
               TuneCandidate* row, std::string* tuned_model);

  const SandboxOptions box_;
  const TunerHost host_;
  std::mutex pool_mutex_;
  std::unique_ptr<sandbox::WorkerPool> pool_;  // guarded by pool_mutex_
  bool shut_down_ = false;                     // guarded by pool_mutex_
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_TUNER_H_
