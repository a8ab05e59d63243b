#include "server/request_decoding.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "common/text_frames.h"
#include "server/proto_conversion.h"

namespace modeldock::server {
namespace {

// Bytes per value of a sample encoding, 0 for an encoding the server does not accept.
int EncodingWidth(v1::SampleEncoding encoding) {
  switch (encoding) {
    case v1::SAMPLE_ENCODING_FLOAT32: return 4;
    case v1::SAMPLE_ENCODING_UINT8: return 1;
    default: return 0;
  }
}

}  // namespace

absl::StatusOr<dock::ModelSpec> DecodeRegisterHeader(const v1::RegisterModelHeader& header) {
  if (header.size_bytes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.size_bytes must be positive, got ", header.size_bytes()));
  }
  if (!IsSha256Hex(header.sha256())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header.sha256 must be 64 lower-case hex digits, got '", header.sha256(), "'"));
  }
  return FromProto(header.spec());
}

namespace {

// The labels and options every query header has, whatever its samples.
absl::Status CheckLabelsAndOptions(const v1::RecommendHeader& header) {
  if (!header.labels().empty() && header.labels_size() != header.num_samples()) {
    return absl::InvalidArgumentError(absl::StrCat("got ", header.labels_size(),
                                                   " labels for ", header.num_samples(),
                                                   " samples; give one per sample or none"));
  }
  for (int i = 0; i < header.labels_size(); ++i) {
    if (header.labels(i) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", i, " is ", header.labels(i), "; labels must be in 0..C-1"));
    }
  }
  if (header.top_k() < 0 || header.num_candidates() < 0) {
    return absl::InvalidArgumentError("top_k and num_candidates must not be negative");
  }
  return absl::OkStatus();
}

// A text query: framed texts of text_bytes bytes, no sample shape.
absl::StatusOr<int64_t> ExpectedTextBytes(const v1::RecommendHeader& header) {
  if (!header.sample_shape().empty()) {
    return absl::InvalidArgumentError(
        "a text query (SAMPLE_ENCODING_UTF8_TEXT) has no sample_shape; leave it empty");
  }
  if (header.task() != v1::TASK_KIND_TEXT_CLASSIFICATION) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SAMPLE_ENCODING_UTF8_TEXT is for task TASK_KIND_TEXT_CLASSIFICATION, got ",
        v1::TaskKind_Name(header.task())));
  }
  // Each text takes at least its 4-byte length.
  if (header.num_samples() > kMaxQueryBytes / 4 || header.text_bytes() < 4 * header.num_samples()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "text_bytes must hold the framed texts (at least 4 bytes per text: ",
        4 * std::min<int64_t>(header.num_samples(), kMaxQueryBytes), "), got ",
        header.text_bytes()));
  }
  if (header.text_bytes() > kMaxQueryBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("query texts of ", header.text_bytes(), " bytes exceed the limit of ",
                     kMaxQueryBytes >> 20, " MiB"));
  }
  if (absl::Status s = CheckLabelsAndOptions(header); !s.ok()) return s;
  return header.text_bytes();
}

}  // namespace

absl::StatusOr<int64_t> ExpectedQueryBytes(const v1::RecommendHeader& header) {
  if (header.num_samples() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be positive, got ", header.num_samples()));
  }
  if (header.encoding() == v1::SAMPLE_ENCODING_UTF8_TEXT) return ExpectedTextBytes(header);
  if (header.task() == v1::TASK_KIND_TEXT_CLASSIFICATION) {
    return absl::InvalidArgumentError(
        "a text query's samples are sent as SAMPLE_ENCODING_UTF8_TEXT");
  }
  if (header.sample_shape().empty()) {
    return absl::InvalidArgumentError("sample_shape is empty; expected e.g. [1, 28, 28] or [F]");
  }
  const int width = EncodingWidth(header.encoding());
  if (width == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "encoding must be SAMPLE_ENCODING_FLOAT32, SAMPLE_ENCODING_UINT8 or "
        "SAMPLE_ENCODING_UTF8_TEXT, got ",
        v1::SampleEncoding_Name(header.encoding())));
  }
  // Integer arithmetic that refuses overflow and huge uploads before anything is received:
  // every factor is checked against the limit before it is multiplied in.
  const auto too_big = [&header] {
    return absl::ResourceExhaustedError(absl::StrCat(
        "query dataset of ", header.num_samples(), " samples of shape [",
        absl::StrJoin(header.sample_shape(), ", "), "] exceeds the limit of ",
        kMaxQueryBytes >> 20, " MiB"));
  };
  if (header.num_samples() > kMaxQueryBytes / width) return too_big();
  int64_t total = header.num_samples() * width;
  for (int64_t d : header.sample_shape()) {
    if (d <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample_shape [", absl::StrJoin(header.sample_shape(), ", "),
                       "] has a non-positive dimension"));
    }
    if (total > kMaxQueryBytes / d) return too_big();
    total *= d;
  }
  if (absl::Status s = CheckLabelsAndOptions(header); !s.ok()) return s;
  return total;
}

absl::StatusOr<Dataset> DecodeTextSamples(const v1::RecommendHeader& header,
                                          const std::string& data) {
  TextFrameLimits limits;
  limits.max_total_bytes = kMaxQueryBytes;
  auto texts = DecodeTexts(data, header.num_samples(), limits);
  if (!texts.ok()) return texts.status();
  Dataset dataset;
  dataset.texts = *std::move(texts);
  dataset.samples.shape = {header.num_samples(), 0};
  return dataset;
}

Tensor DecodeSamples(const v1::RecommendHeader& header, const std::string& data) {
  Tensor samples;
  samples.shape.push_back(header.num_samples());
  samples.shape.insert(samples.shape.end(), header.sample_shape().begin(),
                       header.sample_shape().end());
  if (header.encoding() == v1::SAMPLE_ENCODING_UINT8) {
    samples.values.resize(data.size());
    for (size_t i = 0; i < data.size(); ++i) {
      samples.values[i] = static_cast<unsigned char>(data[i]) / 255.0f;
    }
  } else {
    // The wire format is little-endian float32, as is every platform modeldock builds on.
    static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559);
    samples.values.resize(data.size() / 4);
    std::memcpy(samples.values.data(), data.data(), data.size());
  }
  return samples;
}

}  // namespace modeldock::server
