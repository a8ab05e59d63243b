// modeldock: command-line client of a modeldock server. The contract (commands, flags, JSON
// shapes, exit codes) is docs/CLI.md; keep the two in step.
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

#include "CLI/CLI.hpp"
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
namespace {

using client::json;
using client::LayerScoresToJson;
using client::LayersToJson;
using client::MetricName;
using client::MetricNames;
using client::ModeName;
using client::ModelToJson;
using client::ParseShape;
using client::ParseTask;
using client::StateName;
using client::TaskName;

constexpr int kExitOk = 0;
constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInternal = 3;  // an exception escaped Main: a bug, reported, never an abort

struct GlobalFlags {
  std::string server;
  bool json = false;
  double timeout_seconds = 120;
  std::string tls_ca, tls_cert, tls_key;
  std::string api_key_file;
};

// $NAME, or "" when unset.
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

// ---------------------------------------------------------------------------------------------
// register

struct RegisterFlags {
  std::string file;
  std::string name;
  std::string input_shape;
  std::string labels;
  std::string version;
  std::string description;
  std::string license;
  std::vector<std::string> tags;
  std::string task;
  std::string metadata;
  bool no_wait = false;
  bool feature_extractor = false;
  std::string remote;          // HOST:PORT of a KServe v2 server: no FILE
  std::string remote_model;
  std::string remote_version;
};

// Whether `path` names a regular file. Never throws: a comma list of 43 labels is longer than a
// file name may be (ENAMETOOLONG), and that only means it is not a file.
bool IsRegularFile(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// --labels: "@FILE", or an existing file path (one label per line), or a comma list.
absl::StatusOr<std::vector<std::string>> ReadLabels(const std::string& arg) {
  std::string path;
  if (!arg.empty() && arg[0] == '@') {
    path = arg.substr(1);
  } else if (IsRegularFile(arg)) {
    path = arg;
  }
  std::vector<std::string> labels;
  if (path.empty()) {
    for (absl::string_view label : absl::StrSplit(arg, ',')) {
      labels.emplace_back(absl::StripAsciiWhitespace(label));
    }
    return labels;
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read labels file ", path));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view label = absl::StripAsciiWhitespace(line);
    if (!label.empty()) labels.emplace_back(label);
  }
  return labels;
}

// Fills `spec` from a metadata sidecar; returns an error message or "".
std::string LoadMetadata(const std::string& path, v1::ModelSpec* spec) {
  std::ifstream in(path);
  if (!in) return absl::StrCat("cannot read metadata file ", path);
  json meta;
  try {
    meta = json::parse(in);
  } catch (const std::exception& e) {
    return absl::StrCat(path, ": ", e.what());
  }
  absl::Status status = client::SpecFromMetadata(meta, path, spec);
  return status.ok() ? "" : std::string(status.message());
}

// Upload progress: a redrawn bar on a terminal, else one line at the end.
class ProgressReporter {
 public:
  explicit ProgressReporter(std::string file) : file_(std::move(file)), tty_(isatty(2) == 1) {}

  void Update(int64_t sent, int64_t total) {
    if (!tty_) return;
    constexpr int kWidth = 30;
    const double fraction = total > 0 ? static_cast<double>(sent) / total : 1.0;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\ruploading %s [%s%s] %3d%%  %s / %s", file_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                 static_cast<int>(fraction * 100), FormatBytes(sent).c_str(),
                 FormatBytes(total).c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

  void Done(int64_t total, bool ok) {
    if (drawn_) std::fprintf(stderr, "\n");
    if (ok) std::fprintf(stderr, "uploaded %s (%s)\n", file_.c_str(), FormatBytes(total).c_str());
  }

 private:
  std::string file_;
  bool tty_;
  bool drawn_ = false;
};

// "image", "tabular" or "text" (the --task words).
const char* TaskShortName(v1::TaskKind task) {
  switch (task) {
    case v1::TASK_KIND_TABULAR_CLASSIFICATION: return "tabular";
    case v1::TASK_KIND_TEXT_CLASSIFICATION: return "text";
    case v1::TASK_KIND_AUDIO_CLASSIFICATION: return "audio";
    default: return "image";
  }
}

int RunRegister(const GlobalFlags& global, const RegisterFlags& flags, client::Client& client) {
  v1::ModelSpec spec;
  if (!flags.metadata.empty()) {
    if (std::string error = LoadMetadata(flags.metadata, &spec); !error.empty()) {
      return UsageError(error);
    }
  }
  if (!flags.name.empty()) spec.set_name(flags.name);
  if (!flags.version.empty()) spec.set_version(flags.version);
  if (!flags.description.empty()) spec.set_description(flags.description);
  if (!flags.license.empty()) spec.set_license(flags.license);
  if (!flags.tags.empty()) {
    spec.clear_tags();
    for (const auto& tag : flags.tags) spec.add_tags(tag);
  }
  if (!flags.task.empty()) spec.set_task(*ParseTask(flags.task));  // checked by CLI11
  if (!flags.input_shape.empty()) {
    auto shape = ParseShape(flags.input_shape);
    if (!shape) {
      return UsageError(absl::StrCat("--input-shape '", flags.input_shape,
                                     "' is not a comma list of positive sizes, e.g. 1,28,28"));
    }
    spec.clear_input_shape();
    for (int64_t d : *shape) spec.add_input_shape(d);
  }
  if (!flags.labels.empty()) {
    auto labels = ReadLabels(flags.labels);
    if (!labels.ok()) return UsageError(std::string(labels.status().message()));
    spec.clear_class_labels();
    for (const auto& label : *labels) spec.add_class_labels(label);
  }
  if (spec.name().empty()) return UsageError("register needs --name (or \"name\" in --metadata)");
  if (spec.task() == v1::TASK_KIND_TEXT_CLASSIFICATION) {
    if (!spec.input_shape().empty()) {
      return UsageError("a text model takes strings: give no --input-shape");
    }
  } else if (spec.input_shape().empty()) {
    return UsageError("register needs --input-shape, e.g. 1,28,28 (or \"input_shape\" in --metadata), "
                      "or --input-kind text for a text model");
  }
  if (flags.feature_extractor) spec.set_kind(v1::MODEL_KIND_FEATURE_EXTRACTOR);
  const bool extractor = spec.kind() == v1::MODEL_KIND_FEATURE_EXTRACTOR;
  if (extractor && !spec.class_labels().empty()) {
    return UsageError("a feature extractor has no --labels (its forward returns features)");
  }
  if (!extractor && spec.class_labels().empty()) {
    return UsageError("register needs --labels (or \"class_labels\" in --metadata), or "
                      "--feature-extractor for a headless model");
  }
  v1::RegisterModelResponse registered_response;
  if (!flags.remote.empty()) {
    // A remote model: nothing is uploaded; the dock calls it over the KServe v2 protocol.
    if (!flags.file.empty()) return UsageError("give a FILE or --remote, not both");
    if (flags.remote_model.empty()) return UsageError("--remote needs --remote-model NAME");
    spec.mutable_remote()->set_endpoint(flags.remote);
    spec.mutable_remote()->set_model(flags.remote_model);
    spec.mutable_remote()->set_version(flags.remote_version);
    auto registered = client.RegisterRemote(spec);
    if (!registered.ok()) {
      return RpcError(absl::StrCat("register '", spec.name(), "'"), registered.status());
    }
    *registered_response.mutable_model() = *registered;
  } else {
    if (flags.file.empty()) return UsageError("register needs a FILE (or --remote HOST:PORT)");
    if (!IsRegularFile(flags.file) || !std::ifstream(flags.file)) {
      return UsageError(absl::StrCat("cannot read model file ", flags.file));
    }
    ProgressReporter progress(flags.file);
    int64_t total = 0;
    auto registered = client.Register(flags.file, spec, [&](int64_t sent, int64_t size) {
      total = size;
      progress.Update(sent, size);
    });
    progress.Done(total, registered.ok());
    if (!registered.ok()) {
      return RpcError(absl::StrCat("register '", spec.name(), "'"), registered.status());
    }
    registered_response = *std::move(registered);
  }
  const v1::RegisterModelResponse* registered = &registered_response;
  v1::Model model = registered->model();
  if (!global.json) {
    std::cout << "registered " << model.spec().name() << " as " << model.id()
              << (registered->deduplicated() ? " (same bytes already stored, kept once)" : "")
              << (flags.remote.empty() ? "" : " (remote: " + flags.remote + ")") << "\n";
  }
  if (!flags.no_wait && model.state() != v1::MODEL_STATE_READY &&
      model.state() != v1::MODEL_STATE_FAILED) {
    auto last = client.Watch(model.id(), [&](const v1::Model& update) {
      if (!global.json) std::cerr << "  " << StateName(update.state()) << "\n";
    });
    if (!last.ok()) return RpcError(absl::StrCat("waiting for '", spec.name(), "'"), last.status());
    model = *last;
  }
  if (global.json) {
    PrintJson(json{{"model", ModelToJson(model)}, {"deduplicated", registered->deduplicated()}});
  } else {
    std::cout << model.spec().name() << ": " << StateName(model.state());
    if (model.has_embed()) std::cout << " (embed " << model.feature_dim() << "-d)";
    if (model.spec().kind() == v1::MODEL_KIND_FEATURE_EXTRACTOR) {
      std::cout << " (feature extractor, " << model.feature_dim() << "-d)";
    }
    if (!model.layers().empty()) {
      std::cout << " (" << model.layers_size() << " layers: " << LayersText(model.layers()) << ")";
    }
    if (!model.state_reason().empty()) std::cout << ": " << model.state_reason();
    std::cout << "\n";
  }
  if (model.state() == v1::MODEL_STATE_FAILED) {
    std::cerr << "modeldock: model '" << model.spec().name()
              << "' was admitted but probing FAILED: " << model.state_reason() << "\n";
    return kExitRpcError;
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------------------------
// list, show, rm, watch, health

struct ListFlags {
  std::string name_contains;
  std::string task;
  std::string input_shape;
  std::string tag;
  std::string state;
  int page_size = 0;
};

int RunList(const GlobalFlags& global, const ListFlags& flags, bool one_page,
            client::Client& client) {
  v1::ListModelsRequest request;
  request.set_name_contains(flags.name_contains);
  if (!flags.task.empty()) request.set_task(*ParseTask(flags.task));
  if (!flags.input_shape.empty()) {
    auto shape = ParseShape(flags.input_shape);
    if (!shape) return UsageError("--input-shape must look like 1,28,28");
    for (int64_t d : *shape) request.add_input_shape(d);
  }
  request.set_tag(flags.tag);
  if (!flags.state.empty()) {
    std::string upper = flags.state;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    v1::ModelState state = v1::MODEL_STATE_UNSPECIFIED;
    v1::ModelState_Parse("MODEL_STATE_" + upper, &state);  // value checked by CLI11
    request.set_state(state);
  }
  request.set_page_size(flags.page_size);

  std::vector<v1::Model> models;
  int total_size = 0;
  while (true) {
    auto page = client.List(request);
    if (!page.ok()) return RpcError("list", page.status());
    models.insert(models.end(), page->models().begin(), page->models().end());
    total_size = page->total_size();
    if (one_page || page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }

  if (global.json) {
    json list = json::array();
    for (const auto& model : models) list.push_back(ModelToJson(model));
    PrintJson(json{{"models", list}, {"total_size", total_size}});
    return kExitOk;
  }
  if (models.empty()) {
    std::cout << "no models\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "VERSION", "TASK", "INPUT", "CLASSES", "STATE", "SIZE"}};
  for (const auto& model : models) {
    rows.push_back({model.id(), model.spec().name(), model.spec().version(),
                    TaskShortName(model.spec().task()),
                    model.spec().task() == v1::TASK_KIND_TEXT_CLASSIFICATION
                        ? "strings"
                        : FormatShape(model.spec().input_shape()),
                    absl::StrCat(model.spec().class_labels_size()), StateName(model.state()),
                    FormatBytes(model.size_bytes())});
  }
  PrintTable(rows);
  if (static_cast<int>(models.size()) < total_size) {
    std::cout << models.size() << " of " << total_size << " models\n";
  } else {
    std::cout << total_size << (total_size == 1 ? " model\n" : " models\n");
  }
  return kExitOk;
}

int RunShow(const GlobalFlags& global, const std::string& model_ref, client::Client& client) {
  auto model = client.Get(model_ref);
  if (!model.ok()) return RpcError(absl::StrCat("show '", model_ref, "'"), model.status());
  if (global.json) {
    PrintJson(json{{"model", ModelToJson(*model)}});
  } else {
    PrintModel(*model);
  }
  return kExitOk;
}

int RunRemove(const GlobalFlags& global, const std::string& model_ref, bool all_versions,
              client::Client& client) {
  auto ids = client.Delete(model_ref, all_versions);
  if (!ids.ok()) return RpcError(absl::StrCat("rm '", model_ref, "'"), ids.status());
  if (global.json) {
    PrintJson(json{{"id", ids->front()}, {"ids", *ids}});
  } else if (all_versions) {
    std::cout << "deleted " << ids->size() << " version" << (ids->size() == 1 ? "" : "s")
              << " of " << model_ref << " (" << absl::StrJoin(*ids, ", ") << ")\n";
  } else {
    const std::string& id = ids->front();
    std::cout << "deleted " << model_ref << (model_ref == id ? "" : " (" + id + ")") << "\n";
  }
  return kExitOk;
}

int RunWatch(const GlobalFlags& global, const std::string& model_ref, client::Client& client) {
  auto last = client.Watch(model_ref, [&](const v1::Model& model) {
    if (global.json) return;
    std::cout << model.spec().name() << " " << StateName(model.state());
    if (!model.state_reason().empty()) std::cout << ": " << model.state_reason();
    std::cout << std::endl;
  });
  if (!last.ok()) return RpcError(absl::StrCat("watch '", model_ref, "'"), last.status());
  if (global.json) PrintJson(json{{"model", ModelToJson(*last)}});
  return kExitOk;
}

int RunHealth(const GlobalFlags& global, client::Client& client) {
  auto status = client.Health();
  if (!status.ok()) return RpcError("health check", status.status());
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status);
  if (global.json) {
    PrintJson(json{{"status", name}});
  } else {
    std::cout << name << "\n";
  }
  if (*status != grpc::health::v1::HealthCheckResponse::SERVING) {
    std::cerr << "modeldock: server at " << client.options().address << " is " << name << "\n";
    return kExitRpcError;
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------------------------
// keys

int RunKeysCreate(const GlobalFlags& global, const std::string& role, const std::string& name,
                  client::Client& client) {
  v1::ApiKeyRole value = role == "admin"      ? v1::API_KEY_ROLE_ADMIN
                         : role == "provider" ? v1::API_KEY_ROLE_PROVIDER
                                              : v1::API_KEY_ROLE_CONSUMER;
  auto created = client.CreateApiKey(value, name);
  if (!created.ok()) return RpcError("keys create", created.status());
  if (global.json) {
    json out = client::ApiKeyToJson(created->key());
    out["secret"] = created->secret();
    PrintJson(out);
  } else {
    std::cerr << "created " << role << " key " << created->key().id()
              << "; it is printed once, keep it safe:\n";
    std::cout << created->secret() << "\n";
  }
  return kExitOk;
}

int RunKeysList(const GlobalFlags& global, client::Client& client) {
  auto keys = client.ListApiKeys();
  if (!keys.ok()) return RpcError("keys list", keys.status());
  json all = json::array();
  for (const v1::ApiKey& key : keys->keys()) all.push_back(client::ApiKeyToJson(key));
  if (global.json) {
    PrintJson(json{{"keys", all}});
    return kExitOk;
  }
  for (const json& k : all) {
    std::cout << k["id"].get<std::string>() << "  " << k["role"].get<std::string>() << "  "
              << (k["revoked"].get<bool>() ? "REVOKED  " : "") << k["name"].get<std::string>()
              << "\n";
  }
  return kExitOk;
}

int RunKeysRevoke(const GlobalFlags& global, const std::string& id, client::Client& client) {
  if (absl::Status s = client.RevokeApiKey(id); !s.ok()) return RpcError("keys revoke", s);
  if (global.json) {
    PrintJson(json{{"revoked", id}});
  } else {
    std::cout << "revoked " << id << "\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------------------------
// recommend

struct RecommendFlags {
  std::string dataset;
  std::string labels;
  int top = 5;
  int candidates = 0;
  std::string metric = "fusion";
  bool brute_force = false;
  bool all_versions = false;
  double budget_ms = 0;
  int64_t max_samples = 0;
  std::string task;
  std::string image_size;  // "H,W"
};

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
// update, audit

std::string IsoTime(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

struct UpdateFlags {
  std::string model;
  std::optional<std::string> description;
  std::optional<std::string> license;
  std::vector<std::string> tags;
  bool clear_tags = false;
};

int RunUpdate(const GlobalFlags& global, const UpdateFlags& flags, client::Client& client) {
  v1::UpdateModelRequest request;
  request.set_model(flags.model);
  if (flags.description) request.set_description(*flags.description);
  if (flags.license) request.set_license(*flags.license);
  if (!flags.tags.empty() || flags.clear_tags) {
    request.set_replace_tags(true);
    for (const std::string& tag : flags.tags) request.add_tags(tag);
  }
  if (!flags.description && !flags.license && !request.replace_tags()) {
    return UsageError("update needs --description, --license, --tag or --clear-tags");
  }
  auto model = client.Update(request);
  if (!model.ok()) return RpcError("update", model.status());
  if (global.json) {
    PrintJson(json{{"model", ModelToJson(*model)}});
  } else {
    std::cout << model->spec().name() << ": updated\n";
  }
  return kExitOk;
}

int RunAudit(const GlobalFlags& global, int limit, client::Client& client) {
  auto log = client.AuditLog(limit);
  if (!log.ok()) return RpcError("audit", log.status());
  if (global.json) {
    json entries = json::array();
    for (const auto& e : log->entries()) {
      entries.push_back(json{{"id", e.id()}, {"time", IsoTime(e.unix_ms())}, {"actor", e.actor()},
                             {"action", e.action()}, {"target", e.target()},
                             {"detail", e.detail()}});
    }
    PrintJson(json{{"entries", entries}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {{"TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"}};
  for (const auto& e : log->entries()) {
    rows.push_back({IsoTime(e.unix_ms()), e.actor().empty() ? "-" : e.actor(), e.action(),
                    e.target(), e.detail()});
  }
  PrintTable(rows);
  return kExitOk;
}

// ---------------------------------------------------------------------------------------------
// learning from outcomes: report, records, train, alignments

struct ReportFlags {
  std::string dataset;
  std::string labels;
  std::string model;
  double accuracy = -1;
  std::string outcomes_file;  // CSV: model,accuracy per line
  std::string source = "finetune";
  int64_t max_samples = 0;
  std::string task;
  std::string image_size;
};

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

std::string SourceName(v1::OutcomeSource source) {
  switch (source) {
    case v1::OUTCOME_SOURCE_IMPORT: return "import";
    case v1::OUTCOME_SOURCE_STAGE2: return "stage2";
    default: return "finetune";
  }
}

int RunRecords(const GlobalFlags& global, const std::string& model, int limit,
               client::Client& client) {
  auto records = client.ListRecords(model, limit);
  if (!records.ok()) return RpcError("records", records.status());
  if (global.json) {
    json all = json::array();
    for (const auto& r : records->records()) {
      all.push_back(json{{"id", r.id()}, {"query_id", r.query_id()}, {"model_id", r.model_id()},
                         {"model", r.model_name()}, {"accuracy", r.accuracy()},
                         {"source", SourceName(r.source())},
                         {"created", IsoTime(r.created_unix_ms())}});
    }
    PrintJson(json{{"records", all},
                   {"total_records", records->total_records()},
                   {"total_queries", records->total_queries()}});
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
                    absl::StrFormat("%.4f", r.accuracy()), SourceName(r.source()),
                    IsoTime(r.created_unix_ms())});
  }
  PrintTable(rows);
  return kExitOk;
}

json VersionJson(const v1::AlignmentVersion& v) {
  return json{{"version", v.version()},
              {"created", IsoTime(v.created_unix_ms())},
              {"serving", v.serving()},
              {"adopted", v.adopted()},
              {"num_queries", v.num_queries()},
              {"num_records", v.num_records()},
              {"folds", v.folds()},
              {"validation_untrained", v.validation_untrained()},
              {"validation_serving", v.validation_serving()},
              {"validation_trained", v.validation_trained()},
              {"weight", v.weight()},
              {"shrinkage", v.shrinkage()},
              {"sharpness", v.sharpness()},
              {"training_seconds", v.training_seconds()},
              {"reason", v.reason()},
              {"vectors_trained", v.vectors_trained()},
              {"vectors_validation_untrained", v.vectors_validation_untrained()},
              {"vectors_validation_trained", v.vectors_validation_trained()},
              {"vectors_reason", v.vectors_reason()},
              {"weak_queries", v.weak_queries()},
              {"weak_weight", v.weak_weight()},
              {"stage2_weight", v.stage2_weight()},
              {"prior_target", v.prior_target()}};
}

std::string StateName(v1::TrainingState state) {
  switch (state) {
    case v1::TRAINING_STATE_RUNNING: return "running";
    case v1::TRAINING_STATE_DONE: return "done";
    case v1::TRAINING_STATE_FAILED: return "failed";
    default: return "idle";
  }
}

json JobJson(const v1::TrainingJob& job) {
  json out{{"state", StateName(job.state())}, {"message", job.message()}};
  if (job.state() == v1::TRAINING_STATE_DONE) {
    out["result"] = VersionJson(job.result());
    // Flattened for scripts: the version and whether it serves now.
    out["version"] = job.result().version();
    out["adopted"] = job.result().adopted();
  }
  out["reason"] = job.message();
  return out;
}

// `modeldock admin scrub [--wait]`: every stored model file re-hashed (issue 28).
int RunAdminScrub(const GlobalFlags& global, bool wait, client::Client& client) {
  auto report = client.Scrub(wait);
  if (!report.ok()) return RpcError("admin scrub", report.status());
  const char* state = "unspecified";
  switch (report->state()) {
    case v1::SCRUB_STATE_IDLE: state = "idle"; break;
    case v1::SCRUB_STATE_RUNNING: state = "running"; break;
    case v1::SCRUB_STATE_DONE: state = "done"; break;
    case v1::SCRUB_STATE_FAILED: state = "failed"; break;
    default: break;
  }
  // Bad files found: exit 1, so that a cron job notices.
  const bool bad = report->blobs_bad() > 0 || report->features_bad() > 0 ||
                   report->state() == v1::SCRUB_STATE_FAILED;
  if (global.json) {
    PrintJson(json{{"state", state},
                   {"message", report->message()},
                   {"started_unix_ms", report->started_unix_ms()},
                   {"finished_unix_ms", report->finished_unix_ms()},
                   {"blobs_checked", report->blobs_checked()},
                   {"blobs_ok", report->blobs_ok()},
                   {"blobs_bad", report->blobs_bad()},
                   {"blobs_restored", report->blobs_restored()},
                   {"bytes_hashed", report->bytes_hashed()},
                   {"models_failed", report->models_failed()},
                   {"models_requeued", report->models_requeued()},
                   {"features_checked", report->features_checked()},
                   {"features_bad", report->features_bad()},
                   {"bad_model_ids", std::vector<std::string>(report->bad_model_ids().begin(),
                                                              report->bad_model_ids().end())},
                   {"bad_blobs", std::vector<std::string>(report->bad_blobs().begin(),
                                                          report->bad_blobs().end())}});
    return wait && bad ? kExitRpcError : kExitOk;
  }
  if (report->state() == v1::SCRUB_STATE_RUNNING) {
    std::cout << "scrub running in the background; `modeldock admin scrub --wait` waits for it\n";
    return kExitOk;
  }
  std::cout << "scrub " << state << ": " << report->message() << "\n";
  for (const std::string& id : report->bad_model_ids()) {
    std::cout << "bad: model " << id << " (FAILED: its stored file does not match its sha256)\n";
  }
  return wait && bad ? kExitRpcError : kExitOk;
}

int RunTrain(const GlobalFlags& global, bool wait, client::Client& client) {
  auto job = client.TrainAlignment(wait);
  if (!job.ok()) return RpcError("train", job.status());
  if (global.json) {
    PrintJson(JobJson(*job));
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
    json versions = json::array();
    for (const auto& v : list->versions()) versions.push_back(VersionJson(v));
    PrintJson(json{{"serving_version", list->serving_version()},
                   {"versions", versions},
                   {"last_training", JobJson(list->last_training())}});
    return kExitOk;
  }
  std::cout << "serving: " << (list->serving_version() == 0
                                   ? std::string("version 0 (untrained)")
                                   : absl::StrCat("version ", list->serving_version()))
            << "\n";
  if (list->last_training().state() != v1::TRAINING_STATE_IDLE) {
    std::cout << "last training: " << StateName(list->last_training().state()) << ": "
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

constexpr char kMainFooter[] = R"(
Examples:
  modeldock register cnn.pt --name fmnist-cnn --input-shape 1,28,28 --labels @labels.txt
  modeldock register cnn.pt --metadata cnn.json --tag fashion --no-wait
  modeldock list --state ready --input-shape 1,28,28
  modeldock show fmnist-cnn
  modeldock recommend query-images-idx3-ubyte --labels query-labels-idx1-ubyte --top 5
  modeldock --json list | jq '.models[].name'
  modeldock rm fmnist-cnn
  modeldock report my-data.npz --model fmnist-cnn --accuracy 0.93   # after fine-tuning it
  modeldock train --wait && modeldock alignments

Exit status: 0 success, 1 server/RPC error (the message names the gRPC status code),
2 usage error (bad flags, unreadable file). Run 'modeldock COMMAND --help' for a command.)";

int Main(int argc, char** argv) {
  GlobalFlags global;
  const char* env_server = std::getenv("MODELDOCK_SERVER");
  global.server = env_server != nullptr && *env_server ? env_server : "127.0.0.1:50051";

  CLI::App app("modeldock: register TorchScript models in a modeldock server and ask it which "
               "models transfer best to your dataset.",
               "modeldock");
  app.footer(kMainFooter);
  app.set_version_flag("--version", std::string("modeldock ") + MODELDOCK_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags may also follow the command
  app.add_option("--server", global.server,
                 "Server address HOST:PORT (default: $MODELDOCK_SERVER, else 127.0.0.1:50051)");
  app.add_flag("--json", global.json, "Print one JSON document on stdout");
  global.tls_ca = Env("MODELDOCK_TLS_CA");
  global.tls_cert = Env("MODELDOCK_TLS_CERT");
  global.tls_key = Env("MODELDOCK_TLS_KEY");
  app.add_option("--tls-ca", global.tls_ca,
                 "PEM of the CA that signed the server's certificate: connect with TLS "
                 "(default: $MODELDOCK_TLS_CA; unset = plaintext)");
  app.add_option("--tls-cert", global.tls_cert,
                 "Client certificate chain PEM for mutual TLS (default: $MODELDOCK_TLS_CERT)");
  app.add_option("--api-key-file", global.api_key_file,
                 "File holding the API key for servers started with --auth (default: "
                 "$MODELDOCK_API_KEY)");
  app.add_option("--tls-key", global.tls_key,
                 "Client private key PEM for mutual TLS (default: $MODELDOCK_TLS_KEY)");
  app.add_option("--timeout", global.timeout_seconds,
                 "Deadline of each call in seconds (register: of the upload and of the wait)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  const auto task_check = CLI::IsMember({"image", "tabular", "text", "audio"});

  RegisterFlags reg;
  CLI::App* register_cmd = app.add_subcommand(
      "register", "Upload a TorchScript model and wait until it is READY (or FAILED)");
  register_cmd->add_option("FILE", reg.file, "TorchScript file (torch.jit.save); none with --remote");
  register_cmd->add_option("--remote", reg.remote,
                           "HOST:PORT of a KServe v2 inference server (Triton, KServe, MLServer, "
                           "another dock's --kserve-listen) that keeps the model: no upload");
  register_cmd->add_option("--remote-model", reg.remote_model, "The model's name on --remote");
  register_cmd->add_option("--remote-version", reg.remote_version,
                           "The model's version on --remote (default: the server's choice)");
  register_cmd->add_option("--name", reg.name, "Unique model name: letters, digits, . _ -");
  register_cmd->add_option("--input-shape", reg.input_shape,
                           "Per-sample input shape, e.g. 1,28,28 (image) or 20 (tabular)");
  register_cmd->add_option("--labels", reg.labels,
                           "Class labels in output order: a,b,c or @FILE (one per line)");
  register_cmd->add_option("--version", reg.version, "Version label, e.g. 1.0.0");
  register_cmd->add_option("--description", reg.description, "Free text");
  register_cmd->add_option("--license", reg.license, "SPDX identifier or free text");
  register_cmd->add_option("--tag", reg.tags, "Tag (repeatable)")->allow_extra_args(false);
  register_cmd->add_option("--task,--input-kind", reg.task,
                           "image (default for [C,H,W]), tabular, text (forward(List[str]); no "
                           "--input-shape) or audio (forward([N, T]) on 16 kHz mono; "
                           "--input-shape T)")
      ->check(task_check);
  register_cmd->add_option("--metadata", reg.metadata,
                           "JSON sidecar with name, version, description, task, input_shape, "
                           "class_labels, license, tags (flags override it)");
  register_cmd->add_flag("--no-wait", reg.no_wait, "Return after admission, before probing ends");
  register_cmd->add_flag("--feature-extractor", reg.feature_extractor,
                         "A headless model: forward(x) returns features [N, D]; no --labels");
  register_cmd->footer(R"(
Examples:
  modeldock register cnn.pt --name fmnist-cnn --input-shape 1,28,28 \
      --labels T-shirt,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Boot
  modeldock register cnn.pt --metadata cnn.json --version 2.0.0   # flags override the sidecar
  modeldock register --remote triton:8001 --remote-model resnet --name resnet-remote \
      --input-shape 3,32,32 --labels @labels.txt        # stays on its server (KServe v2)
The file must be TorchScript; forward(x) gets [N, ...input shape] floats in [0, 1] and returns
[N, number of labels] logits; an optional embed(x) returns penultimate features.
Exit status 1 also when the model was admitted but probing FAILED.)");

  ListFlags list;
  CLI::App* list_cmd = app.add_subcommand("list", "List registered models (all pages)");
  list_cmd->add_option("--name-contains", list.name_contains, "Name substring");
  list_cmd->add_option("--task,--input-kind", list.task, "image, tabular or text")->check(task_check);
  list_cmd->add_option("--input-shape", list.input_shape, "Exact input shape, e.g. 1,28,28");
  list_cmd->add_option("--tag", list.tag, "Models carrying this tag");
  list_cmd->add_option("--state", list.state, "ready, probing, pending or failed")
      ->check(CLI::IsMember({"ready", "probing", "pending", "failed"}));
  CLI::Option* page_size_opt =
      list_cmd->add_option("--page-size", list.page_size, "One page of at most N models")
          ->check(CLI::Range(1, 1000));
  list_cmd->footer("\nExamples:\n  modeldock list\n  modeldock list --state ready --tag fashion\n"
                   "  modeldock --json list --name-contains cnn");

  std::string model_ref;
  CLI::App* show_cmd = app.add_subcommand("show", "Show one model, all fields");
  show_cmd->add_option("MODEL", model_ref, "Model id, NAME@VERSION, or NAME (its latest READY version)")->required();
  bool rm_all_versions = false;
  CLI::App* rm_cmd = app.add_subcommand("rm", "Delete a model version (its file too if unshared)");
  rm_cmd->add_option("MODEL", model_ref,
                     "Model id, NAME@VERSION, or NAME (when it has one version)")
      ->required();
  rm_cmd->add_flag("--all-versions", rm_all_versions, "Delete every version of NAME");
  CLI::App* watch_cmd =
      app.add_subcommand("watch", "Print a model's state changes until READY or FAILED");
  watch_cmd->add_option("MODEL", model_ref, "Model id, NAME@VERSION, or NAME (its latest READY version)")->required();
  std::string key_role = "consumer", key_name, key_id;
  CLI::App* keys_cmd = app.add_subcommand("keys", "Manage API keys (admin key needed)");
  keys_cmd->require_subcommand(1);
  CLI::App* keys_create = keys_cmd->add_subcommand("create", "Create a key; prints it once");
  keys_create->add_option("--role", key_role, "consumer, provider or admin")
      ->capture_default_str()
      ->check(CLI::IsMember({"consumer", "provider", "admin"}));
  keys_create->add_option("--name", key_name, "Who holds it (a label)");
  CLI::App* keys_list = keys_cmd->add_subcommand("list", "List keys (never their secrets)");
  CLI::App* keys_revoke = keys_cmd->add_subcommand("revoke", "Revoke a key at once");
  keys_revoke->add_option("ID", key_id, "Key id (from keys list)")->required();

  CLI::App* health_cmd = app.add_subcommand(
      "health", "grpc.health.v1 check of the server; exit 0 only when SERVING");

  RecommendFlags rec;
  CLI::App* rec_cmd =
      app.add_subcommand("recommend", "Rank registered models for a query dataset");
  rec_cmd->add_option("DATASET", rec.dataset,
                      "IDX (.gz ok), NPY, NPZ (x/y arrays), image folder (one sub-folder per "
                      "class; mixed sizes are resized) or CSV")
      ->required();
  rec_cmd->add_option("--labels", rec.labels, "Labels file for IDX (idx1) or NPY datasets");
  rec_cmd->add_option("--top", rec.top, "Number of results")->capture_default_str()
      ->check(CLI::Range(1, 1000));
  rec_cmd->add_option("--candidates", rec.candidates,
                      "Stage-1 candidates scored in stage 2 (default: as many as the latency "
                      "budget allows; all when they fit)")
      ->check(CLI::NonNegativeNumber);
  rec_cmd->add_option("--budget-ms", rec.budget_ms,
                      "Latency budget in ms that decides between scoring all compatible models "
                      "and stage-1 candidates (default: the server's, 5000)")
      ->check(CLI::NonNegativeNumber);
  std::vector<std::string> metric_names;
  for (const auto& [name, value] : MetricNames()) metric_names.push_back(name);
  rec_cmd->add_option("--metric", rec.metric,
                      "Stage-2 metric; fusion = rank fusion of logme, shrinkage_hscore and nce "
                      "(none: stage 1 only)")
      ->capture_default_str()
      ->check(CLI::IsMember(metric_names));
  rec_cmd->add_flag("--brute-force", rec.brute_force,
                    "Skip stage 1 and score every compatible model");
  rec_cmd->add_flag("--all-versions", rec.all_versions,
                    "List every version of a model name (default: its best-ranked version)");
  rec_cmd->add_option("--max-samples", rec.max_samples, "Use only the first N samples")
      ->check(CLI::NonNegativeNumber);
  rec_cmd->add_option("--task,--input-kind", rec.task,
                      "image, tabular, text or audio (default: from the data: a CSV/TSV with a "
                      "'text' column, JSON Lines, or a folder of .txt files per class is text; a "
                      "folder of .wav files per class is audio). With audio, an NPZ (samples "
                      "[N, T] and labels) or an NPY [N, T] (+ --labels) holds clips taken as "
                      "16 kHz mono: float32 in [-1, 1], or int16 PCM (scaled by 1/32768)")
      ->check(task_check);
  rec_cmd->add_option("--image-size", rec.image_size,
                      "H,W that an image folder's images are resized to (bilinear with "
                      "antialiasing, as torchvision's Resize; default: the most common size)");
  rec_cmd->footer(R"(
Examples:
  modeldock recommend query-images-idx3-ubyte.gz --labels query-labels-idx1-ubyte.gz
  modeldock recommend ./photos --top 10 --metric logme     # folder: one sub-folder per class
  modeldock recommend table.csv --task tabular --brute-force
  modeldock recommend ./speech --top 3                     # folder of .wav files per class
  modeldock recommend clips.npz --task audio               # samples [N, T] 16 kHz mono + labels
  modeldock recommend clips.npy --labels labels.npy --task audio
Without labels the server clusters the samples first (label_source says so).)");

  UpdateFlags update;
  CLI::App* update_cmd = app.add_subcommand(
      "update", "Edit a model's description, license or tags (no re-upload; providers: own)");
  update_cmd->add_option("MODEL", update.model, "Model id, NAME@VERSION, or NAME (its latest READY version)")->required();
  update_cmd->add_option("--description", update.description, "New description");
  update_cmd->add_option("--license", update.license, "New license");
  update_cmd->add_option("--tag", update.tags, "Tag (repeatable); the given tags replace all")
      ->allow_extra_args(false);
  update_cmd->add_flag("--clear-tags", update.clear_tags, "Remove every tag");
  int audit_limit = 100;
  CLI::App* audit_cmd = app.add_subcommand(
      "audit", "Who registered, updated, deleted what and when (admin)");
  audit_cmd->add_option("--limit", audit_limit, "At most N entries, newest first")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));

  ReportFlags report;
  CLI::App* report_cmd = app.add_subcommand(
      "report", "Tell the dock how a model fine-tuned on your dataset (it learns from outcomes)");
  report_cmd->add_option("DATASET", report.dataset, "The dataset, in any format recommend takes")
      ->required();
  report_cmd->add_option("--labels", report.labels, "Labels file for IDX (idx1) or NPY datasets");
  report_cmd->add_option("--model", report.model, "Model name or id you fine-tuned");
  report_cmd->add_option("--accuracy", report.accuracy,
                         "Accuracy it reached after fine-tuning, a fraction in [0, 1]");
  report_cmd->add_option("--outcomes", report.outcomes_file,
                         "CSV of 'model,accuracy' lines: several models on the same dataset");
  report_cmd->add_option("--source", report.source,
                         "finetune (you measured it) or import (bulk, e.g. a benchmark)")
      ->capture_default_str()
      ->check(CLI::IsMember({"finetune", "import"}));
  report_cmd->add_option("--max-samples", report.max_samples, "Use only the first N samples")
      ->check(CLI::NonNegativeNumber);
  report_cmd->add_option("--task", report.task, "image or tabular (default: from the data)")
      ->check(task_check);
  report_cmd->add_option("--image-size", report.image_size, "H,W for image folders");
  report_cmd->footer(R"(
Examples:
  modeldock report train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \
      --model fmnist-cnn --accuracy 0.93
  modeldock report task.npz --outcomes results.csv --source import
The dock keeps the dataset's class prototypes (mean reference-encoder embedding per class) and
what stage 1 said about each model, never the samples.)");

  std::string records_model;
  int records_limit = 100;
  CLI::App* records_cmd = app.add_subcommand("records", "List reported outcomes (newest first)");
  records_cmd->add_option("--model", records_model, "Only this model (name or id)");
  records_cmd->add_option("--limit", records_limit, "At most N records")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));

  bool train_wait = false;
  CLI::App* train_cmd = app.add_subcommand(
      "train", "Train a new ranker version from the records, in the background (admin)");
  train_cmd->add_flag("--wait", train_wait,
                      "Wait for it and print the held-out validation figures");
  train_cmd->footer(R"(
The new version is adopted (served) only if it ranks held-out reported queries better than the
serving version (cross-validation over queries). `modeldock alignments` lists versions.)");

  CLI::App* alignments_cmd =
      app.add_subcommand("alignments", "List trained ranker versions and which one serves");
  int64_t use_version = 0;
  CLI::App* alignments_use = alignments_cmd->add_subcommand(
      "use", "Serve VERSION from the next recommendation on (0 = untrained; admin)");
  alignments_use->add_option("VERSION", use_version, "Version number")->required()
      ->check(CLI::NonNegativeNumber);

  CLI::App* admin_cmd = app.add_subcommand("admin", "Operator commands (admin key needed)");
  bool scrub_wait = false;
  CLI::App* admin_scrub = admin_cmd->add_subcommand(
      "scrub", "Re-hash every stored model file and check stored probe features");
  admin_scrub->add_flag("--wait", scrub_wait,
                        "Wait for the scrub and print its report (exit 1 if anything is bad)");
  admin_scrub->footer(R"(
A bad file is restored from the server's --blob-mirror directories, or its models are marked
FAILED ("DATA_LOSS: stored file does not match its sha256 ..."); models failed that way whose
file is good again are probed again. The server also scrubs every --scrub-interval.)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  client::ClientOptions options;
  options.address = global.server;
  options.tls_ca = global.tls_ca;
  options.tls_cert = global.tls_cert;
  options.tls_key = global.tls_key;
  options.timeout = absl::Milliseconds(global.timeout_seconds * 1000);
  options.api_key = Env("MODELDOCK_API_KEY");
  if (!global.api_key_file.empty()) {
    std::ifstream in(global.api_key_file);
    if (!in) return UsageError("cannot read --api-key-file " + global.api_key_file);
    std::getline(in, options.api_key);
  }
  client::Client client(options);
  if (keys_create->parsed()) return RunKeysCreate(global, key_role, key_name, client);
  if (keys_list->parsed()) return RunKeysList(global, client);
  if (keys_revoke->parsed()) return RunKeysRevoke(global, key_id, client);
  if (register_cmd->parsed()) return RunRegister(global, reg, client);
  if (list_cmd->parsed()) return RunList(global, list, page_size_opt->count() > 0, client);
  if (show_cmd->parsed()) return RunShow(global, model_ref, client);
  if (rm_cmd->parsed()) return RunRemove(global, model_ref, rm_all_versions, client);
  if (watch_cmd->parsed()) return RunWatch(global, model_ref, client);
  if (health_cmd->parsed()) return RunHealth(global, client);
  if (rec_cmd->parsed()) return RunRecommend(global, rec, client);
  if (report_cmd->parsed()) return RunReport(global, report, client);
  if (update_cmd->parsed()) return RunUpdate(global, update, client);
  if (audit_cmd->parsed()) return RunAudit(global, audit_limit, client);
  if (records_cmd->parsed()) return RunRecords(global, records_model, records_limit, client);
  if (train_cmd->parsed()) return RunTrain(global, train_wait, client);
  if (admin_scrub->parsed()) return RunAdminScrub(global, scrub_wait, client);
  if (admin_cmd->parsed()) return UsageError("admin: give a command (scrub); see --help");
  if (alignments_use->parsed()) return RunAlignmentsUse(global, use_version, client);
  if (alignments_cmd->parsed()) return RunAlignments(global, client);
  return UsageError("no command given; see modeldock --help");
}

}  // namespace
}  // namespace modeldock::cli

// No argument a user can type may abort the CLI: whatever escaped Main is reported, with its own
// exit status.
int main(int argc, char** argv) {
  try {
    return modeldock::cli::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "modeldock: internal error: " << e.what() << " (please report it)\n";
    return modeldock::cli::kExitInternal;
  }
}
