// modeldock-server: the dock engine behind a gRPC endpoint.
//
// Configuration, lowest to highest precedence: built-in defaults, the --config JSON file, the
// environment (MODELDOCK_LISTEN, MODELDOCK_DATA_DIR), command-line flags.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "dock/dock.h"
#include "dock/metadata_store.h"
#include "nlohmann/json.hpp"
#include "http/http_server.h"
#include "server/grpc_server.h"
#include "server/metrics.h"
#include "server/request_id.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

#ifndef MODELDOCK_DEFAULT_ASSET_DIR
#define MODELDOCK_DEFAULT_ASSET_DIR ""
#endif

namespace {

// The default --asset-dir: an installed server's share/modeldock/assets (beside its bin/), else
// the build tree's assets (a server run from its build directory).
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

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  std::string data_dir = "./modeldock-data";
  // Metadata database: empty = SQLite in data_dir; postgresql://... = a PostgreSQL database.
  std::string metadata_url;
  // Model files: empty = data_dir/blobs; may be a directory replicas share (e.g. NFS).
  std::string blob_dir;
  double probe_lease_s = 30;  // replicas: lease of a claimed probing job
  // Integrity (issue 28): directories holding good copies of blobs; the scrub's period
  // (absl duration: "24h", "30m"; "0" = only on request) and reading speed (0 = unlimited).
  std::vector<std::string> blob_mirrors;
  std::string scrub_interval = "24h";
  double scrub_rate_mb_s = 50;
  std::string asset_dir = DefaultAssetDir();
  int64_t max_model_mb = 256;
  std::string index_factory = "Flat";
  std::string probe_set;
  std::string reference_encoder;
  std::string knowledge_encoder;
  int probe_workers = 2;
  int torch_threads = 2;
  double latency_budget_ms = 5000;
  int stage2_workers = 0;
  bool learn_from_recommendations = false;
  bool report_standings = true;
  bool remote_tls = false;
  std::string remote_tls_ca, remote_tls_cert, remote_tls_key;
  std::string remote_credentials;
  int64_t model_cache_mb = 2048;
  // Model workers (sandbox).
  std::string worker_binary;
  int workers = 0;
  int worker_threads = 1;
  int64_t worker_memory_mb = 4096;
  double admission_timeout_s = 60;
  double probe_timeout_s = 300;
  double probe_budget_s = 60;
  double run_timeout_s = 60;
  int max_waiting_jobs = 256;
  int64_t max_classes = 100000;
  int64_t max_feature_dim = 65536;
  int64_t max_output_bytes_per_sample = 1 << 20;
  int max_layers = 8;
  bool no_network_isolation = false;
  bool no_seccomp = false;
  int max_rpc_threads = modeldock::server::kDefaultMaxRpcThreads;
  std::string tls_cert, tls_key, tls_client_ca;
  std::string metrics_listen;
  std::string kserve_listen;
  std::string http_listen;
  int http_threads = 16;
  // Seconds between readiness turning false and the listeners closing at shutdown.
  int drain_delay_s = 0;
  bool auth = false;
  bool insecure_open = false;
  std::string log_level = "info";
};

constexpr char kExamples[] = R"(
Examples:
  modeldock-server                                  # 127.0.0.1:50051, data in ./modeldock-data
  modeldock-server --listen 0.0.0.0:50051 --data-dir /var/lib/modeldock
  modeldock-server --listen 127.0.0.1:0             # any free port; the bound one is printed
  modeldock-server --metadata-url postgresql://modeldock@db:5432/modeldock
                                                    # metadata in PostgreSQL, not in --data-dir
  modeldock-server --metadata-url postgresql://modeldock@db:5432/modeldock --blob-dir /mnt/blobs
                                                    # one replica of several on that database
  modeldock-server --config server.json --log-level debug

The --config file is a JSON object with the flags' names as keys (dashes or underscores), e.g.
  {"listen": "0.0.0.0:50051", "data-dir": "/data", "probe-workers": 2}
Precedence: flags > environment (MODELDOCK_LISTEN, MODELDOCK_DATA_DIR) > config file > defaults.
Once serving, exactly one line "modeldock-server listening on HOST:PORT" goes to stdout.
SIGINT/SIGTERM shut down gracefully.)";

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

