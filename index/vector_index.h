// Stage-1 index: knowledge vectors keyed by model id, searched by inner product.
// FAISS is an implementation detail of vector_index.cc; no faiss header leaks from here.
#ifndef MODELDOCK_INDEX_VECTOR_INDEX_H_
#define MODELDOCK_INDEX_VECTOR_INDEX_H_

#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace modeldock::index {

struct IndexOptions {
  int dim = 256;
  // FAISS index_factory string without the metric: "Flat" (exact, the default), "HNSW32",
  // "IVF1024,Flat", ... Always inner product.
  std::string factory = "Flat";
  // HNSW efSearch / IVF nprobe at search time (0 = FAISS default).
  int search_breadth = 0;
};

struct SearchHit {
  std::string id;
  float score = 0;  // inner product
};

// Thread-safe: concurrent searches share a lock; Upsert/UpsertBatch/Remove take it exclusively.
class VectorIndex {
 public:
  virtual ~VectorIndex() = default;

  static absl::StatusOr<std::unique_ptr<VectorIndex>> Create(const IndexOptions& options);
  // Reads an index written by Save. NOT_FOUND if the file is missing, DATA_LOSS if unreadable.
  static absl::StatusOr<std::unique_ptr<VectorIndex>> Load(const std::string& path,
                                                           const IndexOptions& options);

  // Adds or replaces the vector of `id`. INVALID_ARGUMENT on wrong dimension or non-finite values.
  virtual absl::Status Upsert(const std::string& id, const std::vector<float>& vector) = 0;
  // Adds or replaces every (id, vector) of `entries` with ONE FAISS add, so FAISS's own
  // OpenMP parallelism builds HNSW graphs / assigns IVF lists for the whole batch (one Upsert
  // per vector was O(n^2) for HNSW). Same result as Upserting the entries one by one, except
  // that an approximate structure (HNSW) may be wired differently. All or nothing:
  // INVALID_ARGUMENT, naming the entry, for an empty id, a wrong dimension, a non-finite value
  // or an id that occurs twice in the batch; nothing is changed then. An empty batch is OK.
  // A batch into an empty index, or one that makes a rebuild due (tombstones from replaced
  // ids, IVF training), builds the new structure while searches go on; otherwise searches wait
  // for the add.
  virtual absl::Status UpsertBatch(
      const std::vector<std::pair<std::string, std::vector<float>>>& entries) = 0;
  // NOT_FOUND if `id` is not indexed.
  virtual absl::Status Remove(const std::string& id) = 0;
  // Top-k ids by inner product, best first. If `allowed` is non-null only those ids are
  // considered (compatibility filtering). Returns fewer than k hits if fewer exist.
  virtual absl::StatusOr<std::vector<SearchHit>> Search(
      const std::vector<float>& query, int k,
      const std::unordered_set<std::string>* allowed = nullptr) const = 0;
  // Atomic write (temp file + rename).
  virtual absl::Status Save(const std::string& path) const = 0;

  virtual size_t size() const = 0;
  virtual int dim() const = 0;
  virtual bool Contains(const std::string& id) const = 0;
  // Every (id, vector), by id (to compare with what the metadata store holds).
  virtual std::vector<std::pair<std::string, std::vector<float>>> Contents() const = 0;
  // Hash over the sorted (id, vector bytes) pairs; equal for two indexes holding the same
  // vectors, whatever the FAISS structure. Used to detect a stale saved index.
  virtual std::string Fingerprint() const = 0;
  // Same hash computed from plain entries (what the metadata store holds).
  static std::string FingerprintOf(
      const std::vector<std::pair<std::string, std::vector<float>>>& entries);
};

}  // namespace modeldock::index

#endif  // MODELDOCK_INDEX_VECTOR_INDEX_H_
