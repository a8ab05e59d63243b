// Who may call what, decided in one place: a table with one row per RPC of the modeldock.v1
// service and of the KServe v2 service (inference.GRPCInferenceService), and a server
// interceptor that applies it to every call.
//
// The interceptor runs when a call's metadata has arrived: it gives the call its request id
// (see request_id.h), looks the method up in the table and checks the caller's key against
// the role the row names. gRPC's C++ server interceptors cannot end a call themselves, so the
// decision is kept per call and a handler's first statement fetches it (CallScope): it either
// returns the refusal or goes on with the caller's key. A method missing from the table is
// refused (fail closed); a test checks that the table names every method of both services.
#ifndef MODELDOCK_SERVER_AUTHORIZATION_H_
#define MODELDOCK_SERVER_AUTHORIZATION_H_

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/types/span.h"
#include "dock/dock.h"
#include "server/request_id.h"

namespace modeldock::server {

// One row of the table. An open method needs no key and gets no request id (liveness and
// readiness probes, server metadata).
struct MethodRule {
  const char* method;  // gRPC's full name: "/modeldock.v1.ModelDockService/GetModel"
  bool open;
  dock::ApiKeyRole role;  // the least role allowed (admin may call everything)
  const char* what;       // the call as a PERMISSION_DENIED message names it
};

// The table: every method of modeldock.v1.ModelDockService and inference.GRPCInferenceService.
absl::Span<const MethodRule> MethodRules();
// The row of `method` (gRPC's full name), or nullptr.
const MethodRule* FindMethodRule(std::string_view method);

// The caller's key ("authorization: Bearer KEY") checked against the role `needed`:
// UNAUTHENTICATED (no, unknown or revoked key) or PERMISSION_DENIED (naming the role needed).
// Without `require_api_keys` every caller acts as admin.
grpc::Status CheckApiKey(dock::Dock* dock, bool require_api_keys,
                         const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                         dock::ApiKeyRole needed, const char* what, dock::ApiKeyInfo* caller);

// The decisions of the calls in flight, made by its interceptor and read by the handlers.
class Authorizer {
 public:
  // The decision about one call.
  struct Decision {
    std::string request_id;
    grpc::Status status;      // OK, or why the call is refused
    dock::ApiKeyInfo caller;  // the caller's key when allowed (admin without --auth)
  };

  // `dock` is not owned and must outlive the server.
  Authorizer(dock::Dock* dock, bool require_api_keys)
      : dock_(dock), require_api_keys_(require_api_keys) {}

  // The interceptor to install on the server (before the one that names the request id in
  // error messages, which reads the trailing metadata this one writes).
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // Decides about a call to `method` (the interceptor's side); the decision lasts until Forget.
  void Decide(grpc::ServerContextBase* context, const char* method);
  void Forget(const grpc::ServerContextBase* context);

  // The decision about the call of `context`; INTERNAL when there is none (the call did not
  // pass the interceptor), so a handler without a decision refuses.
  Decision DecisionFor(const grpc::ServerContextBase* context) const;

 private:
  dock::Dock* dock_;
  bool require_api_keys_;
  mutable std::mutex mutex_;  // guards decisions_
  std::unordered_map<const grpc::ServerContextBase*, Decision> decisions_;
};

// A handler's first statement: the call's decision, and its request id set on the handler's
// thread for the life of the call (log lines carry it).
//   CallScope call(*authorizer_, context);
//   if (!call.ok()) return call.status();
class CallScope {
 public:
  CallScope(const Authorizer& authorizer, const grpc::ServerContextBase* context)
      : decision_(authorizer.DecisionFor(context)), request_(decision_.request_id) {}
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  bool ok() const { return decision_.status.ok(); }
  const grpc::Status& status() const { return decision_.status; }
  const dock::ApiKeyInfo& caller() const { return decision_.caller; }

 private:
  Authorizer::Decision decision_;
  RequestScope request_;
};

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_AUTHORIZATION_H_
