// Stage 2 of the recommend pipeline (dock/recommend.cc runs the stages; stage2_budget.cc picks
// the candidates and samples the latency budget lets run): running the candidates black-box on
// the query samples (outputs cached by content; runs that hit a limit remembered), and scoring
// each model's views (its features, or each exported layer) with the metric's members, ranked
// together.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/request_context.h"
#include "dock/query_rows.h"
#include "dock/recommend_internal.h"
#include "sandbox/worker_pool.h"
#include "scoring/fusion.h"
#include "scoring/metrics.h"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

ViewScoring ScoringFor(Metric metric, const PreparedQuery& prepared,
                       const std::vector<std::string>& candidates) {
  ViewScoring scoring;
  scoring.metric = metric;
  scoring.members = MembersOf(metric);
  scoring.all_logits =
      std::all_of(scoring.members.begin(), scoring.members.end(), scoring::UsesLogits);
  // The fusion always compresses. A single feature metric does when some candidate exports
  // layers: raw, it picks the widest layer and ranks layered models badly (bench/layers, chosen
  // on zoo A: LogME tau_w 0.12 -> 0.74, checked on B: 0.61 -> 0.66); then every view is
  // compressed, so all models stay on one scale. Not TMI: its L-infinity neighbour entropy
  // picked layers worse on components (A: 0.94 -> 1.99 points lost).
  const bool any_layers =
      std::any_of(candidates.begin(), candidates.end(),
                  [&](const std::string& id) { return !prepared.Model(id).layers.empty(); });
  scoring.compress = metric == Metric::kFusion ||
                     (any_layers && !scoring.all_logits && metric != Metric::kTmi);
  scoring.logits_optional = metric == Metric::kFusion;
  scoring.labels = &prepared.labels;
  scoring.num_classes = prepared.num_classes;
  return scoring;
}

// Scores one set of features (and the model's logits, for logit metrics; null when it has no
// class outputs) with every member. Returns the failure ("" when scored); an optional logit
// member that cannot be scored is NaN and says why in `unmeasured`.
// Compressed: on the features' own top principal components on the query, so that every view
// has the same number of dimensions (LogME's evidence and the H-scores otherwise drift with the
// feature width, which sorts models by architecture and layers by width: bench/select,
// bench/layers), except the directions they do not vary in (DropNullComponents: a query of
// fewer samples than components).
// `logit_values` keeps the logit members' values across the views of one model: they read its
// class outputs, which every view shares, so they are computed once.
std::string ScoreView(const ViewScoring& scoring, const Tensor& raw, const Tensor* logits,
                      ScoredView* view, std::string* unmeasured,
                      std::map<scoring::Metric, absl::StatusOr<double>>* logit_values) {
  std::optional<Tensor> reduced;
  if (scoring.compress) {
    auto r = scoring::CompressFeatures(raw, kFusionDims);
    if (r.ok()) reduced = scoring::DropNullComponents(*r);
  }
  const Tensor& feature_input = reduced ? *reduced : raw;
  for (scoring::Metric metric : scoring.members) {
    const bool optional = scoring.logits_optional && scoring::UsesLogits(metric);
    if (optional && logits == nullptr) {
      view->member_values.push_back(NAN);
      continue;
    }
    scoring::ScoreInput input;
    input.features = scoring::UsesLogits(metric) ? logits : &feature_input;
    input.logits = logits;
    input.labels = scoring.labels;
    input.num_classes = scoring.num_classes;
    absl::StatusOr<double> value;
    if (scoring::UsesLogits(metric)) {
      auto known = logit_values->find(metric);
      if (known == logit_values->end()) {
        known = logit_values->emplace(metric, scoring::Score(metric, input)).first;
      }
      value = known->second;
    } else {
      value = scoring::Score(metric, input);
    }
    if (value.ok() && !std::isfinite(*value) && scoring.members.size() > 1) {
      // Degenerate features (e.g. all zero: LogME's evidence is -inf) carry no information
      // about the query: in a fusion the member ranks the view last.
      view->member_values.push_back(-HUGE_VAL);
      continue;
    }
    if (optional && (!value.ok() || !std::isfinite(*value))) {
      *unmeasured = absl::StrCat(std::string(scoring::MetricName(metric)), ": ",
                                 value.ok() ? "non-finite score"
                                            : std::string(value.status().message()));
      view->member_values.push_back(NAN);
      continue;
    }
    if (!value.ok() || !std::isfinite(*value)) {
      return absl::StrCat(std::string(scoring::MetricName(metric)), ": ",
                          value.ok() ? "non-finite score" : std::string(value.status().message()));
    }
    view->member_values.push_back(*value);
  }
  if (reduced) {
    absl::StrAppend(&view->features_note, " (top ", reduced->RowSize(), " principal components)");
  }
  return "";
}

