#include "dock/prober.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/request_context.h"
#include "scoring/proxy.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

namespace {

// Probe samples per run: as many as fit ~32 MiB of model input (a 224x224 colour model takes 32
// per run, a 28x28 grey one 512), so that adapting and sending a chunk stays small.
int64_t ProbeChunkRows(const std::vector<int64_t>& input_shape) {
  int64_t floats = 1;
  for (int64_t d : input_shape) floats *= std::max<int64_t>(d, 1);
  int64_t rows = 512;
  while (rows > 16 && rows * floats * 4 > (32ll << 20)) rows /= 2;
  return rows;
}

Tensor RowsOf(const Tensor& t, int64_t begin, int64_t end) {
  Tensor out;
  out.shape = t.shape;
  out.shape[0] = end - begin;
  const int64_t row = t.RowSize();
  out.values.assign(t.values.begin() + begin * row, t.values.begin() + end * row);
  return out;
}

bool AllFinite(const Tensor& t) {
  return std::all_of(t.values.begin(), t.values.end(), [](float v) { return std::isfinite(v); });
}

// Appends `part`'s rows to `all` (which starts empty).
void AppendRows(Tensor* all, const Tensor& part) {
  if (all->shape.empty()) {
    *all = part;
    return;
  }
  all->shape[0] += part.Rows();
  all->values.insert(all->values.end(), part.values.begin(), part.values.end());
}

}  // namespace

Prober::Prober(ProberOptions options, Deps deps)
    : options_(std::move(options)), deps_(deps) {
  queue_ = std::make_unique<ProbeQueue>(options_.queue, [this](const std::string& id) {
    std::string request_id;
    {
      std::lock_guard<std::mutex> lock(requests_mutex_);
      if (auto it = request_of_job_.find(id); it != request_of_job_.end()) {
        request_id = std::move(it->second);
        request_of_job_.erase(it);
      }
    }
    ScopedRequestId scope(std::move(request_id));
    Probe(id);
  });
}

void Prober::Enqueue(const std::string& model_id) {
  if (!CurrentRequestId().empty()) {
    std::lock_guard<std::mutex> lock(requests_mutex_);
    // Bounded: on replicas another server may take the job, and its entry would stay here.
    if (request_of_job_.size() >= 4096) request_of_job_.clear();
    request_of_job_[model_id] = CurrentRequestId();
  }
  queue_->Enqueue(model_id);
}

Prober::~Prober() {
  queue_->Stop();
  queue_->Join();
}

absl::StatusOr<ModelRecord> Prober::ReadJob(const std::string& id) {
  // From the database: on replicas the job may be a model another server registered a moment
  // ago, not announced here yet. NOT_FOUND: deleted meanwhile, nothing to do. Any other error
  // (a lost connection, a busy database) must not lose the job, which would leave the model
  // PENDING until the next start: the read is retried until it succeeds or the queue stops
  // (the job is resumed at the next start then).
  absl::Duration backoff = kFirstReadBackoff;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<ModelRecord> found = deps_.models->GetFresh(id);
    if (found.ok() || absl::IsNotFound(found.status())) return found;
    spdlog::warn("probing job {}: cannot read the model (attempt {}), retrying in {}: {}", id,
                 attempt, absl::FormatDuration(backoff), found.status().ToString());
    if (!queue_->WaitUnlessStopping(backoff)) return found.status();
    backoff = std::min(backoff * 2, kMaxReadBackoff);
  }
}

absl::StatusOr<Prober::ProbeRun> Prober::RunOnProbes(ModelRecord& record,
                                                     const KnowledgeSpace& space) {
  auto loaded = space.ProbeSet();  // [P, 0] for a text space: rows only
  if (!loaded.ok()) return loaded.status();
  const Tensor& probes = **loaded;
  const int64_t total = probes.Rows();
  const int64_t chunk = ProbeChunkRows(record.spec.input_shape);
  const absl::Duration budget = options_.budget;
  const absl::Time start = absl::Now();
  absl::Time last_progress = start;
  RunRequest request;
  request.want_features = true;
  request.time_limit = options_.run_time_limit;
  request.cancelled = [this] { return queue_->stopping(); };
  ProbeRun run;
  while (run.rows < total) {
    const int64_t end = std::min(total, run.rows + chunk);
    auto outputs =
        space.is_text()
            ? deps_.runner->RunTexts(record,
                                     std::vector<std::string>(space.probe_texts().begin() + run.rows,
                                                              space.probe_texts().begin() + end),
                                     request)
            : deps_.runner->Run(record, RowsOf(probes, run.rows, end), request);
    if (!outputs.ok()) return outputs.status();
    AppendRows(&run.logits, outputs->logits);
    if (record.has_embed && !outputs->features.shape.empty()) {
      AppendRows(&run.features, outputs->features);
    }
    run.rows = end;
    const absl::Duration used = absl::Now() - start;
    const int64_t next = std::min(total, run.rows + chunk) - run.rows;
    const absl::Duration projected = used + used / run.rows * next;
    if (budget > absl::ZeroDuration() && run.rows < total && run.rows >= kMinProbeRows &&
        projected > budget) {
      run.budget_cut = true;
      break;
    }
    if (absl::Now() - last_progress > absl::Seconds(2) && run.rows < total) {
      last_progress = absl::Now();
      deps_.registry->states()->Set(record, ModelState::kProbing,
                        absl::StrCat("running on the probe set (", run.rows, " of ", total,
                                     " samples)"));
    }
  }
  return run;
}

