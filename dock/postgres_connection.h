// The PostgreSQL backend's connection helpers, shared by postgres_store*.cc and
// postgres_change_feed.cc (not a public header): statement parameters and results, running a
// statement or a transaction, connecting, and announcing a model change.
#ifndef MODELDOCK_DOCK_POSTGRES_CONNECTION_H_
#define MODELDOCK_DOCK_POSTGRES_CONNECTION_H_

#include <libpq-fe.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dock/metadata_store.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"

namespace modeldock::dock::postgres_internal {

inline constexpr store_schema::Dialect kPostgres = store_schema::Dialect::kPostgres;

inline constexpr Oid kByteaOid = 17;  // pg_type.h
// Text columns compare and sort byte-wise, as in SQLite, whatever the database's collation.
inline constexpr const char* kByBytes = " COLLATE \"C\"";

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

std::string Trimmed(const char* message);

// The error of a failed statement: UNAVAILABLE if the connection broke under it (the next call
// resets it), ALREADY_EXISTS for a unique violation (SQLSTATE 23505), INTERNAL otherwise.
absl::Status StatementError(PGconn* conn, const PGresult* result, const char* what);

// Runs one statement with parameters ($1, $2, ...); `what` names it in errors.
absl::StatusOr<Result> Run(PGconn* conn, const char* what, const std::string& sql,
                           const std::vector<Param>& params);

absl::StatusOr<Result> Run(PGconn* conn, const char* what, const std::string& sql,
                           std::initializer_list<Param> params = {});

// A row's write (dock/store_schema.h).
absl::StatusOr<Result> Run(PGconn* conn, const char* what, const store_schema::Write& write);

// Several statements without parameters (schema, BEGIN/COMMIT).
absl::Status Exec(PGconn* conn, const char* what, const char* sql);

// Runs `body` between BEGIN and COMMIT; ROLLBACK if it fails. `body` must return at its first
// failed statement (the transaction is aborted then anyway).
absl::Status InTransaction(PGconn* conn, const std::function<absl::Status()>& body);

// Opens a connection to `url` (a URL Open has parsed). Without a connect_timeout, libpq waits
// for an unreachable host as long as the kernel retries (minutes; forever for a server that
// accepts and never answers), so one the URL does not set, nor $PGCONNECT_TIMEOUT, is
// kDefaultConnectTimeoutSeconds: keywords apply in order and the URL, expanded from dbname
// (expand_dbname), comes after the default and overrides it. PQreset reuses these options.
PGconn* OpenConnection(const std::string& url);

// Server notices (e.g. "relation already exists, skipping") are not errors.
void LogNotice(void*, const char* message);

// Per-session settings, after each (re)connection: doubles are printed exactly (the default
// since PostgreSQL 12, but a server may be configured otherwise).
absl::Status Configure(PGconn* conn);

Tensor TensorFromRow(const Row& row);

// The fields that change after registration (UpdateState, CommitProbe).
absl::StatusOr<Result> RunUpdateState(PGconn* conn, const ModelRecord& r);

// Announces a model change to every listener (PostgresChangeFeed) when the surrounding
// transaction commits; nothing is sent if it rolls back.
absl::Status NotifyChange(PGconn* conn, ModelChange change, const std::string& id);

}  // namespace modeldock::dock::postgres_internal

#endif  // MODELDOCK_DOCK_POSTGRES_CONNECTION_H_
