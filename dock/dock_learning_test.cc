// The dock learning from outcomes (issue 9): reports, weak records, trained versions.

#include "dock/testing/dock_test_base.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
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

// demo tops query: halves, the whole, and an inverted copy.
std::vector<Dataset> DerivedQueries(const Dataset& base) {
  std::vector<Dataset> out;
  const int64_t n = base.samples.Rows();
  const int64_t row = base.samples.RowSize();
  auto slice = [&](int64_t begin, int64_t end) {
    Dataset d;
    d.samples.shape = base.samples.shape;
    d.samples.shape[0] = end - begin;
    d.samples.values.assign(base.samples.values.begin() + begin * row,
                            base.samples.values.begin() + end * row);
    d.labels.assign(base.labels.begin() + begin, base.labels.begin() + end);
    return d;
  };
  out.push_back(slice(0, n / 2));
  out.push_back(slice(n / 2, n));
  out.push_back(base);
  Dataset inverted = base;
  for (float& v : inverted.samples.values) v = 1.0f - v;
  out.push_back(inverted);
  return out;
}

class LearningTest : public DockTest {
 protected:
  void RegisterAll() {
    for (const char* name : {"fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-shuffled-cnn",
                             "fmnist-all-mlp", "glyph-digits-cnn"}) {
      Register(name);
    }
  }
  // Outcomes that make the tops model best everywhere, with a little variation per query.
  OutcomeReport ReportFor(const Dataset& dataset, int variant) {
    OutcomeReport report;
    report.dataset = dataset;
    report.source = OutcomeSource::kImport;
    const double shift = 0.01 * variant;
    report.outcomes = {{"fmnist-tops-cnn", 0.92 - shift}, {"fmnist-all-mlp", 0.85 + shift},
                       {"fmnist-footwear-cnn", 0.61}, {"glyph-digits-cnn", 0.55 - shift},
                       {"fmnist-shuffled-cnn", 0.31 + shift}};
    return report;
  }
  void ReportAll() {
    std::vector<Dataset> queries = DerivedQueries(TopsQuery().dataset);
    for (size_t i = 0; i < queries.size(); ++i) {
      auto stored = dock_->ReportOutcome(ReportFor(queries[i], static_cast<int>(i)));
      ASSERT_TRUE(stored.ok()) << stored.status();
    }
  }
  // Trains and waits; returns the new version.
  int64_t TrainAndWait() {
    auto job = dock_->TrainAlignment(/*wait=*/true, nullptr);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return -1;
    EXPECT_EQ(job->state, TrainingStatus::State::kDone) << job->message;
    return job->result.version;
  }
};

TEST_F(LearningTest, ReportStoresOutcomesAndBadReportsStoreNothing) {
  RegisterAll();
  const Dataset query = TopsQuery().dataset;
  auto expect_refused = [&](OutcomeReport report, absl::StatusCode code, const std::string& words) {
    auto result = dock_->ReportOutcome(report);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), code) << result.status();
    EXPECT_THAT(std::string(result.status().message()), ::testing::HasSubstr(words));
    auto records = dock_->ListRecords("", 0);
    ASSERT_TRUE(records.ok());
    EXPECT_EQ(records->total_records, 0) << "a refused report stored something";
  };
  OutcomeReport report = ReportFor(query, 0);
  report.outcomes.back() = {"no-such-model", 0.5};  // the others are fine: still nothing stored
  expect_refused(report, absl::StatusCode::kNotFound, "no-such-model");
  report = ReportFor(query, 0);
  report.outcomes[1].accuracy = 93;
  expect_refused(report, absl::StatusCode::kInvalidArgument, "[0, 1]");
  report.outcomes[1].accuracy = std::nan("");
  expect_refused(report, absl::StatusCode::kInvalidArgument, "[0, 1]");
  report = ReportFor(query, 0);
  report.dataset.labels.pop_back();
  expect_refused(report, absl::StatusCode::kInvalidArgument, "labels for");
  report = ReportFor(query, 0);
  report.outcomes.push_back(report.outcomes[0]);
  expect_refused(report, absl::StatusCode::kInvalidArgument, "twice");
  report = ReportFor(query, 0);
  report.outcomes.clear();
  expect_refused(report, absl::StatusCode::kInvalidArgument, "at least one model");

  auto stored = dock_->ReportOutcome(ReportFor(query, 0));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->num_stored, 5);
  EXPECT_EQ(stored->num_stage1_scores, 5);  // every READY model's stage-1 view was kept
  EXPECT_EQ(stored->total_records, 5);
  EXPECT_EQ(stored->total_queries, 1);
  EXPECT_EQ(stored->query_id.size(), 64u);
  // The same dataset and model again replaces the outcome (one per query, model and source).
  OutcomeReport again;
  again.dataset = query;
  again.source = OutcomeSource::kImport;
  again.outcomes = {{"fmnist-tops-cnn", 0.5}};
  auto replaced = dock_->ReportOutcome(again);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(replaced->query_id, stored->query_id);
  EXPECT_EQ(replaced->total_records, 5);
  auto tops = dock_->ListRecords("fmnist-tops-cnn", 0);
  ASSERT_TRUE(tops.ok()) << tops.status();
  ASSERT_EQ(tops->records.size(), 1u);
  EXPECT_DOUBLE_EQ(tops->records[0].accuracy, 0.5);
  EXPECT_EQ(tops->records[0].source, "import");
  EXPECT_EQ(dock_->ListRecords("no-such-model", 0).status().code(), absl::StatusCode::kNotFound);
}

