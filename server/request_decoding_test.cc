#include "server/request_decoding.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::RecommendHeader Header(int64_t num_samples, std::vector<int64_t> shape,
                           v1::SampleEncoding encoding) {
  v1::RecommendHeader header;
  header.set_num_samples(num_samples);
  for (int64_t d : shape) header.add_sample_shape(d);
  header.set_encoding(encoding);
  return header;
}

TEST(RequestDecodingTest, ExpectedQueryBytes) {
  auto bytes = ExpectedQueryBytes(Header(10, {1, 28, 28}, v1::SAMPLE_ENCODING_FLOAT32));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, 10 * 28 * 28 * 4);
  bytes = ExpectedQueryBytes(Header(10, {1, 28, 28}, v1::SAMPLE_ENCODING_UINT8));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, 10 * 28 * 28);
  EXPECT_EQ(ExpectedQueryBytes(Header(10, {1, 0, 28}, v1::SAMPLE_ENCODING_UINT8)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpectedQueryBytes(Header(1, {4}, v1::SAMPLE_ENCODING_UNSPECIFIED)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Exactly the limit is accepted, one value more is not.
  EXPECT_TRUE(ExpectedQueryBytes(Header(1, {kMaxQueryBytes}, v1::SAMPLE_ENCODING_UINT8)).ok());
  EXPECT_EQ(ExpectedQueryBytes(Header(1, {kMaxQueryBytes + 1}, v1::SAMPLE_ENCODING_UINT8))
                .status().code(),
            absl::StatusCode::kResourceExhausted);
}

// Found by fuzz/recommend_request_fuzzer (fuzz/corpus/recommend_request_fuzzer/crash-*):
// num_samples x bytes per value overflowed int64 before any dimension was checked.
TEST(RequestDecodingTest, HugeNumSamplesIsResourceExhausted) {
  v1::RecommendHeader header =
      Header(std::numeric_limits<int64_t>::max(), {11}, v1::SAMPLE_ENCODING_FLOAT32);
  header.set_metric(v1::METRIC_FUSION);
  auto bytes = ExpectedQueryBytes(header);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(bytes.status().message(), HasSubstr("exceeds the limit"));
  header.set_num_samples(kMaxQueryBytes / 4 + 1);
  EXPECT_EQ(ExpectedQueryBytes(header).status().code(), absl::StatusCode::kResourceExhausted);
}

v1::RecommendHeader TextHeader(int64_t num_samples, int64_t text_bytes) {
  v1::RecommendHeader header = Header(num_samples, {}, v1::SAMPLE_ENCODING_UTF8_TEXT);
  header.set_task(v1::TASK_KIND_TEXT_CLASSIFICATION);
  header.set_text_bytes(text_bytes);
  return header;
}

// Text queries (issue 25): text_bytes of framed texts, no sample shape, the text task.
TEST(RequestDecodingTest, TextQueriesDeclareTheirFramedBytes) {
  auto bytes = ExpectedQueryBytes(TextHeader(3, 20));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, 20);
  // Fewer bytes than the 4-byte lengths of the texts.
  EXPECT_THAT(ExpectedQueryBytes(TextHeader(3, 11)).status().message(), HasSubstr("text_bytes"));
  EXPECT_EQ(ExpectedQueryBytes(TextHeader(3, kMaxQueryBytes + 1)).status().code(),
            absl::StatusCode::kResourceExhausted);
  v1::RecommendHeader shaped = TextHeader(3, 20);
  shaped.add_sample_shape(5);
  EXPECT_THAT(ExpectedQueryBytes(shaped).status().message(), HasSubstr("no sample_shape"));
  v1::RecommendHeader image_task = TextHeader(3, 20);
  image_task.set_task(v1::TASK_KIND_IMAGE_CLASSIFICATION);
  EXPECT_THAT(ExpectedQueryBytes(image_task).status().message(),
              HasSubstr("TASK_KIND_TEXT_CLASSIFICATION"));
  // The text task with an image encoding.
  v1::RecommendHeader floats = Header(3, {4}, v1::SAMPLE_ENCODING_FLOAT32);
  floats.set_task(v1::TASK_KIND_TEXT_CLASSIFICATION);
  EXPECT_THAT(ExpectedQueryBytes(floats).status().message(),
              HasSubstr("SAMPLE_ENCODING_UTF8_TEXT"));
  v1::RecommendHeader labelled = TextHeader(3, 20);
  labelled.add_labels(0);
  EXPECT_THAT(ExpectedQueryBytes(labelled).status().message(), HasSubstr("1 labels for 3"));
}

TEST(RequestDecodingTest, DecodeTextSamples) {
  // "ab", "" and "\xc3\xa9" (e acute), each after its little-endian u32 length.
  const std::string frame("\x02\0\0\0ab\0\0\0\0\x02\0\0\0\xc3\xa9", 16);
  auto dataset = DecodeTextSamples(TextHeader(3, 16), frame);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(dataset->texts, ElementsAre("ab", "", "\xc3\xa9"));
  EXPECT_THAT(dataset->samples.shape, ElementsAre(3, 0));
  // Invalid UTF-8 (a lone continuation byte) names the text.
  const std::string bad("\x02\0\0\0ab\0\0\0\0\x02\0\0\0\xa9\xa9", 16);
  auto refused = DecodeTextSamples(TextHeader(3, 16), bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("UTF-8"));
  // Two texts declared, three sent.
  EXPECT_EQ(DecodeTextSamples(TextHeader(2, 16), frame).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RequestDecodingTest, DecodeSamples) {
  v1::RecommendHeader header = Header(2, {1, 1, 2}, v1::SAMPLE_ENCODING_UINT8);
  Tensor samples = DecodeSamples(header, std::string("\x00\xff\x33\x66", 4));
  EXPECT_THAT(samples.shape, ElementsAre(2, 1, 1, 2));
  EXPECT_THAT(samples.values, ElementsAre(0.0f, 1.0f, 0.2f, 0.4f));

  header = Header(1, {2}, v1::SAMPLE_ENCODING_FLOAT32);
  const float values[2] = {-1.5f, 3.25f};
  samples = DecodeSamples(header, std::string(reinterpret_cast<const char*>(values), 8));
  EXPECT_THAT(samples.shape, ElementsAre(1, 2));
  EXPECT_THAT(samples.values, ElementsAre(-1.5f, 3.25f));
}

TEST(RequestDecodingTest, DecodeRegisterHeader) {
  v1::RegisterModelHeader header;
  header.set_size_bytes(100);
  header.set_sha256(std::string(64, 'a'));
  header.mutable_spec()->set_name("tab");
  header.mutable_spec()->add_input_shape(8);
  header.mutable_spec()->add_class_labels("x");
  auto spec = DecodeRegisterHeader(header);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "tab");
  EXPECT_EQ(spec->task, dock::TaskKind::kTabularClassification);  // inferred from [F]
  EXPECT_THAT(spec->class_labels, ElementsAre("x"));

  header.mutable_spec()->add_input_shape(2);  // [8, 2]: neither [F] nor [C, H, W]
  EXPECT_EQ(DecodeRegisterHeader(header).status().code(), absl::StatusCode::kInvalidArgument);
  header.set_sha256(std::string(64, 'A'));
  EXPECT_THAT(DecodeRegisterHeader(header).status().message(), HasSubstr("sha256"));
  header.set_size_bytes(0);
  EXPECT_THAT(DecodeRegisterHeader(header).status().message(), HasSubstr("size_bytes"));
}

TEST(ProtoConversionTest, ListModelsPageSizeAndFilter) {
  v1::ListModelsRequest request;
  EXPECT_EQ(DecodeListModels(request)->page_size, kDefaultPageSize);
  request.set_page_size(5000);
  EXPECT_EQ(DecodeListModels(request)->page_size, kMaxPageSize);
  request.set_page_size(-1);
  EXPECT_THAT(DecodeListModels(request).status().message(), HasSubstr("must not be negative"));
  request.set_page_size(7);
  request.set_state(v1::MODEL_STATE_FAILED);
  request.set_task(v1::TASK_KIND_TEXT_CLASSIFICATION);
  auto query = DecodeListModels(request);
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->page_size, 7);
  EXPECT_TRUE(query->filter.has_state);
  EXPECT_EQ(query->filter.state, dock::ModelState::kFailed);
  EXPECT_TRUE(query->filter.has_task);
  EXPECT_EQ(query->filter.task, dock::TaskKind::kTextClassification);
}

