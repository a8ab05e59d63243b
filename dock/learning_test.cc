// The stored class prototypes of a reported query (issue 22): training re-encodes a recorded
// query from them, so they must give the vector the query had when it was served.
#include "dock/learning.h"

#include <cmath>
#include <random>
#include <vector>

#include "encoder/knowledge.h"
#include "gtest/gtest.h"

namespace modeldock::dock {
namespace {

Tensor Rows(int64_t rows, int64_t dim, std::vector<float> values) {
  Tensor t;
  t.shape = {rows, dim};
  t.values = std::move(values);
  return t;
}

TEST(LearningPrototypesTest, AveragesUnitLengthRows) {
  // Class 0: (3, 4) and (0, 2) -> (0.6, 0.8) and (0, 1) -> mean (0.3, 0.9).
  // Class 1: (-5, 0) -> (-1, 0). Class 2: no sample -> zeros.
  const Tensor basis = Rows(3, 2, {3, 4, -5, 0, 0, 2});
  const Tensor p = ClassPrototypes(basis, {0, 1, 0}, 3);
  ASSERT_EQ(p.shape, (std::vector<int64_t>{3, 2}));
  const std::vector<float> want = {0.3f, 0.9f, -1.0f, 0.0f, 0.0f, 0.0f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(p.values[i], want[i]) << i;
}

TEST(LearningPrototypesTest, ZeroRowStaysZero) {
  const Tensor p = ClassPrototypes(Rows(2, 2, {0, 0, 0, 2}), {0, 0}, 1);
  EXPECT_FLOAT_EQ(p.values[0], 0.0f);
  EXPECT_FLOAT_EQ(p.values[1], 0.5f);  // (0 + 1) / 2
}

// What the dock serves (EncodeQuery of the samples) equals what training rebuilds from the
// stored prototypes (EncodeQuery of one prototype per class): learning.cc averaged raw rows while
// the encoder averages unit-length ones, and the two disagreed whenever row norms differ.
TEST(LearningPrototypesTest, TrainingRebuildsTheServedQueryVector) {
  constexpr int64_t kDim = 16, kRows = 60;
  constexpr int kClasses = 3;
  std::mt19937 rng(22);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.2f, 5.0f);  // rows of very different norms
  Tensor basis;
  basis.shape = {kRows, kDim};
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < kRows; ++i) {
    const int32_t c = static_cast<int32_t>(i % kClasses);
    labels.push_back(c);
    const float s = scale(rng);
    for (int64_t d = 0; d < kDim; ++d) {
      basis.values.push_back(s * (normal(rng) + (d % kClasses == c ? 2.0f : 0.0f)));
    }
  }
  const auto encoder = encoder::MakeUntrainedEncoder(static_cast<int>(kDim));
  auto served = encoder->EncodeQuery(basis, labels, kClasses);
  ASSERT_TRUE(served.ok()) << served.status();

  const Tensor prototypes = ClassPrototypes(basis, labels, kClasses);
  std::vector<int32_t> one_per_class = {0, 1, 2};
  auto rebuilt = encoder->EncodeQuery(prototypes, one_per_class, kClasses);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  ASSERT_EQ(rebuilt->size(), served->size());
  for (size_t i = 0; i < served->size(); ++i) {
    EXPECT_NEAR((*rebuilt)[i], (*served)[i], 1e-5) << i;
  }
}

}  // namespace
}  // namespace modeldock::dock
