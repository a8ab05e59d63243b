// Kinds of models in a dock: feature extractors (issue 12), versions of a name, exported layers.

#include "dock/testing/dock_test_base.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/datasets.h"
#include "common/sha256.h"
#include "dock/blob_store.h"
#include "dock/metadata_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sandbox/worker_pool.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using test::AssetDir;
using test::DockTest;
using test::ReadFile;
using test::SpecFromSidecar;
using test::WaitUntilSettled;

// ---- Feature extractors (issue 12, part 1).

class FeatureExtractorTest : public DockTest {
 protected:
  // Registers `file` as a feature extractor named `name`; returns the final record or status.
  absl::StatusOr<ModelRecord> RegisterExtractor(const std::string& file, const std::string& name) {
    ModelSpec spec;
    spec.name = name;
    spec.input_shape = {1, 28, 28};
    spec.kind = ModelKind::kFeatureExtractor;
    return RegisterBytes(spec, ReadFile(file));
  }
  // The demo tops classifier with its head cut off (scripts/headless_model.py).
  std::string HeadlessTops() {
    const std::string out = (data_dir_ / "headless-tops.pt").string();
    const std::string command =
        absl::StrCat(MODELDOCK_PYTHON, " ", MODELDOCK_HEADLESS_SCRIPT, " ",
                     (fs::path(AssetDir()) / "demo" / "fmnist-tops-cnn.pt").string(), " ", out);
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    return out;
  }
};

TEST_F(FeatureExtractorTest, RegistersWithoutLabelsAndScoresOnTheClassifiersScale) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  auto headless = RegisterExtractor(HeadlessTops(), "tops-headless");
  ASSERT_TRUE(headless.ok()) << headless.status();
  EXPECT_EQ(headless->state, ModelState::kReady) << headless->state_reason;
  EXPECT_EQ(headless->spec.kind, ModelKind::kFeatureExtractor);
  EXPECT_EQ(headless->feature_dim, 64);
  EXPECT_TRUE(headless->spec.class_labels.empty());

  // Its features are the classifier's embed features: the default's members (LogME and
  // shrinkage H-score on the top principal components) must give both the same values (to the
  // reason's four digits; the last bits may differ, and with them the two models' order).
  // Stage 1's NCE measures the classifier only.
  RecommendQuery query = TopsQuery();
  query.brute_force = true;
  auto result = dock_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  auto by_name = ByName(*result);
  ASSERT_EQ(by_name.size(), 3u);
  const std::string& headless_reason = by_name["tops-headless"]->reason;
  const std::string& classifier_reason = by_name["fmnist-tops-cnn"]->reason;
  for (const std::string member : {"logme ", "shrinkage_hscore "}) {
    const size_t at = classifier_reason.find(member);
    ASSERT_NE(at, std::string::npos) << classifier_reason;
    const std::string value = classifier_reason.substr(at, classifier_reason.find(' ', at + member.size()) - at);
    EXPECT_THAT(headless_reason, ::testing::HasSubstr(value + " (rank")) << classifier_reason;
  }
  EXPECT_THAT(headless_reason, ::testing::Not(::testing::HasSubstr("not measured")));
  EXPECT_THAT(headless_reason, ::testing::HasSubstr("feature extractor"));
  query.brute_force = false;
  query.metric = Metric::kNone;
  auto stage1 = dock_->Recommend(query);
  ASSERT_TRUE(stage1.ok());
  auto stage1_by_name = ByName(*stage1);
  // Stage 1 fuses the same members on the probe proxies. The two share their feature members'
  // ranks; NCE ranks the two classifiers only (normalised by 2: 0.5, 0.75 tied, or 1), so the
  // classifier's score is (r_logme + r_shrinkage + r_nce) / 3 and the headless one's
  // (r_logme + r_shrinkage) / 2.
  const double headless_stage1 = stage1_by_name["tops-headless"]->stage1_score;
  const double classifier_stage1 = stage1_by_name["fmnist-tops-cnn"]->stage1_score;
  EXPECT_THAT(3 * classifier_stage1 - 2 * headless_stage1,
              ::testing::AnyOf(::testing::DoubleNear(0.5, 1e-12), ::testing::DoubleNear(0.75, 1e-12),
                               ::testing::DoubleNear(1.0, 1e-12)))
      << headless_stage1 << " " << classifier_stage1;
  // Logit-only metrics skip it, and say why.
  query.metric = Metric::kLeep;
  query.brute_force = true;
  auto leep = dock_->Recommend(query);
  ASSERT_TRUE(leep.ok()) << leep.status();
  EXPECT_EQ(leep->num_scored, 2);
  EXPECT_THAT(absl::StrJoin(leep->warnings, "\n"),
              ::testing::HasSubstr("tops-headless: leep scores a classifier's outputs"));
  // The kind survives a restart.
  dock_.reset();
  OpenDock();
  auto reloaded = dock_->GetModel("tops-headless");
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded->spec.kind, ModelKind::kFeatureExtractor);
  EXPECT_EQ(reloaded->state, ModelState::kReady);
}

