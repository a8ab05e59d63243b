#include "client/json_output.h"

#include <cctype>
#include <exception>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace modeldock::client {

std::string StateName(v1::ModelState state) {
  switch (state) {
    case v1::MODEL_STATE_PENDING: return "PENDING";
    case v1::MODEL_STATE_PROBING: return "PROBING";
    case v1::MODEL_STATE_READY: return "READY";
    case v1::MODEL_STATE_FAILED: return "FAILED";
    default: return "UNSPECIFIED";
  }
}

std::string TaskName(v1::TaskKind task) {
  switch (task) {
    case v1::TASK_KIND_IMAGE_CLASSIFICATION: return "image_classification";
    case v1::TASK_KIND_TABULAR_CLASSIFICATION: return "tabular_classification";
    case v1::TASK_KIND_TEXT_CLASSIFICATION: return "text_classification";
    case v1::TASK_KIND_AUDIO_CLASSIFICATION: return "audio_classification";
    default: return "unspecified";
  }
}

std::optional<v1::TaskKind> ParseTask(std::string_view text) {
  if (text == "image" || text == "image_classification") {
    return v1::TASK_KIND_IMAGE_CLASSIFICATION;
  }
  if (text == "tabular" || text == "tabular_classification") {
    return v1::TASK_KIND_TABULAR_CLASSIFICATION;
  }
  if (text == "text" || text == "text_classification") return v1::TASK_KIND_TEXT_CLASSIFICATION;
  if (text == "audio" || text == "audio_classification") return v1::TASK_KIND_AUDIO_CLASSIFICATION;
  return std::nullopt;
}

std::optional<std::vector<int64_t>> ParseShape(const std::string& text) {
  std::vector<int64_t> shape;
  for (absl::string_view part : absl::StrSplit(text, absl::ByAnyChar(",x"))) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(part, &d) || d <= 0) return std::nullopt;
    shape.push_back(d);
  }
  if (shape.empty()) return std::nullopt;
  return shape;
}

std::optional<v1::ModelState> ParseState(std::string_view text) {
  std::string upper(text);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (v1::ModelState state : {v1::MODEL_STATE_PENDING, v1::MODEL_STATE_PROBING,
                               v1::MODEL_STATE_READY, v1::MODEL_STATE_FAILED}) {
    if (StateName(state) == upper) return state;
  }
  return std::nullopt;
}

const std::vector<std::pair<std::string, v1::Metric>>& MetricNames() {
  static const auto* names = new std::vector<std::pair<std::string, v1::Metric>>{
      {"fusion", v1::METRIC_FUSION}, {"tmi", v1::METRIC_TMI},
      {"logme", v1::METRIC_LOGME},
      {"leep", v1::METRIC_LEEP},     {"nce", v1::METRIC_NCE},
      {"hscore", v1::METRIC_HSCORE}, {"shrinkage_hscore", v1::METRIC_SHRINKAGE_HSCORE},
      {"gbc", v1::METRIC_GBC},       {"sfda", v1::METRIC_SFDA},
      {"none", v1::METRIC_NONE}};
  return *names;
}

std::string MetricName(v1::Metric metric) {
  for (const auto& [name, value] : MetricNames()) {
    if (value == metric) return name;
  }
  return "unspecified";
}

std::optional<v1::Metric> ParseMetric(std::string_view text) {
  for (const auto& [name, value] : MetricNames()) {
    if (name == text) return value;
  }
  return std::nullopt;
}

std::string ModeName(v1::RecommendMode mode) {
  switch (mode) {
    case v1::RECOMMEND_MODE_SCORED_ALL: return "scored_all";
    case v1::RECOMMEND_MODE_TWO_STAGE: return "two_stage";
    case v1::RECOMMEND_MODE_STAGE1_ONLY: return "stage1_only";
    default: return "unspecified";
  }
}

json LayersToJson(const google::protobuf::RepeatedPtrField<v1::ModelLayer>& layers) {
  json out = json::array();
  for (const v1::ModelLayer& layer : layers) {
    out.push_back(json{{"name", layer.name()}, {"dim", layer.dim()}});
  }
  return out;
}

