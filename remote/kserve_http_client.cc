#include "remote/kserve_http_client.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "remote/credentials.h"

namespace modeldock::remote {
namespace {

using json = nlohmann::json;

// Largest response body accepted, as for the gRPC client (64 samples x 100k classes as text
// is larger than as bytes, hence the factor).
constexpr size_t kMaxResponseBytes = size_t{256} << 20;

std::string Describe(const RemoteTarget& target) {
  return absl::StrCat("remote model '", target.model,
                      target.version.empty() ? "" : absl::StrCat("' version '", target.version),
                      "' at ", target.endpoint);
}

// "http[s]://HOST[:PORT][/PREFIX]" split; nullopt when it is not such a URL.
struct Url {
  bool tls = false;
  std::string host;
  int port = 0;
  std::string prefix;  // "" or "/a/b" (no trailing slash)
};

std::optional<Url> ParseUrl(const std::string& text) {
  Url url;
  std::string rest;
  if (absl::StartsWith(text, "http://")) {
    rest = text.substr(7);
  } else if (absl::StartsWith(text, "https://")) {
    url.tls = true;
    rest = text.substr(8);
  } else {
    return std::nullopt;
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) url.prefix = rest.substr(slash);
  while (!url.prefix.empty() && url.prefix.back() == '/') url.prefix.pop_back();
  url.port = url.tls ? 443 : 80;
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    if (!absl::SimpleAtoi(authority.substr(colon + 1), &url.port) || url.port <= 0 ||
        url.port > 65535) {
      return std::nullopt;
    }
    authority.resize(colon);
  }
  if (authority.empty()) return std::nullopt;
  url.host = authority;
  return url;
}

// The remote's error: its HTTP status read as the gRPC code it stands for (the reverse of
// Google's mapping that the dock's own HTTP front door uses), with the body's "error" text.
absl::Status FromHttp(int status, const std::string& body, const RemoteTarget& target,
                      const char* call) {
  std::string message = body.substr(0, 300);
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_string()) {
    message = parsed["error"].get<std::string>();
  }
  if (status == 401 || status == 403) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(target), ": ", call, " refused this dock's credentials (HTTP ", status, ": ",
        message, "); give the endpoint a token or certificate in the server's "
        "--remote-credentials file"));
  }
  absl::StatusCode code = absl::StatusCode::kUnknown;
  switch (status) {
    case 400: code = absl::StatusCode::kInvalidArgument; break;
    case 404: code = absl::StatusCode::kNotFound; break;
    case 409: code = absl::StatusCode::kAborted; break;
    case 429: code = absl::StatusCode::kResourceExhausted; break;
    case 499: code = absl::StatusCode::kCancelled; break;
    case 501: code = absl::StatusCode::kUnimplemented; break;
    case 502: case 503: code = absl::StatusCode::kUnavailable; break;
    case 504: code = absl::StatusCode::kDeadlineExceeded; break;
    default: code = status >= 500 ? absl::StatusCode::kInternal : absl::StatusCode::kUnknown;
  }
  return absl::Status(code, absl::StrCat(Describe(target), ": ", call, " failed (HTTP ", status,
                                         "): ", message.empty() ? "no message" : message));
}

bool Transient(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kResourceExhausted;
}

// A PEM string as OpenSSL objects (nullptr when empty or unreadable).
X509* ReadCertificate(const std::string& pem) {
  if (pem.empty()) return nullptr;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return cert;
}
EVP_PKEY* ReadKey(const std::string& pem) {
  if (pem.empty()) return nullptr;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return key;
}
X509_STORE* ReadRoots(const std::string& pem) {
  if (pem.empty()) return nullptr;
  X509_STORE* store = X509_STORE_new();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
  }
  BIO_free(bio);
  return store;
}

class HttpKServeClient : public KServeClient {
 public:
  HttpKServeClient(Url url, ChannelSecurity security)
      : url_(std::move(url)), security_(std::move(security)),
        bearer_token_(security_.bearer_token) {}

