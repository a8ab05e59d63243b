#include "common/text_datasets.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/text_frames.h"
#include "nlohmann/json.hpp"

namespace modeldock {
namespace {

namespace fs = std::filesystem;

// Rows of a delimited table (RFC 4180 quoting). INVALID_ARGUMENT for a quote left open.
absl::StatusOr<std::vector<std::vector<std::string>>> SplitTable(const std::string& name,
                                                                 const std::string& content,
                                                                 char separator) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  size_t i = content.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;  // a UTF-8 byte order mark
  for (; i < content.size(); ++i) {
    const char c = content[i];
    if (quoted) {
      if (c != '"') {
        field += c;
      } else if (i + 1 < content.size() && content[i + 1] == '"') {
        field += '"';
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == '"' && field.empty()) {
      quoted = any = true;
    } else if (c == separator) {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < content.size() && content[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted) return absl::InvalidArgumentError(absl::StrCat(name, ": a quoted field is not closed"));
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

// Labels as indices into their sorted distinct names.
void IndexLabels(const std::vector<std::string>& raw, TextDataset* out) {
  std::map<std::string, int32_t> index;
  for (const std::string& l : raw) index.emplace(l, 0);
  int32_t next = 0;
  for (auto& [label, i] : index) {
    i = next++;
    out->label_names.push_back(label);
  }
  for (const std::string& l : raw) out->labels.push_back(index[l]);
}

absl::Status CheckUtf8(const std::string& name, const std::string& where, const std::string& text) {
  if (int64_t bad = FirstInvalidUtf8(text); bad >= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": ", where, " is not valid UTF-8 at its byte ", bad,
        " (convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

absl::StatusOr<TextDataset> DecodeTextTable(const std::string& name, const std::string& content,
                                            char separator) {
  auto rows = SplitTable(name, content, separator);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no header row"));
  const std::vector<std::string>& header = (*rows)[0];
  const auto find = [&header](const char* column) -> int64_t {
    auto it = std::find(header.begin(), header.end(), column);
    return it == header.end() ? -1 : it - header.begin();
  };
  const int64_t text_col = find("text"), label_col = find("label");
  if (text_col < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": the header has no 'text' column (name the column of texts 'text' and the column "
              "of classes 'label')"));
  }
  TextDataset out;
  std::vector<std::string> raw;
  for (size_t r = 1; r < rows->size(); ++r) {
    const std::vector<std::string>& row = (*rows)[r];
    if (row.size() != header.size()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": row ", r + 1, " has ", row.size(),
                                                     " fields; the header has ", header.size()));
    }
    const std::string where = absl::StrCat("the text of row ", r + 1);
    if (absl::Status s = CheckUtf8(name, where, row[text_col]); !s.ok()) return s;
    out.texts.push_back(row[text_col]);
    if (label_col >= 0) raw.push_back(row[label_col]);
  }
  if (out.texts.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no rows"));
  if (label_col >= 0) IndexLabels(raw, &out);
  return out;
}

absl::StatusOr<TextDataset> DecodeTextJsonl(const std::string& name, const std::string& content) {
  TextDataset out;
  std::vector<std::string> raw;
  std::istringstream in(content);
  std::string line;
  int line_no = 0;
  bool labelled = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const std::string where = absl::StrCat(name, ": line ", line_no);
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " is not a JSON object with a string \"text\""));
    }
    const bool has_label = j.contains("label");
    if (out.texts.empty()) labelled = has_label;
    if (has_label != labelled) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, (labelled ? " has no" : " has a"), " \"label\", unlike line 1"));
    }
    if (has_label) {
      const nlohmann::json& l = j["label"];
      if (!l.is_string() && !l.is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": \"label\" is not a string or an integer"));
      }
      raw.push_back(l.is_string() ? l.get<std::string>() : std::to_string(l.get<int64_t>()));
    }
    out.texts.push_back(j["text"].get<std::string>());  // the parser checked the UTF-8
  }
  if (out.texts.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no lines"));
  if (labelled) IndexLabels(raw, &out);
  return out;
}

absl::StatusOr<TextDataset> LoadTextFolder(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> classes;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory()) classes.push_back(e.path());
  }
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  std::sort(classes.begin(), classes.end());
  TextDataset out;
  for (const fs::path& c : classes) {
    std::vector<fs::path> files;
    for (const fs::directory_entry& e : fs::directory_iterator(c, ec)) {
      if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) continue;
    out.label_names.push_back(c.filename().string());
    for (const fs::path& f : files) {
      auto text = ReadWhole(f.string());
      if (!text.ok()) return text.status();
      if (absl::Status s = CheckUtf8(f.string(), "the file", *text); !s.ok()) return s;
      out.texts.push_back(std::move(*text));
      out.labels.push_back(static_cast<int32_t>(out.label_names.size() - 1));
    }
  }
  if (out.texts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": no DIR/<class>/*.txt files (a text folder holds one sub-folder of .txt files per "
             "class)"));
  }
  return out;
}

absl::StatusOr<TextDataset> LoadTextDataset(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return LoadTextFolder(path);
  auto content = ReadWhole(path);
  if (!content.ok()) return content.status();
  if (absl::EndsWith(path, ".csv")) return DecodeTextTable(path, *content, ',');
  if (absl::EndsWith(path, ".tsv")) return DecodeTextTable(path, *content, '\t');
  if (absl::EndsWith(path, ".jsonl") || absl::EndsWith(path, ".ndjson")) {
    return DecodeTextJsonl(path, *content);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": a text dataset is a .csv, .tsv or .jsonl file or a folder of .txt files per class"));
}

}  // namespace modeldock
