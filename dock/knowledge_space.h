// Internal: the dock's knowledge space (docs/ARCHITECTURE.md, "Knowledge vectors" and
// "Replicas"): the probe set, the reference encoder E, the set encoder, and the FAISS index of
// every model's knowledge vector in this space, kept equal to the vectors the metadata store's
// probe data table (ProbeDataTable, the only table a space reads) holds. The serving trained
// version's projected index follows every change of that index.
//
// Owns: the probe set, E (`reference_mutex_`: one caller at a time), the set encoder, the index
// (thread-safe for searches) and its files: a snapshot and the log of the changes since
// (index/index_log.h), folded into a new snapshot when it has grown. Changes (Upsert, Remove, Sync, CatchUp, Rebuild) are
// made under the dock's registry lock, which the caller holds.
#ifndef MODELDOCK_DOCK_KNOWLEDGE_SPACE_H_
#define MODELDOCK_DOCK_KNOWLEDGE_SPACE_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "dock/learning.h"
#include "dock/store_tables.h"
#include "dock/types.h"
#include "encoder/knowledge.h"
#include "index/index_log.h"
#include "index/vector_index.h"

namespace modeldock::dock {

// What a space's probes, E and models take.
enum class InputKind {
  kImage,  // probe set NPY [P, C, H, W]; E takes images
  kText,   // probe set JSON Lines with a "text" per line; E takes List[str] (issue 25)
  kAudio,  // probe set NPY [P, T] of 16 kHz clips; E takes [T], other lengths are fitted to it
           // (FitAudioLength)
};

struct KnowledgeSpaceOptions {
  InputKind input_kind = InputKind::kImage;
  std::string probe_set_path;          // NPY [P, C, H, W], or JSONL for text
  std::string reference_encoder_path;  // TorchScript E
  std::vector<int64_t> reference_input_shape = {1, 28, 28};  // images only
  std::string knowledge_encoder_path;  // TorchScript alignment; empty = untrained default
  std::string index_factory = "Flat";
  std::string index_path;  // where the index is saved after each change
  bool embed_probes_at_load = true;  // else on first use (ProbeEmbeddings)
  // Where E's embeddings of the probe set are kept between processes (ProbeEmbeddingCache);
  // empty = computed by every process.
  std::string probe_cache_dir;
};

class KnowledgeSpace {
 public:
  using VectorList = std::vector<std::pair<std::string, std::vector<float>>>;
  // The serving trained version: its projected index is updated with the space's own.
  using ServingFn = std::function<LearningLoop::Serving()>;

  // Loads the three assets and the saved index (missing or unusable: an empty one, which
  // RebuildIfStale fills). FAILED_PRECONDITION names an asset that cannot be loaded.
  // `probe_data` (not owned) holds the vectors the index follows.
  static absl::StatusOr<std::unique_ptr<KnowledgeSpace>> Load(const KnowledgeSpaceOptions& options,
                                                              ProbeDataTable* probe_data,
                                                              ServingFn serving);

  // Fingerprint of (E, probe set, set encoder): the tag of every stored vector of this space.
  const std::string& id() const { return id_; }
  InputKind input_kind() const { return input_kind_; }
  bool is_text() const { return input_kind_ == InputKind::kText; }
  // How many probes the space has (known at open).
  int64_t probe_rows() const { return probe_rows_; }
  // The probe images or clips, loaded on first use (once; thread-safe) after checking that the
  // file is still the one the space was opened with (else FAILED_PRECONDITION); for a text
  // space a [P, 0] tensor (row count only) beside probe_texts().
  absl::StatusOr<const Tensor*> ProbeSet() const;
  const std::vector<std::string>& probe_texts() const { return probe_texts_; }
  const std::string& probe_set_sha() const { return probe_set_sha_; }
  // E's embeddings of the probe set, computed on first use (once; thread-safe), so that a dock
  // opens without embedding probe sets it may not need yet (KnowledgeSpaces loads every space
  // so; options.embed_probes_at_load computes them in Load).
  absl::StatusOr<const Tensor*> ProbeEmbeddings() const;
  // E's embedding width.
  int reference_dim() const { return reference_dim_; }

  // E's embeddings of `samples` (E's module serves one caller at a time).
  absl::StatusOr<Tensor> Embed(const Tensor& samples);
  // E's embeddings of strings (text spaces).
  absl::StatusOr<Tensor> EmbedTexts(const std::vector<std::string>& texts);
  // A dataset through E: its texts in a text space, else its samples.
  absl::StatusOr<Tensor> Embed(const Dataset& dataset) {
    return dataset.is_text() ? EmbedTexts(dataset.texts) : Embed(dataset.samples);
  }
  // A model's knowledge vector from its outputs on the probe set (a classifier's logits, an
  // extractor's features).
  absl::StatusOr<std::vector<float>> EncodeModel(const ModelRecord& record,
                                                 const Tensor& probe_outputs) const;
  // A query's vector from E's embeddings of its samples and labels 0..num_classes-1.
  absl::StatusOr<std::vector<float>> EncodeQuery(const Tensor& query_embeddings,
                                                 const std::vector<int32_t>& labels,
                                                 int num_classes) const {
    return encoder_->EncodeQuery(query_embeddings, labels, num_classes);
  }

