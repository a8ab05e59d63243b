// Stage 1 of the recommend pipeline (dock/recommend.cc has the whole pipeline): no model runs.
//   (a) The query's Know2Vec vector against every model's knowledge vector in the FAISS index of
//       each space that holds compatible models (sublinear);
//   (b) probe proxies: each query sample's nearest probes in E's space stand in for it; each
//       model's stored features and class outputs there are scored by the fusion's members and
//       rank-fused (O(models));
//   then the serving trained version's outcome prior, and the stage-1 order of every compatible
//   model.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dock/recommend_internal.h"
#include "scoring/fusion.h"
#include "scoring/metrics.h"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

// The serving trained version adds each model's outcome prior (0 for untrained) to its proxy
// score.
void AddStage1Priors(const encoder::OutcomeRanker& ranker, const PreparedQuery& prepared,
                     Stage1Result* stage1) {
  const std::vector<ModelRecord>& compatible = prepared.compatible;
  // The query as the ranker compares it with recorded ones (image queries: E's space).
  std::vector<double> embedding;
  if (prepared.embeddings) {
    embedding = MeanPrototype(
        ClassPrototypes(*prepared.embeddings, prepared.labels, prepared.num_classes));
  }
  std::vector<std::string> ids;
  std::vector<std::vector<double>> facts;
  for (const ModelRecord& r : compatible) {
    ids.push_back(r.id);
    facts.push_back(FactsOf(r));
  }
  std::vector<encoder::OutcomeRanker::PriorSources> used;
  std::vector<double> priors = ranker.Priors(
      ids, std::map<std::string, double>(stage1->proxy_score.begin(), stage1->proxy_score.end()),
      embedding, &used, &facts);
  for (size_t i = 0; i < ids.size(); ++i) {
    stage1->prior[ids[i]] = priors[i];
    stage1->prior_sources[ids[i]] = used[i];
  }
  std::vector<double> base, model_prior;
  for (const std::string& id : stage1->proxy_order) {
    base.push_back(stage1->proxy_score[id]);
    model_prior.push_back(stage1->prior[id]);
  }
  std::vector<double> combined = ranker.Combine(base, model_prior);
  for (size_t i = 0; i < stage1->proxy_order.size(); ++i) {
    stage1->value[stage1->proxy_order[i]] = combined[i];
  }
}

// Stage-1 order: proxy order, then models with only a knowledge vector, then the rest.
void OrderStage1(const std::vector<ModelRecord>& compatible, Stage1Result* stage1) {
  stage1->order = stage1->proxy_order;
  std::unordered_set<std::string> seen(stage1->order.begin(), stage1->order.end());
  for (const std::string& id : stage1->similarity_order) {
    if (seen.insert(id).second) stage1->order.push_back(id);
  }
  for (const ModelRecord& r : compatible) {
    if (seen.insert(r.id).second) stage1->order.push_back(r.id);
  }
  for (size_t i = 0; i < stage1->order.size(); ++i) {
    stage1->rank[stage1->order[i]] = static_cast<int>(i) + 1;
  }
  stage1->has_stage1 = !stage1->proxy_order.empty() || !stage1->similarity_order.empty();
}

// One model's proxy metric values (ProxyMetrics() order) from its features at the query's
// nearest probes, and its class outputs there (none: its logit members are NaN, not measured).
std::vector<double> ProxyRow(const ModelRecord& record, const Tensor& proxy,
                             const std::optional<Tensor>& proxy_classes,
                             const std::vector<int32_t>& labels, int num_classes,
                             std::vector<std::string>* warnings) {
  scoring::ScoreInput input;
  input.features = &proxy;
  input.logits = proxy_classes ? &*proxy_classes : nullptr;
  input.labels = &labels;
  input.num_classes = num_classes;
  std::vector<double> row;
  for (scoring::Metric metric : ProxyMetrics()) {
    if (scoring::UsesLogits(metric) && !proxy_classes) {
      row.push_back(NAN);  // not measured: ranked by the feature members
      continue;
    }
    auto value = scoring::Score(metric, input);
    if (!value.ok()) {
      // Ranked last on that metric (the fusion's other members still count), and said so.
      warnings->push_back(absl::StrCat("stage 1: proxy ", std::string(scoring::MetricName(metric)),
                                       " of ", record.spec.name, " failed (",
                                       value.status().ToString(), "); ranked last on it"));
    }
    row.push_back(value.ok() && std::isfinite(*value) ? *value : -HUGE_VAL);
  }
  return row;
}

}  // namespace

