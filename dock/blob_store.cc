#include "dock/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace modeldock::dock {
namespace fs = std::filesystem;

namespace {

// Whether `path` was modified at least `min_age` ago (false if it cannot be read: keep it).
bool OlderThan(const fs::path& path, absl::Duration min_age) {
  if (min_age <= absl::ZeroDuration()) return true;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  const absl::Time modified = absl::TimeFromTimespec(st.st_mtim);
  return absl::Now() - modified >= min_age;
}

}  // namespace

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
  const std::string target_path = PathOf(sha256);
  // Reuse an existing blob: refresh its time (a replica's Remove with a min_age then keeps it);
  // if it is gone (removed meanwhile), move ours into place after all.
  *existed = ::utimensat(AT_FDCWD, target_path.c_str(), nullptr, 0) == 0;
  std::error_code ec;
  if (*existed) {
    fs::remove(temp_path, ec);
    return absl::OkStatus();
  }
  if (absl::Status s = FsyncFile(temp_path); !s.ok()) return s;
  fs::path target = target_path;
  fs::create_directories(target.parent_path(), ec);
  fs::rename(temp_path, target, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot move upload into the blob store: ",
                                            ec.message()));
  }
  return FsyncDirectory(target.parent_path().string());
}

absl::Status BlobStore::Remove(const std::string& sha256, absl::Duration min_age, bool* removed) {
  if (removed != nullptr) *removed = false;
  const fs::path path = PathOf(sha256);
  if (!OlderThan(path, min_age)) return absl::OkStatus();
  std::error_code ec;
  const bool gone = fs::remove(path, ec);
  if (removed != nullptr) *removed = gone;
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

void BlobStore::ClearTemp(absl::Duration min_age) {
  std::error_code ec;
  for (auto& entry : fs::directory_iterator(fs::path(root_) / "tmp", ec)) {
    if (OlderThan(entry.path(), min_age)) fs::remove(entry.path(), ec);
  }
}

}  // namespace modeldock::dock
