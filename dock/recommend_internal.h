// What dock/recommend.cc (the pipeline), dock/stage1.cc (stage 1) and dock/stage2.cc (stage 2:
// running and scoring the candidates, and the latency budget that picks them) share: the state the stages
// pass each other and a few helpers. Internal to dock/.
#ifndef MODELDOCK_DOCK_RECOMMEND_INTERNAL_H_
#define MODELDOCK_DOCK_RECOMMEND_INTERNAL_H_

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/tensor.h"
#include "dock/recommender.h"
#include "scoring/metrics.h"

namespace modeldock::dock {

// The default fusion's members (LogME, shrinkage H-score) and their rank weights (1, 0.5); the
// stage-1 proxy's (LogME, shrinkage H-score, NCE; equal weights).
const std::vector<scoring::Metric>& FusionMembers();
const std::vector<double>& FusionWeights();
const std::vector<scoring::Metric>& ProxyMetrics();
// Principal components the fusion keeps of each model's features (bench/select).
inline constexpr int kFusionDims = 32;
// The scoring metrics a dock metric computes (several for a fusion). Empty for kNone.
std::vector<scoring::Metric> MembersOf(Metric metric);
// The rank-fusion weight of each of MembersOf(metric) (1 for a single metric).
std::vector<double> MemberWeights(Metric metric);
std::string MetricLabel(Metric metric);                                // "fusion", "logme", ...
std::string MemberNames(const std::vector<scoring::Metric>& members);  // "logme + nce"
// Cache key of a model's outputs on a query: ModelKey and the dataset's content (so the same
// query sent twice, or by two users, runs each model once). The latency budget's estimates probe
// the same keys, and RecentFailures uses them too.
std::string OutputKey(const ModelRecord& record, const std::string& dataset_hash);
// Key of a model's compressed probe features in the proxy cache: its id and its space's probe
// set (a model's entries are dropped by the "id|" prefix).
std::string ProxyCacheKey(const std::string& model_id, const KnowledgeSpace& space);
double MillisSince(absl::Time start);
// Estimated time to load a model that is not resident in a worker (~50 MB/s from the blob store).
double LoadMillisEstimate(const ModelRecord& record);
bool Cancelled(const RecommendQuery& query);
// The key of a dataset's cached model outputs: SHA-256 of its shape, samples and texts.
std::string DatasetHash(const Dataset& data);
// The output cache key of the rows `rows` of a dataset whose DatasetHash is `dataset_hash`. The
// budget's subsets are a function of the dataset (StratifiedSample seeded by its hash), so the
// budget can look their cached outputs up before it picks one, without copying the samples.
std::string SubsetHash(const std::string& dataset_hash, const std::vector<int64_t>& rows);

// ---- Recommend, stage by stage. The stages pass their state in these structs.

// A validated query's labels, its embeddings in E's space and the models that can take it.
struct PreparedQuery {
  absl::Time encode_start;  // encode_query_millis runs from here to the query's vector
  std::optional<Tensor> embeddings;  // E's embeddings of the samples (image queries only)
  std::vector<int32_t> labels;  // given (renumbered) or clustered, 0..num_classes-1
  int num_classes = 0;
  std::vector<ModelRecord> compatible;
  std::unordered_map<std::string, size_t> position;  // model id -> index into compatible
  // Image queries: the compatible models of each knowledge space, in compatible's order, and
  // the query's embeddings in that space's E (the primary space's are `embeddings`).
  std::map<KnowledgeSpace*, std::vector<std::string>> space_members;
  std::map<KnowledgeSpace*, Tensor> space_embeddings;

