// SqliteMetadataStore: probe outputs and features (with their checksums) and vectors.
#include "dock/sqlite_store.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "dock/sqlite_statement.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"

namespace modeldock::dock {
namespace {

using sqlite_internal::kSqlite;
using sqlite_internal::Statement;
using sqlite_internal::UpdateStateWrite;

}  // namespace

absl::Status SqliteMetadataStore::CommitProbe(
    const ModelRecord& r, const std::string& probe_set_sha, const Tensor& probe_logits,
    const Tensor& probe_features, const std::string& space, const std::vector<float>& vector) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  auto fail = [&](const char* what) {
    std::string msg = sqlite3_errmsg(db_);
    Rollback();
    return absl::InternalError(absl::StrCat("sqlite ", what, ": ", msg));
  };
  // The state first: a model deleted while probing is NOT_FOUND, not a foreign-key failure of
  // its outputs.
  {
    Statement st(db_, UpdateStateWrite(r));
    if (st.Step() != SQLITE_DONE) return fail("state");
    if (sqlite3_changes(db_) == 0) {
      Rollback();
      return absl::NotFoundError(absl::StrCat("model ", r.id, " was deleted while probing"));
    }
  }
  // One [rows, cols] float32 tensor per model and probe set (probe outputs, probe features).
  // Each with its checksum (read back by GetProbeTensor).
  auto put_tensor = [&](const char* table, const char* kind, const Tensor& t) {
    Statement st(
        db_, store_schema::UpsertRow(
                 kSqlite, table, store_schema::ProbeTensorColumns(table, r.id, probe_set_sha, t)));
    if (st.Step() != SQLITE_DONE) return false;
    Statement sum(db_, store_schema::UpsertRow(kSqlite, "probe_checksums",
                                               store_schema::ProbeChecksumColumns(r.id, kind, t)));
    return sum.Step() == SQLITE_DONE;
  };
  if (!put_tensor("probe_outputs", "outputs", probe_logits)) return fail("probe outputs");
  if (!probe_features.shape.empty() && !put_tensor("probe_features", "features", probe_features)) {
    return fail("probe features");
  }
  if (!vector.empty()) {
    Statement st(db_, store_schema::UpsertRow(kSqlite, "vectors",
                                              store_schema::VectorColumns(r.id, space, vector)));
    if (st.Step() != SQLITE_DONE) return fail("vector");
  }
  return Exec("COMMIT");
}

absl::StatusOr<Tensor> SqliteMetadataStore::GetProbeOutputs(const std::string& id,
                                                            const std::string& probe_set_sha) {
  return GetProbeTensor(
      "SELECT rows, cols, logits, c.checksum FROM probe_outputs t LEFT JOIN probe_checksums c "
      "ON c.model_id=t.model_id AND c.kind='outputs' WHERE t.model_id=? AND t.probe_set_sha=?",
      "probe outputs", id, probe_set_sha);
}

absl::StatusOr<Tensor> SqliteMetadataStore::GetProbeFeatures(const std::string& id,
                                                             const std::string& probe_set_sha) {
  return GetProbeTensor(
      "SELECT rows, cols, features, c.checksum FROM probe_features t LEFT JOIN probe_checksums c "
      "ON c.model_id=t.model_id AND c.kind='features' WHERE t.model_id=? AND t.probe_set_sha=?",
      "probe features", id, probe_set_sha);
}

absl::StatusOr<bool> SqliteMetadataStore::HasProbeFeatures(const std::string& id,
                                                           const std::string& probe_set_sha) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT 1 FROM probe_features WHERE model_id=? AND probe_set_sha=?");
  if (!st.status().ok()) return st.status();
  st.Bind(1, id);
  st.Bind(2, probe_set_sha);
  return st.NextRow();
}

absl::StatusOr<Tensor> SqliteMetadataStore::GetProbeTensor(const char* sql, const char* what,
                                                           const std::string& id,
                                                           const std::string& probe_set_sha) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, sql);
  if (!st.status().ok()) return st.status();
  st.Bind(1, id);
  st.Bind(2, probe_set_sha);
  // A failed read is not an absent row: the caller would re-probe or report the model missing.
  absl::StatusOr<bool> row = st.NextRow();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("no ", what, " for ", id));
  Tensor t;
  t.shape = {st.Int(0), st.Int(1)};
  t.values = st.Floats(2);
  return store_rows::CheckedProbeTensor(std::move(t), st.Text(3), what, id);
}

absl::Status SqliteMetadataStore::PutVector(const std::string& id, const std::string& space,
                                            const std::vector<float>& vector) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, store_schema::UpsertRow(kSqlite, "vectors",
                                            store_schema::VectorColumns(id, space, vector)));
  if (st.Step() != SQLITE_DONE) return absl::InternalError(sqlite3_errmsg(db_));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> SqliteMetadataStore::GetVector(const std::string& id,
                                                                  const std::string& space) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT vector FROM vectors WHERE model_id=? AND space=?");
  st.Bind(1, id);
  st.Bind(2, space);
  absl::StatusOr<bool> row = st.NextRow();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("no vector for ", id));
  return st.Floats(0);
}

absl::StatusOr<std::vector<std::pair<std::string, std::vector<float>>>>
SqliteMetadataStore::Vectors(const std::string& space) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT model_id, vector FROM vectors WHERE space=? ORDER BY model_id");
  if (!st.status().ok()) return st.status();
  st.Bind(1, space);
  std::vector<std::pair<std::string, std::vector<float>>> out;
  while (st.Step() == SQLITE_ROW) out.emplace_back(st.Text(0), st.Floats(1));
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return out;
}
}  // namespace modeldock::dock
