// A ranker learned from reported fine-tune outcomes (issue 9: the dock learns from outcomes).
//
// Which models fine-tune well is partly a property of the model, and only outcomes reveal it. For
// a query q and a model m the learned score is
//
//   score(q, m) = z_q(base)(m) + weight * prior_q(m)
//
// where base is what the pipeline computed anyway (stage-1 proxy score, or the stage-2 score),
// standardised over the query's models, and the prior is the model's standardised fine-tune
// results on the recorded tasks, weighted by how similar each recorded task looks to the query
// (QuerySimilarity, raised to `sharpness`: the cosine of the two tasks' mean class prototypes in
// the reference encoder's space, else the correlation of their stage-1 scores), and shrunk with strength `shrinkage` toward a target (below) — a model with no outcomes gets
// the target alone (cold start):
//
//   prior_q(m) = (sum_t w_qt z_t(m) + shrinkage * target_q(m))
//                / (sum_{t: m has an outcome in t} w_qt + shrinkage)
//
// The shrinkage target target_q(m) is either the facts prediction facts(m) . fact_weights, or
// (versions with `calibrated_target`) what the query's own stage-1 scores say about the model:
// beta_q * z_q(stage1)(m) + c_q, a line fitted on the models that do have outcomes (their outcome
// means against their standardised stage-1 scores, each weighted by evidence / (evidence +
// shrinkage)). With the facts, a model nobody reported on gets a prior from its width and class
// count alone and can sink below every warm model with a good record however well its own scores
// look (on zoo2, cold models lost 0.02-0.05 tau_w in stage 1); with the line, its prior is what
// models that scored like it went on to achieve. Training fits both and keeps the one that ranks
// its training queries better.
//
// Weak tasks (stage-2 standings recorded by recommendations, RecordedTask::weak) enter the same
// sums with w_qt scaled by the learned `weak_weight`; they give never-reported models a prior.
//
// The parameters (weight, shrinkage, sharpness, fact_weights) are trained with LibTorch on the
// records (a pairwise loss weighted like weighted Kendall tau, leave-one-task-out priors,
// simulated cold models), validated by folds over tasks, and kept
// with a frozen copy of the records they were trained on, so that a version always ranks the
// same way. This header has no torch types; TrainOutcomeRanker runs in outcome_ranker_training.cc.
#ifndef MODELDOCK_ENCODER_OUTCOME_RANKER_H_
#define MODELDOCK_ENCODER_OUTCOME_RANKER_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace modeldock::encoder {

// One recorded query: what stage 1 said about each model when the outcome was reported, and the
// accuracies reported (a weighted mean when a model was reported more than once).
// A weak task holds no accuracies but the stage-2 standing of the models a recommendation scored
// on the query (rank percentile, 1 = best): it only informs priors, with the learned
// `RankerParams::weak_weight`, and is never a training target or a validation query. It is what
// a dock knows about models nobody fine-tuned.
struct RecordedTask {
  std::string query_id;
  std::map<std::string, double> stage1;    // model id -> stage-1 score
  std::map<std::string, double> accuracy;  // model id -> fine-tuned accuracy in [0, 1]
  bool weak = false;
  // The query's mean class prototype in the reference encoder's space (image queries); empty
  // when unknown (tabular queries; versions trained before it was kept).
  std::vector<double> embedding;
};

// Black-box facts of a model (no weights read): log2 of its feature width and of its class count.
std::vector<double> ModelFacts(int64_t feature_width, int64_t num_classes);
inline constexpr int kNumModelFacts = 3;  // bias, log2 width / 8, log2 classes / 8

struct RankerParams {
  double weight = 0;      // of the prior against the standardised stage-1 score
  // Of the prior against the standardised stage-2 score: chosen on the reported queries whose
  // stage-2 standings were recorded (weak twins); 0 when there are too few.
  double stage2_weight = 0;
  double shrinkage = 1;   // pseudo-count of the shrinkage target
  double sharpness = 1;   // task-similarity exponent
  double weak_weight = 0; // of a weak task (stage-2 standing) against a reported one
  // The shrinkage target is the query-local calibration line instead of the facts prediction
  // (above). Versions trained before it have false and rank as they always did.
  bool calibrated_target = false;
  std::vector<double> fact_weights = std::vector<double>(kNumModelFacts, 0.0);
};

