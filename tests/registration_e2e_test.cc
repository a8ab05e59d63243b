// Registration end to end: a real dock behind a real gRPC server on 127.0.0.1:0, called through
// a channel with deadlines. Good paths (register, list, show, delete, restart, dedup) and every
// bad input, each answered with the right status code and a helpful message while the server
// keeps serving and stores nothing.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "common/sha256.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/request_id.h"
#include "server/service.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kTopsModel[] = "demo/fmnist-tops-cnn";
constexpr char kFootwearModel[] = "demo/fmnist-footwear-cnn";
constexpr char kMlpModel[] = "demo/fmnist-all-mlp";

std::string ModelFile(const std::string& stem) { return AssetPath(stem + ".pt"); }
v1::ModelSpec ModelSpecOf(const std::string& stem) {
  return SpecFromSidecar(AssetPath(stem + ".json"));
}

// Sends `messages` as one RegisterModel stream and returns the server's status.
grpc::Status SendRegisterStream(v1::ModelDockService::Stub* stub,
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

v1::RegisterModelRequest Header(const v1::ModelSpec& spec, int64_t size,
                                const std::string& sha256) {
  v1::RegisterModelRequest request;
  *request.mutable_header()->mutable_spec() = spec;
  request.mutable_header()->set_size_bytes(size);
  request.mutable_header()->set_sha256(sha256);
  return request;
}

v1::RegisterModelRequest Chunk(const std::string& bytes) {
  v1::RegisterModelRequest request;
  request.set_chunk(bytes);
  return request;
}

// Header plus 1 MiB chunks of `bytes`.
std::vector<v1::RegisterModelRequest> UploadMessages(const v1::ModelSpec& spec,
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
    server_ = std::make_unique<InProcessServer>(temp_.path());
  }

  void Start() {
    ASSERT_TRUE(server_->Start());
    client::ClientOptions options;
    options.address = server_->address();
    options.timeout = absl::Seconds(120);
    client_ = std::make_unique<client::Client>(options);
  }

  void Restart() {
    client_.reset();
    server_->Stop();
    Start();
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
    std::set<std::string> files = FilesUnder((fs::path(temp_.path()) / "blobs").string());
    for (const auto& f : FilesUnder((fs::path(temp_.path()) / "tmp").string())) {
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
    EXPECT_THAT(status.error_message(), HasSubstr(message_part));
    ExpectNothingStored(before, files);
  }

  TempDir temp_;
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<client::Client> client_;
};

TEST_F(RegistrationE2eTest, RegisterListShowDelete) {
  Start();
  const std::string path = ModelFile(kTopsModel);
  const v1::ModelSpec spec = ModelSpecOf(kTopsModel);
  int64_t last_progress = 0;
  auto registered = client_->Register(path, spec, [&](int64_t sent, int64_t total) {
    EXPECT_GT(sent, last_progress);
    EXPECT_LE(sent, total);
    last_progress = sent;
  });
  ASSERT_TRUE(registered.ok()) << registered.status();
  const v1::Model& model = registered->model();
  EXPECT_FALSE(registered->deduplicated());
  EXPECT_THAT(model.id(), ::testing::StartsWith("m-"));
  EXPECT_EQ(model.spec().name(), spec.name());
  EXPECT_EQ(model.sha256(), *Sha256::OfFile(path));
  EXPECT_EQ(model.size_bytes(), static_cast<int64_t>(fs::file_size(path)));
  EXPECT_EQ(last_progress, model.size_bytes());
  EXPECT_TRUE(model.has_embed());
  EXPECT_GT(model.feature_dim(), 0);
  EXPECT_GT(model.created_unix_ms(), 0);
  EXPECT_NE(model.state(), v1::MODEL_STATE_FAILED);
  // Exactly the stored file: blobs/<first two hex>/<sha256>.
  EXPECT_EQ(StoredFiles(), (std::set<std::string>{model.sha256().substr(0, 2) + "/" +
                                                  model.sha256()}));

  std::vector<v1::ModelState> seen;
  auto ready = client_->Watch(spec.name(), [&](const v1::Model& m) { seen.push_back(m.state()); });
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->state(), v1::MODEL_STATE_READY) << ready->state_reason();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), v1::MODEL_STATE_READY);
  EXPECT_GT(ready->probe_millis(), 0);

  auto page = client_->List(v1::ListModelsRequest());
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->total_size(), 1);
  ASSERT_EQ(page->models_size(), 1);
  EXPECT_EQ(page->models(0).id(), model.id());
  EXPECT_EQ(page->models(0).state(), v1::MODEL_STATE_READY);
  EXPECT_TRUE(page->next_page_token().empty());

  v1::ListModelsRequest filtered;
  filtered.set_name_contains("no-such-substring");
  page = client_->List(filtered);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->total_size(), 0);

  auto by_name = client_->Get(spec.name());
  auto by_id = client_->Get(model.id());
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  ASSERT_TRUE(by_id.ok()) << by_id.status();
  EXPECT_EQ(by_name->id(), model.id());
  EXPECT_EQ(by_id->spec().name(), spec.name());
  EXPECT_EQ(by_id->spec().class_labels_size(), spec.class_labels_size());
  EXPECT_EQ(by_id->spec().class_labels(0), spec.class_labels(0));
  EXPECT_EQ(std::vector<int64_t>(by_id->spec().input_shape().begin(),
                                 by_id->spec().input_shape().end()),
            (std::vector<int64_t>{1, 28, 28}));

  auto deleted = client_->Delete(spec.name());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, std::vector<std::string>{model.id()});
  EXPECT_EQ(client_->Get(model.id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(TotalModels(), 0);
  EXPECT_TRUE(StoredFiles().empty());
}

TEST_F(RegistrationE2eTest, ModelsAndStatesSurviveRestart) {
  Start();
  const v1::Model tops = RegisterReady(kTopsModel);
  const v1::Model footwear = RegisterReady(kFootwearModel);
  ASSERT_FALSE(tops.id().empty());
  ASSERT_FALSE(footwear.id().empty());
  const std::set<std::string> files = StoredFiles();

  Restart();
  auto page = client_->List(v1::ListModelsRequest());
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->total_size(), 2);
  for (const v1::Model& before : {tops, footwear}) {
    auto after = client_->Get(before.id());
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_EQ(after->spec().name(), before.spec().name());
    EXPECT_EQ(after->state(), v1::MODEL_STATE_READY);
    EXPECT_EQ(after->sha256(), before.sha256());
    EXPECT_EQ(after->size_bytes(), before.size_bytes());
    EXPECT_EQ(after->created_unix_ms(), before.created_unix_ms());
    EXPECT_EQ(after->probe_millis(), before.probe_millis());
    EXPECT_EQ(after->feature_dim(), before.feature_dim());
  }
  EXPECT_EQ(StoredFiles(), files);

  // A deletion is durable too.
  ASSERT_TRUE(client_->Delete(tops.id()).ok());
  Restart();
  EXPECT_EQ(TotalModels(), 1);
  EXPECT_EQ(client_->Get(tops.spec().name()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(client_->Get(footwear.spec().name()).ok());
}

TEST_F(RegistrationE2eTest, SameBytesUnderAnotherNameAreStoredOnce) {
  Start();
  const v1::Model first = RegisterReady(kTopsModel);
  ASSERT_FALSE(first.id().empty());
  const std::set<std::string> files = StoredFiles();
  ASSERT_EQ(files.size(), 1u);

  v1::ModelSpec spec = ModelSpecOf(kTopsModel);
  spec.set_name("tops-copy");
  auto second = client_->Register(ModelFile(kTopsModel), spec);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->deduplicated());
  EXPECT_NE(second->model().id(), first.id());
  EXPECT_EQ(second->model().sha256(), first.sha256());
  EXPECT_EQ(StoredFiles(), files);
  EXPECT_EQ(TotalModels(), 2);

  // The shared file stays until its last model is deleted.
  ASSERT_TRUE(client_->Delete(first.id()).ok());
  EXPECT_EQ(StoredFiles(), files);
  ASSERT_TRUE(client_->Delete("tops-copy").ok());
  EXPECT_TRUE(StoredFiles().empty());
}

TEST_F(RegistrationE2eTest, ListModelsPages) {
  Start();
  for (const char* stem : {kTopsModel, kFootwearModel, kMlpModel}) {
    v1::ModelSpec spec = ModelSpecOf(stem);
    ASSERT_TRUE(client_->Register(ModelFile(stem), spec).ok());
  }
  v1::ListModelsRequest request;
  request.set_page_size(2);
  auto first = client_->List(request);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->total_size(), 3);
  EXPECT_EQ(first->models_size(), 2);
  ASSERT_FALSE(first->next_page_token().empty());
  request.set_page_token(first->next_page_token());
  auto second = client_->List(request);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->models_size(), 1);
  EXPECT_TRUE(second->next_page_token().empty());
  std::set<std::string> names;
  for (const auto& m : first->models()) names.insert(m.spec().name());
  for (const auto& m : second->models()) names.insert(m.spec().name());
  EXPECT_EQ(names.size(), 3u);

  v1::ListModelsRequest by_tag;
  by_tag.set_tag("no-such-tag");
  EXPECT_EQ(client_->List(by_tag)->total_size(), 0);
  v1::ListModelsRequest tabular;
  tabular.set_task(v1::TASK_KIND_TABULAR_CLASSIFICATION);
  EXPECT_EQ(client_->List(tabular)->total_size(), 0);
  v1::ListModelsRequest shape;
  shape.add_input_shape(1);
  shape.add_input_shape(28);
  shape.add_input_shape(28);
  EXPECT_EQ(client_->List(shape)->total_size(), 3);

  v1::ListModelsRequest negative;
  negative.set_page_size(-1);
  auto bad = client_->List(negative);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("page_size"));
  v1::ListModelsRequest bad_token;
  bad_token.set_page_token("garbage");
  EXPECT_EQ(client_->List(bad_token).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RegistrationE2eTest, TruncatedUploadIsInvalidArgument) {
  Start();
  const int before = TotalModels();
  const std::set<std::string> files = StoredFiles();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  const std::string half = bytes.substr(0, bytes.size() / 2);
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), half, bytes.size(), Sha256::Of(bytes)),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              ::testing::StartsWith("upload truncated: got " + std::to_string(half.size()) +
                                    " of " + std::to_string(bytes.size()) + " bytes (request r-"));
  ExpectNothingStored(before, files);
}

