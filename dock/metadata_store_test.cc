// One suite, both metadata store backends: SQLite on a temporary file and PostgreSQL on a fresh
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

// Floats from bit patterns, so that a round trip is checked on bytes (NaN payloads, -0, subnormal).
std::vector<float> FloatsFromBits(const std::vector<uint32_t>& bits) {
  std::vector<float> out(bits.size());
  std::memcpy(out.data(), bits.data(), bits.size() * sizeof(float));
  return out;
}
std::vector<uint32_t> Bits(const std::vector<float>& values) {
  std::vector<uint32_t> out(values.size());
  std::memcpy(out.data(), values.data(), values.size() * sizeof(float));
  return out;
}

// 0.1f, -0, the smallest subnormal, the largest float, a NaN with a payload, -inf, 1, -2.5.
const std::vector<uint32_t> kOddBits = {0x3dcccccd, 0x80000000, 0x00000001, 0x7f7fffff,
                                        0x7fc00123, 0xff800000, 0x3f800000, 0xc0200000};

ModelRecord Record(const std::string& id, const std::string& name, const std::string& version,
                   int64_t created) {
  return TestRecord(id, name, version, created);
}

void ExpectSameRecord(const ModelRecord& got, const ModelRecord& want) {
  EXPECT_EQ(DescribeRecord(got), DescribeRecord(want));
}

std::vector<std::string> Ids(const std::vector<ModelRecord>& records) {
  std::vector<std::string> ids;
  for (const ModelRecord& r : records) ids.push_back(r.id);
  return ids;
}

Tensor MakeTensor(int64_t rows, int64_t cols, std::vector<float> values) {
  Tensor t;
  t.shape = {rows, cols};
  t.values = std::move(values);
  return t;
}

class MetadataStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgres") {
      MODELDOCK_REQUIRE_POSTGRES();
      schema_ = std::make_unique<TestSchema>();
      ASSERT_EQ(schema_->error(), "");
      url_ = schema_->url();
    } else {
      std::string pattern = (fs::temp_directory_path() / "modeldock-store-XXXXXX").string();
      ASSERT_NE(mkdtemp(pattern.data()), nullptr);
      dir_ = pattern;
      url_ = (dir_ / "modeldock.db").string();
    }
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    schema_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto store = OpenMetadataStore(url_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  // Runs SQL on the backend's database beside the store (a connection of its own); "" or the
  // error.
  std::string ExecSql(const std::string& sql) {
    if (schema_ != nullptr) {
      const std::string out = schema_->Exec(sql);
      return out.rfind("error: ", 0) == 0 ? out : "";
    }
    sqlite3* db = nullptr;
    std::string out;
    char* err = nullptr;
    if (sqlite3_open(url_.c_str(), &db) != SQLITE_OK) {
      out = sqlite3_errmsg(db);
    } else if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      out = err != nullptr ? err : "error";
    }
    sqlite3_free(err);
    sqlite3_close(db);
    return out;
  }

  std::unique_ptr<TestSchema> schema_;
  fs::path dir_;
  std::string url_;
  std::unique_ptr<MetadataStore> store_;
};

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

