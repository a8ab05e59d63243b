// Registration end to end (registration_e2e_test.cc, registration_refused_e2e_test.cc, one
// test binary): the upload helpers and the fixtures. RegistrationE2eTest starts a fresh server
// per case (Start); RegistrationRefusedE2eTest's cases share one server per test binary.
#ifndef MODELDOCK_TESTS_REGISTRATION_FIXTURE_H_
#define MODELDOCK_TESTS_REGISTRATION_FIXTURE_H_

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/sha256.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/test_server.h"

namespace modeldock::testing {

inline constexpr char kTopsModel[] = "demo/fmnist-tops-cnn";
inline constexpr char kFootwearModel[] = "demo/fmnist-footwear-cnn";
inline constexpr char kMlpModel[] = "demo/fmnist-all-mlp";

inline std::string ModelFile(const std::string& stem) { return AssetPath(stem + ".pt"); }
inline v1::ModelSpec ModelSpecOf(const std::string& stem) {
  return SpecFromSidecar(AssetPath(stem + ".json"));
}

// Sends `messages` as one RegisterModel stream and returns the server's status.
inline grpc::Status SendRegisterStream(v1::ModelDockService::Stub* stub,
                                const std::vector<v1::RegisterModelRequest>& messages,
                                v1::RegisterModelResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context);
  auto writer = stub->RegisterModel(&context, response);
  for (const auto& message : messages) {
    if (!writer->Write(message)) break;  // the server has already answered
  }
  writer->WritesDone();
  return writer->Finish();
}

inline v1::RegisterModelRequest Header(const v1::ModelSpec& spec, int64_t size,
                                const std::string& sha256) {
  v1::RegisterModelRequest request;
  *request.mutable_header()->mutable_spec() = spec;
  request.mutable_header()->set_size_bytes(size);
  request.mutable_header()->set_sha256(sha256);
  return request;
}

inline v1::RegisterModelRequest Chunk(const std::string& bytes) {
  v1::RegisterModelRequest request;
  request.set_chunk(bytes);
  return request;
}

// Header plus 1 MiB chunks of `bytes`.
inline std::vector<v1::RegisterModelRequest> UploadMessages(const v1::ModelSpec& spec,
                                                     const std::string& bytes, int64_t size,
                                                     const std::string& sha256) {
  std::vector<v1::RegisterModelRequest> messages = {Header(spec, size, sha256)};
  for (size_t offset = 0; offset < bytes.size(); offset += client::kChunkBytes) {
    messages.push_back(Chunk(bytes.substr(offset, client::kChunkBytes)));
  }
  return messages;
}

class RegistrationE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    ASSERT_TRUE(fs::exists(ModelFile(kTopsModel)))
        << "missing " << ModelFile(kTopsModel)
        << "; build the assets with scripts/make_assets.py --out $MODELDOCK_ASSET_DIR";
    ASSERT_FALSE(temp_.path().empty());
    own_server_ = std::make_unique<InProcessServer>(temp_.path());
    server_ = own_server_.get();
  }

  void Start() {
    ASSERT_TRUE(server_->Start());
    own_client_ = NewClient(*server_);
    client_ = own_client_.get();
  }

  void Restart() {
    own_client_.reset();
    client_ = nullptr;
    server_->Stop();
    Start();
  }

  static std::unique_ptr<client::Client> NewClient(const InProcessServer& server) {
    client::ClientOptions options;
    options.address = server.address();
    options.timeout = absl::Seconds(120);
    return std::make_unique<client::Client>(options);
  }

  v1::ModelDockService::Stub* stub() { return server_->stub(); }

  // Registers a fixture through the client library and waits until READY.
  v1::Model RegisterReady(const std::string& stem, const std::string& name = "") {
    v1::ModelSpec spec = ModelSpecOf(stem);
    if (!name.empty()) spec.set_name(name);
    auto response = client_->Register(ModelFile(stem), spec);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    auto last = client_->Watch(response->model().id());
    EXPECT_TRUE(last.ok()) << last.status();
    if (!last.ok()) return {};
    EXPECT_EQ(last->state(), v1::MODEL_STATE_READY) << last->state_reason();
    return *last;
  }

  int TotalModels() {
    auto page = client_->List(v1::ListModelsRequest());
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? page->total_size() : -1;
  }

  std::set<std::string> StoredFiles() {
    std::set<std::string> files = FilesUnder((fs::path(server_->data_dir()) / "blobs").string());
    for (const auto& f : FilesUnder((fs::path(server_->data_dir()) / "tmp").string())) {
      files.insert("tmp/" + f);
    }
    return files;
  }

  // The invariant after every rejected request: the server still answers health checks and
  // ListModels, the model count is unchanged, and no file was left behind.
  void ExpectNothingStored(int models_before, const std::set<std::string>& files_before) {
    grpc::ClientContext context;
    SetDeadline(&context, 10);
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status =
        grpc::health::v1::Health::NewStub(server_->channel())->Check(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    EXPECT_EQ(TotalModels(), models_before);
    EXPECT_EQ(StoredFiles(), files_before);
  }

  // Registers `stem` (bytes as on disk) with `spec`, expecting a rejection.
  void ExpectRegisterRejected(const std::string& stem, const v1::ModelSpec& spec,
                              grpc::StatusCode code, const std::string& message_part) {
    const int before = TotalModels();
    const std::set<std::string> files = StoredFiles();
    const std::string bytes = ReadFile(ModelFile(stem));
    ASSERT_FALSE(bytes.empty());
    v1::RegisterModelResponse response;
    grpc::Status status = SendRegisterStream(
        stub(), UploadMessages(spec, bytes, bytes.size(), Sha256::Of(bytes)), &response);
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr(message_part));
    ExpectNothingStored(before, files);
  }

  TempDir temp_;
  std::unique_ptr<InProcessServer> own_server_;  // each case's fresh server (Start)
  std::unique_ptr<client::Client> own_client_;
  InProcessServer* server_ = nullptr;  // the case's server: its own or the shared one
  client::Client* client_ = nullptr;
};

// Refused requests store nothing, so these cases share one server per test binary: its start
// and its workers' LibTorch load are paid once. Each case still checks that nothing was stored
// (ExpectNothingStored: exact model count, exact files), so a case that stored something fails.
class RegistrationRefusedE2eTest : public RegistrationE2eTest {
 protected:
  struct Shared {
    TempDir temp;
    InProcessServer server{temp.path()};
    std::unique_ptr<client::Client> client;  // null if the server did not start
  };
  static void SetUpTestSuite() {
    shared_ = new Shared();
    if (!AssetDir().empty() && shared_->server.Start()) shared_->client = NewClient(shared_->server);
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }
  void SetUp() override {
    RegistrationE2eTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_NE(shared_->client, nullptr) << "the shared server did not start";
    server_ = &shared_->server;
    client_ = shared_->client.get();
  }
  static inline Shared* shared_ = nullptr;
};

}  // namespace modeldock::testing

#endif  // MODELDOCK_TESTS_REGISTRATION_FIXTURE_H_
