// The Prober part on its own: a fake ModelRunner (model_runner.h) stands for the sandbox, a
// SQLite store wrapped in a fault-injecting decorator holds the rows, and the build's assets
// give the knowledge spaces. Each test runs one job on the test's thread (Prober::Probe).
#include "dock/prober.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

#include "common/request_context.h"
#include "dock/testing/dock_fixture.h"
#include "dock/testing/grey_space.h"
#include "dock/testing/faulty_store.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using test::AssetDir;
using test::FaultyMetadataStore;

// Logits a fixed function of each sample's pixels (finite, different per class), or whatever
// the test sets instead.
class FakeRunner : public ModelRunner {
 public:
  absl::StatusOr<RunOutputs> Run(const ModelRecord& record, const Tensor& samples,
                                 const RunRequest& request) override {
    std::lock_guard<std::mutex> lock(mutex_);
    rows_run_ += samples.Rows();
    want_features_ = request.want_features;
    if (!error_.ok()) return error_;
    const int64_t width = OutputWidth(record) + extra_width_;
    const int64_t row = samples.RowSize();
    RunOutputs out;
    out.logits.shape = {samples.Rows(), width};
    for (int64_t i = 0; i < samples.Rows(); ++i) {
      for (int64_t k = 0; k < width; ++k) {
        const float pixel = samples.values[i * row + (k * 97) % row];
        out.logits.values.push_back(nan_ ? std::nanf("") : pixel * static_cast<float>(k + 1));
      }
    }
    return out;
  }
  bool IsLoaded(const ModelRecord&) override { return false; }
  void Forget(const ModelRecord&) override {}

  std::mutex mutex_;
  int64_t rows_run_ = 0;
  bool want_features_ = false;
  absl::Status error_;
  bool nan_ = false;
  int64_t extra_width_ = 0;
};

class DockProberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    dir_ = fs::temp_directory_path() /
           ("modeldock-prober-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "index");
    auto opened = OpenMetadataStore((dir_ / "modeldock.db").string());
    ASSERT_TRUE(opened.ok()) << opened.status();
    faulty_ = std::make_unique<FaultyMetadataStore>(std::move(*opened));
    auto store = CachingModelTable::Create(faulty_.get());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto spaces = test::LoadGreySpaceOnly(dir_.string(), faulty_.get());
    ASSERT_TRUE(spaces.ok()) << spaces.status();
    spaces_ = std::move(*spaces);
    // No blob store: the prober never adds or removes a model's file.
    registry_ = std::make_unique<Registry>(
        Registry::Deps{store_.get(), faulty_.get(), nullptr, spaces_.get(), absl::ZeroDuration()});
    ProberOptions options;
    options.budget = absl::ZeroDuration();  // the whole probe set
    prober_ = std::make_unique<Prober>(
        options, Prober::Deps{store_.get(), spaces_.get(), &runner_, registry_.get(),
                              &proxy_cache_});
  }
  void TearDown() override {
    prober_.reset();
    registry_.reset();
    spaces_.reset();
    store_.reset();
    faulty_.reset();
    fs::remove_all(dir_);
  }
  // A PENDING grey 10-class image classifier (or a tabular one).
  ModelRecord Insert(const std::string& id, bool tabular = false) {
    ModelRecord r;
    r.id = id;
    r.spec.name = "model-" + id;
    r.spec.task = tabular ? TaskKind::kTabularClassification : TaskKind::kImageClassification;
    r.spec.input_shape = tabular ? std::vector<int64_t>{8} : std::vector<int64_t>{1, 28, 28};
    for (int k = 0; k < 10; ++k) r.spec.class_labels.push_back("c" + std::to_string(k));
    r.state = ModelState::kPending;
    r.sha256 = std::string(64, 'a');
    r.revision = 1;
    r.created_unix_ms = 1;
    EXPECT_TRUE(store_->Insert(r).ok());
    return r;
  }
  ModelRecord Stored(const std::string& id) {
    auto r = store_->GetFresh(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ModelRecord();
  }
  const KnowledgeSpace& Grey() const { return *spaces_->primary(); }

  fs::path dir_;
  std::unique_ptr<FaultyMetadataStore> faulty_;  // over the SQLite store
  std::unique_ptr<CachingModelTable> store_;       // over faulty_'s model table, as in the dock
  std::unique_ptr<KnowledgeSpaces> spaces_;
  std::unique_ptr<Registry> registry_;
  FakeRunner runner_;
  LruCache<const Tensor> proxy_cache_{1 << 20};
  std::unique_ptr<Prober> prober_;
};

