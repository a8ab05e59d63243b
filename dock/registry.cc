// The registry (dock/registry.h): name resolution, versions and owners, listing, nearest models,
// and the changes that keep a row, its file and its index entries in agreement.
#include "dock/registry.h"

#include <algorithm>
#include <cctype>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dock/knowledge_space.h"
#include "index/vector_index.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

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

bool Matches(const ListFilter& filter, const ModelRecord& r) {
  if (!filter.name_contains.empty() && !absl::StrContains(r.spec.name, filter.name_contains)) {
    return false;
  }
  if (filter.has_task && r.spec.task != filter.task) return false;
  if (!filter.input_shape.empty() && r.spec.input_shape != filter.input_shape) return false;
  if (!filter.tag.empty() &&
      std::find(r.spec.tags.begin(), r.spec.tags.end(), filter.tag) == r.spec.tags.end()) {
    return false;
  }
  return !filter.has_state || r.state == filter.state;
}

}  // namespace

Registry::Registry(Deps deps) : deps_(deps), states_(deps.models) {}

absl::StatusOr<ModelRecord> Registry::Resolve(std::string_view id_or_name, bool fresh) {
  std::string key(id_or_name);
  if (key.empty()) return absl::InvalidArgumentError("model id or name must not be empty");
  CachingModelTable* store = deps_.models;
  auto by_id = fresh ? store->GetFresh(key) : store->Get(key);
  if (by_id.ok() || !absl::IsNotFound(by_id.status())) return by_id;
  // NAME@VERSION: that version ('@' is not allowed in names or versions).
  const size_t at = key.rfind('@');
  const std::string name = at == std::string::npos ? key : key.substr(0, at);
  auto versions = fresh ? Versions(name) : store->FindVersions(name);
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

absl::StatusOr<std::vector<ModelRecord>> Registry::Versions(const std::string& name) {
  return deps_.models->inner()->FindVersions(name);
}

absl::StatusOr<ModelPage> Registry::List(const ListFilter& filter, int page_size,
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
  auto all = deps_.models->ListAll();
  if (!all.ok()) return all.status();
  std::vector<ModelRecord> matching;
  for (ModelRecord& r : *all) {
    if (Matches(filter, r)) matching.push_back(std::move(r));
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

absl::StatusOr<std::vector<NearestModel>> Registry::Nearest(std::string_view id_or_name, int k) {
  constexpr int kDefaultNearest = 5, kMaxNearest = 100;
  if (k <= 0) k = kDefaultNearest;
  k = std::min(k, kMaxNearest);
  auto record = Resolve(id_or_name, /*fresh=*/false);
  if (!record.ok()) return record.status();
  const std::string shown = DisplayName(*record);
  if (record->state != ModelState::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", shown, "' (", record->id, ") is ", ModelStateName(record->state),
                     ", not READY: it has no knowledge vector yet"));
  }
  KnowledgeSpace* space = deps_.spaces->ForModel(*record);
  if (space == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", shown, "' is in no knowledge space (a tabular model, or an input kind no "
        "space covers), so it has no nearest models"));
  }
  auto vector = deps_.probe_data->GetVector(record->id, space->id());
  if (absl::IsNotFound(vector.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", shown, "' has no knowledge vector in its space (", space->id(), ")"));
  }
  if (!vector.ok()) return vector.status();
  // The other READY models of the same space (the index may still hold a model that has left
  // READY, e.g. failed by data loss).
  auto all = deps_.models->ListAll();
  if (!all.ok()) return all.status();
  std::unordered_map<std::string, ModelRecord> candidates;
  std::unordered_set<std::string> allowed;
  for (ModelRecord& other : *all) {
    if (other.id == record->id || other.state != ModelState::kReady) continue;
    if (deps_.spaces->ForModel(other) != space) continue;
    allowed.insert(other.id);
    candidates.emplace(other.id, std::move(other));
  }
  std::vector<NearestModel> nearest;
  if (allowed.empty()) return nearest;
  auto hits = space->index()->Search(*vector, k, &allowed);
  if (!hits.ok()) return hits.status();
  for (const index::SearchHit& hit : *hits) {
    auto it = candidates.find(hit.id);
    if (it == candidates.end()) continue;  // not READY any more
    nearest.push_back({std::move(it->second), static_cast<double>(hit.score)});
  }
  return nearest;
}

