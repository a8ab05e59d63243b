#include "dock/knowledge_space.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/audio.h"
#include "common/datasets.h"
#include "common/files.h"
#include "common/text_datasets.h"
#include "common/sha256.h"
#include "dock/probe_embedding_cache.h"
#include "encoder/alignment.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

absl::StatusOr<std::unique_ptr<KnowledgeSpace>> KnowledgeSpace::Load(
    const KnowledgeSpaceOptions& options, ProbeDataTable* probe_data, ServingFn serving) {
  std::unique_ptr<KnowledgeSpace> space(new KnowledgeSpace(probe_data, std::move(serving)));
  space->input_kind_ = options.input_kind;
  space->index_factory_ = options.index_factory;
  space->index_path_ = options.index_path;
  space->probe_cache_dir_ = options.probe_cache_dir;

  const std::string& probe_path = options.probe_set_path;
  if (absl::Status s = space->LoadProbeSet(options); !s.ok()) return s;

  const std::string& encoder_path = options.reference_encoder_path;
  auto reference = options.input_kind == InputKind::kText
                       ? encoder::ReferenceEncoder::LoadText(encoder_path)
                       : encoder::ReferenceEncoder::Load(encoder_path, options.reference_input_shape);
  if (!reference.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot load the reference encoder ", encoder_path, ": ", reference.status().message()));
  }
  space->reference_ = std::move(*reference);
  if (options.input_kind == InputKind::kAudio) space->audio_length_ = options.reference_input_shape.at(0);
  if (options.embed_probes_at_load) {
    auto embeddings = space->ProbeEmbeddings();
    if (!embeddings.ok()) return embeddings.status();
  }
  const int reference_dim = space->reference_->dim();
  space->reference_dim_ = reference_dim;
  if (options.knowledge_encoder_path.empty()) {
    space->encoder_ = encoder::MakeUntrainedEncoder(reference_dim);
  } else {
    // Its Describe() carries the file's SHA-256: a new file is a new knowledge space.
    auto alignment =
        encoder::LoadTorchScriptKnowledgeEncoder(options.knowledge_encoder_path, reference_dim);
    if (!alignment.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("cannot load the knowledge encoder ",
                                                        options.knowledge_encoder_path, ": ",
                                                        alignment.status().message()));
    }
    space->encoder_ = std::move(*alignment);
  }
  space->id_ = Sha256::Of(absl::StrCat(space->reference_->sha256(), "|", space->probe_set_sha_, "|",
                                       space->encoder_->Describe()))
                   .substr(0, 16);
  spdlog::info("knowledge space {}: probe set {} ({} samples), reference encoder {} ({}-d), {}",
               space->id_, probe_path, space->probe_rows_, encoder_path, reference_dim,
               space->encoder_->Describe());

  const index::IndexOptions index_options = space->IndexOptions();
  space->log_ = std::make_unique<index::IndexLog>(space->index_path_);
  auto loaded = index::VectorIndex::Load(space->index_path_, index_options);
  if (loaded.ok() && (*loaded)->dim() == index_options.dim) {
    space->index_ = std::move(*loaded);
    space->ReplayLog();
  } else {
    if (!loaded.ok() && !absl::IsNotFound(loaded.status())) {
      spdlog::warn("index file {} unusable ({}); rebuilding from stored vectors",
                   space->index_path_, loaded.status().ToString());
    }
    auto fresh = index::VectorIndex::Create(index_options);
    if (!fresh.ok()) return fresh.status();
    space->index_ = std::move(*fresh);
    // A log holds the changes since a snapshot that is gone: an empty snapshot (which also
    // empties the log) is what RebuildIfStale's rebuild, if any, and later changes build on.
    if (absl::Status s = space->Save(); !s.ok()) return s;
  }
  return space;
}

void KnowledgeSpace::ReplayLog() {
  auto replay = log_->ReplayInto(index_.get());
  if (!replay.ok()) {
    spdlog::warn("index log {} unusable ({}); rebuilding from stored vectors", log_->path(),
                 replay.status().ToString());
    auto fresh = index::VectorIndex::Create(IndexOptions());
    if (!fresh.ok()) return;  // the snapshot stays; RebuildIfStale checks it against the store
    index_ = std::move(*fresh);
    // An empty snapshot also empties the log: later changes must not follow the record that
    // does not apply, or every start would stop there again. A failed save is logged by Save;
    // RebuildIfStale (and the next change's Persist) try again.
    Save().IgnoreError();
    return;
  }
  if (replay->applied + replay->skipped_removals > 0) {
    spdlog::info("index {}: {} change(s) replayed from its log", index_path_,
                 replay->applied + replay->skipped_removals);
  }
  if (replay->ignored_bytes > 0) {
    spdlog::warn("index log {}: {} byte(s) at its end ignored ({}); the store decides at start",
                 log_->path(), replay->ignored_bytes, replay->ignored_reason);
  }
}

