// Credentials towards remote inference servers, per endpoint: a dock may reach a Triton behind a
// gateway that wants a token, another modeldock with --auth, and a plaintext server on the
// cluster network at once. The operator lists endpoints in a JSON file (--remote-credentials);
// every other endpoint gets the server-wide --remote-tls* setting.
#ifndef MODELDOCK_REMOTE_CREDENTIALS_H_
#define MODELDOCK_REMOTE_CREDENTIALS_H_

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "remote/kserve_client.h"

namespace modeldock::remote {

struct RemoteCredentials {
  ChannelSecurity fallback;                          // endpoints not listed
  std::map<std::string, ChannelSecurity> endpoints;  // "host:port" exactly as registered
  const ChannelSecurity& For(const std::string& endpoint) const {
    auto it = endpoints.find(endpoint);
    return it == endpoints.end() ? fallback : it->second;
  }
};

// Where one endpoint's credentials are read from ("" = none), and what each setting is called in
// messages (a server flag, or a key of the credentials file).
struct CredentialFiles {
  bool tls = false;
  std::string ca, cert, key, bearer_token_file;
};
struct CredentialNames {
  std::string ca, cert, key, bearer_token_file;
};

// Reads the files into a ChannelSecurity (TLS is implied by a CA, certificate or key).
// INVALID_ARGUMENT naming the setting: a certificate without its key or the reverse, an
// unreadable or empty file, a token file holding only whitespace.
absl::StatusOr<ChannelSecurity> ReadCredentialFiles(const CredentialFiles& files,
                                                    const CredentialNames& names);

// The token a bearer-token file holds, surrounding whitespace dropped (may be empty); nullopt
// when the file cannot be read.
std::optional<std::string> ReadBearerToken(const std::string& path);

// Reads a credentials file:
//   {"triton.internal:8001": {"tls": true, "ca": "ca.pem", "bearer_token_file": "token"},
//    "10.0.0.7:8001": {"bearer_token_file": "/run/secrets/dock-b"}}
// Per endpoint: "tls" (bool; implied by any of "ca", "cert", "key"), "ca", "cert", "key" (PEM
// files; "cert" and "key" together), "bearer_token_file" (a file holding the token; surrounding
// whitespace dropped; read again before every call, so a rotated token needs no restart). Relative paths are relative to the credentials file's folder. A listed
// endpoint gets exactly its entry (nothing from the server-wide setting). INVALID_ARGUMENT naming
// the file, the endpoint and the problem: unreadable or not a JSON object, an unknown key, an
// unreadable or empty referenced file, a cert without its key.
absl::StatusOr<std::map<std::string, ChannelSecurity>> ReadCredentialsFile(
    const std::string& path);

}  // namespace modeldock::remote

#endif  // MODELDOCK_REMOTE_CREDENTIALS_H_
