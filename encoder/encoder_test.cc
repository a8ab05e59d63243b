// Tests for encoder/: fixture TorchScript models are built here from C++ (Module::define) and
// saved to a temporary directory. One translation unit, since it includes torch.
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/datasets.h"
#include "common/sha256.h"
#include "encoder/admission_internal.h"
#include "encoder/black_box.h"
#include "encoder/knowledge.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace modeldock::encoder {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            (std::string("encoder_test_") + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Defines a TorchScript module from source with the given parameters and saves it.
std::string SaveModule(const TempDir& dir, const std::string& name, const std::string& source,
                       const std::vector<std::pair<std::string, at::Tensor>>& params = {}) {
  torch::jit::Module m(c10::QualifiedName("__torch__." + name));
  for (const auto& [param, value] : params) m.register_parameter(param, value, false);
  m.define(source);
  const std::string path = dir.File(name + ".pt");
  m.save(path);
  return path;
}

// weight [3, 4], bias [3], exactly representable so that outputs are exact.
const std::vector<float> kWeight = {1, 2, 3, 4, 0, -1, 0.5, 0, 2, 0, 0, -2};
const std::vector<float> kBias = {0.5, -1, 0};

std::string SaveLinear(const TempDir& dir, const std::string& name = "Linear") {
  return SaveModule(dir, name, R"(
def forward(self, x):
    return torch.matmul(x.flatten(1), self.weight.t()) + self.bias
)",
                    {{"weight", torch::tensor(kWeight).reshape({3, 4})},
                     {"bias", torch::tensor(kBias)}});
}

std::vector<float> HandLinear(const std::vector<float>& x) {
  std::vector<float> out;
  for (size_t r = 0; r < x.size() / 4; ++r) {
    for (int k = 0; k < 3; ++k) {
      float s = kBias[k];
      for (int j = 0; j < 4; ++j) s += kWeight[k * 4 + j] * x[r * 4 + j];
      out.push_back(s);
    }
  }
  return out;
}

Tensor RandomTensor(std::vector<int64_t> shape, uint32_t seed) {
  return internal::UniformSamples(shape[0], std::vector<int64_t>(shape.begin() + 1, shape.end()),
                                  seed);
}

// ---------------------------------------------------------------------------------------------
// LoadTorchScriptModel / Run

