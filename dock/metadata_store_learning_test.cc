// The metadata store suite on both backends (dock/testing/metadata_store_fixture.h), part 2:
// outcome records, ranker versions, the audit log and settings. Part of metadata_store_test.
#include <cstdint>
#include <string>
#include <vector>

#include "dock/testing/metadata_store_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock::dock {
namespace {

using test::Bits;
using test::FloatsFromBits;
using test::kOddBits;
using test::MakeTensor;
using test::MetadataStoreTest;
using test::Record;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

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
// A schema-6 database (outcomes without `detail`) gets the column when it is opened: its records
// read back with no detail, and a new record keeps its own (SQLite's and PostgreSQL's step 6 -> 7).
TEST_P(MetadataStoreTest, SchemaSixOutcomesGetADetailColumn) {
  OutcomeQueryRow query;
  query.query_id = "q";
  query.num_samples = 4;
  query.num_classes = 2;
  query.prototypes = MakeTensor(2, 1, {0.5f, -0.5f});
  query.created_unix_ms = 100;
  const OutcomeRow old_row{0, "", "m-1", "old", 0.75, "finetune", 1.0, "", 100, ""};
  ASSERT_TRUE(store_->AddOutcomes(query, {old_row}).ok());
  store_.reset();
  ASSERT_EQ(ExecSql("ALTER TABLE outcomes DROP COLUMN detail"), "");
  ASSERT_EQ(ExecSql("UPDATE meta SET value = '6' WHERE key = 'schema_version'"), "");
  Reopen();
  EXPECT_EQ(*store_->GetMeta("schema_version"), std::to_string(kMetadataSchemaVersion));
  const OutcomeRow tuned{0, "", "m-2", "new", 0.5, "tune", 1.0,
                         "", 200, R"({"tune":{"split":{"seed":3}}})"};
  ASSERT_TRUE(store_->AddOutcomes(query, {tuned}).ok());
  auto rows = store_->Outcomes("", 0);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].model_id, "m-2");
  EXPECT_EQ((*rows)[0].detail, tuned.detail);
  EXPECT_EQ((*rows)[1].model_id, "m-1");
  EXPECT_EQ((*rows)[1].accuracy, 0.75);
  EXPECT_EQ((*rows)[1].detail, "");
}

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

}  // namespace
}  // namespace modeldock::dock
