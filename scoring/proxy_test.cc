// Checks the stage-1 proxy building blocks and rank fusion against the independent NumPy/SciPy
// oracle (testdata/proxy_oracle.py), and their input validation.
#include "scoring/proxy.h"

#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "scoring/metrics.h"

#ifndef MODELDOCK_PYTHON
#define MODELDOCK_PYTHON "/usr/bin/python3"
#endif

namespace modeldock::scoring {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

template <typename T>
std::vector<T> ReadRaw(const std::filesystem::path& path, size_t count) {
  std::vector<T> out(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(T)));
  EXPECT_TRUE(in) << "short read of " << path;
  return out;
}

class ProxyOracleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "proxy_oracle_XXXXXX");
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    const std::string command = std::string("'") + MODELDOCK_PYTHON + "' '" +
                                MODELDOCK_PROXY_ORACLE + "' '" + dir_.string() + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << "oracle failed: " << command;
    std::ifstream manifest(dir_ / "manifest.json");
    ASSERT_TRUE(manifest);
    m_ = nlohmann::json::parse(manifest);
    n_q_ = m_["n_q"];
    n_p_ = m_["n_p"];
    const int64_t d_key = m_["d_key"], d_feat = m_["d_feat"];
    probe_keys_ = Tensor({n_p_, d_key}, ReadRaw<float>(dir_ / "probe_keys.f32", n_p_ * d_key));
    query_keys_ = Tensor({n_q_, d_key}, ReadRaw<float>(dir_ / "query_keys.f32", n_q_ * d_key));
    probe_feat_ = Tensor({n_p_, d_feat}, ReadRaw<float>(dir_ / "probe_feat.f32", n_p_ * d_feat));
    labels_ = ReadRaw<int32_t>(dir_ / "labels.i32", n_q_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  nlohmann::json m_;
  int64_t n_q_ = 0, n_p_ = 0;
  Tensor probe_keys_, query_keys_, probe_feat_;
  std::vector<int32_t> labels_;
};

TEST_F(ProxyOracleTest, NeighboursGatherCompressAndProxyMetricsMatchNumPy) {
  const int k = m_["k"], dim = m_["dim"];
  auto nb = NearestProbes(query_keys_, probe_keys_, k);
  ASSERT_TRUE(nb.ok()) << nb.status();
  EXPECT_THAT(*nb, ElementsAreArray(m_["neighbours"].get<std::vector<int32_t>>()));

  Tensor proxy = GatherProxy(probe_feat_, *nb, k);
  ASSERT_EQ(proxy.shape, (std::vector<int64_t>{n_q_, probe_feat_.RowSize()}));
  const auto expected_proxy = m_["proxy_raw"].get<std::vector<double>>();
  for (size_t i = 0; i < expected_proxy.size(); ++i) {
    ASSERT_NEAR(proxy.values[i], expected_proxy[i], 1e-5) << "proxy value " << i;
  }

  auto compressed = CompressFeatures(probe_feat_, dim);
  ASSERT_TRUE(compressed.ok()) << compressed.status();
  ASSERT_EQ(compressed->shape, (std::vector<int64_t>{n_p_, dim}));
  const auto expected_c = m_["compressed"].get<std::vector<double>>();
  for (size_t i = 0; i < expected_c.size(); ++i) {
    ASSERT_NEAR(compressed->values[i], expected_c[i], 1e-4) << "compressed value " << i;
  }

  // The whole stage-1 pipeline for one model: proxy of the compressed features, then metrics.
  Tensor proxy_c = GatherProxy(*compressed, *nb, k);
  auto logme = LogMe(proxy_c, labels_, m_["classes"]);
  auto shrink = ShrinkageHScore(proxy_c, labels_, m_["classes"]);
  ASSERT_TRUE(logme.ok() && shrink.ok());
  EXPECT_NEAR(*logme, m_["proxy_logme"].get<double>(), 1e-4 * std::abs(m_["proxy_logme"].get<double>()));
  EXPECT_NEAR(*shrink, m_["proxy_shrinkage_hscore"].get<double>(),
              1e-4 * std::abs(m_["proxy_shrinkage_hscore"].get<double>()));
}