// A candidate's views scored on its outputs; nullopt when none could be (the warnings say why).
std::optional<ScoredModel> ScoreCandidate(const ModelRecord& record,
                                          const encoder::ModelOutputs& out,
                                          const ViewScoring& scoring,
                                          std::vector<std::string>* warnings) {
  const std::vector<scoring::Metric>& members = scoring.members;
  const bool has_features = record.has_embed && !out.features.shape.empty();
  const bool extractor = record.spec.kind == ModelKind::kFeatureExtractor;
  if (extractor && !scoring.logits_optional &&
      std::any_of(members.begin(), members.end(), scoring::UsesLogits)) {
    // LEEP and NCE read a classifier's class probabilities; a feature extractor has none.
    warnings->push_back(absl::StrCat("skipped ", record.spec.name, ": ",
                                     MetricLabel(scoring.metric),
                                     " scores a classifier's outputs and it is a feature "
                                     "extractor (use a feature-based metric, e.g. fusion)"));
    return std::nullopt;
  }
  ScoredModel s;
  s.id = record.id;
  const Tensor* logits = extractor || out.logits.shape.empty() ? nullptr : &out.logits;
  std::string unmeasured;  // an optional member's failure, reported once per model
  std::map<scoring::Metric, absl::StatusOr<double>> logit_values;
  const bool by_layer = !scoring.all_logits && !record.layers.empty() &&
                        out.layers.size() == record.layers.size();
  if (by_layer) {
    for (size_t l = 0; l < out.layers.size(); ++l) {
      ScoredView view;
      view.layer = static_cast<int>(l);
      view.features_note = absl::StrCat("layer '", record.layers[l].name, "' (",
                                        out.layers[l].RowSize(), "-d)");
      std::string failure = ScoreView(scoring, out.layers[l], logits, &view, &unmeasured,
                                        &logit_values);
      if (!failure.empty()) {
        warnings->push_back(absl::StrCat("could not score ", record.spec.name, " layer '",
                                         record.layers[l].name, "' with ", failure));
        continue;
      }
      s.views.push_back(std::move(view));
    }
  } else {
    ScoredView view;
    const Tensor& raw = has_features ? out.features : out.logits;
    view.features_note =
        scoring.all_logits ? absl::StrCat("its ", record.spec.class_labels.size(), "-class outputs")
        : has_features     ? absl::StrCat(out.features.RowSize(), "-d embed features")
        : extractor        ? absl::StrCat(out.logits.RowSize(), "-d features (feature extractor)")
                           : absl::StrCat(out.logits.RowSize(), "-d logits (no embed)");
    std::string failure = ScoreView(scoring, raw, logits, &view, &unmeasured, &logit_values);
    if (!failure.empty()) {
      warnings->push_back(absl::StrCat("could not score ", record.spec.name, " with ", failure));
    } else {
      s.views.push_back(std::move(view));
    }
  }
  if (!unmeasured.empty()) {
    warnings->push_back(absl::StrCat("ranked ", record.spec.name, " without ", unmeasured));
  }
  if (s.views.empty()) return std::nullopt;
  s.scored = true;
  return s;
}