TEST_F(RegistrationE2eTest, UploadLongerThanDeclaredIsInvalidArgument) {
  Start();
  const int before = TotalModels();
  const std::set<std::string> files = StoredFiles();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), bytes + "extra", bytes.size(),
                             Sha256::Of(bytes)),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("longer than declared"));
  ExpectNothingStored(before, files);
}

TEST_F(RegistrationE2eTest, WrongSha256IsDataLoss) {
  Start();
  const int before = TotalModels();
  const std::set<std::string> files = StoredFiles();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  const std::string wrong = Sha256::Of("other bytes");
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), bytes, bytes.size(), wrong), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(wrong));
  EXPECT_THAT(status.error_message(), HasSubstr(Sha256::Of(bytes)));
  ExpectNothingStored(before, files);
}

TEST_F(RegistrationE2eTest, MalformedSha256IsInvalidArgument) {
  Start();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), bytes, bytes.size(), "ABC"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("sha256"));
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationE2eTest, NotTorchScriptIsInvalidArgument) {
  Start();
  ExpectRegisterRejected("fixtures/not_torchscript", ModelSpecOf("fixtures/not_torchscript"),
                         grpc::StatusCode::INVALID_ARGUMENT, "TorchScript");
}

TEST_F(RegistrationE2eTest, WrongOutputWidthIsFailedPrecondition) {
  Start();
  const v1::ModelSpec spec = ModelSpecOf("fixtures/wrong_width");
  ExpectRegisterRejected("fixtures/wrong_width", spec, grpc::StatusCode::FAILED_PRECONDITION,
                         "wrong_width");
  // The message says what came back: [N, 3] logits for 4 declared labels.
  const std::string bytes = ReadFile(ModelFile("fixtures/wrong_width"));
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(spec, bytes, bytes.size(), Sha256::Of(bytes)), &response);
  EXPECT_THAT(status.error_message(), HasSubstr("3"));
  EXPECT_THAT(status.error_message(), HasSubstr("4"));
}