TEST_F(ProxyOracleTest, DefaultFusionOverModelsOfDifferentWidthsMatchesNumPy) {
  const int dim = m_["fusion_dim"];
  const auto widths = m_["model_widths"].get<std::vector<int64_t>>();
  const auto logme_expected = m_["model_logme"].get<std::vector<double>>();
  const auto shrink_expected = m_["model_shrinkage_hscore"].get<std::vector<double>>();
  std::vector<double> logme_values, shrink_values;
  for (size_t i = 0; i < widths.size(); ++i) {
    Tensor features({n_q_, widths[i]}, ReadRaw<float>(dir_ / ("model" + std::to_string(i) + ".f32"),
                                                       n_q_ * widths[i]));
    auto reduced = CompressFeatures(features, dim);
    ASSERT_TRUE(reduced.ok()) << reduced.status();
    EXPECT_EQ(reduced->RowSize(), std::min<int64_t>(dim, widths[i]));
    auto logme = LogMe(*reduced, labels_, m_["classes"]);
    auto shrink = ShrinkageHScore(*reduced, labels_, m_["classes"]);
    ASSERT_TRUE(logme.ok() && shrink.ok());
    EXPECT_NEAR(*logme, logme_expected[i], 1e-4 * std::abs(logme_expected[i])) << "model " << i;
    EXPECT_NEAR(*shrink, shrink_expected[i], 1e-4 * std::abs(shrink_expected[i]) + 1e-9) << "model " << i;
    logme_values.push_back(*logme);
    shrink_values.push_back(*shrink);
  }
  EXPECT_THAT(RankFusion({logme_values, shrink_values}),
              ElementsAreArray(m_["model_fusion"].get<std::vector<double>>()));
}

TEST_F(ProxyOracleTest, RanksAndFusionMatchScipyRankdata) {
  const auto lists = m_["lists"].get<std::vector<std::vector<double>>>();
  const auto ranks = m_["ranks"].get<std::vector<std::vector<double>>>();
  for (size_t i = 0; i < lists.size(); ++i) EXPECT_THAT(Ranks(lists[i]), ElementsAreArray(ranks[i]));
  EXPECT_THAT(RankFusion(lists), ElementsAreArray(m_["fusion"].get<std::vector<double>>()));
}

// Class probabilities are each row's softmax, max-shifted so that large logits do not overflow.
TEST(ProxyTest, ClassProbabilitiesAreTheRowSoftmax) {
  const Tensor logits({2, 3}, {0.0f, 1.0f, 2.0f, 1000.0f, 1000.0f, -1000.0f});
  const Tensor p = ClassProbabilities(logits);
  ASSERT_EQ(p.shape, (std::vector<int64_t>{2, 3}));
  const double z = 1.0 + std::exp(1.0) + std::exp(2.0);
  EXPECT_FLOAT_EQ(p.values[0], static_cast<float>(1.0 / z));
  EXPECT_FLOAT_EQ(p.values[1], static_cast<float>(std::exp(1.0) / z));
  EXPECT_FLOAT_EQ(p.values[2], static_cast<float>(std::exp(2.0) / z));
  EXPECT_FLOAT_EQ(p.values[3], 0.5f);
  EXPECT_FLOAT_EQ(p.values[4], 0.5f);
  EXPECT_FLOAT_EQ(p.values[5], 0.0f);
}

TEST(ProxyTest, NonFiniteScoresRankLowest) {
  EXPECT_THAT(Ranks({2.0, -HUGE_VAL, NAN, 1.0}), ElementsAreArray({4.0, 1.5, 1.5, 3.0}));
  EXPECT_TRUE(RankFusion({}).empty());
}

TEST(ProxyTest, InvalidInputsAreRejectedWithReasons) {
  Tensor keys({3, 2}, {1, 0, 0, 1, 1, 1});
  Tensor other({2, 3}, {1, 0, 0, 0, 1, 0});
  auto mismatch = NearestProbes(keys, other, 1);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mismatch.status().message()), HasSubstr("[N, D] and [P, D]"));
  EXPECT_EQ(NearestProbes(keys, keys, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NearestProbes(keys, keys, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CompressFeatures(Tensor({1, 2}, {1, 2}), 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  // dim above D keeps all D directions.
  auto all = CompressFeatures(keys, 8);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->shape, (std::vector<int64_t>{3, 2}));
}

// 5 samples in 8 dimensions vary in at most 4 directions once centred: of the 8 components
// CompressFeatures keeps, the last 4 are rounding noise and are dropped; the rest is unchanged.
TEST(DropNullComponentsTest, KeepsTheDirectionsTheFeaturesVaryIn) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  Tensor features({5, 8}, std::vector<float>(40));
  for (float& v : features.values) v = normal(rng);
  auto compressed = CompressFeatures(features, 8);
  ASSERT_TRUE(compressed.ok());
  ASSERT_EQ(compressed->shape, (std::vector<int64_t>{5, 8}));
  const Tensor kept = DropNullComponents(*compressed);
  ASSERT_EQ(kept.shape, (std::vector<int64_t>{5, 4}));
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(kept.values[i * 4 + j], compressed->values[i * 8 + j]);
  }
  // Full rank: nothing to drop.
  auto wide = CompressFeatures(features, 3);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ(DropNullComponents(*wide).shape, (std::vector<int64_t>{5, 3}));
  // Constant features: one (zero) column stays, for the metrics to call degenerate.
  Tensor constant({4, 3}, std::vector<float>(12, 2.0f));
  auto flat = CompressFeatures(constant, 3);
  ASSERT_TRUE(flat.ok());
  EXPECT_EQ(DropNullComponents(*flat).shape, (std::vector<int64_t>{4, 1}));
}

}  // namespace
}  // namespace modeldock::scoring
