// The learning loop: outcome reports in, trained ranker versions out (issue 9).
#include "dock/learning.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "dock/dock_impl.h"
#include "nlohmann/json.hpp"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

constexpr const char* kServingKey = "serving_alignment";

int64_t NowMillis() { return absl::ToUnixMillis(absl::Now()); }

nlohmann::json SummaryJson(const AlignmentVersion& v) {
  return {{"adopted", v.adopted},
          {"num_queries", v.num_queries},
          {"num_records", v.num_records},
          {"folds", v.folds},
          {"validation_untrained", v.validation_untrained},
          {"validation_serving", v.validation_serving},
          {"validation_trained", v.validation_trained},
          {"weight", v.weight},
          {"shrinkage", v.shrinkage},
          {"sharpness", v.sharpness},
          {"stage2_weight", v.stage2_weight},
          {"prior_target", v.prior_target},
          {"weak_queries", v.weak_queries},
          {"weak_weight", v.weak_weight},
          {"vectors_trained", v.vectors_trained},
          {"vectors_validation_untrained", v.vectors_validation_untrained},
          {"vectors_validation_trained", v.vectors_validation_trained},
          {"vectors_reason", v.vectors_reason},
          {"training_seconds", v.training_seconds},
          {"reason", v.reason}};
}

AlignmentVersion VersionFromRow(const AlignmentRow& row) {
  AlignmentVersion v;
  v.version = row.version;
  v.created_unix_ms = row.created_unix_ms;
  try {
    nlohmann::json j = nlohmann::json::parse(row.summary);
    v.adopted = j.value("adopted", false);
    v.num_queries = j.value("num_queries", 0);
    v.num_records = j.value("num_records", int64_t{0});
    v.folds = j.value("folds", 0);
    v.validation_untrained = j.value("validation_untrained", 0.0);
    v.validation_serving = j.value("validation_serving", 0.0);
    v.validation_trained = j.value("validation_trained", 0.0);
    v.weight = j.value("weight", 0.0);
    v.shrinkage = j.value("shrinkage", 0.0);
    v.sharpness = j.value("sharpness", 0.0);
    v.stage2_weight = j.value("stage2_weight", v.weight);
    // Versions from before the choice shrank toward the facts.
    v.prior_target = j.value("prior_target", std::string(encoder::PriorTargetName(false)));
    v.weak_queries = j.value("weak_queries", 0);
    v.weak_weight = j.value("weak_weight", 0.0);
    v.vectors_trained = j.value("vectors_trained", false);
    v.vectors_validation_untrained = j.value("vectors_validation_untrained", 0.0);
    v.vectors_validation_trained = j.value("vectors_validation_trained", 0.0);
    v.vectors_reason = j.value("vectors_reason", "");
    v.training_seconds = j.value("training_seconds", 0.0);
    v.reason = j.value("reason", "");
  } catch (const std::exception& e) {
    v.reason = absl::StrCat("unreadable summary: ", e.what());
  }
  return v;
}

// Training runs beside serving: a lower CPU priority for this thread only (Linux: a thread's
// nice value is its own).
void LowerThreadPriority() {
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 10) != 0) {
    spdlog::debug("training: could not lower its thread priority");
  }
}

// The learning tasks of the recorded outcomes: per query, kind (reported / weak) and model, the
// weighted mean of what was recorded for models still in the dock (`present`). Stage-2 standings
// are never mixed with accuracies: they are on another scale and say less, so a query's
// standings form a task of their own (a weak one). `num_records`: the records used.
std::vector<encoder::RecordedTask> RecordedTasks(const std::vector<OutcomeQueryRow>& queries,
                                                 const std::vector<OutcomeRow>& outcomes,
                                                 const std::set<std::string>& present,
                                                 int64_t* num_records) {
  using Sums = std::map<std::string, std::pair<double, double>>;
  std::map<std::pair<std::string, bool>, Sums> sums;
  for (const OutcomeRow& o : outcomes) {
    if (!present.count(o.model_id)) continue;
    const bool weak = o.source == kStage2Source;
    auto& [weighted, weight] = sums[{o.query_id, weak}][o.model_id];
    weighted += o.weight * o.accuracy;
    weight += o.weight;
    ++*num_records;
  }
  std::vector<encoder::RecordedTask> tasks;
  for (const OutcomeQueryRow& q : queries) {
    for (const bool weak : {false, true}) {
      auto it = sums.find({q.query_id, weak});
      if (it == sums.end()) continue;
      encoder::RecordedTask task;
      task.query_id = q.query_id;
      task.stage1 = q.stage1;
      task.weak = weak;
      // Image queries' prototypes are in the reference encoder's space, comparable across queries.
      if (q.task == static_cast<int>(TaskKind::kImageClassification)) {
        task.embedding = MeanPrototype(q.prototypes);
      }
      for (const auto& [model, sum] : it->second) {
        if (sum.second > 0) task.accuracy[model] = sum.first / sum.second;
      }
      tasks.push_back(std::move(task));
    }
  }
  return tasks;
}

