// Registry, storage and probing: everything of the dock except the recommend pipeline (the
// knowledge space, probe queue and replica sync are their own classes).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include <sys/random.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "dock/dock_impl.h"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

#ifndef MODELDOCK_DEFAULT_WORKER_BINARY
#define MODELDOCK_DEFAULT_WORKER_BINARY "modeldock-worker"
#endif
#ifndef MODELDOCK_DEFAULT_ASSET_DIR
#define MODELDOCK_DEFAULT_ASSET_DIR "assets"
#endif

namespace modeldock::dock {
namespace fs = std::filesystem;

const char* ModelKindName(ModelKind kind) {
  return kind == ModelKind::kFeatureExtractor ? "feature_extractor" : "classifier";
}

const char* ModelStateName(ModelState state) {
  switch (state) {
    case ModelState::kPending: return "PENDING";
    case ModelState::kProbing: return "PROBING";
    case ModelState::kReady: return "READY";
    case ModelState::kFailed: return "FAILED";
  }
  return "UNKNOWN";
}

const char* RecommendModeName(RecommendMode mode) {
  switch (mode) {
    case RecommendMode::kScoredAll: return "scored_all";
    case RecommendMode::kTwoStage: return "two_stage";
    case RecommendMode::kStage1Only: return "stage1_only";
  }
  return "unknown";
}

const char* TaskKindName(TaskKind task) {
  switch (task) {
    case TaskKind::kImageClassification: return "image_classification";
    case TaskKind::kTabularClassification: return "tabular_classification";
  }
  return "unknown";
}

absl::Status ValidateOptions(const DockOptions& o) {
  if (o.data_dir.empty()) return absl::InvalidArgumentError("data_dir must not be empty");
  if (o.probe_lease < absl::Seconds(1)) {
    return absl::InvalidArgumentError("probe_lease must be at least 1 s");
  }
  if (o.sync_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("sync_interval must be > 0");
  }
  if (o.shared_blob_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("shared_blob_grace must be >= 0");
  }
  if (o.max_model_bytes <= 0) return absl::InvalidArgumentError("max_model_bytes must be > 0");
  const SandboxOptions& box = o.sandbox;
  if (box.admission_time_limit <= absl::ZeroDuration() ||
      box.probe_time_limit <= absl::ZeroDuration() || box.run_time_limit <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("worker time limits must be > 0");
  }
  if (box.workers < 0 || box.workers > 256) {
    return absl::InvalidArgumentError("workers must be in 0..256 (0 = one per core)");
  }
  if (box.torch_threads < 1 || box.torch_threads > 256) {
    return absl::InvalidArgumentError("worker torch_threads must be in 1..256");
  }
  if (box.memory_limit_bytes != 0 && box.memory_limit_bytes < (256ll << 20)) {
    return absl::InvalidArgumentError(
        "the worker memory limit must be 0 (none) or at least 256 MiB (LibTorch alone maps ~600 MiB)");
  }
  if (box.max_waiting_jobs < 1) return absl::InvalidArgumentError("max_waiting_jobs must be >= 1");
  if (box.max_classes < 1 || box.max_feature_dim < 1 || box.max_output_bytes_per_sample < 8) {
    return absl::InvalidArgumentError("output limits must be positive");
  }
  if (box.max_layers < 1 || box.max_layers > sandbox::kMaxLayers) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_layers must be in 1..", sandbox::kMaxLayers));
  }
  if (o.probe_workers < 1 || o.probe_workers > 64) {
    return absl::InvalidArgumentError("probe_workers must be in 1..64");
  }
  if (o.torch_threads < 1 || o.torch_threads > 256) {
    return absl::InvalidArgumentError("torch_threads must be in 1..256");
  }
  if (o.default_candidates < 0) return absl::InvalidArgumentError("default_candidates must be >= 0");
  if (o.model_cache_bytes < 0 || o.proxy_cache_bytes < 0 || o.output_cache_bytes < 0) {
    return absl::InvalidArgumentError("cache sizes must be >= 0");
  }
  if (o.proxy.neighbours < 1 || o.proxy.neighbours > 64) {
    return absl::InvalidArgumentError("proxy neighbours must be in 1..64");
  }
  if (o.proxy.stored_dim < 1 || o.proxy.stored_dim > 1024) {
    return absl::InvalidArgumentError("proxy stored_dim must be in 1..1024");
  }
  if (!(o.latency_budget_millis > 0)) {
    return absl::InvalidArgumentError("latency_budget_millis must be > 0");
  }
  if (o.proxy_prefilter < 1) return absl::InvalidArgumentError("proxy_prefilter must be >= 1");
  if (o.stage2_workers < 0 || o.stage2_workers > 256) {
    return absl::InvalidArgumentError("stage2_workers must be in 0..256 (0 = one per worker)");
  }
  if (o.reference_input_shape.size() != 3) {
    return absl::InvalidArgumentError("reference_input_shape must be [C, H, W]");
  }
  return absl::OkStatus();
}

namespace {

bool AllFinite(const Tensor& t) {
  return std::all_of(t.values.begin(), t.values.end(), [](float v) { return std::isfinite(v); });
}

}  // namespace

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NewModelId() {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ NowUnixMs());
  static const char kHex[] = "0123456789abcdef";
  std::string id = "m-";
  uint64_t v = rng();
  for (int i = 0; i < 16; ++i) id.push_back(kHex[(v >> (i * 4)) & 0xf]);
  return id;
}

// "name@version", or "name" for a model registered without a version.
std::string DisplayName(const ModelRecord& record) {
  return record.spec.version.empty() ? record.spec.name
                                     : absl::StrCat(record.spec.name, "@", record.spec.version);
}

// "1.0, 1.1, 2.0" (oldest first; an empty version shows as "(none)").
std::string VersionList(const std::vector<ModelRecord>& versions) {
  std::string out;
  for (const ModelRecord& r : versions) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", r.spec.version.empty() ? "(none)" : r.spec.version);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Dock>> Dock::Create(const DockOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  auto dock = std::make_unique<DockImpl>(options);
  if (absl::Status s = dock->Init(); !s.ok()) return s;
  return std::unique_ptr<Dock>(std::move(dock));
}

DockImpl::DockImpl(DockOptions options)
    : options_(std::move(options)),
      output_cache_(options_.output_cache_bytes),
      proxy_cache_(options_.proxy_cache_bytes) {}

DockImpl::~DockImpl() { Shutdown(); }

