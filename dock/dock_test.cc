// Engine-level tests of the dock on real parts: the demo TorchScript models and probe set built
// by scripts/make_assets.py (MODELDOCK_ASSET_DIR), a real SQLite file and FAISS index.
#include "dock/dock.h"

#include <algorithm>
#include <atomic>
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

using sandbox::ProcessCpuSeconds;
namespace fs = std::filesystem;

std::string AssetDir() {
  const char* dir = std::getenv("MODELDOCK_ASSET_DIR");
  return dir ? dir : "";
}

ModelSpec SpecFromSidecar(const std::string& json_path) {
  std::ifstream in(json_path);
  nlohmann::json j = nlohmann::json::parse(in);
  ModelSpec spec;
  spec.name = j.at("name");
  spec.version = j.value("version", "");
  spec.description = j.value("description", "");
  spec.input_shape = j.at("input_shape").get<std::vector<int64_t>>();
  spec.class_labels = j.at("class_labels").get<std::vector<std::string>>();
  spec.license = j.value("license", "");
  spec.tags = j.value("tags", std::vector<std::string>{});
  return spec;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class DockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set (run scripts/make_assets.py)";
    ASSERT_TRUE(fs::exists(fs::path(AssetDir()) / "MANIFEST.json")) << "assets missing in " << AssetDir();
    data_dir_ = fs::temp_directory_path() /
                ("modeldock-dock-test-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(data_dir_);
    OpenDock();
  }
  void TearDown() override {
    dock_.reset();
    fs::remove_all(data_dir_);
  }
  bool learn_from_recommendations_ = false;  // DockOptions of the next OpenDock()
  virtual void OpenDock() {
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.asset_dir = AssetDir();
    options.learn_from_recommendations = learn_from_recommendations_;
    auto dock = Dock::Create(options);
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
  }

  // Registers demo/<name>.pt and waits until it leaves PENDING/PROBING.
  ModelRecord Register(const std::string& name) {
    std::string base = (fs::path(AssetDir()) / "demo" / name).string();
    std::string bytes = ReadFile(base + ".pt");
    auto upload = dock_->BeginRegistration(SpecFromSidecar(base + ".json"),
                                           static_cast<int64_t>(bytes.size()), Sha256::Of(bytes));
    EXPECT_TRUE(upload.ok()) << upload.status();
    if (!upload.ok()) return {};
    EXPECT_TRUE((*upload)->Write(bytes).ok());
    auto result = dock_->FinishRegistration(std::move(*upload));
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return {};
    ModelRecord record = result->model;
    for (int i = 0; i < 600 && (record.state == ModelState::kPending ||
                                record.state == ModelState::kProbing); ++i) {
      auto next = dock_->WaitForChange(record.id, record.revision, absl::Milliseconds(500));
      EXPECT_TRUE(next.ok()) << next.status();
      if (!next.ok()) break;
      record = *next;
    }
    EXPECT_EQ(record.state, ModelState::kReady) << name << ": " << record.state_reason;
    return record;
  }

  // Uploads `bytes` as `spec` for `owner` and waits until the model leaves PENDING/PROBING;
  // the final record, or the registration's error.
  absl::StatusOr<ModelRecord> RegisterBytes(const ModelSpec& spec, const std::string& bytes,
                                            const std::string& owner = "") {
    auto upload = dock_->BeginRegistration(spec, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes), owner);
    if (!upload.ok()) return upload.status();
    if (absl::Status s = (*upload)->Write(bytes); !s.ok()) return s;
    auto result = dock_->FinishRegistration(std::move(*upload));
    if (!result.ok()) return result.status();
    ModelRecord record = result->model;
    while (record.state == ModelState::kPending || record.state == ModelState::kProbing) {
      auto next = dock_->WaitForChange(record.id, record.revision, absl::Seconds(1));
      if (!next.ok()) return next.status();
      record = *next;
    }
    return record;
  }

  RecommendQuery TopsQuery() {
    std::string dir = (fs::path(AssetDir()) / "demo" / "query_tops").string();
    datasets::LoadOptions load;
    load.labels_path = dir + "/query-labels-idx1-ubyte";
    auto dataset = datasets::LoadIdx(dir + "/query-images-idx3-ubyte", load);
    EXPECT_TRUE(dataset.ok()) << dataset.status();
    RecommendQuery query;
    query.dataset = std::move(*dataset);
    query.top_k = 10;
    return query;
  }

  static std::map<std::string, const Recommendation*> ByName(const RecommendResult& result) {
    std::map<std::string, const Recommendation*> out;
    for (const auto& r : result.results) out[r.model.spec.name] = &r;
    return out;
  }

  fs::path data_dir_;
  std::unique_ptr<Dock> dock_;
};

