// Recommend end to end through the transport: the demo models registered over gRPC, the demo
// query sent in each wire encoding (inline uint8, chunked float32) and through the CLI, and the
// request-shape checks of the service. Ranking quality itself is the dock's and bench/'s
// business; here the oracle is consistency: the same samples give the same answer however they
// travel.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/datasets.h"
#include "nlohmann/json.hpp"
#include "server/service.h"
#include "tests/subprocess.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

const char* const kDemoModels[] = {"fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-all-mlp",
                                   "glyph-digits-cnn", "fmnist-shuffled-cnn"};

std::string QueryImages() { return AssetPath("demo/query_tops/query-images-idx3-ubyte"); }
std::string QueryLabels() { return AssetPath("demo/query_tops/query-labels-idx1-ubyte"); }

grpc::Status SendRecommendStream(v1::ModelDockService::Stub* stub,
                                 const std::vector<v1::RecommendRequest>& messages,
                                 v1::RecommendResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context);
  auto writer = stub->Recommend(&context, response);
  for (const auto& message : messages) {
    if (!writer->Write(message)) break;
  }
  writer->WritesDone();
  return writer->Finish();
}

v1::RecommendRequest HeaderMessage(const v1::RecommendHeader& header) {
  v1::RecommendRequest request;
  *request.mutable_header() = header;
  return request;
}

v1::RecommendRequest ChunkMessage(const std::string& bytes) {
  v1::RecommendRequest request;
  request.set_chunk(bytes);
  return request;
}

// A float32 header describing `dataset` (no data).
v1::RecommendHeader Float32Header(const Dataset& dataset) {
  v1::RecommendHeader header;
  header.set_task(v1::TASK_KIND_IMAGE_CLASSIFICATION);
  for (int64_t d : dataset.samples.SampleShape()) header.add_sample_shape(d);
  header.set_num_samples(dataset.samples.Rows());
  header.set_encoding(v1::SAMPLE_ENCODING_FLOAT32);
  for (int32_t y : dataset.labels) header.add_labels(y);
  header.set_top_k(5);
  return header;
}

std::string Float32Bytes(const Dataset& dataset) {
  std::string bytes(dataset.samples.values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), dataset.samples.values.data(), bytes.size());
  return bytes;
}

class RecommendE2eTest : public ::testing::Test {
 protected:
  // One server with the demo models READY for the whole suite: probing them once is enough.
  static void SetUpTestSuite() {
    temp_ = new TempDir();
    server_ = new InProcessServer((fs::path(temp_->path()) / "data").string());
    if (AssetDir().empty() || !fs::exists(QueryImages())) return;
    if (!server_->Start()) return;
    client::ClientOptions options;
    options.address = server_->address();
    client_ = new client::Client(options);
    std::vector<std::string> stems;
    for (const char* name : kDemoModels) stems.push_back(std::string("demo/") + name);
    ready_ = RegisterAssetModels(*client_, stems, nullptr);
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
    ASSERT_TRUE(fs::exists(QueryImages())) << "missing " << QueryImages();
    ASSERT_TRUE(ready_) << "the demo models could not be registered";
    datasets::LoadOptions load;
    load.labels_path = QueryLabels();
    auto dataset = datasets::LoadDataset(QueryImages(), load);
    ASSERT_TRUE(dataset.ok()) << dataset.status();
    query_ = std::move(*dataset);
    ASSERT_EQ(query_.samples.shape, (std::vector<int64_t>{200, 1, 28, 28}));
  }

  v1::ModelDockService::Stub* stub() { return server_->stub(); }

  static TempDir* temp_;
  static InProcessServer* server_;
  static client::Client* client_;
  static bool ready_;
  Dataset query_;
};

TempDir* RecommendE2eTest::temp_ = nullptr;
InProcessServer* RecommendE2eTest::server_ = nullptr;
client::Client* RecommendE2eTest::client_ = nullptr;
bool RecommendE2eTest::ready_ = false;

