// The recommend pipeline (the Recommender part, dock/recommender.h).
//   Stage 1 (no model runs): the query's samples through the reference encoder E ->
//     (a) Know2Vec query vector -> FAISS inner-product similarity to every model's knowledge
//         vector (sublinear; on docks above DockOptions::proxy_prefilter models it cuts the dock
//         down first);
//     (b) probe proxies: each query sample's nearest probe samples in E's space; each model's
//         stored features and class outputs there stand in for its outputs on the query;
//         LogME and shrinkage H-score on the features and NCE on the class outputs, rank-fused,
//         order the models (O(models), a few ms for 100 models).
//   Mode: the latency budget decides whether stage 2 scores every compatible model or the
//     stage-1 candidates that fit (estimated from each model's measured run or probing time).
//   Stage 2 (dock/stage2.cc): each candidate runs black-box on the query samples; the metric
//     (default: weighted rank fusion of LogME and shrinkage H-score on its features' top
//     principal components) scores it against the query labels.
// This file holds the metrics' names, the cache keys and the answer's assembly; the pipeline and
// the query's preparation are in dock/recommender.cc, stage 1 in dock/stage1.cc, stage 2 in
// dock/stage2.cc, and recommend_internal.h the state the stages pass each other.
#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "dock/recommend_internal.h"
#include "scoring/metrics.h"

namespace modeldock::dock {

// The default fusion (stage 2): LogME and shrinkage H-score on the features' top principal
// components (those they vary in), rank-fused with weights 1 and 0.5. Chosen over six zoos of
// four input kinds (grey zoo1, zoo2 and its rotation suite, colour, text, speech) as the fusion
// with the smallest worst-case loss to each zoo's best single metric, among 211 fusions of five
// candidate members (also GBC, NCE, LEEP) with weights 0, 0.5 and 1
// (bench/select/member_study.py, docs/BENCHMARKS.md 2q): 0.045 at worst, against 0.064 for the
// previous LogME + shrinkage H + NCE and 0.100 for LogME + shrinkage H at equal weights.
const std::vector<scoring::Metric>& FusionMembers() {
  static const std::vector<scoring::Metric> kMembers = {scoring::Metric::kLogMe,
                                                         scoring::Metric::kShrinkageHScore};
  return kMembers;
}
const std::vector<double>& FusionWeights() {
  static const std::vector<double> kWeights = {1.0, 0.5};
  return kWeights;
}

// The stage-1 proxy: LogME and shrinkage H-score on the probe features, NCE on the probe class
// outputs, equal weights (bench/select/stage1_proxy.py: NCE lifted the colour zoo 0.274 -> 0.304
// and grey zoo A 0.706 -> 0.713). Not re-chosen with the stage-2 fusion.
const std::vector<scoring::Metric>& ProxyMetrics() {
  static const std::vector<scoring::Metric> kMetrics = {
      scoring::Metric::kLogMe, scoring::Metric::kShrinkageHScore, scoring::Metric::kNce};
  return kMetrics;
}

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

std::vector<double> MemberWeights(Metric metric) {
  if (metric == Metric::kFusion) return FusionWeights();
  return std::vector<double>(MembersOf(metric).size(), 1.0);
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

double LoadMillisEstimate(const ModelRecord& record) {
  return 10.0 + static_cast<double>(record.size_bytes) / 50e3;
}

bool Cancelled(const RecommendQuery& query) {
  return query.is_cancelled && query.is_cancelled();
}

std::string SubsetHash(const std::string& dataset_hash, const std::vector<int64_t>& rows) {
  Sha256 h;
  h.Update(dataset_hash);
  h.Update(rows.data(), rows.size() * sizeof(int64_t));
  return absl::StrCat("rows-", h.HexDigest());
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

}  // namespace

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

}  // namespace modeldock::dock
