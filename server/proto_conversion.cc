#include "server/proto_conversion.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/request_decoding.h"

namespace modeldock::server {
namespace {

v1::OutcomeSource ToProtoSource(const std::string& source) {
  if (source == "import") return v1::OUTCOME_SOURCE_IMPORT;
  if (source == dock::kStage2Source) return v1::OUTCOME_SOURCE_STAGE2;
  if (source == "tune") return v1::OUTCOME_SOURCE_TUNE;  // dock::OutcomeSource::kTune's name
  return v1::OUTCOME_SOURCE_FINETUNE;
}

void EncodeRecommendation(const dock::Recommendation& rec, v1::Recommendation* out) {
  out->set_rank(rec.rank);
  ToProto(rec.model, out->mutable_model());
  out->set_score(rec.score);
  out->set_similarity(rec.similarity);
  out->set_stage1_rank(rec.stage1_rank);
  out->set_stage2_score(rec.stage2_score);
  if (rec.has_stage1_score) out->set_stage1_score(rec.stage1_score);
  if (rec.has_prior) out->set_prior(rec.prior);
  out->set_scored(rec.scored);
  out->set_layer(rec.layer);
  for (const dock::LayerScore& layer : rec.layer_scores) {
    v1::LayerScore* l = out->add_layer_scores();
    l->set_name(layer.name);
    l->set_dim(layer.dim);
    l->set_score(layer.score);
  }
  out->set_reason(rec.reason);
}

}  // namespace

// ---- Enums and specs, proto -> engine.

absl::StatusOr<dock::TaskKind> FromProto(v1::TaskKind task, size_t shape_rank) {
  switch (task) {
    case v1::TASK_KIND_IMAGE_CLASSIFICATION: return dock::TaskKind::kImageClassification;
    case v1::TASK_KIND_TABULAR_CLASSIFICATION: return dock::TaskKind::kTabularClassification;
    case v1::TASK_KIND_TEXT_CLASSIFICATION: return dock::TaskKind::kTextClassification;
    case v1::TASK_KIND_AUDIO_CLASSIFICATION: return dock::TaskKind::kAudioClassification;
    case v1::TASK_KIND_UNSPECIFIED:
      // Unset: a per-sample shape [F] is tabular, [C, H, W] an image; anything else is an error.
      if (shape_rank == 1) return dock::TaskKind::kTabularClassification;
      if (shape_rank == 3) return dock::TaskKind::kImageClassification;
      return absl::InvalidArgumentError(
          "task is unspecified and cannot be inferred from a shape that is neither [F] nor "
          "[C, H, W]");
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown task kind ", task));
  }
}

absl::StatusOr<dock::ModelState> FromProto(v1::ModelState state) {
  switch (state) {
    case v1::MODEL_STATE_PENDING: return dock::ModelState::kPending;
    case v1::MODEL_STATE_PROBING: return dock::ModelState::kProbing;
    case v1::MODEL_STATE_READY: return dock::ModelState::kReady;
    case v1::MODEL_STATE_FAILED: return dock::ModelState::kFailed;
    default: return absl::InvalidArgumentError(absl::StrCat("unknown model state ", state));
  }
}

absl::StatusOr<dock::Metric> FromProto(v1::Metric metric) {
  switch (metric) {
    case v1::METRIC_UNSPECIFIED:
    case v1::METRIC_FUSION: return dock::Metric::kFusion;
    case v1::METRIC_TMI: return dock::Metric::kTmi;
    case v1::METRIC_LOGME: return dock::Metric::kLogMe;
    case v1::METRIC_LEEP: return dock::Metric::kLeep;
    case v1::METRIC_NCE: return dock::Metric::kNce;
    case v1::METRIC_HSCORE: return dock::Metric::kHScore;
    case v1::METRIC_SHRINKAGE_HSCORE: return dock::Metric::kShrinkageHScore;
    case v1::METRIC_GBC: return dock::Metric::kGbc;
    case v1::METRIC_SFDA: return dock::Metric::kSfda;
    case v1::METRIC_NONE: return dock::Metric::kNone;
    default: return absl::InvalidArgumentError(absl::StrCat("unknown metric ", metric));
  }
}

absl::StatusOr<dock::ModelSpec> FromProto(const v1::ModelSpec& spec) {
  dock::ModelSpec out;
  out.name = spec.name();
  out.version = spec.version();
  out.description = spec.description();
  out.input_shape.assign(spec.input_shape().begin(), spec.input_shape().end());
  auto task = FromProto(spec.task(), out.input_shape.size());
  if (!task.ok()) return task.status();
  out.task = *task;
  out.class_labels.assign(spec.class_labels().begin(), spec.class_labels().end());
  out.license = spec.license();
  out.tags.assign(spec.tags().begin(), spec.tags().end());
  switch (spec.kind()) {
    case v1::MODEL_KIND_UNSPECIFIED:
    case v1::MODEL_KIND_CLASSIFIER: out.kind = dock::ModelKind::kClassifier; break;
    case v1::MODEL_KIND_FEATURE_EXTRACTOR: out.kind = dock::ModelKind::kFeatureExtractor; break;
    default: return absl::InvalidArgumentError(absl::StrCat("unknown model kind ", spec.kind()));
  }
  out.remote_endpoint = spec.remote().endpoint();
  out.remote_model = spec.remote().model();
  out.remote_version = spec.remote().version();
  return out;
}

// ---- Engine -> proto.

v1::Metric ToProto(dock::Metric metric) {
  switch (metric) {
    case dock::Metric::kFusion: return v1::METRIC_FUSION;
    case dock::Metric::kTmi: return v1::METRIC_TMI;
    case dock::Metric::kLogMe: return v1::METRIC_LOGME;
    case dock::Metric::kLeep: return v1::METRIC_LEEP;
    case dock::Metric::kNce: return v1::METRIC_NCE;
    case dock::Metric::kHScore: return v1::METRIC_HSCORE;
    case dock::Metric::kShrinkageHScore: return v1::METRIC_SHRINKAGE_HSCORE;
    case dock::Metric::kGbc: return v1::METRIC_GBC;
    case dock::Metric::kSfda: return v1::METRIC_SFDA;
    case dock::Metric::kNone: return v1::METRIC_NONE;
  }
  return v1::METRIC_UNSPECIFIED;
}

v1::RecommendMode ToProto(dock::RecommendMode mode) {
  switch (mode) {
    case dock::RecommendMode::kScoredAll: return v1::RECOMMEND_MODE_SCORED_ALL;
    case dock::RecommendMode::kTwoStage: return v1::RECOMMEND_MODE_TWO_STAGE;
    case dock::RecommendMode::kStage1Only: return v1::RECOMMEND_MODE_STAGE1_ONLY;
  }
  return v1::RECOMMEND_MODE_UNSPECIFIED;
}

v1::ModelState ToProto(dock::ModelState state) {
  switch (state) {
    case dock::ModelState::kPending: return v1::MODEL_STATE_PENDING;
    case dock::ModelState::kProbing: return v1::MODEL_STATE_PROBING;
    case dock::ModelState::kReady: return v1::MODEL_STATE_READY;
    case dock::ModelState::kFailed: return v1::MODEL_STATE_FAILED;
  }
  return v1::MODEL_STATE_UNSPECIFIED;
}

v1::TaskKind ToProto(dock::TaskKind task) {
  switch (task) {
    case dock::TaskKind::kImageClassification: return v1::TASK_KIND_IMAGE_CLASSIFICATION;
    case dock::TaskKind::kTabularClassification: return v1::TASK_KIND_TABULAR_CLASSIFICATION;
    case dock::TaskKind::kTextClassification: return v1::TASK_KIND_TEXT_CLASSIFICATION;
    case dock::TaskKind::kAudioClassification: return v1::TASK_KIND_AUDIO_CLASSIFICATION;
  }
  return v1::TASK_KIND_UNSPECIFIED;
}

void ToProto(const dock::ModelRecord& record, v1::Model* out) {
  out->set_id(record.id);
  v1::ModelSpec* spec = out->mutable_spec();
  spec->set_name(record.spec.name);
  spec->set_version(record.spec.version);
  spec->set_description(record.spec.description);
  spec->set_task(ToProto(record.spec.task));
  for (int64_t d : record.spec.input_shape) spec->add_input_shape(d);
  for (const std::string& label : record.spec.class_labels) spec->add_class_labels(label);
  spec->set_license(record.spec.license);
  for (const std::string& tag : record.spec.tags) spec->add_tags(tag);
  spec->set_kind(record.spec.kind == dock::ModelKind::kFeatureExtractor
                     ? v1::MODEL_KIND_FEATURE_EXTRACTOR
                     : v1::MODEL_KIND_CLASSIFIER);
  if (dock::IsRemote(record.spec)) {
    spec->mutable_remote()->set_endpoint(record.spec.remote_endpoint);
    spec->mutable_remote()->set_model(record.spec.remote_model);
    spec->mutable_remote()->set_version(record.spec.remote_version);
  }
  out->set_state(ToProto(record.state));
  out->set_state_reason(record.state_reason);
  out->set_sha256(record.sha256);
  out->set_size_bytes(record.size_bytes);
  out->set_has_embed(record.has_embed);
  out->set_feature_dim(record.feature_dim);
  out->set_created_unix_ms(record.created_unix_ms);
  out->set_probe_millis(record.probe_millis);
  out->set_owner_key_id(record.owner_key_id);
  for (const dock::ModelLayer& layer : record.layers) {
    v1::ModelLayer* l = out->add_layers();
    l->set_name(layer.name);
    l->set_dim(layer.dim);
  }
}

v1::ApiKey ToProto(const dock::ApiKeyInfo& key) {
  v1::ApiKey out;
  out.set_id(key.id);
  out.set_name(key.name);
  out.set_role(static_cast<v1::ApiKeyRole>(static_cast<int>(key.role)));
  out.set_created_unix_ms(key.created_unix_ms);
  out.set_revoked(key.revoked);
  return out;
}

void ToProto(const dock::AlignmentVersion& v, v1::AlignmentVersion* out) {
  out->set_version(v.version);
  out->set_created_unix_ms(v.created_unix_ms);
  out->set_serving(v.serving);
  out->set_adopted(v.adopted);
  out->set_num_queries(v.num_queries);
  out->set_num_records(v.num_records);
  out->set_folds(v.folds);
  out->set_validation_untrained(v.validation_untrained);
  out->set_validation_serving(v.validation_serving);
  out->set_validation_trained(v.validation_trained);
  out->set_weight(v.weight);
  out->set_shrinkage(v.shrinkage);
  out->set_sharpness(v.sharpness);
  out->set_training_seconds(v.training_seconds);
  out->set_reason(v.reason);
  out->set_vectors_trained(v.vectors_trained);
  out->set_vectors_validation_untrained(v.vectors_validation_untrained);
  out->set_vectors_validation_trained(v.vectors_validation_trained);
  out->set_vectors_reason(v.vectors_reason);
  out->set_weak_queries(v.weak_queries);
  out->set_weak_weight(v.weak_weight);
  out->set_stage2_weight(v.stage2_weight);
  out->set_prior_target(v.prior_target);
}

void ToProto(const dock::TrainingStatus& job, v1::TrainingJob* out) {
  switch (job.state) {
    case dock::TrainingStatus::State::kIdle: out->set_state(v1::TRAINING_STATE_IDLE); break;
    case dock::TrainingStatus::State::kRunning: out->set_state(v1::TRAINING_STATE_RUNNING); break;
    case dock::TrainingStatus::State::kDone: out->set_state(v1::TRAINING_STATE_DONE); break;
    case dock::TrainingStatus::State::kFailed: out->set_state(v1::TRAINING_STATE_FAILED); break;
  }
  out->set_message(job.message);
  if (job.state == dock::TrainingStatus::State::kDone) ToProto(job.result, out->mutable_result());
  out->set_started_unix_ms(job.started_unix_ms);
  out->set_finished_unix_ms(job.finished_unix_ms);
}

void ToProto(const dock::ScrubResult& result, v1::ScrubReport* out) {
  switch (result.state) {
    case dock::ScrubResult::State::kIdle: out->set_state(v1::SCRUB_STATE_IDLE); break;
    case dock::ScrubResult::State::kRunning: out->set_state(v1::SCRUB_STATE_RUNNING); break;
    case dock::ScrubResult::State::kDone: out->set_state(v1::SCRUB_STATE_DONE); break;
    case dock::ScrubResult::State::kFailed: out->set_state(v1::SCRUB_STATE_FAILED); break;
  }
  out->set_message(result.message);
  out->set_started_unix_ms(result.started_unix_ms);
  out->set_finished_unix_ms(result.finished_unix_ms);
  out->set_blobs_checked(result.blobs_checked);
  out->set_blobs_ok(result.blobs_ok);
  out->set_blobs_bad(result.blobs_bad);
  out->set_blobs_restored(result.blobs_restored);
  out->set_bytes_hashed(result.bytes_hashed);
  out->set_models_failed(result.models_failed);
  out->set_models_requeued(result.models_requeued);
  out->set_features_checked(result.features_checked);
  out->set_features_bad(result.features_bad);
  for (const std::string& id : result.bad_model_ids) out->add_bad_model_ids(id);
  for (const std::string& sha : result.bad_blobs) out->add_bad_blobs(sha);
}


// ---- Requests -> engine queries.

absl::StatusOr<dock::ModelSpec> DecodeRemoteModel(const v1::RegisterRemoteModelRequest& request) {
  if (request.spec().remote().endpoint().empty() || request.spec().remote().model().empty()) {
    return absl::InvalidArgumentError(
        "spec.remote needs the endpoint (HOST:PORT or http[s]://HOST:PORT) and the model's name "
        "there");
  }
  return FromProto(request.spec());
}

absl::StatusOr<NearestQuery> DecodeListNearest(const v1::ListNearestModelsRequest& request) {
  constexpr int kMaxNearest = 100;
  if (request.model().empty()) {
    return absl::InvalidArgumentError("model (an id or a name) is required");
  }
  if (request.k() < 0 || request.k() > kMaxNearest) {
    return absl::InvalidArgumentError(
        absl::StrCat("k must be in [0, ", kMaxNearest, "] (0 = 5), got ", request.k()));
  }
  return NearestQuery{request.model(), request.k()};
}

absl::StatusOr<ListModelsQuery> DecodeListModels(const v1::ListModelsRequest& request) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must not be negative, got ", request.page_size()));
  }
  ListModelsQuery query;
  query.page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  if (query.page_size > kMaxPageSize) query.page_size = kMaxPageSize;
  dock::ListFilter& filter = query.filter;
  filter.name_contains = request.name_contains();
  if (request.task() != v1::TASK_KIND_UNSPECIFIED) {
    auto task = FromProto(request.task(), 0);
    if (!task.ok()) return task.status();
    filter.has_task = true;
    filter.task = *task;
  }
  filter.input_shape.assign(request.input_shape().begin(), request.input_shape().end());
  filter.tag = request.tag();
  if (request.state() != v1::MODEL_STATE_UNSPECIFIED) {
    auto state = FromProto(request.state());
    if (!state.ok()) return state.status();
    filter.has_state = true;
    filter.state = *state;
  }
  return query;
}

