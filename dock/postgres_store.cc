#include "dock/postgres_store.h"

#include <libpq-fe.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"
#include "spdlog/spdlog.h"

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

// The first PostgreSQL schema was SQLite's version 5. Later versions are steps in Migrate's
// list ([i] takes kFirstSchema + i to kFirstSchema + i + 1), added with the SQLite step and
// kMetadataSchemaVersion. A fresh database gets the current tables (dock/store_schema.h, with
// PostgreSQL's types) and then every step, each written so that it is a no-op there (IF NOT
// EXISTS).
constexpr int kFirstSchema = 5;
constexpr store_schema::Dialect kPostgres = store_schema::Dialect::kPostgres;

// Serialises schema creation and migration among servers starting on one database at once
// (concurrent CREATE TABLE IF NOT EXISTS can fail). Any constant; this one spells "modeldoc".
constexpr int64_t kSchemaLockKey = 0x6d6f64656c646f63;

constexpr Oid kByteaOid = 17;  // pg_type.h

// Text columns compare and sort byte-wise, as in SQLite, whatever the database's collation.
constexpr const char* kByBytes = " COLLATE \"C\"";

// A statement parameter: text that the server converts to the column's type, or raw bytes
// (bytea, sent in binary: no escaping), or NULL.
struct Param {
  Param(const std::string& v) : value(v) {}     // NOLINT: implicit by design, as bind arguments
  Param(const char* v) : value(v) {}            // NOLINT
  Param(int64_t v) : value(absl::StrCat(v)) {}  // NOLINT
  Param(int v) : value(absl::StrCat(v)) {}      // NOLINT
  // 17 significant digits: the server reads back the same double.
  Param(double v) : value(absl::StrFormat("%.17g", v)) {}  // NOLINT
  static Param Bytes(const void* data, size_t size) {
    Param p(std::string(static_cast<const char*>(data), size));
    p.binary = true;
    return p;
  }
  // A value of a row's write (dock/store_schema.h).
  static Param From(const store_schema::Value& v) {
    if (const auto* text = std::get_if<std::string>(&v)) return Param(*text);
    if (const auto* integer = std::get_if<int64_t>(&v)) return Param(*integer);
    if (const auto* real = std::get_if<double>(&v)) return Param(*real);
    const auto& floats = std::get<store_schema::FloatBytes>(v);
    return Bytes(floats.data, floats.count * sizeof(float));
  }
  static Param Null() {
    Param p("");
    p.null = true;
    return p;
  }
  std::string value;
  bool binary = false;
  bool null = false;
};

// One row of a result, read as text (the server's text output format).
class Row {
 public:
  Row(const PGresult* result, int row) : result_(result), row_(row) {}
  std::string Text(int col) const {
    if (PQgetisnull(result_, row_, col)) return std::string();
    return std::string(PQgetvalue(result_, row_, col), PQgetlength(result_, row_, col));
  }
  int64_t Int(int col) const { return std::strtoll(PQgetvalue(result_, row_, col), nullptr, 10); }
  double Double(int col) const { return std::strtod(PQgetvalue(result_, row_, col), nullptr); }
  // A bytea column (hex text) as float32 values.
  std::vector<float> Floats(int col) const {
    size_t size = 0;
    unsigned char* bytes = PQunescapeBytea(
        reinterpret_cast<const unsigned char*>(PQgetvalue(result_, row_, col)), &size);
    if (bytes == nullptr) return {};
    std::vector<float> out = store_rows::FloatsFromBytes(bytes, size);
    PQfreemem(bytes);
    return out;
  }

 private:
  const PGresult* result_;
  int row_;
};

// An owned PGresult.
class Result {
 public:
  explicit Result(PGresult* result) : result_(result, PQclear) {}
  const PGresult* get() const { return result_.get(); }
  int size() const { return PQntuples(result_.get()); }
  Row row(int i) const { return Row(result_.get(), i); }
  // Rows changed by an INSERT, UPDATE or DELETE.
  int64_t changed() const { return std::atoll(PQcmdTuples(result_.get())); }

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> result_;
};

