// Two modeldock-server processes (replicas) on one PostgreSQL database and one blob directory:
// a model registered on one is listed by the other (its registry in memory) and reaches its
// stage-1 index through LISTEN/NOTIFY within seconds; a deletion on either leaves the other's
// index; a change that no notification announced (a vector row removed behind the servers'
// backs) is repaired by the periodic catch-up. Needs the PostgreSQL of scripts/test.sh
// (MODELDOCK_TEST_PG_URL).
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <regex>
#include <string>
#include <thread>

#include "nlohmann/json.hpp"
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

// The first capture of `pattern` in the file, once it appears (or the process exits): "" else.
std::string WaitForLine(const ChildProcess& child, const std::string& path,
                        const std::string& pattern) {
  const std::regex re(pattern);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < give_up) {
    std::smatch match;
    const std::string text = ReadFile(path);
    if (std::regex_search(text, match, re)) return match[1];
    if (waitpid(child.pid, nullptr, WNOHANG) != 0) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

// GET http://127.0.0.1:PORT/metrics; the value of `family` (-1 if unreadable).
double MetricValue(const std::string& address, const std::string& family) {
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t n;
      while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
    }
  }
  close(fd);
  std::smatch match;
  if (!std::regex_search(response, match, std::regex("\n" + family + " ([0-9.e+-]+)"))) return -1;
  return std::stod(match[1]);
}

// Polls `done` every 200 ms until it holds or `limit` passes; whether it held.
bool Eventually(const std::function<bool()>& done,
                std::chrono::seconds limit = std::chrono::seconds(30)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < give_up) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return done();
}

// One modeldock-server; killed at the end of the test whatever happened.
struct Replica {
  ChildProcess process;
  std::string address;  // gRPC
  std::string metrics;  // HTTP
  ~Replica() {
    if (process.pid > 0 && waitpid(process.pid, nullptr, WNOHANG) == 0) {
      kill(process.pid, SIGKILL);
      waitpid(process.pid, nullptr, 0);
    }
  }
};

class ReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MODELDOCK_REQUIRE_POSTGRES();
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
  }
  std::string Path(const std::string& name) { return (fs::path(temp_.path()) / name).string(); }

  void Start(Replica* replica, const std::string& data_dir, const std::string& url,
             const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {
        MODELDOCK_SERVER_PATH, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        "--asset-dir", AssetDir(), "--data-dir", Path(data_dir), "--blob-dir", Path("shared"),
        "--metadata-url", url, "--workers", "1", "--torch-threads", "1", "--probe-workers", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    replica->process = StartProcess(argv, temp_.path());
  }
  void WaitReady(Replica* replica) {
    replica->address = WaitForLine(replica->process, replica->process.out_path,
                                   "modeldock-server listening on (\\S+:[0-9]+)\n");
    ASSERT_FALSE(replica->address.empty()) << ReadFile(replica->process.err_path);
    replica->metrics = WaitForLine(replica->process, replica->process.err_path,
                                   "metrics listening on (\\S+:[0-9]+)");
    ASSERT_FALSE(replica->metrics.empty()) << ReadFile(replica->process.err_path);
  }
  ProcessResult Cli(const Replica& replica, std::vector<std::string> args) {
    std::vector<std::string> argv = {MODELDOCK_CLI_PATH, "--server", replica.address,
                                     "--timeout", "300"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, temp_.path(), {}, std::chrono::seconds(330));
  }
  // The stage-1 recommendation (knowledge vectors and proxies; no model is run) as JSON.
  nlohmann::json Recommend(const Replica& replica) {
    ProcessResult r = Cli(replica, {"--json", "recommend",
                                    AssetPath("demo/query_tops/query-images-idx3-ubyte"),
                                    "--labels", AssetPath("demo/query_tops/query-labels-idx1-ubyte"),
                                    "--budget-ms", "1"});
    if (r.exit_code != 0) return nlohmann::json{{"error", r.err}};
    return nlohmann::json::parse(r.out);
  }
  // Results by model name: (similarity, reason).
  static std::map<std::string, std::pair<double, std::string>> ByName(const nlohmann::json& out) {
    std::map<std::string, std::pair<double, std::string>> by_name;
    if (!out.contains("results")) return by_name;
    for (const auto& r : out["results"]) {
      by_name[r["name"].get<std::string>()] = {r["similarity"].get<double>(),
                                               r["reason"].get<std::string>()};
    }
    return by_name;
  }

  TempDir temp_;
};