absl::Status DockImpl::Init() {
  std::error_code ec;
  fs::create_directories(fs::path(options_.data_dir) / "index", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create data directory ", options_.data_dir, ": ", ec.message()));
  }
  encoder::SetTorchThreads(options_.torch_threads);
  if (absl::Status s = StartWorkers(); !s.ok()) return s;
  auto store = OpenMetadataStore(options_.metadata_url.empty()
                                     ? (fs::path(options_.data_dir) / "modeldock.db").string()
                                     : options_.metadata_url);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  learning_ = std::make_unique<LearningLoop>(
      store_.get(), [this](int64_t version) { return UseAlignment(version); });
  // Several servers may use this database (and, through --blob-dir, this blob directory):
  // listen before the index is brought up to date, so that no change falls in between.
  auto feed = store_->OpenChangeFeed();
  if (!feed.ok()) return feed.status();
  const bool replicas = *feed != nullptr;  // null: this process is the store's only user (SQLite)
  shared_ = IsPostgresUrl(options_.metadata_url);
  ProbeQueueOptions queue;
  queue.workers = options_.probe_workers;
  queue.lease = options_.probe_lease;
  {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    queue.replica_id = absl::StrCat(host, "/", ::getpid(), "/", NewModelId().substr(2, 8));
  }
  if (replicas) {
    queue.shared_store = store_.get();
    spdlog::info("replica {}: probing jobs are shared through the store", queue.replica_id);
    replica_sync_ = std::make_unique<ReplicaSync>(
        *std::move(feed), options_.sync_interval,
        ReplicaSync::Handlers{[this](const std::string& id) { return SyncModel(id); },
                              [this] { return CatchUp(); }});
  }
  // Created before the models are reconciled (which requeues interrupted probes); started last.
  probes_ = std::make_unique<ProbeQueue>(std::move(queue),
                                         [this](const std::string& id) { Probe(id); });
  auto blobs = BlobStore::Create(options_.blob_dir.empty() ? options_.data_dir : options_.blob_dir);
  if (!blobs.ok()) return blobs.status();
  blobs_ = std::move(*blobs);
  blobs_->ClearTemp(BlobGrace());

  const std::string asset_dir =
      options_.asset_dir.empty() ? MODELDOCK_DEFAULT_ASSET_DIR : options_.asset_dir;
  KnowledgeSpaceOptions space;
  space.probe_set_path = options_.probe_set_path.empty()
                             ? (fs::path(asset_dir) / "probe_set_28.npy").string()
                             : options_.probe_set_path;
  space.reference_encoder_path = options_.reference_encoder_path.empty()
                                     ? (fs::path(asset_dir) / "reference_encoder.pt").string()
                                     : options_.reference_encoder_path;
  space.reference_input_shape = options_.reference_input_shape;
  space.knowledge_encoder_path = options_.knowledge_encoder_path;
  space.index_factory = options_.index_factory;
  space.index_path = (fs::path(options_.data_dir) / "index" / "knowledge.index").string();
  auto knowledge =
      KnowledgeSpace::Load(space, store_.get(), [this] { return learning_->Current(); });
  if (!knowledge.ok()) return knowledge.status();
  knowledge_ = std::move(*knowledge);
  if (absl::Status s = ReconcileModels(); !s.ok()) return s;
  if (absl::Status s = knowledge_->RebuildIfStale(); !s.ok()) return s;
  // After the vectors are current: a trained version re-encodes them into its own index.
  auto build = [this](const encoder::VectorProjection& p) { return BuildProjectedIndex(p); };
  if (absl::Status s = learning_->Load(knowledge_->id(), build); !s.ok()) return s;
  CollectGarbageBlobs();

  probes_->Start();
  if (replica_sync_ != nullptr) replica_sync_->Start();
  return absl::OkStatus();
}

// Brings every stored model into the current knowledge space and resumes interrupted probes.
absl::Status DockImpl::ReconcileModels() {
  auto records = store_->ListAll();
  if (!records.ok()) return records.status();
  auto vectors = store_->Vectors(knowledge_->id());
  if (!vectors.ok()) return vectors.status();
  std::set<std::string> has_vector;
  for (const auto& [id, v] : *vectors) has_vector.insert(id);

  int rebuilt = 0, requeued = 0;
  for (ModelRecord& record : *records) {
    if (record.state == ModelState::kPending || record.state == ModelState::kProbing) {
      probes_->Enqueue(record.id);
      ++requeued;
      continue;
    }
    if (record.state != ModelState::kReady || !IsImageModel(record)) continue;
    auto has_features = store_->HasProbeFeatures(record.id, knowledge_->probe_set_sha());
    if (!has_features.ok()) return has_features.status();
    if (!*has_features) {
      // Probed by an older dock (no stored features for stage-1 proxies): probe again.
      SetState(record, ModelState::kPending, "probe set changed; waiting to be probed again");
      probes_->Enqueue(record.id);
      ++requeued;
      continue;
    }
    if (has_vector.count(record.id)) continue;
    // READY but no vector in this space: the reference encoder or set encoder changed.
    auto logits = store_->GetProbeOutputs(record.id, knowledge_->probe_set_sha());
    if (logits.ok()) {
      auto vector = knowledge_->EncodeModel(record, *logits);
      if (vector.ok() && store_->PutVector(record.id, knowledge_->id(), *vector).ok()) {
        ++rebuilt;
        continue;
      }
    }
    SetState(record, ModelState::kPending, "probe set changed; waiting to be probed again");
    probes_->Enqueue(record.id);
    ++requeued;
  }
  spdlog::info("dock holds {} models ({} vectors rebuilt from stored probe outputs, {} queued "
               "for probing)", records->size(), rebuilt, requeued);
  return absl::OkStatus();
}

void DockImpl::CollectGarbageBlobs() {
  // Listed before the rows are read: a blob adopted after the listing is not looked at, and one
  // adopted before has its row committed by now or was touched within the grace period.
  const std::vector<std::string> stored = blobs_->List();
  auto records = store_->ListAll();
  if (!records.ok()) return;
  std::set<std::string> referenced;
  for (const auto& r : *records) referenced.insert(r.sha256);
  int kept = 0;
  for (const std::string& sha : stored) {
    if (referenced.count(sha)) continue;
    bool removed = false;
    blobs_->Remove(sha, BlobGrace(), &removed).IgnoreError();
    if (removed) {
      spdlog::info("removed unreferenced blob {} (left by an interrupted registration)", sha);
    } else {
      ++kept;
    }
  }
  if (kept > 0) {
    spdlog::info("kept {} unreferenced blobs modified within the last {} (another replica may be "
                 "registering them)", kept, absl::FormatDuration(BlobGrace()));
  }
}

absl::Duration DockImpl::BlobGrace() const {
  return shared_ ? options_.shared_blob_grace : absl::ZeroDuration();
}

absl::Status DockImpl::SyncModel(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(registry_mutex_);
    if (absl::Status s = knowledge_->Sync(id); !s.ok()) return s;
  }
  // Another probe (new features) or a deletion: nothing cached about the model stays valid.
  proxy_cache_.ErasePrefix(absl::StrCat(id, "|"));
  if (auto record = store_->Get(id); absl::IsNotFound(record.status())) run_costs_.Erase(id);
  NotifyStateChanged();
  return absl::OkStatus();
}

