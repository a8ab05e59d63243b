#include "encoder/outcome_ranker.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace modeldock::encoder {
namespace {

TEST(WeightedTauTest, MatchesScipy) {
  // Oracle: scipy.stats.weightedtau(x, y).correlation (scipy 1.10, Debian 12).
  EXPECT_NEAR(WeightedTau({0.1, 0.4, 0.35, 0.8, 0.2, 0.9}, {1, 3, 2, 6, 5, 4}),
              0.4040816326530612, 1e-12);
  EXPECT_NEAR(WeightedTau({1, 2, 2, 3, 1, 5, 4}, {2, 2, 1, 3, 3, 5, 5}), 0.7242598710710275,
              1e-12);
  EXPECT_NEAR(WeightedTau({1, 2, 3}, {3, 2, 1}), -1.0, 1e-12);
}

// Two recorded tasks: t1 looks exactly like the query to stage 1, t2 the opposite.
std::vector<RecordedTask> TwoTasks() {
  RecordedTask t1{"q1", {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}}, {{"a", 0.5}, {"b", 0.7}}, false, {}};
  RecordedTask t2{"q2", {{"a", 4}, {"b", 3}, {"c", 2}, {"d", 1}}, {{"a", 0.9}, {"b", 0.1}}, false, {}};
  return {t1, t2};
}

TEST(OutcomeRankerTest, PriorsByHand) {
  RankerParams params;
  params.weight = 0.5;
  params.shrinkage = 1;
  params.sharpness = 2;
  params.fact_weights = {0.2, 0, 0};
  std::map<std::string, std::vector<double>> facts = {{"a", {1, 0, 0}}, {"c", {1, 0, 0}}};
  OutcomeRanker ranker(params, TwoTasks(), facts);
  std::map<std::string, double> query = {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}};
  std::vector<OutcomeRanker::PriorSources> used;
  // sim(q, t1) = 1 -> w = 1; sim(q, t2) = -1 -> 0. z in t1: a = -1, b = +1.
  // a: (1 * -1 + 1 * 0.2) / (1 + 1); b: (1 * 1 + 0) / 2 (no facts); c: 0.2 / 1; d: 0 / 1.
  std::vector<double> priors = ranker.Priors({"a", "b", "c", "d"}, query, {}, &used);
  EXPECT_NEAR(priors[0], -0.4, 1e-12);
  EXPECT_NEAR(priors[1], 0.5, 1e-12);
  EXPECT_NEAR(priors[2], 0.2, 1e-12);
  EXPECT_NEAR(priors[3], 0.0, 1e-12);
  std::vector<int> reported;
  for (const auto& u : used) {
    reported.push_back(u.reported);
    EXPECT_EQ(u.weak, 0);
  }
  EXPECT_EQ(reported, (std::vector<int>{1, 1, 0, 0}));
  // Combine: standardised base [1,2,3,4] (population sd sqrt(1.25)) + 0.5 * prior.
  std::vector<double> combined = ranker.Combine({1, 2, 3, 4}, priors);
  const double sd = std::sqrt(1.25);
  EXPECT_NEAR(combined[0], -1.5 / sd - 0.2, 1e-12);
  EXPECT_NEAR(combined[1], -0.5 / sd + 0.25, 1e-12);
  EXPECT_NEAR(combined[3], 1.5 / sd, 1e-12);
}

