#include "dock/caching_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

absl::StatusOr<std::unique_ptr<CachingModelTable>> CachingModelTable::Create(ModelTable* inner) {
  if (inner == nullptr) return absl::InvalidArgumentError("CachingModelTable: no inner table");
  std::unique_ptr<CachingModelTable> table(new CachingModelTable(inner));
  if (absl::Status s = table->RefreshAll(); !s.ok()) return s;
  return table;
}

absl::Status CachingModelTable::Refresh(const std::string& id) {
  std::lock_guard<std::mutex> lock(refresh_mutex_);
  auto record = RefreshLocked(id);
  if (!record.ok() && !absl::IsNotFound(record.status())) return record.status();
  return absl::OkStatus();
}

absl::Status CachingModelTable::RefreshAll() {
  std::lock_guard<std::mutex> lock(refresh_mutex_);
  return RefreshAllLocked();
}

absl::StatusOr<ModelRecord> CachingModelTable::GetFresh(const std::string& id) {
  std::lock_guard<std::mutex> lock(refresh_mutex_);
  return RefreshLocked(id);
}

absl::Status CachingModelTable::RefreshAllLocked() {
  auto all = inner_->ListAll();
  if (!all.ok()) {
    stale_ = true;
    return all.status();
  }
  std::map<Key, ModelRecord> rows;
  std::unordered_map<std::string, int64_t> created;
  std::unordered_map<std::string, std::set<Key>> by_name;
  created.reserve(all->size());
  for (ModelRecord& r : *all) {
    created[r.id] = r.created_unix_ms;
    Key key(r.created_unix_ms, r.id);
    by_name[r.spec.name].insert(key);
    rows.emplace(std::move(key), std::move(r));
  }
  {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    rows_.swap(rows);
    created_.swap(created);
    by_name_.swap(by_name);
  }
  stale_ = false;
  return absl::OkStatus();
}

absl::StatusOr<ModelRecord> CachingModelTable::RefreshLocked(const std::string& id) {
  auto record = inner_->Get(id);
  if (record.ok()) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    Put(*record);
  } else if (absl::IsNotFound(record.status())) {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    Erase(id);
  } else {
    // The row's state is unknown (the store unreachable, a damaged row): reads load every row
    // again before they trust the map.
    spdlog::warn("registry cache: cannot re-read model {}: {}; reloading at the next read", id,
                 record.status().ToString());
    stale_ = true;
  }
  return record;
}

bool CachingModelTable::Usable() {
  if (!stale_) return true;
  std::lock_guard<std::mutex> lock(refresh_mutex_);
  if (!stale_) return true;
  return RefreshAllLocked().ok();
}

void CachingModelTable::Put(ModelRecord record) {
  Erase(record.id);  // its name (or, from a hand edit, its creation time) may have changed
  Key key(record.created_unix_ms, record.id);
  created_[record.id] = record.created_unix_ms;
  by_name_[record.spec.name].insert(key);
  rows_.emplace(std::move(key), std::move(record));
}

void CachingModelTable::Erase(const std::string& id) {
  auto it = created_.find(id);
  if (it == created_.end()) return;
  const Key key(it->second, id);
  auto row = rows_.find(key);
  auto name = by_name_.find(row->second.spec.name);
  name->second.erase(key);
  if (name->second.empty()) by_name_.erase(name);
  rows_.erase(row);
  created_.erase(it);
}

absl::StatusOr<ModelRecord> CachingModelTable::Get(const std::string& id) {
  if (!Usable()) return inner_->Get(id);
  std::shared_lock<std::shared_mutex> lock(mutex_);
  auto it = created_.find(id);
  if (it == created_.end()) {
    return absl::NotFoundError(absl::StrCat("no model with id '", id, "'"));
  }
  return rows_.at(Key(it->second, id));
}

absl::StatusOr<std::vector<ModelRecord>> CachingModelTable::FindVersions(const std::string& name) {
  if (!Usable()) return inner_->FindVersions(name);
  std::vector<ModelRecord> out;
  std::shared_lock<std::shared_mutex> lock(mutex_);
  auto versions = by_name_.find(name);
  if (versions == by_name_.end()) return out;
  for (const Key& key : versions->second) out.push_back(rows_.at(key));  // oldest first
  return out;
}

absl::StatusOr<std::vector<ModelRecord>> CachingModelTable::ListAll() {
  if (!Usable()) return inner_->ListAll();
  std::vector<ModelRecord> out;
  std::shared_lock<std::shared_mutex> lock(mutex_);
  out.reserve(rows_.size());
  for (const auto& [key, record] : rows_) out.push_back(record);
  return out;
}

absl::StatusOr<std::map<ModelState, int>> CachingModelTable::CountByState() {
  if (!Usable()) return inner_->CountByState();
  std::map<ModelState, int> counts;
  std::shared_lock<std::shared_mutex> lock(mutex_);
  for (const auto& [key, record] : rows_) ++counts[record.state];
  return counts;
}

// Each write refreshes its row whatever its status: a failed call left the row as it was (the
// refresh then changes nothing), but one that failed on a lost connection may have committed.
// A refresh that fails marks the map stale (RefreshLocked); the write's own status is returned.

absl::Status CachingModelTable::Insert(const ModelRecord& record) {
  absl::Status s = inner_->Insert(record);
  Refresh(record.id).IgnoreError();
  return s;
}

absl::Status CachingModelTable::SetOwner(const std::string& model_id, const std::string& key_id) {
  absl::Status s = inner_->SetOwner(model_id, key_id);
  Refresh(model_id).IgnoreError();  // records carry their owner
  return s;
}

absl::Status CachingModelTable::UpdateState(const ModelRecord& record) {
  absl::Status s = inner_->UpdateState(record);
  Refresh(record.id).IgnoreError();
  return s;
}

absl::Status CachingModelTable::UpdateSpec(const ModelRecord& record) {
  absl::Status s = inner_->UpdateSpec(record);
  Refresh(record.id).IgnoreError();
  return s;
}

absl::Status CachingModelTable::Delete(const std::string& id) {
  absl::Status s = inner_->Delete(id);
  Refresh(id).IgnoreError();
  return s;
}

absl::Status CachingModelTable::CommitProbe(const ModelRecord& record,
                                            const std::string& probe_set_sha,
                                            const Tensor& probe_logits,
                                            const Tensor& probe_features, const std::string& space,
                                            const std::vector<float>& vector) {
  absl::Status s =
      inner_->CommitProbe(record, probe_set_sha, probe_logits, probe_features, space, vector);
  Refresh(record.id).IgnoreError();
  return s;
}

}  // namespace modeldock::dock
