// Dock::Tune on the demo models and the tops query (DockTest fixture): ranking order, winner,
// outcome records of source `tune`, reproducibility for a seed.
#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "dock/query_rows.h"
#include "dock/testing/dock_test_base.h"
#include "dock/tuner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace modeldock::dock::test {
namespace {

using ::testing::ElementsAre;

TEST(StratifiedSplitTest, HoldsBackAFifthOfEachClassSeeded) {
  std::vector<int32_t> labels;
  for (int i = 0; i < 23; ++i) labels.push_back(i < 10 ? 0 : (i < 20 ? 1 : 2));
  auto split = StratifiedSplit(labels, 0.2, 5);
  ASSERT_TRUE(split.ok()) << split.status();
  std::map<int32_t, int> held;
  for (int64_t i : split->validation) ++held[labels[i]];
  EXPECT_THAT(held, ElementsAre(std::pair<const int32_t, int>{0, 2}, std::pair<const int32_t, int>{1, 2},
                                std::pair<const int32_t, int>{2, 1}));  // 10, 10, 3 samples
  EXPECT_EQ(split->train.size() + split->validation.size(), labels.size());
  auto again = StratifiedSplit(labels, 0.2, 5);
  EXPECT_EQ(again->validation, split->validation);
  auto other = StratifiedSplit(labels, 0.2, 6);
  EXPECT_NE(other->validation, split->validation);
  labels.push_back(3);  // a class of one sample cannot be split
  EXPECT_EQ(StratifiedSplit(labels, 0.2, 5).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StratifiedSampleTest, KeepsEachClassesShareAndAtLeastTwo) {
  // 60 / 30 / 6 / 1 samples of classes 0-3, interleaved.
  std::vector<int32_t> labels;
  for (int i = 0; i < 60; ++i) labels.push_back(0);
  for (int i = 0; i < 30; ++i) labels.push_back(1);
  for (int i = 0; i < 6; ++i) labels.push_back(2);
  labels.push_back(3);
  std::mt19937 shuffle(11);
  std::shuffle(labels.begin(), labels.end(), shuffle);
  const std::vector<int64_t> rows = StratifiedSample(labels, 24, 7);
  std::map<int32_t, int> kept;
  for (int64_t r : rows) ++kept[labels[r]];
  // Shares of 24: 60 -> 15, 30 -> 7 (7.4), 6 -> 1.5 -> 2, 1 -> 0 -> its only sample.
  EXPECT_THAT(kept, ElementsAre(std::pair<const int32_t, int>{0, 15}, std::pair<const int32_t, int>{1, 7},
                                std::pair<const int32_t, int>{2, 2}, std::pair<const int32_t, int>{3, 1}));
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end()));
  EXPECT_EQ(StratifiedSample(labels, 24, 7), rows);  // seeded
  EXPECT_NE(StratifiedSample(labels, 24, 8), rows);
  EXPECT_EQ(StratifiedSample(labels, 97, 7).size(), 97u);  // every row
}

