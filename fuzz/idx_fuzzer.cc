// IDX (MNIST) content as samples and as a labels file.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/datasets.h"
#include "fuzz/fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldock;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // All samples, and the first one only (max_samples takes another path through the decoder).
  for (int64_t max_samples : {0, 1}) {
    int64_t rows = -1;
    auto samples = datasets::DecodeIdx("fuzz.idx", bytes, max_samples, &rows);
    if (samples.ok()) {
      fuzz::CheckSamples(*samples);
      FUZZ_CHECK(rows >= samples->Rows());
      if (max_samples > 0) FUZZ_CHECK(samples->Rows() <= max_samples);
    }
  }
  auto labels = datasets::DecodeLabels("fuzz.idx", bytes);
  if (labels.ok()) {
    for (int32_t label : *labels) FUZZ_CHECK(label >= 0);
  }
  return 0;
}
