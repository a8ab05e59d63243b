// Tests only: the DockTest fixture that the dock's engine tests share (dock_test.cc,
// dock_learning_test.cc, dock_models_test.cc, dock_hostile_test.cc): a dock on a fresh data
// directory with the build's assets, and helpers to register the demo models and query them.
#ifndef MODELDOCK_DOCK_TESTING_DOCK_TEST_BASE_H_
#define MODELDOCK_DOCK_TESTING_DOCK_TEST_BASE_H_

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <unistd.h>

#include "absl/status/statusor.h"
#include "dock/testing/probe_cache.h"
#include "common/datasets.h"
#include "common/sha256.h"
#include "dock/dock.h"
#include "dock/testing/dock_fixture.h"
#include "gtest/gtest.h"

namespace modeldock::dock::test {

class DockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set (run scripts/make_assets.py)";
    ASSERT_TRUE(std::filesystem::exists(std::filesystem::path(AssetDir()) / "MANIFEST.json")) << "assets missing in " << AssetDir();
    data_dir_ = std::filesystem::temp_directory_path() /
                ("modeldock-dock-test-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(data_dir_);
    OpenDock();
  }
  void TearDown() override {
    dock_.reset();
    std::filesystem::remove_all(data_dir_);
  }
  bool learn_from_recommendations_ = false;  // DockOptions of the next OpenDock()
  // Off in the fixture, so that records a test counts are only the ones it reported.
  bool report_standings_ = false;
  bool budget_covers_whole_call_ = true;
  virtual void OpenDock() {
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.asset_dir = AssetDir();
    options.learn_from_recommendations = learn_from_recommendations_;
    options.report_standings = report_standings_;
    options.budget_covers_whole_call = budget_covers_whole_call_;
    auto dock = Dock::Create(options);
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
  }

  // Registers demo/<name>.pt and waits until it leaves PENDING/PROBING; expects it READY.
  ModelRecord Register(const std::string& name) { return RegisterDemo(*dock_, name); }

  // Uploads `bytes` as `spec` for `owner` and waits until the model leaves PENDING/PROBING;
  // the final record, or the registration's error.
  absl::StatusOr<ModelRecord> RegisterBytes(const ModelSpec& spec, const std::string& bytes,
                                            const std::string& owner = "") {
    auto upload = dock_->BeginRegistration(spec, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes), owner);
    if (!upload.ok()) return upload.status();
    if (absl::Status s = (*upload)->Write(bytes); !s.ok()) return s;
    auto result = dock_->FinishRegistration(std::move(*upload));
    if (!result.ok()) return result.status();
    return WaitUntilSettled(*dock_, result->model, absl::Seconds(1));
  }

  RecommendQuery TopsQuery() {
    std::string dir = (std::filesystem::path(AssetDir()) / "demo" / "query_tops").string();
    datasets::LoadOptions load;
    load.labels_path = dir + "/query-labels-idx1-ubyte";
    auto dataset = datasets::LoadIdx(dir + "/query-images-idx3-ubyte", load);
    EXPECT_TRUE(dataset.ok()) << dataset.status();
    RecommendQuery query;
    query.dataset = std::move(*dataset);
    query.top_k = 10;
    return query;
  }

  static std::map<std::string, const Recommendation*> ByName(const RecommendResult& result) {
    std::map<std::string, const Recommendation*> out;
    for (const auto& r : result.results) out[r.model.spec.name] = &r;
    return out;
  }

  std::filesystem::path data_dir_;
  std::unique_ptr<Dock> dock_;
};

// ---- Learning from outcomes (issue 9).

// Derived query datasets (different samples: different query ids and stage-1 views) from the

}  // namespace modeldock::dock::test

#endif  // MODELDOCK_DOCK_TESTING_DOCK_TEST_BASE_H_
