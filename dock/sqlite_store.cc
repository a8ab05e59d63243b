#include "dock/sqlite_store.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "dock/store_rows.h"
#include "nlohmann/json.hpp"

namespace modeldock::dock {
namespace {

using store_rows::kSelectAlignments;
using store_rows::kSelectAlignmentSummaries;
using store_rows::kSelectApiKeys;
using store_rows::kSelectAuditEntries;
using store_rows::kSelectModels;
using store_rows::kSelectOutcomeQueries;
using store_rows::kSelectOutcomes;
using store_rows::LayersJson;
using store_rows::ReadAlignment;
using store_rows::ReadAlignmentSummary;
using store_rows::ReadApiKey;
using store_rows::ReadAuditEntry;
using store_rows::ReadModelRecord;
using store_rows::ReadOutcome;
using store_rows::ReadOutcomeQuery;
using store_rows::RemoteJson;
using store_rows::ShapeJson;
using store_rows::StringsJson;

// Schema versions (kMetadataSchemaVersion): 1 = the first; 2 adds models.kind (feature
// extractors); 3 adds models.layers (embed_layers: JSON [{"name", "dim"}]); 4 makes (name,
// version) unique instead of name (model versions); 5 adds models.remote (remote models over
// KServe v2: JSON {"endpoint", "model", "version"}, '' for stored files); 6 adds
// models.lease_owner and lease_until_ms (the probe queue replicas share; ClaimProbeJob). Older
// databases are
// migrated at Open, one transaction per step.
constexpr int kSchemaVersion = kMetadataSchemaVersion;

// The models table as a new database creates it. Names are unique per version (schema 4;
// before, a name was unique); `remote` is a remote model's target as JSON (schema 5).
constexpr const char* kModelsColumns = R"sql((
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
  remote TEXT NOT NULL DEFAULT '',
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_until_ms INTEGER NOT NULL DEFAULT 0,
  UNIQUE(name, version)
))sql";

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

constexpr const char* kSchema = R"sql(
CREATE INDEX IF NOT EXISTS models_sha256 ON models(sha256);
CREATE TABLE IF NOT EXISTS probe_outputs (
  model_id TEXT PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
  probe_set_sha TEXT NOT NULL,
  rows INTEGER NOT NULL,
  cols INTEGER NOT NULL,
  logits BLOB NOT NULL
);
-- Compressed probe features (PCA of embed(x), or of the logits without embed) for stage-1 proxies.
CREATE TABLE IF NOT EXISTS probe_features (
  model_id TEXT PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
  probe_set_sha TEXT NOT NULL,
  rows INTEGER NOT NULL,
  cols INTEGER NOT NULL,
  features BLOB NOT NULL
);
-- SHA-256 of each stored probe tensor (kind 'outputs' or 'features'), checked on every read;
-- a table beside the tensors, so older databases need no migration (their rows read unchecked).
CREATE TABLE IF NOT EXISTS probe_checksums (
  model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  checksum TEXT NOT NULL,
  PRIMARY KEY (model_id, kind)
);
CREATE TABLE IF NOT EXISTS vectors (
  model_id TEXT PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
  space TEXT NOT NULL,
  vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- API keys: a salted SHA-256 of the secret, never the secret.
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role INTEGER NOT NULL,
  salt TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL
);
-- Which key registered a model (added beside models, so older databases need no migration).
CREATE TABLE IF NOT EXISTS model_owners (
  model_id TEXT PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
  key_id TEXT NOT NULL
);
-- Outcome records (issue 9). A query keeps its class prototypes in the reference encoder's space
-- (never the samples) and the stage-1 scores of the models at report time (JSON id -> score).
CREATE TABLE IF NOT EXISTS outcome_queries (
  query_id TEXT PRIMARY KEY,
  task INTEGER NOT NULL,
  num_samples INTEGER NOT NULL,
  num_classes INTEGER NOT NULL,
  prototype_dim INTEGER NOT NULL,
  prototypes BLOB NOT NULL,
  stage1 TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL
);
-- Outcomes outlive their model's deletion (training ignores models no longer in the dock).
CREATE TABLE IF NOT EXISTS outcomes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  query_id TEXT NOT NULL REFERENCES outcome_queries(query_id),
  model_id TEXT NOT NULL,
  model_name TEXT NOT NULL,
  accuracy REAL NOT NULL,
  source TEXT NOT NULL,
  weight REAL NOT NULL,
  reporter TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  UNIQUE(query_id, model_id, source)
);
CREATE INDEX IF NOT EXISTS outcomes_model ON outcomes(model_id);
-- Who changed what, when.
CREATE TABLE IF NOT EXISTS audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  unix_ms INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL
);
-- Trained ranker versions; the serving one is meta 'serving_alignment'.
CREATE TABLE IF NOT EXISTS alignments (
  version INTEGER PRIMARY KEY,
  created_unix_ms INTEGER NOT NULL,
  summary TEXT NOT NULL,
  payload TEXT NOT NULL
);
)sql";