TEST_P(MetadataStoreTest, OutcomesReplaceAndListNewestFirst) {
  OutcomeQueryRow q1;
  q1.query_id = "q1";
  q1.task = 0;
  q1.num_samples = 200;
  q1.num_classes = 4;
  q1.prototypes = MakeTensor(2, 4, FloatsFromBits(kOddBits));
  q1.stage1 = {{"m1", 0.1 + 0.2}, {"m2", -1e-300}, {"m3", 1.0 / 3.0}};
  q1.created_unix_ms = 500;
  OutcomeRow o1{0, "", "m1", "alpha", 0.1 + 0.2, "finetune", 1.0, "key-1", 510,
                R"({"tune":{"split":{"seed":7}}})"};
  OutcomeRow o2{0, "", "m2", "beta", 0.875, "finetune", 0.5, "", 520, ""};
  OutcomeRow o3{0, "", "m1", "alpha", 2.0 / 3.0, "import", 2.0, "key-2", 530, ""};
  ASSERT_TRUE(store_->AddOutcomes(q1, {o1, o2, o3}).ok());

  OutcomeQueryRow q0 = q1;  // an older query, listed first
  q0.query_id = "q0";
  q0.created_unix_ms = 400;
  q0.prototypes = MakeTensor(1, 3, {1, 2, 3});
  q0.stage1 = {};
  ASSERT_TRUE(store_->AddOutcomes(q0, {o2}).ok());

  auto all = store_->Outcomes("", 0);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].query_id, "q0");
  EXPECT_EQ((*all)[1].model_id, "m1");
  EXPECT_EQ((*all)[1].source, "import");
  const OutcomeRow& first = (*all)[3];
  EXPECT_EQ(first.query_id, "q1");
  EXPECT_EQ(first.model_id, "m1");
  EXPECT_EQ(first.model_name, "alpha");
  EXPECT_EQ(first.accuracy, 0.1 + 0.2);  // exact: 0.30000000000000004
  EXPECT_EQ(first.source, "finetune");
  EXPECT_EQ(first.weight, 1.0);
  EXPECT_EQ(first.reporter_key_id, "key-1");
  EXPECT_EQ(first.created_unix_ms, 510);
  EXPECT_EQ(first.detail, R"({"tune":{"split":{"seed":7}}})");
  EXPECT_EQ((*all)[2].detail, "");
  EXPECT_GT((*all)[0].id, (*all)[1].id);
  EXPECT_GT((*all)[1].id, (*all)[2].id);
  EXPECT_GT((*all)[2].id, (*all)[3].id);

  // A new report of (q1, m1, finetune) replaces the old one and is now the newest.
  OutcomeRow again = o1;
  again.accuracy = 0.5;
  q1.stage1 = {{"m1", 0.25}};
  ASSERT_TRUE(store_->AddOutcomes(q1, {again}).ok());
  all = store_->Outcomes("", 0);
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].model_id, "m1");
  EXPECT_EQ((*all)[0].source, "finetune");
  EXPECT_EQ((*all)[0].accuracy, 0.5);

  auto m1 = store_->Outcomes("m1", 0);
  ASSERT_EQ(m1->size(), 2u);
  EXPECT_EQ((*m1)[0].source, "finetune");
  EXPECT_EQ((*m1)[1].source, "import");
  EXPECT_EQ((*m1)[1].accuracy, 2.0 / 3.0);
  EXPECT_EQ(store_->Outcomes("m1", 1)->size(), 1u);
  EXPECT_EQ(store_->Outcomes("", 3)->size(), 3u);
  EXPECT_EQ(store_->Outcomes("", -1)->size(), 4u);
  EXPECT_TRUE(store_->Outcomes("m9", 0)->empty());
  EXPECT_EQ(*store_->CountOutcomes(""), std::make_pair(int64_t{4}, int64_t{2}));
  EXPECT_EQ(*store_->CountOutcomes("m1"), std::make_pair(int64_t{2}, int64_t{1}));
  EXPECT_EQ(*store_->CountOutcomes("m9"), std::make_pair(int64_t{0}, int64_t{0}));

  auto queries = store_->OutcomeQueries();
  ASSERT_TRUE(queries.ok()) << queries.status();
  ASSERT_EQ(queries->size(), 2u);
  EXPECT_EQ((*queries)[0].query_id, "q0");
  const OutcomeQueryRow& got = (*queries)[1];
  EXPECT_EQ(got.query_id, "q1");
  EXPECT_EQ(got.task, 0);
  EXPECT_EQ(got.num_samples, 200);
  EXPECT_EQ(got.num_classes, 4);
  EXPECT_EQ(got.prototypes.shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(Bits(got.prototypes.values), kOddBits);
  EXPECT_THAT(got.stage1, ElementsAre(Pair("m1", 0.25)));  // the query was replaced too
  EXPECT_EQ(got.created_unix_ms, 500);
  EXPECT_THAT((*queries)[0].stage1, ::testing::IsEmpty());
  EXPECT_EQ((*queries)[0].prototypes.shape, (std::vector<int64_t>{1, 3}));
}

TEST_P(MetadataStoreTest, OutcomeStage1ScoresKeepEveryBit) {
  OutcomeQueryRow q;
  q.query_id = "q";
  q.prototypes = MakeTensor(1, 1, {1});
  q.stage1 = {{"a", 0.1 + 0.2}, {"b", -1e-300}, {"c", 1.0 / 3.0}, {"d", 123456789.123456789}};
  ASSERT_TRUE(store_->AddOutcomes(q, {}).ok());
  auto queries = store_->OutcomeQueries();
  ASSERT_EQ(queries->size(), 1u);
  EXPECT_EQ((*queries)[0].stage1, q.stage1);
  EXPECT_TRUE(store_->Outcomes("", 0)->empty());
}