// A weak task (stage-2 standings of a recommendation) informs priors with weight weak_weight,
// also of models no task reported on.
TEST(OutcomeRankerTest, WeakTasksByHand) {
  RankerParams params;
  params.weight = 1;
  params.shrinkage = 1;
  params.sharpness = 1;
  params.weak_weight = 0.5;
  std::vector<RecordedTask> tasks = TwoTasks();
  // Looks like the query (sim 1); standings of a, c, d: z = -sqrt(1.5), 0, +sqrt(1.5).
  RecordedTask weak{"q3", {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}}, {{"a", 0}, {"c", 0.5}, {"d", 1}}, false, {}};
  weak.weak = true;
  tasks.push_back(weak);
  OutcomeRanker ranker(params, tasks, {});
  EXPECT_EQ(ranker.num_weak_tasks(), 1);
  std::map<std::string, double> query = {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}};
  std::vector<OutcomeRanker::PriorSources> used;
  std::vector<double> priors = ranker.Priors({"a", "b", "c", "d"}, query, {}, &used);
  const double z = std::sqrt(1.5);
  // a: (1 * -1 + 0.5 * -z) / (1 + 0.5 + 1); b: (1 * 1) / (1 + 1); c: 0; d: 0.5 z / 1.5.
  EXPECT_NEAR(priors[0], (-1 - 0.5 * z) / 2.5, 1e-12);
  EXPECT_NEAR(priors[1], 0.5, 1e-12);
  EXPECT_NEAR(priors[2], 0.0, 1e-12);
  EXPECT_NEAR(priors[3], 0.5 * z / 1.5, 1e-12);
  EXPECT_EQ(used[0].reported, 1);
  EXPECT_EQ(used[0].weak, 1);
  EXPECT_EQ(used[1].weak, 0);
  EXPECT_EQ(used[3].reported, 0);
  EXPECT_EQ(used[3].weak, 1);
  // Exported and reloaded: the weak task and its weight survive.
  auto reloaded = OutcomeRanker::FromJson(ranker.ToJson());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->num_weak_tasks(), 1);
  EXPECT_EQ(reloaded->params().weak_weight, 0.5);
  EXPECT_EQ(reloaded->Priors({"a", "b", "c", "d"}, query, {}), priors);
}

// The calibrated shrinkage target: a line through the warm models' outcome means against their
// standardised stage-1 scores places the models without outcomes by their own scores.
TEST(OutcomeRankerTest, CalibratedTargetByHand) {
  RankerParams params;
  params.weight = 1;
  params.shrinkage = 1;
  params.sharpness = 1;
  params.fact_weights = {0.2, 0, 0};
  params.calibrated_target = true;
  OutcomeRanker ranker(params, TwoTasks(), {{"c", {1, 0, 0}}});
  std::map<std::string, double> query = {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}};
  // Stage-1 z: (-1.5, -0.5, 0.5, 1.5) / sqrt(1.25). Only t1 counts (sim 1); a and b have
  // outcome means -1 and +1, each with evidence 1 (weight 1 / (1 + 1)): the line through
  // (-1.5 / sd, -1) and (-0.5 / sd, +1) has slope 2 sd = sqrt(5) and intercept 2, so it reads
  // -1, 1, 3, 5 at a, b, c, d.
  // a: (-1 + 1 * -1) / 2; b: (1 + 1) / 2; c: 3 (its facts are not used); d: 5; e (no stage-1
  // score): 0.
  std::vector<double> priors = ranker.Priors({"a", "b", "c", "d", "e"}, query, {});
  EXPECT_NEAR(priors[0], -1.0, 1e-12);
  EXPECT_NEAR(priors[1], 1.0, 1e-12);
  EXPECT_NEAR(priors[2], 3.0, 1e-12);
  EXPECT_NEAR(priors[3], 5.0, 1e-12);
  EXPECT_NEAR(priors[4], 0.0, 1e-12);
  // Which ids are asked does not move the line.
  EXPECT_EQ(ranker.Priors({"d"}, query, {})[0], priors[3]);
  // Exported and reloaded: bit-identical; a payload without the target shrinks to the facts alone
  // (versions trained before the calibration rank as they did); an unknown target is refused.
  std::string json = ranker.ToJson();
  auto reloaded = OutcomeRanker::FromJson(json);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->Priors({"a", "b", "c", "d", "e"}, query, {}), priors);
  const std::string key = ",\"target\":\"stage1-calibration\"";
  ASSERT_NE(json.find(key), std::string::npos) << json;
  std::string old_json = json;
  old_json.erase(old_json.find(key), key.size());
  auto old_version = OutcomeRanker::FromJson(old_json);
  ASSERT_TRUE(old_version.ok()) << old_version.status();
  EXPECT_FALSE(old_version->params().calibrated_target);
  EXPECT_NEAR(old_version->Priors({"c", "d"}, query, {})[0], 0.2, 1e-12);
  EXPECT_NEAR(old_version->Priors({"c", "d"}, query, {})[1], 0.0, 1e-12);
  std::string unknown = json;
  unknown.replace(unknown.find("stage1-calibration"), 18, "something-else");
  auto refused = OutcomeRanker::FromJson(unknown);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
}

