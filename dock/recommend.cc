// The two-stage recommend pipeline.
//   Stage 1: query dataset -> class prototypes through the reference encoder E -> query vector ->
//            FAISS inner-product search among compatible READY models.
//   Stage 2: each candidate runs black-box on the query samples; a transferability metric (TMI by
//            default) scores its features against the query labels; candidates are re-ranked.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "dock/dock_impl.h"
#include "scoring/metrics.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

scoring::Metric ToScoringMetric(Metric metric) {
  switch (metric) {
    case Metric::kLogMe: return scoring::Metric::kLogMe;
    case Metric::kLeep: return scoring::Metric::kLeep;
    case Metric::kNce: return scoring::Metric::kNce;
    case Metric::kHScore: return scoring::Metric::kHScore;
    case Metric::kShrinkageHScore: return scoring::Metric::kShrinkageHScore;
    case Metric::kGbc: return scoring::Metric::kGbc;
    case Metric::kSfda: return scoring::Metric::kSfda;
    default: return scoring::Metric::kTmi;
  }
}

std::string MetricLabel(Metric metric) {
  if (metric == Metric::kNone) return "none";
  return std::string(scoring::MetricName(ToScoringMetric(metric)));
}

std::string DatasetHash(const Tensor& samples) {
  Sha256 h;
  h.Update(ShapeToString(samples.shape));
  h.Update(samples.values.data(), samples.values.size() * sizeof(float));
  return h.HexDigest();
}

double MillisSince(absl::Time start) { return absl::ToDoubleMilliseconds(absl::Now() - start); }

// Models that can run on the query: same task; images of any size and 1 or 3 channels are
// adapted (resize, channel repeat/average); tabular models need the same feature count.
bool Compatible(const ModelRecord& record, const RecommendQuery& query) {
  if (record.state != ModelState::kReady || record.spec.task != query.task) return false;
  std::vector<int64_t> sample_shape = query.dataset.samples.SampleShape();
  if (query.task == TaskKind::kTabularClassification) return record.spec.input_shape == sample_shape;
  return sample_shape.size() == 3 && (sample_shape[0] == 1 || sample_shape[0] == 3);
}

}  // namespace

absl::StatusOr<Tensor> DockImpl::EmbedWithReference(const Tensor& samples) {
  std::lock_guard<std::mutex> lock(reference_mutex_);
  return reference_->Embed(samples);
}

absl::StatusOr<std::shared_ptr<LoadedModel>> DockImpl::LoadModel(const ModelRecord& record) {
  std::string key = absl::StrCat(record.sha256, "|", ShapeToString(record.spec.input_shape));
  if (auto cached = model_cache_.Get(key)) return cached;
  encoder::TorchScriptOptions torch_options;
  torch_options.input_shape = record.spec.input_shape;
  auto model = encoder::LoadTorchScriptModel(blobs_->PathOf(record.sha256), torch_options);
  if (!model.ok()) return model.status();
  auto loaded = std::make_shared<LoadedModel>();
  loaded->model = std::move(*model);
  model_cache_.Put(key, loaded, 1);
  return loaded;
}

absl::StatusOr<std::shared_ptr<const encoder::ModelOutputs>> DockImpl::OutputsOn(
    const ModelRecord& record, const Tensor& samples, const std::string& dataset_hash,
    bool* from_cache) {
  // Keyed by the model's bytes and the dataset's content: the same query sent twice (or by two
  // users) runs each model once.
  std::string key = absl::StrCat(record.sha256, "|", ShapeToString(record.spec.input_shape), "|",
                                 dataset_hash);
  *from_cache = false;
  if (auto cached = output_cache_.Get(key)) {
    *from_cache = true;
    return cached;
  }
  auto loaded = LoadModel(record);
  if (!loaded.ok()) return loaded.status();
  absl::StatusOr<encoder::ModelOutputs> outputs;
  {
    std::lock_guard<std::mutex> lock((*loaded)->mutex);
    outputs = (*loaded)->model->Run(samples, /*want_features=*/record.has_embed);
  }
  if (!outputs.ok()) return outputs.status();
  auto shared = std::make_shared<const encoder::ModelOutputs>(std::move(*outputs));
  int64_t bytes = static_cast<int64_t>(
      (shared->logits.values.size() + shared->features.values.size()) * sizeof(float));
  output_cache_.Put(key, shared, bytes);
  return shared;
}

