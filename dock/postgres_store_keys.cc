// PostgresMetadataStore: API keys and the audit log.
#include "dock/postgres_store.h"

#include "absl/strings/str_cat.h"
#include "dock/postgres_connection.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"

namespace modeldock::dock {
namespace {

using postgres_internal::kByBytes;
using postgres_internal::kPostgres;
using postgres_internal::Param;
using postgres_internal::Row;
using postgres_internal::Run;
using store_rows::kSelectApiKeys;
using store_rows::kSelectAuditEntries;
using store_rows::ReadApiKey;
using store_rows::ReadAuditEntry;

}  // namespace

absl::Status PostgresMetadataStore::InsertKey(const ApiKeyRow& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto done = Run(conn_, "insert key",
                  store_schema::InsertRow(kPostgres, "api_keys", store_schema::ApiKeyColumns(key)));
  if (absl::IsAlreadyExists(done.status())) {
    return absl::AlreadyExistsError(absl::StrCat("API key '", key.id, "' already exists"));
  }
  return done.status();
}

absl::StatusOr<std::vector<ApiKeyRow>> PostgresMetadataStore::Keys(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  const std::string sql =
      id.empty() ? absl::StrCat(kSelectApiKeys, " ORDER BY created_unix_ms, id", kByBytes)
                 : absl::StrCat(kSelectApiKeys, " WHERE id=$1");
  auto result = id.empty() ? Run(conn_, "keys", sql) : Run(conn_, "keys", sql, {id});
  if (!result.ok()) return result.status();
  std::vector<ApiKeyRow> keys;
  for (int i = 0; i < result->size(); ++i) {
    const Row row = result->row(i);
    keys.push_back(ReadApiKey(row));
  }
  return keys;
}

absl::Status PostgresMetadataStore::RevokeKey(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto done = Run(conn_, "revoke",
                  store_schema::UpdateRow(kPostgres, "api_keys", store_schema::RevokedKeyColumns(),
                                          {"id", id}));
  if (!done.ok()) return done.status();
  if (done->changed() == 0) return absl::NotFoundError(absl::StrCat("no API key '", id, "'"));
  return absl::OkStatus();
}

absl::Status PostgresMetadataStore::AppendAudit(const AuditEntry& e) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return Run(conn_, "audit",
             store_schema::InsertRow(kPostgres, "audit_log", store_schema::AuditColumns(e)))
      .status();
}

absl::StatusOr<std::vector<AuditEntry>> PostgresMetadataStore::Audit(int limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // A negative limit is no limit, as in SQLite (LIMIT NULL is LIMIT ALL).
  auto result = Run(conn_, "audit", absl::StrCat(kSelectAuditEntries, " ORDER BY id DESC LIMIT $1"),
                    {limit < 0 ? Param::Null() : Param(limit)});
  if (!result.ok()) return result.status();
  std::vector<AuditEntry> out;
  for (int i = 0; i < result->size(); ++i) {
    const Row row = result->row(i);
    out.push_back(ReadAuditEntry(row));
  }
  return out;
}
}  // namespace modeldock::dock