// ---- Learning from outcomes (issue 9).

// Derived query datasets (different samples: different query ids and stage-1 views) from the
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

// ---- Feature extractors (issue 12, part 1).

class FeatureExtractorTest : public DockTest {
 protected:
  // Registers `file` as a feature extractor named `name`; returns the final record or status.
  absl::StatusOr<ModelRecord> RegisterExtractor(const std::string& file, const std::string& name) {
    ModelSpec spec;
    spec.name = name;
    spec.input_shape = {1, 28, 28};
    spec.kind = ModelKind::kFeatureExtractor;
    return RegisterBytes(spec, ReadFile(file));
  }
  // The demo tops classifier with its head cut off (scripts/headless_model.py).
  std::string HeadlessTops() {
    const std::string out = (data_dir_ / "headless-tops.pt").string();
    const std::string command =
        absl::StrCat(MODELDOCK_PYTHON, " ", MODELDOCK_HEADLESS_SCRIPT, " ",
                     (fs::path(AssetDir()) / "demo" / "fmnist-tops-cnn.pt").string(), " ", out);
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    return out;
  }
};

TEST_F(FeatureExtractorTest, RegistersWithoutLabelsAndScoresOnTheClassifiersScale) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  auto headless = RegisterExtractor(HeadlessTops(), "tops-headless");
  ASSERT_TRUE(headless.ok()) << headless.status();
  EXPECT_EQ(headless->state, ModelState::kReady) << headless->state_reason;
  EXPECT_EQ(headless->spec.kind, ModelKind::kFeatureExtractor);
  EXPECT_EQ(headless->feature_dim, 64);
  EXPECT_TRUE(headless->spec.class_labels.empty());

  // Its features are the classifier's embed features: the default's feature members (on the
  // top principal components) and stage 1 must give both exactly the same values. NCE, the
  // fusion's class-output member, measures the classifier only.
  RecommendQuery query = TopsQuery();
  query.brute_force = true;
  auto result = dock_->Recommend(query);
  ASSERT_TRUE(result.ok()) << result.status();
  auto by_name = ByName(*result);
  ASSERT_EQ(by_name.size(), 3u);
  const std::string& headless_reason = by_name["tops-headless"]->reason;
  const std::string& classifier_reason = by_name["fmnist-tops-cnn"]->reason;
  for (const std::string member : {"logme ", "shrinkage_hscore "}) {
    const size_t at = classifier_reason.find(member);
    ASSERT_NE(at, std::string::npos) << classifier_reason;
    const std::string value = classifier_reason.substr(at, classifier_reason.find(' ', at + member.size()) - at);
    EXPECT_THAT(headless_reason, ::testing::HasSubstr(value + " (rank")) << classifier_reason;
  }
  EXPECT_THAT(headless_reason, ::testing::HasSubstr("nce not measured"));
  EXPECT_THAT(classifier_reason, ::testing::HasSubstr("nce "));
  EXPECT_THAT(headless_reason, ::testing::HasSubstr("feature extractor"));
  query.brute_force = false;
  query.metric = Metric::kNone;
  auto stage1 = dock_->Recommend(query);
  ASSERT_TRUE(stage1.ok());
  auto stage1_by_name = ByName(*stage1);
  EXPECT_DOUBLE_EQ(stage1_by_name["tops-headless"]->stage1_score,
                   stage1_by_name["fmnist-tops-cnn"]->stage1_score);
  // Logit-only metrics skip it, and say why.
  query.metric = Metric::kLeep;
  query.brute_force = true;
  auto leep = dock_->Recommend(query);
  ASSERT_TRUE(leep.ok()) << leep.status();
  EXPECT_EQ(leep->num_scored, 2);
  EXPECT_THAT(absl::StrJoin(leep->warnings, "\n"),
              ::testing::HasSubstr("tops-headless: leep scores a classifier's outputs"));
  // The kind survives a restart.
  dock_.reset();
  OpenDock();
  auto reloaded = dock_->GetModel("tops-headless");
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(reloaded->spec.kind, ModelKind::kFeatureExtractor);
  EXPECT_EQ(reloaded->state, ModelState::kReady);
}