  // Every id the stages pass around is a compatible model's.
  const ModelRecord& Model(const std::string& id) const { return compatible[position.at(id)]; }
};

// Stage 1's standings of the compatible models, and the stage-1 order they make.
struct Stage1Result {
  std::unordered_map<std::string, std::pair<double, int>> similarity;  // id -> (similarity, rank)
  std::vector<std::string> similarity_order;  // most similar knowledge vector first
  std::unordered_map<std::string, double> proxy_score;  // id -> fused proxy rank / models
  std::vector<std::string> proxy_order;  // the models with a proxy score, best `value` first
  // The serving trained version's outcome prior of every compatible model (none untrained).
  std::unordered_map<std::string, double> prior;
  std::unordered_map<std::string, encoder::OutcomeRanker::PriorSources> prior_sources;
  std::unordered_map<std::string, double> value;  // proxy score (with the prior when trained)
  std::vector<std::string> order;  // every compatible model
  std::unordered_map<std::string, int> rank;  // id -> 1-based position in `order`
  bool has_stage1 = false;  // some model has a proxy score or a knowledge vector
};

// A subset of a query's rows: the query's DatasetHash and the rows (StratifiedSample's).
struct SubsetOf {
  std::string dataset_hash;
  std::vector<int64_t> rows;
};

// What stage 2 runs the candidates on: every query sample, or a class-stratified subset of them
// when the latency budget cannot run every model on every sample (stage2_budget.cc: samples
// before models). Filled in place by SelectStage2Samples: the pointers may point into it.
struct Stage2Samples {
  const Dataset* dataset = nullptr;              // the query's dataset, or `subset`
  const std::vector<int32_t>* labels = nullptr;  // prepared.labels, or `subset_labels`
  std::string hash;  // the output cache key: DatasetHash(*dataset), or SubsetHash for `subset`
  Dataset subset;
  std::vector<int32_t> subset_labels;
  std::optional<SubsetOf> subset_of;  // which rows of the query `subset` holds

  Stage2Samples() = default;
  Stage2Samples(const Stage2Samples&) = delete;
  Stage2Samples& operator=(const Stage2Samples&) = delete;
};
// Every row when `rows` is empty (the query's dataset, labels and hash), else the subset.
void SelectStage2Samples(const RecommendQuery& query, const PreparedQuery& prepared,
                         const std::string& dataset_hash, const std::vector<int64_t>& rows,
                         Stage2Samples* samples);

// How stage 2 scores a candidate's features against the query's labels.
struct ViewScoring {
  Metric metric = Metric::kNone;
  std::vector<scoring::Metric> members;  // the scoring metrics `metric` computes
  bool all_logits = false;  // every member reads the model's outputs, none its features
  bool compress = false;  // views on their top principal components (ScoringFor says when)
  // The fusion: a logit member (NCE) may be missing for a model without class outputs (a
  // feature extractor) or whose outputs it cannot score; the model is then ranked without it.
  bool logits_optional = false;
  const std::vector<int32_t>* labels = nullptr;
  int num_classes = 0;
};

// A model is scored on its default features (embed, else its outputs), or, when it exports
// embed_layers(x) and the metric reads features, on each exported layer: every (model, layer)
// pair is one view, all views are ranked together, and a model scores as its best view.
struct ScoredView {
  int layer = -1;  // index into the record's layers; -1 = the default features
  std::vector<double> member_values;  // NaN: not measured (an optional logit member)
  double stage2 = 0;
  std::string features_note;
};
struct ScoredModel {
  std::string id;
  std::vector<ScoredView> views;
  size_t best = 0;  // the view the model's score comes from
  double stage2 = 0;
  double final_score = 0;  // stage2, plus the outcome prior when a trained version serves
  bool scored = false;  // false: listed after the scored models by its stage-1 order
};

// Stage 2's answer: the scored candidates, best first.
struct Stage2Result {
  ViewScoring scoring;
  std::vector<ScoredModel> scored;
  // Fusions only: each member's value and rank of the model's best view (model id -> text).
  std::unordered_map<std::string, std::string> member_text;
};

// The answer's entries (recommend.cc): the first top_k of the ranking, the scored models then
// the rest in stage-1 order (one per model name unless the query asks for every version), each
// with its scores and reason.
void AssembleResults(const RecommendQuery& query, const PreparedQuery& prepared,
                     const Stage1Result& stage1, const Stage2Result& stage2,
                     size_t num_candidates, const LearningLoop::Serving& serving,
                     RecommendResult* result);

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_RECOMMEND_INTERNAL_H_