TEST_F(RegistrationE2eTest, NanOutputsAreFailedPrecondition) {
  Start();
  ExpectRegisterRejected("fixtures/nan_output", ModelSpecOf("fixtures/nan_output"),
                         grpc::StatusCode::FAILED_PRECONDITION, "NaN");
}

TEST_F(RegistrationE2eTest, BadEmbedIsFailedPrecondition) {
  Start();
  ExpectRegisterRejected("fixtures/bad_embed", ModelSpecOf("fixtures/bad_embed"),
                         grpc::StatusCode::FAILED_PRECONDITION, "embed");
}

TEST_F(RegistrationE2eTest, ValidFixturesAreAccepted) {
  Start();
  const v1::Model no_embed = RegisterReady("fixtures/good_no_embed");
  EXPECT_FALSE(no_embed.has_embed());
  EXPECT_EQ(no_embed.feature_dim(), 0);
  v1::ModelSpec tabular = ModelSpecOf("fixtures/tabular_mlp");
  auto response = client_->Register(ModelFile("fixtures/tabular_mlp"), tabular);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->model().spec().task(), v1::TASK_KIND_TABULAR_CLASSIFICATION);
  EXPECT_EQ(response->model().feature_dim(), 16);
  EXPECT_EQ(TotalModels(), 2);
}

