// Tune jobs in real modeldock-worker processes against encoder::FineTune run in this process on
// the same demo data (it links the encoder for that reference; sandbox_test.cc does not).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/datasets.h"
#include "encoder/black_box.h"
#include "encoder/fine_tune.h"
#include "sandbox/worker_pool.h"

namespace modeldock::sandbox {
namespace {

namespace fs = std::filesystem;

std::string AssetDir() {
  const char* env = std::getenv("MODELDOCK_ASSET_DIR");
  return env == nullptr ? "" : env;
}

Tensor Rows(const Tensor& t, int64_t first, int64_t count) {
  Tensor out;
  out.shape = t.shape;
  out.shape[0] = count;
  out.values.assign(t.Row(first), t.Row(first) + count * t.RowSize());
  return out;
}

class TuneJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    encoder::SetTorchThreads(1);  // as the workers run
    datasets::LoadOptions options;
    const fs::path dir = fs::path(AssetDir()) / "demo/query_tops";
    options.labels_path = (dir / "query-labels-idx1-ubyte").string();
    auto query = datasets::LoadIdx((dir / "query-images-idx3-ubyte").string(), options);
    ASSERT_TRUE(query.ok()) << query.status();
    // Train on the first 120 samples, validate on the next 40.
    job_.kind = JobKind::kTune;
    job_.model_path = AssetDir() + "/demo/fmnist-all-mlp.pt";
    job_.input_shape = {1, 28, 28};
    job_.num_classes = query->NumClasses();
    job_.batch_size = 32;
    job_.max_model_bytes = 64 << 20;
    job_.samples = Rows(query->samples, 0, 120);
    job_.labels.assign(query->labels.begin(), query->labels.begin() + 120);
    job_.val_samples = Rows(query->samples, 120, 40);
    job_.val_labels.assign(query->labels.begin() + 120, query->labels.begin() + 160);
    job_.tune.max_epochs = 2;
    job_.tune.budget_seconds = 600;
    job_.tune.seed = 11;
    PoolOptions pool;
    pool.worker_binary = MODELDOCK_WORKER_BINARY;
    pool.workers = 1;
    auto started = WorkerPool::Start(pool);
    ASSERT_TRUE(started.ok()) << started.status();
    pool_ = std::move(*started);
  }

  JobRequest job_;
  std::unique_ptr<WorkerPool> pool_;
};

TEST_F(TuneJobTest, WorkerGivesTheInProcessResultWithProgressPerEpoch) {
  std::vector<WireTuneEpoch> progress;
  auto tuned = pool_->Tune(job_, JobLimits{}, nullptr,
                           [&](const WireTuneEpoch& e) { progress.push_back(e); });
  ASSERT_TRUE(tuned.ok()) << tuned.status();

  std::ifstream in(job_.model_path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  encoder::FineTuneData data{job_.samples, job_.labels, job_.val_samples, job_.val_labels,
                             static_cast<int>(job_.num_classes)};
  encoder::FineTuneOptions options;
  options.max_epochs = 2;
  options.budget = absl::Seconds(600);
  options.seed = 11;
  options.batch_size = 32;
  auto local = encoder::FineTune(bytes.str(), "local", job_.input_shape, data, options);
  ASSERT_TRUE(local.ok()) << local.status();

  ASSERT_EQ(tuned->epochs.size(), local->epochs.size());
  ASSERT_EQ(progress.size(), local->epochs.size());
  for (size_t e = 0; e < local->epochs.size(); ++e) {
    // Losses agree to float rounding (the worker process and this one may run other LibTorch
    // kernels: observed 1 ulp apart); the accuracies, counts of correct samples, are exact.
    EXPECT_NEAR(tuned->epochs[e].train_loss, local->epochs[e].train_loss,
                1e-5 * local->epochs[e].train_loss)
        << e;
    EXPECT_EQ(tuned->epochs[e].val_correct, local->epochs[e].val_correct) << e;
    EXPECT_EQ(progress[e].epoch, static_cast<int64_t>(e));
    EXPECT_EQ(progress[e].val_accuracy, local->epochs[e].val_accuracy) << e;
  }
  EXPECT_EQ(tuned->best_epoch, local->best_epoch);
  EXPECT_EQ(tuned->best_accuracy, local->best_accuracy);
  EXPECT_EQ(tuned->stop_reason, "max_epochs");
  EXPECT_EQ(tuned->val_samples, 40);
  // The archive that crossed the socket is whole: it loads and reproduces the accuracy.
  encoder::TorchScriptOptions load;
  load.input_shape = job_.input_shape;
  auto model = encoder::LoadTorchScriptModelFromBytes(tuned->tuned_model, "tuned", load);
  ASSERT_TRUE(model.ok()) << model.status();
  auto out = (*model)->Run(job_.val_samples, false);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(encoder::ArgmaxAccuracy(out->logits, job_.val_labels), tuned->best_accuracy);
}

TEST_F(TuneJobTest, TimeLimitStopsItAndThePoolGoesOn) {
  job_.tune.max_epochs = 1000;
  job_.tune.patience = 1000;
  JobLimits limits;
  limits.wall = absl::Milliseconds(1500);
  std::vector<WireTuneEpoch> progress;
  auto stopped = pool_->Tune(job_, limits, nullptr,
                             [&](const WireTuneEpoch& e) { progress.push_back(e); });
  EXPECT_EQ(stopped.status().code(), absl::StatusCode::kDeadlineExceeded) << stopped.status();
  EXPECT_FALSE(progress.empty());  // the epochs done before the kill were reported
  // Nothing lost: the same pool runs the next tune to its end.
  job_.tune.max_epochs = 1;
  auto next = pool_->Tune(job_, JobLimits{}, nullptr, nullptr);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->epochs.size(), 2u);
  EXPECT_GE(pool_->Stats().restarts, 1);
}

}  // namespace
}  // namespace modeldock::sandbox
