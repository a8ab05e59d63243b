#include "common/text_frames.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock {
namespace {

using ::testing::HasSubstr;

TEST(TextFramesTest, RoundTripsTextsWithExactBytes) {
  const std::vector<std::string> texts = {"", "caf\xC3\xA9", std::string("a\0b", 3),
                                          "\xF0\x9F\x98\x80", std::string(300, 'x')};
  const std::string frame = EncodeTexts(texts);
  // 4-byte little-endian lengths: 0, 5, 3, 4, 300 = 0x012C.
  EXPECT_EQ(frame.size(), 5 * 4 + 0 + 5 + 3 + 4 + 300u);
  EXPECT_EQ(frame.substr(0, 4), std::string(4, '\0'));
  EXPECT_EQ(frame.substr(4, 4), std::string("\x05\0\0\0", 4));
  EXPECT_EQ(frame.substr(frame.size() - 304, 4), std::string("\x2C\x01\0\0", 4));
  auto decoded = DecodeTexts(frame, 5);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, texts);
  EXPECT_TRUE(DecodeTexts("", 0).ok());
}

TEST(TextFramesTest, Utf8ValidationFindsTheFirstBadByte) {
  EXPECT_EQ(FirstInvalidUtf8("plain ascii"), -1);
  EXPECT_EQ(FirstInvalidUtf8("Gr\xC3\xBC\xC3\x9F" "e \xE6\x9D\xB1 \xF4\x8F\xBF\xBF"), -1);
  EXPECT_EQ(FirstInvalidUtf8("ab\xFF"), 2);               // never in UTF-8
  EXPECT_EQ(FirstInvalidUtf8("a\x80"), 1);                // lone continuation byte
  EXPECT_EQ(FirstInvalidUtf8("\xC0\xAF"), 0);             // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("x\xE0\x80\xAF"), 1);        // overlong, 3 bytes
  EXPECT_EQ(FirstInvalidUtf8("\xED\xA0\x80"), 0);         // surrogate U+D800
  EXPECT_EQ(FirstInvalidUtf8("\xF4\x90\x80\x80"), 0);     // past U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("caf\xC3"), 3);              // truncated sequence
  EXPECT_EQ(FirstInvalidUtf8("caf\xC3" "e"), 3);          // bad continuation
}

TEST(TextFramesTest, BadFramesAreInvalidArgumentWithAnActionableMessage) {
  const std::string frame = EncodeTexts({"one", "two"});
  auto check = [](std::string_view data, int64_t count, const std::string& says) {
    auto r = DecodeTexts(data, count);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << says;
    EXPECT_THAT(r.status().message(), HasSubstr(says));
  };
  check(frame.substr(0, frame.size() - 1), 2, "text 1 at byte 7 says it is 3 bytes long but only 2");
  check(frame.substr(0, 9), 2, "the data ends inside its length");
  check(frame, 1, "7 bytes follow the last of 1 texts");
  check(frame, 3, "text 2 at byte 14: the data ends inside its length");
  check(frame, 4, "the header declares 4 texts but 14 bytes cannot hold them");
  check(EncodeTexts({"ok", "caf\xE9"}), 2, "text 1 is not valid UTF-8 at its byte 3");
  TextFrameLimits small;
  small.max_text_bytes = 2;
  auto r = DecodeTexts(frame, 2, small);
  EXPECT_THAT(r.status().message(), HasSubstr("text 0 is 3 bytes long; the server accepts texts of at most 2"));
  small = TextFrameLimits{};
  small.max_total_bytes = 10;
  r = DecodeTexts(frame, 2, small);
  EXPECT_THAT(r.status().message(), HasSubstr("the texts take 14 bytes"));
  check(frame, -1, "negative text count");
}

}  // namespace
}  // namespace modeldock
