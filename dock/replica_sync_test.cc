// Two docks in one process on one PostgreSQL schema and one blob directory: what one commits
// reaches the other's index through the change feed (ReplicaSync -> KnowledgeSpace::Sync), and a
// change no notification announced is repaired by the periodic catch-up. In-process (unlike
// tests/replicas_e2e_test.cc, which runs server processes) so that scripts/tsan.sh can check the
// sync thread, the probe queue's claim and renewal threads and the index under one sanitizer.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "common/datasets.h"
#include "dock/testing/probe_cache.h"
#include "common/sha256.h"
#include "dock/dock.h"
#include "dock/testing/dock_fixture.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/postgres_env.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;

using test::AssetDir;
using test::RegisterDemo;

bool Eventually(const std::function<bool()>& done, int seconds = 30) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

class ReplicaSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MODELDOCK_REQUIRE_POSTGRES();
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    ASSERT_EQ(schema_.error(), "");
    dir_ = fs::temp_directory_path() /
           ("modeldock-replica-sync-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override {
    one_.reset();
    two_.reset();
    fs::remove_all(dir_);
  }

  // Two docks ("one", "two") that compare their index with the store every `sync_interval`.
  void OpenBoth(absl::Duration sync_interval) {
    one_ = Open("one", sync_interval);
    two_ = Open("two", sync_interval);
    ASSERT_NE(one_, nullptr);
    ASSERT_NE(two_, nullptr);
  }

  std::unique_ptr<Dock> Open(const std::string& name, absl::Duration sync_interval) {
    DockOptions options;
    options.data_dir = (dir_ / name).string();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.blob_dir = (dir_ / "blobs").string();
    options.metadata_url = schema_.url();
    options.asset_dir = AssetDir();
    options.sync_interval = sync_interval;
    options.probe_workers = 1;
    options.sandbox.workers = 1;
    auto dock = Dock::Create(options);
    EXPECT_TRUE(dock.ok()) << dock.status();
    return dock.ok() ? std::move(*dock) : nullptr;
  }

  // Registers demo/<name>.pt on `dock` and waits until it is READY (either replica may probe it).
  ModelRecord Register(Dock& dock, const std::string& name) { return RegisterDemo(dock, name); }

  ::modeldock::testing::TestSchema schema_;
  fs::path dir_;
  std::unique_ptr<Dock> one_, two_;
};

// Notifications alone (the periodic catch-up is an hour away): a commit on one replica reaches
// the other's index.
TEST_F(ReplicaSyncTest, NotificationsReachTheOtherIndex) {
  OpenBoth(absl::Hours(1));
  EXPECT_EQ(one_->Stats().index_vectors, 0);
  EXPECT_EQ(two_->Stats().index_vectors, 0);

  // Registered on one, READY (probed by whichever replica claimed it): both index it.
  const ModelRecord tops = Register(*one_, "fmnist-tops-cnn");
  ASSERT_EQ(tops.state, ModelState::kReady);
  EXPECT_TRUE(Eventually([&] { return one_->Stats().index_vectors == 1; }));
  EXPECT_TRUE(Eventually([&] { return two_->Stats().index_vectors == 1; }));

  // Deleted on two: it leaves one's index.
  auto deleted = two_->DeleteModel(tops.id, "test");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(Eventually([&] { return one_->Stats().index_vectors == 0; }));
  EXPECT_EQ(two_->Stats().index_vectors, 0);
}

// The registry in memory follows the other replica through the same notifications (the catch-up
// is an hour away): a registration, its READY state, a spec update and a deletion made on one
// replica are what the other lists and shows.
TEST_F(ReplicaSyncTest, RegistryInMemoryFollowsTheOtherReplica) {
  OpenBoth(absl::Hours(1));
  const ModelRecord tops = Register(*one_, "fmnist-tops-cnn");
  ASSERT_EQ(tops.state, ModelState::kReady);
  EXPECT_TRUE(Eventually([&] {
    auto shown = two_->GetModel("fmnist-tops-cnn");
    return shown.ok() && shown->id == tops.id && shown->state == ModelState::kReady;
  }));
  EXPECT_TRUE(Eventually([&] { return two_->Stats().models_ready == 1; }));

  ModelUpdate update;
  update.has_description = true;
  update.description = "updated on one";
  auto updated = one_->UpdateModel(tops.id, update, "test");
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_TRUE(Eventually([&] {
    auto shown = two_->GetModel(tops.id);
    return shown.ok() && shown->spec.description == "updated on one" &&
           shown->revision == updated->revision;
  }));
  // An update on two starts from the stored record (not a stale copy): both fields stay.
  ModelUpdate tags;
  tags.has_tags = true;
  tags.tags = {"from-two"};
  auto tagged = two_->UpdateModel(tops.id, tags, "test");
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(tagged->spec.description, "updated on one");
  EXPECT_TRUE(Eventually([&] {
    auto shown = one_->GetModel(tops.id);
    return shown.ok() && shown->spec.tags == std::vector<std::string>{"from-two"} &&
           shown->spec.description == "updated on one";
  }));

  ASSERT_TRUE(two_->DeleteModel(tops.id, "test").ok());
  EXPECT_TRUE(Eventually([&] {
    auto page = one_->ListModels(ListFilter{}, 100, "");
    return page.ok() && page->total_size == 0 &&
           absl::IsNotFound(one_->GetModel("fmnist-tops-cnn").status());
  }));
  EXPECT_EQ(one_->Stats().models_ready, 0);
}

