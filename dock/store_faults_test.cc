// Store faults injected into a whole dock (issue 22, "no swallowed errors"): the metadata store
// is wrapped in test::FaultyMetadataStore, which fails the calls a test picks.
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <unistd.h>

#include "dock/dock_testing.h"
#include "dock/testing/probe_cache.h"
#include "dock/testing/dock_fixture.h"
#include "dock/testing/faulty_store.h"
#include "gtest/gtest.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using test::AssetDir;
using test::FaultyMetadataStore;
using test::UploadDemo;
using test::WaitUntilSettled;

class DockStoreFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    data_dir_ = fs::temp_directory_path() /
                ("modeldock-store-faults-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(data_dir_);
    OpenDock();
  }
  void TearDown() override {
    dock_.reset();
    fs::remove_all(data_dir_);
  }
  void OpenDock() {
    dock_.reset();
    store_ = nullptr;
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.asset_dir = AssetDir();
    options.scrub_interval = absl::ZeroDuration();
    auto dock = CreateDockWithStore(options, [this](std::unique_ptr<MetadataStore> opened) {
      auto faulty = std::make_unique<FaultyMetadataStore>(std::move(opened));
      store_ = faulty.get();
      return faulty;
    });
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
    ASSERT_NE(store_, nullptr);
  }
  // The model files in the blob directory (data_dir/blobs/...).
  int BlobFiles() const {
    int n = 0;
    const fs::path blobs = data_dir_ / "blobs";
    if (!fs::exists(blobs)) return 0;
    for (const auto& entry : fs::recursive_directory_iterator(blobs)) {
      if (entry.is_regular_file()) ++n;
    }
    return n;
  }
  int ListedModels() {
    auto page = dock_->ListModels(ListFilter(), 100, "");
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? static_cast<int>(page->models.size()) : -1;
  }

  fs::path data_dir_;
  std::unique_ptr<Dock> dock_;
  FaultyMetadataStore* store_ = nullptr;  // owned by the dock
};

// dock.cc read any store error of the probing job's first read as "deleted": the job was lost
// and the model stayed PENDING until a restart. Now the read is retried.
TEST_F(DockStoreFaultsTest, ProbingJobSurvivesFailedReadsOfItsModel) {
  std::mutex mutex;
  std::map<std::string, int> gets;  // per model id
  std::atomic<int> failed{0};
  store_->SetFault([&](std::string_view method, std::string_view key) -> absl::Status {
    if (method != "Get") return absl::OkStatus();
    std::lock_guard<std::mutex> lock(mutex);
    // The first read is the registry's refresh after the insert; the probing job's reads follow.
    const int n = ++gets[std::string(key)];
    if (n < 2 || n > 4) return absl::OkStatus();
    ++failed;
    return absl::UnavailableError("injected: the database is unreachable");
  });
  auto result = UploadDemo(*dock_, "fmnist-tops-cnn");
  ASSERT_TRUE(result.ok()) << result.status();
  const ModelRecord record =
      WaitUntilSettled(*dock_, result->model, absl::Milliseconds(50));
  EXPECT_EQ(failed.load(), 3);  // the job's first three reads failed
  EXPECT_EQ(record.state, ModelState::kReady) << record.state_reason;
  EXPECT_EQ(dock_->Stats().index_vectors, 1);
}

// registration.cc wrote the owner apart from the model row (and a failure there deleted the
// row, ignoring whether that worked). The owner is now part of the row's insert.
TEST_F(DockStoreFaultsTest, OwnerIsStoredWithTheRowInOneWrite) {
  std::atomic<int> set_owner_calls{0};
  store_->SetFault([&](std::string_view method, std::string_view) -> absl::Status {
    if (method != "SetOwner") return absl::OkStatus();
    ++set_owner_calls;
    return absl::UnavailableError("injected: SetOwner fails");
  });
  auto result = UploadDemo(*dock_, "fmnist-tops-cnn", "key-1");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(set_owner_calls.load(), 0);
  auto model = dock_->GetModel(result->model.id);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->owner_key_id, "key-1");
  auto owner = store_->inner()->OwnerOf(result->model.id);
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(*owner, "key-1");
  WaitUntilSettled(*dock_, result->model);
}

// A failed insert leaves neither a row nor the blob it brought.
TEST_F(DockStoreFaultsTest, FailedInsertLeavesNoRowAndNoBlob) {
  store_->SetFault([](std::string_view method, std::string_view) -> absl::Status {
    return method == "Insert" ? absl::UnavailableError("injected: insert fails") : absl::OkStatus();
  });
  auto result = UploadDemo(*dock_, "fmnist-tops-cnn");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  EXPECT_EQ(ListedModels(), 0);
  EXPECT_EQ(BlobFiles(), 0);
}

// When the clean-up itself cannot tell whether the blob is used (the count fails), the blob is
// kept (logged), the insert's error is what the caller gets, and the next start removes it.
TEST_F(DockStoreFaultsTest, BlobKeptByAFailedCleanUpIsCollectedAtTheNextStart) {
  store_->SetFault([](std::string_view method, std::string_view) -> absl::Status {
    if (method == "Insert") return absl::UnavailableError("injected: insert fails");
    if (method == "CountBySha") return absl::InternalError("injected: count fails");
    return absl::OkStatus();
  });
  auto result = UploadDemo(*dock_, "fmnist-tops-cnn");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  EXPECT_EQ(BlobFiles(), 1);
  OpenDock();
  EXPECT_EQ(BlobFiles(), 0);
  EXPECT_EQ(ListedModels(), 0);
}

// recommend.cc dropped a model from the stage-1 proxies on any error reading its probe features,
// UNAVAILABLE included, with no word to the caller. NOT_FOUND (none stored) stays silent; any
// other error is now a warning of the result, and the model is still ordered by its vector.
TEST_F(DockStoreFaultsTest, UnreadableProbeFeaturesAreAWarningOfTheResult) {
  auto tops = UploadDemo(*dock_, "fmnist-tops-cnn");
  ASSERT_TRUE(tops.ok()) << tops.status();
  ASSERT_EQ(WaitUntilSettled(*dock_, tops->model).state, ModelState::kReady);
  RecommendQuery query = test::DemoTopsQuery();
  query.metric = Metric::kNone;  // stage 1 only

  auto healthy = dock_->Recommend(query);
  ASSERT_TRUE(healthy.ok()) << healthy.status();
  for (const std::string& w : healthy->warnings) {
    EXPECT_EQ(w.find("probe proxies"), std::string::npos) << w;
  }

  // A fresh dock on the same data (the first one cached the features) reads them again.
  OpenDock();
  std::atomic<int> reads{0};
  store_->SetFault([&](std::string_view method, std::string_view) -> absl::Status {
    if (method != "GetProbeFeatures") return absl::OkStatus();
    ++reads;
    return absl::UnavailableError("injected: the database is unreachable");
  });
  auto result = dock_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GE(reads.load(), 1);
  bool warned = false;
  for (const std::string& w : result->warnings) {
    if (w.find("no probe proxies for fmnist-tops-cnn") != std::string::npos &&
        w.find("UNAVAILABLE") != std::string::npos) {
      warned = true;
    }
  }
  EXPECT_TRUE(warned) << "warnings: " << result->warnings.size();
  ASSERT_EQ(result->results.size(), 1u);  // still ranked (by its knowledge vector)
  EXPECT_EQ(result->results[0].model.id, tops->model.id);
}

}  // namespace
}  // namespace modeldock::dock
