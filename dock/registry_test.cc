// The Registry part on its own: a real SQLite store (with its registry in memory), a real blob
// directory and the build's grey knowledge space. Checks that a row, its file and its index
// entry change together, and the name rules of versions and owners.
#include "dock/registry.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/sha256.h"
#include "dock/learning.h"
#include "dock/metadata_store.h"
#include "dock/testing/dock_fixture.h"
#include "dock/testing/grey_space.h"
#include "gtest/gtest.h"
#include "index/vector_index.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using test::AssetDir;

class DockRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    dir_ = fs::temp_directory_path() /
           ("modeldock-registry-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "index");
    auto opened = OpenMetadataStore((dir_ / "modeldock.db").string());
    ASSERT_TRUE(opened.ok()) << opened.status();
    database_ = std::move(*opened);
    auto store = CachingModelTable::Create(database_.get());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto blobs = BlobStore::Create(dir_.string(), {});
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = std::move(*blobs);
    auto spaces = test::LoadGreySpaceOnly(dir_.string(), database_.get());
    ASSERT_TRUE(spaces.ok()) << spaces.status();
    spaces_ = std::move(*spaces);
    registry_ = std::make_unique<Registry>(
        Registry::Deps{store_.get(), database_.get(), blobs_.get(), spaces_.get(),
                       absl::ZeroDuration()});
  }
  void TearDown() override {
    registry_.reset();
    spaces_.reset();
    store_.reset();
    database_.reset();
    fs::remove_all(dir_);
  }

  // A new upload's temp file holding `bytes`.
  std::string TempFile(const std::string& bytes) {
    const std::string path = blobs_->NewTempPath();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  // A PENDING grey classifier `name`@`version` of `owner`, stored as the digest of `bytes`.
  ModelRecord Record(const std::string& name, const std::string& version,
                     const std::string& owner, const std::string& bytes) {
    ModelRecord r;
    r.id = NewModelId();
    r.spec.name = name;
    r.spec.version = version;
    r.spec.task = TaskKind::kImageClassification;
    r.spec.input_shape = {1, 28, 28};
    r.spec.class_labels = {"a", "b"};
    r.state = ModelState::kPending;
    r.sha256 = Sha256::Of(bytes);
    r.size_bytes = static_cast<int64_t>(bytes.size());
    r.revision = 1;
    r.created_unix_ms = NowUnixMs();
    r.owner_key_id = owner;
    return r;
  }
  ModelRecord Added(const std::string& name, const std::string& version,
                    const std::string& bytes, const std::string& owner = "k1") {
    ModelRecord r = Record(name, version, owner, bytes);
    bool dedup = true;
    absl::Status s = registry_->Add(r, TempFile(bytes), &dedup);
    EXPECT_TRUE(s.ok()) << s;
    return r;
  }
  bool HasBlob(const std::string& sha256) {
    for (const std::string& b : blobs_->List()) {
      if (b == sha256) return true;
    }
    return false;
  }
  KnowledgeSpace& Grey() { return *spaces_->primary(); }
  std::vector<float> Vector(float value) {
    return std::vector<float>(static_cast<size_t>(Grey().index()->dim()), value);
  }
  // Moves `record` READY with a vector of `value`s in the grey space.
  absl::Status Commit(ModelRecord record, float value) {
    record.state = ModelState::kReady;
    ++record.revision;
    return registry_->CommitProbe(record, Grey(), Tensor({2, 2}, {1, 2, 3, 4}), Tensor(),
                                  Vector(value));
  }

  fs::path dir_;
  std::unique_ptr<MetadataStore> database_;
  std::unique_ptr<CachingModelTable> store_;  // the model table in memory, as in the dock
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<KnowledgeSpaces> spaces_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(DockRegistryTest, AddAdoptsTheFileThenResolvesEveryWayOfNamingIt) {
  const std::string temp = TempFile("weights-1");
  ModelRecord v1 = Record("net", "1.0", "k1", "weights-1");
  bool dedup = true;
  ASSERT_TRUE(registry_->Add(v1, temp, &dedup).ok());
  EXPECT_FALSE(dedup);
  EXPECT_FALSE(fs::exists(temp));  // moved into the blob store
  EXPECT_TRUE(HasBlob(v1.sha256));
  const ModelRecord v2 = Added("net", "2.0", "weights-2");

  EXPECT_EQ(registry_->Resolve(v1.id, false)->id, v1.id);
  EXPECT_EQ(registry_->Resolve("net@1.0", false)->id, v1.id);
  EXPECT_EQ(registry_->Resolve("net@2.0", true)->id, v2.id);
  // NAME: the latest registered while none is READY, then the latest READY one.
  EXPECT_EQ(registry_->Resolve("net", false)->id, v2.id);
  ASSERT_TRUE(Commit(v1, 0.5f).ok());
  EXPECT_EQ(registry_->Resolve("net", false)->id, v1.id);
  EXPECT_EQ(registry_->Resolve("net@3.0", false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_->Resolve("other", false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_->Resolve("", false).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DockRegistryTest, NewVersionsFollowTheNameRulesAndRefusalsLeaveNothing) {
  Added("net", "1.0", "weights-1", "k1");
  EXPECT_EQ(registry_->CheckNewVersion(Record("net", "1.0", "k1", "x").spec, "k1").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry_->CheckNewVersion(Record("net", "2.0", "k2", "x").spec, "k2").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry_->CheckNewVersion(Record("net", "2 0", "k1", "x").spec, "k1").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(registry_->CheckNewVersion(Record("net", "2.0", "k1", "x").spec, "k1").ok());

  // Add checks again: another key's upload of the name is refused before its file is adopted.
  const std::string temp = TempFile("intruder");
  ModelRecord intruder = Record("net", "2.0", "k2", "intruder");
  bool dedup = false;
  EXPECT_EQ(registry_->Add(intruder, temp, &dedup).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(fs::exists(temp));  // still the upload's, which removes it
  EXPECT_FALSE(HasBlob(intruder.sha256));
  EXPECT_EQ(registry_->Resolve(intruder.id, true).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(registry_->Versions("net").ok());
  EXPECT_EQ(registry_->Versions("net")->size(), 1u);
}

TEST_F(DockRegistryTest, RemoveTakesTheRowTheIndexEntryAndTheFileWhenUnused) {
  const ModelRecord a = Added("a", "", "shared-bytes");
  // The same bytes under another name: stored once.
  ModelRecord b = Record("b", "", "k1", "shared-bytes");
  const std::string temp = TempFile("shared-bytes");
  bool dedup = false;
  ASSERT_TRUE(registry_->Add(b, temp, &dedup).ok());
  EXPECT_TRUE(dedup);
  EXPECT_FALSE(fs::exists(temp));
  ASSERT_TRUE(Commit(a, 0.25f).ok());
  ASSERT_TRUE(Commit(b, 0.75f).ok());
  EXPECT_EQ(registry_->IndexedVectors(), 2);

  ASSERT_TRUE(registry_->Remove(a).ok());
  EXPECT_EQ(registry_->Resolve(a.id, true).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Grey().index()->Contains(a.id));
  EXPECT_TRUE(Grey().index()->Contains(b.id));
  EXPECT_TRUE(HasBlob(a.sha256));  // b still uses it
  ASSERT_TRUE(registry_->Remove(b).ok());
  EXPECT_FALSE(HasBlob(a.sha256));
  EXPECT_EQ(registry_->IndexedVectors(), 0);
}

TEST_F(DockRegistryTest, AProbeOfADeletedModelIsNotPutBackInTheIndex) {
  const ModelRecord m = Added("m", "", "weights");
  ASSERT_TRUE(registry_->Remove(m).ok());
  EXPECT_EQ(Commit(m, 0.5f).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Grey().index()->Contains(m.id));
  EXPECT_EQ(registry_->IndexedVectors(), 0);
}

TEST_F(DockRegistryTest, UpdateWritesTheSpecOfReadyModelsOnly) {
  ModelRecord m = Added("m", "", "weights");
  ModelUpdate update;
  update.has_license = true;
  update.license = "MIT";
  std::vector<std::string> changed;
  EXPECT_EQ(registry_->Update("m", update, &changed).status().code(),
            absl::StatusCode::kFailedPrecondition);  // PENDING: its probe writes the row
  ASSERT_TRUE(Commit(m, 0.5f).ok());
  auto updated = registry_->Update("m", update, &changed);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->spec.license, "MIT");
  EXPECT_EQ(changed, std::vector<std::string>{"license"});
  EXPECT_EQ(registry_->Resolve(m.id, true)->spec.license, "MIT");
  EXPECT_EQ(registry_->Resolve(m.id, true)->revision, updated->revision);
  EXPECT_EQ(registry_->Update("m", ModelUpdate(), &changed).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace modeldock::dock
