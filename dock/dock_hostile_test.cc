// Hostile uploads (issue 8): crafted models (sandbox/crafted_models.py) run only in workers.

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

#include "dock/testing/probe_cache.h"
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
using sandbox::ProcessCpuSeconds;

// Live modeldock-worker children of this process.
std::vector<pid_t> WorkerChildren() {
  std::vector<pid_t> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == getpid() && line.substr(open + 1, close - open - 1).rfind("modeldock-work", 0) == 0) {
      pids.push_back(static_cast<pid_t>(std::stol(entry.path().filename().string())));
    }
  }
  return pids;
}


class HostileModelTest : public DockTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(Crafted("good"))) << "crafted_models.py did not run";
    DockTest::SetUp();
  }
  void OpenDock() override {
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.asset_dir = AssetDir();
    options.sandbox.workers = 2;
    // Small enough that memory_hog is killed, on every batch, within the admission time: it is
    // killed at batches of 4, 2 and 1 (a fresh worker each time), which takes a few seconds on a
    // busy box, so the limit leaves room for that.
    options.sandbox.memory_limit_bytes = 768ll << 20;
    options.sandbox.admission_time_limit = absl::Seconds(8);
    options.sandbox.probe_time_limit = probe_time_limit_;
    options.sandbox.run_time_limit = run_time_limit_;
    options.probe_workers = 2;
    auto dock = Dock::Create(options);
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
  }
  static std::string Crafted(const std::string& name) {
    return (fs::path(MODELDOCK_CRAFTED_DIR) / (name + ".pt")).string();
  }
  absl::StatusOr<ModelRecord> Upload(const std::string& name) {
    ModelSpec spec;
    spec.name = name;
    spec.input_shape = {1, 28, 28};
    for (int i = 0; i < 10; ++i) spec.class_labels.push_back("c" + std::to_string(i));
    std::string bytes = ReadFile(Crafted(name));
    auto upload = dock_->BeginRegistration(spec, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes));
    if (!upload.ok()) return upload.status();
    if (absl::Status s = (*upload)->Write(bytes); !s.ok()) return s;
    auto result = dock_->FinishRegistration(std::move(*upload));
    if (!result.ok()) return result.status();
    return result->model;
  }
  ModelRecord WaitSettled(ModelRecord record) { return WaitUntilSettled(*dock_, record); }
  absl::Duration probe_time_limit_ = absl::Seconds(20);
  absl::Duration run_time_limit_ = absl::Seconds(60);
};

TEST_F(HostileModelTest, EveryCraftedModelIsContainedWithAReason) {
  const std::vector<std::tuple<std::string, absl::StatusCode, std::string>> refused = {
      {"raises", absl::StatusCode::kFailedPrecondition, "this model always fails"},
      {"huge_allocation", absl::StatusCode::kResourceExhausted, "memory limit 768 MiB"},
      {"wrong_width", absl::StatusCode::kFailedPrecondition, "declares 10 labels"},
      {"integer_outputs", absl::StatusCode::kFailedPrecondition, "expected float"},
      {"out_of_bounds_strided", absl::StatusCode::kFailedPrecondition, "raised an error"},
      {"huge_embed", absl::StatusCode::kFailedPrecondition, "accepts at most 65536"},
      {"memory_hog", absl::StatusCode::kResourceExhausted, "MiB resident > 768 MiB (--worker-memory-mb)"},
      {"never_returns", absl::StatusCode::kDeadlineExceeded, "wall-time limit of 8s"},
      // Its tasks share the worker's one inter-op thread: the wall limit ends it (sandbox_test
      // shows the CPU limit on it).
      {"spawns_threads", absl::StatusCode::kDeadlineExceeded, "wall-time limit of 8s"},
  };
  for (const auto& [name, code, reason] : refused) {
    auto record = Upload(name);
    EXPECT_EQ(record.status().code(), code) << name << ": " << record.status();
    EXPECT_THAT(std::string(record.status().message()), ::testing::HasSubstr(reason)) << name;
  }
  auto listed = dock_->ListModels({}, 100, "");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->total_size, 0);  // nothing half-registered

  // Admitted, then caught while probing; a good model registered behind the hanging one is
  // probed meanwhile (the queue is not held up).
  auto hangs = Upload("hangs_on_probing");
  ASSERT_TRUE(hangs.ok()) << hangs.status();
  auto nan = Upload("nan_on_probe_like_images");
  ASSERT_TRUE(nan.ok()) << nan.status();
  ModelRecord good = Register("fmnist-tops-cnn");
  EXPECT_EQ(good.state, ModelState::kReady);
  ModelRecord nan_done = WaitSettled(*nan);
  EXPECT_EQ(nan_done.state, ModelState::kFailed);
  EXPECT_THAT(nan_done.state_reason, ::testing::HasSubstr("NaN"));
  ModelRecord hangs_done = WaitSettled(*hangs);
  EXPECT_EQ(hangs_done.state, ModelState::kFailed);
  EXPECT_THAT(hangs_done.state_reason, ::testing::HasSubstr("wall-time limit of 20s"));

  auto result = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->results.size(), 1u);
  EXPECT_EQ(result->results[0].model.spec.name, "fmnist-tops-cnn");

  // Nothing keeps spinning: neither this process nor its workers use CPU while idle.
  std::vector<pid_t> pids = WorkerChildren();
  pids.push_back(getpid());
  std::vector<double> before;
  for (pid_t pid : pids) before.push_back(ProcessCpuSeconds(pid));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (size_t i = 0; i < pids.size(); ++i) {
    EXPECT_LT(ProcessCpuSeconds(pids[i]) - before[i], 0.2) << "process " << pids[i] << " is busy";
  }
}

