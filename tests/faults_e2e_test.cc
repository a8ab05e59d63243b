// The faults of issue 28, on loopback: a real dock behind a real gRPC server on 127.0.0.1:0.
//   - PostgreSQL stopped and restarted under recommend load: no call fails, and a registration
//     afterwards works (a PostgreSQL of the test's own, started by
//     scripts/postgres_test_server.sh; MODELDOCK_SKIP_PG=1 skips);
//   - the disk filling up in the middle of an upload (a small tmpfs; needs root to mount it,
//     skipped otherwise): RESOURCE_EXHAUSTED, nothing half-written, the server serves on;
//   - a model file corrupted on disk: refused, reported, FAILED; the Scrub RPC lists it;
//   - the SQLite file on a read-only filesystem: a clear error at start.
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "dock/testing/probe_cache.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "common/datasets.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kTops[] = "demo/fmnist-tops-cnn";
constexpr char kFootwear[] = "demo/fmnist-footwear-cnn";

std::string QueryImages() { return AssetPath("demo/query_tops/query-images-idx3-ubyte"); }

// Runs a shell command; its exit status (-1 if it could not run).
int Shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return status == -1 ? -1 : WEXITSTATUS(status);
}

// A tmpfs of `megabytes` mounted on a fresh directory (root only), unmounted by the destructor.
class SmallFilesystem {
 public:
  explicit SmallFilesystem(int megabytes) {
    if (dir_.path().empty()) return;
    path_ = (fs::path(dir_.path()) / "mnt").string();
    fs::create_directories(path_);
    const std::string options = absl::StrCat("size=", megabytes, "m");
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      error_ = absl::StrCat("mount -t tmpfs -o ", options, ": ", std::strerror(errno));
      return;
    }
    mounted_ = true;
    error_.clear();
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  // "" when mounted, else why not.
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }
  bool RemountReadOnly() {
    return ::mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr) == 0;
  }

 private:
  TempDir dir_;
  std::string path_;
  std::string error_ = "not mounted";
  bool mounted_ = false;
};

#define SKIP_UNLESS_MOUNTED(fs_)                                                              \
  do {                                                                                        \
    if (!(fs_).error().empty()) {                                                             \
      GTEST_SKIP() << "needs a small filesystem (root, to mount a tmpfs): " << (fs_).error(); \
    }                                                                                         \
  } while (0)

class FaultsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    ASSERT_TRUE(fs::exists(AssetPath(std::string(kTops) + ".pt")));
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Stop();
  }
  // Starts the server on `data_dir` with `options` (data_dir and assets are filled in).
  void Start(const std::string& data_dir, dock::DockOptions options = {}) {
    server_ = std::make_unique<InProcessServer>(data_dir);
    options.scrub_interval = absl::ZeroDuration();
    options.scrub_mb_per_second = 0;
    server_->options() = options;
    ASSERT_TRUE(server_->Start());
    client::ClientOptions client_options;
    client_options.address = server_->address();
    client_options.timeout = absl::Seconds(60);
    client_ = std::make_unique<client::Client>(client_options);
  }
  absl::StatusOr<v1::Model> RegisterReady(const std::string& stem) {
    auto registered = client_->Register(AssetPath(stem + ".pt"),
                                        SpecFromSidecar(AssetPath(stem + ".json")));
    if (!registered.ok()) return registered.status();
    return client_->Watch(registered->model().id());
  }
  Dataset Query() {
    datasets::LoadOptions load;
    load.labels_path = AssetPath("demo/query_tops/query-labels-idx1-ubyte");
    auto dataset = datasets::LoadDataset(QueryImages(), load);
    EXPECT_TRUE(dataset.ok()) << dataset.status();
    return dataset.ok() ? *std::move(dataset) : Dataset();
  }
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<client::Client> client_;
};

