// Internal: the Dock implementation shared by dock.cc (registry, probing, start-up) and
// recommend.cc (the two-stage pipeline).
#ifndef MODELDOCK_DOCK_DOCK_IMPL_H_
#define MODELDOCK_DOCK_DOCK_IMPL_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dock/blob_store.h"
#include "dock/caches.h"
#include "dock/dock.h"
#include "dock/learning.h"
#include "dock/metadata_store.h"
#include "encoder/black_box.h"
#include "encoder/knowledge.h"
#include "index/vector_index.h"
#include "remote/kserve_client.h"
#include "sandbox/worker_pool.h"

namespace modeldock::dock {

// Key of a loaded model in the workers and in the caches: a loaded module depends on the model's
// bytes and its declared input shape.
inline std::string ModelKey(const ModelRecord& record) {
  return absl::StrCat(record.sha256, "|", ShapeToString(record.spec.input_shape));
}

// Width of forward(x): K logits of a classifier, D features of a feature extractor.
inline int64_t OutputWidth(const ModelRecord& record) {
  return record.spec.kind == ModelKind::kFeatureExtractor
             ? record.feature_dim
             : static_cast<int64_t>(record.spec.class_labels.size());
}

// What the knowledge grid is selected from: a classifier's probe logits, or for a feature
// extractor pseudo-logits over clusters of its features (encoder::FeatureGridLogits).
inline Tensor GridLogits(const ModelRecord& record, const Tensor& probe_outputs) {
  return record.spec.kind == ModelKind::kFeatureExtractor
             ? encoder::FeatureGridLogits(probe_outputs)
             : probe_outputs;
}

// Query helpers shared by Recommend and ReportOutcome (recommend.cc).
// INVALID_ARGUMENT unless samples are [N, C, H, W] (images) or [N, F] (tabular), N >= 4, finite.
absl::Status ValidateQuerySamples(const Tensor& samples, TaskKind task);
// Whether a READY model can run on these samples (images are adapted; tabular needs equal width).
bool Compatible(const ModelRecord& record, TaskKind task, const Tensor& samples);
struct PreparedLabels {
  std::vector<int32_t> labels;  // renumbered 0..C-1
  int num_classes = 0;
  std::string source;  // "given" or how they were clustered
};
// The dataset's labels renumbered, or k-means clusters of `embeddings` (raw samples without).
absl::StatusOr<PreparedLabels> PrepareLabels(const Dataset& dataset,
                                             const std::optional<Tensor>& embeddings);

class DockImpl : public Dock {
 public:
  explicit DockImpl(DockOptions options);
  ~DockImpl() override;

  absl::Status Init();

  absl::StatusOr<std::unique_ptr<Upload>> BeginRegistration(
      const ModelSpec& spec, int64_t size_bytes, const std::string& sha256,
      const std::string& owner_key_id) override;
  absl::StatusOr<RegisterResult> FinishRegistration(std::unique_ptr<Upload> upload) override;
  absl::StatusOr<RegisterResult> RegisterRemote(const ModelSpec& spec,
                                                const std::string& owner_key_id) override;
  absl::StatusOr<ModelRecord> GetModel(std::string_view id_or_name) override;
  absl::StatusOr<ModelPage> ListModels(const ListFilter& filter, int page_size,
                                       const std::string& page_token) override;
  absl::StatusOr<std::string> DeleteModel(std::string_view id_or_name,
                                          const std::string& actor) override;
  absl::StatusOr<std::vector<std::string>> DeleteAllVersions(std::string_view name,
                                                             const std::string& actor) override;
  absl::StatusOr<ModelRecord> UpdateModel(std::string_view id_or_name, const ModelUpdate& update,
                                          const std::string& actor) override;
  absl::StatusOr<std::vector<AuditEntry>> AuditLog(int limit) override;
  void Audit(const std::string& actor, const std::string& action, const std::string& target,
             const std::string& detail) override;
  absl::StatusOr<ModelRecord> WaitForChange(const std::string& id, int64_t seen_revision,
                                            absl::Duration timeout) override;
  absl::StatusOr<RecommendResult> Recommend(const RecommendQuery& query) override;
  absl::StatusOr<std::pair<ModelRecord, Tensor>> Infer(
      std::string_view model, const Tensor& samples,
      const std::function<bool()>& cancelled) override;
  DockStats Stats() override;
  absl::StatusOr<NewApiKey> CreateApiKey(ApiKeyRole role, const std::string& name) override;
  absl::StatusOr<std::vector<ApiKeyInfo>> ListApiKeys() override;
  absl::Status RevokeApiKey(const std::string& id) override;
  absl::StatusOr<ApiKeyInfo> Authenticate(const std::string& secret) override;
  absl::StatusOr<OutcomeReportResult> ReportOutcome(const OutcomeReport& report) override;
  absl::StatusOr<RecordList> ListRecords(std::string_view model, int limit) override;
  absl::StatusOr<TrainingStatus> TrainAlignment(bool wait,
                                                std::function<bool()> is_cancelled) override;
  absl::StatusOr<AlignmentList> ListAlignments() override;
  absl::Status UseAlignment(int64_t version) override;
  void Shutdown() override;

