// The dock's learning loop (issue 9): outcome records, background training of the outcome
// ranker, versions and the serving version. One part of the engine with its own state; DockImpl
// feeds it reports (after encoding the dataset) and asks it which version ranks a recommendation.
#ifndef MODELDOCK_DOCK_LEARNING_H_
#define MODELDOCK_DOCK_LEARNING_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dock/dock.h"
#include "dock/metadata_store.h"
#include "encoder/outcome_ranker.h"

namespace modeldock::dock {

// Black-box facts the ranker may use for a model (its feature width and class count).
std::vector<double> FactsOf(const ModelRecord& record);

class LearningLoop {
 public:
  explicit LearningLoop(MetadataStore* store) : store_(store) {}
  ~LearningLoop() { Shutdown(); }

  // Restores the serving version from the store (untrained when none or unreadable).
  absl::Status Load();

  // What ranks one recommendation: a consistent snapshot (version 0 = untrained, no ranker).
  struct Serving {
    int64_t version = 0;
    std::shared_ptr<const encoder::OutcomeRanker> ranker;
  };
  Serving Current() const;

  absl::StatusOr<RecordList> Records(const std::string& model_id, int limit);

  // `models`: the dock's models now (outcomes of deleted models are left out of training).
  absl::StatusOr<TrainingStatus> Train(bool wait, const std::function<bool()>& is_cancelled,
                                       std::vector<ModelRecord> models);
  absl::StatusOr<AlignmentList> Versions();
  absl::Status Use(int64_t version);

  void Shutdown();

 private:
  void RunTraining(std::vector<ModelRecord> models);
  absl::StatusOr<AlignmentVersion> TrainOnce(const std::vector<ModelRecord>& models);

  MetadataStore* store_;
  mutable std::mutex serving_mutex_;
  Serving serving_;

  std::mutex training_mutex_;
  std::condition_variable training_done_;
  TrainingStatus training_;
  std::thread training_thread_;
  std::atomic<bool> stopping_{false};
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_LEARNING_H_
