// Shared by the metadata store backends (sqlite_store.cc, postgres_store.cc): how a model row is
// selected and encoded, so that both read and write the same columns the same way.
#ifndef MODELDOCK_DOCK_STORE_ROWS_H_
#define MODELDOCK_DOCK_STORE_ROWS_H_

#include <cstring>
#include <string>
#include <vector>

#include "dock/dock.h"
#include "nlohmann/json.hpp"

namespace modeldock::dock::store_rows {

inline std::string ShapeJson(const std::vector<int64_t>& v) { return nlohmann::json(v).dump(); }
inline std::string StringsJson(const std::vector<std::string>& v) {
  return nlohmann::json(v).dump();
}
inline std::string LayersJson(const std::vector<ModelLayer>& layers) {
  nlohmann::json out = nlohmann::json::array();
  for (const ModelLayer& layer : layers) out.push_back({{"name", layer.name}, {"dim", layer.dim}});
  return out.dump();
}
inline std::vector<ModelLayer> ParseLayers(const std::string& text) {
  std::vector<ModelLayer> layers;
  for (const nlohmann::json& layer : nlohmann::json::parse(text)) {
    layers.push_back({layer.at("name").get<std::string>(), layer.at("dim").get<int64_t>()});
  }
  return layers;
}

// A remote model's target (schema 5), '' for a stored file.
inline std::string RemoteJson(const ModelSpec& spec) {
  if (!IsRemote(spec)) return std::string();
  return nlohmann::json{{"endpoint", spec.remote_endpoint},
                        {"model", spec.remote_model},
                        {"version", spec.remote_version}}
      .dump();
}

// Float32 values stored as raw bytes (BLOB, bytea): native byte order, as written.
inline std::vector<float> FloatsFromBytes(const void* data, size_t bytes) {
  std::vector<float> out(bytes / sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), data, out.size() * sizeof(float));
  return out;
}

// Columns read by ReadModelRecord, in its order; a WHERE / ORDER BY clause may follow.
inline constexpr const char* kSelectModels =
    "SELECT id, name, version, description, task, input_shape, class_labels, license, tags, "
    "state, state_reason, sha256, size_bytes, has_embed, feature_dim, created_unix_ms, "
    "probe_millis, revision, kind, model_owners.key_id, layers, remote FROM models "
    "LEFT JOIN model_owners ON model_owners.model_id = models.id";

// One row of kSelectModels; `row` has Text(col) (NULL reads as "") and Int(col).
template <typename Row>
ModelRecord ReadModelRecord(Row& row) {
  ModelRecord r;
  r.id = row.Text(0);
  r.spec.name = row.Text(1);
  r.spec.version = row.Text(2);
  r.spec.description = row.Text(3);
  r.spec.task = static_cast<TaskKind>(row.Int(4));
  r.spec.input_shape = nlohmann::json::parse(row.Text(5)).template get<std::vector<int64_t>>();
  r.spec.class_labels = nlohmann::json::parse(row.Text(6)).template get<std::vector<std::string>>();
  r.spec.license = row.Text(7);
  r.spec.tags = nlohmann::json::parse(row.Text(8)).template get<std::vector<std::string>>();
  r.state = static_cast<ModelState>(row.Int(9));
  r.state_reason = row.Text(10);
  r.sha256 = row.Text(11);
  r.size_bytes = row.Int(12);
  r.has_embed = row.Int(13) != 0;
  r.feature_dim = row.Int(14);
  r.created_unix_ms = row.Int(15);
  r.probe_millis = row.Int(16);
  r.revision = row.Int(17);
  r.spec.kind = static_cast<ModelKind>(row.Int(18));
  r.owner_key_id = row.Text(19);  // NULL (no owner) reads as ""
  r.layers = ParseLayers(row.Text(20));
  if (const std::string remote = row.Text(21); !remote.empty()) {
    const nlohmann::json target = nlohmann::json::parse(remote);
    r.spec.remote_endpoint = target.at("endpoint").template get<std::string>();
    r.spec.remote_model = target.at("model").template get<std::string>();
    r.spec.remote_version = target.value("version", "");
  }
  return r;
}

}  // namespace modeldock::dock::store_rows

#endif  // MODELDOCK_DOCK_STORE_ROWS_H_