json ModelToJson(const v1::Model& model) {
  const v1::ModelSpec& spec = model.spec();
  return json{{"id", model.id()},
              {"name", spec.name()},
              {"version", spec.version()},
              {"description", spec.description()},
              {"task", TaskName(spec.task())},
              {"kind", spec.kind() == v1::MODEL_KIND_FEATURE_EXTRACTOR ? "feature_extractor"
                                                                       : "classifier"},
              {"input_shape", std::vector<int64_t>(spec.input_shape().begin(),
                                                   spec.input_shape().end())},
              {"class_labels", std::vector<std::string>(spec.class_labels().begin(),
                                                        spec.class_labels().end())},
              {"license", spec.license()},
              {"tags", std::vector<std::string>(spec.tags().begin(), spec.tags().end())},
              {"state", StateName(model.state())},
              {"state_reason", model.state_reason()},
              {"sha256", model.sha256()},
              {"size_bytes", model.size_bytes()},
              {"has_embed", model.has_embed()},
              {"feature_dim", model.feature_dim()},
              {"created_unix_ms", model.created_unix_ms()},
              {"probe_millis", model.probe_millis()},
              {"layers", LayersToJson(model.layers())},
              {"remote", spec.remote().endpoint().empty()
                             ? json(nullptr)
                             : json{{"endpoint", spec.remote().endpoint()},
                                    {"model", spec.remote().model()},
                                    {"version", spec.remote().version()}}}};
}

json LayerScoresToJson(const google::protobuf::RepeatedPtrField<v1::LayerScore>& scores) {
  json out = json::array();
  for (const v1::LayerScore& layer : scores) {
    out.push_back(json{{"name", layer.name()}, {"dim", layer.dim()}, {"score", layer.score()}});
  }
  return out;
}

json RecommendToJson(const v1::RecommendResponse& response,
                     const std::vector<std::string>& dataset_notes) {
  json results = json::array();
  for (const auto& r : response.results()) {
    results.push_back(json{{"rank", r.rank()},
                           {"name", r.model().spec().name()},
                           {"version", r.model().spec().version()},
                           {"id", r.model().id()},
                           {"score", r.score()},
                           {"similarity", r.similarity()},
                           {"stage1_rank", r.stage1_rank()},
                           {"stage1_score", r.has_stage1_score() ? json(r.stage1_score())
                                                                 : json(nullptr)},
                           {"stage2_score", r.stage2_score()},
                           {"prior", r.has_prior() ? json(r.prior()) : json(nullptr)},
                           {"scored", r.scored()},
                           {"layer", r.layer()},
                           {"layer_scores", LayerScoresToJson(r.layer_scores())},
                           {"reason", r.reason()}});
  }
  const v1::StageTimings& t = response.timings();
  return json{{"results", results},
              {"timings",
               {{"receive_millis", t.receive_millis()},
                {"encode_query_millis", t.encode_query_millis()},
                {"stage1_millis", t.stage1_millis()},
                {"stage2_millis", t.stage2_millis()},
                {"total_millis", t.total_millis()}}},
              {"num_scored", response.num_scored()},
              {"num_compatible", response.num_compatible()},
              {"num_cached", response.num_cached()},
              {"num_samples_scored", response.num_samples_scored()},
              {"metric", MetricName(response.metric())},
              {"mode", ModeName(response.mode())},
              {"mode_reason", response.mode_reason()},
              {"latency_budget_ms", response.latency_budget_ms()},
              {"alignment_version", response.alignment_version()},
              {"recorded_outcomes", response.recorded_outcomes()},
              {"label_source", response.label_source()},
              {"dataset_notes", dataset_notes},
              {"warnings", std::vector<std::string>(response.warnings().begin(),
                                                    response.warnings().end())}};
}

json ReportToJson(const v1::ReportOutcomeResponse& response,
                  const std::vector<std::string>& dataset_notes) {
  return json{{"query_id", response.query_id()},
              {"num_stored", response.num_stored()},
              {"num_classes", response.num_classes()},
              {"num_stage1_scores", response.num_stage1_scores()},
              {"total_records", response.total_records()},
              {"total_queries", response.total_queries()},
              {"dataset_notes", dataset_notes}};
}

