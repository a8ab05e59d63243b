// The recommend pipeline.
//   Stage 1 (no model runs): the query's samples through the reference encoder E ->
//     (a) Know2Vec query vector -> FAISS inner-product similarity to every model's knowledge
//         vector (sublinear; on docks above DockOptions::proxy_prefilter models it cuts the dock
//         down first);
//     (b) probe proxies: each query sample's nearest probe samples in E's space; each model's
//         stored features and class outputs there stand in for its outputs on the query; the
//         default fusion's members (LogME and shrinkage H-score on the features, NCE on the class
//         outputs), rank-fused, order the models (O(models), a few ms for 100 models).
//   Mode: the latency budget decides whether stage 2 scores every compatible model or the
//     stage-1 candidates that fit (estimated from each model's measured run or probing time).
//   Stage 2 (dock/stage2.cc): each candidate runs black-box on the query samples; the metric
//     (default: rank fusion of LogME and shrinkage H-score on its features and NCE on its class
//     outputs) scores it against the query labels.
// This file holds the pipeline, the query's preparation and the answer's assembly; stage 1 is in
// dock/stage1.cc, stage 2 in dock/stage2.cc, and recommend_internal.h the state the stages pass
// each other.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "dock/dock_impl.h"
#include "dock/recommend_internal.h"
#include "scoring/fusion.h"
#include "scoring/metrics.h"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

// The default fusion: LogME and shrinkage H-score on the features' top principal components,
// and NCE on the class outputs (a model without class outputs is ranked without it), with equal
// weights. NCE was added on the colour zoo (tau_w 0.437 -> 0.469) and holds on the grey zoo
// (0.662 -> 0.661); weighting it by how well the models' predicted classes explain the query's
// labels did not help on either (bench/select/nce_weight.py, docs/BENCHMARKS.md). The stage-1
// proxy fuses the same three members on the probe outputs (bench/select/stage1_proxy.py: colour
// zoo 0.274 -> 0.304, grey zoo A 0.706 -> 0.713).
const std::vector<scoring::Metric>& FusionMembers() {
  static const std::vector<scoring::Metric> kMembers = {
      scoring::Metric::kLogMe, scoring::Metric::kShrinkageHScore, scoring::Metric::kNce};
  return kMembers;
}
const std::vector<scoring::Metric>& ProxyMetrics() { return FusionMembers(); }

std::vector<scoring::Metric> MembersOf(Metric metric) {
  switch (metric) {
    case Metric::kFusion: return FusionMembers();
    case Metric::kTmi: return {scoring::Metric::kTmi};
    case Metric::kLogMe: return {scoring::Metric::kLogMe};
    case Metric::kLeep: return {scoring::Metric::kLeep};
    case Metric::kNce: return {scoring::Metric::kNce};
    case Metric::kHScore: return {scoring::Metric::kHScore};
    case Metric::kShrinkageHScore: return {scoring::Metric::kShrinkageHScore};
    case Metric::kGbc: return {scoring::Metric::kGbc};
    case Metric::kSfda: return {scoring::Metric::kSfda};
    case Metric::kNone: return {};
  }
  return {};
}

std::string MetricLabel(Metric metric) {
  if (metric == Metric::kNone) return "none";
  if (metric == Metric::kFusion) return "fusion";
  return std::string(scoring::MetricName(MembersOf(metric)[0]));
}

std::string MemberNames(const std::vector<scoring::Metric>& members) {
  std::string out;
  for (size_t i = 0; i < members.size(); ++i) {
    absl::StrAppend(&out, i ? " + " : "", std::string(scoring::MetricName(members[i])));
  }
  return out;
}

std::string OutputKey(const ModelRecord& record, const std::string& dataset_hash) {
  return absl::StrCat(ModelKey(record), "|", dataset_hash);
}

std::string ProxyCacheKey(const std::string& model_id, const KnowledgeSpace& space) {
  return absl::StrCat(model_id, "|", space.probe_set_sha());
}

