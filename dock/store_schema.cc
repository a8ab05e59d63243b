#include "dock/store_schema.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dock/store_rows.h"
#include "nlohmann/json.hpp"

namespace modeldock::dock::store_schema {
namespace {

using T = ColumnType;

constexpr const char* kNotNull = "NOT NULL";
constexpr const char* kModelRef = "REFERENCES models(id) ON DELETE CASCADE";

// The models table. Names are unique per version (schema 4); `kind` feature extractors (2),
// `layers` embed layers as JSON [{"name", "dim"}] (3), `remote` a remote model's KServe v2
// target as JSON {"endpoint", "model", "version"}, '' for a stored file (5), the lease columns
// the probe queue that replicas share (6, ClaimProbeJob).
Table ModelsTable() {
  return {"models",
          {{"id", T::kText, ""},
           {"name", T::kText, kNotNull},
           {"version", T::kText, kNotNull},
           {"description", T::kText, kNotNull},
           {"task", T::kInt, kNotNull},
           {"input_shape", T::kText, kNotNull},
           {"class_labels", T::kText, kNotNull},
           {"license", T::kText, kNotNull},
           {"tags", T::kText, kNotNull},
           {"state", T::kInt, kNotNull},
           {"state_reason", T::kText, kNotNull},
           {"sha256", T::kText, kNotNull},
           {"size_bytes", T::kInt, kNotNull},
           {"has_embed", T::kInt, kNotNull},
           {"feature_dim", T::kInt, kNotNull},
           {"created_unix_ms", T::kInt, kNotNull},
           {"probe_millis", T::kInt, kNotNull},
           {"revision", T::kInt, kNotNull},
           {"kind", T::kInt, "NOT NULL DEFAULT 0"},
           {"layers", T::kText, "NOT NULL DEFAULT '[]'"},
           {"remote", T::kText, "NOT NULL DEFAULT ''"},
           {"lease_owner", T::kText, "NOT NULL DEFAULT ''"},
           {"lease_until_ms", T::kInt, "NOT NULL DEFAULT 0"}},
          {"id"},
          "UNIQUE(name, version)",
          {{"models_sha256", "sha256"}}};
}

// A [rows, cols] float32 tensor per model and probe set: probe outputs (logits), and the
// compressed probe features (PCA of embed(x), or of the logits without embed) for stage-1
// proxies.
Table ProbeTensorTable(const char* name, const char* values) {
  return {name,
          {{"model_id", T::kText, kModelRef},
           {"probe_set_sha", T::kText, kNotNull},
           {"rows", T::kInt, kNotNull},
           {"cols", T::kInt, kNotNull},
           {values, T::kBlob, kNotNull}},
          {"model_id"},
          nullptr,
          {}};
}

// The learning loop's tables (outcome records, ranker versions) and the audit log.
std::vector<Table> LearningAndAuditTables() {
  std::vector<Table> tables;
  // Outcome records (issue 9). A query keeps its class prototypes in the reference encoder's
  // space (never the samples) and the stage-1 scores of the models at report time (JSON
  // id -> score).
  tables.push_back({"outcome_queries",
                    {{"query_id", T::kText, ""},
                     {"task", T::kInt, kNotNull},
                     {"num_samples", T::kInt, kNotNull},
                     {"num_classes", T::kInt, kNotNull},
                     {"prototype_dim", T::kInt, kNotNull},
                     {"prototypes", T::kBlob, kNotNull},
                     {"stage1", T::kText, kNotNull},
                     {"created_unix_ms", T::kInt, kNotNull}},
                    {"query_id"},
                    nullptr,
                    {}});
  // Outcomes outlive their model's deletion (training ignores models no longer in the dock).
  tables.push_back({"outcomes",
                    {{"id", T::kAutoId, ""},
                     {"query_id", T::kText, "NOT NULL REFERENCES outcome_queries(query_id)"},
                     {"model_id", T::kText, kNotNull},
                     {"model_name", T::kText, kNotNull},
                     {"accuracy", T::kReal, kNotNull},
                     {"source", T::kText, kNotNull},
                     {"weight", T::kReal, kNotNull},
                     {"reporter", T::kText, kNotNull},
                     {"created_unix_ms", T::kInt, kNotNull},
                     {"detail", T::kText, "NOT NULL DEFAULT ''"}},
                    {},
                    "UNIQUE(query_id, model_id, source)",
                    {{"outcomes_model", "model_id"}}});
  // Who changed what, when.
  tables.push_back({"audit_log",
                    {{"id", T::kAutoId, ""},
                     {"unix_ms", T::kInt, kNotNull},
                     {"actor", T::kText, kNotNull},
                     {"action", T::kText, kNotNull},
                     {"target", T::kText, kNotNull},
                     {"detail", T::kText, kNotNull}},
                    {},
                    nullptr,
                    {}});
  // Trained ranker versions; the serving one is meta 'serving_alignment'.
  tables.push_back({"alignments",
                    {{"version", T::kInt, ""},
                     {"created_unix_ms", T::kInt, kNotNull},
                     {"summary", T::kText, kNotNull},
                     {"payload", T::kText, kNotNull}},
                    {"version"},
                    nullptr,
                    {}});
  return tables;
}

std::vector<Table> MakeTables() {
  std::vector<Table> tables;
  tables.push_back(ModelsTable());
  tables.push_back(ProbeTensorTable("probe_outputs", "logits"));
  tables.push_back(ProbeTensorTable("probe_features", "features"));
  // SHA-256 of each stored probe tensor (kind 'outputs' or 'features'), checked on every read;
  // a table beside the tensors, so older databases need no migration (their rows read
  // unchecked).
  tables.push_back({"probe_checksums",
                    {{"model_id", T::kText, "NOT NULL REFERENCES models(id) ON DELETE CASCADE"},
                     {"kind", T::kText, kNotNull},
                     {"checksum", T::kText, kNotNull}},
                    {"model_id", "kind"},
                    nullptr,
                    {}});
  tables.push_back({"vectors",
                    {{"model_id", T::kText, kModelRef},
                     {"space", T::kText, kNotNull},
                     {"vector", T::kBlob, kNotNull}},
                    {"model_id"},
                    nullptr,
                    {}});
  tables.push_back(
      {"meta", {{"key", T::kText, ""}, {"value", T::kText, kNotNull}}, {"key"}, nullptr, {}});
  // API keys: a salted SHA-256 of the secret, never the secret.
  tables.push_back({"api_keys",
                    {{"id", T::kText, ""},
                     {"name", T::kText, kNotNull},
                     {"role", T::kInt, kNotNull},
                     {"salt", T::kText, kNotNull},
                     {"hash", T::kText, kNotNull},
                     {"created_unix_ms", T::kInt, kNotNull},
                     {"revoked", T::kInt, kNotNull}},
                    {"id"},
                    nullptr,
                    {}});
  // Which key registered a model (beside models, so older databases need no migration).
  tables.push_back({"model_owners",
                    {{"model_id", T::kText, kModelRef}, {"key_id", T::kText, kNotNull}},
                    {"model_id"},
                    nullptr,
                    {}});
  for (Table& table : LearningAndAuditTables()) tables.push_back(std::move(table));
  return tables;
}

const char* TypeName(Dialect dialect, ColumnType type) {
  const bool sqlite = dialect == Dialect::kSqlite;
  switch (type) {
    case T::kText: return "TEXT";
    case T::kInt: return sqlite ? "INTEGER" : "BIGINT";
    case T::kReal: return sqlite ? "REAL" : "DOUBLE PRECISION";
    case T::kBlob: return sqlite ? "BLOB" : "BYTEA";
    case T::kAutoId:
      return sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT"
                    : "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
  }
  return "TEXT";
}

std::string CreateTableSql(Dialect dialect, const Table& table) {
  std::vector<std::string> lines;
  for (const Column& c : table.columns) {
    std::string line = absl::StrCat("  ", c.name, " ", TypeName(dialect, c.type));
    if (table.key.size() == 1 && std::string(table.key[0]) == c.name) {
      absl::StrAppend(&line, " PRIMARY KEY");
    }
    if (*c.constraints != '\0') absl::StrAppend(&line, " ", c.constraints);
    lines.push_back(std::move(line));
  }
  if (table.key.size() > 1) {
    lines.push_back(absl::StrCat("  PRIMARY KEY (", absl::StrJoin(table.key, ", "), ")"));
  }
  if (table.unique != nullptr) lines.push_back(absl::StrCat("  ", table.unique));
  std::string sql = absl::StrCat("CREATE TABLE IF NOT EXISTS ", table.name, " (\n",
                                 absl::StrJoin(lines, ",\n"), "\n);\n");
  for (const auto& [index, column] : table.indexes) {
    absl::StrAppend(&sql, "CREATE INDEX IF NOT EXISTS ", index, " ON ", table.name, "(", column,
                    ");\n");
  }
  return sql;
}

std::string Placeholders(Dialect dialect, int first, size_t count) {
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    out.push_back(Placeholder(dialect, first + static_cast<int>(i)));
  }
  return absl::StrJoin(out, ",");
}

std::string ColumnNames(const ColumnValues& row) {
  std::vector<const char*> names;
  for (const ColumnValue& c : row) names.push_back(c.column);
  return absl::StrJoin(names, ", ");
}

std::vector<Value> Params(ColumnValues row) {
  std::vector<Value> params;
  params.reserve(row.size());
  for (ColumnValue& c : row) params.push_back(std::move(c.value));
  return params;
}

bool IsKey(const Table& table, const char* column) {
  for (const char* key : table.key) {
    if (std::string(key) == column) return true;
  }
  return false;
}

FloatBytes Bytes(const std::vector<float>& v) { return FloatBytes{v.data(), v.size()}; }

}  // namespace

