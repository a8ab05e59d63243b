// The dock's orchestration: start-up (stores, knowledge space, reconciling stored models),
// shutdown, the probing job, the replica glue and stats. Registration, the registry, model runs
// and the recommend pipeline are in their own files (dock_impl.h lists them).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "dock/dock_impl.h"
#include "dock/dock_testing.h"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

#ifndef MODELDOCK_DEFAULT_ASSET_DIR
#define MODELDOCK_DEFAULT_ASSET_DIR "assets"
#endif

namespace modeldock::dock {
namespace fs = std::filesystem;

// The samples that reports waiting for their stage-2 standings may hold in memory together.
constexpr size_t kReportJobBytes = size_t{512} << 20;

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
    case TaskKind::kTextClassification: return "text_classification";
    case TaskKind::kAudioClassification: return "audio_classification";
  }
  return "unknown";
}

absl::Status ValidateOptions(const DockOptions& o) {
  if (o.data_dir.empty()) return absl::InvalidArgumentError("data_dir must not be empty");
  if (o.probe_budget < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("probe_budget must be >= 0 (0 = the whole probe set)");
  }
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
  if (o.scrub_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("scrub_interval must be >= 0 (0 = only on request)");
  }
  if (!(o.scrub_mb_per_second >= 0)) {
    return absl::InvalidArgumentError("scrub_mb_per_second must be >= 0 (0 = unlimited)");
  }
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
  return CreateDockWithStore(options, nullptr);
}

absl::StatusOr<std::unique_ptr<Dock>> CreateDockWithStore(const DockOptions& options,
                                                          StoreWrapper wrap) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  auto dock = std::make_unique<DockImpl>(options);
  if (absl::Status s = dock->Init(std::move(wrap)); !s.ok()) return s;
  return std::unique_ptr<Dock>(std::move(dock));
}

namespace {

// The knowledge spaces' settings that the dock's options override (spaces.json has the rest).
SpaceOverrides SpaceOverridesOf(const DockOptions& options) {
  SpaceOverrides overrides;
  overrides.probe_set_path = options.probe_set_path;
  overrides.reference_encoder_path = options.reference_encoder_path;
  overrides.reference_input_shape = options.reference_input_shape;
  overrides.knowledge_encoder_path = options.knowledge_encoder_path;
  overrides.index_factory = options.index_factory;
  overrides.data_dir = options.data_dir;
  overrides.probe_cache_dir = options.probe_cache_dir;
  return overrides;
}

}  // namespace

DockImpl::DockImpl(DockOptions options)
    : options_(std::move(options)) {}

DockImpl::~DockImpl() { Shutdown(); }

