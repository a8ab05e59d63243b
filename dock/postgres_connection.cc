#include "dock/postgres_connection.h"

#include "absl/strings/strip.h"
#include "dock/postgres_store.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock::postgres_internal {

std::string Trimmed(const char* message) {
  return std::string(absl::StripTrailingAsciiWhitespace(message ? message : ""));
}

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
                           std::initializer_list<Param> params) {
  return Run(conn, what, sql, std::vector<Param>(params));
}

absl::StatusOr<Result> Run(PGconn* conn, const char* what, const store_schema::Write& write) {
  std::vector<Param> params;
  for (const store_schema::Value& v : write.params) params.push_back(Param::From(v));
  return Run(conn, what, write.sql, params);
}

absl::Status Exec(PGconn* conn, const char* what, const char* sql) {
  Result result(PQexec(conn, sql));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return StatementError(conn, result.get(), what);
  }
  return absl::OkStatus();
}

absl::Status InTransaction(PGconn* conn, const std::function<absl::Status()>& body) {
  if (absl::Status s = Exec(conn, "begin", "BEGIN"); !s.ok()) return s;
  if (absl::Status s = body(); !s.ok()) {
    Exec(conn, "rollback", "ROLLBACK").IgnoreError();  // fails only with the connection
    return s;
  }
  return Exec(conn, "commit", "COMMIT");
}

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

void LogNotice(void*, const char* message) { spdlog::debug("postgres: {}", Trimmed(message)); }

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

absl::StatusOr<Result> RunUpdateState(PGconn* conn, const ModelRecord& r) {
  return Run(conn, "update",
             store_schema::UpdateRow(kPostgres, "models", store_schema::ModelStateColumns(r),
                                     {"id", r.id}));
}

absl::Status NotifyChange(PGconn* conn, ModelChange change, const std::string& id) {
  return Run(conn, "notify", "SELECT pg_notify($1, $2)",
             {PostgresMetadataStore::kChangeChannel,
              absl::StrCat(ModelChangeName(change), " ", id)})
      .status();
}

}  // namespace modeldock::dock::postgres_internal
