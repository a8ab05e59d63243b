// One suite, both metadata store backends (this file: models, keys, probe data, jobs;
// metadata_store_learning_test.cc: outcomes, versions, audit, settings; the fixture in
// dock/testing/metadata_store_fixture.h): SQLite on a temporary file and PostgreSQL on a fresh
// schema of the test server (tests/postgres_env.h: without MODELDOCK_TEST_PG_URL the PostgreSQL
// cases fail, unless MODELDOCK_SKIP_PG=1). Every public method, with exact expected values,
// including the bytes of stored floats.
#include "dock/metadata_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "dock/postgres_store.h"
#include "dock/testing/metadata_store_fixture.h"
#include "gtest/gtest.h"
#include "tests/model_records.h"
#include "tests/postgres_env.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using ::modeldock::testing::DescribeRecord;
using ::modeldock::testing::TestRecord;
using ::modeldock::testing::TestSchema;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

using test::Bits;
using test::ExpectSameRecord;
using test::FloatsFromBits;
using test::Ids;
using test::kOddBits;
using test::MakeTensor;
using test::MetadataStoreTest;
using test::Record;


TEST_P(MetadataStoreTest, InsertGetListAndFindVersions) {
  ModelRecord a1 = Record("id-a1", "alpha", "1.0", 1000);
  ModelRecord b = Record("id-b", "beta", "1.0", 1000);  // same time: ordered by id
  b.spec.remote_endpoint = "10.0.0.7:8001";  // a remote model (KServe v2)
  b.spec.remote_model = "resnet";
  b.spec.remote_version = "3";
  ModelRecord a2 = Record("id-a2", "alpha", "2.0", 3000);
  a2.spec.kind = ModelKind::kFeatureExtractor;
  a2.spec.class_labels = {};
  a2.spec.task = TaskKind::kTabularClassification;
  a2.spec.input_shape = {17};
  a2.layers = {};
  a2.has_embed = false;
  for (const ModelRecord& r : {a2, b, a1}) ASSERT_TRUE(store_->Insert(r).ok()) << r.id;

  auto got = store_->Get("id-a2");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameRecord(*got, a2);
  got = store_->Get("id-a1");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameRecord(*got, a1);

  auto missing = store_->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(missing.status().message()), "no model with id 'nope'");

  auto all = store_->ListAll();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(Ids(*all), ElementsAre("id-a1", "id-b", "id-a2"));
  auto versions = store_->FindVersions("alpha");
  ASSERT_TRUE(versions.ok()) << versions.status();
  EXPECT_THAT(Ids(*versions), ElementsAre("id-a1", "id-a2"));
  ExpectSameRecord((*versions)[1], a2);
  EXPECT_TRUE(store_->FindVersions("gamma")->empty());
  EXPECT_EQ(*store_->CountBySha("sha-id-b"), 1);
  EXPECT_EQ(*store_->CountBySha("sha-none"), 0);

  // Everything survives closing and opening again.
  Reopen();
  ExpectSameRecord(*store_->Get("id-a2"), a2);
  ExpectSameRecord(*store_->Get("id-b"), b);
  EXPECT_EQ(store_->ListAll()->size(), 3u);
}

// A damaged models row is DATA_LOSS naming the model, not an exception out of the store.
TEST_P(MetadataStoreTest, CorruptModelRowIsDataLoss) {
  ASSERT_TRUE(store_->Insert(Record("id-bad", "bad", "1.0", 1000)).ok());
  ASSERT_EQ(ExecSql("UPDATE models SET input_shape = 'not json' WHERE id = 'id-bad'"), "");
  auto got = store_->Get("id-bad");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr("model id-bad: "));
  EXPECT_EQ(store_->ListAll().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->FindVersions("bad").status().code(), absl::StatusCode::kDataLoss);
  ASSERT_EQ(ExecSql("UPDATE models SET input_shape = '[1, 28, 28]', remote = '{\"model\": 3}' "
                    "WHERE id = 'id-bad'"),
            "");
  EXPECT_EQ(store_->Get("id-bad").status().code(), absl::StatusCode::kDataLoss);
}