absl::Status DockImpl::Init(const StoreWrapper& wrap_store) {
  std::error_code ec;
  fs::create_directories(fs::path(options_.data_dir) / "index", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create data directory ", options_.data_dir, ": ", ec.message()));
  }
  encoder::SetTorchThreads(options_.torch_threads);
  if (absl::Status s = StartRunners(); !s.ok()) return s;
  auto feed = OpenStore(wrap_store);
  if (!feed.ok()) return feed.status();
  learning_ = std::make_unique<LearningLoop>(
      LearningLoop::Tables{outcomes_, /*alignments=*/database_.get(), meta_},
      [this](int64_t version) { return UseAlignment(version); });
  const bool replicas = *feed != nullptr;  // null: this process is the store's only user (SQLite)
  shared_ = IsPostgresUrl(options_.metadata_url);
  ProberOptions probing = ProbingOptions(replicas);
  if (replicas) {
    spdlog::info("replica {}: probing jobs are shared through the store",
                 probing.queue.replica_id);
    replica_sync_ = std::make_unique<ReplicaSync>(
        *std::move(feed), options_.sync_interval,
        ReplicaSync::Handlers{[this](const ModelChangeEvent& e) { return SyncModel(e); },
                              [this] { return CatchUp(); }});
  }
  auto blobs = BlobStore::Create(options_.blob_dir.empty() ? options_.data_dir : options_.blob_dir,
                                 options_.blob_mirrors);
  if (!blobs.ok()) return blobs.status();
  blobs_ = std::move(*blobs);
  blobs_->ClearTemp(BlobGrace());

  const std::string asset_dir =
      options_.asset_dir.empty() ? MODELDOCK_DEFAULT_ASSET_DIR : options_.asset_dir;
  auto specs = ReadSpaces(asset_dir, SpaceOverridesOf(options_));
  if (!specs.ok()) return specs.status();
  auto spaces = KnowledgeSpaces::Load(*specs, probe_data_, [this] { return learning_->Current(); });
  if (!spaces.ok()) return spaces.status();
  spaces_ = std::move(*spaces);
  knowledge_ = spaces_->primary();
  registry_ = std::make_unique<Registry>(
      Registry::Deps{models_.get(), probe_data_, blobs_.get(), spaces_.get(), BlobGrace()});
  // stage2_workers was resolved by StartRunners.
  recommender_ = std::make_unique<Recommender>(
      RecommenderOptions::From(options_),
      Recommender::Deps{models_.get(), probe_data_, outcomes_, spaces_.get(), runner_.get(),
                        learning_.get()});
  // Created before the models are reconciled (which requeues interrupted probes); started last.
  probes_ = std::make_unique<Prober>(
      std::move(probing), Prober::Deps{models_.get(), spaces_.get(), runner_.get(),
                                       registry_.get(), recommender_->proxy_cache()});
  if (absl::Status s = ReconcileModels(); !s.ok()) return s;
  for (const auto& space : spaces_->all()) {
    if (absl::Status s = space->RebuildIfStale(); !s.ok()) return s;
  }
  spdlog::info("knowledge spaces: {}", spaces_->Describe());
  // After the vectors are current: a trained version re-encodes them into its own index.
  auto build = [this](const encoder::VectorProjection& p) { return BuildProjectedIndex(p); };
  if (absl::Status s = learning_->Load(knowledge_->id(), build); !s.ok()) return s;
  CollectGarbageBlobs();

  probes_->Start();
  if (replica_sync_ != nullptr) replica_sync_->Start();
  StartScrubber();
  // Bounded (each job holds its report's samples): a report waits for no one; when reports
  // arrive faster than their models can be scored, the standings of the extra ones are dropped
  // (logged).
  if (options_.report_standings) {
    report_jobs_ = std::make_unique<BackgroundQueue>("report standings", 64, kReportJobBytes);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ChangeFeed>> DockImpl::OpenStore(const StoreWrapper& wrap_store) {
  auto opened = OpenMetadataStore(options_.metadata_url.empty()
                                      ? (fs::path(options_.data_dir) / "modeldock.db").string()
                                      : options_.metadata_url);
  if (!opened.ok()) return opened.status();
  if (wrap_store) *opened = wrap_store(*std::move(opened));
  // Several servers may use this database (and, through --blob-dir, this blob directory):
  // listen before the registry is read and the index brought up to date, so that no change
  // falls in between.
  auto feed = (*opened)->OpenChangeFeed();
  if (!feed.ok()) return feed.status();
  database_ = *std::move(opened);
  probe_data_ = database_.get();
  keys_ = database_.get();
  outcomes_ = database_.get();
  audit_ = database_.get();
  meta_ = database_.get();
  // The registry in memory: every model row read once here, then kept by this server's writes
  // and, on replicas, by the change feed (SyncModel, CatchUp).
  auto models = CachingModelTable::Create(database_.get());
  if (!models.ok()) return models.status();
  models_ = std::move(*models);
  return feed;
}

ProberOptions DockImpl::ProbingOptions(bool replicas) {
  ProberOptions probing;
  probing.budget = options_.probe_budget;
  probing.run_time_limit = options_.sandbox.probe_time_limit;
  probing.stored_dim = options_.proxy.stored_dim;
  ProbeQueueOptions& queue = probing.queue;
  queue.workers = options_.probe_workers;
  queue.lease = options_.probe_lease;
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  queue.replica_id = absl::StrCat(host, "/", ::getpid(), "/", NewModelId().substr(2, 8));
  if (replicas) queue.shared_jobs = database_.get();
  return probing;
}

// Brings every stored model into the current knowledge space and resumes interrupted probes.
absl::Status DockImpl::ReconcileModels() {
  auto records = models_->ListAll();
  if (!records.ok()) return records.status();
  std::map<const KnowledgeSpace*, std::set<std::string>> has_vector;
  for (const auto& space : spaces_->all()) {
    auto vectors = probe_data_->Vectors(space->id());
    if (!vectors.ok()) return vectors.status();
    for (const auto& [id, v] : *vectors) has_vector[space.get()].insert(id);
  }

  int rebuilt = 0, requeued = 0;
  for (ModelRecord& record : *records) {
    if (record.state == ModelState::kPending || record.state == ModelState::kProbing) {
      probes_->Enqueue(record.id);
      ++requeued;
      continue;
    }
    KnowledgeSpace* space = SpaceFor(record);
    if (record.state != ModelState::kReady || space == nullptr) continue;
    auto has_features = probe_data_->HasProbeFeatures(record.id, space->probe_set_sha());
    if (!has_features.ok()) return has_features.status();
    if (!*has_features) {
      // Probed by an older dock (no stored features for stage-1 proxies), or in another space
      // (its kind got a space of its own): probe again.
      SetState(record, ModelState::kPending, "probe set changed; waiting to be probed again");
      probes_->Enqueue(record.id);
      ++requeued;
      continue;
    }
    if (has_vector[space].count(record.id)) continue;
    // READY but no vector in this space: the reference encoder or set encoder changed.
    absl::Status rebuilt_vector = RebuildVector(record, *space);
    if (rebuilt_vector.ok()) {
      ++rebuilt;
      continue;
    }
    spdlog::warn("model {} ('{}'): its vector in space {} cannot be rebuilt from the stored "
                 "probe outputs ({}); probing it again",
                 record.id, record.spec.name, space->id(), rebuilt_vector.ToString());
    SetState(record, ModelState::kPending, "probe set changed; waiting to be probed again");
    probes_->Enqueue(record.id);
    ++requeued;
  }
  spdlog::info("dock holds {} models ({} vectors rebuilt from stored probe outputs, {} queued "
               "for probing)", records->size(), rebuilt, requeued);
  return absl::OkStatus();
}

absl::Status DockImpl::RebuildVector(const ModelRecord& record, KnowledgeSpace& space) {
  auto logits = probe_data_->GetProbeOutputs(record.id, space.probe_set_sha());
  if (!logits.ok()) return logits.status();
  auto vector = space.EncodeModel(record, *logits);
  if (!vector.ok()) return vector.status();
  return probe_data_->PutVector(record.id, space.id(), *vector);
}

void DockImpl::CollectGarbageBlobs() {
  // Listed before the rows are read: a blob adopted after the listing is not looked at, and one
  // adopted before has its row committed by now or was touched within the grace period.
  const std::vector<std::string> stored = blobs_->List();
  // From the database, not the registry in memory: a row another replica committed a moment
  // ago must keep its blob.
  auto records = models_->inner()->ListAll();
  if (!records.ok()) {
    // Only space is at stake: unreferenced blobs wait for the next start-up.
    spdlog::warn("unreferenced blobs not collected: cannot list the models: {}",
                 records.status().ToString());
    return;
  }
  std::set<std::string> referenced;
  for (const auto& r : *records) referenced.insert(r.sha256);
  int kept = 0;
  for (const std::string& sha : stored) {
    if (referenced.count(sha)) continue;
    bool removed = false;
    if (absl::Status s = blobs_->Remove(sha, BlobGrace(), &removed); !s.ok()) {
      // Harmless: an unreferenced blob only takes space; the next start-up tries again.
      spdlog::warn("kept unreferenced blob {}: {}", sha, s.ToString());
      continue;
    }
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

absl::Status DockImpl::SyncModel(const ModelChangeEvent& event) {
  const std::string& id = event.model_id;
  // The registry in memory follows every announcement: a deleted model leaves it before the
  // index, any other change enters it after the index (a model shown READY is indexed), so a
  // recommendation never considers a model the index has already dropped.
  auto refresh = [&] { return models_->GetFresh(id); };
  absl::StatusOr<ModelRecord> record = absl::UnknownError("not read yet");
  if (event.change == ModelChange::kDeleted) record = refresh();
  if (event.change != ModelChange::kRecordChanged) {  // a row only: nothing indexed changed
    absl::Status synced = registry_->RunLocked([&] {
      for (const auto& space : spaces_->all()) {
        if (absl::Status s = space->Sync(id); !s.ok()) return s;
      }
      return absl::OkStatus();
    });
    if (!synced.ok()) return synced;
    // Another probe (new features) or a deletion: nothing cached about the model stays valid.
    recommender_->ForgetProbeData(id);
  }
  if (event.change != ModelChange::kDeleted) record = refresh();
  if (!record.ok() && !absl::IsNotFound(record.status())) return record.status();
  if (absl::IsNotFound(record.status())) recommender_->ForgetRunCosts(id);
  NotifyStateChanged();
  return absl::OkStatus();
}

absl::Status DockImpl::CatchUp() {
  // The registry in memory first (it needs no registry lock): rows changed with no announcement
  // (a lost connection, a server of an older version, a hand edit) are repaired at the same
  // pace as the index.
  if (absl::Status s = models_->RefreshAll(); !s.ok()) return s;
  NotifyStateChanged();
  // Under the registry lock: this server's own probes and deletions (which change the index
  // under it too) cannot fall between the read and the comparison. Other servers' changes that
  // do are announced, and applied after this by the same thread.
  return registry_->RunLocked([this]() -> absl::Status {
    for (const auto& space : spaces_->all()) {
      auto changed = space->CatchUp();
      if (!changed.ok()) return changed.status();
      if (!changed->empty()) {
        for (const std::string& id : *changed) recommender_->ForgetProbeData(id);
        if (absl::Status s = space->Save(); !s.ok()) return s;
      }
    }
    // A trained version chosen on another replica (adopted by its training or `alignments
    // use`) is served here from the next catch-up on.
    return learning_->Follow(knowledge_->id(), [this](const encoder::VectorProjection& p) {
      return BuildProjectedIndex(p);
    });
  });
}

void DockImpl::Shutdown() {
  if (shut_down_.exchange(true)) return;
  // A running scrub stops between chunks (it queues probes: before the probe queue stops).
  if (scrubber_) scrubber_->Stop();
  // Before the workers go: a scoring job in progress stops between models.
  if (report_jobs_) report_jobs_->Shutdown();
  // First, so that a probe that fails because its worker is killed below is not marked FAILED
  // (PROBING is resumed at the next start).
  if (probes_) probes_->Stop();
  if (replica_sync_) replica_sync_->Stop();
  if (learning_) learning_->Shutdown();
  // Killing the workers ends running probes at once instead of waiting for them.
  if (sandbox_) sandbox_->Shutdown();
  if (tuner_) tuner_->Shutdown();
  if (probes_) probes_->Join();
}

absl::StatusOr<RecommendResult> DockImpl::Recommend(const RecommendQuery& query) {
  return recommender_->Recommend(query);
}

DockStats DockImpl::Stats() {
  DockStats stats;
  // From the registry in memory: no store query per scrape.
  if (auto counts = models_->CountByState(); counts.ok()) {
    auto count = [&](ModelState state) {
      auto it = counts->find(state);
      return it == counts->end() ? 0 : it->second;
    };
    stats.models_pending = count(ModelState::kPending);
    stats.models_probing = count(ModelState::kProbing);
    stats.models_ready = count(ModelState::kReady);
    stats.models_failed = count(ModelState::kFailed);
  }
  stats.index_vectors = registry_->IndexedVectors();
  stats.probe_queue = probes_->waiting();
  stats.registrations_admitted = registrations_admitted_;
  stats.registrations_rejected = registrations_rejected_;
  stats.probes_done = probes_->done();
  stats.probes_failed = probes_->failed();
  stats.probe_seconds = probes_->seconds();
  recommender_->AddStats(&stats);
  if (sandbox_) {
    sandbox::PoolStats pool = sandbox_->Stats();
    stats.workers = pool.workers;
    stats.workers_waiting_jobs = pool.waiting;
    stats.worker_jobs = pool.jobs;
    stats.worker_restarts = pool.restarts;
  }
  if (auto counts = outcomes_->CountOutcomes(""); counts.ok()) {
    stats.outcome_records = counts->first;
  }
  stats.serving_alignment = learning_->Current().version;
  stats.knowledge_space = knowledge_->id();
  const BlobStoreStats blobs = blobs_->Stats();
  stats.blob_verifications = blobs.verifications;
  stats.blob_verifications_cached = blobs.verified_cached;
  stats.blob_bytes_hashed = blobs.bytes_hashed;
  stats.blobs_found_bad = blobs.bad;
  stats.blobs_restored = blobs.restored;
  if (scrubber_) {
    stats.scrubs_done = scrubber_->runs();
    stats.last_scrub = scrubber_->Last();
  }
  return stats;
}

absl::StatusOr<ModelRecord> DockImpl::WaitForChange(const std::string& id, int64_t seen_revision,
                                                    absl::Duration timeout) {
  return registry_->states()->WaitForChange(id, seen_revision, timeout);
}

}  // namespace modeldock::dock

