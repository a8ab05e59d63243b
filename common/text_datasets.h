// Text query datasets as users keep them (issue 25): a CSV, TSV or JSONL file with a `text` and
// a `label` column, or a folder with one sub-folder of .txt files per class. Every text must be
// UTF-8; errors name the file, the row (or file) and what is wrong.
#ifndef MODELDOCK_COMMON_TEXT_DATASETS_H_
#define MODELDOCK_COMMON_TEXT_DATASETS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace modeldock {

struct TextDataset {
  std::vector<std::string> texts;
  // Index into label_names per text; empty when the data has no label column.
  std::vector<int32_t> labels;
  // The distinct labels, sorted by byte order (folder names for a folder).
  std::vector<std::string> label_names;
};

// A table with a header row naming a `text` column and optionally a `label` column (any order,
// other columns ignored). `separator` ',' (CSV) or '\t' (TSV); fields may be double-quoted
// (RFC 4180: "" inside quotes is a quote, quoted fields may span lines). `name` labels errors.
absl::StatusOr<TextDataset> DecodeTextTable(const std::string& name, const std::string& content,
                                            char separator);
// JSON Lines: one object per non-empty line with a string "text" and optionally a "label"
// (string or integer; every line alike).
absl::StatusOr<TextDataset> DecodeTextJsonl(const std::string& name, const std::string& content);
// DIR/<class>/*.txt: one text per file, classes are the sub-folders in byte order.
absl::StatusOr<TextDataset> LoadTextFolder(const std::string& dir);
// By path: a directory is a text folder; .csv, .tsv and .jsonl (or .json lines) by extension.
absl::StatusOr<TextDataset> LoadTextDataset(const std::string& path);

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_TEXT_DATASETS_H_
