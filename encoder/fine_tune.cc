// FineTune: a TorchScript wrapper module holds the loaded backbone (register_module) and a new
// linear head (register_parameter); its forward/embed are defined in TorchScript source, so the
// tuned model saves as one archive that LibTorch and Python load alike. Training runs the
// wrapper in train mode with autograd on every parameter and a LibTorch optimiser.
#include "encoder/fine_tune.h"

#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/script.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <new>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "encoder/black_box.h"
#include "encoder/util_internal.h"

namespace modeldock::encoder {
namespace {

constexpr int64_t kEvalBatch = 256;  // BlackBoxModel's default batch, so outputs agree exactly

absl::Status CheckSplit(const Tensor& samples, const std::vector<int32_t>& labels,
                        int num_classes, const char* split) {
  if (!samples.IsConsistent() || samples.shape.size() < 2 || samples.Rows() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", split, " split needs samples [N, ...] with N >= 1, got shape ",
                     ShapeToString(samples.shape)));
  }
  if (static_cast<int64_t>(labels.size()) != samples.Rows()) {
    return absl::InvalidArgumentError(absl::StrCat("the ", split, " split has ", samples.Rows(),
                                                   " samples but ", labels.size(), " labels"));
  }
  for (int32_t label : labels) {
    if (label < 0 || label >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the ", split, " split has label ", label, ", outside [0, ", num_classes, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const FineTuneOptions& o, const FineTuneData& data) {
  if (!std::isfinite(o.learning_rate) || o.learning_rate <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the learning rate must be finite and > 0, got ", o.learning_rate));
  }
  if (!std::isfinite(o.momentum) || o.momentum < 0 || !std::isfinite(o.weight_decay) ||
      o.weight_decay < 0) {
    return absl::InvalidArgumentError("momentum and weight decay must be finite and >= 0");
  }
  if (o.max_epochs < 1 || o.patience < 1 || o.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_epochs, patience and batch_size must be >= 1, got ", o.max_epochs, ", ",
        o.patience, ", ", o.batch_size));
  }
  if (data.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("tuning needs at least 2 classes, got ", data.num_classes));
  }
  if (absl::Status s = CheckSplit(data.train_samples, data.train_labels, data.num_classes,
                                  "train");
      !s.ok()) {
    return s;
  }
  return CheckSplit(data.val_samples, data.val_labels, data.num_classes, "validation");
}

at::Tensor ToTorch(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.values.data()), t.shape, torch::kFloat32).clone();
}

at::Tensor LabelsToTorch(const std::vector<int32_t>& labels) {
  std::vector<int64_t> wide(labels.begin(), labels.end());
  return torch::tensor(wide, torch::kInt64);
}

// A class name for the wrapper that no module inside the backbone already uses (a tuned model
// may be tuned again).
std::string WrapperTypeName(const torch::jit::Module& backbone) {
  std::vector<std::string> used;
  for (const torch::jit::Module& m : backbone.modules()) {
    used.push_back(m.type()->name()->qualifiedName());
  }
  for (int n = 0;; ++n) {
    std::string name = "__torch__.modeldock.TunedModel";
    if (n > 0) absl::StrAppend(&name, n);
    if (std::find(used.begin(), used.end(), name) == used.end()) return name;
  }
}

class TuneRun {
 public:
  TuneRun(torch::jit::Module backbone, const FineTuneData& data, const FineTuneOptions& options)
      : wrapper_(c10::QualifiedName(WrapperTypeName(backbone))),
        backbone_(std::move(backbone)),
        options_(options),
        x_train_(ToTorch(data.train_samples)),
        y_train_(LabelsToTorch(data.train_labels)),
        x_val_(ToTorch(data.val_samples)),
        y_val_(LabelsToTorch(data.val_labels)),
        num_classes_(data.num_classes),
        rng_(static_cast<std::mt19937::result_type>(options.seed)) {}

