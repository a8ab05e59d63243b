// Checks every metric against the independent NumPy/SciPy/sklearn oracle
// (testdata/metrics_oracle.py), plus validation errors, names and one sanity property per
// metric on seeded synthetic data.
#include "scoring/metrics.h"

#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

#ifndef MODELDOCK_PYTHON
#define MODELDOCK_PYTHON "/usr/bin/python3"
#endif

namespace modeldock::scoring {
namespace {

using ::testing::HasSubstr;

constexpr double kRelTolerance = 1e-6;

struct Fixture {
  std::string name;
  Tensor features;
  Tensor logits;
  std::vector<int32_t> labels;
  int num_classes = 0;
  std::map<std::string, double> expected;
  std::map<std::string, std::string> skip;  // metric -> why the oracle value is not compared
};

template <typename T>
std::vector<T> ReadRaw(const std::filesystem::path& path, size_t count) {
  std::vector<T> out(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!in || in.gcount() != static_cast<std::streamsize>(count * sizeof(T))) {
    ADD_FAILURE() << "short read of " << path;
  }
  return out;
}

class OracleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string templ = (std::filesystem::temp_directory_path() / "scoring_oracle_XXXXXX");
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = new std::filesystem::path(templ);
    const std::string command = std::string("'") + MODELDOCK_PYTHON + "' '" +
                                MODELDOCK_METRICS_ORACLE + "' '" + dir_->string() + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << "oracle failed: " << command;

    std::ifstream manifest_file(*dir_ / "manifest.json");
    ASSERT_TRUE(manifest_file) << "no manifest in " << *dir_;
    const nlohmann::json manifest = nlohmann::json::parse(manifest_file);
    fixtures_ = new std::vector<Fixture>();
    for (const auto& entry : manifest.at("fixtures")) {
      Fixture f;
      f.name = entry.at("name").get<std::string>();
      const int64_t n = entry.at("n").get<int64_t>();
      const int64_t d = entry.at("d").get<int64_t>();
      const int64_t cs = entry.at("cs").get<int64_t>();
      f.num_classes = entry.at("num_classes").get<int>();
      f.features = Tensor({n, d}, ReadRaw<float>(*dir_ / (f.name + ".features.f32"), n * d));
      f.logits = Tensor({n, cs}, ReadRaw<float>(*dir_ / (f.name + ".logits.f32"), n * cs));
      f.labels = ReadRaw<int32_t>(*dir_ / (f.name + ".labels.i32"), n);
      for (const auto& [metric, value] : entry.at("expected").items()) {
        f.expected[metric] = value.get<double>();
      }
      for (const auto& [metric, reason] : entry.at("skip").items()) {
        f.skip[metric] = reason.get<std::string>();
      }
      fixtures_->push_back(std::move(f));
    }
  }

  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    delete fixtures_;
    dir_ = nullptr;
    fixtures_ = nullptr;
  }

  // Compares one metric on every fixture with the oracle.
  static void CheckAgainstOracle(Metric metric) {
    ASSERT_NE(fixtures_, nullptr);
    ASSERT_GE(fixtures_->size(), 5u);
    const std::string name(MetricName(metric));
    for (const Fixture& f : *fixtures_) {
      SCOPED_TRACE("fixture " + f.name + ", metric " + name);
      ScoreInput input;
      input.features = &f.features;
      input.logits = &f.logits;
      input.labels = &f.labels;
      input.num_classes = f.num_classes;
      absl::StatusOr<double> score = Score(metric, input);
      ASSERT_TRUE(score.ok()) << score.status();
      const double expected = f.expected.at(name);
      if (auto it = f.skip.find(name); it != f.skip.end()) {
        std::printf("[ skipped  ] %s on %s: got %.10g, oracle %.10g (%s)\n", name.c_str(),
                    f.name.c_str(), *score, expected, it->second.c_str());
        EXPECT_TRUE(std::isfinite(*score));
        continue;
      }
      std::printf("[ compared ] %-16s %-7s got %.15g, oracle %.15g, rel. diff %.1e\n", name.c_str(),
                  f.name.c_str(), *score, expected,
                  std::abs(*score - expected) / std::max(std::abs(expected), 1e-300));
      EXPECT_NEAR(*score, expected, kRelTolerance * std::abs(expected) + 1e-12);
    }
  }

  static std::filesystem::path* dir_;
  static std::vector<Fixture>* fixtures_;
};