TEST_F(FeatureExtractorTest, BadExtractorsAndBadSpecsAreRefusedWithAReason) {
  const std::string crafted = MODELDOCK_CRAFTED_DIR;
  auto non_finite = RegisterExtractor(crafted + "/extractor_non_finite.pt", "nan-features");
  ASSERT_FALSE(non_finite.ok());
  EXPECT_EQ(non_finite.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(non_finite.status().message()), ::testing::HasSubstr("NaN/Inf"));
  auto ragged = RegisterExtractor(crafted + "/extractor_ragged.pt", "ragged-features");
  ASSERT_FALSE(ragged.ok());
  EXPECT_EQ(ragged.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ragged.status().message()), ::testing::HasSubstr("forward returned shape [4, 2, 4]"));
  // Labels on an extractor, or none on a classifier: INVALID_ARGUMENT before any upload.
  ModelSpec spec;
  spec.name = "x";
  spec.input_shape = {1, 28, 28};
  spec.kind = ModelKind::kFeatureExtractor;
  spec.class_labels = {"a", "b"};
  auto with_labels = dock_->BeginRegistration(spec, 10, std::string(64, '0'));
  EXPECT_EQ(with_labels.status().code(), absl::StatusCode::kInvalidArgument);
  spec.kind = ModelKind::kClassifier;
  spec.class_labels.clear();
  auto no_labels = dock_->BeginRegistration(spec, 10, std::string(64, '0'));
  EXPECT_EQ(no_labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_labels.status().message()), ::testing::HasSubstr("feature extractor"));
  auto list = dock_->ListModels(ListFilter(), 100, "");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->total_size, 0) << "a refused extractor left a model behind";
}

// ---- Model versions (issue 10, part 3).

class VersionTest : public DockTest {
 protected:
  // Registers demo/<stem>.pt as `name` version `version` for `owner`; the final record.
  absl::StatusOr<ModelRecord> RegisterVersion(const std::string& stem, const std::string& name,
                                              const std::string& version,
                                              const std::string& owner = "") {
    const std::string base = (fs::path(AssetDir()) / "demo" / stem).string();
    ModelSpec spec = SpecFromSidecar(base + ".json");
    spec.name = name;
    spec.version = version;
    return RegisterBytes(spec, ReadFile(base + ".pt"), owner);
  }
};

