// PostgresMetadataStore: the connection, the schema and its migrations, and the meta table.
// The tables' calls are in postgres_store_{models,probes,learning,keys}.cc, the change feed in
// postgres_change_feed.cc.
#include "dock/postgres_store.h"

#include "absl/strings/str_cat.h"
#include "dock/postgres_connection.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

using postgres_internal::Configure;
using postgres_internal::Exec;
using postgres_internal::InTransaction;
using postgres_internal::kPostgres;
using postgres_internal::OpenConnection;
using postgres_internal::Run;
using postgres_internal::Trimmed;

// The first PostgreSQL schema was SQLite's version 5. Later versions are steps in Migrate's
// list ([i] takes kFirstSchema + i to kFirstSchema + i + 1), added with the SQLite step and
// kMetadataSchemaVersion. A fresh database gets the current tables (dock/store_schema.h, with
// PostgreSQL's types) and then every step, each written so that it is a no-op there (IF NOT
// EXISTS).
constexpr int kFirstSchema = 5;

// Serialises schema creation and migration among servers starting on one database at once
// (concurrent CREATE TABLE IF NOT EXISTS can fail). Any constant; this one spells "modeldoc".
constexpr int64_t kSchemaLockKey = 0x6d6f64656c646f63;

}  // namespace

absl::StatusOr<std::unique_ptr<MetadataStore>> PostgresMetadataStore::Open(const std::string& url) {
  const std::string redacted = RedactUrl(url);
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &parse_error);
  if (options == nullptr) {
    const std::string message = Trimmed(parse_error ? parse_error : "out of memory");
    PQfreemem(parse_error);
    return absl::InvalidArgumentError(absl::StrCat("bad PostgreSQL URL ", redacted, ": ", message));
  }
  PQconninfoFree(options);
  PGconn* conn = OpenConnection(url);
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string message = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL at ", redacted, ": ", message));
  }
  std::unique_ptr<PostgresMetadataStore> store(new PostgresMetadataStore(conn, url, redacted));
  if (absl::Status s = Configure(conn); !s.ok()) return s;
  if (absl::Status s = store->Migrate(); !s.ok()) return s;
  return std::unique_ptr<MetadataStore>(std::move(store));
}

PostgresMetadataStore::~PostgresMetadataStore() { PQfinish(conn_); }
absl::Status PostgresMetadataStore::Migrate() {
  const std::vector<const char*> migrations = {
      // 6: the probe queue replicas share (ClaimProbeJob).
      "ALTER TABLE models ADD COLUMN IF NOT EXISTS lease_owner TEXT NOT NULL DEFAULT ''; "
      "ALTER TABLE models ADD COLUMN IF NOT EXISTS lease_until_ms BIGINT NOT NULL DEFAULT 0",
      // 7: how an outcome was measured (a tune's split and schedule, JSON).
      "ALTER TABLE outcomes ADD COLUMN IF NOT EXISTS detail TEXT NOT NULL DEFAULT ''",
  };  // see kFirstSchema
  if (kFirstSchema + static_cast<int>(migrations.size()) != kMetadataSchemaVersion) {
    return absl::InternalError(absl::StrCat("PostgreSQL migrations end at schema ",
                                            kFirstSchema + migrations.size(), ", not ",
                                            kMetadataSchemaVersion));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // One transaction: PostgreSQL's DDL is transactional, so a failed step leaves the old schema.
  return InTransaction(conn_, [&]() -> absl::Status {
    auto locked = Run(conn_, "schema lock", "SELECT pg_advisory_xact_lock($1)", {kSchemaLockKey});
    if (!locked.ok()) return locked.status();
    if (absl::Status s = Exec(conn_, "schema", store_schema::SchemaSql(kPostgres).c_str());
        !s.ok()) {
      if (absl::IsUnavailable(s)) return s;
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create the modeldock tables in ", url_, ": ", s.message()));
    }
    auto inserted = Run(conn_, "schema version",
                        "INSERT INTO meta(key, value) VALUES('schema_version', $1) "
                        "ON CONFLICT (key) DO NOTHING",
                        {absl::StrCat(kFirstSchema)});
    if (!inserted.ok()) return inserted.status();
    auto version =
        Run(conn_, "schema version", "SELECT value FROM meta WHERE key = 'schema_version'");
    if (!version.ok()) return version.status();
    const int found = std::atoi(version->row(0).Text(0).c_str());
    // A newer schema than this binary understands must not be written to.
    if (found > kMetadataSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("metadata database ", url_, " has schema version ", found,
                       "; this server understands up to ", kMetadataSchemaVersion));
    }
    for (int to = std::max(found, kFirstSchema) + 1; to <= kMetadataSchemaVersion; ++to) {
      if (absl::Status s = Exec(conn_, "migration", migrations[to - kFirstSchema - 1]); !s.ok()) {
        return absl::DataLossError(
            absl::StrCat("migrating ", url_, " to schema ", to, ": ", s.message()));
      }
      auto updated = Run(conn_, "schema version",
                         "UPDATE meta SET value=$1 WHERE key='schema_version'", {absl::StrCat(to)});
      if (!updated.ok()) return updated.status();
    }
    return absl::OkStatus();
  });
}

absl::Status PostgresMetadataStore::EnsureConnected() {
  if (PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL at ", url_, " is unreachable: ", Trimmed(PQerrorMessage(conn_))));
  }
  spdlog::warn("reconnected to PostgreSQL at {}", url_);
  return Configure(conn_);
}

absl::Status PostgresMetadataStore::SetMeta(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return Run(conn_, "meta",
             store_schema::UpsertRow(kPostgres, "meta", store_schema::MetaColumns(key, value)))
      .status();
}

absl::StatusOr<std::string> PostgresMetadataStore::GetMeta(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "meta", "SELECT value FROM meta WHERE key=$1", {key});
  if (!result.ok()) return result.status();
  if (result->size() == 0) return std::string();
  return result->row(0).Text(0);
}
}  // namespace modeldock::dock
