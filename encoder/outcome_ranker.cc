// Serving side of the outcome ranker: plain C++ (no torch), so that a recommendation pays
// nothing for the training machinery. The same formulas in torch are in
// outcome_ranker_training.cc, where they are fitted; the weights, the target and the validation
// are then chosen and measured with this class (Validate, ViewsOf), so a version is judged by
// the formula that serves it. No test compares the two formulas value for value.
#include "encoder/outcome_ranker.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace modeldock::encoder {

std::vector<double> ModelFacts(int64_t feature_width, int64_t num_classes) {
  return {1.0, std::log2(static_cast<double>(std::max<int64_t>(feature_width, 1))) / 8.0,
          std::log2(static_cast<double>(std::max<int64_t>(num_classes, 1))) / 8.0};
}

const char* PriorTargetName(bool calibrated_target) {
  return calibrated_target ? "stage1-calibration" : "facts";
}

std::vector<double> Standardise(const std::vector<double>& values) {
  std::vector<double> out(values.size(), 0.0);
  if (values.empty()) return out;
  double mean = std::accumulate(values.begin(), values.end(), 0.0) / values.size();
  double var = 0;
  for (double v : values) var += (v - mean) * (v - mean);
  double sd = std::sqrt(var / values.size());
  if (!(sd > 1e-12)) return out;
  for (size_t i = 0; i < values.size(); ++i) out[i] = (values[i] - mean) / sd;
  return out;
}

std::map<std::string, double> StandardiseOutcomes(const std::map<std::string, double>& accuracy) {
  if (accuracy.size() < 2) return {};
  std::vector<double> values;
  for (const auto& [id, a] : accuracy) values.push_back(a);
  std::vector<double> z = Standardise(values);
  if (std::all_of(z.begin(), z.end(), [](double v) { return v == 0.0; })) return {};
  std::map<std::string, double> out;
  size_t i = 0;
  for (const auto& [id, a] : accuracy) out[id] = z[i++];
  return out;
}

double TaskSimilarity(const std::map<std::string, double>& a,
                      const std::map<std::string, double>& b) {
  std::vector<double> x, y;
  for (const auto& [id, v] : a) {
    auto it = b.find(id);
    if (it == b.end()) continue;
    x.push_back(v);
    y.push_back(it->second);
  }
  if (x.size() < 3) return 0;
  std::vector<double> zx = Standardise(x), zy = Standardise(y);
  double r = 0;
  for (size_t i = 0; i < x.size(); ++i) r += zx[i] * zy[i];
  r /= static_cast<double>(x.size());
  return std::max(0.0, r);
}

std::vector<double> EmbeddingCentre(const std::vector<RecordedTask>& tasks) {
  std::vector<double> centre;
  int n = 0;
  for (const RecordedTask& t : tasks) {
    if (t.embedding.empty()) continue;
    if (centre.empty()) centre.assign(t.embedding.size(), 0.0);
    if (t.embedding.size() != centre.size()) continue;
    for (size_t d = 0; d < centre.size(); ++d) centre[d] += t.embedding[d];
    ++n;
  }
  for (double& c : centre) c /= std::max(n, 1);
  return centre;
}