  // The index to search (thread-safe; searches need no lock).
  index::VectorIndex* index() const { return index_.get(); }
  // A new index of this space's dimension and factory holding `vectors` (the dock's own, or a
  // trained version's projected ones).
  absl::StatusOr<std::unique_ptr<index::VectorIndex>> NewIndexOf(const VectorList& vectors) const;

  // Changes. The caller holds the dock's registry lock: it orders each change here with the
  // store commit it reflects (a model deleted while probed is not put back), and it is the lock
  // a trained version is swapped under (so the projected index misses no change).
  //
  // Start-up: replaces the index by one of the stored vectors if their fingerprints differ.
  absl::Status RebuildIfStale();
  // Adds or replaces a model's vector (and its projection), then logs the change beside the
  // index file (Persist); an error of the index or of the serving version's projected index is
  // returned, a failed write only logged (the next start rebuilds a stale file from the store).
  absl::Status Upsert(const std::string& model_id, const std::vector<float>& vector);
  // Removes a model's entries (nothing if it has none); every index is tried, the first error
  // returned.
  absl::Status Remove(const std::string& model_id);
  // Replicas: brings one model's entry in line with the store (its current vector, or none).
  // Idempotent, so a duplicate, late or own notification is harmless.
  absl::Status Sync(const std::string& model_id);
  // Replicas: adds, replaces and removes entries until the index holds exactly the stored
  // vectors. Returns the ids it changed; the caller saves (Save) when there are any.
  absl::StatusOr<std::vector<std::string>> CatchUp();
  // Writes the index file (atomically) and empties its change log; logs a failure.
  absl::Status Save();
  // The change log is folded into a new snapshot once it holds this many records, or a quarter
  // of the index's size if that is more: a registration appends ~300 bytes instead of
  // rewriting the index (BENCHMARKS.md, "Index persistence").
  static constexpr int64_t kMinRecordsBeforeSnapshot = 256;

 private:
  KnowledgeSpace(ProbeDataTable* probe_data, ServingFn serving)
      : probe_data_(probe_data), serving_(std::move(serving)) {}
  index::IndexOptions IndexOptions() const;
  // Replays the change log over the index just loaded; on a log that does not apply, an empty
  // index (RebuildIfStale then rebuilds it from the store).
  void ReplayLog();
  // After a change: `append` writes it to the log; a snapshot is saved instead when the log has
  // grown (kMinRecordsBeforeSnapshot) or the append failed. Failures are logged only.
  void Persist(const std::function<absl::Status()>& append);

  ProbeDataTable* probe_data_;
  ServingFn serving_;
  std::string index_factory_;
  std::string index_path_;
  std::unique_ptr<index::IndexLog> log_;  // the changes since the snapshot at index_path_

  InputKind input_kind_ = InputKind::kImage;
  int64_t audio_length_ = 0;  // E's [T] in an audio space
  // Reads the probe set's SHA-256 and its row count (and a text space's texts); ProbeSet loads
  // the samples.
  absl::Status LoadProbeSet(const KnowledgeSpaceOptions& options);
  static absl::Status CheckProbeShape(const KnowledgeSpaceOptions& options,
                                      const std::string& path, const std::vector<int64_t>& shape);

  std::string probe_set_path_;
  int64_t probe_rows_ = 0;
  mutable std::once_flag probe_once_;
  mutable absl::Status probe_status_;
  mutable Tensor probe_set_;  // set once, under probe_once_ (text spaces: at open)
  std::vector<std::string> probe_texts_;  // text spaces
  std::string probe_set_sha_;
  std::unique_ptr<encoder::ReferenceEncoder> reference_;
  mutable std::mutex reference_mutex_;  // E's module serves one caller at a time
  int reference_dim_ = 0;
  mutable std::once_flag embed_once_;
  mutable absl::Status embed_status_;
  mutable Tensor probe_embeddings_;  // set once, under embed_once_
  std::string probe_cache_dir_;
  // E on the probe set (what ProbeEmbeddings computes when the cache has nothing).
  absl::StatusOr<Tensor> EmbedProbeSet() const;
  std::unique_ptr<encoder::KnowledgeEncoder> encoder_;
  std::string id_;
  std::unique_ptr<index::VectorIndex> index_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_KNOWLEDGE_SPACE_H_
