// modeldock-server: the dock engine behind a gRPC endpoint.
//
// Configuration, lowest to highest precedence: built-in defaults, the --config JSON file, the
// environment, command-line flags; every option is one row of server/server_options.cc.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "dock/dock.h"
#include "dock/metadata_store.h"
#include "http/http_server.h"
#include "server/grpc_server.h"
#include "server/metrics.h"
#include "server/request_id.h"
#include "server/server_options.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

using modeldock::server::ServerConfig;

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

// Parses the command line and layers the sources: defaults < config file < environment <
// flags. Returns the exit status when the process should stop (--help, --version, errors).
std::optional<int> ReadConfig(int argc, char** argv, ServerConfig* config) {
  ServerConfig flags;
  std::string config_path;
  CLI::App app("modeldock-server: a model-zoo retrieval server (gRPC API modeldock.v1).",
               "modeldock-server");
  app.footer(kExamples);
  app.set_version_flag("--version", std::string("modeldock-server ") + MODELDOCK_VERSION);
  const std::vector<CLI::Option*> options = modeldock::server::AddServerOptions(app, &flags);
  app.add_option("--config", config_path, "JSON file with the same keys as the flags");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help exits 0; usage errors 2, as the CLI does
  }
  if (!config_path.empty()) {
    if (std::string error = modeldock::server::LoadConfigFile(config_path, config);
        !error.empty()) {
      std::cerr << "modeldock-server: " << error << "\n";
      return 2;
    }
  }
  modeldock::server::ApplyEnvironment(config);
  modeldock::server::ApplyFlags(options, flags, config);
  return std::nullopt;
}

// Logs go to stderr; stdout carries only the "listening on" line. False on a bad level.
bool SetUpLogging(const ServerConfig& config) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("modeldock"));
  // Each line written on a call's thread carries the call's request id.
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<modeldock::server::RequestIdFlag>('*').set_pattern(
      "[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %*%v");
  spdlog::set_formatter(std::move(formatter));
  spdlog::level::level_enum level = spdlog::level::from_str(config.log_level);
  if (level == spdlog::level::off && config.log_level != "off") {
    std::cerr << "modeldock-server: unknown log level '" << config.log_level << "'\n";
    return false;
  }
  spdlog::set_level(level);
  return true;
}

// The engine's options from the server's; an error message or "".
std::string ToDockOptions(const ServerConfig& config, modeldock::dock::DockOptions* options) {
  options->data_dir = config.data_dir;
  options->probe_cache_dir = config.probe_cache_dir;
  options->metadata_url = config.metadata_url;
  options->blob_dir = config.blob_dir;
  options->probe_lease = absl::Seconds(config.probe_lease_s);
  options->blob_mirrors = config.blob_mirrors;
  if (!absl::ParseDuration(config.scrub_interval, &options->scrub_interval) ||
      options->scrub_interval < absl::ZeroDuration()) {
    return absl::StrCat("--scrub-interval '", config.scrub_interval,
                        "' is not a duration such as 24h, 30m or 0");
  }
  options->scrub_mb_per_second = config.scrub_rate_mb_s;
  options->asset_dir = config.asset_dir;
  options->max_model_bytes = config.max_model_mb << 20;
  options->index_factory = config.index_factory;
  options->probe_set_path = config.probe_set;
  options->reference_encoder_path = config.reference_encoder;
  options->knowledge_encoder_path = config.knowledge_encoder;
  options->probe_workers = config.probe_workers;
  options->torch_threads = config.torch_threads;
  options->latency_budget_millis = config.latency_budget_ms;
  options->stage2_workers = config.stage2_workers;
  options->learn_from_recommendations = config.learn_from_recommendations;
  options->report_standings = !config.no_report_standings;
  options->remote_tls = config.remote_tls;
  options->remote_tls_ca_path = config.remote_tls_ca;
  options->remote_tls_cert_path = config.remote_tls_cert;
  options->remote_tls_key_path = config.remote_tls_key;
  options->remote_credentials_path = config.remote_credentials;
  options->model_cache_bytes = config.model_cache_mb << 20;
  modeldock::dock::SandboxOptions& sandbox = options->sandbox;
  sandbox.worker_binary = config.worker_binary;
  sandbox.workers = config.workers;
  sandbox.torch_threads = config.worker_threads;
  sandbox.memory_limit_bytes = config.worker_memory_mb << 20;
  sandbox.admission_time_limit = absl::Seconds(config.admission_timeout_s);
  sandbox.probe_time_limit = absl::Seconds(config.probe_timeout_s);
  options->probe_budget = absl::Seconds(config.probe_budget_s);
  sandbox.run_time_limit = absl::Seconds(config.run_timeout_s);
  sandbox.max_waiting_jobs = config.max_waiting_jobs;
  sandbox.max_classes = config.max_classes;
  sandbox.max_feature_dim = config.max_feature_dim;
  sandbox.max_output_bytes_per_sample = config.max_output_bytes_per_sample;
  sandbox.max_layers = config.max_layers;
  sandbox.isolate_network = !config.no_network_isolation;
  sandbox.seccomp = !config.no_seccomp;
  return "";
}

