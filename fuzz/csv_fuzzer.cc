// CSV text, with the default label column, with none, and with a row limit.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/datasets.h"
#include "fuzz/fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldock;
  const std::string text(reinterpret_cast<const char*>(data), size);
  datasets::LoadOptions with_label;
  datasets::LoadOptions unlabelled;
  unlabelled.csv_label_column = "";
  datasets::LoadOptions limited;
  limited.max_samples = 2;
  for (const datasets::LoadOptions& options : {with_label, unlabelled, limited}) {
    auto dataset = datasets::DecodeCsv("fuzz.csv", text, options);
    if (!dataset.ok()) continue;
    fuzz::CheckDataset(*dataset);
    FUZZ_CHECK(dataset->samples.Rows() > 0);
    if (options.max_samples > 0) FUZZ_CHECK(dataset->samples.Rows() <= options.max_samples);
    if (options.csv_label_column.empty()) FUZZ_CHECK(!dataset->labelled());
  }
  return 0;
}