// With learn_from_recommendations, a labelled recommendation leaves the scored models' stage-2
// standings as weak records (rank percentiles); without it, or without labels, nothing.
TEST_F(LearningTest, RecommendationsLeaveWeakRecordsOnlyWhenAllowed) {
  RegisterAll();
  auto off = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->recorded_outcomes, 0);
  EXPECT_EQ(dock_->ListRecords("", 0)->total_records, 0);

  dock_.reset();
  learn_from_recommendations_ = true;
  OpenDock();
  auto on = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(on.ok()) << on.status();
  ASSERT_EQ(on->num_scored, 5);
  EXPECT_EQ(on->recorded_outcomes, 5);
  auto records = dock_->ListRecords("", 0);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->total_records, 5);
  EXPECT_EQ(records->total_queries, 1);
  // Oracle: the rank percentile of each model's stage-2 score among the five (ties share).
  std::map<std::string, double> stage2;
  for (const Recommendation& r : on->results) stage2[r.model.spec.name] = r.stage2_score;
  for (const OutcomeRecord& record : records->records) {
    EXPECT_EQ(record.source, "stage2");
    double below = 0;
    for (const auto& [name, score] : stage2) {
      if (name == record.model_name) continue;
      const double mine = stage2[record.model_name];
      below += score < mine ? 1.0 : score == mine ? 0.5 : 0.0;
    }
    EXPECT_DOUBLE_EQ(record.accuracy, below / 4.0) << record.model_name;
  }
  // Unlabelled (clustered) queries leave nothing; the same query again replaces its records.
  RecommendQuery unlabelled = TopsQuery();
  unlabelled.dataset.labels.clear();
  auto clustered = dock_->Recommend(unlabelled);
  ASSERT_TRUE(clustered.ok()) << clustered.status();
  EXPECT_EQ(clustered->recorded_outcomes, 0);
  ASSERT_TRUE(dock_->Recommend(TopsQuery()).ok());
  EXPECT_EQ(dock_->ListRecords("", 0)->total_records, 5);

  // Training takes them as one weak task beside the reported queries (the tops query is also
  // one of them: its accuracies and its standings stay separate tasks).
  ReportAll();
  const int64_t version = TrainAndWait();
  auto list = dock_->ListAlignments();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->versions.size(), 1u);
  EXPECT_EQ(list->versions[0].version, version);
  EXPECT_EQ(list->versions[0].num_queries, 4);
  EXPECT_EQ(list->versions[0].weak_queries, 1);
  EXPECT_GT(list->versions[0].weak_weight, 0.0);
}