TEST(ProtoConversionTest, UpdateReplacesTagsOnlyWhenAsked) {
  v1::UpdateModelRequest request;
  EXPECT_THAT(DecodeUpdateModel(request).status().message(), HasSubstr("model"));
  request.set_model("m");
  request.add_tags("a");
  EXPECT_THAT(DecodeUpdateModel(request).status().message(), HasSubstr("replace_tags"));
  request.set_replace_tags(true);
  request.set_license("MIT");
  auto update = DecodeUpdateModel(request);
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_TRUE(update->has_tags);
  EXPECT_THAT(update->tags, ElementsAre("a"));
  EXPECT_TRUE(update->has_license);
  EXPECT_FALSE(update->has_description);
}

TEST(ProtoConversionTest, RecommendHeaderThenData) {
  v1::RecommendHeader header = Header(2, {3}, v1::SAMPLE_ENCODING_UINT8);
  EXPECT_THAT(DecodeRecommendHeader(header).status().message(), HasSubstr("images only"));
  header = Header(2, {3}, v1::SAMPLE_ENCODING_FLOAT32);
  header.set_metric(v1::METRIC_LOGME);
  auto query = DecodeRecommendHeader(header);
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->task, dock::TaskKind::kTabularClassification);
  EXPECT_EQ(query->metric, dock::Metric::kLogMe);
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  std::string data(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  header.add_labels(0);
  header.add_labels(1);
  header.set_latency_budget_ms(-1);
  EXPECT_THAT(DecodeRecommendData(header, data, &*query).message(),
              HasSubstr("latency_budget_ms"));
  header.set_latency_budget_ms(250);
  ASSERT_TRUE(DecodeRecommendData(header, data, &*query).ok());
  EXPECT_EQ(query->top_k, 5);  // 0 = five
  EXPECT_EQ(query->latency_budget_millis, 250);
  EXPECT_THAT(query->dataset.labels, ElementsAre(0, 1));
  ASSERT_EQ(query->dataset.samples.values.size(), 6u);
  EXPECT_EQ(query->dataset.samples.values[5], 6.0f);
}

TEST(ProtoConversionTest, OutcomeHeaderRefusesStage2AndText) {
  v1::ReportOutcomeHeader header;
  *header.mutable_dataset() = Header(1, {3}, v1::SAMPLE_ENCODING_FLOAT32);
  EXPECT_THAT(DecodeOutcomeHeader(header).status().message(), HasSubstr("outcomes are required"));
  header.add_outcomes()->set_model("m");
  header.set_source(v1::OUTCOME_SOURCE_STAGE2);
  EXPECT_THAT(DecodeOutcomeHeader(header).status().message(), HasSubstr("STAGE2"));
  header.mutable_dataset()->set_encoding(v1::SAMPLE_ENCODING_UTF8_TEXT);
  EXPECT_EQ(DecodeOutcomeHeader(header).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace modeldock::server