absl::StatusOr<std::unordered_map<std::string, double>> Recommender::ProxyScores(
    const std::map<KnowledgeSpace*, Tensor>& space_embeddings,
    const std::vector<int32_t>& labels, int num_classes,
    const std::vector<const ModelRecord*>& models, std::vector<std::string>* warnings) {
  // Each space's models get the proxy metrics from the query's embeddings in that space; the
  // values of all spaces are then rank-fused together. They are on one scale: the same metrics
  // of the same query labels over the same number of proxy samples, on features compressed to
  // the same width (ProxyOptions::stored_dim, less the directions a model's features do not vary
  // in), whatever the space.
  std::map<KnowledgeSpace*, std::vector<const ModelRecord*>> by_space;
  for (const ModelRecord* r : models) {
    if (KnowledgeSpace* space = SpaceFor(*r)) by_space[space].push_back(r);
  }
  std::vector<std::string> ids;
  std::vector<std::vector<double>> per_metric(ProxyMetrics().size());
  for (const auto& [space, members] : by_space) {
    auto embeddings = space_embeddings.find(space);
    if (embeddings == space_embeddings.end()) {
      return absl::InternalError("stage 1: the query was not embedded in every space");
    }
    auto values =
        ProxyValues(*space, embeddings->second, labels, num_classes, members, warnings);
    if (!values.ok()) return values.status();
    for (const ModelRecord* r : members) {
      auto it = values->find(r->id);
      if (it == values->end()) continue;
      ids.push_back(r->id);
      for (size_t m = 0; m < per_metric.size(); ++m) per_metric[m].push_back(it->second[m]);
    }
  }
  std::unordered_map<std::string, double> scores;
  if (ids.empty()) return scores;
  // Equal weights; a NaN (NCE of a feature extractor) leaves that member out for the model.
  const std::vector<double> fused =
      scoring::WeightedRankFusion(per_metric, std::vector<double>(per_metric.size(), 1.0));
  for (size_t i = 0; i < ids.size(); ++i) scores[ids[i]] = fused[i];
  return scores;
}

