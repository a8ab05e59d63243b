// The metadata store's tables and how a row is written, once for both backends
// (sqlite_store*.cc, postgres_store*.cc). A table is a list of columns with a portable type; a
// row to write is a list of (column, value) pairs; the SQL of a CREATE TABLE, INSERT, upsert or
// UPDATE is generated for a Dialect, which holds the only differences: column types,
// placeholders (? or $1) and upsert syntax. Reading rows back is dock/store_rows.h.
//
// The schema here is the current one (kMetadataSchemaVersion): both backends create it for a
// new database. How an older database reaches it (migration steps) is each backend's history.
#ifndef MODELDOCK_DOCK_STORE_SCHEMA_H_
#define MODELDOCK_DOCK_STORE_SCHEMA_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/tensor.h"
#include "dock/store_tables.h"
#include "dock/types.h"

namespace modeldock::dock::store_schema {

enum class Dialect { kSqlite, kPostgres };

// kInt: a 64-bit integer (SQLite INTEGER, PostgreSQL BIGINT); kReal: a double; kBlob: bytes
// (BLOB, bytea); kAutoId: the table's 64-bit primary key, assigned in increasing order and never
// reused (SQLite AUTOINCREMENT, PostgreSQL identity).
enum class ColumnType { kText, kInt, kReal, kBlob, kAutoId };

struct Column {
  const char* name;
  ColumnType type;
  // After the type (and PRIMARY KEY for a one-column key), e.g. "NOT NULL DEFAULT 0".
  const char* constraints;
};

struct Table {
  const char* name;
  std::vector<Column> columns;
  // The primary key (empty with a kAutoId column); the key an upsert replaces on.
  std::vector<const char*> key;
  const char* unique;  // a UNIQUE(...) constraint of the table, or nullptr
  std::vector<std::pair<const char*, const char*>> indexes;  // (index name, column)
};

// Every table, in creation order (referenced tables first).
const std::vector<Table>& Tables();
// The table named `name`; nullptr if there is none.
const Table* FindTable(const std::string& name);

// CREATE TABLE / INDEX IF NOT EXISTS statements for every table, separated by ";".
std::string SchemaSql(Dialect dialect);

// float32 values sent as raw bytes (native byte order). Points into the row being written,
// which must outlive the statement.
struct FloatBytes {
  const float* data;
  size_t count;
};
using Value = std::variant<std::string, int64_t, double, FloatBytes>;
struct ColumnValue {
  const char* column;
  Value value;
};
using ColumnValues = std::vector<ColumnValue>;

// The placeholder of parameter `n` (1-based): "?" or "$n".
std::string Placeholder(Dialect dialect, int n);

// A statement that writes a row: its SQL for one dialect and the values to bind, in order.
struct Write {
  std::string sql;
  std::vector<Value> params;
};
// INSERT INTO table(columns) VALUES(...).
Write InsertRow(Dialect dialect, const char* table, ColumnValues row);
// As InsertRow, but a row with the same primary key is replaced (SQLite: INSERT OR REPLACE;
// PostgreSQL: ON CONFLICT (key) DO UPDATE of every other column given).
Write UpsertRow(Dialect dialect, const char* table, ColumnValues row);
// UPDATE table SET columns WHERE key.column = key.value.
Write UpdateRow(Dialect dialect, const char* table, ColumnValues set, ColumnValue key);

// A new model's row (models; the lease columns keep their defaults).
ColumnValues ModelColumns(const ModelRecord& r);
// The fields that change after registration (UpdateState, CommitProbe); the key is "id".
ColumnValues ModelStateColumns(const ModelRecord& r);
// Description, license, tags and revision (UpdateSpec); the key is "id".
ColumnValues ModelSpecColumns(const ModelRecord& r);
ColumnValues OwnerColumns(const std::string& model_id, const std::string& key_id);
// A new key is never revoked.
ColumnValues ApiKeyColumns(const ApiKeyRow& key);
// A key's revocation (RevokeKey); the key is "id".
ColumnValues RevokedKeyColumns();
// One [rows, cols] probe tensor of `table` (probe_outputs: column "logits"; probe_features:
// "features").
ColumnValues ProbeTensorColumns(const char* table, const std::string& model_id,
                                const std::string& probe_set_sha, const Tensor& t);
// The checksum of a probe tensor (kind "outputs" or "features").
ColumnValues ProbeChecksumColumns(const std::string& model_id, const char* kind,
                                  const Tensor& t);
ColumnValues VectorColumns(const std::string& model_id, const std::string& space,
                           const std::vector<float>& vector);
ColumnValues OutcomeQueryColumns(const OutcomeQueryRow& q);
// An outcome of query `query_id` (its id is assigned by the database).
ColumnValues OutcomeColumns(const std::string& query_id, const OutcomeRow& o);
ColumnValues AlignmentColumns(int64_t version, const AlignmentRow& row);
// An audit entry (its id is assigned by the database).
ColumnValues AuditColumns(const AuditEntry& e);
ColumnValues MetaColumns(const std::string& key, const std::string& value);

}  // namespace modeldock::dock::store_schema

#endif  // MODELDOCK_DOCK_STORE_SCHEMA_H_
