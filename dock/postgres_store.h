// The metadata store on a PostgreSQL server (libpq), for docks that outgrow one SQLite file.
//
// One connection per store, every call serialised by a mutex, as in SQLite: simple and correct,
// and a dock's metadata calls are short next to the model runs they serve. If the connection is
// broken (server restart, network), the next call resets it once; if that fails, or the
// connection breaks during a call, the call returns UNAVAILABLE with libpq's message (a call is
// never retried: it may have committed before the connection broke).
#ifndef MODELDOCK_DOCK_POSTGRES_STORE_H_
#define MODELDOCK_DOCK_POSTGRES_STORE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "dock/metadata_store.h"

typedef struct pg_conn PGconn;

namespace modeldock::dock {

class PostgresMetadataStore : public MetadataStore {
 public:
  // `url`: a libpq connection URI (postgresql://user@host:port/db?options); connecting gives up
  // after kDefaultConnectTimeoutSeconds per host address unless the URL (?connect_timeout=) or
  // $PGCONNECT_TIMEOUT sets another limit. Creates the tables if absent (schema
  // kMetadataSchemaVersion) and applies newer migrations, each in a transaction. UNAVAILABLE if
  // the server cannot be reached; FAILED_PRECONDITION if the database has a newer schema than
  // this binary.
  static absl::StatusOr<std::unique_ptr<MetadataStore>> Open(const std::string& url);
  ~PostgresMetadataStore() override;

  absl::Status Insert(const ModelRecord& record) override;
  absl::Status InsertKey(const ApiKeyRow& key) override;
  absl::StatusOr<std::vector<ApiKeyRow>> Keys(const std::string& id = "") override;
  absl::Status RevokeKey(const std::string& id) override;
  absl::Status SetOwner(const std::string& model_id, const std::string& key_id) override;
  absl::StatusOr<std::string> OwnerOf(const std::string& model_id) override;
  absl::Status UpdateState(const ModelRecord& record) override;
  absl::StatusOr<ModelRecord> Get(const std::string& id) override;
  absl::StatusOr<std::vector<ModelRecord>> FindVersions(const std::string& name) override;
  absl::StatusOr<std::vector<ModelRecord>> ListAll() override;
  absl::Status Delete(const std::string& id) override;
  absl::StatusOr<std::map<ModelState, int>> CountByState() override;
  absl::StatusOr<int> CountBySha(const std::string& sha256) override;
  absl::Status CommitProbe(const ModelRecord& record, const std::string& probe_set_sha,
                           const Tensor& probe_logits, const Tensor& probe_features,
                           const std::string& space, const std::vector<float>& vector) override;
  absl::StatusOr<Tensor> GetProbeOutputs(const std::string& id,
                                         const std::string& probe_set_sha) override;
  absl::StatusOr<Tensor> GetProbeFeatures(const std::string& id,
                                          const std::string& probe_set_sha) override;
  absl::StatusOr<bool> HasProbeFeatures(const std::string& id,
                                        const std::string& probe_set_sha) override;
  absl::Status PutVector(const std::string& id, const std::string& space,
                         const std::vector<float>& vector) override;
  absl::StatusOr<std::vector<float>> GetVector(const std::string& id,
                                               const std::string& space) override;
  absl::StatusOr<std::optional<std::string>> ClaimProbeJob(const std::string& owner,
                                                           absl::Duration lease) override;
  absl::Status RenewProbeLeases(const std::vector<std::string>& ids, const std::string& owner,
                                absl::Duration lease) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::vector<float>>>> Vectors(
      const std::string& space) override;
  absl::Status AddOutcomes(const OutcomeQueryRow& query,
                           const std::vector<OutcomeRow>& outcomes) override;
  absl::StatusOr<std::vector<OutcomeRow>> Outcomes(const std::string& model_id, int limit) override;
  absl::StatusOr<std::pair<int64_t, int64_t>> CountOutcomes(const std::string& model_id) override;
  absl::StatusOr<std::vector<OutcomeQueryRow>> OutcomeQueries() override;
  absl::StatusOr<int64_t> InsertAlignment(const AlignmentRow& row) override;
  absl::StatusOr<std::vector<AlignmentRow>> Alignments() override;
  absl::StatusOr<AlignmentRow> Alignment(int64_t version) override;
  absl::Status UpdateSpec(const ModelRecord& record) override;
  absl::Status AppendAudit(const AuditEntry& entry) override;
  absl::StatusOr<std::vector<AuditEntry>> Audit(int limit) override;
  absl::Status SetMeta(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> GetMeta(const std::string& key) override;
  // LISTEN on a connection of its own (channel kChangeChannel); the changes are announced by
  // pg_notify in the transactions of CommitProbe, PutVector and Delete.
  absl::StatusOr<std::unique_ptr<ChangeFeed>> OpenChangeFeed() override;

  // The NOTIFY channel of model changes; payload "<ModelChangeName> <model id>". Channels are
  // per database, not per schema: a feed may see ids of another schema's docks, which the
  // receiver does not find and ignores.
  static constexpr const char* kChangeChannel = "modeldock_models";

  // libpq's connect_timeout when neither the URL nor $PGCONNECT_TIMEOUT sets one (libpq's own
  // default is to wait as long as the kernel does).
  static constexpr int kDefaultConnectTimeoutSeconds = 10;

 private:
  PostgresMetadataStore(PGconn* conn, std::string conninfo, std::string url)
      : conn_(conn), conninfo_(std::move(conninfo)), url_(std::move(url)) {}
  // Creates the schema or migrates it (Open).
  absl::Status Migrate();
  // Resets a broken connection once; UNAVAILABLE if it stays broken. Every call starts with it,
  // with mutex_ held.
  absl::Status EnsureConnected();
  absl::StatusOr<Tensor> GetProbeTensor(const char* sql, const char* what, const std::string& id,
                                        const std::string& probe_set_sha);
  PGconn* conn_;
  std::string conninfo_;  // the URL as given (with any password): for the change feed's connection
  std::string url_;       // redacted, for messages
  std::mutex mutex_;  // one connection, serialised
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_POSTGRES_STORE_H_
