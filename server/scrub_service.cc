// The Scrub RPC (issue 28): re-hashes every stored model file (admin); the dock does the work
// (Dock::Scrub), this file only translates.
#include "server/service.h"


namespace modeldock::server {

namespace {

void ToProto(const dock::ScrubResult& r, v1::ScrubReport* out) {
  switch (r.state) {
    case dock::ScrubResult::State::kIdle: out->set_state(v1::SCRUB_STATE_IDLE); break;
    case dock::ScrubResult::State::kRunning: out->set_state(v1::SCRUB_STATE_RUNNING); break;
    case dock::ScrubResult::State::kDone: out->set_state(v1::SCRUB_STATE_DONE); break;
    case dock::ScrubResult::State::kFailed: out->set_state(v1::SCRUB_STATE_FAILED); break;
  }
  out->set_message(r.message);
  out->set_started_unix_ms(r.started_unix_ms);
  out->set_finished_unix_ms(r.finished_unix_ms);
  out->set_blobs_checked(r.blobs_checked);
  out->set_blobs_ok(r.blobs_ok);
  out->set_blobs_bad(r.blobs_bad);
  out->set_blobs_restored(r.blobs_restored);
  out->set_bytes_hashed(r.bytes_hashed);
  out->set_models_failed(r.models_failed);
  out->set_models_requeued(r.models_requeued);
  out->set_features_checked(r.features_checked);
  out->set_features_bad(r.features_bad);
  for (const std::string& id : r.bad_model_ids) out->add_bad_model_ids(id);
  for (const std::string& sha : r.bad_blobs) out->add_bad_blobs(sha);
}

}  // namespace

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
