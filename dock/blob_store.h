// Content-addressed file store: blobs/<first two hex>/<sha256>. Files are written to tmp/,
// fsynced, then renamed into place, so a blob is either whole or absent.
#ifndef MODELDOCK_DOCK_BLOB_STORE_H_
#define MODELDOCK_DOCK_BLOB_STORE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace modeldock::dock {

class BlobStore {
 public:
  // Creates root/blobs and root/tmp if needed.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Create(const std::string& root);

  // A fresh path under tmp/ for an upload in progress.
  std::string NewTempPath();
  // Moves a fully written, fsynced temp file into place as `sha256`. If the blob already exists
  // the temp file is removed and *existed is set.
  absl::Status Adopt(const std::string& temp_path, const std::string& sha256, bool* existed);
  bool Has(const std::string& sha256) const;
  std::string PathOf(const std::string& sha256) const;
  absl::Status Remove(const std::string& sha256);
  // Every stored digest (for garbage collection of blobs no model references).
  std::vector<std::string> List() const;
  // Removes leftovers of uploads interrupted by a crash.
  void ClearTemp();

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

// Writes and fsyncs a whole file (temp + rename): used for small files such as the index.
absl::Status FsyncFile(const std::string& path);
absl::Status FsyncDirectory(const std::string& dir);

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_BLOB_STORE_H_