// Fills `config` from a JSON file; returns an error message or "".
std::string LoadConfigFile(const std::string& path, ServerConfig* config) {
  std::ifstream in(path);
  if (!in) return "cannot open config file " + path;
  try {
    nlohmann::json json = nlohmann::json::parse(in);
    if (!json.is_object()) return "config file " + path + " must hold a JSON object";
    ReadKey(json, "listen", &config->listen);
    ReadKey(json, "data-dir", &config->data_dir);
    ReadKey(json, "metadata-url", &config->metadata_url);
    ReadKey(json, "blob-dir", &config->blob_dir);
    ReadKey(json, "probe-lease-s", &config->probe_lease_s);
    ReadKey(json, "blob-mirror", &config->blob_mirrors);
    ReadKey(json, "scrub-interval", &config->scrub_interval);
    ReadKey(json, "scrub-rate-mb-s", &config->scrub_rate_mb_s);
    ReadKey(json, "asset-dir", &config->asset_dir);
    ReadKey(json, "max-model-mb", &config->max_model_mb);
    ReadKey(json, "index-factory", &config->index_factory);
    ReadKey(json, "probe-set", &config->probe_set);
    ReadKey(json, "reference-encoder", &config->reference_encoder);
    ReadKey(json, "knowledge-encoder", &config->knowledge_encoder);
    ReadKey(json, "probe-workers", &config->probe_workers);
    ReadKey(json, "torch-threads", &config->torch_threads);
    ReadKey(json, "latency-budget-ms", &config->latency_budget_ms);
    ReadKey(json, "stage2-workers", &config->stage2_workers);
    ReadKey(json, "learn-from-recommendations", &config->learn_from_recommendations);
    ReadKey(json, "report-standings", &config->report_standings);
    ReadKey(json, "remote-tls", &config->remote_tls);
    ReadKey(json, "remote-tls-ca", &config->remote_tls_ca);
    ReadKey(json, "remote-tls-cert", &config->remote_tls_cert);
    ReadKey(json, "remote-tls-key", &config->remote_tls_key);
    ReadKey(json, "remote-credentials", &config->remote_credentials);
    ReadKey(json, "model-cache-mb", &config->model_cache_mb);
    ReadKey(json, "worker-binary", &config->worker_binary);
    ReadKey(json, "workers", &config->workers);
    ReadKey(json, "worker-threads", &config->worker_threads);
    ReadKey(json, "worker-memory-mb", &config->worker_memory_mb);
    ReadKey(json, "admission-timeout-s", &config->admission_timeout_s);
    ReadKey(json, "probe-timeout-s", &config->probe_timeout_s);
    ReadKey(json, "probe-budget-s", &config->probe_budget_s);
    ReadKey(json, "run-timeout-s", &config->run_timeout_s);
    ReadKey(json, "max-waiting-jobs", &config->max_waiting_jobs);
    ReadKey(json, "max-classes", &config->max_classes);
    ReadKey(json, "max-feature-dim", &config->max_feature_dim);
    ReadKey(json, "max-output-bytes-per-sample", &config->max_output_bytes_per_sample);
    ReadKey(json, "max-layers", &config->max_layers);
    ReadKey(json, "no-network-isolation", &config->no_network_isolation);
    ReadKey(json, "no-seccomp", &config->no_seccomp);
    ReadKey(json, "max-rpc-threads", &config->max_rpc_threads);
    ReadKey(json, "tls-cert", &config->tls_cert);
    ReadKey(json, "tls-key", &config->tls_key);
    ReadKey(json, "tls-client-ca", &config->tls_client_ca);
    ReadKey(json, "metrics-listen", &config->metrics_listen);
    ReadKey(json, "kserve-listen", &config->kserve_listen);
    ReadKey(json, "http-listen", &config->http_listen);
    ReadKey(json, "http-threads", &config->http_threads);
    ReadKey(json, "drain-delay-s", &config->drain_delay_s);
    ReadKey(json, "auth", &config->auth);
    ReadKey(json, "insecure-open", &config->insecure_open);
    ReadKey(json, "log-level", &config->log_level);
  } catch (const std::exception& e) {
    return "config file " + path + ": " + e.what();
  }
  return "";
}

}  // namespace

// Concurrent calls are the server's parallelism: OpenMP teams per call thread (FAISS, OpenBLAS)
// oversubscribe the cores and made six concurrent recommendations 25x slower on 2 cores
// (docs/BENCHMARKS.md, "Replicas and concurrent calls"). libgomp and OpenBLAS read their thread
// counts when they load, before main, so the server sets them and starts itself again once,
// unless the operator chose values.
void UseOneOpenMpThreadPerCall(char** argv) {
  if (std::getenv("OMP_NUM_THREADS") != nullptr) return;
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  execv("/proc/self/exe", argv);  // returns only on failure: then run with the defaults
}

