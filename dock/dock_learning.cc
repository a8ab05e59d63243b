// The dock's side of the learning loop (dock/learning.h): a report's dataset is encoded like a
// recommendation's query and stored with its outcomes (its standings scored in the background),
// records are listed, and training is given the READY models and the reported queries' vectors.
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/request_context.h"
#include "dock/dock_impl.h"
#include "dock/learning.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

namespace {

// The report's models, each READY, of the report's task and named once; INVALID_ARGUMENT for an
// accuracy outside [0, 1]. Checked before anything is computed: nothing is computed for a
// report that cannot be stored.
absl::StatusOr<std::vector<ModelRecord>> ReportedModels(
    const OutcomeReport& report,
    const std::function<absl::StatusOr<ModelRecord>(std::string_view)>& get_model) {
  if (report.outcomes.empty()) {
    return absl::InvalidArgumentError("a report names at least one model and its accuracy");
  }
  if (!report.details.empty() && report.details.size() != report.outcomes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a report's details are one per outcome: ", report.details.size(), " for ",
        report.outcomes.size()));
  }
  std::vector<ModelRecord> models;
  std::set<std::string> seen;
  for (const ReportedOutcome& o : report.outcomes) {
    if (!std::isfinite(o.accuracy) || o.accuracy < 0 || o.accuracy > 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "accuracy of '%s' is %g; accuracies are fractions in [0, 1] (0.93, not 93)", o.model,
          o.accuracy));
    }
    auto model = get_model(o.model);
    if (!model.ok()) return model.status();
    if (model->state != ModelState::kReady) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", model->spec.name, "' is ", ModelStateName(model->state),
          "; outcomes are recorded for READY models"));
    }
    if (model->spec.task != report.task) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", model->spec.name, "' is a ", TaskKindName(model->spec.task),
          " model; the report's dataset is ", TaskKindName(report.task)));
    }
    if (!seen.insert(model->id).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", model->spec.name, "' is reported twice in one report"));
    }
    models.push_back(std::move(*model));
  }
  return models;
}