TEST_F(RecommendE2eTest, RanksTheDemoModelsAndAgreesAcrossEncodings) {
  v1::RecommendHeader options;
  options.set_top_k(5);
  // IDX images are multiples of 1/255: the client sends them inline as uint8.
  auto inline_uint8 = client_->Recommend(query_, options);
  ASSERT_TRUE(inline_uint8.ok()) << inline_uint8.status();
  EXPECT_EQ(inline_uint8->metric(), v1::METRIC_FUSION);
  // Five small models fit the default latency budget: all are scored, and the response says so.
  EXPECT_EQ(inline_uint8->mode(), v1::RECOMMEND_MODE_SCORED_ALL);
  EXPECT_NE(inline_uint8->mode_reason().find("fits the"), std::string::npos)
      << inline_uint8->mode_reason();
  EXPECT_EQ(inline_uint8->latency_budget_ms(), 5000);
  EXPECT_EQ(inline_uint8->label_source(), "given");
  EXPECT_EQ(inline_uint8->num_compatible(), 5);
  ASSERT_EQ(inline_uint8->results_size(), 5);
  std::set<std::string> names;
  for (int i = 0; i < inline_uint8->results_size(); ++i) {
    const v1::Recommendation& r = inline_uint8->results(i);
    EXPECT_EQ(r.rank(), i + 1);
    EXPECT_FALSE(r.reason().empty());
    EXPECT_GE(r.stage1_rank(), 1);
    EXPECT_TRUE(r.has_stage1_score());
    EXPECT_GT(r.stage1_score(), 0);
    EXPECT_LE(r.stage1_score(), 1);
    EXPECT_FALSE(r.model().id().empty());
    names.insert(r.model().spec().name());
    if (i > 0 && r.scored() && inline_uint8->results(i - 1).scored()) {
      EXPECT_LE(r.score(), inline_uint8->results(i - 1).score());
    }
  }
  EXPECT_EQ(names, std::set<std::string>(std::begin(kDemoModels), std::end(kDemoModels)));
  EXPECT_GT(inline_uint8->timings().total_millis(), 0);

  // The same samples as float32 in 100 kB chunks: the same ranking and scores.
  const std::string bytes = Float32Bytes(query_);
  std::vector<v1::RecommendRequest> messages = {HeaderMessage(Float32Header(query_))};
  for (size_t offset = 0; offset < bytes.size(); offset += 100000) {
    messages.push_back(ChunkMessage(bytes.substr(offset, 100000)));
  }
  ASSERT_GT(messages.size(), 3u);
  v1::RecommendResponse chunked;
  grpc::Status status = SendRecommendStream(stub(), messages, &chunked);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(chunked.results_size(), inline_uint8->results_size());
  for (int i = 0; i < chunked.results_size(); ++i) {
    EXPECT_EQ(chunked.results(i).model().id(), inline_uint8->results(i).model().id());
    EXPECT_DOUBLE_EQ(chunked.results(i).score(), inline_uint8->results(i).score());
    EXPECT_DOUBLE_EQ(chunked.results(i).similarity(), inline_uint8->results(i).similarity());
  }
}

TEST_F(RecommendE2eTest, OptionsReachTheEngine) {
  v1::RecommendHeader options;
  options.set_top_k(2);
  options.set_metric(v1::METRIC_NONE);
  auto none = client_->Recommend(query_, options);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->metric(), v1::METRIC_NONE);
  ASSERT_EQ(none->results_size(), 2);
  // Stage 1 only: ranked by the probe-proxy score.
  EXPECT_EQ(none->mode(), v1::RECOMMEND_MODE_STAGE1_ONLY);
  EXPECT_EQ(none->num_scored(), 0);
  EXPECT_EQ(none->num_samples_scored(), 0);
  EXPECT_EQ(none->results(0).stage1_rank(), 1);
  EXPECT_GE(none->results(0).stage1_score(), none->results(1).stage1_score());
  EXPECT_DOUBLE_EQ(none->results(0).score(), none->results(0).stage1_score());

  // An explicit candidate count wins over the latency budget; a negative budget is refused.
  options.set_metric(v1::METRIC_FUSION);
  options.set_num_candidates(2);
  options.set_latency_budget_ms(1e9);
  auto two = client_->Recommend(query_, options);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->mode(), v1::RECOMMEND_MODE_TWO_STAGE);
  EXPECT_EQ(two->num_scored(), 2);
  EXPECT_EQ(two->num_samples_scored(), query_.samples.Rows());
  options.set_num_candidates(0);
  options.set_latency_budget_ms(-1);
  auto negative = client_->Recommend(query_, options);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  options.set_latency_budget_ms(0);

  options.set_metric(v1::METRIC_LOGME);
  options.set_brute_force(true);
  options.set_top_k(3);
  auto brute = client_->Recommend(query_, options);
  ASSERT_TRUE(brute.ok()) << brute.status();
  EXPECT_EQ(brute->metric(), v1::METRIC_LOGME);
  EXPECT_EQ(brute->num_scored(), 5);
  ASSERT_EQ(brute->results_size(), 3);
  for (const auto& r : brute->results()) EXPECT_EQ(r.stage1_rank(), 0);

  // Without labels the dock clusters the query.
  Dataset unlabelled = query_;
  unlabelled.labels.clear();
  auto clustered = client_->Recommend(unlabelled, v1::RecommendHeader());
  ASSERT_TRUE(clustered.ok()) << clustered.status();
  EXPECT_THAT(clustered->label_source(), HasSubstr("cluster"));
}

