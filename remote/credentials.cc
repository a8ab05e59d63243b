#include "remote/credentials.h"

#include <filesystem>
#include <optional>
#include <set>

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
    // A referenced file's contents; "" when the key is absent.
    auto contents = [&](const char* key, std::string* into) -> absl::Status {
      if (!entry.contains(key)) return absl::OkStatus();
      fs::path file = entry.at(key).get<std::string>();
      if (file.is_relative()) file = folder / file;
      std::optional<std::string> bytes = ReadWholeFile(file.string());
      if (!bytes || bytes->empty()) {
        return bad(absl::StrCat("cannot read '", key, "' file ", file.string()));
      }
      *into = std::move(*bytes);
      return absl::OkStatus();
    };
    ChannelSecurity security;
    if (absl::Status s = contents("ca", &security.root_certs_pem); !s.ok()) return s;
    if (absl::Status s = contents("cert", &security.cert_chain_pem); !s.ok()) return s;
    if (absl::Status s = contents("key", &security.private_key_pem); !s.ok()) return s;
    if (absl::Status s = contents("bearer_token_file", &security.bearer_token); !s.ok()) return s;
    security.bearer_token = std::string(absl::StripAsciiWhitespace(security.bearer_token));
    if (entry.contains("bearer_token_file")) {
      if (security.bearer_token.empty()) return bad("the bearer token file holds only whitespace");
      fs::path file = entry.at("bearer_token_file").get<std::string>();
      security.bearer_token_file = (file.is_relative() ? folder / file : file).string();
    }
    if (security.cert_chain_pem.empty() != security.private_key_pem.empty()) {
      return bad("'cert' and 'key' go together (the client certificate and its key)");
    }
    security.tls = entry.value("tls", false) || !security.root_certs_pem.empty() ||
                   !security.cert_chain_pem.empty();
    out.emplace(endpoint, std::move(security));
  }
  return out;
}

}  // namespace modeldock::remote