absl::StatusOr<dock::ModelUpdate> DecodeUpdateModel(const v1::UpdateModelRequest& request) {
  if (request.model().empty()) {
    return absl::InvalidArgumentError("model (an id or a name) is required");
  }
  if (!request.replace_tags() && request.tags_size() > 0) {
    return absl::InvalidArgumentError(
        "tags are replaced as a whole: set replace_tags with the new tags");
  }
  dock::ModelUpdate update;
  update.has_description = request.has_description();
  update.description = request.description();
  update.has_license = request.has_license();
  update.license = request.license();
  update.has_tags = request.replace_tags();
  update.tags.assign(request.tags().begin(), request.tags().end());
  return update;
}

absl::StatusOr<dock::ApiKeyRole> DecodeApiKeyRole(v1::ApiKeyRole role) {
  if (role == v1::API_KEY_ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError("role is required: consumer, provider or admin");
  }
  return static_cast<dock::ApiKeyRole>(static_cast<int>(role));
}

absl::StatusOr<dock::RecommendQuery> DecodeRecommendHeader(const v1::RecommendHeader& header) {
  dock::RecommendQuery query;
  auto task = FromProto(header.task(), header.sample_shape_size());
  if (!task.ok()) return task.status();
  if ((*task == dock::TaskKind::kTabularClassification ||
       *task == dock::TaskKind::kAudioClassification) &&
      header.encoding() == v1::SAMPLE_ENCODING_UINT8) {
    return absl::InvalidArgumentError(
        "SAMPLE_ENCODING_UINT8 is for images only; send tabular data and audio as FLOAT32");
  }
  auto metric = FromProto(header.metric());
  if (!metric.ok()) return metric.status();
  query.task = *task;
  query.metric = *metric;
  return query;
}

