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
#include "common/sha256.h"
#include "server/proto_conversion.h"
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

bool IsTerminal(dock::ModelState state) {
  return state == dock::ModelState::kReady || state == dock::ModelState::kFailed;
}

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Reads the sample data of a Recommend or ReportOutcome stream after its header: the header's
// inline data first, then chunks of at most kMaxChunkBytes, exactly `expected` bytes in all.
// `Stream`: a grpc::ServerReader<Request> or a grpc::ServerReaderWriter<Response, Request>.
template <typename Request, typename Stream>
grpc::Status ReadSampleData(grpc::ServerContext* context, Stream* reader, int64_t expected,
                            const char* call, std::string* data) {
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

// Receives the model file of a RegisterModel stream after its header into `upload`: at most
// kMaxChunkBytes per message, exactly `size_bytes` in all.
grpc::Status ReceiveUpload(grpc::ServerContext* context,
                           grpc::ServerReader<v1::RegisterModelRequest>* reader,
                           int64_t size_bytes, dock::Upload* upload) {
  v1::RegisterModelRequest request;
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
    if (received + static_cast<int64_t>(chunk.size()) > size_bytes) {
      return InvalidArgument(absl::StrCat("upload longer than declared: got more than ",
                                          size_bytes, " bytes (header.size_bytes)"));
    }
    if (absl::Status status = upload->Write(chunk); !status.ok()) return ToGrpcStatus(status);
    received += static_cast<int64_t>(chunk.size());
  }
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "upload cancelled by the client");
  }
  if (received < size_bytes) {
    return InvalidArgument(
        absl::StrCat("upload truncated: got ", received, " of ", size_bytes, " bytes"));
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(ToGrpcCode(status.code()), std::string(status.message()));
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
  if (grpc::Status s = ReceiveUpload(context, reader, header.size_bytes(), upload->get());
      !s.ok()) {
    return s;
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
  auto spec = DecodeRemoteModel(*request);
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
  auto query = DecodeListModels(*request);
  if (!query.ok()) return ToGrpcStatus(query.status());
  auto page = dock_->ListModels(query->filter, query->page_size, request->page_token());
  if (!page.ok()) return ToGrpcStatus(page.status());
  Encode(*page, response);
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::ListNearestModels(grpc::ServerContext* context,
                                                     const v1::ListNearestModelsRequest* request,
                                                     v1::ListNearestModelsResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto query = DecodeListNearest(*request);
  if (!query.ok()) return ToGrpcStatus(query.status());
  auto nearest = dock_->NearestModels(query->model, query->k);
  if (!nearest.ok()) return ToGrpcStatus(nearest.status());
  Encode(*nearest, response);
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
  auto update = DecodeUpdateModel(*request);
  if (!update.ok()) return ToGrpcStatus(update.status());
  if (grpc::Status s = CheckOwnership(call.caller(), request->model(), "updates"); !s.ok()) {
    return s;
  }
  auto record = dock_->UpdateModel(request->model(), *update, call.caller().id);
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
  Encode(*entries, response);
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
  auto query = DecodeRecommendHeader(header);
  if (!query.ok()) return ToGrpcStatus(query.status());
  // Inline data comes first; chunks, if any, continue after it.
  std::string data = std::move(*header.mutable_inline_data());
  if (grpc::Status s = ReadSampleData<v1::RecommendRequest>(context, reader, *expected, "Recommend", &data); !s.ok()) {
    return s;
  }
  absl::Status decoded = DecodeRecommendData(header, data, &*query);
  std::string().swap(data);
  if (!decoded.ok()) return ToGrpcStatus(decoded);
  // A client that hangs up or whose deadline passes stops the scoring of further candidates.
  query->is_cancelled = [context] { return context->IsCancelled(); };
  const double receive_millis = MillisSince(start);
  spdlog::debug("Recommend n={} shape={} metric={} top_k={}", header.num_samples(),
                ShapeToString({header.sample_shape().begin(), header.sample_shape().end()}),
                v1::Metric_Name(ToProto(query->metric)), query->top_k);

  auto result = dock_->Recommend(*query);
  if (!result.ok()) return ToGrpcStatus(result.status());
  Encode(*result, response);
  response->mutable_timings()->set_receive_millis(receive_millis);
  // The engine's total does not include receiving and decoding the upload.
  response->mutable_timings()->set_total_millis(MillisSince(start));
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::CreateApiKey(grpc::ServerContext* context,
                                                const v1::CreateApiKeyRequest* request,
                                                v1::CreateApiKeyResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto role = DecodeApiKeyRole(request->role());
  if (!role.ok()) return ToGrpcStatus(role.status());
  auto key = dock_->CreateApiKey(*role, request->name());
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

grpc::Status ModelDockServiceImpl::ReportOutcome(
    grpc::ServerContext* context, grpc::ServerReader<v1::ReportOutcomeRequest>* reader,
    v1::ReportOutcomeResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  v1::ReportOutcomeRequest request;
  if (!reader->Read(&request) || !request.has_header()) {
    return InvalidArgument("the first ReportOutcome message must be a header");
  }
  v1::ReportOutcomeHeader header = std::move(*request.mutable_header());
  auto report = DecodeOutcomeHeader(header);
  if (!report.ok()) return ToGrpcStatus(report.status());
  auto expected = ExpectedQueryBytes(header.dataset());
  if (!expected.ok()) return ToGrpcStatus(expected.status());
  std::string data = std::move(*header.mutable_dataset()->mutable_inline_data());
  if (grpc::Status s = ReadSampleData<v1::ReportOutcomeRequest>(context, reader, *expected, "ReportOutcome",
                                                           &data);
      !s.ok()) {
    return s;
  }
  absl::Status decoded = DecodeOutcomeData(header, data, &*report);
  std::string().swap(data);
  if (!decoded.ok()) return ToGrpcStatus(decoded);
  report->reporter_key_id = call.caller().id;
  auto result = dock_->ReportOutcome(*report);
  if (!result.ok()) return ToGrpcStatus(result.status());
  Encode(*result, response);
  return grpc::Status::OK;
}

grpc::Status ModelDockServiceImpl::Tune(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::TuneResponse, v1::TuneRequest>* stream) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  v1::TuneRequest request;
  if (!stream->Read(&request) || !request.has_header()) {
    return InvalidArgument("the first Tune message must be a header");
  }
  v1::TuneHeader header = std::move(*request.mutable_header());
  auto query = DecodeTuneHeader(header);
  if (!query.ok()) return ToGrpcStatus(query.status());
  auto expected = ExpectedQueryBytes(header.dataset());
  if (!expected.ok()) return ToGrpcStatus(expected.status());
  std::string data = std::move(*header.mutable_dataset()->mutable_inline_data());
  if (grpc::Status s = ReadSampleData<v1::TuneRequest>(context, stream, *expected, "Tune", &data);
      !s.ok()) {
    return s;
  }
  absl::Status decoded = DecodeTuneData(header, data, &*query);
  std::string().swap(data);
  if (!decoded.ok()) return ToGrpcStatus(decoded);
  query->reporter_key_id = call.caller().id;
  query->is_cancelled = [context] { return context->IsCancelled(); };
  spdlog::debug("Tune n={} top_k={} budget={} seed={}", header.dataset().num_samples(),
                query->top_k, absl::FormatDuration(query->budget), query->seed);
  // Progress goes out from the engine's thread, which is this handler's (one writer).
  auto result = dock_->Tune(*query, [stream](const dock::TuneProgressEvent& event) {
    v1::TuneResponse progress;
    Encode(event, progress.mutable_progress());
    stream->Write(progress);  // a client gone shows up as the context cancelled
  });
  if (!result.ok()) return ToGrpcStatus(result.status());
  v1::TuneResponse table;
  Encode(*result, table.mutable_result());
  table.mutable_result()->set_model_sha256(Sha256::Of(result->tuned_model));
  if (!stream->Write(table)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  const std::string& model = result->tuned_model;
  for (size_t sent = 0; sent < model.size(); sent += kMaxChunkBytes) {
    v1::TuneResponse chunk;
    chunk.set_model_chunk(model.substr(sent, kMaxChunkBytes));
    if (!stream->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
  }
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
  auto records =
      dock_->ListRecords(request->model(), request->limit() == 0 ? 100 : request->limit());
  if (!records.ok()) return ToGrpcStatus(records.status());
  Encode(*records, response);
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
  Encode(*list, response);
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
