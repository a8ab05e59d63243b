// SqliteMetadataStore: API keys and the audit log.
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
using store_rows::kSelectApiKeys;
using store_rows::kSelectAuditEntries;
using store_rows::ReadApiKey;
using store_rows::ReadAuditEntry;

}  // namespace

absl::Status SqliteMetadataStore::InsertKey(const ApiKeyRow& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, store_schema::InsertRow(kSqlite, "api_keys", store_schema::ApiKeyColumns(key)));
  if (!st.status().ok()) return st.status();
  const int rc = st.Step();
  if (rc == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError(absl::StrCat("API key '", key.id, "' already exists"));
  }
  if (rc != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite insert key: ", sqlite3_errmsg(db_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ApiKeyRow>> SqliteMetadataStore::Keys(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, absl::StrCat(kSelectApiKeys,
                                 id.empty() ? " ORDER BY created_unix_ms, id" : " WHERE id=?")
                        .c_str());
  if (!st.status().ok()) return st.status();
  if (!id.empty()) st.Bind(1, id);
  std::vector<ApiKeyRow> keys;
  while (st.Step() == SQLITE_ROW) keys.push_back(ReadApiKey(st));
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return keys;
}

absl::Status SqliteMetadataStore::RevokeKey(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, store_schema::UpdateRow(kSqlite, "api_keys", store_schema::RevokedKeyColumns(),
                                            {"id", id}));
  if (!st.status().ok()) return st.status();
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite revoke: ", sqlite3_errmsg(db_)));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("no API key '", id, "'"));
  return absl::OkStatus();
}

absl::Status SqliteMetadataStore::AppendAudit(const AuditEntry& e) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, store_schema::InsertRow(kSqlite, "audit_log", store_schema::AuditColumns(e)));
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite audit: ", sqlite3_errmsg(db_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AuditEntry>> SqliteMetadataStore::Audit(int limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, absl::StrCat(kSelectAuditEntries, " ORDER BY id DESC LIMIT ?").c_str());
  if (!st.status().ok()) return st.status();
  st.Bind(1, static_cast<int64_t>(limit));
  std::vector<AuditEntry> out;
  while (st.Step() == SQLITE_ROW) out.push_back(ReadAuditEntry(st));
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return out;
}
}  // namespace modeldock::dock