std::string Trimmed(const char* message) {
  return std::string(absl::StripTrailingAsciiWhitespace(message ? message : ""));
}

// The error of a failed statement: UNAVAILABLE if the connection broke under it (the next call
// resets it), ALREADY_EXISTS for a unique violation (SQLSTATE 23505), INTERNAL otherwise.
absl::Status StatementError(PGconn* conn, const PGresult* result, const char* what) {
  const std::string message =
      Trimmed(result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn));
  if (PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL connection lost during ", what, ": ", message));
  }
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  if (state != nullptr && std::string(state) == "23505") {
    return absl::AlreadyExistsError(absl::StrCat("postgres ", what, ": ", message));
  }
  return absl::InternalError(absl::StrCat("postgres ", what, ": ", message));
}

// Runs one statement with parameters ($1, $2, ...); `what` names it in errors.
absl::StatusOr<Result> Run(PGconn* conn, const char* what, const std::string& sql,
                           const std::vector<Param>& params) {
  std::vector<Oid> types;
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  for (const Param& p : params) {
    types.push_back(p.binary ? kByteaOid : 0);  // 0: the server infers it from the statement
    values.push_back(p.null ? nullptr : p.value.data());
    lengths.push_back(static_cast<int>(p.value.size()));
    formats.push_back(p.binary ? 1 : 0);
  }
  Result result(PQexecParams(conn, sql.c_str(), static_cast<int>(params.size()), types.data(),
                             values.data(), lengths.data(), formats.data(), /*resultFormat=*/0));
  const ExecStatusType status = PQresultStatus(result.get());  // NULL (out of memory): fatal
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return StatementError(conn, result.get(), what);
  }
  return result;
}

absl::StatusOr<Result> Run(PGconn* conn, const char* what, const std::string& sql,
                           std::initializer_list<Param> params = {}) {
  return Run(conn, what, sql, std::vector<Param>(params));
}

// A row's write (dock/store_schema.h).
absl::StatusOr<Result> Run(PGconn* conn, const char* what, const store_schema::Write& write) {
  std::vector<Param> params;
  for (const store_schema::Value& v : write.params) params.push_back(Param::From(v));
  return Run(conn, what, write.sql, params);
}

// Several statements without parameters (schema, BEGIN/COMMIT).
absl::Status Exec(PGconn* conn, const char* what, const char* sql) {
  Result result(PQexec(conn, sql));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return StatementError(conn, result.get(), what);
  }
  return absl::OkStatus();
}

// Runs `body` between BEGIN and COMMIT; ROLLBACK if it fails. `body` must return at its first
// failed statement (the transaction is aborted then anyway).
absl::Status InTransaction(PGconn* conn, const std::function<absl::Status()>& body) {
  if (absl::Status s = Exec(conn, "begin", "BEGIN"); !s.ok()) return s;
  if (absl::Status s = body(); !s.ok()) {
    Exec(conn, "rollback", "ROLLBACK").IgnoreError();  // fails only with the connection
    return s;
  }
  return Exec(conn, "commit", "COMMIT");
}

// Opens a connection to `url` (a URL Open has parsed). Without a connect_timeout, libpq waits
// for an unreachable host as long as the kernel retries (minutes; forever for a server that
// accepts and never answers), so one the URL does not set, nor $PGCONNECT_TIMEOUT, is
// kDefaultConnectTimeoutSeconds: keywords apply in order and the URL, expanded from dbname
// (expand_dbname), comes after the default and overrides it. PQreset reuses these options.
PGconn* OpenConnection(const std::string& url) {
  const char* env = std::getenv("PGCONNECT_TIMEOUT");
  const std::string timeout =
      env != nullptr && *env != '\0'
          ? std::string(env)
          : absl::StrCat(PostgresMetadataStore::kDefaultConnectTimeoutSeconds);
  const char* const keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* const values[] = {timeout.c_str(), url.c_str(), nullptr};
  return PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
}

