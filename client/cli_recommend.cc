// The modeldock CLI: recommend and report (datasets through client/query_datasets).
#include "client/cli_internal.h"

#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/client.h"
#include "client/json_output.h"
#include "client/query_datasets.h"
#include "common/datasets.h"
#include "nlohmann/json.hpp"

namespace modeldock::cli {

// ---------------------------------------------------------------------------------------------
// recommend


// "H,W" -> (H, W); both positive. "" -> (0, 0): the folder's most common size.
bool ParseImageSize(const std::string& text, int64_t* height, int64_t* width) {
  *height = *width = 0;
  if (text.empty()) return true;
  std::vector<std::string> parts = absl::StrSplit(text, absl::ByAnyChar(",x"));
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], height) &&
         absl::SimpleAtoi(parts[1], width) && *height > 0 && *width > 0;
}

// Loads a query dataset as `recommend` and `report` take it; on failure prints the usage error
// and returns nullopt (exit status in *exit_code).
std::optional<Dataset> LoadQueryDataset(const GlobalFlags& global, const std::string& path,
                                        const std::string& labels, int64_t max_samples,
                                        const std::string& image_size, const std::string& task,
                                        int* exit_code) {
  const bool audio = client::IsAudioDataset(path, task);
  if (audio || client::IsTextDataset(path, task)) {
    auto dataset = audio ? client::LoadAudioQuery(path, labels, 0, max_samples)
                         : client::LoadTextQuery(path, labels, max_samples);
    if (!dataset.ok()) {
      *exit_code = UsageError(absl::StrCat("cannot load dataset: ", dataset.status().message()));
      return std::nullopt;
    }
    if (!global.json) {
      for (const std::string& note : dataset->notes) std::cerr << "dataset: " << note << "\n";
    }
    return std::move(*dataset);
  }
  datasets::LoadOptions load;
  load.labels_path = labels;
  load.max_samples = max_samples;
  if (!ParseImageSize(image_size, &load.image_height, &load.image_width)) {
    *exit_code = UsageError(absl::StrCat("--image-size must be H,W (e.g. 28,28); got '",
                                         image_size, "'"));
    return std::nullopt;
  }
  auto dataset = datasets::LoadDataset(path, load);
  if (!dataset.ok()) {
    *exit_code = UsageError(absl::StrCat("cannot load dataset: ", dataset.status().message()));
    return std::nullopt;
  }
  // Say what loading did to the data (resized, converted, skipped) before anything else.
  if (!global.json) {
    for (const std::string& note : dataset->notes) std::cerr << "dataset: " << note << "\n";
  }
  return std::move(*dataset);
}

v1::TaskKind TaskOf(const std::string& task_flag, const Dataset& dataset,
                    const std::string& path) {
  if (!task_flag.empty()) return *ParseTask(task_flag);
  if (dataset.is_text()) return v1::TASK_KIND_TEXT_CLASSIFICATION;
  if (client::IsAudioDataset(path, "")) return v1::TASK_KIND_AUDIO_CLASSIFICATION;
  return dataset.samples.shape.size() == 2 ? v1::TASK_KIND_TABULAR_CLASSIFICATION
                                           : v1::TASK_KIND_IMAGE_CLASSIFICATION;
}