TEST_F(FaultsE2eTest, PostgresRestartUnderRecommendLoadCausesNoErrors) {
  if (const char* skip = std::getenv("MODELDOCK_SKIP_PG"); skip && std::string(skip) == "1") {
    GTEST_SKIP() << "MODELDOCK_SKIP_PG=1";
  }
  // A PostgreSQL of this test's own: it is stopped and started again below.
  TempDir pg;
  // As root the server runs as the `postgres` user, which must reach its directory.
  fs::permissions(pg.path(), fs::perms::owner_all | fs::perms::group_read |
                                 fs::perms::group_exec | fs::perms::others_read |
                                 fs::perms::others_exec);
  const std::string script = MODELDOCK_PG_SCRIPT;
  const std::string pg_dir = (fs::path(pg.path()) / "pg").string();
  ASSERT_EQ(Shell(absl::StrCat(script, " start ", pg_dir, " >/dev/null")), 0)
      << "could not start a PostgreSQL (" << script << "); MODELDOCK_SKIP_PG=1 skips this test";
  struct StopPg {
    std::string command;
    ~StopPg() { Shell(command); }
  } stop_pg{absl::StrCat(script, " stop ", pg_dir)};
  const std::string url = ReadFile(pg_dir + "/url");
  TempDir data;
  dock::DockOptions options;
  options.metadata_url = url.substr(0, url.find('\n'));
  Start(data.path(), options);
  for (const char* stem : {kTops, kFootwear}) {
    auto ready = RegisterReady(stem);
    ASSERT_TRUE(ready.ok()) << ready.status();
    ASSERT_EQ(ready->state(), v1::MODEL_STATE_READY) << ready->state_reason();
  }
  const Dataset query = Query();
  v1::RecommendHeader header;
  header.set_top_k(5);
  header.set_brute_force(true);
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, errors{0};
  std::vector<std::string> failures;
  std::mutex failures_mutex;
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t) {
    load.emplace_back([&] {
      while (!stop) {
        auto answer = client_->Recommend(query, header);
        ++calls;
        if (answer.ok() && answer->results_size() == 2) continue;
        ++errors;
        std::lock_guard<std::mutex> lock(failures_mutex);
        failures.push_back(answer.ok() ? absl::StrCat(answer->results_size(), " results")
                                       : answer.status().ToString());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int before_restart = calls;
  // Down for two seconds while the calls go on.
  EXPECT_EQ(Shell(absl::StrCat(script, " restart ", pg_dir, " 2")), 0);
  const int during_restart = calls - before_restart;
  // Calls go on after the restart too; meanwhile the idle probe workers' polls find the broken
  // connection and reconnect it.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  stop = true;
  for (std::thread& t : load) t.join();
  EXPECT_EQ(errors, 0) << absl::StrJoin(failures, "\n");
  EXPECT_GT(during_restart, 0) << "no call ran while PostgreSQL was down";
  // The store reconnects: a registration (writes) and a listing work again.
  auto another = client_->Register(AssetPath(std::string(kTops) + ".pt"),
                                   [] {
                                     v1::ModelSpec spec =
                                         SpecFromSidecar(AssetPath(std::string(kTops) + ".json"));
                                     spec.set_name("tops-after-restart");
                                     return spec;
                                   }());
  ASSERT_TRUE(another.ok()) << another.status();
  EXPECT_TRUE(another->deduplicated());
  auto listed = client_->List(v1::ListModelsRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->total_size(), 3);
  RecordProperty("calls", calls.load());
}

TEST_F(FaultsE2eTest, DiskFullMidUploadLeavesNothingAndTheServerServesOn) {
  SmallFilesystem small(6);
  SKIP_UNLESS_MOUNTED(small);
  Start(small.path());
  auto tops = RegisterReady(kTops);
  ASSERT_TRUE(tops.ok()) << tops.status();
  ASSERT_EQ(tops->state(), v1::MODEL_STATE_READY);
  const std::set<std::string> files_before = FilesUnder(small.path() + "/blobs");
  // 8 MiB of seeded bytes (with their true digest) cannot fit in what is left of 6 MiB.
  std::string big(8 << 20, '\0');
  std::mt19937 rng(28);
  for (char& c : big) c = static_cast<char>(rng());
  TempDir scratch;
  const std::string big_path = (fs::path(scratch.path()) / "big.pt").string();
  std::ofstream(big_path, std::ios::binary) << big;
  v1::ModelSpec spec = SpecFromSidecar(AssetPath(std::string(kTops) + ".json"));
  spec.set_name("too-big-for-the-disk");
  auto refused = client_->Register(big_path, spec);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("cannot write the upload to disk (disk full?)"));
  // Nothing half-written: no temp file, no new blob, no row.
  EXPECT_TRUE(FilesUnder(small.path() + "/tmp").empty());
  EXPECT_EQ(FilesUnder(small.path() + "/blobs"), files_before);
  auto listed = client_->List(v1::ListModelsRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->total_size(), 1);
  // Alive: it recommends, and registers a model that fits.
  v1::RecommendHeader header;
  header.set_brute_force(true);
  auto answer = client_->Recommend(Query(), header);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->results_size(), 1);
  auto footwear = RegisterReady(kFootwear);
  ASSERT_TRUE(footwear.ok()) << footwear.status();
  EXPECT_EQ(footwear->state(), v1::MODEL_STATE_READY) << footwear->state_reason();
}

TEST_F(FaultsE2eTest, CorruptedModelFileIsRefusedReportedAndScrubbed) {
  TempDir data;
  Start(data.path());
  auto tops = RegisterReady(kTops);
  auto footwear = RegisterReady(kFootwear);
  ASSERT_TRUE(tops.ok() && footwear.ok());
  // 4 bytes flipped in the middle of the stored file, as in the issue; then a fresh server.
  const std::string blob = (fs::path(data.path()) / "blobs" / tops->sha256().substr(0, 2) /
                            tops->sha256()).string();
  {
    std::fstream f(blob, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(fs::file_size(blob) / 2));
    f.write("\xde\xad\xbe\xef", 4);
  }
  client_.reset();
  server_->Stop();
  Start(data.path());
  v1::RecommendHeader header;
  header.set_brute_force(true);
  auto answer = client_->Recommend(Query(), header);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_THAT(absl::StrJoin(answer->warnings(), "\n"),
              HasSubstr("skipped fmnist-tops-cnn: model 'fmnist-tops-cnn@1.0.0' was not run: "
                        "stored file does not match its sha256"));
  for (const v1::Recommendation& r : answer->results()) {
    EXPECT_TRUE(r.model().id() != tops->id() || !r.scored()) << "the corrupted model was scored";
  }
  auto shown = client_->Get(tops->id());
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->state(), v1::MODEL_STATE_FAILED);
  EXPECT_THAT(shown->state_reason(),
              StartsWith("DATA_LOSS: stored file does not match its sha256"));
  // The admin RPC re-hashes both files and names the bad one.
  auto report = client_->Scrub(/*wait=*/true);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->state(), v1::SCRUB_STATE_DONE);
  EXPECT_EQ(report->blobs_checked(), 2);
  EXPECT_EQ(report->blobs_bad(), 1);
  ASSERT_EQ(report->bad_model_ids_size(), 1);
  EXPECT_EQ(report->bad_model_ids(0), tops->id());
  EXPECT_EQ(server_->dock()->Stats().last_scrub.blobs_bad, 1);
}

TEST_F(FaultsE2eTest, SqliteOnAReadOnlyFilesystemFailsClearlyAtStart) {
  SmallFilesystem small(16);
  SKIP_UNLESS_MOUNTED(small);
  {
    dock::DockOptions options;
    options.data_dir = small.path();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.asset_dir = AssetDir();
    auto dock = dock::Dock::Create(options);
    ASSERT_TRUE(dock.ok()) << dock.status();
  }
  ASSERT_TRUE(small.RemountReadOnly()) << std::strerror(errno);
  dock::DockOptions options;
  options.data_dir = small.path();
  options.probe_cache_dir = dock::test::SharedProbeCacheDir();
  options.asset_dir = AssetDir();
  auto dock = dock::Dock::Create(options);
  ASSERT_FALSE(dock.ok());
  EXPECT_EQ(dock.status().code(), absl::StatusCode::kFailedPrecondition) << dock.status();
  EXPECT_THAT(std::string(dock.status().message()),
              HasSubstr(absl::StrCat("metadata database ", small.path(),
                                     "/modeldock.db is read-only (a read-only filesystem")));
}

}  // namespace
}  // namespace modeldock::testing
