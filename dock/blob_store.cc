#include "dock/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

// Reads `fd` to its end, hashing it (and copying it to `copy_fd` unless negative), at most
// options.max_bytes_per_second. `*digest` is the hex SHA-256, `*bytes` the length read.
// DATA_LOSS on a read error (EIO: the disk lost it), CANCELLED when options.stop says so.
absl::Status HashFd(int fd, const VerifyOptions& options, int copy_fd, std::string* digest,
                    int64_t* bytes) {
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  const absl::Time start = absl::Now();
  *bytes = 0;
  while (true) {
    if (options.stop && options.stop()) return absl::CancelledError("blob check stopped");
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::DataLossError(absl::StrCat("read error: ", std::strerror(errno)));
    }
    if (n == 0) break;
    hash.Update(buffer.data(), static_cast<size_t>(n));
    *bytes += n;
    for (ssize_t done = 0; copy_fd >= 0 && done < n;) {
      const ssize_t w = ::write(copy_fd, buffer.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot write the copy: ", std::strerror(errno)));
      }
      done += w;
    }
    if (options.max_bytes_per_second > 0) {
      // Sleep until the bytes read so far fit the rate.
      const absl::Time due = start + absl::Seconds(*bytes / options.max_bytes_per_second);
      const absl::Duration wait = due - absl::Now();
      if (wait > absl::ZeroDuration()) std::this_thread::sleep_for(absl::ToChronoNanoseconds(wait));
    }
  }
  *digest = hash.HexDigest();
  return absl::OkStatus();
}

std::string DataLossMessage(const std::string& what) {
  return absl::StrCat("stored file does not match its sha256 (", what, ")");
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

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Create(const std::string& root,
                                                             std::vector<std::string> mirrors) {
  std::error_code ec;
  fs::create_directories(fs::path(root) / "blobs", ec);
  if (!ec) fs::create_directories(fs::path(root) / "tmp", ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create blob store under ", root, ": ", ec.message()));
  }
  return std::unique_ptr<BlobStore>(new BlobStore(root, std::move(mirrors)));
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
  // Reused only if it is still what its name says: a bad copy is replaced by this upload.
  if (*existed && Verify(sha256, -1).ok()) {
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

absl::Status BlobStore::Verify(const std::string& sha256, int64_t size_bytes,
                               const VerifyOptions& options) {
  if (!IsSha256Hex(sha256)) return absl::InvalidArgumentError("blob name is not a SHA-256");
  const std::string path = PathOf(sha256);
  auto bad = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    verified_.erase(sha256);
    ++stats_.bad;
    return absl::DataLossError(DataLossMessage(what));
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.verifications;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return bad(absl::StrCat(path, " is missing"));
    if (error == EIO) return bad(absl::StrCat(path, " cannot be read: ", std::strerror(error)));
    return absl::UnavailableError(
        absl::StrCat("cannot open blob ", path, ": ", std::strerror(error)));
  }
  auto identity_of = [&](FileIdentity* id) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return false;
    *id = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), st.st_size,
           absl::ToUnixNanos(absl::TimeFromTimespec(st.st_mtim))};
    return true;
  };
  FileIdentity before;
  absl::Status status = absl::OkStatus();
  std::string digest;
  int64_t bytes = 0;
  if (!identity_of(&before)) {
    status = absl::UnavailableError(absl::StrCat("cannot stat blob ", path));
  } else if (size_bytes >= 0 && before.size != size_bytes) {
    ::close(fd);
    return bad(absl::StrCat(path, " has ", before.size, " bytes, registered with ", size_bytes,
                            before.size < size_bytes ? ": truncated" : ""));
  } else {
    if (!options.force) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = verified_.find(sha256);
      if (it != verified_.end() && it->second == before) {
        ++stats_.verified_cached;
        ::close(fd);
        return absl::OkStatus();
      }
    }
    status = HashFd(fd, options, -1, &digest, &bytes);
  }
  FileIdentity after;
  const bool unchanged = status.ok() && identity_of(&after) && after == before;
  ::close(fd);
  if (options.hashed_bytes != nullptr) *options.hashed_bytes += bytes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.bytes_hashed += bytes;
  }
  if (absl::IsDataLoss(status)) return bad(absl::StrCat(path, ": ", status.message()));
  if (!status.ok()) return status;
  if (digest != sha256) return bad(absl::StrCat(path, " hashes to ", digest));
  std::lock_guard<std::mutex> lock(mutex_);
  // Changed while it was read (a restore or an adoption renamed over it): check it next time.
  if (unchanged) {
    verified_[sha256] = before;
  } else {
    verified_.erase(sha256);
  }
  return absl::OkStatus();
}

