#include "server/server_options.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <type_traits>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "dock/types.h"
#include "nlohmann/json.hpp"
#include "server/grpc_server.h"

#ifndef MODELDOCK_DEFAULT_ASSET_DIR
#define MODELDOCK_DEFAULT_ASSET_DIR ""
#endif

namespace modeldock::server {
namespace {

using C = ServerConfig;
using Check = ServerOption::Check;

// The table. Help texts are --help's; a new option is one row here (and its use in main).
const ServerOption kOptions[] = {
    {"listen", &C::listen, "MODELDOCK_LISTEN", "HOST:PORT to serve on"},
    {"data-dir", &C::data_dir, "MODELDOCK_DATA_DIR",
     "Directory for the model store, metadata and index"},
    {"metadata-url", &C::metadata_url, nullptr,
     "Metadata database: postgresql://USER@HOST:PORT/DB (libpq URI; password from ~/.pgpass or "
     "PGPASSWORD) instead of SQLite in --data-dir; several servers (replicas) may share one "
     "database (with --blob-dir)"},
    {"blob-dir", &C::blob_dir, nullptr,
     "Directory for model files (DIR/blobs, uploads in DIR/tmp) instead of --data-dir; "
     "replicas on one --metadata-url share one, e.g. an NFS mount"},
    {"blob-mirror", &C::blob_mirrors, nullptr,
     "Directory holding good copies of model files (another replica's blob directory, a "
     "backup; DIR/blobs/ab/SHA256 or flat): a file that fails its SHA-256 check is restored "
     "from it instead of failing its model (repeatable)"},
    {"scrub-interval", &C::scrub_interval, nullptr,
     "How often every model file is re-hashed against its SHA-256 (e.g. 24h, 30m; 0 = only "
     "on `modeldock admin scrub`)"},
    {"scrub-rate-mb-s", &C::scrub_rate_mb_s, nullptr,
     "Reading speed of a scrub in MB/s (0 = unlimited)", false, Check::kNonNegative},
    {"probe-lease-s", &C::probe_lease_s, nullptr,
     "With --metadata-url: seconds a replica's claim on a probing job lasts unless renewed; a "
     "replica that dies mid-probe hands its jobs to the others after this"},
    {"asset-dir", &C::asset_dir, nullptr,
     "Directory written by scripts/make_assets.py (probe set, reference encoder)"},
    {"probe-cache-dir", &C::probe_cache_dir, "MODELDOCK_PROBE_CACHE_DIR",
     "Directory where each knowledge space keeps the reference encoder's embeddings of its "
     "probe set (checked by SHA-256), so a restart does not compute them again; may be shared "
     "by servers on the same assets (default: DATA_DIR/cache)"},
    {"max-model-mb", &C::max_model_mb, nullptr, "Largest model file accepted, in MiB"},
    {"index-factory", &C::index_factory, nullptr,
     "FAISS factory string for stage 1 (Flat, HNSW32, IVF256,Flat)"},
    {"probe-set", &C::probe_set, nullptr,
     "Probe set NPY [P,C,H,W] of the first (grey) knowledge space, or NAME=PATH[,NAME=PATH] "
     "for named spaces of the asset dir's spaces.json (default: the asset dir's)"},
    {"reference-encoder", &C::reference_encoder, nullptr,
     "Reference encoder TorchScript of the first knowledge space, or NAME=PATH[,...] "
     "(default: the asset dir's)"},
    {"knowledge-encoder", &C::knowledge_encoder, nullptr,
     "Know2Vec alignment TorchScript from scripts/know2vec_alignment.py (default: untrained)"},
    {"probe-workers", &C::probe_workers, nullptr,
     "New models probed at once (each in a model worker)"},
    {"torch-threads", &C::torch_threads, nullptr,
     "LibTorch threads of the server (reference encoder)"},
    {"latency-budget-ms", &C::latency_budget_ms, nullptr,
     "Default latency budget of a recommendation call: within what encoding the query and "
     "stage 1 leave of it, stage 2 scores every compatible model when that fits, else every one on a class-stratified part of the query samples (at least "
     "max(64, 10 per class)), else the stage-1 candidates that fit"},
    {"stage2-workers", &C::stage2_workers, nullptr,
     "Stage-2 candidates run at once (0 = one per model worker)"},
    {"learn-from-recommendations", &C::learn_from_recommendations, nullptr,
     "Keep, for every labelled recommendation, the query's class prototypes and the stage-2 "
     "standing of each scored model as weak outcome records (source stage2) that `modeldock "
     "train` learns priors from (off: the dock keeps nothing of a recommendation)"},
    {"no-report-standings", &C::no_report_standings, nullptr,
     "Do not score, after a report of several image models, those models' stage-2 standings on "
     "the report's samples (weak records on which training fits the outcome prior's stage-2 "
     "weight; on by default)"},
    {"remote-tls", &C::remote_tls, nullptr,
     "Call remote models' KServe v2 servers over TLS (system roots unless --remote-tls-ca); "
     "default plaintext"},
    {"remote-tls-ca", &C::remote_tls_ca, nullptr,
     "PEM roots that remote KServe servers' certificates must chain to (implies --remote-tls)"},
    {"remote-tls-cert", &C::remote_tls_cert, nullptr,
     "PEM client certificate this dock presents to remote KServe servers (mutual TLS; with "
     "--remote-tls-key)"},
    {"remote-tls-key", &C::remote_tls_key, nullptr, "PEM private key of --remote-tls-cert"},
    {"remote-credentials", &C::remote_credentials, nullptr,
     "JSON file of per-endpoint credentials towards remote KServe servers: {\"host:port\": "
     "{\"tls\", \"ca\", \"cert\", \"key\", \"bearer_token_file\"}}; listed endpoints use theirs "
     "instead of the --remote-tls* setting (README, \"Remote models\")"},
    {"model-cache-mb", &C::model_cache_mb, nullptr,
     "Memory for models kept loaded in the workers (MiB, shared out among them)"},
    // Uploaded models run only in modeldock-worker processes, under these limits.
    {"worker-binary", &C::worker_binary, nullptr,
     "modeldock-worker executable (default: beside this one)", true},
    {"workers", &C::workers, nullptr,
     "Worker processes running uploaded models (0 = one per core)", true},
    {"worker-threads", &C::worker_threads, nullptr, "LibTorch threads in each worker", true},
    {"worker-memory-mb", &C::worker_memory_mb, nullptr,
     "Memory each worker may use (MiB; 0 = none): cgroup v2 memory.max where the server's "
     "cgroup allows it, else resident memory polled and the worker killed past it (the job is "
     "retried at half the batch); address space capped at 4x, at least +4 GiB, as a backstop",
     true},
    {"admission-timeout-s", &C::admission_timeout_s, nullptr,
     "Wall-time limit of a model's admission checks", true},
    {"probe-timeout-s", &C::probe_timeout_s, nullptr,
     "Wall-time limit of one probing job (a chunk of the probe set)", true},
    {"probe-budget-s", &C::probe_budget_s, nullptr,
     "Probing budget of one model: it runs on its space's probe set in the set's fixed order "
     "and stops after the chunk that would pass this many seconds (at least 256 samples); 0 = "
     "the whole set",
     true},
    {"run-timeout-s", &C::run_timeout_s, nullptr,
     "Wall-time limit of one stage-2 run of a model", true},
    {"max-waiting-jobs", &C::max_waiting_jobs, nullptr,
     "Jobs that may wait for a worker before calls get RESOURCE_EXHAUSTED", true},
    {"max-classes", &C::max_classes, nullptr, "Largest class count K a model may declare", true},
    {"max-feature-dim", &C::max_feature_dim, nullptr, "Widest embed(x) output D accepted", true},
    {"max-layers", &C::max_layers, nullptr,
     "Most layers a model may export through embed_layers(x) (each is scored in stage 2; 1..64)",
     true},
    {"max-output-bytes-per-sample", &C::max_output_bytes_per_sample, nullptr,
     "Largest (K + D) x 4 bytes per sample accepted", true},
    {"no-network-isolation", &C::no_network_isolation, nullptr,
     "Do not give workers their own (empty) network namespace", true},
    {"no-seccomp", &C::no_seccomp, nullptr, "Do not install the workers' system-call filter",
     true},
    {"max-rpc-threads", &C::max_rpc_threads, nullptr,
     "Threads serving calls; past them new calls get RESOURCE_EXHAUSTED"},
    {"tls-cert", &C::tls_cert, "MODELDOCK_TLS_CERT",
     "Server certificate chain PEM: serve TLS (with --tls-key)"},
    {"tls-key", &C::tls_key, "MODELDOCK_TLS_KEY", "Server private key PEM"},
    {"tls-client-ca", &C::tls_client_ca, nullptr,
     "CA PEM that client certificates must be signed by (mutual TLS; needs --tls-cert)"},
    {"auth", &C::auth, nullptr,
     "Require an API key on every call (roles admin, provider, consumer); the first start "
     "writes an admin key to DATA_DIR/admin.key"},
    {"insecure-open", &C::insecure_open, nullptr,
     "Serve without --auth on a non-loopback address (anyone who can reach it may register, "
     "delete and recommend)"},
    {"metrics-listen", &C::metrics_listen, nullptr,
     "HOST:PORT serving only Prometheus metrics at /metrics (port 0: any free one; off by "
     "default); --http-listen serves them too"},
    {"http-listen", &C::http_listen, nullptr,
     "HOST:PORT serving the REST/JSON API (/v1), /metrics and health over HTTP (same TLS, keys "
     "and roles; off by default, e.g. 127.0.0.1:8000)"},
    {"http-threads", &C::http_threads, nullptr,
     "HTTP connections served at once (4x as many may wait)", false, Check::kRange, 1, 1024},
    {"drain-delay-s", &C::drain_delay_s, nullptr,
     "At SIGTERM/SIGINT: seconds to keep serving while answering not ready (so load balancers "
     "stop sending), before the listeners close",
     false, Check::kRange, 0, 600},
    {"kserve-listen", &C::kserve_listen, nullptr,
     "HOST:PORT serving the registered models over the KServe v2 inference protocol "
     "(inference.GRPCInferenceService; same TLS and keys; off by default)"},
    {"log-level", &C::log_level, nullptr, "trace, debug, info, warn, error or off", false,
     Check::kLogLevel},
};

std::string Text(const std::string& value) { return value; }
std::string Text(double value) { return absl::StrCat(value); }
std::string Text(int value) { return absl::StrCat(value); }
std::string Text(int64_t value) { return absl::StrCat(value); }
std::string Text(bool value) { return value ? "true" : "false"; }
std::string Text(const std::vector<std::string>& value) { return absl::StrJoin(value, ","); }

// Reads `key` (or its underscore spelling) from the config object into `out` if present.
template <typename T>
void ReadKey(const nlohmann::json& config, std::string key, T* out) {
  if (config.contains(key)) {
    *out = config.at(key).get<T>();
    return;
  }
  for (char& c : key) {
    if (c == '-') c = '_';
  }
  if (config.contains(key)) *out = config.at(key).get<T>();
}

CLI::Option* AddOption(CLI::App& app, const ServerOption& row, ServerConfig* flags) {
  const std::string flag = absl::StrCat("--", row.name);
  return std::visit(
      [&](auto field) -> CLI::Option* {
        using T = std::decay_t<decltype(flags->*field)>;
        if constexpr (std::is_same_v<T, bool>) {
          return app.add_flag(flag, flags->*field, row.help);
        } else {
          return app.add_option(flag, flags->*field, row.help);
        }
      },
      row.field);
}

}  // namespace

std::string DefaultAssetDir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path installed =
        exe.parent_path().parent_path() / "share" / "modeldock" / "assets";
    if (std::filesystem::exists(installed / "MANIFEST.json", ec)) return installed.string();
  }
  return MODELDOCK_DEFAULT_ASSET_DIR;
}

