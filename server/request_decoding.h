// Validation and decoding of the streamed parts of modeldock.v1 requests (a RegisterModel
// header, a Recommend's sample bytes): pure functions with no gRPC calls and no engine behind
// them, so that they can be fuzzed (fuzz/) and unit-tested without a server, LibTorch or FAISS.
// The message <-> engine type conversions are in proto_conversion.h.
#ifndef MODELDOCK_SERVER_REQUEST_DECODING_H_
#define MODELDOCK_SERVER_REQUEST_DECODING_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "dock/dock.h"
#include "modeldock/v1/modeldock.pb.h"
#include "server/proto_conversion.h"  // FromProto

namespace modeldock::server {

// Largest query dataset a Recommend call may upload (it is held in memory as float32).
inline constexpr int64_t kMaxQueryBytes = 1ll << 30;

// Checks the header of a RegisterModel stream and returns the declared spec.
absl::StatusOr<dock::ModelSpec> DecodeRegisterHeader(const v1::RegisterModelHeader& header);

// Checks a Recommend header and returns the number of data bytes that must follow.
absl::StatusOr<int64_t> ExpectedQueryBytes(const v1::RecommendHeader& header);

// Decodes the received bytes into float32 samples [N, ...sample_shape]. `data` must hold exactly
// ExpectedQueryBytes(header) bytes of a header that passed that check.
Tensor DecodeSamples(const v1::RecommendHeader& header, const std::string& data);
// A text query's framed texts (SAMPLE_ENCODING_UTF8_TEXT) as a text dataset (texts, and samples
// [N, 0]): INVALID_ARGUMENT naming the text and offset of bad framing or bad UTF-8.
absl::StatusOr<Dataset> DecodeTextSamples(const v1::RecommendHeader& header,
                                          const std::string& data);

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_REQUEST_DECODING_H_
