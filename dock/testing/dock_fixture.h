// Tests only: what the dock tests share — the assets, the demo models' sidecars, registering a
// demo model and waiting for a model to settle (dock_test, integrity_test,
// knowledge_spaces_dock_test, replica_sync_test, store_faults_test).
#ifndef MODELDOCK_DOCK_TESTING_DOCK_FIXTURE_H_
#define MODELDOCK_DOCK_TESTING_DOCK_FIXTURE_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/datasets.h"
#include "common/sha256.h"
#include "dock/dock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace modeldock::dock::test {

// The build's assets (scripts/make_assets.py), from MODELDOCK_ASSET_DIR; "" when unset.
inline std::string AssetDir() {
  const char* dir = std::getenv("MODELDOCK_ASSET_DIR");
  return dir ? dir : "";
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The spec of a demo model from its JSON sidecar (name, version, description, input shape,
// labels, license, tags).
inline ModelSpec SpecFromSidecar(const std::string& json_path) {
  std::ifstream in(json_path);
  const nlohmann::json j = nlohmann::json::parse(in);
  ModelSpec spec;
  spec.name = j.at("name");
  spec.version = j.value("version", "");
  spec.description = j.value("description", "");
  spec.input_shape = j.at("input_shape").get<std::vector<int64_t>>();
  spec.class_labels = j.at("class_labels").get<std::vector<std::string>>();
  spec.license = j.value("license", "");
  spec.tags = j.value("tags", std::vector<std::string>{});
  return spec;
}

// The demo tops query (grey 1x28x28 images of 4 Fashion-MNIST classes, labelled), top_k 10.
inline RecommendQuery DemoTopsQuery() {
  const std::string dir = (std::filesystem::path(AssetDir()) / "demo" / "query_tops").string();
  datasets::LoadOptions load;
  load.labels_path = dir + "/query-labels-idx1-ubyte";
  auto dataset = datasets::LoadIdx(dir + "/query-images-idx3-ubyte", load);
  EXPECT_TRUE(dataset.ok()) << dataset.status();
  RecommendQuery query;
  if (dataset.ok()) query.dataset = *std::move(dataset);
  query.top_k = 10;
  return query;
}

// Waits (up to 600 waits of `step`) until the model leaves PENDING/PROBING; the last record seen.
inline ModelRecord WaitUntilSettled(Dock& dock, ModelRecord record,
                                    absl::Duration step = absl::Milliseconds(500)) {
  for (int i = 0; i < 600 && (record.state == ModelState::kPending ||
                              record.state == ModelState::kProbing); ++i) {
    auto next = dock.WaitForChange(record.id, record.revision, step);
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok()) break;
    record = *std::move(next);
  }
  return record;
}

// Uploads demo/<name>.pt (its sidecar's spec) for `owner`; the registration's result, not
// waited for.
inline absl::StatusOr<RegisterResult> UploadDemo(Dock& dock, const std::string& name,
                                                 const std::string& owner = "") {
  const std::string base = (std::filesystem::path(AssetDir()) / "demo" / name).string();
  const std::string bytes = ReadFile(base + ".pt");
  auto upload = dock.BeginRegistration(SpecFromSidecar(base + ".json"),
                                       static_cast<int64_t>(bytes.size()), Sha256::Of(bytes),
                                       owner);
  if (!upload.ok()) return upload.status();
  if (absl::Status s = (*upload)->Write(bytes); !s.ok()) return s;
  return dock.FinishRegistration(std::move(*upload));
}

// Registers demo/<name>.pt and waits until it settles; expects it READY.
inline ModelRecord RegisterDemo(Dock& dock, const std::string& name) {
  auto result = UploadDemo(dock, name);
  EXPECT_TRUE(result.ok()) << name << ": " << result.status();
  if (!result.ok()) return {};
  ModelRecord record = WaitUntilSettled(dock, result->model);
  EXPECT_EQ(record.state, ModelState::kReady) << name << ": " << record.state_reason;
  return record;
}

}  // namespace modeldock::dock::test

#endif  // MODELDOCK_DOCK_TESTING_DOCK_FIXTURE_H_
