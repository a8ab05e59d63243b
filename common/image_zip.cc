// An image folder sent as a zip archive (the `dataset` part of POST /v1/recommend, or
// `modeldock recommend photos.zip`): its central directory is read and checked first (member
// count, declared sizes, paths), then only the images are inflated, one at a time, each into
// its declared size.
#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/datasets.h"
#include "common/files.h"
#include "common/zip_reader.h"

namespace modeldock::datasets {
namespace {

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

std::string Mib(uint64_t bytes) {
  return bytes >= (uint64_t{1} << 30)
             ? absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (uint64_t{1} << 30))
             : absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

// A member's path as components ('\' read as '/', "." and empty components dropped), or the
// reason it may not be unpacked: absolute, or with "..".
absl::StatusOr<std::vector<std::string>> PathOf(const std::string& zip_path,
                                                const std::string& name) {
  std::string path = name;
  std::replace(path.begin(), path.end(), '\\', '/');
  const bool drive = path.size() >= 2 && path[1] == ':' &&
                     std::isalpha(static_cast<unsigned char>(path[0]));
  if (!path.empty() && (path[0] == '/' || drive)) {
    return Bad(zip_path, absl::StrCat("member '", name, "' has an absolute path; a zipped image "
                                      "folder holds CLASS/IMAGE paths only (zip the folder from "
                                      "inside it, or with `zip -r photos.zip photos`)"));
  }
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return Bad(zip_path, absl::StrCat("member '", name, "' has '..' in its path; a zipped "
                                        "image folder holds CLASS/IMAGE paths only"));
    }
    if (!part.empty() && part != ".") parts.emplace_back(part);
  }
  return parts;
}

bool Hidden(const std::vector<std::string>& parts) {
  for (const std::string& part : parts) {
    if (part[0] == '.' || part == "__MACOSX") return true;
  }
  return false;
}

// The declared sizes against `limits`, before anything is inflated.
absl::Status CheckSizes(const std::string& path, const std::vector<zip::Entry>& entries,
                        const ImageZipLimits& limits) {
  uint64_t total = 0;
  for (const zip::Entry& entry : entries) {
    if (entry.size > limits.max_member_bytes) {
      return Bad(path, absl::StrCat("member '", entry.name, "' would unpack to ", Mib(entry.size),
                                    " (", entry.size, " bytes, as the zip's directory declares); "
                                    "one image may be at most ", Mib(limits.max_member_bytes),
                                    ": leave it out or make it smaller"));
    }
    total += entry.size;
    if (total > limits.max_total_bytes) {
      return Bad(path, absl::StrCat("the zip's members would unpack to more than ",
                                    Mib(limits.max_total_bytes), " (its directory declares ",
                                    entries.size(), " members); zip fewer or smaller images, or "
                                    "split the folder into several queries"));
    }
  }
  return absl::OkStatus();
}

struct Plan {
  std::vector<std::string> class_names;
  std::vector<ImageFile> files;
  std::vector<size_t> entry_of;  // files[i] is entries[entry_of[i]]
};

// Class folders and images of the directory, as LoadImageFolder lists a folder.
absl::StatusOr<Plan> PlanImages(const std::string& path, const std::vector<zip::Entry>& entries) {
  struct Kept {
    std::vector<std::string> parts;
    bool folder;
    size_t entry;
  };
  std::vector<Kept> kept;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto parts = PathOf(path, entries[i].name);
    if (!parts.ok()) return parts.status();
    if (parts->empty() || Hidden(*parts)) continue;
    kept.push_back({*std::move(parts), entries[i].name.back() == '/', i});
  }
  // Everything under one top folder with the images two levels down: that folder is the root.
  std::optional<std::string> top;
  bool one_top = true, any_image = false;
  for (const Kept& k : kept) {
    if (k.folder || !IsImageFileName(k.parts.back())) continue;
    any_image = true;
    if (!top) top = k.parts[0];
    one_top = one_top && k.parts.size() == 3 && k.parts[0] == *top;
  }
  if (any_image && one_top) {
    for (Kept& k : kept) {
      if (k.parts[0] == *top) k.parts.erase(k.parts.begin());
    }
  }
  std::set<std::string> classes;
  std::map<std::string, std::vector<std::pair<std::string, size_t>>> images;  // class -> files
  for (const Kept& k : kept) {
    if (k.parts.empty()) continue;
    if (k.folder || k.parts.size() >= 2) classes.insert(k.parts[0]);
    if (k.folder || !IsImageFileName(k.parts.back()) || k.parts.size() < 2) continue;
    if (k.parts.size() > 2) {
      return Bad(path, absl::StrCat("image '", entries[k.entry].name, "' is nested deeper than "
                                    "CLASS/IMAGE; a zipped image folder holds one folder per "
                                    "class with the images directly inside it"));
    }
    images[k.parts[0]].emplace_back(k.parts[1], k.entry);
  }
  if (classes.empty()) {
    return Bad(path, "holds no class folders: zip a folder with one sub-folder per class, the "
                     "images inside them (CLASS/IMAGE)");
  }
  Plan plan;
  plan.class_names.assign(classes.begin(), classes.end());
  for (size_t c = 0; c < plan.class_names.size(); ++c) {
    auto& files = images[plan.class_names[c]];
    std::sort(files.begin(), files.end());
    for (const auto& [file, entry] : files) {
      plan.files.push_back({absl::StrCat(path, ":", entries[entry].name), static_cast<int32_t>(c)});
      plan.entry_of.push_back(entry);
    }
  }
  return plan;
}

absl::StatusOr<std::string> ReadArchive(const std::string& path) {
  std::optional<std::string> bytes = ReadWholeFile(path);
  if (!bytes) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  return *std::move(bytes);
}

}  // namespace

absl::StatusOr<bool> IsImageFolderZip(const std::string& path) {
  auto bytes = ReadArchive(path);
  if (!bytes.ok()) return bytes.status();
  auto entries = zip::ReadDirectory(path, *bytes, ImageZipLimits().max_members);
  if (!entries.ok()) return entries.status();
  for (const zip::Entry& entry : *entries) {
    if (absl::EndsWith(entry.name, ".npy")) return false;
  }
  return true;
}

absl::StatusOr<Dataset> LoadImageFolderZip(const std::string& path, const LoadOptions& options,
                                           const ImageZipLimits& limits) {
  auto bytes = ReadArchive(path);
  if (!bytes.ok()) return bytes.status();
  auto entries = zip::ReadDirectory(path, *bytes, limits.max_members);
  if (!entries.ok()) return entries.status();
  if (absl::Status s = CheckSizes(path, *entries, limits); !s.ok()) return s;
  auto plan = PlanImages(path, *entries);
  if (!plan.ok()) return plan.status();
  const std::string& archive = *bytes;
  const std::vector<zip::Entry>& directory = *entries;
  const std::vector<size_t>& entry_of = plan->entry_of;
  return DecodeImageFiles(
      path, std::move(plan->class_names), std::move(plan->files),
      [&](size_t i) {
        return zip::ReadMember(path, archive, directory[entry_of[i]], limits.max_member_bytes);
      },
      options);
}

}  // namespace modeldock::datasets
