// Knowledge spaces through a whole dock, on the real assets of scripts/make_assets.py
// (MODELDOCK_ASSET_DIR): a colour model joins the colour space and is probed with colour images,
// one query is ranked across spaces, the probing budget probes a prefix, and a dock made with
// assets that had no spaces.json opens unchanged with the ones that have it.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include <unistd.h>

#include "common/datasets.h"
#include "dock/testing/probe_cache.h"
#include "common/sha256.h"
#include "dock/dock.h"
#include "dock/testing/dock_fixture.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace modeldock::dock {
namespace {
namespace fs = std::filesystem;

using test::AssetDir;
using test::RegisterDemo;

// The demo tops query (grey 1x28x28), or its colour version: each grey image tinted into three
// different channels, so that it is a 3x28x28 image of the colour-small kind.
Dataset TopsQuery(bool colour) {
  const fs::path dir = fs::path(AssetDir()) / "demo" / "query_tops";
  datasets::LoadOptions load;
  load.labels_path = (dir / "query-labels-idx1-ubyte").string();
  auto dataset = datasets::LoadIdx((dir / "query-images-idx3-ubyte").string(), load);
  EXPECT_TRUE(dataset.ok()) << dataset.status();
  if (!colour || !dataset.ok()) return dataset.ok() ? *dataset : Dataset();
  Dataset tinted = *dataset;
  const int64_t n = dataset->samples.Rows(), pixels = dataset->samples.RowSize();
  tinted.samples.shape = {n, 3, 28, 28};
  tinted.samples.values.assign(static_cast<size_t>(n * 3 * pixels), 0.0f);
  const float tint[3] = {1.0f, 0.7f, 0.4f};
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) {
      for (int64_t p = 0; p < pixels; ++p) {
        tinted.samples.values[(i * 3 + c) * pixels + p] =
            tint[c] * dataset->samples.values[i * pixels + p];
      }
    }
  }
  return tinted;
}

class SpacesDockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    ASSERT_TRUE(fs::exists(fs::path(AssetDir()) / "spaces.json"))
        << "the assets in " << AssetDir() << " have no spaces.json (scripts/make_assets.py)";
    data_dir_ = fs::temp_directory_path() /
                ("modeldock-spaces-test-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(data_dir_);
  }
  void TearDown() override {
    dock_.reset();
    fs::remove_all(data_dir_);
  }
  void Open(const std::string& asset_dir, absl::Duration probe_budget = absl::Seconds(60)) {
    dock_.reset();
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.asset_dir = asset_dir;
    options.probe_budget = probe_budget;
    auto dock = Dock::Create(options);
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
  }
  // Registers demo/<name>.pt and waits until it leaves PENDING/PROBING; expects it READY.
  ModelRecord Register(const std::string& name) { return RegisterDemo(*dock_, name); }
  RecommendResult Recommend(bool colour_query, Metric metric = Metric::kNone) {
    RecommendQuery query;
    query.dataset = TopsQuery(colour_query);
    query.top_k = 10;
    query.metric = metric;
    auto result = dock_->Recommend(query);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : RecommendResult();
  }

  fs::path data_dir_;
  std::unique_ptr<Dock> dock_;
};

// The first colour demo model of the assets (demo/colour/NAME.pt; its sidecar declares 3
// channels), as "colour/NAME".
std::string ColourDemoModel() {
  const fs::path dir = fs::path(AssetDir()) / "demo" / "colour";
  if (!fs::is_directory(dir)) return "";
  std::vector<fs::path> sidecars;
  for (const auto& entry : fs::directory_iterator(dir)) sidecars.push_back(entry.path());
  std::sort(sidecars.begin(), sidecars.end());
  for (const fs::path& path : sidecars) {
    if (path.extension() != ".json") continue;
    std::ifstream in(path);
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("input_shape") && j["input_shape"].size() == 3 &&
        j["input_shape"][0] == 3 && fs::exists(fs::path(path).replace_extension(".pt"))) {
      return "colour/" + path.stem().string();
    }
  }
  return "";
}