void KnowledgeSpace::Persist(const std::function<absl::Status()>& append) {
  absl::Status appended = append();
  const int64_t threshold =
      std::max<int64_t>(kMinRecordsBeforeSnapshot, static_cast<int64_t>(index_->size()) / 4);
  if (appended.ok() && log_->records() < threshold) return;
  if (!appended.ok()) {
    spdlog::warn("cannot log an index change ({}); saving the whole index instead",
                 appended.ToString());
  }
  // A failed save is logged by Save and not returned: the files are only a cache of the
  // store's vectors, and the next start rebuilds a stale index (RebuildIfStale).
  Save().IgnoreError();
}

absl::Status KnowledgeSpace::LoadProbeSet(const KnowledgeSpaceOptions& options) {
  const std::string& path = options.probe_set_path;
  const char* hint = " (build the default assets with scripts/make_assets.py, or pass --probe-set)";
  if (options.input_kind == InputKind::kText) {
    std::optional<std::string> content = ReadWholeFile(path);
    if (!content) {
      return absl::FailedPreconditionError(absl::StrCat("cannot read the probe set ", path, hint));
    }
    auto texts = DecodeTextJsonl(path, *content);
    if (!texts.ok() || texts->texts.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot load the text probe set ", path, ": ",
          texts.ok() ? "it holds no text" : texts.status().message(), hint));
    }
    probe_texts_ = std::move(texts->texts);
    probe_rows_ = static_cast<int64_t>(probe_texts_.size());
    probe_set_.shape = {probe_rows_, 0};
  } else {
    // Only the shape now: the samples are loaded on first use (ProbeSet), so that a dock holds
    // no probe set of a kind it has no model of (the audio one is 130 MB).
    auto shape = datasets::ReadNpyShape(path);
    if (!shape.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("cannot load the probe set ", path, ": ",
                                                        shape.status().message(), hint));
    }
    if (absl::Status s = CheckProbeShape(options, path, *shape); !s.ok()) return s;
    probe_rows_ = shape->front();
  }
  probe_set_path_ = path;
  auto probe_sha = Sha256::OfFile(path);
  if (!probe_sha.ok()) return probe_sha.status();
  probe_set_sha_ = *probe_sha;
  return absl::OkStatus();
}

absl::Status KnowledgeSpace::CheckProbeShape(const KnowledgeSpaceOptions& options,
                                             const std::string& path,
                                             const std::vector<int64_t>& shape) {
  const bool audio = options.input_kind == InputKind::kAudio;
  if (audio && shape.size() != 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        "probe set ", path, " must hold audio clips [P, T]; got ", ShapeToString(shape)));
  }
  if (!audio && shape.size() != 4) {
    return absl::FailedPreconditionError(absl::StrCat(
        "probe set ", path, " must hold images [P, C, H, W]; got ", ShapeToString(shape)));
  }
  return absl::OkStatus();
}

absl::StatusOr<const Tensor*> KnowledgeSpace::ProbeSet() const {
  if (is_text()) return &probe_set_;  // [P, 0]: the rows of probe_texts()
  std::call_once(probe_once_, [this] {
    // The file must still be the one the space's id was made from.
    auto sha = Sha256::OfFile(probe_set_path_);
    if (!sha.ok()) {
      probe_status_ = absl::FailedPreconditionError(absl::StrCat(
          "cannot read the probe set ", probe_set_path_, ": ", sha.status().message()));
      return;
    }
    if (*sha != probe_set_sha_) {
      probe_status_ = absl::FailedPreconditionError(absl::StrCat(
          "the probe set ", probe_set_path_, " changed since the dock opened (SHA-256 ",
          sha->substr(0, 12), ", opened as ", probe_set_sha_.substr(0, 12),
          "); restart the server to use the new file"));
      return;
    }
    auto probe = datasets::LoadNpy(probe_set_path_);
    if (!probe.ok()) {
      probe_status_ = absl::FailedPreconditionError(absl::StrCat(
          "cannot load the probe set ", probe_set_path_, ": ", probe.status().message()));
      return;
    }
    probe_set_ = std::move(probe->samples);
  });
  if (!probe_status_.ok()) return probe_status_;
  return &probe_set_;
}