// Stage-1 scores that are not a JSON object of numbers: DATA_LOSS naming the query, not a throw.
TEST_P(MetadataStoreTest, CorruptOutcomeQueryIsDataLoss) {
  OutcomeQueryRow q;
  q.query_id = "q-bad";
  q.prototypes = MakeTensor(1, 2, {1, 2});
  q.stage1 = {{"a", 0.5}};
  ASSERT_TRUE(store_->AddOutcomes(q, {}).ok());
  ASSERT_EQ(ExecSql("UPDATE outcome_queries SET stage1 = '{\"a\": \"high\"}'"), "");
  auto queries = store_->OutcomeQueries();
  EXPECT_EQ(queries.status().code(), absl::StatusCode::kDataLoss) << queries.status();
  EXPECT_THAT(queries.status().message(), HasSubstr("outcome query q-bad: "));
  ASSERT_EQ(ExecSql("UPDATE outcome_queries SET stage1 = 'not json'"), "");
  EXPECT_EQ(store_->OutcomeQueries().status().code(), absl::StatusCode::kDataLoss);
}

TEST_P(MetadataStoreTest, AlignmentVersionsCountUp) {
  auto v1 = store_->InsertAlignment({0, 100, R"({"gain": 0.1})", R"({"weights": [1, 2]})"});
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(*v1, 1);
  auto v2 = store_->InsertAlignment({0, 200, R"({"gain": 0.2})", R"({"weights": [3]})"});
  EXPECT_EQ(*v2, 2);
  auto rows = store_->Alignments();
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].version, 1);
  EXPECT_EQ((*rows)[0].created_unix_ms, 100);
  EXPECT_EQ((*rows)[0].summary, R"({"gain": 0.1})");
  EXPECT_EQ((*rows)[0].payload, "");  // not read
  EXPECT_EQ((*rows)[1].version, 2);
  auto row = store_->Alignment(2);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->version, 2);
  EXPECT_EQ(row->created_unix_ms, 200);
  EXPECT_EQ(row->summary, R"({"gain": 0.2})");
  EXPECT_EQ(row->payload, R"({"weights": [3]})");
  auto missing = store_->Alignment(3);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(missing.status().message()), "no alignment version 3");
}

TEST_P(MetadataStoreTest, AuditNewestFirst) {
  for (int i = 1; i <= 3; ++i) {
    AuditEntry e;
    e.unix_ms = 1000 + i;
    e.actor = i == 2 ? "" : "key-" + std::to_string(i);
    e.action = "register";
    e.target = "m" + std::to_string(i);
    e.detail = "name 'x" + std::to_string(i) + "'";
    ASSERT_TRUE(store_->AppendAudit(e).ok());
  }
  auto two = store_->Audit(2);
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[0].target, "m3");
  EXPECT_EQ((*two)[0].unix_ms, 1003);
  EXPECT_EQ((*two)[0].actor, "key-3");
  EXPECT_EQ((*two)[0].action, "register");
  EXPECT_EQ((*two)[0].detail, "name 'x3'");
  EXPECT_EQ((*two)[1].target, "m2");
  EXPECT_EQ((*two)[1].actor, "");
  EXPECT_GT((*two)[0].id, (*two)[1].id);
  EXPECT_EQ(store_->Audit(-1)->size(), 3u);  // negative: no limit
  EXPECT_TRUE(store_->Audit(0)->empty());
}

TEST_P(MetadataStoreTest, MetaSettings) {
  EXPECT_EQ(*store_->GetMeta("serving_alignment"), "");
  ASSERT_TRUE(store_->SetMeta("serving_alignment", "2").ok());
  ASSERT_TRUE(store_->SetMeta("serving_alignment", "3").ok());
  EXPECT_EQ(*store_->GetMeta("serving_alignment"), "3");
  Reopen();
  EXPECT_EQ(*store_->GetMeta("serving_alignment"), "3");
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

TEST(OpenMetadataStoreTest, UrlsChooseTheBackend) {
  EXPECT_TRUE(IsPostgresUrl("postgresql://u@h:5432/db"));
  EXPECT_TRUE(IsPostgresUrl("postgres://h/db"));
  EXPECT_FALSE(IsPostgresUrl("/var/lib/modeldock/modeldock.db"));
  EXPECT_FALSE(IsPostgresUrl("postgresql.db"));
}

TEST(OpenMetadataStoreTest, RedactsPasswords) {
  EXPECT_EQ(RedactUrl("postgresql://user:s3cret@db.example:5432/dock"),
            "postgresql://user:***@db.example:5432/dock");
  EXPECT_EQ(RedactUrl("postgresql://user@db.example/dock?password=s3cret&sslmode=require"),
            "postgresql://user@db.example/dock?password=***&sslmode=require");
  EXPECT_EQ(RedactUrl("postgres://u:p@[::1]:5432/d?sslmode=disable&password=x"),
            "postgres://u:***@[::1]:5432/d?sslmode=disable&password=***");
  EXPECT_EQ(RedactUrl("postgresql://db.example:5432/dock"), "postgresql://db.example:5432/dock");
  EXPECT_EQ(RedactUrl("/data/a:b@c.db"), "/data/a:b@c.db");
}

// No server needed: nothing listens on port 1; the password never reaches the message.
TEST(OpenMetadataStoreTest, UnreachableServerIsUnavailableAndBadUrlInvalid) {
  auto store =
      OpenMetadataStore("postgresql://modeldock:s3cret@127.0.0.1:1/dock?connect_timeout=5");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(),
              HasSubstr("cannot connect to PostgreSQL at postgresql://modeldock:***@127.0.0.1:1/"));
  EXPECT_EQ(store.status().message().find("s3cret"), std::string::npos);

  auto bad = OpenMetadataStore("postgresql://[::1/dock");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("bad PostgreSQL URL"));
}

