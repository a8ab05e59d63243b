// The modeldock CLI: tune (rank, then fine-tune the top candidates; issue 27).
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli_internal.h"
#include "client/client.h"
#include "client/json_output.h"

namespace modeldock::cli {
namespace {

void PrintTuneTable(const v1::TuneResult& result) {
  std::cout << absl::StrFormat("split: %d train / %d validation samples (seed %d); %s\n",
                               result.train_samples(), result.val_samples(), result.seed(),
                               result.schedule());
  std::vector<std::vector<std::string>> rows = {
      {"RANK", "NAME", "SCORE", "VAL-ACC", "BEST-EPOCH", "EPOCHS", "STOP", "NOTE"}};
  for (int i = 0; i < result.candidates_size(); ++i) {
    const v1::TuneCandidate& c = result.candidates(i);
    const std::string note = !c.ok() ? c.failure() : (i == result.winner() ? "winner" : "");
    rows.push_back({absl::StrCat(c.predicted_rank()), c.model().spec().name(),
                    absl::StrFormat("%.4f", c.score()),
                    c.ok() ? absl::StrFormat("%.4f", c.best_accuracy()) : "-",
                    c.ok() ? absl::StrCat(c.best_epoch()) : "-",
                    absl::StrCat(c.epochs_size() > 0 ? c.epochs_size() - 1 : 0),
                    c.stop_reason(), note});
  }
  PrintTable(rows);
  if (result.winner() >= 0) {
    const v1::TuneCandidate& w = result.candidates(result.winner());
    std::cout << absl::StrFormat(
        "winner: %s (predicted rank %d), validation accuracy %.4f; licence %s\n",
        w.model().spec().name(), w.predicted_rank(), w.best_accuracy(),
        result.winner_license().empty() ? "(none given)" : result.winner_license());
  } else {
    std::cout << "no candidate could be tuned\n";
  }
  if (result.recorded_outcomes() > 0) {
    std::cout << "recorded " << result.recorded_outcomes() << " outcome(s) (source tune) on query "
              << result.query_id().substr(0, 12) << "\n";
  }
}

}  // namespace

CLI::App* AddTuneCommand(CLI::App& app, TuneFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "tune", "Recommend, then fine-tune the top candidates on your labelled data and keep the best");
  cmd->add_option("DATASET", flags.dataset, "Labelled dataset, in any image format recommend takes")
      ->required();
  cmd->add_option("--labels", flags.labels, "Labels file for IDX (idx1) or NPY datasets");
  cmd->add_option("--top", flags.top, "Candidates to fine-tune, best ranked first")
      ->capture_default_str()
      ->check(CLI::Range(1, 10));
  cmd->add_option("--budget-s", flags.budget_s,
                  "Training time of the whole tune in seconds, shared by the candidates")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", flags.seed, "Seeds the split, the new heads and the shuffling")
      ->capture_default_str();
  cmd->add_option("--out", flags.out, "Write the winner's fine-tuned TorchScript file here");
  cmd->add_option("--max-epochs", flags.max_epochs, "Epochs per candidate at most (default 10)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--patience", flags.patience,
                  "Stop a candidate after N epochs without a better validation accuracy "
                  "(default 3)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--lr", flags.learning_rate, "Adam's learning rate (default 0.001)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-samples", flags.max_samples, "Use only the first N samples")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--image-size", flags.image_size, "H,W for image folders");
  cmd->footer(R"(
Each candidate gets a new linear head on its embed(x) features and all its layers are trained
(Adam) on a seeded stratified split of your samples (a fifth of each class held back for
validation), in the server's sandboxed workers; the epoch with the best validation accuracy is
kept. Progress goes to stderr (candidate, epoch, accuracy), the table of predicted rank vs
measured accuracy to stdout. Every tuned candidate becomes an outcome record (source tune) that
the dock learns from. The tuned model carries the winner's licence.

Examples:
  modeldock tune query-images-idx3-ubyte --labels query-labels-idx1-ubyte --top 2 --out best.pt
  modeldock tune ./photos --top 3 --budget-s 300 --seed 7 --json)");
  return cmd;
}

int RunTune(const GlobalFlags& global, const TuneFlags& flags, client::Client& client) {
  int exit_code = kExitOk;
  std::optional<Dataset> dataset = LoadQueryDataset(global, flags.dataset, flags.labels,
                                                    flags.max_samples, flags.image_size, "",
                                                    &exit_code);
  if (!dataset) return exit_code;
  if (!dataset->labelled()) {
    return UsageError("tune needs labels: --labels FILE, or a dataset that carries them");
  }
  if (dataset->is_text() || dataset->samples.shape.size() != 4) {
    return UsageError("tune takes image datasets only (for now)");
  }
  v1::TuneHeader options;
  options.mutable_dataset()->set_task(v1::TASK_KIND_IMAGE_CLASSIFICATION);
  options.set_top_k(flags.top);
  options.set_budget_seconds(flags.budget_s);
  options.set_seed(flags.seed);
  options.set_max_epochs(flags.max_epochs);
  options.set_patience(flags.patience);
  options.set_learning_rate(flags.learning_rate);
  auto tuned = client.Tune(*dataset, options, [&](const v1::TuneProgress& p) {
    if (global.json) return;
    std::cerr << absl::StrFormat("candidate %d %s: epoch %d, loss %.4f, validation accuracy %.4f\n",
                                 p.candidate() + 1, p.model_name(), p.epoch().epoch(),
                                 p.epoch().train_loss(), p.epoch().val_accuracy());
  });
  if (!tuned.ok()) return RpcError("tune", tuned.status());
  std::string written;
  if (!flags.out.empty() && !tuned->model.empty()) {
    std::ofstream out(flags.out, std::ios::binary | std::ios::trunc);
    out.write(tuned->model.data(), static_cast<std::streamsize>(tuned->model.size()));
    if (!out.flush()) return RpcError("tune", absl::InternalError("cannot write " + flags.out));
    written = flags.out;
  }
  if (global.json) {
    json document = client::TuneToJson(tuned->result);
    document["out"] = written;
    PrintJson(document);
  } else {
    PrintTuneTable(tuned->result);
    if (!written.empty()) {
      std::cout << "wrote the winner's tuned model to " << written << " ("
                << FormatBytes(static_cast<int64_t>(tuned->model.size())) << ")\n";
    }
  }
  return tuned->result.winner() >= 0 ? kExitOk : kExitRpcError;
}

}  // namespace modeldock::cli
