// Model metadata: one row per model, the model's probe outputs and its knowledge vector, API
// keys, outcome records, ranker versions, the audit log and small settings. Every multi-row
// change is one transaction, so a crash leaves either the old or the new state.
//
// Each table has its own interface (dock/store_tables.h); MetadataStore is their union, which
// the backends implement. OpenMetadataStore picks the backend: SQLite (the embedded default,
// dock/sqlite_store.h) or PostgreSQL (a shared server, dock/postgres_store.h). Both give the
// same results and status codes for the same calls (dock/metadata_store_test.cc runs one suite
// on both), and both are safe to call from several threads.
#ifndef MODELDOCK_DOCK_METADATA_STORE_H_
#define MODELDOCK_DOCK_METADATA_STORE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "dock/store_tables.h"

namespace modeldock::dock {

// The schema version both backends migrate to at open (meta 'schema_version'). A database of a
// newer version is refused (FAILED_PRECONDITION): this binary would not know what it may write.
inline constexpr int kMetadataSchemaVersion = 7;

// The union of the tables (store_tables.h): what a backend implements and OpenMetadataStore
// returns. The dock keeps the opened store and hands each part only the tables it uses; its
// model table is read and written through CachingModelTable (caching_store.h).
class MetadataStore : public ModelTable,
                      public ProbeDataTable,
                      public KeyTable,
                      public OutcomeTable,
                      public AlignmentTable,
                      public AuditTable,
                      public ProbeJobTable,
                      public ChangeFeedSource,
                      public MetaTable {
 public:
  ~MetadataStore() override = default;
};

// "postgresql://..." or "postgres://..." (a libpq connection URI) opens a PostgreSQL store;
// anything else is the path of a SQLite file (created if absent). Either is migrated to
// kMetadataSchemaVersion.
absl::StatusOr<std::unique_ptr<MetadataStore>> OpenMetadataStore(const std::string& url_or_path);

// Whether OpenMetadataStore would open `url_or_path` as PostgreSQL.
bool IsPostgresUrl(std::string_view url_or_path);

// The URL with any password replaced by "***" (user:secret@ and password=...), for logs and
// error messages; a path is returned as it is.
std::string RedactUrl(std::string_view url_or_path);

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_METADATA_STORE_H_
