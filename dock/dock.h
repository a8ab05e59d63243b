// The dock engine: registry, storage, probe jobs and the recommend pipeline. It knows nothing of
// gRPC; server/ translates requests into these calls and absl::Status into gRPC status codes.
#ifndef MODELDOCK_DOCK_DOCK_H_
#define MODELDOCK_DOCK_DOCK_H_

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
#include "dock/types.h"

namespace modeldock::dock {

// A registration in progress: the transport writes the uploaded bytes, then the dock commits.
class Upload {
 public:
  virtual ~Upload() = default;
  // Appends bytes. RESOURCE_EXHAUSTED past the declared size or the size limit.
  virtual absl::Status Write(std::string_view bytes) = 0;
};

class Dock {
 public:
  virtual ~Dock() = default;

  // Opens (or creates) the data directory, reloads every model, rebuilds the index if it is
  // missing or stale, and resumes probing of models left PENDING/PROBING by a crash.
  static absl::StatusOr<std::unique_ptr<Dock>> Create(const DockOptions& options);

  // Step 1 of a registration: validates the spec (INVALID_ARGUMENT), the name's uniqueness
  // (ALREADY_EXISTS) and the declared size (RESOURCE_EXHAUSTED); returns a temp-file upload.
  // `owner_key_id`: the API key registering it (kept for ownership checks).
  virtual absl::StatusOr<std::unique_ptr<Upload>> BeginRegistration(
      const ModelSpec& spec, int64_t size_bytes, const std::string& sha256,
      const std::string& owner_key_id = "") = 0;
  // Step 2: verifies size and SHA-256 (DATA_LOSS), runs the admission checks, stores the blob and
  // the metadata row in one step, and queues probing. On any error nothing is stored.
  virtual absl::StatusOr<RegisterResult> FinishRegistration(std::unique_ptr<Upload> upload) = 0;
  // Registers a model that stays on another inference server (spec.remote_*), reachable over
  // the KServe v2 protocol: its metadata and a run on a seeded test batch are the admission
  // checks (UNAVAILABLE when unreachable, NOT_FOUND when the server has no such model,
  // FAILED_PRECONDITION for wrong outputs); then it is probed like any model.
  virtual absl::StatusOr<RegisterResult> RegisterRemote(const ModelSpec& spec,
                                                        const std::string& owner_key_id = "") = 0;

  // By id, NAME@VERSION, or NAME (its latest READY version; the latest registered if none is
  // READY yet). NOT_FOUND if nothing matches.
  virtual absl::StatusOr<ModelRecord> GetModel(std::string_view id_or_name) = 0;
  virtual absl::StatusOr<ModelPage> ListModels(const ListFilter& filter, int page_size,
                                               const std::string& page_token) = 0;
  // The model's nearest models in its knowledge space: up to `k` (<= 0: 5; at most 100) other
  // READY models of the same space by the inner product of their knowledge vectors with its own
  // (stage 1's similarity), best first; never the model itself. NOT_FOUND for an unknown model;
  // FAILED_PRECONDITION for a model that is not READY or has no knowledge vector (a tabular
  // model, or an input kind no space covers).
  virtual absl::StatusOr<std::vector<NearestModel>> NearestModels(std::string_view id_or_name,
                                                                  int k) = 0;
  // Deletes one model version (by id, NAME@VERSION, or a NAME with a single version: a name with
  // several is FAILED_PRECONDITION) and returns its id. `actor`: the API key asking (audit log).
  virtual absl::StatusOr<std::string> DeleteModel(std::string_view id_or_name,
                                                  const std::string& actor = "") = 0;
  // Every version of a model name; their ids, oldest first.
  virtual absl::StatusOr<std::vector<std::string>> DeleteAllVersions(
      std::string_view name, const std::string& actor = "") = 0;
  // Edits description, license or tags (INVALID_ARGUMENT as at registration); bumps the
  // revision; returns the updated record.
  virtual absl::StatusOr<ModelRecord> UpdateModel(std::string_view id_or_name,
                                                  const ModelUpdate& update,
                                                  const std::string& actor = "") = 0;
  // Newest first, at most `limit` (<= 0: 100).
  virtual absl::StatusOr<std::vector<AuditEntry>> AuditLog(int limit) = 0;
  // Appends to the audit log (transports record what the engine cannot see, e.g. key changes).
  virtual void Audit(const std::string& actor, const std::string& action,
                     const std::string& target, const std::string& detail) = 0;
  // Blocks until the model's revision differs from `seen_revision` or `timeout` passes; returns
  // the current record either way.
  virtual absl::StatusOr<ModelRecord> WaitForChange(const std::string& id, int64_t seen_revision,
                                                    absl::Duration timeout) = 0;