// Server notices (e.g. "relation already exists, skipping") are not errors.
void LogNotice(void*, const char* message) { spdlog::debug("postgres: {}", Trimmed(message)); }

// Per-session settings, after each (re)connection: doubles are printed exactly (the default
// since PostgreSQL 12, but a server may be configured otherwise).
absl::Status Configure(PGconn* conn) {
  PQsetNoticeProcessor(conn, LogNotice, nullptr);
  return Exec(conn, "session settings", "SET extra_float_digits = 3");
}

Tensor TensorFromRow(const Row& row) {
  Tensor t;
  t.shape = {row.Int(0), row.Int(1)};
  t.values = row.Floats(2);
  return t;
}

// The fields that change after registration (UpdateState, CommitProbe).
absl::StatusOr<Result> RunUpdateState(PGconn* conn, const ModelRecord& r) {
  return Run(conn, "update",
             store_schema::UpdateRow(kPostgres, "models", store_schema::ModelStateColumns(r),
                                     {"id", r.id}));
}

// Announces a model change to every listener (PostgresChangeFeed) when the surrounding
// transaction commits; nothing is sent if it rolls back.
absl::Status NotifyChange(PGconn* conn, ModelChange change, const std::string& id) {
  return Run(conn, "notify", "SELECT pg_notify($1, $2)",
             {PostgresMetadataStore::kChangeChannel,
              absl::StrCat(ModelChangeName(change), " ", id)})
      .status();
}

// "<change> <id>" (NotifyChange's payload); false for anything else.
bool ParseChange(const std::string& payload, ModelChangeEvent* event) {
  const size_t space = payload.find(' ');
  if (space == std::string::npos || space + 1 >= payload.size()) return false;
  const std::string name = payload.substr(0, space);
  for (ModelChange change :
       {ModelChange::kReady, ModelChange::kVectorChanged, ModelChange::kDeleted,
        ModelChange::kRecordChanged}) {
    if (name == ModelChangeName(change)) {
      event->change = change;
      event->model_id = payload.substr(space + 1);
      return true;
    }
  }
  return false;
}

// LISTEN on a connection of its own; Wait polls its socket. A broken connection is dropped and
// opened again by the next Wait.
class PostgresChangeFeed : public ChangeFeed {
 public:
  PostgresChangeFeed(std::string conninfo, std::string url)
      : conninfo_(std::move(conninfo)), url_(std::move(url)) {}
  ~PostgresChangeFeed() override { Drop(); }