const std::vector<Table>& Tables() {
  static const std::vector<Table>* const tables = new std::vector<Table>(MakeTables());
  return *tables;
}

const Table* FindTable(const std::string& name) {
  for (const Table& table : Tables()) {
    if (name == table.name) return &table;
  }
  return nullptr;
}

std::string SchemaSql(Dialect dialect) {
  std::string sql;
  for (const Table& table : Tables()) absl::StrAppend(&sql, CreateTableSql(dialect, table));
  return sql;
}

std::string Placeholder(Dialect dialect, int n) {
  return dialect == Dialect::kSqlite ? std::string("?") : absl::StrCat("$", n);
}

Write InsertRow(Dialect dialect, const char* table, ColumnValues row) {
  std::string sql = absl::StrCat("INSERT INTO ", table, "(", ColumnNames(row), ") VALUES(",
                                 Placeholders(dialect, 1, row.size()), ")");
  return {std::move(sql), Params(std::move(row))};
}

Write UpsertRow(Dialect dialect, const char* table, ColumnValues row) {
  const std::string values = Placeholders(dialect, 1, row.size());
  if (dialect == Dialect::kSqlite) {
    return {absl::StrCat("INSERT OR REPLACE INTO ", table, "(", ColumnNames(row), ") VALUES(",
                         values, ")"),
            Params(std::move(row))};
  }
  const Table* schema = FindTable(table);
  std::vector<std::string> updates;
  for (const ColumnValue& c : row) {
    if (IsKey(*schema, c.column)) continue;
    updates.push_back(absl::StrCat(c.column, "=EXCLUDED.", c.column));
  }
  std::string sql = absl::StrCat("INSERT INTO ", table, "(", ColumnNames(row), ") VALUES(", values,
                                 ") ON CONFLICT (", absl::StrJoin(schema->key, ", "), ") DO ");
  absl::StrAppend(&sql, updates.empty()
                            ? "NOTHING"
                            : absl::StrCat("UPDATE SET ", absl::StrJoin(updates, ", ")));
  return {std::move(sql), Params(std::move(row))};
}

