// Readiness is the truth: a real dock behind a real gRPC server and the HTTP front door on
// 127.0.0.1:0. KServe v2 ServerReady (gRPC and GET /v2/health/ready), and grpc.health.v1, say
// ready while the server serves and not ready from the first step of its shutdown on, while
// calls are still answered. ModelReady is true for a READY model only, and ModelMetadata names
// the platform. Called with cpp-httplib's client and plain gRPC stubs.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "common/sha256.h"
#include "dock/testing/probe_cache.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "http/http_server.h"
#include "httplib.h"
#include "kserve/inference.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

TEST(ReadinessTest, ReadyUntilTheShutdownStarts) {
  TempDir dir;
  dock::DockOptions options;
  options.data_dir = dir.path();
  options.probe_cache_dir = dock::test::SharedProbeCacheDir();
  options.asset_dir = AssetDir();
  options.torch_threads = 1;
  options.sandbox.workers = 1;
  auto dock = dock::Dock::Create(options);
  ASSERT_TRUE(dock.ok()) << dock.status();
  auto server = server::GrpcServer::Start(dock->get(), "127.0.0.1:0", 16, {}, nullptr, false, "",
                                          /*serve_kserve=*/true);
  ASSERT_TRUE(server.ok()) << server.status();
  http::HttpOptions http_options;
  http_options.listen = "127.0.0.1:0";
  http_options.spool_dir = dir.path() + "/http-uploads";
  auto front = http::HttpServer::Start((*server)->InProcessChannel(), http_options);
  ASSERT_TRUE(front.ok()) << front.status();

  auto channel = grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials());
  auto kserve = inference::GRPCInferenceService::NewStub(channel);
  auto health = grpc::health::v1::Health::NewStub(channel);
  httplib::Client web("127.0.0.1", (*front)->port());
  auto state = [&](bool* grpc_ready, int* http_status, bool* serving) {
    grpc::ClientContext context;
    inference::ServerReadyResponse ready;
    ASSERT_TRUE(kserve->ServerReady(&context, {}, &ready).ok());
    *grpc_ready = ready.ready();
    auto answer = web.Get("/v2/health/ready");
    ASSERT_TRUE(answer);
    *http_status = answer->status;
    EXPECT_EQ(nlohmann::json::parse(answer->body)["ready"].get<bool>(), ready.ready());
    grpc::ClientContext health_context;
    grpc::health::v1::HealthCheckResponse check;
    ASSERT_TRUE(health->Check(&health_context, {}, &check).ok());
    *serving = check.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  };

  bool grpc_ready = false, serving = false;
  int http_status = 0;
  state(&grpc_ready, &http_status, &serving);
  EXPECT_TRUE(grpc_ready);
  EXPECT_EQ(http_status, 200);
  EXPECT_TRUE(serving);

  (*server)->MarkNotReady();
  state(&grpc_ready, &http_status, &serving);
  EXPECT_FALSE(grpc_ready);
  EXPECT_EQ(http_status, 503);
  EXPECT_FALSE(serving);
  // Still answering calls: liveness and the API.
  auto live = web.Get("/v2/health/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  auto models = web.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  EXPECT_EQ(nlohmann::json::parse(models->body)["total_size"].get<int>(), 0);

  (*front)->Stop();
  (*server)->Shutdown(absl::Seconds(5));
  (*dock)->Shutdown();
}

// Registers a crafted model (sandbox/crafted_models.py: 10 labels over [1, 28, 28]) as
// NAME@VERSION and returns its record after admission (probing goes on in the background).
dock::ModelRecord Register(dock::Dock& dock, const std::string& crafted, const std::string& name,
                           const std::string& version) {
  dock::ModelSpec spec;
  spec.name = name;
  spec.version = version;
  spec.input_shape = {1, 28, 28};
  for (int i = 0; i < 10; ++i) spec.class_labels.push_back("c" + std::to_string(i));
  const std::string bytes = ReadFile(std::string(MODELDOCK_CRAFTED_DIR) + "/" + crafted + ".pt");
  auto upload = dock.BeginRegistration(spec, static_cast<int64_t>(bytes.size()), Sha256::Of(bytes));
  EXPECT_TRUE(upload.ok()) << upload.status();
  if (!upload.ok()) return {};
  EXPECT_TRUE((*upload)->Write(bytes).ok());
  auto result = dock.FinishRegistration(std::move(*upload));
  EXPECT_TRUE(result.ok()) << name << ": " << result.status();
  return result.ok() ? result->model : dock::ModelRecord{};
}

// Follows the model's changes until `done` holds (at most 10 minutes).
dock::ModelRecord WaitUntil(dock::Dock& dock, dock::ModelRecord record,
                            const std::function<bool(const dock::ModelRecord&)>& done) {
  for (int i = 0; i < 600 && !done(record); ++i) {
    auto next = dock.WaitForChange(record.id, record.revision, absl::Seconds(1));
    if (!next.ok()) break;
    record = *next;
  }
  return record;
}

