// Text models: forward(texts: List[str]) -> [N, K], embed(texts) -> [N, D], run and admitted on
// the text test batch. Fixture models are defined here from TorchScript source (Module::define).
#include <torch/script.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "encoder/admission_internal.h"
#include "encoder/black_box.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock::encoder {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

class TextModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("text_model_test_") + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Save(const std::string& name, const std::string& source) const {
    torch::jit::Module m(c10::QualifiedName("__torch__." + name));
    m.define(source);
    const std::string path = (dir_ / (name + ".pt")).string();
    m.save(path);
    return path;
  }

  fs::path dir_;
};

// Counts of ASCII substrings: the same whether TorchScript counts bytes or code points, so the
// oracle below is exact.
constexpr char kCounting[] = R"(
def counts(self, texts: List[str]) -> Tensor:
    rows: List[List[float]] = []
    for t in texts:
        rows.append([float(t.count("a")), float(t.count("e")), float(t.count(" "))])
    return torch.tensor(rows).reshape(len(texts), 3)

def forward(self, texts: List[str]) -> Tensor:
    return self.counts(texts)

def embed(self, texts: List[str]) -> Tensor:
    return torch.cat([self.counts(texts), self.counts(texts) * 2.0], 1)
)";

std::vector<float> HandCounts(const std::vector<std::string>& texts) {
  std::vector<float> out;
  for (const std::string& t : texts) {
    for (char c : {'a', 'e', ' '}) {
      out.push_back(static_cast<float>(std::count(t.begin(), t.end(), c)));
    }
  }
  return out;
}

TEST_F(TextModelTest, RunTextMatchesHandCountsInBatches) {
  TorchScriptOptions options;
  options.input_kind = InputKind::kText;
  options.batch_size = 2;  // 5 texts: three batches
  auto model = LoadTorchScriptModel(Save("Counting", kCounting), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->input_kind(), InputKind::kText);
  const std::vector<std::string> texts = {"a cat ate", "", "Gr\xC3\xBC\xC3\x9F" "e aa",
                                          "   ", std::string("e\0e", 3)};
  auto out = (*model)->RunText(texts, /*want_features=*/true, /*want_layers=*/false);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->logits.shape, (std::vector<int64_t>{5, 3}));
  EXPECT_THAT(out->logits.values, ElementsAreArray(HandCounts(texts)));
  EXPECT_EQ(out->features.shape, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(out->features.values[3], 2 * out->logits.values[0]);
}

TEST_F(TextModelTest, TextAndTensorInputsDoNotMix) {
  TorchScriptOptions text;
  text.input_kind = InputKind::kText;
  auto model = LoadTorchScriptModel(Save("Counting", kCounting), text);
  ASSERT_TRUE(model.ok()) << model.status();
  auto run = (*model)->Run(Tensor({1, 4}, {1, 2, 3, 4}), false);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(run.status().message(), HasSubstr("text model"));
  EXPECT_EQ((*model)->RunText({}, false, false).status().code(),
            absl::StatusCode::kInvalidArgument);

  text.input_shape = {4};
  EXPECT_EQ(LoadTorchScriptModel(Save("Counting2", kCounting), text).status().code(),
            absl::StatusCode::kInvalidArgument);

  TorchScriptOptions image;
  image.input_shape = {4};
  auto tensor_model = LoadTorchScriptModel(Save("Counting3", kCounting), image);
  ASSERT_TRUE(tensor_model.ok());
  auto texts = (*tensor_model)->RunText({"x"}, false, false);
  EXPECT_EQ(texts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(texts.status().message(), HasSubstr("not text"));
}

TEST_F(TextModelTest, TestBatchHasTheHardCasesAndIsSeeded) {
  const auto batch = internal::TextTestBatch(4, 42);
  ASSERT_EQ(batch.size(), 10u);
  EXPECT_EQ(batch[0].text, "");
  EXPECT_GE(batch[2].text.size(), 65536u);
  EXPECT_NE(batch[3].text.find("\xE6\x9D\xB1"), std::string::npos);
  EXPECT_NE(batch[4].text.find('\x1b'), std::string::npos);
  EXPECT_EQ(batch[5].text.find('\0'), 6u);
  const auto again = internal::TextTestBatch(4, 42);
  const auto other = internal::TextTestBatch(4, 43);
  for (size_t i = 0; i < batch.size(); ++i) EXPECT_EQ(batch[i].text, again[i].text);
  EXPECT_NE(batch[6].text, other[6].text);
  for (size_t i = 6; i < batch.size(); ++i) EXPECT_FALSE(batch[i].text.empty());
}

AdmissionOptions TextAdmission() {
  AdmissionOptions options;
  options.input_kind = InputKind::kText;
  return options;
}

TEST_F(TextModelTest, AdmissionAcceptsAGoodTextModel) {
  auto report = CheckAdmission(Save("Counting", kCounting), {}, 3, TextAdmission());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->num_outputs, 3);
  EXPECT_TRUE(report->has_embed);
  EXPECT_EQ(report->feature_dim, 6);
}

TEST_F(TextModelTest, AdmissionNamesTheStringAModelFailsOn) {
  const std::string on_empty = Save("RaisesOnEmpty", R"(
def forward(self, texts: List[str]) -> Tensor:
    for t in texts:
        assert len(t) > 0, "cannot tokenize an empty text"
    return torch.zeros(len(texts), 2)
)");
  auto report = CheckAdmission(on_empty, {}, 2, TextAdmission());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("on the empty string"));
  EXPECT_THAT(report.status().message(), HasSubstr("cannot tokenize an empty text"));

  const std::string on_long = Save("RaisesOnLong", R"(
def forward(self, texts: List[str]) -> Tensor:
    for t in texts:
        assert len(t) <= 4096, "sequence longer than 4096"
    return torch.zeros(len(texts), 2)
)");
  report = CheckAdmission(on_long, {}, 2, TextAdmission());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("on a 64 KiB string"));

  auto wrong_width = CheckAdmission(Save("Counting", kCounting), {}, 4, TextAdmission());
  EXPECT_EQ(wrong_width.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(wrong_width.status().message(), HasSubstr("declares 4 labels"));
}

TEST_F(TextModelTest, AnImageModelIsNotATextModelAndTheOtherWayRound) {
  const std::string image = Save("Image", R"(
def forward(self, x: Tensor) -> Tensor:
    return x.flatten(1)[:, 0:2]
)");
  auto as_text = CheckAdmission(image, {}, 2, TextAdmission());
  EXPECT_EQ(as_text.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(as_text.status().message(), HasSubstr("forward raised an error"));

  auto as_image = CheckAdmission(Save("Counting", kCounting), {4}, 3, AdmissionOptions{});
  EXPECT_EQ(as_image.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(as_image.status().message(), HasSubstr("test batch of shape [4, 4]"));
}

}  // namespace
}  // namespace modeldock::encoder