TEST_P(MetadataStoreTest, DuplicateNameVersionOrIdIsAlreadyExists) {
  ASSERT_TRUE(store_->Insert(Record("id-1", "alpha", "1.0", 1)).ok());
  absl::Status same_version = store_->Insert(Record("id-2", "alpha", "1.0", 2));
  EXPECT_EQ(same_version.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(std::string(same_version.message()),
            "model 'alpha' version '1.0' is already registered");
  absl::Status same_id = store_->Insert(Record("id-1", "other", "1.0", 3));
  EXPECT_EQ(same_id.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(std::string(same_id.message()), "model 'other' version '1.0' is already registered");
  EXPECT_TRUE(store_->Insert(Record("id-3", "alpha", "1.1", 4)).ok());
  EXPECT_THAT(Ids(*store_->ListAll()), ElementsAre("id-1", "id-3"));
}

TEST_P(MetadataStoreTest, UpdateStateAndSpec) {
  ModelRecord r = Record("id-1", "alpha", "1.0", 1);
  ASSERT_TRUE(store_->Insert(r).ok());
  r.state = ModelState::kFailed;
  r.state_reason = "admission: bad output";
  r.has_embed = false;
  r.feature_dim = 10;
  r.probe_millis = 1234;
  r.revision = 7;
  r.spec.description = "ignored by UpdateState";
  ASSERT_TRUE(store_->UpdateState(r).ok());
  ModelRecord want = Record("id-1", "alpha", "1.0", 1);
  want.state = ModelState::kFailed;
  want.state_reason = "admission: bad output";
  want.has_embed = false;
  want.feature_dim = 10;
  want.probe_millis = 1234;
  want.revision = 7;
  ExpectSameRecord(*store_->Get("id-1"), want);

  r.spec.description = "new words";
  r.spec.license = "MIT";
  r.spec.tags = {"x"};
  r.revision = 8;
  r.state = ModelState::kReady;  // ignored by UpdateSpec
  ASSERT_TRUE(store_->UpdateSpec(r).ok());
  want.spec.description = "new words";
  want.spec.license = "MIT";
  want.spec.tags = {"x"};
  want.revision = 8;
  ExpectSameRecord(*store_->Get("id-1"), want);

  ModelRecord ghost = Record("ghost", "g", "1", 1);
  absl::Status s = store_->UpdateState(ghost);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(s.message()), "no model with id ghost");
  s = store_->UpdateSpec(ghost);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(s.message()), "no model ghost");
}

TEST_P(MetadataStoreTest, KeysAndOwners) {
  // Same creation time: ordered by id, byte-wise ('B' < 'a'), whatever the collation.
  ApiKeyRow admin{"a", "admin", 3, "salt-a", "hash-a", 100, false};
  ApiKeyRow provider{"B", "ci", 2, "salt-b", "hash-b", 100, false};
  ApiKeyRow late{"0", "late", 1, "salt-0", "hash-0", 200, false};
  for (const ApiKeyRow& k : {admin, late, provider}) ASSERT_TRUE(store_->InsertKey(k).ok());
  absl::Status dup = store_->InsertKey(admin);
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(std::string(dup.message()), "API key 'a' already exists");

  auto keys = store_->Keys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[0].id, "B");
  EXPECT_EQ((*keys)[1].id, "a");
  EXPECT_EQ((*keys)[2].id, "0");
  const ApiKeyRow& b = (*keys)[0];
  EXPECT_EQ(b.name, "ci");
  EXPECT_EQ(b.role, 2);
  EXPECT_EQ(b.salt, "salt-b");
  EXPECT_EQ(b.hash, "hash-b");
  EXPECT_EQ(b.created_unix_ms, 100);
  EXPECT_FALSE(b.revoked);
  EXPECT_TRUE(store_->Keys("zz")->empty());

  ASSERT_TRUE(store_->RevokeKey("a").ok());
  auto one = store_->Keys("a");
  ASSERT_EQ(one->size(), 1u);
  EXPECT_TRUE((*one)[0].revoked);
  EXPECT_FALSE((*store_->Keys("B"))[0].revoked);
  absl::Status revoke = store_->RevokeKey("zz");
  EXPECT_EQ(revoke.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(revoke.message()), "no API key 'zz'");

  ASSERT_TRUE(store_->Insert(Record("m", "alpha", "1.0", 1)).ok());
  EXPECT_EQ(*store_->OwnerOf("m"), "");
  EXPECT_EQ(store_->Get("m")->owner_key_id, "");
  ASSERT_TRUE(store_->SetOwner("m", "a").ok());
  ASSERT_TRUE(store_->SetOwner("m", "B").ok());  // replaces
  EXPECT_EQ(*store_->OwnerOf("m"), "B");
  EXPECT_EQ(store_->Get("m")->owner_key_id, "B");
  EXPECT_EQ((*store_->ListAll())[0].owner_key_id, "B");
  EXPECT_EQ((*store_->FindVersions("alpha"))[0].owner_key_id, "B");
  EXPECT_EQ(*store_->OwnerOf("nobody"), "");
  // An owner needs its model (foreign key).
  EXPECT_FALSE(store_->SetOwner("nobody", "B").ok());
}

