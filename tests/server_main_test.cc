// modeldock-server run as a process: the one "listening on" line scripts wait for, the
// configuration layering (config file < environment < flags), health, and a clean exit on
// SIGTERM.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <type_traits>
#include <variant>
#include <regex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "dock/types.h"
#include "nlohmann/json.hpp"
#include "server/server_options.h"
#include "tests/postgres_env.h"
#include "tests/subprocess.h"
#include "tests/test_server.h"

#ifndef MODELDOCK_SERVER_PATH
#error "MODELDOCK_SERVER_PATH must name the modeldock-server binary"
#endif
#ifndef MODELDOCK_CLI_PATH
#error "MODELDOCK_CLI_PATH must name the modeldock binary"
#endif

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;
using ::modeldock::testing::TestSchema;

// Waits until the server prints its address (or exits); returns "HOST:PORT" or "".
std::string WaitForListening(const ChildProcess& child) {
  const std::regex line("^modeldock-server listening on (\\S+:[0-9]+)\n");
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < give_up) {
    std::smatch match;
    const std::string out = ReadFile(child.out_path);
    if (std::regex_search(out, match, line)) return match[1];
    if (waitpid(child.pid, nullptr, WNOHANG) != 0) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

class ServerMainTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set"; }
  std::string Path(const std::string& name) { return (fs::path(temp_.path()) / name).string(); }
  TempDir temp_;
};

TEST_F(ServerMainTest, ServesUntilSigterm) {
  std::ofstream(Path("server.json"))
      << R"({"listen": "127.0.0.1:1", "log-level": "debug", "max_model_mb": 7,
            "probe-workers": 2})";
  // The flag beats both the environment and the config file; MODELDOCK_DATA_DIR beats the file.
  ChildProcess server = StartProcess(
      {MODELDOCK_SERVER_PATH, "--config", Path("server.json"), "--listen", "127.0.0.1:0",
       "--asset-dir", AssetDir(), "--torch-threads", "1"},
      temp_.path(),
      {"MODELDOCK_LISTEN=127.0.0.1:2", "MODELDOCK_DATA_DIR=" + Path("env-data")});
  const std::string address = WaitForListening(server);
  ASSERT_FALSE(address.empty()) << ReadFile(server.err_path);
  EXPECT_THAT(address, ::testing::StartsWith("127.0.0.1:"));
  EXPECT_NE(address, "127.0.0.1:0");

  ProcessResult health =
      RunProcess({MODELDOCK_CLI_PATH, "--server", address, "--timeout", "30", "health"},
                 temp_.path());
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");
  EXPECT_TRUE(fs::exists(Path("env-data/modeldock.db")));

  // A failed call names its request id; the server's log lines for that call carry it.
  std::ofstream(Path("bad.pt")) << "not a TorchScript file";
  ProcessResult bad = RunProcess({MODELDOCK_CLI_PATH, "--server", address, "--timeout", "60",
                                  "register", Path("bad.pt"), "--name", "bad", "--input-shape",
                                  "1,28,28", "--labels", "a,b"},
                                 temp_.path());
  EXPECT_EQ(bad.exit_code, 1);
  std::smatch request_id;
  ASSERT_TRUE(std::regex_search(bad.err, request_id, std::regex("\\(request (r-[0-9a-f]{8})\\)")))
      << bad.err;

  kill(server.pid, SIGTERM);
  ProcessResult result = WaitProcess(server, std::chrono::seconds(60));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.err, HasSubstr("[" + request_id[1].str() + "] registration of 'bad' rejected"));
  EXPECT_EQ(result.out, "modeldock-server listening on " + address + "\n");
  // The effective configuration is logged once, at start.
  EXPECT_THAT(result.err, HasSubstr("max_model_mb=7"));
  EXPECT_THAT(result.err, HasSubstr("probe_workers=2"));
  EXPECT_THAT(result.err, HasSubstr("log_level=debug"));
  EXPECT_THAT(result.err, HasSubstr("data_dir=" + Path("env-data")));
  EXPECT_THAT(result.err, HasSubstr("SIGTERM"));
}