std::filesystem::path* OracleTest::dir_ = nullptr;
std::vector<Fixture>* OracleTest::fixtures_ = nullptr;

// One test case for all metrics: ctest runs every case in its own process, and the oracle takes
// a few seconds to start (SciPy/sklearn imports).
TEST_F(OracleTest, EveryMetricMatchesTheOracle) {
  for (Metric metric : AllMetrics()) CheckAgainstOracle(metric);
}

// --- Synthetic data for the property and error tests. ---

// `per_class` samples per class around centres `separation` noise units apart, D dims.
struct Clusters {
  Tensor features;
  Tensor logits;  // the "model" predicts the class, with noise, over num_classes + 2 outputs
  std::vector<int32_t> labels;
  int num_classes = 0;
};

Clusters MakeClusters(int num_classes, int per_class, int d, double separation, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> centres(static_cast<size_t>(num_classes * d));
  for (double& c : centres) c = normal(rng) * separation / std::sqrt(static_cast<double>(d));
  Clusters out;
  out.num_classes = num_classes;
  const int n = num_classes * per_class;
  const int cs = num_classes + 2;
  out.features = Tensor({n, d}, std::vector<float>(static_cast<size_t>(n * d)));
  out.logits = Tensor({n, cs}, std::vector<float>(static_cast<size_t>(n * cs)));
  for (int i = 0; i < n; ++i) {
    const int y = i % num_classes;
    out.labels.push_back(y);
    for (int j = 0; j < d; ++j) {
      out.features.values[i * d + j] = static_cast<float>(centres[y * d + j] + normal(rng));
    }
    for (int z = 0; z < cs; ++z) {
      out.logits.values[i * cs + z] = static_cast<float>((z == y ? 3.0 : 0.0) + normal(rng));
    }
  }
  return out;
}

std::vector<int32_t> Shuffled(std::vector<int32_t> labels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::shuffle(labels.begin(), labels.end(), rng);
  return labels;
}

// The per-metric entry points and Score() agree bit for bit; Score() picks logits for LEEP/NCE.
TEST(ScoreTest, DispatchesToTheMetric) {
  const Clusters c = MakeClusters(3, 20, 6, 5.0, 9);
  const ScoreInput input{&c.features, &c.logits, &c.labels, c.num_classes};
  EXPECT_EQ(*Score(Metric::kTmi, input), *Tmi(c.features, c.labels, 3));
  EXPECT_EQ(*Score(Metric::kLogMe, input), *LogMe(c.features, c.labels, 3));
  EXPECT_EQ(*Score(Metric::kLeep, input), *Leep(c.logits, c.labels, 3));
  EXPECT_EQ(*Score(Metric::kNce, input), *Nce(c.logits, c.labels, 3));
  EXPECT_EQ(*Score(Metric::kHScore, input), *HScore(c.features, c.labels, 3));
  EXPECT_EQ(*Score(Metric::kShrinkageHScore, input), *ShrinkageHScore(c.features, c.labels, 3));
  EXPECT_EQ(*Score(Metric::kGbc, input), *Gbc(c.features, c.labels, 3));
  EXPECT_EQ(*Score(Metric::kSfda, input), *Sfda(c.features, c.labels, 3));
  EXPECT_NE(*Leep(c.logits, c.labels, 3), *Leep(c.features, c.labels, 3));
}

