// Internal: the Recommender part, the dock's two-stage recommend pipeline (docs/ARCHITECTURE.md:
// "Stage 1", "Mode", "Stage 2"). DockImpl::Recommend forwards to it; ReportOutcome borrows its stage-1 proxies
// and its stage-2 scoring of a report's models.
//   recommender.cc  the pipeline: the query's preparation, Recommend, the probe-tensor cache
//   stage1.cc       stage 1: knowledge-vector similarity, probe proxies, outcome priors
//   stage2_budget.cc  the latency budget's candidates and query samples (estimated costs)
//   stage2.cc       the candidates' runs and their scores
//   recommend.cc    the metrics' names, cache keys, and the answer's assembly
//   query.cc        the query checks and label preparation shared with ReportOutcome
//
// Owns: the output cache (model outputs on query datasets), the proxy cache (compressed probe
// features and class probabilities of models), the measured run costs, the memory of runs that
// hit a limit, and the counters of Stats(). Each of these has its own lock (caches.h) or is
// atomic; the Recommender has no lock of its own, and every method may be called from many
// threads at once. It reads the store's model and probe-data tables, writes weak records to its
// outcome table, reads the knowledge spaces and the learning loop's serving version, and runs
// models through the ModelRunner, all given to it (none owned).
#ifndef MODELDOCK_DOCK_RECOMMENDER_H_
#define MODELDOCK_DOCK_RECOMMENDER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "dock/caches.h"
#include "dock/knowledge_space.h"
#include "dock/knowledge_spaces.h"
#include "dock/learning.h"
#include "dock/model_runner.h"
#include "dock/run_costs.h"
#include "dock/store_tables.h"
#include "dock/types.h"
#include "encoder/black_box.h"

namespace modeldock::dock {

// Query helpers shared by Recommend and ReportOutcome (query.cc).
// INVALID_ARGUMENT unless samples are [N, C, H, W] (images) or [N, F] (tabular), N >= 4, finite.
absl::Status ValidateQuerySamples(const Tensor& samples, TaskKind task);
// Whether a READY model can run on these samples (images are adapted; tabular needs equal width).
bool Compatible(const ModelRecord& record, TaskKind task, const Tensor& samples);
struct PreparedLabels {
  std::vector<int32_t> labels;  // renumbered 0..C-1
  int num_classes = 0;
  std::string source;  // "given" or how they were clustered
};
// The dataset's labels renumbered, or k-means clusters of `embeddings` (raw samples without).
absl::StatusOr<PreparedLabels> PrepareLabels(const Dataset& dataset,
                                             const std::optional<Tensor>& embeddings);

// What the Recommender reads of the dock's options (From: DockOptions' fields of the same names;
// stage2_workers must be resolved, > 0).
struct RecommenderOptions {
  double latency_budget_millis = 5000;  // when a query sets none
  bool budget_covers_whole_call = true;
  int default_candidates = 0;           // when a query sets none (0: the latency budget decides)
  int proxy_prefilter = 2000;
  int stage2_workers = 1;
  ProxyOptions proxy;
  absl::Duration run_time_limit = absl::Seconds(60);  // one stage-2 run
  int64_t output_cache_bytes = 512ll << 20;
  int64_t proxy_cache_bytes = 1ll << 30;
  bool learn_from_recommendations = false;

  static RecommenderOptions From(const DockOptions& options);
};

// The state Recommend's stages pass between them (defined in recommend_internal.h).
struct PreparedQuery;
struct Stage2Samples;
struct SubsetOf;
struct Stage1Result;
struct ViewScoring;
struct ScoredModel;
struct Stage2Result;

class Recommender {
 public:
  // None owned; each must outlive the Recommender.
  struct Deps {
    ModelTable* models = nullptr;          // ListAll (in the dock: from memory, caching_store.h)
    ProbeDataTable* probe_data = nullptr;  // the models' probe outputs and features
    OutcomeTable* outcomes = nullptr;      // weak outcome records (stage-2 standings)
    KnowledgeSpaces* spaces = nullptr;
    ModelRunner* runner = nullptr;
    LearningLoop* learning = nullptr;
  };
  Recommender(RecommenderOptions options, Deps deps);

  absl::StatusOr<RecommendResult> Recommend(const RecommendQuery& query);