 private:
  absl::Status LoadKnowledgeSpace();
  absl::Status ReconcileModels();
  absl::Status RebuildIndexIfStale();
  void CollectGarbageBlobs();
  // Zero for a store of one process; DockOptions::shared_blob_grace with PostgreSQL.
  absl::Duration BlobGrace() const;
  // Replicas (a store with a change feed): the sync thread applies other servers' changes and
  // compares the index with the stored vectors every sync_interval and after a lost connection.
  void FollowChanges();
  // Brings the index (and the serving version's), the proxy cache and run costs in line with
  // the store's current state of one model.
  absl::Status SyncModel(const std::string& id);
  // Adds, replaces and removes index entries until the index holds exactly the stored vectors.
  absl::Status CatchUp();
  void ProbeWorker();
  // A probe worker of a shared store: claims jobs from the store (leased to replica_id_).
  void ClaimProbeJobs();
  // Extends the leases of the jobs this replica's probe workers run (the sync thread calls it).
  void RenewLeases();
  void Probe(const std::string& id);
  void SetState(ModelRecord& record, ModelState state, const std::string& reason);
  void Enqueue(const std::string& id);
  bool IsImageModel(const ModelRecord& record) const {
    return record.spec.task == TaskKind::kImageClassification;
  }
  absl::Status SaveIndex();
  // The FAISS options of the knowledge space (dimension and factory string).
  index::IndexOptions KnowledgeIndexOptions() const;
  // A new index holding `vectors` (the dock's own, or a version's projected ones).
  absl::StatusOr<std::unique_ptr<index::VectorIndex>> NewIndexOf(
      const std::vector<std::pair<std::string, std::vector<float>>>& vectors) const;
  // Every stored model vector through a trained version's projection, in a new index.
  absl::StatusOr<std::shared_ptr<index::VectorIndex>> BuildProjectedIndex(
      const encoder::VectorProjection& projection);

  absl::Status StartWorkers();
  // A new (name, version) from `owner_key_id`: ALREADY_EXISTS / PERMISSION_DENIED otherwise.
  absl::Status CheckNewVersion(const ModelSpec& spec, const std::string& owner_key_id);
  // A remote model's run (RunModel's other half): KServe v2 ModelInfer in batches.
  absl::StatusOr<sandbox::RunResult> RunRemote(const ModelRecord& record, const Tensor& samples,
                                               absl::Duration time_limit,
                                               const sandbox::CancelCheck& cancelled);
  remote::KServeClient* RemoteClient(const std::string& endpoint);
  // Deletes one stored version: row, index entries, blob (when no other row uses it), caches.
  absl::StatusOr<std::string> DeleteRecord(const ModelRecord& record, const std::string& actor);
  // Runs a stored model on `samples` in a worker, within `time_limit`; a job whose worker died
  // is retried once on a fresh worker (the crash may have been the host's, not the model's).
  // want_layers asks for embed_layers(x) of a model that exports it (record.layers).
  absl::StatusOr<sandbox::RunResult> RunModel(const ModelRecord& record, const Tensor& samples,
                                              bool want_features, bool want_layers,
                                              absl::Duration time_limit,
                                              const sandbox::CancelCheck& cancelled);
  sandbox::JobLimits LimitsFor(absl::Duration wall) const;
  sandbox::WireLimits OutputLimits() const;

  // Recommend helpers (recommend.cc).
  absl::StatusOr<std::shared_ptr<const encoder::ModelOutputs>> OutputsOn(
      const ModelRecord& record, const Tensor& samples, const std::string& dataset_hash,
      const sandbox::CancelCheck& cancelled, bool* from_cache);
  absl::StatusOr<Tensor> EmbedWithReference(const Tensor& samples);
  absl::StatusOr<std::shared_ptr<const Tensor>> ProbeFeatures(const ModelRecord& record);
  // Stage-1 proxy score (rank fusion over `models`, in (0, 1]) of every model with probe features.
  absl::StatusOr<std::unordered_map<std::string, double>> ProxyScores(
      const Tensor& query_embeddings, const std::vector<int32_t>& labels, int num_classes,
      const std::vector<const ModelRecord*>& models);

  DockOptions options_;
  std::unique_ptr<MetadataStore> store_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<ChangeFeed> feed_;  // null: this process is the store's only user (SQLite)
  bool shared_ = false;               // PostgreSQL: other replicas may share the blob directory
  std::thread sync_thread_;
  std::string replica_id_;           // "host/pid/random": the owner of this replica's leases
  std::set<std::string> leased_;     // with queue_mutex_: jobs this replica's workers probe
  std::condition_variable sync_cv_;   // with queue_mutex_: wakes the sync thread at shutdown
  std::unique_ptr<index::VectorIndex> index_;
  // Every run of uploaded model code goes through these worker processes.
  std::unique_ptr<sandbox::WorkerPool> workers_pool_;
  // Outcome records, trained ranker versions and the serving one.
  std::unique_ptr<LearningLoop> learning_;
  std::string index_path_;

  // The knowledge space: probe set, reference encoder E, set encoder. space_ fingerprints all
  // three; vectors from another space are rebuilt at start-up.
  std::unique_ptr<encoder::ReferenceEncoder> reference_;
  std::mutex reference_mutex_;  // E's module serves one caller at a time
  std::unique_ptr<encoder::KnowledgeEncoder> knowledge_;
  Tensor probe_set_;
  std::string probe_set_sha_;
  Tensor probe_embeddings_;
  std::string space_;

  std::mutex registry_mutex_;  // orders name checks, inserts and deletes

  std::mutex state_mutex_;
  std::condition_variable state_changed_;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;

  LruCache<const encoder::ModelOutputs> output_cache_;
  std::mutex remote_mutex_;  // guards remote_clients_
  std::map<std::string, std::unique_ptr<remote::KServeClient>> remote_clients_;  // by endpoint
  LruCache<const Tensor> proxy_cache_;  // model id -> compressed probe features
  RunCosts run_costs_;

  // Counters for Stats() (microseconds for durations).
  std::atomic<int64_t> registrations_admitted_{0}, registrations_rejected_{0};
  std::atomic<int64_t> probes_done_{0}, probes_failed_{0}, probe_micros_{0};
  std::atomic<int64_t> recommends_{0}, stage1_micros_{0}, stage2_micros_{0};
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_DOCK_IMPL_H_