double MillisSince(absl::Time start) { return absl::ToDoubleMilliseconds(absl::Now() - start); }

bool Cancelled(const RecommendQuery& query) {
  return query.is_cancelled && query.is_cancelled();
}

std::string DatasetHash(const Dataset& data) {
  Sha256 h;
  h.Update(ShapeToString(data.samples.shape));
  h.Update(data.samples.values.data(), data.samples.values.size() * sizeof(float));
  // Texts: each with its length, so that ["ab", "c"] and ["a", "bc"] differ.
  for (const std::string& text : data.texts) {
    h.Update(absl::StrCat("|", text.size(), ":"));
    h.Update(text);
  }
  return h.HexDigest();
}

namespace {

// "block1 0.41, block2 0.62, fc 0.83": each layer's stage-2 score, in the model's order.
std::string LayerScoresText(const std::vector<LayerScore>& scores) {
  std::string out;
  for (const LayerScore& l : scores) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", l.name, absl::StrFormat(" %.3g", l.score));
  }
  return out;
}

}  // namespace

bool Compatible(const ModelRecord& record, TaskKind task, const Tensor& samples) {
  if (record.state != ModelState::kReady || record.spec.task != task) return false;
  if (task == TaskKind::kTextClassification) return true;  // every text model takes strings
  // Audio: clips of any length (fitted to the model's [T]).
  if (task == TaskKind::kAudioClassification) return samples.shape.size() == 2;
  std::vector<int64_t> sample_shape = samples.SampleShape();
  if (task == TaskKind::kTabularClassification) return record.spec.input_shape == sample_shape;
  return sample_shape.size() == 3 && (sample_shape[0] == 1 || sample_shape[0] == 3);
}

absl::StatusOr<Tensor> DockImpl::EmbedWithReference(const Tensor& samples) {
  return knowledge_->Embed(samples);
}

absl::StatusOr<std::shared_ptr<const Tensor>> DockImpl::CachedProbeTensor(
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

absl::StatusOr<std::shared_ptr<const Tensor>> DockImpl::ProbeFeatures(const ModelRecord& record) {
  return CachedProbeTensor(record, "probe features", "", [&](const KnowledgeSpace& space) {
    return store_->GetProbeFeatures(record.id, space.probe_set_sha());
  });
}

absl::StatusOr<std::shared_ptr<const Tensor>> DockImpl::ProbeProbabilities(
    const ModelRecord& record) {
  return CachedProbeTensor(
      record, "probe outputs", "|probabilities",
      [&](const KnowledgeSpace& space) -> absl::StatusOr<Tensor> {
        auto outputs = store_->GetProbeOutputs(record.id, space.probe_set_sha());
        if (!outputs.ok()) return outputs.status();
        return scoring::ClassProbabilities(*outputs);
      });
}

absl::StatusOr<std::pair<ModelRecord, Tensor>> DockImpl::Infer(
    std::string_view model, const Tensor& samples, const std::function<bool()>& cancelled) {
  auto record = GetModel(model);
  if (!record.ok()) return record.status();
  if (record->state != ModelState::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("model '", record->spec.name, "' is ",
                                                      ModelStateName(record->state),
                                                      ", not READY"));
  }
  if (!samples.IsConsistent() || samples.shape.size() < 2 || samples.Rows() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the input must be a non-empty [N, ...] tensor with matching data; got shape ",
        ShapeToString(samples.shape), " and ", samples.values.size(), " values"));
  }
  if (record->spec.task == TaskKind::kTextClassification) {
    return absl::UnimplementedError(absl::StrCat(
        "model '", record->spec.name, "' is a text model; inference on texts is not offered "
        "yet (Infer takes tensors)"));
  }
  const TaskKind task = record->spec.task;
  if (task == TaskKind::kTabularClassification  ? samples.SampleShape() != record->spec.input_shape
      : task == TaskKind::kAudioClassification ? samples.shape.size() != 2
                                                : samples.shape.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", record->spec.name, "' takes ", ShapeToString(record->spec.input_shape),
        task == TaskKind::kTabularClassification ? ""
        : task == TaskKind::kAudioClassification ? " audio clips (any length: cropped or padded)"
                                                 : " images (any size: resized)",
        " per sample; got ", ShapeToString(samples.shape)));
  }
  sandbox::CancelCheck check = [&] { return cancelled && cancelled(); };
  Dataset data;
  data.samples = samples;
  auto run = RunModel(*record, data, /*want_features=*/false, /*want_layers=*/false,
                      options_.sandbox.run_time_limit, check);
  if (!run.ok()) return run.status();
  return std::make_pair(*std::move(record), std::move(run->logits));
}