  // Builds the wrapper: a head [K, D] initialised like torch.nn.Linear from the seed.
  void Build() {
    torch::manual_seed(options_.seed);
    int64_t dim = 0;
    {
      torch::NoGradGuard no_grad;
      backbone_.eval();
      dim = backbone_.get_method("embed")({x_train_.slice(0, 0, 1)}).toTensor().flatten(1).size(1);
    }
    const double bound = 1.0 / std::sqrt(static_cast<double>(dim));
    at::Tensor weight = torch::empty({num_classes_, dim}).uniform_(-bound, bound);
    at::Tensor bias = torch::empty({num_classes_}).uniform_(-bound, bound);
    wrapper_.register_module("backbone", backbone_);
    wrapper_.register_parameter("head_weight", weight, /*is_buffer=*/false);
    wrapper_.register_parameter("head_bias", bias, /*is_buffer=*/false);
    wrapper_.define(R"(
def embed(self, x):
    return self.backbone.embed(x)

def forward(self, x):
    return torch.matmul(self.backbone.embed(x).flatten(1), self.head_weight.t()) + self.head_bias
)");
    for (const at::Tensor& p : wrapper_.parameters()) {
      p.requires_grad_(true);
      params_.push_back(p);
    }
    if (options_.optimizer == TuneOptimizer::kSgd) {
      optimizer_ = std::make_unique<torch::optim::SGD>(
          params_, torch::optim::SGDOptions(options_.learning_rate)
                       .momentum(options_.momentum)
                       .weight_decay(options_.weight_decay));
    } else {
      optimizer_ = std::make_unique<torch::optim::Adam>(
          params_,
          torch::optim::AdamOptions(options_.learning_rate).weight_decay(options_.weight_decay));
    }
  }

  // Mean loss on the train split and correct validation rows, in eval mode (no training).
  absl::StatusOr<TuneEpoch> Evaluate(int epoch, double train_loss) {
    torch::NoGradGuard no_grad;
    wrapper_.eval();
    TuneEpoch row;
    row.epoch = epoch;
    row.train_loss = train_loss;
    if (epoch == 0) row.train_loss = MeanLoss(x_train_, y_train_);
    const int64_t n = x_val_.size(0);
    std::vector<float> logits;
    for (int64_t start = 0; start < n; start += kEvalBatch) {
      at::Tensor out = wrapper_.forward({x_val_.slice(0, start, start + kEvalBatch)})
                           .toTensor()
                           .contiguous();
      logits.insert(logits.end(), out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
    }
    for (float v : logits) {
      if (!std::isfinite(v)) return Diverged(epoch, "non-finite validation logits");
    }
    std::vector<int32_t> labels(y_val_.data_ptr<int64_t>(), y_val_.data_ptr<int64_t>() + n);
    row.val_accuracy = ArgmaxAccuracy(Tensor({n, num_classes_}, std::move(logits)), labels,
                                      &row.val_correct);
    if (!std::isfinite(row.train_loss)) return Diverged(epoch, "non-finite train loss");
    return row;
  }

  // One pass over the train split in a seeded order; the mean mini-batch loss.
  absl::StatusOr<double> TrainEpoch(int epoch) {
    const int64_t n = x_train_.size(0);
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng_);
    const at::Tensor index = torch::tensor(order, torch::kInt64);
    wrapper_.train(true);
    double total = 0;
    for (int64_t start = 0; start < n; start += options_.batch_size) {
      const at::Tensor rows = index.slice(0, start, start + options_.batch_size);
      optimizer_->zero_grad();
      at::Tensor logits = wrapper_.forward({x_train_.index_select(0, rows)}).toTensor();
      at::Tensor loss = at::cross_entropy_loss(logits, y_train_.index_select(0, rows));
      const double value = loss.item<double>();
      if (!std::isfinite(value)) return Diverged(epoch, "non-finite train loss");
      loss.backward();
      optimizer_->step();
      total += value * static_cast<double>(rows.size(0));
    }
    return total / static_cast<double>(n);
  }

  // The wrapper as a TorchScript archive, saved in eval mode.
  std::string Save() {
    wrapper_.eval();
    std::ostringstream out;
    wrapper_.save(out);
    return out.str();
  }

 private:
  double MeanLoss(const at::Tensor& x, const at::Tensor& y) {
    double total = 0;
    for (int64_t start = 0; start < x.size(0); start += kEvalBatch) {
      at::Tensor logits = wrapper_.forward({x.slice(0, start, start + kEvalBatch)}).toTensor();
      at::Tensor loss = at::cross_entropy_loss(logits, y.slice(0, start, start + kEvalBatch));
      total += loss.item<double>() * static_cast<double>(logits.size(0));
    }
    return total / static_cast<double>(x.size(0));
  }

  static absl::Status Diverged(int epoch, const char* what) {
    return absl::FailedPreconditionError(
        absl::StrCat("training diverged at epoch ", epoch, ": ", what,
                     " (try a smaller learning rate)"));
  }

