// The Recommender part on its own: a fake ModelRunner (model_runner.h) stands for the sandbox's
// workers, a SQLite store holds the rows, and the build's assets give the knowledge spaces. The
// queries are tabular (no knowledge space holds tabular models), so stage 2 scores every
// compatible model on the fake runner's outputs, and each score is checked against the metric
// computed here on the same outputs.
#include "dock/recommender.h"

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "dock/metadata_store.h"
#include "dock/testing/dock_fixture.h"
#include "gtest/gtest.h"
#include "scoring/metrics.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;
using test::AssetDir;

constexpr int kClasses = 3;
constexpr int kWidth = 8;  // tabular samples: [N, 8]

// Outputs = samples x the model's weights ([8, 3], by model name); a model the test sets an
// error for fails with it. Counts the runs of each model.
class FakeRunner : public ModelRunner {
 public:
  absl::StatusOr<RunOutputs> Run(const ModelRecord& record, const Tensor& samples,
                                 const RunRequest&) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++runs_[record.spec.name];
    if (auto e = errors_.find(record.spec.name); e != errors_.end()) return e->second;
    return RunOutputs{Outputs(weights_.at(record.spec.name), samples), {}, {}, 1.0};
  }
  bool IsLoaded(const ModelRecord&) override { return true; }
  void Forget(const ModelRecord&) override {}

  static Tensor Outputs(const std::vector<float>& weights, const Tensor& samples) {
    Tensor out;
    out.shape = {samples.Rows(), kClasses};
    for (int64_t i = 0; i < samples.Rows(); ++i) {
      for (int k = 0; k < kClasses; ++k) {
        float sum = 0;
        for (int d = 0; d < kWidth; ++d) {
          sum += samples.values[i * kWidth + d] * weights[d * kClasses + k];
        }
        out.values.push_back(sum);
      }
    }
    return out;
  }
  int Runs(const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    return runs_[name];
  }

  std::mutex mutex_;
  std::map<std::string, std::vector<float>> weights_;
  std::map<std::string, absl::Status> errors_;
  std::map<std::string, int> runs_;
};

// Weights reading dimension `first + k` into output k, times `gain`.
std::vector<float> Reads(int first, float gain) {
  std::vector<float> w(kWidth * kClasses, 0.0f);
  for (int k = 0; k < kClasses; ++k) w[(first + k) * kClasses + k] = gain;
  return w;
}

class RecommenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    dir_ = fs::temp_directory_path() /
           ("modeldock-recommender-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "index");
    auto opened = OpenMetadataStore((dir_ / "modeldock.db").string());
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(*opened);
    SpaceOverrides overrides;
    overrides.data_dir = dir_.string();
    auto specs = ReadSpaces(AssetDir(), overrides);
    ASSERT_TRUE(specs.ok()) << specs.status();
    specs->resize(1);  // the grey space is enough: no tabular model is in a space
    auto spaces =
        KnowledgeSpaces::Load(*specs, store_.get(), [] { return LearningLoop::Serving(); });
    ASSERT_TRUE(spaces.ok()) << spaces.status();
    spaces_ = std::move(*spaces);
    learning_ = std::make_unique<LearningLoop>(
        LearningLoop::Tables{store_.get(), store_.get(), store_.get()},
        [](int64_t) { return absl::OkStatus(); });
    RecommenderOptions options;
    options.stage2_workers = 2;
    recommender_ = std::make_unique<Recommender>(
        options, Recommender::Deps{store_.get(), store_.get(), store_.get(), spaces_.get(),
                                   &runner_, learning_.get()});
    // The signal: output k of "signal" reads dimension k, where class k's samples are high;
    // "weak" reads the same dimensions at a third of the gain plus the noise dimensions 3..5;
    // "noise" reads the noise dimensions 5..7 only.
    runner_.weights_["signal"] = Reads(0, 1.0f);
    runner_.weights_["weak"] = Reads(0, 0.3f);
    std::vector<float> noise_part = Reads(3, 1.0f);
    for (size_t i = 0; i < noise_part.size(); ++i) runner_.weights_["weak"][i] += noise_part[i];
    runner_.weights_["noise"] = Reads(5, 1.0f);
    int created = 1;
    for (const char* name : {"noise", "weak", "signal"}) Insert(name, created++);
  }
  void TearDown() override {
    recommender_.reset();
    learning_.reset();
    spaces_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  // A READY tabular 3-class classifier taking [8] (no embed: scored on its outputs).
  void Insert(const std::string& name, int created) {
    ModelRecord r;
    r.id = "m-" + name;
    r.spec.name = name;
    r.spec.task = TaskKind::kTabularClassification;
    r.spec.input_shape = {kWidth};
    for (int k = 0; k < kClasses; ++k) r.spec.class_labels.push_back("c" + std::to_string(k));
    r.state = ModelState::kReady;
    r.sha256 = std::string(64, static_cast<char>('a' + created));
    r.revision = 1;
    r.created_unix_ms = created;
    ASSERT_TRUE(store_->Insert(r).ok());
  }
  // 30 seeded samples of 3 classes: dimension `label` is 2 higher, every dimension has unit
  // Gaussian noise.
  static RecommendQuery Query(Metric metric) {
    std::mt19937 rng(17);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    RecommendQuery query;
    query.task = TaskKind::kTabularClassification;
    query.metric = metric;
    query.top_k = 10;
    Tensor& x = query.dataset.samples;
    x.shape = {30, kWidth};
    for (int i = 0; i < 30; ++i) {
      const int label = i % kClasses;
      query.dataset.labels.push_back(label);
      for (int d = 0; d < kWidth; ++d) x.values.push_back(gauss(rng) + (d == label ? 2.0f : 0.0f));
    }
    return query;
  }
  // The metric computed here on a model's outputs on the query.
  double Expected(scoring::Metric metric, const std::string& name, const RecommendQuery& query) {
    const Tensor outputs = FakeRunner::Outputs(runner_.weights_.at(name), query.dataset.samples);
    scoring::ScoreInput input;
    input.features = &outputs;
    input.logits = &outputs;
    input.labels = &query.dataset.labels;
    input.num_classes = kClasses;
    auto value = scoring::Score(metric, input);
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() ? *value : 0;
  }

  fs::path dir_;
  std::unique_ptr<MetadataStore> store_;
  std::unique_ptr<KnowledgeSpaces> spaces_;
  std::unique_ptr<LearningLoop> learning_;
  FakeRunner runner_;
  std::unique_ptr<Recommender> recommender_;
};

