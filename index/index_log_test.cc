#include "index/index_log.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "index/vector_index.h"

namespace modeldock::index {
namespace {

namespace fs = std::filesystem;
constexpr int kDim = 8;

std::vector<float> RandomVector(std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(kDim);
  for (float& x : v) x = normal(rng);
  return v;
}

std::unique_ptr<VectorIndex> NewIndex() {
  IndexOptions options;
  options.dim = kDim;
  auto index = VectorIndex::Create(options);
  EXPECT_TRUE(index.ok()) << index.status();
  return std::move(*index);
}

std::unique_ptr<VectorIndex> LoadIndex(const std::string& path) {
  IndexOptions options;
  options.dim = kDim;
  auto index = VectorIndex::Load(path, options);
  EXPECT_TRUE(index.ok()) << index.status();
  return std::move(*index);
}

class IndexLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("modeldock-index-log-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "index.bin").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A snapshot of 5 vectors (m0..m4), then 6 logged changes applied to `live` as well:
  // upserts of m5, m6, a new vector for m1, removals of m2 and of m5, and an upsert of m7.
  void SnapshotThenLog(VectorIndex* live, IndexLog* log) {
    std::mt19937 rng(7);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(live->Upsert("m" + std::to_string(i), RandomVector(rng)).ok());
    }
    ASSERT_TRUE(live->Save(path_).ok());
    for (const char* id : {"m5", "m6", "m1"}) {
      const std::vector<float> v = RandomVector(rng);
      ASSERT_TRUE(live->Upsert(id, v).ok());
      ASSERT_TRUE(log->AppendUpsert(id, v).ok());
    }
    for (const char* id : {"m2", "m5"}) {
      ASSERT_TRUE(live->Remove(id).ok());
      ASSERT_TRUE(log->AppendRemove(id).ok());
    }
    const std::vector<float> v = RandomVector(rng);
    ASSERT_TRUE(live->Upsert("m7", v).ok());
    ASSERT_TRUE(log->AppendUpsert("m7", v).ok());
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(IndexLogTest, SnapshotPlusReplayIsTheLiveIndex) {
  auto live = NewIndex();
  IndexLog log(path_);
  SnapshotThenLog(live.get(), &log);
  EXPECT_EQ(log.records(), 6);
  EXPECT_EQ(log.path(), path_ + ".log");

  auto loaded = LoadIndex(path_);
  ASSERT_NE(loaded->Fingerprint(), live->Fingerprint());  // the snapshot alone is behind
  IndexLog reader(path_);
  auto replay = reader.ReplayInto(loaded.get());
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->applied, 6);
  EXPECT_EQ(replay->skipped_removals, 0);
  EXPECT_EQ(replay->ignored_bytes, 0);
  EXPECT_EQ(reader.records(), 6);
  EXPECT_EQ(loaded->Fingerprint(), live->Fingerprint());
  EXPECT_EQ(loaded->size(), 6u);  // m0 m1 m3 m4 m6 m7
  EXPECT_FALSE(loaded->Contains("m2"));
  EXPECT_FALSE(loaded->Contains("m5"));
}

TEST_F(IndexLogTest, ReplayOverASnapshotThatHoldsTheChangesChangesNothing) {
  // A crash between a compaction's snapshot and the log's reset.
  auto live = NewIndex();
  IndexLog log(path_);
  SnapshotThenLog(live.get(), &log);
  ASSERT_TRUE(live->Save(path_).ok());
  auto loaded = LoadIndex(path_);
  auto replay = IndexLog(path_).ReplayInto(loaded.get());
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->applied, 5);
  EXPECT_EQ(replay->skipped_removals, 1);  // m2 (m5 was upserted again by the replay first)
  EXPECT_EQ(loaded->Fingerprint(), live->Fingerprint());
}

TEST_F(IndexLogTest, ATornTailIsCutOffAndLaterAppendsAreRead) {
  auto live = NewIndex();
  IndexLog log(path_);
  SnapshotThenLog(live.get(), &log);
  // The last record (m7's upsert) loses its last 10 bytes, as a crash mid-write would leave it.
  const auto full_size = fs::file_size(log.path());
  fs::resize_file(log.path(), full_size - 10);
  auto expected = LoadIndex(path_);  // the snapshot plus the first five changes
  std::mt19937 rng(7);
  for (int i = 0; i < 5; ++i) RandomVector(rng);
  for (const char* id : {"m5", "m6", "m1"}) ASSERT_TRUE(expected->Upsert(id, RandomVector(rng)).ok());
  for (const char* id : {"m2", "m5"}) ASSERT_TRUE(expected->Remove(id).ok());

  auto loaded = LoadIndex(path_);
  IndexLog reader(path_);
  auto replay = reader.ReplayInto(loaded.get());
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->applied, 5);
  EXPECT_GT(replay->ignored_bytes, 0);
  EXPECT_EQ(replay->ignored_reason, "a torn record");
  EXPECT_EQ(loaded->Fingerprint(), expected->Fingerprint());
  EXPECT_EQ(reader.records(), 5);

  // The tail is gone from the file: a new append is read after the five good records.
  const std::vector<float> v(kDim, 0.5f);
  ASSERT_TRUE(reader.AppendUpsert("m8", v).ok());
  ASSERT_TRUE(expected->Upsert("m8", v).ok());
  auto again = LoadIndex(path_);
  auto second = IndexLog(path_).ReplayInto(again.get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->applied, 6);
  EXPECT_EQ(second->ignored_bytes, 0);
  EXPECT_EQ(again->Fingerprint(), expected->Fingerprint());
}

TEST_F(IndexLogTest, AFlippedByteEndsTheReplayAtThatRecord) {
  auto live = NewIndex();
  IndexLog log(path_);
  SnapshotThenLog(live.get(), &log);
  // One byte inside the first record's vector.
  std::fstream file(log.path(), std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(4 + 4 + 1 + 8 + 2 + 4 + 3);
  char byte = 0;
  file.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x40);
  file.seekp(4 + 4 + 1 + 8 + 2 + 4 + 3);
  file.write(&byte, 1);
  file.close();
  auto loaded = LoadIndex(path_);
  const std::string snapshot_fingerprint = loaded->Fingerprint();
  auto replay = IndexLog(path_).ReplayInto(loaded.get());
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->applied, 0);
  EXPECT_EQ(replay->ignored_reason, "a checksum mismatch");
  EXPECT_EQ(loaded->Fingerprint(), snapshot_fingerprint);
}

TEST_F(IndexLogTest, ALogOfAnotherDimensionIsRefusedAndResetEmptiesIt) {
  IndexLog log(path_);
  ASSERT_TRUE(log.AppendUpsert("m0", std::vector<float>(kDim + 1, 1.0f)).ok());
  auto index = NewIndex();
  auto replay = IndexLog(path_).ReplayInto(index.get());
  ASSERT_FALSE(replay.ok());
  EXPECT_TRUE(absl::IsDataLoss(replay.status())) << replay.status();
  EXPECT_NE(replay.status().message().find("model m0"), std::string::npos) << replay.status();
  ASSERT_TRUE(log.Reset().ok());
  EXPECT_EQ(log.records(), 0);
  EXPECT_FALSE(fs::exists(log.path()));
  auto empty = IndexLog(path_).ReplayInto(index.get());  // no file: an empty log
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->applied, 0);
  EXPECT_EQ(index->size(), 0u);
}

}  // namespace
}  // namespace modeldock::index
