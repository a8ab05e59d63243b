#include "dock/knowledge_spaces.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace fs = std::filesystem;
namespace {

constexpr char kManifest[] = "spaces.json";

// An older asset directory (or a hand-made one): the grey space of its two files.
SpaceSpec LegacyGreySpace(const std::string& asset_dir) {
  SpaceSpec grey;
  grey.name = "grey";
  grey.description = "grey images (the asset directory has no spaces.json)";
  grey.channels = 1;
  grey.options.probe_set_path = (fs::path(asset_dir) / "probe_set_28.npy").string();
  grey.options.reference_encoder_path = (fs::path(asset_dir) / "reference_encoder.pt").string();
  grey.options.reference_input_shape = {1, 28, 28};
  return grey;
}

absl::StatusOr<std::vector<SpaceSpec>> ParseManifest(const std::string& asset_dir,
                                                     const std::string& text) {
  const std::string where = (fs::path(asset_dir) / kManifest).string();
  std::vector<SpaceSpec> specs;
  try {
    const nlohmann::json manifest = nlohmann::json::parse(text);
    for (const nlohmann::json& entry : manifest.at("spaces")) {
      SpaceSpec spec;
      spec.name = entry.at("name").get<std::string>();
      spec.description = entry.value("description", "");
      auto in_dir = [&](const char* key) {
        return (fs::path(asset_dir) / entry.at(key).get<std::string>()).string();
      };
      spec.options.probe_set_path = in_dir("probe_set");
      spec.options.reference_encoder_path = in_dir("reference_encoder");
      const std::string kind = entry.value("input_kind", "image");
      if (kind == "text") {
        // Texts have no channels or sides: every text model joins the space.
        spec.options.input_kind = InputKind::kText;
        spec.channels = 0;
        spec.options.reference_input_shape.clear();
      } else if (kind == "audio") {
        // Clips of 16 kHz mono: every audio model joins the space; E takes [T].
        spec.options.input_kind = InputKind::kAudio;
        spec.channels = 0;
        spec.options.reference_input_shape =
            entry.at("reference_input_shape").get<std::vector<int64_t>>();
      } else if (kind == "image") {
        spec.channels = entry.at("channels").get<int64_t>();
        spec.min_side = entry.value("min_side", int64_t{1});
        spec.max_side = entry.value("max_side", int64_t{4096});
        spec.options.reference_input_shape =
            entry.at("reference_input_shape").get<std::vector<int64_t>>();
      } else {
        return absl::FailedPreconditionError(absl::StrCat(
            where, ": space '", spec.name, "' has input_kind '", kind, "' (image, text or audio)"));
      }
      specs.push_back(std::move(spec));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the knowledge-space manifest ", where, ": ", e.what()));
  }
  if (specs.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(where, " lists no knowledge space"));
  }
  std::map<std::string, int> names;
  for (const SpaceSpec& s : specs) {
    if (s.name.empty() || ++names[s.name] > 1) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": space names must be unique and non-empty ('", s.name, "')"));
    }
    if (s.options.input_kind == InputKind::kText) continue;
    if (s.options.input_kind == InputKind::kAudio) {
      if (s.options.reference_input_shape.size() != 1) {
        return absl::FailedPreconditionError(absl::StrCat(
            where, ": audio space '", s.name, "' needs reference_input_shape [T]"));
      }
      continue;
    }
    if (s.options.reference_input_shape.size() != 3 ||
        s.options.reference_input_shape[0] != s.channels || s.min_side > s.max_side) {
      return absl::FailedPreconditionError(absl::StrCat(
          where, ": space '", s.name, "' needs reference_input_shape [C, H, W] with C = its ",
          "channels, and min_side <= max_side"));
    }
  }
  return specs;
}

// "PATH" -> the first space's; "NAME=PATH,NAME=PATH" -> the named spaces'.
absl::Status ApplyPathOverride(const std::string& value, const char* flag,
                               std::string KnowledgeSpaceOptions::*field,
                               std::vector<SpaceSpec>* specs) {
  if (value.empty()) return absl::OkStatus();
  const bool named = value.find('=') != std::string::npos;
  if (!named) {
    specs->front().options.*field = value;
    return absl::OkStatus();
  }
  for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    auto it = std::find_if(specs->begin(), specs->end(),
                           [&](const SpaceSpec& s) { return s.name == kv.first; });
    if (it == specs->end()) {
      std::string known;
      for (const SpaceSpec& s : *specs) absl::StrAppend(&known, known.empty() ? "" : ", ", s.name);
      return absl::InvalidArgumentError(absl::StrCat(flag, " names knowledge space '", kv.first,
                                                     "', which the assets do not have (", known,
                                                     ")"));
    }
    it->options.*field = kv.second;
  }
  return absl::OkStatus();
}

}  // namespace

bool SpaceAccepts(const SpaceSpec& spec, const std::vector<int64_t>& sample_shape) {
  if (spec.options.input_kind != InputKind::kImage) return false;
  if (sample_shape.size() != 3 || sample_shape[0] != spec.channels) return false;
  const int64_t side = std::max(sample_shape[1], sample_shape[2]);
  return spec.min_side <= side && side <= spec.max_side;
}