double QuerySimilarity(const std::map<std::string, double>& stage1_a,
                       const std::vector<double>& embedding_a,
                       const std::map<std::string, double>& stage1_b,
                       const std::vector<double>& embedding_b, const std::vector<double>& centre) {
  if (centre.empty() || embedding_a.size() != centre.size() ||
      embedding_b.size() != centre.size()) {
    return TaskSimilarity(stage1_a, stage1_b);
  }
  double ab = 0, aa = 0, bb = 0;
  for (size_t d = 0; d < centre.size(); ++d) {
    const double x = embedding_a[d] - centre[d], y = embedding_b[d] - centre[d];
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  if (!(aa > 0 && bb > 0)) return 0;
  return std::max(0.0, ab / std::sqrt(aa * bb));
}

namespace {

// Below this a weight sum or a spread counts as none (also in the torch twin of the formula).
constexpr double kCalibrationEpsilon = 1e-12;

// scipy's _weightedrankedtau with rank=None: items ranked by decreasing x (ties: decreasing y);
// a pair weighs 1/(r_i+1) + 1/(r_j+1).
double WeightedRankedTau(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (x[a] != x[b]) return x[a] > x[b];
    return y[a] > y[b];
  });
  std::vector<double> weight(n);
  for (size_t r = 0; r < n; ++r) weight[order[r]] = 1.0 / (static_cast<double>(r) + 1.0);
  double num = 0, tx = 0, ty = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      const double w = weight[i] + weight[j];
      const int dx = (x[i] > x[j]) - (x[i] < x[j]);
      const int dy = (y[i] > y[j]) - (y[i] < y[j]);
      num += w * dx * dy;
      if (dx) tx += w;
      if (dy) ty += w;
    }
  }
  if (tx <= 0 || ty <= 0) return 0;
  return num / std::sqrt(tx * ty);
}

}  // namespace

double WeightedTau(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size() || x.size() < 2) return 0;
  return 0.5 * (WeightedRankedTau(x, y) + WeightedRankedTau(y, x));
}

namespace {

std::vector<float> Project(const std::vector<float>& weights, int dim, const std::vector<float>& v) {
  std::vector<float> out(dim, 0.0f);
  if (static_cast<int>(v.size()) != dim) return out;
  for (int i = 0; i < dim; ++i) {
    const float x = v[i];
    if (x == 0.0f) continue;
    const float* row = &weights[static_cast<size_t>(i) * dim];
    for (int j = 0; j < dim; ++j) out[j] += x * row[j];
  }
  double norm = 0;
  for (float x : out) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (float& x : out) x = static_cast<float>(x / norm);
  }
  return out;
}

}  // namespace

std::vector<float> VectorProjection::ProjectModel(const std::vector<float>& v) const {
  return empty() ? v : Project(model_weights, dim, v);
}

std::vector<float> VectorProjection::ProjectQuery(const std::vector<float>& v) const {
  return empty() ? v : Project(query_weights, dim, v);
}

OutcomeRanker::OutcomeRanker(RankerParams params, std::vector<RecordedTask> tasks,
                             std::map<std::string, std::vector<double>> facts,
                             VectorProjection projection)
    : params_(std::move(params)),
      projection_(std::move(projection)),
      tasks_(std::move(tasks)),
      facts_(std::move(facts)) {
  for (const RecordedTask& t : tasks_) standardised_.push_back(StandardiseOutcomes(t.accuracy));
  centre_ = EmbeddingCentre(tasks_);
}

namespace {

// A line y = slope * x + intercept fitted by weighted least squares; flat (slope 0) when the x
// carry no spread, and 0 everywhere when no weight.
struct Line {
  double slope = 0, intercept = 0;
};
Line WeightedLine(const std::vector<double>& x, const std::vector<double>& y,
                  const std::vector<double>& w) {
  double sw = 0, sx = 0, sy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sw += w[i];
    sx += w[i] * x[i];
    sy += w[i] * y[i];
  }
  Line line;
  if (!(sw > kCalibrationEpsilon)) return line;
  const double mx = sx / sw, my = sy / sw;
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxx += w[i] * (x[i] - mx) * (x[i] - mx);
    sxy += w[i] * (x[i] - mx) * (y[i] - my);
  }
  line.slope = sxx > kCalibrationEpsilon ? sxy / sxx : 0.0;
  line.intercept = my - line.slope * mx;
  return line;
}

}  // namespace

