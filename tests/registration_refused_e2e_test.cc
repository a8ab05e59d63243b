// Registration end to end, the bad inputs that share one server (RegistrationRefusedE2eTest):
// every one answered with the right status code and a helpful message while the server keeps
// serving and stores nothing (ExpectNothingStored). Same binary as registration_e2e_test.cc.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "server/request_id.h"
#include "server/service.h"
#include "tests/registration_fixture.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(RegistrationRefusedE2eTest, TruncatedUploadIsInvalidArgument) {
  const int before = TotalModels();
  const std::set<std::string> files = StoredFiles();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  const std::string half = bytes.substr(0, bytes.size() / 2);
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), half, bytes.size(), Sha256::Of(bytes)),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              ::testing::StartsWith("upload truncated: got " + std::to_string(half.size()) +
                                    " of " + std::to_string(bytes.size()) + " bytes (request r-"));
  ExpectNothingStored(before, files);
}

TEST_F(RegistrationRefusedE2eTest, UploadLongerThanDeclaredIsInvalidArgument) {
  const int before = TotalModels();
  const std::set<std::string> files = StoredFiles();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), bytes + "extra", bytes.size(),
                             Sha256::Of(bytes)),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("longer than declared"));
  ExpectNothingStored(before, files);
}

TEST_F(RegistrationRefusedE2eTest, WrongSha256IsDataLoss) {
  const int before = TotalModels();
  const std::set<std::string> files = StoredFiles();
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  const std::string wrong = Sha256::Of("other bytes");
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), bytes, bytes.size(), wrong), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(wrong));
  EXPECT_THAT(status.error_message(), HasSubstr(Sha256::Of(bytes)));
  ExpectNothingStored(before, files);
}

TEST_F(RegistrationRefusedE2eTest, MalformedSha256IsInvalidArgument) {
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(ModelSpecOf(kTopsModel), bytes, bytes.size(), "ABC"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("sha256"));
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationRefusedE2eTest, NotTorchScriptIsInvalidArgument) {
  ExpectRegisterRejected("fixtures/not_torchscript", ModelSpecOf("fixtures/not_torchscript"),
                         grpc::StatusCode::INVALID_ARGUMENT, "TorchScript");
}

TEST_F(RegistrationRefusedE2eTest, WrongOutputWidthIsFailedPrecondition) {
  const v1::ModelSpec spec = ModelSpecOf("fixtures/wrong_width");
  ExpectRegisterRejected("fixtures/wrong_width", spec, grpc::StatusCode::FAILED_PRECONDITION,
                         "wrong_width");
  // The message says what came back: [N, 3] logits for 4 declared labels.
  const std::string bytes = ReadFile(ModelFile("fixtures/wrong_width"));
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), UploadMessages(spec, bytes, bytes.size(), Sha256::Of(bytes)), &response);
  EXPECT_THAT(status.error_message(), HasSubstr("3"));
  EXPECT_THAT(status.error_message(), HasSubstr("4"));
}

TEST_F(RegistrationRefusedE2eTest, NanOutputsAreFailedPrecondition) {
  ExpectRegisterRejected("fixtures/nan_output", ModelSpecOf("fixtures/nan_output"),
                         grpc::StatusCode::FAILED_PRECONDITION, "NaN");
}

TEST_F(RegistrationRefusedE2eTest, BadEmbedIsFailedPrecondition) {
  ExpectRegisterRejected("fixtures/bad_embed", ModelSpecOf("fixtures/bad_embed"),
                         grpc::StatusCode::FAILED_PRECONDITION, "embed");
}

TEST_F(RegistrationRefusedE2eTest, UnknownModelIsNotFound) {
  for (const std::string& ref : {std::string("no-such-model"), std::string("m-0000000000000000")}) {
    auto got = client_->Get(ref);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(got.status().message(), HasSubstr(ref));
    auto deleted = client_->Delete(ref);
    EXPECT_EQ(deleted.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(deleted.status().message(), HasSubstr(ref));
    auto watched = client_->Watch(ref);
    EXPECT_EQ(watched.status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(client_->Get("").status().code(), absl::StatusCode::kInvalidArgument);
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationRefusedE2eTest, MissingOrMisplacedHeaderIsInvalidArgument) {
  const std::string bytes = ReadFile(ModelFile(kTopsModel));
  const v1::ModelSpec spec = ModelSpecOf(kTopsModel);
  v1::RegisterModelResponse response;

  grpc::Status status = SendRegisterStream(stub(), {}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("header"));

  status = SendRegisterStream(stub(), {Chunk(bytes.substr(0, 100))}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("first RegisterModel message must be a header"));

  const v1::RegisterModelRequest header = Header(spec, bytes.size(), Sha256::Of(bytes));
  status = SendRegisterStream(stub(), {header, Chunk(bytes.substr(0, 100)), header}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("may only be the first"));

  status = SendRegisterStream(stub(), {Header(spec, 0, Sha256::Of(bytes))}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("size_bytes"));

  v1::ModelSpec nameless = spec;
  nameless.clear_name();
  status = SendRegisterStream(stub(), UploadMessages(nameless, bytes, bytes.size(),
                                                     Sha256::Of(bytes)),
                              &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("name"));
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationRefusedE2eTest, ChunkOverOneMebibyteIsInvalidArgument) {
  const std::string big(server::kMaxChunkBytes + 1, 'x');
  const int64_t declared = 2 * server::kMaxChunkBytes;
  v1::RegisterModelResponse response;
  grpc::Status status = SendRegisterStream(
      stub(), {Header(ModelSpecOf(kTopsModel), declared, Sha256::Of(big)), Chunk(big)},
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("exceeds the limit of 1048576 bytes"));
  ExpectNothingStored(0, {});
}

TEST_F(RegistrationRefusedE2eTest, EveryCallCarriesARequestIdAndErrorsNameIt) {
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  v1::GetModelRequest request;
  request.set_model("no-such-model");
  v1::GetModelResponse response;
  grpc::Status status = stub()->GetModel(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  auto id = context.GetServerTrailingMetadata().find(server::kRequestIdHeader);
  ASSERT_NE(id, context.GetServerTrailingMetadata().end());
  const std::string request_id(id->second.data(), id->second.size());
  EXPECT_EQ(request_id.rfind("r-", 0), 0u);
  EXPECT_THAT(status.error_message(), HasSubstr("(request " + request_id + ")"));
  // Successful calls carry one too, a different one.
  grpc::ClientContext again;
  SetDeadline(&again, 30);
  v1::ListModelsResponse page;
  ASSERT_TRUE(stub()->ListModels(&again, v1::ListModelsRequest(), &page).ok());
  auto second = again.GetServerTrailingMetadata().find(server::kRequestIdHeader);
  ASSERT_NE(second, again.GetServerTrailingMetadata().end());
  EXPECT_NE(std::string(second->second.data(), second->second.size()), request_id);
}

}  // namespace
}  // namespace modeldock::testing
