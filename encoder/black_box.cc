// LoadTorchScriptModel and SetTorchThreads: the only translation unit of the library that
// includes LibTorch (admission, the reference encoder and AdaptInputs go through the
// BlackBoxModel interface or plain C++, so they compile fast).
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "encoder/black_box.h"
#include "encoder/util_internal.h"
#include "spdlog/spdlog.h"

namespace modeldock::encoder {
namespace {

std::string TorchShapeString(const at::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

// A c10::Error without the C++ backtrace, its error line first.
std::string ShortTorchMessage(const c10::Error& e) {
  return internal::LastLineFirst(e.what_without_backtrace());
}

class TorchScriptModel : public BlackBoxModel {
 public:
  TorchScriptModel(torch::jit::Module module, const TorchScriptOptions& options)
      : module_(std::move(module)),
        input_shape_(options.input_shape),
        text_(options.input_kind == InputKind::kText),
        batch_size_(std::max(1, options.batch_size)),
        limits_(options.limits),
        has_embed_(module_.find_method("embed").has_value()),
        has_layers_(module_.find_method("embed_layers").has_value()) {
    ReadLayerNames();
  }

  const std::vector<int64_t>& input_shape() const override { return input_shape_; }
  InputKind input_kind() const override { return text_ ? InputKind::kText : InputKind::kTensor; }
  bool has_embed() const override { return has_embed_; }
  bool has_layers() const override { return has_layers_; }
  const std::vector<std::string>& layer_names() const override { return layer_names_; }
  const std::string& layer_names_error() const override { return layer_names_error_; }

  absl::StatusOr<ModelOutputs> Run(const Tensor& samples, bool want_features,
                                   bool want_layers) override {
    if (text_) {
      return absl::InvalidArgumentError(
          "this is a text model: it takes a list of strings, not a tensor of samples");
    }
    if (!samples.IsConsistent() || samples.shape.size() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("samples must be a consistent [N, ...] tensor, got shape [",
                       absl::StrJoin(samples.shape, ", "), "] with ", samples.values.size(),
                       " values"));
    }
    if (samples.Rows() == 0) return absl::InvalidArgumentError("no samples to run");
    // Samples of another shape are adapted batch by batch, so that a large query for a large
    // model (5,000 64x64 images for a 224x224 model: 3 GB adapted) never exists whole.
    const bool adapt = samples.SampleShape() != input_shape_;
    const int64_t row = samples.RowSize();
    return RunBatches(
        samples.Rows(), want_features, want_layers,
        [&](int64_t start, int64_t b) -> absl::StatusOr<c10::IValue> {
          std::vector<int64_t> batch_shape = samples.shape;
          batch_shape[0] = b;
          const float* first = samples.values.data() + start * row;
          if (adapt) {
            absl::StatusOr<Tensor> a =
                AdaptInputs(Tensor(batch_shape, std::vector<float>(first, first + b * row)),
                            input_shape_);
            if (!a.ok()) return a.status();
            return c10::IValue(
                torch::from_blob(a->values.data(), a->shape, torch::kFloat32).clone());
          }
          // Cloned so that a model writing into its input cannot touch the caller's data.
          return c10::IValue(
              torch::from_blob(const_cast<float*>(first), batch_shape, torch::kFloat32).clone());
        });
  }

  absl::StatusOr<ModelOutputs> RunText(const std::vector<std::string>& texts, bool want_features,
                                       bool want_layers) override {
    if (!text_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "this model takes samples of shape ", ShapeToString(input_shape_), ", not text"));
    }
    if (texts.empty()) return absl::InvalidArgumentError("no texts to run");
    return RunBatches(static_cast<int64_t>(texts.size()), want_features, want_layers,
                      [&](int64_t start, int64_t b) -> absl::StatusOr<c10::IValue> {
                        c10::List<std::string> list;
                        list.reserve(b);
                        for (int64_t i = start; i < start + b; ++i) list.push_back(texts[i]);
                        return c10::IValue(std::move(list));
                      });
  }

 private:
  using MakeInput = std::function<absl::StatusOr<c10::IValue>(int64_t start, int64_t b)>;