TEST_F(FeatureExtractorTest, BadExtractorsAndBadSpecsAreRefusedWithAReason) {
  const std::string crafted = MODELDOCK_CRAFTED_DIR;
  auto non_finite = RegisterExtractor(crafted + "/extractor_non_finite.pt", "nan-features");
  ASSERT_FALSE(non_finite.ok());
  EXPECT_EQ(non_finite.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(non_finite.status().message()), ::testing::HasSubstr("NaN/Inf"));
  auto ragged = RegisterExtractor(crafted + "/extractor_ragged.pt", "ragged-features");
  ASSERT_FALSE(ragged.ok());
  EXPECT_EQ(ragged.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ragged.status().message()), ::testing::HasSubstr("forward returned shape [4, 2, 4]"));
  // Labels on an extractor, or none on a classifier: INVALID_ARGUMENT before any upload.
  ModelSpec spec;
  spec.name = "x";
  spec.input_shape = {1, 28, 28};
  spec.kind = ModelKind::kFeatureExtractor;
  spec.class_labels = {"a", "b"};
  auto with_labels = dock_->BeginRegistration(spec, 10, std::string(64, '0'));
  EXPECT_EQ(with_labels.status().code(), absl::StatusCode::kInvalidArgument);
  spec.kind = ModelKind::kClassifier;
  spec.class_labels.clear();
  auto no_labels = dock_->BeginRegistration(spec, 10, std::string(64, '0'));
  EXPECT_EQ(no_labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_labels.status().message()), ::testing::HasSubstr("feature extractor"));
  auto list = dock_->ListModels(ListFilter(), 100, "");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->total_size, 0) << "a refused extractor left a model behind";
}

// ---- Model versions (issue 10, part 3).

class VersionTest : public DockTest {
 protected:
  // Registers demo/<stem>.pt as `name` version `version` for `owner`; the final record.
  absl::StatusOr<ModelRecord> RegisterVersion(const std::string& stem, const std::string& name,
                                              const std::string& version,
                                              const std::string& owner = "") {
    const std::string base = (fs::path(AssetDir()) / "demo" / stem).string();
    ModelSpec spec = SpecFromSidecar(base + ".json");
    spec.name = name;
    spec.version = version;
    return RegisterBytes(spec, ReadFile(base + ".pt"), owner);
  }
};

