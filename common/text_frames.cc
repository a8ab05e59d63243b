#include "common/text_frames.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace modeldock {

std::string EncodeTexts(const std::vector<std::string>& texts) {
  std::string out;
  for (const std::string& text : texts) {
    const uint32_t n = static_cast<uint32_t>(text.size());
    const unsigned char length[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                     static_cast<unsigned char>(n >> 16),
                                     static_cast<unsigned char>(n >> 24)};
    out.append(reinterpret_cast<const char*>(length), 4);
    out.append(text);
  }
  return out;
}

int64_t FirstInvalidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);  // a continuation byte, C0/C1 (overlong) or F5..FF
    }
    if (n - i < len) return static_cast<int64_t>(i);
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;
}

absl::StatusOr<std::vector<std::string>> DecodeTexts(std::string_view data, int64_t count,
                                                     const TextFrameLimits& limits) {
  if (count < 0) return absl::InvalidArgumentError(absl::StrCat("negative text count ", count));
  if (static_cast<int64_t>(data.size()) > limits.max_total_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the texts take ", data.size(), " bytes; the server accepts at most ",
        limits.max_total_bytes, " bytes of text per request"));
  }
  // Every text takes at least its 4-byte length.
  if (count > static_cast<int64_t>(data.size() / 4)) {
    return absl::InvalidArgumentError(absl::StrCat("the header declares ", count, " texts but ",
                                                   data.size(), " bytes cannot hold them"));
  }
  std::vector<std::string> texts;
  texts.reserve(static_cast<size_t>(count));
  size_t at = 0;
  for (int64_t t = 0; t < count; ++t) {
    if (data.size() - at < 4) {
      return absl::InvalidArgumentError(absl::StrCat("text ", t, " at byte ", at,
                                                     ": the data ends inside its length"));
    }
    const auto* p = reinterpret_cast<const unsigned char*>(data.data() + at);
    const uint64_t n = uint64_t{p[0]} | uint64_t{p[1]} << 8 | uint64_t{p[2]} << 16 |
                       uint64_t{p[3]} << 24;
    at += 4;
    if (static_cast<int64_t>(n) > limits.max_text_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "text ", t, " is ", n, " bytes long; the server accepts texts of at most ",
          limits.max_text_bytes, " bytes (shorten or split it)"));
    }
    if (n > data.size() - at) {
      return absl::InvalidArgumentError(absl::StrCat(
          "text ", t, " at byte ", at - 4, " says it is ", n, " bytes long but only ",
          data.size() - at, " bytes follow (a truncated upload or a wrong length prefix)"));
    }
    std::string_view text = data.substr(at, n);
    if (int64_t bad = FirstInvalidUtf8(text); bad >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "text ", t, " is not valid UTF-8 at its byte ", bad,
          " (convert the dataset to UTF-8, e.g. iconv -f latin1 -t utf-8)"));
    }
    texts.emplace_back(text);
    at += n;
  }
  if (at != data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(data.size() - at, " bytes follow the last of ",
                                                   count, " texts (the header's text count is "
                                                   "wrong)"));
  }
  return texts;
}

}  // namespace modeldock