  // Runs forward (and embed, embed_layers when wanted) on n inputs in batches made by
  // make_input, with the model's exceptions turned into statuses.
  absl::StatusOr<ModelOutputs> RunBatches(int64_t n, bool want_features, bool want_layers,
                                          const MakeInput& make_input) {
    const bool run_embed = want_features && has_embed_;
    const bool run_layers = want_layers && has_layers_;
    const char* stage = "forward";
    try {
      c10::InferenceMode guard;
      ModelOutputs out;
      for (int64_t start = 0; start < n; start += batch_size_) {
        const int64_t b = std::min<int64_t>(batch_size_, n - start);
        absl::StatusOr<c10::IValue> x = make_input(start, b);
        if (!x.ok()) return x.status();
        stage = "forward";
        absl::Status s = Append(stage, module_.forward({*x}), b, n, ClassLimit(), &out.logits);
        if (!s.ok()) return s;
        if (run_embed) {
          stage = "embed";
          s = Append(stage, module_.get_method("embed")({*x}), b, n, FeatureLimit(),
                     &out.features);
          if (!s.ok()) return s;
        }
        if (run_layers) {
          stage = "embed_layers";
          s = AppendLayers(module_.get_method("embed_layers")({*x}), b, n, &out.layers);
          if (!s.ok()) return s;
        }
      }
      return out;
    } catch (const c10::Error& e) {
      std::string message = ShortTorchMessage(e);
      // The worker's address-space limit shows up as a failed allocation inside the model.
      if (absl::StrContains(message, "can't allocate memory")) {
        return absl::ResourceExhaustedError(
            absl::StrCat(stage, " ran out of memory: ", message));
      }
      return absl::FailedPreconditionError(absl::StrCat(stage, " raised an error: ", message));
    } catch (const std::bad_alloc& e) {
      return absl::ResourceExhaustedError(absl::StrCat(stage, " ran out of memory: ", e.what()));
    } catch (const std::exception& e) {
      std::string message = internal::LastLineFirst(e.what());
      if (absl::StrContains(message, "can't allocate memory")) {
        return absl::ResourceExhaustedError(
            absl::StrCat(stage, " ran out of memory: ", message));
      }
      return absl::FailedPreconditionError(absl::StrCat(stage, " raised an error: ", message));
    }
  }

  int64_t ClassLimit() const {
    return std::min(limits_.max_classes, limits_.max_bytes_per_sample / 4);
  }
  int64_t FeatureLimit() const {
    return std::min(limits_.max_feature_dim, limits_.max_bytes_per_sample / 4);
  }

  // The `layer_names` attribute, if the module has one: a list of strings.
  void ReadLayerNames() {
    if (!module_.hasattr("layer_names")) return;
    c10::IValue names = module_.attr("layer_names");
    if (!names.isList()) {
      layer_names_error_ = absl::StrCat("layer_names is a ", names.tagKind(),
                                        ", expected a list of strings");
      return;
    }
    for (const c10::IValue& name : names.toListRef()) {
      if (!name.isString()) {
        layer_names_error_ = absl::StrCat("layer_names holds a ", name.tagKind(),
                                          ", expected only strings");
        layer_names_.clear();
        return;
      }
      layer_names_.push_back(name.toStringRef());
    }
  }

  // One batch of embed_layers(x): a list (or tuple) of 1..max_layers tensors, each checked and
  // appended like embed's output; the count may not change between batches.
  absl::Status AppendLayers(const c10::IValue& value, int64_t b, int64_t n,
                            std::vector<Tensor>* layers) const {
    std::vector<c10::IValue> items;
    if (value.isList()) {
      for (const c10::IValue& item : value.toListRef()) items.push_back(item);
    } else if (value.isTuple()) {
      for (const c10::IValue& item : value.toTupleRef().elements()) items.push_back(item);
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "embed_layers returned a ", value.tagKind(), ", expected a list of float tensors [N, D]"));
    }
    if (items.empty()) {
      return absl::FailedPreconditionError("embed_layers returned no layers");
    }
    if (static_cast<int64_t>(items.size()) > limits_.max_layers) {
      return absl::FailedPreconditionError(absl::StrCat(
          "embed_layers returned ", items.size(), " layers; the dock scores at most ",
          limits_.max_layers, " (--max-layers)"));
    }
    if (layers->empty()) {
      layers->resize(items.size());
    } else if (layers->size() != items.size()) {
      return absl::FailedPreconditionError(absl::StrCat("embed_layers returned ", items.size(),
                                                        " layers after ", layers->size(),
                                                        " on an earlier batch"));
    }
    for (size_t l = 0; l < items.size(); ++l) {
      const std::string what = absl::StrCat("embed_layers layer ", l);
      absl::Status s = Append(what.c_str(), items[l], b, n, FeatureLimit(), &(*layers)[l]);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Checks one batch's output ([b, W] floating point, W <= max_width and equal across batches)
  // and appends it as float32 to `dst`, which is sized [n, W] on the first batch.
  static absl::Status Append(const char* what, const c10::IValue& value, int64_t b, int64_t n,
                             int64_t max_width, Tensor* dst) {
    // forward's width is K classes (D features for an extractor); embed's and layers' is D.
    const char* width_name = std::strcmp(what, "forward") == 0 ? "K" : "D";
    if (!value.isTensor()) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, " returned a ", value.tagKind(), ", expected a float tensor [N, ", width_name, "]"));
    }
    const at::Tensor& t = value.toTensor();
    if (!t.is_floating_point()) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, " returned a ", c10::toString(t.scalar_type()), " tensor, expected float"));
    }
    if (t.dim() != 2 || t.size(0) != b) {
      return absl::FailedPreconditionError(absl::StrCat(what, " returned shape ",
                                                        TorchShapeString(t), " for ", b,
                                                        " samples, expected [", b, ", ",
                                                        width_name, "]"));
    }
    const int64_t width = t.size(1);
    if (width > max_width) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, " returned ", width, " values per sample; the dock accepts at most ", max_width,
          " (output limits: --max-classes, --max-feature-dim, --max-output-bytes-per-sample)"));
    }
    if (dst->shape.empty()) {
      dst->shape = {n, width};
      dst->values.clear();
      dst->values.reserve(n * width);
    } else if (dst->shape[1] != width) {
      return absl::FailedPreconditionError(absl::StrCat(what, " returned width ", width,
                                                        " after width ", dst->shape[1],
                                                        " on an earlier batch"));
    }
    at::Tensor f = t.to(torch::kFloat32).contiguous();
    const float* p = f.data_ptr<float>();
    dst->values.insert(dst->values.end(), p, p + b * width);
    return absl::OkStatus();
  }

  torch::jit::Module module_;
  std::vector<int64_t> input_shape_;
  bool text_;
  int batch_size_;
  OutputLimits limits_;
  bool has_embed_;
  bool has_layers_;
  std::vector<std::string> layer_names_;
  std::string layer_names_error_;
};

}  // namespace