// Task similarity from the queries' mean prototypes: two recorded tasks that stage 1 cannot tell
// apart (identical scores) but that the reference encoder places apart (a shifted domain); the
// query's prior follows the one whose embedding it shares.
TEST(OutcomeRankerTest, EmbeddingsTellApartTasksStageOneConfuses) {
  // By hand: centre (1, 1, 0); a - centre = (1, -1, 0), b - centre = (1, 1, 0): cosine 0.
  EXPECT_NEAR(QuerySimilarity({}, {2, 0, 0}, {}, {2, 2, 0}, {1, 1, 0}), 0.0, 1e-12);
  // (3, 0, 0) vs (2, 0, 0) around (1, 1, 0): (2, -1, 0) . (1, -1, 0) / (sqrt 5 sqrt 2).
  EXPECT_NEAR(QuerySimilarity({}, {3, 0, 0}, {}, {2, 0, 0}, {1, 1, 0}), 3 / std::sqrt(10.0), 1e-12);
  EXPECT_EQ(QuerySimilarity({}, {0, 2, 0}, {}, {2, 0, 0}, {1, 1, 0}), 0.0);  // clamped
  // Without an embedding on either side, or of another size: stage-1 correlation.
  const std::map<std::string, double> s1 = {{"a", 1}, {"b", 2}, {"c", 3}};
  EXPECT_NEAR(QuerySimilarity(s1, {}, s1, {2, 0, 0}, {1, 1, 0}), 1.0, 1e-12);
  EXPECT_NEAR(QuerySimilarity(s1, {1, 2}, s1, {2, 0, 0}, {1, 1, 0}), 1.0, 1e-12);
  EXPECT_EQ(EmbeddingCentre({}), std::vector<double>{});

  const std::map<std::string, double> scores = {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}};
  RecordedTask plain{"q1", scores, {{"a", 0.9}, {"b", 0.1}}, false, {2, 0}};
  RecordedTask shifted{"q2", scores, {{"a", 0.1}, {"b", 0.9}}, false, {0, 2}};
  RankerParams params;
  params.weight = 1;
  params.shrinkage = 1e-9;  // the evidence alone
  params.sharpness = 1;
  OutcomeRanker ranker(params, {plain, shifted}, {});
  // Centre (1, 1): the plain task is at (1, -1), the shifted one at (-1, 1).
  std::vector<double> like_shifted = ranker.Priors({"a", "b"}, scores, {0.2, 1.8});
  EXPECT_NEAR(like_shifted[0], -1.0, 1e-6);  // a's z on the shifted task alone
  EXPECT_NEAR(like_shifted[1], 1.0, 1e-6);
  std::vector<double> like_plain = ranker.Priors({"a", "b"}, scores, {1.9, 0.1});
  EXPECT_NEAR(like_plain[0], 1.0, 1e-6);
  // Without the query's embedding both tasks count alike (stage 1 sees no difference).
  std::vector<double> unknown = ranker.Priors({"a", "b"}, scores, {});
  EXPECT_NEAR(unknown[0], 0.0, 1e-6);
  // The embeddings travel with the version; a payload without them compares stage-1 scores.
  std::string json = ranker.ToJson();
  auto reloaded = OutcomeRanker::FromJson(json);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(reloaded->Priors({"a", "b"}, scores, {0.2, 1.8}), like_shifted);
  for (const std::string key : {",\"embedding\":[2.0,0.0]", ",\"embedding\":[0.0,2.0]"}) {
    ASSERT_NE(json.find(key), std::string::npos) << json;
    json.erase(json.find(key), key.size());
  }
  auto old_version = OutcomeRanker::FromJson(json);
  ASSERT_TRUE(old_version.ok()) << old_version.status();
  EXPECT_NEAR(old_version->Priors({"a", "b"}, scores, {0.2, 1.8})[0], 0.0, 1e-6);
}