TEST_F(RecommenderTest, RanksTheFakeRunnersModelsByTheirLogMeOnTheQuery) {
  const RecommendQuery query = Query(Metric::kLogMe);
  auto result = recommender_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->num_compatible, 3);
  EXPECT_EQ(result->num_scored, 3);
  EXPECT_EQ(result->mode, RecommendMode::kScoredAll);
  EXPECT_EQ(result->label_source, "given");
  ASSERT_EQ(result->results.size(), 3u);
  // The models by construction: the one reading the class dimensions, the one reading them
  // weakly beside noise, the one reading noise only.
  const std::vector<std::string> expected_order = {"signal", "weak", "noise"};
  for (size_t i = 0; i < 3; ++i) {
    const Recommendation& rec = result->results[i];
    EXPECT_EQ(rec.model.spec.name, expected_order[i]) << "rank " << i + 1;
    EXPECT_EQ(rec.rank, static_cast<int>(i) + 1);
    EXPECT_TRUE(rec.scored);
    EXPECT_DOUBLE_EQ(rec.score, Expected(scoring::Metric::kLogMe, rec.model.spec.name, query));
    EXPECT_DOUBLE_EQ(rec.stage2_score, rec.score);
  }
  EXPECT_GT(result->results[0].score, result->results[1].score);
  EXPECT_GT(result->results[1].score, result->results[2].score);
}

TEST_F(RecommenderTest, CachesOutputsByDatasetUntilTheModelIsForgotten) {
  const RecommendQuery query = Query(Metric::kFusion);
  auto first = recommender_->Recommend(query);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->results.size(), 3u);
  EXPECT_EQ(first->results[0].model.spec.name, "signal");
  EXPECT_EQ(first->num_cached, 0);
  auto second = recommender_->Recommend(query);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->num_cached, 3);  // the same samples: no model runs again
  for (const char* name : {"signal", "weak", "noise"}) EXPECT_EQ(runner_.Runs(name), 1) << name;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(second->results[i].model.spec.name, first->results[i].model.spec.name);
    EXPECT_DOUBLE_EQ(second->results[i].score, first->results[i].score);
  }
  DockStats stats;
  recommender_->AddStats(&stats);
  EXPECT_EQ(stats.recommends, 2);
  EXPECT_EQ(stats.output_cache_hits, 3);
  EXPECT_EQ(stats.output_cache_misses, 3);

  auto signal = store_->Get("m-signal");
  ASSERT_TRUE(signal.ok()) << signal.status();
  recommender_->ForgetModel(*signal);
  auto third = recommender_->Recommend(query);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->num_cached, 2);
  EXPECT_EQ(runner_.Runs("signal"), 2);
  EXPECT_EQ(runner_.Runs("weak"), 1);
}

TEST_F(RecommenderTest, AModelThatHitALimitIsSkippedOnTheSameDatasetWithoutRunning) {
  runner_.errors_["weak"] = absl::DeadlineExceededError("ran past its 60 s limit");
  const RecommendQuery query = Query(Metric::kLogMe);
  auto first = recommender_->Recommend(query);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->results.size(), 3u);
  EXPECT_EQ(first->num_scored, 2);
  EXPECT_EQ(first->results[0].model.spec.name, "signal");
  EXPECT_EQ(first->results[1].model.spec.name, "noise");
  EXPECT_EQ(first->results[2].model.spec.name, "weak");  // listed after the scored ones
  EXPECT_FALSE(first->results[2].scored);
  ASSERT_EQ(first->warnings.size(), 1u);
  EXPECT_EQ(first->warnings[0], "skipped weak: ran past its 60 s limit");

  auto second = recommender_->Recommend(query);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(runner_.Runs("weak"), 1);  // remembered: not run again on this dataset
  ASSERT_EQ(second->warnings.size(), 1u);
  EXPECT_NE(second->warnings[0].find("skipped weak: on this dataset it hit a limit"),
            std::string::npos)
      << second->warnings[0];

  // Another dataset runs it again.
  RecommendQuery other = query;
  other.dataset.samples.values[0] += 1.0f;
  auto third = recommender_->Recommend(other);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(runner_.Runs("weak"), 2);
}

TEST_F(RecommenderTest, AnInvalidQueryIsRefusedBeforeAnyRun) {
  RecommendQuery query = Query(Metric::kLogMe);
  query.top_k = 0;
  auto result = recommender_->Recommend(query);
  EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_EQ(runner_.Runs("signal"), 0);
}

}  // namespace
}  // namespace modeldock::dock
