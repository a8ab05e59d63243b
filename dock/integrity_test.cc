// Integrity of stored models (issue 28): BlobStore::Verify and its verified-state cache,
// Restore from a mirror, Adopt over a bad copy (no dock needed); then the dock on the demo
// models (MODELDOCK_ASSET_DIR): a corrupted, truncated or deleted model file is detected, the
// model is never run, marked FAILED and reported; a mirror's copy restores it; the scrub
// reports bad files, re-queues repaired ones and catches changed probe features.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "dock/testing/probe_cache.h"
#include "absl/strings/str_join.h"
#include "common/datasets.h"
#include "common/sha256.h"
#include "dock/blob_store.h"
#include "dock/dock.h"
#include "dock/testing/dock_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using test::AssetDir;
using test::ReadFile;
using test::RegisterDemo;
using test::WaitUntilSettled;

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Flips 4 bytes in the middle of the file, in place (same inode), as the operator did.
void FlipMiddle(const std::string& path) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(0, std::ios::end);
  const std::streamoff middle = f.tellg() / 2;
  f.seekg(middle);
  char bytes[4];
  f.read(bytes, 4);
  for (char& b : bytes) b = static_cast<char>(~b);
  f.seekp(middle);
  f.write(bytes, 4);
}

struct timespec MtimeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mtim;
}

void SetMtime(const std::string& path, struct timespec mtime) {
  struct timespec times[2] = {mtime, mtime};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

fs::path TempDir(const std::string& what) {
  fs::path dir = fs::temp_directory_path() /
                 absl::StrCat("modeldock-integrity-", ::getpid(), "-", what, "-",
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Seeded bytes standing in for a model file.
std::string SeededBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

class BlobIntegrityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = TempDir("root");
    mirror_ = TempDir("mirror");
    auto store = BlobStore::Create(root_.string(), {mirror_.string()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    bytes_ = SeededBytes(3 << 20, 28);
    sha_ = Sha256::Of(bytes_);
    const std::string temp = store_->NewTempPath();
    WriteFile(temp, bytes_);
    bool existed = true;
    ASSERT_TRUE(store_->Adopt(temp, sha_, &existed).ok());
    ASSERT_FALSE(existed);
    path_ = store_->PathOf(sha_);
  }
  void TearDown() override {
    fs::remove_all(root_);
    fs::remove_all(mirror_);
  }
  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }

  fs::path root_, mirror_;
  std::unique_ptr<BlobStore> store_;
  std::string bytes_, sha_, path_;
};

TEST_F(BlobIntegrityTest, VerifiesOnceThenAnswersFromTheCacheUntilTheFileChanges) {
  ASSERT_TRUE(store_->Verify(sha_, size()).ok());
  BlobStoreStats first = store_->Stats();
  EXPECT_EQ(first.verifications, 1);
  EXPECT_EQ(first.verified_cached, 0);
  EXPECT_EQ(first.bytes_hashed, size());
  ASSERT_TRUE(store_->Verify(sha_, size()).ok());
  BlobStoreStats second = store_->Stats();
  EXPECT_EQ(second.verified_cached, 1);
  EXPECT_EQ(second.bytes_hashed, size()) << "a cached check must not hash";

  // Flipped in place with its modification time put back: the identity is unchanged, so only
  // a forced check (the scrub's) sees it. That is the cache's documented limit.
  const struct timespec mtime = MtimeOf(path_);
  FlipMiddle(path_);
  SetMtime(path_, mtime);
  EXPECT_TRUE(store_->Verify(sha_, size()).ok());
  VerifyOptions force;
  force.force = true;
  absl::Status forced = store_->Verify(sha_, size(), force);
  EXPECT_TRUE(absl::IsDataLoss(forced)) << forced;
  EXPECT_THAT(std::string(forced.message()),
              StartsWith("stored file does not match its sha256 ("));
  EXPECT_THAT(std::string(forced.message()), HasSubstr("hashes to "));
  // And once found bad, it is bad without force too (the cache entry is gone).
  EXPECT_TRUE(absl::IsDataLoss(store_->Verify(sha_, size())));
  EXPECT_EQ(store_->Stats().bad, 2);
}

TEST_F(BlobIntegrityTest, AChangedModificationTimeMeansHashingAgain) {
  ASSERT_TRUE(store_->Verify(sha_, size()).ok());
  FlipMiddle(path_);  // mtime moves on
  struct timespec later = MtimeOf(path_);
  later.tv_sec += 1;  // coarse filesystems: make sure it differs
  SetMtime(path_, later);
  EXPECT_TRUE(absl::IsDataLoss(store_->Verify(sha_, size())));
}

TEST_F(BlobIntegrityTest, TruncatedAndMissingFilesAreDataLoss) {
  fs::resize_file(path_, 1000);
  absl::Status truncated = store_->Verify(sha_, size());
  EXPECT_TRUE(absl::IsDataLoss(truncated)) << truncated;
  EXPECT_THAT(std::string(truncated.message()),
              HasSubstr(absl::StrCat("has 1000 bytes, registered with ", size(), ": truncated")));
  EXPECT_EQ(store_->Stats().bytes_hashed, 0) << "a wrong size needs no hashing";
  fs::remove(path_);
  absl::Status missing = store_->Verify(sha_, size());
  EXPECT_TRUE(absl::IsDataLoss(missing)) << missing;
  EXPECT_THAT(std::string(missing.message()), HasSubstr("is missing"));
}

TEST_F(BlobIntegrityTest, RestoresFromTheFirstMirrorWithAGoodCopy) {
  FlipMiddle(path_);
  ASSERT_TRUE(absl::IsDataLoss(store_->Verify(sha_, size())));
  // No copy in the mirror yet.
  auto none = store_->Restore(sha_, size());
  EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();
  // A bad copy in the mirror is not used.
  const fs::path copy = mirror_ / "blobs" / sha_.substr(0, 2) / sha_;
  fs::create_directories(copy.parent_path());
  WriteFile(copy.string(), bytes_.substr(0, bytes_.size() - 1) + "x");
  auto bad = store_->Restore(sha_, size());
  EXPECT_TRUE(absl::IsNotFound(bad.status())) << bad.status();
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("no mirror holds a good copy"));
  // A good one is.
  WriteFile(copy.string(), bytes_);
  auto restored = store_->Restore(sha_, size());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*restored, copy.string());
  EXPECT_EQ(ReadFile(path_), bytes_);
  EXPECT_TRUE(store_->Verify(sha_, size()).ok());
  EXPECT_EQ(store_->Stats().restored, 1);
  EXPECT_TRUE(fs::is_empty(root_ / "tmp")) << "the restore left a temp file";
}