// Well-separated classes must score higher than the same samples with shuffled labels - for
// every metric but TMI, which rewards intra-class spread (tested separately below).
TEST(ScoringPropertyTest, SeparatedClassesBeatShuffledLabels) {
  const Clusters c = MakeClusters(4, 60, 12, 8.0, 7);
  const std::vector<int32_t> shuffled = Shuffled(c.labels, 8);
  for (Metric metric : AllMetrics()) {
    if (metric == Metric::kTmi) continue;
    SCOPED_TRACE(std::string(MetricName(metric)));
    auto good = Score(metric, {&c.features, &c.logits, &c.labels, c.num_classes});
    auto bad = Score(metric, {&c.features, &c.logits, &shuffled, c.num_classes});
    ASSERT_TRUE(good.ok()) << good.status();
    ASSERT_TRUE(bad.ok()) << bad.status();
    EXPECT_GT(*good, *bad);
  }
}

// Uniform samples in [0, L]^2 have differential entropy 2 log L per class; with two equal
// classes TMI = mean_c (1/2) H_c ~ log L. Scaling the features by 10 (all kNN distances stay
// above the 1.0 clamp) adds exactly (1/2) * D * log 10 per class to the mean.
TEST(ScoringPropertyTest, TmiMatchesUniformEntropyAndGrowsWithScale) {
  constexpr double kSide = 1000.0;
  constexpr int kPerClass = 1000;
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> uniform(0.0, kSide);
  Tensor features({2 * kPerClass, 2}, std::vector<float>(4 * kPerClass));
  Tensor scaled = features;
  std::vector<int32_t> labels;
  for (int i = 0; i < 2 * kPerClass; ++i) {
    labels.push_back(i % 2);
    for (int j = 0; j < 2; ++j) {
      const float v = static_cast<float>(uniform(rng));
      features.values[i * 2 + j] = v;
      scaled.values[i * 2 + j] = v * 10.0f;
    }
  }
  auto tmi = Tmi(features, labels, 2);
  auto tmi_scaled = Tmi(scaled, labels, 2);
  ASSERT_TRUE(tmi.ok()) << tmi.status();
  ASSERT_TRUE(tmi_scaled.ok()) << tmi_scaled.status();
  EXPECT_NEAR(*tmi, std::log(kSide), 0.03 * std::log(kSide));
  EXPECT_NEAR(*tmi_scaled - *tmi, std::log(10.0), 1e-5);
}

// Tightly packed features: every kNN distance is clamped to 1, so H_c = -psi(k) + psi(n_c) +
// D log 2 exactly.
TEST(ScoringPropertyTest, TmiClampsSmallDistances) {
  const Clusters c = MakeClusters(2, 10, 3, 1.0, 3);
  Tensor tiny = c.features;
  for (float& v : tiny.values) v *= 1e-3f;
  auto tmi = Tmi(tiny, c.labels, 2);
  ASSERT_TRUE(tmi.ok()) << tmi.status();
  // psi(10) - psi(3) = 1/3 + ... + 1/9.
  double harmonic = 0.0;
  for (int j = 3; j < 10; ++j) harmonic += 1.0 / j;
  EXPECT_NEAR(*tmi, 0.5 * (harmonic + 3.0 * std::log(2.0)), 1e-12);
}

// --- Validation. ---

using MetricFn =
    std::function<absl::StatusOr<double>(const Tensor&, const std::vector<int32_t>&, int)>;
std::vector<std::pair<std::string, MetricFn>> AllMetricFunctions() {
  return {
      {"tmi", [](const Tensor& t, const std::vector<int32_t>& y, int c) { return Tmi(t, y, c); }},
      {"logme", LogMe},
      {"leep", Leep},
      {"nce", Nce},
      {"hscore", HScore},
      {"shrinkage_hscore", ShrinkageHScore},
      {"gbc", Gbc},
      {"sfda", Sfda}};
}

