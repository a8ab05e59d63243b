#include "dock/tuner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dock/query_rows.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

absl::Status CheckQuery(const TuneQuery& query) {
  if (!query.dataset.labelled()) {
    return absl::InvalidArgumentError("tuning needs labels (--labels, or a labelled dataset)");
  }
  if (query.dataset.is_text() || query.task != TaskKind::kImageClassification) {
    return absl::InvalidArgumentError("only image datasets can be tuned on yet");
  }
  if (query.top_k < 1 || query.top_k > 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be in 1..10 (each candidate is fine-tuned), got ", query.top_k));
  }
  if (query.budget <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the tuning budget must be positive");
  }
  if (!(query.validation_fraction > 0 && query.validation_fraction < 1)) {
    return absl::InvalidArgumentError("the validation fraction must be in (0, 1)");
  }
  return absl::OkStatus();
}

std::string Schedule(const TuneQuery& query, absl::Duration each) {
  return absl::StrFormat("adam lr %g, batch %d, <= %d epochs, patience %d, %s each",
                         query.learning_rate, query.batch_size, query.max_epochs, query.patience,
                         absl::FormatDuration(each));
}

// A tuned candidate's outcome record detail: the split and the schedule it was measured with.
std::string TuneDetail(const TuneQuery& query, const TuneResult& result, absl::Duration each,
                       const TuneCandidate& row) {
  const int64_t epochs_run = std::max<int64_t>(0, static_cast<int64_t>(row.epochs.size()) - 1);
  nlohmann::json split = {{"seed", query.seed},
                          {"validation_fraction", query.validation_fraction},
                          {"train_samples", result.train_samples},
                          {"val_samples", result.val_samples}};
  nlohmann::json schedule = {{"optimizer", "adam"},
                             {"learning_rate", query.learning_rate},
                             {"batch_size", query.batch_size},
                             {"max_epochs", query.max_epochs},
                             {"patience", query.patience},
                             {"budget_seconds", absl::ToDoubleSeconds(each)},
                             {"epochs_run", epochs_run},
                             {"best_epoch", row.best_epoch},
                             {"stop_reason", row.stop_reason},
                             {"millis", row.millis}};
  return nlohmann::json{{"tune", {{"split", split},
                                  {"schedule", schedule},
                                  {"predicted_rank", row.predicted_rank}}}}
      .dump();
}

}  // namespace

absl::StatusOr<Split> StratifiedSplit(const std::vector<int32_t>& labels, double fraction,
                                      uint64_t seed) {
  std::map<int32_t, std::vector<int64_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(static_cast<int64_t>(i));
  std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
  Split split;
  for (auto& [label, rows] : by_class) {
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "class ", label, " has ", n, " sample; tuning needs at least 2 per class (one to "
          "train on, one to validate)"));
    }
    const int64_t held = std::clamp<int64_t>(std::llround(fraction * static_cast<double>(n)), 1,
                                             n - 1);
    std::shuffle(rows.begin(), rows.end(), rng);
    split.validation.insert(split.validation.end(), rows.begin(), rows.begin() + held);
    split.train.insert(split.train.end(), rows.begin() + held, rows.end());
  }
  std::sort(split.train.begin(), split.train.end());
  std::sort(split.validation.begin(), split.validation.end());
  return split;
}

Tuner::Tuner(const SandboxOptions& box, TunerHost host) : box_(box), host_(std::move(host)) {}

Tuner::~Tuner() { Shutdown(); }

void Tuner::Shutdown() {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  shut_down_ = true;
  if (pool_) pool_->Shutdown();
}

absl::StatusOr<sandbox::WorkerPool*> Tuner::Pool() {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  if (shut_down_) return absl::UnavailableError("the dock is shutting down");
  if (!pool_) {
    sandbox::PoolOptions options;
    options.worker_binary = WorkerBinary(box_);
    options.workers = 1;
    options.torch_threads = 1;  // reproducible for a seed
    options.memory_limit_bytes = box_.memory_limit_bytes;
    options.model_cache_bytes = 0;  // tune jobs load their model themselves
    options.max_waiting = 16;
    options.isolate_network = box_.isolate_network;
    options.seccomp = box_.seccomp;
    auto started = sandbox::WorkerPool::Start(options);
    if (!started.ok()) return started.status();
    pool_ = std::move(*started);
  }
  return pool_.get();
}