TEST_F(BlobIntegrityTest, ADuplicateUploadReplacesABadStoredCopy) {
  FlipMiddle(path_);
  const std::string temp = store_->NewTempPath();
  WriteFile(temp, bytes_);
  bool existed = false;
  ASSERT_TRUE(store_->Adopt(temp, sha_, &existed).ok());
  EXPECT_TRUE(existed);
  EXPECT_EQ(ReadFile(path_), bytes_);
  EXPECT_FALSE(fs::exists(temp));
  // A good stored copy is kept and the upload dropped.
  const std::string again = store_->NewTempPath();
  WriteFile(again, bytes_);
  struct stat before;
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  ASSERT_TRUE(store_->Adopt(again, sha_, &existed).ok());
  EXPECT_TRUE(existed);
  EXPECT_FALSE(fs::exists(again));
  struct stat after;
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "a good stored copy must not be replaced";
}

TEST_F(BlobIntegrityTest, RateLimitAndStop) {
  // 3 MiB at 12 MB/s: at least 0.25 s (the first chunk is free, the rest waits).
  const auto start = std::chrono::steady_clock::now();
  VerifyOptions slow;
  slow.force = true;
  slow.max_bytes_per_second = 12e6;
  ASSERT_TRUE(store_->Verify(sha_, size(), slow).ok());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(seconds, 0.2);
  EXPECT_LT(seconds, 2.0);
  slow.stop = [] { return true; };
  EXPECT_TRUE(absl::IsCancelled(store_->Verify(sha_, size(), slow)));
}

// ---- The dock on the demo models.

class DockIntegrityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    data_dir_ = TempDir("data");
    mirror_dir_ = TempDir("mirror");
  }
  void TearDown() override {
    dock_.reset();
    fs::remove_all(data_dir_);
    fs::remove_all(mirror_dir_);
  }
  void OpenDock(bool with_mirror) {
    dock_.reset();
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options.asset_dir = AssetDir();
    options.scrub_interval = absl::ZeroDuration();
    options.scrub_mb_per_second = 0;
    if (with_mirror) options.blob_mirrors = {mirror_dir_.string()};
    auto dock = Dock::Create(options);
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
  }
  ModelRecord WaitSettled(ModelRecord record) { return WaitUntilSettled(*dock_, record); }
  ModelRecord Register(const std::string& name) { return RegisterDemo(*dock_, name); }
  RecommendQuery TopsQuery() {
    const std::string dir = (fs::path(AssetDir()) / "demo" / "query_tops").string();
    datasets::LoadOptions load;
    load.labels_path = dir + "/query-labels-idx1-ubyte";
    auto dataset = datasets::LoadIdx(dir + "/query-images-idx3-ubyte", load);
    EXPECT_TRUE(dataset.ok()) << dataset.status();
    RecommendQuery query;
    query.dataset = std::move(*dataset);
    query.brute_force = true;
    query.top_k = 10;
    return query;
  }
  std::string BlobPath(const ModelRecord& r) const {
    return (data_dir_ / "blobs" / r.sha256.substr(0, 2) / r.sha256).string();
  }
  // Registers two models and breaks the first one's file with `fault`.
  void RegisterTwo(bool with_mirror) {
    OpenDock(with_mirror);
    tops_ = Register("fmnist-tops-cnn");
    footwear_ = Register("fmnist-footwear-cnn");
  }
  std::unique_ptr<Dock> dock_;
  fs::path data_dir_, mirror_dir_;
  ModelRecord tops_, footwear_;
};

enum class Fault { kFlipped, kTruncated, kDeleted };

class DockFaultTest : public DockIntegrityTest, public ::testing::WithParamInterface<Fault> {};

TEST_P(DockFaultTest, ABadModelFileIsNeverRunAndIsReported) {
  RegisterTwo(/*with_mirror=*/false);
  const std::string path = BlobPath(tops_);
  switch (GetParam()) {
    case Fault::kFlipped: FlipMiddle(path); break;
    case Fault::kTruncated: fs::resize_file(path, fs::file_size(path) / 2); break;
    case Fault::kDeleted: fs::remove(path); break;
  }
  // A fresh server on the same store, as in the issue (no output cached, no file verified).
  OpenDock(false);
  const DockStats before = dock_->Stats();
  auto result = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(result.ok()) << result.status();
  // Reported, and the other model scored.
  const std::string warnings = absl::StrJoin(result->warnings, "\n");
  EXPECT_THAT(warnings, HasSubstr("skipped fmnist-tops-cnn: model 'fmnist-tops-cnn@1.0.0' was "
                                  "not run: stored file does not match its sha256 ("));
  EXPECT_EQ(result->num_scored, 1);
  for (const Recommendation& r : result->results) {
    if (r.model.id == tops_.id) {
      EXPECT_FALSE(r.scored);
    }
    if (r.model.id == footwear_.id) {
      EXPECT_TRUE(r.scored);
    }
  }
  // Not run: no worker job was started for it (one job: the other model).
  EXPECT_EQ(dock_->Stats().worker_jobs - before.worker_jobs, 1);
  auto failed = dock_->GetModel(tops_.id);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->state, ModelState::kFailed);
  EXPECT_THAT(failed->state_reason,
              StartsWith("DATA_LOSS: stored file does not match its sha256 ("));
  // The next recommendation leaves it out altogether (FAILED is not compatible).
  auto next = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->num_compatible, 1);
  // It stays FAILED across a restart, and the scrub lists it.
  OpenDock(false);
  auto scrub = dock_->Scrub(/*wait=*/true, nullptr);
  ASSERT_TRUE(scrub.ok()) << scrub.status();
  EXPECT_EQ(scrub->state, ScrubResult::State::kDone);
  EXPECT_EQ(scrub->blobs_checked, 2);
  EXPECT_EQ(scrub->blobs_bad, 1);
  EXPECT_EQ(scrub->blobs_ok, 1);
  EXPECT_EQ(scrub->models_failed, 0) << "already FAILED";
  EXPECT_THAT(scrub->bad_model_ids, ::testing::ElementsAre(tops_.id));
  EXPECT_THAT(scrub->bad_blobs, ::testing::ElementsAre(tops_.sha256));
}