index::IndexOptions KnowledgeSpace::IndexOptions() const {
  index::IndexOptions index_options;
  index_options.dim = encoder_->dim();
  index_options.factory = index_factory_;
  return index_options;
}

absl::StatusOr<Tensor> KnowledgeSpace::EmbedProbeSet() const {
  auto probes = ProbeSet();
  if (!probes.ok()) return probes.status();
  std::lock_guard<std::mutex> lock(reference_mutex_);
  auto embeddings =
      is_text()                            ? reference_->EmbedTexts(probe_texts_)
      : input_kind_ == InputKind::kAudio ? reference_->Embed(FitAudioLength(**probes, audio_length_))
                                           : reference_->Embed(**probes);
  if (!embeddings.ok()) {
    return absl::Status(embeddings.status().code(),
                        absl::StrCat("cannot embed the probe set with the reference encoder: ",
                                     embeddings.status().message()));
  }
  return embeddings;
}

absl::StatusOr<const Tensor*> KnowledgeSpace::ProbeEmbeddings() const {
  std::call_once(embed_once_, [this] {
    // A function of E, the probe set and how samples are fitted to E; the space's id also
    // covers the set encoder, which the embeddings do not depend on.
    const ProbeEmbeddingCache cache(
        probe_cache_dir_, absl::StrCat(reference_->sha256(), "|", probe_set_sha_, "|",
                                       static_cast<int>(input_kind_), "|", audio_length_));
    auto cached = cache.Read(probe_rows_, reference_->dim());
    if (cached.ok()) {
      probe_embeddings_ = *std::move(cached);
      return;
    }
    // The cache only saves time: a bad file is computed again and replaced, with a word.
    if (!absl::IsNotFound(cached.status())) {
      spdlog::warn("probe embedding cache: {}; embedding the probe set again",
                   std::string(cached.status().message()));
    }
    auto embeddings = EmbedProbeSet();
    if (!embeddings.ok()) {
      embed_status_ = embeddings.status();
      return;
    }
    probe_embeddings_ = *std::move(embeddings);
    if (absl::Status s = cache.Write(probe_embeddings_); !s.ok()) {
      spdlog::warn("probe embedding cache: {} (the next process embeds the probe set again)",
                   std::string(s.message()));
    }
  });
  if (!embed_status_.ok()) return embed_status_;
  return &probe_embeddings_;
}

absl::StatusOr<Tensor> KnowledgeSpace::Embed(const Tensor& samples) {
  std::lock_guard<std::mutex> lock(reference_mutex_);
  if (input_kind_ == InputKind::kAudio && samples.shape.size() == 2 && samples.shape[1] != audio_length_) {
    return reference_->Embed(FitAudioLength(samples, audio_length_));
  }
  return reference_->Embed(samples);
}

absl::StatusOr<Tensor> KnowledgeSpace::EmbedTexts(const std::vector<std::string>& texts) {
  std::lock_guard<std::mutex> lock(reference_mutex_);
  return reference_->EmbedTexts(texts);
}

absl::StatusOr<std::vector<float>> KnowledgeSpace::EncodeModel(const ModelRecord& record,
                                                               const Tensor& probe_outputs) const {
  // The grid is selected from a classifier's probe logits, or for a feature extractor from
  // pseudo-logits over clusters of its features (encoder::FeatureGridLogits).
  const Tensor grid_logits = record.spec.kind == ModelKind::kFeatureExtractor
                                 ? encoder::FeatureGridLogits(probe_outputs)
                                 : probe_outputs;
  auto embeddings = ProbeEmbeddings();
  if (!embeddings.ok()) return embeddings.status();
  return encoder_->EncodeModel(encoder::SelectGrid(grid_logits), **embeddings);
}

absl::StatusOr<std::unique_ptr<index::VectorIndex>> KnowledgeSpace::NewIndexOf(
    const VectorList& vectors) const {
  auto fresh = index::VectorIndex::Create(IndexOptions());
  if (!fresh.ok()) return fresh.status();
  if (absl::Status s = (*fresh)->UpsertBatch(vectors); !s.ok()) return s;
  return fresh;
}

