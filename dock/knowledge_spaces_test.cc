// The knowledge-space manifest: which space a model joins, how spaces.json is read, and how the
// per-space overrides apply. Loading the spaces themselves (probe sets, encoders) is covered by
// dock_test through a whole dock.
#include "dock/knowledge_spaces.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace modeldock::dock {
namespace {
namespace fs = std::filesystem;

SpaceSpec Spec(int64_t channels, int64_t min_side, int64_t max_side) {
  SpaceSpec s;
  s.channels = channels;
  s.min_side = min_side;
  s.max_side = max_side;
  return s;
}

TEST(SpaceAcceptsTest, ChannelsAndLargestSideDecide) {
  const SpaceSpec small = Spec(3, 1, 64);
  const SpaceSpec large = Spec(3, 65, 4096);
  EXPECT_TRUE(SpaceAccepts(small, {3, 32, 32}));
  EXPECT_TRUE(SpaceAccepts(small, {3, 64, 20}));
  EXPECT_FALSE(SpaceAccepts(small, {3, 20, 65}));  // the largest side counts
  EXPECT_TRUE(SpaceAccepts(large, {3, 20, 65}));
  EXPECT_TRUE(SpaceAccepts(large, {3, 224, 224}));
  EXPECT_FALSE(SpaceAccepts(small, {1, 32, 32}));  // grey is another kind
  EXPECT_FALSE(SpaceAccepts(small, {32}));         // tabular: no space
  EXPECT_FALSE(SpaceAccepts(large, {3, 4097, 4097}));
}

class ReadSpacesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("spaces_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    overrides_.data_dir = (dir_ / "data").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  void WriteManifest(const std::string& text) { std::ofstream(dir_ / "spaces.json") << text; }

  static constexpr char kThreeSpaces[] = R"({"version": 1, "spaces": [
    {"name": "grey", "channels": 1, "min_side": 1, "max_side": 4096,
     "probe_set": "probe_set_28.npy", "reference_encoder": "reference_encoder.pt",
     "reference_input_shape": [1, 28, 28]},
    {"name": "colour-small", "channels": 3, "max_side": 64,
     "probe_set": "colour_small/probe_set.npy", "reference_encoder": "colour_small/e.pt",
     "reference_input_shape": [3, 32, 32]},
    {"name": "colour-large", "channels": 3, "min_side": 65,
     "probe_set": "colour_large/probe_set.npy", "reference_encoder": "colour_large/e.pt",
     "reference_input_shape": [3, 64, 64]}]})";

  fs::path dir_;
  SpaceOverrides overrides_;
};

TEST_F(ReadSpacesTest, WithoutManifestTheGreySpaceOfTheOlderFiles) {
  auto specs = ReadSpaces(dir_.string(), overrides_);
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  const SpaceSpec& grey = (*specs)[0];
  EXPECT_EQ(grey.name, "grey");
  EXPECT_EQ(grey.channels, 1);
  EXPECT_EQ(grey.options.probe_set_path, (dir_ / "probe_set_28.npy").string());
  EXPECT_EQ(grey.options.reference_encoder_path, (dir_ / "reference_encoder.pt").string());
  EXPECT_EQ(grey.options.reference_input_shape, (std::vector<int64_t>{1, 28, 28}));
  // The index file the dock used before spaces existed: existing docks keep theirs.
  EXPECT_EQ(grey.options.index_path, (dir_ / "data" / "index" / "knowledge.index").string());
}

TEST_F(ReadSpacesTest, ManifestSpacesWithTheirFilesAndIndexes) {
  WriteManifest(kThreeSpaces);
  overrides_.knowledge_encoder_path = "/trained.pt";
  overrides_.index_factory = "HNSW32";
  auto specs = ReadSpaces(dir_.string(), overrides_);
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 3u);
  EXPECT_EQ((*specs)[1].name, "colour-small");
  EXPECT_EQ((*specs)[1].min_side, 1);  // default
  EXPECT_EQ((*specs)[1].max_side, 64);
  EXPECT_EQ((*specs)[2].max_side, 4096);  // default
  EXPECT_EQ((*specs)[1].options.probe_set_path, (dir_ / "colour_small/probe_set.npy").string());
  EXPECT_EQ((*specs)[2].options.reference_input_shape, (std::vector<int64_t>{3, 64, 64}));
  EXPECT_EQ((*specs)[0].options.index_path, (dir_ / "data/index/knowledge.index").string());
  EXPECT_EQ((*specs)[2].options.index_path,
            (dir_ / "data/index/knowledge-colour-large.index").string());
  // A trained alignment belongs to the first space only; the index factory to all.
  EXPECT_EQ((*specs)[0].options.knowledge_encoder_path, "/trained.pt");
  EXPECT_EQ((*specs)[1].options.knowledge_encoder_path, "");
  EXPECT_EQ((*specs)[2].options.index_factory, "HNSW32");
}

