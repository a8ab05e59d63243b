// Registration end to end: a real dock behind a real gRPC server on 127.0.0.1:0, called through
// a channel with deadlines. Good paths (register, list, show, delete, restart, dedup) and the
// bad inputs that need a server of their own (a size limit, a thread limit, a taken name), each
// answered with the right status code and a helpful message while the server keeps serving and
// stores nothing. The other bad inputs: registration_refused_e2e_test.cc.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "common/sha256.h"
#include "server/service.h"
#include "tests/registration_fixture.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;

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
