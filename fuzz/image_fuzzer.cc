// Image content (stb_image: PNG, JPEG, BMP, GIF, TGA, PNM), then the same image in an image
// folder (two classes, plus a grey image of the same size so grey and colour are mixed).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/datasets.h"
#include "fuzz/fuzz_checks.h"
#include "fuzz/temp_dir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldock;
  namespace fs = std::filesystem;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto image = datasets::DecodeImage("fuzz.png", bytes);
  if (!image.ok()) return 0;
  FUZZ_CHECK(image->width > 0 && image->height > 0);
  FUZZ_CHECK(image->channels >= 1 && image->channels <= 4);
  FUZZ_CHECK(image->pixels.size() ==
             static_cast<size_t>(image->width) * image->height * image->channels);

  // Large decoded images only cost time in the folder step, which is about stacking, not size.
  const int64_t pixels = int64_t{image->width} * image->height;
  if (pixels > (1 << 16)) return 0;
  static const fs::path& dir = fuzz::TempDir("modeldock_image_fuzzer");
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");
  fuzz::WriteFile(dir / "a" / "0.png", bytes);
  fuzz::WriteFile(dir / "b" / "0.png", bytes);
  std::string pgm = absl::StrCat("P5\n", image->width, " ", image->height, "\n255\n");
  pgm.append(static_cast<size_t>(pixels), '\x80');
  fuzz::WriteFile(dir / "b" / "1.pgm", pgm);
  auto dataset = datasets::LoadImageFolder(dir.string());
  if (dataset.ok()) {
    fuzz::CheckDataset(*dataset);
    FUZZ_CHECK(dataset->samples.Rows() == 3);
    FUZZ_CHECK(dataset->class_names.size() == 2);
  }
  return 0;
}
