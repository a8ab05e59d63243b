// The registry over the metadata store: name resolution (id, NAME@VERSION, NAME), listing,
// updates and deletions, the audit log and API keys.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include <sys/random.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "dock/dock_impl.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

absl::StatusOr<ModelRecord> DockImpl::GetModel(std::string_view id_or_name) {
  return ResolveModel(id_or_name, /*fresh=*/false);
}

absl::StatusOr<ModelRecord> DockImpl::ResolveModel(std::string_view id_or_name, bool fresh) {
  std::string key(id_or_name);
  if (key.empty()) return absl::InvalidArgumentError("model id or name must not be empty");
  auto by_id = fresh ? models_->GetFresh(key) : models_->Get(key);
  if (by_id.ok() || !absl::IsNotFound(by_id.status())) return by_id;
  // NAME@VERSION: that version ('@' is not allowed in names or versions).
  const size_t at = key.rfind('@');
  const std::string name = at == std::string::npos ? key : key.substr(0, at);
  auto versions = fresh ? models_->inner()->FindVersions(name) : models_->FindVersions(name);
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
  auto all = models_->ListAll();
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

absl::StatusOr<std::vector<NearestModel>> DockImpl::NearestModels(std::string_view id_or_name,
                                                                    int k) {
  constexpr int kDefaultNearest = 5, kMaxNearest = 100;
  if (k <= 0) k = kDefaultNearest;
  k = std::min(k, kMaxNearest);
  auto record = ResolveModel(id_or_name, /*fresh=*/false);
  if (!record.ok()) return record.status();
  const std::string shown = DisplayName(*record);
  if (record->state != ModelState::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", shown, "' (", record->id, ") is ", ModelStateName(record->state),
                     ", not READY: it has no knowledge vector yet"));
  }
  KnowledgeSpace* space = SpaceFor(*record);
  if (space == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", shown, "' is in no knowledge space (a tabular model, or an input kind no "
        "space covers), so it has no nearest models"));
  }
  auto vector = probe_data_->GetVector(record->id, space->id());
  if (absl::IsNotFound(vector.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", shown, "' has no knowledge vector in its space (", space->id(), ")"));
  }
  if (!vector.ok()) return vector.status();
  // The other READY models of the same space (the index may still hold a model that has left
  // READY, e.g. failed by data loss).
  auto all = models_->ListAll();
  if (!all.ok()) return all.status();
  std::unordered_map<std::string, ModelRecord> candidates;
  std::unordered_set<std::string> allowed;
  for (ModelRecord& other : *all) {
    if (other.id == record->id || other.state != ModelState::kReady) continue;
    if (SpaceFor(other) != space) continue;
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

absl::StatusOr<std::string> DockImpl::DeleteModel(std::string_view id_or_name,
                                                  const std::string& actor) {
  // From the database, not the registry in memory: what is deleted (and the versions that make a
  // bare name ambiguous) must include another replica's registration of a moment ago.
  auto record = ResolveModel(id_or_name, /*fresh=*/true);
  if (!record.ok()) return record.status();
  if (record->id != id_or_name && id_or_name.find('@') == std::string_view::npos) {
    // A bare name with several versions is ambiguous for a deletion.
    auto versions = models_->inner()->FindVersions(record->spec.name);
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
  auto versions = models_->inner()->FindVersions(key);  // every version, as DeleteModel
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

void DockImpl::RemoveUnreferencedBlob(const std::string& sha256, const std::string& why) {
  // A blob left behind is harmless (the next start-up's clean-up collects it), so a failure
  // here is logged, not returned: the caller's own result stands.
  auto count = models_->CountBySha(sha256);
  if (!count.ok()) {
    spdlog::warn("kept blob {} ({}): cannot count the models that use it: {}", sha256, why,
                 count.status().ToString());
    return;
  }
  if (*count > 0) return;
  if (absl::Status s = blobs_->Remove(sha256, BlobGrace()); !s.ok()) {
    spdlog::warn("kept blob {} ({}): {}; the next start-up removes it", sha256, why, s.ToString());
  }
}

absl::StatusOr<std::string> DockImpl::DeleteRecord(const ModelRecord& record,
                                                   const std::string& actor) {
  {
    std::lock_guard<std::mutex> lock(registry_mutex_);
    if (absl::Status s = models_->Delete(record.id); !s.ok()) return s;
    // From every space holding it (and the primary space's serving projected index).
    for (const auto& space : spaces_->all()) {
      // The row is gone (the deletion stands); an entry left behind is never served (stage 1
      // keeps the registry's models only) and a replica's catch-up or the next start drops it.
      if (absl::Status s = space->Remove(record.id); !s.ok()) {
        spdlog::error("model {} deleted, but not from the index: {}", record.id, s.ToString());
      }
    }
    // A shared blob directory: another replica may be adopting these bytes right now (it
    // refreshed the file's time); such a file stays for the next start-up clean-up.
    RemoveUnreferencedBlob(record.sha256, absl::StrCat("model ", record.id, " was deleted"));
  }
  runner_->Forget(record);
  recommender_->ForgetModel(record);
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
    // From the database: the spec written back below must not undo another replica's update
    // that this one has not applied yet.
    auto found = ResolveModel(id_or_name, /*fresh=*/true);
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
    if (absl::Status s = states_->UpdateSpec(record); !s.ok()) return s;
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
  if (absl::Status s = audit_->AppendAudit(entry); !s.ok()) {
    spdlog::error("audit log: {} {} {}: {}", action, target, detail, s.ToString());
  }
}

absl::StatusOr<std::vector<AuditEntry>> DockImpl::AuditLog(int limit) {
  return audit_->Audit(limit <= 0 ? 100 : limit);
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
  if (absl::Status s = keys_->InsertKey(row); !s.ok()) return s;
  spdlog::info("API key {} ('{}', {}) created", row.id, name, ApiKeyRoleName(role));
  return NewApiKey{ToInfo(row), absl::StrCat("mdk_", row.id, "_", secret)};
}

absl::StatusOr<std::vector<ApiKeyInfo>> DockImpl::ListApiKeys() {
  auto rows = keys_->Keys();
  if (!rows.ok()) return rows.status();
  std::vector<ApiKeyInfo> keys;
  for (const ApiKeyRow& row : *rows) keys.push_back(ToInfo(row));
  return keys;
}

absl::Status DockImpl::RevokeApiKey(const std::string& id) {
  absl::Status s = keys_->RevokeKey(id);
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
  auto rows = keys_->Keys(secret.substr(4, split - 4));
  if (!rows.ok()) return rows.status();
  if (rows->empty() || rows->front().revoked) return unknown;
  const ApiKeyRow& row = rows->front();
  if (!ConstantTimeEquals(Sha256::Of(row.salt + secret.substr(split + 1)), row.hash)) {
    return unknown;
  }
  return ToInfo(row);
}

}  // namespace modeldock::dock
