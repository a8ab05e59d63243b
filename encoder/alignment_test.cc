// Tests for the TorchScript alignment loader: fixture modules are defined here in C++
// (Module::define); one test exports the real module with scripts/know2vec_alignment.py and
// checks that Python and C++ agree on the grid layout, number for number.
#include <torch/script.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/sha256.h"
#include "encoder/alignment.h"
#include "encoder/knowledge.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace modeldock::encoder {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            (std::string("alignment_test_") + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// A module with the given source, a `weight` parameter, and int attributes; saved to `dir`.
std::string SaveModule(const TempDir& dir, const std::string& name, const std::string& source,
                       const std::vector<std::pair<std::string, int64_t>>& ints,
                       at::Tensor weight = at::Tensor()) {
  torch::jit::Module m(c10::QualifiedName("__torch__." + name));
  if (weight.defined()) m.register_parameter("weight", weight, false);
  for (const auto& [attr, value] : ints) m.register_attribute(attr, c10::IntType::get(), value);
  m.define(source);
  const std::string path = dir.File(name + ".pt");
  m.save(path);
  return path;
}

// encode_model = W * (mean of the valid node embeddings), encode_query = W * (mean prototype);
// NaN when an embedding is below -100 (the dummy call at load never is).
constexpr char kMeanSource[] = R"(
def encode_model(self, nodes, node_mask, boundary, boundary_mask):
    m = (nodes * node_mask.unsqueeze(2)).sum([0, 1]) / node_mask.sum()
    y = torch.matmul(self.weight, m)
    if bool(nodes.min() < -100.0):
        y = y * float('nan')
    return y

def encode_query(self, prototypes):
    return torch.matmul(self.weight, prototypes.mean(0))
)";

// W [3, 2]: exact small integers, so the vectors below are computed by hand.
at::Tensor MeanWeight() { return torch::tensor({1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f}).reshape({3, 2}); }

std::string SaveMean(const TempDir& dir) {
  return SaveModule(dir, "Mean", kMeanSource, {{"dim", 3}}, MeanWeight());
}

// Probe embeddings [5, 2]: rows (1, 2), (3, 0), (5, 4), (-1, 1), (0, 7).
Tensor ProbeEmbeddings() { return Tensor({5, 2}, {1, 2, 3, 0, 5, 4, -1, 1, 0, 7}); }

// Two classes with 2 and 1 nodes (so one node slot is padding); boundary cells used.
KnowledgeGrid SmallGrid() {
  KnowledgeGrid grid;
  grid.num_classes = 2;
  grid.nodes = {{0, 2}, {1}};
  grid.boundary.assign(2, std::vector<std::vector<int32_t>>(2));
  grid.boundary[0][1] = grid.boundary[1][0] = {3, 4};
  return grid;
}

double Norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

void ExpectUnit(const std::vector<double>& raw, const std::vector<float>& got) {
  double norm = 0;
  for (double x : raw) norm += x * x;
  norm = std::sqrt(norm);
  ASSERT_EQ(got.size(), raw.size());
  for (size_t i = 0; i < raw.size(); ++i) EXPECT_NEAR(got[i], raw[i] / norm, 1e-6) << i;
}

TEST(AlignmentTest, VectorsAreUnitNormAndMatchHandComputation) {
  TempDir dir;
  auto encoder = LoadTorchScriptKnowledgeEncoder(SaveMean(dir), 2);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  EXPECT_EQ((*encoder)->dim(), 3);

  // Valid nodes: rows 0, 2, 1 -> mean (3, 2); W m = (3, 2, 5). The padding slot must not count.
  auto model = (*encoder)->EncodeModel(SmallGrid(), ProbeEmbeddings());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_NEAR(Norm(*model), 1.0, 1e-6);
  ExpectUnit({3, 2, 5}, *model);

  // Prototypes: class 0 = mean of (1,2),(3,0) = (2,1); class 1 = (5,4); class 2 has no samples.
  // Mean prototype (3.5, 2.5); W p = (3.5, 2.5, 6).
  auto query = (*encoder)->EncodeQuery(Tensor({3, 2}, {1, 2, 3, 0, 5, 4}), {0, 0, 1}, 3);
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_NEAR(Norm(*query), 1.0, 1e-6);
  ExpectUnit({3.5, 2.5, 6}, *query);
}

