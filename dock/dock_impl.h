// Internal: the Dock implementation. DockImpl orchestrates the engine's parts, each in its own
// file:
//   dock.cc           start-up, shutdown, probing jobs, replica glue, stats
//   registration.cc   uploads, admission, versions and owners, remote registration
//   registry.cc       name resolution, list, nearest models, update, delete, audit log,
//                     API keys
//   model_runs.cc     runs in the worker processes and on remote KServe servers
//   recommend.cc      the two-stage pipeline and stage 1; stage2.cc: candidates, runs, scores;
//                     learning.cc: outcome reports and ranker versions
// and the parts with their own state and threads:
//   CachingMetadataStore                the registry in memory (caching_store.h) over the
//                                       SQLite/PostgreSQL store: model reads come from it,
//                                       writes go through it; on replicas SyncModel/CatchUp
//                                       refresh it with the index; reads that must see other
//                                       replicas' commits at once (ownership, probe claims,
//                                       updates, deletions) bypass it
//   KnowledgeSpaces (knowledge_spaces.h) one KnowledgeSpace per input kind (grey, colour small,
//                                       colour large, ...): probe set, encoders, index of the
//                                       knowledge vectors of the models of that kind
//   ProbeQueue (probe_queue.h)          probing jobs, their threads and leases
//   ReplicaSync (replica_sync.h)        the sync thread of a replica
//   LearningLoop (learning.h)           outcome records, training, the serving version
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
#include "dock/replica_sync.h"
#include "dock/sandbox_runner.h"
#include "dock/scrubber.h"
#include "dock/tuner.h"
#include "encoder/black_box.h"
#include "encoder/knowledge.h"
#include "index/vector_index.h"
#include "sandbox/worker_pool.h"

namespace modeldock::dock {

// Helpers shared by the dock's files (dock.cc, registration.cc, registry.cc).
int64_t NowUnixMs();
// "m-" and 16 random hex digits.
std::string NewModelId();
// "name@version", or "name" for a model registered without a version.
std::string DisplayName(const ModelRecord& record);
// "1.0, 1.1, 2.0" (oldest first; an empty version shows as "(none)").
std::string VersionList(const std::vector<ModelRecord>& versions);
// INVALID_ARGUMENT unless name, shape, labels, description and tags follow the registration's
// rules (registration.cc; UpdateModel checks an updated spec by the same rules).
absl::Status ValidateSpec(const ModelSpec& spec);

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

// The state Recommend's stages pass between them (defined in recommend_internal.h).
struct PreparedQuery;
struct Stage1Result;
struct ViewScoring;
struct ScoredModel;
struct Stage2Result;

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
  // Start-up (dock.cc): brings every stored model into the current knowledge space and
  // requeues interrupted probes; removes blobs no row references.
  absl::Status ReconcileModels();
  // The prober's options; `replicas`: probing jobs are claimed from the shared store.
  ProberOptions ProbingOptions(bool replicas);
  void CollectGarbageBlobs();
  // Zero for a store of one process; DockOptions::shared_blob_grace with PostgreSQL.
  absl::Duration BlobGrace() const;
  // Replicas (ReplicaSync's handlers): bring the index (and the serving version's), the proxy
  // cache and run costs in line with the store's current state of one model, or of all.
  absl::Status SyncModel(const ModelChangeEvent& event);
  absl::Status CatchUp();
  // State transitions and their waiters (states_).
  void SetState(ModelRecord& record, ModelState state, const std::string& reason) {
    states_->Set(record, state, reason);
  }
  void NotifyStateChanged() { states_->Notify(); }
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

  // Registration (registration.cc).
  // A new (name, version) from `owner_key_id`: ALREADY_EXISTS / PERMISSION_DENIED otherwise.
  absl::Status CheckNewVersion(const ModelSpec& spec, const std::string& owner_key_id);