absl::Status ValidateQuerySamples(const Tensor& samples, TaskKind task) {
  if (task == TaskKind::kTextClassification) {
    // A text dataset's samples are [N, 0] beside its N texts (the server's decoding checks that
    // the texts are valid UTF-8).
    if (samples.shape.size() != 2 || samples.shape[1] != 0 || samples.Rows() < 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a text query needs at least 4 texts; got ", samples.Rows()));
    }
    return absl::OkStatus();
  }
  if (!samples.IsConsistent() || samples.shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "query samples must be [N, ...] with matching data; got shape ", ShapeToString(samples.shape),
        " and ", samples.values.size(), " values"));
  }
  if (samples.Rows() < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("a query needs at least 4 samples; got ", samples.Rows()));
  }
  if (task == TaskKind::kImageClassification && samples.shape.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image queries are [N, C, H, W]; got ", ShapeToString(samples.shape)));
  }
  if (task == TaskKind::kTabularClassification && samples.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tabular queries are [N, F]; got ", ShapeToString(samples.shape)));
  }
  if (task == TaskKind::kAudioClassification && samples.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "audio queries are [N, T] clips of 16 kHz mono; got ", ShapeToString(samples.shape)));
  }
  for (float v : samples.values) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("query samples contain NaN or Inf");
  }
  return absl::OkStatus();
}

absl::StatusOr<PreparedLabels> PrepareLabels(const Dataset& dataset,
                                             const std::optional<Tensor>& embeddings) {
  const Tensor& samples = dataset.samples;
  PreparedLabels out;
  out.labels = dataset.labels;
  std::vector<int32_t>& labels = out.labels;
  if (!labels.empty()) {
    if (labels.size() != static_cast<size_t>(samples.Rows())) {
      return absl::InvalidArgumentError(absl::StrCat("got ", labels.size(), " labels for ",
                                                     samples.Rows(), " samples"));
    }
    for (int32_t y : labels) {
      if (y < 0) return absl::InvalidArgumentError("labels must be >= 0");
    }
    // Renumber the labels present to 0..C-1: metrics average over classes, and an empty class
    // (labels {1, 5}) must not count as one.
    std::map<int32_t, int32_t> compact;
    for (int32_t y : labels) compact.emplace(y, 0);
    int32_t next = 0;
    for (auto& [label, index] : compact) index = next++;
    for (int32_t& y : labels) y = compact[y];
    out.num_classes = static_cast<int>(compact.size());
    if (out.num_classes < 2) {
      return absl::InvalidArgumentError(
          "the query's labels name only one class; transferability needs at least 2 classes "
          "(or send the dataset unlabelled to have it clustered)");
    }
    out.source = "given";
    return out;
  }
  // Unlabelled: k-means clusters of E's embeddings (raw features for tabular data).
  if (dataset.is_text() && !embeddings) {
    return absl::FailedPreconditionError(
        "an unlabelled text query is clustered in the text knowledge space, which this dock's "
        "assets do not have (scripts/make_assets.py builds it); send the labels");
  }
  int k = static_cast<int>(std::clamp<int64_t>(samples.Rows() / 10, 2, 10));
  const Tensor& basis = embeddings ? *embeddings : samples;
  Tensor flat = basis;
  flat.shape = {basis.Rows(), basis.RowSize()};
  labels = encoder::ClusterLabels(flat, k);
  out.num_classes = *std::max_element(labels.begin(), labels.end()) + 1;
  out.source = absl::StrCat("clustered (k-means on ",
                            embeddings ? "reference-encoder embeddings" : "raw features",
                            ", k=", out.num_classes, ")");
  return out;
}