absl::StatusOr<RecommendResult> DockImpl::Recommend(const RecommendQuery& query) {
  absl::Time start = absl::Now();
  const Dataset& dataset = query.dataset;
  const Tensor& samples = dataset.samples;
  if (!samples.IsConsistent() || samples.shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "query samples must be [N, ...] with matching data; got shape ", ShapeToString(samples.shape),
        " and ", samples.values.size(), " values"));
  }
  if (samples.Rows() < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("a query needs at least 4 samples; got ", samples.Rows()));
  }
  if (query.task == TaskKind::kImageClassification && samples.shape.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image queries are [N, C, H, W]; got ", ShapeToString(samples.shape)));
  }
  if (query.task == TaskKind::kTabularClassification && samples.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tabular queries are [N, F]; got ", ShapeToString(samples.shape)));
  }
  for (float v : samples.values) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("query samples contain NaN or Inf");
  }
  if (query.top_k < 1 || query.top_k > 10000) {
    return absl::InvalidArgumentError("top_k must be in 1..10000");
  }
  if (query.num_candidates < 0) return absl::InvalidArgumentError("num_candidates must be >= 0");

  RecommendResult result;
  result.metric = query.metric;

  // Labels: given, or k-means clusters of E's embeddings (raw features for tabular data).
  std::vector<int32_t> labels = dataset.labels;
  int num_classes = 0;
  std::optional<Tensor> query_embeddings;
  absl::Time encode_start = absl::Now();
  if (query.task == TaskKind::kImageClassification) {
    auto embedded = EmbedWithReference(samples);
    if (!embedded.ok()) return embedded.status();
    query_embeddings = std::move(*embedded);
  }
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
    num_classes = static_cast<int>(compact.size());
    if (num_classes < 2) {
      return absl::InvalidArgumentError(
          "the query's labels name only one class; transferability needs at least 2 classes "
          "(or send the dataset unlabelled to have it clustered)");
    }
    result.label_source = "given";
  } else {
    int k = static_cast<int>(std::clamp<int64_t>(samples.Rows() / 10, 2, 10));
    const Tensor& basis = query_embeddings ? *query_embeddings : samples;
    Tensor flat = basis;
    flat.shape = {basis.Rows(), basis.RowSize()};
    labels = encoder::ClusterLabels(flat, k);
    num_classes = *std::max_element(labels.begin(), labels.end()) + 1;
    result.label_source = absl::StrCat("clustered (k-means on ",
                                       query_embeddings ? "reference-encoder embeddings" : "raw features",
                                       ", k=", num_classes, ")");
  }

  // Compatible models.
  auto all = store_->ListAll();
  if (!all.ok()) return all.status();
  std::vector<ModelRecord> compatible;
  std::unordered_map<std::string, size_t> position;
  for (ModelRecord& r : *all) {
    if (!Compatible(r, query)) continue;
    position[r.id] = compatible.size();
    compatible.push_back(std::move(r));
  }
  result.num_compatible = static_cast<int>(compatible.size());
  if (compatible.empty()) {
    result.timings.total_millis = MillisSince(start);
    result.warnings.push_back(absl::StrCat("no READY ", TaskKindName(query.task), " model can take samples of shape ",
                                           ShapeToString(samples.SampleShape())));
    return result;
  }

  // Stage 1: similarity of every indexed compatible model (exact order needed for reporting
  // stage-1 ranks; the search itself is restricted to the compatible set).
  std::unordered_map<std::string, std::pair<double, int>> stage1;  // id -> (similarity, rank)
  std::vector<std::string> stage1_order;
  if (query_embeddings) {
    auto query_vector = knowledge_->EncodeQuery(*query_embeddings, labels, num_classes);
    if (!query_vector.ok()) return query_vector.status();
    result.timings.encode_query_millis = MillisSince(encode_start);
    absl::Time stage1_start = absl::Now();
    std::unordered_set<std::string> allowed;
    for (const ModelRecord& r : compatible) allowed.insert(r.id);
    auto hits = index_->Search(*query_vector, static_cast<int>(allowed.size()), &allowed);
    if (!hits.ok()) return hits.status();
    result.timings.stage1_millis = MillisSince(stage1_start);
    for (size_t i = 0; i < hits->size(); ++i) {
      stage1[(*hits)[i].id] = {(*hits)[i].score, static_cast<int>(i) + 1};
      stage1_order.push_back((*hits)[i].id);
    }
  } else {
    result.timings.encode_query_millis = MillisSince(encode_start);
  }

  // Candidates for stage 2.
  const int indexed = static_cast<int>(stage1_order.size());
  int num_candidates = query.num_candidates;
  if (num_candidates == 0) num_candidates = options_.default_candidates;
  if (num_candidates == 0) num_candidates = std::max(10, (result.num_compatible + 3) / 4);
  std::vector<std::string> candidates;
  const bool brute_force = query.brute_force || indexed == 0;
  if (brute_force) {
    for (const ModelRecord& r : compatible) candidates.push_back(r.id);
    if (!query.brute_force) {
      result.warnings.push_back("no compatible model has a knowledge vector; scored all compatible models");
    }
  } else {
    for (int i = 0; i < indexed && i < num_candidates; ++i) candidates.push_back(stage1_order[i]);
  }

  struct Scored {
    std::string id;
    double stage2 = 0;
    bool scored = false;
    std::string features_note;
  };
  std::vector<Scored> scored;
  absl::Time stage2_start = absl::Now();
  if (query.metric != Metric::kNone) {
    const std::string dataset_hash = DatasetHash(samples);
    const scoring::Metric metric = ToScoringMetric(query.metric);
    for (const std::string& id : candidates) {
      const ModelRecord& record = compatible[position[id]];
      bool from_cache = false;
      auto outputs = OutputsOn(record, samples, dataset_hash, &from_cache);
      if (from_cache) ++result.num_cached;
      if (!outputs.ok()) {
        result.warnings.push_back(absl::StrCat("skipped ", record.spec.name, ": ", outputs.status().message()));
        continue;
      }
      const bool use_features = !scoring::UsesLogits(metric) && record.has_embed &&
                                !(*outputs)->features.shape.empty();
      scoring::ScoreInput input;
      input.features = use_features ? &(*outputs)->features : &(*outputs)->logits;
      input.logits = &(*outputs)->logits;
      input.labels = &labels;
      input.num_classes = num_classes;
      auto value = scoring::Score(metric, input);
      if (!value.ok() || !std::isfinite(*value)) {
        result.warnings.push_back(absl::StrCat(
            "could not score ", record.spec.name, " with ", MetricLabel(query.metric), ": ",
            value.ok() ? "non-finite score" : std::string(value.status().message())));
        continue;
      }
      Scored s;
      s.id = id;
      s.stage2 = *value;
      s.scored = true;
      s.features_note = scoring::UsesLogits(metric)
                            ? absl::StrCat("its ", record.spec.class_labels.size(), "-class outputs")
                            : use_features ? absl::StrCat(input.features->RowSize(), "-d embed features")
                                           : absl::StrCat(input.features->RowSize(), "-d logits (no embed)");
      scored.push_back(std::move(s));
    }
    std::stable_sort(scored.begin(), scored.end(),
                     [](const Scored& a, const Scored& b) { return a.stage2 > b.stage2; });
  } else {
    for (const std::string& id : candidates) scored.push_back(Scored{id, 0, false, ""});
    std::stable_sort(scored.begin(), scored.end(), [&](const Scored& a, const Scored& b) {
      return stage1[a.id].first > stage1[b.id].first;
    });
  }
  result.timings.stage2_millis = query.metric == Metric::kNone ? 0 : MillisSince(stage2_start);
  result.num_scored = query.metric == Metric::kNone ? 0 : static_cast<int>(scored.size());

  // Past the scored candidates, fill up to top_k with the rest by stage-1 similarity.
  std::unordered_set<std::string> listed;
  for (const Scored& s : scored) listed.insert(s.id);
  std::vector<Scored> ranking = scored;
  for (const std::string& id : stage1_order) {
    if (static_cast<int>(ranking.size()) >= query.top_k) break;
    if (!listed.count(id)) ranking.push_back(Scored{id, 0, false, ""});
  }

  const std::string metric_label = MetricLabel(query.metric);
  for (size_t i = 0; i < ranking.size() && static_cast<int>(i) < query.top_k; ++i) {
    const Scored& s = ranking[i];
    Recommendation rec;
    rec.rank = static_cast<int>(i) + 1;
    rec.model = compatible[position[s.id]];
    auto it = stage1.find(s.id);
    bool has_stage1 = it != stage1.end();
    rec.similarity = has_stage1 ? it->second.first : 0;
    rec.stage1_rank = (has_stage1 && !brute_force) ? it->second.second : 0;
    rec.scored = s.scored;
    rec.stage2_score = s.stage2;
    std::string stage1_text =
        has_stage1 ? absl::StrFormat("stage-1 similarity %.3f (rank %d of %d)", rec.similarity,
                                     it->second.second, indexed)
                   : std::string("no knowledge vector");
    if (query.metric == Metric::kNone) {
      rec.score = rec.similarity;
      rec.reason = absl::StrCat("ranked by ", stage1_text, "; stage 2 off");
    } else if (s.scored) {
      rec.score = s.stage2;
      rec.reason = absl::StrFormat("%s %.4g on %s over %d query classes (stage-2 rank %d of %d); %s",
                                   metric_label, s.stage2, s.features_note, num_classes, rec.rank,
                                   result.num_scored, stage1_text);
    } else {
      rec.score = 0;
      rec.reason = absl::StrCat("not scored in stage 2 (outside the ", candidates.size(),
                                " candidates); listed by ", stage1_text);
    }
    result.results.push_back(std::move(rec));
  }
  result.timings.total_millis = MillisSince(start);
  spdlog::info("recommend: {} samples, {} classes ({}), {} compatible, {} scored with {}, "
               "top '{}', {:.1f} ms", samples.Rows(), num_classes, result.label_source,
               result.num_compatible, result.num_scored, metric_label,
               result.results.empty() ? "-" : result.results[0].model.spec.name,
               result.timings.total_millis);
  return result;
}

}  // namespace modeldock::dock
