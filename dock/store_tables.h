// The metadata store, one interface per table (issue 22, "a narrower store"): each part of the
// dock is given the tables it uses, not the whole store. dock::MetadataStore
// (dock/metadata_store.h) is their union, which both backends (SQLite, PostgreSQL) implement;
// CachingModelTable (dock/caching_store.h) is the dock's ModelTable, in memory over the opened
// store's.
//
//   table            rows                                        used by
//   ModelTable       models, model_owners                        ModelStates, Prober (its
//                                                                commit), Recommender, the
//                                                                dock's registry and integrity
//   ProbeDataTable   probe_outputs, probe_features (+ checksums), KnowledgeSpace, Recommender,
//                    vectors                                     the dock's start-up and scrub
//   KeyTable         api_keys                                    the dock (CreateApiKey, ...)
//   OutcomeTable     outcome_queries, outcomes                   LearningLoop, Recommender (weak
//                                                                records), ReportOutcome
//   AlignmentTable   alignments (ranker versions)                LearningLoop
//   AuditTable       audit_log                                   the dock (Audit, AuditLog)
//   ProbeJobTable    models.lease_owner, models.lease_until_ms   ProbeQueue (replicas)
//   ChangeFeedSource (PostgreSQL LISTEN/NOTIFY)                  the dock's start-up, for
//                                                                ReplicaSync
//   MetaTable        meta (small settings)                       LearningLoop, the scrubber's
//                                                                last run
//
// Every call is safe from several threads: each backend serialises its calls on its one
// connection (its own mutex_), and every multi-row change is one transaction, so a crash leaves
// either the old or the new state. Both backends give the same results and status codes for the
// same calls (dock/metadata_store_test.cc runs one suite on both).
#ifndef MODELDOCK_DOCK_STORE_TABLES_H_
#define MODELDOCK_DOCK_STORE_TABLES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "dock/types.h"

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
  // JSON object of how the accuracy was measured, '' when the report says nothing: a tune's
  // split (seed, train/validation sizes) and schedule (epochs run, best epoch, budget; schema 7).
  std::string detail;
};

// A trained ranker version: summary (validation figures) and payload (encoder::OutcomeRanker
// JSON), both JSON text.
struct AlignmentRow {
  int64_t version = 0;
  int64_t created_unix_ms = 0;
  std::string summary;
  std::string payload;
};

// A change to a model that other servers on the same database must apply to what they keep in
// memory (the stage-1 index, the registry, caches). Only the id travels: a receiver reads the
// model's current state from the store, so events may arrive twice, late or out of order
// without harm. kRecordChanged: the model's row only (registered, state, spec or owner), no
// vector or probe output.
enum class ModelChange { kReady, kVectorChanged, kDeleted, kRecordChanged };
// "ready", "vector", "deleted", "record" (defined in metadata_store.cc).
const char* ModelChangeName(ModelChange change);

struct ModelChangeEvent {
  std::string model_id;
  ModelChange change = ModelChange::kReady;
};

// Changes committed by any server on a shared store (PostgreSQL: LISTEN on a connection of its
// own). Used by one thread.
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  // Waits up to `timeout` for changes and returns those that arrived (empty on timeout).
  // UNAVAILABLE if the connection broke: changes may have been missed (catch up from the store
  // after the next successful Wait, which reconnects first).
  virtual absl::StatusOr<std::vector<ModelChangeEvent>> Wait(absl::Duration timeout) = 0;
};

// One row per model (spec, state, reason, file digest, embed info, revision) and its owner.
// Every call that changes a row (Insert, SetOwner, UpdateState, UpdateSpec, CommitProbe,
// Delete) is what the dock's CachingModelTable refreshes its map after.
class ModelTable {
 public:
  virtual ~ModelTable() = default;

