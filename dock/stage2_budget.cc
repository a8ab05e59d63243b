// Stage 2's plan (dock/recommend.cc runs the stages, stage2.cc runs the plan): no model, every
// model, a requested number of stage-1 candidates, or what the latency budget lets run, from
// each model's estimated cost. Over the budget, stage 2 gives up query samples before models.
#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dock/query_rows.h"
#include "dock/recommend_internal.h"

namespace modeldock::dock {
namespace {

// The fewest query samples stage 2 scores on when the latency budget makes it subsample them
// (CandidatesWithinBudget): below these, it keeps fewer models instead.
constexpr int64_t kMinStage2Rows = 64;
constexpr int kMinStage2RowsPerClass = 10;

// The stage-1 candidates whose estimated costs fit the budget, in stage-1 order, never fewer
// than min(10, a quarter of the dock); sets the mode and says why (`over`: the budget's verdict
// on every model, `on_rows`: the samples they run on, "" for all).
std::vector<std::string> StageOneCandidatesThatFit(
    const std::vector<std::string>& stage1_order,
    const std::unordered_map<std::string, double>& cost, double budget, int num_compatible,
    const std::string& over, const std::string& on_rows, RecommendResult* result) {
  const size_t floor = static_cast<size_t>(
      std::min(num_compatible, std::max(std::min(10, num_compatible), (num_compatible + 3) / 4)));
  std::vector<std::string> candidates;
  double used = 0;
  for (const std::string& id : stage1_order) {
    if (candidates.size() >= floor && used + cost.at(id) > budget) break;
    used += cost.at(id);
    candidates.push_back(id);
  }
  result->mode = candidates.size() == stage1_order.size() ? RecommendMode::kScoredAll
                                                          : RecommendMode::kTwoStage;
  if (floor >= stage1_order.size()) {
    result->mode_reason = absl::StrFormat(
        "%s, but a dock this small is always scored in full (stage 2 scores at least min(10, a "
        "quarter of the dock) models)%s",
        over, on_rows);
  } else if (candidates.size() == stage1_order.size()) {
    result->mode_reason = absl::StrFormat("%s; scored all of them%s (estimated %.0f ms)", over,
                                          on_rows, used);
  } else {
    result->mode_reason =
        absl::StrFormat("%s; scored the %d best stage-1 candidates%s (estimated %.0f ms)", over,
                        static_cast<int>(candidates.size()), on_rows, used);
  }
  return candidates;
}

// "5000 ms budget", or what the stages before stage 2 left of it.
std::string BudgetLeft(double budget, double spent, bool covers_whole_call) {
  if (!covers_whole_call) return absl::StrFormat("%.0f ms budget", budget);
  return absl::StrFormat("%.0f ms left of the %.0f ms budget after encoding and stage 1",
                         std::max(0.0, budget - spent), budget);
}

}  // namespace

std::vector<std::string> Recommender::ChooseCandidates(const RecommendQuery& query,
                                                       const PreparedQuery& prepared,
                                                       const Stage1Result& stage1,
                                                       const std::string& dataset_hash,
                                                       RecommendResult* result,
                                                       std::vector<int64_t>* rows) {
  rows->clear();
  if (query.metric == Metric::kNone) {
    result->mode = RecommendMode::kStage1Only;
    result->mode_reason = "stage 2 off (metric none)";
    return {};
  }
  if (query.brute_force || !stage1.has_stage1) {
    result->mode = RecommendMode::kScoredAll;
    result->mode_reason = query.brute_force ? "brute force requested"
                                            : "no compatible model has probe data; scored all";
    return stage1.order;
  }
  const int num_compatible = result->num_compatible;
  int fixed = query.num_candidates > 0 ? query.num_candidates : options_.default_candidates;
  if (fixed > 0) {
    fixed = std::min(fixed, num_compatible);
    result->mode = fixed == num_compatible ? RecommendMode::kScoredAll : RecommendMode::kTwoStage;
    result->mode_reason = absl::StrCat(fixed, " candidates requested");
    return std::vector<std::string>(stage1.order.begin(), stage1.order.begin() + fixed);
  }
  return CandidatesWithinBudget(prepared, stage1.order, dataset_hash, result, rows);
}

void SelectStage2Samples(const RecommendQuery& query, const PreparedQuery& prepared,
                         const std::string& dataset_hash, const std::vector<int64_t>& rows,
                         Stage2Samples* samples) {
  if (rows.empty()) {
    samples->dataset = &query.dataset;
    samples->labels = &prepared.labels;
    samples->hash = dataset_hash;
    return;
  }
  samples->subset = TakeDatasetRows(query.dataset, rows);
  samples->subset_labels = TakeLabels(prepared.labels, rows);
  samples->dataset = &samples->subset;
  samples->labels = &samples->subset_labels;
  samples->hash = SubsetHash(dataset_hash, rows);
  samples->subset_of = SubsetOf{dataset_hash, rows};
}

std::vector<std::string> Recommender::CandidatesWithinBudget(
    const PreparedQuery& prepared, const std::vector<std::string>& stage1_order,
    const std::string& dataset_hash, RecommendResult* result, std::vector<int64_t>* rows) {
  const int num_compatible = result->num_compatible;
  // What encoding the query and stage 1 left of the budget (they have run by now).
  const double spent =
      options_.budget_covers_whole_call ? MillisSince(prepared.encode_start) : 0.0;
  const double budget = std::max(0.0, result->latency_budget_millis - spent);
  const auto num_rows = static_cast<int64_t>(prepared.labels.size());
  std::unordered_map<std::string, double> probe_rate;
  for (const ModelRecord& r : prepared.compatible) probe_rate[r.id] = ProbeMillisPerRow(r);
  const RunCostSnapshot costs = run_costs_.Snapshot();
  std::unordered_map<std::string, double> cost;
  // On `on_rows` samples whose outputs are cached under `hash` (the query's or a subset's).
  auto estimate = [&](int64_t on_rows, const std::string& hash) {
    double total = 0;
    for (const ModelRecord& r : prepared.compatible) {
      total += cost[r.id] = EstimateScoringMillis(r, static_cast<double>(on_rows),
                                                  probe_rate[r.id], costs, hash, dataset_hash);
    }
    return total;
  };
  const double total = estimate(num_rows, dataset_hash);
  if (total <= budget) {
    result->mode = RecommendMode::kScoredAll;
    result->mode_reason = absl::StrFormat(
        "scoring all %d compatible models fits the %s (estimated %.0f ms)", num_compatible,
        BudgetLeft(result->latency_budget_millis, spent, options_.budget_covers_whole_call),
        total);
    return stage1_order;
  }
  const std::string over = absl::StrFormat(
      "scoring all %d models on all %d samples would take an estimated %.0f ms, over the %s",
      num_compatible, num_rows, total,
      BudgetLeft(result->latency_budget_millis, spent, options_.budget_covers_whole_call));
  // Samples before models: every model on a class-stratified half, quarter, ... of the samples,
  // down to kMinStage2RowsPerClass per class. Chosen offline on zoo2, held on zoo1 and the
  // rotation suite (bench/select/subsample_study.py, BENCHMARKS 2o): a quarter of the samples
  // costs the fusion 0.00-0.02 tau_w; a quarter of the models costs 0.15-0.28 when stage 1 ranks
  // as on the held-out docks (tau_w 0.2-0.35). Halving keeps a repeated query on its subset.
  // At least one row, so that the halving below ends whatever the query's size.
  const int64_t floor_rows = std::max<int64_t>(
      1, std::min<int64_t>(num_rows,
                           std::max<int64_t>(kMinStage2Rows, int64_t{kMinStage2RowsPerClass} *
                                                                 prepared.num_classes)));
  const uint64_t seed = std::hash<std::string>{}(dataset_hash);
  for (int64_t r = num_rows / 2; r >= floor_rows; r /= 2) {
    std::vector<int64_t> subset = StratifiedSample(prepared.labels, r, seed);
    const double at_r =
        estimate(static_cast<int64_t>(subset.size()), SubsetHash(dataset_hash, subset));
    if (at_r > budget) continue;
    *rows = std::move(subset);
    result->mode = RecommendMode::kScoredAll;
    result->mode_reason = absl::StrFormat(
        "%s; scored all of them on a class-stratified %d of the samples (estimated %.0f ms)",
        over, static_cast<int>(rows->size()), at_r);
    return stage1_order;
  }
  // Even the floor does not fit: the floor's samples, and the stage-1 candidates that fit.
  std::string on_rows;
  if (floor_rows < num_rows) {
    *rows = StratifiedSample(prepared.labels, floor_rows, seed);
    estimate(static_cast<int64_t>(rows->size()), SubsetHash(dataset_hash, *rows));
    on_rows = absl::StrFormat(" on a class-stratified %d of the samples",
                              static_cast<int>(rows->size()));
  }
  return StageOneCandidatesThatFit(stage1_order, cost, budget, num_compatible, over, on_rows,
                                   result);
}

double Recommender::ProbeMillisPerRow(const ModelRecord& r) {
  // Its probe samples: a prefix of its space's probe set when the probing budget cut it (its
  // stored features have that many rows). Read from the proxy cache only, which stage 1 just
  // filled for every model it proxied: a model the prefilter left out is not worth a store read
  // here, and counts its whole probe set.
  double rows = static_cast<double>(primary()->probe_rows());
  if (KnowledgeSpace* space = SpaceFor(r)) {
    auto features = proxy_cache_.Get(ProxyCacheKey(r.id, *space));
    rows = static_cast<double>(features ? features->Rows() : space->probe_rows());
  }
  return static_cast<double>(std::max<int64_t>(r.probe_millis, 1)) / std::max(1.0, rows);
}

double Recommender::EstimateScoringMillis(const ModelRecord& r, double rows,
                                          double probe_millis_per_row,
                                          const RunCostSnapshot& costs,
                                          const std::string& dataset_hash,
                                          const std::string& query_hash) {
  const double metrics_ms =
      (2.0 + 0.02 * rows) * static_cast<double>(std::max<size_t>(1, r.layers.size()));
  // A subset's outputs are cached under its own key, or sliced from the whole query's (OutputsOn).
  if (output_cache_.Contains(OutputKey(r, dataset_hash)) ||
      (dataset_hash != query_hash && output_cache_.Contains(OutputKey(r, query_hash)))) {
    return metrics_ms;
  }
  const double load_ms = deps_.runner->IsLoaded(r) ? 0.0 : LoadMillisEstimate(r);
  return metrics_ms + load_ms + costs.Millis(r.id, rows, probe_millis_per_row);
}

}  // namespace modeldock::dock
