// CheckAdmission: plain C++ over the BlackBoxModel interface (no torch header here).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "encoder/admission_internal.h"
#include "encoder/black_box.h"
#include "spdlog/spdlog.h"

namespace modeldock::encoder {
namespace internal {
namespace {
std::atomic<int> running_checks{0};
}  // namespace

int RunningAdmissionChecks() { return running_checks.load(); }

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

}  // namespace internal

namespace {

constexpr uint32_t kTestBatchSeed = 42;

std::string ShapeOf(const Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.shape, ", "), "]"); }

int64_t CountNonFinite(const Tensor& t) {
  int64_t bad = 0;
  for (float v : t.values) bad += !std::isfinite(v);
  return bad;
}

// Everything after the size check; runs on its own thread so it can be abandoned on timeout.
absl::StatusOr<AdmissionReport> RunChecks(const std::string& path,
                                          const std::vector<int64_t>& input_shape,
                                          int num_labels, int test_batch) {
  TorchScriptOptions load_options;
  load_options.input_shape = input_shape;
  load_options.batch_size = test_batch;
  absl::StatusOr<std::unique_ptr<BlackBoxModel>> model = LoadTorchScriptModel(path, load_options);
  if (!model.ok()) return model.status();

  const Tensor batch = internal::UniformSamples(test_batch, input_shape, kTestBatchSeed);
  absl::StatusOr<ModelOutputs> out = (*model)->Run(batch, /*want_features=*/true);
  if (!out.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("test batch of shape ", ShapeOf(batch), ": ", out.status().message()));
  }
  AdmissionReport report;
  const Tensor& logits = out->logits;
  if (logits.shape[1] != num_labels) {
    return absl::FailedPreconditionError(absl::StrCat("forward returned shape ", ShapeOf(logits),
                                                      " but the model declares ", num_labels,
                                                      " labels"));
  }
  if (int64_t bad = CountNonFinite(logits); bad > 0) {
    return absl::FailedPreconditionError(absl::StrCat("forward returned NaN/Inf in ", bad, " of ",
                                                      logits.values.size(),
                                                      " values on the test batch"));
  }
  report.num_outputs = num_labels;
  report.has_embed = (*model)->has_embed();
  if (report.has_embed) {
    const Tensor& features = out->features;
    if (features.shape.size() != 2 || features.shape[1] <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("embed returned shape ", ShapeOf(features), ", expected [", test_batch,
                       ", D] with D > 0"));
    }
    if (int64_t bad = CountNonFinite(features); bad > 0) {
      return absl::FailedPreconditionError(absl::StrCat("embed returned NaN/Inf in ", bad, " of ",
                                                        features.values.size(),
                                                        " values on the test batch"));
    }
    report.feature_dim = features.shape[1];
  }
  return report;
}

}  // namespace

absl::StatusOr<AdmissionReport> CheckAdmission(const std::string& path,
                                               const std::vector<int64_t>& input_shape,
                                               int num_labels, const AdmissionOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (num_labels <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_labels must be positive, got ", num_labels));
  }
  if (options.test_batch <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("test_batch must be positive, got ", options.test_batch));
  }
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read model file ", path, ": ", ec.message()));
  if (static_cast<int64_t>(size) > options.max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("model file is ", size,
                                                     " bytes, larger than the limit of ",
                                                     options.max_bytes, " bytes"));
  }

  // The checks run on their own thread so that a slow model can be given up on. A thread stuck
  // inside TorchScript cannot be cancelled: on timeout it is detached and keeps its CPU until
  // the model returns. Only running admission in an isolated worker process (a later issue)
  // can kill a truly hung model.
  auto promise = std::make_shared<std::promise<absl::StatusOr<AdmissionReport>>>();
  std::future<absl::StatusOr<AdmissionReport>> result = promise->get_future();
  std::thread worker;
  internal::running_checks.fetch_add(1);
  try {
    worker = std::thread([promise, path, input_shape, num_labels, batch = options.test_batch] {
      absl::StatusOr<AdmissionReport> report;
      try {
        report = RunChecks(path, input_shape, num_labels, batch);
      } catch (const std::exception& e) {  // e.g. bad_alloc from a huge declared shape
        report = absl::InternalError(absl::StrCat("admission check failed: ", e.what()));
      }
      promise->set_value(std::move(report));
      internal::running_checks.fetch_sub(1);
    });
  } catch (const std::system_error& e) {
    internal::running_checks.fetch_sub(1);
    return absl::ResourceExhaustedError(absl::StrCat("cannot start admission thread: ", e.what()));
  }
  bool ready;
  if (options.time_limit == absl::InfiniteDuration()) {
    result.wait();
    ready = true;
  } else {
    // Clamped: a huge chrono duration overflows inside wait_for and times out at once.
    const int64_t ms = std::clamp<int64_t>(absl::ToInt64Milliseconds(options.time_limit), 0,
                                           int64_t{1} << 40);
    const auto limit = std::chrono::milliseconds(ms);
    ready = result.wait_for(limit) == std::future_status::ready;
  }
  if (!ready) {
    worker.detach();
    spdlog::warn("admission of {} exceeded {}; its check thread is abandoned", path,
                 absl::FormatDuration(options.time_limit));
    return absl::DeadlineExceededError(
        absl::StrCat("admission checks (load + test forward/embed) did not finish within ",
                     absl::FormatDuration(options.time_limit)));
  }
  worker.join();
  absl::StatusOr<AdmissionReport> report = result.get();
  if (!report.ok()) return report.status();
  report->millis = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                             start)
                       .count();
  return report;
}

}  // namespace modeldock::encoder