absl::Status DockImpl::CatchUp() {
  // Under the registry lock: this server's own probes and deletions (which change the index
  // under it too) cannot fall between the read and the comparison. Other servers' changes that
  // do are announced, and applied after this by the same thread.
  std::lock_guard<std::mutex> lock(registry_mutex_);
  auto changed = knowledge_->CatchUp();
  if (!changed.ok()) return changed.status();
  if (changed->empty()) return absl::OkStatus();
  for (const std::string& id : *changed) proxy_cache_.ErasePrefix(absl::StrCat(id, "|"));
  return knowledge_->Save();
}

void DockImpl::Shutdown() {
  if (shut_down_.exchange(true)) return;
  // First, so that a probe that fails because its worker is killed below is not marked FAILED
  // (PROBING is resumed at the next start).
  if (probes_) probes_->Stop();
  if (replica_sync_) replica_sync_->Stop();
  if (learning_) learning_->Shutdown();
  // Killing the workers ends running probes at once instead of waiting for them.
  if (workers_pool_) workers_pool_->Shutdown();
  if (probes_) probes_->Join();
}

void DockImpl::SetState(ModelRecord& record, ModelState state, const std::string& reason) {
  record.state = state;
  record.state_reason = reason;
  ++record.revision;
  absl::Status s = store_->UpdateState(record);
  if (!s.ok() && !absl::IsNotFound(s)) {
    spdlog::error("cannot update state of {}: {}", record.id, s.ToString());
  }
  NotifyStateChanged();
}

void DockImpl::NotifyStateChanged() {
  std::lock_guard<std::mutex> lock(state_mutex_);
  state_changed_.notify_all();
}

// Runs the model black-box on the probe set and turns its behaviour into a knowledge vector.
void DockImpl::Probe(const std::string& id) {
  auto found = store_->Get(id);
  if (!found.ok()) return;  // deleted meanwhile
  ModelRecord record = *found;
  if (!IsImageModel(record)) {
    // No default probe set exists for tabular inputs: such models are served by stage 2
    // (brute force over compatible models) only.
    SetState(record, ModelState::kReady,
             "ready for stage-2 scoring; no probe set for tabular inputs, so no knowledge vector");
    return;
  }
  const int64_t probe_rows = knowledge_->probe_set().Rows();
  SetState(record, ModelState::kProbing,
           absl::StrCat("running on the probe set (", probe_rows, " samples)"));
  absl::Time start = absl::Now();
  auto fail = [&](const absl::Status& status) {
    ++probes_failed_;
    spdlog::warn("probing {} ('{}') failed: {}", record.id, record.spec.name, status.ToString());
    SetState(record, ModelState::kFailed, absl::StrCat("probing failed: ", status.message()));
  };

  auto outputs = RunModel(record, knowledge_->probe_set(), /*want_features=*/true,
                         /*want_layers=*/false, options_.sandbox.probe_time_limit,
                         [this] { return probes_->stopping(); });
  if (!outputs.ok()) {
    if (absl::IsNotFound(outputs.status())) return;  // deleted while probing
    if (probes_->stopping()) return;  // shutting down: PROBING is resumed at the next start
    return fail(outputs.status());
  }
  const Tensor& logits = outputs->logits;
  if (logits.shape.size() != 2 || logits.shape[1] != OutputWidth(record)) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "probe outputs have shape ", ShapeToString(logits.shape), "; expected [",
        probe_rows, ", ", OutputWidth(record), "]")));
  }
  if (!AllFinite(logits)) {
    return fail(absl::FailedPreconditionError("the model returned NaN/Inf on the probe set"));
  }
  auto vector = knowledge_->EncodeModel(record, logits);
  if (!vector.ok()) return fail(vector.status());
  // Stage-1 proxies read the model's features on the probe set (its logits without embed),
  // compressed per model so that a large dock stays small.
  const bool has_features = record.has_embed && !outputs->features.shape.empty();
  const Tensor& raw_features = has_features ? outputs->features : logits;
  if (has_features && !AllFinite(raw_features)) {  // the logits were checked above
    return fail(absl::FailedPreconditionError("embed(x) returned NaN/Inf on the probe set"));
  }
  auto compressed = scoring::CompressFeatures(raw_features, options_.proxy.stored_dim);
  if (!compressed.ok()) return fail(compressed.status());

  record.probe_millis = static_cast<int64_t>(absl::ToDoubleMilliseconds(absl::Now() - start));
  record.state = ModelState::kReady;
  record.state_reason = absl::StrCat("probed on ", probe_rows, " samples in ",
                                     record.probe_millis, " ms; indexed");
  ++record.revision;
  {
    // The registry lock orders this commit against DeleteModel: a model deleted while being
    // probed is not resurrected in the index.
    std::lock_guard<std::mutex> lock(registry_mutex_);
    absl::Status s = store_->CommitProbe(record, knowledge_->probe_set_sha(), logits,
                                         *compressed, knowledge_->id(), *vector);
    if (absl::IsNotFound(s)) return;
    if (!s.ok()) return fail(s);
    proxy_cache_.ErasePrefix(absl::StrCat(record.id, "|"));  // keys: id|probe set
    // With the serving version's projected index (it is swapped under this lock too).
    if (absl::Status u = knowledge_->Upsert(record.id, *vector); !u.ok()) return fail(u);
  }
  ++probes_done_;
  probe_micros_ += record.probe_millis * 1000;
  spdlog::info("model {} ('{}') READY: probed in {} ms", record.id, record.spec.name,
               record.probe_millis);
  NotifyStateChanged();
}

DockStats DockImpl::Stats() {
  DockStats stats;
  // One COUNT per scrape, not a read of every model row.
  if (auto counts = store_->CountByState(); counts.ok()) {
    auto count = [&](ModelState state) {
      auto it = counts->find(state);
      return it == counts->end() ? 0 : it->second;
    };
    stats.models_pending = count(ModelState::kPending);
    stats.models_probing = count(ModelState::kProbing);
    stats.models_ready = count(ModelState::kReady);
    stats.models_failed = count(ModelState::kFailed);
  }
  {
    std::lock_guard<std::mutex> lock(registry_mutex_);  // the index changes under this lock
    stats.index_vectors = static_cast<int64_t>(knowledge_->index()->size());
  }
  stats.probe_queue = probes_->waiting();
  stats.registrations_admitted = registrations_admitted_;
  stats.registrations_rejected = registrations_rejected_;
  stats.probes_done = probes_done_;
  stats.probes_failed = probes_failed_;
  stats.probe_seconds = static_cast<double>(probe_micros_) / 1e6;
  stats.recommends = recommends_;
  stats.stage1_seconds = static_cast<double>(stage1_micros_) / 1e6;
  stats.stage2_seconds = static_cast<double>(stage2_micros_) / 1e6;
  stats.output_cache_hits = output_cache_.hits();
  stats.output_cache_misses = output_cache_.misses();
  stats.proxy_cache_hits = proxy_cache_.hits();
  stats.proxy_cache_misses = proxy_cache_.misses();
  if (workers_pool_) {
    sandbox::PoolStats pool = workers_pool_->Stats();
    stats.workers = pool.workers;
    stats.workers_waiting_jobs = pool.waiting;
    stats.worker_jobs = pool.jobs;
    stats.worker_restarts = pool.restarts;
  }
  if (auto counts = store_->CountOutcomes(""); counts.ok()) stats.outcome_records = counts->first;
  stats.serving_alignment = learning_->Current().version;
  stats.knowledge_space = knowledge_->id();
  return stats;
}

