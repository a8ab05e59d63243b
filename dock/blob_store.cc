#include "dock/blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace modeldock::dock {
namespace fs = std::filesystem;

absl::Status FsyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", path, " to fsync"));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync failed for ", path));
  return absl::OkStatus();
}

absl::Status FsyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open directory ", dir));
  ::fsync(fd);
  ::close(fd);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Create(const std::string& root) {
  std::error_code ec;
  fs::create_directories(fs::path(root) / "blobs", ec);
  if (!ec) fs::create_directories(fs::path(root) / "tmp", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create blob store under ", root, ": ", ec.message()));
  }
  return std::unique_ptr<BlobStore>(new BlobStore(root));
}

std::string BlobStore::NewTempPath() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  return (fs::path(root_) / "tmp" /
          absl::StrCat("upload-", ::getpid(), "-", counter++, "-", rd()))
      .string();
}

std::string BlobStore::PathOf(const std::string& sha256) const {
  return (fs::path(root_) / "blobs" / sha256.substr(0, 2) / sha256).string();
}

bool BlobStore::Has(const std::string& sha256) const {
  std::error_code ec;
  return fs::exists(PathOf(sha256), ec);
}

absl::Status BlobStore::Adopt(const std::string& temp_path, const std::string& sha256,
                              bool* existed) {
  if (!IsSha256Hex(sha256)) return absl::InvalidArgumentError("blob name is not a SHA-256");
  *existed = Has(sha256);
  std::error_code ec;
  if (*existed) {
    fs::remove(temp_path, ec);
    return absl::OkStatus();
  }
  if (absl::Status s = FsyncFile(temp_path); !s.ok()) return s;
  fs::path target = PathOf(sha256);
  fs::create_directories(target.parent_path(), ec);
  fs::rename(temp_path, target, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot move upload into the blob store: ",
                                            ec.message()));
  }
  return FsyncDirectory(target.parent_path().string());
}

absl::Status BlobStore::Remove(const std::string& sha256) {
  std::error_code ec;
  fs::remove(PathOf(sha256), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove blob ", sha256, ": ", ec.message()));
  return absl::OkStatus();
}

std::vector<std::string> BlobStore::List() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(fs::path(root_) / "blobs", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) out.push_back(it->path().filename().string());
  }
  return out;
}

void BlobStore::ClearTemp() {
  std::error_code ec;
  for (auto& entry : fs::directory_iterator(fs::path(root_) / "tmp", ec)) {
    fs::remove(entry.path(), ec);
  }
}

}  // namespace modeldock::dock
