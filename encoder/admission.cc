// CheckAdmission: plain C++ over the BlackBoxModel interface (no torch header here).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "encoder/admission_internal.h"
#include "encoder/black_box.h"

namespace modeldock::encoder {
namespace internal {

Tensor UniformSamples(int64_t rows, const std::vector<int64_t>& sample_shape, uint32_t seed) {
  std::vector<int64_t> shape = {rows};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  Tensor t(shape, {});
  std::mt19937 rng(seed);
  t.values.resize(t.NumElements());
  // 24 random bits -> exactly representable floats in [0, 1).
  for (float& v : t.values) v = static_cast<float>(rng() >> 8) * (1.0f / 16777216.0f);
  return t;
}

std::vector<TestText> TextTestBatch(int64_t random_rows, uint32_t seed) {
  std::string long_text;
  while (long_text.size() < 65536) long_text += "the quick brown fox jumps over the lazy dog ";
  std::vector<TestText> batch = {
      {"the empty string", ""},
      {"a whitespace-only string", " \t \n  "},
      {"a 64 KiB string", long_text},
      {"a non-ASCII string", "Gr\xC3\xBC\xC3\x9F" "e, \xE6\x9D\xB1\xE4\xBA\xAC, "
                             "\xD0\x9C\xD0\xBE\xD1\x81\xD0\xBA\xD0\xB2\xD0\xB0, "
                             "\xD8\xB3\xD9\x84\xD8\xA7\xD9\x85 \xF0\x9F\x98\x80 caf\xC3\xA9"},
      {"a string of control characters", "\x01\x02\x1b[31mred\x1b[0m\r\n\x7f\x08\f\v"},
      {"a string with a NUL byte", std::string("before\0after", 12)},
  };
  // Seeded words: lowercase ASCII letters with now and then a 2-byte UTF-8 letter (U+00E0..).
  std::mt19937 rng(seed);
  for (int64_t r = 0; r < random_rows; ++r) {
    std::string text;
    const int words = 1 + static_cast<int>(rng() % 24);
    for (int w = 0; w < words; ++w) {
      if (w > 0) text += ' ';
      const int letters = 1 + static_cast<int>(rng() % 9);
      for (int l = 0; l < letters; ++l) {
        const uint32_t v = rng();
        if (v % 16 == 0) {
          const uint32_t cp = 0xE0 + (v >> 8) % 32;
          text += static_cast<char>(0xC0 | (cp >> 6));
          text += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          text += static_cast<char>('a' + (v >> 8) % 26);
        }
      }
    }
    batch.push_back({absl::StrCat("seeded test string ", r), std::move(text)});
  }
  return batch;
}

}  // namespace internal

namespace {

constexpr uint32_t kTestBatchSeed = 42;

std::string ShapeOf(const Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.shape, ", "), "]"); }

// FAILED_PRECONDITION naming how many of `what`'s values on the test batch are NaN/Inf.
absl::Status CheckFinite(const char* what, const Tensor& t) {
  int64_t bad = 0;
  for (float v : t.values) bad += !std::isfinite(v);
  if (bad == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(what, " returned NaN/Inf in ", bad, " of ",
                                                    t.values.size(), " values on the test batch"));
}

// The report with the time the checks took.
AdmissionReport Finished(AdmissionReport report, std::chrono::steady_clock::time_point start) {
  report.millis =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return report;
}

