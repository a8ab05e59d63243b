// The Recommender's pipeline (dock/recommender.h): the query's preparation, Recommend from
// stage 1 to the answer, the probe tensors stage 1 reads (cached), and what is forgotten of a
// model.
#include "dock/recommender.h"

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dock/recommend_internal.h"
#include "scoring/metrics.h"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

absl::Status ValidateRecommendQuery(const RecommendQuery& query) {
  if (absl::Status valid = ValidateQuerySamples(query.dataset.samples, query.task); !valid.ok()) {
    return valid;
  }
  const bool text_task = query.task == TaskKind::kTextClassification;
  if (text_task != query.dataset.is_text() ||
      (text_task && static_cast<int64_t>(query.dataset.texts.size()) !=
                        query.dataset.samples.Rows())) {
    return absl::InvalidArgumentError(
        text_task ? "a text query carries one text per sample"
                  : "texts were sent for a query whose task is not text classification");
  }
  if (query.top_k < 1 || query.top_k > 10000) {
    return absl::InvalidArgumentError("top_k must be in 1..10000");
  }
  if (query.num_candidates < 0) return absl::InvalidArgumentError("num_candidates must be >= 0");
  if (query.latency_budget_millis < 0 || !std::isfinite(query.latency_budget_millis)) {
    return absl::InvalidArgumentError("latency_budget_millis must be >= 0 (0 = server default)");
  }
  return absl::OkStatus();
}


}  // namespace

RecommenderOptions RecommenderOptions::From(const DockOptions& options) {
  RecommenderOptions out;
  out.latency_budget_millis = options.latency_budget_millis;
  out.budget_covers_whole_call = options.budget_covers_whole_call;
  out.default_candidates = options.default_candidates;
  out.proxy_prefilter = options.proxy_prefilter;
  out.stage2_workers = options.stage2_workers;
  out.proxy = options.proxy;
  out.run_time_limit = options.sandbox.run_time_limit;
  out.output_cache_bytes = options.output_cache_bytes;
  out.proxy_cache_bytes = options.proxy_cache_bytes;
  out.learn_from_recommendations = options.learn_from_recommendations;
  return out;
}

Recommender::Recommender(RecommenderOptions options, Deps deps)
    : options_(std::move(options)),
      deps_(deps),
      output_cache_(options_.output_cache_bytes),
      proxy_cache_(options_.proxy_cache_bytes) {}

void Recommender::ForgetModel(const ModelRecord& record) {
  output_cache_.ErasePrefix(record.sha256);
  ForgetProbeData(record.id);
  ForgetRunCosts(record.id);
}

void Recommender::ForgetProbeData(const std::string& model_id) {
  proxy_cache_.ErasePrefix(absl::StrCat(model_id, "|"));
}

void Recommender::ForgetRunCosts(const std::string& model_id) { run_costs_.Erase(model_id); }

void Recommender::AddStats(DockStats* stats) const {
  stats->recommends = recommends_;
  stats->stage1_seconds = static_cast<double>(stage1_micros_) / 1e6;
  stats->stage2_seconds = static_cast<double>(stage2_micros_) / 1e6;
  stats->output_cache_hits = output_cache_.hits();
  stats->output_cache_misses = output_cache_.misses();
  stats->proxy_cache_hits = proxy_cache_.hits();
  stats->proxy_cache_misses = proxy_cache_.misses();
}

absl::StatusOr<std::shared_ptr<const Tensor>> Recommender::CachedProbeTensor(
    const ModelRecord& record, const char* what, const char* key_suffix,
    const std::function<absl::StatusOr<Tensor>(const KnowledgeSpace&)>& read) {
  const KnowledgeSpace* space = SpaceFor(record);
  if (space == nullptr) {
    return absl::NotFoundError(absl::StrCat("model '", record.spec.name,
                                            "' is in no knowledge space, so it has no ", what));
  }
  const std::string key = absl::StrCat(ProxyCacheKey(record.id, *space), key_suffix);
  if (auto cached = proxy_cache_.Get(key)) return cached;
  auto tensor = read(*space);
  if (!tensor.ok()) return tensor.status();
  auto shared = std::make_shared<const Tensor>(std::move(*tensor));
  proxy_cache_.Put(key, shared, static_cast<int64_t>(shared->values.size() * sizeof(float)));
  return shared;
}

