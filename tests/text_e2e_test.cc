// Text models end to end (issue 25): the demo text models of make_assets.py registered over gRPC
// into a real server, admitted in the sandboxed workers, probed on the text space's probe texts,
// and recommended for the demo text query (a CSV) through the client library.
#include <string>
#include <vector>

#include "client/client.h"
#include "client/query_datasets.h"
#include "common/text_frames.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;

const char* const kTextModels[] = {"fortune-language-ngram-mlp", "english-fortune-topics-cnn",
                                   "spanish-fortune-topics-gru"};
// The query asks which English fortune database a text comes from: the topics model's task.
constexpr char kTopicsModel[] = "english-fortune-topics-cnn";

std::string QueryCsv() { return AssetPath("demo/query_text.csv"); }

class TextE2eTest : public ::testing::Test {
 protected:
  // One server for the whole suite (the binary runs as one ctest process: ONE_PROCESS).
  static void SetUpTestSuite() {
    temp_ = new TempDir();
    server_ = new InProcessServer((fs::path(temp_->path()) / "data").string());
    if (AssetDir().empty() || !fs::exists(QueryCsv())) return;
    if (!server_->Start()) return;
    client::ClientOptions options;
    options.address = server_->address();
    client_ = new client::Client(options);
    started_ = true;
  }

  // Registers the demo models once per process (probing them takes a while): only the tests
  // that rank models call it.
  static void RegisterModels() {
    if (ready_ || !started_) return;
    std::vector<std::string> stems;
    for (const char* name : kTextModels) stems.push_back(std::string("demo/text/") + name);
    stems.push_back("demo/fmnist-tops-cnn");
    ready_ = RegisterAssetModels(*client_, stems, models_);
  }

  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete temp_;
    client_ = nullptr;
    server_ = nullptr;
    temp_ = nullptr;
  }

  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    ASSERT_TRUE(fs::exists(QueryCsv())) << "missing " << QueryCsv();
    ASSERT_TRUE(started_) << "the server did not start";
    auto query = client::LoadTextQuery(QueryCsv(), "", 0);
    ASSERT_TRUE(query.ok()) << query.status();
    query_ = *std::move(query);
  }

  static v1::RecommendHeader Options() {
    v1::RecommendHeader header;
    header.set_top_k(10);
    return header;
  }

  static TempDir* temp_;
  static InProcessServer* server_;
  static client::Client* client_;
  static std::vector<v1::Model>* models_;
  static bool ready_;
  static bool started_;
  Dataset query_;
};

TempDir* TextE2eTest::temp_ = nullptr;
InProcessServer* TextE2eTest::server_ = nullptr;
client::Client* TextE2eTest::client_ = nullptr;
std::vector<v1::Model>* TextE2eTest::models_ = new std::vector<v1::Model>();
bool TextE2eTest::ready_ = false;
bool TextE2eTest::started_ = false;

// The tests that rank models register and probe them (once; the others do not need them).
TEST_F(TextE2eTest, TextModelsAreProbedInTheTextSpaceAndRankedForTexts) {
  RegisterModels();
  ASSERT_TRUE(ready_) << "the demo text models could not be registered";
  for (const v1::Model& model : *models_) {
    const bool text = model.spec().task() == v1::TASK_KIND_TEXT_CLASSIFICATION;
    EXPECT_EQ(model.spec().input_shape_size(), text ? 0 : 3) << model.spec().name();
    EXPECT_THAT(model.state_reason(), HasSubstr(text ? " text samples" : " grey samples"))
        << model.spec().name();
    EXPECT_TRUE(model.has_embed()) << model.spec().name();
  }
  // Only text models are compatible with a text query, the topics model first.
  ASSERT_GE(query_.texts.size(), 40u);
  ASSERT_EQ(query_.class_names.size(), 4u);
  auto response = client_->Recommend(query_, Options());
  ASSERT_TRUE(response.ok()) << response.status();
  // The image model is not compatible with texts.
  EXPECT_EQ(response->num_compatible(), 3);
  ASSERT_EQ(response->results_size(), 3);
  EXPECT_EQ(response->results(0).model().spec().name(), kTopicsModel);
  for (const v1::Recommendation& r : response->results()) {
    EXPECT_EQ(r.model().spec().task(), v1::TASK_KIND_TEXT_CLASSIFICATION);
    EXPECT_TRUE(r.scored());
    EXPECT_GT(r.stage1_rank(), 0) << "stage 1 ranked it in the text space";
    EXPECT_THAT(r.reason(), HasSubstr("over 4 query classes"));
  }
  EXPECT_EQ(response->label_source(), "given");
  // Unlabelled, the texts are clustered in the text space; still only text models.
  Dataset unlabelled = query_;
  unlabelled.labels.clear();
  auto clustered = client_->Recommend(unlabelled, Options());
  ASSERT_TRUE(clustered.ok()) << clustered.status();
  EXPECT_THAT(clustered->label_source(), HasSubstr("clustered"));
  EXPECT_EQ(clustered->num_compatible(), 3);
}

TEST_F(TextE2eTest, BadTextQueriesAreInvalidArgument) {
  // A text that is not UTF-8, framed correctly.
  std::vector<std::string> texts(query_.texts.begin(), query_.texts.begin() + 8);
  texts[5] = "caf\xe9";  // Latin-1, not UTF-8
  const std::string frame = EncodeTexts(texts);
  v1::RecommendRequest request;
  v1::RecommendHeader* header = request.mutable_header();
  header->set_task(v1::TASK_KIND_TEXT_CLASSIFICATION);
  header->set_encoding(v1::SAMPLE_ENCODING_UTF8_TEXT);
  header->set_num_samples(8);
  header->set_text_bytes(static_cast<int64_t>(frame.size()));
  header->set_inline_data(frame);
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::RecommendResponse response;
  auto writer = server_->stub()->Recommend(&context, &response);
  ASSERT_TRUE(writer->Write(request));
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("text 5"));
  EXPECT_THAT(status.error_message(), HasSubstr("UTF-8"));
}

TEST_F(TextE2eTest, RegistrationChecksTheTextContract) {
  const std::string stem = std::string("demo/text/") + kTextModels[0];
  // A text model declares no input shape.
  v1::ModelSpec shaped = SpecFromSidecar(AssetPath(stem + ".json"));
  shaped.set_name("shaped-text");
  shaped.add_input_shape(16);
  auto refused = client_->Register(AssetPath(stem + ".pt"), shaped);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("declare no input_shape"));
  // A text model registered as an image model fails admission (it cannot take a tensor).
  v1::ModelSpec as_image = SpecFromSidecar(AssetPath(stem + ".json"));
  as_image.set_name("text-as-image");
  as_image.set_task(v1::TASK_KIND_IMAGE_CLASSIFICATION);
  for (int64_t d : {1, 28, 28}) as_image.add_input_shape(d);
  auto failed = client_->Register(AssetPath(stem + ".pt"), as_image);
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("failed admission"));
  // An image model registered as a text model fails admission on the test strings.
  v1::ModelSpec as_text = SpecFromSidecar(AssetPath("demo/fmnist-tops-cnn.json"));
  as_text.set_name("image-as-text");
  as_text.set_task(v1::TASK_KIND_TEXT_CLASSIFICATION);
  as_text.clear_input_shape();
  auto failed_text = client_->Register(AssetPath("demo/fmnist-tops-cnn.pt"), as_text);
  EXPECT_FALSE(failed_text.ok());
  EXPECT_THAT(failed_text.status().message(), HasSubstr("failed admission"));
}

}  // namespace
}  // namespace modeldock::testing