TEST(AlignmentTest, QueryWithTheModelsNodesHasSimilarityOne) {
  TempDir dir;
  auto encoder = LoadTorchScriptKnowledgeEncoder(SaveMean(dir), 2);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  KnowledgeGrid grid = SmallGrid();
  grid.nodes = {{0, 2}, {1, 3}};  // equal counts, so the mean of prototypes = mean of nodes
  const Tensor probe = ProbeEmbeddings();
  auto model = (*encoder)->EncodeModel(grid, probe);
  ASSERT_TRUE(model.ok()) << model.status();
  // The query's samples are the model's node samples, labelled by their class.
  Tensor samples({4, 2}, {});
  std::vector<int32_t> labels;
  for (int c = 0; c < 2; ++c) {
    for (int32_t i : grid.nodes[c]) {
      samples.values.insert(samples.values.end(), probe.Row(i), probe.Row(i) + 2);
      labels.push_back(c);
    }
  }
  auto query = (*encoder)->EncodeQuery(samples, labels, 2);
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_NEAR(Dot(*model, *query), 1.0, 1e-6);
  // A different query is not similarity 1 (the check above can fail).
  auto other = (*encoder)->EncodeQuery(Tensor({1, 2}, {0, 7}), {0}, 1);
  ASSERT_TRUE(other.ok());
  EXPECT_LT(Dot(*model, *other), 0.99);
}

// Reads single slots of the inputs, so the documented layout (order, padding, masks, diagonal)
// is checked position by position.
TEST(AlignmentTest, GridTensorsFollowTheDocumentedLayout) {
  TempDir dir;
  const std::string path = SaveModule(dir, "Layout", R"(
def encode_model(self, nodes, node_mask, boundary, boundary_mask):
    return torch.stack([nodes[0, 1, 0], nodes[1, 0, 1], nodes[1, 1, 0] + 100.0,
                        node_mask.sum(), boundary[0, 1, 1, 0], boundary[1, 0, 0, 1],
                        boundary_mask[0, 0].sum() + boundary_mask[1, 1].sum() + 1000.0,
                        boundary_mask.sum(), torch.tensor(float(boundary.size(2))),
                        torch.tensor(float(nodes.size(1)))])

def encode_query(self, prototypes):
    return torch.cat([prototypes.flatten(), torch.zeros([10 - prototypes.numel()])])
)",
                                      {{"dim", 10}});
  auto encoder = LoadTorchScriptKnowledgeEncoder(path, 2);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  auto v = (*encoder)->EncodeModel(SmallGrid(), ProbeEmbeddings());
  ASSERT_TRUE(v.ok()) << v.status();
  // nodes[0,1] = row 2 (5,4); nodes[1,0] = row 1 (3,0); nodes[1,1] is padding (0);
  // boundary[0,1,1] = row 4 (0,7); boundary[1,0,0] = row 3 (-1,1); the diagonal is empty.
  ExpectUnit({5, 0, 100, 3, 0, 1, 1000, 4, 2, 2}, *v);
  auto q = (*encoder)->EncodeQuery(Tensor({3, 2}, {1, 2, 3, 0, 5, 4}), {1, 0, 0}, 2);
  ASSERT_TRUE(q.ok()) << q.status();
  ExpectUnit({4, 2, 1, 2, 0, 0, 0, 0, 0, 0}, *q);  // class 0 = mean of rows 1, 2; class 1 = row 0
}

TEST(AlignmentTest, DescribeNamesTheFileHash) {
  TempDir dir;
  const std::string path = SaveMean(dir);
  auto encoder = LoadTorchScriptKnowledgeEncoder(path, 2);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  auto sha = Sha256::OfFile(path);
  ASSERT_TRUE(sha.ok());
  EXPECT_THAT((*encoder)->Describe(), HasSubstr(*sha));
}

TEST(AlignmentTest, WrongEmbeddingWidthIsRejectedAtLoad) {
  TempDir dir;
  // Declared width: the message names both widths.
  const std::string declared = SaveModule(dir, "Declared", kMeanSource,
                                          {{"dim", 3}, {"embedding_dim", 128}}, MeanWeight());
  auto encoder = LoadTorchScriptKnowledgeEncoder(declared, 64);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(encoder.status().message(),
              HasSubstr("expects 128-d embeddings but the reference encoder gives 64-d"));
  // Undeclared width: the seeded dummy call fails (W is [3, 2]).
  encoder = LoadTorchScriptKnowledgeEncoder(SaveMean(dir), 5);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(encoder.status().message(), HasSubstr("with 5-d embeddings"));
  // The same files load with the right width.
  EXPECT_TRUE(LoadTorchScriptKnowledgeEncoder(SaveMean(dir), 2).ok());
}