ServerConfig::ServerConfig() {
  // The engine's defaults are dock::DockOptions'; the server states them in its own units.
  const dock::DockOptions engine;
  const dock::SandboxOptions& box = engine.sandbox;
  probe_lease_s = absl::ToDoubleSeconds(engine.probe_lease);
  scrub_interval = absl::FormatDuration(engine.scrub_interval);
  scrub_rate_mb_s = engine.scrub_mb_per_second;
  asset_dir = DefaultAssetDir();
  max_model_mb = engine.max_model_bytes >> 20;
  index_factory = engine.index_factory;
  probe_workers = engine.probe_workers;
  torch_threads = engine.torch_threads;
  latency_budget_ms = engine.latency_budget_millis;
  stage2_workers = engine.stage2_workers;
  model_cache_mb = engine.model_cache_bytes >> 20;
  workers = box.workers;
  worker_threads = box.torch_threads;
  worker_memory_mb = box.memory_limit_bytes >> 20;
  admission_timeout_s = absl::ToDoubleSeconds(box.admission_time_limit);
  probe_timeout_s = absl::ToDoubleSeconds(box.probe_time_limit);
  probe_budget_s = absl::ToDoubleSeconds(engine.probe_budget);
  run_timeout_s = absl::ToDoubleSeconds(box.run_time_limit);
  max_waiting_jobs = box.max_waiting_jobs;
  max_classes = box.max_classes;
  max_feature_dim = box.max_feature_dim;
  max_output_bytes_per_sample = box.max_output_bytes_per_sample;
  max_layers = box.max_layers;
  max_rpc_threads = kDefaultMaxRpcThreads;
}