TEST(ReadinessTest, ModelReadyOnlyForAReadyModel) {
  TempDir dir;
  dock::DockOptions options;
  options.data_dir = dir.path();
  options.probe_cache_dir = dock::test::SharedProbeCacheDir();
  options.asset_dir = AssetDir();
  options.torch_threads = 1;
  options.sandbox.workers = 2;
  // One probing job at a time, and a hanging probe holds it for the whole test: a model
  // registered behind it stays PENDING (the dock's shutdown kills the hanging worker).
  options.probe_workers = 1;
  options.sandbox.probe_time_limit = absl::Seconds(600);
  auto dock = dock::Dock::Create(options);
  ASSERT_TRUE(dock.ok()) << dock.status();
  auto server = server::GrpcServer::Start(dock->get(), "127.0.0.1:0", 16, {}, nullptr, false, "",
                                          /*serve_kserve=*/true);
  ASSERT_TRUE(server.ok()) << server.status();
  auto kserve = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  auto model_ready = [&](const std::string& name, const std::string& version) {
    grpc::ClientContext context;
    SetDeadline(&context);
    inference::ModelReadyRequest request;
    request.set_name(name);
    request.set_version(version);
    inference::ModelReadyResponse response;
    grpc::Status status = kserve->ModelReady(&context, request, &response);
    EXPECT_TRUE(status.ok()) << name << "@" << version << ": " << status.error_message();
    return response.ready();
  };
  auto settled = [](const dock::ModelRecord& r) {
    return r.state == dock::ModelState::kReady || r.state == dock::ModelState::kFailed;
  };
  auto state_of = [&](const std::string& ref) {
    auto record = (*dock)->GetModel(ref);
    EXPECT_TRUE(record.ok()) << ref << ": " << record.status();
    return record.ok() ? record->state : dock::ModelState::kFailed;
  };

  dock::ModelRecord good = WaitUntil(**dock, Register(**dock, "good", "good", "1"), settled);
  ASSERT_EQ(good.state, dock::ModelState::kReady) << good.state_reason;
  dock::ModelRecord nan =
      WaitUntil(**dock, Register(**dock, "nan_on_probe_like_images", "nan", "1"), settled);
  ASSERT_EQ(nan.state, dock::ModelState::kFailed) << nan.state_reason;
  dock::ModelRecord hangs = WaitUntil(
      **dock, Register(**dock, "hangs_on_probing", "hangs", "1"),
      [](const dock::ModelRecord& r) { return r.state != dock::ModelState::kPending; });
  ASSERT_EQ(hangs.state, dock::ModelState::kProbing) << hangs.state_reason;
  // good@2 waits behind the hanging probe.
  dock::ModelRecord queued = Register(**dock, "good", "good", "2");
  ASSERT_EQ(queued.state, dock::ModelState::kPending) << queued.state_reason;

  EXPECT_TRUE(model_ready("good", "1"));
  EXPECT_FALSE(model_ready("good", "2"));  // PENDING
  EXPECT_TRUE(model_ready("good", ""));    // the latest READY version, as ModelInfer runs it
  EXPECT_FALSE(model_ready("nan", ""));    // FAILED
  EXPECT_FALSE(model_ready("nan", "1"));
  EXPECT_FALSE(model_ready("hangs", ""));  // PROBING
  EXPECT_FALSE(model_ready("nope", ""));   // unknown
  EXPECT_FALSE(model_ready("good", "3"));  // unknown version
  // The states the answers were given in.
  EXPECT_EQ(state_of("good@2"), dock::ModelState::kPending);
  EXPECT_EQ(state_of("hangs"), dock::ModelState::kProbing);

  // An uploaded model is a TorchScript file; an unknown one has no metadata.
  grpc::ClientContext context;
  SetDeadline(&context);
  inference::ModelMetadataRequest ask;
  ask.set_name("good");
  inference::ModelMetadataResponse meta;
  ASSERT_TRUE(kserve->ModelMetadata(&context, ask, &meta).ok());
  EXPECT_EQ(meta.platform(), "pytorch_torchscript");
  EXPECT_EQ(meta.versions_size(), 1);
  EXPECT_EQ(meta.versions(0), "1");
  grpc::ClientContext unknown_context;
  SetDeadline(&unknown_context);
  ask.set_name("nope");
  EXPECT_EQ(kserve->ModelMetadata(&unknown_context, ask, &meta).error_code(),
            grpc::StatusCode::NOT_FOUND);

  (*server)->Shutdown(absl::Seconds(5));
  (*dock)->Shutdown();
}

}  // namespace
}  // namespace modeldock::testing
