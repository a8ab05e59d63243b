// The modeldock CLI: records, train, alignments and admin scrub.
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

int RunRecords(const GlobalFlags& global, const std::string& model, int limit,
               client::Client& client) {
  auto records = client.ListRecords(model, limit);
  if (!records.ok()) return RpcError("records", records.status());
  if (global.json) {
    PrintJson(client::RecordsToJson(*records));
    return kExitOk;
  }
  std::cout << records->total_records() << " records on " << records->total_queries()
            << " queries" << (records->records_size() < records->total_records()
                                  ? absl::StrCat(" (newest ", records->records_size(), " shown)")
                                  : std::string())
            << "\n";
  if (records->records().empty()) return kExitOk;
  std::vector<std::vector<std::string>> rows = {{"ID", "QUERY", "MODEL", "ACCURACY", "SOURCE", "CREATED"}};
  for (const auto& r : records->records()) {
    rows.push_back({absl::StrCat(r.id()), r.query_id().substr(0, 12), r.model_name(),
                    absl::StrFormat("%.4f", r.accuracy()), client::OutcomeSourceName(r.source()),
                    IsoTime(r.created_unix_ms())});
  }
  PrintTable(rows);
  return kExitOk;
}

// `modeldock admin scrub [--wait]`: every stored model file re-hashed (issue 28).
int RunAdminScrub(const GlobalFlags& global, bool wait, client::Client& client) {
  auto report = client.Scrub(wait);
  if (!report.ok()) return RpcError("admin scrub", report.status());
  // Bad files found: exit 1, so that a cron job notices.
  const bool bad = report->blobs_bad() > 0 || report->features_bad() > 0 ||
                   report->state() == v1::SCRUB_STATE_FAILED;
  if (global.json) {
    PrintJson(client::ScrubReportToJson(*report));
    return wait && bad ? kExitRpcError : kExitOk;
  }
  if (report->state() == v1::SCRUB_STATE_RUNNING) {
    std::cout << "scrub running in the background; `modeldock admin scrub --wait` waits for it\n";
    return kExitOk;
  }
  std::cout << "scrub " << client::ScrubStateName(report->state()) << ": " << report->message()
            << "\n";
  for (const std::string& id : report->bad_model_ids()) {
    std::cout << "bad: model " << id << " (FAILED: its stored file does not match its sha256)\n";
  }
  return wait && bad ? kExitRpcError : kExitOk;
}

int RunTrain(const GlobalFlags& global, bool wait, client::Client& client) {
  auto job = client.TrainAlignment(wait);
  if (!job.ok()) return RpcError("train", job.status());
  if (global.json) {
    PrintJson(client::TrainingJobToJson(*job));
    return job->state() == v1::TRAINING_STATE_FAILED ? kExitRpcError : kExitOk;
  }
  switch (job->state()) {
    case v1::TRAINING_STATE_RUNNING:
      std::cout << "training started in the background; `modeldock alignments` shows when it "
                   "is done (or run `modeldock train --wait`)\n";
      return kExitOk;
    case v1::TRAINING_STATE_FAILED:
      std::cerr << "training failed: " << job->message() << "\n";
      return kExitRpcError;
    default: break;
  }
  const v1::AlignmentVersion& v = job->result();
  std::cout << absl::StrFormat(
      "version %d trained on %d queries (%d records) in %.1f s\n"
      "held-out queries (%d folds), weighted Kendall tau: untrained %.4f, serving %.4f, "
      "trained %.4f\n%s: %s\nparameters: prior weight %.3f in stage 1, %.3f in stage 2, shrinkage "
      "%.3f toward %s, sharpness %.3f\n",
      v.version(), v.num_queries(), v.num_records(), v.training_seconds(), v.folds(),
      v.validation_untrained(), v.validation_serving(), v.validation_trained(),
      v.adopted() ? "ADOPTED (now serving)" : "NOT ADOPTED (the serving version stays)",
      v.reason(), v.weight(), v.stage2_weight(), v.shrinkage(),
      v.prior_target().empty() ? "facts" : v.prior_target(), v.sharpness());
  if (v.weak_queries() > 0) {
    std::cout << absl::StrFormat(
        "weak records: stage-2 standings of %d recommendations, learned weight %.3f\n",
        v.weak_queries(), v.weak_weight());
  }
  std::cout << "knowledge vectors: " << v.vectors_reason() << "\n";
  return kExitOk;
}

int RunAlignments(const GlobalFlags& global, client::Client& client) {
  auto list = client.ListAlignments();
  if (!list.ok()) return RpcError("alignments", list.status());
  if (global.json) {
    PrintJson(client::AlignmentsToJson(*list));
    return kExitOk;
  }
  std::cout << "serving: " << (list->serving_version() == 0
                                   ? std::string("version 0 (untrained)")
                                   : absl::StrCat("version ", list->serving_version()))
            << "\n";
  if (list->last_training().state() != v1::TRAINING_STATE_IDLE) {
    std::cout << "last training: " << client::TrainingStateName(list->last_training().state()) << ": "
              << list->last_training().message() << "\n";
  }
  if (list->versions().empty()) {
    std::cout << "no trained versions yet (`modeldock report`, then `modeldock train --wait`)\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"VERSION", "SERVING", "ADOPTED", "QUERIES", "HELD-OUT TAU_W (UNTRAINED/SERVING/TRAINED)",
       "WEIGHT", "PRIOR TARGET", "CREATED"}};
  for (const auto& v : list->versions()) {
    rows.push_back({absl::StrCat(v.version()), v.serving() ? "*" : "", v.adopted() ? "yes" : "no",
                    absl::StrCat(v.num_queries()),
                    absl::StrFormat("%.4f / %.4f / %.4f", v.validation_untrained(),
                                    v.validation_serving(), v.validation_trained()),
                    absl::StrFormat("%.3f", v.weight()),
                    v.prior_target().empty() ? "facts" : v.prior_target(),
                    IsoTime(v.created_unix_ms())});
  }
  PrintTable(rows);
  return kExitOk;
}

int RunAlignmentsUse(const GlobalFlags& global, int64_t version, client::Client& client) {
  if (absl::Status s = client.UseAlignment(version); !s.ok()) return RpcError("alignments use", s);
  if (global.json) {
    PrintJson(json{{"serving_version", version}});
  } else {
    std::cout << "serving version " << version << (version == 0 ? " (untrained)" : "") << "\n";
  }
  return kExitOk;
}

}  // namespace modeldock::cli