absl::StatusOr<ModelRecord> DockImpl::WaitForChange(const std::string& id, int64_t seen_revision,
                                                    absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  std::unique_lock<std::mutex> lock(state_mutex_);
  while (true) {
    auto record = store_->Get(id);
    if (!record.ok()) return record.status();
    absl::Duration left = deadline - absl::Now();
    if (record->revision != seen_revision || left <= absl::ZeroDuration()) return record;
    state_changed_.wait_for(lock, absl::ToChronoMilliseconds(std::min(left, absl::Milliseconds(200))));
  }
}

namespace {

// Runs a worker job; if its worker died under it (ABORTED), once more on a fresh worker, since
// the crash may have been the host's. A second death is the model's: FAILED_PRECONDITION with
// the worker's reason and `second_death` appended.
template <typename Job>
auto RetryIfWorkerDied(const std::string& model, const char* second_death, const Job& job)
    -> decltype(job()) {
  auto result = job();
  if (!absl::IsAborted(result.status())) return result;
  spdlog::warn("model '{}': {}; retrying once on a fresh worker", model,
               std::string(result.status().message()));
  result = job();
  if (absl::IsAborted(result.status())) {
    return absl::FailedPreconditionError(absl::StrCat(result.status().message(), second_death));
  }
  return result;
}

}  // namespace

absl::Status DockImpl::StartWorkers() {
  const SandboxOptions& box = options_.sandbox;
  sandbox::PoolOptions pool;
  pool.worker_binary = box.worker_binary;
  if (pool.worker_binary.empty()) {
    // Installed layout: the worker beside the server binary; else the one this build made.
    std::error_code ec;
    fs::path beside = fs::read_symlink("/proc/self/exe", ec).parent_path() / "modeldock-worker";
    pool.worker_binary = !ec && fs::exists(beside, ec) ? beside.string()
                                                        : MODELDOCK_DEFAULT_WORKER_BINARY;
  }
  pool.workers = box.workers > 0 ? box.workers
                                 : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  pool.torch_threads = box.torch_threads;
  pool.memory_limit_bytes = box.memory_limit_bytes;
  pool.model_cache_bytes = options_.model_cache_bytes / pool.workers;
  pool.max_waiting = box.max_waiting_jobs;
  pool.isolate_network = box.isolate_network;
  pool.seccomp = box.seccomp;
  auto started = sandbox::WorkerPool::Start(pool);
  if (!started.ok()) return started.status();
  workers_pool_ = std::move(*started);
  if (options_.stage2_workers == 0) options_.stage2_workers = pool.workers;
  return absl::OkStatus();
}

sandbox::JobLimits DockImpl::LimitsFor(absl::Duration wall) const {
  sandbox::JobLimits limits;
  limits.wall = wall;
  // CPU summed over the worker's threads: a model that starts threads of its own hits this
  // before the wall-time limit.
  limits.cpu = wall * std::max(1, options_.sandbox.torch_threads);
  return limits;
}

sandbox::WireLimits DockImpl::OutputLimits() const {
  sandbox::WireLimits limits;
  limits.max_classes = options_.sandbox.max_classes;
  limits.max_feature_dim = options_.sandbox.max_feature_dim;
  limits.max_bytes_per_sample = options_.sandbox.max_output_bytes_per_sample;
  limits.max_layers = options_.sandbox.max_layers;
  return limits;
}

absl::StatusOr<sandbox::RunResult> DockImpl::RunModel(const ModelRecord& record,
                                                      const Tensor& samples, bool want_features,
                                                      bool want_layers,
                                                      absl::Duration time_limit,
                                                      const sandbox::CancelCheck& cancelled) {
  if (IsRemote(record.spec)) return RunRemote(record, samples, time_limit, cancelled);
  sandbox::JobRequest job;
  job.kind = sandbox::JobKind::kRun;
  job.model_path = blobs_->PathOf(record.sha256);
  job.model_key = ModelKey(record);
  job.input_shape = record.spec.input_shape;
  job.num_classes = OutputWidth(record);
  job.want_features = want_features && record.has_embed;
  job.feature_dim = job.want_features ? record.feature_dim : 0;
  if (want_layers) {
    for (const ModelLayer& layer : record.layers) job.layer_dims.push_back(layer.dim);
  }
  job.limits = OutputLimits();
  job.samples = samples;
  auto result = RetryIfWorkerDied(
      record.spec.name, " (twice; the model is not retried again)",
      [&] { return workers_pool_->Run(job, LimitsFor(time_limit), cancelled); });
  if (absl::IsNotFound(result.status())) {
    return absl::NotFoundError(absl::StrCat("model '", record.spec.name,
                                            "' was deleted while the job was running"));
  }
  return result;
}

absl::StatusOr<sandbox::AdmitResult> DockImpl::Admit(const std::string& model_name,
                                                    const sandbox::JobRequest& admission) {
  const sandbox::JobLimits limits = LimitsFor(options_.sandbox.admission_time_limit);
  return RetryIfWorkerDied(model_name, " (twice: the model crashes its worker)",
                           [&] { return workers_pool_->Admit(admission, limits, nullptr); });
}

remote::KServeClient* DockImpl::RemoteClient(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(remote_mutex_);
  std::unique_ptr<remote::KServeClient>& client = remote_clients_[endpoint];
  if (client == nullptr) client = remote::KServeClient::Connect(endpoint);
  return client.get();
}

absl::StatusOr<sandbox::RunResult> DockImpl::RunRemote(const ModelRecord& record,
                                                       const Tensor& samples,
                                                       absl::Duration time_limit,
                                                       const sandbox::CancelCheck& cancelled) {
  // The remote server sees the model's declared input shape, as a worker would adapt it.
  const Tensor* input = &samples;
  Tensor adapted;
  if (samples.SampleShape() != record.spec.input_shape) {
    auto a = encoder::AdaptInputs(samples, record.spec.input_shape);
    if (!a.ok()) return a.status();
    adapted = *std::move(a);
    input = &adapted;
  }
  const remote::RemoteTarget target{record.spec.remote_endpoint, record.spec.remote_model,
                                    record.spec.remote_version};
  const absl::Time start = absl::Now();
  auto outputs = RemoteClient(target.endpoint)
                     ->Infer(target, *input, start + time_limit, remote::InferOptions(),
                             [&] { return cancelled && cancelled(); });
  if (!outputs.ok()) return outputs.status();
  if (outputs->shape[1] != OutputWidth(record)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "remote model '", record.spec.name, "' returned ", outputs->shape[1],
        " outputs per sample; it was admitted with ", OutputWidth(record)));
  }
  for (float v : outputs->values) {
    if (!std::isfinite(v)) {
      return absl::FailedPreconditionError(
          absl::StrCat("remote model '", record.spec.name, "' returned NaN/Inf"));
    }
  }
  sandbox::RunResult result;
  result.logits = *std::move(outputs);
  result.millis = absl::ToDoubleMilliseconds(absl::Now() - start);
  return result;
}

