// SqliteMetadataStore: outcome records and ranker versions (the learning loop's tables).
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
using store_rows::kSelectAlignments;
using store_rows::kSelectAlignmentSummaries;
using store_rows::kSelectOutcomeQueries;
using store_rows::kSelectOutcomes;
using store_rows::ReadAlignment;
using store_rows::ReadAlignmentSummary;
using store_rows::ReadOutcome;
using store_rows::ReadOutcomeQuery;

}  // namespace

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
}  // namespace modeldock::dock
