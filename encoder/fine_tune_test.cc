// Tests for FineTune on the build's demo assets (Fashion-MNIST tops query, demo models), with a
// C++-defined model for the model that exports no embed(x). Small schedules: a few seconds.
#include "encoder/fine_tune.h"

#include <torch/script.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/datasets.h"
#include "encoder/black_box.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock::encoder {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string AssetDir() {
  const char* env = std::getenv("MODELDOCK_ASSET_DIR");
  return env == nullptr ? "" : env;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Rows `take` of a dataset.
Tensor Rows(const Tensor& t, const std::vector<int64_t>& take) {
  Tensor out;
  out.shape = t.shape;
  out.shape[0] = static_cast<int64_t>(take.size());
  for (int64_t i : take) out.values.insert(out.values.end(), t.Row(i), t.Row(i) + t.RowSize());
  return out;
}

// The demo tops query (200 images, 4 classes): every fifth sample is held back for validation.
FineTuneData TopsSplit() {
  datasets::LoadOptions options;
  const fs::path dir = fs::path(AssetDir()) / "demo/query_tops";
  options.labels_path = (dir / "query-labels-idx1-ubyte").string();
  absl::StatusOr<Dataset> query =
      datasets::LoadIdx((dir / "query-images-idx3-ubyte").string(), options);
  EXPECT_TRUE(query.ok()) << query.status();
  if (!query.ok()) return {};
  FineTuneData data;
  data.num_classes = query->NumClasses();
  std::vector<int64_t> train, val;
  for (int64_t i = 0; i < query->samples.Rows(); ++i) {
    (i % 5 == 0 ? val : train).push_back(i);
    (i % 5 == 0 ? data.val_labels : data.train_labels).push_back(query->labels[i]);
  }
  data.train_samples = Rows(query->samples, train);
  data.val_samples = Rows(query->samples, val);
  return data;
}

FineTuneOptions SmallSchedule() {
  FineTuneOptions options;
  options.max_epochs = 3;
  options.patience = 3;
  options.budget = absl::Seconds(600);
  options.learning_rate = 1e-3;
  options.seed = 7;
  return options;
}

const std::vector<int64_t> kGrey = {1, 28, 28};

class FineTuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetTorchThreads(1);
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    // The digits model: another domain, so its new head starts near chance on garments.
    model_ = ReadFile(AssetDir() + "/demo/glyph-digits-cnn.pt");
    ASSERT_FALSE(model_.empty());
    data_ = TopsSplit();
    ASSERT_EQ(data_.num_classes, 4);
    ASSERT_EQ(data_.val_samples.Rows(), 40);
  }
  std::string model_;
  FineTuneData data_;
};