TEST_F(ReadSpacesTest, OverridesByPathOrByName) {
  WriteManifest(kThreeSpaces);
  overrides_.probe_set_path = "/mine/grey.npy";
  overrides_.reference_encoder_path = "colour-large=/mine/large.pt,colour-small=/mine/small.pt";
  overrides_.reference_input_shape = {1, 32, 32};
  auto specs = ReadSpaces(dir_.string(), overrides_);
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_EQ((*specs)[0].options.probe_set_path, "/mine/grey.npy");
  EXPECT_EQ((*specs)[1].options.reference_encoder_path, "/mine/small.pt");
  EXPECT_EQ((*specs)[2].options.reference_encoder_path, "/mine/large.pt");
  // The first space's encoder was not replaced: its manifest shape stands.
  EXPECT_EQ((*specs)[0].options.reference_input_shape, (std::vector<int64_t>{1, 28, 28}));

  overrides_.reference_encoder_path = "/mine/grey32.pt";
  specs = ReadSpaces(dir_.string(), overrides_);
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_EQ((*specs)[0].options.reference_encoder_path, "/mine/grey32.pt");
  EXPECT_EQ((*specs)[0].options.reference_input_shape, (std::vector<int64_t>{1, 32, 32}));
}

TEST_F(ReadSpacesTest, UnknownSpaceNameIsRefusedWithTheKnownOnes) {
  WriteManifest(kThreeSpaces);
  overrides_.probe_set_path = "colour-huge=/x.npy";
  auto specs = ReadSpaces(dir_.string(), overrides_);
  ASSERT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(specs.status().message().find("'colour-huge'"), std::string::npos);
  EXPECT_NE(specs.status().message().find("grey, colour-small, colour-large"), std::string::npos);
}

// Text and audio spaces (issue 25) have no channels or sides: they take text or audio models
// only, never an image.
TEST_F(ReadSpacesTest, TextAndAudioSpacesTakeNoImageShape) {
  WriteManifest(R"({"version": 1, "spaces": [
    {"name": "grey", "channels": 1, "probe_set": "probe_set_28.npy",
     "reference_encoder": "reference_encoder.pt", "reference_input_shape": [1, 28, 28]},
    {"name": "text", "input_kind": "text", "probe_set": "text/probe_texts.jsonl",
     "reference_encoder": "text/reference_encoder.pt"},
    {"name": "audio", "input_kind": "audio", "probe_set": "audio/probe_set.npy",
     "reference_encoder": "audio/reference_encoder.pt", "reference_input_shape": [16000]}]})");
  auto specs = ReadSpaces(dir_.string(), overrides_);
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 3u);
  const SpaceSpec& audio = (*specs)[2];
  EXPECT_EQ(audio.options.input_kind, InputKind::kAudio);
  EXPECT_EQ(audio.options.reference_input_shape, std::vector<int64_t>{16000});
  EXPECT_FALSE(SpaceAccepts(audio, {16000}));
  const SpaceSpec& text = (*specs)[1];
  EXPECT_EQ(text.options.input_kind, InputKind::kText);
  EXPECT_EQ((*specs)[0].options.input_kind, InputKind::kImage);
  EXPECT_EQ(text.options.probe_set_path, (dir_ / "text/probe_texts.jsonl").string());
  EXPECT_TRUE(text.options.reference_input_shape.empty());
  EXPECT_EQ(text.options.index_path, (dir_ / "data/index/knowledge-text.index").string());
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{1, 28, 28}, {3, 32, 32}, {0, 1, 1}, {}}) {
    EXPECT_FALSE(SpaceAccepts(text, shape)) << ShapeToString(shape);
  }
}

TEST_F(ReadSpacesTest, BadManifestsNameTheFileAndTheProblem) {
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "cannot read the knowledge-space manifest"},
      {R"({"spaces": []})", "lists no knowledge space"},
      {R"({"spaces": [{"name": "a", "channels": 3, "probe_set": "p", "reference_encoder": "e",
           "reference_input_shape": [1, 28, 28]}]})",
       "reference_input_shape [C, H, W] with C = its channels"},
      {R"({"spaces": [{"name": "a", "channels": 1, "probe_set": "p", "reference_encoder": "e",
           "reference_input_shape": [1, 28, 28]},
          {"name": "a", "channels": 3, "probe_set": "p", "reference_encoder": "e",
           "reference_input_shape": [3, 28, 28]}]})",
       "unique"},
      {R"({"spaces": [{"name": "a", "channels": 1}]})", "cannot read the knowledge-space"},
      {R"({"spaces": [{"name": "a", "input_kind": "video", "probe_set": "p",
           "reference_encoder": "e"}]})",
       "input_kind 'video' (image, text or audio)"},
      {R"({"spaces": [{"name": "a", "input_kind": "audio", "probe_set": "p",
           "reference_encoder": "e", "reference_input_shape": [1, 16000]}]})",
       "audio space 'a' needs reference_input_shape [T]"},
  };
  for (const auto& [text, expected] : cases) {
    WriteManifest(text);
    auto specs = ReadSpaces(dir_.string(), overrides_);
    ASSERT_EQ(specs.status().code(), absl::StatusCode::kFailedPrecondition) << text;
    EXPECT_NE(specs.status().message().find(expected), std::string::npos)
        << specs.status().message();
    EXPECT_NE(specs.status().message().find("spaces.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace modeldock::dock
