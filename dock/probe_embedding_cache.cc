#include "dock/probe_embedding_cache.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;

// File layout: magic, rows and dim (int64, little-endian as the host), the SHA-256 (hex) of the
// float payload, then rows * dim float32 values.
constexpr char kMagic[8] = {'M', 'D', 'P', 'E', 'M', 'B', '1', '\n'};
constexpr size_t kHeaderBytes = sizeof(kMagic) + 2 * sizeof(int64_t) + 64;

std::string PayloadSha(const Tensor& t) {
  return Sha256::Of(std::string_view(reinterpret_cast<const char*>(t.values.data()),
                                     t.values.size() * sizeof(float)));
}

}  // namespace

ProbeEmbeddingCache::ProbeEmbeddingCache(std::string directory, const std::string& key) {
  if (!directory.empty()) {
    path_ = (fs::path(directory) /
             absl::StrCat("probe-embeddings-", Sha256::Of(key).substr(0, 24), ".bin"))
                .string();
  }
}

absl::StatusOr<Tensor> ProbeEmbeddingCache::Read(int64_t rows, int64_t dim) const {
  std::error_code ec;
  if (!enabled() || !fs::exists(path_, ec)) return absl::NotFoundError("no cached embeddings");
  std::optional<std::string> bytes = ReadWholeFile(path_);
  if (!bytes.has_value()) {
    return absl::DataLossError(absl::StrCat("cannot read ", path_));
  }
  const size_t want = kHeaderBytes + static_cast<size_t>(rows * dim) * sizeof(float);
  if (bytes->size() != want || std::memcmp(bytes->data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError(absl::StrCat(path_, " is ", bytes->size(), " bytes, not a ",
                                            rows, " x ", dim, " embedding file of ", want));
  }
  int64_t header[2];
  std::memcpy(header, bytes->data() + sizeof(kMagic), sizeof(header));
  if (header[0] != rows || header[1] != dim) {
    return absl::DataLossError(absl::StrCat(path_, " holds ", header[0], " x ", header[1],
                                            " embeddings, not ", rows, " x ", dim));
  }
  const std::string sha = bytes->substr(sizeof(kMagic) + sizeof(header), 64);
  Tensor t({rows, dim}, std::vector<float>(static_cast<size_t>(rows * dim)));
  std::memcpy(t.values.data(), bytes->data() + kHeaderBytes, t.values.size() * sizeof(float));
  if (PayloadSha(t) != sha) {
    return absl::DataLossError(absl::StrCat(path_, " fails its checksum"));
  }
  return t;
}

absl::Status ProbeEmbeddingCache::Write(const Tensor& embeddings) const {
  if (!enabled()) return absl::OkStatus();
  if (embeddings.shape.size() != 2) {
    return absl::InvalidArgumentError("probe embeddings must be [rows, dim]");
  }
  std::error_code ec;
  fs::create_directories(fs::path(path_).parent_path(), ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", fs::path(path_).parent_path().string(), ": ", ec.message()));
  }
  static std::atomic<int> counter{0};
  const std::string tmp = absl::StrCat(path_, ".tmp-", ::getpid(), "-", counter++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    const int64_t header[2] = {embeddings.shape[0], embeddings.shape[1]};
    out.write(kMagic, sizeof(kMagic));
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
    out << PayloadSha(embeddings);
    out.write(reinterpret_cast<const char*>(embeddings.values.data()),
              static_cast<std::streamsize>(embeddings.values.size() * sizeof(float)));
    out.flush();
    if (!out) {
      fs::remove(tmp, ec);
      return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
    }
  }
  fs::rename(tmp, path_, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove(tmp, ec);
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, ": ", why));
  }
  return absl::OkStatus();
}

}  // namespace modeldock::dock
