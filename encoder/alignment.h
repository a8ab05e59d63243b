// A trained (or trainable) Know2Vec alignment: the set encoders as a TorchScript module, behind
// the KnowledgeEncoder interface. scripts/know2vec_alignment.py exports and trains such modules.
//
// Module contract (the training side depends on it; keep both in step):
//
//   dim: int             attribute, > 0: the width of both output vectors.
//   embedding_dim: int   optional attribute: the width De of E's embeddings it expects (checked
//                        at load for a clear error; without it only the dummy call checks).
//
//   encode_model(nodes: Tensor, node_mask: Tensor,
//                boundary: Tensor, boundary_mask: Tensor) -> Tensor[dim]
//     nodes          float32 [K, Dn, De]   nodes[k, s] = E-embedding of KnowledgeGrid.nodes[k][s]
//     node_mask      float32 [K, Dn]       1 for a sample, 0 for padding
//     boundary       float32 [K, K, Db, De] boundary[i, j, s] = embedding of grid.boundary[i][j][s]
//     boundary_mask  float32 [K, K, Db]    1 for a sample, 0 for padding
//   K = grid.num_classes; Dn = the largest node list (every class has >= 1 node);
//   Db = max(1, the largest boundary cell), so no dimension is ever 0. Samples keep the grid's
//   order, padding (zeros, mask 0) follows them. The diagonal boundary[i, i, :] is always
//   padding (the class-i nodes are the grid's diagonal); boundary[i, j] and [j, i] hold the same
//   samples (SelectGrid mirrors them). The Know2Vec row i is cells (i, 0) .. (i, K-1) with the
//   nodes in cell (i, i).
//
//   encode_query(prototypes: Tensor) -> Tensor[dim]
//     prototypes     float32 [C, De]       row c = mean E-embedding of the query's samples with
//                                          label c, for the classes that have samples, in order.
//
// Embeddings are E's raw outputs (not normalised). Outputs must be finite float vectors of
// length dim; the loader L2-normalises them (a zero vector is an error).
#ifndef MODELDOCK_ENCODER_ALIGNMENT_H_
#define MODELDOCK_ENCODER_ALIGNMENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "encoder/knowledge.h"

namespace modeldock::encoder {

// Loads a TorchScript alignment and checks it: both methods exist, dim > 0, embedding_dim (if
// given) matches, and encode_model / encode_query on a seeded dummy grid with `embedding_dim`-wide
// embeddings return finite [dim] vectors. INVALID_ARGUMENT otherwise; running it later returns
// FAILED_PRECONDITION if the module fails. Describe() includes the file's SHA-256, so a new file
// changes the knowledge space and the dock rebuilds vectors from stored probe outputs.
// Calls are serialised by a mutex inside (one module instance is not re-entrant).
absl::StatusOr<std::unique_ptr<KnowledgeEncoder>> LoadTorchScriptKnowledgeEncoder(
    const std::string& path, int embedding_dim);

}  // namespace modeldock::encoder

#endif  // MODELDOCK_ENCODER_ALIGNMENT_H_
