// The gRPC transport of modeldock: each handler fetches its call's authorization decision
// (authorization.h), decodes the request (proto_conversion.h), calls dock::Dock and encodes the
// answer; absl::Status becomes grpc::Status here. No state besides the engine pointer.
#ifndef MODELDOCK_SERVER_SERVICE_H_
#define MODELDOCK_SERVER_SERVICE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "dock/dock.h"
#include "modeldock/v1/modeldock.grpc.pb.h"
#include "server/authorization.h"
#include "server/proto_conversion.h"  // ToProto (tests and the CLI use them)
#include "server/request_decoding.h"  // kMaxQueryBytes

namespace modeldock::server {

// Largest data chunk accepted in a RegisterModel or Recommend stream.
inline constexpr int64_t kMaxChunkBytes = 1 << 20;
// The only place where engine status codes become gRPC status codes (1:1, message kept).
grpc::Status ToGrpcStatus(const absl::Status& status);

// The service is written against gRPC's synchronous API on purpose: every handler ends in an
// engine call that blocks (disk writes and fsync, TorchScript admission checks, running models
// for Recommend, waiting for state changes). The callback API would need its own worker pool
// to run exactly that blocking work; the synchronous server's thread pool already is one.
class ModelDockServiceImpl final : public v1::ModelDockService::Service {
 public:
  // `dock` and `authorizer` are not owned and must outlive the service. Every handler opens
  // with the decision `authorizer`'s interceptor made about its call (authorization.h).
  ModelDockServiceImpl(dock::Dock* dock, const Authorizer* authorizer)
      : dock_(dock), authorizer_(authorizer) {}

  grpc::Status RegisterModel(grpc::ServerContext* context,
                             grpc::ServerReader<v1::RegisterModelRequest>* reader,
                             v1::RegisterModelResponse* response) override;
  grpc::Status RegisterRemoteModel(grpc::ServerContext* context,
                                   const v1::RegisterRemoteModelRequest* request,
                                   v1::RegisterRemoteModelResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                        v1::GetModelResponse* response) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status ListNearestModels(grpc::ServerContext* context,
                                 const v1::ListNearestModelsRequest* request,
                                 v1::ListNearestModelsResponse* response) override;
  grpc::Status DeleteModel(grpc::ServerContext* context, const v1::DeleteModelRequest* request,
                           v1::DeleteModelResponse* response) override;
  grpc::Status UpdateModel(grpc::ServerContext* context, const v1::UpdateModelRequest* request,
                           v1::UpdateModelResponse* response) override;
  grpc::Status ListAuditLog(grpc::ServerContext* context, const v1::ListAuditLogRequest* request,
                            v1::ListAuditLogResponse* response) override;
  grpc::Status WatchModel(grpc::ServerContext* context, const v1::WatchModelRequest* request,
                          grpc::ServerWriter<v1::WatchModelResponse>* writer) override;
  grpc::Status Recommend(grpc::ServerContext* context,
                         grpc::ServerReader<v1::RecommendRequest>* reader,
                         v1::RecommendResponse* response) override;
  grpc::Status CreateApiKey(grpc::ServerContext* context, const v1::CreateApiKeyRequest* request,
                            v1::CreateApiKeyResponse* response) override;
  grpc::Status ListApiKeys(grpc::ServerContext* context, const v1::ListApiKeysRequest* request,
                           v1::ListApiKeysResponse* response) override;
  grpc::Status RevokeApiKey(grpc::ServerContext* context, const v1::RevokeApiKeyRequest* request,
                            v1::RevokeApiKeyResponse* response) override;
  grpc::Status ReportOutcome(grpc::ServerContext* context,
                             grpc::ServerReader<v1::ReportOutcomeRequest>* reader,
                             v1::ReportOutcomeResponse* response) override;
  grpc::Status Tune(grpc::ServerContext* context,
                    grpc::ServerReaderWriter<v1::TuneResponse, v1::TuneRequest>* stream) override;
  grpc::Status ListRecords(grpc::ServerContext* context, const v1::ListRecordsRequest* request,
                           v1::ListRecordsResponse* response) override;
  grpc::Status Scrub(grpc::ServerContext* context, const v1::ScrubRequest* request,
                     v1::ScrubResponse* response) override;
  grpc::Status TrainAlignment(grpc::ServerContext* context,
                              const v1::TrainAlignmentRequest* request,
                              v1::TrainAlignmentResponse* response) override;
  grpc::Status ListAlignments(grpc::ServerContext* context,
                              const v1::ListAlignmentsRequest* request,
                              v1::ListAlignmentsResponse* response) override;
  grpc::Status UseAlignment(grpc::ServerContext* context, const v1::UseAlignmentRequest* request,
                            v1::UseAlignmentResponse* response) override;

 private:
  // PERMISSION_DENIED unless the caller is an admin or registered `model`.
  grpc::Status CheckOwnership(const dock::ApiKeyInfo& caller, const std::string& model,
                              const char* verb);

  dock::Dock* dock_;
  const Authorizer* authorizer_;
};

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_SERVICE_H_
