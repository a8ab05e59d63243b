// Shared by the metadata store backends (sqlite_store*.cc, postgres_store*.cc): how each table's
// rows are selected and decoded, so that both read the same columns the same way, and the JSON
// and byte helpers that the writing side (dock/store_schema.h) encodes with. A kSelect... constant lists the columns its Read... template reads, in that order; the
// backend appends its own WHERE / ORDER BY clause (placeholders and collation differ). `Row` is
// the backend's current row, with Text(col) (NULL reads as ""), Int(col), Double(col) and
// Floats(col) (float32 values stored as raw bytes).
#ifndef MODELDOCK_DOCK_STORE_ROWS_H_
#define MODELDOCK_DOCK_STORE_ROWS_H_

#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "dock/store_tables.h"
#include "dock/types.h"
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

// One row of kSelectModels. DATA_LOSS when its JSON columns cannot be read (a damaged row must
// not throw out of the store).
template <typename Row>
absl::StatusOr<ModelRecord> ReadModelRecord(Row& row) {
  ModelRecord r;
  r.id = row.Text(0);
  try {
    r.spec.name = row.Text(1);
    r.spec.version = row.Text(2);
    r.spec.description = row.Text(3);
    r.spec.task = static_cast<TaskKind>(row.Int(4));
    r.spec.input_shape = nlohmann::json::parse(row.Text(5)).template get<std::vector<int64_t>>();
    r.spec.class_labels =
        nlohmann::json::parse(row.Text(6)).template get<std::vector<std::string>>();
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
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat("model ", r.id, ": unreadable stored metadata (", e.what(), ")"));
  }
  return r;
}

inline constexpr const char* kSelectApiKeys =
    "SELECT id, name, role, salt, hash, created_unix_ms, revoked FROM api_keys";

// One row of kSelectApiKeys.
template <typename Row>
ApiKeyRow ReadApiKey(Row& row) {
  ApiKeyRow k;
  k.id = row.Text(0);
  k.name = row.Text(1);
  k.role = static_cast<int>(row.Int(2));
  k.salt = row.Text(3);
  k.hash = row.Text(4);
  k.created_unix_ms = row.Int(5);
  k.revoked = row.Int(6) != 0;
  return k;
}

inline constexpr const char* kSelectOutcomes =
    "SELECT id, query_id, model_id, model_name, accuracy, source, weight, reporter, "
    "created_unix_ms, detail FROM outcomes";

// One row of kSelectOutcomes.
template <typename Row>
OutcomeRow ReadOutcome(Row& row) {
  OutcomeRow o;
  o.id = row.Int(0);
  o.query_id = row.Text(1);
  o.model_id = row.Text(2);
  o.model_name = row.Text(3);
  o.accuracy = row.Double(4);
  o.source = row.Text(5);
  o.weight = row.Double(6);
  o.reporter_key_id = row.Text(7);
  o.created_unix_ms = row.Int(8);
  o.detail = row.Text(9);
  return o;
}

inline constexpr const char* kSelectOutcomeQueries =
    "SELECT query_id, task, num_samples, num_classes, prototype_dim, prototypes, stage1, "
    "created_unix_ms FROM outcome_queries";

// One row of kSelectOutcomeQueries; DATA_LOSS if its stage-1 scores are not a JSON object of
// numbers.
template <typename Row>
absl::StatusOr<OutcomeQueryRow> ReadOutcomeQuery(Row& row) {
  OutcomeQueryRow q;
  q.query_id = row.Text(0);
  q.task = static_cast<int>(row.Int(1));
  q.num_samples = row.Int(2);
  q.num_classes = static_cast<int>(row.Int(3));
  const int64_t dim = row.Int(4);
  q.prototypes.values = row.Floats(5);
  q.prototypes.shape = {dim > 0 ? static_cast<int64_t>(q.prototypes.values.size()) / dim : 0, dim};
  try {
    q.stage1 = nlohmann::json::parse(row.Text(6)).template get<std::map<std::string, double>>();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("outcome query ", q.query_id, ": ", e.what()));
  }
  q.created_unix_ms = row.Int(7);
  return q;
}

// A ranker version without its payload (the listing), and with it (one version).
inline constexpr const char* kSelectAlignmentSummaries =
    "SELECT version, created_unix_ms, summary FROM alignments";
inline constexpr const char* kSelectAlignments =
    "SELECT version, created_unix_ms, summary, payload FROM alignments";

// One row of kSelectAlignmentSummaries (payload left empty).
template <typename Row>
AlignmentRow ReadAlignmentSummary(Row& row) {
  AlignmentRow r;
  r.version = row.Int(0);
  r.created_unix_ms = row.Int(1);
  r.summary = row.Text(2);
  return r;
}

// One row of kSelectAlignments.
template <typename Row>
AlignmentRow ReadAlignment(Row& row) {
  AlignmentRow r = ReadAlignmentSummary(row);
  r.payload = row.Text(3);
  return r;
}

inline constexpr const char* kSelectAuditEntries =
    "SELECT id, unix_ms, actor, action, target, detail FROM audit_log";

// One row of kSelectAuditEntries.
template <typename Row>
AuditEntry ReadAuditEntry(Row& row) {
  AuditEntry e;
  e.id = row.Int(0);
  e.unix_ms = row.Int(1);
  e.actor = row.Text(2);
  e.action = row.Text(3);
  e.target = row.Text(4);
  e.detail = row.Text(5);
  return e;
}

// The checksum kept with each stored probe tensor (table probe_checksums, issue 28): SHA-256
// of its shape and float32 bytes. Both backends write it in CommitProbe and compare it on every
// read; a row without one (stored by an older server) is read unchecked.
inline std::string ProbeTensorChecksum(const Tensor& t) {
  Sha256 hash;
  hash.Update(absl::StrCat(t.Rows(), "x", t.RowSize(), "|"));
  hash.Update(t.values.data(), t.values.size() * sizeof(float));
  return hash.HexDigest();
}

// GetProbeTensor's answer for a row read back: DATA_LOSS unless it is consistent and matches
// its stored checksum (empty = none stored).
inline absl::StatusOr<Tensor> CheckedProbeTensor(Tensor t, const std::string& checksum,
                                                 const char* what, const std::string& id) {
  if (!t.IsConsistent()) {
    return absl::DataLossError(absl::StrCat(what, " of ", id, " are corrupt"));
  }
  if (!checksum.empty() && checksum != ProbeTensorChecksum(t)) {
    return absl::DataLossError(
        absl::StrCat("stored ", what, " of ", id, " do not match their checksum"));
  }
  return t;
}

}  // namespace modeldock::dock::store_rows

#endif  // MODELDOCK_DOCK_STORE_ROWS_H_