absl::StatusOr<std::vector<SpaceSpec>> ReadSpaces(const std::string& asset_dir,
                                                  const SpaceOverrides& overrides) {
  std::vector<SpaceSpec> specs;
  const bool has_manifest = fs::exists(fs::path(asset_dir) / kManifest);
  if (has_manifest) {
    std::optional<std::string> text = ReadWholeFile((fs::path(asset_dir) / kManifest).string());
    if (!text) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read ", (fs::path(asset_dir) / kManifest).string()));
    }
    auto parsed = ParseManifest(asset_dir, *text);
    if (!parsed.ok()) return parsed.status();
    specs = *std::move(parsed);
  } else {
    specs.push_back(LegacyGreySpace(asset_dir));
  }
  if (absl::Status s = ApplyPathOverride(overrides.probe_set_path, "--probe-set",
                                         &KnowledgeSpaceOptions::probe_set_path, &specs);
      !s.ok()) {
    return s;
  }
  const std::string primary_encoder = specs.front().options.reference_encoder_path;
  if (absl::Status s = ApplyPathOverride(overrides.reference_encoder_path, "--reference-encoder",
                                         &KnowledgeSpaceOptions::reference_encoder_path, &specs);
      !s.ok()) {
    return s;
  }
  const bool primary_encoder_replaced =
      specs.front().options.reference_encoder_path != primary_encoder;
  if (!overrides.reference_input_shape.empty() && (!has_manifest || primary_encoder_replaced)) {
    specs.front().options.reference_input_shape = overrides.reference_input_shape;
  }
  specs.front().options.knowledge_encoder_path = overrides.knowledge_encoder_path;
  for (size_t i = 0; i < specs.size(); ++i) {
    SpaceSpec& s = specs[i];
    s.options.index_factory = overrides.index_factory;
    const std::string file =
        i == 0 ? "knowledge.index" : absl::StrCat("knowledge-", s.name, ".index");
    s.options.index_path = (fs::path(overrides.data_dir) / "index" / file).string();
    s.options.probe_cache_dir = overrides.probe_cache_dir.empty()
                                    ? (fs::path(overrides.data_dir) / "cache").string()
                                    : overrides.probe_cache_dir;
  }
  return specs;
}

absl::StatusOr<std::unique_ptr<KnowledgeSpaces>> KnowledgeSpaces::Load(
    const std::vector<SpaceSpec>& specs, ProbeDataTable* probe_data,
    const KnowledgeSpace::ServingFn& serving) {
  std::unique_ptr<KnowledgeSpaces> spaces(new KnowledgeSpaces());
  for (size_t i = 0; i < specs.size(); ++i) {
    // Only the primary space follows the learning loop's serving version.
    KnowledgeSpace::ServingFn space_serving =
        i == 0 ? serving : KnowledgeSpace::ServingFn([] { return LearningLoop::Serving(); });
    // Every space embeds its probe set on first use (the first model probed or vector rebuilt
    // in it, or the first query): a dock opens in a second instead of paying E on thousands of
    // probes it may not need yet (the first image query of a fresh server takes ~1 s longer).
    KnowledgeSpaceOptions options = specs[i].options;
    options.embed_probes_at_load = false;
    auto space = KnowledgeSpace::Load(options, probe_data, space_serving);
    if (!space.ok()) {
      return absl::Status(space.status().code(), absl::StrCat("knowledge space '", specs[i].name,
                                                              "': ", space.status().message()));
    }
    spaces->spaces_.push_back(*std::move(space));
  }
  spaces->specs_ = specs;
  return spaces;
}

KnowledgeSpace* KnowledgeSpaces::For(const std::vector<int64_t>& sample_shape) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (SpaceAccepts(specs_[i], sample_shape)) return spaces_[i].get();
  }
  return nullptr;
}

KnowledgeSpace* KnowledgeSpaces::ForKind(InputKind kind) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].options.input_kind == kind) return spaces_[i].get();
  }
  return nullptr;
}

KnowledgeSpace* KnowledgeSpaces::ForTask(TaskKind task,
                                         const std::vector<int64_t>& sample_shape) const {
  switch (task) {
    case TaskKind::kImageClassification:
      return For(sample_shape);
    case TaskKind::kTextClassification:
      return ForKind(InputKind::kText);
    case TaskKind::kAudioClassification:
      return ForKind(InputKind::kAudio);
    default:
      return nullptr;  // tabular: no probe set
  }
}

const SpaceSpec& KnowledgeSpaces::SpecOf(const KnowledgeSpace* space) const {
  for (size_t i = 0; i < spaces_.size(); ++i) {
    if (spaces_[i].get() == space) return specs_[i];
  }
  return specs_.front();  // not reached: every space is one of ours
}

std::string KnowledgeSpaces::Describe() const {
  std::string out;
  for (size_t i = 0; i < spaces_.size(); ++i) {
    absl::StrAppend(&out, i ? ", " : "", specs_[i].name, " ", spaces_[i]->id(), " (",
                    spaces_[i]->probe_rows(), " probes, ", spaces_[i]->index()->size(),
                    " vectors)");
  }
  return out;
}

}  // namespace modeldock::dock