TEST(AlignmentTest, IncompleteModulesAreRejectedAtLoad) {
  TempDir dir;
  const std::string no_query = SaveModule(dir, "NoQuery", R"(
def encode_model(self, nodes, node_mask, boundary, boundary_mask):
    return nodes.sum([0, 1])
)",
                                          {{"dim", 2}});
  auto encoder = LoadTorchScriptKnowledgeEncoder(no_query, 2);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(encoder.status().message(), HasSubstr("encode_query"));

  const std::string no_dim = SaveModule(dir, "NoDim", kMeanSource, {}, MeanWeight());
  encoder = LoadTorchScriptKnowledgeEncoder(no_dim, 2);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(encoder.status().message(), HasSubstr("'dim'"));

  // dim disagrees with what the methods return.
  const std::string wrong_dim = SaveModule(dir, "WrongDim", kMeanSource, {{"dim", 4}}, MeanWeight());
  encoder = LoadTorchScriptKnowledgeEncoder(wrong_dim, 2);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(encoder.status().message(), HasSubstr("expected float [4]"));

  std::ofstream(dir.File("garbage.pt")) << "not a zip";
  encoder = LoadTorchScriptKnowledgeEncoder(dir.File("garbage.pt"), 2);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
  encoder = LoadTorchScriptKnowledgeEncoder(dir.File("missing.pt"), 2);
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AlignmentTest, NonFiniteOutputIsFailedPrecondition) {
  TempDir dir;
  auto encoder = LoadTorchScriptKnowledgeEncoder(SaveMean(dir), 2);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  Tensor probe = ProbeEmbeddings();
  probe.values[0] = -1000;  // row 0 is a node: the module returns NaN
  auto model = (*encoder)->EncodeModel(SmallGrid(), probe);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(model.status().message(), HasSubstr("non-finite"));

  // A module that always fails is caught by the dummy call at load instead.
  const std::string always_nan = SaveModule(dir, "AlwaysNan", R"(
def encode_model(self, nodes, node_mask, boundary, boundary_mask):
    return nodes.sum([0, 1]) * float('nan')

def encode_query(self, prototypes):
    return prototypes.sum(0)
)",
                                            {{"dim", 2}});
  auto bad = LoadTorchScriptKnowledgeEncoder(always_nan, 2);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("non-finite"));
}