absl::StatusOr<std::unordered_map<std::string, std::vector<double>>> Recommender::ProxyValues(
    const KnowledgeSpace& space, const Tensor& query_embeddings,
    const std::vector<int32_t>& labels, int num_classes,
    const std::vector<const ModelRecord*>& models, std::vector<std::string>* warnings) {
  std::unordered_map<std::string, std::vector<double>> values;
  // A model probed within a budget has features on a prefix of the probe set only: its proxies
  // come from the nearest probes within that prefix (one neighbour search per prefix length).
  std::map<int64_t, std::pair<int, std::vector<int32_t>>> neighbours_by_rows;
  auto neighbours_within = [&](int64_t rows)
      -> absl::StatusOr<const std::pair<int, std::vector<int32_t>>*> {
    auto it = neighbours_by_rows.find(rows);
    if (it != neighbours_by_rows.end()) return &it->second;
    auto embedded = space.ProbeEmbeddings();
    if (!embedded.ok()) return embedded.status();
    const Tensor& all = **embedded;
    Tensor prefix;
    if (rows < all.Rows()) {
      prefix.shape = {rows, all.RowSize()};
      prefix.values.assign(all.values.begin(), all.values.begin() + rows * all.RowSize());
    }
    const Tensor& within = rows < all.Rows() ? prefix : all;
    const int k = std::min<int>(options_.proxy.neighbours, static_cast<int>(rows));
    auto found = scoring::NearestProbes(query_embeddings, within, k);
    if (!found.ok()) return found.status();
    return &(neighbours_by_rows[rows] = {k, *std::move(found)});
  };
  for (const ModelRecord* record : models) {
    auto features = ProbeFeatures(*record);
    if (!features.ok()) {
      // Probed before proxies existed (re-probed at start-up) or a store error: the model is
      // ordered by its knowledge vector. An error other than "none stored" (a store that is
      // unreachable, a damaged row) is the caller's to know: a warning of the result.
      if (!absl::IsNotFound(features.status())) {
        spdlog::warn("stage 1: no probe features of {} ('{}'): {}", record->id, record->spec.name,
                     features.status().ToString());
        warnings->push_back(absl::StrCat("stage 1: no probe proxies for ", record->spec.name, " (",
                                         features.status().ToString(),
                                         "); ordered by its knowledge vector only"));
      }
      continue;
    }
    auto neighbours = neighbours_within((*features)->Rows());
    if (!neighbours.ok()) return neighbours.status();
    const int k = (*neighbours)->first;
    // Without the stored directions the model's probe features do not vary in (collapsed
    // features: near-zero columns skew LogME and the H-scores, as in stage 2).
    Tensor proxy =
        scoring::DropNullComponents(scoring::GatherProxy(**features, (*neighbours)->second, k));
    // A classifier's class outputs at the same probes (mean probabilities), for NCE.
    std::optional<Tensor> proxy_classes;
    if (record->spec.kind == ModelKind::kClassifier) {
      auto probabilities = ProbeProbabilities(*record);
      if (probabilities.ok() && (*probabilities)->Rows() != (*features)->Rows()) {
        probabilities = absl::DataLossError(
            absl::StrCat("its stored probe outputs have ", (*probabilities)->Rows(),
                         " rows and its probe features ", (*features)->Rows()));
      }
      if (probabilities.ok()) {
        proxy_classes = scoring::GatherProxy(**probabilities, (*neighbours)->second, k);
      } else {
        spdlog::warn("stage 1: no probe outputs of {} ('{}'): {}", record->id, record->spec.name,
                     probabilities.status().ToString());
        warnings->push_back(absl::StrCat("stage 1: no probe class outputs for ",
                                         record->spec.name, " (",
                                         probabilities.status().ToString(),
                                         "); ranked without nce"));
      }
    }
    values[record->id] = ProxyRow(*record, proxy, proxy_classes, labels, num_classes, warnings);
  }
  return values;
}

absl::StatusOr<Stage1Result> Recommender::RunStage1(const PreparedQuery& prepared,
                                                    const LearningLoop::Serving& serving,
                                                    RecommendResult* result) {
  Stage1Result stage1;
  if (absl::Status s = RankByKnowledgeVector(prepared, serving, &stage1, result); !s.ok()) {
    return s;
  }
  if (absl::Status s = RankByProbeProxies(prepared, serving, &stage1, result); !s.ok()) return s;
  OrderStage1(prepared.compatible, &stage1);
  return stage1;
}