TEST_F(DockProberTest, RunOnTheWholeProbeSetCommitsReadyAndIndexes) {
  Insert("m-1");
  proxy_cache_.Put("m-1|old", std::make_shared<const Tensor>(), 1);
  prober_->Probe("m-1");
  const ModelRecord r = Stored("m-1");
  EXPECT_EQ(r.state, ModelState::kReady) << r.state_reason;
  EXPECT_NE(r.state_reason.find("indexed"), std::string::npos) << r.state_reason;
  EXPECT_EQ(runner_.rows_run_, Grey().probe_rows());
  EXPECT_TRUE(runner_.want_features_);
  EXPECT_TRUE(Grey().index()->Contains("m-1"));
  EXPECT_TRUE(faulty_->GetVector("m-1", Grey().id()).ok());
  auto features = faulty_->GetProbeFeatures("m-1", Grey().probe_set_sha());
  ASSERT_TRUE(features.ok()) << features.status();
  EXPECT_EQ(features->Rows(), Grey().probe_rows());
  EXPECT_FALSE(proxy_cache_.Contains("m-1|old"));  // the model's cached features are dropped
  EXPECT_EQ(prober_->done(), 1);
  EXPECT_EQ(prober_->failed(), 0);
}

// Records each log line with the request id of the thread that wrote it.
class RequestIdSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::pair<std::string, std::string>> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(CurrentRequestId(), std::string(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

 private:
  std::vector<std::pair<std::string, std::string>> lines_;
};

TEST_F(DockProberTest, AQueuedJobLogsUnderTheRequestThatQueuedIt) {
  auto sink = std::make_shared<RequestIdSink>();
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("prober-test", sink));
  Insert("m-1");
  Insert("m-2");
  {
    ScopedRequestId scope("r-register");
    prober_->Enqueue("m-1");
    EXPECT_EQ(CurrentRequestId(), "r-register");
  }
  EXPECT_EQ(CurrentRequestId(), "");
  prober_->Enqueue("m-2");  // queued by no request (e.g. at start-up)
  prober_->Start();
  for (int i = 0; i < 600 && prober_->done() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  prober_->Stop();
  prober_->Join();
  spdlog::set_default_logger(previous);
  ASSERT_EQ(prober_->done(), 2);
  std::map<std::string, std::string> request_of_ready;  // model id -> request id of its line
  for (const auto& [request, line] : sink->lines()) {
    for (const char* id : {"m-1", "m-2"}) {
      if (line.find(std::string("model ") + id + " ") == 0 && line.find("READY") != std::string::npos) {
        request_of_ready[id] = request;
      }
    }
  }
  ASSERT_EQ(request_of_ready.size(), 2u) << sink->lines().size() << " lines, first: "
                                         << (sink->lines().empty() ? "" : sink->lines()[0].second);
  EXPECT_EQ(request_of_ready["m-1"], "r-register");
  EXPECT_EQ(request_of_ready["m-2"], "");
}

TEST_F(DockProberTest, NonFiniteOutputsFailTheModel) {
  Insert("m-1");
  runner_.nan_ = true;
  prober_->Probe("m-1");
  const ModelRecord r = Stored("m-1");
  EXPECT_EQ(r.state, ModelState::kFailed);
  EXPECT_EQ(r.state_reason, "probing failed: the model returned NaN/Inf on the probe set");
  EXPECT_FALSE(Grey().index()->Contains("m-1"));
  EXPECT_EQ(prober_->failed(), 1);
}

TEST_F(DockProberTest, OutputsOfAnotherWidthFailTheModel) {
  Insert("m-1");
  runner_.extra_width_ = 1;
  prober_->Probe("m-1");
  const ModelRecord r = Stored("m-1");
  EXPECT_EQ(r.state, ModelState::kFailed);
  const std::string rows = std::to_string(Grey().probe_rows());
  EXPECT_EQ(r.state_reason, "probing failed: probe outputs have shape " + rows + "x11; expected [" +
                                rows + ", 10]");
}

TEST_F(DockProberTest, RunErrorFailsTheModelWithItsMessage) {
  Insert("m-1");
  runner_.error_ = absl::FailedPreconditionError("the worker crashed twice");
  prober_->Probe("m-1");
  const ModelRecord r = Stored("m-1");
  EXPECT_EQ(r.state, ModelState::kFailed);
  EXPECT_EQ(r.state_reason, "probing failed: the worker crashed twice");
}

// DATA_LOSS: the file check already failed the model with its own reason; the prober leaves it.
TEST_F(DockProberTest, DataLossLeavesTheStateToTheFileCheck) {
  Insert("m-1");
  runner_.error_ = absl::DataLossError("stored file does not match its sha256");
  prober_->Probe("m-1");
  EXPECT_EQ(Stored("m-1").state, ModelState::kProbing);
  EXPECT_EQ(prober_->failed(), 0);
}

TEST_F(DockProberTest, TabularModelIsReadyWithoutRunning) {
  Insert("m-1", /*tabular=*/true);
  prober_->Probe("m-1");
  const ModelRecord r = Stored("m-1");
  EXPECT_EQ(r.state, ModelState::kReady);
  EXPECT_NE(r.state_reason.find("no probe set for tabular inputs"), std::string::npos);
  EXPECT_EQ(runner_.rows_run_, 0);
}

TEST_F(DockProberTest, DeletedModelIsNotProbed) {
  Insert("m-1");
  ASSERT_TRUE(store_->Delete("m-1").ok());
  prober_->Probe("m-1");
  EXPECT_EQ(runner_.rows_run_, 0);
  EXPECT_FALSE(Grey().index()->Contains("m-1"));
}

// A passing store fault on the job's first reads: the job waits and reads again (it used to
// take the error for a deletion and drop the job, leaving the model PENDING).
TEST_F(DockProberTest, FailedReadsOfTheJobAreRetried) {
  Insert("m-1");
  std::atomic<int> failures{0};
  faulty_->SetFault([&](std::string_view method, std::string_view key) -> absl::Status {
    if (method != "Get" || key != "m-1" || failures >= 3) return absl::OkStatus();
    ++failures;
    return absl::UnavailableError("injected: the database is unreachable");
  });
  prober_->Probe("m-1");
  EXPECT_EQ(failures.load(), 3);
  EXPECT_EQ(Stored("m-1").state, ModelState::kReady);
}

// Stopping while the store stays down: the job ends without touching the model, which stays
// PENDING for the next start (no FAILED, no lost state).
TEST_F(DockProberTest, StoppingEndsTheRetries) {
  Insert("m-1");
  faulty_->SetFault([](std::string_view method, std::string_view) -> absl::Status {
    return method == "Get" ? absl::UnavailableError("injected: down") : absl::OkStatus();
  });
  prober_->Stop();
  prober_->Probe("m-1");
  faulty_->SetFault(nullptr);
  EXPECT_EQ(Stored("m-1").state, ModelState::kPending);
  EXPECT_EQ(runner_.rows_run_, 0);
}

TEST(RoutingRunnerTest, EachModelGoesToTheRunnerOfItsKind) {
  FakeRunner local, remote;
  RoutingRunner runner(&local, &remote);
  ModelRecord uploaded;
  uploaded.spec.input_shape = {4};
  uploaded.spec.class_labels = {"a", "b"};
  ModelRecord hosted = uploaded;
  hosted.spec.remote_endpoint = "127.0.0.1:8001";
  Tensor samples;
  samples.shape = {3, 4};
  samples.values.assign(12, 1.0f);
  ASSERT_TRUE(runner.Run(uploaded, samples, RunRequest()).ok());
  EXPECT_EQ(local.rows_run_, 3);
  EXPECT_EQ(remote.rows_run_, 0);
  ASSERT_TRUE(runner.Run(hosted, samples, RunRequest()).ok());
  EXPECT_EQ(local.rows_run_, 3);
  EXPECT_EQ(remote.rows_run_, 3);
}

}  // namespace
}  // namespace modeldock::dock