// Two keys upload a new name at the same time: both pass BeginRegistration's check (the name is
// free), and the one that finishes second must be refused, not become a second owner.
TEST_F(VersionTest, ConcurrentUploadsOfANewNameLeaveItOneOwner) {
  std::string base = (fs::path(AssetDir()) / "demo" / "fmnist-tops-cnn").string();
  std::string bytes = ReadFile(base + ".pt");
  ModelSpec spec_a = SpecFromSidecar(base + ".json");
  spec_a.name = "contested";
  spec_a.version = "1.0";
  ModelSpec spec_b = spec_a;
  spec_b.version = "2.0";
  auto upload_a = dock_->BeginRegistration(spec_a, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes), "key-a");
  auto upload_b = dock_->BeginRegistration(spec_b, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes), "key-b");
  ASSERT_TRUE(upload_a.ok()) << upload_a.status();
  ASSERT_TRUE(upload_b.ok()) << upload_b.status();
  ASSERT_TRUE((*upload_a)->Write(bytes).ok());
  ASSERT_TRUE((*upload_b)->Write(bytes).ok());
  auto first = dock_->FinishRegistration(std::move(*upload_a));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = dock_->FinishRegistration(std::move(*upload_b));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kPermissionDenied) << second.status();
  EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr("belongs to key key-a"));
  auto versions = dock_->GetModel("contested@2.0");
  EXPECT_EQ(versions.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dock_->ListModels(ListFilter(), 100, "")->total_size, 1);
}

TEST_F(VersionTest, NamesResolveToVersionsAndRecommendationsListEachNameOnce) {
  auto v1 = RegisterVersion("fmnist-tops-cnn", "tops", "1.0", "key-a");
  ASSERT_TRUE(v1.ok()) << v1.status();
  auto v2 = RegisterVersion("fmnist-all-mlp", "tops", "2.0", "key-a");
  ASSERT_TRUE(v2.ok()) << v2.status();
  ASSERT_EQ(v2->state, ModelState::kReady) << v2->state_reason;
  Register("fmnist-footwear-cnn");

  // NAME = the latest READY version; NAME@VERSION = that one; ids still work.
  EXPECT_EQ(dock_->GetModel("tops")->id, v2->id);
  EXPECT_EQ(dock_->GetModel("tops@1.0")->id, v1->id);
  EXPECT_EQ(dock_->GetModel("tops@2.0")->id, v2->id);
  EXPECT_EQ(dock_->GetModel(v1->id)->spec.version, "1.0");
  auto missing = dock_->GetModel("tops@3.0");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), ::testing::HasSubstr("its versions: 1.0, 2.0"));

  // The same version again, or a version from another key: refused, nothing stored.
  auto again = RegisterVersion("fmnist-tops-cnn", "tops", "1.0", "key-a");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  auto other = RegisterVersion("fmnist-tops-cnn", "tops", "3.0", "key-b");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(other.status().message()), ::testing::HasSubstr("belongs to key key-a"));
  auto bad = RegisterVersion("fmnist-tops-cnn", "tops", "1.0 beta", "key-a");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dock_->ListModels(ListFilter(), 100, "")->total_size, 3);

  // One entry per name (its best-ranked version) unless every version is asked for.
  RecommendQuery query = TopsQuery();
  query.brute_force = true;
  auto folded = dock_->Recommend(query);
  ASSERT_TRUE(folded.ok()) << folded.status();
  ASSERT_EQ(folded->results.size(), 2u);
  EXPECT_EQ(folded->num_scored, 3);
  std::set<std::string> names;
  for (const Recommendation& r : folded->results) names.insert(r.model.spec.name);
  EXPECT_EQ(names, (std::set<std::string>{"tops", "fmnist-footwear-cnn"}));
  for (const Recommendation& r : folded->results) {
    if (r.model.spec.name == "tops") {
      EXPECT_THAT(r.reason, ::testing::HasSubstr("the best ranked of its 2 versions"));
    }
  }
  query.all_versions = true;
  auto every = dock_->Recommend(query);
  ASSERT_TRUE(every.ok()) << every.status();
  ASSERT_EQ(every->results.size(), 3u);
  // The folded list is the full list without the lower-ranked version.
  std::vector<std::string> kept;
  std::set<std::string> seen;
  for (const Recommendation& r : every->results) {
    if (seen.insert(r.model.spec.name).second) kept.push_back(r.model.id);
  }
  std::vector<std::string> folded_ids;
  for (const Recommendation& r : folded->results) folded_ids.push_back(r.model.id);
  EXPECT_EQ(folded_ids, kept);

  // A bare name with several versions is ambiguous for a deletion.
  auto ambiguous = dock_->DeleteModel("tops");
  EXPECT_EQ(ambiguous.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ambiguous.status().message()), ::testing::HasSubstr("2 versions (1.0, 2.0)"));
  ASSERT_TRUE(dock_->DeleteModel("tops@2.0").ok());
  EXPECT_EQ(dock_->GetModel("tops")->id, v1->id);  // the remaining version
  auto v3 = RegisterVersion("fmnist-tops-cnn", "tops", "3.0", "key-a");
  ASSERT_TRUE(v3.ok()) << v3.status();
  auto all = dock_->DeleteAllVersions("tops");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, (std::vector<std::string>{v1->id, v3->id}));
  EXPECT_EQ(dock_->GetModel("tops").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dock_->DeleteAllVersions("tops").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dock_->ListModels(ListFilter(), 100, "")->total_size, 1);
  // Versions survive a restart.
  auto v4 = RegisterVersion("fmnist-tops-cnn", "tops", "4.0", "key-a");
  ASSERT_TRUE(v4.ok());
  dock_.reset();
  OpenDock();
  EXPECT_EQ(dock_->GetModel("tops@4.0")->id, v4->id);
}

