// ReferenceEncoder over the BlackBoxModel interface: embeddings are the module's forward output.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "encoder/admission_internal.h"
#include "encoder/black_box.h"
#include "encoder/knowledge.h"

namespace modeldock::encoder {
namespace {

class TorchScriptReferenceEncoder : public ReferenceEncoder {
 public:
  TorchScriptReferenceEncoder(std::unique_ptr<BlackBoxModel> model, int dim, std::string sha256)
      : model_(std::move(model)), dim_(dim), sha256_(std::move(sha256)) {}

  absl::StatusOr<Tensor> Embed(const Tensor& samples) override {
    return Checked(model_->Run(samples, /*want_features=*/false));
  }
  absl::StatusOr<Tensor> EmbedTexts(const std::vector<std::string>& texts) override {
    return Checked(model_->RunText(texts, /*want_features=*/false, /*want_layers=*/false));
  }
  int dim() const override { return dim_; }
  const std::string& sha256() const override { return sha256_; }

 private:
  absl::StatusOr<Tensor> Checked(absl::StatusOr<ModelOutputs> out) const {
    if (!out.ok()) return out.status();
    if (out->logits.shape[1] != dim_) {
      return absl::InternalError(absl::StrCat("reference encoder returned width ",
                                              out->logits.shape[1], ", expected ", dim_));
    }
    return std::move(out->logits);
  }

  std::unique_ptr<BlackBoxModel> model_;
  int dim_;
  std::string sha256_;
};

// The E of `model`, whose width is what forward returns on one deterministic sample.
absl::StatusOr<std::unique_ptr<ReferenceEncoder>> Finish(const std::string& path,
                                                         std::string sha,
                                                         std::unique_ptr<BlackBoxModel> model,
                                                         absl::StatusOr<ModelOutputs> probe) {
  if (!probe.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("reference encoder ", path, " failed on a test sample: ",
                     probe.status().message()));
  }
  const int dim = static_cast<int>(probe->logits.shape[1]);
  if (dim <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("reference encoder ", path, " returns empty embeddings"));
  }
  return std::unique_ptr<ReferenceEncoder>(
      new TorchScriptReferenceEncoder(std::move(model), dim, std::move(sha)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReferenceEncoder>> ReferenceEncoder::Load(
    const std::string& path, const std::vector<int64_t>& input_shape) {
  absl::StatusOr<std::string> sha = Sha256::OfFile(path);  // NOT_FOUND for a missing file
  if (!sha.ok()) return sha.status();
  TorchScriptOptions options;
  options.input_shape = input_shape;
  absl::StatusOr<std::unique_ptr<BlackBoxModel>> model = LoadTorchScriptModel(path, options);
  if (!model.ok()) return model.status();
  auto probe = (*model)->Run(internal::UniformSamples(1, input_shape, 42), /*want_features=*/false);
  return Finish(path, *std::move(sha), *std::move(model), std::move(probe));
}

absl::StatusOr<std::unique_ptr<ReferenceEncoder>> ReferenceEncoder::LoadText(
    const std::string& path) {
  absl::StatusOr<std::string> sha = Sha256::OfFile(path);
  if (!sha.ok()) return sha.status();
  TorchScriptOptions options;
  options.input_kind = InputKind::kText;
  absl::StatusOr<std::unique_ptr<BlackBoxModel>> model = LoadTorchScriptModel(path, options);
  if (!model.ok()) return model.status();
  auto probe = (*model)->RunText({"a test sentence"}, /*want_features=*/false,
                                 /*want_layers=*/false);
  return Finish(path, *std::move(sha), *std::move(model), std::move(probe));
}

}  // namespace modeldock::encoder