// Two keys upload a new name at the same time: both pass BeginRegistration's check (the name is
// free), and the one that finishes second must be refused, not become a second owner.
TEST_F(VersionTest, ConcurrentUploadsOfANewNameLeaveItOneOwner) {
  std::string base = (fs::path(AssetDir()) / "demo" / "fmnist-tops-cnn").string();
  std::string bytes = ReadFile(base + ".pt");
  ModelSpec spec_a = SpecFromSidecar(base + ".json");
  spec_a.name = "contested";
  spec_a.version = "1.0";
  ModelSpec spec_b = spec_a;
  spec_b.version = "2.0";
  auto upload_a = dock_->BeginRegistration(spec_a, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes), "key-a");
  auto upload_b = dock_->BeginRegistration(spec_b, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes), "key-b");
  ASSERT_TRUE(upload_a.ok()) << upload_a.status();
  ASSERT_TRUE(upload_b.ok()) << upload_b.status();
  ASSERT_TRUE((*upload_a)->Write(bytes).ok());
  ASSERT_TRUE((*upload_b)->Write(bytes).ok());
  auto first = dock_->FinishRegistration(std::move(*upload_a));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = dock_->FinishRegistration(std::move(*upload_b));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kPermissionDenied) << second.status();
  EXPECT_THAT(std::string(second.status().message()), ::testing::HasSubstr("belongs to key key-a"));
  auto versions = dock_->GetModel("contested@2.0");
  EXPECT_EQ(versions.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dock_->ListModels(ListFilter(), 100, "")->total_size, 1);
}

TEST_F(VersionTest, NamesResolveToVersionsAndRecommendationsListEachNameOnce) {
  auto v1 = RegisterVersion("fmnist-tops-cnn", "tops", "1.0", "key-a");
  ASSERT_TRUE(v1.ok()) << v1.status();
  auto v2 = RegisterVersion("fmnist-all-mlp", "tops", "2.0", "key-a");
  ASSERT_TRUE(v2.ok()) << v2.status();
  ASSERT_EQ(v2->state, ModelState::kReady) << v2->state_reason;
  Register("fmnist-footwear-cnn");

  // NAME = the latest READY version; NAME@VERSION = that one; ids still work.
  EXPECT_EQ(dock_->GetModel("tops")->id, v2->id);
  EXPECT_EQ(dock_->GetModel("tops@1.0")->id, v1->id);
  EXPECT_EQ(dock_->GetModel("tops@2.0")->id, v2->id);
  EXPECT_EQ(dock_->GetModel(v1->id)->spec.version, "1.0");
  auto missing = dock_->GetModel("tops@3.0");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), ::testing::HasSubstr("its versions: 1.0, 2.0"));

  // The same version again, or a version from another key: refused, nothing stored.
  auto again = RegisterVersion("fmnist-tops-cnn", "tops", "1.0", "key-a");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  auto other = RegisterVersion("fmnist-tops-cnn", "tops", "3.0", "key-b");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(other.status().message()), ::testing::HasSubstr("belongs to key key-a"));
  auto bad = RegisterVersion("fmnist-tops-cnn", "tops", "1.0 beta", "key-a");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dock_->ListModels(ListFilter(), 100, "")->total_size, 3);

  // One entry per name (its best-ranked version) unless every version is asked for.
  RecommendQuery query = TopsQuery();
  query.brute_force = true;
  auto folded = dock_->Recommend(query);
  ASSERT_TRUE(folded.ok()) << folded.status();
  ASSERT_EQ(folded->results.size(), 2u);
  EXPECT_EQ(folded->num_scored, 3);
  std::set<std::string> names;
  for (const Recommendation& r : folded->results) names.insert(r.model.spec.name);
  EXPECT_EQ(names, (std::set<std::string>{"tops", "fmnist-footwear-cnn"}));
  for (const Recommendation& r : folded->results) {
    if (r.model.spec.name == "tops") {
      EXPECT_THAT(r.reason, ::testing::HasSubstr("the best ranked of its 2 versions"));
    }
  }
  query.all_versions = true;
  auto every = dock_->Recommend(query);
  ASSERT_TRUE(every.ok()) << every.status();
  ASSERT_EQ(every->results.size(), 3u);
  // The folded list is the full list without the lower-ranked version.
  std::vector<std::string> kept;
  std::set<std::string> seen;
  for (const Recommendation& r : every->results) {
    if (seen.insert(r.model.spec.name).second) kept.push_back(r.model.id);
  }
  std::vector<std::string> folded_ids;
  for (const Recommendation& r : folded->results) folded_ids.push_back(r.model.id);
  EXPECT_EQ(folded_ids, kept);

  // A bare name with several versions is ambiguous for a deletion.
  auto ambiguous = dock_->DeleteModel("tops");
  EXPECT_EQ(ambiguous.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ambiguous.status().message()), ::testing::HasSubstr("2 versions (1.0, 2.0)"));
  ASSERT_TRUE(dock_->DeleteModel("tops@2.0").ok());
  EXPECT_EQ(dock_->GetModel("tops")->id, v1->id);  // the remaining version
  auto v3 = RegisterVersion("fmnist-tops-cnn", "tops", "3.0", "key-a");
  ASSERT_TRUE(v3.ok()) << v3.status();
  auto all = dock_->DeleteAllVersions("tops");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, (std::vector<std::string>{v1->id, v3->id}));
  EXPECT_EQ(dock_->GetModel("tops").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dock_->DeleteAllVersions("tops").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dock_->ListModels(ListFilter(), 100, "")->total_size, 1);
  // Versions survive a restart.
  auto v4 = RegisterVersion("fmnist-tops-cnn", "tops", "4.0", "key-a");
  ASSERT_TRUE(v4.ok());
  dock_.reset();
  OpenDock();
  EXPECT_EQ(dock_->GetModel("tops@4.0")->id, v4->id);
}