absl::Status DecodeRecommendData(const v1::RecommendHeader& header, const std::string& data,
                                 dock::RecommendQuery* query) {
  if (header.encoding() == v1::SAMPLE_ENCODING_UTF8_TEXT) {
    auto texts = DecodeTextSamples(header, data);
    if (!texts.ok()) return texts.status();
    query->dataset = *std::move(texts);
  } else {
    query->dataset.samples = DecodeSamples(header, data);
  }
  query->dataset.labels.assign(header.labels().begin(), header.labels().end());
  query->dataset.class_names.assign(header.class_names().begin(), header.class_names().end());
  query->top_k = header.top_k() == 0 ? 5 : header.top_k();
  query->num_candidates = header.num_candidates();
  query->brute_force = header.brute_force();
  if (!(header.latency_budget_ms() >= 0) || !std::isfinite(header.latency_budget_ms())) {
    return absl::InvalidArgumentError(
        "latency_budget_ms must be >= 0 (0 = the server's default)");
  }
  query->latency_budget_millis = header.latency_budget_ms();
  query->all_versions = header.all_versions();
  return absl::OkStatus();
}

absl::StatusOr<dock::OutcomeReport> DecodeOutcomeHeader(const v1::ReportOutcomeHeader& header) {
  const v1::RecommendHeader& dataset = header.dataset();
  if (dataset.encoding() == v1::SAMPLE_ENCODING_UTF8_TEXT) {
    return absl::UnimplementedError(
        "outcome reports on text datasets are not accepted yet: the learning loop learns in "
        "the grey image space only");
  }
  auto expected = ExpectedQueryBytes(dataset);
  if (!expected.ok()) return expected.status();
  auto task = FromProto(dataset.task(), dataset.sample_shape_size());
  if (!task.ok()) return task.status();
  if (*task == dock::TaskKind::kTabularClassification &&
      dataset.encoding() == v1::SAMPLE_ENCODING_UINT8) {
    return absl::InvalidArgumentError(
        "SAMPLE_ENCODING_UINT8 is for images only; send tabular data as FLOAT32");
  }
  if (header.outcomes_size() == 0) {
    return absl::InvalidArgumentError(
        "outcomes are required: at least one model and its accuracy");
  }
  if (header.source() == v1::OUTCOME_SOURCE_STAGE2) {
    return absl::InvalidArgumentError(
        "source STAGE2 is kept by the dock itself from recommendations (server flag "
        "--learn-from-recommendations); report FINETUNE or IMPORT");
  }
  if (header.source() == v1::OUTCOME_SOURCE_TUNE) {
    return absl::InvalidArgumentError(
        "source TUNE is kept by the dock itself from its own fine-tunes (Tune); report FINETUNE "
        "or IMPORT");
  }
  if (header.outcomes_size() > 100000) {
    return absl::InvalidArgumentError("at most 100,000 outcomes per report");
  }
  dock::OutcomeReport report;
  report.task = *task;
  report.source = header.source() == v1::OUTCOME_SOURCE_IMPORT ? dock::OutcomeSource::kImport
                                                               : dock::OutcomeSource::kFinetune;
  return report;
}