// A trained version's figures (all but its number, time and serving flag): the ranker's
// training report and the vectors' alignment (or why it could not be trained).
AlignmentVersion VersionOf(const encoder::RankerTrainingReport& report,
                           const absl::StatusOr<encoder::AlignmentTrainingReport>& alignment,
                           int64_t num_records) {
  AlignmentVersion v;
  if (alignment.ok()) {
    v.vectors_trained = alignment->adopt;
    v.vectors_validation_untrained = alignment->validation_untrained;
    v.vectors_validation_trained = alignment->validation_trained;
    v.vectors_reason = alignment->reason;
  } else {
    v.vectors_reason = std::string(alignment.status().message());
  }
  v.created_unix_ms = NowMillis();
  v.adopted = report.adopt;
  v.num_queries = report.usable_tasks;
  v.num_records = num_records;
  v.folds = report.folds;
  v.validation_untrained = report.validation_untrained;
  v.validation_serving = report.validation_serving;
  v.validation_trained = report.validation_trained;
  v.weight = report.params.weight;
  v.shrinkage = report.params.shrinkage;
  v.sharpness = report.params.sharpness;
  v.stage2_weight = report.params.stage2_weight;
  v.prior_target = encoder::PriorTargetName(report.params.calibrated_target);
  v.weak_queries = report.weak_tasks;
  v.weak_weight = report.params.weak_weight;
  return v;
}

}  // namespace

const char* OutcomeSourceName(OutcomeSource source) {
  switch (source) {
    case OutcomeSource::kFinetune: return "finetune";
    case OutcomeSource::kImport: return "import";
    case OutcomeSource::kStage2: return kStage2Source;
    case OutcomeSource::kTune: return "tune";
  }
  return "finetune";
}

const char* TrainingStateName(TrainingStatus::State state) {
  switch (state) {
    case TrainingStatus::State::kIdle: return "idle";
    case TrainingStatus::State::kRunning: return "running";
    case TrainingStatus::State::kDone: return "done";
    case TrainingStatus::State::kFailed: return "failed";
  }
  return "unknown";
}

OutcomeQueryRow OutcomeQueryOf(const Dataset& dataset, TaskKind task, const Tensor& basis,
                               const std::vector<int32_t>& labels, int num_classes) {
  const Tensor& samples = dataset.samples;
  OutcomeQueryRow query;
  {
    Sha256 h;
    h.Update(ShapeToString(samples.shape));
    h.Update(samples.values.data(), samples.values.size() * sizeof(float));
    h.Update(dataset.labels.data(), dataset.labels.size() * sizeof(int32_t));
    query.query_id = h.HexDigest();
  }
  query.task = static_cast<int>(task);
  query.num_samples = samples.Rows();
  query.num_classes = num_classes;
  query.created_unix_ms = absl::ToUnixMillis(absl::Now());
  // Class prototypes: the query as the dock may keep it (means, not samples).
  query.prototypes = ClassPrototypes(basis, labels, num_classes);
  return query;
}