// ---- Layer selection (issue 12, part 2): models that export embed_layers(x).

class LayerTest : public DockTest {
 protected:
  // Registers crafted model `file` as a 10-class classifier named `name`; the final record.
  absl::StatusOr<ModelRecord> RegisterCrafted(const std::string& file, const std::string& name) {
    ModelSpec spec;
    spec.name = name;
    spec.input_shape = {1, 28, 28};
    for (int c = 0; c < 10; ++c) spec.class_labels.push_back(absl::StrCat("c", c));
    return RegisterBytes(spec, ReadFile(std::string(MODELDOCK_CRAFTED_DIR) + "/" + file));
  }
};

TEST_F(LayerTest, ScoresEveryLayerAndRecommendsTheModelWithItsBestLayer) {
  Register("fmnist-tops-cnn");
  Register("fmnist-footwear-cnn");
  auto layered = RegisterCrafted("layers.pt", "layered");
  ASSERT_TRUE(layered.ok()) << layered.status();
  ASSERT_EQ(layered->state, ModelState::kReady) << layered->state_reason;
  ASSERT_EQ(layered->layers.size(), 3u);
  EXPECT_EQ(layered->layers[0].name, "pixels");
  EXPECT_EQ(layered->layers[0].dim, 49);
  EXPECT_EQ(layered->layers[1].name, "corners");
  EXPECT_EQ(layered->layers[1].dim, 4);
  EXPECT_EQ(layered->layers[2].name, "hidden");
  EXPECT_EQ(layered->layers[2].dim, 16);

  for (Metric metric : {Metric::kFusion, Metric::kLogMe, Metric::kTmi}) {
    RecommendQuery query = TopsQuery();
    query.brute_force = true;
    query.metric = metric;
    auto result = dock_->Recommend(query);
    ASSERT_TRUE(result.ok()) << result.status();
    auto by_name = ByName(*result);
    ASSERT_EQ(by_name.size(), 3u);
    const Recommendation& r = *by_name["layered"];
    ASSERT_EQ(r.layer_scores.size(), 3u) << r.reason;
    double best = -HUGE_VAL;
    std::string best_name;
    for (size_t l = 0; l < 3; ++l) {
      EXPECT_EQ(r.layer_scores[l].name, layered->layers[l].name);
      EXPECT_EQ(r.layer_scores[l].dim, layered->layers[l].dim);
      if (r.layer_scores[l].score > best) {
        best = r.layer_scores[l].score;
        best_name = r.layer_scores[l].name;
      }
    }
    // The model scores as its best layer, and says so. With layers in the dock, every view is
    // compared on its top principal components (TMI excepted), models without layers too.
    EXPECT_EQ(r.layer, best_name);
    EXPECT_DOUBLE_EQ(r.stage2_score, best);
    EXPECT_EQ(by_name["fmnist-tops-cnn"]->reason.find("principal components") != std::string::npos,
              metric != Metric::kTmi)
        << by_name["fmnist-tops-cnn"]->reason;
    EXPECT_THAT(r.reason, ::testing::HasSubstr(absl::StrCat("layer '", best_name, "'")));
    EXPECT_THAT(r.reason, ::testing::HasSubstr("the best of its 3 scored layers"));
    // Four corner pixels, zero on almost every Fashion-MNIST image, tell the classes apart worst.
    EXPECT_LT(r.layer_scores[1].score, r.layer_scores[0].score) << r.reason;
    EXPECT_LT(r.layer_scores[1].score, r.layer_scores[2].score) << r.reason;
    // Models without embed_layers are scored as before, on one set of features.
    EXPECT_TRUE(by_name["fmnist-tops-cnn"]->layer.empty());
    EXPECT_TRUE(by_name["fmnist-tops-cnn"]->layer_scores.empty());
    if (metric == Metric::kFusion) {
      // Ranked among all 5 scored views: 2 models' embed features and 3 layers.
      EXPECT_THAT(r.reason, ::testing::HasSubstr("of 5 model layers"));
    }
  }
  // A logit metric has nothing to choose between: no layers.
  RecommendQuery leep = TopsQuery();
  leep.brute_force = true;
  leep.metric = Metric::kLeep;
  auto by_logits = dock_->Recommend(leep);
  ASSERT_TRUE(by_logits.ok()) << by_logits.status();
  EXPECT_TRUE(ByName(*by_logits)["layered"]->layer.empty());

  // The layers survive a restart.
  dock_.reset();
  OpenDock();
  auto reloaded = dock_->GetModel("layered");
  ASSERT_TRUE(reloaded.ok());
  ASSERT_EQ(reloaded->layers.size(), 3u);
  EXPECT_EQ(reloaded->layers[2].name, "hidden");
  EXPECT_EQ(reloaded->layers[2].dim, 16);
}

