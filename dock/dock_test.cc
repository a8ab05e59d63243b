// Engine-level tests of the dock on real parts: the demo TorchScript models and probe set built
// by scripts/make_assets.py (MODELDOCK_ASSET_DIR), a real SQLite file and FAISS index. The
// registry, the recommend pipeline and restarts here; learning, model kinds and hostile uploads
// in dock_learning_test.cc, dock_models_test.cc and dock_hostile_test.cc (one binary).

#include "dock/testing/dock_test_base.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include "dock/testing/probe_cache.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/datasets.h"
#include "common/sha256.h"
#include "dock/blob_store.h"
#include "dock/metadata_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sandbox/worker_pool.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using test::AssetDir;
using test::DockTest;
using test::ReadFile;
using test::SpecFromSidecar;
using test::WaitUntilSettled;

TEST_F(DockTest, UpdateEditsMetadataAndTheAuditLogSaysWhoDidWhat) {
  ModelRecord tops = Register("fmnist-tops-cnn");
  EXPECT_EQ(dock_->Stats().models_ready, 1);  // counted by state in the store
  EXPECT_EQ(dock_->Stats().models_failed + dock_->Stats().models_pending, 0);
  ModelUpdate update;
  update.has_description = true;
  update.description = "tops, retrained";
  update.has_tags = true;
  update.tags = {"fashion", "v2"};
  auto updated = dock_->UpdateModel("fmnist-tops-cnn", update, "key-a");
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->spec.description, "tops, retrained");
  EXPECT_EQ(updated->spec.tags, (std::vector<std::string>{"fashion", "v2"}));
  EXPECT_GT(updated->revision, tops.revision);
  EXPECT_EQ(updated->spec.license, tops.spec.license);  // unset fields stay
  ModelUpdate bad;
  bad.has_tags = true;
  bad.tags = {std::string(65, 'x')};
  EXPECT_EQ(dock_->UpdateModel("fmnist-tops-cnn", bad, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dock_->UpdateModel("fmnist-tops-cnn", ModelUpdate(), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dock_->UpdateModel("nope", update, "").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(dock_->DeleteModel("fmnist-tops-cnn", "key-b").ok());
  dock_.reset();
  OpenDock();
  auto log = dock_->AuditLog(10);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->size(), 3u);  // newest first; the refused updates left nothing
  EXPECT_EQ((*log)[0].action, "delete");
  EXPECT_EQ((*log)[0].actor, "key-b");
  EXPECT_EQ((*log)[1].action, "update");
  EXPECT_EQ((*log)[1].actor, "key-a");
  EXPECT_THAT((*log)[1].detail, ::testing::HasSubstr("description, tags=[fashion,v2]"));
  EXPECT_EQ((*log)[2].action, "register");
  EXPECT_EQ((*log)[2].target, tops.id);
}

// A database written by a schema-1 server (before feature extractors and layers) opens, is
// migrated step by step to the current schema in place, and its models read back as classifiers
// without layers.
TEST(MetadataStoreMigrationTest, SchemaOneDatabaseIsMigrated) {
  const fs::path dir = fs::temp_directory_path() / ("modeldock-migration-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "modeldock.db").string();
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const char* v1 = R"sql(
      CREATE TABLE models (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, version TEXT NOT NULL,
        description TEXT NOT NULL, task INTEGER NOT NULL, input_shape TEXT NOT NULL,
        class_labels TEXT NOT NULL, license TEXT NOT NULL, tags TEXT NOT NULL,
        state INTEGER NOT NULL, state_reason TEXT NOT NULL, sha256 TEXT NOT NULL,
        size_bytes INTEGER NOT NULL, has_embed INTEGER NOT NULL, feature_dim INTEGER NOT NULL,
        created_unix_ms INTEGER NOT NULL, probe_millis INTEGER NOT NULL,
        revision INTEGER NOT NULL);
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta VALUES('schema_version', '1');
      INSERT INTO models VALUES('m-1', 'old-model', '1.0', 'from schema 1', 0, '[1,28,28]',
        '["a","b"]', 'MIT', '[]', 2, 'probed', 'abc', 10, 1, 64, 1, 5, 3);
    )sql";
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, v1, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(db);
  }
  auto store = OpenMetadataStore(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto record = (*store)->Get("m-1");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->spec.name, "old-model");
  EXPECT_EQ(record->spec.kind, ModelKind::kClassifier);
  EXPECT_EQ(record->feature_dim, 64);
  EXPECT_TRUE(record->layers.empty());
  EXPECT_EQ(*(*store)->GetMeta("schema_version"), "7");
  // Schema 7: the outcomes table it never had was created current, so the step only counts.
  EXPECT_TRUE((*store)->Outcomes("", 0)->empty());
  // Schema 4: a name takes several versions, each once.
  ModelRecord v2 = *record;
  v2.id = "m-2";
  v2.spec.version = "2.0";
  EXPECT_TRUE((*store)->Insert(v2).ok());
  v2.id = "m-3";
  EXPECT_EQ((*store)->Insert(v2).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*store)->FindVersions("old-model")->size(), 2u);
  // The rebuilt table is still the one the other tables' foreign keys point at: deleting a
  // model deletes its vector.
  ASSERT_TRUE((*store)->PutVector("m-2", "space", {1.0f, 0.0f}).ok());
  ASSERT_EQ((*store)->Vectors("space")->size(), 1u);
  ASSERT_TRUE((*store)->Delete("m-2").ok());
  EXPECT_TRUE((*store)->Vectors("space")->empty());
  store->reset();
  // Opening again does not migrate twice.
  auto again = OpenMetadataStore(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->Get("m-1").ok());
  again->reset();
  fs::remove_all(dir);
}

