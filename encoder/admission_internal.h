// Private to encoder/ (and its test): not part of the public API.
#ifndef MODELDOCK_ENCODER_ADMISSION_INTERNAL_H_
#define MODELDOCK_ENCODER_ADMISSION_INTERNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/tensor.h"

namespace modeldock::encoder::internal {

// `rows` samples of `sample_shape`, uniform in [0, 1) from std::mt19937(seed); the same on
// every platform (no std::uniform_real_distribution, whose algorithm is unspecified).
Tensor UniformSamples(int64_t rows, const std::vector<int64_t>& sample_shape, uint32_t seed);

// One string of a text model's admission batch and what it stands for in messages.
struct TestText {
  std::string what;  // e.g. "the empty string"
  std::string text;
};

// The admission batch of a text model: the hard cases (empty, whitespace only, 64 KiB long,
// non-ASCII UTF-8 in several scripts, control characters, a NUL byte) and then `random_rows`
// strings of seeded printable ASCII words and UTF-8 letters; the same on every platform.
std::vector<TestText> TextTestBatch(int64_t random_rows, uint32_t seed);

}  // namespace modeldock::encoder::internal

#endif  // MODELDOCK_ENCODER_ADMISSION_INTERNAL_H_
