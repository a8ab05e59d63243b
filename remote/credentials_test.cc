#include "remote/credentials.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace modeldock::remote {
namespace {

namespace fs = std::filesystem;

class CredentialsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("modeldock-credentials-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    Write("ca.pem", "CA PEM");
    Write("client.pem", "CLIENT PEM");
    Write("client.key", "CLIENT KEY");
    Write("token", "  s3cret-token\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream((dir_ / name).string()) << text;
    return (dir_ / name).string();
  }
  // The credentials file with `json` as its text; its error message (or "" when it was read).
  std::string ErrorOf(const std::string& json) {
    auto read = ReadCredentialsFile(Write("credentials.json", json));
    if (read.ok()) return "";
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(read.status().message());
  }

  fs::path dir_;
};

TEST_F(CredentialsFileTest, ReadsEachEndpointsOwnCredentials) {
  const std::string path = Write("credentials.json", R"({
    "triton:8001": {"ca": "ca.pem", "cert": "client.pem", "key": "client.key",
                    "bearer_token_file": "token"},
    "gateway:443": {"tls": true},
    "10.0.0.7:8001": {"bearer_token_file": ")" + (dir_ / "token").string() + R"("}
  })");
  auto read = ReadCredentialsFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 3u);
  const ChannelSecurity& triton = read->at("triton:8001");
  EXPECT_TRUE(triton.tls);  // implied by the PEM files
  EXPECT_EQ(triton.root_certs_pem, "CA PEM");
  EXPECT_EQ(triton.cert_chain_pem, "CLIENT PEM");
  EXPECT_EQ(triton.private_key_pem, "CLIENT KEY");
  EXPECT_EQ(triton.bearer_token, "s3cret-token");  // whitespace dropped
  EXPECT_EQ(triton.bearer_token_file, (dir_ / "token").string());  // re-read before each call
  const ChannelSecurity& gateway = read->at("gateway:443");
  EXPECT_TRUE(gateway.tls);
  EXPECT_EQ(gateway.root_certs_pem, "");  // the system's roots
  EXPECT_EQ(gateway.bearer_token, "");
  const ChannelSecurity& plain = read->at("10.0.0.7:8001");  // absolute path
  EXPECT_FALSE(plain.tls);
  EXPECT_EQ(plain.bearer_token, "s3cret-token");

  RemoteCredentials credentials;
  credentials.fallback.tls = true;
  credentials.endpoints = *read;
  EXPECT_FALSE(credentials.For("10.0.0.7:8001").tls);  // its own entry, not the fallback
  EXPECT_TRUE(credentials.For("elsewhere:8001").tls);  // the fallback
  EXPECT_EQ(credentials.For("elsewhere:8001").bearer_token, "");
}

TEST_F(CredentialsFileTest, BadFilesAreRefusedWithTheReason) {
  EXPECT_NE(ErrorOf("not json").find("is not a JSON object"), std::string::npos);
  EXPECT_NE(ErrorOf("[1, 2]").find("is not a JSON object"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a:1": "token"})").find("a:1: expected an object"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a:1": {"token": "x"}})").find("unknown key 'token'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a:1": {"tls": "yes"}})").find("'tls' must be a boolean"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a:1": {"ca": "missing.pem"}})").find("cannot read 'ca' file"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a:1": {"cert": "client.pem"}})").find("'cert' and 'key' go together"),
            std::string::npos);
  Write("blank", " \n");
  EXPECT_NE(ErrorOf(R"({"a:1": {"bearer_token_file": "blank"}})").find("only whitespace"),
            std::string::npos);
  auto missing = ReadCredentialsFile((dir_ / "nope.json").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot be read"), std::string::npos);
  // The message names the file, never a token.
  EXPECT_EQ(ErrorOf(R"({"a:1": {"bearer_token_file": "token", "x": 1}})").find("s3cret"),
            std::string::npos);
}

// The server-wide --remote-tls* setting goes through the same reader, named by its flags.
TEST_F(CredentialsFileTest, ServerFlagsAreReadTheSameWayAndNamedInErrors) {
  const CredentialNames flags{"--remote-tls-ca", "--remote-tls-cert", "--remote-tls-key", ""};
  auto plain = ReadCredentialFiles({}, flags);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->tls);
  auto pinned = ReadCredentialFiles({false, (dir_ / "ca.pem").string(), "", "", ""}, flags);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_TRUE(pinned->tls);  // implied by the CA
  EXPECT_EQ(pinned->root_certs_pem, "CA PEM");
  auto half = ReadCredentialFiles({false, "", (dir_ / "client.pem").string(), "", ""}, flags);
  ASSERT_FALSE(half.ok());
  EXPECT_EQ(half.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(half.status().message().find("--remote-tls-cert and --remote-tls-key go together"),
            std::string::npos);
  auto missing = ReadCredentialFiles({false, (dir_ / "nope.pem").string(), "", "", ""}, flags);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot read --remote-tls-ca file"),
            std::string::npos);
}

}  // namespace
}  // namespace modeldock::remote