// With report_standings, a report of several models leaves, in the background, their stage-2
// standings on the report's samples as weak records of the same query; training then chooses
// the prior's stage-2 weight on them instead of borrowing the stage-1 weight.
TEST_F(LearningTest, ReportsLeaveTheReportedModelsStandings) {
  dock_.reset();
  report_standings_ = true;
  OpenDock();
  RegisterAll();
  // Oracle: every compatible model scored (the report names all five), as in the background.
  RecommendQuery brute = TopsQuery();
  brute.brute_force = true;
  auto scored = dock_->Recommend(brute);
  ASSERT_TRUE(scored.ok()) << scored.status();
  ASSERT_EQ(scored->num_scored, 5);
  std::map<std::string, double> stage2;
  for (const Recommendation& r : scored->results) stage2[r.model.spec.name] = r.stage2_score;

  auto weak_records = [&](size_t want) {
    std::vector<OutcomeRecord> weak;
    for (int attempt = 0; attempt < 1200 && weak.size() < want; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto records = dock_->ListRecords("", 0);
      EXPECT_TRUE(records.ok()) << records.status();
      if (!records.ok()) break;
      weak.clear();
      for (const OutcomeRecord& r : records->records) {
        if (r.source == "stage2") weak.push_back(r);
      }
    }
    return weak;
  };
  auto stored = dock_->ReportOutcome(ReportFor(TopsQuery().dataset, 0));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->num_stored, 5);  // the answer counts the reported outcomes only
  const std::vector<OutcomeRecord> weak = weak_records(5);
  ASSERT_EQ(weak.size(), 5u);
  for (const OutcomeRecord& record : weak) {
    EXPECT_EQ(record.query_id, stored->query_id);
    double below = 0;
    const double mine = stage2.at(record.model_name);
    for (const auto& [name, score] : stage2) {
      if (name != record.model_name) below += score < mine ? 1.0 : score == mine ? 0.5 : 0.0;
    }
    EXPECT_DOUBLE_EQ(record.accuracy, below / 4.0) << record.model_name;
  }

  // A report of one model has no standings to leave; the next report's standings still come.
  OutcomeReport single;
  single.dataset = DerivedQueries(TopsQuery().dataset)[0];
  single.source = OutcomeSource::kImport;
  single.outcomes = {{"fmnist-tops-cnn", 0.9}};
  ASSERT_TRUE(dock_->ReportOutcome(single).ok());
  ReportAll();  // four queries, the first of them the one-model report's dataset
  // Four queries: the tops query again (its standings replaced) and three derived ones.
  ASSERT_EQ(weak_records(20).size(), 20u);
  TrainAndWait();
  auto list = dock_->ListAlignments();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->versions.size(), 1u);
  EXPECT_EQ(list->versions[0].weak_queries, 4);
  EXPECT_THAT(list->versions[0].reason, ::testing::Not(::testing::HasSubstr("= stage-1 weight")));
  EXPECT_THAT(list->versions[0].reason, ::testing::Not(::testing::HasSubstr("unchecked")));
}

TEST_F(LearningTest, TrainingNeedsOutcomesOnThreeQueries) {
  RegisterAll();
  ASSERT_TRUE(dock_->ReportOutcome(ReportFor(TopsQuery().dataset, 0)).ok());
  auto job = dock_->TrainAlignment(/*wait=*/true, nullptr);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, TrainingStatus::State::kFailed);
  EXPECT_THAT(job->message, ::testing::HasSubstr("at least 3 queries"));
  auto list = dock_->ListAlignments();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->versions.empty());
  EXPECT_EQ(list->serving_version, 0);
}