namespace {

// A version names one registration of a model name: letters, digits, '.', '_', '+', '-'.
absl::Status ValidateVersion(const std::string& version) {
  if (version.size() > 64) {
    return absl::InvalidArgumentError("model version must have at most 64 characters");
  }
  for (char c : version) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' &&
        c != '+') {
      return absl::InvalidArgumentError(absl::StrCat(
          "model version '", version, "' may contain only letters, digits, '.', '_', '+' and '-'"));
    }
  }
  return absl::OkStatus();
}

// Streams the upload to a temp file, hashing as it goes.
class UploadImpl : public Upload {
 public:
  UploadImpl(ModelSpec spec, int64_t declared_size, std::string sha256, std::string temp_path)
      : spec_(std::move(spec)),
        declared_size_(declared_size),
        expected_sha256_(std::move(sha256)),
        temp_path_(std::move(temp_path)),
        out_(temp_path_, std::ios::binary | std::ios::trunc) {}

  ~UploadImpl() override {
    out_.close();
    std::error_code ec;
    if (!adopted_) fs::remove(temp_path_, ec);  // nothing of a failed upload stays behind
  }

  absl::Status Write(std::string_view bytes) override {
    if (written_ + static_cast<int64_t>(bytes.size()) > declared_size_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "upload is larger than the declared size_bytes ", declared_size_, " (got at least ",
          written_ + static_cast<int64_t>(bytes.size()), " bytes)"));
    }
    out_.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out_) return absl::ResourceExhaustedError("cannot write the upload to disk (disk full?)");
    hash_.Update(bytes);
    written_ += static_cast<int64_t>(bytes.size());
    return absl::OkStatus();
  }
  int64_t bytes_written() const override { return written_; }

  ModelSpec spec_;
  std::string owner_key_id_;
  int64_t declared_size_;
  std::string expected_sha256_;
  std::string temp_path_;
  std::ofstream out_;
  Sha256 hash_;
  int64_t written_ = 0;
  bool adopted_ = false;
};

}  // namespace

absl::Status ValidateSpec(const ModelSpec& spec) {
  if (spec.name.empty() || spec.name.size() > 128) {
    return absl::InvalidArgumentError("model name must have 1 to 128 characters");
  }
  if (!std::isalnum(static_cast<unsigned char>(spec.name[0]))) {
    return absl::InvalidArgumentError(
        absl::StrCat("model name '", spec.name, "' must start with a letter or digit"));
  }
  for (char c : spec.name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "model name '", spec.name, "' may contain only letters, digits, '.', '_' and '-'"));
    }
  }
  const std::string shape = ShapeToString(spec.input_shape);
  for (int64_t d : spec.input_shape) {
    if (d <= 0) return absl::InvalidArgumentError(absl::StrCat("input shape ", shape, " has a non-positive dimension"));
  }
  if (spec.task == TaskKind::kImageClassification) {
    if (spec.input_shape.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image models declare input_shape [C, H, W] (e.g. 1,28,28); got '", shape, "'"));
    }
    if (spec.input_shape[0] != 1 && spec.input_shape[0] != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("image models take 1 (grey) or 3 (RGB) channels; got ", spec.input_shape[0]));
    }
    if (spec.input_shape[1] > 1024 || spec.input_shape[2] > 1024) {
      return absl::InvalidArgumentError(absl::StrCat("input shape ", shape, " exceeds 1024x1024"));
    }
  } else if (spec.input_shape.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tabular models declare input_shape [F] (number of features); got '", shape, "'"));
  }
  if (spec.kind == ModelKind::kFeatureExtractor) {
    if (!spec.class_labels.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a feature extractor declares no class labels (forward returns features [N, D]); got ",
          spec.class_labels.size(), " (register it as a classifier if forward returns logits)"));
    }
  } else if (spec.class_labels.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a classifier declares at least 2 class labels (one per output logit); got ",
        spec.class_labels.size(), " (a headless model that returns features is registered as a "
        "feature extractor)"));
  }
  for (const std::string& label : spec.class_labels) {
    if (label.empty()) return absl::InvalidArgumentError("class labels must not be empty");
  }
  if (spec.description.size() > 8192) return absl::InvalidArgumentError("description exceeds 8192 bytes");
  if (spec.tags.size() > 64) return absl::InvalidArgumentError("at most 64 tags");
  for (const std::string& tag : spec.tags) {
    if (tag.empty() || tag.size() > 64) return absl::InvalidArgumentError("tags must have 1 to 64 characters");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Upload>> DockImpl::BeginRegistration(
    const ModelSpec& spec, int64_t size_bytes, const std::string& sha256,
    const std::string& owner_key_id) {
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return s;
  if (size_bytes <= 0) return absl::InvalidArgumentError("size_bytes must be > 0");
  if (size_bytes > options_.max_model_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "model file is ", size_bytes, " bytes; this dock accepts at most ",
        options_.max_model_bytes, " bytes (server flag --max-model-mb)"));
  }
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError("sha256 must be 64 lower-case hex digits");
  }
  if (IsRemote(spec)) {
    return absl::InvalidArgumentError("a remote model is registered with RegisterRemote, not uploaded");
  }
  if (absl::Status s = CheckNewVersion(spec, owner_key_id); !s.ok()) return s;
  auto upload = std::make_unique<UploadImpl>(spec, size_bytes, sha256, blobs_->NewTempPath());
  upload->owner_key_id_ = owner_key_id;
  return std::unique_ptr<Upload>(std::move(upload));
}