absl::Status DecodeOutcomeData(const v1::ReportOutcomeHeader& header, const std::string& data,
                               dock::OutcomeReport* report) {
  const v1::RecommendHeader& dataset = header.dataset();
  report->dataset.samples = DecodeSamples(dataset, data);
  report->dataset.labels.assign(dataset.labels().begin(), dataset.labels().end());
  for (const v1::Outcome& o : header.outcomes()) {
    if (o.model().empty()) {
      return absl::InvalidArgumentError("every outcome names a model (id or name)");
    }
    report->outcomes.push_back({o.model(), o.accuracy()});
  }
  return absl::OkStatus();
}

// ---- Engine results -> responses.

void Encode(const dock::ModelPage& page, v1::ListModelsResponse* out) {
  for (const dock::ModelRecord& record : page.models) ToProto(record, out->add_models());
  out->set_next_page_token(page.next_page_token);
  out->set_total_size(page.total_size);
}

void Encode(const std::vector<dock::NearestModel>& nearest, v1::ListNearestModelsResponse* out) {
  for (const dock::NearestModel& n : nearest) {
    v1::NearestModel* entry = out->add_models();
    ToProto(n.model, entry->mutable_model());
    entry->set_similarity(n.similarity);
  }
}

void Encode(const std::vector<dock::AuditEntry>& entries, v1::ListAuditLogResponse* out) {
  for (const dock::AuditEntry& e : entries) {
    v1::AuditEntry* entry = out->add_entries();
    entry->set_id(e.id);
    entry->set_unix_ms(e.unix_ms);
    entry->set_actor(e.actor);
    entry->set_action(e.action);
    entry->set_target(e.target);
    entry->set_detail(e.detail);
  }
}