static // The HTTP listeners, both over the gRPC server's in-process channel: --http-listen (REST API,
// /metrics, health) and --metrics-listen (/metrics only). False after logging why not.
bool StartHttpServers(const ServerConfig& config, modeldock::dock::Dock* dock,
                      const modeldock::server::GrpcServer& grpc_server,
                      modeldock::server::MetricsRegistry* metrics,
                      std::vector<std::unique_ptr<modeldock::http::HttpServer>>* out) {
  for (const std::string* address : {&config.http_listen, &config.metrics_listen}) {
    if (address->empty()) continue;
    const bool metrics_only = address == &config.metrics_listen;
    modeldock::http::HttpOptions options;
    options.listen = *address;
    options.metrics_only = metrics_only;
    options.threads = metrics_only ? 2 : config.http_threads;
    options.max_queued = 4 * options.threads;
    options.tls_cert = config.tls_cert;
    options.tls_key = config.tls_key;
    options.tls_client_ca = config.tls_client_ca;
    options.spool_dir = (std::filesystem::path(config.data_dir) / "http-uploads").string();
    options.metrics = [metrics, dock] { return metrics->Render(dock->Stats()); };
    auto started = modeldock::http::HttpServer::Start(grpc_server.InProcessChannel(), options);
    if (!started.ok()) {
      spdlog::critical("{}", started.status().ToString());
      return false;
    }
    if (metrics_only) {
      spdlog::info("metrics listening on {} (GET /metrics)", (*started)->address());
    } else {
      spdlog::info("HTTP API listening on http{}://{}/ (REST /v1, /metrics)",
                   (*started)->tls() ? "s" : "", (*started)->address());
    }
    out->push_back(std::move(*started));
  }
  return true;
}

