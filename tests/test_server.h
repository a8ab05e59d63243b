// Shared by the end-to-end tests: a real dock on a temporary data directory behind a real gRPC
// server on 127.0.0.1:0, plus helpers to read the asset fixtures.
#ifndef MODELDOCK_TESTS_TEST_SERVER_H_
#define MODELDOCK_TESTS_TEST_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "client/client.h"
#include "dock/testing/probe_cache.h"
#include "dock/dock.h"
#include "modeldock/v1/modeldock.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/grpc_server.h"

namespace modeldock::testing {

namespace fs = std::filesystem;

// $MODELDOCK_ASSET_DIR (set by ctest), or "" when unset.
inline std::string AssetDir() {
  const char* dir = std::getenv("MODELDOCK_ASSET_DIR");
  return dir == nullptr ? "" : dir;
}

// Asset path, e.g. AssetPath("demo/fmnist-tops-cnn.pt").
inline std::string AssetPath(const std::string& relative) {
  return (fs::path(AssetDir()) / relative).string();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The ModelSpec described by a make_assets.py sidecar (name, version, task, input_shape, ...).
inline v1::ModelSpec SpecFromSidecar(const std::string& json_path) {
  nlohmann::json meta = nlohmann::json::parse(ReadFile(json_path));
  v1::ModelSpec spec;
  spec.set_name(meta.value("name", ""));
  spec.set_version(meta.value("version", ""));
  spec.set_description(meta.value("description", ""));
  spec.set_license(meta.value("license", ""));
  const std::string task = meta.value("task", "");
  spec.set_task(task == "tabular_classification" ? v1::TASK_KIND_TABULAR_CLASSIFICATION
                : task == "text_classification"  ? v1::TASK_KIND_TEXT_CLASSIFICATION
                : task == "audio_classification" ? v1::TASK_KIND_AUDIO_CLASSIFICATION
                                                 : v1::TASK_KIND_IMAGE_CLASSIFICATION);
  for (int64_t d : meta.value("input_shape", std::vector<int64_t>{})) spec.add_input_shape(d);
  for (const std::string label : meta["class_labels"]) spec.add_class_labels(label);
  for (const std::string& tag : meta.value("tags", std::vector<std::string>{})) spec.add_tags(tag);
  return spec;
}

// Registers ASSET_DIR/STEM.pt with the spec of STEM.json for each stem and waits until each is
// READY. False (after a test failure naming the model) when one is refused or does not become
// READY. `ready` (may be null) gets the READY models in order.
inline bool RegisterAssetModels(client::Client& client, const std::vector<std::string>& stems,
                                std::vector<v1::Model>* ready) {
  for (const std::string& stem : stems) {
    auto registered =
        client.Register(AssetPath(stem + ".pt"), SpecFromSidecar(AssetPath(stem + ".json")));
    if (!registered.ok()) {
      ADD_FAILURE() << stem << ": " << registered.status();
      return false;
    }
    auto model = client.Watch(registered->model().id());
    if (!model.ok() || model->state() != v1::MODEL_STATE_READY) {
      ADD_FAILURE() << stem << " did not become READY";
      return false;
    }
    if (ready != nullptr) ready->push_back(*model);
  }
  return true;
}

// Every regular file under `dir` (relative paths), for "nothing was stored" checks.
inline std::set<std::string> FilesUnder(const std::string& dir) {
  std::set<std::string> files;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return files;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) files.insert(fs::relative(entry.path(), dir).string());
  }
  return files;
}

// A fresh temporary directory, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::path(::testing::TempDir()) / "modeldock-e2e-XXXXXX").string();
    path_ = mkdtemp(pattern.data()) != nullptr ? pattern : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A dock and its gRPC server, started on `data_dir`; Stop() + Start() simulates a restart.
class InProcessServer {
 public:
  explicit InProcessServer(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  ~InProcessServer() { Stop(); }

  dock::DockOptions& options() { return options_; }
  void set_max_rpc_threads(int threads) { max_rpc_threads_ = threads; }
  void set_require_api_keys(bool require) { require_api_keys_ = require; }
  dock::Dock* dock() { return dock_.get(); }

  // Returns false (after a test failure) if the dock or the server did not come up.
  bool Start() {
    options_.data_dir = data_dir_;
    options_.probe_cache_dir = dock::test::SharedProbeCacheDir();
    options_.asset_dir = AssetDir();
    options_.torch_threads = 1;
    auto dock = dock::Dock::Create(options_);
    EXPECT_TRUE(dock.ok()) << dock.status();
    if (!dock.ok()) return false;
    dock_ = std::move(*dock);
    auto server = server::GrpcServer::Start(dock_.get(), "127.0.0.1:0", max_rpc_threads_, {},
                                            nullptr, require_api_keys_);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return false;
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::ModelDockService::NewStub(channel_);
    return true;
  }

  void Stop() {
    stub_.reset();
    channel_.reset();
    if (server_) server_->Shutdown(absl::Seconds(5));
    server_.reset();
    if (dock_) dock_->Shutdown();
    dock_.reset();
  }

  const std::string& address() const { return server_->address(); }
  int port() const { return server_->port(); }
  v1::ModelDockService::Stub* stub() { return stub_.get(); }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  const std::string& data_dir() const { return data_dir_; }

 private:
  std::string data_dir_;
  dock::DockOptions options_;
  int max_rpc_threads_ = server::kDefaultMaxRpcThreads;
  bool require_api_keys_ = false;
  std::unique_ptr<dock::Dock> dock_;
  std::unique_ptr<server::GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ModelDockService::Stub> stub_;
};

// Every RPC in the tests has a deadline, so a hang fails instead of blocking ctest.
inline void SetDeadline(grpc::ClientContext* context, int seconds = 120) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

}  // namespace modeldock::testing

#endif  // MODELDOCK_TESTS_TEST_SERVER_H_