void Tuner::TuneOne(const TuneQuery& query, const Split& split, const Recommendation& rec,
                    int index, absl::Duration budget,
                    const std::function<void(const TuneProgressEvent&)>& progress,
                    TuneCandidate* row, std::string* tuned_model) {
  auto fail = [&](const absl::Status& s) {
    row->ok = false;
    row->failure = absl::StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
  };
  const ModelRecord& model = rec.model;
  if (model.spec.input_shape.empty() || IsRemote(model.spec)) {
    return fail(absl::FailedPreconditionError(
        "only uploaded models on tensor samples can be tuned yet (not text or remote models)"));
  }
  auto path = host_.files->VerifiedPath(model);
  if (!path.ok()) return fail(path.status());
  auto pool = Pool();
  if (!pool.ok()) return fail(pool.status());
  sandbox::JobRequest job;
  job.kind = sandbox::JobKind::kTune;
  job.model_path = *path;
  job.input_shape = model.spec.input_shape;
  job.num_classes = query.dataset.NumClasses();
  job.batch_size = query.batch_size;
  job.max_model_bytes = 1ll << 30;
  job.samples = TakeRows(query.dataset.samples, split.train);
  job.labels = TakeLabels(query.dataset.labels, split.train);
  job.val_samples = TakeRows(query.dataset.samples, split.validation);
  job.val_labels = TakeLabels(query.dataset.labels, split.validation);
  job.tune.max_epochs = query.max_epochs;
  job.tune.budget_seconds = absl::ToDoubleSeconds(budget);
  job.tune.patience = query.patience;
  job.tune.learning_rate = query.learning_rate;
  job.tune.seed = query.seed;
  // The schedule stops at the budget by itself; the limit is the backstop of a slow epoch.
  sandbox::JobLimits limits;
  limits.wall = budget * 1.5 + absl::Seconds(30);
  limits.cpu = limits.wall;
  auto result = (*pool)->Tune(job, limits, query.is_cancelled, [&](const sandbox::WireTuneEpoch& e) {
    if (progress) {
      progress({index, model.spec.name,
                {static_cast<int>(e.epoch), e.train_loss, e.val_accuracy, e.millis}});
    }
  });
  if (!result.ok()) return fail(result.status());
  row->ok = true;
  for (const sandbox::WireTuneEpoch& e : result->epochs) {
    row->epochs.push_back({static_cast<int>(e.epoch), e.train_loss, e.val_accuracy, e.millis});
  }
  row->best_epoch = static_cast<int>(result->best_epoch);
  row->best_accuracy = result->best_accuracy;
  row->stop_reason = result->stop_reason;
  row->millis = result->millis;
  *tuned_model = std::move(result->tuned_model);
}

absl::StatusOr<TuneResult> Tuner::Tune(
    const TuneQuery& query, const std::function<void(const TuneProgressEvent&)>& progress) {
  if (absl::Status s = CheckQuery(query); !s.ok()) return s;
  auto split = StratifiedSplit(query.dataset.labels, query.validation_fraction, query.seed);
  if (!split.ok()) return split.status();
  RecommendQuery recommend;
  recommend.dataset = query.dataset;
  recommend.task = query.task;
  recommend.top_k = query.top_k;
  recommend.is_cancelled = query.is_cancelled;
  auto ranking = host_.recommend(recommend);
  if (!ranking.ok()) return ranking.status();
  if (ranking->results.empty()) {
    return absl::FailedPreconditionError("no model in the dock can take this dataset");
  }
  const int k = std::min<int>(query.top_k, static_cast<int>(ranking->results.size()));
  TuneResult result;
  result.seed = query.seed;
  result.train_samples = static_cast<int64_t>(split->train.size());
  result.val_samples = static_cast<int64_t>(split->validation.size());
  const absl::Duration each = query.budget / k;
  result.schedule = Schedule(query, each);
  std::string best_bytes;
  OutcomeReport report;
  for (int i = 0; i < k; ++i) {
    if (query.is_cancelled && query.is_cancelled()) {
      return absl::CancelledError("the tune was cancelled");
    }
    const Recommendation& rec = ranking->results[i];
    TuneCandidate row;
    row.model = rec.model;
    row.predicted_rank = rec.rank;
    row.score = rec.score;
    std::string tuned;
    TuneOne(query, *split, rec, i, each, progress, &row, &tuned);
    spdlog::info("tune: candidate {} {} {}", i + 1, rec.model.spec.name,
                 row.ok ? absl::StrFormat("best validation accuracy %.4f at epoch %d",
                                          row.best_accuracy, row.best_epoch)
                        : row.failure);
    if (row.ok) {
      report.outcomes.push_back({rec.model.id, row.best_accuracy});
      report.details.push_back(TuneDetail(query, result, each, row));
      if (result.winner < 0 || row.best_accuracy > result.candidates[result.winner].best_accuracy) {
        result.winner = i;
        best_bytes = std::move(tuned);
      }
    }
    result.candidates.push_back(std::move(row));
  }
  if (result.winner >= 0) {
    result.tuned_model = std::move(best_bytes);
    result.winner_license = result.candidates[result.winner].model.spec.license;
    report.dataset = query.dataset;
    report.task = query.task;
    report.source = OutcomeSource::kTune;
    report.reporter_key_id = query.reporter_key_id;
    auto recorded = host_.report(report);
    if (!recorded.ok()) return recorded.status();
    result.query_id = recorded->query_id;
    result.recorded_outcomes = recorded->num_stored;
    spdlog::info("tune: {} outcome record(s) on query {} (seed {}, {} train / {} validation; {})",
                 recorded->num_stored, recorded->query_id.substr(0, 12), query.seed,
                 result.train_samples, result.val_samples, result.schedule);
  }
  return result;
}

}  // namespace modeldock::dock
