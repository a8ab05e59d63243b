// Integrity of stored models (issue 28): every model file is verified against its registered
// SHA-256 before a worker gets it (BlobStore::Verify, cached by file identity), a bad one is
// restored from a mirror or its models are marked FAILED with a DATA_LOSS reason and never
// run; the scrub re-hashes every file and reads back every model's stored probe features.
#include <algorithm>
#include <map>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "dock/dock_impl.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

namespace {

constexpr char kLastScrubKey[] = "last_scrub_unix_ms";

bool FailedByDataLoss(const ModelRecord& record) {
  return record.state == ModelState::kFailed &&
         absl::StartsWith(record.state_reason, kDataLossReason);
}

}  // namespace

absl::Status DockImpl::CheckModelFile(const ModelRecord& record) {
  if (IsRemote(record.spec)) return absl::OkStatus();
  const absl::Status verified = blobs_->Verify(record.sha256, record.size_bytes);
  if (verified.ok() || !absl::IsDataLoss(verified)) return verified;
  auto restored = blobs_->Restore(record.sha256, record.size_bytes);
  if (restored.ok()) {
    spdlog::warn("model {} ('{}'): {}; restored from {}", record.id, DisplayName(record),
                 std::string(verified.message()), *restored);
    return absl::OkStatus();
  }
  MarkDataLoss(record.sha256,
               absl::StrCat(kDataLossReason, verified.message(),
                            "; not run until a good copy is restored (",
                            restored.status().message(), ")"),
               nullptr);
  return absl::DataLossError(absl::StrCat("model '", DisplayName(record), "' was not run: ",
                                          verified.message(), "; it is marked FAILED"));
}

int DockImpl::MarkDataLoss(const std::string& sha256, const std::string& reason,
                           std::vector<std::string>* ids) {
  int marked = 0;
  auto records = models_->ListAll();
  if (!records.ok()) {
    spdlog::error("cannot mark the models of blob {} FAILED: {}", sha256,
                  records.status().ToString());
    return marked;
  }
  for (const ModelRecord& listed : *records) {
    if (listed.sha256 != sha256 || IsRemote(listed.spec)) continue;
    // The row as stored now (a replica may have changed it), then the state.
    auto fresh = models_->GetFresh(listed.id);
    if (!fresh.ok()) continue;
    ModelRecord record = *std::move(fresh);
    if (ids != nullptr) ids->push_back(record.id);
    if (FailedByDataLoss(record)) continue;
    spdlog::error("model {} ('{}') FAILED: {}", record.id, DisplayName(record), reason);
    SetState(record, ModelState::kFailed, reason);
    ++marked;
  }
  return marked;
}

int DockImpl::RequeueRepaired(const std::string& sha256, const std::string& how) {
  int requeued = 0;
  auto records = models_->ListAll();
  if (!records.ok()) return 0;
  for (const ModelRecord& listed : *records) {
    if (listed.sha256 != sha256 || !FailedByDataLoss(listed)) continue;
    auto fresh = models_->GetFresh(listed.id);
    if (!fresh.ok() || !FailedByDataLoss(*fresh)) continue;
    ModelRecord record = *std::move(fresh);
    // Probed again: the run that marked it may have been a probe, and the file changed.
    SetState(record, ModelState::kPending,
             absl::StrCat("stored file verified again (", how, "); waiting to be probed again"));
    probes_->Enqueue(record.id);
    spdlog::info("model {} ('{}'): stored file good again ({}); probing it again", record.id,
                 DisplayName(record), how);
    ++requeued;
  }
  return requeued;
}

void DockImpl::ScrubBlob(const std::string& sha256, int64_t size_bytes, VerifyOptions verify,
                         ScrubResult* result) {
  verify.hashed_bytes = &result->bytes_hashed;
  absl::Status status = blobs_->Verify(sha256, size_bytes, verify);
  if (absl::IsCancelled(status)) return;
  ++result->blobs_checked;
  if (status.ok()) {
    ++result->blobs_ok;
    result->models_requeued += RequeueRepaired(sha256, "by a scrub");
    return;
  }
  if (!absl::IsDataLoss(status)) {
    // Unreadable for another reason (permissions, a stale NFS handle): reported, not failed.
    spdlog::warn("scrub: cannot check blob {}: {}", sha256, status.ToString());
    ++result->blobs_bad;
    result->bad_blobs.push_back(sha256);
    return;
  }
  auto restored = blobs_->Restore(sha256, size_bytes);
  if (restored.ok()) {
    ++result->blobs_restored;
    spdlog::warn("scrub: blob {}: {}; restored from {}", sha256, std::string(status.message()),
                 *restored);
    result->models_requeued += RequeueRepaired(sha256, absl::StrCat("restored from ", *restored));
    return;
  }
  ++result->blobs_bad;
  result->bad_blobs.push_back(sha256);
  const std::string reason =
      absl::StrCat(kDataLossReason, status.message(), "; not run until a good copy is restored (",
                   restored.status().message(), ")");
  result->models_failed += MarkDataLoss(sha256, reason, &result->bad_model_ids);
}

