// The model registry in memory: a write-through decorator of a MetadataStore (SQLite or
// PostgreSQL) that keeps every model row, parsed, in a map loaded once at creation, so that
// listing, resolving a name and recommending read no rows and parse no JSON (Triton keeps a
// state map the same way).
//
// Freshness (docs/ARCHITECTURE.md, "The registry in memory"):
// - This process's writes: every call that changes a model row (Insert, SetOwner, UpdateState,
//   UpdateSpec, CommitProbe, Delete) re-reads that row from the inner store once the call
//   returned, whatever its status (a failed call on a lost connection may have committed), so a
//   failed write leaves the map as the store is. Refreshes are serialized and each reads after
//   its write committed, so the map settles on the store's state even when writes of one row
//   race.
// - Other servers' writes (PostgreSQL replicas): the dock's replica sync calls Refresh(id) for
//   every announced change and RefreshAll() at each catch-up, exactly as it keeps its index.
//   Reads that must see another server's commit at once (name ownership at registration, the
//   model a probe job just claimed, read-modify-write updates, deletions, blob garbage) go to
//   inner() or GetFresh instead.
// - A refresh that fails (the store unreachable) marks the map stale: reads then load every row
//   again first, and go to the inner store while that fails, as they did without a cache.
//
// Everything else is forwarded unchanged; ClaimProbeJob and RenewProbeLeases only write lease
// columns, which no ModelRecord field carries. Safe to call from several threads.
#ifndef MODELDOCK_DOCK_CACHING_STORE_H_
#define MODELDOCK_DOCK_CACHING_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dock/metadata_store.h"

namespace modeldock::dock {

class CachingMetadataStore : public MetadataStore {
 public:
  // Reads every model row of `inner` once (its ListAll status if that fails).
  static absl::StatusOr<std::unique_ptr<CachingMetadataStore>> Create(
      std::unique_ptr<MetadataStore> inner);
  CachingMetadataStore(const CachingMetadataStore&) = delete;
  CachingMetadataStore& operator=(const CachingMetadataStore&) = delete;

  // Re-reads one model's row from the inner store (dropped from the map when it has none).
  absl::Status Refresh(const std::string& id);
  // Re-reads every model row (models another server added or deleted unannounced included).
  absl::Status RefreshAll();
  // Get from the inner store, bypassing the map (and refreshing the model's entry with it).
  absl::StatusOr<ModelRecord> GetFresh(const std::string& id);
  // The store underneath, for reads that must see other servers' commits at once. Writes must
  // go through this decorator, or the map goes stale.
  MetadataStore* inner() const { return inner_.get(); }

  // Served from the map (copies).
  absl::StatusOr<ModelRecord> Get(const std::string& id) override;
  absl::StatusOr<std::vector<ModelRecord>> FindVersions(const std::string& name) override;
  absl::StatusOr<std::vector<ModelRecord>> ListAll() override;
  absl::StatusOr<std::map<ModelState, int>> CountByState() override;

  // Write-through: forwarded, then the model's row is refreshed.
  absl::Status Insert(const ModelRecord& record) override;
  absl::Status SetOwner(const std::string& model_id, const std::string& key_id) override;
  absl::Status UpdateState(const ModelRecord& record) override;
  absl::Status UpdateSpec(const ModelRecord& record) override;
  absl::Status Delete(const std::string& id) override;
  absl::Status CommitProbe(const ModelRecord& record, const std::string& probe_set_sha,
                           const Tensor& probe_logits, const Tensor& probe_features,
                           const std::string& space, const std::vector<float>& vector) override;