TEST(ScoringErrorTest, RejectsInvalidInputs) {
  const Clusters c = MakeClusters(3, 10, 4, 5.0, 1);
  std::vector<int32_t> short_labels(c.labels.begin(), c.labels.end() - 1);
  std::vector<int32_t> one_class(c.labels.size(), 1);
  std::vector<int32_t> out_of_range = c.labels;
  out_of_range[5] = 3;
  std::vector<int32_t> negative = c.labels;
  negative[2] = -1;
  Tensor with_nan = c.features;
  with_nan.values[7] = std::nanf("");
  Tensor inconsistent = c.features;
  inconsistent.values.pop_back();
  Tensor flat({static_cast<int64_t>(c.features.values.size())}, c.features.values);

  for (const auto& [name, fn] : AllMetricFunctions()) {
    SCOPED_TRACE(name);
    auto expect_invalid = [&](const absl::StatusOr<double>& s, const std::string& needle) {
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
      EXPECT_THAT(std::string(s.status().message()), HasSubstr(needle));
    };
    ASSERT_TRUE(fn(c.features, c.labels, 3).ok());
    expect_invalid(fn(c.features, short_labels, 3), "labels");
    expect_invalid(fn(c.features, one_class, 3), "at least 2 classes");
    expect_invalid(fn(c.features, c.labels, 1), "at least 2 classes");
    expect_invalid(fn(c.features, out_of_range, 3), "outside");
    expect_invalid(fn(c.features, negative, 3), "outside");
    expect_invalid(fn(with_nan, c.labels, 3), "not finite");
    expect_invalid(fn(inconsistent, c.labels, 3), "shape");
    expect_invalid(fn(flat, c.labels, 3), "[N, D]");
  }
}

TEST(ScoringErrorTest, TmiNeedsAClassLargerThanK) {
  const Clusters c = MakeClusters(2, 3, 4, 5.0, 2);  // 3 samples per class, k = 3
  auto s = Tmi(c.features, c.labels, 2);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  TmiOptions k2;
  k2.k = 2;
  EXPECT_TRUE(Tmi(c.features, c.labels, 2, k2).ok());
}

TEST(ScoringErrorTest, ScoreNeedsTheRightInputs) {
  const Clusters c = MakeClusters(2, 10, 4, 5.0, 4);
  auto no_logits = Score(Metric::kLeep, {&c.features, nullptr, &c.labels, 2});
  EXPECT_EQ(no_logits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_logits.status().message()), HasSubstr("logits"));
  auto no_features = Score(Metric::kLogMe, {nullptr, &c.logits, &c.labels, 2});
  EXPECT_EQ(no_features.status().code(), absl::StatusCode::kInvalidArgument);
  auto no_labels = Score(Metric::kTmi, {&c.features, &c.logits, nullptr, 2});
  EXPECT_EQ(no_labels.status().code(), absl::StatusCode::kInvalidArgument);
}

// A class id without samples (num_classes larger than the labels used) is ignored.
TEST(ScoringErrorTest, EmptyClassesAreIgnored) {
  const Clusters c = MakeClusters(3, 20, 6, 5.0, 5);
  for (const auto& [name, fn] : AllMetricFunctions()) {
    SCOPED_TRACE(name);
    auto base = fn(name == "leep" || name == "nce" ? c.logits : c.features, c.labels, 3);
    auto wider = fn(name == "leep" || name == "nce" ? c.logits : c.features, c.labels, 5);
    ASSERT_TRUE(base.ok()) << base.status();
    ASSERT_TRUE(wider.ok()) << wider.status();
    EXPECT_DOUBLE_EQ(*base, *wider);
  }
}

// --- Names. ---

TEST(MetricNameTest, RoundTrips) {
  std::set<std::string> names;
  for (Metric metric : AllMetrics()) {
    const std::string name(MetricName(metric));
    names.insert(name);
    auto parsed = ParseMetric(name);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, metric);
  }
  EXPECT_EQ(names, (std::set<std::string>{"tmi", "logme", "leep", "nce", "hscore",
                                          "shrinkage_hscore", "gbc", "sfda"}));
  auto bad = ParseMetric("TMI");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("shrinkage_hscore"));
  EXPECT_FALSE(ParseMetric("").ok());
}

TEST(MetricNameTest, OnlyLeepAndNceUseLogits) {
  for (Metric metric : AllMetrics()) {
    EXPECT_EQ(UsesLogits(metric), metric == Metric::kLeep || metric == Metric::kNce)
        << MetricName(metric);
  }
}

}  // namespace
}  // namespace modeldock::scoring