// A damaged models row (here: unreadable JSON in input_shape) makes the dock refuse to open with
// DATA_LOSS naming the model, rather than throw; the row itself is left for the operator.
TEST_F(DockTest, DamagedModelRowFailsToOpenWithDataLoss) {
  const ModelRecord model = Register("fmnist-tops-cnn");
  ASSERT_EQ(model.state, ModelState::kReady);
  dock_.reset();
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((data_dir_ / "modeldock.db").c_str(), &db), SQLITE_OK);
    const std::string sql = "UPDATE models SET input_shape = 'not json' WHERE id = '" + model.id + "'";
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(db);
  }
  DockOptions options;
  options.data_dir = data_dir_.string();
  options.probe_cache_dir = dock::test::SharedProbeCacheDir();
  options.asset_dir = AssetDir();
  auto reopened = Dock::Create(options);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss) << reopened.status();
  EXPECT_THAT(std::string(reopened.status().message()), ::testing::HasSubstr(model.id));
}

TEST_F(DockTest, RegisterProbeAndRecommendRanksMatchingModelFirst) {
  for (const char* name : {"fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-shuffled-cnn"}) {
    Register(name);
  }
  RecommendQuery query = TopsQuery();
  query.brute_force = true;
  auto result = dock_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->results.size(), 3u);
  EXPECT_EQ(result->num_scored, 3);
  EXPECT_EQ(result->label_source, "given");
  auto by_name = ByName(*result);
  // The default fusion puts the model trained on the query's classes first.
  EXPECT_EQ(result->results[0].model.spec.name, "fmnist-tops-cnn");
  // Shrinkage H-score alone orders all three as expected: trained on the query's classes >
  // trained on unrelated classes > trained on shuffled labels. (In the fusion, LogME on the
  // shuffled model's near-random features is not the lowest of three; no ground truth exists for
  // these demo models, so only the unambiguous first place is asserted for it.)
  query.metric = Metric::kShrinkageHScore;
  auto shrinkage = dock_->Recommend(query);
  ASSERT_TRUE(shrinkage.ok()) << shrinkage.status();
  auto by_name_shrinkage = ByName(*shrinkage);
  EXPECT_GT(by_name_shrinkage["fmnist-tops-cnn"]->score, by_name_shrinkage["fmnist-footwear-cnn"]->score);
  EXPECT_GT(by_name_shrinkage["fmnist-footwear-cnn"]->score,
            by_name_shrinkage["fmnist-shuffled-cnn"]->score);
  // Stage 1 (untrained knowledge vectors) already prefers the model that knows these classes.
  EXPECT_GT(by_name["fmnist-tops-cnn"]->similarity, by_name["fmnist-shuffled-cnn"]->similarity);
  for (const auto& r : result->results) {
    EXPECT_TRUE(r.scored);
    EXPECT_FALSE(r.reason.empty());
    EXPECT_DOUBLE_EQ(r.score, r.stage2_score);
  }
}

TEST_F(DockTest, SecondRecommendServesOutputsFromCache) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  RecommendQuery query = TopsQuery();
  auto first = dock_->Recommend(query);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->num_cached, 0);
  query.metric = Metric::kLogMe;  // another metric on the same outputs
  auto second = dock_->Recommend(query);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->num_cached, second->num_scored);
  EXPECT_EQ(second->num_scored, 2);
}