Tensor ClassPrototypes(const Tensor& basis, const std::vector<int32_t>& labels, int num_classes) {
  // Each sample's row is scaled to unit length before it is averaged, as the knowledge encoder
  // does when it serves a query (encoder::KnowledgeEncoder::EncodeQuery): training re-encodes a
  // recorded query from these prototypes (DockImpl::TrainAlignment), and gets the vector the
  // query had when it was served only if the rows were averaged the same way.
  const int64_t dim = basis.RowSize();
  std::vector<double> sums(static_cast<size_t>(num_classes * dim), 0.0);
  std::vector<int64_t> counts(num_classes, 0);
  for (int64_t i = 0; i < basis.Rows(); ++i) {
    const int32_t c = labels[i];
    ++counts[c];
    double norm = 0;
    for (int64_t d = 0; d < dim; ++d) {
      const double x = basis.values[i * dim + d];
      norm += x * x;
    }
    norm = std::sqrt(norm);
    const double scale = norm > 0 ? 1.0 / norm : 0.0;  // a zero row stays zero
    for (int64_t d = 0; d < dim; ++d) sums[c * dim + d] += basis.values[i * dim + d] * scale;
  }
  Tensor prototypes;
  prototypes.shape = {num_classes, dim};
  prototypes.values.resize(sums.size());
  for (int c = 0; c < num_classes; ++c) {
    const double n = static_cast<double>(std::max<int64_t>(counts[c], 1));
    for (int64_t d = 0; d < dim; ++d) {
      prototypes.values[c * dim + d] = static_cast<float>(sums[c * dim + d] / n);
    }
  }
  return prototypes;
}

std::vector<double> MeanPrototype(const Tensor& prototypes) {
  const int64_t rows = prototypes.Rows(), dim = prototypes.RowSize();
  if (rows == 0 || dim == 0) return {};
  std::vector<double> mean(static_cast<size_t>(dim), 0.0);
  for (int64_t c = 0; c < rows; ++c) {
    for (int64_t d = 0; d < dim; ++d) mean[d] += prototypes.values[c * dim + d];
  }
  for (double& m : mean) m /= static_cast<double>(rows);
  return mean;
}

absl::StatusOr<int> RecordStage2Standings(
    OutcomeTable* outcomes, const OutcomeQueryRow& query,
    const std::vector<std::pair<const ModelRecord*, double>>& stage2_scores) {
  const size_t n = stage2_scores.size();
  if (n < 2) return 0;
  std::vector<double> values;
  for (const auto& [record, score] : stage2_scores) values.push_back(score);
  // A percentile, not the score: stage-2 scores are on a metric's own scale, standings are not.
  const std::vector<double> ranks = scoring::Ranks(values);
  const int64_t now = NowMillis();
  std::vector<OutcomeRow> rows;
  for (size_t i = 0; i < n; ++i) {
    OutcomeRow row;
    row.query_id = query.query_id;
    row.model_id = stage2_scores[i].first->id;
    row.model_name = stage2_scores[i].first->spec.name;
    row.accuracy = (ranks[i] - 1.0) / static_cast<double>(n - 1);
    row.source = kStage2Source;
    row.weight = 1.0;
    // When the record was made: a report's standings are scored after the report, and records
    // are listed newest first.
    row.created_unix_ms = now;
    rows.push_back(std::move(row));
  }
  if (absl::Status s = outcomes->AddOutcomes(query, rows); !s.ok()) return s;
  return static_cast<int>(rows.size());
}

std::vector<double> FactsOf(const ModelRecord& record) {
  const int64_t classes = static_cast<int64_t>(record.spec.class_labels.size());
  const int64_t width = record.has_embed && record.feature_dim > 0 ? record.feature_dim : classes;
  return encoder::ModelFacts(width, classes);
}

absl::Status LearningLoop::Load(const std::string& space, const ProjectedIndexBuilder& build) {
  auto serving = tables_.meta->GetMeta(kServingKey);
  if (!serving.ok()) return serving.status();
  if (serving->empty() || *serving == "0") return absl::OkStatus();
  int64_t version = 0;
  try {
    version = std::stoll(*serving);
  } catch (const std::exception&) {
    spdlog::error("learning: serving version '{}' is unreadable; serving the untrained ranker",
                  *serving);
    return absl::OkStatus();
  }
  if (absl::Status s = Use(version, space, build); !s.ok()) {
    // The dock still serves (untrained); the operator sees why.
    spdlog::error("learning: cannot restore trained version {}: {}; serving the untrained "
                  "ranker", version, std::string(s.message()));
    return absl::OkStatus();
  }
  spdlog::info("learning: serving trained version {}", version);
  return absl::OkStatus();
}

LearningLoop::Serving LearningLoop::Current() const {
  std::lock_guard<std::mutex> lock(serving_mutex_);
  return serving_;
}

absl::Status LearningLoop::Use(int64_t version, const std::string& space,
                               const ProjectedIndexBuilder& build) {
  return Serve(version, space, build, /*store_choice=*/true);
}