// Each member's rank of every scored view, for the reasons.
struct ViewRanks {
  // [member][view], fusions only: 1 = best; 0 = not measured.
  std::vector<std::vector<double>> member_ranks;
  std::vector<int> num_measured;  // [member]: views the member measured
  std::unordered_map<const ScoredView*, size_t> position;  // view -> index in member_ranks
  size_t num_views = 0;
};

// Each member's rank (1 = best) of the views it measured, 0 for the others.
std::vector<double> MemberRanks(const std::vector<double>& values, int* num_measured) {
  std::vector<double> measured;
  for (double v : values) {
    if (!std::isnan(v)) measured.push_back(v);
  }
  const std::vector<double> ascending = scoring::Ranks(measured);
  *num_measured = static_cast<int>(measured.size());
  std::vector<double> ranks(values.size(), 0.0);
  for (size_t i = 0, j = 0; i < values.size(); ++i) {
    if (!std::isnan(values[i])) ranks[i] = static_cast<double>(measured.size()) + 1 - ascending[j++];
  }
  return ranks;
}

// Stage-2 score of every view: the metric's value, or for a fusion the members' weighted mean
// rank among the scored views they measured, each divided by that number (1 = first by every
// member; scoring::WeightedRankFusion with MemberWeights). A model scores as its best view (ties:
// the earlier layer).
ViewRanks RankViews(const ViewScoring& scoring, std::vector<ScoredModel>* scored) {
  const std::vector<scoring::Metric>& members = scoring.members;
  std::vector<ScoredView*> views;
  for (ScoredModel& s : *scored) {
    for (ScoredView& v : s.views) views.push_back(&v);
  }
  ViewRanks ranks;
  ranks.num_views = views.size();
  if (members.size() > 1 && !views.empty()) {
    std::vector<std::vector<double>> lists(members.size());
    for (const ScoredView* v : views) {
      for (size_t m = 0; m < members.size(); ++m) lists[m].push_back(v->member_values[m]);
    }
    ranks.num_measured.resize(members.size());
    for (size_t m = 0; m < members.size(); ++m) {
      ranks.member_ranks.push_back(MemberRanks(lists[m], &ranks.num_measured[m]));
    }
    const std::vector<double> fused =
        scoring::WeightedRankFusion(lists, MemberWeights(scoring.metric));
    for (size_t i = 0; i < views.size(); ++i) views[i]->stage2 = fused[i];
  } else {
    for (ScoredView* v : views) v->stage2 = v->member_values.empty() ? 0 : v->member_values[0];
  }
  for (size_t i = 0; i < views.size(); ++i) ranks.position[views[i]] = i;
  for (ScoredModel& s : *scored) {
    for (size_t v = 1; v < s.views.size(); ++v) {
      if (s.views[v].stage2 > s.views[s.best].stage2) s.best = v;
    }
    s.stage2 = s.views[s.best].stage2;
    s.final_score = s.stage2;
  }
  return ranks;
}

// The serving trained version's prior combined with each scored model's stage-2 score.
void AddStage2Priors(const encoder::OutcomeRanker& ranker, const Stage1Result& stage1,
                     std::vector<ScoredModel>* scored) {
  std::vector<double> base, model_prior;
  for (const ScoredModel& s : *scored) {
    base.push_back(s.stage2);
    model_prior.push_back(stage1.prior.at(s.id));
  }
  std::vector<double> combined = ranker.CombineStage2(base, model_prior);
  for (size_t i = 0; i < scored->size(); ++i) (*scored)[i].final_score = combined[i];
}