absl::Span<const ServerOption> ServerOptions() { return kOptions; }

std::string DefaultText(const ServerOption& option) {
  const ServerConfig defaults;
  return std::visit(
      [&](auto field) -> std::string {
        using T = std::decay_t<decltype(defaults.*field)>;
        if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::vector<std::string>>) {
          return "";
        } else {
          return Text(defaults.*field);
        }
      },
      option.field);
}

std::string ValueText(const ServerOption& option, const ServerConfig& config) {
  return std::visit([&](auto field) { return Text(config.*field); }, option.field);
}

std::vector<CLI::Option*> AddServerOptions(CLI::App& app, ServerConfig* flags) {
  std::vector<CLI::Option*> added;
  for (const ServerOption& row : kOptions) {
    CLI::Option* option = AddOption(app, row, flags);
    if (const std::string shown = DefaultText(row); !shown.empty()) option->default_str(shown);
    switch (row.check) {
      case Check::kNone: break;
      case Check::kNonNegative: option->check(CLI::NonNegativeNumber); break;
      case Check::kRange: option->check(CLI::Range(row.min, row.max)); break;
      case Check::kLogLevel:
        option->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
        break;
    }
    if (row.sandbox_group) option->group("Model workers (sandbox)");
    added.push_back(option);
  }
  return added;
}