// The shrinkage target's name in payloads, version summaries and the API: "facts" or
// "stage1-calibration".
const char* PriorTargetName(bool calibrated_target);

// The trained part of the knowledge vectors (the Know2Vec alignment's model-side and query-side
// encoders, here linear maps on top of the untrained kernel mean embeddings, so that a version
// re-encodes every model from its stored untrained vector: no model and no grid is recomputed).
// Empty = untrained similarity.
struct VectorProjection {
  std::string space;                  // the knowledge space of the vectors it was trained on
  int dim = 0;                        // in = out
  std::vector<float> model_weights;   // [dim, dim] row-major: out = normalise(v W)
  std::vector<float> query_weights;
  bool empty() const { return model_weights.empty(); }
  std::vector<float> ProjectModel(const std::vector<float>& v) const;
  std::vector<float> ProjectQuery(const std::vector<float>& v) const;
};

class OutcomeRanker {
 public:
  OutcomeRanker(RankerParams params, std::vector<RecordedTask> tasks,
                std::map<std::string, std::vector<double>> facts,
                VectorProjection projection = {});

  const RankerParams& params() const { return params_; }
  const VectorProjection& projection() const { return projection_; }
  // The same ranker with the untrained similarity (its projection dropped).
  OutcomeRanker WithoutProjection() const {
    return OutcomeRanker(params_, tasks_, facts_, VectorProjection{});
  }
  int num_tasks() const { return static_cast<int>(tasks_.size()); }
  int num_weak_tasks() const;

  // Per model: how many recorded tasks that looked similar (w > 0) informed its prior.
  struct PriorSources {
    int reported = 0;  // tasks with a reported outcome for it
    int weak = 0;      // weak tasks (its stage-2 standing in a recommendation)
  };
  // Priors of `model_ids` for a query whose stage-1 scores over its models are `stage1` (model id
  // -> score). Models without facts or outcomes get 0. `sources` (optional): per model, what
  // informed its prior.
  // `current_facts` (optional, aligned with model_ids): facts of models registered after
  // training (the frozen facts are used for the others).
  // `embedding`: the query's mean class prototype (RecordedTask::embedding; empty = unknown).
  std::vector<double> Priors(const std::vector<std::string>& model_ids,
                             const std::map<std::string, double>& stage1,
                             const std::vector<double>& embedding,
                             std::vector<PriorSources>* sources = nullptr,
                             const std::vector<std::vector<double>>* current_facts = nullptr) const;

  // z-standardised stage-1 score + weight * prior, for the same models.
  std::vector<double> Combine(const std::vector<double>& base,
                              const std::vector<double>& priors) const;
  // z-standardised stage-2 score + stage2_weight * prior.
  std::vector<double> CombineStage2(const std::vector<double>& stage2,
                                    const std::vector<double>& priors) const;

  // Serialised with everything needed to rank (parameters, frozen records, facts).
  std::string ToJson() const;
  static absl::StatusOr<OutcomeRanker> FromJson(const std::string& json);

 private:
  RankerParams params_;
  VectorProjection projection_;
  std::vector<RecordedTask> tasks_;
  std::map<std::string, std::vector<double>> facts_;
  // Per task: standardised accuracies (z over the task's reported models).
  std::vector<std::map<std::string, double>> standardised_;
  std::vector<double> centre_;  // EmbeddingCentre(tasks_)
};

// Standardised outcomes of a task (z over the reported models); empty when fewer than 2 models
// or all accuracies equal (the task says nothing about which model is better).
std::map<std::string, double> StandardiseOutcomes(const std::map<std::string, double>& accuracy);
// Pearson correlation of two tasks' stage-1 scores over their common models, clamped at 0; 0
// with fewer than 3 common models.
double TaskSimilarity(const std::map<std::string, double>& a, const std::map<std::string, double>& b);
// The mean of the tasks' embeddings (those of the first non-empty one's size); empty when none.
std::vector<double> EmbeddingCentre(const std::vector<RecordedTask>& tasks);
// How much task b's outcomes say about task a: the cosine of their embeddings after subtracting
// `centre` (the records' mean, so that what every task shares does not count), clamped at 0,
// when both have one of the centre's size; otherwise TaskSimilarity of their stage-1 scores.
// Why the embeddings: the stage-1 scores of a shifted domain (a rotated or low-contrast query)
// can correlate with an unshifted task's while the models that fine-tune well differ; the
// reference encoder sees the shift (offline on three zoos, docs/BENCHMARKS.md 2b).
double QuerySimilarity(const std::map<std::string, double>& stage1_a,
                       const std::vector<double>& embedding_a,
                       const std::map<std::string, double>& stage1_b,
                       const std::vector<double>& embedding_b, const std::vector<double>& centre);