TEST(OutcomeRankerTest, ExportedAndReloadedRanksIdentically) {
  RankerParams params;
  params.weight = 0.37;
  params.shrinkage = 0.8;
  params.sharpness = 1.3;
  params.fact_weights = {0.1, -0.2, 0.05};
  OutcomeRanker ranker(params, TwoTasks(), {{"a", ModelFacts(64, 10)}, {"d", ModelFacts(512, 3)}});
  auto reloaded = OutcomeRanker::FromJson(ranker.ToJson());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  std::map<std::string, double> query = {{"a", 0.3}, {"b", 0.9}, {"c", 0.1}, {"d", 0.5}};
  std::vector<std::string> ids = {"a", "b", "c", "d", "unknown"};
  EXPECT_EQ(ranker.Priors(ids, query, {}), reloaded->Priors(ids, query, {}));  // bit-identical
  EXPECT_FALSE(OutcomeRanker::FromJson("{\"format\": \"x\"}").ok());
  EXPECT_FALSE(OutcomeRanker::FromJson("not json").ok());
}

// Synthetic dock where fine-tune success is partly a property of the model that stage 1 does
// not see: the trained ranker must find it and beat the base score on held-out tasks.
// `visible_quality`: how much of the hidden quality stage 1 sees too (0 = none); `shared_noise`:
// scale of a per-model stage-1 bias that has nothing to do with accuracy.
std::vector<RecordedTask> SyntheticTasks(int num_tasks, int num_models, uint64_t seed,
                                         double visible_quality = 0, double shared_noise = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  std::vector<double> quality(num_models);
  for (double& q : quality) q = normal(rng);
  std::vector<double> shared(num_models);  // what every task's stage 1 sees alike
  for (double& s : shared) s = normal(rng);
  std::vector<RecordedTask> tasks;
  for (int t = 0; t < num_tasks; ++t) {
    RecordedTask task;
    task.query_id = "q" + std::to_string(t);
    for (int m = 0; m < num_models; ++m) {
      const std::string id = "m" + std::to_string(m);
      const double fit = normal(rng);
      task.stage1[id] =
          shared_noise * shared[m] + fit + visible_quality * quality[m] + 0.3 * normal(rng);
      task.accuracy[id] = 0.6 + 0.03 * (fit + 1.5 * quality[m] + 0.3 * normal(rng));
    }
    tasks.push_back(std::move(task));
  }
  return tasks;
}

// Training small enough for a unit test: 200 steps, 4 folds over tasks.
RankerTrainingOptions QuickTraining() {
  RankerTrainingOptions options;
  options.steps = 200;
  options.folds = 4;
  return options;
}

// Models m0 .. m<n-1> with the same black-box facts (the facts say nothing).
std::map<std::string, std::vector<double>> SameFacts(int num_models) {
  std::map<std::string, std::vector<double>> facts;
  for (int m = 0; m < num_models; ++m) facts["m" + std::to_string(m)] = ModelFacts(64, 10);
  return facts;
}