TEST_F(RecommendE2eTest, BadRequestsAreInvalidArgument) {
  const std::string bytes = Float32Bytes(query_);
  const v1::RecommendHeader good = Float32Header(query_);
  struct Case {
    std::string what;
    std::vector<v1::RecommendRequest> messages;
    std::string message_part;
  };
  std::vector<Case> cases;
  cases.push_back({"empty stream", {}, "header"});
  cases.push_back({"chunk first", {ChunkMessage(bytes.substr(0, 10))}, "must be a header"});
  cases.push_back({"truncated",
                   {HeaderMessage(good), ChunkMessage(bytes.substr(0, bytes.size() / 2))},
                   "truncated: got " + std::to_string(bytes.size() / 2) + " of " +
                       std::to_string(bytes.size())});
  {
    v1::RecommendHeader h = good;
    h.set_inline_data(bytes);
    cases.push_back({"too many bytes", {HeaderMessage(h), ChunkMessage("x")}, "more sample data"});
  }
  {
    v1::RecommendHeader h = good;
    h.mutable_labels()->RemoveLast();
    h.set_inline_data(bytes);
    cases.push_back({"label count", {HeaderMessage(h)}, "199 labels for 200 samples"});
  }
  {
    v1::RecommendHeader h = good;
    h.set_encoding(v1::SAMPLE_ENCODING_UNSPECIFIED);
    cases.push_back({"encoding", {HeaderMessage(h)}, "encoding"});
  }
  {
    v1::RecommendHeader h = good;
    h.set_num_samples(0);
    cases.push_back({"no samples", {HeaderMessage(h)}, "num_samples"});
  }
  {
    v1::RecommendHeader h = good;
    h.set_sample_shape(1, -28);
    cases.push_back({"shape", {HeaderMessage(h)}, "non-positive"});
  }
  {
    v1::RecommendHeader h = good;
    h.set_task(v1::TASK_KIND_TABULAR_CLASSIFICATION);
    h.set_encoding(v1::SAMPLE_ENCODING_UINT8);
    cases.push_back({"uint8 tabular", {HeaderMessage(h)}, "images only"});
  }
  cases.push_back({"header twice", {HeaderMessage(good), HeaderMessage(good)}, "may only be the first"});
  {
    v1::RecommendHeader h = good;  // 2000 samples: 6.3 MB of float32, sent in too big a chunk
    h.set_num_samples(2000);
    h.clear_labels();
    cases.push_back({"big chunk",
                     {HeaderMessage(h), ChunkMessage(std::string(server::kMaxChunkBytes + 1, 0))},
                     "exceeds the limit of 1048576 bytes"});
  }
  for (const Case& c : cases) {
    v1::RecommendResponse response;
    grpc::Status status = SendRecommendStream(stub(), c.messages, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.what << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message_part)) << c.what;
  }
  // A query too large to hold is refused before any data is sent.
  v1::RecommendHeader huge = good;
  huge.set_num_samples(int64_t{1} << 40);
  huge.clear_labels();
  v1::RecommendResponse response;
  grpc::Status status = SendRecommendStream(stub(), {HeaderMessage(huge)}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  // And the server still answers.
  EXPECT_TRUE(client_->Recommend(query_, v1::RecommendHeader()).ok());
}