TEST_F(RegistrationE2eTest, UploadOverSizeLimitIsResourceExhausted) {
  server_->options().max_model_bytes = 4096;
  Start();
  const int64_t size = fs::file_size(ModelFile(kTopsModel));
  ASSERT_GT(size, 4096);
  ExpectRegisterRejected(kTopsModel, ModelSpecOf(kTopsModel),
                         grpc::StatusCode::RESOURCE_EXHAUSTED, std::to_string(size));
}

TEST_F(RegistrationE2eTest, DuplicateNameIsAlreadyExists) {
  Start();
  ASSERT_FALSE(RegisterReady(kTopsModel).id().empty());
  // Other bytes, same name.
  v1::ModelSpec spec = ModelSpecOf(kFootwearModel);
  spec.set_name(ModelSpecOf(kTopsModel).name());
  ExpectRegisterRejected(kFootwearModel, spec, grpc::StatusCode::ALREADY_EXISTS, spec.name());
}

TEST_F(RegistrationE2eTest, UnknownModelIsNotFound) {
  Start();
  for (const std::string& ref : {std::string("no-such-model"), std::string("m-0000000000000000")}) {
    auto got = client_->Get(ref);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(got.status().message(), HasSubstr(ref));
    auto deleted = client_->Delete(ref);
    EXPECT_EQ(deleted.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(deleted.status().message(), HasSubstr(ref));
    auto watched = client_->Watch(ref);
    EXPECT_EQ(watched.status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(client_->Get("").status().code(), absl::StatusCode::kInvalidArgument);
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationE2eTest, MissingOrMisplacedHeaderIsInvalidArgument) {
  Start();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  const v1::ModelSpec spec = ModelSpecOf(kTopsModel);
  v1::RegisterModelResponse response;

  grpc::Status status = SendRegisterStream(stub(), {}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("header"));

  status = SendRegisterStream(stub(), {Chunk(bytes.substr(0, 100))}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("first RegisterModel message must be a header"));

  const v1::RegisterModelRequest header = Header(spec, bytes.size(), Sha256::Of(bytes));
  status = SendRegisterStream(stub(), {header, Chunk(bytes.substr(0, 100)), header}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("may only be the first"));

  status = SendRegisterStream(stub(), {Header(spec, 0, Sha256::Of(bytes))}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("size_bytes"));

  v1::ModelSpec nameless = spec;
  nameless.clear_name();
  status = SendRegisterStream(stub(), UploadMessages(nameless, bytes, bytes.size(),
                                                     Sha256::Of(bytes)),
                              &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("name"));
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationE2eTest, ChunkOverOneMebibyteIsInvalidArgument) {
  Start();
  const std::string big(server::kMaxChunkBytes + 1, 'x');
  const int64_t declared = 2 * server::kMaxChunkBytes;
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), {Header(ModelSpecOf(kTopsModel), declared, Sha256::Of(big)), Chunk(big)},
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("exceeds the limit of 1048576 bytes"));
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationE2eTest, ServerThreadsAreBoundedAndExcessCallsAreResourceExhausted) {
  server_->set_max_rpc_threads(8);
  Start();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  // Uploads that never finish each hold a server thread.
  constexpr int kStuck = 16;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<v1::RegisterModelResponse> responses(kStuck);
  std::vector<std::unique_ptr<grpc::ClientWriter<v1::RegisterModelRequest>>> writers;
  for (int i = 0; i < kStuck; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    SetDeadline(contexts.back().get(), 60);
    writers.push_back(stub()->RegisterModel(contexts.back().get(), &responses[i]));
    writers.back()->Write(Header(ModelSpecOf(kTopsModel), bytes.size(), Sha256::Of(bytes)));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int exhausted = 0;
  std::string message;
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext context;
    SetDeadline(&context, 10);
    v1::ListModelsResponse page;
    grpc::Status status = stub()->ListModels(&context, v1::ListModelsRequest(), &page);
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++exhausted;
      message = status.error_message();
    }
  }
  EXPECT_GT(exhausted, 0) << "16 held calls on 8 threads, yet every call was served";
  for (auto& context : contexts) context->TryCancel();
  for (auto& writer : writers) writer->Finish().IgnoreError();
  // The threads come back: calls are served again (the server releases a cancelled call's
  // thread when the handler returns, which on a loaded machine takes a moment).
  grpc::Status served;
  for (int attempt = 0; attempt < 100; ++attempt) {
    grpc::ClientContext context;
    SetDeadline(&context, 10);
    v1::ListModelsResponse page;
    served = stub()->ListModels(&context, v1::ListModelsRequest(), &page);
    if (served.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(served.ok()) << served.error_message();
  EXPECT_EQ(TotalModels(), 0);
}

TEST_F(RegistrationE2eTest, EveryCallCarriesARequestIdAndErrorsNameIt) {
  Start();
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  v1::GetModelRequest request;
  request.set_model("no-such-model");
  v1::GetModelResponse response;
  grpc::Status status = stub()->GetModel(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  auto id = context.GetServerTrailingMetadata().find(server::kRequestIdHeader);
  ASSERT_NE(id, context.GetServerTrailingMetadata().end());
  const std::string request_id(id->second.data(), id->second.size());
  EXPECT_EQ(request_id.rfind("r-", 0), 0u);
  EXPECT_THAT(status.error_message(), HasSubstr("(request " + request_id + ")"));
  // Successful calls carry one too, a different one.
  grpc::ClientContext again;
  SetDeadline(&again, 30);
  v1::ListModelsResponse page;
  ASSERT_TRUE(stub()->ListModels(&again, v1::ListModelsRequest(), &page).ok());
  auto second = again.GetServerTrailingMetadata().find(server::kRequestIdHeader);
  ASSERT_NE(second, again.GetServerTrailingMetadata().end());
  EXPECT_NE(std::string(second->second.data(), second->second.size()), request_id);
}

TEST(ToGrpcStatusTest, MapsEveryCodeOneToOne) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), "why");
    const grpc::Status converted = server::ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(converted.error_code()), code);
    EXPECT_EQ(converted.error_message(), code == 0 ? "" : "why");
    EXPECT_EQ(client::FromGrpcStatus(converted), status);
  }
}

}  // namespace
}  // namespace modeldock::testing