  // ALREADY_EXISTS if the id or the (name, version) pair is taken. The owner (unless
  // record.owner_key_id is empty) is stored with the row, in the same transaction.
  virtual absl::Status Insert(const ModelRecord& record) = 0;
  // Rewrites the mutable fields (state, reason, has_embed, feature_dim, probe_millis, revision).
  // NOT_FOUND if there is no such model.
  virtual absl::Status UpdateState(const ModelRecord& record) = 0;
  // Description, license and tags of a model (and its revision). NOT_FOUND.
  virtual absl::Status UpdateSpec(const ModelRecord& record) = 0;
  // Records carry their owner (model_owners joined in: no query per model). NOT_FOUND.
  virtual absl::StatusOr<ModelRecord> Get(const std::string& id) = 0;
  // Every version of a model name, oldest registration first (empty when there is none).
  virtual absl::StatusOr<std::vector<ModelRecord>> FindVersions(const std::string& name) = 0;
  // Oldest registration first.
  virtual absl::StatusOr<std::vector<ModelRecord>> ListAll() = 0;
  // Deletes the row, its probe outputs, features, vector and owner (OK if there is none).
  virtual absl::Status Delete(const std::string& id) = 0;
  // Number of models in each state (states with none are absent): one COUNT query, not a scan.
  virtual absl::StatusOr<std::map<ModelState, int>> CountByState() = 0;
  // Number of models whose file has this digest.
  virtual absl::StatusOr<int> CountBySha(const std::string& sha256) = 0;
  virtual absl::Status SetOwner(const std::string& model_id, const std::string& key_id) = 0;
  virtual absl::StatusOr<std::string> OwnerOf(const std::string& model_id) = 0;  // "" when none
  // Stores probe outputs (logits and, unless empty, compressed features), vector (unless empty)
  // and the READY record in one transaction. NOT_FOUND (nothing stored) if the model was deleted
  // meanwhile. Here, not in ProbeDataTable, because it commits the model's row.
  virtual absl::Status CommitProbe(const ModelRecord& record, const std::string& probe_set_sha,
                                   const Tensor& probe_logits, const Tensor& probe_features,
                                   const std::string& space, const std::vector<float>& vector) = 0;
};

// What probing stored of each model: its outputs and compressed features on a probe set (each
// with a checksum checked on read) and its knowledge vector per space. Written with the READY
// row by ModelTable::CommitProbe; deleted with the row by ModelTable::Delete.
class ProbeDataTable {
 public:
  virtual ~ProbeDataTable() = default;

  // NOT_FOUND if the model has no outputs for this probe set.
  virtual absl::StatusOr<Tensor> GetProbeOutputs(const std::string& id,
                                                 const std::string& probe_set_sha) = 0;
  // The compressed probe features of CommitProbe; NOT_FOUND if none for this probe set.
  virtual absl::StatusOr<Tensor> GetProbeFeatures(const std::string& id,
                                                  const std::string& probe_set_sha) = 0;
  // Whether GetProbeFeatures would find features (without reading them).
  virtual absl::StatusOr<bool> HasProbeFeatures(const std::string& id,
                                                const std::string& probe_set_sha) = 0;
  // Replaces a model's vector (used when the knowledge space changes). No field of the model's
  // row changes.
  virtual absl::Status PutVector(const std::string& id, const std::string& space,
                                 const std::vector<float>& vector) = 0;
  // The vector of one model in `space`; NOT_FOUND if it has none there.
  virtual absl::StatusOr<std::vector<float>> GetVector(const std::string& id,
                                                       const std::string& space) = 0;
  // (model id, vector) for every vector in `space`, by model id.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::vector<float>>>> Vectors(
      const std::string& space) = 0;
};

// API keys.
class KeyTable {
 public:
  virtual ~KeyTable() = default;

  virtual absl::Status InsertKey(const ApiKeyRow& key) = 0;
  // All keys (id empty) or the one with `id` (empty result when there is none).
  virtual absl::StatusOr<std::vector<ApiKeyRow>> Keys(const std::string& id = "") = 0;
  virtual absl::Status RevokeKey(const std::string& id) = 0;  // NOT_FOUND
};