TEST_F(LayerTest, UnnamedLayersAreNumbered) {
  auto unnamed = RegisterCrafted("layers_unnamed.pt", "unnamed");
  ASSERT_TRUE(unnamed.ok()) << unnamed.status();
  ASSERT_EQ(unnamed->layers.size(), 2u);
  EXPECT_EQ(unnamed->layers[0].name, "layer0");
  EXPECT_EQ(unnamed->layers[0].dim, 8);
  EXPECT_EQ(unnamed->layers[1].name, "layer1");
  EXPECT_EQ(unnamed->layers[1].dim, 32);
}

TEST_F(LayerTest, BadLayerExportsAreRefusedWithAReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"layers_ragged.pt", "embed_layers layer 1 returned shape [4, 2, 4]"},
      {"layers_non_finite.pt", "embed_layers layer 1 returned NaN/Inf"},
      {"layers_too_many.pt", "embed_layers returned 12 layers; the dock scores at most 8"},
      {"layers_misnamed.pt", "layer_names has 3 names but embed_layers returned 2 layers"},
  };
  for (const auto& [file, message] : cases) {
    auto result = RegisterCrafted(file, "bad-layers");
    ASSERT_FALSE(result.ok()) << file;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << file;
    EXPECT_THAT(std::string(result.status().message()), ::testing::HasSubstr(message)) << file;
  }
  auto list = dock_->ListModels(ListFilter(), 100, "");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->total_size, 0) << "a refused model left a record behind";
}

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
  EXPECT_EQ(*(*store)->GetMeta("schema_version"), "6");
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
  // The default fusion's score is the members' mean rank over the scored models / their number.
  EXPECT_DOUBLE_EQ(all->results[0].score, all->results[0].stage2_score);
  EXPECT_LE(all->results[0].score, 1.0);
  EXPECT_NE(all->results[0].reason.find("logme"), std::string::npos) << all->results[0].reason;
  EXPECT_NE(all->results[0].reason.find("shrinkage_hscore"), std::string::npos);
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