void LogConfig(const ServerConfig& config, const modeldock::dock::DockOptions& options) {
  spdlog::info(
      "config: listen={} data_dir={} metadata={} blob_dir={} asset_dir={} max_model_mb={} "
      "index_factory={} probe_set={} reference_encoder={} knowledge_encoder={} probe_workers={} "
      "torch_threads={} latency_budget_ms={} stage2_workers={} learn_from_recommendations={} "
      "report_standings={} model_cache_mb={} workers={} worker_threads={} worker_memory_mb={} "
      "admission/probe/run timeouts={}/{}/{} s log_level={}",
      config.listen, config.data_dir,
      config.metadata_url.empty() ? "sqlite (data dir)"
                                  : modeldock::dock::RedactUrl(config.metadata_url),
      config.blob_dir.empty() ? "(data dir)" : config.blob_dir, config.asset_dir,
      config.max_model_mb, config.index_factory,
      config.probe_set.empty() ? "(asset dir)" : config.probe_set,
      config.reference_encoder.empty() ? "(asset dir)" : config.reference_encoder,
      config.knowledge_encoder.empty() ? "(untrained)" : config.knowledge_encoder,
      config.probe_workers, config.torch_threads, config.latency_budget_ms,
      config.stage2_workers, config.learn_from_recommendations, options.report_standings,
      config.model_cache_mb,
      config.workers, config.worker_threads, config.worker_memory_mb, config.admission_timeout_s, config.probe_timeout_s,
      config.run_timeout_s, config.log_level);
  spdlog::info("integrity: model files verified before every run; blob mirrors: {}; scrub every "
               "{} at {} MB/s",
               config.blob_mirrors.empty() ? "(none)" : absl::StrJoin(config.blob_mirrors, ", "),
               options.scrub_interval == absl::ZeroDuration()
                   ? "(only on request)"
                   : absl::FormatDuration(options.scrub_interval),
               config.scrub_rate_mb_s == 0 ? "unlimited"
                                           : absl::StrCat(config.scrub_rate_mb_s));
}

// Without keys, anyone who can reach the port may register and delete: loopback only, unless
// the operator says otherwise. False after saying why.
bool ListenersAllowed(const ServerConfig& config) {
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
      return false;
    }
  }
  return true;
}

// First start with keys on: one admin key, written where only the server's user can read it.
bool EnsureAdminKey(modeldock::dock::Dock* dock, const ServerConfig& config) {
  auto keys = dock->ListApiKeys();
  if (!keys.ok()) {
    spdlog::critical("cannot read API keys: {}", keys.status().ToString());
    return false;
  }
  if (keys->empty()) {
    auto admin = dock->CreateApiKey(modeldock::dock::ApiKeyRole::kAdmin, "admin");
    const std::string path = (std::filesystem::path(config.data_dir) / "admin.key").string();
    int fd =
        admin.ok() ? open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    const std::string line = admin.ok() ? admin->secret + "\n" : "";
    if (fd < 0 || fchmod(fd, 0600) != 0 ||
        write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      spdlog::critical("cannot create the admin key at {}", path);
      if (fd >= 0) close(fd);
      return false;
    }
    close(fd);
    spdlog::info("created the first admin API key; it is in {} (mode 0600)", path);
  }
  return true;
}

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

// glibc gives each call thread an arena of its own and serves blocks of 128 KiB and more with
// mmap, raising that threshold only as it sees large blocks freed: a call's tensors (the
// reference encoder's activations on a batch, 25 MiB at 256 samples) were faulted in page by
// page on most calls (perf: page faults the largest kernel share; a 6,000-sample query's
// encoding took 0.5 s on some calls and 1.2-2.7 s on others, BENCHMARKS 2r). One arena and
// fixed thresholds keep blocks under 256 MiB on the heap for the next call; a free heap top
// beyond 512 MiB is still returned. (The calls of a 2-core server share one malloc lock; the
// models run in worker processes, which set their own, sandbox/worker_main.cc.)
void KeepFreedMemoryForTheNextCall() {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

// The HTTP listeners, both over the gRPC server's in-process channel: --http-listen (REST API,
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


// Serves until SIGINT or SIGTERM, then shuts down gracefully. The exit status.
int Serve(const ServerConfig& config, modeldock::dock::Dock* dock, const sigset_t& stop_signals) {
  modeldock::server::MetricsRegistry metrics;
  const bool record_metrics = !config.metrics_listen.empty() || !config.http_listen.empty();
  auto server = modeldock::server::GrpcServer::Start(
      dock, config.listen, config.max_rpc_threads,
      {config.tls_cert, config.tls_key, config.tls_client_ca},
      record_metrics ? &metrics : nullptr, config.auth, config.kserve_listen,
      /*serve_kserve=*/!config.http_listen.empty());
  if (!server.ok()) {
    spdlog::critical("{}", server.status().ToString());
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
  if (!StartHttpServers(config, dock, **server, &metrics, &http_servers)) {
    (*server)->Shutdown(absl::ZeroDuration());
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
  return 0;
}

}  // namespace

int ServerMain(int argc, char** argv) {
  UseOneOpenMpThreadPerCall(argv);
  KeepFreedMemoryForTheNextCall();
  ServerConfig config;
  if (std::optional<int> exit_status = ReadConfig(argc, argv, &config)) return *exit_status;
  if (!SetUpLogging(config)) return 2;
  if (config.max_model_mb <= 0) {
    std::cerr << "modeldock-server: --max-model-mb must be positive\n";
    return 2;
  }
  modeldock::dock::DockOptions options;
  if (std::string error = ToDockOptions(config, &options); !error.empty()) {
    std::cerr << "modeldock-server: " << error << "\n";
    return 2;
  }
  LogConfig(config, options);
  if (!ListenersAllowed(config)) return 2;
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
    if (!EnsureAdminKey(dock->get(), config)) return 1;
    spdlog::info("API keys required on every call (health stays open)");
  }
  const int status = Serve(config, dock->get(), stop_signals);
  (*dock)->Shutdown();
  if (status == 0) spdlog::info("stopped");
  return status;
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
