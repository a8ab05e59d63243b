#include "server/service.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/request_decoding.h"
#include "spdlog/spdlog.h"

namespace modeldock::server {
namespace {

grpc::Status InvalidArgument(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

grpc::StatusCode ToGrpcCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return grpc::StatusCode::OK;
    case absl::StatusCode::kCancelled: return grpc::StatusCode::CANCELLED;
    case absl::StatusCode::kUnknown: return grpc::StatusCode::UNKNOWN;
    case absl::StatusCode::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    case absl::StatusCode::kDeadlineExceeded: return grpc::StatusCode::DEADLINE_EXCEEDED;
    case absl::StatusCode::kNotFound: return grpc::StatusCode::NOT_FOUND;
    case absl::StatusCode::kAlreadyExists: return grpc::StatusCode::ALREADY_EXISTS;
    case absl::StatusCode::kPermissionDenied: return grpc::StatusCode::PERMISSION_DENIED;
    case absl::StatusCode::kResourceExhausted: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case absl::StatusCode::kFailedPrecondition: return grpc::StatusCode::FAILED_PRECONDITION;
    case absl::StatusCode::kAborted: return grpc::StatusCode::ABORTED;
    case absl::StatusCode::kOutOfRange: return grpc::StatusCode::OUT_OF_RANGE;
    case absl::StatusCode::kUnimplemented: return grpc::StatusCode::UNIMPLEMENTED;
    case absl::StatusCode::kInternal: return grpc::StatusCode::INTERNAL;
    case absl::StatusCode::kUnavailable: return grpc::StatusCode::UNAVAILABLE;
    case absl::StatusCode::kDataLoss: return grpc::StatusCode::DATA_LOSS;
    case absl::StatusCode::kUnauthenticated: return grpc::StatusCode::UNAUTHENTICATED;
    default: return grpc::StatusCode::UNKNOWN;
  }
}

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

bool IsTerminal(dock::ModelState state) {
  return state == dock::ModelState::kReady || state == dock::ModelState::kFailed;
}

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Reads the sample data of a Recommend or ReportOutcome stream after its header: the header's
// inline data first, then chunks of at most kMaxChunkBytes, exactly `expected` bytes in all.
template <typename Request>
grpc::Status ReadSampleData(grpc::ServerContext* context, grpc::ServerReader<Request>* reader,
                            int64_t expected, const char* call, std::string* data) {
  if (static_cast<int64_t>(data->size()) > expected) {
    return InvalidArgument(absl::StrCat("inline_data has ", data->size(), " bytes but ", expected,
                                        " are expected"));
  }
  data->reserve(expected);
  Request request;
  while (reader->Read(&request)) {
    if (request.has_header()) {
      return InvalidArgument(absl::StrCat("a header may only be the first ", call, " message"));
    }
    const std::string& chunk = request.chunk();
    if (static_cast<int64_t>(chunk.size()) > kMaxChunkBytes) {
      return InvalidArgument(absl::StrCat("chunk of ", chunk.size(),
                                          " bytes exceeds the limit of ", kMaxChunkBytes,
                                          " bytes (1 MiB) per message"));
    }
    if (static_cast<int64_t>(data->size() + chunk.size()) > expected) {
      return InvalidArgument(absl::StrCat(
          "more sample data than the header describes: expected ", expected,
          " bytes (num_samples x prod(sample_shape) x bytes per value)"));
    }
    data->append(chunk);
  }
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, absl::StrCat(call, " cancelled by the client"));
  }
  if (static_cast<int64_t>(data->size()) != expected) {
    return InvalidArgument(absl::StrCat(
        "sample data truncated: got ", data->size(), " of ", expected,
        " bytes (num_samples x prod(sample_shape) x bytes per value)"));
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(ToGrpcCode(status.code()), std::string(status.message()));
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

grpc::Status ModelDockServiceImpl::RegisterModel(
    grpc::ServerContext* context, grpc::ServerReader<v1::RegisterModelRequest>* reader,
    v1::RegisterModelResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  v1::RegisterModelRequest request;
  if (!reader->Read(&request)) {
    return InvalidArgument("empty RegisterModel stream: the first message must be a header");
  }
  if (!request.has_header()) {
    return InvalidArgument("the first RegisterModel message must be a header, got a data chunk");
  }
  const v1::RegisterModelHeader header = request.header();
  auto spec = DecodeRegisterHeader(header);
  if (!spec.ok()) return ToGrpcStatus(spec.status());
  spdlog::debug("RegisterModel name={} size={} peer={}", spec->name, header.size_bytes(),
                context->peer());

  auto upload =
      dock_->BeginRegistration(*spec, header.size_bytes(), header.sha256(), call.caller().id);
  if (!upload.ok()) return ToGrpcStatus(upload.status());

  // On every early return the Upload is destroyed, which discards its temporary file.
  int64_t received = 0;
  while (reader->Read(&request)) {
    if (request.has_header()) {
      return InvalidArgument("a header may only be the first RegisterModel message");
    }
    const std::string& chunk = request.chunk();
    if (static_cast<int64_t>(chunk.size()) > kMaxChunkBytes) {
      return InvalidArgument(absl::StrCat("chunk of ", chunk.size(),
                                          " bytes exceeds the limit of ", kMaxChunkBytes,
                                          " bytes (1 MiB) per message"));
    }
    if (received + static_cast<int64_t>(chunk.size()) > header.size_bytes()) {
      return InvalidArgument(absl::StrCat("upload longer than declared: got more than ",
                                          header.size_bytes(), " bytes (header.size_bytes)"));
    }
    if (absl::Status status = (*upload)->Write(chunk); !status.ok()) {
      return ToGrpcStatus(status);
    }
    received += static_cast<int64_t>(chunk.size());
  }
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "upload cancelled by the client");
  }
  if (received < header.size_bytes()) {
    return InvalidArgument(
        absl::StrCat("upload truncated: got ", received, " of ", header.size_bytes(), " bytes"));
  }

  auto result = dock_->FinishRegistration(std::move(*upload));
  if (!result.ok()) {
    spdlog::info("RegisterModel '{}' rejected: {}", spec->name, result.status().ToString());
    return ToGrpcStatus(result.status());
  }
  ToProto(result->model, response->mutable_model());
  response->set_deduplicated(result->deduplicated);
  spdlog::info("registered model {} '{}' ({} bytes{})", result->model.id, spec->name,
               header.size_bytes(), result->deduplicated ? ", deduplicated" : "");
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::RegisterRemoteModel(
    grpc::ServerContext* context, const v1::RegisterRemoteModelRequest* request,
    v1::RegisterRemoteModelResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->spec().remote().endpoint().empty() || request->spec().remote().model().empty()) {
    return InvalidArgument("spec.remote needs the endpoint (HOST:PORT) and the model's name there");
  }
  auto spec = FromProto(request->spec());
  if (!spec.ok()) return ToGrpcStatus(spec.status());
  auto result = dock_->RegisterRemote(*spec, call.caller().id);
  if (!result.ok()) return ToGrpcStatus(result.status());
  ToProto(result->model, response->mutable_model());
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::GetModel(grpc::ServerContext* context,
                                            const v1::GetModelRequest* request,
                                            v1::GetModelResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->model().empty()) return InvalidArgument("model (an id or a name) is required");
  auto record = dock_->GetModel(request->model());
  if (!record.ok()) return ToGrpcStatus(record.status());
  ToProto(*record, response->mutable_model());
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::ListModels(grpc::ServerContext* context,
                                              const v1::ListModelsRequest* request,
                                              v1::ListModelsResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->page_size() < 0) {
    return InvalidArgument(
        absl::StrCat("page_size must not be negative, got ", request->page_size()));
  }
  int page_size = request->page_size() == 0 ? kDefaultPageSize : request->page_size();
  if (page_size > kMaxPageSize) page_size = kMaxPageSize;

  dock::ListFilter filter;
  filter.name_contains = request->name_contains();
  if (request->task() != v1::TASK_KIND_UNSPECIFIED) {
    auto task = FromProto(request->task(), 0);
    if (!task.ok()) return ToGrpcStatus(task.status());
    filter.has_task = true;
    filter.task = *task;
  }
  filter.input_shape.assign(request->input_shape().begin(), request->input_shape().end());
  filter.tag = request->tag();
  if (request->state() != v1::MODEL_STATE_UNSPECIFIED) {
    auto state = FromProto(request->state());
    if (!state.ok()) return ToGrpcStatus(state.status());
    filter.has_state = true;
    filter.state = *state;
  }
  auto page = dock_->ListModels(filter, page_size, request->page_token());
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (const dock::ModelRecord& record : page->models) {
    ToProto(record, response->add_models());
  }
  response->set_next_page_token(page->next_page_token);
  response->set_total_size(page->total_size);
  return grpc::Status::OK;
}

