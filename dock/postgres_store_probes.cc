// PostgresMetadataStore: probe outputs and features (with their checksums) and vectors.
#include "dock/postgres_store.h"

#include "absl/strings/str_cat.h"
#include "dock/postgres_connection.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"

namespace modeldock::dock {
namespace {

using postgres_internal::InTransaction;
using postgres_internal::kByBytes;
using postgres_internal::kPostgres;
using postgres_internal::NotifyChange;
using postgres_internal::Row;
using postgres_internal::Run;
using postgres_internal::RunUpdateState;
using postgres_internal::TensorFromRow;

}  // namespace

absl::Status PostgresMetadataStore::CommitProbe(
    const ModelRecord& r, const std::string& probe_set_sha, const Tensor& probe_logits,
    const Tensor& probe_features, const std::string& space, const std::vector<float>& vector) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return InTransaction(conn_, [&]() -> absl::Status {
    // The state first: a model deleted while probing is NOT_FOUND, not a foreign-key failure.
    auto state = RunUpdateState(conn_, r);
    if (!state.ok()) return state.status();
    if (state->changed() == 0) {
      return absl::NotFoundError(absl::StrCat("model ", r.id, " was deleted while probing"));
    }
    // One [rows, cols] float32 tensor per model and probe set (probe outputs, probe features).
    // Each with its checksum (read back by GetProbeTensor).
    auto put_tensor = [&](const char* table, const char* kind, const Tensor& t) {
      auto put = Run(
          conn_, table,
          store_schema::UpsertRow(kPostgres, table,
                                  store_schema::ProbeTensorColumns(table, r.id, probe_set_sha, t)));
      if (!put.ok()) return put.status();
      return Run(conn_, "probe checksum",
                 store_schema::UpsertRow(kPostgres, "probe_checksums",
                                         store_schema::ProbeChecksumColumns(r.id, kind, t)))
          .status();
    };
    if (absl::Status s = put_tensor("probe_outputs", "outputs", probe_logits); !s.ok()) return s;
    if (!probe_features.shape.empty()) {
      if (absl::Status s = put_tensor("probe_features", "features", probe_features); !s.ok()) {
        return s;
      }
    }
    if (!vector.empty()) {
      auto put = Run(conn_, "vector",
                     store_schema::UpsertRow(kPostgres, "vectors",
                                             store_schema::VectorColumns(r.id, space, vector)));
      if (!put.ok()) return put.status();
    }
    return NotifyChange(conn_, ModelChange::kReady, r.id);
  });
}

absl::StatusOr<Tensor> PostgresMetadataStore::GetProbeOutputs(const std::string& id,
                                                              const std::string& probe_set_sha) {
  return GetProbeTensor(
      "SELECT rows, cols, logits, c.checksum FROM probe_outputs t LEFT JOIN probe_checksums c "
      "ON c.model_id=t.model_id AND c.kind='outputs' WHERE t.model_id=$1 AND t.probe_set_sha=$2",
      "probe outputs", id, probe_set_sha);
}

absl::StatusOr<Tensor> PostgresMetadataStore::GetProbeFeatures(const std::string& id,
                                                               const std::string& probe_set_sha) {
  return GetProbeTensor(
      "SELECT rows, cols, features, c.checksum FROM probe_features t LEFT JOIN probe_checksums c "
      "ON c.model_id=t.model_id AND c.kind='features' WHERE t.model_id=$1 AND "
      "t.probe_set_sha=$2",
      "probe features", id, probe_set_sha);
}

absl::StatusOr<bool> PostgresMetadataStore::HasProbeFeatures(const std::string& id,
                                                             const std::string& probe_set_sha) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "probe features",
                    "SELECT 1 FROM probe_features WHERE model_id=$1 AND probe_set_sha=$2",
                    {id, probe_set_sha});
  if (!result.ok()) return result.status();
  return result->size() > 0;
}

absl::StatusOr<Tensor> PostgresMetadataStore::GetProbeTensor(const char* sql, const char* what,
                                                             const std::string& id,
                                                             const std::string& probe_set_sha) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, what, sql, {id, probe_set_sha});
  if (!result.ok()) return result.status();
  if (result->size() == 0) return absl::NotFoundError(absl::StrCat("no ", what, " for ", id));
  return store_rows::CheckedProbeTensor(TensorFromRow(result->row(0)), result->row(0).Text(3), what,
                                        id);
}

absl::Status PostgresMetadataStore::PutVector(const std::string& id, const std::string& space,
                                              const std::vector<float>& vector) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return InTransaction(conn_, [&]() -> absl::Status {
    auto put = Run(conn_, "vector",
                   store_schema::UpsertRow(kPostgres, "vectors",
                                           store_schema::VectorColumns(id, space, vector)));
    if (!put.ok()) return put.status();
    return NotifyChange(conn_, ModelChange::kVectorChanged, id);
  });
}

absl::StatusOr<std::vector<float>> PostgresMetadataStore::GetVector(const std::string& id,
                                                                    const std::string& space) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "vector", "SELECT vector FROM vectors WHERE model_id=$1 AND space=$2",
                    {id, space});
  if (!result.ok()) return result.status();
  if (result->size() == 0) return absl::NotFoundError(absl::StrCat("no vector for ", id));
  return result->row(0).Floats(0);
}

absl::StatusOr<std::vector<std::pair<std::string, std::vector<float>>>>
PostgresMetadataStore::Vectors(const std::string& space) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result =
      Run(conn_, "vectors",
          absl::StrCat("SELECT model_id, vector FROM vectors WHERE space=$1 ORDER BY model_id",
                       kByBytes),
          {space});
  if (!result.ok()) return result.status();
  std::vector<std::pair<std::string, std::vector<float>>> out;
  for (int i = 0; i < result->size(); ++i) {
    const Row row = result->row(i);
    out.emplace_back(row.Text(0), row.Floats(1));
  }
  return out;
}
}  // namespace modeldock::dock
