// Splits a fuzz input into a serialized protobuf message and a data payload: two big-endian
// length bytes, that many message bytes (fewer if the input ends), then the payload.
// fuzz/make_seeds.py writes seeds in this layout.
#ifndef MODELDOCK_FUZZ_REQUEST_INPUT_H_
#define MODELDOCK_FUZZ_REQUEST_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace modeldock::fuzz {

struct RequestInput {
  std::string_view message;
  std::string_view payload;
};

inline RequestInput SplitRequestInput(const uint8_t* data, size_t size) {
  RequestInput in;
  if (size < 2) return in;
  const size_t length = std::min<size_t>((size_t{data[0]} << 8) | data[1], size - 2);
  const char* bytes = reinterpret_cast<const char*>(data);
  in.message = std::string_view(bytes + 2, length);
  in.payload = std::string_view(bytes + 2 + length, size - 2 - length);
  return in;
}

}  // namespace modeldock::fuzz

#endif  // MODELDOCK_FUZZ_REQUEST_INPUT_H_