absl::Status LearningLoop::Follow(const std::string& space, const ProjectedIndexBuilder& build) {
  auto stored = tables_.meta->GetMeta(kServingKey);
  if (!stored.ok()) return stored.status();
  int64_t version = 0;
  if (!stored->empty()) {
    try {
      version = std::stoll(*stored);
    } catch (const std::exception&) {
      return absl::DataLossError(absl::StrCat("the stored serving version '", *stored,
                                              "' is unreadable; keeping version ",
                                              Current().version));
    }
  }
  if (version == Current().version) return absl::OkStatus();
  if (absl::Status s = Serve(version, space, build, /*store_choice=*/false); !s.ok()) return s;
  spdlog::info("learning: serving version {}, chosen on another replica", version);
  return absl::OkStatus();
}

absl::Status LearningLoop::Serve(int64_t version, const std::string& space,
                                 const ProjectedIndexBuilder& build, bool store_choice) {
  if (version < 0) return absl::InvalidArgumentError("alignment versions are >= 0 (0 = untrained)");
  Serving next;
  next.version = version;
  if (version > 0) {
    auto row = tables_.alignments->Alignment(version);
    if (!row.ok()) return row.status();
    auto ranker = encoder::OutcomeRanker::FromJson(row->payload);
    if (!ranker.ok()) return ranker.status();
    if (!ranker->projection().empty()) {
      if (ranker->projection().space != space) {
        // Trained on vectors of another knowledge space (the operator changed the reference or
        // set encoder): its projection means nothing here; the prior still applies.
        spdlog::warn("learning: version {} projects vectors of another knowledge space; its "
                     "similarity is served untrained", version);
        *ranker = ranker->WithoutProjection();
      } else {
        // Every model's vector re-encoded from the store (no model re-run), in a new index.
        auto index = build(ranker->projection());
        if (!index.ok()) return index.status();
        next.index = std::move(*index);
      }
    }
    next.ranker = std::make_shared<const encoder::OutcomeRanker>(std::move(*ranker));
  }
  // Stored first: a restart (and every replica) serves what was last chosen.
  if (store_choice) {
    absl::Status s = tables_.meta->SetMeta(kServingKey, absl::StrCat(version));
    if (!s.ok()) return s;
  }
  std::lock_guard<std::mutex> lock(serving_mutex_);
  serving_ = std::move(next);
  return absl::OkStatus();
}