// The saved archive, run through the black-box loader, reproduces the reported best accuracy
// (argmax counted here), its embed still works, and tuning beats the untrained head.
TEST_F(FineTuneTest, SavedModelReproducesTheBestAccuracyAndBeatsTheUntrainedHead) {
  std::vector<TuneEpoch> seen;
  absl::StatusOr<FineTuneResult> result =
      FineTune(model_, "glyph-digits-cnn", kGrey, data_, SmallSchedule(),
               [&](const TuneEpoch& e) { seen.push_back(e); });
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->epochs.size(), 4u);  // epoch 0 and 3 trained epochs
  EXPECT_EQ(result->stop_reason, "max_epochs");
  ASSERT_EQ(seen.size(), result->epochs.size());
  for (size_t e = 0; e < seen.size(); ++e) {
    EXPECT_EQ(seen[e].epoch, static_cast<int>(e));
    EXPECT_EQ(seen[e].val_accuracy, result->epochs[e].val_accuracy);
    EXPECT_TRUE(std::isfinite(seen[e].train_loss));
  }
  EXPECT_EQ(result->best_accuracy, result->epochs[result->best_epoch].val_accuracy);
  EXPECT_GT(result->best_accuracy, result->epochs[0].val_accuracy);
  EXPECT_GT(result->best_epoch, 0);

  TorchScriptOptions load;
  load.input_shape = kGrey;
  auto tuned = LoadTorchScriptModelFromBytes(result->tuned_model, "tuned", load);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  ASSERT_TRUE((*tuned)->has_embed());
  auto out = (*tuned)->Run(data_.val_samples, /*want_features=*/true);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->logits.shape, (std::vector<int64_t>{40, 4}));
  EXPECT_EQ(out->features.Rows(), 40);
  int correct = 0;
  for (int64_t i = 0; i < 40; ++i) {
    int best = 0;
    for (int k = 1; k < 4; ++k) {
      if (out->logits.Row(i)[k] > out->logits.Row(i)[best]) best = k;
    }
    correct += best == data_.val_labels[i];
  }
  EXPECT_EQ(correct, result->epochs[result->best_epoch].val_correct);
  EXPECT_EQ(correct / 40.0, result->best_accuracy);

  // Python's torch.jit.load reads the same archive: forward gives [N, 4], embed [N, D].
  const std::string path = (fs::temp_directory_path() /
                            ("fine_tune_test_" + std::to_string(::getpid()) + ".pt"))
                               .string();
  std::ofstream(path, std::ios::binary) << result->tuned_model;
  const std::string command =
      std::string(MODELDOCK_PYTHON) +
      " -c \"import sys, torch; m = torch.jit.load(sys.argv[1]); x = torch.zeros(3, 1, 28, 28);"
      " print(tuple(m(x).shape), m.embed(x).shape[0])\" " + path;
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char line[256] = {0};
  const bool got = std::fgets(line, sizeof(line), pipe) != nullptr;
  EXPECT_EQ(::pclose(pipe), 0);
  fs::remove(path);
  ASSERT_TRUE(got);
  EXPECT_EQ(std::string(line), "(3, 4) 3\n");
}

TEST_F(FineTuneTest, SameSeedSameResult) {
  FineTuneOptions options = SmallSchedule();
  options.max_epochs = 2;
  auto a = FineTune(model_, "m", kGrey, data_, options);
  auto b = FineTune(model_, "m", kGrey, data_, options);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  ASSERT_EQ(a->epochs.size(), b->epochs.size());
  for (size_t e = 0; e < a->epochs.size(); ++e) {
    EXPECT_EQ(a->epochs[e].val_correct, b->epochs[e].val_correct) << e;
    EXPECT_EQ(a->epochs[e].train_loss, b->epochs[e].train_loss) << e;
  }
  options.seed = 8;  // another seed starts from another head
  auto c = FineTune(model_, "m", kGrey, data_, options);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(c->epochs[0].train_loss, a->epochs[0].train_loss);
}

TEST_F(FineTuneTest, BadLearningRatesGiveClearErrors) {
  FineTuneOptions options = SmallSchedule();
  options.learning_rate = std::numeric_limits<double>::quiet_NaN();
  auto nan = FineTune(model_, "m", kGrey, data_, options);
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nan.status().message(), HasSubstr("learning rate"));

  options.learning_rate = 1e30;  // SGD steps of 1e30: the loss overflows
  options.optimizer = TuneOptimizer::kSgd;
  options.max_epochs = 1;
  auto huge = FineTune(model_, "m", kGrey, data_, options);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kFailedPrecondition) << huge.status();
  EXPECT_THAT(huge.status().message(), HasSubstr("diverged at epoch 1"));
}

TEST_F(FineTuneTest, ModelWithoutEmbedCannotBeTunedYet) {
  torch::jit::Module m(c10::QualifiedName("__torch__.NoEmbed"));
  m.register_parameter("weight", torch::ones({4, 784}), false);
  m.define(R"(
def forward(self, x):
    return torch.matmul(x.flatten(1), self.weight.t())
)");
  std::ostringstream bytes;
  m.save(bytes);
  auto result = FineTune(bytes.str(), "no-embed", kGrey, data_, SmallSchedule());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("exports no embed(x)"));

  auto garbage = FineTune("not an archive", "garbage", kGrey, data_, SmallSchedule());
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  FineTuneData bad = data_;
  bad.val_labels[0] = 9;
  auto labels = FineTune(model_, "m", kGrey, bad, SmallSchedule());
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(labels.status().message(), HasSubstr("label 9"));
}

}  // namespace
}  // namespace modeldock::encoder
