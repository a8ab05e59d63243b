// modeldock: command-line client of a modeldock server. The contract (commands, flags, JSON
// shapes, exit codes) is docs/CLI.md; keep the two in step.
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

// Every command's flags and the CLI11 command that fills them (none owns anything).
struct CommandLine {
  GlobalFlags global;
  RegisterFlags reg;
  ListFlags list;
  std::string model_ref;
  bool rm_all_versions = false;
  int nearest_k = 5;
  std::string key_role = "consumer", key_name, key_id;
  RecommendFlags rec;
  UpdateFlags update;
  int audit_limit = 100;
  ReportFlags report;
  TuneFlags tune;
  std::string records_model;
  int records_limit = 100;
  bool train_wait = false;
  int64_t use_version = 0;
  bool scrub_wait = false;

  CLI::App *register_cmd, *list_cmd, *show_cmd, *rm_cmd, *nearest_cmd, *watch_cmd, *keys_create,
      *keys_list, *keys_revoke, *health_cmd, *rec_cmd, *update_cmd, *audit_cmd, *report_cmd,
      *records_cmd, *train_cmd, *alignments_cmd, *alignments_use, *admin_cmd, *admin_scrub,
      *tune_cmd;
  CLI::Option* page_size_opt;
};

// The CLI's own flags, before or after the command (--server, --json, TLS, key, timeout).
void AddGlobalOptions(CLI::App& app, GlobalFlags& global) {
  const char* env_server = std::getenv("MODELDOCK_SERVER");
  global.server = env_server != nullptr && *env_server ? env_server : "127.0.0.1:50051";
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
}

CLI::App* AddRegisterCommand(CLI::App& app, RegisterFlags& reg) {
  const auto task_check = CLI::IsMember({"image", "tabular", "text", "audio"});
  CLI::App* register_cmd = app.add_subcommand(
      "register", "Upload a TorchScript model and wait until it is READY (or FAILED)");
  register_cmd->add_option("FILE", reg.file, "TorchScript file (torch.jit.save); none with --remote");
  register_cmd->add_option("--remote", reg.remote,
                           "A KServe v2 inference server (Triton, KServe, MLServer, another dock) "
                           "that keeps the model, no upload: HOST:PORT over gRPC (a dock's "
                           "--kserve-listen) or http[s]://HOST:PORT[/PATH] over HTTP/REST (a "
                           "dock's --http-listen)");
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
  modeldock register --remote http://mlserver:8080 --remote-model resnet --metadata resnet.json
The file must be TorchScript; forward(x) gets [N, ...input shape] floats in [0, 1] and returns
[N, number of labels] logits; an optional embed(x) returns penultimate features.
Exit status 1 also when the model was admitted but probing FAILED.)");

  return register_cmd;
}

CLI::App* AddListCommand(CLI::App& app, ListFlags& list, CLI::Option** page_size_opt) {
  const auto task_check = CLI::IsMember({"image", "tabular", "text", "audio"});
  CLI::App* list_cmd = app.add_subcommand("list", "List registered models (all pages)");
  list_cmd->add_option("--name-contains", list.name_contains, "Name substring");
  list_cmd->add_option("--task,--input-kind", list.task, "image, tabular or text")->check(task_check);
  list_cmd->add_option("--input-shape", list.input_shape, "Exact input shape, e.g. 1,28,28");
  list_cmd->add_option("--tag", list.tag, "Models carrying this tag");
  list_cmd->add_option("--state", list.state, "ready, probing, pending or failed")
      ->check(CLI::IsMember({"ready", "probing", "pending", "failed"}));
  *page_size_opt =
      list_cmd->add_option("--page-size", list.page_size, "One page of at most N models")
          ->check(CLI::Range(1, 1000));
  list_cmd->footer("\nExamples:\n  modeldock list\n  modeldock list --state ready --tag fashion\n"
                   "  modeldock --json list --name-contains cnn");

  return list_cmd;
}

// show, nearest, rm and watch: one model each.
void AddModelCommands(CLI::App& app, CommandLine& cl) {
  cl.show_cmd = app.add_subcommand("show", "Show one model, all fields");
  cl.show_cmd->add_option("MODEL", cl.model_ref, "Model id, NAME@VERSION, or NAME (its latest READY version)")->required();
  cl.nearest_cmd = app.add_subcommand(
      "nearest", "A READY model's nearest models in its knowledge space, best first");
  cl.nearest_cmd
      ->add_option("MODEL", cl.model_ref,
                   "Model id, NAME@VERSION, or NAME (its latest READY version)")
      ->required();
  cl.nearest_cmd->add_option("--k", cl.nearest_k, "At most K models")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  cl.nearest_cmd->footer(
      "\nSimilarity: the inner product of the two models' knowledge vectors (stage 1's);\n"
      "only models of the same knowledge space (input kind) are compared.\n"
      "Examples:\n  modeldock nearest fmnist-tops-cnn\n  modeldock --json nearest m-0123 --k 10");
  cl.rm_cmd = app.add_subcommand("rm", "Delete a model version (its file too if unshared)");
  cl.rm_cmd->add_option("MODEL", cl.model_ref,
                     "Model id, NAME@VERSION, or NAME (when it has one version)")
      ->required();
  cl.rm_cmd->add_flag("--all-versions", cl.rm_all_versions, "Delete every version of NAME");
  cl.watch_cmd =
      app.add_subcommand("watch", "Print a model's state changes until READY or FAILED");
  cl.watch_cmd->add_option("MODEL", cl.model_ref, "Model id, NAME@VERSION, or NAME (its latest READY version)")->required();
}