  // Registry (registry.cc).
  // GetModel's name resolution from the registry in memory, or (fresh) from the database, for
  // callers that write what they resolve and must see other replicas' commits at once.
  absl::StatusOr<ModelRecord> ResolveModel(std::string_view id_or_name, bool fresh);
  // Deletes one stored version: row, index entries, blob (when no other row uses it), caches.
  absl::StatusOr<std::string> DeleteRecord(const ModelRecord& record, const std::string& actor);
  // Removes the blob `sha256` when no row uses it (a shared blob directory keeps files modified
  // within BlobGrace()); a failure is logged with `why`, as the start-up clean-up repairs it.
  void RemoveUnreferencedBlob(const std::string& sha256, const std::string& why);

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

  // Recommend helpers (recommend.cc; OutputsOn in stage2.cc).
  absl::StatusOr<std::shared_ptr<const encoder::ModelOutputs>> OutputsOn(
      const ModelRecord& record, const Dataset& data, const std::string& dataset_hash,
      const sandbox::CancelCheck& cancelled, bool* from_cache);
  absl::StatusOr<Tensor> EmbedWithReference(const Tensor& samples);
  // A model's compressed features on (a prefix of) its space's probe set.
  absl::StatusOr<std::shared_ptr<const Tensor>> ProbeFeatures(const ModelRecord& record);
  // A classifier's class probabilities (softmax of its stored outputs) on the same probe rows.
  absl::StatusOr<std::shared_ptr<const Tensor>> ProbeProbabilities(const ModelRecord& record);
  // A tensor of the model's probing (`read` from the store for its space), kept in proxy_cache_
  // under the model's proxy key + `key_suffix`; `what` names it in the error of a model in no
  // space.
  absl::StatusOr<std::shared_ptr<const Tensor>> CachedProbeTensor(
      const ModelRecord& record, const char* what, const char* key_suffix,
      const std::function<absl::StatusOr<Tensor>(const KnowledgeSpace&)>& read);
  // The samples through the E of each space that holds one of `models` (`primary_embeddings`
  // serve the primary space), into `space_embeddings` (spaces already there are kept).
  absl::Status EmbedInSpaces(const Tensor& samples, const Tensor& primary_embeddings,
                             const std::vector<const ModelRecord*>& models,
                             std::map<KnowledgeSpace*, Tensor>* space_embeddings);
  // Stage-1 proxy score of every model of `models` with probe features: the proxy metric values
  // of all spaces rank-fused together, divided by their number (in (0, 1]). `warnings` gets one
  // line per model whose probe features could not be read (other than none stored) or one of
  // whose proxy metrics failed.
  absl::StatusOr<std::unordered_map<std::string, double>> ProxyScores(
      const std::map<KnowledgeSpace*, Tensor>& space_embeddings,
      const std::vector<int32_t>& labels, int num_classes,
      const std::vector<const ModelRecord*>& models, std::vector<std::string>* warnings);
  // Stage-1 proxy metric values (ProxyMetrics() order; NaN = not measured) of every model of
  // `space` that has probe features, from the query's embeddings in that space. Raw values: the
  // caller fuses the models of every space together.
  absl::StatusOr<std::unordered_map<std::string, std::vector<double>>> ProxyValues(
      const KnowledgeSpace& space, const Tensor& query_embeddings,
      const std::vector<int32_t>& labels, int num_classes,
      const std::vector<const ModelRecord*>& models, std::vector<std::string>* warnings);