absl::Status BlobStore::CopyIfGood(const std::string& source, const std::string& sha256,
                                   int64_t size_bytes) {
  const int in = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return absl::NotFoundError(absl::StrCat("cannot open ", source));
  const std::string temp = NewTempPath();
  const int out = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    ::close(in);
    return absl::UnavailableError(absl::StrCat("cannot create ", temp, ": ", std::strerror(errno)));
  }
  std::string digest;
  int64_t bytes = 0;
  absl::Status status = HashFd(in, VerifyOptions(), out, &digest, &bytes);
  ::close(in);
  if (status.ok() && ::fsync(out) != 0) {
    status = absl::ResourceExhaustedError(absl::StrCat("fsync failed for ", temp));
  }
  ::close(out);
  if (status.ok() && (digest != sha256 || (size_bytes >= 0 && bytes != size_bytes))) {
    status = absl::DataLossError(DataLossMessage(absl::StrCat(source, " hashes to ", digest)));
  }
  std::error_code ec;
  if (status.ok()) {
    const fs::path target = PathOf(sha256);
    fs::create_directories(target.parent_path(), ec);
    fs::rename(temp, target, ec);
    if (ec) {
      status = absl::InternalError(
          absl::StrCat("cannot move the restored copy into place: ", ec.message()));
    } else {
      status = FsyncDirectory(target.parent_path().string());
    }
  }
  if (!status.ok()) fs::remove(temp, ec);
  return status;
}

absl::StatusOr<std::string> BlobStore::Restore(const std::string& sha256, int64_t size_bytes) {
  if (!IsSha256Hex(sha256)) return absl::InvalidArgumentError("blob name is not a SHA-256");
  std::lock_guard<std::mutex> restoring(restore_mutex_);
  // Another caller may have restored it while this one waited.
  if (Verify(sha256, size_bytes).ok()) {
    return absl::StrCat(PathOf(sha256), " (already restored by another caller)");
  }
  std::vector<std::string> tried;
  for (const std::string& mirror : mirrors_) {
    for (const fs::path& candidate :
         {fs::path(mirror) / "blobs" / sha256.substr(0, 2) / sha256,
          fs::path(mirror) / sha256.substr(0, 2) / sha256, fs::path(mirror) / sha256}) {
      std::error_code ec;
      if (!fs::is_regular_file(candidate, ec)) continue;
      absl::Status copied = CopyIfGood(candidate.string(), sha256, size_bytes);
      VerifyOptions again;
      again.force = true;
      if (copied.ok()) copied = Verify(sha256, size_bytes, again);
      if (copied.ok()) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.restored;
        return candidate.string();
      }
      tried.push_back(absl::StrCat(candidate.string(), ": ", copied.message()));
    }
  }
  if (mirrors_.empty()) return absl::NotFoundError("no mirror directory is configured");
  return absl::NotFoundError(absl::StrCat(
      "no mirror holds a good copy", tried.empty() ? "" : " (", absl::StrJoin(tried, "; "),
      tried.empty() ? "" : ")"));
}

BlobStoreStats BlobStore::Stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace modeldock::dock