// Certificates made at test time with the openssl command: a CA, a server certificate for
// 127.0.0.1 signed by it, a client certificate signed by it, and one signed by another CA.
class TlsTest : public ServerMainTest {
 protected:
  void SetUp() override {
    ServerMainTest::SetUp();
    const std::string ec = "ec:" + Path("curve.pem");
    ASSERT_EQ(Openssl({"ecparam", "-name", "prime256v1", "-out", Path("curve.pem")}), 0);
    for (const char* ca : {"ca", "other-ca"}) {
      ASSERT_EQ(Openssl({"req", "-x509", "-newkey", ec, "-nodes", "-days", "1", "-subj",
                         std::string("/CN=") + ca, "-keyout", Path(std::string(ca) + ".key"),
                         "-out", Path(std::string(ca) + ".pem")}),
                0);
    }
    std::ofstream(Path("san.ext")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    for (auto [name, ca] : {std::pair{"server", "ca"}, {"client", "ca"}, {"stranger", "other-ca"}}) {
      const std::string n = name, c = ca;
      ASSERT_EQ(Openssl({"req", "-newkey", ec, "-nodes", "-subj", "/CN=" + n, "-keyout",
                         Path(n + ".key"), "-out", Path(n + ".csr")}),
                0);
      ASSERT_EQ(Openssl({"x509", "-req", "-days", "1", "-in", Path(n + ".csr"), "-CA",
                         Path(c + ".pem"), "-CAkey", Path(c + ".key"), "-CAcreateserial",
                         "-extfile", Path("san.ext"), "-out", Path(n + ".pem")}),
                0);
    }
  }
  int Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    ProcessResult r = RunProcess(args, temp_.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code;
  }
  ChildProcess StartServer(const std::vector<std::string>& tls_flags) {
    std::vector<std::string> argv = {MODELDOCK_SERVER_PATH, "--listen", "127.0.0.1:0",
                                     "--asset-dir", AssetDir(), "--data-dir", Path("data"),
                                     "--torch-threads", "1", "--workers", "1"};
    argv.insert(argv.end(), tls_flags.begin(), tls_flags.end());
    return StartProcess(argv, temp_.path());
  }
  ProcessResult Health(const std::string& address, const std::vector<std::string>& tls_flags) {
    std::vector<std::string> argv = {MODELDOCK_CLI_PATH, "--server", address, "--timeout", "10"};
    argv.insert(argv.end(), tls_flags.begin(), tls_flags.end());
    argv.push_back("health");
    return RunProcess(argv, temp_.path());
  }
};

TEST_F(TlsTest, ServesTlsAndMutualTls) {
  ChildProcess server =
      StartServer({"--tls-cert", Path("server.pem"), "--tls-key", Path("server.key")});
  std::string address = WaitForListening(server);
  ASSERT_FALSE(address.empty()) << ReadFile(server.err_path);
  ProcessResult ok = Health(address, {"--tls-ca", Path("ca.pem")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "SERVING\n");
  // A plaintext client, or one that does not trust the server's CA, gets no answer.
  EXPECT_EQ(Health(address, {}).exit_code, 1);
  EXPECT_THAT(Health(address, {"--tls-ca", Path("other-ca.pem")}).err, HasSubstr("UNAVAILABLE"));
  kill(server.pid, SIGTERM);
  EXPECT_EQ(WaitProcess(server, std::chrono::seconds(60)).exit_code, 0);

  // Mutual TLS: only clients with a certificate from the configured CA complete the handshake.
  server = StartServer({"--tls-cert", Path("server.pem"), "--tls-key", Path("server.key"),
                        "--tls-client-ca", Path("ca.pem")});
  address = WaitForListening(server);
  ASSERT_FALSE(address.empty()) << ReadFile(server.err_path);
  ok = Health(address, {"--tls-ca", Path("ca.pem"), "--tls-cert", Path("client.pem"),
                        "--tls-key", Path("client.key")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(Health(address, {"--tls-ca", Path("ca.pem")}).exit_code, 1);
  ProcessResult stranger = Health(address, {"--tls-ca", Path("ca.pem"), "--tls-cert",
                                            Path("stranger.pem"), "--tls-key",
                                            Path("stranger.key")});
  EXPECT_EQ(stranger.exit_code, 1);
  EXPECT_THAT(stranger.err, HasSubstr("UNAVAILABLE"));
  kill(server.pid, SIGTERM);
  EXPECT_EQ(WaitProcess(server, std::chrono::seconds(60)).exit_code, 0);

  // A TLS file that cannot be read stops the server at start, naming it.
  ProcessResult missing = RunProcess(
      {MODELDOCK_SERVER_PATH, "--listen", "127.0.0.1:0", "--asset-dir", AssetDir(), "--data-dir",
       Path("data"), "--workers", "1", "--tls-cert", Path("absent.pem"), "--tls-key",
       Path("server.key")},
      temp_.path(), {}, std::chrono::seconds(120));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("absent.pem"));
}

// --metadata-url: the metadata goes to PostgreSQL (a fresh schema of the test server), model
// files and the index stay in --data-dir; a restarted server finds its models there.
TEST_F(ServerMainTest, MetadataInPostgres) {
  MODELDOCK_REQUIRE_POSTGRES();
  TestSchema schema;
  ASSERT_EQ(schema.error(), "");
  auto start = [&] {
    return StartProcess({MODELDOCK_SERVER_PATH, "--listen", "127.0.0.1:0", "--asset-dir",
                         AssetDir(), "--data-dir", Path("data"), "--metadata-url", schema.url(),
                         "--workers", "1", "--torch-threads", "1"},
                        temp_.path());
  };
  ChildProcess server = start();
  std::string address = WaitForListening(server);
  ASSERT_FALSE(address.empty()) << ReadFile(server.err_path);
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {MODELDOCK_CLI_PATH, "--server", address, "--timeout", "300"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, temp_.path(), {}, std::chrono::seconds(330));
  };
  for (const char* model : {"demo/fmnist-tops-cnn", "demo/fmnist-footwear-cnn"}) {
    ProcessResult r = cli({"register", AssetPath(std::string(model) + ".pt"), "--metadata",
                           AssetPath(std::string(model) + ".json")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(schema.Exec("SELECT COUNT(*) FROM models WHERE state = 2"), "2");  // READY
  EXPECT_EQ(schema.Exec("SELECT COUNT(*) FROM vectors"), "2");
  EXPECT_FALSE(fs::exists(Path("data/modeldock.db")));
  const std::vector<std::string> recommend = {
      "--json", "recommend", AssetPath("demo/query_tops/query-images-idx3-ubyte"), "--labels",
      AssetPath("demo/query_tops/query-labels-idx1-ubyte"), "--brute-force"};
  ProcessResult r = cli(recommend);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json out = nlohmann::json::parse(r.out);
  ASSERT_EQ(out["results"].size(), 2u) << r.out;
  EXPECT_EQ(out["results"][0]["name"], "fmnist-tops-cnn") << r.out;

  kill(server.pid, SIGTERM);
  ProcessResult stopped = WaitProcess(server, std::chrono::seconds(60));
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_THAT(stopped.err, HasSubstr("metadata=postgresql://"));

  server = start();
  address = WaitForListening(server);
  ASSERT_FALSE(address.empty()) << ReadFile(server.err_path);
  r = cli({"--json", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["models"].size(), 2u) << r.out;
  r = cli(recommend);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["results"][0]["name"], "fmnist-tops-cnn") << r.out;
  kill(server.pid, SIGTERM);
  EXPECT_EQ(WaitProcess(server, std::chrono::seconds(60)).exit_code, 0);
}

// An unreachable PostgreSQL stops the server at start, saying so (no test server needed).
TEST_F(ServerMainTest, UnreachableMetadataUrlExitsOne) {
  ProcessResult r = RunProcess(
      {MODELDOCK_SERVER_PATH, "--listen", "127.0.0.1:0", "--asset-dir", AssetDir(), "--data-dir",
       Path("data"), "--workers", "1", "--metadata-url",
       "postgresql://modeldock:s3cret@127.0.0.1:1/dock"},
      temp_.path(), {}, std::chrono::seconds(120));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot connect to PostgreSQL at postgresql://modeldock:***@"));
  EXPECT_EQ(r.err.find("s3cret"), std::string::npos);
  EXPECT_TRUE(r.out.empty());
}

TEST_F(ServerMainTest, NonLoopbackAddressNeedsAuthOrInsecureOpen) {
  ProcessResult r = RunProcess({MODELDOCK_SERVER_PATH, "--listen", "0.0.0.0:0", "--asset-dir",
                                AssetDir(), "--data-dir", Path("data")},
                               temp_.path(), {}, std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("without --auth"));
  EXPECT_TRUE(r.out.empty());
}

TEST_F(ServerMainTest, AuthCreatesAnAdminKeyOnFirstStart) {
  ChildProcess server = StartProcess({MODELDOCK_SERVER_PATH, "--listen", "127.0.0.1:0",
                                      "--asset-dir", AssetDir(), "--data-dir", Path("data"),
                                      "--workers", "1", "--auth"},
                                     temp_.path());
  const std::string address = WaitForListening(server);
  ASSERT_FALSE(address.empty()) << ReadFile(server.err_path);
  const std::string admin_key = Path("data/admin.key");
  ASSERT_TRUE(fs::exists(admin_key));
  EXPECT_EQ(fs::status(admin_key).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  auto cli = [&](std::vector<std::string> args, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {MODELDOCK_CLI_PATH, "--server", address, "--timeout", "30"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, temp_.path(), env);
  };
  ProcessResult created =
      cli({"--api-key-file", admin_key, "keys", "create", "--role", "consumer", "--name", "ci"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string consumer_key = created.out.substr(0, created.out.find('\n'));
  EXPECT_EQ(consumer_key.rfind("mdk_", 0), 0u);
  ProcessResult anonymous = cli({"list"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_EQ(cli({"list"}, {"MODELDOCK_API_KEY=" + consumer_key}).exit_code, 0);
  ProcessResult denied = cli({"keys", "list"}, {"MODELDOCK_API_KEY=" + consumer_key});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(cli({"health"}).exit_code, 0);  // health stays open
  // The secret is never logged.
  kill(server.pid, SIGTERM);
  ProcessResult stopped = WaitProcess(server, std::chrono::seconds(60));
  EXPECT_EQ(stopped.exit_code, 0);
  EXPECT_THAT(stopped.err, HasSubstr("admin.key"));
  EXPECT_EQ(stopped.err.find(ReadFile(admin_key).substr(0, 40)), std::string::npos);
  EXPECT_EQ(stopped.err.find(consumer_key.substr(0, 40)), std::string::npos);
}

TEST_F(ServerMainTest, BadConfigurationExitsTwo) {
  std::ofstream(Path("bad.json")) << "{not json";
  ProcessResult r = RunProcess({MODELDOCK_SERVER_PATH, "--config", Path("bad.json")},
                               temp_.path(), {}, std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad.json"));
  EXPECT_TRUE(r.out.empty());

  r = RunProcess({MODELDOCK_SERVER_PATH, "--probe-workers", "0", "--data-dir", Path("d")},
                 temp_.path(), {}, std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("probe_workers"));

  r = RunProcess({MODELDOCK_SERVER_PATH, "--no-such-flag"}, temp_.path(), {},
                 std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.out.empty());
}

// The options table is what --help shows: every row's flag with its default, in the table's
// order, and nothing the table does not hold.
TEST_F(ServerMainTest, HelpShowsEveryOptionOfTheTableWithItsDefault) {
  ProcessResult help = RunProcess({MODELDOCK_SERVER_PATH, "--help"}, temp_.path());
  ASSERT_EQ(help.exit_code, 0) << help.err;
  size_t last_main = 0, last_sandbox = 0;
  int flags_in_help = 0;
  for (absl::string_view line : absl::StrSplit(help.out, '\n')) {
    if (absl::StartsWith(line, "  --")) ++flags_in_help;
  }
  for (const server::ServerOption& row : server::ServerOptions()) {
    // "  --NAME" then a space (type, description) or a newline (a long flag's description
    // goes on the next line).
    size_t at = help.out.find(absl::StrCat("  --", row.name, " "));
    if (at == std::string::npos) at = help.out.find(absl::StrCat("  --", row.name, "\n"));
    ASSERT_NE(at, std::string::npos) << row.name << " is not in --help:\n" << help.out;
    // In the table's order within each group of --help.
    size_t& last = row.sandbox_group ? last_sandbox : last_main;
    EXPECT_GT(at, last) << row.name << " is out of the table's order";
    last = at;
    // After the flag: "TEXT=127.0.0.1:50051" (type, checks and default) then the description
    // (on the same line after spaces, or on the next), or the description of a bare flag.
    const size_t token = at + std::strlen(row.name) + 5;
    const std::string line = help.out.substr(token, help.out.find('\n', token) - token) + " ";
    const std::string type = line.substr(0, line.find(' '));
    const std::string shown = server::DefaultText(row);
    if (!shown.empty()) {
      EXPECT_THAT(line, HasSubstr("=" + shown + " ")) << row.name;
    } else {
      EXPECT_THAT(type, ::testing::Not(HasSubstr("="))) << row.name;
    }
  }
  // The table's rows plus --version and --config (and -h,--help).
  EXPECT_EQ(flags_in_help, static_cast<int>(server::ServerOptions().size()) + 2) << help.out;
  // Engine defaults are DockOptions': the server does not restate them.
  const dock::DockOptions engine;
  const server::ServerConfig defaults;
  EXPECT_EQ(defaults.latency_budget_ms, engine.latency_budget_millis);
  EXPECT_EQ(defaults.worker_memory_mb << 20, engine.sandbox.memory_limit_bytes);
  EXPECT_EQ(defaults.scrub_interval, "24h");
}

// A value for `row` that differs from its default, as JSON.
nlohmann::json OtherValue(const server::ServerOption& row) {
  return std::visit(
      [](auto field) -> nlohmann::json {
        using T = std::decay_t<decltype(server::ServerConfig().*field)>;
        if constexpr (std::is_same_v<T, std::string>) return "other";
        if constexpr (std::is_same_v<T, bool>) return true;
        if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          return std::vector<std::string>{"a", "b"};
        }
        if constexpr (std::is_same_v<T, double>) return 12.5;
        if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) return 7;
        return nullptr;
      },
      row.field);
}

// The config file's keys are the table's names (with dashes or underscores) and each sets its
// own field only; the environment variables are the table's.
TEST_F(ServerMainTest, ConfigKeysAndEnvironmentAreTheTables) {
  const server::ServerConfig defaults;
  for (const server::ServerOption& row : server::ServerOptions()) {
    std::string underscored = row.name;
    std::replace(underscored.begin(), underscored.end(), '-', '_');
    for (const std::string& key : {std::string(row.name), underscored}) {
      nlohmann::json file = {{key, OtherValue(row)}};
      std::ofstream(Path("one.json"), std::ios::trunc) << file.dump();
      server::ServerConfig config;
      ASSERT_EQ(server::LoadConfigFile(Path("one.json"), &config), "") << key;
      EXPECT_NE(server::ValueText(row, config), server::ValueText(row, defaults)) << key;
      for (const server::ServerOption& other : server::ServerOptions()) {
        if (&other == &row) continue;
        EXPECT_EQ(server::ValueText(other, config), server::ValueText(other, defaults))
            << key << " changed " << other.name;
      }
    }
  }
  std::set<std::string> env_names;
  for (const server::ServerOption& row : server::ServerOptions()) {
    if (row.env == nullptr) continue;
    env_names.insert(row.env);
    ASSERT_EQ(setenv(row.env, "from-env", 1), 0);
    server::ServerConfig config;
    server::ApplyEnvironment(&config);
    unsetenv(row.env);
    EXPECT_EQ(server::ValueText(row, config), "from-env") << row.env;
  }
  EXPECT_EQ(env_names, (std::set<std::string>{"MODELDOCK_LISTEN", "MODELDOCK_DATA_DIR",
                                              "MODELDOCK_TLS_CERT", "MODELDOCK_TLS_KEY",
                                              "MODELDOCK_PROBE_CACHE_DIR"}));
}

}  // namespace
}  // namespace modeldock::testing
