#include "scoring/fusion.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scoring/proxy.h"

namespace modeldock::scoring {
namespace {

using ::testing::DoubleEq;
using ::testing::ElementsAre;

TEST(WeightedRankFusionTest, EqualWeightsAreRankFusionOverN) {
  const std::vector<std::vector<double>> lists = {{3, 1, 2}, {1, 2, 3}};
  // Ranks (3,1,2) and (1,2,3): means 2, 1.5, 2.5, divided by 3 items.
  EXPECT_THAT(WeightedRankFusion(lists, {1, 1}),
              ElementsAre(DoubleEq(4.0 / 6), DoubleEq(3.0 / 6), DoubleEq(5.0 / 6)));
  const std::vector<double> plain = RankFusion(lists);
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_DOUBLE_EQ(WeightedRankFusion(lists, {1, 1})[i], plain[i] / 3);
  }
}

TEST(WeightedRankFusionTest, WeightsScaleEachMetricsVote) {
  // (1 * 3/3 + 2 * 1/3) / 3, (1/3 + 2 * 2/3) / 3, (2/3 + 2 * 3/3) / 3.
  EXPECT_THAT(WeightedRankFusion({{3, 1, 2}, {1, 2, 3}}, {1, 2}),
              ElementsAre(DoubleEq(5.0 / 9), DoubleEq(5.0 / 9), DoubleEq(8.0 / 9)));
  // A zero weight leaves the other metric alone.
  EXPECT_THAT(WeightedRankFusion({{3, 1, 2}, {1, 2, 3}}, {1, 0}),
              ElementsAre(DoubleEq(1.0), DoubleEq(1.0 / 3), DoubleEq(2.0 / 3)));
}

TEST(WeightedRankFusionTest, UnmeasuredItemsAreRankedWithoutThatMetric) {
  // Metric 1 measured items 1 and 2 only: their ranks among those two are 2/2 and 1/2.
  EXPECT_THAT(WeightedRankFusion({{3, 1, 2}, {NAN, 5, 4}}, {1, 1}),
              ElementsAre(DoubleEq(1.0), DoubleEq((1.0 / 3 + 1.0) / 2),
                          DoubleEq((2.0 / 3 + 0.5) / 2)));
  // -inf is a measurement (the worst); an item no metric measured scores 0.
  EXPECT_THAT(WeightedRankFusion({{NAN, -HUGE_VAL, 1}}, {1}),
              ElementsAre(DoubleEq(0.0), DoubleEq(0.5), DoubleEq(1.0)));
  EXPECT_TRUE(WeightedRankFusion({}, {}).empty());
}

}  // namespace
}  // namespace modeldock::scoring