// Live modeldock-worker children of this process.
std::vector<pid_t> WorkerChildren() {
  std::vector<pid_t> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == getpid() && line.substr(open + 1, close - open - 1).rfind("modeldock-work", 0) == 0) {
      pids.push_back(static_cast<pid_t>(std::stol(entry.path().filename().string())));
    }
  }
  return pids;
}


class HostileModelTest : public DockTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(Crafted("good"))) << "crafted_models.py did not run";
    DockTest::SetUp();
  }
  void OpenDock() override {
    DockOptions options;
    options.data_dir = data_dir_.string();
    options.asset_dir = AssetDir();
    options.sandbox.workers = 2;
    // Small enough that memory_hog is killed, on every batch, within the admission time: it is
    // killed at batches of 4, 2 and 1 (a fresh worker each time), which takes a few seconds on a
    // busy box, so the limit leaves room for that.
    options.sandbox.memory_limit_bytes = 768ll << 20;
    options.sandbox.admission_time_limit = absl::Seconds(8);
    options.sandbox.probe_time_limit = probe_time_limit_;
    options.probe_workers = 2;
    auto dock = Dock::Create(options);
    ASSERT_TRUE(dock.ok()) << dock.status();
    dock_ = std::move(*dock);
  }
  static std::string Crafted(const std::string& name) {
    return (fs::path(MODELDOCK_CRAFTED_DIR) / (name + ".pt")).string();
  }
  absl::StatusOr<ModelRecord> Upload(const std::string& name) {
    ModelSpec spec;
    spec.name = name;
    spec.input_shape = {1, 28, 28};
    for (int i = 0; i < 10; ++i) spec.class_labels.push_back("c" + std::to_string(i));
    std::string bytes = ReadFile(Crafted(name));
    auto upload = dock_->BeginRegistration(spec, static_cast<int64_t>(bytes.size()),
                                           Sha256::Of(bytes));
    if (!upload.ok()) return upload.status();
    if (absl::Status s = (*upload)->Write(bytes); !s.ok()) return s;
    auto result = dock_->FinishRegistration(std::move(*upload));
    if (!result.ok()) return result.status();
    return result->model;
  }
  ModelRecord WaitSettled(ModelRecord record) {
    for (int i = 0; i < 600 && (record.state == ModelState::kPending ||
                                record.state == ModelState::kProbing); ++i) {
      auto next = dock_->WaitForChange(record.id, record.revision, absl::Milliseconds(500));
      if (!next.ok()) break;
      record = *next;
    }
    return record;
  }
  absl::Duration probe_time_limit_ = absl::Seconds(20);
};

