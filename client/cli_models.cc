// The modeldock CLI: register, list, show, rm, watch, health, keys, update and audit.
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
// register


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

// The spec that `register` sends: --metadata's fields, then the flags over them, checked as
// the server would check them; returns a usage error message or "".
std::string RegisterSpec(const RegisterFlags& flags, v1::ModelSpec* spec_out) {
  v1::ModelSpec& spec = *spec_out;
  if (!flags.metadata.empty()) {
    if (std::string error = LoadMetadata(flags.metadata, &spec); !error.empty()) return error;
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
      return absl::StrCat("--input-shape '", flags.input_shape,
                          "' is not a comma list of positive sizes, e.g. 1,28,28");
    }
    spec.clear_input_shape();
    for (int64_t d : *shape) spec.add_input_shape(d);
  }
  if (!flags.labels.empty()) {
    auto labels = ReadLabels(flags.labels);
    if (!labels.ok()) return std::string(labels.status().message());
    spec.clear_class_labels();
    for (const auto& label : *labels) spec.add_class_labels(label);
  }
  if (spec.name().empty()) return "register needs --name (or \"name\" in --metadata)";
  if (spec.task() == v1::TASK_KIND_TEXT_CLASSIFICATION) {
    if (!spec.input_shape().empty()) return "a text model takes strings: give no --input-shape";
  } else if (spec.input_shape().empty()) {
    return "register needs --input-shape, e.g. 1,28,28 (or \"input_shape\" in --metadata), "
           "or --input-kind text for a text model";
  }
  if (flags.feature_extractor) spec.set_kind(v1::MODEL_KIND_FEATURE_EXTRACTOR);
  const bool extractor = spec.kind() == v1::MODEL_KIND_FEATURE_EXTRACTOR;
  if (extractor && !spec.class_labels().empty()) {
    return "a feature extractor has no --labels (its forward returns features)";
  }
  if (!extractor && spec.class_labels().empty()) {
    return "register needs --labels (or \"class_labels\" in --metadata), or "
           "--feature-extractor for a headless model";
  }
  return "";
}

// Uploads FILE (with a progress bar) or registers --remote; kExitOk with `response` filled, or
// the exit code of the error it printed.
int SendRegistration(const RegisterFlags& flags, v1::ModelSpec spec, client::Client& client,
                     v1::RegisterModelResponse* response) {
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
    *response->mutable_model() = *registered;
    return kExitOk;
  }
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
  *response = *std::move(registered);
  return kExitOk;
}

// The registered model's final line: its state, features and layers, or why probing failed.
void PrintRegisteredModel(const v1::Model& model) {
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

int RunRegister(const GlobalFlags& global, const RegisterFlags& flags, client::Client& client) {
  v1::ModelSpec spec;
  if (std::string error = RegisterSpec(flags, &spec); !error.empty()) return UsageError(error);
  v1::RegisterModelResponse registered;
  if (int code = SendRegistration(flags, spec, client, &registered); code != kExitOk) return code;
  v1::Model model = registered.model();
  if (!global.json) {
    std::cout << "registered " << model.spec().name() << " as " << model.id()
              << (registered.deduplicated() ? " (same bytes already stored, kept once)" : "")
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
    PrintJson(json{{"model", ModelToJson(model)}, {"deduplicated", registered.deduplicated()}});
  } else {
    PrintRegisteredModel(model);
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

int RunNearest(const GlobalFlags& global, const std::string& model_ref, int k,
               client::Client& client) {
  auto nearest = client.Nearest(model_ref, k);
  if (!nearest.ok()) return RpcError(absl::StrCat("nearest '", model_ref, "'"), nearest.status());
  if (global.json) {
    PrintJson(client::NearestToJson(model_ref, *nearest));
    return kExitOk;
  }
  if (nearest->models().empty()) {
    std::cout << "no other READY model in " << model_ref << "'s knowledge space\n";
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"RANK", "SIMILARITY", "ID", "NAME", "VERSION", "TASK", "CLASSES"}};
  int rank = 0;
  for (const v1::NearestModel& n : nearest->models()) {
    const v1::Model& m = n.model();
    rows.push_back({std::to_string(++rank), absl::StrFormat("%.4f", n.similarity()), m.id(),
                    m.spec().name(), m.spec().version(), TaskShortName(m.spec().task()),
                    absl::StrCat(m.spec().class_labels_size())});
  }
  PrintTable(rows);
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
// update, audit

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
    PrintJson(client::AuditLogToJson(*log));
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

}  // namespace modeldock::cli
