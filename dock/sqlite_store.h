// The embedded metadata store: one SQLite file (WAL journal, synchronous=FULL), one connection
// whose calls are serialised by a mutex.
#ifndef MODELDOCK_DOCK_SQLITE_STORE_H_
#define MODELDOCK_DOCK_SQLITE_STORE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "dock/metadata_store.h"

struct sqlite3;

namespace modeldock::dock {

class SqliteMetadataStore : public MetadataStore {
 public:
  // Creates the file if absent; migrates an older schema in place, one transaction per step.
  static absl::StatusOr<std::unique_ptr<MetadataStore>> Open(const std::string& path);
  ~SqliteMetadataStore() override;

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
  // One process owns a SQLite file: there is nothing to follow (nullptr).
  absl::StatusOr<std::unique_ptr<ChangeFeed>> OpenChangeFeed() override { return nullptr; }

 private:
  explicit SqliteMetadataStore(sqlite3* db) : db_(db) {}
  // Brings a database of schema `found` (0: new, its tables just created) to
  // kMetadataSchemaVersion, one transaction per step (Open).
  absl::Status Migrate(int found, const std::string& path);
  absl::Status Exec(const std::string& sql);
  // Ends the open transaction without committing (its failure is ignored: see the definition).
  void Rollback();
  // Insert's and SetOwner's statements; mutex_ held by the caller.
  absl::Status InsertRowLocked(const ModelRecord& r);
  absl::Status SetOwnerLocked(const std::string& model_id, const std::string& key_id);
  absl::StatusOr<Tensor> GetProbeTensor(const char* sql, const char* what, const std::string& id,
                                        const std::string& probe_set_sha);
  sqlite3* db_;
  std::mutex mutex_;  // one connection, serialised
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_SQLITE_STORE_H_