TEST(AlignmentTest, BadInputsAreInvalidArgument) {
  TempDir dir;
  auto encoder = LoadTorchScriptKnowledgeEncoder(SaveMean(dir), 2);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  KnowledgeGrid grid = SmallGrid();
  grid.nodes[1] = {9};  // outside the 5 probe samples
  EXPECT_EQ((*encoder)->EncodeModel(grid, ProbeEmbeddings()).status().code(),
            absl::StatusCode::kInvalidArgument);
  grid = SmallGrid();
  grid.nodes[1].clear();
  EXPECT_EQ((*encoder)->EncodeModel(grid, ProbeEmbeddings()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*encoder)->EncodeModel(SmallGrid(), Tensor({2, 3}, {1, 2, 3, 4, 5, 6})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*encoder)->EncodeQuery(Tensor({1, 2}, {1, 2}), {3}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AlignmentTest, ConcurrentCallsAgree) {
  TempDir dir;
  auto encoder = LoadTorchScriptKnowledgeEncoder(SaveMean(dir), 2);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  auto expected = (*encoder)->EncodeModel(SmallGrid(), ProbeEmbeddings());
  ASSERT_TRUE(expected.ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto v = (*encoder)->EncodeModel(SmallGrid(), ProbeEmbeddings());
        if (!v.ok() || *v != *expected) ++mismatches[t];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// Exports the real Know2Vec module with the Python script, loads it here with a grid from
// SelectGrid, and has the script encode the same grid and prototypes from JSON (its own
// padding): the vectors must agree, so both sides build the same tensors.
TEST(AlignmentTest, PythonExportAgreesWithTheLoader) {
  TempDir dir;
  constexpr int kDe = 8, kProbe = 60, kClasses = 4;
  const std::string module = dir.File("alignment.pt");
  const std::string export_cmd =
      std::string(MODELDOCK_PYTHON) + " " + MODELDOCK_ALIGNMENT_SCRIPT +
      " export --embedding-dim " + std::to_string(kDe) + " --seed 3 --out " + module;
  ASSERT_EQ(std::system(export_cmd.c_str()), 0) << export_cmd;

  auto encoder = LoadTorchScriptKnowledgeEncoder(module, kDe);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  EXPECT_EQ((*encoder)->dim(), 256);
  auto wrong = LoadTorchScriptKnowledgeEncoder(module, kDe * 2);
  EXPECT_THAT(wrong.status().message(), HasSubstr("expects 8-d embeddings"));

  std::mt19937 rng(11);
  std::normal_distribution<float> normal;  // values only need to be seeded, not portable
  Tensor logits({kProbe, kClasses}, {});
  for (int i = 0; i < kProbe * kClasses; ++i) logits.values.push_back(2 * normal(rng));
  Tensor probe({kProbe, kDe}, {});
  for (int i = 0; i < kProbe * kDe; ++i) probe.values.push_back(normal(rng));
  GridOptions options;
  options.nodes_per_class = 3;
  options.boundary_per_pair = 2;
  const KnowledgeGrid grid = SelectGrid(logits, options);
  auto model = (*encoder)->EncodeModel(grid, probe);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_NEAR(Norm(*model), 1.0, 1e-5);

  // Query: the first 10 probe samples, labels i % 3.
  Tensor query({10, kDe}, std::vector<float>(probe.values.begin(), probe.values.begin() + 10 * kDe));
  std::vector<int32_t> labels;
  for (int i = 0; i < 10; ++i) labels.push_back(i % 3);
  auto query_vector = (*encoder)->EncodeQuery(query, labels, 3);
  ASSERT_TRUE(query_vector.ok()) << query_vector.status();
  EXPECT_NEAR(Norm(*query_vector), 1.0, 1e-5);

  // The same inputs as a training record (grid indices replaced by embedding rows).
  auto row = [&](int32_t i) { return std::vector<float>(probe.Row(i), probe.Row(i) + kDe); };
  nlohmann::json nodes = nlohmann::json::array(), boundary = nlohmann::json::array();
  int boundary_samples = 0;
  for (int i = 0; i < kClasses; ++i) {
    nlohmann::json n = nlohmann::json::array(), b = nlohmann::json::array();
    for (int32_t s : grid.nodes[i]) n.push_back(row(s));
    for (int j = 0; j < kClasses; ++j) {
      nlohmann::json cell = nlohmann::json::array();
      for (int32_t s : grid.boundary[i][j]) cell.push_back(row(s));
      boundary_samples += static_cast<int>(cell.size());
      b.push_back(cell);
    }
    nodes.push_back(n);
    boundary.push_back(b);
  }
  ASSERT_GT(boundary_samples, 0);  // the comparison covers boundary cells
  nlohmann::json prototypes = nlohmann::json::array();
  for (int c = 0; c < 3; ++c) {
    std::vector<double> sum(kDe, 0.0);
    int count = 0;
    for (int i = 0; i < 10; ++i) {
      if (labels[i] != c) continue;
      for (int j = 0; j < kDe; ++j) sum[j] += query.Row(i)[j];
      ++count;
    }
    std::vector<float> mean;
    for (double s : sum) mean.push_back(static_cast<float>(s / count));
    prototypes.push_back(mean);
  }
  nlohmann::json record = {{"task", "t"}, {"model", "m"}, {"accuracy", 1.0},
                           {"query_prototypes", prototypes},
                           {"model_grid", {{"nodes", nodes}, {"boundary", boundary}}}};
  std::ofstream(dir.File("records.jsonl")) << record.dump() << "\n";
  const std::string encode_cmd = std::string(MODELDOCK_PYTHON) + " " +
                                 MODELDOCK_ALIGNMENT_SCRIPT + " encode --module " + module +
                                 " --records " + dir.File("records.jsonl") + " > " +
                                 dir.File("vectors.jsonl");
  ASSERT_EQ(std::system(encode_cmd.c_str()), 0) << encode_cmd;
  std::ifstream in(dir.File("vectors.jsonl"));
  const nlohmann::json vectors = nlohmann::json::parse(in);
  const auto py_model = vectors.at("model_vector").get<std::vector<float>>();
  const auto py_query = vectors.at("query_vector").get<std::vector<float>>();
  ASSERT_EQ(py_model.size(), model->size());
  ASSERT_EQ(py_query.size(), query_vector->size());
  for (size_t i = 0; i < py_model.size(); ++i) EXPECT_NEAR(py_model[i], (*model)[i], 1e-5) << i;
  for (size_t i = 0; i < py_query.size(); ++i) {
    EXPECT_NEAR(py_query[i], (*query_vector)[i], 1e-5) << i;
  }
}

}  // namespace
}  // namespace modeldock::encoder