void AddKeysCommands(CLI::App& app, CommandLine& cl) {
  CLI::App* keys_cmd = app.add_subcommand("keys", "Manage API keys (admin key needed)");
  keys_cmd->require_subcommand(1);
  cl.keys_create = keys_cmd->add_subcommand("create", "Create a key; prints it once");
  cl.keys_create->add_option("--role", cl.key_role, "consumer, provider or admin")
      ->capture_default_str()
      ->check(CLI::IsMember({"consumer", "provider", "admin"}));
  cl.keys_create->add_option("--name", cl.key_name, "Who holds it (a label)");
  cl.keys_list = keys_cmd->add_subcommand("list", "List keys (never their secrets)");
  cl.keys_revoke = keys_cmd->add_subcommand("revoke", "Revoke a key at once");
  cl.keys_revoke->add_option("ID", cl.key_id, "Key id (from keys list)")->required();

}

CLI::App* AddRecommendCommand(CLI::App& app, RecommendFlags& rec) {
  const auto task_check = CLI::IsMember({"image", "tabular", "text", "audio"});
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
                      "Latency budget of the call in ms: within what encoding and stage 1 "
                      "leave of it, all compatible models are scored when that fits, else all on "
                      "a class-stratified part of the samples, else the stage-1 candidates that "
                      "fit (default: the server's, 5000)")
      ->check(CLI::NonNegativeNumber);
  std::vector<std::string> metric_names;
  for (const auto& [name, value] : MetricNames()) metric_names.push_back(name);
  rec_cmd->add_option("--metric", rec.metric,
                      "Stage-2 metric; fusion = rank fusion of logme and shrinkage_hscore on each "
                      "model's top 32 principal components (none: stage 1 only)")
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

  return rec_cmd;
}

// update and audit: the registry's metadata edits and their log.
void AddUpdateAndAuditCommands(CLI::App& app, CommandLine& cl) {
  cl.update_cmd = app.add_subcommand(
      "update", "Edit a model's description, license or tags (no re-upload; providers: own)");
  cl.update_cmd->add_option("MODEL", cl.update.model, "Model id, NAME@VERSION, or NAME (its latest READY version)")->required();
  cl.update_cmd->add_option("--description", cl.update.description, "New description");
  cl.update_cmd->add_option("--license", cl.update.license, "New license");
  cl.update_cmd->add_option("--tag", cl.update.tags, "Tag (repeatable); the given tags replace all")
      ->allow_extra_args(false);
  cl.update_cmd->add_flag("--clear-tags", cl.update.clear_tags, "Remove every tag");
  cl.audit_cmd = app.add_subcommand(
      "audit", "Who registered, updated, deleted what and when (admin)");
  cl.audit_cmd->add_option("--limit", cl.audit_limit, "At most N entries, newest first")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));

}

CLI::App* AddReportCommand(CLI::App& app, ReportFlags& report) {
  const auto task_check = CLI::IsMember({"image", "tabular", "text", "audio"});
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

  return report_cmd;
}

// records, train and alignments: the learning loop.
void AddLearningCommands(CLI::App& app, CommandLine& cl) {
  cl.records_cmd = app.add_subcommand("records", "List reported outcomes (newest first)");
  cl.records_cmd->add_option("--model", cl.records_model, "Only this model (name or id)");
  cl.records_cmd->add_option("--limit", cl.records_limit, "At most N records")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));


  cl.train_cmd = app.add_subcommand(
      "train", "Train a new ranker version from the records, in the background (admin)");
  cl.train_cmd->add_flag("--wait", cl.train_wait,
                      "Wait for it and print the held-out validation figures");
  cl.train_cmd->footer(R"(
The new version is adopted (served) only if it ranks held-out reported queries better than the
serving version (cross-validation over queries). `modeldock alignments` lists versions.)");


  cl.alignments_cmd =
      app.add_subcommand("alignments", "List trained ranker versions and which one serves");
  cl.alignments_use = cl.alignments_cmd->add_subcommand(
      "use", "Serve VERSION from the next recommendation on (0 = untrained; admin)");
  cl.alignments_use->add_option("VERSION", cl.use_version, "Version number")->required()
      ->check(CLI::NonNegativeNumber);

}