TEST_F(LearningTest, VersionsServeRollBackAndSurviveRestart) {
  RegisterAll();
  RecommendQuery query = TopsQuery();
  query.metric = Metric::kNone;
  auto untrained = dock_->Recommend(query);
  ASSERT_TRUE(untrained.ok()) << untrained.status();
  EXPECT_EQ(untrained->alignment_version, 0);
  ReportAll();
  const int64_t version = TrainAndWait();
  ASSERT_EQ(version, 1);
  // Serve it whether or not it was adopted: the switch itself is under test here.
  ASSERT_TRUE(dock_->UseAlignment(version).ok());
  auto trained = dock_->Recommend(query);
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(trained->alignment_version, version);
  for (const Recommendation& r : trained->results) {
    EXPECT_TRUE(r.has_prior);
    EXPECT_THAT(r.reason, ::testing::HasSubstr("outcome prior"));
  }
  EXPECT_EQ(dock_->UseAlignment(99).code(), absl::StatusCode::kNotFound);

  // Records, versions and the serving choice survive a restart.
  dock_.reset();
  OpenDock();
  auto list = dock_->ListAlignments();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->serving_version, version);
  ASSERT_EQ(list->versions.size(), 1u);
  EXPECT_TRUE(list->versions[0].serving);
  EXPECT_EQ(list->versions[0].num_queries, 4);
  auto records = dock_->ListRecords("", 0);
  ASSERT_TRUE(records.ok());
  EXPECT_EQ(records->total_records, 20);
  EXPECT_EQ(records->total_queries, 4);
  auto after_restart = dock_->Recommend(query);
  ASSERT_TRUE(after_restart.ok()) << after_restart.status();
  ASSERT_EQ(after_restart->results.size(), trained->results.size());
  for (size_t i = 0; i < trained->results.size(); ++i) {
    EXPECT_EQ(after_restart->results[i].model.id, trained->results[i].model.id);
    EXPECT_EQ(after_restart->results[i].score, trained->results[i].score);
  }
  // Rollback to the untrained ranker gives the untrained answer exactly.
  ASSERT_TRUE(dock_->UseAlignment(0).ok());
  auto rolled_back = dock_->Recommend(query);
  ASSERT_TRUE(rolled_back.ok());
  EXPECT_EQ(rolled_back->alignment_version, 0);
  ASSERT_EQ(rolled_back->results.size(), untrained->results.size());
  for (size_t i = 0; i < untrained->results.size(); ++i) {
    EXPECT_EQ(rolled_back->results[i].model.id, untrained->results[i].model.id);
    EXPECT_EQ(rolled_back->results[i].score, untrained->results[i].score);
    EXPECT_FALSE(rolled_back->results[i].has_prior);
  }
}

