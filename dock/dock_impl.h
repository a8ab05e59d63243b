// Internal: the Dock implementation. DockImpl orchestrates the engine's parts, each in its own
// file:
//   dock.cc           start-up, shutdown, probing jobs, replica glue, stats
//   registration.cc   uploads, admission, remote registration
//   dock_models.cc    model reads, updates and deletions through the Registry
//   api_keys.cc       the audit log and API keys
//   model_runs.cc     runs in the worker processes and on remote KServe servers, Infer
//   dock_learning.cc  outcome reports, training and ranker versions
// and the parts with their own state and threads:
//   Registry (registry.h)               models, versions, owners, state transitions and their
//                                       waiters; a row, its file and its index entries changed
//                                       together under the registry lock
//   MetadataStore (metadata_store.h)    the opened SQLite/PostgreSQL store; each part gets the
//                                       tables it uses (store_tables.h), never the whole store
//   CachingModelTable                   the registry in memory (caching_store.h) over the
//                                       store's model table: model reads come from it, writes
//                                       go through it; on replicas SyncModel/CatchUp refresh it
//                                       with the index; reads that must see other replicas'
//                                       commits at once (ownership, updates, deletions) bypass
//                                       it (inner(), GetFresh)
//   KnowledgeSpaces (knowledge_spaces.h) one KnowledgeSpace per input kind (grey, colour small,
//                                       colour large, ...): probe set, encoders, index of the
//                                       knowledge vectors of the models of that kind
//   ProbeQueue (probe_queue.h)          probing jobs, their threads and leases
//   ReplicaSync (replica_sync.h)        the sync thread of a replica
//   LearningLoop (learning.h)           outcome records, training, the serving version
//   Recommender (recommender.h)         the two-stage recommend pipeline, its output and proxy
//                                       caches, run costs and the memory of failed runs
//   Tuner (tuner.h)                     rank, then tune: fine-tunes in a worker pool of its own
#ifndef MODELDOCK_DOCK_DOCK_IMPL_H_
#define MODELDOCK_DOCK_DOCK_IMPL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dock/background_queue.h"
#include "dock/blob_store.h"
#include "dock/caches.h"
#include "dock/caching_store.h"
#include "dock/dock.h"
#include "dock/dock_testing.h"
#include "dock/knowledge_space.h"
#include "dock/knowledge_spaces.h"
#include "dock/kserve_runner.h"
#include "dock/learning.h"
#include "dock/metadata_store.h"
#include "dock/model_runner.h"
#include "dock/model_states.h"
#include "dock/probe_queue.h"
#include "dock/prober.h"
#include "dock/recommender.h"
#include "dock/registry.h"
#include "dock/replica_sync.h"
#include "dock/sandbox_runner.h"
#include "dock/scrubber.h"
#include "dock/tuner.h"
#include "encoder/black_box.h"
#include "encoder/knowledge.h"
#include "index/vector_index.h"
#include "sandbox/worker_pool.h"

namespace modeldock::dock {

class DockImpl : public Dock, private ModelFiles {
 public:
  explicit DockImpl(DockOptions options);
  ~DockImpl() override;

  // `wrap_store` (tests, dock_testing.h; may be empty) wraps the opened metadata store.
  absl::Status Init(const StoreWrapper& wrap_store);

  absl::StatusOr<std::unique_ptr<Upload>> BeginRegistration(
      const ModelSpec& spec, int64_t size_bytes, const std::string& sha256,
      const std::string& owner_key_id) override;
  absl::StatusOr<RegisterResult> FinishRegistration(std::unique_ptr<Upload> upload) override;
  absl::StatusOr<RegisterResult> RegisterRemote(const ModelSpec& spec,
                                                const std::string& owner_key_id) override;
  absl::StatusOr<ModelRecord> GetModel(std::string_view id_or_name) override;
  absl::StatusOr<ModelPage> ListModels(const ListFilter& filter, int page_size,
                                       const std::string& page_token) override;
  absl::StatusOr<std::vector<NearestModel>> NearestModels(std::string_view id_or_name,
                                                          int k) override;
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
  absl::StatusOr<TuneResult> Tune(
      const TuneQuery& query,
      const std::function<void(const TuneProgressEvent&)>& progress) override;
  absl::StatusOr<RecordList> ListRecords(std::string_view model, int limit) override;
  absl::StatusOr<TrainingStatus> TrainAlignment(bool wait,
                                                std::function<bool()> is_cancelled) override;
  absl::StatusOr<AlignmentList> ListAlignments() override;
  absl::Status UseAlignment(int64_t version) override;
  absl::StatusOr<ScrubResult> Scrub(bool wait, std::function<bool()> is_cancelled) override;
  void Shutdown() override;

