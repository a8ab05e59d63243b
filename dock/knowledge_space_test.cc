// A knowledge space's index changes and the serving trained version's projected index that
// follows them (issue 22: a failed write to the trained index was ignored).
#include "dock/knowledge_space.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/datasets.h"
#include "dock/knowledge_spaces.h"
#include "dock/probe_embedding_cache.h"
#include "dock/testing/dock_fixture.h"
#include "encoder/outcome_ranker.h"
#include "gtest/gtest.h"
#include "index/index_log.h"
#include "index/vector_index.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;

using test::AssetDir;
using test::ReadFile;

class DockKnowledgeSpaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    dir_ = fs::temp_directory_path() /
           ("modeldock-space-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "index");
    SpaceOverrides overrides;
    overrides.data_dir = dir_.string();
    auto specs = ReadSpaces(AssetDir(), overrides);
    ASSERT_TRUE(specs.ok()) << specs.status();
    options_ = specs->front().options;
    options_.embed_probes_at_load = false;  // no model is encoded here
    auto space = KnowledgeSpace::Load(options_, /*probe_data=*/nullptr, [this] { return serving_; });
    ASSERT_TRUE(space.ok()) << space.status();
    space_ = std::move(*space);
  }
  void TearDown() override {
    space_.reset();
    fs::remove_all(dir_);
  }
  // The grey space's options, its probe set a copy in the test's directory (which a test may
  // change or move), the cache in `probe_cache_dir` ("" = the data dir's).
  KnowledgeSpaceOptions OptionsOnACopyOfTheProbeSet(const std::string& probe_cache_dir = "") {
    SpaceOverrides overrides;
    overrides.data_dir = dir_.string();
    overrides.probe_cache_dir = probe_cache_dir;
    auto specs = ReadSpaces(AssetDir(), overrides);
    EXPECT_TRUE(specs.ok()) << specs.status();
    if (!specs.ok()) return {};
    KnowledgeSpaceOptions options = specs->front().options;
    options.embed_probes_at_load = false;
    const fs::path copy = dir_ / "probe_set.npy";
    fs::copy_file(options.probe_set_path, copy);
    options.probe_set_path = copy.string();
    return options;
  }
  // A trained version with the identity projection, serving an index of `dim` dimensions.
  void Serve(int dim) {
    index::IndexOptions options;
    options.dim = dim;
    auto index = index::VectorIndex::Create(options);
    ASSERT_TRUE(index.ok()) << index.status();
    serving_.version = 7;
    serving_.ranker = std::make_shared<encoder::OutcomeRanker>(
        encoder::RankerParams{}, std::vector<encoder::RecordedTask>{},
        std::map<std::string, std::vector<double>>{});
    serving_.index = std::shared_ptr<index::VectorIndex>(std::move(*index));
  }
  std::vector<float> UnitVector() const {
    std::vector<float> v(static_cast<size_t>(space_->index()->dim()), 0.0f);
    v[0] = 1.0f;
    return v;
  }

  fs::path dir_;
  KnowledgeSpaceOptions options_;  // space_'s
  LearningLoop::Serving serving_;
  std::unique_ptr<KnowledgeSpace> space_;
};

TEST_F(DockKnowledgeSpaceTest, UpsertReachesTheServingIndex) {
  Serve(space_->index()->dim());
  ASSERT_TRUE(space_->Upsert("m-1", UnitVector()).ok());
  EXPECT_TRUE(space_->index()->Contains("m-1"));
  EXPECT_TRUE(serving_.index->Contains("m-1"));
  ASSERT_TRUE(space_->Remove("m-1").ok());
  EXPECT_FALSE(space_->index()->Contains("m-1"));
  EXPECT_FALSE(serving_.index->Contains("m-1"));
}

// A serving index that refuses the model's projected vector (here: of another dimension) is an
// error the caller sees, not an index that silently misses the model.
TEST_F(DockKnowledgeSpaceTest, FailedWriteToTheServingIndexIsReturned) {
  Serve(space_->index()->dim() + 1);
  const absl::Status s = space_->Upsert("m-1", UnitVector());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("trained version 7"), std::string::npos) << s;
  EXPECT_TRUE(space_->index()->Contains("m-1"));  // the space's own index took it
  EXPECT_FALSE(serving_.index->Contains("m-1"));
}

// A log record that does not apply (here: a vector of another dimension) empties the index at
// the next start (the store rebuilds it) and must not stay in the log: a change made after that
// start is still there at the start after it.
TEST_F(DockKnowledgeSpaceTest, ALogRecordThatDoesNotApplyIsDroppedWithTheLog) {
  const std::vector<float> unit = UnitVector();
  const std::vector<float> wrong_dim(unit.size() + 1, 1.0f);
  ASSERT_TRUE(space_->Upsert("m-1", unit).ok());
  const KnowledgeSpaceOptions options = options_;
  space_.reset();
  ASSERT_TRUE(index::IndexLog(options.index_path).AppendUpsert("m-bad", wrong_dim).ok());

  auto reopened = KnowledgeSpace::Load(options, nullptr, [this] { return serving_; });
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->index()->size(), 0u);  // emptied: the store's vectors rebuild it
  ASSERT_TRUE((*reopened)->Upsert("m-2", unit).ok());
  reopened->reset();

  auto again = KnowledgeSpace::Load(options, nullptr, [this] { return serving_; });
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->index()->Contains("m-2"));
  EXPECT_EQ((*again)->index()->size(), 1u);
}