void Encode(const dock::RecommendResult& result, v1::RecommendResponse* out) {
  for (const dock::Recommendation& rec : result.results) {
    EncodeRecommendation(rec, out->add_results());
  }
  v1::StageTimings* timings = out->mutable_timings();
  timings->set_encode_query_millis(result.timings.encode_query_millis);
  timings->set_stage1_millis(result.timings.stage1_millis);
  timings->set_stage2_millis(result.timings.stage2_millis);
  out->set_num_scored(result.num_scored);
  out->set_num_samples_scored(result.num_samples_scored);
  out->set_num_compatible(result.num_compatible);
  out->set_num_cached(result.num_cached);
  out->set_metric(ToProto(result.metric));
  out->set_label_source(result.label_source);
  out->set_mode(ToProto(result.mode));
  out->set_mode_reason(result.mode_reason);
  out->set_latency_budget_ms(result.latency_budget_millis);
  out->set_alignment_version(result.alignment_version);
  out->set_recorded_outcomes(result.recorded_outcomes);
  for (const std::string& warning : result.warnings) out->add_warnings(warning);
}

void Encode(const dock::OutcomeReportResult& result, v1::ReportOutcomeResponse* out) {
  out->set_query_id(result.query_id);
  out->set_num_stored(result.num_stored);
  out->set_num_classes(result.num_classes);
  out->set_num_stage1_scores(result.num_stage1_scores);
  out->set_total_records(result.total_records);
  out->set_total_queries(result.total_queries);
}