TEST_F(LearningTest, SwitchOverUnderConcurrentRecommendationsNeverMixesVersions) {
  RegisterAll();
  ReportAll();
  const int64_t version = TrainAndWait();
  ASSERT_EQ(version, 1);
  RecommendQuery query = TopsQuery();
  query.metric = Metric::kNone;  // stage 1 only: fast, and every score depends on the version
  // The reference answer of each version.
  std::map<int64_t, std::vector<std::pair<std::string, double>>> expected;
  for (int64_t v : {int64_t{0}, version}) {
    ASSERT_TRUE(dock_->UseAlignment(v).ok());
    auto result = dock_->Recommend(query);
    ASSERT_TRUE(result.ok()) << result.status();
    for (const Recommendation& r : result->results) expected[v].push_back({r.model.id, r.score});
  }
  ASSERT_NE(expected[0], expected[version]) << "the two versions must rank differently here";
  // Three clients recommend while the serving version flips back and forth underneath them.
  std::atomic<bool> done{false};
  std::atomic<int> errors{0}, mixed{0}, answers{0}, switches{0};
  std::thread switcher([&] {
    while (!done) {
      if (!dock_->UseAlignment(switches % 2 == 0 ? version : 0).ok()) ++errors;
      ++switches;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 8; ++i) {
        auto result = dock_->Recommend(query);
        if (!result.ok()) {
          ++errors;
          continue;
        }
        std::vector<std::pair<std::string, double>> got;
        for (const Recommendation& r : result->results) got.push_back({r.model.id, r.score});
        auto want = expected.find(result->alignment_version);
        if (want == expected.end() || want->second != got) ++mixed;
        ++answers;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  done = true;
  switcher.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(mixed.load(), 0) << "an answer mixed two versions or reported the wrong one";
  EXPECT_EQ(answers.load(), 24);
  EXPECT_GE(switches.load(), 2);  // both directions happened while the clients ran
}

// A version carrying a projection of the knowledge vectors serves them from its own index,
// rebuilt from the stored vectors (no model re-run) and kept in step with new registrations.
// An identity projection must reproduce the untrained similarities exactly.
TEST_F(LearningTest, ProjectedVectorsServeFromTheVersionsOwnIndex) {
  for (const char* name : {"fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-all-mlp",
                           "fmnist-shuffled-cnn"}) {
    Register(name);
  }
  std::vector<Dataset> queries = DerivedQueries(TopsQuery().dataset);
  for (size_t i = 0; i < queries.size(); ++i) {
    OutcomeReport report = ReportFor(queries[i], static_cast<int>(i));
    report.outcomes.erase(std::remove_if(report.outcomes.begin(), report.outcomes.end(),
                                         [](const ReportedOutcome& o) {
                                           return o.model == "glyph-digits-cnn";
                                         }),
                          report.outcomes.end());
    ASSERT_TRUE(dock_->ReportOutcome(report).ok());
  }
  ASSERT_EQ(TrainAndWait(), 1);
  RecommendQuery query = TopsQuery();
  query.metric = Metric::kNone;
  auto untrained = dock_->Recommend(query);
  ASSERT_TRUE(untrained.ok()) << untrained.status();
  // Version 2 = version 1 plus an identity projection in this dock's knowledge space.
  {
    auto store = OpenMetadataStore((data_dir_ / "modeldock.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    auto row = (*store)->Alignment(1);
    ASSERT_TRUE(row.ok()) << row.status();
    nlohmann::json payload = nlohmann::json::parse(row->payload);
    const int dim = 256;
    std::vector<float> identity(dim * dim, 0.0f);
    for (int i = 0; i < dim; ++i) identity[i * dim + i] = 1.0f;
    payload["projection"] = {{"space", dock_->Stats().knowledge_space}, {"dim", dim},
                             {"model_weights", identity}, {"query_weights", identity}};
    AlignmentRow with_projection = *row;
    with_projection.payload = payload.dump();
    ASSERT_EQ(*(*store)->InsertAlignment(with_projection), 2);
  }
  ASSERT_TRUE(dock_->UseAlignment(2).ok());
  auto similarity_of = [&](const RecommendResult& r) {
    std::map<std::string, double> out;
    for (const Recommendation& rec : r.results) out[rec.model.spec.name] = rec.similarity;
    return out;
  };
  auto projected = dock_->Recommend(query);
  ASSERT_TRUE(projected.ok()) << projected.status();
  EXPECT_EQ(projected->alignment_version, 2);
  auto before = similarity_of(*untrained), after = similarity_of(*projected);
  ASSERT_EQ(after.size(), 4u);
  for (const auto& [name, sim] : before) EXPECT_NEAR(after[name], sim, 1e-5) << name;
  // Registered while version 2 serves: it must be in the version's index too.
  Register("glyph-digits-cnn");
  auto with_new = dock_->Recommend(query);
  ASSERT_TRUE(with_new.ok());
  ASSERT_EQ(with_new->results.size(), 5u);
  ASSERT_TRUE(dock_->UseAlignment(0).ok());
  auto reference = dock_->Recommend(query);
  ASSERT_TRUE(reference.ok());
  EXPECT_NEAR(similarity_of(*with_new)["glyph-digits-cnn"],
              similarity_of(*reference)["glyph-digits-cnn"], 1e-5);
  EXPECT_NE(similarity_of(*reference)["glyph-digits-cnn"], 0.0);
  // Deleted while it serves: gone from its index as well.
  ASSERT_TRUE(dock_->UseAlignment(2).ok());
  ASSERT_TRUE(dock_->DeleteModel("glyph-digits-cnn").ok());
  auto after_delete = dock_->Recommend(query);
  ASSERT_TRUE(after_delete.ok());
  EXPECT_EQ(after_delete->results.size(), 4u);
  // A restart rebuilds the version's index from the stored vectors.
  dock_.reset();
  OpenDock();
  auto restarted = dock_->Recommend(query);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ(restarted->alignment_version, 2);
  for (const auto& [name, sim] : before) EXPECT_NEAR(similarity_of(*restarted)[name], sim, 1e-5);
}


}  // namespace
}  // namespace modeldock::dock
