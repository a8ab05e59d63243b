// The HTTP front door of modeldock-server (--http-listen): the REST/JSON API under /v1, the
// KServe v2 HTTP/REST protocol under /v2, Prometheus text at /metrics, the web page at / and
// /v1/openapi.json, on Debian's cpp-httplib.
//
// It only translates. Every /v1 and /v2 call is forwarded as the matching modeldock.v1 or
// inference.GRPCInferenceService RPC over the gRPC server's in-process channel
// (GrpcServer::InProcessChannel), with the caller's "Authorization: Bearer" key and request id
// as call metadata, so that API keys, roles, ownership, validation, request ids and call
// metrics are the gRPC services', implemented once. JSON bodies are those of the CLI's --json
// (client/json_output.h).
#ifndef MODELDOCK_HTTP_HTTP_SERVER_H_
#define MODELDOCK_HTTP_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace httplib {
class Server;
}  // namespace httplib

namespace modeldock::http {

struct HttpOptions {
  std::string listen = "127.0.0.1:8000";  // "host:port"; port 0 picks a free one
  // Connections served at once (each on its own thread), and accepted connections that may
  // wait for one; past that, a new connection is answered 503 UNAVAILABLE and closed.
  int threads = 16;
  int max_queued = 64;
  // TLS (PEM files): empty cert = plaintext; with client_ca, clients need a certificate it
  // signed (mutual TLS), as on the gRPC port.
  std::string tls_cert, tls_key, tls_client_ca;
  // Where uploads (model files, datasets) are spooled while a request runs; created if needed.
  std::string spool_dir;
  // Largest request body (a model or dataset upload with its other parts).
  int64_t max_body_bytes = (1ll << 30) + (16 << 20);
  // Deadline of each forwarded call.
  absl::Duration call_timeout = absl::Minutes(10);
  // Serve /metrics only (the --metrics-listen listener), no API.
  bool metrics_only = false;
  // GET /metrics answers with this text (Prometheus exposition format) when set.
  std::function<std::string()> metrics;
};

class HttpServer {
 public:
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds options.listen and serves in the background. `channel`: the gRPC server's in-process
  // channel (it must outlive this server). INVALID_ARGUMENT for a bad option, FAILED_PRECONDITION
  // for unreadable TLS files, UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(std::shared_ptr<grpc::Channel> channel,
                                                           const HttpOptions& options);

  int port() const { return port_; }
  const std::string& address() const { return address_; }  // "host:port" as bound
  bool tls() const { return tls_; }

  // Stops accepting, finishes the requests running, joins the threads. Idempotent.
  void Stop();

 private:
  HttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string address_;
  bool tls_ = false;
  bool stopped_ = false;
};

}  // namespace modeldock::http

#endif  // MODELDOCK_HTTP_HTTP_SERVER_H_