absl::Status KnowledgeSpace::RebuildIfStale() {
  auto vectors = probe_data_->Vectors(id_);
  if (!vectors.ok()) return vectors.status();
  if (index_->Fingerprint() == index::VectorIndex::FingerprintOf(*vectors)) return absl::OkStatus();
  auto fresh = NewIndexOf(*vectors);
  if (!fresh.ok()) return fresh.status();
  index_ = std::move(*fresh);
  spdlog::info("rebuilt the stage-1 index from {} stored vectors", vectors->size());
  return Save();
}

absl::Status KnowledgeSpace::Upsert(const std::string& model_id, const std::vector<float>& vector) {
  if (absl::Status s = index_->Upsert(model_id, vector); !s.ok()) return s;
  // The serving version's projected index must not silently miss the model: its error is
  // returned after the file is saved (a probe fails the model with it; a replica's sync logs
  // it and catches up).
  absl::Status serving_status;
  if (const LearningLoop::Serving serving = serving_(); serving.index) {
    serving_status =
        serving.index->Upsert(model_id, serving.ranker->projection().ProjectModel(vector));
    if (!serving_status.ok()) {
      serving_status = absl::Status(
          serving_status.code(),
          absl::StrCat("cannot add model ", model_id, " to the index of trained version ",
                       serving.version, ": ", serving_status.message()));
    }
  }
  Persist([&] { return log_->AppendUpsert(model_id, vector); });
  return serving_status;
}

absl::Status KnowledgeSpace::Remove(const std::string& model_id) {
  absl::Status status;
  if (index_->Contains(model_id)) {
    status.Update(index_->Remove(model_id));
    Persist([&] { return log_->AppendRemove(model_id); });
  }
  if (const LearningLoop::Serving serving = serving_();
      serving.index && serving.index->Contains(model_id)) {
    status.Update(serving.index->Remove(model_id));
  }
  return status;
}

absl::Status KnowledgeSpace::Sync(const std::string& model_id) {
  auto vector = probe_data_->GetVector(model_id, id_);
  if (vector.ok()) return Upsert(model_id, *vector);
  if (!absl::IsNotFound(vector.status())) return vector.status();
  return Remove(model_id);
}

absl::StatusOr<std::vector<std::string>> KnowledgeSpace::CatchUp() {
  auto stored = probe_data_->Vectors(id_);
  if (!stored.ok()) return stored.status();
  const VectorList held = index_->Contents();
  std::map<std::string, const std::vector<float>*> in_index;
  for (const auto& [id, v] : held) in_index[id] = &v;
  VectorList upserts;
  std::set<std::string> in_store;
  for (const auto& [id, v] : *stored) {
    in_store.insert(id);
    auto it = in_index.find(id);
    if (it == in_index.end() || *it->second != v) upserts.emplace_back(id, v);
  }
  std::vector<std::string> removals;
  for (const auto& [id, v] : held) {
    if (!in_store.count(id)) removals.push_back(id);
  }
  std::vector<std::string> changed;
  if (upserts.empty() && removals.empty()) return changed;
  if (absl::Status s = index_->UpsertBatch(upserts); !s.ok()) return s;
  // Every change is attempted; the first error is returned (the next catch-up tries again).
  absl::Status status;
  for (const std::string& id : removals) status.Update(index_->Remove(id));
  const LearningLoop::Serving serving = serving_();
  for (const auto& [id, v] : upserts) {
    changed.push_back(id);
    if (serving.index) {
      status.Update(serving.index->Upsert(id, serving.ranker->projection().ProjectModel(v)));
    }
  }
  for (const std::string& id : removals) {
    changed.push_back(id);
    if (serving.index && serving.index->Contains(id)) status.Update(serving.index->Remove(id));
  }
  if (!status.ok()) return status;
  spdlog::info(
      "index catch-up: {} vectors added or replaced, {} removed (changes made by other "
      "replicas that no notification brought)",
      upserts.size(), removals.size());
  return changed;
}

absl::Status KnowledgeSpace::Save() {
  absl::Status s = index_->Save(index_path_);
  // The log is emptied only once the new snapshot holds its changes.
  if (s.ok()) s = log_->Reset();
  if (!s.ok()) spdlog::error("cannot save index {}: {}", index_path_, s.ToString());
  return s;
}

}  // namespace modeldock::dock