ScrubResult DockImpl::RunScrub(const std::function<bool()>& stop) {
  ScrubResult result;
  // From the database: a model another replica registered a moment ago is scrubbed too.
  auto records = models_->inner()->ListAll();
  if (!records.ok()) {
    result.state = ScrubResult::State::kFailed;
    result.message = absl::StrCat("cannot list the models: ", records.status().message());
    return result;
  }
  std::map<std::string, int64_t> blobs;  // digest -> registered size
  for (const ModelRecord& r : *records) {
    if (!IsRemote(r.spec)) blobs.emplace(r.sha256, r.size_bytes);
  }
  VerifyOptions verify;
  verify.force = true;  // bit rot keeps the modification time
  verify.max_bytes_per_second = options_.scrub_mb_per_second * 1e6;
  verify.stop = stop;
  for (const auto& [sha256, size] : blobs) {
    if (stop()) break;
    ScrubBlob(sha256, size, verify, &result);
  }
  // The stored probe features carry a checksum (the store checks it on every read): a row
  // that no longer matches is derived data, so the model is probed again.
  for (const ModelRecord& r : *records) {
    if (stop()) break;
    const KnowledgeSpace* space = SpaceFor(r);  // its features are under its space's probe set
    if (r.state != ModelState::kReady || space == nullptr) continue;
    auto features = probe_data_->GetProbeFeatures(r.id, space->probe_set_sha());
    if (absl::IsNotFound(features.status())) continue;
    ++result.features_checked;
    if (!absl::IsDataLoss(features.status())) continue;
    ++result.features_bad;
    auto fresh = models_->GetFresh(r.id);
    if (!fresh.ok() || fresh->state != ModelState::kReady) continue;
    ModelRecord record = *std::move(fresh);
    spdlog::error("scrub: model {} ('{}'): {}; probing it again", record.id, DisplayName(record),
                  std::string(features.status().message()));
    SetState(record, ModelState::kPending,
             "stored probe features did not match their checksum; waiting to be probed again");
    recommender_->ForgetProbeData(record.id);
    probes_->Enqueue(record.id);
    ++result.models_requeued;
  }
  if (stop()) {
    result.state = ScrubResult::State::kFailed;
    result.message = "stopped: the server is shutting down";
    return result;
  }
  result.state = ScrubResult::State::kDone;
  result.message = absl::StrCat(
      result.blobs_checked, " model files checked (", result.bytes_hashed, " bytes): ",
      result.blobs_ok, " good, ", result.blobs_restored, " restored from a mirror, ",
      result.blobs_bad, " bad (", result.bad_model_ids.size(), " models FAILED); ",
      result.features_checked, " probe feature rows checked, ", result.features_bad, " bad; ",
      result.models_requeued, " models queued for probing again");
  if (result.blobs_bad > 0 || result.features_bad > 0) {
    spdlog::error("scrub: {}", result.message);
  } else {
    spdlog::info("scrub: {}", result.message);
  }
  return result;
}

void DockImpl::StartScrubber() {
  Scrubber::Options options;
  options.interval = options_.scrub_interval;
  options.last_run = [this] {
    auto stored = meta_->GetMeta(kLastScrubKey);
    int64_t millis = 0;
    if (!stored.ok() || !absl::SimpleAtoi(*stored, &millis)) return absl::InfinitePast();
    return absl::FromUnixMillis(millis);
  };
  options.record_run = [this](absl::Time finished) {
    absl::Status s = meta_->SetMeta(kLastScrubKey, absl::StrCat(absl::ToUnixMillis(finished)));
    if (!s.ok()) spdlog::warn("scrub: cannot record its time: {}", s.ToString());
  };
  scrubber_ = std::make_unique<Scrubber>(
      std::move(options), [this](const std::function<bool()>& stop) { return RunScrub(stop); });
  scrubber_->Start();
}

absl::StatusOr<ScrubResult> DockImpl::Scrub(bool wait, std::function<bool()> is_cancelled) {
  return scrubber_->Request(wait, is_cancelled);
}

}  // namespace modeldock::dock