  // ReportOutcome's view of a task (stage1.cc). Stage-1 proxy score of every model of `models`
  // with probe features: the proxy metric values of all spaces rank-fused together, divided by
  // their number (in (0, 1]). `warnings` gets one line per model whose probe features could not
  // be read (other than none stored) or one of whose proxy metrics failed.
  absl::StatusOr<std::unordered_map<std::string, double>> ProxyScores(
      const std::map<KnowledgeSpace*, Tensor>& space_embeddings,
      const std::vector<int32_t>& labels, int num_classes,
      const std::vector<const ModelRecord*>& models, std::vector<std::string>* warnings);
  // The samples through the E of each space that holds one of `models` (`primary_embeddings`
  // serve the primary space), into `space_embeddings` (spaces already there are kept).
  absl::Status EmbedInSpaces(const Tensor& samples, const Tensor& primary_embeddings,
                             const std::vector<const ModelRecord*>& models,
                             std::map<KnowledgeSpace*, Tensor>* space_embeddings);
  // DockOptions::report_standings, run on the dock's background queue (stage2.cc): the reported
  // models' stage-2 standings on a report's samples (fusion, each of them scored) stored as weak
  // records of its query.
  void RecordReportStandings(Dataset dataset, TaskKind task, const OutcomeQueryRow& query,
                             const std::vector<std::string>& model_ids,
                             const std::function<bool()>& stopping);

  // What is kept of a model: all of it once it is deleted (its outputs by its file's sha256),
  // its probe tensors once it is probed again, its run costs once it is gone from the store.
  void ForgetModel(const ModelRecord& record);
  void ForgetProbeData(const std::string& model_id);
  void ForgetRunCosts(const std::string& model_id);
  // The proxy cache, for the Prober (a new probe drops the model's entries).
  LruCache<const Tensor>* proxy_cache() { return &proxy_cache_; }
  // Fills DockStats' recommend counters and cache hits and misses.
  void AddStats(DockStats* stats) const;

 private:
  KnowledgeSpace* SpaceFor(const ModelRecord& record) const {
    return deps_.spaces->ForModel(record);
  }
  KnowledgeSpace* primary() const { return deps_.spaces->primary(); }

  // Probe tensors (recommender.cc).
  // A model's compressed features on (a prefix of) its space's probe set.
  absl::StatusOr<std::shared_ptr<const Tensor>> ProbeFeatures(const ModelRecord& record);
  // A classifier's class probabilities (softmax of its stored outputs) on the same probe rows.
  absl::StatusOr<std::shared_ptr<const Tensor>> ProbeProbabilities(const ModelRecord& record);
  // A tensor of the model's probing (`read` from the store for its space), kept in proxy_cache_
  // under the model's proxy key + `key_suffix`; `what` names it in the error of a model in no
  // space.
  absl::StatusOr<std::shared_ptr<const Tensor>> CachedProbeTensor(
      const ModelRecord& record, const char* what, const char* key_suffix,
      const std::function<absl::StatusOr<Tensor>(const KnowledgeSpace&)>& read);

