#ifndef MODELDOCK_COMMON_SHA256_H_
#define MODELDOCK_COMMON_SHA256_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace modeldock {

// Incremental SHA-256 (OpenSSL EVP). Digest is lower-case hex.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  std::string HexDigest();

  static std::string Of(std::string_view data);
  static absl::StatusOr<std::string> OfFile(const std::string& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True for 64 lower-case hex digits.
bool IsSha256Hex(std::string_view s);

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_SHA256_H_
