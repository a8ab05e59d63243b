// SqliteMetadataStore: the connection, transactions, the schema and its migrations, and the
// meta table. The tables' calls are in sqlite_store_{models,probes,learning,keys}.cc.
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

// Schema versions (kMetadataSchemaVersion): 1 = the first; 2 adds models.kind (feature
// extractors); 3 adds models.layers (embed_layers: JSON [{"name", "dim"}]); 4 makes (name,
// version) unique instead of name (model versions); 5 adds models.remote (remote models over
// KServe v2: JSON {"endpoint", "model", "version"}, '' for stored files); 6 adds
// models.lease_owner and lease_until_ms (the probe queue replicas share; ClaimProbeJob); 7 adds
// outcomes.detail (JSON of how an outcome was measured: a tune's split and schedule). A new
// database gets the current tables (dock/store_schema.h); older ones are migrated at Open, one
// transaction per step.
constexpr int kSchemaVersion = kMetadataSchemaVersion;

// The models table as schema 4 rebuilt it (frozen: later columns come by their own steps).
constexpr const char* kModelsColumnsV4 = R"sql((
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  description TEXT NOT NULL,
  task INTEGER NOT NULL,
  input_shape TEXT NOT NULL,
  class_labels TEXT NOT NULL,
  license TEXT NOT NULL,
  tags TEXT NOT NULL,
  state INTEGER NOT NULL,
  state_reason TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  has_embed INTEGER NOT NULL,
  feature_dim INTEGER NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  probe_millis INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  kind INTEGER NOT NULL DEFAULT 0,
  layers TEXT NOT NULL DEFAULT '[]',
  UNIQUE(name, version)
))sql";

}  // namespace

absl::StatusOr<std::unique_ptr<MetadataStore>> SqliteMetadataStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open metadata database ", path, ": ", msg));
  }
  // SQLite falls back to a read-only connection when it cannot write the file (a read-only
  // filesystem, no permission); every write would then fail with a vague message. Say so now.
  if (sqlite3_db_readonly(db, "main") == 1) {
    sqlite3_close(db);
    return absl::FailedPreconditionError(absl::StrCat(
        "metadata database ", path,
        " is read-only (a read-only filesystem, or no write "
        "permission on the file or its directory): the server must write it; mount the data "
        "directory read-write or give --data-dir another place"));
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<SqliteMetadataStore> store(new SqliteMetadataStore(db));
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", "PRAGMA foreign_keys=ON;"}) {
    if (absl::Status s = store->Exec(pragma); !s.ok()) return s;
  }
  if (absl::Status s = store->Exec(store_schema::SchemaSql(kSqlite)); !s.ok()) {
    return absl::DataLossError(
        absl::StrCat("metadata database ", path, " is not a modeldock database: ", s.message()));
  }
  // A newer schema than this binary understands must not be written to.
  int found = 0;  // 0 = a new database
  {
    // Read and finished before any migration: an open statement would lock the tables.
    Statement version(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (version.Step() == SQLITE_ROW) found = std::stoi(version.Text(0));
  }
  if (found > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("metadata database ", path, " has schema version ", found,
                     "; this server understands up to ", kSchemaVersion));
  }
  if (absl::Status s = store->Migrate(found, path); !s.ok()) return s;
  return std::unique_ptr<MetadataStore>(std::move(store));
}

absl::Status SqliteMetadataStore::Migrate(int found, const std::string& path) {
  if (found == 0) {  // a new database: its tables are current
    return Exec(absl::StrCat("INSERT INTO meta(key, value) VALUES('schema_version', '",
                             kSchemaVersion, "')"));
  }
  // Migration steps, oldest first: step i takes schema i + 1 to i + 2.
  // SQLite cannot drop a UNIQUE constraint: schema 4 rebuilds the table (SQLite's documented
  // procedure; foreign keys off meanwhile, so that dropping the old table cascades nowhere).
  const std::string rebuild_models = absl::StrCat(
      "CREATE TABLE models_new ", kModelsColumnsV4,
      "; INSERT INTO models_new SELECT id, name, "
      "version, description, task, input_shape, class_labels, license, tags, state, "
      "state_reason, sha256, size_bytes, has_embed, feature_dim, created_unix_ms, probe_millis, "
      "revision, kind, layers FROM models; DROP TABLE models; "
      "ALTER TABLE models_new RENAME TO models; "
      "CREATE INDEX IF NOT EXISTS models_sha256 ON models(sha256)");
  // The outcomes table came without a step (CREATE TABLE IF NOT EXISTS at open): an older
  // database that never had it got it current, detail included, just now.
  bool outcomes_have_detail = false;
  {
    Statement column(db_,
                     "SELECT COUNT(*) FROM pragma_table_info('outcomes') WHERE name='detail'");
    outcomes_have_detail = column.Step() == SQLITE_ROW && column.Int(0) > 0;
  }
  const std::vector<std::string> migrations = {
      "ALTER TABLE models ADD COLUMN kind INTEGER NOT NULL DEFAULT 0",
      "ALTER TABLE models ADD COLUMN layers TEXT NOT NULL DEFAULT '[]'",
      rebuild_models,
      "ALTER TABLE models ADD COLUMN remote TEXT NOT NULL DEFAULT ''",
      "ALTER TABLE models ADD COLUMN lease_owner TEXT NOT NULL DEFAULT ''; "
      "ALTER TABLE models ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0",
      outcomes_have_detail ? "SELECT 1"
                           : "ALTER TABLE outcomes ADD COLUMN detail TEXT NOT NULL DEFAULT ''",
  };
  for (int to = found + 1; to <= kSchemaVersion; ++to) {
    const bool rebuild = to == 4;
    // The rebuild drops and renames the models table: with foreign keys on, the drop would
    // cascade to the owners, so the migration does not run unless they are off.
    absl::Status s = rebuild ? Exec("PRAGMA foreign_keys=OFF;") : absl::OkStatus();
    if (s.ok()) {
      s = Exec(absl::StrCat("BEGIN IMMEDIATE; ", migrations[to - 2], "; UPDATE meta SET value='",
                            to, "' WHERE key='schema_version'; COMMIT;"));
      if (!s.ok()) Rollback();
    }
    // Without foreign keys deletions would leave owners behind: fail rather than serve so.
    if (rebuild) s.Update(Exec("PRAGMA foreign_keys=ON;"));
    if (!s.ok()) {
      return absl::DataLossError(
          absl::StrCat("migrating ", path, " to schema ", to, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

SqliteMetadataStore::~SqliteMetadataStore() { sqlite3_close(db_); }
void SqliteMetadataStore::Rollback() {
  // Ignoring the result is right: a ROLLBACK fails only when no transaction is open, which
  // happens when SQLite already rolled back by itself (an I/O error, a full disk); either way
  // nothing of the failed transaction is committed, and the caller returns its own error.
  Exec("ROLLBACK").IgnoreError();
}

absl::Status SqliteMetadataStore::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("sqlite: ", msg));
  }
  return absl::OkStatus();
}

absl::Status SqliteMetadataStore::SetMeta(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_,
               store_schema::UpsertRow(kSqlite, "meta", store_schema::MetaColumns(key, value)));
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite meta: ", sqlite3_errmsg(db_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SqliteMetadataStore::GetMeta(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT value FROM meta WHERE key=?");
  st.Bind(1, key);
  absl::StatusOr<bool> row = st.NextRow();
  if (!row.ok()) return row.status();
  if (!*row) return std::string();
  return st.Text(0);
}
}  // namespace modeldock::dock
