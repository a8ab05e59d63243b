// Model metadata in SQLite (WAL journal, synchronous=FULL): one row per model, the model's probe
// outputs and its knowledge vector. Every multi-row change is one transaction, so a crash leaves
// either the old or the new state. The seam for a PostgreSQL store (several replicas) is this
// class's interface.
#ifndef MODELDOCK_DOCK_METADATA_STORE_H_
#define MODELDOCK_DOCK_METADATA_STORE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "dock/dock.h"

struct sqlite3;

namespace modeldock::dock {

// A stored API key: salted SHA-256 of its secret (hex), never the secret itself.
struct ApiKeyRow {
  std::string id;
  std::string name;
  int role = 0;  // dock::ApiKeyRole
  std::string salt;
  std::string hash;
  int64_t created_unix_ms = 0;
  bool revoked = false;
};

// Outcome records (issue 9): a reported query and what stage 1 said about every model then.
struct OutcomeQueryRow {
  std::string query_id;  // SHA-256 of the samples and labels
  int task = 0;          // dock::TaskKind
  int64_t num_samples = 0;
  int num_classes = 0;
  Tensor prototypes;  // [C, D] class prototypes in the reference encoder's space (not the samples)
  std::map<std::string, double> stage1;  // model id -> stage-1 score at report time
  int64_t created_unix_ms = 0;
};

struct OutcomeRow {
  int64_t id = 0;
  std::string query_id;
  std::string model_id;
  std::string model_name;
  double accuracy = 0;
  std::string source;  // "finetune", "import"
  double weight = 1;
  std::string reporter_key_id;
  int64_t created_unix_ms = 0;
};

// A trained ranker version: summary (validation figures) and payload (encoder::OutcomeRanker
// JSON), both JSON text.
struct AlignmentRow {
  int64_t version = 0;
  int64_t created_unix_ms = 0;
  std::string summary;
  std::string payload;
};

class MetadataStore {
 public:
  static absl::StatusOr<std::unique_ptr<MetadataStore>> Open(const std::string& path);
  ~MetadataStore();

  // ALREADY_EXISTS if the id or the (name, version) pair is taken.
  absl::Status Insert(const ModelRecord& record);

  // API keys and model ownership.
  absl::Status InsertKey(const ApiKeyRow& key);
  // All keys (id empty) or the one with `id` (empty result when there is none).
  absl::StatusOr<std::vector<ApiKeyRow>> Keys(const std::string& id = "");
  absl::Status RevokeKey(const std::string& id);  // NOT_FOUND
  absl::Status SetOwner(const std::string& model_id, const std::string& key_id);
  absl::StatusOr<std::string> OwnerOf(const std::string& model_id);  // "" when none
  // Rewrites the mutable fields (state, reason, has_embed, feature_dim, probe_millis, revision).
  absl::Status UpdateState(const ModelRecord& record);
  // Records carry their owner (model_owners joined in: no query per model).
  absl::StatusOr<ModelRecord> Get(const std::string& id);
  // Every version of a model name, oldest registration first (empty when there is none).
  absl::StatusOr<std::vector<ModelRecord>> FindVersions(const std::string& name);
  absl::StatusOr<std::vector<ModelRecord>> ListAll();
  // Deletes the row, its probe outputs and its vector.
  absl::Status Delete(const std::string& id);
  // Number of models in each state (states with none are absent): one COUNT query, not a scan.
  absl::StatusOr<std::map<ModelState, int>> CountByState();
  // Number of models whose file has this digest.
  absl::StatusOr<int> CountBySha(const std::string& sha256);

  // Stores probe outputs (logits and, unless empty, compressed features), vector and the READY
  // record in one transaction.
  absl::Status CommitProbe(const ModelRecord& record, const std::string& probe_set_sha,
                           const Tensor& probe_logits, const Tensor& probe_features,
                           const std::string& space, const std::vector<float>& vector);
  // NOT_FOUND if the model has no outputs for this probe set.
  absl::StatusOr<Tensor> GetProbeOutputs(const std::string& id, const std::string& probe_set_sha);
  // The compressed probe features of CommitProbe; NOT_FOUND if none for this probe set.
  absl::StatusOr<Tensor> GetProbeFeatures(const std::string& id, const std::string& probe_set_sha);
  // Whether GetProbeFeatures would find features (without reading them).
  absl::StatusOr<bool> HasProbeFeatures(const std::string& id, const std::string& probe_set_sha);
  // Replaces a model's vector (used when the knowledge space changes).
  absl::Status PutVector(const std::string& id, const std::string& space,
                         const std::vector<float>& vector);
  // Outcome records. AddOutcomes upserts the query and its outcomes (one per query, model and
  // source: a new report replaces the old) in one transaction.
  absl::Status AddOutcomes(const OutcomeQueryRow& query, const std::vector<OutcomeRow>& outcomes);
  // Newest first; `model_id` empty = all; limit <= 0 = no limit.
  absl::StatusOr<std::vector<OutcomeRow>> Outcomes(const std::string& model_id, int limit);
  // (outcome records, distinct queries with outcomes).
  absl::StatusOr<std::pair<int64_t, int64_t>> CountOutcomes(const std::string& model_id);
  absl::StatusOr<std::vector<OutcomeQueryRow>> OutcomeQueries();

  // Ranker versions; InsertAlignment assigns the next version number and returns it.
  absl::StatusOr<int64_t> InsertAlignment(const AlignmentRow& row);
  // All versions, oldest first, without payloads.
  absl::StatusOr<std::vector<AlignmentRow>> Alignments();
  absl::StatusOr<AlignmentRow> Alignment(int64_t version);  // NOT_FOUND
  // Description, license and tags of a model (and its revision).
  absl::Status UpdateSpec(const ModelRecord& record);
  absl::Status AppendAudit(const AuditEntry& entry);
  absl::StatusOr<std::vector<AuditEntry>> Audit(int limit);  // newest first

  // Small settings in the meta table ("" when unset).
  absl::Status SetMeta(const std::string& key, const std::string& value);
  absl::StatusOr<std::string> GetMeta(const std::string& key);

  // (model id, vector) for every vector in `space`.
  absl::StatusOr<std::vector<std::pair<std::string, std::vector<float>>>> Vectors(
      const std::string& space);

 private:
  explicit MetadataStore(sqlite3* db) : db_(db) {}
  absl::Status Exec(const std::string& sql);
  absl::StatusOr<Tensor> GetProbeTensor(const char* sql, const char* what, const std::string& id,
                                        const std::string& probe_set_sha);
  sqlite3* db_;
  std::mutex mutex_;  // one connection, serialised
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_METADATA_STORE_H_
