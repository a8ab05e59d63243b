// The black-box view of a model: inputs in, outputs out, weights never read. The only code in
// modeldock that runs model code. The dock never calls it in the server process: the
// modeldock-worker executable (sandbox/) links this library and runs it under OS limits.
#ifndef MODELDOCK_ENCODER_BLACK_BOX_H_
#define MODELDOCK_ENCODER_BLACK_BOX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"

namespace modeldock::encoder {

struct ModelOutputs {
  Tensor logits;    // [N, K]
  Tensor features;  // [N, D] from embed(x); empty (no shape) when not requested or not exported
  // [N, D_l] per layer from embed_layers(x); empty when not requested or not exported.
  std::vector<Tensor> layers;
};

// A model may export embed_layers(x) -> List[Tensor] (each [N, D_l]: features of one layer, pooled
// and flattened by the model) and a `layer_names: List[str]` attribute naming them; layers without
// names are called layer0, layer1, ... (LayerNames).
std::vector<std::string> LayerNames(const std::vector<std::string>& exported, size_t count);

// What a model takes: tensors of samples (images [N, C, H, W], tabular [N, F]) or text, a
// TorchScript forward(texts: List[str]) -> [N, K] (and embed(texts) -> [N, D]) that carries its
// own tokenizer. A text model has no input shape.
enum class InputKind { kTensor = 0, kText = 1 };

class BlackBoxModel {
 public:
  virtual ~BlackBoxModel() = default;
  // Declared per-sample input shape, e.g. {1, 28, 28}.
  virtual const std::vector<int64_t>& input_shape() const = 0;  // empty for a text model
  virtual InputKind input_kind() const = 0;
  virtual bool has_embed() const = 0;
  virtual bool has_layers() const = 0;  // exports embed_layers(x)
  // The module's `layer_names` attribute; empty when it has none. INVALID_ARGUMENT-worthy
  // problems (not a list of strings) are reported by layer_names_error().
  virtual const std::vector<std::string>& layer_names() const = 0;
  virtual const std::string& layer_names_error() const = 0;
  // Runs the model on samples [N, ...]. Samples of another image shape are adapted first
  // (AdaptInputs). Deterministic; batched internally. Not safe for concurrent calls on one object.
  // want_features runs embed(x), want_layers embed_layers(x), when the model exports them.
  virtual absl::StatusOr<ModelOutputs> Run(const Tensor& samples, bool want_features,
                                           bool want_layers) = 0;
  absl::StatusOr<ModelOutputs> Run(const Tensor& samples, bool want_features) {
    return Run(samples, want_features, /*want_layers=*/false);
  }
  // Runs a text model on strings (any bytes: the model's tokenizer decides what they mean).
  // INVALID_ARGUMENT for a tensor model, as Run is for a text model.
  virtual absl::StatusOr<ModelOutputs> RunText(const std::vector<std::string>& texts,
                                               bool want_features, bool want_layers) = 0;
};

// Bounds on what a model may return, so that one upload cannot make every recommendation that
// uses it allocate without limit. The defaults fit real classifiers and backbones.
struct OutputLimits {
  int64_t max_classes = 100000;              // K of forward(x) -> [N, K]
  int64_t max_feature_dim = 65536;           // D of embed(x) -> [N, D]
  int64_t max_bytes_per_sample = 1ll << 20;  // (K + D + sum of D_l) * 4 bytes
  int max_layers = 8;                        // layers of embed_layers(x)
};

struct TorchScriptOptions {
  InputKind input_kind = InputKind::kTensor;
  std::vector<int64_t> input_shape;  // declared per-sample shape; empty for text
  int batch_size = 256;
  // Outputs wider than these fail before they are copied (FAILED_PRECONDITION).
  OutputLimits limits;
};

// Loads a TorchScript file. INVALID_ARGUMENT if it is not a loadable TorchScript archive.
absl::StatusOr<std::unique_ptr<BlackBoxModel>> LoadTorchScriptModel(
    const std::string& path, const TorchScriptOptions& options);
// The same from an archive's bytes (the worker reads them from a descriptor the server opened, so
// it needs no filesystem); `name` stands for the file in messages.
absl::StatusOr<std::unique_ptr<BlackBoxModel>> LoadTorchScriptModelFromBytes(
    const std::string& bytes, const std::string& name, const TorchScriptOptions& options);

// Adapts image samples [N, C, H, W] to a target per-sample shape {C', H', W'}:
// bilinear resize (align_corners=false) when H/W differ; grey->RGB repeats the channel,
// RGB->grey averages channels. Tabular samples [N, F] must match exactly.
// INVALID_ARGUMENT when no adaptation exists (e.g. tabular vs image, 2 channels vs 3).
absl::StatusOr<Tensor> AdaptInputs(const Tensor& samples, const std::vector<int64_t>& target_shape);

// Sets LibTorch intra-op threads once for the process (call at start-up).
void SetTorchThreads(int threads);

// Runs a few small operators (matmul, conv2d) so that LibTorch reads what it needs from /proc and
// /sys (CPU features) now: the worker calls it before giving up its view of the filesystem.
void WarmUpTorch();

// Checks outputs of a run on `rows` samples against the limits and the declared widths
// (expected_classes; expected_feature_dim when > 0; expected_layer_dims when outputs.layers is
// not empty): FAILED_PRECONDITION naming the numbers.
absl::Status CheckOutputs(const ModelOutputs& outputs, int64_t rows, int64_t expected_classes,
                          int64_t expected_feature_dim,
                          const std::vector<int64_t>& expected_layer_dims,
                          const OutputLimits& limits);

// Admission: the checks every model passes before it is stored. Time and memory are bounded by
// the worker process that runs them (sandbox/), not here.
struct AdmissionOptions {
  // kText: the model takes List[str] (input_shape must be empty) and is admitted on
  // internal::TextTestBatch (the hard strings and test_batch seeded ones); a failure names the
  // first test string it failed on.
  InputKind input_kind = InputKind::kTensor;
  int64_t max_bytes = 512ll << 20;
  int test_batch = 4;
  OutputLimits limits;
};

struct AdmissionReport {
  bool has_embed = false;
  int64_t feature_dim = 0;  // width of embed(x), 0 without
  int64_t num_outputs = 0;  // K
  // embed_layers(x): one name (exported or layer<i>) and width per layer; empty without.
  std::vector<std::string> layer_names;
  std::vector<int64_t> layer_dims;
  double millis = 0;  // time taken by the checks
};

// Checks that `path` loads as TorchScript; forward on a deterministic batch of `input_shape`
// (seeded uniform values in [0, 1]) returns a finite float [N, num_labels] tensor; if the module
// exports embed(x), it returns finite float [N, D]; if it exports embed_layers(x), a list of 1 to
// max_layers finite float [N, D_l] (named by a `layer_names` list of as many distinct names, when
// the module has one); within the size and output limits.
// num_labels == 0: a feature extractor, whose forward returns finite features [N, D] (D <=
// max_feature_dim; reported as num_outputs and feature_dim, has_embed false).
// Runs on the calling thread. Status codes: INVALID_ARGUMENT (not TorchScript, not loadable),
// FAILED_PRECONDITION (wrong output shape/dtype, non-finite values, forward raised, outputs over
// the limits), RESOURCE_EXHAUSTED (file too large, allocation failed), NOT_FOUND (no such file).
// Messages say what was expected and what came back.
absl::StatusOr<AdmissionReport> CheckAdmission(const std::string& path,
                                               const std::vector<int64_t>& input_shape,
                                               int num_labels, const AdmissionOptions& options);
// The same checks on an archive's bytes (`name` stands for the file in messages).
absl::StatusOr<AdmissionReport> CheckAdmissionOfBytes(const std::string& bytes,
                                                      const std::string& name,
                                                      const std::vector<int64_t>& input_shape,
                                                      int num_labels,
                                                      const AdmissionOptions& options);

}  // namespace modeldock::encoder

#endif  // MODELDOCK_ENCODER_BLACK_BOX_H_