TEST(TorchScriptModelTest, LinearOutputsMatchHandComputation) {
  TempDir dir;
  TorchScriptOptions options;
  options.input_shape = {4};
  auto model = LoadTorchScriptModel(SaveLinear(dir), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FALSE((*model)->has_embed());
  EXPECT_THAT((*model)->input_shape(), ElementsAre(4));

  const std::vector<float> x = {1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 2, -1, 0.5, 3, 0, 0, 0, 0};
  auto out = (*model)->Run(Tensor({5, 4}, x), /*want_features=*/true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(out->logits.shape, ElementsAre(5, 3));
  EXPECT_THAT(out->logits.values,
              ElementsAre(1.5, -1, 2,      // e0
                          2.5, -2, 0,      // e1
                          10.5, -1.5, 0,   // all ones
                          14, 0.25, -2,  // 2 - 2 + 1.5 + 12 + .5; 1 + .25 - 1; 4 - 6
                          0.5, -1, 0));
  EXPECT_THAT(out->logits.values, ElementsAreArray(HandLinear(x)));
  EXPECT_TRUE(out->features.shape.empty());
}

TEST(TorchScriptModelTest, BatchedRunEqualsUnbatched) {
  TempDir dir;
  const std::string path = SaveLinear(dir);
  TorchScriptOptions whole;
  whole.input_shape = {4};
  TorchScriptOptions batched = whole;
  batched.batch_size = 3;
  auto a = LoadTorchScriptModel(path, whole);
  auto b = LoadTorchScriptModel(path, batched);
  ASSERT_TRUE(a.ok() && b.ok());
  const Tensor x = RandomTensor({10, 4}, 5);
  auto out_a = (*a)->Run(x, false);
  auto out_b = (*b)->Run(x, false);
  ASSERT_TRUE(out_a.ok() && out_b.ok());
  EXPECT_EQ(out_b->logits.shape, out_a->logits.shape);
  ASSERT_EQ(out_b->logits.values.size(), 30u);
  const std::vector<float> hand = HandLinear(x.values);
  for (size_t i = 0; i < 30; ++i) {
    EXPECT_FLOAT_EQ(out_b->logits.values[i], out_a->logits.values[i]) << i;
    EXPECT_NEAR(out_a->logits.values[i], hand[i], 1e-5) << i;
  }
}

TEST(TorchScriptModelTest, EmbedIsDetectedAndReturned) {
  TempDir dir;
  const std::string path = SaveModule(dir, "WithEmbed", R"(
def forward(self, x):
    return torch.matmul(x.flatten(1), self.weight.t())

def embed(self, x):
    f = x.flatten(1)
    return torch.cat([f, f * 2.0], 1)
)",
                                      {{"weight", torch::tensor(kWeight).reshape({3, 4})}});
  TorchScriptOptions options;
  options.input_shape = {1, 2, 2};
  options.batch_size = 2;
  auto model = LoadTorchScriptModel(path, options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE((*model)->has_embed());
  const Tensor x({3, 1, 2, 2}, {1, 0, 0, 0, 0, 1, 0, 0, 0.5, 0.25, 1, 2});
  auto out = (*model)->Run(x, true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(out->logits.shape, ElementsAre(3, 3));
  EXPECT_THAT(out->logits.values, ElementsAre(1, 0, 2, 2, -1, 0, 12, 0.25, -3));
  EXPECT_THAT(out->features.shape, ElementsAre(3, 8));
  EXPECT_THAT(out->features.values,
              ElementsAre(1, 0, 0, 0, 2, 0, 0, 0,  //
                          0, 1, 0, 0, 0, 2, 0, 0,  //
                          0.5, 0.25, 1, 2, 1, 0.5, 2, 4));
  auto logits_only = (*model)->Run(x, false);
  ASSERT_TRUE(logits_only.ok());
  EXPECT_TRUE(logits_only->features.shape.empty());
  EXPECT_EQ(logits_only->logits.values, out->logits.values);
}

TEST(TorchScriptModelTest, ImageInputsAreAdaptedToTheDeclaredShape) {
  TempDir dir;
  // Per-channel means; the assert makes the model fail on anything but 3x32x32.
  const std::string path = SaveModule(dir, "Rgb32", R"(
def forward(self, x):
    assert x.size(1) == 3 and x.size(2) == 32 and x.size(3) == 32
    return x.reshape(x.size(0), 3, 1024).mean(2)
)");
  TorchScriptOptions options;
  options.input_shape = {3, 32, 32};
  auto model = LoadTorchScriptModel(path, options);
  ASSERT_TRUE(model.ok()) << model.status();
  const Tensor grey = RandomTensor({2, 1, 28, 28}, 9);
  auto out = (*model)->Run(grey, false);
  ASSERT_TRUE(out.ok()) << out.status();
  auto adapted = AdaptInputs(grey, {3, 32, 32});
  ASSERT_TRUE(adapted.ok());
  ASSERT_THAT(out->logits.shape, ElementsAre(2, 3));
  for (int i = 0; i < 2; ++i) {
    double mean = 0;
    for (int p = 0; p < 1024; ++p) mean += adapted->values[i * 3 * 1024 + p];
    mean /= 1024;
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(out->logits.values[i * 3 + c], mean, 1e-5);
  }
  // Tabular inputs of another width cannot be adapted.
  auto bad = (*model)->Run(Tensor({1, 5}, {0, 0, 0, 0, 0}), false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TorchScriptModelTest, ErrorsBecomeStatuses) {
  TempDir dir;
  TorchScriptOptions options;
  options.input_shape = {4};
  const std::string raising = SaveModule(dir, "Raising", R"(
def forward(self, x):
    assert bool(x.sum() < -1.0), "boom from the model"
    return x.flatten(1)
)");
  auto model = LoadTorchScriptModel(raising, options);
  ASSERT_TRUE(model.ok()) << model.status();
  auto out = (*model)->Run(Tensor({1, 4}, {0, 0, 0, 0}), false);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("boom from the model"));

  const std::string embed_raising = SaveModule(dir, "EmbedRaising", R"(
def forward(self, x):
    return x.flatten(1)

def embed(self, x):
    assert bool(x.sum() < -1.0), "embed boom"
    return x.flatten(1)
)");
  model = LoadTorchScriptModel(embed_raising, options);
  ASSERT_TRUE(model.ok());
  EXPECT_TRUE((*model)->Run(Tensor({1, 4}, {0, 0, 0, 0}), false).ok());
  out = (*model)->Run(Tensor({1, 4}, {0, 0, 0, 0}), true);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("embed raised an error: RuntimeError: AssertionError: embed boom"));

  const std::string tuple = SaveModule(dir, "Tuple", R"(
def forward(self, x):
    return (x, x)
)");
  model = LoadTorchScriptModel(tuple, options);
  ASSERT_TRUE(model.ok());
  out = (*model)->Run(Tensor({1, 4}, {0, 0, 0, 0}), false);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("forward returned a Tuple"));

  const std::string ints = SaveModule(dir, "Ints", R"(
def forward(self, x):
    return x.long()
)");
  model = LoadTorchScriptModel(ints, options);
  ASSERT_TRUE(model.ok());
  out = (*model)->Run(Tensor({1, 4}, {0, 0, 0, 0}), false);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("Long"));

  const std::string flat = SaveModule(dir, "Flat", R"(
def forward(self, x):
    return x.sum(1)
)");
  model = LoadTorchScriptModel(flat, options);
  ASSERT_TRUE(model.ok());
  out = (*model)->Run(Tensor({2, 4}, {0, 0, 0, 0, 1, 1, 1, 1}), false);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(out.status().message(), HasSubstr("forward returned shape [2]"));
}