TEST_F(DockTest, TwoStageRestrictsStageTwoToCandidates) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  Register("fmnist-shuffled-cnn");
  RecommendQuery query = TopsQuery();
  query.num_candidates = 1;
  query.top_k = 3;
  auto result = dock_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->num_scored, 1);
  ASSERT_EQ(result->results.size(), 3u);
  EXPECT_TRUE(result->results[0].scored);
  EXPECT_EQ(result->results[0].stage1_rank, 1);
  EXPECT_EQ(result->mode, RecommendMode::kTwoStage);
  EXPECT_FALSE(result->results[1].scored);
  EXPECT_FALSE(result->results[2].scored);
  // The rest follow in stage-1 (probe-proxy) order.
  EXPECT_LT(result->results[1].stage1_rank, result->results[2].stage1_rank);
  EXPECT_GE(result->results[1].stage1_score, result->results[2].stage1_score);
}

TEST_F(DockTest, LatencyBudgetDecidesTheMode) {
  // Stage 2's plan below must not depend on how long encoding and stage 1 took.
  budget_covers_whole_call_ = false;
  dock_.reset();
  OpenDock();
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  Register("fmnist-shuffled-cnn");
  RecommendQuery query = TopsQuery();
  query.top_k = 3;
  // A generous budget scores every compatible model.
  query.latency_budget_millis = 60000;
  auto all = dock_->Recommend(query);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->mode, RecommendMode::kScoredAll);
  EXPECT_EQ(all->num_scored, 3);
  EXPECT_NE(all->mode_reason.find("fits the 60000 ms budget"), std::string::npos) << all->mode_reason;
  // The default fusion's score is the members' weighted mean rank (LogME 1, shrinkage H-score
  // 0.5) over the scored models, each divided by their number; the reason gives each member's
  // rank (1 = best, so the fused rank of a member at rank r of n is (n + 1 - r) / n).
  EXPECT_DOUBLE_EQ(all->results[0].score, all->results[0].stage2_score);
  EXPECT_LE(all->results[0].score, 1.0);
  for (const auto& r : all->results) {
    int logme_rank = 0, shrinkage_rank = 0, n1 = 0, n2 = 0;
    const size_t at = r.reason.find("logme ");
    ASSERT_NE(at, std::string::npos) << r.reason;
    ASSERT_EQ(std::sscanf(r.reason.c_str() + at,
                          "logme %*s (rank %d of %d), shrinkage_hscore %*s (rank %d of %d)",
                          &logme_rank, &n1, &shrinkage_rank, &n2),
              4)
        << r.reason;
    const double want =
        (1.0 * (n1 + 1 - logme_rank) / n1 + 0.5 * (n2 + 1 - shrinkage_rank) / n2) / 1.5;
    EXPECT_NEAR(r.stage2_score, want, 1e-12) << r.reason;
  }
  EXPECT_NE(all->results[0].reason.find("logme"), std::string::npos) << all->results[0].reason;
  EXPECT_NE(all->results[0].reason.find("shrinkage_hscore"), std::string::npos);
  EXPECT_EQ(all->num_samples_scored, 200);
  // Rows before models: the three models' outputs on the query are cached now, so each costs
  // only its metrics, estimated at 2 + 0.02 ms per sample: 18 ms for all 200 samples, 12 ms for
  // half. A 15 ms budget scores all three on a class-stratified half (25 of each class).
  query.latency_budget_millis = 15;
  auto half = dock_->Recommend(query);
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_EQ(half->mode, RecommendMode::kScoredAll);
  EXPECT_EQ(half->num_scored, 3);
  EXPECT_EQ(half->num_samples_scored, 100);
  EXPECT_THAT(half->mode_reason, ::testing::HasSubstr("a class-stratified 100 of the samples"));
  // Their outputs on the half are the rows of their cached outputs on the whole query: no model
  // ran again.
  EXPECT_EQ(half->num_cached, 3);
  // A budget nothing fits scores on the floor of max(64, 10 per class) samples and still scores
  // a dock this small in full, and says why.
  query.latency_budget_millis = 0.001;
  auto small = dock_->Recommend(query);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->mode, RecommendMode::kScoredAll);
  EXPECT_EQ(small->num_scored, 3);
  EXPECT_EQ(small->num_samples_scored, 64);
  EXPECT_THAT(small->mode_reason, ::testing::HasSubstr("a dock this small is always scored in full"));
  EXPECT_EQ(small->num_cached, 3);
  // By default the budget covers the whole call: stage 2 plans within what encoding the query
  // and stage 1 left of it, and the reason says so.
  budget_covers_whole_call_ = true;
  dock_.reset();
  OpenDock();
  query.latency_budget_millis = 60000;
  auto whole = dock_->Recommend(query);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->mode, RecommendMode::kScoredAll);
  EXPECT_THAT(whole->mode_reason,
              ::testing::MatchesRegex(".*fits the [0-9]+ ms left of the 60000 ms budget after "
                                      "encoding and stage 1 .*"));
  // A cancelled call stops with CANCELLED before scoring.
  query.is_cancelled = [] { return true; };
  EXPECT_TRUE(absl::IsCancelled(dock_->Recommend(query).status()));
}