TEST_F(RecommendE2eTest, CliRecommendJson) {
  ProcessResult r = RunProcess(
      {MODELDOCK_CLI_PATH, "--server", server_->address(), "--json", "recommend", QueryImages(),
       "--labels", QueryLabels(), "--top", "3", "--metric", "tmi"},
      temp_->path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  ASSERT_EQ(out["results"].size(), 3u);
  for (const char* key : {"rank", "name", "id", "score", "similarity", "stage1_rank",
                          "stage1_score", "stage2_score", "reason"}) {
    EXPECT_TRUE(out["results"][0].contains(key)) << key;
  }
  EXPECT_EQ(out["mode"], "scored_all");
  EXPECT_TRUE(out["mode_reason"].is_string());
  EXPECT_EQ(out["latency_budget_ms"], 5000);
  for (const char* key : {"receive_millis", "encode_query_millis", "stage1_millis",
                          "stage2_millis", "total_millis"}) {
    EXPECT_TRUE(out["timings"].contains(key)) << key;
  }
  EXPECT_EQ(out["metric"], "tmi");
  EXPECT_EQ(out["label_source"], "given");
  EXPECT_EQ(out["num_compatible"], 5);
  EXPECT_TRUE(out["warnings"].is_array());

  // The CLI and the library agree on the ranking.
  v1::RecommendHeader options;
  options.set_top_k(3);
  options.set_metric(v1::METRIC_TMI);
  auto direct = client_->Recommend(query_, options);
  ASSERT_TRUE(direct.ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(out["results"][i]["id"], direct->results(i).model().id());
  }

  r = RunProcess({MODELDOCK_CLI_PATH, "--server", server_->address(), "recommend", QueryImages(),
                  "--labels", QueryLabels(), "--top", "2"},
                 temp_->path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("RANK"));
  EXPECT_THAT(r.out, HasSubstr("STAGE-1"));
  EXPECT_THAT(r.out, HasSubstr("mode: scored_all"));
  options.set_metric(v1::METRIC_UNSPECIFIED);  // the default: fusion
  auto fused = client_->Recommend(query_, options);
  ASSERT_TRUE(fused.ok());
  EXPECT_THAT(r.out, HasSubstr(fused->results(0).model().spec().name()));
  EXPECT_THAT(r.out, HasSubstr("timings:"));
}

// Issue 3's ranking oracle over a real socket with the real demo models: on a query of
// Fashion-MNIST tops, the model trained on exactly those classes ranks above the one trained on
// unrelated classes (footwear), which ranks above the one trained on shuffled labels (shrinkage
// H-score; the default fusion puts the tops model first); and stage 1 alone puts the tops model
// first and the shuffled one last.
TEST_F(RecommendE2eTest, MatchingModelRanksAboveUnrelatedAboveShuffled) {
  ProcessResult r = RunProcess(
      {MODELDOCK_CLI_PATH, "--server", server_->address(), "--json", "recommend", QueryImages(),
       "--labels", QueryLabels(), "--top", "5", "--brute-force"},
      temp_->path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  std::map<std::string, int> rank;
  for (const json& result : out["results"]) rank[result["name"]] = result["rank"];
  ASSERT_EQ(rank.size(), 5u);
  // The default fusion puts the matching model first.
  EXPECT_EQ(rank["fmnist-tops-cnn"], 1);
  // Shrinkage H-score alone: matching > unrelated > shuffled.
  r = RunProcess({MODELDOCK_CLI_PATH, "--server", server_->address(), "--json", "recommend",
                  QueryImages(), "--labels", QueryLabels(), "--top", "5", "--brute-force",
                  "--metric", "shrinkage_hscore"},
                 temp_->path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  out = json::parse(r.out);
  rank.clear();
  for (const json& result : out["results"]) rank[result["name"]] = result["rank"];
  EXPECT_LT(rank["fmnist-tops-cnn"], rank["fmnist-footwear-cnn"]);
  EXPECT_LT(rank["fmnist-footwear-cnn"], rank["fmnist-shuffled-cnn"]);

  r = RunProcess({MODELDOCK_CLI_PATH, "--server", server_->address(), "--json", "recommend",
                  QueryImages(), "--labels", QueryLabels(), "--top", "5", "--metric", "none"},
                 temp_->path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  out = json::parse(r.out);
  ASSERT_EQ(out["results"].size(), 5u);
  // Stage 1 alone (probe proxies, no model run): matching model first, shuffled labels last.
  EXPECT_EQ(out["results"][0]["name"], "fmnist-tops-cnn");
  EXPECT_EQ(out["results"][4]["name"], "fmnist-shuffled-cnn");
}

TEST_F(RecommendE2eTest, TabularQueryThroughTheCli) {
  const std::string stem = "fixtures/tabular_mlp";
  auto registered =
      client_->Register(AssetPath(stem + ".pt"), SpecFromSidecar(AssetPath(stem + ".json")));
  ASSERT_TRUE(registered.ok()) << registered.status();
  ASSERT_TRUE(client_->Watch(registered->model().id()).ok());
  ProcessResult r = RunProcess({MODELDOCK_CLI_PATH, "--server", server_->address(), "--json",
                                "recommend", AssetPath("fixtures/tabular_query.csv"), "--task",
                                "tabular"},
                               temp_->path());
  ASSERT_EQ(client_->Delete(registered->model().id()).status(), absl::OkStatus());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["num_compatible"], 1);
  ASSERT_EQ(out["results"].size(), 1u);
  EXPECT_EQ(out["results"][0]["name"], "tabular_mlp");
}

}  // namespace
}  // namespace modeldock::testing