TEST_F(SpacesDockTest, ColourModelJoinsTheColourSpaceAndOneQueryRanksBothKinds) {
  Open(AssetDir());
  const std::string colour_name = ColourDemoModel();
  ASSERT_FALSE(colour_name.empty()) << "no colour demo model in " << AssetDir() << "/demo";
  const ModelRecord grey = Register("fmnist-tops-cnn");
  const ModelRecord colour = Register(colour_name);
  // Each was probed with its own space's probe set.
  EXPECT_NE(grey.state_reason.find(" grey "), std::string::npos) << grey.state_reason;
  EXPECT_NE(colour.state_reason.find(" colour-small "), std::string::npos) << colour.state_reason;
  EXPECT_EQ(dock_->Stats().index_vectors, 2);

  for (bool colour_query : {false, true}) {
    const RecommendResult result = Recommend(colour_query);
    ASSERT_EQ(result.results.size(), 2u);
    // Both kinds get a stage-1 proxy score in one ranking, and a knowledge-vector similarity
    // from their own space.
    for (const Recommendation& r : result.results) {
      EXPECT_TRUE(r.has_stage1_score) << r.model.spec.name << ": " << r.reason;
      EXPECT_GT(r.stage1_score, 0) << r.model.spec.name;
      EXPECT_NE(r.reason.find("knowledge-vector similarity"), std::string::npos) << r.reason;
    }
    // Rank fusion over the two models: one has 1 (first by both metrics) or both 0.75.
    EXPECT_DOUBLE_EQ(result.results[0].stage1_score + result.results[1].stage1_score, 1.5);
  }
  // Stage 2 runs both on the colour query too (grey models see it converted to grey).
  const RecommendResult scored = Recommend(true, Metric::kFusion);
  ASSERT_EQ(scored.results.size(), 2u);
  EXPECT_EQ(scored.num_scored, 2);
}

TEST_F(SpacesDockTest, ProbingBudgetProbesAPrefixAndStage1StillRanksIt) {
  // A budget that any chunk passes: the dock stops at the first chunk boundary at or past the
  // minimum of 256 samples (512: a grey 28x28 model's chunk).
  Open(AssetDir(), absl::Milliseconds(1));
  const ModelRecord cut = Register("fmnist-tops-cnn");
  EXPECT_NE(cut.state_reason.find("probed on the first 512 of "), std::string::npos)
      << cut.state_reason;
  EXPECT_NE(cut.state_reason.find("probing budget"), std::string::npos) << cut.state_reason;
  const ModelRecord other = Register("fmnist-footwear-cnn");
  const RecommendResult result = Recommend(false);
  ASSERT_EQ(result.results.size(), 2u);
  for (const Recommendation& r : result.results) EXPECT_TRUE(r.has_stage1_score) << r.reason;
  // The model trained on exactly the query's classes is first by its proxies on the prefix.
  EXPECT_EQ(result.results[0].model.spec.name, "fmnist-tops-cnn");
  (void)other;
}

TEST_F(SpacesDockTest, GreyDockFromAssetsWithoutManifestOpensUnchanged) {
  // The grey files only, as an asset directory had them before spaces existed.
  const fs::path legacy = data_dir_.string() + "-assets";
  fs::remove_all(legacy);
  fs::create_directories(legacy);
  for (const char* file : {"probe_set_28.npy", "reference_encoder.pt"}) {
    fs::create_symlink(fs::path(AssetDir()) / file, legacy / file);
  }
  Open(legacy.string());
  const ModelRecord before = Register("fmnist-tops-cnn");
  const RecommendResult old_answer = Recommend(false);
  // Reopened with today's assets (grey space first in spaces.json): nothing is probed again,
  // the model keeps its vector and the same stage-1 standing.
  Open(AssetDir());
  auto after = dock_->GetModel(before.id);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->state, ModelState::kReady);
  EXPECT_EQ(after->revision, before.revision) << after->state_reason;
  EXPECT_EQ(dock_->Stats().index_vectors, 1);
  const RecommendResult new_answer = Recommend(false);
  ASSERT_EQ(new_answer.results.size(), 1u);
  ASSERT_EQ(old_answer.results.size(), 1u);
  EXPECT_DOUBLE_EQ(new_answer.results[0].similarity, old_answer.results[0].similarity);
  fs::remove_all(legacy);
}

}  // namespace
}  // namespace modeldock::dock