// Providers change only the models they registered; admins any.
grpc::Status ModelDockServiceImpl::CheckOwnership(const dock::ApiKeyInfo& caller,
                                                  const std::string& model, const char* verb) {
  if (caller.role == dock::ApiKeyRole::kAdmin) return grpc::Status::OK;
  auto record = dock_->GetModel(model);
  if (!record.ok()) return ToGrpcStatus(record.status());
  if (record->owner_key_id == caller.id) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      absl::StrCat("model '", record->spec.name, "' was registered by key ",
                                   record->owner_key_id.empty() ? "(none)" : record->owner_key_id,
                                   "; a provider ", verb, " only its own models (admins any)"));
}

grpc::Status ModelDockServiceImpl::DeleteModel(grpc::ServerContext* context,
                                               const v1::DeleteModelRequest* request,
                                               v1::DeleteModelResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->model().empty()) return InvalidArgument("model (an id or a name) is required");
  // Every version of a name has the key that registered the name as its owner.
  if (grpc::Status s = CheckOwnership(call.caller(), request->model(), "deletes"); !s.ok()) {
    return s;
  }
  if (request->all_versions()) {
    auto ids = dock_->DeleteAllVersions(request->model(), call.caller().id);
    if (!ids.ok()) return ToGrpcStatus(ids.status());
    spdlog::info("deleted {} version(s) of '{}'", ids->size(), request->model());
    response->set_id(ids->front());
    for (const std::string& id : *ids) response->add_ids(id);
    return grpc::Status::OK;
  }
  auto id = dock_->DeleteModel(request->model(), call.caller().id);
  if (!id.ok()) return ToGrpcStatus(id.status());
  spdlog::info("deleted model {} ('{}')", *id, request->model());
  response->set_id(*id);
  response->add_ids(*id);
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::UpdateModel(grpc::ServerContext* context,
                                               const v1::UpdateModelRequest* request,
                                               v1::UpdateModelResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->model().empty()) return InvalidArgument("model (an id or a name) is required");
  if (!request->replace_tags() && request->tags_size() > 0) {
    return InvalidArgument("tags are replaced as a whole: set replace_tags with the new tags");
  }
  if (grpc::Status s = CheckOwnership(call.caller(), request->model(), "updates"); !s.ok()) {
    return s;
  }
  dock::ModelUpdate update;
  update.has_description = request->has_description();
  update.description = request->description();
  update.has_license = request->has_license();
  update.license = request->license();
  update.has_tags = request->replace_tags();
  update.tags.assign(request->tags().begin(), request->tags().end());
  auto record = dock_->UpdateModel(request->model(), update, call.caller().id);
  if (!record.ok()) return ToGrpcStatus(record.status());
  ToProto(*record, response->mutable_model());
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::ListAuditLog(grpc::ServerContext* context,
                                                const v1::ListAuditLogRequest* request,
                                                v1::ListAuditLogResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->limit() < 0 || request->limit() > 10000) {
    return InvalidArgument("limit must be in 0..10000 (0 = 100)");
  }
  auto entries = dock_->AuditLog(request->limit());
  if (!entries.ok()) return ToGrpcStatus(entries.status());
  for (const dock::AuditEntry& e : *entries) {
    v1::AuditEntry* out = response->add_entries();
    out->set_id(e.id);
    out->set_unix_ms(e.unix_ms);
    out->set_actor(e.actor);
    out->set_action(e.action);
    out->set_target(e.target);
    out->set_detail(e.detail);
  }
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::WatchModel(grpc::ServerContext* context,
                                              const v1::WatchModelRequest* request,
                                              grpc::ServerWriter<v1::WatchModelResponse>* writer) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->model().empty()) return InvalidArgument("model (an id or a name) is required");
  auto record = dock_->GetModel(request->model());
  if (!record.ok()) return ToGrpcStatus(record.status());
  const std::string id = record->id;
  int64_t sent_revision = -1;
  // Short waits so that a cancelled client or a shutting-down server is noticed within a second.
  while (true) {
    if (record->revision != sent_revision) {
      v1::WatchModelResponse message;
      ToProto(*record, message.mutable_model());
      if (!writer->Write(message)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away");
      }
      sent_revision = record->revision;
    }
    if (IsTerminal(record->state)) return grpc::Status::OK;
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled by the client");
    }
    record = dock_->WaitForChange(id, sent_revision, absl::Seconds(1));
    if (!record.ok()) return ToGrpcStatus(record.status());
  }
}

