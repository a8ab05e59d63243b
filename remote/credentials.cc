#include "remote/credentials.h"

#include <filesystem>
#include <iterator>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "nlohmann/json.hpp"

namespace modeldock::remote {
namespace {

namespace fs = std::filesystem;

const std::set<std::string>& KnownKeys() {
  static const std::set<std::string> keys = {"tls", "ca", "cert", "key", "bearer_token_file"};
  return keys;
}

}  // namespace

absl::StatusOr<ChannelSecurity> ReadCredentialFiles(const CredentialFiles& files,
                                                    const CredentialNames& names) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        names.cert, " and ", names.key, " go together (the client certificate and its key)"));
  }
  ChannelSecurity security;
  const std::pair<const std::string*, std::string*> pem[] = {
      {&files.ca, &security.root_certs_pem},
      {&files.cert, &security.cert_chain_pem},
      {&files.key, &security.private_key_pem}};
  const std::string* pem_names[] = {&names.ca, &names.cert, &names.key};
  for (size_t i = 0; i < std::size(pem); ++i) {
    const auto& [path, into] = pem[i];
    if (path->empty()) continue;
    std::optional<std::string> bytes = ReadWholeFile(*path);
    if (!bytes || bytes->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", *pem_names[i], " file ", *path));
    }
    *into = std::move(*bytes);
  }
  if (!files.bearer_token_file.empty()) {
    std::optional<std::string> token = ReadBearerToken(files.bearer_token_file);
    if (!token) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", names.bearer_token_file,
                                                     " file ", files.bearer_token_file));
    }
    if (token->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the bearer token file ", files.bearer_token_file, " holds only whitespace"));
    }
    security.bearer_token = std::move(*token);
    security.bearer_token_file = files.bearer_token_file;
  }
  security.tls = files.tls || !files.ca.empty() || !files.cert.empty();
  return security;
}

std::optional<std::string> ReadBearerToken(const std::string& path) {
  std::optional<std::string> text = ReadWholeFile(path);
  if (!text) return std::nullopt;
  return std::string(absl::StripAsciiWhitespace(*text));
}

absl::StatusOr<std::map<std::string, ChannelSecurity>> ReadCredentialsFile(
    const std::string& path) {
  auto problem = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("remote credentials file ", path, ": ", what));
  };
  std::optional<std::string> text = ReadWholeFile(path);
  if (!text) return problem("cannot be read");
  nlohmann::json json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return problem("is not a JSON object of endpoint -> credentials");
  }
  const fs::path folder = fs::path(path).parent_path();
  const CredentialNames names{"'ca'", "'cert'", "'key'", "'bearer_token_file'"};
  std::map<std::string, ChannelSecurity> out;
  for (const auto& [endpoint, entry] : json.items()) {
    auto bad = [&](const std::string& what) { return problem(absl::StrCat(endpoint, ": ", what)); };
    if (endpoint.empty() || !entry.is_object()) return bad("expected an object of credentials");
    for (const auto& [key, value] : entry.items()) {
      if (!KnownKeys().count(key)) {
        return bad(absl::StrCat("unknown key '", key,
                                "' (known: tls, ca, cert, key, bearer_token_file)"));
      }
      if (key == "tls" ? !value.is_boolean() : !value.is_string()) {
        return bad(absl::StrCat("'", key, "' must be a ", key == "tls" ? "boolean" : "path"));
      }
    }
    // A referenced file's path, relative to the credentials file's folder; "" when absent.
    auto path_of = [&](const char* key) -> std::string {
      if (!entry.contains(key)) return "";
      const fs::path file = entry.at(key).get<std::string>();
      return (file.is_relative() ? folder / file : file).string();
    };
    const CredentialFiles files{entry.value("tls", false), path_of("ca"), path_of("cert"),
                                path_of("key"), path_of("bearer_token_file")};
    auto security = ReadCredentialFiles(files, names);
    if (!security.ok()) return bad(std::string(security.status().message()));
    out.emplace(endpoint, std::move(*security));
  }
  return out;
}

}  // namespace modeldock::remote
