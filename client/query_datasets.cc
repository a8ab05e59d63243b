// Text and audio query datasets as the CLI and the REST API read them (issue 25).
#include "client/query_datasets.h"

#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/audio.h"
#include "common/text_datasets.h"

namespace modeldock::client {

// Whether `path` holds texts: --task text, or by its form (a .jsonl file; a CSV/TSV whose header
// names a `text` column; a folder whose first class folder holds .txt files).
bool IsTextDataset(const std::string& path, const std::string& task_flag) {
  if (!task_flag.empty()) return task_flag == "text";
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string ext = absl::AsciiStrToLower(fs::path(path).extension().string());
  if (ext == ".jsonl") return true;
  if (ext == ".csv" || ext == ".tsv") {
    std::ifstream in(path);
    std::string header;
    std::getline(in, header);
    for (absl::string_view column : absl::StrSplit(header, absl::ByAnyChar(",\t"))) {
      column = absl::StripAsciiWhitespace(column);
      if (column == "text" || column == "\"text\"") return true;
    }
    return false;
  }
  if (!fs::is_directory(path, ec)) return false;
  for (const fs::directory_entry& cls : fs::directory_iterator(path, ec)) {
    if (!cls.is_directory(ec)) continue;
    for (const fs::directory_entry& file : fs::directory_iterator(cls.path(), ec)) {
      if (file.path().extension() == ".txt") return true;
    }
  }
  return false;
}

// A text query dataset (CSV/TSV/JSONL, or a folder of .txt files per class) as the client sends
// it: texts, labels and class names, samples [N, 0].
absl::StatusOr<Dataset> LoadTextQuery(const std::string& path, const std::string& labels,
                                      int64_t max_samples) {
  if (!labels.empty()) {
    return absl::InvalidArgumentError(
        "--labels is for image and tabular data; a text dataset's labels are its 'label' column "
        "(or its class folders)");
  }
  auto text = LoadTextDataset(path);
  if (!text.ok()) return text.status();
  Dataset dataset;
  dataset.texts = std::move(text->texts);
  dataset.labels = std::move(text->labels);
  dataset.class_names = std::move(text->label_names);
  if (max_samples > 0 && static_cast<int64_t>(dataset.texts.size()) > max_samples) {
    dataset.texts.resize(max_samples);
    if (!dataset.labels.empty()) dataset.labels.resize(max_samples);
    dataset.notes.push_back(absl::StrCat("kept the first ", max_samples, " texts"));
  }
  dataset.samples.shape = {static_cast<int64_t>(dataset.texts.size()), 0};
  if (dataset.texts.empty()) return absl::InvalidArgumentError(path + " holds no text");
  return dataset;
}

bool IsAudioDataset(const std::string& path, const std::string& task_flag) {
  if (!task_flag.empty()) return task_flag == "audio";
  return IsAudioFolder(path);
}

absl::StatusOr<Dataset> LoadAudioQuery(const std::string& path, const std::string& labels,
                                       double seconds, int64_t max_samples) {
  const int64_t length = static_cast<int64_t>(seconds * kAudioRate);
  if (!std::filesystem::is_directory(path)) {
    auto dataset = LoadAudioArrays(path, labels, max_samples);
    if (!dataset.ok()) return dataset.status();
    if (length > 0 && dataset->samples.RowSize() != length) {
      dataset->samples = FitAudioLength(dataset->samples, length);
      dataset->notes.push_back(absl::StrCat("made every clip ", length, " samples (", seconds,
                                            " s), centre-cropped or zero-padded"));
    }
    return dataset;
  }
  if (!labels.empty()) {
    return absl::InvalidArgumentError(
        "--labels is for arrays (NPY); an audio folder's labels are its class folders");
  }
  auto dataset = LoadAudioFolder(path, length);
  if (!dataset.ok()) return dataset.status();
  const int64_t rows = dataset->samples.Rows();
  if (max_samples > 0 && rows > max_samples) {
    const int64_t row_size = dataset->samples.RowSize();
    dataset->samples.values.resize(max_samples * row_size);
    dataset->samples.shape[0] = max_samples;
    dataset->labels.resize(max_samples);
    dataset->notes.push_back(absl::StrCat("kept the first ", max_samples, " clips"));
  }
  return dataset;
}

}  // namespace modeldock::client
