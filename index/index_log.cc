#include "index/index_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace modeldock::index {
namespace {

constexpr uint32_t kRecordMagic = 0x314C444D;  // "MDL1" in the file (little-endian)
constexpr size_t kDigestChars = 64;            // SHA-256, hex
constexpr uint8_t kUpsert = 1;
constexpr uint8_t kRemove = 2;
// A payload larger than this is not a record of ours (a 1M-dimension vector is 4 MB).
constexpr uint32_t kMaxPayload = 64u << 20;

template <typename T>
void Put(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
bool Take(std::string_view* in, T* v) {
  if (in->size() < sizeof(T)) return false;
  std::memcpy(v, in->data(), sizeof(T));
  in->remove_prefix(sizeof(T));
  return true;
}

std::string Payload(uint8_t op, const std::string& id, const std::vector<float>& vector) {
  std::string out;
  Put(&out, op);
  Put<uint64_t>(&out, id.size());
  out += id;
  Put<uint32_t>(&out, static_cast<uint32_t>(vector.size()));
  out.append(reinterpret_cast<const char*>(vector.data()), vector.size() * sizeof(float));
  return out;
}

struct Change {
  uint8_t op = 0;
  std::string id;
  std::vector<float> vector;
};

bool ParsePayload(std::string_view in, Change* change) {
  uint64_t id_size = 0;
  uint32_t count = 0;
  if (!Take(&in, &change->op) || !Take(&in, &id_size) || in.size() < id_size) return false;
  change->id.assign(in.data(), id_size);
  in.remove_prefix(id_size);
  if (!Take(&in, &count) || in.size() != count * sizeof(float)) return false;
  change->vector.resize(count);
  std::memcpy(change->vector.data(), in.data(), in.size());
  return change->op == kUpsert || (change->op == kRemove && count == 0);
}

// The next record of `in`: OK with the change, or why the tail from here cannot be read.
absl::StatusOr<Change> NextRecord(std::string_view* in) {
  std::string_view rest = *in;
  uint32_t magic = 0, size = 0;
  if (!Take(&rest, &magic) || !Take(&rest, &size)) return absl::DataLossError("a torn header");
  if (magic != kRecordMagic) return absl::DataLossError("not a record header");
  if (size > kMaxPayload) return absl::DataLossError("an impossible record length");
  if (rest.size() < size + kDigestChars) return absl::DataLossError("a torn record");
  const std::string_view payload = rest.substr(0, size);
  if (Sha256::Of(payload) != rest.substr(size, kDigestChars)) {
    return absl::DataLossError("a checksum mismatch");
  }
  Change change;
  if (!ParsePayload(payload, &change)) return absl::DataLossError("an unreadable change");
  rest.remove_prefix(size + kDigestChars);
  *in = rest;
  return change;
}

}  // namespace

IndexLog::IndexLog(std::string index_path) : log_path_(std::move(index_path) + ".log") {}

absl::Status IndexLog::AppendUpsert(const std::string& id, const std::vector<float>& vector) {
  return Append(Payload(kUpsert, id, vector));
}

absl::Status IndexLog::AppendRemove(const std::string& id) {
  return Append(Payload(kRemove, id, {}));
}

absl::Status IndexLog::Append(const std::string& payload) {
  std::string record;
  Put(&record, kRecordMagic);
  Put<uint32_t>(&record, static_cast<uint32_t>(payload.size()));
  record += payload;
  record += Sha256::Of(payload);
  std::lock_guard<std::mutex> lock(mutex_);
  const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", log_path_));
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t w = ::write(fd, record.data() + done, record.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      absl::Status s = absl::ErrnoToStatus(errno, absl::StrCat("cannot append to ", log_path_));
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(w);
  }
  if (::fdatasync(fd) != 0) {
    absl::Status s = absl::ErrnoToStatus(errno, absl::StrCat("cannot flush ", log_path_));
    ::close(fd);
    return s;
  }
  ::close(fd);
  ++records_;
  return absl::OkStatus();
}

absl::StatusOr<IndexLog::Replay> IndexLog::ReplayInto(VectorIndex* index) {
  std::lock_guard<std::mutex> lock(mutex_);
  records_ = 0;
  Replay replay;
  std::ifstream file(log_path_, std::ios::binary);
  if (!file) {
    if (::access(log_path_.c_str(), F_OK) != 0) return replay;  // no log: nothing changed
    return absl::PermissionDeniedError(absl::StrCat("cannot open ", log_path_));
  }
  std::ostringstream buffer;
  buffer << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat("cannot read ", log_path_));
  const std::string data = buffer.str();
  std::string_view in(data);
  while (!in.empty()) {
    auto change = NextRecord(&in);
    if (!change.ok()) {
      replay.ignored_bytes = static_cast<int64_t>(in.size());
      replay.ignored_reason = std::string(change.status().message());
      // Cut the tail off, so that the next append follows the last good record instead of
      // being hidden behind the bad one.
      if (::truncate(log_path_.c_str(), static_cast<off_t>(data.size() - in.size())) != 0) {
        return absl::ErrnoToStatus(errno, absl::StrCat("cannot cut the bad tail of ", log_path_));
      }
      break;
    }
    ++records_;
    absl::Status applied = change->op == kUpsert ? index->Upsert(change->id, change->vector)
                                                 : index->Remove(change->id);
    if (change->op == kRemove && absl::IsNotFound(applied)) {
      ++replay.skipped_removals;
      continue;
    }
    if (!applied.ok()) {
      return absl::DataLossError(absl::StrCat(log_path_, ": record ", records_, " (model ",
                                              change->id, ") does not apply to the index: ",
                                              applied.message()));
    }
    ++replay.applied;
  }
  return replay;
}

int64_t IndexLog::records() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return records_;
}

absl::Status IndexLog::Reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (::unlink(log_path_.c_str()) != 0 && errno != ENOENT) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot remove ", log_path_));
  }
  records_ = 0;
  return absl::OkStatus();
}

}  // namespace modeldock::index
