// The dock's model calls: reads, updates and deletions through the registry (dock/registry.h),
// with what the rest of the dock keeps about a model (run caches, the audit log, waiters).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dock/dock_impl.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

absl::StatusOr<ModelRecord> DockImpl::GetModel(std::string_view id_or_name) {
  return registry_->Resolve(id_or_name, /*fresh=*/false);
}

absl::StatusOr<ModelPage> DockImpl::ListModels(const ListFilter& filter, int page_size,
                                               const std::string& page_token) {
  return registry_->List(filter, page_size, page_token);
}

absl::StatusOr<std::vector<NearestModel>> DockImpl::NearestModels(std::string_view id_or_name,
                                                                    int k) {
  return registry_->Nearest(id_or_name, k);
}

absl::StatusOr<std::string> DockImpl::DeleteModel(std::string_view id_or_name,
                                                  const std::string& actor) {
  // From the database, not the registry in memory: what is deleted (and the versions that make a
  // bare name ambiguous) must include another replica's registration of a moment ago.
  auto record = registry_->Resolve(id_or_name, /*fresh=*/true);
  if (!record.ok()) return record.status();
  if (record->id != id_or_name && id_or_name.find('@') == std::string_view::npos) {
    // A bare name with several versions is ambiguous for a deletion.
    auto versions = registry_->Versions(record->spec.name);
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
  auto versions = registry_->Versions(key);  // every version, as DeleteModel
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

absl::StatusOr<std::string> DockImpl::DeleteRecord(const ModelRecord& record,
                                                   const std::string& actor) {
  if (absl::Status s = registry_->Remove(record); !s.ok()) return s;
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
  std::vector<std::string> changed;
  auto record = registry_->Update(id_or_name, update, &changed);
  if (!record.ok()) return record.status();
  Audit(actor, "update", record->id,
        absl::StrCat(record->spec.name, ": ", absl::StrJoin(changed, ", ")));
  return record;
}

}  // namespace modeldock::dock
