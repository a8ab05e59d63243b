// The modeldock CLI: errors, tables and JSON shared by the commands.
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

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// ---------------------------------------------------------------------------------------------
// Errors and formatting

int UsageError(const std::string& message) {
  std::cerr << "modeldock: " << message << "\n";
  return kExitUsage;
}

// Every RPC failure ends here: the message names the gRPC status code (NOT_FOUND, ...).
int RpcError(const std::string& what, const absl::Status& status) {
  std::cerr << "modeldock: " << what << " failed: " << absl::StatusCodeToString(status.code())
            << ": " << status.message() << "\n";
  if (status.code() == absl::StatusCode::kUnavailable) {
    std::cerr << "modeldock: is the server running? (--server or $MODELDOCK_SERVER)\n";
  }
  return kExitRpcError;
}

std::string FormatShape(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrJoin(shape, "x");
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < (1 << 20)) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
}

// "block1 (32-d), block2 (64-d)".
std::string LayersText(const google::protobuf::RepeatedPtrField<v1::ModelLayer>& layers) {
  std::string out;
  for (const v1::ModelLayer& layer : layers) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", layer.name(), " (", layer.dim(), "-d)");
  }
  return out;
}

void PrintJson(const json& document) { std::cout << document.dump(2) << "\n"; }

// Left-aligned columns two spaces apart; the last column is not padded.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

void PrintModel(const v1::Model& model) {
  const v1::ModelSpec& spec = model.spec();
  std::vector<std::vector<std::string>> rows = {
      {"id:", model.id()},
      {"name:", spec.name()},
      {"version:", spec.version()},
      {"description:", spec.description()},
      {"task:", TaskName(spec.task())},
      {"input shape:", FormatShape(spec.input_shape())},
      {"classes:", spec.kind() == v1::MODEL_KIND_FEATURE_EXTRACTOR
                       ? absl::StrCat("none (feature extractor: forward returns ",
                                      model.feature_dim(), "-d features)")
                       : absl::StrCat(spec.class_labels_size(), " (",
                                      absl::StrJoin(spec.class_labels(), ", "), ")")},
      {"license:", spec.license()},
      {"tags:", absl::StrJoin(spec.tags(), ", ")},
      {"stored as:", spec.remote().endpoint().empty()
                         ? std::string("a TorchScript file in the dock")
                         : absl::StrCat("remote: model '", spec.remote().model(), "'",
                                        spec.remote().version().empty()
                                            ? std::string()
                                            : absl::StrCat(" version '", spec.remote().version(), "'"),
                                        " at ", spec.remote().endpoint(), " (KServe v2)")},
      {"state:", StateName(model.state())},
      {"state reason:", model.state_reason()},
      {"sha256:", model.sha256()},
      {"size:", absl::StrCat(FormatBytes(model.size_bytes()), " (", model.size_bytes(),
                             " bytes)")},
      {"embed:", model.has_embed() ? absl::StrCat("yes, ", model.feature_dim(), "-d")
                                   : std::string("no")},
      {"layers:", model.layers().empty()
                      ? std::string("none (no embed_layers)")
                      : absl::StrCat(model.layers_size(), ": ", LayersText(model.layers()))},
      {"created (unix ms):", absl::StrCat(model.created_unix_ms())},
      {"probe time:", absl::StrCat(model.probe_millis(), " ms")}};
  PrintTable(rows);
}


// "image", "tabular" or "text" (the --task words).
const char* TaskShortName(v1::TaskKind task) {
  switch (task) {
    case v1::TASK_KIND_TABULAR_CLASSIFICATION: return "tabular";
    case v1::TASK_KIND_TEXT_CLASSIFICATION: return "text";
    case v1::TASK_KIND_AUDIO_CLASSIFICATION: return "audio";
    default: return "image";
  }
}


}  // namespace modeldock::cli
