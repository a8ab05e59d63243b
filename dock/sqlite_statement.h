// The SQLite backend's statement wrapper, shared by sqlite_store*.cc (not a public header).
#ifndef MODELDOCK_DOCK_SQLITE_STATEMENT_H_
#define MODELDOCK_DOCK_SQLITE_STATEMENT_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"
#include "dock/types.h"

namespace modeldock::dock::sqlite_internal {

inline constexpr store_schema::Dialect kSqlite = store_schema::Dialect::kSqlite;

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
inline store_schema::Write UpdateStateWrite(const ModelRecord& r) {
  return store_schema::UpdateRow(kSqlite, "models", store_schema::ModelStateColumns(r),
                                 {"id", r.id});
}

}  // namespace modeldock::dock::sqlite_internal

#endif  // MODELDOCK_DOCK_SQLITE_STATEMENT_H_