 private:
  // Start-up (dock.cc): opens the metadata store (passed through `wrap_store`, if any) and
  // loads the model table into memory (database_, the table pointers, models_); returns the
  // store's change feed (nullptr: this process is its only user).
  absl::StatusOr<std::unique_ptr<ChangeFeed>> OpenStore(const StoreWrapper& wrap_store);
  // Brings every stored model into the current knowledge space and requeues interrupted probes;
  // removes blobs no row references.
  absl::Status ReconcileModels();
  // A READY model's vector in `space` from its stored probe outputs (no model run).
  absl::Status RebuildVector(const ModelRecord& record, KnowledgeSpace& space);
  // The prober's options; `replicas`: probing jobs are claimed from the shared store.
  ProberOptions ProbingOptions(bool replicas);
  void CollectGarbageBlobs();
  // Zero for a store of one process; DockOptions::shared_blob_grace with PostgreSQL.
  absl::Duration BlobGrace() const;
  // Replicas (ReplicaSync's handlers): bring the index (and the serving version's), the proxy
  // cache and run costs in line with the store's current state of one model, or of all.
  absl::Status SyncModel(const ModelChangeEvent& event);
  absl::Status CatchUp();
  // State transitions and their waiters (the registry's).
  void SetState(ModelRecord& record, ModelState state, const std::string& reason) {
    registry_->states()->Set(record, state, reason);
  }
  void NotifyStateChanged() { registry_->states()->Notify(); }
  bool IsImageModel(const ModelRecord& record) const {
    return record.spec.task == TaskKind::kImageClassification;
  }
  // The knowledge space a model belongs to (its input kind); nullptr for tabular models and
  // image kinds no space covers (scored in stage 2 only).
  KnowledgeSpace* SpaceFor(const ModelRecord& record) const { return spaces_->ForModel(record); }
  // Every stored model vector through a trained version's projection, in a new index
  // (learning.cc).
  absl::StatusOr<std::shared_ptr<index::VectorIndex>> BuildProjectedIndex(
      const encoder::VectorProjection& projection);

  // Deletes one stored version (Registry::Remove: row, index entries, blob when no other row
  // uses it), then what the dock keeps about it: run caches, waiters; audited (dock_models.cc).
  absl::StatusOr<std::string> DeleteRecord(const ModelRecord& record, const std::string& actor);

  // Outcome reports (dock_learning.cc).
  // Fills `query`'s stage-1 view: every compatible model's stage-1 proxy score now.
  absl::Status AddStage1View(const OutcomeReport& report, const Tensor& embeddings,
                             const PreparedLabels& prepared, OutcomeQueryRow* query);
  // Scores the report's models on its dataset in the background (report_jobs_), so training
  // learns stage 2's view of the task too.
  void SubmitReportStandings(const OutcomeReport& report, const OutcomeQueryRow& query,
                             const std::vector<ModelRecord>& models);

  // Model runs (model_runs.cc) go through runner_ (model_runner.h): uploaded files to the
  // sandbox's workers, remote models to their KServe v2 servers.
  absl::Status StartRunners();
  // `data`: a text dataset's texts for a text model, else its samples.
  absl::StatusOr<RunOutputs> RunModel(const ModelRecord& record, const Dataset& data,
                                      bool want_features, bool want_layers,
                                      absl::Duration time_limit,
                                      const std::function<bool()>& cancelled);
  // ModelFiles: the verified path of a stored model's file (CheckModelFile, then the blob).
  absl::StatusOr<std::string> VerifiedPath(const ModelRecord& record) override;