// A host that accepts TCP connections and never answers, as a blackholed server behind a proxy
// would: libpq without connect_timeout waits for it forever. Open gives up after the default
// timeout, or after the URL's or $PGCONNECT_TIMEOUT's when set. About 10 s (the cases overlap).
TEST(OpenMetadataStoreTest, SilentServerTimesOutAfterTheDefaultOrTheGivenConnectTimeout) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 16), 0);  // the kernel completes handshakes; nothing accepts
  socklen_t size = sizeof(addr);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &size), 0);
  const std::string url = absl::StrCat("postgresql://modeldock@127.0.0.1:", ntohs(addr.sin_port),
                                       "/dock?sslmode=disable");
  ASSERT_EQ(unsetenv("PGCONNECT_TIMEOUT"), 0);

  // Seconds until Open failed, or -1 if it had not after `limit` (then it is unblocked by
  // closing the listener, which resets the pending connection).
  using Clock = std::chrono::steady_clock;
  auto open = [](const std::string& url) {
    return std::async(std::launch::async, [url] {
      const Clock::time_point start = Clock::now();
      absl::Status status = OpenMetadataStore(url).status();
      return std::make_pair(status, std::chrono::duration<double>(Clock::now() - start).count());
    });
  };
  const int timeout = PostgresMetadataStore::kDefaultConnectTimeoutSeconds;
  auto by_default = open(url);
  auto by_url = open(url + "&connect_timeout=2");
  const bool finished =
      by_default.wait_for(std::chrono::seconds(timeout + 20)) == std::future_status::ready;
  if (!finished) close(listener);
  ASSERT_TRUE(finished) << "Open still connecting after " << timeout + 20 << " s";
  const auto [default_status, default_seconds] = by_default.get();
  const auto [url_status, url_seconds] = by_url.get();
  EXPECT_EQ(default_status.code(), absl::StatusCode::kUnavailable) << default_status;
  EXPECT_THAT(default_status.message(), HasSubstr("timeout expired"));
  // libpq counts whole seconds: a timeout of n ends after n - 1 to n s.
  EXPECT_GE(default_seconds, timeout - 1.5);
  EXPECT_LT(default_seconds, timeout + 5);
  EXPECT_EQ(url_status.code(), absl::StatusCode::kUnavailable) << url_status;
  EXPECT_THAT(url_status.message(), HasSubstr("timeout expired"));
  EXPECT_GE(url_seconds, 0.5);
  EXPECT_LT(url_seconds, 5);  // the URL's 2 s, not the default

  ASSERT_EQ(setenv("PGCONNECT_TIMEOUT", "2", 1), 0);
  auto by_env = open(url);
  const bool env_finished =
      by_env.wait_for(std::chrono::seconds(timeout + 20)) == std::future_status::ready;
  unsetenv("PGCONNECT_TIMEOUT");
  if (!env_finished) close(listener);
  ASSERT_TRUE(env_finished);
  const auto [env_status, env_seconds] = by_env.get();
  EXPECT_THAT(env_status.message(), HasSubstr("timeout expired"));
  EXPECT_LT(env_seconds, 5);  // $PGCONNECT_TIMEOUT's 2 s, not the default
  close(listener);
}

