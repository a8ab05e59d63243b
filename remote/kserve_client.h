// Calls a model that stays on another inference server, over the KServe v2 gRPC protocol
// (inference.GRPCInferenceService: Triton, KServe, Seldon MLServer, another modeldock with
// --kserve-listen). The dock's remote models run through this instead of its worker pool: inputs
// in, outputs out, weights never seen.
#ifndef MODELDOCK_REMOTE_KSERVE_CLIENT_H_
#define MODELDOCK_REMOTE_KSERVE_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"

namespace modeldock::remote {

// Which model, where.
struct RemoteTarget {
  // "host:port": KServe v2 over gRPC (TLS or plaintext: ChannelSecurity); or a URL
  // "http[s]://host[:port][/path]": KServe v2 over HTTP/REST with JSON tensors (the scheme
  // decides TLS; ChannelSecurity's certificates and token still apply).
  std::string endpoint;
  std::string model;     // the protocol's model name
  std::string version;   // empty = the server's choice
};

struct TensorInfo {
  std::string name;
  std::string datatype;        // "FP32", ...
  std::vector<int64_t> shape;  // -1 = variable (the batch)
};

struct RemoteMetadata {
  std::vector<std::string> versions;
  std::string platform;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
};

struct InferOptions {
  int batch_size = 64;           // samples per ModelInfer call
  int attempts = 3;              // per batch, on UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED
  absl::Duration backoff = absl::Milliseconds(200);  // before a retry, doubled each time
};

// How the dock reaches a remote inference server (credentials.h: per endpoint, with a default).
struct ChannelSecurity {
  bool tls = false;             // plaintext unless set
  std::string root_certs_pem;   // "" = the system's roots
  std::string cert_chain_pem;   // client certificate (mutual TLS); "" = none
  std::string private_key_pem;
  // Sent as "authorization: Bearer <token>" with every call (KServe / Triton behind a gateway,
  // another modeldock with --auth); "" = none.
  std::string bearer_token;
  // Where the token came from: read again before every call, so that a rotated token (a
  // Kubernetes projected token, a key replaced by the operator) is used without a restart; the
  // last token read stands while the file is missing or empty (mid-rotation). "" = fixed token.
  std::string bearer_token_file;
};

// Whether `endpoint` is a URL (the HTTP/REST binding) rather than gRPC's "host:port".
bool IsHttpEndpoint(const std::string& endpoint);

class KServeClient {
 public:
  // One channel per endpoint (a connection per call for URLs); safe for concurrent calls.
  static std::unique_ptr<KServeClient> Connect(const std::string& endpoint,
                                               const ChannelSecurity& security = {});
  virtual ~KServeClient() = default;

  // The model's metadata. NOT_FOUND if the server does not know it; UNAVAILABLE (naming the
  // endpoint) if it cannot be reached by `deadline`.
  virtual absl::StatusOr<RemoteMetadata> Metadata(const RemoteTarget& target,
                                                  absl::Time deadline) = 0;
  // Runs the model on samples [N, ...] (FP32, sent as raw bytes) in batches; returns its first
  // output as [N, K]. Every batch must come back FP32 [b, K] with the same K (else
  // FAILED_PRECONDITION saying what came back). Transient failures are retried per batch;
  // `cancelled` (may be null) is polled between batches (CANCELLED).
  virtual absl::StatusOr<Tensor> Infer(const RemoteTarget& target, const Tensor& samples,
                                       absl::Time deadline, const InferOptions& options,
                                       const std::function<bool()>& cancelled) = 0;
};

}  // namespace modeldock::remote

#endif  // MODELDOCK_REMOTE_KSERVE_CLIENT_H_
