// modeldock-server's options as one table: each row is a flag, its config-file key (the same
// name, dashes or underscores), its environment variable if it has one, its default (the
// value of a default ServerConfig, whose engine defaults come from dock::DockOptions) and its
// help text. main(), `--help` and the --config file all read the table.
//
// Precedence, lowest to highest: defaults, the --config JSON file, the environment, flags.
#ifndef MODELDOCK_SERVER_SERVER_OPTIONS_H_
#define MODELDOCK_SERVER_SERVER_OPTIONS_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/types/span.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace modeldock::server {

// The default --asset-dir: an installed server's share/modeldock/assets (beside its bin/), else
// the build tree's assets (a server run from its build directory).
std::string DefaultAssetDir();

struct ServerConfig {
  ServerConfig();  // the defaults (engine ones from dock::DockOptions)

  std::string listen = "127.0.0.1:50051";
  std::string data_dir = "./modeldock-data";
  // Metadata database: empty = SQLite in data_dir; postgresql://... = a PostgreSQL database.
  std::string metadata_url;
  // Model files: empty = data_dir/blobs; may be a directory replicas share (e.g. NFS).
  std::string blob_dir;
  double probe_lease_s = 0;  // replicas: lease of a claimed probing job
  // Integrity (issue 28): directories holding good copies of blobs; the scrub's period
  // (absl duration: "24h", "30m"; "0" = only on request) and reading speed (0 = unlimited).
  std::vector<std::string> blob_mirrors;
  std::string scrub_interval;
  double scrub_rate_mb_s = 0;
  std::string asset_dir;
  std::string probe_cache_dir;  // empty = data_dir/cache
  int64_t max_model_mb = 0;
  std::string index_factory;
  std::string probe_set;
  std::string reference_encoder;
  std::string knowledge_encoder;
  int probe_workers = 0;
  int torch_threads = 0;
  double latency_budget_ms = 0;
  int stage2_workers = 0;
  bool learn_from_recommendations = false;
  bool no_report_standings = false;
  bool remote_tls = false;
  std::string remote_tls_ca, remote_tls_cert, remote_tls_key;
  std::string remote_credentials;
  int64_t model_cache_mb = 0;
  // Model workers (sandbox).
  std::string worker_binary;
  int workers = 0;
  int worker_threads = 0;
  int64_t worker_memory_mb = 0;
  double admission_timeout_s = 0;
  double probe_timeout_s = 0;
  double probe_budget_s = 0;
  double run_timeout_s = 0;
  int max_waiting_jobs = 0;
  int64_t max_classes = 0;
  int64_t max_feature_dim = 0;
  int64_t max_output_bytes_per_sample = 0;
  int max_layers = 0;
  bool no_network_isolation = false;
  bool no_seccomp = false;
  int max_rpc_threads = 0;
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

// One row of the table.
struct ServerOption {
  using Field = std::variant<std::string ServerConfig::*, double ServerConfig::*,
                             int ServerConfig::*, int64_t ServerConfig::*, bool ServerConfig::*,
                             std::vector<std::string> ServerConfig::*>;
  enum class Check { kNone, kNonNegative, kRange, kLogLevel };

  const char* name;  // the flag without "--"; the config key ("data-dir" or "data_dir")
  Field field;       // bool fields are flags (no value)
  const char* env;   // environment variable, or nullptr
  const char* help;
  bool sandbox_group = false;  // listed under "Model workers (sandbox)" in --help
  Check check = Check::kNone;
  int min = 0, max = 0;  // kRange
};

// The table, in --help order.
absl::Span<const ServerOption> ServerOptions();

// The default as --help shows it ("" = none shown: flags, lists and empty strings).
std::string DefaultText(const ServerOption& option);
// The option's value in `config`, as a flag would spell it (lists joined by ',').
std::string ValueText(const ServerOption& option, const ServerConfig& config);

// Adds every row to `app` as a flag bound into `*flags`; the CLI11 options in table order.
std::vector<CLI::Option*> AddServerOptions(CLI::App& app, ServerConfig* flags);

// Reads the table's keys (dashes or underscores) from a JSON object file into `config`;
// returns an error message or "".
std::string LoadConfigFile(const std::string& path, ServerConfig* config);
// Reads the table's environment variables (set and not empty) into `config`.
void ApplyEnvironment(ServerConfig* config);
// Copies the options given on the command line (`given`, from AddServerOptions) from `flags`.
void ApplyFlags(const std::vector<CLI::Option*>& given, const ServerConfig& flags,
                ServerConfig* config);

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_SERVER_OPTIONS_H_