// "logme 1.23 (rank 2 of 9), shrinkage_hscore ... ": a fusion's members on each model's best view.
std::unordered_map<std::string, std::string> MemberTexts(
    const std::vector<scoring::Metric>& members, const ViewRanks& ranks,
    const std::vector<ScoredModel>& scored) {
  std::unordered_map<std::string, std::string> member_text;
  const bool several_views = ranks.num_views > scored.size();
  for (const ScoredModel& s : scored) {
    if (members.size() < 2) continue;
    const ScoredView& best = s.views[s.best];
    const size_t at = ranks.position.at(&best);
    std::string text;
    for (size_t m = 0; m < members.size(); ++m) {
      const std::string name(scoring::MetricName(members[m]));
      absl::StrAppend(&text, m ? ", " : "");
      if (ranks.member_ranks[m][at] == 0) {
        absl::StrAppend(&text, name, " not measured (no class outputs it can score)");
        continue;
      }
      absl::StrAppend(&text, absl::StrFormat("%s %.4g (rank %d of %d%s)", name,
                      best.member_values[m], static_cast<int>(ranks.member_ranks[m][at] + 0.5),
                      ranks.num_measured[m], several_views ? " model layers" : ""));
    }
    member_text[s.id] = text;
  }
  return member_text;
}