// A space opens on the probe set's header and hash; the samples are loaded on first use, and
// only if the file is still the one the space was opened with.
TEST_F(DockKnowledgeSpaceTest, ProbeSetIsLoadedOnFirstUseFromTheFileItWasOpenedWith) {
  const KnowledgeSpaceOptions options = OptionsOnACopyOfTheProbeSet();
  const fs::path copy = options.probe_set_path;
  auto space = KnowledgeSpace::Load(options, nullptr, [] { return LearningLoop::Serving(); });
  ASSERT_TRUE(space.ok()) << space.status();
  auto expected = datasets::LoadNpy(copy.string());
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ((*space)->probe_rows(), expected->samples.Rows());
  auto probes = (*space)->ProbeSet();
  ASSERT_TRUE(probes.ok()) << probes.status();
  EXPECT_EQ((*probes)->shape, expected->samples.shape);
  EXPECT_EQ((*probes)->values, expected->samples.values);

  // Another space on the same file; the file changes before its first use.
  auto changed = KnowledgeSpace::Load(options, nullptr, [] { return LearningLoop::Serving(); });
  ASSERT_TRUE(changed.ok()) << changed.status();
  {
    std::fstream file(copy, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-1, std::ios::end);
    file.put('\x01');
  }
  auto refused = (*changed)->ProbeSet();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(refused.status().message()).find("changed since the dock opened"),
            std::string::npos)
      << refused.status();
  EXPECT_EQ((*changed)->ProbeEmbeddings().status().code(),
            absl::StatusCode::kFailedPrecondition);

  // A file cut short is refused when the space opens.
  fs::resize_file(copy, fs::file_size(copy) - 1);
  EXPECT_EQ(KnowledgeSpace::Load(options, nullptr, [] { return LearningLoop::Serving(); })
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

// E's probe embeddings are computed once and kept in the cache directory: a second space on
// the same assets reads them (it never loads the probe set), and a damaged file is computed again
// and replaced.
TEST_F(DockKnowledgeSpaceTest, ProbeEmbeddingsAreCachedBetweenSpacesAndADamagedFileIsReplaced) {
  const std::string cache_dir = (dir_ / "shared-cache").string();
  const KnowledgeSpaceOptions options = OptionsOnACopyOfTheProbeSet(cache_dir);
  const fs::path copy = options.probe_set_path;
  auto open = [&] { return KnowledgeSpace::Load(options, nullptr, [] { return LearningLoop::Serving(); }); };

  auto first = open();
  ASSERT_TRUE(first.ok()) << first.status();
  auto computed = (*first)->ProbeEmbeddings();
  ASSERT_TRUE(computed.ok()) << computed.status();
  const Tensor expected = **computed;
  EXPECT_EQ(expected.shape, (std::vector<int64_t>{(*first)->probe_rows(), 64}));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(cache_dir)) {
    files.push_back(entry.path());
  }
  ASSERT_EQ(files.size(), 1u);
  const std::string written = ReadFile(files[0].string());

  // A second space reads the file: its probe set is gone before first use, so computing would
  // fail (FAILED_PRECONDITION, see above).
  auto second = open();
  ASSERT_TRUE(second.ok()) << second.status();
  fs::rename(copy, dir_ / "moved.npy");
  auto cached = (*second)->ProbeEmbeddings();
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ((*cached)->shape, expected.shape);
  EXPECT_EQ((*cached)->values, expected.values);
  fs::rename(dir_ / "moved.npy", copy);

  // One flipped payload byte fails the checksum: computed again, the same values, file replaced.
  {
    std::fstream file(files[0], std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-5, std::ios::end);
    file.put(static_cast<char>(written[written.size() - 5] ^ 0x10));
  }
  auto third = open();
  ASSERT_TRUE(third.ok()) << third.status();
  auto recomputed = (*third)->ProbeEmbeddings();
  ASSERT_TRUE(recomputed.ok()) << recomputed.status();
  EXPECT_EQ((*recomputed)->values, expected.values);
  EXPECT_EQ(ReadFile(files[0].string()), written);
}

// The file format on its own: exact round trip, and every kind of damage is DATA_LOSS.
TEST(ProbeEmbeddingCacheTest, RoundTripsExactlyAndRefusesDamagedFiles) {
  const fs::path dir = fs::temp_directory_path() /
                       ("modeldock-probe-cache-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const ProbeEmbeddingCache cache(dir.string(), "E|P|0|0");
  EXPECT_TRUE(cache.enabled());
  EXPECT_EQ(cache.Read(3, 2).status().code(), absl::StatusCode::kNotFound);
  const Tensor t({3, 2}, {0.5f, -1.25f, 3e-8f, 7.0f, -0.0f, 1e30f});
  ASSERT_TRUE(cache.Write(t).ok());
  auto back = cache.Read(3, 2);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->shape, t.shape);
  EXPECT_EQ(std::memcmp(back->values.data(), t.values.data(), 6 * sizeof(float)), 0);
  EXPECT_EQ(cache.Read(2, 3).status().code(), absl::StatusCode::kDataLoss);  // other shape
  EXPECT_EQ(cache.Read(3, 3).status().code(), absl::StatusCode::kDataLoss);  // other size
  // Another key is another file; no key directory means no cache at all.
  EXPECT_NE(ProbeEmbeddingCache(dir.string(), "E2|P|0|0").path(), cache.path());
  const ProbeEmbeddingCache off("", "E|P|0|0");
  EXPECT_FALSE(off.enabled());
  EXPECT_TRUE(off.Write(t).ok());
  EXPECT_EQ(off.Read(3, 2).status().code(), absl::StatusCode::kNotFound);
  // Cut short: DATA_LOSS, not a shorter tensor.
  fs::resize_file(cache.path(), fs::file_size(cache.path()) - 4);
  EXPECT_EQ(cache.Read(3, 2).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace modeldock::dock