absl::Status DockImpl::CheckNewVersion(const ModelSpec& spec, const std::string& owner_key_id) {
  if (absl::Status s = ValidateVersion(spec.version); !s.ok()) return s;
  // A registered name takes new versions, from the key that registered it only.
  auto versions = store_->FindVersions(spec.name);
  if (!versions.ok()) return versions.status();
  for (const ModelRecord& r : *versions) {
    if (r.spec.version == spec.version) {
      return absl::AlreadyExistsError(absl::StrCat(
          "model '", spec.name, "' version '", spec.version, "' is already registered (versions: ",
          VersionList(*versions), "); register another --version, or delete it first"));
    }
    if (r.owner_key_id != owner_key_id) {
      return absl::PermissionDeniedError(absl::StrCat(
          "model name '", spec.name, "' belongs to key ",
          r.owner_key_id.empty() ? "(none)" : r.owner_key_id,
          "; only the key that registered a name adds versions to it (pick another name)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RegisterResult> DockImpl::FinishRegistration(std::unique_ptr<Upload> upload_base) {
  auto* upload = static_cast<UploadImpl*>(upload_base.get());
  upload->out_.close();
  if (upload->written_ != upload->declared_size_) {
    return absl::InvalidArgumentError(absl::StrCat("upload truncated: got ", upload->written_,
                                                   " of ", upload->declared_size_, " bytes"));
  }
  std::string actual = upload->hash_.HexDigest();
  if (actual != upload->expected_sha256_) {
    return absl::DataLossError(absl::StrCat("uploaded bytes have SHA-256 ", actual,
                                            " but the header declared ", upload->expected_sha256_,
                                            "; the file was corrupted or changed in transit"));
  }
  const ModelSpec& spec = upload->spec_;
  sandbox::JobRequest admission;
  admission.kind = sandbox::JobKind::kAdmit;
  admission.model_path = upload->temp_path_;
  admission.input_shape = spec.input_shape;
  admission.num_classes = static_cast<int64_t>(spec.class_labels.size());  // 0: extractor
  admission.max_model_bytes = options_.max_model_bytes;
  admission.limits = OutputLimits();
  auto report = Admit(spec.name, admission);
  if (!report.ok()) {
    ++registrations_rejected_;
    spdlog::info("registration of '{}' rejected: {}", spec.name, report.status().ToString());
    return absl::Status(report.status().code(),
                        absl::StrCat("model '", spec.name, "' failed admission: ",
                                     report.status().message()));
  }

  ModelRecord record;
  record.id = NewModelId();
  record.spec = spec;
  record.state = ModelState::kPending;
  record.state_reason = "admitted; waiting to be probed";
  record.sha256 = actual;
  record.size_bytes = upload->written_;
  // A feature extractor's forward output is its features (has_embed stays false: no separate
  // embed is run); feature_dim is their width.
  record.has_embed = spec.kind == ModelKind::kClassifier && report->has_embed;
  record.feature_dim = report->feature_dim;
  for (size_t l = 0; l < report->layer_names.size() && l < report->layer_dims.size(); ++l) {
    record.layers.push_back({report->layer_names[l], report->layer_dims[l]});
  }
  record.created_unix_ms = NowUnixMs();
  record.revision = 1;
  record.owner_key_id = upload->owner_key_id_;

  RegisterResult result;
  {
    // Blob first, row second: a crash in between leaves an unreferenced blob (collected at the
    // next start), never a row without its file.
    std::lock_guard<std::mutex> lock(registry_mutex_);
    bool existed = false;
    if (absl::Status s = blobs_->Adopt(upload->temp_path_, actual, &existed); !s.ok()) return s;
    upload->adopted_ = true;
    if (absl::Status s = store_->Insert(record); !s.ok()) {
      auto count = store_->CountBySha(actual);
      if (!existed && count.ok() && *count == 0) {
        blobs_->Remove(actual, BlobGrace()).IgnoreError();
      }
      return s;
    }
    if (!record.owner_key_id.empty()) {
      if (absl::Status s = store_->SetOwner(record.id, record.owner_key_id); !s.ok()) {
        store_->Delete(record.id).IgnoreError();  // no model without its owner
        return s;
      }
    }
    result.deduplicated = existed;
  }
  spdlog::info("registered model '{}' as {} ({} bytes, sha256 {}{}, embed: {})", spec.name,
               record.id, record.size_bytes, actual.substr(0, 12),
               result.deduplicated ? ", same bytes already stored" : "",
               record.has_embed ? absl::StrCat(record.feature_dim, "-d") : "no");
  result.model = record;
  ++registrations_admitted_;
  Audit(record.owner_key_id, "register", record.id,
        absl::StrCat(DisplayName(record), " (", ModelKindName(spec.kind), ", ", record.size_bytes,
                     " bytes)"));
  probes_->Enqueue(record.id);
  return result;
}

absl::StatusOr<RegisterResult> DockImpl::RegisterRemote(const ModelSpec& spec,
                                                        const std::string& owner_key_id) {
  if (!IsRemote(spec) || spec.remote_model.empty()) {
    return absl::InvalidArgumentError(
        "a remote model needs its endpoint (HOST:PORT) and its model name there");
  }
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return s;
  if (absl::Status s = CheckNewVersion(spec, owner_key_id); !s.ok()) return s;
  const remote::RemoteTarget target{spec.remote_endpoint, spec.remote_model, spec.remote_version};
  const absl::Time deadline = absl::Now() + options_.sandbox.admission_time_limit;
  auto rejected = [&](const absl::Status& status) {
    ++registrations_rejected_;
    spdlog::info("remote registration of '{}' rejected: {}", spec.name, status.ToString());
    return absl::Status(status.code(), absl::StrCat("model '", spec.name, "' failed admission: ",
                                                    status.message()));
  };
  // Admission, as for an upload: what the server says the model takes, then a seeded test batch.
  remote::KServeClient* client = RemoteClient(spec.remote_endpoint);
  auto metadata = client->Metadata(target, deadline);
  if (!metadata.ok()) return rejected(metadata.status());
  if (metadata->inputs.size() != 1 || metadata->inputs[0].datatype != "FP32") {
    return rejected(absl::FailedPreconditionError(absl::StrCat(
        "it declares ", metadata->inputs.size(), " input(s)",
        metadata->inputs.empty() ? "" : absl::StrCat(" (first ", metadata->inputs[0].datatype, ")"),
        "; the dock calls models with one FP32 input")));
  }
  const std::vector<int64_t>& declared = metadata->inputs[0].shape;
  if (declared.size() == spec.input_shape.size() + 1) {
    for (size_t d = 0; d < spec.input_shape.size(); ++d) {
      if (declared[d + 1] != -1 && declared[d + 1] != spec.input_shape[d]) {
        return rejected(absl::FailedPreconditionError(absl::StrCat(
            "its input is [", absl::StrJoin(declared, ", "), "]; registered as ",
            ShapeToString(spec.input_shape), " per sample")));
      }
    }
  }
  Tensor batch({4}, {});
  batch.shape.insert(batch.shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  batch.values.resize(batch.NumElements());
  std::mt19937 rng(42);
  for (float& v : batch.values) v = static_cast<float>(rng() >> 8) * (1.0f / 16777216.0f);
  auto outputs = client->Infer(target, batch, deadline, remote::InferOptions(), nullptr);
  if (!outputs.ok()) return rejected(outputs.status());
  const int64_t width = outputs->shape[1];
  const bool extractor = spec.kind == ModelKind::kFeatureExtractor;
  if (!extractor && width != static_cast<int64_t>(spec.class_labels.size())) {
    return rejected(absl::FailedPreconditionError(absl::StrCat(
        "it returned ", width, " outputs per sample but ", spec.class_labels.size(),
        " labels are declared")));
  }
  if (width > (extractor ? options_.sandbox.max_feature_dim : options_.sandbox.max_classes)) {
    return rejected(absl::FailedPreconditionError(
        absl::StrCat("it returned ", width, " outputs per sample, over the dock's limit")));
  }
  for (float v : outputs->values) {
    if (!std::isfinite(v)) {
      return rejected(absl::FailedPreconditionError("it returned NaN/Inf on the test batch"));
    }
  }

  ModelRecord record;
  record.id = NewModelId();
  record.spec = spec;
  record.state = ModelState::kPending;
  record.state_reason = "admitted; waiting to be probed";
  // No file: the digest names the remote model (caches are keyed by it).
  record.sha256 = Sha256::Of(absl::StrCat("remote|", spec.remote_endpoint, "|", spec.remote_model,
                                          "|", spec.remote_version));
  record.size_bytes = 0;
  record.has_embed = false;
  record.feature_dim = extractor ? width : 0;
  record.created_unix_ms = NowUnixMs();
  record.revision = 1;
  record.owner_key_id = owner_key_id;
  {
    std::lock_guard<std::mutex> lock(registry_mutex_);
    if (absl::Status s = store_->Insert(record); !s.ok()) return s;
    if (!record.owner_key_id.empty()) {
      if (absl::Status s = store_->SetOwner(record.id, record.owner_key_id); !s.ok()) {
        store_->Delete(record.id).IgnoreError();
        return s;
      }
    }
  }
  spdlog::info("registered remote model '{}' as {} ({} model '{}')", spec.name, record.id,
               spec.remote_endpoint, spec.remote_model);
  ++registrations_admitted_;
  Audit(record.owner_key_id, "register", record.id,
        absl::StrCat(DisplayName(record), " (remote ", spec.remote_endpoint, " model ",
                     spec.remote_model, ")"));
  probes_->Enqueue(record.id);
  RegisterResult result;
  result.model = record;
  return result;
}

absl::StatusOr<ModelRecord> DockImpl::GetModel(std::string_view id_or_name) {
  std::string key(id_or_name);
  if (key.empty()) return absl::InvalidArgumentError("model id or name must not be empty");
  auto by_id = store_->Get(key);
  if (by_id.ok() || !absl::IsNotFound(by_id.status())) return by_id;
  // NAME@VERSION: that version ('@' is not allowed in names or versions).
  const size_t at = key.rfind('@');
  const std::string name = at == std::string::npos ? key : key.substr(0, at);
  auto versions = store_->FindVersions(name);
  if (!versions.ok()) return versions.status();
  if (versions->empty()) {
    return absl::NotFoundError(absl::StrCat("no model with id or name '", name,
                                            "' (list the registered models with `modeldock list`)"));
  }
  if (at != std::string::npos) {
    const std::string version = key.substr(at + 1);
    for (ModelRecord& r : *versions) {
      if (r.spec.version == version) return std::move(r);
    }
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version,
                                            "'; its versions: ", VersionList(*versions)));
  }
  // NAME: the latest READY version, else (none is READY yet) the latest registered.
  for (auto it = versions->rbegin(); it != versions->rend(); ++it) {
    if (it->state == ModelState::kReady) return std::move(*it);
  }
  return std::move(versions->back());
}

absl::StatusOr<ModelPage> DockImpl::ListModels(const ListFilter& filter, int page_size,
                                               const std::string& page_token) {
  if (page_size <= 0) page_size = 100;
  if (page_size > 1000) page_size = 1000;
  int64_t offset = 0;
  if (!page_token.empty() &&
      (!absl::StartsWith(page_token, "o:") || !absl::SimpleAtoi(page_token.substr(2), &offset) ||
       offset < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid page_token '", page_token,
                                                   "'; pass next_page_token from the previous page"));
  }
  auto all = store_->ListAll();
  if (!all.ok()) return all.status();
  std::vector<ModelRecord> matching;
  for (ModelRecord& r : *all) {
    if (!filter.name_contains.empty() && !absl::StrContains(r.spec.name, filter.name_contains)) continue;
    if (filter.has_task && r.spec.task != filter.task) continue;
    if (!filter.input_shape.empty() && r.spec.input_shape != filter.input_shape) continue;
    if (!filter.tag.empty() &&
        std::find(r.spec.tags.begin(), r.spec.tags.end(), filter.tag) == r.spec.tags.end()) continue;
    if (filter.has_state && r.state != filter.state) continue;
    matching.push_back(std::move(r));
  }
  ModelPage page;
  page.total_size = static_cast<int>(matching.size());
  for (int64_t i = offset; i < static_cast<int64_t>(matching.size()) && i < offset + page_size; ++i) {
    page.models.push_back(std::move(matching[i]));
  }
  if (offset + page_size < static_cast<int64_t>(matching.size())) {
    page.next_page_token = absl::StrCat("o:", offset + page_size);
  }
  return page;
}

absl::StatusOr<std::string> DockImpl::DeleteModel(std::string_view id_or_name,
                                                  const std::string& actor) {
  auto record = GetModel(id_or_name);
  if (!record.ok()) return record.status();
  if (record->id != id_or_name && id_or_name.find('@') == std::string_view::npos) {
    // A bare name with several versions is ambiguous for a deletion.
    auto versions = store_->FindVersions(record->spec.name);
    if (!versions.ok()) return versions.status();
    if (versions->size() > 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", record->spec.name, "' has ", versions->size(), " versions (",
          VersionList(*versions), "): delete one as NAME@VERSION, or all with --all-versions"));
    }
  }
  return DeleteRecord(*record, actor);
}

