// A Recommend stream as service.cc decodes it: the header (a RecommendHeader parsed from the
// input) is checked, its task and metric translated, then inline data plus the payload (as one
// more chunk) must make exactly the bytes the header promises before they become samples (or,
// for SAMPLE_ENCODING_UTF8_TEXT, framed texts that decode to valid UTF-8 or are refused).
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_checks.h"
#include "common/text_frames.h"
#include "fuzz/request_input.h"
#include "server/request_decoding.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldock;
  const fuzz::RequestInput in = fuzz::SplitRequestInput(data, size);
  v1::RecommendHeader header;
  if (!header.ParseFromArray(in.message.data(), static_cast<int>(in.message.size()))) return 0;

  auto expected = server::ExpectedQueryBytes(header);
  if (!expected.ok()) return 0;
  FUZZ_CHECK(*expected > 0 && *expected <= server::kMaxQueryBytes);
  const bool text = header.encoding() == v1::SAMPLE_ENCODING_UTF8_TEXT;
  // A text query has no sample shape (its bytes are framed texts); every other one has one.
  FUZZ_CHECK(header.num_samples() > 0 && header.sample_shape().empty() == text);
  auto task = server::FromProto(header.task(), header.sample_shape_size());
  auto metric = server::FromProto(header.metric());
  (void)task;
  (void)metric;

  // The service refuses more data than promised and fewer bytes at the end; pad what is missing
  // (as if zero chunks followed) so that every accepted header reaches DecodeSamples, up to a
  // size that keeps the fuzzer fast.
  std::string bytes = header.inline_data();
  bytes.append(in.payload);
  if (static_cast<int64_t>(bytes.size()) > *expected) return 0;
  if (*expected > (1 << 20)) return 0;
  bytes.resize(static_cast<size_t>(*expected), '\0');

  if (text) {
    auto dataset = server::DecodeTextSamples(header, bytes);
    if (!dataset.ok()) return 0;
    FUZZ_CHECK(static_cast<int64_t>(dataset->texts.size()) == header.num_samples());
    FUZZ_CHECK(dataset->samples.Rows() == header.num_samples());
    for (const std::string& t : dataset->texts) FUZZ_CHECK(FirstInvalidUtf8(t) == -1);
    return 0;
  }
  const Tensor samples = server::DecodeSamples(header, bytes);
  FUZZ_CHECK(samples.IsConsistent());
  FUZZ_CHECK(samples.Rows() == header.num_samples());
  FUZZ_CHECK(static_cast<int64_t>(samples.shape.size()) == 1 + header.sample_shape_size());
  return 0;
}