// One stored row per reported outcome, stamped with the query's time.
std::vector<OutcomeRow> OutcomeRowsOf(const OutcomeReport& report,
                                      const std::vector<ModelRecord>& models,
                                      int64_t created_unix_ms) {
  std::vector<OutcomeRow> rows;
  for (size_t i = 0; i < models.size(); ++i) {
    OutcomeRow row;
    row.model_id = models[i].id;
    row.model_name = models[i].spec.name;
    row.accuracy = report.outcomes[i].accuracy;
    row.source = OutcomeSourceName(report.source);
    row.weight = 1.0;
    row.reporter_key_id = report.reporter_key_id;
    row.created_unix_ms = created_unix_ms;
    if (!report.details.empty()) row.detail = report.details[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

absl::StatusOr<OutcomeReportResult> DockImpl::ReportOutcome(const OutcomeReport& report) {
  auto models = ReportedModels(
      report, [this](std::string_view name) { return GetModel(name); });
  if (!models.ok()) return models.status();
  const Tensor& samples = report.dataset.samples;
  if (absl::Status valid = ValidateQuerySamples(samples, report.task); !valid.ok()) return valid;
  for (const ModelRecord& m : *models) {
    if (!Compatible(m, report.task, samples)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", m.spec.name, "' (input ", ShapeToString(m.spec.input_shape),
          ") cannot take samples of shape ", ShapeToString(samples.SampleShape())));
    }
  }
  std::optional<Tensor> embeddings;
  if (report.task == TaskKind::kImageClassification) {
    auto embedded = knowledge_->Embed(samples);
    if (!embedded.ok()) return embedded.status();
    embeddings = std::move(*embedded);
  }
  auto prepared = PrepareLabels(report.dataset, embeddings);
  if (!prepared.ok()) return prepared.status();

  const Tensor& basis = embeddings ? *embeddings : samples;
  OutcomeQueryRow query = OutcomeQueryOf(report.dataset, report.task, basis, prepared->labels,
                                         prepared->num_classes);
  if (embeddings) {
    if (absl::Status s = AddStage1View(report, *embeddings, *prepared, &query); !s.ok()) return s;
  }
  std::vector<OutcomeRow> rows = OutcomeRowsOf(report, *models, query.created_unix_ms);
  if (absl::Status s = outcomes_->AddOutcomes(query, rows); !s.ok()) return s;
  if (report_jobs_ && embeddings && prepared->source == "given" && models->size() >= 2) {
    SubmitReportStandings(report, query, *models);
  }
  OutcomeReportResult result;
  result.query_id = query.query_id;
  result.num_stored = static_cast<int>(rows.size());
  result.num_classes = query.num_classes;
  result.num_stage1_scores = static_cast<int>(query.stage1.size());
  // The totals are informative only: the report is stored, so a failed count is logged rather
  // than failing the call (the totals then read 0).
  auto counts_now = outcomes_->CountOutcomes("");
  if (counts_now.ok()) {
    result.total_records = counts_now->first;
    result.total_queries = counts_now->second;
  } else {
    spdlog::warn("learning: counting outcome records failed: {}", counts_now.status().ToString());
  }
  spdlog::info("learning: {} outcome(s) reported ({}) on query {} ({} samples, {} classes)",
               rows.size(), OutcomeSourceName(report.source), query.query_id.substr(0, 12),
               query.num_samples, query.num_classes);
  return result;
}

absl::Status DockImpl::AddStage1View(const OutcomeReport& report, const Tensor& embeddings,
                                     const PreparedLabels& prepared, OutcomeQueryRow* query) {
  // What stage 1 says about every compatible model now: the view of this task the ranker learns
  // task similarity from.
  const Tensor& samples = report.dataset.samples;
  auto all = models_->ListAll();
  if (!all.ok()) return all.status();
  std::vector<const ModelRecord*> compatible;
  for (const ModelRecord& r : *all) {
    if (Compatible(r, report.task, samples)) compatible.push_back(&r);
  }
  std::map<KnowledgeSpace*, Tensor> space_embeddings;
  if (absl::Status s =
          recommender_->EmbedInSpaces(samples, embeddings, compatible, &space_embeddings);
      !s.ok()) {
    return s;
  }
  // A model left out here is missing from num_stage1_scores, which the caller sees; the
  // reason goes to the log (a report result has no warnings).
  std::vector<std::string> warnings;
  auto scores = recommender_->ProxyScores(space_embeddings, prepared.labels,
                                          prepared.num_classes, compatible, &warnings);
  if (!scores.ok()) return scores.status();
  for (const std::string& w : warnings) spdlog::warn("outcome report: {}", w);
  query->stage1.insert(scores->begin(), scores->end());
  return absl::OkStatus();
}

void DockImpl::SubmitReportStandings(const OutcomeReport& report, const OutcomeQueryRow& query,
                                     const std::vector<ModelRecord>& models) {
  std::vector<std::string> ids;
  for (const ModelRecord& m : models) ids.push_back(m.id);
  report_jobs_->Submit(
      absl::StrCat("standings of query ", query.query_id.substr(0, 12)),
      [this, dataset = report.dataset, task = report.task, query, ids,
       request_id = CurrentRequestId()](const std::function<bool()>& stopping) mutable {
        ScopedRequestId scope(request_id);  // its log lines name the report's request
        recommender_->RecordReportStandings(std::move(dataset), task, query, ids, stopping);
      },
      report.dataset.samples.values.size() * sizeof(float));
}

absl::StatusOr<RecordList> DockImpl::ListRecords(std::string_view model, int limit) {
  std::string model_id;
  if (!model.empty()) {
    auto record = GetModel(model);
    if (!record.ok()) return record.status();
    model_id = record->id;
  }
  return learning_->Records(model_id, limit);
}

absl::StatusOr<TrainingStatus> DockImpl::TrainAlignment(bool wait,
                                                        std::function<bool()> is_cancelled) {
  // Reports made before this call are trained on with their stage-2 standings: those still
  // being scored are waited for (at most the queue's bound of them).
  if (report_jobs_) report_jobs_->WaitIdle();
  TrainingInputs inputs;
  inputs.space = knowledge_->id();
  auto all = models_->ListAll();
  if (!all.ok()) return all.status();
  for (ModelRecord& r : *all) {
    if (r.state == ModelState::kReady) inputs.models.push_back(std::move(r));
  }
  auto vectors = probe_data_->Vectors(knowledge_->id());
  if (!vectors.ok()) return vectors.status();
  for (auto& [id, v] : *vectors) inputs.model_vectors[id] = std::move(v);
  // Each reported query's untrained query vector, from its stored class prototypes (a prototype
  // is its class's mean embedding, so encoding the prototypes as one sample per class gives the
  // query's vector).
  auto queries = outcomes_->OutcomeQueries();
  if (!queries.ok()) return queries.status();
  for (const OutcomeQueryRow& q : *queries) {
    if (q.task != static_cast<int>(TaskKind::kImageClassification) ||
        q.prototypes.RowSize() != knowledge_->reference_dim()) {
      continue;
    }
    std::vector<int32_t> labels(q.prototypes.Rows());
    for (size_t c = 0; c < labels.size(); ++c) labels[c] = static_cast<int32_t>(c);
    auto vector = knowledge_->EncodeQuery(q.prototypes, labels, static_cast<int>(labels.size()));
    if (vector.ok()) inputs.query_vectors[q.query_id] = std::move(*vector);
  }
  return learning_->Train(wait, is_cancelled, std::move(inputs));
}

absl::StatusOr<AlignmentList> DockImpl::ListAlignments() { return learning_->Versions(); }

absl::StatusOr<std::shared_ptr<index::VectorIndex>> DockImpl::BuildProjectedIndex(
    const encoder::VectorProjection& projection) {
  auto vectors = probe_data_->Vectors(knowledge_->id());
  if (!vectors.ok()) return vectors.status();
  for (auto& [id, v] : *vectors) v = projection.ProjectModel(v);
  auto built = knowledge_->NewIndexOf(*vectors);
  if (!built.ok()) return built.status();
  return std::shared_ptr<index::VectorIndex>(std::move(*built));
}

absl::Status DockImpl::UseAlignment(int64_t version) {
  // Under the registry lock: a model committed meanwhile lands in the index being swapped in.
  return registry_->RunLocked([this, version] {
    return learning_->Use(version, knowledge_->id(), [this](const encoder::VectorProjection& p) {
      return BuildProjectedIndex(p);
    });
  });
}

}  // namespace modeldock::dock