INSTANTIATE_TEST_SUITE_P(Faults, DockFaultTest,
                         ::testing::Values(Fault::kFlipped, Fault::kTruncated, Fault::kDeleted),
                         [](const auto& info) {
                           switch (info.param) {
                             case Fault::kFlipped: return "Flipped";
                             case Fault::kTruncated: return "Truncated";
                             case Fault::kDeleted: return "Deleted";
                           }
                           return "Unknown";
                         });

TEST_F(DockIntegrityTest, AMirrorsGoodCopyIsRestoredAndTheModelRuns) {
  RegisterTwo(/*with_mirror=*/true);
  const std::string path = BlobPath(tops_);
  const std::string good = ReadFile(path);
  WriteFile((mirror_dir_ / tops_.sha256).string(), good);  // a flat mirror
  FlipMiddle(path);
  OpenDock(true);
  auto result = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->num_scored, 2) << absl::StrJoin(result->warnings, "\n");
  EXPECT_EQ(ReadFile(path), good);
  EXPECT_EQ(dock_->Stats().blobs_restored, 1);
  auto record = dock_->GetModel(tops_.id);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state, ModelState::kReady);
}

TEST_F(DockIntegrityTest, ScrubFailsABadFileAndRequeuesItOnceRepaired) {
  RegisterTwo(/*with_mirror=*/false);
  const std::string path = BlobPath(tops_);
  const std::string good = ReadFile(path);
  // Bit rot: the content changes, the modification time does not.
  const struct timespec mtime = MtimeOf(path);
  FlipMiddle(path);
  SetMtime(path, mtime);
  auto scrub = dock_->Scrub(/*wait=*/true, nullptr);
  ASSERT_TRUE(scrub.ok()) << scrub.status();
  EXPECT_EQ(scrub->blobs_bad, 1);
  EXPECT_EQ(scrub->models_failed, 1);
  EXPECT_EQ(scrub->bytes_hashed, static_cast<int64_t>(good.size()) + footwear_.size_bytes);
  EXPECT_EQ(dock_->GetModel(tops_.id)->state, ModelState::kFailed);
  EXPECT_EQ(dock_->Stats().last_scrub.blobs_bad, 1);
  // The operator puts a good copy back: the next scrub probes the model again, and it is READY.
  WriteFile(path, good);
  scrub = dock_->Scrub(/*wait=*/true, nullptr);
  ASSERT_TRUE(scrub.ok()) << scrub.status();
  EXPECT_EQ(scrub->blobs_bad, 0);
  EXPECT_EQ(scrub->models_requeued, 1);
  auto repaired = dock_->GetModel(tops_.id);
  ASSERT_TRUE(repaired.ok());
  ModelRecord settled = WaitSettled(*repaired);
  EXPECT_EQ(settled.state, ModelState::kReady) << settled.state_reason;
}

TEST_F(DockIntegrityTest, ScrubCatchesChangedProbeFeaturesAndProbesAgain) {
  RegisterTwo(/*with_mirror=*/false);
  dock_.reset();  // the database is edited behind the server's back
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((data_dir_ / "modeldock.db").c_str(), &db), SQLITE_OK);
    // One float's bytes changed: the shape stays consistent, only the checksum can tell.
    const std::string sql = absl::StrCat(
        "UPDATE probe_features SET features = zeroblob(4) || substr(features, 5) "
        "WHERE model_id = '", tops_.id, "'");
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }
  OpenDock(false);
  auto scrub = dock_->Scrub(/*wait=*/true, nullptr);
  ASSERT_TRUE(scrub.ok()) << scrub.status();
  EXPECT_EQ(scrub->features_checked, 2);
  EXPECT_EQ(scrub->features_bad, 1);
  EXPECT_EQ(scrub->models_requeued, 1);
  ModelRecord settled = WaitSettled(*dock_->GetModel(tops_.id));
  EXPECT_EQ(settled.state, ModelState::kReady) << settled.state_reason;
  scrub = dock_->Scrub(/*wait=*/true, nullptr);
  ASSERT_TRUE(scrub.ok());
  EXPECT_EQ(scrub->features_bad, 0) << "probing again stored features with a good checksum";
}

}  // namespace
}  // namespace modeldock::dock