absl::StatusOr<std::vector<std::string>> DockImpl::DeleteAllVersions(std::string_view name,
                                                                     const std::string& actor) {
  const std::string key(name);
  if (key.empty() || key.find('@') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deleting all versions takes a model name without @VERSION; got '", key, "'"));
  }
  auto versions = store_->FindVersions(key);
  if (!versions.ok()) return versions.status();
  if (versions->empty()) {
    return absl::NotFoundError(absl::StrCat("no model named '", key, "'"));
  }
  std::vector<std::string> ids;
  for (const ModelRecord& r : *versions) {
    auto id = DeleteRecord(r, actor);
    if (!id.ok()) return id.status();
    ids.push_back(*id);
  }
  return ids;
}

absl::StatusOr<std::string> DockImpl::DeleteRecord(const ModelRecord& record,
                                                   const std::string& actor) {
  {
    std::lock_guard<std::mutex> lock(registry_mutex_);
    if (absl::Status s = store_->Delete(record.id); !s.ok()) return s;
    knowledge_->Remove(record.id);  // and from the serving version's projected index
    // A shared blob directory: another replica may be adopting these bytes right now (it
    // refreshed the file's time); such a file stays for the next start-up clean-up.
    auto count = store_->CountBySha(record.sha256);
    if (count.ok() && *count == 0) blobs_->Remove(record.sha256, BlobGrace()).IgnoreError();
  }
  workers_pool_->Forget(ModelKey(record));
  output_cache_.ErasePrefix(record.sha256);
  proxy_cache_.ErasePrefix(absl::StrCat(record.id, "|"));
  run_costs_.Erase(record.id);
  spdlog::info("deleted model {} ('{}')", record.id, record.spec.name);
  Audit(actor, "delete", record.id, DisplayName(record));
  NotifyStateChanged();
  return record.id;
}