// Insert writes the record's owner in the row's own transaction (issue 22: it was a second call
// whose failure left a model without its owner); a refused insert writes no owner either.
TEST_P(MetadataStoreTest, InsertStoresTheOwnerWithTheRow) {
  ModelRecord owned = Record("m1", "alpha", "1.0", 1);
  owned.owner_key_id = "key-a";
  ASSERT_TRUE(store_->Insert(owned).ok());
  EXPECT_EQ(*store_->OwnerOf("m1"), "key-a");
  EXPECT_EQ(store_->Get("m1")->owner_key_id, "key-a");

  ModelRecord taken = Record("m2", "alpha", "1.0", 2);  // the same (name, version)
  taken.owner_key_id = "key-b";
  EXPECT_EQ(store_->Insert(taken).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*store_->OwnerOf("m2"), "");
  EXPECT_EQ(store_->Get("m2").status().code(), absl::StatusCode::kNotFound);
  // A record without an owner has none.
  ASSERT_TRUE(store_->Insert(Record("m3", "beta", "1.0", 3)).ok());
  EXPECT_EQ(*store_->OwnerOf("m3"), "");
}

TEST_P(MetadataStoreTest, ProbeOutputsFeaturesAndVectorRoundTripExactBytes) {
  ModelRecord r = Record("m", "alpha", "1.0", 1);
  ASSERT_TRUE(store_->Insert(r).ok());
  const Tensor logits = MakeTensor(4, 2, FloatsFromBits(kOddBits));
  const Tensor features =
      MakeTensor(2, 4, FloatsFromBits(std::vector<uint32_t>(kOddBits.rbegin(), kOddBits.rend())));
  const std::vector<float> vector = FloatsFromBits({0x3f3504f3, 0xbf3504f3, 0x00000001});
  r.state = ModelState::kReady;
  r.state_reason = "";
  r.probe_millis = 321;
  r.revision = 3;
  ASSERT_TRUE(store_->CommitProbe(r, "probe-1", logits, features, "space-1", vector).ok());
  ExpectSameRecord(*store_->Get("m"), r);

  auto got_logits = store_->GetProbeOutputs("m", "probe-1");
  ASSERT_TRUE(got_logits.ok()) << got_logits.status();
  EXPECT_EQ(got_logits->shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(Bits(got_logits->values), kOddBits);
  auto got_features = store_->GetProbeFeatures("m", "probe-1");
  ASSERT_TRUE(got_features.ok()) << got_features.status();
  EXPECT_EQ(got_features->shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(Bits(got_features->values), Bits(features.values));
  EXPECT_TRUE(*store_->HasProbeFeatures("m", "probe-1"));
  auto vectors = store_->Vectors("space-1");
  ASSERT_EQ(vectors->size(), 1u);
  EXPECT_EQ((*vectors)[0].first, "m");
  EXPECT_EQ(Bits((*vectors)[0].second), Bits(vector));

  // Another probe set: nothing.
  auto other = store_->GetProbeOutputs("m", "probe-2");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(other.status().message()), "no probe outputs for m");
  other = store_->GetProbeFeatures("m", "probe-2");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(other.status().message()), "no probe features for m");
  EXPECT_FALSE(*store_->HasProbeFeatures("m", "probe-2"));

  // Probing again replaces the outputs; without features and vector, those stay as they were.
  const Tensor logits2 = MakeTensor(1, 3, {1.0f, 2.0f, 3.0f});
  r.revision = 4;
  ASSERT_TRUE(store_->CommitProbe(r, "probe-2", logits2, Tensor(), "space-1", {}).ok());
  EXPECT_EQ(store_->GetProbeOutputs("m", "probe-2")->values, logits2.values);
  EXPECT_FALSE(store_->GetProbeOutputs("m", "probe-1").ok());
  EXPECT_TRUE(*store_->HasProbeFeatures("m", "probe-1"));
  EXPECT_EQ(store_->Vectors("space-1")->size(), 1u);
  EXPECT_EQ(store_->Get("m")->revision, 4);

  // A model deleted while probing: NOT_FOUND, nothing stored.
  ModelRecord gone = Record("gone", "beta", "1.0", 2);
  absl::Status s = store_->CommitProbe(gone, "probe-1", logits, features, "space-1", vector);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(s.message()), "model gone was deleted while probing");
  EXPECT_FALSE(store_->GetProbeOutputs("gone", "probe-1").ok());
  EXPECT_EQ(store_->Vectors("space-1")->size(), 1u);
}