TEST(OutcomeRankerTrainingTest, LossDecreasesAndHeldOutRankingImproves) {
  std::vector<RecordedTask> tasks = SyntheticTasks(8, 20, 7);
  const std::map<std::string, std::vector<double>> facts = SameFacts(20);
  const RankerTrainingOptions options = QuickTraining();
  auto report = TrainOutcomeRanker(tasks, facts, nullptr, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_LT(report->last_loss, report->first_loss - 0.05);
  EXPECT_GT(report->params.weight, 0.1);
  EXPECT_GT(report->validation_trained, report->validation_untrained + 0.05) << report->reason;
  EXPECT_TRUE(report->adopt) << report->reason;
  EXPECT_EQ(report->usable_tasks, 8);
  EXPECT_EQ(report->folds, 4);
  // The same records and seed train the same parameters.
  auto again = TrainOutcomeRanker(tasks, facts, nullptr, options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->params.weight, report->params.weight);
  // Against itself as the serving version a second training finds little to add: what it gains
  // is the folds' own choice of weights (per fold vs on all tasks), a fraction of what the first
  // training gained over the untrained ranking.
  auto versus_self = TrainOutcomeRanker(tasks, facts, &report->params, options);
  ASSERT_TRUE(versus_self.ok());
  EXPECT_LT(versus_self->validation_trained - versus_self->validation_serving,
            0.25 * (report->validation_trained - report->validation_untrained))
      << versus_self->reason;
}

// Weak tasks (stage-2 standings from recommendations, on other queries) carry the models' hidden
// quality too: training learns a weight for them and, with simulated cold models (whose reported
// outcomes are withheld in validation), ranks held-out queries better than without them.
TEST(OutcomeRankerTrainingTest, WeakTasksInformPriorsOfUnreportedModels) {
  std::vector<RecordedTask> all = SyntheticTasks(16, 20, 7);
  std::vector<RecordedTask> reported(all.begin(), all.begin() + 8);
  std::vector<RecordedTask> with_weak = reported;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> noise(0, 0.02);
  for (int t = 8; t < 16; ++t) {
    RecordedTask weak = all[t];
    weak.weak = true;
    for (auto& [id, a] : weak.accuracy) a += noise(rng);  // a noisier view of the same signal
    with_weak.push_back(std::move(weak));
  }
  const std::map<std::string, std::vector<double>> facts = SameFacts(20);
  const RankerTrainingOptions options = QuickTraining();
  auto without = TrainOutcomeRanker(reported, facts, nullptr, options);
  auto with = TrainOutcomeRanker(with_weak, facts, nullptr, options);
  ASSERT_TRUE(without.ok()) << without.status();
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->usable_tasks, 8);  // weak tasks are never validation queries
  EXPECT_EQ(with->weak_tasks, 8);
  EXPECT_EQ(without->weak_tasks, 0);
  EXPECT_GT(with->params.weak_weight, 0.05);
  EXPECT_GT(with->validation_trained, without->validation_trained + 0.01)
      << with->reason << " vs " << without->reason;
  EXPECT_NE(with->reason.find("8 weak tasks"), std::string::npos) << with->reason;
}

// Models nobody reported on, when stage 1 sees part of the quality that outcomes reveal (as on
// zoo2): the trained version places them by what the query's stage-1 scores say (calibrated
// target) and ranks held-out queries over all models better than the same parameters shrinking
// toward the facts alone, which leave cold models at the mean prior, below every good record.
TEST(OutcomeRankerTrainingTest, CalibratedTargetPlacesNeverReportedModels) {
  std::vector<RecordedTask> tasks =
      SyntheticTasks(48, 24, 9, /*visible_quality=*/1.0, /*shared_noise=*/0.0);
  std::vector<RecordedTask> reported(tasks.begin(), tasks.begin() + 8);
  for (RecordedTask& t : reported) {
    for (int m = 18; m < 24; ++m) t.accuracy.erase("m" + std::to_string(m));  // never reported
  }
  // Training chooses the line on this dock.
  auto report = TrainOutcomeRanker(reported, SameFacts(24), nullptr, QuickTraining());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->params.calibrated_target) << report->reason;
  // The two targets compared under the same (hand-set) parameters on 40 unseen tasks.
  RankerParams line;
  line.weight = 1;
  line.shrinkage = 1;
  line.sharpness = 1;
  line.calibrated_target = true;
  RankerParams facts_only = line;
  facts_only.calibrated_target = false;
  const OutcomeRanker calibrated(line, reported, SameFacts(24));
  const OutcomeRanker uncalibrated(facts_only, reported, SameFacts(24));
  double tau_calibrated = 0, tau_uncalibrated = 0;
  for (size_t t = 8; t < tasks.size(); ++t) {
    std::vector<std::string> ids;
    std::vector<double> base, accuracy;
    for (const auto& [id, v] : tasks[t].stage1) {
      ids.push_back(id);
      base.push_back(v);
      accuracy.push_back(tasks[t].accuracy.at(id));
    }
    tau_calibrated += WeightedTau(
        calibrated.Combine(base, calibrated.Priors(ids, tasks[t].stage1, {})), accuracy);
    tau_uncalibrated += WeightedTau(
        uncalibrated.Combine(base, uncalibrated.Priors(ids, tasks[t].stage1, {})), accuracy);
  }
  EXPECT_GT(tau_calibrated / 40, tau_uncalibrated / 40 + 0.005);
}