TEST_F(HostileModelTest, WorkerKilledDuringProbingIsRetriedOnceThenFailed) {
  auto hangs = Upload("hangs_on_probing");
  ASSERT_TRUE(hangs.ok()) << hangs.status();
  ModelRecord record = *hangs;
  int kills = 0;
  std::map<pid_t, int> seen;  // worker -> polls it has been alive
  for (int i = 0; i < 200 && record.state != ModelState::kFailed; ++i) {
    // Kill each worker once it has been up for a while (running the probe, not starting: a
    // worker killed before its handshake fails as "did not start", not as a killed job). 3 s:
    // on a loaded 2-core CI box a worker's start-up (LibTorch warm-up) took over 1.2 s.
    for (pid_t pid : WorkerChildren()) {
      if (record.state == ModelState::kProbing && ++seen[pid] == 10) kills += kill(pid, SIGKILL) == 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto next = dock_->GetModel(record.id);
    ASSERT_TRUE(next.ok());
    record = *next;
  }
  EXPECT_GE(kills, 2);
  EXPECT_EQ(record.state, ModelState::kFailed);
  EXPECT_THAT(record.state_reason, ::testing::HasSubstr("killed by signal 9"));
  EXPECT_THAT(record.state_reason, ::testing::HasSubstr("twice"));
  // The dock goes on: a good model registers and is probed.
  EXPECT_EQ(Register("fmnist-tops-cnn").state, ModelState::kReady);
}

// A model that hits its run-time limit on a query is skipped on that query's later calls, with
// the reason, instead of paying the limit on every call; other queries still run it.
class RunLimitTest : public HostileModelTest {
 protected:
  RunLimitTest() { run_time_limit_ = absl::Seconds(3); }
  static RecommendQuery Query(bool marked) {
    RecommendQuery query;
    query.dataset.samples = Tensor({8, 1, 28, 28}, std::vector<float>(8 * 28 * 28, 0.0f));
    for (int i = 0; i < 8; ++i) {
      query.dataset.samples.values[static_cast<size_t>(i) * 28 * 28 + 1] = i % 2 ? 1.0f : 0.0f;
      query.dataset.labels.push_back(i % 2);
    }
    if (marked) query.dataset.samples.values[0] = 0.5f;  // hangs_on_marked_queries hangs on it
    query.brute_force = true;
    query.top_k = 2;
    return query;
  }
};

TEST_F(RunLimitTest, AModelThatHitsItsRunLimitOnAQueryIsNotRunOnItAgain) {
  for (const char* name : {"good", "hangs_on_marked_queries"}) {
    auto uploaded = Upload(name);
    ASSERT_TRUE(uploaded.ok()) << uploaded.status();
    EXPECT_EQ(WaitSettled(*uploaded).state, ModelState::kReady) << name;
  }
  auto first = dock_->Recommend(Query(true));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->num_scored, 1);
  const std::string first_warnings = absl::StrJoin(first->warnings, "\n");
  // Its wall-time or CPU-time limit, whichever a loaded machine reaches first.
  EXPECT_THAT(first_warnings, ::testing::HasSubstr(
                                  "skipped hangs_on_marked_queries: the model job exceeded its "));
  auto second = dock_->Recommend(Query(true));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->num_scored, 1);
  EXPECT_THAT(absl::StrJoin(second->warnings, "\n"),
              ::testing::HasSubstr("skipped hangs_on_marked_queries: on this dataset it hit a "
                                   "limit"));
  EXPECT_THAT(absl::StrJoin(second->warnings, "\n"),
              ::testing::HasSubstr("not run on it again for 10m"));
  // Another dataset runs it as before.
  auto other = dock_->Recommend(Query(false));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->num_scored, 2) << absl::StrJoin(other->warnings, "\n");
}

}  // namespace
}  // namespace modeldock::dock
