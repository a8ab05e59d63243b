// Stage-1 probe proxies and score fusion.
//
// A proxy scores a model on a query without running it: every query sample is matched to its
// nearest probe samples (by cosine similarity of "keys", e.g. reference-encoder embeddings), and
// the model's stored outputs on those probe samples stand in for its outputs on the query. Any
// stage-2 metric can then be computed on the proxy outputs. The per-model stored outputs are
// compressed (PCA on the probe set) so that a dock of many models stays small.
#ifndef MODELDOCK_SCORING_PROXY_H_
#define MODELDOCK_SCORING_PROXY_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock::scoring {

// Indices of the k probe rows most cosine-similar to each query row, best first: [N * k]
// row-major. Ties go to the lower probe index. INVALID_ARGUMENT on mismatched widths, k < 1 or
// k > P.
absl::StatusOr<std::vector<int32_t>> NearestProbes(const Tensor& query_keys,
                                                   const Tensor& probe_keys, int k);

// Proxy outputs [N, D]: row i = mean of probe_values' rows at neighbours[i*k .. i*k+k).
Tensor GatherProxy(const Tensor& probe_values, const std::vector<int32_t>& neighbours, int k);

// Class probabilities [N, K]: the row-wise softmax of logits [N, K] (what stage 1 averages over a
// query sample's nearest probes before NCE reads their argmax).
Tensor ClassProbabilities(const Tensor& logits);

// Compresses a model's probe features [P, D] for storage: centred on their column means and
// projected onto the top min(dim, D) principal directions (eigenvectors of the covariance, sign
// fixed so that each direction's largest-magnitude loading is positive). Returns [P, min(dim, D)].
absl::StatusOr<Tensor> CompressFeatures(const Tensor& features, int dim);

// Drops the trailing columns of CompressFeatures' output whose variance is numerically zero
// (at most 1e-10 of the first column's): the directions beyond the rank of the centred
// features, as when a query has fewer samples than components or a model's features collapse.
// Such columns are zeros up to rounding, yet they shift LogME's evidence and the H-scores (a
// 20-sample speech query: LogME's tau_w -0.53 on 32 columns, 0.67 on the 19 that vary). Keeps
// at least one column.
Tensor DropNullComponents(const Tensor& compressed);

// Ranks 1..n of `values` (ascending: the largest value gets rank n; ties share their mean rank).
// Non-finite values rank lowest.
std::vector<double> Ranks(const std::vector<double>& values);

// Rank fusion: the mean over score lists of Ranks(list). Every list has the same length.
std::vector<double> RankFusion(const std::vector<std::vector<double>>& score_lists);

}  // namespace modeldock::scoring

#endif  // MODELDOCK_SCORING_PROXY_H_
