// Private helpers shared by encoder/'s .cc files (no torch here): not part of the public API.
#ifndef MODELDOCK_ENCODER_UTIL_INTERNAL_H_
#define MODELDOCK_ENCODER_UTIL_INTERNAL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/tensor.h"

namespace modeldock::encoder::internal {

// TorchScript errors end with the Python-level error ("RuntimeError: AssertionError: ...")
// after a TorchScript traceback: that line goes first, the traceback follows.
std::string LastLineFirst(std::string message);

// INVALID_ARGUMENT unless `t` is a consistent [N, width] matrix; `what` names the embeddings
// ("probe", "query") and `owner` what expects them ("the encoder", "the alignment").
absl::Status CheckEmbeddingMatrix(const Tensor& t, int64_t width, const char* what,
                                  const char* owner);

}  // namespace modeldock::encoder::internal

#endif  // MODELDOCK_ENCODER_UTIL_INTERNAL_H_