// ---- Layer selection (issue 12, part 2): models that export embed_layers(x).

class LayerTest : public DockTest {
 protected:
  // Registers crafted model `file` as a 10-class classifier named `name`; the final record.
  absl::StatusOr<ModelRecord> RegisterCrafted(const std::string& file, const std::string& name) {
    ModelSpec spec;
    spec.name = name;
    spec.input_shape = {1, 28, 28};
    for (int c = 0; c < 10; ++c) spec.class_labels.push_back(absl::StrCat("c", c));
    return RegisterBytes(spec, ReadFile(std::string(MODELDOCK_CRAFTED_DIR) + "/" + file));
  }
};

TEST_F(LayerTest, ScoresEveryLayerAndRecommendsTheModelWithItsBestLayer) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  auto layered = RegisterCrafted("layers.pt", "layered");
  ASSERT_TRUE(layered.ok()) << layered.status();
  ASSERT_EQ(layered->state, ModelState::kReady) << layered->state_reason;
  ASSERT_EQ(layered->layers.size(), 3u);
  EXPECT_EQ(layered->layers[0].name, "pixels");
  EXPECT_EQ(layered->layers[0].dim, 49);
  EXPECT_EQ(layered->layers[1].name, "corners");
  EXPECT_EQ(layered->layers[1].dim, 4);
  EXPECT_EQ(layered->layers[2].name, "hidden");
  EXPECT_EQ(layered->layers[2].dim, 16);

  for (Metric metric : {Metric::kFusion, Metric::kLogMe, Metric::kTmi}) {
    RecommendQuery query = TopsQuery();
    query.brute_force = true;
    query.metric = metric;
    auto result = dock_->Recommend(query);
    ASSERT_TRUE(result.ok()) << result.status();
    auto by_name = ByName(*result);
    ASSERT_EQ(by_name.size(), 3u);
    const Recommendation& r = *by_name["layered"];
    ASSERT_EQ(r.layer_scores.size(), 3u) << r.reason;
    double best = -HUGE_VAL;
    std::string best_name;
    for (size_t l = 0; l < 3; ++l) {
      EXPECT_EQ(r.layer_scores[l].name, layered->layers[l].name);
      EXPECT_EQ(r.layer_scores[l].dim, layered->layers[l].dim);
      if (r.layer_scores[l].score > best) {
        best = r.layer_scores[l].score;
        best_name = r.layer_scores[l].name;
      }
    }
    // The model scores as its best layer, and says so. With layers in the dock, every view is
    // compared on its top principal components (TMI excepted), models without layers too.
    EXPECT_EQ(r.layer, best_name);
    EXPECT_DOUBLE_EQ(r.stage2_score, best);
    EXPECT_EQ(by_name["fmnist-tops-cnn"]->reason.find("principal components") != std::string::npos,
              metric != Metric::kTmi)
        << by_name["fmnist-tops-cnn"]->reason;
    EXPECT_THAT(r.reason, ::testing::HasSubstr(absl::StrCat("layer '", best_name, "'")));
    EXPECT_THAT(r.reason, ::testing::HasSubstr("the best of its 3 scored layers"));
    // Four corner pixels, zero on almost every Fashion-MNIST image, tell the classes apart worst.
    EXPECT_LT(r.layer_scores[1].score, r.layer_scores[0].score) << r.reason;
    EXPECT_LT(r.layer_scores[1].score, r.layer_scores[2].score) << r.reason;
    // Models without embed_layers are scored as before, on one set of features.
    EXPECT_TRUE(by_name["fmnist-tops-cnn"]->layer.empty());
    EXPECT_TRUE(by_name["fmnist-tops-cnn"]->layer_scores.empty());
    if (metric == Metric::kFusion) {
      // Ranked among all 5 scored views: 2 models' embed features and 3 layers.
      EXPECT_THAT(r.reason, ::testing::HasSubstr("of 5 model layers"));
    }
  }
  // A logit metric has nothing to choose between: no layers.
  RecommendQuery leep = TopsQuery();
  leep.brute_force = true;
  leep.metric = Metric::kLeep;
  auto by_logits = dock_->Recommend(leep);
  ASSERT_TRUE(by_logits.ok()) << by_logits.status();
  EXPECT_TRUE(ByName(*by_logits)["layered"]->layer.empty());

  // The layers survive a restart.
  dock_.reset();
  OpenDock();
  auto reloaded = dock_->GetModel("layered");
  ASSERT_TRUE(reloaded.ok());
  ASSERT_EQ(reloaded->layers.size(), 3u);
  EXPECT_EQ(reloaded->layers[2].name, "hidden");
  EXPECT_EQ(reloaded->layers[2].dim, 16);
}

