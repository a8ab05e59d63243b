// Content-addressed file store: blobs/<first two hex>/<sha256>. Files are written to tmp/,
// fsynced, then renamed into place, so a blob is either whole or absent.
//
// Several servers may share one root (replicas on a shared directory, e.g. an NFS mount): two
// writers of the same digest write the same bytes, and rename(2) replaces atomically. What one
// server cannot see is another's upload in progress or a blob adopted whose row is not yet
// committed; removals that could hit those take a `min_age` (files modified more recently are
// kept), and Adopt refreshes the modification time of a blob it reuses.
#ifndef MODELDOCK_DOCK_BLOB_STORE_H_
#define MODELDOCK_DOCK_BLOB_STORE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace modeldock::dock {

class BlobStore {
 public:
  // Creates root/blobs and root/tmp if needed.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Create(const std::string& root);

  // A fresh path under tmp/ for an upload in progress.
  std::string NewTempPath();
  // Moves a fully written, fsynced temp file into place as `sha256`. If the blob already exists
  // the temp file is removed and *existed is set; the blob's modification time is refreshed
  // first (so that a concurrent Remove with a min_age keeps it), and if it vanished meanwhile
  // the temp file is moved into place after all.
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

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

// Writes and fsyncs a whole file (temp + rename): used for small files such as the index.
absl::Status FsyncFile(const std::string& path);
absl::Status FsyncDirectory(const std::string& dir);

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_BLOB_STORE_H_
