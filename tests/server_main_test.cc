// modeldock-server run as a process: the one "listening on" line scripts wait for, the
// configuration layering (config file < environment < flags), health, and a clean exit on
// SIGTERM.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <thread>

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

  kill(server.pid, SIGTERM);
  ProcessResult result = WaitProcess(server, std::chrono::seconds(60));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "modeldock-server listening on " + address + "\n");
  // The effective configuration is logged once, at start.
  EXPECT_THAT(result.err, HasSubstr("max_model_mb=7"));
  EXPECT_THAT(result.err, HasSubstr("probe_workers=2"));
  EXPECT_THAT(result.err, HasSubstr("log_level=debug"));
  EXPECT_THAT(result.err, HasSubstr("data_dir=" + Path("env-data")));
  EXPECT_THAT(result.err, HasSubstr("SIGTERM"));
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

}  // namespace
}  // namespace modeldock::testing