Write UpdateRow(Dialect dialect, const char* table, ColumnValues set, ColumnValue key) {
  std::vector<std::string> assignments;
  for (size_t i = 0; i < set.size(); ++i) {
    assignments.push_back(
        absl::StrCat(set[i].column, "=", Placeholder(dialect, static_cast<int>(i) + 1)));
  }
  std::string sql =
      absl::StrCat("UPDATE ", table, " SET ", absl::StrJoin(assignments, ", "), " WHERE ",
                   key.column, "=", Placeholder(dialect, static_cast<int>(set.size()) + 1));
  set.push_back(std::move(key));
  return {std::move(sql), Params(std::move(set))};
}

ColumnValues ModelColumns(const ModelRecord& r) {
  return {{"id", r.id},
          {"name", r.spec.name},
          {"version", r.spec.version},
          {"description", r.spec.description},
          {"task", static_cast<int64_t>(r.spec.task)},
          {"input_shape", store_rows::ShapeJson(r.spec.input_shape)},
          {"class_labels", store_rows::StringsJson(r.spec.class_labels)},
          {"license", r.spec.license},
          {"tags", store_rows::StringsJson(r.spec.tags)},
          {"state", static_cast<int64_t>(r.state)},
          {"state_reason", r.state_reason},
          {"sha256", r.sha256},
          {"size_bytes", r.size_bytes},
          {"has_embed", static_cast<int64_t>(r.has_embed)},
          {"feature_dim", r.feature_dim},
          {"created_unix_ms", r.created_unix_ms},
          {"probe_millis", r.probe_millis},
          {"revision", r.revision},
          {"kind", static_cast<int64_t>(r.spec.kind)},
          {"layers", store_rows::LayersJson(r.layers)},
          {"remote", store_rows::RemoteJson(r.spec)}};
}

