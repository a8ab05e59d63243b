// Know2Vec-style knowledge vectors (Shang et al., AAAI 2025; ../shared/METHODS.md, stage 1).
//
// A model is probed once on the dock's probe set; from its probe logits we select per class the
// "node" samples (most confident) and per class pair the "boundary" samples (small top-2 margin).
// Every probe sample is embedded by one reference encoder E shared by the whole dock, and a set
// encoder turns the selected embeddings into one L2-normalised model vector. A query dataset is
// embedded by the same E, averaged into class prototypes, and encoded into the same space.
#ifndef MODELDOCK_ENCODER_KNOWLEDGE_H_
#define MODELDOCK_ENCODER_KNOWLEDGE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock::encoder {

// The dock-wide reference encoder E: a TorchScript module mapping images [N, C, H, W] in [0, 1]
// to embeddings [N, D]. Inputs are adapted to its declared shape (AdaptInputs).
class ReferenceEncoder {
 public:
  virtual ~ReferenceEncoder() = default;
  // `path` is a TorchScript file whose forward returns [N, D]; input_shape its per-sample shape.
  static absl::StatusOr<std::unique_ptr<ReferenceEncoder>> Load(
      const std::string& path, const std::vector<int64_t>& input_shape);
  // A text space's E (issue 25): forward(texts: List[str]) returns [N, D].
  static absl::StatusOr<std::unique_ptr<ReferenceEncoder>> LoadText(const std::string& path);
  // Images (or tensors) through an image E; INVALID_ARGUMENT on a text E.
  virtual absl::StatusOr<Tensor> Embed(const Tensor& samples) = 0;
  // Strings through a text E; INVALID_ARGUMENT on an image E.
  virtual absl::StatusOr<Tensor> EmbedTexts(const std::vector<std::string>& texts) = 0;
  virtual int dim() const = 0;
  // SHA-256 of the TorchScript file: part of the knowledge-space fingerprint.
  virtual const std::string& sha256() const = 0;
};

struct GridOptions {
  int nodes_per_class = 8;     // most confident probe samples kept per model class
  int boundary_per_pair = 2;   // smallest-margin samples kept per class pair (i, j)
};

// The K x K Know2Vec grid as indices into the probe set: nodes[k] for class k (diagonal),
// boundary[i][j] for pairs (i < j, mirrored) whose top-2 classes are {i, j}.
struct KnowledgeGrid {
  int num_classes = 0;
  std::vector<std::vector<int32_t>> nodes;                  // [K][<= nodes_per_class]
  std::vector<std::vector<std::vector<int32_t>>> boundary;  // [K][K][<= boundary_per_pair]
};

// Selects the grid from a model's probe logits [P, K]. Deterministic (ties by sample index).
KnowledgeGrid SelectGrid(const Tensor& probe_logits, const GridOptions& options = {});

// The set encoders, one for models and one for queries, into one vector space. The interface is
// what a trained alignment (a later issue: LibTorch, trained from fine-tune outcomes) implements.
class KnowledgeEncoder {
 public:
  virtual ~KnowledgeEncoder() = default;
  virtual int dim() const = 0;
  // Identifies the encoder and its parameters (part of the knowledge-space fingerprint).
  virtual std::string Describe() const = 0;
  // probe_embeddings: [P, De] = E(probe set). Returns an L2-normalised vector of dim().
  virtual absl::StatusOr<std::vector<float>> EncodeModel(const KnowledgeGrid& grid,
                                                         const Tensor& probe_embeddings) const = 0;
  // query_embeddings: [N, De] = E(query samples); labels 0..C-1. Returns an L2-normalised vector.
  virtual absl::StatusOr<std::vector<float>> EncodeQuery(const Tensor& query_embeddings,
                                                         const std::vector<int32_t>& labels,
                                                         int num_classes) const = 0;
};

struct UntrainedEncoderOptions {
  int dim = 256;
  uint64_t seed = 20250101;
  // Weight of boundary samples relative to class nodes in the model's set.
  double boundary_weight = 0.25;
  // Gaussian kernel bandwidth on L2-normalised embeddings: k(a, b) = exp(-|a-b|^2 / (2 sigma^2)).
  // 0.25 ranks the demo zoo right for tops / footwear / trouser+dress / all-10 queries with the
  // default reference encoder (0.5 lets a 4-class model outscore the 10-class one on all-10).
  double sigma = 0.25;
};

// The untrained default: a fixed random-feature kernel mean embedding, so that the inner product
// of a model vector and a query vector approximates the mean Gaussian-kernel similarity between
// the model's class nodes and the query's class prototypes. Needs no training data.
std::unique_ptr<KnowledgeEncoder> MakeUntrainedEncoder(int embedding_dim,
                                                       const UntrainedEncoderOptions& options = {});

// Pseudo-labels for an unlabelled query: k-means (k-means++ seeding, fixed seed) on embeddings.
std::vector<int32_t> ClusterLabels(const Tensor& embeddings, int k, uint64_t seed = 7);

// A feature extractor has no classes, so its grid is built over its own "concepts": k-means
// clusters of its L2-normalised features on the probe set. Returns pseudo-logits [P, k] (minus the
// squared distance to each cluster centre) for SelectGrid: nodes are the most central samples of
// a cluster, boundaries the samples between two clusters — what a classifier's classes give.
Tensor FeatureGridLogits(const Tensor& features, int k = 10);

}  // namespace modeldock::encoder

#endif  // MODELDOCK_ENCODER_KNOWLEDGE_H_
