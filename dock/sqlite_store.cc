#include "dock/sqlite_store.h"

#include <sqlite3.h>

#include <variant>

#include "absl/strings/str_cat.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"

namespace modeldock::dock {
namespace {

using store_rows::kSelectAlignments;
using store_rows::kSelectAlignmentSummaries;
using store_rows::kSelectApiKeys;
using store_rows::kSelectAuditEntries;
using store_rows::kSelectModels;
using store_rows::kSelectOutcomeQueries;
using store_rows::kSelectOutcomes;
using store_rows::ReadAlignment;
using store_rows::ReadAlignmentSummary;
using store_rows::ReadApiKey;
using store_rows::ReadAuditEntry;
using store_rows::ReadModelRecord;
using store_rows::ReadOutcome;
using store_rows::ReadOutcomeQuery;

// Schema versions (kMetadataSchemaVersion): 1 = the first; 2 adds models.kind (feature
// extractors); 3 adds models.layers (embed_layers: JSON [{"name", "dim"}]); 4 makes (name,
// version) unique instead of name (model versions); 5 adds models.remote (remote models over
// KServe v2: JSON {"endpoint", "model", "version"}, '' for stored files); 6 adds
// models.lease_owner and lease_until_ms (the probe queue replicas share; ClaimProbeJob). Older
// databases are
// migrated at Open, one transaction per step.
constexpr int kSchemaVersion = kMetadataSchemaVersion;
constexpr store_schema::Dialect kSqlite = store_schema::Dialect::kSqlite;

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

// RAII statement with typed binders.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  // A row's write (dock/store_schema.h), its values bound.
  Statement(sqlite3* db, const store_schema::Write& write) : Statement(db, write.sql.c_str()) {
    for (size_t i = 0; i < write.params.size(); ++i) {
      BindValue(static_cast<int>(i) + 1, write.params[i]);
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  absl::Status status() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
  }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindDouble(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  double Double(int col) { return sqlite3_column_double(stmt_, col); }
  void BindValue(int i, const store_schema::Value& v) {
    if (const auto* text = std::get_if<std::string>(&v)) {
      Bind(i, *text);
    } else if (const auto* integer = std::get_if<int64_t>(&v)) {
      Bind(i, *integer);
    } else if (const auto* real = std::get_if<double>(&v)) {
      BindDouble(i, *real);
    } else {
      const auto& floats = std::get<store_schema::FloatBytes>(v);
      BindBlob(i, floats.data, floats.count * sizeof(float));
    }
  }
  void BindBlob(int i, const void* data, size_t size) {
    sqlite3_bind_blob(stmt_, i, data, static_cast<int>(size), SQLITE_TRANSIENT);
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return last_step_ = sqlite3_step(stmt_); }
  // One step of a single-row read: true at a row, false when there is none, an error when the
  // read failed (which must not pass for "no row").
  absl::StatusOr<bool> NextRow() {
    if (!status().ok()) return status();
    const int rc = Step();
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return absl::InternalError(absl::StrCat("sqlite read: ", sqlite3_errmsg(db_)));
  }
  // After a `while (Step() == SQLITE_ROW)` loop: OK if it ended at the last row, not on an error
  // (a read that fails halfway must not pass for a shorter list).
  absl::Status Finished() const {
    if (last_step_ == SQLITE_DONE) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("sqlite read: ", sqlite3_errmsg(db_)));
  }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, col))
             : std::string();
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  std::vector<float> Floats(int col) {
    const void* blob = sqlite3_column_blob(stmt_, col);
    return store_rows::FloatsFromBytes(blob, sqlite3_column_bytes(stmt_, col));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  int last_step_ = SQLITE_OK;
};

// The fields that change after registration (UpdateState, CommitProbe).
store_schema::Write UpdateStateWrite(const ModelRecord& r) {
  return store_schema::UpdateRow(kSqlite, "models", store_schema::ModelStateColumns(r),
                                 {"id", r.id});
}

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
        "metadata database ", path, " is read-only (a read-only filesystem, or no write "
        "permission on the file or its directory): the server must write it; mount the data "
        "directory read-write or give --data-dir another place"));
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<SqliteMetadataStore> store(new SqliteMetadataStore(db));
  for (const char* pragma : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;",
                             "PRAGMA foreign_keys=ON;"}) {
    if (absl::Status s = store->Exec(pragma); !s.ok()) return s;
  }
  if (absl::Status s = store->Exec(store_schema::SchemaSql(kSqlite)); !s.ok()) {
    return absl::DataLossError(absl::StrCat("metadata database ", path,
                                            " is not a modeldock database: ", s.message()));
  }
  // A newer schema than this binary understands must not be written to.
  int found = 0;  // 0 = a new database
  {
    // Read and finished before any migration: an open statement would lock the tables.
    Statement version(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (version.Step() == SQLITE_ROW) found = std::stoi(version.Text(0));
  }
  if (found > 0) {
    if (found > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "metadata database ", path, " has schema version ", found,
          "; this server understands up to ", kSchemaVersion));
    }
    // Migration steps, oldest first: step i takes schema i + 1 to i + 2.
    // SQLite cannot drop a UNIQUE constraint: schema 4 rebuilds the table (SQLite's documented
    // procedure; foreign keys off meanwhile, so that dropping the old table cascades nowhere).
    const std::string rebuild_models = absl::StrCat(
        "CREATE TABLE models_new ", kModelsColumnsV4, "; INSERT INTO models_new SELECT id, name, "
        "version, description, task, input_shape, class_labels, license, tags, state, "
        "state_reason, sha256, size_bytes, has_embed, feature_dim, created_unix_ms, probe_millis, "
        "revision, kind, layers FROM models; DROP TABLE models; "
        "ALTER TABLE models_new RENAME TO models; "
        "CREATE INDEX IF NOT EXISTS models_sha256 ON models(sha256)");
    const std::vector<std::string> migrations = {
        "ALTER TABLE models ADD COLUMN kind INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE models ADD COLUMN layers TEXT NOT NULL DEFAULT '[]'",
        rebuild_models,
        "ALTER TABLE models ADD COLUMN remote TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE models ADD COLUMN lease_owner TEXT NOT NULL DEFAULT ''; "
        "ALTER TABLE models ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0",
    };
    for (int to = found + 1; to <= kSchemaVersion; ++to) {
      const bool rebuild = to == 4;
      // The rebuild drops and renames the models table: with foreign keys on, the drop would
      // cascade to the owners, so the migration does not run unless they are off.
      absl::Status s = rebuild ? store->Exec("PRAGMA foreign_keys=OFF;") : absl::OkStatus();
      if (s.ok()) {
        s = store->Exec(absl::StrCat("BEGIN IMMEDIATE; ", migrations[to - 2],
                                     "; UPDATE meta SET value='", to,
                                     "' WHERE key='schema_version'; COMMIT;"));
        if (!s.ok()) store->Rollback();
      }
      // Without foreign keys deletions would leave owners behind: fail rather than serve so.
      if (rebuild) s.Update(store->Exec("PRAGMA foreign_keys=ON;"));
      if (!s.ok()) {
        return absl::DataLossError(
            absl::StrCat("migrating ", path, " to schema ", to, ": ", s.message()));
      }
    }
  } else {
    if (absl::Status s = store->Exec(absl::StrCat(
            "INSERT INTO meta(key, value) VALUES('schema_version', '", kSchemaVersion, "')"));
        !s.ok()) {
      return s;
    }
  }
  return std::unique_ptr<MetadataStore>(std::move(store));
}