std::vector<double> OutcomeRanker::Priors(const std::vector<std::string>& model_ids,
                                          const std::map<std::string, double>& stage1,
                                          const std::vector<double>& embedding,
                                          std::vector<PriorSources>* sources,
                                          const std::vector<std::vector<double>>* current_facts) const {
  std::vector<double> task_weight(tasks_.size(), 0.0);
  for (size_t t = 0; t < tasks_.size(); ++t) {
    if (standardised_[t].empty()) continue;
    const double sim =
        QuerySimilarity(stage1, embedding, tasks_[t].stage1, tasks_[t].embedding, centre_);
    task_weight[t] = sim > 0 ? std::pow(sim, params_.sharpness) : 0.0;
    if (tasks_[t].weak) task_weight[t] *= params_.weak_weight;
  }
  // A model's outcome evidence for this query: sum_t w_qt z_t(m), sum_t w_qt, and which tasks.
  struct Evidence {
    double sum = 0, weight = 0;
    PriorSources used;
  };
  auto evidence_of = [&](const std::string& id) {
    Evidence e;
    for (size_t t = 0; t < tasks_.size(); ++t) {
      if (task_weight[t] <= 0) continue;
      auto z = standardised_[t].find(id);
      if (z == standardised_[t].end()) continue;
      e.sum += task_weight[t] * z->second;
      e.weight += task_weight[t];
      ++(tasks_[t].weak ? e.used.weak : e.used.reported);
    }
    return e;
  };
  // The calibration line over the query's stage-1 models (independent of which ids are asked);
  // their evidence is kept for the loop below, which asks for (nearly) the same models.
  std::map<std::string, double> stage1_z;
  std::map<std::string, Evidence> stage1_evidence;
  Line calibration;
  if (params_.calibrated_target && !stage1.empty()) {
    std::vector<double> values;
    for (const auto& [id, v] : stage1) values.push_back(v);
    const std::vector<double> z = Standardise(values);
    std::vector<double> x, y, w;
    size_t i = 0;
    for (const auto& [id, v] : stage1) {
      stage1_z[id] = z[i++];
      const Evidence& e = stage1_evidence[id] = evidence_of(id);
      if (e.weight <= 0) continue;
      x.push_back(stage1_z[id]);
      y.push_back(e.sum / e.weight);
      w.push_back(e.weight / (e.weight + params_.shrinkage));
    }
    calibration = WeightedLine(x, y, w);
  }
  std::vector<double> priors(model_ids.size(), 0.0);
  if (sources) sources->assign(model_ids.size(), PriorSources{});
  for (size_t i = 0; i < model_ids.size(); ++i) {
    double target = 0;
    if (params_.calibrated_target) {
      // Models without a stage-1 score get 0 (nothing to read the line at).
      if (auto z = stage1_z.find(model_ids[i]); z != stage1_z.end()) {
        target = calibration.slope * z->second + calibration.intercept;
      }
    } else {
      const std::vector<double>* facts = nullptr;
      if (auto frozen = facts_.find(model_ids[i]); frozen != facts_.end()) {
        facts = &frozen->second;
      } else if (current_facts && i < current_facts->size()) {
        facts = &(*current_facts)[i];
      }
      if (facts) {
        for (size_t f = 0; f < facts->size() && f < params_.fact_weights.size(); ++f) {
          target += (*facts)[f] * params_.fact_weights[f];
        }
      }
    }
    auto cached = stage1_evidence.find(model_ids[i]);
    const Evidence e = cached != stage1_evidence.end() ? cached->second : evidence_of(model_ids[i]);
    if (sources) (*sources)[i] = e.used;
    const double num = params_.shrinkage * target + e.sum, den = params_.shrinkage + e.weight;
    priors[i] = den > 0 ? num / den : 0.0;
  }
  return priors;
}

int OutcomeRanker::num_weak_tasks() const {
  return static_cast<int>(
      std::count_if(tasks_.begin(), tasks_.end(), [](const RecordedTask& t) { return t.weak; }));
}

namespace {

std::vector<double> StandardisedPlus(const std::vector<double>& base, double weight,
                                     const std::vector<double>& priors) {
  std::vector<double> out = Standardise(base);
  for (size_t i = 0; i < out.size() && i < priors.size(); ++i) out[i] += weight * priors[i];
  return out;
}

}  // namespace

std::vector<double> OutcomeRanker::Combine(const std::vector<double>& base,
                                           const std::vector<double>& priors) const {
  return StandardisedPlus(base, params_.weight, priors);
}