grpc::Status ModelDockServiceImpl::Recommend(grpc::ServerContext* context,
                                             grpc::ServerReader<v1::RecommendRequest>* reader,
                                             v1::RecommendResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  const auto start = std::chrono::steady_clock::now();
  v1::RecommendRequest request;
  if (!reader->Read(&request)) {
    return InvalidArgument("empty Recommend stream: the first message must be a header");
  }
  if (!request.has_header()) {
    return InvalidArgument("the first Recommend message must be a header, got a data chunk");
  }
  v1::RecommendHeader header = std::move(*request.mutable_header());
  auto expected = ExpectedQueryBytes(header);
  if (!expected.ok()) return ToGrpcStatus(expected.status());

  dock::RecommendQuery query;
  std::vector<int64_t> sample_shape(header.sample_shape().begin(), header.sample_shape().end());
  auto task = FromProto(header.task(), sample_shape.size());
  if (!task.ok()) return ToGrpcStatus(task.status());
  if ((*task == dock::TaskKind::kTabularClassification ||
       *task == dock::TaskKind::kAudioClassification) &&
      header.encoding() == v1::SAMPLE_ENCODING_UINT8) {
    return InvalidArgument(
        "SAMPLE_ENCODING_UINT8 is for images only; send tabular data and audio as FLOAT32");
  }
  auto metric = FromProto(header.metric());
  if (!metric.ok()) return ToGrpcStatus(metric.status());

  // Inline data comes first; chunks, if any, continue after it.
  std::string data = std::move(*header.mutable_inline_data());
  if (grpc::Status s = ReadSampleData(context, reader, *expected, "Recommend", &data); !s.ok()) {
    return s;
  }

  if (header.encoding() == v1::SAMPLE_ENCODING_UTF8_TEXT) {
    auto texts = DecodeTextSamples(header, data);
    if (!texts.ok()) return ToGrpcStatus(texts.status());
    query.dataset = *std::move(texts);
  } else {
    query.dataset.samples = DecodeSamples(header, data);
  }
  std::string().swap(data);
  query.dataset.labels.assign(header.labels().begin(), header.labels().end());
  query.dataset.class_names.assign(header.class_names().begin(), header.class_names().end());
  query.task = *task;
  query.top_k = header.top_k() == 0 ? 5 : header.top_k();
  query.num_candidates = header.num_candidates();
  query.metric = *metric;
  query.brute_force = header.brute_force();
  if (!(header.latency_budget_ms() >= 0) || !std::isfinite(header.latency_budget_ms())) {
    return InvalidArgument("latency_budget_ms must be >= 0 (0 = the server's default)");
  }
  query.latency_budget_millis = header.latency_budget_ms();
  query.all_versions = header.all_versions();
  // A client that hangs up or whose deadline passes stops the scoring of further candidates.
  query.is_cancelled = [context] { return context->IsCancelled(); };
  const double receive_millis = MillisSince(start);
  spdlog::debug("Recommend n={} shape={} metric={} top_k={}", header.num_samples(),
                ShapeToString(sample_shape), v1::Metric_Name(ToProto(query.metric)),
                query.top_k);

  auto result = dock_->Recommend(query);
  if (!result.ok()) return ToGrpcStatus(result.status());
  for (const dock::Recommendation& rec : result->results) {
    v1::Recommendation* out = response->add_results();
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
  v1::StageTimings* timings = response->mutable_timings();
  timings->set_receive_millis(receive_millis);
  timings->set_encode_query_millis(result->timings.encode_query_millis);
  timings->set_stage1_millis(result->timings.stage1_millis);
  timings->set_stage2_millis(result->timings.stage2_millis);
  // The engine's total does not include receiving and decoding the upload.
  timings->set_total_millis(MillisSince(start));
  response->set_num_scored(result->num_scored);
  response->set_num_compatible(result->num_compatible);
  response->set_num_cached(result->num_cached);
  response->set_metric(ToProto(result->metric));
  response->set_label_source(result->label_source);
  response->set_mode(ToProto(result->mode));
  response->set_mode_reason(result->mode_reason);
  response->set_latency_budget_ms(result->latency_budget_millis);
  response->set_alignment_version(result->alignment_version);
  response->set_recorded_outcomes(result->recorded_outcomes);
  for (const std::string& warning : result->warnings) response->add_warnings(warning);
  return grpc::Status::OK;
}

namespace {

v1::ApiKey ToProto(const dock::ApiKeyInfo& key) {
  v1::ApiKey out;
  out.set_id(key.id);
  out.set_name(key.name);
  out.set_role(static_cast<v1::ApiKeyRole>(static_cast<int>(key.role)));
  out.set_created_unix_ms(key.created_unix_ms);
  out.set_revoked(key.revoked);
  return out;
}

}  // namespace

grpc::Status ModelDockServiceImpl::CreateApiKey(grpc::ServerContext* context,
                                                const v1::CreateApiKeyRequest* request,
                                                v1::CreateApiKeyResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->role() == v1::API_KEY_ROLE_UNSPECIFIED) {
    return InvalidArgument("role is required: consumer, provider or admin");
  }
  auto key = dock_->CreateApiKey(static_cast<dock::ApiKeyRole>(static_cast<int>(request->role())),
                                 request->name());
  if (!key.ok()) return ToGrpcStatus(key.status());
  dock_->Audit(call.caller().id, "create_key", key->info.id,
               absl::StrCat(dock::ApiKeyRoleName(key->info.role), " '", key->info.name, "'"));
  *response->mutable_key() = ToProto(key->info);
  response->set_secret(key->secret);
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::ListApiKeys(grpc::ServerContext* context,
                                               const v1::ListApiKeysRequest* /*request*/,
                                               v1::ListApiKeysResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto keys = dock_->ListApiKeys();
  if (!keys.ok()) return ToGrpcStatus(keys.status());
  for (const dock::ApiKeyInfo& key : *keys) *response->add_keys() = ToProto(key);
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::RevokeApiKey(grpc::ServerContext* context,
                                                const v1::RevokeApiKeyRequest* request,
                                                v1::RevokeApiKeyResponse* /*response*/) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->id().empty()) return InvalidArgument("id of the key to revoke is required");
  absl::Status revoked = dock_->RevokeApiKey(request->id());
  if (revoked.ok()) dock_->Audit(call.caller().id, "revoke_key", request->id(), "");
  return ToGrpcStatus(revoked);
}

