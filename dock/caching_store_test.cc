// The registry in memory (CachingModelTable) over a real SQLite file: after every write,
// failed ones included, and after seeded random sequences of them, what it serves equals what
// the store underneath reads (every field of every record); a write made behind its back (as
// another replica would) shows after Refresh / RefreshAll; a row it cannot re-read makes it fall
// back to the store until it can; the reads it does not cache (OwnerOf, CountBySha) see such a
// write at once.
#include "dock/caching_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dock/metadata_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model_records.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::Pair;

std::string Describe(const ModelRecord& r) { return ::modeldock::testing::DescribeRecord(r); }

std::vector<std::string> DescribeAll(const std::vector<ModelRecord>& records) {
  std::vector<std::string> out;
  for (const ModelRecord& r : records) out.push_back(Describe(r));
  return out;
}

ModelRecord Record(const std::string& id, const std::string& name, const std::string& version,
                   int64_t created) {
  return ::modeldock::testing::TestRecord(id, name, version, created);
}

Tensor MakeTensor(int64_t rows, int64_t cols) {
  Tensor t;
  t.shape = {rows, cols};
  t.values.assign(static_cast<size_t>(rows * cols), 0.5f);
  return t;
}

class CachingStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() /
            absl::StrCat("modeldock-caching-store-test-", ::getpid(), "-",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".db");
    Remove();
    auto inner = OpenMetadataStore(path_.string());
    ASSERT_TRUE(inner.ok()) << inner.status();
    // Keys for SetOwner.
    for (const char* key : {"k1", "k2"}) {
      ApiKeyRow row;
      row.id = key;
      row.name = key;
      row.role = static_cast<int>(ApiKeyRole::kProvider);
      row.salt = "s";
      row.hash = "h";
      ASSERT_TRUE((*inner)->InsertKey(row).ok());
    }
    inner_ = std::move(*inner);
    auto cached = CachingModelTable::Create(inner_.get());
    ASSERT_TRUE(cached.ok()) << cached.status();
    store_ = std::move(*cached);
  }
  void TearDown() override {
    store_.reset();
    inner_.reset();
    Remove();
  }
  void Remove() {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      fs::remove(path_.string() + suffix);
    }
  }

  // What the store underneath reads now.
  std::vector<std::string> Stored() {
    auto all = store_->inner()->ListAll();
    EXPECT_TRUE(all.ok()) << all.status();
    return all.ok() ? DescribeAll(*all) : std::vector<std::string>{};
  }
  std::vector<std::string> Cached() {
    auto all = store_->ListAll();
    EXPECT_TRUE(all.ok()) << all.status();
    return all.ok() ? DescribeAll(*all) : std::vector<std::string>{};
  }
  // Every read the cache serves agrees with the store: ListAll, Get of `ids`, FindVersions of
  // `names`, CountByState.
  void ExpectSameAsStore(const std::vector<std::string>& ids,
                         const std::vector<std::string>& names) {
    EXPECT_EQ(Cached(), Stored());
    for (const std::string& id : ids) {
      auto cached = store_->Get(id);
      auto stored = store_->inner()->Get(id);
      ASSERT_EQ(cached.status().code(), stored.status().code()) << id;
      if (stored.ok()) {
        EXPECT_EQ(Describe(*cached), Describe(*stored));
      }
    }
    for (const std::string& name : names) {
      auto cached = store_->FindVersions(name);
      auto stored = store_->inner()->FindVersions(name);
      ASSERT_TRUE(cached.ok() && stored.ok());
      EXPECT_EQ(DescribeAll(*cached), DescribeAll(*stored)) << name;
    }
    auto cached_counts = store_->CountByState();
    auto stored_counts = store_->inner()->CountByState();
    ASSERT_TRUE(cached_counts.ok() && stored_counts.ok());
    EXPECT_EQ(*cached_counts, *stored_counts);
  }

  fs::path path_;
  std::unique_ptr<MetadataStore> inner_;  // the SQLite store whose model table store_ wraps
  std::unique_ptr<CachingModelTable> store_;
};

TEST_F(CachingStoreTest, LoadsEveryRowAtCreation) {
  {
    auto inner = OpenMetadataStore(path_.string() + "-other");
    ASSERT_TRUE(inner.ok());
    ASSERT_TRUE((*inner)->Insert(Record("m-b", "beta", "1", 20)).ok());
    ASSERT_TRUE((*inner)->Insert(Record("m-a", "alpha", "1", 20)).ok());
    ASSERT_TRUE((*inner)->Insert(Record("m-c", "alpha", "2", 10)).ok());
    auto cached = CachingModelTable::Create(inner->get());
    ASSERT_TRUE(cached.ok()) << cached.status();
    auto all = (*cached)->ListAll();
    ASSERT_TRUE(all.ok());
    // Oldest registration first, ties by id: the stores' order.
    std::vector<std::string> ids;
    for (const ModelRecord& r : *all) ids.push_back(r.id);
    EXPECT_THAT(ids, ElementsAre("m-c", "m-a", "m-b"));
    EXPECT_EQ(DescribeAll(*all), DescribeAll(*(*cached)->inner()->ListAll()));
  }
  for (const char* suffix : {"-other", "-other-wal", "-other-shm"}) {
    fs::remove(path_.string() + suffix);
  }
}