  virtual absl::StatusOr<RecommendResult> Recommend(const RecommendQuery& query) = 0;

  // Runs a READY model (by id, NAME@VERSION or NAME) on samples [N, ...] in a worker, as the
  // dock's KServe v2 endpoint serves it: returns the record and forward's output [N, K] (an
  // extractor's features). FAILED_PRECONDITION when the model is not READY; INVALID_ARGUMENT for
  // samples it cannot take. `cancelled` (may be null) stops the run.
  virtual absl::StatusOr<std::pair<ModelRecord, Tensor>> Infer(
      std::string_view model, const Tensor& samples, const std::function<bool()>& cancelled) = 0;

  virtual DockStats Stats() = 0;

  // Re-hashes every stored model file (DockOptions::scrub_mb_per_second): a bad one is restored
  // from a mirror or its models are marked FAILED (DATA_LOSS); models failed by data loss whose
  // file is good again are probed again; stored probe features are checked against their
  // checksums. Starts a scrub in the background (or joins the one running); with `wait`,
  // returns when it is done (CANCELLED if `is_cancelled` says so first; the scrub goes on).
  // Without `wait`: the running scrub, or the last one.
  virtual absl::StatusOr<ScrubResult> Scrub(bool wait, std::function<bool()> is_cancelled) = 0;

  // Learning from outcomes. ReportOutcome: INVALID_ARGUMENT (accuracy outside [0, 1], bad
  // dataset, label count), NOT_FOUND (unknown model); on any error nothing is stored.
  virtual absl::StatusOr<OutcomeReportResult> ReportOutcome(const OutcomeReport& report) = 0;
  // Rank, then tune (issue 27, dock/tuner.h): recommends, fine-tunes the top query.top_k
  // candidates on a seeded stratified split of the labelled samples (one after another, in a
  // worker of the tuner's own), returns each one's validation accuracy per epoch and the
  // winner's tuned model, and records each tuned candidate as an outcome of source `tune`.
  // `progress` (may be null) is called after every epoch of every candidate.
  virtual absl::StatusOr<TuneResult> Tune(
      const TuneQuery& query, const std::function<void(const TuneProgressEvent&)>& progress) = 0;
  // Newest first; `model` (id or name) empty = all; limit <= 0 = all.
  virtual absl::StatusOr<RecordList> ListRecords(std::string_view model, int limit) = 0;
  // Starts a background training job on every record (or joins the one running); with `wait`,
  // returns when it is done (CANCELLED if `is_cancelled` says so first; the job goes on).
  virtual absl::StatusOr<TrainingStatus> TrainAlignment(bool wait,
                                                        std::function<bool()> is_cancelled) = 0;
  virtual absl::StatusOr<AlignmentList> ListAlignments() = 0;
  // Serves `version` from the next recommendation on (0 = untrained). NOT_FOUND.
  virtual absl::Status UseAlignment(int64_t version) = 0;

  // API keys. CreateApiKey returns the secret once. Authenticate: UNAUTHENTICATED for a
  // malformed, unknown or revoked key (constant-time comparison of salted hashes).
  virtual absl::StatusOr<NewApiKey> CreateApiKey(ApiKeyRole role, const std::string& name) = 0;
  virtual absl::StatusOr<std::vector<ApiKeyInfo>> ListApiKeys() = 0;
  virtual absl::Status RevokeApiKey(const std::string& id) = 0;  // NOT_FOUND
  virtual absl::StatusOr<ApiKeyInfo> Authenticate(const std::string& secret) = 0;

  // Stops background work (probe workers); called by the destructor too.
  virtual void Shutdown() = 0;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_DOCK_H_
