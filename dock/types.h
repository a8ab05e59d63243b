// The engine's value types (ground floor): models and their states, options, queries and
// results, keys, outcome records, stats. Plain structs and enums with no behaviour beyond small
// inline helpers; every part of dock/ and the transports use them, and none of them needs the
// Dock facade (dock/dock.h) for its types.
#ifndef MODELDOCK_DOCK_TYPES_H_
#define MODELDOCK_DOCK_TYPES_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"

namespace modeldock::dock {

enum class ModelState { kPending, kProbing, kReady, kFailed };
const char* ModelStateName(ModelState state);  // "PENDING", ...

// Stored as integers: append new kinds at the end.
enum class TaskKind {
  kImageClassification,
  kTabularClassification,
  kTextClassification,
  kAudioClassification,  // input [T]: T samples of 16 kHz mono audio
};
// "image_classification", "tabular_classification", "text_classification",
// "audio_classification"
const char* TaskKindName(TaskKind task);

// A classifier's forward(x) returns logits [N, K] over its declared labels; a feature extractor
// (a headless backbone: an autoencoder's encoder, a contrastive model, a classifier whose head
// was cut off) returns features [N, D] and declares no labels.
enum class ModelKind { kClassifier = 0, kFeatureExtractor = 1 };
const char* ModelKindName(ModelKind kind);  // "classifier", "feature_extractor"

// What a provider declares.
struct ModelSpec {
  std::string name;
  std::string version;
  std::string description;
  TaskKind task = TaskKind::kImageClassification;
  std::vector<int64_t> input_shape;  // per sample, e.g. {1, 28, 28}
  std::vector<std::string> class_labels;  // empty for a feature extractor
  std::string license;
  std::vector<std::string> tags;
  ModelKind kind = ModelKind::kClassifier;
  // A remote model stays on its inference server and is called over the KServe v2 protocol
  // (RegisterRemote): the endpoint "host:port", the model's name there and its version (empty:
  // the server's choice). Empty endpoint = a TorchScript file stored in the dock.
  std::string remote_endpoint;
  std::string remote_model;
  std::string remote_version;
};
inline bool IsRemote(const ModelSpec& spec) { return !spec.remote_endpoint.empty(); }

// API keys (servers started with --auth). Consumers list, show, watch and recommend; providers
// also register models and delete their own; admins do everything, including managing keys.
enum class ApiKeyRole { kConsumer = 1, kProvider = 2, kAdmin = 3 };
const char* ApiKeyRoleName(ApiKeyRole role);  // "consumer", "provider", "admin"

struct ApiKeyInfo {
  std::string id;
  std::string name;
  ApiKeyRole role = ApiKeyRole::kConsumer;
  int64_t created_unix_ms = 0;
  bool revoked = false;
};

struct NewApiKey {
  ApiKeyInfo info;
  std::string secret;  // "mdk_<id>_<64 hex>"; only a salted hash is stored
};

// A registered model.
// One layer a model exports through embed_layers(x): its name and feature width.
struct ModelLayer {
  std::string name;
  int64_t dim = 0;
};

// The start of the state reason of a model FAILED because its stored file is missing, truncated
// or changed (issue 28): "DATA_LOSS: stored file does not match its sha256 (...)". Such a model
// is never run; a scrub that finds the file good again (restored from a mirror, or re-uploaded)
// queues it for probing again.
inline constexpr char kDataLossReason[] = "DATA_LOSS: ";

struct ModelRecord {
  std::string id;
  ModelSpec spec;
  ModelState state = ModelState::kPending;
  std::string state_reason;
  std::string sha256;
  int64_t size_bytes = 0;
  bool has_embed = false;
  int64_t feature_dim = 0;
  std::vector<ModelLayer> layers;  // embed_layers(x), in the model's order; empty without
  int64_t created_unix_ms = 0;
  int64_t probe_millis = 0;
  // Bumped on every state change (for watchers).
  int64_t revision = 0;
  std::string owner_key_id;  // the API key that registered it ("" without --auth)
};

// Stage 1 by probe proxy (recommend.cc): every query sample is matched to its k nearest probe
// samples in the reference encoder's space, and each model's stored (compressed) features on those
// probe samples stand in for its features on the query; the proxy metrics are computed on them and
// rank-fused. No model runs. Defaults chosen on one benchmark zoo and checked on another
// (bench/select, docs/BENCHMARKS.md).
struct ProxyOptions {
  int neighbours = 5;   // k nearest probe samples per query sample
  int stored_dim = 32;  // PCA dimensions kept per model (probe features)
};

// Uploaded models run only in modeldock-worker processes (sandbox/): these are their limits.
struct SandboxOptions {
  // Path of modeldock-worker; empty = next to the running executable, else the build's.
  std::string worker_binary;
  int workers = 0;        // worker processes; 0 = one per core
  int torch_threads = 1;  // LibTorch threads in each worker
  // Memory each worker may use (resident, or cgroup memory.max; sandbox/memory_limit.h).
  int64_t memory_limit_bytes = 4ll << 30;
  // Wall time of one job; its CPU time is capped at wall x torch_threads.
  absl::Duration admission_time_limit = absl::Seconds(60);
  absl::Duration probe_time_limit = absl::Seconds(300);
  absl::Duration run_time_limit = absl::Seconds(60);
  int max_waiting_jobs = 256;  // past this, RESOURCE_EXHAUSTED with a retry hint
  // Bounds on a model's outputs, checked at admission and on every run.
  int64_t max_classes = 100000;
  int64_t max_feature_dim = 65536;
  int64_t max_output_bytes_per_sample = 1ll << 20;
  // Layers a model may export through embed_layers(x) (each is scored in stage 2): 1..64.
  int max_layers = 8;
  bool isolate_network = true;  // own user + network namespace where the kernel allows
  bool seccomp = true;          // syscall filter (libseccomp)
};

struct DockOptions {
  std::string data_dir = "modeldock-data";
  // Where the metadata lives: empty = SQLite in data_dir/modeldock.db; "postgresql://..." = a
  // PostgreSQL database (OpenMetadataStore). The index stays in data_dir either way.
  //
  // Several servers (replicas) may share one PostgreSQL database and one blob_dir: each follows
  // the others' changes through the store's change feed (PostgreSQL LISTEN/NOTIFY) and compares
  // its index with the stored vectors every sync_interval (docs/ARCHITECTURE.md, "Replicas").
  std::string metadata_url;
  // Model files (blob_dir/blobs/ab/<sha256>, uploads in progress in blob_dir/tmp); empty =
  // data_dir. May be shared by replicas (e.g. an NFS mount): content-addressed, renamed into
  // place. With a PostgreSQL store, start-up clean-up and deletions leave files modified within
  // shared_blob_grace alone (another replica's upload or adoption in progress).
  std::string blob_dir;
  absl::Duration shared_blob_grace = absl::Minutes(10);
  // Directories that may hold good copies of blobs (another replica's blob directory, a
  // backup; laid out as DIR/blobs/ab/<sha256> or flat): a model file that fails verification
  // is restored from the first good copy instead of failing its model.
  std::vector<std::string> blob_mirrors;
  // Every blob is re-hashed (and restored or its models failed) this often; zero = only on
  // request (Dock::Scrub). The schedule survives restarts (meta 'last_scrub_unix_ms').
  absl::Duration scrub_interval = absl::Hours(24);
  // Reading speed of a scrub in MB/s (10^6 bytes); 0 = unlimited.
  double scrub_mb_per_second = 50;
  // How often a replica compares its index with the stored vectors (a missed notification is
  // repaired then); also done at once after the change feed reconnected. PostgreSQL only.
  absl::Duration sync_interval = absl::Seconds(10);
  // PostgreSQL: probing jobs are claimed from the models table (MetadataStore::ClaimProbeJob) by
  // any replica's probe workers, under a lease renewed every probe_lease / 3 while the probe
  // runs; a replica that dies mid-probe lets its lease expire and another replica probes the
  // model. Idle probe workers look for jobs every second.
  absl::Duration probe_lease = absl::Seconds(30);
  // Directory written by scripts/make_assets.py (probe set, reference encoder); empty = the
  // compiled-in default (the build's assets directory).
  std::string asset_dir;
  // Where the knowledge spaces keep E's embeddings of their probe sets between processes
  // (dock/probe_embedding_cache.h); empty = data_dir/cache. Docks on the same assets may share
  // one (the tests do: MODELDOCK_PROBE_CACHE_DIR).
  std::string probe_cache_dir;
  int64_t max_model_bytes = 256ll << 20;
  SandboxOptions sandbox;
  // The knowledge spaces (one per input kind) are listed in asset_dir/spaces.json
  // (knowledge_spaces.h). These replace a space's files: "PATH" the first (grey) space's,
  // "NAME=PATH[,NAME=PATH]" the named spaces'. Empty = the asset dir's.
  // Probe set: NPY [P, C, H, W] (uint8 or float32).
  std::string probe_set_path;
  // Reference encoder E (TorchScript, [N,C,H,W] -> [N,D]).
  std::string reference_encoder_path;
  // E's input shape of the first space, when its encoder is replaced (or without spaces.json).
  std::vector<int64_t> reference_input_shape = {1, 28, 28};
  // TorchScript alignment of the first space; empty = untrained default.
  std::string knowledge_encoder_path;
  // Probing budget of one model: it runs on its space's probe set chunk by chunk, in the set's
  // fixed order, and stops after the chunk that would pass this wall time (never before
  // kMinProbeRows samples), so a large model probes a prefix of the same order as every other
  // model of its space. Zero = the whole probe set.
  absl::Duration probe_budget = absl::Seconds(60);
  // FAISS factory string for stage 1 ("Flat", "HNSW32", "IVF256,Flat").
  std::string index_factory = "Flat";
  // Probing jobs run at once (each in a worker, under sandbox.probe_time_limit), so that one slow
  // model does not hold up the others.
  int probe_workers = 2;
  // LibTorch threads of the server process (the operator's reference encoder; no uploaded code).
  int torch_threads = 2;
  // Stage-1 candidates scored in stage 2 when a request does not say
  // (0 = max(10, a quarter of the compatible models)).
  int default_candidates = 0;
  // Model outputs on query datasets kept in memory, keyed by (model, dataset hash).
  int64_t output_cache_bytes = 512ll << 20;
  // Loaded models kept hot in the workers (shared out among them), by an estimate of their memory
  // (twice the file size).
  int64_t model_cache_bytes = 2ll << 30;
  // Compressed probe features of models kept in memory for stage-1 proxies.
  int64_t proxy_cache_bytes = 1ll << 30;
  ProxyOptions proxy;
  // Latency budget of a recommendation when a request does not set one: stage 2 scores every
  // compatible model when its estimated cost fits, otherwise the stage-1 candidates that fit.
  double latency_budget_millis = 5000;
  // Whether the budget covers the whole call (stage 2 gets what encoding the query and stage 1
  // left of it) or stage 2 alone. Off only where a test needs stage 2's plan not to depend on
  // how long the stages before it took.
  bool budget_covers_whole_call = true;
  // Above this many compatible models, FAISS (knowledge vectors) first cuts the dock down to this
  // many before the O(models) proxy scoring of stage 1.
  int proxy_prefilter = 2000;
  // Stage-2 candidates run at once (each in a worker); 0 = the number of workers.
  int stage2_workers = 0;
  // Every recommendation with given labels leaves weak outcome records (OutcomeSource::kStage2):
  // the query's class prototypes, stage-1 scores and each scored model's stage-2 standing.
  // Off by default: the dock then keeps nothing of a recommendation.
  bool learn_from_recommendations = false;
  // A report of two or more image models' accuracies also leaves those models' stage-2
  // standings on the report's samples as weak records (source "stage2"), computed in the
  // background after the report is stored: the evidence on which training fits the prior's
  // weight in stage 2 (without it that weight is borrowed from stage 1, or 0). A report already
  // keeps the query's class prototypes, so nothing more of the query is kept.
  bool report_standings = true;
  // Remote models (KServe v2 servers): TLS towards all of them when set; the CA file pins their
  // roots (else the system's), the certificate and key (both or neither) prove this dock.
  bool remote_tls = false;
  std::string remote_tls_ca_path, remote_tls_cert_path, remote_tls_key_path;
  // Per-endpoint credentials (remote/credentials.h: TLS files and a bearer token per
  // "host:port"); listed endpoints use theirs instead of the remote_tls* setting above.
  std::string remote_credentials_path;
};

// Validated once; returns INVALID_ARGUMENT naming the bad option.
absl::Status ValidateOptions(const DockOptions& options);

struct RegisterResult {
  ModelRecord model;
  bool deduplicated = false;  // the same bytes were already stored
};

struct ListFilter {
  std::string name_contains;
  bool has_task = false;
  TaskKind task = TaskKind::kImageClassification;
  std::vector<int64_t> input_shape;  // empty = any
  std::string tag;
  bool has_state = false;
  ModelState state = ModelState::kReady;
};

struct ModelPage {
  std::vector<ModelRecord> models;
  std::string next_page_token;
  int total_size = 0;
};

// One of a model's nearest models in its knowledge space (Dock::NearestModels).
struct NearestModel {
  ModelRecord model;
  double similarity = 0;  // inner product of the two knowledge vectors (stage 1's similarity)
};

// kFusion (the default): rank fusion of LogME and shrinkage H-score (features) and NCE (class
// outputs), chosen on benchmark zoos (README, docs/BENCHMARKS.md). kNone: stage 1 only.
enum class Metric {
  kFusion, kTmi, kLogMe, kLeep, kNce, kHScore, kShrinkageHScore, kGbc, kSfda, kNone
};

// How a recommendation was computed.
enum class RecommendMode {
  kScoredAll,    // stage 2 scored every compatible model (brute force, or it fit the budget)
  kTwoStage,     // stage 2 scored the stage-1 candidates
  kStage1Only,   // stage 2 off (metric none)
};
const char* RecommendModeName(RecommendMode mode);  // "scored_all", "two_stage", "stage1_only"

struct RecommendQuery {
  Dataset dataset;  // samples [N, ...]; labels optional
  TaskKind task = TaskKind::kImageClassification;
  int top_k = 5;
  int num_candidates = 0;  // 0 = decided by the latency budget (or DockOptions::default_candidates)
  Metric metric = Metric::kFusion;
  bool brute_force = false;
  double latency_budget_millis = 0;  // 0 = DockOptions::latency_budget_millis
  // Every version of a model name in the results; by default one entry per name (its best).
  bool all_versions = false;
  // Polled between candidates: true stops the call with CANCELLED (client gone, deadline passed).
  std::function<bool()> is_cancelled;
};

// A layer's stage-2 score, for models that export embed_layers(x).
struct LayerScore {
  std::string name;
  int64_t dim = 0;
  double score = 0;  // on the scale of Recommendation::stage2_score
};

struct Recommendation {
  int rank = 0;
  ModelRecord model;
  double score = 0;
  double similarity = 0;      // knowledge-vector inner product
  double stage1_score = 0;    // proxy score (rank-fused proxy metrics; higher = better)
  bool has_stage1_score = false;
  int stage1_rank = 0;  // rank in stage 1 (proxy order); 0 in brute-force mode
  double stage2_score = 0;
  // The outcome prior of the serving trained version (0 and false with the untrained version).
  double prior = 0;
  bool has_prior = false;
  // False for models ranked after the stage-2 candidates by similarity alone (when top_k asks
  // for more models than stage 2 scored).
  bool scored = false;
  // Models that export embed_layers(x): the layer the score comes from (the best of
  // layer_scores, one per exported layer, in the model's order). Empty otherwise.
  std::string layer;
  std::vector<LayerScore> layer_scores;
  std::string reason;
};

struct RecommendTimings {
  double encode_query_millis = 0;
  double stage1_millis = 0;
  double stage2_millis = 0;
  double total_millis = 0;
};

struct RecommendResult {
  std::vector<Recommendation> results;
  RecommendTimings timings;
  int num_scored = 0;
  // Query samples stage 2 ran the models on: all of them, or a class-stratified subset when the
  // latency budget could not run every model on every sample (0 when stage 2 did not run).
  int num_samples_scored = 0;
  int num_compatible = 0;
  // Stage-2 candidates whose outputs on this dataset came from the output cache.
  int num_cached = 0;
  Metric metric = Metric::kFusion;
  RecommendMode mode = RecommendMode::kScoredAll;
  std::string mode_reason;  // e.g. "estimated 2.1 s for all 40 models, within the 5 s budget"
  double latency_budget_millis = 0;
  std::string label_source;
  std::vector<std::string> warnings;
  // The trained ranker version that ranked this answer (0 = untrained); one version per answer.
  int64_t alignment_version = 0;
  // Weak outcome records left by this answer (DockOptions::learn_from_recommendations).
  int recorded_outcomes = 0;
};

// ---- Learning from outcomes (issue 9).
// kStage2: weak labels the dock records itself when DockOptions::learn_from_recommendations is
// on: the stage-2 standing (rank percentile, 1 = best scored) of every model a labelled
// recommendation scored. Users cannot report it.
// kTune: the dock's own fine-tunes (Dock::Tune), recorded like a reported fine-tune.
enum class OutcomeSource { kFinetune, kImport, kStage2, kTune };
inline constexpr const char* kStage2Source = "stage2";
// "finetune", "import", "stage2", "tune"
const char* OutcomeSourceName(OutcomeSource source);

struct ReportedOutcome {
  std::string model;  // id or name
  double accuracy = 0;  // in [0, 1]
};

// "These models, fine-tuned on this dataset, reached these accuracies." The dock keeps the
// dataset's class prototypes in the reference encoder's space and the stage-1 scores of every
// compatible model, not the samples.
struct OutcomeReport {
  Dataset dataset;  // samples [N, ...]; labels optional (clustered like a recommendation)
  TaskKind task = TaskKind::kImageClassification;
  std::vector<ReportedOutcome> outcomes;
  OutcomeSource source = OutcomeSource::kFinetune;
  std::string reporter_key_id;
  // Empty, or one JSON object per outcome (parallel to `outcomes`): how it was measured, kept
  // as the record's detail (a tune's split and schedule).
  std::vector<std::string> details;
};

struct OutcomeReportResult {
  std::string query_id;
  int num_stored = 0;
  int num_classes = 0;
  int num_stage1_scores = 0;  // compatible models whose stage-1 score was kept with the query
  int64_t total_records = 0;
  int64_t total_queries = 0;
};

// ---- Rank, then tune (issue 27): Dock::Tune fine-tunes the top candidates of a recommendation
// on a split of the query's labelled samples (dock/tuner.h).
struct TuneQuery {
  Dataset dataset;  // labelled samples; every class needs at least 2 (one goes to validation)
  TaskKind task = TaskKind::kImageClassification;
  int top_k = 3;  // candidates tuned, best ranked first (1..10)
  // Wall-clock training budget of the whole tune, shared equally by the candidates.
  absl::Duration budget = absl::Seconds(120);
  uint64_t seed = 0;  // the split, the heads' initialisation and the shuffling
  double validation_fraction = 0.2;  // per class, at least one sample
  int max_epochs = 10;
  int patience = 3;
  double learning_rate = 1e-3;  // Adam
  int batch_size = 32;
  std::string reporter_key_id;  // the API key asking (its records)
  std::function<bool()> is_cancelled;  // polled while waiting and running
};

struct TuneEpochRow {
  int epoch = 0;  // 0: the untrained new head
  double train_loss = 0;
  double val_accuracy = 0;
  double millis = 0;
};

struct TuneCandidate {
  ModelRecord model;
  int predicted_rank = 0;  // the recommendation's rank
  double score = 0;        // the recommendation's score
  bool ok = false;
  std::string failure;  // why it failed ("DEADLINE_EXCEEDED: ..."); not retried
  std::vector<TuneEpochRow> epochs;
  int best_epoch = 0;
  double best_accuracy = 0;  // validation accuracy of the tuned model kept
  std::string stop_reason;   // "max_epochs", "patience", "budget"
  double millis = 0;
};

// Per epoch, on the calling thread: which candidate (index in ranking order) and the row.
struct TuneProgressEvent {
  int candidate = 0;
  std::string model_name;
  TuneEpochRow row;
};

struct TuneResult {
  std::vector<TuneCandidate> candidates;  // in ranking order
  int winner = -1;  // index of the highest best_accuracy (the better ranked of ties); -1: none
  std::string tuned_model;  // the winner's TorchScript archive: forward = its new head
  std::string winner_license;
  uint64_t seed = 0;
  int64_t train_samples = 0, val_samples = 0;
  std::string schedule;  // e.g. "adam lr 0.001, batch 32, <= 10 epochs, patience 3, 60 s each"
  std::string query_id;  // the outcome records' query ("" when no candidate succeeded)
  int recorded_outcomes = 0;
};

struct OutcomeRecord {
  int64_t id = 0;
  std::string query_id;
  std::string model_id;
  std::string model_name;
  double accuracy = 0;
  std::string source;
  int64_t created_unix_ms = 0;
  std::string detail;  // JSON object, '' if none (OutcomeReport::details)
};

struct RecordList {
  std::vector<OutcomeRecord> records;
  int64_t total_records = 0;
  int64_t total_queries = 0;
};

struct AlignmentVersion {
  int64_t version = 0;
  int64_t created_unix_ms = 0;
  bool serving = false;
  bool adopted = false;  // beat the serving version on held-out queries when trained
  int num_queries = 0;   // usable queries it was trained on
  int64_t num_records = 0;
  int folds = 0;
  double validation_untrained = 0, validation_serving = 0, validation_trained = 0;  // tau_w
  double weight = 0, shrinkage = 0, sharpness = 0;
  double stage2_weight = 0;  // the prior's weight against stage-2 scores
  // What priors shrink toward: "facts" or "stage1-calibration" (encoder::PriorTargetName).
  std::string prior_target = "facts";
  int weak_queries = 0;    // recommendations whose stage-2 standings informed the priors
  double weak_weight = 0;  // their learned weight against a reported outcome
  // The knowledge vectors' trained projection: held-out tau_w of the similarity, untrained vs
  // trained; whether the version carries it (else its similarity is the untrained one).
  bool vectors_trained = false;
  double vectors_validation_untrained = 0, vectors_validation_trained = 0;
  std::string vectors_reason;
  double training_seconds = 0;
  std::string reason;
};

struct TrainingStatus {
  enum class State { kIdle, kRunning, kDone, kFailed };
  State state = State::kIdle;
  std::string message;
  AlignmentVersion result;  // kDone
  int64_t started_unix_ms = 0;
  int64_t finished_unix_ms = 0;
};
const char* TrainingStateName(TrainingStatus::State state);  // "idle", "running", ...

struct AlignmentList {
  int64_t serving_version = 0;
  std::vector<AlignmentVersion> versions;
  TrainingStatus last_training;
};

// Metadata edits without re-upload; unset fields stay as they are.
struct ModelUpdate {
  bool has_description = false;
  std::string description;
  bool has_license = false;
  std::string license;
  bool has_tags = false;
  std::vector<std::string> tags;  // replaces the model's tags
};

// Who changed what, when (readable by admins).
struct AuditEntry {
  int64_t id = 0;
  int64_t unix_ms = 0;
  std::string actor;   // API key id ("" without --auth)
  std::string action;  // "register", "update", "delete", "create_key", "revoke_key", "use_alignment", "train"
  std::string target;  // model id, key id or version
  std::string detail;  // e.g. the model's name, the fields changed
};

// A scrub: every stored model file re-hashed against its registered digest (Dock::Scrub).
struct ScrubResult {
  enum class State { kIdle, kRunning, kDone, kFailed };
  State state = State::kIdle;
  std::string message;  // a summary, or why it failed
  int64_t started_unix_ms = 0;
  int64_t finished_unix_ms = 0;
  int64_t blobs_checked = 0;   // distinct model files hashed
  int64_t blobs_ok = 0;
  int64_t blobs_bad = 0;       // missing, truncated or changed, and no good copy in a mirror
  int64_t blobs_restored = 0;  // were bad, replaced by a good copy from a mirror
  int64_t bytes_hashed = 0;
  int64_t models_failed = 0;   // models marked FAILED (DATA_LOSS) by this scrub
  int64_t models_requeued = 0;  // FAILED by data loss before, file good again: probed again
  int64_t features_checked = 0;  // stored probe features read back against their checksum
  int64_t features_bad = 0;      // of which did not match: the model is probed again
  std::vector<std::string> bad_model_ids;  // models whose file is bad now
  std::vector<std::string> bad_blobs;      // their files' digests
};
const char* ScrubStateName(ScrubResult::State state);  // "idle", "running", "done", "failed"

// Operational figures for monitoring (Prometheus /metrics): gauges of the current state and
// counters since start.
struct DockStats {
  int models_pending = 0, models_probing = 0, models_ready = 0, models_failed = 0;
  int64_t index_vectors = 0;
  int probe_queue = 0;
  int64_t registrations_admitted = 0, registrations_rejected = 0;
  int64_t probes_done = 0, probes_failed = 0;
  double probe_seconds = 0;  // summed over successful probes
  int64_t recommends = 0;
  double stage1_seconds = 0, stage2_seconds = 0;  // summed over recommendations
  int64_t output_cache_hits = 0, output_cache_misses = 0;
  int64_t proxy_cache_hits = 0, proxy_cache_misses = 0;
  int workers = 0, workers_waiting_jobs = 0;
  int64_t worker_jobs = 0, worker_restarts = 0;
  int64_t outcome_records = 0;
  int64_t serving_alignment = 0;  // 0 = untrained
  // Fingerprint of (reference encoder, probe set, set encoder) that the vectors belong to.
  std::string knowledge_space;
  // Model files verified before runs (issue 28): checks, answered from the verified-state cache,
  // bytes hashed, found bad, restored from a mirror; and the last scrub.
  int64_t blob_verifications = 0, blob_verifications_cached = 0, blob_bytes_hashed = 0;
  int64_t blobs_found_bad = 0, blobs_restored = 0;
  int64_t scrubs_done = 0;
  ScrubResult last_scrub;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_TYPES_H_
