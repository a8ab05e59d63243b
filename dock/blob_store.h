// Content-addressed file store: blobs/<first two hex>/<sha256>. Files are written to tmp/,
// fsynced, then renamed into place, so a blob is either whole or absent.
//
// Several servers may share one root (replicas on a shared directory, e.g. an NFS mount): two
// writers of the same digest write the same bytes, and rename(2) replaces atomically. What one
// server cannot see is another's upload in progress or a blob adopted whose row is not yet
// committed; removals that could hit those take a `min_age` (files modified more recently are
// kept), and Adopt refreshes the modification time of a blob it reuses.
//
// Content is verified on read (issue 28): Verify hashes a blob and compares it with its name
// before the dock hands the file to a worker; a blob verified before and not changed since
// (same device, inode, size and modification time) is not hashed again, so a hot model costs a
// stat(2). Restore copies a good copy from a mirror directory (another replica's blob
// directory, a backup) over a bad or missing blob.
#ifndef MODELDOCK_DOCK_BLOB_STORE_H_
#define MODELDOCK_DOCK_BLOB_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace modeldock::dock {

// How Verify reads a blob.
struct VerifyOptions {
  // Hash the file even if it was verified before and looks unchanged (the scrub: bit rot keeps
  // the modification time).
  bool force = false;
  // Reading speed limit in bytes per second (the scrub's); 0 = as fast as the disk goes.
  double max_bytes_per_second = 0;
  // Polled between 1 MiB chunks: true stops the check with CANCELLED.
  std::function<bool()> stop;
  // When set, the bytes this call hashed are added to it (the scrub's report).
  int64_t* hashed_bytes = nullptr;
};

// Counters since start (exposed in /metrics).
struct BlobStoreStats {
  int64_t verifications = 0;   // Verify calls
  int64_t verified_cached = 0;  // of which answered from the verified-state cache (no hashing)
  int64_t bytes_hashed = 0;
  int64_t bad = 0;             // Verify calls that found a missing, truncated or changed blob
  int64_t restored = 0;        // blobs Restore copied from a mirror
};

class BlobStore {
 public:
  // Creates root/blobs and root/tmp if needed. `mirrors`: directories that may hold good
  // copies of blobs (laid out as root/blobs/ab/<sha256>, or flat <sha256>), read by Restore.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Create(
      const std::string& root, std::vector<std::string> mirrors = {});

  // A fresh path under tmp/ for an upload in progress.
  std::string NewTempPath();
  // Moves a fully written, fsynced temp file into place as `sha256`. If the blob already exists
  // the temp file is removed and *existed is set; the blob's modification time is refreshed
  // first (so that a concurrent Remove with a min_age keeps it), and if it vanished meanwhile
  // the temp file is moved into place after all. An existing blob that fails Verify is replaced
  // by the temp file (*existed is still set: other models share it).
  absl::Status Adopt(const std::string& temp_path, const std::string& sha256, bool* existed);
  bool Has(const std::string& sha256) const;
  std::string PathOf(const std::string& sha256) const;
  // Removes the blob unless it was modified less than `min_age` ago (then *removed is false).
  absl::Status Remove(const std::string& sha256, absl::Duration min_age = absl::ZeroDuration(),
                      bool* removed = nullptr);
  // Every stored digest (for garbage collection of blobs no model references).
  std::vector<std::string> List() const;
  // Removes leftovers of uploads interrupted by a crash: temp files not modified for `min_age`
  // (zero: all of them; a shared root keeps other servers' uploads in progress).
  void ClearTemp(absl::Duration min_age = absl::ZeroDuration());

  // OK if the blob exists, is `size_bytes` long (negative: any length) and hashes to `sha256`;
  // DATA_LOSS "stored file does not match its sha256 (...)" saying what is wrong (missing,
  // truncated, other content) otherwise; CANCELLED when options.stop said so. Unless
  // options.force, a file verified before with the same (device, inode, size, mtime) is not
  // hashed again.
  absl::Status Verify(const std::string& sha256, int64_t size_bytes,
                      const VerifyOptions& options = {});
  // Replaces the blob with the first good copy found in the mirrors (hashed while copied to
  // tmp/, fsynced, renamed over the bad file) and verifies it again. Returns the copy's path;
  // NOT_FOUND when no mirror holds a good copy (or none is configured).
  absl::StatusOr<std::string> Restore(const std::string& sha256, int64_t size_bytes);
  const std::vector<std::string>& mirrors() const { return mirrors_; }
  BlobStoreStats Stats() const;

 private:
  // What identifies a file's content without reading it: if any of these changed, it is hashed
  // again.
  struct FileIdentity {
    uint64_t device = 0, inode = 0;
    int64_t size = 0, mtime_ns = 0;
    bool operator==(const FileIdentity& o) const {
      return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
    }
  };
  BlobStore(std::string root, std::vector<std::string> mirrors)
      : root_(std::move(root)), mirrors_(std::move(mirrors)) {}
  // Copies `source` to a temp file while hashing it; moves it over the blob if it is good.
  absl::Status CopyIfGood(const std::string& source, const std::string& sha256,
                          int64_t size_bytes);

  std::string root_;
  std::vector<std::string> mirrors_;
  mutable std::mutex mutex_;  // guards verified_ and stats_
  std::map<std::string, FileIdentity> verified_;  // by digest
  BlobStoreStats stats_;
  std::mutex restore_mutex_;  // one restore at a time
};

// Writes and fsyncs a whole file (temp + rename): used for small files such as the index.
absl::Status FsyncFile(const std::string& path);
absl::Status FsyncDirectory(const std::string& dir);

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_BLOB_STORE_H_