absl::Status Registry::CheckNewVersion(const ModelSpec& spec, const std::string& owner_key_id) {
  if (absl::Status s = ValidateVersion(spec.version); !s.ok()) return s;
  // A registered name takes new versions, from the key that registered it only. From the
  // database, not the registry in memory: a name another replica registered a moment ago must
  // keep its owner (the unique (name, version) index guards only the version).
  auto versions = Versions(spec.name);
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

absl::Status Registry::Add(const ModelRecord& record, const std::string& temp_path,
                           bool* deduplicated) {
  *deduplicated = false;
  std::lock_guard<std::mutex> lock(mutex_);
  // This orders the registrations of one server; across replicas nothing in the database ties a
  // name to one owner.
  if (absl::Status s = CheckNewVersion(record.spec, record.owner_key_id); !s.ok()) return s;
  bool existed = false;
  if (!temp_path.empty()) {
    if (absl::Status s = deps_.blobs->Adopt(temp_path, record.sha256, &existed); !s.ok()) return s;
  }
  // The row and its owner in one transaction (MetadataStore::Insert).
  if (absl::Status s = deps_.models->Insert(record); !s.ok()) {
    if (!temp_path.empty() && !existed) {
      RemoveUnreferencedBlob(record.sha256, "its registration failed");
    }
    return s;
  }
  *deduplicated = existed;
  return absl::OkStatus();
}

absl::Status Registry::CommitProbe(const ModelRecord& record, KnowledgeSpace& space,
                                   const Tensor& logits, const Tensor& features,
                                   const std::vector<float>& vector) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = deps_.models->CommitProbe(record, space.probe_set_sha(), logits, features,
                                                space.id(), vector);
      !s.ok()) {
    return s;  // NOT_FOUND: deleted meanwhile
  }
  // With the serving version's projected index (it is swapped under this lock too).
  return space.Upsert(record.id, vector);
}

absl::StatusOr<ModelRecord> Registry::Update(std::string_view id_or_name,
                                             const ModelUpdate& update,
                                             std::vector<std::string>* changed) {
  if (!update.has_description && !update.has_license && !update.has_tags) {
    return absl::InvalidArgumentError("nothing to update: give a description, license or tags");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // From the database: the spec written back below must not undo another replica's update
  // that this one has not applied yet.
  auto found = Resolve(id_or_name, /*fresh=*/true);
  if (!found.ok()) return found.status();
  ModelRecord record = std::move(*found);
  if (record.state == ModelState::kPending || record.state == ModelState::kProbing) {
    // The probe job holds the record and writes its revision when it is done.
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", record.spec.name, "' is ", ModelStateName(record.state),
        "; update it once it is READY or FAILED"));
  }
  ModelSpec spec = record.spec;
  if (update.has_description) {
    spec.description = update.description;
    changed->push_back("description");
  }
  if (update.has_license) {
    spec.license = update.license;
    changed->push_back("license");
  }
  if (update.has_tags) {
    spec.tags = update.tags;
    changed->push_back(absl::StrCat("tags=[", absl::StrJoin(update.tags, ","), "]"));
  }
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return s;  // the registration's rules
  record.spec = std::move(spec);
  if (absl::Status s = states_.UpdateSpec(record); !s.ok()) return s;
  return record;
}

absl::Status Registry::Remove(const ModelRecord& record) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (absl::Status s = deps_.models->Delete(record.id); !s.ok()) return s;
  // From every space holding it (and the primary space's serving projected index).
  for (const auto& space : deps_.spaces->all()) {
    // The row is gone (the deletion stands); an entry left behind is never served (stage 1
    // keeps the registry's models only) and a replica's catch-up or the next start drops it.
    if (absl::Status s = space->Remove(record.id); !s.ok()) {
      spdlog::error("model {} deleted, but not from the index: {}", record.id, s.ToString());
    }
  }
  // A shared blob directory: another replica may be adopting these bytes right now (it
  // refreshed the file's time); such a file stays for the next start-up clean-up.
  RemoveUnreferencedBlob(record.sha256, absl::StrCat("model ", record.id, " was deleted"));
  return absl::OkStatus();
}

void Registry::RemoveUnreferencedBlob(const std::string& sha256, const std::string& why) {
  // A blob left behind is harmless (the next start-up's clean-up collects it), so a failure
  // here is logged, not returned: the caller's own result stands.
  auto count = deps_.models->CountBySha(sha256);
  if (!count.ok()) {
    spdlog::warn("kept blob {} ({}): cannot count the models that use it: {}", sha256, why,
                 count.status().ToString());
    return;
  }
  if (*count > 0) return;
  if (absl::Status s = deps_.blobs->Remove(sha256, deps_.blob_grace); !s.ok()) {
    spdlog::warn("kept blob {} ({}): {}; the next start-up removes it", sha256, why, s.ToString());
  }
}

int64_t Registry::IndexedVectors() {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t vectors = 0;
  for (const auto& space : deps_.spaces->all()) {
    vectors += static_cast<int64_t>(space->index()->size());
  }
  return vectors;
}

absl::Status Registry::RunLocked(const std::function<absl::Status()>& change) {
  std::lock_guard<std::mutex> lock(mutex_);
  return change();
}

}  // namespace modeldock::dock
