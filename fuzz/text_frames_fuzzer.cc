// Texts a client uploads (SAMPLE_ENCODING_UTF8_TEXT, common/text_frames.h) are untrusted bytes:
// the first byte picks the declared text count; every decoded text is valid UTF-8 and the
// frame re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/text_frames.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int64_t count = data[0];
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto texts = modeldock::DecodeTexts(bytes, count);
  if (texts.ok()) {
    if (static_cast<int64_t>(texts->size()) != count) __builtin_trap();
    for (const std::string& t : *texts) {
      if (modeldock::FirstInvalidUtf8(t) >= 0) __builtin_trap();
    }
    if (modeldock::EncodeTexts(*texts) != bytes) __builtin_trap();
  }
  return 0;
}