// (x - mean) / std (population); zeros when constant.
std::vector<double> Standardise(const std::vector<double>& values);

// Weighted Kendall tau with hyperbolic weights, as scipy.stats.weightedtau(x, y) with its
// defaults (rank=True: the mean of the taus weighted by x's and by y's ranking). O(n^2).
double WeightedTau(const std::vector<double>& x, const std::vector<double>& y);

struct RankerTrainingOptions {
  int steps = 300;
  double learning_rate = 0.05;
  int folds = 5;          // cross-validation over tasks (fewer when there are fewer tasks)
  // To be adopted, the mean held-out gain in tau_w over the serving version must exceed both this
  // and its standard error over the held-out queries.
  double min_gain = 0.005;
  // Fewer usable queries than this are too few held-out queries for the gain's standard error to
  // mean anything: a version is then trained and listed but not adopted. (In the benchmark, the
  // versions adopted on 3-4 reported tasks lost on unseen tasks; those adopted on 6 gained.)
  int min_queries_to_adopt = 5;
  uint64_t seed = 1;
};

struct RankerTrainingReport {
  RankerParams params;          // trained on every usable task
  int usable_tasks = 0;         // tasks with >= 2 distinct outcomes
  int weak_tasks = 0;           // weak tasks (recommendations' stage-2 standings) used as sources
  int folds = 0;
  double validation_untrained = 0;  // mean tau_w on held-out tasks: base score alone
  double validation_serving = 0;    // the serving version's parameters (= untrained for v0)
  double validation_trained = 0;    // parameters trained without the held-out tasks
  double gain_standard_error = 0;   // of the per-task gain trained - serving
  // The stage-2 combination on held-out queries whose stage-2 standings were recorded: tau_w
  // without the prior and with it (the stage-2 weight is set to 0 when it loses there).
  int validation_stage2_queries = 0;
  double validation_stage2_untrained = 0, validation_stage2_trained = 0;
  double first_loss = 0, last_loss = 0;  // of the final training run
  bool adopt = false;
  std::string reason;
};

// Trains on `tasks` (needs >= 3 usable tasks: FAILED_PRECONDITION otherwise). `serving` are the
// serving version's parameters (nullptr = untrained). `cancelled` is polled between steps.
absl::StatusOr<RankerTrainingReport> TrainOutcomeRanker(
    const std::vector<RecordedTask>& tasks, const std::map<std::string, std::vector<double>>& facts,
    const RankerParams* serving, const RankerTrainingOptions& options,
    const std::function<bool()>& cancelled = nullptr);

// Training of the vector projection from outcomes: for each reported query (its untrained query
// vector and accuracies), the similarity of the projected query and model vectors should order
// the models like their accuracies. Two losses are tried — the Know2Vec paper's hardest-negative
// triplet loss (margin 0.2, pairs ordered by accuracy) and a listwise one (ListNet) — each
// validated by folds over queries; the better is kept if it beats the untrained similarity.
struct AlignmentTask {
  std::string query_id;
  std::vector<float> query_vector;         // untrained, L2-normalised
  std::map<std::string, double> accuracy;  // model id -> accuracy
};

struct AlignmentTrainingReport {
  VectorProjection projection;  // empty unless adopted
  std::string loss;             // "triplet" or "listwise": the one kept
  int usable_tasks = 0;
  int folds = 0;
  double validation_untrained = 0;  // mean tau_w of the untrained similarity on held-out queries
  double validation_trained = 0;    // of the projection trained without them (the kept loss)
  double gain_standard_error = 0;
  double first_loss = 0, last_loss = 0;
  bool adopt = false;
  std::string reason;
};

absl::StatusOr<AlignmentTrainingReport> TrainVectorAlignment(
    const std::vector<AlignmentTask>& tasks,
    const std::map<std::string, std::vector<float>>& model_vectors,
    const RankerTrainingOptions& options, const std::function<bool()>& cancelled = nullptr);

}  // namespace modeldock::encoder

#endif  // MODELDOCK_ENCODER_OUTCOME_RANKER_H_