absl::Status DockImpl::EmbedInSpaces(const Tensor& samples, const Tensor& primary_embeddings,
                                     const std::vector<const ModelRecord*>& models,
                                     std::map<KnowledgeSpace*, Tensor>* space_embeddings) {
  for (const ModelRecord* r : models) {
    KnowledgeSpace* space = SpaceFor(*r);
    if (space == nullptr || space_embeddings->count(space)) continue;
    if (space == knowledge_) {
      (*space_embeddings)[space] = primary_embeddings;
      continue;
    }
    auto embedded = space->Embed(samples);
    if (!embedded.ok()) return embedded.status();
    (*space_embeddings)[space] = *std::move(embedded);
  }
  return absl::OkStatus();
}

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

// After the scored models, the rest in stage-1 order (kept in `unscored`, ids only).
std::vector<const ScoredModel*> RankingOf(const RecommendQuery& query, const Stage1Result& stage1,
                                          const std::vector<ScoredModel>& scored,
                                          std::vector<ScoredModel>* unscored) {
  std::vector<const ScoredModel*> ranking;
  unscored->reserve(stage1.order.size());  // the ranking points into it
  std::unordered_set<std::string> listed;
  for (const ScoredModel& s : scored) {
    ranking.push_back(&s);
    listed.insert(s.id);
  }
  for (const std::string& id : stage1.order) {
    // Without all_versions the versions of a name fold into one entry below, so the whole
    // stage-1 order is kept (ids only) for top_k names to remain.
    if (static_cast<int>(ranking.size()) >= query.top_k && query.all_versions) break;
    if (listed.count(id)) continue;
    ScoredModel s;
    s.id = id;
    unscored->push_back(std::move(s));
    ranking.push_back(&unscored->back());
  }
  return ranking;
}

// "; outcome prior +0.12 (trained version 3, ...; from its outcomes on 2 similar reported tasks)".
std::string OutcomePriorText(const encoder::OutcomeRanker::PriorSources& used, double prior,
                             const LearningLoop::Serving& serving) {
  std::string from;
  if (used.reported > 0) {
    from = absl::StrFormat("from its outcomes on %d similar reported task%s", used.reported,
                           used.reported == 1 ? "" : "s");
  }
  if (used.weak > 0) {
    absl::StrAppend(&from, from.empty() ? "from" : " and", absl::StrFormat(
        " its stage-2 standing in %d similar recommendation%s", used.weak,
        used.weak == 1 ? "" : "s"));
  }
  if (from.empty()) {
    from = "no outcomes on similar tasks: predicted from its width and class count";
  }
  return absl::StrFormat(
      "; outcome prior %+.2f (trained version %d, weight %.2f in stage 1, %.2f in stage 2; %s)",
      prior, serving.version, serving.ranker->params().weight,
      serving.ranker->params().stage2_weight, from);
}

// What stage 1 says of a model: its proxy rank, knowledge-vector similarity and outcome prior
// (recorded in `rec` when a trained version serves).
std::string Stage1Text(const Stage1Result& stage1, const std::string& id,
                       const LearningLoop::Serving& serving, Recommendation* rec) {
  std::string stage1_text;
  if (rec->has_stage1_score) {
    stage1_text = absl::StrFormat("stage-1 proxy rank %d of %d", stage1.rank.at(id),
                                  static_cast<int>(stage1.proxy_order.size()));
  } else {
    stage1_text = "no stage-1 proxy";
  }
  if (stage1.similarity.count(id)) {
    absl::StrAppend(&stage1_text,
                    absl::StrFormat(", knowledge-vector similarity %.3f", rec->similarity));
  }
  if (serving.ranker) {
    rec->has_prior = true;
    rec->prior = stage1.prior.at(id);
    absl::StrAppend(&stage1_text,
                    OutcomePriorText(stage1.prior_sources.at(id), rec->prior, serving));
  }
  return stage1_text;
}