absl::StatusOr<std::shared_ptr<const Tensor>> Recommender::ProbeFeatures(
    const ModelRecord& record) {
  return CachedProbeTensor(record, "probe features", "", [&](const KnowledgeSpace& space) {
    return deps_.probe_data->GetProbeFeatures(record.id, space.probe_set_sha());
  });
}

absl::StatusOr<std::shared_ptr<const Tensor>> Recommender::ProbeProbabilities(
    const ModelRecord& record) {
  return CachedProbeTensor(
      record, "probe outputs", "|probabilities",
      [&](const KnowledgeSpace& space) -> absl::StatusOr<Tensor> {
        auto outputs = deps_.probe_data->GetProbeOutputs(record.id, space.probe_set_sha());
        if (!outputs.ok()) return outputs.status();
        return scoring::ClassProbabilities(*outputs);
      });
}

absl::Status Recommender::EmbedInSpaces(const Tensor& samples, const Tensor& primary_embeddings,
                                        const std::vector<const ModelRecord*>& models,
                                        std::map<KnowledgeSpace*, Tensor>* space_embeddings) {
  for (const ModelRecord* r : models) {
    KnowledgeSpace* space = SpaceFor(*r);
    if (space == nullptr || space_embeddings->count(space)) continue;
    if (space == primary()) {
      (*space_embeddings)[space] = primary_embeddings;
      continue;
    }
    auto embedded = space->Embed(samples);
    if (!embedded.ok()) return embedded.status();
    (*space_embeddings)[space] = *std::move(embedded);
  }
  return absl::OkStatus();
}

absl::StatusOr<RecommendResult> Recommender::Recommend(const RecommendQuery& query) {
  absl::Time start = absl::Now();
  if (absl::Status valid = ValidateRecommendQuery(query); !valid.ok()) return valid;

  // One trained version ranks the whole answer, even if another is switched in meanwhile.
  const LearningLoop::Serving serving = deps_.learning->Current();
  RecommendResult result;
  result.alignment_version = serving.version;
  result.metric = query.metric;
  result.latency_budget_millis = query.latency_budget_millis > 0 ? query.latency_budget_millis
                                                                 : options_.latency_budget_millis;

  auto prepared = PrepareQuery(query, &result);
  if (!prepared.ok()) return prepared.status();
  if (prepared->compatible.empty()) {
    result.timings.total_millis = MillisSince(start);
    result.mode =
        query.metric == Metric::kNone ? RecommendMode::kStage1Only : RecommendMode::kScoredAll;
    result.mode_reason = "no compatible model";
    result.warnings.push_back(absl::StrCat("no READY ", TaskKindName(query.task),
                                           " model can take samples of shape ",
                                           ShapeToString(query.dataset.samples.SampleShape())));
    return result;
  }
  if (Cancelled(query)) return absl::CancelledError("recommendation cancelled");

  auto stage1 = RunStage1(*prepared, serving, &result);
  if (!stage1.ok()) return stage1.status();
  if (Cancelled(query)) return absl::CancelledError("recommendation cancelled");

  const std::string dataset_hash = DatasetHash(query.dataset);
  std::vector<int64_t> stage2_rows;
  const std::vector<std::string> candidates =
      ChooseCandidates(query, *prepared, *stage1, dataset_hash, &result, &stage2_rows);
  Stage2Samples samples;
  SelectStage2Samples(query, *prepared, dataset_hash, stage2_rows, &samples);
  result.num_samples_scored = candidates.empty() ? 0 : static_cast<int>(samples.labels->size());
  auto stage2 = RunStage2(query, *prepared, *stage1, candidates, samples, serving, &result);
  if (!stage2.ok()) return stage2.status();
  AssembleResults(query, *prepared, *stage1, *stage2, candidates.size(), serving, &result);

  result.timings.total_millis = MillisSince(start);
  ++recommends_;
  stage1_micros_ += static_cast<int64_t>(result.timings.stage1_millis * 1000);
  stage2_micros_ += static_cast<int64_t>(result.timings.stage2_millis * 1000);
  spdlog::info("recommend: {} samples, {} classes ({}), {} compatible, mode {} ({}), {} scored "
               "with {}, top '{}', {:.1f} ms", query.dataset.samples.Rows(), prepared->num_classes,
               result.label_source, result.num_compatible, RecommendModeName(result.mode),
               result.mode_reason, result.num_scored, MetricLabel(query.metric),
               result.results.empty() ? "-" : result.results[0].model.spec.name,
               result.timings.total_millis);
  return result;
}