  torch::jit::Module wrapper_;
  torch::jit::Module backbone_;
  FineTuneOptions options_;
  at::Tensor x_train_, y_train_, x_val_, y_val_;
  int64_t num_classes_;
  std::mt19937 rng_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

double Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Epoch 0, then epochs until the schedule stops; the best epoch's archive is kept.
absl::StatusOr<FineTuneResult> RunSchedule(TuneRun& run, const FineTuneOptions& options,
                                           const TuneProgress& progress) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const double budget_ms = absl::ToDoubleMilliseconds(options.budget);
  FineTuneResult result;
  Clock::time_point epoch_start = start;
  for (int epoch = 0;; ++epoch) {
    double loss = 0;
    if (epoch > 0) {
      absl::StatusOr<double> trained = run.TrainEpoch(epoch);
      if (!trained.ok()) return trained.status();
      loss = *trained;
    }
    absl::StatusOr<TuneEpoch> row = run.Evaluate(epoch, loss);
    if (!row.ok()) return row.status();
    const Clock::time_point now = Clock::now();
    row->millis = Millis(now - epoch_start);
    epoch_start = now;
    result.epochs.push_back(*row);
    if (progress) progress(*row);
    if (epoch == 0 || row->val_accuracy > result.best_accuracy) {
      result.best_epoch = epoch;
      result.best_accuracy = row->val_accuracy;
      result.tuned_model = run.Save();
    }
    if (epoch == 0) continue;  // at least one epoch is trained
    const double elapsed = Millis(now - start);
    const double mean_epoch = (elapsed - result.epochs[0].millis) / epoch;
    if (epoch >= options.max_epochs) {
      result.stop_reason = "max_epochs";
    } else if (epoch - result.best_epoch >= options.patience) {
      result.stop_reason = "patience";
    } else if (elapsed + mean_epoch > budget_ms) {
      result.stop_reason = "budget";
    } else {
      continue;
    }
    return result;
  }
}

absl::Status TorchFailure(const std::string& name, const std::string& message) {
  if (absl::StrContains(message, "can't allocate memory")) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tuning ", name, " ran out of memory: ", message));
  }
  return absl::FailedPreconditionError(absl::StrCat("tuning ", name, " raised an error: ", message));
}

}  // namespace

double ArgmaxAccuracy(const Tensor& logits, const std::vector<int32_t>& labels,
                      int64_t* correct) {
  const int64_t n = logits.Rows();
  const int64_t k = logits.RowSize();
  int64_t hits = 0;
  for (int64_t i = 0; i < n && i < static_cast<int64_t>(labels.size()); ++i) {
    const float* row = logits.Row(i);
    const int64_t best = std::max_element(row, row + k) - row;  // the first of ties
    if (best == labels[i]) ++hits;
  }
  if (correct != nullptr) *correct = hits;
  return n == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(n);
}

absl::StatusOr<FineTuneResult> FineTune(const std::string& model_bytes, const std::string& name,
                                        const std::vector<int64_t>& input_shape,
                                        const FineTuneData& data, const FineTuneOptions& options,
                                        const TuneProgress& progress) {
  if (absl::Status s = CheckOptions(options, data); !s.ok()) return s;
  if (input_shape.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        name, " takes text: only models on tensor samples can be tuned yet"));
  }
  FineTuneData adapted = data;
  for (Tensor* t : {&adapted.train_samples, &adapted.val_samples}) {
    absl::StatusOr<Tensor> a = AdaptInputs(*t, input_shape);
    if (!a.ok()) return a.status();
    *t = *std::move(a);
  }
  try {
    std::istringstream in(model_bytes);
    torch::jit::Module backbone;
    try {
      backbone = torch::jit::load(in, torch::kCPU);
    } catch (const c10::Error& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "not a TorchScript archive: ", name, ": ",
          internal::LastLineFirst(e.what_without_backtrace())));
    }
    if (!backbone.find_method("embed").has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          name, " exports no embed(x): only models that export embed can be tuned yet (a new "
                "head goes on its features)"));
    }
    TuneRun run(std::move(backbone), adapted, options);
    run.Build();
    absl::StatusOr<FineTuneResult> scheduled = RunSchedule(run, options, progress);
    if (!scheduled.ok()) return scheduled.status();
    scheduled->train_samples = data.train_samples.Rows();
    scheduled->val_samples = data.val_samples.Rows();
    return scheduled;
  } catch (const c10::Error& e) {
    return TorchFailure(name, internal::LastLineFirst(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat("tuning ", name, " ran out of memory"));
  } catch (const std::exception& e) {
    return TorchFailure(name, internal::LastLineFirst(e.what()));
  }
}

}  // namespace modeldock::encoder