// RAII statement with typed binders.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
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

// The fields that change after registration; bound as 1..6, the id as 7.
constexpr const char* kUpdateState =
    "UPDATE models SET state=?, state_reason=?, has_embed=?, feature_dim=?, probe_millis=?, "
    "revision=? WHERE id=?";

void BindState(Statement& st, const ModelRecord& r) {
  st.Bind(1, static_cast<int64_t>(r.state));
  st.Bind(2, r.state_reason);
  st.Bind(3, static_cast<int64_t>(r.has_embed));
  st.Bind(4, r.feature_dim);
  st.Bind(5, r.probe_millis);
  st.Bind(6, r.revision);
  st.Bind(7, r.id);
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
  if (absl::Status s = store->Exec(absl::StrCat("CREATE TABLE IF NOT EXISTS models ",
                                                kModelsColumns, ";", kSchema));
      !s.ok()) {
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
  Statement st(db_,
               "INSERT INTO api_keys(id, name, role, salt, hash, created_unix_ms, revoked) "
               "VALUES(?,?,?,?,?,?,0)");
  if (!st.status().ok()) return st.status();
  st.Bind(1, key.id);
  st.Bind(2, key.name);
  st.Bind(3, static_cast<int64_t>(key.role));
  st.Bind(4, key.salt);
  st.Bind(5, key.hash);
  st.Bind(6, key.created_unix_ms);
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
  Statement st(db_, "INSERT OR REPLACE INTO model_owners(model_id, key_id) VALUES(?,?)");
  if (!st.status().ok()) return st.status();
  st.Bind(1, model_id);
  st.Bind(2, key_id);
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
  Statement st(db_,
               "INSERT INTO models(id, name, version, description, task, input_shape, "
               "class_labels, license, tags, state, state_reason, sha256, size_bytes, has_embed, "
               "feature_dim, created_unix_ms, probe_millis, revision, kind, layers, remote) "
               "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  if (!st.status().ok()) return st.status();
  st.Bind(1, r.id);
  st.Bind(2, r.spec.name);
  st.Bind(3, r.spec.version);
  st.Bind(4, r.spec.description);
  st.Bind(5, static_cast<int64_t>(r.spec.task));
  st.Bind(6, ShapeJson(r.spec.input_shape));
  st.Bind(7, StringsJson(r.spec.class_labels));
  st.Bind(8, r.spec.license);
  st.Bind(9, StringsJson(r.spec.tags));
  st.Bind(10, static_cast<int64_t>(r.state));
  st.Bind(11, r.state_reason);
  st.Bind(12, r.sha256);
  st.Bind(13, r.size_bytes);
  st.Bind(14, static_cast<int64_t>(r.has_embed));
  st.Bind(15, r.feature_dim);
  st.Bind(16, r.created_unix_ms);
  st.Bind(17, r.probe_millis);
  st.Bind(18, r.revision);
  st.Bind(19, static_cast<int64_t>(r.spec.kind));
  st.Bind(20, LayersJson(r.layers));
  st.Bind(21, RemoteJson(r.spec));
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
  Statement st(db_, kUpdateState);
  if (!st.status().ok()) return st.status();
  BindState(st, r);
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
    Statement st(db_, kUpdateState);
    BindState(st, r);
    if (st.Step() != SQLITE_DONE) return fail("state");
    if (sqlite3_changes(db_) == 0) {
      Rollback();
      return absl::NotFoundError(absl::StrCat("model ", r.id, " was deleted while probing"));
    }
  }
  // One [rows, cols] float32 tensor per model and probe set (probe outputs, probe features).
  // Each with its checksum (read back by GetProbeTensor).
  auto put_tensor = [&](const char* sql, const char* kind, const Tensor& t) {
    Statement st(db_, sql);
    st.Bind(1, r.id);
    st.Bind(2, probe_set_sha);
    st.Bind(3, t.Rows());
    st.Bind(4, t.RowSize());
    st.BindBlob(5, t.values.data(), t.values.size() * sizeof(float));
    if (st.Step() != SQLITE_DONE) return false;
    Statement sum(db_, "INSERT OR REPLACE INTO probe_checksums(model_id, kind, checksum) "
                       "VALUES(?,?,?)");
    sum.Bind(1, r.id);
    sum.Bind(2, std::string(kind));
    sum.Bind(3, store_rows::ProbeTensorChecksum(t));
    return sum.Step() == SQLITE_DONE;
  };
  if (!put_tensor("INSERT OR REPLACE INTO probe_outputs(model_id, probe_set_sha, rows, cols, "
                  "logits) VALUES(?,?,?,?,?)",
                  "outputs", probe_logits)) {
    return fail("probe outputs");
  }
  if (!probe_features.shape.empty() &&
      !put_tensor("INSERT OR REPLACE INTO probe_features(model_id, probe_set_sha, rows, cols, "
                  "features) VALUES(?,?,?,?,?)",
                  "features", probe_features)) {
    return fail("probe features");
  }
  if (!vector.empty()) {
    Statement st(db_, "INSERT OR REPLACE INTO vectors(model_id, space, vector) VALUES(?,?,?)");
    st.Bind(1, r.id);
    st.Bind(2, space);
    st.BindBlob(3, vector.data(), vector.size() * sizeof(float));
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
  Statement st(db_, "INSERT OR REPLACE INTO vectors(model_id, space, vector) VALUES(?,?,?)");
  st.Bind(1, id);
  st.Bind(2, space);
  st.BindBlob(3, vector.data(), vector.size() * sizeof(float));
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
    Statement st(db_,
                 "INSERT OR REPLACE INTO outcome_queries(query_id, task, num_samples, num_classes, "
                 "prototype_dim, prototypes, stage1, created_unix_ms) VALUES(?,?,?,?,?,?,?,?)");
    st.Bind(1, q.query_id);
    st.Bind(2, static_cast<int64_t>(q.task));
    st.Bind(3, q.num_samples);
    st.Bind(4, static_cast<int64_t>(q.num_classes));
    st.Bind(5, q.prototypes.RowSize());
    st.BindBlob(6, q.prototypes.values.data(), q.prototypes.values.size() * sizeof(float));
    st.Bind(7, nlohmann::json(q.stage1).dump());
    st.Bind(8, q.created_unix_ms);
    if (st.Step() != SQLITE_DONE) return fail("outcome query");
  }
  for (const OutcomeRow& o : outcomes) {
    Statement st(db_,
                 "INSERT OR REPLACE INTO outcomes(query_id, model_id, model_name, accuracy, source, "
                 "weight, reporter, created_unix_ms) VALUES(?,?,?,?,?,?,?,?)");
    st.Bind(1, q.query_id);
    st.Bind(2, o.model_id);
    st.Bind(3, o.model_name);
    st.BindDouble(4, o.accuracy);
    st.Bind(5, o.source);
    st.BindDouble(6, o.weight);
    st.Bind(7, o.reporter_key_id);
    st.Bind(8, o.created_unix_ms);
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
  Statement st(db_, "INSERT INTO alignments(version, created_unix_ms, summary, payload) "
                    "VALUES(?,?,?,?)");
  st.Bind(1, version);
  st.Bind(2, row.created_unix_ms);
  st.Bind(3, row.summary);
  st.Bind(4, row.payload);
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
  Statement st(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)");
  st.Bind(1, key);
  st.Bind(2, value);
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
  Statement st(db_, "UPDATE models SET description=?, license=?, tags=?, revision=? WHERE id=?");
  st.Bind(1, r.spec.description);
  st.Bind(2, r.spec.license);
  st.Bind(3, StringsJson(r.spec.tags));
  st.Bind(4, r.revision);
  st.Bind(5, r.id);
  if (st.Step() != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("sqlite update: ", sqlite3_errmsg(db_)));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("no model ", r.id));
  return absl::OkStatus();
}

absl::Status SqliteMetadataStore::AppendAudit(const AuditEntry& e) {
  std::lock_guard<std::mutex> lock(mutex_);
  Statement st(db_,
               "INSERT INTO audit_log(unix_ms, actor, action, target, detail) "
               "VALUES(?,?,?,?,?)");
  st.Bind(1, e.unix_ms);
  st.Bind(2, e.actor);
  st.Bind(3, e.action);
  st.Bind(4, e.target);
  st.Bind(5, e.detail);
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