TEST_F(DockTest, StageOneProxyPrefersTheModelOfTheQueryClasses) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  Register("fmnist-shuffled-cnn");
  RecommendQuery query = TopsQuery();
  query.metric = Metric::kNone;
  auto result = dock_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->mode, RecommendMode::kStage1Only);
  ASSERT_EQ(result->results.size(), 3u);
  // No model ran: every model got a proxy score from its stored probe features.
  for (const auto& r : result->results) EXPECT_TRUE(r.has_stage1_score) << r.model.spec.name;
  EXPECT_EQ(result->results[0].model.spec.name, "fmnist-tops-cnn");
  EXPECT_EQ(result->results[2].model.spec.name, "fmnist-shuffled-cnn");
}

TEST_F(DockTest, UnlabelledQueryIsClustered) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  RecommendQuery query = TopsQuery();
  query.dataset.labels.clear();
  auto result = dock_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->label_source.rfind("clustered", 0), 0u) << result->label_source;
  EXPECT_EQ(result->num_scored, 2);
}

TEST_F(DockTest, RestartRebuildsMissingIndexAndKeepsModels) {
  ModelRecord tops = Register("fmnist-tops-cnn");
  Register("fmnist-shuffled-cnn");
  RecommendQuery query = TopsQuery();
  query.metric = Metric::kNone;
  auto before = dock_->Recommend(query);
  ASSERT_TRUE(before.ok()) << before.status();

  dock_.reset();
  fs::remove(data_dir_ / "index" / "knowledge.index");
  OpenDock();
  auto record = dock_->GetModel("fmnist-tops-cnn");
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->id, tops.id);
  EXPECT_EQ(record->state, ModelState::kReady);
  auto after = dock_->Recommend(query);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->results.size(), before->results.size());
  for (size_t i = 0; i < after->results.size(); ++i) {
    EXPECT_EQ(after->results[i].model.id, before->results[i].model.id);
    EXPECT_FLOAT_EQ(after->results[i].similarity, before->results[i].similarity);
  }
}

TEST_F(DockTest, RegistrationsAppendToTheIndexLogAndARestartReplaysIt) {
  const std::string snapshot = (data_dir_ / "index" / "knowledge.index").string();
  const std::string log = snapshot + ".log";
  ASSERT_TRUE(fs::exists(snapshot));
  const std::string empty_snapshot = ReadFile(snapshot);
  Register("fmnist-tops-cnn");
  Register("fmnist-shuffled-cnn");
  ASSERT_TRUE(dock_->DeleteModel("fmnist-shuffled-cnn").ok());
  Register("fmnist-footwear-cnn");
  // Four changes appended to the log; the snapshot is not rewritten by any of them.
  EXPECT_EQ(ReadFile(snapshot), empty_snapshot);
  ASSERT_TRUE(fs::exists(log));
  const auto log_size = fs::file_size(log);
  RecommendQuery query = TopsQuery();
  query.metric = Metric::kNone;
  auto before = dock_->Recommend(query);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->results.size(), 2u);

  dock_.reset();
  OpenDock();
  // Snapshot + replayed log equal the stored vectors, so nothing was rebuilt or rewritten (a
  // rebuild saves a new snapshot and removes the log).
  EXPECT_EQ(ReadFile(snapshot), empty_snapshot);
  EXPECT_EQ(fs::file_size(log), log_size);
  auto after = dock_->Recommend(query);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->results.size(), before->results.size());
  for (size_t i = 0; i < after->results.size(); ++i) {
    EXPECT_EQ(after->results[i].model.id, before->results[i].model.id);
    EXPECT_FLOAT_EQ(after->results[i].similarity, before->results[i].similarity);
  }

  // A torn last record (a crash mid-append): the store decides, the index is rebuilt from it
  // (a new snapshot, no log) and answers the same.
  dock_.reset();
  fs::resize_file(log, log_size - 7);
  OpenDock();
  EXPECT_NE(ReadFile(snapshot), empty_snapshot);
  EXPECT_FALSE(fs::exists(log));
  auto rebuilt = dock_->Recommend(query);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  ASSERT_EQ(rebuilt->results.size(), before->results.size());
  for (size_t i = 0; i < rebuilt->results.size(); ++i) {
    EXPECT_EQ(rebuilt->results[i].model.id, before->results[i].model.id);
    EXPECT_FLOAT_EQ(rebuilt->results[i].similarity, before->results[i].similarity);
  }
}

