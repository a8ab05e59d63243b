// The dock's registered models served over the KServe v2 inference protocol
// (inference.GRPCInferenceService), so that any client of the protocol (and another dock's
// remote models) can run them: `modeldock-server --kserve-listen HOST:PORT`.
//
// Each READY model is one protocol model: name = the model's name (version = its version; no
// version = the latest READY one), one FP32 input "input" [-1, ...input shape] (UINT8 pixels
// are taken too, scaled by 1/255 like every uint8 sample of the dock), one FP32 output
// "output" [-1, K] (an extractor's features [-1, D]); platform "pytorch_torchscript" for an
// uploaded model, "remote_kserve_v2" for a remote one (RegisterRemote). ModelReady is true only
// for a READY model (NAME: its latest READY version, as ModelInfer picks it); ServerReady only
// while the server serves (SetReady). Runs go to the same sandboxed workers as
// everything else. Calls need the consumer role when the server runs with --auth.
#ifndef MODELDOCK_SERVER_KSERVE_SERVICE_H_
#define MODELDOCK_SERVER_KSERVE_SERVICE_H_

#include <atomic>

#include "dock/dock.h"
#include "kserve/inference.grpc.pb.h"
#include "server/authorization.h"

namespace modeldock::server {

// Most samples one ModelInfer call may carry (each runs in the model's worker).
inline constexpr int64_t kMaxInferRows = 4096;

class KServeServiceImpl final : public inference::GRPCInferenceService::Service {
 public:
  // `dock` and `authorizer` are not owned and must outlive the service.
  KServeServiceImpl(dock::Dock* dock, const Authorizer* authorizer)
      : dock_(dock), authorizer_(authorizer) {}

  // ServerReady's answer: false until the server has started and from the start of its
  // shutdown on (GrpcServer sets it).
  void SetReady(bool ready) { ready_ = ready; }

  grpc::Status ServerLive(grpc::ServerContext* context, const inference::ServerLiveRequest* request,
                          inference::ServerLiveResponse* response) override;
  grpc::Status ServerReady(grpc::ServerContext* context,
                           const inference::ServerReadyRequest* request,
                           inference::ServerReadyResponse* response) override;
  grpc::Status ModelReady(grpc::ServerContext* context, const inference::ModelReadyRequest* request,
                          inference::ModelReadyResponse* response) override;
  grpc::Status ServerMetadata(grpc::ServerContext* context,
                              const inference::ServerMetadataRequest* request,
                              inference::ServerMetadataResponse* response) override;
  grpc::Status ModelMetadata(grpc::ServerContext* context,
                             const inference::ModelMetadataRequest* request,
                             inference::ModelMetadataResponse* response) override;
  grpc::Status ModelInfer(grpc::ServerContext* context, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* response) override;

 private:
  dock::Dock* dock_;
  const Authorizer* authorizer_;  // model calls need the consumer role (authorization.cc)
  std::atomic<bool> ready_{false};
};

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_KSERVE_SERVICE_H_
