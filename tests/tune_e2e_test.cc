// `modeldock tune` run as a process against a real server on a real socket: the demo query with
// --top 2, the tuned file written by --out checked by a Python oracle (Debian's python3-torch)
// on the held-back samples, and the tune's outcome records listed by `modeldock records`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/datasets.h"
#include "dock/tuner.h"
#include "nlohmann/json.hpp"
#include "tests/subprocess.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

// Accuracy of a TorchScript file on rows of an IDX dataset, computed by Python: "correct total".
constexpr char kOracle[] = R"(
import sys, numpy as np, torch
model, images, labels, rows = sys.argv[1:5]
x = np.frombuffer(open(images, 'rb').read()[16:], dtype=np.uint8).reshape(-1, 1, 28, 28)
y = np.frombuffer(open(labels, 'rb').read()[8:], dtype=np.uint8).astype(np.int64)
idx = [int(r) for r in open(rows).read().split()]
m = torch.jit.load(model)
m.eval()
with torch.no_grad():
    logits = m(torch.from_numpy(x[idx].copy()).float() / 255.0)
print(int((logits.argmax(1).numpy() == y[idx]).sum()), len(idx))
)";

class TuneE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    server_ = std::make_unique<InProcessServer>((fs::path(temp_.path()) / "data").string());
    ASSERT_TRUE(server_->Start());
  }
  ProcessResult Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {MODELDOCK_CLI_PATH, "--server", server_->address(),
                                     "--timeout", "120"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, temp_.path());
  }
  TempDir temp_;
  std::unique_ptr<InProcessServer> server_;
};

TEST_F(TuneE2eTest, TunesTheTopTwoWritesTheWinnerAndRecordsTheOutcomes) {
  for (const char* model : {"demo/fmnist-tops-cnn", "demo/fmnist-all-mlp",
                            "demo/glyph-digits-cnn"}) {
    ProcessResult r = Cli({"register", AssetPath(std::string(model) + ".pt"), "--metadata",
                           AssetPath(std::string(model) + ".json")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string images = AssetPath("demo/query_tops/query-images-idx3-ubyte");
  const std::string labels = AssetPath("demo/query_tops/query-labels-idx1-ubyte");
  const std::string out = (fs::path(temp_.path()) / "best.pt").string();
  ProcessResult tuned = Cli({"--json", "tune", images, "--labels", labels, "--top", "2",
                             "--seed", "5", "--max-epochs", "2", "--budget-s", "600", "--out",
                             out});
  ASSERT_EQ(tuned.exit_code, 0) << tuned.err;
  json result = json::parse(tuned.out);
  ASSERT_EQ(result["candidates"].size(), 2u);
  EXPECT_EQ(result["candidates"][0]["predicted_rank"], 1);
  EXPECT_EQ(result["candidates"][1]["predicted_rank"], 2);
  const int winner = result["winner"];
  ASSERT_GE(winner, 0);
  const json& best = result["candidates"][winner];
  for (const json& c : result["candidates"]) {
    ASSERT_TRUE(c["ok"].get<bool>()) << c["failure"];
    EXPECT_LE(c["best_accuracy"].get<double>(), best["best_accuracy"].get<double>());
  }
  EXPECT_EQ(result["recorded_outcomes"], 2);
  EXPECT_EQ(result["winner_license"], "CC0-1.0");

  // The held-back samples: the server's split for this seed.
  datasets::LoadOptions load;
  load.labels_path = labels;
  auto dataset = datasets::LoadIdx(images, load);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  auto split = dock::StratifiedSplit(dataset->labels, 0.2, 5);
  ASSERT_TRUE(split.ok()) << split.status();
  ASSERT_EQ(static_cast<int64_t>(split->validation.size()), result["val_samples"].get<int64_t>());
  const std::string rows = (fs::path(temp_.path()) / "rows.txt").string();
  {
    std::ofstream r(rows);
    for (int64_t i : split->validation) r << i << "\n";
  }
  const std::string script = (fs::path(temp_.path()) / "oracle.py").string();
  std::ofstream(script) << kOracle;
  ProcessResult oracle = RunProcess({MODELDOCK_PYTHON, script, out, images, labels, rows},
                                    temp_.path());
  ASSERT_EQ(oracle.exit_code, 0) << oracle.err;
  int correct = 0, total = 0;
  ASSERT_EQ(std::sscanf(oracle.out.c_str(), "%d %d", &correct, &total), 2) << oracle.out;
  EXPECT_EQ(total, 40);
  EXPECT_EQ(static_cast<double>(correct) / total, best["best_accuracy"].get<double>());

  // The human table: predicted rank vs measured accuracy on stdout, progress on stderr.
  ProcessResult table = Cli({"tune", images, "--labels", labels, "--top", "1", "--seed", "5",
                             "--max-epochs", "1", "--budget-s", "600"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("VAL-ACC"));
  EXPECT_THAT(table.out, HasSubstr("winner: "));
  EXPECT_THAT(table.err, HasSubstr("candidate 1 "));
  EXPECT_THAT(table.err, HasSubstr("epoch 1, loss"));

  ProcessResult records = Cli({"--json", "records"});
  ASSERT_EQ(records.exit_code, 0) << records.err;
  const json listed = json::parse(records.out);
  int tune_records = 0;
  for (const json& r : listed["records"]) {
    if (r["source"] != "tune") continue;
    ++tune_records;
    // Each record carries its split and schedule; the top-1's is the second tune's (1 epoch).
    const json& detail = r["detail"]["tune"];
    EXPECT_EQ(detail["split"]["seed"], 5);
    EXPECT_EQ(detail["split"]["train_samples"], 160);
    EXPECT_EQ(detail["split"]["val_samples"], 40);
    const bool top1 = r["model"] == result["candidates"][0]["name"];
    EXPECT_EQ(detail["schedule"]["max_epochs"], top1 ? 1 : 2) << r.dump();
    EXPECT_EQ(detail["schedule"]["epochs_run"], top1 ? 1 : 2) << r.dump();
    EXPECT_EQ(detail["predicted_rank"], top1 ? 1 : 2) << r.dump();
  }
  EXPECT_EQ(tune_records, 2);  // the second tune's one record replaced its model's first one
  EXPECT_EQ(Cli({"tune", images, "--top", "2"}).exit_code, 2);  // no labels: usage error
}

}  // namespace
}  // namespace modeldock::testing
