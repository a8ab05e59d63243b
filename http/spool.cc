#include "http/spool.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace modeldock::http {
namespace {

// ".npy", ".csv.gz": what follows the first '.' of the uploaded file's base name, when it is
// short and plain; "" otherwise.
std::string ExtensionOf(const std::string& filename) {
  const size_t slash = filename.find_last_of("/\\");
  const std::string base = slash == std::string::npos ? filename : filename.substr(slash + 1);
  const size_t dot = base.find('.');
  if (dot == std::string::npos || base.size() - dot > 16) return "";
  const std::string ext = base.substr(dot);
  for (char c : ext) {
    const bool plain = c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9');
    if (!plain) return "";
  }
  return ext;
}

}  // namespace

Spool::Spool(std::string spool_dir, std::set<std::string> file_parts)
    : file_parts_(std::move(file_parts)) {
  std::string pattern = (std::filesystem::path(spool_dir) / "upload-XXXXXX").string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) != nullptr) dir_ = buffer.data();
}

Spool::~Spool() {
  if (dir_.empty()) return;
  std::error_code error;
  std::filesystem::remove_all(dir_, error);
  if (error) spdlog::warn("HTTP: cannot remove upload directory {}: {}", dir_, error.message());
}

absl::Status Spool::Read(const httplib::Request& request, const httplib::ContentReader& reader) {
  if (!request.is_multipart_form_data()) {
    return absl::InvalidArgumentError("the body must be multipart/form-data (curl -F)");
  }
  if (dir_.empty()) return absl::InternalError("cannot create an upload directory");
  absl::Status error;
  std::FILE* file = nullptr;
  Part* current = nullptr;
  auto close_file = [&] {
    if (file != nullptr && std::fclose(file) != 0 && error.ok()) {
      error = absl::InternalError("cannot write an upload to disk");
    }
    file = nullptr;
  };
  const bool read = reader(
      [&](const httplib::MultipartFormData& header) {
        close_file();
        if (!error.ok()) return false;
        if (header.name.empty() || parts_.count(header.name) > 0) {
          error = absl::InvalidArgumentError(
              absl::StrCat("multipart part '", header.name, "' is unnamed or sent twice"));
          return false;
        }
        current = &parts_[header.name];
        if (file_parts_.count(header.name) > 0) {
          current->path = (std::filesystem::path(dir_) /
                           absl::StrCat(header.name, ExtensionOf(header.filename)))
                              .string();
          file = std::fopen(current->path.c_str(), "wb");
          if (file == nullptr) {
            error = absl::InternalError("cannot write an upload to disk");
            return false;
          }
        }
        return true;
      },
      [&](const char* data, size_t length) {
        if (current == nullptr) return false;
        current->size += static_cast<int64_t>(length);
        if (file != nullptr) {
          if (std::fwrite(data, 1, length, file) != length) {
            error = absl::InternalError("cannot write an upload to disk");
            return false;
          }
          return true;
        }
        if (current->size > kMaxSmallPartBytes) {
          error = absl::InvalidArgumentError(
              absl::StrCat("a form field may hold at most ", kMaxSmallPartBytes, " bytes"));
          return false;
        }
        current->text.append(data, length);
        return true;
      });
  close_file();
  if (!error.ok()) return error;
  if (!read) return absl::InvalidArgumentError("malformed or truncated multipart body");
  return absl::OkStatus();
}

bool Spool::Has(const std::string& part) const { return parts_.count(part) > 0; }

std::string Spool::Path(const std::string& part) const {
  auto it = parts_.find(part);
  return it == parts_.end() ? "" : it->second.path;
}

int64_t Spool::Size(const std::string& part) const {
  auto it = parts_.find(part);
  return it == parts_.end() ? 0 : it->second.size;
}

std::string Spool::Text(const std::string& part) const {
  auto it = parts_.find(part);
  return it == parts_.end() ? "" : it->second.text;
}

}  // namespace modeldock::http