// The rows `rows` of a model's outputs (class outputs, features, layers; absent ones stay absent).
std::shared_ptr<const encoder::ModelOutputs> SliceOutputs(const encoder::ModelOutputs& whole,
                                                          const std::vector<int64_t>& rows) {
  auto take = [&](const Tensor& t) { return t.shape.empty() ? t : TakeRows(t, rows); };
  encoder::ModelOutputs out;
  out.logits = take(whole.logits);
  out.features = take(whole.features);
  for (const Tensor& layer : whole.layers) out.layers.push_back(take(layer));
  return std::make_shared<const encoder::ModelOutputs>(std::move(out));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const encoder::ModelOutputs>> Recommender::OutputsOn(
    const ModelRecord& record, const Dataset& data, const std::string& dataset_hash,
    const std::function<bool()>& cancelled, bool* from_cache, const SubsetOf* subset_of) {
  const std::string key = OutputKey(record, dataset_hash);
  *from_cache = false;
  if (auto cached = output_cache_.Get(key)) {
    *from_cache = true;
    return cached;
  }
  if (subset_of != nullptr) {
    if (auto whole = output_cache_.Get(OutputKey(record, subset_of->dataset_hash))) {
      *from_cache = true;  // the rows of its outputs on the whole query: no run
      return SliceOutputs(*whole, subset_of->rows);
    }
  }
  RunRequest request;
  request.want_features = true;
  request.want_layers = true;
  request.time_limit = options_.run_time_limit;
  request.cancelled = cancelled;
  auto run = deps_.runner->RunOn(record, data, request);
  if (!run.ok()) return run.status();
  encoder::ModelOutputs outputs;
  outputs.logits = std::move(run->logits);
  outputs.features = std::move(run->features);
  outputs.layers = std::move(run->layers);
  auto shared = std::make_shared<const encoder::ModelOutputs>(std::move(outputs));
  size_t floats = shared->logits.values.size() + shared->features.values.size();
  for (const Tensor& layer : shared->layers) floats += layer.values.size();
  const int64_t bytes = static_cast<int64_t>(floats * sizeof(float));
  output_cache_.Put(key, shared, bytes);
  return shared;
}

absl::StatusOr<Stage2Result> Recommender::RunStage2(const RecommendQuery& query,
                                                    const PreparedQuery& prepared,
                                                    const Stage1Result& stage1,
                                                    const std::vector<std::string>& candidates,
                                                    const Stage2Samples& samples,
                                                    const LearningLoop::Serving& serving,
                                                    RecommendResult* result) {
  Stage2Result stage2;
  stage2.scoring = ScoringFor(query.metric, prepared, candidates);
  stage2.scoring.labels = samples.labels;
  absl::Time stage2_start = absl::Now();
  if (!candidates.empty()) {
    auto scored = ScoreCandidates(query, prepared, candidates, *samples.dataset, samples.hash,
                                  stage2.scoring, result,
                                  samples.subset_of ? &*samples.subset_of : nullptr);
    if (!scored.ok()) return scored.status();
    stage2.scored = std::move(*scored);
  }
  std::vector<ScoredModel>& scored = stage2.scored;
  const ViewRanks ranks = RankViews(stage2.scoring, &scored);
  // Recorded before the prior is added, so that a version never learns from its own priors.
  RecordWeakOutcomes(query, prepared, stage1, scored, result);
  if (serving.ranker && !scored.empty()) AddStage2Priors(*serving.ranker, stage1, &scored);
  stage2.member_text = MemberTexts(stage2.scoring.members, ranks, scored);
  // Ties keep the stage-1 order.
  std::stable_sort(scored.begin(), scored.end(), [&](const ScoredModel& a, const ScoredModel& b) {
    if (a.final_score != b.final_score) return a.final_score > b.final_score;
    return stage1.rank.at(a.id) < stage1.rank.at(b.id);
  });
  result->timings.stage2_millis = candidates.empty() ? 0 : MillisSince(stage2_start);
  result->num_scored = static_cast<int>(scored.size());
  return stage2;
}

void Recommender::RecordRunCost(const ModelRecord& record, bool was_loaded, double run_millis,
                                int64_t rows, int stage2_threads) {
  // Without the load (estimated apart), and divided by the workers sharing the machine, so that
  // the sum over models estimates wall time (each run here was slowed by the others running
  // beside it).
  const double own_millis =
      std::max(0.0, run_millis - (was_loaded ? 0.0 : LoadMillisEstimate(record)));
  run_costs_.Record(record.id, {static_cast<double>(rows), own_millis / stage2_threads},
                    ProbeMillisPerRow(record));
}

absl::StatusOr<std::vector<ScoredModel>> Recommender::ScoreCandidates(
    const RecommendQuery& query, const PreparedQuery& prepared,
    const std::vector<std::string>& candidates, const Dataset& data,
    const std::string& data_hash, const ViewScoring& scoring, RecommendResult* result,
    const SubsetOf* subset_of) {
  const Tensor& samples = data.samples;
  auto cancelled = [&] { return Cancelled(query); };
  std::vector<std::optional<ScoredModel>> slots(candidates.size());
  std::vector<std::vector<std::string>> slot_warnings(candidates.size());
  std::vector<char> slot_cached(candidates.size(), 0);
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  absl::Status overloaded;  // the worker pool's queue was full: the whole call is retried
  std::mutex overloaded_mutex;
  const int stage2_threads =
      std::max(1, std::min<int>(options_.stage2_workers, static_cast<int>(candidates.size())));
  auto work = [&] {
    for (size_t i = next++; i < candidates.size(); i = next++) {
      if (stop.load() || cancelled()) {
        stop = true;
        return;
      }
      const ModelRecord& record = prepared.Model(candidates[i]);
      const std::string run_key = OutputKey(record, data_hash);
      if (auto failed = run_failures_.Get(run_key)) {
        slot_warnings[i].push_back(absl::StrCat(
            "skipped ", record.spec.name, ": on this dataset it hit a limit ",
            absl::FormatDuration(absl::Trunc(absl::Now() - failed->second, absl::Seconds(1))),
            " ago (", failed->first.message(), "); not run on it again for ",
            absl::FormatDuration(run_failures_.ttl()), " after that"));
        continue;
      }
      bool from_cache = false;
      const bool was_loaded = deps_.runner->IsLoaded(record);
      absl::Time run_start = absl::Now();
      auto outputs = OutputsOn(record, data, data_hash, cancelled, &from_cache, subset_of);
      slot_cached[i] = from_cache;
      if (sandbox::WorkerPool::IsOverloaded(outputs.status())) {
        std::lock_guard<std::mutex> lock(overloaded_mutex);
        overloaded = outputs.status();
        stop = true;
        return;
      }
      if (outputs.ok() && !from_cache) {
        RecordRunCost(record, was_loaded, MillisSince(run_start), samples.Rows(), stage2_threads);
      }
      std::vector<std::string>& warnings = slot_warnings[i];
      if (!outputs.ok()) {
        warnings.push_back(
            absl::StrCat("skipped ", record.spec.name, ": ", outputs.status().message()));
        // A limit (not a cancelled call, not a full queue) will be hit again on this dataset.
        if (absl::IsDeadlineExceeded(outputs.status()) ||
            absl::IsResourceExhausted(outputs.status())) {
          run_failures_.Record(run_key, outputs.status());
        }
        continue;
      }
      slots[i] = ScoreCandidate(record, **outputs, scoring, &warnings);
    }
  };
  // Candidates run in parallel (each model serves one caller at a time).
  // Their log lines name the call's request, as the calling thread's do.
  const std::string request_id = CurrentRequestId();
  std::vector<std::thread> pool;
  for (int t = 1; t < stage2_threads; ++t) {
    pool.emplace_back([&] {
      ScopedRequestId scope(request_id);
      work();
    });
  }
  work();
  for (std::thread& t : pool) t.join();
  if (!overloaded.ok()) return overloaded;
  std::vector<ScoredModel> scored;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (slot_cached[i]) ++result->num_cached;
    for (std::string& w : slot_warnings[i]) result->warnings.push_back(std::move(w));
    if (slots[i]) scored.push_back(std::move(*slots[i]));
  }
  if (stop.load()) {
    return absl::CancelledError("recommendation cancelled while scoring candidates");
  }
  return scored;
}