  // Integrity of stored models (integrity.cc).
  // OK when the model's file matches its registered digest (or was restored from a mirror);
  // else DATA_LOSS, and every model of that file is marked FAILED (kDataLossReason). Remote
  // models have no file: OK.
  absl::Status CheckModelFile(const ModelRecord& record);
  // Marks the models stored as `sha256` FAILED with `reason` (those not already failed by data
  // loss); returns how many; `ids` (may be null) gets every model of the file.
  int MarkDataLoss(const std::string& sha256, const std::string& reason,
                   std::vector<std::string>* ids);
  // Models of `sha256` FAILED by data loss go back to PENDING and are probed again; how many.
  int RequeueRepaired(const std::string& sha256, const std::string& how);
  // One blob of a scrub: verified (forced, rate-limited), restored or its models failed.
  void ScrubBlob(const std::string& sha256, int64_t size_bytes, VerifyOptions verify,
                 ScrubResult* result);
  // The scrub job (Scrubber's callback): every model file, then every stored probe feature row.
  ScrubResult RunScrub(const std::function<bool()>& stop);
  void StartScrubber();

  DockOptions options_;
  // The opened SQLite or PostgreSQL store (every table; its own lock). Not called directly: the
  // dock and its parts reach each table through its interface below, the model table only
  // through models_, so that the registry in memory sees every write of a model row.
  std::unique_ptr<MetadataStore> database_;
  // The model registry in memory over database_'s model table (caching_store.h): model reads
  // are served from it; the few that must see another replica's commit at once go to
  // models_->inner() or models_->GetFresh.
  std::unique_ptr<CachingModelTable> models_;
  // database_'s other tables, as the dock's own code uses them (the parts get theirs in their
  // constructors: ModelStates and the Prober models_, the KnowledgeSpaces probe data, the
  // LearningLoop outcomes, alignments and meta, the Recommender models_, probe data and
  // outcomes, the ProbeQueue probe jobs, ReplicaSync the change feed).
  ProbeDataTable* probe_data_ = nullptr;  // start-up's vectors, NearestModels, the scrub
  KeyTable* keys_ = nullptr;
  OutcomeTable* outcomes_ = nullptr;  // ReportOutcome, training inputs, Stats
  AuditTable* audit_ = nullptr;
  MetaTable* meta_ = nullptr;  // the scrubber's last run
  std::unique_ptr<BlobStore> blobs_;
  bool shared_ = false;  // PostgreSQL: other replicas may share the blob directory
  // Every run of uploaded model code goes through the sandbox's worker processes, every run of
  // a remote model through its KServe client; runner_ routes each model to its runner.
  std::unique_ptr<SandboxRunner> sandbox_;
  std::unique_ptr<KServeRunner> remote_;
  std::unique_ptr<RoutingRunner> runner_;
  // Outcome records, trained ranker versions and the serving one.
  std::unique_ptr<LearningLoop> learning_;
  // One knowledge space per input kind: probe set, reference encoder E, set encoder and the
  // index of its models' vectors.
  std::unique_ptr<KnowledgeSpaces> spaces_;
  // The primary space (spaces_->primary()): the learning loop's records and trained versions
  // are in its E's space, and its E embeds queries for clustering and task similarity.
  KnowledgeSpace* knowledge_ = nullptr;
  // Models, versions, owners and state transitions; the registry lock (registry.h).
  std::unique_ptr<Registry> registry_;
  // The recommend pipeline, its caches and its counters; ReportOutcome borrows its stage-1
  // proxies and its stage-2 scoring. Declared before the parts that hold its proxy cache or call
  // it from their threads (the Prober, the scrubber, the report jobs, the Tuner), so it outlives
  // them.
  std::unique_ptr<Recommender> recommender_;
  // The probing jobs and their threads (in memory, or leased from a shared store).
  std::unique_ptr<Prober> probes_;
  // Replicas only (a store with a change feed): follows other servers' changes.
  std::unique_ptr<ReplicaSync> replica_sync_;
  // Re-hashes the model files every DockOptions::scrub_interval and on request.
  std::unique_ptr<Scrubber> scrubber_;
  // Work done after a call has been answered (the stage-2 standings of reports), one job at a
  // time; null when DockOptions::report_standings is off.
  std::unique_ptr<BackgroundQueue> report_jobs_;
  // Dock::Tune: its own worker pool (started at the first tune), so tunes never take the
  // workers recommendations run on.
  std::unique_ptr<Tuner> tuner_;
  std::atomic<bool> shut_down_{false};

  // Counters for Stats().
  std::atomic<int64_t> registrations_admitted_{0}, registrations_rejected_{0};
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_DOCK_IMPL_H_
