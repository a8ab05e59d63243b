// Tests only: a MetadataStore decorator that fails the calls a test chooses (fault injection),
// and forwards every other call to the real store. Used through dock/dock_testing.h, which opens
// a dock over it, or directly.
#ifndef MODELDOCK_DOCK_TESTING_FAULTY_STORE_H_
#define MODELDOCK_DOCK_TESTING_FAULTY_STORE_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dock/metadata_store.h"

namespace modeldock::dock::test {

class FaultyMetadataStore : public MetadataStore {
 public:
  // Decides one call: `method` is the MetadataStore method's name ("Get", "Insert", ...), `key`
  // the model id (or name, sha256, space, ...) the call is about ("" when none). A non-OK
  // status fails the call with it, without calling the real store.
  using Fault = std::function<absl::Status(std::string_view method, std::string_view key)>;

  explicit FaultyMetadataStore(std::unique_ptr<MetadataStore> inner) : inner_(std::move(inner)) {}

  void SetFault(Fault fault) {
    std::lock_guard<std::mutex> lock(mutex_);
    fault_ = std::move(fault);
  }
  MetadataStore* inner() const { return inner_.get(); }

  absl::Status Insert(const ModelRecord& r) override {
    return Call("Insert", r.id, [&] { return inner_->Insert(r); });
  }
  absl::Status InsertKey(const ApiKeyRow& key) override {
    return Call("InsertKey", key.id, [&] { return inner_->InsertKey(key); });
  }
  absl::StatusOr<std::vector<ApiKeyRow>> Keys(const std::string& id) override {
    return Call("Keys", id, [&] { return inner_->Keys(id); });
  }
  absl::Status RevokeKey(const std::string& id) override {
    return Call("RevokeKey", id, [&] { return inner_->RevokeKey(id); });
  }
  absl::Status SetOwner(const std::string& model_id, const std::string& key_id) override {
    return Call("SetOwner", model_id, [&] { return inner_->SetOwner(model_id, key_id); });
  }
  absl::StatusOr<std::string> OwnerOf(const std::string& model_id) override {
    return Call("OwnerOf", model_id, [&] { return inner_->OwnerOf(model_id); });
  }
  absl::Status UpdateState(const ModelRecord& r) override {
    return Call("UpdateState", r.id, [&] { return inner_->UpdateState(r); });
  }
  absl::StatusOr<ModelRecord> Get(const std::string& id) override {
    return Call("Get", id, [&] { return inner_->Get(id); });
  }
  absl::StatusOr<std::vector<ModelRecord>> FindVersions(const std::string& name) override {
    return Call("FindVersions", name, [&] { return inner_->FindVersions(name); });
  }
  absl::StatusOr<std::vector<ModelRecord>> ListAll() override {
    return Call("ListAll", "", [&] { return inner_->ListAll(); });
  }
  absl::Status Delete(const std::string& id) override {
    return Call("Delete", id, [&] { return inner_->Delete(id); });
  }
  absl::StatusOr<std::map<ModelState, int>> CountByState() override {
    return Call("CountByState", "", [&] { return inner_->CountByState(); });
  }
  absl::StatusOr<int> CountBySha(const std::string& sha256) override {
    return Call("CountBySha", sha256, [&] { return inner_->CountBySha(sha256); });
  }
  absl::Status CommitProbe(const ModelRecord& r, const std::string& probe_set_sha,
                           const Tensor& probe_logits, const Tensor& probe_features,
                           const std::string& space, const std::vector<float>& vector) override {
    return Call("CommitProbe", r.id, [&] {
      return inner_->CommitProbe(r, probe_set_sha, probe_logits, probe_features, space, vector);
    });
  }
  absl::StatusOr<Tensor> GetProbeOutputs(const std::string& id,
                                         const std::string& probe_set_sha) override {
    return Call("GetProbeOutputs", id, [&] { return inner_->GetProbeOutputs(id, probe_set_sha); });
  }
  absl::StatusOr<Tensor> GetProbeFeatures(const std::string& id,
                                          const std::string& probe_set_sha) override {
    return Call("GetProbeFeatures", id,
                [&] { return inner_->GetProbeFeatures(id, probe_set_sha); });
  }
  absl::StatusOr<bool> HasProbeFeatures(const std::string& id,
                                        const std::string& probe_set_sha) override {
    return Call("HasProbeFeatures", id,
                [&] { return inner_->HasProbeFeatures(id, probe_set_sha); });
  }
  absl::Status PutVector(const std::string& id, const std::string& space,
                         const std::vector<float>& vector) override {
    return Call("PutVector", id, [&] { return inner_->PutVector(id, space, vector); });
  }
  absl::StatusOr<std::vector<float>> GetVector(const std::string& id,
                                               const std::string& space) override {
    return Call("GetVector", id, [&] { return inner_->GetVector(id, space); });
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::vector<float>>>> Vectors(
      const std::string& space) override {
    return Call("Vectors", space, [&] { return inner_->Vectors(space); });
  }
  absl::Status AddOutcomes(const OutcomeQueryRow& query,
                           const std::vector<OutcomeRow>& outcomes) override {
    return Call("AddOutcomes", query.query_id, [&] { return inner_->AddOutcomes(query, outcomes); });
  }
  absl::StatusOr<std::vector<OutcomeRow>> Outcomes(const std::string& model_id,
                                                   int limit) override {
    return Call("Outcomes", model_id, [&] { return inner_->Outcomes(model_id, limit); });
  }
  absl::StatusOr<std::pair<int64_t, int64_t>> CountOutcomes(const std::string& model_id) override {
    return Call("CountOutcomes", model_id, [&] { return inner_->CountOutcomes(model_id); });
  }
  absl::StatusOr<std::vector<OutcomeQueryRow>> OutcomeQueries() override {
    return Call("OutcomeQueries", "", [&] { return inner_->OutcomeQueries(); });
  }
  absl::StatusOr<int64_t> InsertAlignment(const AlignmentRow& row) override {
    return Call("InsertAlignment", "", [&] { return inner_->InsertAlignment(row); });
  }
  absl::StatusOr<std::vector<AlignmentRow>> Alignments() override {
    return Call("Alignments", "", [&] { return inner_->Alignments(); });
  }
  absl::StatusOr<AlignmentRow> Alignment(int64_t version) override {
    return Call("Alignment", "", [&] { return inner_->Alignment(version); });
  }
  absl::Status UpdateSpec(const ModelRecord& r) override {
    return Call("UpdateSpec", r.id, [&] { return inner_->UpdateSpec(r); });
  }
  absl::Status AppendAudit(const AuditEntry& entry) override {
    return Call("AppendAudit", entry.target, [&] { return inner_->AppendAudit(entry); });
  }
  absl::StatusOr<std::vector<AuditEntry>> Audit(int limit) override {
    return Call("Audit", "", [&] { return inner_->Audit(limit); });
  }
  absl::StatusOr<std::optional<std::string>> ClaimProbeJob(const std::string& owner,
                                                           absl::Duration lease) override {
    return Call("ClaimProbeJob", owner, [&] { return inner_->ClaimProbeJob(owner, lease); });
  }
  absl::Status RenewProbeLeases(const std::vector<std::string>& ids, const std::string& owner,
                                absl::Duration lease) override {
    return Call("RenewProbeLeases", owner,
                [&] { return inner_->RenewProbeLeases(ids, owner, lease); });
  }
  absl::StatusOr<std::unique_ptr<ChangeFeed>> OpenChangeFeed() override {
    return Call("OpenChangeFeed", "", [&] { return inner_->OpenChangeFeed(); });
  }
  absl::Status SetMeta(const std::string& key, const std::string& value) override {
    return Call("SetMeta", key, [&] { return inner_->SetMeta(key, value); });
  }
  absl::StatusOr<std::string> GetMeta(const std::string& key) override {
    return Call("GetMeta", key, [&] { return inner_->GetMeta(key); });
  }

 private:
  template <typename Forward>
  auto Call(std::string_view method, std::string_view key, Forward forward)
      -> decltype(forward()) {
    Fault fault;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fault = fault_;
    }
    if (fault) {
      if (absl::Status s = fault(method, key); !s.ok()) return s;
    }
    return forward();
  }

  std::unique_ptr<MetadataStore> inner_;
  std::mutex mutex_;
  Fault fault_;
};

}  // namespace modeldock::dock::test

#endif  // MODELDOCK_DOCK_TESTING_FAULTY_STORE_H_
