// The latency budget's cost model: a fixed part and a rate per sample, fitted to a model's runs.
#include "dock/run_costs.h"

#include <gtest/gtest.h>

namespace modeldock::dock {
namespace {

TEST(FitRunCostTest, RunsOfDifferentSizesGiveTheFixedPartAndTheRate) {
  // Exactly 12 ms + 0.25 ms per sample.
  bool identified = false;
  const RunCostFit fit =
      FitRunCost({{100, 37}, {400, 112}, {1600, 412}}, RunCosts::kDefaultFixedMillis, &identified);
  EXPECT_TRUE(identified);
  EXPECT_NEAR(fit.fixed_millis, 12, 1e-9);
  EXPECT_NEAR(fit.millis_per_row, 0.25, 1e-12);
  EXPECT_NEAR(fit.Millis(6000), 1512, 1e-6);
}

TEST(FitRunCostTest, RunsOfOneSizeTakeTheDefaultFixedPart) {
  // Runs of 100 and 120 samples in 38 and 46 ms: the default 10 ms is the fixed part, the rest
  // (32 ms over 110 samples on average) the rate.
  bool identified = true;
  const RunCostFit fit = FitRunCost({{100, 38}, {120, 46}}, 10, &identified);
  EXPECT_FALSE(identified);  // 120 is less than 1.5 times 100
  EXPECT_DOUBLE_EQ(fit.fixed_millis, 10);
  EXPECT_DOUBLE_EQ(fit.millis_per_row, (42.0 - 10.0) / 110.0);
  // The fixed part is at most half a run's time.
  const RunCostFit fast = FitRunCost({{100, 8}}, 10);
  EXPECT_DOUBLE_EQ(fast.fixed_millis, 4);
  EXPECT_DOUBLE_EQ(fast.millis_per_row, 0.04);
}

TEST(FitRunCostTest, AFitWithANegativePartFallsBackToTheDefault) {
  // A larger run that took less (noise, a loaded machine) says nothing about the rate.
  bool identified = true;
  const RunCostFit fit = FitRunCost({{100, 50}, {400, 40}}, 10, &identified);
  EXPECT_FALSE(identified);
  EXPECT_DOUBLE_EQ(fit.fixed_millis, 10);
  EXPECT_DOUBLE_EQ(fit.millis_per_row, 35.0 / 250.0);
  // A rate so steep the fixed part comes out negative: the same.
  const RunCostFit steep = FitRunCost({{100, 10}, {200, 40}}, 10, &identified);
  EXPECT_FALSE(identified);
  EXPECT_DOUBLE_EQ(steep.fixed_millis, 10);
}

TEST(RunCostsTest, ModelsThatHaveNotRunBorrowFromThoseThatHave) {
  RunCosts costs;
  // Model a: 20 ms + 0.1 ms per sample, probed at 0.4 ms per sample. Model b: 30 ms + 0.3 ms,
  // probed at 0.6 ms. Model c ran at one size only.
  costs.Record("a", {100, 30}, 0.4);
  costs.Record("a", {1000, 120}, 0.4);
  costs.Record("b", {100, 60}, 0.6);
  costs.Record("b", {500, 180}, 0.6);
  costs.Record("c", {200, 65}, 0);
  const RunCostSnapshot snapshot = costs.Snapshot();
  // The median of the identified fixed parts (20 and 30).
  EXPECT_NEAR(snapshot.default_fixed_millis, 25, 1e-9);
  EXPECT_NEAR(snapshot.Millis("a", 6000, 99), 620, 1e-6);
  EXPECT_NEAR(snapshot.Millis("b", 10, 99), 33, 1e-9);
  // c: the shared fixed part and the rest as its rate: 25 + 40 * 1000 / 200.
  EXPECT_NEAR(snapshot.Millis("c", 1000, 99), 225, 1e-9);
  // Probe rates overestimate by 4 (a) and 2 (b): median scale 0.375 ((0.25 + 0.5) / 2);
  // c has no probe rate and does not count. A model that has not run: 25 + 0.375 * 0.8 * 1000.
  EXPECT_NEAR(snapshot.probe_rate_scale, 0.375, 1e-12);
  EXPECT_NEAR(snapshot.Millis("new", 1000, 0.8), 325, 1e-9);
  // Forgotten models fall back on their probe rate.
  costs.Erase("a");
  EXPECT_NEAR(costs.Snapshot().Millis("a", 100, 0.4), 30 + 0.5 * 0.4 * 100, 1e-9);
}

TEST(RunCostsTest, KeepsTheMostRecentRunsAndRefusesMeaninglessOnes) {
  RunCosts costs;
  costs.Record("m", {0, 5}, 1);     // no samples
  costs.Record("m", {10, -1}, 1);   // negative time
  EXPECT_TRUE(costs.Snapshot().fitted.empty());
  // Old runs at 1 ms per sample, then kMaxRunsPerModel newer ones at 5 + 0.5 per sample.
  for (int i = 0; i < 4; ++i) costs.Record("m", {100.0 * (i + 1), 100.0 * (i + 1)}, 1);
  for (size_t i = 0; i < RunCosts::kMaxRunsPerModel; ++i) {
    const double rows = 100.0 * static_cast<double>(i + 1);
    costs.Record("m", {rows, 5 + 0.5 * rows}, 1);
  }
  const RunCostFit fit = costs.Snapshot().fitted.at("m");
  EXPECT_NEAR(fit.fixed_millis, 5, 1e-9);
  EXPECT_NEAR(fit.millis_per_row, 0.5, 1e-12);
}

}  // namespace
}  // namespace modeldock::dock