TEST(OutcomeRankerTest, EachStageHasItsWeight) {
  RankerParams params;
  params.weight = 0.5;
  params.stage2_weight = 0.1;
  OutcomeRanker ranker(params, TwoTasks(), {});
  const double sd = std::sqrt(1.25);
  EXPECT_NEAR(ranker.Combine({1, 2, 3, 4}, {1, 0, 0, 0})[0], -1.5 / sd + 0.5, 1e-12);
  EXPECT_NEAR(ranker.CombineStage2({1, 2, 3, 4}, {1, 0, 0, 0})[0], -1.5 / sd + 0.1, 1e-12);
  auto reloaded = OutcomeRanker::FromJson(ranker.ToJson());
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded->params().stage2_weight, 0.1);
  // A version saved before per-stage weights used its one weight in both stages.
  std::string old_json = ranker.ToJson();
  const std::string key = "\"stage2_weight\":0.1,";
  ASSERT_NE(old_json.find(key), std::string::npos) << old_json;
  old_json.erase(old_json.find(key), key.size());
  auto old_version = OutcomeRanker::FromJson(old_json);
  ASSERT_TRUE(old_version.ok()) << old_version.status();
  EXPECT_EQ(old_version->params().stage2_weight, 0.5);
}

// When outcomes follow what stage 1 already sees (no hidden model quality), the prior has
// nothing to add: the chosen weight leaves the untrained ranking (nearly) as it is.
TEST(OutcomeRankerTrainingTest, UselessPriorGetsLittleWeight) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal(0, 1);
  std::vector<RecordedTask> tasks;
  for (int t = 0; t < 8; ++t) {
    RecordedTask task;
    task.query_id = "q" + std::to_string(t);
    for (int m = 0; m < 20; ++m) {
      const std::string id = "m" + std::to_string(m);
      const double fit = normal(rng);
      task.stage1[id] = fit + 0.3 * normal(rng);
      task.accuracy[id] = 0.6 + 0.03 * fit;
    }
    tasks.push_back(std::move(task));
  }
  const RankerTrainingOptions options = QuickTraining();
  auto report = TrainOutcomeRanker(tasks, {}, nullptr, options);
  ASSERT_TRUE(report.ok()) << report.status();
  // On new tasks of the same kind the trained ranking is (nearly) the stage-1 one: either the
  // weight is small, or the prior is (nearly) a rescaled stage-1 score (the calibration line
  // of outcomes that say nothing beyond stage 1).
  const OutcomeRanker ranker(report->params, tasks, {});
  std::mt19937_64 fresh(6);
  double agreement = 0;
  for (int t = 0; t < 10; ++t) {
    std::map<std::string, double> stage1;
    std::vector<std::string> ids;
    std::vector<double> base;
    for (int m = 0; m < 20; ++m) {
      ids.push_back("m" + std::to_string(m));
      base.push_back(normal(fresh));
      stage1[ids.back()] = base.back();
    }
    agreement += WeightedTau(ranker.Combine(base, ranker.Priors(ids, stage1, {})), base) / 10;
  }
  EXPECT_GT(agreement, 0.9) << report->reason;
  EXPECT_GT(report->validation_trained, report->validation_untrained - 0.01) << report->reason;
  EXPECT_FALSE(report->adopt) << report->reason;
}