// embed_layers on the test batch (already run, so count, shapes and widths passed the run's
// checks): finite values, and names that say which layer is which. Fills the report's layers.
absl::Status CheckLayers(const BlackBoxModel& model, const ModelOutputs& out,
                         AdmissionReport* report) {
  if (!model.has_layers()) return absl::OkStatus();
  if (out.layers.empty()) return absl::FailedPreconditionError("embed_layers returned no layers");
  for (size_t l = 0; l < out.layers.size(); ++l) {
    const std::string what = absl::StrCat("embed_layers layer ", l);
    if (absl::Status s = CheckFinite(what.c_str(), out.layers[l]); !s.ok()) return s;
    report->layer_dims.push_back(out.layers[l].shape[1]);
  }
  if (!model.layer_names_error().empty()) {
    return absl::FailedPreconditionError(model.layer_names_error());
  }
  const std::vector<std::string>& names = model.layer_names();
  if (!names.empty()) {
    if (names.size() != out.layers.size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "layer_names has ", names.size(), " names but embed_layers returned ", out.layers.size(),
          " layers"));
    }
    std::set<std::string> seen;
    for (const std::string& name : names) {
      const bool printable = std::all_of(name.begin(), name.end(), [](char c) {
        return c > ' ' && c < 127;
      });
      if (name.empty() || name.size() > 64 || !printable) {
        return absl::FailedPreconditionError(absl::StrCat(
            "layer name '", name, "' is not 1-64 printable characters without spaces"));
      }
      if (!seen.insert(name).second) {
        return absl::FailedPreconditionError(
            absl::StrCat("layer_names names '", name, "' twice"));
      }
    }
  }
  report->layer_names = LayerNames(names, out.layers.size());
  return absl::OkStatus();
}

absl::Status CheckArguments(int num_labels, const AdmissionOptions& options) {
  if (num_labels < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_labels must be >= 0 (0 = feature extractor), got ", num_labels));
  }
  if (options.test_batch <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("test_batch must be positive, got ", options.test_batch));
  }
  if (num_labels > options.limits.max_classes) {
    return absl::FailedPreconditionError(absl::StrCat("the model declares ", num_labels,
                                                      " classes; the dock accepts at most ",
                                                      options.limits.max_classes));
  }
  return absl::OkStatus();
}

absl::Status CheckSize(int64_t bytes, const AdmissionOptions& options) {
  if (bytes <= options.max_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("model file is ", bytes,
                                                   " bytes, larger than the limit of ",
                                                   options.max_bytes, " bytes"));
}

// How admission loads a model: the test batch size and the output limits.
TorchScriptOptions LoadOptions(const std::vector<int64_t>& input_shape,
                               const AdmissionOptions& options) {
  TorchScriptOptions load;
  load.input_kind = options.input_kind;
  load.input_shape = input_shape;
  load.batch_size = options.test_batch;
  load.limits = options.limits;
  return load;
}

// Everything after loading: the test batch and the checks of its outputs.
absl::StatusOr<AdmissionReport> CheckLoaded(
    absl::StatusOr<std::unique_ptr<BlackBoxModel>> model, const std::vector<int64_t>& input_shape,
    int num_labels, const AdmissionOptions& options, std::chrono::steady_clock::time_point start);

}  // namespace