TEST_F(ReplicasTest, RegisterOnOneRecommendOnTheOther) {
  TestSchema schema;
  ASSERT_EQ(schema.error(), "");
  Replica one, two;
  Start(&one, "data1", schema.url());  // both at once: schema creation is serialised
  Start(&two, "data2", schema.url());
  ASSERT_NO_FATAL_FAILURE(WaitReady(&one));
  ASSERT_NO_FATAL_FAILURE(WaitReady(&two));

  // Registered (and probed: register waits for READY) on replica one.
  for (const char* model : {"demo/fmnist-tops-cnn", "demo/fmnist-footwear-cnn"}) {
    ProcessResult r = Cli(one, {"register", AssetPath(std::string(model) + ".pt"), "--metadata",
                                AssetPath(std::string(model) + ".json")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // The files are in the shared blob directory, not in either data directory.
  int shared_blobs = 0;
  for (const auto& entry : fs::recursive_directory_iterator(Path("shared/blobs"))) {
    shared_blobs += entry.is_regular_file() ? 1 : 0;
  }
  EXPECT_EQ(shared_blobs, 2);
  EXPECT_FALSE(fs::exists(Path("data1/blobs")));
  EXPECT_FALSE(fs::exists(Path("data2/blobs")));

  // Replica two lists and shows them (the metadata is shared; its registry in memory follows
  // replica one's registrations and probe commits through the same notifications as its index,
  // within milliseconds) ...
  ProcessResult r;
  EXPECT_TRUE(Eventually(
      [&] {
        r = Cli(two, {"--json", "list"});
        return r.exit_code == 0 && nlohmann::json::parse(r.out)["models"].size() == 2u;
      },
      std::chrono::seconds(8)))
      << r.out << r.err;
  EXPECT_TRUE(Eventually(
      [&] {
        r = Cli(two, {"--json", "show", "fmnist-tops-cnn"});
        return r.exit_code == 0 && nlohmann::json::parse(r.out)["model"]["state"] == "READY";
      },
      std::chrono::seconds(8)))
      << r.out << r.err;

  // ... and holds their knowledge vectors in its own index: the notification of replica one's
  // probe commits reached it (within seconds, long before the 10 s catch-up would matter).
  EXPECT_TRUE(Eventually([&] { return MetricValue(two.metrics, "modeldock_index_vectors") == 2; },
                         std::chrono::seconds(8)))
      << MetricValue(two.metrics, "modeldock_index_vectors") << "\n"
      << ReadFile(two.process.err_path);
  nlohmann::json out;
  EXPECT_TRUE(Eventually([&] {
    out = Recommend(two);
    auto by_name = ByName(out);
    return by_name.size() == 2 && by_name["fmnist-tops-cnn"].first != 0 &&
           by_name["fmnist-footwear-cnn"].first != 0;
  })) << out.dump(1);
  EXPECT_THAT(ByName(out)["fmnist-tops-cnn"].second, HasSubstr("knowledge-vector similarity"));
  // A stage-2 run on replica two reads the model file replica one stored.
  r = Cli(two, {"--json", "recommend", AssetPath("demo/query_tops/query-images-idx3-ubyte"),
                "--labels", AssetPath("demo/query_tops/query-labels-idx1-ubyte"), "--brute-force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  out = nlohmann::json::parse(r.out);
  ASSERT_EQ(out["results"].size(), 2u) << r.out;
  EXPECT_EQ(out["results"][0]["name"], "fmnist-tops-cnn") << r.out;
  EXPECT_TRUE(out["results"][0]["scored"].get<bool>()) << r.out;

  // Deleted on replica two: it leaves replica one's index and recommendations.
  r = Cli(two, {"rm", "fmnist-tops-cnn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Eventually([&] { return MetricValue(one.metrics, "modeldock_index_vectors") == 1; },
                         std::chrono::seconds(8)))
      << ReadFile(one.process.err_path);
  out = Recommend(one);
  auto by_name = ByName(out);
  EXPECT_EQ(by_name.size(), 1u) << out.dump(1);
  EXPECT_EQ(by_name.count("fmnist-tops-cnn"), 0u) << out.dump(1);

  // A change no notification announces (a vector row removed directly) is repaired by the
  // periodic comparison of each index with the store (every 10 s).
  EXPECT_EQ(schema.Exec("DELETE FROM vectors"), "");
  for (Replica* replica : {&one, &two}) {
    EXPECT_TRUE(Eventually(
        [&] { return MetricValue(replica->metrics, "modeldock_index_vectors") == 0; },
        std::chrono::seconds(30)))
        << ReadFile(replica->process.err_path);
    EXPECT_THAT(ReadFile(replica->process.err_path), HasSubstr("index catch-up: 0 vectors added "
                                                               "or replaced, 1 removed"));
  }

  for (Replica* replica : {&one, &two}) {
    kill(replica->process.pid, SIGTERM);
    ProcessResult stopped = WaitProcess(replica->process, std::chrono::seconds(60));
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  }
}

// Probing jobs are a queue in PostgreSQL: whichever replica claimed the job is killed (-9) while
// it probes, and the other one takes the job over once the lease (3 s here) has expired.
TEST_F(ReplicasTest, KilledMidProbeTheOtherReplicaFinishes) {
  TestSchema schema;
  ASSERT_EQ(schema.error(), "");
  Replica one, two;
  Start(&one, "data1", schema.url(), {"--probe-lease-s", "3"});
  Start(&two, "data2", schema.url(), {"--probe-lease-s", "3"});
  ASSERT_NO_FATAL_FAILURE(WaitReady(&one));
  ASSERT_NO_FATAL_FAILURE(WaitReady(&two));

  ProcessResult r = Cli(one, {"register", AssetPath("demo/fmnist-tops-cnn.pt"), "--metadata",
                              AssetPath("demo/fmnist-tops-cnn.json"), "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string owner;  // "host/pid/random" of the replica probing it
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (owner.empty() && std::chrono::steady_clock::now() < give_up) {
    owner = schema.Exec("SELECT lease_owner FROM models WHERE state = 1");  // PROBING
    if (owner.rfind("error", 0) == 0) owner.clear();
    if (owner.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(owner.empty()) << "no replica was seen probing; state "
                              << schema.Exec("SELECT state FROM models");
  auto owns = [&](const Replica& replica) {
    return owner.find("/" + std::to_string(replica.process.pid) + "/") != std::string::npos;
  };
  ASSERT_TRUE(owns(one) || owns(two)) << owner;
  Replica& victim = owns(one) ? one : two;
  Replica& survivor = owns(one) ? two : one;
  kill(victim.process.pid, SIGKILL);
  waitpid(victim.process.pid, nullptr, 0);
  ASSERT_EQ(schema.Exec("SELECT state FROM models"), "1")
      << "the probe finished before the kill; nothing was taken over";

  EXPECT_TRUE(Eventually([&] { return schema.Exec("SELECT state FROM models") == "2"; },
                         std::chrono::seconds(60)))
      << schema.Exec("SELECT state_reason FROM models") << "\n"
      << ReadFile(survivor.process.err_path);
  const std::string finisher = schema.Exec("SELECT lease_owner FROM models");
  EXPECT_NE(finisher, owner);
  EXPECT_THAT(finisher, HasSubstr("/" + std::to_string(survivor.process.pid) + "/"));
  r = Cli(survivor, {"--json", "show", "fmnist-tops-cnn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["model"]["state"], "READY") << r.out;
  EXPECT_TRUE(
      Eventually([&] { return MetricValue(survivor.metrics, "modeldock_index_vectors") == 1; },
                 std::chrono::seconds(8)));
  kill(survivor.process.pid, SIGTERM);
  EXPECT_EQ(WaitProcess(survivor.process, std::chrono::seconds(60)).exit_code, 0);
}

}  // namespace
}  // namespace modeldock::testing