std::vector<double> OutcomeRanker::CombineStage2(const std::vector<double>& stage2,
                                                 const std::vector<double>& priors) const {
  return StandardisedPlus(stage2, params_.stage2_weight, priors);
}

std::string OutcomeRanker::ToJson() const {
  nlohmann::json j;
  j["format"] = "modeldock-outcome-ranker-1";
  j["params"] = {{"weight", params_.weight},
                 {"stage2_weight", params_.stage2_weight},
                 {"shrinkage", params_.shrinkage},
                 {"sharpness", params_.sharpness},
                 {"weak_weight", params_.weak_weight},
                 {"fact_weights", params_.fact_weights}};
  if (params_.calibrated_target) j["params"]["target"] = PriorTargetName(true);
  nlohmann::json tasks = nlohmann::json::array();
  for (const RecordedTask& t : tasks_) {
    nlohmann::json task = {{"query_id", t.query_id}, {"stage1", t.stage1}, {"accuracy", t.accuracy}};
    if (t.weak) task["weak"] = true;
    if (!t.embedding.empty()) task["embedding"] = t.embedding;
    tasks.push_back(std::move(task));
  }
  j["tasks"] = std::move(tasks);
  j["facts"] = facts_;
  if (!projection_.empty()) {
    j["projection"] = {{"space", projection_.space},
                       {"dim", projection_.dim},
                       {"model_weights", projection_.model_weights},
                       {"query_weights", projection_.query_weights}};
  }
  return j.dump();
}

absl::StatusOr<OutcomeRanker> OutcomeRanker::FromJson(const std::string& text) {
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    if (j.value("format", "") != "modeldock-outcome-ranker-1") {
      return absl::DataLossError("not a modeldock outcome ranker (unknown format)");
    }
    RankerParams p;
    const nlohmann::json& params = j.at("params");
    p.weight = params.at("weight").get<double>();
    // Versions before per-stage weights used one weight for both stages.
    p.stage2_weight = params.value("stage2_weight", p.weight);
    p.shrinkage = params.at("shrinkage").get<double>();
    p.sharpness = params.at("sharpness").get<double>();
    p.weak_weight = params.value("weak_weight", 0.0);  // versions before weak tasks: none
    p.fact_weights = params.at("fact_weights").get<std::vector<double>>();
    // Versions before the calibrated target shrink toward the facts prediction alone.
    const std::string target = params.value("target", PriorTargetName(false));
    if (target != PriorTargetName(false) && target != PriorTargetName(true)) {
      return absl::DataLossError("outcome ranker: unknown prior target '" + target + "'");
    }
    p.calibrated_target = target == PriorTargetName(true);
    std::vector<RecordedTask> tasks;
    for (const nlohmann::json& t : j.at("tasks")) {
      RecordedTask task;
      task.query_id = t.at("query_id").get<std::string>();
      task.stage1 = t.at("stage1").get<std::map<std::string, double>>();
      task.accuracy = t.at("accuracy").get<std::map<std::string, double>>();
      task.weak = t.value("weak", false);
      // Versions trained before embeddings were kept compare stage-1 scores only.
      task.embedding = t.value("embedding", std::vector<double>{});
      tasks.push_back(std::move(task));
    }
    auto facts = j.at("facts").get<std::map<std::string, std::vector<double>>>();
    VectorProjection projection;
    if (j.contains("projection")) {
      const nlohmann::json& pj = j.at("projection");
      projection.space = pj.value("space", "");
      projection.dim = pj.at("dim").get<int>();
      projection.model_weights = pj.at("model_weights").get<std::vector<float>>();
      projection.query_weights = pj.at("query_weights").get<std::vector<float>>();
      const size_t expected = static_cast<size_t>(projection.dim) * projection.dim;
      if (projection.dim <= 0 || projection.model_weights.size() != expected ||
          projection.query_weights.size() != expected) {
        return absl::DataLossError("outcome ranker: projection weights do not match its dim");
      }
    }
    return OutcomeRanker(std::move(p), std::move(tasks), std::move(facts), std::move(projection));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("outcome ranker: ", e.what()));
  }
}

}  // namespace modeldock::encoder
