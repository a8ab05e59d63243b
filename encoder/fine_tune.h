// Fine-tuning a registered TorchScript model on a labelled split (issue 27, `modeldock tune`):
// a new linear head on the model's embed(x) features, trained together with every parameter of
// the backbone by LibTorch's optimisers, the epoch chosen on a validation split. Like
// black_box.h, this runs model code: the dock calls it only inside a modeldock-worker (sandbox/),
// which bounds its time and memory. No torch type crosses this header.
#ifndef MODELDOCK_ENCODER_FINE_TUNE_H_
#define MODELDOCK_ENCODER_FINE_TUNE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"

namespace modeldock::encoder {

enum class TuneOptimizer { kAdam = 0, kSgd = 1 };

// The schedule: epochs until max_epochs or the wall-clock budget (an epoch is not started when
// the time spent plus the mean epoch so far would pass it), stopping early when validation
// accuracy has not improved for `patience` epochs. Reproducible for a seed when the budget does
// not cut the run (the worker runs torch on one thread, as SetTorchThreads(1) does).
struct FineTuneOptions {
  int max_epochs = 10;
  absl::Duration budget = absl::Seconds(60);
  int patience = 3;
  TuneOptimizer optimizer = TuneOptimizer::kAdam;
  double learning_rate = 1e-3;  // finite, > 0
  double momentum = 0.9;        // SGD only
  double weight_decay = 0;
  int batch_size = 32;
  uint64_t seed = 0;  // head initialisation (torch::manual_seed) and shuffling (std::mt19937)
};

// One row of the epoch table. Epoch 0 is the untrained new head (train_loss: its mean loss on
// the train split, nothing trained); epoch e >= 1 reports the mean mini-batch loss of epoch e and
// the validation accuracy after it.
struct TuneEpoch {
  int epoch = 0;
  double train_loss = 0;
  double val_accuracy = 0;  // correct / validation samples, argmax of the new head's logits
  int64_t val_correct = 0;
  double millis = 0;  // time the epoch took (training and validation)
};

struct FineTuneResult {
  std::vector<TuneEpoch> epochs;  // epoch 0, 1, ... as run
  int best_epoch = 0;             // highest validation accuracy, the earliest of ties
  double best_accuracy = 0;
  int64_t val_samples = 0;
  int64_t train_samples = 0;
  std::string stop_reason;  // "max_epochs", "patience", "budget"
  // The model at best_epoch, a TorchScript archive: forward(x) returns the new head's logits
  // [N, num_classes] and embed(x) the tuned backbone's features; saved in eval mode.
  std::string tuned_model;
};

struct FineTuneData {
  Tensor train_samples;  // [N, ...]: adapted to the model's input shape when they differ
  std::vector<int32_t> train_labels;
  Tensor val_samples;
  std::vector<int32_t> val_labels;
  int num_classes = 0;  // labels are in [0, num_classes)
};

// Called after every epoch (epoch 0 included), on the calling thread.
using TuneProgress = std::function<void(const TuneEpoch&)>;

// Fine-tunes the TorchScript archive `model_bytes` (`name` stands for it in messages), whose
// per-sample input shape is `input_shape`. Status codes: INVALID_ARGUMENT (options or data:
// a non-finite or non-positive learning rate, empty splits, labels out of range, samples that
// cannot be adapted; not a TorchScript archive), FAILED_PRECONDITION (the model exports no
// embed(x) or takes text: it cannot be tuned yet; embed or training raised; the loss became
// non-finite: "diverged at epoch E"), RESOURCE_EXHAUSTED (an allocation failed).
absl::StatusOr<FineTuneResult> FineTune(const std::string& model_bytes, const std::string& name,
                                        const std::vector<int64_t>& input_shape,
                                        const FineTuneData& data, const FineTuneOptions& options,
                                        const TuneProgress& progress = nullptr);

// The argmax accuracy of `logits` [N, K] against labels (the metric FineTune reports), with the
// count of correct rows in *correct when given.
double ArgmaxAccuracy(const Tensor& logits, const std::vector<int32_t>& labels,
                      int64_t* correct = nullptr);

}  // namespace modeldock::encoder

#endif  // MODELDOCK_ENCODER_FINE_TUNE_H_