TEST_F(CachingStoreTest, EveryWriteIsServedAfterwards) {
  ASSERT_TRUE(store_->Insert(Record("m-1", "alpha", "1", 100)).ok());
  ASSERT_TRUE(store_->Insert(Record("m-2", "alpha", "2", 200)).ok());
  ASSERT_TRUE(store_->Insert(Record("m-3", "beta", "", 150)).ok());
  auto got = store_->Get("m-2");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Describe(*got), Describe(Record("m-2", "alpha", "2", 200)));
  auto alpha = store_->FindVersions("alpha");
  ASSERT_TRUE(alpha.ok());
  ASSERT_EQ(alpha->size(), 2u);
  EXPECT_EQ((*alpha)[0].id, "m-1");
  EXPECT_EQ((*alpha)[1].id, "m-2");
  EXPECT_THAT(*store_->CountByState(), ElementsAre(Pair(ModelState::kPending, 3)));

  ASSERT_TRUE(store_->SetOwner("m-1", "k1").ok());
  EXPECT_EQ(store_->Get("m-1")->owner_key_id, "k1");
  ASSERT_TRUE(store_->SetOwner("m-1", "k2").ok());
  EXPECT_EQ(store_->Get("m-1")->owner_key_id, "k2");

  ModelRecord r = *store_->Get("m-3");
  r.state = ModelState::kProbing;
  r.state_reason = "running";
  r.revision = 2;
  ASSERT_TRUE(store_->UpdateState(r).ok());
  EXPECT_EQ(store_->Get("m-3")->state, ModelState::kProbing);
  EXPECT_EQ(store_->Get("m-3")->state_reason, "running");
  EXPECT_EQ(store_->Get("m-3")->revision, 2);

  r.state = ModelState::kReady;
  r.state_reason = "probed";
  r.probe_millis = 42;
  r.revision = 3;
  ASSERT_TRUE(store_->CommitProbe(r, "p", MakeTensor(2, 2), MakeTensor(2, 1), "s", {1, 2}).ok());
  got = store_->Get("m-3");
  EXPECT_EQ(got->state, ModelState::kReady);
  EXPECT_EQ(got->probe_millis, 42);
  EXPECT_EQ(got->revision, 3);
  EXPECT_THAT(*store_->CountByState(),
              ElementsAre(Pair(ModelState::kPending, 2), Pair(ModelState::kReady, 1)));

  r = *store_->Get("m-2");
  r.spec.description = "new words";
  r.spec.license = "MIT";
  r.spec.tags = {"x", "y"};
  r.revision = 7;
  ASSERT_TRUE(store_->UpdateSpec(r).ok());
  got = store_->Get("m-2");
  EXPECT_EQ(got->spec.description, "new words");
  EXPECT_EQ(got->spec.license, "MIT");
  EXPECT_THAT(got->spec.tags, ElementsAre("x", "y"));
  EXPECT_EQ(got->revision, 7);

  ASSERT_TRUE(store_->Delete("m-1").ok());
  EXPECT_EQ(store_->Get("m-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->FindVersions("alpha")->size(), 1u);
  EXPECT_EQ(store_->ListAll()->size(), 2u);
  ExpectSameAsStore({"m-1", "m-2", "m-3"}, {"alpha", "beta", "gamma"});
}

TEST_F(CachingStoreTest, FailedWritesLeaveTheCacheAsTheStore) {
  ASSERT_TRUE(store_->Insert(Record("m-1", "alpha", "1", 100)).ok());
  const std::vector<std::string> before = Cached();
  const std::vector<std::string> ids = {"m-1", "m-2", "m-missing"};

  // The same id again (other fields differ): ALREADY_EXISTS, the first row stays.
  ModelRecord twin = Record("m-1", "other", "9", 5);
  twin.spec.description = "not stored";
  EXPECT_FALSE(store_->Insert(twin).ok());
  EXPECT_EQ(Cached(), before);
  // The same (name, version) under a new id.
  EXPECT_EQ(store_->Insert(Record("m-2", "alpha", "1", 300)).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->Get("m-2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Cached(), before);

  ModelRecord ghost = Record("m-missing", "ghost", "1", 1);
  ghost.state = ModelState::kReady;
  EXPECT_EQ(store_->UpdateState(ghost).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->UpdateSpec(ghost).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->CommitProbe(ghost, "p", MakeTensor(1, 1), Tensor(), "s", {1}).code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(store_->SetOwner("m-missing", "k1").ok());  // no such model (foreign key)
  EXPECT_TRUE(store_->Delete("m-missing").ok());  // nothing to delete is not an error
  EXPECT_EQ(Cached(), before);
  EXPECT_EQ(store_->Get("m-missing").status().code(), absl::StatusCode::kNotFound);
  ExpectSameAsStore(ids, {"alpha", "ghost", "other"});
}

// Seeded random sequences of every write (duplicates, missing ids and invalid owners included):
// after each step the cache serves exactly what the store reads.
TEST_F(CachingStoreTest, RandomSequencesEndEqualToTheStore) {
  const std::vector<std::string> names = {"alpha", "beta", "gamma"};
  const std::vector<std::string> versions = {"", "1", "2"};
  const std::vector<std::string> owners = {"k1", "k2", ""};
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(absl::StrCat("m-", i));
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    auto pick = [&](const std::vector<std::string>& from) {
      return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
    };
    int succeeded = 0;
    for (int step = 0; step < 150; ++step) {
      const std::string id = pick(ids);
      // The stored record when there is one, else a new one.
      auto current = store_->inner()->Get(id);
      ModelRecord r = current.ok() ? *current
                                   : Record(id, pick(names), pick(versions),
                                            std::uniform_int_distribution<int64_t>(0, 5)(rng));
      absl::Status s;
      switch (std::uniform_int_distribution<int>(0, 6)(rng)) {
        case 0:
        case 1:
          s = store_->Insert(Record(id, pick(names), pick(versions),
                                    std::uniform_int_distribution<int64_t>(0, 5)(rng)));
          break;
        case 2:
          s = store_->SetOwner(id, pick(owners));
          break;
        case 3:
          r.state = static_cast<ModelState>(std::uniform_int_distribution<int>(0, 3)(rng));
          r.state_reason = absl::StrCat("step ", step);
          r.feature_dim = step;
          ++r.revision;
          s = store_->UpdateState(r);
          break;
        case 4:
          r.spec.description = absl::StrCat("described at step ", step);
          r.spec.tags = {pick(names)};
          ++r.revision;
          s = store_->UpdateSpec(r);
          break;
        case 5:
          r.state = ModelState::kReady;
          r.probe_millis = step;
          ++r.revision;
          s = store_->CommitProbe(r, "p", MakeTensor(2, 3), MakeTensor(2, 1), "s", {1, 2, 3});
          break;
        case 6:
          s = store_->Delete(id);
          break;
      }
      if (s.ok()) ++succeeded;
      ASSERT_EQ(Cached(), Stored()) << "step " << step << ": " << s;
    }
    ExpectSameAsStore(ids, names);
    // The sequence did something: a test that cannot fail checks nothing.
    EXPECT_GT(succeeded, 50);
    EXPECT_FALSE(store_->ListAll()->empty());
  }
}

// Writes of one row from several threads: the refreshes are ordered, so the cache ends where
// the store does.
TEST_F(CachingStoreTest, ConcurrentWritesOfOneRowEndEqualToTheStore) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->Insert(Record(absl::StrCat("m-", i), "alpha", absl::StrCat(i), i)).ok());
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int k = 0; k < 100; ++k) {
        ModelRecord r = Record(absl::StrCat("m-", k % 3), "alpha", absl::StrCat(k % 3), k % 3);
        r.state_reason = absl::StrCat("thread ", t, " write ", k);
        r.revision = k;
        EXPECT_TRUE(store_->UpdateState(r).ok());
        if (k % 10 == 0) {
          EXPECT_TRUE(store_->ListAll().ok());
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ExpectSameAsStore({"m-0", "m-1", "m-2"}, {"alpha"});
}

// Another server's writes (here: a second connection to the same file) are not seen until the
// replica sync refreshes the model, or everything.
TEST_F(CachingStoreTest, RefreshShowsWritesMadeBehindItsBack) {
  ASSERT_TRUE(store_->Insert(Record("m-1", "alpha", "1", 100)).ok());
  auto other = OpenMetadataStore(path_.string());
  ASSERT_TRUE(other.ok()) << other.status();

  ModelRecord r = *(*other)->Get("m-1");
  r.state = ModelState::kFailed;
  r.state_reason = "failed elsewhere";
  ++r.revision;
  ASSERT_TRUE((*other)->UpdateState(r).ok());
  ASSERT_TRUE((*other)->Insert(Record("m-2", "alpha", "2", 200)).ok());
  // Served from memory: the other server's writes are not there yet.
  EXPECT_EQ(store_->Get("m-1")->state, ModelState::kPending);
  EXPECT_EQ(store_->Get("m-2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Cached(), Stored());

  ASSERT_TRUE(store_->Refresh("m-1").ok());
  EXPECT_EQ(store_->Get("m-1")->state, ModelState::kFailed);
  EXPECT_EQ(store_->Get("m-1")->state_reason, "failed elsewhere");
  ASSERT_TRUE(store_->Refresh("m-2").ok());
  EXPECT_EQ(store_->Get("m-2")->spec.version, "2");
  ExpectSameAsStore({"m-1", "m-2"}, {"alpha"});

  // A deletion elsewhere: Refresh drops it.
  ASSERT_TRUE((*other)->Delete("m-1").ok());
  EXPECT_TRUE(store_->Get("m-1").ok());
  ASSERT_TRUE(store_->Refresh("m-1").ok());
  EXPECT_EQ(store_->Get("m-1").status().code(), absl::StatusCode::kNotFound);

  // Unannounced changes (an insert, a deletion, an owner): RefreshAll repairs them all.
  ASSERT_TRUE((*other)->Insert(Record("m-3", "beta", "1", 50)).ok());
  ASSERT_TRUE((*other)->SetOwner("m-3", "k2").ok());
  ASSERT_TRUE((*other)->Delete("m-2").ok());
  EXPECT_NE(Cached(), Stored());
  ASSERT_TRUE(store_->RefreshAll().ok());
  ExpectSameAsStore({"m-1", "m-2", "m-3"}, {"alpha", "beta"});
  EXPECT_EQ(store_->Get("m-3")->owner_key_id, "k2");

  // GetFresh reads the store and refreshes the entry with what it read.
  ASSERT_TRUE((*other)->Insert(Record("m-4", "gamma", "1", 60)).ok());
  auto fresh = store_->GetFresh("m-4");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->spec.name, "gamma");
  EXPECT_TRUE(store_->Get("m-4").ok());
  EXPECT_EQ(Cached(), Stored());
}

// OwnerOf and CountBySha are not served from the map: another server's write (a second
// connection) shows at once, before any refresh (CountBySha decides whether a blob may go).
TEST_F(CachingStoreTest, OwnerAndDigestCountReadTheStore) {
  ASSERT_TRUE(store_->Insert(Record("m-1", "alpha", "1", 100)).ok());
  auto other = OpenMetadataStore(path_.string());
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)->Insert(Record("m-2", "beta", "1", 200)).ok());
  ASSERT_TRUE((*other)->SetOwner("m-1", "k2").ok());
  // The map has not seen either write...
  EXPECT_EQ(store_->Get("m-2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("m-1")->owner_key_id, "");
  // ...these two read the store.
  EXPECT_EQ(*store_->CountBySha("sha-m-2"), 1);
  EXPECT_EQ(*store_->OwnerOf("m-1"), "k2");
  ASSERT_TRUE((*other)->Delete("m-2").ok());
  EXPECT_EQ(*store_->CountBySha("sha-m-2"), 0);
}

// A row it cannot re-read (damaged JSON, as a broken store would fail) marks the cache stale:
// reads go to the store, with the store's errors, until every row can be read again.
TEST_F(CachingStoreTest, FailedRefreshFallsBackToTheStore) {
  ASSERT_TRUE(store_->Insert(Record("m-1", "alpha", "1", 100)).ok());
  ASSERT_TRUE(store_->Insert(Record("m-2", "beta", "1", 200)).ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  auto exec = [&](const char* sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
    const std::string message = error ? error : "";
    sqlite3_free(error);
    return rc == SQLITE_OK ? std::string() : message;
  };
  ASSERT_EQ(exec("UPDATE models SET input_shape='not json' WHERE id='m-1'"), "");
  EXPECT_EQ(store_->Refresh("m-1").code(), absl::StatusCode::kDataLoss);
  // Stale: the store's answers, not the cache's (which still holds a readable m-1).
  EXPECT_EQ(store_->ListAll().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->Get("m-1").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->Get("m-2")->spec.name, "beta");
  // Repaired: the next read loads every row again and serves from memory.
  ASSERT_EQ(exec("UPDATE models SET input_shape='[1,28,28]', description='repaired' "
                 "WHERE id='m-1'"),
            "");
  sqlite3_close(db);
  auto all = store_->ListAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(store_->Get("m-1")->spec.description, "repaired");
  ExpectSameAsStore({"m-1", "m-2"}, {"alpha", "beta"});
}

}  // namespace
}  // namespace modeldock::dock