absl::Status CheckOutputs(const ModelOutputs& outputs, int64_t rows, int64_t expected_classes,
                          int64_t expected_feature_dim,
                          const std::vector<int64_t>& expected_layer_dims,
                          const OutputLimits& limits) {
  const Tensor& logits = outputs.logits;
  if (logits.shape.size() != 2 || logits.shape[0] != rows || logits.shape[1] != expected_classes) {
    return absl::FailedPreconditionError(absl::StrCat("forward returned shape ", ShapeOf(logits),
                                                      "; expected [", rows, ", ",
                                                      expected_classes, "]"));
  }
  const bool has_features = !outputs.features.shape.empty();
  const int64_t width = has_features && outputs.features.shape.size() == 2
                            ? outputs.features.shape[1] : 0;
  if (has_features) {
    if (outputs.features.shape.size() != 2 || outputs.features.shape[0] != rows ||
        (expected_feature_dim > 0 && width != expected_feature_dim)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "embed returned shape ", ShapeOf(outputs.features), "; expected [", rows, ", ",
          expected_feature_dim > 0 ? absl::StrCat(expected_feature_dim) : std::string("D"), "]"));
    }
  }
  if (expected_classes > limits.max_classes) {
    return absl::FailedPreconditionError(absl::StrCat("the model has ", expected_classes,
                                                      " classes; the dock accepts at most ",
                                                      limits.max_classes));
  }
  if (width > limits.max_feature_dim) {
    return absl::FailedPreconditionError(absl::StrCat("embed returned ", width,
                                                      " features per sample; the dock accepts at "
                                                      "most ", limits.max_feature_dim));
  }
  int64_t layer_width = 0;
  if (!outputs.layers.empty()) {
    if (outputs.layers.size() != expected_layer_dims.size()) {
      return absl::FailedPreconditionError(absl::StrCat("embed_layers returned ",
                                                        outputs.layers.size(), " layers; expected ",
                                                        expected_layer_dims.size()));
    }
    if (static_cast<int64_t>(outputs.layers.size()) > limits.max_layers) {
      return absl::FailedPreconditionError(absl::StrCat(
          "embed_layers returned ", outputs.layers.size(), " layers; the dock scores at most ",
          limits.max_layers, " (--max-layers)"));
    }
    for (size_t l = 0; l < outputs.layers.size(); ++l) {
      const Tensor& layer = outputs.layers[l];
      if (layer.shape.size() != 2 || layer.shape[0] != rows ||
          layer.shape[1] != expected_layer_dims[l]) {
        return absl::FailedPreconditionError(absl::StrCat(
            "embed_layers layer ", l, " has shape ", ShapeOf(layer), "; expected [", rows, ", ",
            expected_layer_dims[l], "]"));
      }
      if (layer.shape[1] > limits.max_feature_dim) {
        return absl::FailedPreconditionError(absl::StrCat(
            "embed_layers layer ", l, " has ", layer.shape[1],
            " features per sample; the dock accepts at most ", limits.max_feature_dim));
      }
      layer_width += layer.shape[1];
    }
  }
  const int64_t bytes =
      (expected_classes + width + layer_width) * static_cast<int64_t>(sizeof(float));
  if (bytes > limits.max_bytes_per_sample) {
    return absl::FailedPreconditionError(absl::StrCat(
        "outputs take ", bytes, " bytes per sample (", expected_classes, " logits + ", width,
        " features + ", layer_width, " layer features); the dock accepts at most ",
        limits.max_bytes_per_sample));
  }
  return absl::OkStatus();
}

absl::StatusOr<AdmissionReport> CheckAdmission(const std::string& path,
                                               const std::vector<int64_t>& input_shape,
                                               int num_labels, const AdmissionOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (absl::Status s = CheckArguments(num_labels, options); !s.ok()) return s;
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read model file ", path, ": ", ec.message()));
  if (absl::Status s = CheckSize(static_cast<int64_t>(size), options); !s.ok()) return s;
  return CheckLoaded(LoadTorchScriptModel(path, LoadOptions(input_shape, options)), input_shape,
                     num_labels, options, start);
}

absl::StatusOr<AdmissionReport> CheckAdmissionOfBytes(const std::string& bytes,
                                                      const std::string& name,
                                                      const std::vector<int64_t>& input_shape,
                                                      int num_labels,
                                                      const AdmissionOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (absl::Status s = CheckArguments(num_labels, options); !s.ok()) return s;
  if (absl::Status s = CheckSize(static_cast<int64_t>(bytes.size()), options); !s.ok()) return s;
  return CheckLoaded(
      LoadTorchScriptModelFromBytes(bytes, name, LoadOptions(input_shape, options)), input_shape,
      num_labels, options, start);
}