  // Recommend's stages, in the order it runs them. Each fills in its part of `result` (timings,
  // mode, warnings, counts).
  // The query's embeddings in E's space (images), its labels, and the compatible models
  // (recommender.cc).
  absl::StatusOr<PreparedQuery> PrepareQuery(const RecommendQuery& query, RecommendResult* result);
  // Stage 1 (stage1.cc; no model runs): knowledge-vector similarity, probe-proxy scores, the
  // serving version's outcome priors, and the stage-1 order of every compatible model.
  absl::StatusOr<Stage1Result> RunStage1(const PreparedQuery& prepared,
                                         const LearningLoop::Serving& serving,
                                         RecommendResult* result);
  // Stage 1 (a): the query's vector (through the serving version's projection) against the
  // index of the compatible models' knowledge vectors.
  absl::Status RankByKnowledgeVector(const PreparedQuery& prepared,
                                     const LearningLoop::Serving& serving, Stage1Result* stage1,
                                     RecommendResult* result);
  // Stage 1 (b): probe-proxy scores, with the serving version's priors, in proxy order.
  absl::Status RankByProbeProxies(const PreparedQuery& prepared,
                                  const LearningLoop::Serving& serving, Stage1Result* stage1,
                                  RecommendResult* result);
  // Stage-1 proxy metric values (ProxyMetrics() order; NaN = not measured) of every model of
  // `space` that has probe features, from the query's embeddings in that space. Raw values: the
  // caller fuses the models of every space together.
  absl::StatusOr<std::unordered_map<std::string, std::vector<double>>> ProxyValues(
      const KnowledgeSpace& space, const Tensor& query_embeddings,
      const std::vector<int32_t>& labels, int num_classes,
      const std::vector<const ModelRecord*>& models, std::vector<std::string>* warnings);
  // The mode and the stage-2 candidates (stage2.cc, in stage-1 order): none without a metric,
  // all when forced or without stage-1 standings, a fixed number, or those fitting the latency
  // budget.
  // When the budget cannot run every model on every sample, `rows` gets the class-stratified
  // query rows stage 2 runs on (empty: every row).
  std::vector<std::string> ChooseCandidates(const RecommendQuery& query,
                                            const PreparedQuery& prepared,
                                            const Stage1Result& stage1,
                                            const std::string& dataset_hash,
                                            RecommendResult* result, std::vector<int64_t>* rows);
  std::vector<std::string> CandidatesWithinBudget(const PreparedQuery& prepared,
                                                  const std::vector<std::string>& stage1_order,
                                                  const std::string& dataset_hash,
                                                  RecommendResult* result,
                                                  std::vector<int64_t>* rows);
  // Records a stage-2 run of `record` (`run_millis` of wall time on `rows` samples, beside
  // `stage2_threads` runs at once; `was_loaded`: resident before it) in run_costs_.
  void RecordRunCost(const ModelRecord& record, bool was_loaded, double run_millis, int64_t rows,
                     int stage2_threads);
  // A model's probing time per probe sample (stage2_budget.cc): what its runs are estimated
  // from before it has run in stage 2.
  double ProbeMillisPerRow(const ModelRecord& r);
  // Estimated cost of scoring a model on `rows` query samples: nearly free when its outputs on
  // this dataset are cached; else loading it when it is not resident, plus running it (`costs`:
  // fitted to its earlier stage-2 runs when there were any, else scaled from
  // `probe_millis_per_row`), plus the metrics.
  // `dataset_hash` names the samples scored: the query's (then equal to `query_hash`) or a
  // subset's (SubsetHash).
  double EstimateScoringMillis(const ModelRecord& r, double rows, double probe_millis_per_row,
                               const RunCostSnapshot& costs, const std::string& dataset_hash,
                               const std::string& query_hash);
  // Stage 2: runs and scores the candidates, records weak outcomes, adds the serving version's
  // priors; the scored models best first.
  absl::StatusOr<Stage2Result> RunStage2(const RecommendQuery& query,
                                         const PreparedQuery& prepared,
                                         const Stage1Result& stage1,
                                         const std::vector<std::string>& candidates,
                                         const Stage2Samples& samples,
                                         const LearningLoop::Serving& serving,
                                         RecommendResult* result);
  // Each candidate's outputs on `data` (run, or cached under `data_hash`) scored view by view,
  // in candidate order; the models none of whose views could be scored are left out with a
  // warning. `query` says when the call is cancelled.
  // `subset_of`: `data` is these rows of the query (the budget's samples), whose outputs on the
  // whole query, when cached, are sliced instead of running the model again.
  absl::StatusOr<std::vector<ScoredModel>> ScoreCandidates(
      const RecommendQuery& query, const PreparedQuery& prepared,
      const std::vector<std::string>& candidates, const Dataset& data,
      const std::string& data_hash, const ViewScoring& scoring, RecommendResult* result,
      const SubsetOf* subset_of = nullptr);
  // A model's outputs on the query's dataset: from the output cache (or the rows `subset_of`
  // names of its cached outputs on the whole query), or run (then cached).
  absl::StatusOr<std::shared_ptr<const encoder::ModelOutputs>> OutputsOn(
      const ModelRecord& record, const Dataset& data, const std::string& dataset_hash,
      const std::function<bool()>& cancelled, bool* from_cache,
      const SubsetOf* subset_of = nullptr);
  // With RecommenderOptions::learn_from_recommendations, the scored models' stage-2 standings
  // on a labelled image query are stored as weak outcome records (recommender.cc).
  void RecordWeakOutcomes(const RecommendQuery& query, const PreparedQuery& prepared,
                          const Stage1Result& stage1, const std::vector<ScoredModel>& scored,
                          RecommendResult* result);

  const RecommenderOptions options_;
  const Deps deps_;

  LruCache<const encoder::ModelOutputs> output_cache_;
  // model id (+ suffix) -> compressed probe features, class probabilities on the probes
  LruCache<const Tensor> proxy_cache_;
  RunCosts run_costs_;  // run_costs.h
  RecentFailures run_failures_{absl::Minutes(10)};

  // Counters for Stats() (microseconds for durations).
  std::atomic<int64_t> recommends_{0}, stage1_micros_{0}, stage2_micros_{0};
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_RECOMMENDER_H_