  // Forwarded unchanged.
  absl::Status InsertKey(const ApiKeyRow& key) override { return inner_->InsertKey(key); }
  absl::StatusOr<std::vector<ApiKeyRow>> Keys(const std::string& id = "") override {
    return inner_->Keys(id);
  }
  absl::Status RevokeKey(const std::string& id) override { return inner_->RevokeKey(id); }
  absl::StatusOr<std::string> OwnerOf(const std::string& model_id) override {
    return inner_->OwnerOf(model_id);
  }
  // Not cached: it decides whether a blob may be removed, which another server's row must stop.
  absl::StatusOr<int> CountBySha(const std::string& sha256) override {
    return inner_->CountBySha(sha256);
  }
  absl::StatusOr<Tensor> GetProbeOutputs(const std::string& id,
                                         const std::string& probe_set_sha) override {
    return inner_->GetProbeOutputs(id, probe_set_sha);
  }
  absl::StatusOr<Tensor> GetProbeFeatures(const std::string& id,
                                          const std::string& probe_set_sha) override {
    return inner_->GetProbeFeatures(id, probe_set_sha);
  }
  absl::StatusOr<bool> HasProbeFeatures(const std::string& id,
                                        const std::string& probe_set_sha) override {
    return inner_->HasProbeFeatures(id, probe_set_sha);
  }
  absl::Status PutVector(const std::string& id, const std::string& space,
                         const std::vector<float>& vector) override {
    return inner_->PutVector(id, space, vector);
  }
  absl::StatusOr<std::vector<float>> GetVector(const std::string& id,
                                               const std::string& space) override {
    return inner_->GetVector(id, space);
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::vector<float>>>> Vectors(
      const std::string& space) override {
    return inner_->Vectors(space);
  }
  absl::Status AddOutcomes(const OutcomeQueryRow& query,
                           const std::vector<OutcomeRow>& outcomes) override {
    return inner_->AddOutcomes(query, outcomes);
  }
  absl::StatusOr<std::vector<OutcomeRow>> Outcomes(const std::string& model_id,
                                                   int limit) override {
    return inner_->Outcomes(model_id, limit);
  }
  absl::StatusOr<std::pair<int64_t, int64_t>> CountOutcomes(const std::string& model_id) override {
    return inner_->CountOutcomes(model_id);
  }
  absl::StatusOr<std::vector<OutcomeQueryRow>> OutcomeQueries() override {
    return inner_->OutcomeQueries();
  }
  absl::StatusOr<int64_t> InsertAlignment(const AlignmentRow& row) override {
    return inner_->InsertAlignment(row);
  }
  absl::StatusOr<std::vector<AlignmentRow>> Alignments() override {
    return inner_->Alignments();
  }
  absl::StatusOr<AlignmentRow> Alignment(int64_t version) override {
    return inner_->Alignment(version);
  }
  absl::Status AppendAudit(const AuditEntry& entry) override {
    return inner_->AppendAudit(entry);
  }
  absl::StatusOr<std::vector<AuditEntry>> Audit(int limit) override {
    return inner_->Audit(limit);
  }
  // Claims and leases must see every server's commits: always the database, never the map (they
  // write lease columns only, which no ModelRecord field carries: nothing to refresh).
  absl::StatusOr<std::optional<std::string>> ClaimProbeJob(const std::string& owner,
                                                           absl::Duration lease) override {
    return inner_->ClaimProbeJob(owner, lease);
  }
  absl::Status RenewProbeLeases(const std::vector<std::string>& ids, const std::string& owner,
                                absl::Duration lease) override {
    return inner_->RenewProbeLeases(ids, owner, lease);
  }
  absl::StatusOr<std::unique_ptr<ChangeFeed>> OpenChangeFeed() override {
    return inner_->OpenChangeFeed();
  }
  absl::Status SetMeta(const std::string& key, const std::string& value) override {
    return inner_->SetMeta(key, value);
  }
  absl::StatusOr<std::string> GetMeta(const std::string& key) override {
    return inner_->GetMeta(key);
  }

 private:
  explicit CachingMetadataStore(std::unique_ptr<MetadataStore> inner);

  // With refresh_mutex_ held.
  absl::Status RefreshAllLocked();
  absl::StatusOr<ModelRecord> RefreshLocked(const std::string& id);
  // Whether the map may serve reads: true unless a refresh failed and loading every row again
  // fails too (then the caller asks the inner store).
  bool Usable();
  void Put(ModelRecord record);   // with mutex_ held exclusively
  void Erase(const std::string& id);  // with mutex_ held exclusively

  const std::unique_ptr<MetadataStore> inner_;
  // Orders refreshes: each re-reads and stores as one step, so the last refresh to run, which
  // read after every write before it committed, is what the map keeps.
  std::mutex refresh_mutex_;
  std::atomic<bool> stale_{false};  // written with refresh_mutex_ held
  using Key = std::pair<int64_t, std::string>;  // (created_unix_ms, id)
  mutable std::shared_mutex mutex_;  // guards rows_, created_ and by_name_
  // By (created_unix_ms, id): the stores' ListAll order (ids compared by bytes).
  std::map<Key, ModelRecord> rows_;
  std::unordered_map<std::string, int64_t> created_;  // id -> created_unix_ms (rows_'s key)
  std::unordered_map<std::string, std::set<Key>> by_name_;  // name -> its versions' keys
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_CACHING_STORE_H_
