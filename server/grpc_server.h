// A running gRPC server for a dock: the modeldock.v1 service, grpc.health.v1 and server
// reflection on one listening address. Used by modeldock-server and by the in-process tests.
#ifndef MODELDOCK_SERVER_GRPC_SERVER_H_
#define MODELDOCK_SERVER_GRPC_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dock/dock.h"

namespace grpc {
class Channel;
class Server;
}  // namespace grpc

namespace modeldock::server {

class Authorizer;
class ModelDockServiceImpl;
class KServeServiceImpl;
class MetricsRegistry;

// Largest request message accepted (chunks are 1 MiB; an inline Recommend header may be larger).
inline constexpr int kMaxReceiveMessageBytes = 64 << 20;

// The health-checking name of the modeldock service (the empty name covers the whole server).
inline constexpr char kServiceName[] = "modeldock.v1.ModelDockService";

// Threads the synchronous server may use for calls (gRPC ResourceQuota). Past them, new calls
// are answered RESOURCE_EXHAUSTED by gRPC instead of growing the process without bound.
inline constexpr int kDefaultMaxRpcThreads = 128;

// TLS for the listening port: PEM files. Empty cert = plaintext. With client_ca, clients must
// present a certificate signed by it (mutual TLS); the handshake fails otherwise.
struct TlsOptions {
  std::string cert;
  std::string key;
  std::string client_ca;
};

class GrpcServer {
 public:
  ~GrpcServer();

  // Binds `listen_address` ("host:port"; port 0 picks a free one) and starts serving `dock`,
  // which is not owned and must outlive the server. UNAVAILABLE if the address cannot be bound.
  // FAILED_PRECONDITION if a TLS file cannot be read.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      dock::Dock* dock, const std::string& listen_address,
      int max_rpc_threads = kDefaultMaxRpcThreads, const TlsOptions& tls = {},
      MetricsRegistry* metrics = nullptr,  // not owned; records every call when given
      bool require_api_keys = false,
      // Also serve the models over the KServe v2 inference protocol on this address.
      const std::string& kserve_listen = "",
      // Register the KServe v2 service even without kserve_listen (on the main port and the
      // in-process channel), for the HTTP front door's /v2 routes.
      bool serve_kserve = false);

  // "host:port" with the port actually bound.
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // The KServe v2 endpoint's "host:port" (empty without kserve_listen).
  const std::string& kserve_address() const { return kserve_address_; }

  // A channel to this server that bypasses the network (gRPC's in-process transport): calls on
  // it pass the same interceptors, API-key checks, thread limit and handlers as calls from
  // outside. The HTTP front door (http/) forwards its requests over it.
  std::shared_ptr<grpc::Channel> InProcessChannel() const;

  // Marks the server NOT_SERVING in grpc.health.v1 and not ready in KServe v2 ServerReady
  // (also over HTTP), while calls are still served: the first step of a shutdown.
  void MarkNotReady();

  // MarkNotReady, then stops accepting calls and waits for running calls up to `grace`,
  // cancelling those still running after it. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;

  std::unique_ptr<Authorizer> authorizer_;  // before the services, which point to it
  std::unique_ptr<ModelDockServiceImpl> service_;
  std::unique_ptr<KServeServiceImpl> kserve_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
  std::string kserve_address_;
  int kserve_port_ = 0;
  bool shut_down_ = false;
};

// Splits "host:port" at the last ':' ("[::1]:50051" keeps its brackets). False if malformed.
bool SplitHostPort(const std::string& address, std::string* host, int* port);

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_GRPC_SERVER_H_