absl::Status Recommender::RankByKnowledgeVector(const PreparedQuery& prepared,
                                                const LearningLoop::Serving& serving,
                                                Stage1Result* stage1, RecommendResult* result) {
  // Tabular queries have no embeddings, so no query vector.
  if (!prepared.embeddings) {
    result->timings.encode_query_millis = MillisSince(prepared.encode_start);
    return absl::OkStatus();
  }
  // Per space: the query's vector in it against its index of its compatible models.
  // Similarities of different spaces are cosines in different spaces, so the merged order
  // interleaves the spaces by relative rank (rank / models of the space).
  struct Hit {
    std::string id;
    double score;
    double relative_rank;
  };
  std::vector<Hit> hits_all;
  double search_millis = 0;
  for (const auto& [space, members] : prepared.space_members) {
    auto query_vector = space->EncodeQuery(prepared.space_embeddings.at(space), prepared.labels,
                                           prepared.num_classes);
    if (!query_vector.ok()) return query_vector.status();
    // A trained version's projection (primary space only): its query encoder and its index of
    // projected models.
    const bool projected = space == primary() && serving.index;
    if (projected) *query_vector = serving.ranker->projection().ProjectQuery(*query_vector);
    index::VectorIndex* vectors = projected ? serving.index.get() : space->index();
    absl::Time search_start = absl::Now();
    std::unordered_set<std::string> allowed(members.begin(), members.end());
    auto hits = vectors->Search(*query_vector, static_cast<int>(allowed.size()), &allowed);
    if (!hits.ok()) return hits.status();
    search_millis += MillisSince(search_start);
    for (size_t i = 0; i < hits->size(); ++i) {
      hits_all.push_back({(*hits)[i].id, (*hits)[i].score,
                          (static_cast<double>(i) + 1) / static_cast<double>(hits->size())});
    }
  }
  result->timings.encode_query_millis = MillisSince(prepared.encode_start) - search_millis;
  result->timings.stage1_millis = search_millis;
  std::stable_sort(hits_all.begin(), hits_all.end(), [](const Hit& a, const Hit& b) {
    return a.relative_rank != b.relative_rank ? a.relative_rank < b.relative_rank
                                              : a.score > b.score;
  });
  for (size_t i = 0; i < hits_all.size(); ++i) {
    stage1->similarity[hits_all[i].id] = {hits_all[i].score, static_cast<int>(i) + 1};
    stage1->similarity_order.push_back(hits_all[i].id);
  }
  return absl::OkStatus();
}

absl::Status Recommender::RankByProbeProxies(const PreparedQuery& prepared,
                                             const LearningLoop::Serving& serving,
                                             Stage1Result* stage1, RecommendResult* result) {
  // On a very large dock FAISS first keeps the models most similar by knowledge vector; every
  // model kept costs one small gather and two metrics.
  absl::Time proxy_start = absl::Now();
  std::unordered_set<std::string> kept;
  if (prepared.embeddings) {
    const std::vector<std::string>& similarity_order = stage1->similarity_order;
    const int prefilter = options_.proxy_prefilter;
    if (static_cast<int>(prepared.compatible.size()) > prefilter && !similarity_order.empty()) {
      for (int i = 0; i < prefilter && i < static_cast<int>(similarity_order.size()); ++i) {
        kept.insert(similarity_order[i]);
      }
      result->warnings.push_back(absl::StrCat("large dock: stage-1 proxies computed for the ",
                                              kept.size(),
                                              " models nearest by knowledge vector"));
    }
  }
  std::vector<const ModelRecord*> proxied_models;
  for (const ModelRecord& r : prepared.compatible) {
    if (kept.empty() || kept.count(r.id)) proxied_models.push_back(&r);
  }
  if (prepared.embeddings) {
    auto scores = ProxyScores(prepared.space_embeddings, prepared.labels, prepared.num_classes,
                              proxied_models, &result->warnings);
    if (!scores.ok()) return scores.status();
    stage1->proxy_score = std::move(*scores);
  }
  // In the compatible models' order (ties keep it).
  for (const ModelRecord& r : prepared.compatible) {
    if (stage1->proxy_score.count(r.id)) stage1->proxy_order.push_back(r.id);
  }
  stage1->value.insert(stage1->proxy_score.begin(), stage1->proxy_score.end());
  if (serving.ranker) AddStage1Priors(*serving.ranker, prepared, stage1);
  std::unordered_map<std::string, double>& value = stage1->value;
  std::stable_sort(stage1->proxy_order.begin(), stage1->proxy_order.end(),
                   [&](const std::string& a, const std::string& b) { return value[a] > value[b]; });
  result->timings.stage1_millis += MillisSince(proxy_start);
  return absl::OkStatus();
}

}  // namespace modeldock::dock
