// A stock gRPC tool (buf curl) can discover and call the server through reflection, and check
// its health with grpc.health.v1, knowing nothing of modeldock's .proto files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/client.h"
#include "nlohmann/json.hpp"
#include "tests/subprocess.h"
#include "tests/test_server.h"

#ifndef MODELDOCK_BUF
#define MODELDOCK_BUF ""
#endif

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(MODELDOCK_BUF).empty()) {
      GTEST_FAIL() << "the buf CLI is not configured: install it with `npm install "
                      "@bufbuild/buf` (in tools/) and configure with "
                      "-DMODELDOCK_BUF=/path/to/node_modules/.bin/buf (scripts/build.sh does both)";
    }
    ASSERT_TRUE(fs::exists(MODELDOCK_BUF)) << "MODELDOCK_BUF=" << MODELDOCK_BUF << " does not exist";
    server_ = std::make_unique<InProcessServer>((fs::path(temp_.path()) / "data").string());
    ASSERT_TRUE(server_->Start());
  }

  // buf curl over plain-text HTTP/2 with gRPC reflection (gRPC 1.51 serves v1alpha only).
  ProcessResult BufCurl(const std::string& method, const std::string& body) {
    std::vector<std::string> argv = {MODELDOCK_BUF, "curl", "--protocol", "grpc",
                                     "--http2-prior-knowledge", "--reflect-protocol",
                                     "grpc-v1alpha"};
    if (!body.empty()) {
      argv.push_back("-d");
      argv.push_back(body);
    }
    argv.push_back("http://" + server_->address() + "/" + method);
    return RunProcess(argv, temp_.path(), BufEnv(), std::chrono::seconds(120));
  }

  // buf keeps a cache; keep it inside the test's temporary directory.
  std::vector<std::string> BufEnv() {
    return {"BUF_CACHE_DIR=" + (fs::path(temp_.path()) / "buf-cache").string(),
            "HOME=" + temp_.path()};
  }

  static json ParseJson(const ProcessResult& r) {
    json parsed = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded()) << "buf curl did not print JSON:\n" << r.out << r.err;
    return parsed;
  }

  TempDir temp_;
  std::unique_ptr<InProcessServer> server_;
};

TEST_F(ReflectionTest, ListsTheServices) {
  ProcessResult r = RunProcess(
      {MODELDOCK_BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge",
       "--reflect-protocol", "grpc-v1alpha", "--list-methods", "http://" + server_->address()},
      temp_.path(), BufEnv(), std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("modeldock.v1.ModelDockService/RegisterModel"));
  EXPECT_THAT(r.out, HasSubstr("modeldock.v1.ModelDockService/Recommend"));
  EXPECT_THAT(r.out, HasSubstr("grpc.health.v1.Health/Check"));
}

TEST_F(ReflectionTest, ListModelsThroughReflection) {
  ProcessResult r = BufCurl("modeldock.v1.ModelDockService/ListModels", "{}");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r), json::object());  // proto3 JSON omits an empty list and a zero total

  const std::string stem = "demo/fmnist-tops-cnn";
  ASSERT_TRUE(fs::exists(AssetPath(stem + ".pt"))) << "demo models not built (scripts/make_assets.py)";
  client::ClientOptions options;
  options.address = server_->address();
  client::Client client(options);
  const v1::ModelSpec spec = SpecFromSidecar(AssetPath(stem + ".json"));
  auto registered = client.Register(AssetPath(stem + ".pt"), spec);
  ASSERT_TRUE(registered.ok()) << registered.status();

  r = BufCurl("modeldock.v1.ModelDockService/ListModels",
              R"({"nameContains": "tops", "pageSize": 10})");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json page = ParseJson(r);
  EXPECT_EQ(page["totalSize"], 1);
  ASSERT_EQ(page["models"].size(), 1u);
  EXPECT_EQ(page["models"][0]["id"], registered->model().id());
  EXPECT_EQ(page["models"][0]["spec"]["name"], spec.name());
  EXPECT_EQ(page["models"][0]["spec"]["task"], "TASK_KIND_IMAGE_CLASSIFICATION");

  r = BufCurl("modeldock.v1.ModelDockService/GetModel", R"({"model": ")" + spec.name() + R"("})");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["model"]["sha256"], registered->model().sha256());
}

TEST_F(ReflectionTest, ErrorsCarryTheStatusCode) {
  ProcessResult r = BufCurl("modeldock.v1.ModelDockService/GetModel", R"({"model": "nope"})");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out + r.err, HasSubstr("not_found"));
  EXPECT_THAT(r.out + r.err, HasSubstr("nope"));
}

TEST_F(ReflectionTest, HealthCheck) {
  ProcessResult r = BufCurl("grpc.health.v1.Health/Check", "{}");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r), (json{{"status", "SERVING"}}));
  r = BufCurl("grpc.health.v1.Health/Check", R"({"service": "modeldock.v1.ModelDockService"})");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r), (json{{"status", "SERVING"}}));
}

}  // namespace
}  // namespace modeldock::testing
