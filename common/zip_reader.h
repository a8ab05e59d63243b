// A zip archive's central directory and its members (stored or deflated, zip64 too), read from
// the archive's bytes: what .npz files and zipped image folders are. The directory is read
// first and alone, so a caller can refuse an archive by what it declares (member count, sizes,
// paths) before anything is inflated; a member never inflates past its declared size.
#ifndef MODELDOCK_COMMON_ZIP_READER_H_
#define MODELDOCK_COMMON_ZIP_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace modeldock::zip {

// One central directory record.
struct Entry {
  std::string name;           // as stored: '/'-separated, a folder's ends with '/'
  uint64_t method = 0;        // 0 stored, 8 deflate (others are refused when read)
  uint64_t packed_size = 0;   // compressed bytes
  uint64_t size = 0;          // declared uncompressed bytes
  uint64_t local_offset = 0;  // of the member's local header
};

// The directory of the archive `bytes` (named `name` in errors), in stored order; refuses more
// than `max_entries` records before reading any of them. INVALID_ARGUMENT for anything broken.
absl::StatusOr<std::vector<Entry>> ReadDirectory(const std::string& name, const std::string& bytes,
                                                 uint64_t max_entries);

// One member's content: stored bytes, or deflate inflated into exactly entry.size bytes (more or
// fewer is INVALID_ARGUMENT: the directory lied). Refuses a member larger than `max_size`.
absl::StatusOr<std::string> ReadMember(const std::string& name, const std::string& bytes,
                                       const Entry& entry, uint64_t max_size);

}  // namespace modeldock::zip

#endif  // MODELDOCK_COMMON_ZIP_READER_H_