TEST_F(HostileModelTest, EveryCraftedModelIsContainedWithAReason) {
  const std::vector<std::tuple<std::string, absl::StatusCode, std::string>> refused = {
      {"raises", absl::StatusCode::kFailedPrecondition, "this model always fails"},
      {"huge_allocation", absl::StatusCode::kResourceExhausted, "memory limit 768 MiB"},
      {"wrong_width", absl::StatusCode::kFailedPrecondition, "declares 10 labels"},
      {"integer_outputs", absl::StatusCode::kFailedPrecondition, "expected float"},
      {"out_of_bounds_strided", absl::StatusCode::kFailedPrecondition, "raised an error"},
      {"huge_embed", absl::StatusCode::kFailedPrecondition, "accepts at most 65536"},
      {"memory_hog", absl::StatusCode::kResourceExhausted, "MiB resident > 768 MiB (--worker-memory-mb)"},
      {"never_returns", absl::StatusCode::kDeadlineExceeded, "wall-time limit of 8s"},
      // Its tasks share the worker's one inter-op thread: the wall limit ends it (sandbox_test
      // shows the CPU limit on it).
      {"spawns_threads", absl::StatusCode::kDeadlineExceeded, "wall-time limit of 8s"},
  };
  for (const auto& [name, code, reason] : refused) {
    auto record = Upload(name);
    EXPECT_EQ(record.status().code(), code) << name << ": " << record.status();
    EXPECT_THAT(std::string(record.status().message()), ::testing::HasSubstr(reason)) << name;
  }
  auto listed = dock_->ListModels({}, 100, "");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->total_size, 0);  // nothing half-registered

  // Admitted, then caught while probing; a good model registered behind the hanging one is
  // probed meanwhile (the queue is not held up).
  auto hangs = Upload("hangs_on_probing");
  ASSERT_TRUE(hangs.ok()) << hangs.status();
  auto nan = Upload("nan_on_probe_like_images");
  ASSERT_TRUE(nan.ok()) << nan.status();
  ModelRecord good = Register("fmnist-tops-cnn");
  EXPECT_EQ(good.state, ModelState::kReady);
  ModelRecord nan_done = WaitSettled(*nan);
  EXPECT_EQ(nan_done.state, ModelState::kFailed);
  EXPECT_THAT(nan_done.state_reason, ::testing::HasSubstr("NaN"));
  ModelRecord hangs_done = WaitSettled(*hangs);
  EXPECT_EQ(hangs_done.state, ModelState::kFailed);
  EXPECT_THAT(hangs_done.state_reason, ::testing::HasSubstr("wall-time limit of 20s"));

  auto result = dock_->Recommend(TopsQuery());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->results.size(), 1u);
  EXPECT_EQ(result->results[0].model.spec.name, "fmnist-tops-cnn");

  // Nothing keeps spinning: neither this process nor its workers use CPU while idle.
  std::vector<pid_t> pids = WorkerChildren();
  pids.push_back(getpid());
  std::vector<double> before;
  for (pid_t pid : pids) before.push_back(ProcessCpuSeconds(pid));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (size_t i = 0; i < pids.size(); ++i) {
    EXPECT_LT(ProcessCpuSeconds(pids[i]) - before[i], 0.2) << "process " << pids[i] << " is busy";
  }
}

TEST_F(HostileModelTest, WorkerKilledDuringProbingIsRetriedOnceThenFailed) {
  auto hangs = Upload("hangs_on_probing");
  ASSERT_TRUE(hangs.ok()) << hangs.status();
  ModelRecord record = *hangs;
  int kills = 0;
  std::map<pid_t, int> seen;  // worker -> polls it has been alive
  for (int i = 0; i < 200 && record.state != ModelState::kFailed; ++i) {
    // Kill each worker once it has been up for a while (running the probe, not starting).
    for (pid_t pid : WorkerChildren()) {
      if (record.state == ModelState::kProbing && ++seen[pid] == 4) kills += kill(pid, SIGKILL) == 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto next = dock_->GetModel(record.id);
    ASSERT_TRUE(next.ok());
    record = *next;
  }
  EXPECT_GE(kills, 2);
  EXPECT_EQ(record.state, ModelState::kFailed);
  EXPECT_THAT(record.state_reason, ::testing::HasSubstr("killed by signal 9"));
  EXPECT_THAT(record.state_reason, ::testing::HasSubstr("twice"));
  // The dock goes on: a good model registers and is probed.
  EXPECT_EQ(Register("fmnist-tops-cnn").state, ModelState::kReady);
}

// A blob directory shared by replicas: removals with a min_age keep files modified recently (an
// upload in progress elsewhere, a blob another replica just adopted), and Adopt of an existing
// blob refreshes its time, or moves its own copy in if the blob vanished meanwhile.
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