// A connection killed by the server: the call that finds it broken is UNAVAILABLE, the next one
// reconnects, and nothing committed is lost.
TEST(PostgresMetadataStoreTest, ReconnectsAfterTheServerDropsTheConnection) {
  MODELDOCK_REQUIRE_POSTGRES();
  TestSchema schema;
  ASSERT_EQ(schema.error(), "");
  const std::string app = schema.name();
  auto store = OpenMetadataStore(schema.url() + "&application_name=" + app);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Insert(Record("m", "alpha", "1.0", 1)).ok());

  const std::string backends =
      "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '" + app + "'";
  ASSERT_EQ(schema.Exec(backends), "1");
  ASSERT_EQ(schema.Exec("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = '" +
                        app + "'"),
            "1");
  for (int i = 0; i < 200 && schema.Exec(backends) != "0"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(schema.Exec(backends), "0");

  auto broken = (*store)->Get("m");
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kUnavailable) << broken.status();
  EXPECT_THAT(broken.status().message(), HasSubstr("PostgreSQL connection lost during get"));
  auto again = (*store)->Get("m");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->spec.name, "alpha");
  EXPECT_EQ(schema.Exec(backends), "1");
}

// Waits (up to 10 s) for the feed to bring `change` of `id`; other tests on the same database
// announce their own ids on the same channel, which are skipped.
bool Announced(ChangeFeed* feed, ModelChange change, const std::string& id) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    auto events = feed->Wait(absl::Milliseconds(200));
    if (!events.ok()) return false;
    for (const ModelChangeEvent& e : *events) {
      if (e.model_id == id && e.change == change) return true;
    }
  }
  return false;
}

// Every change another server must apply is announced when, and only when, it commits; a feed
// whose connection is killed reports UNAVAILABLE once, then listens again.
TEST(PostgresMetadataStoreTest, ChangeFeedAnnouncesCommittedChanges) {
  MODELDOCK_REQUIRE_POSTGRES();
  TestSchema schema;
  ASSERT_EQ(schema.error(), "");
  const std::string app = schema.name();
  auto store = OpenMetadataStore(schema.url() + "&application_name=" + app);
  ASSERT_TRUE(store.ok()) << store.status();
  auto opened = (*store)->OpenChangeFeed();
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_NE(*opened, nullptr);
  ChangeFeed* feed = opened->get();

  const std::string id = app + "-m";  // unique on the database's one channel
  ASSERT_TRUE((*store)->Insert(Record(id, "alpha", "1", 1)).ok());
  // Row-only changes (the replicas' registries in memory follow them).
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  ModelRecord r = *(*store)->Get(id);
  r.state = ModelState::kProbing;
  ++r.revision;
  ASSERT_TRUE((*store)->UpdateState(r).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  r.spec.description = "updated";
  ++r.revision;
  ASSERT_TRUE((*store)->UpdateSpec(r).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  ApiKeyRow key;
  key.id = app + "-k";
  key.name = "k";
  key.role = 2;
  ASSERT_TRUE((*store)->InsertKey(key).ok());
  ASSERT_TRUE((*store)->SetOwner(id, key.id).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  r.state = ModelState::kReady;
  ASSERT_TRUE(
      (*store)->CommitProbe(r, "p", MakeTensor(1, 2, {1, 2}), Tensor(), "s", {1.0f, 2.0f}).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kReady, id));
  ASSERT_TRUE((*store)->PutVector(id, "s", {3.0f, 4.0f}).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kVectorChanged, id));
  EXPECT_THAT(*(*store)->GetVector(id, "s"), ElementsAre(3.0f, 4.0f));
  EXPECT_EQ((*store)->GetVector(id, "other").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE((*store)->Delete(id).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kDeleted, id));
  // A probe, a state or a spec of a deleted model rolls back: nothing is announced.
  EXPECT_EQ((*store)->CommitProbe(r, "p", MakeTensor(1, 2, {1, 2}), Tensor(), "s", {1.0f}).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->UpdateState(r).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->UpdateSpec(r).code(), absl::StatusCode::kNotFound);
  auto quiet = feed->Wait(absl::Milliseconds(500));
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  for (const ModelChangeEvent& e : *quiet) EXPECT_NE(e.model_id, id);

  // The server drops the feed's connection: UNAVAILABLE (changes may be lost: catch up), then
  // the next Wait listens again.
  ASSERT_EQ(schema.Exec("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                        "application_name = '" + app + "' AND query LIKE 'LISTEN%'"),
            "1");
  absl::Status lost;
  for (int i = 0; i < 50 && lost.ok(); ++i) lost = feed->Wait(absl::Milliseconds(200)).status();
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  auto again = feed->Wait(absl::Milliseconds(10));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*store)->Insert(Record(id, "alpha", "1", 1)).ok());
  ASSERT_TRUE((*store)->PutVector(id, "s", {5.0f}).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kVectorChanged, id));
}

}  // namespace
}  // namespace modeldock::dock
