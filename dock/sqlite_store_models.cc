// SqliteMetadataStore: the models table, owners and the probe queue's leases.
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
using store_rows::kSelectModels;
using store_rows::ReadModelRecord;

}  // namespace

absl::Status SqliteMetadataStore::Insert(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  // The row and its owner in one transaction: no model is ever stored without its owner.
  if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  absl::Status s = InsertRowLocked(r);
  if (s.ok() && !r.owner_key_id.empty()) s = SetOwnerLocked(r.id, r.owner_key_id);
  if (!s.ok()) {
    // A failed ROLLBACK leaves nothing to undo: SQLite rolls back by itself when it cannot.
    Rollback();
    return s;
  }
  return Exec("COMMIT");
}

absl::Status SqliteMetadataStore::InsertRowLocked(const ModelRecord& r) {
  Statement st(db_, store_schema::InsertRow(kSqlite, "models", store_schema::ModelColumns(r)));
  if (!st.status().ok()) return st.status();
  int rc = st.Step();
  if (rc == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError(absl::StrCat("model '", r.spec.name, "' version '",
                                                 r.spec.version, "' is already registered"));
  }
  if (rc != SQLITE_DONE)
    return absl::InternalError(absl::StrCat("sqlite insert: ", sqlite3_errmsg(db_)));
  return absl::OkStatus();
}

absl::Status SqliteMetadataStore::UpdateState(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, UpdateStateWrite(r));
  if (!st.status().ok()) return st.status();
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite update: ", sqlite3_errmsg(db_)));
  }
  if (sqlite3_changes(db_) == 0)
    return absl::NotFoundError(absl::StrCat("no model with id ", r.id));
  return absl::OkStatus();
}

absl::Status SqliteMetadataStore::UpdateSpec(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, store_schema::UpdateRow(kSqlite, "models", store_schema::ModelSpecColumns(r),
                                            {"id", r.id}));
  if (!st.status().ok()) return st.status();
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite update: ", sqlite3_errmsg(db_)));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("no model ", r.id));
  return absl::OkStatus();
}

absl::StatusOr<ModelRecord> SqliteMetadataStore::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, absl::StrCat(kSelectModels, " WHERE id=?").c_str());
  if (!st.status().ok()) return st.status();
  st.Bind(1, id);
  absl::StatusOr<bool> row = st.NextRow();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("no model with id '", id, "'"));
  return ReadModelRecord(st);
}

absl::StatusOr<std::vector<ModelRecord>> SqliteMetadataStore::FindVersions(
    const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_,
               absl::StrCat(kSelectModels, " WHERE name=? ORDER BY created_unix_ms, id").c_str());
  if (!st.status().ok()) return st.status();
  st.Bind(1, name);
  std::vector<ModelRecord> out;
  while (st.Step() == SQLITE_ROW) {
    auto record = ReadModelRecord(st);
    if (!record.ok()) return record.status();
    out.push_back(std::move(*record));
  }
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return out;
}

absl::StatusOr<std::vector<ModelRecord>> SqliteMetadataStore::ListAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, absl::StrCat(kSelectModels, " ORDER BY created_unix_ms, id").c_str());
  if (!st.status().ok()) return st.status();
  std::vector<ModelRecord> out;
  while (st.Step() == SQLITE_ROW) {
    auto record = ReadModelRecord(st);
    if (!record.ok()) return record.status();
    out.push_back(std::move(*record));
  }
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return out;
}

absl::Status SqliteMetadataStore::Delete(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  for (const char* sql :
       {"DELETE FROM probe_outputs WHERE model_id=?", "DELETE FROM probe_features WHERE model_id=?",
        "DELETE FROM probe_checksums WHERE model_id=?", "DELETE FROM vectors WHERE model_id=?",
        "DELETE FROM models WHERE id=?"}) {
    Statement st(db_, sql);
    st.Bind(1, id);
    if (st.Step() != SQLITE_DONE) {
      std::string msg = sqlite3_errmsg(db_);
      Rollback();
      return absl::InternalError(absl::StrCat("sqlite delete: ", msg));
    }
  }
  return Exec("COMMIT");
}

absl::StatusOr<std::map<ModelState, int>> SqliteMetadataStore::CountByState() {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT state, COUNT(*) FROM models GROUP BY state");
  if (!st.status().ok()) return st.status();
  std::map<ModelState, int> counts;
  while (st.Step() == SQLITE_ROW) {
    counts[static_cast<ModelState>(st.Int(0))] = static_cast<int>(st.Int(1));
  }
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return counts;
}

absl::StatusOr<int> SqliteMetadataStore::CountBySha(const std::string& sha256) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT COUNT(*) FROM models WHERE sha256=?");
  st.Bind(1, sha256);
  if (st.Step() != SQLITE_ROW) return absl::InternalError(sqlite3_errmsg(db_));
  return static_cast<int>(st.Int(0));
}

absl::Status SqliteMetadataStore::SetOwner(const std::string& model_id, const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return SetOwnerLocked(model_id, key_id);
}

absl::Status SqliteMetadataStore::SetOwnerLocked(const std::string& model_id,
                                                 const std::string& key_id) {
  Statement st(db_, store_schema::UpsertRow(kSqlite, "model_owners",
                                            store_schema::OwnerColumns(model_id, key_id)));
  if (!st.status().ok()) return st.status();
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite set owner: ", sqlite3_errmsg(db_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SqliteMetadataStore::OwnerOf(const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT key_id FROM model_owners WHERE model_id=?");
  if (!st.status().ok()) return st.status();
  st.Bind(1, model_id);
  absl::StatusOr<bool> row = st.NextRow();
  if (!row.ok()) return row.status();
  if (!*row) return std::string();
  return st.Text(0);
}

absl::StatusOr<std::optional<std::string>> SqliteMetadataStore::ClaimProbeJob(
    const std::string& owner, absl::Duration lease) {
  std::lock_guard<std::mutex> lock(mutex_);  // one process, one connection: claims are serial
  const int64_t now = absl::ToUnixMillis(absl::Now());
  std::string id;
  {
    Statement st(db_,
                 "SELECT id FROM models WHERE state IN (0, 1) AND lease_until_ms < ? "
                 "ORDER BY created_unix_ms, id LIMIT 1");
    st.Bind(1, now);
    absl::StatusOr<bool> row = st.NextRow();
    if (!row.ok()) return row.status();
    if (!*row) return std::optional<std::string>();
    id = st.Text(0);
  }
  Statement st(db_, "UPDATE models SET lease_owner=?, lease_until_ms=? WHERE id=?");
  st.Bind(1, owner);
  st.Bind(2, now + absl::ToInt64Milliseconds(lease));
  st.Bind(3, id);
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite claim: ", sqlite3_errmsg(db_)));
  }
  return std::optional<std::string>(id);
}

absl::Status SqliteMetadataStore::RenewProbeLeases(const std::vector<std::string>& ids,
                                                   const std::string& owner, absl::Duration lease) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t until = absl::ToUnixMillis(absl::Now()) + absl::ToInt64Milliseconds(lease);
  for (const std::string& id : ids) {
    Statement st(db_, "UPDATE models SET lease_until_ms=? WHERE id=? AND lease_owner=?");
    st.Bind(1, until);
    st.Bind(2, id);
    st.Bind(3, owner);
    if (st.Step() != SQLITE_DONE) {
      return absl::InternalError(absl::StrCat("sqlite lease: ", sqlite3_errmsg(db_)));
    }
  }
  return absl::OkStatus();
}
}  // namespace modeldock::dock