void Prober::ReadyWithoutSpace(ModelRecord& record) {
  // No probe set exists for tabular inputs (or for an image kind no space covers): such models
  // are served by stage 2 (brute force over compatible models) only.
  std::string reason;
  switch (record.spec.task) {
    case TaskKind::kImageClassification:
      reason = absl::StrCat("ready for stage-2 scoring; no knowledge space takes ",
                            ShapeToString(record.spec.input_shape),
                            " inputs, so no knowledge vector");
      break;
    case TaskKind::kTextClassification:
      reason = "ready for stage-2 scoring; the dock's assets have no text knowledge space, so no "
               "knowledge vector";
      break;
    case TaskKind::kAudioClassification:
      reason = "ready for stage-2 scoring; the dock's assets have no audio knowledge space, so "
               "no knowledge vector";
      break;
    default:
      reason = "ready for stage-2 scoring; no probe set for tabular inputs, so no knowledge vector";
  }
  deps_.registry->states()->Set(record, ModelState::kReady, reason);
}

// Runs the model black-box on its space's probe set and turns its behaviour into a knowledge
// vector.
void Prober::Probe(const std::string& id) {
  auto found = ReadJob(id);
  if (!found.ok()) return;  // deleted meanwhile, or stopping
  ModelRecord record = *std::move(found);
  KnowledgeSpace* space = deps_.spaces->ForModel(record);
  if (space == nullptr) return ReadyWithoutSpace(record);
  const std::string& space_name = deps_.spaces->SpecOf(space).name;
  deps_.registry->states()->Set(record, ModelState::kProbing,
                    absl::StrCat("running on the ", space_name, " probe set (",
                                 space->probe_rows(), " samples)"));
  const absl::Time start = absl::Now();
  auto fail = [&](const absl::Status& status) {
    ++failed_;
    spdlog::warn("probing {} ('{}') failed: {}", record.id, record.spec.name, status.ToString());
    deps_.registry->states()->Set(record, ModelState::kFailed,
                      absl::StrCat("probing failed: ", status.message()));
  };
  auto run = RunOnProbes(record, *space);
  if (!run.ok()) {
    if (absl::IsNotFound(run.status())) return;  // deleted while probing
    // The stored file is bad: the file check marked the model FAILED with the DATA_LOSS reason.
    if (absl::IsDataLoss(run.status())) return;
    if (queue_->stopping()) return;  // shutting down: PROBING is resumed at the next start
    return fail(run.status());
  }
  const absl::Status committed = Commit(record, *space, *run, start);
  if (absl::IsNotFound(committed)) return;  // deleted while probing: nothing to index
  if (!committed.ok()) return fail(committed);
  ++done_;
  micros_ += record.probe_millis * 1000;
  spdlog::info("model {} ('{}') READY: probed in {} ms on {} {} probe samples", record.id,
               record.spec.name, record.probe_millis, run->rows, space_name);
  deps_.registry->states()->Notify();
}

absl::Status Prober::Commit(ModelRecord& record, KnowledgeSpace& space, const ProbeRun& run,
                            absl::Time start) {
  const Tensor& logits = run.logits;
  if (logits.shape.size() != 2 || logits.shape[1] != OutputWidth(record)) {
    return absl::FailedPreconditionError(
        absl::StrCat("probe outputs have shape ", ShapeToString(logits.shape), "; expected [",
                     run.rows, ", ", OutputWidth(record), "]"));
  }
  if (!AllFinite(logits)) {
    return absl::FailedPreconditionError("the model returned NaN/Inf on the probe set");
  }
  auto vector = space.EncodeModel(record, logits);
  if (!vector.ok()) return vector.status();
  // Stage-1 proxies read the model's features on the probe set (its logits without embed),
  // compressed per model so that a large dock stays small.
  const bool has_features = !run.features.shape.empty();
  const Tensor& raw_features = has_features ? run.features : logits;
  if (has_features && !AllFinite(raw_features)) {  // the logits were checked above
    return absl::FailedPreconditionError("embed(x) returned NaN/Inf on the probe set");
  }
  auto compressed = scoring::CompressFeatures(raw_features, options_.stored_dim);
  if (!compressed.ok()) return compressed.status();

  const std::string& space_name = deps_.spaces->SpecOf(&space).name;
  const int64_t probe_rows = space.probe_rows();
  record.probe_millis = static_cast<int64_t>(absl::ToDoubleMilliseconds(absl::Now() - start));
  record.state = ModelState::kReady;
  record.state_reason =
      run.budget_cut
          ? absl::StrCat("probed on the first ", run.rows, " of ", probe_rows, " ", space_name,
                         " probe samples in ", record.probe_millis,
                         " ms (the probing budget of ", absl::FormatDuration(options_.budget),
                         " ends there); indexed")
          : absl::StrCat("probed on ", probe_rows, " ", space_name, " samples in ",
                         record.probe_millis, " ms; indexed");
  ++record.revision;
  // One call under the registry lock, ordered against DeleteModel: a model deleted while being
  // probed is not resurrected in the index. NOT_FOUND: deleted meanwhile.
  absl::Status committed =
      deps_.registry->CommitProbe(record, space, logits, *compressed, *vector);
  deps_.proxy_cache->ErasePrefix(absl::StrCat(record.id, "|"));  // keys: id|probe set
  return committed;
}

}  // namespace modeldock::dock
