// Audio models end to end (issue 25): the demo audio models of make_assets.py registered over
// gRPC into a real server, admitted in the sandboxed workers, probed on the audio space's spoken
// words, and recommended for the demo folder of WAV files (some 22.05 kHz, some stereo) through
// the client library and the CLI.
#include <algorithm>
#include <string>
#include <vector>

#include "client/client.h"
#include "client/query_datasets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/subprocess.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;

std::string QueryFolder() { return AssetPath("demo/query_audio"); }

// The demo audio models: every demo/audio/*.json.
std::vector<std::string> AudioStems() {
  std::vector<std::string> stems;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(AssetPath("demo/audio"), ec)) {
    if (entry.path().extension() == ".json") {
      stems.push_back((fs::path("demo/audio") / entry.path().stem()).string());
    }
  }
  std::sort(stems.begin(), stems.end());
  return stems;
}

class AudioE2eTest : public ::testing::Test {
 protected:
  // One server for the whole suite (the binary runs as one ctest process: ONE_PROCESS).
  static void SetUpTestSuite() {
    temp_ = new TempDir();
    server_ = new InProcessServer((fs::path(temp_->path()) / "data").string());
    if (AssetDir().empty() || !fs::exists(QueryFolder())) return;
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
    std::vector<std::string> stems = AudioStems();
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
    ASSERT_TRUE(fs::exists(QueryFolder())) << "missing " << QueryFolder();
    ASSERT_TRUE(started_) << "the server did not start";
  }

  static TempDir* temp_;
  static InProcessServer* server_;
  static client::Client* client_;
  static std::vector<v1::Model>* models_;
  static bool ready_;
  static bool started_;
};

TempDir* AudioE2eTest::temp_ = nullptr;
InProcessServer* AudioE2eTest::server_ = nullptr;
client::Client* AudioE2eTest::client_ = nullptr;
std::vector<v1::Model>* AudioE2eTest::models_ = new std::vector<v1::Model>();
bool AudioE2eTest::ready_ = false;
bool AudioE2eTest::started_ = false;

// The tests that rank models register and probe them (once; the others do not need them).
TEST_F(AudioE2eTest, AudioModelsAreProbedInTheAudioSpaceAndRankedForWavFolders) {
  RegisterModels();
  ASSERT_TRUE(ready_) << "the demo audio models could not be registered";
  ASSERT_GE(models_->size(), 4u);
  for (const v1::Model& model : *models_) {
    const bool audio = model.spec().task() == v1::TASK_KIND_AUDIO_CLASSIFICATION;
    EXPECT_THAT(model.state_reason(), HasSubstr(audio ? " audio samples" : " grey samples"))
        << model.spec().name();
  }
  // A folder of WAV files ranks only the audio models.
  auto query = client::LoadAudioQuery(QueryFolder(), "", 0, 0);
  ASSERT_TRUE(query.ok()) << query.status();
  // The folder holds 22.05 kHz and stereo files: the loader says what it did.
  std::string notes;
  for (const std::string& note : query->notes) notes += note + "; ";
  EXPECT_THAT(notes, HasSubstr("resampled"));
  EXPECT_THAT(notes, HasSubstr("mixed"));
  v1::RecommendHeader options;
  options.set_top_k(10);
  options.set_task(v1::TASK_KIND_AUDIO_CLASSIFICATION);
  auto response = client_->Recommend(*query, options);
  ASSERT_TRUE(response.ok()) << response.status();
  const int audio_models = static_cast<int>(models_->size()) - 1;
  EXPECT_EQ(response->num_compatible(), audio_models);
  ASSERT_EQ(response->results_size(), audio_models);
  for (const v1::Recommendation& r : response->results()) {
    EXPECT_EQ(r.model().spec().task(), v1::TASK_KIND_AUDIO_CLASSIFICATION);
    EXPECT_TRUE(r.scored());
    EXPECT_GT(r.stage1_rank(), 0) << "stage 1 ranked it in the audio space";
  }
  // The same through the CLI, which detects the folder as audio.
  ProcessResult cli = RunProcess({MODELDOCK_CLI_PATH, "--server", server_->address(), "--json",
                                  "recommend", QueryFolder(), "--top", "10"},
                                 temp_->path());
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  const nlohmann::json json = nlohmann::json::parse(cli.out);
  EXPECT_EQ(json["results"][0]["name"], response->results(0).model().spec().name());
  EXPECT_FALSE(json["dataset_notes"].empty());
}

TEST_F(AudioE2eTest, RegistrationChecksTheAudioContract) {
  const std::string stem = AudioStems().front();
  v1::ModelSpec no_shape = SpecFromSidecar(AssetPath(stem + ".json"));
  no_shape.set_name("audio-without-length");
  no_shape.clear_input_shape();
  auto refused = client_->Register(AssetPath(stem + ".pt"), no_shape);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("input_shape [T]"));
}

}  // namespace
}  // namespace modeldock::testing