ColumnValues ModelStateColumns(const ModelRecord& r) {
  return {{"state", static_cast<int64_t>(r.state)},
          {"state_reason", r.state_reason},
          {"has_embed", static_cast<int64_t>(r.has_embed)},
          {"feature_dim", r.feature_dim},
          {"probe_millis", r.probe_millis},
          {"revision", r.revision}};
}

ColumnValues ModelSpecColumns(const ModelRecord& r) {
  return {{"description", r.spec.description},
          {"license", r.spec.license},
          {"tags", store_rows::StringsJson(r.spec.tags)},
          {"revision", r.revision}};
}

ColumnValues OwnerColumns(const std::string& model_id, const std::string& key_id) {
  return {{"model_id", model_id}, {"key_id", key_id}};
}

ColumnValues ApiKeyColumns(const ApiKeyRow& key) {
  return {{"id", key.id},
          {"name", key.name},
          {"role", static_cast<int64_t>(key.role)},
          {"salt", key.salt},
          {"hash", key.hash},
          {"created_unix_ms", key.created_unix_ms},
          {"revoked", int64_t{0}}};
}

ColumnValues RevokedKeyColumns() { return {{"revoked", int64_t{1}}}; }

ColumnValues ProbeTensorColumns(const char* table, const std::string& model_id,
                                const std::string& probe_set_sha, const Tensor& t) {
  const char* values = std::string(table) == "probe_outputs" ? "logits" : "features";
  return {{"model_id", model_id},
          {"probe_set_sha", probe_set_sha},
          {"rows", t.Rows()},
          {"cols", t.RowSize()},
          {values, Bytes(t.values)}};
}

ColumnValues ProbeChecksumColumns(const std::string& model_id, const char* kind,
                                  const Tensor& t) {
  return {{"model_id", model_id},
          {"kind", std::string(kind)},
          {"checksum", store_rows::ProbeTensorChecksum(t)}};
}

ColumnValues VectorColumns(const std::string& model_id, const std::string& space,
                           const std::vector<float>& vector) {
  return {{"model_id", model_id}, {"space", space}, {"vector", Bytes(vector)}};
}

ColumnValues OutcomeQueryColumns(const OutcomeQueryRow& q) {
  return {{"query_id", q.query_id},
          {"task", static_cast<int64_t>(q.task)},
          {"num_samples", q.num_samples},
          {"num_classes", static_cast<int64_t>(q.num_classes)},
          {"prototype_dim", q.prototypes.RowSize()},
          {"prototypes", Bytes(q.prototypes.values)},
          {"stage1", nlohmann::json(q.stage1).dump()},
          {"created_unix_ms", q.created_unix_ms}};
}

ColumnValues OutcomeColumns(const std::string& query_id, const OutcomeRow& o) {
  return {{"query_id", query_id},
          {"model_id", o.model_id},
          {"model_name", o.model_name},
          {"accuracy", o.accuracy},
          {"source", o.source},
          {"weight", o.weight},
          {"reporter", o.reporter_key_id},
          {"created_unix_ms", o.created_unix_ms},
          {"detail", o.detail}};
}

ColumnValues AlignmentColumns(int64_t version, const AlignmentRow& row) {
  return {{"version", version},
          {"created_unix_ms", row.created_unix_ms},
          {"summary", row.summary},
          {"payload", row.payload}};
}

ColumnValues AuditColumns(const AuditEntry& e) {
  return {{"unix_ms", e.unix_ms},
          {"actor", e.actor},
          {"action", e.action},
          {"target", e.target},
          {"detail", e.detail}};
}

ColumnValues MetaColumns(const std::string& key, const std::string& value) {
  return {{"key", key}, {"value", value}};
}

}  // namespace modeldock::dock::store_schema
