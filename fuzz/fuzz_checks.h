// Invariants the fuzz targets check on every successful decode. A violated invariant aborts, so
// libFuzzer reports it as a crash with the input that caused it.
#ifndef MODELDOCK_FUZZ_FUZZ_CHECKS_H_
#define MODELDOCK_FUZZ_FUZZ_CHECKS_H_

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/tensor.h"

#define FUZZ_CHECK(condition)                                                          \
  do {                                                                                 \
    if (!(condition)) {                                                                \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__,      \
                   #condition);                                                        \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

namespace modeldock::fuzz {

// What every loader promises: [N, ...] samples whose values match the shape and are finite.
inline void CheckSamples(const Tensor& samples) {
  FUZZ_CHECK(samples.shape.size() >= 2);
  for (int64_t d : samples.shape) FUZZ_CHECK(d >= 0);
  FUZZ_CHECK(samples.IsConsistent());
  for (float v : samples.values) FUZZ_CHECK(std::isfinite(v));
}

// ... and labels, if any, one per sample, within the class names when those are given.
inline void CheckDataset(const Dataset& dataset) {
  CheckSamples(dataset.samples);
  if (!dataset.labelled()) return;
  FUZZ_CHECK(static_cast<int64_t>(dataset.labels.size()) == dataset.samples.Rows());
  for (int32_t label : dataset.labels) {
    FUZZ_CHECK(label >= 0);
    if (!dataset.class_names.empty()) {
      FUZZ_CHECK(static_cast<size_t>(label) < dataset.class_names.size());
    }
  }
}

}  // namespace modeldock::fuzz

#endif  // MODELDOCK_FUZZ_FUZZ_CHECKS_H_
