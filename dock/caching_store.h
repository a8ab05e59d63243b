// The model registry in memory: a write-through decorator of the model table (ModelTable,
// store_tables.h) of the SQLite or PostgreSQL store that keeps every model row, parsed, in a map
// loaded once at creation, so that listing, resolving a name and recommending read no rows and
// parse no JSON (Triton keeps a state map the same way). It wraps the model table only: the
// other tables hold nothing a ModelRecord carries (probe data, vectors, keys, outcomes, ...), and
// the dock's parts use them on the opened store directly.
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
// - Writes to the other tables change no field of a ModelRecord: PutVector (a vector), probe
//   leases (ProbeJobTable: lease columns only), keys, outcomes. Nothing to refresh.
//
// Owns: the map (rows_, created_, by_name_), guarded by `mutex_` (a shared_mutex: reads
// share it); `refresh_mutex_` orders the refreshes (each re-reads and stores as one step).
// Safe to call from several threads.
#ifndef MODELDOCK_DOCK_CACHING_STORE_H_
#define MODELDOCK_DOCK_CACHING_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dock/store_tables.h"

namespace modeldock::dock {

class CachingModelTable : public ModelTable {
 public:
  // Reads every model row of `inner` once (its ListAll status if that fails). `inner` (not
  // owned: the dock's opened store) must outlive the table.
  static absl::StatusOr<std::unique_ptr<CachingModelTable>> Create(ModelTable* inner);
  CachingModelTable(const CachingModelTable&) = delete;
  CachingModelTable& operator=(const CachingModelTable&) = delete;

  // Re-reads one model's row from the inner table (dropped from the map when it has none).
  absl::Status Refresh(const std::string& id);
  // Re-reads every model row (models another server added or deleted unannounced included).
  absl::Status RefreshAll();
  // Get from the inner table, bypassing the map (and refreshing the model's entry with it).
  absl::StatusOr<ModelRecord> GetFresh(const std::string& id);
  // The table underneath, for reads that must see other servers' commits at once. Writes must
  // go through this decorator, or the map goes stale.
  ModelTable* inner() const { return inner_; }

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

  // Read from the inner table, not the map. CountBySha decides whether a blob may be removed,
  // which another server's row must stop at once; OwnerOf is the owner column alone (records
  // from the map carry it too).
  absl::StatusOr<std::string> OwnerOf(const std::string& model_id) override {
    return inner_->OwnerOf(model_id);
  }
  absl::StatusOr<int> CountBySha(const std::string& sha256) override {
    return inner_->CountBySha(sha256);
  }

 private:
  explicit CachingModelTable(ModelTable* inner) : inner_(inner) {}

  // With refresh_mutex_ held.
  absl::Status RefreshAllLocked();
  absl::StatusOr<ModelRecord> RefreshLocked(const std::string& id);
  // Whether the map may serve reads: true unless a refresh failed and loading every row again
  // fails too (then the caller asks the inner store).
  bool Usable();
  void Put(ModelRecord record);   // with mutex_ held exclusively
  void Erase(const std::string& id);  // with mutex_ held exclusively

  ModelTable* const inner_;
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