void Encode(const dock::RecordList& records, v1::ListRecordsResponse* out) {
  for (const dock::OutcomeRecord& r : records.records) {
    v1::OutcomeRecord* record = out->add_records();
    record->set_id(r.id);
    record->set_query_id(r.query_id);
    record->set_model_id(r.model_id);
    record->set_model_name(r.model_name);
    record->set_accuracy(r.accuracy);
    record->set_source(ToProtoSource(r.source));
    record->set_created_unix_ms(r.created_unix_ms);
    record->set_detail(r.detail);
  }
  out->set_total_records(records.total_records);
  out->set_total_queries(records.total_queries);
}

void Encode(const dock::AlignmentList& list, v1::ListAlignmentsResponse* out) {
  out->set_serving_version(list.serving_version);
  for (const dock::AlignmentVersion& v : list.versions) ToProto(v, out->add_versions());
  ToProto(list.last_training, out->mutable_last_training());
}

// ---- Rank, then tune.

absl::StatusOr<dock::TuneQuery> DecodeTuneHeader(const v1::TuneHeader& header) {
  if (header.dataset().encoding() == v1::SAMPLE_ENCODING_UTF8_TEXT) {
    return absl::UnimplementedError("tuning on text datasets is not supported yet");
  }
  auto recommend = DecodeRecommendHeader(header.dataset());
  if (!recommend.ok()) return recommend.status();
  if (header.dataset().labels_size() == 0) {
    return absl::InvalidArgumentError("tuning needs the dataset's labels (header.dataset.labels)");
  }
  if (!std::isfinite(header.budget_seconds()) || header.budget_seconds() < 0 ||
      !std::isfinite(header.learning_rate()) || header.learning_rate() < 0 ||
      header.max_epochs() < 0 || header.patience() < 0 || header.max_epochs() > 1000) {
    return absl::InvalidArgumentError(
        "budget_seconds and learning_rate must be finite and >= 0, max_epochs in 0..1000, "
        "patience >= 0 (0 = the default)");
  }
  dock::TuneQuery query;
  query.task = recommend->task;
  if (header.top_k() != 0) query.top_k = header.top_k();
  if (header.budget_seconds() > 0) query.budget = absl::Seconds(header.budget_seconds());
  query.seed = header.seed();
  if (header.max_epochs() > 0) query.max_epochs = header.max_epochs();
  if (header.patience() > 0) query.patience = header.patience();
  if (header.learning_rate() > 0) query.learning_rate = header.learning_rate();
  return query;
}