// The reason of a model scored in stage 2 (and its layers' scores in `rec`).
std::string ScoredReason(const ScoredModel& s, const Stage2Result& stage2, int num_classes,
                         int num_scored, const std::string& stage1_text, Recommendation* rec) {
  const ScoredView& best = s.views[s.best];
  std::string layer_text;
  if (best.layer >= 0) {
    rec->layer = rec->model.layers[best.layer].name;
    for (const ScoredView& v : s.views) {
      rec->layer_scores.push_back({rec->model.layers[v.layer].name,
                                   rec->model.layers[v.layer].dim, v.stage2});
    }
    layer_text = absl::StrCat("; the best of its ", s.views.size(), " scored layers (",
                              LayerScoresText(rec->layer_scores), ")");
  }
  if (stage2.scoring.members.size() > 1) {
    return absl::StrFormat("%s on %s over %d query classes (stage-2 rank %d of %d)%s; %s",
                           stage2.member_text.at(s.id), best.features_note, num_classes,
                           rec->rank, num_scored, layer_text, stage1_text);
  }
  return absl::StrFormat("%s %.4g on %s over %d query classes (stage-2 rank %d of %d)%s; %s",
                         MetricLabel(stage2.scoring.metric), s.stage2, best.features_note,
                         num_classes, rec->rank, num_scored, layer_text, stage1_text);
}

// The answer's entries: the first top_k of the ranking (one per model name unless the query asks
// for every version), each with its scores and reason.
void AssembleResults(const RecommendQuery& query, const PreparedQuery& prepared,
                     const Stage1Result& stage1, const Stage2Result& stage2,
                     size_t num_candidates, const LearningLoop::Serving& serving,
                     RecommendResult* result) {
  std::vector<ScoredModel> unscored;
  const std::vector<const ScoredModel*> ranking =
      RankingOf(query, stage1, stage2.scored, &unscored);
  // One entry per model name, its best-ranked version, unless the query asks for every version.
  std::unordered_map<std::string, int> versions_of_name;
  for (const ScoredModel* s : ranking) ++versions_of_name[prepared.Model(s->id).spec.name];
  std::unordered_set<std::string> names_listed;
  for (size_t i = 0; i < ranking.size() && static_cast<int>(result->results.size()) < query.top_k;
       ++i) {
    const ScoredModel& s = *ranking[i];
    const ModelRecord& model = prepared.Model(s.id);
    if (!query.all_versions && !names_listed.insert(model.spec.name).second) continue;
    Recommendation rec;
    rec.rank = static_cast<int>(result->results.size()) + 1;
    rec.model = model;
    auto sim = stage1.similarity.find(s.id);
    rec.similarity = sim != stage1.similarity.end() ? sim->second.first : 0;
    auto proxy = stage1.proxy_score.find(s.id);
    rec.has_stage1_score = proxy != stage1.proxy_score.end();
    rec.stage1_score = rec.has_stage1_score ? proxy->second : 0;
    rec.stage1_rank = query.brute_force ? 0 : stage1.rank.at(s.id);
    rec.scored = s.scored;
    rec.stage2_score = s.stage2;
    const std::string stage1_text = Stage1Text(stage1, s.id, serving, &rec);
    if (query.metric == Metric::kNone) {
      rec.score = rec.has_stage1_score ? stage1.value.at(s.id) : rec.similarity;
      rec.reason = absl::StrCat("ranked by stage 1 (", MemberNames(ProxyMetrics()),
                                " on probe proxies): ", stage1_text, "; stage 2 off");
    } else if (s.scored) {
      rec.score = s.final_score;
      rec.reason = ScoredReason(s, stage2, prepared.num_classes, result->num_scored, stage1_text,
                                &rec);
    } else {
      rec.score = 0;
      rec.reason = absl::StrCat("not scored in stage 2 (outside the ", num_candidates,
                                " candidates); listed by ", stage1_text);
    }
    if (const int versions = versions_of_name[model.spec.name]; versions > 1) {
      absl::StrAppend(
          &rec.reason,
          query.all_versions
              ? absl::StrFormat("; version %s of %d listed", model.spec.version, versions)
              : absl::StrFormat("; version %s, the best ranked of its %d versions",
                                model.spec.version, versions));
    }
    result->results.push_back(std::move(rec));
  }
}

}  // namespace