TEST_P(MetadataStoreTest, VectorsByIdAndDeleteCascades) {
  for (const char* id : {"m2", "m1", "M3"}) {
    ASSERT_TRUE(store_->Insert(Record(id, std::string("n-") + id, "1", 1)).ok());
  }
  ASSERT_TRUE(store_->PutVector("m2", "s1", {2.0f, 0.5f}).ok());
  ASSERT_TRUE(store_->PutVector("m1", "s1", {1.0f, -0.0f}).ok());
  ASSERT_TRUE(store_->PutVector("M3", "s2", {3.0f}).ok());
  auto s1 = store_->Vectors("s1");
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_THAT(
      *s1, ElementsAre(Pair("m1", ElementsAre(1.0f, -0.0f)), Pair("m2", ElementsAre(2.0f, 0.5f))));
  EXPECT_EQ(Bits((*s1)[0].second)[1], 0x80000000u);
  // A vector moves to another space when replaced.
  ASSERT_TRUE(store_->PutVector("m2", "s2", {4.0f}).ok());
  EXPECT_THAT(*store_->Vectors("s2"),
              ElementsAre(Pair("M3", ElementsAre(3.0f)), Pair("m2", ElementsAre(4.0f))));
  EXPECT_TRUE(store_->Vectors("s3")->empty());
  // A vector needs its model (foreign key).
  EXPECT_FALSE(store_->PutVector("nobody", "s1", {1.0f}).ok());

  ModelRecord m1 = *store_->Get("m1");
  m1.state = ModelState::kReady;
  ASSERT_TRUE(
      store_->CommitProbe(m1, "p", MakeTensor(1, 2, {1, 2}), MakeTensor(1, 1, {3}), "s1", {9.0f})
          .ok());
  ASSERT_TRUE(store_->SetOwner("m1", "key").ok());
  ASSERT_TRUE(store_->Delete("m1").ok());
  EXPECT_EQ(store_->Get("m1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(store_->GetProbeOutputs("m1", "p").ok());
  EXPECT_FALSE(*store_->HasProbeFeatures("m1", "p"));
  EXPECT_TRUE(store_->Vectors("s1")->empty());
  EXPECT_EQ(*store_->OwnerOf("m1"), "");
  EXPECT_TRUE(store_->Delete("m1").ok());  // deleting nothing is not an error
  EXPECT_THAT(Ids(*store_->ListAll()), ElementsAre("M3", "m2"));
  // The model_owners row went with its model: a new model with the same id has no owner.
  ASSERT_TRUE(store_->Insert(Record("m1", "again", "1", 5)).ok());
  EXPECT_EQ(store_->Get("m1")->owner_key_id, "");
}

TEST_P(MetadataStoreTest, CountByState) {
  EXPECT_TRUE(store_->CountByState()->empty());
  int i = 0;
  for (ModelState state : {ModelState::kReady, ModelState::kReady, ModelState::kFailed,
                           ModelState::kPending, ModelState::kReady}) {
    ModelRecord r = Record("m" + std::to_string(i), "n" + std::to_string(i), "1", i);
    r.state = state;
    ASSERT_TRUE(store_->Insert(r).ok());
    ++i;
  }
  auto counts = store_->CountByState();
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_THAT(*counts, ElementsAre(Pair(ModelState::kPending, 1), Pair(ModelState::kReady, 3),
                                   Pair(ModelState::kFailed, 1)));
}

TEST_P(MetadataStoreTest, SchemaVersionIsCurrentAndNewerIsRefused) {
  EXPECT_EQ(*store_->GetMeta("schema_version"), std::to_string(kMetadataSchemaVersion));
  ASSERT_TRUE(store_->Insert(Record("m", "alpha", "1.0", 1)).ok());
  Reopen();  // opening again neither migrates nor loses anything
  EXPECT_EQ(*store_->GetMeta("schema_version"), std::to_string(kMetadataSchemaVersion));
  EXPECT_TRUE(store_->Get("m").ok());

  // As if a newer server had migrated the database.
  ASSERT_TRUE(store_->SetMeta("schema_version", std::to_string(kMetadataSchemaVersion + 1)).ok());
  store_.reset();
  auto refused = OpenMetadataStore(url_);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(),
              HasSubstr(absl::StrCat("has schema version ", kMetadataSchemaVersion + 1,
                                     "; this server understands up to ", kMetadataSchemaVersion)));
}

// The store serialises its one connection: calls from several threads at once all land.
TEST_P(MetadataStoreTest, ConcurrentCalls) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 10; ++i) {
        const std::string id = "m" + std::to_string(t) + "-" + std::to_string(i);
        EXPECT_TRUE(store_->Insert(Record(id, id, "1", t * 100 + i)).ok());
        EXPECT_TRUE(store_->PutVector(id, "s", {static_cast<float>(i)}).ok());
        EXPECT_TRUE(store_->ListAll().ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(store_->ListAll()->size(), 40u);
  EXPECT_EQ(store_->Vectors("s")->size(), 40u);
}

// The probe queue: oldest PENDING first, a leased job is not claimed again until its lease
// expires (its server died), READY/FAILED models are no jobs, a renewal extends only the owner's.
TEST_P(MetadataStoreTest, ProbeJobsAreClaimedOnceUntilTheLeaseExpires) {
  ASSERT_TRUE(store_->Insert(Record("b", "beta", "1", 2)).ok());
  ASSERT_TRUE(store_->Insert(Record("a", "alpha", "1", 1)).ok());
  ModelRecord ready = Record("c", "gamma", "1", 0);
  ready.state = ModelState::kReady;
  ASSERT_TRUE(store_->Insert(ready).ok());
  auto first = store_->ClaimProbeJob("r1", absl::Seconds(60));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->value_or(""), "a");
  auto second = store_->ClaimProbeJob("r2", absl::Seconds(60));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->value_or(""), "b");
  auto none = store_->ClaimProbeJob("r2", absl::Seconds(60));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  // r1 probes "a" (PROBING) and dies: once its lease expires, r2 takes it over.
  ModelRecord a = *store_->Get("a");
  a.state = ModelState::kProbing;
  ASSERT_TRUE(store_->UpdateState(a).ok());
  ASSERT_TRUE(store_->RenewProbeLeases({"a"}, "r1", absl::Milliseconds(1)).ok());
  ASSERT_TRUE(store_->RenewProbeLeases({"b"}, "r1", absl::Milliseconds(1)).ok());  // not r1's
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto taken = store_->ClaimProbeJob("r2", absl::Seconds(60));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->value_or(""), "a");
  EXPECT_FALSE(store_->ClaimProbeJob("r3", absl::Seconds(60))->has_value());
}

// SQLite serves one process: there is no feed to follow. PostgreSQL's is tested below.
TEST_P(MetadataStoreTest, ChangeFeedOnlyWhereServersShareTheStore) {
  auto feed = store_->OpenChangeFeed();
  ASSERT_TRUE(feed.ok()) << feed.status();
  EXPECT_EQ(*feed == nullptr, GetParam() == "sqlite");
}

INSTANTIATE_TEST_SUITE_P(Backends, MetadataStoreTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace modeldock::dock