  absl::StatusOr<RemoteMetadata> Metadata(const RemoteTarget& target,
                                          absl::Time deadline) override {
    auto answer = Call(target, "ModelMetadata", ModelPath(target), nullptr, deadline);
    if (!answer.ok()) return answer.status();
    RemoteMetadata out;
    try {
      for (const auto& v : answer->value("versions", json::array())) {
        out.versions.push_back(v.get<std::string>());
      }
      out.platform = answer->value("platform", "");
      auto tensors = [](const json& list, std::vector<TensorInfo>* into) {
        for (const auto& t : list) {
          into->push_back({t.value("name", ""), t.value("datatype", ""),
                           t.value("shape", std::vector<int64_t>())});
        }
      };
      tensors(answer->value("inputs", json::array()), &out.inputs);
      tensors(answer->value("outputs", json::array()), &out.outputs);
    } catch (const json::exception& e) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " sent model metadata that is not KServe v2 JSON: ", e.what()));
    }
    return out;
  }

  absl::StatusOr<Tensor> Infer(const RemoteTarget& target, const Tensor& samples,
                               absl::Time deadline, const InferOptions& options,
                               const std::function<bool()>& cancelled) override {
    if (!samples.IsConsistent() || samples.shape.size() < 2 || samples.Rows() == 0) {
      return absl::InvalidArgumentError("samples must be a non-empty consistent [N, ...] tensor");
    }
    const int64_t n = samples.Rows();
    const int64_t row = samples.RowSize();
    const int64_t batch = std::max(1, options.batch_size);
    Tensor out;
    for (int64_t start = 0; start < n; start += batch) {
      if (cancelled && cancelled()) return absl::CancelledError("remote inference cancelled");
      const int64_t b = std::min(batch, n - start);
      std::vector<int64_t> shape = samples.shape;
      shape[0] = b;
      const json request = {
          {"inputs", json::array({{{"name", "input"},
                                   {"shape", shape},
                                   {"datatype", "FP32"},
                                   {"data", std::vector<float>(
                                                samples.values.begin() + start * row,
                                                samples.values.begin() + (start + b) * row)}}})}};
      const std::string body = request.dump();
      absl::Duration wait = options.backoff;
      absl::StatusOr<json> answer;
      for (int attempt = 1;; ++attempt) {
        answer = Call(target, "ModelInfer", ModelPath(target) + "/infer", &body, deadline);
        if (answer.ok() || !Transient(answer.status().code()) || attempt >= options.attempts ||
            absl::Now() + wait >= deadline) {
          break;
        }
        std::this_thread::sleep_for(absl::ToChronoMilliseconds(wait));
        wait *= 2;
      }
      if (!answer.ok()) return answer.status();
      if (absl::Status s = AppendOutput(target, *answer, b, n, &out); !s.ok()) return s;
    }
    return out;
  }

 private:
  std::string ModelPath(const RemoteTarget& target) const {
    std::string path = absl::StrCat(url_.prefix, "/v2/models/", target.model);
    if (!target.version.empty()) absl::StrAppend(&path, "/versions/", target.version);
    return path;
  }

  // One request on a connection of its own (httplib's clients are not shared across threads);
  // GET when `body` is null, else POST of JSON. The answer's JSON, or the call's error.
  absl::StatusOr<json> Call(const RemoteTarget& target, const char* call,
                            const std::string& path, const std::string* body,
                            absl::Time deadline) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(Describe(target), ": ", call,
                                                      ": the deadline passed before the call"));
    }
    std::unique_ptr<httplib::ClientImpl> client = NewClient();
    const auto micros = absl::ToInt64Microseconds(left);
    client->set_connection_timeout(micros / 1000000, micros % 1000000);
    client->set_read_timeout(micros / 1000000, micros % 1000000);
    client->set_write_timeout(micros / 1000000, micros % 1000000);
    const std::string token = BearerToken();
    if (!token.empty()) client->set_bearer_token_auth(token);
    httplib::Result result = body == nullptr
                                 ? client->Get(path)
                                 : client->Post(path, *body, "application/json");
    if (!result) {
      const httplib::Error error = result.error();
      const absl::StatusCode code = error == httplib::Error::ConnectionTimeout ||
                                            error == httplib::Error::Read
                                        ? absl::StatusCode::kDeadlineExceeded
                                        : absl::StatusCode::kUnavailable;
      return absl::Status(code, absl::StrCat(Describe(target), ": ", call, " failed: ",
                                             httplib::to_string(error)));
    }
    if (result->status != 200) return FromHttp(result->status, result->body, target, call);
    if (result->body.size() > kMaxResponseBytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " answered ", result->body.size(), " bytes; at most ",
          kMaxResponseBytes, " are read"));
    }
    json parsed = json::parse(result->body, nullptr, false);
    if (!parsed.is_object()) {
      return absl::FailedPreconditionError(
          absl::StrCat(Describe(target), ": ", call, " answered with something other than a "
                                                     "JSON object"));
    }
    return parsed;
  }

  std::unique_ptr<httplib::ClientImpl> NewClient() const {
    if (!url_.tls) return std::make_unique<httplib::ClientImpl>(url_.host, url_.port);
    X509* cert = ReadCertificate(security_.cert_chain_pem);
    EVP_PKEY* key = ReadKey(security_.private_key_pem);
    auto client = cert != nullptr && key != nullptr
                      ? std::make_unique<httplib::SSLClient>(url_.host, url_.port, cert, key)
                      : std::make_unique<httplib::SSLClient>(url_.host, url_.port);
    X509_free(cert);  // the client's SSL context keeps its own references
    EVP_PKEY_free(key);
    if (X509_STORE* roots = ReadRoots(security_.root_certs_pem)) {
      client->set_ca_cert_store(roots);  // owned by the client's SSL context from here
    } else {
      client->set_ca_cert_path("/etc/ssl/certs/ca-certificates.crt");
    }
    client->enable_server_certificate_verification(true);
    return client;
  }

  std::string BearerToken() {
    std::lock_guard<std::mutex> lock(token_mutex_);
    if (!security_.bearer_token_file.empty()) {
      std::optional<std::string> token = ReadBearerToken(security_.bearer_token_file);
      if (token && !token->empty()) bearer_token_ = std::move(*token);
    }
    return bearer_token_;
  }

  // The answer's first output, FP32 [b, K] from "data" (flat, as KServe v2 JSON sends it).
  static absl::Status AppendOutput(const RemoteTarget& target, const json& answer, int64_t b,
                                   int64_t n, Tensor* out) {
    const json outputs = answer.value("outputs", json::array());
    if (!outputs.is_array() || outputs.empty() || !outputs[0].is_object()) {
      return absl::FailedPreconditionError(
          absl::StrCat(Describe(target), " returned no output tensor"));
    }
    const json& output = outputs[0];
    const std::string datatype = output.value("datatype", "");
    if (datatype != "FP32") {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned a ", datatype, " output; the dock needs FP32"));
    }
    std::vector<int64_t> shape;
    std::vector<float> values;
    try {
      shape = output.value("shape", std::vector<int64_t>());
      values = output.value("data", std::vector<float>());
    } catch (const json::exception& e) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned an output that is not a flat FP32 tensor: ", e.what()));
    }
    if (shape.size() != 2 || shape[0] != b || shape[1] <= 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned shape [", absl::StrJoin(shape, ", "), "] for ", b,
          " samples; expected [", b, ", K]"));
    }
    const int64_t width = shape[1];
    if (out->shape.empty()) {
      out->shape = {n, width};
      out->values.reserve(static_cast<size_t>(n * width));
    } else if (out->shape[1] != width) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned width ", width, " after ", out->shape[1]));
    }
    if (values.size() != static_cast<size_t>(b * width)) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned ", values.size(), " values for a [", b, ", ", width,
          "] output"));
    }
    out->values.insert(out->values.end(), values.begin(), values.end());
    return absl::OkStatus();
  }

  const Url url_;
  const ChannelSecurity security_;
  std::mutex token_mutex_;
  std::string bearer_token_;  // the last token read (guarded by token_mutex_)
};

// An endpoint that looked like a URL but is not one: every call says so.
class BadUrlClient : public KServeClient {
 public:
  explicit BadUrlClient(std::string url) : url_(std::move(url)) {}
  absl::StatusOr<RemoteMetadata> Metadata(const RemoteTarget&, absl::Time) override {
    return Error();
  }
  absl::StatusOr<Tensor> Infer(const RemoteTarget&, const Tensor&, absl::Time,
                               const InferOptions&, const std::function<bool()>&) override {
    return Error();
  }

 private:
  absl::Status Error() const {
    return absl::InvalidArgumentError(absl::StrCat(
        "remote endpoint '", url_, "' is not a URL http[s]://HOST[:PORT][/PATH] (or HOST:PORT "
        "for KServe v2 over gRPC)"));
  }
  const std::string url_;
};

}  // namespace

std::unique_ptr<KServeClient> ConnectHttp(const std::string& url,
                                          const ChannelSecurity& security) {
  std::optional<Url> parsed = ParseUrl(url);
  if (!parsed) return std::make_unique<BadUrlClient>(url);
  return std::make_unique<HttpKServeClient>(*std::move(parsed), security);
}

}  // namespace modeldock::remote