// Outcome records: reported queries and the accuracies of models on them.
class OutcomeTable {
 public:
  virtual ~OutcomeTable() = default;

  // Upserts the query and its outcomes (one per query, model and source: a new report replaces
  // the old, and counts as the newest) in one transaction.
  virtual absl::Status AddOutcomes(const OutcomeQueryRow& query,
                                   const std::vector<OutcomeRow>& outcomes) = 0;
  // Newest first; `model_id` empty = all; limit <= 0 = no limit.
  virtual absl::StatusOr<std::vector<OutcomeRow>> Outcomes(const std::string& model_id,
                                                           int limit) = 0;
  // (outcome records, distinct queries with outcomes).
  virtual absl::StatusOr<std::pair<int64_t, int64_t>> CountOutcomes(
      const std::string& model_id) = 0;
  // Oldest first.
  virtual absl::StatusOr<std::vector<OutcomeQueryRow>> OutcomeQueries() = 0;
};

// Trained ranker versions.
class AlignmentTable {
 public:
  virtual ~AlignmentTable() = default;

  // Assigns the next version number and returns it.
  virtual absl::StatusOr<int64_t> InsertAlignment(const AlignmentRow& row) = 0;
  // All versions, oldest first, without payloads.
  virtual absl::StatusOr<std::vector<AlignmentRow>> Alignments() = 0;
  virtual absl::StatusOr<AlignmentRow> Alignment(int64_t version) = 0;  // NOT_FOUND
};

// The audit log.
class AuditTable {
 public:
  virtual ~AuditTable() = default;

  virtual absl::Status AppendAudit(const AuditEntry& entry) = 0;
  virtual absl::StatusOr<std::vector<AuditEntry>> Audit(int limit) = 0;  // newest first
};

// Probing jobs as a queue that the servers on one database share (schema 6: models.lease_owner,
// models.lease_until_ms). Only the lease columns are written, which no ModelRecord field
// carries.
class ProbeJobTable {
 public:
  virtual ~ProbeJobTable() = default;

  // Claims the oldest model that is PENDING or PROBING and whose lease has expired (never
  // leased, or its server died), and leases it to `owner` for `lease` (the database's clock, so
  // servers' clocks need not agree); nullopt when there is none. Claims exclude each other
  // (PostgreSQL: FOR UPDATE SKIP LOCKED).
  virtual absl::StatusOr<std::optional<std::string>> ClaimProbeJob(const std::string& owner,
                                                                   absl::Duration lease) = 0;
  // Extends `owner`'s leases on `ids` to now + `lease` (an id leased to another owner meanwhile
  // is left alone).
  virtual absl::Status RenewProbeLeases(const std::vector<std::string>& ids,
                                        const std::string& owner, absl::Duration lease) = 0;
};

// Where a replica learns of other servers' changes.
class ChangeFeedSource {
 public:
  virtual ~ChangeFeedSource() = default;

  // A feed of the changes that CommitProbe (kReady), PutVector (kVectorChanged), Delete
  // (kDeleted), and Insert, SetOwner, UpdateState and UpdateSpec (kRecordChanged) commit on this
  // database, from any server, this one included: each of those calls announces its change in
  // its own transaction, so a change is announced if and only if it committed. nullptr when the
  // store serves one process only (SQLite): nothing to follow.
  virtual absl::StatusOr<std::unique_ptr<ChangeFeed>> OpenChangeFeed() = 0;
};

// Small settings in the meta table (schema version, serving ranker version, last scrub).
class MetaTable {
 public:
  virtual ~MetaTable() = default;

  virtual absl::Status SetMeta(const std::string& key, const std::string& value) = 0;
  virtual absl::StatusOr<std::string> GetMeta(const std::string& key) = 0;  // "" when unset
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_STORE_TABLES_H_