absl::StatusOr<PreparedQuery> Recommender::PrepareQuery(const RecommendQuery& query,
                                                        RecommendResult* result) {
  const Tensor& samples = query.dataset.samples;
  PreparedQuery prepared;
  prepared.encode_start = absl::Now();
  // The query's own space (its channels and size), if any, embeds it for clustering.
  KnowledgeSpace* own_space = nullptr;
  if (query.task == TaskKind::kTextClassification ||
      query.task == TaskKind::kAudioClassification) {
    // A text or audio query is embedded in the space of its kind only: no image space is its own.
    own_space = deps_.spaces->ForTask(query.task, samples.SampleShape());
    if (own_space != nullptr) {
      auto embedded = own_space->Embed(query.dataset);
      if (!embedded.ok()) return embedded.status();
      prepared.embeddings = *embedded;
      prepared.space_embeddings[own_space] = *std::move(embedded);
    }
  }
  if (query.task == TaskKind::kImageClassification) {
    auto embedded = primary()->Embed(samples);
    if (!embedded.ok()) return embedded.status();
    prepared.embeddings = std::move(*embedded);
    own_space = deps_.spaces->For(samples.SampleShape());
    if (own_space != nullptr && own_space != primary()) {
      auto own = own_space->Embed(samples);
      if (!own.ok()) return own.status();
      prepared.space_embeddings[own_space] = std::move(*own);
    }
  }
  std::optional<Tensor> cluster_basis = prepared.embeddings;
  if (prepared.space_embeddings.count(own_space)) {
    cluster_basis = prepared.space_embeddings[own_space];
  }
  auto labels = PrepareLabels(query.dataset, cluster_basis);
  if (!labels.ok()) return labels.status();
  prepared.labels = std::move(labels->labels);
  prepared.num_classes = labels->num_classes;
  result->label_source = labels->source;

  // Compatible models, and the spaces they are in.
  auto all = deps_.models->ListAll();
  if (!all.ok()) return all.status();
  for (ModelRecord& r : *all) {
    if (!Compatible(r, query.task, samples)) continue;
    if (KnowledgeSpace* space = SpaceFor(r)) prepared.space_members[space].push_back(r.id);
    prepared.position[r.id] = prepared.compatible.size();
    prepared.compatible.push_back(std::move(r));
  }
  result->num_compatible = static_cast<int>(prepared.compatible.size());
  // The query through the E of each space that holds compatible models.
  if (prepared.embeddings) {
    std::vector<const ModelRecord*> models;
    for (const ModelRecord& r : prepared.compatible) models.push_back(&r);
    if (absl::Status s = EmbedInSpaces(samples, *prepared.embeddings, models,
                                       &prepared.space_embeddings);
        !s.ok()) {
      return s;
    }
  }
  return prepared;
}

void Recommender::RecordWeakOutcomes(const RecommendQuery& query, const PreparedQuery& prepared,
                                     const Stage1Result& stage1,
                                     const std::vector<ScoredModel>& scored,
                                     RecommendResult* result) {
  // The dock learns from its own recommendations when the operator allows it: the scored
  // models' stage-2 standings on this (labelled) query become weak outcome records.
  if (!options_.learn_from_recommendations || result->label_source != "given" ||
      !prepared.embeddings || scored.size() < 2) {
    return;
  }
  OutcomeQueryRow record = OutcomeQueryOf(query.dataset, query.task, *prepared.embeddings,
                                          prepared.labels, prepared.num_classes);
  record.stage1.insert(stage1.proxy_score.begin(), stage1.proxy_score.end());
  std::vector<std::pair<const ModelRecord*, double>> standings;
  for (const ScoredModel& s : scored) standings.push_back({&prepared.Model(s.id), s.stage2});
  auto stored = RecordStage2Standings(deps_.outcomes, record, standings);
  if (stored.ok()) {
    result->recorded_outcomes = *stored;
  } else {
    // The answer does not depend on the record: log, do not fail the call.
    spdlog::warn("recommend: could not record stage-2 standings: {}",
                 std::string(stored.status().message()));
  }
}

}  // namespace modeldock::dock