// Reported queries whose recommendation was recorded (weak twins with their stage-2 standings)
// choose the stage-2 weight: a stage 2 nearly as good as the truth takes less prior than stage 1.
TEST(OutcomeRankerTrainingTest, StageTwoWeightIsChosenOnRecordedStandings) {
  std::vector<RecordedTask> tasks = SyntheticTasks(8, 20, 7);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0, 0.005);
  const size_t reported = tasks.size();
  for (size_t t = 0; t < reported; ++t) {
    RecordedTask twin = tasks[t];
    twin.weak = true;
    for (auto& [id, a] : twin.accuracy) a += noise(rng);
    tasks.push_back(std::move(twin));
  }
  const RankerTrainingOptions options = QuickTraining();
  auto report = TrainOutcomeRanker(tasks, {}, nullptr, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->validation_stage2_queries, 8);
  EXPECT_LT(report->params.stage2_weight, report->params.weight) << report->reason;
  // A stage-2 weight that loses on held-out queries is dropped (here stage 2 is nearly the truth).
  if (report->validation_stage2_trained < report->validation_stage2_untrained) {
    EXPECT_EQ(report->params.stage2_weight, 0.0) << report->reason;
  }
  EXPECT_NE(report->reason.find("stage-2 weight"), std::string::npos) << report->reason;
}

TEST(OutcomeRankerTrainingTest, RefusesTooFewUsableTasks) {
  std::vector<RecordedTask> tasks = TwoTasks();
  tasks.push_back({"q3", {{"a", 1}}, {{"a", 0.5}}, false, {}});  // one model: says nothing
  auto report = TrainOutcomeRanker(tasks, {}, nullptr, {});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(report.status().message().find("at least 3 queries"), std::string::npos);
}

// Accuracy follows a hidden rotation of the query space that the untrained similarity cannot
// see; the trained projection must find enough of it to rank held-out queries better.
TEST(VectorAlignmentTrainingTest, LearnsAHiddenAlignmentAndReloadsIdentically) {
  const int dim = 8, num_models = 24, num_tasks = 12;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0, 1);
  auto unit = [&] {
    std::vector<float> v(dim);
    double n = 0;
    for (float& x : v) {
      x = static_cast<float>(normal(rng));
      n += x * x;
    }
    for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
    return v;
  };
  std::map<std::string, std::vector<float>> models;
  for (int m = 0; m < num_models; ++m) models["m" + std::to_string(m)] = unit();
  std::vector<AlignmentTask> tasks;
  for (int t = 0; t < num_tasks; ++t) {
    AlignmentTask task;
    task.query_id = "q" + std::to_string(t);
    task.query_vector = unit();
    // Hidden alignment: coordinates of the query shifted by one (a permutation).
    for (const auto& [id, v] : models) {
      double dot = 0;
      for (int d = 0; d < dim; ++d) dot += task.query_vector[d] * v[(d + 1) % dim];
      task.accuracy[id] = 0.6 + 0.1 * dot;
    }
    tasks.push_back(std::move(task));
  }
  RankerTrainingOptions options;
  options.steps = 300;
  options.folds = 4;
  auto report = TrainVectorAlignment(tasks, models, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_LT(report->last_loss, report->first_loss);
  EXPECT_GT(report->validation_trained, report->validation_untrained + 0.1) << report->reason;
  ASSERT_TRUE(report->adopt) << report->reason;
  ASSERT_FALSE(report->projection.empty());
  // Exported with a version and reloaded: identical vectors.
  OutcomeRanker ranker(RankerParams{}, {}, {}, report->projection);
  auto reloaded = OutcomeRanker::FromJson(ranker.ToJson());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  for (const auto& [id, v] : models) {
    EXPECT_EQ(ranker.projection().ProjectModel(v), reloaded->projection().ProjectModel(v));
  }
  EXPECT_EQ(ranker.projection().ProjectQuery(tasks[0].query_vector),
            reloaded->projection().ProjectQuery(tasks[0].query_vector));
  // Unrelated accuracies: nothing to learn, the untrained vectors are kept.
  std::uniform_real_distribution<double> uniform(0.4, 0.9);
  for (AlignmentTask& task : tasks) {
    for (auto& [id, a] : task.accuracy) a = uniform(rng);
  }
  auto noise = TrainVectorAlignment(tasks, models, options);
  ASSERT_TRUE(noise.ok()) << noise.status();
  EXPECT_FALSE(noise->adopt) << noise->reason;
  EXPECT_TRUE(noise->projection.empty());
}

}  // namespace
}  // namespace modeldock::encoder
