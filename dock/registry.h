// Internal: the registry, the models' rows and their life in one place (docs/ARCHITECTURE.md,
// "Registration"): name resolution (id, NAME@VERSION, NAME), versions and the owner of a name,
// listing, nearest models, and every change that must keep a row, its file and its index
// entries in agreement: a new model (file adopted, then row), a probe's commit (row, then index),
// an edited spec, a deletion (row, index entries, file when no other row uses it). State
// transitions and their waiters are its ModelStates.
//
// Owns: `mutex_` (the registry lock), which orders name checks, inserts and deletes, and each
// store commit with the index change that reflects it: KnowledgeSpace's index changes are made
// under it (RunLocked for the changes made elsewhere: replica syncs, catch-ups, a trained
// version's index swap). ModelStates (its own lock for the waiters). The rows are the store's
// and the files the blob store's, each with its own locks.
#ifndef MODELDOCK_DOCK_REGISTRY_H_
#define MODELDOCK_DOCK_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "dock/blob_store.h"
#include "dock/caching_store.h"
#include "dock/knowledge_spaces.h"
#include "dock/model_states.h"
#include "dock/types.h"

namespace modeldock::dock {

// Helpers shared by the registry and the dock's files.
int64_t NowUnixMs();
// "m-" and 16 random hex digits.
std::string NewModelId();
// "name@version", or "name" for a model registered without a version.
std::string DisplayName(const ModelRecord& record);
// "1.0, 1.1, 2.0" (oldest first; an empty version shows as "(none)").
std::string VersionList(const std::vector<ModelRecord>& versions);
// INVALID_ARGUMENT unless name, shape, labels, description and tags follow the registration's
// rules (registration.cc; Registry::Update checks an updated spec by the same rules).
absl::Status ValidateSpec(const ModelSpec& spec);

class Registry {
 public:
  // Not owned; each must outlive the registry.
  struct Deps {
    CachingModelTable* models = nullptr;  // rows (the registry in memory over the store)
    ProbeDataTable* probe_data = nullptr;  // knowledge vectors (Nearest)
    BlobStore* blobs = nullptr;
    KnowledgeSpaces* spaces = nullptr;
    // A shared blob directory keeps files modified within this (another replica may be adopting
    // them); zero for a store of one process.
    absl::Duration blob_grace;
  };
  explicit Registry(Deps deps);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  ModelStates* states() { return &states_; }

  // Name resolution from the registry in memory, or (`fresh`) from the database, for callers
  // that write what they resolve and must see other replicas' commits at once. NAME: its latest
  // READY version, else its latest registered.
  absl::StatusOr<ModelRecord> Resolve(std::string_view id_or_name, bool fresh);
  absl::StatusOr<ModelPage> List(const ListFilter& filter, int page_size,
                                 const std::string& page_token);
  // The READY models of `id_or_name`'s knowledge space nearest to it in that space's index.
  absl::StatusOr<std::vector<NearestModel>> Nearest(std::string_view id_or_name, int k);
  // Every version of `name`, oldest first, from the database.
  absl::StatusOr<std::vector<ModelRecord>> Versions(const std::string& name);

  // A new (name, version) from `owner_key_id`: INVALID_ARGUMENT for a bad version,
  // ALREADY_EXISTS for a registered version, PERMISSION_DENIED when another key owns the name.
  absl::Status CheckNewVersion(const ModelSpec& spec, const std::string& owner_key_id);
  // Adds a new PENDING model: its name checked again under the lock (another registration of it
  // may have finished meanwhile), then its file adopted from `temp_path` into the blob store
  // (none for a remote model: empty path), then its row and owner inserted in one transaction.
  // Blob first, row second: a crash in between leaves an unreferenced blob (collected at the
  // next start), never a row without its file. `deduplicated`: the same bytes were stored
  // already.
  absl::Status Add(const ModelRecord& record, const std::string& temp_path, bool* deduplicated);
  // A probe's result: the READY row with its probe outputs, features and vector, then the vector
  // in `space`'s index, under the lock, so that a model deleted while it was probed is not
  // resurrected in the index. NOT_FOUND (nothing stored) when it was deleted meanwhile.
  absl::Status CommitProbe(const ModelRecord& record, KnowledgeSpace& space, const Tensor& logits,
                           const Tensor& features, const std::vector<float>& vector);
  // Applies `update` to the spec of `id_or_name` (read from the database) by the registration's
  // rules and writes it with revision + 1; `changed` lists what changed, for the audit log.
  absl::StatusOr<ModelRecord> Update(std::string_view id_or_name, const ModelUpdate& update,
                                     std::vector<std::string>* changed);
  // Deletes one stored version: its row, its entries in every space's index, and its file when
  // no other row uses it.
  absl::Status Remove(const ModelRecord& record);
  // Removes the blob `sha256` when no row uses it; a failure is logged with `why`, as the
  // start-up clean-up repairs it.
  void RemoveUnreferencedBlob(const std::string& sha256, const std::string& why);
  // Vectors in every space's index (read under the lock the index changes under).
  int64_t IndexedVectors();
  // Runs `change` (an index change made outside the calls above) under the registry lock.
  absl::Status RunLocked(const std::function<absl::Status()>& change);

 private:
  const Deps deps_;
  std::mutex mutex_;
  ModelStates states_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_REGISTRY_H_