TEST(TorchScriptModelTest, RandomBytesAreNotTorchScript) {
  TempDir dir;
  const std::string path = dir.File("random.pt");
  std::mt19937 rng(3);
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  std::ofstream(path, std::ios::binary) << bytes;
  TorchScriptOptions options;
  options.input_shape = {4};
  auto model = LoadTorchScriptModel(path, options);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("not a TorchScript archive"));
}

TEST(TorchThreadsTest, SetOnceForTheProcess) {
  SetTorchThreads(1);
  EXPECT_EQ(at::get_num_threads(), 1);
  SetTorchThreads(2);  // ignored: the first call wins
  EXPECT_EQ(at::get_num_threads(), 1);
}

// ---------------------------------------------------------------------------------------------
// AdaptInputs

// x[c, h, w] = ((c * 20 + h * 5 + w) * 7 % 11) / 10 for a 1x2x4x5 input.
Tensor AdaptFixture() {
  Tensor t({1, 2, 4, 5}, {});
  for (int i = 0; i < 40; ++i) t.values.push_back(static_cast<float>((i * 7 % 11) / 10.0));
  return t;
}

TEST(AdaptInputsTest, BilinearMatchesTorchInterpolate) {
  // torch.nn.functional.interpolate(x, size=..., mode="bilinear", align_corners=False), torch
  // 1.13 on /usr/bin/python3.
  const std::map<std::pair<int, int>, std::vector<float>> expected = {
      {{3, 7},
       {0.0333333388f, 0.433333337f, 0.619047582f, 0.333333373f, 0.702381015f, 0.757142842f,
        0.633333385f, 0.300000012f, 0.385714263f, 0.492857128f, 0.599999964f, 0.314285696f,
        0.50000006f,  0.900000036f, 0.566666663f, 0.338095248f, 0.366666734f, 0.866666675f,
        0.580952346f, 0.373809487f, 0.249999911f, 0.833333373f, 0.604761958f, 0.3190476f,
        0.0333333798f, 0.533333421f, 0.561904728f, 0.333333343f, 0.549999952f, 0.635714293f,
        0.585714281f, 0.300000042f, 0.407142818f, 0.514285684f, 0.600000024f, 0.266666681f,
        0.666666746f, 0.852380991f, 0.566666663f, 0.280952364f, 0.466666758f, 0.866666675f}},
      {{6, 3},
       {0.233333319f, 0.300000012f, 0.733333349f, 0.333333313f, 0.400000006f, 0.649999976f,
        0.405555516f, 0.533333302f, 0.599999905f, 0.294444442f, 0.666666627f, 0.73333323f,
        0.366666704f, 0.799999952f, 0.499999911f, 0.466666698f, 0.899999917f, 0.233333394f,
        0.666666687f, 2.38418583e-08f, 0.433333367f, 0.766666651f, 0.100000024f, 0.533333361f,
        0.777777731f, 0.233333364f, 0.605555534f, 0.422222167f, 0.366666704f, 0.49444437f,
        0.433333337f, 0.50000006f, 0.566666603f, 0.533333302f, 0.600000024f, 0.666666567f}}};
  for (const auto& [size, values] : expected) {
    auto out = AdaptInputs(AdaptFixture(), {2, size.first, size.second});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_THAT(out->shape, ElementsAre(1, 2, size.first, size.second));
    ASSERT_EQ(out->values.size(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_NEAR(out->values[i], values[i], 1e-6) << size.first << "x" << size.second << " " << i;
    }
  }
}

TEST(AdaptInputsTest, ChannelConversion) {
  const Tensor grey({2, 1, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  auto rgb = AdaptInputs(grey, {3, 2, 2});
  ASSERT_TRUE(rgb.ok());
  EXPECT_THAT(rgb->shape, ElementsAre(2, 3, 2, 2));
  EXPECT_THAT(rgb->values, ElementsAre(1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4,  //
                                       5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8));
  const Tensor colour({1, 3, 1, 2}, {0, 3, 3, 6, 6, 0});
  auto mono = AdaptInputs(colour, {1, 1, 2});
  ASSERT_TRUE(mono.ok());
  EXPECT_THAT(mono->shape, ElementsAre(1, 1, 1, 2));
  EXPECT_THAT(mono->values, ElementsAre(3, 3));
  // Resize and channel change together: a constant image stays constant.
  auto both = AdaptInputs(Tensor({1, 1, 3, 3}, std::vector<float>(9, 0.5f)), {3, 5, 4});
  ASSERT_TRUE(both.ok());
  EXPECT_THAT(both->shape, ElementsAre(1, 3, 5, 4));
  EXPECT_THAT(both->values, ::testing::Each(::testing::FloatEq(0.5f)));
  // Same shape: unchanged.
  auto same = AdaptInputs(grey, {1, 2, 2});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->values, grey.values);
}

TEST(AdaptInputsTest, RejectsImpossibleAdaptations) {
  EXPECT_EQ(AdaptInputs(Tensor({1, 4}, {1, 2, 3, 4}), {5}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdaptInputs(Tensor({1, 4}, {1, 2, 3, 4}), {1, 2, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdaptInputs(Tensor({1, 2, 1, 1}, {1, 2}), {3, 1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AdaptInputs(Tensor({1, 1, 2, 2}, {1, 2, 3, 4}), {4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(AdaptInputs(Tensor({1, 4}, {1, 2, 3, 4}), {4}).ok());
}

// ---------------------------------------------------------------------------------------------
// CheckAdmission

TEST(AdmissionTest, AcceptsAGoodModelAndReportsIt) {
  TempDir dir;
  auto report = CheckAdmission(SaveLinear(dir), {4}, 3, AdmissionOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->has_embed);
  EXPECT_EQ(report->feature_dim, 0);
  EXPECT_EQ(report->num_outputs, 3);
  EXPECT_GT(report->millis, 0);

  const std::string with_embed = SaveModule(dir, "AdmitEmbed", R"(
def forward(self, x):
    return x.flatten(1)[:, 0:2]

def embed(self, x):
    return x.flatten(1) * 3.0
)");
  report = CheckAdmission(with_embed, {1, 3, 3}, 2, AdmissionOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->has_embed);
  EXPECT_EQ(report->feature_dim, 9);
  EXPECT_EQ(report->num_outputs, 2);
}

TEST(AdmissionTest, WrongWidthIsFailedPrecondition) {
  TempDir dir;
  auto report = CheckAdmission(SaveLinear(dir), {4}, 4, AdmissionOptions{});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(),
              HasSubstr("forward returned shape [4, 3] but the model declares 4 labels"));
}

TEST(AdmissionTest, NonFiniteOutputsAreFailedPrecondition) {
  TempDir dir;
  // sqrt of a negative number: NaN for inputs in [0, 1).
  const std::string nan = SaveModule(dir, "Nan", R"(
def forward(self, x):
    return torch.sqrt(x.flatten(1) - 2.0)
)");
  auto report = CheckAdmission(nan, {3}, 3, AdmissionOptions{});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("forward returned NaN/Inf in 12 of 12"));

  const std::string bad_embed = SaveModule(dir, "BadEmbed", R"(
def forward(self, x):
    return x.flatten(1)

def embed(self, x):
    return x.flatten(1) / 0.0
)");
  report = CheckAdmission(bad_embed, {3}, 3, AdmissionOptions{});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("embed returned NaN/Inf"));

  const std::string flat_embed = SaveModule(dir, "FlatEmbed", R"(
def forward(self, x):
    return x.flatten(1)

def embed(self, x):
    return x.flatten(1).sum(1)
)");
  report = CheckAdmission(flat_embed, {3}, 3, AdmissionOptions{});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("embed returned shape [4]"));
}

TEST(AdmissionTest, RaisingModelIsFailedPrecondition) {
  TempDir dir;
  const std::string raising = SaveModule(dir, "AdmitRaising", R"(
def forward(self, x):
    assert bool(x.sum() < -1.0), "boom from the model"
    return x.flatten(1)
)");
  auto report = CheckAdmission(raising, {2}, 2, AdmissionOptions{});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(),
              HasSubstr("forward raised an error: RuntimeError: AssertionError: boom from the model"));
}

TEST(AdmissionTest, RandomBytesAreInvalidArgument) {
  TempDir dir;
  const std::string path = dir.File("random.bin");
  std::mt19937 rng(11);
  std::string bytes(10000, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  std::ofstream(path, std::ios::binary) << bytes;
  auto report = CheckAdmission(path, {4}, 3, AdmissionOptions{});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(), HasSubstr("not a TorchScript archive"));
  EXPECT_EQ(CheckAdmission(dir.File("missing.pt"), {4}, 3, AdmissionOptions{}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(AdmissionTest, TooLargeIsResourceExhausted) {
  TempDir dir;
  const std::string path = SaveLinear(dir);
  const auto size = fs::file_size(path);
  AdmissionOptions options;
  options.max_bytes = 100;
  auto report = CheckAdmission(path, {4}, 3, options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(report.status().message(), HasSubstr(std::to_string(size) + " bytes"));
  EXPECT_THAT(report.status().message(), HasSubstr("limit of 100 bytes"));
}

TEST(AdmissionTest, DeclaredImageShapeIsUsedForTheTestBatch) {
  TempDir dir;
  const std::string path = SaveModule(dir, "AdmitRgb", R"(
def forward(self, x):
    assert x.size(1) == 3 and x.size(2) == 32 and x.size(3) == 32
    return x.reshape(x.size(0), 3, 1024).mean(2)
)");
  EXPECT_TRUE(CheckAdmission(path, {3, 32, 32}, 3, AdmissionOptions{}).ok());
  // Declared 1x28x28 is adapted nowhere: the model's assert fails on the test batch.
  EXPECT_EQ(CheckAdmission(path, {1, 28, 28}, 3, AdmissionOptions{}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(AdmissionTest, OutputsOverTheLimitsAreRefusedWithTheNumbers) {
  TempDir dir;
  const std::string wide = SaveModule(dir, "WideEmbed", R"(
def forward(self, x):
    return x.flatten(1)[:, :2]

def embed(self, x):
    return x.flatten(1).repeat(1, 100)
)");
  AdmissionOptions options;
  options.limits.max_feature_dim = 150;
  auto report = CheckAdmission(wide, {4}, 2, options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("embed returned 400 values per sample"));
  EXPECT_THAT(report.status().message(), HasSubstr("at most 150"));
  options.limits.max_feature_dim = 400;
  options.limits.max_bytes_per_sample = 1000;
  report = CheckAdmission(wide, {4}, 2, options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("at most 250"));
  options.limits.max_bytes_per_sample = 1608;  // (2 + 400) * 4
  report = CheckAdmission(wide, {4}, 2, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->feature_dim, 400);
  options.limits.max_classes = 1;
  EXPECT_EQ(CheckAdmission(wide, {4}, 2, options).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------------------------
// Assets from scripts/make_assets.py; scripts/test.sh always builds them, so missing assets fail.

double Dot(const std::vector<float>& a, const std::vector<float>& b);

std::optional<nlohmann::json> AssetManifest(std::string* dir) {
  const char* env = std::getenv("MODELDOCK_ASSET_DIR");
  if (env == nullptr) return std::nullopt;
  std::ifstream in(fs::path(env) / "MANIFEST.json");
  if (!in) return std::nullopt;
  *dir = env;
  return nlohmann::json::parse(in);
}

TEST(AssetsTest, FixturesGetTheStatusTheirManifestExpects) {
  std::string dir;
  const std::optional<nlohmann::json> manifest = AssetManifest(&dir);
  ASSERT_TRUE(manifest) << "no MANIFEST.json in $MODELDOCK_ASSET_DIR (scripts/make_assets.py builds it)";
  const std::map<std::string, absl::StatusCode> codes = {
      {"accept", absl::StatusCode::kOk},
      {"reject INVALID_ARGUMENT", absl::StatusCode::kInvalidArgument},
      {"reject FAILED_PRECONDITION", absl::StatusCode::kFailedPrecondition},
      {"reject RESOURCE_EXHAUSTED", absl::StatusCode::kResourceExhausted},
      {"reject DEADLINE_EXCEEDED", absl::StatusCode::kDeadlineExceeded}};
  int checked = 0;
  for (const auto& [name, fixture] : manifest->at("fixtures").items()) {
    const std::string expect = fixture.at("expect");
    const auto code = codes.find(expect.substr(0, expect.find(':')));
    ASSERT_NE(code, codes.end()) << name << ": " << expect;
    auto report = CheckAdmission((fs::path(dir) / "fixtures" / (name + ".pt")).string(),
                                 fixture.at("input_shape").get<std::vector<int64_t>>(),
                                 fixture.at("declared_labels").get<int>(), AdmissionOptions{});
    EXPECT_EQ(report.status().code(), code->second) << name << ": " << report.status();
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(AssetsTest, ReferenceEncoderHasTheManifestDim) {
  std::string dir;
  const std::optional<nlohmann::json> manifest = AssetManifest(&dir);
  ASSERT_TRUE(manifest) << "no MANIFEST.json in $MODELDOCK_ASSET_DIR (scripts/make_assets.py builds it)";
  const nlohmann::json& info = manifest->at("reference_encoder");
  const std::string path = (fs::path(dir) / info.at("file").get<std::string>()).string();
  auto encoder = ReferenceEncoder::Load(path, info.at("input_shape").get<std::vector<int64_t>>());
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  EXPECT_EQ((*encoder)->dim(), info.at("embedding_dim").get<int>());
  EXPECT_EQ((*encoder)->sha256(),
            manifest->at("files").at(info.at("file").get<std::string>()).at("sha256"));
}

// The untrained encoder on real assets: the Fashion-MNIST tops query must be closest to the
// tops model, then to the all-classes model (the tuning of UntrainedEncoderOptions::sigma).
TEST(AssetsTest, TopsQueryRetrievesTheTopsModel) {
  std::string dir;
  const std::optional<nlohmann::json> manifest = AssetManifest(&dir);
  ASSERT_TRUE(manifest) << "no MANIFEST.json in $MODELDOCK_ASSET_DIR (scripts/make_assets.py builds it)";
  auto probe = datasets::LoadNpy((fs::path(dir) / "probe_set_28.npy").string());
  ASSERT_TRUE(probe.ok()) << probe.status();
  datasets::LoadOptions query_options;
  query_options.labels_path = (fs::path(dir) / "demo/query_tops/query-labels-idx1-ubyte").string();
  auto query = datasets::LoadIdx(
      (fs::path(dir) / "demo/query_tops/query-images-idx3-ubyte").string(), query_options);
  ASSERT_TRUE(query.ok()) << query.status();
  auto reference = ReferenceEncoder::Load((fs::path(dir) / "reference_encoder.pt").string(),
                                          {1, 28, 28});
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto probe_embeddings = (*reference)->Embed(probe->samples);
  auto query_embeddings = (*reference)->Embed(query->samples);
  ASSERT_TRUE(probe_embeddings.ok() && query_embeddings.ok());

  auto encoder = MakeUntrainedEncoder((*reference)->dim());
  auto q = encoder->EncodeQuery(*query_embeddings, query->labels, query->NumClasses());
  ASSERT_TRUE(q.ok()) << q.status();
  std::map<double, std::string> ranking;  // ascending score
  for (const std::string name : {"fmnist-tops-cnn", "fmnist-all-mlp", "fmnist-footwear-cnn",
                                 "fmnist-shuffled-cnn", "glyph-digits-cnn"}) {
    TorchScriptOptions options;
    options.input_shape = {1, 28, 28};
    auto model = LoadTorchScriptModel((fs::path(dir) / "demo" / (name + ".pt")).string(), options);
    ASSERT_TRUE(model.ok()) << model.status();
    auto out = (*model)->Run(probe->samples, false);
    ASSERT_TRUE(out.ok()) << out.status();
    auto m = encoder->EncodeModel(SelectGrid(out->logits), *probe_embeddings);
    ASSERT_TRUE(m.ok()) << m.status();
    ranking[Dot(*m, *q)] = name;
  }
  std::string order;
  for (auto it = ranking.rbegin(); it != ranking.rend(); ++it) {
    order += it->second + "=" + std::to_string(it->first) + " ";
  }
  SCOPED_TRACE(order);
  std::cout << order << "\n";
  EXPECT_EQ(ranking.rbegin()->second, "fmnist-tops-cnn");
  EXPECT_EQ(std::next(ranking.rbegin())->second, "fmnist-all-mlp");
}

// ---------------------------------------------------------------------------------------------
// ReferenceEncoder

TEST(ReferenceEncoderTest, DiscoversDimAndAdaptsInputs) {
  TempDir dir;
  // 8x8 grey input -> 5 features: the mean of each of the first 5 rows and the overall mean.
  const std::string path = SaveModule(dir, "Reference", R"(
def forward(self, x):
    assert x.size(1) == 1 and x.size(2) == 8 and x.size(3) == 8
    return x[:, 0, 0:5, :].mean(2)
)");
  auto encoder = ReferenceEncoder::Load(path, {1, 8, 8});
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  EXPECT_EQ((*encoder)->dim(), 5);
  EXPECT_EQ((*encoder)->sha256(), *Sha256::OfFile(path));
  // A constant 28x28 image resizes to a constant 8x8 one.
  Tensor x({2, 1, 28, 28}, std::vector<float>(2 * 784, 0.25f));
  std::fill(x.values.begin() + 784, x.values.end(), 0.75f);
  auto e = (*encoder)->Embed(x);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_THAT(e->shape, ElementsAre(2, 5));
  for (int i = 0; i < 10; ++i) EXPECT_NEAR(e->values[i], i < 5 ? 0.25 : 0.75, 1e-6);

  EXPECT_EQ(ReferenceEncoder::Load(dir.File("none.pt"), {1, 8, 8}).status().code(),
            absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// SelectGrid

TEST(SelectGridTest, HandMadeLogits) {
  // Softmax rows (rounded): s0 .987/.007/.007, s1 .787/.107/.107, s2 .045/.909/.045,
  // s3 .450/.549/.001, s4 .622/.377/.002, s5 .018/.018/.965, s6 .149/.404/.447.
  const Tensor logits({7, 3}, {5, 0, 0, 2, 0, 0, 0, 3, 0, 1, 1.2f, -5, 1, 0.5f, -5, 0, 0, 4,
                               0, 1, 1.1f});
  GridOptions options;
  options.nodes_per_class = 3;
  options.boundary_per_pair = 2;
  const KnowledgeGrid grid = SelectGrid(logits, options);
  EXPECT_EQ(grid.num_classes, 3);
  ASSERT_EQ(grid.nodes.size(), 3u);
  EXPECT_THAT(grid.nodes[0], ElementsAre(0, 1, 4));
  EXPECT_THAT(grid.nodes[1], ElementsAre(2, 3, 6));  // s6 fills: highest p1 among the others
  EXPECT_THAT(grid.nodes[2], ElementsAre(5, 6, 1));  // s1 fills: highest p2 among the others
  ASSERT_EQ(grid.boundary.size(), 3u);
  // Pair {0, 1}: s0..s4 (s0, s2 by the lower-index tie for second place); margins s3 < s4.
  EXPECT_THAT(grid.boundary[0][1], ElementsAre(3, 4));
  EXPECT_THAT(grid.boundary[1][0], ElementsAre(3, 4));
  EXPECT_THAT(grid.boundary[0][2], ElementsAre(5));
  EXPECT_THAT(grid.boundary[2][0], ElementsAre(5));
  EXPECT_THAT(grid.boundary[1][2], ElementsAre(6));
  EXPECT_THAT(grid.boundary[2][1], ElementsAre(6));
  for (int k = 0; k < 3; ++k) EXPECT_TRUE(grid.boundary[k][k].empty());

  options.nodes_per_class = 1;
  options.boundary_per_pair = 1;
  const KnowledgeGrid small = SelectGrid(logits, options);
  EXPECT_THAT(small.nodes[0], ElementsAre(0));
  EXPECT_THAT(small.nodes[1], ElementsAre(2));
  EXPECT_THAT(small.nodes[2], ElementsAre(5));
  EXPECT_THAT(small.boundary[0][1], ElementsAre(3));
}

// A feature extractor's grid: clusters of its L2-normalised features stand in for classes.
// Two groups lying exactly on e1 and e2 give centres e1 and e2: pseudo-logits 0 for a sample's
// own cluster and -|e1 - e2|^2 = -2 for the other.
TEST(FeatureGridLogitsTest, ClustersOfNormalisedFeaturesGiveExactDistances) {
  const Tensor features({6, 2}, {1, 0, 2, 0, 3, 0, 0, 1, 0, 5, 0, 2});
  const Tensor logits = FeatureGridLogits(features, 2);
  ASSERT_EQ(logits.shape, (std::vector<int64_t>{6, 2}));
  const int a = logits.values[0] == 0.0f ? 0 : 1;  // cluster id of the e1 group
  for (int i = 0; i < 6; ++i) {
    const int own = i < 3 ? a : 1 - a;
    EXPECT_FLOAT_EQ(logits.values[i * 2 + own], 0.0f) << i;
    EXPECT_FLOAT_EQ(logits.values[i * 2 + (1 - own)], -2.0f) << i;
  }
  const KnowledgeGrid grid = SelectGrid(logits, GridOptions{});
  EXPECT_EQ(grid.num_classes, 2);
}

TEST(SelectGridTest, TiesGoByIndex) {
  const Tensor logits({4, 2}, std::vector<float>(8, 0.0f));
  GridOptions options;
  options.nodes_per_class = 2;
  options.boundary_per_pair = 3;
  const KnowledgeGrid grid = SelectGrid(logits, options);
  EXPECT_THAT(grid.nodes[0], ElementsAre(0, 1));
  EXPECT_THAT(grid.nodes[1], ElementsAre(0, 1));
  EXPECT_THAT(grid.boundary[0][1], ElementsAre(0, 1, 2));
  EXPECT_TRUE(SelectGrid(Tensor({0, 3}, {})).nodes[2].empty());
}

// ---------------------------------------------------------------------------------------------
// Untrained knowledge encoder

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// `rows` random unit vectors of width `dim` (Gaussian directions).
Tensor RandomUnitRows(int rows, int dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Tensor t({rows, dim}, {});
  for (int i = 0; i < rows; ++i) {
    double norm = 0;
    std::vector<float> v(dim);
    for (float& x : v) {
      x = normal(rng);
      norm += x * x;
    }
    for (float& x : v) t.values.push_back(static_cast<float>(x / std::sqrt(norm)));
  }
  return t;
}

KnowledgeGrid NodesOnly(const std::vector<std::vector<int32_t>>& nodes) {
  KnowledgeGrid grid;
  grid.num_classes = static_cast<int>(nodes.size());
  grid.nodes = nodes;
  grid.boundary.assign(nodes.size(), std::vector<std::vector<int32_t>>(nodes.size()));
  return grid;
}

TEST(UntrainedEncoderTest, UnitNormDeterministicAndDescribed) {
  const Tensor probe = RandomUnitRows(12, 16, 1);
  KnowledgeGrid grid = NodesOnly({{0, 1}, {2, 3}, {4, 5}});
  grid.boundary[0][1] = grid.boundary[1][0] = {6, 7};
  auto a = MakeUntrainedEncoder(16);
  auto b = MakeUntrainedEncoder(16);
  EXPECT_EQ(a->dim(), 256);
  auto va = a->EncodeModel(grid, probe);
  auto vb = b->EncodeModel(grid, probe);
  ASSERT_TRUE(va.ok() && vb.ok()) << va.status();
  ASSERT_EQ(va->size(), 256u);
  EXPECT_NEAR(Dot(*va, *va), 1.0, 1e-5);
  EXPECT_EQ(*va, *vb);

  auto q = a->EncodeQuery(probe, {0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2}, 3);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_NEAR(Dot(*q, *q), 1.0, 1e-5);
  EXPECT_EQ(*q, *b->EncodeQuery(probe, {0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2}, 3));

  UntrainedEncoderOptions other_seed;
  other_seed.seed = 1;
  EXPECT_NE(*va, *MakeUntrainedEncoder(16, other_seed)->EncodeModel(grid, probe));
  // The boundary weight changes model vectors only.
  UntrainedEncoderOptions heavy;
  heavy.boundary_weight = 1.0;
  auto heavy_encoder = MakeUntrainedEncoder(16, heavy);
  EXPECT_NE(*va, *heavy_encoder->EncodeModel(grid, probe));
  EXPECT_EQ(*q, *heavy_encoder->EncodeQuery(probe, {0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2}, 3));

  const std::string description = a->Describe();
  EXPECT_THAT(description, HasSubstr("dim=256"));
  EXPECT_THAT(description, HasSubstr("embedding_dim=16"));
  EXPECT_THAT(description, HasSubstr("seed=20250101"));
  EXPECT_THAT(description, HasSubstr("sigma=0.25"));
  EXPECT_THAT(description, HasSubstr("boundary_weight=0.25"));
}

TEST(UntrainedEncoderTest, InnerProductApproximatesTheGaussianKernel) {
  UntrainedEncoderOptions options;
  options.dim = 8192;
  auto encoder = MakeUntrainedEncoder(8, options);
  // Two unit vectors at a known angle: |a - b|^2 = 2 - 2 cos.
  for (double angle : {0.0, 0.2, 0.4, 0.8}) {
    Tensor pair({2, 8}, std::vector<float>(16, 0.0f));
    pair.values[0] = 1;
    pair.values[8] = static_cast<float>(std::cos(angle));
    pair.values[9] = static_cast<float>(std::sin(angle));
    auto m = encoder->EncodeModel(NodesOnly({{0}}), pair);
    auto q = encoder->EncodeQuery(Tensor({1, 8}, {pair.values.begin() + 8, pair.values.end()}),
                                  {0}, 1);
    ASSERT_TRUE(m.ok() && q.ok());
    const double d2 = 2 - 2 * std::cos(angle);
    EXPECT_NEAR(Dot(*m, *q), std::exp(-d2 / (2 * options.sigma * options.sigma)), 0.05) << angle;
  }
}

TEST(UntrainedEncoderTest, MatchingPrototypesScoreHigher) {
  // Probe: 6 groups of 4 noisy copies of 6 random directions; model A's classes are groups
  // 0..2, model B's groups 3..5.
  const int de = 32;
  const Tensor centres = RandomUnitRows(6, de, 2);
  const Tensor noise = RandomUnitRows(24, de, 3);
  Tensor probe({24, de}, {});
  for (int i = 0; i < 24; ++i) {
    for (int j = 0; j < de; ++j) {
      probe.values.push_back(centres.values[(i / 4) * de + j] + 0.2f * noise.values[i * de + j]);
    }
  }
  auto encoder = MakeUntrainedEncoder(de);
  auto model_a = encoder->EncodeModel(NodesOnly({{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}}),
                                      probe);
  auto model_b = encoder->EncodeModel(
      NodesOnly({{12, 13, 14, 15}, {16, 17, 18, 19}, {20, 21, 22, 23}}), probe);
  ASSERT_TRUE(model_a.ok() && model_b.ok());
  // Query prototypes equal to model A's nodes.
  Tensor query({12, de}, {probe.values.begin(), probe.values.begin() + 12 * de});
  auto q = encoder->EncodeQuery(query, {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}, 3);
  ASSERT_TRUE(q.ok());
  const double sa = Dot(*q, *model_a), sb = Dot(*q, *model_b);
  EXPECT_GT(sa, 0.9);
  EXPECT_LT(sb, 0.3);
}

TEST(UntrainedEncoderTest, RejectsBadInputs) {
  auto encoder = MakeUntrainedEncoder(4);
  const Tensor probe = RandomUnitRows(3, 4, 4);
  EXPECT_EQ(encoder->EncodeModel(NodesOnly({{0}}), RandomUnitRows(3, 5, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(encoder->EncodeModel(NodesOnly({{3}}), probe).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(encoder->EncodeModel(NodesOnly({{}}), probe).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(encoder->EncodeQuery(probe, {0, 1, 2}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(encoder->EncodeQuery(probe, {0, 1}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// ClusterLabels

TEST(ClusterLabelsTest, RecoversSeparatedBlobs) {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  const float centres[3][2] = {{0, 0}, {10, 0}, {0, 10}};
  Tensor points({60, 2}, {});
  std::vector<int32_t> truth;
  for (int i = 0; i < 60; ++i) {
    // Blob order 2, 0, 1, ...: renumbering by first appearance must give 0, 1, 2, ...
    const int blob = (i + 2) % 3;
    truth.push_back(i % 3);
    points.values.push_back(centres[blob][0] + normal(rng));
    points.values.push_back(centres[blob][1] + normal(rng));
  }
  EXPECT_EQ(ClusterLabels(points, 3), truth);
  EXPECT_EQ(ClusterLabels(points, 3, 12345), truth);
  // k is clipped to N.
  EXPECT_THAT(ClusterLabels(Tensor({3, 1}, {0, 5, 10}), 10), ElementsAre(0, 1, 2));
  EXPECT_THAT(ClusterLabels(Tensor({3, 1}, {0, 5, 10}), 1), ElementsAre(0, 0, 0));
}

}  // namespace
}  // namespace modeldock::encoder
