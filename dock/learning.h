// The dock's learning loop (issue 9): outcome records, background training of the outcome
// ranker, versions and the serving version. One part of the engine with its own state; DockImpl
// feeds it reports (after encoding the dataset) and asks it which version ranks a recommendation.
//
// Owns: the serving version (`serving_mutex_`), the training job and its thread
// (`training_mutex_`). Serving a version goes through `adopt` (the dock's UseAlignment), which
// holds the dock's registry lock while the version's index is built and swapped in. Uses the
// store's outcome, alignment (ranker versions) and meta (the serving version) tables only.
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
#include "dock/store_tables.h"
#include "dock/types.h"
#include "encoder/outcome_ranker.h"
#include "index/vector_index.h"

namespace modeldock::dock {

// Black-box facts the ranker may use for a model (its feature width and class count).
std::vector<double> FactsOf(const ModelRecord& record);

// The query as outcome records keep it: its id (SHA-256 of the samples and labels as given) and
// the class prototypes of `basis` (reference-encoder embeddings, else the samples) under the
// prepared `labels`; not the samples. Stage-1 scores are the caller's to add.
OutcomeQueryRow OutcomeQueryOf(const Dataset& dataset, TaskKind task, const Tensor& basis,
                               const std::vector<int32_t>& labels, int num_classes);
// [num_classes, D]: row c = mean of the unit-length rows of `basis` [N, D] over the samples
// labelled c (0 if none): the class prototypes the knowledge encoder builds when it serves the
// query (EncodeQuery of the prototypes, one row per class, gives the query's vector).
Tensor ClassPrototypes(const Tensor& basis, const std::vector<int32_t>& labels, int num_classes);
// The mean of the prototypes' rows: a query as the outcome ranker compares it with the recorded
// ones (encoder::RecordedTask::embedding); empty for no rows.
std::vector<double> MeanPrototype(const Tensor& prototypes);

// Weak outcome records of one labelled recommendation (DockOptions::learn_from_recommendations):
// each scored model's stage-2 standing as a rank percentile, 1 = best, 0 = worst (ties share),
// source "stage2". `query` carries the stage-1 scores. Needs at least 2 scored models (else
// nothing is stored). Returns how many records were stored.
absl::StatusOr<int> RecordStage2Standings(
    OutcomeTable* outcomes, const OutcomeQueryRow& query,
    const std::vector<std::pair<const ModelRecord*, double>>& stage2_scores);

// Builds the FAISS index of every model's vector through a version's projection.
using ProjectedIndexBuilder = std::function<absl::StatusOr<std::shared_ptr<index::VectorIndex>>(
    const encoder::VectorProjection&)>;

// What training learns from, gathered by the dock: READY models, their untrained knowledge
// vectors, and each outcome query's untrained query vector (from its stored prototypes).
struct TrainingInputs {
  std::vector<ModelRecord> models;
  std::map<std::string, std::vector<float>> model_vectors;
  std::map<std::string, std::vector<float>> query_vectors;
  std::string space;
};

class LearningLoop {
 public:
  // The store's tables the loop reads and writes; not owned, each must outlive the loop.
  struct Tables {
    OutcomeTable* outcomes = nullptr;
    AlignmentTable* alignments = nullptr;  // trained ranker versions
    MetaTable* meta = nullptr;             // the serving version
  };
  // `adopt` serves a version (DockImpl::UseAlignment: under the dock's registry lock, so that
  // no model is committed to the old index while the new one is built).
  LearningLoop(Tables tables, std::function<absl::Status(int64_t)> adopt)
      : tables_(tables), adopt_(std::move(adopt)) {}
  ~LearningLoop() { Shutdown(); }

  // Restores the serving version from the store (untrained when none or unreadable).
  absl::Status Load(const std::string& space, const ProjectedIndexBuilder& build);

  // What ranks one recommendation: a consistent snapshot (version 0 = untrained, no ranker).
  // `index` holds the version's projected knowledge vectors (null: the dock's untrained index).
  struct Serving {
    int64_t version = 0;
    std::shared_ptr<const encoder::OutcomeRanker> ranker;
    std::shared_ptr<index::VectorIndex> index;
  };
  Serving Current() const;

  absl::StatusOr<RecordList> Records(const std::string& model_id, int limit);

  // Outcomes of models no longer in `inputs.models` are left out of training.
  absl::StatusOr<TrainingStatus> Train(bool wait, const std::function<bool()>& is_cancelled,
                                       TrainingInputs inputs);
  absl::StatusOr<AlignmentList> Versions();
  // Call through DockImpl::UseAlignment (the registry lock must be held).
  absl::Status Use(int64_t version, const std::string& space, const ProjectedIndexBuilder& build);
  // Replicas: serves the version the store says is serving when it is not the one this server
  // serves (another replica chose it), without writing the choice back. Called by the sync
  // thread's catch-up, under the registry lock like Use, so a choice made here in between is
  // read, not overwritten. An unreadable stored choice is logged and the current one kept.
  absl::Status Follow(const std::string& space, const ProjectedIndexBuilder& build);

  void Shutdown();

 private:
  // Serves `version`; `store_choice`: also record it as the serving version in the store.
  absl::Status Serve(int64_t version, const std::string& space, const ProjectedIndexBuilder& build,
                     bool store_choice);
  void RunTraining(TrainingInputs inputs);
  absl::StatusOr<AlignmentVersion> TrainOnce(const TrainingInputs& inputs);

  const Tables tables_;
  std::function<absl::Status(int64_t)> adopt_;
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