int ServerMain(int argc, char** argv) {
  UseOneOpenMpThreadPerCall(argv);
  ServerConfig flags;
  std::string config_path;
  CLI::App app("modeldock-server: a model-zoo retrieval server (gRPC API modeldock.v1).",
               "modeldock-server");
  app.footer(kExamples);
  app.set_version_flag("--version", std::string("modeldock-server ") + MODELDOCK_VERSION);
  auto* listen = app.add_option("--listen", flags.listen, "HOST:PORT to serve on")
                     ->default_str("127.0.0.1:50051");
  auto* data_dir = app.add_option("--data-dir", flags.data_dir,
                                  "Directory for the model store, metadata and index")
                       ->default_str("./modeldock-data");
  auto* metadata_url = app.add_option(
      "--metadata-url", flags.metadata_url,
      "Metadata database: postgresql://USER@HOST:PORT/DB (libpq URI; password from ~/.pgpass or "
      "PGPASSWORD) instead of SQLite in --data-dir; several servers (replicas) may share one "
      "database (with --blob-dir)");
  auto* blob_dir = app.add_option(
      "--blob-dir", flags.blob_dir,
      "Directory for model files (DIR/blobs, uploads in DIR/tmp) instead of --data-dir; "
      "replicas on one --metadata-url share one, e.g. an NFS mount");
  auto* blob_mirror = app.add_option(
      "--blob-mirror", flags.blob_mirrors,
      "Directory holding good copies of model files (another replica's blob directory, a "
      "backup; DIR/blobs/ab/SHA256 or flat): a file that fails its SHA-256 check is restored "
      "from it instead of failing its model (repeatable)");
  auto* scrub_interval = app.add_option(
      "--scrub-interval", flags.scrub_interval,
      "How often every model file is re-hashed against its SHA-256 (e.g. 24h, 30m; 0 = only "
      "on `modeldock admin scrub`)")
                             ->default_str("24h");
  auto* scrub_rate = app.add_option("--scrub-rate-mb-s", flags.scrub_rate_mb_s,
                                    "Reading speed of a scrub in MB/s (0 = unlimited)")
                         ->default_str("50")
                         ->check(CLI::NonNegativeNumber);
  auto* probe_lease = app.add_option(
      "--probe-lease-s", flags.probe_lease_s,
      "With --metadata-url: seconds a replica's claim on a probing job lasts unless renewed; a "
      "replica that dies mid-probe hands its jobs to the others after this")
                          ->default_str("30");
  auto* asset_dir =
      app.add_option("--asset-dir", flags.asset_dir,
                     "Directory written by scripts/make_assets.py (probe set, reference encoder)")
          ->default_str(DefaultAssetDir());
  auto* max_mb = app.add_option("--max-model-mb", flags.max_model_mb,
                                "Largest model file accepted, in MiB")
                     ->default_str("256");
  auto* factory = app.add_option("--index-factory", flags.index_factory,
                                 "FAISS factory string for stage 1 (Flat, HNSW32, IVF256,Flat)")
                      ->default_str("Flat");
  auto* probe_set = app.add_option(
      "--probe-set", flags.probe_set,
      "Probe set NPY [P,C,H,W] of the first (grey) knowledge space, or NAME=PATH[,NAME=PATH] "
      "for named spaces of the asset dir's spaces.json (default: the asset dir's)");
  auto* ref_encoder = app.add_option(
      "--reference-encoder", flags.reference_encoder,
      "Reference encoder TorchScript of the first knowledge space, or NAME=PATH[,...] "
      "(default: the asset dir's)");
  auto* knowledge_encoder = app.add_option(
      "--knowledge-encoder", flags.knowledge_encoder,
      "Know2Vec alignment TorchScript from scripts/know2vec_alignment.py (default: untrained)");
  auto* workers = app.add_option("--probe-workers", flags.probe_workers,
                                 "New models probed at once (each in a model worker)")
                      ->default_str("2");
  auto* threads = app.add_option("--torch-threads", flags.torch_threads,
                                 "LibTorch threads of the server (reference encoder)")
                      ->default_str("2");
  auto* budget = app.add_option("--latency-budget-ms", flags.latency_budget_ms,
                                "Default latency budget of a recommendation: stage 2 scores every "
                                "compatible model when that fits, else the stage-1 candidates "
                                "that fit")
                     ->default_str("5000");
  auto* stage2_workers = app.add_option("--stage2-workers", flags.stage2_workers,
                                        "Stage-2 candidates run at once (0 = one per model worker)")
                             ->default_str("0");
  auto* learn_from_recommendations = app.add_flag(
      "--learn-from-recommendations", flags.learn_from_recommendations,
      "Keep, for every labelled recommendation, the query's class prototypes and the stage-2 "
      "standing of each scored model as weak outcome records (source stage2) that `modeldock "
      "train` learns priors from (off: the dock keeps nothing of a recommendation)");
  bool no_report_standings = false;
  auto* no_standings = app.add_flag(
      "--no-report-standings", no_report_standings,
      "Do not score, after a report of several image models, those models' stage-2 standings on "
      "the report's samples (weak records that fit the outcome prior's stage-2 weight; config "
      "key report-standings, default on)");
  auto* remote_tls = app.add_flag("--remote-tls", flags.remote_tls,
                                  "Call remote models' KServe v2 servers over TLS (system roots "
                                  "unless --remote-tls-ca); default plaintext");
  auto* remote_tls_ca = app.add_option("--remote-tls-ca", flags.remote_tls_ca,
                                       "PEM roots that remote KServe servers' certificates must "
                                       "chain to (implies --remote-tls)");
  auto* remote_tls_cert = app.add_option("--remote-tls-cert", flags.remote_tls_cert,
                                         "PEM client certificate this dock presents to remote "
                                         "KServe servers (mutual TLS; with --remote-tls-key)");
  auto* remote_tls_key = app.add_option("--remote-tls-key", flags.remote_tls_key,
                                        "PEM private key of --remote-tls-cert");
  auto* remote_credentials = app.add_option(
      "--remote-credentials", flags.remote_credentials,
      "JSON file of per-endpoint credentials towards remote KServe servers: {\"host:port\": "
      "{\"tls\", \"ca\", \"cert\", \"key\", \"bearer_token_file\"}}; listed endpoints use "
      "theirs instead of the --remote-tls* setting (README, \"Remote models\")");
  auto* model_cache = app.add_option("--model-cache-mb", flags.model_cache_mb,
                                     "Memory for models kept loaded in the workers (MiB, shared "
                                     "out among them)")
                          ->default_str("2048");
  // Uploaded models run only in modeldock-worker processes, under these limits.
  const std::string box = "Model workers (sandbox)";
  auto* worker_binary = app.add_option("--worker-binary", flags.worker_binary,
                                       "modeldock-worker executable (default: beside this one)")
                            ->group(box);
  auto* model_workers = app.add_option("--workers", flags.workers,
                                       "Worker processes running uploaded models (0 = one per core)")
                            ->default_str("0")->group(box);
  auto* worker_threads = app.add_option("--worker-threads", flags.worker_threads,
                                        "LibTorch threads in each worker")
                             ->default_str("1")->group(box);
  auto* worker_memory = app.add_option(
                            "--worker-memory-mb", flags.worker_memory_mb,
                            "Memory each worker may use (MiB; 0 = none): cgroup v2 memory.max where "
                            "the server's cgroup allows it, else resident memory polled and the "
                            "worker killed past it (the job is retried at half the batch); address "
                            "space capped at 4x, at least +4 GiB, as a backstop")
                            ->default_str("4096")->group(box);
  auto* admission_timeout = app.add_option("--admission-timeout-s", flags.admission_timeout_s,
                                           "Wall-time limit of a model's admission checks")
                                ->default_str("60")->group(box);
  auto* probe_timeout = app.add_option("--probe-timeout-s", flags.probe_timeout_s,
                                       "Wall-time limit of one probing job (a chunk of the "
                                       "probe set)")
                            ->default_str("300")->group(box);
  auto* probe_budget = app.add_option(
      "--probe-budget-s", flags.probe_budget_s,
      "Probing budget of one model: it runs on its space's probe set in the set's fixed order "
      "and stops after the chunk that would pass this many seconds (at least 256 samples); "
      "0 = the whole set")
                           ->default_str("60")->group(box);
  auto* run_timeout = app.add_option("--run-timeout-s", flags.run_timeout_s,
                                     "Wall-time limit of one stage-2 run of a model")
                          ->default_str("60")->group(box);
  auto* max_waiting = app.add_option("--max-waiting-jobs", flags.max_waiting_jobs,
                                     "Jobs that may wait for a worker before calls get "
                                     "RESOURCE_EXHAUSTED")
                          ->default_str("256")->group(box);
  auto* max_classes = app.add_option("--max-classes", flags.max_classes,
                                     "Largest class count K a model may declare")
                          ->default_str("100000")->group(box);
  auto* max_feature_dim = app.add_option("--max-feature-dim", flags.max_feature_dim,
                                         "Widest embed(x) output D accepted")
                              ->default_str("65536")->group(box);
  auto* max_layers = app.add_option("--max-layers", flags.max_layers,
                                    "Most layers a model may export through embed_layers(x) "
                                    "(each is scored in stage 2; 1..64)")
                         ->default_str("8")->group(box);
  auto* max_output_bytes =
      app.add_option("--max-output-bytes-per-sample", flags.max_output_bytes_per_sample,
                     "Largest (K + D) x 4 bytes per sample accepted")
          ->default_str("1048576")->group(box);
  auto* no_netns = app.add_flag("--no-network-isolation", flags.no_network_isolation,
                                "Do not give workers their own (empty) network namespace")
                       ->group(box);
  auto* no_seccomp = app.add_flag("--no-seccomp", flags.no_seccomp,
                                  "Do not install the workers' system-call filter")
                         ->group(box);
  auto* max_rpc_threads =
      app.add_option("--max-rpc-threads", flags.max_rpc_threads,
                     "Threads serving calls; past them new calls get RESOURCE_EXHAUSTED")
          ->default_str(std::to_string(modeldock::server::kDefaultMaxRpcThreads));
  auto* tls_cert = app.add_option("--tls-cert", flags.tls_cert,
                                  "Server certificate chain PEM: serve TLS (with --tls-key)");
  auto* tls_key = app.add_option("--tls-key", flags.tls_key, "Server private key PEM");
  auto* tls_client_ca = app.add_option(
      "--tls-client-ca", flags.tls_client_ca,
      "CA PEM that client certificates must be signed by (mutual TLS; needs --tls-cert)");
  auto* auth = app.add_flag("--auth", flags.auth,
                            "Require an API key on every call (roles admin, provider, consumer); "
                            "the first start writes an admin key to DATA_DIR/admin.key");
  auto* insecure_open = app.add_flag(
      "--insecure-open", flags.insecure_open,
      "Serve without --auth on a non-loopback address (anyone who can reach it may register, "
      "delete and recommend)");
  auto* metrics_listen = app.add_option(
      "--metrics-listen", flags.metrics_listen,
      "HOST:PORT serving only Prometheus metrics at /metrics (port 0: any free one; off by "
      "default); --http-listen serves them too");
  auto* http_listen = app.add_option(
      "--http-listen", flags.http_listen,
      "HOST:PORT serving the REST/JSON API (/v1), /metrics and health over HTTP (same TLS, "
      "keys and roles; off by default, e.g. 127.0.0.1:8000)");
  auto* http_threads = app.add_option("--http-threads", flags.http_threads,
                                      "HTTP connections served at once (4x as many may wait)")
                           ->default_str("16")
                           ->check(CLI::Range(1, 1024));
  auto* drain_delay = app.add_option(
                             "--drain-delay-s", flags.drain_delay_s,
                             "At SIGTERM/SIGINT: seconds to keep serving while answering not "
                             "ready (so load balancers stop sending), before the listeners close")
                          ->default_str("0")
                          ->check(CLI::Range(0, 600));
  auto* kserve_listen = app.add_option(
      "--kserve-listen", flags.kserve_listen,
      "HOST:PORT serving the registered models over the KServe v2 inference protocol "
      "(inference.GRPCInferenceService; same TLS and keys; off by default)");
  auto* log_level = app.add_option("--log-level", flags.log_level,
                                   "trace, debug, info, warn, error or off")
                        ->default_str("info")
                        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--config", config_path, "JSON file with the same keys as the flags");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help exits 0; usage errors 2, as the CLI does
  }

  // Layer the sources: defaults < config file < environment < flags.
  ServerConfig config;
  if (!config_path.empty()) {
    if (std::string error = LoadConfigFile(config_path, &config); !error.empty()) {
      std::cerr << "modeldock-server: " << error << "\n";
      return 2;
    }
  }
  if (const char* env = std::getenv("MODELDOCK_LISTEN"); env != nullptr && *env) {
    config.listen = env;
  }
  if (const char* env = std::getenv("MODELDOCK_DATA_DIR"); env != nullptr && *env) {
    config.data_dir = env;
  }
  if (listen->count()) config.listen = flags.listen;
  if (data_dir->count()) config.data_dir = flags.data_dir;
  if (metadata_url->count()) config.metadata_url = flags.metadata_url;
  if (blob_dir->count()) config.blob_dir = flags.blob_dir;
  if (probe_lease->count()) config.probe_lease_s = flags.probe_lease_s;
  if (blob_mirror->count()) config.blob_mirrors = flags.blob_mirrors;
  if (scrub_interval->count()) config.scrub_interval = flags.scrub_interval;
  if (scrub_rate->count()) config.scrub_rate_mb_s = flags.scrub_rate_mb_s;
  if (asset_dir->count()) config.asset_dir = flags.asset_dir;
  if (max_mb->count()) config.max_model_mb = flags.max_model_mb;
  if (factory->count()) config.index_factory = flags.index_factory;
  if (probe_set->count()) config.probe_set = flags.probe_set;
  if (ref_encoder->count()) config.reference_encoder = flags.reference_encoder;
  if (knowledge_encoder->count()) config.knowledge_encoder = flags.knowledge_encoder;
  if (workers->count()) config.probe_workers = flags.probe_workers;
  if (threads->count()) config.torch_threads = flags.torch_threads;
  if (budget->count()) config.latency_budget_ms = flags.latency_budget_ms;
  if (stage2_workers->count()) config.stage2_workers = flags.stage2_workers;
  if (learn_from_recommendations->count()) config.learn_from_recommendations = true;
  if (no_standings->count()) config.report_standings = false;
  if (remote_tls->count()) config.remote_tls = true;
  if (remote_tls_ca->count()) config.remote_tls_ca = flags.remote_tls_ca;
  if (remote_tls_cert->count()) config.remote_tls_cert = flags.remote_tls_cert;
  if (remote_tls_key->count()) config.remote_tls_key = flags.remote_tls_key;
  if (remote_credentials->count()) config.remote_credentials = flags.remote_credentials;
  if (model_cache->count()) config.model_cache_mb = flags.model_cache_mb;
  if (worker_binary->count()) config.worker_binary = flags.worker_binary;
  if (model_workers->count()) config.workers = flags.workers;
  if (worker_threads->count()) config.worker_threads = flags.worker_threads;
  if (worker_memory->count()) config.worker_memory_mb = flags.worker_memory_mb;
  if (admission_timeout->count()) config.admission_timeout_s = flags.admission_timeout_s;
  if (probe_timeout->count()) config.probe_timeout_s = flags.probe_timeout_s;
  if (probe_budget->count()) config.probe_budget_s = flags.probe_budget_s;
  if (run_timeout->count()) config.run_timeout_s = flags.run_timeout_s;
  if (max_waiting->count()) config.max_waiting_jobs = flags.max_waiting_jobs;
  if (max_classes->count()) config.max_classes = flags.max_classes;
  if (max_feature_dim->count()) config.max_feature_dim = flags.max_feature_dim;
  if (max_layers->count()) config.max_layers = flags.max_layers;
  if (max_output_bytes->count()) {
    config.max_output_bytes_per_sample = flags.max_output_bytes_per_sample;
  }
  if (no_netns->count()) config.no_network_isolation = true;
  if (no_seccomp->count()) config.no_seccomp = true;
  if (max_rpc_threads->count()) config.max_rpc_threads = flags.max_rpc_threads;
  if (const char* env = std::getenv("MODELDOCK_TLS_CERT"); env != nullptr && *env) {
    config.tls_cert = env;
  }
  if (const char* env = std::getenv("MODELDOCK_TLS_KEY"); env != nullptr && *env) {
    config.tls_key = env;
  }
  if (tls_cert->count()) config.tls_cert = flags.tls_cert;
  if (tls_key->count()) config.tls_key = flags.tls_key;
  if (tls_client_ca->count()) config.tls_client_ca = flags.tls_client_ca;
  if (metrics_listen->count()) config.metrics_listen = flags.metrics_listen;
  if (kserve_listen->count()) config.kserve_listen = flags.kserve_listen;
  if (http_listen->count()) config.http_listen = flags.http_listen;
  if (http_threads->count()) config.http_threads = flags.http_threads;
  if (drain_delay->count()) config.drain_delay_s = flags.drain_delay_s;
  if (auth->count()) config.auth = true;
  if (insecure_open->count()) config.insecure_open = true;
  if (log_level->count()) config.log_level = flags.log_level;

  // Logs go to stderr; stdout carries only the "listening on" line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("modeldock"));
  // Each line written on a call's thread carries the call's request id.
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<modeldock::server::RequestIdFlag>('*').set_pattern(
      "[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %*%v");
  spdlog::set_formatter(std::move(formatter));
  spdlog::level::level_enum level = spdlog::level::from_str(config.log_level);
  if (level == spdlog::level::off && config.log_level != "off") {
    std::cerr << "modeldock-server: unknown log level '" << config.log_level << "'\n";
    return 2;
  }
  spdlog::set_level(level);
  if (config.max_model_mb <= 0) {
    std::cerr << "modeldock-server: --max-model-mb must be positive\n";
    return 2;
  }

  modeldock::dock::DockOptions options;
  options.data_dir = config.data_dir;
  options.metadata_url = config.metadata_url;
  options.blob_dir = config.blob_dir;
  options.probe_lease = absl::Seconds(config.probe_lease_s);
  options.blob_mirrors = config.blob_mirrors;
  if (!absl::ParseDuration(config.scrub_interval, &options.scrub_interval) ||
      options.scrub_interval < absl::ZeroDuration()) {
    std::cerr << "modeldock-server: --scrub-interval '" << config.scrub_interval
              << "' is not a duration such as 24h, 30m or 0\n";
    return 2;
  }
  options.scrub_mb_per_second = config.scrub_rate_mb_s;
  options.asset_dir = config.asset_dir;
  options.max_model_bytes = config.max_model_mb << 20;
  options.index_factory = config.index_factory;
  options.probe_set_path = config.probe_set;
  options.reference_encoder_path = config.reference_encoder;
  options.knowledge_encoder_path = config.knowledge_encoder;
  options.probe_workers = config.probe_workers;
  options.torch_threads = config.torch_threads;
  options.latency_budget_millis = config.latency_budget_ms;
  options.stage2_workers = config.stage2_workers;
  options.learn_from_recommendations = config.learn_from_recommendations;
  options.report_standings = config.report_standings;
  options.remote_tls = config.remote_tls;
  options.remote_tls_ca_path = config.remote_tls_ca;
  options.remote_tls_cert_path = config.remote_tls_cert;
  options.remote_tls_key_path = config.remote_tls_key;
  options.remote_credentials_path = config.remote_credentials;
  options.model_cache_bytes = config.model_cache_mb << 20;
  modeldock::dock::SandboxOptions& sandbox = options.sandbox;
  sandbox.worker_binary = config.worker_binary;
  sandbox.workers = config.workers;
  sandbox.torch_threads = config.worker_threads;
  sandbox.memory_limit_bytes = config.worker_memory_mb << 20;
  sandbox.admission_time_limit = absl::Seconds(config.admission_timeout_s);
  sandbox.probe_time_limit = absl::Seconds(config.probe_timeout_s);
  options.probe_budget = absl::Seconds(config.probe_budget_s);
  sandbox.run_time_limit = absl::Seconds(config.run_timeout_s);
  sandbox.max_waiting_jobs = config.max_waiting_jobs;
  sandbox.max_classes = config.max_classes;
  sandbox.max_feature_dim = config.max_feature_dim;
  sandbox.max_output_bytes_per_sample = config.max_output_bytes_per_sample;
  sandbox.max_layers = config.max_layers;
  sandbox.isolate_network = !config.no_network_isolation;
  sandbox.seccomp = !config.no_seccomp;
  spdlog::info(
      "config: listen={} data_dir={} metadata={} blob_dir={} asset_dir={} max_model_mb={} index_factory={} "
      "probe_set={} reference_encoder={} knowledge_encoder={} probe_workers={} torch_threads={} "
      "latency_budget_ms={} stage2_workers={} learn_from_recommendations={} report_standings={} model_cache_mb={} workers={} worker_threads={} "
      "worker_memory_mb={} admission/probe/run timeouts={}/{}/{} s log_level={}",
      config.listen, config.data_dir,
      config.metadata_url.empty() ? "sqlite (data dir)"
                                  : modeldock::dock::RedactUrl(config.metadata_url),
      config.blob_dir.empty() ? "(data dir)" : config.blob_dir, config.asset_dir, config.max_model_mb,
      config.index_factory, config.probe_set.empty() ? "(asset dir)" : config.probe_set,
      config.reference_encoder.empty() ? "(asset dir)" : config.reference_encoder,
      config.knowledge_encoder.empty() ? "(untrained)" : config.knowledge_encoder,
      config.probe_workers, config.torch_threads, config.latency_budget_ms,
      config.stage2_workers, config.learn_from_recommendations, config.report_standings, config.model_cache_mb, config.workers, config.worker_threads,
      config.worker_memory_mb, config.admission_timeout_s, config.probe_timeout_s,
      config.run_timeout_s, config.log_level);
  spdlog::info("integrity: model files verified before every run; blob mirrors: {}; scrub every "
               "{} at {} MB/s",
               config.blob_mirrors.empty() ? "(none)" : absl::StrJoin(config.blob_mirrors, ", "),
               options.scrub_interval == absl::ZeroDuration()
                   ? "(only on request)"
                   : absl::FormatDuration(options.scrub_interval),
               config.scrub_rate_mb_s == 0 ? "unlimited"
                                           : absl::StrCat(config.scrub_rate_mb_s));
  {
    // Without keys, anyone who can reach the port may register and delete: loopback only,
    // unless the operator says otherwise.
    // The KServe and HTTP ports belong to the same server, so the same rule holds for them.
    for (const std::string& address : {config.listen, config.kserve_listen, config.http_listen}) {
      if (address.empty()) continue;
      std::string host;
      int port = 0;
      const bool parsed = modeldock::server::SplitHostPort(address, &host, &port);
      const bool loopback = host == "127.0.0.1" || host == "localhost" || host == "[::1]" ||
                            host.rfind("127.", 0) == 0;
      if (parsed && !loopback && !config.auth && !config.insecure_open) {
        std::cerr << "modeldock-server: refusing to serve " << address
                  << " without --auth: anyone reaching it could register and delete models. "
                     "Start with --auth (API keys), or --insecure-open to serve openly anyway.\n";
        return 2;
      }
    }
  }
  if (absl::Status status = modeldock::dock::ValidateOptions(options); !status.ok()) {
    std::cerr << "modeldock-server: invalid configuration: " << status.ToString() << "\n";
    return 2;
  }

  // Block the stop signals in every thread (gRPC's and the dock's inherit this mask) so that
  // the main thread can wait for them synchronously with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto dock = modeldock::dock::Dock::Create(options);
  if (!dock.ok()) {
    spdlog::critical("cannot open the dock at {}: {}", config.data_dir,
                     dock.status().ToString());
    return 1;
  }
  if (config.auth) {
    // First start with keys on: one admin key, written where only the server's user can read it.
    auto keys = (*dock)->ListApiKeys();
    if (!keys.ok()) {
      spdlog::critical("cannot read API keys: {}", keys.status().ToString());
      return 1;
    }
    if (keys->empty()) {
      auto admin = (*dock)->CreateApiKey(modeldock::dock::ApiKeyRole::kAdmin, "admin");
      const std::string path = (std::filesystem::path(config.data_dir) / "admin.key").string();
      int fd = admin.ok() ? open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
      const std::string line = admin.ok() ? admin->secret + "\n" : "";
      if (fd < 0 || fchmod(fd, 0600) != 0 ||
          write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        spdlog::critical("cannot create the admin key at {}", path);
        if (fd >= 0) close(fd);
        return 1;
      }
      close(fd);
      spdlog::info("created the first admin API key; it is in {} (mode 0600)", path);
    }
    spdlog::info("API keys required on every call (health stays open)");
  }
  modeldock::server::MetricsRegistry metrics;
  const bool record_metrics = !config.metrics_listen.empty() || !config.http_listen.empty();
  auto server = modeldock::server::GrpcServer::Start(
      dock->get(), config.listen, config.max_rpc_threads,
      {config.tls_cert, config.tls_key, config.tls_client_ca},
      record_metrics ? &metrics : nullptr, config.auth, config.kserve_listen,
      /*serve_kserve=*/!config.http_listen.empty());
  if (!server.ok()) {
    spdlog::critical("{}", server.status().ToString());
    (*dock)->Shutdown();
    return 1;
  }
  if (!config.tls_cert.empty()) {
    spdlog::info("serving TLS ({})", config.tls_client_ca.empty()
                                         ? "server certificate only"
                                         : "mutual: clients need a certificate from " +
                                               config.tls_client_ca);
  }
  if (!(*server)->kserve_address().empty()) {
    spdlog::info("KServe v2 inference protocol on {} (inference.GRPCInferenceService)",
                 (*server)->kserve_address());
  }
  std::vector<std::unique_ptr<modeldock::http::HttpServer>> http_servers;
  if (!StartHttpServers(config, dock->get(), **server, &metrics, &http_servers)) {
    (*server)->Shutdown(absl::ZeroDuration());
    (*dock)->Shutdown();
    return 1;
  }
  std::printf("modeldock-server listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received {}, shutting down (in-flight calls get 10 s)",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->MarkNotReady();
  if (config.drain_delay_s > 0) {
    // Readiness is false from here; calls are still served until the listeners close.
    spdlog::info("not ready; draining for {} s before closing the listeners", config.drain_delay_s);
    std::this_thread::sleep_for(std::chrono::seconds(config.drain_delay_s));
  }
  for (auto& http : http_servers) http->Stop();
  (*server)->Shutdown(absl::Seconds(10));
  (*dock)->Shutdown();
  spdlog::info("stopped");
  return 0;
}

// Whatever escapes ServerMain (a flag value, a file, a library) ends as a message and exit
// status 3, never as an abort.
int main(int argc, char** argv) {
  try {
    return ServerMain(argc, argv);
  } catch (const std::exception& e) {
    spdlog::critical("modeldock-server stopped by an internal error: {}", e.what());
    return 3;
  }
}