SqliteMetadataStore::~SqliteMetadataStore() { sqlite3_close(db_); }

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
  Statement st(db_, "UPDATE api_keys SET revoked=1 WHERE id=?");
  if (!st.status().ok()) return st.status();
  st.Bind(1, id);
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite revoke: ", sqlite3_errmsg(db_)));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("no API key '", id, "'"));
  return absl::OkStatus();
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
    return absl::AlreadyExistsError(absl::StrCat(
        "model '", r.spec.name, "' version '", r.spec.version, "' is already registered"));
  }
  if (rc != SQLITE_DONE) return absl::InternalError(absl::StrCat("sqlite insert: ", sqlite3_errmsg(db_)));
  return absl::OkStatus();
}

absl::Status SqliteMetadataStore::UpdateState(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, UpdateStateWrite(r));
  if (!st.status().ok()) return st.status();
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite update: ", sqlite3_errmsg(db_)));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("no model with id ", r.id));
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

absl::StatusOr<int> SqliteMetadataStore::CountBySha(const std::string& sha256) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, "SELECT COUNT(*) FROM models WHERE sha256=?");
  st.Bind(1, sha256);
  if (st.Step() != SQLITE_ROW) return absl::InternalError(sqlite3_errmsg(db_));
  return static_cast<int>(st.Int(0));
}

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
    Statement st(db_, store_schema::UpsertRow(
                          kSqlite, table,
                          store_schema::ProbeTensorColumns(table, r.id, probe_set_sha, t)));
    if (st.Step() != SQLITE_DONE) return false;
    Statement sum(db_, store_schema::UpsertRow(kSqlite, "probe_checksums",
                                               store_schema::ProbeChecksumColumns(r.id, kind, t)));
    return sum.Step() == SQLITE_DONE;
  };
  if (!put_tensor("probe_outputs", "outputs", probe_logits)) return fail("probe outputs");
  if (!probe_features.shape.empty() &&
      !put_tensor("probe_features", "features", probe_features)) {
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
                                                   const std::string& owner,
                                                   absl::Duration lease) {
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

absl::Status SqliteMetadataStore::AddOutcomes(const OutcomeQueryRow& q,
                                              const std::vector<OutcomeRow>& outcomes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  auto fail = [&](const char* what) {
    std::string msg = sqlite3_errmsg(db_);
    Rollback();
    return absl::InternalError(absl::StrCat("sqlite ", what, ": ", msg));
  };
  {
    Statement st(db_, store_schema::UpsertRow(kSqlite, "outcome_queries",
                                              store_schema::OutcomeQueryColumns(q)));
    if (st.Step() != SQLITE_DONE) return fail("outcome query");
  }
  // INSERT OR REPLACE deletes the outcome of the same (query, model, source) and inserts a new
  // row: a new report gets a new id and so lists as the newest.
  for (const OutcomeRow& o : outcomes) {
    Statement st(db_, store_schema::UpsertRow(kSqlite, "outcomes",
                                              store_schema::OutcomeColumns(q.query_id, o)));
    if (st.Step() != SQLITE_DONE) return fail("outcome");
  }
  return Exec("COMMIT");
}

absl::StatusOr<std::vector<OutcomeRow>> SqliteMetadataStore::Outcomes(const std::string& model_id,
                                                                      int limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string sql = kSelectOutcomes;
  if (!model_id.empty()) sql += " WHERE model_id=?";
  sql += " ORDER BY id DESC";
  if (limit > 0) absl::StrAppend(&sql, " LIMIT ", limit);
  Statement st(db_, sql.c_str());
  if (!st.status().ok()) return st.status();
  if (!model_id.empty()) st.Bind(1, model_id);
  std::vector<OutcomeRow> rows;
  while (st.Step() == SQLITE_ROW) rows.push_back(ReadOutcome(st));
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return rows;
}

absl::StatusOr<std::pair<int64_t, int64_t>> SqliteMetadataStore::CountOutcomes(
    const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_,
               model_id.empty()
                   ? "SELECT COUNT(*), COUNT(DISTINCT query_id) FROM outcomes"
                   : "SELECT COUNT(*), COUNT(DISTINCT query_id) FROM outcomes WHERE model_id=?");
  if (!model_id.empty()) st.Bind(1, model_id);
  if (st.Step() != SQLITE_ROW) return absl::InternalError(sqlite3_errmsg(db_));
  return std::make_pair(st.Int(0), st.Int(1));
}