  // Recommend's stages (recommend.cc; ChooseCandidates and RunStage2 in stage2.cc), in the
  // order it runs them. Each fills in its part of `result` (timings, mode, warnings, counts).
  // The query's embeddings in E's space (images), its labels, and the compatible models.
  absl::StatusOr<PreparedQuery> PrepareQuery(const RecommendQuery& query, RecommendResult* result);
  // Stage 1 (no model runs): knowledge-vector similarity, probe-proxy scores, the serving
  // version's outcome priors, and the stage-1 order of every compatible model.
  absl::StatusOr<Stage1Result> RunStage1(const PreparedQuery& prepared,
                                         const LearningLoop::Serving& serving,
                                         RecommendResult* result);
  // Stage 1 (a): the query's vector (through the serving version's projection) against the
  // index of the compatible models' knowledge vectors.
  absl::Status RankByKnowledgeVector(const PreparedQuery& prepared,
                                     const LearningLoop::Serving& serving, Stage1Result* stage1,
                                     RecommendResult* result);
  // Stage 1 (b): probe-proxy scores, with the serving version's priors, in proxy order.
  absl::Status RankByProbeProxies(const PreparedQuery& prepared,
                                  const LearningLoop::Serving& serving, Stage1Result* stage1,
                                  RecommendResult* result);
  // The mode and the stage-2 candidates (in stage-1 order): none without a metric, all when
  // forced or without stage-1 standings, a fixed number, or those fitting the latency budget.
  std::vector<std::string> ChooseCandidates(const RecommendQuery& query,
                                            const PreparedQuery& prepared,
                                            const Stage1Result& stage1,
                                            const std::string& dataset_hash,
                                            RecommendResult* result);
  std::vector<std::string> CandidatesWithinBudget(const PreparedQuery& prepared,
                                                  const std::vector<std::string>& stage1_order,
                                                  double rows, const std::string& dataset_hash,
                                                  RecommendResult* result);
  // Estimated cost of scoring a model on `rows` query samples: nearly free when its outputs on
  // this dataset are cached; else loading it when it is not resident, plus running it (measured
  // per sample on earlier recommendations when there were any, else scaled from its probing
  // time, which ran it on the probe set), plus the metrics.
  double EstimateScoringMillis(const ModelRecord& r, double rows, double probe_rows,
                               const std::string& dataset_hash);
  // Stage 2: runs and scores the candidates, records weak outcomes, adds the serving version's
  // priors; the scored models best first.
  absl::StatusOr<Stage2Result> RunStage2(const RecommendQuery& query,
                                         const PreparedQuery& prepared,
                                         const Stage1Result& stage1,
                                         const std::vector<std::string>& candidates,
                                         const std::string& dataset_hash,
                                         const LearningLoop::Serving& serving,
                                         RecommendResult* result);
  // Each candidate's outputs on the query (run, or cached) scored view by view, in candidate
  // order; the models none of whose views could be scored are left out with a warning.
  absl::StatusOr<std::vector<ScoredModel>> ScoreCandidates(
      const RecommendQuery& query, const PreparedQuery& prepared,
      const std::vector<std::string>& candidates, const std::string& dataset_hash,
      const ViewScoring& scoring, RecommendResult* result);
  // With DockOptions::learn_from_recommendations, the scored models' stage-2 standings on a
  // labelled image query are stored as weak outcome records.
  void RecordWeakOutcomes(const RecommendQuery& query, const PreparedQuery& prepared,
                          const Stage1Result& stage1, const std::vector<ScoredModel>& scored,
                          RecommendResult* result);
  // DockOptions::report_standings, run on report_jobs_: the reported models' stage-2 standings
  // on a report's samples (fusion, each of them scored) stored as weak records of its query.
  void RecordReportStandings(Dataset dataset, TaskKind task, const OutcomeQueryRow& query,
                             const std::vector<std::string>& model_ids,
                             const std::function<bool()>& stopping);

  DockOptions options_;
  // The model registry in memory over the SQLite or PostgreSQL store (caching_store.h): model
  // reads are served from it; the few that must see another replica's commit at once go to
  // store_->inner() or store_->GetFresh.
  std::unique_ptr<CachingMetadataStore> store_;
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
  // Model state transitions and WaitForChange's waiters.
  std::unique_ptr<ModelStates> states_;
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

  // Orders name checks, inserts and deletes, and each store commit with the index change
  // that reflects it (KnowledgeSpace's changes are made under it).
  std::mutex registry_mutex_;

  LruCache<const encoder::ModelOutputs> output_cache_;
  // model id (+ suffix) -> compressed probe features, class probabilities on the probes
  LruCache<const Tensor> proxy_cache_;
  RunCosts run_costs_;
  RecentFailures run_failures_{absl::Minutes(10)};

  // Counters for Stats() (microseconds for durations).
  std::atomic<int64_t> registrations_admitted_{0}, registrations_rejected_{0};
  std::atomic<int64_t> recommends_{0}, stage1_micros_{0}, stage2_micros_{0};
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_DOCK_IMPL_H_
