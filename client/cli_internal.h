// Internal to the modeldock CLI (client/cli_*.cc): the flags of each command, the helpers the
// commands share (errors, tables, JSON), and one Run* function per command. cli_main.cc parses
// the command line (CLI11) and calls them.
#ifndef MODELDOCK_CLIENT_CLI_INTERNAL_H_
#define MODELDOCK_CLIENT_CLI_INTERNAL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/client.h"
#include "client/json_output.h"

namespace CLI {
class App;
}  // namespace CLI

namespace modeldock::cli {

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
using client::IsoTime;
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

struct ListFlags {
  std::string name_contains;
  std::string task;
  std::string input_shape;
  std::string tag;
  std::string state;
  int page_size = 0;
};

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

struct UpdateFlags {
  std::string model;
  std::optional<std::string> description;
  std::optional<std::string> license;
  std::vector<std::string> tags;
  bool clear_tags = false;
};

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

struct TuneFlags {
  std::string dataset;
  std::string labels;
  int top = 3;
  double budget_s = 120;
  uint64_t seed = 0;
  std::string out;
  int max_epochs = 0;
  int patience = 0;
  double learning_rate = 0;
  int64_t max_samples = 0;
  std::string image_size;
};

// Shared helpers (cli_output.cc).
std::string Env(const char* name);
int UsageError(const std::string& message);
int RpcError(const std::string& what, const absl::Status& status);
std::string FormatShape(const google::protobuf::RepeatedField<int64_t>& shape);
std::string FormatBytes(int64_t bytes);
std::string LayersText(const google::protobuf::RepeatedPtrField<v1::ModelLayer>& layers);
void PrintJson(const json& document);
void PrintTable(const std::vector<std::vector<std::string>>& rows);
void PrintModel(const v1::Model& model);
const char* TaskShortName(v1::TaskKind task);

// The commands: each returns the process's exit status.
int RunRegister(const GlobalFlags& global, const RegisterFlags& flags, client::Client& client);
int RunList(const GlobalFlags& global, const ListFlags& flags, bool one_page,
            client::Client& client);
int RunShow(const GlobalFlags& global, const std::string& model_ref, client::Client& client);
int RunNearest(const GlobalFlags& global, const std::string& model_ref, int k,
               client::Client& client);
int RunRemove(const GlobalFlags& global, const std::string& model_ref, bool all_versions,
              client::Client& client);
int RunWatch(const GlobalFlags& global, const std::string& model_ref, client::Client& client);
int RunHealth(const GlobalFlags& global, client::Client& client);
int RunKeysCreate(const GlobalFlags& global, const std::string& role, const std::string& name,
                  client::Client& client);
int RunKeysList(const GlobalFlags& global, client::Client& client);
int RunKeysRevoke(const GlobalFlags& global, const std::string& id, client::Client& client);
int RunRecommend(const GlobalFlags& global, const RecommendFlags& flags, client::Client& client);
int RunUpdate(const GlobalFlags& global, const UpdateFlags& flags, client::Client& client);
int RunAudit(const GlobalFlags& global, int limit, client::Client& client);
int RunReport(const GlobalFlags& global, const ReportFlags& flags, client::Client& client);
// tune (cli_tune.cc): the subcommand and its run.
CLI::App* AddTuneCommand(CLI::App& app, TuneFlags& flags);
int RunTune(const GlobalFlags& global, const TuneFlags& flags, client::Client& client);
// Dataset loading shared by recommend, report and tune (cli_recommend.cc).
std::optional<Dataset> LoadQueryDataset(const GlobalFlags& global, const std::string& path,
                                        const std::string& labels, int64_t max_samples,
                                        const std::string& image_size, const std::string& task,
                                        int* exit_code);
int RunRecords(const GlobalFlags& global, const std::string& model, int limit,
               client::Client& client);
int RunAdminScrub(const GlobalFlags& global, bool wait, client::Client& client);
int RunTrain(const GlobalFlags& global, bool wait, client::Client& client);
int RunAlignments(const GlobalFlags& global, client::Client& client);
int RunAlignmentsUse(const GlobalFlags& global, int64_t version, client::Client& client);

}  // namespace modeldock::cli

#endif  // MODELDOCK_CLIENT_CLI_INTERNAL_H_