absl::StatusOr<std::vector<OutcomeQueryRow>> SqliteMetadataStore::OutcomeQueries() {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_,
               absl::StrCat(kSelectOutcomeQueries, " ORDER BY created_unix_ms, query_id").c_str());
  if (!st.status().ok()) return st.status();
  std::vector<OutcomeQueryRow> rows;
  while (st.Step() == SQLITE_ROW) {
    absl::StatusOr<OutcomeQueryRow> q = ReadOutcomeQuery(st);
    if (!q.ok()) return q.status();
    rows.push_back(*std::move(q));
  }
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return rows;
}

absl::StatusOr<int64_t> SqliteMetadataStore::InsertAlignment(const AlignmentRow& row) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  int64_t version = 1;
  {
    Statement st(db_, "SELECT COALESCE(MAX(version), 0) + 1 FROM alignments");
    if (st.Step() == SQLITE_ROW) version = st.Int(0);
  }
  Statement st(db_, store_schema::InsertRow(kSqlite, "alignments",
                                            store_schema::AlignmentColumns(version, row)));
  if (st.Step() != SQLITE_DONE) {
    std::string msg = sqlite3_errmsg(db_);
    Rollback();
    return absl::InternalError(absl::StrCat("sqlite alignment: ", msg));
  }
  if (absl::Status s = Exec("COMMIT"); !s.ok()) return s;
  return version;
}

absl::StatusOr<std::vector<AlignmentRow>> SqliteMetadataStore::Alignments() {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, absl::StrCat(kSelectAlignmentSummaries, " ORDER BY version").c_str());
  if (!st.status().ok()) return st.status();
  std::vector<AlignmentRow> rows;
  while (st.Step() == SQLITE_ROW) rows.push_back(ReadAlignmentSummary(st));
  if (absl::Status read = st.Finished(); !read.ok()) return read;
  return rows;
}

absl::StatusOr<AlignmentRow> SqliteMetadataStore::Alignment(int64_t version) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, absl::StrCat(kSelectAlignments, " WHERE version=?").c_str());
  st.Bind(1, version);
  absl::StatusOr<bool> row = st.NextRow();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::NotFoundError(absl::StrCat("no alignment version ", version));
  }
  return ReadAlignment(st);
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

absl::Status SqliteMetadataStore::UpdateSpec(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_, store_schema::UpdateRow(kSqlite, "models", store_schema::ModelSpecColumns(r),
                                            {"id", r.id}));
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite update: ", sqlite3_errmsg(db_)));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("no model ", r.id));
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

}  // namespace modeldock::dock
