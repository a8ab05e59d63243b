// Texts as bytes: the framing of SAMPLE_ENCODING_UTF8_TEXT (modeldock.v1), with which a client
// sends a text dataset in the Recommend stream's chunks. Each text is a little-endian u32 byte
// length followed by that many bytes of UTF-8; texts follow one another with nothing between.
#ifndef MODELDOCK_COMMON_TEXT_FRAMES_H_
#define MODELDOCK_COMMON_TEXT_FRAMES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace modeldock {

struct TextFrameLimits {
  int64_t max_text_bytes = 1 << 20;     // one text
  int64_t max_total_bytes = 256 << 20;  // the whole frame
};

// The frame of `texts` (which should be UTF-8; EncodeTexts does not check).
std::string EncodeTexts(const std::vector<std::string>& texts);

// Decodes exactly `count` texts from `data`. INVALID_ARGUMENT, naming the text and its byte
// offset, when a length runs past the end of the data, a text is not valid UTF-8 (overlong
// forms, surrogates and code points past U+10FFFF included), bytes are left over after the last
// text, or a text or the whole frame is over the limits.
absl::StatusOr<std::vector<std::string>> DecodeTexts(std::string_view data, int64_t count,
                                                     const TextFrameLimits& limits = {});

// The byte offset of the first invalid UTF-8 sequence in `text`, or -1 when it is valid.
int64_t FirstInvalidUtf8(std::string_view text);

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_TEXT_FRAMES_H_