std::string LoadConfigFile(const std::string& path, ServerConfig* config) {
  std::ifstream in(path);
  if (!in) return "cannot open config file " + path;
  try {
    nlohmann::json json = nlohmann::json::parse(in);
    if (!json.is_object()) return "config file " + path + " must hold a JSON object";
    for (const ServerOption& row : kOptions) {
      std::visit([&](auto field) { ReadKey(json, row.name, &(config->*field)); }, row.field);
    }
  } catch (const std::exception& e) {
    return "config file " + path + ": " + e.what();
  }
  return "";
}

void ApplyEnvironment(ServerConfig* config) {
  for (const ServerOption& row : kOptions) {
    if (row.env == nullptr) continue;
    const char* value = std::getenv(row.env);
    if (value == nullptr || *value == '\0') continue;
    // Only text options have environment variables.
    if (auto* field = std::get_if<std::string ServerConfig::*>(&row.field)) {
      config->*(*field) = value;
    }
  }
}

void ApplyFlags(const std::vector<CLI::Option*>& given, const ServerConfig& flags,
                ServerConfig* config) {
  for (size_t i = 0; i < given.size() && i < std::size(kOptions); ++i) {
    if (given[i]->count() == 0) continue;
    std::visit([&](auto field) { config->*field = flags.*field; }, kOptions[i].field);
  }
}

}  // namespace modeldock::server