absl::StatusOr<RecordList> LearningLoop::Records(const std::string& model_id, int limit) {
  auto rows = tables_.outcomes->Outcomes(model_id, limit);
  if (!rows.ok()) return rows.status();
  auto counts = tables_.outcomes->CountOutcomes(model_id);
  if (!counts.ok()) return counts.status();
  RecordList out;
  out.total_records = counts->first;
  out.total_queries = counts->second;
  for (const OutcomeRow& row : *rows) {
    OutcomeRecord r;
    r.id = row.id;
    r.query_id = row.query_id;
    r.model_id = row.model_id;
    r.model_name = row.model_name;
    r.accuracy = row.accuracy;
    r.source = row.source;
    r.created_unix_ms = row.created_unix_ms;
    r.detail = row.detail;
    out.records.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<TrainingStatus> LearningLoop::Train(bool wait,
                                                   const std::function<bool()>& is_cancelled,
                                                   TrainingInputs inputs) {
  std::unique_lock<std::mutex> lock(training_mutex_);
  if (stopping_) return absl::UnavailableError("the dock is shutting down");
  if (training_.state != TrainingStatus::State::kRunning) {
    if (training_thread_.joinable()) training_thread_.join();
    training_ = TrainingStatus();
    training_.state = TrainingStatus::State::kRunning;
    training_.started_unix_ms = NowMillis();
    training_.message = "training on the records";
    training_thread_ = std::thread([this, inputs = std::move(inputs)]() mutable {
      RunTraining(std::move(inputs));
    });
  }
  if (!wait) return training_;
  while (training_.state == TrainingStatus::State::kRunning) {
    training_done_.wait_for(lock, std::chrono::milliseconds(100));
    if (is_cancelled && is_cancelled()) {
      return absl::CancelledError("stopped waiting; the training job goes on (see `alignments`)");
    }
  }
  return training_;
}

void LearningLoop::RunTraining(TrainingInputs inputs) {
  LowerThreadPriority();
  auto version = TrainOnce(inputs);
  std::lock_guard<std::mutex> lock(training_mutex_);
  training_.finished_unix_ms = NowMillis();
  if (version.ok()) {
    training_.state = TrainingStatus::State::kDone;
    training_.result = *version;
    training_.message = version->reason;
  } else {
    training_.state = TrainingStatus::State::kFailed;
    training_.message = std::string(version.status().message());
    spdlog::warn("learning: training failed: {}", training_.message);
  }
  training_done_.notify_all();
}

absl::StatusOr<AlignmentVersion> LearningLoop::TrainOnce(const TrainingInputs& inputs) {
  const std::vector<ModelRecord>& models = inputs.models;
  absl::Time start = absl::Now();
  auto queries = tables_.outcomes->OutcomeQueries();
  if (!queries.ok()) return queries.status();
  auto outcomes = tables_.outcomes->Outcomes("", 0);
  if (!outcomes.ok()) return outcomes.status();
  std::set<std::string> present;
  std::map<std::string, std::vector<double>> facts;
  for (const ModelRecord& m : models) {
    present.insert(m.id);
    facts[m.id] = FactsOf(m);
  }
  int64_t num_records = 0;
  std::vector<encoder::RecordedTask> tasks =
      RecordedTasks(*queries, *outcomes, present, &num_records);
  const Serving serving = Current();
  encoder::RankerTrainingOptions options;
  auto report = encoder::TrainOutcomeRanker(
      tasks, facts, serving.ranker ? &serving.ranker->params() : nullptr, options,
      [this] { return stopping_.load(); });
  if (!report.ok()) return report.status();
  // The knowledge vectors' projection, from the same records.
  std::vector<encoder::AlignmentTask> alignment_tasks;
  for (const encoder::RecordedTask& t : tasks) {
    if (t.weak) continue;  // the vectors learn from reported accuracies only
    auto q = inputs.query_vectors.find(t.query_id);
    if (q == inputs.query_vectors.end()) continue;
    alignment_tasks.push_back({t.query_id, q->second, t.accuracy});
  }
  auto alignment = encoder::TrainVectorAlignment(alignment_tasks, inputs.model_vectors, options,
                                                 [this] { return stopping_.load(); });
  if (absl::IsCancelled(alignment.status())) return alignment.status();
  encoder::VectorProjection projection;

  AlignmentVersion v = VersionOf(*report, alignment, num_records);
  if (alignment.ok()) {
    projection = std::move(alignment->projection);
    projection.space = inputs.space;
  }
  v.training_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  v.reason = report->reason;
  // The version keeps the usable tasks it learned from, so it ranks the same way forever.
  std::vector<encoder::RecordedTask> kept;
  for (encoder::RecordedTask& t : tasks) {
    if (!encoder::StandardiseOutcomes(t.accuracy).empty()) kept.push_back(std::move(t));
  }
  encoder::OutcomeRanker ranker(report->params, std::move(kept), std::move(facts),
                               std::move(projection));
  AlignmentRow row;
  row.created_unix_ms = v.created_unix_ms;
  row.summary = SummaryJson(v).dump();
  row.payload = ranker.ToJson();
  auto version = tables_.alignments->InsertAlignment(row);
  if (!version.ok()) return version.status();
  v.version = *version;
  spdlog::info("learning: trained version {} on {} queries / {} records in {:.1f} s: {}; {}",
               v.version, v.num_queries, v.num_records, v.training_seconds, v.reason,
               v.vectors_reason);
  if (v.adopted) {
    if (absl::Status s = adopt_(v.version); !s.ok()) return s;
  }
  v.serving = Current().version == v.version;
  return v;
}

absl::StatusOr<AlignmentList> LearningLoop::Versions() {
  auto rows = tables_.alignments->Alignments();
  if (!rows.ok()) return rows.status();
  AlignmentList out;
  out.serving_version = Current().version;
  for (const AlignmentRow& row : *rows) {
    AlignmentVersion v = VersionFromRow(row);
    v.serving = v.version == out.serving_version;
    out.versions.push_back(std::move(v));
  }
  std::lock_guard<std::mutex> lock(training_mutex_);
  out.last_training = training_;
  out.last_training.result.serving = out.last_training.result.version == out.serving_version &&
                                     out.serving_version != 0;
  return out;
}

void LearningLoop::Shutdown() {
  stopping_ = true;
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(training_mutex_);
    thread = std::move(training_thread_);
  }
  if (thread.joinable()) thread.join();
}

}  // namespace modeldock::dock
