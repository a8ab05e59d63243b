// Private to encoder/ (and its test): not part of the public API.
#ifndef MODELDOCK_ENCODER_ADMISSION_INTERNAL_H_
#define MODELDOCK_ENCODER_ADMISSION_INTERNAL_H_

#include <cstdint>
#include <vector>

#include "common/tensor.h"

namespace modeldock::encoder::internal {

// `rows` samples of `sample_shape`, uniform in [0, 1) from std::mt19937(seed); the same on
// every platform (no std::uniform_real_distribution, whose algorithm is unspecified).
Tensor UniformSamples(int64_t rows, const std::vector<int64_t>& sample_shape, uint32_t seed);

}  // namespace modeldock::encoder::internal

#endif  // MODELDOCK_ENCODER_ADMISSION_INTERNAL_H_