std::vector<std::string> LayerNames(const std::vector<std::string>& exported, size_t count) {
  if (exported.size() == count) return exported;
  std::vector<std::string> names;
  for (size_t l = 0; l < count; ++l) names.push_back(absl::StrCat("layer", l));
  return names;
}

namespace {

absl::Status CheckInputShape(const std::vector<int64_t>& input_shape) {
  if (input_shape.empty()) return absl::InvalidArgumentError("the model's input shape is empty");
  for (int64_t d : input_shape) {
    if (d <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid input shape ", ShapeToString(input_shape)));
    }
  }
  return absl::OkStatus();
}

// torch::jit::load from a path or a stream, with its exceptions turned into statuses.
template <typename Source>
absl::StatusOr<std::unique_ptr<BlackBoxModel>> Load(Source& source, const std::string& name,
                                                     const TorchScriptOptions& options) {
  if (options.input_kind == InputKind::kText) {
    if (!options.input_shape.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a text model has no input shape, got ", ShapeToString(options.input_shape)));
    }
  } else if (absl::Status s = CheckInputShape(options.input_shape); !s.ok()) {
    return s;
  }
  try {
    torch::jit::Module module = torch::jit::load(source, torch::kCPU);
    module.eval();
    return std::unique_ptr<BlackBoxModel>(new TorchScriptModel(std::move(module), options));
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a TorchScript archive: ", name, ": ", ShortTorchMessage(e)));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a TorchScript archive: ", name, ": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlackBoxModel>> LoadTorchScriptModel(
    const std::string& path, const TorchScriptOptions& options) {
  std::string source = path;
  return Load(source, path, options);
}

absl::StatusOr<std::unique_ptr<BlackBoxModel>> LoadTorchScriptModelFromBytes(
    const std::string& bytes, const std::string& name, const TorchScriptOptions& options) {
  std::istringstream in(bytes);
  return Load(in, name, options);
}

void WarmUpTorch() {
  try {
    c10::InferenceMode guard;
    at::Tensor x = torch::rand({2, 1, 8, 8});
    at::Tensor w = torch::rand({4, 1, 3, 3});
    at::Tensor y = torch::conv2d(x, w).flatten(1);
    (void)torch::relu(y.matmul(torch::rand({y.size(1), 4}))).sum().item<float>();
  } catch (const std::exception& e) {
    spdlog::warn("torch warm-up failed: {}", e.what());
  }
}

void SetTorchThreads(int threads) {
  static std::once_flag once;
  std::call_once(once, [threads] {
    const int n = std::max(1, threads);
    try {
      at::set_num_threads(n);
      // Fails if the inter-op pool already started (e.g. a model ran first); not fatal.
      at::set_num_interop_threads(n);
    } catch (const c10::Error& e) {
      spdlog::warn("torch inter-op threads not set: {}", ShortTorchMessage(e));
    } catch (const std::exception& e) {
      spdlog::warn("torch threads not set: {}", e.what());
    }
    spdlog::info("torch threads: intra-op {}, inter-op {}", at::get_num_threads(),
                 at::get_num_interop_threads());
  });
}

}  // namespace modeldock::encoder