  absl::Status Connect() {
    Drop();
    conn_ = OpenConnection(conninfo_);
    if (conn_ == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
      const std::string message = Trimmed(PQerrorMessage(conn_));
      Drop();
      return absl::UnavailableError(absl::StrCat("change feed: cannot connect to PostgreSQL at ",
                                                 url_, ": ", message));
    }
    PQsetNoticeProcessor(conn_, LogNotice, nullptr);
    if (absl::Status s = Exec(conn_, "listen",
                              absl::StrCat("LISTEN ", PostgresMetadataStore::kChangeChannel).c_str());
        !s.ok()) {
      Drop();
      return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ModelChangeEvent>> Wait(absl::Duration timeout) override {
    if (conn_ == nullptr) {
      if (absl::Status s = Connect(); !s.ok()) return s;
      spdlog::info("change feed: listening on PostgreSQL at {} again", url_);
    }
    std::vector<ModelChangeEvent> events = Drain();
    if (!events.empty()) return events;
    pollfd pfd{PQsocket(conn_), POLLIN, 0};
    const int rc = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    if (rc < 0 && errno != EINTR) {
      const std::string message = std::strerror(errno);
      Drop();
      return absl::UnavailableError(absl::StrCat("change feed: poll: ", message));
    }
    if (rc > 0 && (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK)) {
      const std::string message = Trimmed(PQerrorMessage(conn_));
      Drop();
      return absl::UnavailableError(
          absl::StrCat("change feed: lost the connection to PostgreSQL at ", url_, ": ", message));
    }
    return Drain();
  }

 private:
  std::vector<ModelChangeEvent> Drain() {
    std::vector<ModelChangeEvent> events;
    while (PGnotify* notify = PQnotifies(conn_)) {
      ModelChangeEvent event;
      const std::string payload = notify->extra != nullptr ? notify->extra : "";
      if (ParseChange(payload, &event)) {
        events.push_back(std::move(event));
      } else {
        spdlog::warn("change feed: ignoring notification '{}'", payload);
      }
      PQfreemem(notify);
    }
    return events;
  }
  void Drop() {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }

  std::string conninfo_;
  std::string url_;  // redacted
  PGconn* conn_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChangeFeed>> PostgresMetadataStore::OpenChangeFeed() {
  auto feed = std::make_unique<PostgresChangeFeed>(conninfo_, url_);
  if (absl::Status s = feed->Connect(); !s.ok()) return s;
  return std::unique_ptr<ChangeFeed>(std::move(feed));
}

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

absl::Status PostgresMetadataStore::Insert(const ModelRecord& r) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // With its announcement (other servers' registries), in one transaction.
  absl::Status done = InTransaction(conn_, [&]() -> absl::Status {
    auto inserted = Run(conn_, "insert",
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
  auto done = Run(conn_, "revoke", "UPDATE api_keys SET revoked=1 WHERE id=$1", {id});
  if (!done.ok()) return done.status();
  if (done->changed() == 0) return absl::NotFoundError(absl::StrCat("no API key '", id, "'"));
  return absl::OkStatus();
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

absl::StatusOr<int> PostgresMetadataStore::CountBySha(const std::string& sha256) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "count", "SELECT COUNT(*) FROM models WHERE sha256=$1", {sha256});
  if (!result.ok()) return result.status();
  return static_cast<int>(result->row(0).Int(0));
}

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
      auto put = Run(conn_, table,
                     store_schema::UpsertRow(
                         kPostgres, table,
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
  return store_rows::CheckedProbeTensor(TensorFromRow(result->row(0)), result->row(0).Text(3),
                                        what, id);
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

namespace {
// The database's clock in Unix milliseconds: leases do not depend on the servers' clocks.
constexpr const char* kNowMs = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";
}  // namespace

absl::StatusOr<std::optional<std::string>> PostgresMetadataStore::ClaimProbeJob(
    const std::string& owner, absl::Duration lease) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  // The queue pattern: a row another server is claiming right now is skipped, not waited for.
  auto result = Run(conn_, "claim probe job",
                    absl::StrCat("UPDATE models SET lease_owner=$1, lease_until_ms=", kNowMs,
                                 " + $2 WHERE id = (SELECT id FROM models WHERE state IN (0, 1) "
                                 "AND lease_until_ms < ", kNowMs, " ORDER BY created_unix_ms, id",
                                 kByBytes, " LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"),
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

absl::Status PostgresMetadataStore::AddOutcomes(const OutcomeQueryRow& q,
                                                const std::vector<OutcomeRow>& outcomes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  return InTransaction(conn_, [&]() -> absl::Status {
    auto query = Run(conn_, "outcome query",
                     store_schema::UpsertRow(kPostgres, "outcome_queries",
                                             store_schema::OutcomeQueryColumns(q)));
    if (!query.ok()) return query.status();
    for (const OutcomeRow& o : outcomes) {
      // Delete, then insert, as SQLite's INSERT OR REPLACE does: a new report of the same
      // (query, model, source) gets a new id and so lists as the newest.
      auto replaced = Run(conn_, "outcome",
                          "DELETE FROM outcomes WHERE query_id=$1 AND model_id=$2 AND source=$3",
                          {q.query_id, o.model_id, o.source});
      if (!replaced.ok()) return replaced.status();
      auto inserted = Run(conn_, "outcome",
                          store_schema::InsertRow(kPostgres, "outcomes",
                                                  store_schema::OutcomeColumns(q.query_id, o)));
      if (!inserted.ok()) return inserted.status();
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<OutcomeRow>> PostgresMetadataStore::Outcomes(const std::string& model_id,
                                                                        int limit) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  std::string sql = kSelectOutcomes;
  if (!model_id.empty()) sql += " WHERE model_id=$1";
  sql += " ORDER BY id DESC";
  if (limit > 0) absl::StrAppend(&sql, " LIMIT ", limit);
  auto result =
      model_id.empty() ? Run(conn_, "outcomes", sql) : Run(conn_, "outcomes", sql, {model_id});
  if (!result.ok()) return result.status();
  std::vector<OutcomeRow> rows;
  for (int i = 0; i < result->size(); ++i) {
    const Row row = result->row(i);
    rows.push_back(ReadOutcome(row));
  }
  return rows;
}

absl::StatusOr<std::pair<int64_t, int64_t>> PostgresMetadataStore::CountOutcomes(
    const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  const std::string count = "SELECT COUNT(*), COUNT(DISTINCT query_id) FROM outcomes";
  auto result = model_id.empty() ? Run(conn_, "count outcomes", count)
                                 : Run(conn_, "count outcomes",
                                       absl::StrCat(count, " WHERE model_id=$1"), {model_id});
  if (!result.ok()) return result.status();
  return std::make_pair(result->row(0).Int(0), result->row(0).Int(1));
}

absl::StatusOr<std::vector<OutcomeQueryRow>> PostgresMetadataStore::OutcomeQueries() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(
      conn_, "outcome queries",
      absl::StrCat(kSelectOutcomeQueries, " ORDER BY created_unix_ms, query_id", kByBytes));
  if (!result.ok()) return result.status();
  std::vector<OutcomeQueryRow> rows;
  for (int i = 0; i < result->size(); ++i) {
    const Row row = result->row(i);
    absl::StatusOr<OutcomeQueryRow> q = ReadOutcomeQuery(row);
    if (!q.ok()) return q.status();
    rows.push_back(*std::move(q));
  }
  return rows;
}

absl::StatusOr<int64_t> PostgresMetadataStore::InsertAlignment(const AlignmentRow& row) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  int64_t version = 1;
  absl::Status done = InTransaction(conn_, [&]() -> absl::Status {
    // As SQLite's BEGIN IMMEDIATE: no other writer (another server) takes the same number.
    if (absl::Status s = Exec(conn_, "alignment", "LOCK TABLE alignments IN EXCLUSIVE MODE");
        !s.ok()) {
      return s;
    }
    auto next = Run(conn_, "alignment", "SELECT COALESCE(MAX(version), 0) + 1 FROM alignments");
    if (!next.ok()) return next.status();
    version = next->row(0).Int(0);
    return Run(conn_, "alignment",
               store_schema::InsertRow(kPostgres, "alignments",
                                       store_schema::AlignmentColumns(version, row)))
        .status();
  });
  if (!done.ok()) return done;
  return version;
}

absl::StatusOr<std::vector<AlignmentRow>> PostgresMetadataStore::Alignments() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result =
      Run(conn_, "alignments", absl::StrCat(kSelectAlignmentSummaries, " ORDER BY version"));
  if (!result.ok()) return result.status();
  std::vector<AlignmentRow> rows;
  for (int i = 0; i < result->size(); ++i) {
    const Row row = result->row(i);
    rows.push_back(ReadAlignmentSummary(row));
  }
  return rows;
}

absl::StatusOr<AlignmentRow> PostgresMetadataStore::Alignment(int64_t version) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = EnsureConnected(); !s.ok()) return s;
  auto result = Run(conn_, "alignment", absl::StrCat(kSelectAlignments, " WHERE version=$1"),
                    {version});
  if (!result.ok()) return result.status();
  if (result->size() == 0) {
    return absl::NotFoundError(absl::StrCat("no alignment version ", version));
  }
  const Row row = result->row(0);
  return ReadAlignment(row);
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

}  // namespace modeldock::dock
