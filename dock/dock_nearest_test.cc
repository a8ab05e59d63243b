// A model's nearest models in its knowledge space (issue 24, the model card): checked against the
// dot products of the knowledge vectors the store holds.

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dock/dock_testing.h"
#include "dock/testing/probe_cache.h"
#include "dock/metadata_store.h"
#include "dock/testing/dock_test_base.h"
#include "gtest/gtest.h"

namespace modeldock::dock {
namespace {

using test::DockTest;
using test::UploadDemo;

class NearestModelsTest : public DockTest {
 protected:
  // The dock as the fixture opens it, with its store kept for reading the stored vectors.
  void OpenDock() override {
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.asset_dir = test::AssetDir();
    options.report_standings = false;
    auto dock = CreateDockWithStore(options, [this](std::unique_ptr<MetadataStore> opened) {
      store_ = opened.get();
      return opened;
    });
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
  }

  // The stored knowledge vectors of the primary (grey) space, by model id.
  std::map<std::string, std::vector<float>> StoredVectors() {
    auto vectors = store_->Vectors(dock_->Stats().knowledge_space);
    EXPECT_TRUE(vectors.ok()) << vectors.status();
    std::map<std::string, std::vector<float>> out;
    if (vectors.ok()) out.insert(vectors->begin(), vectors->end());
    return out;
  }

  static double Dot(const std::vector<float>& a, const std::vector<float>& b) {
    double sum = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
    }
    return sum;
  }

  MetadataStore* store_ = nullptr;  // owned by the dock
};

TEST_F(NearestModelsTest, OtherReadyModelsByInnerProductBestFirst) {
  std::vector<ModelRecord> models;
  for (const char* name : {"fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-all-mlp",
                           "glyph-digits-cnn"}) {
    models.push_back(Register(name));
    ASSERT_EQ(models.back().state, ModelState::kReady) << name;
  }
  const auto vectors = StoredVectors();
  ASSERT_EQ(vectors.size(), models.size());
  for (const ModelRecord& model : models) {
    // The oracle: every other model by the dot product of the stored vectors, best first.
    std::vector<std::pair<double, std::string>> expected;
    for (const auto& [id, vector] : vectors) {
      if (id != model.id) expected.emplace_back(Dot(vectors.at(model.id), vector), id);
    }
    std::sort(expected.rbegin(), expected.rend());
    ASSERT_EQ(expected.size(), 3u);
    ASSERT_GT(expected[0].first, expected[1].first) << "tied similarities make the order moot";

    auto nearest = dock_->NearestModels(model.spec.name, 10);
    ASSERT_TRUE(nearest.ok()) << nearest.status();
    ASSERT_EQ(nearest->size(), expected.size()) << model.spec.name;
    for (size_t i = 0; i < expected.size(); ++i) {
      const NearestModel& got = (*nearest)[i];
      EXPECT_EQ(got.model.id, expected[i].second) << model.spec.name << " #" << i;
      EXPECT_NEAR(got.similarity, expected[i].first, 1e-4 * (1 + std::abs(expected[i].first)))
          << model.spec.name << " #" << i;
      EXPECT_EQ(got.model.state, ModelState::kReady);
      EXPECT_FALSE(got.model.spec.name.empty());
    }
    // k is honoured: the first k of the same order.
    auto two = dock_->NearestModels(model.id, 2);
    ASSERT_TRUE(two.ok()) << two.status();
    ASSERT_EQ(two->size(), 2u);
    EXPECT_EQ((*two)[0].model.id, expected[0].second);
    EXPECT_EQ((*two)[1].model.id, expected[1].second);
  }
  // A deleted model is no one's neighbour.
  ASSERT_TRUE(dock_->DeleteModel(models[3].id).ok());
  auto after = dock_->NearestModels(models[0].id, 10);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->size(), 2u);
  for (const NearestModel& n : *after) EXPECT_NE(n.model.id, models[3].id);
}

TEST_F(NearestModelsTest, UnknownAndNotReadyModels) {
  EXPECT_EQ(dock_->NearestModels("no-such-model", 5).status().code(),
            absl::StatusCode::kNotFound);
  // A model alone in its space has no neighbours.
  const ModelRecord only = Register("fmnist-tops-cnn");
  auto none = dock_->NearestModels(only.id, 5);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  // A model still being probed has no vector yet. (Checked only when the model did not change
  // state during the call, which probing of thousands of probes makes the usual case.)
  auto uploaded = UploadDemo(*dock_, "fmnist-footwear-cnn");
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  auto before = dock_->GetModel(uploaded->model.id);
  ASSERT_TRUE(before.ok());
  auto nearest = dock_->NearestModels(uploaded->model.id, 5);
  auto settled = dock_->GetModel(uploaded->model.id);
  ASSERT_TRUE(settled.ok());
  if (before->state != ModelState::kReady && settled->revision == before->revision) {
    EXPECT_EQ(nearest.status().code(), absl::StatusCode::kFailedPrecondition) << nearest.status();
    EXPECT_NE(nearest.status().message().find("not READY"), std::string::npos);
  } else {
    std::cerr << "note: the model settled during the call; the not-READY answer was not checked\n";
  }
  const ModelRecord ready = test::WaitUntilSettled(*dock_, *settled);
  ASSERT_EQ(ready.state, ModelState::kReady) << ready.state_reason;
  auto both = dock_->NearestModels(ready.id, 5);
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_EQ(both->size(), 1u);
  EXPECT_EQ((*both)[0].model.id, only.id);
}

}  // namespace
}  // namespace modeldock::dock
