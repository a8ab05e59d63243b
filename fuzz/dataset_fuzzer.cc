// Any file content through format detection and LoadDataset, as the CLI reads a query: this is
// the path that also gunzips (.gz content is detected by its magic, not its name) and attaches a
// labels file.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/datasets.h"
#include "fuzz/fuzz_checks.h"
#include "fuzz/temp_dir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldock;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // In memory: a ".csv" name makes comma-less text CSV.
  for (const char* name : {"fuzz", "fuzz.csv.gz"}) {
    auto format = datasets::DetectContentFormat(name, bytes);
    if (format.ok()) FUZZ_CHECK(*format != datasets::Format::kImageFolder);
  }

  static const std::filesystem::path& dir = fuzz::TempDir("modeldock_dataset_fuzzer");
  const std::string path = (dir / "input").string();
  fuzz::WriteFile(path, bytes);
  auto dataset = datasets::LoadDataset(path);
  if (!dataset.ok()) return 0;
  fuzz::CheckDataset(*dataset);
  // The same file as its own labels file (it is accepted when it is a 1-d integer array whose
  // length matches; the check that it does is what runs here).
  datasets::LoadOptions options;
  options.labels_path = path;
  options.max_samples = 1;
  auto labelled = datasets::LoadDataset(path, options);
  if (labelled.ok()) fuzz::CheckDataset(*labelled);
  return 0;
}