// A vector row removed behind the docks' backs (no notification): the catch-up, every
// sync_interval (1 s here), removes the entry from both indexes.
TEST_F(ReplicaSyncTest, CatchUpRepairsWhatNoNotificationAnnounced) {
  OpenBoth(absl::Seconds(1));
  const ModelRecord footwear = Register(*two_, "fmnist-footwear-cnn");
  ASSERT_EQ(footwear.state, ModelState::kReady);
  ASSERT_TRUE(Eventually([&] { return one_->Stats().index_vectors == 1; }));
  ASSERT_TRUE(Eventually([&] { return two_->Stats().index_vectors == 1; }));
  ASSERT_EQ(schema_.Exec("DELETE FROM vectors"), "");
  EXPECT_TRUE(Eventually([&] { return one_->Stats().index_vectors == 0; }));
  EXPECT_TRUE(Eventually([&] { return two_->Stats().index_vectors == 0; }));
  // A row edited by hand: both registries in memory reload it at the catch-up.
  ASSERT_EQ(schema_.Exec("UPDATE models SET description = 'edited by hand'"), "");
  for (Dock* dock : {one_.get(), two_.get()}) {
    EXPECT_TRUE(Eventually([&] {
      auto shown = dock->GetModel(footwear.id);
      return shown.ok() && shown->spec.description == "edited by hand";
    }));
  }
}

// The serving trained version is one per dock, not per server: a version chosen on one replica
// (here with `alignments use`; adoption by training takes the same path) is served by the other
// from its next catch-up, and a rollback on the other reaches the first the same way.
TEST_F(ReplicaSyncTest, ServingVersionChosenOnOneReplicaIsServedByAll) {
  OpenBoth(absl::Seconds(1));
  for (const char* name : {"fmnist-tops-cnn", "fmnist-all-mlp", "fmnist-shuffled-cnn"}) {
    ASSERT_EQ(Register(*one_, name).state, ModelState::kReady);
  }
  ASSERT_TRUE(Eventually([&] { return two_->Stats().index_vectors == 3; }));
  const std::string dir = (fs::path(AssetDir()) / "demo" / "query_tops").string();
  datasets::LoadOptions load;
  load.labels_path = dir + "/query-labels-idx1-ubyte";
  auto dataset = datasets::LoadIdx(dir + "/query-images-idx3-ubyte", load);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  // Three reported queries (the halves and the whole: three query ids).
  const int64_t n = dataset->samples.Rows(), row = dataset->samples.RowSize();
  for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, n / 2}, {n / 2, n}, {0, n}}) {
    OutcomeReport report;
    report.dataset.samples.shape = dataset->samples.shape;
    report.dataset.samples.shape[0] = end - begin;
    report.dataset.samples.values.assign(dataset->samples.values.begin() + begin * row,
                                         dataset->samples.values.begin() + end * row);
    report.dataset.labels.assign(dataset->labels.begin() + begin, dataset->labels.begin() + end);
    report.source = OutcomeSource::kImport;
    report.outcomes = {{"fmnist-tops-cnn", 0.9 - 0.01 * begin / n},
                       {"fmnist-all-mlp", 0.8},
                       {"fmnist-shuffled-cnn", 0.3}};
    auto stored = one_->ReportOutcome(report);
    ASSERT_TRUE(stored.ok()) << stored.status();
  }
  auto job = one_->TrainAlignment(/*wait=*/true, nullptr);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state, TrainingStatus::State::kDone) << job->message;
  const int64_t version = job->result.version;
  ASSERT_GT(version, 0);
  ASSERT_TRUE(one_->UseAlignment(version).ok());

  RecommendQuery query;
  query.dataset = *dataset;
  query.metric = Metric::kNone;
  auto served_version = [&](Dock& dock) {
    auto answer = dock.Recommend(query);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? answer->alignment_version : int64_t{-1};
  };
  EXPECT_EQ(served_version(*one_), version);
  EXPECT_TRUE(Eventually([&] { return served_version(*two_) == version; }));
  // Rolled back on two: one follows.
  ASSERT_TRUE(two_->UseAlignment(0).ok());
  EXPECT_EQ(served_version(*two_), 0);
  EXPECT_TRUE(Eventually([&] { return served_version(*one_) == 0; }));
}

}  // namespace
}  // namespace modeldock::dock