absl::StatusOr<ModelRecord> DockImpl::UpdateModel(std::string_view id_or_name,
                                                  const ModelUpdate& update,
                                                  const std::string& actor) {
  if (!update.has_description && !update.has_license && !update.has_tags) {
    return absl::InvalidArgumentError("nothing to update: give a description, license or tags");
  }
  ModelRecord record;
  std::vector<std::string> changed;
  {
    std::lock_guard<std::mutex> lock(registry_mutex_);
    auto found = GetModel(id_or_name);
    if (!found.ok()) return found.status();
    record = std::move(*found);
    if (record.state == ModelState::kPending || record.state == ModelState::kProbing) {
      // The probe job holds the record and writes its revision when it is done.
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", record.spec.name, "' is ", ModelStateName(record.state),
          "; update it once it is READY or FAILED"));
    }
    ModelSpec spec = record.spec;
    if (update.has_description) {
      spec.description = update.description;
      changed.push_back("description");
    }
    if (update.has_license) {
      spec.license = update.license;
      changed.push_back("license");
    }
    if (update.has_tags) {
      spec.tags = update.tags;
      changed.push_back(absl::StrCat("tags=[", absl::StrJoin(update.tags, ","), "]"));
    }
    if (absl::Status s = ValidateSpec(spec); !s.ok()) return s;  // the registration's rules
    record.spec = std::move(spec);
    {
      std::lock_guard<std::mutex> state_lock(state_mutex_);
      ++record.revision;
      if (absl::Status s = store_->UpdateSpec(record); !s.ok()) return s;
      state_changed_.notify_all();
    }
  }
  Audit(actor, "update", record.id, absl::StrCat(record.spec.name, ": ", absl::StrJoin(changed, ", ")));
  return record;
}

void DockImpl::Audit(const std::string& actor, const std::string& action,
                     const std::string& target, const std::string& detail) {
  AuditEntry entry;
  entry.unix_ms = NowUnixMs();
  entry.actor = actor;
  entry.action = action;
  entry.target = target;
  entry.detail = detail;
  // The change already happened; a failed audit write is logged, not turned into a failure.
  if (absl::Status s = store_->AppendAudit(entry); !s.ok()) {
    spdlog::error("audit log: {} {} {}: {}", action, target, detail, s.ToString());
  }
}

absl::StatusOr<std::vector<AuditEntry>> DockImpl::AuditLog(int limit) {
  return store_->Audit(limit <= 0 ? 100 : limit);
}

namespace {

std::string RandomHex(int bytes) {
  std::string raw(static_cast<size_t>(bytes), '\0');
  size_t got = 0;
  while (got < raw.size()) {
    ssize_t n = getrandom(raw.data() + got, raw.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex.push_back(kHex[c >> 4]);
    hex.push_back(kHex[c & 0xf]);
  }
  return hex;
}

// Equal-length strings compared without an early exit (no timing hint about the hash).
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

ApiKeyInfo ToInfo(const ApiKeyRow& row) {
  ApiKeyInfo info;
  info.id = row.id;
  info.name = row.name;
  info.role = static_cast<ApiKeyRole>(row.role);
  info.created_unix_ms = row.created_unix_ms;
  info.revoked = row.revoked;
  return info;
}

}  // namespace

const char* ApiKeyRoleName(ApiKeyRole role) {
  switch (role) {
    case ApiKeyRole::kConsumer: return "consumer";
    case ApiKeyRole::kProvider: return "provider";
    case ApiKeyRole::kAdmin: return "admin";
  }
  return "unknown";
}

absl::StatusOr<NewApiKey> DockImpl::CreateApiKey(ApiKeyRole role, const std::string& name) {
  if (role != ApiKeyRole::kConsumer && role != ApiKeyRole::kProvider &&
      role != ApiKeyRole::kAdmin) {
    return absl::InvalidArgumentError("role must be consumer, provider or admin");
  }
  if (name.size() > 200) return absl::InvalidArgumentError("key name is longer than 200 characters");
  ApiKeyRow row;
  row.id = RandomHex(6);
  row.name = name;
  row.role = static_cast<int>(role);
  row.salt = RandomHex(16);
  const std::string secret = RandomHex(32);
  row.hash = Sha256::Of(row.salt + secret);
  row.created_unix_ms = NowUnixMs();
  if (absl::Status s = store_->InsertKey(row); !s.ok()) return s;
  spdlog::info("API key {} ('{}', {}) created", row.id, name, ApiKeyRoleName(role));
  return NewApiKey{ToInfo(row), absl::StrCat("mdk_", row.id, "_", secret)};
}

absl::StatusOr<std::vector<ApiKeyInfo>> DockImpl::ListApiKeys() {
  auto rows = store_->Keys();
  if (!rows.ok()) return rows.status();
  std::vector<ApiKeyInfo> keys;
  for (const ApiKeyRow& row : *rows) keys.push_back(ToInfo(row));
  return keys;
}

absl::Status DockImpl::RevokeApiKey(const std::string& id) {
  absl::Status s = store_->RevokeKey(id);
  if (s.ok()) spdlog::info("API key {} revoked", id);
  return s;
}

absl::StatusOr<ApiKeyInfo> DockImpl::Authenticate(const std::string& secret) {
  // "mdk_<id>_<secret>": the id finds the row, the salted hash checks the secret.
  const absl::Status unknown = absl::UnauthenticatedError(
      "unknown or revoked API key (send 'authorization: Bearer <key>'; an admin creates keys "
      "with `modeldock keys create`)");
  if (secret.size() < 6 || secret.compare(0, 4, "mdk_") != 0) return unknown;
  const size_t split = secret.find('_', 4);
  if (split == std::string::npos) return unknown;
  auto rows = store_->Keys(secret.substr(4, split - 4));
  if (!rows.ok()) return rows.status();
  if (rows->empty() || rows->front().revoked) return unknown;
  const ApiKeyRow& row = rows->front();
  if (!ConstantTimeEquals(Sha256::Of(row.salt + secret.substr(split + 1)), row.hash)) {
    return unknown;
  }
  return ToInfo(row);
}

}  // namespace modeldock::dock