int RunRecommend(const GlobalFlags& global, const RecommendFlags& flags, client::Client& client) {
  int exit_code = kExitOk;
  std::optional<Dataset> dataset = LoadQueryDataset(global, flags.dataset, flags.labels,
                                                    flags.max_samples, flags.image_size,
                                                    flags.task, &exit_code);
  if (!dataset) return exit_code;
  v1::RecommendHeader options;
  options.set_top_k(flags.top);
  options.set_num_candidates(flags.candidates);
  for (const auto& [name, value] : MetricNames()) {
    if (name == flags.metric) options.set_metric(value);
  }
  options.set_brute_force(flags.brute_force);
  options.set_all_versions(flags.all_versions);
  options.set_latency_budget_ms(flags.budget_ms);
  options.set_task(TaskOf(flags.task, *dataset, flags.dataset));
  auto response = client.Recommend(*dataset, options);
  if (!response.ok()) return RpcError("recommend", response.status());

  const v1::StageTimings& t = response->timings();
  if (global.json) {
    PrintJson(client::RecommendToJson(*response, dataset->notes));
    return kExitOk;
  }
  for (const auto& warning : response->warnings()) std::cerr << "warning: " << warning << "\n";
  std::cout << "query: " << dataset->samples.Rows()
            << (dataset->is_text() ? " texts"
                                   : " samples of " + ShapeToString(dataset->samples.SampleShape()))
            << ", labels "
            << response->label_source() << "; metric " << MetricName(response->metric())
            << "; scored " << response->num_scored() << " of " << response->num_compatible()
            << " compatible models";
  if (response->num_samples_scored() > 0 && response->num_samples_scored() < dataset->samples.Rows()) {
    std::cout << " on " << response->num_samples_scored() << " of the samples";
  }
  if (response->num_cached() > 0) {
    std::cout << " (" << response->num_cached() << " from the output cache)";
  }
  std::cout << "\nmode: " << ModeName(response->mode()) << ": " << response->mode_reason() << "\n";
  if (response->alignment_version() > 0) {
    std::cout << "ranker: trained version " << response->alignment_version()
              << " (outcome priors; `modeldock alignments`)\n";
  }
  if (response->recorded_outcomes() > 0) {
    std::cout << "recorded: the dock kept this query's class prototypes and "
              << response->recorded_outcomes()
              << " stage-2 standings as weak outcome records (`modeldock records`)\n";
  }
  if (response->results().empty()) {
    std::cout << "no compatible READY models\n";
  } else {
    // The LAYER column appears when some model was scored by layer (embed_layers).
    const bool any_layer = std::any_of(response->results().begin(), response->results().end(),
                                       [](const v1::Recommendation& r) { return !r.layer().empty(); });
    std::vector<std::vector<std::string>> rows = {{"RANK", "NAME", "VERSION"}};
    if (any_layer) rows[0].push_back("LAYER");
    for (const char* column : {"SCORE", "STAGE-1", "STAGE-1 RANK", "REASON"}) {
      rows[0].push_back(column);
    }
    for (const auto& r : response->results()) {
      const bool show_score = r.scored() || response->metric() == v1::METRIC_NONE;
      std::vector<std::string> row = {
          absl::StrCat(r.rank()), r.model().spec().name(),
          r.model().spec().version().empty() ? std::string("-") : r.model().spec().version()};
      if (any_layer) row.push_back(r.layer().empty() ? std::string("-") : r.layer());
      row.push_back(show_score ? absl::StrFormat("%.4f", r.score()) : std::string("-"));
      row.push_back(r.has_stage1_score() ? absl::StrFormat("%.4f", r.stage1_score())
                                         : std::string("-"));
      row.push_back(r.stage1_rank() > 0 ? absl::StrCat(r.stage1_rank()) : std::string("-"));
      row.push_back(r.reason());
      rows.push_back(std::move(row));
    }
    PrintTable(rows);
  }
  std::cout << absl::StrFormat(
      "timings: receive %.1f ms, encode query %.1f ms, stage 1 %.1f ms, stage 2 %.1f ms, "
      "total %.1f ms\n",
      t.receive_millis(), t.encode_query_millis(), t.stage1_millis(), t.stage2_millis(),
      t.total_millis());
  return kExitOk;
}



// ---------------------------------------------------------------------------------------------
// learning from outcomes: report, records, train, alignments


// "model,accuracy" lines; blank lines and lines starting with # are skipped.
absl::StatusOr<std::vector<v1::Outcome>> ReadOutcomes(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --outcomes ", path));
  std::vector<v1::Outcome> outcomes;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::string text(absl::StripAsciiWhitespace(line));
    if (text.empty() || text[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(text, ',');
    double accuracy = 0;
    if (parts.size() != 2 || !absl::SimpleAtod(parts[1], &accuracy)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", number, ": expected 'model,accuracy' (e.g. fmnist-cnn,0.93); got '", text,
          "'"));
    }
    v1::Outcome o;
    o.set_model(std::string(absl::StripAsciiWhitespace(parts[0])));
    o.set_accuracy(accuracy);
    outcomes.push_back(std::move(o));
  }
  if (outcomes.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " has no outcomes"));
  return outcomes;
}

int RunReport(const GlobalFlags& global, const ReportFlags& flags, client::Client& client) {
  std::vector<v1::Outcome> outcomes;
  if (!flags.outcomes_file.empty()) {
    if (!flags.model.empty()) return UsageError("give either --model/--accuracy or --outcomes");
    auto read = ReadOutcomes(flags.outcomes_file);
    if (!read.ok()) return UsageError(std::string(read.status().message()));
    outcomes = std::move(*read);
  } else {
    if (flags.model.empty() || flags.accuracy < 0) {
      return UsageError("report needs --model NAME --accuracy A (or --outcomes FILE.csv)");
    }
    v1::Outcome o;
    o.set_model(flags.model);
    o.set_accuracy(flags.accuracy);
    outcomes.push_back(std::move(o));
  }
  int exit_code = kExitOk;
  std::optional<Dataset> dataset = LoadQueryDataset(global, flags.dataset, flags.labels,
                                                    flags.max_samples, flags.image_size,
                                                    flags.task, &exit_code);
  if (!dataset) return exit_code;
  auto response = client.ReportOutcome(
      *dataset, TaskOf(flags.task, *dataset, flags.dataset), outcomes,
      flags.source == "import" ? v1::OUTCOME_SOURCE_IMPORT : v1::OUTCOME_SOURCE_FINETUNE);
  if (!response.ok()) return RpcError("report", response.status());
  if (global.json) {
    PrintJson(client::ReportToJson(*response, dataset->notes));
    return kExitOk;
  }
  std::cout << "stored " << response->num_stored() << " outcome(s) on query "
            << response->query_id().substr(0, 12) << " (" << dataset->samples.Rows()
            << " samples, " << response->num_classes() << " classes); the dock now holds "
            << response->total_records() << " records on " << response->total_queries()
            << " queries. `modeldock train --wait` learns from them.\n";
  return kExitOk;
}

}  // namespace modeldock::cli
