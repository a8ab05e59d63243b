// PostgresMetadataStore: the models table, owners and the probe queue's leases.
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
using store_rows::kSelectModels;
using store_rows::ReadModelRecord;

// The database's clock in Unix milliseconds: leases do not depend on the servers' clocks.
constexpr const char* kNowMs = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

}  // namespace

absl::Status PostgresMetadataStore::Insert(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // With its announcement (other servers' registries), in one transaction.
  absl::Status done = InTransaction(conn_, [&]() -> absl::Status {
    auto inserted =
        Run(conn_, "insert",
            store_schema::InsertRow(kPostgres, "models", store_schema::ModelColumns(r)));
    if (!inserted.ok()) return inserted.status();
    // The owner in the same transaction: no model is ever stored without its owner.
    if (!r.owner_key_id.empty()) {
      auto owned = Run(conn_, "insert owner",
                       store_schema::InsertRow(kPostgres, "model_owners",
                                               store_schema::OwnerColumns(r.id, r.owner_key_id)));
      if (!owned.ok()) return owned.status();
    }
    return NotifyChange(conn_, ModelChange::kRecordChanged, r.id);
  });
  if (absl::IsAlreadyExists(done)) {
    return absl::AlreadyExistsError(absl::StrCat("model '", r.spec.name, "' version '",
                                                 r.spec.version, "' is already registered"));
  }
  return done;
}

absl::Status PostgresMetadataStore::UpdateState(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return InTransaction(conn_, [&]() -> absl::Status {
    auto done = RunUpdateState(conn_, r);
    if (!done.ok()) return done.status();
    if (done->changed() == 0) return absl::NotFoundError(absl::StrCat("no model with id ", r.id));
    return NotifyChange(conn_, ModelChange::kRecordChanged, r.id);
  });
}

absl::Status PostgresMetadataStore::UpdateSpec(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return InTransaction(conn_, [&]() -> absl::Status {
    auto done = Run(conn_, "update",
                    store_schema::UpdateRow(kPostgres, "models", store_schema::ModelSpecColumns(r),
                                            {"id", r.id}));
    if (!done.ok()) return done.status();
    if (done->changed() == 0) return absl::NotFoundError(absl::StrCat("no model ", r.id));
    return NotifyChange(conn_, ModelChange::kRecordChanged, r.id);
  });
}

absl::StatusOr<ModelRecord> PostgresMetadataStore::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "get", absl::StrCat(kSelectModels, " WHERE id=$1"), {id});
  if (!result.ok()) return result.status();
  if (result->size() == 0) {
    return absl::NotFoundError(absl::StrCat("no model with id '", id, "'"));
  }
  Row row = result->row(0);
  return ReadModelRecord(row);
}

absl::StatusOr<std::vector<ModelRecord>> PostgresMetadataStore::FindVersions(
    const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(
      conn_, "find versions",
      absl::StrCat(kSelectModels, " WHERE name=$1 ORDER BY created_unix_ms, id", kByBytes), {name});
  if (!result.ok()) return result.status();
  std::vector<ModelRecord> out;
  for (int i = 0; i < result->size(); ++i) {
    Row row = result->row(i);
    auto record = ReadModelRecord(row);
    if (!record.ok()) return record.status();
    out.push_back(std::move(*record));
  }
  return out;
}

absl::StatusOr<std::vector<ModelRecord>> PostgresMetadataStore::ListAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result =
      Run(conn_, "list", absl::StrCat(kSelectModels, " ORDER BY created_unix_ms, id", kByBytes));
  if (!result.ok()) return result.status();
  std::vector<ModelRecord> out;
  for (int i = 0; i < result->size(); ++i) {
    Row row = result->row(i);
    auto record = ReadModelRecord(row);
    if (!record.ok()) return record.status();
    out.push_back(std::move(*record));
  }
  return out;
}

absl::Status PostgresMetadataStore::Delete(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // The dependent rows would cascade (model_owners does); deleting them first is what SQLite does.
  return InTransaction(conn_, [&]() -> absl::Status {
    for (const char* sql :
         {"DELETE FROM probe_outputs WHERE model_id=$1",
          "DELETE FROM probe_features WHERE model_id=$1",
          "DELETE FROM probe_checksums WHERE model_id=$1", "DELETE FROM vectors WHERE model_id=$1",
          "DELETE FROM models WHERE id=$1"}) {
      if (auto done = Run(conn_, "delete", sql, {id}); !done.ok()) return done.status();
    }
    return NotifyChange(conn_, ModelChange::kDeleted, id);
  });
}

absl::StatusOr<std::map<ModelState, int>> PostgresMetadataStore::CountByState() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "count by state", "SELECT state, COUNT(*) FROM models GROUP BY state");
  if (!result.ok()) return result.status();
  std::map<ModelState, int> counts;
  for (int i = 0; i < result->size(); ++i) {
    const Row row = result->row(i);
    counts[static_cast<ModelState>(row.Int(0))] = static_cast<int>(row.Int(1));
  }
  return counts;
}

absl::StatusOr<int> PostgresMetadataStore::CountBySha(const std::string& sha256) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "count", "SELECT COUNT(*) FROM models WHERE sha256=$1", {sha256});
  if (!result.ok()) return result.status();
  return static_cast<int>(result->row(0).Int(0));
}

absl::Status PostgresMetadataStore::SetOwner(const std::string& model_id,
                                             const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return InTransaction(conn_, [&]() -> absl::Status {
    auto done = Run(conn_, "set owner",
                    store_schema::UpsertRow(kPostgres, "model_owners",
                                            store_schema::OwnerColumns(model_id, key_id)));
    if (!done.ok()) return done.status();
    return NotifyChange(conn_, ModelChange::kRecordChanged, model_id);  // records carry it
  });
}

absl::StatusOr<std::string> PostgresMetadataStore::OwnerOf(const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result =
      Run(conn_, "owner", "SELECT key_id FROM model_owners WHERE model_id=$1", {model_id});
  if (!result.ok()) return result.status();
  if (result->size() == 0) return std::string();
  return result->row(0).Text(0);
}

absl::StatusOr<std::optional<std::string>> PostgresMetadataStore::ClaimProbeJob(
    const std::string& owner, absl::Duration lease) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // The queue pattern: a row another server is claiming right now is skipped, not waited for.
  auto result = Run(conn_, "claim probe job",
                    absl::StrCat("UPDATE models SET lease_owner=$1, lease_until_ms=", kNowMs,
                                 " + $2 WHERE id = (SELECT id FROM models WHERE state IN (0, 1) "
                                 "AND lease_until_ms < ",
                                 kNowMs, " ORDER BY created_unix_ms, id", kByBytes,
                                 " LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"),
                    {owner, absl::ToInt64Milliseconds(lease)});
  if (!result.ok()) return result.status();
  if (result->size() == 0) return std::optional<std::string>();
  return std::optional<std::string>(result->row(0).Text(0));
}

absl::Status PostgresMetadataStore::RenewProbeLeases(const std::vector<std::string>& ids,
                                                     const std::string& owner,
                                                     absl::Duration lease) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  for (const std::string& id : ids) {
    auto done = Run(conn_, "renew lease",
                    absl::StrCat("UPDATE models SET lease_until_ms=", kNowMs,
                                 " + $1 WHERE id=$2 AND lease_owner=$3"),
                    {absl::ToInt64Milliseconds(lease), id, owner});
    if (!done.ok()) return done.status();
  }
  return absl::OkStatus();
}
}  // namespace modeldock::dock
