// Internal: the dock's knowledge spaces, one per input kind (docs/ARCHITECTURE.md, "Knowledge
// spaces"). Each space has its own probe set, reference encoder E, FAISS index and stage-1 probe
// features; a model joins the space of its declared input shape (channels and largest side).
// The spaces come from the asset directory's manifest spaces.json (scripts/make_assets.py); an
// older asset directory without one has the single grey space of its probe_set_28.npy and
// reference_encoder.pt. The first space is the primary one: the learning loop's trained versions
// and outcome records live in it.
#ifndef MODELDOCK_DOCK_KNOWLEDGE_SPACES_H_
#define MODELDOCK_DOCK_KNOWLEDGE_SPACES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dock/knowledge_space.h"

namespace modeldock::dock {

// One entry of spaces.json: which models a space holds, and its assets.
struct SpaceSpec {
  std::string name;  // "grey", "colour-small", "colour-large", "text"
  std::string description;
  int64_t channels = 1;  // 0 for the text and audio spaces (options.input_kind)
  // A model with `channels` channels whose largest side S has min_side <= S <= max_side.
  int64_t min_side = 1;
  int64_t max_side = 4096;
  KnowledgeSpaceOptions options;  // probe set, E and its input shape (paths made absolute)
};

// Whether a model (or query) of per-sample shape [C, H, W] belongs to `spec`'s space.
bool SpaceAccepts(const SpaceSpec& spec, const std::vector<int64_t>& sample_shape);

// The spaces of `asset_dir` (spaces.json, or the legacy grey space without one), with the
// per-space overrides of the options applied:
//   probe_set_path / reference_encoder_path: "PATH" replaces the first space's file, and
//   "NAME=PATH[,NAME=PATH...]" the named spaces' (an unknown name is INVALID_ARGUMENT);
//   reference_input_shape applies to the first space when its encoder is overridden or there
//   is no manifest; knowledge_encoder_path (a trained alignment) to the first space only.
// Index files: data_dir/index/knowledge.index for the first space (as before spaces existed),
// data_dir/index/knowledge-NAME.index for the others.
struct SpaceOverrides {
  std::string probe_set_path;
  std::string reference_encoder_path;
  std::vector<int64_t> reference_input_shape;
  std::string knowledge_encoder_path;
  std::string index_factory = "Flat";
  std::string data_dir;
  std::string probe_cache_dir;  // empty = data_dir/cache
};
absl::StatusOr<std::vector<SpaceSpec>> ReadSpaces(const std::string& asset_dir,
                                                  const SpaceOverrides& overrides);

// The loaded spaces. The container is immutable after Load; each space has its own locking
// (knowledge_space.h: its changes are made under the dock's registry lock).
class KnowledgeSpaces {
 public:
  static absl::StatusOr<std::unique_ptr<KnowledgeSpaces>> Load(
      const std::vector<SpaceSpec>& specs, ProbeDataTable* probe_data,
      const KnowledgeSpace::ServingFn& serving);

  // The space a model of this per-sample shape joins; nullptr when none does (tabular models,
  // or an image kind no space covers: such models are scored in stage 2 only).
  KnowledgeSpace* For(const std::vector<int64_t>& sample_shape) const;
  // The first space of this input kind (input_kind in spaces.json); nullptr when none.
  KnowledgeSpace* ForKind(InputKind kind) const;
  // The space of a model or query of this task: that of its per-sample shape for images, the
  // text or audio space for text or audio; nullptr for tabular and for kinds no space covers.
  KnowledgeSpace* ForTask(TaskKind task, const std::vector<int64_t>& sample_shape) const;
  KnowledgeSpace* ForModel(const ModelRecord& record) const {
    return ForTask(record.spec.task, record.spec.input_shape);
  }
  const SpaceSpec& SpecOf(const KnowledgeSpace* space) const;
  // The first space of the manifest: the learning loop's.
  KnowledgeSpace* primary() const { return spaces_.front().get(); }
  const std::vector<std::unique_ptr<KnowledgeSpace>>& all() const { return spaces_; }
  // "grey 3f2a.. (4250 probes), colour-small ..." for logs and stats.
  std::string Describe() const;

 private:
  KnowledgeSpaces() = default;
  std::vector<SpaceSpec> specs_;
  std::vector<std::unique_ptr<KnowledgeSpace>> spaces_;  // parallel to specs_
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_KNOWLEDGE_SPACES_H_
