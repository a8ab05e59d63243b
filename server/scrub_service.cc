// The Scrub RPC (issue 28): re-hashes every stored model file (admin); the dock does the work
// (Dock::Scrub), this file only translates.
#include "server/service.h"


namespace modeldock::server {

grpc::Status ModelDockServiceImpl::Scrub(grpc::ServerContext* context,
                                         const v1::ScrubRequest* request,
                                         v1::ScrubResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto report = dock_->Scrub(request->wait(), [context] { return context->IsCancelled(); });
  if (!report.ok()) return ToGrpcStatus(report.status());
  ToProto(*report, response->mutable_report());
  return grpc::Status::OK;
}

}  // namespace modeldock::server