TEST_F(DockTest, DeleteRemovesModelFromIndexAndStore) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  auto deleted = dock_->DeleteModel("fmnist-tops-cnn");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(absl::IsNotFound(dock_->GetModel("fmnist-tops-cnn").status()));
  auto result = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->results.size(), 1u);
  EXPECT_EQ(result->results[0].model.spec.name, "fmnist-footwear-cnn");
  EXPECT_TRUE(absl::IsNotFound(dock_->DeleteModel("fmnist-tops-cnn").status()));
}

TEST_F(DockTest, RejectsBadQueries) {
  Register("fmnist-tops-cnn");
  RecommendQuery query = TopsQuery();
  query.dataset.labels.pop_back();
  EXPECT_TRUE(absl::IsInvalidArgument(dock_->Recommend(query).status()));
  query = TopsQuery();
  std::fill(query.dataset.labels.begin(), query.dataset.labels.end(), 0);
  auto one_class = dock_->Recommend(query);
  EXPECT_TRUE(absl::IsInvalidArgument(one_class.status()));
  EXPECT_NE(one_class.status().message().find("2 classes"), std::string::npos);
  query = TopsQuery();
  query.dataset.samples.values[5] = std::nanf("");
  EXPECT_TRUE(absl::IsInvalidArgument(dock_->Recommend(query).status()));
}


// ---------------------------------------------------------------------------------------------
// Hostile uploads (issue 8): crafted models (sandbox/crafted_models.py) run only in workers.


TEST(BlobStoreTest, SharedDirectoryRemovalsSpareRecentFiles) {
  std::string pattern = (fs::temp_directory_path() / "modeldock-blobs-XXXXXX").string();
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  const fs::path root = pattern;
  auto blobs = BlobStore::Create(root.string());
  ASSERT_TRUE(blobs.ok()) << blobs.status();
  auto write_temp = [&](const std::string& text) {
    const std::string path = (*blobs)->NewTempPath();
    std::ofstream(path) << text;
    return path;
  };
  const std::string sha = Sha256::Of("model bytes");
  const auto an_hour_ago = fs::file_time_type::clock::now() - std::chrono::hours(1);

  bool existed = true;
  ASSERT_TRUE((*blobs)->Adopt(write_temp("model bytes"), sha, &existed).ok());
  EXPECT_FALSE(existed);
  fs::last_write_time((*blobs)->PathOf(sha), an_hour_ago);
  // Adopted again (another replica registering the same bytes): the time is refreshed ...
  ASSERT_TRUE((*blobs)->Adopt(write_temp("model bytes"), sha, &existed).ok());
  EXPECT_TRUE(existed);
  EXPECT_GT(fs::last_write_time((*blobs)->PathOf(sha)), an_hour_ago + std::chrono::minutes(30));
  // ... so a removal with a grace period keeps it, and one without removes it.
  bool removed = true;
  ASSERT_TRUE((*blobs)->Remove(sha, absl::Minutes(10), &removed).ok());
  EXPECT_FALSE(removed);
  EXPECT_TRUE((*blobs)->Has(sha));
  fs::last_write_time((*blobs)->PathOf(sha), an_hour_ago);
  ASSERT_TRUE((*blobs)->Remove(sha, absl::Minutes(10), &removed).ok());
  EXPECT_TRUE(removed);
  EXPECT_FALSE((*blobs)->Has(sha));
  // Adopting onto a vanished blob moves the new copy in.
  ASSERT_TRUE((*blobs)->Adopt(write_temp("model bytes"), sha, &existed).ok());
  EXPECT_FALSE(existed);
  EXPECT_TRUE((*blobs)->Has(sha));

  // Temp files: an old leftover goes, an upload in progress stays.
  const std::string stale = write_temp("interrupted");
  const std::string fresh = write_temp("in progress");
  fs::last_write_time(stale, an_hour_ago);
  (*blobs)->ClearTemp(absl::Minutes(10));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(fresh));
  (*blobs)->ClearTemp();
  EXPECT_FALSE(fs::exists(fresh));
  fs::remove_all(root);
}


}  // namespace
}  // namespace modeldock::dock