TEST(StratifiedSampleTest, TakeDatasetRowsKeepsSamplesTextsAndLabelsTogether) {
  Dataset data;
  data.samples.shape = {4, 2};
  data.samples.values = {0, 1, 10, 11, 20, 21, 30, 31};
  data.texts = {"a", "b", "c", "d"};
  data.labels = {0, 1, 0, 1};
  data.class_names = {"x", "y"};
  const Dataset sub = TakeDatasetRows(data, {1, 3});
  EXPECT_EQ(sub.samples.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(sub.samples.values, (std::vector<float>{10, 11, 30, 31}));
  EXPECT_EQ(sub.texts, (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(sub.labels, (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(sub.class_names, data.class_names);
}

TEST_F(DockTest, TuneTheTopTwoOfTheTopsQuery) {
  for (const char* name : {"fmnist-tops-cnn", "fmnist-all-mlp", "glyph-digits-cnn"}) {
    Register(name);
  }
  TuneQuery query;
  query.dataset = TopsQuery().dataset;
  query.top_k = 2;
  query.max_epochs = 2;
  query.budget = absl::Seconds(600);
  query.seed = 3;
  std::vector<TuneProgressEvent> progress;
  auto tuned = dock_->Tune(query, [&](const TuneProgressEvent& e) { progress.push_back(e); });
  ASSERT_TRUE(tuned.ok()) << tuned.status();

  RecommendQuery recommend = TopsQuery();
  recommend.top_k = 2;
  auto ranking = dock_->Recommend(recommend);
  ASSERT_TRUE(ranking.ok()) << ranking.status();
  ASSERT_EQ(tuned->candidates.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const TuneCandidate& c = tuned->candidates[i];
    EXPECT_EQ(c.predicted_rank, i + 1);
    EXPECT_EQ(c.model.id, ranking->results[i].model.id);
    ASSERT_TRUE(c.ok) << c.failure;
    EXPECT_EQ(c.epochs.size(), 3u);  // epoch 0 and 2 trained
    EXPECT_EQ(c.best_accuracy, c.epochs[c.best_epoch].val_accuracy);
  }
  EXPECT_EQ(progress.size(), 6u);
  EXPECT_EQ(progress.front().candidate, 0);
  EXPECT_EQ(progress.back().candidate, 1);
  EXPECT_EQ(progress.back().row.epoch, 2);
  const int winner = tuned->candidates[1].best_accuracy > tuned->candidates[0].best_accuracy;
  EXPECT_EQ(tuned->winner, winner);
  EXPECT_EQ(tuned->winner_license, tuned->candidates[winner].model.spec.license);
  EXPECT_FALSE(tuned->tuned_model.empty());
  EXPECT_EQ(tuned->train_samples + tuned->val_samples, 200);
  EXPECT_EQ(tuned->val_samples, 40);  // 10 of each of the 4 classes of 50

  auto records = dock_->ListRecords("", 0);
  ASSERT_TRUE(records.ok()) << records.status();
  std::map<std::string, double> tune_records;
  std::map<std::string, nlohmann::json> details;
  for (const OutcomeRecord& r : records->records) {
    if (r.source != "tune") continue;
    tune_records[r.model_id] = r.accuracy;
    details[r.model_id] = nlohmann::json::parse(r.detail)["tune"];
  }
  ASSERT_EQ(tune_records.size(), 2u);
  for (const TuneCandidate& c : tuned->candidates) {
    EXPECT_EQ(tune_records[c.model.id], c.best_accuracy) << c.model.spec.name;
    // Each record carries the split and the schedule it was measured with.
    const nlohmann::json& d = details[c.model.id];
    EXPECT_EQ(d["split"]["seed"], 3);
    EXPECT_EQ(d["split"]["train_samples"], 160);
    EXPECT_EQ(d["split"]["val_samples"], 40);
    EXPECT_EQ(d["split"]["validation_fraction"], 0.2);
    EXPECT_EQ(d["schedule"]["max_epochs"], 2);
    EXPECT_EQ(d["schedule"]["epochs_run"], 2);
    EXPECT_EQ(d["schedule"]["best_epoch"], c.best_epoch);
    EXPECT_EQ(d["schedule"]["stop_reason"], c.stop_reason);
    EXPECT_EQ(d["schedule"]["budget_seconds"], 300.0);  // 600 s shared by 2
    EXPECT_EQ(d["predicted_rank"], c.predicted_rank);
  }

  // The same seed gives the same tune; its records replace the first ones.
  auto again = dock_->Tune(query, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->candidates.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(again->candidates[i].epochs.size(), tuned->candidates[i].epochs.size());
    for (size_t e = 0; e < again->candidates[i].epochs.size(); ++e) {
      EXPECT_EQ(again->candidates[i].epochs[e].val_accuracy,
                tuned->candidates[i].epochs[e].val_accuracy);
      EXPECT_EQ(again->candidates[i].epochs[e].train_loss,
                tuned->candidates[i].epochs[e].train_loss);
    }
  }
  EXPECT_EQ(again->winner, tuned->winner);
  EXPECT_EQ(again->query_id, tuned->query_id);
  auto after = dock_->ListRecords("", 0);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->records.size(), records->records.size());
}

TEST_F(DockTest, TuneRefusesUnlabelledDataAndReportsFailedCandidates) {
  Register("fmnist-tops-cnn");
  TuneQuery query;
  query.dataset = TopsQuery().dataset;
  query.dataset.labels.clear();
  EXPECT_EQ(dock_->Tune(query, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  query.dataset = TopsQuery().dataset;
  query.top_k = 1;
  query.learning_rate = 1e30;  // Adam steps of 1e30: the candidate fails, it is not retried
  query.max_epochs = 1;
  auto tuned = dock_->Tune(query, nullptr);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  ASSERT_EQ(tuned->candidates.size(), 1u);
  EXPECT_FALSE(tuned->candidates[0].ok);
  EXPECT_THAT(tuned->candidates[0].failure, ::testing::HasSubstr("FAILED_PRECONDITION"));
  EXPECT_EQ(tuned->winner, -1);
  EXPECT_EQ(tuned->recorded_outcomes, 0);
}

}  // namespace
}  // namespace modeldock::dock::test