std::string IsoTime(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

json NearestToJson(const std::string& model_ref, const v1::ListNearestModelsResponse& response) {
  json nearest = json::array();
  for (const v1::NearestModel& n : response.models()) {
    nearest.push_back({{"model", ModelToJson(n.model())}, {"similarity", n.similarity()}});
  }
  return json{{"model", model_ref}, {"nearest", std::move(nearest)}};
}

json AuditLogToJson(const v1::ListAuditLogResponse& log) {
  json entries = json::array();
  for (const v1::AuditEntry& e : log.entries()) {
    entries.push_back(json{{"id", e.id()}, {"time", IsoTime(e.unix_ms())}, {"actor", e.actor()},
                           {"action", e.action()}, {"target", e.target()},
                           {"detail", e.detail()}});
  }
  return json{{"entries", entries}};
}

std::string OutcomeSourceName(v1::OutcomeSource source) {
  switch (source) {
    case v1::OUTCOME_SOURCE_IMPORT: return "import";
    case v1::OUTCOME_SOURCE_STAGE2: return "stage2";
    case v1::OUTCOME_SOURCE_TUNE: return "tune";
    default: return "finetune";
  }
}

namespace {

// A record's detail as JSON: null if empty, the text itself if the server sent something that
// does not parse (never dropped).
json DetailJson(const std::string& detail) {
  if (detail.empty()) return nullptr;
  json parsed = json::parse(detail, nullptr, /*allow_exceptions=*/false);
  return parsed.is_discarded() ? json(detail) : parsed;
}

}  // namespace

json RecordsToJson(const v1::ListRecordsResponse& records) {
  json all = json::array();
  for (const v1::OutcomeRecord& r : records.records()) {
    all.push_back(json{{"id", r.id()}, {"query_id", r.query_id()}, {"model_id", r.model_id()},
                       {"model", r.model_name()}, {"accuracy", r.accuracy()},
                       {"source", OutcomeSourceName(r.source())},
                       {"created", IsoTime(r.created_unix_ms())},
                       {"detail", DetailJson(r.detail())}});
  }
  return json{{"records", all},
              {"total_records", records.total_records()},
              {"total_queries", records.total_queries()}};
}

std::string TrainingStateName(v1::TrainingState state) {
  switch (state) {
    case v1::TRAINING_STATE_RUNNING: return "running";
    case v1::TRAINING_STATE_DONE: return "done";
    case v1::TRAINING_STATE_FAILED: return "failed";
    default: return "idle";
  }
}

json AlignmentVersionToJson(const v1::AlignmentVersion& v) {
  return json{{"version", v.version()},
              {"created", IsoTime(v.created_unix_ms())},
              {"serving", v.serving()},
              {"adopted", v.adopted()},
              {"num_queries", v.num_queries()},
              {"num_records", v.num_records()},
              {"folds", v.folds()},
              {"validation_untrained", v.validation_untrained()},
              {"validation_serving", v.validation_serving()},
              {"validation_trained", v.validation_trained()},
              {"weight", v.weight()},
              {"shrinkage", v.shrinkage()},
              {"sharpness", v.sharpness()},
              {"training_seconds", v.training_seconds()},
              {"reason", v.reason()},
              {"vectors_trained", v.vectors_trained()},
              {"vectors_validation_untrained", v.vectors_validation_untrained()},
              {"vectors_validation_trained", v.vectors_validation_trained()},
              {"vectors_reason", v.vectors_reason()},
              {"weak_queries", v.weak_queries()},
              {"weak_weight", v.weak_weight()},
              {"stage2_weight", v.stage2_weight()},
              {"prior_target", v.prior_target()}};
}

json TrainingJobToJson(const v1::TrainingJob& job) {
  json out{{"state", TrainingStateName(job.state())}, {"message", job.message()}};
  if (job.state() == v1::TRAINING_STATE_DONE) {
    out["result"] = AlignmentVersionToJson(job.result());
    // Flattened for scripts: the version and whether it serves now.
    out["version"] = job.result().version();
    out["adopted"] = job.result().adopted();
  }
  out["reason"] = job.message();
  return out;
}

json AlignmentsToJson(const v1::ListAlignmentsResponse& list) {
  json versions = json::array();
  for (const v1::AlignmentVersion& v : list.versions()) {
    versions.push_back(AlignmentVersionToJson(v));
  }
  return json{{"serving_version", list.serving_version()},
              {"versions", versions},
              {"last_training", TrainingJobToJson(list.last_training())}};
}

std::string ScrubStateName(v1::ScrubState state) {
  switch (state) {
    case v1::SCRUB_STATE_IDLE: return "idle";
    case v1::SCRUB_STATE_RUNNING: return "running";
    case v1::SCRUB_STATE_DONE: return "done";
    case v1::SCRUB_STATE_FAILED: return "failed";
    default: return "unspecified";
  }
}

json ScrubReportToJson(const v1::ScrubReport& report) {
  return json{{"state", ScrubStateName(report.state())},
              {"message", report.message()},
              {"started_unix_ms", report.started_unix_ms()},
              {"finished_unix_ms", report.finished_unix_ms()},
              {"blobs_checked", report.blobs_checked()},
              {"blobs_ok", report.blobs_ok()},
              {"blobs_bad", report.blobs_bad()},
              {"blobs_restored", report.blobs_restored()},
              {"bytes_hashed", report.bytes_hashed()},
              {"models_failed", report.models_failed()},
              {"models_requeued", report.models_requeued()},
              {"features_checked", report.features_checked()},
              {"features_bad", report.features_bad()},
              {"bad_model_ids", std::vector<std::string>(report.bad_model_ids().begin(),
                                                         report.bad_model_ids().end())},
              {"bad_blobs", std::vector<std::string>(report.bad_blobs().begin(),
                                                     report.bad_blobs().end())}};
}

json ApiKeyToJson(const v1::ApiKey& key) {
  std::string role = v1::ApiKeyRole_Name(key.role());
  role = absl::AsciiStrToLower(role.substr(std::string("API_KEY_ROLE_").size()));
  return json{{"id", key.id()}, {"name", key.name()}, {"role", role},
              {"created_unix_ms", key.created_unix_ms()}, {"revoked", key.revoked()}};
}

std::optional<v1::ApiKeyRole> ParseRole(std::string_view text) {
  if (text == "consumer") return v1::API_KEY_ROLE_CONSUMER;
  if (text == "provider") return v1::API_KEY_ROLE_PROVIDER;
  if (text == "admin") return v1::API_KEY_ROLE_ADMIN;
  return std::nullopt;
}

absl::Status SpecFromMetadata(const json& meta, const std::string& source, v1::ModelSpec* spec) {
  auto bad = [&source](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  if (!meta.is_object()) return bad("metadata must be a JSON object");
  try {
    if (meta.contains("name")) spec->set_name(meta["name"].get<std::string>());
    if (meta.contains("version")) spec->set_version(meta["version"].get<std::string>());
    if (meta.contains("description")) {
      spec->set_description(meta["description"].get<std::string>());
    }
    if (meta.contains("license")) spec->set_license(meta["license"].get<std::string>());
    if (meta.contains("task")) {
      auto task = ParseTask(meta["task"].get<std::string>());
      if (!task) return bad("task must be \"image\" or \"tabular\"");
      spec->set_task(*task);
    }
    if (meta.contains("input_shape")) {
      spec->clear_input_shape();
      for (int64_t d : meta["input_shape"].get<std::vector<int64_t>>()) spec->add_input_shape(d);
    }
    if (meta.contains("class_labels")) {
      spec->clear_class_labels();
      for (const auto& label : meta["class_labels"].get<std::vector<std::string>>()) {
        spec->add_class_labels(label);
      }
    }
    if (meta.contains("kind")) {
      const std::string kind = meta["kind"].get<std::string>();
      if (kind != "classifier" && kind != "feature_extractor") {
        return bad("kind must be \"classifier\" or \"feature_extractor\"");
      }
      spec->set_kind(kind == "feature_extractor" ? v1::MODEL_KIND_FEATURE_EXTRACTOR
                                                 : v1::MODEL_KIND_CLASSIFIER);
    }
    if (meta.contains("tags")) {
      spec->clear_tags();
      for (const auto& tag : meta["tags"].get<std::vector<std::string>>()) spec->add_tags(tag);
    }
  } catch (const std::exception& e) {
    return bad(e.what());
  }
  return absl::OkStatus();
}

json TuneToJson(const v1::TuneResult& result) {
  json candidates = json::array();
  for (const v1::TuneCandidate& c : result.candidates()) {
    json epochs = json::array();
    for (const v1::TuneEpoch& e : c.epochs()) {
      epochs.push_back(json{{"epoch", e.epoch()}, {"train_loss", e.train_loss()},
                            {"val_accuracy", e.val_accuracy()}, {"millis", e.millis()}});
    }
    candidates.push_back(json{{"name", c.model().spec().name()},
                              {"id", c.model().id()},
                              {"predicted_rank", c.predicted_rank()},
                              {"score", c.score()},
                              {"ok", c.ok()},
                              {"failure", c.failure()},
                              {"best_epoch", c.best_epoch()},
                              {"best_accuracy", c.best_accuracy()},
                              {"stop_reason", c.stop_reason()},
                              {"millis", c.millis()},
                              {"epochs", epochs}});
  }
  return json{{"candidates", candidates},
              {"winner", result.winner()},
              {"winner_license", result.winner_license()},
              {"seed", result.seed()},
              {"train_samples", result.train_samples()},
              {"val_samples", result.val_samples()},
              {"schedule", result.schedule()},
              {"query_id", result.query_id()},
              {"recorded_outcomes", result.recorded_outcomes()},
              {"model_sha256", result.model_sha256()},
              {"model_size_bytes", result.model_size_bytes()}};
}

}  // namespace modeldock::client