absl::Status DecodeTuneData(const v1::TuneHeader& header, const std::string& data,
                            dock::TuneQuery* query) {
  auto recommend = DecodeRecommendHeader(header.dataset());
  if (!recommend.ok()) return recommend.status();
  if (absl::Status s = DecodeRecommendData(header.dataset(), data, &*recommend); !s.ok()) {
    return s;
  }
  query->dataset = std::move(recommend->dataset);
  return absl::OkStatus();
}

void ToProto(const dock::TuneEpochRow& row, v1::TuneEpoch* out) {
  out->set_epoch(row.epoch);
  out->set_train_loss(row.train_loss);
  out->set_val_accuracy(row.val_accuracy);
  out->set_millis(row.millis);
}

void Encode(const dock::TuneProgressEvent& event, v1::TuneProgress* out) {
  out->set_candidate(event.candidate);
  out->set_model_name(event.model_name);
  ToProto(event.row, out->mutable_epoch());
}

void Encode(const dock::TuneResult& result, v1::TuneResult* out) {
  for (const dock::TuneCandidate& c : result.candidates) {
    v1::TuneCandidate* row = out->add_candidates();
    ToProto(c.model, row->mutable_model());
    row->set_predicted_rank(c.predicted_rank);
    row->set_score(c.score);
    row->set_ok(c.ok);
    row->set_failure(c.failure);
    for (const dock::TuneEpochRow& e : c.epochs) ToProto(e, row->add_epochs());
    row->set_best_epoch(c.best_epoch);
    row->set_best_accuracy(c.best_accuracy);
    row->set_stop_reason(c.stop_reason);
    row->set_millis(c.millis);
  }
  out->set_winner(result.winner);
  out->set_winner_license(result.winner_license);
  out->set_seed(result.seed);
  out->set_train_samples(result.train_samples);
  out->set_val_samples(result.val_samples);
  out->set_schedule(result.schedule);
  out->set_query_id(result.query_id);
  out->set_recorded_outcomes(result.recorded_outcomes);
  out->set_model_size_bytes(static_cast<int64_t>(result.tuned_model.size()));
}

}  // namespace modeldock::server