namespace {

// The test batch of an image or tabular model: seeded uniform samples of input_shape.
absl::StatusOr<ModelOutputs> RunTestBatch(BlackBoxModel& model,
                                          const std::vector<int64_t>& input_shape,
                                          const AdmissionOptions& options) {
  const Tensor batch = internal::UniformSamples(options.test_batch, input_shape, kTestBatchSeed);
  absl::StatusOr<ModelOutputs> out = model.Run(batch, /*want_features=*/true,
                                               /*want_layers=*/true);
  if (!out.ok()) {
    return absl::Status(out.status().code(), absl::StrCat("test batch of shape ", ShapeOf(batch),
                                                          ": ", out.status().message()));
  }
  return out;
}

// The test batch of a text model (internal::TextTestBatch). When the batch fails, each string is
// run alone so that the message names the first one the model fails on.
absl::StatusOr<ModelOutputs> RunTextTestBatch(BlackBoxModel& model,
                                              const AdmissionOptions& options) {
  const std::vector<internal::TestText> batch =
      internal::TextTestBatch(options.test_batch, kTestBatchSeed);
  std::vector<std::string> texts;
  for (const internal::TestText& t : batch) texts.push_back(t.text);
  absl::StatusOr<ModelOutputs> out = model.RunText(texts, /*want_features=*/true,
                                                   /*want_layers=*/true);
  if (out.ok()) return out;
  for (const internal::TestText& t : batch) {
    absl::StatusOr<ModelOutputs> one = model.RunText({t.text}, true, true);
    if (!one.ok()) {
      return absl::Status(one.status().code(), absl::StrCat("text test batch, on ", t.what, ": ",
                                                            one.status().message()));
    }
  }
  return absl::Status(out.status().code(), absl::StrCat("text test batch of ", texts.size(),
                                                        " strings: ", out.status().message()));
}

absl::StatusOr<AdmissionReport> CheckLoaded(
    absl::StatusOr<std::unique_ptr<BlackBoxModel>> model, const std::vector<int64_t>& input_shape,
    int num_labels, const AdmissionOptions& options,
    std::chrono::steady_clock::time_point start) {
  if (!model.ok()) return model.status();
  absl::StatusOr<ModelOutputs> out = options.input_kind == InputKind::kText
                                         ? RunTextTestBatch(**model, options)
                                         : RunTestBatch(**model, input_shape, options);
  if (!out.ok()) return out.status();
  const int64_t rows = out->logits.shape.empty() ? 0 : out->logits.shape[0];
  const Tensor& logits = out->logits;
  AdmissionReport report;
  if (num_labels == 0) {
    // A feature extractor: forward(x) returns features [N, D]; embed, if exported, is not used.
    const int64_t width = logits.shape.size() == 2 ? logits.shape[1] : 0;
    if (logits.shape.size() != 2 || logits.shape[0] != rows || width <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("forward returned shape ", ShapeOf(logits), "; a feature extractor returns [",
                       rows, ", D] with D > 0"));
    }
    if (absl::Status s = CheckFinite("forward", logits); !s.ok()) return s;
    if (width > options.limits.max_feature_dim) {
      return absl::FailedPreconditionError(absl::StrCat(
          "forward returned ", width, " features per sample; the dock accepts at most ",
          options.limits.max_feature_dim));
    }
    if (absl::Status s = CheckLayers(**model, *out, &report); !s.ok()) return s;
    ModelOutputs features_only;
    features_only.logits = logits;
    features_only.layers = out->layers;
    if (absl::Status s = CheckOutputs(features_only, rows, width, 0,
                                      report.layer_dims, options.limits);
        !s.ok()) {
      return s;
    }
    report.num_outputs = width;
    report.feature_dim = width;
    return Finished(report, start);
  }
  if (logits.shape[1] != num_labels) {
    return absl::FailedPreconditionError(absl::StrCat("forward returned shape ", ShapeOf(logits),
                                                      " but the model declares ", num_labels,
                                                      " labels"));
  }
  if (absl::Status s = CheckFinite("forward", logits); !s.ok()) return s;
  report.num_outputs = num_labels;
  report.has_embed = (*model)->has_embed();
  if (report.has_embed) {
    const Tensor& features = out->features;
    if (features.shape.size() != 2 || features.shape[1] <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("embed returned shape ", ShapeOf(features), ", expected [",
                       rows, ", D] with D > 0"));
    }
    if (absl::Status s = CheckFinite("embed", features); !s.ok()) return s;
    report.feature_dim = features.shape[1];
  }
  if (absl::Status s = CheckLayers(**model, *out, &report); !s.ok()) return s;
  if (absl::Status s = CheckOutputs(*out, rows, num_labels, report.feature_dim,
                                    report.layer_dims, options.limits);
      !s.ok()) {
    return s;
  }
  return Finished(report, start);
}

}  // namespace
}  // namespace modeldock::encoder
