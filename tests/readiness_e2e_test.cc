// Readiness is the truth: a real dock behind a real gRPC server and the HTTP front door on
// 127.0.0.1:0. KServe v2 ServerReady (gRPC and GET /v2/health/ready), and grpc.health.v1, say
// ready while the server serves and not ready from the first step of its shutdown on, while
// calls are still answered. Called with cpp-httplib's client and plain gRPC stubs.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

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

}  // namespace
}  // namespace modeldock::testing
