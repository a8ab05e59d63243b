#include "common/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace modeldock::zip {
namespace {

absl::Status Bad(const std::string& name, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", what));
}

// Little-endian fields of zip records, bounds-checked by the callers.
uint64_t Le(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

// Zip64 extra field (id 1) of the directory record whose extra bytes are [begin, end): the
// 8-byte values of the fields marked 0xFFFFFFFF, in this order.
void ReadZip64Extra(const std::string& b, size_t begin, size_t end, Entry* entry) {
  for (size_t x = begin; x + 4 <= end;) {
    const uint64_t id = Le(b, x, 2), len = Le(b, x + 2, 2);
    if (x + 4 + len > end) break;
    if (id == 0x0001) {
      size_t f = x + 4;
      auto next = [&](uint64_t* v) {
        if (*v == 0xFFFFFFFF && f + 8 <= x + 4 + len) {
          *v = Le(b, f, 8);
          f += 8;
        }
      };
      next(&entry->size);
      next(&entry->packed_size);
      next(&entry->local_offset);
    }
    x += 4 + len;
  }
}

}  // namespace

absl::StatusOr<std::vector<Entry>> ReadDirectory(const std::string& name, const std::string& b,
                                                 uint64_t max_entries) {
  // End of central directory: the last signature in the final 64 KiB + 22 bytes.
  if (b.size() < 22) return Bad(name, "is too short for a zip archive");
  size_t eocd = std::string::npos;
  for (size_t i = b.size() - 22 + 1; i-- > 0 && b.size() - i <= 65557;) {
    if (Le(b, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) return Bad(name, "has no zip central directory");
  uint64_t entries = Le(b, eocd + 10, 2), cd_size = Le(b, eocd + 12, 4),
           cd_offset = Le(b, eocd + 16, 4);
  if ((entries == 0xFFFF || cd_offset == 0xFFFFFFFF || cd_size == 0xFFFFFFFF) && eocd >= 20 &&
      Le(b, eocd - 20, 4) == 0x07064b50) {
    const uint64_t z = Le(b, eocd - 20 + 8, 8);
    if (z > b.size() || b.size() - z < 56 || Le(b, z, 4) != 0x06064b50) {
      return Bad(name, "has a broken zip64 directory record");
    }
    entries = Le(b, z + 32, 8);
    cd_size = Le(b, z + 40, 8);
    cd_offset = Le(b, z + 48, 8);
  }
  if (entries > max_entries) {
    return Bad(name, absl::StrCat("the zip holds ", entries, " members; at most ", max_entries,
                                  " are read"));
  }
  if (cd_offset > b.size() || cd_size > b.size() - cd_offset) {
    return Bad(name, "has a zip directory outside the file");
  }
  std::vector<Entry> out;
  out.reserve(entries);
  size_t at = cd_offset;
  for (uint64_t e = 0; e < entries; ++e) {
    if (at > b.size() || b.size() - at < 46 || Le(b, at, 4) != 0x02014b50) {
      return Bad(name, "has a broken zip directory entry");
    }
    const uint64_t name_len = Le(b, at + 28, 2), extra_len = Le(b, at + 30, 2),
                   comment_len = Le(b, at + 32, 2);
    if (b.size() - at - 46 < name_len + extra_len + comment_len) {
      return Bad(name, "has a broken zip directory entry");
    }
    Entry entry;
    entry.method = Le(b, at + 10, 2);
    entry.packed_size = Le(b, at + 20, 4);
    entry.size = Le(b, at + 24, 4);
    entry.local_offset = Le(b, at + 42, 4);
    entry.name = b.substr(at + 46, name_len);
    ReadZip64Extra(b, at + 46 + name_len, at + 46 + name_len + extra_len, &entry);
    at += 46 + name_len + extra_len + comment_len;
    out.push_back(std::move(entry));
  }
  return out;
}

absl::StatusOr<std::string> ReadMember(const std::string& name, const std::string& b,
                                       const Entry& entry, uint64_t max_size) {
  const std::string& member = entry.name;
  const uint64_t offset = entry.local_offset, packed = entry.packed_size, size = entry.size;
  if (offset > b.size() || b.size() - offset < 30 || Le(b, offset, 4) != 0x04034b50) {
    return Bad(name, absl::StrCat("zip member ", member, " has no local header"));
  }
  const uint64_t data = offset + 30 + Le(b, offset + 26, 2) + Le(b, offset + 28, 2);
  if (data > b.size() || packed > b.size() - data) {
    return Bad(name, absl::StrCat("zip member ", member, " runs past the end of the file"));
  }
  if (size > max_size) {
    return Bad(name,
               absl::StrCat("zip member ", member, " is ", size, " bytes (limit ", max_size, ")"));
  }
  if (entry.method == 0) {
    if (packed != size) return Bad(name, absl::StrCat("zip member ", member, " is inconsistent"));
    return b.substr(data, packed);
  }
  if (entry.method != 8) {
    return Bad(name, absl::StrCat("zip member ", member, " uses compression method ",
                                  entry.method, " (only stored and deflate are read)"));
  }
  std::string content(size, '\0');
  z_stream z{};
  if (inflateInit2(&z, -15) != Z_OK) return absl::InternalError("zlib inflateInit2 failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(b.data() + data));
  z.avail_in = static_cast<uInt>(std::min<uint64_t>(packed, UINT32_MAX));
  z.next_out = reinterpret_cast<Bytef*>(content.data());
  z.avail_out = static_cast<uInt>(size);
  const int rc = inflate(&z, Z_FINISH);
  const uint64_t produced = z.total_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != size) {
    return Bad(name,
               absl::StrCat("zip member ", member, " does not inflate to its ", size, " bytes"));
  }
  return content;
}

}  // namespace modeldock::zip
