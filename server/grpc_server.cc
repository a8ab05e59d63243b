#include "server/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/support/server_interceptor.h>

#include <chrono>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "grpc/health/v1/health.pb.h"
#include "server/authorization.h"
#include "server/kserve_service.h"
#include "server/metrics.h"
#include "server/request_id.h"
#include "server/service.h"
#include "spdlog/spdlog.h"

namespace modeldock::server {
namespace {

// Counts every call and its latency by method and final status code.
class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(grpc::experimental::ServerRpcInfo* info, MetricsRegistry* metrics)
      : method_(info->method()), metrics_(metrics), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_->RecordRpc(method_, StatusCodeName(status.error_code()),
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
                              .count());
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  MetricsRegistry* metrics_;
  std::chrono::steady_clock::time_point start_;
};

// Error messages name the call's request id (set by the handler as trailing metadata), so a
// user can quote it and an operator find the call's log lines.
class RequestIdInterceptor : public grpc::experimental::Interceptor {
 public:
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      auto* trailing = methods->GetSendTrailingMetadata();
      if (!status.ok() && trailing != nullptr) {
        auto id = trailing->find(kRequestIdHeader);
        if (id != trailing->end()) {
          methods->ModifySendStatus(grpc::Status(
              status.error_code(),
              absl::StrCat(status.error_message(), " (request ", id->second, ")")));
        }
      }
    }
    methods->Proceed();
  }
};

class RequestIdInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* /*info*/) override {
    return new RequestIdInterceptor();
  }
};

class MetricsInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(MetricsRegistry* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(info, metrics_);
  }

 private:
  MetricsRegistry* metrics_;
};

// Plaintext, TLS or mutual TLS, from the PEM files `tls` names.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsOptions& tls) {
  if (tls.cert.empty() && tls.key.empty() && tls.client_ca.empty()) {
    return grpc::InsecureServerCredentials();
  }
  if (tls.cert.empty() || tls.key.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and its key");
  }
  auto read = [](const std::string& path) -> absl::StatusOr<std::string> {
    std::optional<std::string> pem = ReadWholeFile(path);
    if (!pem) return absl::FailedPreconditionError(absl::StrCat("cannot read TLS file ", path));
    return std::move(*pem);
  };
  auto cert = read(tls.cert);
  if (!cert.ok()) return cert.status();
  auto key = read(tls.key);
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!tls.client_ca.empty()) {
    auto ca = read(tls.client_ca);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

bool SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  int value = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &value) || value < 0 || value > 65535) {
    return false;
  }
  *host = address.substr(0, colon);
  *port = value;
  return true;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(dock::Dock* dock,
                                                              const std::string& listen_address,
                                                              int max_rpc_threads,
                                                              const TlsOptions& tls,
                                                              MetricsRegistry* metrics,
                                                              bool require_api_keys,
                                                              const std::string& kserve_listen,
                                                              bool serve_kserve) {
  if (max_rpc_threads < 4) {
    return absl::InvalidArgumentError("max_rpc_threads must be >= 4 (gRPC's pollers need some)");
  }
  std::string host;
  int requested_port = 0;
  if (!SplitHostPort(listen_address, &host, &requested_port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address '", listen_address, "' is not HOST:PORT"));
  }
  // Both are process-wide switches read by every ServerBuilder created afterwards.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // gRPC's built-in health service carries no proto descriptor; touching the generated one
  // links it into the binary, so reflection can describe grpc.health.v1 to tools like buf curl.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();

  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->authorizer_ = std::make_unique<Authorizer>(dock, require_api_keys);
  server->service_ = std::make_unique<ModelDockServiceImpl>(dock, server->authorizer_.get());
  grpc::ServerBuilder builder;
  auto credentials = ServerCredentials(tls);
  if (!credentials.ok()) return credentials.status();
  builder.AddListeningPort(listen_address, *credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  std::string kserve_host;
  if (!kserve_listen.empty()) {
    int unused_port = 0;
    if (!SplitHostPort(kserve_listen, &kserve_host, &unused_port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("KServe listen address '", kserve_listen, "' is not HOST:PORT"));
    }
    // A second port of the same server (same TLS, keys, thread limit); the KServe service is
    // therefore reachable on the main port too.
    builder.AddListeningPort(kserve_listen, *credentials, &server->kserve_port_);
  }
  if (!kserve_listen.empty() || serve_kserve) {
    server->kserve_ = std::make_unique<KServeServiceImpl>(dock, server->authorizer_.get());
    builder.RegisterService(server->kserve_.get());
  }
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(server->authorizer_->InterceptorFactory());
  creators.push_back(std::make_unique<RequestIdInterceptorFactory>());
  if (metrics != nullptr) creators.push_back(std::make_unique<MetricsInterceptorFactory>(metrics));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  grpc::ResourceQuota quota("modeldock-server");
  quota.SetMaxThreads(max_rpc_threads);
  builder.SetResourceQuota(quota);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen_address,
                                               " (address in use or not local?)"));
  }
  server->address_ = absl::StrCat(host, ":", server->port_);
  if (!kserve_listen.empty()) {
    if (server->kserve_port_ == 0) {
      server->server_->Shutdown();
      server->server_.reset();
      return absl::UnavailableError(absl::StrCat("cannot listen on ", kserve_listen,
                                                 " for KServe (address in use or not local?)"));
    }
    server->kserve_address_ = absl::StrCat(kserve_host, ":", server->kserve_port_);
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(kServiceName, true);
    health->SetServingStatus(true);
  }
  if (server->kserve_ != nullptr) server->kserve_->SetReady(true);
  return server;
}

std::shared_ptr<grpc::Channel> GrpcServer::InProcessChannel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  args.SetMaxSendMessageSize(kMaxReceiveMessageBytes);
  return server_->InProcessChannel(args);
}

void GrpcServer::MarkNotReady() {
  if (server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) health->SetServingStatus(false);
  if (kserve_ != nullptr) kserve_->SetReady(false);
}

void GrpcServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  MarkNotReady();
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
  server_->Wait();
}

}  // namespace modeldock::server