void AddAdminCommand(CLI::App& app, CommandLine& cl) {
  cl.admin_cmd = app.add_subcommand("admin", "Operator commands (admin key needed)");
  cl.admin_scrub = cl.admin_cmd->add_subcommand(
      "scrub", "Re-hash every stored model file and check stored probe features");
  cl.admin_scrub->add_flag("--wait", cl.scrub_wait,
                        "Wait for the scrub and print its report (exit 1 if anything is bad)");
  cl.admin_scrub->footer(R"(
A bad file is restored from the server's --blob-mirror directories, or its models are marked
FAILED ("DATA_LOSS: stored file does not match its sha256 ..."); models failed that way whose
file is good again are probed again. The server also scrubs every --scrub-interval.)");

}

// The connection the global flags describe; a usage error's exit status if the key file cannot
// be read.
std::optional<int> MakeClientOptions(const GlobalFlags& global, client::ClientOptions* options) {
  options->address = global.server;
  options->tls_ca = global.tls_ca;
  options->tls_cert = global.tls_cert;
  options->tls_key = global.tls_key;
  options->timeout = absl::Milliseconds(global.timeout_seconds * 1000);
  options->api_key = Env("MODELDOCK_API_KEY");
  if (!global.api_key_file.empty()) {
    std::ifstream in(global.api_key_file);
    if (!in) return UsageError("cannot read --api-key-file " + global.api_key_file);
    std::getline(in, options->api_key);
  }
  return std::nullopt;
}

// Runs the command that was parsed.
int Dispatch(const CommandLine& cl, client::Client& client) {
  const GlobalFlags& global = cl.global;
  if (cl.keys_create->parsed()) return RunKeysCreate(global, cl.key_role, cl.key_name, client);
  if (cl.keys_list->parsed()) return RunKeysList(global, client);
  if (cl.keys_revoke->parsed()) return RunKeysRevoke(global, cl.key_id, client);
  if (cl.register_cmd->parsed()) return RunRegister(global, cl.reg, client);
  if (cl.list_cmd->parsed()) return RunList(global, cl.list, cl.page_size_opt->count() > 0, client);
  if (cl.show_cmd->parsed()) return RunShow(global, cl.model_ref, client);
  if (cl.nearest_cmd->parsed()) return RunNearest(global, cl.model_ref, cl.nearest_k, client);
  if (cl.rm_cmd->parsed()) return RunRemove(global, cl.model_ref, cl.rm_all_versions, client);
  if (cl.watch_cmd->parsed()) return RunWatch(global, cl.model_ref, client);
  if (cl.health_cmd->parsed()) return RunHealth(global, client);
  if (cl.rec_cmd->parsed()) return RunRecommend(global, cl.rec, client);
  if (cl.report_cmd->parsed()) return RunReport(global, cl.report, client);
  if (cl.tune_cmd->parsed()) return RunTune(global, cl.tune, client);
  if (cl.update_cmd->parsed()) return RunUpdate(global, cl.update, client);
  if (cl.audit_cmd->parsed()) return RunAudit(global, cl.audit_limit, client);
  if (cl.records_cmd->parsed()) return RunRecords(global, cl.records_model, cl.records_limit, client);
  if (cl.train_cmd->parsed()) return RunTrain(global, cl.train_wait, client);
  if (cl.admin_scrub->parsed()) return RunAdminScrub(global, cl.scrub_wait, client);
  if (cl.admin_cmd->parsed()) return UsageError("admin: give a command (scrub); see --help");
  if (cl.alignments_use->parsed()) return RunAlignmentsUse(global, cl.use_version, client);
  if (cl.alignments_cmd->parsed()) return RunAlignments(global, client);
  return UsageError("no command given; see modeldock --help");
}

int Main(int argc, char** argv) {
  CommandLine cl;
  CLI::App app("modeldock: register TorchScript models in a modeldock server and ask it which "
               "models transfer best to your dataset.",
               "modeldock");
  AddGlobalOptions(app, cl.global);
  cl.register_cmd = AddRegisterCommand(app, cl.reg);
  cl.list_cmd = AddListCommand(app, cl.list, &cl.page_size_opt);
  AddModelCommands(app, cl);
  AddKeysCommands(app, cl);
  cl.health_cmd = app.add_subcommand(
      "health", "grpc.health.v1 check of the server; exit 0 only when SERVING");
  cl.rec_cmd = AddRecommendCommand(app, cl.rec);
  AddUpdateAndAuditCommands(app, cl);
  cl.report_cmd = AddReportCommand(app, cl.report);
  cl.tune_cmd = AddTuneCommand(app, cl.tune);
  AddLearningCommands(app, cl);
  AddAdminCommand(app, cl);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  client::ClientOptions options;
  if (std::optional<int> usage = MakeClientOptions(cl.global, &options)) return *usage;
  client::Client client(options);
  return Dispatch(cl, client);
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
