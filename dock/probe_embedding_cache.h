// A knowledge space's probe embeddings (E on its probe set) kept on disk, so that a restart, or
// a new dock on the same assets, does not run the reference encoder on thousands of probes
// again (seconds per space, paid by the first registration or query of every process).
//
// Owns: one file per key in its directory; no lock and no state in memory (a file is written
// to a temporary name and renamed, so processes that share the directory never read half a
// file).
#ifndef MODELDOCK_DOCK_PROBE_EMBEDDING_CACHE_H_
#define MODELDOCK_DOCK_PROBE_EMBEDDING_CACHE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock::dock {

class ProbeEmbeddingCache {
 public:
  // `directory` empty = no cache. `key` names what the embeddings are a function of (E's and the
  // probe set's SHA-256, how samples are fitted to E): a changed asset never reads a stale file.
  ProbeEmbeddingCache(std::string directory, const std::string& key);

  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  // The cached [rows, dim] embeddings. NOT_FOUND when there is no file; DATA_LOSS when the file
  // is not exactly such a tensor with a matching checksum (torn write, bit rot, other shape).
  absl::StatusOr<Tensor> Read(int64_t rows, int64_t dim) const;
  // Writes the file whole or not at all (a temporary file renamed into place), so processes that
  // share the directory may race: the last rename wins and every version is complete.
  absl::Status Write(const Tensor& embeddings) const;

 private:
  std::string path_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_PROBE_EMBEDDING_CACHE_H_