TEST_F(LayerTest, UnnamedLayersAreNumbered) {
  auto unnamed = RegisterCrafted("layers_unnamed.pt", "unnamed");
  ASSERT_TRUE(unnamed.ok()) << unnamed.status();
  ASSERT_EQ(unnamed->layers.size(), 2u);
  EXPECT_EQ(unnamed->layers[0].name, "layer0");
  EXPECT_EQ(unnamed->layers[0].dim, 8);
  EXPECT_EQ(unnamed->layers[1].name, "layer1");
  EXPECT_EQ(unnamed->layers[1].dim, 32);
}

TEST_F(LayerTest, BadLayerExportsAreRefusedWithAReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"layers_ragged.pt", "embed_layers layer 1 returned shape [4, 2, 4]"},
      {"layers_non_finite.pt", "embed_layers layer 1 returned NaN/Inf"},
      {"layers_too_many.pt", "embed_layers returned 12 layers; the dock scores at most 8"},
      {"layers_misnamed.pt", "layer_names has 3 names but embed_layers returned 2 layers"},
  };
  for (const auto& [file, message] : cases) {
    auto result = RegisterCrafted(file, "bad-layers");
    ASSERT_FALSE(result.ok()) << file;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << file;
    EXPECT_THAT(std::string(result.status().message()), ::testing::HasSubstr(message)) << file;
  }
  auto list = dock_->ListModels(ListFilter(), 100, "");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->total_size, 0) << "a refused model left a record behind";
}


}  // namespace
}  // namespace modeldock::dock