absl::StatusOr<RecommendResult> DockImpl::Recommend(const RecommendQuery& query) {
  absl::Time start = absl::Now();
  if (absl::Status valid = ValidateRecommendQuery(query); !valid.ok()) return valid;

  // One trained version ranks the whole answer, even if another is switched in meanwhile.
  const LearningLoop::Serving serving = learning_->Current();
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
  const std::vector<std::string> candidates =
      ChooseCandidates(query, *prepared, *stage1, dataset_hash, &result);
  auto stage2 = RunStage2(query, *prepared, *stage1, candidates, dataset_hash, serving, &result);
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

absl::StatusOr<PreparedQuery> DockImpl::PrepareQuery(const RecommendQuery& query,
                                                     RecommendResult* result) {
  const Tensor& samples = query.dataset.samples;
  PreparedQuery prepared;
  prepared.encode_start = absl::Now();
  // The query's own space (its channels and size), if any, embeds it for clustering.
  KnowledgeSpace* own_space = nullptr;
  if (query.task == TaskKind::kTextClassification ||
      query.task == TaskKind::kAudioClassification) {
    // A text or audio query is embedded in the space of its kind only: no image space is its own.
    own_space = spaces_->ForTask(query.task, samples.SampleShape());
    if (own_space != nullptr) {
      auto embedded = own_space->Embed(query.dataset);
      if (!embedded.ok()) return embedded.status();
      prepared.embeddings = *embedded;
      prepared.space_embeddings[own_space] = *std::move(embedded);
    }
  }
  if (query.task == TaskKind::kImageClassification) {
    auto embedded = EmbedWithReference(samples);
    if (!embedded.ok()) return embedded.status();
    prepared.embeddings = std::move(*embedded);
    own_space = spaces_->For(samples.SampleShape());
    if (own_space != nullptr && own_space != knowledge_) {
      auto own = own_space->Embed(samples);
      if (!own.ok()) return own.status();
      prepared.space_embeddings[own_space] = std::move(*own);
    }
  }
  std::optional<Tensor> cluster_basis = prepared.embeddings;
  if (prepared.space_embeddings.count(own_space)) cluster_basis = prepared.space_embeddings[own_space];
  auto labels = PrepareLabels(query.dataset, cluster_basis);
  if (!labels.ok()) return labels.status();
  prepared.labels = std::move(labels->labels);
  prepared.num_classes = labels->num_classes;
  result->label_source = labels->source;

  // Compatible models, and the spaces they are in.
  auto all = store_->ListAll();
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

void DockImpl::RecordWeakOutcomes(const RecommendQuery& query, const PreparedQuery& prepared,
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
  auto stored = RecordStage2Standings(store_.get(), record, standings);
  if (stored.ok()) {
    result->recorded_outcomes = *stored;
  } else {
    // The answer does not depend on the record: log, do not fail the call.
    spdlog::warn("recommend: could not record stage-2 standings: {}",
                 std::string(stored.status().message()));
  }
}

}  // namespace modeldock::dock