void Recommender::RecordReportStandings(Dataset dataset, TaskKind task,
                                        const OutcomeQueryRow& query,
                                        const std::vector<std::string>& model_ids,
                                        const std::function<bool()>& stopping) {
  const absl::Time start = absl::Now();
  const auto dataset_hash = DatasetHash(dataset);
  RecommendQuery scoring_query;
  scoring_query.dataset = std::move(dataset);  // the report's samples: moved, not copied again
  scoring_query.task = task;
  scoring_query.metric = Metric::kFusion;
  scoring_query.brute_force = true;
  scoring_query.is_cancelled = stopping;
  RecommendResult unused;
  auto prepared = PrepareQuery(scoring_query, &unused);
  auto fail = [&](const absl::Status& s) {
    spdlog::warn("learning: no stage-2 standings for reported query {}: {}",
                 query.query_id.substr(0, 12), std::string(s.message()));
  };
  if (!prepared.ok()) return fail(prepared.status());
  // The reported models still compatible (one may have been deleted since the report).
  std::vector<std::string> candidates;
  for (const std::string& id : model_ids) {
    if (prepared->position.count(id)) candidates.push_back(id);
  }
  if (candidates.size() < 2) return;
  const ViewScoring scoring = ScoringFor(scoring_query.metric, *prepared, candidates);
  auto scored = ScoreCandidates(scoring_query, *prepared, candidates, scoring_query.dataset,
                                dataset_hash, scoring, &unused);
  if (!scored.ok()) return fail(scored.status());
  RankViews(scoring, &*scored);
  for (const std::string& w : unused.warnings) spdlog::warn("learning: standings: {}", w);
  std::vector<std::pair<const ModelRecord*, double>> standings;
  for (const ScoredModel& s : *scored) standings.push_back({&prepared->Model(s.id), s.stage2});
  auto stored = RecordStage2Standings(deps_.outcomes, query, standings);
  if (!stored.ok()) return fail(stored.status());
  spdlog::info("learning: stage-2 standings of {} reported model(s) recorded for query {} "
               "({:.0f} ms)", *stored, query.query_id.substr(0, 12), MillisSince(start));
}

}  // namespace modeldock::dock
