// ProbeQueue without a dock: jobs are recorded by a fake probe. Shared mode runs on a SQLite
// store, which implements the same claim and lease calls as PostgreSQL.
#include "dock/probe_queue.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dock/metadata_store.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;

// spdlog creates its registry on first use, inside libspdlog, which TSan does not instrument:
// when two queue threads log first, TSan cannot see the creation guard and reports a race. A
// process logs on its main thread first (the server and Dock::Create do); so do these tests.
[[maybe_unused]] const spdlog::logger* const kLogger = spdlog::default_logger_raw();

// Polls `done` every 10 ms for up to `timeout`.
template <typename Pred>
bool WaitFor(Pred done, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

class Recorder {
 public:
  void Add(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    ids_.push_back(id);
  }
  std::vector<std::string> ids() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return ids_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> ids_;
};

TEST(ProbeQueueTest, RunsJobsQueuedBeforeStartInOrder) {
  Recorder probed;
  ProbeQueueOptions options;
  options.workers = 1;
  ProbeQueue queue(options, [&](const std::string& id) { probed.Add(id); });
  queue.Enqueue("a");
  queue.Enqueue("b");
  EXPECT_EQ(queue.waiting(), 2);
  queue.Start();
  queue.Enqueue("c");
  ASSERT_TRUE(WaitFor([&] { return probed.ids().size() == 3; }));
  EXPECT_EQ(probed.ids(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(queue.waiting(), 0);
  EXPECT_FALSE(queue.stopping());
}

TEST(ProbeQueueTest, StopIsSeenByARunningProbeAndEndsIdleWorkers) {
  std::atomic<bool> saw_stop{false};
  std::atomic<bool> running{false};
  ProbeQueueOptions options;
  options.workers = 3;
  ProbeQueue* self = nullptr;
  ProbeQueue queue(options, [&](const std::string&) {
    running = true;
    saw_stop = WaitFor([&] { return self->stopping(); });
  });
  self = &queue;
  queue.Start();
  queue.Enqueue("slow");
  ASSERT_TRUE(WaitFor([&] { return running.load(); }));
  queue.Stop();
  queue.Join();  // returns: the probe saw stopping(), the two idle workers were woken
  EXPECT_TRUE(saw_stop);
  queue.Enqueue("late");  // queued after Stop: never run
  EXPECT_EQ(queue.waiting(), 1);
}

ModelRecord Pending(const std::string& id, int64_t created) {
  ModelRecord r;
  r.id = id;
  r.spec.name = "model-" + id;
  r.spec.version = "1";
  r.spec.task = TaskKind::kImageClassification;
  r.spec.input_shape = {1, 28, 28};
  r.spec.class_labels = {"a", "b"};
  r.state = ModelState::kPending;
  r.sha256 = "sha-" + id;
  r.size_bytes = 1;
  r.created_unix_ms = created;
  r.revision = 1;
  return r;
}

class SharedProbeQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("probe_queue_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto store = OpenMetadataStore((dir_ / "modeldock.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  fs::path dir_;
  std::unique_ptr<MetadataStore> store_;
};

TEST_F(SharedProbeQueueTest, ClaimsEveryPendingRowOnce) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(store_->Insert(Pending("m" + std::to_string(i), 1000 + i)).ok());
  }
  Recorder probed;
  ProbeQueueOptions options;
  options.workers = 2;
  options.shared_jobs = store_.get();
  options.replica_id = "me";
  options.lease = absl::Seconds(60);
  ProbeQueue queue(options, [&](const std::string& id) {
    probed.Add(id);
    ModelRecord r = *store_->Get(id);
    r.state = ModelState::kReady;  // what a probe ends with: no longer a job
    ASSERT_TRUE(store_->UpdateState(r).ok());
  });
  queue.Enqueue("m0");  // only wakes a worker: the row is the job
  EXPECT_EQ(queue.waiting(), 0);
  queue.Start();
  ASSERT_TRUE(WaitFor([&] { return probed.ids().size() == 4; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::vector<std::string> ids = probed.ids();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"m0", "m1", "m2", "m3"}));
}

// A probe longer than the lease keeps its job: the renewal thread extends the lease every
// lease / 3, so another replica cannot claim the row meanwhile. Once the probe is done and the
// lease has run out, the (still PENDING) row can be claimed again.
TEST_F(SharedProbeQueueTest, RenewsTheLeaseOfARunningProbe) {
  ASSERT_TRUE(store_->Insert(Pending("long", 1000)).ok());
  std::atomic<bool> running{false}, release{false};
  ProbeQueueOptions options;
  options.workers = 1;
  options.shared_jobs = store_.get();
  options.replica_id = "me";
  options.lease = absl::Seconds(1);
  std::atomic<int> runs{0};
  ProbeQueue queue(options, [&](const std::string&) {
    ++runs;
    running = true;
    WaitFor([&] { return release.load(); });
  });
  queue.Start();
  ASSERT_TRUE(WaitFor([&] { return running.load(); }));
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
  while (std::chrono::steady_clock::now() < until) {
    auto other = store_->ClaimProbeJob("other", absl::Seconds(1));
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_FALSE(other->has_value()) << "the lease of a running probe expired";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  queue.Stop();
  release = true;
  queue.Join();
  EXPECT_EQ(runs, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto after = store_->ClaimProbeJob("other", absl::Seconds(1));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->value_or(""), "long");
}

}  // namespace
}  // namespace modeldock::dock