// ---- Learning from outcomes.

namespace {

v1::OutcomeSource ToProtoSource(const std::string& source) {
  if (source == "import") return v1::OUTCOME_SOURCE_IMPORT;
  if (source == dock::kStage2Source) return v1::OUTCOME_SOURCE_STAGE2;
  return v1::OUTCOME_SOURCE_FINETUNE;
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

}  // namespace

grpc::Status ModelDockServiceImpl::ReportOutcome(grpc::ServerContext* context,
                                                 grpc::ServerReader<v1::ReportOutcomeRequest>* reader,
                                                 v1::ReportOutcomeResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  v1::ReportOutcomeRequest request;
  if (!reader->Read(&request) || !request.has_header()) {
    return InvalidArgument("the first ReportOutcome message must be a header");
  }
  v1::ReportOutcomeHeader header = std::move(*request.mutable_header());
  v1::RecommendHeader& dataset = *header.mutable_dataset();
  if (dataset.encoding() == v1::SAMPLE_ENCODING_UTF8_TEXT) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "outcome reports on text datasets are not accepted yet: the learning "
                        "loop learns in the grey image space only");
  }
  auto expected = ExpectedQueryBytes(dataset);
  if (!expected.ok()) return ToGrpcStatus(expected.status());
  std::vector<int64_t> sample_shape(dataset.sample_shape().begin(), dataset.sample_shape().end());
  auto task = FromProto(dataset.task(), sample_shape.size());
  if (!task.ok()) return ToGrpcStatus(task.status());
  if (*task == dock::TaskKind::kTabularClassification &&
      dataset.encoding() == v1::SAMPLE_ENCODING_UINT8) {
    return InvalidArgument("SAMPLE_ENCODING_UINT8 is for images only; send tabular data as FLOAT32");
  }
  if (header.outcomes_size() == 0) {
    return InvalidArgument("outcomes are required: at least one model and its accuracy");
  }
  if (header.source() == v1::OUTCOME_SOURCE_STAGE2) {
    return InvalidArgument(
        "source STAGE2 is kept by the dock itself from recommendations (server flag "
        "--learn-from-recommendations); report FINETUNE or IMPORT");
  }
  if (header.outcomes_size() > 100000) return InvalidArgument("at most 100,000 outcomes per report");
  std::string data = std::move(*dataset.mutable_inline_data());
  if (grpc::Status s = ReadSampleData(context, reader, *expected, "ReportOutcome", &data); !s.ok()) {
    return s;
  }
  dock::OutcomeReport report;
  report.dataset.samples = DecodeSamples(dataset, data);
  std::string().swap(data);
  report.dataset.labels.assign(dataset.labels().begin(), dataset.labels().end());
  report.task = *task;
  report.source = header.source() == v1::OUTCOME_SOURCE_IMPORT ? dock::OutcomeSource::kImport
                                                               : dock::OutcomeSource::kFinetune;
  report.reporter_key_id = call.caller().id;
  for (const v1::Outcome& o : header.outcomes()) {
    if (o.model().empty()) return InvalidArgument("every outcome names a model (id or name)");
    report.outcomes.push_back({o.model(), o.accuracy()});
  }
  auto result = dock_->ReportOutcome(report);
  if (!result.ok()) return ToGrpcStatus(result.status());
  response->set_query_id(result->query_id);
  response->set_num_stored(result->num_stored);
  response->set_num_classes(result->num_classes);
  response->set_num_stage1_scores(result->num_stage1_scores);
  response->set_total_records(result->total_records);
  response->set_total_queries(result->total_queries);
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::ListRecords(grpc::ServerContext* context,
                                               const v1::ListRecordsRequest* request,
                                               v1::ListRecordsResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (request->limit() < 0 || request->limit() > 10000) {
    return InvalidArgument("limit must be in 0..10000 (0 = 100)");
  }
  auto records = dock_->ListRecords(request->model(), request->limit() == 0 ? 100 : request->limit());
  if (!records.ok()) return ToGrpcStatus(records.status());
  for (const dock::OutcomeRecord& r : records->records) {
    v1::OutcomeRecord* out = response->add_records();
    out->set_id(r.id);
    out->set_query_id(r.query_id);
    out->set_model_id(r.model_id);
    out->set_model_name(r.model_name);
    out->set_accuracy(r.accuracy);
    out->set_source(ToProtoSource(r.source));
    out->set_created_unix_ms(r.created_unix_ms);
  }
  response->set_total_records(records->total_records);
  response->set_total_queries(records->total_queries);
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::TrainAlignment(grpc::ServerContext* context,
                                                  const v1::TrainAlignmentRequest* request,
                                                  v1::TrainAlignmentResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto job = dock_->TrainAlignment(request->wait(), [context] { return context->IsCancelled(); });
  if (!job.ok()) return ToGrpcStatus(job.status());
  dock_->Audit(call.caller().id, "train", "", job->message);
  ToProto(*job, response->mutable_job());
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::ListAlignments(grpc::ServerContext* context,
                                                  const v1::ListAlignmentsRequest* /*request*/,
                                                  v1::ListAlignmentsResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto list = dock_->ListAlignments();
  if (!list.ok()) return ToGrpcStatus(list.status());
  response->set_serving_version(list->serving_version);
  for (const dock::AlignmentVersion& v : list->versions) ToProto(v, response->add_versions());
  ToProto(list->last_training, response->mutable_last_training());
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::UseAlignment(grpc::ServerContext* context,
                                                const v1::UseAlignmentRequest* request,
                                                v1::UseAlignmentResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  if (absl::Status s = dock_->UseAlignment(request->version()); !s.ok()) return ToGrpcStatus(s);
  dock_->Audit(call.caller().id, "use_alignment", absl::StrCat(request->version()), "");
  response->set_serving_version(request->version());
  return grpc::Status::OK;
}

}  // namespace modeldock::server
