// The JSON documents of the modeldock.v1 messages that the CLI prints with --json and the HTTP
// front door (http/) returns: one definition, so that `modeldock --json ...` and `curl` answer
// with the same keys in the same order (docs/CLI.md lists them). Also the metadata sidecar the
// CLI's `register --metadata` reads, which HTTP registrations send as their `metadata` part.
#ifndef MODELDOCK_CLIENT_JSON_OUTPUT_H_
#define MODELDOCK_CLIENT_JSON_OUTPUT_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "modeldock/v1/modeldock.pb.h"
#include "nlohmann/json.hpp"

namespace modeldock::client {

// Keys keep the order docs/CLI.md lists them in.
using json = nlohmann::ordered_json;

std::string StateName(v1::ModelState state);  // "READY", ...; "UNSPECIFIED"
std::string TaskName(v1::TaskKind task);      // "image_classification", ...
// "image", "tabular" or the long names; nullopt for anything else.
std::optional<v1::TaskKind> ParseTask(std::string_view text);
// "1,28,28" (or "1x28x28") -> {1, 28, 28}; nullopt if malformed.
std::optional<std::vector<int64_t>> ParseShape(const std::string& text);
// "PENDING", "PROBING", "READY", "FAILED" (any case); nullopt for anything else.
std::optional<v1::ModelState> ParseState(std::string_view text);
// "fusion", "logme", ... in the order `modeldock recommend --help` lists them.
const std::vector<std::pair<std::string, v1::Metric>>& MetricNames();
std::string MetricName(v1::Metric metric);
std::optional<v1::Metric> ParseMetric(std::string_view text);
std::string ModeName(v1::RecommendMode mode);  // "scored_all", "two_stage", "stage1_only"

json LayersToJson(const google::protobuf::RepeatedPtrField<v1::ModelLayer>& layers);
json ModelToJson(const v1::Model& model);
// {"model": the model asked about (as asked), "nearest": [{"model": ..., "similarity": ...}]}.
json NearestToJson(const std::string& model_ref, const v1::ListNearestModelsResponse& response);
json LayerScoresToJson(const google::protobuf::RepeatedPtrField<v1::LayerScore>& scores);
// `recommend --json`: the response plus what loading the dataset noted (resized, skipped...).
json RecommendToJson(const v1::RecommendResponse& response,
                     const std::vector<std::string>& dataset_notes);

// `tune --json` without its "out" (the file the CLI wrote); POST /v1/tune adds the file itself.
json TuneToJson(const v1::TuneResult& result);

// `report --json`.
json ReportToJson(const v1::ReportOutcomeResponse& response,
                  const std::vector<std::string>& dataset_notes);

// 2026-12-07T01:02:03Z: times in the JSON documents below.
std::string IsoTime(int64_t unix_ms);

// `audit --json`: {"entries": [{"id", "time", "actor", "action", "target", "detail"}]}.
json AuditLogToJson(const v1::ListAuditLogResponse& log);
// "finetune", "import" or "stage2".
std::string OutcomeSourceName(v1::OutcomeSource source);
// `records --json`: {"records": [...], "total_records", "total_queries"}.
json RecordsToJson(const v1::ListRecordsResponse& records);
// "idle", "running", "done", "failed".
std::string TrainingStateName(v1::TrainingState state);
json AlignmentVersionToJson(const v1::AlignmentVersion& version);
// `train --json`: {"state", "message", ["result", "version", "adopted"], "reason"}.
json TrainingJobToJson(const v1::TrainingJob& job);
// `alignments --json`: {"serving_version", "versions", "last_training"}.
json AlignmentsToJson(const v1::ListAlignmentsResponse& list);
// "idle", "running", "done", "failed".
std::string ScrubStateName(v1::ScrubState state);
// `admin scrub --json`.
json ScrubReportToJson(const v1::ScrubReport& report);

// {"id", "name", "role": "consumer"|"provider"|"admin", "created_unix_ms", "revoked"}.
json ApiKeyToJson(const v1::ApiKey& key);
// "consumer", "provider", "admin"; nullopt for anything else.
std::optional<v1::ApiKeyRole> ParseRole(std::string_view text);

// Fills `spec` from a metadata document ({"name", "version", "description", "license", "task",
// "input_shape", "class_labels", "kind", "tags"}; absent keys leave the field as it is).
// INVALID_ARGUMENT naming `source` and the bad key.
absl::Status SpecFromMetadata(const json& meta, const std::string& source, v1::ModelSpec* spec);

}  // namespace modeldock::client

#endif  // MODELDOCK_CLIENT_JSON_OUTPUT_H_
