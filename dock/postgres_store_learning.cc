// PostgresMetadataStore: outcome records and ranker versions (the learning loop's tables).
#include "dock/postgres_store.h"

#include "absl/strings/str_cat.h"
#include "dock/postgres_connection.h"
#include "dock/store_rows.h"
#include "dock/store_schema.h"

namespace modeldock::dock {
namespace {

using postgres_internal::Exec;
using postgres_internal::InTransaction;
using postgres_internal::kByBytes;
using postgres_internal::kPostgres;
using postgres_internal::Row;
using postgres_internal::Run;
using store_rows::kSelectAlignments;
using store_rows::kSelectAlignmentSummaries;
using store_rows::kSelectOutcomeQueries;
using store_rows::kSelectOutcomes;
using store_rows::ReadAlignment;
using store_rows::ReadAlignmentSummary;
using store_rows::ReadOutcome;
using store_rows::ReadOutcomeQuery;

}  // namespace

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
  auto result =
      Run(conn_, "outcome queries",
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
  auto result =
      Run(conn_, "alignment", absl::StrCat(kSelectAlignments, " WHERE version=$1"), {version});
  if (!result.ok()) return result.status();
  if (result->size() == 0) {
    return absl::NotFoundError(absl::StrCat("no alignment version ", version));
  }
  const Row row = result->row(0);
  return ReadAlignment(row);
}
}  // namespace modeldock::dock
